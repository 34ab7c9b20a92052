"""Eigenvalues of known matrices on both paths, and the fast path's precision guard."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from htsr.fits.powerlaw import PowerLawFit
from htsr.metrics import compute_metrics
from htsr.spectra import esd, matrix_eigenvalues
from htsr.values import NanEqual, same_values
from conftest import matrix_with_singular_values, traced_peak


@pytest.mark.parametrize("shape", [(200, 80), (80, 200), (150, 150)])
@pytest.mark.parametrize("precision", ["fast", "accurate"])
def test_chosen_singular_values_come_back(shape, precision):
    s = np.geomspace(0.1, 10.0, min(shape))
    W = matrix_with_singular_values(s, *shape)
    ev, floor, _, method = matrix_eigenvalues(W, precision)
    expected = np.sort(s**2)
    if precision == "accurate":
        # float64 SVD of a float64 matrix: backward stable, error ~ eps64 * sigma_max
        np.testing.assert_allclose(ev, expected, rtol=1e-10, atol=1e-12 * expected[-1])
        assert method == "svd64"
    else:
        # float32 Gram + eigh: absolute error below the documented floor 4*sqrt(M)*eps32*lambda_max, computed here
        # (not the floor the function returns, which would let a floor too large pass any error)
        bound = 4.0 * np.sqrt(min(shape)) * np.finfo(np.float32).eps * expected[-1]
        assert np.max(np.abs(ev - expected)) < bound and floor == pytest.approx(bound, rel=0.02)
        assert method == "gram32"  # s_min^2 / s_max^2 = 1e-4 is above the floor: no refinement


def test_fast_path_refines_a_rank_deficient_matrix():
    # rank 40 of 100: 60 eigenvalues sit at the float32 noise level, far more than 1 % of M; the float64
    # Gram leaves them below its floor too, where it cannot tell a zero from a small singular value: the SVD
    W = matrix_with_singular_values(np.linspace(1.0, 5.0, 40), 300, 100)
    spec = esd([W], "fast")
    assert spec.method == "svd64"
    assert spec.rank == 40  # exact: float64 noise (1e-15 sigma_max) is below the tolerance N*eps64*sigma_max
    assert esd([W], "accurate").rank == 40


def test_a_float32_low_rank_product_has_the_accurate_rank_on_the_fast_path():
    """A rank-120 product stored in float32: its rounding leaves 180 singular values near 1e-7·σ_max, far
    above the SVD's tolerance 400·ε₆₄·σ_max, so numpy's and WeightWatcher's rank is 300; the float64 Gram
    put them at its floor (~1e-14·λ_max) and counted 120 (entropy 0.930 for 0.781)."""
    rng = np.random.default_rng(0)
    W = ((rng.standard_normal((300, 120)) @ rng.standard_normal((120, 400))) * 0.01).astype(np.float32)
    fast, accurate = esd([W], "fast"), esd([W], "accurate")
    assert np.linalg.matrix_rank(W.astype(np.float64)) == accurate.rank == fast.rank == 300
    np.testing.assert_array_equal(fast.evals, accurate.evals)  # exact: the same float64 SVD


@pytest.mark.parametrize("axis, zeros, rank", [(1, 80, 320), (0, 250, 350)])
def test_structurally_zero_rows_or_columns_keep_the_float64_gram(axis, zeros, rank):
    """Structured pruning: all-zero columns (or enough all-zero rows) force exact zero eigenvalues, which the
    float64 Gram's below-floor count is; its rank is the SVD's already, so no SVD follows (it made a pruned
    4096 × 4096 layer 3.5× slower on the fast path, for the same rank)."""
    W = np.random.default_rng(5).standard_normal((600, 400)).astype(np.float32)
    W[(slice(None), slice(0, zeros)) if axis == 1 else (slice(0, zeros), slice(None))] = 0.0
    fast, accurate = esd([W], "fast"), esd([W], "accurate")
    assert fast.method == "gram64" and fast.rank == accurate.rank == rank == np.linalg.matrix_rank(W)


def test_refine_fraction_zero_refines_a_single_zero():
    # one eigenvalue of 200 below the float32 floor (1.7e-4), λ = 8e-5: five times the float32 Gram's rounding of
    # it (2e-5 came out between −5.1e-6 and 3.0e-5 on five OpenBLAS kernels), so it comes out positive on any. Within
    # the default 1 % it is taken as a tiny nonzero eigenvalue; refine_fraction=0 recomputes it in float64, resolved
    W = matrix_with_singular_values(np.r_[np.linspace(1.0, 5.0, 199), math.sqrt(8e-5)], 400, 200)
    unrefined = esd([W], "fast")
    assert unrefined.method == "gram32" and unrefined.num_below_floor == 1 and unrefined.rank == 200
    refined = esd([W], "fast", refine_fraction=0.0)
    assert refined.method == "gram64" and refined.num_below_floor == 0 and refined.rank == 200
    assert refined.evals[0] == pytest.approx(8e-5, rel=1e-6)  # (float64 Gram: error ~ε₆₄·λ_max)
    # an exact zero: whatever sign the float32 Gram rounds it to (−2.9e-6 on SkylakeX, positive on Haswell), the
    # float64 Gram leaves it below its floor, which the SVD decides: rank 199
    W0 = matrix_with_singular_values(np.r_[np.linspace(1.0, 5.0, 199), 0.0], 400, 200)
    spec = esd([W0], "fast", refine_fraction=0.0)
    assert spec.method == "svd64" and spec.rank == 199 == esd([W0], "accurate").rank


def test_fast_and_accurate_agree_on_gaussian():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((1000, 300)).astype(np.float32)
    fast, acc = esd([W], "fast"), esd([W], "accurate")
    # relative error of float32 Gram eigenvalues well above the floor: ~1e-6
    np.testing.assert_allclose(fast.evals[10:], acc.evals[10:], rtol=1e-4)
    assert fast.rank == acc.rank == 300


def test_pooled_spectrum_concatenates_and_scales():
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((64, 16)) for _ in range(9)]
    spec = esd(mats, "accurate", scale=0.5)
    each = np.concatenate([np.linalg.svd(m, compute_uv=False) ** 2 for m in mats])
    np.testing.assert_allclose(spec.evals, np.sort(each) * 0.5, rtol=1e-10)  # float64 SVDs (scipy, numpy): ~1e-15
    assert spec.evals.size == 144


def test_negative_rounding_is_clipped_and_zero_matrix_has_rank_zero():
    spec = esd([np.zeros((50, 20), dtype=np.float32)], "fast")
    assert np.all(spec.evals == 0) and spec.rank == 0


@pytest.mark.parametrize("factor", [2.0**-110, 1e-30, 1e25])
def test_fast_path_survives_float32_underflow_and_overflow(factor):
    """Weights scaled far below or above float32's range for their Gram (entries ~ factor² · N): the fast
    path switches to the float64 Gram instead of reporting an all-zero or non-finite matrix, and the
    eigenvalues are factor² times the unscaled ones (float64 holds 1e-60 .. 1e50 exactly enough)."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((120, 80))
    ref = esd([W], precision="accurate").evals
    got = esd([(W * factor).astype(np.float32)], precision="fast")
    assert got.method == "gram64"
    # the float32 copy of W·factor rounds each entry (2^-24 relative): eigenvalues agree to ~1e-6
    np.testing.assert_allclose(got.evals / factor**2, ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_fast_path_float64_weights_below_float32_range():
    """float64 weights ~1e-50 round to zero in the float32 copy the fast path multiplies: it checks the
    weights themselves, not the copy, and takes the float64 Gram (not 'all-zero')."""
    W = np.random.default_rng(12).standard_normal((90, 60))
    got = esd([W * 1e-50], precision="fast")
    assert got.method == "gram64"
    # float64 Gram against the SVD: error ~ε₆₄·√M·λ_max (measured 6e-15 relative; 1e-9 is loose)
    np.testing.assert_allclose(got.evals / 1e-100, esd([W], precision="accurate").evals, rtol=1e-9, atol=1e-9)


def test_an_eigenvalue_rounded_to_zero_is_refined_however_few():
    """One eigenvalue of 128 (none other below the floor), 1e-9·λ_max (above the zero level
    λ_max·((√N + √M)·ε₃₂)² = 1.1e-11·λ_max): the float32 Gram resolves it only to ~1e-5·λ_max and rounds it to
    either side of 0, by seed and by the BLAS's kernels. Clipped to 0, it had counted as an exact zero
    (num_zero_evals 1, the MP fit's share of zeros), fewer than the 1 % that refines; a MiniLM layer gave it at
    2^20 times its scale and not at 1×. Eight seeds: on every kernel some round below 0 (this machine's: seeds
    1, 2, 4, 5, 7), and each of those must be refined; the others stay float32, the value a tiny positive one."""
    import htsr
    from htsr.spectra import _gram_eigenvalues

    clipped = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        U, V = np.linalg.qr(rng.standard_normal((256, 128)))[0], np.linalg.qr(rng.standard_normal((128, 128)))[0]
        s2 = np.geomspace(1.0, 1e-3, 128)
        s2[-1] = 1e-9
        W = ((U * np.sqrt(s2)) @ V.T).astype(np.float32)
        rounded = _gram_eigenvalues(W, np.float32, False)[0][0]
        fast, accurate = esd([W], "fast"), esd([W], "accurate")
        if rounded <= 0:
            clipped += 1
            assert fast.method == "gram64" and fast.evals[0] > 0
            # 1e-6 relative: the float64 Gram of the float32 weights against their SVD
            assert fast.evals[0] == pytest.approx(accurate.evals[0], rel=1e-6)
        else:
            assert fast.method == "gram32"
        rows = [htsr.analyze({"fc.weight": W}, precision=p, tails=False).layers[0] for p in ("fast", "accurate")]
        assert rows[0].num_zero_evals == rows[1].num_zero_evals == 0
    assert clipped > 0  # (else this test would check nothing on this machine)


def test_esd_checks_its_options_as_analyze_does_and_takes_one_matrix():
    # precision='bogus' had run the fast path, refine_fraction=5 had been used as given; a bare 2-D array had
    # been iterated by rows ("expected a 2-D matrix, got shape (60,)")
    from htsr.errors import OptionError

    W = np.random.default_rng(0).standard_normal((100, 60))
    with pytest.raises(OptionError, match="esd: precision must be 'fast' or 'accurate', got 'bogus'"):
        esd([W], precision="bogus")
    with pytest.raises(OptionError, match=r"esd: refine_fraction must be a number in \[0, 1\], got 5"):
        esd([W], refine_fraction=5)
    np.testing.assert_array_equal(esd(W).evals, esd([W]).evals)
    # NaN or Inf weights: LAPACK's "Internal Error" (LinAlgError) had escaped, with no word of the cause
    for bad in (np.nan, np.inf):
        V = W.copy()
        V[3, 4] = bad
        for precision in ("fast", "accurate"):
            with pytest.raises(ValueError, match="esd: matrix 1 holds NaN or infinite values"):
                esd([W, V], precision=precision)
    # finite entries near 1e307 (their sum overflows): not NaN or Inf, but eigenvalues beyond float64 ('holds NaN'
    # had been said of them, and LAPACK's "Internal Error" or inf eigenvalues had come of others)
    from htsr.spectra import SpectrumOverflow

    for big in (np.full((10, 10), 1e307), np.full((4, 3), 1e306) * np.arange(12).reshape(4, 3)):
        for precision in ("fast", "accurate"):
            with pytest.raises(SpectrumOverflow, match="esd: matrix 0: eigenvalues beyond float64's range"):
                esd(big, precision=precision)


def test_the_numeric_functions_check_their_arguments_in_their_own_words():
    # fuzzing: esd([]) had raised numpy's "need at least one array to concatenate", esd(scale=-1) returned negative
    # eigenvalues, bootstrap_power_law(seed=-1) numpy's seed error, bayesian_alpha_averaged(min_tail=0) an
    # IndexError, fit_mp(N=0) a ZeroDivisionError
    from htsr.errors import OptionError
    from htsr.fits.bayes import bayesian_alpha_averaged
    from htsr.fits.bootstrap import bootstrap_power_law
    from htsr.fits.powerlaw import fit_power_law
    from htsr.rmt import fit_mp

    W = np.random.default_rng(0).standard_normal((100, 60))
    with pytest.raises(ValueError, match="esd: no matrices given"):
        esd([])
    for scale in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="esd: scale must be a positive finite number"):
            esd([W], scale=scale)
    ev = esd([W]).evals
    with pytest.raises(OptionError, match="bootstrap_power_law: seed must be an integer >= 0, got -1"):
        bootstrap_power_law(ev, fit_power_law(ev), reps=10, seed=-1)
    with pytest.raises(ValueError, match="min_tail must be an integer >= 1, got 0"):
        bayesian_alpha_averaged(ev, min_tail=0)
    with pytest.raises(ValueError, match="fit_mp: the matrices' sides must be at least 1"):
        fit_mp(ev, 0, 60)


