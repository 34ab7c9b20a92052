"""GGUF (llama.cpp) reader: orientation, dtypes and dequantization, layer kinds, laziness, bad input.

Every offline test writes its own small GGUF files under ``tmp_path`` with ``gguf.GGUFWriter``. The
network test writes the real all-MiniLM-L6-v2 weights to GGUF (F32, Q8_0, Q4_K) and compares htsr's
per-layer alpha with the safetensors original.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import finish_gguf, normal32
from conftest import one_line_source_error as _one_line_source_error
from conftest import missing_extra_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import htsr
from htsr.fits.powerlaw import fit_power_law
from htsr.errors import HtsrError, SourceError
from htsr.io import open_source
from htsr.io.base import FLOAT_DTYPES, TensorRef

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q

from htsr.io.gguf import GGUFFile, gguf_kind

# --------------------------------------------------------------------------------------------- helpers


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def quantize_q4_k(a: np.ndarray) -> np.ndarray:
    """A plain Q4_K quantizer (gguf-py only dequantizes Q4_K): the bytes llama.cpp's format expects.

    Each 256-value super-block has 8 sub-blocks of 32 values with a 6-bit scale and min each, and two
    fp16 super-scales: x ≈ d·sc_j·q − dmin·m_j with q ∈ 0..15. Scales and mins come from each
    sub-block's range (no iterative search as in llama.cpp's make_qkx2_quants, so the error is
    somewhat larger than llama.cpp's own Q4_K). Returns the uint8 byte matrix for GGUFWriter.
    """
    a = np.asarray(a, dtype=np.float32)
    rows, cols = a.shape
    assert cols % 256 == 0
    sub = a.reshape(-1, 8, 32)
    mn = np.minimum(sub.min(-1), 0.0)
    scale = (sub.max(-1) - mn) / 15.0
    minv = -mn
    d = (scale.max(-1) / 63.0).astype(np.float16)
    dmin = (minv.max(-1) / 63.0).astype(np.float16)
    d32, dmin32 = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.clip(np.rint(scale / d32), 0, 63), 0).astype(np.uint8)
        m = np.where(dmin32 > 0, np.clip(np.rint(minv / dmin32), 0, 63), 0).astype(np.uint8)
        eff_scale = (d32 * sc)[..., None]
        eff_min = (dmin32 * m)[..., None]
        q = np.where(eff_scale > 0, np.clip(np.rint((sub + eff_min) / eff_scale), 0, 15), 0).astype(np.uint8)
    scales = np.concatenate([
        sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
        m[:, :4] | ((m[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4),
    ], axis=1)
    q = q.reshape(-1, 4, 2, 32)
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8), scales, qs], axis=1)
    assert blocks.shape[1] == 144
    return blocks.reshape(rows, cols // 256 * 144)


def _encode(a: np.ndarray, qtype: Q) -> np.ndarray:
    if qtype == Q.F32:
        return np.ascontiguousarray(a, dtype=np.float32)
    if qtype == Q.F16:
        return np.ascontiguousarray(a, dtype=np.float16)
    if qtype == Q.Q4_K:
        return quantize_q4_k(a)
    return gguf.quants.quantize(np.ascontiguousarray(a, dtype=np.float32), qtype)


def write_gguf(path: Path, tensors: dict[str, tuple[np.ndarray, Q]], arch: str = "llama",
               alignment: int | None = None) -> Path:
    """Write ``{name: (array in PyTorch order, GGML type)}`` with gguf.GGUFWriter (``alignment``: the
    ``general.alignment`` key, else the default 32)."""
    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint32("test.answer", 42)
    w.add_array("test.ids", [1, 2, 3])
    for name, (a, qtype) in tensors.items():
        data = _encode(a, qtype)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
    finish_gguf(w)
    return path


def _refs(path) -> dict[str, TensorRef]:
    return {r.name: r for r in GGUFFile(path)}




def _tensor_info_positions(path: Path) -> dict[str, dict[str, int]]:
    """Byte positions of each tensor's type and data-offset fields in the header."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        name_len = len(t.name.encode())
        type_pos = t.field.offset + 8 + name_len + 4 + 8 * len(t.shape)
        out[t.name] = {"type": type_pos, "offset": type_pos + 4, "n_dims": t.field.offset + 8 + name_len}
    return out


def _sv(a: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)


# ------------------------------------------------------------------------------ orientation and dtypes


def test_f32_round_trip_orientation_and_exact_esd(tmp_path):
    W = _rng(1).standard_normal((48, 32)).astype(np.float32)  # [out, in], not square
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.attn_q.weight": (W, Q.F32)})

    # on disk, GGUF lists ne[0] = 32 (the input dimension, fastest varying) first ...
    assert gguf.GGUFReader(str(path)).tensors[0].shape.tolist() == [32, 48]
    # ... htsr reports PyTorch order [out, in]
    ref = _refs(path)["blk.0.attn_q.weight"]
    assert (ref.shape, ref.dtype, ref.ggml_type, ref.kind) == ((48, 32), "float32", "F32", "dense")
    got = ref.load()
    assert got.dtype == np.float32 and got.shape == (48, 32)
    np.testing.assert_array_equal(got, W)  # same bits, same orientation
    assert not got.flags.writeable  # a read-only view of the memory map, not a copy
    np.testing.assert_array_equal(_sv(got), _sv(W))  # so the ESD is exactly the original's
    # a map of its own, not a view into the reader's whole-file map: dropping the array releases its
    # pages (a view would keep every page read so far resident: bench_memory.py measured 6 GB on 6 GB)
    f = GGUFFile(path)
    own = next(iter(f)).load()
    assert not np.shares_memory(own, f._reader.data)


@pytest.mark.parametrize("alignment", [1, 64])
def test_a_general_alignment_key_is_read(tmp_path, alignment):
    """gguf reads general.alignment as a numpy uint32 (-n // it overflowed): such a file was refused whole."""
    W = _rng(3).standard_normal((96, 160)).astype(np.float32)
    tensors = {"blk.0.attn_q.weight": (W, Q.F32), "blk.0.attn_k.weight": (W[:64], Q.F16)}
    plain, aligned = write_gguf(tmp_path / "a.gguf", tensors), write_gguf(tmp_path / "b.gguf", tensors, alignment=alignment)
    assert gguf.GGUFReader(aligned).alignment == alignment
    for name in tensors:  # the same values at other offsets
        assert np.array_equal(_refs(aligned)[name].load(), _refs(plain)[name].load())


def test_f16_round_trip_to_fp16_precision(tmp_path):
    W = _rng(2).standard_normal((40, 64)).astype(np.float32)
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.ffn_up.weight": (W, Q.F16)})
    ref = _refs(path)["blk.0.ffn_up.weight"]
    assert (ref.shape, ref.dtype, ref.ggml_type) == ((40, 64), "float16", "F16")
    got = ref.load()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, W.astype(np.float16).astype(np.float32))  # exact: f16→f32 is lossless
    # vs the float32 original: each entry is rounded to fp16 (relative error ≤ 2^-11, these values are
    # far from the subnormal range), so by Weyl |Δσ_i| ≤ ‖E‖₂ ≤ ‖E‖_F ≤ 2^-11 ‖W‖_F
    assert np.abs(got - W).max() <= 2.0**-11 * np.abs(W).max()
    assert np.abs(_sv(got) - _sv(W)).max() <= 2.0**-11 * np.linalg.norm(W)


def test_q8_0_dequantized_error_is_small(tmp_path):
    W = _rng(3).standard_normal((24, 96)).astype(np.float32)
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.ffn_down.weight": (W, Q.Q8_0)})
    ref = _refs(path)["blk.0.ffn_down.weight"]
    # dtype is the dequantized array's (so analyze keeps it); the storage type is in ggml_type
    assert (ref.shape, ref.dtype, ref.ggml_type) == ((24, 96), "float32", "Q8_0")
    assert ref.dtype in FLOAT_DTYPES
    got = ref.load()
    assert got.dtype == np.float32 and got.shape == (24, 96)
    # exactly what gguf's own dequantizer gives for the bytes written
    np.testing.assert_array_equal(got, gguf.quants.dequantize(_encode(W, Q.Q8_0), Q.Q8_0))
    # Q8_0: blocks of 32 consecutive values of a row share d = max|x|/127 stored as fp16, q = round(x/d).
    # Error per entry ≤ d/2 (rounding) + 127·|d − fp16(d)| ≤ d/2 + 127·2^-11·d < 0.57·d; we allow 0.6·d.
    blockmax = np.abs(W.reshape(24, 3, 32)).max(-1, keepdims=True)
    assert np.all(np.abs(got - W).reshape(24, 3, 32) <= 0.6 * blockmax / 127)
    rel = np.linalg.norm(got - W) / np.linalg.norm(W)
    assert rel < 0.01  # ≈ 0.3 % for Gaussian entries
    assert np.abs(_sv(got) - _sv(W)).max() <= np.linalg.norm(got - W)  # Weyl


def test_q4_k_dequantized(tmp_path):
    W = _rng(4).standard_normal((16, 512)).astype(np.float32)
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.ffn_gate.weight": (W, Q.Q4_K)})
    ref = _refs(path)["blk.0.ffn_gate.weight"]
    assert (ref.shape, ref.dtype, ref.ggml_type) == ((16, 512), "float32", "Q4_K")
    got = ref.load()
    np.testing.assert_array_equal(got, gguf.quants.dequantize(quantize_q4_k(W), Q.Q4_K))
    # 4-bit: step ≈ range/15 per 32 values (≈ 4.5σ/15 for Gaussian blocks), rms error ≈ step/√12 ≈ 0.09σ,
    # plus 6-bit scale/min rounding: relative Frobenius error well under 15 %
    rel = np.linalg.norm(got - W) / np.linalg.norm(W)
    assert rel < 0.15, rel


def test_bf16_and_integer_tensors(tmp_path):
    rng = _rng(5)
    W = rng.standard_normal((8, 32)).astype(np.float32)
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.attn_k.weight", gguf.quants.quantize(W, Q.BF16), raw_dtype=Q.BF16)
    w.add_tensor("pos_ids", np.arange(12, dtype=np.int32).reshape(3, 4))
    finish_gguf(w)
    refs = _refs(path)
    bf = refs["blk.0.attn_k.weight"]
    assert (bf.shape, bf.dtype, bf.ggml_type) == ((8, 32), "bfloat16", "BF16")
    import ml_dtypes

    np.testing.assert_array_equal(bf.load(), W.astype(ml_dtypes.bfloat16).astype(np.float32))
    ints = refs["pos_ids"]
    assert (ints.shape, ints.dtype, ints.ggml_type) == ((3, 4), "int32", "I32")
    assert ints.dtype not in FLOAT_DTYPES  # analyze skips it


# ---------------------------------------------------------------------------------- names and kinds


