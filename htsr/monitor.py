"""Alpha during training: record each layer's power-law exponent every N steps or epochs.

:class:`AlphaMonitor` is the framework-free core. Each :meth:`~AlphaMonitor.record` runs
:func:`htsr.analyze` on the live model, appends one CSV row per layer (the file is only ever appended
to, its header written once), keeps the history in memory, and watches the mean alpha of the monitored
layers: when it drops below ``threshold`` (2 by default, the HTSR boundary of over-training) it warns
with :class:`HtsrAlphaWarning` once per crossing, calls ``on_alert(record)`` and sets ``alert``.

Three ways to use it::

    mon = AlphaMonitor(model, "alpha.csv", every=100, unit="step")      # a plain PyTorch loop
    ...  mon.step(global_step)          # after each optimizer step
    ...  mon.epoch_end(epoch)           # or after each epoch (unit="epoch")

    trainer = lightning.pytorch.Trainer(callbacks=[lightning_callback("alpha.csv")])
    trainer = transformers.Trainer(..., callbacks=[hf_callback("alpha.csv", unit="step", every=50)])

The adapters import Lightning and transformers only when they are called; importing this module needs
neither. The analysis defaults to the cheap path (:data:`MONITOR_DEFAULTS`: no alternative-tail fits,
no SETOL, no Marchenko-Pastur fit), since the monitor records none of their columns; every option of
:func:`htsr.analyze` may be passed and is validated when the monitor is built, before training starts.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .analyze import Tally, _analyze, idle_option_error, idle_options, iter_layers, no_layer_error
from .errors import HtsrError, OptionError, OutputError, SourceError, listed, shown
from .figures import Panel, Series
from .io.torch import unwrapped
from .options import FITTED_ONLY, OPTION_SPECS, Options, acts_on, describe_only, row_kinds, selected
from .specs import plain
from .results import csv_table, means_rows, temp_prefix
from .values import NanEqual

__all__ = ["AlphaMonitor", "MonitorRecord", "LayerAlpha", "HtsrAlphaWarning", "HtsrMonitorWarning", "CSV_COLUMNS",
           "MONITOR_DEFAULTS", "alpha_over_time", "load_history", "lightning_callback", "hf_callback"]

#: the columns of the monitor's CSV, one row per layer and record
CSV_COLUMNS = ("step", "epoch", "time", "layer", "kind", "alpha", "alpha_weighted", "log_spectral_norm", "D",
               "status")
#: analysis options the monitor changes from :func:`htsr.analyze`'s defaults (the user's own override them): the
#: columns these would compute are not recorded, and the three cost a third to a fifth of an analysis (measured
#: 2026-12-06: 8.8 → 5.9 ms for an MNIST MLP, 0.099 → 0.080 s for a BERT-base block)
MONITOR_DEFAULTS: dict[str, Any] = {"tails": False, "setol": False, "mp_fit": False}
UNITS = ("epoch", "step")
#: AlphaMonitor's own keyword arguments (beside the model, the CSV path and analyze's options)
_OWN_ARGS = ("every", "unit", "layers", "threshold", "on_alert")
NAN = float("nan")


class HtsrAlphaWarning(UserWarning):
    """The mean alpha of the monitored layers dropped below the monitor's threshold."""


class HtsrMonitorWarning(UserWarning):
    """The monitor's CSV could not be written for a record (kept, and written with a later one), or a monitored
    layer failed (NaN or Inf in its weights: training diverged?)."""


@dataclass(frozen=True, eq=False)
class LayerAlpha(NanEqual):
    """One layer at one record: what the CSV row holds besides step, epoch and time."""

    name: str
    kind: str
    alpha: float
    alpha_weighted: float
    log_spectral_norm: float
    D: float
    status: str


#: the numbers a record keeps per layer (what alpha_over_time can draw)
_RECORDED = tuple(f.name for f in dataclasses.fields(LayerAlpha) if f.type == "float")


@dataclass(frozen=True, eq=False)
class MonitorRecord(NanEqual):
    """One analysis of the model during training.

    ``alert`` is True on the record where the mean alpha crossed below the threshold (the one that
    warned and called ``on_alert``); ``seconds`` is what the analysis took (NaN when read back from a CSV).
    """

    step: int | float | None
    epoch: int | float | None
    time: float  # Unix time at the record
    layers: tuple[LayerAlpha, ...]
    mean_alpha: float  # over the rows a summary's means average (results.means_rows) with a finite alpha, or NaN
    alert: bool = False
    seconds: float = NAN

    def rows(self) -> list[dict[str, Any]]:
        """The record's CSV rows as dicts (values typed, not yet formatted)."""
        return [{"step": self.step, "epoch": self.epoch, "time": self.time, "layer": r.name, "kind": r.kind,
                 "alpha": r.alpha, "alpha_weighted": r.alpha_weighted, "log_spectral_norm": r.log_spectral_norm,
                 "D": r.D, "status": r.status} for r in self.layers]


def _mean_alpha(layers: Iterable[LayerAlpha]) -> float:
    """The mean of the finite alphas over the rows a model summary averages (:func:`~htsr.results.means_rows`):
    of a LoRA model (a PeftModel: ``#delta``, ``#base`` and ``#merged`` rows), its updates'."""
    _, rows = means_rows(list(layers))
    vals = [r.alpha for r in rows if math.isfinite(r.alpha)]
    return math.fsum(vals) / len(vals) if vals else NAN


