"""Eigenvalues of a layer's correlation matrix X = WᵀW: the empirical spectral density (ESD).

The ESD of an N × M matrix W (M = the smaller side) is the set of its M squared singular values.

Two paths:

``"accurate"``  float64 SVD of W (LAPACK's ?gesdd, values only) — what WeightWatcher 0.7.7 does.
``"fast"``      the Gram matrix on the smaller side, formed in float32, and a symmetric
                eigenvalues-only solver (?syevr): 3–4× cheaper than the SVD.

Both as scipy calls them, with Python's lock released (:mod:`htsr.lapack`), so the layers' threads solve side
by side.

Precision guard of the fast path. A float32 Gram + eigh resolves eigenvalues only down to an absolute
error of about ε₃₂·√M·λ_max (measured: ≤ 2·10⁻⁵·λ_max for M = 4096). We call
``floor = 4·√M·ε·λ_max`` the layer's numerical floor (ε of the dtype used) and count the eigenvalues below
it. The power-law tail, the norms, the stable rank and the entropy are insensitive to them; the
matrix rank and any bulk statistic of a nearly singular layer are not. When more than
``refine_fraction`` of a matrix's eigenvalues lie below the floor, or any was rounded to zero or below (it would
count as an exact zero, which the float32 Gram cannot tell), the matrix is recomputed with the
Gram accumulated in float64 and a float64 solver, whose floor is 10⁹ times lower. Tiny negative
eigenvalues from rounding are clipped to zero.

Matrix rank. SVD path: as numpy's ``matrix_rank`` and WeightWatcher, the singular values above
σ_max·N·ε₆₄ (one tolerance for a pooled conv layer, from its largest singular value). float64 Gram path:
full rank when none of its eigenvalues lies below its floor, or when those below it are the zeros that
all-zero rows or columns force (structured pruning: exact zeros); any other matrix with some below it is
rank-deficient at a resolution the Gram cannot give (its floor, ~10⁻¹⁴·λ_max, lies far above the SVD's
tolerance (N·ε₆₄)²·λ_max: the float32 rounding of a stored low-rank product is rank there), so it is
recomputed by the float64 SVD (method ``svd64``, as the accurate path; such a matrix costs about what the
accurate path does, plus its two Grams). Unrefined float32 path: every eigenvalue counts
— the matrix either has none below the floor, or so few (≤ ``refine_fraction``·M, none rounded to ≤ 0) that
they are taken as the tiny but nonzero eigenvalues of a generic float32 matrix; a structurally rank-deficient
matrix has many and is refined. (A ``refine_fraction`` above the default 1 % may leave more unrefined: they are
round-off, no rank.) ``num_evals_below_floor`` reports how many were taken so; ``refine_fraction=0`` or
``precision="accurate"`` give the accurate path's rank always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import HtsrError, OptionError
from .factored import Factored, Kronecker, LowRank, hadamard_lowrank, lowrank_eigenvalues
from .lapack import eigvalsh, gram, svdvals
from .specs import FEW_BELOW_FLOOR, as_numpy, check_args
from .values import NanEqual

__all__ = ["Factored", "Kronecker", "LowRank", "Spectrum", "SpectrumOverflow", "as_matrices", "esd", "gram_floor", "resolved_cut", "resolved_cuts", "safely_scaled", "hadamard_lowrank",
           "lowrank_eigenvalues", "matrix_eigenvalues", "weights_finite"]

_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)
#: a float32 Gram whose largest diagonal entry is below this is underflowing (float32's smallest normal
#: number is 1.2e-38; 1e-30 keeps the 7 significant digits of its eigenvalues above it)
_TINY32 = 1e-30


@dataclass(frozen=True, eq=False)
class Spectrum(NanEqual):
    """Eigenvalues of one layer (all its matrices pooled), ascending, float64, ≥ 0."""

    evals: np.ndarray
    floor: float  # largest numerical floor among the matrices (absolute, same units as evals)
    num_below_floor: int  # eigenvalues below their matrix's floor
    rank: int  # eigenvalues above their matrix's rank tolerance
    method: str  # "svd64", "gram32", "gram64", or "gram32+gram64" when only some were refined
    # each eigenvalue's own matrix's floor, aligned with evals (None: ``floor`` for all). A pooled conv layer's kernel
    # positions differ: the loudest one's floor would cut the quiet ones' well-resolved eigenvalues
    own_floor: np.ndarray | None = None
    # each eigenvalue's own matrix's index among the pooled ones, aligned with evals (None: one matrix)
    owner: np.ndarray | None = None

    def cuts_own(self, cut: float, low: float) -> bool:
        """Whether ``cut`` is the numerical floor (the largest of a pooled layer's matrices', which differ) above
        every other cut (``low``): then each eigenvalue is cut at its own matrix's floor instead."""
        return self.own_floor is not None and cut == self.floor > low

    def kept(self, cut: float, low: float) -> np.ndarray:
        """Mask of the eigenvalues above ``cut``, or (:meth:`cuts_own`) above ``low`` and their own matrix's floor."""
        if self.cuts_own(cut, low):
            return (self.evals > low) & (self.evals > self.own_floor)
        return self.evals > cut


