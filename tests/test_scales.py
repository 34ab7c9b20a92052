"""FP8 / int8 weights with their scale tensors (htsr.io.scales), read from real safetensors layouts."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import matrix_with_singular_values, rounding_noise_rms

import htsr
from htsr.io import open_source
from htsr.io.safetensors import SafetensorsFile

_ST = {"float32": "F32", "float16": "F16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "int8": "I8",
       "uint8": "U8", "int32": "I32",
       "uint32": "U32", "int64": "I64",
       "bfloat16": "BF16"}


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


def test_activation_and_kv_cache_scales_are_named_as_such_not_as_orphaned_weight_scales(tmp_path):
    """llm-compressor's FP8 / W8A8 models (RedHatAI's *-FP8) store a static input_scale beside each Linear's
    weight and weight_scale, and k_scale / v_scale on attention: they had been listed as 'quantization
    scale without its weight (in another file?)', though nothing is missing."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((64, 64)).astype(np.float32)
    s = (np.abs(W).max(axis=1, keepdims=True) / 448.0).astype(np.float32)
    path = _save(tmp_path / "model.safetensors", {
        "attn.q_proj.weight": (W / s).astype(ml_dtypes.float8_e4m3fn), "attn.q_proj.weight_scale": s,
        "attn.q_proj.input_scale": np.array(0.01, np.float32), "attn.k_scale": np.array(0.02, np.float32),
        "attn.v_scale": np.array([0.03], np.float32)})
    r = htsr.analyze(path, min_evals=10)
    assert [x.name for x in r.layers] == ["attn.q_proj"] and r.num_tensors == 4  # (weight_scale counts with it)
    assert [(n.reason, n.count) for n in r.not_analysed] == [
        ("activation or KV-cache quantization scale (of a layer's inputs, not its weight)", 3)]


@pytest.mark.parametrize("stack", [False, True])
def test_a_block_grid_of_one_row_is_not_read_as_one_scale_per_row(tmp_path, stack):
    """A [56, 7168] FP8 weight has DeepSeek block scales [1, 56]: 56 blocks of 128 columns, as many as its
    rows. They were read as one scale per row (squeezed to (56,)): lambda_max 10x off, and an expert stack's
    alpha 1.11 where the dequantized weights give 6.56, status ok."""
    rng = np.random.default_rng(3)
    out, n_in = 56, 56 * 128
    q = np.clip(rng.standard_normal((out, n_in)) * 50, -448, 448).astype(ml_dtypes.float8_e4m3fn)
    s = np.logspace(-4, 0, 56, dtype=np.float32).reshape(1, 56)
    want = q.astype(np.float32) * np.repeat(s, 128, axis=1)  # DeepSeek's weight_dequant
    tensors = ({"mlp.experts.gate_up_proj": np.stack([q, q]), "mlp.experts.gate_up_proj_scale_inv": np.stack([s, s])}
               if stack else {"proj.weight": q, "proj.weight_scale_inv": s})
    (ref,) = open_source(_save(tmp_path / "fp8.safetensors", tensors))
    got = ref.load()
    np.testing.assert_array_equal(got, np.stack([want, want]) if stack else want)  # exact: the same products


def test_scale_layouts_are_told_apart_and_a_row_scale_stays_a_column():
    """[out, 1] per-row scales (compressed-tensors, FBGEMM) became a full float32 [out, in] copy when the
    block grid was tried first (235 MB for a 14336 x 4096 weight); [1, out] stays per row, as it was read;
    [1, in / 128] is DeepSeek's grid."""
    from htsr.io.scales import _expand

    s = np.arange(1, 57, dtype=np.float32)
    assert _expand(s.reshape(56, 1), (56, 7168), "w").shape == (56, 1)
    assert _expand(s, (56, 7168), "w").shape == (56, 1)
    grid = _expand(s.reshape(1, 56), (56, 7168), "w")
    assert grid.shape == (56, 7168) and (grid[:, 128] == 2).all()  # the second block of 128 columns
    assert _expand(s.reshape(1, 56), (56, 56), "w").shape == (56, 1)  # square: per row, as before
    assert _expand(np.ones((1, 7168), np.float32), (56, 7168), "w").shape == (56, 7168)  # one per input column


@pytest.mark.parametrize("fnuz", ["float8_e4m3fnuz", "float8_e5m2fnuz"])
def test_amd_fnuz_fp8_files_are_read(tmp_path, fnuz):
    """F8_E4M3FNUZ / F8_E5M2FNUZ (AMD's FP8 checkpoints, written by safetensors.torch): the whole file was
    refused as 'unknown dtype'. Read with their block scales, as e4m3fn: exactly the codes × the scales."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    W = matrix_with_singular_values(np.linspace(1.0, 20.0, 130), 260, 130).astype(np.float32)
    s = np.full((3, 2), np.abs(W).max() / 240.0, np.float32)  # (fnuz e4m3's largest value is 240)
    codes = torch.from_numpy(W / s[0, 0]).to(getattr(torch, fnuz))
    path = tmp_path / "fnuz.safetensors"
    save_file({"mlp.up.weight": codes, "mlp.up.weight_scale_inv": torch.from_numpy(s)}, str(path))
    (ref,) = open_source(path)
    assert (ref.name, ref.dtype) == ("mlp.up.weight", fnuz)
    np.testing.assert_array_equal(ref.load(), codes.float().numpy() * s[0, 0])
    assert htsr.analyze(path).layers[0].status == "ok"


def test_an_fp8_shard_whose_scales_are_in_another_gets_a_skipped_row_when_the_config_says_fp8(tmp_path):
    """A shard file analysed alone, its weight_scale_inv in another shard: with config.json declaring FP8
    quantization the e4m3 codes are not the weights (they were analysed raw, status ok, another alpha), and
    the row says to analyse the folder. The folder itself pairs them; without such a config an FP8 weight is
    analysed as stored (FP8 checkpoints without scales exist)."""
    W = matrix_with_singular_values(np.linspace(1.0, 20.0, 200), 300, 200).astype(np.float32)
    q, s = _fp8_blocks(W)
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model-00001-of-00002.safetensors", {"mlp.up.weight": q})
    _save(folder / "model-00002-of-00002.safetensors", {"mlp.up.weight_scale_inv": s})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "mlp.up.weight": "model-00001-of-00002.safetensors",
        "mlp.up.weight_scale_inv": "model-00002-of-00002.safetensors"}}))
    alone = folder / "model-00001-of-00002.safetensors"
    assert htsr.analyze(alone).layers[0].status == "ok"  # no config: as stored
    ct = {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "block"}}}}
    # Hugging Face's, its FBGEMM per-row FP8's, llm-compressor's
    for config in ({"quant_method": "fp8", "weight_block_size": [128, 128]}, {"quant_method": "fbgemm_fp8"}, ct):
        (folder / "config.json").write_text(json.dumps({"quantization_config": config}))
        assert htsr.analyze(alone).layers[0].status.startswith(
            "skipped: float8_e4m3fn weight without its scale (weight_scale_inv / weight_scale), which config.json's")
        assert htsr.analyze(folder).layers[0].status == "ok"


def test_an_fp8_expert_stack_whose_scale_is_in_another_shard_gets_a_skipped_row(tmp_path):
    """A fused expert parameter (transformers' FP8 experts: no '.weight' in its name, its ``_scale_inv`` in
    another shard) under a config declaring FP8: its e4m3 codes are no weights either (they had been analysed
    raw, each expert 'ok'); without the config they are analysed as stored."""
    q = np.random.default_rng(0).standard_normal((2, 256, 128)).astype(ml_dtypes.float8_e4m3fn)
    shard = _save(tmp_path / "model-00001-of-00002.safetensors", {"mlp.experts.gate_up_proj": q})
    assert [r.status for r in htsr.analyze(shard, min_evals=5).layers] == ["ok", "ok"]
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "fp8"}}))
    rows = htsr.analyze(shard, min_evals=5).layers
    assert rows and all(r.status.startswith("skipped: float8_e4m3fn weight without its scale (<name>_scale_inv / "
                                            "<name>_scale), which config.json's") for r in rows)


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


def test_an_expert_stack_scale_that_fits_no_layout_names_the_stacks_shape(tmp_path):
    """An FP8 expert stack [2, 64, 32] whose scale [2, 3, 5] fits neither each expert's layouts nor the stack's:
    the error names the stored scale and the stack's shapes, not one expert's slice (the per-expert attempt's
    error, naming a (3, 5) scale of a (64, 32) weight, had been unchecked)."""
    rng = np.random.default_rng(48)
    q = rng.standard_normal((2, 64, 32)).astype(ml_dtypes.float8_e4m3fn)
    path = _save(tmp_path / "bad.safetensors", {"experts.w": q, "experts.w_scale_inv": np.ones((2, 3, 5), np.float32)})
    (ref,) = open_source(path)
    with pytest.raises(htsr.errors.SourceError, match=r"scale shape \(2, 3, 5\) fits no scale layout of a \(2, 64, 32\)"):
        ref.load()


def test_block_scales_of_other_power_of_two_sizes_and_grids_that_fit_none(tmp_path):
    """FP8 blocks of 64 (100 rows: a full block and a short one; 200 columns: four blocks, the last short)
    are applied as such; a (3, 5) grid on a 64 x 128 weight cuts it into no power-of-two blocks: refused,
    not spread over made-up 22 x 26 blocks."""
    rng = np.random.default_rng(19)
    W = rng.standard_normal((100, 200)).astype(np.float32)
    q, s = _fp8_blocks(W, block=64)
    assert s.shape == (2, 4)
    ref = {r.name: r for r in open_source(_save(tmp_path / "b.safetensors", {"a.weight": q, "a.weight_scale_inv": s}))}
    want = q.astype(np.float32) * np.repeat(np.repeat(s, 64, axis=0), 64, axis=1)[:100, :200]
    np.testing.assert_array_equal(ref["a.weight"].load(), want)
    odd = _save(tmp_path / "odd.safetensors", {"b.weight": rng.integers(-127, 128, (64, 128)).astype(np.int8),
                                               "b.weight_scale": np.ones((3, 5), np.float32)})
    (row,) = htsr.analyze(odd, min_evals=5).layers
    assert row.status.startswith("failed: b.weight with b.weight_scale: scale shape (3, 5) fits no scale layout")
    assert "(scalar, per output row, or a grid of power-of-two blocks)" in row.status  # the layouts it may have


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
    # the entries sharing a scale (a delta's rounding is measured over them): 0 the whole tensor, else a row of 64
    assert (ref["a.weight"].bits, ref["a.weight"].quant_block) == (8, 0 if math.prod(shape) == 1 else 64)


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


def test_codes_in_float16_tensors_come_back_bit_for_bit_from_torch_state_dicts():
    """The bitsandbytes reference loaded by torch (a state dict in memory): codes stored as float16 must not
    pass through torch's float16 → float32 widening, which quiets signalling-NaN patterns (1022 of the
    65536) — 3 of 4 such layers came out 21-39 % off. They equal bitsandbytes' own dequantization."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    folder = Path(__file__).parent / "data" / "bitsandbytes"
    want = np.load(folder / "dequantized.npz")
    state = load_file(str(folder / "model.safetensors"))
    f16 = [n for n in want.files if state[f"{n}.weight"].dtype == torch.float16]
    assert f16
    refs = {r.name: r for r in open_source(state)}
    for name in f16:  # FP4: the CPU kernel's rounded table, as in the file test
        np.testing.assert_allclose(refs[f"{name}.weight"].load(), want[name], rtol=2.4e-7,
                                   atol=3.4e-5 * np.abs(want[name]).max(), err_msg=name)


def test_a_live_module_with_quantized_layers_reads_them_as_its_state_dict_does():
    """An nn.Module holding a quantized layer (here bitsandbytes LLM.int8()'s layout: an int8 weight and
    its SCB) is read through that layer's state dict and dequantized, like the checkpoint; other layers
    keep their module-typed rows. A live module used to skip the scales: codes analysed as weights."""
    torch = pytest.importorskip("torch")

    class Int8Linear(torch.nn.Module):
        def __init__(self, cb: np.ndarray, scb: np.ndarray) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.from_numpy(cb), requires_grad=False)
            self.register_buffer("SCB", torch.from_numpy(scb))

    rng = np.random.default_rng(6)
    cb, scb = _bnb_int8(rng.standard_normal((64, 48)).astype(np.float32))
    model = torch.nn.Sequential(Int8Linear(cb, scb), torch.nn.Conv1d(8, 8, 3))
    refs = {r.name: r for r in open_source(model)}
    assert {n for n in refs if not n.endswith(".bias")} == {"0.weight", "1.weight"} and refs["1.weight"].kind == "conv1d"
    np.testing.assert_array_equal(refs["0.weight"].load(), cb.astype(np.float32) * (scb[:, None] / np.float32(127)))
    assert [(r.name, r.status) for r in htsr.analyze(model, min_evals=3).layers] == [("0", "ok"), ("1", "ok")]


def test_bitsandbytes_int8_weight_format_is_a_part_and_only_rows_are_read():
    """bitsandbytes writes ``weight_format`` beside SCB (0 = rows); it is not a tensor of its own, and a
    tiled layout (col_turing = 2), which bitsandbytes itself refuses to read back, gets a skipped row."""
    rng = np.random.default_rng(5)
    cb, scb = _bnb_int8(rng.standard_normal((64, 64)).astype(np.float32))
    state = {"a.weight": cb, "a.SCB": scb, "a.weight_format": np.array(0, np.uint8),
             "b.weight": cb, "b.SCB": scb, "b.weight_format": np.array(2, np.uint8)}
    assert {r.name for r in open_source(state)} == {"a.weight", "b.weight"}
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=5).layers}
    assert rows["a"] == "ok"
    assert rows["b"].startswith("skipped: bitsandbytes int8 weight in layout b.weight_format = [2], not rows")


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


# ------------------------------------------------------------------ GPTQ / AWQ packed weights
# The packers below follow AutoGPTQ's and AutoAWQ's pack(): codes lowest bits first in int32 words; GPTQ packs
# qweight along the input axis and stores zero − 1 ("gptq" format); AWQ packs along the output axis with
# physical nibble i holding logical column AWQ_ORDER[i]. The expected weight is formed from the codes,
# zeros and scales before any packing: (code − zero) · scale of the input channel's group.

_AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def _pack_3bit(codes: np.ndarray) -> np.ndarray:
    """AutoGPTQ's 3-bit packing along the first axis, as its pack() loop writes it: every 32 codes fill
    3 words — 10 codes, then code 10 split (2 low bits in word 0, its high bit at bit 0 of word 1), 10
    codes, code 21 split (1 bit at bit 31 of word 1, 2 bits at the bottom of word 2), 10 codes."""
    c = codes.astype(np.uint64)
    words = np.zeros((c.shape[0] // 32 * 3,) + c.shape[1:], np.uint64)
    for blk in range(c.shape[0] // 32):
        v, w = c[32 * blk: 32 * blk + 32], words[3 * blk: 3 * blk + 3]
        for j in range(10):
            w[0] |= v[j] << np.uint64(3 * j)
        w[0] |= (v[10] << np.uint64(30)) & np.uint64(0xFFFFFFFF)
        w[1] |= (v[10] >> np.uint64(2)) & np.uint64(1)
        for j in range(10):
            w[1] |= v[11 + j] << np.uint64(3 * j + 1)
        w[1] |= (v[21] << np.uint64(31)) & np.uint64(0xFFFFFFFF)
        w[2] |= (v[21] >> np.uint64(1)) & np.uint64(3)
        for j in range(10):
            w[2] |= v[22 + j] << np.uint64(3 * j + 2)
    return words.astype(np.uint32)


def _pack_words(codes: np.ndarray, bits: int, axis: int, order=None) -> np.ndarray:
    if bits == 3:
        return np.moveaxis(_pack_3bit(np.moveaxis(codes, axis, 0)), 0, axis).view(np.int32)
    per = 32 // bits
    c = np.moveaxis(codes.astype(np.uint32), axis, 0)  # pack along the first axis
    c = c.reshape(c.shape[0] // per, per, *c.shape[1:])
    if order is not None:
        c = c[:, list(order)]  # physical position i holds logical code order[i]
    words = np.zeros(c.shape[:1] + c.shape[2:], np.uint32)
    for i in range(per):
        words |= c[:, i] << np.uint32(bits * i)
    return np.moveaxis(words, 0, axis).view(np.int32)


def _quantized(rng, n_in: int, out: int, bits: int, groups: int, act_order: bool = False):
    codes = rng.integers(0, 1 << bits, (n_in, out))
    zeros = rng.integers(1, 1 << bits, (groups, out))  # >= 1: AutoGPTQ's "zero − 1" is never negative
    scales = rng.uniform(0.001, 0.02, (groups, out)).astype(np.float16)
    g_idx = np.arange(n_in) // (n_in // groups)
    if act_order:
        g_idx = rng.permutation(g_idx)  # desc_act: channels assigned to groups out of order
    W = ((codes - zeros[g_idx]) * scales.astype(np.float32)[g_idx]).astype(np.float32)  # [in, out]
    return codes, zeros, scales, g_idx.astype(np.int32), W.T


@pytest.mark.parametrize("bits,act_order", [(4, False), (4, True), (2, False), (8, True), (3, True)])
def test_gptq_layers_are_unpacked_exactly(tmp_path, bits, act_order):
    rng = np.random.default_rng(bits + 10 * act_order)
    codes, zeros, scales, g_idx, want = _quantized(rng, 256, 96, bits, 4, act_order)
    path = _save(tmp_path / "gptq.safetensors", {
        "mlp.up_proj.qweight": _pack_words(codes, bits, 0),
        "mlp.up_proj.qzeros": _pack_words(zeros - 1, bits, 1),
        "mlp.up_proj.scales": scales, "mlp.up_proj.g_idx": g_idx,
        "mlp.up_proj.bias": np.zeros(96, np.float16)})
    refs = {r.name: r for r in open_source(path)}
    assert set(refs) == {"mlp.up_proj.weight", "mlp.up_proj.bias"}  # the parts are not layers
    w = refs["mlp.up_proj.weight"]
    assert (w.shape, w.dtype) == ((96, 256), "float32")
    # a g_idx may put inputs in groups out of order: no run of consecutive entries is known to share a scale; one in
    # the sequential order (AutoGPTQ and GPTQModel write it so without act-order) keeps the groups of 256 / 4 = 64
    # (they had been unknown, a --base floor an estimate: rows fitted on rounding noise, h58)
    assert (w.bits, w.quant_block) == (bits, None if act_order else 64)
    # the same float32 operations on the same integers and fp16 scales: exact (to float32 rounding of the
    # product, which both sides round alike)
    np.testing.assert_allclose(w.load(), want, rtol=1e-6, atol=0)
    (row,) = htsr.analyze(path, min_evals=5).layers
    assert row.name == "mlp.up_proj" and row.status == "ok" and row.kind == "dense"


@pytest.mark.parametrize("checkpoint_format", ["gptq_v2", "GPTQ_V2"])
def test_gptq_v2_zero_points_come_from_the_folder_config(tmp_path, checkpoint_format):
    """checkpoint_format "gptq_v2" (in any case) stores the zero points as they are, not minus one."""
    rng = np.random.default_rng(7)
    codes, zeros, scales, g_idx, want = _quantized(rng, 128, 64, 4, 2)
    (tmp_path / "m").mkdir()
    _save(tmp_path / "m" / "model.safetensors", {
        "fc.qweight": _pack_words(codes, 4, 0), "fc.qzeros": _pack_words(zeros, 4, 1),  # stored as is
        "fc.scales": scales, "fc.g_idx": g_idx})
    (tmp_path / "m" / "config.json").write_text(json.dumps(
        {"quantization_config": {"quant_method": "gptq", "bits": 4, "checkpoint_format": checkpoint_format}}))
    got = {r.name: r for r in open_source(tmp_path / "m")}["fc.weight"].load()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)  # (code − zero)·scale rounded once, as want: equal


def test_awq_gemm_layers_are_unpacked_in_awq_nibble_order(tmp_path):
    rng = np.random.default_rng(8)
    codes, zeros, scales, _, want = _quantized(rng, 256, 128, 4, 2)  # AWQ groups: consecutive inputs
    state = {"attn.o_proj.qweight": _pack_words(codes, 4, 1, _AWQ_ORDER),
             "attn.o_proj.qzeros": _pack_words(zeros, 4, 1, _AWQ_ORDER),  # AWQ stores the zero itself
             "attn.o_proj.scales": scales}
    for source in (_save(tmp_path / "awq.safetensors", state), state):
        refs = {r.name: r for r in open_source(source)}
        assert list(refs) == ["attn.o_proj.weight"] and refs["attn.o_proj.weight"].shape == (128, 256)
        # (code − zero)·scale rounded once to float32 by both: equal (rtol: margin only)
        np.testing.assert_allclose(refs["attn.o_proj.weight"].load(), want, rtol=1e-6, atol=0)


def test_packed_layouts_htsr_cannot_unpack_get_a_skipped_row(tmp_path):
    """5-bit GPTQ codes (no GPTQ writer makes them), a qweight of 13 rows for a g_idx of 100 inputs (4.16 bits a
    code: no whole width, though it rounds down to 4, which had gone unchecked), and a corrupt g_idx names groups
    that do not exist: a row that says why, and the other layers go on."""
    rng = np.random.default_rng(9)
    n_in, out = 128, 32
    path = _save(tmp_path / "q.safetensors", {
        "a.qweight": rng.integers(0, 2**31, (n_in * 5 // 32, out)).astype(np.int32),  # 5-bit
        "a.scales": np.ones((1, out), np.float16), "a.g_idx": np.zeros(n_in, np.int32),
        "b.qweight": _pack_words(rng.integers(0, 16, (n_in, out)), 4, 0),
        "b.qzeros": _pack_words(np.full((1, out), 7), 4, 1), "b.scales": np.ones((1, out), np.float16),
        "b.g_idx": np.full(n_in, 5, np.int32),  # group 5 of 1
        "c.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "d.qweight": rng.integers(0, 2**31, (13, out)).astype(np.int32), "d.g_idx": np.zeros(100, np.int32),
        "d.scales": np.ones((1, out), np.float16)})
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert set(rows) == {"a", "b", "c", "d"} and rows["c"].status == "ok"
    assert rows["a"].status.startswith("skipped: packed quantized weight") and "5-bit" in rows["a"].status
    assert rows["d"].status.startswith("skipped: packed quantized weight") and "holds 4.16-bit codes" in rows["d"].status
    assert rows["b"].status.startswith("failed:") and "g_idx" in rows["b"].status and "\n" not in rows["b"].status


# ------------------------------------------------------------------ bitsandbytes 4-bit (NF4 / FP4)
# bitsandbytes' NF4 code (the 16 values of quant_map); the reader takes the values from the file
_NF4 = np.array([-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
                 0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0], np.float32)


def _bnb4_state(W: np.ndarray, block: int = 64, nested: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Linear4bit's state dict entries for W as bitsandbytes writes them, and the weight they encode:
    per block of 64 values absmax = max|w| and code = nearest NF4 value of w/absmax; bytes hold code 2k in
    the high nibble and 2k+1 in the low one; with double quantization absmax is stored as 8-bit codes of a
    256-value map times a per-256-block scale, plus an offset (its mean)."""
    flat = W.reshape(-1)
    absmax = np.abs(flat.reshape(-1, block)).max(axis=1).astype(np.float32)
    codes = np.abs(flat.reshape(-1, block)[..., None] / absmax[:, None, None] - _NF4).argmin(axis=-1).reshape(-1)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8).reshape(-1, 1)
    state = {"quant_type": "nf4", "blocksize": block, "dtype": "float16", "shape": list(W.shape)}
    parts = {"weight": packed, "weight.absmax": absmax, "weight.quant_map": _NF4}
    used_absmax = absmax
    if nested:
        offset = float(absmax.mean())
        nmap = np.linspace(-1, 1, 256).astype(np.float32)
        centred = absmax - np.float32(offset)
        nscale = np.abs(centred.reshape(-1, 256)).max(axis=1).astype(np.float32)
        acodes = np.abs(centred.reshape(-1, 256)[..., None] / nscale[:, None, None] - nmap).argmin(axis=-1)
        parts.update({"weight.absmax": acodes.reshape(-1).astype(np.uint8), "weight.nested_absmax": nscale,
                      "weight.nested_quant_map": nmap})
        state.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset})
        used_absmax = nmap[acodes.reshape(-1)] * np.repeat(nscale, 256) + np.float32(offset)
    parts["weight.quant_state.bitsandbytes__nf4"] = np.frombuffer(json.dumps(state).encode(), np.uint8).copy()
    want = (_NF4[codes] * np.repeat(used_absmax.astype(np.float32), block)).reshape(W.shape)
    return parts, want


@pytest.mark.parametrize("nested", [False, True])
def test_bitsandbytes_4bit_layers_are_dequantized(tmp_path, nested):
    rng = np.random.default_rng(12)
    W = rng.standard_normal((256, 512)).astype(np.float32)  # 2048 blocks of 64, 8 nested blocks of 256
    parts, want = _bnb4_state(W, nested=nested)
    state = {f"mlp.down_proj.{k}": v for k, v in parts.items()}
    state["mlp.down_proj.bias"] = np.zeros(256, np.float32)
    path = _save(tmp_path / "m.safetensors", {k: v.astype(np.float32) if v.dtype == np.float64 else v
                                               for k, v in state.items()})
    for source in (path, state):
        refs = {r.name: r for r in open_source(source)}
        assert set(refs) == {"mlp.down_proj.weight", "mlp.down_proj.bias"}  # the state's parts are not layers
        w = refs["mlp.down_proj.weight"]
        assert (w.shape, w.dtype) == ((256, 512), "float32")
        assert (w.bits, w.quant_block) == (4, 64)  # 4-bit codes, one absmax per block of 64 (a delta's rounding)
        np.testing.assert_allclose(w.load(), want, rtol=1e-6, atol=0)  # the same float32 products
        # NF4's largest gap is 0.304 of a block's absmax: each weight within half of it, 0.152·max|W|; a
        # nested absmax is off by at most half a step of its 256-value map, (1/255)·max|W|: 0.16 covers both
        assert np.abs(w.load() - W).max() <= 0.16 * np.abs(W).max()
    (row,) = htsr.analyze(path, min_evals=5).layers
    assert row.name == "mlp.down_proj" and row.status == "ok"


def test_bitsandbytes_layers_equal_bitsandbytes_dequantize():
    """Linear4bit layers quantized and saved by bitsandbytes itself (NF4 and FP4, with and without double
    quantization, the codes stored as uint8, bfloat16, float16 or float32 — FSDP-QLoRA's quant_storage) and
    Linear8bitLt (LLM.int8()) layers: htsr's weight equals bitsandbytes' dequantize_4bit /
    int8_vectorwise_dequant (tests/data/bitsandbytes/make_bnb_reference.py wrote both)."""
    folder = Path(__file__).parent / "data" / "bitsandbytes"
    want = np.load(folder / "dequantized.npz")
    stored = {r.name: r.dtype for r in SafetensorsFile(folder / "model.safetensors").refs()}
    assert {stored[f"{n}.weight"] for n in want.files} == {"uint8", "bfloat16", "float16", "float32", "int8"}
    refs = {r.name: r for r in open_source(folder)}
    # absmax, maps, states, SCB and weight_format are no tensors of their own; the int8 layers have biases
    assert set(refs) == {f"{n}.{p}" for n in want.files for p in ("weight", "bias") if f"{n}.{p}" in stored}
    for name in want.files:
        got = refs[f"{name}.weight"].load()
        fp4 = f"{name}.weight.quant_state.bitsandbytes__fp4" in stored
        # NF4: the same float32 products (code value × absmax). FP4: bitsandbytes' CPU kernel uses the FP4
        # values rounded to 4 decimals (0.6667 for 2/3), htsr the exact ones in the file's quant_map (as the
        # CUDA kernel does): at most 3.4e-5 of the block's absmax apart (measured 3.3e-5). int8:
        # bitsandbytes multiplies by 1/127 in float32, htsr divides by 127: two roundings, 2.4e-7 relative
        atol = 3.4e-5 * np.abs(want[name]).max() if fp4 else 0.0
        np.testing.assert_allclose(got, want[name], rtol=2.4e-7, atol=atol, err_msg=name)
    rows = htsr.analyze(folder, min_evals=5).layers
    assert len(rows) == len(want.files) and all(r.status == "ok" for r in rows)


def test_bitsandbytes_4bit_state_that_cannot_be_read_gets_a_skipped_row(tmp_path):
    rng = np.random.default_rng(13)
    parts, _ = _bnb4_state(rng.standard_normal((64, 64)).astype(np.float32))
    parts["weight.quant_state.bitsandbytes__nf4"] = np.frombuffer(b"{not json", np.uint8).copy()
    state = {f"a.{k}": v for k, v in parts.items()} | {"b.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    rows = {r.name: r for r in htsr.analyze(state, min_evals=5).layers}
    assert set(rows) == {"a", "b"} and rows["b"].status == "ok"
    assert rows["a"].status.startswith("skipped: bitsandbytes 4-bit weight whose quant_state cannot be read")


# ------------------------------------------------------------------ MLX affine quantization (mlx-community)


def _mlx_layer(rng, out: int, n_in: int, bits: int, group: int):
    """mx.quantize's layout: codes packed along each row, lowest bits first, in uint32 words; one scale and
    one bias per group of inputs; W = scale·q + bias."""
    codes = rng.integers(0, 1 << bits, (out, n_in))
    scales = rng.uniform(0.001, 0.01, (out, n_in // group)).astype(np.float16)
    biases = rng.uniform(-0.05, 0.0, (out, n_in // group)).astype(np.float16)
    words = _pack_words(codes.T, bits, 0).T.view(np.uint32)  # along the input axis of [out, in]
    want = (codes * np.repeat(scales.astype(np.float32), group, axis=1)
            + np.repeat(biases.astype(np.float32), group, axis=1)).astype(np.float32)
    return {"weight": np.ascontiguousarray(words), "scales": scales, "biases": biases}, want


def test_mlx_quantized_layers_with_bits_from_the_config(tmp_path):
    """A 4-bit model with one 8-bit layer (MLX's per-layer override in config.json), and the default 4 / 64
    when no config says: every layer unpacked, the scales and biases no layers."""
    rng = np.random.default_rng(14)
    q, want_q = _mlx_layer(rng, 96, 256, 4, 64)
    v, want_v = _mlx_layer(rng, 96, 256, 8, 32)
    e, want_e = _mlx_layer(rng, 300, 128, 4, 64)
    state = {f"model.layers.0.self_attn.{n}.{k}": a for n, parts in (("q_proj", q), ("v_proj", v))
             for k, a in parts.items()} | {f"model.embed_tokens.{k}": a for k, a in e.items()}
    (tmp_path / "m").mkdir()
    _save(tmp_path / "m" / "model.safetensors", state)
    (tmp_path / "m" / "config.json").write_text(json.dumps({"quantization": {
        "group_size": 64, "bits": 4, "model.layers.0.self_attn.v_proj": {"group_size": 32, "bits": 8}}}))
    refs = {r.name: r for r in open_source(tmp_path / "m")}
    assert set(refs) == {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                         "model.embed_tokens.weight"}
    for name, want in (("q_proj", want_q), ("v_proj", want_v)):
        r = refs[f"model.layers.0.self_attn.{name}.weight"]
        assert (r.shape, r.dtype) == (want.shape, "float32")
        np.testing.assert_allclose(r.load(), want, rtol=1e-6, atol=1e-7)  # float32 multiply-add vs product + sum
    np.testing.assert_allclose(refs["model.embed_tokens.weight"].load(), want_e, rtol=1e-6, atol=1e-7)
    rows = {r.name: r for r in htsr.analyze(tmp_path / "m", min_evals=5).layers}
    assert rows["model.embed_tokens"].kind == "embedding" and all(r.status == "ok" for r in rows.values())
    # without the config, 256 inputs in 4 groups of 64 at 4 bits look like 512 inputs in groups of 128 at
    # 2 bits: which it is only the config says, so the layers get a skipped row rather than a wrong weight
    (tmp_path / "m" / "config.json").unlink()
    rows = {r.name: r for r in htsr.analyze(tmp_path / "m", min_evals=5).layers}
    assert set(rows) == {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.embed_tokens"}
    assert all(r.status.startswith("skipped: packed quantized weight: MLX weight") and "config.json" in r.status
               for r in rows.values())



MLX_DATA = Path(__file__).parent / "data" / "mlx"
CT_DATA = Path(__file__).parent / "data" / "compressed_tensors"


def _matches_stored_reference(folder: Path, reference: str, shape: tuple[int, int] | None, atol: float,
                              others: set[str] = frozenset()) -> None:
    """Every layer of the model in ``folder`` loads as the library's own dequantized weight stored in
    ``reference`` (within ``atol``), its parts are no tensors of their own (its ``others``, e.g. a bias, are),
    and every layer analyses: each [out, in] is ``shape`` unless None (an expert stack's [E, out, in] gives
    E rows)."""
    want = np.load(folder / reference)
    refs = {r.name: r for r in open_source(folder)}
    assert set(refs) == {f"{n}.{p}" for n in want.files for p in {"weight", *others}}  # scales, zero points…
    for name in want.files:
        got = refs[f"{name}.weight"].load()
        assert got.shape == want[name].shape and shape in (None, got.shape[-2:]), name
        np.testing.assert_allclose(got, want[name], rtol=0, atol=atol, err_msg=name)  # (atol: each caller's reason)
    rows = htsr.analyze(folder, min_evals=5).layers
    experts = sum(want[n].shape[0] for n in want.files if want[n].ndim == 3)
    assert len(rows) == sum(want[n].ndim == 2 for n in want.files) + experts
    assert all(r.status == "ok" for r in rows)


def test_mlx_layers_of_every_bit_width_equal_mlx_dequantize():
    """Layers quantized by MLX itself (mx.quantize, saved by mx.save_safetensors; 1, 2, 3, 4, 5, 6 and 8
    bits, groups of 32 and 64, bits per layer in config.json as mlx-lm's mixed recipes write them; and a
    switch_mlp expert stack [4, 12, 256]): htsr's dequantized weight equals mx.dequantize's
    (tests/data/mlx/make_mlx_reference.py wrote both). 3-, 5- and 6-bit codes run across the uint32 words."""
    # mx.dequantize computes scale·q + bias in float16 (the scales' dtype), htsr in float32: float16
    # rounding of terms below 0.5 in magnitude, at most one float16 ulp there (2.4e-4; measured 1.2e-4),
    # while one code off would be off by a whole scale (≥ 1.4e-3 at 8 bits)
    _matches_stored_reference(MLX_DATA, "dequantized.npz", (12, 256), atol=2.5e-4)


def test_compressed_tensors_layers_equal_the_library_decompress():
    """pack-quantized layers written by compressed-tensors itself (asymmetric 2-, 3- and 4-bit groups and
    8-bit channels, with packed zero points; symmetric 4-bit groups and 5-bit channels; two fused expert
    stacks [4, 24, 128], one row per expert): htsr's weight equals the library's own decompress
    (tests/data/compressed_tensors/make_ct_reference.py wrote both). 3- and 5-bit codes run across the
    int32 words."""
    # the library returns bfloat16 (the weight's dtype), htsr float32: half a bfloat16 ulp of weights
    # below 0.25 (4.9e-4; measured 4.9e-4), while one code off would be off by a whole scale (≥ 1e-3)
    _matches_stored_reference(CT_DATA, "decompressed.npz", (24, 128), atol=4.9e-4)


def test_compressed_tensors_block_strategy_layers_equal_the_library_decompress():
    """Symmetric and asymmetric 4-bit layers with one scale (and zero point) per [32 rows, 64 inputs] block,
    the config's block_structure, of [64, 128] and of [72, 160] (short last blocks both ways), written and
    decompressed by compressed-tensors itself (tests/data/compressed_tensors_block/make_ct_block_reference.py)."""
    # bfloat16 results against float32: half a bfloat16 ulp below 0.25 (as above)
    _matches_stored_reference(Path(__file__).parent / "data" / "compressed_tensors_block", "decompressed.npz",
                              None, atol=4.9e-4)


def test_hqq_layers_equal_hqq_dequantize():
    """Layers quantized and serialized by HQQ itself (HQQLinear: 1, 2, 3, 4 and 8 bits, groups along either
    axis, a [48, 160] layer whose 3-bit words are padded, codes stored view_as_float in bfloat16, a layer
    quantized channel_wise=False, whose codes are packed along the weight's own rows): htsr's weight equals
    HQQLinear.dequantize() (tests/data/hqq/make_hqq_reference.py wrote both)."""
    folder = Path(__file__).parent / "data" / "hqq"
    want = np.load(folder / "dequantized.npz")
    refs = {r.name: r for r in open_source(folder)}
    assert set(refs) == {f"{n}.weight" for n in want.files}  # W_q, scale, zero and the meta: one tensor
    for name in want.files:
        got = refs[f"{name}.weight"].load()
        assert got.shape == want[name].shape
        # float32 layers: the same float32 operations. The bfloat16 one: HQQ computes q − zero and its
        # product with the scale in bfloat16, htsr in float32: two roundings, each within one bfloat16 ulp
        # of the largest weight's binade (2 × 4.9e-4; measured 4.1e-4)
        ulp = 2.0 ** (np.floor(np.log2(np.abs(want[name]).max())) - 7)
        atol = 2 * ulp if name.endswith("layers.5.self_attn.q_proj") else 0.0
        np.testing.assert_allclose(got, want[name], rtol=1e-6, atol=atol, err_msg=name)
    rows = htsr.analyze(folder, min_evals=5).layers
    assert len(rows) == len(want.files) and all(r.status == "ok" for r in rows)
    # each layer's bits, as make_hqq_reference.py quantized it: the rounding floor a delta of it measures against
    # (they had been None for every HQQ layer: a delta fell back on float32 rounding)
    assert [refs[f"model.layers.{i}.self_attn.q_proj.weight"].bits for i in range(8)] == [4, 3, 2, 1, 8, 4, 3, 4]


def test_hqq_layers_whose_meta_or_codes_do_not_fit_get_a_row_naming_them():
    """An unknown packing, nbits that its packing does not store, quantized scales (an older HQQ
    serialization) or no W_q at all give a skipped row (a layer without W_q had no row, its scale and zero
    one each), codes too few for the shape a failed one; the other layers are read."""
    folder = Path(__file__).parent / "data" / "hqq"
    # (the view_as_float layer 5 is left out: its bfloat16 code bytes would be widened to float32 by load())
    state = {r.name: r.load() for r in SafetensorsFile(folder / "model.safetensors").refs() if ".5." not in r.name}
    layer = "model.layers.{}.self_attn.q_proj.{}".format
    state[layer(0, "packing")] = np.frombuffer(b"5bit_u8", np.uint8).copy()
    state[layer(1, "quant_scale")] = np.array(1, np.uint8)
    state[layer(2, "W_q")] = state[layer(2, "W_q")][:8]
    state[layer(3, "nbits")] = np.array(4, np.int32)  # its packing is 1bit_u8
    del state[layer(4, "W_q")]
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=5).layers}
    assert set(rows) == {layer(i, "")[:-1] for i in (0, 1, 2, 3, 4, 6, 7)}  # no scale or zero rows
    assert rows[layer(0, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (packing '5bit_u8'")
    assert rows[layer(1, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (quantized or offloaded")
    assert rows[layer(2, "")[:-1]].startswith(f"failed: {layer(2, 'weight')} (HQQ): W_q [8, 32] holds fewer")
    assert rows[layer(3, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (nbits 4 with packing 1bit_u8")
    assert rows[layer(4, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (no W_q")
    assert rows[layer(6, "")[:-1]] == rows[layer(7, "")[:-1]] == "ok"


def test_aqlm_layers_equal_aqlm_dequantize():
    """Layers in aqlm's QuantizedLinear layout (one 12-bit codebook with int16 codes stored signed, two 8-bit
    codebooks, output groups of 2; float16 codebooks and scales): htsr's weight equals aqlm's own
    _dequantize_weight (tests/data/aqlm/make_aqlm_reference.py wrote both)."""
    # both sum the same float32 codebook vectors in the same order and scale them once: equal
    _matches_stored_reference(Path(__file__).parent / "data" / "aqlm", "dequantized.npz", None, atol=0.0,
                              others={"bias"})


def test_aqlm_layers_missing_a_part_or_with_a_codebook_too_small_get_a_row_naming_it():
    """Without its scales an AQLM layer was analysed unscaled (status ok); a codebook of 200 vectors for
    8-bit codes wrapped the codes round it (ok). Now: skipped rows naming the missing part, and a failed row
    for the codebook; no part gets a row of its own."""
    folder = Path(__file__).parent / "data" / "aqlm"
    state = {r.name: r.load() for r in SafetensorsFile(folder / "model.safetensors").refs()}
    layer = "model.layers.{}.mlp.down_proj{}".format
    del state[layer(0, ".scales")]
    del state[layer(1, ".codebooks")]
    state[layer(2, ".codebooks")] = state[layer(2, ".codebooks")][:, :12]  # 16 vectors for 4-bit codes: 12
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=3).layers}
    assert set(rows) == {layer(i, "") for i in range(3)}
    assert rows[layer(0, "")].startswith("skipped: AQLM layer without its scales")
    assert rows[layer(1, "")].startswith("skipped: AQLM layer without its codebooks")
    assert rows[layer(2, "")].startswith(f"failed: {layer(2, '.weight')} (AQLM): codebooks of 12 vectors, not the")


def test_an_odd_count_bitsandbytes_4bit_weight_is_read_from_its_last_half_byte_and_not_from_fewer(tmp_path):
    """A [3, 5] NF4 weight has 15 codes in 8 bytes (the last low nibble unused): it is read code for code; 7 bytes
    are one code short and fail the layer naming the count (a buffer of ⌊15 / 2⌋ bytes had passed the size check
    and failed later on a broadcast error)."""
    codes = np.arange(15) % 16
    padded = np.append(codes, 0)
    packed = ((padded[0::2] << 4) | padded[1::2]).astype(np.uint8)
    state = np.frombuffer(json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "float32",
                                      "shape": [3, 5]}).encode(), np.uint8).copy()
    model = {}
    for name, data in (("a", packed), ("b", packed[:7])):
        model.update({f"{name}.weight": data.reshape(-1, 1), f"{name}.weight.absmax": np.array([2.0], np.float32),
                      f"{name}.weight.quant_map": _NF4, f"{name}.weight.quant_state.bitsandbytes__nf4": state})
    refs = {r.name: r for r in open_source(model)}
    np.testing.assert_array_equal(refs["a.weight"].load(), (_NF4[codes] * np.float32(2.0)).reshape(3, 5))
    with pytest.raises(htsr.errors.SourceError, match=r"b.weight \(bitsandbytes NF4\): 7 bytes of codes for a \[3, 5\]"):
        refs["b.weight"].load()


def test_bitsandbytes_4bit_block_counts_must_match_the_state(tmp_path):
    """A quant_state whose blocksize disagrees with the absmax count (256 where absmax holds one per 64
    values) was read with wrong scales, status ok: the counts must match exactly, as must the nested ones."""
    rng = np.random.default_rng(19)
    parts, _ = _bnb4_state(rng.standard_normal((64, 512)).astype(np.float32), nested=True)
    state = json.loads(bytes(parts["weight.quant_state.bitsandbytes__nf4"]).decode())
    blocks = {"a": {**state, "blocksize": 256}, "b": {**state, "nested_blocksize": 128}, "c": state}
    model = {f"{k}.{p}": (np.frombuffer(json.dumps(v).encode(), np.uint8).copy() if p.startswith("weight.quant_state")
                          else a) for k, v in blocks.items() for p, a in parts.items()}
    rows = {r.name: r.status for r in htsr.analyze(model, min_evals=5).layers}
    assert rows["a"].startswith("failed: a.weight (bitsandbytes NF4): quant_map of 16 values or 512 block scales")
    assert rows["b"].startswith("failed: b.weight (bitsandbytes NF4): nested absmax of 512 uint8 values")
    assert rows["c"] == "ok"


def test_an_asymmetric_compressed_tensors_layer_without_its_zero_point_is_not_read_as_symmetric(tmp_path):
    """A shard analysed alone whose zero points sit in another shard: with config.json saying the weights
    are asymmetric, the layer gets a skipped row (it was read as symmetric, status ok, weights 0.05 off)."""
    folder = tmp_path / "m"
    shutil.copytree(CT_DATA, folder)
    layer = "model.layers.0.mlp.down_proj"  # asymmetric 4-bit groups
    tensors = {r.name: r.load() for r in SafetensorsFile(folder / "model.safetensors").refs()
               if r.name.startswith(layer) and not r.name.endswith("zero_point")}
    _save(folder / "model.safetensors", tensors)
    assert htsr.analyze(folder, min_evals=5).layers[0].status == "ok"  # no config: symmetric is possible
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "symmetric": False}}}}}))
    assert htsr.analyze(folder, min_evals=5).layers[0].status.startswith(
        "skipped: packed quantized weight: asymmetric, as config.json says, but without its weight_zero_point")


def test_compressed_tensors_act_order_layers_equal_the_library_decompress():
    """Symmetric 2-, 4- and 8-bit layers with ``weight_g_idx`` (activation order: inputs assigned to groups
    out of order), written and decompressed by compressed-tensors 0.9.4, the last version whose format
    carries g_idx (tests/data/compressed_tensors_gidx/make_ct_gidx_reference.py)."""
    folder = Path(__file__).parent / "data" / "compressed_tensors_gidx"
    g_idx = {r.name: r for r in SafetensorsFile(folder / "model.safetensors").refs()}[
        "model.layers.0.mlp.down_proj.weight_g_idx"].load()
    assert not np.all(np.diff(g_idx) >= 0)  # out of order: consecutive groups would give other weights
    # bfloat16 results against float32: half a bfloat16 ulp below 0.25 (as above)
    _matches_stored_reference(folder, "decompressed.npz", (24, 128), atol=4.9e-4)


def test_quantized_parts_in_different_torch_shards_are_paired(tmp_path):
    """A sharded pytorch_model.bin folder: a GPTQ layer's qweight in one shard and its scales / zeros in the
    other, an int8 weight and its bitsandbytes SCB likewise; the pairs are made across shards, as for
    safetensors shards, and no part becomes a layer."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    codes, zeros, scales, g_idx, want_gptq = _quantized(rng, 128, 64, 4, 2)
    cb, scb = _bnb_int8(rng.standard_normal((48, 64)).astype(np.float32))
    # shard 1 alone looks like a complete symmetric GPTQ layer (no qzeros): pairing per shard would
    # dequantize it with midpoint zero points, without an error
    shards = {"pytorch_model-00001-of-00002.bin": {"a.qweight": _pack_words(codes, 4, 0), "a.g_idx": g_idx,
                                                   "a.scales": scales, "b.weight": cb},
              "pytorch_model-00002-of-00002.bin": {"a.qzeros": _pack_words(zeros - 1, 4, 1), "b.SCB": scb}}
    (tmp_path / "m").mkdir()
    for file, tensors in shards.items():
        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, str(tmp_path / "m" / file))
    (tmp_path / "m" / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: file for file, tensors in shards.items() for k in tensors}}))
    refs = {r.name: r for r in open_source(tmp_path / "m")}
    assert set(refs) == {"a.weight", "b.weight"}
    # (float32 products of scale and integer in another order than the reference's: a few ulps, 6e-8 each)
    np.testing.assert_allclose(refs["a.weight"].load(), want_gptq, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(refs["b.weight"].load(), cb.astype(np.float32) * (scb[:, None] / np.float32(127)))


def test_packed_layer_checks_and_conv_scales(tmp_path):
    """A g_idx of the wrong length would read 4-bit codes as 2-bit ones: the zero points (packed at the same
    bits) must agree, else a skipped row; a compressed-tensors weight_packed without its weight_shape gets
    a skipped row, and its weight_scale is no layer; an int8 conv kernel with one scale per output channel ([out] or [out, 1, 1, 1]) is dequantized."""
    rng = np.random.default_rng(16)
    codes, zeros, scales, g_idx, _ = _quantized(rng, 128, 64, 4, 2)
    q = rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    s = rng.uniform(0.01, 0.1, 8).astype(np.float32)
    state = {"a.qweight": _pack_words(codes, 4, 0), "a.qzeros": _pack_words(zeros - 1, 4, 1), "a.scales": scales,
             "a.g_idx": np.concatenate([g_idx, g_idx]),  # 256 entries: would mean 2-bit codes
             "c.weight_packed": rng.integers(0, 2**31, (64, 16)).astype(np.int32),
             "c.weight_scale": rng.uniform(size=(64, 4)).astype(np.float16),
             "conv.weight": q, "conv.weight_scale": s.reshape(8, 1, 1, 1)}
    rows = {r.name: r for r in htsr.analyze(state, min_evals=5).layers}
    assert set(rows) == {"a", "c", "conv"}
    assert rows["a"].status.startswith("skipped: packed quantized weight: GPTQ qzeros")
    assert rows["c"].status.startswith("skipped: packed quantized weight: weight_packed [64, 16] without its "
                                       "weight_shape")
    conv = {r.name: r for r in open_source(state)}["conv.weight"]
    np.testing.assert_array_equal(conv.load(), q.astype(np.float32) * s[:, None, None, None])
    assert rows["conv"].kind == "conv2d" and rows["conv"].status.split(":")[0] in ("ok", "not_fitted")


@pytest.mark.parametrize("bits,n_in,group", [(4, 96, 32), (4, 100, None), (8, 128, 64)])
def test_compressed_tensors_pack_quantized_layers(tmp_path, bits, n_in, group):
    """vLLM / llm-compressor's pack-quantized format: signed codes plus 2^(bits−1) packed along each row
    (lowest bits first, the last word padded), a scale per group of inputs (None: one per row), and the
    weight's shape; W = q · scale. 100 inputs at 4 bits leave 4 codes of padding."""
    rng = np.random.default_rng(17 + bits)
    out, half = 48, 1 << (bits - 1)
    q = rng.integers(-half, half, (out, n_in))
    scale = rng.uniform(0.001, 0.01, (out, 1 if group is None else n_in // group)).astype(np.float16)
    per = 32 // bits
    padded = np.zeros((out, -(-n_in // per) * per), np.int64)
    padded[:, :n_in] = q + half
    words = np.zeros((out, padded.shape[1] // per), np.uint32)
    for i in range(per):
        words |= padded[:, i::per].astype(np.uint32) << np.uint32(bits * i)
    state = {"mlp.up_proj.weight_packed": words.view(np.int32), "mlp.up_proj.weight_scale": scale,
             "mlp.up_proj.weight_shape": np.array([out, n_in], np.int32)}
    refs = {r.name: r for r in open_source(_save(tmp_path / "ct.safetensors", state))}
    assert list(refs) == ["mlp.up_proj.weight"] and refs["mlp.up_proj.weight"].shape == (out, n_in)
    assert refs["mlp.up_proj.weight"].bits == bits  # (a delta's rounding floor is that of these codes)
    # its blocks: a group's inputs along each row, or the whole row (they had been unknown: a --base floor an
    # estimate below the largest steps, rows fitted on rounding noise, h58); a 1-D channel scale, one for the tensor
    assert refs["mlp.up_proj.weight"].quant_block == (n_in if group is None else group)
    for scale_shape, block in (((out,), n_in), ((1,), 0)):
        one = {**state, "mlp.up_proj.weight_scale": np.full(scale_shape, 0.01, np.float16)}
        (ref,) = open_source(_save(tmp_path / f"ct{len(scale_shape)}{scale_shape[0]}.safetensors", one))
        assert ref.quant_block == block, scale_shape
    want = (q * np.repeat(scale.astype(np.float32), n_in // scale.shape[1], axis=1)).astype(np.float32)
    # q·scale rounded once to float32 by both: equal
    np.testing.assert_allclose(refs["mlp.up_proj.weight"].load(), want, rtol=1e-6, atol=0)


def test_inconsistent_quantization_parts_fail_that_layer_by_name(tmp_path):
    """Parts that do not fit each other give that layer a failed or skipped row naming it, never wrong
    values: a doubly quantized bitsandbytes absmax without its nested map, a compressed-tensors scale
    stored transposed, float tensors that happen to be named qweight / scales (a model's own parameters,
    analysed as such); an MLX config that gives a layer only its bits takes the group size from the
    model-wide entry."""
    rng = np.random.default_rng(18)
    bnb, _ = _bnb4_state(rng.standard_normal((64, 512)).astype(np.float32), nested=True)
    del bnb["weight.nested_quant_map"]
    out, n_in = 48, 96
    q = rng.integers(-8, 8, (out, n_in))
    state = {f"a.{k}": v for k, v in bnb.items()} | {
        "c.weight_packed": _pack_words(q + 8, 4, axis=1), "c.weight_scale": np.ones((3, out), np.float16),  # [groups, out]
        "c.weight_shape": np.array([out, n_in], np.int32),
        "f.qweight": rng.standard_normal((64, 64)).astype(np.float32),
        "f.scales": rng.standard_normal((8, 64)).astype(np.float32)}
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=5).layers}
    # (a nested part missing is said so, as a missing absmax is: h63)
    assert rows["a"].startswith("skipped: bitsandbytes 4-bit weight without its a.weight.nested_quant_map")
    assert rows["c"].startswith("failed: c.weight_scale: shape [3, 48] is none of a [48, 96] weight's")
    assert rows["f.qweight"] == "ok" and rows["f.scales"] == "ok"  # float tensors: not GPTQ parts
    mlx, want = _mlx_layer(rng, 96, 256, 8, 64)
    (tmp_path / "m").mkdir()
    _save(tmp_path / "m" / "model.safetensors", {f"l.b.{k}": v for k, v in mlx.items()})
    (tmp_path / "m" / "config.json").write_text(json.dumps(
        {"quantization": {"bits": 4, "group_size": 64, "l.b": {"bits": 8}}}))
    (ref,) = open_source(tmp_path / "m")
    # fp16 scale × 8-bit code is exact in float32, so both round scale·q + bias once: equal (measured 0)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=1e-7)


def _mxfp4(rng, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random MXFP4 groups of 32 codes over ``shape`` (… , groups): the blocks (two FP4 e2m1 codes a byte, low
    nibble first), the E8M0 scales (2^-9 .. 2^-4) and the weight they stand for [..., groups · 32]."""
    fp4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    codes = rng.integers(0, 16, (*shape, 32))
    exps = rng.integers(118, 124, shape).astype(np.uint8)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    want = (fp4[codes] * np.exp2(exps.astype(np.float32) - 127)[..., None]).reshape(*shape[:-1], shape[-1] * 32)
    return blocks, exps, want


def test_mxfp4_experts_as_gpt_oss_stores_them(tmp_path):
    """gpt-oss's MoE experts: <base>_blocks uint8 [E, out, groups, 16] (two FP4 e2m1 codes a byte, low
    nibble first) and <base>_scales uint8 [E, out, groups] (E8M0 exponents, bias 127); W = fp4 · 2^(e−127),
    one stacked tensor, one row per expert, given [E, in, out] as transformers holds it dequantized and bf16
    gpt-oss checkpoints store it: a fine-tune's delta against the MXFP4 base is a delta (every expert row was
    'skipped: shape (4, 256, 384) differs from the base's (4, 384, 256)')."""
    rng = np.random.default_rng(20)
    E, out, groups = 3, 80, 4  # 128 inputs
    blocks, exps, want = _mxfp4(rng, (E, out, groups))
    base = "model.layers.0.mlp.experts.down_proj"
    path = _save(tmp_path / "m.safetensors", {f"{base}_blocks": blocks, f"{base}_scales": exps,
                                              "model.layers.0.mlp.router.weight": rng.standard_normal((3, 128))
                                              .astype(np.float32)})
    refs = {r.name: r for r in open_source(path)}
    assert set(refs) == {base, "model.layers.0.mlp.router.weight"}
    assert refs[base].shape == (E, 128, out)
    # given transposed, a row's consecutive entries are not a group of 32 sharing a scale
    assert (refs[base].bits, refs[base].quant_block) == (4, None)
    np.testing.assert_array_equal(refs[base].load(), want.transpose(0, 2, 1))  # powers of two times FP4: exact
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert [rows[f"{base}[{e}]"].kind for e in range(E)] == ["stack"] * E
    assert all(rows[f"{base}[{e}]"].status == "ok" for e in range(E))
    update = rng.standard_normal((E, 128, out)).astype(np.float32) * 0.1
    tuned = _save(tmp_path / "tuned.safetensors", {base: want.transpose(0, 2, 1) + update})
    deltas = {r.name: r for r in htsr.analyze(tuned, base=path, min_evals=5).layers}
    assert all(not deltas[f"{base}[{e}]"].status.startswith("skipped") for e in range(E)), deltas


def test_codes_of_formats_htsr_does_not_dequantize_get_a_row_that_names_the_format():
    """EXL2 ``q_weight``, AQLM ``codes`` without codebooks and an HQQ ``W_q`` without its scale, zero and
    meta are a layer's integer codes: a skipped row naming the format, never a silent drop; so is a corrupt 1-D GPTQ qweight (a reader's skipped row is shown
    whatever its shape); an integer buffer (position ids, a 2-D ``codes`` of another model) is still no layer."""
    rng = np.random.default_rng(21)
    state = {"m.q_proj.q_weight": rng.integers(0, 2**31, (16, 64)).astype(np.int32),
             "m.q_proj.q_scale": rng.integers(0, 2**31, (4, 8)).astype(np.int32),
             "h.W_q": rng.integers(0, 256, (64, 64)).astype(np.uint8),
             "a.codes": rng.integers(0, 2**15, (64, 8, 1)).astype(np.int16),
             "e.position_ids": np.arange(64).reshape(1, 64),
             "vq.codes": rng.integers(0, 512, (64, 32)),  # a 2-D int64 named codes: a buffer (not AQLM's 3-D codes)
             "x.weight": rng.integers(0, 2**31, (40, 32)).astype(np.uint32),  # MLX mxfp4: scales, no biases
             "x.scales": rng.integers(0, 256, (40, 8)).astype(np.uint8),
             "g.qweight": rng.integers(0, 2**31, 512).astype(np.int32),  # 1-D: corrupt, a row all the same
             "g.scales": np.ones((4, 16), np.float16),
             "ok.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=5).layers}
    assert set(rows) == {"m.q_proj.q_weight", "h.W_q", "a.codes", "g", "x", "ok"} and rows["ok"] == "ok"
    assert rows["x"].startswith("skipped: uint32 codes with scales but no biases (an MLX mxfp4")
    assert rows["g"].startswith("skipped: packed quantized weight: qweight [512]")
    assert {r.name for r in htsr.analyze(state, min_evals=5, kinds=["dense"]).layers} == {
        "g", "h.W_q", "m.q_proj.q_weight", "x", "ok"}  # a.codes is 3-D (AQLM codebooks): not dense
    with pytest.raises(htsr.SourceError, match="matches the filters"):  # the 1-D row is filtered out too
        htsr.analyze({k: v for k, v in state.items() if k.startswith("g.")}, kinds=["conv2d"])
    assert rows["m.q_proj.q_weight"].startswith("skipped: int32 codes of an EXL2 (exllamav2) quantized layer, a "
                                                "format htsr does not dequantize")
    assert rows["a.codes"].startswith("skipped: int16 codes of an AQLM quantized layer without the codebooks")
    assert rows["h.W_q"].startswith("skipped: uint8 codes of an HQQ quantized layer without the scale, zero")


def test_fractional_g_idx_fails_and_a_bad_mxfp4_row_is_the_weight_s(tmp_path):
    """A float g_idx with fractions is no group numbering (it was truncated without a word): the layer
    fails naming it; MXFP4 blocks whose scales do not fit get the row of the expert stack they would give
    (kind stack, [E, out, groups·32]; one row for the tensor, which no expert can be read from), not a
    'conv2d' row of the blocks; a stack of one-row experts [2, 1, 128] too, whose shape alone would make it a
    conv1d kernel (only stacks of many rows had been tried)."""
    rng = np.random.default_rng(22)
    codes, zeros, scales, g_idx, _ = _quantized(rng, 128, 64, 4, 2)
    state = {"a.qweight": _pack_words(codes, 4, 0), "a.qzeros": _pack_words(zeros - 1, 4, 1), "a.scales": scales,
             "a.g_idx": g_idx.astype(np.float32) + 0.5,
             "e.gate_up_proj_blocks": rng.integers(0, 256, (2, 8, 4, 16)).astype(np.uint8),
             "e.gate_up_proj_scales": rng.integers(120, 130, (2, 8, 3)).astype(np.uint8),
             "f.down_proj_blocks": rng.integers(0, 256, (2, 1, 4, 16)).astype(np.uint8),
             "f.down_proj_scales": rng.integers(120, 130, (2, 1, 3)).astype(np.uint8)}
    rows = {r.name: r for r in htsr.analyze(state, min_evals=5).layers}
    assert (rows["f.down_proj"].kind, rows["f.down_proj"].shape) == ("stack", "2x1x128")
    assert rows["a"].status.startswith("failed: a (GPTQ 4-bit): g_idx holds non-integer values")
    assert {n: (r.kind, r.shape) for n, r in rows.items() if n.startswith("e.")} == {
        "e.gate_up_proj": ("stack", "2x8x128")}
    assert all(r.status.startswith("skipped: MXFP4 blocks [2, 8, 4, 16] with scales [2, 8, 3]")
               for n, r in rows.items() if n.startswith("e."))


def test_padded_odd_width_compressed_tensors_layers_read_by_their_config(tmp_path):
    """3-bit layers packed as compressed-tensors did before its dense packing (10 codes a word, 2 bits
    spare; written and decompressed by compressed-tensors 0.9.4) are read as such because config.json says
    3 bits; without the config their 13 words a row fit no width and the layers get skipped rows."""
    folder = Path(__file__).parent / "data" / "compressed_tensors_padded"
    # bfloat16 results against float32: half a bfloat16 ulp below 0.25 (as above)
    _matches_stored_reference(folder, "decompressed.npz", (24, 128), atol=4.9e-4)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    rows = htsr.analyze(tmp_path / "m", min_evals=5).layers
    assert len(rows) == 2 and all(r.status.startswith("skipped: packed quantized weight: weight_packed [24, 13]")
                                  for r in rows)


def _ct_layer(folder: Path, seed: int, out: int, n_in: int, bits: int) -> np.ndarray:
    """A symmetric per-row compressed-tensors layer ``l`` of ``bits`` (4 or 8) in ``folder``/model.safetensors,
    packed as the library packs (signed codes + 2^(bits−1), lowest bits first); its weight."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (out, n_in))
    words = _pack_words(q + (1 << (bits - 1)), bits, axis=1)
    scale = rng.uniform(0.01, 0.02, (out, 1)).astype(np.float32)
    folder.mkdir()
    _save(folder / "model.safetensors", {"l.weight_packed": words, "l.weight_scale": scale,
                                         "l.weight_shape": np.array([out, n_in], np.int32)})
    return (q * scale).astype(np.float32)


def test_a_narrow_compressed_tensors_layer_takes_its_bits_from_the_config(tmp_path):
    """16 inputs at 4 bits are 2 words a row, as at 3 bits: without the config the layer gets a skipped
    row (never a guess); config.json's config_groups.*.weights.num_bits settles it."""
    folder = tmp_path / "m"
    want = _ct_layer(folder, 23, 40, 16, 4)
    (row,) = htsr.analyze(folder, min_evals=5).layers
    assert row.status.startswith("skipped: packed quantized weight: weight_packed [40, 2] holds codes of 2 bit widths")
    (folder / "config.json").write_text(json.dumps({"quantization_config": {
        "quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}}))
    np.testing.assert_array_equal({r.name: r for r in open_source(folder)}["l.weight"].load(), want)


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_gptq_bits_without_g_idx_or_config_come_from_the_zero_points(tmp_path, bits):
    """No g_idx and no config: the qzeros, packed at the same bits along the outputs, say the width (a
    2-, 3- or 8-bit layer was read as 4-bit, or skipped); a g_idx of all −1 (the placeholder) is the
    consecutive order."""
    rng = np.random.default_rng(24 + bits)
    codes, zeros, scales, _, want = _quantized(rng, 256, 96, bits, 4)
    parts = {"l.qweight": _pack_words(codes, bits, 0), "l.qzeros": _pack_words(zeros - 1, bits, 1), "l.scales": scales}
    ref = {r.name: r for r in open_source(_save(tmp_path / "a.safetensors", parts))}["l.weight"]
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=0)  # the same float32 arithmetic
    placeholder = {**parts, "l.g_idx": np.full(256, -1, np.int32)}
    ref = {r.name: r for r in open_source(_save(tmp_path / "b.safetensors", placeholder))}["l.weight"]
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=0)


def test_gptq_widths_the_shapes_cannot_tell_apart_are_not_guessed(tmp_path):
    """4 outputs: one qzeros word holds the zero points at 2, 3, 4 or 8 bits alike, so without g_idx or a
    config the width is unknown (it was read as 8-bit, half the inputs): a skipped row; quantize_config.json
    settles it."""
    rng = np.random.default_rng(26)
    codes, zeros, scales, _, want = _quantized(rng, 128, 4, 4, 2)
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {"l.qweight": _pack_words(codes, 4, 0), "l.scales": scales,
                                         "l.qzeros": np.array([[int("".join(f"{v - 1:x}" for v in z[::-1]), 16)]
                                                               for z in zeros], np.int32)})
    (row,) = htsr.analyze(folder, min_evals=2).layers
    assert row.status.startswith("skipped: packed quantized weight: GPTQ qweight [16, 4]") and "bit widths" in row.status
    (folder / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 64}))
    # (code − zero)·scale rounded once to float32 by both: equal
    np.testing.assert_allclose({r.name: r for r in open_source(folder)}["l.weight"].load(), want, rtol=1e-6, atol=0)


def test_compressed_tensors_groups_of_several_widths_give_no_model_wide_bits(tmp_path):
    """config_groups at 7 and 8 bits: no single width is the model's, so a dense 8-bit layer is not taken
    for a padded 7-bit one (it was, reading the first group's bits)."""
    folder = tmp_path / "m"
    want = _ct_layer(folder, 27, 24, 32, 8)
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"config_groups": {
        "group_0": {"weights": {"num_bits": 7}}, "group_1": {"weights": {"num_bits": 8}}}}}))
    np.testing.assert_array_equal({r.name: r for r in open_source(folder)}["l.weight"].load(), want)


@pytest.mark.parametrize("version", ["0.17.0", "0.18.0"])
def test_compressed_tensors_version_tells_padded_from_dense_packing(tmp_path, version):
    """3 bits, 100 inputs: padded packing (10 codes a word, compressed-tensors < 0.18) and the dense bit
    stream (≥ 0.18) both take 10 words a row; the config's "version" says which the file holds."""
    rng = np.random.default_rng(28)
    q = rng.integers(-4, 4, (8, 100))
    u = (q + 4).astype(np.uint64)
    if version == "0.17.0":  # word j holds codes 10j … 10j + 9, 3 bits each from bit 0
        words = np.zeros((8, 10), np.uint64)
        for i in range(100):
            words[:, i // 10] |= u[:, i] << np.uint64(3 * (i % 10))
    else:  # each row one stream of 300 bits, lowest first, cut into 32-bit words
        streams = [sum(int(u[r, i]) << (3 * i) for i in range(100)) for r in range(8)]
        words = np.array([[(x >> (32 * j)) & 0xFFFFFFFF for j in range(10)] for x in streams], np.uint64)
    scale = rng.uniform(0.01, 0.02, (8, 1)).astype(np.float32)
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {"l.weight_packed": words.astype(np.uint32).view(np.int32),
                                         "l.weight_scale": scale, "l.weight_shape": np.array([8, 100], np.int32)})
    (folder / "config.json").write_text(json.dumps({"quantization_config": {
        "version": version, "config_groups": {"group_0": {"weights": {"num_bits": 3}}}}}))
    np.testing.assert_array_equal({r.name: r for r in open_source(folder)}["l.weight"].load(),
                                  (q * scale).astype(np.float32))


def test_asymmetric_int8_weights_subtract_their_zero_point(tmp_path):
    """compressed-tensors int8 with weight_zero_point (asymmetric): W = (q − z)·s per output row. The zero
    point was listed as an 'integer buffer' and W read as q·s (0.88 relative error in the singular values,
    status ok); it is a part of the weight now, not a row or a buffer of its own."""
    rng = np.random.default_rng(3)
    q = rng.integers(-128, 128, size=(96, 64)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, size=(96, 1)).astype(np.float32)
    z = rng.integers(-20, 20, size=(96, 1)).astype(np.int8)
    path = _save(tmp_path / "asym.safetensors", {"l.weight": q, "l.weight_scale": s, "l.weight_zero_point": z})
    (ref,) = open_source(path)
    assert (ref.name, ref.dtype, ref.bits) == ("l.weight", "float32", 8)  # (8-bit codes: a delta's noise floor)
    np.testing.assert_array_equal(ref.load(), (q.astype(np.float32) - z) * s)
    r = htsr.analyze(path, min_evals=2)
    assert [x.name for x in r.layers] == ["l"] and not r.not_analysed  # (the zero point is part of the weight)


def test_fp8_expert_stacks_take_each_experts_scales(tmp_path):
    """transformers' FP8 experts (experts.gate_up_proj [E, out, in] in e4m3 beside experts.gate_up_proj_scale_inv
    [E, ⌈out/128⌉, ⌈in/128⌉]) and per-expert per-row scales ([E, out, 1]): each expert dequantized with its own
    scales. Before, the raw e4m3 codes were analysed and the scale grids were layers of their own (or every
    expert row failed: 'scale shape (4, 3, 2) fits no scale layout')."""
    rng = np.random.default_rng(4)
    E, out, n_in = 3, 300, 200
    W = rng.standard_normal((E, out, n_in)).astype(np.float32) * 0.02
    qs, ss = zip(*(_fp8_blocks(W[e]) for e in range(E)))
    q, s = np.stack(qs), np.stack(ss)  # s: [3, 3, 2]
    rows_s = (np.abs(W).max(axis=2, keepdims=True) / 448.0).astype(np.float32)  # [E, out, 1]
    q_rows = (W / rows_s).astype(ml_dtypes.float8_e4m3fn)
    path = _save(tmp_path / "experts.safetensors", {
        "mlp.experts.gate_up_proj": q, "mlp.experts.gate_up_proj_scale_inv": s,
        "moe.experts.w2.weight": q_rows, "moe.experts.w2.weight_scale": rows_s})
    refs = {r.name: r for r in open_source(path)}
    assert list(refs) == ["mlp.experts.gate_up_proj", "moe.experts.w2.weight"]
    got = refs["mlp.experts.gate_up_proj"].load()
    for e in range(E):
        blocks = np.repeat(np.repeat(s[e], 128, axis=0), 128, axis=1)[:out, :n_in]
        np.testing.assert_array_equal(got[e], q[e].astype(np.float32) * blocks)
    np.testing.assert_array_equal(refs["moe.experts.w2.weight"].load(), q_rows.astype(np.float32) * rows_s)
    names = [r.name for r in htsr.analyze(path).layers]
    assert names == [f"mlp.experts.gate_up_proj[{e}]" for e in range(E)] + [f"moe.experts.w2[{e}]" for e in range(E)]


def test_packed_fp4_in_uint8_with_a_block_scale_is_not_read_as_codes_times_scale(tmp_path):
    """ModelOpt NVFP4 / Quark MXFP4: uint8 [out, in/2] (two 4-bit floats a byte) beside a block scale
    [out, in/16]: the bytes times the scale were analysed (256×256 for a 256×512 weight, status ok). Now a
    skipped row says what it is; the scale is no layer."""
    rng = np.random.default_rng(5)
    packed = rng.integers(0, 256, size=(256, 256)).astype(np.uint8)
    scale = rng.uniform(0.01, 0.1, size=(256, 32)).astype(ml_dtypes.float8_e4m3fn)
    path = _save(tmp_path / "nvfp4.safetensors", {"mlp.down_proj.weight": packed,
                                                  "mlp.down_proj.weight_scale": scale.view(np.uint8).view(
                                                      ml_dtypes.float8_e4m3fn)})
    (row,) = htsr.analyze(path).layers
    assert row.name == "mlp.down_proj" and row.status.startswith("skipped: uint8 codes beside mlp.down_proj.weight_scale")


def test_a_scale_whose_weight_is_in_another_file_is_no_layer(tmp_path):
    """One shard of a DeepSeek-V3-style FP8 model holds a weight_scale_inv whose weight is in the next: it was
    analysed as a 144×56 dense layer (alpha 2.45, in the means); now it is listed as not analysed. And a
    mixture's shared experts are dense layers, not embeddings (the 'shared' of T5's table)."""
    rng = np.random.default_rng(6)
    path = _save(tmp_path / "shard.safetensors", {
        "model.layers.1.mlp.down_proj.weight_scale_inv": rng.uniform(size=(144, 56)).astype(np.float32),
        "model.layers.1.mlp.shared_expert.gate_proj.weight": rng.standard_normal((96, 64)).astype(np.float32)})
    r = htsr.analyze(path, min_evals=2)
    assert [(x.name, x.kind) for x in r.layers] == [("model.layers.1.mlp.shared_expert.gate_proj", "dense")]
    assert [n.reason for n in r.not_analysed] == ["quantization scale without its weight (in another file?)"]


def test_a_bitsandbytes_block_size_from_the_file_costs_memory_by_the_weight_not_by_itself():
    """A quant state whose nested block size is 2e9 (one nested scale covering every absmax, as the sizes allow):
    the scales had been repeated 2e9 times (7.9 GB for a 4 kB file); spread by index, the weight is the same."""
    import resource

    W = np.random.default_rng(12).standard_normal((256, 512)).astype(np.float32)
    parts, want = _bnb4_state(W, nested=True)
    state = json.loads(bytes(parts["weight.quant_state.bitsandbytes__nf4"]))
    state["nested_blocksize"] = 2_000_000_000  # 2048 absmax codes in one nested block: one scale
    parts["weight.nested_absmax"] = parts["weight.nested_absmax"][:1]
    parts["weight.quant_state.bitsandbytes__nf4"] = np.frombuffer(json.dumps(state).encode(), np.uint8).copy()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w = {r.name: r for r in open_source({f"fc.{k}": v for k, v in parts.items()})}["fc.weight"].load()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KB (it had been ~8 GB)
    assert w.shape == (256, 512) and np.isfinite(w).all()


@pytest.mark.parametrize("scale_shape, row_block", [((256, 4), 1), ((4, 4), 64), ((2, 4), 128)])
def test_int8_scales_on_blocks_of_other_rows_than_columns_dequantize_as_numpy_repeats_them(tmp_path, scale_shape,
                                                                                           row_block):
    """Scale grids whose blocks are not square: per row in groups of 128 columns ([out, in/128], compressed-tensors'
    'group'), 64 rows × 128 columns, and 128 × 128 on a non-square weight: each code times its block's scale, as
    numpy's repeat of the grid lays it out (the block tests had only square grids on square weights)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (256, 512)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, scale_shape).astype(np.float32)
    save_file({"l.weight": q, "l.weight_scale": s}, str(tmp_path / "m.safetensors"))
    (t,) = [t for t in open_source(tmp_path / "m.safetensors")]
    want = q.astype(np.float32) * np.repeat(np.repeat(s, row_block, 0), 128, 1)
    np.testing.assert_array_equal(t.load(), want)  # (one float32 product per entry, as numpy's)


def test_a_quantized_deltas_resolution_is_its_blocks_rounding_in_closed_form(tmp_path):
    """The rounding a quantized model's delta holds, blocks as the format defines them, each entry's error of
    variance Δ²/12 for its block's step Δ — known here from the construction: int8 absmax per row, Δ = absmax/127
    (the row's range over 255 had read it 11-30 % small), one scale per row (rows of 1024 values, not 64: the floor
    had moved 1.4×); 4-bit GPTQ in 4 groups of 128 with zero points, Δ its group's scale (not whole rows: 1.8×) —,
    as the matrix's edge (conftest.rounding_noise_rms): the rows' scales differ 100-fold here."""
    from safetensors.numpy import save_file

    from htsr.io.delta import DeltaSource

    def resolution(model: dict, base: dict) -> float:
        save_file(model, str(tmp_path / "m.safetensors"))
        save_file(base, str(tmp_path / "b.safetensors"))
        (t,) = [t for t in DeltaSource(open_source(tmp_path / "m.safetensors"), open_source(tmp_path / "b.safetensors"))
                if t.name.endswith("weight")]
        t.load()
        return t.resolution()

    rng = np.random.default_rng(1)
    W0 = (rng.standard_normal((64, 1024)) * np.geomspace(0.01, 1, 64)[:, None]).astype(np.float32)
    W = W0 + (0.0025 * rng.standard_normal((64, 8)) @ rng.standard_normal((8, 1024))).astype(np.float32)
    scb = np.abs(W).max(1)
    q = np.round(W / scb[:, None] * 127).astype(np.int8)
    got = resolution({"l.weight": q, "l.weight_scale": (scb / 127).astype(np.float32)}, {"l.weight": W0})
    step = (scb / 127).astype(np.float32).astype(np.float64)  # (the stored scale: the grid's step)
    # 1e-6: htsr finds the step from the float32 dequantized values (their absmax over 127)
    assert got == pytest.approx(rounding_noise_rms(np.repeat(step[:, None] ** 2 / 12, 1024, axis=1)), rel=1e-6)
    rng = np.random.default_rng(3)
    codes, zeros, scales, _, want = _quantized(rng, 512, 64, 4, 4, False)
    got = resolution({"fc.qweight": _pack_words(codes, 4, 0), "fc.qzeros": _pack_words(zeros - 1, 4, 1),
                      "fc.scales": scales}, {"fc.weight": (want + 0.01 * rng.standard_normal(want.shape)).astype(np.float32)})
    var = (scales.astype(np.float64)[np.arange(512) // 128] ** 2 / 12).T  # [out, in]: each group's scale, Δ
    assert got == pytest.approx(rounding_noise_rms(var), rel=1e-6)  # (its range over 15, from float32 values)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_a_symmetric_gptq_layer_saved_without_qzeros_is_centred_on_the_midpoint(tmp_path, bits):
    """GPTQ with sym=True may leave qzeros out (the zero point is then implied): every zero is the code range's
    midpoint 2^(bits − 1), as AutoGPTQ's symmetric quantizer sets it (maxq + 1) / 2, so W = scale·(q − 2^(bits−1))."""
    rng = np.random.default_rng(40 + bits)
    n_in, out, groups = 256, 96, 2
    codes = rng.integers(0, 1 << bits, (n_in, out))
    scales = rng.uniform(0.001, 0.02, (groups, out)).astype(np.float16)
    g = np.arange(n_in) // (n_in // groups)
    want = ((codes - (1 << (bits - 1))) * scales.astype(np.float32)[g]).astype(np.float32).T
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {"l.qweight": _pack_words(codes, bits, 0), "l.scales": scales})
    (folder / "config.json").write_text(json.dumps(
        {"quantization_config": {"quant_method": "gptq", "bits": bits, "sym": True}}))
    (ref,) = open_source(folder)
    assert (ref.name, ref.shape, ref.bits) == ("l.weight", (out, n_in), bits)
    # (code − midpoint)·scale rounded once to float32 by both: equal (rtol: margin only)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("bits", [4, 8])
def test_an_mlx_config_without_group_size_means_groups_of_64(tmp_path, bits):
    """config.json's "quantization" with bits only: the group size is mlx.nn.quantize's default, 64 (256 inputs
    in 4 groups); the layer is unpacked with it, not skipped or read in groups of 32."""
    rng = np.random.default_rng(44 + bits)
    parts, want = _mlx_layer(rng, 96, 256, bits, 64)
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {f"q.{k}": a for k, a in parts.items()})
    (folder / "config.json").write_text(json.dumps({"quantization": {"bits": bits}}))
    (ref,) = open_source(folder)
    assert (ref.name, ref.shape, ref.bits, ref.quant_block) == ("q.weight", (96, 256), bits, 64)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=1e-7)  # float32 multiply-add vs product + sum


# round 14 of mutation testing (io/scales.py): survivors' known answers

def test_a_grid_of_256_row_blocks_is_not_read_as_128_row_blocks(tmp_path):
    """300 rows in 2 row blocks are blocks of 256 (128-row blocks would need 3): ⌈300/128⌉ = 3 ≠ 2 (S01: ⌊300/128⌋
    = 2 picked 128 and indexed a third block row that does not exist)."""
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(300, 512)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, size=(2, 2)).astype(np.float32)
    path = _save(tmp_path / "b.safetensors", {"l.weight": q, "l.weight_scale": s})
    (ref,) = open_source(path)
    expected = q.astype(np.float32) * s[np.arange(300) // 256][:, np.arange(512) // 256]
    np.testing.assert_array_equal(ref.load(), expected)


def test_asymmetric_uint8_weights_subtract_their_zero_point(tmp_path):
    """A uint8 weight beside a scale AND a zero point is asymmetric 8-bit codes, W = (q − z)·s (S26: every uint8
    weight with a scale was taken for packed FP4 and skipped); without the zero point it is FP4 (skipped)."""
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, size=(96, 64)).astype(np.uint8)
    s = rng.uniform(0.001, 0.01, size=(96, 1)).astype(np.float32)
    z = rng.integers(100, 156, size=(96, 1)).astype(np.uint8)
    path = _save(tmp_path / "u8.safetensors", {"l.weight": q, "l.weight_scale": s, "l.weight_zero_point": z})
    (ref,) = open_source(path)
    assert (ref.name, ref.dtype, ref.bits) == ("l.weight", "float32", 8)
    np.testing.assert_array_equal(ref.load(), (q.astype(np.float32) - z) * s)
    r = htsr.analyze(path, min_evals=2)
    assert [(x.name, x.status) for x in r.layers] == [("l", "ok")]


# round 37 of mutation testing (io/scales.py, second pass): known answers for what no test had pinned

@pytest.mark.parametrize("fp8", ["float8_e4m3fn", "float8_e5m2"])
def test_both_ocp_fp8_formats_are_paired_with_their_per_row_scale(tmp_path, fp8):
    """An E5M2 weight beside its weight_scale is codes × scale like an E4M3 one, its FP8 dtype kept (only the
    AMD fnuz variants of e5m2 had been tested: a plain e5m2 weight read raw would go unseen)."""
    rng = np.random.default_rng(30)
    q = (rng.standard_normal((64, 48)) * 8).astype(getattr(ml_dtypes, fp8))
    s = rng.uniform(0.001, 0.01, (64, 1)).astype(np.float32)
    refs = {r.name: r for r in open_source(_save(tmp_path / "m.safetensors", {"l.weight": q, "l.weight_scale": s}))}
    assert list(refs) == ["l.weight"] and refs["l.weight"].dtype == fp8
    np.testing.assert_array_equal(refs["l.weight"].load(), q.astype(np.float32) * s)  # one float32 product each


def test_fp8_expert_stacks_with_a_scale_rather_than_an_inverse_scale_are_paired(tmp_path):
    """transformers' FP8 experts may store ``<param>_scale`` (not ``_scale_inv``) beside a fused expert parameter:
    each expert's codes times its own block scales, the scale no layer (only ``_scale_inv`` had been tested)."""
    rng = np.random.default_rng(31)
    q = (rng.standard_normal((2, 256, 128)) * 20).astype(ml_dtypes.float8_e4m3fn)
    s = rng.uniform(0.001, 0.01, (2, 2, 1)).astype(np.float32)  # [E, ⌈256/128⌉, ⌈128/128⌉]
    path = _save(tmp_path / "e.safetensors", {"mlp.experts.down_proj": q, "mlp.experts.down_proj_scale": s})
    refs = {r.name: r for r in open_source(path)}
    assert list(refs) == ["mlp.experts.down_proj"]
    want = q.astype(np.float32) * np.repeat(s, 128, axis=1)  # rows 0-127 take block row 0, 128-255 row 1
    np.testing.assert_array_equal(refs["mlp.experts.down_proj"].load(), want)


def test_a_one_dimensional_fp8_tensor_is_not_taken_for_a_weight_missing_its_scale(tmp_path):
    """With config.json saying the FP8 weights are scaled, a 2-D e4m3 weight without its scale gets a skipped row,
    but a 1-D e4m3 tensor (a norm's weight: no matrix, no scale expected) still loads as stored."""
    folder = tmp_path / "m"
    folder.mkdir()
    norm = np.linspace(-2, 2, 64).astype(ml_dtypes.float8_e4m3fn)
    _save(folder / "model.safetensors", {"n.weight": norm, "up.weight": np.ones((64, 64), ml_dtypes.float8_e4m3fn)})
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "fp8"}}))
    refs = {r.name: r for r in open_source(folder)}
    np.testing.assert_array_equal(np.asarray(refs["n.weight"].load(), np.float32), norm.astype(np.float32))
    with pytest.raises(htsr.errors.LayerSkipped, match="float8_e4m3fn weight without its scale"):
        refs["up.weight"].load()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_an_mlx_model_wide_group_size_other_than_64_is_read_from_config_json(tmp_path, encoding):
    """config.json's model-wide ``quantization`` group size 32 (not MLX's default 64) unpacks a 4-bit layer of
    256 inputs in 8 groups, whether the file was saved with a UTF-8 byte-order mark or not (the group sizes
    tested had been the default 64 or a per-layer entry)."""
    rng = np.random.default_rng(32)
    parts, want = _mlx_layer(rng, 40, 256, 4, 32)
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {f"q.{k}": a for k, a in parts.items()})
    (folder / "config.json").write_text(json.dumps({"quantization": {"bits": 4, "group_size": 32}}),
                                        encoding=encoding)
    (ref,) = open_source(folder)
    assert (ref.shape, ref.bits, ref.quant_block) == ((40, 256), 4, 32)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=1e-7)  # float32 multiply-add vs product + sum