def _averaged(layers: Iterable[LayerAlpha]) -> frozenset[str]:
    """The names of the rows :func:`_mean_alpha` averages, those with a finite alpha: a record whose set differs
    from the last judged one's (a LoRA added, a layer frozen out by ``layers``, a layer fitted at last or zeroed by
    pruning) has a mean of other rows, not a moved one (a layer leaving the mean had raised an alert with no alpha
    changed)."""
    return frozenset(r.name for r in means_rows(list(layers))[1] if math.isfinite(r.alpha))


def _judged(layers: Sequence[LayerAlpha], threshold: float, alert: bool, last: frozenset[str] | None
            ) -> tuple[float, bool, bool, bool, frozenset[str] | None]:
    """The alert rule, as the monitor applies it live and :func:`load_history` replays it: from the state of the
    latest record that judged (``alert``: its mean below ``threshold``; ``last``: the rows it averaged), a record's
    mean alpha, whether it crosses below the threshold, whether it averages other rows (a new start, no crossing),
    and the state after it (kept by a record that does not judge: :func:`_judges`)."""
    mean = _mean_alpha(layers)
    if not _judges(layers, mean):
        return mean, False, False, alert, last
    below, rows = mean < threshold, _averaged(layers)
    changed = last is not None and rows != last
    return mean, below and not alert and not changed, changed, below, rows


def _diverged(la: LayerAlpha) -> bool:
    """A layer whose weights hold NaN or Inf (training diverged): its row failed saying so."""
    return la.status.startswith("failed: NaN or Inf")


def _judges(layers: Sequence[LayerAlpha], mean: float) -> bool:
    """Whether a record's mean alpha moves the alert state: a finite mean, no layer diverged. A layer whose weights
    went NaN or Inf leaves the mean to the others, which may cross the threshold with no layer's alpha changed: no
    crossing (the divergence warns on its own). (A layer failing for another reason from the start, a zero-initialised
    one's 'all-zero matrix', is left out of every mean alike and judges nothing.)"""
    return math.isfinite(mean) and not any(_diverged(la) for la in layers)


def _counted(layers: Iterable[LayerAlpha]) -> str:
    """The rows :func:`_mean_alpha` averages, counted: '12 layer(s)', '3 update(s) (#delta rows)'."""
    over, rows = means_rows(list(layers))
    n = sum(math.isfinite(r.alpha) for r in rows)
    return {"all": f"{n} layer(s)", "delta": f"{n} update(s) (#delta rows)"}.get(over, f"{n} #merged row(s)")


def _below(mean: float, threshold: float) -> str:
    """``mean`` with 3 decimals, or as many more as show it below ``threshold`` (1.99996, not 2.000)."""
    for digits in range(3, 10):
        text = f"{mean:.{digits}f}"
        if float(text) < threshold:
            return text
    return repr(mean)