class SpectrumOverflow(HtsrError, ValueError):
    """:func:`esd` of weights whose eigenvalues leave float64's range (entries near 1e154 and above), or do times
    the ``scale`` given."""


def as_matrices(matrices: Any, where: str = "esd") -> list[np.ndarray | Factored]:
    """A layer's matrices as the list of them (:func:`esd`'s, :func:`~htsr.rmt.randomize`'s argument): a 2-D array
    (numpy, a torch tensor, rows of numbers) is one, a 3-D array a stack of them, a sequence its items (2-D arrays
    or :class:`Factored` ones). OptionError naming ``where``, the matrix and its shape for anything else (a 1-D
    array had been iterated as scalars)."""
    if isinstance(matrices, Factored):
        return [matrices]
    if not isinstance(matrices, (list, tuple)):
        a = _array(matrices, where)
        if a.ndim in (2, 3):
            return [a] if a.ndim == 2 else list(a)
        raise OptionError(f"{where}: matrices must be a 2-D array, a 3-D stack of them or a sequence of 2-D arrays, "
                          f"got shape {a.shape}")
    if matrices and all(not isinstance(x, Factored) and _ndim(x) <= 1 for x in matrices):
        a = _array(matrices, where)  # (one matrix written as its rows)
        if a.ndim != 2:
            raise OptionError(f"{where}: matrices must be a 2-D array or a sequence of 2-D arrays, got shape {a.shape}")
        return [a]
    out: list[np.ndarray | Factored] = []
    for i, W in enumerate(matrices):
        a = W if isinstance(W, Factored) else _array(W, where)
        if not isinstance(a, Factored) and a.ndim != 2:
            raise OptionError(f"{where}: matrix {i} has shape {a.shape}, not a 2-D matrix's")
        out.append(a)
    return out


def _ndim(x: Any) -> int:
    """np.ndim, or 2 for what numpy cannot make one array of (ragged rows: refused by :func:`_array`)."""
    try:
        return np.ndim(x)
    except (ValueError, TypeError):
        return 2


def _array(x: Any, where: str) -> np.ndarray:
    """A real array: numpy's, or a torch tensor's values (detached, on the CPU, bfloat16 as float32). OptionError
    for complex or non-numeric values, which have no ESD here."""
    try:
        a = np.asarray(as_numpy(x))
    except (ValueError, TypeError):  # (ragged rows: numpy's "inhomogeneous shape")
        raise OptionError(f"{where}: a matrix's rows are not all of one length, or not numbers") from None
    if a.dtype.kind not in "biuf" and not a.dtype.name.startswith(("bfloat16", "float8")):  # (ml_dtypes' floats)
        raise OptionError(f"{where}: a matrix of dtype {a.dtype}: a spectrum here is of real numbers")
    return a


