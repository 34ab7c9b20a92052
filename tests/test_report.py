"""The HTML report: self-contained, escaped, atomic; and, in headless Chromium over CDP (tests/cdp.py), free of
console errors, sortable, drawing each layer's figures on demand and something other than a blank page."""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import htsr
from conftest import layer_row, result_of
from htsr.errors import HtsrError
from htsr.figures import layer_panels
from htsr.report import _fmt, _panel_json, render_report, write_report
from htsr.results import MEANS_OVER, table_columns

from cdp import Browser, find_chromium

EVIL = "<script>alert(1)</script>"
EVIL2 = "x</script><!--<script>y"
#: copies of the screenshots, to look at, when HTSR_REPORT_SHOTS names a folder for them
SHOTS = os.environ.get("HTSR_REPORT_SHOTS")


def _model() -> dict[str, np.ndarray]:
    """Seeded matrices: Gaussian, heavy-tailed entries, low-rank spikes; one tiny, one with a NaN, two evil names."""
    rng = np.random.default_rng(1)
    model = {}
    for i in range(12):
        n, m = int(rng.integers(120, 400)), int(rng.integers(80, 200))
        W = rng.standard_normal((n, m))
        if i % 3 == 0:
            W += rng.pareto(1.5, (n, m)) * rng.choice([-1, 1], (n, m))
        if i % 3 == 1:
            W += 0.8 * rng.standard_normal((n, 4)) @ rng.standard_normal((4, m))
        model[f"enc.{i}.weight"] = W
    model[f"{EVIL}.weight"] = rng.standard_normal((100, 60))
    model[f"{EVIL2}.weight"] = rng.standard_normal((90, 70))
    model["tiny.weight"] = rng.standard_normal((30, 20))  # < min_evals: not fitted
    bad = rng.standard_normal((50, 40))
    bad[0, 0] = np.nan  # failed
    model["bad.weight"] = bad
    model["emb.embed_tokens.weight"] = rng.standard_normal((500, 64))
    model[f"{EVIL2}.bias"] = rng.standard_normal(90)  # not analysed: listed in the summary, by name
    return model


@pytest.fixture(scope="module")
def result() -> htsr.AnalysisResult:
    return htsr.analyze(_model(), keep_spectra=True, randomize=True)


@pytest.fixture(scope="module")
def bare_result() -> htsr.AnalysisResult:
    return htsr.analyze(_model(), randomize=True)


@pytest.fixture(scope="module")
def page(result) -> str:
    return render_report(result)


def _json_blocks(text: str) -> dict[str, str]:
    return dict(re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', text, re.DOTALL))


# ---- the HTML itself ------------------------------------------------------------------------------------

def test_self_contained(page):
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""@import|url\(\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "<iframe" not in page
    assert re.findall(r"<script[^>]*\bsrc=", page) == []


def test_sections_in_order_and_header(result, page):
    ids = ["summary", "warnings", "model-figures", "layers-section"]
    pos = [page.index(f'<section id="{i}"') for i in ids]
    assert page.index("<header>") < pos[0] and pos == sorted(pos)
    header = page[page.index("<header>"):pos[0]]
    assert htsr.__version__ in header and html.escape(result.source) in header
    # the options that differ from the defaults and change the results, and only those (keep_spectra is what
    # the report itself needs)
    assert "randomize=True" in header and "keep_spectra=" not in header
    assert "xmin=" not in header and "tails=" not in header and "progress=" not in header
    assert f"<dd>{result.summary.num_layers}</dd>" in page[pos[0]:pos[1]]
    # the tensors that give no row, why, and which
    assert f"<dt>tensors in the source</dt><dd>{result.num_tensors}</dd>" in page[pos[0]:pos[1]]
    assert (f"<h3>Tensors not analysed</h3><dl class=\"kv\"><dt>bias or norm buffer</dt><dd>1 ({html.escape(EVIL2)}.bias)"
            "</dd></dl>") in page[pos[0]:pos[1]]


def test_names_escaped_and_json_cannot_break_out(result, page):
    assert EVIL not in page and EVIL2 not in page
    assert html.escape(EVIL) in page and html.escape(EVIL2) in page
    # every script element is one of ours: config, one per layer, the renderer
    assert page.count("<script") == page.count("</script>") == 2 + len(result.layers)
    blocks = _json_blocks(page)
    assert set(blocks) == {"htsr-config"} | {f"layer-data-{i}" for i in range(len(result.layers))}
    for text in blocks.values():
        assert "<" not in text
        json.loads(text)  # strict JSON: no NaN
    names = {json.loads(blocks[f"layer-data-{i}"])["name"] for i in range(len(result.layers))}
    assert {EVIL, EVIL2} <= names
    table = json.loads(blocks["htsr-config"])["table"]
    assert [row[table["columns"].index("name")] for row in table["values"]] == [r.name for r in result.layers]


def test_panel_json_is_as_dict_rounded(result):
    i = next(i for i, r in enumerate(result.layers) if r.status == "ok")
    for p in layer_panels(result.layers[i], result.spectra[i]):
        got, want = json.loads(_panel_json(p)), p.as_dict()
        for s in want["series"]:
            s.setdefault("labels", [])
        assert {k: v for k, v in got.items() if k != "series"} == {k: v for k, v in want.items() if k != "series"}
        for gs, ws in zip(got["series"], want["series"], strict=True):
            assert {k: gs[k] for k in ("kind", "label", "role", "labels")} == \
                   {k: ws[k] for k in ("kind", "label", "role", "labels")}
            for k in ("x", "y"):
                assert [g is None for g in gs[k]] == [w is None for w in ws[k]]
                # %.5g (_PANEL_DIGITS = 5) rounds to ≤ 5e-5 relative
                np.testing.assert_allclose([g for g in gs[k] if g is not None], [w for w in ws[k] if w is not None],
                                           rtol=1e-4)


def test_table_rows_columns_and_numbers(result, page):
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    assert body.count('<tr class="layer"') == len(result.layers)
    head = page[page.index("<thead>"):page.index("</thead>")]
    for c in table_columns(result):
        assert f">{c}<span" in head
    r = next(r for r in result.layers if r.status == "ok" and r.alpha != round(r.alpha))
    assert f'<td class="num">{r.alpha:.4g}</td>' in body
    assert "<td class=\"num\">–</td>" in body  # NaN


def test_warnings_list_exactly_the_warned_and_not_ok_layers(result, page):
    section = page[page.index('<section id="warnings"'):page.index('<section id="model-figures"')]

    def listed(ul: str) -> list[str]:
        m = re.search(rf'<ul id="{ul}">(.*?)</ul>', section, re.DOTALL)
        return [html.unescape(n) for n in re.findall(r'<li data-layer="([^"]*)"', m.group(1))] if m else []

    warned = [r.name for r in result.layers if r.warning]
    not_ok = [r.name for r in result.layers if r.status != "ok"]
    assert warned and not_ok  # the model has both
    assert sorted(listed("warned")) == sorted(warned)
    assert sorted(listed("not-ok")) == sorted(not_ok)
    assert {"tiny", "bad"} <= set(not_ok)
    assert f"Layers with a warning ({len(warned)})" in section


def test_no_warnings_says_so():
    r = htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((300, 100))}, mp_fit=False)
    r = type(r)(tuple(row.__class__(**{**row.as_dict(), "warning": ""}) for row in r.layers), r.summary, r.source,
                r.options)
    text = render_report(r)
    assert "No layer has a warning." in text and "Every layer's status is ok." in text


def test_without_kept_spectra_says_so(bare_result):
    text = render_report(bare_result)
    note = text[text.index('id="no-spectra"'):]
    note = note[:note.index("</p>")]
    assert "keep_spectra=True" in note and "--report" in note
    assert 'id="layer-data-' not in text and 'class="open"' not in text
    assert json.loads(_json_blocks(text)["htsr-config"])["kept"] is False


