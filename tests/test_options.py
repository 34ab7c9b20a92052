"""options.py: the analysis options' allowed values at their boundaries, the rules between them, and the
one-line errors that name them (the CLI's flags are generated from the same specs: test_cli.py)."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

import htsr

from htsr.errors import OptionError
from htsr.options import OPTION_SPECS, Options


# integer upper bound inclusive
def test_integer_options_accept_their_documented_upper_bound():
    assert Options.create(clip_xmax=True, max_fingers=100).max_fingers == 100
    assert Options.create(drop_top=100).drop_top == 100
    assert Options.create(bootstrap=100_000).bootstrap == 100_000
    with pytest.raises(OptionError):
        Options.create(clip_xmax=True, max_fingers=101)


# closed float ranges include their upper end ("a number in [0, 1]", "(0, 1]")
def test_closed_float_ranges_accept_their_upper_end():
    assert Options.create(refine_fraction=1.0).refine_fraction == 1.0
    assert Options.create(phase_rank_collapse=1.0).phase_rank_collapse == 1.0
    assert Options.create(phase_ht_share=1).phase_ht_share == 1.0
    assert Options.create(tw_margin=1e6).tw_margin == 1e6


# kinds must be non-empty
def test_empty_kinds_is_refused():
    for empty in ([], (), set(), frozenset()):
        with pytest.raises(OptionError, match="'kinds'"):
            Options.create(kinds=empty)


# confidence is an open interval (0, 1)
def test_confidence_of_one_is_refused():
    with pytest.raises(OptionError, match="'confidence'"):
        Options.create(confidence=1.0)
    assert Options.create(confidence=0.999).confidence == 0.999


# min_evals equal to max_evals is a valid (single-size) window
def test_min_evals_equal_to_max_evals_is_accepted():
    o = Options.create(min_evals=60, max_evals=60)
    assert (o.min_evals, o.max_evals) == (60, 60)
    with pytest.raises(OptionError, match="above option 'max_evals'"):
        Options.create(min_evals=61, max_evals=60)
    # each value quoted beside its own option (swapped, the message contradicts itself), and what to do
    with pytest.raises(OptionError, match=r"^option 'min_evals' \(80\) is above option 'max_evals' \(70\): no layer "
                                          r"could be fitted; lower the one or raise the other$"):
        Options.create(min_evals=80, max_evals=70)


# max_evals alone below the default min_evals lists every layer unfitted (describe()): an option acting only on
# fitted layers would change nothing there, and is refused as any such option is (EfficientNet-Lite0 with
# --max-evals 40 --bootstrap 200 --randomize … had given a layers.csv identical to --max-evals 40 alone); options
# acting on every row's eigenvalues (precision, normalize, setol …) stay allowed
def test_fit_options_are_refused_when_max_evals_leaves_nothing_to_fit():
    for name, value in (("bootstrap", 200), ("randomize", True), ("xmin", "median"), ("mp_fit", False),
                        ("farms_aspect", 2.0), ("phase_ht_alpha", 3.0), ("bayes_average", True)):
        with pytest.raises(OptionError, match=rf"^option '{name}' acts only on fitted layers, and option 'max_evals' "
                                              r"\(40\) below option 'min_evals' \(50\) leaves none to fit"):
            Options.create(max_evals=40, **{name: value})
    for ok in (dict(precision="accurate"), dict(normalize="N"), dict(setol=False), dict(min_evals=40, bootstrap=200),
               dict(max_evals=50, bootstrap=200)):
        Options.create(**{"max_evals": 40, **ok})
    # and what it says holds: a 30 x 20 layer is listed with its norms, unfitted, under max_evals 40
    row = htsr.analyze({"fc.weight": np.random.default_rng(0).standard_normal((30, 20))}, max_evals=40).layers[0]
    assert row.status.startswith("not_fitted") and math.isnan(row.alpha) and row.log_norm > 0


# an int xmin is recorded as the float it means, as the other number options
def test_integer_xmin_is_recorded_as_a_float():
    for given in (2, np.int64(2)):
        x = Options.create(xmin=given).xmin
        assert type(x) is float and x == 2.0
    assert Options.create(xmin="median").xmin == "median"


# an integer `layers` (a WeightWatcher layer id) gets the hint about regular expressions
def test_integer_layers_option_explains_layers_are_picked_by_regex():
    for given in (3, [1, 2], (0,), np.int64(3)):  # (numpy's integer, as a loop over np.arange gives, had no hint)
        with pytest.raises(OptionError, match="not by WeightWatcher's layer ids") as e:
            Options.create(layers=given)
        assert e.value.option == "layers"
    # a bool is no layer id (True == 1): the plain rule, without WeightWatcher's layer-id advice
    with pytest.raises(OptionError, match=r"^option 'layers' must be None or a non-empty regular expression, "
                                          r"got True$"):
        Options.create(layers=True)


# an option error quoting a value whose repr spans lines stays on one line
def test_option_error_quoting_a_multiline_repr_is_one_line():
    with pytest.raises(OptionError) as e:
        Options.create(confidence=np.ones((3, 3)))
    assert "\n" not in str(e.value) and "'confidence'" in str(e.value)


def test_finger_thresh_of_zero_is_refused():
    """The spec says 'a number > 0': 0 (accept any drop at all) is refused, the smallest positive accepted."""
    with pytest.raises(OptionError, match=r"'finger_thresh' must be a number > 0"):
        Options.create(clip_xmax=True, finger_thresh=0)
    with pytest.raises(OptionError, match=r"'finger_thresh' must be a number > 0"):
        Options.create(clip_xmax=True, finger_thresh=0.0)
    assert Options.create(clip_xmax=True, finger_thresh=1e-12).finger_thresh == 1e-12


@pytest.mark.parametrize("name,value", [
    ("farms_aspect", 2.0), ("randomize", True), ("localization", True), ("mp_fit", False),
    ("precision", "accurate"), ("evals_floor", "numerical"), ("tw_margin", 3.0),
    ("phase_rank_collapse", 0.2), ("phase_ht_share", 0.1), ("phase_ht_alpha", 5.0), ("phase_bleed_width", 0.5),
    ("refine_fraction", 0.5)])
def test_an_option_no_lora_row_uses_is_refused_with_kinds_lora(name, value):
    """A low-rank update is analysed from its factors: no windows, shuffle, MP fit … of its own (options._ON_KINDS).
    Each such option with kinds='lora' alone would change nothing, and is refused; with kinds='lora,dense' it acts."""
    with pytest.raises(OptionError, match=rf"option '{name}' acts only on dense, .*'lora' leaves out"):
        Options.create(kinds="lora", **{name: value})
    assert getattr(Options.create(kinds=("lora", "dense"), **{name: value}), name) == value


# a bool is no integer for the integer options (True == 1)
def test_integer_options_refuse_bools():
    for name, extra in (("bootstrap", {}), ("drop_top", {}), ("seed", {"randomize": True}),
                        ("max_fingers", {"clip_xmax": True}), ("min_evals", {}), ("max_evals", {}), ("workers", {})):
        with pytest.raises(OptionError, match=rf"option '{name}' must be"):
            Options.create(**{name: True}, **extra)


# max_fingers is "an integer from 1 to 100": 0 is refused, 1 accepted
def test_max_fingers_lower_bound():
    with pytest.raises(OptionError, match=r"'max_fingers' must be an integer from 1 to 100, got 0"):
        Options.create(clip_xmax=True, max_fingers=0)
    assert Options.create(clip_xmax=True, max_fingers=1).max_fingers == 1


# phase_ht_alpha is "a number > 1": 1 refused, just above accepted
def test_phase_ht_alpha_of_one_is_refused():
    with pytest.raises(OptionError, match=r"'phase_ht_alpha' must be a number > 1"):
        Options.create(phase_ht_alpha=1)
    assert Options.create(phase_ht_alpha=1.0000001).phase_ht_alpha == 1.0000001


# every option documented as "None or …" takes None given explicitly (as analyze(..., max_evals=None))
def test_options_documented_as_none_accept_an_explicit_none():
    nullable = [name for name, spec in OPTION_SPECS.items() if spec.allowed.startswith("None")]
    assert {"max_evals", "workers", "farms_aspect"} <= set(nullable)
    for name in nullable:
        assert getattr(Options.create(**{name: None}), name) is None, name
    # and refused, by name, by every other one (bootstrap=None had passed the check and failed inside a run)
    for name in set(OPTION_SPECS) - set(nullable):
        with pytest.raises(OptionError, match=rf"^option '{name}' must be .*, got None$"):
            Options.create(**{name: None})


# what a result records has no UI option (workers changes no number)
def test_result_options_record_no_ui_option():
    d = Options.create(workers=2, progress=True, keep_spectra=True).as_dict(ui=False)
    assert not {"workers", "progress", "keep_spectra"} & set(d)
    assert d["min_evals"] == 50
    # the full options (ui=True, the default) keep them, as given
    full = Options.create(workers=2, progress=True, keep_spectra=True).as_dict()
    assert (full["workers"], full["progress"], full["keep_spectra"]) == (2, True, True)


def test_the_options_object_has_the_tables_defaults_in_its_order():
    """Options() (a caller building it directly, as the CLI's summary of defaults does) has each option's default
    from OPTION_SPECS, of the same type, and its fields in the table's order (the order of --help and of a result's
    options): the dataclass restates each default, and the two could drift apart unseen."""
    fields = dataclasses.fields(Options)
    assert [f.name for f in fields] == list(OPTION_SPECS)
    for f in fields:
        want = OPTION_SPECS[f.name].default
        assert f.default == want and type(f.default) is type(want), f.name


# the documented default of refine_fraction (README/--help: 0.01)
def test_refine_fraction_default_is_one_percent():
    assert Options().refine_fraction == 0.01 and Options.create().refine_fraction == 0.01


# each range's ends as documented: (option, value, the options it needs to act, accepted?)
@pytest.mark.parametrize("name,value,extra,ok", [
    ("refine_fraction", 0, {}, True),  # "0 = whenever any lies below": [0, 1] closed at 0
    ("drop_top", 0, {"clip_xmax": True}, True),  # 0 drops nothing: no conflict with clip_xmax
    ("bootstrap", 0, {}, True), ("seed", 0, {}, True),  # each one's default, given explicitly
    ("min_evals", 1, {}, False), ("min_evals", 2, {}, True),  # "an integer >= 2"
    ("workers", 0, {}, False), ("workers", 1, {}, True),  # "None or an integer >= 1"
    ("farms_aspect", 1, {}, True),  # square windows: "a number from 1 to 1e6"
    ("tw_margin", 0, {}, True),  # "a number from 0 to 1e6": the MP edge itself
    ("phase_rank_collapse", 0, {}, False), ("phase_bleed_width", 0, {}, False),  # "(0, 1]", "> 0"
    ("finger_thresh", 1e9, {"clip_xmax": True}, True), ("finger_thresh", 1.000001e9, {"clip_xmax": True}, False),
    ("prior_rate", 1e9, {}, True), ("prior_rate", float("inf"), {}, False),  # "a number from 0 to 1e9"
    ("refine_fraction", True, {}, False), ("confidence", False, {}, False),  # a bool is no number
])
def test_each_range_end_is_accepted_or_refused_as_documented(name, value, extra, ok):
    """The ends of each option's range as its allowed text states them (inclusive, exclusive, the type): an end
    refused that the text allows, or allowed that it refuses, had gone unseen for every option but a few."""
    if ok:
        assert getattr(Options.create(**{name: value}, **extra), name) == value
    else:
        with pytest.raises(OptionError, match=rf"^option '{name}' must be {re.escape(OPTION_SPECS[name].allowed)}, "):
            Options.create(**{name: value}, **extra)


@pytest.mark.parametrize("name,extra", [
    ("refine_fraction", {}), ("finger_thresh", {"clip_xmax": True}), ("farms_aspect", {}), ("confidence", {}),
    ("prior_shape", {}), ("prior_rate", {}), ("tw_margin", {}), ("phase_rank_collapse", {}), ("phase_ht_share", {}),
    ("phase_ht_alpha", {}), ("phase_bleed_width", {}), ("xmin", {})])
def test_number_options_refuse_nan_and_infinities(name, extra):
    """A number option is a finite number: NaN (every comparison False) and ±inf are refused by name, as the
    table's ranges say; a check written with negated comparisons would let NaN through unseen."""
    for bad in (float("nan"), np.float32("nan"), float("inf"), -float("inf")):
        with pytest.raises(OptionError, match=rf"option '{name}' must be") as e:
            Options.create(**{name: bad}, **extra)
        assert e.value.option == name


