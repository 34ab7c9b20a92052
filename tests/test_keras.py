"""Keras reader (no TensorFlow): Keras 3 ``.keras`` archives and legacy Keras 2 ``.h5`` files.

Every offline test writes its own files with h5py under ``tmp_path``, laid out as Keras writes them:

* Keras 3 (keras/src/saving/saving_lib.py, ``_save_model_to_fileobj`` / ``_save_state`` /
  ``_save_container_state`` / ``H5IOStore``): a zip (ZIP_STORED) of ``metadata.json``, ``config.json``
  (``serialize_keras_object(model)``) and ``model.weights.h5``, whose groups follow the object graph —
  ``layers/<snake_case(class) + counter>/vars/<i>``, sub-objects under their attribute names
  (``lstm/cell``, ``multi_head_attention/query_dense``, older Keras 3: ``_query_dense``), training
  state under ``optimizer/vars``; bfloat16 datasets carry ``attrs["dtype"] = "bfloat16"``.
* Legacy h5 (keras/src/legacy/saving/legacy_h5_format.py, ``save_model_to_hdf5`` /
  ``save_weights_to_hdf5_group``): root attributes ``model_config`` (JSON), ``keras_version``,
  ``backend``; ``model_weights`` with a ``layer_names`` attribute, one group per layer (sorted by
  name) with a ``weight_names`` attribute and each weight at ``<layer>/<weight name>``
  (``fc1/kernel:0``), ``top_level_model_weights``, and ``optimizer_weights``. ``save_weights`` writes
  the same layer groups at the root.

Live Keras 3 models (``KerasModel``) are built with real keras on the torch backend (set here, before
anything imports keras: keras fixes its backend on import) and compared with what ``model.save`` writes
and ``KerasFile`` reads back: the same names, kinds, shapes, values and analysis rows.

The network test writes the real all-MiniLM-L6-v2 weights as a ``.keras`` archive and as a legacy
``.h5`` (Dense kernels transposed to ``[in, out]``) and compares htsr's per-layer alpha with the
safetensors original.
"""

from __future__ import annotations

import io
import json
import math
import warnings
import os
import subprocess
import sys
import zipfile
from pathlib import Path

if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "torch"  # the only backend the dev venv has (no jax, no tensorflow)

import numpy as np
import pytest
from conftest import normal32 as _f32
from conftest import one_line_source_error as _one_line_source_error
from conftest import missing_extra_error

import htsr
from htsr.errors import LayerSkipped, SourceError
from htsr.io.base import FLOAT_DTYPES, TensorRef

h5py = pytest.importorskip("h5py")

# keras's torch backend converts with np.array(tensor): numpy 2 warns that torch's __array__ takes no copy=
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

from htsr.io.keras import (
    KerasFile,
    KerasModel,
    is_hdf5,
    is_keras_archive,
    is_keras_object,
    to_snake_case,
)

# --------------------------------------------------------------------------------------------- helpers


def _sv(a: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)




def layer(cls: str, name: str, **config) -> dict:
    """A layer entry as Keras 3's serialize_keras_object writes it (only the fields htsr reads matter)."""
    return {"module": "keras.layers", "class_name": cls, "config": {"name": name, "trainable": True, **config},
            "registered_name": None, "build_config": {"input_shape": None}}


def model(cls: str, name: str, layers: list[dict]) -> dict:
    return {"module": "keras", "class_name": cls, "config": {"name": name, "trainable": True, "layers": layers},
            "registered_name": cls, "build_config": {"input_shape": None}}


def write_weights_h5(target, tensors: dict[str, np.ndarray], groups: tuple[str, ...] = ()) -> None:
    """A Keras 3 weights file: ``{"layers/dense/vars/0": array}`` plus empty groups (H5IOStore.make)."""
    with h5py.File(target, "w") as f:
        for g in groups:
            f.require_group(g)
        for p, a in tensors.items():
            if a.dtype.name == "bfloat16":
                ds = f.create_dataset(p, data=a)
                ds.attrs["dtype"] = "bfloat16"
            else:
                f[p] = a


def write_keras(path: Path, config: dict, tensors: dict[str, np.ndarray], groups: tuple[str, ...] = (),
                compression: int = zipfile.ZIP_STORED) -> Path:
    """A ``.keras`` archive as ``_save_model_to_fileobj`` writes it."""
    buf = io.BytesIO()
    write_weights_h5(buf, tensors, groups)
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", buf.getvalue())
    return path


def _saved_every_way(net, folder: Path, stem: str) -> tuple[Path, Path, Path]:
    """A live Keras model saved each way Keras writes one: a .keras archive, a legacy .h5 and bare weights."""
    paths = (folder / f"{stem}.keras", folder / f"{stem}.h5", folder / f"{stem}.weights.h5")
    net.save(paths[0])
    net.save(paths[1])
    net.save_weights(paths[2])
    return paths


def write_legacy(path: Path, layers: dict[str, list[tuple[str, np.ndarray]]], config: dict | None,
                 weights_only: bool = False) -> Path:
    """A Keras 2 ``.h5`` (full model, or weights only) as legacy_h5_format writes it."""
    with h5py.File(path, "w") as f:
        if weights_only:
            root = f
        else:
            f.attrs["keras_version"] = b"2.15.0"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps(config).encode("utf8")
            root = f.create_group("model_weights")
        root.attrs["layer_names"] = [n.encode("utf8") for n in layers]
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.15.0"
        for lname in sorted(layers):
            g = root.create_group(lname)
            g.attrs["weight_names"] = [w.encode("utf8") for w, _ in layers[lname]]
            for w, a in layers[lname]:
                g.create_dataset(w, a.shape, dtype=a.dtype)[...] = a
        if not weights_only:
            g = root.create_group("top_level_model_weights")
            g.attrs["weight_names"] = np.array([], dtype="S1")
            opt = f.create_group("optimizer_weights")
            opt.attrs["weight_names"] = [b"iteration:0", b"Adam/fc1/kernel/m:0"]
            opt["iteration:0"] = np.int64(7)
            opt["Adam/fc1/kernel/m:0"] = np.ones((20, 12), np.float32)
    return path


# ----------------------------------------------------------------------------------- the toy model

# Keras-layout weights: kernels [in, out], conv kernels [k…, c_in, c_out]
W = {
    "tok_embed": _f32(50, 16, seed=1),
    "lstm_k": _f32(16, 32, seed=2), "lstm_r": _f32(8, 32, seed=3), "lstm_b": _f32(32, seed=4),
    "gru_k": _f32(8, 18, seed=5), "gru_r": _f32(6, 18, seed=6), "gru_b": _f32(2, 18, seed=7),  # reset_after
    "conv": _f32(3, 3, 3, 8, seed=8), "conv_b": _f32(8, seed=9),
    "conv1d": _f32(5, 4, 7, seed=10), "conv1d_b": _f32(7, seed=11),
    "fc1": _f32(20, 12, seed=12), "fc1_b": _f32(12, seed=13),
    "fc2": _f32(12, 10, seed=14),
    "q": _f32(16, 2, 4, seed=15), "q_b": _f32(2, 4, seed=16),
    "k": _f32(16, 2, 4, seed=17), "k_b": _f32(2, 4, seed=18),
    "v": _f32(16, 2, 4, seed=19), "v_b": _f32(2, 4, seed=20),
    "o": _f32(2, 4, 16, seed=21), "o_b": _f32(16, seed=22),
    "enc_dense": _f32(10, 6, seed=23), "enc_dense_b": _f32(6, seed=24),
    "bn": [np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)],
    "proj": _f32(16, 5, seed=25),
    "bproj": _f32(3, 16, 5, seed=26),
}

TOY_CONFIG = model("Functional", "toy", [
    layer("InputLayer", "tokens"),
    layer("Embedding", "tok_embed", input_dim=50, output_dim=16),
    layer("LSTM", "lstm_enc", units=8),
    layer("GRU", "gru", units=6, reset_after=True),
    layer("InputLayer", "image"),
    layer("Conv2D", "conv", filters=8, kernel_size=[3, 3]),
    layer("Conv1D", "conv1d_x", filters=7, kernel_size=[5]),
    layer("Dense", "fc1", units=12),
    layer("Dense", "fc2", units=10, use_bias=False),
    layer("MultiHeadAttention", "attn", num_heads=2, key_dim=4, output_shape=None),
    model("Sequential", "encoder", [
        layer("InputLayer", "encoder_input"),
        model("Sequential", "layer_0", [layer("Dense", "dense", units=6)]),
    ]),
    layer("BatchNormalization", "bn"),
    layer("EinsumDense", "proj", equation="abc,cd->abd", output_shape=[None, 5]),
    layer("EinsumDense", "bproj", equation="abc,bcd->abd", output_shape=[None, 5]),
])


def toy_h5_tensors(attention_prefix: str = "") -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """The toy model's Keras 3 weights-file entries (and the empty groups older Keras 3 versions write)."""
    mha = f"layers/multi_head_attention/{attention_prefix}"
    t = {
        "layers/embedding/vars/0": W["tok_embed"],
        "layers/lstm/cell/vars/0": W["lstm_k"], "layers/lstm/cell/vars/1": W["lstm_r"],
        "layers/lstm/cell/vars/2": W["lstm_b"],
        "layers/gru/cell/vars/0": W["gru_k"], "layers/gru/cell/vars/1": W["gru_r"],
        "layers/gru/cell/vars/2": W["gru_b"],
        "layers/conv2d/vars/0": W["conv"], "layers/conv2d/vars/1": W["conv_b"],
        "layers/conv1d/vars/0": W["conv1d"], "layers/conv1d/vars/1": W["conv1d_b"],
        "layers/dense/vars/0": W["fc1"], "layers/dense/vars/1": W["fc1_b"],
        "layers/dense_1/vars/0": W["fc2"],
        f"{mha}query_dense/vars/0": W["q"], f"{mha}query_dense/vars/1": W["q_b"],
        f"{mha}key_dense/vars/0": W["k"], f"{mha}key_dense/vars/1": W["k_b"],
        f"{mha}value_dense/vars/0": W["v"], f"{mha}value_dense/vars/1": W["v_b"],
        f"{mha}output_dense/vars/0": W["o"], f"{mha}output_dense/vars/1": W["o_b"],
        "layers/sequential/layers/sequential/layers/dense/vars/0": W["enc_dense"],
        "layers/sequential/layers/sequential/layers/dense/vars/1": W["enc_dense_b"],
        **{f"layers/batch_normalization/vars/{i}": a for i, a in enumerate(W["bn"])},
        "layers/einsum_dense/vars/0": W["proj"],
        "layers/einsum_dense_1/vars/0": W["bproj"],
        # training state: never yielded, though the moment has a kernel's shape
        "optimizer/vars/0": np.int64(7), "optimizer/vars/1": np.float32(1e-3),
        "optimizer/vars/2": np.ones((20, 12), np.float32),
    }
    groups = ("vars", "layers/input_layer/vars", "layers/input_layer_1/vars", "layers/lstm/vars",
              "layers/gru/vars", f"{mha}softmax/vars", "layers/sequential/vars",
              "layers/sequential/layers/input_layer/vars")
    return t, groups


# name → (kind, htsr shape, the expected htsr tensor from the Keras-layout weights)
EXPECTED = {
    "tok_embed": ("embedding", (50, 16), W["tok_embed"]),
    "lstm_enc.kernel": ("rnn", (32, 16), W["lstm_k"].T),
    "lstm_enc.recurrent_kernel": ("rnn", (32, 8), W["lstm_r"].T),
    "gru.kernel": ("rnn", (18, 8), W["gru_k"].T),
    "gru.recurrent_kernel": ("rnn", (18, 6), W["gru_r"].T),
    "conv": ("conv2d", (8, 3, 3, 3), W["conv"].transpose(3, 2, 0, 1)),
    "conv1d_x": ("conv1d", (7, 4, 5), W["conv1d"].transpose(2, 1, 0)),
    "fc1": ("dense", (12, 20), W["fc1"].T),
    "fc2": ("dense", (10, 12), W["fc2"].T),
    "attn.query": ("dense", (8, 16), W["q"].reshape(16, 8).T),
    "attn.key": ("dense", (8, 16), W["k"].reshape(16, 8).T),
    "attn.value": ("dense", (8, 16), W["v"].reshape(16, 8).T),
    "attn.attention_output": ("dense", (16, 8), W["o"].reshape(8, 16).T),
    "encoder.layer_0.dense": ("dense", (6, 10), W["enc_dense"].T),
    "proj": ("dense", (5, 16), W["proj"].T),
    "bproj": ("stack", (3, 5, 16), W["bproj"].transpose(0, 2, 1)),
}

# the Keras-layout matrices whose singular values each htsr tensor must have
KERAS_MATRICES = {
    "tok_embed": [W["tok_embed"]], "lstm_enc.kernel": [W["lstm_k"]], "lstm_enc.recurrent_kernel": [W["lstm_r"]],
    "gru.kernel": [W["gru_k"]], "gru.recurrent_kernel": [W["gru_r"]],
    "conv": [W["conv"][i, j] for i in range(3) for j in range(3)],  # [c_in, c_out] per kernel position
    "conv1d_x": [W["conv1d"][i] for i in range(5)],
    "fc1": [W["fc1"]], "fc2": [W["fc2"]],
    "attn.query": [W["q"].reshape(16, 8)], "attn.key": [W["k"].reshape(16, 8)],
    "attn.value": [W["v"].reshape(16, 8)], "attn.attention_output": [W["o"].reshape(8, 16)],
    "encoder.layer_0.dense": [W["enc_dense"]], "proj": [W["proj"]],
    "bproj": [W["bproj"][b] for b in range(3)],
}


def _htsr_matrices(name: str, t: np.ndarray) -> list[np.ndarray]:
    kind = EXPECTED[name][0]
    if kind == "conv2d":
        return [t[:, :, i, j] for i in range(3) for j in range(3)]
    if kind == "conv1d":
        return [t[:, :, i] for i in range(5)]
    if kind == "stack":
        return list(t)
    return [t]


@pytest.fixture
def keras_file(tmp_path) -> Path:
    t, groups = toy_h5_tensors()
    return write_keras(tmp_path / "toy.keras", TOY_CONFIG, t, groups)


def legacy_layers() -> dict[str, list[tuple[str, np.ndarray]]]:
    return {
        "tokens": [], "image": [],
        "tok_embed": [("tok_embed/embeddings:0", W["tok_embed"])],
        "lstm_enc": [("lstm_enc/lstm_cell/kernel:0", W["lstm_k"]),
                     ("lstm_enc/lstm_cell/recurrent_kernel:0", W["lstm_r"]),
                     ("lstm_enc/lstm_cell/bias:0", W["lstm_b"])],
        "gru": [("gru/gru_cell/kernel:0", W["gru_k"]), ("gru/gru_cell/recurrent_kernel:0", W["gru_r"]),
                ("gru/gru_cell/bias:0", W["gru_b"])],
        "conv": [("conv/kernel:0", W["conv"]), ("conv/bias:0", W["conv_b"])],
        "conv1d_x": [("conv1d_x/kernel:0", W["conv1d"]), ("conv1d_x/bias:0", W["conv1d_b"])],
        "fc1": [("fc1/kernel:0", W["fc1"]), ("fc1/bias:0", W["fc1_b"])],
        "fc2": [("fc2/kernel:0", W["fc2"])],
        "attn": [("attn/query/kernel:0", W["q"]), ("attn/query/bias:0", W["q_b"]),
                 ("attn/key/kernel:0", W["k"]), ("attn/key/bias:0", W["k_b"]),
                 ("attn/value/kernel:0", W["v"]), ("attn/value/bias:0", W["v_b"]),
                 ("attn/attention_output/kernel:0", W["o"]), ("attn/attention_output/bias:0", W["o_b"])],
        "encoder": [("encoder/layer_0/dense/kernel:0", W["enc_dense"]),
                    ("encoder/layer_0/dense/bias:0", W["enc_dense_b"])],
        "bn": [(f"bn/{v}:0", a) for v, a in zip(("gamma", "beta", "moving_mean", "moving_variance"), W["bn"])],
        "proj": [("proj/kernel:0", W["proj"])],
        "bproj": [("bproj/kernel:0", W["bproj"])],
    }


@pytest.fixture
def legacy_file(tmp_path) -> Path:
    return write_legacy(tmp_path / "toy.h5", legacy_layers(), TOY_CONFIG)


@pytest.fixture
def analyze(monkeypatch):
    """htsr.analyze that accepts a KerasFile itself (works before open_source routes to it)."""
    mod = sys.modules["htsr.analyze"]
    real = mod.open_source
    monkeypatch.setattr(mod, "open_source", lambda s, *a, **k: s if isinstance(s, KerasFile) else real(s, *a, **k))
    return htsr.analyze


def _check_toy(src: KerasFile) -> None:
    refs = {r.name: r for r in src}
    assert set(refs) == set(EXPECTED)
    assert len(src) == len(EXPECTED)
    for name, (kind, shape, want) in EXPECTED.items():
        r = refs[name]
        assert (r.kind, r.shape, r.dtype) == (kind, shape, "float32"), name
        got = r.load()
        assert got.shape == shape and got.dtype == np.float32, name
        np.testing.assert_array_equal(got, want, err_msg=name)  # the same numbers, oriented like PyTorch
        # ... so every matrix htsr analyses has exactly the singular values of the Keras-layout kernel
        for mine, theirs in zip(_htsr_matrices(name, got), KERAS_MATRICES[name], strict=True):
            np.testing.assert_allclose(_sv(mine), _sv(theirs), rtol=1e-12, atol=0, err_msg=name)


# ------------------------------------------------------------------------- names, kinds, orientation


@pytest.mark.parametrize("attention_prefix", ["", "_"])  # Keras ≥ 3.? (query_dense property) and older
def test_keras3_archive_names_kinds_orientation(tmp_path, attention_prefix):
    t, groups = toy_h5_tensors(attention_prefix)
    path = write_keras(tmp_path / "toy.keras", TOY_CONFIG, t, groups)
    src = KerasFile(path)
    assert src.description == str(path)
    _check_toy(src)
    # 2-D biases (GRU reset_after, attention projections) are listed as such, as a legacy .h5 file's are (they had
    # been 'a bias, a quantization scale or state', passed over, h62); the optimizer is not read
    not_weights = dict(src.not_weights)
    assert not_weights["/layers/gru/cell/vars/2"] == "2-D bias of a layer"
    assert not_weights[f"/layers/multi_head_attention/{attention_prefix}query_dense/vars/1"] == "2-D bias of a layer"
    assert not any("optimizer" in p for p in dict(src.skipped))


def test_legacy_full_model_h5(legacy_file):
    src = KerasFile(legacy_file)
    _check_toy(src)
    assert not any("optimizer" in p for p, _ in src.skipped)
    # GRU's 2-D (reset_after) bias is no weight, but is counted among the tensors not analysed, as in .keras
    assert ("/model_weights/gru/gru/gru_cell/bias:0", "2-D bias of a layer") in src.not_weights


def test_legacy_weights_only_h5_without_config(tmp_path):
    """``save_weights`` output: no model_config, so layer classes come from the weight names."""
    path = write_legacy(tmp_path / "toy.weights.h5", legacy_layers(), None, weights_only=True)
    refs = {r.name: r for r in KerasFile(path)}
    assert set(refs) == set(EXPECTED)
    for name, (kind, shape, want) in EXPECTED.items():
        if name == "bproj":  # an EinsumDense kernel needs its equation: without the config it is as stored
            continue
        assert (refs[name].kind, refs[name].shape) == (kind, shape), name
        np.testing.assert_array_equal(refs[name].load(), want, err_msg=name)


