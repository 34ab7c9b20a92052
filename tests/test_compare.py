"""htsr.compare: models side by side (summary, ranking, per-layer values), a model against its base layer by
layer (Frobenius, ESD Jensen-Shannon distance, CKA), and ``htsr compare``.

Known answers for CKA: 1 for a matrix and itself, invariant to W -> c·W·Q (Q orthogonal on the features),
p/(n + p) for two independent Gaussian matrices, and the brute-force formula with an explicit centring
matrix. Models are small in-memory mappings or .npz files under ``tmp_path``.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import os
import json
import math
import sys
import types

import numpy as np
import pytest

import htsr
from conftest import matrix_with_singular_values, stand_in_stdout

from htsr.cli import main
from htsr.compare import (
    METRIC_DIRECTIONS,
    TREND_METRICS,
    Comparison,
    compare,
    compare_results,
    format_comparison,
    format_distances,
    layer_distances,
    linear_cka,
    spearman,
)
from htsr.errors import OptionError
from htsr.results import SUMMARY_METRICS, atomic_write  # noqa: F401  (atomic_write: used by to_csv)


def _strict_json(text: str):
    def refuse(c):
        raise ValueError(f"non-strict JSON constant {c}")

    return json.loads(text, parse_constant=refuse)


def _brute_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """HSIC form with the explicit centring matrix H = I − 11ᵀ/n: tr(KHLH) / √(tr(KHKH)·tr(LHLH))."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    KH, LH = K @ H, L @ H
    return float(np.trace(KH @ LH) / np.sqrt(np.trace(KH @ KH) * np.trace(LH @ LH)))


def _orthogonal(p: int, seed: int) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return Q


# ---------------------------------------------------------------------------------------------- CKA


@pytest.mark.parametrize("shape", [(40, 7), (7, 40), (30, 30)])
def test_cka_of_a_matrix_with_itself_is_one(shape):
    W = np.random.default_rng(1).standard_normal(shape) + 3.0  # an offset: the centring must remove it
    assert linear_cka(W, W) == pytest.approx(1.0, abs=1e-12)  # numerator = denominator up to rounding, ~2e-16


@pytest.mark.parametrize("shape", [(50, 12), (12, 50)])  # feature-side and kernel-side (n x n) forms
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(shape):
    rng = np.random.default_rng(2)
    X = rng.standard_normal(shape)
    Y = X + 0.7 * rng.standard_normal(shape)
    ref = linear_cka(X, Y)
    assert 0.2 < ref < 0.99  # far from 0 and 1 (0.72, 0.93 here): the invariances below are not trivial
    Q = _orthogonal(shape[1], 3)
    assert linear_cka(3.7 * X @ Q, Y) == pytest.approx(ref, abs=1e-12)  # float64 rounding of the products, ~1e-16
    assert linear_cka(X, 0.01 * Y @ _orthogonal(shape[1], 4)) == pytest.approx(ref, abs=1e-12)  # (as above)
    # also a mean added to every example (a column offset) changes nothing: the columns are centred
    assert linear_cka(X + rng.standard_normal(shape[1]), Y) == pytest.approx(ref, abs=1e-12)  # (rounding, ~5e-16)


@pytest.mark.parametrize("n,p,q", [(9, 4, 4), (6, 11, 3), (5, 5, 8), (20, 3, 17)])
def test_cka_matches_brute_force_with_centring_matrix(n, p, q):
    rng = np.random.default_rng(n * 100 + p)
    X = rng.standard_normal((n, p)) + 1.5
    Y = X[:, :1] * rng.standard_normal((1, q)) + rng.standard_normal((n, q))
    # the same sums in another order (CKA ≤ 1): float64 rounding, measured ≤ 6e-16; 1e-10 is loose
    assert linear_cka(X, Y) == pytest.approx(_brute_cka(X, Y), abs=1e-10)


def test_cka_and_distances_of_a_tall_pair_are_summed_in_chunks_without_float64_copies(monkeypatch):
    """The feature-side CKA and the Frobenius sums run over chunks of rows in float64 (an untied 128 256 x 3 072
    embedding's distances had made four float64 copies, 12 GB): the same numbers as the brute force over several
    chunks, and the memory they take a fraction of the float32 inputs'."""
    import htsr.compare as C
    from conftest import traced_peak

    rng = np.random.default_rng(11)
    X = (rng.standard_normal((3000, 20)) + 1.0).astype(np.float32)
    Y = (X[:, :1] * rng.standard_normal((1, 30)) + rng.standard_normal((3000, 30))).astype(np.float32)
    monkeypatch.setattr(C, "_CHUNK", 5000)  # 100 rows a chunk: 30 chunks
    ref = _brute_cka(X.astype(np.float64), Y.astype(np.float64))
    assert C.linear_cka(X, Y) == pytest.approx(ref, abs=1e-10)  # (float64 sums in another order: ~1e-15)
    W = Y + np.float32(0.1) * rng.standard_normal(Y.shape).astype(np.float32)
    want = float(np.sum((W.astype(np.float64) - Y.astype(np.float64)) ** 2))
    assert C._sum_of_squares(W, Y) == pytest.approx(want, rel=1e-12)  # (float64 sums of the same differences)
    assert C._sum_of_squares(Y) == pytest.approx(float(np.sum(Y.astype(np.float64) ** 2)), rel=1e-12)
    monkeypatch.setattr(C, "_CHUNK", 1 << 21)
    big = rng.standard_normal((200_000, 40)).astype(np.float32)  # 32 MB
    for call in (lambda: C.linear_cka(big, big), lambda: C._sum_of_squares(big, big)):
        # a chunk of 2 M float64 entries (16 MB) and one more of its size (a product's transposed copy, the other
        # operand's cast) at most; the whole float64 copies had taken 2 × the input (the sums) and 8 × (CKA)
        assert traced_peak(call)[1] < 1.2 * big.nbytes


def test_cka_of_independent_gaussians_is_at_chance_level():
    """For independent n x p Gaussian X, Y: E‖YᵀX‖² ≈ n·p², ‖XᵀX‖² ≈ n·p·(n + p), so CKA ≈ p/(n + p)
    (0.0244 for 2000 x 50; seed spread ≈ 0.0007) — small only because n ≫ p."""
    rng = np.random.default_rng(5)
    n, p = 2000, 50
    chance = p / (n + p)
    vals = [linear_cka(rng.standard_normal((n, p)), rng.standard_normal((n, p))) for _ in range(3)]
    for v in vals:
        assert abs(v - chance) < 0.2 * chance  # 7 standard deviations
        assert v < 0.05


def test_cka_without_variance_is_nan_and_shapes_are_checked():
    X = np.random.default_rng(0).standard_normal((10, 3))
    assert math.isnan(linear_cka(np.ones((10, 3)), X))
    with pytest.raises(ValueError):
        linear_cka(X, X[:5])


def test_spearman_known_answers():
    # ranks are small integers: these three are exact (approx's default rel 1e-6 is ample)
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # scipy.stats.spearmanr
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert spearman([1, float("nan"), 3], [1, 5, 2]) == pytest.approx(1.0)
    # a NaN on the other side drops its pair too (had been checked on x only): [1, 3] against [2, 1]
    assert spearman([1, 2, 3], [2, float("nan"), 1]) == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------- models


def _powerlaw_model(alpha: float, seed: int, extra: dict | None = None) -> dict[str, np.ndarray]:
    """Three 120 x 60 layers whose ESD is exactly λ_i = i^(−1/(α−1)) (rank-size law of a Pareto tail of
    density exponent α): heavy-tailedness ordered by construction."""
    s = np.arange(1, 61, dtype=np.float64) ** (-0.5 / (alpha - 1.0))
    m = {f"enc.l{i}.weight": matrix_with_singular_values(s, 120, 60, seed=seed + i) for i in range(3)}
    m.update(extra or {})
    return m


@pytest.fixture(scope="module")
def three_models():
    # given out of order: the ranking must come from alpha, not from the order
    return compare([_powerlaw_model(3.0, 10), _powerlaw_model(2.0, 20), _powerlaw_model(5.0, 30)],
                   labels=["mid", "heavy", "light"], tails=False, workers=1)


def test_ranking_by_alpha_follows_the_construction(three_models):
    c = three_models
    assert isinstance(c, Comparison)
    assert c.metric == "alpha" and c.ascending is True and c.direction_from == "default"
    assert [e.label for e in c.ranking] == ["heavy", "mid", "light"]
    assert [e.rank for e in c.ranking] == [1, 2, 3]
    alphas = {lab: c.summary_value(lab, "alpha") for lab in c.labels}
    # each model's mean alpha is its own analysis' (the same rows, averaged again here)
    for lab, model in (("mid", _powerlaw_model(3.0, 10)), ("heavy", _powerlaw_model(2.0, 20)),
                       ("light", _powerlaw_model(5.0, 30))):
        want = np.mean([r.alpha for r in htsr.analyze(model, tails=False, workers=1).layers])
        assert alphas[lab] == pytest.approx(want, rel=1e-12)  # (float64 sums in another order)
    # and near the construction: the KS fit of 60 rank-size eigenvalues is biased up by a few % (measured 2.052,
    # 3.104, 5.208): 4 % holds all three; a fit off by one exponent step would not
    assert alphas["heavy"] == pytest.approx(2.0, rel=0.04)
    assert alphas["mid"] == pytest.approx(3.0, rel=0.04)
    assert alphas["light"] == pytest.approx(5.0, rel=0.045)
    # per layer: every layer is in every model, in the first model's order, values in label order
    assert c.common_layers == ("enc.l0", "enc.l1", "enc.l2") and c.partial_layers == ()
    for vals in c.layer_values:
        assert vals[1] < vals[0] < vals[2]
    assert c.num_common_finite == 3
    # (math.fsum against np.mean of the same three values: rounding)
    assert c.common_means == pytest.approx(tuple(np.mean(c.layer_values, axis=0)), rel=1e-12)
    assert c.layer_shapes[0] == ("120x60",) * 3


def test_ranking_direction_can_be_overridden_and_other_metrics(three_models):
    c = compare_results(three_models.results, three_models.labels, "alpha", ascending=False)
    assert [e.label for e in c.ranking] == ["light", "mid", "heavy"] and c.direction_from == "user"
    # (the text had not been checked for a direction given: it must not claim HTSR's reading for it)
    assert "ranking by mean alpha (higher is better, as given; 1 = highest): 1. light" in format_comparison(c)
    c = compare_results(three_models.results, three_models.labels, "stable_rank")  # a default direction too
    assert c.ascending is True and c.direction_from == "default"
    c = compare_results(three_models.results, three_models.labels, "log_spectral_norm")
    assert c.ascending is METRIC_DIRECTIONS["log_spectral_norm"] is True
    assert c.layer_metric == "log_spectral_norm"  # a per-layer column: shown side by side
    c = compare_results(three_models.results, three_models.labels, "num_over_trained")
    assert c.layer_metric == "alpha"  # a count is no per-layer column
    with pytest.raises(OptionError, match=r"no agreed direction .*: pass ascending=True \(lower first\) or "
                                          r"ascending=False \(higher first\)$"):
        compare_results(three_models.results, three_models.labels, "D")
    assert compare_results(three_models.results, three_models.labels, "D", ascending=True).ascending is True
    with pytest.raises(OptionError, match="not a summary column"):
        compare_results(three_models.results, three_models.labels, "bogus")


def test_every_alpha_like_metric_is_lower_is_better_and_every_summary_metric_is_stated():
    """The directions as the module docstring states them; only the alpha-like five had been checked (a count
    of failed layers read as higher-is-better, or stable_rank without a direction, went unseen)."""
    for m in ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm", "bayes_alpha",
              "stable_rank", "entropy", "mp_softrank", "num_under_trained", "num_over_trained", "num_uncertain",
              "num_no_power_law", "num_failed", "num_with_traps"):
        assert METRIC_DIRECTIONS[m] is True, m
    assert METRIC_DIRECTIONS["rand_js_distance"] is False
    for m in ("D", "sigma", "pl_pvalue", "erg_delta_lambda_min"):
        assert METRIC_DIRECTIONS[m] is None, m
    assert set(SUMMARY_METRICS) <= set(METRIC_DIRECTIONS)
    assert set(TREND_METRICS) <= set(SUMMARY_METRICS)


def test_summary_table_and_text(three_models):
    c = three_models
    assert len(c.summary) == 3 and all(len(r) == len(c.summary_columns) for r in c.summary)
    assert {"num_layers", "num_fitted", "alpha", "log_norm", "num_heavy_tailed"} <= set(c.summary_columns)
    assert c.summary_value("mid", "num_layers") == 3
    text = format_comparison(c)
    lines = text.splitlines()
    assert lines[1].split()[0] == "model" and lines[1].split()[-1] == "rank"
    assert "ranking by mean alpha (lower is better in HTSR's reading, not a measured accuracy; 1 = lowest): 1. heavy" in text
    assert "3 layers present in every model" in text
    assert "\t" not in text
    # layers=False leaves out the per-layer table, and only it (had been unchecked)
    short = format_comparison(c, layers=False)
    assert "per layer" not in short and "enc.l0" not in short and text.startswith(short + "\n\nalpha per layer")
    # columns= chooses the summary columns shown (the ranking metric kept; had been unchecked)
    assert format_comparison(c, columns=["num_layers", "log_norm"]).splitlines()[1].split() == [
        "model", "num_layers", "log_norm", "alpha", "rank"]


def test_layer_name_intersection():
    rng = np.random.default_rng(0)

    def w(seed):
        return np.random.default_rng(seed).standard_normal((80, 55))

    m1 = {"a.weight": w(1), "b.weight": w(2), "c.weight": w(3)}
    m2 = {"b.weight": w(4), "a.weight": w(5)}
    m3 = {"b.weight": w(6), "c.weight": w(7), "d.weight": rng.standard_normal((70, 52))}
    c = compare([m1, m2, m3], tails=False, mp_fit=False, setol=False, workers=1)
    assert c.labels == ("model1", "model2", "model3")
    assert c.common_layers == ("b",)
    assert dict(c.partial_layers) == {"a": ("model1", "model2"), "c": ("model1", "model3"), "d": ("model3",)}
    assert c.num_common_finite == 1 and c.common_means == c.layer_values[0]
    assert "3 layers present in only some models:" in format_comparison(c)  # a, c and d (1 common: b)
    # the JSON names every model that has a partial layer (only the attribute had been checked)
    assert _strict_json(c.json_text())["partial_layers"] == [
        {"name": "a", "present_in": ["model1", "model2"]}, {"name": "c", "present_in": ["model1", "model3"]},
        {"name": "d", "present_in": ["model3"]}]


def _default_labels_of(names):
    from htsr.compare import _default_labels

    return _default_labels(names)


