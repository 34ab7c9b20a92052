"""Follow-up of 2026-12-04: was c_AD's power real?  (scratch record; uses private htsr functions)

gof_exp.py's ``ad_stat`` includes the x_min point itself in the tail, where the fitted CDF is exactly 0,
and clips ln(0) to ln(1e-300) = -690.8: its "A^2" is a proper A^2 plus 690.8/n. c_AD's power came from
that accidental penalty on short tails. This script computes A^2 properly (the m = n - 1 values above
x_min = the n-th largest value: given x_min, they are i.i.d. from the law above it) and tests rules:

  pen<c>  x_min on the 60-point geometric grid of tail sizes minimising A^2_m + c/m; statistic = that
          minimum (c = 690.8 is c_AD made proper; c = 0 is the pure minimum-A^2 rule)
  ev      x_min maximising the two-piece evidence of htsr.fits.bayes (log-uniform bulk), statistic A^2
  ks      htsr's p_value (KS x_min, sqrt(n) D), for the heavy-bulk check

Samples: ``--bulk 0.5`` is calibrate_uncertainty.py's (n Pareto values above 1, n/2 uniform on [0.05, 1));
``--bulk 9`` puts 9n values of a soft-edged bulk (0.05 + 0.95 Beta(1.5, 1.5), like a Marchenko-Pastur
edge) under the tail, as in real layers where the tail is a few per cent of the spectrum.

    python penalised.py --per 8 --reps 100 --rules pen0,pen300,pen690.8,pen2000,ev   # bulk 0.5, + log-normals
    python penalised.py --per 6 --reps 100 --bulk 9 --rules pen300,pen690.8,ks       # size only
"""
from __future__ import annotations

import argparse
import time
from multiprocessing import Pool

import numpy as np
import scipy.special
import scipy.stats

from htsr.fits.bootstrap import _replicates, bootstrap_power_law
from htsr.fits.powerlaw import PowerLawFit, fit_power_law

MIN_TAIL = 10