def test_keras3_weights_file_without_config(tmp_path):
    """A bare ``model.save_weights('x.weights.h5')``: names are the file's class-name entries."""
    t, groups = toy_h5_tensors()
    path = tmp_path / "toy.weights.h5"
    write_weights_h5(path, t, groups)
    src = KerasFile(path)
    refs = {r.name: r for r in src}
    want = {"embedding": ("embedding", (50, 16)), "lstm.kernel": ("rnn", (32, 16)),
            "lstm.recurrent_kernel": ("rnn", (32, 8)), "gru.kernel": ("rnn", (18, 8)),
            "gru.recurrent_kernel": ("rnn", (18, 6)), "conv2d": ("conv2d", (8, 3, 3, 3)),
            "conv1d": ("conv1d", (7, 4, 5)), "dense": ("dense", (12, 20)), "dense_1": ("dense", (10, 12)),
            "multi_head_attention.query": ("dense", (8, 16)), "multi_head_attention.key": ("dense", (8, 16)),
            "multi_head_attention.value": ("dense", (8, 16)),
            "multi_head_attention.attention_output": ("dense", (16, 8)),
            "sequential.sequential.dense": ("dense", (6, 10)),
            "einsum_dense": ("dense", (5, 16))}
    assert {n: (r.kind, r.shape) for n, r in refs.items()} == want
    # without its equation a 3-D EinsumDense kernel is ambiguous: reported as skipped, not guessed
    assert "/layers/einsum_dense_1/vars/0" in dict(src.skipped)
    np.testing.assert_array_equal(refs["conv2d"].load(), EXPECTED["conv"][2])
    np.testing.assert_array_equal(refs["multi_head_attention.attention_output"].load(),
                                  EXPECTED["attn.attention_output"][2])


def test_unzipped_keras_folder(tmp_path):
    folder = tmp_path / "toy_model"
    folder.mkdir()
    t, groups = toy_h5_tensors()
    (folder / "config.json").write_text(json.dumps(TOY_CONFIG))
    write_weights_h5(folder / "model.weights.h5", t, groups)
    _check_toy(KerasFile(folder))


def test_compressed_archive_member(tmp_path):
    """A re-zipped archive with a deflated model.weights.h5 is copied to a temporary file, then read."""
    t, groups = toy_h5_tensors()
    _check_toy(KerasFile(write_keras(tmp_path / "toy.keras", TOY_CONFIG, t, groups, zipfile.ZIP_DEFLATED)))


def test_a_stored_weights_member_with_a_zip_extra_field_is_read_as_the_original(keras, tmp_path):
    """Info-ZIP's zip writes an extra field into each local header (UT timestamps, ux owner), longer there
    than the one the central directory holds (28 and 24 bytes): a stored model.weights.h5 starts after the
    local header's name *and* extra field. Re-zipped so, the archive gives the rows of the original, which
    equal the kernels keras.saving.load_model reads back from the re-zipped file."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), L.Dense(5, name="fc1"), L.Dense(4, name="fc2")], name="m")
    src, dst = tmp_path / "plain.keras", tmp_path / "infozip.keras"
    m.save(src)
    local = b"UT\x09\x00\x03\xf6\xe2\x14\x6b\xf6\xe2\x14\x6bux\x0b\x00\x01\x04" + bytes(4) + b"\x04" + bytes(4)
    central = b"UT\x05\x00\x03\xf6\xe2\x14\x6bux\x0b\x00\x01\x04" + bytes(4) + b"\x04" + bytes(4)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for old in zin.infolist():
            info = zipfile.ZipInfo(old.filename, old.date_time)
            info.extra = local
            zout.writestr(info, zin.read(old.filename))  # the local header is written (and final) here
            info.extra = central  # what close() writes into the central directory
    with zipfile.ZipFile(dst) as z:
        info = z.getinfo("model.weights.h5")
        assert info.compress_type == zipfile.ZIP_STORED and info.extra == central
    with open(dst, "rb") as f:  # the local header's own extra field is the longer one
        f.seek(info.header_offset + 28)
        assert int.from_bytes(f.read(2), "little") == len(local) == 28
    loaded = keras.saving.load_model(dst)
    got = {r.name: r for r in KerasFile(dst)}
    assert list(got) == [r.name for r in KerasFile(src)] == ["fc1", "fc2"]
    for a in KerasFile(src):
        want = keras.ops.convert_to_numpy(loaded.get_layer(a.name).kernel).T
        np.testing.assert_array_equal(a.load(), want)  # exact: the same float32 bytes
        np.testing.assert_array_equal(got[a.name].load(), want)


def test_bfloat16_and_float16_variables(tmp_path):
    import ml_dtypes

    k16 = _f32(24, 8, seed=30)
    config = model("Sequential", "m", [layer("Dense", "a", units=8), layer("Dense", "b", units=8)])
    path = write_keras(tmp_path / "bf.keras", config, {
        "layers/dense/vars/0": k16.astype(ml_dtypes.bfloat16),
        "layers/dense_1/vars/0": k16.astype(np.float16),
    })
    refs = {r.name: r for r in KerasFile(path)}
    assert (refs["a"].dtype, refs["b"].dtype) == ("bfloat16", "float16")
    assert refs["a"].dtype in FLOAT_DTYPES and refs["b"].dtype in FLOAT_DTYPES
    np.testing.assert_array_equal(refs["a"].load(), k16.astype(ml_dtypes.bfloat16).astype(np.float32).T)
    np.testing.assert_array_equal(refs["b"].load(), k16.astype(np.float16).astype(np.float32).T)
    assert refs["a"].load().dtype == np.float32


def test_bidirectional_time_distributed_and_custom_layers(tmp_path):
    config = model("Functional", "m", [
        layer("Bidirectional", "bi", layer=layer("LSTM", "lstm", units=4)),
        layer("TimeDistributed", "td", layer=layer("Dense", "inner", units=3)),
        layer("MyBlock", "custom"),
        layer("DepthwiseConv2D", "dw"),
        layer("SeparableConv2D", "sep"),
        layer("Conv3D", "c3"),
    ])
    path = write_keras(tmp_path / "m.keras", config, {
        "layers/bidirectional/forward_layer/cell/vars/0": _f32(6, 16, seed=1),
        "layers/bidirectional/forward_layer/cell/vars/1": _f32(4, 16, seed=2),
        "layers/bidirectional/backward_layer/cell/vars/0": _f32(6, 16, seed=3),
        "layers/bidirectional/backward_layer/cell/vars/1": _f32(4, 16, seed=4),
        "layers/time_distributed/layer/vars/0": _f32(5, 3, seed=5),
        "layers/my_block/vars/0": _f32(7, 9, seed=6),
        "layers/my_block/vars/1": _f32(2, 3, 4, seed=7),
        "layers/depthwise_conv2d/vars/0": _f32(3, 3, 4, 2, seed=8),
        "layers/separable_conv2d/vars/0": _f32(3, 3, 4, 1, seed=9),
        "layers/separable_conv2d/vars/1": _f32(1, 1, 4, 6, seed=10),
        "layers/conv3d/vars/0": _f32(2, 2, 2, 3, 4, seed=11),
    })
    src = KerasFile(path)
    got = {r.name: (r.kind, r.shape) for r in src}
    assert got == {
        "bi.forward_layer.kernel": ("rnn", (16, 6)), "bi.forward_layer.recurrent_kernel": ("rnn", (16, 4)),
        "bi.backward_layer.kernel": ("rnn", (16, 6)), "bi.backward_layer.recurrent_kernel": ("rnn", (16, 4)),
        "td.layer": ("dense", (3, 5)),
        "custom.vars.0": (None, (7, 9)),  # unknown layer: as stored, htsr infers the kind
        "dw": ("conv2d", (8, 1, 3, 3)),  # PyTorch's depthwise weight [c_in·mult, 1, kh, kw]
        "sep.depthwise": ("conv2d", (4, 1, 3, 3)), "sep.pointwise": ("conv2d", (6, 4, 1, 1)),
        "c3": ("conv3d", (4, 3, 2, 2, 2)),  # [kd, kh, kw, c_in, c_out] → PyTorch's [c_out, c_in, kd, kh, kw]
    }
    np.testing.assert_array_equal({r.name: r for r in src}["c3"].load(),
                                  np.transpose(_f32(2, 2, 2, 3, 4, seed=11), (4, 3, 0, 1, 2)))
    dw = {r.name: r for r in src}["dw"].load()
    k = _f32(3, 3, 4, 2, seed=8)
    np.testing.assert_array_equal(dw[2 * 1 + 1, 0], k[:, :, 1, 1])  # channel c, multiplier m → row c·mult + m
    assert {p for p, _ in src.skipped} == {"/layers/my_block/vars/1"}


def test_rows_through_analyze(keras_file, analyze):
    result = analyze(KerasFile(keras_file), min_evals=2)
    rows = {r.name: r for r in result.layers}
    want = {n: k for n, (k, _, _) in EXPECTED.items() if k != "stack"}
    want.update({f"bproj[{e}]": "stack" for e in range(3)})
    assert {n: r.kind for n, r in rows.items()} == want
    assert rows["fc1"].shape == "12x20" and (rows["fc1"].N, rows["fc1"].M) == (20, 12)
    assert rows["conv"].num_matrices == 9 and rows["conv"].shape == "8x3x3x3"
    # the Keras file and its PyTorch-layout copy give the same result, layer by layer
    torch_layout = {n: w for n, (_, _, w) in EXPECTED.items()}
    ref = {r.name: r for r in htsr.analyze(torch_layout, min_evals=2).layers}
    for name, row in rows.items():
        if row.kind != "dense":
            continue  # a plain mapping has no kinds: infer_kind guesses the others from names and shapes
        assert row.lambda_max == pytest.approx(ref[name].lambda_max, rel=1e-12), name  # same float32 matrix: rounding


# ----------------------------------------------------------------------------------------- laziness


def test_opening_and_listing_reads_no_tensor(keras_file, monkeypatch, analyze):
    reads: list[str] = []
    real_getitem = h5py.Dataset.__getitem__
    real_read_direct = h5py.Dataset.read_direct
    real_array = h5py.Dataset.__array__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, *a, **k: (reads.append(self.name),
                                                                             real_getitem(self, *a, **k))[1])
    monkeypatch.setattr(h5py.Dataset, "read_direct", lambda self, *a, **k: (reads.append(self.name),
                                                                            real_read_direct(self, *a, **k))[1])
    monkeypatch.setattr(h5py.Dataset, "__array__", lambda self, *a, **k: (reads.append(self.name),
                                                                          real_array(self, *a, **k))[1])
    src = KerasFile(keras_file)
    refs = list(src)
    assert len(refs) == len(EXPECTED) and reads == []
    next(r for r in refs if r.name == "fc2").load()
    assert reads == ["/layers/dense_1/vars/0"]
    # analyze reads only the layers it analyses
    reads.clear()
    loaded: list[str] = []
    real_load = TensorRef.load
    monkeypatch.setattr(TensorRef, "load", lambda self: (loaded.append(self.name), real_load(self))[1])
    analyze(KerasFile(keras_file), layers=r"^attn\.value$")
    assert loaded == ["attn.value"]
    assert reads == ["/layers/multi_head_attention/value_dense/vars/0"]


def test_archive_is_read_in_place(keras_file, monkeypatch):
    """A stored model.weights.h5 is not extracted: h5py reads through a window on the zip file."""
    real_open, opened = zipfile.ZipFile.open, []

    def only_the_config(self, name, *a, **k):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **k) if opened[-1] == "config.json" else pytest.fail(f"{name} extracted")

    monkeypatch.setattr(zipfile.ZipFile, "open", only_the_config)
    _check_toy(KerasFile(keras_file))
    assert opened == ["config.json"]


def test_file_is_not_modified(keras_file, legacy_file, analyze):
    for path in (keras_file, legacy_file):
        before, mtime = path.read_bytes(), path.stat().st_mtime_ns
        for r in KerasFile(path):
            r.load()
        analyze(KerasFile(path), min_evals=2)
        assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7, 0.99])
def test_truncated_archive(keras_file, fraction):
    raw = keras_file.read_bytes()
    keras_file.write_bytes(raw[: max(2, int(len(raw) * fraction))])
    with pytest.raises(SourceError) as ei:
        KerasFile(keras_file)
    _one_line_source_error(ei, str(keras_file))


def _weights_h5(path: Path, build) -> Path:
    """A Keras 3 weights file with one real Dense kernel, changed by ``build(f)``."""
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.random.default_rng(0).standard_normal((20, 16)).astype("f4"))
        build(f)
    return path


def test_a_group_hard_linked_along_2_to_the_40_paths_is_walked_once(tmp_path):
    """A chain of 40 groups each linking twice to the next: 2^40 paths in ~50 KB. Each group is walked once."""
    def diamond(f):
        groups = [f.create_group(f"g{i}") for i in range(40)]
        groups[-1].create_group("vars").create_dataset("0", data=np.ones((4, 4), "f4"))
        for a, b in zip(groups, groups[1:]):
            a["a"] = a["b"] = b
        f["layers/dense/sub"] = groups[0]

    src = KerasFile(_weights_h5(tmp_path / "diamond.weights.h5", diamond))  # would never finish before
    assert len(src) == 2


@pytest.mark.parametrize("how", ["external storage", "virtual dataset", "external link"])
def test_data_outside_the_file_is_refused(tmp_path, how):
    """External raw storage, virtual datasets and external links would make HDF5 read other files (here
    /etc/passwd as a kernel); the file is refused at open, naming what it points at."""
    def outside(f):
        if how == "external storage":
            f.create_dataset("layers/dense_1/vars/0", shape=(4, 4), dtype="u1", external=[("/etc/passwd", 0, 16)])
        elif how == "virtual dataset":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as g:
                g.create_dataset("x", data=np.ones((4, 4), "f4"))
            layout = h5py.VirtualLayout(shape=(4, 4), dtype="f4")
            layout[:] = h5py.VirtualSource(str(other), "x", shape=(4, 4))
            f.create_virtual_dataset("layers/dense_1/vars/0", layout)
        else:
            f["layers/dense_1"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")

    path = _weights_h5(tmp_path / "outside.weights.h5", outside)
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "htsr reads only the file it is given")


def test_a_dataset_declaring_far_more_than_it_stores_is_not_loaded(tmp_path):
    """A chunked 30000 x 30000 float32 dataset with no chunk written: 3.6 GB of fill value from 5 KB."""
    path = _weights_h5(tmp_path / "huge.weights.h5", lambda f: f.create_dataset(
        "layers/dense_1/vars/0", shape=(30000, 30000), dtype="f4", chunks=(1024, 1024)))
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert rows["dense"].status == "ok"  # the real kernel beside it is analysed
    assert rows["dense_1"].status.startswith("failed: ") and "declares 3600000000 bytes but stores 0" in \
        rows["dense_1"].status


def _rezip(path: Path, member: str, data: bytes, method: int = zipfile.ZIP_DEFLATED) -> Path:
    raw = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(raw, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, data if n == member else src.read(n), compress_type=method if n == member else None)
    path.write_bytes(raw.getvalue())
    return path


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_zip_bombs_are_refused_before_they_expand(keras_file, member):
    """A member compressing 1000x and more: 300 MB of zeros in ~300 KB. Refused from its header, nothing
    extracted (a real config is kilobytes; weights compress a few times at most)."""
    path = _rezip(keras_file, member, bytes(300 << 20))
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), member, "zip bomb")
    # refused by the size its header declares, before reading (a config had been read up to 64 MB first)
    assert str(300 << 20) in str(ei.value)


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_corrupt_compressed_members_are_one_line_errors(keras_file, member):
    """A deflate stream with flipped bytes raises zlib.error inside zipfile: a SourceError here."""
    path = _rezip(keras_file, member, (json.dumps(TOY_CONFIG) * 50).encode() if member == "config.json"
                  else zipfile.ZipFile(keras_file).read(member))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 10 : start + 30] = bytes(range(20))  # inside the deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), member)


def test_a_config_nested_too_deeply_is_a_one_line_error(tmp_path):
    t, groups = toy_h5_tensors()
    path = write_keras(tmp_path / "deep.keras", TOY_CONFIG, t, groups)
    path = _rezip(path, "config.json", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "nested too deeply")


def test_a_null_dataspace_beside_a_kernel_is_no_weight_and_sinks_nothing(tmp_path):
    path = _weights_h5(tmp_path / "empty.weights.h5", lambda f: f.create_dataset(
        "layers/dense_1/vars/0", data=h5py.Empty("f4")))
    assert [r.name for r in KerasFile(path)] == ["dense"]


def test_an_archive_with_a_data_pkl_asset_is_read_as_keras(keras_file):
    """Assets may be named anything; a member ending in data.pkl does not make a .keras a torch archive."""
    with zipfile.ZipFile(keras_file, "a") as z:
        z.writestr("assets/tokenizer/data.pkl", b"not a torch pickle")
    assert [r.name for r in htsr.analyze(keras_file, min_evals=2).layers] == \
        [r.name for r in htsr.analyze(KerasFile(keras_file), min_evals=2).layers]


def test_complex_kernels_are_listed_as_not_analysed_by_their_dtype(tmp_path):
    path = _weights_h5(tmp_path / "c.weights.h5", lambda f: f.create_dataset(
        "layers/dense_1/vars/0", data=np.ones((20, 16), np.complex64)))
    r = htsr.analyze(path, min_evals=5)
    assert [x.name for x in r.layers] == ["dense"]
    assert [(n.reason, n.examples) for n in r.not_analysed] == [
        ("complex64 tensor: not a dtype of weights htsr analyses", ("dense_1",))]


def test_1d_variables_are_counted_among_the_tensors(keras_file, legacy_file):
    """Biases and norm scales give no row but are named among the tensors not analysed, in both formats."""
    for path in (keras_file, legacy_file):
        r = htsr.analyze(path, min_evals=2)
        na = sum(n.count for n in r.not_analysed)
        assert na > 0 and r.num_tensors == len({x.name.split("[")[0] for x in r.layers}) + na, path


def test_a_legacy_layer_listed_many_times_is_read_once(tmp_path):
    """layer_names repeating one layer 2000 times (a few bytes each) gave 2000 rows, each a full analysis."""
    path = write_legacy(tmp_path / "dup.h5", legacy_layers(), TOY_CONFIG)
    with h5py.File(path, "a") as f:
        names = list(f["model_weights"].attrs["layer_names"])
        width = max(len(n) for n in names)  # an HDF5 attribute holds at most 64 KB
        f["model_weights"].attrs["layer_names"] = np.array(names + [names[0]] * 2000, dtype=f"S{width}")
    assert [r.name for r in KerasFile(path)] == [r.name for r in KerasFile(write_legacy(
        tmp_path / "once.h5", legacy_layers(), TOY_CONFIG))]


def test_zip_without_weights(tmp_path):
    path = tmp_path / "noweights.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(TOY_CONFIG))
        zf.writestr("metadata.json", "{}")
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "model.weights.h5", "model.save")


def test_npz_weights_are_refused(tmp_path):
    """An npz-format .keras is refused by name, also when it holds an asset named like torch.save's
    <root>/data.pkl: config.json + model.weights.npz is a Keras archive (it had been routed to the torch
    reader as a pickle archive, whose error says nothing of Keras)."""
    from htsr.io import open_source

    path = tmp_path / "npz.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(TOY_CONFIG))
        zf.writestr("model.weights.npz", b"PK\x05\x06" + bytes(18))
        zf.writestr("assets/data.pkl", b"a tokenizer, not a torch pickle")
    assert is_keras_archive(["config.json", "model.weights.npz"])
    for opener in (KerasFile, open_source):
        with pytest.raises(SourceError) as ei:
            opener(path)
        _one_line_source_error(ei, str(path), "model.weights.npz", "re-save")
    # its config.json lost (a broken archive): the npz weights member alone still names it a Keras archive, refused
    # by name, not 'a zip archive that is neither .npz nor a PyTorch checkpoint' (only the .h5 member was tried)
    with zipfile.ZipFile(tmp_path / "no_config.keras", "w") as zf:
        zf.writestr("model.weights.npz", b"PK\x05\x06" + bytes(18))
    with pytest.raises(SourceError) as ei:
        open_source(tmp_path / "no_config.keras")
    _one_line_source_error(ei, str(tmp_path / "no_config.keras"), "model.weights.npz", "re-save")


@pytest.mark.parametrize("bad, says", [(b"{not json", "corrupt Keras config"),
                                        (b"[1, 2]", "not a JSON object")])  # valid JSON, no model config
def test_corrupt_config(tmp_path, bad, says):
    t, groups = toy_h5_tensors()
    path = write_keras(tmp_path / "bad.keras", TOY_CONFIG, t, groups)
    raw = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(raw, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, bad if n == "config.json" else src.read(n))
    path.write_bytes(raw.getvalue())
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "config.json", says)


def test_corrupt_weights_member(tmp_path):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(TOY_CONFIG))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "model.weights.h5", "HDF5")


def test_a_deflated_weights_member_that_is_no_hdf5_is_refused_by_its_first_bytes(tmp_path):
    """A compressed model.weights.h5 that does not start with the HDF5 signature is refused before it is
    copied out, the message quoting its first bytes and saying to re-save (not h5py's 'not a readable
    HDF5 file' once all of it had been extracted to a temporary file)."""
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(TOY_CONFIG))
        zf.writestr("model.weights.h5", b"GARBAGE!" + bytes(4096))
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "model.weights.h5 is not an HDF5 file (starts with b'GARBAGE!')",
                           "re-save the model")