def _mini_llama(path: Path, qtype: Q = Q.F32) -> dict[str, np.ndarray]:
    rng = _rng(6)
    dim, ff, vocab, E = 64, 128, 96, 3
    t = {
        "token_embd.weight": rng.standard_normal((vocab, dim)),
        "blk.0.attn_norm.weight": np.ones(dim),
        "blk.0.attn_q.weight": rng.standard_normal((dim, dim)),
        "blk.0.attn_k.weight": rng.standard_normal((32, dim)),
        "blk.0.attn_v.weight": rng.standard_normal((32, dim)),
        "blk.0.attn_output.weight": rng.standard_normal((dim, dim)),
        "blk.0.ffn_norm.weight": np.ones(dim),
        "blk.0.ffn_gate.weight": rng.standard_normal((ff, dim)),
        "blk.0.ffn_up.weight": rng.standard_normal((ff, dim)),
        "blk.0.ffn_down.weight": rng.standard_normal((dim, ff)),
        "blk.1.ffn_gate_inp.weight": rng.standard_normal((E, dim)),
        "blk.1.ffn_gate_exps.weight": rng.standard_normal((E, ff, dim)),
        "blk.1.ffn_down_exps.weight": rng.standard_normal((E, dim, ff)),
        "output_norm.weight": np.ones(dim),
        "output.weight": rng.standard_normal((vocab, dim)),
    }
    t = {k: v.astype(np.float32) for k, v in t.items()}
    write_gguf(path, {k: (v, qtype if v.ndim > 1 else Q.F32) for k, v in t.items()})
    return t


KINDS = {
    "token_embd.weight": "embedding",
    "blk.0.attn_norm.weight": None,
    "blk.0.attn_q.weight": "dense", "blk.0.attn_k.weight": "dense", "blk.0.attn_v.weight": "dense",
    "blk.0.attn_output.weight": "dense",
    "blk.0.ffn_norm.weight": None,
    "blk.0.ffn_gate.weight": "dense", "blk.0.ffn_up.weight": "dense", "blk.0.ffn_down.weight": "dense",
    "blk.1.ffn_gate_inp.weight": "dense",
    "blk.1.ffn_gate_exps.weight": "stack", "blk.1.ffn_down_exps.weight": "stack",
    "output_norm.weight": None,
    "output.weight": "dense",
}


def test_llama_names_kinds_and_shapes(tmp_path):
    path = tmp_path / "mini.gguf"
    tensors = _mini_llama(path)
    src = GGUFFile(path)
    assert src.description == str(path) and len(src) == len(tensors)
    refs = list(src)
    assert [r.name for r in refs] == list(tensors)  # GGUF names kept, in file order
    for r in refs:
        assert r.shape == tensors[r.name].shape, r.name  # PyTorch order, 3-D experts [E, out, in]
        assert r.kind == KINDS[r.name], r.name
        np.testing.assert_array_equal(r.load(), tensors[r.name])


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0])
def test_llama_rows_through_analyze(tmp_path, qtype):
    path = tmp_path / "mini.gguf"
    _mini_llama(path, qtype)
    result = htsr.analyze(path, min_evals=2)
    rows = {r.name: r for r in result.layers}
    want = {
        "token_embd": "embedding", "output": "dense", "blk.1.ffn_gate_inp": "dense",
        **{f"blk.0.{n}": "dense" for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                           "ffn_down")},
        **{f"blk.1.ffn_{n}_exps[{e}]": "stack" for n in ("gate", "down") for e in range(3)},
    }
    assert {n: r.kind for n, r in rows.items()} == want  # norms skipped, quantized tensors kept
    assert (rows["blk.1.ffn_down_exps[2]"].N, rows["blk.1.ffn_down_exps[2]"].M) == (128, 64)
    assert rows["blk.0.ffn_down"].shape == "64x128"


@pytest.mark.parametrize("name, shape, kind", [
    ("token_embd.weight", (10, 4), "embedding"),
    ("position_embd.weight", (10, 4), "embedding"),
    ("blk.12.attn_qkv.weight", (12, 4), "dense"),
    ("blk.3.ffn_up_exps.weight", (4, 8, 4), "stack"),
    ("blk.3.ffn_up_exps.weight", (8, 4), None),  # unexpected rank: left to infer_kind
    ("blk.3.ffn_up_exps.weight", (2, 4, 8, 4), None),  # (more axes too)
    ("blk.0.attn_q.weight", (4, 64, 32), None),
    ("blk.0.attn_q.bias", (4,), None),
    ("blk.0.attn_norm.weight", (4,), None),
    ("some.custom.weight", (4, 4), None),
    # a table role without '.weight' (not a llama.cpp weight name) gets no kind from the table
    ("blk.3.ffn_up_exps", (4, 8, 4), None),
    ("token_embd", (10, 4), None),
    # BERT's token type embeddings and T5's cross-attention buckets are embeddings, not dense layers (the
    # name alone would say dense)
    ("token_types.weight", (2, 4), "embedding"),
    ("dec.blk.0.cross_attn_rel_b.weight", (32, 8), "embedding"),
])
def test_gguf_kind_table(name, shape, kind):
    assert gguf_kind(name, shape) == kind


# ----------------------------------------------------------------------------------------- laziness


def test_opening_and_listing_reads_no_tensor(tmp_path, monkeypatch):
    path = tmp_path / "mini.gguf"
    _mini_llama(path, Q.Q8_0)
    calls: list[tuple] = []
    real = gguf.quants.dequantize
    monkeypatch.setattr(gguf.quants, "dequantize", lambda d, q: (calls.append(d.shape), real(d, q))[1])
    loaded: list[str] = []
    real_load = TensorRef.load
    monkeypatch.setattr(TensorRef, "load", lambda self: (loaded.append(self.name), real_load(self))[1])

    refs = list(GGUFFile(path))
    assert len(refs) == 15 and calls == [] and loaded == []
    # one tensor is dequantized per load, and only that one
    next(r for r in refs if r.name == "blk.0.ffn_up.weight").load()
    assert len(calls) == 1
    # analyze reads only the layers it analyses
    loaded.clear()
    htsr.analyze(path, layers=r"^blk\.0\.attn_v$")
    assert loaded == ["blk.0.attn_v.weight"]


# -------------------------------------------------------------------------------------- bad input


@pytest.fixture
def small_file(tmp_path) -> Path:
    rng = _rng(7)
    return write_gguf(tmp_path / "small.gguf", {
        "blk.0.attn_q.weight": (rng.standard_normal((8, 32)).astype(np.float32), Q.F32),
        "blk.0.attn_norm.weight": (np.ones(32, np.float32), Q.F32),
        "blk.0.ffn_up.weight": (rng.standard_normal((4, 64)).astype(np.float32), Q.Q8_0),
    })


def _data_offset(path: Path) -> int:
    return int(gguf.GGUFReader(str(path)).data_offset)


def test_wrong_magic(small_file):
    raw = bytearray(small_file.read_bytes())
    raw[0:4] = b"GGUX"
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file), "not a GGUF file")


@pytest.mark.parametrize("size", [0, 3, 10])
def test_too_short(tmp_path, size):
    path = tmp_path / "short.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00\x00\x00"[:size])
    with pytest.raises(SourceError) as ei:
        GGUFFile(path)
    _one_line_source_error(ei, str(path))


def test_truncated_in_data_section_names_the_tensor(small_file):
    """A file cut off in its last tensor (an interrupted download) had refused the whole run: the tensors before
    the cut are read, the one cut gets a failed row saying so; a cut before any tensor's end leaves nothing to read
    and is refused naming a tensor past it."""
    raw = small_file.read_bytes()
    whole = {r.name: r.load() for r in GGUFFile(small_file)}
    small_file.write_bytes(raw[:-40])  # the last tensor (ffn_up, Q8_0; 272 bytes + 16 padding) loses its tail
    refs = {r.name: r for r in GGUFFile(small_file)}
    assert refs.keys() == whole.keys()
    for name, r in refs.items():
        if name != "blk.0.ffn_up.weight":
            np.testing.assert_array_equal(r.load(), whole[name])  # read as they are
    with pytest.raises(SourceError) as ei:
        refs["blk.0.ffn_up.weight"].load()
    _one_line_source_error(ei, str(small_file), "cut off 24 bytes short", "run past its end (248 of 272 there)")
    r = htsr.analyze(small_file, min_evals=2)
    rows = {l.name: l for l in r.layers}
    assert rows["blk.0.ffn_up"].status.startswith(f"failed: {small_file}: cut off 24 bytes short")
    assert r.source == f"{small_file} (cut off: 1 tensor(s) past the end of the file; fetch it again)"
    assert all(l.status == "ok" for n, l in rows.items() if n != "blk.0.ffn_up")


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6, 0.9])
def test_truncated_inside_header(small_file, fraction):
    cut = int(_data_offset(small_file) * fraction)
    small_file.write_bytes(small_file.read_bytes()[:max(cut, 24)])
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file))


def test_data_offset_beyond_the_file(small_file):
    pos = _tensor_info_positions(small_file)["blk.0.attn_q.weight"]["offset"]
    raw = bytearray(small_file.read_bytes())
    raw[pos:pos + 8] = struct.pack("<Q", 1 << 40)  # aligned, but a terabyte past the end
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    msg = _one_line_source_error(ei, str(small_file), "'blk.0.attn_q.weight'", "beyond the end")
    assert "ffn_up" not in msg


def test_misaligned_data_offset(small_file):
    pos = _tensor_info_positions(small_file)["blk.0.ffn_up.weight"]["offset"]
    raw = bytearray(small_file.read_bytes())
    (off,) = struct.unpack("<Q", raw[pos:pos + 8])
    raw[pos:pos + 8] = struct.pack("<Q", off + 1)
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file), "'blk.0.ffn_up.weight'", "alignment")


def test_tensors_sharing_bytes_are_refused(small_file):
    """Many names over the same data would make a small file cost one analysis per name."""
    pos = _tensor_info_positions(small_file)["blk.0.ffn_up.weight"]["offset"]
    raw = bytearray(small_file.read_bytes())
    raw[pos:pos + 8] = struct.pack("<Q", 0)  # over attn_q's bytes (offset 0 is aligned)
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file), "'blk.0.attn_q.weight'", "'blk.0.ffn_up.weight'", "overlap")


def test_a_tensor_named_twice_is_refused_naming_it(small_file):
    """Two tensor descriptions of one name (ffn_up's name bytes overwritten with attn_q's, the same length) is
    a corrupt header, said in htsr's words with the name, not as whatever GGUFReader makes of it."""
    pos = _tensor_info_positions(small_file)["blk.0.ffn_up.weight"]["n_dims"] - len("blk.0.ffn_up.weight")
    raw = bytearray(small_file.read_bytes())
    assert raw[pos:pos + 19] == b"blk.0.ffn_up.weight"
    raw[pos:pos + 19] = b"blk.0.attn_q.weight"
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file), "GGUF header is corrupt: tensor 'blk.0.attn_q.weight' appears twice")


