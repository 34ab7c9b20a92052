"""htsr.monitor: the training monitor's schedule, CSV, alert, layer filter, options, figure and adapters."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import htsr
from conftest import matrix_with_singular_values
from htsr.errors import HtsrError, OptionError, SourceError
from htsr.monitor import (CSV_COLUMNS, MONITOR_DEFAULTS, AlphaMonitor, HtsrAlphaWarning, HtsrMonitorWarning,
                          alpha_over_time, hf_callback, lightning_callback, load_history)

@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models train fastest on one thread; two spin-waiting threads on a busy 2-core machine are
    ~15x slower (measured: 7 vs 116 ms per MLP step). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FITTED = ("0", "2")  # 128x64 and 96x128: 64 and 96 eigenvalues; "4" (10x96) has 10 < min_evals, never fitted


def mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96), torch.nn.ReLU(),
                               torch.nn.Linear(96, 10))


def pareto_singular_values(m: int, alpha: float) -> np.ndarray:
    """√λ for λ the m mid-quantiles of a Pareto law of density exponent ``alpha`` (x_min = 1)."""
    u = (np.arange(m) + 0.5) / m
    return np.sqrt((1.0 - u) ** (-1.0 / (alpha - 1.0)))


def set_tail(model: torch.nn.Module, alpha: float) -> None:
    """Give every fitted layer an ESD whose tail is a power law of exponent ``alpha`` by construction.

    W = U diag(s) Vᵀ with orthonormal U, V has the ESD s² exactly (eigenvalues of WᵀW); s² here are the
    quantiles of a Pareto law with density ∝ λ^(−alpha), so the whole spectrum is that power law and the
    maximum-likelihood fit recovers alpha to within its standard error (alpha − 1)/√M (≈ 0.06 for 1.5,
    M = 64). Measured: 1.51 and 1.50 for alpha = 1.5; 4.04 and 4.03 for alpha = 4.
    """
    with torch.no_grad():
        for i, name in enumerate(FITTED):
            lin = model[int(name)]
            out, inp = lin.weight.shape
            W = matrix_with_singular_values(pareto_singular_values(min(out, inp), alpha), out, inp, seed=i)
            lin.weight.copy_(torch.from_numpy(W.astype(np.float32)))


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# schedule ---------------------------------------------------------------------------------------------
def test_every_n_steps_and_epochs():
    mon = AlphaMonitor(mlp(), None, every=3, unit="step")
    assert [n for n in range(10) if mon.should_record(n)] == [0, 3, 6, 9]
    recorded = [s for s in range(1, 11) if mon.step(s, epoch=0) is not None]
    assert recorded == [3, 6, 9]
    assert mon.step(9) is None  # the same optimizer step again (gradient accumulation): not twice
    assert mon.epoch_end(3) is None  # unit="step": epochs do not record
    assert [r.step for r in mon.history] == [3, 6, 9]

    mon = AlphaMonitor(mlp(), None, every=2, unit="epoch")
    # a fraction of an epoch is no multiple of every (4.5 is not epoch 4: truncating it had recorded mid-epoch);
    # a whole float or a numpy integer is
    assert not mon.should_record(4.5) and not mon.should_record(1.999)
    assert mon.should_record(4.0) and mon.should_record(np.int64(4))
    assert [e for e in range(1, 7) if mon.epoch_end(e, step=10 * e) is not None] == [2, 4, 6]
    assert mon.step(4) is None
    assert [(r.epoch, r.step) for r in mon.history] == [(2, 20), (4, 40), (6, 60)]
    mon.record(step=61)  # record() always records
    assert len(mon.history) == 4


# the CSV ----------------------------------------------------------------------------------------------
def test_csv_rows_header_once_appended_across_instances(tmp_path):
    path = tmp_path / "alpha.csv"
    model = mlp()
    first = AlphaMonitor(model, path, unit="step")
    for s in (1, 2):
        first.step(s)
    before = path.read_bytes()
    second = AlphaMonitor(model, path, unit="step")  # a resumed run: same file, new monitor
    for s in (3, 4, 5):
        second.step(s)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(before.decode())  # appended, never rewritten
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and lines.count(lines[0]) == 1
    # the header and one line per row, no empty line between records (csv.DictReader below skips empty lines, so
    # a newline put before every append, as for a line cut short, had gone unseen)
    assert len(lines) == 1 + 3 * 5 and all(lines)
    rows = read_rows(path)
    assert len(rows) == 3 * 5  # layers x records
    assert [r["step"] for r in rows] == [str(s) for s in (1, 2, 3, 4, 5) for _ in range(3)]
    assert [r["layer"] for r in rows[:3]] == ["0", "2", "4"]
    assert rows[2]["alpha"] == "" and rows[2]["status"].startswith("not_fitted")  # NaN as an empty field
    assert all(float(r["time"]) > 1.6e9 for r in rows)
    hist = first.history + second.history
    assert [(r.step, [x.name for x in r.layers]) for r in load_history(path)] == \
        [(r.step, [x.name for x in r.layers]) for r in hist]


def test_a_csv_held_by_another_program_does_not_stop_training(tmp_path, monkeypatch):
    """The CSV open in a spreadsheet (Windows refuses the append: PermissionError) at records 2 and 3: the
    exception had come out of step() and ended the training run. The records are kept, one warning says so, and
    record 4 writes all three in order."""
    import builtins

    from htsr import monitor as monitor_module
    from htsr.monitor import HtsrMonitorWarning

    path = tmp_path / "alpha.csv"
    mon = AlphaMonitor(mlp(), path, unit="step")
    held = {2, 3}

    def sometimes_refused(file, mode="r", *args, **kwargs):
        if os.fspath(file) == os.fspath(path) and "a" in mode and mon.history and mon.history[-1].step in held:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(monitor_module, "open", sometimes_refused, raising=False)
    mon.step(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon.step(2)
        mon.step(3)
    assert [w.category for w in caught] == [HtsrMonitorWarning]  # once, not at every refused record
    assert "Permission denied" in str(caught[0].message) and str(path) in str(caught[0].message)
    assert [r["step"] for r in read_rows(path)] == ["1"] * 3
    mon.step(4)
    assert [r["step"] for r in read_rows(path)] == [str(s) for s in (1, 2, 3, 4) for _ in range(3)]
    mon.step(5)  # the kept records went in with record 4: not again with record 5
    assert [r["step"] for r in read_rows(path)] == [str(s) for s in (1, 2, 3, 4, 5) for _ in range(3)]
    assert [r.step for r in load_history(path)] == [1, 2, 3, 4, 5]


def test_csv_of_another_kind_is_refused_before_training(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(HtsrError, match="not a monitor CSV"):
        AlphaMonitor(mlp(), path)
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(HtsrError, match="folder does not exist"):
        AlphaMonitor(mlp(), tmp_path / "missing" / "alpha.csv")


def test_a_cut_last_line_is_not_glued_to_the_next_record(tmp_path):
    path = tmp_path / "alpha.csv"
    mon = AlphaMonitor(mlp(), path)
    mon.record(epoch=1)
    with open(path, "a") as f:
        f.write("2,,17")  # a crash in the middle of a line
    mon.record(epoch=2)
    rows = read_rows(path)
    assert [r["epoch"] for r in rows if r["layer"]] == ["1"] * 3 + ["2"] * 3


def test_numpy_and_torch_steps_are_written_as_plain_numbers(tmp_path):
    """A training loop's counters are often numpy or torch scalars: the CSV holds '0.25' and '5' (not
    'np.float64(0.25)' or 'tensor(5)'), and load_history reads them back."""
    path = tmp_path / "alpha.csv"
    mon = AlphaMonitor(mlp(), path, unit="step")
    mon.step(np.int64(4), epoch=np.int64(1) / np.int64(4))
    mon.step(torch.tensor(5), epoch=torch.tensor(1.25))
    assert [(r["step"], r["epoch"]) for r in read_rows(path)][::3] == [("4", "0.25"), ("5", "1.25")]
    assert [(r.step, r.epoch) for r in load_history(path)] == [(4, 0.25), (5, 1.25)]
    assert all(type(r.step) is int and type(r.epoch) is float for r in mon.history)
    with pytest.raises(OptionError, match="step must be a number"):
        mon.record(step=np.arange(3))
    with pytest.raises(OptionError, match="epoch must be a number or None, not True"):
        mon.record(step=6, epoch=True)  # a bool is no count (it had been written as epoch 1)
    # read back with their types: whole steps as int (a float 4.0 compares equal to 4, hence `type`)
    assert [(type(r.step), type(r.epoch)) for r in load_history(path)] == [(int, float)] * 2


def test_a_csv_that_cannot_be_written_or_is_a_binary_file_is_refused_before_training(tmp_path, monkeypatch):
    import errno

    import htsr.monitor as monitor

    def read_only(**kw):  # a read-only mount (the probe, as the first record would, creates a file there)
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(monitor.tempfile, "mkstemp", read_only)
        with pytest.raises(HtsrError, match=r"alpha.csv: cannot be written \(Read-only file system\)"):
            AlphaMonitor(mlp(), tmp_path / "alpha.csv")
    assert list(tmp_path.iterdir()) == []
    import os

    if hasattr(os, "mkfifo"):  # a pipe: opening it to append would wait for a reader, forever
        os.mkfifo(tmp_path / "pipe.csv")
        with pytest.raises(HtsrError, match=r"pipe.csv: is not a regular file"):
            AlphaMonitor(mlp(), tmp_path / "pipe.csv")
        with pytest.raises(HtsrError, match=r"pipe.csv: not a monitor CSV \(not a regular file\)"):
            load_history(tmp_path / "pipe.csv")
    ckpt = tmp_path / "model.pth"  # the checkpoint given by mistake: a bounded look at its first bytes
    ckpt.write_bytes(b"PK\x03\x04\xff\xfe" + bytes(range(256)) * 64)
    for call in (lambda: AlphaMonitor(mlp(), ckpt), lambda: load_history(ckpt)):
        with pytest.raises(HtsrError, match="model.pth: .*not a monitor CSV"):
            call()


def test_load_history_names_the_file_of_a_line_with_text_in_a_number_column(tmp_path):
    path = tmp_path / "alpha.csv"
    AlphaMonitor(mlp(), path).record(step=1)
    with open(path, "a") as f:
        f.write("np.float64(0.25),,17.5,0,dense,2.5,1,1,0.1,ok\n")
    with pytest.raises(HtsrError, match=r"alpha.csv: line 5: a number column holds text"):
        load_history(path)


# the alert --------------------------------------------------------------------------------------------
def test_alert_fires_once_per_crossing_below_threshold():
    model = mlp()
    calls = []
    mon = AlphaMonitor(model, None, unit="step", on_alert=calls.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = mon.step(1)  # default init: alpha well above 2
        assert rec.mean_alpha > 2 and not mon.alert and not rec.alert
        set_tail(model, 1.5)
        rec = mon.step(2)
        assert all(x.alpha < 1.7 for x in rec.layers if x.name in FITTED)
        # (math.fsum / n against np.mean: rounding, within isclose's default rel_tol 1e-9)
        assert math.isclose(rec.mean_alpha, np.mean([x.alpha for x in rec.layers if x.name in FITTED]))
        assert rec.alert and mon.alert
        mon.step(3)  # still below: no second alert
        set_tail(model, 4.0)
        rec = mon.step(4)
        assert rec.mean_alpha > 3.5 and not mon.alert
        set_tail(model, 1.5)
        mon.step(5)  # a second crossing alerts again
    alerts = [w for w in caught if issubclass(w.category, HtsrAlphaWarning)]
    assert len(alerts) == 2 and "step 2" in str(alerts[0].message) and "step 5" in str(alerts[1].message)
    assert alerts[0].filename == __file__  # the warning points at the caller's line
    assert [r.step for r in calls] == [2, 5] and [r.step for r in mon.alerts] == [2, 5]
    assert [r.alert for r in mon.history] == [False, True, False, False, True]


def test_a_resumed_run_does_not_alert_again_for_a_crossing_its_csv_holds(tmp_path):
    """A run that crossed below, stopped and resumed appending to its CSV: the new monitor starts from the
    file's last record (still below: no second warning nor on_alert, as load_history replays one alert),
    and alerts again on a new crossing after the mean recovered."""
    model = mlp()
    set_tail(model, 1.5)
    path = tmp_path / "alpha.csv"
    with pytest.warns(HtsrAlphaWarning):
        AlphaMonitor(model, path, unit="step").step(1)
    calls = []
    resumed = AlphaMonitor(model, path, unit="step", on_alert=calls.append)
    assert resumed.alert
    with warnings.catch_warnings():
        warnings.simplefilter("error", HtsrAlphaWarning)
        resumed.step(2)
    set_tail(model, 4.0)
    resumed.step(3)
    set_tail(model, 1.5)
    with pytest.warns(HtsrAlphaWarning, match="step 4"):
        resumed.step(4)
    assert [r.step for r in calls] == [4]
    assert [r.step for r in load_history(path) if r.alert] == [1, 4]  # the file's own reading agrees


def test_a_model_wrapped_for_training_is_monitored_as_the_module_it_wraps():
    """DataParallel's and torch.compile's wrappers named every layer module.0 / _orig_mod.0, and a layers
    filter written for the model found nothing ("nothing to monitor")."""
    model = mlp()
    for wrapped in (torch.nn.DataParallel(model), torch.compile(model)):
        mon = AlphaMonitor(wrapped, None, layers="^0$")
        assert mon.model is model
        assert [r.name for r in mon.record().layers] == ["0"]
        # and analyze names them so too (it had given _orig_mod.0: a monitor CSV and a table did not join)
        r = htsr.analyze(wrapped, layers="^0$")
        assert [x.name for x in r.layers] == ["0"] and r.source == "<Sequential>"
        assert [x.alpha for x in r.layers] == [x.alpha for x in htsr.analyze(model, layers="^0$").layers]
    assert [x.name for x in htsr.analyze(torch.compile(torch.nn.DataParallel(model)), layers="^0$").layers] == ["0"]
    # a block wrapped or compiled on its own (per-block torch.compile), under a wrapped model or not: its layers'
    # names had kept '0.module' / '2._orig_mod'
    blocks = mlp()
    want = [(x.name, x.lambda_max) for x in htsr.analyze(blocks).layers]
    blocks[0], blocks[2] = torch.nn.DataParallel(blocks[0]), torch.compile(blocks[2])
    for wrapped in (blocks, torch.compile(blocks), torch.nn.DataParallel(blocks)):
        assert [(x.name, x.lambda_max) for x in htsr.analyze(wrapped).layers] == want


def test_no_alert_above_threshold():
    model = mlp()
    set_tail(model, 4.0)
    mon = AlphaMonitor(model, None, on_alert=lambda r: pytest.fail("alerted"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", HtsrAlphaWarning)
        for e in range(1, 4):
            rec = mon.epoch_end(e)
            assert 3.5 < rec.mean_alpha < 4.5  # fitted 4.04 and 4.03 (set_tail's docstring): ±0.5 margin
    assert not mon.alert and mon.alerts == []


def test_threshold_is_the_users():
    model = mlp()
    set_tail(model, 4.0)
    mon = AlphaMonitor(model, None, threshold=5.0)
    with pytest.warns(HtsrAlphaWarning, match="below 5"):
        mon.record(epoch=1)
    assert mon.alert


# layers and options -----------------------------------------------------------------------------------
def test_layers_regex_selects_what_is_recorded_and_averaged(tmp_path):
    model = mlp()
    set_tail(model, 4.0)
    with torch.no_grad():  # layer 2 heavy-tailed alone
        W = matrix_with_singular_values(pareto_singular_values(96, 1.5), 96, 128, seed=3)
        model[2].weight.copy_(torch.from_numpy(W.astype(np.float32)))
    path = tmp_path / "alpha.csv"
    mon = AlphaMonitor(model, path, layers=r"^2$")
    with pytest.warns(HtsrAlphaWarning):
        rec = mon.record(epoch=1)
    assert [x.name for x in rec.layers] == ["2"] and rec.mean_alpha < 2
    assert [r["layer"] for r in read_rows(path)] == ["2"]
    rec = AlphaMonitor(model, None, layers=r"^0$").record(epoch=1)  # the other layer: no alert
    assert [x.name for x in rec.layers] == ["0"] and rec.mean_alpha > 3.5
    with pytest.raises(SourceError, match=r"nothing to monitor: none of its 6 tensors matches the filters: 3 not "
                                          r"matched by option 'layers' \(0\.weight, …\)"):
        AlphaMonitor(model, None, layers="decoder")
    with pytest.raises(SourceError, match="none of its 2 tensors is a weight matrix htsr can read"):
        AlphaMonitor(torch.nn.LayerNorm(8), None)  # no filter: the message does not blame one
    # a kinds filter that leaves nothing: said so (it had said the Linear's weight was no weight matrix)
    with pytest.raises(SourceError) as ei:
        AlphaMonitor(torch.nn.Linear(100, 200), None, kinds="conv2d")
    assert str(ei.value) == ("<Linear>: nothing to monitor: none of its 2 tensors matches the filters: 1 kind dense "
                             "not in option 'kinds' (weight); 1 bias or norm buffer (bias)")


@pytest.mark.parametrize("kw, match", [
    (dict(tails="yes"), "tails"),
    (dict(xmni="ks"), "unknown option 'xmni'"),
    (dict(layers="("), "layers"),
    (dict(every=0), "every"),
    (dict(every=1.5), "every"),
    (dict(unit="batch"), "unit"),
    (dict(threshold=math.nan), "threshold"),
    (dict(threshold=True), "threshold"),  # a bool is no threshold (it had been taken as 1.0)
    (dict(every=True), "every"),  # nor a period (taken as every=1)
    (dict(on_alert="print"), "on_alert"),
    # a fitted alpha is always above 1: a threshold of 1 or below would never alert (h52)
    (dict(threshold=1.0), r"^monitor option 'threshold' must be a finite number above 1 \(a fitted alpha always is"),
    (dict(threshold=-3), "threshold"),
    # refused as needing mp_fit, which the monitor itself turned off: the message says so
    (dict(tw_margin=3.0), r"\(the monitor turns mp_fit off, MONITOR_DEFAULTS: pass mp_fit=True\)"),
    # mp_fit=False given by the user: the monitor turned nothing off, so no hint that it did
    (dict(mp_fit=False, tw_margin=3.0), r"otherwise it would change nothing$"),
])
def test_bad_options_raise_at_construction(kw, match):
    with pytest.raises(OptionError, match=match):
        AlphaMonitor(mlp(), None, **kw)
    with pytest.raises(OptionError, match=match):
        AlphaMonitor(None, None, **kw)  # no model yet: still checked when the monitor is built


def test_cheap_defaults_and_user_options():
    mon = AlphaMonitor(mlp(), None)
    for k, v in MONITOR_DEFAULTS.items():
        assert getattr(mon.options, k) == v
    mon.record(epoch=1)
    assert math.isnan(mon.last_result.layers[0].lr_exponential)  # tails off
    mon = AlphaMonitor(mlp(), None, tails=True, min_evals=10)
    rec = mon.record(epoch=1)
    assert all(math.isfinite(x.alpha) for x in rec.layers)  # min_evals=10: the 10x96 layer is fitted too
    assert math.isfinite(mon.last_result.layers[0].lr_exponential)


def test_no_model_yet():
    mon = AlphaMonitor(None, None)
    with pytest.raises(HtsrError, match="no model"):
        mon.record(epoch=1)
    mon.model = mlp()
    assert len(mon.record(epoch=1).layers) == 3


# the figure -------------------------------------------------------------------------------------------
def test_panel_data_equals_the_csv(tmp_path):
    path = tmp_path / "alpha.csv"
    model = mlp()
    mon = AlphaMonitor(model, path, every=2, unit="step")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    for step in range(1, 9):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        mon.step(step)
    panel = mon.panel()
    assert panel.xlabel == "step" and "no finite alpha: 4" in panel.note
    lines = {s.label: s for s in panel.series if s.kind == "line"}
    assert set(lines) == {"0", "2", "mean"}
    rows = read_rows(path)
    for name in FITTED:
        mine = [r for r in rows if r["layer"] == name]
        assert lines[name].x.tolist() == [float(r["step"]) for r in mine] == [2.0, 4.0, 6.0, 8.0]
        assert lines[name].y.tolist() == [float(r["alpha"]) for r in mine]  # repr round-trips exactly
    assert [s.y.tolist() for s in panel.series if s.kind == "hline"] == [[2.0]]
    from_file = alpha_over_time(load_history(path), x="step")
    assert [(s.label, s.x.tolist(), s.y.tolist()) for s in from_file.series] == \
        [(s.label, s.x.tolist(), s.y.tolist()) for s in panel.series]
    assert mon.panel(x="epoch").xlabel == "step"  # no epoch recorded: falls back to the step
    assert [s.y.tolist() for s in mon.panel(metric="D").series if s.label == "0"] == \
        [[float(r["D"]) for r in rows if r["layer"] == "0"]]
    with pytest.raises(OptionError, match="metric must be one the monitor records .alpha, alpha_weighted, "
                                          "log_spectral_norm, D., got 'log_norm'"):
        mon.panel(metric="log_norm")  # (an AttributeError escaped)
    assert alpha_over_time([]).note == "no record yet"


# import cost ------------------------------------------------------------------------------------------
def test_importing_the_monitor_needs_no_training_framework():
    code = ("import sys, htsr.monitor; bad = [m for m in ('lightning', 'pytorch_lightning', 'transformers', "
            "'torch', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# adapters ---------------------------------------------------------------------------------------------
def tensor_data(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_lightning_callback_records_during_fit(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(*callbacks, epochs=2, max_steps=-1):
        trainer = pl.Trainer(max_epochs=epochs, max_steps=max_steps, accelerator="cpu", devices=1,
                             callbacks=list(callbacks), logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensor_data()), batch_size=32)
        trainer.fit(Module(), loader)  # 8 optimizer steps per epoch
        return trainer

    with pytest.raises(OptionError, match="tails"):
        lightning_callback(tmp_path / "x.csv", tails="on")
    by_step = lightning_callback(tmp_path / "steps.csv", unit="step", every=3)
    by_epoch = lightning_callback(tmp_path / "epochs.csv")
    trainer = fit(by_step, by_epoch)
    assert [(r.step, r.epoch) for r in by_step.monitor.history] == [(3, 0.375), (6, 0.75), (9, 1.125), (12, 1.5),
                                                                    (15, 1.875)]
    assert [(r.step, r.epoch) for r in by_epoch.monitor.history] == [(8, 1), (16, 2)]
    assert len(read_rows(tmp_path / "steps.csv")) == 5 * 3 and len(read_rows(tmp_path / "epochs.csv")) == 2 * 3
    assert by_epoch.monitor.history[0].layers[0].name == "net.0"
    # (logged as a float32 tensor: rel ≤ 6e-8, within approx's default rel 1e-6)
    assert float(trainer.callback_metrics["htsr/mean_alpha"]) == pytest.approx(by_epoch.monitor.history[-1].mean_alpha)

    old_pl = pytest.importorskip("pytorch_lightning")  # the older package takes only its own callbacks
    assert isinstance(lightning_callback(None, package="pytorch_lightning"), old_pl.Callback)
    assert isinstance(by_step, pl.Callback) and not isinstance(by_step, old_pl.Callback)

    stopper = lightning_callback(None, threshold=100.0, stop_on_alert=True)  # any model is below 100
    with pytest.warns(HtsrAlphaWarning):
        trainer = fit(stopper, epochs=5)
    assert len(stopper.monitor.history) == 1 and trainer.current_epoch == 1

    # max_steps inside the second epoch: that epoch did not end (it was recorded as epoch 2 after 4 of 8 steps)
    cut = lightning_callback(None)
    fit(cut, epochs=3, max_steps=12)
    assert [(r.step, r.epoch) for r in cut.monitor.history] == [(8, 1)]


def test_hf_trainer_callback_records_during_train(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")

    class Net(torch.nn.Module):  # the Trainer takes any module whose forward returns the loss
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x, labels=None):
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
            return out

    class Data(torch.utils.data.Dataset):
        def __init__(self):
            self.x, self.y = tensor_data()

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    def train(callback, epochs=2, max_steps=-1):
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), report_to=[], num_train_epochs=epochs, max_steps=max_steps,
            per_device_train_batch_size=32, save_strategy="no", logging_strategy="no", use_cpu=True,
            disable_tqdm=True, remove_unused_columns=False)
        trainer = transformers.Trainer(model=Net(), args=args, train_dataset=Data(), callbacks=[callback])
        trainer.train()  # 8 optimizer steps per epoch
        return trainer

    with pytest.raises(OptionError, match="unit"):
        hf_callback(tmp_path / "x.csv", unit="batch")
    by_step = hf_callback(tmp_path / "steps.csv", unit="step", every=5)
    trainer = train(by_step)
    assert [(r.step, r.epoch) for r in by_step.monitor.history] == [(5, 0.625), (10, 1.25), (15, 1.875)]
    assert len(read_rows(tmp_path / "steps.csv")) == 3 * 3
    logged = [e for e in trainer.state.log_history if "htsr_mean_alpha" in e]
    assert [(e["step"], e["htsr_mean_alpha"]) for e in logged] == \
        [(r.step, r.mean_alpha) for r in by_step.monitor.history]
    assert by_step.monitor.history[0].layers[0].name == "net.0"

    by_epoch = hf_callback(tmp_path / "epochs.csv")
    train(by_epoch)
    assert [(r.step, r.epoch) for r in by_epoch.monitor.history] == [(8, 1), (16, 2)]

    stopper = hf_callback(None, unit="step", every=2, threshold=100.0, stop_on_alert=True)
    with pytest.warns(HtsrAlphaWarning):
        trainer = train(stopper, epochs=5)
    assert [r.step for r in stopper.monitor.history] == [2] and trainer.state.global_step == 2

    # max_steps inside an epoch: the Trainer ends it at state.epoch 0.375 (recorded as epoch 0, the baseline
    # before training) or 1.5 (as epoch 2)
    for max_steps, want in ((3, []), (12, [(8, 1)])):
        cut = hf_callback(None)
        train(cut, epochs=3, max_steps=max_steps)
        assert [(r.step, r.epoch) for r in cut.monitor.history] == want, max_steps

    # records without a fitted layer have no mean: not logged (a NaN made trainer_state.json invalid JSON)
    unfitted = hf_callback(None, unit="step", every=4, min_evals=5000)
    trainer = train(unfitted, epochs=1)
    assert len(unfitted.monitor.history) == 2 and all(math.isnan(r.mean_alpha) for r in unfitted.monitor.history)
    assert not [e for e in trainer.state.log_history if "htsr_mean_alpha" in e]
    json.dumps(trainer.state.log_history, allow_nan=False)


_DDP_SCRIPTS = {
    "lightning": """
