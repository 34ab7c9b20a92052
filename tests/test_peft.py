"""PEFT / LoRA adapter folders: adapters written by peft itself, analysed exactly through their factors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

import htsr
from htsr.errors import LayerSkipped, OptionError, SourceError
from htsr.io import open_source
from htsr.results import row_tag
from htsr.spectra import Kronecker, hadamard_lowrank, lowrank_eigenvalues, matrix_eigenvalues
from safetensors.numpy import load_file, save_file
from conftest import one_line_source_error

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(120, 32)
        self.q = nn.Linear(64, 96)
        self.sq = nn.Linear(80, 80)
        self.out = nn.Linear(96, 10)


def _tiny_adapter(d, seed: int):
    """Tiny's base in d/base.safetensors and a peft LoRA adapter on it (random B, so ΔW ≠ 0, with an
    alpha_pattern override for one module) saved to d/adapter; the live PeftModel."""
    torch.manual_seed(seed)
    model = Tiny()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "base.safetensors"))
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q", "sq", "emb"], init_lora_weights=False,
                          alpha_pattern={"sq": 4})
    pm = peft.get_peft_model(model, cfg)
    pm.save_pretrained(str(d / "adapter"))
    return pm


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """_tiny_adapter's folder, with peft's own ΔW and merged weights as references."""
    d = tmp_path_factory.mktemp("peft")
    pm = _tiny_adapter(d, seed=0)
    deltas = {}
    for name, mod in pm.named_modules():
        if type(mod).__name__ in ("Linear", "Embedding") and hasattr(mod, "get_delta_weight"):
            deltas[name.removeprefix("base_model.model.")] = mod.get_delta_weight("default").detach().double().numpy()
    merged = {k: v.detach().clone() for k, v in pm.merge_and_unload().state_dict().items()}
    return d, deltas, merged


def _rows(result):
    return {r.name: (r, s) for r, s in zip(result.layers, result.spectra or [None] * len(result.layers))}


def test_delta_eigenvalues_equal_a_dense_svd_of_peft_delta_weight(adapter):
    d, deltas, _ = adapter
    rows = _rows(htsr.analyze(d / "adapter", keep_spectra=True, min_evals=2))
    assert sorted(rows) == ["emb#delta", "q#delta", "sq#delta"]
    for name, dw in deltas.items():
        row, sp = rows[f"{name}#delta"]
        assert row.kind == "lora" and row.status == "ok" and row.eig_method == "lowrank64"
        ref = np.sort(np.linalg.svd(dw, compute_uv=False) ** 2)
        nonzero = sp.evals[-8:]
        # peft's ΔW is a float32 product; htsr's factors give the float64 singular values of the same
        # float32 factors: they agree to float32 rounding of the product (1e-5), and the other
        # min(out, in) - 8 eigenvalues are exact zeros
        np.testing.assert_allclose(nonzero, ref[-8:], rtol=1e-5)
        assert np.all(sp.evals[:-8] == 0.0) and row.matrix_rank == 8
        assert row.N == max(dw.shape) and row.M == min(dw.shape)


def test_scaling_follows_lora_alpha_r_and_alpha_pattern(adapter):
    d, deltas, _ = adapter
    from htsr.io.peft import PeftAdapter

    a = PeftAdapter(d / "adapter")
    assert a.scaling("q", 8) == 16 / 8 and a.scaling("sq", 8) == 4 / 8 and a.scaling("model.sq", 8) == 0.5
    assert a.scaling("xsq", 8) == 2.0  # a key matches a whole name component, as in peft
    assert a.scaling("sq_out", 8) == 2.0  # ... up to the name's end: 'sq' is no key of module sq_out
    cfg = json.loads((d / "adapter" / "adapter_config.json").read_text())
    cfg["use_rslora"] = True
    rs = d / "rslora"
    rs.mkdir()
    (rs / "adapter_config.json").write_text(json.dumps(cfg))
    (rs / "adapter_model.safetensors").write_bytes((d / "adapter" / "adapter_model.safetensors").read_bytes())
    plain = _rows(htsr.analyze(d / "adapter", min_evals=2))
    rsl = _rows(htsr.analyze(rs, min_evals=2))
    # rsLoRA: scale alpha/sqrt(r) instead of alpha/r, so eigenvalues grow by r = 8 exactly
    assert rsl["q#delta"][0].lambda_max == pytest.approx(8 * plain["q#delta"][0].lambda_max, rel=1e-12)


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleDict({"proj": nn.Linear(24, 24), "up": nn.Linear(24, 32)})
                                     for _ in range(3)])


def test_alpha_pattern_keys_are_regular_expressions_and_the_first_match_wins(tmp_path):
    """peft reads an alpha_pattern key as a regular expression the module name ends with, and takes the first
    key that matches in the saved config's order: every module's scale equals the one peft itself uses
    after loading the folder back (PeftModel.from_pretrained), exactly."""
    torch.manual_seed(0)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["proj", "up"], init_lora_weights=False,
                          alpha_pattern={r"layers\.[01]\.proj": 64, "proj": 2, r"\d\.up": 12})
    peft.get_peft_model(Stack(), cfg).save_pretrained(str(tmp_path))
    loaded = peft.PeftModel.from_pretrained(Stack(), str(tmp_path))
    from htsr.io.peft import PeftAdapter

    a = PeftAdapter(tmp_path)
    scales = {name.removeprefix("base_model.model."): m.scaling["default"] for name, m in loaded.named_modules()
              if hasattr(m, "get_delta_weight") and "default" in getattr(m, "scaling", {})}
    assert len(scales) == 6 and len(set(scales.values())) == 3  # three different scales, keyed both ways
    assert {n: a.scaling(n, 4) for n in scales} == scales
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    cfg["alpha_pattern"] = {"proj(": 3}
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(SourceError, match=r"alpha_pattern key 'proj\(' is not a regular expression"):
        PeftAdapter(tmp_path)
    # a config without lora_alpha: peft's default, LoraConfig's (8), over r
    del cfg["lora_alpha"], cfg["alpha_pattern"]
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    assert PeftAdapter(tmp_path).scaling("layers.0.up", 4) == peft.LoraConfig().lora_alpha / 4 == 2.0


def test_low_ranks_are_listed_not_dropped(adapter):
    d, _, _ = adapter
    r = htsr.analyze(d / "adapter")  # min_evals = 50 > r = 8
    assert [x.name for x in r.layers] == ["emb#delta", "q#delta", "sq#delta"]
    for row in r.layers:
        assert row.status == "not_fitted: rank-8 update has 8 nonzero eigenvalues < min_evals=50"
        assert math.isnan(row.alpha) and math.isfinite(row.log_norm) and math.isfinite(row.stable_rank)


def test_a_rank_r_update_is_fitted_from_min_evals_r(adapter):
    """min_evals is the least count fitted: the rank-8 updates (80 x 80 and 96 x 64) are fitted at min_evals 8,
    not at 9 (the 120 x 32 embedding's too: rank 8)."""
    d, _, _ = adapter
    at = _rows(htsr.analyze(d / "adapter", min_evals=8))
    above = _rows(htsr.analyze(d / "adapter", min_evals=9))
    for m in ("q#delta", "sq#delta", "emb#delta"):
        assert at[m][0].status == "ok" and at[m][0].num_pl_spikes >= 1, m
        assert above[m][0].status == "not_fitted: rank-8 update has 8 nonzero eigenvalues < min_evals=9", m


def test_base_gives_w_and_merged_rows_equal_to_peft_merge(adapter):
    d, _, merged = adapter
    r = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2)
    rows = _rows(r)
    assert sorted(rows) == sorted(f"{m}#{t}" for m in ("emb", "q", "sq") for t in ("delta", "base", "merged"))
    ref = _rows(htsr.analyze(merged, min_evals=2))
    base = _rows(htsr.analyze(d / "base.safetensors", min_evals=2))
    for m in ("emb", "q", "sq"):
        # W rows are the base model's own rows, bit for bit
        assert rows[f"{m}#base"][0].lambda_max == base[m][0].lambda_max
        # W + ΔW equals peft's merge_and_unload up to float32 rounding of the sum (1e-5 relative)
        assert rows[f"{m}#merged"][0].lambda_max == pytest.approx(ref[m][0].lambda_max, rel=1e-5)
        assert rows[f"{m}#merged"][0].log_norm == pytest.approx(ref[m][0].log_norm, rel=1e-5)
        assert rows[f"{m}#merged"][0].kind == ref[m][0].kind


def test_missing_base_tensor_is_skipped_with_a_reason(adapter):
    d, _, merged = adapter
    partial = {k: v for k, v in merged.items() if not k.startswith("sq.")}
    rows = _rows(htsr.analyze(d / "adapter", base=partial, min_evals=2))
    for tag in ("base", "merged"):
        assert rows[f"sq#{tag}"][0].status == "skipped: the base has no tensor sq.weight"
        # (of the update's shape, the module's as the adapter has it: not a made-up 1 x 1)
        assert (rows[f"sq#{tag}"][0].shape, rows[f"sq#{tag}"][0].N) == ("80x80", 80)
    assert rows["q#merged"][0].status == "ok"


def test_a_base_tensor_of_another_shape_is_skipped_with_a_reason(adapter):
    """A base whose sq.weight is not the update's shape (80x80 in Tiny; here 40x20, another layer's) is no
    base of sq: both its #base and #merged rows are skipped with the shapes said, not the foreign tensor
    analysed as sq's W (the #base row) beside a merge that cannot be made."""
    d, _, merged = adapter
    other = {**merged, "sq.weight": torch.randn(40, 20, generator=torch.Generator().manual_seed(1))}
    rows = _rows(htsr.analyze(d / "adapter", base=other, min_evals=2))
    for tag in ("base", "merged"):
        row = rows[f"sq#{tag}"][0]
        assert row.status == ("skipped: the base tensor sq.weight is 40x20, not the update's 80x80: another "
                              "layer's, no base of this one"), (tag, row.status)
        # (the update's shape, as the adapter has it: not the foreign tensor's 40x20)
        assert (row.shape, row.N, row.M) == ("80x80", 80, 80), tag
    assert rows["q#base"][0].status == "ok" and rows["q#merged"][0].status == "ok"


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(24, 40, 3)
        self.c1 = nn.Conv1d(16, 32, 5)


def _conv_evals(dw: np.ndarray, scale: float) -> np.ndarray:
    """Pooled eigenvalues of the kernel positions' slices W[:, :, p] of a dense conv tensor."""
    slices = [dw[(slice(None), slice(None)) + p] for p in np.ndindex(*dw.shape[2:])]
    return np.sort(np.concatenate([np.linalg.svd(s, compute_uv=False) ** 2 for s in slices]) * scale)


def test_conv_lora_per_kernel_position_equals_peft_delta_weight(tmp_path):
    """peft's own Conv2d and Conv1d LoRA: ΔW[:, :, p] = s·B·A[:, :, p]; htsr's pooled eigenvalues from the
    factors equal the dense SVD of peft's get_delta_weight slices, with the conv2d rows' 1/2 scale; the
    merged rows equal peft's merge."""
    torch.manual_seed(1)
    model = ConvNet()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c2", "c1"],
                                                    init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "adapter"))
    deltas = {n.removeprefix("base_model.model."): m.get_delta_weight("default").detach().double().numpy()
              for n, m in pm.named_modules() if n.endswith(("c2", "c1")) and hasattr(m, "get_delta_weight")}
    merged = {k: v.detach().clone() for k, v in pm.merge_and_unload().state_dict().items()}
    r = htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", keep_spectra=True, min_evals=2)
    rows = _rows(r)
    assert rows["c2#delta"][0].shape == "40x24x3x3" and rows["c1#delta"][0].shape == "32x16x5"
    for name, ww in (("c2", 0.5), ("c1", 1.0)):  # WeightWatcher's Conv2d scale, none for Conv1d
        row, sp = rows[f"{name}#delta"]
        assert row.kind == "lora" and row.status == "ok" and row.eig_method == "lowrank64"
        ref = _conv_evals(deltas[name], ww)
        k = int(np.prod(deltas[name].shape[2:]))
        assert row.num_evals == k * min(deltas[name].shape[:2]) and row.matrix_rank == 4 * k  # pooled over positions
        # float32 factors vs peft's float32 product: agreement to float32 rounding (1e-5); r = 4 nonzero
        # eigenvalues per position, the rest exact zeros
        np.testing.assert_allclose(sp.evals[-4 * k:], ref[-4 * k:], rtol=1e-5)
        assert np.all(sp.evals[:-4 * k] == 0.0)
    ref = _rows(htsr.analyze(merged, min_evals=2))
    for name in ("c2", "c1"):
        assert rows[f"{name}#merged"][0].kind == ref[name][0].kind == rows[f"{name}#base"][0].kind
        # W + ΔW equals peft's merge_and_unload up to float32 rounding of the sum (1e-5 relative)
        assert rows[f"{name}#merged"][0].lambda_max == pytest.approx(ref[name][0].lambda_max, rel=1e-5)
    per = _rows(htsr.analyze(tmp_path / "adapter", conv="per_position", min_evals=2))
    assert sorted(n for n in per if n.startswith("c2")) == [f"c2#delta[{i},{j}]" for i in range(3) for j in range(3)]
    # a kernel position's row keeps its tag: the summary's means are over every update, each position's too (they
    # had been untagged, so the means were over c1#delta alone, and with --base the #base positions were "merged")
    r = htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", conv="per_position", min_evals=2)
    assert {row_tag(l.name) for l in r.layers} == {"delta", "base", "merged"}
    deltas = [l.log_norm for l in r.layers if "#delta" in l.name]
    assert len(deltas) == 9 + 5 and r.summary.means_over == "delta"
    assert r.summary.means["log_norm"] == pytest.approx(float(np.mean(deltas)), rel=1e-12)  # (summation order)


class LycorisNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(96, 64)
        self.fc2 = nn.Linear(60, 96)
        self.c2 = nn.Conv2d(16, 32, 3)
        self.c1 = nn.Conv1d(8, 12, 5)


_LYCORIS_CONFIGS = {
    "loha": lambda: peft.LoHaConfig(r=4, alpha=6, target_modules=["fc", "fc2", "c2", "c1"], init_weights=False,
                                    rank_pattern={"fc2": 2}, alpha_pattern={"fc2": 5}),
    "loha-tucker": lambda: peft.LoHaConfig(r=4, alpha=6, target_modules=["fc", "c2", "c1"], init_weights=False,
                                           use_effective_conv2d=True),
    "lokr": lambda: peft.LoKrConfig(r=4, alpha=6, target_modules=["fc", "fc2", "c2", "c1"], init_weights=False,
                                    rank_pattern={"fc2": 3}, alpha_pattern={"fc2": 5}),
    "lokr-both": lambda: peft.LoKrConfig(r=2, alpha=3, target_modules=["fc", "fc2", "c2"], init_weights=False,
                                         decompose_both=True, decompose_factor=8),
    "lokr-tucker": lambda: peft.LoKrConfig(r=2, alpha=3, target_modules=["fc", "c2", "c1"], init_weights=False,
                                           use_effective_conv2d=True),
    "lokr-full": lambda: peft.LoKrConfig(r=64, alpha=3, target_modules=["fc", "c2"], init_weights=False),
}


@pytest.mark.parametrize("kind", sorted(_LYCORIS_CONFIGS))
def test_loha_and_lokr_adapters_equal_peft_delta_weight(tmp_path, kind):
    """peft's own LoHa and LoKr adapters (Linear, Conv2d, Conv1d; Tucker cores, decomposed and full Kronecker
    factors, rank and alpha patterns): each #delta row's eigenvalues, from the factors (LoHa a rank-r1·r2 LowRank,
    LoKr a Kronecker), equal the dense SVD of peft's get_delta_weight, per kernel position with the base, and
    #merged equals peft's merge_and_unload. Without a base a conv's flattened update (out x in·k) is a matrix
    of that shape, unless a Tucker core or a full conv factor gives its kernel."""
    torch.manual_seed(3)
    model = LycorisNet()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, _LYCORIS_CONFIGS[kind]())
    pm.save_pretrained(str(tmp_path / "adapter"))
    deltas = {n.removeprefix("base_model.model."): m.get_delta_weight("default").detach().double().numpy()
              for n, m in pm.named_modules() if hasattr(m, "get_delta_weight") and n.count(".") == 2}
    merged = {k: v.detach().double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
    adapter = open_source(tmp_path / "adapter")
    alone = {t.name: t for t in adapter}
    rows = {t.name: t for t in adapter.with_base(open_source(tmp_path / "base.safetensors"))}
    assert {n.partition("#")[0] for n in rows} == set(deltas)
    for name, dw in deltas.items():
        assert rows[f"{name}#delta"].shape == dw.shape and rows[f"{name}#delta"].kind == "lora"
        factored = rows[f"{name}#delta"].load()
        per_position = factored if isinstance(factored, list) else [factored]
        got = np.concatenate([matrix_eigenvalues(f)[0] for f in per_position])
        # float64 from the factors vs peft's float32 product: agreement to float32 rounding, 1e-6 of λ_max
        ref = _conv_evals(dw.reshape(*dw.shape, 1) if dw.ndim == 2 else dw, 1.0)
        np.testing.assert_allclose(np.sort(got), ref, atol=1e-6 * ref[-1])
        # W + ΔW in float32 vs peft's merge: float32 rounding of the sum (1e-6 of the largest entry)
        np.testing.assert_allclose(rows[f"{name}#merged"].load(), merged[f"{name}.weight"],
                                   atol=1e-6 * np.abs(merged[f"{name}.weight"]).max())
        # the rank bound a status names: a LoKr's rank(w1)·rank(w2) bound is its rank (generic factors); a LoHa's
        # r1·r2 (or the matrix's side) bounds it (peft's float32 product: rank above 1e-5·σ_max, its rounding ~1e-7)
        for f, i in zip(per_position, range(len(per_position))):
            x = dw.reshape(*dw.shape[:2], -1)[:, :, i] if dw.ndim > 2 else dw
            true = np.linalg.matrix_rank(x, tol=1e-5 * np.linalg.norm(x, 2))
            assert f.rank == true if kind.startswith("lokr") else f.rank >= true
        flat = alone[f"{name}#delta"].shape
        # (peft's Tucker core of a Conv1d, r x r x k x 1, is read as the Conv1d's out x in x k without a base too)
        assert flat == dw.shape or (flat == (dw.shape[0], math.prod(dw.shape[1:])) and dw.ndim > 2)
        if len(flat) == 2 and dw.ndim > 2:  # the flattened update's one matrix: its singular values are ΔW reshaped's
            sv = np.sort(matrix_eigenvalues(alone[f"{name}#delta"].load())[0])
            ref = np.sort(np.linalg.svd(dw.reshape(flat), compute_uv=False) ** 2)
            np.testing.assert_allclose(sv, ref, atol=1e-6 * ref[-1])


def test_kronecker_and_hadamard_factors_give_the_dense_spectrum():
    """Known answers: kron(W1, W2)'s singular values are the products of W1's and W2's, and (B1·A1) ∘ (B2·A2)
    is (B1 ⊙ B2)·(A1 ⊙ A2); both against numpy's SVD of the dense matrix, in float64 (1e-10 of λ_max: the
    SVDs' own rounding)."""
    rng = np.random.default_rng(5)
    W1, W2 = rng.standard_normal((3, 5)), rng.standard_normal((7, 4))
    k = Kronecker(W1, W2, -0.5)
    assert k.shape == (21, 20) and k.rank == 12
    dense = -0.5 * np.kron(W1, W2)
    ev = matrix_eigenvalues(k)[0]
    ref = np.sort(np.linalg.svd(dense, compute_uv=False) ** 2)
    np.testing.assert_allclose(ev, ref, atol=1e-10 * ref[-1])  # (the SVDs' rounding: see the docstring)
    assert ev.size == 20 and np.count_nonzero(ev) == 12
    np.testing.assert_allclose(k.dense(), dense, rtol=1e-6)  # (float32)
    B1, A1, B2, A2 = (rng.standard_normal(s) for s in ((30, 3), (3, 40), (30, 2), (2, 40)))
    h = hadamard_lowrank(B1, A1, B2, A2, 2.0)
    assert h.shape == (30, 40) and h.rank == 6
    dense = 2.0 * (B1 @ A1) * (B2 @ A2)
    # the same products summed in another order (entries O(10)): float64 rounding, ~1e-14
    np.testing.assert_allclose(h.B @ h.A * h.scale, dense, rtol=1e-12, atol=1e-12)
    ref = np.sort(np.linalg.svd(dense, compute_uv=False) ** 2)
    np.testing.assert_allclose(matrix_eigenvalues(h)[0], ref, atol=1e-10 * ref[-1])  # (the SVDs' rounding)
    # r1·r2 at least the short side: the product is formed (its factors W and I), the spectrum the same
    for out, inp in ((12, 40), (40, 12)):
        B1, A1, B2, A2 = (rng.standard_normal(s) for s in ((out, 4), (4, inp), (out, 4), (4, inp)))  # r1·r2 = 16
        h = hadamard_lowrank(B1, A1, B2, A2, 2.0)
        assert h.rank == 12 and h.shape == (out, inp)
        dense = 2.0 * (B1 @ A1) * (B2 @ A2)
        np.testing.assert_allclose(h.B @ h.A * h.scale, dense, rtol=1e-12, atol=1e-12)  # (rounding, as above)
        ref = np.sort(np.linalg.svd(dense, compute_uv=False) ** 2)
        np.testing.assert_allclose(matrix_eigenvalues(h)[0], ref, atol=1e-10 * ref[-1])  # (the SVDs' rounding)


class DoraNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(70, 24)
        self.fc = nn.Linear(48, 36)
        self.c2 = nn.Conv2d(12, 20, 3)


def test_dora_merge_equals_peft_merge(tmp_path):
    """DoRA (use_dora): the #merged row is PEFT's merge m / ‖W + ΔW‖ · (W + ΔW), the norm per output (a
    Linear's rows, an embedding's dims, a conv's output channels). The magnitudes are perturbed after peft
    initialises them to ‖W + ΔW‖ (where the merge would equal plain LoRA's W + ΔW and test nothing)."""
    torch.manual_seed(2)
    model = DoraNet()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["emb", "fc", "c2"],
                                                    use_dora=True, init_lora_weights=False))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_magnitude_vector" in n:
                p.mul_(torch.empty_like(p).uniform_(0.3, 3.0))
    pm.save_pretrained(str(tmp_path / "adapter"))
    saved = safetensors_torch.load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert sum("lora_magnitude_vector" in k for k in saved) == 3
    merged = {k: v.detach().clone() for k, v in pm.merge_and_unload().state_dict().items()}
    rows = _rows(htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", min_evals=2))
    assert sorted(rows) == sorted(f"{m}#{t}" for m in ("emb", "fc", "c2") for t in ("delta", "base", "merged"))
    ref = _rows(htsr.analyze(merged, min_evals=2))
    # the same adapter read as plain LoRA (use_dora off): W + ΔW without the rescaling
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    plain = _write_adapter(tmp_path / "plain", saved, **{**cfg, "use_dora": False})
    lora = _rows(htsr.analyze(plain, base=tmp_path / "base.safetensors", min_evals=2))
    for m in ("emb", "fc", "c2"):
        got, want = rows[f"{m}#merged"][0], ref[m][0]
        assert got.status == want.status == "ok"
        # the same float32 sums and rescaling in another order: agreement to float32 rounding (1e-5 relative)
        for col in ("lambda_max", "log_norm", "stable_rank"):
            assert getattr(got, col) == pytest.approx(getattr(want, col), rel=1e-5), (m, col)
        # the rescaling is not the identity: plain W + ΔW is another matrix
        assert abs(got.lambda_max / lora[f"{m}#merged"][0].lambda_max - 1) > 1e-2, m


def test_dora_without_magnitudes_is_skipped_with_a_reason(tmp_path):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 40)).astype(np.float32), rng.standard_normal((30, 4)).astype(np.float32)
    t = {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B}
    W = rng.standard_normal((30, 40)).astype(np.float32)
    f = _write_adapter(tmp_path / "nomag", t, use_dora=True)
    rows = _rows(htsr.analyze(f, base={"fc.weight": W}, min_evals=2))
    assert rows["fc#merged"][0].status == "skipped: use_dora is set but the adapter has no lora_magnitude_vector"
    assert rows["fc#delta"][0].status == rows["fc#base"][0].status == "ok"
    f = _write_adapter(tmp_path / "badmag", {**t, "base_model.model.fc.lora_magnitude_vector.weight":
                                             np.ones(29, np.float32)}, use_dora=True)
    rows = _rows(htsr.analyze(f, base={"fc.weight": W}, min_evals=2))
    assert rows["fc#merged"][0].status == "skipped: the DoRA magnitude has 29 entries for 30 outputs"
    # a hand-computed merge: rows of W + ΔW rescaled to the magnitudes
    m = np.linspace(0.5, 2.0, 30).astype(np.float32)
    f = _write_adapter(tmp_path / "mag", {**t, "base_model.model.fc.lora_magnitude_vector.weight": m}, use_dora=True)
    V = W.astype(np.float64) + 2.0 * (B.astype(np.float64) @ A)
    V *= (m / np.linalg.norm(V, axis=1))[:, None]
    rows = _rows(htsr.analyze(f, base={"fc.weight": W}, min_evals=2))
    # (the merge and its Gram in float32 against float64: measured 2.4e-7)
    assert rows["fc#merged"][0].lambda_max == pytest.approx(np.linalg.svd(V, compute_uv=False)[0] ** 2, rel=1e-5)
    # an in × out layer (fan_in_fan_out, HF Conv1D): W is stored transposed, the outputs are its columns
    f = _write_adapter(tmp_path / "fifo", {**t, "base_model.model.fc.lora_magnitude_vector.weight": m},
                       use_dora=True, fan_in_fan_out=True)
    rows = _rows(htsr.analyze(f, base={"fc.weight": np.ascontiguousarray(W.T)}, min_evals=2))  # (float32, as above)
    assert rows["fc#merged"][0].lambda_max == pytest.approx(np.linalg.svd(V, compute_uv=False)[0] ** 2, rel=1e-5)