@pytest.mark.parametrize("bad_type, said", [
    # an unknown type says what may be wrong: the file, or a gguf older than the file
    (99, f"unknown GGML type 99 (corrupt file, or a type newer than gguf {importlib.metadata.version('gguf')})"),
    (4, "unknown GGML type 4"),  # 4 was Q4_2, removed from GGML long ago
    (2**31, f"unknown GGML type {2**31}"),
    # llama.cpp's removed ARM repacked types (31-33, 36-38), still in files on the Hub: named, not 'newer', and
    # the message says what to do
    (31, "GGML type 31, Q4_0_4_4, a repacked type llama.cpp removed (it repacks at load time now): convert the "
         "model again with a current llama.cpp"),
    (32, "GGML type 32, Q4_0_4_8, a repacked type"), (33, "GGML type 33, Q4_0_8_8, a repacked type"),
    (36, "GGML type 36, IQ4_NL_4_4, a repacked type"), (37, "GGML type 37, IQ4_NL_4_8, a repacked type"),
    (38, "GGML type 38, IQ4_NL_8_8"),
])
def test_unknown_ggml_type(small_file, bad_type, said):
    pos = _tensor_info_positions(small_file)["blk.0.ffn_up.weight"]["type"]
    raw = bytearray(small_file.read_bytes())
    raw[pos:pos + 4] = struct.pack("<I", bad_type)
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file), "'blk.0.ffn_up.weight'", said)


def test_too_many_dimensions(small_file):
    pos = _tensor_info_positions(small_file)["blk.0.attn_norm.weight"]["n_dims"]
    raw = bytearray(small_file.read_bytes())
    raw[pos:pos + 4] = struct.pack("<I", 2**31)
    small_file.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(small_file)
    _one_line_source_error(ei, str(small_file))


def test_missing_gguf_package_is_a_missing_extra(small_file, monkeypatch):
    assert "htsr[gguf]" in missing_extra_error(monkeypatch, "gguf", lambda: GGUFFile(small_file))


def test_file_is_not_modified(small_file):
    before = small_file.read_bytes()
    mtime = small_file.stat().st_mtime_ns
    for r in GGUFFile(small_file):
        r.load()
    htsr.analyze(small_file, min_evals=2)
    assert small_file.read_bytes() == before and small_file.stat().st_mtime_ns == mtime


# ------------------------------------------------------------------------- hypothesis: header fuzzing


def _valid_small_gguf() -> tuple[bytes, int]:
    import tempfile

    rng = _rng(8)
    with tempfile.TemporaryDirectory() as d:
        p = write_gguf(Path(d) / "x.gguf", {
            "token_embd.weight": (rng.standard_normal((6, 32)).astype(np.float32), Q.F16),
            "blk.0.attn_q.weight": (rng.standard_normal((4, 32)).astype(np.float32), Q.F32),
            "blk.0.attn_norm.weight": (np.ones(32, np.float32), Q.F32),
            "blk.0.ffn_up.weight": (rng.standard_normal((3, 64)).astype(np.float32), Q.Q8_0),
        })
        r = gguf.GGUFReader(str(p))
        data_end = max(int(t.data_offset) + int(t.n_bytes) for t in r.tensors)
        return p.read_bytes(), int(r.data_offset), data_end


_VALID, _HEADER_LEN, _DATA_END = _valid_small_gguf()
_counter = itertools.count()


def _open_and_load_all(path: Path) -> None:
    try:
        for r in GGUFFile(path):
            r.load()
    except HtsrError as e:
        assert "\n" not in str(e)


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, _HEADER_LEN - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzzed_header_raises_only_htsr_errors(tmp_path, mutations):
    raw = bytearray(_VALID)
    for pos, byte in mutations:
        raw[pos] = byte
    path = tmp_path / f"fuzz{next(_counter)}.gguf"  # a fresh file: never rewrite a mapped file
    path.write_bytes(bytes(raw))
    _open_and_load_all(path)


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, _DATA_END - 1))  # cutting only the trailing alignment padding loses no data
def test_any_truncation_raises_only_htsr_errors(tmp_path, cut):
    path = tmp_path / f"cut{next(_counter)}.gguf"
    path.write_bytes(_VALID[:cut])
    with pytest.raises(SourceError):
        for r in GGUFFile(path):
            r.load()


# ---------------------------------------------------------------- real weights: GGUF vs safetensors


@pytest.mark.network
def test_minilm_gguf_alpha_matches_safetensors(tmp_path, minilm_path):
    weights = {r.name: np.asarray(r.load(), dtype=np.float32) for r in open_source(minilm_path)
               if r.dtype in FLOAT_DTYPES and len(r.shape) == 2}
    ref_result = htsr.analyze(minilm_path, keep_spectra=True)
    reference = {r.name: r for r in ref_result.layers}

    def q4_k_plan(a: np.ndarray) -> Q:
        # llama.cpp's own fallback: Q4_K needs rows of a multiple of 256; other tensors go to Q5_0
        return Q.Q4_K if a.shape[1] % 256 == 0 else Q.Q5_0

    plans = {"F32": lambda a: Q.F32, "Q8_0": lambda a: Q.Q8_0, "Q4_K": q4_k_plan}
    deltas: dict[str, dict[str, float]] = {}
    for label, plan in plans.items():
        path = write_gguf(tmp_path / f"minilm-{label}.gguf", {n: (a, plan(a)) for n, a in weights.items()},
                          arch="bert")
        ggml_types = {r.name[: -len(".weight")]: r.ggml_type for r in GGUFFile(path)}
        result = htsr.analyze(path, keep_spectra=True)
        rows = {r.name: r for r in result.layers}
        assert set(rows) == set(reference), label
        d = {}
        for name, ref in reference.items():
            row = rows[name]
            assert (row.kind, row.shape, row.status) == (ref.kind, ref.shape, ref.status), (label, name)
            if ref.status == "ok":
                d[name] = row.alpha - ref.alpha
                if label == "F32":  # the same float32 values: only BLAS's sum order could differ (measured 0)
                    assert row.alpha == pytest.approx(ref.alpha, rel=1e-9, abs=0), name
        deltas[label] = d
        by_type: dict[str, list[float]] = {}
        for n, v in d.items():
            by_type.setdefault(ggml_types[n], []).append(abs(v))
        ratio = {n: abs(v) / reference[n].sigma for n, v in d.items()}
        print(f"\n{label}: {len(d)} fitted layers, max |Δalpha| = {max(map(abs, d.values())):.4g}, "
              f"median {np.median(np.abs(list(d.values()))):.3g}, within 0.05: "
              f"{sum(abs(v) <= 0.05 for v in d.values())}/{len(d)}, max |Δalpha|/sigma {max(ratio.values()):.3g}; "
              + ", ".join(f"{t}: max {max(v):.4g} over {len(v)}" for t, v in sorted(by_type.items())))
        worst = sorted(d.items(), key=lambda kv: -abs(kv[1]))[:3]
        print("  worst: " + "; ".join(
            f"{n} {v:+.4f} (alpha {reference[n].alpha:.3f} ± {reference[n].sigma:.3f}, tail "
            f"{reference[n].num_pl_spikes:.0f} → {rows[n].num_pl_spikes:.0f} eigenvalues)" for n, v in worst))
        if label == "Q8_0":
            q8_rows, q8_spectra = rows, dict(zip(rows, result.spectra))
    assert len(deltas["F32"]) > 20
    # Q8_0 moves each entry by < 0.5 % of its block's max (≈ 0.5 % in Frobenius norm) and the eigenvalues
    # by < 0.1 %; the continuous spectral metrics follow to that precision ...
    for name, ref in reference.items():
        if ref.status == "ok":
            assert q8_rows[name].lambda_max == pytest.approx(ref.lambda_max, rel=2e-3), name
            assert q8_rows[name].log_norm == pytest.approx(ref.log_norm, abs=2e-3), name  # (measured ≤ 4.4e-5)
    # ... but alpha comes from a discrete choice of x_min (the KS-optimal tail size), which such a
    # perturbation can shift by a few eigenvalues; a layer with a short, steep tail (alpha ≫ 6) also
    # amplifies eigenvalue changes. So most layers agree to 0.05, and every layer to well within the
    # fit's own standard error sigma = (alpha − 1)/√n (measured with gguf 0.19: 36 of 39 layers within
    # 0.05, the largest change 0.17 = 0.45 sigma, where the tail grew from 66 to 71 eigenvalues).
    q8 = deltas["Q8_0"]
    assert sum(abs(v) <= 0.05 for v in q8.values()) >= 0.85 * len(q8)
    # with the x_min choice taken out (the Q8_0 spectrum fitted over the reference's tail size), the
    # dequantized weights give the reference's alpha: measured median |Δalpha| 0.0012, 38 of 39 within 0.05
    # (the exception, 0.09, a short steep tail)
    same_tail = []
    for n in q8:
        x = np.sort(q8_spectra[n].fit_evals)
        same_tail.append(abs(fit_power_law(x, xmin=float(x[-int(reference[n].num_pl_spikes)])).alpha
                             - reference[n].alpha))
    # (measured as said: 4x under 0.005; 38 ≥ 0.95 · 39 = 37.05, no layer to spare)
    assert np.median(same_tail) < 0.005 and sum(d <= 0.05 for d in same_tail) >= 0.95 * len(same_tail)
    assert all(abs(v) <= reference[n].sigma for n, v in q8.items())  # (one sigma: measured ≤ 0.45 sigma)
    assert all(np.isfinite(v) for v in deltas["Q4_K"].values())
    # with x_min = the median eigenvalue (--xmin median) there is no discrete choice for the perturbation to
    # shift, and every layer agrees to 0.05 (measured: max |Δalpha| 0.010 over 39 layers)
    median_ref = {r.name: r for r in htsr.analyze(minilm_path, xmin="median").layers}
    median_q8 = {r.name: r for r in htsr.analyze(tmp_path / "minilm-Q8_0.gguf", xmin="median").layers}
    d_median = {n: abs(median_q8[n].alpha - r.alpha) for n, r in median_ref.items() if r.status == "ok"}
    print(f"Q8_0, --xmin median: max |Δalpha| = {max(d_median.values()):.4g} over {len(d_median)} layers")
    assert set(d_median) == set(q8) and max(d_median.values()) <= 0.05


