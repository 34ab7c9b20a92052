"""Option ``split``: a fused matrix (q, k and v in one weight; gate and up) cut into one row per part (THEORY §1)."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np
import pytest

import htsr
from htsr.cli import main
from htsr.compare import compare
from htsr.errors import OptionError
from htsr.matrices import LayerMatrices, split_rows
from htsr.specs import SplitRule

torch = pytest.importorskip("torch")


def _evals(W) -> np.ndarray:
    """The eigenvalues of WᵀW (or WWᵀ: the same nonzero ones), float64, ascending: the reference."""
    W = np.asarray(W, dtype=np.float64)
    return np.linalg.svd(W, compute_uv=False)[::-1] ** 2


def _parts(result) -> dict[str, tuple]:
    return {l.name: (l, s) for l, s in zip(result.layers, result.spectra)}


def test_gpt2_c_attn_parts_are_the_q_k_v_weights_gpt2_uses():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.GPT2Model(transformers.GPT2Config(n_embd=96, n_layer=2, n_head=4, vocab_size=200,
                                                           n_positions=64))
    d = 96
    r = htsr.analyze(model, split=r"attn\.c_attn$=q,k,v", precision="accurate", keep_spectra=True, min_evals=10)
    rows = _parts(r)
    assert "h.0.attn.c_attn" not in rows
    for block in ("h.0", "h.1"):
        W = dict(model.named_parameters())[f"{block}.attn.c_attn.weight"].detach().numpy()  # Conv1D: [in, 3·out]
        for i, label in enumerate("qkv"):
            row, sp = rows[f"{block}.attn.c_attn[{label}]"]
            # GPT2Attention: query, key, value = c_attn(x).split(n_embd, dim=2): columns i·d … (i+1)·d
            assert (row.kind, row.N, row.M, row.status) == ("dense", d, d, "ok")
            # the same float64 SVD of the same float32 entries: round-off (1e-10 relative)
            np.testing.assert_allclose(sp.evals, _evals(W[:, i * d:(i + 1) * d]), rtol=1e-10)
    assert rows["h.0.attn.c_proj"][0].status == "ok"  # other rows as they were
    assert r.options["split"] == [r"attn\.c_attn$=q,k,v"]


def test_multihead_attention_in_proj_parts_are_torch_q_k_v():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(64, 4)
    r = htsr.analyze(mha, split="in_proj_weight=q,k,v", precision="accurate", keep_spectra=True, min_evals=10)
    rows = _parts(r)
    # torch's _in_projection_packed: w.chunk(3) — rows 0:E are q's, E:2E k's, 2E:3E v's
    w_q, w_k, w_v = mha.in_proj_weight.detach().numpy().reshape(3, 64, 64)
    for label, W in zip("qkv", (w_q, w_k, w_v)):
        np.testing.assert_allclose(rows[f"in_proj_weight[{label}]"][1].evals, _evals(W), rtol=1e-10)  # (as above)


def test_grouped_query_parts_by_size_and_neox_heads_interleaved():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    heads, hd = 4, 16
    neox = transformers.GPTNeoXModel(transformers.GPTNeoXConfig(hidden_size=heads * hd, num_attention_heads=heads,
                                                                num_hidden_layers=1, intermediate_size=128,
                                                                vocab_size=100))
    r = htsr.analyze(neox, split=f"query_key_value=q,k,v/{heads}", precision="accurate", keep_spectra=True,
                     min_evals=10)
    rows = _parts(r)
    W = neox.layers[0].attention.query_key_value.weight.detach().numpy()  # [3·d, d]
    # GPTNeoXAttention: qkv.view(..., heads, 3·head_size).chunk(3, dim=-1): each head's q rows, then its k, its v
    per_head = W.reshape(heads, 3, hd, heads * hd)
    for i, label in enumerate("qkv"):
        row, sp = rows[f"layers.0.attention.query_key_value[{label}]"]
        assert (row.N, row.M) == (heads * hd, heads * hd)
        np.testing.assert_allclose(sp.evals, _evals(per_head[:, i].reshape(heads * hd, -1)), rtol=1e-10)  # (as above)
        # an equal three-way cut without the groups takes another matrix (it mixes heads' q, k and v)
        assert not np.allclose(_evals(W[i * heads * hd:(i + 1) * heads * hd]), sp.evals, rtol=1e-3)

    # grouped-query attention's qkv_proj (Phi-3): q's heads·hd rows, then k's and v's kv_heads·hd each
    rng = np.random.default_rng(1)
    W = rng.standard_normal((128 + 2 * 32, 96)).astype(np.float32)
    r = htsr.analyze({"attn.qkv_proj.weight": W}, split="qkv_proj=q:128,k:32,v:32", precision="accurate",
                     keep_spectra=True, min_evals=10)
    got = {l.name: (l, s) for l, s in zip(r.layers, r.spectra)}
    for label, rows_ in (("q", slice(0, 128)), ("k", slice(128, 160)), ("v", slice(160, 192))):
        row, sp = got[f"attn.qkv_proj[{label}]"]
        assert (row.N, row.M) == (96, rows_.stop - rows_.start) or (row.N, row.M) == (rows_.stop - rows_.start, 96)
        np.testing.assert_allclose(sp.evals[-row.M:], _evals(W[rows_])[-row.M:], rtol=1e-10)  # (as above)


def test_expert_stack_parts_and_lora_update_parts():
    rng = np.random.default_rng(2)
    E, I, H = 3, 48, 64
    gate_up = rng.standard_normal((E, 2 * I, H)).astype(np.float32)  # transformers 5's experts.gate_up_proj
    r = htsr.analyze({"mlp.experts.gate_up_proj": gate_up}, split="gate_up_proj=gate,up", precision="accurate",
                     keep_spectra=True, min_evals=10)
    got = _parts(r)
    assert list(got) == [f"mlp.experts.gate_up_proj[{e}][{p}]" for e in range(E) for p in ("gate", "up")]
    for e in range(E):
        for p, rows_ in (("gate", slice(0, I)), ("up", slice(I, 2 * I))):
            row, sp = got[f"mlp.experts.gate_up_proj[{e}][{p}]"]
            assert row.kind == "stack" and (row.N, row.M) == (H, I)
            np.testing.assert_allclose(sp.evals, _evals(gate_up[e, rows_]), rtol=1e-10)  # (as above)

    # a LoRA update on a fused layer: each part's update from its rows of B (B·A never formed), as peft's delta
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(3)
    model = transformers.GPT2Model(transformers.GPT2Config(n_embd=96, n_layer=1, n_head=4, vocab_size=200,
                                                           n_positions=64))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                    init_lora_weights=False, fan_in_fan_out=True))
    delta = next(m for n, m in pm.named_modules() if n.endswith("c_attn")).get_delta_weight("default")
    delta = delta.detach().double().numpy()  # [in, 3·out] as the Conv1D weight (fan_in_fan_out)
    r = htsr.analyze(pm, split="c_attn#delta=q,k,v", keep_spectra=True, min_evals=2)
    got = _parts(r)
    for i, label in enumerate("qkv"):
        row, sp = got[f"h.0.attn.c_attn#delta[{label}]"]
        assert row.kind == "lora" and row.eig_method == "lowrank64" and row.matrix_rank == 4
        # the factors' float32 entries against peft's float32 product: float32 rounding (1e-5 relative)
        np.testing.assert_allclose(sp.evals[-4:], _evals(delta[:, i * 96:(i + 1) * 96])[-4:], rtol=1e-5)
    # the summary's means are over the updates, the parts (their tag kept), not the live model's #base, #merged
    assert sorted(got) == sorted([f"h.0.attn.c_attn#delta[{p}]" for p in "qkv"]
                                 + ["h.0.attn.c_attn#base", "h.0.attn.c_attn#merged"])
    assert r.summary.means_over == "delta"
    parts = [got[f"h.0.attn.c_attn#delta[{p}]"][0].log_norm for p in "qkv"]
    assert r.summary.means["log_norm"] == pytest.approx(float(np.mean(parts)), rel=1e-12)  # (summation order)


def test_a_fused_matrix_is_read_once_for_all_its_parts():
    W = np.arange(24 * 8, dtype=np.float32).reshape(24, 8)
    reads, released = [], []
    lm = LayerMatrices("qkv", "dense", (24, 8), 24, 8, 1, 1.0, lambda: reads.append(1) or [W],
                       release=lambda: released.append(1))
    parts = split_rows(lm, SplitRule.parse("qkv=q,k,v"))
    assert [(p.name, p.rows, p.cols) for p in parts] == [("qkv[q]", 8, 8), ("qkv[k]", 8, 8), ("qkv[v]", 8, 8)]
    for p, rows_ in zip(parts, (slice(0, 8), slice(8, 16), slice(16, 24))):
        np.testing.assert_array_equal(p.load()[0], W[rows_])
    assert len(reads) == 1  # read once, dropped once all three took their part
    for p in parts:
        p.release()
    assert released == [1]  # the row's own tensor released once, with the last part
    groups = split_rows(lm, SplitRule.parse("qkv=a,b/4"))  # 4 groups of [a a a, b b b]
    np.testing.assert_array_equal(groups[1].load()[0], W.reshape(4, 2, 3, 8)[:, 1].reshape(12, 8))


@pytest.mark.parametrize("rule, words", [
    ("c_attn", "REGEX=PARTS"), ("=q,k", "REGEX=PARTS"), ("c_attn=q", "two parts"), ("c_attn=q,q", "repeat"),
    ("c_attn=q:3,k", "every part a size"), ("c_attn=q,k/0", "integer >= 1"), ("(=q,k", "no regular expression"),
    ("c_attn=1,k", "a label"), ("c_attn=q:0,k:1", "integer >= 1"), ("c_attn=q,k@2", "'@'"),
])
def test_a_bad_rule_is_refused_saying_what_is_wrong(rule, words):
    with pytest.raises(OptionError, match="option 'split': rule") as e:
        htsr.analyze({"c_attn.weight": np.ones((6, 2))}, split=rule)
    assert words in str(e.value)


def test_a_rule_that_cuts_nothing_is_refused_and_a_shape_it_does_not_fit_fails_its_row_alone():
    rng = np.random.default_rng(4)
    source = {"a.weight": rng.standard_normal((300, 100)), "b.weight": rng.standard_normal((200, 200)),
              "conv.weight": rng.standard_normal((30, 30, 3, 3))}
    with pytest.raises(OptionError, match="rule 'zzz=q,k' cuts nothing: it matches no row it can cut"):
        htsr.analyze(source, split=["a=q,k", "zzz=q,k"])
    with pytest.raises(OptionError, match="matches no row it can cut"):  # a conv is not cut
        htsr.analyze(source, split="conv=q,k")
    r = {l.name: l for l in htsr.analyze(source, split=["a=q,k,v", "b=x,y"]).layers}
    assert r["a[q]"].status == r["a[v]"].status == "ok" and (r["a[q]"].N, r["a[q]"].M) == (100, 100)
    assert r["b"].status.startswith("failed: option 'split' rule 'b=x,y' does not fit its 200 x 200 matrix: it is "
                                    "square: say which side")
    r = {l.name: l for l in htsr.analyze(source, split=["a=q:100,k:200", "b=x,y@1"]).layers}
    assert (r["a[q]"].N, r["a[q]"].M, r["a[k]"].N, r["a[k]"].M) == (100, 100, 200, 100)
    assert (r["b[x]"].N, r["b[x]"].M) == (200, 100)
    r = {l.name: l for l in htsr.analyze(source, split="a=q:100,k:100").layers}
    assert "the parts' sizes sum to 200, and neither side is that long" in r["a"].status


def test_cli_split_flags_json_and_layers_filter(tmp_path, capsys):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    save_file({"h.0.attn.c_attn.weight": rng.standard_normal((64, 192)).astype(np.float32),
               "h.0.mlp.gate_up.weight": rng.standard_normal((256, 64)).astype(np.float32)},
              str(tmp_path / "m.safetensors"))
    assert main(["analyze", str(tmp_path / "m.safetensors"), "--split", "c_attn=q,k,v", "--split", "gate_up=gate,up",
                 "--layers", r"\[(q|up)\]$", "--min-evals", "10", "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [l["name"] for l in doc["layers"]] == ["h.0.attn.c_attn[q]", "h.0.mlp.gate_up[up]"]
    assert doc["options"]["split"] == ["c_attn=q,k,v", "gate_up=gate,up"]
    assert main(["analyze", str(tmp_path / "m.safetensors"), "--split", "c_attn=q"]) == 2
    assert "htsr: error: --split: rule 'c_attn=q': give two parts or more" in capsys.readouterr().err


def test_a_run_without_split_compares_with_one_saved_before_the_option_existed():
    from htsr.compare import options_differ

    rng = np.random.default_rng(6)
    a = htsr.analyze({"fc.weight": rng.standard_normal((200, 100))})
    old = dataclasses.replace(a, options={k: v for k, v in a.options.items() if k != "split"})  # an older htsr's
    assert options_differ([a, old]) == {}


def test_two_spellings_of_one_rule_are_the_same_options():
    """'fc=q1, q2 @0' and 'fc=q1,q2@0' parse to one rule and cut the same rows: compare had called the two runs
    analysed with different options, "not comparable" (h41). A rule that differs stays a difference."""
    from htsr.compare import options_differ

    W = {"fc.weight": np.random.default_rng(7).standard_normal((200, 100))}
    a, b = (htsr.analyze(W, split=rule) for rule in ("fc=q1,q2@0", "fc=q1, q2 @0"))
    assert [r.alpha for r in a.layers] == [r.alpha for r in b.layers]
    assert options_differ([a, b]) == {}
    c = htsr.analyze(W, split="fc=q1,q2/2@0")
    assert options_differ([a, c]) == {"split": [["fc=q1,q2@0"], ["fc=q1,q2/2@0"]]}


def test_a_recurrent_row_is_cut_along_its_gates_and_the_side_can_be_given():
    """An LSTM's weight_ih_l0 [4·hidden, in] with in > 4·hidden: equal parts of its longer side had been cut along
    the inputs (256 x 75 each), not the gates torch stacks (i, f, g, o: rows of hidden each)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(300, 64)
    r = htsr.analyze(lstm, split="weight_ih_l0=i,f,g,o", precision="accurate", keep_spectra=True, min_evals=10)
    rows = _parts(r)
    W = lstm.weight_ih_l0.detach().numpy()
    for n, gate in enumerate("ifgo"):
        row, sp = rows[f"weight_ih_l0[{gate}]"]
        assert (row.kind, row.N, row.M) == ("rnn", 300, 64)
        np.testing.assert_allclose(sp.evals, _evals(W[n * 64:(n + 1) * 64]), rtol=1e-10)  # (float64 SVD round-off)
    # gpt-oss's experts.gate_up_proj [E, H, 2I]: gate and up alternate along its second axis, whichever is longer
    rng = np.random.default_rng(7)
    gate_up = rng.standard_normal((2, 64, 32)).astype(np.float32)  # H 64 > 2I 32: the longer side is not theirs
    got = _parts(htsr.analyze({"experts.gate_up_proj": gate_up}, split="gate_up_proj=gate,up/16@1",
                              precision="accurate", keep_spectra=True, min_evals=10))
    np.testing.assert_allclose(got["experts.gate_up_proj[1][gate]"][1].evals, _evals(gate_up[1][:, ::2]), rtol=1e-10)
    np.testing.assert_allclose(got["experts.gate_up_proj[1][up]"][1].evals, _evals(gate_up[1][:, 1::2]), rtol=1e-10)