# ------------------------------------------------------------- known answers each line is held to
# (each test below fails for a one-point change of the code it names: a mutation the suite had let through)


def test_rank_is_numpys_matrix_rank_for_tall_pooled_and_factored_matrices():
    """numpy's tolerance, σ_max·max(N, M)·eps, on the larger side: a 1000 × 100 matrix with one singular value at
    5e-14 has rank 99 (on the smaller side it would count); a pooled layer takes one tolerance, its loudest
    matrix's (a quiet 1e-15 one adds no rank); a LoRA's factors, its dense product's rank."""
    from htsr.spectra import LowRank

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((1000, 100)))
    V, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    W = (U * np.r_[np.linspace(1, 0.1, 99), 5e-14]) @ V.T
    assert esd(W, precision="accurate").rank == np.linalg.matrix_rank(W) == 99
    A, B = rng.standard_normal((64, 32)), 1e-15 * rng.standard_normal((64, 32))
    assert esd([A, B], precision="accurate").rank == np.linalg.matrix_rank(np.vstack([A, B])) == 32
    U4, _ = np.linalg.qr(rng.standard_normal((4000, 4)))
    V4, _ = np.linalg.qr(rng.standard_normal((100, 4)))
    Bm = U4 * np.array([1.0, 0.5, 0.2, 5e-14])
    assert esd([LowRank(Bm, V4.T)]).rank == np.linalg.matrix_rank(Bm @ V4.T) == 3


