#!/usr/bin/env python
"""WeightWatcher 0.7.7's ERG / det X = 1 tail sizes for all-MiniLM-L6-v2 (reference for htsr's num_erg).

Run with a Python that has weightwatcher==0.7.7 and torch (not a test dependency of htsr):

    python tests/data/ww/make_detx_reference.py [--minilm PATH] [--out FILE]

Builds the same module as make_reference.py, runs
``weightwatcher.WeightWatcher(model=m).analyze(detX=True)`` and writes, per layer, ``detX_num``
(= ``num_ERG_spikes``), ``detX_val_unrescaled`` (the tail's lower edge in WW's mean-normalised units,
despite the name) and ``detX_val`` (raw units), with the versions and the file hash.
"""
from make_reference import minilm_columns_reference

if __name__ == "__main__":
    minilm_columns_reference(__doc__, "minilm_l6_v2_detx.json",
                             ["longname", "num_evals", "detX_num", "detX_val", "detX_val_unrescaled"], detX=True)
