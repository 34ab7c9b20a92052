"""Deltas W − W_base (``base=`` / ``--base``): known answers, name matching, never a false delta."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import matrix_with_singular_values, rounding_noise_rms

import htsr
from htsr.cli import main
from htsr.errors import OptionError


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    base = {"enc.a.weight": rng.standard_normal((400, 200)), "enc.b.weight": rng.standard_normal((300, 100)),
            "enc.c.weight": rng.standard_normal((200, 100)), "enc.only_base.weight": rng.standard_normal((120, 60))}
    s = np.array([9.0, 7.0, 5.0, 3.0, 2.0])  # a rank-5 update with chosen singular values
    delta = matrix_with_singular_values(s, 400, 200, seed=seed)
    model = {"enc.a.weight": base["enc.a.weight"] + delta, "enc.b.weight": base["enc.b.weight"].copy(),
             "enc.c.weight": rng.standard_normal((100, 100)), "enc.only_model.weight": rng.standard_normal((120, 60))}
    return model, base, s


def test_delta_spectrum_is_that_of_the_update():
    model, base, s = _pair()
    row = {r.name: r for r in htsr.analyze(model, base=base, precision="accurate").layers}["enc.a"]
    # W - W_base = U diag(s) V^T exactly up to float64 rounding of the sums (~1e-15 relative)
    assert row.lambda_max == pytest.approx(s[0] ** 2, rel=1e-12)
    assert row.matrix_rank == 5
    assert 10 ** row.log_norm == pytest.approx(np.sum(s**2), rel=1e-12)


def test_an_expert_or_kernel_position_a_fine_tune_left_alone_is_unchanged_not_failed():
    """A fused expert stack with one expert changed: the others' deltas are all zero, as a frozen layer's. They had
    been 'failed: all-zero matrix' (counted as failures, 6 of them in a Mixtral), the whole frozen tensor 'skipped:
    unchanged'; so for a conv's kernel positions with --conv per_position."""
    rng = np.random.default_rng(3)
    base = {"experts.down_proj": rng.standard_normal((4, 128, 256)).astype(np.float32),
            "conv.weight": rng.standard_normal((64, 32, 3, 3)).astype(np.float32)}
    ft = {k: v.copy() for k, v in base.items()}
    ft["experts.down_proj"][1] += rng.standard_normal((128, 256)).astype(np.float32)
    ft["conv.weight"][:, :, 1, 1] += rng.standard_normal((64, 32)).astype(np.float32)
    rows = {r.name: r.status for r in htsr.analyze(ft, base=base, conv="per_position", min_evals=10).layers}
    frozen = "skipped: unchanged: equal to the base's (a frozen {}), no update to analyse"
    assert [rows[f"experts.down_proj[{e}]"] for e in (0, 2, 3)] == [frozen.format("expert")] * 3
    assert rows["experts.down_proj[1]"] == "ok" and rows["conv[1,1]"] == "ok"
    assert rows["conv[0,0]"] == frozen.format("kernel position")
    assert htsr.analyze(ft, base=base, conv="per_position", min_evals=10).summary.num_failed == 0


def test_unmatched_and_reshaped_tensors_are_listed_but_never_analysed():
    model, base, _ = _pair()
    r = htsr.analyze(model, base=base)
    rows = {x.name: x for x in r.layers}
    assert list(rows) == ["enc.a", "enc.b", "enc.c", "enc.only_model", "enc.only_base"]  # model order, then base-only
    # counted as skipped, not as "not fitted" (which a rank-deficient update is)
    assert (r.summary.num_skipped, r.summary.num_not_fitted) == (4, sum(x.status.startswith("not_fitted")
                                                                         for x in r.layers))
    # an unchanged tensor (a frozen layer) has no update: skipped (not fitted), not a failed zero matrix
    assert rows["enc.b"].status == "skipped: unchanged: equal to the base tensor (a frozen layer), no update to analyse"
    assert rows["enc.c"].status.startswith("skipped: shape (100, 100) differs from the base's (200, 100)")
    assert rows["enc.only_model"].status.startswith("skipped: only in the model")
    assert rows["enc.only_base"].status.startswith("skipped: only in the base")
    for name in ("enc.c", "enc.only_model", "enc.only_base"):
        assert np.isnan(rows[name].log_norm) and np.isnan(rows[name].alpha)


def test_biases_and_norm_scales_in_one_source_only_give_no_row_and_are_counted_once():
    """A LayerNorm scale or a bias missing from one side is no delta and no layer: like the model's own, it
    is listed as not analysed (by what it is), never a 'dense' N x 1 skipped row. Prefix-matched names count
    each tensor once."""
    model, base, _ = _pair()
    model |= {"enc.norm.weight": np.ones(200), "enc.a.bias": np.zeros(400)}
    base |= {"enc.base_norm.weight": np.ones(100), "enc.b.bias": np.zeros(300), "enc.a.bias": np.ones(400)}
    # a norm scale in both sources with another shape (a widened layer): no delta, and no 'dense' skipped row
    # either (unseen before: every 1-D tensor here was missing from one side, none had a shape that differs)
    model["enc.ln.weight"], base["enc.ln.weight"] = np.ones(200), np.ones(100)
    for wrap in ("", "bert."):
        r = htsr.analyze({wrap + k: v for k, v in model.items()}, base=base)
        assert [x.name for x in r.layers] == [wrap + n for n in ("enc.a", "enc.b", "enc.c", "enc.only_model")] + [
            "enc.only_base"]
        got = {n.reason: n.count for n in r.not_analysed}
        # enc.a.bias: a real delta, 1-D
        assert got == {"1-D (norm scales, scalars)": 3, "bias or norm buffer": 2}
        assert r.num_tensors == 10 == len(r.layers) + sum(got.values())


def test_an_integer_buffer_in_one_source_only_gives_no_row():
    """Position ids ([1, 512] int64) in the base and not in the model (transformers 5 saves none) had become a
    skipped 'embedding' row 'only in the base …', counted among the skipped layers; alone, either model lists them
    as an integer buffer, no layer. Listed so with --base too, on either side; an int8 weight named as one keeps
    its row."""
    model, base, _ = _pair()
    ids = np.arange(512, dtype=np.int64)[None]
    skipped = htsr.analyze(model, base=base).summary.num_skipped  # (the pair's own: only in one, reshaped)
    for m, b in ((model, base | {"embeddings.position_ids": ids}), (model | {"embeddings.position_ids": ids}, base)):
        r = htsr.analyze(m, base=b)
        assert "embeddings.position_ids" not in [x.name for x in r.layers] and r.summary.num_skipped == skipped
        assert ("integer buffer (ids, masks, counters)", ("embeddings.position_ids",)) in {
            (n.reason, n.examples) for n in r.not_analysed}
    r = htsr.analyze(model | {"enc.q.weight": np.ones((40, 30), np.int8)}, base=base)
    assert [x.status for x in r.layers if x.name == "enc.q"] == [
        "skipped: only in the model: the base has no tensor of this name (not a delta)"]


def test_inputs_are_not_modified_and_options_record_the_base(tmp_path):
    model, base, _ = _pair()
    before = {k: v.copy() for k, v in {**model, **base}.items()}
    path = tmp_path / "base.npz"
    np.savez(path, **base)
    result = htsr.analyze(model, base=path)
    assert result.options["base"] == str(path) and "base" in result.source
    assert htsr.analyze(model, base=base).options["base"] == "dict"
    # an opened source (what compare passes, to open a base once for every model): by its description
    from htsr.io import open_source

    again = htsr.analyze(model, base=open_source(path))
    assert again.options["base"] == str(path)
    assert [(l.name, l.status, repr(l.alpha)) for l in again.layers] == [(l.name, l.status, repr(l.alpha))
                                                                         for l in result.layers]
    for k, v in {**model, **base}.items():
        assert np.array_equal(v, before[k])


def test_cli_base_flag(tmp_path, capsys):
    model, base, _ = _pair(1)
    np.savez(tmp_path / "m.npz", **model)
    np.savez(tmp_path / "b.npz", **base)
    assert main(["analyze", str(tmp_path / "m.npz"), "--base", str(tmp_path / "b.npz"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "skipped: only in the base" in out
    text = (tmp_path / "o" / "layers.csv").read_text()
    assert text.count("\nenc.") == 5


def test_bad_base_is_refused():
    with pytest.raises(OptionError):
        htsr.analyze({"a.weight": np.eye(60)}, base=3.0)
    with pytest.raises(htsr.errors.SourceError):
        htsr.analyze({"a.weight": np.eye(60)}, base="/nonexistent/base.safetensors")


def test_task_model_names_are_aligned_with_the_base():
    """A task model wraps its base ('bert.encoder…' against 'encoder…'): no name matches exactly, so one
    leading component is dropped, added or replaced; the source says so."""
    model, base, s = _pair()
    wrapped = {f"bert.{k}": v for k, v in model.items()} | {"classifier.weight": np.ones((2, 200))}
    r = htsr.analyze(wrapped, base=base, precision="accurate")
    rows = {x.name: x for x in r.layers}
    # the same delta as unwrapped (float64 rounding, ~1e-15, as in test_delta_spectrum_is_that_of_the_update)
    assert rows["bert.enc.a"].lambda_max == pytest.approx(s[0] ** 2, rel=1e-12)
    assert rows["classifier"].status.startswith("skipped: only in the model")
    assert "model names matched to the base's by dropping 'bert.'" in r.source
    assert "model names matched to the base's by adding 'bert.'" in htsr.analyze(base, base=wrapped).source


def test_a_few_shared_names_do_not_hide_a_better_alignment():
    """A '…ForCausalLM' ('model.layers…', 'lm_head') against its backbone ('layers…', 'lm_head'): one name
    matches as it is, all of them once 'model.' is dropped; a model sharing half its names or more keeps
    them as they are."""
    from htsr.io.delta import align_names

    names = ["lm_head.weight", "model.a.weight", "model.b.weight"]
    rename, note = align_names(names, ["lm_head.weight", "a.weight", "b.weight"])
    assert [rename(n) for n in names] == ["lm_head.weight", "a.weight", "b.weight"] and note == "dropping 'model.'"
    rename, note = align_names(names, ["lm_head.weight", "model.a.weight", "b.weight"])
    assert [rename(n) for n in names] == names and note == ""


def test_a_delta_wholly_within_rounding_noise_gets_no_mp_fit_or_phase():
    """An fp16 copy against its fp32 original: every eigenvalue of W − W_base lies below the rounding noise's MP
    edge, yet the rows had MP spikes and phases (EfficientNet-Lite0: 'bulk+spikes' 7, 'bleeding-out' 5 of 50 rows,
    none fitted). A noise MP fit describes no update; a delta above the noise keeps its fit."""
    rng = np.random.default_rng(4)
    base = {f"l{i}.weight": (0.05 * rng.standard_normal((300, 200))).astype(np.float32) for i in range(2)}
    model = {"l0.weight": base["l0.weight"].astype(np.float16),  # its rounding alone
             "l1.weight": (base["l1.weight"] + 0.01 * rng.standard_normal((300, 200))).astype(np.float16)}
    rows = {r.name: r for r in htsr.analyze(model, base=base, randomize=True).layers}
    assert rows["l0"].status.startswith("not_fitted: 0 of 200 eigenvalues above the floor")
    assert rows["l0"].phase == "" and all(math.isnan(getattr(rows["l0"], c)) for c in ("num_spikes", "mp_sigma",
                                                                                        "num_traps"))
    assert rows["l1"].status == "ok" and rows["l1"].phase and math.isfinite(rows["l1"].mp_sigma)


def test_no_name_in_common_is_refused():
    """The refusal shows a name of each side, so the user sees how they differ (the base's example had gone
    unchecked)."""
    model, base, _ = _pair()
    with pytest.raises(htsr.SourceError, match="no tensor name in common") as e:
        htsr.analyze({k.replace(".weight", ".w"): v for k, v in model.items()}, base=base)
    assert "(model names like 'enc.a.w', base names like 'enc.a.weight'): nothing to subtract" in str(e.value)
    wrapped = {f"bert.{k}": v for k, v in model.items()}
    assert "by replacing 'bert.' with 'roberta.'" in htsr.analyze(
        wrapped, base={f"roberta.{k}": v for k, v in base.items()}).source


def test_a_low_rank_update_is_not_fitted_to_the_rounding_noise_of_the_stored_weights(tmp_path):
    """A rank-8 update stored in float32 (as a merged LoRA is): W − W_base is the update plus the rounding
    of the stored W, eigenvalues near 1e-15 that a float64 spectrum keeps. Cut at that noise's MP edge,
    (u·rms(W)/√3·(√N + √M))², only the 8 eigenvalues of the update are left, so the row is not fitted (it
    was fitted to the noise: alpha 1.3, over-trained); a full-rank update far above the noise is fitted."""
    rng = np.random.default_rng(3)
    base = {f"l{i}.weight": (0.05 * rng.standard_normal((300, 200))).astype(np.float32) for i in range(2)}
    update = 1e-3 * rng.standard_normal((300, 8)) @ rng.standard_normal((8, 200)) / 8  # entries ~3.5e-4
    tuned = {"l0.weight": (base["l0.weight"] + update).astype(np.float32),
             "l1.weight": (base["l1.weight"] + 1e-3 * rng.standard_normal((300, 200))).astype(np.float32)}
    rows = {r.name: r for r in htsr.analyze(tuned, base=base).layers}
    assert rows["l0"].status.startswith("not_fitted: 8 of 200 eigenvalues above the floor ")
    assert rows["l0"].status.endswith(" (the rounding noise the delta holds from the stored weights) "
                                      "< min_evals=50")
    assert rows["l1"].status == "ok"
    # the same in bfloat16, 2^16 times coarser: not fitted (entries 3.5e-4 against an ulp near 2e-4)
    import ml_dtypes

    bf = {k: v.astype(ml_dtypes.bfloat16) for k, v in tuned.items()}
    rows = {r.name: r for r in htsr.analyze(bf, base={k: v.astype(ml_dtypes.bfloat16) for k, v in base.items()}).layers}
    assert rows["l0"].status.startswith("not_fitted: ") and rows["l1"].status == "ok"


def test_align_names_refuses_collisions_and_module_renames_and_keeps_wrappers_with_many_heads():
    """T5's full model against its encoder: 'decoder.' replaced with 'encoder.' would match as many names
    as the encoder's own, landing two names on one: the identity stays. A backbone under 'backbone.' with
    more head tensors than backbone ones is still found. Flat models sharing nothing get no swap of one
    module's name for another's (conv186's weight and bias 'matching' c144's)."""
    from htsr.io.delta import align_names

    enc = [f"encoder.block.{i}.{m}.weight" for i in range(3) for m in ("q", "k", "v", "o")]
    full = enc + [n.replace("encoder.", "decoder.") for n in enc] + ["shared.weight", "lm_head.weight"]
    rename, note = align_names(full, enc + ["shared.weight"])
    assert note == "" and [rename(n) for n in full] == full
    backbone = [f"layer{i}.{p}" for i in range(6) for p in ("weight", "bias")]
    heads = [f"head{i}.{p}" for i in range(8) for p in ("weight", "bias")]
    rename, note = align_names([f"backbone.{n}" for n in backbone] + heads, backbone)
    assert note == "dropping 'backbone.'" and rename("backbone.layer3.bias") == "layer3.bias"
    flat = [f"conv{i}.{p}" for i in range(500) for p in ("weight", "bias")]
    assert align_names(flat, [f"c{i}.{p}" for i in range(500) for p in ("weight", "bias")]) == (None, "")


def test_two_renamings_that_tie_are_refused_not_picked_by_hash_order():
    """BART's encoder and decoder layers share their suffixes: an encoder's 'layers.0.fc1' gains 'encoder.'
    or 'decoder.' with as many matches. Neither is picked (it flipped with PYTHONHASHSEED, subtracting the
    decoder from the encoder); the error says why."""
    from htsr.io.delta import align_names

    enc = [f"layers.{i}.{m}.weight" for i in range(3) for m in ("fc1", "fc2")]
    full = [f"{side}.{n}" for side in ("encoder", "decoder") for n in enc]
    rename, note = align_names(enc, full)
    assert rename is None and note.startswith("ambiguous: adding 'decoder.' and adding 'encoder.' each match 6 names")
    rng = np.random.default_rng(0)
    with pytest.raises(htsr.SourceError, match="names matched to the base .*: ambiguous: adding 'decoder.'"):
        htsr.analyze({n: rng.standard_normal((60, 60)) for n in enc},
                     base={n: rng.standard_normal((60, 60)) for n in full})
    assert align_names(["fc.weight"], ["linear.weight"]) == (None, "")  # one name: no renaming pattern
    assert align_names([], ["a.b.weight"]) == (None, "")


def test_the_noise_floor_is_the_model_storage_rounding_not_the_base_one():
    """A float32 fine-tune of a bfloat16 base holds float32 rounding only (it started from the stored base):
    an update of rms 1e-3 of the weights is fitted, not cut at bfloat16's noise."""
    import ml_dtypes

    rng = np.random.default_rng(4)
    base = {"l.weight": (0.05 * rng.standard_normal((400, 256))).astype(ml_dtypes.bfloat16)}
    tuned = {"l.weight": base["l.weight"].astype(np.float32) + 5e-5 * rng.standard_normal((400, 256)).astype(np.float32)}
    assert htsr.analyze(tuned, base=base).layers[0].status == "ok"


