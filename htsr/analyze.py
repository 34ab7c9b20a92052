"""Orchestration: source → named tensors → matrices → spectra → fits → metrics → results.

A problem confined to one layer (NaN weights, an all-zero matrix, a failed fit, any unexpected error
while reading or computing it) becomes that layer's ``status``; the other layers go on.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import HtsrError, LayerSkipped, OptionError, SourceError, described, listed
from .fits.powerlaw import PowerLawFit, fit_power_law
from .fits.uncertainty import interval_of, tail_uncertainty
from .io import FLOAT_DTYPES, is_reader, open_source
from .io.base import raising_loader, read_json, unit_roundoff
from .io.delta import DeltaSource
from .io.scales import unscaled_integer_weight, void_hint
from .matrices import (LayerMatrices, aspect_window_shape, aspect_windows, layer_matrices, split_rows,
                       unread_tensor_row)
from .metrics import compute_metrics, warning_for
from .options import KIND_BOUND, OPTION_SPECS, Options, acts_on, kinds_words, options_doc, row_kinds
from .specs import SPLIT_KINDS, SplitRule
from .results import AnalysisResult, LayerResult, LayerSpectra, NotAnalysed, Summary, saved_result
from .rmt import (
    MPFit,
    PhaseThresholds,
    Randomized,
    bbp_entry_scale,
    count_heavy_entries,
    delta_lambda_min,
    erg_eigenvalues,
    erg_tail,
    fit_mp,
    js_distance,
    layer_quality,
    localization,
    mp_fits_bulk,
    num_zero_evals,
    phase_of,
    randomize,
    spike_localization,
)
from .spectra import Factored, Spectrum, SpectrumOverflow, esd, resolved_cuts
from .tensors import ROW_TAG, channels_last_conv, classify, is_bias_or_buffer, row_name

__all__ = ["analyze", "analyze_layer", "check_has_layers", "iter_layers"]

#: WeightWatcher drops eigenvalues at or below this absolute value before the power-law fit
WW_EVALS_THRESH = 1e-5
#: ... which is meant for numerical zeros: where it exceeds this fraction of the layer's largest eigenvalue
#: (tiny weights: a fine-tune's update W − W_base, weights scaled by 1e-3) it would cut into the spectrum
#: itself, so the layer's own numerical floor is used instead
WW_FLOOR_MAX_FRACTION = 1e-3
#: layers whose matrices have at most this smaller side are analysed side by side in threads (larger ones one at a
#: time, each with every BLAS thread: two at once would hold two of the largest Grams)
THREADED_MAX_M = 4096
#: ... unless their eigensolver work (Σ over the matrices of N·M² + M³: the Gram and its eigenvalues) is below
#: this: their time is then the fits', Python holding its lock, and two threads taking turns for it are slower than
#: one at a time. On 2 cores, 150 layers each, one at a time against two threads: 128 × 64 ×0.76, 256 × 128 ×0.91,
#: 384 × 192 ×1.00, 256 × 256 ×1.13, 768 × 768 ×1.90
TINY_WORK = 1 << 24
#: float32's unit roundoff: a storage coarser than it (bfloat16, float16, FP8) rounds the entries visibly
_FLOAT32_ROUNDOFF = 2.0 ** -24
#: eigenvalues below the storage's rounding floor are zeros only when at least ROUNDING_MIN_ZEROS of them are
#: and the next one lies ROUNDING_GAP times above the floor: a gap, as a rank-deficient layer's spectrum has (a
#: full-rank one runs on through the floor; a square one's smallest one or two may fall far below the next by
#: chance, its smallest singular values spaced like 1, 2, 3 … times the first)
ROUNDING_GAP = 10.0
ROUNDING_MIN_ZEROS = 3


def _tensor(name: str) -> str | None:
    """The tensor a reader's ref stands for: an expert's update of one stored LoRA pair it yields apart
    (``#delta[3]``) is the pair's, which counts once; an adapter's ``#merged`` row, W + ΔW, is no stored tensor
    (None: not counted), its ``#base`` the base model's."""
    m = ROW_TAG.search(name)
    if m and m["tag"] == "merged":
        return None
    return name[:m.start("item")] if m and m["tag"] == "delta" and m["item"] else name


class Tally:
    """What became of a source's tensors as :func:`iter_layers` runs: the names the reader gave (a quantized
    weight's scales and parts, folded into it, are not separate tensors), and those that give no row, by
    reason."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}  # every tensor, in order (a dict as an ordered set)
        self.files: set[str] = set()  # the files the source (and its base) read, resolved
        self.passed_over: dict[str, list[str]] = {}
        self._part_of: dict[str, str] = {}  # a ref's name → the stored tensor it is one of (TensorRef.part_of)
        # the split rules that cut a row, when the caller checks them (compare: across its models); None: a rule
        # that cuts none of this source's rows is refused here
        self.split_cut: set[str] | None = None

    def seen(self, name: str, part_of: str | None = None) -> None:
        if part_of is not None:
            self._part_of[name] = part_of
        tensor = part_of or _tensor(name)
        if tensor is not None:
            self.names[tensor] = None

    def passed(self, name: str, reason: str) -> None:
        tensor = self._part_of.get(name) or _tensor(name)
        if tensor is None:  # an adapter's #merged row left out: no tensor to list
            return
        self.names[tensor] = None
        self.passed_over.setdefault(reason, []).append(name)

    def used_by(self, merged: str) -> None:
        """An adapter's ``<module>#merged`` row is analysed: W + ΔW uses its ``#base`` and ``#delta`` tensors,
        which are analysed then, whatever filter left their own rows out."""
        m = ROW_TAG.search(merged)
        used = {f"{merged[:m.start()]}#{tag}{m['item'] or ''}" for tag in ("base", "delta")}
        for reason in list(self.passed_over):
            self.passed_over[reason] = [n for n in self.passed_over[reason] if n not in used]
            if not self.passed_over[reason]:
                del self.passed_over[reason]

    @property
    def num_tensors(self) -> int:
        return len(self.names)


def open_model(source: Any) -> Any:
    """:func:`open_source`; a run htsr saved (``--out`` folder, ``--json`` document), which no reader reads, is
    named as one, with what reads it (the readers had listed the weight formats)."""
    try:
        return open_source(source)
    except SourceError:
        if saved_result(source) is None:
            lookalike = _run_lookalike(source)
            if lookalike:  # (not the list of the weight formats: it is no model)
                raise SourceError(f"{source}: {lookalike}") from None
            raise
        raise SourceError(f"{source}: a run htsr saved (its results, not a model's weights): compare reads it as it "
                          "is ('htsr compare RUN1 RUN2'), and so does htsr.results.load_result") from None


def _run_lookalike(source: Any) -> str:
    """What a source no reader reads is, when it looks like a run: a folder of a saved run's files and others (not a
    saved run: a model folder may hold an earlier run's files), or compare's own JSON; '' for anything else."""
    if not isinstance(source, (str, os.PathLike)) or not os.fspath(source):
        return ""
    p = Path(source)
    try:
        if p.is_dir() and (p / "layers.csv").is_file() and (p / "summary.json").is_file():
            others = sorted(f.name for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                            and f.name not in ("layers.csv", "summary.json", "report.html"))
            return (f"a saved run's layers.csv and summary.json beside other files ({listed(others, 3)}): read as a "
                    "model's folder, it holds no weights; move those files out to read it as the run")
        if p.suffix.lower() == ".json":
            doc = read_json(p)
            if isinstance(doc, dict) and {"labels", "ranking"} <= set(doc):
                return "a comparison htsr compare wrote (--json), not a run: give the runs or models it compared"
    except (OSError, ValueError, RecursionError):
        pass
    return ""


def _files_read(src: Any) -> set[str]:
    """The files an opened source reads (its ``input_files``: shards, an ONNX model's external data; its own
    file), resolved."""
    files = list(getattr(src, "input_files", ()))
    path = getattr(src, "path", None)
    if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
        files.append(path)
    return {os.path.realpath(f) for f in files}


def iter_layers(source: Any, opts: Options, tally: Tally | None = None
                ) -> tuple[str, int, Iterator[LayerMatrices]]:
    """Open ``source`` and return (description, number of tensors, iterator of filtered layers); the tensors
    a reader passed over count too (the number is the reader's own count, known before the iteration;
    ``tally`` has the exact one after it).

    ``tally``, when given, records every tensor and the reason of each that gives no row as the iterator
    runs (and, once it is exhausted, those the reader itself passed over: ONNX, Keras, Flax)."""
    tally = tally if tally is not None else Tally()
    src = open_model(source)
    tally.files.update(_files_read(src))
    if opts.base is not None:
        # an adapter's base gives W and W + ΔW rows; any other model's base gives deltas W - W_base
        base = open_model(opts.base)
        tally.files.update(_files_read(base))
        if hasattr(base, "with_base"):  # a LoRA adapter folder: an update, not a model to subtract or merge into
            raise SourceError(f"{base.description}: --base is a LoRA adapter; give the base model the "
                              "adapter was trained on (and the adapter as the model)")
        if getattr(src, "is_lora_adapter", False):  # a llama.cpp LoRA adapter (GGUF)
            raise SourceError(f"{src.description}: a llama.cpp LoRA adapter: its rows are the updates ΔW alone, "
                              "and --base is not read with it; merge it (llama-export-lora) and give the merged "
                              "model with --base for W − W_base")
        src = src.with_base(base) if hasattr(src, "with_base") else DeltaSource(src, base)
    pattern = re.compile(opts.layers) if opts.layers else None
    passed_over = tally.passed

    taken: set[str] = set()
    splits = [SplitRule.parse(text) for text in opts.split]
    split_any: set[str] = set()  # the rules that took a row
    found: set[str] = set()  # the rules whose pattern found a row an earlier rule took
    misfit: dict[str, list[str]] = {}  # a row a rule does not fit (one failed row) → the names its parts would have

    def split(lm: LayerMatrices, unread: bool) -> list[LayerMatrices]:
        # a fused matrix's parts (option 'split'), by the first rule whose pattern finds the row's name
        rules = [r for r in splits if r.pattern.search(lm.name)]
        if unread and rules:  # a tensor that cannot be read, or a row skipped (a delta's fused experts against a
            # base that holds them one tensor each): its one row says why, not one per part; the rule found it (it
            # had been refused as cutting nothing, h61)
            split_any.add(rules[0].text)
            return [lm]
        if lm.num_matrices != 1 or lm.kind not in SPLIT_KINDS or (lm.kind == "lora" and len(lm.tensor_shape) != 2):
            return [lm]
        if not rules:
            return [lm]
        split_any.add(rules[0].text)
        found.update(r.text for r in rules[1:])
        parts = split_rows(lm, rules[0])
        if len(parts) == 1:  # (the parts do not fit: --layers given a part's name keeps its failed row)
            misfit[lm.name] = [f"{lm.name}[{label}]" for label in rules[0].labels]
        return parts

    def unique(lm: LayerMatrices) -> LayerMatrices:
        # two tensors can give one row name ('fc.weight' and 'fc'): the later is 'fc#2', so that every name
        # (a monitor's history, plot_layer, compare's matching) means one row
        if lm.name in taken:
            k = 2
            while f"{lm.name}#{k}" in taken:
                k += 1
            lm = dataclasses.replace(lm, name=f"{lm.name}#{k}")
        taken.add(lm.name)
        return lm

    def gen() -> Iterator[LayerMatrices]:
        first_name: dict[tuple, str] = {}  # storage key → the name of the tensor stored there that gave rows
        for t in src:
            tally.seen(t.name, t.part_of)
            if t.dtype not in FLOAT_DTYPES:
                integer = t
                t = unscaled_integer_weight(t)  # a quantized weight htsr cannot read: a row that says so
                if t is None:  # integer buffers (position ids, counters) are not weights
                    passed_over(integer.name, "integer buffer (ids, masks, counters)"
                                if integer.dtype.startswith(("int", "uint", "bool"))
                                else f"{integer.dtype} tensor: not a dtype of weights htsr analyses"
                                + void_hint(integer.dtype))
                    continue
            if t.kind is None and not hasattr(t.loader, "reason") and (order := channels_last_conv(t.name,
                                                                                                 tuple(t.shape))):
                # a TensorFlow-layout conv kernel read by its name and shape: as torch's layout, which the conv
                # rows take (its trailing axes, read as kernel taps, had made 8192 matrices of 3 x 3)
                t = dataclasses.replace(t, shape=tuple(t.shape[i] for i in order), load_item=None,
                                        loader=lambda t=t, order=order: np.transpose(t.load(), order))
            kind, why_not = (t.kind, "") if t.kind else classify(t.name, t.shape)
            if kind is not None and kind != "lora" and (len(t.shape) < 2 or min(t.shape) < 0):
                # a reader's kind on a shape of no matrix (a corrupt header's): as classify says of it
                kind, why_not = None, f"shape {list(t.shape)} of no matrix"
            if (kind is None and hasattr(t.loader, "reason") and len(t.shape) < 2
                    and not is_bias_or_buffer(t.name)):
                # a reader's row that says why it cannot be read (a corrupt 1-D qweight, an array of
                # pickled objects): shown whatever its shape, never dropped without a word
                row_kind = t.kind or "dense"  # (a Lazy module's weight not initialized: its layer's kind)
                lm = unique(LayerMatrices(row_name(t.name), row_kind, tuple(t.shape), 1, max(1, math.prod(t.shape)),
                                          1, 1.0, t.load))
                if pattern is not None and not pattern.search(lm.name):
                    passed_over(t.name, _NOT_MATCHED)
                elif opts.kinds is not None and row_kind not in opts.kinds:
                    passed_over(t.name, f"kind {row_kind} not in option 'kinds'")
                else:
                    yield lm
                continue
            if kind is None:
                passed_over(t.name, why_not)
                continue
            if opts.kinds is not None and kind not in opts.kinds:
                passed_over(t.name, f"kind {kind} not in option 'kinds'")
                continue
            if t.storage_key in first_name:  # after the filters: a tied name they keep is analysed
                passed_over(t.name, f"the same tensor as {first_name[t.storage_key]} (tied weights): analysed once")
                continue
            matched = False  # a tensor is not analysed only if none of its rows (experts, positions) matches
            # (an empty stack or conv too: one 'empty matrix' row, not 2^32 kernel positions of nothing, as a
            # corrupt ONNX Conv of [0, 1, 65536, 65536] gave)
            unread = (hasattr(t.loader, "reason") or 0 in t.shape) and kind in ("stack", "conv1d", "conv2d",
                                                                                    "conv3d")
            try:  # (listed here: a shape or kind no matrix has, from a reader, fails its row, not the run)
                rows = ([unread_tensor_row(t.name, kind, tuple(t.shape), t.load)] if unread else
                        list(layer_matrices(t.name, kind, t.shape, t.load, opts.conv, opts.ww_conv_scale,
                                            t.load_item)))
            except Exception as e:  # noqa: BLE001 - one bad tensor never stops a run
                why = f"no matrices of its {kind} tensor of shape {_shown_shape(t.shape)} ({described(e)})"
                rows = [LayerMatrices(row_name(t.name), kind, (), 1, 1, 1, 1.0, raising_loader(HtsrError, why))]
            else:
                rows = [part for lm in rows for part in split(lm, hasattr(t.loader, "reason"))] if splits else rows
            # a delta's rounding noise, the same for every row of its tensor, and a storage coarser than float32's
            # (a bfloat16 checkpoint), whose rounding the entries carry (a delta's rounding is its inputs',
            # ``resolution``: not its storage's share of its own size)
            eps = unit_roundoff(t.dtype) if t.bits is None and t.resolution is None else 0.0
            noise = {"resolution": t.resolution} if t.resolution is not None else {}
            if eps > _FLOAT32_ROUNDOFF:
                noise["storage_eps"] = eps
            for lm in rows:
                lm = unique(lm)  # (before --layers: a row's name never depends on which rows that filter keeps)
                if pattern is not None and not any(pattern.search(n) for n in [lm.name, *misfit.get(lm.name, ())]):
                    if lm.release is not None:  # (an expert or kernel position left out: its tensor not kept for it)
                        lm.release()
                    continue
                matched = True
                yield dataclasses.replace(lm, **noise) if noise else lm
            if not matched:
                passed_over(t.name, _NOT_MATCHED)
            else:
                if t.storage_key is not None:
                    first_name[t.storage_key] = t.name
                if (m := ROW_TAG.search(t.name)) and m["tag"] == "merged" and not hasattr(t.loader, "reason"):
                    tally.used_by(t.name)  # (a merge not formed reads nothing)
        # a tensor the reader both lists and yields as a row that says why (an ONNX weight it cannot
        # dequantize) is that row
        for name, reason in getattr(src, "skipped", ()):
            if name not in tally.names:
                passed_over(name, f"passed over by the reader: {reason}")
        for name, reason in getattr(src, "not_weights", ()):  # the reader's own no-weights (ONNX's 1-D …)
            if name not in tally.names:
                passed_over(name, reason)
        if tally.split_cut is not None:  # (the caller checks: a rule may cut another model's rows)
            tally.split_cut.update(split_any)
            splits_checked = []
        else:
            splits_checked = splits
        for rule in splits_checked:  # a rule that cut nothing would change nothing: refused, as an option that does
            if rule.text not in split_any:
                why = ("every row it matches an earlier rule cuts (the first rule that matches a row cuts it)"
                       if rule.text in found else
                       SPLIT_CUTS_NOTHING)
                raise OptionError(f"{src.description}: option 'split' rule '{rule.text}' cuts nothing: {why}")

    # with split rules, the rows are listed now (headers only, no tensor read): a rule that cuts nothing is refused
    # before any analysis, whoever lists them (compare's check of each model, the monitor when it is built)
    rows = iter(list(gen())) if splits else gen()
    # the readers' skip lists are complete once the source is open
    return (src.description, len(src) + len(getattr(src, "skipped", ())) + len(getattr(src, "not_weights", ())),
            rows)


#: why a tensor none of whose rows --layers matches gives none
_NOT_MATCHED = "not matched by option 'layers'"


def no_layer_error(description: str, tally: Tally, opts: Options) -> SourceError:
    """The error for a source of which no layer is analysed (under the filters, if any), with the reasons
    its tensors gave no row, the most common first."""
    what = "matches the filters" if (opts.layers or opts.kinds) else "is a weight matrix htsr can read"
    if not tally.num_tensors:  # (an ONNX export without its weights: export_params=False)
        return SourceError(f"{description}: no analysable layer: it holds no tensors; give a model saved with its "
                           "weights")
    reasons = sorted(tally.passed_over.items(), key=lambda kv: -len(kv[1]))
    why = "; ".join(f"{len(names)} {reason} ({names[0]}{', …' if len(names) > 1 else ''})"
                    for reason, names in reasons[:3])
    unmatched = tally.passed_over.get(_NOT_MATCHED)
    if unmatched:  # (the tensors are listed by name: the pattern was tried on their rows' names)
        why += (f"; option 'layers' is matched against row names, a tensor's name without '.weight' "
                f"({row_name(unmatched[0])})")
    return SourceError(f"{description}: no analysable layer: none of its {tally.num_tensors} tensors {what}"
                       + (f": {why}" if why else ""))


#: why a split rule cut nothing, when it matched no row it can cut (iter_layers; compare across its models)
SPLIT_CUTS_NOTHING = (f"it matches no row it can cut (one matrix of kind {', '.join(SPLIT_KINDS)}; a conv's positions "
                      "are not cut); it is tried on row names: a tensor's name without '.weight', an expert's "
                      "name[e], an adapter's name#delta, name#base, name#merged")


def check_has_layers(source: Any, opts: Options, split_cut: set[str] | None = None) -> set[str]:
    """Raise :func:`no_layer_error` now, before other models' analyses, if ``source`` has no layer to
    analyse (its headers only: no tensor is read); else the kinds of its rows. ``split_cut`` (a set): the split
    rules that cut one of its rows are added to it, and one that cuts none is not refused here (compare checks
    them across its models)."""
    tally = Tally()
    tally.split_cut = split_cut
    description, _, layer_iter = iter_layers(source, opts, tally)
    kinds = row_kinds(layer_iter)
    if not kinds:  # the whole source was walked: the tally is complete
        raise no_layer_error(description, tally, opts)
    return kinds


def idle_options(opts: Options, kinds: set[str], given: Iterable[str] | None = None) -> list[str]:
    """The options (of ``given``, or all) set to other than their default that act on none of ``kinds``, the
    kinds of the rows listed: --conv per_position on a model without conv layers, --randomize on an adapter's
    updates alone (their entries are never formed). Such an option would change nothing: refused, as
    :meth:`Options.create` refuses one that acts on no kind option 'kinds' keeps."""
    given = KIND_BOUND if given is None else given
    return [name for name in KIND_BOUND if name in given and getattr(opts, name) != OPTION_SPECS[name].default
            and not acts_on(name, kinds)]


def idle_option_error(description: str, name: str, kinds: set[str], opts: Options, models: str = "") -> OptionError:
    """The error for option ``name`` acting on none of a model's rows (``description``: the model's), whose kinds are
    ``kinds``, under the filters of ``opts``; or (``models``: which, for compare) of several models' rows."""
    filters = " and ".join(f"option {f!r}" for f in ("layers", "kinds") if getattr(opts, f))
    has = (f"none of the rows {filters} {'keep' if ' and ' in filters else 'keeps'} is one (they are" if filters else
           f"none of {models} has one (their rows are" if models else "this model has none (its rows are")
    return OptionError(f"{description + ': ' if description else ''}option {name!r} acts only on "
                       f"{kinds_words(KIND_BOUND[name])} layers, and {has} {kinds_words(kinds)}): it would change "
                       "nothing; leave it out")


