"""The 5+1 phases of training (THEORY §6) as labels, with explicit thresholds. Pure Python (numpy for
the entry count).

The label reads a layer's ESD against its Marchenko–Pastur fit (:mod:`htsr.rmt.mp`). The rules, in
order (the first that applies wins):

1. ``rank-collapse``  at least ``rank_collapse`` (default 10 %) of the eigenvalues are zero at float32
   precision, or lie in the rounding of a coarser storage below a gap (:func:`num_zero_evals`): a large mass
   at λ = 0.
2. ``random-like``    no eigenvalue above the MP edge plus the Tracy–Widom margin (``num_spikes = 0``), and the
   bulk fitted by the MP law (THEORY §6: "well fitted by MP"): its KS distance from the law within
   :data:`MP_KS_CUT`/√(bulk size), the 1 % critical value of a KS test of that many independent draws (an MP
   bulk's eigenvalues are rigid, far closer to the law: a 1000 × 500 Gaussian matrix's 0.006 against 0.073).
   No label ('') where it is not: an orthogonal matrix (its ESD one point), half the spectrum spikes that no
   gap parts from the bulk (the fit took them in).
3. ``heavy-tailed`` / ``bulk-decay``   at least ``ht_share`` (default 5 %) of the eigenvalues lie above
   the edge: a tail, not a few spikes; or spikes above a bulk the MP law does not fit (rule 2's test,
   :func:`mp_fits_bulk`): no MP bulk for them to stand above, an edge that is not sharp. ``heavy-tailed`` when
   its power-law alpha is below ``ht_alpha`` (default 6), else ``bulk-decay`` (weakly heavy-tailed); no label
   ('') when the tail has no alpha (its fit failed).
4. ``bulk-decay``     a few eigenvalues above an MP bulk, and the matrix has *heavy entries*: entries whose
   size alone, |W_ij − mean| > (NM)^¼·σ_mp (the BBP scale of a single entry), pulls an eigenvalue out
   of the bulk, and they drive most of the spikes. The mass above the edge then comes from a heavy-tailed entry
   distribution, not from low-rank correlations (one such entry is a correlation trap; see
   :mod:`htsr.rmt.traps`). The caller passes 0 heavy entries where they drive no more than half of the largest
   spikes (``htsr.analyze``, by :func:`htsr.rmt.localization.spike_localization`: whose singular vectors are
   localised, of the top three; a strong low-rank correlation's own entries pass the cut too, with spread
   vectors, and one entry among a trained layer's correlations is a trap of a bulk+spikes layer).
5. ``bleeding-out``   a few eigenvalues above the edge, all within ``bleed_width`` (default 25 %) of it:
   spikes just past the BBP transition.
6. ``bulk+spikes``    otherwise: an MP bulk and spikes well above its edge.

What the synthetic suite (``test_phase_label_is_right_in_at_least_95_percent_of_seeds`` in tests/test_rmt.py)
shows at 1000 × 500: Pareto entries with μ = 1 give ``heavy-tailed``; μ = 3 give ``bulk-decay`` (a handful of
entry-driven outliers: at this size the largest entries, ~(NM)^⅓, are of the order of the edge); μ = 5 give
``random-like`` — a finite fourth moment keeps λ_max at the MP edge (Bai–Yin), so the ESD cannot tell such a
matrix from Gaussian noise.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..specs import OPTION_SPECS
from .mp import MPFit, zero_level

__all__ = ["PHASES", "PhaseThresholds", "bbp_entry_scale", "count_heavy_entries", "mp_fits_bulk", "num_zero_evals",
           "phase_of"]

PHASES = ("random-like", "bleeding-out", "bulk+spikes", "bulk-decay", "heavy-tailed", "rank-collapse")
#: a bulk is fitted by the MP law when its KS distance from it is within MP_KS_CUT / √(its size): the 1 % critical
#: value of a one-sample KS test of that many independent draws (rule 2)
MP_KS_CUT = 1.63


@dataclass(frozen=True)
class PhaseThresholds:
    """The 5+1 phases' thresholds; the defaults are the analysis options' (``phase_rank_collapse`` …), from their
    one table."""

    # share of zero eigenvalues that makes a layer rank-collapsed
    rank_collapse: float = OPTION_SPECS["phase_rank_collapse"].default
    # share of eigenvalues above the edge that makes a tail (not a few spikes)
    ht_share: float = OPTION_SPECS["phase_ht_share"].default
    # a tail with alpha below this is heavy-tailed, else bulk-decay
    ht_alpha: float = OPTION_SPECS["phase_ht_alpha"].default
    # spikes all below (1 + bleed_width)·λ₊ are bleeding out
    bleed_width: float = OPTION_SPECS["phase_bleed_width"].default


def bbp_entry_scale(N: int, M: int, sigma2: float) -> float:
    """Size above which a single entry of an N × M noise matrix of variance σ² creates an outlier."""
    return (N * M) ** 0.25 * math.sqrt(sigma2)


def count_heavy_entries(W: np.ndarray, cut: float) -> int:
    """Entries with |W_ij − mean| > ``cut`` (:func:`bbp_entry_scale`), counted without a full-size temporary (this
    runs on every layer)."""
    m = float(W.mean(dtype=np.float64))
    # (a bound beyond the dtype's range holds no entry beyond it: compared, numpy cast it with an overflow warning)
    big = float(np.finfo(W.dtype).max) if W.dtype.kind == "f" else math.inf
    return (int(np.count_nonzero(W > m + cut)) if m + cut < big else 0) + (
        int(np.count_nonzero(W < m - cut)) if m - cut > -big else 0)


def num_zero_evals(evals: Sequence[float], N: int, M: int, floor: float = 0.0) -> int:
    """Eigenvalues of an N × M layer (``evals`` ascending) that are zero at float32 precision
    (:func:`~htsr.rmt.mp.zero_level`; the MP fit leaves the same ones out of its bulk), or at or below
    ``floor``, the rounding of a coarser storage under a gap (see ``htsr.analyze._rounding_zeros``). Not
    num_evals − ``matrix_rank``: that float64 rank (WeightWatcher's) counts the rounding of a float32
    product of low rank as rank, and would make it full-rank for one precision path and rank-deficient
    for the other."""
    evals = np.sort(np.asarray(evals, dtype=np.float64))  # (numpy's SVD gives them descending: as fit_mp, sorted)
    if evals.size == 0:
        return 0
    return bisect.bisect_right(evals, max(zero_level(evals, N, M), floor))


def mp_fits_bulk(mp: MPFit, num_evals: int, num_zero: int) -> bool:
    """Whether the MP law fits the bulk (the eigenvalues neither zero nor spikes): its KS distance from the law
    within :data:`MP_KS_CUT`/√(bulk size)."""
    bulk = num_evals - num_zero - mp.num_spikes
    return bulk > 0 and mp.ks <= MP_KS_CUT / math.sqrt(bulk)


def phase_of(num_evals: int, num_zero: int, mp: MPFit, lambda_max: float, alpha: float,
             num_heavy_entries: float, t: PhaseThresholds = PhaseThresholds()) -> str:
    """The layer's phase (one of :data:`PHASES`), or '': without an MP fit, with no spike above a bulk the MP law
    does not fit (rule 2), or with a tail (rule 3) that has no alpha."""
    if num_evals <= 0:
        return ""
    if num_zero / num_evals >= t.rank_collapse:
        return "rank-collapse"
    if not math.isfinite(mp.lambda_plus):
        return ""
    if mp.num_spikes == 0:
        return "random-like" if mp_fits_bulk(mp, num_evals, num_zero) else ""
    if mp.num_spikes / num_evals >= t.ht_share or not mp_fits_bulk(mp, num_evals, num_zero):
        # a tail, not a few spikes, or spikes above a bulk the MP law does not fit (no MP bulk for them to stand
        # above: an ESD whose edge is not sharp): its alpha tells heavy from decaying
        if not math.isfinite(alpha):
            return ""
        return "heavy-tailed" if alpha < t.ht_alpha else "bulk-decay"
    if num_heavy_entries > 0:
        return "bulk-decay"
    if lambda_max <= (1.0 + t.bleed_width) * mp.lambda_plus:
        return "bleeding-out"
    return "bulk+spikes"
