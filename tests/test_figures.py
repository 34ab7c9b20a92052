"""htsr.figures: every panel against known answers (pure numpy, no plotting library)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy.integrate import quad

import htsr
from conftest import layer_row, result_of
from htsr import figures as F
from htsr.errors import OptionError
from htsr.rmt.phases import PHASES


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def gauss():
    """A Gaussian 2000 x 500 matrix: an MP bulk, no traps; 500 eigenvalues, so the scans are thinned."""
    r = htsr.analyze({"g.weight": _rng(0).standard_normal((2000, 500))}, keep_spectra=True, randomize=True)
    return r.layers[0], r.spectra[0]


@pytest.fixture(scope="module")
def model():
    """Layers of every situation: an MP bulk, a Student-t matrix (heavy entries: traps), a rank-deficient
    matrix (zero eigenvalues below the fit's floor), a conv kernel, a tiny not-fitted matrix, a NaN one."""
    rng = _rng(1)
    bad = rng.standard_normal((80, 60))
    bad[3, 4] = np.nan
    layers = {
        "dense.weight": rng.standard_normal((600, 200)),
        "heavy.weight": rng.standard_t(2.5, (400, 200)),
        "lowrank.weight": rng.standard_normal((300, 70)) @ rng.standard_normal((70, 100)),
        "conv.weight": rng.standard_normal((32, 16, 3, 3)),
        "tiny.weight": rng.standard_normal((20, 10)),
        "bad.weight": bad,
    }
    return htsr.analyze(layers, keep_spectra=True, randomize=True)


def _row(result, name: str):
    i = [r.name for r in result.layers].index(name)
    return result.layers[i], result.spectra[i]


def _one(panel: F.Panel, kind: str, role: str) -> F.Series:
    found = [s for s in panel.series if s.kind == kind and s.role == role]
    assert len(found) == 1, [(s.kind, s.role) for s in panel.series]
    return found[0]


def _all_panels(result) -> list[F.Panel]:
    panels = [p for row, sp in zip(result.layers, result.spectra) for p in F.layer_panels(row, sp)]
    return panels + [F.alpha_by_layer(result), F.alpha_by_layer(result, color_by="phase"),
                     F.alpha_distribution(result), F.phase_counts(result)]


# ------------------------------------------------------------------------------------------ MP density


@pytest.mark.parametrize("sigma2, Q", [(1.0, 4.0), (0.5, 1.5), (2000.0, 10.0)])
def test_mp_density_is_the_textbook_density_and_integrates_to_one(sigma2, Q):
    lo, hi = sigma2 * (1 - 1 / math.sqrt(Q)) ** 2, sigma2 * (1 + 1 / math.sqrt(Q)) ** 2
    x = np.linspace(lo, hi, 101)[1:-1]
    textbook = Q / (2 * math.pi * sigma2 * x) * np.sqrt((hi - x) * (x - lo))
    # the density recovers σ² and Q from the edges: only rounding between the two
    np.testing.assert_allclose(F.mp_density(x, lo, hi), textbook, rtol=1e-12)
    # Q >= 1: no mass at 0, the density alone integrates to 1; quad's error at the square-root edges is
    # far below 1e-6
    total, err = quad(lambda v: float(F.mp_density(np.array([v]), lo, hi)[0]), lo, hi, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6) and err < 1e-6
    outside = np.array([-1.0, 0.0, lo * (1 - 1e-9), lo, hi, hi * (1 + 1e-9), 10 * hi])
    assert np.all(F.mp_density(outside, lo, hi) == 0.0)


def test_esd_linear_mp_curve_follows_the_histogram_of_a_gaussian_matrix(gauss):
    row, sp = gauss
    panel = F.esd_linear(row, sp)
    hist, mp = _one(panel, "hist", "data"), _one(panel, "line", "mp")
    assert row.num_spikes == 0 and row.num_zero_evals == 0 and panel.note == ""
    # theory for unit-variance entries, ESD of WᵀW: λ± = N(1 ± √(M/N))² = 500, 4500 (the fit is within 1 %)
    assert row.mp_lambda_minus == pytest.approx(500.0, rel=0.01)
    assert row.mp_lambda_plus == pytest.approx(4500.0, rel=0.01)
    # the curve is the MP density over [λ₋, λ₊], scaled by the bulk's share (1 here: no spikes, no zeros)
    np.testing.assert_allclose(mp.y, F.mp_density(mp.x, row.mp_lambda_minus, row.mp_lambda_plus), rtol=1e-12)
    assert mp.x[0] == row.mp_lambda_minus and mp.x[-1] == row.mp_lambda_plus
    # no spike: the axis ends at the largest eigenvalue, not at 1.5x the threshold past it (empty bins there had
    # squeezed the bulk); (the last edge is λ_max·(1 + 1e-12))
    assert sp.evals[-1] < 1.5 * row.mp_threshold and hist.x[-1] == pytest.approx(sp.evals[-1], rel=1e-11)
    # the histogram is a density of all eigenvalues: it integrates to 1 (every one is within the axis)
    assert float(np.sum(hist.y * np.diff(hist.x))) == pytest.approx(1.0, abs=1e-12)
    # and the density at the bins' centres follows it: mean |difference| under 5 % of the peak density
    # (measured 2 %: 500 eigenvalues in 20 bins, the bins at the edges only partly inside the bulk)
    centres = (hist.x[:-1] + hist.x[1:]) / 2
    gap = np.abs(F.mp_density(centres, row.mp_lambda_minus, row.mp_lambda_plus) - hist.y)
    assert gap.mean() < 0.05 * hist.y.max()


def test_esd_linear_scales_the_mp_curve_by_the_bulks_share_without_spikes_or_zeros(model):
    """The rank-70 product (100 eigenvalues): 30 zeros and 18 spikes are not in the bulk, so the MP density is
    drawn at (100 − 18 − 30) / 100 of its height, the share of the eigenvalues the histogram's bulk holds."""
    row, sp = _row(model, "lowrank")
    assert (row.num_zero_evals, row.num_spikes, sp.evals.size) == (30, 18, 100)
    mp = _one(F.esd_linear(row, sp), "line", "mp")
    np.testing.assert_allclose(mp.y, F.mp_density(mp.x, row.mp_lambda_minus, row.mp_lambda_plus) * 0.52,
                               rtol=1e-12)  # (the same expression: rounding only)


def test_esd_linear_stops_its_axis_past_the_mp_edge_and_counts_the_eigenvalues_beyond(model):
    """The Student-t matrix's largest eigenvalue is ~4x its spike threshold: the bins cover the bulk up to
    1.5x the threshold (so one spike does not squeeze the bulk into a few bins), and the note counts the rest."""
    row, sp = _row(model, "heavy")
    hi = 1.5 * row.mp_threshold
    assert sp.evals[-1] > 2 * hi
    hist = _one(F.esd_linear(row, sp), "hist", "data")
    assert hist.x[-1] == pytest.approx(hi, rel=1e-11)  # (the edge is hi·(1 + 1e-12), so the bin holds hi)
    beyond = sp.evals[sp.evals > hi]
    assert F.esd_linear(row, sp).note == f"{beyond.size} eigenvalue(s) beyond the axis, up to {beyond[-1]:.4g}"
    # what the axis shows is a density of all eigenvalues: the shown ones' share
    assert float(np.sum(hist.y * np.diff(hist.x))) == pytest.approx(1 - beyond.size / sp.evals.size, abs=1e-12)


# ---------------------------------------------------------------------------------------- ESD log-log


@pytest.mark.parametrize("name", ["dense", "heavy", "lowrank", "conv", "tiny"])
def test_esd_loglog_histogram_integrates_to_the_share_of_positive_eigenvalues(model, name):
    row, sp = _row(model, name)
    hist = _one(F.esd_loglog(row, sp), "hist", "data")
    assert hist.x.size == hist.y.size + 1 and np.all(np.diff(hist.x) > 0)
    mass = float(np.sum(np.nan_to_num(hist.y) * np.diff(hist.x)))
    # the share of the eigenvalues drawn: all but the num_zero_evals the analysis counts as zeros
    drawn = np.count_nonzero(sp.evals[int(row.num_zero_evals):] > 0)
    assert mass == pytest.approx(drawn / sp.evals.size, abs=1e-12)  # (density × width sums back: rounding only)
    # empty bins are NaN (gaps on a log axis), never 0
    assert not np.any(hist.y == 0)


@pytest.mark.parametrize("name", ["dense", "heavy", "lowrank"])
def test_esd_loglog_fit_line_is_the_tail_density(model, name):
    row, sp = _row(model, name)
    panel = F.esd_loglog(row, sp)
    line, xmin = _one(panel, "line", "fit"), _one(panel, "vline", "xmin")
    share = row.num_pl_spikes / sp.evals.size  # the tail's share of the layer's eigenvalues
    # (the line's closed form in the same float64 operations: rounding only, measured 0)
    assert line.x[0] == pytest.approx(row.xmin, rel=1e-12) and line.x[-1] == pytest.approx(row.xmax, rel=1e-12)
    assert line.y[0] == pytest.approx(share * (row.alpha - 1) / row.xmin, rel=1e-12)
    np.testing.assert_allclose(line.y, share * (row.alpha - 1) / row.xmin * (line.x / row.xmin) ** -row.alpha,
                               rtol=1e-12)
    assert xmin.x.tolist() == [row.xmin] and xmin.y.size == 0


def test_esd_loglog_draws_the_fit_when_the_floor_cut_eigenvalues(model):
    """Regression: the fit line was dropped (taken for FARMS) whenever the fit saw fewer eigenvalues than
    the ESD, i.e. for every layer with eigenvalues below the floor."""
    row, sp = _row(model, "lowrank")
    assert row.status == "ok" and sp.fit_evals.size < sp.evals.size
    _one(F.esd_loglog(row, sp), "line", "fit")


def test_esd_loglog_with_farms_marks_x_min_but_draws_no_power_law():
    W = _rng(2).standard_normal((600, 200))
    r = htsr.analyze({"w.weight": W}, keep_spectra=True, farms_aspect=1.0)
    row, sp = r.layers[0], r.spectra[0]
    assert row.status == "ok" and row.farms_windows == 3
    panel = F.esd_loglog(row, sp)
    assert not [s for s in panel.series if s.role == "fit"] and "FARMS" in panel.note
    # x_min on this ESD's axis: the layer's eigenvalue at the windows' tail share (the windows' x_min, in their
    # units, was drawn here: MiniLM's word embeddings 6.12 on an axis where the tail starts at 315)
    assert row.farms_xmin in sp.evals and row.farms_xmin != row.xmin
    tail = sp.evals.size - int(np.searchsorted(sp.evals, row.farms_xmin))
    assert tail == round(row.num_pl_spikes * sp.evals.size / row.num_fit_evals)
    for p in (panel, F.log10_histogram(row, sp), F.erg_boundary(row, sp)):
        x = _one(p, "vline", "xmin").x[0]
        assert x == (np.log10(row.farms_xmin) if p.xlabel == "log10 λ" else row.farms_xmin), p.title


# ----------------------------------------------------------------------------------- log10 histogram


def test_log10_histogram_counts_every_nonzero_eigenvalue(model):
    """Those the analysis counts as zeros (num_zero_evals: a rank-deficient layer's rounding at ~1e-15, which its
    float64 SVD leaves positive) are not drawn, as the MP bulk and the ERG leave them out: drawn, they had
    spread the histogram over 17 decades. The note says how many."""
    row, sp = _row(model, "lowrank")
    panel = F.log10_histogram(row, sp)
    hist = _one(panel, "hist", "data")
    assert row.num_zero_evals == 30 and hist.y.sum() == sp.evals.size - 30  # (rank 70 of 100)
    assert "30 zero eigenvalue(s) (num_zero_evals) not shown" in panel.note
    full = dataclasses.replace(row, num_zero_evals=0.0)  # exact zeros are never drawn on a log axis
    zero_cols = F.log10_histogram(full, dataclasses.replace(sp, evals=np.r_[np.zeros(7), sp.evals[7:]]))
    assert "7 zero eigenvalue(s) (num_zero_evals) not shown" in zero_cols.note
    assert "zero eigenvalue" not in F.log10_histogram(*_row(model, "dense")).note
    # (log10 of the same values: rounding only)
    assert _one(panel, "vline", "xmin").x[0] == pytest.approx(math.log10(row.xmin), rel=1e-12)
    assert _one(panel, "vline", "erg").x[0] == pytest.approx(math.log10(row.erg_lambda_min_raw), rel=1e-12)


# ----------------------------------------------------------------------------------------- x_min scan


def _check_scan_minimum(row, sp) -> F.Series:
    panel = F.xmin_scan(row, sp)
    D, alpha = _one(panel, "line", "data"), _one(panel, "line", "fit:right")
    assert panel.ylabel2 == "alpha" and panel.xlog
    i = int(np.argmin(D.y))
    # the scan's smallest D is the fit's: D and x_min come from htsr.fits.powerlaw (the same sums, so
    # equal to rounding)
    assert D.x[i] == row.xmin
    assert D.y[i] == pytest.approx(row.D, rel=1e-12)
    assert alpha.y[int(np.flatnonzero(alpha.x == row.xmin)[0])] == pytest.approx(row.alpha, rel=1e-12)
    assert _one(panel, "vline", "xmin").x[0] == row.xmin
    return D


def test_xmin_scan_minimum_is_the_fit_even_when_thinned(gauss):
    row, sp = gauss
    D = _check_scan_minimum(row, sp)
    # 500 candidates thinned to MAX_POINTS, the minimum kept (it was dropped before)
    assert D.x.size <= F.MAX_POINTS + 1 < sp.fit_evals.size - 1


def test_xmin_scan_of_a_large_layer_scans_a_spread_of_candidates_and_keeps_the_fits(monkeypatch):
    """Each candidate's D is a pass over the tail: the whole scan of 11 520 eigenvalues took 6 s of a report's
    figures. Above 4·MAX_POINTS candidates a spread of them is scanned, the fit's x_min among them: the
    curve's minimum is still the fit's (x_min, D, alpha)."""
    import htsr

    seen = []
    orig = F.ks_scan
    monkeypatch.setattr(F, "ks_scan", lambda x, c=None: seen.append(len(c)) or orig(x, c))
    W = np.random.default_rng(3).standard_t(4, (2400, 1800)).astype(np.float32)
    r = htsr.analyze({"big.weight": W}, keep_spectra=True, tails=False)
    _check_scan_minimum(r.layers[0], r.spectra[0])
    assert seen and seen[0] <= 4 * F.MAX_POINTS + 1 < r.spectra[0].fit_evals.size - 1


@pytest.mark.parametrize("name", ["dense", "heavy", "lowrank", "conv"])
def test_xmin_scan_minimum_is_the_fit(model, name):
    _check_scan_minimum(*_row(model, name))


def test_xmin_scan_of_tied_eigenvalues_scans_the_fits_candidates():
    """Singular values 1 (× 75) and 2 (× 75): the fit's candidates start a run of equal values, the figure's had
    not, its minimum another than the fit's and its note blaming xmin='peak' or a fixed x_min (h57)."""
    for precision in ("fast", "accurate"):
        W = np.diag(np.r_[np.ones(75), 2 * np.ones(75)])
        r = htsr.analyze({"d.weight": W}, keep_spectra=True, tails=False, precision=precision)
        _check_scan_minimum(r.layers[0], r.spectra[0])
        assert "is not the fit's x_min" not in F.xmin_scan(r.layers[0], r.spectra[0]).note


def test_xmin_scan_with_clip_xmax_scans_what_the_refit_saw():
    r = htsr.analyze({"w.weight": _rng(1).standard_normal((600, 200))}, keep_spectra=True, clip_xmax=True)
    row, sp = r.layers[0], r.spectra[0]
    assert row.num_fingers > 0  # measured: 5 fingers for this seed
    _check_scan_minimum(row, sp)
    assert f"top {row.num_fingers:.0f} eigenvalue(s) the fit dropped" in F.xmin_scan(row, sp).note


def test_xmin_scan_says_when_its_minimum_is_not_the_fits_and_drops_a_flat_tail():
    """With xmin='peak' the fit scans fewer candidates: the curve's minimum had been unmarked as another than the
    fit's (the docstring said it was the fit's); a flat tail's candidates, which the fit never takes, had been
    drawn with alphas in the millions."""
    W = _rng(5).standard_t(3, (600, 300))
    for xmin in ("ks", "peak", "median"):
        row, sp = (lambda r: (r.layers[0], r.spectra[0]))(htsr.analyze({"w.weight": W}, keep_spectra=True, xmin=xmin))
        panel = F.xmin_scan(row, sp)
        D = _one(panel, "line", "data")
        differs = D.x[int(np.argmin(D.y))] != row.xmin
        assert ("is not the fit's x_min" in panel.note) == differs, xmin
        if xmin != "peak":  # (the default's minimum is the fit's; median's fixed x_min is another, measured)
            assert differs == (xmin == "median")
    U = np.linalg.qr(_rng(6).standard_normal((300, 300)))[0]
    s = np.r_[np.linspace(0.1, 1.0, 240), np.full(60, 5.0)]  # 60 equal singular values on top of a spread
    row, sp = (lambda r: (r.layers[0], r.spectra[0]))(htsr.analyze({"w.weight": (U * s) @ U.T}, keep_spectra=True))
    alpha = _one(F.xmin_scan(row, sp), "line", "fit:right")
    assert np.all(alpha.y < 1e3)  # (the flat tail's had reached 1e7)


# ------------------------------------------------------------------------------ shuffled ESD and ERG


def test_shuffled_esd_marks_exactly_the_traps(model):
    row, sp = _row(model, "heavy")
    assert row.num_traps > 0
    panel = F.shuffled_esd(row, sp)
    data, shuffled = _one(panel, "hist", "data"), _one(panel, "hist", "shuffled")
    assert np.array_equal(data.x, shuffled.x)  # shared bins
    traps = _one(panel, "points", "trap")
    assert traps.x.size == row.num_traps and np.all(np.isnan(traps.y))  # a rug: positions only
    assert np.all(traps.x > sp.rand_threshold) and _one(panel, "vline", "threshold").x[0] == sp.rand_threshold
    assert row.trap_weights in panel.note
    for h, ev in ((data, sp.evals), (shuffled, sp.rand_evals)):
        # (a density of counts / (n · width): times the widths it sums back to the share, rounding only)
        assert float(np.sum(np.nan_to_num(h.y) * np.diff(h.x))) == pytest.approx(np.mean(ev > 0), abs=1e-12)
    assert "largest of" not in panel.note  # (every trap located: 7 here)


def test_shuffled_esd_note_says_which_traps_of_how_many_it_locates():
    """At most MAX_LOCATED (10) traps are located: the note had listed 10 as if they were all of 14."""
    from htsr.rmt.traps import MAX_LOCATED

    rng = _rng(9)
    W = rng.standard_normal((600, 300))
    W[rng.choice(600, 14, replace=False), rng.choice(300, 14, replace=False)] = 60.0  # 14 traps, rows and columns apart
    r = htsr.analyze({"t.weight": W}, keep_spectra=True, randomize=True)
    row, sp = r.layers[0], r.spectra[0]
    assert row.num_traps > MAX_LOCATED and row.trap_weights.count(";") + 1 == MAX_LOCATED
    note = F.shuffled_esd(row, sp).note
    assert f"the {MAX_LOCATED} largest of {row.num_traps:.0f} traps at {row.trap_weights}" in note


def test_shuffled_esd_without_traps_and_without_randomize(gauss):
    row, sp = gauss
    assert row.num_traps == 0
    assert not [s for s in F.shuffled_esd(row, sp).series if s.role == "trap"]
    r = htsr.analyze({"g.weight": _rng(0).standard_normal((300, 100))}, keep_spectra=True)
    panel = F.shuffled_esd(r.layers[0], r.spectra[0])
    assert panel.series == () and "randomize=True" in panel.note


@pytest.mark.parametrize("name", ["dense", "heavy", "lowrank", "tiny"])
def test_erg_running_sum_crosses_zero_at_the_erg_edge(model, name):
    row, sp = _row(model, name)
    panel = F.erg_boundary(row, sp)
    line = _one(panel, "line", "data")
    k = int(np.flatnonzero(line.y < 0)[0])
    assert k > 0 and line.y[k - 1] >= 0
    assert line.x[k] == row.erg_lambda_min_raw  # the same sums as htsr.rmt.setol: exactly
    assert _one(panel, "vline", "erg").x[0] == row.erg_lambda_min_raw
    assert _one(panel, "hline", "zero").y.tolist() == [0.0]
    assert np.all(np.diff(line.x) < 0)  # from the largest down


def test_erg_running_sum_of_a_float32_low_rank_product_crosses_at_its_edge():
    """A rank-120 product stored in float32: its float64 rank counts the rounding (300), and the analysis takes
    its ERG over the 120 nonzero eigenvalues; the figure had walked all 300 and crossed 0 at 3e-13, not at the
    column's edge (87.6), which the same report's histogram marks."""
    rng = _rng(4)
    W = (rng.standard_normal((400, 120)) @ rng.standard_normal((120, 300))).astype(np.float32)
    r = htsr.analyze({"p.weight": W}, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    assert row.matrix_rank > 120 and row.num_zero_evals >= 0.1 * row.num_evals  # (the case: else it checks nothing)
    line = _one(F.erg_boundary(row, sp), "line", "data")
    k = int(np.flatnonzero(line.y < 0)[0])
    assert line.x[k] == row.erg_lambda_min_raw and line.y[k - 1] >= 0  # the same sums: exactly


def test_erg_crossing_survives_thinning(gauss):
    row, sp = gauss
    line = _one(F.erg_boundary(row, sp), "line", "data")
    assert line.x.size <= F.MAX_POINTS + 2 < sp.evals.size
    k = int(np.flatnonzero(line.y < 0)[0])
    assert line.x[k] == row.erg_lambda_min_raw and line.y[k - 1] >= 0


# ------------------------------------------------------------------------------ rows without a spectrum


def test_rows_without_spectra_have_no_panels(model):
    row, sp = _row(model, "bad")
    assert row.status.startswith("failed") and sp is None
    assert F.layer_panels(row, None) == []
    r = htsr.analyze({"g.weight": _rng(0).standard_normal((100, 60))})  # keep_spectra off
    assert r.spectra == () and F.layer_panels(r.layers[0], None) == []


def test_not_fitted_layer_panels_have_notes_and_no_fit(model):
    row, sp = _row(model, "tiny")
    assert row.status.startswith("not_fitted")
    panels = F.layer_panels(row, sp)
    assert len(panels) == len(F.LAYER_PANELS) == 6
    for p in panels:
        assert row.status in p.note, p.title
        assert not [s for s in p.series if s.role.split(":")[0] in ("fit", "xmin", "mp")], p.title
    assert F.xmin_scan(row, sp).series == ()
    # randomize was on: the note says why this layer is not randomised, not to turn it on
    assert "randomize=True" not in F.shuffled_esd(row, sp).note


def test_a_lora_row_and_a_single_eigenvalue_get_the_right_reason(tmp_path):
    """A lora row has no MP fit and no shuffled ESD because its entries are never formed (not because of
    mp_fit or randomize); a 1 x 300 layer has one positive eigenvalue, not none."""
    import json

    from safetensors.numpy import save_file

    rng = _rng(3)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 60, "lora_alpha": 60}))
    save_file({"base_model.model.m.lora_A.weight": rng.standard_normal((60, 150)).astype(np.float32),
               "base_model.model.m.lora_B.weight": rng.standard_normal((200, 60)).astype(np.float32)},
              str(tmp_path / "adapter_model.safetensors"))
    save_file({"m.weight": rng.standard_normal((200, 150)).astype(np.float32)}, str(tmp_path / "base.safetensors"))
    # (with its base: --randomize on an adapter alone would change nothing, and is refused)
    r = htsr.analyze(tmp_path, keep_spectra=True, randomize=True, base=tmp_path / "base.safetensors")
    lrow, lsp = next((x, sp) for x, sp in zip(r.layers, r.spectra) if x.name.endswith("#delta"))
    assert lrow.kind == "lora" and lrow.status == "ok"
    assert F.esd_linear(lrow, lsp).note == "no MP fit: a LoRA update is known by its factors only"
    assert F.shuffled_esd(lrow, lsp).note == "not randomised: a LoRA update is known by its factors only"
    r = htsr.analyze({"row.weight": rng.standard_normal((1, 300))}, keep_spectra=True)
    rrow, rsp = r.layers[0], r.spectra[0]
    assert rsp.evals.size == 1 and rsp.evals[0] > 0
    assert F.esd_linear(rrow, rsp).note.endswith("fewer than 2 eigenvalues")
    assert F.log10_histogram(rrow, rsp).note.endswith("; fewer than 2 nonzero eigenvalues")
    assert F.log10_histogram(rrow, rsp).series == ()
    assert F.erg_boundary(rrow, rsp).note.endswith("fewer than 2 eigenvalues")


