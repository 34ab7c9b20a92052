"""Marchenko–Pastur baseline of a layer's ESD (THEORY §5). Pure numpy.

A random N × M matrix (N ≥ M) with i.i.d. entries of variance σ² has, for X = WᵀW, eigenvalues that
fill the Marchenko–Pastur bulk [σ²(√N − √M)², σ²(√N + √M)²] (the usual λ± = σ²(1 ± 1/√Q)² times N,
Q = N/M), and its largest eigenvalue fluctuates around the edge on the Tracy–Widom scale (Johnstone
2001): λ_max ≈ σ²·(μ_NM + s_NM·TW₁), μ_NM = (√(N−½) + √(M−½))²,
s_NM = (√(N−½) + √(M−½))·(1/√(N−½) + 1/√(M−½))^⅓.

**The fit** (:func:`fit_mp`) is a quantile match, not a kernel-density search: σ² is the least-squares
scale that maps the MP quantiles (σ = 1) onto the empirical quantiles of the bulk at 19 probabilities
(5 %, 10 %, …, 95 %). The bulk is every eigenvalue at or below the spike threshold
σ²·(μ_NM + t·s_NM), t = ``tw_margin``, excluding the eigenvalues that are zero at float32 precision
(:func:`zero_level`: the rank-deficient part); σ² and the bulk
are refined in turn until the bulk stops changing. Starting from the whole spectrum the bulk can only
shrink (a shorter bulk has smaller quantiles, so a lower threshold), so this ends at the largest
self-consistent bulk: two or three rounds for an MP bulk with spikes, a few dozen for a heavy tail,
each O(1) on the sorted spectrum. This largest bulk keeps the lower half of the non-zero eigenvalues at least:
a spectrum with no MP bulk (its top half above the edge of any MP law fitted to the rest: a very heavy
tail, or heavy-tailed entries) would otherwise be refitted down to its two smallest eigenvalues; there
the law fitted to the lower half is the baseline, and more than half the eigenvalues are spikes.
Eigenvalues above the threshold are the spikes. A pooled layer (the kh·kw positions of a conv)
is fitted as one sample of M·k eigenvalues of the same MP law.

Eigenvalue rigidity makes the quantiles of an MP bulk very stable (errors ~1/M), so σ comes out within a
fraction of a percent for a 1000 × 500 Gaussian matrix, and a few spikes — excluded from the bulk —
do not bias it (k of them leave the bulk of (N − k) × (M − k) noise: σ low by (√(N−k) + √(M−k)) / (√N + √M)).
A cluster of spikes a quarter of the spectrum or more is a self-consistent part of the bulk fitted from the
whole spectrum: the smallest self-consistent bulk, refined up from the lowest quarter, is taken instead where a gap
parts it from the cluster and it fits better (docs/rmt.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import OptionError
from ..specs import check_args
from ..values import NanEqual

__all__ = ["MPFit", "fit_mp", "mp_cdf", "mp_quantiles", "tw_edge", "zero_level"]

NAN = float("nan")
_EPS32 = 2.0 ** -23  # float32's machine epsilon
#: probabilities at which the bulk's quantiles are matched
_PROBS = np.linspace(0.05, 0.95, 19)
_GRID = 4097
#: the gap (ratio of the first spike to the bulk's largest eigenvalue) that parts a bulk from a cluster of spikes
#: above it (fit_mp)
_GAP = 1.5


@dataclass(frozen=True, eq=False)
class MPFit(NanEqual):
    sigma2: float  # variance of one entry, in the units of the eigenvalues given (see fit_mp's scale)
    lambda_minus: float  # bulk edges σ²(√N ∓ √M)², in the units of the eigenvalues
    lambda_plus: float
    threshold: float  # spike threshold σ²·(μ_NM + t·s_NM)
    num_spikes: int  # eigenvalues above the threshold
    num_zero: int  # eigenvalues at or below the zero floor, left out of the bulk
    softrank: float  # λ₊ / λ_max
    ks: float  # KS distance between the bulk and the fitted MP law (restricted to the bulk's range)

    @classmethod
    def undefined(cls, num_zero: int = 0) -> "MPFit":
        return cls(NAN, NAN, NAN, NAN, 0, num_zero, NAN, NAN)


def zero_level(evals: np.ndarray, N: int, M: int) -> float:
    """Eigenvalues of an N × M layer (``evals`` ascending, its whole spectrum) at or below this are zero at float32
    precision: λ_max·((√N + √M)·ε₃₂)², the largest eigenvalue of rounding noise of ε₃₂·σ_max per entry (every
    |W_ij| ≤ σ_max, and storing or forming the entries in float32 rounds each by ε₃₂ of its size, a product's a
    few times that): the MP edge of that noise. But no more than what noise of ε₃₂ times the entries' rms would
    give, times (√N + √M)² (mean(λ)/N = rms²: the same level for a Gaussian matrix, λ_max = (√N + √M)²·rms², and
    a margin of (√N + √M)² over a float32 product's rounding): one entry 10⁷ times the others rounds by ε₃₂ of its
    own size, in its own spike's direction, and had made a resolved bulk of 199 eigenvalues 'zeros' (h55).
    Weights are stored in float32 or coarser, so a smaller eigenvalue is rounding, not signal; a float64 floor
    would count the rounding of a float32 low-rank product as rank on one precision path and not the other.
    (numpy's ``matrix_rank`` tolerance for a float32 matrix, σ_max·max(N, M)·ε, bounds a float32 *solver*'s
    error instead, and grows with N: it called singular values below 1.8 % of σ_max zero in a 150 000 × 128
    embedding.) Both paths count alike but for one case: the fast path's float32 Gram resolves eigenvalues only
    to ~ε·λ_max, so a matrix with exact zeros too few to refine it (under ``refine_fraction``) may show some of
    them as tiny positive values (768 × 768 of rank 761: 4 zeros fast, 7 accurate)."""
    if not len(evals):
        return 0.0
    edge = (math.sqrt(N) + math.sqrt(M)) ** 2
    return min(float(evals[-1]), edge * float(np.mean(evals)) / N) * edge * _EPS32 ** 2


def tw_edge(N: int, M: int) -> tuple[float, float]:
    """Johnstone's centring μ_NM and scale s_NM of λ_max(WᵀW) for unit-variance Gaussian N × M entries."""
    a, b = math.sqrt(max(N - 0.5, 0.5)), math.sqrt(max(M - 0.5, 0.5))
    return (a + b) ** 2, (a + b) * (1.0 / a + 1.0 / b) ** (1.0 / 3.0)


@lru_cache(maxsize=64)
def _mp_table(Q: float) -> tuple[np.ndarray, np.ndarray]:
    """(λ, CDF) of the MP law with σ² = 1 for X/N on a grid dense where the density is steep.

    λ(θ) = λ₋ + (λ₊ − λ₋)·sin²θ turns ρ(λ)dλ into the smooth
    Q·(λ₊ − λ₋)²·2 sin²θ cos²θ / (2π λ(θ)) dθ, integrated by the trapezoid rule and normalised to 1.
    """
    lm, lp = (1.0 - 1.0 / math.sqrt(Q)) ** 2, (1.0 + 1.0 / math.sqrt(Q)) ** 2
    theta = np.linspace(0.0, math.pi / 2, _GRID)
    s2, c2 = np.sin(theta) ** 2, np.cos(theta) ** 2
    lam = lm + (lp - lm) * s2
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(lam > 0, Q * (lp - lm) ** 2 * 2.0 * s2 * c2 / (2.0 * math.pi * lam), 0.0)
    if lm == 0.0:  # Q = 1: s2/λ = 1/λ₊ is finite at θ = 0
        f[0] = Q * (lp - lm) ** 2 * 2.0 * c2[0] / (2.0 * math.pi * lp)
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) * 0.5 * np.diff(theta))])
    return lam, cdf / cdf[-1]


