"""Write the compressed-tensors "block" strategy reference used by tests/test_scales.py: pack-quantized
layers with one scale (and, asymmetric, one zero point) per block of [32 rows, 64 inputs], made by the
compressed-tensors library itself.

Run with compressed-tensors installed (0.20.1 wrote the stored files; it needs torch), from this folder:

    python make_ct_block_reference.py

For each layer: min/max per block (the last row and column blocks short when the shape is not a multiple
of the block) → `calculate_qparams` (scale, zero point) → `PackedQuantizationCompressor.compress` →
`model.safetensors`; `decompress` of the same state dict → `decompressed.npz` (float32), the answer htsr's
reader must give. config.json holds the `QuantizationConfig` (its block_structure says the blocks: the
scale's shape alone cannot tell a block grid from a transposed group scale).
"""

import json

import numpy as np
import torch
from compressed_tensors.compressors.pack_quantized.base import (
    PackedQuantizationCompressor,
)
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
)
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import save_file

import compressed_tensors

BLOCK = [32, 64]
LAYERS = [(True, (64, 128)), (False, (64, 128)), (True, (72, 160)), (False, (72, 160))]  # (symmetric, shape)

tensors, dequantized = {}, {}
for i, (symmetric, (out, n_in)) in enumerate(LAYERS):
    torch.manual_seed(500 + i)
    w = (torch.randn(out, n_in) * 0.05 + 0.01).to(torch.bfloat16)
    args = QuantizationArgs(num_bits=4, symmetric=symmetric, strategy="block", block_structure=BLOCK)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    rows, cols = -(-out // BLOCK[0]), -(-n_in // BLOCK[1])
    lo, hi = torch.empty(rows, cols), torch.empty(rows, cols)
    for r in range(rows):
        for c in range(cols):
            b = w.float()[r * BLOCK[0]:(r + 1) * BLOCK[0], c * BLOCK[1]:(c + 1) * BLOCK[1]]
            lo[r, c], hi[r, c] = b.min(), b.max()
    scale, zp = calculate_qparams(lo, hi, args)
    state = {"weight": w, "weight_scale": scale.to(torch.bfloat16), "weight_zero_point": zp}
    packed = PackedQuantizationCompressor.compress(state, scheme)
    name = f"model.layers.{i}.mlp.down_proj"
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in packed.items()}
    back = PackedQuantizationCompressor.decompress(dict(packed), scheme)
    dequantized[name] = back["weight"].float().numpy()
save_file(tensors, "model.safetensors")
config = QuantizationConfig(config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
    num_bits=4, symmetric=True, strategy="block", block_structure=BLOCK))}, format="pack-quantized")
with open("config.json", "w") as f:
    json.dump({"quantization_config": {**config.model_dump(mode="json"), "quant_method": "compressed-tensors",
                                       "version": compressed_tensors.__version__}}, f, indent=1)
np.savez_compressed("decompressed.npz", **dequantized)
print(f"compressed-tensors {compressed_tensors.__version__}: {len(LAYERS)} layers;",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items() if ".2." in k or ".3." in k})
