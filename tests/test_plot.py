"""htsr.plot: the matplotlib renderer of htsr.figures (Agg; no pyplot, nothing shown)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Rectangle, StepPatch

import htsr
from conftest import missing_extra_error
from htsr import figures as F
from htsr import plot as P
from htsr.errors import HtsrError, MissingExtraError, OptionError
from htsr.rmt.phases import PHASES


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(3)
    layers = {
        "dense.weight": rng.standard_normal((600, 200)),
        "heavy.weight": rng.standard_t(2.5, (400, 200)),  # heavy entries: correlation traps
        "tiny.weight": rng.standard_normal((20, 10)),  # not fitted
    }
    return htsr.analyze(layers, keep_spectra=True, randomize=True)


def _layer(result, name: str):
    i = [r.name for r in result.layers].index(name)
    return result.layers[i], result.spectra[i]


def _legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def _steps(ax) -> list[StepPatch]:
    return [p for p in ax.patches if isinstance(p, StepPatch)]


def _hex(line) -> str:
    return to_hex(line.get_color())


# ----------------------------------------------------------------------------------- per-layer figures


def test_plot_esd(result):
    row, sp = _layer(result, "heavy")
    fig = P.plot_esd(row, sp)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(_steps(ax)) == 1 and _steps(ax)[0].get_fill()  # the histogram
    lines = ax.get_lines()
    assert len(lines) == 3  # the power law, x_min, the MP edge
    fit = [ln for ln in lines if ln.get_label().startswith("power law")][0]
    assert _hex(fit) == P.ROLE_COLORS["fit"]
    labels = _legend(ax)
    assert "ESD" in labels and any(t.startswith("x_min = ") for t in labels) and "MP edge λ₊" in labels
    xmin = [ln for ln in lines if ln.get_label().startswith("x_min")][0]
    assert xmin.get_xdata()[0] == row.xmin and xmin.get_linestyle() == "--"


def test_plot_esd_linear(result):
    row, sp = _layer(result, "dense")
    ax = P.plot_esd_linear(row, sp).axes[0]
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "linear"
    assert len(_steps(ax)) == 1
    mp = [ln for ln in ax.get_lines() if ln.get_label().startswith("MP")][0]
    assert _hex(mp) == P.ROLE_COLORS["mp"] and len(mp.get_xdata()) == 200
    assert "spike threshold" in _legend(ax)


def test_plot_log10_histogram(result):
    row, sp = _layer(result, "heavy")
    ax = P.plot_log10_histogram(row, sp).axes[0]
    assert len(_steps(ax)) == 1
    assert sorted(_legend(ax)) == sorted(["log10 λ", "x_min", "MP edge λ₊", "ERG edge"])
    assert len(ax.get_lines()) == 3


def test_plot_xmin_scan_has_a_twin_axis_for_alpha(result):
    row, sp = _layer(result, "dense")
    fig = P.plot_xmin_scan(row, sp)
    assert len(fig.axes) == 2
    ax, twin = fig.axes
    assert ax.get_xscale() == "log" and twin.get_ylabel() == "alpha" and ax.get_ylabel() == "KS distance D"
    assert [ln.get_label() for ln in twin.get_lines()] == ["alpha"]
    labels = _legend(twin)  # one legend for both axes, on the twin (drawn on top)
    assert "D" in labels and "alpha" in labels and any("x_min" in t for t in labels)
    D = [ln for ln in ax.get_lines() if ln.get_label() == "D"][0]
    i = int(np.argmin(D.get_ydata()))
    assert D.get_xdata()[i] == row.xmin


def test_plot_shuffled_esd_draws_traps_as_a_rug(result):
    row, sp = _layer(result, "heavy")
    assert row.num_traps > 0
    ax = P.plot_shuffled_esd(row, sp).axes[0]
    steps = _steps(ax)
    assert len(steps) == 2 and steps[0].get_fill() and not steps[1].get_fill()
    rug = [ln for ln in ax.get_lines() if ln.get_marker() == "|"]
    assert len(rug) == 1 and len(rug[0].get_xdata()) == row.num_traps
    assert rug[0].get_transform() == ax.get_xaxis_transform()  # y in axis units: at the bottom
    assert np.all(np.asarray(rug[0].get_ydata()) == 0)
    assert f"{row.num_traps:.0f} trap(s)" in _legend(ax)
    assert any(row.trap_weights in t.get_text() for t in ax.texts)  # the note


def test_plot_erg(result):
    row, sp = _layer(result, "dense")
    ax = P.plot_erg(row, sp).axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) == 4  # running sum, the zero line, the ERG edge, x_min
    zero = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(zero) == 1 and list(zero[0].get_ydata()) == [0, 0]
    assert len(_legend(ax)) == 3  # the zero line has no label
    # one colour per role in every figure: x_min here as in the ESD
    xmin = [ln for ln in ax.get_lines() if ln.get_label() == "x_min"][0]
    esd_xmin = [ln for ln in P.plot_esd(row, sp).axes[0].get_lines() if ln.get_label().startswith("x_min")][0]
    assert _hex(xmin) == _hex(esd_xmin) == P.ROLE_COLORS["xmin"]


def test_plot_functions_draw_on_a_given_axis(result):
    row, sp = _layer(result, "dense")
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert P.plot_esd(row, sp, ax=axes[0]) is fig
    assert P.plot_alpha_by_layer(result, ax=axes[1]) is fig
    assert len(fig.axes) == 2 and axes[0].get_title().startswith("ESD, log-log")


def test_not_fitted_layer_panels_show_their_notes(result):
    row, sp = _layer(result, "tiny")
    ax = P.plot_xmin_scan(row, sp).axes[0]  # an empty panel: the note in the middle, no ticks
    assert not ax.get_lines() and [t.get_text() for t in ax.texts] == [row.status]
    ax = P.plot_esd(row, sp).axes[0]  # a histogram, no fit, the status under the axes
    assert len(ax.get_lines()) == 0 and any(row.status in t.get_text() for t in ax.texts)


def test_plot_layer_grid(result):
    fig = P.plot_layer(result, "heavy")
    assert len(fig.axes) == 7  # six panels and the x_min scan's twin
    # two rows of three, as the figure's size (2 × 4.4 in by 3 × 6.4 in) is made for
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert [t.split(":")[0] for t in titles] == ["ESD, log-log", "ESD and Marchenko–Pastur", "log10 λ",
                                                 "x_min scan", "ESD and shuffled ESD", "ERG condition"]
    assert "heavy" in fig.get_suptitle()
    assert P.plot_layer(result, 1).get_suptitle() == fig.get_suptitle()
    assert P.plot_layer(result, -2).get_suptitle() == fig.get_suptitle()


def test_plot_layer_errors(result):
    for bad in ("nope", 3, -4):
        with pytest.raises(OptionError):
            P.plot_layer(result, bad)
    no_spectra = htsr.analyze({"w.weight": np.random.default_rng(0).standard_normal((100, 60))})
    with pytest.raises(HtsrError) as ei:
        P.plot_layer(no_spectra, "w")
    msg = str(ei.value)
    assert isinstance(ei.value, OptionError) and "\n" not in msg and "keep_spectra=True" in msg
    failed = htsr.analyze({"w.weight": np.full((60, 50), np.nan)}, keep_spectra=True)
    with pytest.raises(OptionError, match="NaN"):
        P.plot_layer(failed, 0)
    with pytest.raises(OptionError, match="keep_spectra=True"):
        P.plot_esd(no_spectra.layers[0], None)
    # a notebook's slips had been AttributeError tracebacks: the whole result (or a path) for a layer, the two
    # arguments swapped, a saved run's path for plot_layer
    row, spectra = result.layers[0], result.spectra[0]
    for args, got in (((result, result.spectra), "AnalysisResult, tuple"), ((spectra, row), "LayerSpectra, LayerResult")):
        with pytest.raises(OptionError) as ei:
            P.plot_esd(*args)
        assert str(ei.value) == ("a per-layer plot takes one layer's row and its eigenvalues, (result.layers[i], "
                                 f"result.spectra[i]), not ({got}); plot_layer takes the whole result")
    with pytest.raises(OptionError, match=r"^plot_layer takes the result htsr\.analyze returns, not str; read a saved "
                                          r"run with htsr\.results\.load_result\(path\)"):
        P.plot_layer("run.json", 0)


# --------------------------------------------------------------------------------------- model figures


@pytest.mark.parametrize("color_by", ["kind", "phase"])
def test_plot_alpha_by_layer(result, color_by):
    ax = P.plot_alpha_by_layer(result, color_by=color_by).axes[0]
    panel = F.alpha_by_layer(result, color_by=color_by)
    groups = [s for s in panel.series if s.kind == "points"]
    points = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert [ln.get_label() for ln in points] == [s.label for s in groups]
    for ln, s in zip(points, groups):
        assert _hex(ln) == P.role_color(s.role)
    assert sum(len(ln.get_xdata()) for ln in points) == sum(math.isfinite(r.alpha) for r in result.layers)
    assert sorted(ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--") == [2.0, 6.0]
    assert "α = 2" in _legend(ax)
    with pytest.raises(ValueError):
        P.plot_alpha_by_layer(result, color_by="shape")


def test_plot_alpha_distribution(result):
    ax = P.plot_alpha_distribution(result).axes[0]
    assert len(_steps(ax)) == 1 and len(ax.get_lines()) == 2


def test_plot_phase_counts(result):
    ax = P.plot_phase_counts(result).axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == list(PHASES) + ["no phase"]  # the tiny layer has no phase
    assert len(bars) == len(labels)
    assert sum(b.get_height() for b in bars) == len(result.layers)
    assert to_hex(bars[PHASES.index("random-like")].get_facecolor()) == P.role_color("phase:random-like")
    assert all(t.get_rotation() == 30 for t in ax.get_xticklabels())


def test_phase_colours_follow_the_order_of_phases():
    assert [P.role_color(f"phase:{p}") for p in PHASES] == list(P.PALETTE[:len(PHASES)])
    assert P.role_color("kind:dense") == P.PALETTE[0] and P.role_color("fit:right") == P.ROLE_COLORS["fit"]
    assert P.role_color("kind:something-new") == P.role_color("kind:something-new") in P.PALETTE


# ---------------------------------------------------------------------------------------------- saving


def test_save_panels_writes_a_png_atomically(result, tmp_path):
    row, sp = _layer(result, "heavy")
    path = tmp_path / "panels.png"
    path.write_bytes(b"old")
    P.save_panels(F.layer_panels(row, sp)[:2], path, ncols=2)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and float(img.var()) > 0  # not blank
    assert sorted(os.listdir(tmp_path)) == ["panels.png"]  # no temporary file left


def test_save_panels_svg_pdf_and_errors(result, tmp_path):
    panels = [F.phase_counts(result)]
    P.save_panels(panels, tmp_path / "a.SVG")
    assert b"<svg" in (tmp_path / "a.SVG").read_bytes()[:1000]
    P.save_panels(panels, str(tmp_path / "a.pdf"), ncols=1)
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(OptionError, match=r"\.png"):
        P.save_panels(panels, tmp_path / "a.jpg")
    with pytest.raises(OptionError):
        P.save_panels([], tmp_path / "b.png")
    with pytest.raises(OptionError):
        P.save_panels(panels, tmp_path / "b.png", ncols=0)
    assert sorted(os.listdir(tmp_path)) == ["a.SVG", "a.pdf"]


def test_save_panels_failure_keeps_the_old_file(result, tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    path.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(P.os, "replace", fail)
    with pytest.raises(HtsrError, match="disk full"):
        P.save_panels([F.phase_counts(result)], path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["p.png"]


def test_draw_panels_grid_drops_unused_axes(result):
    fig = P.draw_panels([F.phase_counts(result)] * 3, ncols=2)
    assert len(fig.axes) == 3


# ------------------------------------------------------------------------------- no pyplot, lazy import


def test_no_pyplot_and_matplotlib_imported_lazily(tmp_path):
    """Importing htsr.plot imports no matplotlib; drawing and saving never import pyplot (no global state)."""
    code = ("import sys, numpy as np, htsr, htsr.plot as P\n"
            "before = 'matplotlib' in sys.modules\n"
            "r = htsr.analyze({'w.weight': np.random.default_rng(0).standard_normal((120, 60))}, keep_spectra=True)\n"
            "P.plot_layer(r, 0)\n"
            "P.save_panels(htsr.figures.layer_panels(r.layers[0], r.spectra[0])[:1], sys.argv[1])\n"
            "print(before, 'matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.png")], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "True", "False"]
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_matplotlib_is_a_missing_extra(result, monkeypatch, tmp_path):
    row, sp = _layer(result, "dense")
    msg = missing_extra_error(monkeypatch, "matplotlib", lambda: P.plot_esd(row, sp))
    assert "htsr[plot]" in msg and "matplotlib" in msg
    with pytest.raises(MissingExtraError):
        P.save_panels([F.phase_counts(result)], tmp_path / "never.png")
    assert os.listdir(tmp_path) == []


def test_a_bad_colouring_or_metric_is_an_option_error_naming_the_choices():
    """plot_alpha_by_layer(color_by='xyz') raised a bare ValueError, metric='nope' an AttributeError of
    LayerResult: htsr's OptionError now, naming what is allowed."""
    from htsr.errors import OptionError
    from htsr.figures import alpha_by_layer, alpha_distribution

    result = htsr.analyze({"fc.weight": np.random.default_rng(0).standard_normal((80, 60)).astype(np.float32)})
    with pytest.raises(OptionError, match="color_by must be 'kind' or 'phase'"):
        alpha_by_layer(result, color_by="xyz")
    with pytest.raises(OptionError, match=r"metric .nope. is not a numeric per-layer column .*: htsr\.COLUMNS\)$"):
        alpha_by_layer(result, metric="nope")
    with pytest.raises(OptionError, match="metric 'name' is not a numeric"):
        alpha_distribution(result, metric="name")


