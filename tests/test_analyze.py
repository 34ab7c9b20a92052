"""htsr.analyze end to end on in-memory sources: schema, statuses, filters, options, summary."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys

import numpy as np
import pytest

import htsr
from htsr.fits.bayes import bayesian_alpha
from htsr.matrices import aspect_windows, layer_matrices, unread_tensor_row
from htsr.results import COLUMNS
from htsr.rmt import randomize
from htsr.tensors import classify
from conftest import matrix_with_singular_values

torch = pytest.importorskip("torch")


def _mapping(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embed_tokens.weight": rng.standard_normal((500, 64)).astype(np.float32),
        "layers.0.fc1.weight": rng.standard_normal((256, 64)).astype(np.float32),
        "layers.0.fc1.bias": rng.standard_normal(256).astype(np.float32),
        "layers.0.norm.weight": np.ones(64, dtype=np.float32),
        "layers.0.conv.weight": rng.standard_normal((96, 64, 3, 3)).astype(np.float32),
        "layers.1.conv1d.weight": rng.standard_normal((128, 64, 5)).astype(np.float32),
        "moe.experts.w1": rng.standard_normal((4, 128, 64)).astype(np.float32),
        "position_ids": np.arange(64)[None, :],
    }


def test_kinds_names_and_fixed_schema():
    r = htsr.analyze(_mapping())
    kinds = {l.name: l.kind for l in r.layers}
    assert kinds == {
        "embed_tokens": "embedding", "layers.0.fc1": "dense", "layers.0.conv": "conv2d",
        "layers.1.conv1d": "conv1d", "moe.experts.w1[0]": "stack", "moe.experts.w1[1]": "stack",
        "moe.experts.w1[2]": "stack", "moe.experts.w1[3]": "stack",
    }
    for l in r.layers:
        assert tuple(l.as_dict()) == COLUMNS
    df = r.to_pandas()
    assert tuple(df.columns) == COLUMNS and len(df) == len(r.layers)
    conv = next(l for l in r.layers if l.kind == "conv2d")
    assert (conv.num_matrices, conv.num_evals, conv.N, conv.M) == (9, 576, 96, 64)


def test_module_source_uses_module_classes():
    torch.manual_seed(0)
    m = torch.nn.Sequential()
    m.add_module("emb", torch.nn.Embedding(300, 64))
    m.add_module("lstm", torch.nn.LSTM(64, 32))
    m.add_module("proj", torch.nn.Linear(64, 200))
    m.add_module("ln", torch.nn.LayerNorm(200))
    r = htsr.analyze(m)
    assert [(l.name, l.kind) for l in r.layers] == [
        ("emb", "embedding"), ("lstm.weight_ih_l0", "rnn"), ("lstm.weight_hh_l0", "rnn"), ("proj", "dense")]
    assert not any(p.grad is not None for p in m.parameters())  # nothing left on the user's module


def test_module_and_state_dict_and_numpy_agree():
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.Conv2d(8, 100, 3))
    a = htsr.analyze(m, precision="accurate")
    b = htsr.analyze(m.state_dict(), precision="accurate")
    c = htsr.analyze({k: v.numpy() for k, v in m.state_dict().items()}, precision="accurate")
    for x, y, z in zip(a.layers, b.layers, c.layers):
        assert x.alpha == y.alpha == z.alpha and x.log_norm == y.log_norm == z.log_norm


def test_a_tensor_no_matrix_can_be_made_of_fails_its_row_not_the_run():
    """A reader's tensor of a kind layer_matrices does not know (a reader's bug, a corrupt header) had raised out
    of the run; it is that tensor's failed row, and the other layers are analysed."""
    from htsr.io.base import TensorRef, TensorSource

    good = np.random.default_rng(3).standard_normal((160, 80))

    class Source(TensorSource):
        description = "two tensors"

        def __len__(self):
            return 2

        def __iter__(self):
            yield TensorRef("a.weight", (160, 80), "float64", lambda: good)
            yield TensorRef("b.weight", (160, 80), "float64", lambda: good, "no_such_kind")

    a, b = htsr.analyze(Source()).layers
    assert (a.name, a.status) == ("a", "ok")
    assert (b.name, b.kind) == ("b", "no_such_kind")
    assert b.status == ("failed: no matrices of its no_such_kind tensor of shape 160x80 (ValueError: unknown layer "
                        "kind 'no_such_kind')")


def test_bad_layers_get_a_status_and_the_rest_go_on():
    rng = np.random.default_rng(2)
    good = rng.standard_normal((300, 100)).astype(np.float32)
    nan = good.copy(); nan[3, 4] = np.nan
    inf = good.copy(); inf[0, 0] = np.inf
    r = htsr.analyze({"a.weight": good, "b.weight": nan, "c.weight": inf,
                      "d.weight": np.zeros((300, 100), np.float32), "e.weight": rng.standard_normal((1, 500))})
    status = {l.name: l.status for l in r.layers}
    assert status["a"] == "ok"
    assert status["b"].startswith("failed: NaN or Inf") and status["c"].startswith("failed: NaN or Inf")
    assert status["d"] == "failed: all-zero matrix"
    assert status["e"].startswith("not_fitted") and r.layers[4].M == 1
    e = r.layers[4]
    # described, not fitted (its one eigenvalue: stable rank λ/λ = 1 exactly)
    assert e.stable_rank == pytest.approx(1.0) and math.isnan(e.alpha)
    s = r.summary
    assert (s.num_layers, s.num_fitted, s.num_not_fitted, s.num_failed) == (5, 1, 1, 3)
    # the summary averages finite values only: alpha is the good layer's own
    assert s.means["alpha"] == r.layers[0].alpha
    for l in r.layers[1:4]:
        assert math.isnan(l.alpha) and l.warning == ""  # never a -1 sentinel
    # no fit, no tail: a tail count of 0 would read as a fit that found none
    assert all(math.isnan(l.num_pl_spikes) for l in r.layers[1:]) and r.layers[0].num_pl_spikes > 0
    # a fitted layer whose diagnostics failed is still counted as fitted
    partial = dataclasses.replace(r.layers[0], status="ok; diagnostics failed: RuntimeError: no convergence")
    assert htsr.results.Summary.of([partial]).num_fitted == 1


def test_no_analysable_layer_is_an_error():
    # the error says why the tensors gave no row, the most common reason first
    with pytest.raises(htsr.SourceError, match=r"no analysable layer: none of its 3 tensors is a weight matrix htsr "
                       r"can read: 2 bias or norm buffer \(a\.bias, …\); 1 integer buffer .* \(ids\)$"):
        htsr.analyze({"a.bias": np.ones(10), "b.bias": np.ones(4), "ids": np.arange(10)[None, :]})
    with pytest.raises(htsr.SourceError, match="matches the filters"):
        htsr.analyze(_mapping(), layers="^nothing$")
    # a pattern written for the tensor's name: the error lists tensors by name, and had not said that the pattern
    # is tried on the rows' names ('emb.weight' plainly matches 'emb\.weight$'; its row, 'emb', does not)
    w = {"emb.weight": np.ones((30, 20)), "fc.weight": np.ones((20, 10)), "fc.bias": np.ones(20)}
    with pytest.raises(htsr.SourceError) as ei:
        htsr.analyze(w, layers=r"emb\.weight$")
    assert str(ei.value) == (
        "<mapping>: no analysable layer: none of its 3 tensors matches the filters: 2 not matched by option 'layers' "
        "(emb.weight, …); 1 bias or norm buffer (fc.bias); option 'layers' is matched against row names, a tensor's "
        "name without '.weight' (emb)")
    assert [l.name for l in htsr.analyze(w, layers=r"^emb$", min_evals=2).layers] == ["emb"]


def test_filters():
    r = htsr.analyze(_mapping(), layers=r"layers\.0", kinds=["dense", "conv2d"])
    assert [l.name for l in r.layers] == ["layers.0.fc1", "layers.0.conv"]
    r = htsr.analyze(_mapping(), kinds="stack", max_evals=63)
    assert all(l.status.startswith("skipped") for l in r.layers)
    r = htsr.analyze(_mapping(), min_evals=100, kinds="stack")
    assert all(l.status.startswith("not_fitted") for l in r.layers)


def test_every_tensor_is_a_row_or_is_listed_as_not_analysed_with_why():
    rng = np.random.default_rng(1)
    src = {**_mapping(), "layers.0.fc1.weight_6d": rng.standard_normal((2, 3, 2, 3, 2, 3)),
           "layers.2.empty.weight": np.zeros((0, 8), np.float32)}
    r = htsr.analyze(src, layers=r"^(?!embed)", kinds=["dense", "conv2d", "conv1d", "embedding"])
    assert r.num_tensors == len(src) == 10
    got = {n.reason: (n.count, n.examples) for n in r.not_analysed}
    assert got == {
        "bias or norm buffer": (1, ("layers.0.fc1.bias",)),
        "1-D (norm scales, scalars)": (1, ("layers.0.norm.weight",)),
        "integer buffer (ids, masks, counters)": (1, ("position_ids",)),
        "6-D tensor of no layer kind htsr knows": (1, ("layers.0.fc1.weight_6d",)),
        "kind stack not in option 'kinds'": (1, ("moe.experts.w1",)),
        "not matched by option 'layers'": (1, ("embed_tokens.weight",)),
    }
    # the most frequent reason first, then by name; the rows and the list account for every tensor
    assert [n.reason for n in r.not_analysed] == sorted(got)
    assert len(r.layers) + sum(n.count for n in r.not_analysed) == r.num_tensors
    # an empty layer is a row that says so, as a live module's nn.Linear(8, 0) is (it had been listed as no layer)
    assert [(l.name, l.status) for l in r.layers if "empty" in l.name] == [
        ("layers.2.empty", "skipped: an empty matrix (shape 0x8)")]
    doc = json.loads(r.json_text(layers=False))
    assert doc["num_tensors"] == 10 and doc["not_analysed"][0] == {
        "reason": "1-D (norm scales, scalars)", "count": 1, "examples": ["layers.0.norm.weight"]}


def test_an_empty_layer_is_the_same_row_live_and_from_its_state_dict(tmp_path):
    """nn.Linear(5, 0): the live module (its class gives the kind) had a 'skipped' row, its state dict and its
    saved file none (a name-typed empty tensor was listed as no layer): the layer counts differed, and compare
    saw the layer in one run only."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(5, 0), torch.nn.Linear(64, 60))
    torch.save(m.state_dict(), tmp_path / "m.pt")
    rows = [[(l.name, l.status) for l in htsr.analyze(src).layers] for src in (m, m.state_dict(), tmp_path / "m.pt")]
    assert rows[0] == rows[1] == rows[2]
    assert rows[0][0] == ("0", "skipped: an empty matrix (shape 0x5)")


def test_vectors_kept_in_a_broadcast_shape_are_no_layers():
    """ConvNeXt's layer_scale [C, 1, 1] was a conv1d row of one eigenvalue and ViT's class_token [1, 1, D] a
    dense one (an all-zero token a failed row): vectors, listed as such. A layer's own [1, in] weight (a
    Linear with one output, a hand-written network's last weights) keeps its row, live and from a file."""
    rng = np.random.default_rng(2)
    src = {"blocks.0.layer_scale": np.full((96, 1, 1), 1e-6, np.float32),
           "class_token": rng.standard_normal((1, 1, 96)).astype(np.float32),
           "mask_token": np.zeros((1, 1, 96), np.float32),
           "head.weight": rng.standard_normal((1, 96)).astype(np.float32),
           "weights.2": rng.standard_normal((30, 1)), "W2": rng.standard_normal((1, 30)),
           "arr_2": rng.standard_normal((64, 1)),  # np.savez's positional name of a Dense(1) kernel: 2-D, a layer
           "fc.weight": rng.standard_normal((64, 96)).astype(np.float32),
           "W[0]": rng.standard_normal((20, 10)), "W[1]": rng.standard_normal((20, 10))}  # two tensors, counted 2
    r = htsr.analyze(src, min_evals=2)
    assert [x.name for x in r.layers] == ["head", "weights.2", "W2", "arr_2", "fc", "W[0]", "W[1]"]
    assert r.num_tensors == len(src)
    assert {n.reason: set(n.examples) for n in r.not_analysed} == {
        "vector (one axis longer than 1: a layer scale, a class token)": {"blocks.0.layer_scale", "class_token",
                                                                          "mask_token"}}
    module = torch.nn.Module()
    module.layer_scale = torch.nn.Parameter(torch.ones(96, 1, 1))
    module.head = torch.nn.Linear(96, 1)
    assert [x.name for x in htsr.analyze(module, min_evals=2).layers] == ["head"]


def test_a_tensor_is_not_analysed_only_if_none_of_its_rows_matches():
    """--layers matches rows: one expert of a fused stack, or one kernel position, makes its tensor analysed;
    the count stays one per tensor (it was one per row: 575 'not analysed' of 296 tensors)."""
    src = _mapping()
    r = htsr.analyze(src, layers=r"w1\[0\]$|conv\[0,0\]$", conv="per_position")
    assert [x.name for x in r.layers] == ["layers.0.conv[0,0]", "moe.experts.w1[0]"]
    got = {n.reason: n.count for n in r.not_analysed}
    assert got["not matched by option 'layers'"] == 3  # embed_tokens, fc1, conv1d: whole tensors
    assert r.num_tensors == len(src) == 2 + sum(got.values())  # conv and experts: analysed (a row each)


def test_a_quantized_weight_s_scales_count_with_it():
    """An FP8 weight and its scale are one tensor to analyse (read together, one row): the scale is neither a
    row nor 'not analysed', and the count adds up."""
    import ml_dtypes

    W = np.random.default_rng(0).standard_normal((64, 32)).astype(ml_dtypes.float8_e4m3fn)
    r = htsr.analyze({"fc.weight": W, "fc.weight_scale_inv": np.ones((1, 1), np.float32), "fc.bias": np.zeros(64)},
                     min_evals=5)
    assert [x.name for x in r.layers] == ["fc"] and r.num_tensors == 2
    assert [(n.reason, n.count) for n in r.not_analysed] == [("bias or norm buffer", 1)]


def test_a_live_module_counts_its_tensors_as_its_state_dict_does():
    """Biases, norm scales and counters of a live module are named among the tensors not analysed, with the
    same reasons as in its saved state dict."""
    m = torch.nn.Sequential(torch.nn.Linear(60, 80), torch.nn.BatchNorm1d(80), torch.nn.Linear(80, 70))
    live, saved = htsr.analyze(m), htsr.analyze(dict(m.state_dict()))
    assert live.num_tensors == saved.num_tensors == len(m.state_dict()) == 9
    assert live.not_analysed == saved.not_analysed
    assert {n.reason: n.count for n in live.not_analysed} == {
        "bias or norm buffer": 5, "1-D (norm scales, scalars)": 1, "integer buffer (ids, masks, counters)": 1}


def test_not_analysed_keeps_a_few_examples_per_reason():
    src = {f"b{i}.bias": np.ones(4) for i in range(5)} | {"w.weight": np.ones((8, 4)), "n.weight": np.ones(4)}
    r = htsr.analyze(src)
    assert [(n.reason, n.count, len(n.examples)) for n in r.not_analysed] == [
        ("bias or norm buffer", 5, 3), ("1-D (norm scales, scalars)", 1, 1)]


def test_conv_per_position_and_ww_scale():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((96, 64, 3, 3))
    pooled = htsr.analyze({"c.weight": W}, precision="accurate").layers[0]
    unscaled = htsr.analyze({"c.weight": W}, precision="accurate", ww_conv_scale=False).layers[0]
    # WeightWatcher halves pooled Conv2d eigenvalues: log10 shifts by log10(2), alpha is scale-free
    # (halving is exact: the logs' rounding only, ~1e-16)
    assert unscaled.log_spectral_norm - pooled.log_spectral_norm == pytest.approx(math.log10(2), abs=1e-12)
    assert unscaled.alpha == pytest.approx(pooled.alpha, rel=1e-12)
    rows = htsr.analyze({"c.weight": W}, precision="accurate", conv="per_position", min_evals=10).layers
    assert [l.name for l in rows][:2] == ["c[0,0]", "c[0,1]"] and len(rows) == 9
    sv = np.linalg.svd(W[:, :, 1, 2], compute_uv=False)
    # per position WeightWatcher multiplies by kh*kw/2 = 4.5 (float64 SVDs of the same matrix: rounding)
    assert rows[5].lambda_max == pytest.approx(4.5 * sv[0] ** 2, rel=1e-12)


