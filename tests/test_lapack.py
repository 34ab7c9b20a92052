"""htsr.lapack: scipy's LAPACK routines called with Python's lock released, giving scipy's numbers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import scipy.linalg

from conftest import traced_peak
from htsr import lapack

SHAPES = [(0, 0), (1, 1), (1, 7), (7, 1), (2, 3), (50, 50), (64, 200), (300, 41), (257, 129)]


def _scipy_eigh(G, **kw):
    """scipy.linalg.eigh, and of a 0 x 0 matrix its answer from scipy 1.14 on (before, ?syevr's il=1 check
    raised: scipy >= 1.10 is allowed)."""
    if G.size == 0:
        w = np.empty(0, G.dtype)
        return w if kw.get("eigvals_only") else (w, np.empty((0, 0), G.dtype))
    return scipy.linalg.eigh(G, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_eigenvalues_and_singular_values_are_scipys_bit_for_bit(shape, dtype):
    # same routine (?syevr, ?gesdd), same arguments and workspace as scipy's calls: no tolerance
    W = np.random.default_rng(sum(shape)).standard_t(3, shape).astype(dtype)
    G = W.T @ W
    assert lapack._routine("ssyevr" if dtype is np.float32 else "dsyevr") is not None  # not the fallback
    ours, theirs = lapack.eigvalsh(G.copy()), _scipy_eigh(G, eigvals_only=True, check_finite=False)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    ours, theirs = lapack.svdvals(W), scipy.linalg.svd(W, compute_uv=False, check_finite=False)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 5, 120])
def test_eigenvectors_are_scipys_bit_for_bit(n, dtype):
    # (the localisation metrics' eigenvectors: ?syevr with vectors, as scipy.linalg.eigh(G) calls it)
    W = np.random.default_rng(n).standard_t(3, (n + 30, n)).astype(dtype)
    G = W.T @ W
    (w, V), (w0, V0) = lapack.eigh(G.copy()), _scipy_eigh(G, check_finite=False)
    assert w.dtype == w0.dtype and V.dtype == V0.dtype and np.array_equal(w, w0) and np.array_equal(V, V0)


def test_singular_values_in_another_dtype_are_those_of_the_converted_matrix():
    # (the accurate path's float64 SVD of float32 weights: one copy, converted and column-major at once)
    W = np.random.default_rng(8).standard_normal((70, 40)).astype(np.float32)
    ours = lapack.svdvals(W, np.float64)
    assert ours.dtype == np.float64
    assert np.array_equal(ours, scipy.linalg.svd(W.astype(np.float64), compute_uv=False))


def test_a_strided_matrix_is_read_as_its_values():
    W = np.random.default_rng(1).standard_normal((90, 140))
    view = W[::2, ::-3]  # neither C- nor F-contiguous
    assert np.array_equal(lapack.svdvals(view), scipy.linalg.svd(view, compute_uv=False))
    G = (W @ W.T)[::2, ::2]
    assert np.array_equal(lapack.eigvalsh(G), scipy.linalg.eigh(np.ascontiguousarray(G), eigvals_only=True))


def test_only_the_lower_triangle_is_read_as_by_scipy():
    # (the matrix LAPACK sees is the column-major copy of the C-ordered one: its lower triangle is G's own)
    G = np.random.default_rng(7).standard_normal((50, 50))
    expected = scipy.linalg.eigh(G, eigvals_only=True)
    assert np.array_equal(lapack.eigvalsh(G.copy()), expected)
    assert not np.allclose(expected, scipy.linalg.eigh(G.T, eigvals_only=True))  # (the upper one differs)


def test_known_spectrum():
    # Q·diag(d)·Qᵀ: eigenvalues d; float64 rounding, ~1e-15 relative
    rng = np.random.default_rng(2)
    d = np.linspace(0.5, 40.0, 120)
    Q = np.linalg.qr(rng.standard_normal((120, 120)))[0]
    np.testing.assert_allclose(lapack.eigvalsh((Q * d) @ Q.T), d, rtol=1e-12)
    P = np.linalg.qr(rng.standard_normal((80, 80)))[0]
    s = lapack.svdvals((Q[:, :60] * d[:60]) @ P[:60])  # 120 × 80 of rank 60
    np.testing.assert_allclose(s[:60], d[:60][::-1], rtol=1e-12)
    assert np.all(s[60:] < 1e-13 * s[0])


def test_lapack_runs_without_pythons_lock():
    """While one thread is in the eigensolver, another runs Python: scipy.linalg.eigh held the lock for the whole
    call (the main thread's loop below made 107 to 244 turns, while the copies around it ran; with the lock
    released, 3200 to 4000)."""
    G = np.random.default_rng(3).standard_normal((1600, 1600))
    G = G @ G.T
    done = threading.Event()

    def solve():
        lapack.eigvalsh(G.copy())
        done.set()

    worker = threading.Thread(target=solve)
    turns = 0
    worker.start()
    while not done.is_set():
        turns += 1
        time.sleep(0)  # lets the worker have the lock back whenever it asks
    worker.join()
    assert turns > 1000  # the call takes ~0.2 s; a turn, ~50 µs


def test_an_unexpected_signature_falls_back_to_scipy(monkeypatch):
    """Another scipy whose routine takes other arguments (64-bit integers): its pointer is not called blind."""
    lapack._routine.cache_clear()
    monkeypatch.setitem(lapack._SIGNATURES, "syevr", "c c c i x i x x i i x i x x i i x i i i")
    try:
        assert lapack._routine("dsyevr") is None
        G = np.random.default_rng(4).standard_normal((30, 30))
        G = G + G.T
        assert np.array_equal(lapack.eigvalsh(G.copy()), scipy.linalg.eigh(G, eigvals_only=True))
    finally:
        monkeypatch.undo()
        lapack._routine.cache_clear()
    assert lapack._routine("dsyevr") is not None


def test_a_column_major_matrix_is_solved_in_place():
    # (the Gram's eigenvalues are taken from G.T, a column-major view: no copy of a 4096² Gram per layer)
    G = np.random.default_rng(5).standard_normal((40, 40))
    G = np.asfortranarray(G + G.T)
    before = G.copy()
    ev = lapack.eigvalsh(G)
    assert not np.array_equal(G, before)  # LAPACK's reduction overwrote it: it had no copy
    assert np.array_equal(ev, scipy.linalg.eigh(before, eigvals_only=True))


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (90, 60), (1000, 30)])
def test_the_fast_paths_eigenvalues_are_scipys_on_the_gram(shape):
    """The fast path solves its Gram in place through G.T, which is G only if the Gram is exactly symmetric: numpy
    forms A·Aᵀ by a symmetric rank-k update. Bit for bit scipy's eigenvalues of the same Gram."""
    from htsr.spectra import matrix_eigenvalues

    W = np.random.default_rng(6).standard_t(4, shape).astype(np.float32)
    G = W.T @ W if shape[0] >= shape[1] else W @ W.T
    expected = np.maximum(np.sort(scipy.linalg.eigh(G, eigvals_only=True).astype(np.float64)), 0.0)
    evals, _, _, method = matrix_eigenvalues(W)
    assert method == "gram32" and np.array_equal(evals, expected)


