"""results.py: the summary's counts and shares, the values' text and JSON forms, the table's columns, saved runs
read back. Rows are made by hand (conftest.layer_row), each test's answer by the rule it names."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import htsr
from conftest import layer_row, result_of, save_run
from htsr.results import (TABLE_COLUMNS, AnalysisResult, Summary, _lock_folders, an_output, atomic_write, check_outputs,
                          csv_cell, csv_table, format_value, in_means, json_safe, load_result, read_layers, shown_width,
                          summary_rows, table_columns, text_table, why_undefined, write_outputs)


def test_a_pvalue_of_exactly_0_1_is_not_plausible():
    # README/Summary: plausible if p > 0.1 (a bootstrap p of 10/100 = 0.1 is the boundary, not plausible)
    s = Summary.of([layer_row("a", pl_pvalue=0.1, num_boot=100.0), layer_row("b", pl_pvalue=0.5, num_boot=100.0)])
    assert s.share_plausible_pl == 0.5
    # p-values of fewer replicates than drive the warnings (one: each 0 or 1) make no share; num_no_power_law neither
    # (the summary had said 4 of 6 layers failed the power law, from one replicate each, beside that count's n/a)
    coarse = Summary.of([layer_row("a", pl_pvalue=0.0, num_boot=1.0), layer_row("b", pl_pvalue=1.0, num_boot=99.0)])
    assert math.isnan(coarse.share_plausible_pl) and math.isnan(coarse.num_no_power_law)


def test_a_randomised_layer_with_no_trap_is_not_counted_as_having_traps():
    s = Summary.of([layer_row("a", num_traps=0.0), layer_row("b", num_traps=2.0), layer_row("c")])
    assert s.num_with_traps == 1


def test_the_best_fit_share_is_over_the_layers_whose_tails_were_compared():
    # a row without best_fit (not fitted, or tails off) is no vote: 1 power law of the 2 compared layers
    s = Summary.of([layer_row("a", best_fit="power_law"), layer_row("b", best_fit="lognormal"),
                    layer_row("c", best_fit="", alpha=math.nan, status="not_fitted: 4 eigenvalues")])
    assert s.share_best_fit_pl == 0.5


def test_each_phase_counts_under_an_identifier_key():
    """summary.json's phase counts are keys a program can use as identifiers: '+' and '-' become '_'."""
    rows = [layer_row("a", phase="heavy-tailed"), layer_row("b", phase="bulk+spikes"),
            layer_row("c", phase="heavy-tailed")]
    d = Summary.of(rows).as_dict()
    assert {k: d[k] for k in d if k.startswith("num_") and k[4:] in {"random_like", "bleeding_out", "bulk_spikes",
                                                                     "bulk_decay", "heavy_tailed", "rank_collapse"}} \
        == {"num_random_like": 0, "num_bleeding_out": 0, "num_bulk_spikes": 1, "num_bulk_decay": 0,
            "num_heavy_tailed": 2, "num_rank_collapse": 0}


def test_json_safe_replaces_nan_inside_tuples():
    assert json_safe({"a": (1.0, math.nan, (math.inf,))}) == {"a": [1.0, None, [None]]}


