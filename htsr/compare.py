"""Several models side by side, and one model against its base layer by layer.

Pure numpy (no plotting, no pandas): the figures are drawn by :mod:`htsr.plot` from
:func:`htsr.figures.metric_trend`, lazily, only by the command line (``htsr compare``, in :mod:`htsr.cli`).

**Comparing models** (:func:`compare`, :func:`compare_results`): every source is analysed with the same
options; the :class:`Comparison` holds the summary table (one row per model: the layer counts and the
metric means of :class:`~htsr.results.Summary`), a ranking of the models by one summary metric, and the
per-layer values of one column side by side for the layer names present in every model (the names
present in only some are listed with the models that have them).

Direction of a metric (:data:`METRIC_DIRECTIONS`): ``True`` = lower is better (ascending ranking),
``False`` = higher is better, ``None`` = no agreed reading (the caller must pass ``ascending=``).

* alpha, alpha_weighted, log_alpha_norm, log_norm, log_spectral_norm, bayes_alpha: lower. In HTSR's
  reading a heavier-tailed ESD (smaller alpha) and smaller norms go with better-trained layers, and the
  model-level averages of these metrics correlated with test accuracy across many families of pretrained
  models (Martin, Peng & Mahoney, Nature Communications 2021) — a reading, not a measurement: it need not
  hold for a given family (EfficientNet-Lite0/1/2's mean alpha rises with their accuracy,
  ``scripts/compare_efficientnet.py``). alpha < 2 reads as over-trained, which an average can hide: ranked by
  alpha, the text names the models that rank ahead of one without over-trained layers for over-trained layers or
  a mean below 2. The ranking says so: 1 is the first in the metric's reading, not a measured best.
* stable_rank, entropy, mp_softrank: lower. They fall during training as correlations build up
  (Martin & Mahoney, JMLR 2021); a weaker reading than alpha's.
* rand_js_distance: higher. A larger distance between the ESD and the ESD of the element-shuffled
  matrices means more structure that shuffling destroys.
* num_under_trained, num_over_trained, num_uncertain, num_no_power_law, num_failed, num_with_traps: lower.
* D, sigma, pl_pvalue, erg_delta_lambda_min and the other counts and shares: no direction (fit quality
  and diagnostics; erg_delta_lambda_min is ideally 0, not small).

**A model against its base** (:func:`layer_distances`): for each row name present in both with the
same tensor shape — the others are listed as skipped with the reason — the Frobenius norm of the
difference, the same relative to the base, the Jensen–Shannon distance between the two ESDs (the
definition of ``rand_js_distance``: :func:`htsr.rmt.traps.js_distance`), the relative change of
λ_max, and the centred linear CKA of the two weight matrices (:func:`linear_cka`). The two sources are
read one layer at a time (the second is listed first, lazily; each pair of tensors is loaded, compared
and dropped), so memory holds two layers, never two models.

CKA orientation: each matrix is oriented N × M (the longer side as rows = examples, transposed when
needed; both matrices of a pair have the same shape, so they are oriented alike) and the M columns are
the features, so only M × M products are formed. A pooled conv layer's k kernel-position matrices are
stacked along the examples, (k·N) × M: one CKA per layer, its features shared by every position, whose
Gram matrix XᵀX = Σᵢ WᵢᵀWᵢ is the sum of the positions' Gram matrices. For a depthwise conv (M = 1)
this is the squared correlation of the two kernels' weights.

Chance level of CKA: for two independent n × p Gaussian matrices (rows = examples) E‖YᵀX‖²_F ≈ n·p², and
‖XᵀX‖²_F ≈ n·p·(n + p), so CKA ≈ p / (n + p) — about M/(N + M) for a layer (at most ½ with the longer
side as examples), not 0. :attr:`LayerDistance.cka_chance` gives that baseline (with k·N examples for a
pooled conv) so a value can be read against it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import HtsrError, LayerSkipped, OptionError, described, shown
from .fits.uncertainty import MIN_WARNING_REPLICATES
from .options import KIND_BOUND, OPTION_SPECS, UI_OPTIONS, Options, acts_on, row_kinds, typed_flag
from .rmt.phases import PHASES
from .specs import SplitRule
from .results import (
    MEANS_OVER,
    NUMERIC_COLUMNS,
    SUMMARY_METRICS,
    AnalysisResult,
    LayerResult,
    Summary,
    csv_table,
    format_value,
    in_means,
    json_safe,
    means_rows,
    phase_rows,
    phase_column,
    row_tag,
    saved_run,
    text_table,
    write_result_file,
)
from .values import NanEqual

__all__ = [
    "METRIC_DIRECTIONS",
    "TREND_METRICS",
    "Comparison",
    "LayerDistance",
    "RankEntry",
    "compare",
    "compare_results",
    "distances_csv_text",
    "format_comparison",
    "format_distances",
    "layer_distances",
    "linear_cka",
    "spearman",
]

NAN = float("nan")

#: True: lower is better (ranked ascending); False: higher is better; None: no agreed reading
METRIC_DIRECTIONS: dict[str, bool | None] = {
    # HTSR's alpha-like metrics: heavier tails and smaller norms read as better trained
    "alpha": True,
    "alpha_weighted": True,
    "log_alpha_norm": True,
    "log_norm": True,
    "log_spectral_norm": True,
    "bayes_alpha": True,
    # fall during training as correlations build up (weaker reading)
    "stable_rank": True,
    "entropy": True,
    "mp_softrank": True,
    # more structure destroyed by shuffling
    "rand_js_distance": False,
    # problem counts
    "num_under_trained": True,
    "num_over_trained": True,
    "num_uncertain": True,
    "num_no_power_law": True,
    "num_failed": True,
    "num_with_traps": True,
    # fit quality and diagnostics: no direction
    "D": None,
    "sigma": None,
    "pl_pvalue": None,
    "erg_delta_lambda_min": None,
}

#: summary metrics drawn by ``htsr compare --figure`` (the ranking metric is added when it is not one)
TREND_METRICS = ("alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank", "entropy")

#: summary columns shown by :func:`format_comparison` (every column is in the JSON)
SHOWN_SUMMARY = ("num_layers", "num_fitted", "num_failed", "num_under_trained", "num_over_trained", "alpha",
                 "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm", "stable_rank", "entropy",
                 "mp_softrank")


def direction_word(ascending: bool | None) -> str:
    return {True: "lower is better", False: "higher is better", None: "no direction"}[ascending]


@dataclass(frozen=True, eq=False)
class RankEntry(NanEqual):
    rank: int | None  # 1 = best in the metric's reading (ties share the smaller rank); None: no value to rank
    label: str
    value: float


@dataclass(frozen=True, eq=False)
class Comparison(NanEqual):
    """Models side by side (see the module docstring). Rows of ``summary`` and ``layer_values`` follow
    ``labels``."""

    labels: tuple[str, ...]
    results: tuple[AnalysisResult, ...]
    metric: str  # the ranking metric: a column of the summary table
    ascending: bool  # the direction used (True: lower first)
    direction_from: str  # 'default' (METRIC_DIRECTIONS) or 'user'
    summary_columns: tuple[str, ...]
    summary: tuple[tuple[float, ...], ...]  # one row per model, in summary_columns order
    ranking: tuple[RankEntry, ...]  # best first
    layer_metric: str  # the per-layer column shown side by side
    common_layers: tuple[str, ...]  # row names present in every model (the first model's order)
    layer_values: tuple[tuple[float, ...], ...]  # per common layer, one value per model
    layer_kinds: tuple[str, ...]  # per common layer (the first model's)
    layer_shapes: tuple[tuple[str, ...], ...]  # per common layer, one tensor shape per model
    partial_layers: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())  # (name, labels that have it)
    # per model, the mean of layer_metric over the common layers where it is finite in every model: the same
    # layers for every model, unlike the summary means (which average each model's own fitted layers)
    common_means: tuple[float, ...] = field(default=())
    num_common_finite: int = 0
    # common names whose tensors differ in shape between models (another architecture's layer under the same
    # name, e.g. EfficientNet-Lite0's last block against Lite2's): shown side by side, left out of common_means
    shape_differs: tuple[str, ...] = field(default=())
    # per model whose layer names were matched to the first model's by a prefix: "label: dropping 'bert.'"
    name_alignment: tuple[str, ...] = field(default=())
    # per model, its row names matched to the first model's where they differ (of name_alignment): row → name
    renamed: tuple[dict[str, str], ...] = field(default=(), repr=False, compare=False)

    def __repr__(self) -> str:  # the dataclass's would print every result and every common layer's values
        ranked = ", ".join(f"{e.rank or '-'}. {e.label}" for e in self.ranking[:5])
        return (f"<Comparison of {len(self.labels)} models by {self.metric} ({direction_word(self.ascending)}): "
                f"{ranked}{', …' if len(self.ranking) > 5 else ''}; {len(self.common_layers)} common "
                f"layer{'s' * (len(self.common_layers) != 1)}; "
                ".ranking, .summary, .as_dict()>")

    def summary_value(self, label: str, column: str) -> float:
        return self.summary[self.labels.index(label)][self.summary_columns.index(column)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and inf as None)."""
        doc = {
            "labels": list(self.labels),
            "sources": [r.source for r in self.results],
            "options": _options_of(self.results),
            "options_differ": _plain(options_differ(self.results)),
            "metric": self.metric,
            "ascending": self.ascending,
            "direction": direction_word(self.ascending),
            "direction_from": self.direction_from,
            # counts as integers, as in summary.json (the table holds them as floats, NaN where undefined)
            "summary": [{"label": lab, **{c: int(v) if c.startswith("num_") and math.isfinite(v) else v
                                          for c, v in zip(self.summary_columns, row)},
                         "means_over": r.summary.means_over}
                        for lab, row, r in zip(self.labels, self.summary, self.results)],
            "ranking": [{"rank": e.rank, "label": e.label, "value": e.value} for e in self.ranking],
            "layer_metric": self.layer_metric,
            "layers": [{"name": n, "kind": k, "shapes": dict(zip(self.labels, s)),
                        "values": dict(zip(self.labels, v))}
                       for n, k, s, v in zip(self.common_layers, self.layer_kinds, self.layer_shapes,
                                             self.layer_values)],
            "partial_layers": [{"name": n, "present_in": list(h)} for n, h in self.partial_layers],
            "name_alignment": list(self.name_alignment),
            "common_layer_means": {"layer_metric": self.layer_metric, "num_layers": self.num_common_finite,
                                   "values": dict(zip(self.labels, self.common_means))},
            "shape_differs": list(self.shape_differs),
            "notes": comparison_notes(self),
        }
        return json_safe(_plain(doc))

    def json_text(self) -> str:
        return json.dumps(self.as_dict(), indent=2, allow_nan=False) + "\n"

    def csv_text(self) -> str:
        """The per-layer side-by-side table: name, kind, shape, then one column per model
        (``<layer_metric>:<label>``); NaN as an empty field."""
        return csv_table(["name", "kind", "shape", *(f"{self.layer_metric}:{lab}" for lab in self.labels)],
                         ([n, k, _shape_text(s), *v] for n, k, s, v in
                          zip(self.common_layers, self.layer_kinds, self.layer_shapes, self.layer_values)))

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the per-layer side-by-side table, atomically; never over a file a model was read from."""
        write_result_file("Comparison.to_csv():", path, self.csv_text(), self._read_from())

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the comparison as one JSON document, atomically; never over a file a model was read from."""
        write_result_file("Comparison.to_json():", path, self.json_text(), self._read_from())

    def _read_from(self) -> list[str]:
        return [p for r in self.results for p in r.read_from]


