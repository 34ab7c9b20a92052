"""The one options object shared by :func:`htsr.analyze` and the CLI.

Each option is declared once, with its default, its allowed values and a one-line meaning, in
:data:`OPTION_SPECS`; :meth:`Options.create` validates every keyword against that table and raises an
:class:`~htsr.errors.OptionError` that names the option, what it got and what is allowed. The CLI
builds its ``--help`` from the same table, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

from .errors import OptionError, shown
# (the table of rules, htsr.specs; OptionSpec, OPTION_SPECS … re-exported: they were defined here)
from .specs import FEW_BELOW_FLOOR, LAYER_KINDS, OPTION_SPECS, XMIN_STRATEGIES, OptionSpec, SplitRule, plain, typed_flag

__all__ = ["LAYER_KINDS", "OPTION_SPECS", "XMIN_STRATEGIES", "OptionSpec", "Options", "options_doc", "plain",
           "typed_flag"]

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
    "ww2x": "ww2x=True is conv='per_position' (as pool=False)",
    "channels": "a conv kernel's layout is read from its format; one in TensorFlow's layout read by name and "
                "shape is told by its shape (README)",
    "xmin_max": "x_min is chosen by xmin ('ks', 'peak': candidates up to 1.5 x the log-histogram peak, 'median', "
                "or a number)",
    "fft": "not offered: a conv's FFT singular values are no layer's weight matrix",
    "max_N": "htsr filters by eigenvalue count: max_evals",
    "start_ids": "htsr names layers, not ids: layers=REGEX",
    "pl_package": "htsr fits with its own exact MLE and KS scan (the powerlaw package's to ~1e-15)",
    "deltas": "not offered: the level spacings of a layer's eigenvalues are drawn by no htsr figure",
    "deltaEs": "not offered: the level spacings of a layer's eigenvalues are drawn by no htsr figure",
    "sparsify": "it acts only with intra=True in WeightWatcher (products of layers), which htsr does not offer",
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
    split: tuple[str, ...] = ()
    kinds: frozenset[str] | None = None
    workers: int | None = None
    keep_spectra: bool = False
    progress: bool = False

    # an in-memory base (a mapping of arrays, a module) is compared and hashed by identity, and shown by its type:
    # the generated ones had compared its arrays (ValueError), failed to hash a dict, printed every array
    def _key(self) -> tuple:
        b = self.base
        base = (os.path.abspath(os.fspath(b)) if isinstance(b, (str, os.PathLike)) else None if b is None
                else ("id", id(b)))  # (a path as as_dict records it: './m' is 'm')
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "base") + (base,)

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, Options) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.as_dict().items() if getattr(self, k) is not OPTION_SPECS[k].default
                 and getattr(self, k) != OPTION_SPECS[k].default}
        return f"Options({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @classmethod
    def create(cls, **kwargs: Any) -> "Options":
        """Validate keyword options and return an :class:`Options`; raise OptionError on any problem."""
        unknown = sorted(set(kwargs) - set(OPTION_SPECS))
        if unknown:
            ww = WEIGHTWATCHER_KEYWORDS.get(unknown[0])
            raise OptionError(f"unknown option {unknown[0]!r}"
                              + (f" (a WeightWatcher keyword: {ww}; see docs/weightwatcher.md)" if ww else "")
                              + f"; known options: {', '.join(OPTION_SPECS)}")
        kwargs = {k: plain(v) for k, v in kwargs.items()}  # (first: np.int64(3) is a layer id too)
        if isinstance(kwargs.get("layers"), (list, tuple, int)) and not isinstance(kwargs["layers"], bool):
            raise OptionError(f"option 'layers' must be {OPTION_SPECS['layers'].allowed}, got {shown(kwargs['layers'])}: "
                              "htsr picks layers by a regular expression of their names (re.search), not by "
                              "WeightWatcher's layer ids; '^(?!a$|b$)' leaves out the layers named a and b",
                              "layers", kwargs["layers"])
        if isinstance(kwargs.get("split"), (str, list, tuple)):  # one rule, or a list of them: a tuple of rules
            rules = kwargs["split"]
            kwargs["split"] = rules = (rules,) if isinstance(rules, str) else tuple(rules)
            for text in rules:  # (what is wrong with a rule, not only what a rule is)
                try:
                    SplitRule.parse(text)
                except ValueError as e:
                    raise OptionError(f"option 'split': rule {shown(text)}: {e}") from None
        for name, value in kwargs.items():
            spec = OPTION_SPECS[name]
            if not spec.check(value):
                raise OptionError(f"option {name!r} must be {spec.allowed}, got {shown(value)}", name, value)
        for name, conditions in _APPLIES_WITH.items():  # an option that would change nothing is refused
            if name in kwargs and kwargs[name] != OPTION_SPECS[name].default and not any(
                    _holds(kwargs.get(other, OPTION_SPECS[other].default), needed) for other, needed in conditions):
                when = " or ".join(f"option {other!r} {_words(needed)}" for other, needed in conditions)
                raise OptionError(f"option {name!r} applies only with {when}: otherwise it would change nothing")
        # both given, min above max: refused; max_evals alone below the default min_evals lists the layers without a
        # fit, as describe(), and an option acting only on fitted layers would change nothing
        low, high = kwargs.get("min_evals"), kwargs.get("max_evals")
        if low is not None and high is not None and low > high:
            raise OptionError(f"option 'min_evals' ({low}) is above option 'max_evals' ({high}): no layer could be "
                              "fitted; lower the one or raise the other")
        if describe_only(kwargs) and (fitting := [k for k in FITTED_ONLY if k in kwargs
                                                  and kwargs[k] != OPTION_SPECS[k].default]):
            raise OptionError(f"option {fitting[0]!r} acts only on fitted layers, and option 'max_evals' ({high}) "
                              f"below option 'min_evals' ({OPTION_SPECS['min_evals'].default if low is None else low})"
                              " leaves none to fit (every layer is listed, not fitted): it would change nothing; "
                              "raise max_evals, or leave it out")
        if kwargs.get("drop_top") and kwargs.get("clip_xmax"):
            raise OptionError("option 'drop_top' and option 'clip_xmax' both choose the top eigenvalues a fit leaves "
                              "out: give one of them")
        if isinstance(kwargs.get("kinds"), (str, list, tuple, set)):
            k = kwargs["kinds"]
            kwargs["kinds"] = frozenset((k,) if isinstance(k, str) else k)
        kinds = kwargs.get("kinds")
        for name, acting in KIND_BOUND.items():  # and one that acts on no layer of the kinds selected
            if name in kwargs and kwargs[name] != OPTION_SPECS[name].default and not acts_on(name, selected(kinds)):
                raise OptionError(f"option {name!r} acts only on {kinds_words(acting)} "
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
        d["split"] = list(d["split"])  # (as JSON keeps it)
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


def describe_only(options: dict[str, Any]) -> bool:
    """Whether ``options`` (keywords) fit no layer: max_evals below min_evals (its default when not given),
    WeightWatcher's describe(). False for values no option takes (their own check refuses them)."""
    low, high = options.get("min_evals", OPTION_SPECS["min_evals"].default), options.get("max_evals")
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (low, high)) and high < low