def _finite(v: Any) -> bool:
    """A finite number (not a bool, which is an int)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _check(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise OptionError(f"monitor option {name!r} must be {allowed}, got {shown(value)}")


class AlphaMonitor:
    """Record each layer's alpha of ``model`` every ``every`` steps or epochs.

    ``model``: a ``torch.nn.Module`` (or anything :func:`htsr.analyze` reads), analysed live; may be None
    and set later (``monitor.model = m``; the adapters do it). ``csv_path``: the CSV the records are
    appended to (None = keep them in memory only). ``every``/``unit``: :meth:`step` records on steps
    that are multiples of ``every`` when ``unit='step'``, :meth:`epoch_end` on epochs that are
    multiples of ``every`` when ``unit='epoch'``. ``layers``: a regular expression; only layers whose
    name matches (re.search) are analysed and averaged. ``threshold``: the mean alpha below which the
    monitor alerts. ``on_alert``: called with the :class:`MonitorRecord` that crossed below.
    ``options``: :func:`htsr.analyze` options over :data:`MONITOR_DEFAULTS`.

    A CSV that already holds records is continued: the monitor starts from its last record's alert state, so a
    resumed run does not alert twice for one crossing (give a new run a new CSV).

    A layer whose weights go NaN or Inf (training diverged?) warns :class:`HtsrMonitorWarning` naming it, once while
    it stays so; a record with such a layer moves no alert state (its mean is over the other layers).

    Every argument is checked here: a bad option raises :class:`~htsr.errors.OptionError`, a model with
    no layer matching ``layers`` a :class:`~htsr.errors.SourceError`, a CSV with another header or that cannot
    be written an :class:`~htsr.errors.OutputError`, all before training starts.
    """

    def __init__(self, model: Any = None, csv_path: str | os.PathLike | None = None, every: int = 1,
                 unit: str = "epoch", layers: str | None = None, threshold: float = 2.0,
                 on_alert: Callable[[MonitorRecord], Any] | None = None, **options: Any) -> None:
        every, threshold = plain(every), plain(threshold)  # (numpy scalars, as every analyze option takes them)
        _check(isinstance(every, int) and not isinstance(every, bool) and every >= 1, "every",
               "an integer >= 1", every)
        _check(unit in UNITS, "unit", "'epoch' or 'step'", unit)
        _check(_finite(threshold) and threshold > 1, "threshold",
               "a finite number above 1 (a fitted alpha always is: one of 1 or below would never alert)", threshold)
        _check(on_alert is None or callable(on_alert), "on_alert", "None or a callable", on_alert)
        # (a default that acts on no layer of the kinds monitored is left to analyze: mp_fit for LoRA rows; and
        # one that acts on fits only, where max_evals below min_evals fits none)
        defaults = {k: v for k, v in MONITOR_DEFAULTS.items() if acts_on(k, selected(options.get("kinds")))
                    and not (k in FITTED_ONLY and describe_only(options))}
        kwargs = {**defaults, **options, "layers": layers}
        self._given = frozenset(options)  # (the options the user gave, not the monitor's defaults)
        try:
            self.options = Options.create(**kwargs)  # OptionError here, before any training
        except OptionError as e:
            changed = [k for k in MONITOR_DEFAULTS if k not in options and f"'{k}'" in str(e)]
            if str(e).startswith("unknown option"):  # (the monitor's own arguments are not analyze's options)
                raise OptionError(f"{e}; and the monitor's own: {', '.join(_OWN_ARGS)}") from None
            if not changed:
                raise
            raise OptionError(f"{e} (the monitor turns {changed[0]} off, MONITOR_DEFAULTS: pass {changed[0]}=True)") from None
        self.every, self.unit, self.layers, self.threshold = every, unit, layers, float(threshold)
        self.on_alert = on_alert
        self.csv_path = None if csv_path is None else Path(csv_path)
        if self.csv_path is not None:
            self._check_csv()
        self._history: list[MonitorRecord] = []
        self._rows: frozenset[str] | None = None  # the rows averaged at the latest record that judged
        self._unwritten: list[MonitorRecord] = []  # records the CSV could not take yet (a file held by another program)
        self.alerts: list[MonitorRecord] = []  # the records that crossed below the threshold
        self.alert = False  # True while the latest finite mean alpha is below the threshold
        if self.csv_path is not None and self.csv_path.exists() and self.csv_path.stat().st_size > 0:
            # a resumed run appending to its CSV: the crossing the file holds already alerted
            for r in load_history(self.csv_path, self.threshold):
                self.alert, self._rows = _judged(r.layers, self.threshold, self.alert, self._rows)[3:]
        self._failed: set[str] = set()  # the layers diverged at the latest record (warned once per divergence)
        self.last_result = None  # the full AnalysisResult of the latest record
        self._model = None
        self._last_step: Any = None  # the latest step and epoch recorded at (recorded once)
        self._last_epoch: Any = None
        self._unrecorded = ""  # why the latest record could not be made (warned once while it stays so)
        if model is not None:
            self.model = model

    # the model --------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        """Bind the model, checking (without reading any weight) that some layer is monitored. A model wrapped
        for training (``DataParallel``, ``DistributedDataParallel``, ``torch.compile``) is monitored as the
        module it wraps, so its layers have the names of an unwrapped run's (not ``module.0``, ``_orig_mod.0``).
        Another model than the one bound starts afresh: no alert, no mean to cross from."""
        model = unwrapped(model)
        tally = Tally()
        description, _, layer_iter = iter_layers(model, self.options, tally)
        found = list(layer_iter)  # (lazy: no tensor has been read)
        kinds = row_kinds(found)
        if not kinds:  # (in analyze's words: why each tensor gave no row, --layers and kinds too)
            why = str(no_layer_error(description, tally, self.options))
            raise SourceError(why.replace(": no analysable layer: ", ": nothing to monitor: ", 1))
        # an option given that acts on none of its rows (the monitor's own defaults are not given: mp_fit=False on
        # an adapter's updates alone asks for nothing)
        if idle := idle_options(self.options, kinds, self._given):
            raise idle_option_error(description, idle[0], kinds, self.options)
        low, high = self.options.min_evals, self.options.max_evals
        if not any(low <= lm.num_evals and (high is None or lm.num_evals <= high) for lm in found):
            # (the output layer alone, min_evals above every layer's size: its mean is NaN at every record, and it
            # never alerts, which had been said nowhere; recording the norms alone is a use, so not refused. By the
            # shapes: a LoRA update's rank, below them, is known once its factors are read, at the first record)
            counts = sorted({lm.num_evals for lm in found})
            warnings.warn(HtsrMonitorWarning(
                f"{description}: no monitored layer has "
                + (f"from min_evals ({low}) to max_evals ({high})" if high is not None
                   else f"min_evals ({low}) or more") + " eigenvalues "
                f"(they have {listed(map(str, counts), 5)}): no layer is fitted, the mean alpha is NaN at every record "
                "and no alert fires; lower min_evals, or monitor other layers, to have one"), stacklevel=3)
        if self._model is not None and model is not self._model:  # (a k-fold loop's next model)
            self.alert, self._rows, self._failed = False, None, set()
        self._model = model

    def _start_fit(self, model: Any, bind: bool) -> None:
        """A training framework's fit starts (the adapters): its steps and epochs are counted anew, and the model
        it trains is bound unless the monitor was given one (a callback reused for the next fold's model)."""
        self._last_step = self._last_epoch = None
        if bind and model is not None:
            self.model = model

    # when to record ---------------------------------------------------------------------------------
    def should_record(self, n: int | float) -> bool:
        """Whether step or epoch ``n`` (in the monitor's unit) is a multiple of ``every``.

        Count completed units: epoch 1 is the end of the first epoch, step N the N-th optimizer step;
        0 (before training) records too, a baseline.
        """
        return float(n) % self.every == 0

    def records_at(self, unit: str, n: int | float) -> bool:
        """Whether a record falls at ``n`` counted in ``unit`` ('step' or 'epoch'): the monitor's unit, and a
        multiple of ``every`` (the adapters' stop decision is taken there, on every process alike)."""
        return unit == self.unit and self.should_record(n)

    def step(self, step: int, epoch: int | float | None = None) -> MonitorRecord | None:
        """Call after each optimizer step: records when ``unit='step'`` and ``should_record(step)``.

        A step already recorded (several batches per step with gradient accumulation) is not recorded again.
        """
        step = _counted_unit(step, "step")
        if not self.records_at("step", step) or step == self._last_step:
            return None
        return self._record(step, epoch)

    def epoch_end(self, epoch: int, step: int | None = None) -> MonitorRecord | None:
        """Call after each epoch, counted from 1: records when ``unit='epoch'`` and ``should_record(epoch)``."""
        epoch = _counted_unit(epoch, "epoch")
        if not self.records_at("epoch", epoch) or epoch == self._last_epoch:
            return None
        return self._record(step, epoch)

    # recording --------------------------------------------------------------------------------------
    def record(self, step: int | float | None = None, epoch: int | float | None = None) -> MonitorRecord | None:
        """Analyse the model now, append its rows to the CSV and check the threshold (always records; None, with a
        warning, when the model has no layer to record now). :meth:`step` and :meth:`epoch_end` do not record the
        step or epoch given here again (a baseline ``record(step=0)`` then ``step(0)`` of a first micro-batch)."""
        return self._record(step, epoch)

    def _record(self, step: Any, epoch: Any) -> MonitorRecord | None:
        """Called by the public methods only: the warning's stacklevel 3 is the line that called them."""
        if self._model is None:
            raise HtsrError("AlphaMonitor has no model: pass one or set monitor.model before recording")
        step, epoch = _plain(step, "step"), _plain(epoch, "epoch")
        where = ", ".join(f"{k} {_short(v)}" for k, v in (("step", step), ("epoch", epoch)) if v is not None)
        if step is not None:
            self._last_step = step
        if epoch is not None:
            self._last_epoch = epoch
        wall, t0 = time.time(), time.perf_counter()
        try:
            result = _analyze(self._model, self.options, check_idle=False)  # (checked when it was bound)
        except HtsrError as e:  # the model changed under the monitor (no layer matches 'layers' any more): the
            # training goes on (the exception had ended it), the alert state is kept
            why = str(e).replace(": no analysable layer: ", ": nothing to record: ", 1)
            if why != self._unrecorded:
                warnings.warn(HtsrMonitorWarning(f"no record{' at ' + where if where else ''}: {why}"), stacklevel=3)
            self._unrecorded = why
            return None
        self._unrecorded = ""
        layers = tuple(LayerAlpha(r.name, r.kind, r.alpha, r.alpha_weighted, r.log_spectral_norm, r.D, r.status)
                       for r in result.layers)
        mean, crossed, changed, alert, rows = _judged(layers, self.threshold, self.alert, self._rows)
        if changed:
            warnings.warn(HtsrMonitorWarning(
                f"the mean alpha{' at ' + where if where else ''} is over other rows than before ({_counted(layers)} "
                f"with an alpha; {len(rows - self._rows)} new, {len(self._rows - rows)} gone): its value, {mean:.3f}, "
                "is a new start, not a move across the threshold"), stacklevel=3)
        self.alert, self._rows = alert, rows  # (a record without any fitted layer, or with a failed one, keeps it)
        rec = MonitorRecord(step, epoch, round(wall, 3), layers, mean, crossed, time.perf_counter() - t0)
        self.last_result = result
        self._history.append(rec)
        if self.csv_path is not None:
            self._append_csv(rec)
        failed = [la for la in layers if _diverged(la)]
        new = [la for la in failed if la.name not in self._failed]
        self._failed = {la.name for la in failed}
        if new:  # (once per failure: a layer failing at every later record is not warned again)
            warnings.warn(HtsrMonitorWarning(
                f"{len(new)} layer(s) failed{' at ' + where if where else ''}: {listed((la.name for la in new), 5)} "
                f"({new[0].status.removeprefix('failed: ')}); the mean alpha is not checked against the threshold "
                "while a layer fails"), stacklevel=3)
        if crossed:
            self.alerts.append(rec)
            warnings.warn(HtsrAlphaWarning(
                f"mean alpha {_below(mean, self.threshold)} of {_counted(layers)} dropped below "
                f"{self.threshold:g}{' at ' + where if where else ''}: layers may be over-trained"),
                stacklevel=3)
            if self.on_alert is not None:
                self.on_alert(rec)
        return rec

    @property
    def history(self) -> list[MonitorRecord]:
        """The records so far, oldest first (a copy)."""
        return list(self._history)

    def mean_alphas(self) -> np.ndarray:
        return np.asarray([r.mean_alpha for r in self._history], dtype=np.float64)

    def panel(self, x: str | None = None, metric: str = "alpha", ylog: bool = False) -> Panel:
        """Alpha (or another recorded metric) per layer over the records; see :func:`alpha_over_time`."""
        return alpha_over_time(self._history, x=x or self.unit, threshold=self.threshold, metric=metric, ylog=ylog)

    # the CSV ----------------------------------------------------------------------------------------
    def _check_csv(self) -> None:
        """Before training: the CSV can be appended to (its folder written in, if it is new) and, if it
        has anything in it, is a monitor CSV."""
        path = self.csv_path
        if not path.parent.is_dir():
            raise OutputError(f"{path}: its folder does not exist")
        if path.is_dir():
            raise OutputError(f"{path}: is a folder, not a CSV file")
        if path.exists() and not path.is_file():  # a pipe would block the first record (and this check)
            raise OutputError(f"{path}: is not a regular file (a device, pipe or socket); choose a CSV file path")
        try:
            if path.exists():
                with open(path, "ab"):  # opened for appending, nothing written
                    pass
            else:  # a probe file beside it, as the first record will create it there
                fd, probe = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".probe")
                os.close(fd)
                os.unlink(probe)
        except OSError as e:
            raise OutputError(f"{path}: cannot be written ({e.strerror or e}); choose another file") from None
        if path.exists() and path.stat().st_size > 0:
            first = _first_line(path)
            if first != ",".join(CSV_COLUMNS):
                raise OutputError(f"{path}: exists and is not a monitor CSV (its header is {first[:80]!r}); "
                                  f"records are only ever appended, so choose another file")

    def _append_csv(self, rec: MonitorRecord) -> None:
        """Append the record's rows in one write (header first if the file is new or empty), then flush. A CSV
        that cannot be written now (held open by a spreadsheet on Windows, a full disk) does not stop the training
        it watches: the record is kept, a warning says so once, and the rows go in with the next record that can
        be written (the exception had ended the training run)."""
        pending = [*self._unwritten, rec]
        body = csv_table(None, ([row[c] for c in CSV_COLUMNS] for r in pending for row in r.rows()))
        try:
            # binary append: one write() of whole lines; O_APPEND puts it at the end even with another writer
            with open(self.csv_path, "ab") as f:
                if f.tell() == 0:
                    body = ",".join(CSV_COLUMNS) + "\n" + body
                elif not _ends_with_newline(self.csv_path):  # a line cut short by a crash: start a new one
                    body = "\n" + body
                f.write(body.encode("utf-8"))
                f.flush()
        except OSError as e:
            if not self._unwritten:
                warnings.warn(HtsrMonitorWarning(
                    f"{self.csv_path}: cannot append the record ({e.strerror or e}); it is kept, and written with the "
                    "next record that can be (the training goes on)"), stacklevel=4)
            self._unwritten = pending
            return
        self._unwritten = []


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# reading back and the figure ----------------------------------------------------------------------------
def _first_line(path: Path, limit: int = 4096) -> str:
    """The file's first line (at most ``limit`` bytes: a binary file has no short one), undecodable bytes
    replaced."""
    with open(path, "rb") as f:
        return f.readline(limit).decode("utf-8-sig", errors="replace").rstrip("\r\n")