def _causal_mask(mats: list[Any]) -> bool:
    """Whether a layer's matrices are causal masks a module keeps as a float buffer (``register_buffer('tril',
    torch.tril(torch.ones(T, T)))``, as nanoGPT and "Let's build GPT" do): a triangle of ones, on and below (or
    above) the diagonal, zeros elsewhere. (Its ESD is no weight's: it had been fitted as an over-trained layer.)
    Told by four entries before any whole comparison, so that a weight costs nothing."""
    def triangle(W: Any) -> bool:
        if not (isinstance(W, np.ndarray) and W.ndim == 2 and W.shape[0] == W.shape[1] > 1 and W[0, 0] == 1
                and W[-1, -1] == 1 and {float(W[0, -1]), float(W[-1, 0])} == {0.0, 1.0}):
            return False
        ones = np.ones(W.shape, dtype=W.dtype)
        return bool(np.array_equal(W, np.tril(ones) if W[-1, 0] == 1 else np.triu(ones)))

    return bool(mats) and all(triangle(W) for W in mats)


def _attention_mask(mats: list[Any]) -> bool:
    """Whether a layer's matrices are additive attention masks a module keeps as a plain tensor (CLIP's causal
    77 × 77 ``attn_mask``, a TorchScript constant), not weights with Inf: square, 0 on the diagonal (a position
    always sees itself), 0 or −inf elsewhere, some −inf. (A diverged weight of −inf everywhere is no mask.)"""
    if not mats or any(isinstance(W, Factored) for W in mats):
        return False
    return all(W.ndim == 2 and W.shape[0] == W.shape[1] and not np.diagonal(W).any() and np.isneginf(W).any()
               and bool(np.all((W == 0) | np.isneginf(W))) for W in mats)