def test_a_layers_regex_the_parser_cannot_take_is_refused_by_name():
    """'' (an unset shell variable) would match every layer; 1000 nested groups exhaust re's recursion and a
    repeat count beyond 2**32 overflows it: each is an OptionError naming 'layers', not a bare RecursionError or
    OverflowError from deep inside a run."""
    for bad in ("", "(" * 1000 + "a" + ")" * 1000, "a{4294967296}"):
        with pytest.raises(OptionError, match="^option 'layers' must be None or a non-empty regular expression"):
            Options.create(layers=bad)
    assert Options.create(layers="(" * 10 + "a" + ")" * 10).layers == "(" * 10 + "a" + ")" * 10


def test_options_that_need_another_are_accepted_with_it():
    """Each of an option's conditions suffices (tw_margin is the spikes' edge with mp_fit and the traps' with
    randomize), and an option given at its default needs none: refusing these would turn away real runs. A phase
    threshold without the MP fit changes nothing and is refused, as each other one is."""
    assert Options.create(tw_margin=3.0, mp_fit=False, randomize=True).tw_margin == 3.0
    assert Options.create(seed=7, randomize=True).seed == 7 and Options.create(seed=7, bootstrap=1).seed == 7
    with pytest.raises(OptionError, match="'seed' applies only with option 'bootstrap' above 0"):
        Options.create(seed=7, bootstrap=0)
    for name, value in (("phase_rank_collapse", 0.2), ("phase_ht_share", 0.1), ("phase_ht_alpha", 5.0),
                        ("phase_bleed_width", 0.5)):
        with pytest.raises(OptionError, match=rf"^option '{name}' applies only with option 'mp_fit' set to True"):
            Options.create(mp_fit=False, **{name: value})
        assert getattr(Options.create(mp_fit=False, **{name: OPTION_SPECS[name].default}), name) is not None
    # at their defaults, given, with kinds that select none of their layers: no change either way, accepted
    assert Options.create(kinds="dense", conv="pooled", ww_conv_scale=True).conv == "pooled"
    assert Options.create(kinds="lora", conv="per_position").conv == "per_position"  # a conv LoRA's positions
    # max_evals alone below the default min_evals lists the layers without a fit (describe()); drop_top=0 drops none
    assert Options.create(max_evals=10).max_evals == 10
    assert Options.create(drop_top=0, clip_xmax=True).clip_xmax is True
    # either condition of tw_margin suffices, and its message says so ("or", not "and")
    with pytest.raises(OptionError, match=r"^option 'tw_margin' applies only with option 'mp_fit' set to True or "
                                          r"option 'randomize' set to True: otherwise it would change nothing$"):
        Options.create(tw_margin=3.0, mp_fit=False)
    # the finger settings without clip_xmax and refine_fraction on the float64 path change nothing: refused
    for given, needs in (({"max_fingers": 5}, "option 'clip_xmax' set to True"),
                         ({"finger_thresh": 2.0}, "option 'clip_xmax' set to True"),
                         ({"refine_fraction": 0.5, "precision": "accurate"}, "option 'precision' set to 'fast'")):
        name = next(iter(given))
        with pytest.raises(OptionError, match=rf"^option '{name}' applies only with {re.escape(needs)}: "):
            Options.create(**given)
    # drop_top or clip_xmax alone is a run; both together are refused, with what to do
    assert Options.create(drop_top=2).drop_top == 2 and Options.create(clip_xmax=True).clip_xmax is True
    with pytest.raises(OptionError, match=r"^option 'drop_top' and option 'clip_xmax' both choose the top eigenvalues "
                                          r"a fit leaves out: give one of them$"):
        Options.create(drop_top=2, clip_xmax=True)


