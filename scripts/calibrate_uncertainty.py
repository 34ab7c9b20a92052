"""Calibration of htsr's uncertainty of alpha on seeded synthetic samples with known exponents.

Samples: a Pareto tail of n values with density exponent alpha above x_min = 1, plus n/2 bulk values
uniform on [0.05, 1) below it; n in {100, 300, 1000, 5000}, alpha in {1.5, 2, 3, 4}. Each is fitted as
htsr fits a layer (KS x_min scan), then bootstrapped (x_min refitted in each replicate) and given its
Bayesian interval. Log-normal samples (mu = 0, sigma in {0.5, 1, 2}) of the same total sizes test the
power of the goodness-of-fit p-value.

Prints: coverage of the 95 % bootstrap (htsr's basic interval of ln(alpha − 1), the additive basic and the
percentile ones) and Bayesian intervals, per size and
alpha, with the share of log-normal (sigma = 1) samples with p < 0.1; for each p-value (htsr's
``p_value`` on the scaled statistic sqrt(n)·D, CSN's on D, and with ``--fdb`` the fast-double-bootstrap
one) the deciles of the true-power-law p-values and their KS test against uniform; the share of
log-normal samples with p < 0.1 by size and sigma; and the interval coverage on steep, short tails
(alpha in {6, 8, 12}, n in {50, 100, 300}).

    python scripts/calibrate_uncertainty.py [--per 13] [--reps 200] [--workers 2] [--fdb] [--xmin median]
"""

from __future__ import annotations

import argparse
import time
from multiprocessing import Pool

import numpy as np
import scipy.stats

from htsr.fits.bayes import bayesian_alpha
from htsr.fits.bootstrap import bootstrap_power_law
from htsr.fits.powerlaw import fit_power_law

SIZES = (100, 300, 1000, 5000)
ALPHAS = (1.5, 2.0, 3.0, 4.0)
SIGMAS = (0.5, 1.0, 2.0)  # of the log-normal samples
# steep, short tails (as under-trained layers have): where the additive basic interval reaches alpha = 1
HIGH_SIZES, HIGH_ALPHAS = (50, 100, 300), (6.0, 8.0, 12.0)
P_VALUES = {"p": "htsr p (sqrt(n)·D)", "p_csn": "CSN p (D)", "p_fdb": "FDB p (sqrt(n)·D)"}