def weight_problem(mats: list[Any], scale: float) -> str:
    """Why a layer's matrices cannot be analysed, or '': NaN or Inf in them, or eigenvalues that would leave
    float64's range — with a the largest entry, an N × M matrix's largest eigenvalue lies between a² and
    N·M·a² (times the row's scale). One pass of max and min over the entries answers both (NaN propagates)."""
    if not all(W.is_finite() for W in mats if isinstance(W, Factored)):
        return "NaN or Inf in the weights"
    dense = [W for W in mats if not isinstance(W, Factored) and W.size]
    if not dense:
        return ""
    peaks = [max(float(W.max()), -float(W.min())) for W in dense]
    a = max(peaks)
    if not all(math.isfinite(p) for p in peaks):  # (max() keeps a NaN only when it comes first)
        return "NaN or Inf in the weights"
    if a * a * max(W.size for W in dense) * max(scale, 1.0) >= np.finfo(np.float64).max / 4:
        return (f"weights up to {a:.3g} in magnitude: eigenvalues could exceed float64's range; rescale the "
                "weights (alpha does not change with the scale)")
    if 0 < a and a * a * min(scale, 1.0) < 1e-300:
        return (f"weights of at most {a:.3g} in magnitude: eigenvalues below float64's range; rescale the "
                "weights (alpha does not change with the scale)")
    return ""


def _narrow_windows(lm: LayerMatrices, opts: Options) -> str:
    """Why FARMS windows of this row are too narrow to fit (a ``not_fitted`` status), or ''. A window cut
    narrower than the matrix needs min_evals eigenvalues, as a layer does: an ESD of a few eigenvalues per
    window has no bulk shape, and their pooled tail reflects single columns (an aspect above N gives N × 1
    windows, whose "eigenvalues" are squared column norms)."""
    a = opts.farms_aspect
    wN, wM = aspect_window_shape(lm.N, lm.M, a)
    if wM >= lm.M or wM >= opts.min_evals:
        return ""
    # an aspect up to N / M (≥ 1, as --farms-aspect must be) keeps the matrix whole, one window; one up to
    # N / min_evals cuts wide enough windows. Rounded down: the advice must work when followed
    most = math.floor(max(lm.N / lm.M, lm.N / opts.min_evals) * 100) / 100
    return (f"not_fitted: --farms-aspect {a:g} cuts this {lm.N}x{lm.M} matrix into {wN}x{wM} windows, fewer "
            f"than min_evals={opts.min_evals} eigenvalues each; use an aspect of at most "
            f"{most:.2f}".rstrip("0").rstrip(".") + " here, or a lower --min-evals")