def _write_adapter(path: Path, tensors: dict[str, np.ndarray], alpha: float | None) -> Path:
    """A llama.cpp LoRA adapter as convert_lora_to_gguf.py writes one: general.type 'adapter',
    adapter.type 'lora', adapter.lora.alpha, '<weight>.lora_a' / '.lora_b' tensors."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    if alpha is not None:
        w.add_float32("adapter.lora.alpha", alpha)
    for name, a in tensors.items():
        w.add_tensor(name, a.astype(np.float32))
    finish_gguf(w)
    return path


def test_llama_cpp_lora_adapter_gives_the_updates_not_the_factors(tmp_path):
    """Each lora_a (r x in; token_embd's stored vocab x r) and lora_b (out x r) pair is one lora row of
    ΔW = (alpha / r)·B·A, expert stacks one row per expert: the eigenvalues equal a dense SVD of the product
    (float32 factors: 1e-5 relative); alpha 0 scales by 1, as llama.cpp does."""
    rng = _rng(4)
    a, b = rng.standard_normal((8, 96)), rng.standard_normal((128, 8))
    emb_a, emb_b = rng.standard_normal((300, 8)), rng.standard_normal((64, 8))  # vocab x r, dim x r
    ea, eb = rng.standard_normal((3, 8, 64)), rng.standard_normal((3, 80, 8))
    tensors = {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b,
               "token_embd.weight.lora_a": emb_a, "token_embd.weight.lora_b": emb_b,
               "blk.0.ffn_up_exps.weight.lora_a": ea, "blk.0.ffn_up_exps.weight.lora_b": eb,
               "blk.0.attn_k.weight.lora_a": a, "blk.0.attn_norm.weight": np.ones(96),
               # rank 1: factors [1, in] and [out, 1] are no vectors to pass over
               "blk.0.attn_v.weight.lora_a": a[:1], "blk.0.attn_v.weight.lora_b": b[:, :1]}
    want = {"blk.0.attn_q#delta": b @ a, "token_embd#delta": emb_b @ emb_a.T, "blk.0.attn_v#delta": b[:, :1] @ a[:1],
            **{f"blk.0.ffn_up_exps#delta[{e}]": eb[e] @ ea[e] for e in range(3)}}
    for alpha, scale in ((16.0, 2.0), (0.0, 1.0)):
        r = htsr.analyze(_write_adapter(tmp_path / f"a{alpha}.gguf", tensors, alpha), min_evals=2, keep_spectra=True)
        rows = {x.name: (x, s) for x, s in zip(r.layers, r.spectra)}
        assert sorted(rows) == sorted([*want, "blk.0.attn_k#delta"])
        # an update (its A and B) counts once, a stack's too: 3 experts' rows counted as 3 tensors before
        assert r.num_tensors == 6
        assert rows["blk.0.attn_k#delta"][0].status == "skipped: blk.0.attn_k.weight.lora_a has no lora_b beside it"
        for name, d in want.items():
            row, sp = rows[name]
            rank = 1 if name == "blk.0.attn_v#delta" else 8
            assert row.kind == "lora" and row.status == ("ok" if rank > 1 else
                                                         "not_fitted: rank-1 update has 1 nonzero eigenvalues < min_evals=2")
            assert row.num_zero_evals == row.M - rank  # the spectrum's zeros: M less the rank
            s = scale * 8 / rank if alpha else 1.0  # alpha / r
            ref = np.sort(np.linalg.svd(s * d, compute_uv=False) ** 2)
            np.testing.assert_allclose(sp.evals[-rank:], ref[-rank:], rtol=1e-5)
        assert [n.examples for n in r.not_analysed] == [("blk.0.attn_norm.weight",)]


def test_bf16_in_a_big_endian_file_and_types_without_a_dequantizer(tmp_path):
    """gguf's own endian converter makes a big-endian copy: its BF16 and block-quantized tensors read as the
    little-endian file's, exactly. A Q8_K tensor (a type of intermediate results: no dequantizer exists) gets a skipped
    row saying so, and the other tensors go on."""
    import subprocess
    import sys

    import gguf.quants as gq

    a = _rng(6).standard_normal((64, 256)).astype(np.float32)

    def write(path: Path, q8k: bool) -> Path:
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_tensor("blk.0.attn_q.weight", gq.quantize(a, Q.BF16), raw_dtype=Q.BF16)
        if not q8k:  # the block types the converter swaps (their float16 scales)
            for i, qt in enumerate((Q.Q4_0, Q.Q8_0, Q.Q4_K, Q.Q6_K)):
                if qt in (Q.Q4_0, Q.Q8_0):
                    data = gq.quantize(a, qt)
                else:  # (gguf quantizes no K type: random codes, with scales that are not symmetric in bytes)
                    block, size = gguf.GGML_QUANT_SIZES[qt]
                    data = _rng(i).integers(0, 256, (64, 256 // block, size), dtype=np.uint8)
                    for off in ((0, 2) if qt == Q.Q4_K else (208,)):
                        data[..., off:off + 2] = np.frombuffer(np.float16(0.0123 * (off + 1)).tobytes(), np.uint8)
                    data = data.reshape(64, -1)
                w.add_tensor(f"blk.{i + 1}.attn_q.weight", data, raw_dtype=qt)
        if q8k:  # (the endian converter refuses it)
            block, size = gguf.GGML_QUANT_SIZES[Q.Q8_K]
            w.add_tensor("blk.0.attn_k.weight", np.zeros((64, 256 // block * size), np.uint8), raw_dtype=Q.Q8_K)
        finish_gguf(w)
        return path

    le, be = write(tmp_path / "le.gguf", False), write(tmp_path / "be.gguf", False)
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_convert_endian", str(be), "big"], input=b"YES\n",
                   check=True, capture_output=True)
    assert GGUFFile(be)._reader.byte_order == "S"
    for name in [f"blk.{i}.attn_q.weight" for i in range(5)]:  # (quantized blocks were refused before)
        assert np.array_equal(_refs(be)[name].load(), _refs(le)[name].load()), name
    # a quantized type the converter does not swap (its fields' order unknown): a row that says what to run
    w = gguf.GGUFWriter(str(tmp_path / "q5.gguf"), "llama", endianess=gguf.GGUFEndian.BIG)
    w.add_tensor("blk.0.attn_q.weight", gq.quantize(a, Q.Q5_0), raw_dtype=Q.Q5_0)
    finish_gguf(w)
    assert htsr.analyze(tmp_path / "q5.gguf").layers[0].status == (
        "skipped: Q5_0 data in a big-endian GGUF file (only Q4_0, Q8_0, Q4_K, Q6_K, MXFP4 and NVFP4 are read so, the "
        "types gguf_convert_endian converts): convert the model to GGUF again, little-endian")
    rows = {x.name: x for x in htsr.analyze(write(tmp_path / "q8k.gguf", True)).layers}
    assert rows["blk.0.attn_q"].status == "ok"
    assert rows["blk.0.attn_k"].status == ("skipped: Q8_K is a GGML type of intermediate results, not of stored "
                                           "weights; no dequantizer exists for it")


def test_llama_cpp_lora_pairs_that_make_no_update_are_skipped(tmp_path):
    """A transposed lora_a is token_embd's only (elsewhere factors that do not multiply are no update), and a
    rank-0 pair is no update: skipped rows, never a ZeroDivisionError or a guessed orientation."""
    rng = _rng(8)
    tensors = {"blk.0.attn_q.weight.lora_a": rng.standard_normal((4, 16)),
               "blk.0.attn_q.weight.lora_b": rng.standard_normal((16, 16)),
               "blk.0.attn_k.weight.lora_a": np.zeros((0, 16)), "blk.0.attn_k.weight.lora_b": np.zeros((16, 0))}
    rows = {x.name: x.status for x in htsr.analyze(_write_adapter(tmp_path / "bad.gguf", tensors, 8.0)).layers}
    assert rows == {n: rows[n] for n in ("blk.0.attn_q#delta", "blk.0.attn_k#delta")}
    assert all(s.startswith("skipped: LoRA factors of shapes") and s.endswith("do not make a rank-r update")
               for s in rows.values())


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_K])
def test_a_delta_of_quantized_files_has_the_quantization_noise_as_its_floor(tmp_path, qtype):
    """Two GGUF files quantized each on its own (a quantized fine-tune against a quantized base): W − W_base
    holds both quantization errors. Measured from the values (TensorRef.bits and quant_block: each block's
    range in 2^bits − 1 steps, error rms step/√12) it is within 30 % of the noise actually in the delta. Before, the floor was float32's (7e-10 for a 1e-4 noise): a delta of an update far below
    the quantization noise was fitted 'ok' (alpha 3.24 for Q8_0, 5.98 for Q4_0), a power law of the
    rounding; now its row says not fitted, the eigenvalues below the noise."""
    from htsr.analyze import iter_layers
    from htsr.options import Options

    rng = _rng(21)
    W0 = (rng.standard_normal((512, 512)) * 0.02).astype(np.float32)
    W1 = W0 + (rng.standard_normal((512, 512)) * 0.01).astype(np.float32)  # independent roundings
    base = write_gguf(tmp_path / "base.gguf", {"blk.0.ffn_up.weight": (W0, qtype)})
    model = write_gguf(tmp_path / "model.gguf", {"blk.0.ffn_up.weight": (W1, qtype)})
    ref = _refs(model)["blk.0.ffn_up.weight"]
    assert (ref.bits, ref.quant_block) == {Q.Q8_0: (8, 32), Q.Q4_K: (4, 32)}[qtype]  # codes, weights per scale
    (lm,) = list(iter_layers(model, Options.create(base=base))[2])
    D = lm.load()[0]
    actual = float(np.sqrt(np.mean((D - (W1 - W0)) ** 2)))
    # measured from each block's range: within 30 % (a Gaussian block uses most codes; Q4_K's mins shift it)
    assert 0.7 * actual <= lm.resolution() <= 1.3 * actual, (lm.resolution(), actual)
    # a rank-4 update of rms 4e-5 on Q8_0: the QA case, below the noise of both roundings
    W2 = W0 + (rng.standard_normal((512, 4)) @ rng.standard_normal((4, 512))).astype(np.float32) * 2e-5
    tiny = write_gguf(tmp_path / "tiny.gguf", {"blk.0.ffn_up.weight": (W2, qtype)})
    (row,) = htsr.analyze(tiny, base=base).layers
    assert row.status.startswith("not_fitted:") and "floor" in row.status, row.status


def test_a_gguf_split_model_is_read_whole_from_its_first_shard_or_its_folder(tmp_path):
    """llama.cpp's gguf-split (GGUFWriter(split_max_tensors=…): model-0000k-of-00003.gguf, split.count 3): the
    first shard alone gave 5 of 16 matrices, silently; its folder was refused. Both give the whole model now;
    a missing shard is refused, naming it."""
    rng = _rng(22)
    folder = tmp_path / "split"
    folder.mkdir()
    names = [f"blk.{i}.{r}.weight" for i in range(4) for r in ("attn_q", "attn_k", "ffn_up", "ffn_down")]
    w = gguf.GGUFWriter(str(folder / "model.gguf"), "llama", split_max_tensors=6)
    for n in names:
        w.add_tensor(n, (rng.standard_normal((64, 96)) * 0.02).astype(np.float32))
    finish_gguf(w)
    shards = sorted(folder.glob("*.gguf"))
    assert [p.name for p in shards] == [f"model-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    for src in (shards[0], folder):
        r = htsr.analyze(src, min_evals=2)
        assert [x.name for x in r.layers] == [n[: -len(".weight")] for n in names]
        assert r.source.endswith("model-00001-of-00003.gguf (+2 shards)")
    from htsr.io.gguf import open_gguf

    assert len(open_gguf(shards[0])) == len(names)  # the whole model's tensors, not its shard count
    # a copy of a shard under another name (a browser's .part left beside the finished download) is not taken for
    # the split its name starts like: refused, not read as the .gguf files beside it
    part = folder / "model-00001-of-00003.gguf.part"
    part.write_bytes(shards[0].read_bytes())
    with pytest.raises(SourceError) as ei:
        open_source(part)
    _one_line_source_error(ei, str(part), "not named <name>-0000k-of-0000n.gguf")
    part.unlink()
    # without its first shard, the folder named the others to 'give one', which was then refused
    first = shards[0].read_bytes()
    shards[0].unlink()
    with pytest.raises(SourceError) as ei:
        open_source(folder)
    _one_line_source_error(ei, "model-00001-of-00003.gguf is missing")
    shards[0].write_bytes(first)
    shards[2].unlink()
    with pytest.raises(SourceError) as ei:
        open_source(shards[0])
    _one_line_source_error(ei, str(shards[0]), "model-00003-of-00003.gguf is missing")


def test_a_gguf_split_folder_is_opened_from_its_first_shard_whose_header_counts_the_shards(tmp_path):
    """A gguf-split folder is opened from shard 1, as llama.cpp loads one: its split.count finds the others. A
    later shard whose header carries no split keys (rewritten by a tool that dropped them) is then still read
    as part of the model; opened from it, the model would be that shard alone. The folder test had only
    well-formed shards, any of which finds the rest."""
    rng = _rng(23)
    names = [f"blk.{i}.attn_q.weight" for i in range(4)]
    arrays = {n: (rng.standard_normal((64, 96)) * 0.02).astype(np.float32) for n in names}
    w = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama", split_max_tensors=2)
    for n in names:
        w.add_tensor(n, arrays[n])
    finish_gguf(w)
    w = gguf.GGUFWriter(str(tmp_path / "model-00002-of-00002.gguf"), "llama")  # shard 2 again, no split keys
    for n in names[2:]:
        w.add_tensor(n, arrays[n])
    finish_gguf(w)
    src = open_source(tmp_path)
    assert src.description == f"{tmp_path / 'model-00001-of-00002.gguf'} (+1 shards)"
    assert {t.name: t.load().tolist() for t in src} == {n: a.tolist() for n, a in arrays.items()}


def test_a_legacy_llama_cpp_file_is_named_for_what_it_is(tmp_path):
    """GGML / GGJT files (llama.cpp before GGUF) were 'not a PyTorch checkpoint … another format?'."""
    path = tmp_path / "ggml-model-q4_0.bin"
    path.write_bytes(b"tjgg" + (3).to_bytes(4, "little") + bytes(200))
    with pytest.raises(SourceError) as ei:
        open_source(path)
    _one_line_source_error(ei, str(path), "a legacy llama.cpp GGJT file", "convert_llama_ggml_to_gguf.py")


def test_one_expert_of_a_quantized_stack_is_dequantized_alone(tmp_path, monkeypatch):
    """Each expert row of a fused [E, out, in] Q8_0 stack dequantizes that expert's bytes only (the whole stack
    was dequantized for the first expert: 551 MiB for a 4 MiB expert of a 64-expert Q4_K stack). The rows are
    the experts, as before; a stack of one expert is still expert [0]."""
    rng = _rng(23)
    E, out, n_in = 4, 64, 96
    stack = (rng.standard_normal((E, out, n_in)) * 0.02).astype(np.float32)
    path = write_gguf(tmp_path / "moe.gguf", {"blk.0.ffn_up_exps.weight": (stack, Q.Q8_0),
                                              "blk.1.ffn_up_exps.weight": (stack[:1], Q.Q8_0)})
    sizes = []
    real = gguf.quants.dequantize
    monkeypatch.setattr(gguf.quants, "dequantize", lambda data, qtype: sizes.append(data.size) or real(data, qtype))
    from htsr.analyze import iter_layers
    from htsr.options import Options

    rows = list(iter_layers(path, Options.create())[2])
    assert [lm.name for lm in rows] == [f"blk.0.ffn_up_exps[{e}]" for e in range(E)] + ["blk.1.ffn_up_exps[0]"]
    for e, lm in enumerate(rows[:E]):
        sizes.clear()
        got = lm.load()[0]
        assert sizes == [out * n_in // 32 * 34]  # one expert's Q8_0 blocks
        np.testing.assert_allclose(got, stack[e], atol=np.abs(stack[e]).max() / 127)  # Q8_0: half a step


def test_norms_stored_2d_state_space_parameters_and_vision_embeddings(tmp_path):
    """Command R's attn_q_norm [heads, head_dim] and Mamba-2's ssm_norm are norm scales, not dense layers
    (alpha 1.97 'ok' before); Mamba's ssm_a, ssm_d and ssm_conv1d are listed as no weight matrices; gemma3n's
    per_layer_token_embd and a vision tower's v.position_embd are embeddings."""
    rng = _rng(24)
    f = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)  # noqa: E731
    path = write_gguf(tmp_path / "m.gguf", {
        "blk.0.attn_q_norm.weight": (f(96, 128), Q.F32), "blk.0.ssm_norm.weight": (f(4, 64), Q.F32),
        "blk.0.ssm_a": (f(256, 16), Q.F32), "blk.0.ssm_conv1d.weight": (f(256, 4), Q.F32),
        "per_layer_token_embd.weight": (f(300, 64), Q.F32), "v.position_embd.weight": (f(197, 64), Q.F32),
        "v.blk.0.attn_q.weight": (f(64, 64), Q.F32)})
    r = htsr.analyze(path, min_evals=2)
    assert {x.name: x.kind for x in r.layers} == {
        "per_layer_token_embd": "embedding", "v.position_embd": "embedding", "v.blk.0.attn_q": "dense"}
    reasons = {n.reason: n.examples for n in r.not_analysed}
    assert set(reasons["norm scale (per head or group: 2-D)"]) == {"blk.0.attn_q_norm.weight", "blk.0.ssm_norm.weight"}
    assert r.num_tensors == 7
    assert any("ssm_a" in n for ex in reasons.values() for n in ex)
    assert any("ssm_conv1d" in n for ex in reasons.values() for n in ex)