def test_refined_eigenvalues_are_never_negative():
    """A rank-60 float32 product refined at refine_fraction 0.9: the refined round-off eigenvalues are clipped at 0
    (the ESD is of a Gram matrix: ≥ 0; 30 had come back negative)."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((300, 60)) @ rng.standard_normal((60, 120))).astype(np.float32)
    s = esd(W, precision="fast", refine_fraction=0.9)
    assert s.evals.min() >= 0.0


def test_a_factored_matrix_has_the_svd64_floor_and_tolerance_of_its_dense_product():
    """A 400 x 10 rank-3 LoRA: its floor and rank tolerance are those of the float64 SVD of B·A (√M of the
    short side, not √N: 6.3x apart here)."""
    from htsr.factored import LowRank

    rng = np.random.default_rng(1)
    B, A = rng.standard_normal((400, 3)), rng.standard_normal((3, 10))
    _, floor, tol, _ = matrix_eigenvalues(LowRank(B, A, 1.0))
    _, ref_floor, ref_tol, _ = matrix_eigenvalues(B @ A, precision="accurate")
    # both are formulas of λ_max, which the QR path and the SVD agree on to ~1e-14 relative: 1e-9 is ample
    np.testing.assert_allclose([floor, tol], [ref_floor, ref_tol], rtol=1e-9)


def test_exactly_refine_fraction_below_the_float32_floor_is_not_refined_and_counts_in_the_rank():
    """One eigenvalue of 100 (= refine_fraction·M) at 1e-6·λ_max, below the float32 floor 4·√M·ε₃₂·λ_max =
    4.8e-6·λ_max: refined only when *more* than that lie below; so few count toward the rank."""
    s = np.ones(100)
    s[0] = 1e-3
    sp = esd(matrix_with_singular_values(s, 300, 100, seed=3).astype(np.float32), precision="fast",
             refine_fraction=0.01)
    assert (sp.num_below_floor, sp.method, sp.rank) == (1, "gram32", 100)


def test_the_own_floors_of_a_pooled_spectrum_scale_with_it():
    """scale=8 (a power of two: exact) multiplies the eigenvalues, the floor and each matrix's own floor."""
    rng = np.random.default_rng(4)
    mats = [rng.standard_normal((60, 20)), 1e-3 * rng.standard_normal((60, 20))]
    a, b = esd(mats, precision="accurate"), esd(mats, precision="accurate", scale=8.0)
    assert a.own_floor is not None
    np.testing.assert_array_equal(b.evals, 8.0 * a.evals)
    np.testing.assert_array_equal(b.own_floor, 8.0 * a.own_floor)
    assert b.floor == 8.0 * a.floor