def test_count_axes_have_whole_ticks_and_a_short_log_axis_plain_labels():
    """'layers per phase' had ticks at 0.5 and 1.5 layers; a log axis within a decade labelled every minor
    tick 2×10⁰ 3×10⁰ 4×10⁰ …, overlapping. Counts tick at whole numbers; such an axis labels 2 and 5 times the
    powers of ten, as plain numbers."""
    r = htsr.analyze({"fc.weight": np.random.default_rng(0).standard_normal((80, 60)).astype(np.float32)})
    fig = P.draw_panel(F.phase_counts(r))
    fig.canvas.draw()
    ticks = fig.axes[0].get_yticks()
    assert all(float(t).is_integer() for t in ticks)
    panel = F.Panel("t", "eigenvalue λ", "density",
                    (F.Series("line", np.linspace(1.5, 9, 20), np.linspace(0.2, 0.9, 20), "x", "data"),),
                    xlog=True, ylog=True)
    fig = P.draw_panel(panel)
    fig.canvas.draw()
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_text() and
             ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert shown == ["2", "5"], shown


def test_long_titles_are_elided_and_close_values_are_not_offset():
    """An 800-character layer name made a title running into its neighbours'; mean alphas 4.571187 and 4.571193
    were ticked '1e−6 + 4.5711' (an offset), a steep line out of nothing. Titles keep their two ends; ticks
    show the values."""
    name = "encoder." * 100 + "fc"
    fig = P.draw_panel(F.Panel(f"ESD, log-log: {name}", "x", "mean alpha",
                               (F.Series("line", np.array([0.0, 1.0]), np.array([4.571187, 4.571193]), "a", "data"),)))
    fig.canvas.draw()
    ax = fig.axes[0]
    title = ax.get_title()
    first, second = title.split("\n")  # (two lines of the panel's width at most, both ends kept)
    assert len(first) == len(second) + 1 and "…" in title
    assert title.startswith("ESD, log-log: encoder.") and title.endswith("encoder.fc")
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert all(t.get_text().startswith("4.5711") for t in ax.get_yticklabels() if t.get_text())