def weights_finite(mats: Sequence[np.ndarray | Factored]) -> bool:
    """No NaN or Inf in a layer's matrices (dense arrays, or a Factored matrix's factors). A dense one's sum is
    finite unless it holds one (or its entries near 1e308 overflow it: then they are looked at one by one)."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf − inf in the sum: NaN, the answer
        return all(W.is_finite() if isinstance(W, Factored) else (
            math.isfinite(float(np.sum(W, dtype=np.float64))) or bool(np.isfinite(W).all())) for W in mats)




def matrix_eigenvalues(
    W: np.ndarray | Factored, precision: str = "fast", refine_fraction: float = FEW_BELOW_FLOOR
) -> tuple[np.ndarray, float, float, str]:
    """Eigenvalues of WᵀW for one 2-D matrix, or of a :class:`Factored` one through its factors.

    Returns (evals ascending float64 clipped at 0, floor, rank_tol, method); rank_tol −inf: every eigenvalue counts
    towards the rank (an unrefined float32 Gram's, see the module docstring). A factored matrix gets the
    eigenvalues its factors can make nonzero (a rank-r :class:`LowRank`'s r from :func:`lowrank_eigenvalues`,
    a :class:`Kronecker`'s products of its factors' singular values; float64, either precision) and exact
    zeros for the rest of min(out, in); its floor and rank tolerance are the float64 SVD's (method
    "lowrank64" or "kron64").
    """
    if isinstance(W, Factored):
        N, M = max(W.shape), min(W.shape)
        nonzero = W.nonzero_eigenvalues()[-M:]
        evals = np.concatenate([np.zeros(M - nonzero.size), nonzero])
        lmax = float(evals[-1]) if evals.size else 0.0
        return evals, 4.0 * np.sqrt(M) * _EPS64 * lmax, lmax * (N * _EPS64) ** 2, W.method
    check_args("matrix_eigenvalues", precision=precision, refine_fraction=refine_fraction)
    if W.ndim != 2:
        raise OptionError(f"matrix_eigenvalues: expected a 2-D matrix, got shape {W.shape}")
    rows, cols = W.shape
    N, M = max(rows, cols), min(rows, cols)
    if precision == "accurate":
        return _svd_eigenvalues(W, N, M)

    evals, floor, dtype = _gram_eigenvalues(W, np.float32, rows <= cols)
    below = int(np.count_nonzero(evals < floor))
    # among a few below the floor, taken as tiny nonzero eigenvalues, one the float32 Gram rounded to ≤ 0 would
    # count as an exact zero (num_zero_evals, the MP fit's share of zeros) though it cannot be told from one of
    # ~floor: refined however few (a MiniLM layer's 7.6e-10 came out 0 at 2^20 times its scale, not at 1×).
    # (Many below it, left by a larger refine_fraction, are round-off, zeros all: see analyze._round_off_left.)
    clipped = evals.size > 0 and evals[0] <= 0 and below <= FEW_BELOW_FLOOR * M
    if dtype is np.float32 and below > 0 and (below > refine_fraction * M or clipped):
        evals, floor, dtype = _gram_eigenvalues(W, np.float64, rows <= cols)
    if dtype is np.float64:
        below = int(np.count_nonzero(evals < floor))
        if below and below != _structural_zeros(W):  # rank-deficient at the Gram's resolution: the SVD decides
            return _svd_eigenvalues(W, N, M)
        return evals, floor, floor, "gram64"
    # unrefined: all eigenvalues count towards the rank (see the module docstring); none if W = 0. More below
    # the floor than the default refine_fraction leaves, left by a larger one, are round-off: no rank (they
    # count as zeros, num_zero_evals, as well)
    if below > FEW_BELOW_FLOOR * M:
        return evals, floor, floor, "gram32"
    return evals, floor, (-math.inf if floor > 0 else 0.0), "gram32"


def _structural_zeros(W: np.ndarray) -> int:
    """The zero eigenvalues all-zero rows and columns force (structured pruning): min(N, M) − min(nonzero rows,
    nonzero columns). When the float64 Gram's eigenvalues below its floor are exactly these, they are exact
    zeros, and its rank is the SVD's without the SVD."""
    nonzero = W != 0
    rows, cols = int(np.count_nonzero(nonzero.any(axis=1))), int(np.count_nonzero(nonzero.any(axis=0)))
    return min(W.shape) - min(rows, cols)


def _svd_eigenvalues(W: np.ndarray, N: int, M: int) -> tuple[np.ndarray, float, float, str]:
    """The accurate path's (evals, floor, rank_tol, "svd64"): float64 SVD, numpy's rank tolerance."""
    sv = svdvals(W, np.float64)
    sv = np.sort(sv)
    smax = sv[-1] if sv.size else 0.0
    evals = sv * sv
    lmax = float(evals[-1]) if evals.size else 0.0
    return evals, 4.0 * np.sqrt(M) * _EPS64 * lmax, float((smax * N * _EPS64) ** 2), "svd64"


