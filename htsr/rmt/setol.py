"""SETOL: the ERG (det X = 1) condition and the layer-quality closed forms (THEORY §7). Pure numpy.

**ERG tail.** SETOL's ideal layer has an "effective correlation space" — the top of the spectrum —
whose eigenvalues satisfy det X_tail = 1, i.e. Σ ln λ̃ = 0 over the tail, with the spectrum normalised
to mean 1 over its n eigenvalues: λ̃ = λ·n/Σλ — every eigenvalue of the layer, but a rank-deficient layer's zeros
(at least :data:`ERG_ZERO_SHARE` of them, :func:`erg_eigenvalues`), which ``htsr.analyze`` leaves out before it
calls :func:`erg_tail` (docs/rmt.md). Operationally (:func:`erg_tail`)
one walks down from the largest λ̃ keeping the running sum of ln λ̃; the ERG tail starts at the first
eigenvalue (from the top) where that sum drops strictly below 0, and includes it.

Because the mean of λ̃ is 1, AM–GM gives Σ ln λ̃ ≤ 0 over the whole spectrum, with equality only when
all eigenvalues are equal; so the walk always ends inside the spectrum unless the spectrum is flat (and
a zero eigenvalue, ln 0 = −∞, ends it at the latest). The sum is a vectorised ``np.cumsum`` of logs:
the literal running *product* overflows for large heavy-tailed layers (the top few thousand
normalised eigenvalues of a 20 000-eigenvalue layer multiply past 1.8e308). A running product then
stays ``inf`` and never drops below 1; WW's ``np.prod(evals[idx:])`` is worse, since numpy's blocked
reduction mixes partial products that overflow to inf with ones that underflow to 0, so it "drops
below 1" at a meaningless index — either way the count is silently wrong.

**Relation to WeightWatcher 0.7.7** (``RMT_Util.detX_constraint``): WW loops ``idx`` from n−1 down to
1 testing ``np.prod(evals[idx:]) < 1`` and returns ``num_evals = n − idx``. htsr gives the same count
and the same edge index whenever WW's product does not overflow and the tail is not the whole
spectrum. Differences, on purpose:

* WW never tests idx = 0; if the product never drops below 1 it returns ``num_evals = n`` with
  ``idx = 1`` (an edge that is not in the tail). htsr tests every index: when only the full spectrum
  brings the log-sum below 0 the tail is all n eigenvalues and the edge is the smallest one; when the
  log-sum never drops below 0 (only possible for a flat spectrum, or one flat to rounding) htsr
  reports the tail as undefined (``num_erg = 0``, NaN edge, a ``status`` saying why) rather than n.
* WW returns (0, 0) for fewer than 2 eigenvalues or evals[0] ≥ evals[-1]; htsr returns an undefined
  result with the reason in ``status``.
* WW's product overflows (see above); htsr's log-sum does not.

The comparison is strict (< 0) on the floating-point log-sum. A partial product that equals 1 exactly
in exact arithmetic (only hand-built spectra do that) may fall either side by a few ulp.

**Layer quality** (:func:`layer_quality`): closed forms of log₁₀ Q for the three tail models of SETOL,
in log₁₀ of raw eigenvalues (the convention of alpha-hat = α·log₁₀ λ_max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fits.powerlaw import FLAT_SPREAD
from ..values import NanEqual

__all__ = ["ERGResult", "delta_lambda_min", "erg_eigenvalues", "erg_tail", "layer_quality"]

NAN = float("nan")


@dataclass(frozen=True, eq=False)
class ERGResult(NanEqual):
    """The ERG tail of one spectrum (see :func:`erg_tail`)."""

    num_erg: int  # ERG tail size (0 when undefined)
    erg_lambda_min: float  # lower edge of the ERG tail in mean-normalised units (λ̃ = λ·n/Σλ); NaN if undefined
    erg_lambda_min_raw: float  # the same eigenvalue in the input's units; NaN if undefined
    status: str  # '' when defined, else 'undefined: <reason>'

    @property
    def defined(self) -> bool:
        return self.status == ""


def _undefined(reason: str) -> ERGResult:
    return ERGResult(0, NAN, NAN, f"undefined: {reason}")


#: the share of eigenvalues zero at float32 precision from which a layer's ERG leaves them out (the phase's
#: default rank-collapse share, fixed here: no phase option moves it)
ERG_ZERO_SHARE = 0.10


def erg_eigenvalues(evals: np.ndarray, rank: int, num_zero: int = 0) -> np.ndarray:
    """The eigenvalues a layer's ERG is taken over: of ascending ``evals``, the ``rank`` largest (at least
    one) — the correlation space its weights span; for a rank-deficient layer, whose ``num_zero`` eigenvalues
    zero at float32 precision are at least :data:`ERG_ZERO_SHARE` of them, all but those (its float64 rank
    counts the rounding of its float32 entries, and its tail would end on that rounding, ~1e-16). A rank-deficient
    layer's zeros (a LoRA update's M − r) in the mean would end the walk on λ = 0, with a tail of rank + 1
    whatever the spectrum; a nearly full-rank layer's few tiny ones stay in, as WeightWatcher has them."""
    evals = np.sort(np.asarray(evals, dtype=np.float64))  # (numpy's SVD gives them descending)
    if num_zero >= ERG_ZERO_SHARE * evals.size:
        rank = evals.size - num_zero
    return evals[max(0, min(evals.size - rank, evals.size - 1)):]