def test_labels_are_checked_and_defaults_come_from_paths(tmp_path):
    m = {"fc.weight": np.random.default_rng(0).standard_normal((60, 52))}
    with pytest.raises(OptionError, match="labels"):
        compare([m, m], labels=["x"])
    with pytest.raises(OptionError, match="distinct"):
        compare([m, m], labels=["x", "x"])
    with pytest.raises(OptionError, match=r"must be distinct and non-empty, got \['', 'y'\]"):  # (empty: unchecked)
        compare([m, m], labels=["", "y"])
    with pytest.raises(OptionError, match="at least two"):
        compare([m])
    # one model is iterable too (a state dict's keys, a path's characters, an nn.Sequential's children)
    for one in (m, "model.npz", tmp_path):
        with pytest.raises(OptionError, match="a list of two or more models, not one"):
            compare(one)
    with pytest.raises(OptionError):
        compare([m, m], bogus_option=1)
    for d in ("u", "v"):
        (tmp_path / d).mkdir()
        np.savez(tmp_path / d / "model.npz", **m)
    c = compare([tmp_path / "u" / "model.npz", tmp_path / "v" / "model.npz"], tails=False)
    assert c.labels == ("u/model", "v/model")
    # as many folders as tell them apart (one had been added, then '#i': 'checkpoint-500/model#1'); the same
    # path twice numbered
    for lr in ("1e-4", "3e-4"):
        (tmp_path / "runs" / lr / "checkpoint-500").mkdir(parents=True)
        np.savez(tmp_path / "runs" / lr / "checkpoint-500" / "model.npz", **m)
    runs = [tmp_path / "runs" / lr / "checkpoint-500" / "model.npz" for lr in ("1e-4", "3e-4")]
    assert compare(runs, tails=False).labels == ("1e-4/checkpoint-500/model", "3e-4/checkpoint-500/model")
    # (the labels alike numbered among themselves; the third, unique, had been numbered too)
    assert compare([runs[0], runs[0], runs[1]], tails=False).labels == (
        "1e-4/checkpoint-500/model#1", "1e-4/checkpoint-500/model#2", "3e-4/checkpoint-500/model")
    # a number never gives another model's label ('m#1' given beside 'm' twice had made 'm#1' twice)
    assert _default_labels_of(["m", "m", "m#1"]) == ["m#2", "m#3", "m#1"]
    # '.' and '..' are labelled by the folders they are (they had been 'model1' and '..')
    from htsr.compare import _default_labels

    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "runs" / "1e-4" / "checkpoint-500")
        assert _default_labels([".", os.path.join("..", "..", "3e-4", "checkpoint-500")]) == [
            "1e-4/checkpoint-500", "3e-4/checkpoint-500"]
        os.chdir(tmp_path / "runs" / "1e-4")
        assert _default_labels(["..", "checkpoint-500"]) == ["runs", "checkpoint-500"]
    finally:
        os.chdir(cwd)
    assert compare([runs[0], runs[0]], tails=False).labels == ("model#1", "model#2")
    # two files of one folder alike but for their suffix: their whole names (no folder tells them apart; they had
    # become the whole absolute path, numbered, and a third path's label too)
    from safetensors.numpy import save_file

    save_file(m, str(runs[0].with_suffix(".safetensors")))
    np.savez(runs[0].parent / "other.npz", **m)
    got = compare([runs[0], runs[0].with_suffix(".safetensors"), runs[0].parent / "other.npz"], tails=False).labels
    assert got == ("model.npz", "model.safetensors", "other")
    # folders by their whole names (dots are no suffix: 'Qwen2.5-0.5B' had been 'Qwen2.5-0'); results by the
    # path they analysed (had been their description: 'x (a LoRA …) on base y' was labelled by the base)
    for d in ("Qwen2.5-0.5B", "Qwen2.5-1.5B"):
        (tmp_path / d).mkdir()
        np.savez(tmp_path / d / "model.npz", **m)
    assert compare([tmp_path / "Qwen2.5-0.5B", tmp_path / "Qwen2.5-1.5B"], tails=False).labels == (
        "Qwen2.5-0.5B", "Qwen2.5-1.5B")
    results = [htsr.analyze(tmp_path / d, tails=False) for d in ("Qwen2.5-0.5B", "Qwen2.5-1.5B")]
    results[0] = dataclasses.replace(results[0], source=f"{results[0].source} on base {tmp_path / 'base'}")
    assert compare_results(results).labels == ("Qwen2.5-0.5B", "Qwen2.5-1.5B")
    assert compare_results([htsr.analyze(m, tails=False)] * 2).labels == ("model1", "model2")
    # results whose paths are no longer on disk (read from JSON written on another machine): a weight file's
    # suffix is stripped as it is from a file that exists ('run1/model.safetensors' had kept it), a folder's
    # dots are kept
    def moved(*paths):
        return [dataclasses.replace(results[0], path=str(tmp_path / "elsewhere" / p)) for p in paths]

    assert compare_results(moved("run1/model.safetensors", "run2/model.safetensors")).labels == (
        "run1/model", "run2/model")
    assert compare_results(moved("Qwen2.5-0.5B", "mnist_net_model.gz")).labels == ("Qwen2.5-0.5B", "mnist_net_model")
    # a suffix in capitals (a file saved on Windows) is a weight file's suffix too (only lower case had been tried)
    assert compare_results(moved("run1/MODEL.PT", "run2/MODEL.PT")).labels == ("run1/MODEL", "run2/MODEL")
    # compare's results, and an opened reader's, keep their paths (compare_results of them: the same labels)
    c = compare([tmp_path / "u" / "model.npz", tmp_path / "Qwen2.5-0.5B" / "model.npz"], tails=False)
    assert compare_results(c.results).labels == c.labels == ("u/model", "Qwen2.5-0.5B/model")
    from htsr.io import open_source

    r = htsr.analyze(open_source(tmp_path / "u" / "model.npz"), tails=False)
    assert r.path == str(tmp_path / "u" / "model.npz")


def test_json_is_strict_and_csv_round_trips(three_models, tmp_path):
    c = three_models
    doc = _strict_json(c.json_text())
    assert doc["labels"] == ["mid", "heavy", "light"] and doc["metric"] == "alpha"
    assert doc["direction"] == "lower is better"
    assert [r["label"] for r in doc["ranking"]] == ["heavy", "mid", "light"]
    assert doc["summary"][0]["share_plausible_pl"] is None  # NaN without the bootstrap
    assert doc["layers"][0]["values"]["heavy"] == pytest.approx(c.layer_values[0][1])  # (JSON keeps repr: exact)
    assert doc["options"]["tails"] is False
    assert doc["common_layer_means"]["num_layers"] == 3 and doc["common_layer_means"]["layer_metric"] == "alpha"
    c.to_csv(tmp_path / "c.csv")
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "name,kind,shape,alpha:mid,alpha:heavy,alpha:light"
    assert lines[1].startswith("enc.l0,dense,120x60,")
    assert float(lines[1].split(",")[4]) == c.layer_values[0][1]
    assert [p.name for p in tmp_path.iterdir()] == ["c.csv"]  # no temporary left behind


# ---------------------------------------------------------------------------------------------- distances


def _base_and_model():
    rng = np.random.default_rng(7)
    base = {"fc.weight": rng.standard_normal((90, 60)),  # dense
            "wide.weight": rng.standard_normal((30, 70)),  # rows < cols: transposed for CKA
            "conv.weight": rng.standard_normal((16, 8, 3, 3)),  # pooled conv2d: 9 matrices 16 x 8
            "resized.weight": rng.standard_normal((40, 52)),
            "only_base.weight": rng.standard_normal((20, 20))}
    model = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in base.items() if k != "only_base.weight"}
    model["fc.weight"] = base["fc.weight"].copy()  # unchanged layer
    model["resized.weight"] = rng.standard_normal((40, 48))
    model["only_model.weight"] = rng.standard_normal((20, 20))
    return model, base


def test_layer_distances_known_answers():
    model, base = _base_and_model()
    d = {r.name: r for r in layer_distances(model, base)}
    assert list(d) == ["fc", "wide", "conv", "resized", "only_model", "only_base"]
    # identical layer
    fc = d["fc"]
    assert fc.status == "ok"
    assert fc.frobenius == 0 and fc.relative_frobenius == 0 and fc.js_distance == 0 and fc.lambda_max_change == 0
    assert fc.cka == pytest.approx(1.0, abs=1e-12)  # numerator = denominator up to float64 rounding
    assert fc.cka_chance == pytest.approx(60 / 150)  # the same closed form M / (N + M): exact
    # Frobenius and CKA against numpy, orientation: the longer side as examples
    wide = d["wide"]
    diff = model["wide.weight"] - base["wide.weight"]
    # (float64 norms of the same differences: rounding, measured 0)
    assert wide.frobenius == pytest.approx(np.linalg.norm(diff), rel=1e-12)
    assert wide.relative_frobenius == pytest.approx(np.linalg.norm(diff) / np.linalg.norm(base["wide.weight"]),
                                                    rel=1e-12)
    # (CKA: float64 rounding as in test_cka_matches_brute_force_with_centring_matrix)
    assert wide.cka == pytest.approx(_brute_cka(model["wide.weight"].T, base["wide.weight"].T), abs=1e-10)
    assert 0 < wide.js_distance <= 1
    ev = lambda W: np.linalg.svd(W, compute_uv=False)[0] ** 2
    assert wide.lambda_max == pytest.approx(ev(model["wide.weight"]), rel=1e-4)  # float32 Gram path
    # ((a − b) / b against a / b − 1: rounding, measured 8e-16)
    assert wide.lambda_max_change == pytest.approx(wide.lambda_max / wide.lambda_max_base - 1, rel=1e-12)
    # pooled conv: one CKA over the 9 kernel positions stacked along the examples (the longer side 16)
    conv = d["conv"]
    stack = lambda W: np.concatenate([W[:, :, i, j] for i in range(3) for j in range(3)])
    assert conv.num_matrices == 9 and conv.frobenius == pytest.approx(  # (9 positions' fsum vs one norm: rounding)
        np.linalg.norm(model["conv.weight"] - base["conv.weight"]), rel=1e-12)
    # (CKA: float64 rounding, as above; chance: the same closed form M / (k·N + M), exact)
    assert conv.cka == pytest.approx(_brute_cka(stack(model["conv.weight"]), stack(base["conv.weight"])), abs=1e-10)
    assert conv.cka_chance == pytest.approx(8 / (9 * 16 + 8))
    assert conv.cka > 0.8  # 0.3 noise on unit entries: still the same layer
    # mismatches are listed, never compared
    assert d["resized"].status == "skipped: shape 40x48 differs from the base's 40x52"
    # the row a skipped one was matched to is named (as for a measured row); a model-only row has none
    assert (d["resized"].base_name, d["fc"].base_name, d["only_model"].base_name) == ("resized", "fc", "")
    assert d["only_model"].status.startswith("skipped: only in the model")
    assert d["only_base"].status.startswith("skipped: only in the base")
    assert all(math.isnan(d[k].cka) for k in ("resized", "only_model", "only_base"))
    text = format_distances(list(d.values()))
    assert "3 layers compared, 3 skipped, 0 failed" in text


def test_float32_distances_are_float64_sums_and_each_spectrum_s_zeros_are_its_own():
    """Float32 weights: the Frobenius distance is float64 arithmetic on them (a float32 difference and norm
    would be ~1e-7 off). The JS distance counts each spectrum's zeros below that spectrum's own floor: a rank-5
    float32 model layer has 35 zeros, a rank-10 base of a largest eigenvalue 1e5 times the model's 30 (its
    float32 round-off, 2e-7 to 8e-5, lies above the model's floor, 1.6e-8, and below its own, 5.6e-3). The reference is scipy's
    Jensen-Shannon distance of the two histograms built here."""
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(11)
    model = {"l.weight": (30.0 * rng.standard_normal((60, 5)) @ rng.standard_normal((5, 40))).astype(np.float32)}
    s = np.sqrt(np.logspace(5, 12, 10))  # eigenvalues 1e5 … 1e12 across the model's 8.6e5 … 2.9e6
    base = {"l.weight": matrix_with_singular_values(s, 60, 40, seed=3).astype(np.float32)}
    d = layer_distances(model, base, precision="accurate")[0]
    a, b = (x["l.weight"].astype(np.float64) for x in (model, base))
    assert d.frobenius == pytest.approx(np.linalg.norm(a - b), rel=1e-12)  # float64 norms: a few ulps
    assert d.relative_frobenius == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(b), rel=1e-12)  # (ditto)
    ea, eb = (np.linalg.svd(x, compute_uv=False) ** 2 for x in (a, b))
    za, zb = ea[:5], eb[:10]  # the model's 5 directions, the base's 10
    logs = np.log10(np.concatenate([za, zb]))
    edges = np.linspace(logs.min(), logs.max(), 10 + 1)  # Rice's 2·40^(1/3) = 7 bins, raised to the least, 10
    p = np.concatenate([[35], np.histogram(np.log10(za), edges)[0]])
    q = np.concatenate([[30], np.histogram(np.log10(zb), edges)[0]])
    assert d.js_distance == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)  # the same sums: rounding


def test_layer_distances_of_identical_models_and_options():
    model, _ = _base_and_model()
    rows = layer_distances(model, {k: v.copy() for k, v in model.items()}, layers="conv|fc", precision="accurate")
    assert [r.name for r in rows] == ["fc", "conv"]
    for r in rows:
        assert r.status == "ok" and r.frobenius == 0 and r.js_distance == 0
        assert r.cka == pytest.approx(1.0, abs=1e-12)  # numerator = denominator up to float64 rounding
    with pytest.raises(OptionError, match="compares its two sources; the base option does not apply"):
        layer_distances(model, model, base=model)
    bad = dict(model, **{"fc.weight": np.full((90, 60), np.nan)})
    assert {r.name: r for r in layer_distances(bad, model)}["fc"].status == "failed: NaN or Inf in the weights"



def test_layer_distances_refuse_the_options_of_a_fit():
    """layer_distances took every analysis option and used eight: bootstrap=200, xmin=3.0, randomize … gave
    the same distances without a word. compare --base-distances passes it only those eight."""
    model, base = _base_and_model()
    for kw in (dict(bootstrap=200), dict(xmin=3.0), dict(randomize=True, seed=9), dict(farms_aspect=2.0)):
        with pytest.raises(htsr.OptionError, match=f"option '{next(iter(kw))}' does not change the distances"):
            layer_distances(model, base, **kw)
    layer_distances(model, base, precision="accurate", kinds=["dense"], workers=1)  # these select and shape rows


def test_layer_distances_match_names_by_a_leading_component_as_base_does():
    """A task model's 'bert.encoder…' against its base's 'encoder…': the rows are paired (compare's alpha
    table already paired them), under the model's names; a base-only row keeps the base's name."""
    model, base = _base_and_model()
    task = {f"bert.{k}": v for k, v in model.items()}
    plain = {r.name: r for r in layer_distances(model, base)}
    rows = {r.name: r for r in layer_distances(task, base)}
    assert {n for n in rows if n.startswith("bert.")} == {f"bert.{n}" for n in plain if not n == "only_base"}
    for n, r in plain.items():
        got = rows[n if n == "only_base" else f"bert.{n}"]
        assert got.status == r.status, n
        assert got.frobenius == r.frobenius or (math.isnan(got.frobenius) and math.isnan(r.frobenius)), n
    assert sum(r.status == "ok" for r in rows.values()) == 3
    # each row names the base's row it was measured against, and the table says the names were aligned
    assert all(r.base_name == r.name.removeprefix("bert.") for r in rows.values() if r.base_name)
    assert all(r.base_name == r.name for r in plain.values() if r.base_name)
    assert rows["only_base"].base_name == "only_base"
    assert "(4 against a base row of another name" in format_distances(list(rows.values()))
    assert "another name" not in format_distances(list(plain.values()))

# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def npz_pair(tmp_path):
    rng = np.random.default_rng(11)
    base = {"enc.fc1.weight": rng.standard_normal((100, 60)).astype(np.float32),
            "enc.fc2.weight": rng.standard_normal((80, 55)).astype(np.float32),
            "enc.fc1.bias": np.zeros(100, np.float32)}
    tuned = {k: v + 0.2 * rng.standard_normal(v.shape).astype(np.float32) for k, v in base.items()}
    np.savez(tmp_path / "tuned.npz", **tuned)
    np.savez(tmp_path / "base.npz", **base)
    return tmp_path / "tuned.npz", tmp_path / "base.npz"


def test_cli_compare_prints_writes_and_distances(npz_pair, tmp_path, capsys):
    a, b = npz_pair
    out = tmp_path / "out"
    rc = main(["compare", str(a), str(b), "--labels", "ft,pre", "--base-distances", "--out", str(out),
               "--no-progress", "--no-tails"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ranking by mean alpha (lower is better in HTSR's reading, not a measured accuracy; 1 = lowest)" in text
    assert "alpha per layer, 2 layers present in every model" in text
    assert "distances of ft from pre, layer by layer:" in text
    assert "2 layers compared, 0 skipped, 0 failed" in text
    assert sorted(p.name for p in out.iterdir()) == ["comparison.csv", "comparison.json", "distances.csv"]
    doc = _strict_json((out / "comparison.json").read_text())
    assert doc["labels"] == ["ft", "pre"] and doc["options"]["tails"] is False
    # the document --json prints, distances included; counts as integers, as in summary.json
    assert [d["name"] for d in doc["distances"]] == ["enc.fc1", "enc.fc2"]
    assert [(s["num_layers"], s["num_fitted"]) for s in doc["summary"]] == [(2, 2), (2, 2)]
    assert all(type(s["num_layers"]) is int for s in doc["summary"])
    assert main(["compare", str(a), str(b), "--labels", "ft,pre", "--base-distances", "--json", "--no-progress",
                 "--no-tails"]) == 0
    assert _strict_json(capsys.readouterr().out) == doc
    assert (out / "comparison.csv").read_text().splitlines()[0] == "name,kind,shape,alpha:ft,alpha:pre"
    assert (out / "distances.csv").read_text().splitlines()[1].startswith("enc.fc1,dense,100x60,100,60,1,ok,")


def test_cli_compare_removes_an_earlier_runs_distances(npz_pair, tmp_path, capsys):
    """Without --base-distances, a distances.csv an earlier run left in --out would be taken for this
    comparison's: it is removed once the new files are in place, and the run says so."""
    a, b = npz_pair
    out = tmp_path / "out"
    assert main(["compare", str(a), str(b), "--base-distances", "--out", str(out), "-q", "--no-tails"]) == 0
    assert (out / "distances.csv").is_file()
    assert main(["compare", str(b), str(a), "--out", str(out), "--no-progress", "--no-tails"]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["comparison.csv", "comparison.json"]
    assert f"removed {out / 'distances.csv'} (an earlier run's; this run has no such output)" in text
    assert f"wrote {out / 'comparison.csv'}, {out / 'comparison.json'}\n" in text


def test_cli_compare_checks_matplotlib_before_the_analyses(npz_pair, tmp_path, capsys, monkeypatch):
    """--figure without matplotlib: refused before minutes of analysis, not after them (when the --out
    results would be lost with it)."""
    a, b = npz_pair
    import htsr.plot as plot
    from htsr.errors import MissingExtraError

    def missing():
        raise MissingExtraError("matplotlib", "plot", "drawing figures")

    monkeypatch.setattr(plot, "_figure_class", missing)
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: pytest.fail("analysed first"))
    assert main(["compare", str(a), str(b), "--figure", str(tmp_path / "t.png"), "--out", str(tmp_path / "o")]) == 2
    assert "matplotlib" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.npz", "tuned.npz"]  # no --out written


def test_cli_compare_notes_a_coarse_bootstrap(npz_pair, capsys):
    """The same note as analyze: the options come through one parser."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--bootstrap", "10", "--no-progress", "--no-tails"]) == 0
    assert capsys.readouterr().err.startswith("htsr: note: --bootstrap 10: with fewer than 100 replicates")


def test_cli_compare_json_descending_and_figure(npz_pair, tmp_path, capsys, monkeypatch):
    a, b = npz_pair
    calls = []
    fake = types.ModuleType("htsr.plot")
    fake.panels_image = lambda panels, path, ncols=2: calls.append(([p.title for p in panels], path)) or b"png"
    fake.can_draw = lambda path: "png"
    monkeypatch.setitem(sys.modules, "htsr.plot", fake)
    fig = tmp_path / "trend.png"
    rc = main(["compare", str(a), str(b), "--json", "--descending", "--metric", "log_norm", "--base-distances",
               "--figure", str(fig), "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    doc = _strict_json(captured.out)
    assert doc["metric"] == "log_norm" and doc["ascending"] is False and doc["direction_from"] == "user"
    assert doc["labels"] == ["tuned", "base"]
    assert [d["name"] for d in doc["distances"]] == ["enc.fc1", "enc.fc2"]
    assert f"wrote {fig}" in captured.err
    assert calls == [([f"{m} across models" for m in TREND_METRICS + ("log_norm",)], fig)]
    assert fig.read_bytes() == b"png"


def test_cli_compare_opens_the_base_once(npz_pair, tmp_path, monkeypatch):
    """--base: one reader for every model's check and analysis (not one opening per model and per check);
    comparison.json records it by its path."""
    a, b = npz_pair
    import htsr.io as io

    opened = []
    real = io._open_path
    monkeypatch.setattr(io, "_open_path", lambda p: opened.append(p.name) or real(p))
    out = tmp_path / "out"
    assert main(["compare", str(a), str(a), "--labels", "x,y", "--base", str(b), "--out", str(out), "--no-progress",
                 "--no-tails", "--quiet"]) == 0
    assert sorted(opened) == ["base.npz", "tuned.npz", "tuned.npz"]
    doc = _strict_json((out / "comparison.json").read_text())
    assert doc["options"]["base"] == str(b)
    assert [s["num_layers"] for s in doc["summary"]] == [2, 2]  # the deltas of both fc layers


def test_cli_compare_checks_every_source_first(npz_pair, tmp_path, capsys, monkeypatch):
    a, _ = npz_pair
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model")
    import sys

    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: pytest.fail("analysed first"))
    assert main(["compare", str(a), str(bad)]) == 2
    assert "notes.txt: unknown file format" in capsys.readouterr().err


def test_a_model_with_no_layer_under_the_filters_fails_before_any_analysis(npz_pair, tmp_path, capsys, monkeypatch):
    a, _ = npz_pair
    np.savez(tmp_path / "other.npz", **{"dec.fc.weight": np.ones((60, 50))})
    import sys

    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: pytest.fail("analysed first"))
    assert main(["compare", str(a), str(tmp_path / "other.npz"), "--layers", "^enc"]) == 2
    assert capsys.readouterr().err == (f"htsr: error: {tmp_path / 'other.npz'}: no analysable layer: none of its 1 "
                                       "tensors matches the filters: 1 not matched by --layers (dec.fc.weight); --layers is "
                                       "matched against row names, a tensor's name without '.weight' (dec.fc)\n")


def test_models_without_a_shared_layer_name_say_so(npz_pair, tmp_path):
    a, _ = npz_pair
    other = {f"wrapper.{k.replace('fc', 'dense')}": v for k, v in np.load(a).items()}  # no prefix change pairs them
    c = compare([a, other], labels=["tuned", "wrapped"], tails=False)
    assert c.common_layers == ()
    assert ("no layer name is in every model, so no layer is compared side by side (first names: tuned 'enc.fc1'; "
            "wrapped 'wrapper.enc.dense1'): the models name their layers differently") in format_comparison(c)


def test_cli_compare_errors(npz_pair, tmp_path, capsys):
    a, b = npz_pair
    assert main(["compare", str(a), str(b), str(a), "--labels", "x,y,z", "--base-distances"]) == 2
    assert "--base-distances needs exactly two models" in capsys.readouterr().err
    # the distances are of the two models' own weights: --base (the comparison of deltas) would not change them
    assert main(["compare", str(a), str(b), "--base-distances", "--base", str(b)]) == 2
    assert "--base-distances measures the two models' own weights, which --base does not change; run the " \
           "comparison of deltas (--base) and the distances as two commands" in capsys.readouterr().err  # (what to do)
    assert main(["compare", str(a)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--metric", "D"]) == 2
    # in the flags' terms (the API's message names its keyword: ascending=True)
    assert "no agreed direction (better when lower or higher): pass --ascending (lower first) or --descending " \
           "(higher first)" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--figure", str(tmp_path)]) == 2  # a folder, not a file
    assert "--figure" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(a), str(b), "--ascending", "--descending"])


def test_task_model_is_compared_under_its_base_names():
    """A fine-tuned task model ('bert.encoder…') against its base ('encoder…'): no name is shared, so the
    second model's rows are matched by dropping 'bert.'; the comparison says so."""
    rng = np.random.default_rng(11)
    base = {f"encoder.layer.{i}.weight": rng.standard_normal((200, 80)) for i in range(3)}
    tuned = {f"bert.{k}": v + 0.1 * rng.standard_normal(v.shape) for k, v in base.items()}
    tuned["classifier.weight"] = rng.standard_normal((200, 80))
    c = compare([base, tuned], labels=["base", "tuned"], min_evals=10)
    assert c.common_layers == ("encoder.layer.0", "encoder.layer.1", "encoder.layer.2")
    assert c.name_alignment == ("tuned: dropping 'bert.'",)
    assert [n for n, _ in c.partial_layers] == ["classifier"]
    assert "layer names matched to base's by tuned: dropping 'bert.'" in format_comparison(c)



def test_models_without_a_value_are_unranked_and_a_bad_figure_name_fails_first(npz_pair, tmp_path, capsys,
                                                                              monkeypatch):
    """Without --randomize no model would have a rand_js_distance: refused before any analysis (it analysed
    every model, then ranked none); results computed without it are unranked (no order among NaNs claims
    '1 = highest'); with a value for one model only, only that one is. A --figure name of no image format
    is refused before any model is analysed."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--metric", "rand_js_distance", "--no-progress", "--no-tails"]) == 2
    assert "--metric 'rand_js_distance' is computed only with --randomize" in capsys.readouterr().err
    # (and those the MP fit or SETOL compute, without them: every analysis ran, then ranked nothing)
    for metric, off, needs in (("mp_softrank", "--no-mp-fit", "the MP fit (no --no-mp-fit)"),
                               ("num_heavy_tailed", "--no-mp-fit", "the MP fit (no --no-mp-fit)"),
                               ("erg_delta_lambda_min", "--no-setol", "SETOL (no --no-setol)"),
                               # (the count reads only p-values of 100 replicates or more: 5 had ranked nothing)
                               ("num_no_power_law", "--bootstrap=5", "--bootstrap 100 or more")):
        assert main(["compare", str(a), str(b), "--metric", metric, "--ascending", off, "--no-progress"]) == 2
        assert f"--metric {metric!r} is computed only with {needs}" in capsys.readouterr().err
    # computed with enough: ranked (each model's count of layers whose power law is implausible)
    c = compare([a, b], metric="num_no_power_law", ascending=True, bootstrap=100, tails=False)
    assert all(e.rank is not None for e in c.ranking)
    c = compare_results([htsr.analyze(a, tails=False), htsr.analyze(b, tails=False)], ["tuned", "base"],
                        metric="rand_js_distance")
    assert "1 = highest): unranked (no value): tuned, base" in format_comparison(c)
    # the summary table's rank column says '-' for them (had been unchecked: an empty cell shifts the row)
    assert [ln.split()[-1] for ln in format_comparison(c).splitlines()[2:4]] == ["-", "-"]
    assert [e.rank for e in c.ranking] == [None, None]
    assert [r["rank"] for r in c.as_dict()["ranking"]] == [None, None]
    fitted = compare([a, b], metric="alpha", tails=False, min_evals=56)  # base's fc2 has 55: one model fits less
    assert all(e.rank is not None for e in fitted.ranking)
    none_fitted = compare_results([fitted.results[0], htsr.analyze(b, min_evals=500, tails=False)], ["x", "y"])
    assert [(e.label, e.rank) for e in none_fitted.ranking] == [("x", 1), ("y", None)]
    analysed = []
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: analysed.append(x))
    assert main(["compare", str(a), str(b), "--figure", str(tmp_path / "f.xyz"), "--no-progress"]) == 2
    assert f"htsr: error: --figure {tmp_path / 'f.xyz'}: cannot tell the image format" in capsys.readouterr().err
    assert analysed == []


def test_layer_metric_from_the_cli_and_a_bad_one_refused_before_any_analysis(npz_pair, capsys, monkeypatch):
    """compare(layer_metric=) had no flag: the CLI always showed --metric or alpha side by side. A bad column is
    refused before the analyses (it had been after them)."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--layer-metric", "stable_rank", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layer_metric"] == "stable_rank" and doc["common_layer_means"]["layer_metric"] == "stable_rank"
    want = {r.name: r.stable_rank for r in htsr.analyze(a).layers}
    label = doc["labels"][0]
    assert {row["name"]: row["values"][label] for row in doc["layers"]} == want  # (the column, as computed)
    analysed = []
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: analysed.append(x))
    assert main(["compare", str(a), str(b), "--layer-metric", "phase", "--no-progress"]) == 2
    assert "htsr: error: --layer-metric 'phase' is not a numeric per-layer column" in capsys.readouterr().err
    with pytest.raises(OptionError, match="layer_metric 'bogus' is not a numeric per-layer column"):
        compare([a, b], layer_metric="bogus")
    assert analysed == []


def test_a_layer_metric_no_model_would_have_is_refused_as_a_metric_is(npz_pair, tmp_path, capsys, monkeypatch):
    """--layer-metric took any numeric column: rand_js_distance without --randomize (or boot_alpha_lo without
    --bootstrap, loc_* without --localization …) was shown as a column of nan for every layer, and its mean over
    'the layers present in every model' as nan, exit 0. Refused now before any analysis, as --metric is, naming
    the option; saved runs none of which computed it, too (saying to analyse them again: the option itself
    changes nothing for a saved run). With the option, or a saved run that has it, it is shown."""
    a, b = npz_pair
    for run in ("s0", "s1"):
        assert main(["analyze", str(a), "--out", str(tmp_path / run), "--quiet", "--no-progress"]) == 0
    analysed = []
    real = sys.modules["htsr.analyze"].analyze
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: analysed.append(x) or real(*x, **k))
    for column, needs in (("rand_js_distance", "--randomize"), ("boot_alpha_lo", "--bootstrap N"),
                          ("loc_pr_tail_mean", "--localization"), ("raw_alpha", "--clip-xmax or --drop-top K")):
        assert main(["compare", str(a), str(b), "--layer-metric", column, "--no-progress"]) == 2
        assert capsys.readouterr().err == (f"htsr: error: --layer-metric {column!r} is computed only with {needs}: no "
                                           "model would have a value to show; add it, or show another column\n")
        assert main(["compare", str(tmp_path / "s0"), str(tmp_path / "s1"), "--layer-metric", column]) == 2
        assert capsys.readouterr().err == (
            f"htsr: error: --layer-metric {column!r} is computed only with {needs}, which no saved run was analysed "
            "with; analyse the models again with it, or show another column\n")
    assert analysed == []
    c = compare([a, b], layer_metric="raw_alpha", drop_top=1)
    assert c.layer_metric == "raw_alpha" and all(math.isfinite(v) for row in c.layer_values for v in row)


def test_models_given_after_an_option_are_models_in_their_order(npz_pair, capsys):
    """'htsr compare a --metric alpha b' had been 'unrecognized arguments: b' (argparse leaves a positional after
    an option over): the models are a, then b, as with the options last."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--metric", "alpha", "--json", "--no-progress"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["compare", str(a), "--metric", "alpha", str(b), "--json", "--no-progress"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == want and got["labels"][0] != got["labels"][1]
    with pytest.raises(SystemExit) as ei:  # (an unknown option among them is still one, with its value)
        main(["compare", str(a), "--metric", "alpha", str(b), "--bogus", "5"])
    assert ei.value.code == 2 and "unrecognized arguments: --bogus 5 (see" in capsys.readouterr().err


def test_a_hugging_face_cache_snapshot_is_labelled_by_its_repository():
    """A model in a Hugging Face cache (…/models--org--name/snapshots/<40-hex revision>) had been labelled by its
    revision hash, in the table and the ranking: by its repository now, a file in it as a path's are (no suffix)."""
    from htsr.compare import _default_labels

    snap = "/cache/hub/models--org--tiny-llama/snapshots/"
    assert _default_labels([snap + "a" * 40, snap + "b" * 40 + "/model.safetensors", "/x/y.pt"]) == [
        "org/tiny-llama", "org/tiny-llama/model", "y"]


def test_labels_given_as_one_string_are_refused():
    """labels='ab' had been split into the labels 'a' and 'b' (and 'base,ft', the CLI's form, into 7 labels)."""
    models = [_powerlaw_model(3.0, 1), _powerlaw_model(2.0, 2)]
    for labels in ("ab", "base,ft"):
        with pytest.raises(OptionError) as ei:
            compare(models, labels=labels)
        assert str(ei.value) == ("labels takes one label per model, in a list (labels=['a', 'b']), not the string "
                                 f"{labels!r}")
    assert compare(models, labels=["base", "ft"]).labels == ("base", "ft")


def test_the_columns_said_to_need_an_option_are_those_it_computes():
    """compare refuses a metric or per-layer column by the option that computes it (_NEEDS): a run with every such
    option off has each of those columns NaN in every layer, and one with them all on has each finite somewhere;
    every other column is computed by a default run."""
    from htsr.compare import _NEEDS, _computes
    from htsr.results import NUMERIC_COLUMNS

    m = _powerlaw_model(2.5, 3, {"enc.big.weight": np.random.default_rng(3).standard_normal((400, 200))})
    off = dict(tails=False, mp_fit=False, setol=False)
    on = dict(randomize=True, bootstrap=20, bayes_average=True, localization=True, farms_aspect=2.0, drop_top=1)
    runs = {"off": (htsr.analyze(m, workers=1, **off), off), "default": (htsr.analyze(m, workers=1), {}),
            "on": (htsr.analyze(m, workers=1, **on), on)}
    for c in NUMERIC_COLUMNS:
        for name, (r, opts) in runs.items():
            finite = any(math.isfinite(getattr(l, c)) for l in r.layers)
            assert finite == _computes(c, opts), (c, name)
    assert {c for c in NUMERIC_COLUMNS if c not in _NEEDS} == {
        c for c in NUMERIC_COLUMNS if all(any(math.isfinite(getattr(l, c)) for l in r.layers) for r, _ in runs.values())}


def test_a_name_with_other_shapes_is_not_the_same_layer_and_differing_layers_are_noted():
    """Another architecture's layer under the same name (a wider block) is shown side by side with its
    shapes but left out of the same-layers mean; when the models' layers differ, the text says that the
    ranking averages each model's own layers."""
    a = _powerlaw_model(2.5, 1)
    b = dict(a)
    b["enc.l1.weight"] = np.random.default_rng(9).standard_normal((320, 160))  # 'enc.l1', of another shape
    b["extra.weight"] = np.random.default_rng(10).standard_normal((300, 120))
    c = compare([a, b], labels=["small", "wide"])
    assert "enc.l1" in c.common_layers and c.shape_differs == ("enc.l1",)
    assert c.num_common_finite == len(c.common_layers) - 1
    assert c.common_means[0] == c.common_means[1]  # the same weights in the layers that are the same
    text = format_comparison(c)
    assert ("the models' layers differ (small 3, wide 4 layers; 2 the same in all, by name and shape): the ranking "
            "averages each model's own layers") in text
    assert "(1 of them under one name but of other shapes: other layers, shown with their shapes)" in text
    assert c.as_dict()["shape_differs"] == ["enc.l1"]


def test_a_metric_no_model_has_names_the_option_that_computes_it(npz_pair, capsys):
    a, b = npz_pair
    runs = [htsr.analyze(a, tails=False), htsr.analyze(b, tails=False)]
    c = compare_results(runs, ["tuned", "base"], metric="rand_js_distance")  # computed without it: ranked by
    assert "unranked (no value): tuned, base (rand_js_distance needs --randomize)" in format_comparison(c)  # nothing
    # compare() given those runs (or their saved folders) refuses it, as it does for models to analyse
    with pytest.raises(OptionError, match=r"^metric 'rand_js_distance' is computed only with --randomize, which no "
                                          r"saved run was analysed with; analyse the models again with it, or rank by "
                                          r"another column$"):
        compare(runs, metric="rand_js_distance")
    # a saved run analysed with it, beside a model analysed now without: the saved run has values, the other not
    # (it had said "no model would have a value")
    with pytest.raises(OptionError, match=r"^metric 'rand_js_distance' is computed only with --randomize: the models "
                                          r"analysed now would have no value to rank by, only the saved runs; add "
                                          r"it, or rank by another column$"):
        compare([htsr.analyze(a, randomize=True, tails=False), b], metric="rand_js_distance", tails=False)
    # with the option on but no value (nothing fitted), no such hint
    assert main(["compare", str(a), str(b), "--metric", "rand_js_distance", "--randomize", "--min-evals", "500",
                 "--no-progress", "--no-tails"]) == 0
    assert "needs --randomize" not in capsys.readouterr().out


def test_results_computed_with_different_options_are_said_not_comparable(npz_pair):
    """compare_results of results analysed apart: a different x_min rule makes their alphas incomparable, and
    the comparison says so (it ranked them as if comparable; only 'options' turned into a list in the JSON).
    keep_spectra, progress and workers change no number: a result does not record them, so they never differ."""
    a, b = npz_pair
    ra = htsr.analyze(a, tails=False, keep_spectra=True, progress=False)
    rb = htsr.analyze(b, tails=False, xmin="median")
    assert "keep_spectra" not in ra.options and "progress" not in ra.options and "workers" not in ra.options
    c = compare_results([ra, rb], ["a", "b"])
    assert c.as_dict()["options_differ"] == {"xmin": ["ks", "median"]}
    assert ("the models were analysed with different options (xmin: 'ks' / 'median'): their metrics are not "
            "comparable") in format_comparison(c)
    same = compare_results([ra, htsr.analyze(b, tails=False)], ["a", "b"])
    assert same.as_dict()["options_differ"] == {} and "different options" not in format_comparison(same)


def _same_rows(a, b):
    """Two results' rows equal field by field, NaN equal to NaN (a saved float is its repr: exact)."""
    assert len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers):
        for k, v in x.as_dict().items():
            w = getattr(y, k)
            assert (isinstance(v, float) and math.isnan(v) and math.isnan(w)) or v == w, (x.name, k, v, w)