def _write_adapter(folder, tensors, **cfg):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, **cfg}))
    safetensors_torch.save_file({k: torch.as_tensor(v) for k, v in tensors.items()},
                                str(folder / "adapter_model.safetensors"))
    return folder


def test_a_model_beside_an_adapter_is_named_and_an_adapter_without_its_config_is_left_out(tmp_path):
    """A folder with model.safetensors and a PEFT adapter: the model's weights were neither read nor named.
    Without adapter_config.json, the adapter's lora_A / lora_B factors were read as dense layers of the model."""
    rng = np.random.default_rng(1)
    W = {f"model.layers.{i}.q_proj.weight": rng.standard_normal((120, 80)).astype(np.float32) for i in range(2)}
    t = {}
    for i in range(2):
        t[f"base_model.model.model.layers.{i}.q_proj.lora_A.weight"] = rng.standard_normal((4, 80)).astype(np.float32)
        t[f"base_model.model.model.layers.{i}.q_proj.lora_B.weight"] = rng.standard_normal((120, 4)).astype(np.float32)
    folder = _write_adapter(tmp_path / "both", t, target_modules=["q_proj"])
    safetensors_torch.save_file({k: torch.as_tensor(v) for k, v in W.items()}, str(folder / "model.safetensors"))
    r = htsr.analyze(folder, min_evals=2)
    assert [l.name for l in r.layers] == ["model.layers.0.q_proj#delta", "model.layers.1.q_proj#delta"]
    assert r.source == f"{folder} (other weight files here, not read: model.safetensors)"
    (folder / "adapter_config.json").unlink()
    r = htsr.analyze(folder, min_evals=2)
    assert [(l.name, l.kind) for l in r.layers] == [("model.layers.0.q_proj", "dense"), ("model.layers.1.q_proj", "dense")]
    assert r.source == (f"{folder} (adapter_model.safetensors left out: a LoRA adapter, which htsr reads with the "
                        "adapter_config.json it lacks here)")


def test_fan_in_fan_out_merge_is_transposed(tmp_path):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 40)).astype(np.float32), rng.standard_normal((40, 4)).astype(np.float32)
    W = rng.standard_normal((40, 40)).astype(np.float32)  # square: only the config tells the orientation
    t = {"base_model.model.h.attn.c_attn.lora_A.weight": A, "base_model.model.h.attn.c_attn.lora_B.weight": B}
    for fifo in (False, True):
        f = _write_adapter(tmp_path / f"a{fifo}", t, fan_in_fan_out=fifo)
        r = _rows(htsr.analyze(f, base={"h.attn.c_attn.weight": W}, min_evals=2))
        D = 2.0 * (B @ A)
        want = np.linalg.svd(W + (D.T if fifo else D), compute_uv=False)[0] ** 2
        assert r["h.attn.c_attn#merged"][0].lambda_max == pytest.approx(want, rel=1e-5)  # float32 merge: measured 6e-8


def test_distances_between_two_adapters(tmp_path):
    """compare --base-distances of two LoRA adapters: the distances need the entries (ΔW formed), the
    spectra come from the factors. It failed with a TypeError on LowRank."""
    from htsr.compare import layer_distances

    rng = np.random.default_rng(3)
    f = {}
    for tag in ("a", "b"):
        A, B = rng.standard_normal((4, 60)).astype(np.float32), rng.standard_normal((50, 4)).astype(np.float32)
        f[tag] = (_write_adapter(tmp_path / tag, {"base_model.model.fc.lora_A.weight": A,
                                                  "base_model.model.fc.lora_B.weight": B}), 2.0 * (B @ A))
    (d,) = layer_distances(f["a"][0], f["b"][0])  # (min_evals fits nothing here: refused)
    assert (d.name, d.status) == ("fc#delta", "ok")
    diff = f["a"][1].astype(np.float64) - f["b"][1]
    # ΔW = (8/4)·B·A in float32, as the reader forms it: float32 rounding of the products (1e-6)
    assert d.frobenius == pytest.approx(np.linalg.norm(diff), rel=1e-6)
    assert d.lambda_max == pytest.approx(np.linalg.svd(f["a"][1].astype(np.float64), compute_uv=False)[0] ** 2, rel=1e-5)
    # a row analyze skips is skipped here too, not 'failed' (a PiSSA adapter's update is not its factors')
    pissa = _write_adapter(tmp_path / "pissa", {"base_model.model.fc.lora_A.weight": rng.standard_normal((4, 60)),
                                                "base_model.model.fc.lora_B.weight": rng.standard_normal((50, 4))},
                           init_lora_weights="pissa")
    (d,) = layer_distances(pissa, f["b"][0])
    assert d.status.startswith("skipped: init_lora_weights 'pissa': the factors hold the part of W")


def test_an_adapter_as_the_base_is_refused(adapter):
    d, _, _ = adapter
    for model in (d / "base.safetensors", d / "adapter"):
        with pytest.raises(SourceError) as e:
            htsr.analyze(model, base=d / "adapter")
        one_line_source_error(e, str(d / "adapter"), "LoRA adapter", "base model")


def test_bad_adapters_give_one_line_errors_or_row_statuses(tmp_path):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 40)).astype(np.float32), rng.standard_normal((30, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "half", {"base_model.model.fc.lora_A.weight": A})
    assert _rows(htsr.analyze(f))["fc#delta"][0].status == "skipped: lora_B is missing from the adapter"
    f = _write_adapter(tmp_path / "mismatch", {"base_model.model.fc.lora_A.weight": A,
                                               "base_model.model.fc.lora_B.weight": B.T.copy()})
    # (the shapes said, and what to do)
    assert _rows(htsr.analyze(f))["fc#delta"][0].status.startswith("failed: ")
    assert _rows(htsr.analyze(f))["fc#delta"][0].status.endswith(
        "fc: LoRA factors of shapes (4, 30) (B) and (4, 40) (A) do not multiply; re-save the adapter with peft")
    f = _write_adapter(tmp_path / "nan", {"base_model.model.fc.lora_A.weight": np.full_like(A, np.nan),
                                          "base_model.model.fc.lora_B.weight": B})
    assert _rows(htsr.analyze(f))["fc#delta"][0].status == "failed: NaN or Inf in the weights"
    f = _write_adapter(tmp_path / "ia3", {"base_model.model.fc.lora_A.weight": A}, peft_type="IA3")
    for must in (("IA3",), ("adapter_config.json", "JSON")):
        with pytest.raises(SourceError) as e:
            htsr.analyze(f)
        one_line_source_error(e, str(f), *must)
        (f / "adapter_config.json").write_text("{not json")
    (f / "adapter_config.json").write_text("{}")
    (f / "adapter_model.safetensors").unlink()
    with pytest.raises(SourceError) as e:
        htsr.analyze(f)
    one_line_source_error(e, str(f), "adapter_model.safetensors")


def test_adapter_configs_and_factors_that_make_no_update_are_named(tmp_path):
    """A config whose lora_alpha is not a finite number, whose alpha_pattern is not an object or whose flags
    are not booleans ("false" is a true string) is refused in one line; factors that are not a rank-r
    update (1-D, r = 0) get a skipped row; a scale that overflows the eigenvalues a failed row that says
    so; the other modules go on."""
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((4, 40)).astype(np.float32), rng.standard_normal((30, 4)).astype(np.float32)
    t = {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B}
    for i, (cfg, must) in enumerate(((dict(lora_alpha="Infinity"), "finite"), (dict(lora_alpha=float("nan")), "finite"),
                                     (dict(alpha_pattern=["fc"]), "alpha_pattern"),
                                     (dict(alpha_pattern={"fc": float("nan")}), "alpha_pattern must be finite"),
                                     (dict(use_rslora="false"), "use_rslora must be true or false"),
                                     # (a bare string had been read as a list of its characters)
                                     (dict(target_parameters="experts.w"), "target_parameters a list of names"))):
        f = _write_adapter(tmp_path / f"c{i}", t, **cfg)
        with pytest.raises(SourceError) as e:
            htsr.analyze(f)
        one_line_source_error(e, str(f / "adapter_config.json"), must)
    ok = {"base_model.model.ok.lora_A.weight": A, "base_model.model.ok.lora_B.weight": B}
    f = _write_adapter(tmp_path / "flat", {**ok, "base_model.model.fc.lora_A.weight": A[0].copy(),
                                           "base_model.model.fc.lora_B.weight": B[:, :1].copy()})
    rows = _rows(htsr.analyze(f, min_evals=2))
    assert rows["fc#delta"][0].status.startswith("skipped: LoRA factors of shapes [30, 1] (B) and [40] (A)")
    assert rows["ok#delta"][0].status == "ok"
    f = _write_adapter(tmp_path / "r0", {**ok, "base_model.model.fc.lora_A.weight": np.zeros((0, 40), np.float32),
                                         "base_model.model.fc.lora_B.weight": np.zeros((30, 0), np.float32)})
    rows = _rows(htsr.analyze(f, min_evals=2))
    assert rows["fc#delta"][0].status.startswith("skipped: LoRA factors of shapes [30, 0] (B) and [0, 40] (A) are "
                                                 "not a rank-r update")
    assert rows["ok#delta"][0].status == "ok"
    f = _write_adapter(tmp_path / "huge", t, lora_alpha=1e300)
    assert _rows(htsr.analyze(f, min_evals=2))["fc#delta"][0].status.startswith(
        "failed: eigenvalues beyond float64's range")


@pytest.mark.parametrize("safe", [True, False])
def test_lora_bias_is_not_read_as_a_factor(tmp_path, safe):
    """PEFT's lora_bias=True saves lora_B.bias beside lora_B.weight; it was taken for an adapter named
    'bias' and, in a .bin (where it comes after the weight), replaced the B factor."""
    torch.manual_seed(3)
    model = DoraNet()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["fc", "c2"], lora_bias=True,
                                                    init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "adapter"), safe_serialization=safe)
    merged = {k: v.detach().clone() for k, v in pm.merge_and_unload().state_dict().items()}
    rows = _rows(htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", min_evals=2))
    assert sorted(rows) == sorted(f"{m}#{t}" for m in ("fc", "c2") for t in ("delta", "base", "merged"))
    ref = _rows(htsr.analyze(merged, min_evals=2))
    for m in ("fc", "c2"):
        assert rows[f"{m}#delta"][0].status == "ok"
        # W + ΔW against peft's merge: float32 rounding of the sum (1e-5)
        assert rows[f"{m}#merged"][0].lambda_max == pytest.approx(ref[m][0].lambda_max, rel=1e-5)


def test_summary_of_lora_rows_says_why_no_phase_or_trap(adapter, capsys):
    """lora rows get no Marchenko-Pastur fit (the update is known by its factors only): the summary says so
    instead of blaming --no-mp-fit, and the trap count reads n/a, not nan."""
    from htsr.cli import main

    d, _, _ = adapter
    assert main(["analyze", str(d / "adapter"), "--min-evals", "2", "--no-progress"]) == 0
    phases = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("phases: "))
    assert phases == ("phases: n/a (no layer has a phase: it needs a bulk the Marchenko-Pastur law fits and, for a "
                      "layer with a tail above it, the tail's power-law fit; none has them, or LoRA updates only)")
    # --randomize shuffles no update (its entries are never formed): on an adapter alone it would change nothing,
    # and is refused; with its base, the base and merged rows are shuffled and the updates' trap count is n/a
    assert main(["analyze", str(d / "adapter"), "--min-evals", "2", "--randomize", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"htsr: error: {d / 'adapter'}: --randomize acts only on dense, conv1d, conv2d, conv3d, embedding, rnn, stack "
        "layers, and this model has none (its rows are lora): it would change nothing; leave it out")
    r = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2, randomize=True)
    assert {math.isnan(x.num_traps) for x in r.layers if x.name.endswith("#delta")} == {True}
    assert all(math.isfinite(x.num_traps) for x in r.layers if x.name.endswith("#merged") and x.status == "ok")
    # the summary's phases and traps are the adapted weights' (they had been n/a, the updates having none: h46)
    merged = [x for x in r.layers if x.name.endswith("#merged")]
    assert r.summary.num_with_traps == sum(x.num_traps > 0 for x in merged if math.isfinite(x.num_traps))
    assert sum(r.summary.phases.values()) == sum(bool(x.phase) for x in merged) > 0


def test_summary_means_of_an_adapter_are_its_updates_or_else_the_adapted_weights(adapter, tmp_path, capsys):
    """An adapter's summary means average its updates (#delta rows), not those mixed with the frozen base and
    the merged weights near it; with no update fitted (rank 8 below min_evals), the adapted weights (every row
    but #base). The summary names which; the monitor and compare use the same rows."""
    from htsr.cli import main
    from htsr.compare import compare_results, format_comparison
    from htsr.results import load_result

    d, _, _ = adapter

    def mean(rows, metric="alpha"):
        vals = [getattr(x, metric) for x in rows if np.isfinite(getattr(x, metric))]
        return float(np.mean(vals))

    r = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2)
    delta = [x for x in r.layers if x.name.endswith("#delta")]
    assert r.summary.means_over == "delta" and len(delta) == 3
    for m in ("alpha", "log_norm", "stable_rank"):  # fsum against numpy's pairwise sum of 3 values: 1e-12
        assert r.summary.means[m] == pytest.approx(mean(delta, m), rel=1e-12), m
    assert abs(r.summary.means["alpha"] - mean(r.layers)) > 0.1  # the mixed mean it had been (3.06 vs 3.40)
    assert r.summary.num_layers == 9 and r.summary.num_fitted == 9  # counts are of every row still
    r.to_json(tmp_path / "run.json")
    assert load_result(tmp_path / "run.json").summary.means_over == "delta"

    unfitted = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=10)
    assert all(not np.isfinite(x.alpha) for x in unfitted.layers if x.name.endswith("#delta"))
    assert unfitted.summary.means_over == "merged"
    kept = [x for x in unfitted.layers if x.name.endswith("#merged")]  # not the updates' norms
    for m in ("alpha", "log_norm", "stable_rank"):
        assert unfitted.summary.means[m] == pytest.approx(mean(kept, m), rel=1e-12), m  # as above
    alone = htsr.analyze(d / "adapter", min_evals=10)  # an adapter's rows are its updates, fitted or not
    assert alone.summary.means_over == "delta" and math.isnan(alone.summary.means["alpha"])

    plain = htsr.analyze(d / "base.safetensors", min_evals=2)
    assert plain.summary.means_over == "all"
    text = format_comparison(compare_results([r, unfitted, plain], labels=["lora", "short", "base"]))
    assert ("the summary means and warning counts are over the adapter's updates (#delta rows) for lora; the adapted "
            "weights (#merged rows) for short; layers for base (the phase and trap counts over the updates that have "
            "one, and for those known by their factors the adapted weights (#merged rows) for lora)") in text
    # two adapters: the mean over their common layers is over the updates too, as the summary's; the JSON says so
    c = compare_results([r, htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=3)])
    assert c.num_common_finite == 3 and c.common_means[0] == pytest.approx(mean(delta), rel=1e-12)  # as above
    assert [s["means_over"] for s in c.as_dict()["summary"]] == ["delta", "delta"]
    assert "of the rows the summary means average" in format_comparison(c)
    assert main(["analyze", str(d / "adapter"), "--base", str(d / "base.safetensors"), "--min-evals", "2",
                 "--no-progress", "--out", str(tmp_path / "out")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("means over"))
    assert line.startswith("means over the adapter's updates (#delta rows) with a finite value: alpha=3.403")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]["means_over"] == "delta"


def test_base_names_are_aligned_as_for_deltas_and_a_base_without_them_is_refused(adapter, tmp_path):
    """An adapter trained on a wrapped model ('model.q') against the bare model's file ('q.weight'): the
    module names are matched by a leading prefix, as --base does for a model; a base with none of
    the adapted weights is refused in one line instead of giving rows that are all skipped."""
    d, _, merged = adapter
    from safetensors.numpy import load_file, save_file

    base = load_file(str(d / "base.safetensors"))
    save_file({f"model.{k}": v for k, v in base.items()}, str(tmp_path / "wrapped.safetensors"))
    r = htsr.analyze(d / "adapter", base=tmp_path / "wrapped.safetensors", min_evals=2)
    assert "(module names matched to the base's by adding 'model.')" in r.source
    rows = _rows(r)
    plain = _rows(htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2))
    assert sorted(rows) == sorted(plain)
    assert all(rows[n][0].status == "ok" and rows[n][0].lambda_max == plain[n][0].lambda_max for n in rows)
    save_file({"other.weight": np.ones((4, 4), np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(d / "adapter", base=tmp_path / "other.safetensors")
    one_line_source_error(ei, "no adapted module's weight is in the base", "give the model the adapter was trained on")


class _Experts(nn.Module):
    def __init__(self, E: int = 4, h: int = 32, f: int = 48) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.randn(E, h, 2 * f))  # [E, in, out]-style fused stacks
        self.down_proj = nn.Parameter(torch.randn(E, f, h))


class _MoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Module() for _ in range(2)])
        for layer in self.layers:
            layer.experts = _Experts()
        self.w = nn.Module()
        self.w.W_q = nn.Parameter(torch.randn(24, 40))  # a 2-D parameter not named weight


def test_target_parameters_give_one_row_per_expert_equal_to_peft(tmp_path):
    """peft's target_parameters (LoRA on fused expert stacks, as for gpt-oss): A is (r·E) × in, B is
    out × (r·E), expert e's update s·B[:, :, e]·A[e]. Every expert's row equals a dense SVD of peft's own
    get_delta_weight slice, and with the base every merged expert equals merge_and_unload's; two parameters
    on one module (peft nests them as 'experts.base_layer') are told apart by the base's shapes."""
    torch.manual_seed(0)
    model = _MoE()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=[], init_lora_weights=False,
                          target_parameters=["experts.gate_up_proj", "experts.down_proj", "w.W_q"],
                          rank_pattern={"layers.1.experts.down_proj": 2})
    pm = peft.get_peft_model(model, cfg)
    ref = {n.removeprefix("base_model.model.").replace(".base_layer", "") + "." + m.parameter_name:
           m.get_delta_weight("default").detach().double().numpy()
           for n, m in pm.named_modules() if type(m).__name__ == "ParamWrapper"}
    pm.save_pretrained(str(tmp_path / "adapter"))
    merged = {k: v.detach().double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
    rows = {r.name: r for r in htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors",
                                             min_evals=2).layers}
    assert len(ref) == 5 and len(rows) == 4 * 4 * 3 + 3  # 4 stacks of 4 experts, 3 rows each; W_q's 3
    for key, dw in ref.items():
        for e, d in enumerate(dw if dw.ndim == 3 else [dw]):
            tag = f"[{e}]" if dw.ndim == 3 else ""
            # float32 factors and merge against peft's float32 product and sum: 1e-5 relative
            assert rows[f"{key}#delta{tag}"].lambda_max == pytest.approx(np.linalg.norm(d, 2) ** 2, rel=1e-5)
            w = merged[key][e] if dw.ndim == 3 else merged[key]
            assert rows[f"{key}#merged{tag}"].lambda_max == pytest.approx(np.linalg.norm(w, 2) ** 2, rel=1e-5)
    assert all(r.status == "ok" for r in rows.values())
    # without the base the parameter of a module holding two is not known: rows under the saved module
    # name; where their ranks differ (rank_pattern) the experts cannot be told either, and the row says so
    alone = {r.name: r for r in htsr.analyze(tmp_path / "adapter", min_evals=2).layers}
    assert {"layers.0.experts#delta[3]", "layers.0.experts.base_layer#delta[3]", "w.W_q#delta"} <= set(alone)
    assert alone["layers.1.experts#delta"].status.startswith(
        "skipped: a LoRA on one of the parameters down_proj, gate_up_proj of layers.1.experts, whose rank or scale "
        "differ")
    # a base saved one tensor per expert (transformers 5 writes Mixtral's so) has neither fused parameter: said so
    # (it was 'the factors fit none or several of the base's down_proj, gate_up_proj')
    per_expert = {f"layers.{i}.experts.{e}.w1.weight": torch.zeros(8, 8) for i in range(2) for e in range(4)}
    per_expert["w.W_q"] = model.w.W_q.detach().clone()
    safetensors_torch.save_file(per_expert, str(tmp_path / "per_expert.safetensors"))
    with_base = {r.name: r.status for r in htsr.analyze(tmp_path / "adapter", base=tmp_path / "per_expert.safetensors",
                                                         min_evals=2).layers}
    assert with_base["layers.0.experts#merged"] == (
        "skipped: the base has none of layers.0.experts.down_proj, layers.0.experts.gate_up_proj (a base saved one "
        "tensor per expert, experts.0.w1.weight …, is not fused back): give the live model, or a base saved with its "
        "fused experts")
    # an adapter on the experts alone against a base none of whose names it has (Mixtral's: transformers saves
    # its experts one by one under block_sparse_moe): the refusal says the same, not 'give the model the adapter
    # was trained on' (it was)
    experts_only = tmp_path / "experts_only"
    experts_only.mkdir()
    (experts_only / "adapter_config.json").write_text((tmp_path / "adapter" / "adapter_config.json").read_text())
    kept = {k: v for k, v in load_file(str(tmp_path / "adapter" / "adapter_model.safetensors")).items() if "W_q" not in k}
    save_file(kept, str(experts_only / "adapter_model.safetensors"))
    safetensors_torch.save_file({f"layers.{i}.block_sparse_moe.experts.{e}.w1.weight": torch.zeros(8, 8)
                                 for i in range(2) for e in range(4)}, str(tmp_path / "moe_base.safetensors"))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(experts_only, base=tmp_path / "moe_base.safetensors", min_evals=2)
    one_line_source_error(ei, "its updates are on fused expert stacks", "holds one tensor per expert",
                          "which htsr does not fuse back: give the live model, or a base saved with its fused experts")