def test_roles_of_mla_rwkv_t5_and_short_convolutions(tmp_path):
    """convert_hf_to_gguf's tensors that are no plain [out, in] matrix: MLA's kv_b_proj split per head into
    attn_k_b (stored transposed) and attn_v_b gave a row per head (15 600 rows for DeepSeek-V3), now one matrix
    each, the heads' rows of kv_b_proj; RWKV6's time_mix_w2 [5, dim, 32] was a conv1d of 32 taps, now its 5
    projections; its lerp vectors [1, 1, dim] and per-head vectors were dense 1-eigenvalue layers; LFM2's and
    Kimi-Linear's conv taps were dense / conv2d layers; T5's relative position buckets are an embedding, as
    from Hugging Face."""
    rng = _rng(26)
    f = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)  # noqa: E731
    heads, nope, v_head, rank = 4, 16, 24, 32
    kv_b = f(heads * (nope + v_head), rank)  # Hugging Face's kv_b_proj.weight
    per_head = kv_b.reshape(heads, nope + v_head, rank)
    k_b, v_b = per_head[:, :nope].transpose(0, 2, 1), per_head[:, nope:]  # as convert_hf_to_gguf splits it
    w2 = f(5, 64, 8)
    path = write_gguf(tmp_path / "m.gguf", {
        "blk.0.attn_k_b.weight": (np.ascontiguousarray(k_b), Q.F32), "blk.0.attn_v_b.weight": (v_b, Q.F32),
        "blk.0.time_mix_w2.weight": (w2, Q.F32), "blk.0.time_mix_lerp_x.weight": (f(1, 1, 64), Q.F32),
        "blk.0.time_mix_first.weight": (f(4, 16), Q.F32), "blk.0.shortconv.conv.weight": (f(64, 3), Q.F32),
        "blk.1.ssm_conv1d_q.weight": (f(1, 64, 1, 4), Q.F32), "enc.blk.0.attn_rel_b.weight": (f(8, 32), Q.F32),
        "dec.blk.0.attn_q.weight": (f(64, 64), Q.F32),
        "cls.output.weight": (f(1, 64), Q.F32)})  # a reranker's score head: one output, a layer
    r = htsr.analyze(path, min_evals=2, keep_spectra=True)
    rows = {x.name: (x, s) for x, s in zip(r.layers, r.spectra)}
    assert {n: x.kind for n, (x, _) in rows.items()} == {
        "blk.0.attn_k_b": "dense", "blk.0.attn_v_b": "dense",
        **{f"blk.0.time_mix_w2[{e}]": "stack" for e in range(5)},
        "enc.blk.0.attn_rel_b": "embedding", "dec.blk.0.attn_q": "dense", "cls.output": "dense"}
    for name, part in (("blk.0.attn_k_b", per_head[:, :nope]), ("blk.0.attn_v_b", per_head[:, nope:])):
        row, sp = rows[name]
        assert (row.N, row.M) == (heads * part.shape[1], rank)
        ref = np.linalg.svd(part.reshape(-1, rank).astype(np.float64), compute_uv=False) ** 2
        np.testing.assert_allclose(np.sort(sp.evals), np.sort(ref), rtol=1e-4)  # float32 Gram: ~1e-6
    for e in range(5):
        ref = np.linalg.svd(w2[e].astype(np.float64), compute_uv=False) ** 2
        np.testing.assert_allclose(np.sort(rows[f"blk.0.time_mix_w2[{e}]"][1].evals), np.sort(ref), rtol=1e-4)
    reasons = {n.reason: set(n.examples) for n in r.not_analysed}
    assert reasons["vector (one axis longer than 1: a layer scale, a class token)"] == {"blk.0.time_mix_lerp_x.weight"}
    assert "blk.0.time_mix_first.weight" in reasons["RWKV's vectors per head (bonus u, r_k), not a weight matrix"]
    assert {"blk.0.shortconv.conv.weight", "blk.1.ssm_conv1d_q.weight"} <= reasons[
        "a depthwise convolution's taps (one short filter per channel), not a weight matrix"]
    assert r.num_tensors == 10


def _bigger_file(tmp_path) -> Path:
    rng = _rng(25)
    return write_gguf(tmp_path / "three.gguf", {
        "blk.0.attn_q.weight": (rng.standard_normal((96, 128)).astype(np.float32), Q.Q8_0),
        "blk.0.attn_k.weight": (rng.standard_normal((96, 128)).astype(np.float32), Q.Q8_0),
        "blk.0.ffn_up.weight": (rng.standard_normal((96, 128)).astype(np.float32), Q.Q8_0)})


@pytest.mark.parametrize("lie", ["tensor count 3 -> 2", "Q8_0 -> Q4_0", "rows 96 -> 48"])
def test_header_lies_that_shrink_the_data_are_refused(tmp_path, lie):
    """A header whose counts, types or sizes claim less data than the file holds was read, from shifted or
    partial bytes, and analysed 'ok'. The tensors' data must follow one another as llama.cpp reads them, and
    no more than the alignment's padding may follow the last."""
    path = _bigger_file(tmp_path)
    raw = bytearray(path.read_bytes())
    pos = _tensor_info_positions(path)["blk.0.attn_k.weight"]
    if lie == "tensor count 3 -> 2":
        struct.pack_into("<Q", raw, 8, 2)
    elif lie == "Q8_0 -> Q4_0":
        struct.pack_into("<I", raw, pos["type"], int(Q.Q4_0))
    else:
        struct.pack_into("<Q", raw, pos["n_dims"] + 4 + 8, 48)  # ne[1], the rows
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(path)
    _one_line_source_error(ei, str(path), "wrong")


