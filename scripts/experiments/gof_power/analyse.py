"""Summarise res.json from gof_exp.py.   python analyse.py [res.json]"""
import json
import sys

import numpy as np
import scipy.stats

res = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "results/res.json"))
import os
if os.path.exists("results/res_median.json"):  # merge the xmin='median' reference by seed
    med = {r["seed"]: r["median"] for r in json.load(open("results/res_median.json"))}
    for r in res:
        if r["seed"] in med:
            r["median"] = med[r["seed"]]
pl = [r for r in res if r["kind"] == "pl"]
ln = [r for r in res if r["kind"] == "ln"]
sizes = sorted({r["n"] for r in res})
cands = ["base", "b_AD", "b_W", "d_LR", "d_bonf", "d_minp", "c_AD", "e_LRAD", "c_ADLR", "c_W", "median"]
print(f"{len(pl)} PL samples, {len(ln)} LN samples\n")
print("| candidate | KS-vs-U p (PL) | size @0.1 (PL) | " + " | ".join(f"power N={n + n // 2}" for n in sizes)
      + " | power all |")
print("|---" * (5 + len(sizes)) + "|")
for c in cands:
    ps = np.array([r[c] for r in pl if c in r])
    if ps.size == 0:
        continue
    ks = scipy.stats.kstest(ps, "uniform").pvalue
    size = np.mean(ps < 0.1)
    pw = [np.mean([r[c] < 0.1 for r in ln if r["n"] == n and c in r]) for n in sizes]
    pall = np.mean([r[c] < 0.1 for r in ln if c in r])
    print(f"| {c} | {ks:.3g} | {size:.3f} | " + " | ".join(f"{p:.2f}" for p in pw) + f" | {pall:.2f} |")
print("\nsize by n (PL, share p<0.1):")
for c in cands:
    print(c, [round(float(np.mean([r[c] < 0.1 for r in pl if r["n"] == n and c in r])), 2) for n in sizes])
print("\nPL deciles:")
for c in cands:
    ps = np.array([r[c] for r in pl if c in r])
    print(c, np.histogram(ps, bins=10, range=(0, 1))[0].tolist())
print("\nmedian tail sizes (LN / PL):")
for k in ("ntail_ks", "ntail_ad", "ntail_w"):
    print(k, [int(np.median([r[k] for r in ln if r["n"] == n and k in r])) for n in sizes],
          [int(np.median([r[k] for r in pl if r["n"] == n and k in r])) for n in sizes])
print("\nmean time per sample (s, reps as run): ks-boot, ad-boot, w-boot by n")
for n in sizes:
    print(n, [round(float(np.mean([r[k] for r in res if r["n"] == n])), 2) for k in ("t_ks", "t_ad", "t_w")])