def test_a_weight_tied_in_the_model_and_its_base_is_one_delta(tmp_path):
    """GPT-2's lm_head is its wte in a fine-tune and in its base: one delta row, the other name listed."""
    torch = pytest.importorskip("torch")
    from torch import nn

    def net(seed):
        torch.manual_seed(seed)
        m = nn.Module()
        m.wte, m.lm_head = nn.Embedding(300, 64), nn.Linear(64, 300, bias=False)
        m.lm_head.weight = m.wte.weight
        return m

    base, tuned = net(0), net(0)
    with torch.no_grad():
        tuned.wte.weight.add_(0.01 * torch.randn(300, 64))
    r = htsr.analyze(tuned, base=base, min_evals=3)
    assert [x.name for x in r.layers] == ["wte"]
    assert any(n.reason.startswith("the same tensor as wte.weight") for n in r.not_analysed)


def test_a_weight_tied_on_one_side_only_is_one_delta_and_two_untied_bases_two(tmp_path):
    """A tied LM head saved on one side only (a .pt state dict holds lm_head.weight beside wte, a
    save_pretrained folder drops it): one delta row, wte, the LM head listed as tied. Its row had been
    'skipped: only in the model' (or 'only in the base'). A base that holds the two untied keeps two deltas."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    w0 = torch.from_numpy(rng.standard_normal((300, 64)).astype(np.float32))
    w1 = w0 + torch.from_numpy(0.01 * rng.standard_normal((300, 64)).astype(np.float32))
    tied = {"wte.weight": w1, "lm_head.weight": w1}  # one storage: torch.save keeps it tied
    torch.save(tied, tmp_path / "tied.pt")
    torch.save({"wte.weight": w0, "lm_head.weight": w0}, tmp_path / "tied_base.pt")
    torch.save({"wte.weight": w1}, tmp_path / "alone.pt")
    torch.save({"wte.weight": w0}, tmp_path / "alone_base.pt")
    for model, base in (("tied", "alone_base"), ("alone", "tied_base")):
        r = htsr.analyze(tmp_path / f"{model}.pt", base=tmp_path / f"{base}.pt", min_evals=3)
        assert [(x.name, x.status) for x in r.layers] == [("wte", "ok")], (model, base)
        assert [n.count for n in r.not_analysed if n.reason.startswith("the same tensor as wte.weight")] == [1]
    untied = {"wte.weight": w0, "lm_head.weight": w0 + 0.02}
    torch.save(untied, tmp_path / "untied_base.pt")
    r = htsr.analyze(tmp_path / "tied.pt", base=tmp_path / "untied_base.pt", min_evals=3)
    assert [x.name for x in r.layers] == ["wte", "lm_head"]  # two different deltas


@pytest.mark.parametrize("arch", ["llava", "gpt_neox", "dinov2"])
def test_a_live_transformers_model_pairs_with_its_own_checkpoint(arch, tmp_path):
    """transformers 5 renames some weights on load and back on save (Llava's language_model.model.* is
    model.language_model.* in memory). A live model, and its state_dict() saved with torch.save, keep the names in
    memory (those of named_modules(), --layers and plot_layer); against the model's save_pretrained folder they had
    not paired (--base listed all 9 language-model rows 'only in the model', the changed layer got no delta). Both
    sides spelled as the folder's config's model saves them pair; only the changed layer is a delta."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    from htsr.compare import compare

    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    if arch == "llava":
        m = T.LlavaForConditionalGeneration(T.LlavaConfig(
            vision_config=T.CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=8),
            text_config=T.LlamaConfig(vocab_size=200, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=96), image_token_index=199))
        changed, name = m.model.language_model.layers[0].mlp.up_proj, "model.language_model.layers.0.mlp.up_proj"
    elif arch == "gpt_neox":
        m = T.GPTNeoXForCausalLM(T.GPTNeoXConfig(vocab_size=200, hidden_size=64, num_hidden_layers=1,
                                                 num_attention_heads=4, intermediate_size=96))
        changed, name = m.lm_head, "lm_head"  # (embed_out in the folder)
    else:
        m = T.Dinov2Model(T.Dinov2Config(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=96, image_size=32, patch_size=8))
        changed, name = m.encoder.layer[0].attention.q_proj, "encoder.layer.0.attention.q_proj"
    m.eval().save_pretrained(tmp_path / "hf")
    torch.save(m.state_dict(), tmp_path / "before.pt")
    live = htsr.analyze(m, min_evals=5)
    assert name in {r.name for r in live.layers}  # (the name in memory)
    assert len(compare([m, tmp_path / "hf"]).common_layers) == len(live.layers)
    with torch.no_grad():
        step = 0.01 * torch.randn_like(changed.weight)
        changed.weight.add_(step)
    for base in (tmp_path / "hf", tmp_path / "before.pt"):
        res = htsr.analyze(m, base=base, min_evals=5)
        rows = {r.name: r for r in res.layers}
        assert not [n for n, r in rows.items() if "only in" in r.status]
        assert [n for n, r in rows.items() if not r.status.startswith("skipped")] == [name]
        # the delta is the step (Frobenius norm² = Σλ; 1e-4: the step is float32, subtracted in float32)
        assert 10 ** rows[name].log_norm == pytest.approx(float(step.double().norm() ** 2), rel=1e-4)
    # and torch.compile's wrapper ('_orig_mod.' dropped, as any wrapper's prefix)
    compiled = htsr.analyze(torch.compile(m), base=tmp_path / "before.pt", min_evals=5)
    assert not [r for r in compiled.layers if "only in" in r.status]