def _plain(v: Any, what: str) -> int | float | None:
    """A step or epoch as a plain Python number (numpy and torch scalars too: the CSV holds '0.25', never
    'np.float64(0.25)' or 'tensor(5)'); None stays None."""
    if v is None:
        return None
    if not isinstance(v, (int, float)) and hasattr(v, "item"):
        try:
            v = v.item()
        except (TypeError, ValueError, RuntimeError):  # not one number
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise OptionError(f"{what} must be a number or None, not {shown(v)}")
    return int(v) if isinstance(v, int) else float(v)


def _counted_unit(v: Any, what: str) -> int | float:
    """The step or epoch given to :meth:`AlphaMonitor.step` / :meth:`~AlphaMonitor.epoch_end`: a finite number."""
    n = _plain(v, what)
    if n is None or not math.isfinite(n):
        raise OptionError(f"{what} must be a finite number (the {what}s done), not {shown(v)}")
    return n


def _short(v: int | float) -> str:
    """A step or epoch for a message: a float to 4 significant digits, never fewer than its integer part has
    (step 12345.0 is '12345', not '1.234e+04'; epoch 1.125 stays '1.125')."""
    if isinstance(v, int) or not math.isfinite(v):
        return str(v)
    return f"{v:.{max(4, len(str(int(abs(v)))))}g}"