def test_a_text_column_missing_from_an_older_csv_reads_back_empty(tmp_path):
    folder = save_run(result_of([layer_row("a", best_fit="power_law"), layer_row("b")]), tmp_path / "run")
    with open(folder / "layers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        del r["phase"], r["farms_xmin"]  # an older htsr had no phase column, nor farms_xmin
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader(); w.writerows(rows)
    (folder / "layers.csv").write_text(buf.getvalue())
    back = load_result(folder)
    assert [r.phase for r in back.layers] == ["", ""]
    # read_layers alike: every column, in to_pandas()'s order and dtypes (it had left the two out, and a
    # concatenation with a current table then had NaN in the text column)
    from htsr.results import read_layers

    df, now = read_layers(folder / "layers.csv"), back.to_pandas()
    assert list(df.columns) == list(now.columns) and dict(df.dtypes) == dict(now.dtypes)
    assert df["phase"].tolist() == ["", ""] and df["farms_xmin"].isna().all()
    assert df.equals(now)


def test_minus_infinity_keeps_its_sign():
    assert format_value(-math.inf) == "-inf" and format_value(math.inf) == "inf"


def test_an_empty_text_cell_shows_a_dash_in_the_cli_table():
    from htsr.cli import format_table

    assert format_value("") == "-"
    text = format_table(result_of([layer_row("a", best_fit="")]), columns=["name", "best_fit"])
    assert text.splitlines()[1].split() == ["a", "-"]


def test_full_width_characters_take_two_columns():
    assert shown_width("\uff21\uff22") == 4  # 'ＡＢ' (east_asian_width 'F')


def test_a_saved_run_with_more_rows_than_its_summary_counts_is_refused(tmp_path):
    folder = save_run(result_of([layer_row("a"), layer_row("b")]), tmp_path / "run")
    doc = json.loads((folder / "summary.json").read_text())
    doc["summary"]["num_layers"] = 1
    (folder / "summary.json").write_text(json.dumps(doc))
    with pytest.raises(htsr.errors.SourceError, match="2 rows"):
        load_result(folder)


def test_the_bayesian_interval_columns_are_lo_then_hi():
    assert TABLE_COLUMNS.index("bayes_alpha_lo") + 1 == TABLE_COLUMNS.index("bayes_alpha_hi")


def test_counts_are_written_as_integers():
    r = result_of([layer_row("a", num_pl_spikes=12.0, matrix_rank=50.0)])
    rec = r.to_records()[0]
    assert type(rec["num_pl_spikes"]) is int and type(rec["matrix_rank"]) is int
    row = next(csv.DictReader(io.StringIO(r.csv_text())))
    assert row["num_pl_spikes"] == "12" and row["matrix_rank"] == "50"


def test_verdict_counts_are_over_the_rows_the_means_average_and_status_counts_over_every_row():
    """An adapter run with --base: the means average the #delta rows, and so do the warnings, phases and shares
    (a warned #base or #merged row is another view of the same layer: they had been counted beside the updates,
    6 over-trained #merged rows of a summary whose means were the updates', h40); the status counts stay every
    row's."""
    rows = [layer_row("q#delta", kind="lora", alpha=3.0, phase="", num_traps=math.nan),
            layer_row("q#base", alpha=7.0, warning="under-trained", phase="bulk-decay", num_traps=2.0),
            layer_row("q#merged", alpha=1.5, warning="over-trained", phase="heavy-tailed", num_traps=1.0)]
    s = Summary.of(rows)
    assert s.means_over == "delta" and s.means["alpha"] == 3.0
    assert (s.num_under_trained, s.num_over_trained) == (0, 0)
    # an update has no phase or shuffle (known by its factors): the phases and traps are the adapted weights' (they
    # had been n/a with --base, the #merged rows' phases and traps unsummarised: h46)
    assert s.phases["heavy-tailed"] == 1 and s.phases["bulk-decay"] == 0 and s.num_with_traps == 1
    assert s.num_layers == 3 and s.num_fitted == 3
    from htsr.cli import format_summary  # (the printed summary says which rows)

    text = format_summary(AnalysisResult(tuple(rows), s, "m", {}, (), 3, ()))
    assert ("failed: 0  (the warnings, shares and means are over the adapter's updates (#delta rows); the phases "
            "and traps over the updates that have one, and for those known by their factors the adapted weights "
            "(#merged rows))\n") in text
    # an adapter whose updates include a dense one (a LyCORIS .diff: a phase, a shuffle) counts the updates' own
    # phases and traps (they had been left out for #merged rows there were none of: h47); a module an adapter saves
    # whole (untagged) is an adapted weight beside the #merged rows
    mixed = [layer_row("a#delta", kind="lora", phase="", num_traps=math.nan),
             layer_row("b#delta", phase="random-like", num_traps=0.0)]
    s = Summary.of(mixed)
    assert (s.phases["random-like"], s.num_with_traps) == (1, 0)
    assert summary_rows(mixed).endswith("; the phases and traps over the updates that have one, and for those known "
                                        "by their factors the adapted weights (#merged rows)")
    # with --base, each module once: a factored update by its #merged row, a dense one by itself (h49: the LoRA
    # module's #merged row had been dropped once a .diff update had a phase)
    based = mixed + [layer_row("a#base", phase="bulk-decay"), layer_row("a#merged", phase="heavy-tailed"),
                     layer_row("b#base", phase="bulk-decay"), layer_row("b#merged", phase="bulk+spikes")]
    s = Summary.of(based)
    assert (s.phases["random-like"], s.phases["heavy-tailed"], s.phases["bulk+spikes"], s.phases["bulk-decay"]) == (
        1, 1, 0, 0)
    saved = [layer_row("q#delta", kind="lora", phase="", num_traps=math.nan), layer_row("head", phase="bulk+spikes"),
             layer_row("q#merged", phase="heavy-tailed"), layer_row("q#base", phase="bulk-decay")]
    s = Summary.of(saved)
    assert (s.phases["bulk+spikes"], s.phases["heavy-tailed"], s.phases["bulk-decay"]) == (1, 1, 0)
    # a model's own rows: every row
    s = Summary.of([layer_row("a", warning="under-trained"), layer_row("b", warning="over-trained")])
    assert (s.means_over, s.num_under_trained, s.num_over_trained) == ("all", 1, 1)


def test_the_not_analysed_line_totals_the_tensors_not_the_reasons():
    from htsr.cli import format_not_analysed
    from htsr.results import NotAnalysed

    rows = (layer_row("a"),)
    r = AnalysisResult(rows, Summary.of(rows), "m", {}, (), 10,
                       NotAnalysed.tally({"a bias": ["b1", "b2", "b3"], "a 1-D norm scale": ["n1", "n2"]}))
    assert format_not_analysed(r).startswith("tensors not analysed: 5 of 10: ")


def test_the_readme_column_table_names_every_column_and_no_other():
    """README's column table (its rows' first cells, `loc_pr_*` a prefix) names each LayerResult column, and every
    name it gives is one: a column added without a line, or a line left for a renamed column, fails here."""
    import dataclasses
    import re
    from htsr.results import LayerResult

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    named = {n for line in text.splitlines() if line.startswith("| `")
             for n in re.findall(r"`([A-Za-z_0-9]+\*?)`", line.split("|")[1])}
    columns = [f.name for f in dataclasses.fields(LayerResult)]
    covered = lambda c: c in named or any(n.endswith("*") and c.startswith(n[:-1]) for n in named)  # noqa: E731
    assert [c for c in columns if not covered(c)] == []
    assert sorted(n for n in named if not any(c == n or (n.endswith("*") and c.startswith(n[:-1]))
                                              for c in columns)) == []


def test_the_readme_names_every_summary_key():
    """README's paragraph on summary.json names each key of Summary.as_dict (a phase's as `num_<phase>`)."""
    from htsr.results import phase_column
    from htsr.rmt.phases import PHASES

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    phases = {phase_column(p) for p in PHASES}
    keys = [k for k in Summary.of([layer_row()]).as_dict() if k not in phases]
    assert [k for k in keys if f"`{k}`" not in text] == []
    assert "`num_<phase>`" in text and "`num_bulk_spikes`" in text


# ------------------------------------------------------------------ mutation round 16 (2026-12-06)
@pytest.mark.parametrize("n", [3, 0])
def test_every_count_column_is_written_as_an_integer(n):
    # the README's counts (num_spikes, num_heavy_entries, ...) are integers in layers.csv and the JSON, not '3.0';
    # a count of 0 (no trap, no spike) as well, not '0.0'
    counts = ("num_evals_below_floor", "matrix_rank", "num_pl_spikes", "num_fingers", "num_fit_evals", "farms_windows",
              "num_boot", "num_spikes", "num_zero_evals", "num_heavy_entries", "num_traps", "num_erg")
    r = result_of([layer_row("a", **{c: float(n) for c in counts})])
    row = next(csv.DictReader(io.StringIO(r.csv_text())))
    assert {c: row[c] for c in counts} == {c: str(n) for c in counts}
    assert all(type(r.to_records()[0][c]) is int for c in counts)


def test_a_write_that_fails_midway_leaves_no_temporary_file(tmp_path):
    # _write_temp's own clean-up (the CLI's full-disk test replaces _write_temp whole, so never runs it)
    resource = pytest.importorskip("resource")
    from htsr.errors import OutputError
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, hard))  # a file-size limit: writes past 10 kB fail (EFBIG)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            atomic_write(tmp_path / "layers.csv", "x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert os.listdir(tmp_path) == []


def test_the_folder_lock_of_an_output_set_is_exclusive(tmp_path):
    # another run (a sweep's job with the same --out) may not take the folder, even for a shared lock
    fcntl = pytest.importorskip("fcntl")
    fds = _lock_folders([tmp_path])
    other = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(other)
        for fd in fds:
            os.close(fd)