def test_align_names_counts_matches_of_one_shape_and_makes_disjoint_ties_together():
    """Silero's TorchScript holds _model.* (16 kHz) and _model_8k.*, its ONNX exports model.* (and model_8k.*):
    by names alone '_model.' and '_model_8k.' each matched 8 of an export's names (refused as ambiguous); by
    shape 8 and 6. Two changes of different components that tie are both made."""
    from htsr.io.delta import align_names

    parts = ["encoder.0.w", "encoder.1.w", "encoder.2.w", "decoder.w"]
    jit = [f"_model.{p}" for p in parts] + [f"_model_8k.{p}" for p in parts]
    shape = {**{f"_model.{p}": (8, 4) for p in parts}, **{f"_model_8k.{p}": (4, 4) for p in parts}}
    onnx16 = {f"model.{p}": (8, 4) for p in parts}
    rename, note = align_names(jit, onnx16)
    assert rename is None and note.startswith("ambiguous")  # (names alone)
    rename, note = align_names(jit, onnx16, lambda a, b: shape[a] == onnx16[b])
    assert note == "replacing '_model.' with 'model.'" and rename("_model.decoder.w") == "model.decoder.w"
    both = {**onnx16, **{f"model_8k.{p}": (4, 4) for p in parts}}
    rename, note = align_names(jit, both, lambda a, b: shape[a] == both[b])
    assert note == "replacing '_model.' with 'model.' and replacing '_model_8k.' with 'model_8k.'"
    assert [rename(n) for n in jit] == list(both)
    # BART's tie stays refused: adding 'encoder.' or 'decoder.' to the same names (one component, two ways)
    names = ["layers.0.fc1.weight", "layers.1.fc1.weight"]
    ref = {f"{s}.{n}": None for s in ("encoder", "decoder") for n in names}
    assert align_names(names, ref)[0] is None


