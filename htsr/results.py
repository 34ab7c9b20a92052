"""Typed analysis results (frozen dataclasses) with one fixed schema, and their writers (CSV, JSON, pandas).

Every :class:`LayerResult` has every column of :data:`COLUMNS` whatever options ran; a value that is
undefined or was not computed is NaN and ``status`` says why. Files are written atomically: to a
temporary file in the target folder, then renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import io
import json
import math
import os
import stat
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence, TypeVar

import numpy as np

from .errors import OptionError, SourceError, described, listed
from .fits.uncertainty import MIN_WARNING_REPLICATES
from .metrics import METRICS, PLAUSIBLE_P
from .rmt.phases import PHASES
from .tensors import ROW_TAG
from .values import NanEqual

if TYPE_CHECKING:  # (pandas is an extra: imported where a table is made)
    import pandas

__all__ = ["LayerResult", "LayerSpectra", "NotAnalysed", "Summary", "AnalysisResult", "COLUMNS", "SUMMARY_METRICS", "atomic_write", "write_outputs", "csv_cell", "csv_table", "format_value", "json_safe", "load_result", "saved_result", "saved_run",
           "TABLE_COLUMNS", "phase_rows", "summary_rows", "table_columns", "text_table"]

NAN = float("nan")


@dataclass(frozen=True, eq=False)
class LayerResult(NanEqual):
    """One analysed matrix (or pooled conv layer). Field order is the column order."""

    name: str  # full dotted path of the module (tensor name without '.weight')
    kind: str  # dense | embedding | conv1d | conv2d | conv3d | rnn | stack | lora
    shape: str  # shape of the original tensor, e.g. '384x1536'
    N: int  # larger side of each matrix
    M: int  # smaller side of each matrix
    num_matrices: int  # matrices pooled into this row (conv kernel positions)
    num_evals: int  # eigenvalues in the ESD = M · num_matrices
    status: str  # 'ok', 'not_fitted: …', 'skipped: …', 'failed: …', 'fit_failed: …'
    warning: str  # over-trained | under-trained | uncertain | no-power-law | '' (see metrics.warning_for)
    eig_method: str  # svd64 | gram32 | gram64 (fast path in float64: refined, or out of float32 range) | lowrank64 | kron64
    num_evals_below_floor: float  # eigenvalues below the numerical floor of their computation
    alpha: float = NAN  # power-law exponent of the ESD tail density
    alpha_weighted: float = NAN
    log_alpha_norm: float = NAN
    log_norm: float = NAN
    log_spectral_norm: float = NAN
    lambda_max: float = NAN
    stable_rank: float = NAN
    matrix_rank: float = NAN
    entropy: float = NAN
    D: float = NAN  # KS distance of the fit
    sigma: float = NAN  # standard error of alpha, (α−1)/√n
    xmin: float = NAN
    xmax: float = NAN
    num_pl_spikes: float = NAN  # tail size n used by the fit
    num_fingers: float = NAN  # top eigenvalues dropped by clip_xmax or drop_top (NaN when off)
    raw_alpha: float = NAN  # alpha before clip_xmax or drop_top (NaN when off)
    num_fit_evals: float = NAN  # eigenvalues the tail fit saw (after the floor, less the largest drop_top and clip_xmax
    # left out; FARMS windows pooled)
    farms_windows: float = NAN  # FARMS windows pooled for the fit (NaN when farms_aspect is off)
    # x_min on the layer's own eigenvalues, at the tail share the windows' fit found (SETOL, localisation and
    # the figures use it: xmin is in the windows' units; NaN when farms_aspect is off)
    farms_xmin: float = NAN
    # Bayesian alpha at the fitted x_min (Gamma prior on α−1; Jeffreys by default)
    bayes_alpha: float = NAN  # posterior mean
    bayes_alpha_lo: float = NAN  # central credible interval at the `confidence` level
    bayes_alpha_hi: float = NAN
    p_alpha_lt_2: float = NAN  # posterior P(α < 2)
    p_alpha_gt_6: float = NAN  # posterior P(α > 6)
    # with bayes_average: the posterior averaged over every x_min candidate, weighted by its evidence
    bayes_avg_alpha: float = NAN  # posterior mean
    bayes_avg_alpha_lo: float = NAN  # central credible interval at the `confidence` level
    bayes_avg_alpha_hi: float = NAN
    # semi-parametric bootstrap (NaN unless bootstrap > 0)
    boot_alpha_lo: float = NAN  # basic bootstrap interval at the `confidence` level
    boot_alpha_hi: float = NAN
    boot_alpha_se: float = NAN  # standard deviation of the replicates' alpha
    pl_pvalue: float = NAN  # goodness of fit: share of replicates with √n*·D* ≥ √n·D (plausible if > 0.1)
    num_boot: float = NAN  # replicates whose refit succeeded
    # alternative tails (NaN unless tails is on)
    best_fit: str = ""  # power_law | exponential | lognormal | truncated_power_law (see fits.tails)
    lr_exponential: float = NAN  # Vuong R = ℓ_PL − ℓ_exp (> 0 favours the power law)
    p_exponential: float = NAN  # two-sided p of Vuong's test
    lr_lognormal: float = NAN
    p_lognormal: float = NAN
    lr_tpl: float = NAN  # ℓ_PL − ℓ_TPL (≤ 0; nested)
    p_tpl: float = NAN  # P(χ²₁ > 2|R|)
    tpl_alpha: float = NAN  # truncated power law λ^−α e^−Λλ at the fitted x_min
    tpl_Lambda: float = NAN
    etpl_alpha: float = NAN  # E-TPL: the same at the peak-bounded x_min
    etpl_Lambda: float = NAN
    etpl_xmin: float = NAN
    # Marchenko-Pastur baseline and phase (mp_fit; see htsr.rmt.mp and htsr.rmt.phases)
    phase: str = ""  # random-like | bleeding-out | bulk+spikes | bulk-decay | heavy-tailed | rank-collapse
    mp_sigma: float = NAN  # fitted entry standard deviation of W (weight units)
    mp_lambda_minus: float = NAN  # MP bulk edges, in the units of the ESD
    mp_lambda_plus: float = NAN
    mp_threshold: float = NAN  # spike threshold: edge plus tw_margin Tracy-Widom scales
    num_spikes: float = NAN  # eigenvalues above mp_threshold
    mp_softrank: float = NAN  # mp_lambda_plus / lambda_max
    mp_ks: float = NAN  # KS distance between the bulk and the fitted MP law
    num_zero_evals: float = NAN  # eigenvalues zero at float32 precision (rmt.num_zero_evals, rmt.mp.zero_level)
    num_heavy_entries: float = NAN  # entries beyond the BBP scale (NM)^(1/4)·mp_sigma
    # randomisation (randomize; see htsr.rmt.traps)
    rand_lambda_max: float = NAN  # largest eigenvalue of the element-shuffled matrices
    # the Marchenko-Pastur law of the shuffled matrices: of i.i.d. entries of the layer's own entry variance
    # (nothing fitted; WeightWatcher's rand_sigma_mp, rand_bulk_min, rand_bulk_max and rand_mp_softrank fit it)
    rand_mp_sigma: float = NAN  # the entries' standard deviation (weight units)
    rand_mp_lambda_minus: float = NAN  # its bulk edges, in the units of the ESD
    rand_mp_lambda_plus: float = NAN
    rand_mp_threshold: float = NAN  # the edge plus tw_margin Tracy-Widom scales: num_traps counts above it
    rand_mp_softrank: float = NAN  # rand_mp_lambda_plus / rand_lambda_max
    num_traps: float = NAN  # shuffled eigenvalues above the shuffled ESD's spike threshold
    rand_js_distance: float = NAN  # Jensen-Shannon distance (base 2) between the ESD and the shuffled ESD
    trap_weights: str = ""  # 'row,col' of the weight carrying each trap ('k:row,col' for pooled kernels)
    # SETOL (setol; see htsr.rmt.setol)
    num_erg: float = NAN  # ERG tail size (running log-sum of the mean-normalised spectrum drops below 0)
    erg_lambda_min: float = NAN  # lower edge of the ERG tail, mean-normalised
    erg_lambda_min_raw: float = NAN  # the same, in the units of the ESD
    erg_delta_lambda_min: float = NAN  # xmin (mean-normalised) - erg_lambda_min
    logq_free_cauchy: float = NAN  # layer quality, free Cauchy tail (alpha = 2): log10 lambda_max
    logq_levy_wigner: float = NAN  # Levy-Wigner tail (alpha < 2): (alpha - 1)·log10 lambda_max
    logq_inverse_mp: float = NAN  # inverse MP tail: 2·alpha·(log10 lambda_max - log10 xmin)
    # eigenvector localisation (localization; see htsr.rmt.localization)
    loc_pr_tail_mean: float = NAN  # participation ratio 1/sum v^4 of tail eigenvectors (lambda >= xmin)
    loc_pr_tail_std: float = NAN
    loc_pr_bulk_mean: float = NAN
    loc_pr_bulk_std: float = NAN
    loc_lr_tail_mean: float = NAN  # localisation ratio |v|_1/|v|_inf
    loc_lr_tail_std: float = NAN
    loc_lr_bulk_mean: float = NAN
    loc_lr_bulk_std: float = NAN
    loc_ent_tail_mean: float = NAN  # vector entropy: of the histogram of |v_i| in 100 bins (WeightWatcher's)
    loc_ent_tail_std: float = NAN
    loc_ent_bulk_mean: float = NAN
    loc_ent_bulk_std: float = NAN

    def as_dict(self) -> dict[str, Any]:
        """The row as a dict; counts (float fields so that they can be NaN) are ints where defined."""
        d = dataclasses.asdict(self)
        for k in COUNT_COLUMNS:
            v = d[k]
            if isinstance(v, float) and math.isfinite(v) and v == int(v):
                d[k] = int(v)
        return d


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LayerResult))
#: columns that count things: written as integers (NaN, the undefined value, stays NaN)
COUNT_COLUMNS = ("num_evals_below_floor", "matrix_rank", "num_pl_spikes", "num_fingers", "num_fit_evals",
                 "farms_windows", "num_boot", "num_spikes", "num_zero_evals", "num_heavy_entries", "num_traps",
                 "num_erg")
assert set(COUNT_COLUMNS) <= set(COLUMNS)
#: each column's pandas dtype, from LayerResult's annotations (counts are float fields so that they can be NaN)
COLUMN_DTYPES: dict[str, str] = {f.name: {"int": "int64", "float": "float64"}.get(str(f.type), "object")
                                 for f in dataclasses.fields(LayerResult)}
#: the columns a plot or a comparison can rank layers by
NUMERIC_COLUMNS: tuple[str, ...] = tuple(c for c, t in COLUMN_DTYPES.items() if t != "object")
assert {m.name for m in METRICS} <= set(COLUMNS)

#: metrics averaged in the model summary (finite values only)
SUMMARY_METRICS = ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm",
                   "stable_rank", "entropy", "D", "sigma", "bayes_alpha", "pl_pvalue", "mp_softrank",
                   "rand_js_distance", "erg_delta_lambda_min")


#: what a summary's means average over: every row; an adapter's updates (its ``#delta`` rows); the adapted
#: model's weights (its ``#merged`` rows, and rows of no tag)
MEANS_OVER = {"all": "layers", "delta": "the adapter's updates (#delta rows)",
              "merged": "the adapted weights (#merged rows)",
              # (phase_rows only: updates from factors have no phase)
              "adapted": "the updates that have one, and for those known by their factors the adapted weights "
                         "(#merged rows)"}


class _Named(Protocol):
    name: str
    alpha: float


_R = TypeVar("_R", bound=_Named)


def row_tag(name: str) -> str:
    """A row's adapter tag: 'delta', 'base' or 'merged' (``<module>#delta`` …), else ''."""
    return m["tag"] if (m := ROW_TAG.search(name)) else ""