def _number(text: str) -> int | float | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def _float(text: str) -> float:
    return float(text) if text else NAN


def load_history(csv_path: str | os.PathLike, threshold: float = 2.0) -> list[MonitorRecord]:
    """The records of a monitor CSV, in file order (several monitors' runs appended are read as one).

    Rows belong to one record while (step, epoch, time) stays the same and no layer repeats; ``alert``
    is replayed with ``threshold`` by the live monitor's rule (a record averaging other rows than the last one
    judged is a new start, no crossing); ``seconds`` is NaN. The CSV does not record a monitor bound to another model
    (a k-fold loop's next fold), which starts afresh live: give each model its own CSV to replay it.
    """
    if not Path(csv_path).is_file():  # a pipe would block the read forever
        if not os.path.exists(csv_path):
            from .io.base import missing

            raise SourceError(missing(csv_path))
        raise SourceError(f"{csv_path}: not a monitor CSV (not a regular file)")
    first = _first_line(Path(csv_path))
    if first != ",".join(CSV_COLUMNS):  # read as bytes, bounded: a checkpoint given by mistake is not decoded
        raise SourceError(f"{csv_path}: not a monitor CSV (its header is {first[:80]!r})")
    with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        groups: list[tuple[tuple, list[LayerAlpha]]] = []
        for row in reader:
            if not row.get("layer") or None in row.values():
                continue  # an empty line, or one cut short by a crash (fields missing)
            key = (row["step"], row["epoch"], row["time"])
            try:
                la = LayerAlpha(row["layer"], row["kind"], _float(row["alpha"]), _float(row["alpha_weighted"]),
                                _float(row["log_spectral_norm"]), _float(row["D"]), row["status"])
                _number(row["step"]), _number(row["epoch"]), _float(row["time"])
            except ValueError:
                raise SourceError(f"{csv_path}: line {reader.line_num}: a number column holds text; fix or remove "
                                  "that line") from None
            if groups and groups[-1][0] == key and all(x.name != la.name for x in groups[-1][1]):
                groups[-1][1].append(la)
            else:
                groups.append((key, [la]))
    records: list[MonitorRecord] = []
    alert, rows = False, None
    for (step, epoch, t), layers in groups:  # (the alerts as the live monitor raised them: _judged; a run resumed
        # from an earlier checkpoint, its steps going back, continues the state, as a monitor built on the CSV does)
        mean, crossed, _, alert, rows = _judged(layers, threshold, alert, rows)
        records.append(MonitorRecord(_number(step), _number(epoch), _float(t), tuple(layers), mean, crossed))
    return records