def test_colours_are_htsr_plots_and_matplotlib_is_not_needed(page):
    from htsr.plot import role_color

    colours = json.loads(_json_blocks(page)["htsr-config"])["colours"]
    assert {"data", "fit", "xmin", "mp", "kind:dense", "kind:embedding", "phase:heavy-tailed"} <= set(colours)
    assert all(c == role_color(r) for r, c in colours.items())
    code = ("import sys; sys.modules['matplotlib'] = None; import numpy as np, htsr; from htsr.report import "
            "render_report; r = htsr.analyze({'a.weight': np.random.default_rng(0).standard_normal((200, 80))}, "
            "keep_spectra=True); assert 'layer-data-0' in render_report(r)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_title(result):
    """A title given heads the page (<title> and <h1>), the header's source still the source; without one, the
    title names the source."""
    page = render_report(result, title="my <model>")
    assert "<title>my &lt;model&gt;</title>" in page and "<h1>my &lt;model&gt;</h1>" in page
    assert f"<dt>source</dt><dd><code>{html.escape(result.source)}</code></dd>" in page
    default = f"htsr report: {html.escape(result.source)}"
    assert f"<title>{default}</title>" in render_report(result) and f"<h1>{default}</h1>" in render_report(result)


def test_write_report_is_atomic(result, tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    write_report(result, path, title="my <model>")  # the title given reaches the page
    assert path.read_text(encoding="utf-8") == render_report(result, title="my <model>")
    write_report(result, path)
    assert path.read_text(encoding="utf-8") == render_report(result)
    assert os.listdir(tmp_path) == ["report.html"]
    # a failure before the rename leaves the old file whole and no temporary file behind
    path.write_text("old", encoding="utf-8")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(HtsrError, match="disk full"):
        write_report(result, path)
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["report.html"]


# ---- in the browser -------------------------------------------------------------------------------------

CHROMIUM = find_chromium()
# the browser tests never skip silently: without a browser they fail, unless HTSR_SKIP_BROWSER=1 says that
# skipping is meant (scripts/setup.sh test installs Debian's chromium; HTSR_CHROMIUM names another binary)
needs_chromium = pytest.mark.skipif(CHROMIUM is None and os.environ.get("HTSR_SKIP_BROWSER") == "1",
                                    reason="HTSR_SKIP_BROWSER=1 and no chromium binary")


@pytest.fixture(scope="module", autouse=False)
def _chromium_present():
    if CHROMIUM is None:
        pytest.fail("no chromium or chrome binary on PATH: run scripts/setup.sh test (apt install chromium), set "
                    "HTSR_CHROMIUM to a binary, or HTSR_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)


@pytest.fixture(scope="module")
def browser(_chromium_present):
    b = Browser(CHROMIUM, width=1400, height=1000)
    try:
        b.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        b.send("Runtime.enable")
        b.send("Log.enable")
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def report_files(result, bare_result, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("report")
    write_report(result, d / "report.html")
    write_report(bare_result, d / "bare.html")
    return {"kept": d / "report.html", "bare": d / "bare.html"}


def _errors(b: Browser) -> list[dict]:
    """Console errors, uncaught exceptions and error log entries received so far (consumed)."""
    out = []
    for ev in b.events:
        m, p = ev["method"], ev.get("params", {})
        if (m == "Runtime.exceptionThrown" or (m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"))
                or (m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error")):
            out.append(ev)
    b.events.clear()
    return out


def _load(b: Browser, path: Path) -> None:
    b.events.clear()
    b.navigate(path.as_uri())
    assert _errors(b) == []


def _click(b: Browser, selector: str) -> None:
    """A real mouse click at the centre of the element (scrolled into view first)."""
    r = b.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
        e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
        return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()""")
    for kind in ("mousePressed", "mouseReleased"):
        b.send("Input.dispatchMouseEvent", type=kind, x=r["x"], y=r["y"], button="left", clickCount=1)


def _column(b: Browser, k: int) -> list[str]:
    return b.evaluate(f"Array.from(document.querySelectorAll('#layers tbody tr.layer'))"
                      f".map(r => r.cells[{k + 1}].textContent)")  # cell 0 holds the button


def _num(s: str) -> float:
    return math.nan if s == "–" else float(s)


def _rect(b: Browser, selector: str) -> dict[str, float]:
    return b.evaluate(f"""(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
        return {{x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}}; }})()""")


def _check_png(png: bytes, path: Path, min_colours: int = 4) -> np.ndarray:
    """Save the PNG (and a copy under SHOTS); assert it is not blank: several colours, non-white pixels."""
    path.write_bytes(png)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SHOTS) / path.name)
    imread = pytest.importorskip("matplotlib.image", reason="matplotlib decodes the screenshots").imread
    img = imread(io.BytesIO(png), format="png")[..., :3]
    assert img.size and float(img.std()) > 0
    rgb = (img.reshape(-1, 3) * 255).round().astype(np.uint32)
    assert np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]).size >= min_colours
    assert float((img < 0.9).any(axis=-1).mean()) > 0.01  # some ink
    return img


@needs_chromium
def test_browser_model_figures(browser, report_files, result, tmp_path):
    _load(browser, report_files["kept"])
    counts = browser.evaluate("Array.from(document.querySelectorAll('#model-figs svg'))"
                              ".map(s => s.querySelectorAll('path, rect, circle, line').length)")
    assert len(counts) == 4 and all(c > 5 for c in counts)
    # the points of alpha-by-layer (in the clipped plot area, not the legend): one per layer with a finite alpha
    points = browser.evaluate("document.querySelectorAll('#model-figs figure:first-child g[clip-path] circle').length")
    assert points == sum(math.isfinite(r.alpha) for r in result.layers)
    img = _check_png(browser.screenshot(clip=_rect(browser, "#model-figs svg")), tmp_path / "model_figure.png")
    assert float((img.min(axis=-1) < 0.5).mean()) > 0.002  # dark ink: axes text, points
    _check_png(browser.screenshot(full_page=True), tmp_path / "report_page.png")
    assert _errors(browser) == []


@needs_chromium
def test_browser_sorting(browser, report_files, result):
    _load(browser, report_files["kept"])
    cols = json.loads(_json_blocks(report_files["kept"].read_text(encoding="utf-8"))["htsr-config"])["table"]["columns"]
    k = cols.index("alpha")
    browser.evaluate("htsrReport.toggle(3); 1")  # an open layer's figures move with its row
    _click(browser, f'#layers th[data-col="{k}"]')
    vals = [_num(s) for s in _column(browser, k)]
    n = sum(math.isfinite(v) for v in vals)
    assert 0 < n < len(vals) and all(math.isnan(v) for v in vals[n:])  # NaN last
    assert vals[:n] == sorted(vals[:n])
    assert browser.evaluate(f"document.querySelector('#layers th[data-col=\"{k}\"]').getAttribute('aria-sort')") \
        == "ascending"
    assert browser.evaluate(f"document.querySelector('#layers th[data-col=\"{k}\"] .arrow').textContent") == "▲"
    assert browser.evaluate("(() => { const r = document.getElementById('layer-3');"
                            "return r.nextElementSibling.classList.contains('detail'); })()")
    _click(browser, f'#layers th[data-col="{k}"]')
    vals = [_num(s) for s in _column(browser, k)]
    assert vals[:n] == sorted(vals[:n], reverse=True) and all(math.isnan(v) for v in vals[n:])
    assert browser.evaluate(f"document.querySelector('#layers th[data-col=\"{k}\"] .arrow').textContent") == "▼"
    # a string column: alphabetical (digits by value), empty last
    j = cols.index("warning")
    _click(browser, f'#layers th[data-col="{j}"]')
    w = _column(browser, j)
    filled = [s for s in w if s]
    assert w == filled + [""] * (len(w) - len(filled)) and filled == sorted(filled)
    j = cols.index("name")
    _click(browser, f'#layers th[data-col="{j}"]')

    def natural(s: str) -> list:
        return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", s) if t]

    names = _column(browser, j)
    assert sorted(names) == sorted(r.name for r in result.layers)
    plain = [s for s in names if s[0].isalnum()]  # ICU and Python order punctuation differently
    assert plain == sorted(plain, key=natural)
    assert _errors(browser) == []


@needs_chromium
def test_browser_layer_figures_on_demand(browser, report_files, result, tmp_path):
    _load(browser, report_files["kept"])
    assert browser.evaluate("document.querySelectorAll('tr.detail').length") == 0  # nothing drawn before a click
    i = next(i for i, r in enumerate(result.layers) if r.status == "ok" and r.num_traps > 0)
    _click(browser, f"#layer-{i} td:nth-child(3)")
    counts = browser.evaluate(f"""Array.from(document.getElementById('layer-{i}').nextElementSibling
        .querySelectorAll('svg')).map(s => s.querySelectorAll('path, rect').length)""")
    assert len(counts) == 6 and all(c > 0 for c in counts)
    assert browser.evaluate("document.querySelectorAll('tr.detail svg').length") == 6  # only this layer's
    # the escaped name is drawn as text in its panels' titles
    j = next(j for j, r in enumerate(result.layers) if r.name == EVIL)
    browser.evaluate(f"htsrReport.toggle({j}); 1")
    title = browser.evaluate(f"document.getElementById('layer-{j}').nextElementSibling.querySelector('h3').textContent")
    assert title == EVIL
    assert browser.evaluate("typeof window.alerted") == "undefined"
    browser.evaluate(f"document.getElementById('layer-{i}').scrollIntoView({{block: 'start'}}); 1")
    _check_png(browser.screenshot(), tmp_path / "layer_figures.png")
    # a second click closes it
    _click(browser, f"#layer-{i} button.open")
    assert browser.evaluate(f"document.getElementById('layer-{i}').nextElementSibling.hidden") is True
    # a layer without eigenvalues says why
    k = next(k for k, r in enumerate(result.layers) if r.name == "bad")
    browser.evaluate(f"htsrReport.toggle({k}); 1")
    note = browser.evaluate(f"document.getElementById('layer-{k}').nextElementSibling.textContent")
    assert "no eigenvalues kept" in note
    assert _errors(browser) == []


@needs_chromium
def test_browser_report_without_spectra(browser, report_files, tmp_path):
    _load(browser, report_files["bare"])
    assert browser.evaluate("document.getElementById('no-spectra') !== null")
    assert browser.evaluate("document.querySelectorAll('#model-figs svg').length") == 4
    _click(browser, "#layer-0 td:nth-child(3)")
    assert browser.evaluate("document.querySelectorAll('tr.detail').length") == 0
    _click(browser, '#layers th[data-col="0"]')
    assert _column(browser, 0)[0] == "0"
    assert _errors(browser) == []


def test_undefined_summary_entries_say_why_as_the_cli_does():
    """With --no-mp-fit the report's Phases card showed '–' for each phase, with no reason (the CLI prints
    'n/a (--no-mp-fit)'); and without --bootstrap the plausibility share. Both now say why, in the CLI's words."""
    from htsr.cli import format_summary

    r = htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((300, 100))}, mp_fit=False)
    text, cli = render_report(r), format_summary(r)
    assert "phases: n/a (--no-mp-fit)" in cli and "n/a (--no-mp-fit)" in text
    assert "n/a (--bootstrap N)" in cli and "n/a (--bootstrap N)" in text
    # with a bootstrap too short for the warnings, the no-power-law count says so (it asked for --bootstrap N)
    r = htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((300, 100))}, bootstrap=20)
    text, cli = render_report(r), format_summary(r)
    assert "no-power-law n/a" in cli and "n/a (--bootstrap 20: fewer than 100 replicates)" in text
    assert "--bootstrap N" not in cli + text


