"""What each figure shows, as data: declarative panels that any renderer draws.

A :class:`Panel` is a titled pair of axes (linear or log) holding :class:`Series`: histograms (bin
edges and heights), lines, points, vertical and horizontal reference lines, categorical bars. Every
figure of htsr is computed here once, from a result row and its kept eigenvalues
(``analyze(..., keep_spectra=True)``), and drawn by :mod:`htsr.plot` with matplotlib and by the HTML
report in the browser. Pure numpy: no plotting library, no files.

Per-layer panels: :func:`esd_loglog` (ESD on log-log axes with the fitted tail and x_min),
:func:`esd_linear` (linear axes with the Marchenko–Pastur density), :func:`log10_histogram`,
:func:`xmin_scan` (D and alpha against candidate x_min), :func:`shuffled_esd` (the ESD of the
element-shuffled matrices over the ESD, traps marked), :func:`erg_boundary` (the running log-sum whose
zero crossing is the ERG edge). Model panels: :func:`alpha_by_layer`, :func:`alpha_distribution`,
:func:`phase_counts`, and :func:`metric_trend` across several results.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import OptionError
from .fits.powerlaw import FLAT_SPREAD, ks_scan, run_starts
from .results import SUMMARY_METRICS, Summary, means_rows, phase_column, phase_rows
from .rmt.mp import zero_level
from .rmt.phases import PHASES
from .rmt.setol import erg_eigenvalues
from .rmt.traps import esd_bins

__all__ = ["ROLE_COLORS", "PALETTE", "KINDS", "COUNT_AXES", "role_color", "Series", "Panel", "LAYER_PANELS", "layer_panels",
           "esd_loglog", "esd_linear", "log10_histogram", "xmin_scan", "shuffled_esd", "erg_boundary",
           "alpha_by_layer", "alpha_distribution", "phase_counts", "metric_trend", "mp_density"]

#: series kinds: 'hist' (x = bin edges, y = heights, len(x) = len(y) + 1), 'line', 'points',
#: 'vline' (x = [position]), 'hline' (y = [position]), 'bar' (labels = categories, y = heights)
SERIES_KINDS = ("hist", "line", "points", "vline", "hline", "bar")
#: the most points a line or scatter keeps (the x_min scan of a 16 000-eigenvalue layer is thinned)
MAX_POINTS = 400
#: axis labels of counts and indices: whole-number ticks in both renderers (no 0.5 of a layer); a trend's count
#: columns (num_failed …) too
COUNT_AXES = frozenset({"layers", "layer (table order)",
                        *(k for k in Summary.of([]).as_dict() if k.startswith("num_"))})


#: one colour per role, shared by the matplotlib figures (htsr.plot) and the HTML report (tab10 colours)
ROLE_COLORS = {
    "data": "#1f77b4",  # blue
    "fit": "#d62728",  # red
    "xmin": "#2ca02c",  # green
    "mp": "#ff7f0e",  # orange
    "threshold": "#9467bd",  # purple
    "shuffled": "#8c564b",  # brown
    "trap": "#e377c2",  # pink
    "erg": "#17becf",  # cyan
    "zero": "#7f7f7f",  # grey
    "band": "#7f7f7f",
    "mean": "#000000",  # black: a mean drawn over per-layer lines
}
#: colours of layer kinds and phases (kinds in the order of KINDS, phases in the order of PHASES)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
#: layer kinds in the order they take colours from PALETTE (another kind gets one by a hash of its name)
KINDS = ("dense", "embedding", "conv1d", "conv2d", "conv3d", "rnn", "stack", "lora")
_OTHER = "#7f7f7f"  # 'no phase', and a role without a colour


def _group_color(prefix: str, name: str) -> str:
    if prefix == "phase":
        return PALETTE[PHASES.index(name) % len(PALETTE)] if name in PHASES else _OTHER
    if name in KINDS:
        return PALETTE[KINDS.index(name)]
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]  # stable across runs, unlike hash()


def role_color(role: str) -> str:
    """The colour of a series' role ('fit', 'fit:right', 'kind:dense', 'phase:heavy-tailed', 'series:3', ...).

    'series:<i>' is the i-th of several lines of one panel (e.g. one per layer): palette colour i.
    """
    role = role.removesuffix(":right")
    prefix, _, name = role.partition(":")
    if prefix == "series" and name.isdigit():
        return PALETTE[int(name) % len(PALETTE)]
    if name and prefix in ("kind", "phase"):
        return _group_color(prefix, name)
    return ROLE_COLORS.get(role, _OTHER)


@dataclass(frozen=True)
class Series:
    kind: str
    x: np.ndarray
    y: np.ndarray
    label: str = ""
    role: str = ""  # what it is, for a consistent colour across figures: 'data', 'fit', 'xmin', 'mp', ...
    labels: tuple[str, ...] = ()  # categories of a 'bar' series, or one label per point

    def __post_init__(self) -> None:
        assert self.kind in SERIES_KINDS, self.kind

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and inf as None)."""
        def clean(a: np.ndarray) -> list[Any]:
            return [float(v) if math.isfinite(v) else None for v in np.asarray(a, dtype=np.float64).tolist()]

        d: dict[str, Any] = {"kind": self.kind, "x": clean(self.x), "y": clean(self.y), "label": self.label,
                             "role": self.role}
        if self.labels:
            d["labels"] = list(self.labels)
        return d