def test_a_factored_matrix_with_a_non_finite_scale_is_refused_by_its_index():
    from htsr.factored import LowRank

    B, A = np.ones((6, 2)), np.ones((2, 5))
    assert LowRank(B, A, 1.0).is_finite()
    assert not LowRank(B, A, math.nan).is_finite() and not LowRank(B, A, math.inf).is_finite()
    with pytest.raises(ValueError, match="matrix 0 holds NaN or infinite values"):
        esd([LowRank(B, A, math.nan)])


def test_same_values_needs_the_same_keys_and_sequence_types():
    assert same_values({"a": [math.nan, 1]}, {"a": [math.nan, 1]})
    assert not same_values({"a": 1}, {"a": 1, "b": 2})
    assert not same_values([1, 2], (1, 2))
    assert not same_values(np.zeros(2, np.float32), np.zeros(2, np.float64))


# ------------------------------------------------------------------ mutation round 20 (2026-12-06)


def test_same_values_known_answers_nan_arrays_lengths_and_types():
    # NaN is the same NaN, in a float and in a float array; never the same as a number
    assert same_values(math.nan, math.nan) and same_values(np.array([1.0, math.nan]), np.array([1.0, math.nan]))
    assert not same_values(math.nan, 1.0) and not same_values(1.0, math.nan)
    assert not same_values(math.nan, "nan") and not same_values([math.nan], [0.0])
    # an integer array has no NaN to equal: plain equality
    assert same_values(np.arange(3), np.arange(3)) and not same_values(np.arange(3), np.arange(3) + 1)
    # sequences of other lengths are not the same, whatever their common prefix
    assert not same_values([1, 2], [1, 2, 3]) and not same_values((1,), ())
    # mappings: the same keys both ways
    assert not same_values({"a": 1, "b": 2}, {"a": 1}) and not same_values({"a": 1}, {"a": 1, "b": 2})

    @dataclasses.dataclass(eq=False)
    class A(NanEqual):
        x: float
        n: int = 0

    @dataclasses.dataclass(eq=False)
    class B(NanEqual):
        x: float
        n: int = 0

    # dataclasses: of one type, NaN fields equal, hash by the int/str fields only
    assert A(math.nan) == A(math.nan) and hash(A(math.nan)) == hash(A(math.nan))
    assert not same_values(A(1.0), B(1.0)) and A(1.0) != B(1.0)
    assert A(math.nan, 1) != A(math.nan, 2) and A(math.nan) != A(1.0)