def esd_scale(lm: LayerMatrices, opts: Options) -> float:
    """The eigenvalue multiplier of a row: its kind's convention, divided by N with normalize='N'."""
    return lm.scale / lm.N if opts.normalize == "N" else lm.scale


def analyze_layer(lm: LayerMatrices, opts: Options) -> LayerResult:
    """Analyse one row; never raises for problems confined to this layer. The same row as :func:`analyze` gives:
    on a single-threaded BLAS for the matrices :func:`in_threads` runs so (a threaded BLAS sums in another order)."""
    with _ANALYSIS_LOCK, _one_blas_thread() if _light(lm) else contextlib.nullcontext():
        return _analyze_layer(lm, opts)[0]


def _row_base(lm: LayerMatrices) -> dict[str, Any]:
    """The columns every row has, whatever became of its layer."""
    return dict(name=lm.name, kind=lm.kind, shape="x".join(map(str, lm.tensor_shape)), N=lm.N, M=lm.M,
                num_matrices=lm.num_matrices, num_evals=lm.num_evals, eig_method="",
                num_evals_below_floor=float("nan"), warning="")


def _analyze_layer(lm: LayerMatrices, opts: Options) -> tuple[LayerResult, LayerSpectra | None]:
    """The row and, with ``keep_spectra``, its eigenvalues (None when it has none)."""
    try:
        return _layer_row(lm, opts)
    except Exception as e:  # one bad layer never stops a run, whatever stage it fails in
        return LayerResult(**_row_base(lm), status=f"failed: {described(e)}"), None
    finally:
        if lm.release is not None:  # its tensor, read once for several rows, is not kept for it
            lm.release()