def test_any_csv_in_a_model_folder_is_an_output_not_an_input():
    # a run's tables under another name (a renamed layers.csv) are htsr's outputs: noted, never read
    assert an_output(Path("ck") / "layers_v1.csv") and an_output(Path("ck") / "RUN.CSV")
    assert an_output(Path("ck") / "alpha.png") and an_output(Path("ck") / "esd.SVG")  # a run's figures too
    assert not an_output(Path("ck") / "model.safetensors")


def test_a_whole_number_below_a_billion_has_no_exponent():
    # format_value's docstring: whole numbers without a point
    assert format_value(2_000_000.0) == "2000000" and format_value(123_456_789.0) == "123456789"
    assert format_value(2e9) == "2e+09" and format_value(1e9) == "1e+09"  # a billion itself: the exponent form


def test_infinities_are_empty_csv_fields_as_in_the_json():
    # csv_cell: NaN/inf/None as an empty field (the JSON writes null for both)
    r = result_of([layer_row("a", lambda_max=math.inf, log_spectral_norm=-math.inf)])
    row = next(csv.DictReader(io.StringIO(r.csv_text())))
    assert (row["lambda_max"], row["log_spectral_norm"]) == ("", "")


def test_a_bootstrap_that_drives_the_warnings_replaces_both_bayesian_columns():
    # with 100 replicates neither bayes_alpha_lo nor bayes_alpha_hi is shown; with 20 both stay, once each
    head = ("name", "kind", "shape", "num_evals", "alpha")
    tail = ("D", "xmin", "num_pl_spikes", "best_fit", "phase", "num_spikes", "alpha_weighted", "log_norm",
            "log_spectral_norm", "stable_rank", "warning", "status")
    boot = ("boot_alpha_lo", "boot_alpha_hi", "pl_pvalue")
    assert table_columns(result_of([layer_row()], bootstrap=100)) == head + boot + tail
    assert table_columns(result_of([layer_row()], bootstrap=20)) == head + ("bayes_alpha_lo", "bayes_alpha_hi") + boot + tail


def test_an_uncounted_number_of_tensors_reads_back_uncounted(tmp_path):
    # num_tensors None ("not counted") is saved as null and read back None, not 0
    assert load_result(save_run(result_of([layer_row("a")]), tmp_path / "run")).num_tensors is None


def test_unfitted_adapter_updates_alone_are_still_the_means_rows():
    # a rank-8 LoRA (its updates not fitted) with its base but no merged rows: the means are the updates'
    # (NaN), not the frozen base's alpha; and alone, the means are labelled as over the updates
    nf = dict(alpha=math.nan, status="not_fitted: rank-8 update")
    s = Summary.of([layer_row("q#delta", **nf), layer_row("q#base", alpha=4.0)])
    assert s.means_over == "delta" and math.isnan(s.means["alpha"])
    assert Summary.of([layer_row("q#delta", **nf)]).means_over == "delta"


def test_means_over_the_merged_weights_leave_out_the_updates():
    # over 'merged' the #delta rows are not averaged (their log_norm is finite though alpha is not)
    nf = dict(alpha=math.nan, status="not_fitted: rank-8 update")
    s = Summary.of([layer_row("q#delta", log_norm=0.5, **nf), layer_row("q#base", log_norm=2.0, alpha=4.0),
                    layer_row("q#merged", log_norm=2.1, alpha=3.0)])
    assert s.means_over == "merged" and s.means["log_norm"] == 2.1


def test_tails_are_on_by_default_in_why_undefined():
    # analyze's tails default is True: options without the key do not read as --no-tails
    assert why_undefined({})["share_best_fit_pl"] == "no layer fitted"
    assert why_undefined({"tails": False})["share_best_fit_pl"] == "--no-tails"


def test_the_layers_csv_header_is_the_fixed_schema():
    # one fixed schema, column order included (readers by position, spreadsheets, other tools' CSV imports);
    # a change of it must change this line on purpose
    r = result_of([layer_row("a")])
    assert r.csv_text().splitlines()[0] == (
        "name,kind,shape,N,M,num_matrices,num_evals,status,warning,eig_method,num_evals_below_floor,"
        "alpha,alpha_weighted,log_alpha_norm,log_norm,log_spectral_norm,lambda_max,stable_rank,"
        "matrix_rank,entropy,D,sigma,xmin,xmax,num_pl_spikes,num_fingers,raw_alpha,num_fit_evals,"
        "farms_windows,farms_xmin,bayes_alpha,bayes_alpha_lo,bayes_alpha_hi,p_alpha_lt_2,p_alpha_gt_6,"
        "bayes_avg_alpha,bayes_avg_alpha_lo,bayes_avg_alpha_hi,boot_alpha_lo,boot_alpha_hi,boot_alpha_se,"
        "pl_pvalue,num_boot,best_fit,lr_exponential,p_exponential,lr_lognormal,p_lognormal,lr_tpl,p_tpl,"
        "tpl_alpha,tpl_Lambda,etpl_alpha,etpl_Lambda,etpl_xmin,phase,mp_sigma,mp_lambda_minus,"
        "mp_lambda_plus,mp_threshold,num_spikes,mp_softrank,mp_ks,num_zero_evals,num_heavy_entries,"
        "rand_lambda_max,rand_mp_sigma,rand_mp_lambda_minus,rand_mp_lambda_plus,rand_mp_threshold,"
        "rand_mp_softrank,num_traps,rand_js_distance,trap_weights,num_erg,erg_lambda_min,"
        "erg_lambda_min_raw,erg_delta_lambda_min,logq_free_cauchy,logq_levy_wigner,logq_inverse_mp,"
        "loc_pr_tail_mean,loc_pr_tail_std,loc_pr_bulk_mean,loc_pr_bulk_std,loc_lr_tail_mean,"
        "loc_lr_tail_std,loc_lr_bulk_mean,loc_lr_bulk_std,loc_ent_tail_mean,loc_ent_tail_std,"
        "loc_ent_bulk_mean,loc_ent_bulk_std")


# ------------------------------------------------------------------ mutation round 35 (2026-12-06)
def test_a_count_that_is_not_whole_is_written_as_it_is():
    """as_dict makes a count an int only where it is whole: a fractional value (a count averaged by a caller, or a
    value set by hand) is kept, not truncated (2.5 had been written as 2)."""
    rec = result_of([layer_row("a", num_fit_evals=2.5, num_spikes=3.0)]).to_records()[0]
    assert rec["num_fit_evals"] == 2.5 and type(rec["num_fit_evals"]) is float
    assert rec["num_spikes"] == 3 and type(rec["num_spikes"]) is int