def _check_law(where: str, Q: Any, sigma2: Any) -> None:
    """The MP law's parameters: Q = N/M ≥ 1 and σ² > 0, finite (OptionError naming them otherwise)."""
    for name, value, low, strict in (("Q", Q, 1.0, False), ("sigma2", sigma2, 0.0, True)):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and math.isfinite(value) and (value > low if strict else value >= low)):
            raise OptionError(f"{where}: {name} must be a finite number {'>' if strict else '>='} {low:g}, got "
                              f"{value!r}" + (" (Q = N/M with N the larger side)" if name == "Q" else ""), name, value)


def mp_cdf(x: np.ndarray, Q: float, sigma2: float = 1.0) -> np.ndarray:
    """CDF of the MP law of X/N (entries of variance ``sigma2``, aspect ratio Q = N/M ≥ 1) at ``x``."""
    _check_law("mp_cdf", Q, sigma2)
    lam, cdf = _mp_table(float(Q))
    return np.interp(np.asarray(x, dtype=np.float64) / sigma2, lam, cdf, left=0.0, right=1.0)


def mp_quantiles(probs: np.ndarray, Q: float, sigma2: float = 1.0) -> np.ndarray:
    """Quantiles of the MP law of X/N at ``probs`` (in [0, 1])."""
    _check_law("mp_quantiles", Q, sigma2)
    p = np.asarray(probs, dtype=np.float64)
    if not np.all((p >= 0) & (p <= 1)):  # (np.interp had clamped 1.5 to λ₊, -0.5 to λ₋ without a word)
        raise OptionError("mp_quantiles: probs must lie in [0, 1]", "probs")
    lam, cdf = _mp_table(float(Q))
    return sigma2 * np.interp(p, cdf, lam)