def _central_record(raw: bytes, name: str) -> int:
    """The offset of member ``name``'s central-directory record in a zip's bytes (from the end record)."""
    end = raw.rfind(b"PK\x05\x06")
    at = int.from_bytes(raw[end + 16:end + 20], "little")
    while raw[at:at + 4] == b"PK\x01\x02":
        n, extra, comment = (int.from_bytes(raw[at + o:at + o + 2], "little") for o in (28, 30, 32))
        if raw[at + 46:at + 46 + n] == name.encode():
            return at
        at += 46 + n + extra + comment
    raise AssertionError(f"{name} not in the central directory")


def _damage_encrypted(raw: bytearray, info: zipfile.ZipInfo) -> None:
    at = _central_record(raw, info.filename)
    raw[at + 8] |= 0x1  # general purpose flag bit 0: encrypted


def _damage_local_signature(raw: bytearray, info: zipfile.ZipInfo) -> None:
    raw[info.header_offset:info.header_offset + 4] = b"PK\x07\x08"  # a signature, but no local header's


def _damage_sizes(raw: bytearray, info: zipfile.ZipInfo) -> None:
    at = _central_record(raw, info.filename)
    for o in (20, 24):  # compressed and uncompressed size: 1 MiB more than the archive holds
        raw[at + o:at + o + 4] = (info.file_size + (1 << 20)).to_bytes(4, "little")


@pytest.mark.parametrize("damage, says", [
    (_damage_encrypted, "model.weights.h5 is encrypted; htsr cannot read it"),
    (_damage_local_signature, "corrupt zip archive (bad local header for model.weights.h5); truncated?"),
    (_damage_sizes, "model.weights.h5 runs past the end of the archive (truncated?)"),
])
def test_a_stored_weights_member_with_lying_zip_headers_is_refused_not_read(keras_file, damage, says):
    """A stored model.weights.h5 is read in place, where its zip headers say it is: a member flagged
    encrypted, one whose local header is no local header, and one whose declared size runs past the end of
    the file are each refused by a one-line message naming the member. In each the HDF5 bytes themselves
    are intact, so without those checks the archive had been read as if nothing were wrong (ciphertext,
    a misplaced window, a window onto the central directory)."""
    raw = bytearray(keras_file.read_bytes())
    with zipfile.ZipFile(keras_file) as z:
        info = z.getinfo("model.weights.h5")
    assert info.compress_type == zipfile.ZIP_STORED
    damage(raw, info)
    keras_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        KerasFile(keras_file)
    _one_line_source_error(ei, str(keras_file), says)


def test_a_stored_weights_member_changed_in_place_is_refused_by_its_crc32(keras_file):
    """h5py reads a stored model.weights.h5 in place, past zipfile's CRC-32 check, and HDF5 keeps no checksum
    of a weight's data: one byte of a kernel flipped in place (a bad copy, a disk error; the file's size and
    every header unchanged) had been analysed as the changed value. The member is now checked once against
    the CRC-32 the archive records, as zipfile checks a compressed one (which is read through it)."""
    with zipfile.ZipFile(keras_file) as z:
        info = z.getinfo("model.weights.h5")
        h5 = z.read(info)
    with h5py.File(io.BytesIO(h5), "r") as f:
        found: list[str] = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None)
        name = found[0]
        at = f[name].id.get_offset()  # a contiguous dataset's first byte, in the HDF5 file
    raw = bytearray(keras_file.read_bytes())
    start = raw.index(h5[:64], info.header_offset)  # the member's bytes, after its local header
    raw[start + at + 3] ^= 0x40  # the first value's exponent: a clearly different weight
    keras_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        KerasFile(keras_file)
    _one_line_source_error(ei, str(keras_file), "model.weights.h5 does not match the CRC-32 the archive records "
                           "for it; the file is corrupt: save or download it again")


def test_the_window_on_a_stored_weights_member_ends_where_the_member_ends(keras_file):
    """The seekable window h5py reads a stored model.weights.h5 through gives exactly the member's bytes:
    read to the end, and from SEEK_END, it stops at the member's last byte, not at the archive's (the
    central directory after it is no part of the HDF5 file)."""
    from htsr.io.keras import _member_file

    with zipfile.ZipFile(keras_file) as z:
        info = z.getinfo("model.weights.h5")
        want = z.read(info)
        f = _member_file(keras_file, z, info)
    try:
        assert len(want) < keras_file.stat().st_size - 100  # the central directory and more follow it
        assert f.read() == want
        assert f.seek(-16, io.SEEK_END) == len(want) - 16
        assert f.read() == want[-16:] and f.read() == b""
    finally:
        f.close()


def test_a_custom_attention_projection_whose_first_two_axes_are_equal_is_not_guessed(tmp_path):
    """A custom attention layer's query kernel [4, 4, 8] may be [dim, heads, head_dim] or keras_hub's
    [heads, dim, head_dim]: with no equation saved, nothing tells which axis is the model width, so it is
    listed as skipped, not read one way at a guess. A kernel whose first two axes differ ([4, 16, 8]: the
    width is 16) is read (as [heads·head_dim, dim])."""
    q, k = _f32(4, 4, 8, seed=40), _f32(4, 16, 8, seed=41)
    config = model("Functional", "m", [{"module": None, "class_name": "htsr_test>SquareAttention",
                                        "config": {"name": "attn"}, "registered_name": "htsr_test>SquareAttention"}])
    path = write_keras(tmp_path / "a.keras", config, {"layers/square_attention/query_dense/vars/0": q,
                                                      "layers/square_attention/key_dense/vars/0": k})
    src = KerasFile(path)
    refs = {r.name: r for r in src}
    assert list(refs) == ["attn.key"]
    assert (refs["attn.key"].kind, refs["attn.key"].shape) == ("dense", (32, 16))
    np.testing.assert_array_equal(refs["attn.key"].load(), k.transpose(1, 0, 2).reshape(16, 32).T)
    assert [w for w, _ in src.skipped] == ["/layers/square_attention/query_dense/vars/0"]


def test_a_custom_layer_with_an_embedding_config_and_a_second_variable_is_no_embedding(tmp_path):
    """A registered layer whose config holds input_dim and output_dim is read as Embedding only if its
    variables are an Embedding's: the table alone. With a [dim] vector beside it (its own scale) it is a
    custom layer whose 2-D variable is a row as stored (it had been the Embedding 'emb', its vector taken
    for a bias)."""
    table, vec = _f32(50, 16, seed=42), _f32(16, seed=43)
    lc = {"module": None, "class_name": "htsr_test>ScaledEmbedding", "registered_name": "htsr_test>ScaledEmbedding",
          "config": {"name": "emb", "input_dim": 50, "output_dim": 16}}
    path = write_keras(tmp_path / "e.keras", model("Functional", "m", [lc]),
                       {"layers/scaled_embedding/vars/0": table, "layers/scaled_embedding/vars/1": vec})
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape) == ("emb.vars.0", None, (50, 16))
    np.testing.assert_array_equal(ref.load(), table)
    # the same layer with the table alone is an Embedding, by its config
    path = write_keras(tmp_path / "e1.keras", model("Functional", "m", [lc]), {"layers/scaled_embedding/vars/0": table})
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape) == ("emb", "embedding", (50, 16))


def test_a_custom_layers_projections_come_before_its_other_sub_layers(tmp_path):
    """A layer's sub-objects come in the order it uses them: its attention projections first (query, key,
    value, attention_output), the rest after them by name, although the file lists them alphabetically
    ('aux_dense' before 'query_dense'; the rest had come first)."""
    q, aux = _f32(16, 2, 4, seed=45), _f32(8, 3, seed=46)
    lc = {"module": None, "class_name": "htsr_test>GatedAttention", "registered_name": "htsr_test>GatedAttention",
          "config": {"name": "attn"}}
    path = write_keras(tmp_path / "g.keras", model("Functional", "m", [lc]),
                       {"layers/gated_attention/aux_dense/vars/0": aux,
                        "layers/gated_attention/query_dense/vars/0": q})
    assert [(r.name, r.kind, r.shape) for r in KerasFile(path)] == [
        ("attn.query", "dense", (8, 16)), ("attn.aux_dense.vars.0", None, (8, 3))]


def test_a_custom_layer_with_units_and_recurrent_keys_in_its_config_is_no_dense(tmp_path):
    """A registered layer whose config holds 'units' beside recurrent_* keys is a recurrent cell, not a Dense
    subclass, even when its own variables are a kernel and a bias (its recurrent weights in a sub-layer):
    its kernel is a row of its own, as stored (it had been read as the Dense 'cell', transposed)."""
    k = _f32(4, 6, seed=44)
    lc = {"module": None, "class_name": "htsr_test>SplitCell", "registered_name": "htsr_test>SplitCell",
          "config": {"name": "cell", "units": 6, "recurrent_activation": "sigmoid"}}
    path = write_keras(tmp_path / "c.keras", model("Functional", "m", [lc]),
                       {"layers/split_cell/vars/0": k, "layers/split_cell/vars/1": np.zeros(6, np.float32)})
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape) == ("cell.vars.0", None, (4, 6))
    np.testing.assert_array_equal(ref.load(), k)


def test_a_registered_conv_subclass_in_a_legacy_h5_keeps_its_own_matrix(tmp_path):
    """A registered Conv2D subclass (its config is Conv2D's) in a legacy .h5: its kernel is Conv2D's, but a
    matrix of its own ('u', [8, 8]) is a row as stored, not dropped as a Conv2D's 'bias or state'."""
    k, u = _f32(3, 3, 4, 8, seed=47), _f32(8, 8, seed=48)
    lc = {"class_name": "htsr_test>StdConv2D", "config": {"name": "conv", "filters": 8, "kernel_size": [3, 3]}}
    path = write_legacy(tmp_path / "s.h5", {"conv": [("conv/kernel:0", k), ("conv/u:0", u)]},
                        {"class_name": "Functional", "config": {"name": "m", "layers": [lc]}})
    src = KerasFile(path)
    assert [(r.name, r.kind, r.shape) for r in src] == [("conv", "conv2d", (8, 4, 3, 3)), ("conv.u", None, (8, 8))]
    np.testing.assert_array_equal(list(src)[1].load(), u)
    assert not src.skipped


@pytest.mark.parametrize("weights_only", [True, False])
def test_legacy_name_lists_split_over_numbered_attributes_are_read_whole(tmp_path, weights_only):
    """Keras splits an attribute list longer than HDF5's 64 KB limit into layer_names0, layer_names1 … (and
    weight_names0, …): every chunk is read, and a weights-only file holding only the numbered attribute is
    still a legacy Keras file (it had been 'not a Keras model or weights file', or lost every layer and
    weight after the first chunk)."""
    kernels = {n: _f32(6 + i, 4, seed=50 + i) for i, n in enumerate(("fc_a", "fc_b", "fc_c"))}
    path = write_legacy(tmp_path / "split.h5", {n: [(f"{n}/kernel:0", k)] for n, k in kernels.items()},
                        model("Sequential", "m", [layer("Dense", n, units=4) for n in kernels]), weights_only)
    with h5py.File(path, "a") as f:
        root = f if weights_only else f["model_weights"]
        names = list(root.attrs["layer_names"])
        del root.attrs["layer_names"]
        root.attrs["layer_names0"], root.attrs["layer_names1"] = names[:1], names[1:]
        g = root["fc_b"]  # a layer's weight list split too: its kernel is listed in the second chunk
        g.create_dataset("fc_b/bias:0", data=_f32(4, seed=60))
        g.attrs["weight_names0"], g.attrs["weight_names1"] = [b"fc_b/bias:0"], [b"fc_b/kernel:0"]
        del g.attrs["weight_names"]
    refs = {r.name: r for r in KerasFile(path)}
    assert list(refs) == ["fc_a", "fc_b", "fc_c"]
    for n, k in kernels.items():
        np.testing.assert_array_equal(refs[n].load(), k.T)


@pytest.mark.parametrize("cut", [8, 100, 1000, -200])
def test_truncated_h5(legacy_file, cut):
    raw = legacy_file.read_bytes()
    legacy_file.write_bytes(raw[:cut])
    with pytest.raises(SourceError) as ei:
        KerasFile(legacy_file)
    _one_line_source_error(ei, str(legacy_file))


def test_garbage_after_hdf5_signature(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(0).bytes(4096))
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "HDF5")


def test_hdf5_that_is_not_keras(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data/x"] = np.ones((3, 3))
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "not a Keras")


def test_listed_weight_missing_names_layer_and_weight(tmp_path):
    path = write_legacy(tmp_path / "m.h5", {"fc1": [("fc1/kernel:0", W["fc1"])]}, TOY_CONFIG)
    with h5py.File(path, "a") as f:
        f["model_weights/fc1"].attrs["weight_names"] = [b"fc1/kernel:0", b"fc1/bias:0"]
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path), "'fc1'", "'fc1/bias:0'")


