"""Time htsr's default analysis against WeightWatcher 0.7.7 and the bare linear algebra, same weights.

Shapes: a GPT-2-small-shaped model (12 blocks of 768×2304, 768×768, 768×3072, 3072×768), one
LLaMA-7B-shaped block (q, k, v, o 4096×4096; gate, up 11008×4096; down 4096×11008), and 200 small
128×64 layers (where the per-layer fits, not the eigensolver, set the time), as torch
nn.Linear modules with seeded N(0, 0.02²) weights. In one process, on the same modules:

* htsr        ``htsr.analyze(model)`` with default options (fast path, KS power-law fit, metrics)
* bare LA     float32 Gram on the smaller side + ``scipy.linalg.eigh(eigvals_only=True)``, every matrix
* WeightWatcher ``weightwatcher.WeightWatcher(model=model).analyze()`` with default options

htsr and the bare linear algebra run ``--repeats`` times (median reported); WeightWatcher, which
takes minutes on the LLaMA block, runs ``--ww-repeats`` times. Usage::

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_speed.py [--only gpt2|llama|small] [--repeats 3] [--ww-repeats 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import numpy as np
import scipy.linalg
import torch

import htsr

SHAPES = {
    "gpt2-small": [(768, 2304), (768, 768), (768, 3072), (3072, 768)] * 12,
    "llama7b-block": [(4096, 4096)] * 4 + [(11008, 4096)] * 2 + [(4096, 11008)],
    "small-200": [(128, 64)] * 200,
}


def build(shapes: list[tuple[int, int]], seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential()
    for i, (out_f, in_f) in enumerate(shapes):
        lin = torch.nn.Linear(in_f, out_f, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(out_f, in_f, generator=g) * 0.02)
        model.add_module(f"l{i}", lin)
    return model


def bare_linear_algebra(model: torch.nn.Module) -> None:
    for p in model.parameters():
        W = p.detach().numpy()
        G = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
        scipy.linalg.eigh(G, eigvals_only=True)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["gpt2", "llama", "small"], default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ww-repeats", type=int, default=1)
    args = ap.parse_args()

    import weightwatcher  # imported here: it configures the root logger and warning filters

    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("weightwatcher").setLevel(logging.WARNING)
    warnings.resetwarnings()
    torch.set_num_threads(torch.get_num_threads())

    names = [n for n in SHAPES if args.only is None or n.startswith(args.only)]
    print(f"htsr {htsr.__version__}, weightwatcher {weightwatcher.__version__}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in names:
        model = build(SHAPES[name])
        bare = timed(lambda: bare_linear_algebra(model), args.repeats)
        ours = timed(lambda: htsr.analyze(model), args.repeats)
        ww = timed(lambda: weightwatcher.WeightWatcher(model=model).analyze(), args.ww_repeats)
        result = htsr.analyze(model)
        t_bare, t_ours, t_ww = statistics.median(bare), statistics.median(ours), statistics.median(ww)
        print(f"\n{name}: {len(SHAPES[name])} matrices; htsr fitted {result.summary.num_fitted}, "
              f"eig paths {sorted({l.eig_method for l in result.layers})}")
        print(f"  bare LA (f32 Gram + eigh)  median {t_bare:8.2f} s   runs {[round(x, 2) for x in bare]}")
        print(f"  htsr default               median {t_ours:8.2f} s   runs {[round(x, 2) for x in ours]}")
        print(f"  WeightWatcher 0.7.7        median {t_ww:8.2f} s   runs {[round(x, 2) for x in ww]}")
        # (the targets are the big models': on many small layers the per-layer fits, not the solver, set the time)
        big = not name.startswith("small")
        print(f"  WeightWatcher / htsr = {t_ww / t_ours:5.2f}x" + ("   (target >= 5)" if big else ""))
        print(f"  htsr / bare LA       = {t_ours / t_bare:5.2f}x" + ("   (target <= 1.25)" if big else ""))
        print(f"  WeightWatcher / bare = {t_ww / t_bare:5.2f}x")


if __name__ == "__main__":
    main()
