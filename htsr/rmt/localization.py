"""Eigenvector localisation (THEORY §5, optional): are the tail's eigenvectors concentrated on a few
coordinates, as spikes and traps are, while the bulk's are spread out?

For each unit eigenvector v of X (on the smaller side of each matrix; X = WᵀW, the input side, for a square
one, as THEORY's X is), of dimension M:

* participation ratio PR = 1 / Σ v_i⁴ — about how many coordinates carry v: M/3 on average for a random
  (delocalised) unit vector in high dimension, 1 for a coordinate vector;
* localisation ratio LR = ‖v‖₁ / ‖v‖_∞ — the same idea with the other norms: about
  a random vector (≈ M/√(π ln M)), 1 for a coordinate vector;
* vector entropy H — WeightWatcher's ``vec_entropy`` (its ``vectors=True``): the Shannon entropy of the histogram
  of the magnitudes |v_i| in :data:`ENTROPY_BINS` equal bins over their range (:func:`vector_entropy`). At most
  ln 100 ≈ 4.61 (the magnitudes spread evenly over their range); a random unit vector's half-normal magnitudes
  give 3.8 to 4.05 for M from 100 to 4096; a coordinate vector −((M−1)/M)·ln((M−1)/M) − (1/M)·ln(1/M), near 0.

Tail = the eigenvectors of the ``num_tail`` largest eigenvalues (the analysis passes the number of its
spectrum's eigenvalues ≥ x_min of the power-law fit: taken by rank, because the eigenvalues recomputed
here with their vectors differ from the spectrum's in the last digits, and x_min, one of the spectrum's,
would otherwise split ties at random); bulk = the others above the numerical floor (scaled like the ESD).
Each group gets the mean and standard deviation of PR, of LR and of H.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import OptionError
from ..lapack import eigh
from ..spectra import as_matrices, resolved_cut, safely_scaled

__all__ = ["localization", "localized_spike", "spike_localization", "vector_entropy", "ENTROPY_BINS",
           "LOCALIZATION_COLUMNS", "LOCALIZED_SHARE", "LOCALIZED_TOP"]

LOCALIZATION_COLUMNS = tuple(f"loc_{q}_{g}_{s}" for q in ("pr", "lr", "ent") for g in ("tail", "bulk")
                             for s in ("mean", "std"))

#: the bins of :func:`vector_entropy`'s histogram (WeightWatcher's ``discrete_entropy(vec, num_bins=100)``)
ENTROPY_BINS = 100
#: added to each bin's density before normalising, as WeightWatcher does (its EPSILON): each empty bin adds
#: −p·ln p with p ≈ ε·range/100: 2.8e-11 for a coordinate vector (range 1, p = 1e-12)
_ENTROPY_EPS = 1e-10


#: two neighbouring eigenvalues of one matrix within this share of the larger are one (degenerate) eigenvalue: their
#: eigenvectors are any basis of its space (an orthogonal matrix's: the identity's coordinate vectors, PR 1, or a
#: Hadamard's, PR 12, for the same spectrum). Above float32 storage's spread of one eigenvalue (~2e-7: an orthogonal
#: matrix stored in float32 had PR 86, a basis its rounding chose); relative to the pair, not to λ_max (a spike
#: 1e10 times the bulk's gaps had made a resolved bulk 'degenerate', h57)
DEGENERATE_GAP = 1e-5


def localization(matrices: Sequence[np.ndarray], num_tail: int, scale: float = 1.0,
                 floor: float | None = 0.0, notes: list[str] | None = None) -> dict[str, float]:
    """Mean and spread of the participation and localisation ratios and of the vector entropy of the eigenvectors of
    the ``num_tail`` largest eigenvalues (pooled over ``matrices``) and of the others above ``floor`` (None: above
    each matrix's :func:`~htsr.spectra.resolved_cut`, the same on either eigenvalue path). A group most of whose
    eigenvalues are degenerate (:data:`DEGENERATE_GAP`) gets NaN: its vectors are a basis the solver chose, and
    ``notes`` (a list, if given) gets why."""
    evals, cuts, pr, lr, ent, tied = [], [], [], [], [], []
    matrices = as_matrices(matrices, "localization")
    if not matrices:  # (concatenating nothing had been a bare ValueError)
        raise OptionError("localization: no matrices given; pass a layer's matrices (or one 2-D array)")
    for i, W in enumerate(matrices):
        A = np.asarray(W, dtype=np.float64)
        if A.size == 0 or not np.isfinite(A).all():  # (as esd refuses them)
            raise OptionError(f"localization: matrix {i} is empty or holds NaN or infinite values; eigenvectors need "
                              "finite weights")
        G = A @ A.T if A.shape[0] < A.shape[1] else A.T @ A  # (a square one's X = WᵀW: its input side)
        ev, V = eigh(G.T)  # (G.T: numpy's Gram is exactly symmetric, solved in place; Python's lock released)
        close = np.diff(ev) <= DEGENERATE_GAP * np.abs(ev[1:])  # (ascending: a neighbour's equal)
        tied.append(np.concatenate([close, [False]]) | np.concatenate([[False], close]))
        evals.append(ev * scale)
        cuts.append(np.full(ev.size, resolved_cut(np.maximum(ev, 0.0) * scale, G.shape[0]) if floor is None
                            else floor))
        pr.append(participation_ratio(V, axis=0))
        lr.append(np.sum(np.abs(V), axis=0) / np.max(np.abs(V), axis=0))
        ent.append(vector_entropy(V, axis=0))
    ev, cut, tie = np.concatenate(evals), np.concatenate(cuts), np.concatenate(tied)
    ratios = np.stack([np.concatenate(pr), np.concatenate(lr), np.concatenate(ent)])
    order = np.argsort(ev, kind="stable")[::-1]
    tail = order[:max(0, min(num_tail, ev.size))]
    rest = order[tail.size:]
    groups = {"tail": tail, "bulk": rest[ev[rest] > cut[rest]]}
    out: dict[str, float] = {}
    for g, idx in groups.items():
        vals = ratios[:, idx]
        if idx.size and 2 * int(np.count_nonzero(tie[idx])) > idx.size:
            vals = ratios[:, :0]  # (NaN: the vectors of a degenerate eigenvalue are any basis of its space)
            if notes is not None:
                notes.append(f"{g} eigenvalues degenerate (their eigenvectors any basis): undefined")
        for q, row in zip(("pr", "lr", "ent"), vals):
            out[f"loc_{q}_{g}_mean"] = float(np.mean(row)) if row.size else float("nan")
            out[f"loc_{q}_{g}_std"] = float(np.std(row, ddof=1)) if row.size > 1 else float("nan")
    return out


def vector_entropy(V: np.ndarray, axis: int) -> np.ndarray:
    """The entropy of each vector along ``axis`` of V as WeightWatcher's ``vectors=True`` computes it: the
    histogram of its entries' magnitudes in :data:`ENTROPY_BINS` equal bins over their range (numpy's
    ``histogram``: a vector of equal magnitudes gets one bin of a unit-wide range), as a density plus
    ``_ENTROPY_EPS``, normalised to p; −Σ p ln p. Scale-free (the same for v and c·v) but for the ε, whose share
    of an empty bin grows with the range: it adds ~3e-10 to a random unit vector's H, 3e-9 to a coordinate
    vector's."""
    A = np.abs(np.moveaxis(np.asarray(V, dtype=np.float64), axis, -1).reshape(-1, np.shape(V)[axis]))
    out = np.empty(A.shape[0])
    for i, a in enumerate(A):
        try:
            p = np.histogram(a, bins=ENTROPY_BINS, density=True)[0]
        except ValueError:  # magnitudes that differ in their last bits only: too narrow a range for the bins
            p = None  # (numpy >= 2.2 says so; older ones return inf and NaN densities, which had made the entropy NaN)
        if p is None or not np.isfinite(p).all():
            p = np.histogram(np.full_like(a, a[0]), bins=ENTROPY_BINS, density=True)[0]  # equal ones'
        p = p + _ENTROPY_EPS
        p /= p.sum()
        out[i] = -np.sum(p * np.log(p))
    return out.reshape(np.delete(np.shape(V), axis))