def test_kinds_are_recorded_as_a_frozen_set_whatever_was_given():
    """kinds given as a string, list, tuple, set or frozenset is one frozenset: a caller's set changed afterwards
    does not change the options (a frozen object), and as_dict gives them sorted (JSON, stable order)."""
    given = {"dense", "conv2d"}
    o = Options.create(kinds=given)
    given.add("lora")
    assert o.kinds == frozenset({"dense", "conv2d"}) and type(o.kinds) is frozenset
    assert Options.create(kinds=frozenset({"rnn"})).kinds == frozenset({"rnn"})
    assert Options.create(kinds="conv2d").kinds == frozenset({"conv2d"})
    assert o.as_dict()["kinds"] == ["conv2d", "dense"]


def test_acts_on_takes_a_kind_kinds_or_none():
    """acts_on (the monitor's defaults use it with the kinds as given): a kind as a string is that kind, not its
    letters; an option not restricted to some kinds acts on any."""
    from htsr.options import CONV2D_LORA, CONV_LORA, acts_on, selected

    assert acts_on("conv", "conv2d") and acts_on("ww_conv_scale", "conv2d") and not acts_on("randomize", "lora")
    assert acts_on("conv", selected(["lora"])) and not acts_on("conv", ("dense", "rnn"))
    assert acts_on("seed", "lora") and acts_on("bootstrap", ["dense"]) and acts_on("randomize", None)
    # a model's rows: a LoRA update of a Linear layer has no kernel positions; one of a conv is also CONV_LORA
    assert not acts_on("conv", {"dense", "lora"}) and acts_on("conv", {"lora", CONV_LORA})
    # WeightWatcher's conv scale acts on a Conv2d LoRA's rows only (4-D: not a Conv1d's or Conv3d's)
    assert not acts_on("ww_conv_scale", {"lora", CONV_LORA}) and acts_on("ww_conv_scale", {"lora", CONV2D_LORA})
    # WeightWatcher's conv scale is a Conv2d's (and a conv LoRA's): with conv1d layers alone it changes nothing
    assert acts_on("ww_conv_scale", selected("lora")) and not acts_on("ww_conv_scale", ("conv1d", "conv3d"))
    assert Options.create(kinds="lora", ww_conv_scale=False).ww_conv_scale is False
    with pytest.raises(OptionError, match=r"^option 'ww_conv_scale' acts only on conv2d, lora \(of a conv2d\) layers, "
                                          r"which option 'kinds' set to 'conv1d' leaves out"):
        Options.create(kinds="conv1d", ww_conv_scale=False)


