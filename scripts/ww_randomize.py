"""The shuffled matrix's Marchenko-Pastur law: htsr's ``rand_mp_*`` columns beside WeightWatcher 0.7.7's
``rand_*`` fit (``analyze(randomize=True)``) on the same two seeded 400 x 200 layers: Gaussian entries plus
a rank-one spike, and Student-t(3) entries. docs/weightwatcher.md quotes the numbers.

    python scripts/ww_randomize.py                    # htsr's columns
    python scripts/ww_randomize.py --ww               # WeightWatcher's, run in a venv that has it and torch

WeightWatcher's shuffle is its own (not seeded by this script): its fitted numbers move slightly between runs.
"""

from __future__ import annotations

import sys

import numpy as np


def layers() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    G = rng.standard_normal((400, 200))
    u, v = rng.standard_normal(400), rng.standard_normal(200)
    spiked = G + 3.0 * np.outer(u, v) / np.sqrt(200)
    return {"0.weight": spiked, "1.weight": rng.standard_t(3.0, size=(400, 200))}


def main() -> None:
    ws = layers()
    if "--ww" in sys.argv:
        import torch
        import weightwatcher

        model = torch.nn.Sequential(*(torch.nn.Linear(200, 400, bias=False) for _ in ws))
        with torch.no_grad():
            for m, W in zip(model, ws.values()):
                m.weight.copy_(torch.tensor(W))
        d = weightwatcher.WeightWatcher(model=model).analyze(randomize=True)
        cols = ["rand_sigma_mp", "rand_bulk_min", "rand_bulk_max", "rand_mp_softrank", "rand_num_spikes",
                "max_rand_eval"]
        print(d[cols].to_string())
        return
    import htsr

    r = htsr.analyze(ws, randomize=True)
    cols = ["rand_mp_sigma", "rand_mp_lambda_minus", "rand_mp_lambda_plus", "rand_mp_softrank", "num_traps",
            "rand_lambda_max"]
    print(r.to_pandas().set_index("name")[cols].to_string())


if __name__ == "__main__":
    main()