#: options that act only on layers with a fit (min_evals eigenvalues or more): the fit, its diagnostics, the MP fit
#: and phase, the shuffled copy; norms and ranks are a not-fitted layer's too
FITTED_ONLY = ("xmin", "clip_xmax", "max_fingers", "finger_thresh", "drop_top", "evals_floor", "farms_aspect",
               "tails", "bootstrap", "confidence", "prior_shape", "prior_rate", "bayes_average", "seed", "mp_fit",
               "tw_margin", "phase_rank_collapse", "phase_ht_share", "phase_ht_alpha", "phase_bleed_width",
               "randomize")

#: options that act on layers of some kinds only (a low-rank update is analysed from its factors: no shuffle,
#: eigenvectors, MP fit, windows, float64 choice or floor of its own); given with kinds that select none, refused
_NOT_LORA = frozenset(LAYER_KINDS) - {"lora"}
#: among the kinds of a model's rows (:func:`row_kinds`), a LoRA update of a conv layer: the conv options act on it
#: (its kernel positions), not on a LoRA update of a Linear layer
CONV_LORA = "lora (of a conv)"
CONV2D_LORA = "lora (of a conv2d)"  # (WeightWatcher's conv scale is a Conv2d's, its LoRA's too)
KIND_BOUND = {"conv": frozenset({"conv1d", "conv2d", "conv3d", CONV_LORA}),
              "ww_conv_scale": frozenset({"conv2d", CONV2D_LORA}),
             **{name: _NOT_LORA for name in ("randomize", "localization", "mp_fit", "tw_margin", "phase_rank_collapse",
                                             "phase_ht_share", "phase_ht_alpha", "phase_bleed_width", "precision",
                                             "refine_fraction", "evals_floor", "farms_aspect")}}


