"""How far to trust a power-law fit: every uncertainty and plausibility column of one layer.

:func:`tail_uncertainty` runs, on the values a fit saw, the Bayesian posterior of alpha (always; closed
form), the alternative-tail comparisons with TPL and E-TPL (``tails``; a few ms) and the bootstrap
(``bootstrap`` replicates; opt-in, the costly part), and returns the result columns by name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .bayes import bayesian_alpha, bayesian_alpha_averaged
from .bootstrap import bootstrap_power_law
from .powerlaw import PowerLawFit, fit_power_law
from .tails import compare_tails
from .tpl import fit_truncated_power_law

__all__ = ["MIN_WARNING_REPLICATES", "interval_of", "tail_uncertainty", "warning_interval"]


def tail_uncertainty(x: np.ndarray, fit: PowerLawFit, *, xmin: str | float = "ks", tails: bool = True,
                     bootstrap: int = 0, seed: int = 0, confidence: float = 0.95, prior_shape: float = 0.0,
                     prior_rate: float = 0.0, bayes_average: bool = False,
                     notes: list[str] | None = None, share: float = 1.0) -> dict[str, Any]:
    """Columns for a successful ``fit`` of the values ``x`` (any order), those the fit was given (its top
    ``num_fingers``, which clip_xmax or drop_top left out, included) (only the columns computed). Why a computed
    column is NaN (a TPL or E-TPL fit that failed) is appended to ``notes`` when given: a layer's status.
    ``share`` (≤ 1): the information each value carries when they are not independent (FARMS' windows overlap,
    repeating rows: the share of the pooled entries that are distinct); the intervals, tests and bootstrap
    count the values as share·n independent ones."""
    out: dict[str, Any] = {}
    if fit.status != "ok" or not math.isfinite(fit.alpha):
        return out
    x = np.asarray(x, dtype=np.float64)
    if x.size > 1 and not bool(np.all(x[1:] >= x[:-1])):  # (as fit_power_law takes them: any order; the top by
        x = np.sort(x)  # count below had been the last positions of unsorted values, h57)
    # the values the fit saw: clip_xmax and drop_top leave out the top num_fingers, by count (by value, x ≤ xmax, a
    # dropped one equal to the largest kept had come back: the intervals, tests and warning of another tail, h56)
    seen = x[:x.size - fit.num_fingers]
    # its tail: the top n (every value ≥ x_min: the scan's candidates start a run of equal values)
    n = fit.num_pl_spikes
    tail = seen[seen.size - n:] if 0 < n <= seen.size and seen[seen.size - n] == fit.xmin else seen[seen >= fit.xmin]
    b = bayesian_alpha(tail, fit.xmin, confidence, prior_shape, prior_rate, share)
    out.update(bayes_alpha=b.mean, bayes_alpha_lo=b.lo, bayes_alpha_hi=b.hi, p_alpha_lt_2=b.p_lt_2,
               p_alpha_gt_6=b.p_gt_6)
    if bayes_average:  # a diagnostic of how much x_min matters, in its own columns
        a = bayesian_alpha_averaged(seen, confidence, prior_shape, prior_rate, share=share)
        out.update(bayes_avg_alpha=a.mean, bayes_avg_alpha_lo=a.lo, bayes_avg_alpha_hi=a.hi)
    if tails:
        c = compare_tails(tail, fit.alpha, fit.xmin, share)
        out.update(best_fit=c.best_fit, lr_exponential=c.lr_exponential, p_exponential=c.p_exponential,
                   lr_lognormal=c.lr_lognormal, p_lognormal=c.p_lognormal, lr_tpl=c.lr_tpl, p_tpl=c.p_tpl,
                   tpl_alpha=c.tpl.alpha, tpl_Lambda=c.tpl.Lambda)
        peak = fit if xmin == "peak" else fit_power_law(seen, xmin="peak")
        e = fit_truncated_power_law(seen[seen >= peak.xmin], peak.xmin) if peak.status == "ok" else None
        if e is not None:
            out.update(etpl_alpha=e.alpha, etpl_Lambda=e.Lambda, etpl_xmin=peak.xmin)
        if notes is not None:
            notes += [f"{name} {f.status}" for name, f in (("tpl", c.tpl), ("etpl", e))
                      if f is not None and f.status != "ok"]
            if e is None:
                notes.append(f"etpl not fitted: no peak-bounded x_min ({peak.status})")
    if bootstrap > 0:
        r = bootstrap_power_law(seen, fit, bootstrap, seed, xmin, confidence, share=share)
        out.update(boot_alpha_lo=r.alpha_lo, boot_alpha_hi=r.alpha_hi, boot_alpha_se=r.alpha_se,
                   pl_pvalue=r.p_value, num_boot=float(r.num_ok))
    return out


#: a bootstrap with fewer successful replicates is too coarse to drive the warnings (its interval's ends are
#: among the most extreme replicates, its p-value moves in steps of 1/N): they use the Bayesian interval
MIN_WARNING_REPLICATES = 100


def interval_of(columns: dict[str, Any]) -> tuple[float, float, float]:
    """The interval of alpha and the goodness-of-fit p-value the warning uses: the bootstrap's when at least
    :data:`MIN_WARNING_REPLICATES` replicates succeeded; else the Bayesian interval at the fitted x_min and
    no p-value (NaN). Never the ``bayes_average`` posterior, which mixes every x_min candidate: it shows
    how much the choice of x_min matters, it is no interval for the fitted alpha."""
    nan = float("nan")
    if (columns.get("num_boot", nan) >= MIN_WARNING_REPLICATES and math.isfinite(columns.get("boot_alpha_lo", nan))
            and math.isfinite(columns.get("boot_alpha_hi", nan))):
        return columns["boot_alpha_lo"], columns["boot_alpha_hi"], columns.get("pl_pvalue", nan)
    return columns.get("bayes_alpha_lo", nan), columns.get("bayes_alpha_hi", nan), nan


def warning_interval(options: dict[str, Any]) -> str:
    """Which interval of alpha :func:`interval_of` gives the warnings under these analysis options, in words
    (the model summary's label): the bootstrap's from :data:`MIN_WARNING_REPLICATES` replicates, else the
    Bayesian one at the ``confidence`` level."""
    level = f"{100 * options.get('confidence', 0.95):.10g}%"  # (0.999 is 99.9 %, not a rounded '100%')
    boot = options.get("bootstrap", 0) or 0
    if boot >= MIN_WARNING_REPLICATES:
        return f"bootstrap, {level} (Bayesian on a layer with fewer than {MIN_WARNING_REPLICATES} good replicates)"
    return f"Bayesian, {level}" + (f"; a bootstrap of {boot} < {MIN_WARNING_REPLICATES} replicates is not used" if boot else "")
