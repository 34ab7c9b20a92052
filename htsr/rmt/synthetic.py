"""Seeded matrices built to be in each of the 5+1 phases (THEORY §6), for tests and calibration.

Every generator returns an N × M float64 matrix (N ≥ M) whose entries have (about) unit scale; the
spiked models follow the rectangular additive model Y = G/√N + Σ θ·u vᵀ of Benaych-Georges &
Nadakuditi (2012): an outlier leaves the bulk iff θ > (M/N)^¼ (the BBP threshold), at
λ/N = (1 + θ²)(M/N + θ²)/θ² (:func:`spike_location`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian", "spiked", "pareto", "low_rank", "planted_entry", "bbp_threshold", "spike_location"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bbp_threshold(N: int, M: int) -> float:
    """Smallest spike strength θ (in units of the noise's √N scale) whose outlier leaves the bulk."""
    return (M / N) ** 0.25


def spike_location(theta: float, N: int, M: int) -> float:
    """Where a spike of strength θ above the BBP threshold sits, as an eigenvalue of WᵀW/N."""
    c = M / N
    return (1.0 + theta**2) * (c + theta**2) / theta**2


def gaussian(N: int, M: int, seed: int, sigma: float = 1.0) -> np.ndarray:
    """Pure noise: i.i.d. N(0, σ²) entries (Random-like)."""
    return sigma * _rng(seed).standard_normal((N, M))


def spiked(N: int, M: int, seed: int, k: int, theta: float) -> np.ndarray:
    """Noise plus k orthogonal rank-one spikes of strength θ: G + θ√N·Σ u_i v_iᵀ (u, v orthonormal, random)."""
    rng = _rng(seed)
    G = rng.standard_normal((N, M))
    U = np.linalg.qr(rng.standard_normal((N, k)))[0]
    V = np.linalg.qr(rng.standard_normal((M, k)))[0]
    return G + theta * np.sqrt(N) * (U @ V.T)


def pareto(N: int, M: int, seed: int, mu: float) -> np.ndarray:
    """Entries ±x with P(x > t) = t^−μ, t ≥ 1 (symmetric Pareto, tail exponent μ)."""
    rng = _rng(seed)
    x = (1.0 - rng.random((N, M))) ** (-1.0 / mu)
    return np.where(rng.random((N, M)) < 0.5, -x, x)


def low_rank(N: int, M: int, seed: int, rank: int) -> np.ndarray:
    """A product A·B of Gaussian N × r and r × M factors: rank r < M (Rank-collapse)."""
    rng = _rng(seed)
    return rng.standard_normal((N, rank)) @ rng.standard_normal((rank, M)) / np.sqrt(rank)


def planted_entry(N: int, M: int, seed: int, size: float | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Gaussian noise with one huge entry (default 4·(NM)^¼, four times the BBP scale) at a random place.

    Returns the matrix and the (row, column) of the planted entry.
    """
    rng = _rng(seed)
    W = rng.standard_normal((N, M))
    r, c = int(rng.integers(N)), int(rng.integers(M))
    W[r, c] = (4.0 * (N * M) ** 0.25) if size is None else size
    return W, (r, c)