def test_corrupt_chunk_fails_at_load_naming_the_tensor(tmp_path):
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=W["fc1"], chunks=W["fc1"].shape, compression="gzip")
        f["layers/dense_1/vars/0"] = W["fc2"]
        offset = f["layers/dense/vars/0"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    refs = {r.name: r for r in KerasFile(path)}  # opening reads no data: fine
    np.testing.assert_array_equal(refs["dense_1"].load(), W["fc2"].T)
    with pytest.raises(SourceError) as ei:
        refs["dense"].load()
    _one_line_source_error(ei, str(path), "'dense'", "/layers/dense/vars/0")


def test_neither_zip_nor_hdf5(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"hello world, not a model")
    with pytest.raises(SourceError) as ei:
        KerasFile(path)
    _one_line_source_error(ei, str(path))


def test_missing_h5py_is_a_missing_extra(keras_file, monkeypatch):
    assert "htsr[keras]" in missing_extra_error(monkeypatch, "h5py", lambda: KerasFile(keras_file))


def test_detection_helpers(keras_file, legacy_file):
    assert is_hdf5(legacy_file.read_bytes()[:8]) and not is_hdf5(keras_file.read_bytes()[:8])
    with zipfile.ZipFile(keras_file) as z:
        assert is_keras_archive(z.namelist())
    assert not is_keras_archive(["archive/data.pkl", "archive/version"])
    assert [to_snake_case(c) for c in ("Dense", "Conv2D", "MultiHeadAttention", "LSTMCell", "EinsumDense")] == [
        "dense", "conv2d", "multi_head_attention", "lstm_cell", "einsum_dense"]


def test_open_source_routing(keras_file, legacy_file):
    """open_source detects .keras archives and HDF5 files by content."""
    from htsr.io import open_source

    assert isinstance(open_source(keras_file), KerasFile)
    assert isinstance(open_source(legacy_file), KerasFile)


# ---------------------------------------------------------------- real weights: Keras vs safetensors


def _tree(names: list[str]) -> dict:
    """Dotted names → nested dict of components (insertion order kept)."""
    root: dict = {}
    for n in names:
        node = root
        for c in n.split("."):
            node = node.setdefault(c, {})
    return root


def _keras3_tree(node: dict, prefix: str, leaves: dict[str, tuple[str, np.ndarray]], path: str,
                 tensors: dict[str, np.ndarray]) -> list[dict]:
    """Configs of a container's layers (nested Sequentials, Dense/Embedding leaves) and their h5 entries."""
    configs, used = [], {}
    for name, child in node.items():
        full = f"{prefix}.{name}" if prefix else name
        cls = leaves[full][0] if full in leaves else "Sequential"
        snake = to_snake_case(cls)
        used[snake] = used.get(snake, -1) + 1
        entry = f"{path}/layers/{snake}" + (f"_{used[snake]}" if used[snake] else "")
        if full in leaves:
            tensors[f"{entry}/vars/0"] = leaves[full][1]
            configs.append(layer(cls, name))
        else:
            configs.append(model("Sequential", name, _keras3_tree(child, full, leaves, entry, tensors)))
    return configs


def _legacy_config(node: dict, prefix: str, leaves: dict) -> list[dict]:
    out = []
    for name, child in node.items():
        full = f"{prefix}.{name}" if prefix else name
        if full in leaves:
            out.append({"class_name": leaves[full][0], "config": {"name": name}, "name": name})
        else:
            out.append({"class_name": "Sequential", "config": {"name": name, "layers": _legacy_config(child, full, leaves)},
                        "name": name})
    return out


@pytest.mark.network
def test_minilm_keras_alpha_matches_safetensors(tmp_path, minilm_path, analyze):
    from htsr.io import open_source

    st = [r for r in open_source(minilm_path) if r.dtype in FLOAT_DTYPES and len(r.shape) == 2]
    reference = {r.name: r for r in htsr.analyze(minilm_path).layers}
    # PyTorch [out, in] → Keras: Dense kernels [in, out], Embedding tables as they are
    leaves = {}
    for r in st:
        name = r.name[: -len(".weight")]
        kind = reference[name].kind if name in reference else None
        a = np.asarray(r.load(), dtype=np.float32)
        leaves[name] = ("Embedding", a) if kind == "embedding" else ("Dense", np.ascontiguousarray(a.T))
    tree = _tree(list(leaves))

    tensors: dict[str, np.ndarray] = {}
    config = model("Functional", "bert", _keras3_tree(tree, "", leaves, "", tensors))
    tensors = {k.lstrip("/"): v for k, v in tensors.items()}
    keras_path = write_keras(tmp_path / "minilm.keras", config, tensors)

    legacy = {}
    for top in tree:
        legacy[top] = [(n.replace(".", "/") + ("/embeddings:0" if cls == "Embedding" else "/kernel:0"), a)
                       for n, (cls, a) in leaves.items() if n.split(".")[0] == top]
    legacy_config = {"class_name": "Functional", "config": {"name": "bert", "layers": _legacy_config(tree, "", leaves)}}
    h5_path = write_legacy(tmp_path / "minilm.h5", legacy, legacy_config)

    for path in (keras_path, h5_path):
        src = KerasFile(path)
        assert {r.name for r in src} == set(leaves), path
        rows = {r.name: r for r in analyze(src).layers}
        assert set(rows) == set(reference), path
        fitted = 0
        for name, ref in reference.items():
            row = rows[name]
            assert (row.kind, row.shape, row.status) == (ref.kind, ref.shape, ref.status), (path.name, name)
            if ref.status == "ok":
                # the same float32 matrices as the safetensors: at most BLAS's sum order differs
                assert row.alpha == pytest.approx(ref.alpha, rel=1e-9, abs=0), (path.name, name)
                fitted += 1
        assert fitted > 20
        print(f"\n{path.name}: {len(rows)} layers, {fitted} fitted, alpha identical to the safetensors analysis")


# -------------------------------------------------------------------------- live Keras 3 models


def test_import_htsr_does_not_import_keras():
    """keras is imported only when a Keras object is read (detection looks at class names)."""
    code = ("import sys, numpy as np, htsr, htsr.io.keras; from htsr.io import open_source; "
            "from htsr.io.keras import is_keras_object; htsr.analyze({'w': np.eye(40)}); "
            "assert not is_keras_object(object()) and not is_keras_object({'a': 1}); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("torch")
    k = pytest.importorskip("keras")
    if int(k.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras {k.__version__}: live models need Keras 3")
    return k


def _rows(result) -> list[dict]:
    """Analysis rows with NaN made comparable (NaN == NaN)."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.as_dict().items()}
            for r in result.layers]


def _refs_of(src) -> list[tuple]:
    return [(r.name, r.kind, r.shape, r.dtype) for r in src]


def _same_as_saved(keras, model, path: Path) -> tuple[KerasModel, KerasFile]:
    """The live model and its saved .keras give the same tensors: names, kinds, shapes, dtypes, values,
    in the same order, and the same skipped variables."""
    model.save(path)
    live, saved = KerasModel(model), KerasFile(path)
    assert _refs_of(live) == _refs_of(saved)
    assert live.skipped == saved.skipped
    for a, b in zip(live, saved, strict=True):
        np.testing.assert_array_equal(a.load(), b.load(), err_msg=a.name)
    return live, saved


def _toy_model(keras):
    """TOY_CONFIG built with real Keras layers, holding the W weights (Keras layout)."""
    L = keras.layers
    tokens = keras.Input((3,), dtype="int32", name="tokens")
    h = L.Embedding(50, 16, name="tok_embed")(tokens)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, name="attn")(h, h)
    p = L.EinsumDense("abc,cd->abd", output_shape=(None, 5), name="proj")(a)
    bp = L.EinsumDense("abc,bcd->abd", output_shape=(3, 5), name="bproj")(a)
    r = L.LSTM(8, return_sequences=True, name="lstm_enc")(h)
    r = L.GRU(6, reset_after=True, name="gru")(r)
    image = keras.Input((5, 5, 3), name="image")
    c = L.Conv2D(8, 3, name="conv")(image)
    seq = keras.Input((6, 4), name="seq")
    c1 = L.Conv1D(7, 5, name="conv1d_x")(L.BatchNormalization(name="bn")(seq))
    feats = keras.Input((20,), name="feats")
    f = L.Dense(10, use_bias=False, name="fc2")(L.Dense(12, name="fc1")(feats))
    enc_in = keras.Input((10,), name="enc_in")
    encoder = keras.Sequential([keras.Input((10,)), keras.Sequential([L.Dense(6, name="dense")], name="layer_0")],
                               name="encoder")
    e = encoder(enc_in)
    model = keras.Model([tokens, image, seq, feats, enc_in], [p, bp, r, c, c1, f, e], name="toy")
    weights = {
        "tok_embed": [W["tok_embed"]],
        "attn": [W["q"], W["q_b"], W["k"], W["k_b"], W["v"], W["v_b"], W["o"], W["o_b"]],
        "proj": [W["proj"]], "bproj": [W["bproj"]],
        "lstm_enc": [W["lstm_k"], W["lstm_r"], W["lstm_b"]], "gru": [W["gru_k"], W["gru_r"], W["gru_b"]],
        "conv": [W["conv"], W["conv_b"]], "conv1d_x": [W["conv1d"], W["conv1d_b"]], "bn": W["bn"],
        "fc1": [W["fc1"], W["fc1_b"]], "fc2": [W["fc2"]], "encoder": [W["enc_dense"], W["enc_dense_b"]],
    }
    for name, ws in weights.items():
        layer = model.get_layer(name)
        assert [tuple(w.shape) for w in layer.get_weights()] == [w.shape for w in ws], name
        layer.set_weights(ws)
    return model


def test_live_toy_model_matches_expected_and_saved_file(keras, tmp_path):
    """The hand-written toy layout is what real Keras writes: a live model holding the toy weights gives
    EXPECTED (names, kinds, shapes, values, singular values), and so does its saved .keras."""
    from htsr.io import open_source

    model = _toy_model(keras)
    live, saved = _same_as_saved(keras, model, tmp_path / "toy.keras")
    _check_toy(live)
    _check_toy(saved)
    assert live.description == "<Functional 'toy'>"
    assert isinstance(open_source(model), KerasModel)  # not TorchModule, though a torch-backend model is an nn.Module
    assert dict(live.not_weights)["/layers/gru/cell/vars/2"] == "2-D bias of a layer"  # as in the file


def test_live_models_inside_a_mapping_are_each_read_as_alone_under_their_keys(keras):
    """{'generator': G, 'critic': D} of live Keras models: each model's rows as it gives alone, named
    '<key>.<row>', and the mapping's other values read as a mapping is (a torch module by its state dict). A model held twice, or inside another model of the mapping (a GAN built
    of its generator), is one tensor under two names: analysed once. A torch-backend model is an nn.Module, and had
    been read as its state dict (kernels in Keras' layout read as PyTorch's, a Conv2D's (kh, kw, in, out) as (out,
    in, kh, kw); attention biases as 2 x 4 matrices; names of its internals, 'generator._torch_params.attn/query/
    kernel'); then it was refused."""
    torch = pytest.importorskip("torch")
    L = keras.layers
    model = _toy_model(keras)
    critic = keras.Sequential([keras.Input((20,)), L.Dense(12, name="feat"), L.Dense(1, name="score")], name="critic")

    def rows(source, prefix=""):
        return [(prefix + r.name, r.kind, r.lambda_max, f"{r.alpha!r}")  # (repr: nan equals nan)
                for r in htsr.analyze(source, min_evals=2).layers]

    alone = rows(model)
    assert len(alone) > 10 and {k for _, k, *_ in alone} >= {"embedding", "dense", "rnn", "conv2d", "conv1d"}
    both = htsr.analyze({"generator": model, "critic": critic}, min_evals=2)
    assert both.source == "<mapping> (live Keras models: generator, critic)"
    assert rows({"generator": model, "critic": critic}) == rows(model, "generator.") + rows(critic, "critic.")
    # its 1-D variables listed as alone, by their paths in a weights file after the key
    listed = [n for e in both.not_analysed for n in e.examples]
    assert any(n.startswith("generator/layers/") for n in listed) and not any("./" in n for n in listed)

    linear = torch.nn.Linear(30, 40)
    mixed = htsr.analyze({"gan": [critic, linear], "step": 7}, min_evals=2)
    assert mixed.source == "<mapping> (live Keras models: gan.0, its other values)"
    assert [(r.name, r.kind, r.lambda_max) for r in mixed.layers] == (
        [(n, k, lam) for n, k, lam, _ in rows(critic, "gan.0.")]
        + [("gan.1", "dense", htsr.analyze(linear, min_evals=2).layers[0].lambda_max)])
    # (the rest as the mapping {'gan': {'1': linear}, 'step': 7} reads: a checkpoint's step counter passed over)
    assert ("bias or norm buffer", ("gan.1.bias", "gan.0/layers/dense/vars/1", "gan.0/layers/dense_1/vars/1")) in {
        (e.reason, e.examples) for e in mixed.not_analysed}  # (the Keras Dense biases in the same words)

    gan = keras.Sequential([keras.Input((20,)), L.Dense(20, name="g"), critic], name="gan")
    tied = htsr.analyze({"critic": critic, "gan": gan}, min_evals=2)
    assert [r.name for r in tied.layers] == ["critic.feat", "critic.score", "gan.g"]
    assert {(e.reason, e.examples) for e in tied.not_analysed} >= {
        ("the same tensor as critic.feat (tied weights): analysed once", ("gan.critic.feat",)),
        ("the same tensor as critic.score (tied weights): analysed once", ("gan.critic.score",))}

    unbuilt = keras.Sequential([L.Dense(4)], name="later")
    with pytest.raises(SourceError, match=r"^<mapping>: models\.1: <Sequential 'later'>: the model is not built"):
        htsr.analyze({"models": [critic, unbuilt]})


def _wide_model(keras):
    """Every layer class of the mapping, at sizes where most rows are fitted."""
    L = keras.layers
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    h = L.Embedding(300, 64, name="embed")(tokens)
    h = L.MultiHeadAttention(num_heads=4, key_dim=16, name="mha")(h, h)
    h = L.EinsumDense("abc,cd->abd", output_shape=(12, 96), bias_axes="d", name="ffn_in")(h)
    h = L.EinsumDense("abc,bcd->abd", output_shape=(12, 48), name="per_position")(h)
    h = L.LSTM(32, return_sequences=True, name="lstm")(h)
    h = L.Bidirectional(L.GRU(16, return_sequences=True), name="bi")(h)
    h = L.GroupQueryAttention(head_dim=8, num_query_heads=4, num_key_value_heads=2, name="gqa")(h, h)
    h = L.TimeDistributed(L.Dense(40), name="td")(h)
    h = L.SimpleRNN(24, name="srnn")(h)
    image = keras.Input((12, 12, 8), name="image")
    x = L.Conv2D(48, 3, name="conv")(image)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.SeparableConv2D(64, 3, name="sep")(x)
    x = L.Conv2DTranspose(32, 3, name="deconv")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    signal = keras.Input((40, 6), name="signal")
    s = L.Conv1D(24, 5, name="conv1d")(signal)
    s = L.LayerNormalization(name="ln")(s)
    s = L.Flatten(name="flat")(s)
    volume = keras.Input((4, 4, 4, 2), name="volume")
    v = L.Flatten(name="vflat")(L.Conv3D(3, 2, name="c3")(volume))  # a Conv3D kernel: a conv3d row
    width = 24 + 32 + 3 * 3 * 3 * 3 + 36 * 24  # srnn, pool, c3 flattened, conv1d flattened
    block = keras.Sequential([keras.Input((width,)), keras.Sequential([L.Dense(80, name="inner"), L.Dense(64, name="inner_2")],
                                               name="stack"),
                              L.Dense(48, dtype="bfloat16", name="half")], name="block")
    out = block(L.Concatenate(name="cat")([L.Concatenate(name="cat0")([h, x, v]), s]))
    return keras.Model([tokens, image, signal, volume], [out], name="wide")


def test_live_and_saved_model_give_identical_rows(keras, tmp_path):
    """htsr.analyze(model) and htsr.analyze(model.save(path) … path): the same rows, numbers included
    (the weights are the same float32 values, oriented by the same plans)."""
    keras.utils.set_random_seed(0)
    model = _wide_model(keras)
    live, _ = _same_as_saved(keras, model, tmp_path / "wide.keras")
    kinds = {r.name: r.kind for r in live}
    assert kinds["embed"] == "embedding" and kinds["mha.query"] == kinds["gqa.key"] == "dense"
    assert kinds["per_position"] == "stack" and kinds["lstm.recurrent_kernel"] == kinds["srnn.kernel"] == "rnn"
    assert kinds["dw"] == kinds["sep.depthwise"] == kinds["deconv"] == "conv2d" and kinds["conv1d"] == "conv1d"
    assert kinds["block.stack.inner"] == kinds["block.half"] == "dense" and "bi.backward_layer.kernel" in kinds
    assert kinds["c3"] == "conv3d" and not any("c3" in p or "conv3d" in p for p, _ in live.skipped)
    k3 = next(r for r in live if r.name == "c3")  # [kd, kh, kw, c_in, c_out] → [c_out, c_in, kd, kh, kw]
    stored = keras.ops.convert_to_numpy(model.get_layer("c3").kernel)
    np.testing.assert_array_equal(k3.load(), np.transpose(stored, (4, 3, 0, 1, 2)))
    by_model, by_file = htsr.analyze(model), htsr.analyze(tmp_path / "wide.keras")
    assert _rows(by_model) == _rows(by_file)
    fitted = [r for r in by_model.layers if r.status == "ok"]
    assert len(fitted) >= 10
    for r, f in zip(by_model.layers, by_file.layers, strict=True):
        assert (r.name, r.kind, r.shape) == (f.name, f.kind, f.shape)
        assert r.alpha == f.alpha or (np.isnan(r.alpha) and np.isnan(f.alpha)), r.name
        assert r.lambda_max == f.lambda_max or (np.isnan(r.lambda_max) and np.isnan(f.lambda_max)), r.name
    assert by_model.source == "<Functional 'wide'>"


def test_live_subclassed_model(keras, tmp_path):
    """A subclassed model has no layer configs in its file: the names still match (the walk is the
    one model.save makes), and where the file can only guess a class the live model knows it."""
    L = keras.layers

    class Block(L.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.attn = L.MultiHeadAttention(num_heads=2, key_dim=8)
            self.ffn = [L.Dense(32), L.Dense(16)]

        def call(self, x):
            x = self.attn(x, x)
            for d in self.ffn:
                x = d(x)
            return x

    class Scaled(L.Dense):  # a subclass of a known layer: its variables are a Dense's
        def call(self, x):
            return 2.0 * super().call(x)

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.embedding = L.Embedding(40, 16)  # attribute names a known class: the file guesses it
            self.block = Block()
            self.head = L.Embedding(40, 16, name="positions")  # no hint in the file
            self.codes = L.Embedding(40, 16)  # the file stores its default name, embedding_<n>: the hint
            self.boost = Scaled(16, name="boost")  # the file: a custom class; live: a Dense
            self.proj = L.Dense(8)  # after 'layers' in dir(): saved as layers/dense, named so (its own name,
            # dense_<n>, is Keras's count of the Dense layers made in the process: no name of this model's)

        def call(self, t):
            return self.proj(self.block(self.boost(self.embedding(t) + self.head(t) + self.codes(t))))

    keras.utils.set_random_seed(1)
    model = Net()
    model(np.zeros((2, 5), dtype="int32"))
    path = tmp_path / "net.keras"
    model.save(path)
    live, saved = KerasModel(model), KerasFile(path)
    got = {r.name: (r.kind, r.shape) for r in live}
    assert got == {
        "block.attn.query": ("dense", (16, 16)), "block.attn.key": ("dense", (16, 16)),
        "block.attn.value": ("dense", (16, 16)), "block.attn.attention_output": ("dense", (16, 16)),
        "block.ffn.dense": ("dense", (32, 16)), "block.ffn.dense_1": ("dense", (16, 32)),
        "embedding": ("embedding", (40, 16)), "head": ("embedding", (40, 16)), "dense": ("dense", (8, 16)),
        "codes": ("embedding", (40, 16)), "boost": ("dense", (16, 16)),
    }
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
        names_stored = "name" in f["codes/vars"].attrs  # Keras 3.8 stores each layer's name, 3.5 not
    # the file cannot tell what these layers are: an Embedding's table of a name of the user's is a bias-free
    # Dense's kernel as well ('boost', a Dense of a custom class, is one by its kernel [in, out] and bias [out])
    unknown = ["head"] + ([] if names_stored else ["codes"])
    want_file = {(f"{n}.vars.0" if n in unknown else n): ((None, s) if n in unknown else (k, s))
                 for n, (k, s) in got.items()}
    assert {r.name: (r.kind, r.shape) for r in saved} == want_file
    files = {r.name: r for r in saved}
    for r in live:
        np.testing.assert_array_equal(r.load(), files[f"{r.name}.vars.0" if r.name in unknown else r.name].load())
    rows_live = [r for r in _rows(htsr.analyze(model, min_evals=2)) if r["name"] not in unknown]
    rows_file = [r for r in _rows(htsr.analyze(path, min_evals=2)) if r["name"].removesuffix(".vars.0") not in unknown]
    assert rows_live == rows_file


def test_live_model_is_not_modified(keras):
    keras.utils.set_random_seed(2)
    model = _wide_model(keras)
    before = [np.array(w, copy=True) for w in model.get_weights()]
    src = KerasModel(model)
    for r in src:  # a loaded tensor is the caller's: writing to it does not reach the model
        a = r.load()
        if a.dtype.kind == "f":
            a[...] = 7.0
    htsr.analyze(model, randomize=True)
    after = model.get_weights()
    assert len(after) == len(before)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have")  # model.quantize on its input layer
def test_live_bare_layer_quantized_and_unbuilt(keras):
    L = keras.layers
    dense = L.Dense(12, name="lonely")
    with pytest.raises(SourceError) as ei:
        KerasModel(dense)  # not built: no weights yet
    _one_line_source_error(ei, "lonely", "build")
    dense.build((None, 20))
    # built with no weights at all (a Dropout): nothing to read, but no "not built" refusal either
    dropout = L.Dropout(0.1, name="drop")
    dropout.build((None, 20))
    assert list(KerasModel(dropout)) == []
    assert is_keras_object(dense) and is_keras_object(keras.Sequential())
    refs = {r.name: r for r in KerasModel(dense)}
    assert {n: (r.kind, r.shape) for n, r in refs.items()} == {"lonely": ("dense", (12, 20))}
    np.testing.assert_array_equal(refs["lonely"].load(), keras.ops.convert_to_numpy(dense.kernel).T)


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have")  # model.quantize on its input layer
def test_int8_quantized_dense_and_embedding_are_dequantized_as_keras_computes(keras, tmp_path):
    """model.quantize("int8"): Dense stores int8 kernel [in, units] and kernel_scale [units], Embedding int8
    embeddings [vocab, dim] and embeddings_scale [vocab]; the weights are the codes over their scale (the
    layers were listed as 'integer buffer', and a fully quantized model refused as having no weight matrix).
    Other quantized kernels (int4 here) get a skipped row saying so."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((None,), dtype="int32")
    out = L.Dense(80, name="b", use_bias=False)(L.Dense(96, name="a")(L.Embedding(120, 64, name="emb")(inp)))
    model = keras.Model(inp, out, name="q")
    model.quantize("int8")
    model.save(tmp_path / "q.keras")
    model.save_weights(tmp_path / "q.weights.h5")  # no config, no mode: the layout decides

    def np_(v):
        return keras.ops.convert_to_numpy(v).astype(np.float32)

    expected = {n: np_(model.get_layer(n)._kernel) / np_(model.get_layer(n).kernel_scale) for n in ("a", "b")}
    emb = model.get_layer("emb")
    expected["emb"] = np_(emb._embeddings) / np_(emb.embeddings_scale)[:, None]
    for src in (model, tmp_path / "q.keras", tmp_path / "q.weights.h5"):
        rows = {r.name.replace("embedding", "emb").replace("dense_1", "b").replace("dense", "a"): r
                for r in htsr.analyze(src, precision="accurate", min_evals=10).layers}  # (.weights.h5: entry names)
        assert set(rows) == {"emb", "a", "b"} and all(r.status == "ok" for r in rows.values()), src
        assert rows["emb"].kind == "embedding" and rows["a"].kind == rows["b"].kind == "dense"
        for name, W in expected.items():
            lam = np.linalg.svd(W.astype(np.float64), compute_uv=False)[0] ** 2
            # the same float32 quotients, SVD'd in float64 by both: 1e-12
            assert rows[name].lambda_max == pytest.approx(lam, rel=1e-12), (src, name)
    assert {r.bits for r in KerasFile(tmp_path / "q.keras")} == {8}  # the codes' width: a delta's noise floor
    int4 = keras.Sequential([keras.Input((16,)), L.Dense(24, name="c")], name="q4")
    int4.quantize("int4")
    (row,) = htsr.analyze(int4, min_evals=2).layers
    # (said as int4, packed, not as the int8 it is stored in: the row's shape is the packed one)
    assert row.status.startswith("skipped: int4 codes (packed two to an int8: the shape shown is the packed one) of a quantized Keras layer that htsr "
                                 "does not dequantize")
    # Keras 3.11-3.12 store an int4 Dense as packed int8 [in/2, units] beside a [units] scale, int8's layout
    # with half the rows: only the config's mode tells them apart (the same archive, its mode said int4)
    with zipfile.ZipFile(tmp_path / "q.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["config.json"] = members["config.json"].replace(b'"mode": "int8"', b'"mode": "int4"')
    with zipfile.ZipFile(tmp_path / "q4.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    rows = {r.name: r.status for r in htsr.analyze(tmp_path / "q4.keras", min_evals=10).layers}
    assert all(st.startswith("skipped: int4 codes (packed two to an int8: the shape shown is the packed one) of a quantized Keras layer") for st in rows.values()), rows


def test_open_source_refuses_other_objects_naming_keras():
    from htsr.io import SUPPORTED, open_source

    assert "Keras 3 model" in SUPPORTED
    with pytest.raises(SourceError) as ei:
        open_source(object())
    _one_line_source_error(ei, "Keras 3 model")


def test_a_custom_attention_layers_gemma_style_projections_are_read_right_from_every_file(keras, tmp_path):
    """keras_hub's Gemma attention: query_dense is EinsumDense("btd,ndh->btnh"), kernel [heads, dim, head_dim],
    not MultiHeadAttention's [dim, heads, head_dim]; the custom layer saves no config for it. Every file
    gave a 1024 x 4 matrix; the model width is the larger of the first two axes."""
    L = keras.layers

    @keras.saving.register_keras_serializable(package="htsr_test")
    class GemmaStyleAttention(L.Layer):
        def build(self, shape):
            self.query_dense = L.EinsumDense("btd,ndh->btnh", output_shape=(None, 4, 16), name="query")
            self.query_dense.build(shape)
            self.output_dense = L.EinsumDense("btnh,nhd->btd", output_shape=(None, shape[-1]), name="attention_output")
            self.output_dense.build((None, None, 4, 16))

        def call(self, x):
            return self.output_dense(self.query_dense(x))

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 64))
    model = keras.Model(inp, GemmaStyleAttention(name="attn")(inp), name="g")
    _saved_every_way(model, tmp_path, "g")
    k = keras.ops.convert_to_numpy(model.get_layer("attn").query_dense.kernel)  # [4, 64, 16]
    truth = np.linalg.svd(k.transpose(1, 0, 2).reshape(64, 64).astype(np.float64), compute_uv=False) ** 2
    for src in (model, tmp_path / "g.keras", tmp_path / "g.weights.h5", tmp_path / "g.h5"):
        q = next(r for r in htsr.analyze(src, precision="accurate", min_evals=10).layers if r.name.endswith("query"))
        assert (q.shape, q.num_evals) == ("64x64", 64), src
        assert q.lambda_max == pytest.approx(truth[0], rel=1e-12), src  # the same float64 SVD of the same values


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_a_custom_layers_key_and_value_attributes_are_rows_of_their_own_kernels(keras, tmp_path):
    """A custom attention layer holding its projections as attributes self.query / self.key / self.value
    (EinsumDense, no config htsr reads): each row is named after its attribute and holds that attribute's
    kernel [dim, heads, head_dim] as [heads·head_dim, dim]. value has a wider head than key, so a swap of the
    two is a wrong shape as well as wrong values. From the live model and every file it is saved as."""
    L = keras.layers

    @keras.saving.register_keras_serializable(package="htsr_test")
    class KeyValueAttention(L.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.query = L.EinsumDense("btd,dnh->btnh", output_shape=(None, 2, 3), name="query")
            self.key = L.EinsumDense("btd,dnh->btnh", output_shape=(None, 2, 3), name="key")
            self.value = L.EinsumDense("btd,dnh->btnh", output_shape=(None, 2, 5), name="value")

        def build(self, shape):
            for sub in (self.query, self.key, self.value):
                sub.build(shape)

        def call(self, x):
            return self.value(x)

    keras.utils.set_random_seed(0)
    inp = keras.Input((7, 8))
    model = keras.Model(inp, KeyValueAttention(name="attn")(inp), name="kv")
    _saved_every_way(model, tmp_path, "kv")
    attn = model.get_layer("attn")
    want = {f"attn.{a}": keras.ops.convert_to_numpy(getattr(attn, a).kernel).reshape(8, -1).T
            for a in ("query", "key", "value")}
    assert {n: w.shape for n, w in want.items()} == {"attn.query": (6, 8), "attn.key": (6, 8), "attn.value": (10, 8)}
    sources = {"live": KerasModel(model),
               **{f: KerasFile(tmp_path / f) for f in ("kv.keras", "kv.weights.h5", "kv.h5")}}
    for src, refs in sources.items():
        got = {r.name: r for r in refs}
        assert list(got) == list(want), src
        for name, w in want.items():
            assert (got[name].kind, got[name].shape) == ("dense", w.shape), (src, name)
            np.testing.assert_array_equal(got[name].load(), w, err_msg=f"{src}: {name}")  # exact: regrouped copy


def test_a_big_endian_float64_kernel_stays_float64(tmp_path):
    """'>f8' is not np.float64 by ==: it was narrowed to float32 (eigenvalues off by ~1e-8 relative)."""
    W = np.random.default_rng(3).standard_normal((20, 16))
    path = _weights_h5(tmp_path / "be.weights.h5", lambda f: f.create_dataset(
        "layers/dense_1/vars/0", data=W.astype(">f8")))
    ref = next(r for r in KerasFile(path) if r.name == "dense_1")
    a = ref.load()
    assert a.dtype == np.float64 and a.dtype.isnative
    np.testing.assert_array_equal(a, W.T)  # exact: the same float64 values


def test_a_lora_enabled_dense_in_a_legacy_h5_is_its_merged_kernel(keras, tmp_path):
    """enable_lora(r): the .keras file and the live model hold W + (alpha / r)·A·B; a legacy .h5 holds W, A and B
    (alpha and r in the model config). It gave W under the layer's name and A, B as two dense layers."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((40,), dtype="int32")
    model = keras.Model(inp, L.Dense(64, name="fc")(L.Embedding(200, 48, name="emb")(inp)), name="lora")
    rng = np.random.default_rng(1)
    fc, emb = model.get_layer("fc"), model.get_layer("emb")
    fc.enable_lora(4, lora_alpha=8.0)
    fc.lora_kernel_b.assign(rng.standard_normal((4, 64)).astype("float32"))
    emb.enable_lora(3)
    emb.lora_embeddings_b.assign(rng.standard_normal((3, 48)).astype("float32"))
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    lam = {n: np.linalg.svd(keras.ops.convert_to_numpy(w).astype(np.float64), compute_uv=False)[0] ** 2
           for n, w in (("fc", fc.kernel), ("emb", emb.embeddings))}  # the merged weights Keras computes with
    for src in (model, tmp_path / "m.keras", tmp_path / "m.h5"):
        r = {x.name: x for x in htsr.analyze(src, precision="accurate", min_evals=10).layers}
        assert {n: x.shape for n, x in r.items()} == {"emb": "200x48", "fc": "64x48"}, src
        for n in ("fc", "emb"):
            # the .h5's merge is computed by htsr in float32, Keras's in float32 too: ~1e-6
            assert r[n].lambda_max == pytest.approx(lam[n], rel=1e-5), (src, n)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_a_legacy_lora_layer_whose_config_rank_differs_from_its_factors_gets_a_skipped_row(keras, tmp_path):
    """A legacy .h5 holds W, A [in, r] and B [r, out]; the merge W + (alpha / lora_rank)·A·B takes lora_rank from
    the model config. A config whose lora_rank (2) is not the factors' rank (4) gives a merge Keras never
    computes (alpha/2 for alpha/4): the layer gets a skipped row, not a wrong kernel. The file as saved is
    Keras's merged kernel."""
    from htsr.errors import LayerSkipped

    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((40,))
    model = keras.Model(inp, L.Dense(64, name="fc")(inp), name="lora")
    fc = model.get_layer("fc")
    fc.enable_lora(4, lora_alpha=8.0)
    fc.lora_kernel_b.assign(np.random.default_rng(1).standard_normal((4, 64)).astype("float32"))
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        config = f.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
    assert config.count('"lora_rank": 4') == 1
    bad = tmp_path / "rank2.h5"
    bad.write_bytes((tmp_path / "m.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["model_config"] = config.replace('"lora_rank": 4', '"lora_rank": 2')
    merged = keras.ops.convert_to_numpy(fc.kernel).T  # the kernel Keras computes with, W + (8/4)·A·B
    (ok,) = KerasFile(tmp_path / "m.h5")
    # float32 rounding: htsr's A·B may sum in another order than Keras's (measured equal here); a few ulps of
    # the largest entry (~3.3, ulp 2.4e-7) at most
    np.testing.assert_allclose(ok.load(), merged, rtol=1e-5, atol=1e-6)
    (ref,) = KerasFile(bad)
    assert (ref.name, ref.shape) == ("fc", (64, 40))
    reason = ("a LoRA-enabled layer whose factors or lora_rank (model config) do not fit its kernel: "
              "analyse the model saved as .keras, which stores the merged kernel")
    with pytest.raises(LayerSkipped, match="lora_rank"):
        ref.load()
    (row,) = htsr.analyze(bad, min_evals=5).layers
    assert (row.name, row.status) == ("fc", f"skipped: {reason}")


def test_attention_output_with_an_output_shape_is_read_without_a_config(keras, tmp_path):
    """MultiHeadAttention(output_shape=(6, 8)): its output kernel is [heads, head_dim, 6, 8], the first two
    axes the input. A .weights.h5 (no config) gave an 8 x 180 matrix instead of 48 x 30."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 12))
    model = keras.Model(inp, keras.layers.MultiHeadAttention(3, 10, output_shape=(6, 8), name="mha")(inp, inp))
    model.save_weights(tmp_path / "m.weights.h5")
    k = keras.ops.convert_to_numpy(model.get_layer("mha")._output_dense.kernel).astype(np.float64)  # [3, 10, 6, 8]
    lam = np.linalg.svd(k.reshape(30, 48), compute_uv=False)[0] ** 2
    for src in (model, tmp_path / "m.weights.h5"):
        row = next(r for r in htsr.analyze(src, precision="accurate", min_evals=10).layers
                   if r.name.endswith("attention_output"))
        # (float64 SVDs of the same values, one of the transpose: rounding only)
        assert row.shape == "48x30" and row.lambda_max == pytest.approx(lam, rel=1e-12), src


def test_a_weights_only_keras2_file_does_not_guess_a_long_3d_kernel_is_a_conv(tmp_path):
    """Without a model config a 3-D kernel's class is unknown: [3, 16, 8] is read as a Conv1D kernel (kernel
    size 3), but an EinsumDense 'abc,cde->abde' kernel [40, 4, 10] is no conv (a 40-tap kernel, htsr's own
    limit is 32): it is listed with the reason instead of analysed as 40 slices of 10 x 4."""
    rng = np.random.default_rng(0)
    path = write_legacy(tmp_path / "w.h5", {"c": [("c/kernel:0", rng.standard_normal((3, 16, 8)).astype("f4"))],
                                            "ein3": [("ein3/kernel:0", rng.standard_normal((40, 4, 10)).astype("f4"))]},
                        None, weights_only=True)
    r = htsr.analyze(path, min_evals=5)
    assert [(x.name, x.kind, x.num_matrices) for x in r.layers] == [("c", "conv1d", 3)]
    (skipped,) = [n for n in r.not_analysed if "no class" in n.reason]
    assert skipped.examples == ("/ein3/ein3/kernel:0",) and "no model config" in skipped.reason


def test_layer_attributes_named_like_training_state_are_layers(keras, tmp_path):
    """A subclassed model's aux_loss_head, head_for_metric, ctx_tracker are layers: they were dropped with the
    optimizer because their keys contain loss / metric / tracker. So is compile_loss_head, whose key only starts
    with a training-state name (the whole key is matched, not its start). The optimizer's moments stay out."""
    L = keras.layers

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.body = L.Dense(64)
            self.aux_loss_head = L.Dense(48)
            self.head_for_metric = L.Dense(40)
            self.ctx_tracker = L.Embedding(100, 32)
            self.compile_loss_head = L.Dense(36)

        def call(self, x):
            h = self.body(x)
            return (self.aux_loss_head(h)[..., :2] + 0 * self.head_for_metric(h)[..., :2]
                    + 0 * self.compile_loss_head(h)[..., :2])

    keras.utils.set_random_seed(0)
    net = Net()
    net.compile(optimizer="adam", loss="mse", metrics=["mae"])
    net.fit(np.ones((4, 30), "float32"), np.ones((4, 2), "float32"), verbose=0)
    net.ctx_tracker(np.zeros((1, 2), "int32"))
    net.save(tmp_path / "net.keras")
    for src in (net, tmp_path / "net.keras"):
        r = htsr.analyze(src, min_evals=10)
        assert sorted(x.name for x in r.layers) == ["aux_loss_head", "body", "compile_loss_head", "ctx_tracker",
                                                    "head_for_metric"], src
        assert r.num_tensors == 9, src  # 5 matrices and 4 biases; no optimizer moment


def test_element_wise_2d_parameters_are_no_weight_matrices(keras, tmp_path):
    """PReLU's alpha (the input's shape), LayerNormalization and Normalization over two axes: 2-D variables
    that scale entries one by one. They gave dense rows (all-zero 'failed', or fits of data statistics)."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((60, 64))
    norm = L.Normalization(axis=(-2, -1), name="norm2d")
    norm.adapt(np.random.default_rng(0).standard_normal((4, 60, 64)).astype("float32"))
    x = norm(L.LayerNormalization(axis=(-2, -1), name="ln2d")(L.PReLU(name="prelu")(inp)))
    model = keras.Model(inp, L.Dense(32, name="fc")(x), name="elem")
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    for src in (model, tmp_path / "m.keras", tmp_path / "m.h5"):
        r = htsr.analyze(src, min_evals=10)
        assert [x.name for x in r.layers] == ["fc"], src
        reasons = {n.reason.removeprefix("passed over by the reader: "): n.count for n in r.not_analysed}
        for cls, count in (("PReLU", 1), ("LayerNormalization", 2), ("Normalization", 2)):
            assert reasons[f"element-wise parameters of a {cls} layer, no weight matrix"] == count, (src, cls)


def test_an_untied_reversible_embeddings_output_matrix_is_a_layer(keras, tmp_path):
    """ReversibleEmbedding(tie_weights=False), the LM head of keras_hub's Llama family: its reverse_embeddings
    [dim, vocab] is the output projection, a dense [vocab, dim] row (it was 'a bias or state')."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    t = keras.Input((8,), dtype="int32")
    emb = L.ReversibleEmbedding(500, 64, tie_weights=False, name="tok")
    model = keras.Model(t, emb(L.Dense(64, name="body")(emb(t)), reverse=True), name="lm")
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    head = keras.ops.convert_to_numpy(emb.reverse_embeddings).astype(np.float64)
    lam = np.linalg.svd(head, compute_uv=False)[0] ** 2
    for src in (model, tmp_path / "m.keras", tmp_path / "m.h5"):
        rows = {x.name: x for x in htsr.analyze(src, precision="accurate", min_evals=10).layers}
        assert set(rows) == {"tok", "tok.reverse_embeddings", "body"}, src
        head_row = rows["tok.reverse_embeddings"]
        assert (head_row.kind, head_row.shape) == ("dense", "500x64"), src
        assert head_row.lambda_max == pytest.approx(lam, rel=1e-12), src  # float64 SVDs, same values: rounding


def test_keras3_legacy_h5_reads_depthwise_and_time_distributed_convs(keras, tmp_path):
    """Keras 3 names a DepthwiseConv's variable 'kernel' (Keras 2: depthwise_kernel), and TimeDistributed keeps
    its layer's config under 'layer': from a Keras 3 .h5 both were passed over (the same values as .keras)."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 16, 16, 8))
    x = L.TimeDistributed(L.Conv2D(32, 3), name="td_conv")(inp)
    x = L.Reshape((4 * 14, 14, 32))(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw2")(x)
    model = keras.Model(inp, x, name="dwtd")
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    def rows(path):  # (the two formats name the TimeDistributed layer's row differently)
        return sorted((r.kind, r.shape, r.lambda_max) for r in htsr.analyze(path, precision="accurate",
                                                                              min_evals=2).layers)

    assert [(k, s) for k, s, _ in rows(tmp_path / "m.h5")] == [("conv2d", "32x8x3x3"), ("conv2d", "64x1x3x3")]
    assert rows(tmp_path / "m.h5") == rows(tmp_path / "m.keras")  # the same values, the same code


def test_a_live_layer_that_cannot_list_its_variables_gets_a_row_and_the_others_go_on(keras):
    L = keras.layers

    class Fragile(L.Dense):
        def save_own_variables(self, store):
            raise RuntimeError("not serializable on this backend")

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    model = keras.Model(inp, L.Dense(8, name="fc2")(Fragile(24, name="fragile")(L.Dense(32, name="fc1")(inp))))
    status = {r.name: r.status for r in htsr.analyze(model, min_evals=2).layers}
    assert status["fc1"] == status["fc2"] == "ok"
    assert status["fragile"] == ("skipped: Fragile.save_own_variables failed, so its variables cannot be listed "
                                 "(RuntimeError: not serializable on this backend)")


def test_a_live_model_keras_cannot_serialize_lists_its_layers_in_the_models_order(keras):
    """A model with a layer whose config Keras cannot write (an object argument: get_config raises) has no
    config.json to match its layers to; its rows still come by the model's own layer list, in its order and
    by the layers' names (without it they came in the entries' alphabetical order: dense, dense_1, scaled)."""
    L = keras.layers

    class Scaled(L.Layer):
        def __init__(self, table, **kw):
            super().__init__(**kw)
            self.table = table

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 6), name="w")

        def call(self, x):
            return keras.ops.matmul(x, self.w)

    keras.utils.set_random_seed(0)
    i = keras.Input((16,))
    net = keras.Model(i, L.Dense(4, name="head")(Scaled(object(), name="scaled")(L.Dense(8, name="stem")(i))))
    with pytest.raises(NotImplementedError):
        keras.saving.serialize_keras_object(net)
    assert [(r.name, r.kind, r.shape) for r in KerasModel(net)] == [
        ("stem", "dense", (8, 16)), ("scaled.vars.0", None, (8, 6)), ("head", "dense", (4, 6))]


def test_broken_keras_archives_are_named_and_one_bad_layer_config_does_not_stop_the_run(keras, tmp_path):
    """A .keras zip missing a member said 'neither .npz nor a PyTorch checkpoint'; one layer's malformed
    config (a list) failed the whole archive, blamed on its weights file."""
    L = keras.layers
    inp = keras.Input((32,))
    keras.Model(inp, L.Dense(64, name="fc")(L.Dense(48, name="fc0")(inp)), name="tiny").save(tmp_path / "t.keras")
    with zipfile.ZipFile(tmp_path / "t.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}

    def write(name, d):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for k, v in d.items():
                z.writestr(k, v)
        return tmp_path / name

    for missing, says in (("model.weights.h5", "a zip archive without model.weights.h5"),
                          ("config.json", "a .keras archive without config.json")):
        with pytest.raises(SourceError) as ei:
            htsr.analyze(write(f"no_{missing}.keras", {k: v for k, v in members.items() if k != missing}))
        _one_line_source_error(ei, says)
    cfg = json.loads(members["config.json"])
    cfg["config"]["layers"][1]["config"] = [1, 2]
    r = htsr.analyze(write("bad.keras", {**members, "config.json": json.dumps(cfg).encode()}), min_evals=2)
    assert [x.status for x in r.layers] == ["ok", "ok"]


def test_sharded_keras_weights_are_refused_not_read_as_one_shard(keras, tmp_path):
    """save_weights('sh.weights.json', max_shard_size=…) writes an index and sh_00000.weights.h5 …: one shard
    was analysed as the whole model (1 layer of 4, no word), the index was an 'unknown file format'."""
    m = keras.Sequential([keras.Input((64,))] + [keras.layers.Dense(128, name=f"d{i}") for i in range(4)])
    m.save_weights(tmp_path / "sh.weights.json", max_shard_size=0.00007)
    shards = sorted(tmp_path.glob("sh_*.weights.h5"))
    assert len(shards) > 1
    for path, says in ((shards[0], "one shard of Keras weights sharded by sh.weights.json"),
                       (tmp_path / "sh.weights.json", "the index of Keras weights sharded")):
        with pytest.raises(htsr.SourceError) as ei:
            htsr.analyze(path)
        _one_line_source_error(ei, str(path), says, "save them whole")
    with pytest.raises(htsr.SourceError) as ei:  # the folder (it said "give one", then refused the one given)
        htsr.analyze(tmp_path)
    _one_line_source_error(ei, str(tmp_path / "sh.weights.json"), "the index of Keras weights sharded")
    m.save_weights(tmp_path / "whole_00001.weights.h5")  # a name like a shard's, without an index: read
    assert len(htsr.analyze(tmp_path / "whole_00001.weights.h5", min_evals=2).layers) == 4


def test_a_bfloat16_layer_in_a_keras3_legacy_h5_is_read(keras, tmp_path):
    """Keras 3's legacy .h5 writer stores bfloat16 as an opaque 2-byte type ('void16'): the bytes are the
    bfloat16 values (the layer was dropped as a 'void16 tensor')."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((30,))
    model = keras.Model(inp, L.Dense(48, name="fc_f32")(L.Dense(64, dtype="bfloat16", name="fc_bf16")(inp)))
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "m.keras")
    rows = lambda p: {r.name: (r.shape, r.lambda_max) for r in htsr.analyze(p, min_evals=10).layers}  # noqa: E731
    assert rows(tmp_path / "m.h5") == rows(tmp_path / "m.keras")  # the same bfloat16 values
    assert set(rows(tmp_path / "m.h5")) == {"fc_bf16", "fc_f32"}


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("which", ["functional", "sequential"])
def test_a_model_has_the_same_rows_in_the_same_order_from_every_format_with_a_config(keras, tmp_path, which):
    """A live model, its .keras and its legacy .h5 (model.save) name, order and orient its rows alike:
    attention projections query, key, value, output (a Keras 3 file lists them alphabetically); a
    Bidirectional's forward then backward layer, and a wrapper's inner layer under the attribute Keras 3
    names it by (legacy .h5 names them forward_gru, backward_gru, dense). So rows from two formats pair up
    by name in compare and --base. A Sequential model's .h5 names each weight under the model's name too
    (``seq/fc1/kernel``): its rows were ``fc1.seq.fc1``."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = _wide_model(keras) if which == "functional" else keras.Sequential([
        keras.Input((10, 6)), L.Conv1D(16, 3, name="c"), L.LSTM(12, return_sequences=True, name="lstm"),
        L.Bidirectional(L.GRU(8), name="bi"), L.Dense(20, name="fc1"), L.Dense(5, name="fc2")], name="seq")
    model.save(tmp_path / "wide.keras")
    model.save(tmp_path / "wide.h5")
    live = KerasModel(model)
    names = [r.name for r in live]
    if which == "functional":
        assert names[names.index("mha.query"):names.index("mha.query") + 4] == [
            "mha.query", "mha.key", "mha.value", "mha.attention_output"]
        assert "td.layer" in names
    else:
        assert names[-2:] == ["fc1", "fc2"]
    assert names.index("bi.forward_layer.kernel") < names.index("bi.backward_layer.kernel")
    for path in (tmp_path / "wide.keras", tmp_path / "wide.h5"):
        saved = KerasFile(path)
        assert [r.name for r in saved] == names, path.name
        for a, b in zip(live, saved, strict=True):
            assert (a.kind, a.shape) == (b.kind, b.shape), a.name
            np.testing.assert_array_equal(a.load(), b.load(), err_msg=f"{path.name}: {a.name}")


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_a_given_backward_layer_is_named_backward_layer_in_a_legacy_h5(keras, tmp_path):
    """Bidirectional(backward_layer=LSTM(name='bw')): the legacy file names it 'bw', Keras 3 files and the
    live model by its attribute: one name, backward_layer, from all of them."""
    L = keras.layers
    x = keras.Input((5, 6))
    y = L.Bidirectional(L.LSTM(4, return_sequences=True),
                        backward_layer=L.LSTM(4, return_sequences=True, go_backwards=True, name="bw"), name="bi")(x)
    model = keras.Model(x, y)
    model.save(tmp_path / "m.h5")
    want = ["bi.forward_layer.kernel", "bi.forward_layer.recurrent_kernel",
            "bi.backward_layer.kernel", "bi.backward_layer.recurrent_kernel"]
    assert [r.name for r in KerasModel(model)] == want
    assert [r.name for r in KerasFile(tmp_path / "m.h5")] == want


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_conv_lstm_kernels_are_two_convolutions_from_every_format(keras, tmp_path):
    """ConvLSTM1D/2D: kernel [k…, c_in, 4·filters] and recurrent_kernel [k…, filters, 4·filters] are convs
    [4·filters, c_in | filters, k…] (they were listed as '4-D variable of a custom layer'), live, from
    .keras, legacy .h5 and a bare .weights.h5 (named there by the layer names it stores, else by its
    conv_lstm2d entries)."""
    L = keras.layers
    x = keras.Input((4, 10, 10, 3))
    y = L.ConvLSTM2D(8, 3, name="cl2")(x)
    z = L.ConvLSTM1D(5, 2, name="cl1")(keras.ops.reshape(y, (-1, 8, 8, 8)))
    model = keras.Model(x, z)
    _saved_every_way(model, tmp_path, "m")
    stored = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    k2, r2 = stored["cl2/conv_lstm_cell/kernel"], stored["cl2/conv_lstm_cell/recurrent_kernel"]
    k1 = stored["cl1/conv_lstm_cell/kernel"]
    with h5py.File(tmp_path / "m.weights.h5", "r") as f:  # Keras >= 3.8 stores each layer's name, 3.5 not
        names_stored = "name" in f["layers/conv_lstm2d/vars"].attrs
    for src, by_entry in ((KerasModel(model), False), (KerasFile(tmp_path / "m.keras"), False),
                          (KerasFile(tmp_path / "m.h5"), False),
                          (KerasFile(tmp_path / "m.weights.h5"), not names_stored)):
        rows = {r.name: r for r in src}
        n2, n1 = ("conv_lstm2d", "conv_lstm1d") if by_entry else ("cl2", "cl1")
        assert (rows[f"{n2}.kernel"].kind, rows[f"{n2}.kernel"].shape) == ("conv2d", (32, 3, 3, 3))
        assert (rows[f"{n2}.recurrent_kernel"].kind, rows[f"{n2}.recurrent_kernel"].shape) == ("conv2d", (32, 8, 3, 3))
        assert (rows[f"{n1}.kernel"].kind, rows[f"{n1}.kernel"].shape) == ("conv1d", (20, 8, 2))
        np.testing.assert_array_equal(rows[f"{n2}.kernel"].load(), np.transpose(k2, (3, 2, 0, 1)))
        np.testing.assert_array_equal(rows[f"{n2}.recurrent_kernel"].load(), np.transpose(r2, (3, 2, 0, 1)))
        np.testing.assert_array_equal(rows[f"{n1}.kernel"].load(), np.transpose(k1, (2, 1, 0)))
        assert not src.skipped, src.skipped


def test_tf_keras_numbered_cells_in_a_legacy_h5_are_cells(tmp_path):
    """tf.keras 2 numbers a second model's cells: bidirectional/forward_lstm/lstm_cell_1/kernel:0 gave rows
    'bidirectional.forward_layer.lstm_cell_1' (a dense!) and '….lstm_cell_1.recurrent_kernel'; they are the
    forward layer's kernel and recurrent kernel (rnn), named as live models and .keras files name them."""
    k, r = _f32(6, 16, seed=1), _f32(4, 16, seed=2)
    layers = {"bidirectional": [("bidirectional/forward_lstm/lstm_cell_1/kernel:0", k),
                                ("bidirectional/forward_lstm/lstm_cell_1/recurrent_kernel:0", r),
                                ("bidirectional/backward_lstm/lstm_cell_2/kernel:0", k),
                                ("bidirectional/backward_lstm/lstm_cell_2/recurrent_kernel:0", r)],
              "lstm_1": [("lstm_1/lstm_cell_3/kernel:0", k), ("lstm_1/lstm_cell_3/recurrent_kernel:0", r)]}
    src = KerasFile(write_legacy(tmp_path / "w.h5", layers, None, weights_only=True))
    assert {x.name: (x.kind, x.shape) for x in src} == {
        "bidirectional.forward_layer.kernel": ("rnn", (16, 6)), "bidirectional.forward_layer.recurrent_kernel": ("rnn", (16, 4)),
        "bidirectional.backward_layer.kernel": ("rnn", (16, 6)), "bidirectional.backward_layer.recurrent_kernel": ("rnn", (16, 4)),
        "lstm_1.kernel": ("rnn", (16, 6)), "lstm_1.recurrent_kernel": ("rnn", (16, 4))}


def test_a_float32_dataset_marked_bfloat16_is_read_as_stored(tmp_path):
    """Keras 3 marks a bfloat16 variable with a dtype attribute over 2-byte values. A float32 dataset with that
    mark (a hand-edited or corrupt file) was viewed as twice as many bfloat16 values: a bare reshape ValueError
    from load()."""
    from htsr.io.keras import _is_bf16

    with h5py.File(tmp_path / "w.h5", "w") as f:
        f32 = f.create_dataset("a", data=np.ones((12, 8), np.float32))
        f32.attrs["dtype"] = "bfloat16"
        u16 = f.create_dataset("b", data=np.ones((12, 8), np.uint16))
        u16.attrs["dtype"] = "bfloat16"
        assert not _is_bf16(f32) and _is_bf16(u16)


def _formats(keras, model, tmp_path, name: str) -> dict[str, list[tuple]]:
    """(name, kind, shape) of every row of ``model`` live and saved as .keras, legacy .h5 and .weights.h5."""
    out = {"live": [(r.name, r.kind, r.shape) for r in KerasModel(model)]}
    for ext in ("keras", "h5", "weights.h5"):
        path = tmp_path / f"{name}.{ext}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (Keras's note that .h5 is a legacy format)
            (model.save_weights if ext == "weights.h5" else model.save)(path)
        out[ext] = [(r.name, r.kind, r.shape) for r in KerasFile(path)]
    return out


def test_a_functional_subclass_and_registered_subclasses_of_layers_read_alike_from_every_format(keras, tmp_path):
    """A Functional subclass (keras_hub's backbones) saves a config of its own arguments, no layer list: its
    layers had been named by class counters (dense, multi_head_attention_1) and the legacy .h5 by their names.
    Registered subclasses of Keras layers (a weight-standardised Conv2D, an Embedding, a Dense) in a model's
    layer list had been a not-analysed 4-D variable, a dense table and an untransposed kernel, live and from
    .keras alike. A SeparableConv2D subclass, read live, had been two skipped 4-D variables from .keras and
    '<name>' rather than '<name>.depthwise' from a legacy .h5."""
    L = keras.layers

    @keras.saving.register_keras_serializable("htsr_test")
    class Backbone(keras.Model):
        def __init__(self, **kw):
            ids = keras.Input((6,), dtype="int32")
            x = L.Embedding(40, 16, name="token_embedding")(ids)
            x = x + L.MultiHeadAttention(2, 8, name="attn_0")(x, x)
            super().__init__(inputs=ids, outputs=L.Dense(16, name="ffn")(x), **kw)

        def get_config(self):
            return {"name": self.name, "trainable": self.trainable}

    keras.utils.set_random_seed(0)
    want = {("ffn", "dense", (16, 16)), ("token_embedding", "embedding", (40, 16)),
            *{(f"attn_0.{p}", "dense", (16, 16)) for p in ("query", "key", "value", "attention_output")}}
    names_stored = tuple(int(v) for v in keras.version().split(".")[:2]) >= (3, 8)
    for fmt, rows in _formats(keras, Backbone(name="backbone"), tmp_path, "b").items():
        if names_stored or fmt in ("live", "h5"):  # (before Keras 3.8 a file names no layer it has no config of)
            assert set(rows) == want, fmt

    @keras.saving.register_keras_serializable("htsr_test")
    class StdConv2D(L.Conv2D):
        pass

    @keras.saving.register_keras_serializable("htsr_test")
    class TokEmbedding(L.Embedding):
        pass

    @keras.saving.register_keras_serializable("htsr_test")
    class MyDense(L.Dense):
        pass

    @keras.saving.register_keras_serializable("htsr_test")
    class MySeparable(L.SeparableConv2D):
        pass

    img, tok = keras.Input((8, 8, 3)), keras.Input((5,), dtype="int32")
    y = MyDense(7, name="mydense")(L.GlobalAveragePooling2D()(StdConv2D(6, 3, name="stdconv")(img)))
    sep = MySeparable(4, 3, name="mysep")(img)
    model = keras.Model([img, tok], [y, TokEmbedding(30, 7, name="tokemb")(tok), sep])
    want = {("stdconv", "conv2d", (6, 3, 3, 3)), ("mydense", "dense", (7, 6)), ("tokemb", "embedding", (30, 7)),
            ("mysep.depthwise", "conv2d", (3, 1, 3, 3)), ("mysep.pointwise", "conv2d", (4, 3, 1, 1))}
    for fmt, rows in _formats(keras, model, tmp_path, "s").items():
        if fmt != "weights.h5":  # (a bare weights file holds no config: its custom classes are unknown)
            assert set(rows) == want, fmt


def test_a_subclassed_models_own_weights_are_rows_in_every_format(keras, tmp_path):
    """add_weight on a subclassed Model itself (a position table, an output projection) gave no row and no
    listing: num_tensors 2 of 4."""
    L = keras.layers

    @keras.saving.register_keras_serializable("htsr_test")
    class Net(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.fc = L.Dense(8, name="fc")

        def build(self, shape):
            self.pos = self.add_weight(shape=(16, 8), name="pos")
            self.proj = self.add_weight(shape=(8, 12), name="proj")
            self.fc.build(shape)

        def call(self, x):
            return (self.fc(x) + self.pos[: x.shape[1]]) @ self.proj

    keras.utils.set_random_seed(0)
    model = Net(name="net")
    model(np.zeros((2, 16, 5), "float32"))
    for fmt, rows in _formats(keras, model, tmp_path, "n").items():
        own = sorted(r for r in rows if r[0].startswith("vars."))
        assert own == [("vars.0", None, (16, 8)), ("vars.1", None, (8, 12))], fmt
    # nested in another model, live: its own weights stay rows under its name (keras.Model, which it derives
    # from, is no layer whose variables they would be)
    x = keras.Input((16, 5))
    outer = keras.Model(x, L.Dense(3, name="head")(model(x)))
    rows = sorted((r.name, r.kind, r.shape) for r in KerasModel(outer) if ".vars." in r.name)
    assert rows == [("net.vars.0", None, (16, 8)), ("net.vars.1", None, (8, 12))]


def test_nested_models_in_a_legacy_h5_name_wrappers_and_shared_layers_as_the_other_formats(keras, tmp_path):
    """A legacy .h5 of a model with a nested Sequential: a wrapper inside it kept its inner layer's name
    ('inner.td.conv2d', 'inner.bi.forward_lstm': --base against the .keras copy found no pair), and a layer
    shared by two nested models, of which Keras writes a copy into each group, was a second row (whichever of
    the two models comes first)."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([L.Input((4, 8, 8, 3)), L.TimeDistributed(L.Conv2D(5, 3), name="td"),
                              L.TimeDistributed(L.Flatten()), L.Bidirectional(L.LSTM(4), name="bi")], name="inner")
    shared = L.Dense(8, name="shared")
    s1 = keras.Sequential([L.Input((8,)), shared, L.Dense(8, name="a1")], name="s1")
    s2 = keras.Sequential([L.Input((8,)), L.Dense(8, name="b1"), shared], name="s2")
    x, v = keras.Input((4, 8, 8, 3)), keras.Input((8,))
    model = keras.Model([x, v], [L.Dense(3, name="head")(inner(x)), s2(s1(v))])
    got = _formats(keras, model, tmp_path, "m")
    assert sorted(got["h5"]) == sorted(got["live"]) == sorted(got["keras"])
    assert sum(name.endswith("shared") for name, _, _ in got["h5"]) == 1
    # the model that calls the shared layer first is not the one that made it (s2 before s1): the legacy file had
    # read it twice, as 's2.s1.shared' and 's1.shared', where live and .keras give one row, 's2.shared'
    got = _formats(keras, keras.Model(v, [s2(v), s1(v)]), tmp_path, "s")
    assert sorted(got["h5"]) == sorted(got["live"]) == sorted(got["keras"])
    assert [name for name, _, _ in got["h5"] if name.endswith("shared")] == ["s2.shared"]


def test_int4_layers_give_skipped_rows_and_their_scales_are_no_rows(keras, tmp_path):
    """An int4-quantized model: live, MultiHeadAttention's packed projections were listed as 'unexpected shape
    for a EinsumDense kernel' (no row; the .keras copy gives skipped rows); from a legacy .h5 a Dense's and an
    Embedding's kernel_scale / kernel_zero were rows of their own."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    x, t = keras.Input((6, 24)), keras.Input((6,), dtype="int32")
    y = L.Dense(16, name="fc")(L.MultiHeadAttention(2, 8, name="mha")(x, x))
    model = keras.Model([x, t], [y, L.Embedding(40, 16, name="emb")(t)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.quantize("int4")
    except (ValueError, NotImplementedError) as e:
        pytest.skip(f"this Keras cannot quantize to int4: {e}")
    got = _formats(keras, model, tmp_path, "q")
    mha = {f"mha.{p}" for p in ("query", "key", "value", "attention_output")}
    assert mha | {"fc", "emb"} == {n for n, _, _ in got["live"]} == {n for n, _, _ in got["keras"]}
    assert {n for n, _, _ in got["h5"]} <= mha | {"fc", "emb"} and not any("scale" in n or "zero" in n
                                                                       for n, _, _ in got["h5"])
    rows = htsr.analyze(model, min_evals=2).layers
    assert all(r.status.startswith("skipped: int4 codes (packed two to an int8") for r in rows if r.name in mha)


def test_review_custom_layers_with_dense_like_configs_and_legacy_names(keras, tmp_path):
    """A registered custom cell or attention layer whose config holds 'units' is no Dense: its own matrices
    (recurrent_kernel, u) had been dropped as 'a bias or state' once the config made it one. Two nested models'
    layers of one name (proj/kernel twice) are two layers in a legacy .h5 (the second had vanished). A
    subclassed model's layers are named the same in every instance (not Keras's process-wide dense_<n>)."""
    L = keras.layers

    @keras.saving.register_keras_serializable("htsr_test")
    class MinimalCell(L.Layer):
        def __init__(self, units, **kw):
            super().__init__(**kw)
            self.units, self.state_size = units, units

        def build(self, shape):
            self.kernel = self.add_weight(shape=(shape[-1], self.units), name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")

        def call(self, x, states):
            h = keras.ops.matmul(x, self.kernel) + keras.ops.matmul(states[0], self.recurrent_kernel)
            return h, [h]

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    keras.utils.set_random_seed(0)
    x = keras.Input((5, 16))
    model = keras.Model(x, L.RNN(MinimalCell(32), name="rnn")(x))
    for fmt, rows in _formats(keras, model, tmp_path, "c").items():
        if fmt != "h5":  # (the legacy file names the cell's variables: rnn.kernel, rnn.recurrent_kernel)
            assert sorted(shape for _, _, shape in rows) == [(16, 32), (32, 32)], fmt

    def tower(name):
        i = keras.Input((16,))
        return keras.Model(i, L.Dense(8, name="proj")(i), name=name)

    i = keras.Input((16,))
    model = keras.Model(i, [tower("encoder")(i), tower("decoder")(i)])
    got = _formats(keras, model, tmp_path, "t")
    assert sorted(n for n, _, _ in got["h5"]) == sorted(n for n, _, _ in got["live"]) == ["decoder.proj", "encoder.proj"]

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(8), L.Dense(4)

        def call(self, x):
            return self.b(self.a(x))

    names = []
    for _ in range(2):
        net = Net()
        net(np.zeros((1, 16), "float32"))
        names.append([r.name for r in KerasModel(net)])
    assert names[0] == names[1]


def test_review_einsum_subclass_bias_and_legacy_twins_of_equal_values(keras, tmp_path):
    """A registered EinsumDense subclass with a 2-D bias ('de') had its bias analysed and its kernel skipped
    (the config rule wanted a 1-D bias). Two streams' layers of equal values in a legacy .h5 (a frozen
    pretrained conv in each, weight names without their model's scope) had been read once, the other vanishing."""
    L = keras.layers

    @keras.saving.register_keras_serializable("htsr_test")
    class MyEinsum(L.EinsumDense):
        pass

    keras.utils.set_random_seed(0)
    x = keras.Input((6, 32))
    model = keras.Model(x, MyEinsum("abc,cde->abde", output_shape=(None, 4, 8), bias_axes="de", name="proj")(x))
    got = _formats(keras, model, tmp_path, "e")
    assert got["live"] == got["keras"] == [("proj", "dense", (32, 32))]

    def stream(name):
        i = keras.Input((16,))
        return keras.Model(i, L.Dense(4, name="fc")(L.Dense(8, name="conv1", kernel_initializer="ones")(i)), name=name)

    i = keras.Input((16,))
    model = keras.Model(i, [stream("rgb")(i), stream("flow")(i)])
    got = _formats(keras, model, tmp_path, "s")
    assert sorted(n for n, _, _ in got["h5"]) == sorted(n for n, _, _ in got["live"]) == [
        "flow.conv1", "flow.fc", "rgb.conv1", "rgb.fc"]
    # tf.keras 2 writes the streams' weight names without their model's scope ('conv1/kernel:0' in each)
    frozen = np.ones((3, 3, 3, 16), np.float32)
    tower = lambda name: {"class_name": "Functional", "name": name, "config": {"name": name, "layers": [  # noqa: E731
        {"class_name": "Conv2D", "name": "conv1", "config": {"name": "conv1", "filters": 16, "kernel_size": [3, 3]}},
        {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 10}}]}}
    path = tmp_path / "twins.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {
            "name": "model", "layers": [tower("rgb_stream"), tower("flow_stream")]}})
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [b"rgb_stream", b"flow_stream"]
        for t in ("rgb_stream", "flow_stream"):
            g = weights.create_group(t)
            g.attrs["weight_names"] = [b"conv1/kernel:0", b"fc/kernel:0"]
            g["conv1/kernel:0"], g["fc/kernel:0"] = frozen, np.random.default_rng(len(t)).random((16, 10), np.float32)
    assert sorted(r.name for r in KerasFile(path)) == ["flow_stream.conv1", "flow_stream.fc", "rgb_stream.conv1",
                                                       "rgb_stream.fc"]


def test_an_h5py_older_than_the_floor_says_so_not_corrupt(tmp_path, monkeypatch):
    # h5py before 3.11 has no Group.visititems_links, the contained-file check's link walk: every .h5 and .keras
    # file had been refused as "corrupt Keras weights file (AttributeError …); re-save the model"
    from htsr.errors import MissingExtraError

    path = write_legacy(tmp_path / "toy.weights.h5", legacy_layers(), None, weights_only=True)
    monkeypatch.delattr(h5py.Group, "visititems_links")
    with pytest.raises(MissingExtraError) as ei:
        KerasFile(path)
    assert str(ei.value) == (f"reading {path} (h5py {h5py.__version__} is installed) needs the 'h5py>=3.11' "
                             "package: pip install 'htsr[keras]'")


# round 14 of mutation testing (io/keras.py): survivors' known answers

def _int8_dense_archive(tmp_path, dtype):
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(16, 24)).astype(np.int8)  # [in, units]
    s = rng.uniform(50.0, 200.0, size=24).astype(np.float32)  # kernel_scale, one per unit
    config = model("Sequential", "m", [layer("Dense", "d", units=24, dtype=dtype)])
    path = write_keras(tmp_path / "q.keras", config, {"layers/dense/vars/0": q,
                                                      "layers/dense/vars/1": np.zeros(24, np.float32),
                                                      "layers/dense/vars/2": s})
    return path, q, s


def test_a_keras_3_2_int8_dense_whose_policy_is_a_string_is_dequantized(tmp_path):
    """Keras 3.2-3.3 write an int8 layer's dtype policy as the string 'int8_from_float32': the mode is the part
    before '_from_' (K07: the part after it, 'float32', made the layer a skipped 'int8 codes' row)."""
    path, q, s = _int8_dense_archive(tmp_path, "int8_from_float32")
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape, ref.bits) == ("d", "dense", (24, 16), 8)
    np.testing.assert_array_equal(ref.load(), (q.astype(np.float32) / s).T)