def test_the_float64_grams_null_eigenvalues_of_zero_rows_are_not_rank_on_any_seed():
    """250 all-zero rows of a 600 x 400 matrix: its float64 Gram AᵀA has 50 null eigenvalues that are
    not exact zeros (round-off ~±1e-13, 1 or 2 of them positive after the clip on seeds 0, 2, 3, 6, 7); the gram64
    path's rank tolerance (its floor) leaves them out: numpy's rank 350 on every seed (the suite's one seed, 5,
    happens to round all 50 to ≤ 0, so a tolerance of 0 passed it)."""
    for seed in range(8):
        W = np.random.default_rng(seed).standard_normal((600, 400)).astype(np.float32)
        W[:250] = 0.0
        s = esd(W, precision="fast")
        assert (s.method, s.rank) == ("gram64", 350) and np.linalg.matrix_rank(W) == 350, seed


def test_a_pooled_layer_of_gram64_and_svd64_matrices_counts_each_at_its_own_tolerance():
    """A square conv's kernel positions: one with 2 of its 64 singular values at 1e-5·σ_max (3 % of its
    eigenvalues below the float32 floor: refined, float64 Gram, full rank 64) and a rank-5 product stored in float32
    (its rounding's 59 singular values ~1e-7·σ_max are rank for numpy's tolerance: the SVD, rank 64). The pooled
    WeightWatcher tolerance applies only when every matrix took the SVD: applied to this mix, the first one's Gram
    floor (~1e-14 of its λ_max, 100² times the product's) cuts the rounding's eigenvalues."""
    rng = np.random.default_rng(1)
    A = (100 * matrix_with_singular_values(np.r_[np.linspace(1, 2, 62), 1e-5, 2e-5], 64, 64)).astype(np.float32)
    B = (rng.standard_normal((64, 5)) @ rng.standard_normal((5, 64)) / np.sqrt(5)).astype(np.float32)
    s = esd([A, B], precision="fast")
    assert s.method == "gram64+svd64"
    assert s.rank == np.linalg.matrix_rank(A.astype(np.float64)) + np.linalg.matrix_rank(B.astype(np.float64)) == 128


def test_a_pooled_spectrums_floor_is_its_loudest_matrixs():
    """Spectrum.floor is the 'largest numerical floor among the matrices' (the loud position's, here
    1e6 times the quiet one's), on both paths; own_floor holds each matrix's."""
    rng = np.random.default_rng(4)
    mats = [rng.standard_normal((60, 20)), 1e-3 * rng.standard_normal((60, 20))]
    for precision in ("fast", "accurate"):
        floors = [matrix_eigenvalues(W, precision)[1] for W in mats]
        s = esd(mats, precision=precision)
        assert s.floor == max(floors) > 1e5 * min(floors)
        np.testing.assert_array_equal(np.sort(s.own_floor), np.repeat(sorted(floors), 20))


def test_an_all_zero_kernel_position_has_no_eigenvalues_below_its_floor():
    """A pruned (all-zero) kernel position: floor 0, its 20 eigenvalues exact zeros, which are not
    *below* it (num_evals_below_floor counts the unresolved eigenvalues, not exact zeros), and no rank."""
    A = np.random.default_rng(3).standard_normal((60, 20)).astype(np.float32)
    s = esd([A, np.zeros_like(A)], precision="fast")
    assert (s.num_below_floor, s.rank) == (0, 20)