@pytest.mark.parametrize("text", ["{not json", "", "[4, 128]", "[" * 100_000])
def test_a_config_json_that_is_no_json_object_is_passed_over_for_quantize_config_json(tmp_path, text):
    """A config.json that is not JSON, or is JSON but no object, says nothing about quantization: the folder's
    quantize_config.json still gives the bits of a GPTQ layer whose shapes fit several widths (the reader must
    neither fail on it nor stop looking). JSON nested 100 000 deep makes json.loads raise RecursionError, not a
    ValueError: it too is passed over (no test had nested one)."""
    rng = np.random.default_rng(26)
    codes, zeros, scales, _, want = _quantized(rng, 128, 4, 4, 2)  # 4 outputs: widths 2, 3, 4, 8 all fit
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {"l.qweight": _pack_words(codes, 4, 0), "l.scales": scales,
                                         "l.qzeros": np.array([[int("".join(f"{v - 1:x}" for v in z[::-1]), 16)]
                                                               for z in zeros], np.int32)})
    (folder / "config.json").write_text(text)
    (folder / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 64}))
    # (code − zero)·scale rounded once to float32 by both: equal
    np.testing.assert_allclose({r.name: r for r in open_source(folder)}["l.weight"].load(), want, rtol=1e-6, atol=0)