def test_import_htsr_then_htsr_plot_as_the_docs_write_it():
    """README and docs/monitor.md call ``htsr.plot.plot_layer(...)`` / ``htsr.plot.save_panels(...)`` after
    ``import htsr``: the submodule loads on first use (it had raised AttributeError), and not before (importing
    htsr loads no matplotlib). A fresh interpreter: this one has imported htsr.plot already."""
    code = ("import sys, htsr; assert 'matplotlib' not in sys.modules and 'htsr.plot' not in sys.modules; "
            "import numpy as np; r = htsr.analyze({'fc.weight': np.random.default_rng(0).standard_normal((300, 100))}, "
            "keep_spectra=True); assert {'plot', 'monitor', 'compare'} <= set(dir(htsr)); "
            "fig = htsr.plot.plot_layer(r, 'fc'); print(type(fig).__name__, htsr.monitor.AlphaMonitor.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Figure", "AlphaMonitor"]


def test_a_trend_labels_its_ticks_by_model_up_to_30_models():
    """A trend across models names each x tick by its model, up to 30 (more would overlap): then numbers."""
    r = htsr.analyze({"w.weight": np.random.default_rng(0).standard_normal((200, 80))})
    for n, named in ((30, True), (31, False)):
        labels = [f"ckpt-{i}" for i in range(n)]
        ax = P.draw_panel(F.metric_trend([r] * n, labels, ["alpha"])[0]).axes[0]
        shown = [t.get_text() for t in ax.get_xticklabels()]
        assert (shown == labels) is named, shown[:3]


