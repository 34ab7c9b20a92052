"""Bayesian alpha: a closed-form posterior for the power-law exponent.

For a given x_min the tail values give t_i = ln(λ_i/x_min), which are exponential with rate β = α − 1:
the likelihood is β^n e^(−βT) with T = Σ t_i. A Gamma(a₀, b₀) prior on β (shape, rate) gives the
posterior Gamma(a₀ + n, b₀ + T). The default a₀ = b₀ = 0 is Jeffreys' prior p(β) ∝ 1/β: its posterior
mean of β is n/T (the MLE), and because βT ~ Gamma(n, 1) whatever β is, its credible intervals are
exact frequentist confidence intervals for a fixed x_min.

Averaging over x_min (``average=True``): every candidate x_k (the k-th smallest eigenvalue) defines a
two-piece model of the whole sample: the m = k values below x_k are log-uniform on [λ_min, x_k), the
n = N − k values above are the power law, and each value falls in the tail with probability π. With a
uniform prior on π and the Gamma prior on β, the evidence is closed form (the factor Π 1/λ_i is common
to all candidates and dropped):

    ln E_k = ln B(n+1, m+1) + ln Γ(a₀+n) − (a₀+n) ln(b₀+T_k) − m ln ln(x_k/λ_min)

(the prior's own normaliser is common to all candidates). The posterior of α is the mixture of the
candidates' Gamma posteriors with weights ∝ E_k. The bulk model is crude; the option exists to show
how much the choice of x_min matters, not to replace the KS choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import scipy.special

from ..errors import OptionError
from ..specs import check_args, check_values
from .powerlaw import check_tail, run_starts
from ..values import NanEqual

__all__ = ["BayesAlpha", "bayesian_alpha", "bayesian_alpha_averaged"]

_NAN = float("nan")


@dataclass(frozen=True, eq=False)
class BayesAlpha(NanEqual):
    mean: float  # posterior mean of α
    lo: float  # lower end of the central credible interval
    hi: float
    p_lt_2: float  # P(α < 2 | data)
    p_gt_6: float  # P(α > 6 | data)

    @classmethod
    def undefined(cls) -> BayesAlpha:
        return cls(_NAN, _NAN, _NAN, _NAN, _NAN)


def bayesian_alpha(tail: np.ndarray, xmin: float, level: float = 0.95,
                   prior_shape: float = 0.0, prior_rate: float = 0.0, share: float = 1.0) -> BayesAlpha:
    """Posterior of α for the tail values ``tail`` (all ≥ ``xmin``) under a Gamma prior on α − 1. ``share``
    (≤ 1): the information each value carries, for values that are not independent (FARMS' overlapping windows
    repeat rows: the likelihood is raised to this power, as ``share``·n independent values would give it)."""
    tail = np.asarray(tail, dtype=np.float64)
    check_args("bayesian_alpha", level=level, prior_shape=prior_shape, prior_rate=prior_rate, share=share)
    level, prior_shape, prior_rate, share = float(level), float(prior_shape), float(prior_rate), float(share)
    check_tail("bayesian_alpha", tail, xmin)
    T = float(np.sum(np.log(tail) - math.log(xmin)))  # (not log(tail / xmin): λ / 1e-300 overflows)
    return _posterior(np.array([prior_shape + share * tail.size]), np.array([prior_rate + share * T]), np.ones(1),
                      level)


def bayesian_alpha_averaged(x: np.ndarray, level: float = 0.95, prior_shape: float = 0.0,
                            prior_rate: float = 0.0, min_tail: int = 2, share: float = 1.0) -> BayesAlpha:
    """Posterior of α averaged over every x_min candidate of the sorted sample ``x`` (module docstring); ``share``
    as in :func:`bayesian_alpha` (every count and sum in the evidence scaled by it)."""
    check_args("bayesian_alpha_averaged", level=level, prior_shape=prior_shape, prior_rate=prior_rate, share=share)
    if not (isinstance(min_tail, (int, np.integer)) and not isinstance(min_tail, bool) and min_tail >= 1):
        raise OptionError(f"bayesian_alpha_averaged: min_tail must be an integer >= 1, got {min_tail!r}", "min_tail",
                          min_tail)
    level, prior_shape, prior_rate, share = float(level), float(prior_shape), float(prior_rate), float(share)
    x = check_values("bayesian_alpha_averaged", x, "x")
    N = x.size
    # candidate x_k = x[k], where a run of equal values starts (the fit's); tail size n = N − k ≥ min_tail
    k = run_starts(x, np.arange(0, N - min_tail + 1))
    L = np.log(x)
    S = np.cumsum(L[::-1])[::-1]  # Σ_{j ≥ k} ln x_j
    n = (N - k).astype(np.float64)
    m = k.astype(np.float64)
    T = S[k] - n * L[k]
    ok = T > 0
    k, n, m, T = k[ok], share * n[ok], share * m[ok], share * T[ok]
    if k.size == 0:
        return BayesAlpha.undefined()
    shape, rate = prior_shape + n, prior_rate + T
    with np.errstate(divide="ignore", invalid="ignore"):  # k = 0 has no bulk: its term is 0
        bulk = np.where(m > 0, m * np.log(np.log(x[k] / x[0])), 0.0)
    log_ev = (scipy.special.betaln(n + 1, m + 1) + scipy.special.gammaln(shape)
              - shape * np.log(rate) - bulk)
    log_ev[~np.isfinite(log_ev)] = -np.inf
    if not np.isfinite(log_ev.max()):
        return BayesAlpha.undefined()
    w = np.exp(log_ev - log_ev.max())
    return _posterior(shape, rate, w / w.sum(), level)


def _posterior(shape: np.ndarray, rate: np.ndarray, w: np.ndarray, level: float) -> BayesAlpha:
    """Summaries of α = 1 + β for β ~ Σ w_j Gamma(shape_j, rate_j)."""
    keep = w > 1e-12
    shape, rate, w = shape[keep], rate[keep], w[keep] / w[keep].sum()
    tiny = np.finfo(np.float64).tiny  # (a subnormal shape, from a share near 1e-320, leaves gammaincinv NaN)
    if shape.size == 0 or not np.all(shape >= tiny) or not np.all(rate >= tiny):
        return BayesAlpha.undefined()
    # the Gamma components through scipy.special, as scipy.stats.gamma computes them (x·rate, q / rate: 1 / rate
    # overflows for a tiny share), without a frozen distribution's set-up per layer (it was most of this
    # function's time)
    mean = 1.0 + float(w @ (shape / rate))

    def cdf(b: float) -> float:
        return float(w @ scipy.special.gammainc(shape, b * rate))

    def ppf(q: float) -> np.ndarray:
        return scipy.special.gammaincinv(shape, q) / rate

    tail_p = (1.0 - level) / 2.0
    if shape.size == 1:
        lo, hi = float(ppf(tail_p)[0]), float(ppf(1.0 - tail_p)[0])
    else:  # quantiles of the mixture by root finding below the largest of the components' own quantiles
        lo = _mixture_quantile(cdf, tail_p, float(ppf(tail_p).max()))
        hi = _mixture_quantile(cdf, 1.0 - tail_p, float(ppf(1.0 - tail_p).max()))
    # a weighted sum of CDFs can round past 1: clip the probabilities to [0, 1]; P(α > 6) from the survival
    # functions, as 1 − CDF would leave round-off (1e-16) where it is 0
    p_gt_6 = float(w @ scipy.special.gammaincc(shape, 5.0 * rate))
    return BayesAlpha(mean, 1.0 + lo, 1.0 + hi, min(1.0, cdf(1.0)), min(1.0, p_gt_6))


def _mixture_quantile(cdf, q: float, top: float) -> float:
    """The mixture's q-quantile: at most ``top``, the largest of its components' (there each component's CDF is
    at least q); 0 where that rounds to 0 (a posterior of a tiny ``share``: its mass is all near β = 0)."""
    import scipy.optimize  # (only here: importing it costs 0.2 s of every `import htsr`)

    if not top > 0:
        return 0.0
    top *= 2.0  # (the CDFs' rounding)
    return float(scipy.optimize.brentq(lambda b: cdf(b) - q, 0.0, top, xtol=1e-12, rtol=1e-12))