@dataclass(frozen=True)
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...] = ()
    xlog: bool = False
    ylog: bool = False
    note: str = ""  # why the panel is empty, or a caveat shown under it
    ylabel2: str = ""  # a second y axis (right) for series with role ending in ':right'

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "xlabel": self.xlabel, "ylabel": self.ylabel, "xlog": self.xlog,
                "ylog": self.ylog, "note": self.note, "ylabel2": self.ylabel2,
                "series": [s.as_dict() for s in self.series]}


def _arr(*v: float) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _thin(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS,
          keep: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` evenly spaced points, always including the indices in ``keep`` (a minimum, a crossing)."""
    if x.size <= n:
        return x, y
    idx = np.linspace(0, x.size - 1, n).round().astype(np.intp)
    idx = np.unique(np.concatenate([idx, np.asarray(keep, dtype=np.intp)]))
    return x[idx], y[idx]


def _positive(evals: np.ndarray) -> np.ndarray:
    return evals[evals > 0]


def _nonzero(row: Any, evals: np.ndarray) -> np.ndarray:
    """A row's eigenvalues on a log axis: without the ``num_zero_evals`` it counts as zeros (a float32 product's
    rounding at 1e-15, which the MP bulk, the phase and the ERG leave out too: drawn, they spread the histogram
    over 17 decades), and without any ≤ 0."""
    zeros = int(row.num_zero_evals) if math.isfinite(row.num_zero_evals) else 0
    return _positive(evals[min(zeros, evals.size):])


def _zeros_note(n: int) -> str:
    return f"{n} zero eigenvalue(s) (num_zero_evals) not shown" if n else ""


def _empty(title: str, xlabel: str, ylabel: str, note: str, **kw: Any) -> Panel:
    return Panel(title, xlabel, ylabel, (), note=note, **kw)


def _name(row: Any) -> str:
    return f"{row.name} ({row.shape})"


def _note(row: Any, *notes: str) -> str:
    """The panel's notes, after the row's status when it is not 'ok' (why a fit or a line is missing)."""
    return "; ".join(n for n in ((row.status if row.status != "ok" else ""), *notes) if n)


def _too_few(ev: np.ndarray) -> str:
    """Why a panel of the eigenvalues ``ev`` (sorted) cannot be drawn, or ''."""
    return ("fewer than 2 eigenvalues" if ev.size < 2 else "no positive eigenvalues" if ev[-1] <= 0 else "")


#: why a lora row has no MP fit and no shuffled ESD (THEORY: its entries are never formed)
_FACTORS_ONLY = "a LoRA update is known by its factors only"


def _not_fitted(row: Any) -> bool:
    """No fit to show: not fitted, skipped, or a fit the analysis refused (a flat spectrum's scan has
    alphas in the millions)."""
    return row.status.startswith(("not_fitted", "skipped", "fit_failed"))


def _density(v: np.ndarray, edges: np.ndarray, n: int) -> np.ndarray:
    """Histogram of ``v`` as a density over all ``n`` eigenvalues (zeros included); empty bins NaN (log axes)."""
    c = np.histogram(v, edges)[0]
    return np.where(c > 0, c / (np.diff(edges) * n), np.nan)


def esd_loglog(row: Any, sp: Any) -> Panel:
    """ESD density on log-log axes (log-spaced bins), the fitted power law over [x_min, x_max], x_min."""
    title, xl, yl = f"ESD, log-log: {_name(row)}", "eigenvalue λ", "density"
    x = _nonzero(row, sp.evals)
    if x.size < 2 or x[0] == x[-1]:
        return _empty(title, xl, yl, _note(row, "fewer than 2 distinct nonzero eigenvalues"), xlog=True,
                      ylog=True)
    edges = np.geomspace(x[0], x[-1] * (1 + 1e-12), esd_bins(x.size) + 1)
    series = [Series("hist", edges, _density(x, edges, sp.evals.size), "ESD", "data")]
    notes = [_zeros_note(sp.evals.size - x.size)]
    if math.isfinite(row.alpha) and math.isfinite(row.xmin):
        if math.isfinite(row.farms_windows):
            # FARMS: the fit's density is of the windows' eigenvalues, not of this ESD
            notes.append("FARMS fit: its power law is of the windows' eigenvalues, not drawn on this ESD")
        else:
            # the tail's density in the units of the histogram (normalised over all the layer's
            # eigenvalues): the share of them in the tail times the normalised power law
            share = row.num_pl_spikes / sp.evals.size
            lx = np.geomspace(row.xmin, row.xmax, 50)
            ly = share * (row.alpha - 1.0) / row.xmin * (lx / row.xmin) ** (-row.alpha)
            series.append(Series("line", lx, ly, f"power law α = {row.alpha:.3g}", "fit"))
        x = _own_xmin(row)
        series.append(Series("vline", _arr(x), _arr(), f"x_min = {x:.3g}", "xmin"))
    if math.isfinite(row.mp_lambda_plus):
        series.append(Series("vline", _arr(row.mp_lambda_plus), _arr(), "MP edge λ₊", "mp"))
    return Panel(title, xl, yl, tuple(series), xlog=True, ylog=True, note=_note(row, *notes))


def mp_density(x: np.ndarray, lambda_minus: float, lambda_plus: float) -> np.ndarray:
    """MP density with the given bulk edges (the edges fix both σ² and the aspect ratio), 0 outside."""
    a, b = math.sqrt(lambda_minus), math.sqrt(lambda_plus)
    s = (a + b) / 2.0  # σ_eff: λ± = σ²(1 ± 1/√Q)²
    q = ((b - a) / (a + b)) ** -2 if b > a else math.inf  # Q = N/M
    x = np.asarray(x, dtype=np.float64)
    inside = (x > lambda_minus) & (x < lambda_plus) & (x > 0)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = q * np.sqrt((lambda_plus - xi) * (xi - lambda_minus)) / (2.0 * math.pi * s * s * xi)
    return out


def esd_linear(row: Any, sp: Any) -> Panel:
    """ESD on linear axes (bulk range) with the fitted MP density over it, scaled to the bulk's share."""
    title, xl, yl = f"ESD and Marchenko–Pastur: {_name(row)}", "eigenvalue λ", "density"
    ev = sp.evals
    if why := _too_few(ev):
        return _empty(title, xl, yl, _note(row, why))
    has_mp = math.isfinite(row.mp_lambda_plus) and math.isfinite(row.mp_lambda_minus)
    # the bulk range: up to a little past the MP edge (spikes beyond it are marked, not binned, so the
    # bulk's bins are not stretched by one eigenvalue 100x larger)
    hi = min(float(ev[-1]), 1.5 * row.mp_threshold) if has_mp else float(ev[-1])
    shown = ev[ev <= hi]
    edges = np.linspace(0.0, hi * (1 + 1e-12), max(esd_bins(shown.size), 20) + 1)
    counts = np.histogram(shown, edges)[0]
    series = [Series("hist", edges, counts / (np.diff(edges) * ev.size), "ESD", "data")]
    note = ""
    if has_mp:
        lx = np.linspace(row.mp_lambda_minus, row.mp_lambda_plus, 200)
        bulk = (ev.size - row.num_spikes - (row.num_zero_evals if math.isfinite(row.num_zero_evals) else 0))
        ly = mp_density(lx, row.mp_lambda_minus, row.mp_lambda_plus) * bulk / ev.size
        series.append(Series("line", lx, ly, f"MP, σ = {row.mp_sigma:.3g}", "mp"))
        series.append(Series("vline", _arr(row.mp_threshold), _arr(), "spike threshold", "threshold"))
        beyond = ev[ev > hi]
        if beyond.size:
            note = f"{beyond.size} eigenvalue(s) beyond the axis, up to {beyond[-1]:.4g}"
    else:  # (a row not 'ok' says why in its status, which _note puts first)
        note = (f"no MP fit: {_FACTORS_ONLY}" if row.kind == "lora" else "no MP fit" if row.status != "ok"
                else "no MP fit (mp_fit off, or no bulk to fit: see the phase)")
    return Panel(title, xl, yl, tuple(series), note=_note(row, note))


def log10_histogram(row: Any, sp: Any) -> Panel:
    """Histogram of log10 λ with x_min, the MP edge and the ERG edge."""
    title, xl, yl = f"log10 λ: {_name(row)}", "log10 λ", "count"
    x = _nonzero(row, sp.evals)
    if x.size < 2:
        return _empty(title, xl, yl, _note(row, "fewer than 2 nonzero eigenvalues"))
    lx = np.log10(x)
    edges = np.linspace(lx[0], lx[-1] + 1e-12 * max(1.0, abs(lx[-1])), 101 if x.size > 500 else esd_bins(x.size) + 1)
    series = [Series("hist", edges, np.histogram(lx, edges)[0].astype(np.float64), "log10 λ", "data")]
    for v, label, role in ((_own_xmin(row), "x_min", "xmin"), (row.mp_lambda_plus, "MP edge λ₊", "mp"),
                           (row.erg_lambda_min_raw, "ERG edge", "erg")):
        if math.isfinite(v) and v > 0:
            series.append(Series("vline", _arr(math.log10(v)), _arr(), label, role))
    return Panel(title, xl, yl, tuple(series), note=_note(row, _zeros_note(sp.evals.size - x.size)))


def xmin_scan(row: Any, sp: Any) -> Panel:
    """KS distance D (left axis) and alpha (right axis) at the candidate x_min of the eigenvalues the fit
    saw (less the top ``num_fingers`` dropped by clip_xmax or drop_top; FARMS' windows' eigenvalues), those of a
    flat tail left out as the fit leaves them; the chosen one marked. The thinned curves keep the smallest D,
    which is the fit's (x_min, D) when x_min was chosen by the KS scan over every candidate (the default); a note
    says when it was not (``xmin='peak'`` scans fewer, 'median' or a number fixes it). Above 1 600 candidates
    an even spread of 1 600 is computed. Empty for a row that was not fitted or whose fit was refused."""
    title, xl, yl = f"x_min scan: {_name(row)}", "candidate x_min", "KS distance D"
    if _not_fitted(row):
        return _empty(title, xl, yl, row.status, xlog=True, ylabel2="alpha")
    x = np.sort(sp.fit_evals[sp.fit_evals > 0])
    fingers = int(row.num_fingers) if math.isfinite(row.num_fingers) else 0
    if fingers:
        x = x[:-fingers]  # clip_xmax or drop_top refitted without them
    if x.size < 3 or x[0] == x[-1]:
        return _empty(title, xl, yl, _note(row, "fewer than 3 eigenvalues to scan"), xlog=True, ylabel2="alpha")
    # every candidate's D costs a pass over the tail (O(n²) in all: 6 s for 11 520 eigenvalues): a spread of
    # candidates as dense as the thinned curves, and the chosen x_min's (the curve's minimum is the fit's)
    # (a flat tail is no candidate of the fit's, nor a value inside a run of equal ones)
    idx = run_starts(x, np.flatnonzero(x[-1] - x[:-1] > FLAT_SPREAD * x[-1]))
    if idx.size == 0:
        return _empty(title, xl, yl, _note(row, "a flat tail: no candidate to scan"), xlog=True, ylabel2="alpha")
    if idx.size > 4 * MAX_POINTS:
        chosen = np.searchsorted(x, row.xmin, side="left") if math.isfinite(row.xmin) else 0
        idx = np.unique(np.r_[idx[np.linspace(0, idx.size - 1, 4 * MAX_POINTS).round().astype(np.intp)],
                              min(int(chosen), int(idx[-1]))])
    alphas, Ds = ks_scan(x, idx)
    ok = alphas > 1.0
    c, d, a = x[idx][ok], Ds[ok], alphas[ok]
    best = [int(np.argmin(d))] if d.size else []
    cx, cd = _thin(c, d, keep=best)
    ax_, aa = _thin(c, a, keep=best)
    series = [Series("line", cx, cd, "D", "data"), Series("line", ax_, aa, "alpha", "fit:right")]
    if math.isfinite(row.xmin):
        series.append(Series("vline", _arr(row.xmin), _arr(), f"chosen x_min = {row.xmin:.3g}", "xmin"))
    notes = [f"scan without the top {fingers} eigenvalue(s) the fit dropped" if fingers else "",
             "the FARMS windows' eigenvalues" if math.isfinite(row.farms_windows) else ""]
    if best and math.isfinite(row.xmin) and c[best[0]] != row.xmin:
        notes.append(f"the curve's minimum (at {c[best[0]]:.3g}) is not the fit's x_min: it was chosen among fewer "
                     "candidates (xmin='peak') or fixed (xmin='median' or a number)")
    return Panel(title, xl, yl, tuple(series), xlog=True, ylabel2="alpha", note=_note(row, *notes))


def shuffled_esd(row: Any, sp: Any) -> Panel:
    """The ESD and the ESD of the element-shuffled matrices on shared log bins; traps marked."""
    title, xl, yl = f"ESD and shuffled ESD: {_name(row)}", "eigenvalue λ", "density"
    if sp.rand_evals is None:
        # randomize off, or on but skipped for this row (fewer than min_evals eigenvalues, a failure)
        why = ("not randomised: " + _FACTORS_ONLY if row.kind == "lora"
               else "not randomised" + ("" if row.status != "ok" else " (run with randomize=True)"))
        return _empty(title, xl, yl, _note(row, why), xlog=True, ylog=True)
    a, b = _nonzero(row, sp.evals), _positive(sp.rand_evals)
    # the shuffled ESD's zeros at float32 precision as the layer's (num_zero_evals): a pruned layer's shuffle has its
    # zeros as rounding at 1e-72 … 1e-39, which had spread the bins over 70 decades, the ESD in the last few
    b = b[b > zero_level(b, row.N, row.M)] if b.size else b
    if a.size < 2 or b.size < 2:
        return _empty(title, xl, yl, _note(row, "fewer than 2 nonzero eigenvalues"), xlog=True, ylog=True)
    lo, hi = min(a[0], b[0]), max(a[-1], b[-1])
    edges = np.geomspace(lo, hi * (1 + 1e-12), esd_bins(max(a.size, b.size)) + 1)
    series = [Series("hist", edges, _density(a, edges, sp.evals.size), "ESD", "data"),
              Series("hist", edges, _density(b, edges, sp.rand_evals.size), "shuffled", "shuffled")]
    if math.isfinite(sp.rand_threshold):
        series.append(Series("vline", _arr(sp.rand_threshold), _arr(), "trap threshold", "threshold"))
        traps = b[b > sp.rand_threshold]
        if traps.size:
            series.append(Series("points", traps, np.full(traps.size, np.nan), f"{traps.size} trap(s)", "trap"))
    located = row.trap_weights.count(";") + 1 if row.trap_weights else 0
    where = ("" if not located else f"traps at {row.trap_weights}" if located >= row.num_traps
             else f"the {located} largest of {row.num_traps:.0f} traps at {row.trap_weights}")
    shuffled_zeros = sp.rand_evals.size - b.size
    return Panel(title, xl, yl, tuple(series), xlog=True, ylog=True,
                 note=_note(row, _zeros_note(sp.evals.size - a.size), where,
                            f"{shuffled_zeros} zero eigenvalue(s) of the shuffled ESD not shown" if shuffled_zeros
                            else ""))


def erg_boundary(row: Any, sp: Any) -> Panel:
    """SETOL's ERG condition: Σ ln λ̃ over the top k eigenvalues (mean-normalised) against λ; the tail
    ends where it first drops below 0 (the ERG edge), beside the power law's x_min."""
    title, xl, yl = f"ERG condition: {_name(row)}", "eigenvalue λ (from the largest down)", "Σ ln(λ / mean λ), top k"
    ev = np.asarray(sp.evals, dtype=np.float64)
    if why := _too_few(ev):
        return _empty(title, xl, yl, _note(row, why), xlog=True)
    # over the eigenvalues of the rank (a rank-deficient layer's zeros left out), as htsr.analyze gives them to
    # htsr.rmt.setol.erg_tail (which computes it so), so the curve crosses 0 exactly at erg_lambda_min_raw
    live = erg_eigenvalues(ev, int(row.matrix_rank) if math.isfinite(row.matrix_rank) else ev.size,
                           int(row.num_zero_evals) if math.isfinite(row.num_zero_evals) else 0)
    pos = live[live > 0][::-1]
    top = float(pos[0])
    log_mean = math.log(top) + math.log(float(np.sum(live / top)) / live.size)
    running = np.cumsum(np.log(pos) - log_mean)
    below = np.flatnonzero(running < 0.0)
    lx, ly = _thin(pos, running, keep=[below[0] - 1, below[0]] if below.size and below[0] > 0 else below[:1])
    series = [Series("line", lx, ly, "running log-sum", "data"), Series("hline", _arr(), _arr(0.0), "", "zero")]
    if math.isfinite(row.erg_lambda_min_raw):
        series.append(Series("vline", _arr(row.erg_lambda_min_raw), _arr(), f"ERG edge ({row.num_erg:.0f} evals)",
                             "erg"))
    if math.isfinite(x := _own_xmin(row)):
        series.append(Series("vline", _arr(x), _arr(), "x_min", "xmin"))
    return Panel(title, xl, yl, tuple(series), xlog=True, note=_note(row))


def _own_xmin(row: Any) -> float:
    """x_min on the layer's own eigenvalues: with FARMS, the one at the windows' tail share (``xmin`` is in
    the windows' units)."""
    return row.farms_xmin if math.isfinite(row.farms_xmin) else row.xmin


#: the per-layer panels, in the order the report shows them
LAYER_PANELS = (esd_loglog, esd_linear, log10_histogram, xmin_scan, shuffled_esd, erg_boundary)


def layer_panels(row: Any, sp: Any) -> list[Panel]:
    """Every per-layer panel for one row (a row without kept eigenvalues gets none)."""
    return [] if sp is None else [f(row, sp) for f in LAYER_PANELS]


def _group_of(row: Any, by: str) -> str:
    return (getattr(row, by) or "no phase") if by == "phase" else getattr(row, by)


def _check_metric(metric: str) -> None:
    """``metric`` is a numeric per-layer column (an OptionError naming them if not)."""
    from .results import NUMERIC_COLUMNS

    if metric not in NUMERIC_COLUMNS:
        raise OptionError(f"metric {metric!r} is not a numeric per-layer column (alpha, log_norm, stable_rank, "
                          "num_evals … : htsr.COLUMNS)")


def alpha_by_layer(result: Any, color_by: str = "kind", metric: str = "alpha") -> Panel:
    """``metric`` (alpha, alpha_weighted, …) per layer in the table's order (a live model's module order; a file's
    names sorted naturally, layer.2 before layer.10: a safetensors file keeps no model order), one series per kind
    (or phase), with the 2 and 6 lines of the HTSR bands when it is alpha."""
    if color_by not in ("kind", "phase"):
        raise OptionError(f"color_by must be 'kind' or 'phase', got {color_by!r}")
    _check_metric(metric)
    rows = result.layers
    which, kept = _means_rows(result)
    groups: dict[str, list[int]] = {}
    for i, r in kept:
        if math.isfinite(getattr(r, metric)):
            groups.setdefault(_group_of(r, color_by), []).append(i)
    order = list(PHASES) + ["no phase"] if color_by == "phase" else sorted(groups)
    series = [Series("points", np.asarray(groups[g], dtype=np.float64),
                     np.asarray([getattr(rows[i], metric) for i in groups[g]]), g, f"{color_by}:{g}",
                     tuple(rows[i].name for i in groups[g]))
              for g in order if g in groups]
    if metric == "alpha":
        series += [Series("hline", _arr(), _arr(2.0), "α = 2", "band"),
                   Series("hline", _arr(), _arr(6.0), "α = 6", "band")]
    note = "" if any(s.kind == "points" for s in series) else f"no layer has a finite {metric}"
    return Panel(f"{metric} per layer{which}", "layer (table order)", metric, tuple(series), note=note)


def _means_rows(result: Any) -> tuple[str, list[tuple[int, Any]]]:
    """The rows the summary's means average (:func:`~htsr.results.means_rows`: of an adapter analysed with its base,
    the updates or the merged weights, not the frozen #base rows beside them) with their positions in the model,
    and what a title says of them ('' for every row)."""
    over, rows = means_rows(result.layers)
    keep = {id(r) for r in rows}
    which = {"all": "", "delta": " (#delta rows, as the means)", "merged": " (#merged rows, as the means)"}[over]
    return which, [(i, r) for i, r in enumerate(result.layers) if id(r) in keep]


def alpha_distribution(result: Any, metric: str = "alpha") -> Panel:
    _check_metric(metric)
    which, kept = _means_rows(result)
    v = np.asarray([getattr(r, metric) for _, r in kept], dtype=np.float64)
    v = v[np.isfinite(v)]
    title = f"distribution of {metric}{which}"
    if v.size == 0:
        return _empty(title, metric, "layers", f"no layer has a finite {metric}")
    lo, hi = float(v.min()), float(v.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, min(max(v.size // 3, 5), 40) + 1)
    series = [Series("hist", edges, np.histogram(v, edges)[0].astype(np.float64), metric, "data")]
    if metric == "alpha":
        series += [Series("vline", _arr(2.0), _arr(), "α = 2", "band"),
                   Series("vline", _arr(6.0), _arr(), "α = 6", "band")]
    return Panel(title, metric, "layers", tuple(series))


def phase_counts(result: Any) -> Panel:
    """Layers per phase, over the rows the summary counts them over (results.phase_rows: an adapter's adapted
    weights)."""
    over, kept = phase_rows(result.layers)
    counts = [sum(r.phase == p for r in kept) for p in PHASES]
    none = sum(r.phase == "" for r in kept)
    labels = tuple(PHASES) + (("no phase",) if none else ())
    y = np.asarray(counts + ([none] if none else []), dtype=np.float64)
    which = "" if over == "all" else f" ({_ROWS_WORDS[over]}, as the summary)"
    return Panel(f"layers per phase{which}", "phase", "layers",
                 (Series("bar", np.arange(y.size, dtype=np.float64), y, "layers", "data", labels),))


#: the rows a summary's figures are over (results.means_rows, results.phase_rows), in a title's words
_ROWS_WORDS = {"all": "every row", "delta": "#delta rows", "merged": "#merged rows",
               "adapted": "updates with one, else #merged rows"}
#: summary columns that count rows by status: of every row, an adapter's #base and #merged rows too
_STATUS_COUNTS = frozenset({"num_layers", "num_fitted", "num_not_fitted", "num_skipped", "num_failed"})
#: summary columns that count phases and traps: over results.phase_rows
_PHASE_COUNTS = frozenset({"num_with_traps", *(phase_column(p) for p in PHASES)})


def metric_trend(results: Sequence[Any], labels: Sequence[str], metrics: Sequence[str],
                 glob: tuple[str, str] | None = None) -> list[Panel]:
    """One panel per summary metric: its value for each result, in the order given (checkpoints); ``glob``: the
    first two labels a shell glob's alphabetical order put out of their numbers' order
    (:func:`htsr.compare.glob_order`), said on the axis."""
    x = np.arange(len(results), dtype=np.float64)
    over = dict.fromkeys(r.summary.means_over for r in results)  # an adapter's: its updates' (results.means_rows)
    words = _ROWS_WORDS
    rows = "" if list(over) == ["all"] else f" (means over {' / '.join(words[o] for o in over)})"
    phased_over = dict.fromkeys(phase_rows(r.layers)[0] for r in results)
    phased = "" if list(phased_over) == ["all"] else f" (over {' / '.join(words[o] for o in phased_over)})"
    known, summaries = Summary.of([]).as_dict(), [r.summary.as_dict() for r in results]
    xlabel = ("model (order given)" if glob is None else
              f"model (order given: alphabetical, {glob[0]} before {glob[1]}; give them as sort -V does)")
    panels = []
    for m in metrics:
        if m not in known:
            raise OptionError(f"metric {m!r} is not a summary column (Summary.as_dict(): alpha, log_norm, "
                              "num_heavy_tailed …)")
        y = np.asarray([d[m] for d in summaries], dtype=np.float64)
        # (the status counts are of every row; the verdicts, shares and means of an adapter's updates, the phases
        # and traps of its adapted weights: results.phase_rows)
        shown = ("" if m in _STATUS_COUNTS else rows if m in SUMMARY_METRICS else
                 phased if m in _PHASE_COUNTS else rows.replace("(means over", "(over"))
        # a model without a value: a gap in the line, no mark (a mark on the axis read as a value), and named
        have = np.isfinite(y)
        missing = [lab for lab, ok in zip(labels, have) if not ok]
        panels.append(Panel(f"{m} across models{shown}", xlabel, m,
                            (Series("line", x, y, m, "data", tuple(labels)),
                             Series("points", x[have], y[have], "", "data",
                                    tuple(lab for lab, ok in zip(labels, have) if ok))),
                            note=f"no finite {m}: {', '.join(missing)}" if missing else ""))
    return panels
