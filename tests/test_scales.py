"""FP8 / int8 weights with their scale tensors (htsr.io.scales), read from real safetensors layouts."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import matrix_with_singular_values

import htsr
from htsr.io import open_source

_ST = {"float32": "F32", "float8_e4m3fn": "F8_E4M3", "int8": "I8", "int32": "I32", "bfloat16": "BF16"}


def _save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A safetensors file written byte by byte (the safetensors package has no FP8 numpy path)."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": _ST[a.dtype.name], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header).encode()
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + b"".join(blobs))
    return path


def _fp8_blocks(W: np.ndarray, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """DeepSeek-V3's layout: per 128 x 128 block, scale = max|W|/448 and q = W/scale in e4m3."""
    r, c = -(-W.shape[0] // block), -(-W.shape[1] // block)
    s = np.zeros((r, c), np.float32)
    q = np.zeros(W.shape, np.float32)
    for i in range(r):
        for j in range(c):
            blk = W[i * block:(i + 1) * block, j * block:(j + 1) * block]
            s[i, j] = np.abs(blk).max() / 448.0
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = blk / s[i, j]
    return q.astype(ml_dtypes.float8_e4m3fn), s


def test_fp8_block_scales_are_applied_and_scale_tensors_are_not_layers(tmp_path):
    sv = np.linspace(1.0, 20.0, 200)
    W = matrix_with_singular_values(sv, 300, 200).astype(np.float32)  # 300 x 200: partial edge blocks
    q, s = _fp8_blocks(W)
    path = _save(tmp_path / "fp8.safetensors", {"mlp.up.weight": q, "mlp.up.weight_scale_inv": s})
    refs = {r.name: r for r in open_source(path)}
    assert list(refs) == ["mlp.up.weight"] and refs["mlp.up.weight"].dtype == "float8_e4m3fn"
    Wd = refs["mlp.up.weight"].load()
    # e4m3 has a 3-bit mantissa: relative rounding error <= 2^-4 per entry, so each singular value
    # moves by at most 2^-4 * ||W||_F (Weyl); without the scales they would be off by ~448/max|W|
    err = np.abs(np.linalg.svd(Wd, compute_uv=False) - sv[::-1]).max()
    assert err <= 2**-4 * np.linalg.norm(W)
    assert np.abs(Wd - W).max() <= 2**-4 * np.abs(W).max()
    row = htsr.analyze(path).layers[0]
    assert row.name == "mlp.up" and row.status == "ok"


def test_int8_per_channel_scale_in_another_shard(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((256, 128)).astype(np.float32)
    s = (np.abs(W).max(axis=1, keepdims=True) / 127.0).astype(np.float32)
    q = np.round(W / s).astype(np.int8)
    (tmp_path / "m").mkdir()
    _save(tmp_path / "m" / "model-00001-of-00002.safetensors", {"fc.weight": q})
    _save(tmp_path / "m" / "model-00002-of-00002.safetensors", {"fc.weight_scale": s})
    (tmp_path / "m" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "fc.weight": "model-00001-of-00002.safetensors", "fc.weight_scale": "model-00002-of-00002.safetensors"}}))
    refs = {r.name: r for r in open_source(tmp_path / "m")}
    assert list(refs) == ["fc.weight"] and refs["fc.weight"].dtype == "float32"  # an int8 weight, dequantized
    assert np.abs(refs["fc.weight"].load() - W).max() <= 0.5 * s.max() * 1.0001  # rounding: half a step
    assert htsr.analyze(tmp_path / "m").layers[0].status == "ok"


def test_a_scale_that_fits_no_layout_fails_only_that_layer(tmp_path):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((128, 64)).astype(ml_dtypes.float8_e4m3fn)
    path = _save(tmp_path / "bad.safetensors", {"a.weight": q, "a.weight_scale_inv": np.ones((2, 70), np.float32),
                                                "b.weight": rng.standard_normal((128, 64)).astype(np.float32)})
    rows = {r.name: r for r in htsr.analyze(path).layers}
    assert rows["a"].status.startswith("failed:") and "a.weight_scale_inv" in rows["a"].status
    assert "\n" not in rows["a"].status and rows["b"].status == "ok"


