"""Time htsr's uncertainty fits on a 4096-eigenvalue spectrum against the ``powerlaw`` package.

The spectrum: the 2048 eigenvalues of XᵀX/N for a seeded 4096 × 2048 Gaussian X (a Marchenko–Pastur
bulk) plus 2048 Pareto values (density exponent 2.5) above its upper edge — 4096 values, the size of
one layer of a 7B model. In one process, on the same values:

* htsr bootstrap   ``bootstrap_power_law(x, fit, 200)``: 200 replicates, x_min refitted in each
                   (with ``--fdb`` also ``fdb=True``: one second-level replicate each, twice the fits)
* htsr TPL         ``fit_truncated_power_law(tail, xmin)`` at the KS x_min. This tail's mean log-excess is past
                   the boundary (ū ≥ a/(a − 1)), so the fit is the plain power law, found in closed form (no search);
                   the TPL is also timed on a seeded TPL sample of the tail's size (α 2.5, Λ·x_min 0.05: the
                   Newton search runs)
* powerlaw         one ``powerlaw.Fit(x)`` (its x_min scan; a bootstrap replicate costs one such fit)
                   and ``fit.truncated_power_law`` (its TPL fit, which calls mpmath per point), on both samples

Medians of ``--repeats`` runs for htsr, of ``--repeats // 2`` for powerlaw (a second each). powerlaw's bootstrap
time is extrapolated as 200 × one fit (it has no bootstrap of its own); its version is printed (2.0 as
benchmarks/requirements.txt installs it with WeightWatcher, 1.5 in htsr's test extra). Usage::

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_uncertainty.py [--repeats 5] [--fdb]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import warnings

import numpy as np

from htsr.fits.bootstrap import bootstrap_power_law
from htsr.fits.powerlaw import fit_power_law
from htsr.fits.tpl import fit_truncated_power_law


def spectrum(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4096, 2048))
    bulk = np.linalg.eigvalsh(X.T @ X / 4096)
    tail = bulk[-1] * (1.0 - rng.random(2048)) ** (-1.0 / 1.5)
    return np.sort(np.concatenate([bulk, tail]))


def tpl_sample(n: int, xmin: float, alpha: float = 2.5, lam: float = 0.05, seed: int = 1) -> np.ndarray:
    """``n`` values of the truncated power law x^(−alpha)·exp(−lam·x/xmin) above ``xmin``: Pareto draws kept with
    probability exp(−lam·(x − xmin)/xmin) (rejection)."""
    rng, out = np.random.default_rng(seed), []
    while sum(map(len, out)) < n:
        x = xmin * (1.0 - rng.random(4 * n)) ** (-1.0 / (alpha - 1.0))
        out.append(x[rng.random(x.size) < np.exp(-lam * (x - xmin) / xmin)])
    return np.sort(np.concatenate(out)[:n])


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reps", type=int, default=200, help="bootstrap replicates")
    ap.add_argument("--fdb", action="store_true", help="also time the fast double bootstrap")
    args = ap.parse_args()
    x = spectrum()
    fit = fit_power_law(x)
    tail = x[x >= fit.xmin]
    print(f"spectrum: {x.size} eigenvalues; KS fit alpha = {fit.alpha:.4f}, x_min = {fit.xmin:.4g}, "
          f"tail n = {fit.num_pl_spikes}")

    t_boot, boot = timed(lambda: bootstrap_power_law(x, fit, args.reps, seed=0), args.repeats)
    print(f"htsr bootstrap ({args.reps} replicates): {t_boot:.3f} s  "
          f"(95% interval {boot.alpha_lo:.3f}..{boot.alpha_hi:.3f}, p = {boot.p_value:.3f})")
    if args.fdb:
        t_fdb, fdb = timed(lambda: bootstrap_power_law(x, fit, args.reps, seed=0, fdb=True), args.repeats)
        print(f"htsr bootstrap with FDB:            {t_fdb:.3f} s  (FDB p = {fdb.p_value_fdb:.3f})")
    t_tpl, tpl = timed(lambda: fit_truncated_power_law(tail, fit.xmin), args.repeats)
    print(f"htsr TPL fit:                       {t_tpl * 1000:.1f} ms  "
          f"(alpha {tpl.alpha:.4f}, Lambda {tpl.Lambda:.4g}{': the power law, in closed form' if tpl.Lambda == 0 else ''})")
    cut = tpl_sample(tail.size, fit.xmin)  # (a cut-off: the TPL's search runs)
    t_cut, tpl_cut = timed(lambda: fit_truncated_power_law(cut, fit.xmin), args.repeats)
    print(f"htsr TPL fit of a TPL sample:       {t_cut * 1000:.1f} ms  "
          f"(alpha {tpl_cut.alpha:.4f}, Lambda·x_min {tpl_cut.Lambda * fit.xmin:.4g}; drawn at 2.5, 0.05)")

    try:
        import powerlaw
    except ImportError:
        print("powerlaw not installed: no reference timings (pip install -r benchmarks/requirements.txt)")
        return
    from importlib.metadata import version

    print(f"powerlaw {version('powerlaw')}:")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its progress output
        warnings.simplefilter("ignore")
        t_pl_fit, pfit = timed(lambda: powerlaw.Fit(x, verbose=False), max(1, args.repeats // 2))
        fixed = powerlaw.Fit(x, xmin=fit.xmin, verbose=False)
        t_pl_tpl, ptpl = timed(lambda: (fixed.__dict__.pop("truncated_power_law", None),
                                        fixed.truncated_power_law)[1], max(1, args.repeats // 2))
        fixed_cut = powerlaw.Fit(cut, xmin=fit.xmin, verbose=False)
        t_pl_cut, ptpl_cut = timed(lambda: (fixed_cut.__dict__.pop("truncated_power_law", None),
                                            fixed_cut.truncated_power_law)[1], max(1, args.repeats // 2))
    print(f"powerlaw one Fit (x_min scan):      {t_pl_fit:.3f} s  (alpha {pfit.power_law.alpha:.4f})"
          f" -> {args.reps} replicates ~ {args.reps * t_pl_fit:.1f} s")
    print(f"powerlaw TPL fit:                   {t_pl_tpl * 1000:.1f} ms  "
          f"(alpha {ptpl.alpha:.4f}, Lambda {ptpl.Lambda:.4g})")
    print(f"powerlaw TPL fit of the TPL sample: {t_pl_cut * 1000:.1f} ms  "
          f"(alpha {ptpl_cut.alpha:.4f}, Lambda·x_min {ptpl_cut.Lambda * fit.xmin:.4g})")
    print(f"ratios (powerlaw / htsr): bootstrap {args.reps * t_pl_fit / t_boot:.1f}x, TPL {t_pl_tpl / t_tpl:.1f}x, "
          f"TPL sample {t_pl_cut / t_cut:.1f}x")


if __name__ == "__main__":
    main()