def test_a_tied_lm_head_stored_twice_is_analysed_once(tmp_path):
    """llama.cpp's GPT-2 and MPT converters write output.weight as a copy of token_embd.weight: one matrix,
    analysed once (it was two rows of one alpha, counted twice in the summary); an untied head stays a row."""
    rng = _rng(26)
    emb = (rng.standard_normal((300, 64)) * 0.02).astype(np.float32)
    tied = write_gguf(tmp_path / "tied.gguf", {"token_embd.weight": (emb, Q.Q8_0), "output.weight": (emb, Q.Q8_0)})
    r = htsr.analyze(tied)
    assert [x.name for x in r.layers] == ["token_embd"]
    assert [(n.reason, n.examples) for n in r.not_analysed] == [
        ("the same tensor as token_embd.weight (tied weights): analysed once", ("output.weight",))]
    other = emb.copy()
    other[0, 0] += 0.5
    untied = write_gguf(tmp_path / "untied.gguf", {"token_embd.weight": (emb, Q.Q8_0),
                                                   "output.weight": (other, Q.Q8_0)})
    assert [x.name for x in htsr.analyze(untied).layers] == ["token_embd", "output"]


def test_a_tokenizer_vocabulary_is_skipped_over_not_parsed(tmp_path, monkeypatch):
    """GGUFReader parses every metadata array item as a numpy slice of the file: a Qwen-size vocabulary (152k
    tokens, 151k merges) took 10 s and 600 MB to open, for values htsr never reads. Arrays of strings and
    numbers are now skipped over by their lengths: opening reads a few strings, not one per token; the
    tensors after the vocabulary are still found and read exactly."""
    n = 20_000
    path = tmp_path / "vocab.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_token_list([f"tok{i}" for i in range(n)])
    w.add_token_types([1] * n)
    W = _rng(27).standard_normal((64, 96)).astype(np.float32)
    w.add_tensor("blk.0.attn_q.weight", W)
    finish_gguf(w)
    calls = []
    real = gguf.GGUFReader._get_str
    monkeypatch.setattr(gguf.GGUFReader, "_get_str", lambda self, o: calls.append(o) or real(self, o))
    (ref,) = GGUFFile(path)
    assert len(calls) < 50, len(calls)  # keys and tensor names, not 20 000 tokens
    np.testing.assert_array_equal(ref.load(), W)


def test_a_float_fine_tune_of_a_quantized_base_has_no_base_rounding_in_its_floor(tmp_path):
    """A float model trained from a quantized base's dequantized weights (gpt-oss's MXFP4, a QLoRA merge):
    W − deq(base) is the update exactly; the base's 4-8-bit rounding is not in it, so the floor is the
    model's own float rounding (a 5 % full-rank update was 'not_fitted: 0 of 512 above the floor')."""
    rng = _rng(28)
    W0 = (rng.standard_normal((512, 512)) * 0.02).astype(np.float32)
    base = write_gguf(tmp_path / "base.gguf", {"blk.0.ffn_up.weight": (W0, Q.Q4_K)})  # 4.5 bits: noise ~6 %
    deq = _refs(base)["blk.0.ffn_up.weight"].load()
    update = (rng.standard_normal((512, 512)) * 0.001).astype(np.float32)  # 5 % of the weights' rms
    model = write_gguf(tmp_path / "tuned.gguf", {"blk.0.ffn_up.weight": (deq + update, Q.F32)})
    (row,) = htsr.analyze(model, base=base).layers
    assert row.status == "ok", row.status


def test_a_llama_cpp_lora_adapter_with_base_says_what_to_do(tmp_path):
    """--base with a llama.cpp adapter failed with 'no tensor name in common … nothing to subtract'; it says
    that an adapter's rows are its updates, and how to get W − W_base (merge it first)."""
    rng = _rng(29)
    adapter = _write_adapter(tmp_path / "a.gguf", {"blk.0.attn_q.weight.lora_a": rng.standard_normal((8, 96)),
                                                   "blk.0.attn_q.weight.lora_b": rng.standard_normal((128, 8))}, 16.0)
    base = write_gguf(tmp_path / "base.gguf", {"blk.0.attn_q.weight": (rng.standard_normal((128, 96)).astype(
        np.float32), Q.F32)})
    with pytest.raises(SourceError) as ei:
        htsr.analyze(adapter, base=base)
    _one_line_source_error(ei, str(adapter), "llama.cpp LoRA adapter", "llama-export-lora")


def test_an_importance_matrix_is_refused_in_one_line(tmp_path):
    """llama-imatrix writes a GGUF (general.type 'imatrix') of per-weight sums of squared activations and
    counts: statistics, not weights; analysed, its <weight>.in_sum2 matrices were dense rows with an alpha."""
    path = tmp_path / "imatrix.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("imatrix")
    w.add_tensor("blk.0.ffn_up_exps.weight.in_sum2", np.abs(np.random.default_rng(0).standard_normal((4, 64))
                                                           ).astype(np.float32))
    w.add_tensor("blk.0.ffn_up_exps.weight.counts", np.full((4, 1), 100.0, np.float32))
    finish_gguf(w)
    with pytest.raises(SourceError) as ei:
        htsr.analyze(path)
    _one_line_source_error(ei, f"{path}: an importance matrix (llama-imatrix's sums of squared activations), not a "
                               "model's weights")


# ----------------------------------------------------------- known answers the readers' boundaries must give


def test_a_llama_cpp_lora_adapter_without_an_alpha_key_is_scaled_by_1(tmp_path):
    """An adapter written without adapter.lora.alpha: llama.cpp reads the missing key as 0 and scales by
    ``alpha ? alpha / rank : 1`` (llama-adapter.cpp), so ΔW = B·A unscaled; read as alpha 1 it was B·A / r
    (eigenvalues r² = 64 times too small for rank 8)."""
    rng = _rng(30)
    a, b = rng.standard_normal((8, 96)), rng.standard_normal((128, 8))
    path = _write_adapter(tmp_path / "noalpha.gguf", {"blk.0.attn_q.weight.lora_a": a,
                                                      "blk.0.attn_q.weight.lora_b": b}, None)
    assert "adapter.lora.alpha" not in gguf.GGUFReader(str(path)).fields
    assert GGUFFile(path).lora_alpha() == 0.0  # (as llama.cpp reads the missing key)
    r = htsr.analyze(path, min_evals=2, keep_spectra=True)
    (row,), (sp,) = r.layers, r.spectra
    assert (row.name, row.kind, row.status) == ("blk.0.attn_q#delta", "lora", "ok")
    # the factors are float32 (as written): the product's eigenvalues agree to ~1e-6 relative; 1e-5 allowed
    ref = np.sort(np.linalg.svd(b.astype(np.float32).astype(np.float64) @ a.astype(np.float32).astype(np.float64),
                                compute_uv=False) ** 2)
    np.testing.assert_allclose(sp.evals[-8:], ref[-8:], rtol=1e-5)


@pytest.mark.parametrize("ea, eb", [(3, 2), (2, 3)])
def test_llama_cpp_lora_expert_stacks_of_different_expert_counts_are_no_update(tmp_path, ea, eb):
    """lora_a [E_a, r, in] and lora_b [E_b, out, r] with E_a ≠ E_b pair no expert with its own factors: one
    skipped row, not min(E_a, E_b) rows of mismatched experts (nor a row failing on an expert B lacks)."""
    rng = _rng(31)
    tensors = {"blk.0.ffn_up_exps.weight.lora_a": rng.standard_normal((ea, 8, 64)),
               "blk.0.ffn_up_exps.weight.lora_b": rng.standard_normal((eb, 80, 8))}
    r = htsr.analyze(_write_adapter(tmp_path / f"e{ea}{eb}.gguf", tensors, 16.0), min_evals=2)
    assert [(x.name, x.status) for x in r.layers] == [(
        "blk.0.ffn_up_exps#delta",
        f"skipped: LoRA factors of shapes [{eb}, 80, 8] (blk.0.ffn_up_exps.weight.lora_b) and [{ea}, 8, 64] "
        "(blk.0.ffn_up_exps.weight.lora_a) do not make a rank-r update")]


def test_a_split_model_with_a_shard_copied_over_another_is_refused_naming_it(tmp_path):
    """gguf's GGUFWriter(split_max_tensors=2) writes 3 shards, each with split.no 0, 1, 2; shard 2's file
    overwritten by shard 3 (its header says split.no 2) is refused naming the file and what its header says;
    it was read, its tensors twice and shard 2's not at all."""
    rng = _rng(32)
    folder = tmp_path / "split"
    folder.mkdir()
    w = gguf.GGUFWriter(str(folder / "model.gguf"), "llama", split_max_tensors=2)
    for i in range(3):
        for role in ("attn_q", "attn_k"):
            w.add_tensor(f"blk.{i}.{role}.weight", (rng.standard_normal((64, 64)) * 0.02).astype(np.float32))
    finish_gguf(w)
    shards = sorted(folder.glob("*.gguf"))
    assert [gguf.GGUFReader(str(p)).fields["split.no"].contents() for p in shards] == [0, 1, 2]
    shards[1].write_bytes(shards[2].read_bytes())
    with pytest.raises(SourceError) as ei:
        open_source(shards[0])
    _one_line_source_error(ei, f"{shards[1]}: its header says shard 2 of 3, not 1 of 3")


# ggml-common.h's K-quant blocks of QK_K = 256 weights: (bits of a code, weights per scale, bytes that are not
# codes: the fp16 super-scales and the packed sub-block scales), and the bytes that hold the codes
_K_QUANTS = {
    "Q2_K": (2, 16, 2 + 2 + 16, (16, 80)),    # scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin
    "Q3_K": (3, 16, 2 + 12, (0, 96)),         # hmask[32], qs[64], scales[12] (16 6-bit scales), d
    "Q4_K": (4, 32, 2 + 2 + 12, (16, 144)),   # d, dmin, scales[12] (8 6-bit scales + 8 mins), qs[128]
    "Q5_K": (5, 32, 2 + 2 + 12, (16, 176)),   # d, dmin, scales[12], qh[32], qs[128]
    "Q6_K": (6, 16, 2 + 16, (0, 192)),        # ql[128], qh[64], scales[16] (int8), d
}
_K_HALVES = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


