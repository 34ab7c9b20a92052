"""A self-contained HTML report of an analysis: one file, viewable offline, with its figures drawn in the browser.

The page holds, in order: a header (source, htsr version, options that differ from the defaults), the
model summary, the warnings (layers with a warning, layers whose status is not 'ok'), the model figures,
and a sortable per-layer table whose rows open that layer's six figures (:func:`htsr.figures.layer_panels`)
on demand. Every figure is a :class:`~htsr.figures.Panel` embedded as JSON and drawn as inline SVG by a
small vanilla-JS renderer; each layer's panels sit in their own JSON block, parsed and drawn only when the
row is opened, so a report of hundreds of layers opens fast. No CDN, fonts or scripts from the network.

>>> import htsr, htsr.report
>>> result = htsr.analyze("model.safetensors", keep_spectra=True)   # doctest: +SKIP
>>> htsr.report.write_report(result, "report.html")                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import OptionError, described
from .figures import (  # one colour per role in both renderers
    COUNT_AXES,
    ROLE_COLORS,
    Panel,
    alpha_by_layer,
    alpha_distribution,
    layer_panels,
    phase_counts,
    role_color,
)
from .fits.uncertainty import interval_of, warning_interval
from .options import LAYER_KINDS, OPTION_SPECS, UI_OPTIONS
from .results import (CONTROL_ESCAPES, MEANS_OVER, AnalysisResult, LayerResult, format_value, means_rows, phase_rows,
                      table_columns, why_undefined, write_result_file)
from .rmt.phases import PHASES

__all__ = ["render_report", "write_report"]

#: columns added to the CLI's table (sigma after alpha; the rest at the end)
_EXTRA_COLUMNS = ("lambda_max", "entropy", "mp_softrank")
_WARNING_ORDER = ("over-trained", "under-trained", "no-power-law", "uncertain")
_TEXT_TYPES = {f.name for f in dataclasses.fields(LayerResult) if f.type in ("str", str)}
#: significant digits of the numbers in the embedded panels (drawing needs no more)
_PANEL_DIGITS = 5


def render_report(result: AnalysisResult, title: str | None = None) -> str:
    """The report of ``result`` as one HTML document (per-layer figures need ``keep_spectra=True``)."""
    from . import __version__

    if not isinstance(result, AnalysisResult):  # (a mapping had raised a bare AttributeError)
        raise OptionError(f"render_report: result must be what htsr.analyze returns (an AnalysisResult), got "
                          f"{type(result).__name__}; analyse the model first")

    title = title if title is not None else f"htsr report: {result.source}"
    kept = len(result.spectra) == len(result.layers) and len(result.layers) > 0
    columns = _columns(result)
    config = {
        "colours": _colours(result),
        "model_panels": [_panel_json(p) for p in _model_panels(result)],
        "table": {"columns": columns, "numeric": [c not in _TEXT_TYPES for c in columns],
                  "values": [[_value(i, r, c) for c in columns] for i, r in enumerate(result.layers)]},
        "kept": kept,
        "count_axes": sorted(COUNT_AXES),
    }
    parts = [
        ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"),
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        _header(result, title, __version__),
        _summary(result),
        _warnings(result),
        ("<section id=\"model-figures\"><h2>Model figures</h2><div id=\"model-figs\" class=\"grid model\"></div>"
         "</section>\n"),
        _table(result, columns, kept),
        _script_json("htsr-config", _config_json(config)),
    ]
    if kept:
        for i, (row, sp) in enumerate(zip(result.layers, result.spectra)):
            parts.append(_script_json(f"layer-data-{i}", _layer_json(row, sp)))
    parts.append(f"<script>{_JS}</script>\n</body>\n</html>\n")
    return "".join(parts)


def write_report(result: AnalysisResult, path: str | os.PathLike, title: str | None = None) -> None:
    """Write :func:`render_report` to ``path`` atomically (UTF-8); never over a file the analysis read."""
    write_result_file("write_report():", path, render_report(result, title), result.read_from)


# ---- data embedded as JSON -------------------------------------------------------------------------------

def _visible(v: Any) -> Any:
    """``v`` with every string's control characters and bidirectional overrides as their escapes
    (results.CONTROL_ESCAPES, as the printed table shows them): a layer name holding U+202E had reversed the text
    after it in the report, and a warning line read 'evil[519.7 ,19.3] 107.5 = α modl'."""
    if isinstance(v, str):
        return v.translate(CONTROL_ESCAPES)
    if isinstance(v, (list, tuple)):
        return [_visible(x) for x in v]
    if isinstance(v, dict):
        return {k: _visible(x) for k, x in v.items()}
    return v


def _js(v: Any) -> str:
    return json.dumps(_visible(v), ensure_ascii=False, allow_nan=False)


def _nums(a: Any) -> str:
    """A JSON array of numbers at _PANEL_DIGITS significant digits, non-finite values as null."""
    fmt = f"%.{_PANEL_DIGITS}g"
    return "[" + ",".join([fmt % v if math.isfinite(v) else "null"
                           for v in np.asarray(a, dtype=np.float64).ravel().tolist()]) + "]"


def _panel_json(p: Panel) -> str:
    """``p.as_dict()`` as JSON text, its numbers rounded (much smaller and faster than json.dumps of it)."""
    series = ",".join(
        f'{{"kind":{_js(s.kind)},"label":{_js(s.label)},"role":{_js(s.role)},"labels":{_js(list(s.labels))},'
        f'"x":{_nums(s.x)},"y":{_nums(s.y)}}}' for s in p.series)
    meta = {"title": p.title, "xlabel": p.xlabel, "ylabel": p.ylabel, "xlog": p.xlog, "ylog": p.ylog,
            "note": p.note, "ylabel2": p.ylabel2}
    return _js(meta)[:-1] + f',"series":[{series}]}}'


def _layer_json(row: LayerResult, sp: Any) -> str:
    """One layer's panels as JSON: {"name", "panels", "note"}; a failing figure becomes a note, not an error."""
    head = f'{{"name":{_js(row.name)},'
    if sp is None:
        return head + f'"panels":[],"note":{_js(f"no eigenvalues kept for this layer ({row.status})")}}}'
    try:
        panels = layer_panels(row, sp)
    except Exception as e:  # a figure bug must not cost the whole report
        return head + f'"panels":[],"note":{_js(f"figures failed: {described(e)}")}}}'
    return head + '"panels":[' + ",".join(_panel_json(p) for p in panels) + '],"note":""}'


