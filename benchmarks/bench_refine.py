"""Time and peak memory of the fast path's float64 refinement against the float64 computations it replaces.

A trained layer's smallest eigenvalues often lie below what a float32 Gram resolves (22 of all-MiniLM-L6-v2's
40 layers): htsr then recomputes the layer's Gram in float64 (method ``gram64``). This script builds float32
LLaMA-7B-shaped matrices whose spectrum spans that range (seeded Gaussian columns scaled by a log-spaced
profile over three decades, so their eigenvalues reach ~1e-6 of the largest, below the float32 floor
4·√M·ε₃₂·λ_max) and, each in a child process of its own (peak RSS is per process), runs:

* htsr        ``htsr.spectra.esd([W])``: the float32 Gram + eigh, then the float64 Gram by ?syrk from blocks
              of rows (``htsr.lapack.gram``) + eigh
* f64 copy    the same two steps written plainly, the float64 Gram from a float64 copy of W: the float32
              ``W.T @ W`` + ``scipy.linalg.eigh(eigvals_only=True)``, then ``A = W.astype(float64); A.T @ A`` +
              eigh (what htsr did before ``lapack.gram``)
* f64 SVD     ``scipy.linalg.svd(W.astype(float64), compute_uv=False)`` (WeightWatcher's and ``--precision
              accurate``'s eigenvalues)

For each: the median seconds of ``--repeats`` runs and the peak RSS above the loaded matrix (``VmHWM`` minus the
RSS before the call), and the ratios to htsr. Usage::

    python benchmarks/bench_refine.py [--shapes 11008x4096 4096x4096] [--repeats 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, re, sys, time
import numpy as np, scipy.linalg
W = np.load(sys.argv[2])
def rss(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024
before = rss("VmRSS")
t = time.perf_counter()
if sys.argv[1] == "htsr":
    from htsr.spectra import esd
    method = esd([W]).method
elif sys.argv[1] == "f64 copy":
    def gram(A):
        return A.T @ A if A.shape[0] > A.shape[1] else A @ A.T
    scipy.linalg.eigh(gram(W).T, eigvals_only=True, overwrite_a=True, check_finite=False)  # the float32 Gram
    scipy.linalg.eigh(gram(W.astype(np.float64)).T, eigvals_only=True, overwrite_a=True, check_finite=False)
    method = "f32 + f64 Gram"
else:
    scipy.linalg.svd(W.astype(np.float64), compute_uv=False, check_finite=False)
    method = "f64 SVD"
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": rss("VmHWM") - before, "method": method}))
"""

METHODS = ("htsr", "f64 copy", "f64 SVD")


def trained_like(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """float32 Gaussian columns scaled from 1 down to 1e-3: eigenvalues spread over about six decades."""
    W = np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)
    W *= np.logspace(0, -3, cols, dtype=np.float32)
    return W


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["11008x4096", "4096x4096"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the matrices are written (a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for text in args.shapes:
            rows, cols = (int(x) for x in text.lower().split("x"))
            path = Path(tmp) / f"w{rows}x{cols}.npy"
            np.save(path, trained_like(rows, cols))
            runs: dict[str, list[dict]] = {m: [] for m in METHODS}
            for _ in range(args.repeats):  # interleaved: a noisy machine slows all three alike
                for m in METHODS:
                    out = subprocess.run([sys.executable, "-c", CHILD, m, str(path)], capture_output=True, text=True,
                                         check=True)
                    runs[m].append(json.loads(out.stdout))
            print(f"\n{rows} x {cols} float32 ({rows * cols * 4 / 2**20:.0f} MiB), {args.repeats} runs each")
            med = {m: (statistics.median(r["seconds"] for r in runs[m]), statistics.median(r["peak_mb"] for r in runs[m]))
                   for m in METHODS}
            for m in METHODS:
                t, mb = med[m]
                print(f"  {m:9s} {runs[m][0]['method']:14s} median {t:7.2f} s  peak +{mb:6.0f} MiB   runs "
                      f"{[round(r['seconds'], 2) for r in runs[m]]}")
            for m in METHODS[1:]:
                print(f"  {m} / htsr: time {med[m][0] / med['htsr'][0]:5.2f}x   peak memory "
                      f"{med[m][1] / med['htsr'][1]:5.2f}x")


if __name__ == "__main__":
    main()
