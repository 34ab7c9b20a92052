"""Semi-parametric bootstrap of the power-law fit (Clauset, Shalizi & Newman 2009, §4.1), with a
goodness-of-fit p-value that is close to uniform for true power laws.

**Replicates.** Each replicate has as many values as the data. Each value comes, with probability n/N
(n tail values out of N), from the fitted power law above x_min (inverse-CDF draw
x_min·U^(−1/(α−1))), and otherwise from the data below x_min: a smoothed resample, drawn from their
empirical quantile function linear between order statistics, so replicates have no tied values (CSN
resample with replacement; the p-values came out the same either way in the diagnosis runs of
issue 3). The replicate is then fitted exactly like the data — x_min chosen again by the same
strategy — and its α*, KS distance D* and tail size n* are kept.

**Confidence interval for α**: the basic bootstrap interval of β = α − 1 on the log scale,
[1 + β̂²/β*_{1−γ/2}, 1 + β̂²/β*_{γ/2}] with β*_q the q-quantile of the replicates' α* − 1. For a fixed
x_min, β̂/β = n/(β·Σ ln(λ/x_min)) has a law that does not depend on β (n over a Gamma(n, 1) variable), so
the ratio — not the difference α̂ − α — is the pivot, and this interval is the basic (reverse-percentile)
interval of ln β. It corrects for the upward bias and right skew of α̂ in small tails as the additive
basic interval [2α̂ − q_{1−γ/2}, 2α̂ − q_{γ/2}] does, but never leaves α > 1: for large α and small
tails the additive one's lower end fell towards 1 (on MiniLM's pooler: 1.24..21.4, against the Bayesian
7.5..18.6), which hid under-trained layers. Calibration: docs/uncertainty.md.

**Goodness of fit.** CSN's p-value compares the KS distances themselves: p_CSN = share of replicates
with D* ≥ D (kept as ``p_value_csn``). With x_min chosen by the KS scan it is conservative, not
uniform, for true power laws: the scan tends to put x̂ above the true x_min where the data's D happens
to be small, and the replicate is then a power law over only the n̂ values above x̂. The null
distribution of D scales as 1/√(tail size) (KS), so replicates with a shorter power-law region have
larger D*, and p_CSN comes out too large exactly when x̂ was selected high.

``p_value`` therefore compares the scaled statistic T = √n·D instead: p = share of replicates with
√n*·D* ≥ √n̂·D. For a fixed x_min, ln(λ/x_min) is exponential with rate α−1 and D is Lilliefors' KS
statistic of an exponential sample with estimated rate, whose null distribution depends on n alone and
√n·D converges to a fixed law; T is thus (asymptotically) pivotal, and bootstrap tests of pivotal
statistics have the smaller errors in rejection probability (R. Beran, "Prepivoting test statistics: a
bootstrap view of asymptotic refinements", JASA 83, 1988; P. Hall, "The Bootstrap and Edgeworth
Expansion", 1992). The fitted x_min is unchanged (still the
minimum of D, as CSN and WeightWatcher).

``fdb=True`` adds the fast double bootstrap (R. Davidson & J. G. MacKinnon, "Improving the reliability
of bootstrap tests with the fast double bootstrap", Comput. Stat. Data Anal. 51 (2007) 3259–3281):
every first-level replicate j gets ONE second-level replicate, drawn from the replicate's own fit
exactly as the replicate was drawn from the data's (its x̂*_j, α̂*_j, n*_j and its own values below
x̂*_j as the bulk) and refitted, giving T**_j. With k = #{j: T*_j ≥ T} (p* = k/B),

    Q** = the k-th largest T**_j (the 1 − p* quantile of the T**: share(T** ≥ Q**) = p*;
          Q** = +∞ when k = 0, so p = 0 then),
    p   = share of replicates with T*_j ≥ Q**.

It costs a second fit per replicate. On the calibration samples (docs/uncertainty.md), applied to
D it removed only part of CSN's skew and put too many p-values near 0 (FDB assumes the statistic
nearly independent of the bootstrap DGP; D and x̂ are strongly dependent here); applied to T it
improved the single bootstrap slightly, within the sampling noise. Hence an opt-in, reported as
``p_value_fdb``; ``p_value`` is always the single bootstrap's.

All replicates are drawn from one seeded generator (``numpy.random.default_rng(seed)``): the
first-level draws first (so the interval and the single-bootstrap p do not depend on ``fdb``), then the
second-level ones. Each refit is the vectorised KS scan, so the only Python loops are over replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from ..errors import OptionError
from ..specs import check_args, check_values
from .powerlaw import PowerLawFit, _fit_once
from ..values import NanEqual

__all__ = ["BootstrapResult", "bootstrap_power_law", "fdb_p_value"]

_NAN = float("nan")


@dataclass(frozen=True, eq=False)
class BootstrapResult(NanEqual):
    alpha_lo: float
    alpha_hi: float
    alpha_se: float  # standard deviation of the replicates' α*
    p_value: float  # goodness of fit: share of replicates with √n*·D* ≥ √n̂·D
    num_ok: int  # first-level replicates whose refit succeeded
    p_value_csn: float = _NAN  # CSN's p: share of replicates with D* ≥ D
    p_value_fdb: float = _NAN  # p_value corrected by the fast double bootstrap (NaN unless fdb)
    num_ok_fdb: int = 0  # replicates whose second-level refit succeeded too (0 unless fdb)
    q_lo: float = _NAN  # the replicates' α* quantiles at (1 − level)/2 and (1 + level)/2
    q_hi: float = _NAN

    @classmethod
    def undefined(cls) -> BootstrapResult:
        return cls(_NAN, _NAN, _NAN, _NAN, 0)


def _smoothed(bulk: np.ndarray, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """Draws from the bulk's empirical quantile function, linear between its order statistics."""
    if bulk.size == 1:
        return np.full(size, bulk[0])
    return np.interp(rng.random(size) * (bulk.size - 1), np.arange(bulk.size), bulk)