def _config_json(config: dict[str, Any]) -> str:
    panels = config.pop("model_panels")
    return _js(config)[:-1] + ',"model_panels":[' + ",".join(panels) + "]}"


def _script_json(id_: str, text: str) -> str:
    # '<' as \u003c (valid JSON in strings, the only place it can occur): neither '</script>' nor '<!--'
    # in a layer name can end or derail the script element
    return f'<script type="application/json" id="{id_}">{text.replace("<", chr(92) + "u003c")}</script>\n'


def _model_panels(result: AnalysisResult) -> list[Panel]:
    by_kind, by_phase = alpha_by_layer(result, "kind"), alpha_by_layer(result, "phase")
    return [dataclasses.replace(by_kind, title=f"{by_kind.title}, by kind"),
            dataclasses.replace(by_phase, title=f"{by_phase.title}, by phase"), alpha_distribution(result),
            phase_counts(result)]


def _colours(result: AnalysisResult) -> dict[str, str]:
    """The colour of every role the panels can have (htsr.plot's, so that both renderers agree)."""
    roles = set(ROLE_COLORS) | {f"kind:{k}" for k in LAYER_KINDS} | {f"kind:{r.kind}" for r in result.layers}
    roles |= {f"phase:{p}" for p in PHASES + ("no phase",)}
    return {r: role_color(r) for r in sorted(roles)}


def _columns(result: AnalysisResult) -> list[str]:
    cols = ["#"] + list(table_columns(result))
    if "alpha" in cols:
        cols.insert(cols.index("alpha") + 1, "sigma")
    extra = _EXTRA_COLUMNS + (("rand_js_distance",) if result.options.get("randomize") else ())
    return cols + [c for c in extra if c not in cols]


def _value(i: int, row: LayerResult, column: str) -> Any:
    v = i if column == "#" else getattr(row, column)
    return None if isinstance(v, float) and not math.isfinite(v) else v


# ---- HTML ------------------------------------------------------------------------------------------------

def _e(v: Any) -> str:
    return html.escape(str(v).translate(CONTROL_ESCAPES), quote=True)


def _fmt(v: Any) -> str:
    """A cell: as the plain-text tables, NaN as an en dash, infinities as ∞."""
    return format_value(v, nan="–", empty="", inf=("∞", "−∞"))


def _non_defaults(options: dict[str, Any]) -> list[tuple[str, Any]]:
    """The options that differ from their defaults, but for those that cannot change the results."""
    out = []
    for name, value in options.items():
        spec = OPTION_SPECS.get(name)
        if name in UI_OPTIONS or (spec is not None and _same(value, spec.default)):
            continue
        out.append((name, value))
    return out


def _same(a: Any, b: Any) -> bool:
    """Whether an option's value is its default (True is not 1; a list is its tuple default: a saved run's
    options, from JSON, hold lists)."""
    if isinstance(a, list) and isinstance(b, tuple):
        a = tuple(a)
    try:
        return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)
    except Exception:  # e.g. an array-like compared element-wise
        return False


def _header(result: AnalysisResult, title: str, version: str) -> str:
    opts = _non_defaults(result.options)
    opt_html = (", ".join(f"<code>{_e(k)}={_e(repr(v))}</code>" for k, v in opts) if opts
                else "all at their defaults")
    return (f"<header><h1>{_e(title)}</h1>\n<dl class=\"kv\"><dt>source</dt><dd><code>{_e(result.source)}</code></dd>"
            f"<dt>htsr</dt><dd>{_e(version)}</dd><dt>options</dt><dd>{opt_html}</dd></dl></header>\n")


def _kv(pairs: Sequence[tuple[str, Any]]) -> str:
    return "<dl class=\"kv\">" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs) + "</dl>"