def test_a_reference_line_at_zero_or_below_is_not_drawn_on_a_log_axis():
    """A vertical line at x ≤ 0 has no place on a log x axis (matplotlib would warn and lose the limits): it is left
    out; on a linear axis it is drawn."""
    def panel(xlog):
        return F.Panel("t", "x", "y", (F.Series("line", np.array([1.0, 10.0]), np.array([1.0, 2.0]), "a", "data"),
                                       F.Series("vline", np.array([0.0]), np.array([]), "at 0", "xmin")), xlog=xlog)

    assert len(P.draw_panel(panel(True)).axes[0].lines) == 1
    assert len(P.draw_panel(panel(False)).axes[0].lines) == 2


def test_a_long_note_is_cut_to_three_lines_ending_in_an_ellipsis():
    note = " ".join(["word"] * 200)  # 999 characters: ten lines of 100
    text = P._wrapped(note, 100, 3)
    lines = text.split("\n")
    assert len(lines) == 3 and all(len(line) <= 100 for line in lines) and lines[-1].endswith("…")
    assert P._wrapped("short note", 100, 3) == "short note"


def test_a_grid_of_fewer_panels_than_columns_is_as_wide_as_its_panels():
    p = F.Panel("t", "x", "y", (F.Series("line", np.array([1.0, 2.0]), np.array([1.0, 2.0]), "a", "data"),))
    one = P.draw_panels([p], ncols=1).get_size_inches()
    np.testing.assert_array_equal(P.draw_panels([p], ncols=3).get_size_inches(), one)
    np.testing.assert_array_equal(P.draw_panels([p, p], ncols=3).get_size_inches(), one * [2, 1])