@pytest.mark.parametrize("codes, last", [
    (np.arange(16 * 24).reshape(16, 24).astype(np.uint8), None),  # unsigned codes, no scale
    (np.arange(16 * 24).reshape(16, 24).astype(np.int8), np.arange(1, 25, dtype=np.int32)),  # an integer bias
    (np.arange(16 * 24).reshape(16, 24).astype(np.int8), np.linspace(1, 2, 16, dtype=np.float32)),  # [in], not [units]
], ids=["uint8", "int32-bias", "scale-of-inputs"])
def test_integer_dense_kernels_that_are_not_keras_int8_layouts_get_skipped_rows(tmp_path, codes, last):
    """Only Keras's int8 layout is dequantized: int8 codes [in, units] beside a float kernel_scale [units].
    Unsigned codes, an int8 kernel whose last variable is an integer bias, or a float vector of the inputs'
    length are quantized layers htsr does not know: each gets a skipped row saying so (the uint8 codes had
    been analysed as floats; the integer bias and the [in] vector taken for a scale)."""
    tensors = {"layers/dense/vars/0": codes, **({"layers/dense/vars/1": last} if last is not None else {})}
    path = write_keras(tmp_path / "q.keras", model("Sequential", "m", [layer("Dense", "d", units=24)]), tensors)
    (row,) = htsr.analyze(path, min_evals=5).layers
    assert row.name == "d"
    assert row.status.startswith(f"skipped: {codes.dtype} codes of a quantized Keras layer that htsr does not "
                                 "dequantize"), row.status


