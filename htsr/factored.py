"""Matrices known by their factors: an adapter's update ΔW that a reader yields without forming it (LoRA's
scale·B·A, LoHa's Hadamard product, LoKr's Kronecker product), with the nonzero eigenvalues of ΔWᵀΔW from the
factors alone. Readers (:mod:`htsr.io`) build them; :mod:`htsr.spectra` takes their eigenvalues."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .lapack import svdvals

__all__ = ["Factored", "Kronecker", "LowRank", "hadamard_lowrank", "lowrank_eigenvalues"]


class Factored:
    """A matrix known by its factors (an adapter's update ΔW), whose nonzero eigenvalues of ΔWᵀΔW come from
    them without forming it: :class:`LowRank` (LoRA's B·A, LoHa's Hadamard product) and :class:`Kronecker`
    (LoKr's). What needs the entries (windows, shuffles, eigenvectors) is not computed for one."""

    method = ""  # the eig_method of its spectrum

    @property
    def shape(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def rank(self) -> int:
        """An upper bound of the rank, from the factors' shapes."""
        raise NotImplementedError

    def is_finite(self) -> bool:
        raise NotImplementedError

    def nonzero_eigenvalues(self) -> np.ndarray:
        """At most min(out, in) eigenvalues of ΔWᵀΔW, float64, ascending: those the factors can make nonzero."""
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        """ΔW as a float32 out × in array (for a merge; the spectrum never needs it)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LowRank(Factored):
    """The matrix scale·B·A kept as its factors (a LoRA update ΔW): B is out × r, A is r × in."""

    B: np.ndarray
    A: np.ndarray
    scale: float = 1.0
    method = "lowrank64"

    def __post_init__(self) -> None:
        if self.B.ndim != 2 or self.A.ndim != 2 or self.B.shape[1] != self.A.shape[0]:
            raise ValueError(f"expected B (out x r) and A (r x in), got {self.B.shape} and {self.A.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.B.shape[0], self.A.shape[1]

    @property
    def rank(self) -> int:
        """The factors' inner dimension r (an upper bound of the rank)."""
        return self.A.shape[0]

    def is_finite(self) -> bool:
        return bool(math.isfinite(self.scale) and np.isfinite(self.B).all() and np.isfinite(self.A).all())

    def nonzero_eigenvalues(self) -> np.ndarray:
        return lowrank_eigenvalues(self.B, self.A, self.scale)

    def dense(self) -> np.ndarray:
        return (np.float32(self.scale) * (np.asarray(self.B, np.float32) @ np.asarray(self.A, np.float32)))

    @property
    def T(self) -> LowRank:
        """The transpose, scale·Aᵀ·Bᵀ, as its factors."""
        return LowRank(np.ascontiguousarray(self.A.T), np.ascontiguousarray(self.B.T), self.scale)


def hadamard_lowrank(B1: np.ndarray, A1: np.ndarray, B2: np.ndarray, A2: np.ndarray, scale: float = 1.0) -> LowRank:
    """scale·(B1·A1) ∘ (B2·A2), the Hadamard product of two low-rank matrices (LoHa's update), as one
    :class:`LowRank` of rank r1·r2: (B1·A1) ∘ (B2·A2) = (B1 ⊙ B2)·(A1 ⊙ A2) with ⊙ the row-wise Khatri–Rao
    product of the B's (out × r1·r2: every product of a column of B1 and one of B2) and the column-wise one
    of the A's (r1·r2 × in), as (B1·A1)[i, j]·(B2·A2)[i, j] = Σ_ab B1[i, a]·B2[i, b]·A1[a, j]·A2[b, j]."""
    B1, A1, B2, A2 = (np.asarray(x, dtype=np.float64) for x in (B1, A1, B2, A2))
    if not (B1.ndim == A1.ndim == B2.ndim == A2.ndim == 2 and B1.shape[1] == A1.shape[0]
            and B2.shape[1] == A2.shape[0] and B1.shape[0] == B2.shape[0] and A1.shape[1] == A2.shape[1]):
        raise ValueError(f"expected two pairs B (out x r) and A (r x in), got {B1.shape} {A1.shape} and "
                         f"{B2.shape} {A2.shape}")
    (out, r1), (r2, inp) = B1.shape, A2.shape
    if r1 * r2 >= min(out, inp):  # no lower rank than the matrix's own: formed, and its factors W and I
        D = (B1 @ A1) * (B2 @ A2)  # (the QR path on r1·r2 columns would cost more than the matrix's SVD)
        return LowRank(D, np.eye(inp), scale) if out >= inp else LowRank(np.eye(out), D, scale)
    B = (B1[:, :, None] * B2[:, None, :]).reshape(out, r1 * r2)
    A = (A1[:, None, :] * A2[None, :, :]).reshape(r1 * r2, inp)
    return LowRank(B, A, scale)


@dataclass(frozen=True)
class Kronecker(Factored):
    """The matrix scale·(W1 ⊗ W2) kept as its two factors (a LoKr update ΔW): W1 is a × c, W2 is b × d, and
    ΔW is (a·b) × (c·d). Its singular values are the products of W1's and W2's, so its ESD comes from two
    small SVDs: O(a·c·min(a, c) + b·d·min(b, d)) work instead of the (a·b) × (c·d) matrix's."""

    W1: np.ndarray
    W2: np.ndarray
    scale: float = 1.0
    bound: int = 0  # an upper bound of the rank the factors' own factors give (0: their shapes')
    method = "kron64"

    def __post_init__(self) -> None:
        if self.W1.ndim != 2 or self.W2.ndim != 2:
            raise ValueError(f"expected two 2-D factors, got {self.W1.shape} and {self.W2.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.W1.shape[0] * self.W2.shape[0], self.W1.shape[1] * self.W2.shape[1]

    @property
    def rank(self) -> int:
        return self.bound or min(self.W1.shape) * min(self.W2.shape)

    def is_finite(self) -> bool:
        return bool(math.isfinite(self.scale) and np.isfinite(self.W1).all() and np.isfinite(self.W2).all())

    def nonzero_eigenvalues(self) -> np.ndarray:
        s1, s2 = (svdvals(W, np.float64) for W in (self.W1, self.W2))
        with np.errstate(over="ignore"):  # beyond 1e154: inf, which the caller reports
            sv = np.abs(self.scale) * np.outer(s1, s2).reshape(-1)
            return np.sort(sv * sv)

    def dense(self) -> np.ndarray:
        return np.float32(self.scale) * np.kron(np.asarray(self.W1, np.float32), np.asarray(self.W2, np.float32))


def lowrank_eigenvalues(B: np.ndarray, A: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Nonzero eigenvalues of XᵀX for the low-rank update ΔW = scale·B·A (a LoRA adapter), ascending.

    B is out × r, A is r × in. With B = Q_B·R_B and Aᵀ = Q_A·R_A (thin QR), ΔW = scale·Q_B·(R_B·R_Aᵀ)·Q_Aᵀ
    and Q_B, Q_A have orthonormal columns, so the singular values of ΔW are those of the r × r matrix
    scale·R_B·R_Aᵀ: O((out + in)·r²) work, and the out × in product is never formed. Returns the r
    squared singular values (float64); the other min(out, in) − r eigenvalues of ΔW are exactly zero.
    """
    B = np.asarray(B, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if B.ndim != 2 or A.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(f"expected B (out x r) and A (r x in), got {B.shape} and {A.shape}")
    R_B = np.linalg.qr(B, mode="r")
    R_A = np.linalg.qr(A.T, mode="r")
    sv = svdvals(scale * (R_B @ R_A.T))
    with np.errstate(over="ignore"):  # singular values beyond 1e154: inf, which the caller reports
        return np.sort(sv * sv)