def test_unquantized_weights_keep_a_scale_like_tensor_as_is(tmp_path):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((96, 64)).astype(np.float32)
    path = _save(tmp_path / "f.safetensors", {"a.weight": W, "a.weight_scale": np.full((1,), 2.0, np.float32)})
    refs = {r.name: r for r in open_source(path)}
    assert np.array_equal(refs["a.weight"].load(), W)  # a float32 weight is never rescaled
    assert "a.weight_scale" in refs


@pytest.mark.parametrize("shape", [(), (1,), (96,), (96, 1)])
def test_scalar_and_per_row_scale_layouts(tmp_path, shape):
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (96, 64)).astype(np.int8)
    s = np.full(shape, 0.5, np.float32)
    ref = {r.name: r for r in open_source(_save(tmp_path / "s.safetensors", {"a.weight": q, "a.weight_scale": s}))}
    assert np.array_equal(ref["a.weight"].load(), q.astype(np.float32) * 0.5)


def _bnb_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bitsandbytes LLM.int8() (Linear8bitLt) storage: SCB = each row's absmax, CB = round(127 · W / SCB)."""
    scb = np.abs(W).max(axis=1).astype(np.float32)
    return np.round(127.0 * W / scb[:, None]).astype(np.int8), scb


def test_bitsandbytes_int8_weights_are_dequantized_in_every_state_dict_format(tmp_path):
    """W = CB · SCB / 127 (bitsandbytes' int8_vectorwise_dequant), whether the state dict is a safetensors
    file, a torch.save checkpoint (zip or legacy), an .npz or a mapping in memory; SCB is not a layer."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    W = rng.standard_normal((96, 64)).astype(np.float32)
    cb, scb = _bnb_int8(W)
    want = cb.astype(np.float32) * (scb[:, None] / np.float32(127.0))
    state = {"fc.weight": cb, "fc.SCB": scb, "fc.bias": np.zeros(96, np.float32)}
    tstate = {k: torch.from_numpy(v) for k, v in state.items()}
    (tmp_path / "old").mkdir()
    torch.save(tstate, str(tmp_path / "zip.pt"))
    torch.save(tstate, str(tmp_path / "old" / "legacy.pt"), _use_new_zipfile_serialization=False)
    np.savez(tmp_path / "m.npz", **state)
    sources = [_save(tmp_path / "m.safetensors", state), tmp_path / "zip.pt", tmp_path / "old" / "legacy.pt",
               tmp_path / "m.npz", state, tstate]
    for source in sources:
        refs = {r.name: r for r in open_source(source)}
        assert set(refs) == {"fc.weight", "fc.bias"}, source
        got = refs["fc.weight"].load()
        np.testing.assert_array_equal(got, want, err_msg=str(source))  # the same float32 operations
        # rounding to 1/254 of the row's absmax: the dequantized weight is that close to the original
        assert np.all(np.abs(got - W) <= scb[:, None] / 254 * 1.0001)
        (row,) = htsr.analyze(source, min_evals=5).layers
        assert row.name == "fc" and row.status == "ok"


def test_integer_weights_without_a_scale_get_a_skipped_row(tmp_path):
    """A packed GPTQ/AWQ qweight or an int8 weight whose scale is missing is not silently dropped: its row
    says why it was not analysed; integer buffers (position ids) still get no row; the rest is analysed."""
    rng = np.random.default_rng(5)
    path = _save(tmp_path / "q.safetensors", {
        "attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "mlp.up_proj.qweight": rng.integers(-2**31, 2**31, (8, 64)).astype(np.int32),  # 8 4-bit values a word
        "mlp.down_proj.weight": rng.integers(-127, 128, (64, 64)).astype(np.int8),
        "embeddings.position_ids": np.arange(64, dtype=np.int8).reshape(1, 64),
    })
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert set(rows) == {"attn.q_proj", "mlp.up_proj.qweight", "mlp.down_proj"}
    assert rows["attn.q_proj"].status == "ok"
    packed, unscaled = rows["mlp.up_proj.qweight"].status, rows["mlp.down_proj"].status
    assert packed.startswith("skipped: int32 words of packed low-bit values") and "GPTQ" in packed
    assert unscaled.startswith("skipped: int8 weight without a scale") and "dequantized copy" in unscaled
    assert np.isnan(rows["mlp.down_proj"].alpha)
