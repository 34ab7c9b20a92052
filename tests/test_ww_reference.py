"""Agreement with WeightWatcher 0.7.7 on real models fetched from PyPI.

The reference values in data/ww/*.json were produced by WeightWatcher 0.7.7's default ``analyze()``
in a scratch environment by data/ww/make_reference.py (which records versions and file hashes).
Layers WeightWatcher fits with its small-sample estimator (fewer than 20 eigenvalues above 1e-5:
a bias-corrected MLE) are outside htsr's default fit (min_evals=50) and are compared only on the
norms; see docs/weightwatcher.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import htsr
from conftest import sha256

pytestmark = pytest.mark.network

DATA = Path(__file__).parent / "data" / "ww"
FIT_COLUMNS = ("alpha", "D", "xmin", "alpha_weighted", "log_alpha_norm", "num_pl_spikes")
NORM_COLUMNS = ("log_norm", "log_spectral_norm", "stable_rank", "lambda_max", "matrix_rank")


def _reference(name: str) -> tuple[dict, dict[str, dict]]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    return doc["meta"], {r["longname"]: r for r in doc["rows"]}


def _compare(path: Path, ref_name: str, min_evals: int):
    meta, ref = _reference(ref_name)
    assert sha256(path) == meta["source_sha256"]  # the very file WeightWatcher analysed
    accurate = {l.name: l for l in htsr.analyze(path, precision="accurate", min_evals=min_evals).layers}
    fast = {l.name: l for l in htsr.analyze(path, min_evals=min_evals).layers}
    assert set(ref) <= set(accurate)  # every layer WeightWatcher analyses, htsr analyses too
    fitted = [n for n in ref if accurate[n].status == "ok" and ref[n]["status"] == "success"]
    for n in ref:
        for c in NORM_COLUMNS:
            # 1e-6 relative (the bound); the same float64 SVD gives ~1e-15 in practice
            assert accurate[n].as_dict()[c] == pytest.approx(ref[n][c], rel=1e-6), (n, c)
    for n in fitted:
        for c in FIT_COLUMNS:
            assert accurate[n].as_dict()[c] == pytest.approx(ref[n][c], rel=1e-6), (n, c)  # (as above)
    close = [abs(fast[n].alpha - ref[n]["alpha"]) <= 0.01 for n in fitted]
    assert sum(close) >= 0.95 * len(fitted), f"fast alpha within 0.01 on {sum(close)}/{len(fitted)}"
    return fitted


def test_minilm_matches_weightwatcher(minilm_path):
    fitted = _compare(minilm_path, "minilm_l6_v2", min_evals=50)
    assert len(fitted) == 39  # all 39 layers WeightWatcher analyses have 384+ eigenvalues


def test_efficientnet_lite0_matches_weightwatcher(efficientnet_lite0_path):
    # min_evals=20: compare every layer that WeightWatcher fits with its standard estimator
    fitted = _compare(efficientnet_lite0_path, "efficientnet_lite0", min_evals=20)
    # 41 less the 9 depthwise 5x5 convs (25 kernel positions of C x 1 matrices: htsr does not fit their pooled
    # squared norms, docs/weightwatcher.md)
    assert len(fitted) == 32
    default = htsr.analyze(efficientnet_lite0_path)
    assert default.summary.num_fitted == sum(l.num_evals >= 50 for l in default.layers)


def test_minilm_erg_tail_matches_weightwatcher_detx(minilm_path):
    """htsr's ERG tail = WW 0.7.7's det X = 1 tail (data/ww/make_detx_reference.py) on every layer WW analyses.

    MiniLM's layers are small enough that WW's running product does not overflow, so the two must agree
    exactly on the count; the edges to float rounding of the mean normalisation (rel 1e-6, measured < 1e-12
    on the accurate path; the fast path's float32 Gram moves the edges by up to 7e-7 relative).
    """
    doc = json.loads((DATA / "minilm_l6_v2_detx.json").read_text())
    assert doc["meta"]["source_sha256"] == sha256(minilm_path)
    ref = {r["longname"]: r for r in doc["rows"]}
    rows = [r for r in htsr.analyze(minilm_path).layers if r.name in ref]
    assert len(rows) == len(ref) == 39
    for r in rows:
        w = ref[r.name]
        assert r.num_erg == w["detX_num"], r.name
        # (the default fast path: its float32 Gram moves the edges by 5.7e-7 and 6.9e-7 relative, measured)
        assert r.erg_lambda_min == pytest.approx(w["detX_val_unrescaled"], rel=1e-6), r.name
        assert r.erg_lambda_min_raw == pytest.approx(w["detX_val"], rel=1e-5), r.name


def test_minilm_eigenvector_metrics_match_weightwatcher_vectors(minilm_path):
    """htsr's --localization columns against WW 0.7.7's ``vectors=True`` (data/ww/make_vectors_reference.py) on
    MiniLM's 14 rectangular layers, whose eigenvectors are of the same X in both (on a square layer WW takes W·Wᵀ,
    htsr THEORY's WᵀW: other vectors). The tails have the same count on every layer. The vector entropy and the
    localisation ratio are WW's definitions; the participation ratio is not (htsr's 1/Σv⁴ is WW's ‖v‖₂/‖v‖₄ to
    the fourth power, and a mean of fourth powers is no fourth power of the mean: not compared)."""
    doc = json.loads((DATA / "minilm_l6_v2_vectors.json").read_text())
    assert doc["meta"]["source_sha256"] == sha256(minilm_path)
    ref = {r["longname"]: r for r in doc["rows"] if r["N"] != r["M"]}
    rows = [r for r in htsr.analyze(minilm_path, precision="accurate", localization=True).layers if r.name in ref]
    assert len(rows) == len(ref) == 14
    for r in rows:
        w = ref[r.name]
        assert r.num_pl_spikes == w["num_pl_spikes"], r.name
        # The same X in float64, but formed from W or from Wᵀ as each orients it: the rounding rotates the vectors
        # of near-equal eigenvalues, and an entry crossing a bin edge moves a vector's H by ~1/M. Measured, largest
        # over the 14: bulk means (100 to 360 vectors) 9.0e-4 apart in H and 9.7e-4 relative in LR, tail means
        # (21 to 284 vectors) 0.011 and 0.0093 relative, the bulk variance 1.4 % relative; 7 of the 14 layers
        # agree to 1e-10 in all four. Bands of about 3× those
        assert r.loc_ent_bulk_mean == pytest.approx(w["bulk_mean_vec_entropy"], abs=3e-3), r.name
        assert r.loc_ent_tail_mean == pytest.approx(w["tail_mean_vec_entropy"], abs=0.03), r.name
        assert r.loc_lr_bulk_mean == pytest.approx(w["bulk_mean_loc_ratio"], rel=3e-3), r.name
        assert r.loc_lr_tail_mean == pytest.approx(w["tail_mean_loc_ratio"], rel=0.03), r.name
        # WW's variance has ddof 0, htsr's sd ddof 1: htsr's sd² · (n−1)/n is WW's variance
        n = r.num_evals - r.num_pl_spikes
        assert r.loc_ent_bulk_std ** 2 * (n - 1) / n == pytest.approx(w["bulk_var_vec_entropy"], rel=0.05), r.name


def test_efficientnet_lite0_rmt_columns(efficientnet_lite0_path):
    """Every layer large enough for a fit gets a phase, an MP fit and an ERG tail; traps are located."""
    result = htsr.analyze(efficientnet_lite0_path, randomize=True)
    big = [r for r in result.layers if r.num_evals >= 50]
    assert big and all(r.phase and r.mp_sigma > 0 and r.num_erg > 0 and r.num_traps >= 0 for r in big)
    assert sum(result.summary.phases.values()) == len(big)
    assert all(r.phase == "" for r in result.layers if r.num_evals < 50)