def test_a_number_option_given_as_an_int_is_recorded_as_a_float():
    """farms_aspect=2 (a 'float | None' field) is recorded as 2.0, as the CLI's --farms-aspect 2 and the other
    number options: a result's options would otherwise differ in type between the API and the CLI."""
    for name, value in (("farms_aspect", 2), ("confidence", np.float32(0.5)), ("tw_margin", 3)):
        got = getattr(Options.create(**{name: value}), name)
        assert type(got) is float and got == float(value), name


def test_a_float32_option_is_recorded_as_the_decimal_it_shows():
    """np.float32(0.9) (a value from a float32 sweep) is recorded as 0.9, not 0.8999999761581421: a run given it
    would not compare equal with one given 0.9."""
    assert Options.create(confidence=np.float32(0.9)).confidence == 0.9
    assert Options.create(phase_ht_share=np.float16(0.1)).phase_ht_share == 0.1
    assert Options.create(tw_margin=np.float64(0.1) * 3).tw_margin == 0.1 * 3  # float64 kept exactly
    # a longdouble (wider than a Python float; its item() is itself) is a Python float too: it was refused
    got = Options.create(confidence=np.longdouble(0.5)).confidence
    assert type(got) is float and got == 0.5


def test_typed_flag_is_the_flag_that_changes_an_option():
    """--no-mp-fit for an option on by default, the plain flag for every other (a number default such as
    max_fingers=10 is no switch), and a name outside the table (compare's ascending) as it is spelled."""
    from htsr.options import typed_flag

    assert [typed_flag(n) for n in ("mp_fit", "clip_xmax", "max_fingers", "bootstrap", "ascending")] == [
        "--no-mp-fit", "--clip-xmax", "--max-fingers", "--bootstrap", "--ascending"]


