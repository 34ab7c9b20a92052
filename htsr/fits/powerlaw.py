"""Power-law fit of an ESD tail by the method of Clauset, Shalizi & Newman (SIAM Review 51, 2009).

Model: for λ ≥ x_min, p(λ) = ((α−1)/x_min)·(λ/x_min)^(−α). ``alpha`` is the exponent of the *density*
(the survival-function / Hill exponent is α−1).

For a given x_min with n tail values the maximum-likelihood estimate is α̂ = 1 + n / Σ ln(λ_i/x_min),
with standard error σ = (α̂−1)/√n. x_min is chosen among the observed values (all but the largest)
by minimising the Kolmogorov–Smirnov distance D between the tail's empirical CDF, evaluated at the
lower step k/n (k = 0..n−1, as WeightWatcher 0.7.7 and the ``powerlaw`` package do for distinct
values), and the fitted CDF 1 − (λ/x_min)^(1−α̂).

The scan is vectorised: every α̂ comes from one reverse cumulative sum of ln λ, and the KS distances of
all candidates are evaluated in blocks of whole rows, so there is no Python loop over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from ..errors import OptionError
from ..specs import check_args, check_values
from ..values import NanEqual

__all__ = ["PowerLawFit", "fit_power_law", "ks_scan"]

# Elements per block of the KS evaluation: bounds the scratch memory (3 float64 arrays of this size).
_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True, eq=False)
class PowerLawFit(NanEqual):
    """Result of :func:`fit_power_law`. Undefined numbers are NaN and ``status`` says why."""

    alpha: float
    sigma: float
    D: float
    xmin: float
    xmax: float
    num_pl_spikes: int  # tail size n: eigenvalues in [xmin, xmax] used by the fit
    status: str  # "ok" or "fit_failed: <reason>"
    num_fingers: int = 0  # top eigenvalues dropped by clip_xmax
    raw_alpha: float = float("nan")  # alpha before clip_xmax (NaN when clip_xmax is off)

    @classmethod
    def failed(cls, reason: str) -> PowerLawFit:
        nan = float("nan")
        return cls(nan, nan, nan, nan, nan, 0, f"fit_failed: {reason}")


def _alphas(L: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """MLE α̂ for x_min = x[i], i in candidates, from one reverse cumulative sum of the logs."""
    N = L.size
    S = np.cumsum(L[::-1])[::-1]  # S[i] = Σ_{j≥i} L_j
    n = (N - candidates).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + n / (S[candidates] - n * L[candidates])
    alphas[~np.isfinite(alphas)] = np.nan
    return alphas


def _deviations(L: np.ndarray, idx: np.ndarray, a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """max over the given columns j ≥ i of |F_fit(λ_j) − F_emp(j)| for each candidate i in ``idx``.

    The same expression serves the strided lower-bound pass and the exact pass.
    """
    N = L.size
    diff = L[cols][None, :] - L[idx][:, None]  # ln(λ_j / x_min)
    with np.errstate(over="ignore"):  # j < i overflows; masked below
        dev = -np.expm1((1.0 - a)[:, None] * diff)  # fitted CDF 1 − (λ_j/x_min)^(1−α)
    dev -= (cols[None, :] - idx[:, None]) / (N - idx)[:, None].astype(np.float64)  # empirical CDF
    np.abs(dev, out=dev)
    dev[cols[None, :] < idx[:, None]] = 0.0  # j < i is not in candidate i's tail
    return dev.max(axis=1)


def _blocked(L: np.ndarray, idx: np.ndarray, a: np.ndarray, stride: int = 1) -> np.ndarray:
    """:func:`_deviations` over columns lo, lo+stride, …, N−1 for candidates in ascending blocks.

    A block's columns start at its first candidate, so the rows of later candidates waste the columns
    j < i; a block therefore spans at most a quarter of the remaining columns' range.
    """
    N = L.size
    out = np.empty(idx.size)
    start = 0
    while start < idx.size:
        lo = int(idx[start])
        cols = np.arange(lo, N, stride)
        if cols[-1] != N - 1:
            cols = np.append(cols, N - 1)
        stop = min(idx.size, start + max(1, _BLOCK_ELEMENTS // cols.size))
        span_end = int(np.searchsorted(idx, lo + max(8 * stride, (N - lo) // 4), side="right"))
        stop = max(start + 1, min(stop, span_end))
        out[start:stop] = _deviations(L, idx[start:stop], a[start:stop], cols)
        start = stop
    return out


def _shifted_logs(x: np.ndarray) -> np.ndarray:
    # shift the logs so running sums stay small; Σ_{j≥i} (L_j − L_i) does not depend on the shift
    L = np.log(x)
    L -= L[L.size // 2]
    return L


def ks_scan(x: np.ndarray, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (alphas, Ds) for x_min = x[i] for every candidate index i (all KS distances, exactly).

    ``x`` must be sorted ascending and positive. The default candidates are all indices but the last
    (duplicates included, as WeightWatcher does; :func:`fit_power_law` scans those where a run of equal values
    starts, :func:`run_starts`). A candidate whose α̂ ≤ 1 gets D = 1: the fitted law is not normalisable there.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or (x.size > 1 and not np.all(x[1:] >= x[:-1])) or (x.size and not x[0] > 0):
        raise OptionError("ks_scan: x must be 1-D, positive and sorted ascending (np.sort(x)): the candidates index "
                          "it", "x")
    L = _shifted_logs(x)
    candidates = np.arange(x.size - 1) if candidates is None else np.asarray(candidates, dtype=np.intp)
    alphas = _alphas(L, candidates)
    Ds = np.ones(candidates.size)
    valid = np.flatnonzero(alphas > 1.0)
    if valid.size:
        Ds[valid] = _blocked(L, candidates[valid], alphas[valid])
    return alphas, Ds


# The slack that absorbs last-ulp differences between the lower-bound and exact passes.
_LB_SLACK = 1e-12


def _strides(n: int) -> tuple[int, ...]:
    """Strides of the lower-bound passes, coarse to fine, for n eigenvalues (measured best: ~2√n, ~√(2√n))."""
    coarse = int(2 * np.sqrt(n))
    return tuple(s for s in (coarse, int(np.sqrt(coarse))) if s >= 4)


def _best_candidate(L: np.ndarray, candidates: np.ndarray, alphas: np.ndarray) -> tuple[int, float]:
    """Position (in ``candidates``) and D of the first candidate with the smallest KS distance.

    Same answer as ``argmin(ks_scan(...)[1])`` at a fraction of the cost. A strided pass gives every
    candidate a lower bound of its D (a max over a subset of the same terms); the exact D of the few
    candidates with the smallest bounds is an upper bound of the minimum, and every candidate whose
    lower bound exceeds it is dropped. A finer pass repeats this on the survivors; finally exact
    distances are computed in order of increasing bound until the next bound exceeds the best D found.
    """
    valid = np.flatnonzero(alphas > 1.0)
    idx, a = candidates[valid], alphas[valid]
    if idx.size <= 64:
        D = _blocked(L, idx, a)
    else:
        alive = np.arange(idx.size)
        lb = np.zeros(idx.size)
        best = np.inf
        for stride in _strides(L.size):
            lb[alive] = _blocked(L, idx[alive], a[alive], stride=stride)
            top = np.sort(alive[np.argsort(lb[alive], kind="stable")[:8]])
            best = min(best, float(_blocked(L, idx[top], a[top]).min()))
            alive = alive[lb[alive] <= best + _LB_SLACK]
        order = alive[np.argsort(lb[alive], kind="stable")]
        D = np.full(idx.size, np.inf)
        best = np.inf
        pos = 0
        while pos < order.size and lb[order[pos]] <= best + _LB_SLACK:
            chunk = order[pos : pos + 32]
            chunk = chunk[lb[chunk] <= best + _LB_SLACK]
            chunk = np.sort(chunk)  # ascending candidates share a column range in _blocked
            D[chunk] = _blocked(L, idx[chunk], a[chunk])
            best = min(best, float(D[chunk].min()))
            pos += 32
    k = int(np.argmin(D))  # first minimum, as WeightWatcher's argmin
    return int(valid[k]), float(D[k])


def _fit_at(x: np.ndarray, i: int, alpha: float, D: float) -> PowerLawFit:
    n = x.size - i
    sigma = (alpha - 1.0) / np.sqrt(n)
    return PowerLawFit(float(alpha), float(sigma), float(D), float(x[i]), float(x[-1]), int(n), "ok")


def _fixed_xmin_fit(x: np.ndarray, xmin: float) -> PowerLawFit:
    if not (math.isfinite(xmin) and xmin > 0):
        return PowerLawFit.failed(f"the fixed xmin {xmin:g} is not a positive number")
    tail = x[x >= xmin]
    n = tail.size
    if n < 2:
        return PowerLawFit.failed(f"fewer than 2 eigenvalues above the fixed xmin {xmin:g}")
    # log λ − log x_min, not log(λ / x_min): λ / 1e-306 overflows to inf (alpha would read exactly 1)
    t = np.log(tail) - math.log(xmin)
    s = float(np.sum(t))
    if s <= 0:
        return PowerLawFit.failed("all tail eigenvalues equal the fixed xmin")
    alpha = 1.0 + n / s
    if not (math.isfinite(alpha) and alpha > 1.0):
        return PowerLawFit.failed(f"alpha {alpha:g} at the fixed xmin {xmin:g} is no power law (needs alpha > 1)")
    fit_cdf = -np.expm1((1.0 - alpha) * t)
    D = float(np.max(np.abs(fit_cdf - np.arange(n) / n)))
    return PowerLawFit(alpha, (alpha - 1.0) / math.sqrt(n), D, float(xmin), float(tail[-1]), int(n), "ok")


def _peak_candidates(x: np.ndarray) -> np.ndarray:
    """Candidate indices with x ≤ 1.5 × the peak of the 100-bin histogram of log10 λ."""
    counts, edges = np.histogram(np.log10(x), bins=100)
    peak = 10.0 ** edges[int(np.argmax(counts))]
    return np.flatnonzero(x[:-1] <= 1.5 * peak)


# A spectrum whose values all lie within this relative distance of its largest is flat (an orthogonal
# or scaled-orthogonal matrix: its eigenvalues differ by the eigensolver's rounding, ~1e-6 in float32).
# Fitting it would give an alpha of 1e6 from rounding noise.
FLAT_SPREAD = 1e-4
# Eigenvalues within this relative distance of the next smaller one are one value (an eigensolver's rounding, ~1e-7
# in float32): no x_min falls between them
TIE_SPREAD = 1e-6


def run_starts(x: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The ``candidates`` (indices of the sorted ``x``) at which a run of equal values starts: the tail is every
    λ ≥ x_min (THEORY §3), so no x_min candidate lies inside a run — one at a tied value had fitted 128 of the 150
    values ≥ it, its alpha and num_pl_spikes those of no tail (h55) —, values within :data:`TIE_SPREAD` of the
    one below counting as equal (one path's float32 ties are the other's float64 neighbours)."""
    candidates = np.asarray(candidates, dtype=np.intp)
    below = x[np.maximum(candidates - 1, 0)]
    return candidates[(candidates == 0) | (x[candidates] - below > TIE_SPREAD * x[candidates])]