def kinds_words(kinds: Any) -> str:
    """``kinds`` (a set of layer kinds) as a message lists them, in :data:`LAYER_KINDS`' order (a LoRA update of a
    conv among them: 'lora' says it, else, as an option's kinds, last)."""
    words = [k for k in LAYER_KINDS if k in kinds]
    return ", ".join(words + ([] if "lora" in words else [k for k in (CONV_LORA, CONV2D_LORA) if k in kinds]))


def row_kinds(rows: Iterable[Any]) -> set[str]:
    """The kinds of a model's rows (each with ``kind``, and ``tensor_shape`` or a result's ``shape`` 'AxBxC'), as
    the options act on them: a LoRA update of a conv (a kernel in its shape) is also :data:`CONV_LORA`, of a
    Conv2d's (two kernel axes) :data:`CONV2D_LORA` too."""
    kinds = set()
    for r in rows:
        kinds.add(r.kind)
        ndim = len(getattr(r, "tensor_shape", None) or str(r.shape).split("x")) if r.kind == "lora" else 2
        kinds.update(([CONV_LORA] if ndim > 2 else []) + ([CONV2D_LORA] if ndim == 4 else []))
    return kinds


def selected(kinds: Any) -> Any:
    """Kinds a user selects (option 'kinds': None, a kind or kinds) as the options act on them: 'lora' may hold
    a LoRA update of a conv (:data:`CONV_LORA`); a model's rows say which (:func:`row_kinds`)."""
    if not kinds:
        return kinds
    k = frozenset((kinds,) if isinstance(kinds, str) else kinds)
    return k | {CONV_LORA, CONV2D_LORA} if "lora" in k else k


def acts_on(name: str, kinds: Any) -> bool:
    """Whether option ``name`` acts on some layer of ``kinds`` (None, a kind or kinds: all of them by default): a
    model's :func:`row_kinds`, or the kinds a user selects as :func:`selected` reads them."""
    if not kinds or name not in KIND_BOUND:
        return True
    return bool(frozenset((kinds,) if isinstance(kinds, str) else kinds) & KIND_BOUND[name])


#: options that change how a run shows its progress, runs and what it keeps for figures, never a number
UI_OPTIONS = frozenset({"progress", "workers", "keep_spectra"})

# the dataclass defaults and the spec table must agree; checked at import so they cannot drift
for _f in dataclasses.fields(Options):
    assert OPTION_SPECS[_f.name].default == _f.default, _f.name
assert set(OPTION_SPECS) == {f.name for f in dataclasses.fields(Options)}
#: options whose values are numbers (an int given is the float it means)
_FLOAT_OPTIONS = frozenset(f.name for f in dataclasses.fields(Options) if "float" in str(f.type))