def test_options_doc_lists_every_option_with_its_default_and_allowed_values():
    """help(htsr.analyze) ends with the table: one line per option, its meaning, default and allowed values, the
    last option included (the line giving the allowed values had gone unchecked)."""
    import htsr
    from htsr.options import options_doc

    doc = options_doc()
    assert doc in htsr.analyze.__doc__
    lines = [ln for ln in doc.splitlines() if ln.startswith("    ``")]
    assert len(lines) == len(OPTION_SPECS)
    for line, (name, spec) in zip(lines, OPTION_SPECS.items()):
        assert line == f"    ``{name}``: {spec.help} (default: {spec.default!r}; {spec.allowed})"


def test_unknown_options_name_the_first_with_its_own_weightwatcher_hint():
    """Two unknown keywords: the error names the first in sorted order with that one's WeightWatcher hint (not the
    other's, nor none); each of WeightWatcher 0.7.7's analyze() keywords that htsr has no option for gets a hint
    (a fixed list: a hint dropped from the table had gone unseen, the test looping over the table itself), and
    the hint for xmax=-k names drop_top=k."""
    from htsr.options import WEIGHTWATCHER_KEYWORDS

    with pytest.raises(OptionError, match=r"^unknown option 'pool' \(a WeightWatcher keyword: pool=False is "):
        Options.create(zzz=1, pool=False)
    with pytest.raises(OptionError, match=r"^unknown option 'aaa'; known options: precision, "):
        Options.create(aaa=1, pool=False)
    ww = ("pool", "vectors", "fix_fingers", "xmax", "fit", "base_model", "svd_method", "conv2d_norm", "detX", "ERG",
          "peft", "min_size", "max_size", "plot", "savefig", "glorot_fix", "tolerance", "intra", "inverse",
          "conv2d_fft", "stacked")
    assert set(ww) <= set(WEIGHTWATCHER_KEYWORDS)
    with pytest.raises(OptionError, match=r"\(a WeightWatcher keyword: xmax=-k is drop_top=k; "):
        Options.create(xmax=-2)


