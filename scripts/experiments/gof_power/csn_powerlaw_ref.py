"""Independent reference: power of the CSN (2009) semi-parametric bootstrap GOF test against log-normal
samples, computed with the `powerlaw` package (Alstott et al.), next to htsr's p-values on the same samples.

Samples from scripts/calibrate_uncertainty.py's `sample`.
Seeds: sample i (global counter over all cells, in cell order) has seed 10_000 + i; the powerlaw-package
CSN bootstrap uses np.random.default_rng((seed, 7)); htsr's bootstrap uses seed=seed.

    OMP_NUM_THREADS=1 python csn_powerlaw_ref.py [--reps 100] [--budget 2950]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import powerlaw

from htsr.fits.bootstrap import bootstrap_power_law
from htsr.fits.powerlaw import fit_power_law

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from calibrate_uncertainty import sample  # the calibration's samples, seed for seed

warnings.filterwarnings("ignore")
OUT = str(Path(__file__).resolve().parent / "results" / "res_powerlaw_ref.json")


def pl_fit(x: np.ndarray):
    """powerlaw.Fit, continuous, KS-minimising x_min over all unique data values; its progress
    printing (to stdout, regardless of verbose) is swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        f = powerlaw.Fit(x, discrete=False, verbose=False)
    return f


def csn_pvalue(x: np.ndarray, f, reps: int, rng: np.random.Generator) -> tuple[float, int, list[float]]:
    N = x.size
    xmin, alpha, D = float(f.xmin), float(f.alpha), float(f.D)
    bulk = x[x < xmin]
    n_tail = int(np.sum(x >= xmin))
    Ds = []
    for _ in range(reps):
        nt = int(rng.binomial(N, n_tail / N)) if bulk.size else N
        tail = xmin * (1.0 - rng.random(nt)) ** (-1.0 / (alpha - 1.0))
        low = rng.choice(bulk, N - nt, replace=True) if N - nt > 0 else np.empty(0)
        syn = np.sort(np.concatenate([low, tail]))
        if not np.isfinite(syn[-1]):
            continue
        fr = pl_fit(syn)
        if np.isfinite(fr.D):
            Ds.append(float(fr.D))
    Ds_a = np.array(Ds)
    return float(np.mean(Ds_a >= D)), len(Ds), Ds


def one(seed: int, kind: str, n: int, param: float, reps: int) -> dict:
    x = sample(seed, kind, n, param)
    t0 = time.perf_counter()
    f = pl_fit(x)
    p_pl, num_ok, _ = csn_pvalue(x, f, reps, np.random.default_rng((seed, 7)))
    t_pl = time.perf_counter() - t0
    t1 = time.perf_counter()
    h = fit_power_law(x)
    b = bootstrap_power_law(x, h, reps, seed=seed)
    t_h = time.perf_counter() - t1
    return dict(
        seed=seed, kind=kind, n=n, N=int(x.size), param=param,
        pl_xmin=float(f.xmin), pl_alpha=float(f.alpha), pl_D=float(f.D), pl_n_tail=int(f.n_tail),
        pl_noise_flag=bool(f.noise_flag), pl_p=p_pl, pl_num_ok=num_ok,
        h_xmin=h.xmin, h_alpha=h.alpha, h_D=h.D, h_n_tail=h.num_pl_spikes,
        h_p=b.p_value, h_p_csn=getattr(b, "p_value_csn", float("nan")), h_num_ok=b.num_ok,
        xmin_agree=bool(abs(f.xmin - h.xmin) <= 1e-9 * abs(h.xmin)),
        t_pl=t_pl, t_htsr=t_h,
    )


def table(rows: list[dict]) -> None:
    cells = []
    for r in rows:
        key = (r["kind"], r["param"], r["N"])
        if key not in cells:
            cells.append(key)
    print("| cell | N | samples | powerlaw CSN p<0.1 | htsr p<0.1 | htsr p_csn<0.1 | med n_tail pl/htsr | "
          "med x_min pl/htsr | x_min agree | med alpha pl/htsr |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, param, N in cells:
        rs = [r for r in rows if (r["kind"], r["param"], r["N"]) == (kind, param, N)]
        name = f"log-normal s={param}" if kind == "ln" else f"power law a={param}"
        m = lambda k: np.median([r[k] for r in rs])  # noqa: E731
        s = lambda k: np.mean([r[k] < 0.1 for r in rs])  # noqa: E731
        print(f"| {name} | {N} | {len(rs)} | {s('pl_p'):.2f} | {s('h_p'):.2f} | {s('h_p_csn'):.2f} | "
              f"{m('pl_n_tail'):.0f}/{m('h_n_tail'):.0f} | {m('pl_xmin'):.3g}/{m('h_xmin'):.3g} | "
              f"{np.mean([r['xmin_agree'] for r in rs]):.2f} | {m('pl_alpha'):.2f}/{m('h_alpha'):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--per", type=int, default=20, help="log-normal samples per cell (N=150,450,1500)")
    ap.add_argument("--per-pl", type=int, default=10)
    ap.add_argument("--per-big", type=int, default=8, help="log-normal N=7500 samples (time permitting)")
    ap.add_argument("--budget", type=float, default=2950.0, help="seconds; N=7500 samples stop before it")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if args.table_only:
        table(json.load(open(OUT))["rows"])
        return
    jobs, i = [], 0
    for n in (100, 300, 1000):
        for _ in range(args.per):
            jobs.append((10_000 + i, "ln", n, 1.0)); i += 1
    for a in (2.0, 3.0):
        for _ in range(args.per_pl):
            jobs.append((10_000 + i, "pl", 300, a)); i += 1
    big = []
    for _ in range(args.per_big):
        big.append((10_000 + i, "ln", 5000, 1.0)); i += 1
    t0 = time.perf_counter()
    rows: list[dict] = []

    def save(note: str = "") -> None:
        with open(OUT, "w") as fh:
            json.dump(dict(reps=args.reps, elapsed=time.perf_counter() - t0, note=note, rows=rows), fh, indent=1)

    for job in jobs:
        rows.append(one(*job, args.reps))
        r = rows[-1]
        print(f"[{time.perf_counter() - t0:7.1f}s] seed {r['seed']} {r['kind']} N={r['N']} p_pl={r['pl_p']:.2f} "
              f"p_h={r['h_p']:.2f} xmin {r['pl_xmin']:.4g}/{r['h_xmin']:.4g}", file=sys.stderr, flush=True)
        save()
    last = 360.0  # estimated seconds per N=7500 sample (measured 3.3 s per powerlaw.Fit)
    skipped = 0
    for job in big:
        if time.perf_counter() - t0 + last > args.budget:
            skipped += 1
            continue
        ts = time.perf_counter()
        rows.append(one(*job, args.reps))
        last = time.perf_counter() - ts
        r = rows[-1]
        print(f"[{time.perf_counter() - t0:7.1f}s] seed {r['seed']} {r['kind']} N={r['N']} p_pl={r['pl_p']:.2f} "
              f"p_h={r['h_p']:.2f} xmin {r['pl_xmin']:.4g}/{r['h_xmin']:.4g}", file=sys.stderr, flush=True)
        save()
    note = f"N=7500 cell: {args.per_big - skipped} of {args.per_big} samples run (time budget {args.budget:.0f} s)"
    save(note)
    print(f"{len(rows)} samples, {args.reps} replicates each, wall {time.perf_counter() - t0:.0f} s; {note}\n")
    table(rows)


if __name__ == "__main__":
    main()