@pytest.mark.parametrize("precision", ["fast", "accurate"])
def test_a_wide_matrixs_rank_tolerance_is_on_its_larger_side(precision):
    """numpy's tolerance σ_max·max(N, M)·ε for a *wide* 100 x 1000 matrix (the suite checks a tall
    one): its singular value 5e-14 lies below 1000·ε·σ_max = 2.2e-13 (rank 99), above 100·ε·σ_max = 2.2e-14."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((1000, 100)))
    V, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    W = ((U * np.r_[np.linspace(1, 0.1, 99), 5e-14]) @ V.T).T
    assert W.shape == (100, 1000)
    assert esd(W, precision=precision).rank == np.linalg.matrix_rank(W) == 99


def test_the_norms_and_entropy_take_every_eigenvalue_even_below_the_pooled_floor():
    """A pooled conv layer whose quiet kernel position (1e-3 times the other's scale) lies
    wholly below the layer's floor (the loud position's): log_norm, log_alpha_norm ("all eigenvalues") and entropy
    still take its eigenvalues: their formulas over the spectrum itself (rel 1e-12: the same numbers)."""
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((64, 32)).astype(np.float32),
            (1e-3 * rng.standard_normal((64, 32))).astype(np.float32)]
    s = esd(mats, "fast")
    ev = s.evals
    assert np.count_nonzero((ev > 0) & (ev < s.floor)) >= 32  # (the quiet position's)
    alpha = 1.2
    m = compute_metrics(s, PowerLawFit(alpha, 0.1, 0.05, float(ev[-10]), float(ev[-1]), 10, "ok"))
    p = ev[ev > 0] / ev.sum()
    assert m["log_norm"] == pytest.approx(math.log10(ev.sum()), rel=1e-12)
    assert m["log_alpha_norm"] == pytest.approx(math.log10(np.sum(ev**alpha)), rel=1e-12)
    assert m["entropy"] == pytest.approx(-np.sum(p * np.log(p)) / math.log(s.rank), rel=1e-12)
    assert m["stable_rank"] == pytest.approx(ev.sum() / ev[-1], rel=1e-12)


def test_the_metrics_of_an_all_zero_spectrum_are_nan_not_0():
    """Rank 0: entropy's −Σ p ln p / ln R is undefined (NaN, as the norms), not the 0 of rank one."""
    s = esd(np.zeros((50, 20), np.float32))
    m = compute_metrics(s, PowerLawFit.failed("all zero"))
    assert s.rank == 0 and m["matrix_rank"] == 0.0
    assert all(math.isnan(m[k]) for k in ("entropy", "log_norm", "log_spectral_norm", "stable_rank", "alpha_weighted"))


# ------------------------------------------------------------------ mutation round 39 (2026-12-06)


def test_a_factored_matrixs_spectrum_has_min_side_eigenvalues_its_rest_exact_zeros():
    """A 400 x 10 rank-3 LoRA: its ESD has min(out, in) = 10 eigenvalues, as its dense product's, the 7 its factors
    cannot make nonzero exact zeros (only the 3 nonzero ones had come back: a spectrum 3 long, not M)."""
    from htsr.factored import LowRank

    rng = np.random.default_rng(1)
    B, A = rng.standard_normal((400, 3)), rng.standard_normal((3, 10))
    s = esd([LowRank(B, A, 1.0)])
    ref = np.sort(np.linalg.svd(B @ A, compute_uv=False) ** 2)
    assert s.evals.size == 10 and np.all(s.evals[:7] == 0.0) and s.rank == 3
    # the nonzero three against numpy's SVD of the formed product: both float64, ~1e-14 relative; 1e-9 is ample
    np.testing.assert_allclose(s.evals[7:], ref[7:], rtol=1e-9)


def test_matrix_eigenvalues_refuses_a_one_dimensional_array_in_its_own_words():
    """A 1-D array is no matrix: 'expected a 2-D matrix' (not a tuple-unpacking error from its shape)."""
    with pytest.raises(ValueError, match=r"expected a 2-D matrix, got shape \(5,\)"):
        matrix_eigenvalues(np.ones(5))