def test_two_adapters_in_one_file_give_a_row_each(tmp_path):
    """A model's own state dict keeps the adapter's name in its keys ('fc.lora_A.default.weight'): a file
    holding two adapters gives one row per adapter, '<module>(<adapter>)#delta', neither dropped."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    f = {}
    for name in ("default", "other"):
        f[f"base_model.model.fc.lora_A.{name}.weight"] = rng.standard_normal((4, 40)).astype(np.float32)
        f[f"base_model.model.fc.lora_B.{name}.weight"] = rng.standard_normal((30, 4)).astype(np.float32)
    save_file(f, str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    r = htsr.analyze(tmp_path, min_evals=2)
    rows = {x.name: x for x in r.layers}
    assert sorted(rows) == ["fc(default)#delta", "fc(other)#delta"]
    # the folder's one config scales both: the source says so
    assert r.source.endswith("(adapters default, other in one file, every one scaled by this folder's "
                             "adapter_config.json)")
    for name in ("default", "other"):
        d = 2.0 * f[f"base_model.model.fc.lora_B.{name}.weight"].astype(np.float64) @ f[
            f"base_model.model.fc.lora_A.{name}.weight"]
        # float32 factors through QR against a float64 dense product: 1e-5 relative
        assert rows[f"fc({name})#delta"].lambda_max == pytest.approx(np.linalg.norm(d, 2) ** 2, rel=1e-5)


def test_modules_to_save_copies_are_named_as_the_base_names_them(tmp_path):
    """peft saves a modules_to_save copy as 'base_model.model.emb.weight': its row is 'emb', the name the
    base model's own row has (so it lines up with it in compare and --base)."""
    torch.manual_seed(0)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q"], modules_to_save=["emb"], init_lora_weights=False)
    peft.get_peft_model(Tiny(), cfg).save_pretrained(str(tmp_path))
    r = htsr.analyze(tmp_path, min_evals=2)
    assert [(x.name, x.kind) for x in r.layers] == [("q#delta", "lora"), ("emb", "embedding")]
    assert len(open_source(tmp_path)) == 2  # (the tensor count: the update and the copy)


def test_square_layers_take_the_layout_the_other_layers_show(tmp_path):
    """peft sets fan_in_fan_out per layer type (HF Conv1D stores W as in x out) but saves one flag. A GPT-2
    style adapter: the square c_proj merges as the non-square c_attn shows (equal to peft's merge); with an
    nn.Linear head beside them, both layouts are present and the square layer's is unknown: no merge."""
    from transformers.pytorch_utils import Conv1D

    class Block(nn.Module):
        def __init__(self, head: bool) -> None:
            super().__init__()
            self.c_attn, self.c_proj = Conv1D(192, 64), Conv1D(64, 64)  # weights 64 x 192 and 64 x 64 (in x out)
            if head:
                self.score = nn.Linear(64, 3)

    for head in (False, True):
        d = tmp_path / str(head)
        torch.manual_seed(0)
        model = Block(head)
        d.mkdir()
        safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "base.safetensors"))
        targets = ["c_attn", "c_proj"] + (["score"] if head else [])
        pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                        fan_in_fan_out=True, init_lora_weights=False))
        pm.save_pretrained(str(d / "adapter"))
        live = _rows(htsr.analyze(pm, min_evals=2))  # (the live model: each layer's own fan_in_fan_out)
        merged = {k: v.detach().double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
        rows = _rows(htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2))
        for m in targets:
            want = np.linalg.norm(merged[f"{m}.weight"], 2) ** 2
            row = rows[f"{m}#merged"][0]
            if head and m == "c_proj":
                assert row.status.startswith("skipped: a square layer of an adapter on layers of both layouts")
            else:  # float32 sum against peft's float32 merge: 1e-5 relative
                assert row.lambda_max == pytest.approx(want, rel=1e-5), m
            # live, the layer says its layout: merged with the nn.Linear head beside it too (it had been skipped)
            assert live[f"{m}#merged"][0].lambda_max == pytest.approx(want, rel=1e-5), m


def test_bare_target_parameter_names_leave_target_modules_alone(tmp_path):
    """target_parameters=['gate_up_proj'] (no module part) beside target_modules=['q']: 'q' is a LoRA on its
    weight, scaled by its own alpha_pattern entry (it was read as a parameter LoRA 'q.gate_up_proj')."""
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.experts = _Experts()
            self.q = nn.Linear(32, 40)

    torch.manual_seed(0)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q"], target_parameters=["gate_up_proj"],
                          alpha_pattern={"q": 40}, init_lora_weights=False)
    pm = peft.get_peft_model(Block(), cfg)
    want = np.linalg.norm(pm.base_model.model.q.get_delta_weight("default").detach().double().numpy(), 2) ** 2
    pm.save_pretrained(str(tmp_path))
    rows = _rows(htsr.analyze(tmp_path, min_evals=2))
    assert rows["q#delta"][0].lambda_max == pytest.approx(want, rel=1e-5)  # float32 factors: 1e-5
    assert {n for n in rows if n.startswith("experts.gate_up_proj#delta[")} == {
        f"experts.gate_up_proj#delta[{e}]" for e in range(4)}


def test_a_live_peft_model_gives_the_rows_of_its_saved_adapter_with_its_base(tmp_path):
    """analyze(PeftModel) reads the active adapter's factors and the wrapped layers' base weights: the rows
    of the saved adapter folder analysed with --base (it gave lora_A and lora_B as two dense layers)."""
    pm = _tiny_adapter(tmp_path, seed=1)
    live = _rows(htsr.analyze(pm, min_evals=2))
    saved = _rows(htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", min_evals=2))
    assert sorted(live) == sorted(saved) == sorted(f"{m}#{t}" for m in ("emb", "q", "sq") for t in ("delta", "base", "merged"))
    for name, (row, _) in live.items():
        ref = saved[name][0]
        # the same float32 values through the same code: equal up to the summation order of the SVD (1e-12)
        assert row.kind == ref.kind and row.status == ref.status, name
        assert row.lambda_max == pytest.approx(ref.lambda_max, rel=1e-12), name
        assert row.log_norm == pytest.approx(ref.log_norm, rel=1e-12), name


def test_a_merged_live_peft_model_and_other_peft_types_are_refused(tmp_path):
    """After merge_adapter() the wrapped layers' base weights hold W + ΔW: #base and #merged would be W + ΔW
    and W + 2ΔW, so it is refused in one line. A live IA3 model is refused by its type (read as a plain
    module, its ia3_l vectors would be rows and its weights 'base_layer')."""
    pm = _tiny_adapter(tmp_path, seed=2)
    pm.merge_adapter()
    with pytest.raises(SourceError) as ei:
        htsr.analyze(pm, min_evals=2)
    one_line_source_error(ei, "adapters are merged", "unmerge_adapter()")
    pm.unmerge_adapter()
    assert {r.name for r in htsr.analyze(pm, min_evals=2).layers} >= {"q#delta", "q#base", "q#merged"}
    torch.manual_seed(3)
    ia3 = peft.get_peft_model(Tiny(), peft.IA3Config(target_modules=["q", "out"], feedforward_modules=["out"]))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(ia3, min_evals=2)
    one_line_source_error(ei, "peft_type 'IA3' is not supported (htsr reads LoRA, LoHa and LoKr adapters)")


def test_an_injected_adapter_a_compiled_peft_model_and_a_whole_state_dict(tmp_path):
    """transformers' load_adapter() / add_adapter() inject LoRA layers into the model itself (no PeftModel),
    and torch.compile wraps a PeftModel: both gave lora_A and lora_B as dense layers (alpha 3.4 'ok' for a
    64 × 256 factor), and the summary's mean took them in. They give the PeftModel's rows now. A whole
    model's state dict holds the factors without their scale: listed, with what to analyse instead."""
    pm = _tiny_adapter(tmp_path, seed=4)
    alone = htsr.analyze(pm, min_evals=2)
    assert alone.source.startswith("<PeftModel, adapter 'default'> with its base model's weights (")  # (had been
    # '<PeftModel, adapter 'default'> on base <PeftModel, adapter 'default'>')
    want = _rows(alone)
    injected = peft.inject_adapter_in_model(peft.LoraConfig(**{k: getattr(pm.peft_config["default"], k) for k in (
        "r", "lora_alpha", "target_modules", "alpha_pattern")}), Tiny())
    injected.load_state_dict({k.removeprefix("base_model.model."): v for k, v in pm.state_dict().items()})
    for source in (injected, torch.compile(pm)):
        got = _rows(htsr.analyze(source, min_evals=2))
        assert sorted(got) == sorted(want)
        for name, (row, _) in got.items():  # the same values: equal up to the SVD's summation order
            assert row.lambda_max == pytest.approx(want[name][0].lambda_max, rel=1e-12), name
    r = htsr.analyze(dict(pm.state_dict()), min_evals=2)
    assert not any("lora_" in x.name for x in r.layers)
    # (a LoHa model's parts likewise: listed, never dense rows of their own)
    loha = peft.get_peft_model(Tiny(), peft.LoHaConfig(r=2, target_modules=["q", "out"], init_weights=False))
    for source in (dict(loha.state_dict()), {"m": loha}):  # (the live model in a mapping: listed alike)
        listed = {n.reason: n.count for n in htsr.analyze(source, min_evals=2).not_analysed}
        assert listed["a LoHa / LoKr part without its adapter_config.json (its scale unknown): analyse the live "
                      "model, or the folder save_pretrained writes"] == 8
    listed = {n.reason: n.count for n in r.not_analysed}
    assert listed["a LoRA factor without its adapter_config.json (its scale unknown): analyse the live model, "
                  "or the folder save_pretrained writes"] == 6
    # the live model inside a mapping, and that mapping saved (a pickled PeftModel, its classes inert), as its state
    # dict: its factors are held by Linear and Embedding modules, and their class had made them dense and
    # embedding rows of their own
    torch.save({"policy": pm, "step": 3}, tmp_path / "trainer.pt")
    for source in ({"policy": pm, "step": 3}, tmp_path / "trainer.pt"):
        held = htsr.analyze(source, min_evals=2)
        assert [x.name for x in held.layers] == ["policy." + x.name for x in r.layers], source
        assert [x.lambda_max for x in held.layers] == [x.lambda_max for x in r.layers], source
        assert {n.reason: n.count for n in held.not_analysed} == listed, source


def test_a_base_weight_saved_with_the_adapter_is_its_module_s_base(tmp_path):
    """peft saves W beside the factors of an embedding or LM head it adapts (save_embedding_layers, e.g. after
    resizing the vocabulary: <module>.base_layer.weight). It was a dense layer of the adapter's own, and with
    --base the merge was skipped (the base model's table has the old vocabulary). It is that module's #base,
    and its #merged is W + ΔW, with or without --base."""
    torch.manual_seed(5)
    model = Tiny()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    rng = np.random.default_rng(5)
    W = rng.standard_normal((130, 32)).astype(np.float32)  # 10 tokens added to Tiny's 120
    A, B = rng.standard_normal((8, 130)).astype(np.float32), rng.standard_normal((32, 8)).astype(np.float32)
    qa, qb = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((96, 8)).astype(np.float32)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["emb", "q"]}))
    safetensors_torch.save_file({k: torch.from_numpy(v) for k, v in {
        "base_model.model.emb.base_layer.weight": W, "base_model.model.emb.lora_embedding_A": A,
        "base_model.model.emb.lora_embedding_B": B, "base_model.model.q.lora_A.weight": qa,
        "base_model.model.q.lora_B.weight": qb}.items()}, str(tmp_path / "adapter" / "adapter_model.safetensors"))
    merged = W.astype(np.float64) + 2.0 * (B @ A).T.astype(np.float64)  # s = 16 / 8; an embedding's ΔW = (B·A)ᵀ
    for base in (None, tmp_path / "base.safetensors"):
        r = htsr.analyze(tmp_path / "adapter", base=base, min_evals=2, keep_spectra=True)
        rows = _rows(r)
        assert {n: x.kind for n, (x, _) in rows.items() if n.startswith("emb")} == {
            "emb#delta": "lora", "emb#base": "embedding", "emb#merged": "embedding"}
        assert sorted(rows) == sorted(["emb#delta", "emb#base", "emb#merged", "q#delta"]
                                      + (["q#base", "q#merged"] if base else []))
        for name, ref in (("emb#base", W), ("emb#merged", merged)):
            want = np.sort(np.linalg.svd(ref.astype(np.float64), compute_uv=False) ** 2)
            np.testing.assert_allclose(np.sort(rows[name][1].evals), want, rtol=1e-4)  # float32 W and product
        # each update and each base weight a tensor; a #merged row is none (W + ΔW, stored nowhere)
        assert r.num_tensors == len([n for n in rows if not n.endswith("#merged")])


def test_an_untrained_adapter_s_updates_are_skipped_not_failed():
    """peft initialises B to 0: before the first step every update is zero. Those rows said 'failed: all-zero
    matrix' (the monitor's step-0 baseline counted 2 failed layers); there is no change to analyse."""
    torch.manual_seed(6)
    pm = peft.get_peft_model(Tiny(), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q", "sq"]))
    r = htsr.analyze(pm, min_evals=2)
    rows = {x.name: x for x in r.layers}
    for m in ("q", "sq"):
        assert rows[f"{m}#delta"].status == ("skipped: zero update (an untrained adapter: a factor still at its "
                                             "initial 0, as LoRA's B)")
        assert rows[f"{m}#base"].status == rows[f"{m}#merged"].status == "ok"
    assert r.summary.num_failed == 0 and r.summary.num_skipped == 2


def test_a_grouped_conv_lora_is_skipped_with_why(tmp_path):
    """A LoRA on a Conv2d with groups = 4 (B a 1×1 conv taking r / groups channels): 'failed: … do not multiply;
    re-save the adapter with peft', though peft wrote it (and cannot merge it either)."""
    rng = np.random.default_rng(8)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                              "target_modules": ["g"]}))
    safetensors_torch.save_file({"base_model.model.g.lora_A.weight": torch.from_numpy(rng.standard_normal((4, 16, 3, 3))),
                                 "base_model.model.g.lora_B.weight": torch.from_numpy(rng.standard_normal((32, 1, 1, 1))),
                                 # B taking 3 of A's 4 channels (no whole number of groups), and a B that is no
                                 # 1x1 conv: factors that do not multiply, not a grouped conv nor a reshape error
                                 "base_model.model.h.lora_A.weight": torch.from_numpy(rng.standard_normal((4, 16, 3, 3))),
                                 "base_model.model.h.lora_B.weight": torch.from_numpy(rng.standard_normal((32, 3, 1, 1))),
                                 "base_model.model.k.lora_A.weight": torch.from_numpy(rng.standard_normal((4, 16, 3, 3))),
                                 "base_model.model.k.lora_B.weight": torch.from_numpy(rng.standard_normal((32, 4, 3, 3)))},
                                str(tmp_path / "adapter_model.safetensors"))
    rows = htsr.analyze(tmp_path, min_evals=2).layers
    assert [(x.name, x.status) for x in rows if x.name == "g#delta"] == [
        ("g#delta", "skipped: LoRA on a grouped convolution (B takes 1 of A's 4 channels: 4 groups), whose update "
                    "htsr does not form")]
    for x in rows:
        if x.name != "g#delta":
            assert x.status.startswith("failed: ") and x.status.endswith(
                "do not multiply; re-save the adapter with peft"), x


def test_adapters_that_start_from_part_of_w_and_variants_of_another_update(tmp_path):
    """PiSSA (and OLoRA, CorDA, LoRA-GA, LoftQ) start from factors holding W's principal part and run the model
    on W less it. Read as LoRA, an untrained PiSSA adapter's #delta was W's top component and its #merged W
    plus it again (λ_max 7.92 where the model's is 1.98). Now: #delta skipped; from a folder, #base is W and
    #merged skipped; live, #merged is the model's weight. KaSA, BD-LoRA … (another update) are refused."""
    torch.manual_seed(7)
    base = Tiny()
    safetensors_torch.save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=4, target_modules=["q"], init_lora_weights="pissa"))
    pm.save_pretrained(str(tmp_path / "adapter"))
    saved = {x.name: x.status for x in htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors",
                                                    min_evals=2).layers}
    assert saved["q#delta"].startswith("skipped: init_lora_weights 'pissa': the factors hold the part of W")
    assert saved["q#base"] == "ok" and saved["q#merged"].startswith("skipped: init_lora_weights 'pissa': the model runs")
    live = {x.name: x for x in htsr.analyze(pm, min_evals=2, keep_spectra=True).layers}
    assert live["q#delta"].status.startswith("skipped") and live["q#base"].status.startswith("skipped")
    model_w = pm.merge_and_unload().q.weight.detach().double().numpy()  # the weight the model runs on
    assert live["q#merged"].lambda_max == pytest.approx(np.linalg.norm(model_w, 2) ** 2, rel=1e-5)  # float32
    d = tmp_path / "bd"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "use_bdlora": {"nblocks": 2}}))
    safetensors_torch.save_file({"base_model.model.q.lora_A.weight": torch.zeros(4, 64),
                                 "base_model.model.q.lora_B.weight": torch.zeros(96, 4)}, str(d / "adapter_model.safetensors"))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(d)
    one_line_source_error(ei, "use_bdlora is set: a LoRA variant whose update is not scale·B·A")


def test_trainable_tokens_are_listed_not_analysed(tmp_path):
    """trainable_token_indices saves the new embedding rows of a few tokens (token_adapter.trainable_tokens_delta,
    despite its name not a delta): it was a dense 3 × 32 layer (λ_max 1794)."""
    torch.manual_seed(8)
    pm = peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, target_modules=["q"], trainable_token_indices={"emb": [1, 2, 3]}))
    pm.save_pretrained(str(tmp_path / "adapter"))
    r = htsr.analyze(tmp_path / "adapter", min_evals=2)
    assert [x.name for x in r.layers] == ["q#delta"]
    listed = {n.reason: n.examples for n in r.not_analysed}
    assert listed["trainable tokens' own embedding rows (trainable_token_indices), not a layer"] == (
        "emb.token_adapter.trainable_tokens_delta",)


def test_other_adapters_saved_beside_one_are_named(tmp_path):
    """peft saves a model's second adapter in a subfolder of the first's (adapter/second/): the source named
    only the first, and nothing said the other was there."""
    pm = _tiny_adapter(tmp_path, seed=9)
    pm.add_adapter("second", peft.LoraConfig(r=2, target_modules=["sq"]))
    pm.save_pretrained(str(tmp_path / "both"))
    assert (tmp_path / "both" / "second" / "adapter_config.json").is_file()
    (tmp_path / "both" / "logs").mkdir()  # a subfolder of no adapter (no adapter_config.json): not named
    r = htsr.analyze(tmp_path / "both", min_evals=2)
    assert r.source == (f"{tmp_path / 'both'} (other adapters beside it, not read: second/; give one's folder to "
                        "analyse it)")
    assert {x.name for x in htsr.analyze(tmp_path / "both" / "second", min_evals=2).layers} == {"sq#delta"}


def test_factors_of_no_matrix_and_runaway_patterns(tmp_path):
    """A 1-D lora_A without its lora_B stopped the run with an IndexError (its row took A's shape), and so did
    a 0-D lora_B with a base; an alpha_pattern key repeating a repeated group ('(.*.){13}Z') took 24 s on
    one module name: refused in one line."""
    d = tmp_path / "a"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    safetensors_torch.save_file({"base_model.model.q.lora_A.weight": torch.zeros(4),
                                 "base_model.model.sq.lora_A.weight": torch.zeros(4, 80),
                                 "base_model.model.sq.lora_B.weight": torch.zeros(())}, str(d / "adapter_model.safetensors"))
    torch.manual_seed(10)
    safetensors_torch.save_file({k: v.contiguous() for k, v in Tiny().state_dict().items()},
                                str(tmp_path / "base.safetensors"))
    for base in (None, tmp_path / "base.safetensors"):
        rows = {x.name: x.status for x in htsr.analyze(d, base=base, min_evals=2).layers}
        assert rows["q#delta"] == "skipped: lora_B is missing from the adapter"
        assert rows["sq#delta"].startswith("skipped: LoRA factors of shapes")
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "alpha_pattern": {"(.*.){13}Z": 2}}))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(d)
    one_line_source_error(ei, "alpha_pattern key '(.*.){13}Z' repeats a group that repeats itself")
    # a repeated group of what cannot overlap is matched in linear time: applied, as peft applies it
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                       "alpha_pattern": {r"(?:\w+\.)*sq": 2}}))
    assert {x.name for x in htsr.analyze(d, min_evals=2).layers} == {"q#delta", "sq#delta"}


# single-file LoRAs: written by diffusers 0.42.1 (tests/data/diffusers_lora/make_diffusers_lora.py, which also
# stored peft's own singular values of each ΔW and of the UNet's W + ΔW)
LORA_DATA = Path(__file__).parent / "data" / "diffusers_lora"


def _sv(ref) -> np.ndarray:
    """The singular values of a row's matrix (a LoRA update from its factors, else the dense matrix)."""
    m = ref.load()
    if hasattr(m, "B"):
        return np.sqrt(lowrank_eigenvalues(m.B, m.A, m.scale))[::-1]
    return np.linalg.svd(np.asarray(m, dtype=np.float64), compute_uv=False)


def _kohya(name: str) -> str:  # diffusers' module name as convert_state_dict_to_kohya spells it
    return name.replace("unet.", "lora_unet.").replace("text_encoder.", "lora_te1.").replace(".", "_")


def test_a_diffusers_lora_file_is_its_updates_scaled_by_each_components_config():
    """pytorch_lora_weights.safetensors holds a UNet's factors (r 4, lora_alpha 8: scale 2) and a text
    encoder's (r 2, lora_alpha 2, rsLoRA: scale √2), each component's LoraConfig in the header. Every module is
    one #delta row whose singular values are peft's get_delta_weight's; read as factors with one scale they
    were 36 modules x 2 dense rows."""
    expected = np.load(LORA_DATA / "expected.npz")
    src = open_source(LORA_DATA / "pytorch_lora_weights.safetensors")
    assert src.description.endswith("(a single-file LoRA, diffusers names)")
    rows = list(src)
    assert len(rows) == 36 and all(t.name.endswith("#delta") and t.kind == "lora" for t in rows)
    for t in rows:
        ref = expected["delta:" + t.name.removesuffix("#delta")]
        # factors stored in float32, peft's product formed in float32: 1e-6 of the largest
        np.testing.assert_allclose(_sv(t), ref[:len(_sv(t))], rtol=0, atol=1e-6 * ref[0])
        assert ref[len(_sv(t)):].max(initial=0) < 1e-6 * ref[0]  # and the rest of peft's are zero


def test_a_kohya_lora_file_is_scaled_by_its_alpha_tensors():
    """kohya.safetensors is the same factors through diffusers' convert_state_dict_to_kohya: lora_down /
    lora_up under kohya-ss's names, with an .alpha of r per module (the converter drops lora_alpha), so each
    ΔW is peft's divided by that component's scale (2 for the UNet, √2 for the text encoder)."""
    expected = np.load(LORA_DATA / "expected.npz")
    src = open_source(LORA_DATA / "kohya.safetensors")
    assert src.description.endswith("(a single-file LoRA, kohya-ss names)")
    refs = {_kohya(k.removeprefix("delta:")): k for k in expected.files if k.startswith("delta:")}
    rows = list(src)
    assert sorted(t.name.removesuffix("#delta") for t in rows) == sorted(refs)
    for t in rows:
        key = refs[t.name.removesuffix("#delta")]
        ref = expected[key] / (2.0 if key.startswith("delta:unet.") else math.sqrt(2))
        np.testing.assert_allclose(_sv(t), ref[:len(_sv(t))], rtol=0, atol=1e-6 * ref[0])  # (as above)
    # an alpha is its update's, which counts once, as its factors do (they had been 36 tensors not analysed)
    assert src.not_weights == [] and htsr.analyze(LORA_DATA / "kohya.safetensors").num_tensors == 36