@pytest.mark.parametrize("type_name", list(_K_QUANTS))
def test_k_quants_bits_and_weights_per_scale_are_ggmls_block_layout(tmp_path, type_name):
    """TensorRef.bits and quant_block (a delta's floor is measured from them) are ggml's: Q2_K, Q3_K and Q6_K
    have one scale per 16 weights, Q4_K and Q5_K per 32. The table is checked against gguf's block sizes
    (bits · 256 / 8 code bytes + the scales' bytes) and its dequantizer: with every code the same and random
    scales, the weights are constant over runs of quant_block and not over runs twice as long."""
    bits, per_scale, overhead, (c0, c1) = _K_QUANTS[type_name]
    qt = Q[type_name]
    assert gguf.GGML_QUANT_SIZES[qt] == (256, bits * 256 // 8 + overhead)
    blocks = _rng(33).integers(0, 256, (8, 2, gguf.GGML_QUANT_SIZES[qt][1]), dtype=np.uint8)  # 8 rows of 512
    blocks[..., c0:c1] = 0xFF  # every code its largest (nonzero in each type)
    for off in _K_HALVES[type_name]:  # finite super-scales (random bytes could be inf or NaN)
        blocks[..., off:off + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    path = tmp_path / "k.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.ffn_up.weight", blocks.reshape(8, -1), raw_dtype=qt)
    finish_gguf(w)
    (ref,) = GGUFFile(path)
    assert (ref.ggml_type, ref.shape, ref.bits, ref.quant_block) == (type_name, (8, 512), bits, per_scale)
    x = gguf.quants.dequantize(blocks.reshape(8, -1), qt).reshape(-1)
    np.testing.assert_array_equal(ref.load().reshape(-1), x)
    groups = x.reshape(-1, ref.quant_block)
    assert (groups == groups[:, :1]).all()  # one scale (and min) per run of quant_block weights ...
    pairs = x.reshape(-1, 2 * ref.quant_block)
    assert not (pairs == pairs[:, :1]).all()  # ... and not one per run twice as long


@pytest.mark.parametrize("alignment", [None, 1, 64])
def test_exactly_an_alignments_worth_of_bytes_after_the_data_is_refused(tmp_path, alignment):
    """The last tensor's data is followed by at most alignment − 1 bytes of padding: alignment − 1 stray bytes
    are padding (read), alignment of them are a header that claims less data than the file holds (refused,
    saying how many). gguf's default alignment is 32."""
    align = alignment or 32
    W = _rng(34).standard_normal((64, 64)).astype(np.float32)
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.attn_q.weight": (W, Q.F32)}, alignment=alignment)
    assert gguf.GGUFReader(str(path)).alignment == align
    raw = path.read_bytes()
    padded = tmp_path / "padded.gguf"
    padded.write_bytes(raw + bytes(align - 1))
    (ref,) = GGUFFile(padded)
    np.testing.assert_array_equal(ref.load(), W)
    stray = tmp_path / "stray.gguf"
    stray.write_bytes(raw + bytes(align))
    with pytest.raises(SourceError) as ei:
        GGUFFile(stray)
    _one_line_source_error(ei, str(stray), f"{align} bytes follow the last tensor's data")


_MIN_SIZE_GGUF = 24  # magic, version, tensor count, metadata count: a shorter file is refused before parsing


def test_every_cut_inside_the_header_is_said_to_be_truncated(tmp_path):
    """A file cut anywhere in its header (the metadata, the tensor infos) is refused as truncated, or as
    holding more entries than can fit, never with numpy's words for a short slice (an IndexError, a dtype
    view's ValueError) that reading a few bytes past the end gave."""
    path = tmp_path / "src.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("test.answer", 42)
    w.add_string("general.name", "x" * 5)
    w.add_tensor("blk.0.attn_q.weight", np.ones((4, 32), np.float32))
    finish_gguf(w)
    raw = path.read_bytes()
    said = {}
    for cut in range(_MIN_SIZE_GGUF, _data_offset(path)):
        cut_path = tmp_path / f"cut{cut}.gguf"  # a fresh file: never rewrite a mapped file
        cut_path.write_bytes(raw[:cut])
        with pytest.raises(SourceError) as ei:
            GGUFFile(cut_path)
        msg = _one_line_source_error(ei, str(cut_path))
        assert "GGUF header is truncated or corrupt:" in msg, (cut, msg)  # (every cut: the counts too, h59)
        said[cut] = "truncated" in msg
    assert all(said.values()), said


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_integer_tensors_keep_their_stored_dtype(tmp_path, dtype):
    """GGUF's I8 … I64 tensors report the numpy dtype they are stored in (an int8 tensor said uint8), and
    load their values exactly."""
    a = np.arange(-64, 64, dtype=dtype).reshape(8, 16)
    path = tmp_path / "ints.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.attn_q.weight", a)
    finish_gguf(w)
    (ref,) = GGUFFile(path)
    assert (ref.dtype, ref.ggml_type, ref.shape) == (dtype, "I" + dtype[3:], (8, 16))
    np.testing.assert_array_equal(ref.load(), a)  # (small integers: exact in float32)


# --- known answers from mutation round 12 ----------------------------------------------------------

def test_big_endian_f32_loads_as_native_float32(tmp_path):
    """The module docstring says every loader returns a float32 array; a big-endian file's F32 tensor came
    back '>f4' (torch.from_numpy refuses it; np.dtype('>f4') != np.float32)."""
    a = normal32(64, 256, seed=13)
    path = write_gguf(tmp_path / "be.gguf", {"blk.0.attn_q.weight": (a, Q.F32)})
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_convert_endian", str(path), "big"], input=b"YES\n",
                   check=True, capture_output=True)
    (ref,) = GGUFFile(path)
    x = ref.load()
    assert x.dtype == np.dtype(np.float32) and x.dtype.isnative
    np.testing.assert_array_equal(x, a)


def test_a_rank_1_lora_of_a_one_expert_stack_is_an_update(tmp_path):
    """Factors [1, 1, in] and [1, out, 1] (one expert, rank 1) have one axis longer than 1, as a vector has,
    but are LoRA factors: one row ΔW = s·B·A, not two vectors listed."""
    a, b = normal32(1, 1, 64, seed=14), normal32(1, 80, 1, seed=15)
    path = _write_adapter(tmp_path / "a.gguf", {"blk.0.ffn_up_exps.weight.lora_a": a,
                                                "blk.0.ffn_up_exps.weight.lora_b": b}, 1.0)
    rows = {r.name: r for r in GGUFFile(path)}
    assert list(rows) == ["blk.0.ffn_up_exps#delta[0]"]
    lr = rows["blk.0.ffn_up_exps#delta[0]"].load()
    np.testing.assert_allclose(lr.scale * (lr.B @ lr.A), b[0] @ a[0], rtol=1e-6)


def test_a_non_finite_lora_alpha_scales_by_1(tmp_path):
    """adapter.lora.alpha inf (or NaN) is no alpha: read as 0 (scale 1, as llama.cpp), not inf / r."""
    rng = np.random.default_rng(16)
    a, b = rng.standard_normal((4, 32)), rng.standard_normal((48, 4))
    path = _write_adapter(tmp_path / "inf.gguf", {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b},
                          float("inf"))
    assert GGUFFile(path).lora_alpha() == 0.0
    (row,) = htsr.analyze(path, min_evals=2).layers
    assert row.status == "ok"


def test_a_tied_head_of_another_type_with_the_same_bytes_is_not_tied(tmp_path):
    """token_embd F16 and output BF16 with identical bytes are different matrices: no shared storage key."""
    import gguf.quants as gq

    x = normal32(32, 64, seed=17)
    raw = x.astype(np.float16).view(np.uint8)
    path = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", raw.view(np.float16))
    w.add_tensor("output.weight", raw.reshape(32, 128), raw_dtype=gq.GGMLQuantizationType.BF16)
    finish_gguf(w)
    refs = {r.name: r for r in GGUFFile(path)}
    assert refs["output.weight"].shape == refs["token_embd.weight"].shape == (32, 64)
    assert refs["token_embd.weight"].storage_key is None and refs["output.weight"].storage_key is None


# ---- round 31's gaps --------------------------------------------------------------------------------------


def test_a_file_cut_one_byte_short_of_its_last_tensor_names_that_tensor(tmp_path):
    """A cut of a single byte inside the last tensor's data is refused naming the tensor (not as a
    corrupt header field)."""
    a, b = normal32(64, 64, seed=1), normal32(40, 64, seed=2)
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.attn_q.weight": (a, Q.F32), "blk.0.attn_k.weight": (b, Q.F32)})
    data = path.read_bytes()
    r = gguf.GGUFReader(str(path))
    last = max(r.tensors, key=lambda t: int(t.data_offset))
    assert int(last.data_offset) + int(last.n_bytes) == len(data)  # (no padding after the last tensor)
    path.write_bytes(data[:-1])
    refs = {r.name: r for r in GGUFFile(path)}  # (the other tensor is read: test_truncated_in_data_section…)
    with pytest.raises(SourceError) as excinfo:
        refs[last.name].load()
    _one_line_source_error(excinfo, str(path), "cut off 1 byte short", f"({last.n_bytes - 1} of {last.n_bytes} there)")


@pytest.mark.parametrize("type_name", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_legacy_quants_bits_and_weights_per_scale_are_ggmls_block_layout(tmp_path, type_name):
    """Known answer from gguf's own GGML_QUANT_SIZES: a legacy block of 32 weights holds 32 codes of `bits`
    bits, a float16 scale, and (the _1 types) a float16 min."""
    qtype = Q[type_name]
    block, type_size = gguf.constants.GGML_QUANT_SIZES[qtype]
    path = write_gguf(tmp_path / "q.gguf", {"blk.0.attn_q.weight": (normal32(16, 64), qtype)})
    (ref,) = _refs(path).values()
    assert ref.quant_block == block
    assert ref.bits * block // 8 + (4 if type_name.endswith("_1") else 2) == type_size
    assert ref.bits == int(type_name[1])


@pytest.mark.parametrize("type_name, bits", [("IQ2_XXS", 2.0), ("IQ3_S", 3.0), ("TQ1_0", math.log2(3)),
                                             ("TQ2_0", math.log2(3)), ("IQ4_NL", 4.0)])
def test_non_uniform_quants_take_the_bits_their_type_name_says(tmp_path, type_name, bits):
    """IQ types have no uniform code width: TensorRef.bits is the digit in the type's name (IQ2_XXS: 2), not one
    width for all of them (4 had been said for every such type unseen: only 4-bit ones were checked). TQ1_0 and
    TQ2_0 hold ternary codes (3 levels: log2 3 bits), however packed (TQ1_0 had been given 1 bit: 2 levels).
    Their blocks are written as raw bytes (no loading is needed for the bits); quant_block stays None (no uniform
    scale block)."""
    qtype = Q[type_name]
    block, type_size = gguf.constants.GGML_QUANT_SIZES[qtype]
    raw = np.zeros((8, 512 // block * type_size), dtype=np.uint8)  # 8 rows of 512 weights
    path = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=qtype)
    finish_gguf(w)
    (ref,) = _refs(path).values()
    assert (ref.ggml_type, ref.shape, ref.bits, ref.quant_block) == (type_name, (8, 512), bits, None)


def test_a_big_endian_files_string_array_is_skipped_over_by_its_big_endian_lengths(tmp_path):
    """A tokenizer's string array is skipped over without parsing, by each string's 8-byte length: in a
    big-endian file those lengths are big-endian. Read little-endian they are huge and the header was
    called truncated; only numeric arrays had been in the big-endian files tested."""
    a = normal32(16, 64, seed=21)
    path = tmp_path / "be.gguf"
    w = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "bb", "ccc"])
    w.add_tensor("blk.0.attn_q.weight", a)
    finish_gguf(w)
    (ref,) = GGUFFile(path)
    assert ref.shape == (16, 64)
    np.testing.assert_array_equal(ref.load(), a)  # F32: exact


def test_a_string_array_claiming_more_strings_than_the_file_can_hold_is_refused_by_its_count(tmp_path):
    """Each string of a metadata array takes at least its 8-byte length: a count of strings whose lengths alone
    run past the end of the file is refused from the count, saying how many values it claims (as for a numeric
    array), before any string is walked. Only numeric arrays' counts had been checked so, with their item size."""
    path = tmp_path / "v.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "bb"])
    w.add_tensor("blk.0.attn_q.weight", normal32(4, 32, seed=3))
    finish_gguf(w)
    key = "tokenizer.ggml.tokens"
    field = gguf.GGUFReader(str(path)).fields[key]
    count_pos = field.offset + 8 + len(key) + 4 + 4  # key length, key, value type (array), item type (string)
    raw = bytearray(path.read_bytes())
    assert struct.unpack_from("<Q", raw, count_pos)[0] == 3
    rest = len(raw) - (count_pos - 4) - 12  # the bytes after the array's item type and count
    claim = rest // 2  # fits one byte per string, not eight
    struct.pack_into("<Q", raw, count_pos, claim)
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        GGUFFile(path)
    _one_line_source_error(ei, str(path), f"claims {claim} values, more than the {len(raw)}-byte file can hold")