def test_a_wrapper_prefix_of_several_components_is_matched_once_by_its_shortest_spelling():
    """A sentence-transformers ONNX export names BERT's weights 'model.0.auto_model.encoder…' (the module list's
    entry 0, its Transformer's auto_model): three leading components, where one was tried, so --base and compare
    found no name in common with the encoder's own checkpoint. A change spelt with more components that pairs the
    same names ('a.b.' → 'c.b.' beside 'a.' → 'c.') is the same change, not a tie; one that pairs more (a shared
    'lm_head' left as it is) is a better one."""
    from htsr.io.delta import align_names

    bert = [f"encoder.layer.{i}.{m}.weight" for i in range(3) for m in ("attention.self.query", "output.dense")]
    bert += ["embeddings.word_embeddings.weight"]
    export = [f"model.0.auto_model.{n}" for n in bert]
    rename, note = align_names(export, bert)
    assert note == "dropping 'model.0.auto_model.'" and [rename(n) for n in export] == bert
    rename, note = align_names(bert, export)
    assert note == "adding 'model.0.auto_model.'" and [rename(n) for n in bert] == export
    # every name under 'a.b.': 'a.' → 'c.' and 'a.b.' → 'c.b.' pair the same names; the first is kept
    names = [f"a.b.l{i}.weight" for i in range(4)]
    rename, note = align_names(names, [n.replace("a.", "c.", 1) for n in names])
    assert note == "replacing 'a.' with 'c.'" and rename("a.b.l3.weight") == "c.b.l3.weight"
    # 'adding 'a.'' pairs the four layers and loses the shared lm_head; 'x.' → 'a.x.' pairs all five
    names = [f"x.l{i}.weight" for i in range(4)] + ["lm_head.weight"]
    ref = [f"a.x.l{i}.weight" for i in range(4)] + ["lm_head.weight"]
    rename, note = align_names(names, ref)
    assert note == "replacing 'x.' with 'a.x.'" and [rename(n) for n in names] == ref
    # the whole path: a delta of the export against the checkpoint, under the export's names
    rng = np.random.default_rng(0)
    base = {n: rng.standard_normal((80, 60)) for n in bert}  # (60 eigenvalues: min_evals 50)
    model = {f"model.0.auto_model.{n}": w + 0.1 * rng.standard_normal(w.shape) for n, w in base.items()}
    r = htsr.analyze(model, base=base, tails=False)
    assert "model names matched to the base's by dropping 'model.0.auto_model.'" in r.source
    assert [x.status for x in r.layers] == ["ok"] * len(bert)