def _options_of(results: Sequence[AnalysisResult]) -> Any:
    """The options the models were analysed with: one dict when they agree, else one per model."""
    opts = [r.options for r in results]
    return opts[0] if opts and all(o == opts[0] for o in opts) else opts


def options_differ(results: Sequence[AnalysisResult]) -> dict[str, list[Any]]:
    """The analysis options that differ between ``results`` (results computed apart, compared later), each
    with its value per model: their metrics are not comparable (``xmin='ks'`` against ``'median'``)."""
    names = dict.fromkeys(k for r in results for k in r.options)

    def value(r: AnalysisResult, k: str) -> Any:  # (an option a run saved by an older htsr lacks: its default)
        v = r.options.get(k, OPTION_SPECS[k].default if k in OPTION_SPECS else None)
        if k == "split" and isinstance(v, (list, tuple)):  # (rules by what they say: 'q, k' is 'q,k')
            return [SplitRule.canonical_text(t) for t in v]
        return list(v) if isinstance(v, tuple) else v  # (split's rules: () by default, a list as saved)

    def differs(k: str) -> bool:
        # an option acting on some kinds of rows only (--conv …) differs where it acts: a dense model analysed with
        # --conv per_position is the one analysed without
        acting = [r for r in results if k not in KIND_BOUND or acts_on(k, row_kinds(r.layers))]
        return any(value(r, k) != value(acting[0], k) for r in acting)

    return {k: [value(r, k) for r in results] for k in names if differs(k)}


def _finite_rows(r: AnalysisResult, metric: str, renamed: dict[str, str]) -> frozenset[str]:
    """The rows a model's mean ``metric`` averages (those of :func:`~htsr.results.means_rows` where it is finite),
    by the first model's names (``renamed``: Comparison.renamed, a prefixed model's 'net.fc' is 'fc')."""
    return frozenset(renamed.get(row.name, row.name) for row in means_rows(r.layers)[1]
                     if isinstance(v := getattr(row, metric, None), float) and math.isfinite(v))


#: options that compute columns of their own (:data:`_NEEDS`) and change no other: models analysed with and without
#: one compare on every other metric
_OWN_COLUMNS_ONLY = ("randomize", "localization", "bayes_average", "tails")


def _differ_for(c: "Comparison") -> dict[str, list[Any]]:
    """:func:`options_differ` less the options that change no number the comparison shows: one that computes
    columns of its own only, when neither its metric nor its layer metric is one of them (a run with --randomize
    ranks by mean alpha as one without); a seed then; a bootstrap too small to drive the warnings."""
    shown_ = {c.metric, c.layer_metric}

    def own(*options: str) -> set[str]:
        return {col for col, (names, _, _) in _NEEDS.items() if set(names.split("|")) & set(options)}

    out = {}
    # (a seed or bootstrap that drives the warnings' intervals changes the warning counts: it matters)
    small = all((r.options.get("bootstrap") or 0) < MIN_WARNING_REPLICATES for r in c.results)
    for k, values in options_differ(c.results).items():
        adds_only = k in _OWN_COLUMNS_ONLY or (k in ("seed", "bootstrap") and small)
        if adds_only and not shown_ & own(*(("randomize", "bootstrap") if k == "seed" else (k,))):
            continue
        out[k] = values
    return out