def test_the_layer_figure_title_has_alpha_only_when_the_layer_has_one(result):
    assert P.plot_layer(result, "tiny").get_suptitle().startswith("tiny (dense, 20x10): not_fitted")
    assert "α" not in P.plot_layer(result, "tiny").get_suptitle()
    row, _ = _layer(result, "heavy")
    assert P.plot_layer(result, "heavy").get_suptitle().endswith(f"α = {row.alpha:.3g}")


# ---- round 26's gaps ----------------------------------------------------------------------------------


def test_a_points_series_with_nan_heights_is_listed_once_in_the_legend():
    """A points series with finite and NaN y: markers and a rug, one legend entry."""
    s = F.Series("points", np.array([1.0, 2.0, 3.0]), np.array([1.0, math.nan, 2.0]), "grp", "data")
    ax = P.draw_panel(F.Panel("t", "x", "y", (s,))).axes[0]
    assert [ln.get_marker() for ln in ax.get_lines()] == ["o", "|"]
    assert _legend(ax) == ["grp"]
    # the markers where y is finite, the rug only where it is NaN (the rug had marked every point)
    marks, rug = ax.get_lines()
    assert list(marks.get_xdata()) == [1.0, 3.0] and list(rug.get_xdata()) == [2.0]


def test_every_phase_bar_has_its_phase_colour_and_no_phase_is_grey(result):
    """Each bar of 'layers per phase' in its phase's colour, 'no phase' grey (data-blue coincides with
    random-like's colour, so only a bar other than the first tells)."""
    ax = P.plot_phase_counts(result).axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names[-1] == "no phase"
    assert [to_hex(b.get_facecolor()) for b in bars] == [P.role_color(f"phase:{n}") for n in names]
    assert to_hex(bars[-1].get_facecolor()) == "#7f7f7f" != to_hex(bars[1].get_facecolor())
    # no legend: its one swatch had been random-like's blue, labelled 'layers', matching no bar
    assert ax.get_legend() is None


def test_a_note_of_exactly_three_lines_is_not_cut_and_a_cut_line_stays_within_100():
    """_wrapped: three lines are kept whole (no '…'); a cut last line of 100 characters ends in '…' within
    100 characters."""
    three = " ".join(["word"] * 60)  # 20 words a line: exactly three lines of 99
    assert P._wrapped(three, 100, 3) == "\n".join(textwrap.wrap(three, 100)) and "…" not in P._wrapped(three, 100, 3)
    note = " ".join(["x" * 100] * 5)  # five lines of exactly 100 characters
    lines = P._wrapped(note, 100, 3).split("\n")
    assert len(lines) == 3 and lines[-1] == "x" * 99 + "…"