def erg_tail(evals: np.ndarray) -> ERGResult:
    """The ERG (det X = 1) tail of a spectrum.

    ``evals``: all eigenvalues of the layer (zeros included), ≥ 0; expected ascending (they are sorted
    here anyway, so the result depends only on the multiset). They are normalised to mean 1 over all n
    values, λ̃ = λ·n/Σλ; the running sum of ln λ̃ from the largest down is taken with ``np.cumsum``
    (no running product, no Python loop), and the tail is every eigenvalue from the largest down to and
    including the first one at which the sum is < 0.

    Returns an :class:`ERGResult`. Undefined (``num_erg = 0``, NaN edges) with ``status``:

    * ``'undefined: fewer than 2 eigenvalues'``
    * ``'undefined: non-finite or negative eigenvalues'``
    * ``'undefined: zero spectrum'`` — every eigenvalue is 0
    * ``'undefined: all eigenvalues equal'`` — then every λ̃ = 1 and the log-sum is 0 throughout
    * ``'undefined: log-sum never drops below 0'`` — the spectrum is not flat but so nearly flat that
      the rounded log-sum stays ≥ 0 (AM–GM says it is < 0 in exact arithmetic); WW would return n here.

    Scale invariant: multiplying ``evals`` by c > 0 leaves ``num_erg`` and ``erg_lambda_min`` unchanged
    and multiplies ``erg_lambda_min_raw`` by c. Overflow-safe: the normalisation divides by the largest
    eigenvalue first and the logs are taken of the raw values, so any finite non-negative input works.
    """
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    n = x.size
    if n < 2:
        return _undefined("fewer than 2 eigenvalues")
    if not np.all(np.isfinite(x)) or x[0] < 0.0:
        return _undefined("non-finite or negative eigenvalues")
    top = x[-1]
    if top == 0.0:
        return _undefined("zero spectrum")
    if x[0] == top:
        return _undefined("all eigenvalues equal")
    if top - x[0] <= FLAT_SPREAD * top:  # (an orthogonal layer: its count would be its eigensolver's rounding,
        # 56 at one scale, 80 at another)
        return _undefined(f"a flat spectrum: every eigenvalue within {FLAT_SPREAD:g} of the largest")

    # mean of x/top lies in [1/n, 1]: no overflow in the sum whatever the scale of x
    mean_scaled = float(np.sum(x / top)) / n
    with np.errstate(divide="ignore"):
        # ln λ̃ (−inf for zero eigenvalues), from x/top: ln x − ln mean cancelled to ~1e-13 at scales far from 1,
        # which made a near-flat spectrum's count depend on the weights' scale
        log_norm = np.log(x / top) - math.log(mean_scaled)
    running = np.cumsum(log_norm[::-1])  # running[k] = Σ ln λ̃ over the top k+1 eigenvalues
    below = np.flatnonzero(running < 0.0)
    if below.size == 0:
        return _undefined("log-sum never drops below 0")
    num = int(below[0]) + 1
    idx = n - num
    edge_raw = float(x[idx])
    edge_norm = float(x[idx] / top / mean_scaled)
    return ERGResult(num, edge_norm, edge_raw, "")