def test_the_numeric_columns_include_the_integer_ones():
    """compare ranks layers by any column of NUMERIC_COLUMNS: the int columns (N, M, num_matrices, num_evals) are
    numeric as well as the float ones; the text ones are not."""
    from htsr.results import COLUMN_DTYPES, NUMERIC_COLUMNS

    assert {"N", "M", "num_matrices", "num_evals", "alpha", "num_traps"} <= set(NUMERIC_COLUMNS)
    assert not {"name", "kind", "shape", "status", "warning", "eig_method", "best_fit", "phase",
                "trap_weights"} & set(NUMERIC_COLUMNS)
    assert len(NUMERIC_COLUMNS) == sum(t != "object" for t in COLUMN_DTYPES.values())


def test_every_summary_metric_is_averaged_over_its_finite_values():
    """Each of the summary's 14 means (README's list) is the mean of its finite values: NaN and ±inf are left out
    (an inf had made the mean inf). Values are binary fractions, so the means are exact."""
    expected = ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm", "stable_rank",
                "entropy", "D", "sigma", "bayes_alpha", "pl_pvalue", "mp_softrank", "rand_js_distance",
                "erg_delta_lambda_min")
    rows = [layer_row("a", **{m: 0.25 for m in expected}), layer_row("b", **{m: 0.5 for m in expected}),
            layer_row("c", **{m: math.inf for m in expected}), layer_row("d", **{m: math.nan for m in expected})]
    assert Summary.of(rows).means == {m: 0.375 for m in expected}


def test_a_fitted_layer_whose_extras_failed_counts_as_fitted():
    """status 'ok; diagnostics failed: …' is a fitted layer (its leading word before ';'); 'fit_failed: …' is a layer
    not fitted, not a failed one."""
    rows = [layer_row("a", status="ok; localization failed: ValueError"), layer_row("b"),
            layer_row("c", status="fit_failed: a flat tail"), layer_row("d", status="not_fitted: 4 eigenvalues"),
            layer_row("e", status="failed: NaN weights"), layer_row("f", status="skipped: over max_evals")]
    s = Summary.of(rows)
    assert (s.num_layers, s.num_fitted, s.num_not_fitted, s.num_failed, s.num_skipped) == (6, 2, 2, 1, 1)


def test_a_layer_with_exactly_the_minimum_replicates_counts_for_the_power_law_warning():
    """num_no_power_law is over the layers with at least MIN_WARNING_REPLICATES good replicates: exactly that many
    is enough (the warning uses them); one fewer is not."""
    from htsr.fits.uncertainty import MIN_WARNING_REPLICATES as n

    no_pl = dict(warning="no-power-law", pl_pvalue=0.02)
    s = Summary.of([layer_row("a", num_boot=float(n), **no_pl), layer_row("b", num_boot=float(n - 1), **no_pl)])
    assert s.num_no_power_law == 1


def test_diagnostics_that_ran_on_no_layer_are_nan_not_zero():
    """Without the MP fit, randomize, bootstrap or tails, the phase counts, num_with_traps, num_no_power_law and the
    shares are NaN (undefined: 'n/a' with why_undefined's reason), not 0 (a count of 0 says it ran and found none)."""
    s = Summary.of([layer_row("a"), layer_row("b")])
    assert all(math.isnan(v) for v in s.phases.values()) and set(s.phases) == set(htsr.rmt.phases.PHASES)
    for v in (s.num_with_traps, s.num_no_power_law, s.share_plausible_pl, s.share_best_fit_pl):
        assert math.isnan(v)
    assert s.phases == Summary.of([layer_row("a", phase="")]).phases  # an empty phase is no vote either


def test_means_over_untagged_rows_when_the_updates_are_not_fitted():
    """With --base, the adapted model's rows are its #merged rows and the rows of no tag (modules the adapter does not
    touch): updates not fitted and no #merged row, the means are over the untagged rows, labelled 'merged'."""
    nf = dict(alpha=math.nan, status="not_fitted: rank-8 update")
    s = Summary.of([layer_row("q#delta", **nf), layer_row("q#base", alpha=4.0), layer_row("emb", alpha=5.0)])
    assert s.means_over == "merged" and s.means["alpha"] == 5.0


def test_a_lone_surrogate_in_a_name_is_written_escaped(tmp_path):
    """A tensor name no UTF-8 can spell (a lone surrogate, from a JSON header's \\udcff escape) is written
    backslash-escaped: the table is written, not lost to a UnicodeEncodeError."""
    result_of([layer_row("a\udcffb")]).to_csv(tmp_path / "layers.csv")
    assert (tmp_path / "layers.csv").read_bytes().split(b"\n")[1].startswith(b"a\\udcffb,dense,")


def test_a_folder_given_as_an_output_file_is_named_as_a_folder(tmp_path):
    """atomic_write to an existing folder says it needs a file path (not that it is a device or pipe); write_outputs
    says so too, naming the flag of that output (the set has several), and writes none of the set."""
    from htsr.errors import OutputError
    from htsr.results import write_outputs

    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="needs a file path, not a folder"):
        atomic_write(tmp_path / "out", "x")
    with pytest.raises(OutputError) as e:
        write_outputs([("--json", tmp_path / "r.json", "{}"), ("--report", tmp_path / "out", "<html>")])
    assert str(e.value) == f"--report {tmp_path / 'out'}: needs a file path, not a folder"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_rename_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    """atomic_write whose final rename fails (a read-only mount, a name the file system refuses) removes its
    temporary file and says it cannot write."""
    from htsr.errors import OutputError

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write(tmp_path / "layers.csv", "x")
    assert os.listdir(tmp_path) == []


def test_a_stale_output_that_is_a_dangling_link_is_removed(tmp_path):
    """write_outputs removes an earlier run's output this run has none of, also when it is a link to a file that is
    gone (is_file() is False for it): it would otherwise be taken for this run's."""
    from htsr.results import write_outputs

    (tmp_path / "report.html").symlink_to(tmp_path / "gone.html")
    removed = write_outputs([("--out", tmp_path / "layers.csv", "x"), ("--report", tmp_path / "report.html", None)])
    assert removed == [tmp_path / "report.html"] and sorted(os.listdir(tmp_path)) == ["layers.csv"]


def test_output_folders_are_locked_in_sorted_order(tmp_path, monkeypatch):
    """_lock_folders takes the locks in sorted order whatever order it is given them (two runs each holding a folder
    the other waits for would deadlock). Six folders: an unsorted order passing by chance has odds 1/720."""
    folders = [tmp_path / c for c in "fedcba"]
    for f in folders:
        f.mkdir()
    opened, real_open = [], os.open
    monkeypatch.setattr(os, "open", lambda p, *a: opened.append(Path(p)) or real_open(p, *a))
    fds = _lock_folders(folders)
    for fd in fds:
        os.close(fd)
    assert [p for p in opened if p in folders] == sorted(folders)