def test_titles_and_notes_fit_their_panels_width():
    """A long title had its middle cut out ('alpha_weighted across models (m…rows / #delta rows / every row)':
    which rows a mean is over, lost), and an empty panel's note, wrapped at 100 characters whatever the panel's
    width, ran over its y label. Both wrap to the panel's width now: the title on two lines, whole here; every
    line drawn within the axes."""
    title = "alpha_weighted across models (means over #merged rows / #delta rows / every row)"
    line = (F.Series("line", np.array([0.0, 1.0]), np.array([0.0, 1.0]), "a", "data"),)
    note = "not_fitted: 12 eigenvalues < min_evals=50; " * 4
    fig = P.draw_panels([F.Panel(title, "x", "y", line), F.Panel("t", "x", "y", (), note=note)], ncols=2)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    top, empty = fig.axes
    assert top.get_title().replace("\n", " ") == title and top.get_title().count("\n") == 1
    for ax, text in ((top, top.title), (empty, empty.texts[0])):
        box, width = text.get_window_extent(renderer), ax.get_window_extent(renderer).width
        assert box.width <= width * 1.02, (text.get_text(), box.width, width)  # (2 %: glyph widths vary)
    # a narrow axis of the user's own (draw_panel(panel, ax)): wrapped to its width, not to a default panel's
    from matplotlib.figure import Figure

    small = Figure(figsize=(3.0, 3.0))
    ax = small.add_subplot()
    P.draw_panel(F.Panel(title, "x", "y", line), ax)
    renderer = FigureCanvasAgg(small).get_renderer()
    small.draw(renderer)
    assert ax.title.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width * 1.02


def test_a_right_axis_reference_line_at_zero_is_drawn_on_a_log_y_panel():
    """ylog is the left axis': a right-axis (':right') hline at 0 is drawn on the linear twin."""
    panel = F.Panel("t", "x", "y", (F.Series("line", np.array([1.0, 10.0]), np.array([1.0, 2.0]), "a", "data"),
                                    F.Series("hline", np.array([]), np.array([0.0]), "zero", "zero:right")),
                    ylog=True, ylabel2="right")
    fig = P.draw_panel(panel)
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 1 and fig.axes[0].get_yscale() == "log"


def test_a_title_past_two_lines_keeps_its_two_ends():
    """A title that fits on one line is kept as it is; one longer than two lines of the panel's width keeps its
    start and its end, the middle elided."""
    line = (F.Series("line", np.array([0.0, 1.0]), np.array([0.0, 1.0]), "a", "data"),)
    assert P.draw_panel(F.Panel("short title", "x", "y", line)).axes[0].get_title() == "short title"
    long = " ".join(f"encoder.layer.{i}.attention" for i in range(12))
    shown = P.draw_panel(F.Panel(long, "x", "y", line)).axes[0].get_title()
    joined = shown.replace("\n", "")
    head, tail = joined.split("…")
    assert shown.count("\n") == 1 and long.startswith(head) and long.endswith(tail)


def test_can_draw_fails_before_the_analyses_without_matplotlib(monkeypatch):
    """can_draw checks matplotlib is installed, not only the extension."""
    assert P.can_draw("x.PDF") == "pdf"
    msg = missing_extra_error(monkeypatch, "matplotlib", lambda: P.can_draw("x.png"))
    assert "htsr[plot]" in msg


def test_plot_layer_takes_a_layer_by_its_exact_name_or_integer_index_not_a_bool():
    """plot_layer(result, 'fc') is the layer named fc even after encoder.fc; True is no index."""
    rng = np.random.default_rng(0)
    r = htsr.analyze({"encoder.fc.weight": rng.standard_normal((120, 60)), "fc.weight": rng.standard_normal((100, 50))},
                     keep_spectra=True)
    assert [x.name for x in r.layers] == ["encoder.fc", "fc"]
    assert P.plot_layer(r, "fc").get_suptitle().startswith("fc (")
    with pytest.raises(OptionError):
        P.plot_layer(r, True)


def test_plot_layer_draws_that_layers_own_eigenvalues(result):
    """The layer figure's ESD panel holds the same histogram as plot_esd of that layer (another layer's)."""
    for name in ("dense", "heavy"):
        row, sp = _layer(result, name)
        fig = P.plot_layer(result, name)
        mine = _steps(fig.axes[0])[0].get_data()
        ref = _steps(P.plot_esd(row, sp).axes[0])[0].get_data()
        np.testing.assert_array_equal(mine.values, ref.values)
        np.testing.assert_array_equal(mine.edges, ref.edges)