def test_a_refused_fit_draws_no_x_min_scan():
    """An orthogonal matrix: a flat spectrum, fit_failed; its scan would show alphas in the millions."""
    q, _ = np.linalg.qr(_rng(4).standard_normal((200, 100)))
    r = htsr.analyze({"o.weight": q}, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    assert row.status.startswith("fit_failed: a flat spectrum")
    p = F.xmin_scan(row, sp)
    assert p.series == () and p.note == row.status


# ------------------------------------------------------------------------------------------ the panels


def test_every_panel_is_strict_json_and_well_formed(model, gauss):
    panels = _all_panels(model) + F.layer_panels(*gauss)
    panels += F.metric_trend([model, model], ["a", "b"], ["alpha", "D", "rand_js_distance"])
    assert len(panels) > 40
    for p in panels:
        d = json.loads(json.dumps(p.as_dict(), allow_nan=False))
        assert d["title"] == p.title and len(d["series"]) == len(p.series)
        for s in p.series:
            assert s.kind in F.SERIES_KINDS
            if s.kind == "hist":
                assert s.x.size == s.y.size + 1
            elif s.kind == "vline":
                assert s.x.size == 1 and s.y.size == 0
            elif s.kind == "hline":
                assert s.x.size == 0 and s.y.size == 1
            elif s.kind == "bar":
                assert len(s.labels) == s.x.size == s.y.size
            else:
                assert s.x.size == s.y.size
            if s.role.endswith(":right"):
                assert p.ylabel2


# ---------------------------------------------------------------------------------------- model panels


@pytest.mark.parametrize("color_by", ["kind", "phase"])
def test_alpha_by_layer_puts_each_fitted_layer_in_one_group(model, color_by):
    panel = F.alpha_by_layer(model, color_by=color_by)
    points = [s for s in panel.series if s.kind == "points"]
    seen = np.concatenate([s.x for s in points]).astype(int)
    finite = [i for i, r in enumerate(model.layers) if math.isfinite(r.alpha)]
    assert sorted(seen.tolist()) == finite  # each once
    for s in points:
        group = s.role.split(":", 1)[1]
        assert s.role.startswith(color_by + ":") and s.label == group
        for i, y, name in zip(s.x.astype(int), s.y, s.labels):
            r = model.layers[i]
            assert y == r.alpha and name == r.name
            assert group == (getattr(r, color_by) or "no phase")
    if color_by == "phase":  # groups in the order of PHASES
        order = [s.label for s in points]
        assert order == sorted(order, key=lambda g: (list(PHASES) + ["no phase"]).index(g))
    assert sorted(s.y[0] for s in panel.series if s.kind == "hline") == [2.0, 6.0]


def test_alpha_by_layer_other_metric_and_bad_color_by(model):
    panel = F.alpha_by_layer(model, metric="log_spectral_norm")
    assert not [s for s in panel.series if s.kind == "hline"]  # the HTSR bands are for alpha only
    n = sum(s.x.size for s in panel.series if s.kind == "points")
    assert n == sum(math.isfinite(r.log_spectral_norm) for r in model.layers)
    with pytest.raises(ValueError, match="color_by"):
        F.alpha_by_layer(model, color_by="shape")


def test_alpha_distribution_counts_every_finite_alpha(model):
    panel = F.alpha_distribution(model)
    hist = _one(panel, "hist", "data")
    assert hist.x.size == 5 + 1  # a third as many bins as layers, at least 5 (and at most 40)
    assert hist.y.sum() == sum(math.isfinite(r.alpha) for r in model.layers)
    assert hist.x[0] == min(r.alpha for r in model.layers if math.isfinite(r.alpha))


def test_phase_counts_sum_to_the_layers(model):
    bar = _one(F.phase_counts(model), "bar", "data")
    assert bar.y.sum() == len(model.layers)
    counts = dict(zip(bar.labels, bar.y))
    assert {p: counts[p] for p in PHASES} == model.summary.phases
    assert counts.get("no phase", 0) == sum(r.phase == "" for r in model.layers) > 0  # tiny and bad


def test_a_trend_leaves_a_model_without_a_value_out_of_its_marks_and_names_it(model):
    """A model whose mean is NaN (an adapter with no fitted update) had been drawn a mark on the x axis, read as a
    value, with no note; an unknown metric an empty panel. The line has its gap, the marks are the models with a
    value, the note names the others; an unknown metric is refused."""
    none = htsr.analyze({"a.weight": _rng(5).standard_normal((30, 10))})  # (10 eigenvalues: not fitted)
    (p,) = F.metric_trend([model, none, model], ["a", "b", "c"], ["alpha"])
    points = _one(p, "points", "data")
    assert points.x.tolist() == [0.0, 2.0] and points.labels == ("a", "c") and np.isfinite(points.y).all()
    assert np.isnan(_one(p, "line", "data").y[1]) and p.note == "no finite alpha: b"
    with pytest.raises(OptionError, match=r"^metric 'num_heavy-tailed' is not a summary column"):
        F.metric_trend([model], ["a"], ["num_heavy-tailed"])


def test_an_adapters_model_figures_draw_the_rows_its_means_average():
    """An adapter analysed with its base has #delta, #base and #merged rows; its summary averages the updates (here,
    none fitted, the #merged rows). The model figures had drawn every row, #base and #merged as one 'dense' series
    (62 points averaging 3.41 beside a summary of 2.50): they draw the rows the means average, and say which."""
    from conftest import layer_row, result_of

    rows = [layer_row(f"l{i}#delta", kind="lora", alpha=math.nan) for i in range(3)]
    rows += [layer_row(f"l{i}#base", alpha=5.0 + i) for i in range(3)]
    rows += [layer_row(f"l{i}#merged", alpha=2.0 + i / 10) for i in range(3)]
    r = result_of(rows)
    assert r.summary.means_over == "merged" and r.summary.means["alpha"] == pytest.approx(2.1)
    by_layer = F.alpha_by_layer(r)
    (points,) = [s for s in by_layer.series if s.kind == "points"]
    assert points.labels == ("l0#merged", "l1#merged", "l2#merged") and points.x.tolist() == [6.0, 7.0, 8.0]
    assert by_layer.title == "alpha per layer (#merged rows, as the means)"
    dist = F.alpha_distribution(r)
    assert dist.title == "distribution of alpha (#merged rows, as the means)" and _one(dist, "hist", "data").y.sum() == 3
    plain = result_of([layer_row("a"), layer_row("b")])
    assert F.alpha_by_layer(plain).title == "alpha per layer" and F.alpha_distribution(plain).title == "distribution of alpha"


def test_metric_trend_values_are_the_summaries(model, gauss):
    other = htsr.analyze({"a.weight": _rng(5).standard_normal((300, 100))})
    metrics = ["alpha", "D", "num_layers", "rand_js_distance"]
    panels = F.metric_trend([model, other], ["model", "other"], metrics)
    assert [p.ylabel for p in panels] == metrics
    for m, p in zip(metrics, panels):
        line = _one(p, "line", "data")
        want = [r.summary.as_dict()[m] for r in (model, other)]
        np.testing.assert_array_equal(line.y, np.asarray(want, dtype=np.float64))  # NaN where not computed
        assert line.labels == ("model", "other") and line.x.tolist() == [0.0, 1.0]
    assert [p.title for p in panels] == [f"{m} across models" for m in metrics]
    # an adapter's means are over its updates: the metric panels say so, the counts (of every row) do not
    lora = dataclasses.replace(other, summary=dataclasses.replace(other.summary, means_over="delta"))
    titles = [p.title for p in F.metric_trend([model, lora], ["model", "lora"], metrics)]
    over = " (means over every row / #delta rows)"
    assert titles == [f"alpha across models{over}", f"D across models{over}", "num_layers across models",
                      f"rand_js_distance across models{over}"]


def test_series_as_dict_maps_infinities_to_none():
    import numpy as np
    from htsr.figures import Panel, Series

    s = Series("line", np.array([1.0, np.inf]), np.array([np.nan, -np.inf]), "a", "data")
    assert s.as_dict()["x"] == [1.0, None] and s.as_dict()["y"] == [None, None]
    json.dumps(Panel("t", "x", "y", (s,)).as_dict(), allow_nan=False)  # strict JSON, as the docstring says


def test_a_distribution_of_equal_alphas_has_bins_of_positive_width():
    import numpy as np
    from htsr.figures import alpha_distribution

    hist = alpha_distribution(result_of([layer_row("a", alpha=3.0), layer_row("b", alpha=3.0)])).series[0]
    assert hist.x[0] == 3.0 and hist.x[-1] == 4.0 and np.all(np.diff(hist.x) > 0)
    assert hist.y[0] == 2.0  # both layers in the first bar, [3, 3.2)


def test_kinds_are_drawn_in_alphabetical_order():
    from htsr.figures import alpha_by_layer

    r = result_of([layer_row("a", kind="dense"), layer_row("b", kind="conv2d"), layer_row("c", kind="embedding")])
    assert [s.label for s in alpha_by_layer(r).series if s.kind == "points"] == ["conv2d", "dense", "embedding"]


# ------------------------------------------------------------------ mutation round 22 (2026-12-06)
def test_histograms_have_the_documented_number_of_bins():
    """esd_loglog: esd_bins(n) log bins; esd_linear: max(esd_bins, 20) bins; log10 histogram: esd_bins(n) bins
    up to 500 eigenvalues, 100 above."""
    from htsr.rmt.traps import esd_bins

    r = htsr.analyze({"g.weight": _rng(0).standard_normal((600, 200))}, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    n = sp.evals.size  # 200, no zeros
    ll = _one(F.esd_loglog(row, sp), "hist", "data")
    assert ll.y.size == esd_bins(n) and ll.x.size == ll.y.size + 1
    lin = _one(F.esd_linear(row, sp), "hist", "data")
    assert lin.y.size == max(esd_bins((sp.evals <= lin.x[-1]).sum()), 20)
    lg = _one(F.log10_histogram(row, sp), "hist", "data")
    assert lg.y.size == esd_bins(n) and lg.y.sum() == n


def test_esd_loglog_fit_line_stops_at_the_fits_x_max_when_the_top_was_dropped():
    """With drop_top the power law was fitted up to x_max below the largest eigenvalue: the line must stop there,
    not run on over the dropped eigenvalues."""
    r = htsr.analyze({"w.weight": _rng(1).standard_normal((600, 200))}, keep_spectra=True, drop_top=3)
    row, sp = r.layers[0], r.spectra[0]
    assert row.status == "ok" and row.num_fingers == 3 and row.xmax < sp.evals[-1]
    line = _one(F.esd_loglog(row, sp), "line", "fit")
    assert line.x[0] == pytest.approx(row.xmin) and line.x[-1] == pytest.approx(row.xmax)


def test_esd_linear_marks_the_spike_threshold_and_labels_sigma():
    """The 'spike threshold' line is at mp_threshold (above λ₊), and the MP label gives σ, not σ²."""
    r = htsr.analyze({"g.weight": 3.0 * _rng(0).standard_normal((600, 200))}, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    panel = F.esd_linear(row, sp)
    thr = _one(panel, "vline", "threshold")
    assert row.mp_threshold > row.mp_lambda_plus and thr.x[0] == row.mp_threshold
    assert _one(panel, "line", "mp").label == f"MP, σ = {row.mp_sigma:.3g}" == "MP, σ = 3"


def test_xmin_scan_with_farms_marks_the_fits_x_min_in_the_windows_units():
    """The scan is over the FARMS windows' eigenvalues, so its chosen x_min is row.xmin (the windows' units), not
    farms_xmin (the layer's own), which is off the scan's axis."""
    r = htsr.analyze({"w.weight": _rng(2).standard_normal((600, 200))}, keep_spectra=True, farms_aspect=1.0)
    row, sp = r.layers[0], r.spectra[0]
    assert row.farms_xmin != row.xmin
    chosen = _one(F.xmin_scan(row, sp), "vline", "xmin")
    assert chosen.x[0] == row.xmin
    # its legend gives that number, the windows' x_min (the layer's own, 3 decimals apart here, is off this axis)
    assert f"{row.farms_xmin:.3g}" != f"{row.xmin:.3g}" and chosen.label == f"chosen x_min = {row.xmin:.3g}"


def test_alpha_distribution_bands_are_at_2_and_6():
    """The HTSR bands of the alpha distribution: lines at α = 2 and α = 6, labelled so."""
    r = result_of([layer_row("a", alpha=2.5), layer_row("b", alpha=4.0)])
    lines = sorted((s.x[0], s.label) for s in F.alpha_distribution(r).series if s.kind == "vline")
    assert lines == [(2.0, "α = 2"), (6.0, "α = 6")]
    # the bands are alpha's only: alpha_weighted (alpha × log10 λ_max, another scale) gets none in either panel
    r = result_of([layer_row("a", alpha=2.5, alpha_weighted=7.5), layer_row("b", alpha=4.0, alpha_weighted=2.0)])
    assert [s.kind for s in F.alpha_distribution(r, metric="alpha_weighted").series] == ["hist"]
    assert [s.kind for s in F.alpha_by_layer(r, metric="alpha_weighted").series] == ["points"]


def test_alpha_by_layer_has_a_count_axis_and_keeps_layers_without_a_phase():
    """The x axis is a count axis (whole-number ticks in both renderers), and a layer without a phase is drawn
    in the 'no phase' group, not dropped."""
    r = result_of([layer_row("a", alpha=2.5, phase="heavy-tailed"), layer_row("b", alpha=3.5, phase="")])
    for by in ("kind", "phase"):
        assert F.alpha_by_layer(r, by).xlabel in F.COUNT_AXES
    pts = [s for s in F.alpha_by_layer(r, "phase").series if s.kind == "points"]
    assert sorted(s.label for s in pts) == ["heavy-tailed", "no phase"]
    assert sorted(n for s in pts for n in s.labels) == ["a", "b"]


# ------------------------------------------------------------------ mutation round 44 (2026-12-06)
def _row_of(result):
    return result.layers[0], result.spectra[0]


def test_an_all_zero_matrix_and_equal_eigenvalues_give_empty_panels_saying_why():
    """An all-zero matrix keeps 40 zero eigenvalues: the linear ESD and the ERG have no positive one to draw (they
    had been drawn over zero-width bins, or crashed on an empty walk). A scaled identity has 50 equal eigenvalues:
    no log-log histogram can span them."""
    r = htsr.analyze({"z.weight": np.zeros((60, 40))}, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    assert sp.evals.size == 40 and not np.any(sp.evals)  # (the case: else it checks nothing)
    for f in (F.esd_linear, F.erg_boundary):
        p = f(row, sp)
        assert p.series == () and p.note == f"{row.status}; no positive eigenvalues", p.title
    r = htsr.analyze({"i.weight": 3.0 * np.eye(80)[:, :50]}, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    assert sp.evals.size == 50 and np.all(sp.evals == 9.0)  # (σ = 3: every eigenvalue exactly 9)
    p = F.esd_loglog(row, sp)
    assert p.series == () and p.note.endswith("; fewer than 2 distinct nonzero eigenvalues")


@pytest.mark.parametrize("panel", [F.esd_loglog, F.log10_histogram, F.shuffled_esd])
def test_every_log_axis_panel_says_how_many_zeros_it_leaves_out(model, panel):
    """The rank-70 product's 30 zeros are left off every log axis, and each such panel says so (the log10
    histogram's note was checked; the log-log ESD's and the shuffled ESD's were not)."""
    row, sp = _row(model, "lowrank")
    assert row.num_zero_evals == 30
    assert "30 zero eigenvalue(s) (num_zero_evals) not shown" in panel(row, sp).note


def test_reference_line_labels_carry_their_numbers(model):
    """The legend gives the fitted alpha and the ERG tail's size, as they are drawn (only the prefixes were
    checked); the log10 histogram's MP edge is at log10 λ₊, not at the spike threshold."""
    row, sp = _row(model, "heavy")
    assert _one(F.esd_loglog(row, sp), "line", "fit").label == f"power law α = {row.alpha:.3g}"
    assert _one(F.esd_loglog(row, sp), "vline", "xmin").label == f"x_min = {row.xmin:.3g}"
    assert _one(F.erg_boundary(row, sp), "vline", "erg").label == f"ERG edge ({row.num_erg:.0f} evals)"
    assert row.num_erg > 0
    mp = _one(F.log10_histogram(row, sp), "vline", "mp")
    assert row.mp_threshold > row.mp_lambda_plus  # (the two differ: else it checks nothing)
    assert mp.x[0] == pytest.approx(math.log10(row.mp_lambda_plus), rel=1e-12)  # (log10 of the same value)
    # and the log-log ESD's 'MP edge λ₊' is at λ₊ too (its position was not checked)
    assert _one(F.esd_loglog(row, sp), "vline", "mp").x.tolist() == [row.mp_lambda_plus]


def test_farms_panels_label_the_layers_own_x_min_and_the_scan_says_it_is_of_windows():
    """With FARMS the log-log ESD's x_min line is at farms_xmin and its label must give that number, not the
    windows' x_min; the x_min scan is of the windows' eigenvalues and its note says so."""
    r = htsr.analyze({"w.weight": _rng(2).standard_normal((600, 200))}, keep_spectra=True, farms_aspect=1.0)
    row, sp = r.layers[0], r.spectra[0]
    assert f"{row.farms_xmin:.3g}" != f"{row.xmin:.3g}"  # (the two labels differ: else it checks nothing)
    assert _one(F.esd_loglog(row, sp), "vline", "xmin").label == f"x_min = {row.farms_xmin:.3g}"
    assert "the FARMS windows' eigenvalues" in F.xmin_scan(row, sp).note
    assert "FARMS" not in F.xmin_scan(*_row_of(htsr.analyze({"w.weight": _rng(2).standard_normal((600, 200))},
                                                             keep_spectra=True))).note


def test_esd_linear_of_an_ok_row_without_mp_fit_says_how_to_get_one():
    """mp_fit=False: an 'ok' row's linear ESD says the MP fit was off (or there was no bulk), not a bare
    'no MP fit', which is for rows whose status already says what went wrong."""
    row, sp = _row_of(htsr.analyze({"g.weight": _rng(0).standard_normal((600, 200))}, keep_spectra=True,
                                   mp_fit=False))
    assert row.status == "ok" and not math.isfinite(row.mp_lambda_plus)
    p = F.esd_linear(row, sp)
    assert p.note == "no MP fit (mp_fit off, or no bulk to fit: see the phase)"
    assert [s.kind for s in p.series] == ["hist"]


def test_log10_histogram_bins_change_at_500_eigenvalues():
    """Up to 500 eigenvalues esd_bins(n) bins (16 at 500), 100 bins from 501 on."""
    from htsr.rmt.traps import esd_bins

    for m, bins in ((500, esd_bins(500)), (501, 100)):
        row, sp = _row_of(htsr.analyze({"g.weight": _rng(0).standard_normal((1200, m))}, keep_spectra=True))
        assert sp.evals.size == m and row.num_zero_evals == 0
        hist = _one(F.log10_histogram(row, sp), "hist", "data")
        assert hist.y.size == bins and hist.y.sum() == m
    assert esd_bins(500) == 16


@pytest.mark.parametrize("scale", [3.0, 1 / 3])
def test_shuffled_esd_bins_span_both_spectra(gauss, scale):
    """The shared log bins run from the smaller of the two smallest eigenvalues to the larger of the two largest:
    a shuffled ESD above (or below) the layer's had lost its outer eigenvalues off the bins. Here the shuffled
    spectrum is the layer's scaled by 3 (or 1/3), so the edges are known."""
    row, sp = gauss
    sh = dataclasses.replace(sp, rand_evals=sp.evals * scale, rand_threshold=math.nan)
    panel = F.shuffled_esd(dataclasses.replace(row, trap_weights="", num_traps=0.0), sh)
    data, shuffled = _one(panel, "hist", "data"), _one(panel, "hist", "shuffled")
    both = np.r_[sp.evals, sh.rand_evals]
    assert data.x[0] == both.min() and data.x[-1] == pytest.approx(both.max(), rel=1e-11)  # (edge · (1 + 1e-12))
    for h in (data, shuffled):  # every eigenvalue of each on the axis: density × width sums to 1 (rounding only)
        assert float(np.sum(np.nan_to_num(h.y) * np.diff(h.x))) == pytest.approx(1.0, abs=1e-12)


def test_shuffled_esd_of_a_rank_deficient_layer_has_the_bins_of_its_full_spectrum():
    """The bins are esd_bins of the larger of the two spectra, as htsr.rmt.traps.js_distance takes them, so the
    panel shows the histograms the distance compares: a rank-60 layer of 500 eigenvalues has 16 bins (esd_bins(500)),
    not the 10 of its 60 nonzero ones."""
    from htsr.rmt.traps import esd_bins

    rng = _rng(7)
    row, sp = _row_of(htsr.analyze({"p.weight": rng.standard_normal((600, 60)) @ rng.standard_normal((60, 500))},
                                   keep_spectra=True, randomize=True))
    assert row.num_zero_evals == 440 and sp.rand_evals is not None and esd_bins(60) != esd_bins(500)
    panel = F.shuffled_esd(row, sp)
    assert _one(panel, "hist", "data").y.size == _one(panel, "hist", "shuffled").y.size == esd_bins(500)
    # and each is a density over all its spectrum's eigenvalues, as the log-log ESD is: the layer's 60 nonzero ones
    # hold 60/500 of the mass (as a density of the 60 alone it had been drawn 8x too high over the shuffled ESD)
    for h, ev, drawn in ((_one(panel, "hist", "data"), sp.evals, 60), (_one(panel, "hist", "shuffled"), sp.rand_evals,
                                                                      np.count_nonzero(sp.rand_evals > 0))):
        # (density × width sums back to the share: rounding only)
        assert float(np.sum(np.nan_to_num(h.y) * np.diff(h.x))) == pytest.approx(drawn / ev.size, abs=1e-12)


def test_erg_thinned_curve_keeps_both_ends_and_the_point_before_the_crossing(gauss):
    """A known spectrum of 900 eigenvalues (log-spaced 0.01 … 100), whose running log-sum first drops below 0
    at the 434th from the top (worked out here with numpy): the curve, thinned to about 400 points, starts at the
    largest eigenvalue, ends at the smallest, and keeps the two eigenvalues on either side of the crossing
    adjacent (the one before it is off the thinning grid, so it had been replaced by an earlier one)."""
    row, sp = gauss
    ev = np.geomspace(0.01, 100.0, 900)
    pos = ev[::-1]
    j = int(np.flatnonzero(np.cumsum(np.log(pos) - np.log(ev.mean())) < 0)[0])
    assert j == 433 and j - 1 not in np.linspace(0, 899, F.MAX_POINTS).round()  # (the case: else it checks nothing)
    row = dataclasses.replace(row, matrix_rank=900.0, num_zero_evals=0.0)
    line = _one(F.erg_boundary(row, dataclasses.replace(sp, evals=ev)), "line", "data")
    assert line.x[0] == ev[-1] and line.x[-1] == ev[0]
    k = int(np.flatnonzero(line.x == pos[j])[0])
    assert line.x[k - 1] == pos[j - 1] and line.y[k - 1] >= 0 > line.y[k]
    # the running sum at the kept points: the reference's, to rounding of the same cumulative sum
    ref = np.cumsum(np.log(pos) - np.log(ev.mean()))
    np.testing.assert_allclose(line.y[k - 1:k + 1], ref[j - 1:j + 1], rtol=1e-9, atol=1e-9)


def test_empty_model_panels_say_why_and_distribution_bins_follow_the_layer_count():
    """A result without a finite alpha: both model panels say so. The distribution has a third as many bins as
    layers (30 layers: 10), at most 40 (150 layers: 40, not 50)."""
    r = result_of([layer_row("a", alpha=math.nan), layer_row("b", alpha=math.nan)])
    by = F.alpha_by_layer(r)
    assert by.note == "no layer has a finite alpha" and not [s for s in by.series if s.kind == "points"]
    dist = F.alpha_distribution(r)
    assert dist.series == () and dist.note == "no layer has a finite alpha"
    for n, bins in ((30, 10), (150, 40)):
        rows = [layer_row(f"l{i}", alpha=2.0 + i / n) for i in range(n)]
        hist = _one(F.alpha_distribution(result_of(rows)), "hist", "data")
        assert hist.y.size == bins and hist.y.sum() == n


def test_phase_counts_have_no_empty_no_phase_bar():
    """When every layer has a phase there is no 'no phase' bar (with a height of 0 it had been drawn)."""
    rows = [layer_row("a", phase=PHASES[0]), layer_row("b", phase=PHASES[1]), layer_row("c", phase=PHASES[1])]
    bar = _one(F.phase_counts(result_of(rows)), "bar", "data")
    assert bar.labels == tuple(PHASES) and bar.y.tolist() == [1.0, 2.0] + [0.0] * (len(PHASES) - 2)


def test_metric_trend_names_merged_rows():
    """A merged adapter's means are over its #merged rows, and the panel says so (not '#delta rows')."""
    r = htsr.analyze({"a.weight": _rng(5).standard_normal((300, 100))})
    merged = dataclasses.replace(r, summary=dataclasses.replace(r.summary, means_over="merged"))
    assert F.metric_trend([merged], ["m"], ["alpha"])[0].title == "alpha across models (means over #merged rows)"


def test_panel_json_keeps_the_labels_of_bars_and_points(model):
    """The HTML report draws from as_dict: a bar's categories and each point's layer name travel with it."""
    bar = F.phase_counts(model).as_dict()["series"][0]
    assert bar["labels"] == list(PHASES) + ["no phase"]
    pts = [s for s in F.alpha_by_layer(model).as_dict()["series"] if s["kind"] == "points"]
    assert sorted(n for s in pts for n in s["labels"]) == sorted(r.name for r in model.layers if math.isfinite(r.alpha))
    assert "labels" not in F.Series("line", np.zeros(2), np.zeros(2)).as_dict()


def test_xmin_scan_spread_always_scans_the_fits_x_min(gauss, monkeypatch):
    """Above 4·MAX_POINTS candidates a spread is scanned, plus the fit's x_min: its own index, found by a left
    search (the next one, a right search's, is another candidate). Here 2500 seeded Pareto eigenvalues and an x_min
    off the spread's grid, so only the added index brings it in."""
    from htsr.fits.powerlaw import run_starts

    x = np.sort(_rng(8).pareto(2.0, 2500) + 1.0)
    cand = run_starts(x, np.arange(x.size - 1))  # (every candidate but the top, as the fit's)
    grid = cand[np.linspace(0, cand.size - 1, 4 * F.MAX_POINTS).round().astype(np.intp)]
    k = int(next(c for c in cand[cand >= 1000] if c not in grid))
    assert k not in grid and k + 1 in grid  # (the case: else it checks nothing)
    seen = []
    orig = F.ks_scan
    monkeypatch.setattr(F, "ks_scan", lambda v, c=None: seen.append(np.asarray(c)) or orig(v, c))
    row, sp = gauss
    row = dataclasses.replace(row, xmin=float(x[k]), num_fingers=0.0, farms_windows=math.nan)
    panel = F.xmin_scan(row, dataclasses.replace(sp, fit_evals=x))
    assert len(seen) == 1 and k in seen[0] and seen[0].size == 4 * F.MAX_POINTS + 1
    assert _one(panel, "vline", "xmin").x[0] == x[k]


def test_erg_running_sum_of_a_layer_with_a_few_dead_columns_walks_its_rank():
    """5 all-zero input columns of 100: rank 95, 5 zeros (fewer than ERG_ZERO_SHARE of them, so the rank decides):
    the curve is over the 95 eigenvalues of the rank, as the analysis takes its ERG, and crosses 0 at its edge
    (over all 100, zeros in the mean, it had crossed at 55.0, not 66.2)."""
    W = _rng(11).standard_normal((200, 100))
    W[:, :5] = 0.0
    row, sp = _row_of(htsr.analyze({"w.weight": W}, keep_spectra=True))
    assert (row.matrix_rank, row.num_zero_evals) == (95, 5)  # (the case: else it checks nothing)
    line = _one(F.erg_boundary(row, sp), "line", "data")
    k = int(np.flatnonzero(line.y < 0)[0])
    assert line.x[k] == row.erg_lambda_min_raw and line.y[k - 1] >= 0  # the same sums as htsr.rmt.setol: exactly
    assert line.x.size == 95


# ------------------------------------------------------------------ mutation round 74 (2026-12-07)
def test_a_row_with_an_unknown_zero_count_draws_every_positive_eigenvalue(gauss):
    """num_zero_evals NaN (not counted) leaves no eigenvalue out: the log-log histogram holds all 500 and says
    nothing of zeros (a NaN count had been taken as one zero, the smallest eigenvalue dropped)."""
    row, sp = gauss
    panel = F.esd_loglog(dataclasses.replace(row, num_zero_evals=math.nan), sp)
    hist = _one(panel, "hist", "data")
    # density × width sums back to the share drawn: all of them (rounding only)
    assert float(np.sum(np.nan_to_num(hist.y) * np.diff(hist.x))) == pytest.approx(1.0, abs=1e-12)
    assert hist.x[0] == sp.evals[0] and "zero eigenvalue" not in panel.note


def test_a_skipped_zero_update_has_an_empty_x_min_scan_noting_its_status(tmp_path):
    """A LoRA adapter whose B is still 0 is 'skipped: zero update' with its (all-zero) eigenvalues kept: its x_min
    scan is empty like a not-fitted row's, its note the status alone (it had gone on to 'fewer than 3 eigenvalues
    to scan', as if a fit had been drawn from too few)."""
    from safetensors.numpy import save_file

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 8}))
    save_file({"base_model.model.m.lora_A.weight": _rng(3).standard_normal((8, 150)).astype(np.float32),
               "base_model.model.m.lora_B.weight": np.zeros((200, 8), np.float32)},
              str(tmp_path / "adapter_model.safetensors"))
    row, sp = _row_of(htsr.analyze(tmp_path, keep_spectra=True))
    assert row.status.startswith("skipped: zero update") and sp is not None  # (the case: else it checks nothing)
    p = F.xmin_scan(row, sp)
    assert p.series == () and p.note == row.status and p.ylabel2 == "alpha"


def test_xmin_scan_of_a_flat_tail_is_empty_and_says_so(gauss):
    """Eigenvalues all within FLAT_SPREAD (1e-4) of the largest, though not equal: the fit takes none of them as
    x_min, so there is no candidate; the panel is empty with the reason, not two empty curves."""
    row, sp = gauss
    x = 1.0 + 1e-7 * np.arange(50)  # a spread of 4.9e-6 of the largest
    assert x[-1] - x[0] < F.FLAT_SPREAD * x[-1] and x[0] != x[-1]  # (the case: else it checks nothing)
    row = dataclasses.replace(row, num_fingers=0.0, farms_windows=math.nan)
    p = F.xmin_scan(row, dataclasses.replace(sp, fit_evals=x))
    assert p.series == () and p.note == "a flat tail: no candidate to scan"


def test_shuffled_esd_with_one_shuffled_eigenvalue_is_empty(gauss):
    """A shuffled spectrum with a single positive eigenvalue has no histogram to compare (either side short
    empties the panel, not only both)."""
    row, sp = gauss
    rand = np.r_[np.zeros(sp.evals.size - 1), 5.0 * sp.evals[-1]]
    p = F.shuffled_esd(row, dataclasses.replace(sp, rand_evals=rand))
    assert p.series == () and p.note == "fewer than 2 nonzero eigenvalues" and p.xlog and p.ylog



def test_adapter_figures_count_the_rows_the_summary_counts():
    """An adapter's 'layers per phase' counts its #merged rows, as the summary's phase counts (it had counted the
    #base rows beside them, untitled: h44; an update has no phase); a trend's counts say which rows, its status
    counts are every row's; count columns get whole-number ticks."""
    from conftest import layer_row, result_of

    rows = [layer_row("q#delta", kind="lora", phase="", num_traps=math.nan), layer_row("q#base", phase="bulk-decay"),
            layer_row("q#merged", phase="heavy-tailed")]
    r = result_of(rows)
    assert r.summary.means_over == "delta"
    panel = F.phase_counts(r)
    assert panel.title == "layers per phase (updates with one, else #merged rows, as the summary)"
    assert _one(panel, "bar", "data").y.tolist() == [1.0 if p == "heavy-tailed" else 0.0 for p in PHASES]
    titles = [p.title for p in F.metric_trend([r, r], ["a", "b"], ["alpha", "num_uncertain", "num_failed",
                                                                   "num_heavy_tailed"])]
    assert titles == ["alpha across models (means over #delta rows)", "num_uncertain across models (over #delta rows)",
                      "num_failed across models",
                      "num_heavy_tailed across models (over updates with one, else #merged rows)"]
    assert {"num_failed", "num_uncertain", "num_heavy_tailed", "layers"} <= F.COUNT_AXES


def test_the_shuffled_esd_of_a_pruned_layer_leaves_out_its_zeros():
    """A 99.5 %-pruned 512 x 256 layer: its shuffle's zero eigenvalues come out as rounding, 1e-72 to 1e-34, which
    had stretched the shared log bins over 70 decades (the layer's own zeros were left out). Left out at float32
    precision as the layer's (num_zero_evals), and said so."""
    rng = _rng(9)
    W = rng.standard_normal((512, 256)) * (rng.random((512, 256)) < 0.005)
    r = htsr.analyze({"p.weight": W}, randomize=True, keep_spectra=True, min_evals=10)
    row, sp = r.layers[0], r.spectra[0]
    panel = F.shuffled_esd(row, sp)
    edges = _one(panel, "hist", "shuffled").x
    assert edges[0] > 1e-12 * edges[-1]
    shown = sp.rand_evals[sp.rand_evals > edges[0] * (1 - 1e-9)].size
    assert f"{sp.rand_evals.size - shown} zero eigenvalue(s) of the shuffled ESD not shown" in panel.note