def in_means(name: str, over: str) -> bool:
    """Whether the row ``name`` is one a summary's means average when they are over ``over`` (MEANS_OVER)."""
    return _tag_in_means(row_tag(name), over)


def _tag_in_means(tag: str, over: str) -> bool:
    return over == "all" or (tag == "delta" if over == "delta" else tag not in ("base", "delta"))


def means_rows(layers: Sequence[_R]) -> tuple[str, list[_R]]:
    """The rows a model's mean metrics average over, and their key in :data:`MEANS_OVER`. Every row, but of an
    adapter's rows (``<module>#delta``, and with ``--base`` ``#base`` and ``#merged``) the updates: the frozen
    base, and the merged weights close to it, would hold a mean where it started whatever the training did.
    When no update has a finite alpha (ranks below ``min_evals`` are not fitted) and the adapted weights are
    there, those: the ``#merged`` rows."""
    tags = [row_tag(r.name) for r in layers]
    fitted = any(math.isfinite(r.alpha) for r, t in zip(layers, tags) if t == "delta")
    merged = any(t not in ("base", "delta") for t in tags)
    over = ("delta" if "delta" in tags and (fitted or not merged) else
            "merged" if "base" in tags and merged else "all")
    return over, [r for r, t in zip(layers, tags) if _tag_in_means(t, over)]