import os, lightning.pytorch as pl, torch
from htsr.monitor import lightning_callback
class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96))
    def training_step(self, batch, i):
        return self.net(batch[0]).pow(2).mean()
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
if __name__ == "__main__":
    torch.manual_seed(0)
    cb = lightning_callback(None, unit="step", every=2, threshold=100.0, stop_on_alert=True)
    tr = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, callbacks=[cb], logger=False,
                    enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    data = torch.utils.data.TensorDataset(torch.randn(400, 64))
    tr.fit(M(), torch.utils.data.DataLoader(data, batch_size=10))
    with open(f"rank{tr.global_rank}.txt", "w") as f:  # a file each: two processes' prints interleave
        f.write(f"stopped at step {tr.global_step}")
    # as the HF script ends, below (Lightning's own destroy_process_group at exit left rank 0 aborted 1 run in 30,
    # and a process in 10): the barrier keeps either process from leaving before the other has written its file
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)
""",
    "hf": """
import os, torch, transformers
from htsr.monitor import hf_callback
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96))
    def forward(self, x, labels=None):
        return {"loss": self.net(x).pow(2).mean()}
class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 400
    def __getitem__(self, i):
        return {"x": torch.randn(64, generator=torch.Generator().manual_seed(i))}
torch.manual_seed(0)
cb = hf_callback(None, unit="step", every=2, threshold=100.0, stop_on_alert=True)
args = transformers.TrainingArguments(output_dir=os.environ["OUT"], per_device_train_batch_size=4, num_train_epochs=1,
                                      save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                                      remove_unused_columns=False, ddp_backend="gloo")
