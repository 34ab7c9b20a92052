"""The rules option values follow: each analysis option's default, allowed values, check and meaning
(:data:`OPTION_SPECS`), one table for :class:`htsr.options.Options` (and so the CLI's flags and ``--help``) and for
the numeric core's public functions (:func:`check_args`: ``esd``, ``fit_power_law``, ``bootstrap_power_law`` …).

A leaf: the stages that check values (spectra, fits, options) and the phases' default thresholds import it, and it
imports none of them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import OptionError, shown

__all__ = ["FEW_BELOW_FLOOR", "LAYER_KINDS", "OPTION_SPECS", "SPLIT_KINDS", "XMIN_STRATEGIES", "OptionSpec", "SplitRule",
           "as_numpy", "check_args", "check_values", "plain", "typed_flag"]

#: the share of a matrix's eigenvalues below the float32 floor up to which, unrefined, they are taken as tiny
#: nonzero eigenvalues (the default ``refine_fraction``); more, left by a larger one, are round-off
FEW_BELOW_FLOOR = 0.01

#: Layer kinds htsr knows; ``kinds=`` filters on them.
LAYER_KINDS = ("dense", "conv1d", "conv2d", "conv3d", "embedding", "rnn", "stack", "lora")
XMIN_STRATEGIES = ("ks", "median", "peak")


@dataclass(frozen=True)
class OptionSpec:
    name: str
    default: Any
    allowed: str  # human-readable statement of the allowed values
    check: Callable[[Any], bool]
    help: str
    cli_allowed: str | None = None  # the same, as a command-line value ("none", a comma list …), if it differs

    @property
    def flag_allowed(self) -> str:
        """The allowed values in the command line's terms."""
        return self.cli_allowed if self.cli_allowed is not None else self.allowed


def typed_flag(name: str) -> str:
    """An option's command-line flag as a user types it to change it: ``--no-mp-fit`` for one on by default,
    ``--clip-xmax``, ``--bootstrap``."""
    spec = OPTION_SPECS.get(name)
    return ("--no-" if spec is not None and spec.default is True else "--") + name.replace("_", "-")


def plain(v: Any) -> Any:
    """A numpy scalar (a value from a sweep: np.int64(200), np.float32(0.9), np.bool_) as the Python one, a
    float32 by its shortest repr (0.9, not 0.8999999761581421: a run would not compare with one given 0.9);
    anything else as it is."""
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        if v.dtype.kind == "f":  # (a longdouble's item() is itself: float() is the Python number)
            return float(str(v)) if v.dtype.itemsize < 8 else float(v)
        return v.item()
    return v


def _choice(*values: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in values  # (an array's `in` had raised numpy's "truth value …")


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)  # not _is_bool: 1 == True would let 1 and 0 through


def _int_range(lo: int, hi: int | None = None, none_ok: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if v is None:
            return none_ok
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)

    return check