def test_farms_counts_a_deltas_eigenvalues_above_the_same_floor_as_without_it():
    """A delta's whole matrix is cut at its inputs' rounding noise (the MP edge of that noise); with
    --farms-aspect it had been cut at twice that (the storage rule's), with another count and no reason."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((400, 384)).astype(np.float32)
    upd = 1e-4 * (rng.standard_normal((400, 8)) @ rng.standard_normal((8, 384))) / np.sqrt(8)
    model = {"fc.weight": (W.astype(np.float64) + upd).astype(np.float32)}
    rows = [htsr.analyze(model, base={"fc.weight": W}, **o).layers[0] for o in ({}, {"farms_aspect": 1.0})]
    plain, farms = (r.status for r in rows)
    assert plain.startswith("not_fitted: ") and farms.startswith("not_fitted: ")
    # the same count above the same floor, for the same reason
    assert farms.split(" < min_evals")[0] == plain.split(" < min_evals")[0], (plain, farms)
    assert "(the rounding noise the delta holds from the stored weights)" in farms


def test_a_float_deltas_resolution_and_a_quantized_blocks_rounding_are_their_closed_forms():
    """A float32 model's delta holds its own rounding: u/√3 of its entries' rms (u = 2⁻²⁴); a quantized tensor's
    blocks, each spanning its range in 2^bits − 1 steps Δ, round with rms Δ/√12. A real update a few times that
    resolution is analysed, not 'unchanged' (np.allclose would call it so: below its atol 1e-8)."""
    from htsr.io import open_source
    from htsr.io.base import TensorRef
    from htsr.io.delta import DeltaSource, rounding

    rng = np.random.default_rng(0)
    w0 = (0.02 * rng.standard_normal((64, 48))).astype(np.float32)
    w = w0 + np.float32(2e-9) * rng.standard_normal((64, 48)).astype(np.float32)  # 2e-9 vs resolution 7e-10
    (t,) = list(DeltaSource(open_source({"fc.weight": w}), open_source({"fc.weight": w0})))
    t.load()
    # each entry's rounding variance u²·w²/3 (u = 2⁻²⁴), its matrix's edge as an rms (conftest.rounding_noise_rms);
    # 1e-6: htsr sums the float32 squares in float64
    assert t.resolution() == pytest.approx(rounding_noise_rms(2.0**-48 / 3 * w.astype(np.float64) ** 2), rel=1e-6)
    rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))
    assert t.resolution() > 2.0**-24 / np.sqrt(3) * rms  # (above the plain rms: the rows' norms differ)
    assert htsr.analyze({"fc.weight": w}, base={"fc.weight": w0}, min_evals=5).layers[0].status == "ok"
    blocks = rng.uniform(-1, 1, (8, 32))
    q = TensorRef("q.weight", (8, 32), "float32", lambda: blocks, bits=4, quant_block=32)
    step = (blocks.max(axis=1) - blocks.min(axis=1)) / 15.0
    assert rounding(q, blocks) == pytest.approx(np.sqrt(np.mean(step**2) / 12), rel=1e-12)  # same float64 formula


def test_a_deltas_resolution_adds_both_quantized_inputs_roundings_and_no_base_term_under_a_float_model():
    """The rms rounding a delta holds, known answers from its inputs' values: both quantized on their own (a
    GGUF fine-tune against a GGUF base), the two blocks' roundings Δ/√12 in quadrature, hypot(model, base); a
    float model of a quantized base (it started from the dequantized base, which it holds exactly) its own
    float rounding u/√3·rms(W) alone, no base term; a quantized model of a float base its own rounding alone."""
    from htsr.io.base import TensorRef
    from htsr.io.delta import DeltaSource

    class Refs:  # a source of these refs (DeltaSource lists a source and reads its description)
        def __init__(self, *refs):
            self.refs, self.description = refs, "refs"

        def __iter__(self):
            return iter(self.refs)

    rng = np.random.default_rng(6)
    w0 = rng.uniform(-1, 1, (16, 64)).astype(np.float32)  # 32 blocks of 32
    w = w0 + np.float32(0.1) * rng.uniform(-1, 1, (16, 64)).astype(np.float32)

    def blocks_variance(a, bits):  # each block's range in 2^bits - 1 steps Δ, rounded to the nearest: Δ²/12 per entry
        b = a.astype(np.float64).reshape(-1, 32)  # (uniform values: off any absmax grid, so the range's step)
        step = (b.max(axis=1) - b.min(axis=1)) / (2.0**bits - 1)
        return np.repeat(step**2 / 12, 32).reshape(a.shape)

    def resolution(model, base):
        (t,) = list(DeltaSource(Refs(model), Refs(base)))
        np.testing.assert_array_equal(t.load(), w - w0)  # (the delta, its noise set by the load)
        return t.resolution()

    q4 = TensorRef("fc.weight", w.shape, "float32", lambda: w, bits=4, quant_block=32)
    q8_base = TensorRef("fc.weight", w0.shape, "float32", lambda: w0, bits=8, quant_block=32)
    float_model = TensorRef("fc.weight", w.shape, "float32", lambda: w)
    float_base = TensorRef("fc.weight", w0.shape, "float32", lambda: w0)
    own4, base8 = blocks_variance(w, 4), blocks_variance(w0, 8)
    # the base's term is seen in the sum: it raises the edge over the model's alone by 1.6e-3, 1600 tolerances
    assert rounding_noise_rms(own4 + base8) > (1 + 1e-3) * rounding_noise_rms(own4)
    # htsr takes a block's range (max − min) in the values' float32, one rounding of 2^-24 relative, where
    # this reference takes it in float64: they agree to 1e-6 relative
    assert resolution(q4, q8_base) == pytest.approx(rounding_noise_rms(own4 + base8), rel=1e-6)
    assert resolution(q4, float_base) == pytest.approx(rounding_noise_rms(own4), rel=1e-6)
    own_float = 2.0**-48 / 3 * w.astype(np.float64) ** 2
    # float32's unit roundoff 2^-24 per entry, summed by htsr in float64 from float32 squares: 1e-6 relative
    assert resolution(float_model, q8_base) == pytest.approx(rounding_noise_rms(own_float), rel=1e-6)
    assert rounding_noise_rms(own_float) < 1e-4 * rounding_noise_rms(base8)  # (a base term would be seen: 10^5 ×)


def test_farms_windows_of_a_delta_are_cut_at_a_window_s_noise_edge():
    """With --farms-aspect, a delta's windows are cut at the MP edge of their inputs' rounding noise for a
    window's shape, not the whole matrix's. A float32 model of entries near 1 over a base of ones: the delta is
    exact multiples of 2⁻²³ (no rounding in it), rank 8, B·[H8 … H8] with B's columns on disjoint rows (13–16
    entries of ±1): every 1000 × 8 window's eigenvalues are 8·s ulp² (104 … 128 ulp²), between a window's edge
    (√1000 + √8)²/12 = 98.9 ulp² and the whole matrix's (√1000 + √64)²/12 = 130.8 ulp²; the whole's are 64·s."""
    from scipy.linalg import hadamard

    ulp = 2.0**-23  # of float32 in [1, 2); its unit roundoff u = ulp / 2, the resolution u/√3 of the rms ≈ 1
    support = [13, 13, 14, 14, 15, 15, 16, 16]
    B = np.zeros((1000, 8))
    for i, s in enumerate(support):
        B[100 * i: 100 * i + s, i] = np.where(np.arange(s) % 2, -1.0, 1.0)
    D = B @ np.tile(hadamard(8), 8)  # 1000 x 64 of -1, 0 and 1: H8's signs on B's rows
    w0 = np.ones((1000, 64), np.float32)
    w = (w0 + (D * ulp).astype(np.float32)).astype(np.float32)
    assert np.array_equal(w.astype(np.float64) - w0, D * ulp)  # the delta is exact
    windows = np.linalg.eigvalsh(D[:, :8].T @ D[:, :8])  # one window's, in ulp²
    np.testing.assert_allclose(windows, np.repeat([104, 112, 120, 128], 2), rtol=1e-12)  # (an integer Gram)
    row = htsr.analyze({"l.weight": w}, base={"l.weight": w0}, farms_aspect=125.0, min_evals=8,
                       precision="accurate").layers[0]
    assert row.farms_windows == 8 and row.num_fit_evals == 64, row.status  # every window eigenvalue kept


def test_the_rounding_estimate_without_blocks_is_that_of_absmax_codes_of_32_gaussian_weights():
    """quantization_noise(bits): the rms rounding of weights coded in 2^bits levels over ±(the block's largest
    magnitude), over the weights' rms, ≈ 1.39 / (2^bits − 1). Simulated here: 10 000 blocks of 32 N(0, 1) weights
    coded so (measured 0.0907 at 4 bits, 0.00532 at 8; the ratio's standard error is about 0.3 %, and the constant
    2.4 rounds the blocks' absmax rms of 2.39: 3 %; the 2.2 used before was 7 % low)."""
    from htsr.io.delta import quantization_noise

    rng = np.random.default_rng(0)
    for bits in (4, 8):
        w = rng.standard_normal((10_000, 32))
        absmax = np.abs(w).max(axis=1, keepdims=True)
        step = 2 * absmax / (2 ** bits - 1)
        err = np.round((w + absmax) / step) * step - absmax - w
        measured = np.sqrt(np.mean(err ** 2)) / np.sqrt(np.mean(w ** 2))
        assert quantization_noise(bits) == pytest.approx(measured, rel=0.03), bits


def test_blocks_that_do_not_divide_the_tensor_fall_back_to_the_estimate():
    """A quant_block that does not divide the entries (50 of blocks of 32) cannot be measured block by block:
    the estimate from the bits and the values' rms, not an error."""
    from htsr.io.base import TensorRef
    from htsr.io.delta import quantization_noise, rounding

    w = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    t = TensorRef("fc.weight", (5, 10), "float32", lambda: w, bits=8, quant_block=32)
    rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))
    assert rounding(t, w) == pytest.approx(quantization_noise(8) * rms, rel=1e-6)  # (float32 norm vs float64 mean)


