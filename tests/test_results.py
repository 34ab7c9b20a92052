"""results.py: the summary's counts and shares, the values' text and JSON forms, the table's columns, saved runs
read back. Rows are made by hand (conftest.layer_row), each test's answer by the rule it names."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import pytest

import htsr
from conftest import layer_row, result_of, save_run
from htsr.results import (TABLE_COLUMNS, AnalysisResult, Summary, _lock_folders, an_output, atomic_write, format_value,
                          json_safe, load_result, shown_width, table_columns, why_undefined)


def test_a_pvalue_of_exactly_0_1_is_not_plausible():
    # README/Summary: plausible if p > 0.1 (a bootstrap p of 10/100 = 0.1 is the boundary, not plausible)
    s = Summary.of([layer_row("a", pl_pvalue=0.1), layer_row("b", pl_pvalue=0.5)])
    assert s.share_plausible_pl == 0.5


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
        del r["phase"]  # an older htsr had no phase column
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader(); w.writerows(rows)
    (folder / "layers.csv").write_text(buf.getvalue())
    back = load_result(folder)
    assert [r.phase for r in back.layers] == ["", ""]


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


def test_warning_counts_are_over_every_row_not_only_the_rows_the_means_average():
    # an adapter run: the means average the #delta rows, but a warned #base row still counts as a warned layer
    rows = [layer_row("q#delta", alpha=3.0), layer_row("q#base", alpha=7.0, warning="under-trained"),
            layer_row("q#merged", alpha=1.5, warning="over-trained")]
    s = Summary.of(rows)
    assert s.means_over == "delta" and s.means["alpha"] == 3.0
    assert (s.num_under_trained, s.num_over_trained) == (1, 1)


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
def test_every_count_column_is_written_as_an_integer():
    # the README's counts (num_spikes, num_heavy_entries, ...) are integers in layers.csv and the JSON, not '3.0'
    counts = ("num_evals_below_floor", "matrix_rank", "num_pl_spikes", "num_fingers", "num_fit_evals", "farms_windows",
              "num_boot", "num_spikes", "num_zero_evals", "num_heavy_entries", "num_traps", "num_erg")
    r = result_of([layer_row("a", **{c: 3.0 for c in counts})])
    row = next(csv.DictReader(io.StringIO(r.csv_text())))
    assert {c: row[c] for c in counts} == {c: "3" for c in counts}
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
    assert not an_output(Path("ck") / "model.safetensors")


def test_a_whole_number_below_a_billion_has_no_exponent():
    # format_value's docstring: whole numbers without a point
    assert format_value(2_000_000.0) == "2000000" and format_value(123_456_789.0) == "123456789"
    assert format_value(2e9) == "2e+09"


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