def test_a_saved_run_reads_back_as_its_result_and_compares_without_its_model(tmp_path, capsys):
    """'htsr analyze --out DIR' and --json are read back (load_result) as the results they were: every row,
    the options, the source, the path and the tensors not analysed; compare takes the saved runs' paths as
    they are (runs of different days, without the models). There had been no way back from the files."""
    from htsr.errors import SourceError
    from htsr.results import load_result

    paths = []
    for i in range(2):
        m = {f"l{j}.weight": matrix_with_singular_values(np.linspace(1, 5 + i + j, 80), 120, 80) for j in range(3)}
        m["l0.bias"] = np.zeros(120)
        np.savez(tmp_path / f"m{i}.npz", **m)
        paths.append(tmp_path / f"m{i}.npz")
    assert main(["analyze", str(paths[0]), "--out", str(tmp_path / "run0"), "-q", "--bootstrap", "20"]) == 0
    assert main(["analyze", str(paths[1]), "--json", "-q", "--bootstrap", "20"]) == 0
    (tmp_path / "run1.json").write_text(capsys.readouterr().out)
    fresh = [htsr.analyze(p, bootstrap=20) for p in paths]
    for saved, want in zip((tmp_path / "run0", tmp_path / "run1.json"), fresh):
        got = load_result(saved)
        _same_rows(got, want)
        assert (got.options, got.source, got.path, got.num_tensors, got.not_analysed) == (
            want.options, want.source, want.path, want.num_tensors, want.not_analysed)
        assert json.dumps(got.summary.as_dict(), default=str) == json.dumps(want.summary.as_dict(), default=str)
    c = compare([tmp_path / "run0", tmp_path / "run1.json"])  # (they keep their own options: --bootstrap 20)
    assert c.labels == ("run0", "run1") and c.csv_text() == compare_results(fresh, ["run0", "run1"]).csv_text()
    assert main(["compare", str(tmp_path / "run0"), str(tmp_path / "run1.json"), "-q"]) == 0
    assert main(["compare", str(tmp_path / "run0"), str(paths[1]), "--base-distances", "-q"]) == 2
    assert f"give the models, not saved runs ({tmp_path / 'run0'})" in capsys.readouterr().err  # (which one)
    # a column of a newer htsr is refused; one an older htsr did not write is empty
    text = (tmp_path / "run0" / "layers.csv").read_text().splitlines()
    (tmp_path / "run0" / "layers.csv").write_text("\n".join([text[0] + ",new_col"] + [t + ",1" for t in text[1:]]))
    with pytest.raises(SourceError, match="columns this htsr does not know \\(new_col\\)"):
        load_result(tmp_path / "run0")
    import csv

    rows = list(csv.reader(text))
    drop = rows[0].index("mp_ks")
    with open(tmp_path / "run0" / "layers.csv", "w", newline="") as f:
        csv.writer(f).writerows([c for k, c in enumerate(r) if k != drop] for r in rows)
    assert all(math.isnan(r.mp_ks) for r in load_result(tmp_path / "run0").layers)
    with pytest.raises(SourceError, match="not a saved htsr run"):
        load_result(tmp_path)
    with pytest.raises(SourceError, match="none: no such file or folder"):  # (it had said "not a saved htsr run")
        load_result(tmp_path / "none")
    # a layers.csv cut short (a copy interrupted) had been read as a run of fewer layers, the cut row 'ok' with
    # NaN numbers, and compared as if whole; a whole row cut off, or the header cut, by the summary's count
    for keep, says in ((text[:3] + [text[3][:60]], "row 3 does not have the header's"),
                       (text[:3], "2 rows, where its summary counts 3 layers"),
                       ([text[0][:100]], "0 rows, where its summary counts 3 layers")):
        (tmp_path / "run0" / "layers.csv").write_text("\n".join(keep) + "\n")
        with pytest.raises(SourceError, match=f"{says}.*(the saved run|the table) is truncated or corrupt; write it "
                                              "again"):
            load_result(tmp_path / "run0")
    # read_layers of the same cut table (it had read it whole, the cut row 'ok'), and of a header cut in a name
    pytest.importorskip("pandas")
    from htsr.results import read_layers

    (tmp_path / "run0" / "layers.csv").write_text("\n".join(text[:3] + [text[3][:60]]) + "\n")
    with pytest.raises(SourceError, match="row 3 does not have the header's .* fields: the table is truncated"):
        read_layers(tmp_path / "run0" / "layers.csv")
    (tmp_path / "run0" / "layers.csv").write_text(text[0][:100])
    with pytest.raises(SourceError, match=r"columns this htsr does not know \(\w+\): .*or cut short\?"):
        read_layers(tmp_path / "run0" / "layers.csv")


