"""Flax reader: msgpack checkpoints and in-memory pytrees — names, kinds, orientation, laziness, bad input.

Neither jax nor flax is installed: checkpoints are written here with ``msgpack`` in exactly the encoding
of ``flax.serialization.msgpack_serialize`` (arrays as extension type 1 holding msgpack
``[shape, dtype name, C-order bytes]``, numpy scalars as type 3, arrays above a size limit split into
``__msgpack_chunked_array__`` maps). The network test writes the real all-MiniLM-L6-v2 weights as Flax
checkpoints (Hugging Face Flax-BERT naming, and linen attention naming with DenseGeneral kernels) and
compares htsr's per-layer alpha with the safetensors original.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from conftest import normal32 as _f32
from conftest import one_line_source_error as _one_line_source_error
from conftest import missing_extra_error

import htsr
from htsr.errors import SourceError
from htsr.io.base import FLOAT_DTYPES

msgpack = pytest.importorskip("msgpack")

from htsr.io import flax as flax_io
from htsr.io import open_source
from htsr.io.flax import (
    FlaxMsgpackFile,
    FlaxTree,
    flax_tensor,
    is_flax_tree,
    is_msgpack_checkpoint,
)

# ------------------------------------------------------------------------------------ flax's encoding

FLAX_MAX_CHUNK_SIZE = 2**30  # flax.serialization.MAX_CHUNK_SIZE


def ndarray_to_bytes(arr: np.ndarray) -> bytes:
    """flax.serialization._ndarray_to_bytes."""
    arr = np.asarray(arr)
    return msgpack.packb((arr.shape, arr.dtype.name, arr.tobytes("C")), use_bin_type=True)


def msgpack_ext_pack(x):
    """flax.serialization._msgpack_ext_pack (numpy part)."""
    if isinstance(x, np.ndarray):
        return msgpack.ExtType(1, ndarray_to_bytes(x))
    if isinstance(x, np.generic):
        return msgpack.ExtType(3, ndarray_to_bytes(np.asarray(x)))
    if isinstance(x, complex):
        return msgpack.ExtType(2, msgpack.packb((x.real, x.imag)))
    return x


def _chunk(arr: np.ndarray, max_chunk_size: int) -> dict:
    """flax.serialization._chunk."""
    chunksize = max(1, int(max_chunk_size / arr.dtype.itemsize))
    flat = arr.reshape(-1)
    chunks = [flat[i:i + chunksize] for i in range(0, flat.size, chunksize)]
    return {"__msgpack_chunked_array__": True,
            "shape": {str(i): d for i, d in enumerate(arr.shape)},
            "chunks": {str(i): c for i, c in enumerate(chunks)}}


def _chunk_leaves(d, max_chunk_size: int):
    """flax.serialization._chunk_array_leaves_in_place (on a copy)."""
    if isinstance(d, dict):
        return {k: _chunk_leaves(v, max_chunk_size) for k, v in d.items()}
    if isinstance(d, np.ndarray) and d.size * d.dtype.itemsize > max_chunk_size:
        return _chunk(d, max_chunk_size)
    return d


def msgpack_serialize(tree: dict, max_chunk_size: int = FLAX_MAX_CHUNK_SIZE) -> bytes:
    """flax.serialization.msgpack_serialize (= to_bytes of a state dict); a small chunk size for tests."""
    return msgpack.packb(_chunk_leaves(tree, max_chunk_size), default=msgpack_ext_pack, strict_types=True)


def write(path: Path, tree: dict, **kw) -> Path:
    path.write_bytes(msgpack_serialize(tree, **kw))
    return path


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _sv(a: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)


def _refs(source) -> dict:
    return {r.name: r for r in source}




@pytest.fixture
def analyze(monkeypatch):
    """htsr.analyze that accepts the readers themselves (works before open_source routes to them)."""
    mod = sys.modules["htsr.analyze"]
    real = mod.open_source
    monkeypatch.setattr(mod, "open_source",
                        lambda s, *a, **k: s if isinstance(s, (FlaxMsgpackFile, FlaxTree)) else real(s, *a, **k))
    return htsr.analyze


def small_tree() -> dict:
    return {"params": {
        "Dense_0": {"kernel": _f32(20, 12, seed=1), "bias": _f32(12, seed=2)},
        "LayerNorm_0": {"scale": np.ones(12, np.float32), "bias": np.zeros(12, np.float32)},
        "Embed_0": {"embedding": _f32(50, 12, seed=3)},
        "Conv_0": {"kernel": _f32(3, 3, 4, 8, seed=4), "bias": np.zeros(8, np.float32)},
        "conv1d": {"kernel": _f32(5, 6, 10, seed=5)},
        "attention": {"query": {"kernel": _f32(24, 4, 6, seed=6)},
                      "out": {"kernel": _f32(4, 6, 24, seed=7)}},
    }, "batch_stats": {"BatchNorm_0": {"mean": np.zeros(8, np.float32)}}, "step": np.int64(7)}


@pytest.fixture
def small_file(tmp_path) -> Path:
    return write(tmp_path / "small.msgpack", small_tree())


# ------------------------------------------------------------------------------- names, kinds, shapes


def test_encoding_is_flax_s():
    # the bytes this file writes are flax's: a map, ext type 1 whose payload is msgpack [shape, dtype, bin]
    b = msgpack_serialize({"params": {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}})
    assert b.startswith(b"\x81\xa6params\x81\xa7Dense_0\x81\xa6kernel")
    ext = msgpack.unpackb(b, raw=False)["params"]["Dense_0"]["kernel"]
    assert isinstance(ext, msgpack.ExtType) and ext.code == 1
    assert msgpack.unpackb(ext.data, raw=True) == [[2, 3], b"float32", np.arange(6, dtype=np.float32).tobytes()]
    assert is_msgpack_checkpoint(b[:16])


def test_names_kinds_and_shapes(small_file):
    src = FlaxMsgpackFile(small_file)
    refs = _refs(src)
    got = {n: (r.kind, r.shape, r.dtype, r.path, r.flax_shape) for n, r in refs.items()}
    assert got == {
        "Dense_0": ("dense", (12, 20), "float32", "params.Dense_0.kernel", (20, 12)),
        "Embed_0": ("embedding", (50, 12), "float32", "params.Embed_0.embedding", (50, 12)),
        "Conv_0": ("conv2d", (8, 4, 3, 3), "float32", "params.Conv_0.kernel", (3, 3, 4, 8)),
        "conv1d": ("conv1d", (10, 6, 5), "float32", "params.conv1d.kernel", (5, 6, 10)),
        "attention.query": ("dense", (24, 24), "float32", "params.attention.query.kernel", (24, 4, 6)),
        "attention.out": ("dense", (24, 24), "float32", "params.attention.out.kernel", (4, 6, 24)),
    }
    assert list(refs) == ["Dense_0", "Embed_0", "Conv_0", "conv1d", "attention.query", "attention.out"]  # file order
    assert len(src) == 6 and src.description == str(small_file)
    # biases, LayerNorm scales and the other collections are not yielded; the collections are listed
    assert dict(src.skipped) == {"batch_stats": "not the 'params' collection", "step": "not the 'params' collection"}
    for r in refs.values():
        a = r.load()
        assert a.shape == r.shape and a.dtype == np.float32


def test_dense_orientation_is_pytorch_s(small_file):
    K = small_tree()["params"]["Dense_0"]["kernel"]  # Flax [in=20, out=12]
    W = _refs(FlaxMsgpackFile(small_file))["Dense_0"].load()
    assert W.shape == (12, 20)
    np.testing.assert_array_equal(W, K.T)  # same bits, PyTorch [out, in]
    np.testing.assert_allclose(_sv(W), _sv(K), rtol=1e-12)  # SVD of Kᵀ vs K: rounding only


def test_conv_orientation(small_file):
    tree = small_tree()["params"]
    refs = _refs(FlaxMsgpackFile(small_file))
    K2 = tree["Conv_0"]["kernel"]  # [kh, kw, c_in, c_out]
    W2 = refs["Conv_0"].load()  # [c_out, c_in, kh, kw]
    for i in range(3):
        for j in range(3):
            np.testing.assert_array_equal(W2[:, :, i, j], K2[i, j].T)
            np.testing.assert_allclose(_sv(W2[:, :, i, j]), _sv(K2[i, j]), rtol=1e-12)  # Kᵀ vs K: rounding only
    K1 = tree["conv1d"]["kernel"]  # [k, c_in, c_out]
    W1 = refs["conv1d"].load()
    for p in range(5):
        np.testing.assert_array_equal(W1[:, :, p], K1[p].T)


def test_embedding_as_it_is(small_file):
    E = small_tree()["params"]["Embed_0"]["embedding"]
    np.testing.assert_array_equal(_refs(FlaxMsgpackFile(small_file))["Embed_0"].load(), E)


def test_dense_general_reshaped_like_a_linear(small_file):
    tree = small_tree()["params"]["attention"]
    refs = _refs(FlaxMsgpackFile(small_file))
    Q = tree["query"]["kernel"]  # [dim=24, heads=4, head_dim=6]: input axis first
    np.testing.assert_array_equal(refs["attention.query"].load(), Q.reshape(24, 24).T)
    O = tree["out"]["kernel"]  # [heads, head_dim, dim]: flax's output projection, axis=(-2, -1)
    np.testing.assert_array_equal(refs["attention.out"].load(), O.reshape(24, 24).T)
    # what a PyTorch nn.Linear of the same layer holds, and so the same singular values
    np.testing.assert_allclose(_sv(refs["attention.out"].load()), _sv(O.reshape(24, 24)), rtol=1e-12)


@pytest.mark.parametrize("path, shape, expected", [
    (("Dense_0", "kernel"), (8, 3), ("Dense_0", "dense", (3, 8))),
    (("DenseGeneral_0", "kernel"), (8, 2, 5), ("DenseGeneral_0", "dense", (10, 8))),
    # flax's own name DenseGeneral_N: never a convolution, whatever its rank
    (("DenseGeneral_0", "kernel"), (8, 2, 5, 3), ("DenseGeneral_0", "dense", (30, 8))),
    (("blk", "kernel"), (8, 2, 5, 3), ("blk", "conv2d", (3, 5, 8, 2))),  # an unknown module's 4-D kernel: a conv
    (("tubelet", "kernel"), (2, 3, 3, 3, 8), ("tubelet", "conv3d", (8, 3, 2, 3, 3))),  # and a 5-D one
    (("MultiHeadDotProductAttention_0", "key", "kernel"), (16, 2, 8, 1), (
        "MultiHeadDotProductAttention_0.key", "dense", (16, 16))),
    (("blk", "o_proj", "kernel"), (2, 8, 16), ("blk.o_proj", "dense", (16, 16))),
    (("ConvTranspose_0", "kernel"), (4, 2, 3), ("ConvTranspose_0", "conv1d", (3, 2, 4))),
    (("Embed_0", "embedding"), (7, 3), ("Embed_0", "embedding", (7, 3))),
    (("ViT", "pos_embedding"), (10, 4), ("ViT.pos_embedding", None, (10, 4))),  # unknown 2-D leaf: htsr infers
    (("ViT", "pos_embedding"), (1, 10, 4), ("ViT.pos_embedding", None, (1, 10, 4))),  # leading 1: still 2-D
    # a ConvLSTM3D's recurrent kernel [kd, kh, kw, units, 4·units]: a conv3d, as its input kernel
    (("conv_lstm3d", "conv_lstm_cell", "recurrent_kernel"), (2, 3, 3, 8, 32),
     ("conv_lstm3d.recurrent_kernel", "conv3d", (32, 8, 2, 3, 3))),
    # a second LSTM's numbered cell (TF-Keras' lstm_1/lstm_cell_1) is left out of the name, as the first's
    (("lstm_1", "lstm_cell_1", "recurrent_kernel"), (16, 64), ("lstm_1.recurrent_kernel", "rnn", (64, 16))),
    # a single module's state {'embedding': …} (no module name): named after its leaf, not ''
    (("embedding",), (7, 3), ("embedding", "embedding", (7, 3))),
])
def test_flax_tensor_rules(path, shape, expected):
    name, kind, htsr_shape, transform = flax_tensor(path, shape)
    assert (name, kind, htsr_shape) == expected
    a = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    assert transform(a).shape == htsr_shape
    assert transform(a).flags.c_contiguous


@pytest.mark.parametrize("path, shape, bias, expected", [
    # a bias of several axes is the kernel's output axes: DenseGeneral(features=(4, 16)) of any name
    (("DenseGeneral_1", "kernel"), (4, 16, 4, 16), (4, 16), ("DenseGeneral_1", "dense", (64, 64))),
    (("proj", "kernel"), (4, 16, 4, 16), (4, 16), ("proj", "dense", (64, 64))),
    (("attn", "query", "kernel"), (64, 4, 16), (4, 16), ("attn.query", "dense", (64, 64))),
    # a 1-D bias and a 3-D kernel of an unknown module: a Conv1D (a conv's bias is 1-D) ...
    (("stem", "kernel"), (3, 64, 32), (32,), ("stem", "conv1d", (32, 64, 3))),
    # ... unless its name says attention output (DenseGeneral over its two first axes)
    (("proj_out", "kernel"), (4, 16, 64), (64,), ("proj_out", "dense", (64, 64))),
])
def test_flax_tensor_rules_read_by_the_bias(path, shape, bias, expected):
    """The QA cases that were read wrong (proj_out as 1024×4, DenseGeneral_1 as 64 convolution taps, a Conv
    named stem as 2048×3, a 3-D Conv named tubelet as a 216×2 dense): the bias's shape settles them."""
    name, kind, htsr_shape, transform = flax_tensor(path, shape, bias)
    assert (name, kind, htsr_shape) == expected
    a = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    assert transform(a).shape == htsr_shape
    assert transform(a).flags.c_contiguous