def _summary(result: AnalysisResult) -> str:
    s, o = result.summary, result.options
    interval = warning_interval(o)
    counts = [("layers", s.num_layers), ("fitted", s.num_fitted), ("not fitted", s.num_not_fitted),
              ("skipped", s.num_skipped), ("failed", s.num_failed)]
    why = why_undefined(o)

    def said(v: float, entry: str) -> str:  # an undefined value with why (as the CLI's summary says it)
        return _fmt(v) if math.isfinite(v) else f"n/a ({why[entry]})"

    warns = [("over-trained", s.num_over_trained), ("under-trained", s.num_under_trained),
             ("uncertain", s.num_uncertain), ("no-power-law", said(s.num_no_power_law, "num_no_power_law")),
             ("interval of alpha", interval)]
    fits = [("power law plausible (bootstrap p > 0.1)", said(s.share_plausible_pl, "share_plausible_pl")),
            ("best fit is the power law", said(s.share_best_fit_pl, "share_best_fit_pl"))]
    phases = ([("phases", f"n/a ({why['phases']})")] if not any(math.isfinite(n) for n in s.phases.values())
              else [(p, said(n, "phases")) for p, n in s.phases.items()])
    if o.get("randomize"):
        phases.append(("layers with correlation traps", said(s.num_with_traps, "num_with_traps")))
    means = [(k, _fmt(v) if math.isfinite(v) else "n/a") for k, v in s.means.items()]  # (as the CLI's summary)
    if result.num_tensors is not None:
        counts.insert(0, ("tensors in the source", result.num_tensors))
    passed = ""
    if result.not_analysed:  # each reason with its count, the first names as examples
        passed = ("<div><h3>Tensors not analysed</h3>" + _kv([(n.reason, f"{n.count} ({', '.join(n.examples)}"
                                                              f"{', …' if n.count > len(n.examples) else ''})")
                                                             for n in result.not_analysed]) + "</div>")
    # (the rows Summary.of counts: an adapter's updates, its adapted weights for the phases)
    over = "" if s.means_over == "all" else f" (over {_e(MEANS_OVER[s.means_over])})"
    phased = "" if s.means_over == "all" else f" (over {_e(MEANS_OVER[phase_rows(result.layers)[0]])})"
    return ("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">"
            f"<div><h3>Layers</h3>{_kv(counts)}</div><div><h3>Warnings{over}</h3>{_kv(warns)}</div>"
            f"<div><h3>Phases{phased}</h3>{_kv(phases)}</div><div><h3>Tail fits{over}</h3>{_kv(fits)}</div>"
            f"<div><h3>Means over {_e(MEANS_OVER[s.means_over])} with a finite value</h3>{_kv(means)}</div>"
            f"{passed}</div></section>\n")


def _layer_link(i: int, r: LayerResult) -> str:
    return f"<a href=\"#layer-{i}\" class=\"goto\" data-i=\"{i}\">{_e(r.name)}</a>"


def _warnings(result: AnalysisResult) -> str:
    rows = list(enumerate(result.layers))
    warned = sorted(((i, r) for i, r in rows if r.warning),
                    key=lambda t: (_WARNING_ORDER.index(t[1].warning) if t[1].warning in _WARNING_ORDER else 9, t[0]))
    s = result.summary
    counted = {r.name for r in means_rows(result.layers)[1]}  # the rows the Warnings card counts
    items, others = [], []
    for i, r in warned:
        lo, hi, _ = interval_of(r.as_dict())  # the warning's
        detail = f"α = {_fmt(r.alpha)}"
        if math.isfinite(lo) and math.isfinite(hi):
            detail += f" [{_fmt(lo)}, {_fmt(hi)}]"
        if math.isfinite(r.pl_pvalue):
            detail += f", p = {_fmt(r.pl_pvalue)}"
        (items if r.name in counted else others).append(
            f"<li data-layer=\"{_e(r.name)}\"><span class=\"badge w-{_e(r.warning)}\">{_e(r.warning)}</span> "
            f"{_layer_link(i, r)} <span class=\"muted\">{_e(detail)}</span></li>")
    status = []
    for i, r in rows:
        if r.status != "ok":
            what = r.status.split(":")[0].split(";")[0]  # failed, fit_failed, skipped, not_fitted, 'ok' (diagnostics)
            status.append(f"<li data-layer=\"{_e(r.name)}\"><span class=\"badge s-{_e(what)}\">{_e(what)}</span> "
                          f"{_layer_link(i, r)} <span class=\"muted\">{_e(r.status)}</span></li>")
    over = "" if s.means_over == "all" else f" (of {_e(MEANS_OVER[s.means_over])}, as the summary counts)"
    html_ = ["<section id=\"warnings\"><h2>Warnings</h2>",
             f"<h3>Layers with a warning ({len(items)}){over}</h3>"]
    html_.append(f"<ul id=\"warned\">{''.join(items)}</ul>" if items else "<p class=\"ok\">No layer has a warning.</p>")
    if others:  # an adapter's other views of the same modules (#base, #merged), which the summary does not count
        html_.append(f"<h3>Other rows with a warning ({len(others)}), not counted in the summary</h3>"
                     f"<ul id=\"warned-other\">{''.join(others)}</ul>")
    html_.append(f"<h3>Layers whose status is not ok ({len(status)})</h3>")
    html_.append(f"<ul id=\"not-ok\">{''.join(status)}</ul>" if status
                 else "<p class=\"ok\">Every layer's status is ok.</p>")
    return "".join(html_) + "</section>\n"