def test_saved_runs_in_the_cli_and_beside_models(tmp_path, monkeypatch, capsys):
    """Review of the saved runs: a model folder that also holds an earlier run's files is the model; options
    given when every model is a saved run are refused (they changed nothing); a metric the saved runs hold
    ranks them; 'compare --out' may write beside a saved run's two files, again; a run's --out folder and its
    --json document are 'run' and 'run.json'; a comparison's JSON is no saved run; the CLI keeps a folder's
    path, and a --base spelled two ways is one base."""
    from htsr.results import saved_result

    monkeypatch.chdir(tmp_path)
    m = {f"l{j}.weight": matrix_with_singular_values(np.linspace(1, 5 + j, 80), 120, 80) for j in range(2)}
    (tmp_path / "ck").mkdir()
    np.savez(tmp_path / "ck" / "model.npz", **m)
    # (again: the earlier run's files beside the weights are not read, so they are no inputs it must keep; the
    # second run had been refused, 'is a file this run reads')
    for _ in range(2):
        assert main(["analyze", "ck", "--out", "ck", "-q", "--no-tails", "--report", "ck/report.html"]) == 0
    assert saved_result("ck") is None  # its weights are there: the model
    assert main(["analyze", "ck/model.npz", "--out", "run", "-q", "--randomize"]) == 0
    (tmp_path / "run" / ".DS_Store").write_bytes(b"\0")  # a hidden file beside them (had made it no saved run)
    # (a folder of one weight file is that file: its path)
    assert saved_result("run") is not None and json.loads((tmp_path / "ck" / "summary.json").read_text())["path"] in (
        "ck", "ck/model.npz")
    assert main(["analyze", "ck/model.npz", "--json", "-q", "--randomize"]) == 0
    (tmp_path / "run.json").write_text(capsys.readouterr().out)
    assert main(["compare", "run", "run.json", "--xmin", "median", "-q"]) == 2
    assert "would change nothing: every model is a saved run" in capsys.readouterr().err
    assert main(["compare", "run", "run.json", "--workers", "1", "-q"]) == 2  # (nothing is analysed)
    assert "htsr: error: --workers would change nothing" in capsys.readouterr().err  # (the flag once)
    # an option on by default is named by the flag that was typed (it had said '--mp-fit', which does not exist)
    assert main(["compare", "run", "run.json", "--no-mp-fit", "-q"]) == 2
    assert "htsr: error: --no-mp-fit would change nothing" in capsys.readouterr().err
    # one line: the refusal, without the note on a small --bootstrap printed before it
    assert main(["compare", "run", "run.json", "--bootstrap", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("htsr: error: --bootstrap would change")
    c = compare(["run", "run.json"], metric="rand_js_distance")
    assert c.labels == ("run", "run.json") and all(math.isfinite(e.value) for e in c.ranking)
    for _ in range(2):
        assert main(["compare", "run", "run.json", "--out", "run", "-q"]) == 0
    assert saved_result("run/comparison.json") is None and saved_result("run") is not None
    np.savez(tmp_path / "ft.npz", **{k: v + 0.01 for k, v in m.items()})
    assert main(["analyze", "ft.npz", "--base", "./ck/model.npz", "--out", "delta", "-q", "--no-tails"]) == 0
    c = compare(["delta", "ft.npz"], base="ck/model.npz", tails=False)
    assert "different options" not in format_comparison(c)


def test_a_count_metric_is_not_called_a_mean():
    """--metric num_under_trained had been announced as 'ranking by mean num_under_trained' (a count)."""
    m = {f"l{j}.weight": matrix_with_singular_values(np.linspace(1, 5 + j, 80), 120, 80) for j in range(2)}
    text = format_comparison(compare([m, {k: 2 * v for k, v in m.items()}], metric="num_under_trained"))
    assert "ranking by num_under_trained (" in text and "mean num_under_trained" not in text
    assert "ranking by mean alpha (" in format_comparison(compare([m, m]))


def test_an_option_an_older_run_lacks_counts_as_its_default():
    """A run saved before --drop-top existed had 'differed in options' (drop_top: None / 0) from a new run of the
    same model with the same numbers."""
    from htsr.compare import options_differ

    m = {f"l{j}.weight": matrix_with_singular_values(np.linspace(1, 5 + j, 80), 120, 80) for j in range(2)}
    new = htsr.analyze(m)
    old = dataclasses.replace(new, options={k: v for k, v in new.options.items() if k != "drop_top"})
    assert options_differ([old, new]) == {}
    assert options_differ([old, htsr.analyze(m, drop_top=1)]) == {"drop_top": [0, 1]}



def test_ties_share_the_smaller_rank_and_the_next_rank_skips():
    """Standard competition ranking, as RankEntry documents: values 1, 1, 2, 3 rank 1, 1, 3, 4."""
    from htsr.compare import _rank

    assert [e.rank for e in _rank(["a", "b", "c", "d"], [1.0, 1.0, 2.0, 3.0], True)] == [1, 1, 3, 4]
    assert [e.rank for e in _rank(["a", "b", "c"], [3.0, 3.0, float("nan")], False)] == [1, 1, None]
    # an infinite mean is no value to rank by either (the docstring: without a finite value, unranked)
    got = _rank(["a", "b", "c", "d"], [2.0, float("inf"), 1.0, float("-inf")], True)
    assert [(e.label, e.rank) for e in got] == [("c", 1), ("a", 2), ("b", None), ("d", None)]


def test_distances_skip_a_transposed_base_and_use_the_analysis_normalisation():
    """A 40 × 60 weight against a 60 × 40 base is another layer (skipped, saying both shapes), not a broadcast
    failure; with normalize='N' lambda_max is in the analysis' units (σ_max²/N), as analyze gives it."""
    rng = np.random.default_rng(0)
    a = {"fc.weight": rng.standard_normal((80, 60)), "t.weight": rng.standard_normal((40, 60))}
    b = {"fc.weight": rng.standard_normal((80, 60)), "t.weight": rng.standard_normal((60, 40))}
    d = {x.name: x for x in layer_distances(a, b, normalize="N")}
    assert d["t"].status.startswith("skipped: shape 40x60 differs from the base's 60x40"), d["t"].status
    want = htsr.analyze(a, normalize="N").layers[0]
    assert want.name == "fc" and d["fc"].lambda_max == pytest.approx(want.lambda_max, rel=1e-5)  # (float32 paths)
    assert d["fc"].lambda_max == pytest.approx(np.linalg.svd(a["fc.weight"], compute_uv=False)[0] ** 2 / 80,
                                               rel=1e-5)


# ------------------------------------------------------------------------- mutation round 7: known answers


def test_a_conv_of_another_kernel_size_than_its_base_is_skipped_not_failed():
    """A 64x32x3x3 conv against a 64x32x5x5 base: per kernel position both are 64 x 32 matrices, but 9 of them
    against 25 is another layer. It is skipped saying both shapes; it had been compared as stacks of 576 and
    1600 rows and failed (a broadcast error)."""
    g = np.random.default_rng(0)
    a = {"conv.weight": g.standard_normal((64, 32, 3, 3)).astype(np.float32)}
    b = {"conv.weight": g.standard_normal((64, 32, 5, 5)).astype(np.float32)}
    (d,) = layer_distances(a, b)
    assert d.status == "skipped: shape 64x32x3x3 differs from the base's 64x32x5x5"
    assert math.isnan(d.frobenius) and math.isnan(d.cka)
    assert "0 layers compared, 1 skipped, 0 failed" in format_distances([d])


def test_the_common_layers_mean_is_over_the_layers_finite_in_every_model():
    """common_means is np.mean over the layers whose value is finite in every model: a layer NaN in one model
    only (all zero there: failed) is left out of every model's mean, and a layer NaN in both (20 eigenvalues
    < min_evals) is neither a term nor counted in the denominator."""
    g = np.random.default_rng(1)
    ma = {n: g.standard_normal((300, 100)) for n in ("a.weight", "b.weight", "c.weight")}
    mb = {n: g.standard_normal((300, 100)) for n in ("a.weight", "b.weight")}
    mb["c.weight"] = np.zeros((300, 100))  # failed in b only: alpha NaN there, finite in a
    ma["d.weight"] = mb["d.weight"] = g.standard_normal((60, 20))  # not fitted in either
    c = compare([ma, mb], labels=["a", "b"], tails=False, workers=1)
    assert c.common_layers == ("a", "b", "c", "d")
    v = np.array(c.layer_values)
    assert np.isfinite(v[:2]).all() and np.isfinite(v[2, 0]) and math.isnan(v[2, 1]) and np.isnan(v[3]).all()
    assert c.num_common_finite == 2
    # math.fsum / 2 against numpy's pairwise sum / 2 of the same two floats: rounding, a few ulps
    assert c.common_means == pytest.approx(tuple(np.mean(v[:2], axis=0)), rel=1e-12)


def test_renaming_to_the_first_models_names_uses_the_shapes():
    """Silero's export names its layers 'model.*'; its TorchScript holds a 16 kHz model '_model.*' and an 8 kHz
    one '_model_8k.*', whose last two layers have other shapes. Both renamings onto 'model.' match 8 names; only
    '_model.' matches the shapes too, so it is the one taken and the 8 layers are common (without the shapes the
    two had tied: not renamed, 0 common layers)."""
    g = np.random.default_rng(0)
    shape = lambda i: (60 + i, 40)
    A = {f"model.l{i}.weight": g.standard_normal(shape(i)) for i in range(8)}
    B = {f"_model.l{i}.weight": g.standard_normal(shape(i)) for i in range(8)}
    B |= {f"_model_8k.l{i}.weight": g.standard_normal(shape(i) if i < 6 else (30, 20)) for i in range(8)}
    ra, rb = (htsr.analyze(m, min_evals=3, tails=False, workers=1) for m in (A, B))
    c = compare_results([ra, rb], labels=["export", "script"])
    assert c.name_alignment == ("script: replacing '_model.' with 'model.'",)
    assert c.common_layers == tuple(f"model.l{i}" for i in range(8)) and c.shape_differs == ()
    # the 16 kHz rows, the 8 kHz ones are other layers
    assert {n for n, _ in c.partial_layers} == {f"_model_8k.l{i}" for i in range(8)}


def test_common_layers_follow_the_first_models_order():
    """Comparison.common_layers is in the first model's order, whatever order the others list them in."""
    g = np.random.default_rng(1)
    ma = {n: g.standard_normal((300, 100)) for n in ("a.weight", "b.weight")}
    mb = {n: ma[n] for n in ("b.weight", "a.weight")}  # the same layers, listed the other way round
    c = compare([ma, mb], labels=["first", "second"], tails=False, workers=1)
    assert c.common_layers == ("a", "b")
    assert c.layer_values[0][0] == c.layer_values[0][1]  # row 'a' is a's in both (the same weights: equal)
    assert c.common_layers == compare([mb, ma], tails=False, workers=1).common_layers[::-1]


def test_a_layer_of_exactly_max_evals_eigenvalues_is_measured():
    """max_evals is the most eigenvalues measured: a 300 x 100 layer is measured with max_evals=100, skipped
    with 99 (analyze likewise: test_analyze)."""
    W = np.random.default_rng(0).standard_normal((300, 100))
    assert layer_distances({"fc.weight": W}, {"fc.weight": W * 1.1}, max_evals=100)[0].status == "ok"
    assert layer_distances({"fc.weight": W}, {"fc.weight": W * 1.1}, max_evals=99)[0].status == (
        "skipped: 100 eigenvalues > max_evals=99")
# ---------------------------------------------------------------------------------------------- mutation round 15
# (each known answer fails on the mutant named beside it: a check dropped, a first model taken for all, a count)


def _tagged(result, names):
    """``result`` with its rows renamed to ``names`` (an adapter's '#base' / '#delta' rows) and its summary redone."""
    from htsr.results import Summary

    rows = tuple(dataclasses.replace(r, name=n) for r, n in zip(result.layers, names))
    return dataclasses.replace(result, layers=rows, summary=Summary.of(rows))


def test_json_options_are_one_per_model_when_they_differ():
    m = _powerlaw_model(3.0, 1)
    ra, rb = htsr.analyze(m, tails=False, workers=1), htsr.analyze(m, tails=False, workers=1, xmin="median")
    doc = compare_results([ra, rb], ["a", "b"]).as_dict()
    assert doc["options"] == [ra.options, rb.options]
    assert compare_results([ra, ra], ["a", "b"]).as_dict()["options"] == ra.options


def test_a_third_model_of_another_shape_is_noted():
    a = _powerlaw_model(2.5, 1)
    c = dict(a, **{"enc.l1.weight": np.random.default_rng(9).standard_normal((320, 160))})
    cmp = compare([a, dict(a), c], labels=["a", "b", "c"], tails=False, workers=1)
    assert cmp.shape_differs == ("enc.l1",) and cmp.num_common_finite == 2


def test_the_common_mean_of_an_adapter_is_over_its_updates_and_the_text_says_so():
    g = np.random.default_rng(3)
    W = {f"l{i}.weight": g.standard_normal((300, 100)) for i in range(4)}
    r = htsr.analyze(W, tails=False, workers=1)
    plain = _tagged(dataclasses.replace(r, layers=r.layers[:2]), ["l0#base", "l1#base"])
    adapter = _tagged(r, ["l0#base", "l0#delta", "l1#base", "l1#delta"])
    assert (plain.summary.means_over, adapter.summary.means_over) == ("all", "delta")
    c = compare_results([plain, adapter], ["plain", "adapter"])
    # and the JSON says over which rows each model's summary means are (only the text had been checked)
    assert [s["means_over"] for s in c.as_dict()["summary"]] == ["all", "delta"]
    assert c.common_layers == ("l0#base", "l1#base")
    # the adapter's summary means leave its #base rows out: so does the same-layers mean
    assert c.num_common_finite == 0 and all(math.isnan(v) for v in c.common_means)
    text = format_comparison(c)
    # (its updates here are dense rows, which have phases: no word on the phase counts' rows)
    assert ("the summary means and warning counts are over layers for plain; the adapter's updates (#delta rows) for "
            "adapter\n") in text
    assert "where it is finite in each, of the rows the summary means average (the same layers for all)" in text
    # two plain models: no such clause (it had not been checked either way)
    assert ", of the rows the summary means" not in format_comparison(compare_results([plain, plain], ["a", "b"]))


def test_the_kinds_are_the_first_models_and_the_shapes_each_models():
    g = np.random.default_rng(0)
    a = {"x.weight": g.standard_normal((64, 32, 3, 3)), "y.weight": g.standard_normal((300, 100))}
    b = {"x.weight": g.standard_normal((300, 100)), "y.weight": g.standard_normal((300, 100))}
    c = compare([a, b], labels=["a", "b"], tails=False, workers=1)
    assert c.common_layers == ("x", "y") and c.shape_differs == ("x",)
    assert c.layer_kinds == ("conv2d", "dense")
    assert c.layer_shapes == (("64x32x3x3", "300x100"), ("300x100", "300x100"))
    assert c.as_dict()["layers"][0]["shapes"] == {"a": "64x32x3x3", "b": "300x100"}
    # the same names but a layer of other shapes: the text says the summary means average different layers
    # (only a model with a layer of its own had been seen to say so)
    assert ("the models' layers differ (a 2, b 2 layers; 1 the same in all, by name and shape): the ranking "
            "averages each model's own layers") in format_comparison(c)
    # the CSV's shape field gives both shapes where they differ, one where they agree (had been unchecked)
    rows = list(csv.reader(c.csv_text().splitlines()))
    assert [r[:3] for r in rows[1:]] == [["x", "conv2d", "64x32x3x3 | 300x100"], ["y", "dense", "300x100"]]


def test_a_metric_the_live_model_would_not_compute_is_refused_beside_a_saved_run():
    m = _powerlaw_model(3.0, 1)
    saved = htsr.analyze(m, randomize=True, tails=False, workers=1)
    with pytest.raises(OptionError, match="metric 'rand_js_distance' is computed only with --randomize"):
        compare([saved, _powerlaw_model(2.0, 2)], metric="rand_js_distance")


def test_the_ranking_metric_is_a_column_of_the_summary_table():
    c = compare([_powerlaw_model(3.0, 1), _powerlaw_model(2.0, 2)], labels=["a", "b"], metric="sigma",
                ascending=True, tails=False, workers=1)
    header = format_comparison(c).splitlines()[1].split()
    assert header[0] == "model" and header[-2:] == ["sigma", "rank"]


def test_a_nan_in_the_base_fails_the_row_as_one_in_the_model_does():
    W = np.random.default_rng(0).standard_normal((90, 60))
    B = W.copy()
    B[0, 0] = np.nan
    rows = layer_distances({"fc.weight": W}, {"fc.weight": B})
    assert rows[0].status == "failed: NaN or Inf in the weights"
    # the totals count it as failed, not skipped (the count of a failed row had been unchecked)
    assert format_distances(rows).splitlines()[-1] == "0 layers compared, 0 skipped, 1 failed"


def test_layer_distances_take_a_fits_options_at_their_defaults():
    model, base = _base_and_model()
    rows = layer_distances(model, base, bootstrap=0, randomize=False, xmin="ks")
    assert [r.status for r in rows] == [r.status for r in layer_distances(model, base)]


def test_aligned_names_leave_no_base_row_unmatched():
    g = np.random.default_rng(0)
    base = {f"enc.l{i}.weight": g.standard_normal((90, 60)) for i in range(3)}
    rows = layer_distances({f"bert.{k}": v + 0.1 for k, v in base.items()}, base)
    assert [(r.name, r.base_name, r.status) for r in rows] == [(f"bert.enc.l{i}", f"enc.l{i}", "ok") for i in range(3)]


def test_a_share_metric_is_not_called_a_mean():
    m = {f"l{j}.weight": matrix_with_singular_values(np.linspace(1, 5 + j, 80), 120, 80) for j in range(2)}
    c = compare([m, {k: 2 * v for k, v in m.items()}], metric="share_best_fit_pl", ascending=False, workers=1)
    text = format_comparison(c)
    assert "ranking by share_best_fit_pl (" in text and "mean share_best_fit_pl" not in text


def test_saved_runs_keep_the_paths_they_were_given(tmp_path, capsys):
    m = {f"l{j}.weight": matrix_with_singular_values(np.linspace(1, 5 + j, 80), 120, 80) for j in range(2)}
    np.savez(tmp_path / "model.npz", **m)
    for run in ("run1", "run2"):
        assert main(["analyze", str(tmp_path / "model.npz"), "--json", "-q", "--no-tails"]) == 0
        (tmp_path / f"{run}.json").write_text(capsys.readouterr().out)
    c = compare([tmp_path / "run1.json", tmp_path / "run2.json"])
    assert [r.path for r in c.results] == [str(tmp_path / "run1.json"), str(tmp_path / "run2.json")]
    assert compare_results(c.results).labels == ("run1", "run2")  # (by the runs, not by the model they analysed)


def test_a_bad_metric_or_direction_is_refused_before_any_analysis(monkeypatch):
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *x, **k: pytest.fail("analysed first"))
    m = _powerlaw_model(3.0, 1)
    with pytest.raises(OptionError, match="metric 'bogus' is not a summary column"):
        compare([m, m], metric="bogus")
    with pytest.raises(OptionError, match="metric 'D' has no agreed direction"):
        compare([m, m], metric="D")
    # and a list of one model (refused only after analysing it had gone unseen: the refusal's words are the same)
    with pytest.raises(OptionError, match="compare needs at least two models, got 1"):
        compare([m])


def test_two_paths_alike_beside_objects_are_told_apart_by_their_folders():
    r = htsr.analyze({"l.weight": np.random.default_rng(0).standard_normal((300, 100))}, tails=False, workers=1)
    rs = [dataclasses.replace(r, path="x/a"), dataclasses.replace(r, path="y/a"), r, r]
    assert compare_results(rs).labels == ("x/a", "y/a", "model3", "model4")
    # paths alike up to the top folder: that folder too (the last one had never been tried: 'a#1', 'a#2')
    rs = [dataclasses.replace(r, path="/p/a"), dataclasses.replace(r, path="/q/a")]
    assert compare_results(rs).labels == ("p/a", "q/a")


def test_the_needs_hint_only_when_no_model_is_ranked():
    m = _powerlaw_model(3.0, 1)
    without, with_ = htsr.analyze(m, tails=False, workers=1), htsr.analyze(m, tails=False, workers=1, randomize=True)
    text = format_comparison(compare_results([without, with_], ["a", "b"], metric="rand_js_distance"))
    assert "unranked (no value): a" in text and "needs --randomize" not in text


def test_models_of_the_same_names_have_no_name_alignment():
    a = _powerlaw_model(3.0, 1)
    c = compare([a, {k: 1.1 * v for k, v in a.items()}], labels=["a", "b"], tails=False, workers=1)
    assert c.name_alignment == () and c.as_dict()["name_alignment"] == []
    assert "layer names matched" not in format_comparison(c)


def test_layer_distances_rename_by_the_shapes_too():
    g = np.random.default_rng(0)
    shape = lambda i: (60 + i, 40)  # noqa: E731
    export = {f"model.l{i}.weight": g.standard_normal(shape(i)) for i in range(8)}
    script = {f"_model.l{i}.weight": g.standard_normal(shape(i)) for i in range(8)}
    script |= {f"_model_8k.l{i}.weight": g.standard_normal(shape(i) if i < 6 else (30, 20)) for i in range(8)}
    rows = {r.name: r for r in layer_distances(script, export)}
    assert [n for n, r in rows.items() if r.status == "ok"] == [f"_model.l{i}" for i in range(8)]
    assert all(rows[f"_model.l{i}"].base_name == f"model.l{i}" for i in range(8))


def test_the_distance_totals_give_the_chance_level_median():
    g = np.random.default_rng(0)
    W = g.standard_normal((90, 60))
    text = format_distances(layer_distances({"fc.weight": W}, {"fc.weight": W + 0.1 * g.standard_normal(W.shape)}))
    assert text.endswith("(chance 0.4)")  # 60 / (90 + 60)
    # the text columns first, the numbers, then the status (the header's order had been unchecked)
    assert text.splitlines()[0].split() == ["name", "kind", "shape", "frobenius", "relative_frobenius", "js_distance",
                                            "lambda_max_change", "cka", "cka_chance", "status"]


def test_the_json_counts_the_layers_of_the_common_mean():
    g = np.random.default_rng(1)
    ma = {n: g.standard_normal((300, 100)) for n in ("a.weight", "b.weight")}
    mb = {"a.weight": g.standard_normal((300, 100)), "b.weight": np.zeros((300, 100))}  # b failed in mb
    c = compare([ma, mb], labels=["a", "b"], tails=False, workers=1)
    assert c.num_common_finite == 1 and c.as_dict()["common_layer_means"]["num_layers"] == 1


def test_more_labels_than_models_are_refused():
    r = htsr.analyze({"l.weight": np.random.default_rng(0).standard_normal((300, 100))}, tails=False, workers=1)
    with pytest.raises(OptionError, match=r"labels \(--labels\): 3 given for 2 models"):
        compare_results([r, r], labels=["a", "b", "c"])
    # one result, and models where results are due (compare_results' own checks had gone untried)
    with pytest.raises(OptionError, match="compare needs at least two models, got 1"):
        compare_results([r])
    with pytest.raises(OptionError, match=r"compare_results takes AnalysisResult objects; use compare\(\)"):
        compare_results([r, {"l.weight": np.ones((300, 100))}])


def test_a_direction_not_a_bool_is_refused():
    r = htsr.analyze({"l.weight": np.random.default_rng(0).standard_normal((300, 100))}, tails=False, workers=1)
    for bad in ("no", 0, 1):
        with pytest.raises(OptionError, match="ascending must be True, False or None"):
            compare_results([r, r], labels=["a", "b"], ascending=bad)


# ------------------------------------------------------------------------ round 23's gaps (compare's command line)


def test_cli_compare_labels_are_stripped(npz_pair, capsys):
    """--labels 'a, b' (a space after the comma) names the models a and b."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--labels", "a, b", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == ["a", "b"]


def test_cli_compare_says_its_figure_was_written_when_stdout_fails(npz_pair, tmp_path, capsys, monkeypatch):
    """compare --figure F > /dev/full: status 1, and the message says the output files were written."""
    fake = types.ModuleType("htsr.plot")
    fake.panels_image = lambda panels, path, ncols=2: b"png"
    fake.can_draw = lambda path: "png"
    monkeypatch.setitem(sys.modules, "htsr.plot", fake)

    stand_in_stdout(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    a, b = npz_pair
    fig = tmp_path / "trend.png"
    rc = main(["compare", str(a), str(b), "--figure", str(fig), "--no-progress"])
    assert rc == 1 and fig.read_bytes() == b"png"
    assert capsys.readouterr().err.strip().endswith(
        "cannot write (No space left on device); the output files were written")


def test_cli_compare_distances_are_of_the_first_from_the_second(npz_pair, tmp_path):
    """--base-distances: the first model is the model, the second its base (as layer_distances(a, b))."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--base-distances", "-q", "--out", str(tmp_path / "o")]) == 0
    with open(tmp_path / "o" / "distances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    api = layer_distances(str(a), str(b))
    assert len(rows) == len(api) == 2
    # (1e-12 relative: the CSV holds each float's repr, and both are the same computation)
    assert [float(r["lambda_max"]) for r in rows] == pytest.approx([d.lambda_max for d in api], rel=1e-12)
    assert [float(r["lambda_max_base"]) for r in rows] == pytest.approx([d.lambda_max_base for d in api], rel=1e-12)
    assert all(d.lambda_max != d.lambda_max_base for d in api)  # (so the two orders differ)


def test_cli_compare_notes_a_coarse_bootstrap_for_a_model_beside_a_saved_run(npz_pair, tmp_path, capsys):
    """A saved run beside a model: the model is analysed with --bootstrap 5, so the note is given."""
    a, b = npz_pair
    assert main(["analyze", str(a), "-q", "--bootstrap", "5", "--out", str(tmp_path / "saved")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "saved"), str(b), "--bootstrap", "5", "--no-progress"]) == 0
    assert "htsr: note: --bootstrap 5:" in capsys.readouterr().err


