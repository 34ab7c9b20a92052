"""Aspect-ratio bias of alpha, and FARMS's correction, on Gaussian random matrices.

For Q in 1, 1.5, 2, 3, 4, 6, 8: an N × M matrix with M = 500 and N = Q·M, i.i.d. N(0, 1) entries
(seeded), analysed by htsr with and without ``farms_aspect=1`` (square windows), for the x_min
strategies "median" (tail = top half, as the layer-wise training and FARMS papers use) and "ks" (the
default scan, which on a Marchenko–Pastur bulk picks a handful of edge eigenvalues and so is
noise-dominated). Prints alpha per Q (median over ``--seeds`` seeds) and the spread max − min across Q.

    python scripts/shape_bias.py [--seeds 3] [--m 500]
"""

from __future__ import annotations

import argparse

import numpy as np

import htsr

QS = (1, 1.5, 2, 3, 4, 6, 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--m", type=int, default=500)
    args = ap.parse_args()
    table = {}
    for xmin in ("median", "ks"):
        for farms in (None, 1.0):
            for q in QS:
                alphas = []
                for seed in range(args.seeds):
                    W = np.random.default_rng(seed).standard_normal((int(q * args.m), args.m))
                    r = htsr.analyze({"w.weight": W}, xmin=xmin, farms_aspect=farms, tails=False)
                    alphas.append(r.layers[0].alpha)
                table[xmin, farms, q] = float(np.median(alphas))
    cols = [(x, f) for x in ("median", "ks") for f in (None, 1.0)]
    names = {None: "whole", 1.0: "FARMS"}
    print("| Q = N/M | " + " | ".join(f"{x} x_min, {names[f]}" for x, f in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for q in QS:
        print(f"| {q:g} | " + " | ".join(f"{table[x, f, q]:.3f}" for x, f in cols) + " |")
    spread = {c: max(table[c[0], c[1], q] for q in QS) - min(table[c[0], c[1], q] for q in QS) for c in cols}
    print("| spread max - min | " + " | ".join(f"{spread[c]:.3f}" for c in cols) + " |")
    for x in ("median", "ks"):
        print(f"spread ratio with {x} x_min (whole / FARMS): {spread[x, None] / spread[x, 1.0]:.1f}x")


if __name__ == "__main__":
    main()
