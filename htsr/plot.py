"""Draw the panels of :mod:`htsr.figures` with matplotlib (the ``plot`` extra).

Every function draws on a given matplotlib axis, or on a new :class:`matplotlib.figure.Figure` (not
pyplot: no global state, no window, no display needed; a figure per thread is fine), and returns the
figure. Nothing is shown; save with ``fig.savefig(...)`` or :func:`save_panels`. matplotlib is
imported on the first drawing, not with this module.

>>> import htsr, htsr.plot
>>> result = htsr.analyze("model.safetensors", keep_spectra=True, randomize=True)   # doctest: +SKIP
>>> htsr.plot.plot_layer(result, 0).savefig("layer0.png")                          # doctest: +SKIP
>>> htsr.plot.plot_alpha_by_layer(result, color_by="phase").savefig("alpha.svg")    # doctest: +SKIP

Colours follow what a series is (its ``role``), the same in every figure: the data, the fit, x_min,
the MP edge, the spike or trap threshold, the shuffled ESD, the traps, the ERG edge; layer kinds and
phases get colours from one fixed palette (phases in the order of :data:`htsr.rmt.phases.PHASES`).
"""

from __future__ import annotations

import dataclasses

import io
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import figures
from .errors import OptionError, listed
from .figures import PALETTE, ROLE_COLORS, Panel, Series, role_color  # noqa: F401 (colours re-exported)
from .io.base import import_extra
from .results import AnalysisResult, LayerResult, LayerSpectra, atomic_write
from .rmt.phases import PHASES
from .specs import plain