def test_cli_compare_base_distances_use_the_workers(npz_pair, monkeypatch):
    """--workers runs the distances too."""
    seen = {}
    real = layer_distances
    monkeypatch.setattr(sys.modules["htsr.cli"], "layer_distances", lambda *a, **k: seen.update(k) or real(*a, **k))
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--base-distances", "--workers", "2", "-q"]) == 0
    assert seen.get("workers") == 2


# ------------------------------------------ comparison options and labels, name matching, the distances' edge rows


def test_a_name_repeated_in_one_result_is_compared_by_its_first_row():
    """A name a model lists twice: its first row is the one shown side by side, as the comparison's
    docstring says (the last had never been told apart from the first)."""
    g = np.random.default_rng(4)
    r = htsr.analyze({"x.weight": g.standard_normal((300, 100)),
                      "y.weight": matrix_with_singular_values(np.linspace(1, 20, 100), 300, 100, seed=1)},
                     tails=False, workers=1)
    assert r.layers[0].alpha != r.layers[1].alpha  # (two spectra: the rows can be told apart)
    twice = _tagged(r, ["x", "x"])
    c = compare_results([twice, _tagged(r, ["x", "z"])], ["twice", "once"])
    assert c.common_layers == ("x",) and c.layer_values == ((r.layers[0].alpha, r.layers[0].alpha),)


def test_two_renamings_that_tie_leave_the_names_and_say_so():
    """BART-like: 'encoder.' and 'decoder.' hold the same suffixes, so adding either to an encoder's names
    matches as many; neither is taken, and the comparison says why (that note had not been checked)."""
    g = np.random.default_rng(0)
    bart = {f"{p}.l{i}.weight": g.standard_normal((300, 100)) for p in ("encoder", "decoder") for i in range(2)}
    enc = {f"l{i}.weight": g.standard_normal((300, 100)) for i in range(2)}
    c = compare_results([htsr.analyze(m, tails=False, workers=1) for m in (bart, enc)], ["bart", "enc"])
    assert c.common_layers == ()
    assert c.name_alignment == ("enc: not renamed (ambiguous: adding 'decoder.' and adding 'encoder.' each match "
                                "2 names; rename the tensors so that the names themselves match)",)
    assert "layer names matched to bart's by enc: not renamed (ambiguous" in format_comparison(c)


def test_one_module_is_refused_not_compared_as_its_children():
    """An nn.Sequential is iterable (its children): given alone it is refused as one model, as a state dict
    or a path is. A stand-in with named_modules, iterable over two models, had been compared as two."""
    m = {"fc.weight": np.random.default_rng(0).standard_normal((60, 52))}

    class Sequential:  # (torch's duck type: named_modules; iterating gives the children)
        def named_modules(self):
            return iter(())

        def __iter__(self):
            return iter([m, m])

    with pytest.raises(OptionError, match="a list of two or more models, not one Sequential"):
        compare(Sequential())


def test_a_p_value_ranking_without_the_bootstrap_is_refused_naming_it():
    """pl_pvalue is computed only with --bootstrap: refused before the analyses, saying so (the p-value's own
    entry had not been tried; the counts' had)."""
    m = _powerlaw_model(3.0, 1)
    with pytest.raises(OptionError, match=r"metric 'pl_pvalue' is computed only with --bootstrap N"):
        compare([m, m], metric="pl_pvalue", ascending=False, tails=False)


def test_a_metric_s_option_is_the_one_that_computes_it():
    """One replicate computes a p-value (it is ranked, not refused: 2 had been required unseen), and the share
    of layers whose best fit is the power law needs the tail comparisons, not the MP fit (refused without
    them: a wrong option's name had not been seen, the MP fit being on by default)."""
    m = {"l.weight": matrix_with_singular_values(np.arange(1, 61, dtype=np.float64) ** -1.0, 120, 60, seed=1)}
    c = compare([m, m], labels=["a", "b"], metric="pl_pvalue", ascending=False, tails=False, bootstrap=1, workers=1)
    assert [e.rank for e in c.ranking] == [1, 1]
    with pytest.raises(OptionError, match=r"metric 'share_best_fit_pl' is computed only with the tail comparisons "
                                          r"\(no --no-tails\)"):
        compare([m, m], metric="share_best_fit_pl", ascending=False, tails=False, mp_fit=True)


def test_a_count_metric_over_differing_layers_is_counted_in_each_models_own_layers():
    """When the models' layers differ, a count is said to count in each model's own layers (a mean, to
    average them); the count's wording had not been checked."""
    a = _powerlaw_model(2.5, 1)
    b = dict(a, **{"extra.weight": np.random.default_rng(10).standard_normal((300, 120))})
    ra, rb = (htsr.analyze(m, tails=False, workers=1) for m in (a, b))
    text = format_comparison(compare_results([ra, rb], ["a", "b"], "num_failed"))
    assert "the ranking counts in each model's own layers" in text
    assert "the ranking averages each model's own layers" in format_comparison(compare_results([ra, rb], ["a", "b"]))


def test_an_incomplete_checkpoint_s_missing_tensor_is_skipped_as_analyze_skips_it(tmp_path):
    """A tensor the index lists that no shard holds: its row is 'skipped: …' with the reader's reason, as
    analyze says (a skip had never reached layer_distances: it could have read 'failed')."""
    from safetensors.numpy import save_file

    g = np.random.default_rng(0)
    for tag in ("a", "b"):
        (tmp_path / tag).mkdir()
        save_file({"l.weight": g.standard_normal((60, 40)).astype(np.float32)}, str(tmp_path / tag / "s1.safetensors"))
        (tmp_path / tag / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"l.weight": "s1.safetensors", "x.weight": "s1.safetensors"}}))
    d = {r.name: r for r in layer_distances(tmp_path / "a", tmp_path / "b")}
    assert d["l"].status == "ok"
    assert d["x"].status == ("skipped: the index puts it in s1.safetensors, which does not hold it (no shard does); "
                             "the checkpoint is incomplete")
    assert "1 layers compared, 1 skipped, 0 failed" in format_distances(list(d.values()))


