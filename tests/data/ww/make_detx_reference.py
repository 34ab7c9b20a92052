#!/usr/bin/env python
"""WeightWatcher 0.7.7's ERG / det X = 1 tail sizes for all-MiniLM-L6-v2 (reference for htsr's num_erg).

Run with a Python that has weightwatcher==0.7.7 and torch (not a test dependency of htsr):

    python tests/data/ww/make_detx_reference.py [--minilm PATH] [--out FILE]

Builds the same module as make_reference.py, runs
``weightwatcher.WeightWatcher(model=m).analyze(detX=True)`` and writes, per layer, ``detX_num``
(= ``num_ERG_spikes``), ``detX_val_unrescaled`` (the tail's lower edge in WW's mean-normalised units,
despite the name) and ``detX_val`` (raw units), with the versions and the file hash.
"""
import argparse
import json
import os

from make_reference import DEFAULT_MINILM, HERE, build_model, clean, load_state_dict, sha256, versions


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", default=os.environ.get("HTSR_WW_MINILM", DEFAULT_MINILM))
    ap.add_argument("--out", default=os.path.join(HERE, "minilm_l6_v2_detx.json"))
    args = ap.parse_args()
    import weightwatcher as ww

    details = ww.WeightWatcher(model=build_model(load_state_dict(args.minilm))).analyze(detX=True)
    cols = ["longname", "num_evals", "detX_num", "detX_val", "detX_val_unrescaled"]
    rows = [{k: clean(r[k]) for k in cols} for r in details.to_dict(orient="records")]
    doc = {"meta": {"model": "minilm_l6_v2", "source_sha256": sha256(args.minilm), "versions": versions(),
                    "call": "weightwatcher.WeightWatcher(model=m).analyze(detX=True)"},
           "rows": rows}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {args.out}: {len(rows)} layers")


if __name__ == "__main__":
    main()
