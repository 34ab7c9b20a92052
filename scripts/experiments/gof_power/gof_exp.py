"""GOF-test power experiment (scratch; does not modify /work/main).

Samples as scripts/calibrate_uncertainty.py: Pareto tail n values (alpha in {1.5,2,3,4}, x_min=1) + n/2
uniform bulk on [0.05,1); log-normal mu=0, sigma in {0.5,1,2}, size 1.5n; n in {100,300,1000,5000}.

Candidates (all full semi-parametric bootstraps, x_min re-chosen in every replicate):
  base   : htsr p (KS x_min scan, T = sqrt(n) D)                       [bootstrap 1, KS-spliced]
  b_AD   : KS x_min, Anderson-Darling A^2 of the fitted tail            [bootstrap 1]
  b_W    : KS x_min, weighted KS max|F_e-F|/sqrt(F(1-F))                [bootstrap 1]
  d_LR   : KS x_min, Vuong z of PL vs truncated log-normal (one-sided, bootstrap p)   [bootstrap 1]
  d_minp : min-p of (base, d_LR) calibrated on the replicates           [bootstrap 1]
  d_bonf : 2*min(p_base, p_LR)
  c_AD   : x_min = argmin A^2 on a geometric grid of tail sizes, stat A^2   [bootstrap 2, AD-spliced]
  c_ADLR : min-p of (c_AD, LR z on the AD tail)                          [bootstrap 2]
  c_W    : x_min = argmin weighted KS on the grid, stat weighted KS        [bootstrap 3, W-spliced]
  e_LRAD : LR z alone on the AD tail (bootstrap 2)

    python gof_exp.py --per 8 --reps 100 --workers 2 --out res.json
"""
from __future__ import annotations

import argparse
import json
import math
import time
from multiprocessing import Pool

import numpy as np
import scipy.special

from htsr.fits.bootstrap import _replicates, bootstrap_power_law
from htsr.fits.powerlaw import PowerLawFit, _fit_once, fit_power_law
import scipy.optimize


def _lognormal_logpdf(x, xmin, maxiter=600):
    """Copy of htsr.fits.tails._lognormal_logpdf with looser NM tolerances and maxiter (speed: on
    power-law tails the truncated log-normal MLE runs off to mu -> -inf, and htsr's runs 4000 iters)."""
    y = np.log(x); y0 = math.log(xmin)
    ybar, y2bar = float(np.mean(y)), float(np.mean(y * y))

    def nll(p):
        mu, log_s = float(p[0]), float(p[1]); s = math.exp(log_s)
        quad = (y2bar - 2.0 * mu * ybar + mu * mu) / (2.0 * s * s)
        return quad + log_s + float(scipy.special.log_ndtr(-(y0 - mu) / s))

    s0 = max(float(np.std(y)), 1e-3)
    res = scipy.optimize.minimize(nll, np.array([ybar, math.log(s0)]), method="Nelder-Mead",
                                  options={"xatol": 1e-7, "fatol": 1e-11, "maxiter": maxiter})
    mu, s = float(res.x[0]), math.exp(float(res.x[1]))
    z = (y - mu) / s
    return -0.5 * z * z - math.log(s * math.sqrt(2.0 * math.pi)) - y - float(scipy.special.log_ndtr(-(y0 - mu) / s))

SIZES = (100, 300, 1000, 5000)
ALPHAS = (1.5, 2.0, 3.0, 4.0)
SIGMAS = (0.5, 1.0, 2.0)
MIN_TAIL = 10