# ------------------------------------------------------------------ mutation round 20 (2026-12-06)
def test_a_float32_workspace_query_is_rounded_up_as_scipys():
    """A float32 LAPACK workspace query holds integers exactly only up to 2²⁴: 2²⁴ may stand for 2²⁴ + 1,
    so it is rounded up to the next float32 (2²⁴ + 2), as scipy's _compute_lwork; a float64 one is taken as is."""
    import ctypes

    assert lapack._query(np.array([2.0**24], np.float32), ctypes.c_int(0)) == 2**24 + 2
    assert lapack._query(np.array([1000.0], np.float32), ctypes.c_int(0)) == 1000  # (next float32 after 1000: 1000.00006)
    assert lapack._query(np.array([2.0**24], np.float64), ctypes.c_int(0)) == 2**24


# ------------------------------------------------------------------ mutation round 39 (2026-12-06)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_dtypes_solve_through_the_pointers_not_scipys_wrappers(dtype, monkeypatch):
    """eigvalsh, eigh and svdvals of a float32 or float64 matrix call LAPACK's pointers (the lock released), never
    scipy's wrappers, which hold it: with those made to fail, the answers are still scipy's own (a ?gesdd pointer
    refused, or no routine named for float32, had fallen back to scipy.linalg.svd without a word)."""
    W = np.random.default_rng(9).standard_normal((40, 25)).astype(dtype)
    G = W.T @ W
    expected = (scipy.linalg.eigh(G, eigvals_only=True), scipy.linalg.eigh(G), scipy.linalg.svd(W, compute_uv=False))

    def refused(*args, **kwargs):
        raise AssertionError("scipy's wrapper called")

    monkeypatch.setattr(scipy.linalg, "eigh", refused)
    monkeypatch.setattr(scipy.linalg, "svd", refused)
    w, V = lapack.eigh(G.copy())
    assert np.array_equal(lapack.eigvalsh(G.copy()), expected[0])
    assert np.array_equal(w, expected[1][0]) and np.array_equal(V, expected[1][1])
    assert np.array_equal(lapack.svdvals(W), expected[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lapacks_failures_are_raised_not_returned(dtype):
    """A matrix of NaN: ?syevr reports info 1 and ?gesdd an illegal value (info −4); each is raised as LinAlgError
    (as scipy.linalg.eigh's 'Internal Error'), not returned as eigenvalues or singular values. A workspace query's
    own failure likewise."""
    import ctypes

    with pytest.raises(np.linalg.LinAlgError, match=r"\?syevr: internal error \(info 1\)"):
        lapack.eigvalsh(np.full((4, 4), np.nan, dtype))
    with pytest.raises(np.linalg.LinAlgError, match=r"\?gesdd info -4"):
        lapack.svdvals(np.full((4, 3), np.nan, dtype))
    with pytest.raises(np.linalg.LinAlgError, match=r"LAPACK workspace query failed \(info -6\)"):
        lapack._query(np.array([100.0], dtype), ctypes.c_int(-6))


# ------------------------------------------------------------------ the Gram by ?syrk
@pytest.mark.parametrize("shape", [(300, 40), (40, 300), (1, 5), (5, 1), (0, 4), (4, 0), (3000, 70)])
@pytest.mark.parametrize("block", [1 << 20, 1])  # one block, and blocks of 256 rows (the least taken)
def test_gram_is_the_lower_triangle_of_the_converted_product(shape, block):
    """gram(X, float64) of float32 X: XᵀX of X converted to float64, lower triangle, column-major (eigvalsh reads it
    in place), upper triangle zero. Blocks add the same products in another order: float64 rounding, 1e-13 relative
    to the largest entry, the bound (entries of 3000 products of O(1) numbers: ~√3000·ε ~ 1e-14)."""
    X = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    G = lapack.gram(X, np.float64, block=block)
    A = X.astype(np.float64)
    ref = np.tril(A.T @ A)
    assert G.dtype == np.float64 and G.shape == (shape[1], shape[1]) and G.flags.f_contiguous
    assert np.all(np.triu(G, 1) == 0)
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-13 * max(1.0, float(np.abs(ref).max(initial=0))))


def test_gram_of_a_strided_view_and_in_float32():
    """A transposed or strided view is read as its values; float32 gives ssyrk's Gram (float32 rounding: 1e-5 of
    the largest entry, ~√m·ε₃₂ for m = 500 rows)."""
    X = np.random.default_rng(7).standard_normal((80, 500)).astype(np.float32)
    for view in (X.T, X.T[::2], X[:, ::3].T):
        A = view.astype(np.float64)
        ref = np.tril(A.T @ A)
        np.testing.assert_allclose(lapack.gram(view, np.float64), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
        G32 = lapack.gram(view, np.float32)
        assert G32.dtype == np.float32
        np.testing.assert_allclose(G32, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_gram_without_the_pointer_is_numpys_lower_triangle(monkeypatch):
    """Without a ?syrk pointer (another scipy): numpy's product of a converted copy, the same lower triangle."""
    X = np.random.default_rng(8).standard_normal((200, 30)).astype(np.float32)
    want = lapack.gram(X, np.float64)
    monkeypatch.setattr(lapack, "_routine", lambda name: None)
    got = lapack.gram(X, np.float64)
    assert got.flags.f_contiguous and np.all(np.triu(got, 1) == 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())  # (another summation order)


def test_gram_holds_no_converted_copy_of_its_matrix():
    """The float64 Gram of a 40 000 × 100 float32 matrix (16 MB) allocates its 80 kB Gram and one block of
    rows at a time (8 MB), not the 32 MB float64 copy that numpy's product needs (numpy's allocations are
    traced by tracemalloc)."""
    X = np.random.default_rng(9).standard_normal((40_000, 100), dtype=np.float32)
    _, peak = traced_peak(lambda: lapack.gram(X, np.float64))
    assert peak < 12e6, peak  # one 8 MB block and the Gram; a whole copy is 32 MB
