"""Truncated power law (TPL): p(λ) ∝ λ^(−α)·e^(−Λλ) for λ ≥ x_min, fitted by maximum likelihood.

With u = λ/x_min and t = ln u the density of t is exp(−a·t − c·eᵗ) / I(a, c), where a = α − 1 and
c = Λ·x_min, and the normaliser is

    I(a, c) = ∫₀^∞ exp(−a·t − c·eᵗ) dt = x_min^(α−1)·∫_{x_min}^∞ λ^(−α) e^(−Λλ) dλ
            = (Λ·x_min)^(α−1)·Γ(1−α, Λ·x_min)        (upper incomplete gamma; no closed form for α > 1
                                                       in scipy, whose gammaincc needs a positive order)

It is a two-parameter exponential family in (t, eᵗ), so the negative log-likelihood is convex in
(a, c) and its gradient is (mean t − E[t], mean u − E[eᵗ]). I and the moments come from one
composite Gauss–Legendre rule on the integrand's effective support (where it is within e^−45 of its
maximum), in double precision: no arbitrary-precision calls, ~0.1 ms per evaluation.

The fit keeps α ≥ 1 and Λ ≥ 0 (as the ``powerlaw`` package does); Λ = 0 is the plain power law, so
the likelihood-ratio test of PL against TPL is nested (see :mod:`htsr.fits.tails`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .powerlaw import check_tail
from ..values import NanEqual

__all__ = ["TPLFit", "fit_truncated_power_law", "tpl_log_normaliser", "tpl_logpdf"]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)
_PANELS = 24  # panels per side of the integrand's peak
_DROP = 45.0  # the integrand is cut where it is below e^-45 of its peak (relative error < 1e-19)
_FALL_MARGIN = 8.0  # the last piece starts this far before c·eᵗ = 1 (e^(−c·eᵗ) > 0.9997 there)
# the composite rule on [0, 1]: _PANELS equal panels of the Gauss–Legendre rule, scaled to each piece
_UNIT_NODES = ((np.arange(_PANELS)[:, None] + 0.5 + 0.5 * _GL_NODES) / _PANELS).ravel()
_UNIT_WEIGHTS = np.tile(0.5 * _GL_WEIGHTS / _PANELS, _PANELS)


@dataclass(frozen=True, eq=False)
class TPLFit(NanEqual):
    alpha: float
    Lambda: float  # cut-off rate Λ, in the units of 1/λ
    xmin: float
    loglik: float  # total log-likelihood of the tail (density in λ)
    status: str  # "ok" or "fit_failed: <reason>"

    @classmethod
    def failed(cls, reason: str) -> TPLFit:
        nan = float("nan")
        return cls(nan, nan, nan, nan, f"fit_failed: {reason}")


def _support(a: float, c: float) -> tuple[float, float]:
    """(t_peak, t_end): where exp(−a t − c eᵗ) on t ≥ 0 peaks, and where it (and eᵗ times it) is negligible."""
    t_peak = math.log(-a / c) if a < 0 and -a > c else 0.0
    g = c * math.exp(t_peak)  # c·e^t at the peak
    # beyond the peak the log-integrand falls by a·s + g·(eˢ − 1); E[eᵗ]'s integrand, eᵗ times larger,
    # by h(s) = (a − 1)·s + g·(eˢ − 1). Cut where h(s) = _DROP (h grows without bound as g > 0).
    b, log_g = a - 1.0, math.log(g)

    def h(s: float) -> float:  # g·(eˢ − 1) in logs where eˢ alone would overflow (a tiny c: x_min far
        return b * s + (g * math.expm1(s) if s < 700.0 else math.exp(min(log_g + s, 709.0)))  # below the tail)

    lo, hi = 0.0, 1.0
    while h(hi) < _DROP:
        lo, hi = hi, 2.0 * hi
    if hi < 700.0:  # h is convex with h(0) = 0 < _DROP ≤ h(hi): Newton's method from hi descends to the root
        for _ in range(60):
            step = (h(hi) - _DROP) / (b + g * math.exp(hi))
            hi -= step
            if step <= 1e-13 * hi:
                return t_peak, t_peak + hi
    for _ in range(60):  # (where h is evaluated in logs, or Newton did not settle) bisection
        mid = 0.5 * (lo + hi)
        if h(mid) < _DROP:
            lo = mid
        else:
            hi = mid
    return t_peak, t_peak + hi


def _nodes(a: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    t_peak, t_end = _support(a, c)
    pieces = [(0.0, t_peak)] if t_peak > 0 else []
    # where c·eᵗ reaches 1 the integrand turns from a power law to a double-exponential fall: a long flat
    # stretch before it (a small c, α near 1) gets panels of its own, so the fall is not left to a few
    t_fall = math.log(1.0 / c) - _FALL_MARGIN
    if t_peak < t_fall < t_end:
        pieces += [(t_peak, t_fall), (t_fall, t_end)]
    else:
        pieces.append((t_peak, t_end))
    if len(pieces) == 1:
        lo, hi = pieces[0]
        return lo + (hi - lo) * _UNIT_NODES, (hi - lo) * _UNIT_WEIGHTS
    return (np.concatenate([lo + (hi - lo) * _UNIT_NODES for lo, hi in pieces]),
            np.concatenate([(hi - lo) * _UNIT_WEIGHTS for lo, hi in pieces]))


def _moments(a: float, c: float, second: bool = False, log_s: float = 0.0) -> tuple[float, ...]:
    """(ln I(a, c), E[t], E[eᵗ]) under the TPL density of t; with ``second``, (ln I, E[t], E[v], Var t, Cov(t, v),
    Var v) for v = s·eᵗ, s = e^``log_s`` (the fit's scaled variable: v of order 1 where eᵗ would overflow its
    square), the Hessian of the fit's objective; the variances about the means, without the cancellation of
    E[v²] − E[v]² (a narrow tail's t and v are nearly collinear, and that cancellation made the covariance
    look indefinite)."""
    if c == 0.0:
        if a <= 0:
            return (math.inf, math.nan, math.nan) + ((math.nan,) * 3 if second else ())
        e_u = a / (a - 1.0) if a > 1 else math.inf
        if not second:
            return -math.log(a), 1.0 / a, e_u
        s = math.exp(log_s)
        var_u = a / (a - 2.0) - e_u * e_u if a > 2 else math.inf
        cov = 1.0 / (a - 1.0) ** 2 if a > 1 else math.inf
        return -math.log(a), 1.0 / a, s * e_u, 1.0 / (a * a), s * cov, s * s * var_u
    t, w = _nodes(a, c)
    with np.errstate(over="ignore", invalid="ignore"):  # c·eᵗ as one exponential: eᵗ alone overflows past
        # t = 709, where a tiny c (x_min far below the tail) still keeps the integrand alive; an infinite c·eᵗ
        # weighs 0
        logf = -a * t - np.exp(math.log(c) + t)
        shift = float(logf.max())
        f = w * np.exp(logf - shift)
        total = float(f.sum())
        # E[eᵗ], eᵗ folded into the exponent (infinite for α ≤ 2 with c → 0: the search is steered off it)
        fu = w * np.exp(logf - shift + t + log_s)
        e_t, e_u = float(f @ t) / total, float(fu.sum()) / total
        if not second:
            return shift + math.log(total), e_t, e_u
        d = t - e_t
        var_t = float(f @ (d * d)) / total
        cov = float(fu @ d) / total
        dv = np.exp(t + log_s) - e_u  # (infinite only where the integrand is 0: those nodes weigh nothing)
        var_u = float(np.sum(np.where(f > 0, f * dv * dv, 0.0))) / total
    return shift + math.log(total), e_t, e_u, var_t, cov, var_u


def tpl_log_normaliser(alpha: float, Lambda: float, xmin: float) -> float:
    """ln ∫_{x_min}^∞ λ^(−α) e^(−Λλ) dλ."""
    alpha, Lambda, xmin = float(alpha), float(Lambda), float(xmin)  # (numpy scalars as Python floats: float16 had
    a = alpha - 1.0  # kept its precision, and overflowed)
    return _moments(a, Lambda * xmin)[0] - a * math.log(xmin)


def tpl_logpdf(x: np.ndarray, alpha: float, Lambda: float, xmin: float) -> np.ndarray:
    """Log-density of the TPL at each x ≥ x_min."""
    x = np.asarray(x, dtype=np.float64)
    return -alpha * np.log(x) - Lambda * x - tpl_log_normaliser(alpha, Lambda, xmin)


#: the smallest cut-off c = Λ·x_min, in units of 1/mean(λ/x_min), that the search visits (above it every
#: (a ≥ 0, c) has a density; a smaller optimum is the plain power law's, within the likelihood's precision)
_MIN_C = 1e-10


def fit_truncated_power_law(tail: np.ndarray, xmin: float) -> TPLFit:
    """Maximum-likelihood (α, Λ) of a TPL for the values ``tail`` (all ≥ ``xmin`` > 0).

    Convex problem in (a, c) = (α − 1, Λ·x_min), solved with Newton's method on the exact gradient and Hessian
    (the mean and covariance of the sufficient statistics t and u under the model).
    """
    tail = np.asarray(tail, dtype=np.float64)
    check_tail("fit_truncated_power_law", tail, xmin)
    xmin = float(xmin)  # (a float16 x_min had made c / x_min a float16)
    if tail.size < 2:
        return TPLFit.failed("fewer than 2 tail values")
    with np.errstate(over="ignore"):
        u = tail / xmin
    t_bar, u_bar = float(np.mean(np.log(tail) - math.log(xmin))), float(np.mean(u))
    if t_bar <= 0:
        return TPLFit.failed("all tail values equal x_min")
    if not math.isfinite(u_bar):
        return TPLFit.failed(f"the tail reaches beyond float64's range in units of x_min = {xmin:g}")
    # the bound c = 0 is the plain power law, whose optimum is closed form, a = 1/t̄; there the slope of the convex
    # objective in c is ū − E[u] = ū − a/(a − 1) (infinite E[u] for a ≤ 1). When it is ≥ 0 no cut-off does better
    pl = 1.0 + math.log(t_bar)  # a·t̄ + ln I at a = 1/t̄, c = 0
    a_pl = 1.0 / t_bar
    if a_pl > 1.0 and u_bar >= a_pl / (a_pl - 1.0):
        return TPLFit(a_pl + 1.0, 0.0, float(xmin), _loglik(tail, pl), "ok")

    a, c, value = _newton(t_bar, u_bar, min(a_pl, _A_MAX), 0.5)
    if a > 0.5 * _A_MAX:  # (a narrow tail's valley of near-equal likelihood, followed to its far end, α = 10001:
        # search it from its other end too, α = 1 with the exponential's cut-off, k = c·ū for a mean excess ū − 1)
        other = _newton(t_bar, u_bar, 0.0, min(max(u_bar / (u_bar - 1.0), _MIN_C), 1e8))
        if other[2] <= value:
            a, c, value = other
    if pl <= value:  # (the search stops near the bound c = 0, a little short of the power law's optimum)
        a, c, value = a_pl, 0.0, pl
    if not math.isfinite(value):
        return TPLFit.failed("the likelihood could not be maximised")
    if not math.isfinite(c / xmin):
        return TPLFit.failed(f"the cut-off rate overflows at x_min = {xmin:g} (subnormal): rescale the values")
    return TPLFit(a + 1.0, c / xmin, float(xmin), _loglik(tail, value), "ok")


_A_MAX = 1e4  # α − 1 beyond this is no tail anyone fits


def _newton(t_bar: float, u_bar: float, a0: float, k0: float) -> tuple[float, float, float]:
    """Minimise the convex F(a, c) = a·t̄ + c·ū + ln I(a, c) over 0 ≤ a ≤ _A_MAX and k = c·ū in
    [_MIN_C, 1e8], from (a0, k0): (a, c, F). In (a, k) both variables are of order 1, and F = a·t̄ + k +
    ln I(a, k/ū) has the gradient (t̄ − E t, 1 − E v) and Hessian Cov(t, v), v = eᵗ/ū (finite where ū is 1e150
    and more).

    Projected Newton steps, halved until F falls enough (Armijo): a variable on a bound its gradient pushes
    against is held there; a step that would cross a bound goes to it, the other variable taking its best step
    given that; where the covariance is singular to rounding (a narrow tail: t and v nearly collinear, a valley
    of equal likelihood) the step is the pseudo-inverse's, along the curved direction only, so that the search
    stays near where it started instead of running to a bound along the flat one. It stops when the Newton
    decrement is below rounding.

    c stays above 0: the bound c = 0 is the plain power law, which the caller takes in closed form, and its
    corner a = 0 has no density. (A stand-in value there had made L-BFGS-B, used before, stop at its start
    point: the cut-off of a shifted exponential was missed, R off by 76.)"""
    bounds = ((0.0, _A_MAX), (_MIN_C, 1e8))
    log_s = -math.log(u_bar)
    p = [a0, k0]

    def evaluate(p: list[float]) -> tuple[float, tuple[float, ...]]:
        m = _moments(p[0], p[1] / u_bar, second=True, log_s=log_s)
        return p[0] * t_bar + p[1] + m[0], m

    value, m = evaluate(p)
    for _ in range(200):
        g = (t_bar - m[1], 1.0 - m[2])
        h11, h12, h22 = m[3], m[4], m[5]
        if not all(map(math.isfinite, (value, *g, h11, h12, h22))):
            break
        free = [not ((p[i] <= bounds[i][0] and g[i] > 0) or (p[i] >= bounds[i][1] and g[i] < 0)) for i in (0, 1)]
        step = _newton_step(g, h11, h12, h22, free)
        if step is None:
            break
        decrement = -(step[0] * g[0] + step[1] * g[1])
        if not decrement > 1e-18 * max(1.0, abs(value)):  # F is within rounding of its minimum (or no descent)
            break
        for i, j in ((0, 1), (1, 0)):  # a step across a bound goes to it; the other variable's best step given that
            target = p[i] + step[i]
            if free[i] and not bounds[i][0] <= target <= bounds[i][1]:
                step[i] = min(max(target, bounds[i][0]), bounds[i][1]) - p[i]
                hjj, hji = (h22, h12) if j == 1 else (h11, h12)
                if free[j] and hjj > 0:
                    step[j] = -(g[j] + hji * step[i]) / hjj
                break
        s = 1.0
        for _ in range(60):
            q = [min(max(p[i] + s * step[i], bounds[i][0]), bounds[i][1]) for i in (0, 1)]
            new_value, new_m = evaluate(q)
            if new_value <= value + 1e-4 * ((q[0] - p[0]) * g[0] + (q[1] - p[1]) * g[1]):
                break
            s *= 0.5
        else:
            break
        still = all(abs(q[i] - p[i]) <= 1e-15 * abs(p[i]) for i in (0, 1))
        flat = value - new_value <= 1e-15 * max(1.0, abs(value))  # (F fell by no more than its rounding)
        p, value, m = q, new_value, new_m
        if still or flat:
            break
    return p[0], p[1] / u_bar, value


def _newton_step(g: tuple[float, float], h11: float, h12: float, h22: float, free: list[bool]) -> list[float] | None:
    """The Newton step −H⁻¹g on the free variables (the pseudo-inverse's where H is singular to rounding), or
    None when no variable is free."""
    if free[0] and free[1]:
        half_trace, det = 0.5 * (h11 + h22), h11 * h22 - h12 * h12
        lam1 = half_trace + math.hypot(0.5 * (h11 - h22), h12)  # the larger eigenvalue
        if not lam1 > 0:
            return None
        if det > 1e-10 * lam1 * lam1:
            return [(-g[0] * h22 + g[1] * h12) / det, (-g[1] * h11 + g[0] * h12) / det]
        # (v1: the eigenvector of lam1, from whichever row of H − lam1·I is better conditioned)
        v = (h12, lam1 - h11) if abs(lam1 - h11) >= abs(lam1 - h22) else (lam1 - h22, h12)
        norm = math.hypot(*v)
        if not norm > 0:
            v, norm = ((1.0, 0.0) if h11 >= h22 else (0.0, 1.0)), 1.0
        v = (v[0] / norm, v[1] / norm)
        along = -(v[0] * g[0] + v[1] * g[1]) / lam1
        return [along * v[0], along * v[1]]
    if free[0] or free[1]:
        i = 0 if free[0] else 1
        hii = h11 if i == 0 else h22
        step = [0.0, 0.0]
        step[i] = -g[i] / hii if hii > 0 else -g[i]
        return step
    return None


def _loglik(tail: np.ndarray, value: float) -> float:
    """Σ ln p(λ_i) = −n·(a t̄ + c ū + ln I) − Σ ln λ_i, from the mean objective ``value``."""
    return -tail.size * value - float(np.sum(np.log(tail)))
