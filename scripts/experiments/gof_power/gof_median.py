"""(e') reference: htsr bootstrap with the fixed-fraction tail xmin='median' (top half), same samples/seeds
as gof_exp.py.   python gof_median.py --per 8 --reps 100"""
import argparse, json, time
from multiprocessing import Pool
from htsr.fits.bootstrap import bootstrap_power_law
from htsr.fits.powerlaw import fit_power_law
import gof_exp as g

def one(job):
    seed, kind, n, param, reps = job
    x = g.sample(seed, kind, n, param)
    f = fit_power_law(x, xmin="median")
    b = bootstrap_power_law(x, f, reps, seed=seed, xmin="median")
    return dict(seed=seed, kind=kind, n=n, param=param, median=b.p_value)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--per", type=int, default=8); ap.add_argument("--reps", type=int, default=100)
    a = ap.parse_args()
    jobs, seed = [], 1000
    for n in g.SIZES:
        for al in g.ALPHAS:
            for _ in range(a.per): jobs.append((seed, "pl", n, al, a.reps)); seed += 1
        for s in g.SIGMAS:
            for _ in range(a.per): jobs.append((seed, "ln", n, s, a.reps)); seed += 1
    t = time.perf_counter()
    with Pool(2) as p: res = p.map(one, jobs, chunksize=4)
    json.dump(res, open("results/res_median.json", "w")); print("done", time.perf_counter() - t)