def test_split_rows_in_distances_unreadable_tensors_and_filters(tmp_path):
    from safetensors.numpy import save_file

    from htsr.compare import layer_distances

    rng = np.random.default_rng(8)
    a = {"h.0.attn.c_attn.weight": rng.standard_normal((64, 192)).astype(np.float32)}
    b = {k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) for k, v in a.items()}
    # compare --base-distances measures the parts (split had been refused there, and dropped by the CLI)
    d = {x.name: x for x in layer_distances(b, a, split="c_attn=q,k,v")}
    assert sorted(d) == [f"h.0.attn.c_attn[{p}]" for p in "kqv"]
    q = slice(0, 64)
    frob = np.linalg.norm(b["h.0.attn.c_attn.weight"][:, q].astype(np.float64) - a["h.0.attn.c_attn.weight"][:, q])
    assert d["h.0.attn.c_attn[q]"].frobenius == pytest.approx(frob, rel=1e-6)  # (float32 entries' differences)
    # a tensor that cannot be read keeps its one row and its reason (it had become a 'does not fit' failure, or
    # one skipped row per part)
    save_file({"x.qkv.weight": rng.integers(-5, 5, (192, 64)).astype(np.int8),
               "x.fc.weight": rng.standard_normal((64, 64)).astype(np.float32)}, str(tmp_path / "q.safetensors"))
    rows = {l.name: l.status for l in htsr.analyze(tmp_path / "q.safetensors", split="qkv=q,k,v", min_evals=10).layers}
    assert sorted(rows) == ["x.fc", "x.qkv"] and rows["x.fc"] == "ok"
    assert rows["x.qkv"].startswith("skipped: int8 weight without a scale")
    # listed without a fit (--max-evals 1, describe): the rule that does not fit says so, not 'over max_evals'
    (row,) = htsr.analyze(a, split="c_attn=q,k,v@0", max_evals=1).layers
    assert row.status.startswith("failed: option 'split' rule 'c_attn=q,k,v@0' does not fit its 64 x 192 matrix")
    # a rule that does not fit, asked for by a part's name (--layers): its failed row is shown, saying why
    rows = htsr.analyze(a, split="c_attn=q,k,v,w,x", layers=r"c_attn\[q\]").layers
    assert [l.name for l in rows] == ["h.0.attn.c_attn"]
    assert rows[0].status == ("failed: option 'split' rule 'c_attn=q,k,v,w,x' does not fit its 64 x 192 matrix: "
                              "its columns, 192, are not 5 equal parts")