def test_a_single_file_lora_with_base_merges_into_the_base_by_either_name_spelling():
    """With the UNet as the base: diffusers' names match it by dropping 'unet.', kohya-ss's by reading '_' as
    '.'; every UNet module's #merged equals W + ΔW (peft's fuse_lora for the diffusers file; for the kohya file,
    W + up·down from the file, its scale 1), and the text encoder's modules say the base lacks them."""
    expected = np.load(LORA_DATA / "expected.npz")
    base = LORA_DATA / "unet.safetensors"
    src = open_source(LORA_DATA / "pytorch_lora_weights.safetensors").with_base(open_source(base))
    assert src.description.endswith("(module names matched to the base's by dropping 'unet.')")
    merged = [t for t in src if t.name.endswith("#merged")]
    assert len(merged) == 36
    for t in merged:
        if t.name.startswith("text_encoder."):
            with pytest.raises(LayerSkipped, match="the base has no tensor text_encoder"):
                t.load()
            continue
        ref = expected["merged:" + t.name.removesuffix("#merged")]
        np.testing.assert_allclose(_sv(t), ref, rtol=0, atol=1e-6 * ref[0])  # float32 W + ΔW: as above
    weights = load_file(str(base))
    factors = load_file(str(LORA_DATA / "kohya.safetensors"))
    src = open_source(LORA_DATA / "kohya.safetensors").with_base(open_source(base))
    assert src.description.endswith("(module names matched to the base's by reading the adapter's '_' as '.')")
    done = 0
    for t in src:
        if not t.name.endswith("#merged") or t.name.startswith("lora_te1_"):
            continue
        module = t.name.removesuffix("#merged")
        name = next(k for k in weights if k.endswith(".weight") and "lora_unet_" + k[:-7].replace(".", "_") == module)
        W = weights[name].astype(np.float64) + factors[f"{module}.lora_up.weight"].astype(np.float64) @ \
            factors[f"{module}.lora_down.weight"].astype(np.float64)
        np.testing.assert_allclose(np.asarray(t.load(), dtype=np.float64), W, rtol=0, atol=1e-6)  # float32 sums
        done += 1
    assert done == 32


def test_a_folder_of_one_lora_file_is_that_lora(tmp_path):
    """diffusers saves a LoRA as a folder holding pytorch_lora_weights.safetensors alone."""
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(
        (LORA_DATA / "pytorch_lora_weights.safetensors").read_bytes())
    r = htsr.analyze(tmp_path, min_evals=2)
    assert r.source == f"{tmp_path / 'pytorch_lora_weights.safetensors'} (a single-file LoRA, diffusers names)"
    assert len(r.layers) == 36 and all(x.kind == "lora" for x in r.layers)


def test_kohya_alphas_lycoris_parts_and_what_is_not_a_lora_file(tmp_path):
    """alpha / r per module (alpha 0 read as r, as kohya-ss does; no .alpha: scale 1); LyCORIS's LoHa and LoKr
    modules are formed from their parts (alpha / r, r LoHa's inner size; a LoKr of two full factors: scale 1),
    its OFT modules skipped rows naming the algorithm, its full update (.diff) a dense #delta row, a DoRA magnitude
    (dora_scale) leaves #merged unformed. Not LoRA files: a model's state dict holding adapted layers (their own
    weight beside the factors), and a PEFT adapter's file without its adapter_config.json."""
    rng = np.random.default_rng(3)
    down, up = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((48, 8)).astype(np.float32)
    f = tmp_path / "k.safetensors"
    save_file({"lora_unet_a.lora_down.weight": down, "lora_unet_a.lora_up.weight": up,
               "lora_unet_a.alpha": np.array(4.0, np.float16),
               "lora_unet_b.lora_down.weight": down, "lora_unet_b.lora_up.weight": up,
               "lora_unet_b.alpha": np.array(0.0, np.float32),
               "lora_unet_c.lora_down.weight": down, "lora_unet_c.lora_up.weight": up,
               "lora_unet_c.dora_scale": np.ones((48, 1), np.float32),
               "lora_unet_d.hada_w1_a": up, "lora_unet_d.hada_w1_b": down,
               "lora_unet_d.hada_w2_a": up, "lora_unet_d.hada_w2_b": down, "lora_unet_d.alpha": np.array(8.0, np.float32),
               "lora_unet_e.lokr_w1": np.ones((4, 4), np.float32), "lora_unet_e.lokr_w2": down,
               "lora_unet_e.alpha": np.array(3.0, np.float32),
               "lora_unet_g.oft_blocks": np.ones((4, 16, 16), np.float32),
               "lora_unet_f.diff": up @ down, "lora_unet_f.diff_b": np.ones(48, np.float32)}, str(f))
    src = open_source(f)
    rows = {t.name: t for t in src}
    assert set(rows) == {f"lora_unet_{m}#delta" for m in "abcdefg"}
    for m, scale in (("a", 0.5), ("b", 1.0), ("c", 1.0)):
        np.testing.assert_allclose(_sv(rows[f"lora_unet_{m}#delta"]), scale * np.linalg.svd(
            up.astype(np.float64) @ down, compute_uv=False)[:8], rtol=1e-9)  # exact QR path vs dense SVD
    # LoHa: alpha 8 / r 8 = scale 1 on (up·down) ∘ (up·down); LoKr of full factors: scale 1 whatever its alpha
    # (exact float64 paths vs dense SVDs: 1e-9)
    # (of rank 36 ≤ r(r+1)/2 here, its two pairs being one: the rest are rounding, compared to σ_max)
    d = up.astype(np.float64) @ down
    ref = np.linalg.svd(d * d, compute_uv=False)
    np.testing.assert_allclose(_sv(rows["lora_unet_d#delta"]), ref, rtol=1e-9, atol=1e-12 * ref[0])
    assert rows["lora_unet_e#delta"].shape == (32, 256)
    ref = np.sort(np.linalg.svd(np.kron(np.ones((4, 4)), down.astype(np.float64)), compute_uv=False) ** 2)
    np.testing.assert_allclose(matrix_eigenvalues(rows["lora_unet_e#delta"].load())[0], ref, rtol=1e-9,
                               atol=1e-12 * ref[-1])  # (of rank 8: ones(4, 4) is rank 1; the rest rounding or 0)
    with pytest.raises(LayerSkipped, match="^an OFT update .*, which htsr does not form$"):
        rows["lora_unet_g#delta"].load()
    assert rows["lora_unet_f#delta"].kind == "dense"
    np.testing.assert_array_equal(rows["lora_unet_f#delta"].load(), up @ down)
    assert {n for n, _ in src.not_weights} == {"lora_unet_c.dora_scale", "lora_unet_f.diff_b"}
    save_file({"a.weight": rng.standard_normal((48, 64)).astype(np.float32),
               "c.weight": rng.standard_normal((48, 64)).astype(np.float32)}, str(tmp_path / "base.safetensors"))
    with_base = {t.name: t for t in src.with_base(open_source(tmp_path / "base.safetensors"))}
    assert with_base["lora_unet_a#merged"].load().shape == (48, 64)
    with pytest.raises(LayerSkipped, match="dora_scale"):
        with_base["lora_unet_c#merged"].load()
    # a model's own state dict with peft's layers in it: its factors are listed, the weights analysed
    save_file({"q.base_layer.weight": up @ down, "q.lora_A.weight": down, "q.lora_B.weight": up},
              str(tmp_path / "model.safetensors"))
    assert type(open_source(tmp_path / "model.safetensors")).__name__ == "SafetensorsFile"
    # a PEFT adapter's own file without its config: the scale is unknown, the factors listed (as before)
    save_file({"base_model.model.q.lora_A.weight": down, "base_model.model.q.lora_B.weight": up},
              str(tmp_path / "adapter_model.safetensors"))
    assert type(open_source(tmp_path / "adapter_model.safetensors")).__name__ == "SafetensorsFile"


def test_a_lycoris_file_of_loha_and_lokr_is_matched_to_its_base_conv_by_kohya_names(tmp_path):
    """A LyCORIS file (kohya-ss names, alpha / r): a conv's LoHa update, stored flattened (out x in·k·k), is
    the base conv's shape once --base gives it, one matrix per kernel position; a linear LoKr update is
    w1 ⊗ (w2a·w2b) scaled alpha / r with r the pair's. Against numpy's dense ΔW, reshaped as LyCORIS does."""
    rng = np.random.default_rng(11)
    f32 = np.float32
    conv, lin = "down_blocks.0.resnets.0.conv1", "down_blocks.0.attentions.0.proj_in"
    base = {f"{conv}.weight": rng.standard_normal((32, 16, 3, 3)).astype(f32),
            f"{lin}.weight": rng.standard_normal((64, 96)).astype(f32)}
    save_file(base, str(tmp_path / "unet.safetensors"))
    h = [rng.standard_normal(s).astype(f32) for s in ((32, 4), (4, 144), (32, 4), (4, 144))]
    k = [rng.standard_normal(s).astype(f32) for s in ((8, 8), (8, 2), (2, 12))]
    kc, kl = "lycoris_" + conv.replace(".", "_"), "lycoris_" + lin.replace(".", "_")
    save_file({f"{kc}.hada_w1_a": h[0], f"{kc}.hada_w1_b": h[1], f"{kc}.hada_w2_a": h[2], f"{kc}.hada_w2_b": h[3],
               f"{kc}.alpha": np.array(2.0, f32), f"{kl}.lokr_w1": k[0], f"{kl}.lokr_w2_a": k[1],
               f"{kl}.lokr_w2_b": k[2], f"{kl}.alpha": np.array(1.0, f32)}, str(tmp_path / "lyco.safetensors"))
    h64, k64 = [x.astype(np.float64) for x in h], [x.astype(np.float64) for x in k]
    d_conv = (0.5 * (h64[0] @ h64[1]) * (h64[2] @ h64[3])).reshape(32, 16, 3, 3)  # alpha 2 / r 4
    d_lin = 0.5 * np.kron(k64[0], k64[1] @ k64[2])  # alpha 1 / r 2
    src = open_source(tmp_path / "lyco.safetensors").with_base(open_source(tmp_path / "unet.safetensors"))
    rows = {t.name: t for t in src}
    assert rows[f"{kc}#delta"].shape == (32, 16, 3, 3) and rows[f"{kl}#delta"].shape == (64, 96)
    got = np.sort(np.concatenate([matrix_eigenvalues(m)[0] for m in rows[f"{kc}#delta"].load()]))
    ref = _conv_evals(d_conv, 1.0)
    np.testing.assert_allclose(got, ref, atol=1e-10 * ref[-1])  # float64 factors vs float64 dense: 1e-10
    ref = np.sort(np.linalg.svd(d_lin, compute_uv=False) ** 2)
    np.testing.assert_allclose(matrix_eigenvalues(rows[f"{kl}#delta"].load())[0], ref, atol=1e-10 * ref[-1])
    # W + ΔW in float32 (1e-6 of the largest entry: float32 rounding of the sum)
    for name, module, d in ((kc, conv, d_conv), (kl, lin, d_lin)):
        want = base[f"{module}.weight"] + d
        np.testing.assert_allclose(rows[f"{name}#merged"].load(), want, atol=1e-6 * np.abs(want).max())
        assert rows[f"{name}#base"].name == f"{name}#base"
    # without the base the conv's update is its stored out x in·k·k matrix
    alone = {t.name: t for t in open_source(tmp_path / "lyco.safetensors")}
    assert alone[f"{kc}#delta"].shape == (32, 144)


def test_loha_and_lokr_parts_that_do_not_make_an_update_are_skipped_rows(tmp_path):
    """A LoHa module without its second pair, a LoKr module whose low-rank pair does not multiply, a LoHa of rank
    0 (its alpha finite: not blamed): skipped rows saying so; the other modules are read."""
    f32 = np.ones
    save_file({"lora_unet_a.hada_w1_a": f32((8, 2), np.float32), "lora_unet_a.hada_w1_b": f32((2, 6), np.float32),
               "lora_unet_b.lokr_w1_a": f32((4, 2), np.float32), "lora_unet_b.lokr_w1_b": f32((3, 4), np.float32),
               "lora_unet_b.lokr_w2": f32((5, 5), np.float32),
               "lora_unet_c.lokr_w1": f32((2, 2), np.float32), "lora_unet_c.lokr_w2": f32((5, 5), np.float32),
               **{f"lora_unet_d.hada_w{i}_{ab}": np.ones((8, 0) if ab == "a" else (0, 6), np.float32)
                  for i in (1, 2) for ab in "ab"}, "lora_unet_d.alpha": np.array(4.0, np.float32),
               **{f"lora_unet_e.hada_w{i}_{ab}": np.full((8, 2) if ab == "a" else (2, 6), 1e38, np.float32)
                  for i in (1, 2) for ab in "ab"},
               # a whole LoHa with one LoRA factor beside it (lora_down alone): which is the update is not known
               **{f"lora_unet_f.hada_w{i}_{ab}": f32((8, 2) if ab == "a" else (2, 6), np.float32)
                  for i in (1, 2) for ab in "ab"}, "lora_unet_f.lora_down.weight": f32((2, 6), np.float32),
               # two pairs of other in-sizes (6 and 7): no Hadamard product
               **{f"lora_unet_g.hada_w{i}_{ab}": f32((8, 2) if ab == "a" else (2, 5 + i), np.float32)
                  for i in (1, 2) for ab in "ab"},
               # a LoKr w1 of three axes, where a matrix belongs
               "lora_unet_h.lokr_w1": f32((2, 2, 1), np.float32), "lora_unet_h.lokr_w2": f32((5, 5), np.float32)},
              str(tmp_path / "bad.safetensors"))
    rows = {x.name: x for x in htsr.analyze(tmp_path / "bad.safetensors", min_evals=2).layers}
    assert rows["lora_unet_a#delta"].status == (
        "skipped: a LoHa update needs hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b (and hada_t1, hada_t2 with a "
        "Tucker core), not hada_w1_a, hada_w1_b; re-save the adapter")
    assert rows["lora_unet_b#delta"].status.startswith("skipped: LoKr parts of shapes lokr_w1_a [4, 2], lokr_w1_b "
                                                       "[3, 4], lokr_w2 [5, 5] do not fit together")
    # (ones ⊗ ones: rank 1, so not fitted, but formed)
    assert rows["lora_unet_c#delta"].status.startswith("not_fitted: rank-10 update has 1 nonzero eigenvalues")
    assert rows["lora_unet_d#delta"].status == (
        "skipped: hada_w1_a [8, 0], hada_w1_b [0, 6], hada_w2_a [8, 0], hada_w2_b [0, 6]: parts of size 0, no "
        "update; re-save the adapter")
    # parts past float64's range: failed, as a dense layer's weights would be, not numbers from overflowed sums
    assert rows["lora_unet_e#delta"].status.startswith("failed: eigenvalues beyond float64's range")
    assert rows["lora_unet_c#delta"].shape == "10x10" and rows["lora_unet_c#delta"].eig_method == "kron64"
    assert rows["lora_unet_f#delta"].status == (
        "skipped: LoRA factors and LoHa / LoKr parts on one module; re-save the adapter")
    assert rows["lora_unet_g#delta"].status == (
        "skipped: LoHa parts of shapes hada_w1_a [8, 2], hada_w1_b [2, 6], hada_w2_a [8, 2], hada_w2_b [2, 7] do not "
        "fit together; re-save the adapter")
    assert rows["lora_unet_h#delta"].status == (
        "skipped: lokr_w1 of shape [2, 2, 1], where a 2-D part belongs; re-save the adapter")


def test_a_lora_files_bad_metadata_is_one_line(tmp_path):
    f = tmp_path / "pytorch_lora_weights.safetensors"
    down, up = np.ones((2, 8), np.float32), np.ones((8, 2), np.float32)
    save_file({"unet.q.lora_A.weight": down, "unet.q.lora_B.weight": up}, str(f),
              metadata={"lora_adapter_metadata": "{not json"})
    with pytest.raises(SourceError) as ei:
        htsr.analyze(f)
    one_line_source_error(ei, f"{f}: its lora_adapter_metadata is not JSON")
    save_file({"unet.q.lora_A.weight": down, "unet.q.lora_B.weight": up}, str(f),
              metadata={"lora_adapter_metadata": json.dumps({"unet.r": 2, "unet.lora_alpha": "x"})})
    with pytest.raises(SourceError) as ei:
        htsr.analyze(f)
    one_line_source_error(ei, "lora_alpha and r must be numbers")


def test_a_config_rank_of_json_infinity_is_one_line_and_a_lokr_rank_0_a_skipped_row(tmp_path):
    """r = 1e999 (JSON's infinity, no integer) had ended the run with an OverflowError traceback; a LoKr whose
    config rank is 0, with a ZeroDivisionError row: its scale divides by that rank."""
    rng = np.random.default_rng(3)
    for cfg in ({"r": 1e999}, {"r": 8, "rank_pattern": {"l1": 1e999}}):
        folder = tmp_path / f"inf{len(cfg)}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 16, **cfg}))
        save_file({"base_model.model.l1.lora_A.weight": rng.standard_normal((8, 48)).astype(np.float32),
                   "base_model.model.l1.lora_B.weight": rng.standard_normal((64, 8)).astype(np.float32)},
                  str(folder / "adapter_model.safetensors"))
        with pytest.raises(SourceError) as ei:
            htsr.analyze(folder)
        one_line_source_error(ei, str(folder / "adapter_config.json"), "lora_alpha and r must be numbers")
    torch.manual_seed(0)
    pm = peft.get_peft_model(LycorisNet(), _LYCORIS_CONFIGS["lokr"]())
    pm.save_pretrained(str(tmp_path / "lokr"))
    cfg = json.loads((tmp_path / "lokr" / "adapter_config.json").read_text())
    (tmp_path / "lokr" / "adapter_config.json").write_text(json.dumps({**cfg, "rank_pattern": {"fc2": 0}}))
    rows = _rows(htsr.analyze(tmp_path / "lokr", min_evals=2))
    assert rows["fc2#delta"][0].status == "skipped: the config's rank r = 0 is not positive; re-save the adapter"
    assert rows["fc#delta"][0].status == "ok"  # the others as they were


def test_single_file_lora_formats_diffusers_loads_and_what_kohya_names_match(tmp_path):
    """Review of the single-file reader: diffusers' old attention-processor names (the UNet's
    'processor.to_q_lora.down', the text encoder's 'self_attn.to_q_lora.down', which diffusers maps to q_proj)
    had been dense factor rows; a DoRA file without metadata (diffusers tells it by its magnitude vectors) was
    merged as plain LoRA; a LyCORIS Tucker LoCon gave an 'ok' row of up·down (its core ignored) beside its
    skipped one; SDXL's lora_te2_ path matched text encoder 1's weight; an exact path lost to a longer one
    ending with it (single_transformer_blocks); a NaN alpha was read as scale 1."""
    rng = np.random.default_rng(5)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    old = {"unet.down.attn1.processor.to_q_lora.down.weight": f32(4, 16),
           "unet.down.attn1.processor.to_q_lora.up.weight": f32(16, 4),
           "text_encoder.layers.0.self_attn.to_out_lora.down.weight": f32(4, 16),
           "text_encoder.layers.0.self_attn.to_out_lora.up.weight": f32(16, 4),
           # (the UNet's output projection is diffusers' to_out.0; a text encoder's to_k is CLIP's k_proj)
           "unet.down.attn1.processor.to_out_lora.down.weight": f32(4, 16),
           "unet.down.attn1.processor.to_out_lora.up.weight": f32(16, 4),
           "text_encoder.layers.0.self_attn.to_k_lora.down.weight": f32(4, 16),
           "text_encoder.layers.0.self_attn.to_k_lora.up.weight": f32(16, 4)}
    save_file(old, str(tmp_path / "old.safetensors"))
    assert {t.name for t in open_source(tmp_path / "old.safetensors")} == {
        "unet.down.attn1.to_q#delta", "text_encoder.layers.0.self_attn.out_proj#delta",
        "unet.down.attn1.to_out.0#delta", "text_encoder.layers.0.self_attn.k_proj#delta"}

    W = f32(16, 32)
    save_file({"attn.to_q.weight": W, "attn.to_k.weight": W}, str(tmp_path / "base.safetensors"))
    A, B, m = f32(4, 32), f32(16, 4), np.abs(f32(16)) + 1
    save_file({f"unet.attn.to_{p}.{k}": v for p in "qk" for k, v in (("lora_A.weight", A), ("lora_B.weight", B),
                                                                      ("lora_magnitude_vector", m))},
              str(tmp_path / "dora.safetensors"))  # (two modules: a base matched by dropping 'unet.' takes two)
    merged = {t.name: t for t in htsr.io.open_source(tmp_path / "dora.safetensors").with_base(
        open_source(tmp_path / "base.safetensors"))}["unet.attn.to_q#merged"].load()
    V = W.astype(np.float64) + B.astype(np.float64) @ A  # scale 1: no alpha stored
    V = m[:, None] / np.linalg.norm(V, axis=1, keepdims=True) * V  # peft's DoRA merge, per output row
    # float32 sums: each entry within 1e-5 of itself, or of the row's scale for one near 0 (terms ~1, eps 1.2e-7)
    np.testing.assert_allclose(merged, V, rtol=1e-5, atol=1e-6 * np.abs(V).max())

    save_file({"lycoris_c.lora_down.weight": f32(4, 8, 1, 1), "lycoris_c.lora_mid.weight": f32(4, 4, 3, 3),
               "lycoris_c.lora_up.weight": f32(8, 4, 1, 1), "lycoris_c.alpha": np.array(4.0, np.float32),
               "lycoris_n.lora_down.weight": f32(4, 8), "lycoris_n.lora_up.weight": f32(8, 4),
               "lycoris_n.alpha": np.array(np.nan, np.float32)}, str(tmp_path / "tucker.safetensors"))
    rows = {x.name: x.status for x in htsr.analyze(tmp_path / "tucker.safetensors", min_evals=2).layers}
    assert rows == {"lycoris_c#delta": "skipped: a LoCon update with a Tucker core (lora_mid), which htsr does not "
                                       "form",
                    "lycoris_n#delta": "skipped: no scale: the LoRA's alpha is not one finite number (NaN, infinite, "
                                       "or several)"}

    base = {"conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": f32(16, 16),
            "transformer_blocks.0.attn.to_q.weight": f32(24, 24),
            "single_transformer_blocks.0.attn.to_q.weight": f32(24, 24)}
    save_file(base, str(tmp_path / "sdxl.safetensors"))
    lora = {}
    for module, n in (("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 16),
                      ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 32),  # OpenCLIP's in the base
                      ("lora_transformer_transformer_blocks_0_attn_to_q", 24)):
        lora |= {f"{module}.lora_down.weight": f32(4, n), f"{module}.lora_up.weight": f32(n, 4)}
    save_file(lora, str(tmp_path / "k.safetensors"))
    rows = {x.name: x for x in htsr.analyze(tmp_path / "k.safetensors", base=tmp_path / "sdxl.safetensors",
                                            min_evals=2).layers}
    assert rows["lora_te1_text_model_encoder_layers_0_self_attn_q_proj#base"].shape == "16x16"
    assert rows["lora_te2_text_model_encoder_layers_0_self_attn_q_proj#base"].status == (
        "skipped: no base tensor of the update's shape is lora_te2_text_model_encoder_layers_0_self_attn_q_proj "
        "with '_' read as '.'")
    got = rows["lora_transformer_transformer_blocks_0_attn_to_q#base"]
    want = htsr.analyze({"transformer_blocks.0.attn.to_q.weight": base["transformer_blocks.0.attn.to_q.weight"]},
                        min_evals=2).layers[0]
    assert got.status == "ok" and got.log_norm == want.log_norm  # the exact path's weight, not single_…'s


