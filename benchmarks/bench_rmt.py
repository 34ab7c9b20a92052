"""Cost of the random-matrix diagnostics on the GPT-2-small-shaped benchmark model (issue 4).

Same seeded model as ``bench_speed.py`` (48 nn.Linear layers of GPT-2 small's shapes, N(0, 0.02²)).
In one process, interleaved, ``--repeats`` times each (median reported):

* base        ``htsr.analyze(model, mp_fit=False, setol=False)`` — the analysis without them
* default     ``htsr.analyze(model)`` — MP fit, heavy entries, phase label and SETOL ERG on (the default)
* randomize   ``htsr.analyze(model, randomize=True)`` — plus the shuffled ESD and its traps

Prints the medians and the ratios default/base (target < 1.10) and randomize/default (target ≤ 2).

    python benchmarks/bench_rmt.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import htsr
from bench_speed import SHAPES, build

RUNS = {"base": dict(mp_fit=False, setol=False), "default": {}, "randomize": dict(randomize=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = build(SHAPES["gpt2-small"])
    htsr.analyze(model)  # warm-up: imports, caches
    times: dict[str, list[float]] = {k: [] for k in RUNS}
    for _ in range(args.repeats):
        for name, opts in RUNS.items():
            t = time.perf_counter()
            htsr.analyze(model, **opts)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:10s} median {med[k]:.3f} s  runs {[round(x, 3) for x in v]}")
    print(f"default / base      = {med['default'] / med['base']:.3f}  (MP fit + phase + ERG; target < 1.10)")
    print(f"randomize / default = {med['randomize'] / med['default']:.3f}  (target <= 2)")


if __name__ == "__main__":
    main()
