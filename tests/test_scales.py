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

_ST = {"float32": "F32", "float8_e4m3fn": "F8_E4M3", "int8": "I8", "bfloat16": "BF16"}


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