@pytest.mark.parametrize("role, why", [
    ("ssm_a", "a state-space layer's A"), ("ssm_d", "a state-space layer's D"),
    *[(r, "a depthwise convolution's taps") for r in ("ssm_conv1d", "ssm_conv1d_q", "ssm_conv1d_k", "ssm_conv1d_v",
                                                       "shortconv.conv")],
    *[(r, "RWKV's vectors per head") for r in ("time_mix_first", "time_mix_r_k")],
])
def test_each_parameter_role_that_is_no_matrix_is_listed_with_its_reason(tmp_path, role, why):
    """Every role the module docstring lists as 'listed, not analysed' (Mamba's A, D and conv taps, the q/k/v
    and short conv taps, RWKV's per-head vectors), stored 2-D with both axes longer than 1 (so no vector), is
    listed with its reason and not yielded; only some of them had been in the files tested."""
    path = write_gguf(tmp_path / "m.gguf", {f"blk.0.{role}.weight": (normal32(16, 8, seed=4), Q.F32),
                                            "blk.0.attn_q.weight": (normal32(16, 32, seed=5), Q.F32)})
    f = GGUFFile(path)
    assert [r.name for r in f] == ["blk.0.attn_q.weight"] and len(f) == 1
    ((name, reason),) = f.not_weights
    assert name == f"blk.0.{role}.weight" and reason.startswith(why), reason
    # stored 1-D (Mamba-2's A and D are per head) it is yielded as any 1-D tensor is (analyze passes over 1-D
    # tensors itself): the list is of tensors of two or more axes
    path = write_gguf(tmp_path / "v.gguf", {f"blk.0.{role}.weight": (normal32(16, seed=4), Q.F32)})
    f = GGUFFile(path)
    assert f.not_weights == [] and [(r.name, r.shape) for r in f] == [(f"blk.0.{role}.weight", (16,))]


def test_a_one_expert_stack_of_one_output_is_a_stack_not_a_vector(tmp_path):
    """A table role keeps its kind whatever its shape: a fused expert stack [1, 1, in] (one expert of one
    output) has one axis longer than 1, as a vector kept in a broadcast shape has, but is a stack: one row."""
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.ffn_gate_exps.weight": (normal32(1, 1, 64, seed=8), Q.F32)})
    f = GGUFFile(path)
    assert f.not_weights == []
    (ref,) = f
    assert (ref.name, ref.shape, ref.kind) == ("blk.0.ffn_gate_exps.weight", (1, 1, 64), "stack")


@pytest.mark.parametrize("type_name, said", [
    ("Q8_1", "skipped: Q8_1 is a GGML type of intermediate results, not of stored weights; no dequantizer exists "
             "for it"),
    # (gguf 0.19 has no Q1_0 dequantizer; a newer gguf may have one, then this case is moot)
    ("Q1_0", f"skipped: gguf {importlib.metadata.version('gguf')} cannot dequantize Q1_0 (pip install -U gguf, "
             "if a newer one can)"),
])
def test_a_type_gguf_cannot_dequantize_gets_a_row_saying_why_and_what_to_do(tmp_path, type_name, said):
    """Q8_1 (like Q8_K) is a type of matmul operands, never of stored weights: its row says so; a stored type
    the installed gguf cannot dequantize says to upgrade gguf. The other tensor is read. Only Q8_K's row had
    been checked."""
    qt = Q[type_name]
    if qt == Q.Q1_0 and _can_dequantize(qt):
        pytest.skip("this gguf dequantizes Q1_0")
    block, size = gguf.GGML_QUANT_SIZES[qt]
    path = tmp_path / "q.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.attn_q.weight", normal32(16, 64, seed=6))
    w.add_tensor("blk.0.attn_k.weight", np.zeros((16, 256 // block * size), np.uint8), raw_dtype=qt)
    finish_gguf(w)
    rows = {x.name: x.status for x in htsr.analyze(path, min_evals=2).layers}
    assert rows == {"blk.0.attn_q": rows["blk.0.attn_q"], "blk.0.attn_k": said}
    assert not rows["blk.0.attn_q"].startswith("skipped")


def _can_dequantize(qt) -> bool:
    block, size = gguf.GGML_QUANT_SIZES[qt]
    try:
        gguf.quants.dequantize(np.zeros((1, size), np.uint8), qt)
    except NotImplementedError:
        return False
    return True


def test_mxfp4_in_a_big_endian_file_reads_as_in_a_little_endian_one(tmp_path):
    """MXFP4's blocks hold a one-byte E8M0 scale and 4-bit codes, no float16 field: a big-endian file's
    blocks are the little-endian file's bytes, and load alike (it had been left to a 'skipped' row, as the
    types whose fields are unknown). Known answer: gguf's own dequantizer of the bytes written."""
    block, size = gguf.GGML_QUANT_SIZES[Q.MXFP4]
    raw = _rng(40).integers(0, 256, (8, 64 // block, size), dtype=np.uint8)
    raw[..., 0] = 127  # the E8M0 scale 2^0 in every block: finite values
    raw = raw.reshape(8, -1)
    want = gguf.quants.dequantize(raw, Q.MXFP4)
    for endian in (gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG):
        path = tmp_path / f"{endian.name}.gguf"
        w = gguf.GGUFWriter(str(path), "llama", endianess=endian)
        w.add_tensor("blk.0.ffn_up.weight", raw, raw_dtype=Q.MXFP4)
        finish_gguf(w)
        f = GGUFFile(path)
        assert f._reader.byte_order == ("S" if endian == gguf.GGUFEndian.BIG else "I")
        (ref,) = f
        assert ref.shape == (8, 64)
        np.testing.assert_array_equal(ref.load(), want)  # exact: the same bytes, the same dequantizer


def test_a_head_of_another_shape_over_the_same_bytes_is_not_tied(tmp_path):
    """token_embd [64, 32] and output [32, 64] (the same type and bytes, transposed shapes) are different
    matrices: neither gets a shared storage key, and both are analysed."""
    x = normal32(64, 32, seed=41)
    path = write_gguf(tmp_path / "t.gguf", {"token_embd.weight": (x, Q.F32), "output.weight": (x.reshape(32, 64), Q.F32)})
    refs = {r.name: r for r in GGUFFile(path)}
    assert (refs["token_embd.weight"].shape, refs["output.weight"].shape) == ((64, 32), (32, 64))
    assert refs["token_embd.weight"].storage_key is None and refs["output.weight"].storage_key is None
    assert [r.name for r in htsr.analyze(path, min_evals=2).layers] == ["token_embd", "output"]


def test_an_adapter_of_another_type_than_lora_is_no_lora_adapter(tmp_path):
    """general.type 'adapter' with adapter.type other than 'lora' (llama.cpp reads only LoRA adapters) is not
    read as one: no alpha, and its tensors are yielded as they are, not paired into updates."""
    a, b = normal32(8, 96, seed=42), normal32(128, 8, seed=43)
    path = tmp_path / "x.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "control_vector")
    w.add_float32("adapter.lora.alpha", 16.0)
    w.add_tensor("blk.0.attn_q.weight.lora_a", a)
    w.add_tensor("blk.0.attn_q.weight.lora_b", b)
    finish_gguf(w)
    f = GGUFFile(path)
    assert f.lora_alpha() is None and not f.is_lora_adapter
    assert [r.name for r in f] == ["blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"]


def test_a_lone_lora_b_says_it_has_no_lora_a(tmp_path):
    """A lora_b without its lora_a gets a skipped row naming the factor that is missing (lora_a), as a lone
    lora_a's names lora_b; only the lone lora_a had been checked."""
    path = _write_adapter(tmp_path / "b.gguf", {"blk.0.attn_q.weight.lora_b": normal32(64, 8, seed=44)}, 16.0)
    (row,) = htsr.analyze(path, min_evals=2).layers
    assert (row.name, row.status) == ("blk.0.attn_q#delta",
                                      "skipped: blk.0.attn_q.weight.lora_b has no lora_a beside it")


def test_split_count_1_is_one_file_and_a_shard_named_for_another_count_is_refused(tmp_path):
    """split.count 1 (gguf-split's output of one shard) is a whole model, whatever the file's name; a shard whose
    name says -of-00002 while its header says split.count 3 is refused as misnamed, with what to do (it was
    looked for as -of-00002 shards, then called missing)."""
    from htsr.io.gguf import open_gguf

    x = normal32(16, 32, seed=45)
    one = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(one), "llama")
    w.add_uint16("split.count", 1)
    w.add_tensor("blk.0.attn_q.weight", x)
    finish_gguf(w)
    f = open_gguf(one)
    assert isinstance(f, GGUFFile) and [r.name for r in f] == ["blk.0.attn_q.weight"]
    odd = tmp_path / "model-00001-of-00002.gguf"
    w = gguf.GGUFWriter(str(odd), "llama")
    w.add_uint16("split.no", 0)
    w.add_uint16("split.count", 3)
    w.add_tensor("blk.0.attn_q.weight", x)
    finish_gguf(w)
    with pytest.raises(SourceError) as ei:
        open_gguf(odd)
    _one_line_source_error(ei, str(odd), "shard of a model split in 3 files (split.count), but not named "
                           "<name>-0000k-of-0000n.gguf", "llama-gguf-split --merge")


def test_a_gguf_file_cut_short_after_it_was_opened_is_an_error_not_a_bus_error(tmp_path):
    """The GGUF reader's map of the header was read again when the tensors were listed: a file opened, then saved
    again (truncated to 0 first), ended the process with SIGBUS ('Bus error', exit 135). Run in a child process,
    which the old behaviour kills."""
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.ffn_down.weight": (np.ones((24, 96), np.float32), Q.F32)})
    script = ("import os, htsr\nfrom htsr.io import open_source\n"
              f"src = open_source({str(path)!r})\nos.truncate({str(path)!r}, 0)\n"
              "try:\n    htsr.analyze(src)\nexcept htsr.SourceError as e:\n    print(e)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-300:])
    assert run.stdout == (f"{path}: changed while being read: saved again or replaced since htsr read its header; "
                          "analyse it once its writer is done\n")


def test_a_gguf_file_gone_after_it_was_opened_is_said_in_one_line(tmp_path):
    """A GGUF file (or a split model's shard) deleted after it was opened: a FileNotFoundError traceback."""
    path = write_gguf(tmp_path / "m.gguf", {"blk.0.ffn_down.weight": (np.ones((24, 96), np.float32), Q.F32)})
    src = open_source(path)
    path.unlink()
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(src)
    assert str(ei.value) == f"{path}: changed while being read: it is gone (moved or deleted); analyse it once its " \
                            "writer is done"
