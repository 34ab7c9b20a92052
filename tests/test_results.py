"""results.py: the summary's counts and shares, the values' text and JSON forms, the table's columns, saved runs
read back. Rows are made by hand (conftest.layer_row), each test's answer by the rule it names."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

import htsr
from conftest import layer_row, result_of, save_run
from htsr.results import TABLE_COLUMNS, AnalysisResult, Summary, format_value, json_safe, load_result, shown_width


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
    from pathlib import Path

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
    from pathlib import Path

    from htsr.results import phase_column
    from htsr.rmt.phases import PHASES

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    phases = {phase_column(p) for p in PHASES}
    keys = [k for k in Summary.of([layer_row()]).as_dict() if k not in phases]
    assert [k for k in keys if f"`{k}`" not in text] == []
    assert "`num_<phase>`" in text and "`num_bulk_spikes`" in text
