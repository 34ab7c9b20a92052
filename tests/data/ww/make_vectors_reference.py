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
import argparse
import json
import os

from make_reference import DEFAULT_MINILM, HERE, build_model, clean, load_state_dict, sha256, versions

METRICS = ("vec_entropy", "loc_ratio", "part_ratio")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", default=os.environ.get("HTSR_WW_MINILM", DEFAULT_MINILM))
    ap.add_argument("--out", default=os.path.join(HERE, "minilm_l6_v2_vectors.json"))
    args = ap.parse_args()
    import weightwatcher as ww

    details = ww.WeightWatcher(model=build_model(load_state_dict(args.minilm))).analyze(vectors=True)
    cols = ["longname", "N", "M", "xmin", "num_pl_spikes"] + [f"{g}_{s}_{m}" for m in METRICS
                                                               for g in ("tail", "bulk") for s in ("mean", "var")]
    rows = [{k: clean(r[k]) for k in cols} for r in details.to_dict(orient="records")]
    doc = {"meta": {"model": "minilm_l6_v2", "source_sha256": sha256(args.minilm), "versions": versions(),
                    "call": "weightwatcher.WeightWatcher(model=m).analyze(vectors=True)"},
           "rows": rows}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {args.out}: {len(rows)} layers")


if __name__ == "__main__":
    main()