def alpha_over_time(history: Sequence[MonitorRecord], x: str = "epoch", threshold: float = 2.0,
                    metric: str = "alpha", ylog: bool = False) -> Panel:
    """One line per layer: ``metric`` at each record against the step or epoch (``x``), the mean alpha
    over the layers (for ``metric='alpha'``), and the α = 2 line (and the threshold's, if another).

    When some record lacks the asked ``x``, the other unit is used, else the record's index. Layers that
    never have a finite value get no line (the panel's note names them). ``ylog``: a log y axis, for
    alphas from the 10s of an initialisation down to the 2s of a trained layer (values <= 0, a log norm below 0,
    are not drawn: the note names their layers).
    """
    _check(x in UNITS, "x", "'epoch' or 'step'", x)  # (a bare ValueError had escaped)
    _check(_finite(threshold), "threshold", "a finite number", threshold)
    _check(isinstance(ylog, bool), "ylog", "True or False", ylog)
    if metric not in _RECORDED:
        raise OptionError(f"metric must be one the monitor records ({', '.join(_RECORDED)}), got {metric!r}")
    other = "step" if x == "epoch" else "epoch"
    if history and all(getattr(r, x) is not None for r in history):
        xlabel = x
    elif history and all(getattr(r, other) is not None for r in history):
        x = xlabel = other
    else:
        x, xlabel = "", "record"
    xs = np.asarray([float(getattr(r, x)) if x else float(i) for i, r in enumerate(history)], dtype=np.float64)
    names: dict[str, None] = {}
    for r in history:
        for la in r.layers:
            names.setdefault(la.name, None)
    series, empty, unshown = [], [], []
    for name in names:
        y = np.full(len(history), NAN)
        for i, r in enumerate(history):
            for la in r.layers:
                if la.name == name:
                    y[i] = getattr(la, metric)
        if not np.isfinite(y).any():
            empty.append(name)
            continue
        if ylog and (y <= 0).any():  # (a log axis has no place for them: a log norm below 0)
            unshown.append(name)
            y = np.where(y > 0, y, NAN)
        if np.isfinite(y).any():
            series.append(Series("line", xs, y, name, f"series:{len(series)}"))
    if metric == "alpha" and series:
        series.append(Series("line", xs, np.asarray([r.mean_alpha for r in history], dtype=np.float64),
                             "mean", "mean"))
    if metric == "alpha":
        series.append(Series("hline", np.zeros(0), np.asarray([2.0]), "α = 2", "band"))
        if threshold != 2.0:
            series.append(Series("hline", np.zeros(0), np.asarray([float(threshold)]), f"alert at {threshold:g}",
                                 "threshold"))
    notes = []
    if not history:
        notes.append("no record yet")
    if empty:
        notes.append(f"no finite {metric}: {', '.join(empty)}")
    if unshown:
        notes.append(f"values <= 0 not drawn on the log axis: {', '.join(unshown)}")
    return Panel(f"{metric} per layer during training", xlabel, metric, tuple(series), ylog=ylog,
                 note="; ".join(notes))


# adapters ---------------------------------------------------------------------------------------------
def _check_callback(log_name: Any, stop_on_alert: Any) -> None:
    """A callback's own arguments, checked when it is made (not at the first record, inside the training)."""
    _check(isinstance(log_name, str) and log_name != "", "log_name", "a non-empty string", log_name)
    _check(isinstance(plain(stop_on_alert), bool), "stop_on_alert", "True or False", stop_on_alert)


def _monitor_from(monitor: AlphaMonitor | None, csv_path: Any, kw: dict[str, Any], own: str) -> AlphaMonitor:
    """A callback's monitor: the one given, or one built from the AlphaMonitor arguments ``kw`` (``own``: the
    callback's own arguments, which an unknown option's error lists too)."""
    if monitor is not None:
        if not isinstance(monitor, AlphaMonitor):  # (a CSV path given as monitor= had been an AttributeError)
            raise OptionError(f"monitor must be an AlphaMonitor, got {type(monitor).__name__}; give a CSV path as the "
                              "first argument (csv_path)")
        # (a typo of the callback's own beside monitor=)
        if unknown := [k for k in kw if k != "model" and k not in _OWN_ARGS and k not in OPTION_SPECS]:
            raise OptionError(f"unknown option {unknown[0]!r}; the callback's own: csv_path, model, monitor, {own}")
        if csv_path is not None or kw:
            raise OptionError("pass either monitor= or the AlphaMonitor arguments, not both")
        return monitor
    try:
        return AlphaMonitor(kw.pop("model", None), csv_path, **kw)
    except OptionError as e:
        if str(e).startswith("unknown option"):
            raise OptionError(f"{e}; and the callback's own: csv_path, model, monitor, {own}") from None
        raise