def delta_lambda_min(xmin_normalised: float, erg: ERGResult) -> float:
    """Δλ_min = x_min − λ̃_min^ERG, both in mean-normalised units (THEORY §7).

    ``xmin_normalised`` is the power-law fit's lower cut-off normalised with the same mean as the ERG
    tail, x_min·n/Σλ over the n eigenvalues the tail was found in (:func:`erg_eigenvalues`). SETOL's ideal point
    is α = 2 with Δλ_min = 0; α < 2 with Δλ_min < 0 signals over-fitting. NaN when ``xmin_normalised`` is not
    finite or the ERG tail is undefined.
    """
    try:
        xm = float(xmin_normalised)
    except (TypeError, ValueError):
        return NAN
    if not erg.defined or not math.isfinite(xm) or not math.isfinite(erg.erg_lambda_min):
        return NAN
    return xm - erg.erg_lambda_min


def _positive(v: float) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0.0 else None


def layer_quality(alpha: float, lambda_max: float, xmin: float) -> dict[str, float]:
    """SETOL's closed forms of the layer quality log₁₀ Q, one per tail model (THEORY §7).

    ``alpha``: the power-law exponent of the tail (density ∝ λ^−α); ``lambda_max``: the largest
    eigenvalue; ``xmin``: the fit's lower cut-off (the tail's smallest eigenvalue, λ_min of the tail) —
    both in raw eigenvalue units, and every result is in log₁₀ of raw eigenvalues, the convention of
    alpha-hat = α·log₁₀ λ_max. Each column is computed from its own inputs only and is NaN when any of
    them is not finite and > 0, so a failed fit (NaN α) still leaves ``logq_free_cauchy``.

    * ``logq_free_cauchy`` = log₁₀ λ_max — the free-Cauchy tail model, SETOL's ideal α = 2 layer.
      Valid at (around) α = 2; it does not use α.
    * ``logq_levy_wigner`` = (α − 1)·log₁₀ λ_max — the Lévy–Wigner (very heavy-tailed, α < 2) model,
      the alpha-hat family. Valid for 1 < α ≤ 2 (negative/meaningless for α < 1); at α = 2 it equals
      ``logq_free_cauchy``.
    * ``logq_inverse_mp`` = 2α·(log₁₀ λ_max − log₁₀ x_min) — the inverse Marchenko–Pastur tail model,
      for the weakly heavy-tailed regime α ≳ 2, with the tail spanning [x_min, λ_max] (so it is ≥ 0
      whenever x_min ≤ λ_max).

    Which column applies to a layer is the caller's choice, by its fitted α; all three are always
    returned so they can be compared.
    """
    a = _positive(alpha)
    lmax = _positive(lambda_max)
    xm = _positive(xmin)
    log_lmax = math.log10(lmax) if lmax is not None else NAN
    return {
        "logq_free_cauchy": log_lmax,
        "logq_levy_wigner": (a - 1.0) * log_lmax if a is not None else NAN,
        "logq_inverse_mp": (
            2.0 * a * (log_lmax - math.log10(xm)) if a is not None and xm is not None else NAN
        ),
    }