def test_why_undefined_names_each_options_reason():
    """The reasons beside 'n/a': MP fit on by default (its key absent is not --no-mp-fit), randomize on or off, and
    a bootstrap of exactly MIN_WARNING_REPLICATES (enough: the reason is then that no layer had as many good ones)."""
    from htsr.fits.uncertainty import MIN_WARNING_REPLICATES as n

    assert why_undefined({})["phases"].startswith("no layer has a phase: it needs a bulk the Marchenko-Pastur law fits and")
    assert why_undefined({"mp_fit": False})["phases"] == "--no-mp-fit"
    assert why_undefined({})["num_with_traps"] == "--randomize"
    assert why_undefined({"randomize": True})["num_with_traps"].startswith("no layer randomised")
    assert why_undefined({"bootstrap": n})["num_no_power_law"].startswith(f"no layer fitted with {n} good replicates")
    assert why_undefined({"bootstrap": n - 1})["num_no_power_law"] == f"--bootstrap {n - 1}: fewer than {n} replicates"
    for key in ("share_plausible_pl", "num_no_power_law"):  # (one rule for both: the warning's)
        assert why_undefined({})[key] == "--bootstrap N"
        assert why_undefined({"bootstrap": n - 1})[key] == f"--bootstrap {n - 1}: fewer than {n} replicates"


@pytest.mark.parametrize("options, extra", [
    ({"drop_top": 0, "clip_xmax": False, "farms_aspect": None, "randomize": False}, ()),
    ({"clip_xmax": True}, ("alpha", "raw_alpha", "num_fingers", "bayes_alpha_lo")),
    ({"farms_aspect": 2.0}, ("num_evals", "farms_windows", "farms_xmin", "alpha")),
    ({"randomize": True}, ("num_spikes", "num_traps", "trap_weights", "alpha_weighted")),
    ({"localization": True}, ("stable_rank", "loc_pr_tail_mean", "loc_pr_bulk_mean", "loc_lr_tail_mean",
                              "loc_lr_bulk_mean", "loc_ent_tail_mean", "loc_ent_bulk_mean", "warning")),
    ({"bayes_average": True}, ("bayes_alpha_hi", "bayes_avg_alpha", "bayes_avg_alpha_lo", "bayes_avg_alpha_hi", "D")),
    # a bootstrap too few to drive the warnings: both intervals shown, the averaged one after the p-value
    ({"bayes_average": True, "bootstrap": 20}, ("bayes_alpha_hi", "boot_alpha_lo", "boot_alpha_hi", "pl_pvalue",
                                                "bayes_avg_alpha", "bayes_avg_alpha_lo", "bayes_avg_alpha_hi", "D")),
])
def test_an_options_columns_follow_their_column_and_an_option_off_adds_none(options, extra):
    """table_columns: an option off (None, False or 0: drop_top=0 drops nothing) adds no column; one on puts its
    columns right after the column it follows."""
    cols = table_columns(result_of([layer_row()], **options))
    if not extra:
        assert cols == TABLE_COLUMNS
    else:
        i = cols.index(extra[0])
        assert cols[i:i + len(extra)] == extra


def test_format_characters_take_no_column():
    """shown_width: a zero-width joiner or a BOM (category Cf) takes no column, so the cells after it stay aligned."""
    assert shown_width("a\u200db") == 2 and shown_width("\ufeffab") == 2


def test_a_csv_without_a_status_column_is_not_a_layers_csv(tmp_path):
    """read_layers refuses a table whose header lacks name or status (another tool's CSV with a name column)."""
    from htsr.results import read_layers

    (tmp_path / "other.csv").write_text("name,alpha\na,3.0\n")
    with pytest.raises(htsr.errors.SourceError, match="not a layers.csv htsr wrote"):
        read_layers(tmp_path / "other.csv")
    # a run's summary.json given by mistake: its lines are no rows of the header's fields, but it is no table at
    # all (it had been called 'a table truncated or corrupt'), and so is it where a saved run's layers.csv should be
    r = htsr.analyze({"fc.weight": np.random.default_rng(0).standard_normal((80, 40))}, min_evals=2)
    (tmp_path / "summary.json").write_text(json.dumps(r.summary.as_dict(), indent=2))
    with pytest.raises(htsr.errors.SourceError) as ei:
        read_layers(tmp_path / "summary.json")
    assert str(ei.value) == (f"{tmp_path / 'summary.json'}: not a layers.csv htsr wrote (its header has no name and "
                             "status columns)")


def test_a_layer_named_like_a_missing_value_reads_back_by_its_name(tmp_path):
    """read_layers takes only an empty cell for NaN, and only in a numeric column: a layer named 'NA' or 'null' (a
    text that pandas would read as missing by default) keeps its name."""
    from htsr.results import read_layers

    pytest.importorskip("pandas")
    result_of([layer_row("NA"), layer_row("null", best_fit="n/a")]).to_csv(tmp_path / "layers.csv")
    back = read_layers(tmp_path / "layers.csv")
    assert list(back["name"]) == ["NA", "null"] and list(back["best_fit"]) == ["", "n/a"]


def test_not_analysed_reasons_most_frequent_first_with_a_few_examples():
    """NotAnalysed.tally: one entry per reason, the most frequent first (ties by reason), each with its count and
    its first MAX_EXAMPLES names."""
    from htsr.results import NotAnalysed

    t = NotAnalysed.tally({"a 1-D norm scale": ["n1", "n2"], "a bias": ["b1", "b2", "b3", "b4"], "a filter": ["f1"],
                           "a buffer": ["u1", "u2"]})
    assert [(n.reason, n.count, n.examples) for n in t] == [
        ("a bias", 4, ("b1", "b2", "b3")), ("a 1-D norm scale", 2, ("n1", "n2")), ("a buffer", 2, ("u1", "u2")),
        ("a filter", 1, ("f1",))]


def test_a_json_result_reads_back_whole(tmp_path):
    """to_json then load_result: rows, source, options, the tensors not analysed and the path analysed come back;
    the file's suffix may be upper case (RUN.JSON)."""
    from htsr.results import NotAnalysed

    rows = (layer_row("a", phase="heavy-tailed"), layer_row("b", alpha=2.5))
    r = AnalysisResult(rows, Summary.of(rows), "m.safetensors", {"bootstrap": 0}, (), 7,
                       NotAnalysed.tally({"a bias": ["b1", "b2"]}), "models/m.safetensors")
    r.to_json(tmp_path / "RUN.JSON")
    back = load_result(tmp_path / "RUN.JSON")
    assert back == r


