"""options.py: the analysis options' allowed values at their boundaries, the rules between them, and the
one-line errors that name them (the CLI's flags are generated from the same specs: test_cli.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

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


# an int xmin is recorded as the float it means, as the other number options
def test_integer_xmin_is_recorded_as_a_float():
    for given in (2, np.int64(2)):
        x = Options.create(xmin=given).xmin
        assert type(x) is float and x == 2.0
    assert Options.create(xmin="median").xmin == "median"


# an integer `layers` (a WeightWatcher layer id) gets the hint about regular expressions
def test_integer_layers_option_explains_layers_are_picked_by_regex():
    for given in (3, [1, 2], (0,)):
        with pytest.raises(OptionError, match="not by WeightWatcher's layer ids") as e:
            Options.create(layers=given)
        assert e.value.option == "layers"


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


# what a result records has no UI option (workers changes no number)
def test_result_options_record_no_ui_option():
    d = Options.create(workers=2, progress=True, keep_spectra=True).as_dict(ui=False)
    assert not {"workers", "progress", "keep_spectra"} & set(d)
    assert d["min_evals"] == 50


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