def _module(name: str) -> str:
    """A row's module and item: its name without the adapter tag (``q#merged[2]`` → ``q[2]``)."""
    return ROW_TAG.sub(lambda m: m["item"], name)


def phase_rows(layers: Sequence[Any]) -> tuple[str, list[Any]]:
    """The rows the summary's phase and trap counts are over, and their key in :data:`MEANS_OVER`: those
    :func:`means_rows` picks; but of an adapter's updates those known by their factors (``lora`` rows) have no
    phase or shuffle, and each such module counts by its adapted weights instead (its ``#merged`` rows, with
    ``--base``), beside the updates of other kinds (a LyCORIS .diff) and the modules an adapter saves whole
    (untagged); key ``'adapted'`` then."""
    over, rows = means_rows(layers)
    factored = {_module(r.name) for r in rows if r.kind == "lora"}
    if over != "delta" or not factored:
        return over, rows
    return "adapted", [r for r in layers if (row_tag(r.name) == "delta" and r.kind != "lora") or row_tag(r.name) == ""
                       or (row_tag(r.name) == "merged" and _module(r.name) in factored)]


def summary_rows(layers: Sequence[Any]) -> str:
    """Which rows an adapter's summary counts and averages, in words ('' for a model's own rows)."""
    over, phased = means_rows(layers)[0], phase_rows(layers)[0]
    if over == "all":
        return ""
    if phased != over:
        return (f"the warnings, shares and means are over {MEANS_OVER[over]}; the phases and traps over "
                f"{MEANS_OVER[phased]}")
    return f"the warnings, shares, phases and means are over {MEANS_OVER[over]}"