@pytest.mark.parametrize("keep", [["layers.csv"], ["summary.json"]])
def test_a_folder_with_only_one_of_the_run_files_is_no_saved_run(tmp_path, keep):
    """A saved run's folder has both layers.csv and summary.json; one of them alone (a copy cut short) is not one."""
    from htsr.results import saved_result

    folder = save_run(result_of([layer_row("a")]), tmp_path / "run")
    for f in {"layers.csv", "summary.json"} - set(keep):
        (folder / f).unlink()
    assert saved_result(folder) is None


def test_a_run_folder_with_a_figures_subfolder_is_still_a_saved_run(tmp_path):
    """Folders beside the run's files (figures written into a subfolder) do not make it a model folder."""
    from htsr.results import saved_result

    folder = save_run(result_of([layer_row("a")]), tmp_path / "run")
    (folder / "figures").mkdir()
    assert saved_result(folder) == folder


def test_a_link_loop_given_as_a_saved_run_is_said_to_be_one(tmp_path):
    """load_result of a link that leads round in a loop says so (as a source does), not 'not a saved htsr run'."""
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    with pytest.raises(htsr.errors.SourceError, match="a loop of symbolic links"):
        load_result(tmp_path / "l1")


# ------------------------------------------------------------------ mutation round 58 (2026-12-07)
def test_the_per_layer_frame_keeps_every_float_in_double_precision(tmp_path):
    """to_pandas and read_layers give float64 columns: 0.1 comes back as the double 0.1 (a float32 column holds
    0.10000000149). No test had looked at a value's precision in the frame, only at the two frames agreeing."""
    pytest.importorskip("pandas")
    r = result_of([layer_row("a", alpha=0.1, num_traps=2.0)])
    r.to_csv(tmp_path / "layers.csv")
    for frame in (r.to_pandas(), read_layers(tmp_path / "layers.csv")):
        assert str(frame["alpha"].dtype) == "float64" and frame["alpha"][0] == 0.1
        assert str(frame["num_traps"].dtype) == "float64" and str(frame["N"].dtype) == "int64"


def test_updates_beside_untouched_modules_without_a_base_are_averaged_with_them():
    """means_rows: an adapter's updates, none fitted, beside rows of no tag but no --base (no #base row): the means
    are over every row, labelled 'all' — 'merged' (the adapted weights) needs the base. A mislabel had gone unseen:
    only runs with a #base row were tried."""
    nf = dict(alpha=math.nan, status="not_fitted: rank-8 update")
    s = Summary.of([layer_row("q#delta", log_norm=0.5, **nf), layer_row("emb", log_norm=2.0, alpha=5.0)])
    assert s.means_over == "all" and s.means["log_norm"] == 1.25 and s.means["alpha"] == 5.0


def test_in_means_follows_the_rows_a_summary_averages():
    """in_means (compare's mean over common layers) takes a row by its tag as means_rows does: over the updates only
    #delta rows; over the merged weights #merged and untagged rows, not #base or #delta; over 'all' every row."""
    assert [in_means(n, "delta") for n in ("q#delta", "q#base", "q#merged", "emb")] == [True, False, False, False]
    assert [in_means(n, "merged") for n in ("q#delta", "q#base", "q#merged", "emb")] == [False, False, True, True]
    assert all(in_means(n, "all") for n in ("q#delta", "q#base", "q#merged", "emb"))


def test_each_warning_counts_only_its_own_layers():
    """num_uncertain counts the 'uncertain' warnings alone (not no-power-law, the other bootstrap-driven one, nor the
    trained ones); no test had a mix of warnings."""
    rows = [layer_row("a", warning="uncertain"), layer_row("b", warning="no-power-law"),
            layer_row("c", warning="under-trained"), layer_row("d", warning="over-trained"), layer_row("e")]
    s = Summary.of(rows)
    assert (s.num_uncertain, s.num_under_trained, s.num_over_trained) == (1, 1, 1)


def test_a_layer_without_a_p_value_is_not_in_the_no_power_law_count():
    """num_no_power_law is over the layers whose finite p drives the warning: enough replicates but no p (NaN) is
    no vote, so with no other layer the count is NaN (not 0, which says it ran and found none)."""
    assert math.isnan(Summary.of([layer_row("a", num_boot=100.0)]).num_no_power_law)


def test_the_status_leading_word_is_read_without_blanks():
    """Summary.of reads a status by its leading word, blanks stripped: 'ok ; …' (a table edited by hand, cells
    padded) is fitted, ' skipped: …' skipped."""
    s = Summary.of([layer_row("a", status="ok ; localization: x"), layer_row("b", status=" skipped: too big")])
    assert (s.num_fitted, s.num_skipped) == (1, 1)


def test_a_json_result_with_an_unknown_column_is_refused(tmp_path):
    """load_result of a --json document whose rows have a column this htsr does not know (a newer htsr's) refuses it,
    as it refuses such a layers.csv: it had been read with the column dropped silently."""
    result_of([layer_row("a")]).to_json(tmp_path / "run.json")
    doc = json.loads((tmp_path / "run.json").read_text())
    doc["layers"][0]["alpha_new"] = 1.0
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(htsr.errors.SourceError, match=r"columns this htsr does not know \(alpha_new\)"):
        load_result(tmp_path / "run.json")