def test_single_output_channel_conv_and_long_kernel_conv_from_a_file_and_a_module():
    """A conv with one output channel keeps it (it is not a leading batch dimension), a long-kernel
    grouped Conv1d named conv is one conv1d row (not 96 'experts'), a weight-normed conv is one row of
    g·v/‖v‖ (htsr.io.reparam); the state dict and the module give the same rows."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    m = nn.Module()
    m.head = nn.Conv2d(64, 1, 3)
    m.final_conv = nn.Conv1d(128, 1, 1)
    m.pos_conv = nn.Conv1d(96, 96, 64, groups=2)
    m.wn_conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(96, 96, 48, groups=2), dim=2)
    m.pos_embed = nn.Parameter(torch.randn(1, 197, 64))  # a leading batch dimension: squeezed
    state = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    assert "wn_conv.parametrizations.weight.original0" in state  # g, shape [1, 1, 48]
    from_file = {l.name: l for l in htsr.analyze(state, min_evals=2, precision="accurate").layers}
    from_module = {l.name: l for l in htsr.analyze(m, min_evals=2, precision="accurate").layers}
    W = state["head.weight"].astype(np.float64)
    head = from_file["head"]
    assert (head.kind, head.num_matrices, head.N, head.M) == ("conv2d", 9, 64, 1)
    # nine 1 × 64 matrices, halved as WeightWatcher's pooled Conv2d: the largest is the largest row norm²
    # (a 1-row SVD against a float64 sum of squares: rounding, ~1e-16)
    assert head.lambda_max == pytest.approx(0.5 * max(np.sum(W[0, :, i, j] ** 2) for i in range(3)
                                                      for j in range(3)), rel=1e-12)
    assert from_file["final_conv"].kind == "conv1d" and from_file["final_conv"].num_evals == 1
    pos = from_file["pos_conv"]
    assert (pos.kind, pos.num_matrices, pos.N, pos.M) == ("conv1d", 64, 96, 48)
    assert not any("parametrizations" in name for name in from_file)
    assert (from_file["wn_conv"].kind, from_file["wn_conv"].num_matrices) == ("conv1d", 48)
    assert (from_file["pos_embed"].kind, from_file["pos_embed"].N, from_file["pos_embed"].M) == ("embedding", 197, 64)
    for name, row in from_module.items():
        assert (row.kind, row.num_evals) == (from_file[name].kind, from_file[name].num_evals), name
        # the same stored weights: 1e-12; the weight-normed conv's W is computed in float32 by torch on the
        # module and by numpy from the file (measured 6e-7)
        assert row.lambda_max == pytest.approx(from_file[name].lambda_max, rel=1e-5 if name == "wn_conv" else 1e-12), name


def test_default_floor_does_not_cut_into_tiny_weights():
    """Alpha is scale-free; WeightWatcher's absolute 1e-5 floor is not. For a layer whose largest
    eigenvalue is below 1e-2 (a fine-tune's update, weights × 1e-3) the default uses the layer's own
    numerical floor, so the fit is the one of the weights at scale 1 (it kept 30 of 67 tail values and
    gave 4.99 instead of 2.58 on a MiniLM layer before)."""
    rng = np.random.default_rng(8)
    W = matrix_with_singular_values(np.sqrt(1.0 + rng.pareto(1.5, 200)), 600, 200, seed=8)
    rows = [htsr.analyze({"w.weight": W * c}).layers[0] for c in (1.0, 1e-3, 1e-5)]
    assert rows[0].lambda_max > 1e-2 > rows[1].lambda_max  # the scaled copies are below the threshold
    for r in rows[1:]:
        # the same eigenvalues up to the scale: the same tail and alpha up to float32 rounding of W * c
        assert r.num_pl_spikes == rows[0].num_pl_spikes and r.alpha == pytest.approx(rows[0].alpha, rel=1e-4)


def test_normalize_by_N():
    W = np.random.default_rng(4).standard_normal((400, 100))
    a = htsr.analyze({"w": W}, precision="accurate").layers[0]
    b = htsr.analyze({"w": W}, precision="accurate", normalize="N").layers[0]
    assert b.lambda_max == pytest.approx(a.lambda_max / 400, rel=1e-12)  # same SVD, times 1/N after: ~1 ulp
    assert b.alpha == pytest.approx(a.alpha, rel=1e-12)  # scale-free
    # eigenvalues from 1e-4 to 100: divided by N = 400 the small ones fall below 1e-5, so the absolute
    # floor must be divided by N too, or the fit's data (and alpha: 1.55 -> 4.81 on MiniLM's position
    # embeddings) change with the normalization
    s = np.geomspace(1e-2, 10.0, 100)
    W = matrix_with_singular_values(s, 400, 100, seed=4)
    a, b = (htsr.analyze({"w": W}, precision="accurate", normalize=n).layers[0] for n in ("none", "N"))
    # alpha sees the eigenvalues' ratios, which the 1/N multiply changes by ~1 ulp (1e-9: ample)
    assert b.num_fit_evals == a.num_fit_evals and b.alpha == pytest.approx(a.alpha, rel=1e-9)


def test_known_spectrum_metrics():
    s = np.geomspace(0.5, 8.0, 120)
    W = matrix_with_singular_values(s, 400, 120, seed=5)
    l = htsr.analyze({"w": W}, precision="accurate").layers[0]
    ev = s**2
    # exact definitions (THEORY §4); 1e-9 covers the SVD's rounding of the chosen singular values
    assert l.log_norm == pytest.approx(math.log10(ev.sum()), rel=1e-9)
    assert l.log_spectral_norm == pytest.approx(math.log10(ev.max()), rel=1e-9)
    assert l.stable_rank == pytest.approx(ev.sum() / ev.max(), rel=1e-9)
    assert l.matrix_rank == 120
    p = ev / ev.sum()
    assert l.entropy == pytest.approx(-(p * np.log(p)).sum() / math.log(120), rel=1e-9)  # SVD rounding, as above
    # the same alpha times log10 of λ_max, the SVD's vs the exact: ~1e-16 apart
    assert l.alpha_weighted == pytest.approx(l.alpha * math.log10(ev.max()), rel=1e-12)
    assert l.log_alpha_norm == pytest.approx(math.log10((ev**l.alpha).sum()), rel=1e-9)  # SVD rounding, as above


@pytest.mark.parametrize("bad,match", [
    ({"precision": "medium"}, "precision"),
    ({"xmin": -1}, "xmin"),
    ({"min_evals": 0}, "min_evals"),
    ({"kinds": ["dense", "lstm"]}, "kinds"),
    ({"layers": "("}, "layers"),
    ({"refine_fraction": 2}, "refine_fraction"),
    ({"colour": "red"}, "unknown option 'colour'"),
    ({"tails": 1}, "tails"),  # 1 == True, but a switch takes True or False only
    ({"keep_spectra": "yes"}, "keep_spectra"),
])
def test_bad_options_name_the_option(bad, match):
    with pytest.raises(htsr.OptionError, match=match):
        htsr.analyze({"w": np.ones((5, 5))}, **bad)


def test_option_errors_quote_values_on_one_short_line_and_name_weightwatchers_keywords():
    """An array given as a choice option had raised numpy's 'truth value of an array … is ambiguous' (no option
    named); a list of 2000 values, 5 kB of bytes or a tensor was quoted whole (10-20 kB, several lines); a
    WeightWatcher keyword got the list of options alone, its list of layer ids the regular-expression rule."""
    W = {"w": np.ones((5, 5))}
    for name, value in (("xmin", np.zeros((5, 5))), ("precision", np.array(["fast", "x"])),
                        ("kinds", [np.array("dense")]), ("xmin", list(range(2000))), ("xmin", b"\0" * 5000),
                        ("kinds", ["x"] * 3000), ("layers", "\n".join(["("] * 500))):
        with pytest.raises(htsr.OptionError, match=f"option '{name}' must be") as ei:
            htsr.analyze(W, **{name: value})
        assert "\n" not in str(ei.value) and len(str(ei.value)) < 250, (name, str(ei.value))
    with pytest.raises(htsr.OptionError) as ei:
        htsr.analyze(W, pool=False)
    assert str(ei.value).startswith("unknown option 'pool' (a WeightWatcher keyword: pool=False is "
                                    "conv='per_position'; see docs/weightwatcher.md); known options: precision,")
    with pytest.raises(htsr.OptionError, match="not by WeightWatcher's layer ids"):
        htsr.analyze(W, layers=[1, 3])
    from htsr.options import WEIGHTWATCHER_KEYWORDS

    for name in WEIGHTWATCHER_KEYWORDS:  # (each a keyword WeightWatcher's analyze() takes, none an htsr option)
        with pytest.raises(htsr.OptionError, match=f"unknown option '{name}' \\(a WeightWatcher keyword: "):
            htsr.analyze(W, **{name: True})


def test_outputs_are_atomic_and_nan_free(tmp_path):
    r = htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((200, 60)),
                      "b.weight": np.zeros((100, 60))})
    r.to_json(tmp_path / "r.json")
    r.to_csv(tmp_path / "r.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it
    doc = json.loads((tmp_path / "r.json").read_text())  # strict JSON: NaN written as null
    assert doc["layers"][1]["alpha"] is None and doc["summary"]["num_failed"] == 1
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)


def test_public_surface():
    assert set(htsr.__all__) == {
        "analyze", "load_result", "AnalysisResult", "LayerResult", "LayerSpectra", "Summary", "COLUMNS", "Options", "OPTION_SPECS",
        "fit_power_law", "PowerLawFit", "esd", "Spectrum", "HtsrError", "OptionError", "SourceError",
        "OutputError", "MissingExtraError", "BrokenPackageError", "__version__"}
    for name in htsr.__all__:
        assert hasattr(htsr, name)
    from htsr import errors
    assert {n for n in htsr.__all__ if n.endswith("Error")} <= set(errors.__all__)  # every one documented there


def test_errors_survive_a_process_pool_and_say_the_same():
    # an error raised in a worker of a process pool is pickled back: MissingExtraError and BrokenPackageError,
    # whose constructors take their parts, had failed to unpickle (TypeError), which broke the whole pool
    import pickle

    from htsr.errors import OutputError
    for e in (htsr.MissingExtraError("onnx", "onnx", "reading m.onnx"), htsr.MissingExtraError("lightning", None, "x"),
              htsr.BrokenPackageError("h5py", "reading m.h5", ImportError("numpy.core.multiarray failed to import")),
              htsr.OptionError("bad", "seed", -1), htsr.SourceError("m.bin: corrupt"), OutputError("out: full")):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e)
        if isinstance(e, htsr.BrokenPackageError):
            assert "(ImportError: numpy.core.multiarray failed to import)" in str(back)


def test_an_output_that_cannot_be_written_is_an_output_error(tmp_path):
    from htsr.errors import OutputError
    r = htsr.analyze(_mapping(1))
    with pytest.raises(OutputError, match="no_such_folder") as e:
        r.to_csv(tmp_path / "no_such_folder" / "layers.csv")
    assert isinstance(e.value, OSError) and isinstance(e.value, htsr.HtsrError)


def test_core_imports_no_heavy_dependencies():
    import subprocess, sys
    code = ("import sys, htsr, numpy as np; htsr.analyze({'w': np.eye(60)});"
            "print(sorted(m for m in ('torch','pandas','matplotlib','tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


#: htsr's modules in the order data flows through them (README, Development): a module imports only its own stage or
#: earlier ones; the leaves first (errors, values, factored matrices, what a named tensor is), the orchestrator
#: (analyze) after the results it builds, the outputs last. (A prefix names a package: every module in it.)
_STAGES = ["htsr.errors", "htsr.values", "htsr.lapack", "htsr.factored", "htsr.tensors", "htsr.io", "htsr.specs", "htsr.options",
           "htsr.matrices", "htsr.spectra", "htsr.fits", "htsr.rmt", "htsr.metrics", "htsr.results", "htsr.analyze",
           "htsr.figures", "htsr.plot", "htsr.report", "htsr.compare", "htsr.monitor", "htsr.cli"]


def _stage(module: str) -> int | None:
    return next((i for i, s in enumerate(_STAGES) if module == s or module.startswith(s + ".")), None)


def test_no_module_imports_a_later_stage():
    """Data flows one way, and so do imports, lazy ones (inside a function) included: the readers had imported
    the matrices stage for its tensor names, and the fit and spectra functions the options module for its rules."""
    import ast
    from pathlib import Path

    root = Path(htsr.__file__).parent
    later = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module in ("htsr", "htsr.__main__"):  # (the package's front door: it imports what it offers)
            continue
        assert _stage(module) is not None, f"{module}: not in _STAGES"
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                if target != "htsr" and _stage(target) > _stage(module):
                    later.append(f"{module} imports {target} (line {node.lineno})")
    assert later == []


def test_threads_give_the_same_rows_and_restore_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    m = _mapping(9)
    one = htsr.analyze(m, workers=1, precision="accurate")
    two = htsr.analyze(m, workers=2, precision="accurate")
    assert [(l.name, l.status) for l in one.layers] == [(l.name, l.status) for l in two.layers]
    for a, b in zip(one.layers, two.layers):
        # a BLAS with 1 or 2 threads sums in a different order: float64 rounding only
        assert a.alpha == pytest.approx(b.alpha, rel=1e-9, nan_ok=True)
        assert a.log_norm == pytest.approx(b.log_norm, rel=1e-12, nan_ok=True)
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before  # a guest: limits restored


@pytest.mark.parametrize("gil", [True, False])
def test_tiny_layers_run_one_at_a_time_and_others_side_by_side(monkeypatch, gil):
    """Rows whose eigenvalues cost less than their fits (Python's, under its lock) ran two at a time and took
    ×1.3 as long as one at a time (128 × 64 layers on 2 cores); the others, whose solver releases the lock,
    take ×1.9 less side by side (768 × 768). A tiny row runs beside a larger one (the MNIST MLP's 300 × 100 beside
    its 784 × 300). Without the lock (a free-threaded Python) tiny rows run side by side."""
    import threading
    import time

    from htsr.matrices import LayerMatrices

    a = sys.modules["htsr.analyze"]  # (the module: htsr.analyze is also its function)
    monkeypatch.setattr(a, "_GIL", gil)
    lock, active, most = threading.Lock(), {"t": 0, "b": 0}, {"t": 0, "b": 0, "both": 0}

    started = []

    def work(lm):
        group = lm.name[0]
        with lock:
            started.append(lm.name)
            active[group] += 1
            most[group] = max(most[group], active[group])
            most["both"] = max(most["both"], active["t"] + active["b"])
        time.sleep(0.02)  # (long enough for a second worker to start)
        with lock:
            active[group] -= 1
        return lm.name

    def row(name, rows, cols, n=1):
        return LayerMatrices(name, "dense", (rows, cols), rows, cols, n, 1.0, lambda: [])

    # tiny: 64·32² + 32³ work; 9 positions of 96 × 96: 9·2·96³ = 1.6e7 (just below 2^24); 256 × 256: 3.4e7
    tiny = [row(f"t{i}", 64, 32) for i in range(4)] + [row("t_conv", 96, 96, 9)]
    big = [row(f"b{i}", 256, 256) for i in range(4)]
    assert a.in_threads(big + tiny, work, workers=2) == [lm.name for lm in big + tiny]  # in order
    assert most == {"t": 1 if gil else 2, "b": 2, "both": 2}
    most.update(t=0, b=0, both=0)
    mixed = [x for pair in zip(tiny, big) for x in pair]
    assert a.in_threads(mixed, work, workers=2) == [lm.name for lm in mixed]
    assert most["both"] == 2 and (most["t"] == 1 or not gil)  # a tiny row beside a larger one
    started.clear()
    a.in_threads(tiny[::-1] + big, work, workers=2)
    assert [n for n in started if n[0] == "t"] == [lm.name for lm in tiny[::-1]] or not gil  # in their order
    assert not a._tiny(row("c", 96, 96, 10)) and not a._tiny(dataclasses.replace(row("l", 64, 32), kind="lora"))


def test_a_tiny_row_waiting_for_its_turn_is_released_on_ctrl_c():
    """A tiny row waits for the one before it; if that one was cancelled (Ctrl-C: the rows not started are dropped),
    its turn never ends: the waiting row is released, and the pool can shut down."""
    import threading

    from htsr.matrices import LayerMatrices

    a = sys.modules["htsr.analyze"]
    r0, r1 = (LayerMatrices(f"t{i}", "dense", (8, 4), 8, 4, 1, 1.0, lambda: []) for i in range(2))
    turns, outcome = a._Turns([r0, r1]), []

    def second():
        try:
            turns.run(lambda lm: lm.name, r1)
        except RuntimeError as e:
            outcome.append(e)

    waiting = threading.Thread(target=second)
    waiting.start()
    waiting.join(0.1)
    assert waiting.is_alive()  # r0 has not had its turn
    turns.abandon()
    waiting.join(5)
    assert not waiting.is_alive() and len(outcome) == 1

    def interrupted(lm):
        if lm.name == "t0":
            raise KeyboardInterrupt
        return lm.name

    rows = [LayerMatrices(f"t{i}", "dense", (8, 4), 8, 4, 1, 1.0, lambda: []) for i in range(6)]
    with pytest.raises(KeyboardInterrupt):  # (and returns: no row left waiting)
        a.in_threads(rows, interrupted, workers=2)


def test_analyses_in_user_threads_restore_blas_threads_and_give_the_serial_rows():
    # Analyses started in a user's threads. Each had set and restored the process's BLAS limit itself: one that
    # saved another's limit of 1 put it back last (numpy single-threaded for the session), and with threadpoolctl
    # 3.8, which lets only the thread that set a limit change it, a limit made in a user's thread after one made
    # in the main thread did not hold (its 300 x 300 layers ran on 2 BLAS threads: lambda_max 1e-6 apart)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    def blas_threads():
        return {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}

    before = blas_threads()  # (a limit set here would bind the other threads too: threadpoolctl 3.8 lets only
    # the thread holding one change it; on a machine of one CPU the rows cannot differ, the restore is still checked)
    m = {f"l{i}.weight": np.random.default_rng(i).standard_normal((300, 300)).astype(np.float32) for i in range(4)}
    serial = [l.lambda_max for l in htsr.analyze(m).layers]
    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda _: [l.lambda_max for l in htsr.analyze(m).layers], range(4)))
        assert blas_threads() == before
        assert all(r == serial for r in runs)  # bit for bit: the same BLAS thread count as the serial run


def test_hugging_face_conv1d_module_is_dense():
    class Conv1D(torch.nn.Module):  # transformers' GPT-2 layer: weight stored [in, out]
        def __init__(self, nf, nx):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(nx, nf))
            self.bias = torch.nn.Parameter(torch.zeros(nf))

    m = torch.nn.Sequential()
    m.add_module("c_attn", Conv1D(300, 64))
    (row,) = htsr.analyze(m).layers
    assert (row.name, row.kind, row.N, row.M) == ("c_attn", "dense", 300, 64)


def test_keep_spectra_keeps_each_rows_eigenvalues_aligned_with_the_rows():
    m = _mapping()
    m["bad.weight"] = np.full((80, 60), np.nan, dtype=np.float32)
    r = htsr.analyze(m, keep_spectra=True, randomize=True, workers=1)
    assert len(r.spectra) == len(r.layers)
    for row, sp in zip(r.layers, r.spectra):
        if row.status.startswith("failed"):
            assert sp is None  # no eigenvalues were computed
            continue
        assert sp.evals.size == row.num_evals and np.all(np.diff(sp.evals) >= 0)
        # the columns were computed from these very eigenvalues (exact: the same array)
        assert sp.evals[-1] == row.lambda_max
        if row.status == "ok":
            assert sp.fit_evals.min() <= row.xmin <= sp.fit_evals.max()
            assert int(np.sum(sp.fit_evals >= row.xmin)) == row.num_pl_spikes
            assert sp.rand_evals.size == row.num_evals and sp.rand_evals[-1] == row.rand_lambda_max
            assert int(np.sum(sp.rand_evals > sp.rand_threshold)) == row.num_traps
    assert htsr.analyze(m).spectra == ()  # off by default: nothing kept


@pytest.mark.parametrize("orientation", ["E_out_in", "E_in_out"])
def test_fused_moe_experts_give_one_row_per_expert(tmp_path, orientation):
    """Fused expert tensors in either orientation (HF Mixtral/Qwen-MoE [E, out, in]; [E, in, out] as in
    transformers' fused gate_up_proj and JAX/GGUF-style stacks): one row per expert, named name[e], with
    that expert's singular values (transposing a slice leaves them unchanged)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    experts = [rng.standard_normal((96, 64)).astype(np.float32) * (1 + e) for e in range(4)]  # out x in each
    # contiguous: safetensors 0.8's numpy save_file writes a non-contiguous array's memory in the wrong order
    stack = np.ascontiguousarray(np.stack(experts if orientation == "E_out_in" else [W.T for W in experts]))
    save_file({"model.layers.0.mlp.experts.gate_up_proj": stack, "blk.0.ffn_down_exps.weight": stack[:, :, :16].copy()},
              str(tmp_path / "moe.safetensors"))
    r = htsr.analyze(tmp_path / "moe.safetensors", precision="accurate", min_evals=2)
    rows = {x.name: x for x in r.layers}
    for e, W in enumerate(experts):
        row = rows[f"model.layers.0.mlp.experts.gate_up_proj[{e}]"]
        assert row.kind == "stack" and (row.N, row.M) == (96, 64)
        # the SVD path in float64 on the same float32 values: the largest eigenvalue to 1e-12
        assert row.lambda_max == pytest.approx(np.linalg.svd(W.astype(np.float64), compute_uv=False)[0] ** 2,
                                               rel=1e-12)
    # a narrow GGUF expert stack (last axis 16 <= the Conv1d kernel limit) is still experts, not a conv
    assert [rows[f"blk.0.ffn_down_exps[{e}]"].kind for e in range(4)] == ["stack"] * 4


@pytest.mark.parametrize("precision", ["fast", "accurate"])
def test_weights_beyond_float64_eigenvalues_fail_that_layer_only(precision):
    """float64 weights of 1e200 (1e-200): their eigenvalues (1e400, 1e-400) leave float64's range, a failed
    row that says to rescale; weights of 1e150 (eigenvalues near 1e302) are still analysed, with the same alpha as the same
    matrix at unit scale (alpha is scale-free); the other layers go on."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((80, 60))
    rows = {r.name: r for r in htsr.analyze({"big.weight": W * 1e200, "edge.weight": W * 1e150,
                                             "tiny.weight": W * 1e-200, "unit.weight": W},
                                            min_evals=5, precision=precision).layers}
    assert rows["big"].status.startswith("failed: weights up to ") and "rescale the weights" in rows["big"].status
    # 1e-200: eigenvalues of 1e-400 underflow to 0; it is not an all-zero matrix
    assert rows["tiny"].status.startswith("failed: weights of at most ") and "below float64's range" in rows["tiny"].status
    assert math.isnan(rows["big"].alpha) and math.isnan(rows["big"].lambda_max)
    assert rows["edge"].status == rows["unit"].status == "ok"
    # the eigenvalues scale by 1e300 up to rounding: the fit sees the same ratios, to float64 rounding with
    # the SVD (1e-9); the fast path computes the unit matrix's Gram in float32 and the 1e150 one's in
    # float64 (float32 rounding: 1e-5)
    assert rows["edge"].alpha == pytest.approx(rows["unit"].alpha, rel=1e-9 if precision == "accurate" else 1e-5)


def test_a_failure_after_the_spectrum_is_that_layer_row_not_the_run(monkeypatch):
    """Whatever stage a layer fails in (here the power-law fit, forced to raise), it gets a failed row and
    the other layers go on."""
    an = sys.modules["htsr.analyze"]  # the module (htsr.analyze is also the function)
    real = an.fit_power_law

    def flaky(x, *args, **kwargs):
        if x.size == 30:
            raise RuntimeError("forced failure")
        return real(x, *args, **kwargs)

    monkeypatch.setattr(an, "fit_power_law", flaky)
    rng = np.random.default_rng(6)
    rows = {r.name: r for r in htsr.analyze({"a.weight": rng.standard_normal((50, 30)),
                                             "b.weight": rng.standard_normal((70, 40))}, min_evals=5).layers}
    assert rows["a"].status == "failed: RuntimeError: forced failure" and rows["b"].status == "ok"
    assert rows["a"].shape == "50x30" and math.isnan(rows["a"].alpha)


def test_a_failure_without_a_message_is_named_by_its_class(monkeypatch):
    """An exception with no text (a zip read cut short raises a bare EOFError) gives 'failed: EOFError', not
    'failed: EOFError: ' with nothing after the colon; a message of several lines is put on one."""
    an = sys.modules["htsr.analyze"]
    real = an.fit_power_law

    def flaky(x, *args, **kwargs):
        if x.size == 30:
            raise EOFError()
        if x.size == 40:
            raise ValueError("first line\n  second line")
        return real(x, *args, **kwargs)

    monkeypatch.setattr(an, "fit_power_law", flaky)
    rng = np.random.default_rng(6)
    rows = {r.name: r.status for r in htsr.analyze({"a.weight": rng.standard_normal((50, 30)),
                                                    "b.weight": rng.standard_normal((70, 40))}, min_evals=5).layers}
    assert rows == {"a": "failed: EOFError", "b": "failed: ValueError: first line second line"}


def test_summary_counts_of_diagnostics_that_did_not_run_are_nan():
    """'no-power-law 0' without a bootstrap, 'traps 0' without randomize or '0 layers per phase' without
    the MP fit would read as 'checked, none found': they are NaN (null in JSON); run, they are counts."""
    rng = np.random.default_rng(8)
    model = {"a.weight": rng.standard_normal((120, 60)), "b.weight": rng.standard_normal((100, 70))}
    s = htsr.analyze(model, mp_fit=False).summary
    assert math.isnan(s.num_no_power_law) and math.isnan(s.num_with_traps)
    assert all(math.isnan(n) for n in s.phases.values())
    assert json.loads(htsr.analyze(model).json_text())["summary"]["num_with_traps"] is None
    s = htsr.analyze(model, bootstrap=20, randomize=True).summary
    assert math.isnan(s.num_no_power_law)  # 20 replicates are too few to test a layer (MIN_WARNING_REPLICATES)
    assert s.num_with_traps in (0, 1, 2)
    assert htsr.analyze(model, bootstrap=100, seed=0).summary.num_no_power_law in (0, 1, 2)
    assert sum(s.phases.values()) == 2  # every layer has a phase


def test_a_rank_deficient_layer_with_fewer_than_min_evals_nonzero_eigenvalues_is_not_fitted():
    """A 200 × 100 matrix of rank 2 has 100 eigenvalues but only 2 above the floor: fitting those gave status
    ok, alpha 7.0, p = 1 and best_fit power_law, counted as a plausible power law. min_evals counts the
    eigenvalues the fit would see; a rank-60 one is fitted."""
    rng = np.random.default_rng(0)
    model = {f"r{k}.weight": rng.standard_normal((200, k)) @ rng.standard_normal((k, 100)) for k in (2, 60)}
    result = htsr.analyze(model, bootstrap=100)
    rows = {r.name: r for r in result.layers}
    assert rows["r2"].status.startswith("not_fitted: 2 of 100 eigenvalues above the floor 1e-05 < min_evals=50")
    assert math.isnan(rows["r2"].alpha) and rows["r2"].best_fit == "" and math.isnan(rows["r2"].pl_pvalue)
    assert rows["r2"].num_fit_evals == 2 and rows["r2"].warning == ""
    assert rows["r60"].status == "ok" and rows["r60"].num_fit_evals == 60
    assert result.summary.num_fitted == 1


@pytest.mark.parametrize("precision", ["fast", "accurate"])
def test_a_rank_one_layer_is_not_fitted_at_any_scale(precision):
    """A rank-1 matrix has one nonzero eigenvalue; the others are round-off, which for entries of 1e6
    (λ_max ≈ 8e15) lies far above WeightWatcher's absolute 1e-5. The fit keeps eigenvalues above the layer's
    numerical floor too, so the layer is unfitted at every scale (it was 'ok', alpha 1.3, at 1e6)."""
    u = np.random.default_rng(9).standard_normal((64, 1))
    v = np.random.default_rng(10).standard_normal((1, 128))
    model = {f"s{k}.weight": (u @ v) * 10.0 ** k for k in (0, 3, 6, 10)}
    for r in htsr.analyze(model, min_evals=2, precision=precision).layers:
        assert r.status.startswith("not_fitted: 1 of 64 eigenvalues above the floor"), (r.name, r.status)
        assert r.matrix_rank == 1 and math.isnan(r.alpha)
        # one nonzero eigenvalue is no MP bulk: no fit, and so no BBP cut to count heavy entries by (NaN, not 0)
        assert math.isnan(r.mp_sigma) and math.isnan(r.num_spikes) and math.isnan(r.num_heavy_entries)


def test_numpy_scalars_are_accepted_as_options():
    """Values from a numpy sweep (np.int64, np.float32, np.bool_) are the same options as Python's; a
    numpy value out of range is still refused by name."""
    from htsr.options import Options

    o = Options.create(bootstrap=np.int64(50), confidence=np.float32(0.9), xmin=np.float64(1.5),
                       randomize=np.bool_(True), min_evals=np.int32(10))
    assert (o.bootstrap, o.xmin, o.randomize, o.min_evals) == (50, 1.5, True, 10)
    assert type(o.bootstrap) is int and o.confidence == pytest.approx(0.9, rel=1e-7)  # float32's 0.9
    with pytest.raises(htsr.OptionError, match="'bootstrap'"):
        Options.create(bootstrap=np.int64(-1))


def test_row_names_are_unique_when_two_tensors_give_one():
    """'fc.weight' and 'fc' both name the row 'fc': the later becomes 'fc#2', so a name means one row (a
    monitor's history groups records by it, plot_layer and compare look rows up by it)."""
    rng = np.random.default_rng(0)
    r = htsr.analyze({"fc.weight": rng.standard_normal((100, 60)), "fc": rng.standard_normal((80, 60)),
                      "out.weight": rng.standard_normal((90, 60))})
    assert [(l.name, l.N) for l in r.layers] == [("fc", 100), ("fc#2", 80), ("out", 90)]
    # named before --layers filters them: 'fc#2' is selected by its own name, and keeps it alone (it had not been
    # selectable: the filter saw 'fc', and the row would have been named 'fc' alone)
    src = {"fc.weight": rng.standard_normal((100, 60)), "fc": rng.standard_normal((80, 60))}
    assert [(l.name, l.N) for l in htsr.analyze(src, layers="^fc#2$").layers] == [("fc#2", 80)]
    assert [(l.name, l.N) for l in htsr.analyze(src, layers="^fc$").layers] == [("fc", 100)]
    # a repeat of 'fc' after tensors named 'fc#2' and 'fc#3' themselves: the next free number, 'fc#4' (only the
    # first free number had been seen; a second 'fc#3' would make a name mean two rows)
    src = {"fc.weight": rng.standard_normal((100, 60)), "fc#2": rng.standard_normal((80, 60)),
           "fc#3": rng.standard_normal((75, 60)), "fc": rng.standard_normal((70, 60))}
    assert [(l.name, l.N) for l in htsr.analyze(src, tails=False).layers] == [
        ("fc", 100), ("fc#2", 80), ("fc#3", 75), ("fc#4", 70)]


def test_a_conv_of_one_input_channel_is_described_not_fitted():
    """[out, 1, k]: each of the k kernel positions is an out x 1 matrix, whose one eigenvalue is a squared
    column norm (Silero's fixed STFT basis, 258 x 1 x 256): pooled they are not a spectrum, so no fit, no MP
    fit and no traps (the MP fit had called 253 of its 256 'eigenvalues' spikes)."""
    W = np.random.default_rng(1).standard_normal((258, 1, 256))
    row = htsr.analyze({"stft.forward_basis": W}, randomize=True).layers[0]
    assert math.isnan(row.mp_sigma) and math.isnan(row.num_spikes) and math.isnan(row.num_traps)
    assert (row.kind, row.num_evals) == ("conv1d", 256)
    assert row.status == ("not_fitted: each of the 256 kernel positions is a 258 x 1 matrix, whose one eigenvalue is "
                          "a squared norm: pooled, no spectrum")
    assert math.isnan(row.alpha) and math.isfinite(row.log_norm)


def test_a_results_repr_is_one_line():
    """repr(result) printed every row's ~90 columns (42 k characters for 20 layers)."""
    W = np.random.default_rng(0).standard_normal((300, 200))
    r = htsr.analyze({f"l{i}.weight": W for i in range(20)})
    assert repr(r) == (f"<AnalysisResult <mapping>: 20 layers, 20 fitted, mean alpha {r.summary.means['alpha']:.3f}; "
                       ".layers, .summary, .to_pandas()>")


def test_to_pandas_gives_each_column_one_dtype_whatever_the_values():
    """Count columns (matrix_rank, num_spikes, num_erg …) were int64 in a result where no row had a NaN and
    float64 in another: concatenating two models' tables mixed them. Each column takes LayerResult's type."""
    pytest.importorskip("pandas")
    from htsr.results import LayerResult

    rng = np.random.default_rng(0)
    fitted = htsr.analyze({"fc.weight": rng.standard_normal((80, 60)).astype(np.float32)})
    mixed = htsr.analyze({"fc.weight": rng.standard_normal((80, 60)).astype(np.float32),
                          "tiny.weight": np.ones((3, 3), np.float32)})
    want = {n: {"int": "int64", "float": "float64"}.get(str(f.type), "object")
            for n, f in LayerResult.__dataclass_fields__.items()}
    for r in (fitted, mixed):
        assert {c: str(t) for c, t in r.to_pandas().dtypes.items()} == {c: want[c] for c in r.to_pandas().columns}


@pytest.mark.parametrize("given, message", [
    ({"max_fingers": 5}, "'max_fingers' applies only with option 'clip_xmax' set to True"),
    ({"finger_thresh": 0.5}, "'finger_thresh' applies only with option 'clip_xmax'"),
    ({"tw_margin": 3.0, "mp_fit": False}, "'tw_margin' applies only with option 'mp_fit' set to True"),
    ({"phase_ht_alpha": 5.0, "mp_fit": False}, "'phase_ht_alpha' applies only with option 'mp_fit'"),
    ({"refine_fraction": 0.2, "precision": "accurate"}, "'refine_fraction' applies only with option 'precision'"),
    ({"seed": 7}, "'seed' applies only with option 'bootstrap' above 0 or option 'randomize' set to True"),
    ({"tw_margin": 3.0, "mp_fit": False, "randomize": False}, "'tw_margin' applies only with option 'mp_fit'"),
    # an option that acts on no layer of the kinds selected (a LoRA update is analysed from its factors)
    ({"kinds": "lora", "randomize": True}, "'randomize' acts only on dense, conv1d, conv2d, conv3d, embedding, rnn, "
                                           r"stack layers, which option 'kinds' set to 'lora' leaves out"),
    ({"kinds": ["dense"], "ww_conv_scale": False}, r"'ww_conv_scale' acts only on conv2d, lora \(of a conv2d\) layers"),
])
def test_an_option_that_would_change_nothing_is_refused(given, message):
    """--max-fingers without --clip-xmax, a phase threshold with --no-mp-fit, --refine-fraction with
    --precision accurate were accepted and changed nothing (the same layers, hash for hash)."""
    with pytest.raises(htsr.OptionError, match=message):
        htsr.Options.create(**given)
    htsr.Options.create(max_fingers=10)  # its default, given: no change either way, accepted
    htsr.Options.create(kinds=["dense", "lora"], randomize=True, conv="per_position")  # some layer it acts on


def test_analyze_layer_gives_analyzes_row():
    """analyze_layer ran on every BLAS thread, analyze on one for matrices up to THREADED_MAX_M: 39 of MiniLM's
    40 rows differed in their last digits (a threaded BLAS sums in another order)."""
    from htsr.analyze import analyze_layer, iter_layers

    m = {f"l{j}.weight": np.random.default_rng(j).standard_t(3, (300, 200 + 40 * j)).astype(np.float32)
         for j in range(3)}
    opts = htsr.Options.create()
    rows = [analyze_layer(lm, opts) for lm in iter_layers(m, opts)[2]]
    # (NaN == NaN: compared as text, every digit)
    assert [repr(r.as_dict()) for r in rows] == [repr(r.as_dict()) for r in htsr.analyze(m).layers]


def test_numbers_from_numpy_and_ints_are_the_floats_they_mean():
    """confidence=np.float32(0.9) was recorded as 0.8999999761581421 (a run 'not comparable' with one given
    0.9); farms_aspect=2 as 2 by the API and 2.0 by the CLI."""
    o = htsr.Options.create(confidence=np.float32(0.9), farms_aspect=2, tw_margin=np.int64(3), bootstrap=np.int64(5))
    assert (o.confidence, o.farms_aspect, o.tw_margin, o.bootstrap) == (0.9, 2.0, 3.0, 5)
    assert [type(v) for v in (o.confidence, o.farms_aspect, o.tw_margin, o.bootstrap)] == [float, float, float, int]


def test_an_option_applies_with_any_of_its_conditions():
    """--seed draws the bootstrap's replicates and the shuffle of --randomize; --tw-margin sets the edge of
    the spikes (mp_fit) and of the traps (randomize): either one is enough (--tw-margin with --no-mp-fit
    --randomize was refused, though it moves the traps' edge)."""
    htsr.Options.create(seed=7, bootstrap=20)
    htsr.Options.create(seed=7, randomize=True)
    W = np.random.default_rng(3).standard_normal((300, 100)).astype(np.float32)
    W[0, 0] = 20.0  # one large entry: its shuffled eigenvalue lies between 4 and 20 Tracy-Widom scales above the edge
    traps = [htsr.analyze({"fc.weight": W}, mp_fit=False, randomize=True, tw_margin=m).layers[0].num_traps
             for m in (4.0, 20.0)]
    assert traps == [1.0, 0.0]  # counts: exact (seeded shuffle; a 20-sigma entry at 4 TW scales is a trap, at 20 not)


def test_the_erg_tail_is_taken_over_the_space_the_weights_span():
    """A rank-150 layer of 300 columns: with its 150 zero eigenvalues in the mean, the ERG walk never drops
    below 0 over the nonzero ones and ended on λ = 0 (num_erg 151, erg_lambda_min 0: a LoRA row's was
    always rank + 1). The walk is over the nonzero spectrum, normalised to its own mean."""
    from htsr.rmt.setol import erg_tail

    rng = np.random.default_rng(7)
    W = (rng.standard_t(3, size=(600, 150)) @ rng.standard_normal((150, 300))).astype(np.float64)
    r = htsr.analyze({"fc.weight": W}, precision="accurate", keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    assert row.num_zero_evals == 150
    ref = erg_tail(sp.evals[150:])
    assert row.num_erg == ref.num_erg < 150 and row.erg_lambda_min == ref.erg_lambda_min > 0


def test_layers_csv_reads_back_with_the_tables_dtypes(tmp_path):
    """pd.read_csv guesses each column's dtype from its values: a count column without an empty cell came back
    int64 (float64 in to_pandas()), an all-empty text column float64. read_layers gives to_pandas()'s frame."""
    pd = pytest.importorskip("pandas")
    from htsr.results import read_layers

    rng = np.random.default_rng(3)
    r = htsr.analyze({"a.weight": rng.standard_normal((300, 100)), "b.weight": rng.standard_normal((20, 10)),
                      "c.weight": rng.standard_t(2, (400, 200))}, randomize=True)
    r.to_csv(tmp_path / "layers.csv")
    guessed = pd.read_csv(tmp_path / "layers.csv")
    assert (guessed.dtypes != r.to_pandas().dtypes).any()  # what the reader is for
    pd.testing.assert_frame_equal(read_layers(tmp_path / "layers.csv"), r.to_pandas())
    # what is no table of htsr's is a SourceError naming it (a UnicodeDecodeError, IsADirectoryError or
    # FileNotFoundError had escaped, and any CSV read as a table of one column)
    (tmp_path / "w.pt").write_bytes(b"\x80\x02garbage")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    lines = (tmp_path / "layers.csv").read_text().splitlines()
    (tmp_path / "newer.csv").write_text("\n".join([lines[0] + ",new_col"] + [t + ",1" for t in lines[1:]]) + "\n")
    for p, says in (("w.pt", "cannot read it as a layers.csv (UnicodeDecodeError"), (".", "IsADirectoryError"),
                    ("none.csv", "No such file or directory"), ("other.csv", "not a layers.csv htsr wrote"),
                    ("newer.csv", "columns this htsr does not know (new_col)")):
        with pytest.raises(htsr.SourceError, match=re.escape(says)):
            read_layers(tmp_path / p)


def test_a_tensor_read_once_for_several_rows_is_dropped_when_the_rows_it_was_kept_for_are_done(monkeypatch):
    """A fused expert stack is read once for its E rows, and (now) so is a conv for its kernel positions with
    --conv per_position: each position's row had read and converted the whole tensor again (49 reads of a 7x7
    conv). A --layers filter that keeps some experts had kept every whole stack alive to the end of the run
    (its other experts never took their part): 661 MiB against 214 MiB unfiltered, on 8 bf16 stacks."""
    import gc
    import importlib
    import weakref

    from htsr.matrices import SharedLoad

    ha = importlib.import_module("htsr.analyze")  # (the module: htsr.analyze is the function)

    loads, alive = [], []
    orig = ha.layer_matrices

    def counting(name, kind, shape, load, *a, **k):
        def counted():
            loads.append(name)
            arr = np.asarray(load())
            holder = type("Held", (np.ndarray,), {})  # a weakref-able view of the loaded tensor
            out = arr.view(holder)
            alive.append(weakref.ref(out))
            return out
        return orig(name, kind, shape, counted, *a, **k)

    monkeypatch.setattr(ha, "layer_matrices", counting)
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((64, 48, 3, 3)).astype(np.float32)
    r = htsr.analyze({"c.weight": conv}, conv="per_position", tails=False, workers=1)
    assert len(r.layers) == 9 and loads == ["c.weight"]  # one read for the nine positions
    loads.clear()
    experts = {f"l{i}.mlp.experts.down_proj": rng.standard_normal((4, 64, 48)).astype(np.float32) for i in range(3)}
    r = htsr.analyze(experts, layers=r"down_proj\[0\]$", tails=False, workers=1)
    assert [x.name for x in r.layers] == [f"l{i}.mlp.experts.down_proj[0]" for i in range(3)] and len(loads) == 3
    gc.collect()
    assert all(ref() is None for ref in alive)  # no stack kept past its one analysed expert
    # SharedLoad: released keys do not hold the value, and a later load does not wait for them
    s = SharedLoad(lambda: np.arange(4.0), range(4))
    s.release(1)
    s.release(2)
    assert s.take(0, lambda t: t[0]) == 0.0 and s._value is not None
    s.take(3, lambda t: t[3])
    assert s._value is None


@pytest.mark.parametrize("rank,refine", [(20, 0.95), (120, 0.5)])
def test_a_larger_refine_fraction_leaves_no_round_off_in_the_fit_or_the_rank(rank, refine):
    """With refine_fraction above its default, an unrefined float32 Gram may hold many eigenvalues below its
    floor: they are round-off. A rank-20 product had been fitted 'ok' (alpha 3.32 over 107 values, 87 of them
    noise) with 92 zeros, a rank-120 one fitted over 160 values with 38 zeros; the float64 path's answer is
    the same matrix's: 20 / 120 values above the floor, 180 / 80 zeros."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((300, rank)) @ rng.standard_normal((rank, 200))).astype(np.float32)
    want = htsr.analyze({"fc.weight": W}, precision="accurate").layers[0]
    got = htsr.analyze({"fc.weight": W}, refine_fraction=refine).layers[0]
    assert got.eig_method == "gram32" and got.num_evals_below_floor == 200 - rank
    assert (got.num_zero_evals, got.num_fit_evals) == (want.num_zero_evals, want.num_fit_evals) == (200 - rank, rank)
    assert got.status.split(" above")[0] == want.status.split(" above")[0]
    # the rank says so too: the round-off is no rank (it had been full, 200, beside 180 zeros and rank-collapse)
    assert got.matrix_rank == rank


def test_a_larger_refine_fraction_counts_as_zeros_those_below_their_own_matrixs_floor():
    """A pooled conv whose kernel positions differ in scale: with refine_fraction 0.9 the round-off left
    unrefined (a rank-5 position's 43 below its floor) had been counted against the pooled layer's largest
    floor, taking the full-rank position's real eigenvalues for zeros too (a Silero conv: 93 zeros for 55)."""
    rng = np.random.default_rng(1)
    K = np.empty((64, 48, 1, 2), np.float32)
    K[:, :, 0, 0] = rng.standard_normal((64, 48))
    K[:, :, 0, 1] = 1e3 * (rng.standard_normal((64, 5)) @ rng.standard_normal((5, 48)))
    row = htsr.analyze({"conv.weight": K}, refine_fraction=0.9, min_evals=20).layers[0]
    assert row.eig_method == "gram32" and row.num_evals_below_floor == 43
    assert row.num_zero_evals == 43 and row.matrix_rank == 96 - 43
    # one position's round-off (3 % of its eigenvalues) is 0.3 % of the pooled layer's: the rank, by matrix, had left
    # its 10 out while the zeros, by the pooled share, counted 3
    n = 200
    C = rng.standard_normal((n, n, 3, 3)).astype(np.float32)
    C[:, :, 0, 0] = rng.standard_normal((n, 194)) @ rng.standard_normal((194, n)) / np.sqrt(194)
    row = htsr.analyze({"conv.weight": C}, refine_fraction=0.5).layers[0]
    assert row.eig_method == "gram32" and 9 * n - 12 <= row.matrix_rank < 9 * n  # (its 6 zeros, ~10 below its floor)
    assert row.num_zero_evals == 9 * n - row.matrix_rank


def test_farms_cuts_no_windows_for_a_row_that_is_never_fitted(monkeypatch):
    """A depthwise conv [1024, 1, 7, 7] (49 eigenvalues, M = 1) is not fitted with or without --farms-aspect;
    its 50 176 windows of 1 x 1 had been cut and eigen-solved anyway (0.01 s -> 3.8 s per such layer)."""
    import importlib

    ha = importlib.import_module("htsr.analyze")
    cut = []
    orig = ha.aspect_windows
    monkeypatch.setattr(ha, "aspect_windows", lambda W, a: cut.append(W.shape) or orig(W, a))
    rng = np.random.default_rng(0)
    src = {"dw.weight": rng.standard_normal((1024, 1, 7, 7)).astype(np.float32),
           "head.weight": rng.standard_normal((40, 30)).astype(np.float32)}  # 30 eigenvalues < min_evals
    plain = htsr.analyze(src)
    farms = htsr.analyze(src, farms_aspect=1.0)
    assert cut == [] and [r.status for r in farms.layers] == [r.status for r in plain.layers]


def test_a_partly_refined_pooled_conv_counts_the_zeros_of_its_refined_part_only():
    """A conv whose centre position is rank 100 (its 156 other eigenvalues exact zeros, refined) beside random
    positions (float32, unrefined): the refined zeros are below the pooled floor, and that floor had been taken
    for round-off of the float32 parts too (fast 165 zeros, accurate 156). Both paths count 156 now."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((256, 256, 3, 3)).astype(np.float32) * 0.05
    W[:, :, 1, 1] = (rng.standard_normal((256, 100)) @ rng.standard_normal((100, 256))).astype(np.float32) * 0.05
    rows = [htsr.analyze({"features.0.weight": W}, precision=p, tails=False).layers[0] for p in ("fast", "accurate")]
    assert "+" in rows[0].eig_method  # partly refined
    assert [r.num_zero_evals for r in rows] == [156, 156]
    assert rows[0].num_fit_evals == rows[1].num_fit_evals


@pytest.mark.parametrize("options", [{"evals_floor": "numerical"}, {"scale": 1e-3}])
def test_each_kernel_position_of_a_pooled_conv_is_cut_at_its_own_floor(options):
    """Silero's conv4 has positions of λ_max 0.44, 1785 and 0.40: the pooled floor 4·√64·ε₃₂·1785 = 6.8e-3, the
    loudest position's, had cut 66 of the quiet positions' 128 eigenvalues, which their own Grams resolve 300×
    above their floors (fitted 126 of 192 with --evals-floor numerical, or at λ_max < 1e-2, where the layer's own
    floor replaces 1e-5). Chosen spectra: two quiet positions with eigenvalues 1e-3..0.4, one loud up to 1800."""
    quiet = np.sqrt(np.geomspace(1e-3, 0.4, 64))
    W = np.stack([matrix_with_singular_values(quiet, 128, 64, seed=1),
                  matrix_with_singular_values(np.sqrt(np.geomspace(1.0, 1800.0, 64)), 128, 64, seed=2),
                  matrix_with_singular_values(quiet, 128, 64, seed=3)], axis=-1).astype(np.float32)
    W *= options.pop("scale", 1.0)
    row = htsr.analyze({"conv.weight": W}, **options, tails=False).layers[0]
    accurate = htsr.analyze({"conv.weight": W}, **options, precision="accurate", tails=False).layers[0]
    assert row.eig_method == "gram32" and row.num_evals_below_floor == 0
    assert row.num_fit_evals == accurate.num_fit_evals == 192  # every eigenvalue is above its own floor
    assert row.alpha == pytest.approx(accurate.alpha, rel=1e-4)  # (float32 Gram against float64 SVD)



def test_farms_counts_a_pooled_convs_eigenvalues_each_above_its_own_floor():
    """FARMS checks that the whole layer has min_evals eigenvalues above the floor before fitting its windows:
    that count had used the loudest kernel position's floor ('not_fitted: 38 of 80 eigenvalues above the floor
    0.00384', beside 560 fitted window values) where every one is above its own (80, as without FARMS)."""
    q = np.sqrt(np.geomspace(1e-4, 0.02, 20))
    W = np.stack([matrix_with_singular_values(q, 128, 20, seed=1), matrix_with_singular_values(q, 128, 20, seed=5),
                  matrix_with_singular_values(np.sqrt(np.geomspace(1.0, 1800.0, 20)), 128, 20, seed=2),
                  matrix_with_singular_values(q, 128, 20, seed=3)], axis=-1).astype(np.float32)
    for precision in ("fast", "accurate"):
        row = htsr.analyze({"conv.weight": W}, evals_floor="numerical", farms_aspect=1.0, precision=precision,
                           tails=False).layers[0]
        assert row.status == "ok" and row.num_fit_evals == 560


def test_a_zero_kernel_position_is_a_skipped_row_not_a_failed_layer():
    """An STFT basis [258, 1, 256] windowed by a Hann window, whose first tap is 0 (Silero's stft conv): with
    --conv per_position its position [0] is an all-zero 258 x 1 matrix, which had been 'failed: all-zero
    matrix' where the pooled run has no failure. A whole all-zero layer is still a failed one."""
    n = np.arange(256)
    basis = np.cos(np.outer(np.arange(258), n) * np.pi / 256) * (0.5 - 0.5 * np.cos(2 * np.pi * n / 256))
    rows = htsr.analyze({"stft.weight": basis[:, None, :].astype(np.float32)}, conv="per_position").layers
    assert rows[0].status == "skipped: an all-zero kernel position (a zero tap of the filter)"
    assert not any(r.status.startswith("failed") for r in rows)
    assert htsr.analyze({"fc.weight": np.zeros((64, 64))}).layers[0].status == "failed: all-zero matrix"


def test_a_fit_that_could_not_be_made_counts_as_not_fitted():
    """A fixed x_min above every eigenvalue gives 'fit_failed: fewer than 2 eigenvalues above the fixed xmin':
    the layer is fine, no fit could be made. The summary (and the CLI line) had counted it as failed, with the
    NaN-weight layers."""
    W = np.random.default_rng(0).standard_normal((300, 100))
    r = htsr.analyze({"a.weight": W, "b.weight": W[:, :60]}, xmin=1e6)
    assert all(x.status.startswith("fit_failed: fewer than 2 eigenvalues above the fixed xmin") for x in r.layers)
    assert (r.summary.num_not_fitted, r.summary.num_failed) == (2, 0)


def test_a_wholly_zero_conv_is_failed_per_position_as_pooled():
    """guided-diffusion's zero_module convs in an initial checkpoint are all zero: pooled, one 'failed: all-zero
    matrix' row; per position they had become nine 'skipped' zero taps (num_failed 0). A zero tap is a zero
    position of a nonzero filter only."""
    src = {"out.weight": np.zeros((64, 32, 3, 3), np.float32)}
    assert htsr.analyze(src).layers[0].status == "failed: all-zero matrix"
    rows = htsr.analyze(src, conv="per_position").layers
    assert len(rows) == 9 and all(r.status.startswith("failed: all-zero matrix") for r in rows)


def test_an_attention_mask_kept_as_a_tensor_is_skipped_not_failed():
    """CLIP's causal mask (0 on and below the diagonal, −inf above), a plain tensor attribute that torch.jit.trace
    freezes into a constant, had been a dense row 'failed: NaN or Inf in the weights' and counted as a failure.
    A weight with an Inf among real values still fails."""
    mask = np.triu(np.full((77, 77), -np.inf, dtype=np.float32), 1)
    W = np.random.default_rng(0).standard_normal((77, 77)).astype(np.float32)
    W[3, 5] = np.inf
    diverged = np.full((64, 64), -np.inf, dtype=np.float32)  # (no mask: a position always sees itself)
    dead = np.where(np.random.default_rng(1).random((64, 64)) < 0.5, 0.0, -np.inf).astype(np.float32)
    r = htsr.analyze({"attn_mask": mask, "fc.weight": W, "fc1.weight": diverged, "fc2.weight": dead})
    assert [l.status for l in r.layers] == ["skipped: an attention mask (entries 0 and −inf), not a weight"] + [
        "failed: NaN or Inf in the weights"] * 3
    assert (r.summary.num_skipped, r.summary.num_failed) == (1, 3)


def test_a_causal_mask_of_ones_kept_as_a_buffer_is_skipped_not_fitted():
    """nanoGPT's and "Let's build GPT"'s register_buffer('tril', torch.tril(torch.ones(T, T))), one per head: each had
    been a dense row fitted at alpha 1.54, 'over-trained', pulling the model's mean alpha down. A triangle of ones
    (below or above the diagonal) is skipped as a mask now; a weight that only looks like one at its corners, or a
    triangle of other values, is analysed."""
    T = 128
    tril = np.tril(np.ones((T, T), np.float32))
    near = tril.copy()
    near[70, 20] = 0.5  # (the four corners of a mask, and not one)
    scaled = 0.1 * np.tril(np.random.default_rng(0).standard_normal((T, T))).astype(np.float32)
    scaled[0, 0] = scaled[-1, -1] = scaled[-1, 0] = 1.0
    r = htsr.analyze({"h0.tril": tril, "h1.mask": np.triu(np.ones((T, T))), "near.weight": near,
                      "lower.weight": scaled})
    assert [(l.name, l.status.split(":")[0]) for l in r.layers] == [
        ("h0.tril", "skipped"), ("h1.mask", "skipped"), ("near", "ok"), ("lower", "ok")]
    assert r.layers[0].status == "skipped: a causal mask (a triangle of ones), not a weight"


def test_csv_tables_round_trip_names_with_carriage_returns(tmp_path):
    # a tensor name holding '\r' (a model file may name anything): Python < 3.13's csv writer left it unquoted,
    # and every reader took it for a line break (13 rows read back for 12; read_layers raised)
    import csv
    from htsr.compare import compare
    from htsr.results import read_layers

    pd = pytest.importorskip("pandas")
    W = np.random.default_rng(0).standard_normal((120, 80)).astype(np.float32)
    names = ["a\rb.weight", "c\r\nd.weight", 'q"uote,comma\n.weight', "plain.weight"]
    r = htsr.analyze({n: W * (i + 1) for i, n in enumerate(names)})
    r.to_csv(tmp_path / "layers.csv")
    with open(tmp_path / "layers.csv", newline="", encoding="utf-8") as f:
        assert [row[0] for row in csv.reader(f)][1:] == [x.name for x in r.layers]
    back = read_layers(tmp_path / "layers.csv")
    assert list(back["name"]) == [x.name for x in r.layers] and back["alpha"].tolist() == [x.alpha for x in r.layers]
    assert pd.read_csv(tmp_path / "layers.csv", keep_default_na=False)["name"].tolist() == [x.name for x in r.layers]
    c = compare([{n: W for n in names}, {n: 2 * W for n in names}], labels=["x", "y"])
    c.to_csv(tmp_path / "cmp.csv")
    with open(tmp_path / "cmp.csv", newline="", encoding="utf-8") as f:
        assert sorted(row[0] for row in list(csv.reader(f))[1:]) == sorted(x.name for x in r.layers)


def test_two_runs_of_one_analysis_are_equal_nan_and_all():
    # the dataclasses' == compared NaN fields, which nearly every row has, as unequal: a result was not equal to
    # itself run again, nor to its own pickled copy
    import copy
    import pickle

    m = _mapping(3)
    m["bad.weight"] = np.full((60, 50), np.nan, dtype=np.float32)
    a, b = htsr.analyze(m, keep_spectra=True), htsr.analyze(m, keep_spectra=True)
    assert a == b and a == pickle.loads(pickle.dumps(a)) and a.layers[0] == copy.deepcopy(a.layers[0])
    assert a.summary == b.summary and a.spectra == b.spectra
    assert {a.layers[0], b.layers[0]} == {a.layers[0]}  # rows stay hashable, equal ones alike
    c = htsr.analyze({**m, next(iter(m)): 2 * next(iter(m.values()))}, keep_spectra=True)
    assert a != c and a.layers[0] != c.layers[0] and a.layers[-1] == c.layers[-1]
    assert a.layers[0] != a.layers[0].as_dict()  # another type: not equal


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_a_thread_analyses_can_analyse():
    # the analysis lock, held for a whole analysis, was inherited held by a thread the child does not have: the
    # child's own analysis hung (multiprocessing's fork start, Linux's default before Python 3.14)
    import multiprocessing as mp
    import threading

    analyze_module = sys.modules["htsr.analyze"]  # (htsr.analyze is the function)

    m = {f"l{i}.weight": np.random.default_rng(i).standard_normal((200, 100)).astype(np.float32) for i in range(3)}
    inside, done = threading.Event(), threading.Event()
    real, parent = analyze_module._analyze_layer, os.getpid()

    def held(lm, opts):  # a layer that lasts until the fork is over: the lock is held when the child is made
        if os.getpid() == parent:  # (the child, forked with this in place, analyses for real)
            inside.set()
            done.wait(120)
        return real(lm, opts)

    analyze_module._analyze_layer = held
    t = threading.Thread(target=htsr.analyze, args=(m,))
    t.start()
    try:
        assert inside.wait(60)
        with mp.get_context("fork").Pool(1) as pool:
            r = pool.apply_async(_child_analysis)
            try:
                assert r.get(timeout=60) == "ok"
            finally:
                pool.terminate()
    finally:
        analyze_module._analyze_layer = real
        done.set()
        t.join()


def _child_analysis() -> str:
    return htsr.analyze({"x.weight": np.random.default_rng(0).standard_normal((100, 80))}).layers[0].status


def test_entropy_is_normalised_by_the_matrix_rank():
    """entropy = −Σ p ln p / ln R, p = λ/Σλ, R the matrix rank: a rank-50 layer of 150 eigenvalues is normalised by
    ln 50 (by ln 150, the count, it would read 0.73 for 0.93)."""
    rng = np.random.default_rng(0)
    L = rng.standard_normal((200, 50)) @ rng.standard_normal((50, 150))
    row = htsr.analyze({"a.weight": L}, precision="accurate").layers[0]
    ev = np.linalg.svd(L, compute_uv=False) ** 2
    assert row.matrix_rank == np.linalg.matrix_rank(L) == 50
    p = ev[:50] / ev.sum()
    assert row.entropy == pytest.approx(-np.sum(p * np.log(p)) / math.log(50), rel=1e-9)  # (the 100 zeros: ~1e-28)


# ------------------------------------------------------------- known answers each line is held to
# (each test below fails for a one-point change of the code it names: a mutation the suite had let through)


def test_a_tensorflow_layout_conv_kernel_read_by_name_is_read_as_torchs():
    """A [kh, kw, c_in, c_out] kernel (a TF / Keras export in a dict, .npz or state dict) had been read as kh
    output and kw input channels of a c_in x c_out 'kernel': 8192 matrices of 3 x 3, every number wrong. Where
    only its leading axes can be a kernel's, it is read as torch's [c_out, c_in, kh, kw]: the same rows exactly;
    where either layout can be a kernel's, torch's is taken."""
    from htsr.tensors import channels_last_conv

    rng = np.random.default_rng(0)
    for tf, name in (((3, 3, 64, 128), "features.conv.weight"), ((7, 7, 3, 64), "stem.conv.w"),
                     ((3, 3, 16, 32), "block1.weight"), ((3, 64, 96), "conv1d.weight")):
        k = rng.standard_t(3, size=tf).astype(np.float32)
        order = (3, 2, 0, 1) if len(tf) == 4 else (2, 1, 0)
        got = htsr.analyze({name: k}, min_evals=20).layers[0]
        ref = htsr.analyze({name: np.ascontiguousarray(k.transpose(order))}, min_evals=20).layers[0]
        assert got.shape == ref.shape == "x".join(str(tf[i]) for i in order), name
        assert (got.num_matrices, got.status) == (ref.num_matrices, "ok") and got.alpha == ref.alpha, name  # exactly
    for torch_layout in ((8, 3, 7, 7), (64, 3, 7, 7), (32, 32, 1, 7), (16, 1, 3, 3), (3, 3, 16, 16), (1, 1, 7, 5),
                         # a torch Conv1d of up to 32 outputs and more inputs: its last axis a kernel's (it had been
                         # read as [k, c_in, c_out]: Conv1d(256, 32, 5) as 32 matrices of 5 x 256)
                         (32, 256, 5), (1, 96, 7), (16, 64, 3)):
        assert channels_last_conv("conv.weight", torch_layout) is None, torch_layout
    assert channels_last_conv("moe.experts_kernel", (8, 256, 128)) is None  # an expert stack
    assert channels_last_conv("attention_output/kernel", (8, 64, 256)) is None  # Keras' EinsumDense, not a conv1d
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv1d(256, 32, 5)
    live = htsr.analyze(conv, min_evals=20).layers[0]
    saved = htsr.analyze({k: v.detach().numpy() for k, v in conv.state_dict().items()}, min_evals=20).layers[0]
    assert (saved.shape, saved.N, saved.M, saved.num_matrices) == (live.shape, 256, 32, 5) == (
        "32x256x5", 256, 32, 5) and saved.alpha == live.alpha
    assert channels_last_conv("blocks.0.weight", (8, 16, 64, 3)) is None  # not named a conv: no kernel either way
    assert channels_last_conv("eca.conv.weight", (1, 1, 33)) is None  # a vector in a conv's broadcast shape
    assert channels_last_conv("conv/kernel:0", (1, 1, 64, 128)) == (3, 2, 0, 1)  # a pointwise TF conv


def test_classify_conv_kernel_boundaries():
    """A 3-D module weight is a conv1d kernel up to 32 taps (32 is one); a 4-D weight with any last axis over 32 is
    no convolution kernel."""
    from htsr.matrices import classify

    assert classify("encoder.0.weight", (64, 16, 32))[0] == "conv1d"
    assert classify("encoder.0.weight", (64, 16, 33))[0] != "conv1d"
    kind, why = classify("blocks.0.weight", (8, 16, 64, 3))
    assert kind is None and "no convolution kernel" in why
    # 4-D: a 32 x 32 kernel is one (CLIP ViT-B/32's patch_embedding [768, 3, 32, 32], no 'conv' in its name)
    assert classify("vision_model.embeddings.patch_embedding.weight", (768, 3, 32, 32)) == ("conv2d", "")
    assert classify("vision_model.embeddings.patch_embedding.weight", (768, 3, 33, 33))[0] is None
    # 5-D: every kernel axis at most 32, the first of them included
    assert classify("vol.weight", (8, 4, 3, 3, 3)) == ("conv3d", "")
    assert classify("vol.weight", (8, 4, 64, 3, 3))[0] is None
    # a one-channel conv weight in a vector's shape: a kernel axis of 32 is still a kernel's, 33 a vector's
    assert classify("eca.conv.weight", (1, 1, 32)) == ("conv1d", "")
    assert classify("eca.conv.weight", (1, 1, 33))[0] is None
    assert classify("grn.weight", (1, 1, 1, 32)) == ("conv2d", "")


@pytest.mark.parametrize("name,shape,kind", [
    ("layers.0.attn.q_norm.scale", (8, 64), None),  # a per-head norm's scale (Flax's name), 2-D
    ("layers.0.attn.q_norm.weight", (8, 64), None),
    ("layers.0.mixer.ssm_norm", (8, 64), None),  # a bare norm parameter (Mamba-2's, per group)
    ("transformer.wpe.weight", (1024, 768), "embedding"),  # GPT-2's position table
    ("transformer.wte.weight", (50257, 768), "embedding"),
    ("model.embed_tokens.weight", (32000, 4096), "embedding"),
    ("shared.weight", (32128, 512), "embedding"),  # T5's
    ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", (32, 8), "embedding"),
    ("model.layers.0.self_attn.q_proj.weight", (4096, 4096), "dense"),
    # a block-scale tensor left without its weight (in another shard): transformers' FP8 experts name theirs
    # <weight>_scale_inv, [E, out/128, in/128]; not a stack of matrices
    ("model.layers.3.mlp.experts.gate_up_proj_scale_inv", (8, 16, 32), None),
    ("model.layers.3.mlp.experts.down_proj.weight_scale_inv", (8, 32, 16), None),
])
def test_classify_names_of_norms_and_embedding_tables(name, shape, kind):
    """The name rules' known cases (the regexes' comments in htsr.tensors name their models)."""
    from htsr.tensors import classify

    assert classify(name, shape)[0] == kind


def test_farms_window_side_is_not_lost_to_binary_rounding():
    """w_M = ⌊N / aspect⌋ taken on the decimal quotient: 110 / 2.2 is 49.99999999999999 in binary (⌊⌋ 49)."""
    from htsr.matrices import aspect_window_shape

    assert aspect_window_shape(110, 50, 2.2) == (110, 50)
    assert aspect_window_shape(33, 30, 1.1) == (33, 30)


def test_conv1d_eigenvalues_are_not_scaled_as_weightwatcher_scales_conv2d():
    """WeightWatcher's ½·k scale is for Conv2d only: a Conv1d's pooled ESD is its kernel positions' own squared
    singular values (numpy's SVD), its log_norm log10 Σ W²."""
    W = np.random.default_rng(0).standard_normal((64, 32, 5))
    row = htsr.analyze({"c1.weight": W}, precision="accurate", min_evals=5).layers[0]
    assert row.kind == "conv1d"
    want = max(np.linalg.svd(W[:, :, p], compute_uv=False)[0] ** 2 for p in range(5))
    assert row.lambda_max == pytest.approx(want, rel=1e-12)  # (float64 SVDs: rounding)
    assert row.log_norm == pytest.approx(math.log10(np.sum(W**2)), rel=1e-12)


def test_an_all_zero_one_by_one_conv_is_an_all_zero_matrix():
    """A 1 × 1 conv has one kernel position: all zero, it is an all-zero matrix (failed), not a zero tap among
    others (skipped)."""
    row = htsr.analyze({"c.weight": np.zeros((8, 4, 1, 1))}).layers[0]
    assert row.status == "failed: all-zero matrix"


def test_farms_xmin_is_the_whole_matrix_eigenvalue_at_the_tail_share_the_windows_found():
    """With overlapping windows the fit's tail share among the windows' eigenvalues maps back to the layer's own:
    farms_xmin = ev[−round(num_pl_spikes · M / num_fit_evals)] of the layer's ESD (numpy's SVD)."""
    W = np.random.default_rng(3).standard_t(3, (300, 100))
    row = htsr.analyze({"fc.weight": W}, farms_aspect=2.1, precision="accurate").layers[0]
    ev = np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    assert row.farms_windows == 2 and row.num_fit_evals > 100
    k = int(round(row.num_pl_spikes * 100 / row.num_fit_evals))
    assert row.farms_xmin == pytest.approx(ev[-k], rel=1e-9)  # (the same eigenvalue from another SVD)
    # SETOL's inverse-MP quality spans the layer's own tail [farms_xmin, lambda_max], not the windows' x_min
    # (rel 1e-12: the same floats through log10)
    assert row.farms_xmin != row.xmin
    assert row.logq_inverse_mp == pytest.approx(
        2 * row.alpha * (math.log10(row.lambda_max) - math.log10(row.farms_xmin)), rel=1e-12)


def test_a_coarse_storage_counts_zeros_only_under_a_gap(tmp_path):
    """A layer stored coarser than float32: its eigenvalues under twice the noise edge of its rounding are zeros
    only when a gap (ROUNDING_GAP) parts them from the rest. A full-rank square layer in FP8 or float16 has small
    eigenvalues running on through that floor (no gap): none is a zero (16 had been, without the gap's test); a
    rank-10 product of 200 × 150 in bfloat16 has its 140 null directions there."""
    import ml_dtypes
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    low = rng.standard_normal((200, 10)) @ rng.standard_normal((10, 150))
    sq = rng.standard_normal((256, 256))
    save_file({"r10.weight": low.astype(ml_dtypes.bfloat16), "sq.weight": sq.astype(np.float16),
               "e4.weight": sq.astype(ml_dtypes.float8_e4m3fn), "f32.weight": low.astype(np.float32)},
              str(tmp_path / "m.safetensors"))
    rows = {r.name: r for r in htsr.analyze(tmp_path / "m.safetensors").layers}
    assert rows["sq"].num_zero_evals == 0 and rows["e4"].num_zero_evals == 0
    assert rows["r10"].num_zero_evals == 140
    # the MP fit leaves those zeros out as it does a float32 layer's exact ones: the same fit as the float32 copy
    # (rel 1e-3: bfloat16's rounding moves the 10 nonzero eigenvalues by ~2^-8 of theirs at most; fitted with the
    # rounding zeros as a bulk, sigma had been 0.0046 against 10.6, with 18 spikes)
    assert rows["r10"].mp_sigma == pytest.approx(rows["f32"].mp_sigma, rel=1e-3)
    assert rows["r10"].num_spikes == rows["f32"].num_spikes == 0
    # not fitted, with or without FARMS' windows, and the floor that cut its eigenvalues named
    why = "eigenvalues above the floor 0.0701 (the rounding of the weights' storage, under a gap) < min_evals=50"
    assert rows["r10"].status == f"not_fitted: 10 of 150 {why}"
    farms = htsr.analyze(tmp_path / "m.safetensors", farms_aspect=2.0, layers="r10").layers[0]
    assert farms.status == f"not_fitted: 10 of 150 {why} (the windows of --farms-aspect only repeat them)"


def test_bfloat16_or_float16_values_held_wider_keep_their_rounding_floor():
    """The same values get the same verdict in any container: a rank-5 layer's bfloat16 values held as float32
    (``.float()``, a checkpoint saved after it) or float64 had their 95 rounding eigenvalues fitted as a heavy tail
    (alpha 1.36, 'over-trained'), though stored as bfloat16 they are zeros under a gap. A float32-trained matrix,
    on no coarser grid, keeps float32's floor."""
    import ml_dtypes
    from htsr.analyze import grid_roundoff

    rng = np.random.default_rng(5)
    low = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 100))
    bf16 = low.astype(ml_dtypes.bfloat16)
    rows = [htsr.analyze({"w.weight": W}).layers[0] for W in (bf16, bf16.astype(np.float32), bf16.astype(np.float64))]
    assert rows[0].num_zero_evals == 95 and rows[0].phase == "rank-collapse" and math.isnan(rows[0].alpha)
    for r in rows[1:]:
        assert (r.status, r.num_zero_evals, r.phase, r.warning) == (rows[0].status, 95, "rank-collapse", "")
    # float16 values: float16's roundoff, 2^-11, from float32's 13 low bits or float64's 42 being zero
    f16 = (low / 10).astype(np.float16)
    assert grid_roundoff([f16.astype(np.float32)]) == grid_roundoff([f16.astype(np.float64)]) == 2.0 ** -11
    assert grid_roundoff([bf16.astype(np.float32), bf16.astype(np.float32).T]) == 2.0 ** -8  # (a view too)
    assert grid_roundoff([low.astype(np.float32)]) == grid_roundoff([low]) == 0.0
    assert grid_roundoff([bf16.astype(np.float32), low.astype(np.float32)]) == 0.0  # every matrix of the layer
    # one mantissa bit finer than each grid is off it: 1 + 2^-11 is no float16 (10 bits), 1 + 2^-8 no bfloat16 (7)
    # but a float16
    assert grid_roundoff([np.full((4, 4), 1 + 2.0 ** -11, np.float32)]) == 0.0
    assert grid_roundoff([np.full((4, 4), 1 + 2.0 ** -8, np.float64)]) == 2.0 ** -11
    # a transposed view is read in blocks of its rows, not copied whole (a transposed ONNX weight's had been)
    wide = np.ascontiguousarray(np.tile(bf16.astype(np.float32), (1, 40)))  # 300 x 4000
    assert grid_roundoff([wide.T]) == 2.0 ** -8 and grid_roundoff([np.tile(low.astype(np.float32), (1, 40)).T]) == 0


def test_farms_windows_of_a_coarse_storage_leave_out_its_rounding_too(tmp_path):
    """A rank-60 200 x 150 layer in bfloat16: its 90 rounding eigenvalues are zeros under a gap, and so are its
    FARMS windows' (two windows, 200 x 100 at aspect 2 or 150 x 150 at 1, each of rank 60: 120 fitted, not
    200 or 297), cut at the same rounding's edge on their sides. A full-rank layer keeps all of its windows'."""
    import ml_dtypes
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    low = rng.standard_t(4, (200, 60)) @ rng.standard_normal((60, 150))
    full = rng.standard_t(4, (200, 150))
    save_file({"r60.weight": low.astype(ml_dtypes.bfloat16), "full.weight": full.astype(ml_dtypes.bfloat16)},
              str(tmp_path / "m.safetensors"))
    whole = {r.name: r for r in htsr.analyze(tmp_path / "m.safetensors").layers}
    assert whole["r60"].num_zero_evals == 90 and whole["r60"].num_fit_evals == 60
    for aspect, windows in ((2.0, 2), (1.0, 2)):
        rows = {r.name: r for r in htsr.analyze(tmp_path / "m.safetensors", farms_aspect=aspect).layers}
        assert rows["r60"].farms_windows == windows and rows["r60"].num_fit_evals == 60 * windows, aspect
        assert rows["r60"].status == "ok"
        assert rows["full"].num_fit_evals == windows * (100 if aspect == 2.0 else 150), aspect
    # a window of small entries (columns 100-149 at 0.005 of the rest) has smaller rounding than that edge
    # assumes, and real eigenvalues under it (1.2e-3 to 7.9e-3 against ~4e-3): no gap, no cut. The float32
    # copy fits 120 window eigenvalues; the bfloat16 one keeps each of them (it had cut 7)
    U, V = rng.standard_normal((200, 60)), rng.standard_normal((150, 60))
    weak = U @ V.T / np.sqrt(60)
    weak[:, 100:] *= 0.005
    save_file({"w.weight": weak.astype(np.float32)}, str(tmp_path / "f32.safetensors"))
    save_file({"w.weight": weak.astype(ml_dtypes.bfloat16)}, str(tmp_path / "bf16.safetensors"))
    f32, bf16 = (htsr.analyze(tmp_path / f"{n}.safetensors", farms_aspect=2.0).layers[0] for n in ("f32", "bf16"))
    assert f32.num_fit_evals == 120 and bf16.num_fit_evals >= 120


def test_the_storage_rounding_floor_is_its_closed_form():
    """_rounding_zeros' floor is twice the MP edge of noise whose rms is u/√3 of the entries' (each entry off
    by up to u of its size, uniformly), the entries' mean square Σλ/(matrices·rows·cols) with the spectrum's
    scale divided out; it counts when ROUNDING_MIN_ZEROS or more eigenvalues lie under it with a gap above."""
    from types import SimpleNamespace

    from htsr.analyze import ROUNDING_GAP, ROUNDING_MIN_ZEROS, _rounding_zeros

    u, rows, cols, n, scale = 2.0 ** -8, 64, 32, 3, 0.5  # bfloat16's unit roundoff; 3 pooled 64 x 32 matrices
    lm = SimpleNamespace(kind="conv2d", resolution=None, storage_eps=u, num_matrices=n, rows=rows, cols=cols)
    big = np.linspace(50.0, 400.0, 12)  # 4 directions per matrix

    def floor_of(ev):
        rms = u / math.sqrt(3) * math.sqrt(ev.sum() / scale / (n * rows * cols))
        return 2 * scale * (rms * (math.sqrt(rows) + math.sqrt(cols))) ** 2

    near = floor_of(big)  # the small eigenvalues move the sum by < 1e-5 of it
    under = near * np.linspace(0.01, 0.9, n * cols - big.size)  # the other 84 eigenvalues, all under it
    ev = np.sort(np.concatenate([under, big]))
    assert big[0] >= ROUNDING_GAP * floor_of(ev) > under[-1]  # (a gap: 50 against ~1.7e-3)
    # the same float64 operations in another order: a few ulps
    assert _rounding_zeros(ev, lm, scale) == pytest.approx(floor_of(ev), rel=1e-12)
    # fewer than ROUNDING_MIN_ZEROS under the floor: no zeros; exactly that many: zeros
    few = np.sort(np.concatenate([under[:ROUNDING_MIN_ZEROS - 1], big]))
    exact = np.sort(np.concatenate([under[:ROUNDING_MIN_ZEROS], big]))
    assert _rounding_zeros(few, lm, scale) == 0.0
    assert _rounding_zeros(exact, lm, scale) == pytest.approx(floor_of(exact), rel=1e-12)  # as above
    # an update known by its factors has an exact product: no floor
    assert _rounding_zeros(ev, SimpleNamespace(**{**vars(lm), "kind": "lora"}), scale) == 0.0


def test_min_evals_is_the_least_count_fitted():
    """A layer of exactly min_evals eigenvalues is fitted, one fewer is not (a LoRA update likewise by its
    nonzero eigenvalues: test_peft)."""
    rng = np.random.default_rng(2)
    W = rng.standard_t(3.0, size=(120, 50))
    rows = {r.name: r for r in htsr.analyze({"at.weight": W, "under.weight": W[:, :49]}).layers}
    assert rows["at"].num_evals == 50 and rows["at"].status == "ok"
    assert rows["under"].status == "not_fitted: 49 eigenvalues < min_evals=50"


# ------------------------------------------------------------------------- mutation round 7: known answers


def test_a_layer_of_exactly_max_evals_eigenvalues_is_analysed():
    """max_evals is the most eigenvalues analysed: a 300 x 100 layer is fitted with max_evals=100, skipped with
    99 (the distances likewise: test_compare)."""
    W = np.random.default_rng(0).standard_normal((300, 100))
    assert htsr.analyze({"fc.weight": W}, max_evals=100).layers[0].status == "ok"
    assert htsr.analyze({"fc.weight": W}, max_evals=99).layers[0].status == "skipped: 100 eigenvalues > max_evals=99"


def test_normalize_by_N_divides_the_ww_floor_by_N_not_M():
    """WeightWatcher's 1e-5 floor is in the units of X = WᵀW; normalize='N' divides the eigenvalues by N, so the
    floor too by N (= 300 here, not M = 100). Eigenvalues 1e-7 … 10 of a 300 x 100 layer: with either
    normalisation the fit keeps the 75 above 1e-5 (in X's units), with the same alpha (/M had kept 69)."""
    lam = np.logspace(-7, 1, 100)
    W = matrix_with_singular_values(np.sqrt(lam), 300, 100, seed=0)
    rows = [htsr.analyze({"fc.weight": W}, normalize=n, precision="accurate").layers[0] for n in ("none", "N")]
    assert rows[0].num_fit_evals == rows[1].num_fit_evals == np.sum(lam > 1e-5) == 75
    # the same float64 SVD, times 1/N after: alpha sees the ratios, off by ~1 ulp (1e-9: ample)
    assert rows[1].alpha == pytest.approx(rows[0].alpha, rel=1e-9)


def test_farms_xmin_rounds_the_tail_share_to_the_nearest_eigenvalue():
    """farms_xmin = ev[−round(num_pl_spikes · whole / num_fit_evals)], ``whole`` the layer's eigenvalues above
    its floor (all 100 of this full-rank 500 x 100 layer; its 5 square windows pool 500): here 13 · 100 / 500
    = 2.6, rounded to 3 (truncated to 2 it had been the next eigenvalue up). The eigenvalues are the row's own
    (keep_spectra), so the comparison is exact."""
    g = np.random.default_rng(0)
    W = g.standard_normal((500, 100)) @ np.diag(np.geomspace(1, 20, 100)) / 10
    r = htsr.analyze({"fc.weight": W}, farms_aspect=1.0, keep_spectra=True)
    row, ev = r.layers[0], r.spectra[0].evals
    assert row.farms_windows == 5 and row.num_fit_evals == 500 and ev[0] > 1e-3  # every eigenvalue above 1e-5
    k = row.num_pl_spikes * 100 / row.num_fit_evals
    assert k % 1 >= 0.5  # a share whose rounding is not its truncation (2.6 here)
    assert row.farms_xmin == ev[-round(k)]


def test_a_pooled_conv_reads_its_spikes_as_its_positions_do():
    """The phase's heavy-entry rule (bulk-decay when entries past the BBP cut drive a few spikes) asks whether a
    spike's singular vectors sit on those entries; a spread low-rank spike's own large entries do not count. A
    pooled conv had kept the rule without that question: a rank-1 spike at amp 20 spread over every kernel position
    of a 128x128x3x3 conv was bulk-decay, one of its positions alone, a dense 128 x 128 layer, bulk+spikes. Both are
    bulk+spikes now; an entry that drives a spike in one position makes the pooled conv bulk-decay, as it does
    that position alone."""
    g = np.random.default_rng(0)
    W = g.standard_normal((128, 128, 3, 3))
    u, v = g.standard_normal(128), g.standard_normal(128)
    u /= np.linalg.norm(u)
    v /= np.linalg.norm(v)
    spread = W + 20 * np.sqrt(128) * np.outer(u, v)[:, :, None, None]
    conv = htsr.analyze({"conv.weight": spread.astype(np.float32)}).layers[0]
    assert conv.num_matrices == 9 and conv.num_spikes == 9 and conv.num_heavy_entries > 0
    assert conv.phase == "bulk+spikes"
    one = htsr.analyze({"fc.weight": spread[:, :, 1, 1].astype(np.float32)}).layers[0]
    assert one.num_spikes == 1 and one.num_heavy_entries > 0 and one.phase == "bulk+spikes"
    planted = W.copy()
    planted[5, 7, 2, 0] = 60.0  # one entry of one position: a spike whose vectors sit on row 5 and column 7
    conv = htsr.analyze({"conv.weight": planted.astype(np.float32)}).layers[0]
    one = htsr.analyze({"fc.weight": planted[:, :, 2, 0].astype(np.float32)}).layers[0]
    assert conv.num_spikes >= 1 and conv.num_heavy_entries > 0 and conv.phase == one.phase == "bulk-decay"


def test_farms_window_rounding_floor_scales_by_the_windows_edge_over_the_matrixs():
    """A bfloat16 rank-30 1000 x 100 layer whose first 100 rows are scaled by 0.003, at farms_aspect 1 (ten
    100 x 100 windows): the windows' rounding floor is the matrix's storage floor times (√wr + √wc)² / (√N + √M)²
    (the MP edge on a window's sides over the matrix's). The pooled windows' eigenvalues run on through that
    floor (the small window's real ones: the next above it is 1.005x, no ROUNDING_GAP), so nothing is cut there
    and the fit keeps the 751 above WeightWatcher's 1e-5. The inverse ratio (4.3x the floor instead of 0.23x)
    found a gap and kept 270."""
    from htsr.analyze import ROUNDING_GAP

    g = np.random.default_rng(0)
    W = g.standard_normal((1000, 30)) @ g.standard_normal((30, 100)) / 10
    W[:100] *= 0.003
    t = torch.tensor(W, dtype=torch.bfloat16)
    row = htsr.analyze({"fc.weight": t}, min_evals=3, farms_aspect=1.0).layers[0]
    # the reference: numpy's SVD of the stored values (bfloat16 to float64 is exact)
    X = t.to(torch.float64).numpy()
    ev = np.linalg.svd(X, compute_uv=False) ** 2
    win = np.sort(np.concatenate([np.linalg.svd(X[i:i + 100], compute_uv=False) ** 2 for i in range(0, 1000, 100)]))
    # the storage floor (test_the_storage_rounding_floor_is_its_closed_form): u = 2^-8, rms u/√3 of the entries'
    rms = 2.0 ** -8 / math.sqrt(3) * math.sqrt(ev.sum() / X.size)
    storage = 2 * (rms * (math.sqrt(1000) + math.sqrt(100))) ** 2
    assert np.sum(ev <= storage) == 70 and np.sort(ev)[70] > ROUNDING_GAP * storage  # the matrix's: a gap
    window = storage * (math.sqrt(100) + math.sqrt(100)) ** 2 / (math.sqrt(1000) + math.sqrt(100)) ** 2
    k = int(np.sum(win <= window))
    assert 3 <= k and win[k] < ROUNDING_GAP * window  # the windows': no gap at their floor
    assert row.farms_windows == 10 and row.status == "ok"
    assert row.num_fit_evals == np.sum(win > 1e-5) == 751


def test_each_kernel_position_of_a_pooled_conv_is_cut_no_lower_than_the_ww_floor():
    """Each kernel position is cut at its own floor, but with the default evals_floor='ww' never below
    WeightWatcher's 1e-5: a 128x64x3 conv whose two quiet positions have eigenvalues 1e-8 … 1e-2 and its loud
    one 1e8 … 1e12 (whose float64 floor, ~1e-16·1e12·M, is above 1e-5) keeps 32 + 32 + 64 = 128, the count
    above 1e-5, on either path (the accurate one had kept all 192, the quiet positions' 1e-8 included)."""
    quiet = np.geomspace(1e-8, 1e-2, 64)
    loud = np.geomspace(1e8, 1e12, 64)
    W = np.stack([matrix_with_singular_values(np.sqrt(quiet), 128, 64, seed=1),
                  matrix_with_singular_values(np.sqrt(loud), 128, 64, seed=2),
                  matrix_with_singular_values(np.sqrt(quiet), 128, 64, seed=3)], axis=-1)
    want = 2 * np.sum(quiet > 1e-5) + np.sum(loud > 1e-5)
    assert want == 128
    for precision in ("fast", "accurate"):
        row = htsr.analyze({"conv.weight": W}, tails=False, precision=precision).layers[0]
        assert row.num_fit_evals == want, precision


# ---- round 28's gaps --------------------------------------------------------------------------------------

def test_a_reader_s_unreadable_1d_row_is_filtered_by_its_row_name():
    """A corrupt 1-D GPTQ qweight gives the row 'g' (a reader's row that says why): --layers matches that
    row name, as it does every other row, not the tensor's name."""
    rng = np.random.default_rng(21)
    state = {"g.qweight": rng.integers(0, 2**31, 512).astype(np.int32), "g.scales": np.ones((4, 16), np.float16),
             "ok.weight": rng.standard_normal((64, 64)).astype(np.float32)}
    rows = htsr.analyze(state, min_evals=5, layers="^g$").layers
    assert [r.name for r in rows] == ["g"] and rows[0].status.startswith("skipped: packed quantized weight")


def test_farms_advice_is_rounded_down_so_that_following_it_works():
    """343 x 100 at aspect 5 with min_evals=80: the widest aspect that still gives windows of 80 columns is
    343/80 = 4.2875; the advice says 4.28 (4.29 gives 339 x 79 windows, still too narrow), and following it fits."""
    W = np.random.default_rng(0).standard_normal((343, 100))
    row = htsr.analyze({"fc.weight": W}, farms_aspect=5.0, min_evals=80).layers[0]
    assert row.status.startswith("not_fitted: --farms-aspect 5 cuts this 343x100 matrix into 340x68 windows")
    assert "use an aspect of at most 4.28 here" in row.status
    assert htsr.analyze({"fc.weight": W}, farms_aspect=4.28, min_evals=80).layers[0].status == "ok"


def test_farms_fits_the_windows_of_a_layer_of_exactly_min_evals_eigenvalues():
    """A 200 x 50 layer has 50 eigenvalues: with min_evals=50 it is fitted, and with --farms-aspect 2 on its
    two 100 x 50 windows (100 values pooled), as with min_evals=49 - not on its own 50 with no windows."""
    W = np.random.default_rng(0).standard_t(3, (200, 50))
    rows = [htsr.analyze({"fc.weight": W}, farms_aspect=2.0, min_evals=me).layers[0] for me in (49, 50)]
    for row in rows:
        assert row.status == "ok" and row.farms_windows == 2 and row.num_fit_evals == 100
    assert rows[0].alpha == rows[1].alpha


def test_overlapping_farms_windows_count_only_their_distinct_entries_in_the_intervals():
    """250 x 100 at aspect 2: two 200 x 100 windows over 250 rows, 25 000 distinct entries of the
    40 000 pooled: the Bayesian interval counts the tail as 0.625·n values (bayesian_alpha's share)."""
    W = np.random.default_rng(0).standard_t(3, (250, 100))
    r = htsr.analyze({"fc.weight": W}, farms_aspect=2.0, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    assert row.farms_windows == 2 and row.status == "ok"
    tail = sp.fit_evals[sp.fit_evals >= row.xmin]
    assert tail.size == row.num_pl_spikes
    b = bayesian_alpha(tail, row.xmin, 0.95, share=0.625)
    assert (row.bayes_alpha_lo, row.bayes_alpha_hi) == pytest.approx((b.lo, b.hi), rel=1e-9)
    whole = bayesian_alpha(tail, row.xmin, 0.95)  # (counted as independent: narrower)
    assert row.bayes_alpha_hi - row.bayes_alpha_lo > 1.1 * (whole.hi - whole.lo)


def test_a_coarse_storage_s_rounding_is_cut_in_a_single_farms_window_as_without_farms():
    """A bfloat16 rank-30 300 x 300 layer at --farms-aspect 1 is one window, the matrix itself: its 270
    rounding eigenvalues under the gap are zeros as without FARMS (30 fitted, not 260)."""
    g = np.random.default_rng(0)
    t = torch.tensor(g.standard_normal((300, 30)) @ g.standard_normal((30, 300)) / 10, dtype=torch.bfloat16)
    plain = htsr.analyze({"fc.weight": t}, min_evals=3).layers[0]
    farms = htsr.analyze({"fc.weight": t}, min_evals=3, farms_aspect=1.0).layers[0]
    assert plain.num_zero_evals == 270 and plain.num_fit_evals == 30
    assert farms.farms_windows == 1 and farms.num_fit_evals == 30 and farms.alpha == plain.alpha


def test_without_clipping_num_fingers_and_raw_alpha_are_nan():
    """num_fingers and raw_alpha are columns of --clip-xmax / --drop-top (README): NaN without them."""
    W = np.random.default_rng(0).standard_t(3, (300, 100))
    row = htsr.analyze({"fc.weight": W}).layers[0]
    assert row.status == "ok" and math.isnan(row.num_fingers) and math.isnan(row.raw_alpha)
    dropped = htsr.analyze({"fc.weight": W}, drop_top=1).layers[0]
    assert dropped.num_fingers == 1


def test_the_eigenvalues_left_out_of_a_fit_leave_min_evals_at_least_and_are_not_counted_as_seen(monkeypatch):
    """drop_top=100 of a 128-eigenvalue layer had fitted the 28 left, 'ok' and 'under-trained', and clip_xmax with
    max_fingers 100 could drop down to 3: below min_evals a fit says nothing (THEORY §1), so the first is
    not_fitted and the second's refits stop at min_evals; num_fit_evals counts what the fit saw, without them."""
    W = np.random.default_rng(0).standard_t(3, (300, 128))
    row = htsr.analyze({"fc.weight": W}, drop_top=100).layers[0]
    assert row.status == ("not_fitted: 128 of 128 eigenvalues above the floor 1e-05, 28 without the 100 largest "
                          "(drop_top) < min_evals=50") and math.isnan(row.alpha) and row.warning == ""
    assert htsr.analyze({"fc.weight": W}, drop_top=78).layers[0].status == "ok"  # 50 left: fitted
    dropped = htsr.analyze({"fc.weight": W}, drop_top=3).layers[0]
    assert (dropped.num_fingers, dropped.num_fit_evals) == (3, 125)
    module = sys.modules["htsr.fits.powerlaw"]
    refits = []
    once = module._fit_once
    monkeypatch.setattr(module, "_fit_once", lambda x, xmin: refits.append(x.size) or once(x, xmin))
    # (a threshold no refit meets: every refit allowed is tried)
    clipped = htsr.analyze({"fc.weight": W}, clip_xmax=True, max_fingers=100, finger_thresh=1e6, min_evals=120)
    # the whole, then down to 120 left: 128 - 120 dropped at most (then the tails' fit of the whole)
    assert refits[:9] == [128, *range(127, 119, -1)] and min(refits) == 120
    assert clipped.layers[0].status == "ok" and clipped.layers[0].num_fit_evals == 128  # (none kept)
    clipped = htsr.analyze({"fc.weight": W}, clip_xmax=True, max_fingers=100, min_evals=100).layers[0]
    assert clipped.num_fingers >= 1 and clipped.num_fit_evals == 128 - clipped.num_fingers
    # no refit possible (min_evals of them all): the unclipped fit, as when no refit lowers alpha enough
    whole = htsr.analyze({"fc.weight": W}, clip_xmax=True, min_evals=128).layers[0]
    assert whole.num_fingers == 0 and whole.raw_alpha == whole.alpha and whole.num_fit_evals == 128


def test_farms_sigma_counts_overlapping_windows_by_their_share_as_the_intervals_do():
    """A 257 x 256 matrix's two square windows repeat 255 rows: their pooled values count as share·n independent
    ones in the intervals (README), and sigma = (α−1)/√(share·n) too (it had taken the raw n: √2 surer)."""
    W = np.random.default_rng(0).standard_normal((257, 256)).astype(np.float32)
    r = htsr.analyze({"l.weight": W}, farms_aspect=1.0).layers[0]
    share = W.size / (2 * 256 * 256)
    assert r.farms_windows == 2 and r.status == "ok"
    # (the same float64 operations in another order: 1e-12)
    assert r.sigma == pytest.approx((r.alpha - 1) / math.sqrt(share * r.num_pl_spikes), rel=1e-12)
    plain = htsr.analyze({"l.weight": W}).layers[0]
    assert plain.sigma == pytest.approx((plain.alpha - 1) / math.sqrt(plain.num_pl_spikes), rel=1e-12)


def test_farms_windows_is_nan_for_a_row_whose_windows_were_not_fitted():
    """farms_windows counts the windows pooled for a fit: a rank-10 300 x 100 layer at aspect 2 is
    not_fitted (its windows only repeat its 10 directions), and farms_windows is NaN, as for any row not fitted."""
    g = np.random.default_rng(0)
    W = g.standard_normal((300, 10)) @ g.standard_normal((10, 100))
    row = htsr.analyze({"fc.weight": W}, farms_aspect=2.0).layers[0]
    assert row.status.startswith("not_fitted: 10 of 100 eigenvalues above the floor")
    assert math.isnan(row.farms_windows)


def _trapped(seed: int = 0) -> np.ndarray:
    W = np.random.default_rng(seed).standard_normal((200, 50))
    W[3, 7] = 60.0  # a planted heavy entry: a correlation trap at (3, 7)
    return W


def test_a_layer_of_exactly_min_evals_eigenvalues_gets_its_mp_fit_phase_and_traps():
    """200 x 50, min_evals=50: the MP fit, phase and shuffle need min_evals eigenvalues, as the power-law
    fit does, and 50 is enough: the same columns as with min_evals=49."""
    rows = [htsr.analyze({"fc.weight": _trapped()}, min_evals=me, randomize=True).layers[0] for me in (49, 50)]
    for row in rows:
        assert row.status == "ok" and row.phase != "" and math.isfinite(row.mp_sigma) and row.num_traps == 1
    assert rows[0].phase == rows[1].phase and rows[0].rand_lambda_max == rows[1].rand_lambda_max
    # and 49 is not: with min_evals=51 none of them is made (only the boundary's fitted side had been checked)
    row = htsr.analyze({"fc.weight": _trapped()}, min_evals=51, randomize=True).layers[0]
    assert row.status == "not_fitted: 50 eigenvalues < min_evals=51" and row.phase == ""
    assert math.isnan(row.mp_sigma) and math.isnan(row.num_traps) and math.isnan(row.rand_lambda_max)


def test_randomize_is_seeded_by_seed():
    """The shuffle is seeded: two runs give the same shuffled spectrum, that of rmt.randomize at --seed,
    and another seed another one."""
    W = _trapped()
    a, b = (htsr.analyze({"fc.weight": W}, randomize=True, seed=0).layers[0] for _ in range(2))
    assert a.rand_lambda_max == b.rand_lambda_max
    ref = randomize([W], 200, 50, 0)
    assert a.rand_lambda_max == pytest.approx(float(ref.spectrum.evals[-1]), rel=1e-9)
    assert htsr.analyze({"fc.weight": W}, randomize=True, seed=1).layers[0].rand_lambda_max != a.rand_lambda_max


def test_a_single_matrix_layer_names_its_trap_by_row_and_column_only():
    """trap_weights is 'row,col' for a layer of one matrix ('m:row,col' only for a pooled conv's position m):
    the planted entry (3, 7)."""
    row = htsr.analyze({"fc.weight": _trapped()}, randomize=True).layers[0]
    assert row.num_traps == 1 and row.trap_weights == "3,7"


# ---- round 30's gaps --------------------------------------------------------------------------------------

# a 4-D tensor is a conv kernel only if BOTH trailing axes are ≤ 32 (a name without 'conv')
def test_a_4d_tensor_long_on_its_last_axis_is_no_conv_kernel():
    assert classify("grid.weight", (2, 3, 3, 128))[0] is None
    assert classify("grid.weight", (2, 3, 128, 3))[0] is None
    assert classify("grid.weight", (2, 3, 3, 32))[0] == "conv2d"


# a live Conv1d with ONE output channel and a kernel > 32 keeps its c_out axis (not squeezed)
def test_a_single_output_conv1d_with_a_long_kernel_is_not_squeezed():
    torch.manual_seed(0)
    r = htsr.analyze(torch.nn.Sequential(torch.nn.Conv1d(64, 1, kernel_size=40)))
    (row,) = r.layers
    assert row.kind == "conv1d" and (row.N, row.M) == (64, 1)
    assert row.status == "not_fitted: 40 eigenvalues < min_evals=50"  # (40 positions of one eigenvalue each)
    w = np.arange(64 * 40, dtype=np.float32).reshape(1, 64, 40)
    (lm,) = layer_matrices("c.weight", "conv1d", w.shape, lambda: w)
    mats = lm.load()
    assert len(mats) == 40 and mats[3].shape == (1, 64) and np.array_equal(mats[3], w[:, :, 3])


# each kernel position's matrix is c_out × c_in, as the row's rows/cols say (the position's slice itself)
def test_conv_position_matrices_keep_the_c_out_by_c_in_orientation():
    w = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    (pooled,) = layer_matrices("c.weight", "conv2d", w.shape, lambda: w)
    assert (pooled.rows, pooled.cols) == (5, 3)
    mats = pooled.load()
    assert [m.shape for m in mats] == [(5, 3)] * 4 and np.array_equal(mats[1], w[:, :, 0, 1])
    rows = list(layer_matrices("c.weight", "conv2d", w.shape, lambda: w, conv="per_position"))
    assert rows[2].name == "c[1,0]" and np.array_equal(rows[2].load()[0], w[:, :, 1, 0])


# by default a matrix with 1.5 % of its eigenvalues below the float32
# floor is recomputed in float64 (README: "more than refine_fraction (1 %)"), so none is left below the floor
def test_default_refine_fraction_refines_a_matrix_with_1_5_percent_below_the_floor():
    s = np.concatenate([np.linspace(1, 2, 197), [3e-3, 3.5e-3, 4e-3]])  # 3 of 200 below 4·√M·ε32·λmax
    W = matrix_with_singular_values(s, 400, 200, seed=0).astype(np.float32)
    r = htsr.analyze({"a.weight": W})
    assert r.options["refine_fraction"] == 0.01
    assert r.layers[0].num_evals_below_floor == 0
    assert htsr.analyze({"a.weight": W}, refine_fraction=0.02).layers[0].num_evals_below_floor == 3


# WeightWatcher's Conv2d scale is for a Conv2d LoRA only, not a Conv3d one (5-D)
def test_ww_conv_scale_applies_to_a_conv2d_lora_not_a_conv3d_lora():
    assert next(layer_matrices("x.weight", "lora", (4, 3, 2, 2), lambda: [None] * 4)).scale == 0.5
    assert next(layer_matrices("x.weight", "lora", (4, 3, 2, 2, 2), lambda: [None] * 8)).scale == 1.0
    # nor to a Conv3d or a Conv1d kernel, pooled or per position (WeightWatcher analyses neither)
    for shape, kind in (((4, 3, 2, 2, 2), "conv3d"), ((4, 3, 5), "conv1d")):
        assert next(layer_matrices("x.weight", kind, shape, lambda: np.ones(shape))).scale == 1.0
        assert next(layer_matrices("x.weight", kind, shape, lambda: np.ones(shape), conv="per_position")).scale == 1.0


# an unreadable expert stack's one row counts E matrices of out × in (not out of them)
def test_an_unread_stack_row_counts_its_experts():
    u = unread_tensor_row("moe.experts.weight", "stack", (8, 64, 32), lambda: None)
    assert (u.rows, u.cols, u.num_matrices, u.num_evals) == (64, 32, 8, 256)


# FARMS windows of a square matrix are in its own orientation (w_N rows × w_M columns: tall, all rows kept)
def test_farms_windows_of_a_square_matrix_are_tall():
    W = np.arange(16.0).reshape(4, 4)
    wins = aspect_windows(W, 2.0)
    assert [w.shape for w in wins] == [(4, 2), (4, 2)]
    assert np.array_equal(wins[0], W[:, :2]) and np.array_equal(wins[1], W[:, 2:])


# ---- round 47's gaps --------------------------------------------------------------------------------------


def test_an_unread_conv_row_counts_every_kernel_position_and_drops_weight_from_its_name():
    """A conv tensor the reader cannot read is one row of c_out × c_in matrices, one per kernel position: kh·kw of
    them for a 3 × 5 kernel (not kh), named by its module as a read one is. Only the stack's count had been
    pinned."""
    u = unread_tensor_row("enc.conv.weight", "conv2d", (8, 4, 3, 5), lambda: None)
    assert (u.name, u.rows, u.cols, u.num_matrices, u.num_evals) == ("enc.conv", 8, 4, 15, 60)


def test_a_2d_lora_row_is_out_by_in_as_its_update():
    """A LoRA row's rows × cols are its update's out × in (the shape its LowRank reports), as a dense row's are
    the weight's: a swapped pair had gone unseen because N and M are the same either way."""
    from htsr.factored import LowRank

    rng = np.random.default_rng(0)
    delta = LowRank(rng.standard_normal((6, 2)), rng.standard_normal((2, 4)))
    (lm,) = layer_matrices("q.weight", "lora", delta.shape, lambda: delta)
    assert (lm.name, lm.rows, lm.cols, lm.num_matrices) == ("q", 6, 4, 1)
    (m,) = lm.load()
    assert m is delta and m.shape == (lm.rows, lm.cols)


def test_a_stack_read_expert_by_expert_gives_each_row_its_own_expert():
    """With load_item (a GGUF expert stack dequantizes one expert at a time) row e reads expert e alone: three
    distinct experts come back as themselves, none from the whole tensor's load()."""
    W = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    rows = list(layer_matrices("blk.0.ffn_up_exps.weight", "stack", W.shape, lambda: pytest.fail("whole tensor read"),
                               load_item=lambda e: W[e]))
    assert [r.name for r in rows] == ["blk.0.ffn_up_exps[0]", "blk.0.ffn_up_exps[1]", "blk.0.ffn_up_exps[2]"]
    for e, r in enumerate(rows):
        (m,) = r.load()
        assert (r.rows, r.cols) == (4, 5) and np.array_equal(m, W[e])


def _counted(value):
    """A load that counts its calls (how often a SharedLoad reads its tensor)."""
    calls = []

    def load():
        calls.append(1)
        return value
    return load, calls


def test_a_shared_load_is_dropped_once_every_key_has_taken_or_been_released():
    """SharedLoad keeps its value only while some key may still take: dropped after the last take, after the last
    release, and at once when the keys left had been released before the first load (a filtered-out expert);
    a key taking after the drop loads again. Each drop is seen as a second load. A kept value (memory held for
    the whole analysis) had gone unseen: the takes return the same numbers either way."""
    from htsr.tensors import SharedLoad

    V = np.arange(6.0).reshape(2, 3)
    load, calls = _counted(V)
    s = SharedLoad(load, [0, 1])  # both take: dropped after the second take
    assert np.array_equal(s.take(0, lambda t: t[0]), V[0]) and np.array_equal(s.take(1, lambda t: t[1]), V[1])
    s.take(0, lambda t: t[0])
    assert len(calls) == 2
    load, calls = _counted(V)
    s = SharedLoad(load, [0, 1])  # 1 released before the first load: 0's take is the last
    s.release(1)
    s.take(0, lambda t: t[0])
    s.take(0, lambda t: t[0])
    assert len(calls) == 2
    load, calls = _counted(V)
    s = SharedLoad(load, [0, 1])  # 0 takes, then 1 is released: dropped by the release
    s.take(0, lambda t: t[0])
    s.release(1)
    s.take(0, lambda t: t[0])
    assert len(calls) == 2


def test_a_shared_load_hands_out_copies_not_views_of_its_value():
    """take() copies a part that is a numpy view, so a row's matrix does not keep the whole tensor (all experts,
    all kernel positions) alive after the SharedLoad drops it; other values pass through as they are."""
    from htsr.tensors import SharedLoad

    V = np.arange(24.0).reshape(2, 3, 4)
    s = SharedLoad(lambda: V, [0, 1])
    part = s.take(0, lambda t: t[0])
    assert np.array_equal(part, V[0]) and not np.shares_memory(part, V)
    marker = object()
    assert SharedLoad(lambda: [marker], [0]).take(0, lambda t: t[0]) is marker


def test_an_expert_stack_row_releases_its_share_of_the_tensor():
    """Each row of a shared expert stack has a release: once the other experts' rows are released (filtered out)
    the one that takes is the last, and the tensor is dropped (a take after it reads it again)."""
    W = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    load, calls = _counted(W)
    rows = list(layer_matrices("moe.experts.w1", "stack", W.shape, load))
    assert all(r.release is not None for r in rows)
    rows[1].release()
    rows[2].release()
    assert np.array_equal(rows[0].load()[0], W[0]) and np.array_equal(rows[0].load()[0], W[0])
    assert len(calls) == 2


@pytest.mark.parametrize("name,shape,why", [
    # a static activation scale of one per channel is 1-D; it is still the activation's, not a 1-D norm scale
    ("model.layers.0.self_attn.q_proj.input_scale", (4096,), "activation or KV-cache quantization scale"),
    # FSDP's flat parameter at the top of a state dict as well as under a wrapped module; the reason says what to do
    ("_flat_param", (1000,), "save the full state dict (FULL_STATE_DICT) and analyse that"),
    ("encoder._flat_param", (1000,), "save the full state dict (FULL_STATE_DICT) and analyse that"),
    ("ln_f.weight", (768,), "1-D (norm scales, scalars)"),
    ("blocks.0.weight", (2, 3, 4, 5, 6, 7), "6-D tensor of no layer kind htsr knows"),
])
def test_classify_says_why_a_tensor_is_no_layer(name, shape, why):
    """The reason a skipped tensor is listed with, by the first rule that applies: an activation scale of any rank
    up to 1, a bare FSDP flat parameter (and what to save instead), a 1-D tensor, the dimension count of an
    unknown one. Only the kinds of these had been pinned: a reason from a later rule had gone unseen."""
    kind, reason = classify(name, shape)
    assert kind is None and why in reason


def test_an_empty_broadcast_shaped_tensor_keeps_its_kind_and_is_skipped_as_empty():
    """A tensor with an axis of 0 is no vector (is_vector needs every axis ≥ 1): a [0, 1, 1] conv weight keeps its
    conv1d kind and its row says it is empty, as an empty nn.Linear's does, rather than being listed as a vector."""
    from htsr.tensors import is_vector

    assert not is_vector((0, 1, 1)) and is_vector((1, 1, 1)) and is_vector((64, 1, 1))
    assert classify("blocks.0.conv.weight", (0, 1, 1)) == ("conv1d", "")
    (row,) = htsr.analyze({"blocks.0.conv.weight": np.zeros((0, 1, 1), np.float32)}).layers
    assert row.kind == "conv1d" and row.status.startswith("skipped: an empty matrix")


def test_only_an_axial_factor_kept_in_its_broadcast_shape_is_an_embedding():
    """Reformer's axial position embedding factors ([512, 1, 64], [1, 1024, 192]) are tables; a 3-D tensor under the
    same name with no axis of 1 is no axial factor and is not called an embedding (the singleton is the rule's
    evidence, not the name alone)."""
    name = "reformer.embeddings.position_embeddings.weights.0"
    assert classify(name, (512, 1, 64)) == ("embedding", "")
    assert classify(name.replace(".0", ".1"), (1, 1024, 192)) == ("embedding", "")
    assert classify(name, (4, 5, 6))[0] != "embedding"


# ---- round 48: the per-tensor decisions of iter_layers and the per-layer checks ---------------------------------

def _reader(refs, **attrs):
    """A reader of the given TensorRefs, with any reader attributes (skipped, not_weights) given."""
    from htsr.io.base import TensorSource

    class Source(TensorSource):
        description = "a reader"

        def __len__(self):
            return len(refs)

        def __iter__(self):
            return iter(refs)

    src = Source()
    for k, v in attrs.items():
        setattr(src, k, v)
    return src


def test_a_tied_tensor_is_analysed_once_under_the_first_name_a_filter_keeps():
    """Two names of one stored tensor (a tied embedding and head: the same storage_key) give one row, the
    other listed as the same tensor; the first name is the first one --layers keeps, so with the embedding
    filtered out the head is analysed. Nothing had checked the tie on an in-memory reader."""
    from htsr.io.base import TensorRef

    W = np.random.default_rng(4).standard_normal((120, 60))
    refs = [TensorRef("emb.weight", (120, 60), "float64", lambda: W, storage_key=("s", 0)),
            TensorRef("head.weight", (120, 60), "float64", lambda: W, storage_key=("s", 0))]
    r = htsr.analyze(_reader(refs), min_evals=5)
    assert [x.name for x in r.layers] == ["emb"] and r.num_tensors == 2
    assert [(n.reason, n.examples) for n in r.not_analysed] == [
        ("the same tensor as emb.weight (tied weights): analysed once", ("head.weight",))]
    r = htsr.analyze(_reader(refs), min_evals=5, layers="^head$")
    assert [x.name for x in r.layers] == ["head"]
    assert [n.reason for n in r.not_analysed] == ["not matched by option 'layers'"]


def test_tensors_that_give_no_row_are_listed_by_the_reason_a_reader_gives():
    """A bool mask is an integer-like buffer; a raw 2-byte void array (bfloat16 numpy saved as voids) says to
    re-save it as float32; a reader's own not-weights are listed with its reason; two refs of one stored tensor
    (part_of: the two directions of a bidirectional RNN's W) count as one tensor. None of these had been seen
    from an in-memory reader."""
    from htsr.io.base import TensorRef

    rng = np.random.default_rng(5)
    W = rng.standard_normal((80, 60))
    fwd, bwd = rng.standard_normal((96, 40)), rng.standard_normal((96, 40))
    refs = [TensorRef("fc.weight", (80, 60), "float64", lambda: W),
            TensorRef("attn.mask", (8, 8), "bool", lambda: np.ones((8, 8), bool)),
            TensorRef("raw_bf16", (8, 8), "void16", lambda: np.zeros((8, 8), "V2")),
            TensorRef("rnn.W[fwd]", (96, 40), "float64", lambda: fwd, "rnn", part_of="rnn.W"),
            TensorRef("rnn.W[bwd]", (96, 40), "float64", lambda: bwd, "rnn", part_of="rnn.W")]
    r = htsr.analyze(_reader(refs, not_weights=[("rnn.B", "1-D (norm scales, scalars)")]), min_evals=5)
    assert [x.name for x in r.layers] == ["fc", "rnn.W[fwd]", "rnn.W[bwd]"]
    assert r.num_tensors == 5  # fc, mask, raw, rnn.W (its two directions once), rnn.B
    assert {n.reason: n.examples for n in r.not_analysed} == {
        "integer buffer (ids, masks, counters)": ("attn.mask",),
        "void16 tensor: not a dtype of weights htsr analyses (a bfloat16 array numpy saved as raw 2-byte voids: "
        "re-save it as float32)": ("raw_bf16",),
        "1-D (norm scales, scalars)": ("rnn.B",)}


def test_no_analysable_layer_names_the_filters_and_the_three_most_common_reasons():
    """The error of a run with no row: a --kinds filter alone is a filter too ('matches the filters'); at most
    three reasons are named, the most common first; a source of no tensors at all says to save the weights.
    Only a --layers filter and two reasons had been checked."""
    with pytest.raises(htsr.SourceError, match=r"none of its 1 tensors matches the filters: 1 kind dense not in "
                                               r"option 'kinds' \(a\.weight\)$"):
        htsr.analyze({"a.weight": np.ones((8, 4))}, kinds="conv2d")
    src = {"a.bias": np.ones(4), "b.bias": np.ones(4), "c.bias": np.ones(4), "n.weight": np.ones(4),
           "m.weight": np.ones(4), "ids": np.arange(4)[None, :], "v": np.ones((1, 1, 4))}
    with pytest.raises(htsr.SourceError) as e:
        htsr.analyze(src)
    assert str(e.value) == ("<mapping>: no analysable layer: none of its 7 tensors is a weight matrix htsr can read: "
                            "3 bias or norm buffer (a.bias, …); 2 1-D (norm scales, scalars) (n.weight, …); "
                            "1 integer buffer (ids, masks, counters) (ids)")
    with pytest.raises(htsr.SourceError, match=r"^<mapping>: no analysable layer: it holds no tensors; give a model "
                                               r"saved with its weights$"):
        htsr.analyze({})


def test_a_reader_s_unreadable_1d_row_is_a_dense_row_for_option_kinds():
    """A reader's row that says why a 1-D tensor cannot be read is a dense row: --kinds without dense leaves it
    out, named as such (only its --layers filtering had been checked)."""
    rng = np.random.default_rng(21)
    state = {"g.qweight": rng.integers(0, 2**31, 512).astype(np.int32), "g.scales": np.ones((4, 16), np.float16),
             "c.weight": rng.standard_normal((16, 8, 3, 3)).astype(np.float32)}
    r = htsr.analyze(state, min_evals=5, kinds="conv2d")
    assert [x.name for x in r.layers] == ["c"]
    # (the reader names the quantized layer's row by its weight: g.weight)
    assert [(n.reason, n.examples) for n in r.not_analysed] == [("kind dense not in option 'kinds'", ("g.weight",))]


def test_bad_weights_are_told_apart_whichever_matrix_and_sign_they_are_in():
    """NaN in a conv's third kernel position (max() over the positions' peaks drops a NaN not first), a single
    huge negative entry (its magnitude, not the largest value, bounds the eigenvalues) and matrices of 0 and
    −inf that are no attention mask (not square; −inf on the diagonal) each fail with the reason that fits."""
    rng = np.random.default_rng(7)
    conv = rng.standard_normal((40, 30, 3, 3))
    conv[1, 2, 0, 2] = np.nan
    neg = rng.standard_normal((80, 60))
    neg[5, 5] = -1e200
    wide = np.full((6, 8), -np.inf)
    wide[np.arange(6), np.arange(6)] = 0.0  # 0 on its diagonal, −inf elsewhere, but 6 x 8: no mask
    diag = np.triu(np.full((6, 6), -np.inf), 1)
    diag[0, 0] = -np.inf
    mask = np.triu(np.full((6, 6), -np.inf), 1)  # a causal mask: skipped, as before
    pos = np.triu(np.full((6, 6), -np.inf), 1)  # a causal mask's layout with one +inf: a diverged weight, no mask
    pos[2, 4] = np.inf
    rows = {r.name: r.status for r in htsr.analyze({"c.weight": conv, "n.weight": neg, "w.weight": wide,
                                                      "d.weight": diag, "m.weight": mask, "p.weight": pos},
                                                     min_evals=5).layers}
    assert rows["c"] == rows["w"] == rows["d"] == rows["p"] == "failed: NaN or Inf in the weights"
    assert rows["n"] == ("failed: weights up to 1e+200 in magnitude: eigenvalues could exceed float64's range; "
                         "rescale the weights (alpha does not change with the scale)")
    assert rows["m"] == "skipped: an attention mask (entries 0 and −inf), not a weight"
    # a kernel position's eigenvalues are multiplied by kh·kw/2 = 4.5: an all-equal 8 x 6 position of 9.354e152 has
    # λ = 48·a² ≈ 4.2e307, within float64, but 4.5·λ is not; the row's scale is in the bound (it had been an
    # inf lambda_max on a 'not_fitted' row)
    row = htsr.analyze({"c.weight": np.full((8, 6, 3, 3), 9.354e152)}, conv="per_position", min_evals=2).layers[0]
    assert row.status.startswith("failed: weights up to 9.35e+152 in magnitude") and math.isnan(row.lambda_max)
    # entries of 1e-155: eigenvalues near 1e-310, subnormal (float64's normal range ends at 2.2e-308), are refused
    # as those of 1e-200 are (only the far end had been checked)
    row = htsr.analyze({"t.weight": rng.standard_normal((80, 60)) * 1e-155}, min_evals=5).layers[0]
    assert row.status.startswith("failed: weights of at most ") and "below float64's range" in row.status


def test_rounding_zeros_need_three_under_the_floor_and_a_tenfold_gap_above_it():
    """_under_gap's rule in numbers (floor 1): three eigenvalues at or under the floor (one equal to it counts)
    with the next 10 times above are zeros; two are not (a square layer's one or two chance-small ones), nor three
    whose next one is only 9 times above (a spectrum running on through the floor). The closed-form test reads
    the two constants from the module, so a changed constant had gone unseen."""
    from htsr.analyze import _under_gap

    assert _under_gap(np.array([0.1, 0.2, 1.0, 10.0, 50.0]), 1.0) == 1.0  # 3 under (one equal), next 10x
    assert _under_gap(np.array([0.1, 0.2, 0.5, 9.0, 50.0]), 1.0) == 0.0  # next only 9x: no gap
    assert _under_gap(np.array([0.1, 0.2, 20.0, 50.0]), 1.0) == 0.0  # only two under
    assert _under_gap(np.array([0.1, 0.2, 0.5]), 1.0) == 0.0  # all under: no spectrum above to part from


def test_a_trap_in_the_first_row_is_named_by_its_row_not_as_the_mean():
    """A planted entry at (0, 7) is located as '0,7': row 0 is a row (only -1 stands for the entries' mean), and
    keep_spectra keeps the shuffled spectrum's own trap threshold, the row's rand_mp_threshold."""
    W = np.random.default_rng(0).standard_normal((200, 50))
    W[0, 7] = 60.0
    r = htsr.analyze({"fc.weight": W}, randomize=True, keep_spectra=True)
    row, kept = r.layers[0], r.spectra[0]
    assert row.num_traps == 1 and row.trap_weights == "0,7"
    assert kept.rand_threshold == row.rand_mp_threshold and kept.rand_threshold != row.mp_threshold
    assert kept.rand_evals[-1] == row.rand_lambda_max


def test_a_failure_of_the_fit_s_diagnostics_keeps_the_fit_and_says_so(monkeypatch):
    """tail_uncertainty raising (forced here) loses only the intervals: the row keeps its alpha and its status
    says what failed (had only a fit's own failure been checked)."""
    an = sys.modules["htsr.analyze"]

    def broken(*args, **kwargs):
        raise RuntimeError("forced")

    W = np.random.default_rng(6).standard_t(3.0, (300, 100))
    fitted = htsr.analyze({"fc.weight": W}).layers[0]
    monkeypatch.setattr(an, "tail_uncertainty", broken)
    row = htsr.analyze({"fc.weight": W}).layers[0]
    assert row.status == "ok; diagnostics failed: RuntimeError: forced"
    assert row.alpha == fitted.alpha and math.isfinite(fitted.bayes_alpha_lo) and math.isnan(row.bayes_alpha_lo)
    assert row.num_fit_evals == 100
    # the notes it gives (a TPL or E-TPL fit that failed: forced here, on top of the real diagnostics) follow the
    # fit's status in the row's (no random layer gives one: the notes' way to the status had gone unchecked)
    from htsr.fits.uncertainty import tail_uncertainty

    def noting(*args, notes, **kwargs):
        cols = tail_uncertainty(*args, notes=notes, **kwargs)
        notes.append("etpl not fitted: forced")
        return cols

    monkeypatch.setattr(an, "tail_uncertainty", noting)
    row = htsr.analyze({"fc.weight": W}).layers[0]
    assert row.status == "ok; etpl not fitted: forced" and row.bayes_alpha_lo == fitted.bayes_alpha_lo


def test_an_empty_expert_stack_or_conv_is_one_empty_matrix_row():
    """A stack of 0 experts and a conv of 0 input channels are each one 'empty matrix' row (a stack of no
    experts had given no row at all, listed as not matched by --layers); only a 2-D empty layer had been checked."""
    rng = np.random.default_rng(0)
    r = htsr.analyze({"moe.experts.w1": np.zeros((0, 64, 32), np.float32), "c.weight": np.zeros((8, 0, 3, 3), np.float32),
                      "fc.weight": rng.standard_normal((80, 60))}, min_evals=5)
    assert [(x.name, x.kind, x.status) for x in r.layers] == [
        ("moe.experts.w1", "stack", "skipped: an empty matrix (shape 0x64x32)"),
        ("c", "conv2d", "skipped: an empty matrix (shape 8x0x3x3)"), ("fc", "dense", "ok")]
    assert r.not_analysed == ()


def test_a_stack_whose_experts_a_filter_leaves_out_is_released_before_the_next_stack(monkeypatch):
    """With --layers keeping one expert of each stack, a stack's tensor is dropped once that expert's row is
    done, not at the end of the run: when a stack's row starts, no earlier stack still holds its tensor (the
    existing test looks only after the run, when everything is freed anyway)."""
    import importlib

    from htsr.matrices import SharedLoad

    ha, hm = importlib.import_module("htsr.analyze"), importlib.import_module("htsr.matrices")
    shared, held = [], []

    class Recorded(SharedLoad):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            shared.append(self)

    orig_row = ha._layer_row

    def row(lm, opts):
        held.append(sum(s._value is not None for s in shared))  # stacks holding their tensor as this row starts
        return orig_row(lm, opts)

    monkeypatch.setattr(hm, "SharedLoad", Recorded)
    monkeypatch.setattr(ha, "_layer_row", row)
    rng = np.random.default_rng(0)
    experts = {f"l{i}.mlp.experts.down_proj": rng.standard_normal((4, 64, 48)).astype(np.float32) for i in range(3)}
    r = htsr.analyze(experts, layers=r"down_proj\[0\]$", tails=False, workers=1)
    assert len(r.layers) == 3 and len(shared) == 3 and held == [0, 0, 0]


def test_an_undefined_erg_tail_has_no_size_not_size_zero():
    """A 120 x 60 matrix of orthonormal columns has 60 equal eigenvalues: the ERG tail is undefined, and its
    size is NaN with its edge (a count of 0 would read as 'no eigenvalue past the edge'). Only defined tails
    had been checked."""
    Q = np.linalg.qr(np.random.default_rng(3).standard_normal((120, 60)))[0]
    row = htsr.analyze({"q.weight": Q}, precision="accurate").layers[0]
    assert np.isnan(row.erg_lambda_min) and np.isnan(row.num_erg)
    assert row.stable_rank == pytest.approx(60.0, rel=1e-9)  # (the flat spectrum, up to the SVD's rounding)


def test_setol_delta_lambda_min_normalises_xmin_by_the_mean_eigenvalue():
    """erg_delta_lambda_min is x_min − λ̃_min^ERG with both in mean-normalised units: x_min·n/Σλ over the n
    eigenvalues of a full-rank layer (the ERG edge's own units: erg_lambda_min_raw·n/Σλ). Only the ERG columns
    themselves had been checked, not the x_min they are compared with."""
    W = np.random.default_rng(11).standard_t(3.0, (300, 100))
    r = htsr.analyze({"fc.weight": W}, precision="accurate", keep_spectra=True)
    row, ev = r.layers[0], r.spectra[0].evals
    assert row.status == "ok" and row.matrix_rank == ev.size == 100
    mean = float(np.sum(ev)) / ev.size
    assert row.erg_lambda_min == pytest.approx(row.erg_lambda_min_raw / mean, rel=1e-12)  # (sums in another order)
    assert row.erg_delta_lambda_min == pytest.approx(row.xmin / mean - row.erg_lambda_min, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------- round 57: per-layer decisions of the pipeline


def test_a_reader_s_1d_tensor_of_a_layer_kind_and_its_unreadable_bias_are_listed_not_rows():
    """A reader's kind on a 1-D shape (a corrupt header's) is no matrix: listed as 'shape [...] of no matrix', not a
    failed row; a reader's unreadable 1-D bias is a bias, listed as one, not a dense row that says why it cannot be
    read; and two directions of one stored tensor (part_of) that --layers leaves out still count as one tensor.
    Only 0-D shapes, unreadable 1-D weights and kept directions had been seen."""
    from htsr.io.base import TensorRef, skipped_loader

    rng = np.random.default_rng(57)
    W = rng.standard_normal((80, 60))
    fwd, bwd = rng.standard_normal((96, 40)), rng.standard_normal((96, 40))
    refs = [TensorRef("fc.weight", (80, 60), "float64", lambda: W),
            TensorRef("fc.bias", (80,), "float32", skipped_loader("packed quantized bias of no known layout")),
            TensorRef("x.weight", (64,), "float64", lambda: np.ones(64), "dense"),
            TensorRef("rnn.W[fwd]", (96, 40), "float64", lambda: fwd, "rnn", part_of="rnn.W"),
            TensorRef("rnn.W[bwd]", (96, 40), "float64", lambda: bwd, "rnn", part_of="rnn.W")]
    r = htsr.analyze(_reader(refs), min_evals=5, tails=False)
    assert [x.name for x in r.layers] == ["fc", "rnn.W[fwd]", "rnn.W[bwd]"]
    assert {n.reason: n.examples for n in r.not_analysed} == {
        "bias or norm buffer": ("fc.bias",), "shape [64] of no matrix": ("x.weight",)}
    r = htsr.analyze(_reader(refs), min_evals=5, tails=False, layers="^fc$")
    assert [x.name for x in r.layers] == ["fc"]
    assert r.num_tensors == 4  # fc, its bias, x, rnn.W (its two directions, both filtered out, once)
    assert dict((n.reason, n.examples) for n in r.not_analysed)["not matched by option 'layers'"] == (
        "rnn.W[fwd]", "rnn.W[bwd]")


def test_the_warning_reads_the_interval_of_alpha_not_alpha_alone():
    """A t(2) layer fits alpha 2.24 with a Bayesian interval of about [1.87, 2.66] (seeded): alpha alone is above 2
    and below 6 (no warning by WeightWatcher's rule), but the interval holds 2, so the warning is 'uncertain', as
    metrics.warning_for gives for those bounds. Its 13 spikes of 100 make a tail whose alpha is below
    phase_ht_alpha: heavy-tailed (with the default thresholds, each in its place). The row's warning had only been
    seen where alpha alone decides, and no analysed layer had been heavy-tailed."""
    from htsr.metrics import warning_for

    W = np.random.default_rng(0).standard_t(2.0, (200, 100))
    row = htsr.analyze({"fc.weight": W}, tails=False, setol=False).layers[0]
    assert row.status == "ok" and row.bayes_alpha_lo < 2.0 < row.alpha < row.bayes_alpha_hi < 6.0
    assert row.warning == warning_for(row.alpha, row.bayes_alpha_lo, row.bayes_alpha_hi) == "uncertain"
    assert row.num_spikes == 13 and row.phase == "heavy-tailed"


def test_a_shuffle_with_no_mp_law_counts_no_traps():
    """A constant 200 x 50 layer shuffles into itself: its entries' variance is 0, so the shuffled matrix has no MP
    law to set a threshold by; the trap count is NaN (not counted), not 0 traps found. Its one eigenvalue is still
    N·M·c² = 200·50·0.25 = 2500 (rel 1e-12: the Gram's round-off). Only shuffles with an MP law had been seen."""
    row = htsr.analyze({"fc.weight": np.full((200, 50), 0.5)}, randomize=True).layers[0]
    assert row.rand_lambda_max == pytest.approx(2500.0, rel=1e-12)
    assert math.isnan(row.rand_mp_threshold) and math.isnan(row.rand_mp_sigma) and math.isnan(row.num_traps)
    assert row.trap_weights == ""


def test_the_shuffle_s_js_distance_cuts_each_spectrum_at_its_own_floor():
    """rand_js_distance compares the layer's ESD and its shuffle's, each with the eigenvalues at or below its own
    floor (spectra.resolved_cuts: the float32 Gram's where the fast path leaves those below it unrefined, on either
    path) as zeros: for a 100 x 100 float32 layer with a strong rank-1 spike the two floors differ by
    orders of magnitude, and cut at each other's the distance differs by more than 1e-3. The floors' order had gone
    unchecked (rel 1e-6: the same calls as the analysis, only a BLAS thread count could move their round-off)."""
    from htsr.rmt import js_distance
    from htsr.spectra import esd, resolved_cuts

    rng = np.random.default_rng(3)
    W = (rng.standard_normal((100, 100)) + 30.0 * np.outer(rng.standard_normal(100), rng.standard_normal(100))
         ).astype(np.float32)
    row = htsr.analyze({"fc.weight": W}, randomize=True, min_evals=5, tails=False).layers[0]
    sp, R = esd([W]), randomize([W], 100, 100, 0)
    fa, fb = (resolved_cuts(x, 100) for x in (sp, R.spectrum))
    want = js_distance(sp.evals, R.spectrum.evals, fa, fb)
    assert row.rand_js_distance == pytest.approx(want, rel=1e-6)
    assert abs(js_distance(sp.evals, R.spectrum.evals, fb, fa) - want) > 1e-3


def test_the_shuffle_s_js_distance_and_the_bulk_eigenvectors_do_not_depend_on_the_eigenvalue_path():
    """A float32 300 x 200 layer with 2 singular values at 1e-4 of the largest: their eigenvalues (1e-8 of λ_max) lie
    below the float32 Gram's floor (4·√200·ε₃₂·λ_max = 6.7e-6), which the fast path leaves unresolved (2 of 200,
    under refine_fraction) and the accurate path resolves. Each ESD is cut at that floor on either path: the
    distance and the bulk's eigenvectors had been cut at each path's own floor, and MiniLM's rand_js_distance moved
    by up to 0.03 between --precision fast and accurate (h40). Equal to 1e-3: the eigenvalues above the floor agree
    to float32 round-off, which can move one across a bin edge (a 1/200 share). Not at the 1 % rule's edge: a
    matrix with about 1 % of its eigenvalues within a few times the float32 floor can count them on either side of
    it by round-off (3 at 0.9-1.0x the floor in a 400 x 200 layer: js 0.29 and 0.33; docs/rmt.md)."""
    rng = np.random.default_rng(11)
    U, _ = np.linalg.qr(rng.standard_normal((300, 200)))
    V, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    s = np.sort(rng.uniform(0.5, 3.0, 200))[::-1]
    s[-2:] = 3e-4
    W = ((U * s) @ V.T).astype(np.float32)
    rows = {p: htsr.analyze({"fc.weight": W}, randomize=True, localization=True, precision=p, tails=False).layers[0]
            for p in ("fast", "accurate")}
    fast, accurate = rows["fast"], rows["accurate"]
    assert fast.eig_method == "gram32" and fast.num_evals_below_floor == 2 and accurate.eig_method == "svd64"
    assert fast.rand_js_distance == pytest.approx(accurate.rand_js_distance, abs=1e-3)
    assert fast.loc_pr_bulk_mean == pytest.approx(accurate.loc_pr_bulk_mean, rel=1e-9)  # (one float64 eigh: same)
    # a pooled conv whose quiet kernel position has 20 of its 64 singular values at 1e-4 of the others: the fast
    # path refines that position in float64 (gram32+gram64), and its eigenvalues below the loudest position's
    # float32 floor had been cut at that floor there and at the position's own on the accurate path (js 0.144 and
    # 0.134: h43)
    K = rng.standard_normal((128, 64, 3, 3)).astype(np.float32)
    U, s, Vt = np.linalg.svd(K[:, :, 0, 0].astype(np.float64), full_matrices=False)
    s[-20:] *= 1e-4
    K[:, :, 0, 0] = ((U * s) @ Vt).astype(np.float32)
    rows = {p: htsr.analyze({"c.weight": K}, randomize=True, localization=True, precision=p, tails=False).layers[0]
            for p in ("fast", "accurate")}
    assert rows["fast"].eig_method == "gram32+gram64" and rows["accurate"].eig_method == "svd64"
    assert rows["fast"].rand_js_distance == pytest.approx(rows["accurate"].rand_js_distance, abs=1e-3)
    assert rows["fast"].loc_pr_bulk_mean == pytest.approx(rows["accurate"].loc_pr_bulk_mean, rel=1e-9)
    # kernel positions of equal largest eigenvalues (equal floors, which had made the accurate path pool them into
    # one 1 % count): position (0,0) has 25 of its 100 eigenvalues at 1e-8 of λ_max, resolved on both paths, and
    # each position is cut by its own (h47: js 0.614 fast, 0.590 accurate)
    D = np.zeros((200, 100, 5, 5), np.float32)
    for i in range(5):
        for j in range(5):
            sv = rng.uniform(0.5, 1.0, 100).astype(np.float32)
            sv[0] = 2.0
            if (i, j) == (0, 0):
                sv[-25:] = 2e-4
            D[np.arange(100), np.arange(100), i, j] = sv
    rows = {p: htsr.analyze({"d.weight": D}, randomize=True, precision=p, tails=False, min_evals=5).layers[0]
            for p in ("fast", "accurate")}
    assert rows["fast"].rand_js_distance == pytest.approx(rows["accurate"].rand_js_distance, abs=1e-3)
    # a Cauchy-entry layer: 143 of its 500 eigenvalues lie below the float32 Gram's floor of its huge largest, and
    # both paths resolve them (the fast path refines): they stay nonzero, in the bulk (the float32 floor alone had
    # cut them: js 0.044 for 0.048, the bulk's PR 24.9 for 32.1; h46)
    C = rng.standard_cauchy((800, 500)).astype(np.float32)
    rows = {p: htsr.analyze({"c.weight": C}, randomize=True, localization=True, precision=p, tails=False).layers[0]
            for p in ("fast", "accurate")}
    ev = np.linalg.eigvalsh(C.T.astype(np.float64) @ C)
    assert np.count_nonzero(ev < 4 * math.sqrt(500) * np.finfo(np.float32).eps * ev[-1]) > 100
    assert rows["fast"].rand_js_distance == pytest.approx(rows["accurate"].rand_js_distance, abs=1e-3)
    assert rows["fast"].loc_pr_bulk_mean == pytest.approx(rows["accurate"].loc_pr_bulk_mean, rel=1e-9)
    whole = htsr.rmt.localization([C], int(rows["fast"].num_pl_spikes), 1.0, 0.0)["loc_pr_bulk_mean"]
    assert rows["fast"].loc_pr_bulk_mean == pytest.approx(whole, rel=1e-9)  # (no bulk eigenvalue left out)


def test_the_progress_bar_counts_every_row_whether_run_side_by_side_or_alone(monkeypatch):
    """in_threads ticks the bar once per row: the rows up to THREADED_MAX_M (at most, not below it) run side by
    side, the larger ones one at a time, and those tick it too (only the side-by-side rows' ticks had been
    seen through a run's bar). THREADED_MAX_M is lowered to 64 so that small rows stand for large ones."""
    from htsr.matrices import LayerMatrices

    a = sys.modules["htsr.analyze"]
    monkeypatch.setattr(a, "THREADED_MAX_M", 64)

    class Bar:
        ticks = 0

        def update(self):
            self.ticks += 1

    rows = [LayerMatrices(f"r{m}", "dense", (128, m), 128, m, 1, 1.0, lambda: []) for m in (32, 64, 65, 96)]
    assert [a._light(lm) for lm in rows] == [True, True, False, False]
    bar = Bar()
    assert a.in_threads(rows, lambda lm: lm.name, workers=2, bar=bar) == ["r32", "r64", "r65", "r96"]
    assert bar.ticks == 4


def test_the_localization_bulk_of_a_rank_deficient_layer_leaves_out_its_null_directions():
    """A rank-10 200 x 60 layer: its 50 zero eigenvalues (at or below the spectrum's floor) have eigenvectors of
    no meaning, and the bulk's participation ratio is over the 6 nonzero ones below the 4-eigenvalue tail, as
    rmt.localization gives with that floor (20.83; with the null directions in, 18.68). Only full-rank layers had
    been seen (rel 1e-9: the same Gram and eigh as the analysis's)."""
    from htsr.rmt import localization
    from htsr.spectra import esd

    rng = np.random.default_rng(5)
    W = rng.standard_normal((200, 10)) @ rng.standard_normal((10, 60))
    row = htsr.analyze({"fc.weight": W}, localization=True, min_evals=5, tails=False).layers[0]
    assert row.status == "ok" and row.matrix_rank == 10 and row.num_pl_spikes == 4
    want = localization([W], 4, 1.0, esd([W]).floor)["loc_pr_bulk_mean"]
    assert row.loc_pr_bulk_mean == pytest.approx(want, rel=1e-9)
    assert abs(localization([W], 4, 1.0, 0.0)["loc_pr_bulk_mean"] - want) > 1.0


def test_a_result_records_the_path_it_was_given_and_none_for_an_object(tmp_path):
    """AnalysisResult.path is the path analysed as given (what compare labels a model by), '' for an in-memory
    mapping; only the object case had been seen here."""
    from safetensors.numpy import save_file

    W = np.random.default_rng(0).standard_normal((80, 60)).astype(np.float32)
    save_file({"fc.weight": W}, str(tmp_path / "m.safetensors"))
    assert htsr.analyze(tmp_path / "m.safetensors", min_evals=5, tails=False).path == str(tmp_path / "m.safetensors")
    assert htsr.analyze({"fc.weight": W}, min_evals=5, tails=False).path == ""


# ---- round 76's gaps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape,expected", [
    ("fc.weight_g", (64, 1), (None, "bias or norm buffer")),  # weight_norm's magnitude without its direction
    ("blocks.0.pos_conv.weight", (8, 4, 64, 3), ("conv2d", "")),  # a long kernel of a layer named conv is a kernel
])
def test_classify_known_kinds_and_reasons_of_named_tensors(name, shape, expected):
    """(kind, reason) for names whose rule had not been pinned: a lone weight_g [out, 1] (2-D, so it had been a dense
    layer without the name rule), and a conv-named 4-D tensor with a kernel axis over 32 (a kernel all the same,
    as a conv-named 3-D one is)."""
    assert classify(name, shape) == expected


def test_an_axial_position_embedding_factor_is_one_flattened_matrix():
    """A 3-D embedding factor kept in its broadcast shape ([512, 1, 64] in Reformer) is one 512 × 64 matrix: its
    leading axes flattened, its eigenvalues those of numpy's SVD of the reshaped tensor (1e-9 relative: float64
    against float64). Only its kind had been pinned: a 3-D embedding had never been made into its matrix."""
    W = np.random.default_rng(0).standard_normal((96, 1, 40))
    name = "embeddings.position_embeddings.weights.0"
    (lm,) = layer_matrices(name, "embedding", W.shape, lambda: W)
    (m,) = lm.load()
    assert (lm.rows, lm.cols) == (96, 40) and np.array_equal(m, W.reshape(96, 40))
    row = htsr.analyze({name: W}, precision="accurate", min_evals=5, tails=False).layers[0]
    assert row.kind == "embedding" and (row.N, row.M) == (96, 40)
    ref = np.linalg.svd(W.reshape(96, 40), compute_uv=False) ** 2
    assert row.lambda_max == pytest.approx(ref.max(), rel=1e-9)


def test_a_conv_lora_per_position_gives_each_row_its_own_positions_update():
    """With conv="per_position" a conv LoRA (load() is one LowRank per kernel position) gives one row per position,
    each loading that position's LowRank itself: no all-zero check applies to factors (only a read tensor can be
    found all-zero), so no row is refused. Only the pooled conv LoRA and read conv tensors per position had been
    checked."""
    from htsr.factored import LowRank

    rng = np.random.default_rng(0)
    parts = [LowRank(rng.standard_normal((4, 1)), rng.standard_normal((1, 3))) for _ in range(4)]
    rows = list(layer_matrices("c.weight", "lora", (4, 3, 2, 2), lambda: parts, conv="per_position"))
    assert [r.name for r in rows] == ["c[0,0]", "c[0,1]", "c[1,0]", "c[1,1]"]
    assert [r.scale for r in rows] == [2.0] * 4  # WeightWatcher's kh·kw/2 for a Conv2d's positions
    for r, part in zip(rows, parts):
        (m,) = r.load()
        assert m is part


def test_after_ctrl_c_the_rows_running_leave_off_at_their_next_stage():
    """A row running when the run is interrupted leaves off at its next stage (_stop_point: before its spectrum, its
    MP fit, shuffle, fits and eigenvectors): the rows had gone on through every stage after analyze returned, and a
    script interrupted in two 4000 x 3500 layers waited 86 s at exit (h48). A row of an uninterrupted run goes on."""
    import signal
    import threading
    import time

    analyze = sys.modules["htsr.analyze"]
    reached, stages = threading.Event(), []

    def work(lm):  # (a row in its stages, each a little while)
        reached.set()
        for k in range(300):
            analyze._stop_point()
            stages.append(k)
            time.sleep(0.01)
        return lm

    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        analyze._in_threads([object()], work, 1, None, one_blas=False)
    assert reached.is_set()
    time.sleep(0.2)  # (its current stage ends)
    done = len(stages)
    time.sleep(0.3)
    assert len(stages) == done < 300  # (left off: no stage since; it had run all 300, 3 s)
    assert [r for r in analyze._in_threads([1, 2], lambda x: (analyze._stop_point(), x)[1], 2, None)] == [1, 2]


@pytest.mark.parametrize("side_by_side", [True, False])
def test_ctrl_c_does_not_wait_for_the_layers_running(side_by_side):
    """An eigensolver cannot be stopped: Ctrl-C had waited for every layer running (15.6 s on three 4096-wide
    layers), in worker threads (the executor's exit joined them) and in the main thread (a LAPACK call holds the
    signal until it returns). The layers running here block until released: Ctrl-C must come back before that."""
    import signal
    import threading
    import time

    analyze = sys.modules["htsr.analyze"]
    release, started = threading.Event(), threading.Semaphore(0)

    def work(lm):  # (an eigensolver that does not return for a long while)
        started.release()
        release.wait(30)
        return lm

    lms = [object(), object()]
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            # (Ctrl-C, once a layer runs: a signal, which wakes the main thread's wait as a terminal's does)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            if side_by_side:
                analyze._in_threads(lms, work, 2, None)
            else:
                analyze._in_threads(lms[:1], work, 1, None, one_blas=False)  # (a large layer: off the main)
        waited = time.perf_counter() - t0
    finally:
        release.set()
    assert started.acquire(timeout=5)  # (the layer ran)
    assert waited < 10, waited  # (not the 30 s the layer would have run; generous for a loaded machine)


def test_a_row_whose_erg_tail_is_undefined_says_why():
    """num_erg, erg_lambda_min … NaN with a status: a flat spectrum (an orthogonal layer) says why its ERG tail is
    undefined (the row had said only why its power law was not fitted, h40); a row of one eigenvalue says so
    already, a failed or skipped row says nothing more, and a defined tail adds nothing."""
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((200, 100)))
    rows = {r.name: r for r in htsr.analyze({"flat.weight": q * math.sqrt(2.0), "one.weight": np.ones((1, 300)),
                                             "zero.weight": np.zeros((50, 60)),
                                             "ok.weight": np.random.default_rng(1).standard_normal((200, 100))}
                                            ).layers}
    assert rows["flat"].status.endswith("; ERG undefined: a flat spectrum: every eigenvalue within 0.0001 of the "
                                        "largest") and math.isnan(rows["flat"].num_erg)
    assert rows["one"].status == "not_fitted: 1 eigenvalues < min_evals=50" and math.isnan(rows["one"].num_erg)
    assert rows["zero"].status == "failed: all-zero matrix"
    assert rows["ok"].status == "ok" and rows["ok"].num_erg > 0


def test_weights_of_1e35_leave_no_solver_noise_on_stdout(capfd):
    """Weights of 1e35 (float32): the iterative solvers (the phase's spike vectors, the traps' triplets) work in the
    weights' precision, where their products overflowed: LAPACK printed "SLASCL parameter number 4 had an illegal
    value" on standard output, into --json's document, and scipy warned of overflow (h44). Scaled first: nothing
    printed, and the same phase and traps as the weights at scale 1."""
    import warnings

    W = np.random.default_rng(0).standard_t(3, (200, 120)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (an overflow warning fails the test)
        big, unit = (htsr.analyze({"l.weight": W * np.float32(s)}, randomize=True).layers[0] for s in (1e35, 1.0))
    out, err = capfd.readouterr()
    assert "SLASCL" not in out + err and out == ""
    assert (big.status, big.phase, big.num_traps) == (unit.status, unit.phase, unit.num_traps) == ("ok", "bulk-decay", 1)