@needs_chromium
def test_browser_panel_titles_fit_their_panels(browser, tmp_path):
    """A long layer name in a panel's bold title ran past the panel, cut mid-character ('…embeddings
    (512x38'): the clip estimated the width of normal-weight text. Each title is measured as drawn and
    ends in an ellipsis inside its panel."""
    name = "model.0.auto_model.embeddings.position_embeddings_with_a_rather_long_module_path.weight"
    r = htsr.analyze({name: np.random.default_rng(0).standard_normal((512, 384))}, keep_spectra=True)
    write_report(r, tmp_path / "long.html")
    _load(browser, tmp_path / "long.html")
    browser.evaluate("htsrReport.toggle(0); 1")
    over = browser.evaluate("""Array.from(document.querySelectorAll('svg')).flatMap(svg => {
        const t = svg.querySelector('text'); const b = t.getBBox();
        return b.x + b.width > svg.viewBox.baseVal.width + 0.5 ? [t.textContent] : []; })""")
    assert over == [], over
    assert _errors(browser) == []


@needs_chromium
def test_browser_count_axes_have_whole_number_ticks(browser, tmp_path):
    """The 'layers per phase' and 'distribution of alpha' axes of a model of a few layers counted 0, 0.5, 1,
    1.5 … layers (the matplotlib figures already ticked whole numbers only)."""
    rng = np.random.default_rng(4)
    write_report(htsr.analyze({f"l{i}.weight": rng.standard_t(3, (300, 100)) for i in range(2)}), tmp_path / "r.html")
    _load(browser, tmp_path / "r.html")
    ticks = browser.evaluate("""Array.from(document.querySelectorAll('#model-figs svg'))
        .filter(s => ['layers per phase', 'distribution of alpha'].includes(s.getAttribute('aria-label')))
        .map(s => Array.from(s.querySelectorAll('text[text-anchor="end"][dy=".32em"]')).map(t => t.textContent))""")
    assert len(ticks) == 2 and all(len(t) >= 2 for t in ticks)
    assert all(float(v) == int(float(v)) for t in ticks for v in t), ticks
    assert _errors(browser) == []


# ---- the renderer against known answers ---------------------------------------------------------------
# Each test draws a hand-made panel with the page's own renderer (window.htsrReport.drawPanel) and checks the
# SVG it drew against numbers worked out by hand from the renderer's rules: the plot area of a 480 x 290 panel
# is x in [64, 462] (x1 = 420 with a right axis), y in [30, 246] (SVG y grows downward); a linear domain is
# padded by 3% (x) / 5% (y) of its span, a log one by 2% of its span in decades; an axis through zero (hist,
# bar) keeps 0 as its lower end.

X0, X1, Y0, Y1 = 64, 462, 30, 246


def _series(kind, x, y, label="", role="data", labels=()):
    return {"kind": kind, "label": label, "role": role, "labels": list(labels), "x": list(x), "y": list(y)}


def _panel(*series, title="t", xlabel="x", ylabel="y", xlog=False, ylog=False, ylabel2="", note=""):
    return {"title": title, "xlabel": xlabel, "ylabel": ylabel, "xlog": xlog, "ylog": ylog, "note": note,
            "ylabel2": ylabel2, "series": list(series)}


def _map(v, a, b, r0, r1, log=False):
    """The renderer's data-to-pixel map over the (padded) domain [a, b] (log10 units when log)."""
    return r0 + ((math.log10(v) if log else v) - a) / (b - a) * (r1 - r0)


def _r1(v):
    return math.floor(v * 10 + 0.5) / 10  # JS Math.round(v * 10) / 10


def _draw(b, panel, W=480, H=290) -> dict:
    """Draw ``panel`` into a new element of the loaded report; return what was drawn, in SVG units."""
    return b.evaluate(f"""(() => {{
      const div = document.createElement('div'); document.body.appendChild(div);
      const svg = htsrReport.drawPanel({json.dumps(panel)}, div, {W}, {H});
      const A = (e, ...ks) => Object.fromEntries(ks.map(k => [k, e.getAttribute(k)]));
      const labels = svg.querySelector('g[font-size="11"]'), g = svg.querySelector('g[clip-path]');
      const ticks = anchor => Array.from(labels.querySelectorAll(`text[text-anchor="${{anchor}}"]`))
        .map(t => [t.textContent, +t.getAttribute('x'), +t.getAttribute('y')]);
      return {{
        xticks: ticks('middle'), yticks: ticks('end'), y2ticks: ticks('start'),
        order: Array.from(g.children).map(c => c.tagName),
        groups: Array.from(g.children).filter(c => c.tagName === 'g').map(c => ({{
          fill: c.getAttribute('fill'), opacity: c.getAttribute('fill-opacity'),
          rects: Array.from(c.querySelectorAll('rect')).map(r => A(r, 'x', 'y', 'width', 'height')),
          circles: Array.from(c.querySelectorAll('circle')).map(r => A(r, 'cx', 'cy')),
          lines: Array.from(c.querySelectorAll('line')).map(r => A(r, 'x1', 'x2', 'y1', 'y2'))}})),
        paths: Array.from(g.querySelectorAll(':scope > path')).map(p => [p.getAttribute('d'), p.getAttribute('stroke')]),
        lines: Array.from(g.querySelectorAll(':scope > line')).map(l => A(l, 'x1', 'x2', 'y1', 'y2', 'stroke')),
        bars: Array.from(g.querySelectorAll(':scope > rect')).map(r => Object.assign(
          A(r, 'x', 'y', 'width', 'height', 'fill'), {{title: r.textContent}})),
        bartexts: Array.from(g.querySelectorAll(':scope > text')).map(t => [t.textContent, +t.getAttribute('x')]),
        legend: Array.from(svg.querySelectorAll(':scope > g:not([stroke]):not([font-size]):not([clip-path])'))
          .map(l => ({{text: l.querySelector('text').textContent, swatch: l.firstChild.tagName,
                       colour: l.firstChild.getAttribute('fill') || l.firstChild.getAttribute('stroke')}})),
        title: svg.querySelector(':scope > text').textContent,
      }};
    }})()""")


