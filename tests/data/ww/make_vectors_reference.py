#!/usr/bin/env python
"""WeightWatcher 0.7.7's eigenvector metrics (``vectors=True``) for all-MiniLM-L6-v2 (reference for htsr's
``--localization`` columns, the vector entropy above all).

Run with a Python that has weightwatcher==0.7.7 and torch (not a test dependency of htsr):

    python tests/data/ww/make_vectors_reference.py [--minilm PATH] [--out FILE]

Builds the same module as make_reference.py, runs ``weightwatcher.WeightWatcher(model=m).analyze(vectors=True)``
and writes, per layer, N, M, xmin, num_pl_spikes and the tail / bulk mean and variance (ddof 0) of ``vec_entropy``,
``loc_ratio`` and ``part_ratio``, with the versions and the file hash. WeightWatcher splits tail from bulk by
comparing the eigenvalues it recomputes with the vectors against x_min.
"""
from make_reference import minilm_columns_reference

METRICS = ("vec_entropy", "loc_ratio", "part_ratio")

if __name__ == "__main__":
    minilm_columns_reference(__doc__, "minilm_l6_v2_vectors.json",
                             ["longname", "N", "M", "xmin", "num_pl_spikes"] + [
                                 f"{g}_{s}_{m}" for m in METRICS for g in ("tail", "bulk") for s in ("mean", "var")],
                             vectors=True)