tr = transformers.Trainer(model=Net(), args=args, train_dataset=Data(), callbacks=[cb])
tr.train()
with open(f"rank{os.environ['RANK']}.txt", "w") as f:  # a file each: two processes' prints interleave
    f.write(f"stopped at step {tr.state.global_step}")
# as a DDP script ends: gloo's threads left to the interpreter's exit aborted it at times ("terminate called
# without an active exception", SIGABRT, after both ranks had stopped and written their files; 1 run in 8 with
# destroy_process_group alone): the process leaves without the interpreter's teardown
torch.distributed.destroy_process_group()
os._exit(0)
""",
}


@pytest.mark.parametrize("framework", ["lightning", "hf"])
def test_stop_on_alert_stops_every_process_of_a_ddp_run(tmp_path, framework):
    """Two CPU processes (gloo): the monitor runs on rank 0, and its alert now stops both at the same step;
    rank 0 alone stopped before, and the other died waiting for it ("Connection closed by peer")."""
    pytest.importorskip("lightning.pytorch" if framework == "lightning" else "accelerate")
    script = tmp_path / f"ddp_{framework}.py"
    script.write_text(_DDP_SCRIPTS[framework])
    with socket.socket() as sock:  # a free port: test sessions run side by side
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    launch = [sys.executable, str(script)] if framework == "lightning" else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, str(script)]
    # (TMPDIR: torch.distributed.run's log folder, torchelastic_*, is left behind in the temporary folder)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1", "MASTER_PORT": port,
           "TMPDIR": str(tmp_path / "tmp")}
    # a session of its own: on a timeout the launcher and its workers go together (killing the launcher alone
    # left its workers waiting for each other)
    proc = subprocess.Popen(launch, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["stopped at step 2"] * 2


def test_a_lora_model_s_mean_alpha_is_its_updates(tmp_path):
    """A PeftModel's rows are each adapted layer's #delta, #base and #merged: the frozen #base rows (and the
    #merged, close to them) held the mean where it started. The mean is over the updates."""
    peft = pytest.importorskip("peft")
    from htsr.monitor import _mean_alpha

    pm = peft.get_peft_model(mlp(), peft.LoraConfig(r=64, lora_alpha=64, target_modules=["0", "2"],
                                                    init_lora_weights=False))
    mon = AlphaMonitor(pm, tmp_path / "a.csv", every=1, unit="step")
    rec = mon.step(1)
    names = {la.name for la in rec.layers}
    assert {"0#delta", "0#base", "0#merged"} <= names
    deltas = [la.alpha for la in rec.layers if la.name.endswith("#delta") and math.isfinite(la.alpha)]
    # (fsum / 2 against sum / 2: rounding); the other rows' mean differs by ~65 %, far outside approx's 1e-6
    assert len(deltas) == 2 and rec.mean_alpha == pytest.approx(sum(deltas) / 2, rel=1e-12)
    # an alert counts the rows it averaged: 2 updates, not every row with an alpha
    with pytest.warns(HtsrAlphaWarning, match=r"of 2 update\(s\) \(#delta rows\) dropped below"):
        AlphaMonitor(pm, None, every=1, unit="step", threshold=100.0).step(1)
    assert rec.mean_alpha != pytest.approx(_mean_alpha([la for la in rec.layers if "#delta" not in la.name]))
    # rank 8 < min_evals: the updates are not fitted; the mean is the merged weights' (it was NaN: no alert)
    pm8 = peft.get_peft_model(mlp(), peft.LoraConfig(r=8, target_modules=["0", "2"], init_lora_weights=False))
    rec = AlphaMonitor(pm8, None, every=1, unit="step").step(1)
    merged = [la.alpha for la in rec.layers if la.name.endswith("#merged") and math.isfinite(la.alpha)]
    assert len(merged) == 2 and rec.mean_alpha == pytest.approx(sum(merged) / 2, rel=1e-12)  # (rounding)
    # and an alert over them counts them as #merged rows (not as layers, nor as updates)
    with pytest.warns(HtsrAlphaWarning, match=r"of 2 #merged row\(s\) dropped below"):
        AlphaMonitor(pm8, None, every=1, unit="step", threshold=100.0).step(1)