def test_the_layer_id_hint_gives_a_regex_that_leaves_out_the_named_layers():
    """The error for layers=[…] (WeightWatcher's layer ids) says how to leave layers out by name; the
    expression it quotes does what it says: re.search leaves out 'a' and 'b' and keeps any other name."""
    with pytest.raises(OptionError) as e:
        Options.create(layers=[1, 2])
    pattern = re.search(r"'(\^\(\?!a\$\|b\$\))' leaves out the layers named a and b", str(e.value)).group(1)
    assert [bool(re.search(pattern, n)) for n in ("a", "b", "ab", "c", "ba")] == [False, False, True, True, True]


def test_result_options_record_a_base_by_its_absolute_path(tmp_path, monkeypatch):
    """A base given as a relative path, or as a source opened from one, is recorded by its absolute path (a saved
    run read from another folder still names it); an in-memory base by its type's name, not its contents."""
    from htsr.io import open_source

    np.savez(tmp_path / "base.npz", w=np.ones((3, 3)))
    monkeypatch.chdir(tmp_path)
    want = str(tmp_path / "base.npz")
    assert Options.create(base="base.npz").as_dict()["base"] == want
    assert Options.create(base=open_source("base.npz")).as_dict()["base"] == want
    assert Options.create(base={"w": np.ones((3, 3))}).as_dict()["base"] == "dict"
    # a source opened from memory has no path: its description, as results and errors show it
    assert Options.create(base=open_source({"w": np.ones((3, 3))})).as_dict()["base"] == "<mapping>"