def test_a_diffusers_pipeline_folder_is_its_components_and_a_loras_base(tmp_path):
    """A diffusers pipeline folder (model_index.json, a folder per component) had been refused ('its
    subfolders … hold weight files: give one'). Its components are read as one model, each tensor under its
    component's name: the names diffusers' own LoRA files use, so the pipeline is their base as it is (every
    module's #merged formed, the text encoder's too), and kohya-ss's names find their component by shape."""
    import shutil

    pipe = tmp_path / "pipe"
    for component, stored, name in (("unet", "unet.safetensors", "diffusion_pytorch_model.safetensors"),
                                    ("text_encoder", "text_encoder.safetensors", "model.safetensors")):
        (pipe / component).mkdir(parents=True)
        shutil.copy(LORA_DATA / stored, pipe / component / name)
    (pipe / "scheduler").mkdir()
    (pipe / "scheduler" / "scheduler_config.json").write_text("{}")
    (pipe / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"], "scheduler": ["diffusers", "PNDMScheduler"]}))
    r = htsr.analyze(pipe, min_evals=5)
    assert r.source == f"{pipe} (a diffusers pipeline: text_encoder/, unet/)"
    def same(x) -> dict:  # a row's values, NaN comparable
        return {k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in x.as_dict().items()}

    unet = htsr.analyze(LORA_DATA / "unet.safetensors", min_evals=5)
    assert [same(x) | {"name": "unet." + x.name} for x in unet.layers] == \
        [same(x) for x in r.layers if x.name.startswith("unet.")]
    expected = np.load(LORA_DATA / "expected.npz")
    for lora in ("pytorch_lora_weights.safetensors", "kohya.safetensors"):
        src = open_source(LORA_DATA / lora).with_base(open_source(pipe))
        merged = [t for t in src if t.name.endswith("#merged")]
        assert len(merged) == 36
        for t in merged:
            sv = _sv(t)  # (every module's base found: a missing one raises LayerSkipped here)
            key = "merged:" + t.name.removesuffix("#merged")
            if lora.startswith("pytorch") and key in expected:  # the UNet's, as diffusers fused them
                # (diffusers fused the update into float32 weights: rounding of the largest value, ~1e-7 of it)
                np.testing.assert_allclose(sv, expected[key], rtol=0, atol=1e-6 * expected[key][0])


def _two_component_pipeline(base: Path, W: np.ndarray) -> Path:
    """A diffusers pipeline folder whose unet/ and text_encoder/ each hold attn.to_q and attn.to_k = W."""
    for component in ("unet", "text_encoder"):
        (base / component).mkdir(parents=True)
        save_file({"attn.to_q.weight": W, "attn.to_k.weight": W}, str(base / component / "model.safetensors"))
    (base / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"],
                                                       "text_encoder": ["transformers", "CLIPTextModel"]}))
    return base


def _dora_factors(rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (4 x 32), B (16 x 4) and a magnitude vector (16) for _two_component_pipeline's weights."""
    return tuple(rng.standard_normal(s).astype(np.float32) for s in ((4, 32), (16, 4), (16,)))


def test_a_hub_pipeline_snapshot_and_what_a_lora_files_scale_depends_on_are_said(tmp_path):
    """A Hub snapshot of SDXL keeps its original single-file checkpoints beside model_index.json: the folder
    had been read as those files (an offset LoRA's factors as dense rows, sd_xl_base_1.0_0.9vae called a copy
    of sd_xl_base_1.0), never as the pipeline. A component's own notes (a variant left out) and a listed model
    with no weights here are said. A UNet's use_dora had turned off the text encoder's merges, and modules
    under no component of the metadata took scale 1 without a word."""
    import shutil

    pipe = tmp_path / "sdxl"
    for component, stored, name in (("unet", "unet.safetensors", "diffusion_pytorch_model.safetensors"),
                                    ("text_encoder", "text_encoder.safetensors", "model.safetensors")):
        (pipe / component).mkdir(parents=True)
        shutil.copy(LORA_DATA / stored, pipe / component / name)
    shutil.copy(LORA_DATA / "unet.safetensors", pipe / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    shutil.copy(LORA_DATA / "unet.safetensors", pipe / "sd_xl_base_1.0.safetensors")
    shutil.copy(LORA_DATA / "kohya.safetensors", pipe / "sd_xl_offset_example-lora_1.0.safetensors")
    (pipe / "model_index.json").write_text(json.dumps({
        "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "safety_checker": [None, None]}))
    r = htsr.analyze(pipe, min_evals=5)
    assert r.source == (f"{pipe} (a diffusers pipeline: text_encoder/, unet/) (unet/: "
                        "diffusion_pytorch_model.safetensors; the copies diffusion_pytorch_model.fp16.safetensors "
                        "left out) (vae/: listed, no weights here) (other weight files here, not read: "
                        "sd_xl_base_1.0.safetensors, sd_xl_offset_example-lora_1.0.safetensors)")
    assert all(x.name.startswith(("unet.", "text_encoder.")) for x in r.layers)

    rng = np.random.default_rng(8)
    W = rng.standard_normal((16, 32)).astype(np.float32)
    base, (A, B, m) = _two_component_pipeline(tmp_path / "pipe2", W), _dora_factors(rng)
    meta = {"unet.r": 4, "unet.lora_alpha": 4, "unet.use_dora": True, "text_encoder.r": 4, "text_encoder.lora_alpha": 4}
    tensors = {f"{c}.attn.to_{p}.{k}": v for c in ("unet", "text_encoder") for p in "qk"
               for k, v in (("lora_A.weight", A), ("lora_B.weight", B))}
    tensors |= {f"unet.attn.to_{p}.lora_magnitude_vector": np.abs(m) + 1 for p in "qk"}
    save_file(tensors, str(tmp_path / "l.safetensors"), metadata={"lora_adapter_metadata": json.dumps(meta)})
    rows = {t.name: t for t in open_source(tmp_path / "l.safetensors").with_base(open_source(base))}
    V = W.astype(np.float64) + B.astype(np.float64) @ A  # scale 1: lora_alpha 4 / r 4
    np.testing.assert_allclose(rows["text_encoder.attn.to_q#merged"].load(), V, rtol=1e-5)  # plain: no DoRA
    np.testing.assert_allclose(rows["unet.attn.to_q#merged"].load(),
                               (np.abs(m) + 1)[:, None] / np.linalg.norm(V, axis=1, keepdims=True) * V, rtol=1e-5)
    meta = {"transformer.r": 4, "transformer.lora_alpha": 8}
    save_file({k: v for k, v in tensors.items() if "magnitude" not in k}, str(tmp_path / "m.safetensors"),
              metadata={"lora_adapter_metadata": json.dumps(meta)})
    assert "4 modules, text_encoder.attn.to_k …, under no component of its lora_adapter_metadata (transformer): " \
           "scale 1, alpha = r" in open_source(tmp_path / "m.safetensors").description
    # (and they are read so: scale 1, not an unknown one)
    assert {t.name: t.load().scale for t in open_source(tmp_path / "m.safetensors")} == {
        f"{c}.attn.to_{p}#delta": 1.0 for c in ("unet", "text_encoder") for p in "qk"}
    # a kohya file with a whole model's weights beside its factors: they are said to be read as they are
    mixed = dict(load_file(str(LORA_DATA / "kohya.safetensors"))) | {"conv_in.weight": np.ones((8, 4, 3, 3), np.float32)}
    save_file(mixed, str(tmp_path / "mixed.safetensors"))
    assert open_source(tmp_path / "mixed.safetensors").description.endswith(
        "(1 tensors beside the updates, conv_in.weight …: analysed as they are, never as deltas)")
    with pytest.raises(SourceError) as ei:
        htsr.analyze(LORA_DATA / "unet.safetensors", base=LORA_DATA / "kohya.safetensors")
    one_line_source_error(ei, "--base is a LoRA adapter; give the base model")


def test_a_lora_file_beside_a_models_weights_is_left_out_and_named(tmp_path):
    """A folder of loose safetensors holding a model and a single-file LoRA: the LoRA's factors had been read
    as layers of the model."""
    import shutil

    shutil.copy(LORA_DATA / "unet.safetensors", tmp_path / "diffusion_pytorch_model.safetensors")
    shutil.copy(LORA_DATA / "kohya.safetensors", tmp_path / "offset-lora.safetensors")
    r = htsr.analyze(tmp_path, min_evals=5)
    assert r.source == (f"{tmp_path} (offset-lora.safetensors left out: a LoRA, an update of the model: analyse "
                        "it on its own, with --base for W and W + ΔW)")
    assert [x.name for x in r.layers] == [x.name for x in htsr.analyze(LORA_DATA / "unet.safetensors",
                                                                        min_evals=5).layers]

    # a folder of nothing but single-file LoRAs (no model beside them) is not emptied: every file is read, none
    # said to be left out (leaving all of them out had gone unseen: only one LoRA beside a model was tested)
    from htsr.io.safetensors import ShardedSafetensors

    only = tmp_path / "only_loras"
    only.mkdir()
    shutil.copy(LORA_DATA / "kohya.safetensors", only / "kohya.safetensors")
    shutil.copy(LORA_DATA / "pytorch_lora_weights.safetensors", only / "pytorch_lora_weights.safetensors")
    src = ShardedSafetensors(only)
    assert [f.path.name for f in src.files] == ["kohya.safetensors", "pytorch_lora_weights.safetensors"]
    assert src.description == str(only) and len(src) == 108 + 72  # (the two files' tensors, no name shared)


def test_review_pipeline_notes_bad_index_keys_zero_d_factors_and_filtered_counts(tmp_path):
    """A pipeline component's other weight files (a pytorch_model.bin beside model.safetensors) are named as
    the folder names them alone. model_index.json keys that are no
    plain folder names ('.', '..', '/etc': a RecursionError, a look outside) are no components. A 0-D lora_down
    gave an IndexError. With --layers '#delta' and a base, the #base rows left out are tensors not analysed,
    the #merged ones no tensors at all."""
    import shutil

    pipe = tmp_path / "pipe"
    (pipe / "text_encoder").mkdir(parents=True)
    shutil.copy(LORA_DATA / "text_encoder.safetensors", pipe / "text_encoder" / "model.safetensors")
    (pipe / "text_encoder" / "pytorch_model.bin").write_bytes(b"x")  # named only: never opened
    (pipe / "unet").mkdir()
    shutil.copy(LORA_DATA / "unet.safetensors", pipe / "unet" / "unet.safetensors")
    (pipe / "model_index.json").write_text(json.dumps({
        "text_encoder": ["transformers", "CLIPTextModel"], "unet": ["diffusers", "UNet2DConditionModel"],
        ".": ["diffusers", "UNet2DConditionModel"], "..": ["x", "Y"], "/etc": ["x", "Y"]}))
    assert htsr.analyze(pipe, min_evals=5).source == (
        f"{pipe} (a diffusers pipeline: text_encoder/, unet/) (text_encoder/: other weight files here, not read: "
        "pytorch_model.bin)")

    save_file({"lora_unet_a.lora_down.weight": np.ones((), np.float32),
               "lora_unet_a.lora_up.weight": np.ones((8, 4), np.float32),
               "lora_unet_b.lora_down.weight": np.ones((4, 8), np.float32),
               "lora_unet_b.lora_up.weight": np.ones((8, 4), np.float32)}, str(tmp_path / "z.safetensors"))
    rows = {x.name: x.status for x in htsr.analyze(tmp_path / "z.safetensors", min_evals=2).layers}
    assert rows["lora_unet_a#delta"].startswith("skipped: LoRA factors of shapes") and rows["lora_unet_b#delta"]

    r = htsr.analyze(LORA_DATA / "pytorch_lora_weights.safetensors", base=pipe, layers="#delta", min_evals=2)
    assert len(r.layers) == 36 and r.num_tensors == 72  # 36 updates and 36 base weights, no #merged
    assert sum(x.count for x in r.not_analysed) == 36


def test_review_pipeline_components_shards_variants_and_failures_and_dora_per_component(tmp_path):
    """A component sharded under diffusers' index name (diffusion_pytorch_model.safetensors.index.json) with a
    shard missing had been read as its other shards, silently; a component of .bin variants (x.bin beside
    x.fp16.bin) stopped the pipeline ('give one'), as did any component htsr cannot read. Without metadata, a
    text encoder's plain LoRA had been skipped as DoRA because the UNet's modules carried magnitude vectors."""
    from safetensors.numpy import save_file as save

    rng = np.random.default_rng(9)
    pipe = tmp_path / "pipe"
    t = pipe / "transformer"
    t.mkdir(parents=True)
    for k in (1, 3):
        save({f"blocks.{k}.weight": rng.standard_normal((8, 8)).astype(np.float32)},
             str(t / f"diffusion_pytorch_model-0000{k}-of-00003.safetensors"))
    (t / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        f"blocks.{k}.weight": f"diffusion_pytorch_model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)}}))
    v = pipe / "vae"
    v.mkdir()
    torch.save({"dec.weight": torch.randn(8, 8)}, str(v / "diffusion_pytorch_model.bin"))
    torch.save({"dec.weight": torch.randn(8, 8).half()}, str(v / "diffusion_pytorch_model.fp16.bin"))
    (pipe / "model_index.json").write_text(json.dumps({"transformer": ["diffusers", "FluxTransformer2DModel"],
                                                       "vae": ["diffusers", "AutoencoderKL"]}))
    r = htsr.analyze(pipe, min_evals=2)
    assert [x.name for x in r.layers] == ["vae.dec"]
    assert "(transformer/ not read: " in r.source and "diffusion_pytorch_model-00002-of-00003.safetensors is " \
        "missing" in r.source and "(other weight files here, not read: diffusion_pytorch_model.fp16.bin)" in r.source

    W = rng.standard_normal((16, 32)).astype(np.float32)
    base, (A, B, m) = _two_component_pipeline(tmp_path / "pipe2", W), _dora_factors(rng)
    tensors = {f"{c}.attn.to_{p}.{k}": x for c in ("unet", "text_encoder") for p in "qk"
               for k, x in (("lora_A.weight", A), ("lora_B.weight", B))}
    tensors |= {f"unet.attn.to_{p}.lora_magnitude_vector": np.abs(m) + 1 for p in "qk"}
    save(tensors, str(tmp_path / "l.safetensors"))  # no metadata: DoRA told by each module's vectors
    rows = {t.name: t for t in open_source(tmp_path / "l.safetensors").with_base(open_source(base))}
    V = W.astype(np.float64) + B.astype(np.float64) @ A
    np.testing.assert_allclose(rows["text_encoder.attn.to_q#merged"].load(), V, rtol=1e-5)  # (float32 sums)
    np.testing.assert_allclose(rows["unet.attn.to_q#merged"].load(),
                               (np.abs(m) + 1)[:, None] / np.linalg.norm(V, axis=1, keepdims=True) * V, rtol=1e-5)


def test_a_merged_row_kept_by_a_filter_counts_its_base_and_update_as_analysed(adapter, tmp_path):
    """--layers '#merged$' (or --kinds dense) keeps W + ΔW and leaves the #base and #delta rows out: the tensors
    the merge reads are analysed by it, not listed as 'not matched by option 'layers'' (all 12 of 12 had been)."""
    d, _, _ = adapter
    full = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2)
    merged = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2, layers="#merged$")
    assert {x.name for x in merged.layers} == {x.name for x in full.layers if x.name.endswith("#merged")}
    assert merged.num_tensors == full.num_tensors and merged.not_analysed == full.not_analysed
    dense = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2, kinds=["dense"])
    # (the embedding's merge is no dense row: its update is listed; the Linear layers' are not)
    assert {n.reason: n.examples for n in dense.not_analysed} == {
        "kind embedding not in option 'kinds'": ("emb#base",), "kind lora not in option 'kinds'": ("emb#delta",)}
    # (a filter that leaves the merge out lists them, as before)
    delta = htsr.analyze(d / "adapter", base=d / "base.safetensors", min_evals=2, layers="#delta$")
    assert [n.examples[0] for n in delta.not_analysed if n.reason == "not matched by option 'layers'"][0].endswith("#base")
    # a merge not formed (the base lacks its weight) reads nothing: its update stays listed; the embedding's
    # skipped rows are typed embedding (--kinds embedding keeps them)
    base = load_file(str(d / "base.safetensors"))
    save_file({k: v for k, v in base.items() if k not in ("sq.weight", "emb.weight")}, str(tmp_path / "b.safetensors"))
    r = htsr.analyze(d / "adapter", base=tmp_path / "b.safetensors", min_evals=2, layers="#merged$")
    listed = {n.reason: n.examples for n in r.not_analysed}
    assert {"sq#delta", "emb#delta"} <= set(listed["not matched by option 'layers'"])
    assert {x.name: x.kind for x in r.layers}["emb#merged"] == "embedding"


def test_a_live_peft_models_weights_not_adapted_are_said(tmp_path):
    """A live PeftModel is read as its adapter: the model's weights no adapter touches are no rows, and the
    source says so (they had been in neither the rows nor the tensors not analysed)."""
    torch.manual_seed(0)
    pm = peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, target_modules=["q"], init_lora_weights=False))
    r = htsr.analyze(pm, min_evals=2)
    assert {x.name for x in r.layers} == {"q#delta", "q#base", "q#merged"}
    # (a modules_to_save layer's copies are a row and the base's own: not among them)
    pm = peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, target_modules=["q"], modules_to_save=["sq"]))
    assert "(2 other layers of the model, emb.weight …" in htsr.analyze(pm, min_evals=2).source
    # Tiny's 4 layers (the embedding's table; q, sq and out's weights) less q's: their biases, which give no row
    # analysed on their own either, are not counted (they had been: '6 other tensors', whose advice they do not fit)
    r = htsr.analyze(peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, target_modules=["q"])), min_evals=2)
    assert r.source.endswith("(3 other layers of the model, emb.weight …, are not adapted: analyse "
                             "model.get_base_model() for them)")
    one = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 32, bias=False))  # (one layer: 'is', not '1 … layers')
    r = htsr.analyze(peft.get_peft_model(one, peft.LoraConfig(r=4, target_modules=["0"])), min_evals=2)
    assert r.source.endswith("(1 other layer of the model, 1.weight, is not adapted: analyse model.get_base_model() "
                             "for it)")
    r = htsr.analyze(peft.get_peft_model(one, peft.LoraConfig(r=4, target_modules=["0", "1"])), min_evals=2)
    assert r.source == "<PeftModel, adapter 'default'> with its base model's weights"  # (0.bias: no layer)
    # with base= given, the rows' W is that base's: the source says so alone (it had said both)
    two = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 32, bias=False))
    base = {k: v.detach().numpy().copy() for k, v in two.state_dict().items()}
    assert htsr.analyze(peft.get_peft_model(two, peft.LoraConfig(r=4, target_modules=["0"])), base=base,
                        min_evals=2).source == "<PeftModel, adapter 'default'> on base <mapping>"


def test_a_pt_lora_whose_alpha_is_a_python_number_is_scaled_by_it(tmp_path):
    """A single-file LoRA saved with torch.save may hold its alpha as a Python float (lora_unet_a.alpha: 4.0): it
    had been dropped (not a tensor), the update scaled by 1 instead of alpha / r = 0.5 (lambda_max 4x). Read as the
    tensor alpha is; a number under another name (a step counter) is still no tensor."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    down, up = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((48, 8)).astype(np.float32)
    want = 0.5 * np.linalg.svd(up.astype(np.float64) @ down, compute_uv=False)
    for alpha in (4.0, 4, torch.tensor(4.0)):
        torch.save({"lora_unet_a.lora_down.weight": torch.from_numpy(down), "lora_unet_a.lora_up.weight":
                    torch.from_numpy(up), "lora_unet_a.alpha": alpha, "step": 100}, tmp_path / "l.pt")
        (row,) = open_source(tmp_path / "l.pt")
        np.testing.assert_allclose(_sv(row), want[:8], rtol=1e-5)  # float32 factors; rank 8


def test_live_models_whose_adapter_state_htsr_cannot_read_as_one_update_say_so(tmp_path):
    """Two adapters active at once (base_model.set_adapter([...])) had been read as the first alone, its
    #merged not the model's weight; a disabled adapter (disable_adapter) as if it ran; a PeftMixedModel
    refused with 'no adapted module's weight is in the base'. Each is refused saying what it is. An activated
    LoRA (aLoRA) has no #merged (peft does not merge it: its update applies after its invocation tokens), and
    peft's Arrow router is refused as a variant whose update is not scale·B·A."""
    torch.manual_seed(0)
    pm = peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q"],
                                                     init_lora_weights=False), adapter_name="first")
    pm.add_adapter("second", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q"], init_lora_weights=False))
    pm.base_model.set_adapter(["first", "second"])
    with pytest.raises(htsr.SourceError, match="adapters 'first', 'second' are active at once"):
        htsr.analyze(pm, min_evals=2)
    pm.base_model.set_adapter("second")
    assert [r.name for r in htsr.analyze(pm, min_evals=2).layers if r.name.endswith("#delta")] == ["q#delta"]
    with pm.disable_adapter(), pytest.raises(htsr.SourceError, match="its adapters are disabled"):
        htsr.analyze(pm, min_evals=2)
    mixed = peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, target_modules=["q"]), mixed=True)
    with pytest.raises(htsr.SourceError, match="a mixed-adapter model"):
        htsr.analyze(mixed, min_evals=2)
    safetensors_torch.save_file({k: v.contiguous() for k, v in Tiny().state_dict().items()},
                                str(tmp_path / "base.safetensors"))
    folder = tmp_path / "alora"
    peft.get_peft_model(Tiny(), peft.LoraConfig(r=4, target_modules=["q"], init_lora_weights=False)).save_pretrained(
        str(folder))
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "alora_invocation_tokens": [5, 6]}))
    rows = {r.name: r.status for r in htsr.analyze(folder, base=tmp_path / "base.safetensors", min_evals=2).layers}
    assert rows["q#merged"].startswith("skipped: an activated LoRA (alora_invocation_tokens)")
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "arrow_config": {"top_k": 2}}))
    with pytest.raises(htsr.SourceError, match="arrow_config is set"):
        htsr.analyze(folder, min_evals=2)


def test_a_saved_adapter_of_a_model_transformers_renames_pairs_with_the_base_folder(tmp_path):
    """transformers 5 names DINOv2's attention.attention.query 'attention.q_proj' in memory, where peft's adapter
    names it; the base's save_pretrained folder keeps the checkpoint's name. The adapter with --base that folder
    had been refused ('no adapted module's weight is in the base'); its modules are named as the base's model
    saves them, and #merged is peft's own merge."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = T.Dinov2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                         image_size=32, patch_size=8)
    T.Dinov2Model(cfg).save_pretrained(tmp_path / "base")
    pm = peft.get_peft_model(T.Dinov2Model.from_pretrained(tmp_path / "base"),
                             peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    pm.save_pretrained(tmp_path / "lora")
    res = htsr.analyze(tmp_path / "lora", base=tmp_path / "base", min_evals=4)
    rows = {r.name: r for r in res.layers}
    assert "naming both as transformers' checkpoints do" in res.source
    # and with the live base model, whose names are the adapter's
    live = htsr.analyze(tmp_path / "lora", base=T.Dinov2Model.from_pretrained(tmp_path / "base"), min_evals=4)
    merged = pm.merge_and_unload().encoder.layer[0].attention.q_proj.weight.detach().double().numpy()
    for rows in (rows, {r.name: r for r in live.layers}):
        row = rows["encoder.layer.0.attention.q_proj#merged"]
        # λ_max of W + ΔW against peft's own merge (1e-5: float32 weights)
        assert row.status == "ok" and row.lambda_max == pytest.approx(np.linalg.norm(merged, 2) ** 2, rel=1e-5)


class _ExpertsInOut(_Experts):
    is_transposed = True  # (gpt-oss, transformers 5: the stacks are [E, in, out], and peft's LoRA knows it)


def test_target_parameters_on_stacks_stored_in_by_out_merge_as_peft_does(tmp_path):
    """Expert stacks peft reads as [E, in, out] (``is_transposed``): each merged expert is the base's slice plus
    the update in that orientation, merge_and_unload's (the flip had gone untested: without it the merge failed on
    broadcasting)."""
    torch.manual_seed(0)
    model = _MoE()
    for layer in model.layers:
        layer.experts = _ExpertsInOut()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=[], init_lora_weights=False,
                          target_parameters=["experts.gate_up_proj"])
    pm = peft.get_peft_model(model, cfg)
    pm.save_pretrained(str(tmp_path / "adapter"))
    merged = {k: v.detach().double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
    rows = {r.name: r for r in htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors",
                                             min_evals=2).layers}
    for i in range(2):
        for e in range(4):
            row = rows[f"layers.{i}.experts.gate_up_proj#merged[{e}]"]
            w = merged[f"layers.{i}.experts.gate_up_proj"][e]
            # float32 factors and merge against peft's float32 sum: 1e-5 relative
            assert row.status == "ok" and row.lambda_max == pytest.approx(np.linalg.norm(w, 2) ** 2, rel=1e-5)


def test_an_update_is_laid_out_as_its_base_weight_so_a_split_side_means_one_thing(tmp_path):
    """A LoRA on an in x out weight (HF Conv1D, fan_in_fan_out; [E, in, out] expert stacks) is ΔWᵀ, as peft's
    get_delta_weight gives it: its #delta row's shape is its #base's. It had been out x in, so '--split c_attn=q,k,v@1'
    (c_attn's 3·d side, as its shape column reads) cut the update along d into three thirds of no part."""
    transformers = pytest.importorskip("transformers")
    from htsr.factored import LowRank

    torch.manual_seed(3)
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(n_embd=96, n_layer=1, n_head=4, vocab_size=200,
                                                          n_positions=64))
    base = {k: v.detach().clone().numpy() for k, v in gpt2.state_dict().items()}  # (peft wraps the model in place)
    pm = peft.get_peft_model(gpt2, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                   init_lora_weights=False, fan_in_fan_out=True))
    d = next(m for n, m in pm.named_modules() if n.endswith("c_attn")).get_delta_weight("default")
    d = d.detach().double().numpy()  # [in, 3·out], the Conv1D weight's layout
    pm.save_pretrained(str(tmp_path / "gpt2"))
    for source, b in ((pm, None), (tmp_path / "gpt2", None), (tmp_path / "gpt2", base)):
        r = htsr.analyze(source, base=b, split="c_attn=q,k,v@1", layers="c_attn", min_evals=2)
        rows = {x.name: x for x in r.layers}
        for i, p in enumerate("qkv"):
            row = rows[f"h.0.attn.c_attn#delta[{p}]"]
            assert row.shape == "96x288" and (row.N, row.M) == (96, 96)
            # float32 factors against peft's float32 product: 1e-5 relative
            assert row.lambda_max == pytest.approx(np.linalg.norm(d[:, i * 96:(i + 1) * 96], 2) ** 2, rel=1e-5)
            if f"h.0.attn.c_attn#base[{p}]" in rows:
                assert rows[f"h.0.attn.c_attn#base[{p}]"].shape == row.shape
    assert LowRank(np.ones((5, 2)), np.ones((2, 3)), 2.0).T.shape == (3, 5)

    # expert stacks stored [E, in, out] (peft's is_transposed): each expert's update laid out as the base's experts
    torch.manual_seed(0)
    model = _MoE()
    for layer in model.layers:
        layer.experts = _ExpertsInOut()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=[], init_lora_weights=False,
                                                    target_parameters=["experts.gate_up_proj"]))
    ref = {n.removeprefix("base_model.model.").replace(".base_layer", ""): m.get_delta_weight("default")
           for n, m in pm.named_modules() if type(m).__name__ == "ParamWrapper"}
    pm.save_pretrained(str(tmp_path / "moe"))
    r = htsr.analyze(tmp_path / "moe", base=tmp_path / "base.safetensors", split="gate_up_proj=gate,up@1", min_evals=2)
    rows = {x.name: x for x in r.layers}
    for e in range(4):
        dw = ref["layers.0.experts"][e].detach().double().numpy()  # [in 32, out 96]
        for j, p in enumerate(("gate", "up")):
            row = rows[f"layers.0.experts.gate_up_proj#delta[{e}][{p}]"]
            assert rows[f"layers.0.experts.gate_up_proj#base[{e}][{p}]"].shape == f"4x{row.shape}" == "4x32x96"
            # (as above: float32 factors against peft's float32 product)
            assert row.lambda_max == pytest.approx(np.linalg.norm(dw[:, j * 48:(j + 1) * 48], 2) ** 2, rel=1e-5)