def test_compressed_tensors_config_groups_that_disagree_leave_bits_and_symmetry_unsaid(tmp_path):
    """Groups at 3 and 4 bits, one symmetric and one not: no model-wide width or symmetry. A 4-bit symmetric
    layer of 32 inputs (4 words a row, also the count of 3-bit codes ten to a word) is read as the 4-bit stream
    its row fits, not as a padded 3-bit one, and without a zero point, as symmetric (only 7 and 8 bits had been
    tested, where taking either group's width happened to give 8)."""
    folder = tmp_path / "m"
    want = _ct_layer(folder, 33, 24, 32, 4)
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"config_groups": {
        "group_0": {"weights": {"num_bits": 3, "symmetric": True}},
        "group_1": {"weights": {"num_bits": 4, "symmetric": False}}}}}))
    np.testing.assert_array_equal({r.name: r for r in open_source(folder)}["l.weight"].load(), want)


@pytest.mark.parametrize("q, want", [
    # a JSON flag is no width nor group size (bool is an int subclass: true had read as 1 bit)
    ({"bits": True, "group_size": False}, dict(bits=None, group_size=None)),
    # an explicit model-wide bits is kept over the config groups' num_bits
    ({"bits": 4, "config_groups": {"g": {"weights": {"num_bits": 8}}}}, dict(bits=4)),
    # a block_structure left on a group that is not of the block strategy describes no blocks
    ({"config_groups": {"g": {"weights": {"num_bits": 4, "strategy": "group", "block_structure": [128, 128]}}}},
     dict(bits=4, ct_block=None)),
    ({"config_groups": {"g": {"weights": {"num_bits": 4, "strategy": "block", "block_structure": [128, 64]}}}},
     dict(bits=4, ct_block=(128, 64))),
])
def test_packed_config_reads_each_field_only_from_what_means_it(tmp_path, q, want):
    """PackedConfig.of_folder takes an integer bits / group_size only (not a JSON true / false), keeps an explicit
    bits over the config groups', and a block_structure only from a group whose strategy is "block" (these
    fields had been read only through layers whose configs were well formed)."""
    from htsr.io.scales import PackedConfig

    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": q}))
    cfg = PackedConfig.of_folder(tmp_path)
    assert cfg.found and {k: getattr(cfg, k) for k in want} == want


