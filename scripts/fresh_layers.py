"""How htsr labels layers that have learnt nothing: freshly initialised ones (torch's default Linear init and
Gaussian entries of std 0.02), 5 seeds each of 8 shapes (square, 4:1 either way, 2:1), 80 layers. Prints, for the
default KS x_min and for ``--xmin median``, the warnings counted and each shape's range of alpha. docs/uncertainty.md
("What the labels do not say") quotes it.

    python scripts/fresh_layers.py
"""

from __future__ import annotations

import collections

import numpy as np

import htsr

SHAPES = [(256, 256), (512, 512), (768, 768), (1024, 1024), (3072, 768), (768, 3072), (1000, 500), (2048, 512)]


def fresh_layers() -> dict[str, np.ndarray]:
    import torch

    out = {}
    for o, i in SHAPES:
        for seed in range(5):
            torch.manual_seed(seed)
            out[f"init_{o}x{i}_{seed}"] = torch.nn.Linear(i, o).weight.detach().numpy()
            out[f"gauss_{o}x{i}_{seed}"] = (np.random.default_rng(seed).standard_normal((o, i)) * 0.02).astype(
                np.float32)
    return out


def main() -> None:
    layers = fresh_layers()
    for xmin in ("ks", "median"):
        r = htsr.analyze(layers, xmin=xmin)
        warnings = collections.Counter(row.warning or "(none)" for row in r.layers)
        print(f"x_min {xmin}: {len(r.layers)} layers, warnings {dict(sorted(warnings.items()))}")
        by_shape = collections.defaultdict(list)
        for row in r.layers:
            kind, shape, _ = row.name.split("_")
            by_shape[(shape, kind)].append(row)
        for (shape, kind), rows in by_shape.items():
            alphas = [row.alpha for row in rows]
            told = collections.Counter(row.warning or "(none)" for row in rows)
            print(f"  {kind:5s} {shape:9s} alpha {min(alphas):6.2f} – {max(alphas):6.2f}  {dict(sorted(told.items()))}")


if __name__ == "__main__":
    main()