def _float_range(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return check


def _none_or(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _xmin_ok(v: Any) -> bool:
    if isinstance(v, str) and v in XMIN_STRATEGIES:
        return True
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf")


def _regex_ok(v: Any) -> bool:
    if v is None:
        return True
    if not isinstance(v, str) or not v:  # '' (an unset shell variable) would match every layer
        return False
    try:
        re.compile(v)
    except (re.error, RecursionError, OverflowError):  # (500 nested groups exhaust the parser's recursion)
        return False
    return True


def _source_ok(v: Any) -> bool:
    """What :func:`htsr.io.open_source` takes: a path, a mapping of arrays, a torch module, a live Keras model
    or a reader it returned (told without importing torch or keras)."""
    from .io.base import TensorSource
    from .io.keras import is_keras_object

    return (v is None or isinstance(v, (str, os.PathLike, Mapping, TensorSource)) or hasattr(v, "named_modules")
            or is_keras_object(v))


#: the kinds of row a ``split`` rule cuts (one matrix each: a conv's kernel positions are no fused projection)
SPLIT_KINDS = ("dense", "rnn", "stack", "lora")
_LABEL = re.compile(r"[A-Za-z_]\w*$")


@dataclass(frozen=True)
class SplitRule:
    """One rule of the ``split`` option, ``REGEX=PARTS``: the rows whose name ``pattern`` finds (re.search) are
    fused matrices, cut along one side into the parts ``labels``, one row each (``name[label]``). ``sizes``: each
    part's length along that side (None: equal parts of the longer side); ``groups``: that side is this many groups
    one after another, each holding every part in order (GPT-NeoX's head-interleaved ``query_key_value``, ``/heads``);
    ``axis``: the side, 0 or 1, the first or second axis of the matrix as the row's ``shape`` gives it (its last
    two), ``@0`` / ``@1`` (None: the side the parts' sizes fit; equal parts: a recurrent row's gates, any other
    row's longer side).
    """

    text: str
    pattern: re.Pattern
    labels: tuple[str, ...]
    sizes: tuple[int, ...] | None
    groups: int
    axis: int | None = None

    @classmethod
    def parse(cls, text: str) -> "SplitRule":
        """The rule ``text`` says; ValueError naming what is wrong with it."""
        if not isinstance(text, str):
            raise ValueError("a rule is text, 'REGEX=PARTS'")
        regex, eq, parts = text.rpartition("=")
        if not eq or not regex:
            raise ValueError("a rule is REGEX=PARTS (e.g. 'attn\\.c_attn$=q,k,v'), with a non-empty REGEX before '='")
        try:
            pattern = re.compile(regex)
        except (re.error, RecursionError, OverflowError) as e:
            raise ValueError(f"{regex!r} is no regular expression ({e})") from None
        parts, *suffixes = re.split(r"(?=[/@])", parts)  # '/G' and '@S', in either order, each once
        given = {x[0]: x[1:].strip() for x in suffixes}
        if len(given) < len(suffixes):
            raise ValueError("give '/G' and '@S' once each")
        groups, axis = given.get("/", "1"), given.get("@")
        if not _integer(groups) or int(groups) < 1:
            raise ValueError(f"the groups after '/' must be an integer >= 1, got {groups!r}")
        if axis is not None and axis not in ("0", "1"):
            raise ValueError(f"the side after '@' must be 0 (the matrix's first axis) or 1 (its second), got {axis!r}")
        labels, sizes = [], []
        for part in parts.split(","):
            label, colon, size = (x.strip() for x in part.partition(":"))
            if not _LABEL.match(label):
                raise ValueError(f"part {part.strip()!r}: a label is a name of letters, digits and '_' not starting "
                                 "with a digit (q, k, v, gate, up)")
            if colon and not (_integer(size) and int(size) >= 1):
                raise ValueError(f"part {part.strip()!r}: a size after ':' must be an integer >= 1")
            labels.append(label)
            sizes.append(int(size) if colon else None)
        if len(labels) < 2:
            raise ValueError("give two parts or more (q,k,v)")
        if len(set(labels)) < len(labels):
            raise ValueError(f"the labels {', '.join(labels)} repeat one")
        if None in sizes and any(z is not None for z in sizes):
            raise ValueError("give every part a size (q:4096,k:1024,v:1024) or none (equal parts)")
        return cls(text, pattern, tuple(labels), None if None in sizes else tuple(sizes), int(groups),
                   None if axis is None else int(axis))


    @property
    def canonical(self) -> str:
        """The rule in one spelling (no spaces around the parts, no '/1'): two texts that parse to one rule give
        one text."""
        parts = ",".join(label if self.sizes is None else f"{label}:{size}"
                         for label, size in zip(self.labels, self.sizes or self.labels))
        return (f"{self.pattern.pattern}={parts}" + (f"/{self.groups}" if self.groups != 1 else "")
                + (f"@{self.axis}" if self.axis is not None else ""))

    @staticmethod
    def canonical_text(text: Any) -> Any:
        """:attr:`canonical` of the rule ``text`` says; anything that is no rule as it is."""
        try:
            return SplitRule.parse(text).canonical
        except ValueError:
            return text


def _integer(text: str) -> bool:
    """Decimal digits only (str.isdigit takes '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


def _split_ok(v: Any) -> bool:
    if isinstance(v, str):
        v = (v,)
    if not isinstance(v, (tuple, list)):
        return False
    try:
        for text in v:
            SplitRule.parse(text)
    except ValueError:
        return False
    return True


def _kinds_ok(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        v = (v,)
    return (isinstance(v, (tuple, list, set, frozenset)) and len(v) > 0
            and all(isinstance(k, str) and k in LAYER_KINDS for k in v))


OPTION_SPECS: dict[str, OptionSpec] = {
    s.name: s
    for s in [
        OptionSpec("precision", "fast", "'fast' or 'accurate'", _choice("fast", "accurate"),
                   "eigenvalue path: 'fast' = float32 Gram + symmetric eigensolver, guarded "
                   "(see refine_fraction); 'accurate' = float64 SVD, as WeightWatcher"),
        OptionSpec("refine_fraction", FEW_BELOW_FLOOR, "a number in [0, 1]", _float_range(0.0, 1.0),
                   "fast path only: recompute a matrix in float64 when more than this fraction of "
                   "its eigenvalues lie below the float32 resolution floor, or any rounds to zero "
                   "(0 = whenever any lies below). Above the default, the eigenvalues a matrix keeps below "
                   "that floor are unresolved and count as zeros (matrix_rank, num_zero_evals, the "
                   "rank-collapse phase, the MP bulk): faster, but a layer with real tiny eigenvalues can "
                   "read as rank-deficient"),
        OptionSpec("xmin", "ks", "'ks', 'median', 'peak' or a positive number", _xmin_ok,
                   "power-law x_min: 'ks' = Clauset-Shalizi-Newman KS scan, 'median' = top half of the "
                   "spectrum, 'peak' = KS scan over candidates <= 1.5 x the log-histogram peak, "
                   "a number = fixed x_min. The over-/under-trained thresholds (alpha 2 and 6) are read on "
                   "KS fits: a lower x_min takes in bulk eigenvalues and gives smaller alphas"),
        OptionSpec("clip_xmax", False, "True or False", _is_bool,
                   "'fingers' remedy: refit after dropping the k largest eigenvalues (k = 1..max_fingers) "
                   "and keep the first refit whose alpha drops by more than finger_thresh"),
        OptionSpec("max_fingers", 10, "an integer from 1 to 100", _int_range(1, 100),
                   "largest number of top eigenvalues clip_xmax may drop"),
        OptionSpec("finger_thresh", 1.0, "a number > 0 and <= 1e9", _float_range(0.0, 1e9, lo_open=True),
                   "alpha must drop by more than this for clip_xmax to accept a clipped fit"),
        OptionSpec("drop_top", 0, "an integer from 0 to 100000", _int_range(0, 100_000),
                   "fit the tail without the k largest eigenvalues (WeightWatcher's xmax=-k; counted in "
                   "num_fingers); clip_xmax chooses k itself"),
        OptionSpec("evals_floor", "ww", "'ww' or 'numerical'", _choice("ww", "numerical"),
                   "eigenvalues kept for the fit: 'ww' = above the absolute 1e-5 WeightWatcher uses, and "
                   "above a float64 spectrum's numerical floor where that is higher (round-off of large weights); "
                   "the numerical floor alone for a layer whose largest eigenvalue is below 1e-2, e.g. a "
                   "--base delta, where 1e-5 would cut into the spectrum; 'numerical' = above the layer's "
                   "own numerical floor (scale-aware)"),
        OptionSpec("normalize", "none", "'none' or 'N'", _choice("none", "N"),
                   "'none' = X = W^T W (WeightWatcher's convention); 'N' = X = W^T W / N (the RMT papers)"),
        OptionSpec("conv", "pooled", "'pooled' or 'per_position'", _choice("pooled", "per_position"),
                   "conv layers: one spectrum pooling all kernel positions, or one row per position"),
        OptionSpec("ww_conv_scale", True, "True or False", _is_bool,
                   "scale Conv2d eigenvalues as WeightWatcher does (x 1/2 pooled, x kh*kw/2 per position), so log norms compare "
                   "with it and with the published tables"),
        OptionSpec("farms_aspect", None, "None or a number from 1 to 1e6", _none_or(_float_range(1.0, 1e6)),
                   "shape-bias correction (FARMS): fit the tail to the pooled eigenvalues of windows of "
                   "this aspect ratio covering each matrix, so alpha compares across layer shapes "
                   "(norms and ranks stay those of the whole matrix)",
                   cli_allowed="none or a number from 1 to 1e6"),
        OptionSpec("tails", True, "True or False", _is_bool,
                   "alternative tails: fit a truncated power law (at x_min, and E-TPL at the peak-bounded "
                   "x_min), exponential and log-normal; likelihood-ratio tests and best_fit"),
        OptionSpec("bootstrap", 0, "an integer from 0 to 100000", _int_range(0, 100_000),
                   "semi-parametric bootstrap replicates (x_min refitted in each): confidence interval "
                   "of alpha and goodness-of-fit p-value (0 = off; 200 is a good start)"),
        OptionSpec("confidence", 0.95, "a number in (0, 1)", _float_range(0.0, 1.0, lo_open=True, hi_open=True),
                   "level of the bootstrap and Bayesian intervals of alpha"),
        OptionSpec("prior_shape", 0.0, "a number from 0 to 1e9", _float_range(0.0, 1e9),
                   "Bayesian alpha: shape of the Gamma prior on alpha - 1 (0 with prior_rate 0 = Jeffreys)"),
        OptionSpec("prior_rate", 0.0, "a number from 0 to 1e9", _float_range(0.0, 1e9),
                   "Bayesian alpha: rate of the Gamma prior on alpha - 1"),
        OptionSpec("bayes_average", False, "True or False", _is_bool,
                   "also the Bayesian alpha averaged over every x_min candidate, weighted by its evidence with a "
                   "bulk uniform in log lambda (bayes_avg_* columns); a diagnostic of how much x_min matters, "
                   "which the warnings do not use"),
        OptionSpec("seed", 0, "an integer >= 0", _int_range(0),
                   "seed of every random draw (bootstrap, randomize), so results are reproducible"),
        OptionSpec("mp_fit", True, "True or False", _is_bool,
                   "Marchenko-Pastur fit of the bulk (sigma, edges, spikes above the edge plus the "
                   "Tracy-Widom margin, softrank), heavy entries and the 5+1 phase label"),
        OptionSpec("tw_margin", 4.0, "a number from 0 to 1e6", _float_range(0.0, 1e6),
                   "spikes and traps lie above the MP edge plus this many Tracy-Widom scales"),
        OptionSpec("phase_rank_collapse", 0.10, "a number in (0, 1]", _float_range(0.0, 1.0, lo_open=True),
                   "phase: share of zero eigenvalues from which a layer is rank-collapse"),
        OptionSpec("phase_ht_share", 0.05, "a number in (0, 1]", _float_range(0.0, 1.0, lo_open=True),
                   "phase: share of eigenvalues above the MP edge from which they form a tail "
                   "(heavy-tailed or bulk-decay) rather than a few spikes"),
        OptionSpec("phase_ht_alpha", 6.0, "a number > 1 and <= 1e6", _float_range(1.0, 1e6, lo_open=True),
                   "phase: a tail with alpha below this is heavy-tailed, else bulk-decay"),
        OptionSpec("phase_bleed_width", 0.25, "a number > 0 and <= 1e6", _float_range(0.0, 1e6, lo_open=True),
                   "phase: spikes all below (1 + this) x the MP edge are bleeding-out, else bulk+spikes"),
        OptionSpec("randomize", False, "True or False", _is_bool,
                   "shuffle each layer's entries (seeded; a conv's kernel positions together) and compare: "
                   "correlation traps (shuffled eigenvalues above the MP edge of the entries' own variance), "
                   "where they live (row, column), Jensen-Shannon distance between the two ESDs; one more "
                   "eigenvalue pass per layer"),
        OptionSpec("setol", True, "True or False", _is_bool,
                   "SETOL: the ERG (det X = 1) tail by a running log-sum, its edge, delta-lambda-min and "
                   "the layer-quality closed forms"),
        OptionSpec("localization", False, "True or False", _is_bool,
                   "eigenvector localisation: participation and localisation ratios and vector entropy of tail "
                   "and bulk eigenvectors (one eigenvector pass per layer)"),
        OptionSpec("base", None, "None, a path, a mapping of arrays, a torch or Keras model, or an opened source",
                   _source_ok,
                   "analyse the deltas W - W_base against this base model, tensor by tensor for the names "
                   "present in both with the same shape (the others are listed as skipped, never analysed); "
                   "for a LoRA adapter (a PEFT folder or a single-file LoRA): also analyse each adapted base "
                   "weight W and W + delta W",
                   cli_allowed="a model file or folder"),
        OptionSpec("min_evals", 50, "an integer >= 2", _int_range(2),
                   "layers with fewer eigenvalues are described (norms, ERG) but get no power-law fit, MP fit or phase"),
        OptionSpec("max_evals", None, "None or an integer >= 1", _int_range(1, none_ok=True),
                   "layers with more eigenvalues are skipped",
                   cli_allowed="none or an integer >= 1"),
        OptionSpec("layers", None, "None or a non-empty regular expression", _regex_ok,
                   "analyse only layers whose row name matches this regular expression (re.search): the module's "
                   "full dotted name, a tensor's name without '.weight' (an expert's row or a conv position's "
                   "has its index after it, a split part its label: 'c_attn[q]')",
                   cli_allowed="a non-empty regular expression"),
        OptionSpec("split", (), "a rule 'REGEX=PARTS' or a list of them", _split_ok,
                   "cut fused matrices into one row per part, named name[label]: rows whose name the REGEX finds "
                   "(re.search; dense, recurrent, expert or LoRA rows, named as in the table: an expert's "
                   "name[e], an adapter's name#delta; the first rule that matches) are cut along one side. "
                   "PARTS 'q,k,v' = equal parts of the longer side, a recurrent row's of its gates (GPT-2's "
                   "c_attn, nn.MultiheadAttention's in_proj_weight, an LSTM's 'i,f,g,o'); 'q:4096,k:1024,v:1024' = "
                   "parts of these lengths along the side of their sum (grouped-query qkv_proj); a '/G' suffix = "
                   "that side holds G groups one after another, each with every part in order (GPT-NeoX's "
                   "query_key_value, G = heads: 'q,k,v/32'); an '@0' or '@1' suffix = the parts lie along the "
                   "first or second axis of the matrix as the shape column gives it (its last two axes; an "
                   "update's #delta is laid out as its #base), "
                   "needed for a square one. A rule that matches no such row is refused; a row whose shape its "
                   "parts do not fit fails, saying so",
                   cli_allowed="REGEX=PARTS, the flag given once per rule"),
        OptionSpec("kinds", None, f"None or a subset of {LAYER_KINDS}", _kinds_ok,
                   "analyse only layers of these kinds",
                   cli_allowed=f"a comma-separated subset of {', '.join(LAYER_KINDS)}"),
        OptionSpec("workers", None, "None (one per CPU) or an integer >= 1", _int_range(1, none_ok=True),
                   "layers with matrices up to 4096 on the smaller side analysed at once, in threads, "
                   "each with a single-threaded BLAS (faster than one at a time with a multi-threaded "
                   "BLAS; larger ones run one at a time, and so do tiny ones, whose time is Python's; each "
                   "worker holds one tensor)",
                   cli_allowed="none (one per CPU) or an integer >= 1"),
        OptionSpec("keep_spectra", False, "True or False", _is_bool,
                   "keep each layer's eigenvalues (and the shuffled ones with randomize) on the result, "
                   "for the per-layer figures (htsr.plot) and the report; costs 8 bytes per eigenvalue"),
        OptionSpec("progress", False, "True or False", _is_bool,
                   "show a progress bar on stderr (needs tqdm)"),
    ]
}


def as_numpy(x: Any) -> Any:
    """A torch tensor's values as a numpy array (detached, on the CPU; bfloat16 and float8, which numpy lacks, as
    float32), told without importing torch; anything else as it is."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # (a dtype numpy has not)
            return t.float().numpy()
    return x


def check_values(where: str, x: Any, name: str = "values") -> np.ndarray:
    """A sample argument of the numeric core (a layer's eigenvalues, a tail) as sorted float64: a 1-D numpy array,
    list or torch tensor. OptionError naming ``where`` and ``name`` for one that is not 1-D numbers, or holds values
    that are NaN, infinite or not positive, saying how many and what to pass instead."""
    try:
        a = np.asarray(as_numpy(x), dtype=np.float64)
    except (TypeError, ValueError):
        raise OptionError(f"{where}: {name} must be a 1-D array of numbers, got {shown(x)}", name, x) from None
    if a.ndim != 1:
        raise OptionError(f"{where}: {name} must be 1-D (one layer's values), got an array of shape {a.shape}", name)
    # (two reductions where every value is good, as the pipeline's are: NaN fails both comparisons)
    if a.size and not (float(a.min()) > 0 and math.isfinite(float(a.max()))):
        bad = int(np.count_nonzero(~np.isfinite(a) | (a <= 0)))
        raise OptionError(f"{where}: {bad} of the {a.size} {name} are NaN, infinite or not positive; pass the finite "
                          f"positive ones ({name}[{name} > 0], with the NaN and infinite left out)", name)
    return a if a.size < 2 or bool(np.all(a[1:] >= a[:-1])) else np.sort(a)  # (the pipeline's come sorted)


#: arguments of the public fit functions checked by the rule of the analysis option they are (level: confidence)
_AS_OPTION = {"level": "confidence", "reps": "bootstrap"}


def check_args(where: str, **values: Any) -> None:
    """The public fit functions' arguments, checked by the rules analyze's options follow (one rule for both):
    OptionError naming ``where`` and the argument. ``share``: the information a value carries, in (0, 1]."""
    for name, value in values.items():
        value = plain(value)  # (as Options.create: a longdouble, whose item() is itself, too)
        value = value.item() if isinstance(value, np.generic) else value
        if name == "share":
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1):
                raise OptionError(f"{where}: share must be a number in (0, 1], got {shown(value)}", name, value)
            continue
        spec = OPTION_SPECS[_AS_OPTION.get(name, name)]
        if not spec.check(value):
            raise OptionError(f"{where}: {name} must be {spec.allowed}, got {shown(value)}", name, value)