def test_a_compressed_tensors_block_structure_with_a_zero_size_is_no_block_structure(tmp_path):
    """config.json's block_structure [0, 64] describes no blocks: it is ignored and a per-row layer is read from
    its scale's shape (a zero block size would divide by zero and fail the layer)."""
    folder = tmp_path / "m"
    want = _ct_layer(folder, 34, 24, 64, 8)
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"config_groups": {"group_0": {
        "weights": {"num_bits": 8, "strategy": "block", "block_structure": [0, 64]}}}}}))
    np.testing.assert_array_equal({r.name: r for r in open_source(folder)}["l.weight"].load(), want)


def test_gptq_and_awq_layers_whose_groups_or_zero_points_do_not_fit_get_a_skipped_row(tmp_path):
    """A GPTQ layer of 128 inputs (4 bits, quantize_config.json) with 3 groups, an AWQ qweight of 100 inputs in
    3 groups, and AWQ qzeros one word too wide: skipped rows naming the shapes, never groups made up or zero
    points from a slice (the second had failed with an IndexError, the third been read from 40 zero points)."""
    rng = np.random.default_rng(35)
    words = lambda *shape: rng.integers(0, 2**31, shape).astype(np.int32)
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {
        "g.qweight": words(16, 32), "g.scales": np.ones((3, 32), np.float16), "g.qzeros": words(3, 4),
        "a.qweight": words(100, 4), "a.scales": np.ones((3, 32), np.float16), "a.qzeros": words(3, 4),
        "z.qweight": words(128, 4), "z.scales": np.ones((2, 32), np.float16), "z.qzeros": words(2, 5)})
    (folder / "quantize_config.json").write_text(json.dumps({"bits": 4}))
    rows = {r.name: r.status for r in htsr.analyze(folder, min_evals=5).layers}
    assert rows["g"] == ("skipped: packed quantized weight: GPTQ qweight [16, 32]: 128 inputs in 3 groups; analyse "
                         "the unquantized model or a dequantized copy")
    for name, q, sc in (("a", [100, 4], [3, 32]), ("z", [128, 4], [2, 32])):
        assert rows[name].startswith(f"skipped: packed quantized weight: qweight {q} with scales {sc} fits neither")