def test_a_zero_base_layer_has_no_relative_numbers_and_the_medians_skip_it():
    """A base layer of zeros (a freshly initialised bias-like matrix, a pruned layer): the relative Frobenius
    distance, the relative change of λ_max and the CKA are undefined (NaN), the row is still measured ('ok'),
    and the medians of the totals are over the rows where each number is defined (a division by zero, or a
    NaN median, had not been tried)."""
    g = np.random.default_rng(0)
    W = g.standard_normal((90, 60))
    rows = layer_distances({"fc.weight": W, "z.weight": W}, {"fc.weight": W + 0.1, "z.weight": np.zeros((90, 60))})
    fc, z = rows
    assert z.status == "ok" and z.lambda_max_base == 0
    assert z.frobenius == pytest.approx(np.linalg.norm(W), rel=1e-12)  # ‖W − 0‖: float64 sums, a few ulps
    assert math.isnan(z.relative_frobenius) and math.isnan(z.lambda_max_change) and math.isnan(z.cka)
    assert fc.cka == pytest.approx(1.0, abs=1e-12)  # a constant offset is centred away: 1 up to rounding
    last = format_distances(rows).splitlines()[-1]
    assert last.startswith("2 layers compared, 0 skipped, 0 failed; medians: relative_frobenius "
                           f"{htsr.results.format_value(fc.relative_frobenius)}  ")
    assert last.endswith("cka 1 (chance 0.4)")  # fc's alone (z's is NaN); 60 / (90 + 60)


def test_layer_distances_take_the_conv_options_as_analyze_does():
    """conv, ww_conv_scale and refine_fraction select and shape the rows (they are in DISTANCE_OPTIONS, which
    the command line passes on): per position, one row per kernel position with λ_max = σ²·kh·kw/2 (WeightWatcher's
    scale); without ww_conv_scale, the pooled λ_max is the largest σ² over the positions. They had been tried only
    at their defaults."""
    g = np.random.default_rng(0)
    b = {"conv.weight": g.standard_normal((16, 8, 3, 3))}
    a = {"conv.weight": b["conv.weight"] + 0.3 * g.standard_normal((16, 8, 3, 3))}
    W = a["conv.weight"]
    s2 = np.array([[np.linalg.svd(W[:, :, i, j], compute_uv=False)[0] ** 2 for j in range(3)] for i in range(3)])
    per = layer_distances(a, b, conv="per_position")
    assert [r.name for r in per] == [f"conv[{i},{j}]" for i in range(3) for j in range(3)]
    assert all(r.status == "ok" and r.num_matrices == 1 for r in per)
    # (float32 Gram path of the ESD against float64 SVD: 1e-5 relative, as in the normalisation test)
    assert [r.lambda_max for r in per] == pytest.approx(list(s2.ravel() * 9 / 2), rel=1e-5)
    (pooled,) = layer_distances(a, b, ww_conv_scale=False)
    assert pooled.lambda_max == pytest.approx(s2.max(), rel=1e-5)  # (as above)
    (scaled,) = layer_distances(a, b)
    assert scaled.lambda_max == pytest.approx(s2.max() / 2, rel=1e-5)  # (as above)
    (refined,) = layer_distances(a, b, refine_fraction=0.5)  # accepted (it shapes the float32 spectra)
    assert refined.status == "ok" and refined.frobenius == scaled.frobenius


def test_a_result_holding_numpy_scalars_writes_strict_json():
    """Results made elsewhere may hold numpy scalars in their options (json cannot write np.int64): the
    comparison's JSON turns them into Python numbers."""
    r = htsr.analyze({"l.weight": np.random.default_rng(0).standard_normal((300, 100))}, tails=False, workers=1)
    odd = dataclasses.replace(r, options={**r.options, "min_evals": np.int64(10), "mp_fit": np.bool_(True),
                                          # (an option of a newer htsr, a tuple of numpy numbers: tuples had been
                                          # left as they were)
                                          "windows": (np.int64(2), np.float64(0.5))})
    doc = _strict_json(compare_results([odd, odd], ["a", "b"]).json_text())
    assert doc["options"]["min_evals"] == 10 and doc["options"]["mp_fit"] is True
    assert doc["options"]["windows"] == [2, 0.5]


# ------------------------------------------------------------------- round 50's gaps (compare's outputs, saved runs)