def test_an_int8_dense_rows_share_their_scale_along_the_inputs(tmp_path):
    """The quant_block of an int8 Dense [units, in] row is its length `in` (one kernel_scale per unit), so a
    delta's rounding is measured per row (K09: shape[0] grouped `units` consecutive entries across rows)."""
    from htsr.io.delta import rounding

    path, q, s = _int8_dense_archive(tmp_path, {"module": "keras", "class_name": "QuantizedDTypePolicy",
                                                "config": {"mode": "int8", "source_name": "float32"}})
    (ref,) = list(KerasFile(path))
    assert ref.quant_block == 16
    W = ref.load()
    # each row's own step, from its values: absmax/127 where a code reaches ±127 (the values then lie on that
    # symmetric grid, Keras's: its step 1/kernel_scale), else the row's range over 255; 1e-6: float32 values
    on_grid = np.abs(q.astype(np.int64)).max(axis=0) == 127  # per unit (q is [in, units])
    span = (W.max(axis=1) - W.min(axis=1)).astype(np.float64) / 255
    step = np.where(on_grid, 1.0 / s.astype(np.float64), span)
    assert rounding(ref, W) == pytest.approx(np.sqrt(np.mean(step ** 2) / 12), rel=1e-6)


def test_a_bare_weights_file_with_more_than_ten_dense_layers_reads_them_all_as_dense(tmp_path):
    """Without a config, entry 'dense_10' is a Dense by its class counter like 'dense_1' (K13: a one-digit
    counter rule read dense_10 as an unknown layer: 'dense_10.vars.0', kind None, kernel as stored [in, out])."""
    tensors = {(f"layers/dense_{i}/vars/0" if i else "layers/dense/vars/0"): np.full((8, 6), i, np.float32)
               for i in range(12)}
    write_weights_h5(tmp_path / "m.weights.h5", tensors)
    refs = {r.name: r for r in KerasFile(tmp_path / "m.weights.h5")}
    assert set(refs) == {"dense"} | {f"dense_{i}" for i in range(1, 12)}
    assert all(r.kind == "dense" and r.shape == (6, 8) for r in refs.values())