@pytest.mark.parametrize("framework", ["lightning.pytorch", "transformers"])
def test_the_callbacks_pickle_for_spawned_processes(tmp_path, framework):
    # Lightning's ddp_spawn (the multi-process strategy where there is no fork: Windows, macOS notebooks) pickles
    # the callbacks: their classes, made in a function, had failed ("attribute lookup … on htsr.monitor failed")
    import pickle

    from htsr.monitor import hf_callback, lightning_callback

    pytest.importorskip(framework)
    model = mlp()
    cb = (lightning_callback if framework == "lightning.pytorch" else hf_callback)(tmp_path / "a.csv", model=model,
                                                                                   stop_on_alert=True)
    back = pickle.loads(pickle.dumps(cb))
    assert type(back) is type(cb) and back.stop_on_alert and back.log_name == cb.log_name
    assert back.monitor.csv_path == cb.monitor.csv_path
    assert [x.name for x in back.monitor.record(0).layers] == ["0", "2", "4"]  # its own copy of the model


def test_a_monitor_csv_saved_with_a_bom_is_read_and_continued(tmp_path):
    # opened and saved in Excel ("CSV UTF-8"): a byte-order mark before the header, which had read as another
    # header ("not a monitor CSV")
    path = tmp_path / "alpha.csv"
    AlphaMonitor(mlp(), path, unit="step").step(1)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert [r.step for r in load_history(path)] == [1]
    AlphaMonitor(mlp(), path, unit="step").step(2)
    assert [r.step for r in load_history(path)] == [1, 2]


def test_the_alert_message_shows_a_mean_below_the_threshold():
    from htsr.monitor import _below

    assert _below(1.99996, 2.0) == "1.99996"  # not '2.000' ("mean alpha 2.000 ... dropped below 2")
    assert _below(1.5, 2.0) == "1.500"