#: the most values one array of replicates holds (128 MB of float64)
_ONE_DRAW = 1 << 24


def _replicates(x: np.ndarray, fit: PowerLawFit, rng: np.random.Generator,
                size: tuple[int, ...]) -> np.ndarray:
    """Replicates of the sorted ``x``, sorted along the last axis, spliced at ``fit.xmin``: each value
    from the fitted power law with probability n/N, else from the smoothed values of ``x`` below x_min."""
    bulk = x[: np.searchsorted(x, fit.xmin, side="left")]
    p_tail = 1.0 if bulk.size == 0 else fit.num_pl_spikes / x.size
    from_tail = rng.random(size) < p_tail
    with np.errstate(over="ignore"):  # an overflowing draw (α̂ barely above 1) is inf: _refit drops its replicate
        draws = fit.xmin * (1.0 - rng.random(size)) ** (-1.0 / (fit.alpha - 1.0))  # 1 − U in (0, 1]
    if bulk.size:
        draws = np.where(from_tail, draws, _smoothed(bulk, rng, size))
    draws.sort(axis=-1)
    return draws


def _refit(row: np.ndarray, xmin: str | float) -> PowerLawFit | None:
    if not np.isfinite(row[-1]):
        return None  # an overflowing draw (α̂ barely above 1): the replicate is dropped
    f = _fit_once(row, xmin)
    return f if f.status == "ok" else None


def _scaled_ks(f: PowerLawFit) -> float:
    return f.D * np.sqrt(f.num_pl_spikes)


def fdb_p_value(t: float, t1: np.ndarray, t2: np.ndarray) -> float:
    """Fast-double-bootstrap p-value of the statistic ``t`` (large = bad fit) from the first-level
    statistics ``t1`` and the second-level ones ``t2`` (one per first-level replicate, same length)."""
    k = int(np.sum(t1 >= t))
    if k == 0:
        return 0.0
    q = np.sort(t2)[t2.size - k]  # the k-th largest T**: share(t2 ≥ q) = k/B = p*
    return float(np.mean(t1 >= q))