@pytest.mark.parametrize("path, shape", [
    (("Dense_0", "bias"), (8,)),
    (("LayerNorm_0", "scale"), (8,)),
    (("Conv4D", "kernel"), (3, 3, 3, 3, 4, 8)),  # a 4-D convolution: not analysed (3-D ones are conv3d)
    (("mod", "w"), (4, 5, 6)),
])
def test_flax_tensor_skips(path, shape):
    assert isinstance(flax_tensor(path, shape), str)


def test_skipped_lists_leaves_of_two_or_more_dimensions(tmp_path):
    tree = {"params": {"conv3d": {"kernel": _f32(2, 2, 2, 3, 4)}, "conv4d": {"kernel": _f32(2, 2, 2, 2, 3, 4)},
                       "mod": {"w": _f32(2, 3, 4)}, "Dense_0": {"kernel": _f32(4, 5), "bias": _f32(5)}}}
    src = FlaxMsgpackFile(write(tmp_path / "m.msgpack", tree))
    assert list(_refs(src)) == ["conv3d", "Dense_0"] and _refs(src)["conv3d"].kind == "conv3d"
    assert {p for p, _ in src.skipped} == {"conv4d.kernel", "mod.w"}
    # and the analysis says so
    r = htsr.analyze(src, min_evals=2)
    assert {(n.reason.split(":")[0], n.examples) for n in r.not_analysed if "reader" in n.reason} == {
        ("passed over by the reader", ("conv4d.kernel",)), ("passed over by the reader", ("mod.w",))}


def test_biases_and_scales_are_counted_as_a_state_dict_s_are(tmp_path):
    tree = {"params": {"Dense_0": {"kernel": _f32(60, 50), "bias": _f32(50)}, "LayerNorm_0": {"scale": _f32(50)}}}
    r = htsr.analyze(FlaxMsgpackFile(write(tmp_path / "m.msgpack", tree)))
    assert r.num_tensors == 3 and [x.name for x in r.layers] == ["Dense_0"]
    assert {n.reason: n.examples for n in r.not_analysed} == {
        "bias or norm buffer": ("Dense_0.bias",), "1-D (norm scales, scalars)": ("LayerNorm_0.scale",)}


def test_no_params_collection_reads_the_whole_tree(tmp_path):
    # Hugging Face's flax_model.msgpack: to_bytes(model.params), no 'params' key at the top
    tree = {"encoder": {"layer": {"0": {"dense": {"kernel": _f32(6, 4), "bias": _f32(4)}}}}}
    src = FlaxMsgpackFile(write(tmp_path / "flax_model.msgpack", tree))
    ((name, ref),) = _refs(src).items()
    assert (name, ref.kind, ref.shape, ref.path) == ("encoder.layer.0.dense", "dense", (4, 6),
                                                    "encoder.layer.0.dense.kernel")
    assert src.skipped == []


def test_reduced_precision_and_scalar_leaves(tmp_path):
    import ml_dtypes

    K = _f32(16, 8, seed=9)
    tree = {"params": {"bf16": {"kernel": K.astype(ml_dtypes.bfloat16)}, "f16": {"kernel": K.astype(np.float16)},
                       "f64": {"kernel": K.astype(np.float64)}, "ints": {"kernel": np.ones((3, 2), np.int32)},
                       "scalar": {"kernel": np.float32(2.0)}, "cplx": {"kernel": 1 + 2j}, "text": {"kernel": "x"}}}
    refs = _refs(FlaxMsgpackFile(write(tmp_path / "m.msgpack", tree)))
    assert {n: r.dtype for n, r in refs.items()} == {"bf16": "bfloat16", "f16": "float16", "f64": "float64",
                                                     "ints": "int32"}
    np.testing.assert_array_equal(refs["bf16"].load(), K.astype(ml_dtypes.bfloat16).astype(np.float32).T)
    np.testing.assert_array_equal(refs["f16"].load(), K.astype(np.float16).astype(np.float32).T)
    assert refs["f64"].load().dtype == np.float64 and refs["bf16"].load().dtype == np.float32
    assert "int32" not in FLOAT_DTYPES  # analyze drops the integer tensor


def test_chunked_array(tmp_path):
    E = _f32(30, 7, seed=11)  # 840 bytes: split into chunks of 256 bytes (64 floats) as flax does above 1 GiB
    K = _f32(10, 8, seed=12)  # 320 bytes: 2 chunks
    path = write(tmp_path / "m.msgpack", {"params": {"Embed_0": {"embedding": E}, "Dense_0": {"kernel": K}}},
                 max_chunk_size=256)
    raw = msgpack.unpackb(path.read_bytes(), raw=False)["params"]
    assert raw["Embed_0"]["embedding"]["__msgpack_chunked_array__"] is True
    assert len(raw["Embed_0"]["embedding"]["chunks"]) == 4 and len(raw["Dense_0"]["kernel"]["chunks"]) == 2
    refs = _refs(FlaxMsgpackFile(path))
    assert (refs["Embed_0"].kind, refs["Embed_0"].shape, refs["Dense_0"].shape) == ("embedding", (30, 7), (8, 10))
    np.testing.assert_array_equal(refs["Embed_0"].load(), E)
    np.testing.assert_array_equal(refs["Dense_0"].load(), K.T)


def test_same_result_as_the_pytree(small_file):
    from_file, from_tree = _refs(FlaxMsgpackFile(small_file)), _refs(FlaxTree(small_tree()))
    assert list(from_file) == list(from_tree)
    for n in from_file:
        a, b = from_file[n], from_tree[n]
        assert (a.kind, a.shape, a.dtype, a.path, a.flax_shape) == (b.kind, b.shape, b.dtype, b.path, b.flax_shape)
        np.testing.assert_array_equal(a.load(), b.load())


def _flat(tree: dict, sep: str, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, sep, f"{prefix}{k}{sep}") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("sep", ["/", "."])
def test_a_flattened_tree_in_an_npz_or_a_flat_dict_is_read_as_the_tree(tmp_path, sep):
    """The ViT and big_vision checkpoints are .npz of 'Transformer/encoderblock_0/…/kernel' (flax
    flatten_dict): they were read as a state dict, a Conv kernel [3, 3, 4, 8] as 12 matrices of 3 x 3 named
    'Conv_0/kernel' (alpha 2.36 where the msgpack copy gives 3.93). Read as the tree now: the same rows,
    names, kinds and values (exact: the same arrays)."""
    tree = small_tree()
    flat = _flat(tree, sep)
    np.savez(tmp_path / "flat.npz", **flat)
    want = _refs(FlaxTree(tree))
    for source in (tmp_path / "flat.npz", flat):
        got = _refs(open_source(source))
        assert list(got) == list(want)
        for n in want:
            a, b = got[n], want[n]
            assert (a.kind, a.shape, a.dtype, a.flax_shape) == (b.kind, b.shape, b.dtype, b.flax_shape)
            np.testing.assert_array_equal(a.load(), b.load())
    r, r_tree = htsr.analyze(tmp_path / "flat.npz", min_evals=2), htsr.analyze(tree, min_evals=2)
    assert r.not_analysed == r_tree.not_analysed and r.num_tensors == r_tree.num_tensors == 12  # (batch_stats …)
    assert [(l.name, l.alpha) for l in r.layers] == [(l.name, l.alpha) for l in r_tree.layers]
    # a state dict's names say 'weight': never taken for a Flax tree
    sd = {f"enc{sep}fc{sep}weight": _f32(20, 12)}
    assert not isinstance(open_source(sd), FlaxTree)


@pytest.mark.parametrize("sep", ["/", "."])
def test_flax_parameters_in_safetensors_are_read_as_the_tree(tmp_path, sep):
    """transformers' Flax save_pretrained(safe_serialization=True) writes flatten_dict(params, sep='.') to
    model.safetensors with {'format': 'flax'}: the file had been read as a PyTorch state dict, while the same
    arrays in an .npz or a dict were read as the tree. Its Conv kernel [3, 3, 4, 8] had been 12 meaningless 3 x 3
    matrices ('conv2d 3x3x4x8'), a ViT patch kernel [16, 16, 3, 192] no row at all, and Dense kernels [in, out].
    Now the same rows, names, kinds, values and alphas as the tree's: a file, a model folder, a sharded folder
    with its index (one tensor held by two shards read from the one the index names). A file whose metadata says
    'pt' is PyTorch's whatever its names."""
    from safetensors.numpy import save_file

    tree = small_tree()
    tree["step"] = np.array(7, np.int64)  # (safetensors stores arrays)
    flat = _flat(tree, sep)
    want, r_tree = _refs(FlaxTree(tree)), htsr.analyze(tree, min_evals=2)
    save_file(flat, tmp_path / "flax.safetensors", metadata={"format": "flax"})
    (tmp_path / "folder").mkdir()
    save_file(flat, tmp_path / "folder" / "model.safetensors", metadata={"format": "flax"})
    (tmp_path / "folder" / "config.json").write_text('{"architectures": ["FlaxViTModel"]}')
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    dup = f"params{sep}Dense_0{sep}kernel"  # in both shards: the first's copy stale (zeros), the index names the second
    rest = [k for k in flat if k != dup]
    halves = {"model-00001-of-00002.safetensors": rest[:len(rest) // 2] + [dup],
              "model-00002-of-00002.safetensors": rest[len(rest) // 2:] + [dup]}
    for file, keys in halves.items():
        save_file({k: np.zeros_like(flat[k]) if k == dup and "00001" in file else flat[k] for k in keys},
                  sharded / file, metadata={"format": "flax"})
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f for f, keys in halves.items() for k in keys if not (k == dup and "00001" in f)}}))
    for source in (tmp_path / "flax.safetensors", tmp_path / "folder", sharded):
        got = _refs(open_source(source))
        assert sorted(got) == sorted(want), source  # (in the names' natural order, as a state dict's)
        for n in want:
            a, b = got[n], want[n]
            assert (a.kind, a.shape, a.dtype, a.flax_shape) == (b.kind, b.shape, b.dtype, b.flax_shape), (source, n)
            np.testing.assert_array_equal(a.load(), b.load(), err_msg=f"{source}: {n}")
        r = htsr.analyze(source, min_evals=2)
        assert r.num_tensors == r_tree.num_tensors and {(n.reason, frozenset(n.examples)) for n in r.not_analysed} == {
            (n.reason, frozenset(n.examples)) for n in r_tree.not_analysed}, source
        assert sorted((l.name, l.kind, l.alpha) for l in r.layers) == sorted(
            (l.name, l.kind, l.alpha) for l in r_tree.layers)
    save_file(flat, tmp_path / "pt.safetensors", metadata={"format": "pt"})
    assert not isinstance(open_source(tmp_path / "pt.safetensors"), FlaxTree)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_a_scanned_tree_in_an_npz_reads_one_layer_at_a_time(tmp_path, monkeypatch, save):
    """nn.scan's stacked kernels flattened into an .npz: each layer's row read the whole stacked member
    (decompressed once per layer: 24 layers of a 50 MB file read 1.2 GB). Stored uncompressed (np.savez),
    a layer is read from a map of the member's bytes; compressed, the member is read for each layer."""
    L = 6
    tree = {"params": {"layers": {"fc": {"kernel": _f32(L, 40, 30, seed=1), "bias": _f32(L, 30, seed=2)}}}}
    save(tmp_path / "scan.npz", **_flat(tree, "/"))
    want = _refs(FlaxTree(tree))
    from htsr.io import numpy as npio

    reads = []
    real = npio.NpzFile._loader
    monkeypatch.setattr(npio.NpzFile, "_loader", lambda self, name: (lambda: reads.append(name) or real(self, name)()))
    got = _refs(open_source(tmp_path / "scan.npz"))
    assert list(got) == list(want) == [f"layers.fc[{k}]" for k in range(L)]
    for n in want:
        np.testing.assert_array_equal(got[n].load(), want[n].load())
    assert len(reads) == (0 if save is np.savez else L)


def test_a_scanned_member_changed_in_place_fails_its_layers_by_its_crc32(tmp_path):
    """A stacked member stored uncompressed is read one layer at a time from a map of its bytes, past
    zipfile's CRC-32 check: one byte of layer 2 flipped in place (the file's size and headers unchanged) had
    been analysed as the changed value (an alpha for fc[2] from a weight 2^64 times too large). The member is
    now checked once against its recorded CRC-32; on a mismatch it is read through zipfile, which refuses it,
    so every layer of the member fails naming it (one stored member: which layer holds the change is unknown)."""
    L, k = 6, _f32(6, 40, 30, seed=1)
    np.savez(tmp_path / "scan.npz", **{"params/layers/fc/kernel": k, "params/layers/fc/bias": _f32(L, 30, seed=2)})
    raw = bytearray((tmp_path / "scan.npz").read_bytes())
    at = raw.index(k.tobytes()[:64]) + k[0].nbytes * 2  # layer 2's first value
    raw[at + 3] ^= 0x40  # its exponent
    (tmp_path / "scan.npz").write_bytes(bytes(raw))
    rows = htsr.analyze(tmp_path / "scan.npz", min_evals=2).layers
    assert [l.name for l in rows] == [f"layers.fc[{i}]" for i in range(L)]
    assert {l.status for l in rows} == {
        f"failed: {tmp_path / 'scan.npz'}: tensor 'params/layers/fc/kernel': cannot read its data (BadZipFile: "
        "Bad CRC-32 for file 'params/layers/fc/kernel.npy'); truncated or corrupt?"}


