"""Eigenvalues, eigenvectors and singular values from LAPACK, and Gram matrices from BLAS, with Python's lock
released.

``scipy.linalg.eigh`` and ``scipy.linalg.svd`` hold the lock while LAPACK runs (their wrappers are not declared
thread-safe), so two of the analysis's threads (:func:`htsr.analyze.in_threads`) solved one after the other: on
2 cores, two threads gave ×1.0 for 768 × 768 Grams. The same LAPACK routines called here through
``scipy.linalg.cython_lapack``'s function pointers, by ctypes, which releases the lock for the call, give ×1.8.
Same routine, same arguments, same workspace as scipy's calls: the same numbers, bit for bit (tests/test_lapack.py).
:func:`gram` accumulates a Gram matrix by BLAS's ?syrk (``scipy.linalg.cython_blas``) from blocks of rows
converted one at a time, so that a float64 Gram of float32 weights needs no float64 copy of them (nor a float32 Gram
of float64 or float16 weights a float32 copy).

Where the pointers are missing or their C signature is not the one expected (another scipy: 64-bit integers),
scipy's own functions are used.
"""

from __future__ import annotations

import ctypes
import functools
import re
from typing import Any

import numpy as np
import scipy.linalg

__all__ = ["eigh", "eigvalsh", "gram", "svdvals"]

# argument kinds of the C signatures: c char*, i int*, x the matrix type (s float, d double)
_SIGNATURES = {"syevr": "c c c i x i x x i i x i x x i i x i i i i", "gesdd": "c i i x i x x i x i x i i i",
               "syrk": "c c i i x x i x x i"}
_KIND = {"char": "c", "int": "i", "s": "x", "d": "x"}


@functools.lru_cache(maxsize=None)
def _routine(name: str):
    """The ctypes function for LAPACK (or BLAS) routine ``name`` ('ssyevr', 'dsyrk' …), or None."""
    try:
        from scipy.linalg import cython_blas, cython_lapack

        capsule = (cython_blas if name[1:] == "syrk" else cython_lapack).__pyx_capi__[name]
        # (prototypes of our own: setting ctypes.pythonapi's would change them for every other user)
        get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
        get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", ctypes.pythonapi))
        signature = get_name(capsule)
        args = re.fullmatch(r"void \((.*)\)", signature.decode())
        kinds = [_KIND.get(re.sub(r"^__pyx_t_\w*cython_(lapack|blas)_", "", a.strip()).rstrip(" *"))
                 for a in args.group(1).split(",")] if args else []
        if " ".join(map(str, kinds)) != _SIGNATURES[name[1:]]:
            return None
        pointer = get_pointer(capsule, signature)
    except Exception:  # (no cython_lapack, no such routine: scipy's wrappers then)
        return None
    # (a CFUNCTYPE function releases Python's lock for the call; every argument is a pointer)
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(kinds))(pointer)


_int, _char = ctypes.c_int, lambda c: ctypes.c_char(c.encode())


def _ref(x: Any) -> Any:
    """The pointer LAPACK takes: an array's data, or a ctypes scalar's address."""
    return x.ctypes.data if isinstance(x, np.ndarray) else ctypes.byref(x)