@pytest.mark.parametrize("shape, kind, perm", [((32, 16, 8), "conv1d", (2, 1, 0)),
                                               ((3, 3, 3, 4, 8), "conv3d", (4, 3, 0, 1, 2))], ids=["1d-32", "3d"])
def test_a_weights_only_keras2_kernel_of_htsrs_largest_conv_size_is_a_conv(tmp_path, shape, kind, perm):
    """A 3-D kernel of MAX_CONV_KERNEL (32) taps is still a Conv1D without a config (K24: `<` made the limit
    exclusive and listed it as a kernel of no class); a 5-D kernel is a Conv3D's [c_out, c_in, kd, kh, kw] (the
    five-axis case had gone unchecked)."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal(shape).astype("f4")
    path = write_legacy(tmp_path / "w.h5", {"c": [("c/kernel:0", k)]}, None, weights_only=True)
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape) == ("c", kind, tuple(shape[p] for p in perm))
    np.testing.assert_array_equal(ref.load(), k.transpose(perm))


# round 60 of mutation testing (io/keras.py, third pass): survivors' known answers

def test_a_depthwise_kernel_of_three_kernel_axes_is_listed_not_read_as_a_conv3d(tmp_path):
    """Keras has DepthwiseConv1D and 2D only: a DepthwiseConv2D whose stored kernel has five axes (a corrupt or
    hand-made file) is listed as skipped with the reason, not reshaped into a conv3d matrix; the 4-D one beside
    it is read as PyTorch's depthwise weight [c_in·mult, 1, kh, kw]."""
    k5, k4 = _f32(3, 3, 3, 4, 2, seed=60), _f32(3, 3, 4, 2, seed=61)
    config = model("Sequential", "m", [layer("DepthwiseConv2D", "dw", kernel_size=[3, 3], depth_multiplier=2),
                                       layer("DepthwiseConv2D", "ok", kernel_size=[3, 3], depth_multiplier=2)])
    path = write_keras(tmp_path / "d.keras", config, {"layers/depthwise_conv2d/vars/0": k5,
                                                      "layers/depthwise_conv2d_1/vars/0": k4})
    src = KerasFile(path)
    (ref,) = list(src)
    assert (ref.name, ref.kind, ref.shape) == ("ok", "conv2d", (8, 1, 3, 3))
    np.testing.assert_array_equal(ref.load(), k4.reshape(3, 3, 8, 1).transpose(2, 3, 0, 1))
    assert src.skipped == [("/layers/depthwise_conv2d/vars/0", "unexpected shape for a DepthwiseConv2D kernel")]


def test_a_registered_depthwise_conv_subclass_is_read_as_a_depthwise_conv(tmp_path):
    """A registered DepthwiseConv2D subclass keeps its base's config (depth_multiplier, depthwise_initializer,
    no pointwise_initializer): it is a DepthwiseConv2D by its config, not a SeparableConv2D (whose two kernels
    it does not have: its kernel had been listed as a 4-D variable of an unknown layer)."""
    k = _f32(3, 3, 4, 2, seed=62)
    lc = {"module": None, "class_name": "htsr_test>MyDepthwise", "registered_name": "htsr_test>MyDepthwise",
          "config": {"name": "dw", "kernel_size": [3, 3], "depth_multiplier": 2,
                     "depthwise_initializer": {"class_name": "GlorotUniform", "config": {}}}}
    path = write_keras(tmp_path / "d.keras", model("Functional", "m", [lc]),
                       {"layers/my_depthwise/vars/0": k, "layers/my_depthwise/vars/1": np.zeros(8, np.float32)})
    src = KerasFile(path)
    (ref,) = list(src)
    assert (ref.name, ref.kind, ref.shape) == ("dw", "conv2d", (8, 1, 3, 3))
    np.testing.assert_array_equal(ref.load(), k.reshape(3, 3, 8, 1).transpose(2, 3, 0, 1))
    assert not src.skipped


def test_a_custom_layer_with_a_dense_config_and_a_third_variable_is_no_dense(tmp_path):
    """A Dense subclass holds a kernel and a bias at most; a registered layer whose config holds 'units' but
    whose variables are a kernel and two vectors (a gated layer's own gate) is a custom layer: its matrix is a
    row as stored ('g.vars.0'), not the Dense 'g' transposed."""
    k = _f32(4, 6, seed=63)
    lc = {"module": None, "class_name": "htsr_test>GatedDense", "registered_name": "htsr_test>GatedDense",
          "config": {"name": "g", "units": 6}}
    path = write_keras(tmp_path / "g.keras", model("Functional", "m", [lc]),
                       {"layers/gated_dense/vars/0": k, "layers/gated_dense/vars/1": np.zeros(6, np.float32),
                        "layers/gated_dense/vars/2": np.ones(6, np.float32)})
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape) == ("g.vars.0", None, (4, 6))
    np.testing.assert_array_equal(ref.load(), k)


def test_a_custom_conv_recurrent_layer_in_a_legacy_h5_is_no_conv(tmp_path):
    """A registered layer whose config holds filters and kernel_size beside recurrent_* keys is a
    convolutional recurrent layer, not a Conv2D subclass: in a legacy .h5 without a cell level its kernel is
    not a Conv2D's (it had been read as the conv2d row 'rc'); both its 4-D kernels are listed with their
    reasons, as they are for any custom layer of unknown layout."""
    k, r = _f32(3, 3, 4, 16, seed=64), _f32(3, 3, 4, 16, seed=65)
    lc = {"class_name": "htsr_test>ConvRNN", "config": {"name": "rc", "filters": 4, "kernel_size": [3, 3],
                                                        "recurrent_activation": "sigmoid"}}
    path = write_legacy(tmp_path / "r.h5", {"rc": [("rc/kernel:0", k), ("rc/recurrent_kernel:0", r)]},
                        {"class_name": "Functional", "config": {"name": "m", "layers": [lc]}})
    src = KerasFile(path)
    assert list(src) == []
    assert [w for w, _ in src.skipped] == ["/model_weights/rc/rc/kernel:0", "/model_weights/rc/rc/recurrent_kernel:0"]


def test_two_layers_of_one_name_are_told_apart_by_a_numbered_suffix(tmp_path):
    """Two layers under one name (a config whose nested layers repeat it) give two rows, the second named
    '<name>_2' (the count of that name so far), in the file's order."""
    a, b = _f32(8, 4, seed=66), _f32(4, 3, seed=67)
    config = model("Sequential", "m", [layer("Dense", "d", units=4), layer("Dense", "d", units=3)])
    path = write_keras(tmp_path / "m.keras", config, {"layers/dense/vars/0": a, "layers/dense_1/vars/0": b})
    assert [(r.name, r.shape) for r in KerasFile(path)] == [("d", (4, 8)), ("d_2", (3, 4))]


def test_an_int8_dense_scale_is_read_with_its_codes_not_listed_as_a_non_weight(tmp_path):
    """An int8 Dense's kernel_scale is part of its weights (codes / scale): only the bias is left over as a
    1-D non-weight (the scale had been listed as a second one)."""
    path, _, _ = _int8_dense_archive(tmp_path, "int8_from_float32")
    src = KerasFile(path)
    assert len(src) == 1
    assert [w for w, _ in src.not_weights] == ["/layers/dense/vars/1"]


