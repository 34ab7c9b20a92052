"""Semi-parametric bootstrap of the power-law fit (Clauset, Shalizi & Newman 2009, §4.1).

Each replicate has as many values as the data. Each value comes, with probability n/N (n tail values
out of N), from the fitted power law above x_min (inverse-CDF draw x_min·U^(−1/(α−1))), and otherwise
from the data below x_min: a smoothed resample, drawn from their empirical quantile function linear
between order statistics, so replicates have no tied values (CSN resample with replacement; the
p-values came out the same either way in the diagnosis runs of issue 3). The replicate is then
fitted exactly like the data — x_min chosen again by the same strategy — and its α* and KS distance
D* are kept.

* Goodness of fit: p = fraction of replicates with D* ≥ D of the data. CSN call the power law
  plausible when p > 0.1.
* Confidence interval for α: the basic (reverse-percentile) bootstrap interval
  [2α̂ − q_{1−γ/2}(α*), 2α̂ − q_{γ/2}(α*)], which corrects for the upward bias and right skew of α̂
  in small tails (the percentile interval does not; the calibration in docs/uncertainty.md compares).
  For very small, skewed tails 2α̂ − q can fall below 1, outside the parameter space: the lower end
  is clipped at 1.

All replicates are drawn at once from one seeded generator (``numpy.random.default_rng(seed)``); each
refit is the vectorised KS scan, so the only Python loop is over replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .powerlaw import PowerLawFit, _fit_once

__all__ = ["BootstrapResult", "bootstrap_power_law"]

_NAN = float("nan")


@dataclass(frozen=True)
class BootstrapResult:
    alpha_lo: float
    alpha_hi: float
    alpha_se: float  # standard deviation of the replicates' α*
    p_value: float  # goodness of fit: fraction of replicates with D* ≥ D
    num_ok: int  # replicates whose refit succeeded

    @classmethod
    def undefined(cls) -> BootstrapResult:
        return cls(_NAN, _NAN, _NAN, _NAN, 0)


def _smoothed(bulk: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Draws from the bulk's empirical quantile function, linear between its order statistics."""
    if bulk.size == 1:
        return np.full(size, bulk[0])
    return np.interp(rng.random(size) * (bulk.size - 1), np.arange(bulk.size), bulk)


def bootstrap_power_law(x: np.ndarray, fit: PowerLawFit, reps: int, seed: int = 0,
                        xmin: str | float = "ks", level: float = 0.95) -> BootstrapResult:
    """Bootstrap ``fit`` (a successful fit of the values ``x``) with ``reps`` replicates.

    ``x`` are the values the fit saw (after any floor or x_max clipping); ``xmin`` the strategy that
    chose its x_min, used again in every replicate.
    """
    if reps < 1 or fit.status != "ok" or not np.isfinite(fit.alpha):
        return BootstrapResult.undefined()
    x = np.sort(np.asarray(x, dtype=np.float64))
    N = x.size
    bulk = x[x < fit.xmin]
    p_tail = 1.0 if bulk.size == 0 else fit.num_pl_spikes / N
    rng = np.random.default_rng(seed)
    from_tail = rng.random((reps, N)) < p_tail
    draws = fit.xmin * (1.0 - rng.random((reps, N))) ** (-1.0 / (fit.alpha - 1.0))  # 1 − U in (0, 1]
    if bulk.size:
        draws = np.where(from_tail, draws, _smoothed(bulk, rng, (reps, N)))
    draws.sort(axis=1)
    alphas = np.full(reps, np.nan)
    Ds = np.full(reps, np.nan)
    for r in range(reps):
        row = draws[r]
        if not np.isfinite(row[-1]):
            continue  # an overflowing draw (α̂ barely above 1): the replicate is dropped
        f = _fit_once(row, xmin)
        if f.status == "ok":
            alphas[r], Ds[r] = f.alpha, f.D
    ok = np.isfinite(alphas)
    if not ok.any():
        return BootstrapResult.undefined()
    a = alphas[ok]
    g = (1.0 - level) / 2.0
    q_lo, q_hi = np.quantile(a, [g, 1.0 - g])
    return BootstrapResult(
        alpha_lo=max(1.0, float(2.0 * fit.alpha - q_hi)),  # α > 1 for any power law: clip to it
        alpha_hi=float(2.0 * fit.alpha - q_lo),
        alpha_se=float(np.std(a, ddof=1)) if a.size > 1 else _NAN,
        p_value=float(np.mean(Ds[ok] >= fit.D)),
        num_ok=int(ok.sum()),
    )