def test_an_all_zero_matrix_needs_no_float64_gram_on_the_fast_path():
    """An all-zero matrix (a pruned kernel position) has floor 0 and its zeros are exact: none is *below* the floor,
    none underflows, so nothing is refined: method gram32, alone or pooled with a live position (it had been
    recomputed as a float64 Gram, reporting 'gram64' / 'gram32+gram64' and paying a second Gram)."""
    A = np.random.default_rng(3).standard_normal((60, 20)).astype(np.float32)
    Z = np.zeros_like(A)
    assert matrix_eigenvalues(Z)[3] == "gram32"
    s = esd([A, Z], precision="fast")
    assert s.method == "gram32" and s.rank == 20 and np.count_nonzero(s.evals == 0.0) == 20


def test_esd_refuses_an_infinite_scale():
    """scale must be finite: an infinite one had been taken, giving infinite (and NaN: 0·inf) eigenvalues."""
    from htsr.spectra import SpectrumOverflow

    W = np.random.default_rng(0).standard_normal((100, 60))
    with pytest.raises(ValueError, match="esd: scale must be a positive finite number, got inf"):
        esd([W], scale=math.inf)
    # a finite scale whose product with the eigenvalues (~1e2 here) leaves float64's range: said, not inf returned,
    # pooled or not (it had given lambda_max = inf; analyze guards its own scales, the API's callers had nothing)
    for mats in ([W], [W, 2.0 * W]):
        with pytest.raises(SpectrumOverflow, match=r"esd: eigenvalues up to \S+ times the scale 1e\+307 are beyond "
                                                   "float64's range; rescale the weights"):
            esd(mats, scale=1e307)
    assert math.isfinite(esd([W], scale=1e300).evals[-1])  # (a large scale that stays in range is taken)


def test_a_three_dimensional_array_is_a_stack_of_matrices():
    """A 3-D array (kh·kw kernel positions stacked) is the sequence of its 2-D matrices, pooled as the list of
    them (it had been taken as one matrix and refused: 'expected a 2-D matrix')."""
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((9, 64, 16))
    for precision in ("fast", "accurate"):
        a, b = esd(stack, precision=precision), esd(list(stack), precision=precision)
        assert a.evals.size == 144 and a.rank == b.rank == 144
        np.testing.assert_array_equal(a.evals, b.evals)


def test_the_error_messages_say_what_to_do():
    """Overflowing eigenvalues: 'rescale the weights (alpha does not change with the scale)'; no matrices: 'pass a
    layer's matrices (or one 2-D array)' (the advice had gone unchecked)."""
    from htsr.spectra import SpectrumOverflow

    with pytest.raises(SpectrumOverflow, match=r"; rescale the weights \(alpha does not change with the scale\)"):
        esd(np.full((10, 10), 1e307))
    with pytest.raises(ValueError, match=r"esd: no matrices given; pass a layer's matrices \(or one 2-D array\)"):
        esd([])
    # a factored layer has no dense entries to measure: it is named as such (it had said 'entries up to inf')
    from htsr.factored import LowRank

    with pytest.raises(SpectrumOverflow, match=r"range \(a LowRank product of factors\); rescale"):
        esd([LowRank(np.full((40, 2), 1e160), np.full((2, 10), 1e160), 1.0)])


def test_each_eigenvalues_own_floor_is_its_own_matrixs():
    """own_floor is aligned with the sorted eigenvalues: the quiet position's 20 (1e-6 times the loud one's scale, so
    the 20 smallest) carry the quiet floor, the loud position's 20 the loud floor (they had been left in the matrices'
    order: the quiet eigenvalues carried the loud floor, and kept() cut them all)."""
    rng = np.random.default_rng(4)
    mats = [rng.standard_normal((60, 20)), 1e-3 * rng.standard_normal((60, 20))]
    for precision in ("fast", "accurate"):
        loud, quiet = (matrix_eigenvalues(W, precision)[1] for W in mats)
        s = esd(mats, precision=precision)
        assert s.evals[19] < s.evals[20]  # (the quiet matrix's are the 20 smallest)
        np.testing.assert_array_equal(s.own_floor, np.r_[np.full(20, quiet), np.full(20, loud)])
        # cut at the layer's floor (the loud one's), each position at its own: the quiet eigenvalues lie above
        # theirs (a Gaussian 60 x 20's smallest is ~(√60 − √20)²/60 ~ 0.1 of its largest, far above 4·√20·ε)
        assert np.count_nonzero(s.kept(s.floor, 0.0)) == 40