def test_a_rule_that_cuts_nothing_is_refused_before_any_analysis_or_training():
    from htsr.monitor import AlphaMonitor

    rng = np.random.default_rng(9)
    model = torch.nn.Sequential(torch.nn.Linear(64, 192), torch.nn.Linear(192, 64))
    with pytest.raises(OptionError, match="rule 'c_attn=q,k,v' cuts nothing"):  # (it had come at the first record)
        AlphaMonitor(model, None, split="c_attn=q,k,v")
    first = {"c_attn.weight": rng.standard_normal((64, 192))}
    with pytest.raises(OptionError, match="rule 'c_attn=q,k,v' cuts nothing in any of the models"), _no_analysis():
        # (refused before any analysis, as a model with no layer is)
        compare([{"fc.weight": rng.standard_normal((64, 192))}] * 2, split="c_attn=q,k,v")
    # a rule cutting one model's fused matrix and not the other's pairs their rows (a state dict's fused q, k, v
    # against a model holding them apart): it had been refused for the other model (h61)
    parts = {f"c_attn[{p}]": rng.standard_normal((64, 64)) for p in "qkv"}
    c = compare([first, parts], split="c_attn=q,k,v", min_evals=5)
    assert c.common_layers == ("c_attn[q]", "c_attn[k]", "c_attn[v]")
    with pytest.raises(OptionError, match=r"rule 'attn=a,b,c' cuts nothing: every row it matches an earlier rule"):
        htsr.analyze(first, split=["c_attn=q,k,v", "attn=a,b,c"])
    # the message names what a row is called, where a '$' would miss it
    with pytest.raises(OptionError, match=r"an expert's name\[e\], an adapter's name#delta"):
        htsr.analyze({"experts.gate_up_proj": rng.standard_normal((2, 32, 16))}, split="gate_up_proj$=gate,up")