def test_an_output_is_made_with_the_usual_permissions(tmp_path):
    """atomic_write creates its file as open() would, 0666 less the umask (0644 under umask 022): others may read
    the tables, as they could a file written directly."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "layers.csv", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "layers.csv").stat().st_mode & 0o777 == 0o644


def test_text_is_written_byte_for_byte(tmp_path):
    """atomic_write writes text's '\\n' as is (no newline translation: every line of layers.csv ends in '\\n', not
    '\\r\\n'); a quoted CSV row (a '\\r' in a name) ends in '\\n' as the others."""
    atomic_write(tmp_path / "t.csv", "a\nb\n")
    assert (tmp_path / "t.csv").read_bytes() == b"a\nb\n"
    assert csv_table(["name", "alpha"], [["a\rb", 0.5], ["c", 1.0]]) == 'name,alpha\n"a\rb","0.5"\nc,1.0\n'


def test_a_link_to_a_file_given_as_an_output_is_replaced_and_its_target_kept(tmp_path):
    """not_replaceable's rule: a symbolic link to a regular file may be written: the link is replaced by the new
    file, its target left as it was (it had not been tried; an lstat would refuse it as 'not a regular file')."""
    (tmp_path / "old.csv").write_text("old")
    (tmp_path / "layers.csv").symlink_to(tmp_path / "old.csv")
    atomic_write(tmp_path / "layers.csv", "new")
    assert not (tmp_path / "layers.csv").is_symlink() and (tmp_path / "layers.csv").read_text() == "new"
    assert (tmp_path / "old.csv").read_text() == "old"


def test_a_write_into_a_missing_folder_says_what_to_check(tmp_path):
    """atomic_write (the API's to_csv) into a folder that does not exist says so in one line, with what to do."""
    from htsr.errors import OutputError

    with pytest.raises(OutputError) as e:
        atomic_write(tmp_path / "none" / "layers.csv", "x")
    assert str(e.value) == (f"{tmp_path / 'none' / 'layers.csv'}: cannot write (No such file or directory); check "
                            "that its folder exists and is writable, or choose another path")


def test_an_interrupt_during_the_rename_is_an_interrupt(tmp_path, monkeypatch):
    """Ctrl-C during atomic_write's rename stays a KeyboardInterrupt (not an OutputError a caller would print and go
    on after), and the temporary file is removed."""
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "layers.csv", "x")
    assert os.listdir(tmp_path) == []


def test_outputs_are_written_into_folders_several_levels_new(tmp_path):
    """write_outputs makes every missing folder above an output (--out runs/2026/a: three new levels)."""
    write_outputs([("--out", tmp_path / "runs" / "2026" / "a" / "layers.csv", "x")])
    assert (tmp_path / "runs" / "2026" / "a" / "layers.csv").read_text() == "x"


def test_a_set_that_cannot_be_written_removes_every_folder_it_made(tmp_path):
    """The folders made for a set that then fails (here its second output is a folder) are removed, the innermost
    first, so none is left: removed outermost first, the outer one (not yet empty) had stayed."""
    from htsr.errors import OutputError

    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="needs a file path"):
        write_outputs([("--out", tmp_path / "a" / "b" / "layers.csv", "x"), ("--report", tmp_path / "out", "<html>")])
    assert os.listdir(tmp_path) == ["out"]


def test_a_folder_that_cannot_be_made_says_no_output_was_written(tmp_path):
    """An output below a file (no folder can be made there) names the flag, the folder and that none of the set
    was written, and leaves the other output unwritten."""
    from htsr.errors import OutputError

    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputError) as e:
        write_outputs([("--json", tmp_path / "r.json", "{}"), ("--out", tmp_path / "f" / "sub" / "layers.csv", "x")])
    msg = str(e.value)
    assert msg.startswith(f"--out {tmp_path / 'f' / 'sub' / 'layers.csv'}: cannot create the folder ")
    assert msg.endswith("; no output was written") and sorted(os.listdir(tmp_path)) == ["f"]


def test_the_folder_of_an_earlier_runs_output_is_locked_too(tmp_path, monkeypatch):
    """write_outputs locks the folders it writes into and those it removes an earlier run's file from (another run
    must not see that folder half updated)."""
    from htsr import results

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.html").write_text("old")
    locked = []
    real = results._lock_folders
    monkeypatch.setattr(results, "_lock_folders", lambda folders: locked.extend(folders) or real(folders))
    write_outputs([("--out", tmp_path / "o" / "layers.csv", "x"), ("--report", tmp_path / "r" / "report.html", None)])
    assert sorted(locked) == [tmp_path / "o", tmp_path / "r"] and os.listdir(tmp_path / "r") == []


def test_an_earlier_output_that_is_a_folder_or_gone_is_left_alone(tmp_path):
    """A path this run writes nothing to is removed only when it is a file (or a link): a folder there stays, and a
    path whose folder is gone is no error (it had failed the whole set when its folder was locked)."""
    (tmp_path / "report.html").mkdir()
    removed = write_outputs([("--out", tmp_path / "layers.csv", "x"), ("--report", tmp_path / "report.html", None),
                             ("--json", tmp_path / "gone" / "r.json", None)])
    assert removed == [] and sorted(os.listdir(tmp_path)) == ["layers.csv", "report.html"]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_renames_is_delivered_after_them(tmp_path, monkeypatch, signum):
    """Ctrl-C or SIGTERM between two renames of an output set is held: every output is renamed into place, then the
    signal reaches the handler it had (here one that raises), which is the handler again afterwards. A held signal
    had not been tested: dropped, not restored, or SIGTERM not held, nothing failed."""
    import signal

    from htsr import results

    sig = getattr(signal, signum)

    def stop(s, frame):
        raise _Stop

    before = signal.signal(sig, stop)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        real(src, dst)
        if len(calls) == 1:
            signal.raise_signal(sig)

    monkeypatch.setattr(results.os, "replace", replace)
    try:
        with pytest.raises(_Stop):
            write_outputs([("--out", tmp_path / "a.csv", "a"), ("--out", tmp_path / "b.json", "b")])
        assert signal.getsignal(sig) is stop
    finally:
        signal.signal(sig, before)
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.json"]


def test_a_rename_that_fails_names_the_outputs_written_before_it(tmp_path, monkeypatch):
    """A set's third rename failing (an OSError): the error names the flag and the file, and lists the outputs
    already replaced (both earlier ones); no temporary file is left."""
    from htsr import results
    from htsr.errors import OutputError

    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(results.os, "replace", replace)
    a, b, c = tmp_path / "a.csv", tmp_path / "b.json", tmp_path / "c.html"
    with pytest.raises(OutputError) as e:
        write_outputs([("--out", a, "a"), ("--json", b, "b"), ("--report", c, "c")])
    assert str(e.value) == f"--report {c}: cannot replace it (Permission denied); written before it: {a}, {b}"
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.json"]


def test_an_output_inside_another_outputs_deeper_folder_is_refused(tmp_path):
    """check_outputs: --report X with --out X/sub (X/sub/layers.csv) is refused, as --out X is: X is a folder above
    one output, not only its parent."""
    from htsr.errors import OutputError

    with pytest.raises(OutputError, match="is the folder --out writes layers.csv into"):
        check_outputs([], [("--report", tmp_path / "x"), ("--out", tmp_path / "x" / "sub" / "layers.csv")])


def test_checking_the_outputs_creates_nothing(tmp_path):
    """check_outputs' probe (the temporary file a write will make) is removed: nothing is created before the
    analysis."""
    check_outputs([], [("--out", tmp_path / "layers.csv"), ("--report", tmp_path / "new" / "r.html")])
    assert os.listdir(tmp_path) == []