_LIGHTNING_CLASSES: dict[str, type] = {}


def _rebuilt_callback(make_class: Callable[[Any], type], package: str, state: dict[str, Any]) -> Any:
    """A callback instance unpickled (Lightning's ddp_spawn, a process pool): its class made again from its
    training framework's package, its attributes as they were."""
    import importlib

    cb = object.__new__(make_class(importlib.import_module(package)))
    cb.__dict__.update(state)
    return cb


def _lightning_module(package: str | None):
    from .errors import MissingExtraError
    from .io.base import import_extra

    if package is None:
        try:
            return import_extra("lightning.pytorch", None, "the Lightning callback")
        except MissingExtraError as neither:  # the older package name, else the current one's pip line
            try:
                return import_extra("pytorch_lightning", None, "the Lightning callback")
            except MissingExtraError:
                raise neither from None
    if package not in ("lightning.pytorch", "lightning", "pytorch_lightning"):
        raise OptionError(f"package must be 'lightning.pytorch' or 'pytorch_lightning', got {package!r}")
    return import_extra("lightning.pytorch" if package.startswith("lightning") else package, None,
                        "the Lightning callback")


def _lightning_class(pl) -> type:
    if pl.__name__ in _LIGHTNING_CLASSES:
        return _LIGHTNING_CLASSES[pl.__name__]

    class HtsrLightningCallback(pl.Callback):
        """Records alpha with an :class:`AlphaMonitor` during ``Trainer.fit`` (on global rank 0 only)."""

        def __init__(self, monitor: AlphaMonitor, log_name: str, stop_on_alert: bool) -> None:
            super().__init__()
            self.monitor, self.log_name, self.stop_on_alert = monitor, log_name, stop_on_alert
            self._bind = monitor.model is None  # each fit's LightningModule, unless a model was given
            self._batches = 0  # batches of the current epoch done
            self._steps = -1  # trainer.global_step when the current batch started

        def __reduce__(self):  # (a class made in a function: pickled by how to make it again, for ddp_spawn)
            return _rebuilt_callback, (_lightning_class, pl.__name__, self.__dict__)

        def on_fit_start(self, trainer, pl_module) -> None:
            self.monitor._start_fit(pl_module, self._bind)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._batches = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._steps = trainer.global_step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self._batches = batch_idx + 1
            if trainer.global_step == self._steps:  # no optimizer step in this batch (gradient accumulation; the
                return  # first batch after a resume from a checkpoint, whose step was recorded before it was saved)
            if trainer.is_global_zero:  # global_step counts optimizer steps done
                n = trainer.num_training_batches  # the epoch as a fraction, as the HF Trainer reports it
                epoch = trainer.current_epoch + ((batch_idx + 1) / n if isinstance(n, int) and n > 0 else 0)
                self._after(pl_module, self.monitor.step(trainer.global_step, epoch=epoch), on_step=True)
            self._stop(trainer, "step", trainer.global_step)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            n = trainer.num_training_batches
            if isinstance(n, int) and self._batches < n:
                return  # stopped inside the epoch (max_steps, a stop): no epoch ended (it was recorded as one)
            if trainer.is_global_zero:
                rec = self.monitor.epoch_end(trainer.current_epoch + 1, step=trainer.global_step)
                self._after(pl_module, rec, on_step=False)
            self._stop(trainer, "epoch", trainer.current_epoch + 1)

        def _after(self, pl_module, rec: MonitorRecord | None, on_step: bool) -> None:
            if rec is not None and math.isfinite(rec.mean_alpha):  # to the progress bar and trainer.logger
                pl_module.log(self.log_name, rec.mean_alpha, on_step=on_step, on_epoch=not on_step,
                              batch_size=1, rank_zero_only=True)

        def _stop(self, trainer, unit: str, n: int) -> None:
            """With ``stop_on_alert``, after a record: every process stops when rank 0's monitor alerts (each
            calls this at the same steps — ``should_record`` of a step count they share —, as the decision
            is a collective; a stop on rank 0 alone left the others waiting for it)."""
            if self.stop_on_alert and self.monitor.records_at(unit, n):
                alert = trainer.is_global_zero and self.monitor.alert
                if trainer.strategy.reduce_boolean_decision(alert, all=False):
                    trainer.should_stop = True

    HtsrLightningCallback.__qualname__ = HtsrLightningCallback.__name__
    _LIGHTNING_CLASSES[pl.__name__] = HtsrLightningCallback
    return HtsrLightningCallback