def _close(a, b, tol=0.11):
    return all(abs(float(u) - float(v)) <= tol for u, v in zip(a, b, strict=True))


def _colours(b) -> dict:
    return b.evaluate("JSON.parse(document.getElementById('htsr-config').textContent).colours")


@needs_chromium
def test_browser_linear_axes_put_ticks_and_points_at_their_values(browser, report_files):
    """y grows upward on screen; padding widens both ends; tick steps 1-2-5; a point is drawn at (x, y)."""
    _load(browser, report_files["kept"])
    d = _draw(browser, _panel(_series("points", [0, 5, 10], [2, 4, 10], "pts")))
    xa, xb = -0.3, 10.3  # [0, 10] padded by 3%
    ya, yb = 1.6, 10.4   # [2, 10] padded by 5%
    assert [t[0] for t in d["xticks"]] == ["0", "2", "4", "6", "8", "10"]
    assert _close([t[1] for t in d["xticks"]], [_map(v, xa, xb, X0, X1) for v in (0, 2, 4, 6, 8, 10)], 0.01)
    assert [t[0] for t in d["yticks"]] == ["2", "4", "6", "8", "10"]
    assert _close([t[2] for t in d["yticks"]], [_map(v, ya, yb, Y1, Y0) for v in (2, 4, 6, 8, 10)], 0.01)
    (pts,) = d["groups"]
    assert _close([c["cx"] for c in pts["circles"]], [_r1(_map(v, xa, xb, X0, X1)) for v in (0, 5, 10)])
    assert _close([c["cy"] for c in pts["circles"]], [_r1(_map(v, ya, yb, Y1, Y0)) for v in (2, 4, 10)])
    assert float(pts["circles"][2]["cy"]) < float(pts["circles"][0]["cy"])  # the larger value higher up
    assert _errors(browser) == []


@needs_chromium
def test_browser_a_tiny_or_huge_span_is_drawn_across_the_axis(browser, report_files):
    """A delta of one float32 step has eigenvalues ~1e-14, and weights scaled by 1e9 densities ~1e-19: the axes had
    taken such spans for none (an absolute 1e-12), put the points at one place (x in -0.4 … 0.4) or the y range at
    0 … 1, and the panel looked empty. Spans are relative now: the first and last points lie at the axis's ends
    (inside its padding), whatever their scale; equal values still get a span around them."""
    _load(browser, report_files["kept"])
    for scale in (1e-14, 1e-19, 1e9):  # (from 0, as an ESD's histogram and a density run)
        d = _draw(browser, _panel(_series("points", [scale * v for v in (0, 1, 2)], [scale * v for v in (2, 0, 1)],
                                          "pts")))
        (pts,) = d["groups"]
        cx = [float(c["cx"]) for c in pts["circles"]]
        assert cx[0] < X0 + 0.1 * (X1 - X0) and cx[2] > X1 - 0.1 * (X1 - X0), (scale, cx)
        cy = [float(c["cy"]) for c in pts["circles"]]
        assert max(cy) - min(cy) > 0.8 * (Y1 - Y0), (scale, cy)
    d = _draw(browser, _panel(_series("points", [5e-14] * 3, [1, 2, 3], "same")))
    (pts,) = d["groups"]
    assert {round(float(c["cx"])) for c in pts["circles"]} == {round((X0 + X1) / 2)}  # (centred in its own span)
    assert _errors(browser) == []


@needs_chromium
def test_browser_log_axes_ticks_labels_and_gaps(browser, report_files):
    """A log axis maps log10; decade ticks read 1, 10, 10², 10³ (1-2-5 within two decades; 10⁻² below);
    a value <= 0 on it is left out of the domain; a line breaks at a NaN or a value it cannot place."""
    _load(browser, report_files["kept"])
    d = _draw(browser, _panel(_series("line", [0, 1, 10, 100, 1000], [5, 1, None, 3, 4], "fit", "fit"), xlog=True))
    xa, xb = -0.06, 3.06  # decades [0, 3] padded by 2%
    ya, yb = 0.8, 5.2
    assert [t[0] for t in d["xticks"]] == ["1", "10", "10²", "10³"]
    assert _close([t[1] for t in d["xticks"]], [_map(v, xa, xb, X0, X1, True) for v in (1, 10, 100, 1000)], 0.01)
    X = lambda v: _r1(_map(v, xa, xb, X0, X1, True))  # noqa: E731
    Y = lambda v: _r1(_map(v, ya, yb, Y1, Y0))  # noqa: E731
    (path, stroke), = d["paths"]
    nums = [float(v) for v in re.findall(r"-?[\d.]+", path)]
    assert re.findall(r"[ML]", path) == ["M", "M", "L"], path  # x = 0: not drawn; x = 10: NaN; then a new segment
    assert _close(nums, [X(1), Y(1), X(100), Y(3), X(1000), Y(4)])
    # within two decades, 1-2-5
    d = _draw(browser, _panel(_series("points", [1, 20], [1, 2], "p"), xlog=True))
    assert [t[0] for t in d["xticks"]] == ["1", "2", "5", "10", "20"]
    # a log y axis: negative decades, bars standing on the bottom of the axes
    d = _draw(browser, _panel(_series("hist", [1, 10, 100], [0.01, 1], "ESD"), xlog=True, ylog=True))
    assert [t[0] for t in d["yticks"]] == ["10⁻²", "0.1", "1"]
    ya, yb = -2.1, 0.1
    rects = d["groups"][0]["rects"]
    assert _close([float(r["y"]) + float(r["height"]) for r in rects], [Y1, Y1])
    assert _close([r["y"] for r in rects], [_r1(_map(v, ya, yb, Y1, Y0, True)) for v in (0.01, 1)])
    assert _errors(browser) == []