@contextlib.contextmanager
def _no_analysis():
    """Fail if a layer is analysed inside (compare's checks must refuse before)."""
    import sys

    module = sys.modules["htsr.analyze"]
    real = module._analyze_layer

    def refuse(*a, **k):
        raise AssertionError("a layer was analysed")

    module._analyze_layer = refuse
    try:
        yield
    finally:
        module._analyze_layer = real


def test_rule_suffixes_in_either_order():
    a, b = SplitRule.parse("c=q,k@1/3"), SplitRule.parse("c=q,k/3@1")
    assert (a.labels, a.sizes, a.groups, a.axis) == (b.labels, b.sizes, b.groups, b.axis) == (("q", "k"), None, 3, 1)
    for bad, words in (("c=q,k/²", "groups after '/'"), ("c=q:²,k:1", "a size after ':'"),
                       ("c=q,k/2/3", "once each")):
        with pytest.raises(ValueError, match=words):
            SplitRule.parse(bad)


def test_a_split_rule_on_rows_skipped_for_the_base_keeps_them_skipped():
    """A model holding its experts fused ([E, 2I, H] gate_up_proj) against a base holding them one tensor each:
    the fused rows are skipped, saying why; with --split on them the whole run had been refused as the rule
    'cutting nothing' (h61). The rule found them: they keep their skipped status, the other rows are analysed."""
    rng = np.random.default_rng(0)
    E, I, H = 4, 32, 16
    model = {"layers.0.mlp.experts.gate_up_proj": rng.standard_normal((E, 2 * I, H)).astype(np.float32),
             "layers.0.attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    base = {f"layers.0.mlp.experts.{e}.{p}.weight": rng.standard_normal((I, H)).astype(np.float32)
            for e in range(E) for p in ("gate_proj", "up_proj")}
    base["layers.0.attn.q_proj.weight"] = model["layers.0.attn.q_proj.weight"] + 0.1
    plain = {r.name: r.status for r in htsr.analyze(model, base=base, min_evals=5).layers}
    split = {r.name: r.status for r in htsr.analyze(model, base=base, min_evals=5,
                                                    split=["gate_up_proj=gate,up@0"]).layers}
    assert split == plain
    assert split["layers.0.mlp.experts.gate_up_proj"].startswith("skipped: only in the model: the base holds its "
                                                                 "experts one tensor each")
