"""Adapter spectra from their factors against a dense SVD of the formed update ΔW (issue 5).

For a ``--size`` × ``--size`` layer (seeded N(0, 1) factors), ``--repeats`` times each, interleaved; the
factored path on one BLAS thread, as analyze runs it (threads only slow down its thin QRs), the dense SVD on
all of them:

* LoRA, rank ``--rank``: ΔW = B·A, htsr's QR path (:func:`htsr.factored.lowrank_eigenvalues`);
* LoHa, rank ``--rank`` per pair: ΔW = (B1·A1) ∘ (B2·A2), one LowRank of rank r² (:func:`hadamard_lowrank`);
* LoKr, factor 8, its second factor of rank ``--rank``: ΔW = W1 ⊗ (B2·A2), W1 8 × 8 (:class:`Kronecker`).

Prints the medians, the ratio and the largest difference of the eigenvalues relative to λ_max.

    python benchmarks/bench_lowrank.py [--repeats 7] [--size 4096] [--rank 16] [--kinds lora,loha,lokr]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from htsr.spectra import Kronecker, LowRank, hadamard_lowrank, matrix_eigenvalues


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--kinds", default="lora,loha,lokr")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, r = args.size, args.rank

    def pair(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.standard_normal((rows, r)), rng.standard_normal((r, cols))

    (B, A), (B2, A2) = pair(n, n), pair(n, n)
    W1, (C, D) = rng.standard_normal((8, 8)), pair(n // 8, n // 8)
    cases = {  # kind: (htsr's factored update, the formed ΔW, what the target says)
        "lora": (lambda: LowRank(B, A), lambda: B @ A, " (target < 50 ms)"),
        "loha": (lambda: hadamard_lowrank(B, A, B2, A2), lambda: (B @ A) * (B2 @ A2), ""),
        "lokr": (lambda: Kronecker(W1, C @ D), lambda: np.kron(W1, C @ D), ""),
    }
    for kind in args.kinds.split(","):
        factored, formed = cases[kind][:2]
        fast, dense = [], []
        for _ in range(args.repeats):
            with threadpool_limits(limits=1, user_api="blas"):
                t = time.perf_counter()
                ev = matrix_eigenvalues(factored())[0]
                fast.append(time.perf_counter() - t)
            t = time.perf_counter()
            sv = scipy.linalg.svd(formed(), compute_uv=False)
            dense.append(time.perf_counter() - t)
        ref = np.sort(sv ** 2)
        q, d = statistics.median(fast), statistics.median(dense)
        print(f"{kind} rank {r}, {n} x {n}: from the factors median {q * 1e3:.2f} ms{cases[kind][2]}, dense SVD "
              f"median {d * 1e3:.0f} ms, ratio {d / q:.0f}x, max diff {np.max(np.abs(ev - ref)) / ref[-1]:.1e} "
              "of lambda_max")


if __name__ == "__main__":
    main()