@needs_chromium
def test_browser_histograms_lines_markers_and_legend(browser, report_files):
    """Bars span their bins from 0 up; the second histogram is light with an outline; markers extend the x
    domain; series are drawn histograms first, markers next, lines last; each legend swatch has its series'
    colour; tick labels keep their digits."""
    _load(browser, report_files["kept"])
    col = _colours(browser)
    d = _draw(browser, _panel(
        _series("hist", [0, 1, 2, 3], [0.1, 0.2, 0.3], "ESD", "data"),
        _series("hist", [0, 1, 2, 3], [0.3, 0.2, 0.1], "shuffled", "shuffled"),
        _series("line", [0.5, 2.5], [0.25, 0.05], "fit", "fit"),
        _series("vline", [5], [], "x_min", "xmin"),
        _series("hline", [], [0.2], "band", "band")))
    xa, xb = -0.15, 5.15  # [0, 5] (the x_min marker included) padded by 3%
    ya, yb = 0.0, 0.315   # [0, 0.3]: 0 kept, the top padded by 5%
    X = lambda v: _r1(_map(v, xa, xb, X0, X1))  # noqa: E731
    Y = lambda v: _r1(_map(v, ya, yb, Y1, Y0))  # noqa: E731
    assert d["order"] == ["g", "g", "path", "line", "line", "path"]
    first, second = d["groups"]
    assert (first["fill"], first["opacity"], second["fill"], second["opacity"]) == \
        (col["data"], "0.5", col["shuffled"], "0.15")
    assert len(first["rects"]) == 3
    for r, lo, hi, h in zip(first["rects"], (0, 1, 2), (1, 2, 3), (0.1, 0.2, 0.3)):
        assert _close([r["x"], r["width"], r["y"], r["height"]], [X(lo), X(hi) - X(lo), Y(h), _r1(Y1 - Y(h))]), r
    assert [t[0] for t in d["yticks"]] == ["0", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3"]
    vline, hline = d["lines"]
    assert _close([vline["x1"], vline["x2"], vline["y1"], vline["y2"]], [X(5), X(5), Y0, Y1])
    assert _close([hline["x1"], hline["x2"], hline["y1"], hline["y2"]], [X0, X1, Y(0.2), Y(0.2)])
    assert [(l["text"], l["swatch"], l["colour"]) for l in d["legend"]] == [
        ("ESD", "rect", col["data"]), ("shuffled", "rect", col["shuffled"]), ("fit", "line", col["fit"]),
        ("x_min", "line", col["xmin"]), ("band", "line", col["band"])]
    assert _errors(browser) == []


@needs_chromium
def test_browser_a_right_axis_series_uses_its_own_scale(browser, report_files):
    _load(browser, report_files["kept"])
    d = _draw(browser, _panel(_series("line", [1, 2, 3], [0, 0.5, 1], "D", "data"),
                              _series("line", [1, 2, 3], [100, 150, 200], "alpha", "fit:right"), ylabel2="alpha"))
    x1 = 480 - 60
    xa, xb = 0.94, 3.06
    ya, yb = 95, 205  # [100, 200] padded by 5%
    assert [t[0] for t in d["y2ticks"]] == ["100", "120", "140", "160", "180", "200"]
    right = [p for p, stroke in d["paths"] if stroke == _colours(browser)["fit"]][0]
    nums = [float(v) for v in re.findall(r"-?[\d.]+", right)]
    assert _close(nums, [v for x, y in ((1, 100), (2, 150), (3, 200))
                         for v in (_r1(_map(x, xa, xb, X0, x1)), _r1(_map(y, ya, yb, Y1, Y0)))])
    assert "alpha (right axis)" in [l["text"] for l in d["legend"]]
    assert _errors(browser) == []


@needs_chromium
def test_browser_bars_sit_in_their_category_and_a_rug_rises_from_the_axis(browser, report_files):
    _load(browser, report_files["kept"])
    col = _colours(browser)
    cats = ["heavy-tailed", "random-like", "bulk+spikes"]
    d = _draw(browser, _panel(_series("bar", [0, 1, 2], [3, 0, 1], "layers", "data", cats), ylabel="layers"))
    band = (X1 - X0) / 3
    ya, yb = 0, 3.15
    for i, (r, c, h) in enumerate(zip(d["bars"], cats, (3, 0, 1))):
        centre = X0 + (i + 0.5) * band
        assert _close([r["x"], r["width"], r["y"]], [_r1(centre - 0.35 * band), _r1(0.7 * band),
                                                     _r1(_map(h, ya, yb, Y1, Y0))]), r
        assert (r["fill"], r["title"]) == (col["phase:" + c], f"{c}: {h}")
    assert [t[0] for t in d["xticks"]] == cats
    assert _close([t[1] for t in d["xticks"]], [X0 + (i + 0.5) * band for i in range(3)], 0.01)
    # points with no y: a rug of short ticks standing on the x axis
    d = _draw(browser, _panel(_series("line", [1, 4], [1, 2], "l"), _series("points", [2, 3], [None, None], "traps", "trap")))
    rug = d["groups"][0]["lines"]
    assert len(rug) == 2 and all((float(l["y1"]), float(l["y2"])) == (Y1, Y1 - 9) for l in rug)
    assert _errors(browser) == []


@needs_chromium
def test_browser_panel_text_is_drawn_as_text_never_markup(browser, report_files):
    _load(browser, report_files["kept"])
    evil = '<img src=x onerror="window.alerted=1">a<b'
    d = _draw(browser, _panel(_series("line", [1, 2], [1, 2], evil, "fit"), title=evil, xlabel=evil))
    assert d["title"].startswith("<img") and d["legend"][0]["text"] == evil
    time.sleep(0.3)
    assert browser.evaluate("typeof window.alerted") == "undefined"
    assert _errors(browser) == []


@needs_chromium
def test_browser_a_click_opens_the_clicked_layer_after_sorting_and_again_after_closing(browser, report_files, result):
    _load(browser, report_files["kept"])
    cols = json.loads(_json_blocks(report_files["kept"].read_text(encoding="utf-8"))["htsr-config"])["table"]["columns"]
    _click(browser, f'#layers th[data-col="{cols.index("alpha")}"]')
    order = browser.evaluate("Array.from(document.querySelectorAll('#layers tbody tr.layer')).map(r => +r.dataset.i)")
    pos = next(p for p, i in enumerate(order) if p != i)  # a row the sort moved
    i = order[pos]
    for shown in (True, False, True):  # open, close, open again
        _click(browser, f"#layer-{i} td:nth-child(3)")
        assert browser.evaluate(f"document.getElementById('layer-{i}').nextElementSibling.hidden") is (not shown)
    assert browser.evaluate("document.querySelectorAll('tr.detail').length") == 1
    assert browser.evaluate(f"document.getElementById('layer-{i}').nextElementSibling.querySelector('h3').textContent") \
        == result.layers[i].name
    assert _errors(browser) == []


@needs_chromium
def test_browser_a_link_to_a_layer_shows_it_even_when_open(browser, report_files):
    _load(browser, report_files["kept"])
    i = browser.evaluate("+document.querySelector('a.goto').dataset.i")
    browser.evaluate(f"htsrReport.toggle({i}); 1")
    _click(browser, f'a.goto[data-i="{i}"]')
    assert browser.evaluate(f"document.getElementById('layer-{i}').nextElementSibling.hidden") is False
    assert _errors(browser) == []


@needs_chromium
def test_browser_equal_values_keep_model_order_both_ways(browser, report_files):
    _load(browser, report_files["kept"])
    cols = json.loads(_json_blocks(report_files["kept"].read_text(encoding="utf-8"))["htsr-config"])["table"]["columns"]
    k = cols.index("kind")
    for _ in range(2):  # ascending, then descending
        _click(browser, f'#layers th[data-col="{k}"]')
        rows = browser.evaluate(f"Array.from(document.querySelectorAll('#layers tbody tr.layer'))"
                                f".map(r => [r.cells[{k + 1}].textContent, +r.dataset.i])")
        groups = {}
        for v, i in rows:
            groups.setdefault(v, []).append(i)
        assert any(len(g) > 1 for g in groups.values())
        assert all(g == sorted(g) for g in groups.values()), groups
    assert _errors(browser) == []


@needs_chromium
def test_browser_an_open_layers_figures_follow_a_resize(browser, report_files):
    _load(browser, report_files["kept"])
    browser.evaluate("htsrReport.toggle(0); 1")
    try:
        browser.send("Emulation.setDeviceMetricsOverride", width=900, height=1000, deviceScaleFactor=1, mobile=False)
        browser.evaluate("window.dispatchEvent(new Event('resize')); 1")
        want, got = browser.evaluate("""[Math.max(document.getElementById('table-wrap').clientWidth - 16, 300),
            parseFloat(document.querySelector('tr.detail .layer-figs').style.width)]""")
        assert got == want
    finally:
        browser.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
    assert _errors(browser) == []


def test_a_layer_whose_diagnostics_failed_is_listed_as_not_ok():
    page = render_report(result_of([layer_row("good"), layer_row("odd.layer", status="ok; diagnostics failed: localization")]))
    not_ok = page.split('<ul id="not-ok">', 1)[1].split("</ul>", 1)[0]
    assert 'data-layer="odd.layer"' in not_ok and 'data-layer="good"' not in not_ok
    assert "Layers whose status is not ok (1)" in page


def test_an_infinite_value_does_not_stop_the_report():
    page = render_report(result_of([layer_row("a", lambda_max=math.inf, alpha=2.5)]))
    assert "<td class=\"num\">∞</td>" in page
    cfg = page.split('id="htsr-config">', 1)[1].split("</script>", 1)[0]
    json.loads(cfg)  # strict JSON: no Infinity


def test_panel_numbers_embedded_in_the_report_are_strict_json():
    import numpy as np
    from htsr.figures import Panel, Series
    from htsr.report import _panel_json

    p = Panel("t", "x", "y", (Series("line", np.array([1.0, np.inf, 3.0]), np.array([np.nan, -np.inf, 2.0]), "a", "data"),))
    s = json.loads(_panel_json(p))["series"][0]
    assert s["x"] == [1.0, None, 3.0] and s["y"] == [None, None, 2.0]


def test_quotes_in_a_layer_name_are_escaped_in_attributes():
    """A name's quotes are escaped in the data-layer attribute of both lists of the warnings section (the
    not-ok list's had not been tried: its layer here has no warning)."""
    name = 'enc."x" onmouseover="alert(1)'
    page = render_report(result_of([layer_row(name, warning="over-trained", alpha=1.5),
                                    layer_row(name + ".b", status="failed: NaN in the weights", alpha=math.nan)]))
    warned = page.split('<ul id="warned">', 1)[1].split("</ul>", 1)[0]
    not_ok = page.split('<ul id="not-ok">', 1)[1].split("</ul>", 1)[0]
    assert 'data-layer="enc.&quot;x&quot; onmouseover=&quot;alert(1)"' in warned
    assert 'data-layer="enc.&quot;x&quot; onmouseover=&quot;alert(1).b"' in not_ok
    assert 'onmouseover="alert(1)' not in page


def test_control_characters_and_bidi_overrides_in_names_are_shown_as_escapes():
    """A layer name holding U+202E (right-to-left override) or a C1 control: shown as its escape, as the printed
    table shows it, in the HTML and in the JSON the figures are drawn from (written raw, the override had reversed
    the warning line after it: 'evil[519.7 ,19.3] 107.5 = α modl', h44)."""
    name = "evil\u202eldom\x9b.x"
    rng = np.random.default_rng(0)
    r = htsr.analyze({f"{name}.weight": rng.standard_normal((120, 80))}, keep_spectra=True)
    page = render_report(r)
    assert "\u202e" not in page and "\x9b" not in page
    assert "evil\\u202eldom\\x9b.x" in page  # (the escapes' backslashes, as text; JSON doubles them again)


def test_the_summary_card_counts_not_fitted_and_skipped_apart():
    r = result_of([layer_row("a"), layer_row("b", status="not_fitted: 4 eigenvalues", alpha=math.nan),
                 layer_row("c", status="skipped: over max_evals", alpha=math.nan), layer_row("d", status="skipped: unchanged", alpha=math.nan)])
    page = render_report(r)
    assert "<dt>not fitted</dt><dd>1</dd>" in page and "<dt>skipped</dt><dd>2</dd>" in page


def test_the_table_puts_sigma_after_alpha_and_the_js_distance_only_with_randomize(result):
    """The report's table: sigma beside alpha; rand_js_distance (from the shuffled matrices) only when the run
    randomised, as it is NaN everywhere otherwise."""
    def columns(r):
        return json.loads(_json_blocks(render_report(r))["htsr-config"])["table"]["columns"]

    cols = columns(result)
    assert cols[0] == "#" and cols.index("sigma") == cols.index("alpha") + 1
    assert "rand_js_distance" in cols
    plain = columns(htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((300, 100))}))
    assert "rand_js_distance" not in plain and plain.index("sigma") == plain.index("alpha") + 1
    # the columns the report adds to the CLI's table close it, each once
    assert cols[-4:] == ["lambda_max", "entropy", "mp_softrank", "rand_js_distance"]
    assert plain[-3:] == ["lambda_max", "entropy", "mp_softrank"] and len(set(cols)) == len(cols)