def test_a_module_like_base_is_accepted():
    """base= takes a live torch module (told by its named_modules, without importing torch) besides paths and
    mappings; anything else is refused by name."""
    class Module:
        def named_modules(self):
            return iter(())

    assert isinstance(Options.create(base=Module()).base, Module)
    # a pathlib.Path, any read-only Mapping of arrays (open_source takes both) and a live Keras layer or model,
    # told as io.keras.is_keras_object tells it (a class named Layer from a keras module, with weights)
    import pathlib
    import types

    assert Options.create(base=pathlib.Path("m.safetensors")).base == pathlib.Path("m.safetensors")
    proxy = types.MappingProxyType({"w": np.ones((3, 3))})
    assert Options.create(base=proxy).base is proxy
    KerasLayer = type("Layer", (), {"__module__": "keras.src.layers.layer", "weights": ()})
    keras_model = type("Sequential", (KerasLayer,), {"__module__": "keras.src.models.sequential"})()
    assert Options.create(base=keras_model).base is keras_model
    with pytest.raises(OptionError, match="^option 'base' must be None, a path"):
        Options.create(base=3)


@pytest.mark.parametrize("keyword,advice,equivalent", [
    ("pool", "pool=False is conv='per_position'", {"conv": "per_position"}),
    ("conv2d_norm", "conv2d_norm=False is ww_conv_scale=False", {"ww_conv_scale": False}),
    ("svd_method", "precision='accurate' is its float64 SVD; 'fast' (the default)", {"precision": "accurate"}),
    ("fix_fingers", "'xmin_peak' is xmin='peak', 'clip_xmax' is clip_xmax=True", {"xmin": "peak"}),
    ("min_size", "htsr filters by eigenvalue count: min_evals;", {"min_evals": 10}),
    ("max_size", "htsr filters by eigenvalue count: max_evals;", {"max_evals": 1000}),
])
def test_each_weightwatcher_hint_names_the_htsr_option_that_does_it(keyword, advice, equivalent):
    """A WeightWatcher keyword's hint names the htsr option and value that does the same (WeightWatcher's float64
    SVD is precision='accurate', conv2d_norm=False is ww_conv_scale=False …), and that option takes the value: only
    the hint's presence was checked, so a hint pointing at the wrong option or value had gone unseen."""
    with pytest.raises(OptionError, match=rf"^unknown option '{keyword}' \(a WeightWatcher keyword: {re.escape(advice)}"):
        Options.create(**{keyword: True})
    o = Options.create(**equivalent)
    assert all(getattr(o, k) == v != OPTION_SPECS[k].default for k, v in equivalent.items())


