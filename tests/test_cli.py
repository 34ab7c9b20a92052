"""The ``htsr`` command line: ``htsr.cli.main([...])`` in-process, and ``python -m htsr`` as a subprocess.

Models are small safetensors files written under ``tmp_path``.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import htsr
from conftest import layer_row, result_of, stand_in_stdout
from htsr.cli import _SafeStream, format_table, main
from htsr.results import TABLE_COLUMNS

#: the folder holding the htsr this test process imported (the checkout, or a copy under test): the
#: subprocesses below import the same one
HTSR_ROOT = Path(htsr.__file__).resolve().parents[1]


def _model(path: Path, *, nan_in: str | None = None, fitted: bool = True) -> Path:
    """A two-layer model: 'enc.big' (60x55 -> 55 eigenvalues, fitted by default) and 'enc.small' (8x4)."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((60, 55) if fitted else (12, 6)).astype(np.float32)
    small = rng.standard_normal((8, 4)).astype(np.float32)
    tensors = {"enc.big.weight": big, "enc.big.bias": np.zeros(big.shape[0], np.float32),
               "enc.small.weight": small}
    if nan_in is not None:
        tensors[nan_in][1, 2] = np.nan
    save_file(tensors, str(path))
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    return _model(tmp_path / "model.safetensors")


def _no_nan_constants(token: str):
    raise AssertionError(f"non-standard JSON constant {token!r} in summary.json")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _assert_user_error(rc: int, out: str, err: str) -> str:
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("htsr: error:")
    assert out == ""  # nothing printed before the error
    return lines[0]


# --------------------------------------------------------------------------------------- table output