def test_the_header_leaves_out_options_that_cannot_change_the_results():
    """workers and progress change how a run goes, not its numbers: not listed among the options, even when
    not at their defaults; an option that changes the numbers is."""
    r = htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((300, 100))}, workers=2, progress=False,
                     min_evals=20)
    page = render_report(r)
    header = page[page.index("<header>"):page.index("</header>")]
    assert "min_evals=20" in header and "workers=" not in header and "progress=" not in header
    # (analyze's result does not record them: a result whose options do, built by hand, has them left out too)
    page = render_report(result_of([layer_row("a")], workers=2, progress=True, keep_spectra=True, min_evals=20))
    header = page[page.index("<header>"):page.index("</header>")]
    assert "<dt>options</dt><dd><code>min_evals=20</code></dd>" in header


def test_the_phases_card_lists_every_phase_at_its_count_none_included():
    """Every phase has its entry in the Phases card at its own count, a phase no layer is in at 0 (as the
    CLI's summary lists it): a phase left out would read as one not assessed."""
    rows = [layer_row("a", phase="heavy-tailed"), layer_row("b", phase="heavy-tailed"), layer_row("c", phase="random-like"),
            layer_row("d", phase="")]
    card = render_report(result_of(rows)).split("<h3>Phases</h3>", 1)[1].split("</div>", 1)[0]
    want = {"random-like": 1, "bleeding-out": 0, "bulk+spikes": 0, "bulk-decay": 0, "heavy-tailed": 2, "rank-collapse": 0}
    assert re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", card) == [(p, str(n)) for p, n in want.items()]


def test_the_phases_card_counts_layers_with_traps_only_with_randomize(result):
    """With randomize the Phases card has the number of layers with correlation traps; without, it has no
    such entry (there is nothing to count)."""
    card = render_report(result).split("<h3>Phases</h3>", 1)[1].split("</div>", 1)[0]
    assert f"<dt>layers with correlation traps</dt><dd>{result.summary.num_with_traps}</dd>" in card
    plain = htsr.analyze({"a.weight": np.random.default_rng(0).standard_normal((300, 100))})
    assert "correlation traps" not in render_report(plain)


def test_warned_layers_are_listed_by_warning_then_in_model_order():
    """over-trained first, then under-trained, no-power-law, uncertain; within each, the model's order."""
    rows = [layer_row("u1", warning="uncertain"), layer_row("o1", warning="over-trained", alpha=1.5),
            layer_row("n1", warning="no-power-law"), layer_row("un1", warning="under-trained", alpha=7.0),
            layer_row("o2", warning="over-trained", alpha=1.6), layer_row("plain"), layer_row("new", warning="newer")]
    page = render_report(result_of([rows[-1], *rows[:-1]]))  # a warning htsr does not know (a newer run's): last
    warned = page.split('<ul id="warned">', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r'<li data-layer="([^"]*)"', warned) == ["o1", "o2", "un1", "n1", "u1", "new"]
    # each links to its row of the table (its place in the model), not its place in this list
    assert re.findall(r'<a href="#layer-(\d+)" class="goto" data-i="(\d+)">([^<]*)</a>', warned) == [
        ("2", "2", "o1"), ("5", "5", "o2"), ("4", "4", "un1"), ("3", "3", "n1"), ("1", "1", "u1"), ("0", "0", "new")]


def test_trap_weights_show_two_locations_and_the_status_always_has_its_tooltip():
    """A cell of two trap locations is shown whole; of three or more, the first two and an ellipsis, all of them in
    its tooltip. A status cell always carries its text as a tooltip (it is cut by the column's width)."""
    two, three = "(1, 2) 0.5; (3, 4) 0.4", "(1, 2) 0.5; (3, 4) 0.4; (5, 6) 0.3"
    page = render_report(result_of([layer_row("a", trap_weights=two, num_traps=2.0),
                                    layer_row("b", trap_weights=three, num_traps=3.0)], randomize=True))
    assert f"<td>{html.escape(two)}</td>" in page
    assert f'<td title="{html.escape(three)}">{html.escape("(1, 2) 0.5; (3, 4) 0.4; …")}</td>' in page
    assert '<td title="ok">ok</td>' in page
    # a warning cell carries its warning's class (its colour), an empty one none
    page = render_report(result_of([layer_row("a", warning="over-trained", alpha=1.5), layer_row("b")]))
    assert '<td class="w-over-trained">over-trained</td>' in page and '<td class="w-"' not in page


def test_a_not_ok_layers_badge_is_the_status_word_before_any_detail():
    """'ok; diagnostics failed: …' is badged 'ok' (its fit stands), 'failed: …' 'failed'."""
    page = render_report(result_of([layer_row("a", status="ok; diagnostics failed: localization"),
                                    layer_row("b", status="failed: NaN in the weights", alpha=math.nan)]))
    not_ok = page.split('<ul id="not-ok">', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r'<span class="badge s-([^"]*)">([^<]*)</span>', not_ok) == [("ok", "ok"), ("failed", "failed")]


# ------------------------------------------------------------------ mutation round 22 (2026-12-06)
def test_a_status_is_escaped_in_the_not_ok_list():
    """A status carries free text (an exception message, a tensor name): escaped in the warnings section as in the
    table."""
    status = "failed: tensor <img src=x onerror=alert(1)> has NaN"
    page = render_report(result_of([layer_row("a", status=status, alpha=math.nan)]))
    assert "<img src=x" not in page and html.escape(status) in page


def test_the_summary_cards_show_each_count_at_its_own_value():
    """layers / fitted / not fitted / skipped / failed, and the warning counts, each at its own number."""
    rows = [layer_row("a", warning="over-trained", alpha=1.5), layer_row("b", warning="over-trained", alpha=1.6),
            layer_row("c", warning="uncertain"), layer_row("d", status="failed: NaN in the weights", alpha=math.nan),
            layer_row("e", warning="under-trained", alpha=7.0)]
    page = render_report(result_of(rows))
    assert "<dt>layers</dt><dd>5</dd><dt>fitted</dt><dd>4</dd>" in page and "<dt>failed</dt><dd>1</dd>" in page
    assert "<dt>over-trained</dt><dd>2</dd>" in page and "<dt>uncertain</dt><dd>1</dd>" in page
    assert "<dt>under-trained</dt><dd>1</dd>" in page