def test_flag_allowed_is_the_command_lines_spelling():
    """--help and the CLI's errors state the allowed values as typed on a command line ('none', a comma list, a
    model file) where the API's words differ, and the API's words elsewhere."""
    assert OPTION_SPECS["max_evals"].flag_allowed == "none or an integer >= 1"
    assert OPTION_SPECS["workers"].flag_allowed == "none (one per CPU) or an integer >= 1"
    assert OPTION_SPECS["kinds"].flag_allowed.startswith("a comma-separated subset of dense, conv1d, ")
    assert OPTION_SPECS["base"].flag_allowed == "a model file or folder"
    assert OPTION_SPECS["confidence"].flag_allowed == OPTION_SPECS["confidence"].allowed == "a number in (0, 1)"


def test_numpy_bools_and_unsigned_integers_are_the_python_values_they_hold():
    """np.bool_ (a mask's element) and unsigned numpy integers (np.uint16 from a sweep) are accepted as the Python
    bool and int they hold and recorded as those: a switch given np.False_, or bootstrap given np.uint16(200), had
    been refused only if plain() stopped converting them, unseen (the tests used signed ints and floats)."""
    o = Options.create(tails=np.False_, mp_fit=np.True_, bootstrap=np.uint16(200), seed=np.uint8(3))
    assert (o.tails, o.mp_fit, o.bootstrap, o.seed) == (False, True, 200, 3)
    assert [type(v) for v in (o.tails, o.mp_fit, o.bootstrap, o.seed)] == [bool, bool, int, int]


def test_an_option_acting_on_no_row_the_filters_keep_names_the_filters():
    """--layers fc --conv per_position on a model with a conv layer: refused, saying the rows the filter keeps are
    dense (it had said "this model has none", of a model that has one: h43)."""
    rng = np.random.default_rng(2)
    model = {"c.weight": rng.standard_normal((64, 32, 3, 3)), "fc.weight": rng.standard_normal((80, 60))}
    with pytest.raises(OptionError, match=r"^<mapping>: option 'conv' acts only on conv1d, conv2d, conv3d, lora "
                                          r"\(of a conv\) layers, and none of the rows option 'layers' keeps is one \(they are "
                                          r"dense\): it would change nothing; leave it out$"):
        htsr.analyze(model, layers="fc", conv="per_position")
    assert htsr.analyze(model, conv="per_position", min_evals=10).layers[0].name.startswith("c[")


def test_weightwatcher_limits_and_keywords_h45():
    """WeightWatcher's xmax=-k takes any k below half the eigenvalue count: drop_top takes up to 100000 (it had
    stopped at 100, refusing xmax=-120's equivalent); its deltas / deltaEs / sparsify keywords get the hint the
    others get (they had been a bare 'unknown option')."""
    assert Options.create(drop_top=120).drop_top == 120
    for kw in ("deltas", "deltaEs", "sparsify"):
        with pytest.raises(OptionError,
                           match=rf"^unknown option '{kw}' \(a WeightWatcher keyword: .*docs/weightwatcher"):
            Options.create(**{kw: True})


def test_options_with_an_in_memory_base_compare_hash_and_show_briefly():
    """An in-memory base (a mapping of arrays) is compared and hashed by identity and shown by its type: equality had
    compared its arrays (ValueError), hash had failed on the dict, and the repr printed every array (h48)."""
    base = {"fc.weight": np.zeros((300, 200))}
    a, b = Options.create(base=base, bootstrap=5), Options.create(base=base, bootstrap=5)
    assert a == b and hash(a) == hash(b) and a != Options.create(base=dict(base), bootstrap=5)
    assert repr(a) == "Options(bootstrap=5, base='dict')" and repr(Options.create()) == "Options()"
    assert Options.create(base="m.safetensors") == Options.create(base="m.safetensors")


def test_two_spellings_of_one_base_path_are_one_option():
    """'./m.safetensors' and 'm.safetensors' are recorded as one absolute path, and compare equal (h49)."""
    assert Options.create(base="./m.safetensors") == Options.create(base="m.safetensors")