def _gram_eigenvalues(W: np.ndarray, dtype: type, wide: bool) -> tuple[np.ndarray, float, type]:
    """(ascending eigenvalues of the Gram, its floor, the dtype it was computed in)."""
    with np.errstate(over="ignore", invalid="ignore"):  # float64 weights beyond float32's range: inf, caught below
        if W.dtype == dtype:
            # G.T: the same matrix, its buffer read in place as the column-major one LAPACK takes (numpy forms a
            # Gram A·Aᵀ by a symmetric rank-k update, exactly symmetric: the numbers of G's own copy, without it)
            G = (W @ W.T if wide else W.T @ W).T
        else:  # (float32 weights refined, float64 or float16 ones at float32: the Gram from blocks converted one
            # at a time, not from a copy of W in ``dtype``)
            G = gram(W.T if wide else W, dtype)
    if dtype is np.float32:
        overflow = not np.isfinite(G).all()  # weights above ~1e19
        # weights below ~1e-16: the Gram's entries are subnormal or zero, and W would look all-zero
        underflow = float(np.max(np.diagonal(G), initial=0.0)) < _TINY32 and bool(np.any(W))
        if overflow or underflow:
            return _gram_eigenvalues(W, np.float64, wide)  # the float64 Gram holds them
    return _eigenvalues_and_floor(eigvalsh(G), G.shape[0], _EPS32 if dtype is np.float32 else _EPS64, dtype)


def safely_scaled(A: np.ndarray) -> tuple[np.ndarray, float]:
    """``A``, or ``A`` divided by its largest magnitude where products of its entries would leave float32's range
    (beyond 1e15 or below 1e-15): (the matrix, the factor its singular values are multiplied back by). For the
    iterative solvers that work in the weights' own precision: weights of 1e35 overflowed ARPACK's products, and
    LAPACK printed "SLASCL parameter number 4 had an illegal value" on standard output (into --json's document)."""
    if A.size == 0:
        return A, 1.0
    amax = float(max(A.max(), -A.min()))  # (no temporary |A|)
    if not math.isfinite(amax) or amax == 0.0 or 1e-15 < amax < 1e15:
        return A, 1.0
    return (A / amax).astype(A.dtype, copy=False), amax


def gram_floor(lambda_max: float, n: int, eps: float = _EPS32) -> float:
    """The numerical floor of an n × n Gram's eigenvalues solved at precision ``eps``: 4·√n·ε·λ_max."""
    return 4.0 * math.sqrt(n) * eps * lambda_max


def resolved_cut(evals: np.ndarray, n: int) -> float:
    """Where one n × n Gram's eigenvalues ``evals`` are cut into 'zero' and 'nonzero' for a comparison (the shuffled
    ESD's JS distance, the bulk eigenvectors), the same whichever eigenvalue path computed them: the float32 Gram's
    floor (:func:`gram_floor`) where as few lie below it as the fast path leaves unrefined (``FEW_BELOW_FLOOR``: it
    keeps them as they round, the accurate path resolves them), else the float64 Gram's, the fast path having
    refined them (each path's own floor had moved MiniLM's rand_js_distance by up to 0.03 between the two; the
    float32 floor alone had cut 29 % of a Cauchy-entry layer's spectrum, which both paths resolve)."""
    if evals.size == 0:
        return 0.0
    top = float(np.max(evals))
    cut = gram_floor(top, n)
    return cut if np.count_nonzero(evals < cut) <= FEW_BELOW_FLOOR * evals.size else gram_floor(top, n, _EPS64)


def resolved_cuts(sp: Spectrum, n: int) -> np.ndarray:
    """:func:`resolved_cut` of each eigenvalue's own matrix (a pooled layer's kernel positions each by its own, as
    :func:`htsr.rmt.localization` cuts them), aligned with ``sp.evals``."""
    if sp.owner is None:
        return np.full(sp.evals.size, resolved_cut(sp.evals, n))
    cuts = np.empty(sp.evals.size)
    for m in np.unique(sp.owner):
        mine = sp.owner == m
        cuts[mine] = resolved_cut(sp.evals[mine], n)
    return cuts


