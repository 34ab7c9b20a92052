"""Silero VAD's three copies in the silero-vad 6.2.3 wheel, layer by layer: the 16 kHz safetensors, the ONNX
export (``silero_vad_16k_op15.onnx``) and the TorchScript file (``silero_vad.jit``, read by htsr without torch).

For every weight of the ONNX copy: the TorchScript tensor with equal values (LSTM gate rows may be permuted),
and the safetensors tensor of the same role (the same architecture: same shapes, in the same order), with the
largest absolute difference relative to the ONNX tensor's largest value and their Pearson correlation; then
each copy's alpha (default options). Fetched once from PyPI with the tests' ``fetch_model``.

    python scripts/silero_formats.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from real_models import fetch_model
from real_models import value_match

import htsr
from htsr.io import open_source

# the same layer in the safetensors file (its own names) and in the exports (the module path)
ROLES = {"stft_conv.weight": "stft.forward_basis_buffer", "lstm_cell.weight_ih": "decoder.rnn.weight_ih",
         "lstm_cell.weight_hh": "decoder.rnn.weight_hh", "final_conv.weight": "decoder.decoder.2.weight",
         **{f"conv{i + 1}.weight": f"encoder.{i}.reparam_conv.weight" for i in range(4)}}


def tensors(path: Path) -> dict[str, np.ndarray]:
    return {r.name: np.asarray(r.load(), dtype=np.float64) for r in open_source(path) if len(r.shape) >= 2}


def main() -> None:
    paths = {k: fetch_model(f"silero_{k}") for k in ("safetensors", "onnx", "jit")}
    w = {k: tensors(p) for k, p in paths.items()}
    rows = {k: {r.name: r for r in htsr.analyze(p).layers} for k, p in paths.items()}
    jit16 = {n: t for n, t in w["jit"].items() if n.startswith("_model.")}  # the 16 kHz model of the .jit
    onnx_to_jit = value_match(w["onnx"], jit16)
    by_role = {f"model.{v}": k for k, v in ROLES.items()}
    print(f"{len(onnx_to_jit)} of {len(w['onnx'])} ONNX weights equal a TorchScript tensor\n")
    print("| ONNX weight | = TorchScript | safetensors (same role) | max abs diff / max (ONNX vs safetensors) "
          "| correlation | alpha ONNX | alpha TorchScript | alpha safetensors |")
    print("|---|---|---|---|---|---|---|---|")
    for on, o in w["onnx"].items():
        jn, sn = onnx_to_jit.get(on, "-"), by_role.get(on, "-")
        s = w["safetensors"].get(sn)
        rel = float(np.max(np.abs(o - s)) / np.max(np.abs(o))) if s is not None and s.shape == o.shape else np.nan
        corr = float(np.corrcoef(o.ravel(), s.ravel())[0, 1]) if s is not None and o.size > 1 else np.nan
        alphas = [rows[k].get(n.removesuffix(".weight")) for k, n in (("onnx", on), ("jit", jn), ("safetensors", sn))]
        a = ["-" if r is None else f"{r.alpha:.4g}" for r in alphas]
        print(f"| {on} | {jn} | {sn} | {rel:.3g} | {corr:.4f} | {a[0]} | {a[1]} | {a[2]} |")


if __name__ == "__main__":
    main()