def test_a_delta_counts_each_name_once():
    """The tensors of model and base together, a shared name once: the count 'tensors not analysed: … of N' uses."""
    rng = np.random.default_rng(2)
    a0 = rng.standard_normal((40, 30))
    model = {"a.weight": a0 + 0.01 * rng.standard_normal((40, 30)), "b.weight": rng.standard_normal((40, 30)),
             "x.bias": np.zeros(40)}
    # two base-only tensors against one shared: the base-only ones are what is added to the model's count (had the
    # shared one been counted instead, one of each gave the same total)
    base = {"a.weight": a0, "c.weight": rng.standard_normal((40, 30)), "d.weight": rng.standard_normal((40, 30))}
    r = htsr.analyze(model, base=base, min_evals=3)
    assert r.num_tensors == 5  # a, b, x.bias, c, d
    from htsr.io import open_source
    from htsr.io.delta import DeltaSource

    pair = DeltaSource(open_source(model), open_source(base))
    assert len(pair) == len(list(pair)) == 5  # (a source's len is the number of refs it yields)
    assert [(x.name, x.status.split(":")[0]) for x in r.layers] == [("a", "ok"), ("b", "skipped"), ("c", "skipped"),
                                                                     ("d", "skipped")]


# ------------------------------------------------------------------ mutation round 21 (2026-12-06)
def test_a_weight_only_in_the_model_is_skipped_even_when_its_name_reads_as_no_matrix():
    """A Linear named 'postnorm' is a dense layer of the live model (its module says so) though its name alone
    reads as a norm scale: present in the model only, it is no delta (its own weights were analysed as one)."""
    torch = pytest.importorskip("torch")

    class M(torch.nn.Module):
        def __init__(self, extra):
            super().__init__()
            self.fc = torch.nn.Linear(64, 128)
            if extra:
                self.postnorm = torch.nn.Linear(128, 96)

    torch.manual_seed(0)
    rows = {r.name: r for r in htsr.analyze(M(True), base=M(False)).layers}
    assert rows["postnorm"].kind == "dense"
    assert rows["postnorm"].status.startswith("skipped: only in the model")
    assert math.isnan(rows["postnorm"].alpha)


def test_exact_names_win_a_tie_with_a_renaming():
    """The base holds m.* and k.* with the same suffixes: replacing 'm.' with 'k.' matches as many names as the
    names themselves do; the exact names are kept (not each model tensor minus another tensor of the base)."""
    from htsr.io.delta import align_names

    names, ref = ["m.a.weight", "m.b.weight"], ["m.a.weight", "m.b.weight", "k.a.weight", "k.b.weight"]
    rename, note = align_names(names, ref)
    assert note == "" and [rename(n) for n in names] == names
    rng = np.random.default_rng(0)
    base = {n: rng.standard_normal((100, 50)) for n in ref}
    delta = matrix_with_singular_values(np.array([3.0, 2.0, 1.0]), 100, 50, seed=1)
    model = {n: base[n] + delta for n in names}
    rows = {r.name: r for r in htsr.analyze(model, base=base, precision="accurate").layers}
    assert rows["m.a"].matrix_rank == 3 and rows["m.a"].lambda_max == pytest.approx(9.0, rel=1e-9)
    assert rows["k.a"].status.startswith("skipped: only in the base")


# ------------------------------------------------------------------ mutation round 38 (2026-12-06)
def test_a_renaming_must_match_a_tenth_of_the_names_rounded_up():
    """24 names: a change must match ceil(2.4) = 3 of them. One module renamed by chance ('l11.' as 'c7.') matches
    its weight and bias, 2 names: below a tenth, so the names stay as they are (a floor of 2.4 had let it
    through, subtracting c7 from l11)."""
    from htsr.io.delta import align_names

    names = [f"l{i}.{p}" for i in range(12) for p in ("weight", "bias")]
    ref = [n for n in names if not n.startswith("l11.")] + ["c7.weight", "c7.bias"]
    rename, note = align_names(names, ref)
    assert note == "" and [rename(n) for n in names] == names
    # 3 names under one renamed module in 24 are a tenth: that change is made
    names3 = names[:-2] + ["l11.w1", "l11.w2", "l11.w3"]  # 25 names: still ceil(2.5) = 3
    rename, note = align_names(names3, ref[:-2] + ["c7.w1", "c7.w2", "c7.w3"])
    assert note == "replacing 'l11.' with 'c7.'" and rename("l11.w2") == "c7.w2"


def test_two_replacements_of_one_prefix_that_tie_are_refused():
    """'x.' could become 'a.' or 'b.' with as many matches (an encoder's and a decoder's layers): the two changes
    rename the same component, so they cannot both be made; refused as ambiguous (not 'a.' picked silently)."""
    from htsr.io.delta import align_names

    names = ["x.l0.weight", "x.l1.weight"]
    ref = [f"{side}.l{i}.weight" for side in ("a", "b") for i in range(2)]
    rename, note = align_names(names, ref)
    assert rename is None
    assert note.startswith("ambiguous: replacing 'x.' with 'a.' and replacing 'x.' with 'b.' each match 2 names")


def test_saved_names_are_spelled_under_a_task_models_component_and_kept_when_already_saved():
    """saved_namer: a name in memory as its checkpoint spells it; under one leading component a task model adds
    ('dinov2.' before a backbone's names) the rest is spelled and the component kept; a name that already is a
    checkpoint's name stays as it is ('language_model.lm_head', not 'language_model.' + the LM head's spelling)."""
    from htsr.io.delta import saved_namer

    name = saved_namer({"layer.0.q.weight": "encoder.layer.0.q.weight",
                        "lm_head.weight": "language_model.lm_head.weight"})
    assert name("layer.0.q.weight") == "encoder.layer.0.q.weight"
    assert name("dinov2.layer.0.q.weight") == "dinov2.encoder.layer.0.q.weight"
    assert name("language_model.lm_head.weight") == "language_model.lm_head.weight"
    assert name("other.weight") == "other.weight"


def test_align_saved_keeps_the_plain_pairing_unless_the_saved_spelling_pairs_more_and_one_to_one():
    """align_saved: two base names that the checkpoint spells as one give no pairing by that spelling (it would
    pair a model tensor with whichever came last); a spelling that pairs no more names than the plain renaming
    leaves it, and its note, as they were."""
    from htsr.io.delta import align_saved

    saved = {"p.w": "z.w", "P.w": "z.w", "Q.w": "z.w", "q.w": "z2.w"}
    assert align_saved(["p.w", "q.w"], ["P.w", "Q.w"], lambda: saved, None, "") == (None, "")

    def plain(n):
        return n

    names, ref = ["a.w", "b.w", "d.w"], ["a.w", "e.w"]  # the plain names pair a.w alone; spelled, still a.w alone
    rename, note = align_saved(names, ref, lambda: {"a.w": "k.w"}, plain, "")
    assert rename is plain and note == ""
    # a spelling that pairs more is taken, and said
    rename, note = align_saved(names, ref, lambda: {"b.w": "e.w"}, plain, "")
    assert [rename(n) for n in names[:2]] == ["a.w", "e.w"]
    assert note == "naming both as transformers' checkpoints do"