@pytest.mark.parametrize("fault", ["negative", "past the last group", "partly the -1 placeholder"])
def test_a_g_idx_naming_groups_that_do_not_exist_fails_that_layer_by_name(tmp_path, fault):
    """g_idx entries must be groups 0..groups − 1: a negative one (numpy would wrap it to the last group), one
    equal to the group count, and −1 in some entries only (all −1 is the placeholder for consecutive groups)
    fail the layer with a message naming g_idx (only a group far past the last had been tested)."""
    rng = np.random.default_rng(36)
    codes, zeros, scales, g_idx, _ = _quantized(rng, 128, 64, 4, 2)
    g_idx = g_idx.copy()
    g_idx[5] = {"negative": -2, "past the last group": 2, "partly the -1 placeholder": -1}[fault]
    state = {"a.qweight": _pack_words(codes, 4, 0), "a.qzeros": _pack_words(zeros - 1, 4, 1), "a.scales": scales,
             "a.g_idx": g_idx}
    (row,) = htsr.analyze(state, min_evals=5).layers
    assert row.status == "failed: a (GPTQ 4-bit): g_idx must give each of the 128 inputs a group in 0..1"


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_layers_of_more_inputs_than_one_step_take_each_inputs_group(tmp_path, act_order):
    """4096 inputs in 32 groups of 128 are dequantized 2048 inputs at a time: the second step takes its own
    inputs' groups (the tested layers had 256 inputs, one step)."""
    rng = np.random.default_rng(37 + act_order)
    codes, zeros, scales, g_idx, want = _quantized(rng, 4096, 8, 4, 32, act_order)
    state = {"l.qweight": _pack_words(codes, 4, 0), "l.qzeros": _pack_words(zeros - 1, 4, 1), "l.scales": scales,
             "l.g_idx": g_idx}
    (ref,) = open_source(state)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=0)  # (code − zero)·scale rounded once by both


