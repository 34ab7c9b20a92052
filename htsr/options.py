"""The one options object shared by :func:`htsr.analyze` and the CLI.

Each option is declared once, with its default, its allowed values and a one-line meaning, in
:data:`OPTION_SPECS`; :meth:`Options.create` validates every keyword against that table and raises an
:class:`~htsr.errors.OptionError` that names the option, what it got and what is allowed. The CLI
builds its ``--help`` from the same table, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import OptionError, shown
from .spectra import FEW_BELOW_FLOOR

__all__ = ["Options", "OPTION_SPECS", "LAYER_KINDS", "options_doc"]

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
        return float(str(v)) if v.dtype.kind == "f" and v.dtype.itemsize < 8 else v.item()
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
        OptionSpec("drop_top", 0, "an integer from 0 to 100", _int_range(0, 100),
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
                   "eigenvector localisation: participation and localisation ratios of tail and bulk "
                   "eigenvectors (one eigenvector pass per layer)"),
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
                   "analyse only layers whose full dotted name matches this regular expression (re.search)",
                   cli_allowed="a non-empty regular expression"),
        OptionSpec("kinds", None, f"None or a subset of {LAYER_KINDS}", _kinds_ok,
                   "analyse only layers of these kinds",
                   cli_allowed=f"a comma-separated subset of {', '.join(LAYER_KINDS)}"),
        OptionSpec("workers", None, "None (one per CPU) or an integer >= 1", _int_range(1, none_ok=True),
                   "layers with matrices up to 2048 on the smaller side analysed at once, in threads, "
                   "each with a single-threaded BLAS (faster than one at a time with a multi-threaded "
                   "BLAS; larger ones run one at a time; each worker holds one tensor)",
                   cli_allowed="none (one per CPU) or an integer >= 1"),
        OptionSpec("keep_spectra", False, "True or False", _is_bool,
                   "keep each layer's eigenvalues (and the shuffled ones with randomize) on the result, "
                   "for the per-layer figures (htsr.plot) and the report; costs 8 bytes per eigenvalue"),
        OptionSpec("progress", False, "True or False", _is_bool,
                   "show a progress bar on stderr (needs tqdm)"),
    ]
}


def options_doc() -> str:
    """The options of :data:`OPTION_SPECS` as a docstring section (:func:`htsr.analyze`'s, for ``help()``): one
    entry per option, its meaning, default and allowed values, as ``--help`` gives them."""
    lines = ["", "    Options (keywords; ``htsr analyze --help`` gives the same as flags):", ""]
    for name, spec in OPTION_SPECS.items():
        lines.append(f"    ``{name}``: {spec.help} (default: {spec.default!r}; {spec.allowed})")
    return "\n".join(lines) + "\n"


#: WeightWatcher 0.7.7's analyze() keywords htsr has no option of that name for → what htsr does instead (the
#: unknown-option error says it; docs/weightwatcher.md has the measured agreement)
WEIGHTWATCHER_KEYWORDS = {
    "pool": "pool=False is conv='per_position'",
    "vectors": "vectors=True is localization=True (other definitions)",
    "fix_fingers": "'xmin_peak' is xmin='peak', 'clip_xmax' is clip_xmax=True",
    "xmax": "xmax=-k is drop_top=k",
    "fit": "the truncated power laws ('TPL', 'E_TPL') are the tpl_* and etpl_* columns, fitted by default (tails=True)",
    "base_model": "base_model=M is base=M (the rows are W - W_base)",
    "svd_method": "precision='accurate' is its float64 SVD; 'fast' (the default) a guarded float32 Gram",
    "conv2d_norm": "conv2d_norm=False is ww_conv_scale=False",
    "detX": "the ERG columns (num_erg, erg_lambda_min_raw …) are computed by default (setol=True)",
    "ERG": "the ERG columns are computed by default (setol=True)",
    "peft": "a PEFT adapter folder is read as one (its #delta rows); base=MODEL adds W and W + ΔW",
    "min_size": "htsr filters by eigenvalue count: min_evals",
    "max_size": "htsr filters by eigenvalue count: max_evals",
    "plot": "htsr.plot draws the figures; the CLI's --report writes them into one HTML file",
    "savefig": "htsr.plot draws the figures; the CLI's --report writes them into one HTML file",
    "glorot_fix": "it changes nothing in WeightWatcher 0.7.7; htsr has no such option",
    "tolerance": "ranks use the matrix's own round-off floor (matrix_rank, num_evals_below_floor)",
    "intra": "not offered: products of layers are no layer's weights",
    "inverse": "not offered: W⁻¹ is no layer's weights",
    "conv2d_fft": "not offered: a conv's FFT singular values are no layer's weight matrix",
    "stacked": "not offered: every layer stacked is no layer's weights",
}


@dataclass(frozen=True)
class Options:
    """Validated analysis options. Build with :meth:`create`; fields are documented in OPTION_SPECS."""

    precision: str = "fast"
    refine_fraction: float = FEW_BELOW_FLOOR
    xmin: Any = "ks"
    clip_xmax: bool = False
    max_fingers: int = 10
    finger_thresh: float = 1.0
    drop_top: int = 0
    evals_floor: str = "ww"
    normalize: str = "none"
    conv: str = "pooled"
    ww_conv_scale: bool = True
    farms_aspect: float | None = None
    tails: bool = True
    bootstrap: int = 0
    confidence: float = 0.95
    prior_shape: float = 0.0
    prior_rate: float = 0.0
    bayes_average: bool = False
    seed: int = 0
    mp_fit: bool = True
    tw_margin: float = 4.0
    phase_rank_collapse: float = 0.10
    phase_ht_share: float = 0.05
    phase_ht_alpha: float = 6.0
    phase_bleed_width: float = 0.25
    randomize: bool = False
    setol: bool = True
    localization: bool = False
    base: Any = None
    min_evals: int = 50
    max_evals: int | None = None
    layers: str | None = None
    kinds: frozenset[str] | None = None
    workers: int | None = None
    keep_spectra: bool = False
    progress: bool = False

    @classmethod
    def create(cls, **kwargs: Any) -> "Options":
        """Validate keyword options and return an :class:`Options`; raise OptionError on any problem."""
        unknown = sorted(set(kwargs) - set(OPTION_SPECS))
        if unknown:
            ww = WEIGHTWATCHER_KEYWORDS.get(unknown[0])
            raise OptionError(f"unknown option {unknown[0]!r}"
                              + (f" (a WeightWatcher keyword: {ww}; see docs/weightwatcher.md)" if ww else "")
                              + f"; known options: {', '.join(OPTION_SPECS)}")
        if isinstance(kwargs.get("layers"), (list, tuple, int)) and not isinstance(kwargs["layers"], bool):
            raise OptionError(f"option 'layers' must be {OPTION_SPECS['layers'].allowed}, got {shown(kwargs['layers'])}: "
                              "htsr picks layers by a regular expression of their names (re.search), not by "
                              "WeightWatcher's layer ids; '^(?!a$|b$)' leaves out the layers named a and b",
                              "layers", kwargs["layers"])
        kwargs = {k: plain(v) for k, v in kwargs.items()}
        for name, value in kwargs.items():
            spec = OPTION_SPECS[name]
            if not spec.check(value):
                raise OptionError(f"option {name!r} must be {spec.allowed}, got {shown(value)}", name, value)
        for name, conditions in _APPLIES_WITH.items():  # an option that would change nothing is refused
            if name in kwargs and kwargs[name] != OPTION_SPECS[name].default and not any(
                    _holds(kwargs.get(other, OPTION_SPECS[other].default), needed) for other, needed in conditions):
                when = " or ".join(f"option {other!r} {_words(needed)}" for other, needed in conditions)
                raise OptionError(f"option {name!r} applies only with {when}: otherwise it would change nothing")
        # (both given: max_evals alone below the default min_evals lists the layers without a fit, as describe())
        low, high = kwargs.get("min_evals"), kwargs.get("max_evals")
        if low is not None and high is not None and low > high:
            raise OptionError(f"option 'min_evals' ({low}) is above option 'max_evals' ({high}): no layer could be "
                              "fitted; lower the one or raise the other")
        if kwargs.get("drop_top") and kwargs.get("clip_xmax"):
            raise OptionError("option 'drop_top' and option 'clip_xmax' both choose the top eigenvalues a fit leaves "
                              "out: give one of them")
        if isinstance(kwargs.get("kinds"), (str, list, tuple, set)):
            k = kwargs["kinds"]
            kwargs["kinds"] = frozenset((k,) if isinstance(k, str) else k)
        kinds = kwargs.get("kinds")
        for name, acting in _ON_KINDS.items():  # and one that acts on no layer of the kinds selected
            if name in kwargs and kwargs[name] != OPTION_SPECS[name].default and not acts_on(name, kinds):
                raise OptionError(f"option {name!r} acts only on {', '.join(k for k in LAYER_KINDS if k in acting)} "
                                  f"layers, which option 'kinds' set to '{','.join(sorted(kinds))}' leaves out: it "
                                  "would change nothing")
        # a number option given as an int is the float it means (farms_aspect=2 recorded as 2.0, as the CLI's)
        kwargs = {k: float(v) if (k in _FLOAT_OPTIONS or k == "xmin") and isinstance(v, int) and not isinstance(v, bool)
                  else v for k, v in kwargs.items()}
        return cls(**kwargs)

    def as_dict(self, ui: bool = True) -> dict[str, Any]:
        """The options by name; without the ones that change how a run shows and runs, not its numbers
        (:data:`UI_OPTIONS`), with ``ui=False``: what a result records."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if ui or f.name not in UI_OPTIONS}
        # (shallow: never copy a base model)
        if d["kinds"] is not None:
            d["kinds"] = sorted(d["kinds"])
        if d["base"] is not None:  # a path as text, an opened source by its description, an in-memory base by its type
            b = d["base"]
            # (a path absolute: './m.safetensors' and 'm.safetensors' are one base, and a saved run read from
            # another folder still names it)
            where = b if isinstance(b, (str, os.PathLike)) else getattr(b, "path", None)
            d["base"] = (os.path.abspath(os.fspath(where)) if isinstance(where, (str, os.PathLike)) and os.fspath(where)
                         else b.description if isinstance(getattr(b, "description", None), str) else type(b).__name__)
        return d


class _Above(float):
    """A condition of :data:`_APPLIES_WITH`: the other option's value above this number."""


def _holds(value: Any, needed: Any) -> bool:
    return value is not None and value > needed if isinstance(needed, _Above) else value == needed


def _words(needed: Any) -> str:
    return f"above {needed:g}" if isinstance(needed, _Above) else f"set to {needed!r}"


#: options that act only with another one's value (a finger setting without clip_xmax, a phase threshold
#: without the MP fit): option -> the conditions (other option, the value it needs), one of which must hold;
#: given without, with a value other than their default, they are refused
_APPLIES_WITH = {"max_fingers": (("clip_xmax", True),), "finger_thresh": (("clip_xmax", True),),
                 "refine_fraction": (("precision", "fast"),),
                 "tw_margin": (("mp_fit", True), ("randomize", True)),  # the spikes' edge, and the traps'
                 "phase_rank_collapse": (("mp_fit", True),), "phase_ht_share": (("mp_fit", True),),
                 "phase_ht_alpha": (("mp_fit", True),), "phase_bleed_width": (("mp_fit", True),),
                 "seed": (("bootstrap", _Above(0)), ("randomize", True))}  # the only random draws

#: options that act on layers of some kinds only (a low-rank update is analysed from its factors: no shuffle,
#: eigenvectors, MP fit, windows, float64 choice or floor of its own); given with kinds that select none, refused
_NOT_LORA = frozenset(LAYER_KINDS) - {"lora"}
_ON_KINDS = {"conv": frozenset({"conv1d", "conv2d", "conv3d", "lora"}), "ww_conv_scale": frozenset({"conv2d", "lora"}),
             **{name: _NOT_LORA for name in ("randomize", "localization", "mp_fit", "tw_margin", "phase_rank_collapse",
                                             "phase_ht_share", "phase_ht_alpha", "phase_bleed_width", "precision",
                                             "refine_fraction", "evals_floor", "farms_aspect")}}

def acts_on(name: str, kinds: Any) -> bool:
    """Whether option ``name`` acts on some layer of ``kinds`` (None, a kind or kinds: all of them by default)."""
    if not kinds or name not in _ON_KINDS:
        return True
    return bool(frozenset((kinds,) if isinstance(kinds, str) else kinds) & _ON_KINDS[name])


#: options that change how a run shows its progress, runs and what it keeps for figures, never a number
UI_OPTIONS = frozenset({"progress", "workers", "keep_spectra"})

# the dataclass defaults and the spec table must agree; checked at import so they cannot drift
for _f in dataclasses.fields(Options):
    assert OPTION_SPECS[_f.name].default == _f.default, _f.name
assert set(OPTION_SPECS) == {f.name for f in dataclasses.fields(Options)}
#: options whose values are numbers (an int given is the float it means)
_FLOAT_OPTIONS = frozenset(f.name for f in dataclasses.fields(Options) if "float" in str(f.type))