@pytest.mark.parametrize("alpha, scale", [(None, 1.0), (8.0, 2.0)], ids=["no-lora_alpha", "alpha-8"])
def test_a_legacy_lora_dense_whose_config_has_no_alpha_merges_at_alpha_equal_to_rank(tmp_path, alpha, scale):
    """Keras before lora_alpha merged a LoRA Dense as W + A·B (its alpha is the rank); a legacy .h5 whose config
    holds lora_rank but no lora_alpha is merged so, and one with lora_alpha = 8 at rank 4 as W + 2·A·B (the
    config-less case had gone unchecked: every test gave an alpha)."""
    W, A, B = _f32(10, 6, seed=68), _f32(10, 4, seed=69), _f32(4, 6, seed=70)
    cfg = {"name": "fc", "units": 6, "lora_rank": 4, **({"lora_alpha": alpha} if alpha is not None else {})}
    path = write_legacy(tmp_path / "l.h5", {"fc": [("fc/kernel:0", W), ("fc/lora_kernel_a:0", A),
                                                   ("fc/lora_kernel_b:0", B)]},
                        {"class_name": "Functional", "config": {"name": "m", "layers": [{"class_name": "Dense",
                                                                                         "config": cfg}]}})
    (ref,) = list(KerasFile(path))
    assert (ref.name, ref.kind, ref.shape) == ("fc", "dense", (6, 10))
    # float32 sums in another order than numpy's float64 reference: a few ulps of entries of size ~5
    np.testing.assert_allclose(ref.load(), (W.astype(np.float64) + scale * (A.astype(np.float64) @ B)).T,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backward", ["bw", "backward_bw", "backward_cu_dnnlstm"])
def test_a_cudnn_layer_of_a_legacy_bidirectional_is_read_by_its_config(tmp_path, backward):
    """Keras 2's CuDNNLSTM stores its kernels on the layer (no cell level: 'bi/forward_cu_dnnlstm/kernel:0'), so
    only the config tells its kernel is a recurrent one. Keras 2 renames a Bidirectional's layers
    'forward_<name>' and 'backward_<name>' (the wrapped layer's clone, or a given backward layer): each is found in
    the wrapper's config under layer or backward_layer, and its kernels are the rnn rows 'bi.forward_layer.kernel',
    'bi.backward_layer.kernel', as a plain CuDNNLSTM's are. The renamed ones had been dense rows
    'bi.forward_layer' and 'bi.backward_layer' (the config looked up by the renamed name found nothing)."""
    k, r = _f32(6, 16, seed=71), _f32(4, 16, seed=72)
    bi = {"name": "bi", "layer": {"class_name": "CuDNNLSTM", "config": {"name": "cu_dnnlstm", "units": 4}}}
    if backward != "backward_cu_dnnlstm":  # a given backward layer (else the wrapped layer's clone)
        bi["backward_layer"] = {"class_name": "CuDNNLSTM", "config": {"name": "bw", "units": 4, "go_backwards": True}}
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "Bidirectional", "config": bi}, {"class_name": "CuDNNLSTM", "config": {"name": "solo", "units": 4}}]}}
    weights = [(f"bi/{layer}/{v}:0", w) for layer in ("forward_cu_dnnlstm", backward)
               for v, w in (("kernel", k), ("recurrent_kernel", r))]
    path = write_legacy(tmp_path / "c.h5", {"bi": weights, "solo": [("solo/kernel:0", k), ("solo/recurrent_kernel:0", r)]},
                        config)
    refs = [(x.name, x.kind, x.shape) for x in KerasFile(path)]
    assert refs == [("bi.forward_layer.kernel", "rnn", (16, 6)), ("bi.forward_layer.recurrent_kernel", "rnn", (16, 4)),
                    ("bi.backward_layer.kernel", "rnn", (16, 6)), ("bi.backward_layer.recurrent_kernel", "rnn", (16, 4)),
                    ("solo.kernel", "rnn", (16, 6)), ("solo.recurrent_kernel", "rnn", (16, 4))]


def test_a_legacy_weight_under_another_layers_name_that_layer_does_not_hold_is_read(tmp_path):
    """A weight named under another listed layer's scope ('enc/proj/kernel:0' in group 'head') is a copy of a
    shared layer only if that layer's group holds it too; here 'enc' does not, so it is head's own weight, read
    and named from its path ('head.enc.proj'), not dropped as a copy."""
    a, b = _f32(8, 4, seed=73), _f32(4, 3, seed=74)
    path = write_legacy(tmp_path / "w.h5", {"enc": [("enc/dense/kernel:0", a)], "head": [("enc/proj/kernel:0", b)]},
                        None, weights_only=True)
    src = KerasFile(path)
    assert [(r.name, r.shape) for r in src] == [("enc.dense", (4, 8)), ("head.enc.proj", (3, 4))]
    assert not [w for w, why in src.not_weights if "copy" in why]


def test_a_live_tensor_whose_conversion_shares_the_variables_memory_is_copied(keras, monkeypatch):
    """A backend's convert_to_numpy may hand back a writeable view on the variable's memory (TensorFlow's
    .numpy() on CPU does); the loaded tensor is then a copy, so writing to it cannot reach the model (the
    torch backend copies anyway, which had left the view case unchecked). An Embedding's table is loaded as
    stored, with no transposing copy on the way."""
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(6, 4, name="e")])
    backing = np.arange(24, dtype=np.float32).reshape(6, 4)  # stands for the variable's memory
    monkeypatch.setattr(keras.ops, "convert_to_numpy", lambda v: backing[:])  # a view: owndata False
    (ref,) = list(KerasModel(model))
    a = ref.load()
    a[...] = 7.0
    np.testing.assert_array_equal(backing, np.arange(24, dtype=np.float32).reshape(6, 4))


def test_numbered_seed_generators_at_the_top_of_a_weights_file_are_training_state(tmp_path):
    """A model with two seed generators (dropout layers' RNG state) stores seed_generator and seed_generator_1 at
    the top of the weights file: both are training state, neither counted among the model's tensors (the
    numbered one had gone unchecked)."""
    k = _f32(8, 4, seed=75)
    seed = np.array([1, 2], np.uint32)
    config = model("Sequential", "m", [layer("Dense", "d", units=4, use_bias=False)])
    path = write_keras(tmp_path / "s.keras", config, {"layers/dense/vars/0": k, "seed_generator/vars/0": seed,
                                                      "seed_generator_1/vars/0": seed})
    src = KerasFile(path)
    assert [(r.name, r.shape) for r in src] == [("d", (4, 8))]
    assert src.not_weights == [] and src.skipped == []


def test_a_weight_layers_1d_variable_is_listed_as_its_bias_and_a_norms_as_norm_scales(tmp_path):
    """A .keras file stores a Conv2D's or a Dense's bias at layers/<class>/vars/1: classified by that path, it had
    been listed as '1-D (norm scales, scalars)', where a legacy .h5 (…/bias:0) and a state dict say 'bias or norm
    buffer'. A weight layer's 1-D variables are its bias now; a norm layer's keep their own words."""
    config = model("Sequential", "s", [layer("Conv2D", "stem"), layer("Dense", "head"),
                                       layer("LayerNormalization", "ln")])
    path = write_keras(tmp_path / "m.keras", config, {
        "layers/conv2d/vars/0": _f32(3, 3, 4, 8, seed=1), "layers/conv2d/vars/1": _f32(8, seed=2),
        "layers/dense/vars/0": _f32(32, 10, seed=3), "layers/dense/vars/1": _f32(10, seed=4),
        "layers/layer_normalization/vars/0": _f32(10, seed=5), "layers/layer_normalization/vars/1": _f32(10, seed=6)})
    assert KerasFile(path).not_weights == [
        ("/layers/conv2d/vars/1", "bias or norm buffer"), ("/layers/dense/vars/1", "bias or norm buffer"),
        ("/layers/layer_normalization/vars/0", "1-D (norm scales, scalars)"),
        ("/layers/layer_normalization/vars/1", "1-D (norm scales, scalars)")]


def test_a_keras_model_saved_again_in_place_while_it_is_read_fails_its_rows(tmp_path):
    """Keras' ModelCheckpoint saves the next model to the same path: a run reading the first had gone on reading
    the new archive at the old offsets (rows of two models mixed, or 'NaN or Inf' of neither)."""
    keras = pytest.importorskip("keras")
    from htsr.io import open_source

    def model(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((40,)), keras.layers.Dense(60), keras.layers.Dense(40),
                                 keras.layers.Dense(60)])

    path = tmp_path / "m.keras"
    model(0).save(path)
    src = open_source(path)
    refs = list(src)
    first = refs[0].load()  # (read before the save: the first model's)
    np.testing.assert_array_equal(first, np.asarray(model(0).layers[0].kernel.numpy()).T)
    model(7).save(path)
    for r in refs[1:]:  # (in the words every reader uses: not wrapped as a corrupt chunk's 'truncated or corrupt?')
        with pytest.raises(SourceError) as ei:
            r.load()
        assert str(ei.value) == (f"{path}: changed while being read: saved again or replaced since htsr read its "
                                 "header; analyse it once its writer is done")


def test_files_without_classes_read_layers_by_their_variables_shapes(keras, tmp_path):
    """Without a config or a class-telling name (a bare .weights.h5 as Keras < 3.8 writes it, no 'name' on its
    groups; a subclassed model's legacy .h5) the reader had read a Bidirectional GRU's kernels as dense [in, out]
    and its 2-D bias [2, 3h] as a matrix, dropped a TimeDistributed Conv2D's kernel as a custom layer's, read a
    DepthwiseConv2D as an ordinary conv (another matrix, another spectrum), and a legacy RNN([cell]) cell's kernel
    as dense. Their variables' shapes say what they are: a cell's kernel [in, g·h], recurrent kernel [h, g·h]
    and bias; a depthwise kernel [k, k, in, mult] with its bias [in·mult]."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    i1, i2 = keras.Input((8, 24)), keras.Input((3, 10, 10, 4))
    x = L.GlobalAveragePooling1D()(L.Bidirectional(L.GRU(20, return_sequences=True), name="bi")(i1))
    y = L.GlobalAveragePooling3D()(L.TimeDistributed(L.Conv2D(24, 3), name="tdc")(i2))
    model = keras.Model([i1, i2], L.Concatenate()([x, y]))
    path = tmp_path / "old.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "r+") as f:  # as Keras < 3.8 writes it: no layer names
        f.visititems(lambda n, o: o.attrs.__delitem__("name") if "name" in o.attrs else None)
    live = {(r.name.split(".", 1)[1], r.kind, r.shape) for r in KerasModel(model)}  # (bi.…, tdc.…: names of
    old = {(r.name.split(".", 1)[1], r.kind, r.shape) for r in KerasFile(path)}  # the user's, not in the old file)
    assert old == live == {("forward_layer.kernel", "rnn", (60, 24)), ("forward_layer.recurrent_kernel", "rnn", (60, 20)),
                           ("backward_layer.kernel", "rnn", (60, 24)), ("backward_layer.recurrent_kernel", "rnn", (60, 20)),
                           ("layer", "conv2d", (24, 4, 3, 3))}

    class Net(keras.Model):  # a subclassed model: its legacy .h5 has no layer configs
        def __init__(self, **kw):
            super().__init__(**kw)
            self.dw = L.DepthwiseConv2D(3, depth_multiplier=2)
            self.rnn = L.RNN(L.LSTMCell(16, name="enc"))
            self.head = L.Dense(10)

        def call(self, x):
            h = keras.ops.mean(self.dw(x), axis=(1, 2))
            return self.head(self.rnn(keras.ops.reshape(h, (-1, 4, 12))))

    model = Net(name="net")
    model(np.random.default_rng(0).standard_normal((2, 8, 8, 24)).astype("float32"))
    path = tmp_path / "sub.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Keras's note that .h5 is a legacy format)
        model.save(path)
    rows = {r.name: r for r in KerasFile(path)}
    dw = rows["depthwise_conv2d"]  # [c_in·mult, 1, k, k], as live
    assert (dw.kind, dw.shape) == ("conv2d", (48, 1, 3, 3))
    np.testing.assert_array_equal(dw.load(), next(r for r in KerasModel(model) if r.name == "dw").load())
    assert {(n, r.kind) for n, r in rows.items() if "kernel" in n} == {
        ("rnn.enc.kernel", "rnn"), ("rnn.enc.recurrent_kernel", "rnn")}


def test_a_lora_enabled_einsum_kernel_of_three_axes_is_merged_from_a_legacy_file(keras, tmp_path):
    """A LoRA-enabled EinsumDense (kernel [c, d, e], factors [c, d, r] and [r, e]: Keras merges them by the same
    matmul) had no row from a legacy .h5, listed as '3-D variable of an unknown layer'; a MultiHeadAttention
    projection's enable_lora, which the model config does not record, is a skipped row saying its scale is unknown."""
    L = keras.layers
    keras.utils.set_random_seed(12)
    i = keras.Input((10, 64))
    x = L.MultiHeadAttention(2, 16, name="mha")(i, i)
    model = keras.Model(i, L.EinsumDense("abc,cde->abde", output_shape=(None, 4, 8), name="ein3")(x))
    model.get_layer("mha")._query_dense.enable_lora(4)
    model.get_layer("ein3").enable_lora(4, lora_alpha=8)
    model.get_layer("ein3").lora_kernel_b.assign(np.random.default_rng(0).standard_normal((4, 8)).astype("float32"))
    path = tmp_path / "lora.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Keras's note that .h5 is a legacy format)
        model.save(path)
    live = {r.name: r for r in KerasModel(model)}
    rows = {r.name: r for r in KerasFile(path)}
    assert set(rows) == set(live) == {"mha.query", "mha.key", "mha.value", "mha.attention_output", "ein3"}
    # the merged kernel: as Keras computes it (float32 sums of 4 products)
    np.testing.assert_allclose(rows["ein3"].load(), live["ein3"].load(), rtol=1e-6, atol=1e-6)
    with pytest.raises(LayerSkipped, match=r"^a LoRA-enabled layer whose lora_rank and lora_alpha the model config "
                                           r"does not give \(its scale is unknown\)"):
        rows["mha.query"].load()


def test_shapes_name_no_class_where_they_could_be_a_custom_layer_s(keras, tmp_path):
    """Review: a custom layer's W [in, h], U [h, h], b [h] (a registered class its config names) had become a
    SimpleRNNCell's kernels from a legacy .h5, dropped as 'a bias … or state'; a bias-free DepthwiseConv2D of a
    user's name in a subclassed model's .keras had been read as an ordinary Conv2D (another matrix, status ok); a
    custom layer's [1, n, d] table as a Conv1D. Shapes name a class only where no custom layer's could look alike."""
    L = keras.layers

    @keras.saving.register_keras_serializable("htsr_test")
    class Mix(L.Layer):
        def build(self, shape):
            self.W = self.add_weight(shape=(shape[-1], 48), name="W")
            self.U = self.add_weight(shape=(48, 48), name="U")
            self.b = self.add_weight(shape=(48,), name="b")

        def call(self, x):
            return keras.ops.relu(x @ self.W) @ self.U + self.b

    @keras.saving.register_keras_serializable("htsr_test")
    class PosEmbed(L.Layer):
        def build(self, shape):
            self.pos = self.add_weight(shape=(1, shape[1], shape[2]), name="pos")

        def call(self, x):
            return x + self.pos

    keras.utils.set_random_seed(0)
    i = keras.Input((16, 32))
    model = keras.Model(i, L.Dense(10, name="out")(Mix(name="mix")(PosEmbed(name="posemb")(i))))
    got = _formats(keras, model, tmp_path, "mix")
    assert {n for n, _, _ in got["h5"]} == {"mix.W", "mix.U", "out"}  # (the legacy file names its variables)
    assert {(n, k) for n, k, _ in got["live"]} == {(n, k) for n, k, _ in got["keras"]} == {
        ("mix.vars.0", None), ("mix.vars.1", None), ("out", "dense")}

    class Net(keras.Model):  # a subclassed model: no config in its files
        def __init__(self, **kw):
            super().__init__(**kw)
            self.dw = L.DepthwiseConv2D(3, use_bias=False, name="block1_dw")
            self.cell = L.RNN(L.SimpleRNNCell(24, name="mycell"), name="rec")  # (a model's attribute named 'cell')

        def call(self, x):
            return self.cell(keras.ops.reshape(self.dw(x), (-1, 36, 32)))

    net = Net(name="net")
    net(np.zeros((1, 8, 8, 32), "float32"))
    got = _formats(keras, net, tmp_path, "dw")
    assert sorted(got["live"]) == [("cell.kernel", "rnn", (24, 32)), ("cell.recurrent_kernel", "rnn", (24, 24)),
                                   ("dw", "conv2d", (32, 1, 3, 3))]
    # a bias-free kernel [3, 3, 32, 1] without a class: read as a convolution, [1, 32, 3, 3], whose per-position
    # 1 x 32 matrices have the singular values of the depthwise reading's 32 x 1 (mult 1, the usual); the RNN's cell
    # of a user's name (no class in the file) by its kernels' shapes, an RNN cell's; the legacy file by their names
    for ext in ("keras", "weights.h5"):
        assert sorted(got[ext]) == [*sorted(got["live"])[:2], ("dw", "conv2d", (1, 32, 3, 3))], ext
    # a bias-free kernel [3, 3, 32, 2] is a convolution's of 2 outputs or a depthwise one's of multiplier 2 (which
    # read as a convolution gives another spectrum): not read from a file without classes, and said why
    class Net2(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.dw2 = L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, name="dw_x2")

        def call(self, x):
            return self.dw2(x)

    net2 = Net2(name="net2")
    net2(np.zeros((1, 8, 8, 32), "float32"))
    net2.save(tmp_path / "dw2.keras")
    f = KerasFile(tmp_path / "dw2.keras")
    assert "dw2" not in {r.name for r in f}
    assert [why for where, why in f.skipped if "dw2" in where] == [
        "4-D variable of a layer the file gives no class for (a custom layer's, or a bias-free convolution's, whose "
        "kernel a depthwise one's looks like): analyse the live model"]
    assert sorted(got["h5"]) == [("block1_dw", "conv2d", (1, 32, 3, 3)), ("rec.mycell.kernel", "rnn", (24, 32)),
                                 ("rec.mycell.recurrent_kernel", "rnn", (24, 24))]


@pytest.mark.parametrize("where", ["vars", "dtype", "layer_names"])
def test_an_attribute_of_a_type_keras_never_writes_is_a_one_line_error(tmp_path, where):
    """One flipped byte in a .weights.h5 file turned the string type of /vars' 'name' attribute into a
    variable-length sequence, and reading it crashed the process (SIGSEGV inside HDF5, no message: h53). Attributes
    are read only when they hold strings or numbers; here a valid file with such an attribute, at each place htsr
    reads one (a layer's name, a dataset's dtype mark, a legacy file's layer list)."""
    path = tmp_path / "m.weights.h5"
    seq = np.empty(1, dtype=object)
    seq[0] = np.arange(3, dtype=np.int32)  # one variable-length sequence of ints
    with h5py.File(path, "w") as f:
        if where == "layer_names":  # a legacy Keras 2 file
            f["dense/dense/kernel:0"] = W["fc1"]
            obj, name = f, "layer_names"
        else:
            f["layers/dense/vars/0"] = W["fc1"].astype(np.float16)  # (a 2-byte dataset's dtype mark is read)
            obj, name = (f.require_group("vars"), "name") if where == "vars" else (f["layers/dense/vars/0"], "dtype")
        obj.attrs.create(name, data=seq, dtype=h5py.vlen_dtype(np.int32))
    with pytest.raises(SourceError) as ei:
        list(KerasFile(path))
    _one_line_source_error(ei, str(path), "corrupt Keras weights file", "neither strings nor numbers")


def test_a_legacy_h5_int4_models_codes_are_said_to_be_int4(keras, tmp_path):
    """Keras's legacy .h5 of an int4-quantized model: its config records the mode, but its rows had said 'int8 codes'
    and shown the packed shape as the weight's (h62); as the .keras archive's rows say: int4, packed two to an int8."""
    from htsr.io import open_source

    keras.utils.set_random_seed(2)
    inp = keras.Input((5, 16))
    x = keras.layers.Dense(24, name="d1")(inp)
    x = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 8), bias_axes="d", name="ein")(x)
    m = keras.Model(inp, x)
    m.quantize("int4")
    for path in (tmp_path / "q.keras", tmp_path / "q.h5"):
        m.save(path)
        for ref in open_source(path):
            with pytest.raises(LayerSkipped, match="int4 codes \\(packed two to an int8: the shape shown is the "
                                                   "packed one\\)"):
                ref.load()


def test_a_bias_free_int8_projections_scale_is_not_called_its_bias(keras, tmp_path):
    """A bias-free MultiHeadAttention quantized to int8: each projection's one variable left after its kernel is
    its kernel_scale, which had been listed as '2-D bias of a layer' (h63); a float layer's is its bias."""
    from htsr.io import open_source

    inp = keras.Input((5, 64))
    m = keras.Model(inp, keras.layers.MultiHeadAttention(num_heads=4, key_dim=16, use_bias=False)(inp, inp))
    m.quantize("int8")
    m.save(tmp_path / "q.keras")
    src = open_source(tmp_path / "q.keras")
    assert not any(why == "2-D bias of a layer" for _, why in src.not_weights)
    assert sum("a bias, a quantization scale or state" in why for _, why in src.skipped) == 4
