"""Time the HTML report of a 100-layer model against the analysis it reports.

The model: a dict of 100 seeded float32 matrices, 256–1024 × 256–768, Gaussian with heavy-tailed (Pareto)
entries added to every third and a rank-8 signal to every fourth. It is analysed once with
``keep_spectra=True, randomize=True``; then :func:`htsr.report.render_report` (which computes every
layer's six panels and the model panels, and writes them as JSON into the page) runs ``--repeats``
times. The median render time (wall clock, and CPU time, which a busy machine disturbs less) is printed
beside the analysis time and the report's size. Usage::

    python benchmarks/bench_report.py [--layers 100] [--repeats 5] [--out report.html]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import htsr
from htsr.report import render_report, write_report


def build(num_layers: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    model = {}
    for i in range(num_layers):
        n, m = int(rng.integers(256, 1025)), int(rng.integers(256, 769))
        W = rng.standard_normal((n, m)).astype(np.float32)
        if i % 3 == 0:  # heavy-tailed entries
            W += (0.3 * rng.pareto(2.0 + i % 5, (n, m)) * rng.choice([-1.0, 1.0], (n, m))).astype(np.float32)
        if i % 4 == 1:  # a low-rank signal: spikes above the bulk
            W += (0.5 * rng.standard_normal((n, 8)) @ rng.standard_normal((8, m))).astype(np.float32)
        model[f"blocks.{i}.weight"] = W
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()

    model = build(args.layers)
    t = time.perf_counter()
    result = htsr.analyze(model, keep_spectra=True, randomize=True)
    t_analysis = time.perf_counter() - t

    times, cpu, text = [], [], ""
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        text = render_report(result)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if args.out:
        write_report(result, args.out)
    print(f"{args.layers} layers, {sum(sp.evals.size for sp in result.spectra if sp is not None)} eigenvalues kept")
    print(f"analysis (keep_spectra, randomize): {t_analysis:.2f} s")
    print(f"render_report: median {statistics.median(times):.3f} s over {args.repeats} "
          f"(min {min(times):.3f}, max {max(times):.3f}; CPU median {statistics.median(cpu):.3f} s); "
          f"report {len(text.encode()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