def _eigenvalues_and_floor(evals: np.ndarray, n: int, eps: float, dtype: type) -> tuple[np.ndarray, float, type]:
    """An n × n Gram's eigenvalues ascending in float64, rounding below 0 clipped, with their floor 4·√n·ε·λ_max."""
    evals = np.asarray(evals, dtype=np.float64)
    evals.sort()
    np.maximum(evals, 0.0, out=evals)
    lmax = float(evals[-1]) if evals.size else 0.0
    return evals, gram_floor(lmax, n, eps), dtype


def esd(
    matrices: Sequence[np.ndarray],
    precision: str = "fast",
    refine_fraction: float = FEW_BELOW_FLOOR,
    scale: float = 1.0,
) -> Spectrum:
    """Pooled ESD of one layer's matrices (e.g. the kh·kw kernel positions of a conv), times ``scale``; a single
    2-D array is the one matrix of its layer. ``precision`` and ``refine_fraction`` as :func:`htsr.analyze`'s
    options (OptionError for a value they do not allow)."""
    check_args("esd", precision=precision, refine_fraction=refine_fraction)
    if not (isinstance(scale, (int, float, np.floating, np.integer)) and math.isfinite(scale) and scale > 0):
        raise OptionError(f"esd: scale must be a positive finite number, got {scale!r}", "scale", scale)
    matrices = as_matrices(matrices)
    if not matrices:
        raise OptionError("esd: no matrices given; pass a layer's matrices (or one 2-D array)")
    bad = next((i for i, W in enumerate(matrices) if not weights_finite([W])), None)
    if bad is not None:  # (LAPACK's answer to them is an "Internal Error", or NaN eigenvalues)
        raise OptionError(f"esd: matrix {bad} holds NaN or infinite values; a spectrum needs finite weights")
    parts, floors, tols, methods = [], [], [], set()
    for i, W in enumerate(matrices):
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                ev, floor, tol, method = matrix_eigenvalues(W, precision, refine_fraction)
        except np.linalg.LinAlgError:  # (LAPACK's "Internal Error" on a Gram that overflowed)
            ev = np.array([np.inf])
        if not np.isfinite(ev).all():
            size = (f"entries up to {float(np.max(np.abs(W))):.3g}" if isinstance(W, np.ndarray)
                    else f"a {type(W).__name__} product of factors")  # (no dense entries to measure)
            raise SpectrumOverflow(f"esd: matrix {i}: eigenvalues beyond float64's range ({size}); rescale "
                                   "the weights (alpha does not change with the scale)")
        parts.append(ev)
        floors.append(floor)
        tols.append(tol)
        methods.add(method)
    pooled = np.concatenate(parts)
    own_floor = owner = None
    with np.errstate(over="ignore"):  # (an overflow is said below)
        if len(parts) > 1:  # (each eigenvalue's matrix and floor in the pooled order: the sort's permutation)
            order = np.argsort(pooled, kind="stable")
            evals = pooled[order] * scale
            sizes = [ev.size for ev in parts]
            owner = np.repeat(np.arange(len(parts), dtype=np.int32), sizes)[order]
            if len(set(floors)) > 1:
                own_floor = np.repeat(np.asarray(floors, dtype=np.float64), sizes)[order] * scale
        else:
            evals = np.sort(pooled) * scale
    if evals.size and not math.isfinite(float(evals[-1])):
        raise SpectrumOverflow(f"esd: eigenvalues up to {float(pooled.max()):.3g} times the scale {scale:g} are beyond "
                               "float64's range; rescale the weights (alpha does not change with the scale)")
    below = sum(int(np.count_nonzero(ev < f)) for ev, f in zip(parts, floors))
    if methods == {"svd64"}:
        # one pooled tolerance (the largest), as WeightWatcher counts the rank of a pooled conv layer
        rank = int(np.count_nonzero(evals > max(tols) * scale))
    else:
        rank = sum(int(np.count_nonzero(ev > tol)) for ev, tol in zip(parts, tols))
    return Spectrum(
        evals=evals,
        floor=max(floors) * scale,
        num_below_floor=below,
        rank=rank,
        method="+".join(sorted(methods)),
        own_floor=own_floor,
        owner=owner,
    )