def _cell(row: LayerResult, column: str, i: int) -> str:
    if column == "#":
        return f"<td class=\"num\">{i}</td>"
    v = getattr(row, column)
    if column in _TEXT_TYPES:
        text = v
        if column == "trap_weights" and v.count(";") >= 2:  # two shown; all in the tooltip
            text = "; ".join(v.split("; ")[:2]) + "; …"
        tip = f" title=\"{_e(v)}\"" if text != v or column == "status" else ""
        cls = f" class=\"w-{_e(v)}\"" if column == "warning" and v else ""
        return f"<td{cls}{tip}>{_e(text)}</td>"
    return f"<td class=\"num\">{_e(_fmt(v))}</td>"


def _table(result: AnalysisResult, columns: Sequence[str], kept: bool) -> str:
    head = "".join(f"<th data-col=\"{j}\" class=\"{'text' if c in _TEXT_TYPES else 'num'}\" tabindex=\"0\" "
                   f"title=\"sort by {_e(c)}\">{_e(c)}<span class=\"arrow\"></span></th>"
                   for j, c in enumerate(columns))
    button = ("<td class=\"btn\"><button class=\"open\" aria-expanded=\"false\" title=\"show this layer's figures\">"
              "▸</button></td>") if kept else "<td class=\"btn\"></td>"
    body = "".join(f"<tr class=\"layer\" id=\"layer-{i}\" data-i=\"{i}\">{button}"
                   + "".join(_cell(r, c, i) for c in columns) + "</tr>"
                   for i, r in enumerate(result.layers))
    if kept:
        intro = ("<p class=\"hint\">Click a column header to sort (again to reverse); click a row to show that "
                 "layer's figures.</p>")
    else:
        intro = ("<p class=\"hint\">Click a column header to sort (again to reverse).</p>"
                 "<p id=\"no-spectra\" class=\"note\">Per-layer figures are not available: this result keeps no "
                 "eigenvalues. Analyse with <code>htsr.analyze(..., keep_spectra=True)</code>, or use the CLI's "
                 "<code>--report</code>, which sets it.</p>")
    return (f"<section id=\"layers-section\"><h2>Layers</h2>{intro}<div class=\"table-wrap\" id=\"table-wrap\">"
            f"<table id=\"layers\"><thead><tr><th class=\"btn\"></th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div></section>\n")


_CSS = """
:root { --fg: #222; --muted: #666; --line: #ddd; --bg-alt: #f6f7f9; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 1em 1.5em 3em; max-width: 1800px; }
h1 { font-size: 1.5em; margin: .2em 0 .4em; word-break: break-all; }
h2 { font-size: 1.2em; border-bottom: 1px solid var(--line); padding-bottom: .2em; margin-top: 1.6em; }
h3 { font-size: 1em; margin: .8em 0 .3em; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg-alt);
       padding: 0 .25em; border-radius: 3px; word-break: break-all; }
dl.kv { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; margin: .2em 0; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: .5em 2.5em; }
.cards > div { min-width: 14em; }
ul#warned, ul#not-ok { columns: 2 28em; padding-left: 1.2em; margin: .3em 0; }
li { break-inside: avoid; }
.muted, .hint { color: var(--muted); } .ok { color: #2a7a2a; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5em .8em; }
.badge { display: inline-block; font-size: 11px; padding: 0 .45em; border-radius: 8px; background: #eee; }
.w-over-trained { background: #fdd; } .w-under-trained { background: #dde8ff; }
.w-uncertain { background: #fff1c4; } .w-no-power-law { background: #eadcf5; }
.s-failed, .s-fit_failed { background: #fbb; } .s-skipped, .s-not_fitted { background: #e4e4e4; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: .8em 1.2em; }
.grid.model { grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); }
figure.panel { margin: 0; }
figure.panel svg { width: 100%; height: auto; display: block; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #333; }
.table-wrap { overflow: auto; max-height: 85vh; border: 1px solid var(--line); }
table#layers { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
#layers th { position: sticky; top: 0; background: #eef1f5; z-index: 1; cursor: pointer; white-space: nowrap;
             padding: .35em .5em; border-bottom: 1px solid #ccd; user-select: none; }
#layers th.num { text-align: right; } #layers th.text { text-align: left; }
#layers th .arrow { display: inline-block; width: 1em; color: var(--accent); }
#layers th[aria-sort] { background: #dfe6ef; }
#layers td { padding: .2em .5em; white-space: nowrap; border-bottom: 1px solid #eee; }
#layers tr { scroll-margin-top: 2.4em; }  /* scrolled to: not under the sticky header */
#layers td.num { text-align: right; }
#layers tr.layer:nth-child(even of .layer) { background: var(--bg-alt); }
#layers tr.layer:hover { background: #e8f0fb; }
#layers tr.layer.open { background: #dbe8f8; }
#layers td.btn, #layers th.btn { width: 1.8em; padding: 0 .2em; }
button.open { border: 0; background: none; cursor: pointer; font-size: 13px; color: var(--accent); }
tr.layer.open button.open { transform: rotate(90deg); }
.clickable tr.layer { cursor: pointer; }
tr.detail > td { background: #fff; padding: .6em .4em 1em; border-bottom: 2px solid #ccd; }
.layer-figs { position: sticky; left: 0; }
.layer-figs h3 { margin: 0 0 .4em; }
"""

