"""Typed, immutable analysis results with one fixed schema, and their writers (CSV, JSON, pandas).

Every :class:`LayerResult` has every column of :data:`COLUMNS` whatever options ran; a value that is
undefined or was not computed is NaN and ``status`` says why. Files are written atomically: to a
temporary file in the target folder, then renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .metrics import METRICS, PLAUSIBLE_P

__all__ = ["LayerResult", "Summary", "AnalysisResult", "COLUMNS", "SUMMARY_METRICS", "atomic_write"]

NAN = float("nan")


@dataclass(frozen=True)
class LayerResult:
    """One analysed matrix (or pooled conv layer). Field order is the column order."""

    name: str  # full dotted path of the module (tensor name without '.weight')
    kind: str  # dense | embedding | conv1d | conv2d | rnn | stack
    shape: str  # shape of the original tensor, e.g. '384x1536'
    N: int  # larger side of each matrix
    M: int  # smaller side of each matrix
    num_matrices: int  # matrices pooled into this row (conv kernel positions)
    num_evals: int  # eigenvalues in the ESD = M · num_matrices
    status: str  # 'ok', 'not_fitted: …', 'skipped: …', 'failed: …', 'fit_failed: …'
    warning: str  # over-trained | under-trained | uncertain | no-power-law | '' (see metrics.warning_for)
    eig_method: str  # svd64 | gram32 | gram64 (fast path refined in float64)
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
    num_fingers: float = NAN  # top eigenvalues dropped by clip_xmax (NaN when off)
    raw_alpha: float = NAN  # alpha before clip_xmax (NaN when off)
    num_fit_evals: float = NAN  # eigenvalues the tail fit saw (after the floor; FARMS windows pooled)
    farms_windows: float = NAN  # FARMS windows pooled for the fit (NaN when farms_aspect is off)
    # Bayesian alpha at the fitted x_min (Gamma prior on α−1; Jeffreys by default)
    bayes_alpha: float = NAN  # posterior mean
    bayes_alpha_lo: float = NAN  # central credible interval at the `confidence` level
    bayes_alpha_hi: float = NAN
    p_alpha_lt_2: float = NAN  # posterior P(α < 2)
    p_alpha_gt_6: float = NAN  # posterior P(α > 6)
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
    p_tpl: float = NAN  # ½·P(χ²₁ > 2|R|)
    tpl_alpha: float = NAN  # truncated power law λ^−α e^−Λλ at the fitted x_min
    tpl_Lambda: float = NAN
    etpl_alpha: float = NAN  # E-TPL: the same at the peak-bounded x_min
    etpl_Lambda: float = NAN
    etpl_xmin: float = NAN

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LayerResult))
assert {m.name for m in METRICS} <= set(COLUMNS)

#: metrics averaged in the model summary (finite values only)
SUMMARY_METRICS = ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm",
                   "stable_rank", "entropy", "D", "sigma", "bayes_alpha", "pl_pvalue")



@dataclass(frozen=True)
class Summary:
    """Model summary: layer counts and each metric's mean over the layers where it is finite."""

    num_layers: int
    num_fitted: int
    num_not_fitted: int  # described but not fitted (too few eigenvalues, skipped by max_evals)
    num_failed: int  # bad weights or a failed fit
    num_under_trained: int
    num_over_trained: int
    num_uncertain: int  # the interval of alpha contains 2 or 6
    num_no_power_law: int  # bootstrap p <= 0.1
    share_plausible_pl: float  # share of bootstrapped layers with p > 0.1 (NaN without bootstrap)
    share_best_fit_pl: float  # share of compared layers whose best_fit is the power law (NaN without tails)
    means: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, layers: Iterable[LayerResult]) -> "Summary":
        layers = list(layers)
        means = {}
        for m in SUMMARY_METRICS:
            vals = [getattr(r, m) for r in layers if math.isfinite(getattr(r, m))]
            means[m] = math.fsum(vals) / len(vals) if vals else NAN
        status = [r.status.split(":")[0] for r in layers]
        return cls(
            num_layers=len(layers),
            num_fitted=status.count("ok"),
            num_not_fitted=status.count("not_fitted") + status.count("skipped"),
            num_failed=status.count("failed") + status.count("fit_failed"),
            num_under_trained=sum(r.warning == "under-trained" for r in layers),
            num_over_trained=sum(r.warning == "over-trained" for r in layers),
            num_uncertain=sum(r.warning == "uncertain" for r in layers),
            num_no_power_law=sum(r.warning == "no-power-law" for r in layers),
            share_plausible_pl=_share([r.pl_pvalue > PLAUSIBLE_P for r in layers if math.isfinite(r.pl_pvalue)]),
            share_best_fit_pl=_share([r.best_fit == "power_law" for r in layers if r.best_fit]),
            means=means,
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(d.pop("means"))
        return d


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else NAN


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # created like open() would (0666 less the umask), exclusively, so no other writer shares it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class AnalysisResult:
    """What :func:`htsr.analyze` returns."""

    layers: tuple[LayerResult, ...]
    summary: Summary
    source: str
    options: dict[str, Any]

    def to_records(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.layers]

    def to_pandas(self):
        """The per-layer table as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            from .errors import MissingExtraError

            raise MissingExtraError("pandas", "pandas", "AnalysisResult.to_pandas()") from None
        return pd.DataFrame(self.to_records(), columns=list(COLUMNS))

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in self.to_records():
            w.writerow({k: (repr(v) if isinstance(v, float) and math.isfinite(v) else
                            ("" if isinstance(v, float) else v)) for k, v in r.items()})
        return buf.getvalue()

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the per-layer table (NaN as an empty field), atomically."""
        atomic_write(path, self.csv_text())

    def json_text(self, layers: bool = True) -> str:
        """Source, options, summary (and the layers) as strict JSON, NaN written as null."""
        doc: dict[str, Any] = {"source": self.source, "options": self.options,
                               "summary": self.summary.as_dict()}
        if layers:
            doc["layers"] = self.to_records()
        return json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n"

    def to_json(self, path: str | os.PathLike) -> None:
        """Write source, options, summary and layers as one JSON document, atomically."""
        atomic_write(path, self.json_text())