def test_a_packed_layer_beside_a_plain_weight_of_its_name_keeps_the_packed_name(tmp_path):
    """A file holding both ``l.weight`` and a GPTQ layer's ``l.qweight`` parts: the unpacked layer is named
    ``l.qweight`` so that no two tensors share a name; each loads as itself."""
    rng = np.random.default_rng(38)
    codes, zeros, scales, g_idx, want = _quantized(rng, 128, 64, 4, 2)
    plain = rng.standard_normal((64, 128)).astype(np.float32)
    state = {"l.weight": plain, "l.qweight": _pack_words(codes, 4, 0), "l.qzeros": _pack_words(zeros - 1, 4, 1),
             "l.scales": scales, "l.g_idx": g_idx}
    refs = {r.name: r for r in open_source(state)}
    assert sorted(refs) == ["l.qweight", "l.weight"] and refs["l.qweight"].dtype == "float32"
    np.testing.assert_array_equal(refs["l.weight"].load(), plain)
    np.testing.assert_allclose(refs["l.qweight"].load(), want, rtol=1e-6, atol=0)  # (as the GPTQ tests)
    assert sorted(r.name for r in htsr.analyze(state, min_evals=5).layers) == ["l", "l.qweight"]


def test_bitsandbytes_4bit_states_that_do_not_fit_their_parts_get_a_row_that_says_so():
    """A state whose shape holds half the weights its bytes code (the absmax cut to match): failed, naming both
    counts (it was read from the first half of the bytes); no absmax: skipped, naming the parts; a 1-D shape:
    skipped, not a 1-D tensor that would get no row at all."""
    rng = np.random.default_rng(39)
    parts, _ = _bnb4_state(rng.standard_normal((64, 64)).astype(np.float32))
    state = json.loads(bytes(parts["weight.quant_state.bitsandbytes__nf4"]).decode())
    key = "weight.quant_state.bitsandbytes__nf4"
    encode = lambda s: np.frombuffer(json.dumps(s).encode(), np.uint8).copy()
    half = {**parts, "weight.absmax": parts["weight.absmax"][:32], key: encode({**state, "shape": [32, 64]})}
    flat = {**parts, key: encode({**state, "shape": [4096]})}
    model = ({f"h.{k}": v for k, v in half.items()} | {f"n.{k}": v for k, v in parts.items() if k != "weight.absmax"}
             | {f"f.{k}": v for k, v in flat.items()})
    rows = {r.name: r.status for r in htsr.analyze(model, min_evals=5).layers}
    assert rows["h"].startswith("failed: h.weight (bitsandbytes NF4): 2048 bytes of codes for a [32, 64] weight")
    # the state read, its absmax missing: said so (it had been 'quant_state cannot be read', h58)
    assert rows["n"].startswith("skipped: bitsandbytes 4-bit weight without its n.weight.absmax (in another file?)")
    assert rows["f"].startswith("skipped: bitsandbytes 4-bit weight whose quant_state cannot be read (shape [4096]")


def test_an_mlx_layer_of_more_rows_than_one_step_in_8_bit_groups_of_128_without_a_config(tmp_path):
    """2050 rows are dequantized 2048 at a time: every row is filled (the last rows of a step had been left
    uninitialised unseen: the tested layers had at most 300 rows); 8 bits in groups of 128 is the one pair
    that fits 64 words and 2 groups a row, so no config is needed."""
    rng = np.random.default_rng(40)
    parts, want = _mlx_layer(rng, 2050, 256, 8, 128)
    (ref,) = open_source(_save(tmp_path / "m.safetensors", {f"q.{k}": a for k, a in parts.items()}))
    assert (ref.shape, ref.bits, ref.quant_block) == ((2050, 256), 8, 128)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=1e-7)  # float32 multiply-add vs product + sum