# round 13 of mutation testing (io/peft.py): survivors' known answers

def test_square_layer_layout_is_told_by_the_other_layers_not_the_config_flag(tmp_path):
    """[P07] The config says fan_in_fan_out false, but the base's non-square c_attn is stored in x out (HF Conv1D):
    the square c_proj's update is added transposed, as the module docstring says (the flag loses to the shapes)."""
    rng = np.random.default_rng(7)
    t = {"base_model.model.h.c_attn.lora_A.weight": rng.standard_normal((4, 16)).astype(np.float32),  # in 16
         "base_model.model.h.c_attn.lora_B.weight": rng.standard_normal((48, 4)).astype(np.float32),  # out 48
         "base_model.model.h.c_proj.lora_A.weight": rng.standard_normal((4, 16)).astype(np.float32),
         "base_model.model.h.c_proj.lora_B.weight": rng.standard_normal((16, 4)).astype(np.float32)}
    W_attn = rng.standard_normal((16, 48)).astype(np.float32)  # in x out: the layout HF Conv1D stores
    W_proj = rng.standard_normal((16, 16)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", t, fan_in_fan_out=False)
    rows = {r.name: r for r in _open_rows(f, {"h.c_attn.weight": W_attn, "h.c_proj.weight": W_proj})}
    D = 2.0 * (t["base_model.model.h.c_proj.lora_B.weight"] @ t["base_model.model.h.c_proj.lora_A.weight"])
    np.testing.assert_allclose(rows["h.c_proj#merged"].load(), W_proj + D.T, rtol=1e-6, atol=1e-6)


def _open_rows(folder, base):
    from htsr.io.peft import PeftAdapter
    from htsr.io.torch import TorchStateDict

    return list(PeftAdapter(folder).with_base(TorchStateDict({k: torch.as_tensor(v) for k, v in base.items()})))


def test_an_embedding_update_row_is_vocab_by_dim_like_its_base(tmp_path):
    """[P09] lora_embedding_A is r x vocab and lora_embedding_B dim x r: the #delta row is vocab x dim, the
    embedding's own shape (its #base row's), with and without a base."""
    rng = np.random.default_rng(9)
    t = {"base_model.model.emb.lora_embedding_A": rng.standard_normal((4, 120)).astype(np.float32),
         "base_model.model.emb.lora_embedding_B": rng.standard_normal((32, 4)).astype(np.float32)}
    f = _write_adapter(tmp_path / "a", t, target_modules=["emb"])
    rows = _rows(htsr.analyze(f, base={"emb.weight": rng.standard_normal((120, 32)).astype(np.float32)}, min_evals=2))
    assert rows["emb#base"][0].shape == "120x32"
    assert rows["emb#delta"][0].shape == "120x32"
    assert rows["emb#merged"][0].shape == "120x32"


def _square_experts(tmp_path, E=3, n=12, r=2):
    rng = np.random.default_rng(19)
    t = {"base_model.model.mlp.experts.lora_A.weight": rng.standard_normal((r * E, n)).astype(np.float32),
         "base_model.model.mlp.experts.lora_B.weight": rng.standard_normal((n, r * E)).astype(np.float32)}
    f = _write_adapter(tmp_path / "sq", t, r=r, lora_alpha=2 * r, target_modules=[],
                       target_parameters=["experts.down_proj"])
    return f, {"mlp.experts.down_proj": rng.standard_normal((E, n, n)).astype(np.float32)}


def test_square_experts_are_not_merged_as_their_layout_is_not_saved(tmp_path):
    """[P19] Experts of n x n: [E, out, in] and [E, in, out] look alike and peft's is_transposed is not in the
    adapter, so the #merged row is skipped, saying why (it had been merged as [E, out, in])."""
    f, base = _square_experts(tmp_path)
    rows = _rows(htsr.analyze(f, base=base, min_evals=2))
    for e in range(3):
        assert rows[f"mlp.experts.down_proj#base[{e}]"][0].status == "ok"
        assert rows[f"mlp.experts.down_proj#merged[{e}]"][0].status.startswith("skipped: square experts (12 x 12)")


@pytest.mark.parametrize("variant", ["use_qalora", "use_bdlora", "kasa_config", "monteclora_config", "arrow_config"])
def test_every_lora_variant_whose_update_is_not_scale_b_a_is_refused(tmp_path, variant):
    """[P26] QA-LoRA's A is r x (in / group size), applied to pooled inputs: its B·A is not ΔW (nor of W's shape).
    Each variant in _VARIANTS is refused by name, not only the two a test had covered."""
    rng = np.random.default_rng(26)
    t = {"base_model.model.fc.lora_A.weight": rng.standard_normal((4, 8)).astype(np.float32),
         "base_model.model.fc.lora_B.weight": rng.standard_normal((40, 4)).astype(np.float32)}
    value = True if variant.startswith("use_") else {"x": 1}
    f = _write_adapter(tmp_path / "v", t, **{variant: value})
    with pytest.raises(SourceError, match=f"{variant} is set: a LoRA variant whose update is not scale·B·A"):
        htsr.analyze(f)


@pytest.mark.parametrize("init", ["olora", "corda", "lora_ga", "loftq", "pissa_niter_4"])
def test_every_initialisation_that_moves_part_of_w_into_the_factors_has_no_delta(tmp_path, init):
    """[P27] PiSSA, OLoRA, CorDA, LoRA-GA and LoftQ (peft's init_lora_weights) start from factors holding part of
    W: the #delta row is skipped naming it, and the merge too (only 'pissa' had a test)."""
    rng = np.random.default_rng(27)
    t = {"base_model.model.fc.lora_A.weight": rng.standard_normal((4, 30)).astype(np.float32),
         "base_model.model.fc.lora_B.weight": rng.standard_normal((40, 4)).astype(np.float32)}
    f = _write_adapter(tmp_path / "i", t, init_lora_weights=init)
    rows = _rows(htsr.analyze(f, base={"fc.weight": rng.standard_normal((40, 30)).astype(np.float32)}, min_evals=2))
    assert rows["fc#delta"][0].status.startswith(f"skipped: init_lora_weights '{init}': the factors hold the part of W")
    assert rows["fc#merged"][0].status.startswith(f"skipped: init_lora_weights '{init}': the model runs")


def test_a_square_base_tensor_of_another_layer_is_no_base_of_a_non_square_update(tmp_path):
    """[P28] The update is 40 x 30; a base fc.weight of 40 x 40 (another layer's) is no base of it: both rows
    skipped with the shapes said (it had been analysed as fc's W, beside a merge that failed)."""
    rng = np.random.default_rng(28)
    t = {"base_model.model.fc.lora_A.weight": rng.standard_normal((4, 30)).astype(np.float32),
         "base_model.model.fc.lora_B.weight": rng.standard_normal((40, 4)).astype(np.float32)}
    f = _write_adapter(tmp_path / "s", t)
    for W in (rng.standard_normal((40, 40)), rng.standard_normal((30, 30))):
        rows = _rows(htsr.analyze(f, base={"fc.weight": W.astype(np.float32)}, min_evals=2))
        for tag in ("base", "merged"):
            assert rows[f"fc#{tag}"][0].status == (
                f"skipped: the base tensor fc.weight is {W.shape[0]}x{W.shape[1]}, not the update's 40x30: another "
                "layer's, no base of this one"), tag


def test_a_kohya_alpha_of_several_values_gives_no_scale(tmp_path):
    """[P30] kohya-ss stores one alpha per module; an alpha tensor of two values is no scale: the row is skipped
    saying so (it had taken the first value, 8 / 4 = 2)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(30)
    m = "lora_unet_down_blocks_0_proj_in"
    A, B = rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((24, 4)).astype(np.float32)
    save_file({f"{m}.lora_down.weight": A, f"{m}.lora_up.weight": B,
               f"{m}.alpha": np.array([8.0, 8.0], np.float32)}, str(tmp_path / "two.safetensors"))
    save_file({f"{m}.lora_down.weight": A, f"{m}.lora_up.weight": B,
               f"{m}.alpha": np.array(8.0, np.float32)}, str(tmp_path / "one.safetensors"))
    one = _rows(htsr.analyze(tmp_path / "one.safetensors", min_evals=2))[f"{m}#delta"][0]
    assert one.status == "ok" and one.lambda_max == pytest.approx(
        np.linalg.norm(2.0 * B.astype(np.float64) @ A, 2) ** 2, rel=1e-5)
    two = _rows(htsr.analyze(tmp_path / "two.safetensors", min_evals=2))[f"{m}#delta"][0]
    assert two.status.startswith("skipped: no scale") and math.isnan(two.lambda_max)


def test_a_lora_update_of_rank_min_evals_is_fitted(tmp_path):
    """A rank-8 update has 8 nonzero eigenvalues: fitted with min_evals=8 (min_evals is the least count
    fitted), not 'not_fitted: ... 8 nonzero eigenvalues < min_evals=8'; not fitted with 9."""
    g = torch.Generator().manual_seed(0)
    f = _write_adapter(tmp_path / "ad", {"base_model.model.l.q_proj.lora_A.weight": torch.randn(8, 80, generator=g),
                                         "base_model.model.l.q_proj.lora_B.weight": torch.randn(120, 8, generator=g)},
                       r=8, lora_alpha=16, target_modules=["q_proj"])
    assert htsr.analyze(f, min_evals=8).layers[0].status == "ok"
    assert htsr.analyze(f, min_evals=9).layers[0].status == (
        "not_fitted: rank-8 update has 8 nonzero eigenvalues < min_evals=9")


# ---- round 32's gaps --------------------------------------------------------------------------------------


def test_a_square_embedding_merge_is_peft_merge(tmp_path):
    """A square embedding (vocab == dim): ΔW = (B·A)ᵀ cannot be told from B·A by the shapes, so only the
    factors' transposition makes #merged equal peft's merge_and_unload."""
    torch.manual_seed(0)

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(32, 32)
            self.q = nn.Linear(32, 16)

    model = M()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["emb"], init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "adapter"))
    W = pm.merge_and_unload().state_dict()["emb.weight"].double().numpy()
    rows = {t.name: t for t in open_source(tmp_path / "adapter").with_base(open_source(tmp_path / "base.safetensors"))}
    np.testing.assert_allclose(rows["emb#merged"].load(), W, atol=1e-6 * np.abs(W).max())  # (float32 sums)


@pytest.mark.parametrize("kind", ["loha", "lokr"])
def test_a_loha_or_lokr_base_row_is_the_base_weight(tmp_path, kind):
    """With --base a LoHa / LoKr module's #base row is W itself (not ΔW, not W + ΔW)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48))
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    W = model[0].weight.detach().numpy().copy()
    cfg = (peft.LoHaConfig(r=4, alpha=4, target_modules=["0"], init_weights=False) if kind == "loha" else
           peft.LoKrConfig(r=4, alpha=4, target_modules=["0"], init_weights=False))
    peft.get_peft_model(model, cfg).save_pretrained(str(tmp_path / "adapter"))
    rows = {t.name: t for t in open_source(tmp_path / "adapter").with_base(open_source(tmp_path / "base.safetensors"))}
    np.testing.assert_array_equal(np.asarray(rows["0#base"].load()), W)


@pytest.mark.parametrize("targets", [["q"], "q", "all-linear"])
def test_target_modules_match_whole_name_components_not_suffixes(tmp_path, targets):
    """peft's check_target_module_exists: a list entry names the module or its last components after
    a '.', a string is a regular expression the whole name matches (not one found in it); 'q' is no target
    of module 'freq', so freq's LoRA is its target parameter freq.w's. Nor is 'all-linear' (peft saves it
    expanded to the Linear layers' names; written by hand, it names no module holding a target parameter):
    it had made freq's LoRA one on freq's own weight, 'freq#delta' (for fused experts, one row of their
    summed updates where each expert's is a row)."""
    rng = np.random.default_rng(0)
    f = _write_adapter(tmp_path / "a", {"base_model.model.freq.lora_A.weight": rng.standard_normal((4, 24)).astype(np.float32),
                                        "base_model.model.freq.lora_B.weight": rng.standard_normal((16, 4)).astype(np.float32)},
                       target_modules=targets, target_parameters=["freq.w"])
    rows = _rows(htsr.analyze(f, base={"freq.w": rng.standard_normal((16, 24)).astype(np.float32)}, min_evals=2))
    assert {"freq.w#delta", "freq.w#base", "freq.w#merged"} <= set(rows)
    assert all(r.status == "ok" for r, _ in rows.values())


def test_two_target_parameters_of_transposed_shapes_are_told_apart_by_rank(tmp_path):
    """w1 [E, h, f] and w2 [E, f, h] on one module fit the same factor shapes; ranks 8 and 6 (rank_pattern)
    with E = 2 tell them apart (A has r·E rows: 16 is no multiple of 6), and each expert merges as peft does."""
    torch.manual_seed(0)

    class Ex(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(2, 32, 48))
            self.w2 = nn.Parameter(torch.randn(2, 48, 32))

    model = nn.Module()
    model.experts = Ex()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=6, lora_alpha=8, target_modules=[], init_lora_weights=False,
                                                    target_parameters=["experts.w1", "experts.w2"],
                                                    rank_pattern={"experts.w1": 8}))
    pm.save_pretrained(str(tmp_path / "adapter"))
    merged = {k: v.double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
    rows = {r.name: r for r in htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", min_evals=2).layers}
    assert all(r.status == "ok" for r in rows.values()), {n: r.status for n, r in rows.items()}
    for p in ("w1", "w2"):
        for e in range(2):
            want = np.linalg.norm(merged[f"experts.{p}"][e], 2) ** 2
            # (1e-5: float32 weights and htsr's float32 Gram against a float64 norm)
            assert rows[f"experts.{p}#merged[{e}]"].lambda_max == pytest.approx(want, rel=1e-5)


def test_a_kohya_lora_merges_into_a_base_stored_in_by_out(tmp_path):
    """A kohya-ss file on a model whose weight is stored in x out (HF Conv1D, GPT-2's c_attn): the
    flat name matches the transposed base tensor, and #merged is W + ΔWᵀ."""
    rng = np.random.default_rng(0)
    B, A = rng.standard_normal((48, 4)).astype(np.float32), rng.standard_normal((4, 32)).astype(np.float32)
    save_file({"lora_te_h_0_c_attn.lora_up.weight": B, "lora_te_h_0_c_attn.lora_down.weight": A,
               "lora_te_h_0_c_attn.alpha": np.array(4.0, np.float32)}, str(tmp_path / "k.safetensors"))
    W = rng.standard_normal((32, 48)).astype(np.float32)
    save_file({"h.0.c_attn.weight": W}, str(tmp_path / "base.safetensors"))
    rows = _rows(htsr.analyze(tmp_path / "k.safetensors", base=tmp_path / "base.safetensors", min_evals=2))
    merged = rows["lora_te_h_0_c_attn#merged"][0]
    assert merged.status == "ok"
    # (1e-5: float32 weights and htsr's float32 Gram against a float64 norm)
    assert merged.lambda_max == pytest.approx(np.linalg.norm(W + (B @ A).T, 2) ** 2, rel=1e-5)


def test_a_linear_update_on_a_1x1_conv_and_the_reverse_merge_reshaped(tmp_path):
    """SD's proj_in / proj_out are 1 × 1 convs in some checkpoints and Linear layers in others, and a kohya file
    trained on one is loaded on the other (kohya's, A1111's and ComfyUI's loaders reshape the update). #merged had
    been skipped, 'the update's shape (32, 64) does not match the base tensor's (64, 32, 1, 1)' — the update's
    shape printed transposed (it is 64 × 32). Merged now as W + ΔW reshaped."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    W_in, W_out = f32(64, 32, 1, 1), f32(32, 64)
    A_in, B_in, A_out, B_out = f32(4, 32), f32(64, 4), f32(4, 64, 1, 1), f32(32, 4, 1, 1)
    save_file({"proj_in.weight": W_in, "proj_out.weight": W_out}, str(tmp_path / "base.safetensors"))
    save_file({"lora_unet_proj_in.lora_down.weight": A_in, "lora_unet_proj_in.lora_up.weight": B_in,
               "lora_unet_proj_in.alpha": np.array(2.0, np.float32),
               "lora_unet_proj_out.lora_down.weight": A_out, "lora_unet_proj_out.lora_up.weight": B_out,
               "lora_unet_proj_out.alpha": np.array(2.0, np.float32)}, str(tmp_path / "k.safetensors"))
    rows = _rows(htsr.analyze(tmp_path / "k.safetensors", base=tmp_path / "base.safetensors", min_evals=2))
    # (proj_in's base is a conv: its eigenvalues halved, as WeightWatcher scales a conv2d's: ww_conv_scale)
    want = {"proj_in": (W_in[:, :, 0, 0] + 0.5 * B_in @ A_in, 0.5),
            "proj_out": (W_out + 0.5 * B_out[:, :, 0, 0] @ A_out[:, :, 0, 0], 1.0)}
    for name, (V, scale) in want.items():
        merged = rows[f"lora_unet_{name}#merged"][0]
        assert merged.status == "ok", merged.status
        # (1e-5: float32 weights and htsr's float32 Gram against a float64 norm)
        assert merged.lambda_max == pytest.approx(scale * np.linalg.norm(V.astype(np.float64), 2) ** 2, rel=1e-5)


# ---- round 47's gaps --------------------------------------------------------------------------------------


def test_factored_updates_are_finite_only_if_their_scale_and_every_factor_are():
    """is_finite looks at the scale and at both factors: a NaN in LoRA's A or in LoKr's second factor, or an
    infinite scale, makes the update non-finite (reported, not analysed); the finite ones are finite."""
    from htsr.factored import LowRank

    rng = np.random.default_rng(0)
    B, A = rng.standard_normal((6, 2)), rng.standard_normal((2, 4))
    assert LowRank(B, A, 2.0).is_finite()
    bad = A.copy()
    bad[1, 3] = np.nan
    assert not LowRank(B, bad).is_finite() and not LowRank(bad.T, B.T).is_finite()
    assert not LowRank(B, A, math.inf).is_finite()
    W1, W2 = rng.standard_normal((3, 5)), rng.standard_normal((7, 4))
    assert Kronecker(W1, W2, 0.5).is_finite()
    W2[2, 1] = np.inf
    assert not Kronecker(W1, W2).is_finite() and not Kronecker(W2, W1).is_finite()
    assert not Kronecker(W1, W1, math.nan).is_finite()


# ---- round 49's gaps --------------------------------------------------------------------------------------


def test_null_flags_and_empty_variant_configs_are_a_plain_lora(tmp_path):
    """A config whose use_rslora / fan_in_fan_out / use_dora is null, or whose variant configs (kasa_config,
    arrow_config …) are null, false, {} or [], is a plain LoRA: read with scale alpha / r, not refused (only
    a non-boolean flag and a set variant are)."""
    rng = np.random.default_rng(49)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    t = {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B}
    cfg = dict(use_rslora=None, fan_in_fan_out=None, use_dora=None, kasa_config={}, arrow_config=[],
               monteclora_config=None, use_qalora=False)
    row = _rows(htsr.analyze(_write_adapter(tmp_path / "a", t, **cfg), min_evals=2))["fc#delta"][0]
    # scale 8 / 4 = 2 (rsLoRA's would be 8 / 2 = 4); 1e-5: float32 factors against a float64 norm
    assert row.status == "ok" and row.lambda_max == pytest.approx(
        np.linalg.norm(2.0 * B.astype(np.float64) @ A, 2) ** 2, rel=1e-5)


def _param_adapter(folder, A, B, **cfg):
    """An adapter of one LoRA on the bare parameter mlp.experts.w (A (r·E) x in, B out x (r·E)), with cfg
    as its adapter_config.json (no r unless given: peft's default 8)."""
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 8, "target_modules": [],
                                                            "target_parameters": ["experts.w"], **cfg}))
    save_file({"base_model.model.mlp.experts.lora_A.weight": A, "base_model.model.mlp.experts.lora_B.weight": B},
              str(folder / "adapter_model.safetensors"))
    return folder


def test_a_target_parameter_s_expert_count_uses_the_default_r_and_a_rank_that_does_not_divide_is_said(tmp_path):
    """A config without r is peft's default r = 8: A of 16 rows is 2 experts of rank 8 (scale 8 / 8 = 1),
    each expert's row s·B[:, :, e]·A[e]; with r = 3, 16 rows are no whole number of experts: a skipped row
    that gives both numbers, not a reshape failure."""
    rng = np.random.default_rng(50)
    A, B = rng.standard_normal((16, 24)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)
    rows = {t.name: t for t in open_source(_param_adapter(tmp_path / "d", A, B))}
    assert sorted(rows) == ["mlp.experts.w#delta[0]", "mlp.experts.w#delta[1]"]
    Ae, Be = A.reshape(2, 8, 24), B.reshape(20, 8, 2)
    for e in range(2):
        want = Be[:, :, e].astype(np.float64) @ Ae[e]  # scale 8 / 8 = 1
        # (float32 factors: the formed product agrees to float32 rounding)
        np.testing.assert_allclose(rows[f"mlp.experts.w#delta[{e}]"].load().dense(), want, rtol=1e-5, atol=1e-5)
    row = _rows(htsr.analyze(_param_adapter(tmp_path / "r3", A, B, r=3), min_evals=2))["mlp.experts.w#delta"][0]
    assert row.status == ("skipped: A has 16 rows, not a multiple of the config's rank r = 3; re-save the "
                          "adapter")