def test_plot_alpha_by_layer_and_distribution_draw_the_metric_asked(result):
    """metric= reaches the panel: the points are the rows' log_norm, the histogram counts them."""
    ax = P.plot_alpha_by_layer(result, metric="log_norm").axes[0]
    ys = sorted(y for ln in ax.get_lines() if ln.get_marker() == "o" for y in ln.get_ydata())
    assert ys == sorted(r.log_norm for r in result.layers if math.isfinite(r.log_norm))
    assert ax.get_ylabel() == "log_norm"
    ax = P.plot_alpha_distribution(result, metric="log_norm").axes[0]
    assert ax.get_xlabel() == "log_norm" and not ax.get_lines()  # no alpha = 2 / 6 lines
    assert _steps(ax)[0].get_data().values.sum() == sum(math.isfinite(r.log_norm) for r in result.layers)


# ---- round 44's gaps ----------------------------------------------------------------------------------


def test_a_zero_reference_line_is_not_drawn_on_a_log_y_axis_but_is_on_a_linear_one():
    """An hline at y = 0 has no place on a log y axis (the left axis' ylog): left out there, drawn on a linear
    one (the right-axis case is checked above)."""
    def panel(ylog):
        return F.Panel("t", "x", "y", (F.Series("line", np.array([1.0, 10.0]), np.array([1.0, 2.0]), "a", "data"),
                                       F.Series("hline", np.array([]), np.array([0.0]), "", "zero")), ylog=ylog)

    assert len(P.draw_panel(panel(True)).axes[0].lines) == 1
    assert len(P.draw_panel(panel(False)).axes[0].lines) == 2


def test_the_layer_axis_of_alpha_by_layer_ticks_whole_layers(result):
    """'layer (table order)' is a count axis on x: three layers tick at 0, 1, 2, not at 0.25 layers."""
    fig = P.plot_alpha_by_layer(result)
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_an_empty_panel_without_a_note_says_nothing_to_show():
    """An empty panel shows its note and no ticks or tick labels (matplotlib's 0 … 1 of an axis with no data
    would have read as values)."""
    ax = P.draw_panel(F.Panel("t", "x", "y")).axes[0]
    assert [t.get_text() for t in ax.texts] == ["nothing to show"] and not ax.get_lines()
    for axis in (ax.xaxis, ax.yaxis):
        tick = axis.get_major_ticks()[0]
        assert not tick.tick1line.get_visible() and not tick.label1.get_visible()


@pytest.mark.parametrize("ncols", [1.5, "2", True])
def test_draw_panels_takes_a_whole_number_of_columns(ncols):
    """ncols must be an integer >= 1: 1.5, '2' or True is an OptionError naming the rule, not a matplotlib error
    (True had reached matplotlib: 'TypeError: an integer is required'); a numpy integer is one (np.int64(2), as a
    computed column count, had been refused)."""
    p = F.Panel("t", "x", "y", (F.Series("line", np.array([1.0, 2.0]), np.array([1.0, 2.0]), "a", "data"),))
    with pytest.raises(OptionError, match="ncols must be an integer >= 1"):
        P.draw_panels([p, p], ncols=ncols)
    fig = P.draw_panels([p, p, p], ncols=np.int64(2))
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)


def test_plot_layer_takes_minus_n_as_the_first_layer_and_names_the_layers_when_one_is_unknown(result):
    """Index −3 of 3 layers is the first (Python's rule, which the range check says it follows); an unknown name's
    error lists the layers, at most five and an ellipsis."""
    assert P.plot_layer(result, -3).get_suptitle().startswith("dense (")
    with pytest.raises(OptionError, match=r"no layer named 'nope' \(layers: dense, heavy, tiny\)$"):
        P.plot_layer(result, "nope")
    rng = np.random.default_rng(0)
    many = htsr.analyze({f"l{i}.weight": rng.standard_normal((30, 20)) for i in range(6)})
    with pytest.raises(OptionError, match=r"\(layers: l0, l1, l2, l3, l4 and 1 more\)$"):
        P.plot_layer(many, "nope")


@pytest.mark.parametrize("plot", [P.plot_esd, P.plot_esd_linear, P.plot_log10_histogram, P.plot_xmin_scan,
                                  P.plot_shuffled_esd, P.plot_erg])
def test_every_layer_plot_without_eigenvalues_is_an_option_error(result, plot):
    """Each per-layer plot of a row without kept eigenvalues says to keep them (only plot_esd was checked: the
    others would have failed with an AttributeError of None)."""
    row, _ = _layer(result, "dense")
    with pytest.raises(OptionError, match=r"layer 'dense' has no kept eigenvalues to plot: run htsr.analyze\(\.\.\., "
                                          r"keep_spectra=True\)"):
        plot(row, None)