def test_the_pooled_svd_rank_does_not_change_with_the_scale():
    """The pooled SVD tolerance is scaled with the eigenvalues: the 1000 x 100 matrix with a singular value at
    5e-14·σ_max (below numpy's 1000·ε·σ_max) has rank 99 at any scale, 2^±30 (powers of two: exact) included (a
    tolerance left unscaled counted it at 2^30, where its eigenvalue rises above the unscaled (1000·ε·σ_max)²)."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((1000, 100)))
    V, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    W = (U * np.r_[np.linspace(1, 0.1, 99), 5e-14]) @ V.T
    for scale in (1.0, 2.0**30, 2.0**-30):
        assert esd(W, precision="accurate", scale=scale).rank == np.linalg.matrix_rank(W) == 99, scale


def test_kept_and_cuts_own_known_answers():
    """cuts_own: the cut is the layer's floor *above* the other cut (equal to it: no own floors to apply); kept:
    eigenvalues strictly above the cut, or strictly above low and their own matrix's floor (one at its own floor is
    unresolved, as one at the cut)."""
    from htsr.spectra import Spectrum

    s = Spectrum(evals=np.array([0.5, 1.0, 2.0, 3.0]), floor=2.0, num_below_floor=2, rank=4, method="svd64",
                 own_floor=np.array([1.0, 1.0, 2.0, 2.0]))
    assert s.cuts_own(2.0, 0.5) and not s.cuts_own(2.0, 2.0) and not s.cuts_own(1.0, 0.5)
    assert s.kept(2.0, 0.5).tolist() == [False, False, False, True]  # 1.0 and 2.0 sit at their own floors
    assert s.kept(2.0, 0.0).tolist() == [False, False, False, True]
    assert s.kept(2.0, 2.0).tolist() == [False, False, False, True]  # no own floors: above the cut


def test_an_all_zero_kernel_position_leaves_the_entropy_as_its_live_ones():
    """Entropy −Σ p ln p / ln R over the nonzero eigenvalues: pooling a live 60 x 20 position with an all-zero one
    adds 20 exact zeros and no rank, so the entropy is the live position's alone (the zeros' 0·ln 0 had made it
    NaN). Same numbers either way: rel 1e-12."""
    A = np.random.default_rng(3).standard_normal((60, 20)).astype(np.float32)
    fit = PowerLawFit.failed("not fitted")
    alone, pooled = esd([A]), esd([A, np.zeros_like(A)])
    assert pooled.rank == alone.rank == 20
    ev = alone.evals
    p = ev / ev.sum()
    expected = -np.sum(p * np.log(p)) / math.log(20)
    assert compute_metrics(pooled, fit)["entropy"] == pytest.approx(expected, rel=1e-12)
    assert compute_metrics(alone, fit)["entropy"] == pytest.approx(expected, rel=1e-12)


def test_the_float64_refinement_of_float32_weights_holds_no_float64_copy_of_them():
    """A float32 layer with eigenvalues below the float32 floor (singular values down to 1e-3 of the largest) is
    refined in float64 from blocks of its rows: its 40 000 × 100 weights (16 MB) allocate the 80 kB Gram and an
    8 MB block, not the 32 MB float64 copy of W the refinement had made (numpy's allocations are traced by
    tracemalloc). The eigenvalues are the float64 SVD's (1e-9 relative: float64 Gram rounding, ~√M·ε·λ_max/λ)."""
    rng = np.random.default_rng(2)
    U, _ = np.linalg.qr(rng.standard_normal((40_000, 100)))
    s = np.logspace(0, -3, 100)
    W = ((U * s) @ np.linalg.qr(rng.standard_normal((100, 100)))[0]).astype(np.float32)
    del U
    (evals, _, _, method), peak = traced_peak(lambda: matrix_eigenvalues(W))
    assert method == "gram64" and peak < 12e6, (method, peak)
    ref = np.sort(np.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2)
    np.testing.assert_allclose(evals, ref, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_the_float32_gram_of_float64_or_float16_weights_holds_no_float32_copy_of_them(dtype):
    """float64 (a numpy or pickle model's) and float16 weights at the fast precision: the float32 Gram is formed
    from blocks of rows converted one at a time, as the float64 refinement's is, not from a float32 copy of W
    (16 MB for these 40 000 × 100 weights: a 16.1 MB peak before; now the 40 kB Gram and a 4 MB block).
    The eigenvalues are a float32 Gram's: within its floor, 4·√M·ε₃₂·λ_max, of the float64 SVD's."""
    W = np.random.default_rng(3).standard_normal((40_000, 100)).astype(dtype)
    (evals, floor, _, method), peak = traced_peak(lambda: matrix_eigenvalues(W))
    assert method == "gram32" and peak < 8e6, (method, peak)
    ref = np.sort(np.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2)
    np.testing.assert_allclose(evals, ref, rtol=0, atol=floor)