def sample(seed, kind, n, param):
    rng = np.random.default_rng(seed)
    if kind == "pl":
        tail = (1.0 - rng.random(n)) ** (-1.0 / (param - 1.0))
        return np.sort(np.concatenate([rng.uniform(0.05, 1.0, n // 2), tail]))
    return np.sort(rng.lognormal(0.0, param, n + n // 2))


# ---------------------------------------------------------------- statistics on a fixed tail
def tail_u(tail, xmin):
    """alpha MLE and fitted CDF values u (sorted) of a sorted tail."""
    n = tail.size
    lg = np.log(tail / xmin)
    s = lg.sum()
    if s <= 0:
        return None, None
    a = 1.0 + n / s
    u = -np.expm1((1.0 - a) * lg)
    return a, u


def ad_stat(u):
    n = u.size
    u = np.clip(u, 1e-300, 1 - 1e-16)
    i = np.arange(1, n + 1)
    return float(-n - np.mean((2 * i - 1) * (np.log(u) + np.log1p(-u[::-1]))))


def wks_stat(u):
    """max |F_emp - F| / sqrt(F(1-F)), both empirical steps; points with F in (0,1)."""
    n = u.size
    k = np.arange(n)
    uu = np.clip(u, 1.0 / (10 * n * n), 1 - 1.0 / (10 * n * n))  # keep finite at u = 0 (x = xmin)
    d = np.maximum(np.abs(uu - k / n), np.abs((k + 1) / n - uu))
    return float(np.max(d / np.sqrt(uu * (1 - uu))))


def lr_z(tail, a, xmin):
    """Vuong normalised z = R / (sd sqrt n) of PL vs truncated log-normal; < 0 favours log-normal."""
    lp = math.log((a - 1.0) / xmin) - a * np.log(tail / xmin)
    with np.errstate(all="ignore"):
        d = lp - _lognormal_logpdf(tail, xmin)
    sd = float(np.std(d))
    if not np.isfinite(sd) or sd <= 0:
        return 0.0
    return float(d.sum() / (sd * math.sqrt(d.size)))


# ---------------------------------------------------------------- grid x_min choice
def grid_idx(N):
    sizes = np.unique(np.round(np.geomspace(MIN_TAIL, N, 60)).astype(int))
    sizes = sizes[(sizes >= MIN_TAIL) & (sizes <= N)]
    return N - sizes


def fit_grid(x, stat):
    """x_min on the geometric grid minimising stat(u); returns (PowerLawFit, stat value)."""
    best = None
    for i in grid_idx(x.size):
        tail = x[i:]
        if tail[0] == tail[-1]:
            continue
        a, u = tail_u(tail, tail[0])
        if a is None or not np.isfinite(a):
            continue
        s = stat(u)
        if best is None or s < best[0]:
            best = (s, i, a)
    if best is None:
        return None, np.nan
    s, i, a = best
    n = x.size - i
    f = PowerLawFit(float(a), (a - 1) / math.sqrt(n), np.nan, float(x[i]), float(x[-1]), int(n), "ok")
    return f, s


# ---------------------------------------------------------------- bootstraps
def boot_ks(x, f, reps, seed, lr=True):
    """Bootstrap 1 (KS scan). Returns dict of data stats and arrays of replicate stats."""
    rng = np.random.default_rng(seed)
    draws = _replicates(x, f, rng, (reps, x.size))

    def stats(row, g):
        tail = row[row >= g.xmin]
        a, u = tail_u(tail, g.xmin)
        out = [g.D * math.sqrt(g.num_pl_spikes), ad_stat(u), wks_stat(u)]
        out.append(lr_z(tail, g.alpha, g.xmin) if lr else np.nan)
        return out

    t0 = stats(x, f)
    R = []
    for r in range(reps):
        row = draws[r]
        if not np.isfinite(row[-1]):
            continue
        g = _fit_once(row, "ks")
        if g.status != "ok":
            continue
        R.append(stats(row, g))
    return np.array(t0), np.array(R)


def boot_grid(x, stat, reps, seed, lr=False):
    f, s0 = fit_grid(x, stat)
    if f is None:
        return None, None, None
    rng = np.random.default_rng(seed + 10_000_000)
    draws = _replicates(x, f, rng, (reps, x.size))
    t0 = [s0, lr_z(x[x >= f.xmin], f.alpha, f.xmin) if lr else np.nan]
    R = []
    for r in range(reps):
        row = draws[r]
        if not np.isfinite(row[-1]):
            continue
        g, s = fit_grid(row, stat)
        if g is None:
            continue
        R.append([s, lr_z(row[row >= g.xmin], g.alpha, g.xmin) if lr else np.nan])
    return f, np.array(t0), np.array(R)


def pv_upper(t, T):  # large stat = bad fit
    return float(np.mean(T >= t))


def pv_lower(t, T):  # small stat (z) = favours log-normal
    return float(np.mean(T <= t))


def minp(p_data, Tcols, upper_flags):
    """Min-p combination calibrated on the replicates: each replicate's own p-values (ranks among the
    replicates), its min; combined p = share of replicates with min-p* <= min-p of the data."""
    B = Tcols[0].size
    pstar = []
    for T, up in zip(Tcols, upper_flags):
        order = np.sort(T)
        if up:  # share of replicates >= T_j
            pj = (B - np.searchsorted(order, T, side="left")) / B
        else:
            pj = np.searchsorted(order, T, side="right") / B
        pstar.append(pj)
    mstar = np.min(pstar, axis=0)
    return float(np.mean(mstar <= min(p_data)))


def one(job):
    seed, kind, n, param, reps = job
    x = sample(seed, kind, n, param)
    out = dict(kind=kind, n=n, param=param, seed=seed)
    t = time.perf_counter()
    f = fit_power_law(x)
    t0, R = boot_ks(x, f, reps, seed)
    out["t_ks"] = time.perf_counter() - t
    out["ntail_ks"] = f.num_pl_spikes
    p_base = pv_upper(t0[0], R[:, 0])
    p_lr = pv_lower(t0[3], R[:, 3])
    out.update(base=p_base, b_AD=pv_upper(t0[1], R[:, 1]), b_W=pv_upper(t0[2], R[:, 2]), d_LR=p_lr,
               d_bonf=min(1.0, 2 * min(p_base, p_lr)),
               d_minp=minp([p_base, p_lr], [R[:, 0], R[:, 3]], [True, False]),
               z_ks=t0[3])
    t = time.perf_counter()
    fa, ta, Ra = boot_grid(x, ad_stat, reps, seed, lr=True)
    out["t_ad"] = time.perf_counter() - t
    if fa is not None:
        pa = pv_upper(ta[0], Ra[:, 0])
        pl = pv_lower(ta[1], Ra[:, 1])
        out.update(c_AD=pa, e_LRAD=pl, c_ADLR=minp([pa, pl], [Ra[:, 0], Ra[:, 1]], [True, False]),
                   ntail_ad=fa.num_pl_spikes)
    t = time.perf_counter()
    fw, tw, Rw = boot_grid(x, wks_stat, reps, seed)
    out["t_w"] = time.perf_counter() - t
    if fw is not None:
        out.update(c_W=pv_upper(tw[0], Rw[:, 0]), ntail_w=fw.num_pl_spikes)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per", type=int, default=8)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="results/res.json")
    ap.add_argument("--check", action="store_true", help="check base == htsr bootstrap_power_law p")
    args = ap.parse_args()
    if args.check:
        for seed in range(3):
            x = sample(seed, "pl", 300, 2.0)
            f = fit_power_law(x)
            b = bootstrap_power_law(x, f, 50, seed=seed)
            t0, R = boot_ks(x, f, 50, seed, lr=False)
            print("htsr p", b.p_value, "mine", pv_upper(t0[0], R[:, 0]))
        return
    jobs, seed = [], 1000
    for n in SIZES:
        for a in ALPHAS:
            for _ in range(args.per):
                jobs.append((seed, "pl", n, a, args.reps)); seed += 1
        for s in SIGMAS:
            for _ in range(args.per):
                jobs.append((seed, "ln", n, s, args.reps)); seed += 1
    jobs.sort(key=lambda j: -j[2])  # big first for load balance
    t0 = time.perf_counter()
    with Pool(args.workers) as pool:
        res = []
        for i, r in enumerate(pool.imap_unordered(one, jobs, chunksize=1)):
            res.append(r)
            if i % 20 == 0:
                print(i, len(jobs), f"{time.perf_counter() - t0:.0f}s", flush=True)
                json.dump(res, open(args.out, "w"))
    json.dump(res, open(args.out, "w"))
    print("done", time.perf_counter() - t0)


if __name__ == "__main__":
    main()