def sample(seed, kind, n, param, bulk):
    rng = np.random.default_rng(seed)
    if kind == "ln":
        return np.sort(rng.lognormal(0.0, param, n + n // 2))
    tail = (1.0 - rng.random(n)) ** (-1.0 / (param - 1.0))
    m = int(bulk * n)
    below = rng.uniform(0.05, 1.0, m) if bulk <= 0.5 else 0.05 + 0.95 * rng.beta(1.5, 1.5, m)
    return np.sort(np.concatenate([below, tail]))


def grid(N):
    s = np.unique(np.round(np.geomspace(MIN_TAIL, N, 60)).astype(int))
    return s[(s >= MIN_TAIL) & (s <= N)]


def ad_tail(LX, n):
    """Proper A^2 and alpha MLE of the m = n - 1 values above x_min = n-th largest; rows of log-values LX."""
    m = n - 1
    lg = LX[:, LX.shape[1] - m:] - LX[:, LX.shape[1] - n][:, None]
    with np.errstate(all="ignore"):
        a = 1.0 + m / lg.sum(1)
        u = np.clip(-np.expm1((1.0 - a)[:, None] * lg), 1e-300, 1 - 1e-16)
        i = np.arange(1, m + 1)
        A2 = -m - ((2 * i - 1) * (np.log(u) + np.log1p(-u[:, ::-1]))).mean(1)
    A2[~(np.isfinite(A2) & (a > 1))] = np.inf
    return A2, a


def pen_stat(X, c):
    """(statistic, alpha, tail size) per row of the sorted rows X, rule pen<c>; vectorised over rows."""
    sizes = grid(X.shape[1])
    LX = np.log(X)
    crit = np.empty((X.shape[0], sizes.size))
    alph = np.empty_like(crit)
    for g, n in enumerate(sizes):
        A2, a = ad_tail(LX, n)
        crit[:, g], alph[:, g] = A2 + c / (n - 1), a
    k = np.argmin(crit, 1)
    r = np.arange(X.shape[0])
    return crit[r, k], alph[r, k], sizes[k]


def ev_stat(X):
    N = X.shape[1]
    L = np.log(X)
    k = np.arange(0, N - MIN_TAIL + 1)
    S = np.cumsum(L[:, ::-1], 1)[:, ::-1]
    n, m = (N - k).astype(float), k.astype(float)
    with np.errstate(all="ignore"):
        T = S[:, k] - n * L[:, k]
        bulk = np.where(m > 0, m * np.log(np.log(X[:, k] / X[:, :1])), 0.0)
        le = scipy.special.betaln(n + 1, m + 1) + scipy.special.gammaln(n) - n * np.log(T) - bulk
    le[~np.isfinite(le)] = -np.inf
    sizes = N - k[np.argmax(le, 1)]
    out = [ad_tail(L[r:r + 1], s) for r, s in enumerate(sizes)]
    return np.array([o[0][0] for o in out]), np.array([o[1][0] for o in out]), sizes


def boot_p(x, rule, reps, seed):
    if rule == "ks":
        f = fit_power_law(x)
        return bootstrap_power_law(x, f, reps, seed=seed).p_value, f.num_pl_spikes
    stat = ev_stat if rule == "ev" else (lambda X: pen_stat(X, float(rule[3:])))
    t, a, n = (v[0] for v in stat(x[None, :]))
    f = PowerLawFit(float(a), np.nan, np.nan, float(x[x.size - n]), float(x[-1]), int(n), "ok")
    D = _replicates(x, f, np.random.default_rng(seed + 777), (reps, x.size))
    T = stat(D[np.isfinite(D[:, -1])])[0]
    return float(np.mean(T >= t)), int(n)


def one(job):
    seed, kind, n, param, reps, bulk, rules = job
    x = sample(seed, kind, n, param, bulk)
    return dict(kind=kind, n=n, **{r: boot_p(x, r, reps, seed) for r in rules})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per", type=int, default=8)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--bulk", type=float, default=0.5)
    ap.add_argument("--rules", default="pen0,pen300,pen690.8,pen2000,ev")
    args = ap.parse_args()
    rules = args.rules.split(",")
    sizes = (100, 300, 1000, 5000) if args.bulk <= 0.5 else (50, 100, 300, 1000)
    jobs, seed = [], 5000
    for n in sizes:
        jobs += [(seed + i, "pl", n, a, args.reps, args.bulk, rules)
                 for i, a in enumerate(np.repeat((1.5, 2.0, 3.0, 4.0), args.per))]
        seed += 1000
        if args.bulk <= 0.5:
            jobs += [(seed + i, "ln", n, s, args.reps, args.bulk, rules)
                     for i, s in enumerate(np.repeat((0.5, 1.0, 2.0), args.per))]
            seed += 1000
    t0 = time.time()
    with Pool(2) as pool:
        res = pool.map(one, jobs, chunksize=1)
    print(f"{len(jobs)} samples, {args.reps} replicates, bulk {args.bulk}, {time.time() - t0:.0f} s")
    print("| rule | size (PL, p<0.1) | by tail n " + str(sizes) + " | KS-vs-U p | power (LN) by N = 1.5n | all | median LN tail |")
    for r in rules:
        pl = [(o["n"], o[r][0]) for o in res if o["kind"] == "pl"]
        p = np.array([v for _, v in pl])
        by = [float(np.mean([v < 0.1 for m, v in pl if m == n])) for n in sizes]
        row = f"| {r} | {np.mean(p < 0.1):.3f} | {[round(b, 2) for b in by]} | {scipy.stats.kstest(p, 'uniform').pvalue:.2g} |"
        ln = [o for o in res if o["kind"] == "ln"]
        if ln:
            pw = [float(np.mean([o[r][0] < 0.1 for o in ln if o["n"] == n])) for n in sizes]
            med = [int(np.median([o[r][1] for o in ln if o["n"] == n])) for n in sizes]
            row += f" {[round(v, 2) for v in pw]} | {np.mean([o[r][0] < 0.1 for o in ln]):.2f} | {med} |"
        print(row)


if __name__ == "__main__":
    main()