def test_a_square_two_d_target_parameter_merges_as_peft_does(tmp_path):
    """A 2-D parameter (one 'expert') is laid out out x in whatever its shape, as peft's ParamWrapper merges
    it (Linear's B·A): a square one is merged, not skipped like a square stack of experts whose layout is
    the model class's."""
    torch.manual_seed(1)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(24, 24))

    model = nn.Module()
    model.block = Holder()
    safetensors_torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=[], init_lora_weights=False,
                                                    target_parameters=["block.w"]))
    pm.save_pretrained(str(tmp_path / "adapter"))
    W = pm.merge_and_unload().state_dict()["block.w"].double().numpy()
    rows = {t.name: t for t in open_source(tmp_path / "adapter").with_base(open_source(tmp_path / "base.safetensors"))}
    assert sorted(rows) == ["block.w#base", "block.w#delta", "block.w#merged"]
    np.testing.assert_allclose(rows["block.w#merged"].load(), W, atol=1e-6 * np.abs(W).max())  # (float32 sums)


def test_a_target_parameter_key_matches_whole_name_components(tmp_path):
    """peft matches a target_parameters key as the parameter's full name or its last components after a '.':
    'experts.w2' is no key of mlp.shared_experts.w2, so the LoRA on mlp.shared_experts is its w1's alone and
    its row is named mlp.shared_experts.w1 (not the module, as for a LoRA that may be on either parameter)."""
    rng = np.random.default_rng(51)
    A, B = rng.standard_normal((4, 24)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.mlp.shared_experts.lora_A.weight": A,
                                        "base_model.model.mlp.shared_experts.lora_B.weight": B},
                       target_modules=[], target_parameters=["experts.w2", "mlp.shared_experts.w1"])
    assert [t.name for t in open_source(f)] == ["mlp.shared_experts.w1#delta"]


def test_a_lora_b_without_its_lora_a_is_a_skipped_row(tmp_path):
    """A module with lora_B saved but not lora_A gets a row saying lora_A is missing (the other factor's
    absence only had been tested), and the other modules go on."""
    rng = np.random.default_rng(52)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "b", {"base_model.model.fc.lora_B.weight": B.copy(),
                                        "base_model.model.ok.lora_A.weight": A, "base_model.model.ok.lora_B.weight": B})
    rows = _rows(htsr.analyze(f, min_evals=2))
    assert rows["fc#delta"][0].status == "skipped: lora_A is missing from the adapter"
    assert rows["ok#delta"][0].status == "ok"


def test_of_two_2d_target_parameters_the_one_laid_out_out_by_in_is_the_lora_s(tmp_path):
    """Two 2-D parameters on one module, a [20, 24] and b [24, 20]: factors B 20 x r, A r x 24 are a's update
    (a 2-D parameter is out x in, as peft's ParamWrapper merges it), not b's; b's transposed shape does not
    make the base ambiguous, and a's rows are merged."""
    rng = np.random.default_rng(53)
    A, B = rng.standard_normal((4, 24)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.blk.lora_A.weight": A, "base_model.model.blk.lora_B.weight": B},
                       target_modules=[], target_parameters=["blk.a", "blk.b"])
    Wa, Wb = rng.standard_normal((20, 24)).astype(np.float32), rng.standard_normal((24, 20)).astype(np.float32)
    rows = {t.name: t for t in _open_rows(f, {"blk.a": Wa, "blk.b": Wb})}
    assert sorted(rows) == ["blk.a#base", "blk.a#delta", "blk.a#merged"]
    # W + (8 / 4)·B·A in float32: 1e-5 for the float32 sum
    np.testing.assert_allclose(rows["blk.a#merged"].load(), Wa + 2.0 * (B.astype(np.float64) @ A), rtol=1e-5, atol=1e-5)


def _lycoris_file(path, module: str, alpha: float, seed: int, **shapes) -> dict[str, np.ndarray]:
    """A LyCORIS single file of one module: seeded float32 parts of the given shapes (hada_w1_a=(12, 2) …) and
    its alpha; the parts, by name."""
    rng = np.random.default_rng(seed)
    parts = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    save_file({**{f"{module}.{k}": v for k, v in parts.items()}, f"{module}.alpha": np.array(alpha, np.float32)},
              str(path))
    return parts


def test_a_lycoris_lokr_of_two_low_rank_pairs_is_scaled_by_the_second_pair_s_rank(tmp_path):
    """A LyCORIS LoKr whose w1 and w2 are both low-rank pairs, of ranks 2 and 3, with alpha 6: its scale is
    alpha / r with r the second pair's inner size (6 / 3 = 2, as ComfyUI and A1111 read it), not the first's
    (6 / 2 = 3)."""
    m = "lora_unet_blk_proj"
    parts = _lycoris_file(tmp_path / "lokr.safetensors", m, 6.0, 54, lokr_w1_a=(4, 2), lokr_w1_b=(2, 5),
                          lokr_w2_a=(6, 3), lokr_w2_b=(3, 7))
    row = _rows(htsr.analyze(tmp_path / "lokr.safetensors", min_evals=2))[f"{m}#delta"][0]
    d = lambda a, b: parts[a].astype(np.float64) @ parts[b]  # noqa: E731
    want = np.linalg.norm(2.0 * np.kron(d("lokr_w1_a", "lokr_w1_b"), d("lokr_w2_a", "lokr_w2_b")), 2) ** 2
    assert row.status == "ok" and row.lambda_max == pytest.approx(want, rel=1e-5)  # (float32 parts)


def test_an_adapter_s_tensor_count_includes_its_base_weights(adapter):
    """The count analyze reports before the run (its progress total) is each update and, with a base, each
    adapted module's base weight: 3 updates alone, 3 + 3 with the base (a #merged row is no tensor)."""
    d, _, _ = adapter
    a = open_source(d / "adapter")
    assert len(a) == 3 and len(a.with_base(open_source(d / "base.safetensors"))) == 6


def test_rows_of_an_embedding_and_a_conv_without_their_base_keep_the_update_s_shape(tmp_path):
    """With a base that lacks them, an embedding's #base / #merged rows are vocab x dim (its own layout, as
    its #delta row) and a conv LoRA's keep the kernel, out x in x k x k: the skipped rows show the layer's
    shape, not dim x vocab or a bare out x in."""
    rng = np.random.default_rng(55)
    t = {"base_model.model.emb.lora_embedding_A": rng.standard_normal((4, 120)).astype(np.float32),
         "base_model.model.emb.lora_embedding_B": rng.standard_normal((32, 4)).astype(np.float32),
         "base_model.model.c.lora_A.weight": rng.standard_normal((4, 24, 3, 3)).astype(np.float32),
         "base_model.model.c.lora_B.weight": rng.standard_normal((40, 4, 1, 1)).astype(np.float32),
         "base_model.model.fc.lora_A.weight": rng.standard_normal((4, 30)).astype(np.float32),
         "base_model.model.fc.lora_B.weight": rng.standard_normal((40, 4)).astype(np.float32)}
    rows = {r.name: r for r in _open_rows(_write_adapter(tmp_path / "a", t), {"fc.weight": np.ones((40, 30), np.float32)})}
    for tag in ("base", "merged"):
        assert tuple(rows[f"emb#{tag}"].shape) == (120, 32) and rows[f"emb#{tag}"].kind == "embedding"
        assert tuple(rows[f"c#{tag}"].shape) == (40, 24, 3, 3) and rows[f"c#{tag}"].kind == "conv2d"


def test_a_square_embedding_is_not_transposed_by_the_other_layers_in_by_out_layout(tmp_path):
    """A 32 x 32 embedding beside an HF Conv1D layer (its base fc.weight stored in x out): the Conv1D layout
    the other layers show is theirs, not the embedding's, whose ΔW = (B·A)ᵀ is added as it is."""
    rng = np.random.default_rng(56)
    Ae, Be = rng.standard_normal((4, 32)).astype(np.float32), rng.standard_normal((32, 4)).astype(np.float32)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((40, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.emb.lora_embedding_A": Ae, "base_model.model.emb.lora_embedding_B": Be,
                                        "base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B})
    We, W = rng.standard_normal((32, 32)).astype(np.float32), rng.standard_normal((30, 40)).astype(np.float32)
    rows = {r.name: r for r in _open_rows(f, {"emb.weight": We, "fc.weight": W})}
    # W + (8 / 4)·ΔW in float32: 1e-5 for the float32 sums
    np.testing.assert_allclose(rows["fc#merged"].load(), W + 2.0 * (B.astype(np.float64) @ A).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rows["emb#merged"].load(), We + 2.0 * (Be.astype(np.float64) @ Ae).T, rtol=1e-5, atol=1e-5)


def test_a_module_whose_base_tensor_is_the_module_s_own_name_is_found(tmp_path):
    """A base where one adapted module's weight is a bare tensor named as the module (a parameter used as a
    weight, 'proj', beside a Linear's 'fc.weight'): the LoRA on proj finds its base tensor proj, and gives #base
    and #merged rows (W + (8 / 4)·B·A), as the LoRA on fc does from fc.weight."""
    rng = np.random.default_rng(52)
    A, B = rng.standard_normal((4, 40)).astype(np.float32), rng.standard_normal((30, 4)).astype(np.float32)
    W, Wf = rng.standard_normal((30, 40)).astype(np.float32), rng.standard_normal((20, 40)).astype(np.float32)
    Bf = rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {
        "base_model.model.proj.lora_A.weight": A, "base_model.model.proj.lora_B.weight": B,
        "base_model.model.fc.lora_A.weight": A.copy(), "base_model.model.fc.lora_B.weight": Bf})
    rows = {r.name: r for r in _open_rows(f, {"proj": W, "fc.weight": Wf})}
    assert sorted(rows) == ["fc#base", "fc#delta", "fc#merged", "proj#base", "proj#delta", "proj#merged"]
    np.testing.assert_array_equal(rows["proj#base"].load(), W)
    # W + 2·B·A in float32: 1e-5 for the float32 sums
    np.testing.assert_allclose(rows["proj#merged"].load(), W + 2.0 * (B.astype(np.float64) @ A), rtol=1e-5, atol=1e-5)



def test_an_update_whose_eigenvalues_would_sum_past_float64_fails_though_each_fits(tmp_path):
    """A rank-8 update of eight equal singular values s: each eigenvalue s² = 4e307 lies within float64, their
    sum 3.2e308 (log_norm) does not. The factored spectrum is bounded by size·λ_max, as a dense layer's by its
    entries: a failed row that says to rescale (only updates whose largest eigenvalue itself overflows had been
    checked; this one had given log_norm inf)."""
    rng = np.random.default_rng(5)
    A = np.ascontiguousarray(np.linalg.qr(rng.standard_normal((40, 8)))[0].T, np.float32)  # orthonormal rows
    B = np.linalg.qr(rng.standard_normal((30, 8)))[0].astype(np.float32)  # orthonormal columns
    s = math.sqrt(4e307)  # lora_alpha / r: the update's singular values, all equal
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A,
                                        "base_model.model.fc.lora_B.weight": B}, r=8, lora_alpha=8 * s)
    row = _rows(htsr.analyze(f, min_evals=2))["fc#delta"][0]
    assert row.status.startswith("failed: eigenvalues beyond float64's range; rescale the weights")
    assert math.isnan(row.log_norm)


def test_an_update_s_small_nonzero_eigenvalues_are_not_cut_at_weightwatchers_floor(tmp_path):
    """A rank-8 update with eigenvalues 10^-0.25 … 10^-7.25 (B·A of chosen singular values, A the first rows of
    the identity): its small eigenvalues are exact, not round-off, so all 8 are fitted at min_evals=8; the
    absolute 1e-5 floor of the default evals_floor='ww' is for dense layers' numerical zeros (it would keep 5)."""
    lam = 10.0 ** -np.arange(0.25, 8.0, 1.0)
    A = np.eye(8, 40, dtype=np.float32)
    B = np.zeros((30, 8), np.float32)
    B[np.arange(8), np.arange(8)] = np.sqrt(lam)
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A,
                                        "base_model.model.fc.lora_B.weight": B}, r=8, lora_alpha=8)
    row, sp = _rows(htsr.analyze(f, min_evals=8, keep_spectra=True))["fc#delta"]
    assert row.num_fit_evals == 8 and not row.status.startswith("not_fitted")
    # the 8 eigenvalues are the chosen ones (float32 storage of √λ: relative 1e-7)
    assert np.sort(sp.fit_evals) == pytest.approx(np.sort(lam), rel=1e-6)


# ---- round 57's gaps --------------------------------------------------------------------------------------

def test_localization_leaves_an_update_from_its_factors_alone(tmp_path):
    """localization=True asks for eigenvectors of the dense layers: an update known by its factors (no entries)
    gets none, and its fit stands as without the option, with no 'diagnostics failed' in its status (its
    factors had been handed to the eigenvector code, which cannot read them). Only dense layers had been run
    with the option."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 60)).astype(np.float32), rng.standard_normal((80, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B},
                       target_modules=["fc"])
    save_file({"fc.weight": rng.standard_normal((80, 60)).astype(np.float32)}, str(tmp_path / "base.safetensors"))
    plain = _rows(htsr.analyze(f, min_evals=2, base=tmp_path / "base.safetensors"))["fc#delta"][0]
    rows = _rows(htsr.analyze(f, min_evals=2, localization=True, base=tmp_path / "base.safetensors"))
    row = rows["fc#delta"][0]
    assert row.kind == "lora" and row.status == plain.status == "ok"
    assert row.alpha == plain.alpha and math.isnan(row.loc_pr_tail_mean) and math.isnan(row.loc_pr_bulk_mean)
    assert math.isfinite(rows["fc#merged"][0].loc_pr_tail_mean)  # (the merged weights' entries: eigenvectors)
    # the adapter alone has no row the option acts on: refused, as an option that would change nothing
    with pytest.raises(OptionError, match=r"option 'localization' acts only on dense, .* layers, and this model has "
                                          r"none \(its rows are lora\)"):
        htsr.analyze(f, min_evals=2, localization=True)


# ---- round 62's gaps --------------------------------------------------------------------------------------

def test_an_adapter_config_with_a_byte_order_mark_and_a_lower_case_peft_type_is_read(tmp_path):
    """An adapter_config.json re-saved by an editor that writes a UTF-8 byte order mark, with its peft_type
    written "lora", is the same config: read (scale lora_alpha / r = 12 / 4 = 3), not refused as unreadable
    JSON or an unsupported type. Only BOM-less configs of upper-case types had been read."""
    rng = np.random.default_rng(62)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B},
                       lora_alpha=12, peft_type="lora")
    cfg = f / "adapter_config.json"
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_bytes())
    m = next(t for t in open_source(f) if t.name == "fc#delta").load()
    # (the scale is exact; the factors are the file's float32 ones)
    assert m.scale == 3.0
    np.testing.assert_array_equal(m.A, A)


def test_an_adapter_folder_with_both_weight_files_is_read_from_its_safetensors(tmp_path):
    """A folder holding adapter_model.safetensors and an adapter_model.bin (an older save left beside it, of
    other factors) is read from the safetensors file, as peft loads it: the row's factors are its. Only folders
    of one weights file had been read."""
    rng = np.random.default_rng(63)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B})
    torch.save({"base_model.model.fc.lora_A.weight": torch.zeros(4, 30),
                "base_model.model.fc.lora_B.weight": torch.zeros(20, 4)}, str(f / "adapter_model.bin"))
    m = next(t for t in open_source(f) if t.name == "fc#delta").load()
    np.testing.assert_array_equal(m.A, A)  # (the file's own float32 values, not the .bin's zeros)
    np.testing.assert_array_equal(m.B, B)


def test_a_lycoris_file_of_loha_modules_alone_is_a_lora(tmp_path):
    """A LyCORIS file whose modules are all LoHa (hada_w1_a … hada_w2_b and an alpha, no lora_down / lokr part)
    is a single-file LoRA: one #delta row of alpha / r·(w1a·w1b) ∘ (w2a·w2b), against numpy's dense product.
    Only files holding other LoRA names beside LoHa's had been read; these parts had been listed as dense rows."""
    m = "lora_unet_blk_proj"
    parts = _lycoris_file(tmp_path / "loha.safetensors", m, 1.0, 64, hada_w1_a=(12, 2), hada_w1_b=(2, 10),
                          hada_w2_a=(12, 2), hada_w2_b=(2, 10))
    rows = {t.name: t for t in open_source(tmp_path / "loha.safetensors")}
    assert list(rows) == [f"{m}#delta"] and rows[f"{m}#delta"].kind == "lora"
    d = lambda a, b: parts[a].astype(np.float64) @ parts[b]  # noqa: E731
    ref = np.linalg.svd(0.5 * d("hada_w1_a", "hada_w1_b") * d("hada_w2_a", "hada_w2_b"), compute_uv=False)
    # (alpha 1 / r 2; float64 factored path vs dense SVD of rank ≤ 4: 1e-9 of the largest)
    np.testing.assert_allclose(_sv(rows[f"{m}#delta"])[:4], ref[:4], rtol=0, atol=1e-9 * ref[0])


def test_each_diffusers_component_s_modules_take_their_own_component_s_config(tmp_path):
    """SDXL's LoRA files hold text_encoder and text_encoder_2, a name that starts with the other's: each module
    takes its own component's lora_alpha / r (text_encoder 8 / 4 = 2, text_encoder_2 4 / 4 = 1), whatever order the
    metadata lists them in. Only components of unrelated names (unet, text_encoder) had been read."""
    rng = np.random.default_rng(65)
    A, B = rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((16, 4)).astype(np.float32)
    meta = {"text_encoder.r": 4, "text_encoder.lora_alpha": 8, "text_encoder_2.r": 4, "text_encoder_2.lora_alpha": 4}
    save_file({f"{c}.attn.q_proj.{k}": v for c in ("text_encoder", "text_encoder_2")
               for k, v in (("lora_A.weight", A), ("lora_B.weight", B))},
              str(tmp_path / "l.safetensors"), metadata={"lora_adapter_metadata": json.dumps(meta)})
    assert {t.name: t.load().scale for t in open_source(tmp_path / "l.safetensors")} == {
        "text_encoder.attn.q_proj#delta": 2.0, "text_encoder_2.attn.q_proj#delta": 1.0}


def test_kohya_names_matched_to_the_base_only_when_one_base_tensor_is_theirs_alone(tmp_path):
    """Reading a kohya-ss name's '_' as '.': a name that two base tensors spell (blk.a_b and blk_a.b) is
    matched to neither, and one base tensor that two modules' names reach (lora_te1_ and lora_te2_ paths of one
    shape, a base of one text encoder) is neither's: their rows say the base lacks them, never a guessed merge.
    A LyCORIS name that starts with the module's path (lycoris_transformer_blocks_0_…) is that path, not
    single_transformer_blocks_0_… nor a suffix of both. Only shapes had told such names apart before."""
    rng = np.random.default_rng(66)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    base = {"blk.a_b.weight": f32(8, 8), "blk_a.b.weight": f32(8, 8),
            "text_model.encoder.layers.0.q_proj.weight": f32(8, 8),
            "transformer_blocks.0.attn.to_q.weight": f32(8, 8), "single_transformer_blocks.0.attn.to_q.weight": f32(8, 8)}
    save_file(base, str(tmp_path / "base.safetensors"))
    lora = {}
    for module in ("lora_unet_blk_a_b", "lora_te1_text_model_encoder_layers_0_q_proj",
                   "lora_te2_text_model_encoder_layers_0_q_proj", "lycoris_transformer_blocks_0_attn_to_q"):
        lora |= {f"{module}.lora_down.weight": f32(2, 8), f"{module}.lora_up.weight": f32(8, 2)}
    save_file(lora, str(tmp_path / "k.safetensors"))
    rows = {x.name: x for x in htsr.analyze(tmp_path / "k.safetensors", base=tmp_path / "base.safetensors",
                                            min_evals=2).layers}
    for module in ("lora_unet_blk_a_b", "lora_te1_text_model_encoder_layers_0_q_proj",
                   "lora_te2_text_model_encoder_layers_0_q_proj"):
        assert rows[f"{module}#base"].status == (
            f"skipped: no base tensor of the update's shape is {module} with '_' read as '.'")
    got = rows["lycoris_transformer_blocks_0_attn_to_q#base"]
    want = htsr.analyze({"w.weight": base["transformer_blocks.0.attn.to_q.weight"]}, min_evals=2).layers[0]
    assert got.status == "ok" and got.log_norm == want.log_norm  # (the same weights: the same number)