def _layer_row(lm: LayerMatrices, opts: Options) -> tuple[LayerResult, LayerSpectra | None]:
    base = _row_base(lm)
    if lm.num_evals == 0:
        return LayerResult(**base, status=f"skipped: an empty matrix (shape {base['shape']})"), None
    # (a row that says why it cannot be read says so, over max_evals too: a split rule that does not fit)
    if opts.max_evals is not None and lm.num_evals > opts.max_evals and not hasattr(lm.load, "reason"):
        return LayerResult(**base, status=f"skipped: {lm.num_evals} eigenvalues > max_evals={opts.max_evals}"), None
    try:
        mats = lm.load()
        scale = esd_scale(lm, opts)
        problem = weight_problem(mats, scale)
        if problem and _attention_mask(mats):
            return LayerResult(**base, status="skipped: an attention mask (entries 0 and −inf), not a weight"), None
        if not problem and _causal_mask(mats):
            return LayerResult(**base, status="skipped: a causal mask (a triangle of ones), not a weight"), None
        if problem:
            return LayerResult(**base, status=f"failed: {problem}"), None
        if not lm.storage_eps and lm.resolution is None and (eps := grid_roundoff(mats)) > _FLOAT32_ROUNDOFF:
            lm = dataclasses.replace(lm, storage_eps=eps)  # bfloat16 or float16 values held wider: their rounding
        _stop_point()
        try:
            spectrum = esd(mats, opts.precision, opts.refine_fraction, scale)
        except SpectrumOverflow:
            spectrum = None
        # (a factored update is checked here, by its spectrum: as weight_problem bounds a dense one's, its sum
        # of eigenvalues, M·λ_max at most, must stay within float64's range)
        if spectrum is None or (isinstance(mats[0], Factored) and spectrum.evals.size and float(
                spectrum.evals[-1]) * spectrum.evals.size >= np.finfo(np.float64).max / 4):
            return LayerResult(**base, status="failed: eigenvalues beyond float64's range; rescale the weights "
                                              "(alpha does not change with the scale)"), None
        num_windows, too_narrow, share = None, "", 1.0
        # a low-rank update is known by its factors only: what needs the entries (windows, shuffles,
        # heavy entries, eigenvectors) is not computed for it, and its MP fit would only say "rank-collapse"
        lowrank = isinstance(mats[0], Factored)
        factor_rank = mats[0].rank if lowrank else 0
        if lowrank:
            fit_spectrum = spectrum
        elif opts.farms_aspect is not None and (lm.num_evals < opts.min_evals or _no_spectrum(lm)):
            fit_spectrum = spectrum  # never fitted (below): no windows to cut (a depthwise 7x7 conv had 50 176)
        elif opts.farms_aspect is not None and (too_narrow := _narrow_windows(lm, opts)):
            fit_spectrum = spectrum  # not fitted; the rest of the row is the whole matrix's, as always
        elif opts.farms_aspect is not None:
            windows = [w for W in mats for w in aspect_windows(W, opts.farms_aspect)]
            fit_spectrum = esd(windows, opts.precision, opts.refine_fraction, scale)
            num_windows = len(windows)
            # overlapping windows repeat rows: the pooled values carry the distinct entries' share of information
            share = min(1.0, sum(W.size for W in mats) / sum(w.size for w in windows))
            del windows  # views into mats: they would keep the tensor alive through the fits
        else:
            fit_spectrum = spectrum
        # a coarse storage's rounding, under a gap
        zeros = storage_zeros = _rounding_zeros(spectrum.evals, lm, scale)
        if _round_off_left(spectrum):  # a larger refine_fraction left float32 round-off unrefined: zeros, as many
            # as the rank leaves out (each matrix's own below its floor, when they are more than 1 % of it: a
            # pooled layer's largest floor had taken 93 for 55)
            zeros = max(zeros, float(spectrum.evals[spectrum.evals.size - spectrum.rank - 1]))
        # a delta's eigenvalues below its inputs' rounding noise are not the update's: the noise matrix's largest
        # eigenvalue, (rms·(√rows + √cols))² for iid entries of that rms (the MP edge), in the fit's units
        rms = lm.resolution() if lm.resolution else 0.0
        # a delta wholly within its inputs' rounding noise: an MP fit of that noise has no spikes or phase of the
        # update's, and its shuffle no traps (an fp16 copy against its fp32 original had 'bulk+spikes' below the
        # noise edge): none is made
        noise_only = bool(rms) and spectrum.evals[-1] <= _noise_edge(rms, lm.rows, lm.cols, scale)
        _stop_point()
        mp, rmt, rmt_error, shuffled, driving = (None, {}, "", None, 0.0) if lowrank or noise_only else (
            _matrix_diagnostics(mats, lm, spectrum, scale, opts, zeros))
        kept = mats if opts.localization and not lowrank else None  # the eigenvectors need the matrices after the fit
        del mats
        rows, cols = (aspect_window_shape(lm.N, lm.M, opts.farms_aspect) if num_windows else (lm.rows, lm.cols))
        storage_floor = _noise_edge(rms, rows, cols, scale) if rms else 0.0
        # the storage's rounding under a gap, for FARMS' windows: the same rms's edge on a window's sides, when the
        # windows' spectrum has a gap above it too (a bfloat16 rank-60 200 x 150 layer's two 200 x 100 windows had
        # their 80 rounding eigenvalues fitted beside its 120; a window of small entries, whose rounding is
        # smaller, can have real eigenvalues under that edge, and then no gap)
        window_zeros = _under_gap(fit_spectrum.evals, storage_zeros * _noise_edge(1.0, rows, cols, 1.0) / _noise_edge(
            1.0, lm.rows, lm.cols, 1.0)) if storage_zeros and num_windows else 0.0
    except LayerSkipped as e:
        return LayerResult(**base, status=f"skipped: {e}"), None
    except HtsrError as e:
        return LayerResult(**base, status=f"failed: {e}"), None
    except Exception as e:  # one bad layer never stops a run
        return LayerResult(**base, status=f"failed: {described(e)}"), None
    base.update(eig_method=spectrum.method, num_evals_below_floor=float(spectrum.num_below_floor))
    evals = spectrum.evals

    not_attempted = PowerLawFit.failed("not attempted")
    extra: dict[str, Any] = {}
    whole: int | None = None  # the whole matrix's eigenvalues above its floor, when FARMS' windows were fitted
    if evals[-1] <= 0:
        # an update of zero (a LoRA whose B is still its initial 0) is no broken layer: there is no change
        # (one kernel position of a conv, --conv per_position, may be all zero: a filter bank's zero tap, as a Hann
        # window's first; that is no broken layer either)
        position = lm.kind.startswith("conv") and lm.num_matrices == 1 and math.prod(lm.tensor_shape[2:]) > 1
        part = "expert" if lm.kind == "stack" else "kernel position" if position else "layer"
        status = ("skipped: zero update (an untrained adapter: a factor still at its initial 0, as LoRA's B)"
                  if lowrank else
                  # a delta's expert or kernel position equal to the base's, in a tensor changed elsewhere
                  f"skipped: unchanged: equal to the base's (a frozen {part}), no update to analyse"
                  if lm.resolution is not None else
                  "skipped: an all-zero kernel position (a zero tap of the filter)" if position
                  else "failed: all-zero matrix")
        fit, fit_x = not_attempted, spectrum.evals[:0]
    elif lowrank and spectrum.rank < opts.min_evals:
        fit, status = not_attempted, (f"not_fitted: rank-{factor_rank} update has {spectrum.rank} nonzero "
                                      f"eigenvalues < min_evals={opts.min_evals}")
        fit_x = fit_spectrum.evals
    elif lm.num_evals < opts.min_evals:
        fit, status = not_attempted, f"not_fitted: {lm.num_evals} eigenvalues < min_evals={opts.min_evals}"
        fit_x = fit_spectrum.evals
    elif _no_spectrum(lm):
        fit, status = not_attempted, (f"not_fitted: each of the {lm.num_matrices} kernel positions is a {lm.rows} x "
                                      f"{lm.cols} matrix, whose one eigenvalue is a squared norm: pooled, no spectrum")
        fit_x = fit_spectrum.evals
    elif too_narrow:
        fit, status, fit_x = not_attempted, too_narrow, fit_spectrum.evals
    else:
        # a low-rank update's small eigenvalues are real (its zeros are exact): its own floor, not 1e-5
        # the 1e-5 is in WeightWatcher's units (X = WᵀW): with normalize='N' it is divided by N too, so
        # normalizing moves no eigenvalue across it and alpha stays scale-free
        ww_cut = WW_EVALS_THRESH / lm.N if opts.normalize == "N" else WW_EVALS_THRESH

        def ww_applies(sp: Spectrum) -> bool:
            return opts.evals_floor == "ww" and not lowrank and ww_cut <= WW_FLOOR_MAX_FRACTION * sp.evals[-1]

        def cut_of(sp: Spectrum) -> float:
            ww = ww_applies(sp)
            # and never below a float64 spectrum's numerical floor: eigenvalues there are round-off (a rank-1
            # layer of large entries has 1e-5 < round-off, and its fit would be to noise). A spectrum with
            # float32 parts keeps them: an unrefined float32 matrix has fewer than refine_fraction of its
            # eigenvalues below its floor by construction (WeightWatcher's float64 SVD keeps them), and the pooled
            # floor of a partly refined conv layer is a float32 one, which would cut real eigenvalues of its
            # float64 parts
            # (by construction only at the default refine_fraction: with a larger one an unrefined float32 part may
            # hold many below its floor — a rank-20 product's 180 of 200 at 0.95, 87 of them fitted as a tail —
            # and then they are round-off, cut at the floor as on the other paths)
            unrefined = "gram32" in sp.method and not _round_off_left(sp)
            return max(ww_cut, 0.0 if unrefined else sp.floor) if ww else sp.floor

        cut, why = cut_of(fit_spectrum), ""
        if storage_floor > cut:
            cut, why = storage_floor, " (the rounding noise the delta holds from the stored weights)"
        if not lm.resolution and (window_zeros if num_windows else zeros) > cut:  # (a delta's: storage_floor)
            cut, why = window_zeros if num_windows else zeros, " (the rounding of the weights' storage, under a gap)"
        # (a storage's or its rounding's cut above is one for all the matrices: no floor of their own below it)
        low = cut if why else ww_cut if ww_applies(fit_spectrum) else 0.0
        if fit_spectrum.cuts_own(cut, low):
            why = " (the largest of its kernel positions' floors, each cut at its own)"
        fit_x = fit_spectrum.evals[fit_spectrum.kept(cut, low)]
        # FARMS' windows of a rank-deficient matrix repeat its few directions: its own count decides (a rank-1
        # matrix's 84 windows gave 84 values, fitted "ok" at alpha 11.7)
        # (cut as without windows: a delta's at its inputs' rounding noise, the whole matrix's, any other's at its
        # storage's rounding under a gap)
        whole_floor = _noise_edge(rms, lm.rows, lm.cols, scale) if lm.resolution else zeros
        whole_cut = max(cut_of(spectrum), whole_floor) if num_windows else 0.0
        whole = int(np.count_nonzero(spectrum.kept(whole_cut, max(ww_cut if ww_applies(spectrum) else 0.0,
                                                                  whole_floor)))) if num_windows else None
        if whole is not None and whole < opts.min_evals:
            noise = ("" if not whole_floor or whole_floor < whole_cut else
                     " (the rounding noise the delta holds from the stored weights)" if lm.resolution else
                     " (the rounding of the weights' storage, under a gap)" if whole_floor == storage_zeros else "")
            fit, status = not_attempted, (f"not_fitted: {whole} of {lm.num_evals} eigenvalues above the floor "
                                          f"{whole_cut:.3g}{noise} < min_evals={opts.min_evals} (the windows of "
                                          "--farms-aspect only repeat them)")
        elif fit_x.size < opts.min_evals:  # a rank-deficient matrix: most of its eigenvalues are zeros
            fit, status = not_attempted, (f"not_fitted: {fit_x.size} of {lm.num_evals} eigenvalues above the "
                                          f"floor {cut:.3g}{why} < min_evals={opts.min_evals}")
        elif fit_x.size - opts.drop_top < opts.min_evals:  # (the fit would see the rest only: too few to say)
            fit, status = not_attempted, (f"not_fitted: {fit_x.size} of {lm.num_evals} eigenvalues above the "
                                          f"floor {cut:.3g}{why}, {fit_x.size - opts.drop_top} without the "
                                          f"{opts.drop_top} largest (drop_top) < min_evals={opts.min_evals}")
        else:
            _stop_point()
            with _one_blas_thread():  # (vectors of a few thousand values: threaded BLAS only spins; see below)
                # (clip_xmax's refits keep min_evals eigenvalues at least, as any fit does)
                fit = fit_power_law(fit_x, opts.xmin, opts.clip_xmax, opts.max_fingers, opts.finger_thresh,
                                    opts.drop_top, opts.min_evals)
                status = fit.status
                notes: list[str] = []
                try:
                    extra = tail_uncertainty(
                        fit_x, fit, xmin=opts.xmin, tails=opts.tails, bootstrap=opts.bootstrap, seed=opts.seed,
                        confidence=opts.confidence, prior_shape=opts.prior_shape, prior_rate=opts.prior_rate,
                        bayes_average=opts.bayes_average, notes=notes, share=share)
                    status = "; ".join([status, *notes])
                except Exception as e:  # the fit stands; only its diagnostics are lost
                    extra, status = {}, f"{status}; diagnostics failed: {described(e)}"
        # the eigenvalues the fit saw: those above the floor, less the largest it left out (drop_top, clip_xmax)
        extra.update(num_fit_evals=float(fit_x.size - (fit.num_fingers if fit.status == "ok" else 0)))
    metrics = compute_metrics(spectrum, fit)
    clipped = (opts.clip_xmax or opts.drop_top > 0) and fit.status == "ok"
    if num_windows is not None and fit is not not_attempted:  # the windows pooled for a fit
        extra.update(farms_windows=float(num_windows))
    try:
        diagnostics, erg_note = _spectral_diagnostics(spectrum, fit, fit_x.size if num_windows is not None else math.nan,
                                                      whole, mp, lm, scale, opts, zeros, driving)
        rmt.update(diagnostics)
        # why its ERG columns are NaN
        if erg_note and not status.startswith(("skipped", "failed")):
            status = f"{status}; ERG {erg_note}"
    except Exception as e:  # the fit stands; only these diagnostics are lost
        rmt_error = rmt_error or described(e)
    loc_notes: list[str] = []  # why a localisation group's columns are NaN (degenerate eigenvalues)
    if kept is not None:  # an option's extra columns: if they fail, only they are lost (the phase, SETOL … stand)
        _stop_point()
        try:
            # the tail: the spectrum's eigenvalues from x_min up (fingers clip_xmax dropped included), by count; x_min
            # on the layer's own eigenvalues (FARMS' farms_xmin)
            xmin = rmt.get("farms_xmin", fit.xmin)
            num_tail = evals.size - int(np.searchsorted(evals, xmin, side="left")) if fit.status == "ok" else 0
            rmt.update(localization(kept, num_tail, scale, None, loc_notes))
        except Exception as e:  # noqa: BLE001
            lost = f"localization: {described(e)}"
            rmt_error = f"{rmt_error}; {lost}" if rmt_error else lost
    del kept
    if rmt_error:
        status = f"{status}; diagnostics failed: {rmt_error}"
    elif "loc_pr_tail_mean" in rmt:  # why a localisation column is NaN (of a fitted row: every group)
        lonely = loc_notes + [
            f"no {g} eigenvectors" if math.isnan(rmt[f"loc_pr_{g}_mean"]) else f"one {g} eigenvector, no spread"
            for g in ("tail", "bulk") if math.isnan(rmt[f"loc_pr_{g}_std"]) and fit.status == "ok"
            and not any(n.startswith(g) for n in loc_notes)]
        if lonely and not status.startswith(("skipped", "failed")):
            status = f"{status}; localization: {', '.join(lonely)}"
    extra.update(rmt)
    lo, hi, p = interval_of(extra)
    kept_spectra = None
    if opts.keep_spectra:
        kept_spectra = LayerSpectra(evals, fit_x, None if shuffled is None else shuffled.spectrum.evals,
                                    math.nan if shuffled is None else shuffled.mp.threshold)
    row = LayerResult(
        **{**base, "warning": warning_for(fit.alpha, lo, hi, p)},
        **extra,
        status=status,
        alpha=fit.alpha,
        D=fit.D,
        # (FARMS' overlapping windows: share·n independent values, as the intervals count them)
        sigma=fit.sigma / math.sqrt(share),
        xmin=fit.xmin,
        xmax=fit.xmax,
        num_pl_spikes=float(fit.num_pl_spikes) if fit.status == "ok" else float("nan"),
        num_fingers=float(fit.num_fingers) if clipped else float("nan"),
        raw_alpha=fit.raw_alpha if clipped else float("nan"),
        **metrics,
    )
    return row, kept_spectra