def test_analyze_prints_table_and_summary(model, capsys):
    assert main(["analyze", str(model)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    header = lines[0]
    assert "name" in header and "alpha" in header
    assert header.split() == list(TABLE_COLUMNS)
    # one table row per layer, in model order, before the blank line that opens the summary
    blank = lines.index("")
    assert [ln.split()[0] for ln in lines[1:blank]] == ["enc.big", "enc.small"]
    assert "not_fitted" in lines[2]  # 4 eigenvalues < min_evals
    summary = lines[blank + 1 :]
    assert summary[0] == f"source: {model}"
    assert summary[1].startswith("layers: 2  fitted: 1  not fitted: 1  skipped: 0  failed: 0")
    assert summary[2].startswith("warnings: over-trained 0  under-trained 0")
    assert "interval of alpha: Bayesian, 95%" in summary[2]
    assert summary[3].startswith("power law plausible (bootstrap p > 0.1): n/a (--bootstrap N)")  # no bootstrap ran
    assert summary[4] == ("phases: random-like 1  bleeding-out 0  bulk+spikes 0  bulk-decay 0  heavy-tailed 0  "
                          "rank-collapse 0")  # the fitted layer; the 4-eigenvalue one gets no phase
    assert summary[5].startswith("means over layers with a finite value:") and "alpha=" in summary[5]
    assert summary[6] == "tensors not analysed: 1 of 3: bias or norm buffer 1"


def test_table_columns_line_up_on_a_terminal_with_wide_and_combining_characters(tmp_path, capsys):
    """A CJK name takes two terminal columns a character, a combining accent none: padding by len() had pushed
    every cell after such a name out of line."""
    from htsr.cli import format_table
    from htsr.results import shown_width

    rng = np.random.default_rng(0)
    names = ["编码器.权重", "cafe\u0301.weight", "plain.weight"]  # (the second: 'café' with a combining accent)
    np.savez(tmp_path / "m.npz", **{n: rng.standard_normal((60, 40)) for n in names})
    assert main(["analyze", str(tmp_path / "m.npz")]) == 0
    assert capsys.readouterr().out.split("\n\n")[0] == format_table(htsr.analyze(tmp_path / "m.npz"))
    table = format_table(htsr.analyze(tmp_path / "m.npz"), ["name", "kind", "alpha"]).splitlines()
    assert [ln.split()[0] for ln in table[1:]] == ["编码器.权重", "cafe\u0301", "plain"]
    # every line's columns end at the same terminal column: the kind's and the alpha's
    assert len({shown_width(ln) for ln in table}) == 1
    assert len({shown_width(ln[: ln.index("dense") + 5]) for ln in table[1:]}) == 1
    assert shown_width("编码器") == 6 and shown_width("cafe\u0301") == 4 and shown_width("ab") == 2


def test_not_analysed_reasons_are_in_the_flags_terms(model, capsys):
    """A result's reasons name the API's options ("not matched by option 'layers'"); the CLI prints them as its
    flags, as it does its errors."""
    assert main(["analyze", str(model), "--layers", "big", "--kinds", "dense,conv2d"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == "tensors not analysed: 2 of 3: bias or norm buffer 1; not matched by --layers 1"


@pytest.mark.parametrize("flags,columns", [
    (["--farms-aspect", "1"], ["farms_windows"]),
    (["--clip-xmax"], ["raw_alpha", "num_fingers"]),
    (["--bayes-average"], ["bayes_avg_alpha", "bayes_avg_alpha_lo", "bayes_avg_alpha_hi"]),
    (["--localization"], ["loc_pr_tail_mean", "loc_pr_bulk_mean", "loc_lr_tail_mean", "loc_lr_bulk_mean",
                         "loc_ent_tail_mean", "loc_ent_bulk_mean"]),
])
def test_an_option_shows_the_columns_it_fills(model, capsys, flags, columns):
    """An option's own columns appear in the printed table (and the report, which uses the same list),
    with the fitted layer's values in them; without the option they are not shown."""
    from htsr.results import table_columns

    assert main(["analyze", str(model), "--no-progress", *flags]) == 0
    header, row = (line.split() for line in capsys.readouterr().out.splitlines()[:2])
    assert [c for c in header if c in columns] == columns
    assert all(row[header.index(c)] != "nan" for c in columns)
    assert not set(columns) & set(table_columns(htsr.analyze(model)))


def test_drop_top_shows_what_it_dropped(model, capsys):
    assert main(["analyze", str(model), "--drop-top", "2"]) == 0
    assert {"raw_alpha", "num_fingers"} <= set(capsys.readouterr().out.splitlines()[0].split())


def test_bootstrap_columns_replace_the_bayesian_interval(model, capsys):
    """... when they drive the warnings (100 replicates); below, beside it: a 30-replicate bootstrap's interval
    [1.617, 2.055] had been the only one shown beside an over-trained warning the Bayesian [1.634, 1.976] gave."""
    assert main(["analyze", str(model), "--bootstrap", "20", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert "boot_alpha_lo" in header and "pl_pvalue" in header and "bayes_alpha_lo" in header
    row = dict(zip(header, lines[1].split()))
    assert float(row["boot_alpha_lo"]) <= float(row["boot_alpha_hi"])
    assert 0.0 <= float(row["pl_pvalue"]) <= 1.0
    # 20 replicates fill the columns but are too few to drive the warnings: the summary says which interval does
    assert "interval of alpha: Bayesian, 95%; a bootstrap of 20 < 100 replicates is not used" in "\n".join(lines)
    assert "no-power-law n/a" in "\n".join(lines)  # no layer was tested
    assert main(["analyze", str(model), "--bootstrap", "100", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "boot_alpha_lo" in out.split("\n")[0] and "bayes_alpha_lo" not in out.split("\n")[0]
    assert "interval of alpha: bootstrap, 95% (Bayesian on a layer with fewer than 100 good replicates)" in out
    assert "no-power-law n/a" not in out
    assert main(["analyze", str(model), "--bayes-average"]) == 0
    assert "interval of alpha: Bayesian, 95%)" in capsys.readouterr().out  # the averaged posterior is a diagnostic


def test_few_bootstrap_replicates_get_a_note(model, capsys):
    assert main(["analyze", str(model), "--bootstrap", "20", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("htsr: note: --bootstrap 20: with fewer than 100 replicates") and err.count("\n") == 1
    assert main(["analyze", str(model), "--bootstrap", "20", "-q"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: errors only
    assert main(["analyze", str(model), "--bootstrap", "100", "--no-progress"]) == 0
    assert "note" not in capsys.readouterr().err


def test_table_alpha_matches_library(model, capsys):
    assert main(["analyze", str(model)]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("enc.big"))
    cells = row.split()
    alpha_cli = float(cells[TABLE_COLUMNS.index("alpha")])
    alpha_lib = htsr.analyze(model).layers[0].alpha
    assert math.isfinite(alpha_lib)
    # the table prints 4 significant digits ("{:.4g}"): half a unit in the 4th digit
    assert alpha_cli == pytest.approx(alpha_lib, rel=5e-4)


# ------------------------------------------------------------------------------------------ --out


def test_out_writes_csv_and_json(model, tmp_path, capsys):
    out_dir = tmp_path / "results" / "run1"  # neither folder exists yet
    assert main(["analyze", str(model), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {out_dir / 'layers.csv'}, {out_dir / 'summary.json'}" in out

    # exactly the two files: no temporary file left behind
    assert sorted(p.name for p in out_dir.iterdir()) == ["layers.csv", "summary.json"]

    text = (out_dir / "layers.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(htsr.COLUMNS)
    rows = _read_csv(out_dir / "layers.csv")
    lib = htsr.analyze(model)
    assert [r["name"] for r in rows] == [r.name for r in lib.layers]
    # floats are written with repr(): reading them back is exact
    assert float(rows[0]["alpha"]) == pytest.approx(lib.layers[0].alpha, rel=0, abs=0)
    assert rows[1]["alpha"] == ""  # NaN (not fitted) is an empty field

    raw = (out_dir / "summary.json").read_text(encoding="utf-8")
    assert "NaN" not in raw and "Infinity" not in raw
    doc = json.loads(raw, parse_constant=_no_nan_constants)
    assert {"summary", "options"} <= set(doc)
    assert doc["source"] == str(model)
    assert doc["summary"]["num_layers"] == 2 and doc["summary"]["num_fitted"] == 1
    # the only fitted layer's alpha is the mean; JSON keeps the float exactly
    assert doc["summary"]["alpha"] == pytest.approx(lib.layers[0].alpha, rel=0, abs=0)
    assert doc["options"] == htsr.Options().as_dict(ui=False)  # (not progress, workers, keep_spectra: no numbers)


def test_out_summary_json_nan_means_are_null(tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors", fitted=False)  # no layer is fitted: alpha mean is NaN
    out_dir = tmp_path / "o"
    assert main(["analyze", str(model), "--out", str(out_dir)]) == 0
    raw = (out_dir / "summary.json").read_text(encoding="utf-8")
    assert "NaN" not in raw
    doc = json.loads(raw, parse_constant=_no_nan_constants)
    assert doc["summary"]["alpha"] is None
    assert doc["summary"]["log_norm"] is not None  # norms are still computed


def test_out_into_existing_folder_overwrites_only_its_files(model, tmp_path, capsys):
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    (out_dir / "layers.csv").write_text("stale")
    assert main(["analyze", str(model), "--out", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["layers.csv", "notes.txt", "summary.json"]
    assert (out_dir / "notes.txt").read_text() == "keep me"
    assert (out_dir / "layers.csv").read_text().startswith("name,kind,shape,")


def test_output_paths_through_broken_links_fail_first_in_one_line(model, tmp_path, capsys, monkeypatch):
    """A link loop in an output path had ended in a traceback (Path.resolve's RuntimeError); --out through a
    link to a missing folder had passed the check and failed after the whole analysis."""
    calls = []
    monkeypatch.setattr("htsr.cli.analyze", lambda *a, **k: calls.append(a))  # must not be reached
    os.symlink(tmp_path / "loopB", tmp_path / "loopA")
    os.symlink(tmp_path / "loopA", tmp_path / "loopB")
    os.symlink(tmp_path / "gone", tmp_path / "dl")
    for argv, says in ((["--out", str(tmp_path / "loopA")], "leads round in a loop"),
                       (["--report", str(tmp_path / "loopA")], "leads round in a loop"),
                       (["--out", str(tmp_path / "dl")], "is a link to a missing folder")):
        rc = main(["analyze", str(model), *argv])
        out, err = capsys.readouterr()
        assert says in _assert_user_error(rc, out, err)
    assert calls == []


def test_api_writers_name_the_path_given(model, tmp_path):
    """to_csv / to_json into a missing folder had raised a builtin FileNotFoundError naming their hidden
    temporary file (.layers.csv.<uuid>.tmp)."""
    res = htsr.analyze(str(model))
    for write, name in ((res.to_csv, "layers.csv"), (res.to_json, "run.json")):
        with pytest.raises(htsr.HtsrError) as e:
            write(tmp_path / "missing" / name)
        assert str(e.value).startswith(f"{tmp_path / 'missing' / name}: cannot write") and ".tmp" not in str(e.value)


def test_out_is_an_existing_file(model, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    rc = main(["analyze", str(model), "--out", str(target)])
    out, err = capsys.readouterr()
    assert "taken" in _assert_user_error(rc, out, err)
    assert target.read_text() == "x"


def test_outputs_never_overwrite_an_input(model, tmp_path, capsys, monkeypatch):
    """--report / --out / --figure that would replace a file the run reads are refused before the
    analysis; the input is byte for byte unchanged."""
    before = model.read_bytes()
    calls = []
    monkeypatch.setattr("htsr.cli.analyze", lambda *a, **k: calls.append(a))  # must not be reached
    for argv in (["analyze", str(model), "--report", str(model)],
                 ["analyze", str(tmp_path / "other.npz"), "--base", str(model), "--report", str(model)],
                 ["analyze", str(tmp_path), "--report", str(model)],  # a file inside a source folder
                 ["compare", str(model), str(model), "--figure", str(model)]):
        rc = main(argv)
        out, err = capsys.readouterr()
        msg = _assert_user_error(rc, out, err)
        assert str(model) in msg and "never overwrites its inputs" in msg, msg
    assert calls == [] and model.read_bytes() == before


def test_outputs_never_overwrite_a_file_the_base_reads(tmp_path, capsys):
    """--base's own files (an ONNX base's external data, named anything: here layers.csv) had not been checked:
    --out into the base's folder replaced its data."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def make(folder: Path, location: str) -> Path:
        folder.mkdir()
        W = numpy_helper.from_array(np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32), "W")
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
        m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [x], [y], [W]),
                              opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(m, str(folder / "m.onnx"), save_as_external_data=True, location=location, size_threshold=0)
        return folder / "m.onnx"

    base, model = make(tmp_path / "base", "layers.csv"), make(tmp_path / "model", "w.bin")
    before = (tmp_path / "base" / "layers.csv").read_bytes()
    rc = main(["analyze", str(model), "--base", str(base), "--out", str(tmp_path / "base")])
    msg = _assert_user_error(rc, *capsys.readouterr())
    assert "layers.csv: is a file this run reads" in msg
    assert (tmp_path / "base" / "layers.csv").read_bytes() == before
    # the analysed model's own external data (not on the command line) is an input too: --out into its folder
    # would replace it (only the base's had been tried)
    rc = main(["analyze", str(base), "--out", str(tmp_path / "base")])
    assert "layers.csv: is a file this run reads" in _assert_user_error(rc, *capsys.readouterr())
    assert (tmp_path / "base" / "layers.csv").read_bytes() == before


def test_unwritable_outputs_fail_first_in_one_line(model, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr("htsr.cli.analyze", lambda *a, **k: calls.append(a))
    for argv, flag in ((["analyze", str(model), "--report", "/proc/htsr-report.html"], "--report"),
                       (["analyze", str(model), "--out", "/proc/htsr-out"], "--out"),
                       (["compare", str(model), str(model), "--figure", "/proc/t.png"], "--figure")):
        rc = main(argv)
        out, err = capsys.readouterr()
        msg = _assert_user_error(rc, out, err)  # one line, exit 2, no traceback
        assert flag in msg and "/proc" in msg, msg
    assert calls == []
    rc = main(["analyze", str(model), "--out", str(model / "sub")])  # below a file: no folder can be made
    msg = _assert_user_error(rc, *capsys.readouterr())
    assert f"{model} is a file, so no folder can be made there" in msg and calls == []
    # a name longer than the file system's 255 characters, refused before the analysis (one it takes, with the
    # temporary file's name no longer, is written: test_results)
    long = model.parent / ("r" * 251 + ".html")
    rc = main(["analyze", str(model), "--report", str(long)])
    msg = _assert_user_error(rc, *capsys.readouterr())
    assert msg.endswith(f"{long}: its name is longer than the 255 bytes {model.parent} takes; choose a shorter "
                        "one") and calls == []


def test_two_outputs_of_one_run_in_one_file_are_refused(model, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr("htsr.cli.analyze", lambda *a, **k: calls.append(a))  # refused before the analysis
    out = tmp_path / "o"
    for argv, clash in ((["analyze", str(model), "--out", str(out), "--report", str(out / "layers.csv")], "--out"),
                        (["analyze", str(model), "--out", str(out), "--report", str(out / "summary.json")], "--out"),
                        (["compare", str(model), str(model), "--out", str(out), "--figure",
                          str(out / "comparison.json")], "--out")):
        msg = _assert_user_error(main(argv), *capsys.readouterr())
        assert f"is also written by {clash}; choose another path" in msg, msg
    # one output where another's folder is to be made: it failed after the analysis, half written
    for argv in (["analyze", str(model), "--out", str(out), "--report", str(out)],
                 ["analyze", str(model), "--report", str(out), "--out", str(out)],
                 ["compare", str(model), str(model), "--out", str(out / "c.png"), "--figure", str(out / "c.png")]):
        msg = _assert_user_error(main(argv), *capsys.readouterr())
        assert "is the folder --out writes" in msg and "choose another path" in msg, msg
    assert calls == [] and not out.exists()


@pytest.mark.parametrize("flag", ["--out", "--report", "--figure"])
def test_an_empty_output_path_is_refused_not_read_as_the_current_folder(model, tmp_path, capsys, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    argv = (["compare", str(model), str(model)] if flag == "--figure" else ["analyze", str(model)]) + [flag, ""]
    with pytest.raises(SystemExit) as ei:  # argparse's exit, in htsr's one-line format
        main(argv)
    msg = _assert_user_error(ei.value.code, *capsys.readouterr())
    assert f"argument {flag}: an empty path: give a folder or file to write" in msg  # (what to do, not only what)
    assert [p.name for p in tmp_path.iterdir()] == [model.name]  # nothing written into the current folder
    with pytest.raises(SystemExit) as ei:  # blanks only ("$OUT " with OUT unset) are no path either
        main(argv[:-1] + ["  "])
    assert f"argument {flag}: an empty path" in _assert_user_error(ei.value.code, *capsys.readouterr())
    assert [p.name for p in tmp_path.iterdir()] == [model.name]


def _disk_full_at(monkeypatch, n: int) -> list:
    """Make the n-th temporary output file of a run fail as a full disk does (ENOSPC); returns the list of
    paths written so far (clear it to count again)."""
    import errno

    import htsr.results as results

    real, calls = results._write_temp, []

    def write(path, data):
        calls.append(path)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(results, "_write_temp", write)
    return calls


def test_a_full_disk_leaves_no_output_and_names_the_file(model, tmp_path, capsys, monkeypatch):
    """The outputs are written as a set: when the second cannot be written (ENOSPC), the first is not
    renamed into place, no temporary file is left, and the error names the flag and the file."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.html").write_text("an earlier run's report")
    _disk_full_at(monkeypatch, 3)
    rc = main(["analyze", str(model), "--out", str(out), "--report", str(out / "report.html"), "-q"])
    msg = _assert_user_error(rc, *capsys.readouterr())
    assert msg == (f"htsr: error: --report {out / 'report.html'}: cannot write (No space left on device); "
                   "no output was written")
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no layers.csv, no temporary file
    assert (out / "report.html").read_text() == "an earlier run's report"


def test_an_interrupt_between_the_renames_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C between two renames of an output set: the files not yet renamed are not left as hidden
    temporaries beside the outputs."""
    from htsr import results

    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(results.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        results.write_outputs([("--out", tmp_path / "a.csv", "a"), ("--out", tmp_path / "b.json", "b"),
                               ("--out", tmp_path / "c.json", "c")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_set_of_outputs_waits_while_another_run_writes_to_its_folder(tmp_path):
    """Two runs given one --out: each renames its set while holding its folder's lock, so the folder ends with
    one run's files, never layers.csv of one and summary.json of the other. Here the other run holds the lock
    (a descriptor of its own, as another process would): the set waits, written to temporaries but not renamed,
    and lands whole once the lock is released."""
    import fcntl
    import threading

    from htsr import results

    (tmp_path / "a.csv").write_text("old a")
    (tmp_path / "b.json").write_text("old b")
    other = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)
    t = threading.Thread(target=results.write_outputs,
                         args=([("--out", tmp_path / "a.csv", "new a"), ("--out", tmp_path / "b.json", "new b")],))
    t.start()
    try:
        t.join(0.5)  # (it cannot get the lock: a time only to let it reach the wait)
        assert t.is_alive()
        assert [(tmp_path / f).read_text() for f in ("a.csv", "b.json")] == ["old a", "old b"]
        assert len(list(tmp_path.iterdir())) == 4  # its two temporaries are written, waiting
    finally:
        os.close(other)
        t.join(10)
    assert not t.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]
    assert [(tmp_path / f).read_text() for f in ("a.csv", "b.json")] == ["new a", "new b"]
    fd = os.open(tmp_path, os.O_RDONLY)  # released: another run now gets the lock at once
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_an_interrupt_while_waiting_for_the_folder_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C while the set waits for another run's lock: its temporaries and the folders it made are removed,
    and every lock it took is released."""
    import fcntl

    from htsr import results

    held = []

    def flock(fd, op):
        held.append(fd)
        if len(held) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(fcntl, "flock", flock)
    closed = []
    real_close = os.close
    monkeypatch.setattr(results.os, "close", lambda fd: (closed.append(fd), real_close(fd)))
    with pytest.raises(KeyboardInterrupt):
        results.write_outputs([("--out", tmp_path / "x" / "a.csv", "a"), ("--out", tmp_path / "y" / "b.json", "b")])
    assert list(tmp_path.iterdir()) == []
    assert sorted(closed) == sorted(held)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_an_output_that_is_not_a_regular_file_is_refused_not_replaced(model, tmp_path, capsys, monkeypatch):
    """A rename would put a plain file where a device or pipe was (as root: --report /dev/null would replace
    /dev/null itself): refused before the analysis, and by the API's writers too."""
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *a, **k: pytest.fail("analysed first"))
    msg = _assert_user_error(main(["analyze", str(model), "--report", str(fifo)]), *capsys.readouterr())
    assert msg == (f"htsr: error: --report {fifo}: is not a regular file (a device, pipe or socket), which writing "
                   "the output would replace; choose a file path")
    monkeypatch.undo()
    with pytest.raises(htsr.HtsrError, match="is not a regular file"):
        htsr.analyze({"w": np.eye(60)}).to_csv(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_failed_write_leaves_no_folder_it_made(model, tmp_path, capsys, monkeypatch):
    """Folders made for a set of outputs that could not be written are removed again (innermost first);
    a folder that existed before, or holds anything else, stays."""
    calls = _disk_full_at(monkeypatch, 2)
    out = tmp_path / "new" / "run"
    rc = main(["analyze", str(model), "--out", str(out), "--report", str(tmp_path / "r" / "report.html"), "-q"])
    assert "no output was written" in _assert_user_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name]  # new/run/ and r/ are gone
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "keep.txt").write_text("mine")
    calls.clear()
    rc = main(["analyze", str(model), "--out", str(out), "-q"])
    assert "no output was written" in _assert_user_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["keep.txt"]  # run/ removed, new/ kept


def test_report_inside_a_new_out_folder(model, tmp_path, capsys):
    out = tmp_path / "new" / "run"  # neither folder exists yet: both are made when written
    assert main(["analyze", str(model), "--out", str(out), "--report", str(out / "report.html"), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["layers.csv", "report.html", "summary.json"]


def test_flags_reach_the_options(model, tmp_path, capsys):
    out_dir = tmp_path / "o"
    argv = ["analyze", str(model), "--out", str(out_dir), "--precision", "accurate", "--xmin", "median",
            "--min-evals", "3", "--max-evals", "none", "--normalize", "N", "--clip-xmax",
            "--kinds", "dense,conv2d", "--layers", "small$"]
    # --refine-fraction tunes the fast path only: with --precision accurate it would change nothing
    assert main([*argv, "--refine-fraction", "0.5"]) == 2
    assert "--refine-fraction applies only with --precision fast" in capsys.readouterr().err
    assert main(["analyze", str(model), "--out", str(tmp_path / "fast"), "--refine-fraction", "0.5", "-q"]) == 0
    fast = json.loads((tmp_path / "fast" / "summary.json").read_text())["options"]
    assert fast["refine_fraction"] == pytest.approx(0.5, abs=0)  # parsed from "0.5": exact
    assert main(argv) == 0
    capsys.readouterr()
    opts = json.loads((out_dir / "summary.json").read_text())["options"]
    assert opts["precision"] == "accurate" and opts["xmin"] == "median"
    assert opts["min_evals"] == 3 and opts["max_evals"] is None
    assert opts["normalize"] == "N" and opts["clip_xmax"] is True
    assert opts["kinds"] == ["conv2d", "dense"] and opts["layers"] == "small$"
    rows = _read_csv(out_dir / "layers.csv")
    assert [r["name"] for r in rows] == ["enc.small"]  # --layers filter
    assert rows[0]["eig_method"] == "svd64"  # --precision accurate
    assert not rows[0]["status"].startswith("not_fitted")  # 4 eigenvalues >= --min-evals 3
    # a conv option on a model without conv layers would change nothing: refused once its rows are listed (it had
    # run, and compare then called the run "analysed with different options" from an identical one)
    for flag in (["--no-ww-conv-scale"], ["--conv", "per_position"]):
        assert main(["analyze", str(model), *flag]) == 2
        kinds = ("conv2d, lora (of a conv2d)" if flag[0] == "--no-ww-conv-scale" else
                 "conv1d, conv2d, conv3d, lora (of a conv)")
        assert capsys.readouterr().err.strip() == (
            f"htsr: error: {model}: {flag[0]} acts only on {kinds} layers, and this model has none (its rows are "
            "dense): it would change nothing; leave it out")


def test_numeric_xmin_flag(model, tmp_path, capsys):
    assert main(["analyze", str(model), "--xmin", "2.5", "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    opts = json.loads((tmp_path / "o" / "summary.json").read_text())["options"]
    assert opts["xmin"] == pytest.approx(2.5, abs=0)  # "2.5" parses to exactly 2.5


# ------------------------------------------------------------------------------------------- --help


def _all_help(capsys) -> str:
    with pytest.raises(SystemExit) as ei:
        main(["analyze", "--help"])
    assert ei.value.code == 0
    return capsys.readouterr().out


def test_help_mentions_every_option(capsys):
    text = _all_help(capsys)
    assert "--out" in text
    # what --layers and --kinds take, in the usage and the option list (not argparse's LAYERS, KINDS)
    assert "--layers REGEX" in text and "--kinds K1,K2" in text and "LAYERS" not in text and "KINDS" not in text
    for name, spec in htsr.OPTION_SPECS.items():
        flag = "--" + name.replace("_", "-")
        if name == "keep_spectra":  # no flag: --report sets it (nothing else the CLI writes uses it)
            assert "--report" in text
            continue
        if spec.default is True:
            assert "--no-" + name.replace("_", "-") in text, name
        else:
            assert flag in text, name
        # the default is stated (the table is the single source of truth)
        flat = " ".join(text.split())
        if spec.default is True:
            assert "(it is on by default)" in flat, name
        elif spec.default is False and name != "progress":
            assert f"{' '.join(spec.help.split())} (default: off)" in flat, name
        elif name != "progress":
            default = "none" if spec.default in (None, ()) else spec.default  # in the command line's terms
            assert f"(default: {default}; {' '.join(spec.flag_allowed.split())})" in flat, name


@pytest.mark.parametrize("argv, message", [
    (["--kinds", "none"], "--kinds must be a comma-separated subset of dense, conv1d, conv2d, conv3d, embedding, "
                          "rnn, stack, lora, got none"),
    (["--kinds", "dense,foo"], "--kinds must be a comma-separated subset of"),
    (["--kinds", "dense,foo"], "rnn, stack, lora, got dense,foo"),  # the list as it was typed
    (["--finger-thresh", "1e10"], "--finger-thresh must be a number > 0 and <= 1e9, got 10000000000.0"),
    (["--layers", "("], "--layers must be a non-empty regular expression, got ("),
    (["--layers", ""], "--layers must be a non-empty regular expression, got ''"),  # (an unset shell variable)
    (["--bootstrap", "100000000000"], "--bootstrap must be an integer from 0 to 100000"),
    # the API's words in the flags': "option 'mp_fit' set to True" is "without --no-mp-fit"
    # (and not in a double negative: it had said "applies only without --no-mp-fit")
    (["--no-mp-fit", "--phase-ht-alpha", "3"], "--phase-ht-alpha would change nothing with --no-mp-fit"),
    (["--no-mp-fit", "--tw-margin", "3"], "--tw-margin would change nothing with --no-mp-fit unless --randomize is "
                                          "given"),
    (["--max-fingers", "3"], "--max-fingers applies only with --clip-xmax: otherwise it would change nothing"),
    (["--kinds", "lora", "--no-mp-fit"], "--no-mp-fit acts only on dense, conv1d, conv2d, conv3d, embedding, rnn, "
                                         "stack layers, which --kinds lora leaves out"),
    (["--kinds", "dense", "--conv", "per_position"], "--conv acts only on conv1d, conv2d, conv3d, lora (of a conv) "
                                                     "layers"),
    (["--progress", "--quiet"],  # (--progress was dropped)
     "--progress and --quiet: --quiet prints no progress bar; give one of them"),
    (["--max-evals", "0"], "--max-evals must be none or an integer >= 1, got 0"),
    # a contradictory pair (it had run, every row not fitted); --max-evals alone below the default is describe()
    (["--min-evals", "500", "--max-evals", "400"], "--min-evals (500) is above --max-evals (400): no layer could be "
                                                   "fitted"),
    (["--drop-top", "2", "--clip-xmax"], "--drop-top and --clip-xmax both choose"),
])
def test_option_errors_in_the_command_lines_terms(model, capsys, argv, message):
    """Flag names, 'none' and comma lists, and the real range (an upper bound too), never the API's wording."""
    line = _assert_user_error(main(["analyze", str(model), *argv]), *capsys.readouterr())
    assert message in line and "None" not in line


def test_top_level_help_and_version(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    assert "analyze" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.strip() == f"htsr {htsr.__version__}"


# -------------------------------------------------------------------------------------- user errors


def _corrupt(tmp_path: Path) -> Path:
    p = _model(tmp_path / "corrupt.safetensors")
    raw = bytearray(p.read_bytes())
    raw[8:12] = b"\x00\xff\x00\xff"  # the JSON header's first bytes: not JSON (a file cut off is read up to the cut)
    p.write_bytes(bytes(raw))
    return p


@pytest.mark.parametrize("case", ["missing", "corrupt", "text_file", "empty_dir"])
def test_bad_sources_exit_2_with_one_line(model, tmp_path, capsys, case):
    expect = None
    if case == "missing":
        source, expect = tmp_path / "nope.safetensors", "nope.safetensors"
    elif case == "corrupt":
        source, expect = _corrupt(tmp_path), "corrupt.safetensors"
    elif case == "text_file":
        source, expect = tmp_path / "readme.txt", "unknown file format"
        source.write_text("hello\n")
    else:
        source = tmp_path / "empty"
        source.mkdir()
    rc = main(["analyze", str(source)])
    out, err = capsys.readouterr()
    line = _assert_user_error(rc, out, err)
    if expect:
        assert expect in line


# bad option values: the flags given, and the option name the one-line error must contain
BAD_OPTIONS = {
    "xmin=foo": (["--xmin", "foo"], "xmin"),
    "xmin=0": (["--xmin", "0"], "xmin"),
    "xmin=-1": (["--xmin", "-1"], "xmin"),
    "xmin=nan": (["--xmin", "nan"], "xmin"),
    "xmin=inf": (["--xmin", "inf"], "xmin"),
    "precision": (["--precision", "exact"], "precision"),
    "kinds": (["--kinds", "dense,attention"], "kinds"),
    "layers_regex": (["--layers", "enc.(big"], "layers"),
    "refine_fraction": (["--refine-fraction", "1.5"], "--refine-fraction"),  # the flag, not the API name
    "min_evals": (["--min-evals", "1"], "--min-evals"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_exit_2_with_one_line(model, capsys, case):
    flags, expect = BAD_OPTIONS[case]
    rc = main(["analyze", str(model), *flags])
    out, err = capsys.readouterr()
    assert expect in _assert_user_error(rc, out, err)


def test_bad_option_is_reported_before_the_source_is_read(tmp_path, capsys):
    # both the option and the path are wrong: the option error comes first, nothing is written
    out_dir = tmp_path / "o"
    rc = main(["analyze", str(tmp_path / "missing.pt"), "--precision", "bogus", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert "precision" in _assert_user_error(rc, out, err)
    assert not out_dir.exists()


def test_argparse_type_errors_exit_2_without_traceback(model, capsys):
    with pytest.raises(SystemExit) as ei:
        main(["analyze", str(model), "--min-evals", "many"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--min-evals" in err



@pytest.mark.parametrize("command", ["analyze", "compare"])
def test_an_unknown_flag_points_to_the_subcommand_help(model, capsys, command):
    with pytest.raises(SystemExit) as ei:
        main([command, str(model), *([str(model)] if command == "compare" else []), "--bogus"])
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"htsr: error: unrecognized arguments: --bogus (see 'htsr {command} --help')"

def test_layer_with_nan_weights_does_not_stop_the_run(tmp_path, capsys):
    model = _model(tmp_path / "nan.safetensors", nan_in="enc.small.weight")
    out_dir = tmp_path / "o"
    assert main(["analyze", str(model), "--out", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    rows = {r["name"]: r for r in _read_csv(out_dir / "layers.csv")}
    assert rows["enc.small"]["status"].startswith("failed")
    assert rows["enc.big"]["status"] == "ok"
    table_row = next(ln for ln in out.splitlines() if ln.startswith("enc.small"))
    assert "failed" in table_row
    summary = json.loads((out_dir / "summary.json").read_text(), parse_constant=_no_nan_constants)
    assert summary["summary"]["num_failed"] == 1 and summary["summary"]["num_fitted"] == 1


def test_source_without_analysable_layer_exits_2(tmp_path, capsys):
    p = tmp_path / "norms.safetensors"
    save_file({"ln.weight": np.ones(16, np.float32), "fc.bias": np.zeros(16, np.float32),
               "position_ids": np.arange(16, dtype=np.int64).reshape(1, 16)}, str(p))
    out_dir = tmp_path / "o"
    rc = main(["analyze", str(p), "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert "no analysable layer" in _assert_user_error(rc, out, err)
    assert not out_dir.exists()  # nothing written for a failed run


def test_filters_matching_nothing_exit_2(model, capsys):
    rc = main(["analyze", str(model), "--layers", "^decoder"])
    out, err = capsys.readouterr()
    assert "filters" in _assert_user_error(rc, out, err)


# ------------------------------------------------------------------------------------- subprocesses


def _env() -> dict[str, str]:
    """The environment without PYTHON* variables, importing the htsr under test (even if another is installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(HTSR_ROOT)
    return env


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "htsr", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120)


def test_subprocess_python_m_htsr(model, tmp_path):
    out_dir = tmp_path / "sub" / "out"
    proc = _run("analyze", str(model), "--out", str(out_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.splitlines()[0].split() == list(TABLE_COLUMNS)
    assert sorted(p.name for p in out_dir.iterdir()) == ["layers.csv", "summary.json"]
    assert (out_dir / "layers.csv").read_text().splitlines()[0] == ",".join(htsr.COLUMNS)
    json.loads((out_dir / "summary.json").read_text(), parse_constant=_no_nan_constants)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_closed_pipe_still_gets_the_files_written(model, tmp_path, json_flag):
    """`htsr analyze … --out DIR | head`: the reader gone before the table is printed; the files are still
    written and the exit is 0 (they had not been: the broken pipe ended the command before its outputs)."""
    env = _env()
    r, w = os.pipe()
    os.close(r)  # the reader has gone: the first write to stdout fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "htsr", "analyze", str(model), "--out", str(tmp_path / "o"),
                               "--report", str(tmp_path / "r.html"), *json_flag], cwd=tmp_path, env=env,
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["layers.csv", "summary.json"]
    assert (tmp_path / "r.html").is_file()




def test_a_closed_stderr_pipe_does_not_stop_the_run(model, tmp_path):
    """`htsr analyze … --progress 2>&1 | head -c 5`: the progress bar's write to a stderr whose reader has gone
    had ended the run, nothing written, exit 0; the bar and the notes are dropped and the run goes on."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "htsr", "analyze", str(model), "--out", str(tmp_path / "o"),
                               "--progress", "--bootstrap", "5"], cwd=tmp_path, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=w, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["layers.csv", "summary.json"]


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_standard_stream_is_not_an_error(model, tmp_path, closed):
    # `htsr … >&-` / `2>&-`: sys.stdout (sys.stderr) is None; the run had failed on it, nothing written
    redirect = ">&-" if closed == "stdout" else "2>&-"
    proc = subprocess.run(["bash", "-c", f'exec "$0" -m htsr analyze "$1" --out "$2" {redirect}', sys.executable,
                           str(model), str(tmp_path / "o")], cwd=tmp_path, env=_env(), capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["layers.csv", "summary.json"]


def test_an_ascii_terminal_gets_escapes_not_a_crash(tmp_path):
    # an ASCII (or cp1252) stdout: a name such as 'café' or a status with '−' had raised UnicodeEncodeError after
    # the analysis, before the files were written
    path = tmp_path / "m.npz"
    W = np.random.default_rng(0).standard_normal((300, 200)).astype(np.float32)
    np.savez(path, **{"café.weight": W, "层.weight": W.T.copy()})
    env = _env()
    env["PYTHONIOENCODING"] = "ascii"
    proc = subprocess.run([sys.executable, "-m", "htsr", "analyze", str(path), "--out", str(tmp_path / "o")],
                          cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"caf\\xe9" in proc.stdout and b"\\u5c42" in proc.stdout
    assert [r["name"] for r in _read_csv(tmp_path / "o" / "layers.csv")] == ["café", "层"]


def test_every_layer_failed_exits_3_with_its_files(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, **{"a.weight": np.full((100, 80), np.nan, np.float32), "b.weight": np.full((90, 80), np.inf, np.float32)})
    assert main(["analyze", str(path), "--out", str(tmp_path / "o")]) == 3
    out, err = capsys.readouterr()
    # (the source named: the line may end a script's log of many runs)
    assert err.strip().splitlines()[-1] == f"htsr: error: {path}: every layer failed (2 of 2; their statuses say why)"
    assert [r["status"] for r in _read_csv(tmp_path / "o" / "layers.csv")] == ["failed: NaN or Inf in the weights"] * 2


def test_long_options_are_not_abbreviated(model, capsys):
    # '--boot 20' had been taken as --bootstrap 20
    for argv in (["analyze", str(model), "--boot", "20"], ["compare", str(model), str(model), "--rep", "x.html"]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 2 and f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err


def test_exit_statuses_are_in_the_help(capsys):
    from htsr.cli import EXIT_STATUSES

    for argv in (["--help"], ["analyze", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "exit status:" in out and all(f"  {code:<4} {what}" in out for code, what in EXIT_STATUSES.items())


def _sigterm_during_the_write(tmp_path: Path, out: Path, ignored: bool) -> subprocess.CompletedProcess:
    """``htsr analyze … --out out`` in a child that sends itself SIGTERM as it writes summary.json (the second
    output: the first one's temporary file is made), with SIGTERM ignored by its launcher or not."""
    code = ("import os, signal, sys, htsr.results as R\n"
            f"if {ignored}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "real = R._write_temp\n"
            "def slow(path, data):\n"
            "    if path.name == 'summary.json':\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return real(path, data)\n"
            "R._write_temp = slow\n"
            "from htsr.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    path = tmp_path / "m.npz"
    np.savez(path, **{"fc.weight": np.random.default_rng(0).standard_normal((300, 200)).astype(np.float32)})
    return subprocess.run([sys.executable, "-c", code, "analyze", str(path), "--out", str(out)], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)


def test_sigterm_leaves_no_output_and_exits_143(tmp_path):
    """SIGTERM while the outputs are being written: Python's default action had left the temporary files and
    the folders made for them; it is handled as Ctrl-C is (exit 143, nothing left)."""
    proc = _sigterm_during_the_write(tmp_path, tmp_path / "a" / "b", ignored=False)
    assert proc.returncode == 143 and proc.stderr.strip().splitlines()[-1] == "htsr: terminated", proc.stderr
    assert not (tmp_path / "a").exists()


def test_an_ignored_sigterm_stays_ignored(tmp_path):
    """A SIGTERM the launching program ignores (a shell's `trap '' TERM`, nohup-like launchers) is inherited as
    ignored: htsr had installed its own handler over it and stopped (exit 143)."""
    proc = _sigterm_during_the_write(tmp_path, tmp_path / "o", ignored=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["layers.csv", "summary.json"]


def test_subprocess_user_error(tmp_path):
    proc = _run("analyze", str(_corrupt(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("htsr: error:") and "corrupt.safetensors" in lines[0]
    assert proc.stdout == ""


def test_json_prints_one_strict_document_and_quiet_prints_nothing(model, capsys):
    assert main(["analyze", str(model), "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out, parse_constant=_no_nan_constants)
    assert set(doc) == {"source", "path", "options", "summary", "num_tensors", "not_analysed", "layers"} and err == ""
    assert [r["name"] for r in doc["layers"]] == [r.name for r in htsr.analyze(model).layers]
    assert main(["analyze", str(model), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    # errors still reach stderr, one line
    assert main(["analyze", str(model) + ".missing", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "no such file" in err


def test_report_writes_one_html_file_with_per_layer_figures(model, tmp_path, capsys):
    (tmp_path / "rep").mkdir()
    report = tmp_path / "rep" / "r.html"
    assert main(["analyze", str(model), "--report", str(report), "--no-progress"]) == 0
    assert f"wrote {report}" in capsys.readouterr().out
    html = report.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert sorted(p.name for p in report.parent.iterdir()) == ["r.html"]  # atomic: no temporary left
    # --report keeps the eigenvalues: one layer's data per row, not the 'no per-layer figures' note
    assert 'id="layer-data-0"' in html and 'id="layer-data-1"' in html and 'id="no-spectra"' not in html
    assert main(["analyze", str(model), "--report", str(tmp_path / "rep"), "-q"]) == 2  # a folder, not a file
    assert "--report" in capsys.readouterr().err
    assert main(["analyze", str(model), "--report", str(tmp_path / "new" / "r.html"), "-q"]) == 0  # folder made
    assert (tmp_path / "new" / "r.html").is_file()


def test_output_piped_into_head_is_not_an_error(tmp_path):
    """`htsr analyze … | head -1`: the closed pipe ends the run quietly with status 0 (BrokenPipeError is an
    OSError, and the OSError handler used to catch it first: 'htsr: error: Broken pipe', status 1)."""
    rng = np.random.default_rng(2)
    path = tmp_path / "many.npz"
    np.savez(path, **{f"l{i}.weight": rng.standard_normal((24, 16)).astype(np.float32) for i in range(400)})
    proc = subprocess.Popen([sys.executable, "-m", "htsr", "analyze", str(path), "--min-evals", "2",
                             "--no-progress", "--no-tails", "--no-mp-fit", "--no-setol"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"name")
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "error" not in err, err


def test_control_characters_in_names_do_not_break_the_table():
    from htsr.cli import format_table

    rng = np.random.default_rng(3)
    r = htsr.analyze({"a\nb.weight": rng.standard_normal((30, 20)), "ü\t.weight": rng.standard_normal((30, 20))},
                     min_evals=5)
    lines = format_table(r).splitlines()
    assert len(lines) == 3 and lines[1].startswith("a\\nb ") and lines[2].startswith("ü\\t ")
    assert [x.name for x in r.layers] == ["a\nb", "ü\t"]  # the names themselves are kept (CSV, JSON)


def test_what_a_terminal_would_act_on_is_escaped_in_everything_printed(tmp_path, capsys):
    """Tensor names (and so error messages quoting them, and compare's table) holding terminal escapes — a title
    set, a screen clear, an OSC 8 link, C1 controls, a bidi override — had reached the terminal raw; a newline in
    an error message forged a second 'htsr:' line."""
    from safetensors.numpy import save_file

    W = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    evil = ["\x1b]0;PWNED\x07title.weight", "\x1b[2Jclear.weight", "\x9b31mcsi.weight", "\u202eevil.weight"]
    save_file({n: W * (i + 1) for i, n in enumerate(evil)}, str(tmp_path / "a.safetensors"))
    save_file({n: W * (i + 2) for i, n in enumerate(evil)}, str(tmp_path / "b.safetensors"))
    assert main(["analyze", str(tmp_path / "a.safetensors"), "--min-evals", "5"]) == 0
    out, err = capsys.readouterr()
    assert main(["compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--min-evals", "5"]) == 0
    out2, err2 = capsys.readouterr()
    for text in (out, err, out2, err2):
        assert not any(c in text for c in "\x1b\x07\x9b\u202e")
    assert "\\x1b]0;PWNED\\x07title" in out and "\\u202eevil" in out and "\\x1b[2Jclear" in out2
    # an error quoting a name with a newline stays one line
    bad = tmp_path / "bad.safetensors"
    header = b'{"x\\nhtsr: done\\u001b[2J": {"dtype": "XX", "shape": [2], "data_offsets": [0, 8]}}'
    bad.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    assert main(["analyze", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "x\\nhtsr: done\\x1b[2J" in err


def test_a_report_not_named_html_is_refused_before_the_analysis(model, tmp_path, capsys):
    """--report x.pdf wrote HTML into a .pdf; now refused in one line, and nothing is analysed or written."""
    assert main(["analyze", str(model), "--report", str(tmp_path / "x.pdf"), "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"htsr: error: --report {tmp_path / 'x.pdf'}: the report is an HTML file; "
                                       "name it .html\n")  # (what to do)
    assert not (tmp_path / "x.pdf").exists()


def test_an_earlier_runs_report_in_the_out_folder_is_named(model, tmp_path, capsys):
    """A reused --out folder kept an earlier run's report.html beside this run's tables without a word. A file of
    the user's own there (notes.txt) is no run's output: not named."""
    out = tmp_path / "res"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["analyze", str(model), "--out", str(out), "--report", str(out / "report.html"), "-q"]) == 0
    assert main(["analyze", str(model), "--out", str(out)]) == 0
    assert f"note: {out} also holds report.html, not written by this run" in capsys.readouterr().out
    assert main(["analyze", str(model), "--out", str(out), "--report", str(out / "report.html")]) == 0
    assert "also holds" not in capsys.readouterr().out


def test_a_full_disk_under_stdout_still_writes_the_files(model, tmp_path, capsys, monkeypatch):
    """--json --out res > /dev/full had failed with 'htsr: error: No space left on device' (no file named) and
    written no res/; the files are written, then the command fails naming standard output."""
    stand_in_stdout(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    rc = main(["analyze", str(model), "--json", "--out", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert rc == 1 and "htsr: error: standard output: cannot write (No space left on device)" in err
    assert sorted(os.listdir(tmp_path / "res")) == ["layers.csv", "summary.json"]
    assert main(["analyze", str(model), "--json"]) == 1  # (no output file asked for: none is said to be written)
    assert capsys.readouterr().err.strip().endswith("cannot write (No space left on device)")


def test_a_full_disk_under_stdout_when_every_layer_failed_says_the_files_were_written(tmp_path, capsys, monkeypatch):
    """Every layer NaN (status 3) and a full disk under stdout: the tables are written, stderr says every layer
    failed and that stdout could not be written (exit 1, as --help's statuses say); it had left out "the output
    files were written" there, though they were."""
    np.savez(tmp_path / "bad.npz", **{"a.weight": np.full((100, 80), np.nan, np.float32)})
    stand_in_stdout(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    rc = main(["analyze", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and sorted(os.listdir(tmp_path / "res")) == ["layers.csv", "summary.json"]
    assert err[-2].endswith("every layer failed (1 of 1; their statuses say why)")
    assert err[-1] == ("htsr: error: standard output: cannot write (No space left on device); the output files were "
                       "written")


def test_a_closed_pipe_on_windows_is_not_an_error(model, tmp_path, capsys, monkeypatch):
    """On Windows a pipe whose reader has gone raises OSError(EINVAL), not BrokenPipeError (CPython issue 79935):
    `htsr … | more` quit early had ended in 'standard output: cannot write (Invalid argument)', exit 1."""
    from htsr import cli

    stand_in_stdout(monkeypatch, OSError(errno.EINVAL, "Invalid argument"))
    monkeypatch.setattr(cli, "_WINDOWS", True)
    assert main(["analyze", str(model), "--out", str(tmp_path / "res")]) == 0
    assert "cannot write" not in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "res")) == ["layers.csv", "summary.json"]
    monkeypatch.setattr(cli, "_WINDOWS", False)  # elsewhere EINVAL is a real failure of standard output
    assert main(["analyze", str(model)]) == 1


def _sigint_between_the_renames(model, out, monkeypatch) -> tuple[int, list, str]:
    """``htsr analyze --out out`` run twice, the second time sending itself SIGINT after its first rename:
    (its exit status, the renames it made, the first run's summary.json)."""
    import signal

    assert main(["analyze", str(model), "--out", str(out), "-q", "--no-tails"]) == 0
    before = (out / "summary.json").read_text()
    real = os.replace
    calls = []

    def replace(a, b):
        calls.append(b)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # (delivered at once unless held)
        real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    return main(["analyze", str(model), "--out", str(out), "-q"]), calls, before


def test_ctrl_c_between_the_renames_leaves_one_runs_files(model, tmp_path, monkeypatch):
    """A SIGINT arriving between the renames of layers.csv and summary.json had left this run's table beside an
    earlier run's summary; it is held until every output is in place, then stops the command."""
    import signal

    # Python's own Ctrl-C handler, as in a terminal (a non-interactive shell's background job inherits SIGINT
    # ignored, and the test had then failed with 0 == 130: the next test covers that case)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc, calls, before = _sigint_between_the_renames(model, tmp_path / "res", monkeypatch)
    finally:
        signal.signal(signal.SIGINT, old)
    assert rc == 130  # interrupted, after the renames
    assert len(calls) == 2 and (tmp_path / "res" / "summary.json").read_text() != before  # both: one run's set


def test_a_held_sigint_that_the_launcher_ignores_is_still_ignored(model, tmp_path, monkeypatch):
    """``nohup``, or ``cmd &`` in a script, starts htsr with SIGINT ignored: holding it during the renames must
    not turn it into an interrupt (the held signal goes back to the handler it had, SIG_IGN)."""
    import signal

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        rc, calls, before = _sigint_between_the_renames(model, tmp_path / "res", monkeypatch)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # (and left as it was)
    finally:
        signal.signal(signal.SIGINT, old)
    assert rc == 0 and len(calls) == 2 and (tmp_path / "res" / "summary.json").read_text() != before


def test_import_htsr_loads_no_optimiser_or_statistics_module():
    """`import htsr` (and so every `htsr --help`) had imported scipy.stats for one χ² tail and scipy.optimize for
    one root finder: 0.6 of its 1.05 s. They are the same functions from scipy.special, or imported where used."""
    code = "import sys, htsr; print(sorted(m for m in ('scipy.stats', 'scipy.optimize') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_cli_table_shows_two_trap_locations_of_three():
    from htsr.cli import format_table

    r = result_of([layer_row("a", num_traps=3.0, trap_weights="1,2; 3,4; 5,6")])
    assert format_table(r, ["name", "trap_weights"]).splitlines()[1].split(None, 1)[1] == "1,2; 3,4; …"


@pytest.mark.parametrize("char", ["\x7f", "\x80", "\x9f"])  # DEL, and the first and last C1 controls
def test_a_del_character_in_a_name_is_escaped_in_the_cli_table(char):
    """DEL and the C1 controls U+0080-U+009F (U+009F, APC, the last of them, as well as the first) are printed as
    their escapes."""
    from htsr.cli import format_table

    assert format_table(result_of([layer_row(f"a{char}b")]), ["name"]).splitlines()[1] == f"a\\x{ord(char):02x}b"


def test_the_cli_summary_puts_each_warning_count_under_its_name():
    from htsr.cli import format_summary

    r = result_of([layer_row("a", warning="over-trained", alpha=1.5), layer_row("b", warning="over-trained", alpha=1.6),
                 layer_row("c", warning="under-trained", alpha=7.0)])
    line = next(l for l in format_summary(r).splitlines() if l.startswith("warnings:"))
    assert line.startswith("warnings: over-trained 2  under-trained 1  uncertain 0")


def test_a_report_named_in_capitals_is_html_too(model, tmp_path, capsys):
    assert main(["analyze", str(model), "--report", str(tmp_path / "R.HTML"), "-q"]) == 0
    assert (tmp_path / "R.HTML").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_out_naming_an_existing_file_is_refused_before_the_analysis(model, tmp_path, capsys, monkeypatch):
    f = tmp_path / "results"
    f.write_text("a file")
    monkeypatch.setattr(sys.modules["htsr.analyze"], "analyze", lambda *a, **k: pytest.fail("analysed first"))
    msg = _assert_user_error(main(["analyze", str(model), "--out", str(f)]), *capsys.readouterr())
    assert msg == f"htsr: error: --out {f}: exists and is not a folder"
    assert f.read_text() == "a file"


def test_kinds_ignore_empty_items_and_none_is_read_in_any_case(model, tmp_path):
    """--kinds 'dense,' (a trailing comma, a list built by a script) is the kind dense; --max-evals None, NONE or
    none is no limit."""
    for argv in (["--kinds", "dense,", "--max-evals", "None"], ["--kinds", " dense , ", "--max-evals", "NONE"]):
        assert main(["analyze", str(model), "--out", str(tmp_path / "o"), "-q", *argv]) == 0
        rows = _read_csv(tmp_path / "o" / "layers.csv")
        assert [r["name"] for r in rows] == ["enc.big", "enc.small"]
        summary = json.loads((tmp_path / "o" / "summary.json").read_text())
        assert summary["options"]["kinds"] == ["dense"] and summary["options"]["max_evals"] is None


def test_the_table_shows_two_trap_locations_whole_and_cuts_three():
    from htsr.cli import format_table

    two, three = "(1, 2) 0.5; (3, 4) 0.4", "(1, 2) 0.5; (3, 4) 0.4; (5, 6) 0.3"
    text = format_table(result_of([layer_row("a", trap_weights=two), layer_row("b", trap_weights=three)]),
                        ["name", "trap_weights"])
    assert text.splitlines()[1:] == ["a     (1, 2) 0.5; (3, 4) 0.4", "b     (1, 2) 0.5; (3, 4) 0.4; …"]


# ------------------------------------------------------------------------ round 23's gaps (exit statuses, flags)


def test_an_os_error_past_the_checks_exits_2_naming_the_file(model, capsys, monkeypatch):
    """An OSError after the checks (a disk error while reading) is status 2, naming the file; 1 is standard
    output's alone."""
    def failing(*a, **k):
        raise OSError(errno.EIO, "Input/output error", str(model))

    monkeypatch.setattr(sys.modules["htsr.cli"], "analyze", failing)
    rc = main(["analyze", str(model)])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"htsr: error: {model}: Input/output error"
    # one with neither a file name nor an errno: its text alone (not 'None: ' or 'None')
    monkeypatch.setattr(sys.modules["htsr.cli"], "analyze", lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
    assert main(["analyze", str(model)]) == 2
    assert capsys.readouterr().err.strip() == "htsr: error: gone"


def test_a_broken_pipe_reaching_main_is_not_an_error(model, capsys, monkeypatch):
    """A BrokenPipeError that reaches main (the reader of the output gone) ends the run with status 0, silently."""
    def gone(*a, **k):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys.modules["htsr.cli"], "analyze", gone)
    stand_in_stdout(monkeypatch)
    assert main(["analyze", str(model), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_the_progress_bars_carriage_return_reaches_the_terminal():
    """\r, \t and \n pass through the safe stream (the progress bar redraws its line with \r); an escape
    sequence is shown, not acted on."""
    buf = io.StringIO()
    _SafeStream(buf, True).write("\r 50%|#####| 1/2\x1b[2J\t\n")
    assert buf.getvalue() == "\r 50%|#####| 1/2\\x1b[2J\t\n"


def test_main_puts_the_sigterm_handler_back(model):
    """In-process main() restores SIGTERM's handler: a program that called it is still ended by SIGTERM as
    before, not by an htsr exception raised later."""
    # (the default set here: main() installs its handler only over the default, and an earlier main() in this
    # process may have changed it)
    saved = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert main(["analyze", str(model), "-q"]) == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_a_carriage_return_in_a_path_is_escaped_in_the_error(tmp_path, capsys):
    """A path with \r in an error stays one visible line: the \r shown escaped, not a return to the line's
    start that would hide 'htsr: error:'."""
    rc = main(["analyze", str(tmp_path / "nope\rhtsr: all fine.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "\r" not in err and "nope\\rhtsr: all fine.safetensors" in err


def test_keep_spectra_is_no_flag(model, capsys):
    """keep_spectra is the API's (--report sets it): the command line has no --keep-spectra."""
    with pytest.raises(SystemExit) as ei:
        main(["analyze", str(model), "--keep-spectra"])
    assert ei.value.code == 2
    assert "unrecognized arguments: --keep-spectra" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["none", "None", "2"])
def test_workers_take_none_in_any_case(model, value):
    assert main(["analyze", str(model), "-q", "--workers", value]) == 0


@pytest.mark.parametrize("value, recorded", [("none", None), ("NONE", None), ("2.5", 2.5), ("3", 3.0)])
def test_farms_aspect_takes_none_and_fractions(model, tmp_path, value, recorded):
    assert main(["analyze", str(model), "--out", str(tmp_path / "o"), "-q", "--farms-aspect", value]) == 0
    options = json.loads((tmp_path / "o" / "summary.json").read_text())["options"]
    assert options["farms_aspect"] == recorded


def test_a_bad_none_or_number_value_names_the_type(model, capsys):
    """argparse names the type it wanted ('invalid int value'), not the none-or-number wrapper's name."""
    with pytest.raises(SystemExit) as ei:
        main(["analyze", str(model), "--max-evals", "lots"])
    assert ei.value.code == 2
    assert capsys.readouterr().err.strip() == ("htsr: error: argument --max-evals: invalid int value: 'lots' "
                                               "(see 'htsr analyze --help')")


# a value flag given twice is refused: argparse had kept the last (--kinds dense --kinds embedding analysed the
# embeddings alone, the first filter dropped without a word); where one value says several, the error says how
@pytest.mark.parametrize("command, argv, message", [
    ("analyze", ["--kinds", "dense", "--kinds", "embedding"],
     "--kinds is given twice: give it once: several kinds are one comma list (--kinds dense,conv2d)"),
    ("analyze", ["--layers", "a", "--layers", "b"],
     "--layers is given twice: give it once: several patterns are one regular expression ('a|b')"),
    ("analyze", ["--bootstrap", "200", "--bootstrap", "200"], "--bootstrap is given twice: give it once"),
    ("analyze", ["--out", "x", "--out", "y"], "--out is given twice: give it once"),
    ("compare", ["--metric", "alpha", "--metric", "D"], "--metric is given twice: give it once"),
])
def test_a_value_flag_given_twice_is_refused(model, capsys, command, argv, message):
    sources = [str(model)] * (2 if command == "compare" else 1)
    with pytest.raises(SystemExit) as ei:
        main([command, *sources, *argv])
    assert ei.value.code == 2
    assert capsys.readouterr().err.strip() == f"htsr: error: {message} (see 'htsr {command} --help')"


def test_repeatable_flags_stay_repeatable(model, capsys):
    """--split takes one rule a flag; a switch given twice is the switch."""
    assert main(["analyze", str(model), "--split", "big=a,b", "--split", "small=c,d", "--randomize", "--randomize",
                 "-q"]) == 0


@pytest.mark.parametrize("flag", ["--xmin", "--confidence", "--farms-aspect"])
def test_a_number_that_underflows_is_refused_as_typed(model, capsys, flag):
    """1e-400 reads as 0.0: refused in the words typed (it had said 'must be a positive number, got 0.0')."""
    with pytest.raises(SystemExit) as ei:
        main(["analyze", str(model), flag, "1e-400"])
    assert ei.value.code == 2
    assert capsys.readouterr().err.strip() == (f"htsr: error: argument {flag}: 1e-400 is too small for a "
                                               f"floating-point number (it reads as 0) (see 'htsr analyze --help')")


def test_the_bootstrap_note_gives_the_p_value_step(model, capsys):
    """--bootstrap 5: the p-value moves in steps of 1/5 = 0.2."""
    assert main(["analyze", str(model), "--bootstrap", "5"]) == 0
    assert "the p-value moves in steps of 0.2;" in capsys.readouterr().err


def test_out_summary_json_is_the_summary_without_the_rows(model, tmp_path):
    """summary.json's keys (the rows are layers.csv's)."""
    assert main(["analyze", str(model), "-q", "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert sorted(doc) == ["not_analysed", "num_tensors", "options", "path", "source", "summary"]


def test_a_report_named_htm_is_html_too(model, tmp_path):
    """The report's name may end .html or .htm."""
    assert main(["analyze", str(model), "-q", "--report", str(tmp_path / "r.htm")]) == 0
    assert (tmp_path / "r.htm").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


def test_the_warning_column_is_left_aligned_as_text():
    """Text columns (warning among them) are left-aligned, numbers right-aligned."""
    r = result_of([layer_row("a", warning="uncertain"), layer_row("b", warning="-")])
    assert format_table(r, ["name", "warning"]).splitlines() == ["name  warning", "a     uncertain", "b     -"]
    r = result_of([layer_row("a", status="ok"), layer_row("b", status="not_fitted: few")])
    assert format_table(r, ["name", "status"]).splitlines() == ["name  status", "a     ok", "b     not_fitted: few"]


# ------------------------------------------------------------- round 50's gaps (progress, streams, summary)


def test_the_progress_bar_follows_the_terminal_and_quiet(model, monkeypatch):
    """Without --progress or --no-progress the bar is on when stderr is a terminal (tqdm installed), off with
    --quiet or when stderr is a file; --quiet --no-progress agree and run. The default had only been seen off
    (pytest's stderr is no terminal)."""
    from htsr import cli

    seen = []
    real = cli.analyze
    monkeypatch.setattr(cli, "analyze", lambda source, **k: seen.append(k["progress"])
                        or real(source, **{**k, "progress": False}))  # (the choice recorded, no bar drawn)
    monkeypatch.setattr(cli, "_tqdm_available", lambda: True)

    class Terminal(io.StringIO):
        tty = True

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stderr", Terminal())
    for argv in ([], ["-q"], ["--no-progress"], ["-q", "--no-progress"], ["--progress"]):
        assert main(["analyze", str(model), *argv]) == 0, argv
    sys.stderr.tty = False  # stderr a file (2> log)
    assert main(["analyze", str(model)]) == 0
    assert seen == [True, False, False, False, True, False]


def test_every_bidirectional_control_is_escaped_in_the_cli_table():
    """The embeddings and overrides U+202A-U+202E and the isolates U+2066-U+2069 reorder what a terminal shows:
    each is printed as its escape, the last isolate (U+2069) as well as the first."""
    codes = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
    table = format_table(result_of([layer_row(f"a{chr(c)}b") for c in codes]), ["name"]).splitlines()
    assert [ln.rstrip() for ln in table[1:]] == [f"a\\u{c:04x}b" for c in codes]


def test_a_failed_flush_of_stdout_is_status_1_after_the_files(model, tmp_path, capsys, monkeypatch):
    """A stdout whose writes are buffered and fail at the flush (a redirect to a full disk): the files are
    written and the command exits 1 naming standard output; the flush's failure had only been seen on writes."""
    class Full(io.TextIOWrapper):
        full = False  # (from the first write: the buffer then holds what cannot be written)

        def write(self, s):
            self.full = True
            return super().write(s)

        def flush(self):
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().flush()

        def fileno(self):
            return 1

    monkeypatch.setattr(os, "dup2", lambda *a: None)  # (htsr's redirect of a failed stdout: pytest's left alone)
    stdout = Full(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        rc = main(["analyze", str(model), "--out", str(tmp_path / "o")])
    finally:
        stdout.full = False
    assert rc == 1 and capsys.readouterr().err.strip() == (
        "htsr: error: standard output: cannot write (No space left on device); the output files were written")
    assert sorted(os.listdir(tmp_path / "o")) == ["layers.csv", "summary.json"]


def test_main_puts_the_streams_error_handlers_back(model, monkeypatch):
    """main() escapes what a stream's encoding lacks while it runs; a program calling it gets its stdout back with
    the error handler it had ('strict' here), not htsr's backslashreplace."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["analyze", str(model)]) == 0
    assert sys.stdout is stdout and stdout.errors == "strict"


def test_numpys_runtime_warnings_stay_out_of_the_output(model, monkeypatch):
    """A RuntimeWarning raised during the run (numpy's overflow on an odd layer) is not shown: the layer's row
    says what became of it. Checked with every warning recorded around main()."""
    import warnings

    from htsr import cli

    real = cli.analyze

    def noisy(*a, **k):
        np.log(np.zeros(1))  # numpy's 'divide by zero encountered in log'
        return real(*a, **k)

    monkeypatch.setattr(cli, "analyze", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["analyze", str(model), "-q"]) == 0
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


# ------------------------------------------------------- round 64's gaps (summary counts, outputs, threads, help)


def test_the_cli_summary_puts_each_status_count_under_its_name():
    """layers / fitted / not fitted / skipped / failed, each its own count (1, 2, 3, 4 here: the tests had only
    seen counts that were equal to a neighbour's, 1 and 1 or 0 and 0)."""
    from htsr.cli import format_summary

    statuses = ["ok", *["not_fitted: few"] * 2, *["skipped: over max_evals"] * 3, *["failed: NaN or Inf"] * 4]
    r = result_of([layer_row(f"l{i}", status=s) for i, s in enumerate(statuses)])
    line = next(ln for ln in format_summary(r).splitlines() if ln.startswith("layers:"))
    assert line == "layers: 10  fitted: 1  not fitted: 2  skipped: 3  failed: 4"


def test_the_not_analysed_count_is_of_tensors_not_of_reasons(tmp_path, capsys):
    """Three bias vectors are one reason and three tensors: 'tensors not analysed: 3 of 4' (every case tried had
    one tensor per reason, so a count of the reasons had looked the same)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", **{"fc.weight": rng.standard_normal((60, 40)), "a.bias": np.zeros(60),
                                    "b.bias": np.zeros(60), "c.bias": np.zeros(40)})
    assert main(["analyze", str(tmp_path / "m.npz"), "--no-tails"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "tensors not analysed: 3 of 4: bias or norm buffer 3"


def test_htsr_without_a_command_says_so(capsys):
    """`htsr` alone (or only flags) is refused in one line naming what is missing, status 2, not run as analyze
    without a source."""
    with pytest.raises(SystemExit) as ei:
        main([])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err == "htsr: error: the following arguments are required: COMMAND (see 'htsr --help')\n"


def test_a_stdout_error_without_its_text_is_named_by_its_message(model, capsys, monkeypatch):
    """A failure of standard output with no strerror (an OSError raised with a message only) is named by that
    message, not 'None'."""
    stand_in_stdout(monkeypatch, OSError("the stream went away"))
    assert main(["analyze", str(model)]) == 1
    assert capsys.readouterr().err.strip() == "htsr: error: standard output: cannot write (the stream went away)"


def test_main_runs_in_a_thread_that_is_not_the_main_one(model, tmp_path):
    """main() called from a worker thread (a GUI or a server calling it) runs: it sets its SIGTERM handler only
    in the main thread, where Python allows it (elsewhere signal.signal raises ValueError)."""
    import threading

    saved = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (the default: main() would set its handler over it)
    got = []
    try:
        t = threading.Thread(target=lambda: got.append(main(["analyze", str(model), "-q", "--out",
                                                             str(tmp_path / "o")])))
        t.start()
        t.join(60)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert got == [0] and sorted(os.listdir(tmp_path / "o")) == ["layers.csv", "summary.json"]


def test_a_saved_run_given_as_a_model_is_named_as_one(model, tmp_path, capsys):
    """'htsr analyze RUN' of a folder --out wrote (or a --json document) had listed every weight format htsr reads
    (or called the .json an unknown format): it is named as a saved run, with what reads it; so is one given as
    --base, and to the API. compare reads it (its own test)."""
    assert main(["analyze", str(model), "--out", str(tmp_path / "run"), "--quiet", "--no-progress"]) == 0
    assert main(["analyze", str(model), "--json", "--quiet", "--no-progress"]) == 0
    (tmp_path / "run.json").write_text(capsys.readouterr().out)
    for run in (tmp_path / "run", tmp_path / "run.json"):
        want = (f"{run}: a run htsr saved (its results, not a model's weights): compare reads it as it is "
                "('htsr compare RUN1 RUN2'), and so does htsr.results.load_result")
        assert main(["analyze", str(run), "--no-progress"]) == 2
        assert capsys.readouterr().err == f"htsr: error: {want}\n"
        assert main(["analyze", str(model), "--base", str(run), "--no-progress"]) == 2
        assert capsys.readouterr().err == f"htsr: error: {want}\n"
        with pytest.raises(htsr.SourceError) as ei:
            htsr.analyze(run)
        assert str(ei.value) == want


@pytest.mark.parametrize("sig, rc, said", [(signal.SIGINT, 130, "htsr: interrupted"),
                                           (signal.SIGTERM, 143, "htsr: terminated")])
def test_the_command_stops_at_once_on_ctrl_c_whatever_its_layers_running(tmp_path, sig, rc, said):
    """The htsr command (htsr.cli:run): Ctrl-C or SIGTERM ends the process once its outputs are cleaned up, not when
    the layers running in worker threads are done (the interpreter's exit had joined them: 15 s on 4096-wide
    layers, and a second Ctrl-C there printed a traceback). Here each layer would take 60 s."""
    import time

    np.savez(tmp_path / "m.npz", **{f"l{i}.weight": np.random.default_rng(i).standard_normal((120, 80))
                                    for i in range(2)})
    script = ("import sys, time\nimport htsr.cli\nanalyze = sys.modules['htsr.analyze']\n"
              "real = analyze._layer_row\n"
              "def slow(lm, opts):\n    print('running', file=sys.stderr, flush=True)\n    time.sleep(60)\n"
              "    return real(lm, opts)\n"
              "analyze._layer_row = slow\n"
              f"sys.argv = ['htsr', 'analyze', {str(tmp_path / 'm.npz')!r}, '--out', {str(tmp_path / 'out')!r}]\n"
              "htsr.cli.run()\n")
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert child.stderr.readline() == "running\n"  # (a layer is running)
    t0 = time.perf_counter()
    child.send_signal(sig)
    assert child.wait(timeout=50) == rc  # (not the 60 s a layer runs; generous for a loaded machine)
    assert time.perf_counter() - t0 < 30 and child.stderr.read() == said + "\n"
    assert not (tmp_path / "out").exists()


def test_the_printed_summary_says_why_no_layer_has_a_trap_count(tmp_path, capsys):
    """--randomize where no layer has min_evals eigenvalues: the printed summary's trap count is n/a with the
    reason, as the report's (it had been a bare 'n/a', h46)."""
    p = _model(tmp_path / "small.safetensors", fitted=False)
    assert main(["analyze", str(p), "--randomize", "--no-progress"]) == 0
    assert ("layers with correlation traps: n/a (no layer randomised: none with min_evals eigenvalues, or LoRA "
            "updates only)") in capsys.readouterr().out