def participation_ratio(V: np.ndarray, axis: int) -> np.ndarray:
    """1 / Σ v_i⁴ of the unit vectors along ``axis`` of V: about how many coordinates carry each."""
    return 1.0 / np.sum(V**4, axis=axis)


#: a singular vector whose participation ratio is below this share of its length sits on a few entries (a random
#: unit vector's is 1/3; one on a single entry's 1/length)
LOCALIZED_SHARE = 0.1
#: the largest spikes whose singular vectors are looked at (an entry-driven outlier behind three stronger
#: correlations is left to them: bulk+spikes)
LOCALIZED_TOP = 3


def spike_localization(matrices: Sequence[np.ndarray], k: int) -> tuple[int, int]:
    """(localised, looked at): of the ``k`` largest singular triplets over ``matrices`` (at most
    :data:`LOCALIZED_TOP`, and fewer than a matrix's smaller side), how many have a left or right vector localised
    (:data:`LOCALIZED_SHARE`): the phase's test of spikes driven by a few heavy entries
    (:func:`htsr.rmt.phases.phase_of`; a pooled conv's spikes are its kernel positions' largest, taken together).
    In each matrix's own precision, by ARPACK from a fixed start (reproducible; 0.4 s for the top 3 of a 4096 x
    11008 float32 layer, whose analysis takes 4 s); a matrix ARPACK does not solve counts its triplets as
    localised (the heavy-entry rule as before)."""
    import scipy.sparse.linalg

    k = min(k, LOCALIZED_TOP)
    found: list[tuple[float, bool]] = []  # (singular value, localised)
    for W in matrices:
        kk = min(k, min(W.shape) - 1)
        if kk < 1:
            continue
        A = np.asarray(W)
        A, scale = safely_scaled(A if A.dtype in (np.float32, np.float64) else A.astype(np.float32))
        try:
            U, sv, Vt = scipy.sparse.linalg.svds(A, k=kk, v0=np.full(min(A.shape), min(A.shape) ** -0.5,
                                                                     dtype=A.dtype))
        except (scipy.sparse.linalg.ArpackError, scipy.sparse.linalg.ArpackNoConvergence, ValueError):
            found += [(math.inf, True)] * kk
            continue
        U, Vt = U.astype(np.float64), Vt.astype(np.float64)
        share = np.minimum(participation_ratio(U, axis=0) / A.shape[0], participation_ratio(Vt, axis=1) / A.shape[1])
        found += zip((sv.astype(np.float64) * scale).tolist(), (share < LOCALIZED_SHARE).tolist())
    top = sorted(found, key=lambda f: -f[0])[:k]
    return sum(loc for _, loc in top), len(top)


def localized_spike(W: np.ndarray, k: int) -> bool:
    """Whether one of W's ``k`` largest singular triplets (at most :data:`LOCALIZED_TOP`) has a localised vector
    (:func:`spike_localization`); True where there is none to look at (k < 1, a matrix of one row)."""
    localised, looked = spike_localization([W], k)
    return looked == 0 or localised > 0