def test_a_threshold_below_2_gets_its_own_line():
    from htsr.monitor import alpha_over_time

    roles = [s.role for s in alpha_over_time([], threshold=1.5).series]
    assert roles == ["band", "threshold"]
    assert [s.role for s in alpha_over_time([], threshold=2.0).series] == ["band"]


def test_a_mean_alpha_equal_to_the_threshold_does_not_alert():
    import warnings
    import torch
    from htsr.monitor import AlphaMonitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96))
    mean = AlphaMonitor(model, None).record().mean_alpha
    assert math.isfinite(mean)
    mon = AlphaMonitor(model, None, threshold=mean)  # "alerts when the mean drops below threshold"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = mon.record()
    assert rec.mean_alpha == mean and not rec.alert and not mon.alert


def test_a_record_without_a_fitted_layer_keeps_the_alert_state():
    import warnings
    import torch
    from htsr.monitor import AlphaMonitor, HtsrAlphaWarning

    torch.manual_seed(0)
    big = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 96))
    mon = AlphaMonitor(big, None, threshold=100.0)  # any model is below 100
    kept = [m.weight.detach().clone() for m in big[::2]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mon.record(step=1).alert
        with torch.no_grad():  # (all-zero weights: failed rows, not a divergence; no layer fitted)
            for m in big[::2]:
                m.weight.zero_()
        assert math.isnan(mon.record(step=2).mean_alpha)
        with torch.no_grad():
            for m, w in zip(big[::2], kept):
                m.weight.copy_(w)
        rec = mon.record(step=3)  # still below: the same crossing, no second alert
    assert not rec.alert and mon.alert
    assert len([w for w in caught if issubclass(w.category, HtsrAlphaWarning)]) == 1
    # mean_alphas() has one value per record, NaN kept where no layer was fitted (dropping it had shifted the
    # later means onto the wrong records)
    means = mon.mean_alphas()
    assert len(means) == len(mon.history) == 3 and math.isnan(means[1])
    assert means[[0, 2]].tolist() == [r.mean_alpha for r in mon.history if r.step != 2]


def test_the_mean_alpha_line_is_drawn_on_the_alpha_panel_only():
    from htsr.monitor import LayerAlpha, MonitorRecord, alpha_over_time

    hist = [MonitorRecord(s, None, 0.0, (LayerAlpha("l0", "dense", a, a, 1.0, d, "ok"),), a)
            for s, a, d in ((1, 4.0, 0.05), (2, 3.0, 0.04))]
    assert [s.role for s in alpha_over_time(hist, x="step", metric="alpha").series] == ["series:0", "mean", "band"]
    assert [s.role for s in alpha_over_time(hist, x="step", metric="D").series] == ["series:0"]


def test_a_resumed_run_starts_from_its_csvs_last_record_not_its_first(tmp_path):
    """The file crossed below at record 1 and recovered at record 2: the resumed monitor is not in alert, so a
    new crossing alerts (and a file whose last record is below starts in alert)."""
    model = mlp()
    path = tmp_path / "alpha.csv"
    first = AlphaMonitor(model, path, unit="step")
    set_tail(model, 1.5)
    with pytest.warns(HtsrAlphaWarning):
        first.step(1)
    set_tail(model, 4.0)
    first.step(2)
    resumed = AlphaMonitor(model, path, unit="step")
    assert not resumed.alert
    set_tail(model, 1.5)
    with pytest.warns(HtsrAlphaWarning, match="step 3"):
        resumed.step(3)
    assert AlphaMonitor(model, path, unit="step").alert  # its last record, step 3, is below


def _monitor_csv(path, lines: list[str]) -> None:
    path.write_text(",".join(CSV_COLUMNS) + "\n" + "".join(line + "\n" for line in lines))


def test_load_history_starts_a_record_where_a_layer_repeats_under_one_key(tmp_path):
    """Two records with the same (step, epoch, time) — manual record() calls without step or epoch within one
    millisecond, or two runs appended — are two records, split where a layer name repeats."""
    path = tmp_path / "alpha.csv"
    _monitor_csv(path, [",,100.0,a,dense,3.0,3.0,0.1,0.05,ok", ",,100.0,b,dense,5.0,5.0,0.1,0.05,ok",
                        ",,100.0,a,dense,1.0,1.0,0.1,0.05,ok", ",,100.0,b,dense,2.0,2.0,0.1,0.05,ok"])
    recs = load_history(path)
    assert [[la.name for la in r.layers] for r in recs] == [["a", "b"], ["a", "b"]]
    assert [r.mean_alpha for r in recs] == [4.0, 1.5]  # (exact: sums of two small binary fractions)
    assert [r.alert for r in recs] == [False, True]
    # replayed with the threshold given: both means are below 5, so the first record is the crossing
    assert [r.alert for r in load_history(path, threshold=5.0)] == [True, False]


def test_load_history_skips_a_line_cut_short_by_a_crash(tmp_path):
    """A line with fields missing (the process died mid-write) is no layer: not a row of NaN values and no
    status."""
    path = tmp_path / "alpha.csv"
    _monitor_csv(path, ["1,,100.0,a,dense,3.0,3.0,0.1,0.05,ok", "1,,100.0,b,dense"])
    (rec,) = load_history(path)
    assert [la.name for la in rec.layers] == ["a"] and rec.mean_alpha == 3.0
    assert rec.step == 1 and rec.epoch is None  # an empty epoch field is no epoch (not NaN)


def test_the_x_axis_is_the_record_index_when_neither_unit_is_in_every_record():
    """One record has no epoch and another no step: neither unit is an axis for all of them, so the panel is
    drawn against the record's index (not the unit some records have, which left a None to convert)."""
    from htsr.monitor import LayerAlpha, MonitorRecord

    la = LayerAlpha("l0", "dense", 3.0, 3.0, 1.0, 0.05, "ok")
    hist = [MonitorRecord(1, None, 0.0, (la,), 3.0), MonitorRecord(None, 1, 0.0, (la,), 3.0),
            MonitorRecord(2, 1, 0.0, (la,), 3.0)]
    panel = alpha_over_time(hist, x="epoch")
    assert panel.xlabel == "record"
    np.testing.assert_array_equal(panel.series[0].x, [0.0, 1.0, 2.0])


def test_the_alert_message_counts_the_layers_it_averaged():
    """Layer 4 of the MLP (10 eigenvalues) is not fitted: the mean is over the two fitted layers, and the warning
    says 2 layers, not the 3 rows."""
    model = mlp()
    set_tail(model, 1.5)
    with pytest.warns(HtsrAlphaWarning, match=r"^mean alpha 1\.\d{3} of 2 layer\(s\) dropped below 2 at step 1"):
        rec = AlphaMonitor(model, None, unit="step").step(1)
    assert len(rec.layers) == 3


# ------------------------------------------------------------------ mutation round 21 (2026-12-06)
def test_an_epoch_already_recorded_is_not_recorded_again():
    mon = AlphaMonitor(mlp(), None, every=1, unit="epoch")
    assert mon.epoch_end(1, step=8) is not None
    assert mon.epoch_end(1, step=8) is None  # the same epoch end reported twice: one record
    assert [r.epoch for r in mon.history] == [1]


def test_history_is_a_copy():  # (the docstring says "a copy")
    mon = AlphaMonitor(mlp(), None)
    mon.record(epoch=1)
    mon.history.clear()
    assert len(mon.history) == 1


def test_load_history_replays_a_record_without_a_fitted_layer_as_keeping_the_state(tmp_path):
    """As the live monitor does (test_a_record_without_a_fitted_layer_keeps_the_alert_state): a NaN mean between
    two below-threshold records is no recovery, so the file holds one crossing, not two."""
    path = tmp_path / "alpha.csv"
    _monitor_csv(path, ["1,,100.0,a,dense,1.0,1.0,0.1,0.05,ok", "2,,101.0,a,dense,,,0.1,0.05,not_fitted: few",
                        "3,,102.0,a,dense,1.0,1.0,0.1,0.05,ok"])
    recs = load_history(path)
    assert math.isnan(recs[1].mean_alpha)
    assert [r.alert for r in recs] == [True, False, False]


def test_last_result_is_the_latest_records_analysis():
    model = mlp()
    mon = AlphaMonitor(model, None, unit="step")
    mon.step(1)
    set_tail(model, 4.0)
    rec = mon.step(2)
    got = {x.name: x.alpha for x in mon.last_result.layers if x.name in FITTED}
    assert got == {x.name: x.alpha for x in rec.layers if x.name in FITTED}


def test_a_csv_with_another_header_is_refused_as_an_output_error(tmp_path):  # (as the class docstring says)
    from htsr.errors import OutputError

    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(OutputError, match="records are only ever appended, so choose another file"):
        AlphaMonitor(mlp(), path)
    assert path.read_text() == "a,b\n1,2\n"


def test_a_resumed_csv_whose_last_mean_equals_the_threshold_is_not_in_alert(tmp_path):
    path = tmp_path / "alpha.csv"
    _monitor_csv(path, ["1,,100.0,a,dense,2.0,2.0,0.1,0.05,ok"])  # mean exactly 2: not below 2
    assert not AlphaMonitor(mlp(), path).alert
    _monitor_csv(path, ["1,,100.0,a,dense,1.5,1.5,0.1,0.05,ok"])
    assert AlphaMonitor(mlp(), path).alert


# ------------------------------------------------------------------ mutation round 38 (2026-12-06)
def test_a_record_keeps_its_time_to_the_millisecond_and_how_long_it_took(tmp_path, monkeypatch):
    """The record's Unix time is kept with 3 decimals (in memory and in the CSV: load_history groups rows by it),
    and ``seconds`` is the analysis's duration: positive, NaN when read back."""
    import htsr.monitor as monitor_module

    path = tmp_path / "alpha.csv"
    mon = AlphaMonitor(mlp(), path)
    monkeypatch.setattr(monitor_module.time, "time", lambda: 1_700_000_000.4567)
    rec = mon.record(epoch=1)
    assert rec.time == 1_700_000_000.457  # round(t, 3): the nearest double of the decimal, as written
    assert {r["time"] for r in read_rows(path)} == {"1700000000.457"}
    assert 0 < rec.seconds < 60
    assert math.isnan(load_history(path)[0].seconds)


def test_the_alert_message_names_only_the_units_the_record_has():
    """A record at an epoch alone (a fraction, as the HF Trainer's) says 'at epoch 1.125', not 'step None'. A
    float step keeps its digits: 'step 12345', not the '1.234e+04' that four significant digits had made."""
    mon = AlphaMonitor(mlp(), None, threshold=100.0)  # any model is below 100
    with pytest.warns(HtsrAlphaWarning, match=r"dropped below 100 at epoch 1\.125: layers may be over-trained$"):
        mon.record(epoch=1.125)
    mon = AlphaMonitor(mlp(), None, threshold=100.0)
    with pytest.warns(HtsrAlphaWarning, match=r"below 100 at step 12345, epoch 0\.3333: layers may be over-"):
        mon.record(step=12345.0, epoch=1 / 3)


def test_the_monitors_panel_is_drawn_against_its_unit_with_its_threshold():
    """Records with both a step and an epoch: panel() is against the monitor's unit (the step here), and the
    user's threshold gets its line; mean_alphas() is every record's mean, oldest first."""
    mon = AlphaMonitor(mlp(), None, unit="step", threshold=1.5)
    mon.step(2, epoch=0.25)
    mon.step(4, epoch=0.5)
    panel = mon.panel()
    assert panel.xlabel == "step" and panel.series[0].x.tolist() == [2.0, 4.0]
    assert [s.role for s in panel.series][-2:] == ["band", "threshold"]
    assert [s.y.tolist() for s in panel.series if s.role == "threshold"] == [[1.5]]
    np.testing.assert_array_equal(mon.mean_alphas(), [r.mean_alpha for r in mon.history])
    assert len(mon.mean_alphas()) == 2
    assert mon.panel(ylog=True).ylog and not panel.ylog
    # a log axis has no place for values <= 0 (a log spectral norm below 0): they had been dropped without a word,
    # a layer's legend entry drawing nothing; not drawn still, and the note names the layers
    logs = {la.name: la.log_spectral_norm for la in mon.history[0].layers}
    low = sorted(n for n, v in logs.items() if v <= 0)
    assert low and len(low) < len(logs)  # (the MLP's last layer's small weights: below 0; the others above)
    p = mon.panel(metric="log_spectral_norm", ylog=True)
    assert p.note == f"values <= 0 not drawn on the log axis: {', '.join(low)}"
    assert all(np.all(np.isnan(s.y) | (s.y > 0)) for s in p.series)
    assert mon.panel(metric="log_spectral_norm").note == ""
    # bad arguments are htsr's one-line OptionError (a bare ValueError, a format error for a threshold of '2', a
    # ylog of 'no' taken: h52)
    with pytest.raises(OptionError, match=r"^monitor option 'x' must be 'epoch' or 'step', got 'batch'$"):
        mon.panel(x="batch")
    with pytest.raises(OptionError, match=r"^monitor option 'threshold' must be a finite number, got '2'$"):
        alpha_over_time(mon.history, threshold="2")
    with pytest.raises(OptionError, match=r"^monitor option 'ylog' must be True or False, got 'no'$"):
        mon.panel(ylog="no")


def test_a_layer_fitted_at_some_records_only_gets_its_line():
    """A layer NaN at one record (not fitted then) and finite at another is drawn (NaN where it had none);
    only a layer never finite is left to the note."""
    from htsr.monitor import LayerAlpha, MonitorRecord

    nan = math.nan
    hist = [MonitorRecord(1, None, 0.0, (LayerAlpha("a", "dense", nan, nan, 1.0, nan, "not_fitted: few"),
                                         LayerAlpha("b", "dense", nan, nan, 1.0, nan, "not_fitted: few")), nan),
            MonitorRecord(2, None, 0.0, (LayerAlpha("a", "dense", 3.0, 3.0, 1.0, 0.05, "ok"),
                                         LayerAlpha("b", "dense", nan, nan, 1.0, nan, "not_fitted: few")), 3.0)]
    panel = alpha_over_time(hist, x="step")
    (line,) = [s for s in panel.series if s.role.startswith("series")]
    assert line.label == "a" and np.array_equal(line.y, [nan, 3.0], equal_nan=True)
    assert panel.note == "no finite alpha: b"


def test_an_empty_csv_is_started_and_a_folder_is_refused_as_one(tmp_path):
    """An existing empty file (touched by a script before training) is no other program's CSV: the monitor
    writes its header and records there. A folder given as the CSV is refused as a folder."""
    from htsr.errors import OutputError

    path = tmp_path / "alpha.csv"
    path.write_bytes(b"")
    mon = AlphaMonitor(mlp(), path, unit="step")
    assert not mon.alert
    mon.step(1)
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert [r.step for r in load_history(path)] == [1]
    with pytest.raises(OutputError, match="is a folder, not a CSV file"):
        AlphaMonitor(mlp(), tmp_path)


def test_a_monitor_csv_saved_with_windows_line_ends_is_read_and_continued(tmp_path):
    """Opened and saved on Windows, every line ends in CRLF: its header had kept the CR and read as another
    header ('not a monitor CSV')."""
    path = tmp_path / "alpha.csv"
    path.write_bytes((",".join(CSV_COLUMNS) + "\r\n" + "1,,100.0,a,dense,1.5,1.5,0.1,0.05,ok\r\n").encode())
    (rec,) = load_history(path)
    assert rec.step == 1 and rec.mean_alpha == 1.5 and rec.alert
    mon = AlphaMonitor(mlp(), path, unit="step")
    assert mon.alert  # continued from its last record, below 2
    mon.step(2)
    assert [r.step for r in load_history(path)] == [1, 2]


def test_load_history_splits_records_of_one_step_by_their_time(tmp_path):
    """Two monitors over different layers appending to one CSV at the same step: two records (their times
    differ), not one record of both layers."""
    path = tmp_path / "alpha.csv"
    _monitor_csv(path, ["1,,100.0,a,dense,3.0,3.0,0.1,0.05,ok", "1,,101.0,b,dense,5.0,5.0,0.1,0.05,ok"])
    assert [([la.name for la in r.layers], r.time) for r in load_history(path)] == [(["a"], 100.0), (["b"], 101.0)]


def test_a_monitor_for_lora_rows_only_leaves_mp_fit_to_analyze():
    """kinds='lora': mp_fit acts on no LoRA row, so the monitor does not turn it off (Options refuses an option
    that would change nothing): the monitor is built."""
    mon = AlphaMonitor(None, None, kinds="lora")
    assert mon.options.kinds == frozenset({"lora"}) and not mon.options.tails and not mon.options.setol


def test_a_ready_monitor_and_monitor_arguments_are_not_both_taken():
    """lightning_callback(monitor=…, every=5), or a CSV path with monitor=: the every or the path would be dropped
    silently; refused. (Only the keyword arguments had been tried.)"""
    pytest.importorskip("lightning.pytorch")
    mon = AlphaMonitor(mlp(), None)
    with pytest.raises(OptionError, match="pass either monitor= or the AlphaMonitor arguments, not both"):
        lightning_callback(monitor=mon, every=5)
    # a CSV path beside a ready monitor (which keeps its own, here none): it would be ignored silently
    with pytest.raises(OptionError, match="pass either monitor= or the AlphaMonitor arguments, not both"):
        lightning_callback("alpha.csv", monitor=mon)
    assert lightning_callback(monitor=mon).monitor is mon


def test_the_callbacks_keep_a_model_given_to_the_monitor():
    """A monitor given model= watches that model: the Trainer's (or the LightningModule) is taken only when the
    monitor has none. HF's state.epoch at an epoch's end, a float sum such as 1.9999999999, is epoch 2."""
    from types import SimpleNamespace

    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("transformers")
    own, other = mlp(), mlp()
    hf = hf_callback(None, model=own)
    hf.on_train_begin(None, None, None, model=other)
    assert hf.monitor.model is own
    empty = hf_callback(None)
    empty.on_train_begin(None, None, None, model=other)
    assert empty.monitor.model is other
    third = mlp()  # (the callback reused for another Trainer's train(): its model)
    empty.on_train_begin(None, None, None, model=third)
    assert empty.monitor.model is third
    state = SimpleNamespace(epoch=1.9999999999, global_step=16, is_world_process_zero=True, log_history=[])
    hf.on_epoch_end(None, state, SimpleNamespace(should_training_stop=False))
    assert [(r.epoch, r.step) for r in hf.monitor.history] == [(2, 16)]
    pl_cb = lightning_callback(None, model=own)
    pl_cb.on_fit_start(None, other)
    assert pl_cb.monitor.model is own


def test_a_layer_that_fails_warns_by_name_and_raises_no_false_alert(tmp_path):
    """A layer whose weights went NaN or Inf (training diverged) failed silently: its alpha left the mean, which
    fell from over the threshold to under it with no alpha changed, and the monitor alerted 'layers may be
    over-trained' (on_alert, stop_on_alert …). The failure now warns, naming the layer, once while it lasts, and a
    record with a failed layer moves no alert state; a resumed run (its CSV replayed) reads it alike."""
    model = mlp()
    set_tail(model, 4.0)
    with torch.no_grad():  # layer 2 below the threshold, layer 0 above: the mean of both above it
        W = matrix_with_singular_values(pareto_singular_values(96, 1.5), 96, 128, seed=3)
        model[2].weight.copy_(torch.from_numpy(W.astype(np.float32)))
    calls, path = [], tmp_path / "alpha.csv"
    mon = AlphaMonitor(model, path, unit="step", threshold=2.5, on_alert=calls.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = mon.step(1)
        assert first.mean_alpha > 2.5 and not first.alert
        with torch.no_grad():
            model[0].weight[0, 0] = float("inf")
        second, third = mon.step(2), mon.step(3)
        with torch.no_grad():
            model[0].weight[0, 0] = 0.0
        fourth = mon.step(4)
    assert [x.status for x in second.layers if x.name == "0"] == ["failed: NaN or Inf in the weights"]
    assert second.mean_alpha < 2.5 and not second.alert and not third.alert and not mon.alerts and calls == []
    assert fourth.mean_alpha > 2.5 and not fourth.alert
    failures = [str(w.message) for w in caught if issubclass(w.category, HtsrMonitorWarning)]
    assert failures == ["1 layer(s) failed at step 2: 0 (NaN or Inf in the weights); the mean alpha is not checked "
                        "against the threshold while a layer fails"]
    assert not [w for w in caught if issubclass(w.category, HtsrAlphaWarning)]
    assert [r.alert for r in load_history(path, 2.5)] == [False] * 4
    assert not AlphaMonitor(model, path, unit="step", threshold=2.5).alert
    # a layer failing for another reason from the start (zero-initialised: 'all-zero matrix') judges nothing: the
    # alert is checked over the others, as before
    zero = mlp()
    set_tail(zero, 4.0)
    with torch.no_grad():
        zero[2].weight.copy_(torch.from_numpy(W.astype(np.float32)))
        zero[4].weight.zero_()
    mon = AlphaMonitor(zero, None, unit="step", threshold=3.0)
    with pytest.warns(HtsrAlphaWarning):
        assert mon.step(1).alert  # (mean (4.04 + 1.5) / 2 < 3)


def test_the_monitors_own_arguments_take_numpy_scalars_and_a_misspelt_one_is_named():
    """every=np.int64(5) and threshold=np.float32(2.0), a sweep's values, had been refused where every analyze
    option takes them; a misspelt monitor argument (evry=) had been answered with analyze's options alone."""
    mon = AlphaMonitor(mlp(), None, every=np.int64(5), threshold=np.float32(2.5))
    assert (mon.every, mon.threshold) == (5, 2.5) and type(mon.every) is int
    with pytest.raises(OptionError, match=r"^unknown option 'evry'.*; and the monitor's own: every, unit, layers, "
                                          r"threshold, on_alert$"):
        AlphaMonitor(mlp(), None, evry=5)


def test_a_callback_reused_for_the_next_fit_records_that_fits_model_and_epochs(tmp_path):
    """One callback in a k-fold loop (a Trainer per fold, the same callbacks list): the second fit's epoch 1 had been
    taken as recorded already, and its steps recorded the first fold's model. Each fit binds its own model, unless
    the monitor was given one, and counts its steps and epochs anew."""
    pl = pytest.importorskip("lightning.pytorch")

    class Module(pl.LightningModule):
        def __init__(self, seed):
            super().__init__()
            self.net = mlp()
            with torch.no_grad():  # (mlp() is seeded: each module its own first layer)
                self.net[0].weight.copy_(torch.randn(128, 64, generator=torch.Generator().manual_seed(seed)))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)  # (the weights stay the initial ones)

    def fit(cb, module, accumulate=1):
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, callbacks=[cb], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             accumulate_grad_batches=accumulate)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensor_data()), batch_size=32)
        trainer.fit(module, loader)  # 8 batches

    by_epoch, by_step = lightning_callback(None), lightning_callback(None, unit="step", every=4)
    modules = [Module(1), Module(2)]
    for m in modules:
        fit(by_epoch, m)
        fit(by_step, m)
    alone = [htsr.analyze(m.net).layers[0].alpha for m in modules]
    assert alone[0] != alone[1]
    assert [(r.epoch, r.layers[0].alpha) for r in by_epoch.monitor.history] == [(1, alone[0]), (1, alone[1])]
    assert [(r.step, r.layers[0].alpha) for r in by_step.monitor.history] == [
        (4, alone[0]), (8, alone[0]), (4, alone[1]), (8, alone[1])]
    # gradient accumulation: a batch without an optimizer step records nothing (step 0 had been recorded at the
    # first micro-batch, and so would a resumed run's restored step be, again)
    accum = lightning_callback(None, unit="step", every=2)
    fit(accum, Module(3), accumulate=2)
    assert [r.step for r in accum.monitor.history] == [2, 4]
    # a monitor given a model keeps it for every fit
    own = mlp()
    kept = lightning_callback(None, model=own)
    fit(kept, modules[0])
    assert kept.monitor.model is own