def _round_off_left(sp: Spectrum) -> bool:
    """Whether an all-float32 spectrum holds round-off a larger refine_fraction left unrefined: a matrix with more
    eigenvalues below its floor than the default leaves, which its rank leaves out (spectra.matrix_eigenvalues:
    the same rule, matrix by matrix). (A partly refined pooled spectrum, ``gram32+…``, keeps its float32 parts'
    tiny ones, see cut_of.)"""
    return sp.method == "gram32" and sp.rank < sp.evals.size


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's controller, made once: its scan of the loaded libraries takes 0.3 ms, a limit 14 µs."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


#: held by every analysis while its layers run (:func:`in_threads`, :func:`analyze_layer`): analyses started in
#: several of a user's threads run one at a time. Each uses every CPU already; side by side they would share the
#: process's BLAS thread limit, which one sets and restores (threadpoolctl ≥ 3.8 lets only the thread that set it
#: restore it), and run another's layers at a thread count its own run does not use (other rounding)
_ANALYSIS_LOCK = threading.RLock()
#: set where htsr's single-threaded BLAS limit holds: in its analysis threads, which inherit it (no nested limit)
#: set when the run a row belongs to was interrupted (Ctrl-C): the row leaves off at its next stage (_stop_point)
_STOPPED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("htsr_stopped", default=None)


class _Stopped(BaseException):
    """A row left off because its run was interrupted (its result is dropped; BaseException: no ``except
    Exception`` of a row's stages takes it for the layer's failure)."""


def _stop_point() -> None:
    """Leave the row off here if its run was interrupted: the rows running on Ctrl-C had gone on through every
    stage (MP fit, shuffle, bootstrap, eigenvectors) after analyze had returned, and the interpreter waited for them
    at exit (86 s for two 4000 x 3500 layers). An eigensolver already running cannot be stopped."""
    stopped = _STOPPED.get()
    if stopped is not None and stopped.is_set():
        raise _Stopped


_BLAS_LIMITED: contextvars.ContextVar[bool] = contextvars.ContextVar("htsr_blas_limited", default=False)


def _new_analysis_lock() -> None:
    """A fresh lock in a forked child: one held by a parent's thread (an analysis running at the fork) would be
    held for good there, by a thread the child does not have (its analyses hung)."""
    global _ANALYSIS_LOCK
    _ANALYSIS_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):  # (not on Windows, which does not fork)
    os.register_at_fork(after_in_child=_new_analysis_lock)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """A single-threaded BLAS for what follows: the analysis threads of :func:`_in_threads`, and the fits on a
    layer analysed with every BLAS thread (one of more than THREADED_MAX_M, or analyze_layer called alone), whose
    small solves and vector products spin on a threaded BLAS (tail_uncertainty of 3 072 eigenvalues: 60–128 ms on
    two threads of a loaded machine, 23–30 ms on one; analyze_layer 128 against 10 ms a row). Set and restored by
    the thread that enters; within it (and in the analysis threads, which run in its context) a no-op."""
    if _BLAS_LIMITED.get():
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        token = _BLAS_LIMITED.set(True)
        try:
            yield
        finally:
            _BLAS_LIMITED.reset(token)


def _no_spectrum(lm: LayerMatrices) -> bool:
    """A conv of one input or output channel (a depthwise conv, a fixed filter bank such as an STFT basis):
    each kernel position's matrix is N x 1, its one eigenvalue a squared norm; pooled, they are no spectrum
    (no power-law fit, no MP fit, no traps)."""
    return lm.M == 1 and lm.num_matrices > 1


def _matrix_diagnostics(mats: list[np.ndarray], lm: LayerMatrices, spectrum: Spectrum, scale: float,
                        opts: Options, zeros: float = 0.0
                        ) -> tuple[MPFit | None, dict[str, Any], str, Randomized | None, float]:
    """What needs the matrices themselves: the MP fit with the heavy-entry count, and the randomisation.

    Returns (MP fit or None, columns, error message or '', the randomisation or None, the heavy entries that
    drive spikes: the phase's heavy-entry rule reads them); an error here loses only these columns.
    """
    cols: dict[str, Any] = {}
    mp = R = None
    driving = 0.0
    try:
        # like the power-law fit, the MP fits (the layer's and the shuffled one's) need min_evals
        # eigenvalues to mean anything
        if lm.num_evals < opts.min_evals or not spectrum.evals[-1] > 0 or _no_spectrum(lm):
            return None, cols, "", None, driving
        if opts.mp_fit:
            mp = fit_mp(spectrum.evals, lm.N, lm.M, scale, opts.tw_margin, zero_floor=zeros)
            cut = bbp_entry_scale(lm.N, lm.M, mp.sigma2)
            heavy = sum(count_heavy_entries(W, cut) for W in mats) if math.isfinite(cut) else math.nan  # (no fit)
            cols.update(mp_sigma=math.sqrt(mp.sigma2), mp_lambda_minus=mp.lambda_minus,
                        mp_lambda_plus=mp.lambda_plus, mp_threshold=mp.threshold,
                        num_spikes=float(mp.num_spikes) if math.isfinite(mp.threshold) else math.nan,  # no fit: no count
                        mp_softrank=mp.softrank, mp_ks=mp.ks, num_heavy_entries=float(heavy))
            driving = float(heavy)
            if heavy > 0 and 0 < mp.num_spikes < opts.phase_ht_share * lm.num_evals and mp_fits_bulk(
                    mp, spectrum.evals.size, mp.num_zero):  # (above a bulk the law does not fit: a tail, rule 3)
                # a few spikes and heavy entries: the phase's heavy-entry rule (bulk-decay) holds where entries
                # drive the spikes, whose singular vectors then sit on their rows and columns: most of the largest
                # (up to LOCALIZED_TOP). A strong low-rank correlation has entries of its own past the cut (a rank-1
                # spike at 20x BBP in 128 x 128 noise: 6), but its vectors are spread (bulk+spikes); one planted
                # entry among a trained layer's 18 correlations is a trap of a bulk+spikes layer, not the heavy
                # entry distribution bulk-decay reads (it had been, once the entry's spike was among the top 3).
                # A pooled conv's spikes are its positions' largest, taken together
                localised, looked = spike_localization(mats, mp.num_spikes)
                driving = driving if looked == 0 or 2 * localised > looked else 0.0
        if opts.randomize:
            _stop_point()
            R = randomize(mats, lm.N, lm.M, opts.seed, scale, opts.precision, opts.refine_fraction, opts.tw_margin)
            where = ["mean" if r < 0 else f"{m}:{r},{c}" if lm.num_matrices > 1 else f"{r},{c}" for m, r, c in R.locations]
            cols.update(rand_lambda_max=float(R.spectrum.evals[-1]), rand_mp_sigma=math.sqrt(R.mp.sigma2),
                        rand_mp_lambda_minus=R.mp.lambda_minus, rand_mp_lambda_plus=R.mp.lambda_plus,
                        rand_mp_threshold=R.mp.threshold, rand_mp_softrank=R.mp.softrank,
                        num_traps=float(R.num_traps) if math.isfinite(R.mp.threshold) else math.nan,
                        rand_js_distance=js_distance(spectrum.evals, R.spectrum.evals, resolved_cuts(spectrum, lm.M),
                                                     resolved_cuts(R.spectrum, lm.M)),
                        trap_weights="; ".join(where))
    except Exception as e:
        return mp, cols, described(e), None, driving
    return mp, cols, "", R, driving


