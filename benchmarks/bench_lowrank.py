"""LoRA spectra: htsr's QR path against a dense SVD of the formed product B·A (issue 5).

A rank-16 adapter of a 4096 × 4096 layer (B 4096 × 16, A 16 × 4096, seeded N(0, 1)), ``--repeats``
times each, interleaved; prints the medians, the ratio and the largest relative difference of the
nonzero eigenvalues.

    python benchmarks/bench_lowrank.py [--repeats 7] [--size 4096] [--rank 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.linalg

from htsr.spectra import lowrank_eigenvalues


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    B, A = rng.standard_normal((args.size, args.rank)), rng.standard_normal((args.rank, args.size))
    qr_t, dense_t = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ev = lowrank_eigenvalues(B, A)
        qr_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        sv = scipy.linalg.svd(B @ A, compute_uv=False)
        dense_t.append(time.perf_counter() - t)
    ref = np.sort(sv[: args.rank] ** 2)
    q, d = statistics.median(qr_t), statistics.median(dense_t)
    print(f"rank {args.rank}, {args.size} x {args.size}: QR path median {q * 1e3:.2f} ms (target < 50 ms), "
          f"dense SVD median {d * 1e3:.0f} ms, ratio {d / q:.0f}x, max rel diff {np.max(np.abs(ev - ref) / ref):.1e}")


if __name__ == "__main__":
    main()