def test_optimizer_states_of_flax_optim_and_optax_under_any_key_are_left_out(tmp_path):
    """flax.optim's {'target', 'state': {'param_states'}} and an optax state under a key htsr does not know
    ({'opt': {'0': {'mu', 'nu'}}}) gave the moments as dense rows; an int8 kernel (AQT) was listed as an
    integer buffer: now a row that says why it is not analysed."""
    p = {"Dense_0": {"kernel": _f32(80, 120, seed=1)}, "Dense_1": {"kernel": _f32(120, 100, seed=2)}}
    moments = {"Dense_0": {"kernel": {"grad_ema": _f32(80, 120, seed=3), "grad_sq_ema": _f32(80, 120, seed=4)}}}
    for tree, names, left in (
            ({"target": p, "state": {"step": np.array(100, np.int32), "param_states": moments}},
             ["Dense_0", "Dense_1"], ["state"]),
            ({"model": p, "opt": {"0": {"count": np.array(3), "mu": p, "nu": p}}},
             ["model.Dense_0", "model.Dense_1"], ["opt"])):
        for source in (tree, write(tmp_path / "c.msgpack", tree)):
            r = htsr.analyze(source, min_evals=2)
            assert [l.name for l in r.layers] == names
            assert [(n.reason, n.examples) for n in r.not_analysed] == [
                ("passed over by the reader: optimizer state, not the model's parameters", tuple(left))]
    # the refs keep the key path of the leaf in the file: the Optimizer's target is part of it
    optim = write(tmp_path / "o.msgpack", {"target": p, "state": {"param_states": moments}})
    assert [r.path for r in FlaxMsgpackFile(optim)] == ["target.Dense_0.kernel", "target.Dense_1.kernel"]
    q = {"params": {"Dense_0": {"kernel": _rng(5).integers(-100, 100, (80, 120)).astype(np.int8),
                                "scale": np.ones((1, 120), np.float32)}, "Dense_1": p["Dense_1"]}}
    rows = htsr.analyze(write(tmp_path / "q.msgpack", q), min_evals=2).layers
    assert [(l.name, l.status) for l in rows] == [
        ("Dense_0", "skipped: stored as int8: a quantized kernel, whose scale htsr does not apply; analyse the float "
                    "parameters"), ("Dense_1", "ok")]


def test_analyze_through_the_reader(small_file, analyze):
    rows = {r.name: r for r in analyze(FlaxMsgpackFile(small_file), min_evals=2).layers}
    assert {n: (r.kind, r.shape) for n, r in rows.items()} == {
        "Dense_0": ("dense", "12x20"), "Embed_0": ("embedding", "50x12"), "Conv_0": ("conv2d", "8x4x3x3"),
        "conv1d": ("conv1d", "10x6x5"), "attention.query": ("dense", "24x24"), "attention.out": ("dense", "24x24"),
    }
    assert (rows["Conv_0"].N, rows["Conv_0"].M, rows["Conv_0"].num_matrices) == (8, 4, 9)


# ------------------------------------------------------------------------------------------ laziness


def test_arrays_are_built_only_on_load(small_file, monkeypatch):
    calls = []
    real = flax_io._Payload.array
    monkeypatch.setattr(flax_io._Payload, "array", lambda self, idx=(): calls.append(self) or real(self, idx))
    src = FlaxMsgpackFile(small_file)
    refs = list(src)
    assert len(refs) == 6 and calls == []  # opening and listing build no array
    refs[0].load()
    assert len(calls) == 1
    # what is held: each array's place in the file, not a copy of its bytes (read through a map of its own)
    payload = calls[0]
    assert payload.path == small_file and payload.end - payload.start > 20 * 12 * 4


def test_an_array_is_read_from_the_file_when_loaded(small_file):
    """The docstring says so: opening decodes the structure and the arrays' headers; an array's bytes are read
    (through a map of its own, dropped with it) when loaded, so memory holds one array, not the file."""
    src = FlaxMsgpackFile(small_file)
    np.testing.assert_array_equal(_refs(src)["Dense_0"].load(), small_tree()["params"]["Dense_0"]["kernel"].T)
    small_file.write_bytes(b"")  # the file changed under an open source: a load fails, naming the array
    with pytest.raises(SourceError) as ei:
        _refs(src)["Dense_0"].load()
    _one_line_source_error(ei, str(small_file), "'Dense_0.kernel' cannot be read", "changed")


def test_pytree_leaves_converted_only_on_load():
    class FakeJaxArray:  # what open_source may receive from jax: shape, dtype and __array__
        __module__ = "jaxlib.xla_extension"
        conversions = 0

        def __init__(self, a):
            self._a, self.shape, self.dtype = a, a.shape, a.dtype

        def __array__(self, dtype=None, copy=None):
            FakeJaxArray.conversions += 1
            return self._a

    K = _f32(9, 5, seed=13)
    tree = {"params": {"Dense_0": {"kernel": FakeJaxArray(K), "bias": FakeJaxArray(_f32(5))}}}
    assert is_flax_tree(tree)
    assert is_flax_tree({"encoder": {"w": FakeJaxArray(K)}})  # jax arrays (jaxlib's) are evidence on their own
    refs = _refs(FlaxTree(tree))
    assert FakeJaxArray.conversions == 0 and list(refs) == ["Dense_0"]
    np.testing.assert_array_equal(refs["Dense_0"].load(), K.T)
    assert FakeJaxArray.conversions == 1


# ------------------------------------------------------------------------------------------- pytrees


def test_pytree_variables_frozendict_and_nnx_leaves():
    class FrozenDict(Mapping):  # stands in for flax.core.FrozenDict (a Mapping from flax)
        __module__ = "flax.core.frozen_dict"

        def __init__(self, d):
            self._d = d

        def __getitem__(self, k):
            return self._d[k]

        def __iter__(self):
            return iter(self._d)

        def __len__(self):
            return len(self._d)

    class Param:  # stands in for an nnx Variable / VariableState: the array is in .value
        __module__ = "flax.nnx.variablelib"

        def __init__(self, v):
            self.value = v

    K, E = _f32(6, 4, seed=14), _f32(11, 4, seed=15)
    frozen = FrozenDict({"params": FrozenDict({"Dense_0": FrozenDict({"kernel": K}),
                                               "layers": [{"embed": {"embedding": E}}]})})
    assert is_flax_tree(frozen)
    refs = _refs(FlaxTree(frozen))
    assert {n: (r.kind, r.shape) for n, r in refs.items()} == {"Dense_0": ("dense", (4, 6)),
                                                               "layers.0.embed": ("embedding", (11, 4))}
    nnx_state = {"linear": {"kernel": Param(K), "bias": Param(_f32(4))}}
    assert is_flax_tree(nnx_state)
    (ref,) = FlaxTree(nnx_state)
    assert (ref.name, ref.kind) == ("linear", "dense")
    np.testing.assert_array_equal(ref.load(), K.T)


def test_is_flax_tree():
    K = _f32(4, 3)
    assert is_flax_tree({"params": {"Dense_0": {"kernel": K}}})
    assert is_flax_tree({"Dense_0": {"kernel": K}})  # a 'kernel' leaf is Flax's
    assert is_flax_tree({"params": {"a": {"w": K}}})  # a 'params' collection at the top
    assert not is_flax_tree({"fc.weight": K})  # flat: a plain mapping of arrays
    assert not is_flax_tree({"fc": {"weight": K}})  # nested, no Flax evidence: left to the other readers
    assert not is_flax_tree({"kernel": K})  # flat
    assert not is_flax_tree([K])
    torch = pytest.importorskip("torch")
    assert not is_flax_tree({"params": {"fc": {"kernel": torch.zeros(2, 2)}}})  # torch tensors: PyTorch's


def test_pytree_not_a_mapping():
    with pytest.raises(SourceError) as ei:
        FlaxTree([1, 2])  # type: ignore[arg-type]
    _one_line_source_error(ei, "mapping")


def test_pytree_analysed(analyze):
    rows = {r.name: r for r in analyze(FlaxTree(small_tree()), min_evals=2).layers}
    assert set(rows) == {"Dense_0", "Embed_0", "Conv_0", "conv1d", "attention.query", "attention.out"}


# ------------------------------------------------------------------------------------------ bad input


def test_is_msgpack_checkpoint():
    assert is_msgpack_checkpoint(b"\x81\xa6params")
    assert is_msgpack_checkpoint(b"\xde\x00\x20\xa3abc")  # map16
    assert is_msgpack_checkpoint(b"\xdf\x00\x01\x00\x00\xd9\x30")  # map32, str8 key
    assert is_msgpack_checkpoint(b"\x81\xdb\x00\x00\x00\x06params")  # a str32 first key (other packers write it)
    assert not is_msgpack_checkpoint(b"\x80\x02}q\x00")  # a PyTorch pickle (protocol 2)
    assert not is_msgpack_checkpoint(b"\x80")  # an empty map
    assert not is_msgpack_checkpoint(b"\x92\x01\x02")  # a list
    assert not is_msgpack_checkpoint(b"\x81\x01\x02")  # an int key
    assert not is_msgpack_checkpoint(b"PK\x03\x04")
    assert not is_msgpack_checkpoint(b"GGUF")
    assert not is_msgpack_checkpoint(b"")
    assert not is_msgpack_checkpoint(b"\xde\x00\x00")
    # an empty map16 / map32, whatever follows it, holds no parameters
    assert not is_msgpack_checkpoint(b"\xde\x00\x00\xa1a")
    assert not is_msgpack_checkpoint(b"\xdf\x00\x00\x00\x00\xa1a")


@pytest.mark.parametrize("content, expect", [
    (b"", "empty file"),
    (b"hello world, not msgpack", "not a Flax msgpack checkpoint"),
    (b"\x92\x01\x02", "not a Flax msgpack checkpoint"),  # msgpack, but a list
    (b"\x81\xa1a\xc1", "not valid msgpack"),  # 0xc1 is never used
])
def test_not_a_checkpoint(tmp_path, content, expect):
    path = tmp_path / "bad.msgpack"
    path.write_bytes(content)
    with pytest.raises(SourceError) as ei:
        FlaxMsgpackFile(path)
    _one_line_source_error(ei, str(path), expect)


def test_every_truncation_is_a_one_line_source_error(tmp_path, small_file):
    data = small_file.read_bytes()
    cut = tmp_path / "cut.msgpack"
    for n in sorted(set(range(1, 64)) | set(range(64, len(data), 97)) | {len(data) - 1}):
        cut.write_bytes(data[:n])
        with pytest.raises(SourceError) as ei:
            FlaxMsgpackFile(cut)
        msg = _one_line_source_error(ei, str(cut))
        assert "truncated" in msg or "not a Flax msgpack checkpoint" in msg, (n, msg)
        assert "not a Flax" in msg or "re-download or re-save it" in msg, (n, msg)  # what to do about it


def test_trailing_bytes(tmp_path, small_file):
    path = tmp_path / "two.msgpack"
    path.write_bytes(small_file.read_bytes() * 2)
    with pytest.raises(SourceError) as ei:
        FlaxMsgpackFile(path)
    _one_line_source_error(ei, str(path), "trailing bytes")


def _ext_checkpoint(tmp_path, payload: bytes) -> Path:
    path = tmp_path / "bad.msgpack"
    path.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": msgpack.ExtType(1, payload)},
                                               "Dense_1": {"kernel": msgpack_ext_pack(_f32(30, 20))}}}))
    return path


def _fails_alone(path: Path, module: str, *expect: str) -> None:
    """One corrupt array fails alone: the file opens, the good Dense_1 is analysed, and the bad array's
    row fails (its shape and dtype were readable) or it is listed as not analysed, saying why in one line."""
    src = FlaxMsgpackFile(path)
    rows = {r.name: r for r in htsr.analyze(src, min_evals=2).layers}
    assert rows["Dense_1"].status == "ok"
    if module in rows:
        msg = rows[module].status
        assert msg.startswith("failed: "), msg
    else:
        msg = dict(src.skipped)[f"{module}.kernel"]
    assert "\n" not in msg and "corrupt" in msg and f"{module}.kernel" in msg, msg
    for e in expect:
        assert e in msg, msg