def lightning_callback(csv_path: str | os.PathLike | None = None, *, monitor: AlphaMonitor | None = None,
                       stop_on_alert: bool = False, log_name: str = "htsr/mean_alpha", package: str | None = None,
                       **kw: Any):
    """A Lightning ``Callback`` recording alpha during ``fit``.

    ``kw`` are :class:`AlphaMonitor`'s arguments (``every``, ``unit``, ``layers``, ``threshold``,
    ``on_alert``, analysis options; the model is the ``LightningModule`` unless ``model=`` is given),
    or pass a ready ``monitor``. Steps are ``trainer.global_step`` (optimizer steps done), epochs
    ``current_epoch + 1``. Each record's mean alpha is logged with ``pl_module.log(log_name)`` (so it
    reaches ``trainer.logger`` and ``trainer.callback_metrics``); ``stop_on_alert`` sets
    ``trainer.should_stop`` while the mean is below the threshold. ``package``: 'lightning.pytorch'
    (default when installed) or 'pytorch_lightning', the one whose ``Trainer`` you use.
    The monitor is ``callback.monitor``.
    """
    pl = _lightning_module(package)
    _check_callback(log_name, stop_on_alert)
    return _lightning_class(pl)(_monitor_from(monitor, csv_path, kw, "stop_on_alert, log_name, package"), log_name,
                                bool(stop_on_alert))


_HF_CLASSES: dict[str, type] = {}


def _whole_epoch(epoch: float | None) -> int | None:
    """The Trainer's ``state.epoch`` at an epoch's end, as the whole epochs done; None inside an epoch (a run
    stopped by ``max_steps`` ends one there, at 0.375: recorded as epoch 0, the baseline before training)."""
    if epoch is None or not math.isfinite(epoch) or abs(epoch - round(epoch)) > 1e-6:
        return None
    return int(round(epoch))


def _hf_class(transformers) -> type:
    if "cls" in _HF_CLASSES:
        return _HF_CLASSES["cls"]

    class HtsrTrainerCallback(transformers.TrainerCallback):
        """Records alpha with an :class:`AlphaMonitor` during ``Trainer.train`` (on the main process only)."""

        def __init__(self, monitor: AlphaMonitor, log_name: str, stop_on_alert: bool) -> None:
            self.monitor, self.log_name, self.stop_on_alert = monitor, log_name, stop_on_alert
            self._bind = monitor.model is None  # each train()'s model, unless a model was given

        def __reduce__(self):  # (a class made in a function: pickled by how to make it again)
            return _rebuilt_callback, (_hf_class, transformers.__name__, self.__dict__)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.monitor._start_fit(model, self._bind)

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self._after(state, self.monitor.step(state.global_step, epoch=state.epoch))
            self._stop(args, state, control, "step", state.global_step)
            return control

        def on_epoch_end(self, args, state, control, **kwargs):
            epoch = _whole_epoch(state.epoch)
            if epoch is None:  # stopped inside an epoch (max_steps): no epoch ended
                return control
            if state.is_world_process_zero:
                self._after(state, self.monitor.epoch_end(epoch, step=state.global_step))
            self._stop(args, state, control, "epoch", epoch)
            return control

        def _after(self, state, rec: MonitorRecord | None) -> None:
            # the Trainer's own log entries have this shape: {metric: value, "epoch", "step"}; a record without a
            # fitted layer has no mean (NaN would make trainer_state.json invalid JSON)
            if rec is not None and math.isfinite(rec.mean_alpha):
                state.log_history.append({self.log_name: rec.mean_alpha, "epoch": state.epoch,
                                          "step": state.global_step})

        def _stop(self, args, state, control, unit: str, n: int) -> None:
            """With ``stop_on_alert``, after a record: every process stops when the main one's monitor alerts
            (rank 0's decision broadcast at the steps all of them share; a stop on rank 0 alone left the
            others waiting for it in their next collective)."""
            if not (self.stop_on_alert and self.monitor.records_at(unit, n)):
                return
            alert = state.is_world_process_zero and self.monitor.alert
            if getattr(args, "world_size", 1) > 1:
                import torch.distributed as dist

                if dist.is_available() and dist.is_initialized():
                    import torch

                    flag = torch.tensor([1.0 if alert else 0.0], device=args.device)
                    dist.broadcast(flag, src=0)
                    alert = bool(flag.item())
            if alert:
                control.should_training_stop = True

    HtsrTrainerCallback.__qualname__ = HtsrTrainerCallback.__name__
    _HF_CLASSES["cls"] = HtsrTrainerCallback
    return HtsrTrainerCallback


def hf_callback(csv_path: str | os.PathLike | None = None, *, monitor: AlphaMonitor | None = None,
                stop_on_alert: bool = False, log_name: str = "htsr_mean_alpha", **kw: Any):
    """A Hugging Face ``transformers.TrainerCallback`` recording alpha during ``Trainer.train``.

    ``kw`` are :class:`AlphaMonitor`'s arguments (the model is the Trainer's unless ``model=`` is given),
    or pass a ready ``monitor``. Steps are ``state.global_step``, epochs the whole ``state.epoch`` at an
    epoch's end. Each record appends ``{log_name: mean alpha, "epoch", "step"}`` to
    ``state.log_history`` (kept in ``trainer_state.json`` with the checkpoints); ``stop_on_alert`` sets
    ``control.should_training_stop`` while the mean is below the threshold. The monitor is
    ``callback.monitor``.
    """
    from .io.base import import_extra

    transformers = import_extra("transformers", None, "the Hugging Face Trainer callback")
    _check_callback(log_name, stop_on_alert)
    return _hf_class(transformers)(_monitor_from(monitor, csv_path, kw, "stop_on_alert, log_name"), log_name,
                                   bool(stop_on_alert))