__all__ = ["draw_panel", "draw_panels", "panels_image", "save_panels", "plot_esd", "plot_esd_linear", "plot_log10_histogram",
           "plot_xmin_scan", "plot_shuffled_esd", "plot_erg", "plot_layer", "plot_alpha_by_layer",
           "plot_alpha_distribution", "plot_phase_counts"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_PANEL_SIZE = (6.4, 4.4)  # inches per panel
_NOTE_LINES = 3  # (lines of a panel's note at most; as many characters as fit across it)


def _figure_class() -> Any:
    import_extra("matplotlib", "plot", "drawing figures")
    from matplotlib.figure import Figure

    return Figure


def _new_figure(nrows: int = 1, ncols: int = 1) -> Any:
    return _figure_class()(figsize=(_PANEL_SIZE[0] * ncols, _PANEL_SIZE[1] * nrows), layout="constrained")


def _label(s: Series) -> str:
    return s.label or "_nolegend_"


def _draw_series(ax: Any, s: Series, first_hist: bool, xlog: bool, ylog: bool) -> None:
    color = role_color(s.role)
    x, y = np.asarray(s.x, dtype=np.float64), np.asarray(s.y, dtype=np.float64)
    if s.kind == "hist":
        # the first histogram filled, any other as an outline over it; NaN heights are gaps (empty bins)
        if first_hist:
            ax.stairs(y, x, fill=True, color=color, alpha=0.45, label=_label(s))
        else:
            ax.stairs(y, x, fill=False, color=color, linewidth=1.4, label=_label(s))
    elif s.kind == "line":
        ax.plot(x, y, color=color, linewidth=1.6, label=_label(s))
        if s.labels and len(s.labels) == x.size <= 30:  # one label per x (models of a trend): tick labels
            ax.set_xticks(x, s.labels, rotation=30, ha="right")
    elif s.kind == "points":
        marks = np.isfinite(y)
        label = _label(s)
        if marks.any():
            ax.plot(x[marks], y[marks], "o", color=color, markersize=4, label=label)
            label = "_nolegend_"
        if (~marks).any():  # positions only: a rug on the x axis
            ax.plot(x[~marks], np.zeros(int((~marks).sum())), "|", color=color, markersize=14,
                    markeredgewidth=1.8, transform=ax.get_xaxis_transform(), clip_on=False, label=label)
    elif s.kind == "vline":
        v = float(x[0]) if x.size else math.nan
        if math.isfinite(v) and (v > 0 or not xlog):
            ax.axvline(v, color=color, linestyle="--", linewidth=1.2, label=_label(s))
    elif s.kind == "hline":
        v = float(y[0]) if y.size else math.nan
        if math.isfinite(v) and (v > 0 or not ylog):
            ax.axhline(v, color=color, linestyle=":" if s.role == "zero" else "--", linewidth=1.2,
                       label=_label(s))
    elif s.kind == "bar":
        names = s.labels or tuple(str(i) for i in range(x.size))
        phases = all(n in PHASES or n == "no phase" for n in names)  # layers per phase: the phases' colours
        # (bars of the phases' colours: no legend entry, whose one colour would be one phase's)
        ax.bar(x, y, color=[role_color(f"phase:{n}") for n in names] if phases else color,
               label="_nolegend_" if phases else _label(s))
        ax.set_xticks(x, names, rotation=30, ha="right")


def _wrapped(text: str, chars: int, most: int) -> str:
    """``text`` in lines of ``chars`` characters at most, ``most`` lines at most (the last ending '…' if cut)."""
    lines = textwrap.wrap(text, max(chars, 12))
    if len(lines) > most:
        lines = lines[:most]
        lines[-1] = lines[-1][: max(chars, 12) - 1] + "…"
    return "\n".join(lines)


def _title_text(title: str, chars: int) -> str:
    """A panel's title on at most two lines of ``chars`` characters; one longer keeps its two ends (a layer's name
    ends in what tells it from its neighbours), its middle elided."""
    chars = max(chars, 12)
    lines = textwrap.wrap(title, chars)
    if len(lines) <= 2:
        return "\n".join(lines)
    keep = 2 * chars - 1
    cut = f"{title[:keep // 2]}…{title[-(keep - keep // 2 - 1):]}"
    return f"{cut[:chars]}\n{cut[chars:]}"


def _chars_across(ax: Any, fontsize: float) -> int:
    """About how many characters of ``fontsize`` points fit across ``ax`` (an average glyph: 0.55 em)."""
    return int(ax.get_position().width * ax.figure.get_figwidth() * 72 / (0.55 * fontsize))


def _text(text: str) -> str:
    """``text`` drawn as it is: a '$' escaped, which matplotlib's mathtext would parse (a layer named 'a$b' had
    been drawn in math italics, and one of a lone '$' had failed the figure)."""
    return text.replace("$", r"\$")


def _literal(panel: Panel) -> Panel:
    """``panel`` with every text it draws as :func:`_text` makes it."""
    series = tuple(dataclasses.replace(s, label=_text(s.label), labels=tuple(_text(x) for x in s.labels))
                   for s in panel.series)
    return dataclasses.replace(panel, title=_text(panel.title), xlabel=_text(panel.xlabel),
                               ylabel=_text(panel.ylabel), ylabel2=_text(panel.ylabel2), note=_text(panel.note),
                               series=series)


def draw_panel(panel: Panel, ax: Any = None) -> Any:
    """Draw ``panel`` on ``ax`` (a matplotlib Axes; a new Figure with one axis when None); return the figure.

    Histograms are drawn as stairs (the first filled, the others outlined), lines as lines, points as
    markers (a point with NaN y as a rug mark on the x axis), vline/hline as dashed reference lines (the
    'zero' line dotted), bars with their category labels (coloured by phase when the categories are
    phases); a line with one label per x (a trend across models, up to 30) labels the x ticks. Series
    whose role ends in ':right' go on a twin axis labelled ``panel.ylabel2``. A legend lists every
    labelled series; the note is written under the x label (in the middle of an empty panel, which has
    no ticks).
    """
    panel = _literal(panel)
    if ax is None:
        ax = _new_figure().add_subplot()
    ax2 = None
    hists = 0
    for s in panel.series:
        target = ax
        if s.role.endswith(":right"):
            if ax2 is None:
                ax2 = ax.twinx()
                ax2.set_ylabel(panel.ylabel2)
            target = ax2
        _draw_series(target, s, hists == 0, panel.xlog, panel.ylog and target is ax)
        hists += s.kind == "hist"
    # a long title (a layer's name, what a mean is over) would run into the next panel's: on two lines of the
    # panel's width (its middle elided had dropped what the means are over)
    ax.set_title(_title_text(panel.title, _chars_across(ax, 10)), fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.xlog:
        ax.set_xscale("log")
    if panel.ylog:
        ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    for axis, label, log in ((ax.xaxis, panel.xlabel, panel.xlog), (ax.yaxis, panel.ylabel, panel.ylog)):
        if not log and label in figures.COUNT_AXES:  # counts of layers, layer indices: no 0.5 of a layer
            axis.set_major_locator(MaxNLocator(integer=True))
        formatter = axis.get_major_formatter()
        if not log and hasattr(formatter, "set_useOffset"):
            # values as they are: with an offset ('1e−6 + 4.5711') 4.571187 vs 4.571193 looked like a cliff
            formatter.set_useOffset(False)
        if log:
            lo, hi = (ax.get_xlim() if axis is ax.xaxis else ax.get_ylim())
            if lo > 0 and hi / lo < 20:
                # within about a decade matplotlib labels every minor tick as 2×10⁰ 3×10⁰ …, overlapping: label
                # 1, 2 and 5 times the powers of ten, as plain numbers
                short = FuncFormatter(lambda v, _: f"{v:g}")
                axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
                axis.set_minor_formatter(short)
                axis.set_major_formatter(short)
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        (ax2 if ax2 is not None else ax).legend(handles, labels, fontsize=7, loc="best")
    if not panel.series:  # no ticks on an empty panel, its note in the middle
        ax.tick_params(which="both", bottom=False, left=False, labelbottom=False, labelleft=False)
        ax.text(0.5, 0.5, _wrapped(panel.note or "nothing to show", _chars_across(ax, 8), _NOTE_LINES),
                transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#555555")
    elif panel.note:  # under the x label
        ax.annotate(_wrapped(panel.note, _chars_across(ax, 7), _NOTE_LINES), xy=(0.5, 0.0), xycoords=ax.xaxis.label,
                    xytext=(0, -3),
                    textcoords="offset points", ha="center", va="top", fontsize=7, color="#555555")
    return ax.figure


def draw_panels(panels: Sequence[Panel], ncols: int = 2) -> Any:
    """A new Figure with ``panels`` in a grid of ``ncols`` columns (row by row)."""
    panels = list(panels)
    if not panels:
        raise OptionError("no panels to draw")
    ncols = plain(ncols)  # (a numpy integer as the int it is)
    if not (isinstance(ncols, int) and not isinstance(ncols, bool) and ncols >= 1):
        raise OptionError(f"ncols must be an integer >= 1, got {ncols!r}")
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = _new_figure(nrows, ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for panel, ax in zip(panels, axes):
        draw_panel(panel, ax)
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    return fig


def image_format(path: str | os.PathLike) -> str:
    """The image format ``path``'s extension asks for (png, svg, pdf); OptionError for any other."""
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OptionError(f"{path}: cannot tell the image format: the name must end in .png, .svg or .pdf")
    return fmt


def can_draw(path: str | os.PathLike) -> str:
    """The image format of ``path`` (:func:`image_format`), once matplotlib is known to be installed: checked
    before a command's analyses, not after them."""
    fmt = image_format(path)
    _figure_class()
    return fmt


def save_panels(panels: Sequence[Panel], path: str | os.PathLike, ncols: int = 2) -> None:
    """Draw ``panels`` in a grid of ``ncols`` columns and save it, as PNG, SVG or PDF by the extension of
    ``path``, atomically (rendered in memory, written to a temporary file in the same folder, renamed)."""
    atomic_write(path, panels_image(panels, path, ncols))


def panels_image(panels: Sequence[Panel], path: str | os.PathLike, ncols: int = 2) -> bytes:
    """The bytes :func:`save_panels` writes to ``path`` (its format from the extension)."""
    fmt = image_format(path)
    fig = draw_panels(panels, ncols)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ per-layer figures


def _need(row: Any, spectra: Any) -> None:
    if not isinstance(row, LayerResult) or not (spectra is None or isinstance(spectra, LayerSpectra)):
        raise OptionError(f"a per-layer plot takes one layer's row and its eigenvalues, (result.layers[i], "
                          f"result.spectra[i]), not ({type(row).__name__}, {type(spectra).__name__}); plot_layer "
                          "takes the whole result")
    if spectra is None:
        why = "run htsr.analyze(..., keep_spectra=True)" if row.status == "ok" else row.status
        raise OptionError(f"layer {row.name!r} has no kept eigenvalues to plot: {why}")


def plot_esd(row: Any, spectra: Any, ax: Any = None) -> Any:
    """The ESD on log-log axes with the fitted power law, x_min and the MP edge (:func:`figures.esd_loglog`)."""
    _need(row, spectra)
    return draw_panel(figures.esd_loglog(row, spectra), ax)


def plot_esd_linear(row: Any, spectra: Any, ax: Any = None) -> Any:
    """The ESD on linear axes with the fitted Marchenko–Pastur density (:func:`figures.esd_linear`)."""
    _need(row, spectra)
    return draw_panel(figures.esd_linear(row, spectra), ax)


def plot_log10_histogram(row: Any, spectra: Any, ax: Any = None) -> Any:
    """The histogram of log10 λ with x_min, the MP edge and the ERG edge (:func:`figures.log10_histogram`)."""
    _need(row, spectra)
    return draw_panel(figures.log10_histogram(row, spectra), ax)


def plot_xmin_scan(row: Any, spectra: Any, ax: Any = None) -> Any:
    """KS distance D and (right axis) alpha against candidate x_min (:func:`figures.xmin_scan`)."""
    _need(row, spectra)
    return draw_panel(figures.xmin_scan(row, spectra), ax)


def plot_shuffled_esd(row: Any, spectra: Any, ax: Any = None) -> Any:
    """The ESD and the element-shuffled ESD, traps as a rug (:func:`figures.shuffled_esd`; needs randomize)."""
    _need(row, spectra)
    return draw_panel(figures.shuffled_esd(row, spectra), ax)


def plot_erg(row: Any, spectra: Any, ax: Any = None) -> Any:
    """SETOL's running log-sum and the ERG edge beside x_min (:func:`figures.erg_boundary`)."""
    _need(row, spectra)
    return draw_panel(figures.erg_boundary(row, spectra), ax)


def _layer_index(result: Any, name_or_index: str | int) -> int:
    if not isinstance(result, AnalysisResult):
        raise OptionError(f"plot_layer takes the result htsr.analyze returns, not {type(result).__name__}"
                          + ("; read a saved run with htsr.results.load_result(path) (and analyse again with "
                             "keep_spectra=True: a saved run keeps no eigenvalues)"
                             if isinstance(result, (str, os.PathLike)) else ""))
    n = len(result.layers)
    if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
        if not -n <= name_or_index < n:
            raise OptionError(f"layer index {name_or_index} out of range: the result has {n} layers")
        return int(name_or_index) % n
    for i, r in enumerate(result.layers):
        if r.name == name_or_index:
            return i
    raise OptionError(f"no layer named {name_or_index!r} (layers: {listed((r.name for r in result.layers), 5)})")


def plot_layer(result: Any, name_or_index: str | int) -> Any:
    """All six per-layer panels of one layer (by name or position) in a 2 × 3 grid, on a new Figure.

    Raises :class:`~htsr.errors.OptionError` when the result kept no eigenvalues (analysed without
    ``keep_spectra=True``), when that layer has none (skipped or failed), or for an unknown layer.
    """
    i = _layer_index(result, name_or_index)
    row = result.layers[i]
    if not result.spectra:
        raise OptionError(f"the result kept no eigenvalues to plot layer {row.name!r}: "
                          "run htsr.analyze(source, keep_spectra=True)")
    _need(row, result.spectra[i])
    fig = _new_figure(2, 3)
    for panel, ax in zip(figures.layer_panels(row, result.spectra[i]), fig.subplots(2, 3).ravel()):
        draw_panel(panel, ax)
    alpha = f", α = {row.alpha:.3g}" if math.isfinite(row.alpha) else ""
    fig.suptitle(_text(f"{row.name} ({row.kind}, {row.shape}): {row.status}{alpha}"), fontsize=12)
    return fig


# ---------------------------------------------------------------------------------------- model figures


def plot_alpha_by_layer(result: Any, ax: Any = None, color_by: str = "kind", metric: str = "alpha") -> Any:
    """``metric`` per layer in the table's order, coloured by layer kind or phase (:func:`figures.alpha_by_layer`)."""
    return draw_panel(figures.alpha_by_layer(result, color_by=color_by, metric=metric), ax)


def plot_alpha_distribution(result: Any, ax: Any = None, metric: str = "alpha") -> Any:
    """Histogram of ``metric`` over the layers (:func:`figures.alpha_distribution`)."""
    return draw_panel(figures.alpha_distribution(result, metric=metric), ax)


def plot_phase_counts(result: Any, ax: Any = None) -> Any:
    """Layers per phase as bars (:func:`figures.phase_counts`)."""
    return draw_panel(figures.phase_counts(result), ax)