@pytest.mark.parametrize("payload, expect", [
    # 40 bytes for a 3×4 float32 array (48 expected)
    (msgpack.packb(((3, 4), "float32", b"\0" * 40), use_bin_type=True), "40 bytes of data for shape (3, 4) float32"),
    (msgpack.packb(((3, 4), "float32", b"\0" * 52), use_bin_type=True), "52 bytes of data"),
    (msgpack.packb(((3, 4), "float32", b"\0" * 48), use_bin_type=True)[:-5], "claims 48 bytes but holds 43"),
    (msgpack.packb(((3, 4), "float99", b"\0" * 48), use_bin_type=True), "'float99' is not a numpy dtype"),
    # names numpy's dtype parser fails on with ValueError and SyntaxError
    (msgpack.packb(((3, 4), "(1000000000,1000000000)f4", b"\0" * 48), use_bin_type=True), "is not a numpy dtype"),
    (msgpack.packb(((3, 4), "(2,2", b"\0" * 48), use_bin_type=True), "'(2,2' is not a numpy dtype"),
    (msgpack.packb(((3, -4), "float32", b""), use_bin_type=True), "is not a list of sizes"),
    (msgpack.packb(((3, 4), "float32"), use_bin_type=True), "not [shape, dtype, bytes]"),
    (msgpack.packb(((3, 4), "float32", b"\0" * 48, 1), use_bin_type=True), "not [shape, dtype, bytes]"),  # 4 items
    # a structured dtype (two fields a value) is no weight matrix
    (msgpack.packb(((3, 4), "f4,f4", b"\0" * 96), use_bin_type=True), "'f4,f4' is not a plain numeric dtype"),
    (msgpack.packb(((3, 4), "float32", "text"), use_bin_type=True), "not a msgpack bin object"),
    # three items announced, the payload ends after the dtype: no data at all
    (b"\x93" + msgpack.packb((3, 4)) + msgpack.packb("float32", use_bin_type=True), "not a msgpack bin object"),
    (b"\xc1\xc1", "cannot be decoded"),
    (b"", "cannot be decoded"),
])
def test_bad_array_payload(tmp_path, payload, expect):
    _fails_alone(_ext_checkpoint(tmp_path, payload), "Dense_0", expect)


def test_bad_chunked_array(tmp_path):
    good = _chunk(_f32(8, 4), 32)
    bad_shape = {**good, "shape": {"0": 8, "1": 5}}
    missing = {**good, "chunks": {"0": good["chunks"]["0"], "2": good["chunks"]["1"]}}
    not_an_array = {**good, "chunks": {"0": good["chunks"]["0"], "1": "text"}}  # a chunk that is a string
    too_many = {**good, "shape": {"0": 4, "1": 4}}  # 32 elements in the chunks, 16 in the shape
    # 2-D chunks whose first sizes add up to the shape's 32 elements (64 in all): chunks are 1-D
    two_d = {**good, "chunks": {str(i): _f32(8, 2, seed=i) for i in range(4)}}
    for i, chunked in enumerate((bad_shape, missing, {**good, "shape": [8, 4]}, not_an_array, too_many, two_d)):
        path = tmp_path / f"bad{i}.msgpack"
        path.write_bytes(msgpack_serialize({"params": {"Embed_0": {"embedding": chunked},
                                                       "Dense_1": {"kernel": _f32(30, 20)}}}))
        src = FlaxMsgpackFile(path)
        assert [r.name for r in src] == ["Dense_1"]
        assert "chunked array 'Embed_0.embedding' is inconsistent" in dict(src.skipped)["Embed_0.embedding"]
    # a chunk whose own payload is corrupt: the message names the chunk and says what is wrong with it
    short = msgpack.ExtType(1, msgpack.packb(((16,), "float32", b"\0" * 40), use_bin_type=True))
    path = tmp_path / "bad_chunk.msgpack"
    path.write_bytes(msgpack_serialize({"params": {"Embed_0": {"embedding": {**good, "chunks": {
        "0": good["chunks"]["0"], "1": short}}}, "Dense_1": {"kernel": _f32(30, 20)}}}))
    src = FlaxMsgpackFile(path)
    assert [r.name for r in src] == ["Dense_1"]
    assert "'Embed_0.embedding' chunk 1: 40 bytes of data for shape (16,) float32" in dict(src.skipped)[
        "Embed_0.embedding"]


def test_a_chunked_array_of_infinite_size_is_inconsistent(tmp_path):
    good = _chunk(_f32(8, 4), 32)
    path = tmp_path / "inf.msgpack"
    path.write_bytes(msgpack.packb({"params": {"Embed_0": {"embedding": {**good, "shape": {"0": float("inf"),
                                                                                          "1": 4}}}}},
                                   default=msgpack_ext_pack))
    with pytest.raises(SourceError) as ei:  # (its only array: no analysable layer, and the file says why)
        htsr.analyze(FlaxMsgpackFile(path))
    _one_line_source_error(ei, str(path), "chunked array 'Embed_0.embedding' is inconsistent")


@pytest.mark.parametrize("nest", ["maps", "lists"])
def test_a_tree_nested_1020_levels_is_a_one_line_error(tmp_path, nest):
    """Maps or lists nested 1020 deep: the decoder's depth bound (lists had gone unseen: a RecursionError)."""
    # the bytes written by hand: msgpack's own packer stops at 511 levels in some versions (1.0.x)
    def fixstr(text: str) -> bytes:
        return bytes([0xA0 | len(text)]) + text.encode()

    body = b"\xc0"  # a nil leaf
    for i in range(1020):
        body = (b"\x81" + fixstr(f"m{i}") if nest == "maps" else b"\x91") + body  # a map / a list of one entry
    path = tmp_path / "deep.msgpack"
    path.write_bytes(b"\x81" + fixstr("params") + body)
    with pytest.raises(SourceError) as ei:
        FlaxMsgpackFile(path)
    _one_line_source_error(ei, str(path), "nests too deeply")


@pytest.mark.parametrize("body", [
    # 1.1 million empty maps in 2 lists: ~2 MB of file, ~200 MB of dicts (70x), stopped at a million values
    b"\x92" + (b"\xdd" + (550_000).to_bytes(4, "big") + b"\x80" * 550_000) * 2,
    b"\xdd" + (2_000_000).to_bytes(4, "big") + b"\xc0" * 2_000_000,  # a list longer than any model's
])
def test_files_of_millions_of_tiny_objects_are_refused_before_they_fill_memory(tmp_path, body):
    path = tmp_path / "many.msgpack"
    path.write_bytes(b"\x81\xa6params\x81\xa1x" + body)
    with pytest.raises(SourceError) as ei:
        FlaxMsgpackFile(path)
    _one_line_source_error(ei, str(path), "corrupt")


def test_missing_path(tmp_path):
    with pytest.raises(SourceError) as ei:
        FlaxMsgpackFile(tmp_path / "nope.msgpack")
    _one_line_source_error(ei, "nope.msgpack", "cannot read")


def test_missing_msgpack_package_is_a_missing_extra(small_file, monkeypatch):
    assert "htsr[flax]" in missing_extra_error(monkeypatch, "msgpack", lambda: FlaxMsgpackFile(small_file))
    # in-memory trees need no extra
    assert len(FlaxTree(small_tree())) == 6


def test_file_is_not_modified(small_file):
    before, mtime = small_file.read_bytes(), small_file.stat().st_mtime_ns
    for r in FlaxMsgpackFile(small_file):
        r.load()
    assert small_file.read_bytes() == before and small_file.stat().st_mtime_ns == mtime


def test_open_source_routing(small_file):
    """open_source routes msgpack files, HF folders with flax_model.msgpack and Flax pytrees here."""
    from htsr.io import open_source

    assert isinstance(open_source(small_file), FlaxMsgpackFile)
    assert isinstance(open_source(small_tree()), FlaxTree)
    assert isinstance(open_source({"Dense_0": {"kernel": _f32(3, 2)}}), FlaxTree)
    assert not isinstance(open_source({"fc.weight": _f32(3, 2)}), FlaxTree)  # flat: ArrayMapping as before
    folder = small_file.parent / "hf"
    folder.mkdir()
    (folder / "flax_model.msgpack").write_bytes(small_file.read_bytes())
    assert isinstance(open_source(folder), FlaxMsgpackFile)


# ------------------------------------------------------------------------------------ real model (network)


def _hf_flax_bert(weights: dict[str, np.ndarray]) -> tuple[dict, dict[str, str]]:
    """A Hugging Face FlaxBertModel params tree (flax_model.msgpack) and its row names → safetensors rows."""
    tree: dict = {}
    names = {}
    for name, W in weights.items():
        parts = name.split(".")
        leaf = parts.pop()
        if parts[-1] == "LayerNorm":
            key = {"weight": "scale", "bias": "bias"}[leaf]
        elif leaf == "bias":
            key = "bias"
        elif parts[-1].endswith("embeddings"):
            key = "embedding"
        else:
            key, W = "kernel", W.T  # nn.Dense: [in, out]
        node = tree
        for p in parts:
            node = node.setdefault(p, {})
        node[key] = np.ascontiguousarray(W)
        if W.ndim == 2:
            names[".".join(parts)] = ".".join(parts)
    return tree, names