def test_the_means_card_lists_every_summary_mean_even_when_undefined():
    """One fixed schema: every mean of the summary has its entry, NaN shown as 'n/a', as the CLI's summary says it
    and as the entries above it say theirs (an en dash had stood there)."""
    r = result_of([layer_row("a", alpha=math.nan, status="not_fitted: 4 eigenvalues")])
    card = render_report(r).split("<h3>Means over", 1)[1].split("</div>", 1)[0]
    assert any(not math.isfinite(v) for v in r.summary.means.values())
    for k in r.summary.means:
        assert f"<dt>{html.escape(k)}</dt>" in card
    assert "<dd>n/a</dd>" in card and "<dd>–</dd>" not in card


def test_a_warned_layers_interval_is_shown_only_when_both_ends_are_finite():
    """'α = 3 [2, 4]' with both ends; no half interval '[2, –]' when one end is undefined."""
    page = render_report(result_of([layer_row("a", warning="uncertain", bayes_alpha_lo=2.0, bayes_alpha_hi=4.0),
                                    layer_row("b", warning="uncertain", bayes_alpha_lo=2.0, bayes_alpha_hi=math.nan)]))
    warned = page.split('<ul id="warned">', 1)[1].split("</ul>", 1)[0]
    assert "α = 3 [2, 4]" in warned
    b = warned.split('data-layer="b"', 1)[1].split("</li>", 1)[0]
    assert "[" not in b and "α = 3" in b
    assert "p =" not in warned  # no bootstrap p-value: none shown (not 'p = –')


def test_a_status_tooltip_in_the_table_is_escaped():
    """The status cell's title attribute holds the status text: quotes and markup escaped."""
    status = 'failed: tensor "x" onmouseover="alert(1)" <b>'
    page = render_report(result_of([layer_row("a", status=status, alpha=math.nan)]))
    assert 'onmouseover="alert(1)"' not in page
    assert f'<td title="{html.escape(status)}">{html.escape(status)}</td>' in page


def test_a_negative_infinity_is_shown_as_minus_infinity():
    """−∞ is shown as −∞ in the table, not as ∞."""
    page = render_report(result_of([layer_row("a", lambda_max=math.inf, log_norm=-math.inf)]))
    assert '<td class="num">∞</td>' in page and '<td class="num">−∞</td>' in page


def test_the_model_figures_are_by_kind_then_by_phase_with_a_colour_for_no_phase():
    """The second model figure groups by phase (the first by kind), and the config has the colour of
    'phase:no phase' that htsr.plot uses. Each group's points carry their layers' names and places, and the
    phase counts their categories (the renderer's tooltips and bar labels: without them the bars read 0, 1,
    2 … in one colour). The first figure had only been checked to hold one point per layer."""
    import json

    from htsr.figures import role_color
    page = render_report(result_of([layer_row("a", alpha=2.5, phase="heavy-tailed"), layer_row("b", alpha=3.5, phase=""),
                                    layer_row("c", alpha=4.0, kind="embedding", phase="random-like")]))
    cfg = json.loads(page.split('id="htsr-config">', 1)[1].split("</script>", 1)[0])
    by_phase = cfg["model_panels"][1]
    assert by_phase["title"] == "alpha per layer, by phase"
    assert sorted(s["role"] for s in by_phase["series"] if s["kind"] == "points") == ["phase:heavy-tailed",
                                                                                        "phase:no phase",
                                                                                        "phase:random-like"]
    assert cfg["colours"]["phase:no phase"] == role_color("phase:no phase")

    def points(panel):  # role: (names, places in the model, alphas)
        return {s["role"]: (s["labels"], s["x"], s["y"]) for s in panel["series"] if s["kind"] == "points"}

    by_kind = cfg["model_panels"][0]
    assert by_kind["title"] == "alpha per layer, by kind"
    assert points(by_kind) == {"kind:dense": (["a", "b"], [0, 1], [2.5, 3.5]), "kind:embedding": (["c"], [2], [4.0])}
    assert points(by_phase) == {"phase:heavy-tailed": (["a"], [0], [2.5]), "phase:no phase": (["b"], [1], [3.5]),
                                "phase:random-like": (["c"], [2], [4.0])}
    (bar,) = cfg["model_panels"][3]["series"]
    # every phase in htsr's order, then 'no phase' (one layer has none), each at its count
    assert bar["labels"] == ["random-like", "bleeding-out", "bulk+spikes", "bulk-decay", "heavy-tailed",
                             "rank-collapse", "no phase"]
    assert bar["y"] == [1, 0, 0, 0, 1, 0, 1]


def test_a_warned_layers_p_value_is_shown_as_the_table_shows_it():
    """The warned layer's goodness-of-fit p-value in the text as in the table (all its digits, not cut)."""
    page = render_report(result_of([layer_row("a", warning="no-power-law", num_boot=200.0, boot_alpha_lo=2.0,
                                              boot_alpha_hi=4.0, pl_pvalue=0.01234)]))
    warned = page.split('<ul id="warned">', 1)[1].split("</ul>", 1)[0]
    assert f"p = {_fmt(0.01234)}" in warned and _fmt(0.01234) == "0.01234"
    # the interval beside it is the bootstrap's, which the warning used, not the Bayesian one
    page = render_report(result_of([layer_row("a", warning="no-power-law", num_boot=200.0, boot_alpha_lo=2.0,
                                              boot_alpha_hi=4.0, pl_pvalue=0.01234, bayes_alpha_lo=2.5,
                                              bayes_alpha_hi=3.5)]))
    assert "α = 3 [2, 4], p = 0.01234" in page


# ------------------------------------------------------------------ mutation round 41 (2026-12-06)
def test_an_empty_result_says_it_keeps_no_figures():
    """A result with no layers has nothing to click: the table says per-layer figures are not available, and
    the config says so, rather than inviting a click on a row."""
    page = render_report(result_of([]))
    assert 'id="no-spectra"' in page and "click a row" not in page
    assert json.loads(_json_blocks(page)["htsr-config"])["kept"] is False


def test_the_number_column_embedded_for_sorting_is_each_rows_index():
    """The '#' column's values in the config (what sorting by # compares) are the rows' indices 0, 1, 2 as the
    cells show, so sorting by # restores the model's order."""
    page = render_report(result_of([layer_row("a"), layer_row("b"), layer_row("c")]))
    table = json.loads(_json_blocks(page)["htsr-config"])["table"]
    assert [row[table["columns"].index("#")] for row in table["values"]] == [0, 1, 2]
    assert table["numeric"][table["columns"].index("#")] is True


def test_panel_numbers_keep_the_range_of_a_double():
    """Panel numbers beyond float32's range (1e40, 1e-50: a spectrum of huge or tiny weights) are embedded
    as the numbers they are, not as null (inf in float32) or 0."""
    from htsr.figures import Panel, Series

    p = Panel("t", "x", "y", (Series("line", np.array([1e40, 1e-50]), np.array([-3e45, 2.0]), "a", "data"),))
    s = json.loads(_panel_json(p))["series"][0]
    # %.5g keeps these exactly (5 significant digits are enough for 1, 3 and 2)
    assert s["x"] == [1e40, 1e-50] and s["y"] == [-3e45, 2.0]


def test_a_layer_without_eigenvalues_says_its_status(result, page):
    """The figures of a layer with no eigenvalues kept say why: its status ('failed: …' for the NaN layer)."""
    i = next(i for i, r in enumerate(result.layers) if r.name == "bad")
    assert result.spectra[i] is None and result.layers[i].status.startswith("failed")
    data = json.loads(_json_blocks(page)[f"layer-data-{i}"])
    assert data == {"name": "bad", "panels": [],
                    "note": f"no eigenvalues kept for this layer ({result.layers[i].status})"}


@pytest.mark.parametrize("error", [ValueError("no <ticks> here"), IndexError("index 7 is out of bounds"),
                                   ZeroDivisionError("float division by zero")])
def test_a_figure_that_fails_becomes_a_note_naming_the_error(monkeypatch, error):
    """A bug in one layer's figures costs that layer its panels, not the report: its block says which error
    (class and message) and the other layers keep theirs, whatever the error's class (only a ValueError had
    been tried: an IndexError or a division by zero in a figure must not cost the report either)."""
    import htsr.report as report

    rng = np.random.default_rng(0)
    r = htsr.analyze({"a.weight": rng.standard_normal((200, 80)), "b.weight": rng.standard_normal((200, 80))},
                     keep_spectra=True)
    real = report.layer_panels

    def flaky(row, sp):
        if row.name == "b":
            raise error
        return real(row, sp)

    monkeypatch.setattr(report, "layer_panels", flaky)
    blocks = _json_blocks(render_report(r))
    assert json.loads(blocks["layer-data-1"]) == {"name": "b", "panels": [],
                                                  "note": f"figures failed: {type(error).__name__}: {error}"}
    assert len(json.loads(blocks["layer-data-0"])["panels"]) == 6