def test_a_baseline_record_is_not_recorded_again_by_the_first_micro_batch():
    """The docs' loop: record(step=0), then step(step) after each micro-batch; the first micro-batches (no
    optimizer step yet) had recorded step 0 twice."""
    mon = AlphaMonitor(mlp(), None, every=2, unit="step")
    mon.record(step=0)
    for micro in range(8):
        mon.step(micro // 2)  # 2 micro-batches per optimizer step
    assert [r.step for r in mon.history] == [0, 2]
    with pytest.raises(OptionError, match=r"^step must be a finite number \(the steps done\), not None$"):
        mon.step(None)
    with pytest.raises(OptionError, match=r"^epoch must be a finite number"):
        mon.epoch_end(float("nan"))


def test_a_model_that_changes_under_the_monitor_does_not_stop_training_nor_alert_falsely():
    """A LoRA added in place mid-training renames the rows ('0' becomes '0#delta', '0#base', '0#merged'): a monitor of
    layers='^0$' raised SourceError out of the training loop; one of every layer then averaged the updates alone and
    alerted, with no layer's alpha changed. Now the first warns and records nothing, the second starts anew."""
    peft = pytest.importorskip("peft")
    from htsr.monitor import HtsrMonitorWarning

    torch.manual_seed(0)
    model = mlp()
    narrow = AlphaMonitor(model, None, unit="step", layers="^0$")
    wide = AlphaMonitor(model, None, unit="step", threshold=5.0)
    assert narrow.step(1) is not None and not wide.step(1).alert  # (every layer's mean is above 5)
    peft.get_peft_model(model, peft.LoraConfig(r=64, lora_alpha=64, target_modules=["0", "2"],
                                               init_lora_weights=False))
    with pytest.warns(HtsrMonitorWarning, match=r"^no record at step 2: .*nothing to record: .*'layers'"):
        assert narrow.step(2) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (warned once while it stays so)
        assert narrow.step(3) is None
    assert len(narrow.history) == 1
    with pytest.warns(HtsrMonitorWarning, match=r"^the mean alpha at step 2 is over other rows than before \(2 "
                                                r"update\(s\) \(#delta rows\) with an alpha; 2 new, 2 gone\)") as caught:
        rec = wide.step(2)
    assert rec.mean_alpha < 5.0 and wide.alert and not rec.alert and wide.alerts == []  # (its updates' alphas)
    assert not any(issubclass(w.category, HtsrAlphaWarning) for w in caught)


@pytest.mark.parametrize("kw, match", [(dict(stop_on_alert="no"), "'stop_on_alert' must be True or False"),
                                       (dict(log_name=5), "'log_name' must be a non-empty string"),
                                       (dict(log_name=None), "'log_name' must be a non-empty string")])
def test_the_callbacks_own_arguments_are_checked_when_made(kw, match):
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("transformers")
    from htsr.monitor import hf_callback

    for make in (lightning_callback, hf_callback):
        with pytest.raises(OptionError, match=match):
            make(None, **kw)


def test_an_option_given_that_acts_on_no_row_is_refused_when_the_model_is_bound(tmp_path):
    """A LoRA adapter alone: its updates are analysed from their factors, so randomize=True would change nothing,
    and is refused when the model is bound (before training), as analyze refuses it; the monitor's own default
    mp_fit=False, which the user did not give, is no such option."""
    import json as json_

    from safetensors.numpy import save_file

    rng = np.random.default_rng(8)
    (tmp_path / "adapter_config.json").write_text(json_.dumps({"peft_type": "LORA", "r": 60, "lora_alpha": 60}))
    save_file({"base_model.model.m.lora_A.weight": rng.standard_normal((60, 150)).astype(np.float32),
               "base_model.model.m.lora_B.weight": rng.standard_normal((200, 60)).astype(np.float32)},
              str(tmp_path / "adapter_model.safetensors"))
    rec = AlphaMonitor(tmp_path, None, unit="step").record(step=0)
    assert rec is not None and math.isfinite(rec.mean_alpha)
    with pytest.raises(OptionError, match=r"option 'randomize' acts only on dense, .* layers, and this model has none "
                                          r"\(its rows are lora\)"):
        AlphaMonitor(tmp_path, None, unit="step", randomize=True)


def test_a_monitor_that_fits_no_layer_is_built_without_its_fit_only_defaults():
    """max_evals below min_evals lists every layer unfitted: the monitor's own tails=False and mp_fit=False act on
    fits only, and had been refused as options that would change nothing, with advice (pass tails=True) that
    led to the same refusal for mp_fit (h43). The user's own fit-only option is still refused."""
    model = {"fc.weight": np.random.default_rng(3).standard_normal((60, 30))}
    mon = AlphaMonitor(model, None, unit="step", max_evals=40)
    assert "tails" not in mon.options.as_dict() or mon.options.tails is True
    rec = mon.record(step=0)
    assert rec is not None and math.isnan(rec.mean_alpha)
    with pytest.raises(OptionError, match=r"^option 'bootstrap' acts only on fitted layers"):
        AlphaMonitor(model, None, unit="step", max_evals=40, bootstrap=200)


def test_a_layer_leaving_or_joining_the_mean_is_a_new_start_live_and_replayed(tmp_path):
    """A layer zeroed by pruning leaves the mean to the others: the mean fell from 7.5 to 3 with no alpha moved and
    an alert fired (h52); a layer fitted at last joins it likewise. The rows averaged are those with an alpha: a
    change is a new start (HtsrMonitorWarning), no crossing; load_history replays the same rule (it had reported
    an alert the live monitor never raised)."""
    model = mlp()

    def tail(i: int, alpha: float) -> None:
        lin = model[int(FITTED[i])]
        out, inp = lin.weight.shape
        W = matrix_with_singular_values(pareto_singular_values(min(out, inp), alpha), out, inp, seed=i)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.astype(np.float32)))

    tail(0, 3.0)
    tail(1, 12.0)
    csv_path = tmp_path / "alpha.csv"
    mon = AlphaMonitor(model, csv_path, unit="step", threshold=4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = mon.step(1)
        assert first.mean_alpha > 4.0 and not first.alert
        with torch.no_grad():
            model[int(FITTED[1])].weight.zero_()  # pruned: its row fails, 'all-zero matrix'
        second = mon.step(2)
        assert second.mean_alpha < 4.0 and not second.alert and mon.alerts == []
        tail(1, 12.0)  # back: it joins the mean again, above the threshold
        third = mon.step(3)
        assert third.mean_alpha > 4.0 and not third.alert and not mon.alert
        tail(0, 1.5)
        tail(1, 1.5)  # a crossing of the same rows: an alert
        assert mon.step(4).alert
    starts = [str(w.message) for w in caught if issubclass(w.category, HtsrMonitorWarning)]
    assert len(starts) == 2 and all("is a new start, not a move across the threshold" in m for m in starts)
    assert "(1 layer(s) with an alpha; 0 new, 1 gone)" in starts[0] and "1 new, 0 gone" in starts[1]
    assert [w for w in caught if issubclass(w.category, HtsrAlphaWarning)] != []
    assert [r.alert for r in load_history(csv_path, 4.0)] == [r.alert for r in mon.history] == [False, False, False, True]


def test_a_monitor_that_could_never_alert_says_so_and_bad_callback_arguments_are_refused(tmp_path):
    """A monitor of layers none of which can be fitted (the 10-eigenvalue output layer alone, min_evals above every
    layer's size) had been built and recorded NaN means for ever without a word: it warns when it binds the model
    (recording the norms alone is a use: not refused); monitor='alpha.csv' on a callback had raised a bare
    AttributeError, and a typo of the callback's own argument was answered with a list lacking it; load_history
    of a missing file said 'not a regular file' (h52)."""
    with pytest.warns(HtsrMonitorWarning, match=r"no monitored layer has min_evals \(50\) or more eigenvalues \(they "
                                                r"have 10\): no layer is fitted, the mean alpha is NaN at every record "
                                                r"and no alert fires"):
        AlphaMonitor(mlp(), None, layers="^4$")
    with pytest.warns(HtsrMonitorWarning, match=r"\(they have 10, 64, 96\)"):
        AlphaMonitor(mlp(), None, min_evals=500)
    with pytest.warns(HtsrMonitorWarning, match=r"no monitored layer has from min_evals \(50\) to max_evals \(40\)"):
        AlphaMonitor(mlp(), None, max_evals=40)  # (below min_evals: nothing is fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AlphaMonitor(mlp(), None, min_evals=64)  # one layer it can fit: no warning
    for make in (lightning_callback, hf_callback):
        with pytest.raises(OptionError, match=r"^monitor must be an AlphaMonitor, got str; give a CSV path as the "
                                              r"first argument \(csv_path\)$"):
            make(monitor="alpha.csv")
        with pytest.raises(OptionError, match=r"^unknown option 'stop_on_alerts'.*; and the callback's own: csv_path, "
                                              r"model, monitor, stop_on_alert, log_name"):
            make(stop_on_alerts=True)
        # beside monitor=: the typo named, not 'pass either monitor= or the AlphaMonitor arguments' (h54)
        with pytest.raises(OptionError, match=r"^unknown option 'stop_on_alrt'; the callback's own: csv_path, model, "
                                              r"monitor, stop_on_alert, log_name"):
            make(monitor=AlphaMonitor(mlp(), None), stop_on_alrt=True)
        with pytest.raises(OptionError, match=r"^pass either monitor= or the AlphaMonitor arguments, not both$"):
            make(monitor=AlphaMonitor(mlp(), None), every=2)
    with pytest.raises(SourceError, match=r"missing.csv: no such file or folder$"):
        load_history(tmp_path / "missing.csv")


def test_load_history_replays_a_run_resumed_from_an_earlier_checkpoint_as_it_ran(tmp_path):
    """Run 1 records steps 100 (above) and 200 (below: an alert); the run resumed from its step-150 checkpoint
    records 150, below: live, the monitor built on the CSV continues its state and does not alert again. The replay
    had started afresh where the steps went back (a rule for a k-fold loop's rebinding, which the CSV does not
    record) and reported an alert at 150 the monitor never raised (h59)."""
    csv_path = tmp_path / "alpha.csv"
    model = mlp()
    mon = AlphaMonitor(model, csv_path, unit="step", threshold=4.0)
    set_tail(model, 6.0)
    mon.record(step=100)
    set_tail(model, 1.5)
    assert mon.record(step=200).alert
    resumed = AlphaMonitor(model, csv_path, unit="step", threshold=4.0)
    assert not resumed.record(step=150).alert and resumed.alerts == []
    assert [(r.step, r.alert) for r in load_history(csv_path, 4.0)] == [(100, False), (200, True), (150, False)]