def fit_mp(evals: np.ndarray, N: int, M: int, scale: float = 1.0, tw_margin: float = 4.0,
           sigma2: float | None = None, zero_floor: float = 0.0) -> MPFit:
    """Fit the MP bulk to ``evals`` (ascending, ≥ 0) of N × M matrices whose ESD was multiplied by ``scale``.

    ``sigma2`` is returned in weight units (the entry variance σ² of W, ``scale`` divided out); the
    edges and threshold are in the units of ``evals``. Given ``sigma2`` (a shuffled matrix's entries are
    i.i.d. of their sample variance), nothing is fitted: the law of that variance is the baseline.
    Eigenvalues at or below ``zero_floor`` (a coarser storage's rounding under a gap) are zeros too.
    """
    if not (N >= 1 and M >= 1):
        raise OptionError(f"fit_mp: the matrices' sides must be at least 1, got N={N!r}, M={M!r}", "N", N)
    check_args("fit_mp", tw_margin=tw_margin)
    if not (isinstance(scale, (int, float, np.integer, np.floating)) and math.isfinite(scale) and scale > 0):
        raise OptionError(f"fit_mp: scale must be a positive finite number, got {scale!r}", "scale", scale)
    ev = np.asarray(evals, dtype=np.float64)
    if ev.ndim != 1:
        raise OptionError(f"fit_mp: evals must be 1-D (one layer's eigenvalues), got an array of shape {ev.shape}")
    if ev.size > 1 and not np.all(ev[1:] >= ev[:-1]):  # (numpy's SVD gives them descending: as the law is, sorted)
        ev = np.sort(ev)
    if ev.size < 2 or not ev[-1] > 0:
        return MPFit.undefined()
    Q = N / M
    mu, s = tw_edge(N, M)
    lmax = float(ev[-1])
    lo = int(np.searchsorted(ev, max(zero_level(ev, N, M), zero_floor), side="right"))  # zero eigenvalues: [0, lo)
    num_zero = lo
    hi = ev.size
    # the bulk keeps the lower half of the non-zero eigenvalues at least: a spectrum whose top half lies above
    # every MP edge fitted to what is left has no MP bulk (a heavy tail, or heavy-tailed entries), and
    # refitting to ever fewer of its smallest eigenvalues would run down to two
    least = lo + max(2, (ev.size - lo + 1) // 2)
    q_mp = mp_quantiles(_PROBS, Q)  # σ² = 1, in units of λ/N
    given = sigma2 is not None
    if not given:
        if hi - lo < 2:
            return MPFit.undefined(num_zero)
        cut = scale * (mu + tw_margin * s)  # the threshold per unit σ²
        above = _self_consistent(ev, lo, hi, least, hi, N * scale, cut, q_mp, grow=False)
        if above is None:
            return MPFit.undefined(num_zero)
        sigma2, hi = above
        # from below too: a cluster of spikes a quarter of the spectrum or more inflates the σ² fitted to the whole,
        # whose threshold then lies above the cluster, itself a self-consistent bulk (a 25 % cluster at 7 λ₊ had
        # been 'random-like', σ 3x too large). The smaller bulk is the layer's where a gap parts it from what lies
        # above (its first spike GAP times its largest eigenvalue) and it fits the MP law better (KS); a tail
        # that runs on from the bulk without a gap keeps the largest bulk, as before
        # (refined up from a quarter of the spectrum: a cluster of more than half of it, 300 spikes of 500 at
        # 5 × BBP, holds eigenvalues of the lower half too, and the smallest bulk from there took them in)
        floor = lo + max(2, (ev.size - lo + 3) // 4)
        below = _self_consistent(ev, lo, floor, floor, hi, N * scale, cut, q_mp, grow=True) if hi > floor else None
        if (below is not None and below[1] < hi and ev[below[1]] > _GAP * ev[below[1] - 1]
                and _bulk_ks(ev[lo:below[1]] / (N * scale * below[0]), Q) < _bulk_ks(ev[lo:hi] / (N * scale * sigma2), Q)):
            sigma2, hi = below
    if not sigma2 > 0:
        return MPFit.undefined(num_zero)
    if given:  # the bulk: what lies below the given law's threshold
        hi = int(np.searchsorted(ev, sigma2 * scale * (mu + tw_margin * s), side="right"))
    unit = sigma2 * scale
    lam_minus = unit * (math.sqrt(N) - math.sqrt(M)) ** 2
    lam_plus = unit * (math.sqrt(N) + math.sqrt(M)) ** 2
    bulk = ev[lo:hi]
    ks = _bulk_ks(bulk / (N * unit), Q) if bulk.size else NAN
    threshold = unit * (mu + tw_margin * s)
    # the spikes are what lies above the threshold (the bulk that set σ² keeps the lower half of the
    # spectrum, so where that floor stopped the refit it may hold eigenvalues above it)
    return MPFit(
        sigma2=sigma2, lambda_minus=lam_minus, lambda_plus=lam_plus, threshold=threshold,
        num_spikes=int(ev.size - np.searchsorted(ev, threshold, side="right")), num_zero=num_zero,
        softrank=lam_plus / lmax, ks=ks,
    )


def _self_consistent(ev: np.ndarray, lo: int, hi: int, least: int, most: int, unit: float, cut: float,
                     q_mp: np.ndarray, grow: bool) -> tuple[float, int] | None:
    """(σ², hi): σ² fitted to the bulk ``ev[lo:hi]`` (quantile match), the bulk then refitted up to the threshold
    σ²·``cut`` in turn until it stops changing, kept within [``least``, ``most``]. From the whole spectrum the
    bulk can only shrink (a shorter bulk has smaller quantiles, a lower threshold), and from ``least`` (``grow``)
    only grow: the largest, or the smallest, self-consistent bulk. None where no σ² > 0 fits."""
    while True:
        if hi - lo < 2:
            return None
        q = _quantiles_of_sorted(ev[lo:hi], _PROBS) / unit
        fitted = float(np.dot(q, q_mp) / np.dot(q_mp, q_mp))
        if not fitted > 0:
            return None
        new_hi = min(max(int(np.searchsorted(ev, fitted * cut, side="right")), least), most)
        new_hi = max(new_hi, hi) if grow else min(new_hi, hi)  # (one way: rounding cannot make it cycle)
        if new_hi == hi:
            return fitted, hi
        hi = new_hi


def _quantiles_of_sorted(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``np.quantile(x, probs)`` (its default linear method) of an ascending ``x``, without sorting it again."""
    pos = probs * (x.size - 1)
    i = np.minimum(pos.astype(np.intp), x.size - 2)
    return x[i] + (pos - i) * (x[i + 1] - x[i])


def _bulk_ks(x: np.ndarray, Q: float) -> float:
    """KS distance of sorted values ``x`` (σ² = 1 units of X/N) from the MP law."""
    n = x.size
    F = mp_cdf(x, Q)
    k = np.arange(n)
    return float(max(np.max(F - k / n), np.max((k + 1) / n - F)))