def _fit_once(x: np.ndarray, xmin: str | float) -> PowerLawFit:
    if x.size < 2 or x[0] == x[-1]:
        return PowerLawFit.failed("fewer than 2 distinct eigenvalues above the floor")
    if x[-1] - x[0] <= FLAT_SPREAD * x[-1]:
        return PowerLawFit.failed(f"a flat spectrum: every eigenvalue within {FLAT_SPREAD:g} of the largest "
                                  "(an orthogonal matrix?); no tail to fit")
    if not isinstance(xmin, str):
        return _fixed_xmin_fit(x, float(xmin))
    if xmin == "median":  # tail = the top half of the spectrum, from the start of the run of values it falls in
        candidates = run_starts(x, np.arange(x.size // 2 + 1))[-1:]
    elif xmin == "peak":
        candidates = _peak_candidates(x)
        if candidates.size == 0:
            return PowerLawFit.failed("no x_min candidate below 1.5 x the ESD peak")
    elif xmin == "ks":
        candidates = None
    else:
        raise OptionError(f"unknown x_min strategy {xmin!r}", "xmin", xmin)
    if candidates is None:
        candidates = np.arange(x.size - 1)
    candidates = run_starts(x, candidates)
    # a tail whose values all lie within FLAT_SPREAD of its largest is flat too (60 equal singular values above
    # the rest, apart by the solver's rounding: alpha 1e6–1e8, 'ok'): no candidate
    candidates = candidates[x[-1] - x[candidates] > FLAT_SPREAD * x[-1]]
    if candidates.size == 0:
        return PowerLawFit.failed(f"a flat tail: the eigenvalues above every x_min candidate lie within {FLAT_SPREAD:g} "
                                  "of the largest (equal singular values); no power law to fit")
    L = _shifted_logs(x)
    alphas = _alphas(L, candidates)
    if not np.any(alphas > 1.0):
        return PowerLawFit.failed("no x_min candidate gives alpha > 1")
    k, D = _best_candidate(L, candidates, alphas)
    return _fit_at(x, int(candidates[k]), alphas[k], D)



def check_tail(where: str, tail: np.ndarray, xmin: float) -> None:
    """A tail given with its x_min: a positive finite x_min, and every value finite and at least x_min (values
    below it would enter the likelihood of a density that is zero there); ValueError saying so."""
    if not (isinstance(xmin, (int, float, np.floating, np.integer)) and not isinstance(xmin, bool)
            and math.isfinite(xmin) and xmin > 0):
        raise OptionError(f"{where}: xmin must be a positive finite number, got {xmin!r}", "xmin", xmin)
    if tail.ndim != 1:
        raise OptionError(f"{where}: the tail must be 1-D (one layer's values), got an array of shape {tail.shape}")
    if tail.size and not (np.isfinite(tail).all() and float(np.min(tail)) >= xmin):
        raise OptionError(f"{where}: the tail values must be finite and ≥ xmin = {xmin:g} (the smallest is "
                          f"{float(np.min(tail)):g}); pass only the values at or above x_min")


def fit_power_law(
    evals: np.ndarray,
    xmin: str | float = "ks",
    clip_xmax: bool = False,
    max_fingers: int = 10,
    finger_thresh: float = 1.0,
    drop_top: int = 0,
    min_left: int = 3,
) -> PowerLawFit:
    """Fit a power law to the tail of ``evals`` (positive eigenvalues, any order).

    ``xmin``: ``"ks"`` (scan, default), ``"median"`` (tail = top half), ``"peak"`` (scan restricted
    to candidates ≤ 1.5 × the log-histogram peak) or a positive number (fixed).
    ``clip_xmax``: refit after dropping the k = 1..max_fingers largest eigenvalues and keep the first
    refit whose α is lower than the unclipped α by more than ``finger_thresh``. ``drop_top``: fit without the
    k largest eigenvalues, always (WeightWatcher's ``xmax=-k``); they count as ``num_fingers``. ``min_left``: the
    fewest eigenvalues a fit without the largest may keep (:func:`htsr.analyze` passes ``min_evals``; 3 at least).
    """
    # (numpy scalars as the Python ones, exactly: an x_min of np.float32(λ) is λ)
    xmin, clip_xmax, max_fingers, finger_thresh, drop_top = (
        v.item() if isinstance(v, np.generic) else v for v in (xmin, clip_xmax, max_fingers, finger_thresh, drop_top))
    check_args("fit_power_law", xmin=xmin, clip_xmax=clip_xmax, max_fingers=max_fingers, finger_thresh=finger_thresh,
               drop_top=drop_top)
    if drop_top and clip_xmax:
        raise OptionError("fit_power_law: drop_top and clip_xmax both choose the top eigenvalues a fit leaves out: "
                          "give one of them", "drop_top", drop_top)
    x = check_values("fit_power_law", evals, "evals")
    min_left = max(3, int(min_left))
    first = _fit_once(x, xmin)
    if drop_top and first.status == "ok":
        kept = _fit_once(x[:-drop_top], xmin) if x.size - drop_top >= min_left else PowerLawFit.failed(
            f"{x.size} eigenvalues: {max(x.size - drop_top, 0)} left without the {drop_top} largest, and a fit needs "
            f"{min_left}")
        if kept.status != "ok" and x.size - drop_top >= min_left:  # (the refit's words are about the rest alone)
            kept = PowerLawFit.failed(f"without the {drop_top} largest eigenvalues (drop_top): "
                                      f"{kept.status.removeprefix('fit_failed: ')}; with them, {first.num_pl_spikes} "
                                      f"lie at or above x_min {first.xmin:.4g}")
        return PowerLawFit(**{**kept.__dict__, "num_fingers": drop_top, "raw_alpha": first.alpha})
    if not clip_xmax or first.status != "ok":
        return first
    for k in range(1, max_fingers + 1):
        if x.size - k < min_left:
            break
        refit = _fit_once(x[:-k], xmin)
        if refit.status == "ok" and refit.alpha + finger_thresh < first.alpha:
            return PowerLawFit(**{**refit.__dict__, "num_fingers": k, "raw_alpha": first.alpha})
    return PowerLawFit(**{**first.__dict__, "raw_alpha": first.alpha})