def test_a_kind_htsr_does_not_list_has_its_colour_in_the_config():
    """A row of a kind outside LAYER_KINDS (a run read back from a newer htsr) gets htsr.plot's colour for it
    in the config (the renderer falls back to grey for a role without one)."""
    from htsr.figures import role_color

    page = render_report(result_of([layer_row("a", kind="moe"), layer_row("b")]))
    colours = json.loads(_json_blocks(page)["htsr-config"])["colours"]
    assert colours["kind:moe"] == role_color("kind:moe") != "#7f7f7f"


def test_the_header_lists_options_at_their_values_or_says_all_are_defaults():
    """No option changed: 'all at their defaults'. Otherwise each changed option by repr (a string quoted, so
    '3' and 3 differ), an option htsr does not know (a newer run's) included."""
    def options_of(page):
        return html.unescape(page.split("<dt>options</dt><dd>", 1)[1].split("</dd>", 1)[0])

    assert options_of(render_report(result_of([layer_row("a")]))) == "all at their defaults"
    # an analysis's own options, as it records them (split as a list, its default a tuple): every report had
    # listed 'split=[]' as changed
    rng = np.random.default_rng(0)
    assert options_of(render_report(htsr.analyze({"fc.weight": rng.standard_normal((60, 40))}))) == \
        "all at their defaults"
    assert options_of(render_report(result_of([layer_row("a")], xmin="median", min_evals=50, future=3))) == \
        "<code>xmin='median'</code>, <code>future=3</code>"


def test_an_option_differs_from_its_default_by_type_too():
    """True is not 1 and False is not 0 (a bool given where a number is meant is listed); an option whose value
    cannot be compared (an array) is listed, not taken for its default."""
    from htsr.report import _non_defaults

    assert _non_defaults({"randomize": 0, "seed": False, "tails": True, "bootstrap": 0}) == \
        [("randomize", 0), ("seed", False)]
    kinds = np.array(["dense", "conv2d"])
    assert [k for k, _ in _non_defaults({"kinds": kinds})] == ["kinds"]


def test_the_summary_cards_name_the_interval_and_the_tail_shares_of_this_run():
    """The interval of alpha follows the run's bootstrap and confidence; the two tail-fit shares each at its
    own value (2 of 3 plausible, 1 of 3 best fit by the power law), each undefined one with its own reason."""
    rows = [layer_row("a", pl_pvalue=0.5, num_boot=200.0, best_fit="power_law"),
            layer_row("b", pl_pvalue=0.05, num_boot=200.0, best_fit="lognormal"),
            layer_row("c", pl_pvalue=0.3, num_boot=200.0, best_fit="lognormal")]
    page = render_report(result_of(rows, bootstrap=200, confidence=0.9))
    assert ("<dt>interval of alpha</dt><dd>bootstrap, 90% (Bayesian on a layer with fewer than 100 good "
            "replicates)</dd>") in page
    assert f"<dt>power law plausible (bootstrap p &gt; 0.1)</dt><dd>{_fmt(2 / 3)}</dd>" in page
    assert f"<dt>best fit is the power law</dt><dd>{_fmt(1 / 3)}</dd>" in page and _fmt(1 / 3) == "0.3333"
    # no tails compared: the best-fit share says --no-tails (the plausibility share is defined)
    rows = [layer_row("a", pl_pvalue=0.5, num_boot=200.0)]
    page = render_report(result_of(rows, bootstrap=200, tails=False))
    assert "<dt>best fit is the power law</dt><dd>n/a (--no-tails)</dd>" in page
    # neither defined: each share gives its own reason (the plausibility share needs --bootstrap N, not tails)
    page = render_report(result_of([layer_row("a")], tails=False))
    assert ("<dt>power law plausible (bootstrap p &gt; 0.1)</dt><dd>n/a (--bootstrap N)</dd>"
            "<dt>best fit is the power law</dt><dd>n/a (--no-tails)</dd>") in page


def test_the_traps_entry_says_why_it_is_undefined_under_randomize():
    """Randomised, but no layer with a trap count: the traps entry gives the randomisation's reason, not the
    phases'."""
    page = render_report(result_of([layer_row("a")], randomize=True))
    assert ("<dt>layers with correlation traps</dt><dd>n/a (no layer randomised: none with min_evals eigenvalues, "
            "or LoRA updates only)</dd>") in page


def test_tensors_not_analysed_end_in_an_ellipsis_when_some_are_not_named():
    """Each reason's count, its example names, and '…' when the count is larger than the names shown (one more
    already); no '…' when every one is named."""
    from htsr.results import NotAnalysed

    r = result_of([layer_row("a")])
    r = type(r)(r.layers, r.summary, r.source, r.options, not_analysed=(
        NotAnalysed("bias or norm buffer", 4, ("a.bias", "b.bias", "c.bias")), NotAnalysed("1-D", 2, ("x", "y"))))
    card = render_report(r).split("<h3>Tensors not analysed</h3>", 1)[1].split("</div>", 1)[0]
    assert "<dt>bias or norm buffer</dt><dd>4 (a.bias, b.bias, c.bias, …)</dd>" in card
    assert "<dt>1-D</dt><dd>2 (x, y)</dd>" in card


def test_the_means_card_says_an_adapters_means_are_over_its_updates():
    """An adapter's means average its updates (#delta rows): the card's heading says so, not 'layers'."""
    r = result_of([layer_row("q#delta", alpha=2.0), layer_row("v#delta", alpha=4.0)])
    assert r.summary.means_over == "delta"
    page = render_report(r)
    assert f"<h3>Means over {html.escape(MEANS_OVER['delta'])} with a finite value</h3>" in page
    assert "<dt>alpha</dt><dd>3</dd>" in page


def test_a_report_of_something_not_a_result_and_a_write_to_no_path_are_htsr_errors():
    """render_report({...}) had raised a bare AttributeError, result.to_json(None) a bare TypeError from pathlib
    (h44, h48): htsr's OptionError, saying what to give."""
    from htsr.errors import OptionError

    with pytest.raises(OptionError, match=r"^render_report: result must be what htsr.analyze returns"):
        render_report({"a": 1})
    r = result_of([layer_row("a")])
    for write in (r.to_json, r.to_csv):
        with pytest.raises(OptionError, match=r"path must be a file path \(str or os.PathLike\), got NoneType$"):
            write(None)


def test_an_adapters_warned_rows_are_listed_as_its_summary_counts_them():
    """The Warnings card counts an adapter's updates (#delta rows); the list under 'Layers with a warning (N)' had
    also held its #base and #merged rows, so N disagreed with the card (h44). The updates are listed under the
    card's count, the other views of the same modules apart, said not to be counted."""
    r = result_of([layer_row("q#delta", alpha=7.0, warning="under-trained"),
                   layer_row("q#base", alpha=1.5, warning="over-trained"),
                   layer_row("q#merged", alpha=1.6, warning="over-trained"),
                   layer_row("v#delta", alpha=3.0)], base="b")
    assert r.summary.means_over == "delta" and r.summary.num_under_trained == 1 and r.summary.num_over_trained == 0
    page = render_report(r)
    section = page.split('<section id="warnings">', 1)[1].split("</section>", 1)[0]
    assert f"<h3>Layers with a warning (1) (of {html.escape(MEANS_OVER['delta'])}, as the summary counts)</h3>" \
        in section
    listed = re.findall(r'data-layer="([^"]*)"', section.split('<ul id="warned">', 1)[1].split("</ul>", 1)[0])
    assert listed == ["q#delta"]
    other = re.findall(r'data-layer="([^"]*)"', section.split('<ul id="warned-other">', 1)[1].split("</ul>", 1)[0])
    assert other == ["q#base", "q#merged"]  # by warning, then in model order
    assert "<h3>Other rows with a warning (2), not counted in the summary</h3>" in section
    # a model's own rows: one list, no qualifier
    plain = render_report(result_of([layer_row("a", alpha=7.0, warning="under-trained")]))
    assert "<h3>Layers with a warning (1)</h3>" in plain and "warned-other" not in plain