def eigvalsh(G: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of the symmetric float32 or float64 matrix ``G`` (its lower triangle), as
    ``scipy.linalg.eigh(G, eigvals_only=True)``: ?syevr, all eigenvalues. ``G`` may be overwritten: a
    column-major one is used in place, any other is copied (as scipy does). LinAlgError if LAPACK does not
    converge."""
    return _syevr(G, False)[0]


def eigh(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ascending eigenvalues, unit eigenvectors as columns) of ``G``, as ``scipy.linalg.eigh(G)``; otherwise as
    :func:`eigvalsh`."""
    w, V = _syevr(G, True)
    assert V is not None
    return w, V


def _syevr(G: np.ndarray, vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
    dtype = np.dtype(G.dtype)
    run = _routine({"float32": "ssyevr", "float64": "dsyevr"}.get(dtype.name, ""))
    if run is None or G.ndim != 2 or G.shape[0] != G.shape[1]:
        out = scipy.linalg.eigh(G, eigvals_only=not vectors, overwrite_a=True, check_finite=False)
        return out if vectors else (out, None)
    n = G.shape[0]
    a = np.asfortranarray(G)  # (scipy's wrapper makes the same column-major copy of a C-ordered matrix)
    w, isuppz = np.zeros(n, dtype), np.zeros(2 * max(1, n), np.int32)
    z = np.zeros((n, n) if vectors else (1, 1), dtype, order="F")
    info, found = _int(), _int()
    zero = np.zeros(1, dtype)

    def call(work: np.ndarray, lwork: int, iwork: np.ndarray, liwork: int) -> None:
        run(*map(_ref, (_char("V" if vectors else "N"), _char("A"), _char("L"), _int(n), a, _int(max(1, n)),
                        zero, zero, _int(1), _int(n), zero, found, w, z, _int(max(1, z.shape[0])), isuppz,
                        work, _int(lwork), iwork, _int(liwork), info)))

    work, iwork = np.zeros(1, dtype), np.zeros(1, np.int32)
    call(work, -1, iwork, -1)  # the workspace query
    lwork, liwork = _query(work, info), int(iwork[0])
    call(np.zeros(lwork, dtype), lwork, np.zeros(liwork, np.int32), liwork)
    if info.value:
        raise np.linalg.LinAlgError(f"?syevr: internal error (info {info.value})")
    return w, z if vectors else None


def svdvals(W: np.ndarray, dtype: Any = None) -> np.ndarray:
    """Descending singular values of the float32 or float64 matrix ``W`` (in ``dtype`` if given: one copy, where a
    conversion first would make two), as ``scipy.linalg.svd(W, compute_uv=False)``: ?gesdd without vectors.
    LinAlgError if it does not converge."""
    dtype = np.dtype(dtype or W.dtype)
    run = _routine({"float32": "sgesdd", "float64": "dgesdd"}.get(dtype.name, ""))
    if run is None or np.ndim(W) != 2:
        return scipy.linalg.svd(np.asarray(W, dtype=dtype), compute_uv=False, check_finite=False)
    rows, cols = W.shape
    a = np.array(W, dtype=dtype, order="F")  # a copy: ?gesdd overwrites it
    s, u, vt = np.zeros(min(rows, cols), dtype), np.zeros(1, dtype), np.zeros(1, dtype)
    iwork, info = np.zeros(8 * min(rows, cols), np.int32), _int()

    def call(work: np.ndarray, lwork: int) -> None:
        run(*map(_ref, (_char("N"), _int(rows), _int(cols), a, _int(max(1, rows)), s, u, _int(1), vt, _int(1),
                        work, _int(lwork), iwork, info)))

    work = np.zeros(1, dtype)
    call(work, -1)
    lwork = _query(work, info)
    call(np.zeros(lwork, dtype), lwork)
    if info.value:
        raise np.linalg.LinAlgError(f"SVD did not converge (?gesdd info {info.value})")
    return s


def gram(X: np.ndarray, dtype: Any, block: int = 1 << 20) -> np.ndarray:
    """XᵀX in ``dtype`` (float32 or float64; n × n for X's n columns): its lower triangle in a column-major array
    (the rest zeros), as :func:`eigvalsh` reads it in place. Accumulated by ?syrk over blocks of X's rows (about
    ``block`` entries, at least 256 rows), each converted to ``dtype`` on its own: no converted copy of all of X
    is held (a float64 Gram of float32 weights: 8 bytes a weight, 344 MiB for a 4096 × 11008 layer; here 8 MiB),
    and Python's lock is released. Without the pointer: numpy's product of one whole converted copy."""
    dtype = np.dtype(dtype)
    run = _routine({"float32": "ssyrk", "float64": "dsyrk"}.get(dtype.name, ""))
    m, n = X.shape
    if run is None:
        A = np.asarray(X, dtype=dtype)
        return np.asfortranarray(np.tril(A.T @ A))
    G = np.zeros((n, n), dtype, order="F")
    if not (m and n):
        return G
    one = np.ones(1, dtype)
    rows = min(m, max(256, block // n))
    buffer = np.empty((rows, n), dtype)  # (one block's buffer, filled in turn)
    for start in range(0, m, rows):
        # a C-ordered k × n block is, read column-major, the n × k matrix Bᵀ: ?syrk 'N' adds Bᵀ·B to G
        B = buffer[:min(rows, m - start)]
        B[...] = X[start:start + rows]
        run(*map(_ref, (_char("L"), _char("N"), _int(n), _int(B.shape[0]), one, B, _int(n), one, G, _int(n))))
    return G


def _query(work: np.ndarray, info: ctypes.c_int) -> int:
    """The workspace size a query returned, rounded up as scipy's ``_compute_lwork`` does (a float32 holds
    integers exactly only up to 2²⁴)."""
    if info.value:
        raise np.linalg.LinAlgError(f"LAPACK workspace query failed (info {info.value})")
    value = float(work[0])
    if work.dtype == np.float32:
        value = float(np.nextafter(np.float32(value), np.float32(np.inf)))
    return max(1, int(value))