@dataclass(frozen=True, eq=False)
class Summary(NanEqual):
    """Model summary: layer counts by status (of every row); the verdicts (warnings, shares) and each metric's mean
    (where it is finite) over the rows :func:`means_rows` picks (every one; an adapter's updates); the phases and
    traps over :func:`phase_rows` (an adapter's adapted weights)."""

    num_layers: int
    num_fitted: int
    num_not_fitted: int  # described but not fitted (too few eigenvalues, a rank-r update)
    num_skipped: int  # not analysed: over max_evals, an unchanged or unmatched delta, an unreadable tensor
    num_failed: int  # weights that could not be analysed (NaN/Inf, unreadable, all zero)
    num_under_trained: int
    num_over_trained: int
    num_uncertain: int  # the interval of alpha contains 2 or 6
    # bootstrap p <= 0.1, over the layers with at least MIN_WARNING_REPLICATES good replicates (NaN: none)
    num_no_power_law: int | float
    share_plausible_pl: float  # share of bootstrapped layers with p > 0.1 (NaN without bootstrap)
    share_best_fit_pl: float  # share of compared layers whose best_fit is the power law (NaN without tails)
    # layers per phase (every phase, 0 included; NaN when no layer has one: the MP fit was off)
    phases: dict[str, int | float] = field(default_factory=dict)
    num_with_traps: int | float = NAN  # layers with at least one correlation trap (NaN without randomize)
    means: dict[str, float] = field(default_factory=dict)
    means_over: str = "all"  # the rows the means average over: one of MEANS_OVER (see means_rows)

    @classmethod
    def of(cls, layers: Iterable[LayerResult]) -> "Summary":
        layers = list(layers)
        means_over, rows = means_rows(layers)
        phased = phase_rows(layers)[1]
        means = {}
        for m in SUMMARY_METRICS:
            vals = [getattr(r, m) for r in rows if math.isfinite(getattr(r, m))]
            means[m] = math.fsum(vals) / len(vals) if vals else NAN
        # the leading word: "ok; diagnostics failed: …" is a fitted layer whose extras failed
        status = [r.status.split(":")[0].split(";")[0].strip() for r in layers]
        return cls(
            num_layers=len(layers),
            num_fitted=status.count("ok"),
            # (a fit that could not be made, fit_failed — a fixed x_min above the spectrum, a flat tail — is a
            # layer not fitted; failed is a layer that could not be analysed: NaN weights, an unreadable tensor)
            num_not_fitted=status.count("not_fitted") + status.count("fit_failed"),
            num_skipped=status.count("skipped"),
            num_failed=status.count("failed"),
            # the verdicts, as the means, over the rows means_rows picks (an adapter's updates: its frozen base and
            # merged rows had been counted beside them, three views of one layer, while the means were the updates')
            num_under_trained=sum(r.warning == "under-trained" for r in rows),
            num_over_trained=sum(r.warning == "over-trained" for r in rows),
            num_uncertain=sum(r.warning == "uncertain" for r in rows),
            # over the layers whose p-value drives the warning (interval_of: enough good replicates)
            num_no_power_law=_count([r.warning == "no-power-law" for r in rows
                                     if math.isfinite(r.pl_pvalue) and r.num_boot >= MIN_WARNING_REPLICATES]),
            # (the same layers: a p-value of fewer replicates is too coarse to say, 0 or 1 from one)
            share_plausible_pl=_share([r.pl_pvalue > PLAUSIBLE_P for r in rows
                                       if math.isfinite(r.pl_pvalue) and r.num_boot >= MIN_WARNING_REPLICATES]),
            share_best_fit_pl=_share([r.best_fit == "power_law" for r in rows if r.best_fit]),
            phases={p: _count([r.phase == p for r in phased if r.phase]) for p in PHASES},
            num_with_traps=_count([r.num_traps > 0 for r in phased if math.isfinite(r.num_traps)]),
            means=means,
            means_over=means_over,
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update({phase_column(p): n for p, n in d.pop("phases").items()})
        d.update(d.pop("means"))
        return d


def phase_column(phase: str) -> str:
    """The summary column that counts a phase's layers: 'bulk+spikes' → 'num_bulk_spikes'."""
    return "num_" + phase.replace("+", "_").replace("-", "_")


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else NAN


def _count(flags: list[bool]) -> int | float:
    """How many of the layers a diagnostic ran on it flagged (an int, as the other counts); NaN when it
    ran on none."""
    return sum(flags) if flags else NAN


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float (NaN, ±inf) replaced by None, recursively: strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def temp_prefix(path: Path) -> str:
    """The start of the name of a temporary file beside ``path``: '.' and its name, cut to 180 bytes, so that a
    random part and a suffix fit in a file name's 255 (a 235-character report name had been refused as too long)."""
    name = os.fsencode(path.name)
    return "." + (path.name if len(name) <= 180 else os.fsdecode(name[:180])) + "."


def _temp_path(path: Path) -> Path:
    """A new name for the temporary file an atomic write of ``path`` makes beside it."""
    return path.parent / f"{temp_prefix(path)}{uuid.uuid4().hex}.tmp"


def _write_temp(path: Path, data: str | bytes) -> Path:
    """``data`` (text as UTF-8, or bytes) in a new temporary file beside ``path``; removed if writing fails."""
    tmp = _temp_path(path)
    # created like open() would (0666 less the umask), exclusively, so no other writer shares it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if isinstance(data, bytes):
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        else:
            # (a name no UTF-8 can spell — a lone surrogate a JSON header's \udcff escape made — is written
            # escaped: the outputs of a long analysis are not lost to one name)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
                f.write(data)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return tmp


def not_replaceable(path: Path) -> str:
    """Why the rename of an atomic write must not put a new file at ``path``, or '': an existing folder, or
    something other than a regular file (a device such as /dev/null, a pipe, a socket), which the rename
    would replace with a plain file. (A symbolic link is replaced by the new file; its target is left.)"""
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there (or a dangling link): a new file is made
        return ""
    if stat.S_ISDIR(mode):
        return "needs a file path, not a folder"
    if not stat.S_ISREG(mode):
        return ("is not a regular file (a device, pipe or socket), which writing the output would replace; "
                "choose a file path")
    return ""


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` via a temporary file in the same folder and an
    atomic rename. Raises OutputError if ``path`` is a folder or not a regular file (see :func:`not_replaceable`)."""
    from .errors import OutputError

    path = Path(path)
    if why := not_replaceable(path):
        raise OutputError(f"{path}: {why}")
    try:
        tmp = _write_temp(path, data)
    except OSError as e:  # (the temporary file's name is none the caller gave)
        raise OutputError(f"{path}: cannot write ({e.strerror or e}); check that its folder exists and is writable, "
                          "or choose another path") from None
    try:
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write ({e.strerror or e}); choose another path") from None
        raise


def write_outputs(outputs: Sequence[tuple[str, str | os.PathLike, str | bytes | None]]) -> list[Path]:
    """Write one run's outputs ``(flag, path, data)`` as a set: every one to a temporary file beside it
    first (missing folders made), then all renamed. If one cannot be written (disk full, a folder that
    cannot be made) none is, no temporary file or folder made for them is left, and the OutputError names
    its flag and path. ``data`` None: this run has no such output, and a file an earlier run left at
    ``path`` is removed once the others are in place (it would be taken for this run's). Returns the paths
    removed."""
    from .errors import OutputError

    done: list[tuple[Path, Path]] = []  # (temporary file, destination)
    made: list[Path] = []  # folders this call created, outermost first
    stale = [Path(path) for _, path, data in outputs if data is None]
    outputs = [o for o in outputs if o[2] is not None]
    flags = [flag for flag, _, _ in outputs]
    try:
        for flag, path, data in outputs:
            path = Path(path)
            if why := not_replaceable(path):
                raise OutputError(f"{flag} {path}: {why}")
            try:
                # noted before mkdir, which may make some of them and fail
                made += [f for f in reversed((path.parent, *path.parent.parents)) if not f.exists() and f not in made]
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{flag} {path}: cannot create the folder {path.parent} ({e.strerror or e}); "
                                  "no output was written") from None
            try:
                done.append((_write_temp(path, data), path))
            except OSError as e:
                raise OutputError(f"{flag} {path}: cannot write ({e.strerror or e}); no output was written") from None
        # another run writing to the same folders (a sweep's jobs given one --out) waits for this set: its
        # renames and ours do not interleave, and the folder holds one run's set, the last one's
        locks = _lock_folders({p.parent for _, p in done} | {p.parent for p in stale})
    except BaseException:
        for tmp, _ in done:
            os.unlink(tmp)
        for folder in reversed(made):  # innermost first; one that holds anything else stays
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    try:
        # (Ctrl-C between two renames, or before an earlier run's file is removed, would leave a mix of runs)
        with _signals_held():
            _rename_all(done, flags)
            removed = [p for p in stale if p.is_file() or p.is_symlink()]
            for p in removed:
                p.unlink()
    finally:
        for fd in locks:
            os.close(fd)  # (which releases its lock)
    return removed


def _lock_folders(folders: Iterable[Path]) -> list[int]:
    """An exclusive advisory lock (``flock``) on each existing folder, taken in sorted order (so two runs cannot each
    hold a folder the other waits for), held until its descriptor is closed; it is the folder's own, so no lock file
    is left in it. Where there is no ``flock`` (Windows) or the file system refuses it (some network mounts) the
    folder is not locked."""
    try:
        import fcntl
    except ImportError:
        return []
    fds: list[int] = []
    try:
        for folder in sorted(set(folders)):
            try:
                fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                continue  # (a stale file's folder that is gone: nothing of this set lands there)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM held back (delivered on exit) while the body runs, in the main thread: the renames of a
    set of outputs take microseconds, and all of them or none must happen."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # (only the main thread sets handlers)
        yield
        return
    pending: list[int] = []
    # (handlers, not a signal mask: a mask is per thread, and a signal goes to any thread that does not block it)
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])  # now, to the handler it had


def _rename_all(done: list[tuple[Path, Path]], flags: list[str]) -> None:
    """Each temporary file onto its destination; on a failure, the rest of the temporary files removed and the
    OutputError says which were replaced before it."""
    from .errors import OutputError

    for i, (tmp, path) in enumerate(done):
        try:
            os.replace(tmp, path)
        except BaseException as e:  # a rename in a folder just written to failing, or an interrupt between two
            for t, _ in done[i:]:
                if t.exists():
                    os.unlink(t)
            if not isinstance(e, OSError):
                raise
            kept = ", ".join(str(p) for _, p in done[:i]) or "none"
            raise OutputError(f"{flags[i]} {path}: cannot replace it ({e.strerror or e}); written before it: "
                              f"{kept}") from None


def check_outputs(inputs: Iterable[Any], outputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Before an analysis starts: every output ``(flag, path)`` can be written — its folder, or the nearest
    existing folder above it (missing folders are made when the output is written) — and none is a file
    the run reads (a source file, or a file in a source folder; for an opened source, also the files it
    says it reads, its ``input_files``: an ONNX model's external data). Nothing is created here. Raises
    OutputError naming the flag and the path."""
    from .errors import OutputError

    read: set[Path] = set()
    for src in inputs:
        read.update(Path(f).resolve() for f in getattr(src, "input_files", ()))
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            # (os.path's tests: pathlib's raise PermissionError on a path in a folder that may not be entered, which
            # opening the source reports in one line)
            if os.path.isdir(p):  # (but an earlier run's outputs beside a model's weights: 'htsr analyze ck --out ck' again)
                try:
                    read.update(q.resolve() for q in p.iterdir() if q.is_file() and not an_output(q))
                except OSError:  # an unreadable folder: opening it says so, in one line
                    pass
            elif os.path.exists(p):
                read.add(p.resolve())
    outputs = [(flag, Path(path)) for flag, path in outputs]
    resolved: dict[Path, Path] = {}
    for flag, path in outputs:
        loop = OutputError(f"{flag} {path}: a link in it leads round in a loop; choose another path")
        try:
            os.stat(path)  # (Python 3.13's resolve() no longer raises on a loop: it returns the path as given)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise loop from None
        try:
            resolved[path] = path.resolve()
        except (OSError, RuntimeError):  # RuntimeError: a loop, before Python 3.13
            raise loop from None
    taken: dict[Path, str] = {}
    for flag, path in outputs:
        if resolved[path] in taken:  # two outputs of one run in one file: the later would replace the earlier
            raise OutputError(f"{flag} {path}: is also written by {taken[resolved[path]]}; choose another path")
        taken[resolved[path]] = flag
    for flag, path in outputs:  # one output where another's folder will be (--out X --report X)
        for other, q in outputs:
            if resolved[path] in resolved[q].parents:
                raise OutputError(f"{flag} {path}: is the folder {other} writes {q.name} into; choose another path")
    for flag, path in outputs:
        folder = path.parent
        # (os.path's tests, which say False in a folder that may not be entered, where pathlib's raise: the probe
        # below then names the folder that may not be written)
        while not os.path.exists(folder) and folder != folder.parent:
            if os.path.islink(folder):  # no folder can be made where a link to a missing one is
                raise OutputError(f"{flag} {path}: {folder} is a link to a missing folder; remove the link or choose "
                                  "another path")
            folder = folder.parent
        if why := not_replaceable(path):
            raise OutputError(f"{flag} {path}: {why}")
        if not os.path.isdir(folder):
            raise OutputError(f"{flag} {path}: {folder} is a file, so no folder can be made there; choose another path")
        if resolved[path] in read:
            raise OutputError(f"{flag} {path}: is a file this run reads, and htsr never overwrites its inputs; "
                              "choose another path")
        try:
            longest = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):  # (no pathconf: Windows; a file system that does not say)
            longest = 255
        if len(os.fsencode(path.name)) > longest:  # (the temporary file's name is cut to fit: tried below)
            raise OutputError(f"{flag} {path}: its name is longer than the {longest} bytes {folder} takes; choose "
                              "a shorter one")
        try:  # a probe: the temporary file atomic_write will make, by its name, in the folder (or its nearest
            # existing one)
            probe = _temp_path(folder / path.name)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.unlink(probe)
        except OSError as e:
            raise OutputError(f"{flag} {path}: cannot write in {folder} ({e.strerror}); give write access to it or "
                              "choose another path") from None


def write_result_file(what: str, path: str | os.PathLike, data: str | bytes, read_from: Iterable[str]) -> None:
    """The API's writes of a result (a table, a report, a figure): :func:`check_outputs` against the files it was
    read from (``result.to_csv(result.path)`` had replaced the model), then :func:`atomic_write`."""
    if not isinstance(path, (str, os.PathLike)):  # (None had been a bare TypeError from pathlib)
        raise OptionError(f"{what} path must be a file path (str or os.PathLike), got {type(path).__name__}")
    check_outputs(list(read_from), [(what, path)])
    atomic_write(path, data)


def an_output(f: Path) -> bool:
    """Whether ``f``, in a model's folder, is a file htsr writes (a run's tables, summary, report or figures) and no
    reader reads."""
    return f.name in _RUN_FILES or f.suffix.lower() in _FIGURE_SUFFIXES or f.suffix.lower() == ".csv"


def format_value(v: Any, nan: str = "nan", empty: str = "-", inf: tuple[str, str] = ("inf", "-inf")) -> str:
    """A table cell: whole numbers without a point, others to 4 significant digits; NaN, ±inf and the
    empty string as given (the plain-text tables' defaults; the HTML report passes its own symbols)."""
    if isinstance(v, float):
        if math.isnan(v):
            return nan
        if math.isinf(v):
            return inf[0] if v > 0 else inf[1]
        if abs(v) < 1e9 and v == int(v):
            return str(int(v))
        return f"{v:.4g}"
    return str(v) if v != "" else empty


def why_undefined(options: dict[str, Any]) -> dict[str, str]:
    """Why a run's summary has no value (NaN) for its option-dependent entries, by entry: what the CLI's
    summary and the report print beside 'n/a'."""
    no_mp = ("--no-mp-fit" if not options.get("mp_fit", True)  # phases need a layer's MP fit
             else "no layer has a phase: it needs a bulk the Marchenko-Pastur law fits and, for a layer with a "
                  "tail above it, the tail's power-law fit; none has them, or LoRA updates only")
    # (traps need a shuffle of their own, with or without the MP fit)
    no_shuffle = "no layer randomised: none with min_evals eigenvalues, or LoRA updates only"
    boot = options.get("bootstrap", 0) or 0
    no_boot = ("--bootstrap N" if not boot else
               f"--bootstrap {boot}: fewer than {MIN_WARNING_REPLICATES} replicates" if boot < MIN_WARNING_REPLICATES
               else f"no layer fitted with {MIN_WARNING_REPLICATES} good replicates (a replicate whose refit fails is "
                    "not counted: num_boot)")
    return {"phases": no_mp, "num_with_traps": no_shuffle if options.get("randomize") else "--randomize",
            "share_plausible_pl": no_boot,
            "num_no_power_law": no_boot,
            "share_best_fit_pl": "no layer fitted" if options.get("tails", True) else "--no-tails"}


def csv_table(header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> str:
    """CSV text of ``rows`` (each cell by :func:`csv_cell`), after ``header`` if given, lines ending in '\\n'. A row
    with a '\\r' in a text cell (a tensor name) has every field quoted: before Python 3.13 the csv module left a
    bare '\\r' unquoted, which readers take for a line break (the table read back one row too many)."""
    buf = io.StringIO()
    plain = csv.writer(buf, lineterminator="\n")
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    if header is not None:
        plain.writerow(header)
    for row in rows:
        cells = [csv_cell(v) for v in row]
        (quoted if any(isinstance(c, str) and "\r" in c for c in cells) else plain).writerow(cells)
    return buf.getvalue()


#: the CLI's per-layer table (and the report's): these columns, and those of the options that ran
TABLE_COLUMNS = ("name", "kind", "shape", "num_evals", "alpha", "bayes_alpha_lo", "bayes_alpha_hi", "D", "xmin",
                 "num_pl_spikes", "best_fit", "phase", "num_spikes", "alpha_weighted", "log_norm", "log_spectral_norm",
                 "stable_rank", "warning", "status")
#: the bootstrap's columns replace the Bayesian interval in the table when the bootstrap ran
BOOTSTRAP_COLUMNS = ("boot_alpha_lo", "boot_alpha_hi", "pl_pvalue")
#: shown after num_spikes when the randomisation ran
RANDOMIZE_COLUMNS = ("num_traps", "trap_weights")

#: (option, columns it fills, the column they follow): shown in the table when the option is on
OPTION_COLUMNS = (
    ("farms_aspect", ("farms_windows", "farms_xmin"), "num_evals"),
    ("clip_xmax", ("raw_alpha", "num_fingers"), "alpha"),
    ("drop_top", ("raw_alpha", "num_fingers"), "alpha"),
    ("bayes_average", ("bayes_avg_alpha", "bayes_avg_alpha_lo", "bayes_avg_alpha_hi"), "pl_pvalue|bayes_alpha_hi"),
    ("randomize", RANDOMIZE_COLUMNS, "num_spikes"),
    ("localization", ("loc_pr_tail_mean", "loc_pr_bulk_mean", "loc_lr_tail_mean", "loc_lr_bulk_mean",
                      "loc_ent_tail_mean", "loc_ent_bulk_mean"), "stable_rank"),
)


def table_columns(result: AnalysisResult) -> tuple[str, ...]:
    """The default table's columns for this result: with a bootstrap of enough replicates to drive the warnings,
    its interval and p-value instead of the Bayesian interval (with fewer, beside it: the warnings use the
    Bayesian one, which the table must show); with each option of :data:`OPTION_COLUMNS`, the columns it fills."""
    cols = TABLE_COLUMNS
    if result.options.get("bootstrap"):
        i = cols.index("bayes_alpha_lo")
        keep = 0 if result.options["bootstrap"] >= MIN_WARNING_REPLICATES else 2
        cols = cols[:i + keep] + BOOTSTRAP_COLUMNS + cols[i + 2 :]
    for option, extra, after in OPTION_COLUMNS:
        if result.options.get(option) not in (None, False, 0):
            i = next(cols.index(a) for a in after.split("|") if a in cols) + 1
            cols = cols[:i] + extra + cols[i:]
    return cols


#: control characters (C0, DEL, C1) and the bidirectional overrides, each as its escape ('\\n', '\\x1b', '\\u202e')
CONTROL_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(0x00, 0x20), *range(0x7f, 0xa0), *range(0x202a, 0x202f),
                                                   *range(0x2066, 0x206a))}


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[bool]) -> str:
    """Aligned plain text: the columns with ``left`` true left-aligned (names, kinds), the others right-aligned
    (numbers), two spaces apart, each cell padded to its column's width on a terminal: a wide character (CJK, an
    emoji) takes two columns, a combining mark none (``len`` had misaligned every cell after a Chinese name). A
    control character in a cell (a tensor or file name's newline) is shown as its escape: it would break the lines
    (compare's tables had printed a name's newline and carriage return as they are)."""
    header = [h.translate(CONTROL_ESCAPES) for h in header]
    rows = [[c.translate(CONTROL_ESCAPES) for c in r] for r in rows]
    widths = [max([shown_width(h), *(shown_width(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        pads = (" " * (w - shown_width(c)) for c, w in zip(cells, widths))
        return "  ".join(c + pad if lft else pad + c for c, pad, lft in zip(cells, pads, left)).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def shown_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide and full-width characters two, combining marks and
    zero-width characters none)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf")
               else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def csv_cell(v: Any) -> Any:
    """A CSV field: a finite float in full precision (repr), NaN/inf/None as an empty field, else as is."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(float(v)) if isinstance(v, float) else v  # float(): numpy's repr is 'np.float64(0.25)'


def _csv_records(path: Any, text: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(header, rows) of a layers.csv (its ``text``, when read already); SourceError for another file (no name and
    status columns) and for a file cut short (a copy
    interrupted, a full disk): a row with fewer or more fields than the header (csv fills the missing ones with
    None, and keys the extra ones None)."""
    if text is None:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records = list(reader)
    header = list(reader.fieldnames or ())
    if "name" not in header or "status" not in header:  # (every table htsr writes has them; before the rows'
        # count of fields: another file, a summary.json given by mistake, is not 'a table truncated or corrupt')
        raise SourceError(f"{path}: not a layers.csv htsr wrote (its header has no name and status columns)")
    cut = next((i for i, r in enumerate(records) if None in r or None in r.values()), None)
    if cut is not None:
        raise SourceError(f"{path}: row {cut + 1} does not have the header's {len(header)} fields: the table is "
                          "truncated or corrupt; write it again with 'htsr analyze --out'")
    return header, records


def _check_columns(where: Any, header: Sequence[str]) -> None:
    """SourceError for a saved table with columns this htsr does not know (a newer htsr's); one it has and the
    table lacks (an older htsr's) is read as empty."""
    unknown = [c for c in header if c not in COLUMN_DTYPES]
    if unknown:
        raise SourceError(f"{where}: columns this htsr does not know ({listed(unknown, 5)}): written by a "
                          "newer htsr (upgrade htsr to read it), or cut short?")


def read_layers(path: str | os.PathLike) -> "pandas.DataFrame":
    """A ``layers.csv`` htsr wrote (:meth:`AnalysisResult.to_csv`, ``htsr analyze --out``) as a pandas DataFrame
    with :meth:`AnalysisResult.to_pandas`'s dtypes (``pd.read_csv`` alone guesses them from the values: a count
    column without an empty cell comes back int64, an all-empty text column float64, and tables of two runs
    then do not concatenate cleanly). Empty numeric cells are NaN, empty text cells ''; the columns of :data:`COLUMNS`
    in their order, those an older htsr's table lacks empty."""
    from .io.base import import_extra

    pd = import_extra("pandas", "pandas", "htsr.results.read_layers()")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            content = f.read()  # (once: checked, then parsed)
        header, _ = _csv_records(path, content)
        _check_columns(path, header)
        counts = [c for c in COLUMNS if COLUMN_DTYPES[c] == "int64" and c not in header]
        if counts:  # (every htsr's table has the shape counts)
            raise SourceError(f"{path}: not a layers.csv htsr wrote (its header has no {counts[0]} column)")
        text = [c for c in header if COLUMN_DTYPES.get(c) == "object"]
        frame = pd.read_csv(io.StringIO(content, newline=""), dtype={c: COLUMN_DTYPES[c] for c in header},
                            keep_default_na=False, na_values={c: [""] for c in header if c not in text})
        for c in COLUMNS:  # an older htsr's table lacks the newer columns: empty, as load_result reads them
            if c not in frame.columns:
                frame[c] = pd.Series("" if COLUMN_DTYPES[c] == "object" else np.nan, index=frame.index,
                                     dtype=COLUMN_DTYPES[c])
        return frame[list(COLUMNS)]
    except SourceError:
        raise
    except (OSError, UnicodeError, ValueError, csv.Error) as e:  # (pandas' parser errors are ValueErrors)
        raise SourceError(f"{path}: cannot read it as a layers.csv ("
                          f"{e.__class__.__name__ + ': ' + e.strerror if getattr(e, 'strerror', None) else described(e, 120)})") from None


@dataclass(frozen=True, eq=False)
class LayerSpectra(NanEqual):
    """The eigenvalues behind one row, kept with ``keep_spectra=True`` for figures and the report."""

    evals: np.ndarray  # the layer's ESD (all its matrices pooled), ascending, in the units of the columns
    fit_evals: np.ndarray  # what the tail fit saw: above the floor, FARMS windows pooled when on
    rand_evals: np.ndarray | None = None  # ESD of the element-shuffled matrices (randomize)
    rand_threshold: float = NAN  # trap threshold of the shuffled ESD (its MP edge + tw_margin TW scales)


@dataclass(frozen=True)
class NotAnalysed:
    """Tensors of the source that give no row, for one reason (a bias, a 1-D norm scale, a filter …)."""

    reason: str
    count: int
    examples: tuple[str, ...]  # the first few tensor names

    #: names kept as examples per reason
    MAX_EXAMPLES = 3

    @classmethod
    def tally(cls, names_by_reason: dict[str, list[str]]) -> tuple["NotAnalysed", ...]:
        """One entry per reason, the most frequent first."""
        items = sorted(names_by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return tuple(cls(reason, len(names), tuple(names[: cls.MAX_EXAMPLES])) for reason, names in items)

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "count": self.count, "examples": list(self.examples)}


@dataclass(frozen=True, eq=False)
class AnalysisResult(NanEqual):
    """What :func:`htsr.analyze` returns.

    ``spectra`` is aligned with ``layers`` when the analysis ran with ``keep_spectra=True`` (None for a
    row that has no spectrum: skipped or failed before its eigenvalues) and empty otherwise.
    """

    layers: tuple[LayerResult, ...]
    summary: Summary
    source: str
    options: dict[str, Any]
    spectra: tuple[LayerSpectra | None, ...] = ()
    num_tensors: int | None = None  # tensors the source holds (None: not counted)
    not_analysed: tuple[NotAnalysed, ...] = ()  # those that give no row, by reason
    path: str = ""  # the path analysed, as given ('' for an object): what compare labels it by
    # the files the analysis read (its source's and base's: shards, external data), and those a run read back was
    # read from, which the API's writes never replace; not saved, and not compared
    read_files: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __repr__(self) -> str:  # the dataclass's would print every row's ~90 columns
        s = self.summary
        alpha = s.means.get("alpha", float("nan"))
        return (f"<AnalysisResult {self.source}: {len(self.layers)} layers, {s.num_fitted} fitted, "
                f"mean alpha {alpha:.3f}; .layers, .summary, .to_pandas()>")

    def to_records(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.layers]

    def to_pandas(self) -> "pandas.DataFrame":
        """The per-layer table as a pandas DataFrame (needs pandas)."""
        from .io.base import import_extra

        pd = import_extra("pandas", "pandas", "AnalysisResult.to_pandas()")
        frame = pd.DataFrame(self.to_records(), columns=list(COLUMNS))
        # one dtype per column whatever the values (a count with no NaN would be int64 in one result and
        # float64 in another: concatenating results mixed them): LayerResult's own types
        return frame.astype(COLUMN_DTYPES)

    def csv_text(self) -> str:
        """The per-layer table as CSV text (read it back with :func:`read_layers`)."""
        return csv_table(COLUMNS, ([r[c] for c in COLUMNS] for r in self.to_records()))

    @property
    def read_from(self) -> tuple[str, ...]:
        """The paths the analysis read: its source's and its base's, and the files their readers read (none for
        in-memory models)."""
        base = self.options.get("base") if isinstance(self.options, dict) else None
        # (a base's path is kept absolute; an in-memory base's entry is its description)
        given = [self.path, base if isinstance(base, str) and os.path.isabs(base) else ""]
        return (*(p for p in given if p), *self.read_files)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the per-layer table (NaN as an empty field), atomically; never over a file the analysis read."""
        write_result_file("AnalysisResult.to_csv():", path, self.csv_text(), self.read_from)

    def json_text(self, layers: bool = True) -> str:
        """Source, options, summary, the tensors not analysed (and the layers) as strict JSON, NaN written
        as null."""
        doc: dict[str, Any] = {"source": self.source, "path": self.path, "options": self.options,
                               "summary": self.summary.as_dict(), "num_tensors": self.num_tensors,
                               "not_analysed": [n.as_dict() for n in self.not_analysed]}
        if layers:
            doc["layers"] = self.to_records()
        return json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"

    def to_json(self, path: str | os.PathLike) -> None:
        """Write source, options, summary and layers as one JSON document, atomically; never over a file the
        analysis read."""
        write_result_file("AnalysisResult.to_json():", path, self.json_text(), self.read_from)


# ----------------------------------------------------------------------------------------------------------
# a saved run read back


#: the files of a saved run's folder: analyze's --out (and a --report or compare --out written beside them)
_RUN_FILES = frozenset({"layers.csv", "summary.json", "report.html", "comparison.csv", "comparison.json",
                        "distances.csv"})
_FIGURE_SUFFIXES = frozenset({".html", ".htm", ".png", ".svg", ".pdf", ".jpg", ".jpeg"})


def _saved(path: Any) -> tuple[Path, dict | None] | None:
    """(the path, its JSON document if it is one) when ``path`` names a saved run, else None."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    p = Path(path)
    if os.path.isdir(p):  # (os.path's tests: see check_outputs)
        # only what htsr writes beside them (a report, a comparison, figures): a model folder that also holds an
        # earlier run's files ('htsr analyze ck1 --out ck1') is the model
        if not (os.path.isfile(p / "layers.csv") and os.path.isfile(p / "summary.json")):
            return None
        try:  # (hidden files aside: a Finder's .DS_Store, an editor's swap file)
            return (p, None) if all(os.path.isdir(f) or f.name in _RUN_FILES or f.suffix.lower() in _FIGURE_SUFFIXES
                                    or f.name.startswith(".") for f in p.iterdir()) else None
        except PermissionError as e:
            raise SourceError(f"{p}: cannot list it ({e.strerror}); give read access to it") from None
    if p.suffix.lower() == ".json" and os.path.isfile(p):
        try:
            with open(p, encoding="utf-8-sig") as f:
                doc = json.load(f)
        except (OSError, ValueError, RecursionError):
            return None
        # (a comparison's JSON has layers, summary and options too, but 'sources', no 'source'; a run's of an htsr
        # before 2026-12-04 has no 'not_analysed')
        keys = {"layers", "summary", "options", "source"}
        return (p, doc) if isinstance(doc, dict) and keys <= set(doc) else None
    return None


def saved_result(path: Any) -> Path | None:
    """The saved run ``path`` names, or None: a folder ``htsr analyze --out`` wrote (``layers.csv`` and
    ``summary.json``), or a JSON document of a whole result (``--json``, :meth:`AnalysisResult.to_json`)."""
    found = _saved(path)
    return found[0] if found else None


def saved_run(path: Any) -> AnalysisResult | None:
    """The saved run ``path`` names read back (:func:`load_result`), or None if it names none; its files are
    read once."""
    found = _saved(path)
    return _read_saved(*found) if found else None


def load_result(path: str | os.PathLike) -> AnalysisResult:
    """A run saved by ``htsr analyze --out DIR`` (the folder: ``layers.csv`` and ``summary.json``) or ``--json``
    (the document) read back as the :class:`AnalysisResult` it was: its rows, options, source, the tensors not
    analysed and the path analysed; the summary is recomputed from the rows (it is a function of them); no
    eigenvalues (``spectra`` empty: they are not saved). :func:`htsr.compare.compare` takes such paths as they
    are, so runs saved on different days compare without analysing again. A column this htsr does not know
    (a file of a newer htsr) is refused; a column it has and the file lacks (an older htsr's) is empty, NaN."""
    if isinstance(path, (str, os.PathLike)):
        from .io.base import missing, permission_denied, unreadable

        try:
            os.stat(path)
        except FileNotFoundError:
            raise SourceError(missing(path)) from None
        except PermissionError as e:  # (in a folder that may not be entered)
            raise SourceError(permission_denied(Path(path), e)) from None
        except OSError as e:  # (a name too long …: saved_run says what it is not)
            if e.errno == errno.ELOOP:
                raise SourceError(missing(path)) from None
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
            raise SourceError(unreadable(path, "Permission denied"))
    run = saved_run(path)
    if run is None:
        raise SourceError(f"{path}: not a saved htsr run (a folder with layers.csv and summary.json, as "
                          "'htsr analyze --out' writes, or a JSON document of a whole result, as --json prints)")
    return run


def _read_saved(p: Path, doc: dict | None) -> AnalysisResult:
    """The run saved at ``p`` (a folder, or the JSON document ``doc`` read from ``p``)."""
    try:
        if p.is_dir():
            with open(p / "summary.json", encoding="utf-8-sig") as f:
                doc = json.load(f)
            where = p / "layers.csv"
            header, records = _csv_records(where)
        else:
            records, where = doc.get("layers"), p
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError("'layers' is not a list of rows")
            header = list(records[0]) if records else []
        if not isinstance(doc, dict):
            raise ValueError("the document is not a JSON object")
        summary = doc.get("summary")
        counted = summary.get("num_layers") if isinstance(summary, dict) else None
        if isinstance(counted, int) and not isinstance(counted, bool) and counted != len(records):
            raise SourceError(f"{where}: {len(records)} rows, where its summary counts {counted} layers: the saved run "
                              "is truncated or corrupt; write it again with 'htsr analyze --out'")
        _check_columns(where, header)
        layers = tuple(_row(r) for r in records)
        not_analysed = tuple(NotAnalysed(str(n["reason"]), int(n["count"]), tuple(map(str, n["examples"])))
                             for n in doc.get("not_analysed") or ())
        num = doc.get("num_tensors")
        # (the files it is read from, which its writes and a comparison's never replace: they had overwritten them)
        files = (p / "summary.json", p / "layers.csv") if p.is_dir() else (p,)
        return AnalysisResult(layers, Summary.of(layers), str(doc.get("source", "")), dict(doc.get("options") or {}),
                              (), int(num) if num is not None else None, not_analysed, str(doc.get("path") or ""),
                              tuple(os.path.realpath(f) for f in files))
    except SourceError:
        raise
    except PermissionError as e:
        raise SourceError(f"{e.filename or p}: cannot read the saved run ({e.strerror}); give read access to it") from None
    except (OSError, ValueError, RecursionError, KeyError, TypeError, csv.Error) as e:
        raise SourceError(f"{p}: cannot read the saved run ({described(e)}); write it again with "
                          "'htsr analyze --out'") from None


def _row(record: dict[str, Any]) -> LayerResult:
    """One saved row: CSV text (an empty field for NaN and '') or JSON values (null for NaN), typed as the
    LayerResult field is."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(LayerResult):
        v = record.get(f.name)
        kind = COLUMN_DTYPES[f.name]
        if kind == "object":
            values[f.name] = "" if v is None else str(v)
        elif kind == "int64":
            values[f.name] = int(v)
        else:
            values[f.name] = NAN if v is None or v == "" else float(v)
    return LayerResult(**values)