def test_a_cell_shows_four_significant_digits():
    """format_value: a number that is not whole to 4 significant digits."""
    assert format_value(3.14159) == "3.142" and format_value(0.0123456) == "0.01235"


def test_a_text_table_pads_to_its_headers_and_ends_lines_without_blanks():
    """text_table: a column is as wide as its header when the header is the widest cell; no line ends in blanks
    (a left-aligned last column is not padded out)."""
    text = text_table(["name", "alpha", "note"], [["a", "3", ""], ["bb", "12", "x"]], [True, False, True])
    assert text.split("\n") == ["name  alpha  note", "a         3", "bb       12  x"]


def test_enclosing_marks_take_no_column_and_ambiguous_ones_take_one():
    """shown_width: an enclosing mark (category Me, U+20DD, whose combining class is 0) takes no column; a character
    of ambiguous East Asian width (Greek alpha, '±') takes one, as on a western terminal."""
    assert shown_width("1\u20dd") == 1
    assert shown_width("\u03b1\u00b1") == 2


def test_a_missing_or_numpy_value_is_a_plain_csv_field():
    """csv_cell: None is an empty field (not 'None'); a numpy float is written as the float's repr ('0.25', not
    'np.float64(0.25)')."""
    import numpy as np

    assert csv_cell(None) == "" and csv_cell(np.float64(0.25)) == "0.25"
    assert csv_table(None, [[None, np.float64(0.1)]]) == ",0.1\n"


def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path):
    """A saved layers.csv whose second row has a field too many (two tables run together, a stray comma) is refused
    naming the row; its fields had been read as if whole."""
    folder = save_run(result_of([layer_row("a"), layer_row("b")]), tmp_path / "run")
    lines = (folder / "layers.csv").read_text().split("\n")
    lines[2] += ",extra"
    (folder / "layers.csv").write_text("\n".join(lines))
    with pytest.raises(htsr.errors.SourceError, match=r"row 2 does not have the header's \d+ fields"):
        load_result(folder)


def test_hidden_files_beside_a_saved_runs_files_keep_it_a_saved_run(tmp_path):
    """A run folder with a hidden file (a Finder's .DS_Store) is still a saved run, not a model folder."""
    from htsr.results import saved_result

    folder = save_run(result_of([layer_row("a")]), tmp_path / "run")
    (folder / ".DS_Store").write_bytes(b"\0")
    assert saved_result(folder) == folder


def test_a_comparison_json_is_no_saved_run(tmp_path):
    """A JSON document with layers, summary and options but no source or tensors not analysed (compare's --json) is
    not taken for a run."""
    from htsr.results import saved_result

    (tmp_path / "c.json").write_text(json.dumps({"layers": [], "summary": {}, "options": {}}))
    assert saved_result(tmp_path / "c.json") is None


@pytest.mark.parametrize("entry", [{"reason": "a bias", "examples": ["b"]}, {"reason": "a bias", "count": None,
                                                                              "examples": ["b"]}])
def test_a_saved_run_with_a_broken_not_analysed_entry_is_refused_in_one_line(tmp_path, entry):
    """load_result of a document whose not_analysed entry lacks its count, or has null, is a SourceError (a
    KeyError or TypeError had escaped as a traceback)."""
    result_of([layer_row("a")]).to_json(tmp_path / "run.json")
    doc = json.loads((tmp_path / "run.json").read_text())
    doc["not_analysed"] = [entry]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(htsr.errors.SourceError, match="cannot read the saved run"):
        load_result(tmp_path / "run.json")


def test_the_apis_writes_never_replace_a_file_the_analysis_read_and_take_long_names(tmp_path):
    """result.to_csv(result.path) had replaced the model with its own table (the CLI refuses the same path); and a
    235-character output name was refused as 'File name too long' by its temporary file's longer name."""
    from safetensors.numpy import save_file

    from htsr.compare import compare
    from htsr.errors import OutputError
    from htsr.report import write_report

    rng = np.random.default_rng(0)
    model, base = tmp_path / "m.safetensors", tmp_path / "base.safetensors"
    save_file({"fc.weight": rng.standard_normal((120, 80)).astype(np.float32)}, str(model))
    save_file({"fc.weight": rng.standard_normal((120, 80)).astype(np.float32)}, str(base))
    kept = model.read_bytes(), base.read_bytes()
    r = htsr.analyze(model, min_evals=10)
    d = htsr.analyze(model, base=str(base), min_evals=10)
    c = compare([r, r])
    for write, path in ((r.to_csv, model), (r.to_json, model), (d.to_csv, base), (c.to_csv, model),
                        (c.to_json, model), (lambda p: write_report(r, p), model)):
        with pytest.raises(OutputError, match=r"\(\): .*m\.safetensors: is a file this run reads, and htsr never "
                                              r"overwrites its inputs; choose another path$|base\.safetensors: is a "
                                              r"file this run reads"):
            write(path)
    assert (model.read_bytes(), base.read_bytes()) == kept
    long = tmp_path / ("r" * 230 + ".json")  # (255 bytes is the longest name)
    r.to_json(long)
    assert json.loads(long.read_text())["path"] == str(model) and sorted(os.listdir(tmp_path)) == sorted(
        ["m.safetensors", "base.safetensors", long.name])
    # an in-memory model's result writes anywhere (its base's description is not a path)
    mem = htsr.analyze({"fc.weight": rng.standard_normal((120, 80))}, base={"fc.weight": np.zeros((120, 80))})
    assert mem.read_from == ()
    mem.to_csv(tmp_path / "mem.csv")


def test_a_json_run_of_an_htsr_before_not_analysed_was_written_loads(tmp_path):
    """A --json document as htsr wrote it before 2026-12-04 (source, options, summary, layers; no not_analysed,
    path or num_tensors) had been 'unknown file format' to compare and 'not a saved htsr run' to load_result,
    which promises older files (h51). It loads, the keys it lacks empty; a comparison's document is still not a
    run."""
    from htsr.compare import compare

    rng = np.random.default_rng(5)
    r = htsr.analyze({"fc.weight": rng.standard_normal((120, 80))})
    doc = json.loads(r.json_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: doc[k] for k in ("source", "options", "summary", "layers")}))
    back = htsr.load_result(old)
    assert back.layers == r.layers and back.not_analysed == () and back.num_tensors is None
    c = compare([old, htsr.analyze({"fc.weight": rng.standard_normal((120, 80))})])
    c.to_json(tmp_path / "c.json")
    with pytest.raises(htsr.SourceError, match="not a saved htsr run"):
        htsr.load_result(tmp_path / "c.json")
