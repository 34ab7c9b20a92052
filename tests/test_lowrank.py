"""LoRA updates ΔW = s·B·A: the QR path's eigenvalues against a dense SVD of the formed product."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from htsr.spectra import lowrank_eigenvalues


@pytest.mark.parametrize("out_f, in_f, r", [(64, 48, 4), (512, 256, 16), (300, 700, 8), (128, 128, 1)])
def test_qr_path_equals_dense_svd_of_the_product(out_f, in_f, r):
    rng = np.random.default_rng(out_f + r)
    B, A = rng.standard_normal((out_f, r)), rng.standard_normal((r, in_f)) * 0.01
    got = lowrank_eigenvalues(B, A, scale=2.0)
    dense = scipy.linalg.svd(2.0 * B @ A, compute_uv=False)
    ref = np.sort(dense[:r] ** 2)
    # the must-show: 1e-8 relative; both paths are backward stable, measured ~1e-14
    np.testing.assert_allclose(got, ref, rtol=1e-8)
    assert np.all(dense[r:] <= 1e-12 * dense[0])  # the product really has rank r


def test_chosen_singular_values_are_recovered():
    rng = np.random.default_rng(0)
    s = np.array([5.0, 3.0, 1.0, 0.5])
    U = np.linalg.qr(rng.standard_normal((1000, 4)))[0]
    V = np.linalg.qr(rng.standard_normal((800, 4)))[0]
    B, A = U * s, V.T  # B·A = U diag(s) Vᵀ
    np.testing.assert_allclose(lowrank_eigenvalues(B, A), np.sort(s**2), rtol=1e-12)


def test_a_zero_factor_gives_zero_eigenvalues_and_bad_shapes_are_refused():
    assert np.all(lowrank_eigenvalues(np.zeros((10, 2)), np.ones((2, 8))) == 0)
    with pytest.raises(ValueError):
        lowrank_eigenvalues(np.ones((10, 2)), np.ones((3, 8)))
