"""Extra: (1) c_KSg = x_min by min sqrt(n)·D, and c_KSgD = x_min by min D (htsr's criterion), both on the
same geometric grid as c_AD (min tail 10), test stat sqrt(n)·D -- separates 'grid' from 'AD' in c_AD's power; all gof_exp samples (same seeds).
(2) a larger size n = 20000 (N = 30000), sigma = 1 log-normals and alpha = 2 power laws, grid candidates
only (c_AD, e_LRAD, c_ADLR, c_KSg).     python gof_extra.py --per 8 --reps 100"""
import argparse, json, math, time
from multiprocessing import Pool
import numpy as np
import gof_exp as g

def ks_scaled(u):
    n = u.size; k = np.arange(n)
    return float(math.sqrt(n) * np.max(np.abs(u - k / n)))  # htsr's lower step k/n

def ks_D(u):
    n = u.size; k = np.arange(n)
    return float(np.max(np.abs(u - k / n)))


def boot_grid_D(x, reps, seed):
    """x_min = argmin D on the grid (as htsr's scan, but on the grid), test stat sqrt(n)·D."""
    f, D0 = g.fit_grid(x, ks_D)
    rng = np.random.default_rng(seed + 20_000_000)
    draws = g._replicates(x, f, rng, (reps, x.size))
    T = []
    for r in range(reps):
        row = draws[r]
        if not np.isfinite(row[-1]):
            continue
        h, D = g.fit_grid(row, ks_D)
        if h is not None:
            T.append(D * math.sqrt(h.num_pl_spikes))
    return f, D0 * math.sqrt(f.num_pl_spikes), np.array(T)


def one(job):
    seed, kind, n, param, reps, big = job
    x = g.sample(seed, kind, n, param)
    out = dict(seed=seed, kind=kind, n=n, param=param)
    f, t0, R = g.boot_grid(x, ks_scaled, reps, seed)
    out["c_KSg"] = g.pv_upper(t0[0], R[:, 0]); out["ntail_ksg"] = f.num_pl_spikes
    f, t0, T = boot_grid_D(x, reps, seed)
    out["c_KSgD"] = g.pv_upper(t0, T); out["ntail_ksgd"] = f.num_pl_spikes
    if big:
        fa, ta, Ra = g.boot_grid(x, g.ad_stat, reps, seed, lr=True)
        pa, pl = g.pv_upper(ta[0], Ra[:, 0]), g.pv_lower(ta[1], Ra[:, 1])
        out.update(c_AD=pa, e_LRAD=pl, c_ADLR=g.minp([pa, pl], [Ra[:, 0], Ra[:, 1]], [True, False]),
                   ntail_ad=fa.num_pl_spikes)
    return out

if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--per", type=int, default=8); ap.add_argument("--reps", type=int, default=100)
    a = ap.parse_args()
    jobs, seed = [], 1000
    for n in g.SIZES:
        for al in g.ALPHAS:
            for _ in range(a.per): jobs.append((seed, "pl", n, al, a.reps, False)); seed += 1
        for s in g.SIGMAS:
            for _ in range(a.per): jobs.append((seed, "ln", n, s, a.reps, False)); seed += 1
    seed = 50000
    for kind, p in (("ln", 1.0), ("pl", 2.0)):
        for _ in range(a.per): jobs.append((seed, kind, 20000, p, a.reps, True)); seed += 1
    jobs.sort(key=lambda j: -j[2])
    t = time.perf_counter()
    with Pool(2) as pool: res = pool.map(one, jobs, chunksize=1)
    json.dump(res, open("results/res_extra.json", "w")); print("done", time.perf_counter() - t)
    for c in ("c_KSg", "c_KSgD", "c_AD", "e_LRAD", "c_ADLR"):
        for n in g.SIZES + (20000,):
            ln = [r[c] < 0.1 for r in res if r["kind"] == "ln" and r["n"] == n and c in r]
            pl = [r[c] < 0.1 for r in res if r["kind"] == "pl" and r["n"] == n and c in r]
            if ln:
                print(c, "N =", n + n // 2, "LN power", round(float(np.mean(ln)), 2), f"({len(ln)})",
                      "PL size", round(float(np.mean(pl)), 2), f"({len(pl)})",
                      "median tail LN", int(np.median([r.get({'c_KSg': 'ntail_ksg', 'c_KSgD': 'ntail_ksgd'}.get(c, 'ntail_ad')) for r in res if r['kind'] == 'ln' and r['n'] == n])))
    import scipy.stats
    for c in ("c_KSg", "c_KSgD"):
      ps = [r[c] for r in res if r["kind"] == "pl" and r["n"] < 20000]
      print(c, "PL KS-vs-U p", scipy.stats.kstest(ps, "uniform").pvalue, "deciles", np.histogram(ps, 10, (0, 1))[0].tolist())