def test_a_conv3d_lora_is_one_update_per_kernel_position(tmp_path):
    """A LoRA on a Conv3d (A r x in x 2 x 2 x 2, B out x r x 1 x 1 x 1, as peft saves it) is one LowRank
    s·B·A[:, :, p] per kernel position, in numpy.ndindex order, its row out x in x 2 x 2 x 2. Only 1-D and 2-D
    conv LoRAs had been read; a 3-D one's factors had been refused as not multiplying."""
    rng = np.random.default_rng(67)
    A, B = rng.standard_normal((4, 6, 2, 2, 2)).astype(np.float32), rng.standard_normal((10, 4, 1, 1, 1)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.c3.lora_A.weight": A, "base_model.model.c3.lora_B.weight": B})
    (row,) = open_source(f)
    assert row.name == "c3#delta" and tuple(row.shape) == (10, 6, 2, 2, 2)
    got = row.load()
    assert len(got) == 8
    for m, p in zip(got, np.ndindex(2, 2, 2)):
        # (scale 8 / 4 = 2; float32 factors, the product formed in float32: 1e-5)
        np.testing.assert_allclose(m.dense(), 2.0 * B[:, :, 0, 0, 0].astype(np.float64) @ A[(slice(None),) * 2 + p],
                                   rtol=1e-5, atol=1e-5)


def test_a_lora_file_s_metadata_config_without_lora_alpha_is_one_config_not_components(tmp_path):
    """A lora_adapter_metadata holding one LoraConfig that lacks lora_alpha ({"r": 4, "fan_in_fan_out": true}: peft's
    default alpha 8) is that config, not per-component keys: its fan_in_fan_out tells a square layer's layout, so
    the merge adds ΔWᵀ (8 / 4 = 2 times (B·A)ᵀ). Only metadata with lora_alpha had been read."""
    rng = np.random.default_rng(68)
    A, B = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((8, 4)).astype(np.float32)
    W = rng.standard_normal((8, 8)).astype(np.float32)
    save_file({"blk.fc.lora_A.weight": A, "blk.fc.lora_B.weight": B}, str(tmp_path / "l.safetensors"),
              metadata={"lora_adapter_metadata": json.dumps({"r": 4, "fan_in_fan_out": True})})
    save_file({"blk.fc.weight": W}, str(tmp_path / "base.safetensors"))
    rows = {t.name: t for t in open_source(tmp_path / "l.safetensors").with_base(open_source(tmp_path / "base.safetensors"))}
    # (float32 sums: 1e-5)
    np.testing.assert_allclose(rows["blk.fc#merged"].load(), W + 2.0 * (B.astype(np.float64) @ A).T, rtol=1e-5, atol=1e-5)


def test_expert_factors_that_do_not_multiply_or_a_rank_0_are_skipped_rows(tmp_path):
    """A LoRA on a bare parameter whose B has 8 columns for A's 16 rows, or whose config gives it rank 0
    (rank_pattern): a skipped row saying which, not a reshape failure or a division by zero (only a rank that
    does not divide A's rows had been tried)."""
    rng = np.random.default_rng(69)
    A = rng.standard_normal((16, 24)).astype(np.float32)
    row = _rows(htsr.analyze(_param_adapter(tmp_path / "ab", A, rng.standard_normal((20, 8)).astype(np.float32), r=8),
                             min_evals=2))["mlp.experts.w#delta"][0]
    assert row.status == ("skipped: LoRA factors of shapes [20, 8] (B) and [16, 24] (A) of a target parameter are not "
                          "a rank-r update; re-save the adapter with peft")
    row = _rows(htsr.analyze(_param_adapter(tmp_path / "r0", A, rng.standard_normal((20, 16)).astype(np.float32), r=8,
                                            rank_pattern={"experts.w": 0}), min_evals=2))["mlp.experts.w#delta"][0]
    assert row.status == "skipped: the config's rank r = 0 is not positive; re-save the adapter"


def test_an_expert_stack_s_merge_leaves_its_base_as_it_was_and_a_base_of_other_rank_is_refused(tmp_path):
    """With a live (torch) base, W + ΔW of a stack of 2 experts is formed on a copy: the #base row still loads W
    after the merge, and a second merge gives the same W + ΔW (the sum had been added into the base's own
    tensor). The rows are typed 'stack'. A 2-D base for the 2 experts (20 x 24) is a skipped merge that says
    the shapes, not a broadcast error."""
    rng = np.random.default_rng(70)
    A, B = rng.standard_normal((16, 24)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)
    f = _param_adapter(tmp_path / "a", A, B, r=8)
    W = rng.standard_normal((2, 20, 24)).astype(np.float32)
    rows = {t.name: t for t in _open_rows(f, {"mlp.experts.w": W.copy()})}
    assert rows["mlp.experts.w#base"].kind == rows["mlp.experts.w#merged"].kind == "stack"
    Ae, Be = A.reshape(2, 8, 24).astype(np.float64), B.reshape(20, 8, 2).astype(np.float64)
    want = W + np.stack([Be[:, :, e] @ Ae[e] for e in range(2)])  # scale 8 / 8 = 1
    for _ in range(2):  # (float32 sums: 1e-5)
        np.testing.assert_allclose(rows["mlp.experts.w#merged"].load(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(rows["mlp.experts.w#base"].load(), W)
    rows = {t.name: t for t in _open_rows(f, {"mlp.experts.w": W[0].copy()})}
    with pytest.raises(LayerSkipped, match=r"^the update \(2 x 20 x 24\) does not match the base tensor's \(20, 24\)$"):
        rows["mlp.experts.w#merged"].load()


def test_of_two_target_parameters_a_2d_one_is_no_base_of_a_stack_of_experts(tmp_path):
    """Two parameters on one module, a 2-D [20, 24] and a stack [2, 20, 24]; factors of 2 experts (A 16 x 24,
    r 8) fit the stack alone: its rows are merged, the 2-D one of the same out x in is no candidate. The stack's
    rows are typed 'stack' though its module is named conv (its name alone would say a Conv1d weight)."""
    rng = np.random.default_rng(71)
    A, B = rng.standard_normal((16, 24)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.mix.conv.lora_A.weight": A,
                                        "base_model.model.mix.conv.lora_B.weight": B},
                       r=8, target_modules=[], target_parameters=["conv.a", "conv.b"])
    Wa, Wb = rng.standard_normal((20, 24)).astype(np.float32), rng.standard_normal((2, 20, 24)).astype(np.float32)
    rows = {t.name: t for t in _open_rows(f, {"mix.conv.a": Wa, "mix.conv.b": Wb})}
    assert {"mix.conv.b#base", "mix.conv.b#merged"} <= set(rows) and "mix.conv.a#merged" not in rows
    assert rows["mix.conv.b#base"].kind == rows["mix.conv.b#merged"].kind == "stack"


def test_a_peft_lokr_conv1d_with_a_tucker_core_is_the_conv1d_s_shape(tmp_path):
    """peft's LoKr on a Conv1d(32, 48, 5) of rank 2 with use_effective_conv2d keeps w2 as a Tucker core
    r x r x 5 x 1: the #delta row is the Conv1d's 48 x 32 x 5 without a base, and its per-position eigenvalues
    are those of peft's get_delta_weight. (The LycorisNet Conv1d's LoKr has a full w2: no core had been read.)"""
    torch.manual_seed(4)
    net = nn.Module()
    net.c1 = nn.Conv1d(32, 48, 5)
    pm = peft.get_peft_model(net, peft.LoKrConfig(r=2, alpha=3, target_modules=["c1"], init_weights=False,
                                                  use_effective_conv2d=True))
    assert "lokr_t2" in str(list(pm.state_dict()))
    dw = pm.base_model.model.c1.get_delta_weight("default").detach().double().numpy()
    pm.save_pretrained(str(tmp_path / "adapter"))
    (row,) = open_source(tmp_path / "adapter")
    assert tuple(row.shape) == dw.shape == (48, 32, 5)
    got = np.sort(np.concatenate([matrix_eigenvalues(f)[0] for f in row.load()]))
    ref = _conv_evals(dw, 1.0)
    np.testing.assert_allclose(got, ref, atol=1e-6 * ref[-1])  # float64 factors vs peft's float32 product


def test_a_diffusers_component_s_use_dora_without_magnitudes_leaves_its_merge_unformed(tmp_path):
    """A LoRA file whose metadata sets use_dora for the UNet, with no lora_magnitude_vector saved: the UNet
    module's #merged is skipped saying so, not merged as a plain LoRA; the text encoder (no use_dora) merges
    W + ΔW. Only components whose DoRA flag agreed with their saved magnitudes had been read."""
    rng = np.random.default_rng(72)
    A, B = rng.standard_normal((4, 32)).astype(np.float32), rng.standard_normal((16, 4)).astype(np.float32)
    W = rng.standard_normal((16, 32)).astype(np.float32)
    meta = {"unet.r": 4, "unet.lora_alpha": 4, "unet.use_dora": True, "text_encoder.r": 4, "text_encoder.lora_alpha": 4}
    save_file({f"{c}.attn.to_q.{k}": v for c in ("unet", "text_encoder") for k, v in (("lora_A.weight", A),
                                                                                      ("lora_B.weight", B))},
              str(tmp_path / "l.safetensors"), metadata={"lora_adapter_metadata": json.dumps(meta)})
    save_file({f"{c}.attn.to_q.weight": W for c in ("unet", "text_encoder")}, str(tmp_path / "base.safetensors"))
    rows = {t.name: t for t in open_source(tmp_path / "l.safetensors").with_base(open_source(tmp_path / "base.safetensors"))}
    with pytest.raises(LayerSkipped, match="^use_dora is set but the adapter has no lora_magnitude_vector$"):
        rows["unet.attn.to_q#merged"].load()
    # (scale 4 / 4 = 1; float32 sums: 1e-5)
    np.testing.assert_allclose(rows["text_encoder.attn.to_q#merged"].load(), W + B.astype(np.float64) @ A, rtol=1e-5,
                               atol=1e-5)


def test_a_tucker_loha_is_not_laid_onto_a_base_conv_of_other_channels_and_kernel(tmp_path):
    """A LyCORIS LoHa with Tucker cores (update 32 x 16 x 3 x 3) against a base conv blk.conv.weight of 32 x 48 x 3
    x 1 (as many entries, other in-channels and kernel): that tensor is another layer's, its rows say so; the
    update keeps its own shape. Only flattened updates had been matched to a base's kernel."""
    rng = np.random.default_rng(73)
    p = {"hada_w1_a": (2, 32), "hada_w1_b": (2, 16), "hada_t1": (2, 2, 3, 3),
         "hada_w2_a": (2, 32), "hada_w2_b": (2, 16), "hada_t2": (2, 2, 3, 3)}
    save_file({f"blk.conv.{k}": rng.standard_normal(s).astype(np.float32) for k, s in p.items()},
              str(tmp_path / "l.safetensors"))
    save_file({"blk.conv.weight": rng.standard_normal((32, 48, 3, 1)).astype(np.float32)}, str(tmp_path / "base.safetensors"))
    rows = {t.name: t for t in open_source(tmp_path / "l.safetensors").with_base(open_source(tmp_path / "base.safetensors"))}
    assert tuple(rows["blk.conv#delta"].shape) == (32, 16, 3, 3)
    with pytest.raises(LayerSkipped, match=r"^the base tensor blk.conv.weight is 32x48x3x1, not the update's 32x16x3x3"):
        rows["blk.conv#base"].load()


def test_an_adapter_s_stray_magnitude_and_a_base_weight_of_no_adapted_module_are_its_other_tensors(tmp_path):
    """An adapter file holding, beside fc's factors, a DoRA magnitude of no factors (norm) and a base_layer weight
    of a module it does not adapt (head): both are ordinary tensors of the adapter, listed as such, not dropped
    nor taken for a module's saved base, each named without peft's 'base_model.model.' as the base model names
    them (the magnitude had kept it). Only saved bases of adapted modules had been tried."""
    rng = np.random.default_rng(74)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B,
                                        "base_model.model.norm.lora_magnitude_vector": np.ones(20, np.float32),
                                        "base_model.model.head.base_layer.weight": np.ones((10, 30), np.float32)})
    src = open_source(f)
    assert sorted(t.name for t in src) == [
        "fc#delta", "head.base_layer.weight", "norm.lora_magnitude_vector"]
    assert len(src) == 3  # (an update and two tensors: no base weight of fc's)


def test_a_lycoris_loha_with_a_dora_scale_has_its_merge_unformed(tmp_path):
    """A LyCORIS LoHa module with a DoRA magnitude (dora_scale) beside its parts: its #delta is the LoHa update
    and its #base the base weight, but its #merged is skipped naming the dora_scale (htsr does not form that
    merge), not W + ΔW without the rescaling. Only a LoRA module's dora_scale had been tried."""
    rng = np.random.default_rng(75)
    p = {"hada_w1_a": (12, 2), "hada_w1_b": (2, 10), "hada_w2_a": (12, 2), "hada_w2_b": (2, 10)}
    save_file({**{f"lora_unet_blk.{k}": rng.standard_normal(s).astype(np.float32) for k, s in p.items()},
               "lora_unet_blk.dora_scale": np.ones((12, 1), np.float32)}, str(tmp_path / "l.safetensors"))
    W = rng.standard_normal((12, 10)).astype(np.float32)
    save_file({"blk.weight": W}, str(tmp_path / "base.safetensors"))
    rows = {t.name: t for t in open_source(tmp_path / "l.safetensors").with_base(open_source(tmp_path / "base.safetensors"))}
    np.testing.assert_array_equal(rows["lora_unet_blk#base"].load(), W)
    with pytest.raises(LayerSkipped, match="dora_scale"):
        rows["lora_unet_blk#merged"].load()


def test_parameter_loras_nested_three_deep_or_keyed_twice_are_read_as_parameter_loras(tmp_path):
    """peft nests a third LoRA on one module's parameters as experts.base_layer.base_layer: each of the three is
    a parameter LoRA of two experts (rows #delta[0], #delta[1] under its saved module name, no base to tell which
    parameter), not a module LoRA. A parameter that two keys name (experts.w and mlp.experts.w) is one parameter:
    its rows are mlp.experts.w's. Only two LoRAs on one module and one key a parameter had been read."""
    rng = np.random.default_rng(76)
    t = {}
    for m in ("mlp.experts", "mlp.experts.base_layer", "mlp.experts.base_layer.base_layer"):
        t |= {f"base_model.model.{m}.lora_A.weight": rng.standard_normal((8, 24)).astype(np.float32),
              f"base_model.model.{m}.lora_B.weight": rng.standard_normal((20, 8)).astype(np.float32)}
    f = _write_adapter(tmp_path / "three", t, target_modules=[],
                       target_parameters=["experts.w1", "experts.w2", "experts.w3"])
    assert sorted(x.name for x in open_source(f)) == sorted(
        f"{m}#delta[{e}]" for m in ("mlp.experts", "mlp.experts.base_layer", "mlp.experts.base_layer.base_layer")
        for e in range(2))
    A, B = rng.standard_normal((8, 24)).astype(np.float32), rng.standard_normal((20, 8)).astype(np.float32)
    f = _param_adapter(tmp_path / "twice", A, B, r=4, target_parameters=["experts.w", "mlp.experts.w"])
    assert sorted(x.name for x in open_source(f)) == ["mlp.experts.w#delta[0]", "mlp.experts.w#delta[1]"]


def test_a_conv_lora_on_a_base_of_another_kernel_size_is_a_skipped_merge(tmp_path):
    """A conv LoRA of kernel 3 x 3 against a base conv c.weight of the same channels but kernel 5 x 5: its #merged
    is skipped saying both shapes, not a broadcasting failure. Only bases of other channel counts had been tried."""
    rng = np.random.default_rng(77)
    t = {"base_model.model.c.lora_A.weight": rng.standard_normal((4, 16, 3, 3)).astype(np.float32),
         "base_model.model.c.lora_B.weight": rng.standard_normal((32, 4, 1, 1)).astype(np.float32)}
    rows = {r.name: r for r in _open_rows(_write_adapter(tmp_path / "a", t),
                                          {"c.weight": rng.standard_normal((32, 16, 5, 5)).astype(np.float32)})}
    with pytest.raises(LayerSkipped, match=r"^the update's shape \(32, 16, 3, 3\) does not match the base tensor's "
                                           r"\(32, 16, 5, 5\)$"):
        rows["c#merged"].load()


def test_a_dora_merge_of_an_in_by_out_layer_rescales_its_columns(tmp_path):
    """DoRA on a fan_in_fan_out layer (HF Conv1D, W stored in x out = 30 x 20): V = W + ΔWᵀ and each output, a
    column of V, is rescaled to its magnitude, m_j / ‖V[:, j]‖ · V[:, j]; the merge keeps W's 30 x 20 layout.
    Only out x in layers' DoRA merges (rows rescaled) had been checked against peft."""
    rng = np.random.default_rng(78)
    A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((20, 4)).astype(np.float32)
    m = (np.abs(rng.standard_normal(20)) + 1).astype(np.float32)
    f = _write_adapter(tmp_path / "a", {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B,
                                        "base_model.model.fc.lora_magnitude_vector": m},
                       use_dora=True, fan_in_fan_out=True)
    W = rng.standard_normal((30, 20)).astype(np.float32)
    rows = {r.name: r for r in _open_rows(f, {"fc.weight": W})}
    V = W + 2.0 * (B.astype(np.float64) @ A).T  # scale 8 / 4 = 2
    want = V * (m / np.linalg.norm(V, axis=0))[None, :]
    np.testing.assert_allclose(rows["fc#merged"].load(), want, rtol=1e-5, atol=1e-5)  # (float32 sums)


# ---- round 76's gaps --------------------------------------------------------------------------------------


def test_factored_updates_refuse_factors_that_do_not_multiply_and_give_a_float32_dense():
    """A LowRank's B and A must share r, LoHa's two pairs the same out × in (a width-1 A or a height-1 B would
    broadcast into a matrix of the other's shape), and LoKr's factors must be 2-D: each is a ValueError naming the
    shapes when the update is made, not a wrong matrix later. dense() is float32 whatever the factors' dtype (LoHa's
    are float64), equal to scale·B·A."""
    from htsr.factored import LowRank

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"expected B \(out x r\) and A \(r x in\), got \(5, 3\) and \(2, 7\)"):
        LowRank(rng.standard_normal((5, 3)), rng.standard_normal((2, 7)))
    B1, A1 = rng.standard_normal((6, 2)), rng.standard_normal((2, 4))
    with pytest.raises(ValueError, match="expected two pairs"):
        hadamard_lowrank(B1, A1, rng.standard_normal((6, 3)), rng.standard_normal((3, 1)))  # A2 one column wide
    with pytest.raises(ValueError, match="expected two pairs"):
        hadamard_lowrank(B1, A1, rng.standard_normal((1, 3)), rng.standard_normal((3, 4)))  # B2 one row high
    with pytest.raises(ValueError, match="expected two 2-D factors"):
        Kronecker(rng.standard_normal((3, 5)), rng.standard_normal(4))
    d = LowRank(B1, A1, 0.5)
    assert d.shape == (6, 4) and d.rank == 2
    assert d.dense().dtype == np.float32
    np.testing.assert_allclose(d.dense(), 0.5 * B1 @ A1, rtol=1e-6, atol=1e-6)  # (float32 rounding of O(1) entries)
    h = hadamard_lowrank(B1, A1, rng.standard_normal((6, 3)), rng.standard_normal((3, 4)))
    assert h.B.dtype == np.float64 and h.dense().dtype == np.float32


def test_a_layer_replication_adapter_pairs_each_layer_with_the_base_layer_it_copies(tmp_path):
    """layer_replication [[1, 2], [0, 2]]: the adapted model's layers 0, 1, 2 are copies of base layers 1, 0, 1
    (peft's replicate_layers). With --base, layer 0's W and W + ΔW had been base layer 0's (status ok: wrong
    numbers), layer 2 'the base has no tensor'."""
    from htsr.io.peft import PeftAdapter

    rng = np.random.default_rng(3)
    base = {f"model.layers.{i}.q_proj.weight": rng.standard_normal((40, 30)).astype(np.float32) for i in range(2)}
    t, delta = {}, {}
    for j in range(3):
        A, B = rng.standard_normal((4, 30)).astype(np.float32), rng.standard_normal((40, 4)).astype(np.float32)
        t[f"base_model.model.model.layers.{j}.q_proj.lora_A.weight"] = A
        t[f"base_model.model.model.layers.{j}.q_proj.lora_B.weight"] = B
        delta[j] = 2.0 * (B.astype(np.float64) @ A)  # lora_alpha 8 / r 4
    folder = _write_adapter(tmp_path / "rep", t, target_modules=["q_proj"], layer_replication=[[1, 2], [0, 2]])
    refs = {r.name: r for r in PeftAdapter(folder).with_base(open_source(base))}
    for j, i in enumerate((1, 0, 1)):
        W = base[f"model.layers.{i}.q_proj.weight"]
        np.testing.assert_array_equal(refs[f"model.layers.{j}.q_proj#base"].load(), W)
        merged = np.asarray(refs[f"model.layers.{j}.q_proj#merged"].load(), np.float64)
        np.testing.assert_allclose(merged, W + delta[j], rtol=1e-5, atol=1e-5)  # (float32 factors and sums)
    with pytest.raises(SourceError, match=r"layer_replication must be a list of \[start, end\] ranges"):
        PeftAdapter(_write_adapter(tmp_path / "bad", t, layer_replication=[[1]])).with_base(open_source(base))


def test_a_lora_on_multihead_attention_pairs_with_its_in_proj_weight_and_out_proj(tmp_path):
    """peft's LoRA on nn.MultiheadAttention updates in_proj_weight and wraps out_proj inside the attention's
    base_layer: the rows had been 'attn.base_layer.out_proj', and both modules' #base and #merged skipped as 'the
    base has no tensor attn.weight', live too, with the two adapted tensors said to be 'not adapted'."""
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 4)

    torch.manual_seed(0)
    base = M()
    safetensors_torch.save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(tmp_path / "base.safetensors"))
    pm = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["attn"],
                                                                  init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "adapter"))
    live = htsr.analyze(pm, min_evals=2)
    assert "not adapted" not in live.source
    live = _rows(live)
    layer = pm.base_model.model.attn
    # W + ΔW of each, ΔW as peft's get_delta_weight gives it (peft 0.21's merge, and so its forward and
    # merge_and_unload, add out_proj's ΔW twice: huggingface/peft#3774; the in_proj merge is W + ΔW)
    want = {"attn": base.attn.in_proj_weight.detach().double() + layer.get_delta_weight("default").detach().double(),
            "attn.out_proj": base.attn.out_proj.weight.detach().double()
            + layer.base_layer.out_proj.get_delta_weight("default").detach().double()}
    merged = {k: v.detach().double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
    np.testing.assert_allclose(merged["attn.in_proj_weight"], want["attn"].numpy(), rtol=1e-6, atol=1e-6)
    saved = _rows(htsr.analyze(tmp_path / "adapter", base=tmp_path / "base.safetensors", min_evals=2))
    assert sorted(saved) == sorted(live) == sorted(f"{m}#{t}" for m in ("attn", "attn.out_proj")
                                                   for t in ("delta", "base", "merged"))
    for m, W in want.items():
        for rows in (live, saved):  # float32 sums against float64: 1e-5 relative
            assert rows[f"{m}#merged"][0].lambda_max == pytest.approx(np.linalg.norm(W.numpy(), 2) ** 2, rel=1e-5), m


def test_a_live_layer_replication_model_runs_on_its_own_replicated_weights():
    """A live PeftModel with layer_replication holds its layers replicated already (its layer j is base layer
    layer_map[j]): its #base rows are its own wrapped weights; the map had been applied a second time, pairing
    layer 0 with base layer 0's weight, status ok."""
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    base = T.LlamaForCausalLM(T.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=4, vocab_size=100))
    W = {i: base.model.layers[i].self_attn.q_proj.weight.detach().double().numpy().copy() for i in range(2)}
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        base.save_pretrained(d)  # (the base model's folder, before peft wraps and replicates its layers)
        pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"],
                                                        layer_replication=[[1, 2], [0, 2]], init_lora_weights=False))
        for kw in ({}, {"base": d}):  # its own weights; the pretrained folder, which the map pairs
            rows = {r.name: r for r in htsr.analyze(pm, min_evals=2, **kw).layers}
            for j, i in enumerate((1, 0, 1)):  # (float32 weights against their float64 norm: 1e-6)
                row = rows[f"model.layers.{j}.self_attn.q_proj#base"]
                assert row.status == "ok" and row.lambda_max == pytest.approx(np.linalg.norm(W[i], 2) ** 2,
                                                                              rel=1e-6), (kw, j)


def test_conv_options_on_an_adapter_of_linear_layers_only_are_refused(tmp_path):
    """--conv per_position and --no-ww-conv-scale act on a LoRA update of a conv (its kernel positions); on an
    adapter whose updates are all of Linear layers they changed nothing and had been accepted (a 'lora' row counted
    as a kind they act on, h43). Refused there, in analyze, compare and the monitor's bind; a conv LoRA keeps them."""
    from htsr.compare import compare
    from htsr.monitor import AlphaMonitor

    rng = np.random.default_rng(3)
    t = {"base_model.model.fc.lora_A.weight": rng.standard_normal((4, 60)).astype(np.float32),
         "base_model.model.fc.lora_B.weight": rng.standard_normal((80, 4)).astype(np.float32)}
    linear = _write_adapter(tmp_path / "linear", t, target_modules=["fc"])
    for opt in ({"conv": "per_position"}, {"ww_conv_scale": False}):
        name = next(iter(opt))
        with pytest.raises(htsr.OptionError, match=rf"option {name!r} acts only on .*lora \(of a conv2?d?\) layers, and "
                                                   r"this model has none \(its rows are lora\)"):
            htsr.analyze(linear, min_evals=2, **opt)
        with pytest.raises(htsr.OptionError, match=rf"option {name!r} acts only on"):
            compare([linear, linear], min_evals=2, **opt)
    peft_model = peft.get_peft_model(nn.Sequential(nn.Linear(60, 80)),
                                     peft.LoraConfig(r=4, target_modules=["0"], init_lora_weights=False))
    with pytest.raises(htsr.OptionError, match=r"option 'conv' acts only on"):
        AlphaMonitor(peft_model, min_evals=2, conv="per_position")
    # a conv LoRA: the option acts (one row per kernel position), and a user's kinds='lora' may hold one
    torch.manual_seed(1)
    pm = peft.get_peft_model(ConvNet(), peft.LoraConfig(r=4, target_modules=["c2"], init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "conv"))
    r = htsr.analyze(tmp_path / "conv", conv="per_position", min_evals=2, kinds="lora")
    assert len(r.layers) == 9 and all(l.kind == "lora" for l in r.layers)
    assert htsr.analyze(tmp_path / "conv", ww_conv_scale=False, min_evals=2).layers[0].lambda_max == pytest.approx(
        2 * htsr.analyze(tmp_path / "conv", min_evals=2).layers[0].lambda_max, rel=1e-12)  # the 1/2 scale left off
    # WeightWatcher's scale is a Conv2d's: on a Conv1d LoRA alone it changed nothing, and is refused (h54)
    pm = peft.get_peft_model(ConvNet(), peft.LoraConfig(r=4, target_modules=["c1"], init_lora_weights=False))
    pm.save_pretrained(str(tmp_path / "conv1d"))
    with pytest.raises(htsr.OptionError, match=r"option 'ww_conv_scale' acts only on conv2d, lora \(of a conv2d\) "
                                               r"layers, and this model has none \(its rows are lora\)"):
        htsr.analyze(tmp_path / "conv1d", ww_conv_scale=False, min_evals=2)
    assert len(htsr.analyze(tmp_path / "conv1d", conv="per_position", min_evals=2).layers) == 5  # (its 5 taps)