def test_an_mlx_3_bit_layer_in_groups_of_32_without_a_config_is_the_one_pair_its_shapes_fit(tmp_path):
    """9 words and 3 groups a row: 3 bits × groups of 32 is the only (bits, group size) pair of MLX's that covers
    them (groups of 32 had been tested only with a config saying so), so it is read without one."""
    rng = np.random.default_rng(49)
    parts, want = _mlx_layer(rng, 40, 96, 3, 32)
    (ref,) = open_source(_save(tmp_path / "m.safetensors", {f"q.{k}": a for k, a in parts.items()}))
    assert (ref.shape, ref.bits, ref.quant_block) == ((40, 96), 3, 32)
    np.testing.assert_allclose(ref.load(), want, rtol=1e-6, atol=1e-7)  # float32 multiply-add vs product + sum


def test_mlx_layers_the_config_or_their_biases_do_not_fit_get_a_skipped_row(tmp_path):
    """An 8-bit layer under a config saying 4 bits in groups of 64 (its words would cover twice the groups), and
    biases of another shape than the scales: skipped rows saying why (both had failed on numpy's broadcast)."""
    rng = np.random.default_rng(41)
    a, _ = _mlx_layer(rng, 96, 256, 8, 64)
    b, _ = _mlx_layer(rng, 96, 256, 4, 64)
    b["biases"] = b["biases"][:, :2]
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {f"{n}.{k}": v for n, p in (("a", a), ("b", b)) for k, v in p.items()})
    (folder / "config.json").write_text(json.dumps({"quantization": {"bits": 4, "group_size": 64}}))
    rows = {r.name: r.status for r in htsr.analyze(folder, min_evals=5).layers}
    assert rows["a"].startswith("skipped: packed quantized weight: MLX weight [96, 64] with scales [96, 4] at 4 bits "
                                "in groups of 64 (the config's)")
    assert rows["b"].startswith("skipped: packed quantized weight: uint32 weight [96, 32] with scales [96, 4] and "
                                "biases [96, 2]: not an MLX quantized layer")


def test_an_mlx_expert_stack_not_named_as_one_is_a_stack(tmp_path):
    """A 3-D MLX layer [E, out, words] is an expert stack whatever its name (here m.blocks, not switch_mlp): one
    row per expert, each expert's weight its own."""
    rng = np.random.default_rng(42)
    layers = [_mlx_layer(rng, 12, 256, 4, 64) for _ in range(3)]
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "model.safetensors", {f"m.blocks.{k}": np.stack([p[k] for p, _ in layers])
                                         for k in ("weight", "scales", "biases")})
    (folder / "config.json").write_text(json.dumps({"quantization": {"bits": 4, "group_size": 64}}))
    (ref,) = open_source(folder)
    assert (ref.shape, ref.kind) == ((3, 12, 256), "stack")
    np.testing.assert_allclose(ref.load(), np.stack([w for _, w in layers]), rtol=1e-6, atol=1e-7)  # (as above)
    rows = htsr.analyze(folder, min_evals=3).layers
    assert [(r.name, r.kind) for r in rows] == [(f"m.blocks[{e}]", "stack") for e in range(3)]


def test_compressed_tensors_layers_of_more_rows_than_one_step_fill_every_row(tmp_path):
    """2050 rows are dequantized 2048 at a time: each step's last row is filled too (the tested layers had at
    most 72 rows)."""
    folder = tmp_path / "m"
    want = _ct_layer(folder, 43, 2050, 32, 8)
    np.testing.assert_array_equal({r.name: r for r in open_source(folder)}["l.weight"].load(), want)


def test_compressed_tensors_parts_that_disagree_with_the_weight_shape_get_a_row_naming_them(tmp_path):
    """A weight_shape of 40 rows for 48 packed rows: a skipped row (the first 40 rows had been read as the
    weight); zero points in 2 groups where the scales have 4: a failed row naming both counts; scales in 5 groups,
    which do not divide 96 inputs: a failed row naming the scale's shape (it had failed only later, on a
    broadcast error that named no layout)."""
    rng = np.random.default_rng(44)
    words = _pack_words(rng.integers(0, 16, (48, 96)), 4, axis=1)  # [48, 12]
    state = {"s.weight_packed": words, "s.weight_scale": np.ones((48, 1), np.float16),
             "s.weight_shape": np.array([40, 96], np.int32),
             "z.weight_packed": words, "z.weight_scale": np.ones((48, 4), np.float16),
             "z.weight_zero_point": np.zeros((48, 2), np.float16), "z.weight_shape": np.array([48, 96], np.int32),
             "g.weight_packed": words, "g.weight_scale": np.ones((48, 5), np.float16),
             "g.weight_shape": np.array([48, 96], np.int32)}
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=5).layers}
    assert rows["g"].startswith("failed: g.weight_scale: shape [48, 5] is none of a [48, 96] weight's")
    assert rows["s"].startswith("skipped: packed quantized weight: weight_packed [48, 12] holds codes of 0 bit widths "
                                "from 1 to 8 for a [40, 96] weight")
    assert rows["z"] == "failed: z.weight_zero_point: 2 zero-point groups for 4 scale groups"


def test_a_two_dimensional_mxfp4_weight_is_given_as_stored(tmp_path):
    """MXFP4 blocks [out, groups, 16] with scales [out, groups] (no expert axis) give the [out, groups · 32] weight
    as it is, not transposed like an expert stack; its groups of 32 consecutive inputs share a scale (only
    expert stacks had been tested)."""
    blocks, exps, want = _mxfp4(np.random.default_rng(45), (40, 4))
    (ref,) = open_source(_save(tmp_path / "m.safetensors", {"lm_head_blocks": blocks, "lm_head_scales": exps}))
    assert (ref.name, ref.shape, ref.bits, ref.quant_block) == ("lm_head", (40, 128), 4, 32)
    np.testing.assert_array_equal(ref.load(), want)  # powers of two times FP4 values: exact


def test_hqq_layers_read_their_meta_defaults_and_refuse_what_does_not_fit():
    """A layer without its axis and channel_wise tensors reads them as HQQ's defaults (axis 1, channel-wise):
    the same weight; a layer without its zero, or whose group size does not divide its weight or is negative:
    skipped rows naming that (the second had failed on too few codes; the third had been unchecked). A 2-bit
    packing of nbits 1.58 (stored as float32, as hqq saves it) gives the weight as before and reports 1.58 bits
    (only whole nbits had been read)."""
    folder = Path(__file__).parent / "data" / "hqq"
    want = np.load(folder / "dequantized.npz")
    state = {r.name: r.load() for r in SafetensorsFile(folder / "model.safetensors").refs() if ".5." not in r.name}
    layer = "model.layers.{}.self_attn.q_proj.{}".format
    del state[layer(0, "axis")], state[layer(0, "channel_wise")]  # layer 0: axis 1, channel-wise
    del state[layer(6, "zero")]
    state[layer(4, "group_size")] = np.array(96, np.int32)  # 64 × 128 = 8192 weights: not whole groups of 96
    state[layer(7, "group_size")] = np.array(-64, np.int32)  # divides 8192, but is no group size
    # HQQ's ternary codes in the 2-bit packing: the same weight. hqq saves a float setting as float32
    # (encode_safetensor_type), so 1.58 reads back as 1.5800000429 (an exact comparison had skipped the layer)
    state[layer(2, "nbits")] = np.array(1.58, np.float32)
    refs = {r.name: r for r in open_source(state)}
    np.testing.assert_allclose(refs[layer(0, "weight")].load(), want[layer(0, "")[:-1]], rtol=1e-6, atol=0)  # (float32)
    # the bits a layer's codes take (a delta's rounding floor) are its nbits, not its packing's width
    assert refs[layer(2, "weight")].bits == 1.58
    np.testing.assert_allclose(refs[layer(2, "weight")].load(), want[layer(2, "")[:-1]], rtol=1e-6, atol=0)
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=5).layers}
    assert rows[layer(6, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (shape [48, 160], group size 64, "
                                              "axis 1, no zero)")
    assert rows[layer(4, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (shape [64, 128], group size 96")
    assert rows[layer(7, "")[:-1]].startswith("skipped: HQQ layer that cannot be read (shape [64, 128], group size -64")


def test_aqlm_codebooks_the_codes_cannot_address_and_scales_of_another_count_fail_the_layer():
    """int8 codes address 256 vectors: a codebook of 512 cannot be what they index (its upper half would never be
    read, the lower read through the sign); one scale for 2 output groups is no scale per group (it had been
    broadcast over both). Both fail the layer naming the counts."""
    rng = np.random.default_rng(46)
    codes = rng.integers(-128, 128, (2, 3, 1)).astype(np.int8)
    state = {"a.codes": codes, "a.codebooks": rng.standard_normal((1, 512, 1, 4)).astype(np.float32),
             "a.scales": np.ones((2, 1, 1, 1), np.float32),
             "b.codes": codes, "b.codebooks": rng.standard_normal((1, 256, 1, 4)).astype(np.float32),
             "b.scales": np.ones((1, 1, 1, 1), np.float32)}
    rows = {r.name: r.status for r in htsr.analyze(state, min_evals=2).layers}
    assert rows["a"].startswith("failed: a.weight (AQLM): codebooks of 512 vectors, not the 2^bits its int8 codes")
    assert rows["b"].startswith("failed: b.weight (AQLM): 1 scales for 2 output groups")


def test_aqlm_codes_beyond_their_codebook_are_read_modulo_its_size():
    """int16 codes address 65 536 vectors; a 12-bit codebook holds 4096, and aqlm's unpack_int_data reads each code
    modulo 2^bits: 5000 is vector 904 and −5000 vector 3192 (only codes within ±size, where a negative index
    happens to wrap alike, had been read)."""
    rng = np.random.default_rng(50)
    codes = np.array([[[5000], [-5000], [7]], [[4095], [-1], [-4096]]], np.int16)  # [2 out, 3 in groups, 1 book]
    books = rng.standard_normal((1, 4096, 1, 4)).astype(np.float32)
    scales = np.array([2.0, 0.5], np.float32).reshape(2, 1, 1, 1)
    (ref,) = open_source({"a.codes": codes, "a.codebooks": books, "a.scales": scales})
    want = books[0, codes[..., 0].astype(np.int64) % 4096, 0, :] * scales.reshape(2, 1, 1)  # [2, 3, 4]
    np.testing.assert_array_equal(ref.load(), want.reshape(2, 12))  # one product per entry, as htsr: equal


def test_a_boolean_tensor_named_weight_is_a_buffer_not_a_layer():
    """A 2-D bool tensor named as a weight (a mask kept beside a layer) is no weight htsr could analyse, nor one
    quantized: no row at all, unlike an integer weight without its scale."""
    rng = np.random.default_rng(47)
    state = {"mask.weight": rng.integers(0, 2, (64, 64)).astype(bool),
             "ok.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    assert [r.name for r in htsr.analyze(state, min_evals=5).layers] == ["ok"]


def test_an_fp8_scale_grid_not_of_the_configs_blocks_fails_its_row(tmp_path):
    """config.json says weight_block_size [128, 128]: a [1536, 384] weight's grid is 12 × 3. Stored transposed
    (3 × 12) or another layer's (3 × 3), the grid had been read as power-of-two blocks that also fit the shape,
    and the row was 'ok' with another alpha (2.019 against 2.478, h58). A failed row naming both tensors; the
    layer with its own grid is read."""
    rng = np.random.default_rng(7)
    W = rng.standard_t(4, (1536, 384)).astype(np.float32)
    q, s = _fp8_blocks(W)
    assert s.shape == (12, 3)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "fp8",
                                                                           "weight_block_size": [128, 128]}}))
    _save(folder / "model.safetensors", {"a.weight": q, "a.weight_scale_inv": s,
                                         "b.weight": q, "b.weight_scale_inv": np.ascontiguousarray(s.T)})
    rows = {r.name: r for r in htsr.analyze(folder).layers}
    assert rows["a"].status == "ok"
    assert rows["b"].status == ("failed: b.weight with b.weight_scale_inv: scale grid (3, 12) is not the [12, 3] "
                                "blocks of [128, 128] (config.json's weight_block_size or block_structure) a "
                                "(1536, 384) weight has; the file may be corrupt, or the scale another layer's")
    # one scale per row laid as a row [1, out] is per row (it had been read as blocks of columns, h60), and a
    # compressed-tensors block model's block_structure checks the grid as weight_block_size does
    Wr = rng.standard_t(4, (256, 1024)).astype(np.float32)
    per_row = (np.abs(Wr).max(axis=1) / 448.0).astype(np.float32)
    qr = (Wr / per_row[:, None]).astype(ml_dtypes.float8_e4m3fn)
    _save(folder / "model.safetensors", {"a.weight": qr, "a.weight_scale_inv": per_row[None, :],
                                         "b.weight": qr, "b.weight_scale_inv": per_row})
    refs = {r.name: r for r in open_source(folder)}
    np.testing.assert_array_equal(refs["a.weight"].load(), refs["b.weight"].load())
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "compressed-tensors",
        "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "block",
                                            "block_structure": [128, 128]}}}}}))
    _save(folder / "model.safetensors", {"a.weight": q, "a.weight_scale": s,
                                         "b.weight": q, "b.weight_scale": np.ascontiguousarray(s.T)})
    rows = {r.name: r for r in htsr.analyze(folder).layers}
    assert rows["a"].status == "ok" and rows["b"].status.startswith("failed: b.weight with b.weight_scale: scale grid")


def test_a_gptq_g_idx_placeholder_keeps_the_groups():
    """A g_idx of all −1 (written before GPTQ fills it in) is read as the consecutive order when dequantizing; its
    blocks had been unknown (h60): groups of 64 along each row, as a sequential g_idx's; act-order's unknown."""
    from htsr.io.base import TensorRef
    from htsr.io.scales import _row_groups

    def ref(g):
        return TensorRef("fc.g_idx", g.shape, "int32", lambda: g)

    assert _row_groups(256, 4, ref(np.full(256, -1, np.int32))) == 64
    assert _row_groups(256, 4, ref(np.arange(256, dtype=np.int32) // 64)) == 64
    assert _row_groups(256, 4, ref(np.random.default_rng(0).permutation(np.arange(256) // 64))) is None
    assert _row_groups(256, 4, None) == 64 and _row_groups(250, 4, None) is None