def _shown_shape(shape: Sequence[Any]) -> str:
    """A tensor's shape as 'AxB', each size as it prints (a symbolic one, a nested tensor's, included)."""
    return "x".join(str(d) for d in shape) or "()"


def _noise_edge(rms: float, rows: int, cols: int, scale: float) -> float:
    """The largest eigenvalue of rows × cols noise of i.i.d. entries of this rms, (rms·(√rows + √cols))² (the MP
    edge), in the spectrum's units (``scale``)."""
    return scale * (rms * (math.sqrt(rows) + math.sqrt(cols))) ** 2


#: (mantissa bits a float32 / float64 entry has beyond bfloat16's 7 and float16's 10, their unit roundoff)
_COARSER_GRIDS = {np.dtype(np.float32): ((16, 2.0 ** -8), (13, 2.0 ** -11)),
                  np.dtype(np.float64): ((45, 2.0 ** -8), (42, 2.0 ** -11))}


def grid_roundoff(mats: Sequence[Any]) -> float:
    """The unit roundoff of bfloat16 (2⁻⁸) or float16 (2⁻¹¹) when every entry of the float32 / float64 matrices
    ``mats`` lies on that format's grid (the low mantissa bits zero: bfloat16 weights upcast, ``.float()`` or a
    checkpoint saved after it), else 0. Such weights carry that storage's rounding, as they do held in it: the
    same values get the same rounding floor in any container. Read in blocks; a float32-trained matrix has
    nonzero low bits in its first entries."""
    grids = _COARSER_GRIDS.get(getattr(mats[0], "dtype", None), ())
    if not grids or not all(isinstance(W, np.ndarray) and W.dtype == mats[0].dtype and W.ndim == 2 for W in mats):
        return 0.0
    # first a few thousand entries of each, at the finer grid's bits (the coarser's imply them): a float32-trained
    # matrix is off it there, and no whole matrix is read for it (the whole scans had cost 5 % of a GPT-2 run)
    finest = min(bits for bits, _ in grids)
    if not all(_low_bits_zero(W[:max(1, 4096 // max(1, W.shape[1]))], finest) for W in mats):
        return 0.0
    for bits, eps in grids:
        if all(_low_bits_zero(W, bits) for W in mats):
            return eps
    return 0.0


def _low_bits_zero(W: np.ndarray, bits: int) -> bool:
    uint = np.uint32 if W.dtype.itemsize == 4 else np.uint64
    mask = uint((1 << bits) - 1)
    step = max(1, (1 << 20) // max(1, W.shape[1]))  # (rows of about 2^20 entries: a transposed view is not copied)
    for i in range(0, W.shape[0], step):
        if np.any(np.ascontiguousarray(W[i:i + step]).view(uint) & mask):
            return False
    return True


def _rounding_zeros(ev: np.ndarray, lm: LayerMatrices, scale: float) -> float:
    """The floor below which the layer's eigenvalues are the rounding of its stored entries, in the spectrum's
    units, when they are separated from the rest by a gap — else 0, nothing is a zero by it.

    The floor is twice the MP edge (rms·(√rows + √cols))² of noise of the rounding's rms (its largest
    eigenvalues spread past the edge, and the rms is an estimate): a delta's inputs' (``lm.resolution``),
    or a storage coarser than float32 (``lm.storage_eps``, unit roundoff u: each entry off by up to u of its
    size, rms u/√3 of the entries'). A rank-r layer stored in bfloat16 has its M − r other eigenvalues there,
    under a gap of orders of magnitude: those are its zeros. A full-rank layer's small eigenvalues run on
    through the floor with no gap (a square FP8 layer has some below it): they stay, as at float32 precision.
    0 for an update from its factors, whose product is exact."""
    if lm.kind == "lora" or ev.size == 0 or not (lm.resolution or lm.storage_eps):
        return 0.0
    rms = lm.resolution() if lm.resolution else 0.0
    if lm.storage_eps:  # Σλ / (matrices·rows·cols): the entries' mean square, the scale divided out
        rms = max(rms, lm.storage_eps / math.sqrt(3.0) * math.sqrt(float(np.sum(ev)) / scale / (
            lm.num_matrices * lm.rows * lm.cols)))
    return _under_gap(ev, 2.0 * _noise_edge(rms, lm.rows, lm.cols, scale))


def _under_gap(ev: np.ndarray, floor: float) -> float:
    """``floor`` when at least ROUNDING_MIN_ZEROS of the eigenvalues ``ev`` lie under it and the next one lies
    ROUNDING_GAP times above it (a gap, as a rank-deficient layer's spectrum has), else 0."""
    k = int(np.searchsorted(ev, floor, side="right"))
    return floor if ROUNDING_MIN_ZEROS <= k < ev.size and ev[k] >= ROUNDING_GAP * floor else 0.0


def _spectral_diagnostics(spectrum: Spectrum, fit: PowerLawFit, num_fit_evals: float, whole: int | None,
                          mp: MPFit | None, lm: LayerMatrices, scale: float, opts: Options, zeros: float = 0.0,
                          driving: float = 0.0) -> tuple[dict[str, Any], str]:
    """Phase and SETOL: what needs the fit as well as the spectrum, and why the ERG tail is undefined ('' where it
    is not, or not computed). ``driving``: the heavy entries that drive spikes (_matrix_diagnostics), which the
    phase's heavy-entry rule reads."""
    ev = spectrum.evals
    cols: dict[str, Any] = {}
    # at float32 precision (see rmt.mp.zero_level for the fast path), or in a coarser storage's rounding under a gap
    num_zero = num_zero_evals(ev, lm.N, lm.M, zeros)
    # x_min on the layer's own spectrum: when FARMS' windows were fitted (``whole``: the layer's eigenvalues
    # above its floor), the eigenvalue at the tail share the fit found among the windows' above theirs
    # (a share of every eigenvalue, zeros included, put a rank-150 layer's x_min 2x too deep)
    xmin = fit.xmin
    if fit.status == "ok" and whole is not None:
        k = int(round(fit.num_pl_spikes * whole / num_fit_evals))
        xmin = float(ev[-max(1, min(k, ev.size))])
        cols.update(farms_xmin=xmin)
    cols.update(num_zero_evals=float(num_zero))  # the spectrum's own count: a lora row's M − rank too
    if mp is not None:
        cols.update(phase=phase_of(ev.size, num_zero, mp, float(ev[-1]), fit.alpha, driving,
                                   PhaseThresholds(opts.phase_rank_collapse, opts.phase_ht_share,
                                                   opts.phase_ht_alpha, opts.phase_bleed_width)))
    if opts.setol and ev.size:
        # over the space the weights span: the matrix_rank largest (WeightWatcher's), a rank-deficient layer's
        # nonzero ones (erg_eigenvalues)
        live = erg_eigenvalues(ev, spectrum.rank, num_zero)
        erg = erg_tail(live)
        total = float(np.sum(live))
        xmin_norm = xmin * live.size / total if total > 0 else math.nan
        cols.update(num_erg=float(erg.num_erg) if erg.defined else math.nan, erg_lambda_min=erg.erg_lambda_min,
                    erg_lambda_min_raw=erg.erg_lambda_min_raw, erg_delta_lambda_min=delta_lambda_min(xmin_norm, erg),
                    **layer_quality(fit.alpha, float(ev[-1]), xmin))
        # (one eigenvalue of a row not fitted: its status says how many)
        return cols, erg.status if live.size >= 2 or math.isfinite(fit.alpha) else ""
    return cols, ""


def analyze(source: Any, **options: Any) -> AnalysisResult:
    """Analyse every weight matrix of ``source`` from its weights alone.

    ``source``: a path (``str`` or ``os.PathLike``) to a model file or folder, detected by content: .safetensors
    (or a Hugging Face folder, sharded), a .pt/.pth/.bin checkpoint, TorchScript or torch.export (.pt2) archive,
    a pickle of numpy arrays, .npz/.npy, .onnx, .keras/.h5, Flax .msgpack, .gguf, a PEFT adapter folder (LoRA,
    LoHa, LoKr), a single-file LoRA (kohya-ss, LyCORIS, diffusers .safetensors) or a folder of WeightWatcher's
    extracted layers (``ww_config.json``); or an object: a
    ``torch.nn.Module`` (a ``peft.PeftModel`` too), a Keras 3 model, a Flax parameter pytree, a mapping of names
    to arrays or tensors (nested mappings and lists of arrays are named by their keys and positions).
    ``options``: the keywords below (:data:`htsr.options.OPTION_SPECS`).

    Raises :class:`~htsr.errors.OptionError` for a bad option and :class:`~htsr.errors.SourceError`
    for a source that cannot be read or has no analysable layer. Analyses called from several threads at once
    run their layers one at a time (each uses every CPU).

    >>> import numpy as np, htsr
    >>> W = np.random.default_rng(0).standard_normal((300, 100))
    >>> r = htsr.analyze({"fc.weight": W})
    >>> r.layers[0].name, r.layers[0].status, r.summary.num_fitted
    ('fc', 'ok', 1)
    """
    return _analyze(source, Options.create(**options))


analyze.__doc__ = (analyze.__doc__ or "") + options_doc()


def _analyze(source: Any, opts: Options, check_idle: bool = True) -> AnalysisResult:
    """:func:`analyze` with validated options; ``check_idle=False``: an option acting on none of the model's rows
    is not refused (compare checks that across its models, the monitor when it is built)."""
    tally = Tally()
    if not check_idle:  # (split rules too: compare checks them across its models, the monitor when it binds)
        tally.split_cut = set()
    description, _, layer_iter = iter_layers(source, opts, tally)
    layers = list(layer_iter)  # lazy: no tensor has been read yet
    if not layers:
        raise no_layer_error(description, tally, opts)
    kinds = row_kinds(layers)
    if check_idle and (idle := idle_options(opts, kinds)):
        raise idle_option_error(description, idle[0], kinds, opts)
    bar = _progress_bar(len(layers), description) if opts.progress else None
    try:
        rows = in_threads(layers, lambda lm: _analyze_layer(lm, opts), opts.workers, bar)
    finally:
        if bar is not None:
            bar.close()
    results = tuple(r for r, _ in rows)
    spectra = tuple(k for _, k in rows) if opts.keep_spectra else ()
    return AnalysisResult(results, Summary.of(results), description, opts.as_dict(ui=False), spectra, tally.num_tensors,
                          NotAnalysed.tally(tally.passed_over), _path_of(source), tuple(sorted(tally.files)))


def _path_of(source: Any) -> str:
    """The path a source was given by, or an opened file reader's (``path``); '' for an object."""
    if not isinstance(source, (str, os.PathLike)):
        try:
            source = getattr(source, "path", None) if is_reader(source) else None
        except Exception:  # noqa: BLE001 - a model's __getattr__ may raise anything
            source = None
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else ""


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def in_threads(layers: list[LayerMatrices], work: Callable[[LayerMatrices], Any], workers: int | None = None,
               bar=None) -> list[Any]:
    """``work(lm)`` for every row, in order: matrices up to :data:`THREADED_MAX_M` side by side (single-threaded
    BLAS each), larger ones one at a time with every BLAS thread; tiny ones (:data:`TINY_WORK`) one at a time,
    beside the others. Side by side against one at a time on a 2-thread BLAS, on 2 cores: ×2.2 for 4096 × 1024,
    ×1.6 for 2048 × 2048, ×1.2 for 3072 × 3072 and 11008 × 4096 (the eigensolvers release Python's lock:
    :mod:`htsr.lapack`). An adapter's update from its factors is small whatever its sides: O((out + in)·r²) work, on thin
    matrices that threaded BLAS slows down (a rank-16 4096 x 4096 LoRA: 0.8 ms on one thread, up to 170 ms on
    two of a loaded machine). ``workers``: at most so many at a time (None: every usable CPU). Analyses in several
    threads take turns here (_ANALYSIS_LOCK)."""
    light = [_light(lm) for lm in layers]
    small = [i for i, x in enumerate(light) if x]
    out: list[Any] = [None] * len(layers)
    with _ANALYSIS_LOCK:
        if small:  # with workers = 1 one at a time, still with a single-threaded BLAS (spinning BLAS threads made
            # --workers 1 ten times slower on a loaded 2-core machine)
            tiny = [layers[i] for i in small if _GIL and _tiny(layers[i])]
            turns = _Turns(tiny)
            n = 1 if len(tiny) == len(small) else min(workers or _usable_cpus(), len(small))  # (no hand-offs)
            for i, row in zip(small, _in_threads([layers[i] for i in small], functools.partial(turns.run, work), n,
                                                 bar, turns.abandon)):
                out[i] = row
        for i in (i for i, x in enumerate(light) if not x):
            # (in a thread of its own, every BLAS thread its: in the main thread a LAPACK call holds Ctrl-C until it
            # returns, a minute for a large layer)
            out[i] = _in_threads([layers[i]], work, 1, None, one_blas=False)[0]
            if bar is not None:
                bar.update()
    return out


def _tiny(lm: LayerMatrices) -> bool:
    """Whether ``lm``'s eigenvalues cost less than its fits (:data:`TINY_WORK`): :func:`in_threads` runs one such
    row at a time. An adapter's row is not: its work, O((out + in)·r²), waits on the rank its factors hold."""
    return lm.kind != "lora" and lm.num_matrices * (lm.N * lm.M * lm.M + lm.M ** 3) < TINY_WORK


#: whether Python runs with its global lock (a free-threaded build without it runs tiny rows side by side too)
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()


def _light(lm: LayerMatrices) -> bool:
    """Whether :func:`in_threads` analyses ``lm`` on a single-threaded BLAS, beside others."""
    return lm.M <= THREADED_MAX_M or lm.kind == "lora"


class _Turns:
    """The tiny rows (:func:`_tiny`) one at a time and in their order, beside the others: :func:`in_threads`."""

    def __init__(self, rows: list[LayerMatrices]) -> None:
        self._turn = {id(lm): k for k, lm in enumerate(rows)}
        self._next = 0
        self._abandoned = False
        self._changed = threading.Condition()

    def run(self, work: Callable[[LayerMatrices], Any], lm: LayerMatrices) -> Any:
        k = self._turn.get(id(lm))
        if k is None:
            return work(lm)
        with self._changed:
            self._changed.wait_for(lambda: self._next == k or self._abandoned)
            if self._abandoned:  # (a row before it was cancelled, and will never end its turn)
                raise RuntimeError("analysis interrupted")
        try:
            return work(lm)
        finally:
            with self._changed:
                self._next += 1
                self._changed.notify_all()

    def abandon(self) -> None:
        """Release every row waiting for its turn (Ctrl-C: the rows not started are cancelled)."""
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()


def _in_threads(layers: list[LayerMatrices], work: Callable[[LayerMatrices], Any], workers: int, bar,
                on_abort: Callable[[], None] = lambda: None, one_blas: bool = True) -> list[Any]:
    """``work`` on ``workers`` rows at a time, each with a single-threaded BLAS (``one_blas``); ``on_abort`` after
    the rows not started are cancelled (Ctrl-C).

    numpy and LAPACK release the GIL, and for the matrix sizes of real layers several single-threaded
    eigensolvers side by side beat one multi-threaded solver (the tridiagonal reduction scales poorly
    across threads). The BLAS thread limit is restored on exit. On Ctrl-C the rows running are not waited for
    (an eigensolver cannot be stopped: a run of 4096-wide layers had taken 15 s to stop); they leave off at their
    next stage (:func:`_stop_point`), and their results are dropped.
    """
    with _one_blas_thread() if one_blas else contextlib.nullcontext():
        pool = ThreadPoolExecutor(workers)
        stopped = threading.Event()
        token = _STOPPED.set(stopped)
        try:  # (each in this context, where the limit holds: the fits' own _one_blas_thread is a no-op there)
            futures = [pool.submit(contextvars.copy_context().run, work, lm) for lm in layers]
        finally:
            _STOPPED.reset(token)
        try:
            if bar is not None:
                for _ in as_completed(futures):
                    bar.update()
            results = [f.result() for f in futures]
        except BaseException:  # Ctrl-C: drop the layers not started, and those running leave off at their next stage
            stopped.set()
            pool.shutdown(wait=False, cancel_futures=True)
            on_abort()
            raise
        pool.shutdown()
        return results


def _progress_bar(total: int, description: str):
    from .io.base import import_extra

    tqdm = import_extra("tqdm", "progress", "the progress bar").tqdm
    # the end of a long path names the model; "htsr" stays in front
    name = description if len(description) <= 55 else "…" + description[-54:]
    return tqdm(total=total, desc=f"htsr {name}", unit="layer", leave=False)