def _plain(v: Any) -> Any:
    """numpy scalars to Python numbers, recursively (json cannot write numpy types)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _shape_text(shapes: Sequence[str]) -> str:
    return shapes[0] if len(set(shapes)) == 1 else " | ".join(shapes)


#: a path in a Hugging Face cache snapshot: models--<org>--<name>/snapshots/<revision>[/<file or folder>]
_HUB_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<repo>[^/]+)/snapshots/[0-9a-f]{40}(?:/(?P<rest>.+))?$")


def _natural_key(label: str) -> list:
    """A label's sort key by its numbers: each run of digits a number (a version's dotted parts a tuple, '1.10.0'
    after '1.9.0'; a decimal one value, 'lr0.25' before 'lr0.3'), the text between compared as text."""
    parts = re.split(r"(\d+(?:\.\d+)*)", label)
    return [tok if k % 2 == 0 else (float(tok),) if tok.count(".") == 1 else tuple(int(x) for x in tok.split("."))
            for k, tok in enumerate(parts)]


def glob_order(labels: Sequence[str]) -> tuple[str, str] | None:
    """The first two labels out of their numbers' order when the labels are in alphabetical order — a shell's
    glob (checkpoint-1000 before checkpoint-500, step-1000 before step-50) —, else None: an order the user chose."""
    labels = [re.sub(r"#\d+$", "", lab) for lab in labels]  # (a suffix that made a label unique)
    if len(labels) < 2 or labels != sorted(labels):
        return None
    keys = [_natural_key(lab) for lab in labels]
    return next(((a, b) for a, b, ka, kb in zip(labels, labels[1:], keys, keys[1:]) if ka > kb), None)


def _default_labels(sources: Sequence[Any]) -> list[str]:
    """Paths by their name, a file's without its suffix (``Qwen2.5-0.5B/``, ``model.safetensors`` → ``model``;
    the folders above added, one at a time, while two paths collide; the same path twice numbered ``#i``);
    results by the path they analysed (one no longer on disk: a weight file's suffix stripped all the same);
    anything else as 'model<i>'."""
    from .io import HELD_SUFFIXES

    def path_of(s: Any) -> Path | None:
        s = s.path if isinstance(s, AnalysisResult) else s
        return Path(s) if isinstance(s, (str, os.PathLike)) and os.fspath(s) else None

    def name(p: Path) -> str:  # (a folder's name is its whole name: 'Qwen2.5-0.5B', not 'Qwen2.5-0')
        p = Path(os.path.normpath(p))
        hub = _HUB_SNAPSHOT.search(p.as_posix())
        if hub:  # a Hugging Face cache snapshot: by its repository (org/name), not its 40-hex revision
            rest = hub["rest"] or ""
            rest = rest.removesuffix(Path(rest).suffix) if Path(rest).suffix.lower() in HELD_SUFFIXES else rest
            return hub["repo"].replace("--", "/", 1) + (f"/{rest}" if rest else "")
        if os.path.exists(p):  # (by its own name: '.' and '..' are the folders they are)
            p = Path(os.path.abspath(p))
            return p.stem if os.path.isfile(p) else p.name
        # a path no longer on disk (results read from JSON written elsewhere): a weight file's by its suffix
        return p.stem if p.suffix.lower() in HELD_SUFFIXES else p.name

    paths = [path_of(s) for s in sources]
    labels = [(name(p) if p is not None else "") or f"model{i + 1}" for i, p in enumerate(paths)]
    # folders above added, one at a time, until the labels differ ('lr1e-4/checkpoint-500/model' and
    # 'lr3e-4/checkpoint-500/model'); the same path given twice is numbered
    where = [os.path.abspath(p) if p is not None else None for p in paths]
    parents = [Path(w).parent.parts[1:][::-1] if w is not None else () for w in where]

    def collide() -> bool:  # two labels alike for two different paths
        return len({(lab, w) for lab, w in zip(labels, where)}) > len(set(labels))

    # two files of one folder alike but for their suffix (model.safetensors and its model.onnx export): their
    # whole names, as no folder tells them apart
    files: dict[tuple[str, str], set[str]] = {}  # (folder, label) -> the distinct paths so labelled
    for lab, w in zip(labels, where):
        if w is not None:
            files.setdefault((os.path.dirname(w), lab), set()).add(w)
    twins = {k for k, v in files.items() if len(v) > 1}  # (a run's --out folder and its --json document too)
    labels = [os.path.basename(w) if w is not None and (os.path.dirname(w), lab) in twins else lab
              for lab, w in zip(labels, where)]

    for depth in range(1, max(map(len, parents), default=0) + 1):
        if not collide():
            break
        labels = ["/".join([*reversed(up[:depth]), lab.rpartition("/")[2]]) if p is not None else lab
                  for lab, p, up in zip(labels, paths, parents)]
    # the same path given twice: the labels alike numbered among themselves, the others kept, and no number giving
    # another's label ('m', 'm' and 'm#1': 'm#2', 'm#3', 'm#1')
    taken, numbered = set(labels), []
    counts: dict[str, int] = {}
    for lab in labels:
        if labels.count(lab) > 1:
            k = counts.get(lab, 0) + 1
            while f"{lab}#{k}" in taken:
                k += 1
            counts[lab] = k
            lab = f"{lab}#{k}"
            taken.add(lab)
        numbered.append(lab)
    return numbered


def _check_labels(labels: Sequence[str] | None, items: Sequence[Any]) -> tuple[str, ...]:
    if labels is None:
        return tuple(_default_labels(items))
    if isinstance(labels, str):  # (its characters are no labels: 'ab' had been 'a', 'b')
        raise OptionError(f"labels takes one label per model, in a list (labels=['a', 'b']), not the string "
                          f"{shown(labels)}")
    labels = tuple(str(x) for x in labels)
    if len(labels) != len(items):
        raise OptionError(f"labels (--labels): {len(labels)} given for {len(items)} models")
    if any(not x for x in labels) or len(set(labels)) != len(labels):
        raise OptionError(f"labels (--labels) must be distinct and non-empty, got {list(labels)}")
    return labels


def _direction(metric: str, ascending: bool | None) -> tuple[bool, str]:
    if ascending is not None:
        if not isinstance(ascending, bool):
            raise OptionError(f"ascending must be True, False or None, got {shown(ascending)}")
        return ascending, "user"
    d = METRIC_DIRECTIONS.get(metric)
    if d is None:
        raise OptionError(f"metric {metric!r} has no agreed direction (better when lower or higher): pass "
                          f"ascending=True (lower first) or ascending=False (higher first)")
    return d, "default"


def summary_columns() -> tuple[str, ...]:
    """The columns of the summary table: every number of :meth:`Summary.as_dict` (counts, shares, means)."""
    return tuple(k for k, v in Summary.of([]).as_dict().items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool))


def _check_metric(metric: str, ascending: bool | None) -> tuple[bool, str]:
    if not (isinstance(metric, str) and metric in summary_columns()):
        raise OptionError(f"metric {shown(metric)} is not a summary column; the summary metrics are "
                          f"{', '.join(SUMMARY_METRICS)} (and the layer counts: see Summary)")
    return _direction(metric, ascending)


def _check_layer_metric(metric: str, layer_metric: str | None) -> str:
    """The per-layer column shown side by side: ``layer_metric``, or by default ``metric`` when it is one, else
    alpha."""
    if layer_metric is None:
        return metric if metric in NUMERIC_COLUMNS else "alpha"
    if not (isinstance(layer_metric, str) and layer_metric in NUMERIC_COLUMNS):
        raise OptionError(f"layer_metric {shown(layer_metric)} is not a numeric per-layer column; they are "
                          "the layer table's numbers, e.g. alpha, alpha_weighted, log_norm, stable_rank, mp_softrank "
                          "(htsr.results.NUMERIC_COLUMNS)")
    return layer_metric


def _rank(labels: Sequence[str], values: Sequence[float], ascending: bool) -> tuple[RankEntry, ...]:
    """Best first; ties share the smaller rank (1, 1, 3); a model without a finite value (a diagnostic
    not run, no layer fitted) is listed last, unranked (rank None)."""
    key = sorted(((v if ascending else -v), i) for i, v in enumerate(values) if math.isfinite(v))
    out, prev, prev_rank = [], None, 0
    for pos, (k, i) in enumerate(key):
        rank = prev_rank if prev == k else pos + 1
        out.append(RankEntry(rank, labels[i], float(values[i])))
        prev, prev_rank = k, rank
    out += [RankEntry(None, labels[i], float(v)) for i, v in enumerate(values) if not math.isfinite(v)]
    return tuple(out)


def compare_results(results: Sequence[AnalysisResult], labels: Sequence[str] | None = None, metric: str = "alpha",
                    ascending: bool | None = None, layer_metric: str | None = None) -> Comparison:
    """Compare results already computed (see :func:`compare`)."""
    results = tuple(results)
    if len(results) < 2:
        raise OptionError(f"compare needs at least two models, got {len(results)}")
    if not all(isinstance(r, AnalysisResult) for r in results):
        raise OptionError("compare_results takes AnalysisResult objects; use compare() for sources")
    labels = _check_labels(labels, results)
    summaries = [r.summary.as_dict() for r in results]
    columns = summary_columns()
    asc, source = _check_metric(metric, ascending)
    rows = tuple(tuple(float(s[c]) for c in columns) for s in summaries)
    j = columns.index(metric)
    ranking = _rank(labels, [row[j] for row in rows], asc)

    layer_metric = _check_layer_metric(metric, layer_metric)
    by_name: list[dict[str, LayerResult]] = []
    for r in results:
        d: dict[str, LayerResult] = {}
        for row in r.layers:
            d.setdefault(row.name, row)  # a name appears once per model; the first wins otherwise
        by_name.append(d)
    # a model none of whose names the first model has (a task model's 'bert.encoder…' against its base's
    # 'encoder…'): its rows are matched under the first model's names, and the comparison says how
    from .io.delta import align_names, align_saved

    aligned, renamed = [], [{} for _ in by_name]
    for k in range(1, len(by_name)):
        same = (lambda a, b, d=by_name[k]: d[a].shape == by_name[0][b].shape)  # noqa: E731
        rename, note = align_names(list(by_name[k]), by_name[0], same)
        # (a live transformers 5 model, or its state dict, against its save_pretrained folder)
        rename, note = align_saved(list(by_name[k]), by_name[0], lambda k=k: _saved_rows(results[0], results[k]),
                                   rename, note, same)
        if rename is not None and note:
            renamed[k] = {n: rename(n) for n in by_name[k]}
            by_name[k] = {renamed[k][n]: row for n, row in by_name[k].items()}
            aligned.append(f"{labels[k]}: {note}")
        elif note:  # two renamings tie: the names are compared as they are
            aligned.append(f"{labels[k]}: not renamed ({note})")
    common = tuple(n for n in by_name[0] if all(n in d for d in by_name[1:]))
    values = tuple(tuple(float(getattr(d[n], layer_metric)) for d in by_name) for n in common)
    shape_differs = tuple(n for n in common if len({d[n].shape for d in by_name}) > 1)
    # over the rows each model's summary means average (an adapter's #delta rows: not its frozen #base)
    over = [r.summary.means_over for r in results]
    finite = [v for n, v in zip(common, values) if all(math.isfinite(x) for x in v) and n not in shape_differs
              and all(in_means(n, o) for o in over)]
    means = tuple(math.fsum(v[i] for v in finite) / len(finite) if finite else NAN for i in range(len(results)))
    order: dict[str, None] = {}
    for d in by_name:
        order.update(dict.fromkeys(d))
    partial = tuple((n, tuple(lab for lab, d in zip(labels, by_name) if n in d))
                    for n in order if n not in set(common))
    return Comparison(
        labels=labels, results=results, metric=metric, ascending=asc, direction_from=source,
        summary_columns=columns, summary=rows, ranking=ranking, layer_metric=layer_metric,
        common_layers=common,
        layer_values=values,
        layer_kinds=tuple(by_name[0][n].kind for n in common),
        layer_shapes=tuple(tuple(d[n].shape for d in by_name) for n in common),
        partial_layers=partial,
        common_means=means,
        num_common_finite=len(finite),
        name_alignment=tuple(aligned),
        shape_differs=shape_differs,
        renamed=tuple(renamed),
    )


def compare(sources: Sequence[Any], labels: Sequence[str] | None = None, metric: str = "alpha",
            ascending: bool | None = None, layer_metric: str | None = None, **options: Any) -> Comparison:
    """Analyse each source with the same ``options`` and compare them.

    ``sources``: paths or in-memory models (anything :func:`htsr.analyze` accepts); an
    :class:`~htsr.results.AnalysisResult` is taken as is (it keeps the options it was computed with), and so is
    a run saved by ``htsr analyze --out DIR`` or ``--json`` given by its path (:func:`~htsr.results.load_result`).
    ``labels``: one distinct name per source (default: the paths' names, else ``model1``, ``model2``, …).
    ``metric``: the summary column that ranks the models; its direction comes from
    :data:`METRIC_DIRECTIONS` unless ``ascending`` is given (True: lower values first).
    ``layer_metric``: the per-layer column shown side by side (default: ``metric`` when it is a per-layer
    column, else alpha).

    The options are validated before any model is read; the models are analysed one after the other.
    """
    from .analyze import (SPLIT_CUTS_NOTHING, _analyze, check_has_layers, idle_option_error, idle_options,
                          open_model)

    if isinstance(sources, (str, os.PathLike, Mapping)) or hasattr(sources, "named_modules"):
        # one model (a path, a state dict, an nn.Sequential) is iterable too: its characters, keys or children
        raise OptionError(f"compare takes a list of two or more models, not one {type(sources).__name__}: "
                          "compare([model_a, model_b], labels=['a', 'b'])")
    sources = list(sources)
    opts = Options.create(**options)
    labels = _check_labels(labels, sources)  # before the (slow) analyses
    if len(sources) < 2:
        raise OptionError(f"compare needs at least two models, got {len(sources)}")
    _check_metric(metric, ascending)  # fail before the analyses
    shown_column = _check_layer_metric(metric, layer_metric)
    given = list(sources)
    # saved runs read back now, once (their options are known before any analysis)
    sources = [s if isinstance(s, AnalysisResult) else saved_run(s) or s for s in sources]
    saved = [isinstance(s, AnalysisResult) for s in sources]
    # (workers too: nothing is analysed; the progress bar and the spectra kept are the CLI's own settings)
    if all(saved) and (changed := [k for k in options if (k not in UI_OPTIONS or k == "workers")
                                   and options[k] != OPTION_SPECS[k].default]):
        raise OptionError(f"option {changed[0]!r} ({typed_flag(changed[0])}) would change nothing: every model "
                          "is a saved run, which keeps the options it was analysed with; leave it out")
    for what, column, use in (("metric", metric, "rank by"), ("layer_metric", shown_column, "show")):
        if not all(saved) and not _computes(column, opts.as_dict()):
            # (a saved run analysed with it has values: the models analysed now would not)
            who = ("the models analysed now would have no value to " + use + ", only the saved runs" if any(
                _computes(column, s.options) for s, was in zip(sources, saved) if was) else
                   "no model would have a value to " + use)
            raise OptionError(f"{what} {column!r} is computed only with {_NEEDS[column][2]}: {who}; add it, or {use} "
                              "another column")
        if all(saved) and not any(_computes(column, s.options) for s in sources):
            raise OptionError(f"{what} {column!r} is computed only with {_NEEDS[column][2]}, which no saved run "
                              f"was analysed with; analyse the models again with it, or {use} another column")
    # each model opened once (its headers), and one without a layer under the filters fails now, not after
    # the others' analyses
    sources = [s if isinstance(s, AnalysisResult) else open_model(s) for s in sources]
    # an option acting on one model's rows acts on the comparison; a saved run analysed with it is one it matches
    cut: set[str] = set()  # the split rules that cut a row of some model analysed now
    kinds = set().union(*(check_has_layers(s, opts, cut) for s in sources if not isinstance(s, AnalysisResult)))
    runs = [s for s in sources if isinstance(s, AnalysisResult)]
    if idle_rules := [t for t in opts.split if SplitRule.parse(t).text not in cut
                      and any(not isinstance(s, AnalysisResult) for s in sources)]:
        # (a rule cutting one model's fused matrix and not another's — a state dict's fused experts against the
        # folder that holds them one tensor each — pairs their rows: it had been refused for the other model, h61)
        raise OptionError(f"option 'split' rule '{idle_rules[0]}' cuts nothing in any of the models analysed now: "
                          f"{SPLIT_CUTS_NOTHING}")
    idle = [name for name in idle_options(opts, kinds) if not any(
        r.options.get(name) == getattr(opts, name) and acts_on(name, row_kinds(r.layers)) for r in runs)]
    if kinds and idle:
        raise idle_option_error("", idle[0], kinds, opts, "the models analysed now" + (
            ", nor a saved run analysed with it," if runs else ""))
    results = [s if isinstance(s, AnalysisResult) else _analyze(s, opts, check_idle=False) for s in sources]
    # (each opened reader's result keeps the path it was given: compare_results of them labels them so too)
    results = [replace(r, path=os.fspath(g)) if isinstance(g, (str, os.PathLike)) else r
               for r, g in zip(results, given)]
    return compare_results(results, labels, metric, ascending, layer_metric)




def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """Aligned plain text: the first ``text_columns`` columns left-aligned, the others right-aligned."""
    return text_table(header, rows, [i < text_columns for i in range(len(header))])


_RANDOMIZE, _BOOTSTRAP = ("randomize", True, "--randomize"), ("bootstrap", 1, "--bootstrap N")
_TAILS = ("tails", True, "the tail comparisons (no --no-tails)")
_MP, _SETOL = ("mp_fit", True, "the MP fit (no --no-mp-fit)"), ("setol", True, "SETOL (no --no-setol)")
#: summary metrics and per-layer columns that only an option computes: the option (or options, '|': either), the
#: smallest value that computes it (True: the option on) and what to add when no model has a value
_NEEDS = {**dict.fromkeys(("rand_js_distance", "num_with_traps", "num_traps", "rand_lambda_max", "rand_mp_sigma",
                           "rand_mp_lambda_minus", "rand_mp_lambda_plus", "rand_mp_threshold", "rand_mp_softrank"),
                          _RANDOMIZE),
          **dict.fromkeys(("pl_pvalue", "boot_alpha_lo", "boot_alpha_hi", "boot_alpha_se", "num_boot"), _BOOTSTRAP),
          # (the count and the share read only p-values of enough replicates to drive the warning)
          **dict.fromkeys(("num_no_power_law", "share_plausible_pl"),
                          ("bootstrap", MIN_WARNING_REPLICATES, f"--bootstrap {MIN_WARNING_REPLICATES} or more")),
          **dict.fromkeys(("share_best_fit_pl", "lr_exponential", "p_exponential", "lr_lognormal", "p_lognormal",
                           "lr_tpl", "p_tpl", "tpl_alpha", "tpl_Lambda", "etpl_alpha", "etpl_Lambda", "etpl_xmin"),
                          _TAILS),
          **dict.fromkeys(("mp_softrank", *map(phase_column, PHASES), "mp_sigma", "mp_lambda_minus", "mp_lambda_plus",
                           "mp_threshold", "num_spikes", "mp_ks", "num_heavy_entries"), _MP),
          **dict.fromkeys(("erg_delta_lambda_min", "num_erg", "erg_lambda_min", "erg_lambda_min_raw",
                           "logq_free_cauchy", "logq_levy_wigner", "logq_inverse_mp"), _SETOL),
          **dict.fromkeys(("bayes_avg_alpha", "bayes_avg_alpha_lo", "bayes_avg_alpha_hi"),
                          ("bayes_average", True, "--bayes-average")),
          **dict.fromkeys(("farms_windows", "farms_xmin"), ("farms_aspect", True, "--farms-aspect")),
          **dict.fromkeys(("raw_alpha", "num_fingers"), ("clip_xmax|drop_top", True, "--clip-xmax or --drop-top K")),
          **{c: ("localization", True, "--localization") for c in NUMERIC_COLUMNS if c.startswith("loc_")}}


def _computes(column: str, options: Mapping[str, Any]) -> bool:
    """Whether a run with these options computes the summary metric or per-layer ``column`` (:data:`_NEEDS`)."""
    if column not in _NEEDS:
        return True
    names, least, _ = _NEEDS[column]
    values = [options.get(name, OPTION_SPECS[name].default) for name in names.split("|")]
    return any(v not in (None, False, 0) if least is True else (v or 0) >= least for v in values)


assert set(_NEEDS) <= set(summary_columns()) | set(NUMERIC_COLUMNS)


def _saved_rows(*results: AnalysisResult) -> dict[str, str]:
    """{row name in memory: row name saved} of the transformers model whose folder one of ``results`` analysed
    (:func:`htsr.io.torch.checkpoint_names_of_folder`); empty if none did."""
    from .io.delta import saved_names_of
    from .tensors import row_name

    return {row_name(a): row_name(b) for a, b in saved_names_of(*results).items()}


def _a_count(metric: str) -> bool:
    """Whether a summary metric is a count or a share of the layers (num_…, share_…), not a mean over them."""
    return metric.startswith(("num_", "share_"))


def _over_trained_note(c: Comparison) -> list[str]:
    """Ranked by lower alpha: the models ranked ahead of one without over-trained layers for tails HTSR reads as
    over-trained (layers over-trained, or a mean below 2), or that every model has such tails; else nothing."""
    n_over = {lab: r.summary.num_over_trained for lab, r in zip(c.labels, c.results)}
    ranked = [(e.rank, e.label, e.value) for e in c.ranking if e.rank is not None]
    flagged = [(rank, lab, v) for rank, lab, v in ranked if v < 2 or n_over[lab]]
    clean = [rank for rank, lab, v in ranked if not (v < 2 or n_over[lab])]
    if not flagged or len(ranked) < 2:
        return []
    if not clean:
        return [f"every model has tails HTSR reads as over-trained (alpha below 2): lower {c.metric} ranks the "
                "heavier of them first, not the better trained"]
    ahead = [(lab, v) for rank, lab, v in flagged if rank < max(clean)]
    if not ahead:
        return []
    said = [", ".join(x for x in (f"mean {format_value(v)}" if v < 2 else "",
                                  f"{n_over[lab]} layer{'s' * (n_over[lab] != 1)} over-trained" if n_over[lab] else "")
                      if x) for lab, v in ahead]
    return [f"lower {c.metric} is better only down to 2 in HTSR's reading; below it a layer is over-trained: "
            + ", ".join(f"{lab} ({x})" for (lab, _), x in zip(ahead, said))
            + f" rank{'s' * (len(ahead) == 1)} ahead of models without over-trained layers for tails that heavy, "
              "not as better trained"]


#: a source's description with its reader's note ('ck.pt (the 'model' entry read; 'ema' left out …)')
_READER_NOTE = re.compile(r"\S \(.+\)$")


def comparison_notes(c: Comparison) -> list[str]:
    """What a reader of the comparison must know to read it right, one sentence each (the text, the JSON's
    ``notes``): the over-trained tails a ranking by lower alpha puts first, a shell glob's order, options that
    differ, an adapter's rows, means over other layers, names matched under a prefix, and what each model's
    reader says of its source (the entry read from a checkpoint, the files left out)."""
    parts: list[str] = []
    if c.metric in ("alpha", "bayes_alpha") and c.ascending:  # (lower is better only down to 2)
        parts += _over_trained_note(c)
    if (pair := glob_order(c.labels)) is not None:
        parts.append(f"the models are in the order given (trends and figures follow it), their labels' alphabetical "
                     f"order, which puts {pair[0]} before {pair[1]}: to follow a run, give them in their numbers' "
                     "order (ls -v, sort -V)")
    differ = _differ_for(c)
    if differ:
        parts.append("the models were analysed with different options ("
                     + "; ".join(f"{k}: {' / '.join(repr(v) for v in vs)}" for k, vs in differ.items())
                     + "): their metrics are not comparable; analyse them with the same options")
    over = [(lab, r.summary.means_over) for lab, r in zip(c.labels, c.results)]
    if any(o != "all" for _, o in over):  # an adapter's means are its updates' (results.means_rows)
        kinds = dict.fromkeys(o for _, o in over)
        parts.append("the summary means and warning counts are over " + "; ".join(
            f"{MEANS_OVER[o]} for {', '.join(lab for lab, x in over if x == o)}" for o in kinds)
            + ("" if not (moved := [lab for lab, r in zip(c.labels, c.results)
                                    if phase_rows(r.layers)[0] != r.summary.means_over]) else
               f" (the phase and trap counts over {MEANS_OVER['adapted']} for {', '.join(moved)})"))
    same = len(c.common_layers) - len(c.shape_differs)
    if c.partial_layers or c.shape_differs:  # the summary means are over different layers in each model
        parts.append("the models' layers differ (" + ", ".join(f"{lab} {r.summary.num_layers}" for lab, r in
                                                                zip(c.labels, c.results))
                     + f" layers; {same} the same in all, by name and shape): the ranking "
                     + ("counts in" if _a_count(c.metric) else "averages") + " each model's own layers")
    elif not _a_count(c.metric) and len(set(finite := [
            _finite_rows(r, c.metric, names) for r, names in zip(c.results, c.renamed or [{}] * len(c.results))])) > 1:
        # the same layers, but not the same ones with a value (a layer failing its CRC in one checkpoint, another
        # in the next): a mean over other layers can rank first for the layer it lost
        parts.append(f"the means are over different layers in each model (layers with a finite {c.metric}: "
                     + ", ".join(f"{lab} {len(f)}" for lab, f in zip(c.labels, finite))
                     + ", not the same ones): the ranking averages each model's own; see each model's rows")
    if c.name_alignment:
        parts.append(f"layer names matched to {c.labels[0]}'s by " + "; ".join(c.name_alignment))
    said = [(lab, r.source) for lab, r in zip(c.labels, c.results) if _READER_NOTE.search(r.source)]
    if said:  # (as htsr analyze prints it under 'source:'; a saved run's as it was analysed)
        parts.append("what was read: " + "; ".join(f"{lab}: {source}" for lab, source in said))
    return parts


def format_comparison(c: Comparison, columns: Sequence[str] | None = None, layers: bool = True) -> str:
    """The comparison as aligned plain text: the summary table (one row per model), the ranking and,
    with ``layers``, the per-layer values side by side."""
    cols = [x for x in (SHOWN_SUMMARY if columns is None else columns) if x in c.summary_columns]
    if c.metric not in cols:
        cols.append(c.metric)
    idx = [c.summary_columns.index(x) for x in cols]
    rank_of = {e.label: e.rank for e in c.ranking}
    parts = [
        "summary (counts; metric means over the layers where they are finite):",
        _table(["model", *cols, "rank"],
               [[lab, *(format_value(row[i]) for i in idx), "-" if rank_of[lab] is None else str(rank_of[lab])]
                for lab, row in zip(c.labels, c.summary)]),
        "",
        f"ranking by {'' if _a_count(c.metric) else 'mean '}{c.metric} ({direction_word(c.ascending)}"
        + (", as given" if c.direction_from == "user" else " in HTSR's reading, not a measured accuracy")
        + f"; 1 = {'lowest' if c.ascending else 'highest'}): "
        + "  ".join([f"{e.rank}. {e.label} ({format_value(e.value)})" for e in c.ranking if e.rank is not None]
                    + [f"unranked (no value): {', '.join(e.label for e in c.ranking if e.rank is None)}"]
                    * any(e.rank is None for e in c.ranking))
        + (f" ({c.metric} needs {_NEEDS[c.metric][2]})"
           if all(e.rank is None for e in c.ranking) and not _computes(c.metric, c.results[0].options) else ""),
    ]
    parts += comparison_notes(c)
    if c.common_layers:
        of = ("" if all(r.summary.means_over == "all" for r in c.results)
              else ", of the rows the summary means average")
        n = c.num_common_finite
        parts.append(f"mean {c.layer_metric} over the {n} layer{'s' * (n != 1)} present in every model with one "
                     f"shape where it is finite in each{of} (the same layers for all): "
                     + "  ".join(f"{lab} {format_value(v)}" for lab, v in zip(c.labels, c.common_means)))
    if layers:
        parts += ["", f"{c.layer_metric} per layer, {len(c.common_layers)} layer{'s' * (len(c.common_layers) != 1)} "
                      "present in every model"
                  + (f" ({len(c.shape_differs)} of them under one name but of other shapes: other layers, "
                     "shown with their shapes)" if c.shape_differs else "") + ":"]
        if not c.common_layers and c.partial_layers:
            firsts = {lab: next(n for n, h in c.partial_layers if lab in h) for lab in c.labels
                      if any(lab in h for _, h in c.partial_layers)}
            parts.append("no layer name is in every model, so no layer is compared side by side (first names: "
                         + "; ".join(f"{lab} {n!r}" for lab, n in firsts.items())
                         + "): the models name their layers differently")
        if c.common_layers:
            parts.append(_table(["name", "kind", "shape", *c.labels],
                                [[n, k, _shape_text(s), *(format_value(x) for x in v)]
                                 for n, k, s, v in zip(c.common_layers, c.layer_kinds, c.layer_shapes,
                                                       c.layer_values)], text_columns=3))
    if c.partial_layers:
        parts += ["", f"{len(c.partial_layers)} layer{'s' * (len(c.partial_layers) != 1)} present in only some models:"]
        parts += [f"  {n}: {', '.join(h)}" for n, h in c.partial_layers]
    return "\n".join(parts)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties) over the pairs where both are finite; NaN
    with fewer than two pairs or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return NAN
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / den if den > 0 else NAN


def _average_ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(v.size)
    ranks[order] = np.arange(1, v.size + 1, dtype=np.float64)
    for u in np.unique(v):
        tie = v == u
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


# ----------------------------------------------------------------------------------------------------------
# a model against its base, layer by layer


#: rows per chunk of the sums of squares and products below (float64 rows of this many entries at most: 16 MB)
_CHUNK = 1 << 21


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Centred linear CKA between X (n × p) and Y (n × q), rows = examples.

    Columns are centred; CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F). Only min(n, p, q)-sided products are formed:
    with n ≥ the feature counts the feature-side products above, summed in float64 over chunks of rows (no
    float64 copy of either matrix: an embedding's 128 256 × 3 072 had taken four, 12 GB), otherwise the n × n
    kernels (‖YᵀX‖²_F = ⟨XXᵀ, YYᵀ⟩_F and ‖XᵀX‖_F = ‖XXᵀ‖_F). NaN when a side has no variance.
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"expected two matrices with the same number of rows, got {X.shape} and {Y.shape}")
    n, p, q = X.shape[0], X.shape[1], Y.shape[1]
    if n * n <= p * q + p * p + q * q:
        X = np.array(X, dtype=np.float64)  # (a copy, centred in place)
        Y = np.array(Y, dtype=np.float64)
        X -= X.mean(axis=0)
        Y -= Y.mean(axis=0)
        Kx, Ky = X @ X.T, Y @ Y.T
        num = float(np.vdot(Kx, Ky))
        den = float(np.linalg.norm(Kx)) * float(np.linalg.norm(Ky))
    else:
        mx, my = X.mean(axis=0, dtype=np.float64), Y.mean(axis=0, dtype=np.float64)
        xx, yy, yx = np.zeros((p, p)), np.zeros((q, q)), np.zeros((q, p))
        step = max(1, _CHUNK // (p + q))
        for s in range(0, n, step):
            x = X[s:s + step].astype(np.float64)
            y = Y[s:s + step].astype(np.float64)
            x -= mx
            y -= my
            xx += x.T @ x
            yy += y.T @ y
            yx += y.T @ x
        num = float(np.linalg.norm(yx)) ** 2
        den = float(np.linalg.norm(xx)) * float(np.linalg.norm(yy))
    if not den > 0 or not math.isfinite(den):
        return NAN
    return min(1.0, max(0.0, num / den))


def _sum_of_squares(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Σ (a − b)² (or Σ a²) of two matrices in float64, over chunks of rows: no float64 copy of a whole one."""
    a = np.asarray(a)
    b = None if b is None else np.asarray(b)
    step = max(1, _CHUNK // max(1, a.size // max(1, len(a))))
    total = 0.0
    for s in range(0, a.shape[0], step):
        d = a[s:s + step].astype(np.float64)
        if b is not None:
            d -= b[s:s + step]  # (in place: b's chunk cast as it is read)
        total += float(np.linalg.norm(d)) ** 2  # (BLAS's nrm2: no copy)
    return total


@dataclass(frozen=True, eq=False)
class LayerDistance(NanEqual):
    """One row name of the model against the same row of the base (``status`` 'ok', 'skipped: …' or
    'failed: …'; the numbers are NaN unless 'ok')."""

    name: str
    kind: str
    shape: str  # the model's tensor shape ('' when only in the base)
    N: int
    M: int
    num_matrices: int
    status: str
    frobenius: float = NAN  # ‖W_a − W_b‖_F over the layer's matrices
    relative_frobenius: float = NAN  # ‖W_a − W_b‖_F / ‖W_b‖_F
    js_distance: float = NAN  # Jensen–Shannon distance (base 2) between the two ESDs, as rand_js_distance
    lambda_max: float = NAN  # the model's largest eigenvalue (units of the ESD: scaled as in analyze)
    lambda_max_base: float = NAN
    lambda_max_change: float = NAN  # (λ_max − λ_max,base) / λ_max,base
    cka: float = NAN  # centred linear CKA, oriented and pooled as in the module docstring
    cka_chance: float = NAN  # ≈ M / (k·N + M): CKA of two independent Gaussian matrices of this shape
    # the base's row measured against ('encoder.layer.0.fc' for 'bert.encoder.layer.0.fc' when the names were
    # aligned by a leading prefix, as --base aligns them); '' when the base has no such row
    base_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


DISTANCE_COLUMNS = tuple(LayerDistance.__dataclass_fields__)


def _stacked(mats: Sequence[np.ndarray]) -> np.ndarray:
    """The layer's matrices oriented N × M (the longer side as rows) and stacked along the rows (one matrix: a view)."""
    mats = [np.asarray(W).T if W.shape[0] < W.shape[1] else np.asarray(W) for W in mats]
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=0)


def _distance_row(la, lb, opts: Options) -> LayerDistance:
    try:
        return _measured(la, lb, opts)
    finally:
        for lm in (la, lb):
            if lm.release is not None:  # (a tensor read once for several rows is not kept for it)
                lm.release()


def _measured(la, lb, opts: Options) -> LayerDistance:
    from .analyze import esd_scale
    from .rmt.traps import js_distance
    from .spectra import Factored, esd, weights_finite

    base = dict(name=la.name, kind=la.kind, shape="x".join(map(str, la.tensor_shape)), N=la.N, M=la.M,
                num_matrices=la.num_matrices)
    if opts.max_evals is not None and la.num_evals > opts.max_evals:
        return LayerDistance(**base, status=f"skipped: {la.num_evals} eigenvalues > max_evals={opts.max_evals}")
    try:
        raw_a, raw_b = la.load(), lb.load()
        # the entries (a LoRA update's product formed here: distances need them); spectra from the originals
        A = [W.dense() if isinstance(W, Factored) else np.asarray(W) for W in raw_a]
        B = [W.dense() if isinstance(W, Factored) else np.asarray(W) for W in raw_b]
        if not (weights_finite(A) and weights_finite(B)):
            return LayerDistance(**base, status="failed: NaN or Inf in the weights")
        diff2 = math.fsum(_sum_of_squares(a, b) for a, b in zip(A, B))
        base2 = math.fsum(_sum_of_squares(b) for b in B)
        frob = math.sqrt(diff2)
        scale = esd_scale(la, opts)
        sa = esd(raw_a, opts.precision, opts.refine_fraction, scale)
        sb = esd(raw_b, opts.precision, opts.refine_fraction, scale)
        cka = linear_cka(_stacked(A), _stacked(B))
        del A, B, raw_a, raw_b
    except LayerSkipped as e:  # (as analyze says of the row: a PiSSA adapter's update, an unformed merge …)
        return LayerDistance(**base, status=f"skipped: {e}")
    except HtsrError as e:
        return LayerDistance(**base, status=f"failed: {e}")
    except Exception as e:  # one bad layer never stops the run
        return LayerDistance(**base, status=f"failed: {described(e)}")
    la_max, lb_max = float(sa.evals[-1]), float(sb.evals[-1])
    k_n = la.num_matrices * la.N
    return LayerDistance(
        **base, status="ok", frobenius=frob, relative_frobenius=frob / math.sqrt(base2) if base2 > 0 else NAN,
        js_distance=js_distance(sa.evals, sb.evals, sa.floor, sb.floor),
        lambda_max=la_max, lambda_max_base=lb_max,
        lambda_max_change=(la_max - lb_max) / lb_max if lb_max > 0 else NAN,
        cka=cka, cka_chance=la.M / (k_n + la.M))


#: the options that select and shape the rows layer_distances compares
DISTANCE_OPTIONS = ("layers", "split", "kinds", "conv", "ww_conv_scale", "precision", "refine_fraction", "normalize",
                    "max_evals")


def layer_distances(a: Any, b: Any, **options: Any) -> list[LayerDistance]:
    """Model ``a`` against base ``b``, row by row (see the module docstring).

    ``options``: the analysis options that select and shape the rows (layers, split, kinds, conv,
    ww_conv_scale, precision, refine_fraction, normalize, max_evals); ``base`` is refused (the pair is
    ``a`` and ``b``). Rows follow ``a``'s order (and names), then the base-only rows. Names are matched as
    ``--base`` matches them: exactly, else by dropping, adding or replacing a leading prefix of up to three components.
    """
    from .analyze import _progress_bar, in_threads, iter_layers
    from .io.delta import align_names

    opts = Options.create(**options)
    if opts.base is not None:
        raise OptionError("layer_distances compares its two sources; the base option does not apply")
    inert = [k for k, v in options.items() if k not in DISTANCE_OPTIONS + tuple(UI_OPTIONS)
             and v != OPTION_SPECS[k].default]
    if inert:  # (a fit's options: the distances fit nothing)
        raise OptionError(f"option {inert[0]!r} does not change the distances (they take "
                          f"{', '.join(DISTANCE_OPTIONS)}); leave it out")
    description_b, _, it_b = iter_layers(b, opts)
    base_rows = {}
    for lm in it_b:  # lazy: names and shapes only, no tensor data
        base_rows.setdefault(lm.name, lm)
    description, _, it_a = iter_layers(a, opts)
    rows_a = list(it_a)  # lazy rows: names and shapes only
    updates = [any(row_tag(lm.name) == "delta" for lm in rows) for rows in (rows_a, base_rows.values())]
    if updates[0] != updates[1]:  # an adapter against a model: its 'x#delta' rows had matched no row (0 compared)
        raise OptionError(f"{description if updates[0] else description_b}: an adapter (its rows are updates ΔW), "
                          "against a model's weights: give the adapted model (peft's merge_and_unload, saved), or "
                          "analyse the updates with 'htsr analyze ADAPTER --base BASE' (two adapters compare)")
    # names matched as --base matches them: exactly, else by a leading prefix ('bert.encoder…' against
    # the base's 'encoder…')
    shape_a = {la.name: la.tensor_shape for la in rows_a}
    rename, _ = align_names([la.name for la in rows_a], base_rows,
                            lambda a, b: shape_a[a] == base_rows[b].tensor_shape)
    rename = rename or (lambda n: n)
    out, seen, matched, pairs = [], set(), set(), {}
    for la in rows_a:
        if la.name in seen:
            continue
        seen.add(la.name)
        lb = base_rows.get(rename(la.name))
        info = dict(name=la.name, kind=la.kind, shape="x".join(map(str, la.tensor_shape)), N=la.N, M=la.M,
                    num_matrices=la.num_matrices)
        if lb is None:
            out.append(LayerDistance(**info, status="skipped: only in the model (the base has no row of this name)"))
            continue
        matched.add(lb.name)
        # the same tensor shape, as --base pairs them (a 7 x 1 kernel and a 1 x 7 had been one matrix shape)
        if (la.tensor_shape, la.rows, la.cols, la.num_matrices) != (lb.tensor_shape, lb.rows, lb.cols, lb.num_matrices):
            row = LayerDistance(**info, status=f"skipped: shape {info['shape']} differs from the base's "
                                               f"{'x'.join(map(str, lb.tensor_shape))}")
            out.append(replace(row, base_name=lb.name))
        else:
            pairs[len(out)] = (la, lb)
            out.append(None)
    # the pairs measured as analyze runs its rows: small ones side by side on single-threaded BLAS
    base_of = {la.name: lb for la, lb in pairs.values()}
    bar = _progress_bar(len(pairs), f"distances {description}") if opts.progress else None
    try:
        measured = in_threads([la for la, _ in pairs.values()], lambda la: _distance_row(la, base_of[la.name], opts),
                              opts.workers, bar)
    finally:
        if bar is not None:
            bar.close()
    for i, row in zip(pairs, measured):
        out[i] = replace(row, base_name=pairs[i][1].name)
    for name, lb in base_rows.items():
        if name not in matched:
            out.append(LayerDistance(name, lb.kind, "", lb.N, lb.M, lb.num_matrices,
                                     "skipped: only in the base (the model has no row of this name)", base_name=name))
    return out


DISTANCE_TABLE = ("name", "kind", "shape", "frobenius", "relative_frobenius", "js_distance", "lambda_max_change",
                  "cka", "cka_chance", "status")


def format_distances(distances: Sequence[LayerDistance], columns: Sequence[str] = DISTANCE_TABLE) -> str:
    """The per-layer distances as aligned plain text, and one line of totals."""
    lead = [c for c in columns if c in ("name", "kind", "shape")]  # the text columns first, status last
    columns = [*lead, *(c for c in columns if c not in (*lead, "status")), *(["status"] if "status" in columns else [])]
    rows = [[format_value(getattr(d, c)) for c in columns] for d in distances]
    out = _table(columns, rows, text_columns=len(lead))
    ok = [d for d in distances if d.status == "ok"]
    skipped = sum(d.status.startswith("skipped") for d in distances)
    failed = sum(d.status.startswith("failed") for d in distances)
    line = f"{len(ok)} layers compared, {skipped} skipped, {failed} failed"
    renamed = [d for d in distances if d.base_name and d.base_name != d.name]
    if renamed:
        line += (f" ({len(renamed)} against a base row of another name, the names aligned as --base aligns "
                 f"them: {renamed[0].name!r} against {renamed[0].base_name!r}; base_name column)")
    if ok:
        def med(attr: str) -> float:
            v = [getattr(d, attr) for d in ok if math.isfinite(getattr(d, attr))]
            return float(np.median(v)) if v else NAN
        line += (f"; medians: relative_frobenius {format_value(med('relative_frobenius'))}  js_distance "
                 f"{format_value(med('js_distance'))}  cka {format_value(med('cka'))} (chance {format_value(med('cka_chance'))})")
    return out + "\n" + line


def distances_csv_text(distances: Iterable[LayerDistance]) -> str:
    return csv_table(DISTANCE_COLUMNS, ([getattr(d, c) for c in DISTANCE_COLUMNS] for d in distances))
