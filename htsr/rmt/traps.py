"""Randomisation: the ESD of the element-shuffled matrix, correlation traps and where they live.

Shuffling the entries of W (one seeded permutation of all the layer's entries: a conv's kernel positions
together, as the weight tensor) keeps the entry distribution and
destroys every correlation, so the shuffled ESD should be a Marchenko–Pastur bulk: the law of i.i.d.
entries of the matrix's own entry variance (nothing is fitted). Eigenvalues of the *shuffled* matrix above
its MP edge plus the Tracy–Widom margin are **correlation traps**: structure that survives shuffling — a
few anomalously large weights, or a rank-one mean.

Where a trap lives: a trap whose singular vectors lie along the all-ones vectors (the product of their cosines
with them ≥ 0.25, ``_MEAN_ALIGNMENT``) is the entries' mean, a rank-one term shuffling keeps: located as
(-1, -1, -1), ``mean`` in the ``trap_weights`` column. For any other trap's singular triplet (s, u, v) of the shuffled matrix, the entry
(i, j) with the largest |u_i·v_j| carries most of it; its value is looked up in the original matrix to
give the (row, column) there (the first occurrence if the value is repeated, as in quantised weights). At most :data:`MAX_LOCATED` traps per layer are located (the largest).

Distance between the two ESDs (``rand_js_distance``): both spectra as densities on one shared histogram —
a bin for the zero eigenvalues (at or below the numerical floor) and B equal bins in log10 λ over the
union of the non-zero ranges, B = the Rice rule 2·n^⅓ clipped to [10, 100] — and the Jensen–Shannon
distance √JSD with base-2 logarithms: 0 for identical densities, 1 for disjoint ones. (WeightWatcher's
``rand_distance`` instead treats the two sorted eigenvalue vectors as probability vectors.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ..errors import OptionError
from ..spectra import Spectrum, as_matrices, esd, safely_scaled
from ..specs import check_args
from .mp import MPFit, fit_mp
from ..values import NanEqual

__all__ = ["Randomized", "randomize", "esd_bins", "js_distance", "MAX_LOCATED"]

#: traps located per layer (the largest first)
MAX_LOCATED = 10
#: a trap whose singular vectors have cosines with the all-ones vectors whose product is at least this is the
#: entries' mean (located as (-1, -1, -1), 'mean'): a single heavy entry's vectors are one-hot, cosines ~1/√N, a
#: product ~1/√(NM); a mean just past its BBP transition has vectors only partly aligned (a product of 0.46 to 0.74
#: for a mean of 0.004 to 0.006 beside noise of 0.05 at 400 x 200), and 0.8 pinned those on ordinary weights
_MEAN_ALIGNMENT = 0.25


@dataclass(frozen=True, eq=False)
class Randomized(NanEqual):
    spectrum: Spectrum  # ESD of the shuffled matrices (pooled, scaled like the layer's)
    mp: MPFit  # its MP fit; mp.num_spikes = number of traps
    locations: tuple[tuple[int, int, int], ...]  # (matrix index, row, column) per located trap; (-1, -1, -1): the mean

    @property
    def num_traps(self) -> int:
        return self.mp.num_spikes


def esd_bins(n: int) -> int:
    """Histogram bins for an ESD of ``n`` eigenvalues (2·n^⅓, Rice's rule, within 10–100): :func:`js_distance`'s,
    and the figures' (``htsr.figures``), so a panel shows the histograms the distance compares."""
    return int(np.clip(round(2.0 * n ** (1.0 / 3.0)), 10, 100))


def js_distance(a: np.ndarray, b: np.ndarray, floor_a: Any = 0.0, floor_b: Any = 0.0) -> float:
    """Jensen–Shannon distance (base 2) between two ESDs as densities on a shared log-binned histogram, with a bin
    for each one's zeros: its eigenvalues at or below its floor (a number, or one per eigenvalue). NaN when either
    has no eigenvalue (no density to compare: 0 had read as identical ones)."""
    if a.size == 0 or b.size == 0:
        return float("nan")
    za, zb = a[a > floor_a], b[b > floor_b]
    bins = esd_bins(max(a.size, b.size))
    if za.size or zb.size:
        both = np.log10(np.concatenate([za, zb]))
        lo, hi = float(both.min()), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        ha = np.histogram(np.log10(za), edges)[0] if za.size else np.zeros(bins)
        hb = np.histogram(np.log10(zb), edges)[0] if zb.size else np.zeros(bins)
    else:
        ha = hb = np.zeros(bins)
    p = np.concatenate([[a.size - za.size], ha]).astype(np.float64)
    q = np.concatenate([[b.size - zb.size], hb]).astype(np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda x: float(np.sum(np.where(x > 0, x * np.log2(x / m), 0.0)))  # noqa: E731
        jsd = 0.5 * kl(p) + 0.5 * kl(q)
    return float(np.sqrt(max(jsd, 0.0)))


#: rows (and columns) where a trap's singular vectors are largest, among which its entry is sought
_CANDIDATES = 64


def _top_triplets(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k largest singular triplets (s, U, Vᵀ) of S, largest first."""
    if k >= min(S.shape) - 1 or min(S.shape) <= 256:
        U, s, Vt = scipy.linalg.svd(S, full_matrices=False, check_finite=False)
        return s[:k], U[:, :k], Vt[:k]
    A, scale = safely_scaled(S)
    U, s, Vt = scipy.sparse.linalg.svds(A, k=k, random_state=0)
    order = np.argsort(s)[::-1]
    return s[order] * scale, U[:, order], Vt[order]


def _variance(x: np.ndarray, chunk: int = 1 << 20) -> float:
    """The variance of ``x`` in float64, a chunk at a time (no float64 copy of a large layer)."""
    n = x.size
    mean = sum(float(np.sum(x[k:k + chunk], dtype=np.float64)) for k in range(0, n, chunk)) / n
    return sum(float(np.sum(np.square(x[k:k + chunk].astype(np.float64) - mean))) for k in range(0, n, chunk)) / n


def randomize(matrices: Sequence[np.ndarray], N: int, M: int, seed: int = 0, scale: float = 1.0,
              precision: str = "fast", refine_fraction: float = 0.01, tw_margin: float = 4.0) -> Randomized:
    """Shuffle the layer's entries (seeded, all its matrices together), compare the shuffled ESD with the MP
    law of the entries' variance and locate its traps. ``matrices``: a 2-D array or a layer's 2-D arrays; ``N``
    and ``M``: their larger and smaller side (OptionError otherwise: other sides give another law, and false traps)."""
    check_args("randomize", seed=seed, precision=precision, refine_fraction=refine_fraction, tw_margin=tw_margin)
    matrices = as_matrices(matrices, "randomize")
    sides = {(max(np.shape(W)), min(np.shape(W))) for W in matrices}
    if sides != {(N, M)}:
        raise OptionError(f"randomize: N={N!r} and M={M!r} must be the matrices' larger and smaller sides, "
                          f"{' and '.join(f'{a} and {b}' for a, b in sorted(sides))}", "N")
    rng = np.random.default_rng(seed)
    # one shuffle over all the layer's entries (a conv's kernel positions together, as the whole weight
    # tensor), so that every shuffled entry is a draw from the same distribution; shuffling the values in
    # place is twice as fast as drawing a permutation and gathering through it
    flat = [np.asarray(W).reshape(-1) for W in matrices]
    entries = flat[0] if len(flat) == 1 else np.concatenate(flat)
    sigma2 = _variance(entries)  # (in the entries' own order: a sum in the shuffled order varied with the seed in
    # its last digit, and the rand_mp_* columns with it)
    pooled = rng.permuted(entries)
    del entries
    shuffled = [part.reshape(W.shape) for part, W in
                zip(np.split(pooled, np.cumsum([f.size for f in flat])[:-1]), matrices)]
    spectrum = esd(shuffled, precision, refine_fraction, scale)
    # the shuffled entries are i.i.d. by construction: the baseline is the MP law of their own variance, not a
    # fit (a fit to a heavy-tailed entry distribution's spectrum, which is no MP bulk, put its edge anywhere)
    mp = fit_mp(spectrum.evals, N, M, scale, tw_margin, sigma2=sigma2)
    locations: list[tuple[float, int, int, int]] = []
    named: set[tuple[int, int]] = set()  # (matrix, flat index) of the weights located already
    if mp.num_spikes:
        cut = np.sqrt(mp.threshold / scale)  # singular value of a trap
        for S in shuffled:
            s, U, Vt = _top_triplets(S, min(mp.num_spikes, MAX_LOCATED, min(S.shape)))
            taken: set[tuple[int, int]] = set()
            for j in np.flatnonzero(s > cut):
                u, v = U[:, j], Vt[j]
                if abs(float(np.sum(u))) * abs(float(np.sum(v))) >= _MEAN_ALIGNMENT * np.sqrt(u.size * v.size):
                    # singular vectors along the all-ones vectors: the entries' common mean, rank one, which
                    # shuffling keeps; no weight carries it (the 'largest' entry would be any one)
                    locations.append((float(s[j]), -1, -1, -1))
                    continue
                # the entry carrying the trap: the largest term u_i·S_ic·v_c of s = uᵀSv (argmax |u| and argmax
                # |v| apart can meet at a small entry), one not located already for a larger trap; sought among
                # the rows and columns where u and v are largest (the vectors of a trap lie on its entry's row
                # and column), not over a float64 copy of the whole matrix per trap
                u, v = np.abs(u), np.abs(v)
                rows = np.argsort(u)[::-1][:_CANDIDATES]
                cols = np.argsort(v)[::-1][:_CANDIDATES]
                share = u[rows][:, None] * np.abs(S[np.ix_(rows, cols)]).astype(np.float64) * v[cols][None, :]
                for r0, c0 in taken:
                    share[np.ix_(rows == r0, cols == c0)] = -1.0
                a, b = np.unravel_index(int(np.argmax(share)), share.shape)
                i, c = int(rows[a]), int(cols[b])
                taken.add((i, c))
                # the weight is found back by its value, in whichever matrix (kernel position) holds it (the
                # first occurrence not located already, if it is repeated: equal values are common in bf16)
                hits = [(m, int(h)) for m, f in enumerate(flat) for h in np.flatnonzero(f == S[i, c])]
                m0, k = next((h for h in hits if h not in named), hits[0])
                named.add((m0, k))
                r0, c0 = np.unravel_index(k, matrices[m0].shape)
                locations.append((float(s[j]), m0, int(r0), int(c0)))
    locations.sort(key=lambda t: -t[0])
    return Randomized(spectrum, mp, tuple((m, r, c) for _, m, r, c in locations[:MAX_LOCATED]))