_JS = r"""
'use strict';
(function () {
  const NS = 'http://www.w3.org/2000/svg';
  const CFG = JSON.parse(document.getElementById('htsr-config').textContent);
  const CW = 6.2;  // approximate width of a character of 11px text
  let uid = 0;

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  const finite = v => typeof v === 'number' && isFinite(v);
  const r1 = v => Math.round(v * 10) / 10;
  const colour = role => CFG.colours[(role || '').replace(/:right$/, '')] || '#7f7f7f';

  // ---- scales and ticks ----
  function niceStep(span, n) {
    const raw = span / n, p = Math.pow(10, Math.floor(Math.log10(raw))), q = raw / p;
    return (q < 1.5 ? 1 : q < 3 ? 2 : q < 7 ? 5 : 10) * p;
  }
  function linTicks(a, b, integer) {
    const s = integer ? Math.max(1, niceStep(b - a, 5)) : niceStep(b - a, 5), out = [];
    for (let k = Math.ceil(a / s - 1e-9); k * s <= b + s * 1e-9; k++) out.push(k === 0 ? 0 : +(k * s).toPrecision(12));
    return out;
  }
  function logTicks(a, b) {  // a, b: log10 of the domain
    const lo = Math.ceil(a - 1e-9), hi = Math.floor(b + 1e-9), out = [];
    if (hi - lo >= 2) {
      const step = Math.ceil((hi - lo + 1) / 7);
      for (let k = lo; k <= hi; k += step) out.push(Math.pow(10, k));
      return out;
    }
    for (let k = Math.floor(a); k <= Math.ceil(b); k++) {
      for (const m of [1, 2, 5]) {
        const v = m * Math.pow(10, k), l = Math.log10(v);
        if (l >= a - 1e-9 && l <= b + 1e-9) out.push(v);
      }
    }
    return out.length >= 2 ? out : linTicks(Math.pow(10, a), Math.pow(10, b)).filter(v => v > 0);
  }
  const SUP = {'-': '\u207b', '0': '\u2070', '1': '\u00b9', '2': '\u00b2', '3': '\u00b3', '4': '\u2074',
               '5': '\u2075', '6': '\u2076', '7': '\u2077', '8': '\u2078', '9': '\u2079'};
  function fmt(v) {
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return (+v.toExponential(2)).toExponential().replace('e+', 'e');
    return String(+v.toPrecision(4));
  }
  function fmtTick(v, log) {
    const k = Math.log10(v);
    if (log && Math.abs(k - Math.round(k)) < 1e-9 && Math.abs(k) >= 2) {
      return '10' + String(Math.round(k)).split('').map(c => SUP[c]).join('');
    }
    return fmt(v);
  }
  // a map from data to pixels over [r0, r1]; opt.pad widens the domain, opt.zero keeps 0 in it
  function scale(vals, log, r0, r1, opt) {
    let a = Infinity, b = -Infinity;
    for (const v of vals) if (finite(v) && (!log || v > 0)) { if (v < a) a = v; if (v > b) b = v; }
    if (a > b) { a = log ? 1 : 0; b = log ? 10 : 1; }
    if (log) { a = Math.log10(a); b = Math.log10(b); } else if (opt.zero) { a = Math.min(a, 0); b = Math.max(b, 0); }
    if (b - a <= 1e-12 * Math.max(Math.abs(a), Math.abs(b))) {  // (relative: a delta's 1e-14 is a real span)
      if (!log && opt.zero && a === 0) b = 1;  // all zero: [0, 1], not around 0
      else { const d = log ? 0.5 : (Math.abs(a) * 0.1 || 0.5); a -= d; b += d; }
    } else if (opt.pad) {
      const d = (b - a) * opt.pad;
      if (!(opt.zero && !log && a === 0)) a -= d;
      if (!(opt.zero && !log && b === 0)) b += d;
    }
    const f = v => r0 + ((log ? Math.log10(v) : v) - a) / (b - a) * (r1 - r0);
    f.ok = v => finite(v) && (!log || v > 0);
    f.ticks = () => log ? logTicks(a, b) : linTicks(a, b, opt.integer);
    f.log = log;
    return f;
  }

  // ---- text layout ----
  function wrap(text, width) {
    const max = Math.max(10, Math.floor(width / CW)), lines = [];
    let line = '';
    for (const w of String(text).split(/\s+/)) {
      if (line && (line + ' ' + w).length > max) { lines.push(line); line = w; } else line = line ? line + ' ' + w : w;
    }
    if (line) lines.push(line);
    return lines;
  }
  function clip(text, width) {
    const max = Math.floor(width / (CW * 1.1));
    return text.length > max ? text.slice(0, max - 1) + '\u2026' : text;
  }
  function fit(node, width) {  // clip's estimate, measured as drawn: bold and wide glyphs run past it
    try {
      const t = node.firstChild;
      while (t && node.getComputedTextLength() > width && t.data.length > 2) t.data = t.data.slice(0, -2) + '\u2026';
    } catch (e) { /* not laid out: the estimate stands */ }
    return node;
  }

  // ---- one panel ----
  const ORDER = {hist: 0, bar: 0, hline: 1, vline: 1, line: 2, points: 3};
  function drawPanel(p, holder, W, PH) {
    const S = (p.series || []).slice().sort((s, t) => ORDER[s.kind] - ORDER[t.kind]);
    const right = s => /:right$/.test(s.role || '');
    const hasRight = S.some(right);
    const bar = S.find(s => s.kind === 'bar');
    const cats = bar ? (bar.labels && bar.labels.length ? bar.labels : bar.x.map(fmt)) : null;
    const m = {l: 64, r: hasRight ? 60 : 18, t: 30, b: 44};
    let rotate = false;
    if (cats) {
      const band = (W - m.l - m.r) / Math.max(cats.length, 1);
      rotate = cats.some(c => c.length * CW > band - 4);
      if (rotate) {
        const extra = Math.min(70, Math.max(...cats.map(c => c.length)) * CW * 0.5);
        m.b += extra; PH += extra;
      }
    }
    const x0 = m.l, x1 = W - m.r, y0 = m.t, y1 = PH - m.b;
    // legend and note layout, below the axes
    const entries = (p.series || []).filter(s => s.label && s.kind !== 'bar');
    const items = [];
    let lx = 10, ly = PH + 4;
    for (const s of entries) {
      const text = s.label + (right(s) ? ' (right axis)' : ''), w = 24 + text.length * CW + 14;
      if (lx + w > W - 6 && lx > 10) { lx = 10; ly += 16; }
      items.push([s, text, lx, ly]); lx += w;
    }
    const legendH = items.length ? ly - PH + 20 : 0;
    const dataless = !S.some(s => s.kind !== 'hline' && s.kind !== 'vline');  // the note goes in the axes
    const noteLines = p.note && !dataless ? wrap(p.note, W - 20) : [];
    const H = PH + legendH + noteLines.length * 15 + 6;
    const svg = el('svg', {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': p.title}, holder);
    svg.style.maxWidth = W + 'px';
    fit(el('text', {x: x0, y: 18, 'font-size': 13, 'font-weight': 600}, svg, clip(p.title, W - x0)), W - x0 - 4)
      .appendChild(el('title', {}, null, p.title));

    // scales
    const xs = [], ys = [], y2s = [];
    let zero = false;
    for (const s of S) {
      const Y = right(s) ? y2s : ys;
      if (s.kind === 'hist') { xs.push(...s.x); Y.push(...s.y); zero = true; }
      else if (s.kind === 'bar') { Y.push(...s.y); zero = true; }
      else if (s.kind === 'vline') xs.push(...s.x);
      else if (s.kind === 'hline') Y.push(...s.y);
      else { xs.push(...s.x); Y.push(...s.y); }
    }
    const fx = cats ? (i => x0 + (i + 0.5) * (x1 - x0) / cats.length)
                    : scale(xs, p.xlog, x0, x1, {pad: p.xlog ? 0.02 : 0.03, integer: CFG.count_axes.includes(p.xlabel)});
    const fy = scale(ys, p.ylog, y1, y0, {pad: 0.05, zero: zero, integer: CFG.count_axes.includes(p.ylabel)});
    const fy2 = hasRight ? scale(y2s, false, y1, y0, {pad: 0.05}) : null;
    if (cats) { fx.ok = finite; }

    // frame, grid, ticks
    el('rect', {x: x0, y: y0, width: x1 - x0, height: y1 - y0, fill: '#fff', stroke: '#bbb'}, svg);
    const grid = el('g', {stroke: '#eee'}, svg), labels = el('g', {'font-size': 11}, svg);
    if (cats) {
      cats.forEach((c, i) => {
        const X = fx(i);
        const t = el('text', rotate ? {x: X, y: y1 + 12, 'text-anchor': 'end', transform: `rotate(-35 ${X} ${y1 + 12})`}
                                    : {x: X, y: y1 + 15, 'text-anchor': 'middle'}, labels, c);
        if (rotate) t.setAttribute('dy', '.3em');
      });
    } else if (S.length) {
      for (const t of fx.ticks()) {
        const X = fx(t);
        if (X < x0 - 0.5 || X > x1 + 0.5) continue;
        el('line', {x1: r1(X), x2: r1(X), y1: y0, y2: y1}, grid);
        el('text', {x: X, y: y1 + 15, 'text-anchor': 'middle'}, labels, fmtTick(t, p.xlog));
      }
    }
    for (const t of S.length ? fy.ticks() : []) {
      const Y = fy(t);
      if (Y < y0 - 0.5 || Y > y1 + 0.5) continue;
      el('line', {x1: x0, x2: x1, y1: r1(Y), y2: r1(Y)}, grid);
      el('text', {x: x0 - 6, y: Y, dy: '.32em', 'text-anchor': 'end'}, labels, fmtTick(t, p.ylog));
    }
    if (fy2) {
      for (const t of fy2.ticks()) {
        const Y = fy2(t);
        if (Y < y0 - 0.5 || Y > y1 + 0.5) continue;
        el('text', {x: x1 + 6, y: Y, dy: '.32em', 'text-anchor': 'start'}, labels, fmtTick(t, false));
      }
    }
    el('text', {x: (x0 + x1) / 2, y: PH - 8, 'text-anchor': 'middle', 'font-size': 12}, svg, p.xlabel);
    const yc = (y0 + y1) / 2;
    fit(el('text', {x: 14, y: yc, 'text-anchor': 'middle', 'font-size': 12, transform: `rotate(-90 14 ${yc})`},
           svg, clip(p.ylabel, y1 - y0)), y1 - y0);
    if (hasRight) {
      fit(el('text', {x: W - 10, y: yc, 'text-anchor': 'middle', 'font-size': 12,
                      transform: `rotate(90 ${W - 10} ${yc})`}, svg, clip(p.ylabel2, y1 - y0)), y1 - y0);
    }

    // series, clipped to the axes
    const id = 'clip' + (++uid);
    el('rect', {x: x0, y: y0, width: x1 - x0, height: y1 - y0}, el('clipPath', {id: id}, svg));
    const g = el('g', {'clip-path': `url(#${id})`}, svg);
    for (const s of S) {
      const c = colour(s.role), ys_ = right(s) ? fy2 : fy;
      const base = fy.log ? y1 : Math.min(Math.max(fy(0), y0), y1);
      if (s.kind === 'hist') {  // the first histogram filled; any later one light, with its outline
        const first = S.find(t => t.kind === 'hist') === s;
        const gh = el('g', {fill: c, 'fill-opacity': first ? 0.5 : 0.15}, g);
        let d = '';
        for (let i = 0; i < s.y.length; i++) {
          const h = s.y[i];
          if (!ys_.ok(h) || h === 0 || !fx.ok(s.x[i]) || !fx.ok(s.x[i + 1])) continue;
          const X = r1(fx(s.x[i])), X2 = r1(fx(s.x[i + 1])), Y = r1(ys_(h));
          el('rect', {x: X, y: Math.min(Y, base), width: Math.max(X2 - X, 0.6), height: r1(Math.abs(base - Y))}, gh);
          d += `M${X} ${base}V${Y}H${X2}V${base}`;
        }
        if (!first && d) el('path', {d: d, fill: 'none', stroke: c, 'stroke-width': 1.2}, g);
      } else if (s.kind === 'bar') {
        const bw = 0.7 * (x1 - x0) / cats.length;
        s.y.forEach((h, i) => {
          if (!ys_.ok(h)) return;
          const Y = ys_(h), lab = cats[i];
          const rc = el('rect', {x: r1(fx(i) - bw / 2), y: r1(Math.min(Y, base)), width: r1(bw),
                                 height: r1(Math.abs(base - Y)), fill: CFG.colours['phase:' + lab] || c}, g);
          el('title', {}, rc, `${lab}: ${fmt(h)}`);
          if (h !== 0) {
            el('text', {x: fx(i), y: Math.min(Y, base) - 3, 'text-anchor': 'middle', 'font-size': 10}, g, fmt(h));
          }
        });
      } else if (s.kind === 'line') {
        let d = '', pen = false;
        s.x.forEach((x, i) => {
          const y = s.y[i];
          if (fx.ok(x) && ys_.ok(y)) {
            d += (pen ? 'L' : 'M') + r1(fx(x)) + ' ' + r1(ys_(y));
            pen = true;
          } else pen = false;  // a gap: NaN, or not positive on a log axis
        });
        if (d) el('path', {d: d, fill: 'none', stroke: c, 'stroke-width': 1.8}, g);
      } else if (s.kind === 'points') {
        const gp = el('g', {fill: c, stroke: c}, g);
        s.x.forEach((x, i) => {
          if (!fx.ok(x)) return;
          const y = s.y[i], tip = (s.labels && s.labels[i] ? s.labels[i] + ': ' : '') + (finite(y) ? fmt(y) : fmt(x));
          const e = ys_.ok(y) ? el('circle', {cx: r1(fx(x)), cy: r1(ys_(y)), r: 3.2, 'fill-opacity': 0.75}, gp)
                              : el('line', {x1: r1(fx(x)), x2: r1(fx(x)), y1: y1, y2: y1 - 9, 'stroke-width': 1.5}, gp);
          el('title', {}, e, tip);
        });
      } else if (s.kind === 'vline' || s.kind === 'hline') {
        const v = s.kind === 'vline' ? s.x[0] : s.y[0], ok = s.kind === 'vline' ? fx.ok(v) : ys_.ok(v);
        if (!ok) continue;
        const a = s.kind === 'vline' ? {x1: r1(fx(v)), x2: r1(fx(v)), y1: y0, y2: y1}
                                     : {x1: x0, x2: x1, y1: r1(ys_(v)), y2: r1(ys_(v))};
        if (s.role !== 'zero') a['stroke-dasharray'] = '5 3';
        const ln = el('line', Object.assign(a, {stroke: c, 'stroke-width': 1.5}), g);
        el('title', {}, ln, `${s.label || s.role}: ${fmt(v)}`);
      }
    }
    if (dataless && p.note) {
      wrap(p.note, x1 - x0 - 20).forEach((t, i) =>
        el('text', {x: (x0 + x1) / 2, y: yc + i * 15, 'text-anchor': 'middle', 'font-size': 12, 'font-style': 'italic',
                    fill: '#888'}, svg, t));
    }

    // legend and note
    for (const [s, text, x, y] of items) {
      const c = colour(s.role), lg = el('g', {}, svg);
      if (s.kind === 'hist') {
        const first = S.find(t => t.kind === 'hist') === s;
        el('rect', {x: x, y: y + 2, width: 16, height: 9, fill: c, 'fill-opacity': first ? 0.5 : 0.15,
                    stroke: first ? 'none' : c}, lg);
      } else if (s.kind === 'points' && s.y.some(finite)) {
        el('circle', {cx: x + 8, cy: y + 6.5, r: 3.5, fill: c}, lg);
      } else if (s.kind === 'points') {  // a rug
        el('line', {x1: x + 8, x2: x + 8, y1: y + 1, y2: y + 12, stroke: c, 'stroke-width': 1.5}, lg);
      } else {
        const a = {x1: x, x2: x + 18, y1: y + 6.5, y2: y + 6.5, stroke: c, 'stroke-width': s.kind === 'line' ? 2 : 1.5};
        if (s.kind !== 'line' && s.role !== 'zero') a['stroke-dasharray'] = '5 3';
        el('line', a, lg);
      }
      el('text', {x: x + 23, y: y + 10.5, 'font-size': 11}, lg, text);
    }
    noteLines.forEach((t, i) => el('text', {x: 10, y: PH + legendH + 12 + i * 15, 'font-size': 11,
                                            'font-style': 'italic', fill: '#666'}, svg, t));
    return svg;
  }

  function drawInto(parent, p, W, H) {
    const fig = document.createElement('figure');
    fig.className = 'panel';
    parent.appendChild(fig);
    try { drawPanel(p, fig, W, H); } catch (e) {
      fig.textContent = `could not draw "${p.title}": ${e}`;
      console.error(e);
    }
  }

  // ---- model figures ----
  const modelFigs = document.getElementById('model-figs');
  for (const p of CFG.model_panels) drawInto(modelFigs, p, 640, 320);

  // ---- the layer table: sorting ----
  const table = document.getElementById('layers'), wrapEl = document.getElementById('table-wrap');
  const T = CFG.table, details = {};
  let sortCol = -1, asc = true;
  function sortRows(c, up) {
    const tb = table.tBodies[0], rows = Array.from(tb.querySelectorAll('tr.layer')), V = T.values, num = T.numeric[c];
    const blank = v => v === null || v === undefined || v === '';
    rows.sort((ra, rb) => {
      const ia = +ra.dataset.i, ib = +rb.dataset.i, a = V[ia][c], b = V[ib][c];
      if (blank(a) || blank(b)) return blank(a) && blank(b) ? ia - ib : blank(a) ? 1 : -1;
      const d = num ? a - b : String(a).localeCompare(String(b), undefined, {numeric: true, sensitivity: 'base'});
      return (up ? d : -d) || ia - ib;
    });
    for (const r of rows) { tb.appendChild(r); if (details[r.dataset.i]) tb.appendChild(details[r.dataset.i]); }
  }
  for (const th of table.tHead.rows[0].cells) {
    if (th.dataset.col === undefined) continue;
    const go = () => {
      const c = +th.dataset.col;
      asc = c === sortCol ? !asc : true;
      sortCol = c;
      sortRows(c, asc);
      for (const h of table.tHead.rows[0].cells) {
        if (h.dataset.col === undefined) continue;
        const on = +h.dataset.col === c;
        h.querySelector('.arrow').textContent = on ? (asc ? '\u25b2' : '\u25bc') : '';
        if (on) h.setAttribute('aria-sort', asc ? 'ascending' : 'descending'); else h.removeAttribute('aria-sort');
      }
    };
    th.addEventListener('click', go);
    th.addEventListener('keydown', e => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } });
  }

  // ---- the layer table: each layer's figures, drawn when first opened ----
  function fitWidth(d) { d.querySelector('.layer-figs').style.width = Math.max(wrapEl.clientWidth - 16, 300) + 'px'; }
  function buildDetail(i) {
    const tr = document.createElement('tr'), td = document.createElement('td'), box = document.createElement('div');
    tr.className = 'detail';
    td.colSpan = table.tHead.rows[0].cells.length;
    box.className = 'layer-figs';
    tr.appendChild(td); td.appendChild(box);
    const src = document.getElementById('layer-data-' + i), data = src ? JSON.parse(src.textContent) : null;
    const h = document.createElement('h3');
    h.textContent = data ? data.name : 'layer ' + i;
    box.appendChild(h);
    if (data && data.note) {
      const n = document.createElement('p');
      n.className = 'note';
      n.textContent = data.note;
      box.appendChild(n);
    }
    const grid = document.createElement('div');
    grid.className = 'grid';
    box.appendChild(grid);
    return [tr, grid, data];
  }
  function toggle(i, show) {
    const row = document.getElementById('layer-' + i);
    let d = details[i];
    if (show === undefined) show = !d || d.hidden;
    if (show && !d) {
      const [tr, grid, data] = buildDetail(i);
      d = details[i] = tr;
      row.after(tr);
      fitWidth(tr);
      if (data) for (const p of data.panels) drawInto(grid, p, 480, 290);
    }
    if (d) { d.hidden = !show; if (show) fitWidth(d); }
    row.classList.toggle('open', show);
    const b = row.querySelector('button.open');
    if (b) b.setAttribute('aria-expanded', String(show));
    return row;
  }
  if (CFG.kept) {
    table.classList.add('clickable');
    table.tBodies[0].addEventListener('click', e => {
      const row = e.target.closest('tr.layer');
      if (row && !(window.getSelection() && String(window.getSelection()).length)) toggle(+row.dataset.i);
    });
    window.addEventListener('resize', () => { for (const k in details) if (!details[k].hidden) fitWidth(details[k]); });
  }
  for (const a of document.querySelectorAll('a.goto')) {
    a.addEventListener('click', e => {
      e.preventDefault();
      const row = CFG.kept ? toggle(+a.dataset.i, true) : document.getElementById('layer-' + a.dataset.i);
      row.scrollIntoView({block: 'start'});
    });
  }
  window.htsrReport = {drawPanel: drawPanel, toggle: toggle, sort: sortRows};
})();
"""
