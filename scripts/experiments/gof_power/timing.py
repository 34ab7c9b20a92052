"""Run time per sample, 200 replicates, single process: PL tail n = 4096 (+2048 bulk, alpha = 2) and a
log-normal layer of N = 4096 eigenvalues.   python timing.py"""
import time

import numpy as np

import gof_exp as g
from htsr.fits.bootstrap import bootstrap_power_law
from htsr.fits.powerlaw import fit_power_law

REPS = 200
for name, x in (("PL n=4096 tail (N=6144)", g.sample(7, "pl", 4096, 2.0)),
                ("LN N=4096", np.sort(np.random.default_rng(8).lognormal(0, 1, 4096)))):
    f = fit_power_law(x)
    t = time.perf_counter(); bootstrap_power_law(x, f, REPS, seed=1); t_base = time.perf_counter() - t
    t = time.perf_counter(); g.boot_ks(x, f, REPS, 1, lr=False); t_b = time.perf_counter() - t
    t = time.perf_counter(); g.boot_ks(x, f, REPS, 1, lr=True); t_d = time.perf_counter() - t
    t = time.perf_counter(); g.boot_grid(x, g.ad_stat, REPS, 1, lr=False); t_c = time.perf_counter() - t
    t = time.perf_counter(); g.boot_grid(x, g.ad_stat, REPS, 1, lr=True); t_cl = time.perf_counter() - t
    t = time.perf_counter(); g.boot_grid(x, g.wks_stat, REPS, 1); t_w = time.perf_counter() - t
    print(f"{name}: KS tail {f.num_pl_spikes}; base (htsr) {t_base:.2f}s | b (KS + AD/W stats) {t_b:.2f}s | "
          f"d (KS + LR) {t_d:.2f}s | c_AD {t_c:.2f}s | c_AD+LR {t_cl:.2f}s | c_W {t_w:.2f}s", flush=True)