def test_a_tensor_tied_to_two_different_deltas_follows_neither_or_the_first(tmp_path):
    """Three names tied in the base (wte, lm_head, extra) against a model holding wte and lm_head untied: the two
    are two deltas, so the base's extra can be the same tensor as neither (it had been listed as lm_head's, the
    last): its own row, only in the base. Three names tied in the model against a base holding wte and lm_head
    untied: the model's extra follows the first of its tied tensors with a base tensor, wte (not the last)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    w0 = torch.from_numpy(rng.standard_normal((300, 64)).astype(np.float32))
    w1 = w0 + torch.from_numpy(0.01 * rng.standard_normal((300, 64)).astype(np.float32))
    w2 = w0 + torch.from_numpy(0.01 * rng.standard_normal((300, 64)).astype(np.float32))
    torch.save({"wte.weight": w0, "lm_head.weight": w0, "extra.weight": w0}, tmp_path / "base3.pt")
    r = htsr.analyze({"wte.weight": w1.numpy(), "lm_head.weight": w2.numpy()}, base=tmp_path / "base3.pt",
                     min_evals=3)
    assert [(x.name, x.status.split(":")[0]) for x in r.layers] == [("wte", "ok"), ("lm_head", "ok"),
                                                                     ("extra", "skipped")]
    assert r.layers[2].status.startswith("skipped: only in the base") and not r.not_analysed
    torch.save({"wte.weight": w1, "lm_head.weight": w1, "extra.weight": w1}, tmp_path / "model3.pt")
    torch.save({"wte.weight": w0, "lm_head.weight": w0 + 0.02}, tmp_path / "base2.pt")
    r = htsr.analyze(tmp_path / "model3.pt", base=tmp_path / "base2.pt", min_evals=3)
    assert [x.name for x in r.layers] == ["wte", "lm_head"]
    assert [(n.reason.split(" (")[0], n.count) for n in r.not_analysed] == [("the same tensor as wte.weight", 1)]


def test_a_model_tensor_tied_to_a_delta_follows_it_at_once_and_the_rest_keep_the_model_order(tmp_path):
    """The delta stream's order: a model tensor tied to a delta whose base lacks it (lm_head saved before wte) comes
    right after that delta, and every other tensor keeps the model's order (fc after both, the base-only last), so
    that a --layers filter that leaves the delta out still lists the rows in model order. Unseen before: the
    tests' tied tensors were last in their model, where 'right after' and 'at the end' are the same place."""
    torch = pytest.importorskip("torch")
    from htsr.io import open_source
    from htsr.io.delta import DeltaSource

    rng = np.random.default_rng(5)
    w0 = torch.from_numpy(rng.standard_normal((300, 64)).astype(np.float32))
    w1 = w0 + torch.from_numpy(0.01 * rng.standard_normal((300, 64)).astype(np.float32))
    f0 = torch.from_numpy(rng.standard_normal((80, 64)).astype(np.float32))
    torch.save({"lm_head.weight": w1, "wte.weight": w1, "fc.weight": f0 + 0.01}, tmp_path / "model.pt")
    torch.save({"wte.weight": w0, "fc.weight": f0, "extra.weight": f0}, tmp_path / "base.pt")
    pair = DeltaSource(open_source(tmp_path / "model.pt"), open_source(tmp_path / "base.pt"))
    assert [t.name for t in pair] == ["wte.weight", "lm_head.weight", "fc.weight", "extra.weight"]
    r = htsr.analyze(tmp_path / "model.pt", base=tmp_path / "base.pt", layers="lm_head|fc", min_evals=3)
    assert [x.name for x in r.layers] == ["lm_head", "fc"]


def test_a_wrapper_prefix_is_added_even_where_the_model_already_has_a_submodule_of_that_name():
    """A model holding a submodule named as the wrapper the base adds ('m.a' beside 'a'), against the base's
    wrapped names ('m.a', 'm.m.a' …): adding 'm.' sends 'a.w' to 'm.a.w', a name of the model that is itself
    renamed (to 'm.m.a.w'), so no two names land on one and the change is made. Refusing it as a collision
    left the identity, which pairs the model's 'm.a.w' with the base's wrapped 'a.w' (a false delta). Unseen
    before: the collision cases tried had the landing name left unchanged."""
    from htsr.io.delta import align_names

    names = ["a.w", "b.w", "c.w", "m.a.w"]
    rename, note = align_names(names, ["m." + n for n in names])
    assert note == "adding 'm.'" and [rename(n) for n in names] == ["m.a.w", "m.b.w", "m.c.w", "m.m.a.w"]


@pytest.mark.parametrize("names, ref, ties", [
    # two model prefixes onto one base prefix: made together, 'p.l0.w' and 'q.l0.w' both land on 'm.l0.w'
    (["p.l0.w", "p.l1.w", "q.l0.w", "q.l1.w"], ["m.l0.w", "m.l1.w"],
     "replacing 'p.' with 'm.' and replacing 'q.' with 'm.'"),
    # nested model prefixes ('a.' and 'a.b.'): 'a.b.x.w' is under both, so which base tensor it is cannot be said
    (["a.b.x.w", "a.b.y.w"], ["m.b.x.w", "m.b.y.w", "n.x.w", "n.y.w"],
     "replacing 'a.' with 'm.' and replacing 'a.b.' with 'n.'"),
])
def test_tied_renamings_are_made_together_only_when_their_prefixes_are_apart_on_both_sides(names, ref, ties):
    """Renamings that tie are made together only when no prefix is another's on either side (Silero's '_model.' →
    'model.' and '_model_8k.' → 'model_8k.'); two prefixes sent to one, or one prefix under another, are refused
    as ambiguous with both named, never made together. Unseen before: the tied changes tried were apart on one
    side, or shared their old prefix."""
    from htsr.io.delta import align_names

    rename, note = align_names(names, ref)
    assert rename is None
    assert note == (f"ambiguous: {ties} each match 2 names; rename the tensors so that the names themselves match")


@pytest.mark.parametrize("first", ["lm_head", "wte"])
def test_a_tied_head_kept_alone_by_a_filter_is_its_tied_delta(tmp_path, first):
    """A model whose lm_head is tied to wte, against a base that saved wte alone: with --layers lm_head the head is
    the update it shares with wte (the same alpha), whichever of the two the model saved first; it had been
    'skipped: only in the model', the tie followed only when wte was analysed too."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    w0 = torch.from_numpy(rng.standard_normal((300, 64)).astype(np.float32))
    w1 = w0 + torch.from_numpy(0.01 * rng.standard_normal((300, 64)).astype(np.float32))
    names = ["lm_head.weight", "wte.weight"] if first == "lm_head" else ["wte.weight", "lm_head.weight"]
    torch.save({n: w1 for n in names}, tmp_path / "model.pt")
    torch.save({"wte.weight": w0}, tmp_path / "base.pt")
    whole = htsr.analyze(tmp_path / "model.pt", base=tmp_path / "base.pt", min_evals=3)
    head = htsr.analyze(tmp_path / "model.pt", base=tmp_path / "base.pt", layers="lm_head", min_evals=3)
    assert [(x.name, x.status) for x in whole.layers] == [("wte", "ok")]
    assert [(x.name, x.status) for x in head.layers] == [("lm_head", "ok")]
    assert head.layers[0].alpha == whole.layers[0].alpha  # exact: one matrix, w1 - w0, the same computation


def test_a_fused_expert_stack_against_a_base_of_one_tensor_per_expert_says_so(tmp_path):
    """transformers 5 holds a Mixtral's experts fused (experts.gate_up_proj [E, 2I, H]) and saves them one tensor per
    expert (block_sparse_moe.experts.<e>.w1): a live fine-tune against its base's folder had said of each stack
    'the base has no tensor of this name', and of each expert's tensor 'the model has none', though it holds them."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                                     num_key_value_heads=2, num_local_experts=3, vocab_size=128)
    model = transformers.MixtralForCausalLM(cfg)
    model.save_pretrained(str(tmp_path / "base"))
    rows = {r.name: r.status for r in htsr.analyze(model, base=tmp_path / "base", min_evals=10).layers}
    stacks = [n for n in rows if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]
    assert len(stacks) == 2
    for n in stacks:
        assert rows[n].startswith("skipped: only in the model: the base holds its experts one tensor each "
                                  "(model.layers.0.block_sparse_moe.experts.0."), rows[n]
        assert rows[n].endswith("give the base as the model holds it, fused (the live base model, or its "
                                "state_dict() saved by torch.save or safetensors' save_file)")
    apart = [n for n in rows if ".experts.1." in n]
    assert apart and all(rows[n].startswith("skipped: only in the base: one expert's tensor, which the model holds "
                                            "fused (model.layers.0.mlp.experts.") for n in apart)
    # given fused, as the model holds it (its state dict saved), the experts pair: unchanged
    import safetensors.torch

    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(tmp_path / "fused.safetensors"))
    rows = {r.name: r.status for r in htsr.analyze(model, base=tmp_path / "fused.safetensors", min_evals=10).layers}
    experts = [n for n in rows if n.split("[")[0] in stacks]
    assert len(experts) == 2 * 3 and all(rows[n].startswith("skipped: unchanged") for n in experts)  # one row each


