"""Per-layer metrics from a spectrum and its power-law fit (THEORY §4). Pure numpy.

:data:`METRICS` is the registry: each metric's name, meaning and function. Undefined values are NaN
(never −1); the layer's ``status`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .fits.powerlaw import PowerLawFit
from .spectra import Spectrum

__all__ = ["Metric", "METRICS", "compute_metrics", "warning_for", "UNDER_TRAINED", "OVER_TRAINED", "PLAUSIBLE_P"]

#: alpha above this: the layer looks under-trained; below OVER_TRAINED: over-trained / over-fit
UNDER_TRAINED = 6.0
OVER_TRAINED = 2.0
#: goodness-of-fit p-value above which a power law is plausible (Clauset, Shalizi & Newman 2009)
PLAUSIBLE_P = 0.1

NAN = float("nan")


@dataclass(frozen=True)
class Metric:
    name: str
    meaning: str
    compute: Callable[[np.ndarray, Spectrum, PowerLawFit], float]


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 and math.isfinite(x) else NAN


def _lambda_max(ev: np.ndarray, s: Spectrum, f: PowerLawFit) -> float:
    return float(ev[-1]) if ev.size else NAN


def _norm(ev: np.ndarray, s: Spectrum, f: PowerLawFit) -> float:
    return float(np.sum(ev)) if ev.size else NAN


def _alpha_weighted(ev, s, f) -> float:
    return f.alpha * _log10(_lambda_max(ev, s, f))


def _log_alpha_norm(ev, s, f) -> float:
    if not math.isfinite(f.alpha) or not ev.size or ev[-1] <= 0:
        return NAN
    # log10 Σ λ^α computed around λ_max so that large α cannot overflow
    lmax = float(ev[-1])
    return math.log10(lmax) * f.alpha + _log10(float(np.sum((ev / lmax) ** f.alpha)))


def _stable_rank(ev, s, f) -> float:
    lmax = _lambda_max(ev, s, f)
    return float(np.sum(ev) / lmax) if lmax > 0 else NAN


def _entropy(ev, s, f) -> float:
    total = float(np.sum(ev))
    if total <= 0 or s.rank < 2:
        return 0.0 if s.rank == 1 else NAN
    p = ev[ev > 0] / total
    return float(-np.sum(p * np.log(p)) / math.log(s.rank))


METRICS: tuple[Metric, ...] = (
    Metric("lambda_max", "largest eigenvalue λ_max = ‖W‖₂²", _lambda_max),
    Metric("log_norm", "log10 Σλ = log10 ‖W‖_F²", lambda ev, s, f: _log10(_norm(ev, s, f))),
    Metric("log_spectral_norm", "log10 λ_max = log10 ‖W‖₂²", lambda ev, s, f: _log10(_lambda_max(ev, s, f))),
    Metric("alpha_weighted", "alpha-hat = α·log10 λ_max", _alpha_weighted),
    Metric("log_alpha_norm", "log10 Σλ^α (Schatten-α norm of X, all eigenvalues)", _log_alpha_norm),
    Metric("stable_rank", "Σλ / λ_max", _stable_rank),
    Metric("matrix_rank", "eigenvalues above the rank tolerance (see spectra)", lambda ev, s, f: float(s.rank)),
    Metric("entropy", "−Σ p ln p / ln R, p = λ/Σλ, R = matrix rank (0 = rank one, 1 = flat)", _entropy),
)


def warning_for(alpha: float, lo: float = NAN, hi: float = NAN, pl_pvalue: float = NAN) -> str:
    """The layer's warning from alpha, its interval [lo, hi] and the goodness-of-fit p-value.

    * ``no-power-law``  the bootstrap rejects the power law (p ≤ 0.1): alpha does not describe the tail;
    * ``over-trained``  alpha and the whole interval lie below 2;  ``under-trained``: above 6;
    * ``uncertain``     the interval contains 2 or 6, or lies on the other side of one from alpha (a
                        bootstrap whose replicates are skewed can put it there): the data cannot say on
                        which side alpha lies;
    * ``''``           otherwise, and when alpha is NaN.

    Without an interval (NaN bounds) the point estimate is compared with 2 and 6, as WeightWatcher does.
    """
    if not math.isfinite(alpha):
        return ""
    if math.isfinite(pl_pvalue) and pl_pvalue <= PLAUSIBLE_P:
        return "no-power-law"
    if not (math.isfinite(lo) and math.isfinite(hi)):  # WeightWatcher's rule: 2 and 6 themselves say nothing
        return "over-trained" if alpha < OVER_TRAINED else "under-trained" if alpha > UNDER_TRAINED else ""
    lo, hi = min(lo, alpha), max(hi, alpha)  # the interval with alpha in it: any disagreement is doubt
    if hi < OVER_TRAINED:
        return "over-trained"
    if lo > UNDER_TRAINED:
        return "under-trained"
    if lo <= OVER_TRAINED <= hi or lo <= UNDER_TRAINED <= hi:
        return "uncertain"
    return ""


def compute_metrics(spectrum: Spectrum, fit: PowerLawFit) -> dict[str, float]:
    """All registry metrics for one layer."""
    ev = spectrum.evals
    with np.errstate(all="ignore"):
        return {m.name: m.compute(ev, spectrum, fit) for m in METRICS}