def sample(seed: int, kind: str, n: int, param: float) -> np.ndarray:
    """``kind`` "pl": Pareto tail of exponent ``param`` plus bulk; "ln": log-normal, sigma = ``param``."""
    rng = np.random.default_rng(seed)
    if kind in ("pl", "high"):
        tail = (1.0 - rng.random(n)) ** (-1.0 / (param - 1.0))
        return np.sort(np.concatenate([rng.uniform(0.05, 1.0, n // 2), tail]))
    return np.sort(rng.lognormal(0.0, param, n + n // 2))


def one(job: tuple[int, str, int, float, int, bool, str]) -> dict:
    seed, kind, n, param, reps, fdb, xmin = job
    x = sample(seed, kind, n, param)
    f = fit_power_law(x, xmin=xmin)
    b = bootstrap_power_law(x, f, reps, seed=seed, xmin=xmin, fdb=fdb)
    y = bayesian_alpha(x[x >= f.xmin], f.xmin)
    return dict(kind=kind, n=n, alpha=param, fit=f.alpha, lo=b.alpha_lo, hi=b.alpha_hi,  # htsr's interval
                alo=2 * f.alpha - b.q_hi, ahi=2 * f.alpha - b.q_lo,  # additive basic
                plo=b.q_lo, phi=b.q_hi, p=b.p_value, p_csn=b.p_value_csn,  # percentile
                p_fdb=b.p_value_fdb, blo=y.lo, bhi=y.hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per", type=int, default=13, help="samples per (size, alpha) cell")
    ap.add_argument("--reps", type=int, default=200, help="bootstrap replicates per sample")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fdb", action="store_true", help="also the fast double bootstrap p (twice the time)")
    ap.add_argument("--xmin", default="ks", choices=("ks", "median", "peak"),
                    help="x_min strategy of the fits and of every replicate (default: ks, htsr's default)")
    args = ap.parse_args()
    jobs, seed = [], 0
    for n in SIZES:
        for a in ALPHAS:
            for _ in range(args.per):
                jobs.append((seed, "pl", n, a, args.reps, args.fdb, args.xmin))
                seed += 1
        for _ in range(args.per):  # sigma = 1 first: the same seeds as before the sigma table
            jobs.append((seed, "ln", n, 1.0, args.reps, args.fdb, args.xmin))
            seed += 1
    for n in SIZES:
        for sigma in SIGMAS:
            if sigma != 1.0:
                for _ in range(args.per):
                    jobs.append((seed, "ln", n, sigma, args.reps, args.fdb, args.xmin))
                    seed += 1
    for n in HIGH_SIZES:
        for a in HIGH_ALPHAS:
            for _ in range(args.per):
                jobs.append((seed, "high", n, a, args.reps, args.fdb, args.xmin))
                seed += 1
    t0 = time.perf_counter()
    with Pool(args.workers) as pool:
        res = pool.map(one, jobs, chunksize=1)
    pl = [r for r in res if r["kind"] == "pl"]
    ln_all = [r for r in res if r["kind"] == "ln"]
    ln = [r for r in ln_all if r["alpha"] == 1.0]

    def cover(rows, lo, hi):
        return np.mean([r[lo] <= r["alpha"] <= r[hi] for r in rows])

    print(f"{len(pl)} power-law samples, {len(ln_all)} log-normal samples, {args.reps} replicates each, "
          f"x_min {args.xmin}, {time.perf_counter() - t0:.0f} s\n")
    print("| cell | samples | bootstrap (htsr: basic on ln(α−1)) | additive basic | percentile | Bayesian | "
          "log-normal p < 0.1 |")
    print("|---|---|---|---|---|---|---|")
    for n in SIZES:
        rows = [r for r in pl if r["n"] == n]
        print(f"| tail n = {n} | {len(rows)} | {cover(rows, 'lo', 'hi'):.3f} | {cover(rows, 'alo', 'ahi'):.3f} | "
              f"{cover(rows, 'plo', 'phi'):.3f} | "
              f"{cover(rows, 'blo', 'bhi'):.3f} | {np.mean([r['p'] < 0.1 for r in ln if r['n'] == n]):.3f} |")
    for a in ALPHAS:
        rows = [r for r in pl if r["alpha"] == a]
        print(f"| alpha = {a} | {len(rows)} | {cover(rows, 'lo', 'hi'):.3f} | {cover(rows, 'alo', 'ahi'):.3f} | "
              f"{cover(rows, 'plo', 'phi'):.3f} | "
              f"{cover(rows, 'blo', 'bhi'):.3f} | |")
    print(f"| all | {len(pl)} | {cover(pl, 'lo', 'hi'):.3f} | {cover(pl, 'alo', 'ahi'):.3f} | "
          f"{cover(pl, 'plo', 'phi'):.3f} | "
          f"{cover(pl, 'blo', 'bhi'):.3f} | {np.mean([r['p'] < 0.1 for r in ln]):.3f} |")
    high = [r for r in res if r["kind"] == "high"]
    print(f"\nSteep, short tails ({args.per} per cell; not in 'all' above): coverage, and how often the "
          "lower end is at most 1\n")
    print("| cell | samples | htsr (ln(α−1)) | additive basic | percentile | Bayesian | additive lower end ≤ 1 |")
    print("|---|---|---|---|---|---|---|")
    for key, vals in (("n", HIGH_SIZES), ("alpha", HIGH_ALPHAS)):
        for v in vals:
            rows = [r for r in high if r[key] == v]
            print(f"| {'tail n' if key == 'n' else key} = {v} | {len(rows)} | {cover(rows, 'lo', 'hi'):.3f} | "
                  f"{cover(rows, 'alo', 'ahi'):.3f} | {cover(rows, 'plo', 'phi'):.3f} | {cover(rows, 'blo', 'bhi'):.3f} "
                  f"| {np.mean([r['alo'] <= 1.0 for r in rows]):.3f} |")
    names = [k for k in P_VALUES if k != "p_fdb" or args.fdb]
    print("\np-values of true power laws (deciles; KS test against uniform):\n")
    for k in names:
        ps = np.array([r[k] for r in pl])
        hist = np.histogram(ps, bins=10, range=(0, 1))[0]
        print(f"* {P_VALUES[k]}: deciles {hist.tolist()}, p <= 0.1 in {np.mean(ps <= 0.1):.3f}, "
              f"KS p = {scipy.stats.kstest(ps, 'uniform').pvalue:.3g}")
    for k in names:
        print(f"\nShare of log-normal samples with {P_VALUES[k]} < 0.1 ({args.per} per cell):\n")
        print("| sigma | " + " | ".join(f"N = {n + n // 2}" for n in SIZES) + " | all |")
        print("|---" * (len(SIZES) + 2) + "|")
        for sigma in SIGMAS:
            cells = [np.mean([r[k] < 0.1 for r in ln_all if r["alpha"] == sigma and r["n"] == n]) for n in SIZES]
            share = np.mean([r[k] < 0.1 for r in ln_all if r["alpha"] == sigma])
            print(f"| {sigma} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {share:.2f} |")


if __name__ == "__main__":
    main()