def bootstrap_power_law(x: np.ndarray, fit: PowerLawFit, reps: int, seed: int = 0,
                        xmin: str | float = "ks", level: float = 0.95, fdb: bool = False,
                        share: float = 1.0) -> BootstrapResult:
    """Bootstrap ``fit`` (a successful fit of the values ``x``) with ``reps`` replicates.

    ``x`` are the values the fit saw (after any floor or x_max clipping); ``xmin`` the strategy that
    chose its x_min, used again in every replicate. ``fdb``: also compute ``p_value_fdb``, the p-value
    corrected by the fast double bootstrap (one second-level replicate per replicate: twice the fits).
    ``share`` (≤ 1): the information each value carries, for values that are not independent (FARMS'
    overlapping windows): replicates of share·N independent values, and the observed KS statistic scaled
    as for share·n tail values.
    """
    check_args("bootstrap_power_law", reps=reps, level=level, share=share, xmin=xmin, seed=seed)
    if not isinstance(fit, PowerLawFit):
        raise OptionError(f"bootstrap_power_law: fit must be fit_power_law's result for x, got {type(fit).__name__}",
                          "fit")
    if not isinstance(fdb, (bool, np.bool_)):
        raise OptionError(f"bootstrap_power_law: fdb must be True or False, got {fdb!r}", "fdb", fdb)
    # (zeros, negatives or NaN had moved the interval without a word: fit_power_law refuses the same x)
    x = check_values("bootstrap_power_law", x, "x")
    share = float(share)
    if reps < 1 or fit.status != "ok" or not np.isfinite(fit.alpha) or x.size == 0:
        return BootstrapResult.undefined()
    rng = np.random.default_rng(seed)
    size = x.size if share >= 1.0 else max(2, round(share * x.size))
    # the replicates drawn at once (vectorised), or in parts where that would take more than _ONE_DRAW values
    # of memory per array (100 000 replicates of 4096 eigenvalues: 3.3 GB each); the same draws either way
    # below it, so the usual sizes give the numbers they always gave
    part = reps if reps * size <= _ONE_DRAW else max(1, _ONE_DRAW // size)
    rows = []  # (the replicate, kept only for the double bootstrap; its fit)
    for start in range(0, reps, part):
        draws = _replicates(x, fit, rng, (min(part, reps - start), size))
        rows += [(d if fdb else None, f) for d in draws if (f := _refit(d, xmin)) is not None]
    if not rows:
        return BootstrapResult.undefined()
    a = np.array([f.alpha for _, f in rows])
    D1 = np.array([f.D for _, f in rows])
    T1 = np.array([_scaled_ks(f) for _, f in rows])
    T = _scaled_ks(fit) * math.sqrt(min(share, 1.0))
    p_fdb, num_fdb = _NAN, 0
    if fdb:
        T2 = np.full(T1.size, np.nan)
        for j, (row, f) in enumerate(rows):
            f2 = _refit(_replicates(row, f, rng, (size,)), xmin)
            if f2 is not None:
                T2[j] = _scaled_ks(f2)
        both = np.isfinite(T2)
        num_fdb = int(both.sum())
        p_fdb = fdb_p_value(T, T1[both], T2[both]) if num_fdb else _NAN
    g = (1.0 - level) / 2.0
    q_lo, q_hi = np.quantile(a, [g, 1.0 - g])
    b2 = (fit.alpha - 1.0) ** 2  # basic interval of ln(α − 1): β̂²/β* (module docstring)
    return BootstrapResult(
        alpha_lo=float(1.0 + b2 / (q_hi - 1.0)),
        alpha_hi=float(1.0 + b2 / (q_lo - 1.0)),  # every replicate's α* > 1 (a fit needs it)
        alpha_se=float(np.std(a, ddof=1)) if a.size > 1 else _NAN,
        p_value=float(np.mean(T1 >= T)),
        num_ok=len(rows),
        p_value_csn=float(np.mean(D1 >= fit.D)),
        p_value_fdb=p_fdb,
        num_ok_fdb=num_fdb,
        q_lo=float(q_lo),
        q_hi=float(q_hi),
    )