def test_an_untied_lm_head_against_a_tied_base_folder_is_its_delta_from_the_input_embedding(tmp_path):
    """A fine-tune that unties GPT-2's LM head, against the tied base's save_pretrained folder (which drops the tied
    head; its config.json says tie_word_embeddings): lm_head had been 'skipped: only in the model', while the live
    base gave its delta from wte. A base whose config does not tie (Llama's) is not paired so."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    kw = dict(n_embd=64, n_layer=1, n_head=4, vocab_size=200, n_positions=32, bos_token_id=0, eos_token_id=0)
    base = T.GPT2LMHeadModel(T.GPT2Config(**kw))
    base.save_pretrained(tmp_path / "base")
    tuned = T.GPT2LMHeadModel(T.GPT2Config(tie_word_embeddings=False, **kw))
    tuned.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        tuned.lm_head.weight.copy_(base.transformer.wte.weight + 0.01 * torch.randn(200, 64))
    tuned.save_pretrained(tmp_path / "tuned")
    folder = htsr.analyze(tmp_path / "tuned", base=tmp_path / "base", min_evals=5)
    live = {r.name: r for r in htsr.analyze(tmp_path / "tuned", base=base, min_evals=5).layers}
    head = next(r for r in folder.layers if r.name == "lm_head")
    assert head.status == "ok" and head.lambda_max == pytest.approx(live["lm_head"].lambda_max, rel=1e-12)
    assert "lm_head.weight paired with the base's transformer.wte.weight" in folder.source
    # (the delta itself: 0.01 · N(0, 1) entries, float32)
    want = np.linalg.norm((tuned.lm_head.weight - base.transformer.wte.weight).detach().double().numpy(), 2) ** 2
    assert head.lambda_max == pytest.approx(want, rel=1e-5)
    config = (tmp_path / "base" / "config.json").read_text().replace('"tie_word_embeddings": true',
                                                                     '"tie_word_embeddings": false')
    (tmp_path / "base" / "config.json").write_text(config)
    untied = {r.name: r.status for r in htsr.analyze(tmp_path / "tuned", base=tmp_path / "base", min_evals=5).layers}
    assert untied["lm_head"].startswith("skipped: only in the model")


def test_a_tied_fine_tune_against_a_tied_base_folder_is_one_delta():
    """A fine-tune that keeps GPT-2's head tied (a torch.save state dict: lm_head and wte one storage) against the
    tied base's folder: the head is the embedding's delta, analysed once, not paired with the base's table as an
    untied head is (it had been two rows of one matrix)."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    import tempfile
    from pathlib import Path

    torch.manual_seed(0)
    kw = dict(n_embd=64, n_layer=1, n_head=4, vocab_size=200, n_positions=32, bos_token_id=0, eos_token_id=0)
    base = T.GPT2LMHeadModel(T.GPT2Config(**kw))
    tuned = T.GPT2LMHeadModel(T.GPT2Config(**kw))
    with torch.no_grad():
        for p, q in zip(tuned.parameters(), base.parameters()):
            p.copy_(q + 0.01 * torch.randn_like(q))
    with tempfile.TemporaryDirectory() as d:
        base.save_pretrained(Path(d) / "base")
        torch.save(tuned.state_dict(), Path(d) / "tuned.pt")
        for model in (Path(d) / "tuned.pt", tuned):
            r = htsr.analyze(model, base=Path(d) / "base", min_evals=5)
            assert "lm_head" not in {x.name for x in r.layers}
            assert [x.examples for x in r.not_analysed if "tied weights" in x.reason] == [("lm_head.weight",)]


def test_a_quantized_copy_of_column_scaled_weights_holds_only_rounding_noise_below_its_floor():
    """A Q8_0-like copy (blocks of 32 along each row, symmetric: step absmax/127) of a matrix whose columns differ in
    scale (Pareto factors), against its float original: the delta is rounding alone. The floor had been the MP edge
    of its rms, taking Δ as each block's range over 255 (11-30 % small for a symmetric grid) and the noise as
    i.i.d.: 102 of 512 eigenvalues stood above it, fitted as if an update. Rounding scales with each block; its
    edge is (max row √Σσ² + max column √Σσ²)² (Latała; Bandeira & van Handel): none stands above it, while a rank-8
    update 4 × that edge in every direction is its 8 eigenvalues above it."""
    from htsr.io.base import TensorRef
    from htsr.io.delta import DeltaSource

    class Refs:
        def __init__(self, *refs):
            self.refs, self.description = refs, "refs"

        def __iter__(self):
            return iter(self.refs)

    rng = np.random.default_rng(2)
    rows, cols = 512, 1024
    W = (rng.standard_normal((rows, cols)) * (rng.pareto(1.5, cols) + 1)[None, :] * 0.02).astype(np.float32)

    def q8(a):  # symmetric blocks of 32 along each row
        b = a.reshape(-1, 32)
        d = np.abs(b).max(axis=1) / 127
        return (np.rint(b / d[:, None]) * d[:, None]).astype(np.float32).reshape(a.shape)

    def above_floor(model_w):
        (t,) = list(DeltaSource(Refs(TensorRef("fc.weight", (rows, cols), "float32", lambda: model_w, bits=8,
                                                 quant_block=32)),
                                Refs(TensorRef("fc.weight", (rows, cols), "float32", lambda: W))))
        D = t.load().astype(np.float64)
        edge = t.resolution() ** 2 * (np.sqrt(rows) + np.sqrt(cols)) ** 2  # (analyze's storage floor, scale 1)
        return int((np.linalg.svd(D, compute_uv=False) ** 2 > edge).sum()), edge

    count, edge = above_floor(q8(W))
    assert count == 0
    U, _ = np.linalg.qr(rng.standard_normal((rows, 8)))
    V, _ = np.linalg.qr(rng.standard_normal((cols, 8)))
    update = (U * (2.0 * np.sqrt(edge))) @ V.T  # singular values 2√edge: eigenvalues 4 × the edge
    assert above_floor(q8(W + update.astype(np.float32)))[0] == 8