def test_save_panels_lays_panels_out_in_the_columns_asked(tmp_path):
    """Two panels in one column are a tall image (two rows of one panel), not the default two columns' wide one:
    ncols reaches the figure."""
    line = (F.Series("line", np.array([1.0, 2.0]), np.array([1.0, 2.0]), "a", "data"),)
    path = tmp_path / "p.png"
    P.save_panels([F.Panel("a", "x", "y", line), F.Panel("b", "x", "y", line)], path, ncols=1)
    h, w = imread(path).shape[:2]
    assert h > w, (h, w)  # (2 × 4.4 in high, 6.4 in wide)


# ---- round 74's gaps ----------------------------------------------------------------------------------


def _shown_ticks(ax, which: str) -> list[str]:
    """The tick labels (major and minor) with text inside the axis' limits, once drawn."""
    ax.figure.canvas.draw()
    labels, lim, i = ((ax.get_xticklabels(which="both"), ax.get_xlim(), 0) if which == "x"
                      else (ax.get_yticklabels(which="both"), ax.get_ylim(), 1))
    return [t.get_text() for t in labels if t.get_text() and lim[0] <= t.get_position()[i] <= lim[1]]


def test_each_log_axis_chooses_plain_labels_by_its_own_span_under_20():
    """A log axis spanning less than 20x (here x 1.2 … 12, about 12.6x with its margins) labels 2, 5 and 10 as plain
    numbers; one over four decades keeps matplotlib's powers of ten, whatever the other axis spans (x's labels had
    followed y's span, and spans of 10 … 20 had kept the overlapping 2×10⁰ 3×10⁰ … labels)."""
    line = F.Series("line", np.geomspace(1.2, 12.0, 20), np.linspace(0.2, 0.9, 20), "a", "data")
    ax = P.draw_panel(F.Panel("t", "x", "y", (line,), xlog=True, ylog=True)).axes[0]
    assert 10 < ax.get_xlim()[1] / ax.get_xlim()[0] < 20  # (the case: else it checks nothing)
    assert sorted(_shown_ticks(ax, "x")) == ["10", "2", "5"]
    wide = F.Series("line", np.geomspace(1.0, 1e4, 20), np.linspace(2.0, 9.0, 20), "a", "data")
    ax = P.draw_panel(F.Panel("t", "x", "y", (wide,), xlog=True, ylog=True)).axes[0]
    assert _shown_ticks(ax, "y") == ["2", "5"]  # y within a decade: plain
    x = _shown_ticks(ax, "x")
    assert len(x) == 5 and all("10^{" in t for t in x), x  # x over four decades: 10⁰ … 10⁴, no minor labels


def test_a_bar_series_without_categories_is_ticked_by_position():
    """A bar series built without labels (htsr.figures.Panel is public) is drawn with its positions as the
    category names, not an error of matplotlib's."""
    bar = F.Series("bar", np.arange(3, dtype=np.float64), np.array([1.0, 4.0, 2.0]), "n", "data")
    ax = P.draw_panel(F.Panel("t", "category", "n", (bar,))).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert [p.get_height() for p in ax.patches if isinstance(p, Rectangle)] == [1.0, 4.0, 2.0]



def test_a_dollar_in_a_name_is_drawn_as_it_is(tmp_path):
    """matplotlib parses '$…$' as math: a layer named 'a$\\frac{1}{0$' failed the figure (a traceback from htsr compare
    --labels 'base$$,ft' --figure), and 'a$b$c' was drawn in math italics. Every text a panel draws is literal."""
    rng = np.random.default_rng(0)
    names = ["a$\\frac{1}{0$", "x^2_{y}$$", "a$b$c"]
    r = htsr.analyze({f"{n}.weight": rng.standard_normal((120, 80)) for n in names}, keep_spectra=True)
    for i, n in enumerate(names):
        fig = P.plot_layer(r, i)
        fig.savefig(tmp_path / f"{i}.png")  # (mathtext parses at drawing)
        assert fig._suptitle.get_text().startswith(n.replace("$", "\\$"))
    # category labels (a trend across models labelled 'base$$', 'ft') are drawn as they are too
    panel = F.Panel("t $x$", "model", "alpha", (F.Series("line", (0.0, 1.0), (2.0, 3.0), labels=("base$$", "ft")),))
    fig = P.draw_panel(panel).figure
    fig.savefig(tmp_path / "trend.png")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["base\\$\\$", "ft"]