def _linen_bert(weights: dict[str, np.ndarray], heads: int = 12) -> tuple[dict, dict[str, str]]:
    """The same weights as a linen model would name them, attention as DenseGeneral (MultiHeadDotProductAttention)."""
    params: dict = {}
    names = {}

    def put(path: tuple[str, ...], a: np.ndarray, st_row: str | None = None) -> None:
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.ascontiguousarray(a)
        if st_row is not None:
            names[".".join(path[:-1])] = st_row

    for name, W in weights.items():
        parts = name.split(".")
        leaf, row = parts[-1], ".".join(parts[:-1])
        if parts[0] == "embeddings":
            if parts[1] == "LayerNorm":
                put(("embeddings", "LayerNorm_0", {"weight": "scale", "bias": "bias"}[leaf]), W)
            else:
                put(("embeddings", parts[1], "embedding"), W, row)
            continue
        if parts[0] == "pooler":  # nn.Dense named 'pooler'
            put(("pooler", "bias" if leaf == "bias" else "kernel"), W if leaf == "bias" else W.T,
                None if leaf == "bias" else row)
            continue
        i, rest = parts[2], parts[3:-1]
        block = ("encoder", f"layer_{i}")
        where = {("attention", "self", "query"): ("attention", "query"),
                 ("attention", "self", "key"): ("attention", "key"),
                 ("attention", "self", "value"): ("attention", "value"),
                 ("attention", "output", "dense"): ("attention", "out"),
                 ("attention", "output", "LayerNorm"): ("LayerNorm_0",),
                 ("intermediate", "dense"): ("mlp", "Dense_0"),
                 ("output", "dense"): ("mlp", "Dense_1"),
                 ("output", "LayerNorm"): ("LayerNorm_1",)}[tuple(rest)]
        if rest[-1] == "LayerNorm":
            put(block + where + ({"weight": "scale", "bias": "bias"}[leaf],), W)
        elif leaf == "bias":
            put(block + where + ("bias",), W)
        elif where[-1] in ("query", "key", "value"):  # DenseGeneral(features=(heads, head_dim)): [dim, h, hd]
            out, dim = W.shape
            put(block + where + ("kernel",), W.T.reshape(dim, heads, out // heads), row)
        elif where[-1] == "out":  # DenseGeneral(features=dim, axis=(-2, -1)): [h, hd, dim]
            out, dim = W.shape
            put(block + where + ("kernel",), W.T.reshape(heads, dim // heads, out), row)
        else:
            put(block + where + ("kernel",), W.T, row)
    return {"params": params, "step": np.int64(1000)}, names


@pytest.mark.network
def test_minilm_flax_alpha_matches_safetensors(tmp_path, minilm_path, analyze):
    from htsr.io import open_source

    weights = {r.name: np.asarray(r.load()) for r in open_source(minilm_path) if r.dtype in FLOAT_DTYPES}
    assert "embeddings.position_ids" not in weights  # an int64 buffer, not stored by Flax
    reference = {r.name: r for r in htsr.analyze(minilm_path).layers}
    for label, build in (("hf", _hf_flax_bert), ("linen", _linen_bert)):
        tree, names = build(weights)
        path = write(tmp_path / f"minilm-{label}.msgpack", tree)
        src = FlaxMsgpackFile(path)
        rows = {names[r.name]: r for r in analyze(src).layers}  # Flax row → safetensors row
        assert set(rows) == set(reference), label
        fitted = 0
        for name, ref in reference.items():
            row = rows[name]
            assert (row.kind, row.shape, row.N, row.M, row.status) == (ref.kind, ref.shape, ref.N, ref.M, ref.status), \
                (label, name)
            if ref.status == "ok":
                fitted += 1
                # the same float32 matrices, same orientation: at most BLAS's sum order differs (abs: log_norm ~0)
                assert row.alpha == pytest.approx(ref.alpha, rel=1e-9, abs=0), (label, name)
                assert row.log_norm == pytest.approx(ref.log_norm, rel=1e-9, abs=1e-12), (label, name)
        assert fitted > 20, label
        # and the same matrices in the same orientation (not only the same spectra)
        for r in src:
            np.testing.assert_array_equal(r.load(), weights[names[r.name] + ".weight"])


# ------------------------------------------------------------------------- stacked (scanned) layers


def _scanned_block(L: int, seed: int = 0) -> dict:
    """The params nn.scan(Block, variable_axes={'params': 0}, length=L) writes (as printed by flax 0.10 for a
    block of attention, LayerNorm and two Dense layers): every parameter gets a leading layer axis."""
    f = lambda *s: _f32(*s, seed=seed + len(s) + sum(s))  # noqa: E731
    attn = {p: {"kernel": f(L, 64, 4, 16), "bias": f(L, 4, 16)} for p in ("query", "key", "value")}
    attn["out"] = {"kernel": f(L, 4, 16, 64), "bias": f(L, 64)}
    return {"Dense_0": {"kernel": f(L, 256, 64), "bias": f(L, 64)},
            "Dense_1": {"kernel": f(L, 64, 256), "bias": f(L, 256)},
            "LayerNorm_0": {"scale": f(L, 256), "bias": f(L, 256)},
            "MultiHeadDotProductAttention_0": attn}


def test_scanned_layers_give_one_row_per_layer_in_layer_order(tmp_path):
    """nn.scan's stacked parameters [L, …] are L layers: rows Dense_0[k] … each the layer's own matrix,
    layer by layer; the stacked LayerNorm scale and the stacked DenseGeneral biases are no matrices. Before,
    the Dense kernels [3, 256, 64] were one 16384×3 'DenseGeneral' row and the scale [3, 256] a dense row."""
    block = _scanned_block(3)
    tree = {"params": {"embed": {"embedding": _f32(50, 64)}, "ScanBlock_0": block,
                       "head": {"kernel": _f32(64, 10), "bias": _f32(10)}}}
    src = FlaxMsgpackFile(write(tmp_path / "scan.msgpack", tree))
    names = [r.name for r in src]
    per_layer = ["Dense_0", "Dense_1", "MultiHeadDotProductAttention_0.query", "MultiHeadDotProductAttention_0.key",
                 "MultiHeadDotProductAttention_0.value", "MultiHeadDotProductAttention_0.out"]
    assert names == ["embed"] + [f"ScanBlock_0.{n}[{k}]" for k in range(3) for n in per_layer] + ["head"]
    refs = _refs(src)
    for k in range(3):
        np.testing.assert_array_equal(refs[f"ScanBlock_0.Dense_0[{k}]"].load(), block["Dense_0"]["kernel"][k].T)
        q = block["MultiHeadDotProductAttention_0"]["query"]["kernel"][k]
        np.testing.assert_array_equal(refs[f"ScanBlock_0.MultiHeadDotProductAttention_0.query[{k}]"].load(),
                                      q.reshape(64, 64).T)
        o = block["MultiHeadDotProductAttention_0"]["out"]["kernel"][k]
        np.testing.assert_array_equal(refs[f"ScanBlock_0.MultiHeadDotProductAttention_0.out[{k}]"].load(),
                                      o.reshape(64, 64).T)
    assert all(refs[n].kind == "dense" and refs[n].shape in ((64, 256), (256, 64), (64, 64)) for n in names[1:-1])
    assert not src.skipped or all("bias" in p for p, _ in src.skipped)  # the DenseGeneral biases [h, hd]
    # counted as one layer's scale is, a 1-D norm scale (its stacked [3, 256] is no matrix)
    assert dict(src.not_weights)["ScanBlock_0.LayerNorm_0.scale"] == "1-D (norm scales, scalars)"


def test_remat_scan_and_bias_free_scanned_layers(tmp_path):
    """nn.remat_scan(lengths=(2, 3)) stacks two axes: 6 layers, numbered in the order they run; a scanned
    block's bias-free kernels (LLaMA-style) are stacked too, as its norm scale shows."""
    kernel = _f32(2, 3, 128, 64)
    tree = {"Remat_0": {"Dense_0": {"kernel": kernel, "bias": _f32(2, 3, 64)}},
            "Llama": {"attn": {"q_proj": {"kernel": _f32(4, 64, 8, 8)}, "o_proj": {"kernel": _f32(4, 8, 8, 64)}},
                      "mlp": {"kernel": _f32(4, 64, 96)}, "norm": {"scale": _f32(4, 64)}}}
    refs = _refs(FlaxMsgpackFile(write(tmp_path / "remat.msgpack", tree)))
    assert [n for n in refs if n.startswith("Remat_0")] == [f"Remat_0.Dense_0[{k}]" for k in range(6)]
    np.testing.assert_array_equal(refs["Remat_0.Dense_0[4]"].load(), kernel[1, 1].T)
    assert {n: r.shape for n, r in refs.items() if n.startswith("Llama") and n.endswith("[3]")} == {
        "Llama.attn.q_proj[3]": (64, 64), "Llama.attn.o_proj[3]": (64, 64), "Llama.mlp[3]": (96, 64)}


def test_an_unstacked_dense_general_is_not_taken_for_a_stack(tmp_path):
    """A DenseGeneral query [dim, heads, head_dim] with its bias [heads, head_dim] is one layer, not a stack."""
    tree = {"attn": {"query": {"kernel": _f32(64, 4, 16), "bias": _f32(4, 16)}}, "ln": {"scale": _f32(64)}}
    src = FlaxMsgpackFile(write(tmp_path / "one.msgpack", tree))
    assert {r.name: r.shape for r in src} == {"attn.query": (64, 64)}
    # the 2-D bias is listed as passed over, saying why; the 1-D scale is counted as a state dict's would be
    assert [(p, why.split(" (")[0]) for p, why in src.skipped] == [("attn.query.bias", "a 2-D bias")]
    assert [p for p, _ in src.not_weights] == ["ln.scale"]


def test_a_nested_train_state_boxed_params_and_optimizer_state(tmp_path):
    """{"state": TrainState}: its params, not the optax moments beside them (mu, nu shaped like the weights);
    {"model": …, "opt_state": …}: the optimizer state is left out; nn.with_partitioning's boxes
    {"value": kernel, "names": …} are read as the kernel they hold."""
    W = _f32(32, 16)
    params = {"Dense_0": {"kernel": W}}
    moments = {"0": {"mu": params, "nu": params}}
    for tree, skipped in (({"state": {"params": params, "opt_state": moments, "step": np.int32(3)}},
                           {"state.opt_state", "state.step"}),
                          ({"model": params, "opt_state": moments}, {"opt_state"})):
        src = FlaxMsgpackFile(write(tmp_path / "s.msgpack", tree))
        assert [r.name for r in src] == ["model.Dense_0" if "model" in tree else "Dense_0"]
        assert {p for p, _ in src.skipped} == skipped
    boxed = {"params": {"Dense_0": {"kernel": {"value": W, "names": {"0": "embed", "1": "mlp"}}},
                        # (nn.LogicallyPartitioned's box also holds its mesh and rules)
                        "Conv_0": {"kernel": {"value": _f32(3, 3, 4, 8), "names": {"0": None}, "mesh": None,
                                              "rules": None}}}}
    refs = _refs(FlaxMsgpackFile(write(tmp_path / "boxed.msgpack", boxed)))
    assert {n: (r.kind, r.shape) for n, r in refs.items()} == {"Dense_0": ("dense", (16, 32)),
                                                                "Conv_0": ("conv2d", (8, 4, 3, 3))}
    np.testing.assert_array_equal(refs["Dense_0"].load(), W.T)


def test_sub_byte_dtypes_are_read_not_refused(tmp_path):
    """flax writes jnp.int4 (one value a byte, ml_dtypes' int4): the file was refused as corrupt ("'int4' is
    not a numpy dtype"); now the int4 kernel is a row saying why it is not analysed, and the float one analysed."""
    import ml_dtypes

    q = np.arange(-8, 8, dtype=np.int8).repeat(8).reshape(16, 8).astype(ml_dtypes.int4)
    tree = {"params": {"q": {"kernel": q}, "d": {"kernel": _f32(40, 30)}}}
    r = htsr.analyze(FlaxMsgpackFile(write(tmp_path / "int4.msgpack", tree)), min_evals=2)
    assert [(x.name, x.status[:27]) for x in r.layers] == [("q", "skipped: stored as int4: a "), ("d", "ok")]
    assert r.num_tensors == 2


def test_mutated_checkpoints_raise_only_htsr_errors(tmp_path, small_file):
    """htsr's own msgpack decoder (not msgpack's): 500 seeded mutations of 1 to 4 bytes anywhere in a
    checkpoint either open and load, or fail with htsr's own error — never another exception."""
    import random

    from htsr.errors import HtsrError

    raw = small_file.read_bytes()
    rnd = random.Random(0)
    path = tmp_path / "m.msgpack"
    for _ in range(500):
        b = bytearray(raw)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        path.write_bytes(bytes(b))
        try:
            for ref in FlaxMsgpackFile(path):  # opened, listed, every tensor loaded (the analysis is the same)
                ref.load()
        except HtsrError:
            pass


def test_a_scan_along_axis_1_gives_its_layers(tmp_path):
    """t5x's and MaxText's param_scan_axis=1: a norm scale [dim, layers], kernels [in, layers, out] and an
    attention output [heads, layers, head_dim, dim]. Each kernel was one dense row mixing every layer
    (decoder.layers.mlp.wi_0 192 × 32 for 3 layers); now one row per layer, its own matrix."""
    L, D, H, hd, M = 3, 32, 4, 8, 64
    wi, out = _f32(D, L, M, seed=1), _f32(H, L, hd, D, seed=2)
    tree = {"params": {"decoder": {"layers": {"pre_self_attention_norm": {"scale": _f32(D, L, seed=3)},
                                              "mlp": {"wi_0": {"kernel": wi}, "wo": {"kernel": _f32(M, L, D, seed=4)}},
                                              "self_attention": {"query": {"kernel": _f32(D, L, H, hd, seed=5)},
                                                                 "out": {"kernel": out}}},
                                   "decoder_norm": {"scale": _f32(D, seed=6)}}}}
    # (and chunked, as flax writes arrays over 1 GiB: a layer's entries are not contiguous along axis 1)
    for chunk in ({}, {"max_chunk_size": 1024}):
        refs = _refs(FlaxMsgpackFile(write(tmp_path / "t5x.msgpack", tree, **chunk)))
        per_layer = ["mlp.wi_0", "mlp.wo", "self_attention.query", "self_attention.out"]
        assert list(refs) == [f"decoder.layers.{n}[{k}]" for k in range(L) for n in per_layer]
        np.testing.assert_array_equal(refs["decoder.layers.mlp.wi_0[1]"].load(), wi[:, 1, :].T)
        np.testing.assert_array_equal(refs["decoder.layers.self_attention.out[2]"].load(),
                                      out[:, 2].reshape(H * hd, D).T)


def test_a_per_head_norm_beside_a_square_kernel_is_no_scan_of_the_tree():
    """A per-head norm scale [heads, head_dim] reads like t5x's axis-1 norm [dim, layers]; beside a [dim, dim]
    kernel with dim = head_dim every leaf shared that size at position 1, and the whole tree was taken as
    scanned along axis 1: the kernel became 64 vectors and the run stopped with 'no analysable layer'. A scan
    leaves each layer's kernels matrices: this kernel is its own row, its values the tensor's (transposed)."""
    rng = np.random.default_rng(0)
    K = rng.standard_normal((64, 64)).astype(np.float32)
    tree = {"layers": {"0": {"attn": {"q": {"kernel": K}, "q_norm": {"scale": rng.random((8, 64))}}}}}
    src = htsr.io.open_source(tree)
    (ref,) = [r for r in src if r.name == "layers.0.attn.q"]
    assert ref.shape == (64, 64)
    np.testing.assert_array_equal(ref.load(), K.T)  # exact: the stored values, [out, in]
    assert [(l.name, l.kind) for l in htsr.analyze(tree, min_evals=2).layers] == [("layers.0.attn.q", "dense")]


def test_a_scan_that_fits_both_axes_is_read_along_axis_0(tmp_path):
    """A scanned block of 3 layers of a square Dense: its LayerNorm scale and bias [3, 8] and Dense kernel
    [3, 8, 8], bias [3, 8] fit a scan of 3 layers along axis 0 (flax's nn.scan default) and one of 8 along
    axis 1 (t5x's) alike. Axis 0 wins the tie: 3 rows Dense_0[k], each kernel[k].T exactly (a byte copy).
    Preferring axis 1 had read 8 rows kernel[:, k, :].T, each mixing every layer."""
    L, D = 3, 8
    kernel = _f32(L, D, D, seed=7)
    block = {"LayerNorm_0": {"scale": np.ones((L, D), np.float32), "bias": np.zeros((L, D), np.float32)},
             "Dense_0": {"kernel": kernel, "bias": np.zeros((L, D), np.float32)}}  # the norm listed first
    refs = _refs(FlaxMsgpackFile(write(tmp_path / "square.msgpack", {"params": {"ScanBlock_0": block}})))
    assert list(refs) == [f"ScanBlock_0.Dense_0[{k}]" for k in range(L)]
    for k in range(L):
        assert refs[f"ScanBlock_0.Dense_0[{k}]"].shape == (D, D)
        np.testing.assert_array_equal(refs[f"ScanBlock_0.Dense_0[{k}]"].load(), kernel[k].T)


def test_a_single_modules_nnx_state_abstract_arrays_and_t5s_relative_attention_bias():
    """An nnx State of one module ({'kernel', 'bias'}, not nested) was read as a plain mapping: a row 'kernel'
    not transposed. Abstract arrays (jax.eval_shape's ShapeDtypeStruct) failed each row with a TypeError; they
    are refused in one line. T5's relative_attention_bias is an embedding from every format (an nn.Embedding;
    its Flax copy's 'embedding' leaf said so, the PyTorch name gave dense)."""
    from collections import UserDict

    from htsr.errors import SourceError
    from htsr.io import open_source
    from htsr.matrices import classify

    class State(UserDict):  # flax.nnx's State, by its module
        pass

    State.__module__ = "flax.nnx.statelib"
    W = _f32(30, 20)
    src = open_source(State({"kernel": W, "bias": _f32(20)}))
    assert isinstance(src, FlaxTree)
    (ref,) = src
    np.testing.assert_array_equal(ref.load(), W.T)

    class ShapeDtypeStruct:
        __module__ = "jax._src.api"

        def __init__(self, shape, dtype):
            self.shape, self.dtype = shape, np.dtype(dtype)

    with pytest.raises(SourceError, match="'Dense_0.kernel' is an abstract array \\(ShapeDtypeStruct"):
        FlaxTree({"params": {"Dense_0": {"kernel": ShapeDtypeStruct((30, 20), "float32")}}})
    assert classify("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", (32, 8))[0] == "embedding"


def test_a_payload_whose_shape_its_bytes_do_not_hold_keeps_no_shape(tmp_path):
    """A 116-byte file whose scanned block declared 10⁶ layers over 16 bytes listed 10⁶ tensors (808 MB); a
    kernel of 65536 × 65536 × 3 × 8 over 4 bytes ran out of memory. The array is listed, saying why."""
    def ext(shape):
        return msgpack.ExtType(1, msgpack.packb([list(shape), "float32", b"\0" * 16], use_bin_type=True))

    path = tmp_path / "lying.msgpack"
    path.write_bytes(msgpack.packb({"params": {"ScanBlock": {"Dense_0": {"kernel": ext((10**6, 8, 12))}},
                                               "Conv_0": {"kernel": ext((65536, 65536, 3, 8))},
                                               "Dense_1": {"kernel": msgpack_ext_pack(np.ones((8, 12), np.float32))}}},
                                   use_bin_type=True))
    src = open_source(path)
    assert len(list(src)) < 10
    r = htsr.analyze(path, min_evals=2)
    assert [x.name for x in r.layers] == ["Dense_1"]
    assert sum(n.count for n in r.not_analysed if "bytes of data for shape" in n.reason) == 2


def test_transformers_sharded_flax_weights_are_one_tree(tmp_path):
    """transformers' FlaxPreTrainedModel.save_pretrained(max_shard_size=…): the tree flattened with '/', cut
    into shards, each unflattened and written with to_bytes, and flax_model.msgpack.index.json mapping each
    flat name to its shard. The folder is the whole model (a module's kernel and bias in two shards is one
    module: its DenseGeneral test reads the bias); one shard given alone says so."""
    rng = _rng(4)
    q = rng.standard_normal((32, 4, 8)).astype(np.float32)  # a DenseGeneral: [in, heads, head_dim]
    flat = {"model/embed/embedding": _f32(50, 32, seed=1), "model/q/kernel": q,
            "model/q/bias": np.zeros((4, 8), np.float32), "model/mlp/kernel": _f32(32, 64, seed=2),
            "lm_head/kernel": _f32(32, 50, seed=3)}
    shards = [["model/embed/embedding", "model/q/kernel"], ["model/q/bias", "model/mlp/kernel"], ["lm_head/kernel"]]
    weight_map = {}
    for i, names in enumerate(shards, 1):
        tree: dict = {}
        for n in names:
            *parents, leaf = n.split("/")
            node = tree
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = flat[n]
        fn = f"flax_model-{i:05d}-of-{len(shards):05d}.msgpack"
        write(tmp_path / fn, tree)
        weight_map.update({n: fn for n in names})
    (tmp_path / "flax_model.msgpack.index.json").write_text(json.dumps({"weight_map": weight_map}))
    r = htsr.analyze(tmp_path, min_evals=2)
    assert r.source == str(tmp_path)
    rows = {x.name: x for x in r.layers}
    assert [(n, x.kind, x.shape) for n, x in rows.items()] == [
        ("model.embed", "embedding", "50x32"), ("model.q", "dense", "32x32"), ("model.mlp", "dense", "64x32"),
        ("lm_head", "dense", "50x32")]
    # the DenseGeneral's [in, 4, 8] kernel read as 32 x 32 (out x in), its bias in the next shard telling so
    got = open_source(tmp_path)
    np.testing.assert_array_equal(next(t for t in got if t.name == "model.q").load(), q.reshape(32, 32).T)
    assert htsr.analyze(got, min_evals=2).path == str(tmp_path)  # (the folder opened, as compare labels it)
    one = htsr.analyze(tmp_path / "flax_model-00002-of-00003.msgpack", min_evals=2)
    assert one.source.endswith("flax_model-00002-of-00003.msgpack (shard 2 of 3 alone: give its folder for the whole "
                               "model)")
    # a parameter in two shards is read from the one the index names (as safetensors shards are); one the
    # index lists that no shard holds is listed, saying so
    write(tmp_path / "flax_model-00003-of-00003.msgpack", {"lm_head": {"kernel": flat["lm_head/kernel"]},
                                                           "model": {"mlp": {"kernel": 2 * flat["model/mlp/kernel"]}}})
    got = {t.name: t for t in open_source(tmp_path)}
    np.testing.assert_array_equal(got["model.mlp"].load(), flat["model/mlp/kernel"].T)
    weight_map["model/gone/kernel"] = "flax_model-00001-of-00003.msgpack"
    (tmp_path / "flax_model.msgpack.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert ("model.gone.kernel", "the index puts it in flax_model-00001-of-00003.msgpack, which does not hold it") in (
        open_source(tmp_path).skipped)
    # without the index, the shards are one model too (the first named for it)
    (tmp_path / "flax_model.msgpack.index.json").unlink()
    assert [x.name for x in htsr.analyze(tmp_path, min_evals=2).layers] == [
        "model.embed", "model.q", "model.mlp", "lm_head"]
    assert open_source(tmp_path).description == str(tmp_path)  # the folder: no one shard is the model


def test_nnx_lora_is_one_update_row_and_flat_trees_of_norm_weights_or_tf_names_are_flax(tmp_path):
    """flax nnx's LoRALinear: its lora_a [in, r] and lora_b [r, out] are one 'lora' row of ΔW = (a·b)ᵀ (nnx adds
    x @ a @ b: scale 1), not two dense rows. A flattened HF Flax Llama (1-D RMSNorm 'weight' leaves beside its
    kernels) and TF-Keras 2's 'dense/kernel:0' names are Flax trees: kernels [in, out], channels last."""
    rng = _rng(6)
    a, b = rng.standard_normal((64, 4)).astype(np.float32), rng.standard_normal((4, 48)).astype(np.float32)
    tree = {"q": {"kernel": _f32(64, 48, seed=7), "bias": np.zeros(48, np.float32), "lora": {"lora_a": a, "lora_b": b}}}
    for src in (write(tmp_path / "lora.msgpack", tree), {"params": tree}):
        rows = {t.name: t for t in open_source(src)}
        # (named after the layer it adapts, as a PEFT adapter's update is: it had been q.lora#delta, beside q)
        assert set(rows) == {"q", "q#delta"} and rows["q#delta"].kind == "lora"
        assert rows["q#delta"].shape == (48, 64)
        f = rows["q#delta"].load()
        # the LowRank's product is (a·b)ᵀ exactly (float32 factors, float32 product: 1e-6)
        np.testing.assert_allclose(f.B @ f.A * f.scale, (a @ b).T, rtol=1e-6, atol=1e-6)
    # a scanned block's pair (nnx.scan / vmap: a leading layer axis): listed, not dense rows of its factors
    scanned = {"layers": {"q": {"kernel": rng.standard_normal((3, 64, 48)).astype(np.float32),
                                "bias": np.zeros((3, 48), np.float32),
                                "lora": {"lora_a": rng.standard_normal((3, 64, 4)).astype(np.float32),
                                         "lora_b": rng.standard_normal((3, 4, 48)).astype(np.float32)}},
                          "norm": {"scale": np.ones((3, 64), np.float32)}}}
    src = open_source({"params": scanned})
    assert [t.name for t in src] == ["layers.q[0]", "layers.q[1]", "layers.q[2]"]
    assert {n for n, _ in src.skipped} == {"layers.q.lora.lora_a", "layers.q.lora.lora_b"}
    flat = {"model/embed_tokens/embedding": _f32(40, 16, seed=8), "model/layers/0/mlp/up_proj/kernel": _f32(16, 32),
            "model/layers/0/input_layernorm/weight": np.ones(16, np.float32), "model/norm/weight": np.ones(16, np.float32)}
    np.savez(tmp_path / "llama.npz", **flat)
    for src in (tmp_path / "llama.npz", flat):
        rows = {x.name: (x.kind, x.shape) for x in htsr.analyze(src, min_evals=2).layers}
        assert rows == {"model.embed_tokens": ("embedding", "40x16"), "model.layers.0.mlp.up_proj": ("dense", "32x16")}
    # (a 2-D 'weight' beside them is a state dict's, read as one)
    torchish = {**flat, "model/proj/weight": _f32(16, 16)}
    assert "model/embed_tokens/embedding" in {x.name for x in htsr.analyze(torchish, min_evals=2).layers}
    tf = {"conv2d/kernel:0": _f32(3, 3, 16, 32), "conv2d/bias:0": np.zeros(32, np.float32), "dense/kernel:0": _f32(64, 10)}
    np.savez(tmp_path / "tf.npz", **tf)
    rows = {x.name: (x.kind, x.shape) for x in htsr.analyze(tmp_path / "tf.npz", min_evals=2).layers}
    assert rows == {"conv2d": ("conv2d", "32x16x3x3"), "dense": ("dense", "10x64")}


def test_tf_keras_recurrent_cells_in_a_flat_tree_are_rnn_rows_as_the_keras_reader_gives(tmp_path):
    """TF-Keras 2 variables saved by name (``lstm/lstm_cell/kernel:0`` [in, 4u], ``recurrent_kernel:0`` [u, 4u]):
    'rnn' rows [4u, in] and [4u, u] named as the Keras reader names them; the recurrent kernel had been an
    untransposed row of no kind, the input kernel a 'dense' one. A ConvLSTM2D's two kernels are convolutions."""
    k, r, ck, cr = _f32(24, 320, seed=1), _f32(80, 320, seed=2), _f32(3, 3, 4, 32, seed=3), _f32(3, 3, 8, 32, seed=4)
    tf = {"lstm/lstm_cell/kernel:0": k, "lstm/lstm_cell/recurrent_kernel:0": r, "lstm/lstm_cell/bias:0": _f32(320),
          "conv_lstm2d/conv_lstm_cell/kernel:0": ck, "conv_lstm2d/conv_lstm_cell/recurrent_kernel:0": cr,
          "dense/kernel:0": _f32(80, 10)}
    np.savez(tmp_path / "tf.npz", **tf)
    src = {t.name: t for t in open_source(tmp_path / "tf.npz")}
    assert {n: (t.kind, t.shape) for n, t in src.items()} == {
        "lstm.kernel": ("rnn", (320, 24)), "lstm.recurrent_kernel": ("rnn", (320, 80)),
        "conv_lstm2d.kernel": ("conv2d", (32, 4, 3, 3)), "conv_lstm2d.recurrent_kernel": ("conv2d", (32, 8, 3, 3)),
        "dense": ("dense", (10, 80))}
    np.testing.assert_array_equal(src["lstm.recurrent_kernel"].load(), r.T)  # a copy: exact
    # a Bidirectional's forward_lstm / backward_lstm are its forward_layer / backward_layer, as Keras names them
    bi = {f"bidirectional/{d}_lstm/lstm_cell/{k}:0": _f32(*shp, seed=i) for i, (d, (k, shp)) in enumerate(
        (d, ks) for d in ("forward", "backward") for ks in (("kernel", (24, 64)), ("recurrent_kernel", (16, 64))))}
    np.savez(tmp_path / "bi.npz", **bi)
    assert sorted(t.name for t in open_source(tmp_path / "bi.npz")) == [
        "bidirectional.backward_layer.kernel", "bidirectional.backward_layer.recurrent_kernel",
        "bidirectional.forward_layer.kernel", "bidirectional.forward_layer.recurrent_kernel"]
    np.testing.assert_array_equal(src["conv_lstm2d.recurrent_kernel"].load(), cr.transpose(3, 2, 0, 1))


def test_a_flax_training_checkpoint_folder_is_read(tmp_path):
    """flax.training.checkpoints.save_checkpoint writes checkpoint_<step>, no suffix: its folder is that file."""
    write(tmp_path / "checkpoint_100", {"params": {"Dense_0": {"kernel": _f32(24, 16)}}, "step": np.array(100)})
    r = htsr.analyze(tmp_path, min_evals=2)
    assert [(x.name, x.shape) for x in r.layers] == [("Dense_0", "16x24")]


def test_a_sharded_flax_models_errors_name_their_own_shard(tmp_path):
    """A shard cut short after it was opened fails its own arrays' rows naming that shard (they named the
    last); a Git LFS pointer in place of a shard says to pull it."""
    for i, name in enumerate(("a", "b"), 1):
        write(tmp_path / f"flax_model-0000{i}-of-00002.msgpack", {"model": {name: {"kernel": _f32(32, 24, seed=i)}}})
    src = open_source(tmp_path)
    first = tmp_path / "flax_model-00001-of-00002.msgpack"
    first.write_bytes(first.read_bytes()[:100])
    rows = {t.name: t for t in src}
    with pytest.raises(SourceError) as ei:
        rows["model.a"].load()
    _one_line_source_error(ei, f"{first}: array 'model.a.kernel' cannot be read")
    first.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(SourceError) as ei:
        open_source(tmp_path)
    _one_line_source_error(ei, f"{first}: a Git LFS pointer")


# ------------------------------------------------------------------ mutation round 17 (2026-12-06)
def test_a_first_key_of_16_to_31_bytes_is_sniffed_as_a_checkpoint(tmp_path):
    tree = {"TransformerBlock_0": {"Dense_0": {"kernel": _f32(30, 20)}}}  # 18-byte key: fixstr 0xB2
    assert is_msgpack_checkpoint(msgpack.packb(tree, default=msgpack_ext_pack)[:32])
    path = write(tmp_path / "checkpoint_100", tree)  # flax.training.checkpoints: no suffix
    assert [(r.name, r.shape) for r in open_source(path)] == [("TransformerBlock_0.Dense_0", (20, 30))]


def test_chunks_of_two_dtypes_or_a_negative_size_are_inconsistent(tmp_path):
    mixed = {"__msgpack_chunked_array__": True, "shape": {"0": 4, "1": 6},
             "chunks": {"0": np.arange(12, dtype=np.float32), "1": np.arange(12, 24, dtype=np.float64)}}
    negative = {"__msgpack_chunked_array__": True, "shape": {"0": -4, "1": -6},
                "chunks": {"0": np.arange(24, dtype=np.float32)}}
    for i, chunked in enumerate((mixed, negative)):
        path = write(tmp_path / f"c{i}.msgpack", {"params": {"Dense_0": {"kernel": chunked},
                                                             "Dense_1": {"kernel": _f32(30, 20)}}})
        src = FlaxMsgpackFile(path)
        assert [r.name for r in src] == ["Dense_1"], i
        assert "chunked array 'Dense_0.kernel' is inconsistent" in dict(src.skipped)["Dense_0.kernel"], i


def test_numpy_scalars_are_neither_weights_nor_counted_as_1d_tensors(tmp_path):
    path = write(tmp_path / "s.msgpack", {"Dense_0": {"kernel": _f32(30, 20), "bias": _f32(20)},
                                          "step": np.int64(7), "lr": np.float32(0.1),
                                          "rope": {"inv_freq": _f32(8)}})  # a 1-D leaf of another name
    src = FlaxMsgpackFile(path)
    assert [r.name for r in src] == ["Dense_0"]
    assert [p for p, _ in src.not_weights] == ["Dense_0.bias", "rope.inv_freq"] and src.skipped == []


@pytest.mark.parametrize("extra", ["map16", "array16", "str16"])
def test_maps_lists_and_strings_of_16_bit_lengths_are_decoded(tmp_path, extra):
    # 16 layers: a map of 16 entries is msgpack's map16 (0xDE) — every model of 16 or more layers
    n = 16 if extra == "map16" else 3
    tree = {"params": {"encoder": {"layer": {str(i): {"dense": {"kernel": _f32(30, 20, seed=i)}} for i in range(n)}}}}
    if extra == "array16":
        tree["meta"] = list(range(16))  # array16 (0xDC)
    if extra == "str16":
        tree["config"] = "x" * 300  # str16 (0xDA)
    refs = _refs(FlaxMsgpackFile(write(tmp_path / "m.msgpack", tree)))
    assert list(refs) == [f"encoder.layer.{i}.dense" for i in range(n)]
    np.testing.assert_array_equal(refs[f"encoder.layer.{n - 1}.dense"].load(), _f32(30, 20, seed=n - 1).T)


def test_a_bias_free_3d_kernel_whose_name_contains_conv_is_a_conv1d():
    assert flax_tensor(("block", "depthwise_conv", "kernel"), (7, 1, 64))[:3] == ("block.depthwise_conv", "conv1d",
                                                                                  (64, 1, 7))
    assert flax_tensor(("block", "dwconv", "kernel"), (7, 1, 64))[:3] == ("block.dwconv", "conv1d", (64, 1, 7))
    # the rule tensors.classify uses: conv in converter is no convolution (it had made this a conv1d of 16 taps),
    # so a bias-free 3-D kernel is an attention-style input projection [in, heads, head dim] → [64 out, 64 in]
    assert flax_tensor(("block", "converter", "kernel"), (64, 4, 16))[:3] == ("block.converter", "dense", (64, 64))


def test_a_nested_train_states_refs_keep_its_full_key_path(tmp_path):
    path = write(tmp_path / "s.msgpack", {"state": {"params": {"Dense_0": {"kernel": _f32(30, 20)}},
                                                    "step": np.int64(1)}})
    (ref,) = FlaxMsgpackFile(path)
    assert (ref.name, ref.path) == ("Dense_0", "state.params.Dense_0.kernel")


def test_an_unsigned_integer_kernel_is_a_skipped_row(tmp_path):
    K = _rng(0).integers(0, 255, (64, 48)).astype(np.uint8)
    rows = htsr.analyze(write(tmp_path / "q.msgpack", {"params": {"Dense_0": {"kernel": K}}})).layers
    assert [(r.name, r.status.split(":")[0]) for r in rows] == [("Dense_0", "skipped")]
    assert "stored as uint8" in rows[0].status


def test_a_parameter_in_two_shards_is_read_from_the_one_the_index_names(tmp_path):
    good = _f32(30, 20, seed=5)
    write(tmp_path / "flax_model-00001-of-00002.msgpack", {"Dense_0": {"kernel": np.zeros((30, 20), np.float32)},
                                                          "Dense_1": {"kernel": _f32(30, 20)}})
    write(tmp_path / "flax_model-00002-of-00002.msgpack", {"Dense_0": {"kernel": good}})
    (tmp_path / "flax_model.msgpack.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
        "Dense_1.kernel": "flax_model-00001-of-00002.msgpack",  # shard 1 read first
        "Dense_0.kernel": "flax_model-00002-of-00002.msgpack"}}))
    refs = _refs(open_source(tmp_path))
    np.testing.assert_array_equal(refs["Dense_0"].load(), good.T)


def test_an_object_dtype_payload_is_corrupt(tmp_path):
    payload = msgpack.packb(((3, 4), "O", b"\0" * 96), use_bin_type=True)
    src = FlaxMsgpackFile(_ext_checkpoint(tmp_path, payload))
    assert [r.name for r in src] == ["Dense_1"]
    assert "'O' is not a plain numeric dtype" in dict(src.skipped)["Dense_0.kernel"]


def test_a_single_modules_flax_state_is_a_flax_tree_and_its_lora_one_update():
    State = type("State", (dict,), {"__module__": "flax.nnx.statelib"})
    a, b = _f32(30, 4, seed=1), _f32(4, 20, seed=2)
    assert is_flax_tree(State(kernel=_f32(30, 20), bias=_f32(20)))
    assert is_flax_tree(State(lora_a=a, lora_b=b))
    rows = htsr.analyze(State(lora_a=a, lora_b=b)).layers
    assert [(r.name, r.kind, r.shape) for r in rows] == [("#delta", "lora", "20x30")]


def test_lora_factors_of_mismatched_ranks_form_no_update():
    src = FlaxTree({"lin": {"lora": {"lora_a": _f32(30, 4), "lora_b": _f32(5, 20)}}, "Dense_0": {"kernel": _f32(30, 20)}})
    assert [r.name for r in src] == ["Dense_0"]
    assert {p for p, _ in src.skipped} == {"lin.lora.lora_a", "lin.lora.lora_b"}
    # the reason is the shapes, not a scan (it said 'a scanned block' for every pair it did not form)
    assert all("lora_a [30, 4] and lora_b [5, 20] make no product" in why for _, why in src.skipped)


def test_every_loaded_array_is_aligned(tmp_path):
    # payloads start at arbitrary bytes: an unaligned float32 view is read by numpy's slow loops, rounded unlike BLAS
    # (embeddings are not transposed: their view is what load returns)
    tree = {"params": {f"Embed_{i}": {"embedding": _f32(30 + i, 20, seed=i)} for i in range(4)}}
    tree["params"]["x"] = {"kernel": np.zeros((3, 3), np.int8)}  # shifts the next payloads by an odd count
    tree["params"]["y"] = {"embedding": _f32(31, 20, seed=9)}
    refs = list(FlaxMsgpackFile(write(tmp_path / "a.msgpack", tree)))
    assert all(r.load().flags.aligned for r in refs if r.dtype == "float32")


# ------------------------------------------------------------------ mutation round 51 (2026-12-06)
def _map32(entries: dict[bytes, bytes]) -> bytes:
    """A msgpack map32 (0xDF) of packed keys and values: valid msgpack, though msgpack's packer writes it only
    for 65536 or more entries (other packers may always write it)."""
    return b"\xdf" + len(entries).to_bytes(4, "big") + b"".join(k + v for k, v in entries.items())


def test_every_msgpack_encoding_of_a_length_or_a_scalar_is_decoded(tmp_path):
    """htsr's own decoder walks every value of the file to find the arrays: each msgpack encoding must be
    stepped over by its exact length. Only fixmaps of < 15 entries, map16, ext and float64 were exercised;
    a wrong width for any other prefix (fixint 127, int/uint 8-64, float32, bin16, str8/16/32, array32,
    a fixmap or fixarray of 15, a map32 top level) went unseen. Here every one comes before the arrays, whose
    bytes and names must come out exact."""
    def pk(v) -> bytes:
        return msgpack.packb(v, default=msgpack_ext_pack, strict_types=True)

    def str32(text: str) -> bytes:
        return b"\xdb" + len(text).to_bytes(4, "big") + text.encode()

    K = _f32(30, 20, seed=3)
    meta = {pk("ints"): pk([127, -32, -100, 200, -30000, 40000, -2**31, 3_000_000_000, -2**40, 2**63]),  # -32: 0xE0
            pk("lr"): msgpack.packb(0.5, use_single_float=True),  # float32: 0xCA
            pk("blob"): pk(b"x" * 300),  # bin16
            pk("t" * 40): pk("s" * 300),  # a str8 key, a str16 value
            str32("note"): str32("y" * 5),
            pk("list32"): b"\xdd" + (3).to_bytes(4, "big") + pk(1) + pk(None) + pk(True),
            pk("fifteen"): pk(list(range(15)))}  # fixarray 0x9F
    fifteen = {f"Dense_{i}": {"kernel": _f32(6, 5, seed=i)} for i in range(14)} | {"last": {"kernel": K}}
    path = tmp_path / "enc.msgpack"
    path.write_bytes(_map32({**meta, pk("params"): pk(fifteen)}))  # params: a fixmap of 15 (0x8F)
    assert path.read_bytes()[0] == 0xDF and pk(fifteen)[0] == 0x8F
    src = FlaxMsgpackFile(path)
    assert [r.name for r in src] == [*fifteen][:14] + ["last"]
    assert {p for p, _ in src.skipped} == {"ints", "lr", "blob", "t" * 40, "note", "list32", "fifteen"}
    np.testing.assert_array_equal(_refs(src)["last"].load(), K.T)  # a byte copy, transposed: exact
    # a Hugging Face flax_model.msgpack of 15 top-level modules: a fixmap of 15 at the top is a checkpoint
    hf = write(tmp_path / "flax_model.msgpack", fifteen)
    assert hf.read_bytes()[0] == 0x8F
    assert [r.name for r in open_source(hf)] == list(fifteen)


def test_a_length_field_longer_than_the_file_is_called_corrupt(tmp_path):
    """A list claiming 60000 entries in a file of a few bytes more: the length field is named as the fault
    (the message said 'truncated' only once the few entries there were had been read)."""
    path = tmp_path / "lying.msgpack"
    path.write_bytes(b"\x81\xa6params\x81\xa1x" + b"\xdc" + (60000).to_bytes(2, "big") + b"\xc0" * 3)
    with pytest.raises(SourceError) as ei:
        FlaxMsgpackFile(path)
    _one_line_source_error(ei, str(path), "corrupt", "a length field claims 60000 entries", "re-download or re-save it")


def test_an_array_with_a_dimension_of_zero_is_an_empty_array_not_a_corrupt_one(tmp_path):
    """flax writes an array of size 0 (an Embed of no rows) as any other, with no data bytes: it is a row whose
    array is empty, read without a memory map of zero bytes (which numpy refuses), and the file is not corrupt."""
    src = FlaxMsgpackFile(write(tmp_path / "z.msgpack", {"params": {"Embed_0": {"embedding": np.zeros((0, 4), np.float32)},
                                                                    "Dense_0": {"kernel": _f32(30, 20)}}}))
    assert {r.name: r.shape for r in src} == {"Embed_0": (0, 4), "Dense_0": (20, 30)} and src.skipped == []
    a = _refs(src)["Embed_0"].load()
    assert a.shape == (0, 4) and a.dtype == np.float32


@pytest.mark.parametrize("layers", [(3,), (2, 3)])
def test_a_chunked_stacked_kernel_gives_each_layer_its_own_matrix(tmp_path, layers):
    """A scanned block's kernel over flax's chunk size is a chunked array: each layer's row is that layer
    (the chunks concatenated, then indexed), not the whole stack. With two layer axes (remat_scan(lengths=(2, 3)))
    a layer's place in the chunks is its flat index over both axes (only one axis had been tried)."""
    L = math.prod(layers)
    K = _f32(*layers, 40, 30, seed=21)  # 14400 bytes a 3 layers: chunked at 1024
    tree = {"params": {"ScanBlock_0": {"Dense_0": {"kernel": K, "bias": _f32(*layers, 30, seed=22)}}}}
    path = write(tmp_path / "scan.msgpack", tree, max_chunk_size=1024)
    assert msgpack.unpackb(path.read_bytes())["params"]["ScanBlock_0"]["Dense_0"]["kernel"][
        "__msgpack_chunked_array__"] is True
    refs = _refs(FlaxMsgpackFile(path))
    assert list(refs) == [f"ScanBlock_0.Dense_0[{k}]" for k in range(L)]
    for k, idx in enumerate(np.ndindex(*layers)):  # layer k: the k-th in C order of the layer axes
        np.testing.assert_array_equal(refs[f"ScanBlock_0.Dense_0[{k}]"].load(), K[idx].T)  # a byte copy: exact


def test_a_layer_of_a_chunked_stack_reads_its_own_chunks_not_the_whole_stack(tmp_path):
    """flax chunks arrays over 1 GiB: a large model's scanned kernels. Each layer's row had concatenated every chunk
    (the whole stack in memory, read once per layer) before taking its layer; a layer's entries are contiguous, so
    only the chunks holding them are read."""
    from conftest import traced_peak

    L = 8
    K = _f32(L, 200, 150, seed=23)  # 960 000 bytes in chunks of 16 KiB; a layer is 120 000 bytes
    tree = {"params": {"Scan_0": {"Dense_0": {"kernel": K, "bias": _f32(L, 150, seed=24)}}}}  # (a bias: a stack)
    path = write(tmp_path / "scan.msgpack", tree, max_chunk_size=16 << 10)
    refs = _refs(FlaxMsgpackFile(path))
    for k in (0, 3, L - 1):
        got, peak = traced_peak(refs[f"Scan_0.Dense_0[{k}]"].load)
        np.testing.assert_array_equal(got, K[k].T)
        # the layer's chunk parts joined, and its transposed copy: two layers' bytes, not the 960 000 of the stack
        assert peak < 3 * K[k].nbytes, (k, peak)
    # chunks larger than a layer (flax's are ~1 GiB): the layer's range of its chunk, not the chunk (read whole
    # for every layer when the reads replaced the maps)
    path = write(tmp_path / "big_chunks.msgpack", tree, max_chunk_size=400_000)
    refs = _refs(FlaxMsgpackFile(path))
    for k in (0, 3, L - 1):
        got, peak = traced_peak(refs[f"Scan_0.Dense_0[{k}]"].load)
        np.testing.assert_array_equal(got, K[k].T)
        assert peak < 3 * K[k].nbytes, (k, peak)  # (as above: not a 400 000-byte chunk and more)


_P = {"Dense_0": {"kernel": _f32(30, 20, seed=31)}}


@pytest.mark.parametrize("tree, names, skipped", [
    # two TrainStates side by side (a GAN's generator and discriminator): both are the model
    ({"generator": {"params": _P, "step": 1}, "discriminator": {"params": _P, "step": 1}},
     ["generator.params.Dense_0", "discriminator.params.Dense_0"], set()),
    # one TrainState beside other entries: its params; its other fields and the entries beside it are listed
    ({"state": {"params": _P, "step": 1}, "config": {"lr": 0.1}}, ["Dense_0"], {"state.step", "config"}),
    # modules named 'target' and 'state' without flax.optim's param_states are a model, not an Optimizer
    ({"target": _P, "state": _P}, ["target.Dense_0", "state.Dense_0"], set()),
    # optax.sgd(momentum=…)'s state holds a 'trace', no mu / nu: left out by its name opt_state
    ({"model": _P, "opt_state": [{"trace": _P}, {}]}, ["model.Dense_0"], {"opt_state"}),
    # optax.inject_hyperparams(adam) under a key htsr does not know: its moments two levels down
    ({"model": _P, "tx": {"hyperparams": {"learning_rate": 0.1}, "inner_state": {"0": {"count": 3, "mu": _P, "nu": _P}}}},
     ["model.Dense_0"], {"tx"}),
    # a VAE's 'mu' head is no optimizer state (Adam's has both mu and nu)
    ({"encoder": {"mu": _P, "logvar": _P}}, ["encoder.mu.Dense_0", "encoder.logvar.Dense_0"], set()),
    # a critic whose one module is named 'value' is no boxed parameter {"value": array, "names": …}
    ({"actor": _P, "critic": {"value": _P}}, ["actor.Dense_0", "critic.value.Dense_0"], set()),
    # a 'params' entry that is a number (a config's parameter count) is no TrainState's collection
    ({"model": _P, "config": {"params": 125_000_000, "lr": 0.1}}, ["model.Dense_0"], set()),
])
def test_which_entries_of_a_checkpoint_are_the_model(tmp_path, tree, names, skipped):
    """The choice of the parameters among a checkpoint's entries (module docstring, 'Which parameters'), for the
    layouts the tests had not shown: the rows, and the entries listed as left out."""
    src = FlaxMsgpackFile(write(tmp_path / "c.msgpack", tree))
    assert [r.name for r in src] == names
    assert {p for p, _ in src.skipped} == skipped
    np.testing.assert_array_equal(_refs(src)[names[0]].load(), _P["Dense_0"]["kernel"].T)


def test_a_module_with_a_kernel_and_an_embedding_and_a_biased_conv1d_read_from_a_tree():
    """Two rows of one module (a tied kernel and embedding) keep distinct names (the second its leaf key); a 3-D
    kernel beside a 1-D bias is a Conv1D through the tree reader too (the bias is looked up beside the kernel);
    a tuple of layers (as jax.tree_util trees hold) is walked like a list."""
    K, E, C = _f32(16, 12, seed=1), _f32(40, 16, seed=2), _f32(3, 8, 16, seed=3)
    tree = {"params": {"tied": {"kernel": K, "embedding": E}, "stem": {"kernel": C, "bias": _f32(16)},
                       "layers": ({"Dense_0": {"kernel": K}}, {"Dense_0": {"kernel": 2 * K}})}}
    refs = _refs(FlaxTree(tree))
    assert {n: (r.kind, r.shape) for n, r in refs.items()} == {
        "tied": ("dense", (12, 16)), "tied.embedding": ("embedding", (40, 16)), "stem": ("conv1d", (16, 8, 3)),
        "layers.0.Dense_0": ("dense", (12, 16)), "layers.1.Dense_0": ("dense", (12, 16))}
    np.testing.assert_array_equal(refs["tied.embedding"].load(), E)
    np.testing.assert_array_equal(refs["stem"].load(), C.transpose(2, 1, 0))  # [c_out, c_in, k]
    np.testing.assert_array_equal(refs["layers.1.Dense_0"].load(), 2 * K.T)


# ------------------------------------------------------------------ mutation round 69 (2026-12-07)
def test_a_long_array_header_is_read_whole(tmp_path):
    """A payload's header [shape, dtype name, bin length] is read from a window of its first bytes: a 4-D fp8
    kernel with ml_dtypes' longest name (float8_e4m3b11fnuz, 19 bytes) and a bin32 length has a 33-byte header.
    The row is the conv2d it is, its values the stored fp8 ones widened to float32 (exact)."""
    import ml_dtypes

    K = _f32(3, 3, 128, 256, seed=41).astype(ml_dtypes.float8_e4m3b11fnuz)
    assert len(ndarray_to_bytes(K)) - K.nbytes == 33  # the header before the data bytes
    src = FlaxMsgpackFile(write(tmp_path / "fp8.msgpack", {"params": {"Conv_0": {"kernel": K}}}))
    assert src.skipped == []
    (ref,) = src
    assert (ref.name, ref.kind, ref.shape, ref.dtype) == ("Conv_0", "conv2d", (256, 128, 3, 3), "float8_e4m3b11fnuz")
    np.testing.assert_array_equal(ref.load(), K.astype(np.float32).transpose(3, 2, 0, 1))


def test_chunks_are_joined_in_the_order_of_their_keys(tmp_path):
    """A chunked array's chunks are a map {"0": …, "1": …}: they are joined by their index keys, not in the order
    the map happens to list them (another writer may not list them in order)."""
    E = _f32(8, 4, seed=42)
    good = _chunk(E, 32)  # 4 chunks of 8 floats
    shuffled = {**good, "chunks": {k: good["chunks"][k] for k in ("2", "0", "3", "1")}}
    refs = _refs(FlaxMsgpackFile(write(tmp_path / "c.msgpack", {"params": {"Embed_0": {"embedding": shuffled}}})))
    np.testing.assert_array_equal(refs["Embed_0"].load(), E)


def test_a_tree_scanned_as_a_whole_gives_its_rows_layer_by_layer():
    """When the whole tree is one scanned block (every leaf [L, …]), its root is the tree itself: rows are written
    layer by layer, as the scan runs them (Dense_0[0], Dense_1[0], Dense_0[1] …), not module by module."""
    L = 3
    K0, K1 = _f32(L, 8, 6, seed=43), _f32(L, 6, 8, seed=44)
    tree = {"Dense_0": {"kernel": K0, "bias": _f32(L, 6)}, "Dense_1": {"kernel": K1, "bias": _f32(L, 8)}}
    refs = _refs(FlaxTree(tree))
    assert list(refs) == [f"Dense_{m}[{k}]" for k in range(L) for m in (0, 1)]
    np.testing.assert_array_equal(refs["Dense_1[2]"].load(), K1[2].T)


def test_a_scanned_embedding_gives_one_row_per_layer():
    """An embedding stacked by nn.scan / nn.vmap [L, vocab, dim] (three axes: one more than an embedding has) is
    L embedding rows, each its layer as stored."""
    E = _f32(3, 20, 8, seed=45)
    src = FlaxTree({"scan": {"embed": {"embedding": E}}})
    assert [(r.name, r.kind, r.shape) for r in src] == [(f"scan.embed[{k}]", "embedding", (20, 8)) for k in range(3)]
    assert src.skipped == []
    np.testing.assert_array_equal(_refs(src)["scan.embed[1]"].load(), E[1])


def test_a_shared_subtree_is_flax_evidence_once_not_a_tree_too_large():
    """is_flax_tree walks a shared map or list once: a list holding the one below twice, 25 levels deep (2^25 paths
    from 26 objects) is a Flax tree by its 'kernel' leaf, not a tree too large to be a model's."""
    node: object = {"kernel": _f32(4, 3)}
    for _ in range(25):
        node = [node, node]
    assert is_flax_tree({"blocks": node})


def test_an_in_memory_tree_too_deep_or_too_large_is_a_one_line_error(monkeypatch):
    """The walk of an in-memory tree is bounded in depth and in nodes visited: 300 nested maps, or (with the node
    budget lowered to 1000 for speed) 600 modules, are refused in one line, not a RecursionError or hours."""
    deep: dict = {"kernel": _f32(4, 3)}
    for i in range(300):
        deep = {f"m{i}": deep}
    with pytest.raises(SourceError) as ei:
        FlaxTree(deep)
    _one_line_source_error(ei, "<flax params>", "nested more than 256 levels deep")
    assert not is_flax_tree(deep)  # (not taken for one: the reader open_source gives it says what it is)
    monkeypatch.setattr(flax_io, "_MAX_VALUES", 1000)
    wide = {"params": {f"m{i}": {"kernel": _f32(4, 3)} for i in range(600)}}  # 1202 nodes
    with pytest.raises(SourceError) as ei:
        FlaxTree(wide)
    _one_line_source_error(ei, "<flax params>", "more than 1000 values")


def test_which_flat_names_make_a_flax_tree():
    """unflattened: a flat tree of embeddings (no kernel) is a Flax one; two TF variables of one name
    (dense/kernel:0 and dense/kernel:1, one leaf once ':N' is dropped) are not nested, one silently lost."""
    assert flax_io.unflattened(["embed/embedding", "norm/scale"]) == {
        "embed": {"embedding": "embed/embedding"}, "norm": {"scale": "norm/scale"}}
    assert flax_io.unflattened(["dense/kernel:0", "dense/kernel:1"]) is None
    assert flax_io.unflattened(["a/kernel", "a/kernel/b"]) is None  # a leaf and a parent


def test_a_layer_of_a_chunked_stack_scanned_along_an_inner_axis_reads_its_own_bytes(tmp_path, monkeypatch):
    """t5x scans its layers along axis 1 (a kernel [in, L, out]): each layer is one run of elements per input row.
    Chunked (flax's arrays over 1 GiB), every layer's row had read and joined all the chunks, the whole stack."""
    import htsr.io.base as base

    L = 8
    K = _f32(64, L, 96, seed=41)
    # (the scan axis is told by the block's leaves sharing it)
    tree = {"params": {"enc": {"layers": {"Dense_0": {"kernel": K}, "Dense_1": {"kernel": _f32(96, L, 64, seed=42)},
                                          "norm": {"scale": _f32(64, L, seed=43)}}}}}
    read: list[int] = []
    real = base._read_into
    monkeypatch.setattr(base, "_read_into", lambda f, p, o, view: (read.append(len(view)), real(f, p, o, view))[1])
    for chunk in (None, 4096, 100_000):
        path = write(tmp_path / f"inner{chunk}.msgpack", tree, **({"max_chunk_size": chunk} if chunk else {}))
        refs = _refs(FlaxMsgpackFile(path))
        for k in (0, 5):
            read.clear()
            np.testing.assert_array_equal(refs[f"enc.layers.Dense_0[{k}]"].load(), K[:, k, :].T)
            assert sum(read) == K[:, k, :].nbytes, (chunk, k, sum(read))  # (its 64 x 96 values, not 8 layers')