def test_cli_compare_never_removes_an_input_named_like_its_distances(npz_pair, tmp_path, capsys):
    """A model file named distances.csv in the --out folder: a run without --base-distances would remove that
    name (an earlier run's distances), so it is refused as an input, before any analysis, and the file kept."""
    a, b = npz_pair
    out = tmp_path / "o"
    out.mkdir()
    with open(out / "distances.csv", "wb") as f:  # an .npz by its content (htsr detects formats by content)
        np.savez(f, **dict(np.load(a)))
    before = (out / "distances.csv").read_bytes()
    assert main(["compare", str(out / "distances.csv"), str(b), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("htsr: error:") and "distances.csv" in err and err.count("\n") == 1
    assert (out / "distances.csv").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["distances.csv"]


def test_cli_compare_never_overwrites_a_models_external_data(npz_pair, tmp_path, capsys):
    """An ONNX model's external data file (beside the .onnx, named on no command line) is an input of the
    comparison too: a --figure onto it is refused once the model is opened, before the analyses; the file kept."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    _, b = npz_pair
    W = np.random.default_rng(0).standard_normal((60, 40)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 60])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])],
                              [numpy_helper.from_array(W, "fc.weight")])
    (tmp_path / "m").mkdir()
    path, data = tmp_path / "m" / "model.onnx", tmp_path / "m" / "trend.png"
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="trend.png", size_threshold=0)
    before = data.read_bytes()
    assert main(["compare", str(path), str(b), "--figure", str(data), "--no-tails"]) == 2
    err = capsys.readouterr().err
    assert "never overwrites its inputs" in err and str(data) in err and err.count("\n") == 1
    assert data.read_bytes() == before


def test_cli_compare_counts_a_saved_runs_two_files_as_its_inputs(npz_pair, tmp_path, capsys):
    """A saved run's folder is read for its layers.csv and summary.json (run files, which a model's folder would
    not count as inputs): an output onto one of them is refused as overwriting an input, saying so, and kept."""
    a, b = npz_pair
    assert main(["analyze", str(a), "-q", "--no-tails", "--out", str(tmp_path / "saved")]) == 0
    before = (tmp_path / "saved" / "summary.json").read_bytes()
    target = tmp_path / "saved" / "summary.json"
    assert main(["compare", str(tmp_path / "saved"), str(b), "--figure", str(target), "--no-tails"]) == 2
    assert capsys.readouterr().err == (f"htsr: error: --figure {target}: is a file this run reads, and htsr never "
                                       "overwrites its inputs; choose another path\n")
    assert target.read_bytes() == before


def test_a_saved_run_without_an_option_s_key_is_read_at_its_default_in_the_needs_hint():
    """A run saved by an older htsr lacks the keys of options added since: they count as their defaults (the MP
    fit on), so a metric nothing had a value for gets no 'needs the MP fit' hint; the hint is given for a run
    that did turn the fit off. (The hint's reading of a missing key had not been tried.)"""
    r = htsr.analyze({"l.weight": np.random.default_rng(0).standard_normal((120, 60))}, tails=False, workers=1,
                     min_evals=500)  # no layer analysed: no model has an mp_softrank
    older = dataclasses.replace(r, options={k: v for k, v in r.options.items() if k != "mp_fit"})
    c = compare_results([older, older], ["a", "b"], metric="mp_softrank")
    assert [e.rank for e in c.ranking] == [None, None]
    assert "needs" not in format_comparison(c)
    off = dataclasses.replace(r, options={**r.options, "mp_fit": False})
    assert "(mp_softrank needs the MP fit (no --no-mp-fit))" in format_comparison(compare_results([off, off], ["a", "b"],
                                                                                                   metric="mp_softrank"))


def test_each_pair_s_shared_tensors_are_released_after_its_row(monkeypatch):
    """The rows of one tensor read once (an expert stack's experts) are released when their row is done, the
    base's as the model's: the shared tensor is dropped only once every row of it has taken its part or been
    released. That the base's rows were released too had not been checked."""
    from htsr.tensors import SharedLoad

    released: dict[int, set] = {}
    real = SharedLoad.release
    monkeypatch.setattr(SharedLoad, "release", lambda self, key: released.setdefault(id(self), set()).add(key)
                        or real(self, key))
    g = np.random.default_rng(0)
    base = {"mlp.experts.w": g.standard_normal((4, 60, 40))}
    rows = layer_distances({"mlp.experts.w": base["mlp.experts.w"] + 0.1}, base)
    assert [r.status for r in rows] == ["ok"] * 4
    assert sorted(map(sorted, released.values())) == [[0, 1, 2, 3], [0, 1, 2, 3]]  # the model's and the base's


def test_saved_runs_take_an_option_given_at_its_default():
    """Results compared again refuse an option that would change their analysis (it would change nothing), but
    not one given at its default, as a script spelling out every option gives it (only the refusals had been
    tried)."""
    r = htsr.analyze({"l.weight": np.random.default_rng(0).standard_normal((120, 60))}, tails=False, workers=1)
    assert compare([r, r], labels=["a", "b"], xmin="ks", workers=None).labels == ("a", "b")
    with pytest.raises(OptionError, match="option 'xmin' \\(--xmin\\) would change nothing"):
        compare([r, r], labels=["a", "b"], xmin="median")


def test_the_distance_table_s_text_columns_are_left_aligned():
    """name, kind and shape are left-aligned, the numbers right-aligned (only the header's first cell had been
    looked at): 'dense' starts where the header's 'kind' does, beside the longer 'conv2d'."""
    model, base = _base_and_model()
    lines = format_distances(layer_distances(model, base)).splitlines()
    header = lines[0]
    kind_at, shape_at = header.index("kind"), header.index("shape")
    rows = {ln.split()[0]: ln for ln in lines[1:-1]}
    assert rows["fc"][kind_at:].startswith("dense ") and rows["conv"][kind_at:].startswith("conv2d ")
    assert rows["fc"][shape_at:].startswith("90x60 ") and rows["conv"][shape_at:].startswith("16x8x3x3 ")


def test_the_distance_table_puts_status_last_whichever_text_columns_are_chosen():
    """columns= without kind or shape: the text columns first, the numbers next, status last, as in the default
    table (status had taken the third place, before the numbers, when fewer than three text columns came
    before it: 'name status cka frobenius')."""
    model, base = _base_and_model()
    distances = layer_distances(model, base)
    header = format_distances(distances, columns=("name", "cka", "status", "frobenius")).splitlines()[0]
    assert header.split() == ["name", "cka", "frobenius", "status"]
    header = format_distances(distances, columns=("status", "shape", "cka", "name")).splitlines()[0]
    assert header.split() == ["shape", "name", "cka", "status"]


# ------------------------------------------------------------ round 64's gaps (compare's distances on the command line)


def test_cli_compare_distances_follow_the_layer_filters(npz_pair, capsys):
    """--base-distances measures the layers --layers selects, as the comparison does (the filters had only been
    tried on the analyses)."""
    a, b = npz_pair
    assert main(["compare", str(a), str(b), "--base-distances", "--layers", "fc1$", "--json", "-q",
                 "--no-tails"]) == 0
    assert [d["name"] for d in _strict_json(capsys.readouterr().out)["distances"]] == ["enc.fc1"]


def test_cli_compare_json_holds_an_undefined_distance_as_null(npz_pair, tmp_path, capsys):
    """A layer whose shape differs from the base's has no distances: --json prints them as null in one strict
    document (NaN is no JSON), as comparison.json holds them."""
    a, b = npz_pair
    m = dict(np.load(a))
    m["enc.fc2.weight"] = np.random.default_rng(1).standard_normal((70, 55)).astype(np.float32)  # base: 80x55
    np.savez(tmp_path / "other.npz", **m)
    assert main(["compare", str(tmp_path / "other.npz"), str(b), "--base-distances", "--json", "-q",
                 "--no-tails"]) == 0
    rows = {d["name"]: d for d in _strict_json(capsys.readouterr().out)["distances"]}
    assert rows["enc.fc2"]["status"] == "skipped: shape 70x55 differs from the base's 80x55"
    assert rows["enc.fc2"]["frobenius"] is None and rows["enc.fc2"]["cka"] is None
    assert rows["enc.fc1"]["status"] == "ok" and rows["enc.fc1"]["frobenius"] > 0


def test_distances_pair_tensors_of_one_shape_as_base_does():
    """A 7 x 1 kernel and a 1 x 7 one are one matrix shape per position, and had been measured as one layer
    (frobenius 0, cka 1 between a vertical and a horizontal kernel); the comparison calls them other layers."""
    W = np.random.default_rng(0).standard_normal((32, 16, 7, 1)).astype(np.float32)
    (row,) = layer_distances({"conv.weight": W}, {"conv.weight": W.reshape(32, 16, 1, 7)})
    assert row.status == "skipped: shape 32x16x7x1 differs from the base's 32x16x1x7"


def test_the_ranking_says_what_its_means_are_over_and_which_options_matter(tmp_path, capsys):
    rng = np.random.default_rng(1)
    a = {f"l{i}.weight": rng.standard_t(3, (300, 120)).astype(np.float32) for i in range(3)}
    b = {**a, "l0.weight": np.full((300, 120), np.nan, np.float32)}  # one layer failing: its mean over two
    c = compare([a, b], labels=["a", "b"], tails=False)
    text = format_comparison(c)
    assert "the means are over different layers in each model (layers with a finite alpha: a 3, b 2" in text
    assert "different layers" not in format_comparison(compare([a, a], labels=["a", "a2"], tails=False))
    # as many layers each, not the same ones (one checkpoint lost l0, the next l2): said too
    b2 = {**a, "l2.weight": np.full((300, 120), np.nan, np.float32)}
    text = format_comparison(compare([b, b2], labels=["b", "b2"], tails=False))
    assert "(layers with a finite alpha: b 2, b2 2, not the same ones)" in text
    # the same layers under a prefix (a 'net.' or 'module.' state dict) are the same ones: no note (there had been)
    prefixed = format_comparison(compare([a, {f"net.{k}": v for k, v in a.items()}], labels=["a", "p"], tails=False))
    assert "layer names matched to a's by p: dropping 'net.'" in prefixed and "different layers" not in prefixed
    # options that add their own columns only change no mean alpha: not 'not comparable' (they had been)
    r1 = htsr.analyze(a, tails=False)
    r2 = htsr.analyze(a, tails=False, randomize=True, localization=True, bootstrap=5)
    plain = format_comparison(compare([r1, r2], labels=["x", "y"]))
    assert "different options" not in plain
    by_traps = compare([r1, r2], labels=["x", "y"], metric="rand_js_distance")  # (the metric is randomize's own)
    assert "different options (randomize: False / True" in format_comparison(by_traps)
    big = htsr.analyze(a, tails=False, bootstrap=100)  # (enough replicates to drive the warnings)
    assert "different options (bootstrap: 0 / 100)" in format_comparison(compare([r1, big], labels=["x", "y"]))
    other_seed = htsr.analyze(a, tails=False, bootstrap=100, seed=1)  # (the seed moves those intervals)
    assert "different options (seed: 0 / 1)" in format_comparison(compare([big, other_seed], labels=["x", "y"]))


def test_a_saved_run_look_alike_is_named_for_what_it_is(tmp_path, capsys):
    W = {"fc.weight": np.random.default_rng(2).standard_normal((120, 80)).astype(np.float32)}
    np.savez(tmp_path / "m.npz", **W)
    assert main(["analyze", str(tmp_path / "m.npz"), "--out", str(tmp_path / "run"), "-q"]) == 0
    (tmp_path / "run" / "log.txt").write_text("the table I printed\n")
    assert main(["compare", str(tmp_path / "run"), str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err == (f"htsr: error: {tmp_path / 'run'}: a saved run's layers.csv and summary.json beside other files "
                   "(log.txt): read as a model's folder, it holds no weights; move those files out to read it as the "
                   "run\n")
    assert main(["compare", str(tmp_path / "m.npz"), str(tmp_path / "m.npz"), "--out", str(tmp_path / "cmp"),
                 "-q"]) == 0
    assert main(["compare", str(tmp_path / "cmp" / "comparison.json"), str(tmp_path / "m.npz")]) == 2
    assert "comparison.json: a comparison htsr compare wrote (--json), not a run" in capsys.readouterr().err


def test_a_series_given_out_of_its_numbers_order_is_said_to_be():
    """A shell's glob gives checkpoint-1252 before checkpoint-313: the trend and figure follow the order given (as
    documented), with nothing to say the series is out of order. The note is for a glob's order — labels in
    alphabetical order that their numbers put otherwise —, not for an order the user chose."""
    rng = np.random.default_rng(4)
    runs = [htsr.analyze({"fc.weight": rng.standard_t(3, (300, 120))}, tails=False) for _ in range(3)]

    def note(labels):
        text = format_comparison(compare(runs, labels=labels))
        return next((line for line in text.splitlines() if "alphabetical order" in line), None)

    assert note(["checkpoint-1252", "checkpoint-313", "checkpoint-626"]) == (
        "the models are in the order given (trends and figures follow it), their labels' alphabetical order, which "
        "puts checkpoint-1252 before checkpoint-313: to follow a run, give them in their numbers' order (ls -v, "
        "sort -V)")
    # said in the JSON's notes and on the trend figure's axis too (text only, it had been lost with --json, h51)
    c = compare(runs, labels=["checkpoint-1252", "checkpoint-313", "checkpoint-626"])
    assert any("puts checkpoint-1252 before checkpoint-313" in n for n in c.as_dict()["notes"])
    from htsr.compare import glob_order
    from htsr.figures import metric_trend

    (panel,) = metric_trend(c.results, c.labels, ["alpha"], glob_order(c.labels))
    assert panel.xlabel == ("model (order given: alphabetical, checkpoint-1252 before checkpoint-313; give them as "
                            "sort -V does)")
    assert metric_trend(c.results, c.labels, ["alpha"])[0].xlabel == "model (order given)"
    # a file in each checkpoint's folder (checkpoint-*/model.safetensors: only the label's end had been read), and
    # a glob whose numbers came out decreasing (step-1000, step-200, step-50)
    assert "puts run2/checkpoint-1500/model before run2/checkpoint-500/model" in note(
        ["run2/checkpoint-1000/model", "run2/checkpoint-1500/model", "run2/checkpoint-500/model"])
    assert "puts step-1000 before step-200" in note(["step-1000", "step-200", "step-50"])
    # two checkpoints, as the README's example (three had been needed, h59)
    two = format_comparison(compare(runs[:2], labels=["checkpoint-1000", "checkpoint-500"]))
    assert "puts checkpoint-1000 before checkpoint-500" in two
    for labels in (["ck-313", "ck-626", "ck-1252"], ["a", "b", "c"], ["run2/ck-500/m", "run2/ck-1000/m", "run2/ck-1500/m"],
                   ["lr3-ep20/m", "lr1-ep10/m", "lr2-ep5/m"],  # (an order chosen: not alphabetical)
                   # decimals ('lr0.001' had read as 1; 'lr0.25' is before 'lr0.3'), exponents, versions (v1.10 after
                   # v1.9: 1.1 had been read), dates, sizes, a series given decreasing
                   ["lr0.001", "lr0.01", "lr0.1"], ["lr0.25", "lr0.3", "lr0.5"], ["lr1e-1", "lr1e-2", "lr1e-3"],
                   ["v1.2.0", "v1.9.0", "v1.10.0"], ["model-1.8.1", "model-1.9.0", "model-1.10.0"],
                   ["2024-05-01", "2024-05-15", "2024-06-01"], ["llama-7b", "llama-13b", "llama-70b"],
                   ["ck-1500", "ck-1000", "ck-500"]):
        assert note(labels) is None, labels


def test_a_ranking_by_lower_alpha_says_which_models_rank_ahead_for_over_trained_layers():
    """HTSR reads lower alpha as better only down to 2: a diverged run (mean alpha 1.3, every layer over-trained)
    ranked first by mean alpha with nothing beside the ranking to say that its place comes from over-training."""
    rng = np.random.default_rng(0)

    def heavy(mu):  # columns scaled by Pareto(mu) factors: the smaller mu, the heavier the ESD's tail
        return rng.standard_normal((400, 200)) * (rng.pareto(mu, 200) + 1)[None, :]

    runs = [htsr.analyze({"a.weight": heavy(m), "b.weight": heavy(m)}) for m in (0.6, 1.5, 3.0)]
    assert [r.summary.num_over_trained for r in runs] == [2, 1, 0]
    assert runs[0].summary.means["alpha"] < 2 < runs[2].summary.means["alpha"]
    c = compare(runs, labels=["a", "b", "c"])
    assert [e.label for e in c.ranking] == ["a", "b", "c"]  # the ranking itself is the metric's order
    text = format_comparison(c)
    m0, m1 = (htsr.results.format_value(r.summary.means["alpha"]) for r in runs[:2])
    assert (f"lower alpha is better only down to 2 in HTSR's reading; below it a layer is over-trained: a (mean {m0}, "
            f"2 layers over-trained), b ({'mean ' + m1 + ', ' if runs[1].summary.means['alpha'] < 2 else ''}1 layer "
            "over-trained) rank ahead of models without over-trained layers for tails that heavy, not as better "
            "trained") in text
    assert "over-trained" not in format_comparison(compare(runs[2:] * 2, labels=["c", "c2"]))  # none: no note
    assert "over-trained:" not in format_comparison(compare(runs, labels=["a", "b", "c"], metric="log_norm"))
    # a model with an over-trained layer ranked behind the others (its mean high) gets no note; when every model
    # has such tails, the note says so
    light = htsr.analyze({"a.weight": heavy(0.6), **{f"r{k}.weight": rng.standard_normal((400, 200)) for k in range(4)}})
    assert light.summary.num_over_trained == 1 and light.summary.means["alpha"] > runs[2].summary.means["alpha"]
    assert "over-trained" not in format_comparison(compare([light, runs[2]], labels=["x", "c"]))
    assert ("every model has tails HTSR reads as over-trained (alpha below 2): lower alpha ranks the heavier of them "
            "first, not the better trained") in format_comparison(compare(runs[:2], labels=["a", "b"]))


def test_compares_tables_show_a_names_control_characters_escaped(tmp_path, capsys):
    """A tensor named 'enc.1\\nhtsr: done' broke compare's tables into a forged line (analyze's escaped it)."""
    from safetensors.numpy import save_file

    for s in (0, 1):
        rng = np.random.default_rng(s)
        save_file({n: rng.standard_normal((120, 80)).astype(np.float32)
                   for n in ("enc.0.weight", "enc.1\nhtsr: done.weight", "enc.2\rX.weight")}, str(tmp_path / f"m{s}.safetensors"))
    assert main(["compare", str(tmp_path / "m0.safetensors"), str(tmp_path / "m1.safetensors"), "--base-distances",
                 "--min-evals", "10"]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out and not any(line.startswith("htsr: done") for line in out.splitlines())
    assert out.count("enc.1\\nhtsr: done  dense") == 2 and out.count("enc.2\\rX  ") == 2  # both tables


def test_distances_show_their_progress_as_the_analyses_do(monkeypatch):
    """--base-distances ran with no progress bar after the analyses' bars (an untied embedding's distances alone
    took minutes of silence): with progress on, its bar counts the measured pairs."""
    import sys

    shown = []

    class Bar:
        def __init__(self, total, description):
            shown.append([total, description, 0, False])

        def update(self, n=1):
            shown[-1][2] += n

        def close(self):
            shown[-1][3] = True

    monkeypatch.setattr(sys.modules["htsr.analyze"], "_progress_bar", Bar)
    rng = np.random.default_rng(3)
    a = {f"l{i}.weight": rng.standard_normal((40, 30)) for i in range(3)}
    b = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in a.items()}
    rows = layer_distances(a, b, progress=True)
    assert [r.status for r in rows] == ["ok"] * 3
    assert len(shown) == 1 and shown[0][0] == 3 and shown[0][2] == 3 and shown[0][3]
    assert shown[0][1].startswith("distances ")
    layer_distances(a, b)  # (progress off, the API's default: no bar)
    assert len(shown) == 1


def test_an_option_acting_on_one_models_rows_acts_on_the_comparison():
    """--conv per_position on a conv model and a dense one changes the conv model's rows: allowed (each model alone
    would refuse it on the dense one); on dense models alone it would change nothing, and is refused (it had run,
    and the runs then compared as "analysed with different options" with identical ones)."""
    rng = np.random.default_rng(5)
    conv = {"c.weight": rng.standard_normal((64, 32, 3, 3))}
    dense = [{"fc.weight": rng.standard_normal((120, 80))} for _ in range(2)]
    c = compare([conv, dense[0]], labels=["conv", "dense"], conv="per_position", min_evals=10)
    assert len(c.results[0].layers) == 9 and c.results[0].options["conv"] == c.results[1].options["conv"]
    with pytest.raises(OptionError, match=r"^option 'conv' acts only on conv1d, conv2d, conv3d, lora \(of a conv\) layers, and "
                                          r"none of the models analysed now has one \(their rows are dense\): it would "
                                          r"change nothing; leave it out$"):
        compare(dense, conv="per_position")
    # a saved run's rows count: its conv rows take --conv, and a dense model analysed without it is no different
    # options (the user had been told "not comparable" without the option and refused with it: h43)
    saved = htsr.analyze(conv, conv="per_position", min_evals=10)
    for options in ({"conv": "per_position"}, {}):
        c = compare([saved, dense[0]], labels=["conv", "dense"], min_evals=10, **options)
        assert c.as_dict()["options_differ"] == {} and "different options" not in format_comparison(c)
    # a saved run analysed without it matches no conv row the option would change: refused (h46)
    with pytest.raises(OptionError, match=r"none of the models analysed now, nor a saved run analysed with it, has "
                                          r"one \(their rows are dense\)"):
        compare([htsr.analyze(conv, min_evals=10), dense[0]], conv="per_position", min_evals=10)
    # two conv models analysed apart, pooled and per position, still differ
    c = compare_results([saved, htsr.analyze(conv, min_evals=10)], ["pp", "pooled"])
    assert c.as_dict()["options_differ"] == {"conv": ["per_position", "pooled"]}


def test_a_comparison_shows_itself_briefly():
    """The dataclass repr printed every result and common layer's values (83 393 characters for two 1000-layer
    models: h48)."""
    rng = np.random.default_rng(1)
    models = [{f"l{i}.weight": rng.standard_normal((60, 55)) for i in range(300)} for _ in range(2)]
    c = compare_results([htsr.analyze(m, tails=False, setol=False, mp_fit=False) for m in models], ["a", "b"])
    assert len(repr(c)) < 300 and repr(c).startswith("<Comparison of 2 models by alpha")


def test_the_apis_writes_never_replace_a_saved_run_read_back(npz_pair, tmp_path):
    """A saved run compared (its folder's layers.csv and summary.json, a --json document) or loaded: the CLI
    refused to write over its files, the API's Comparison.to_csv / to_json and AnalysisResult.to_json did not, and
    the run could not be read again (h51). Its files are among what it was read from."""
    from htsr.errors import OutputError
    from htsr.results import load_result

    a, b = npz_pair
    run = tmp_path / "run"
    assert main(["analyze", str(a), "--out", str(run), "-q"]) == 0
    doc = tmp_path / "run.json"
    htsr.analyze(b).to_json(doc)
    before = {f: f.read_bytes() for f in (run / "layers.csv", run / "summary.json", doc)}
    c = compare([run, doc])
    for write, f in ((c.to_csv, run / "layers.csv"), (c.to_json, run / "summary.json"), (c.to_json, doc)):
        with pytest.raises(OutputError, match="never overwrites its inputs"):
            write(f)
    loaded = load_result(run)
    with pytest.raises(OutputError, match="never overwrites its inputs"):
        loaded.to_json(run / "summary.json")
    with pytest.raises(OutputError, match="never overwrites its inputs"):
        load_result(doc).to_csv(doc)
    assert {f: f.read_bytes() for f in before} == before
    loaded.to_json(tmp_path / "other.json")  # (anywhere else: written)
    assert load_result(tmp_path / "other.json").layers == loaded.layers


def test_what_each_reader_says_of_its_source_is_in_the_comparison(tmp_path):
    """htsr analyze says under 'source:' what a reader read of a file (a checkpoint's 'model' entry, its 'ema'
    left out); compare had shown none of it, so a comparison of non-EMA weights read as of the EMA ones (h51). A
    note says it, in the text and the JSON, for a saved run as it was analysed."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    sd = {"fc.weight": torch.from_numpy(rng.standard_t(3, (200, 90)).astype(np.float32))}
    ema = {"fc.weight": torch.from_numpy(rng.standard_t(3, (200, 90)).astype(np.float32))}
    ck = tmp_path / "ck.pt"
    torch.save({"model": sd, "ema": ema, "optimizer": {}}, ck)
    source = htsr.analyze(ck).source
    assert source.startswith(f"{ck} (") and "'ema'" in source
    plain = tmp_path / "plain.pt"
    torch.save(sd, plain)
    c = compare([ck, plain], tails=False)
    assert f"what was read: ck: {source}" in format_comparison(c).splitlines()
    assert f"what was read: ck: {source}" in c.as_dict()["notes"]
    run = tmp_path / "run.json"
    htsr.analyze(ck, tails=False).to_json(run)
    assert f"what was read: run: {source}" in compare([run, plain], tails=False).as_dict()["notes"]


def test_distances_of_an_adapter_say_what_to_give(tmp_path):
    """An adapter beside its base with --base-distances: its 'fc#delta' rows matched no base row, and the run
    said '0 layers compared' with no hint why (h51). Refused in one line, saying what to give."""
    import json as json_

    from safetensors.numpy import save_file

    rng = np.random.default_rng(2)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json_.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                              "target_modules": ["fc"]}))
    save_file({"base_model.model.fc.lora_A.weight": rng.standard_normal((4, 60)).astype(np.float32),
               "base_model.model.fc.lora_B.weight": rng.standard_normal((80, 4)).astype(np.float32)},
              str(adapter / "adapter_model.safetensors"))
    base = {"fc.weight": rng.standard_normal((80, 60)).astype(np.float32)}
    for a, b in ((adapter, base), (base, adapter)):
        with pytest.raises(OptionError, match=rf"^{adapter}: an adapter \(its rows are updates ΔW\), against a "
                                              r"model's weights: give the adapted model .*'htsr analyze ADAPTER --base "
                                              r"BASE' \(two adapters compare\)$"):
            layer_distances(a, b)
    (row,) = layer_distances(adapter, adapter)  # two adapters: their updates, row by row
    assert (row.name, row.status, row.frobenius) == ("fc#delta", "ok", 0.0)
