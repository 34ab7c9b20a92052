"""Write the padded odd-width compressed-tensors reference used by tests/test_scales.py.

Before its dense bit-stream packing, compressed-tensors packed ⌊32 / bits⌋ codes into each int32 word
and left the top bits unused (10 three-bit codes a word, 2 bits spare). A row's word count alone cannot
tell such a checkpoint from a dense one (of another width, or of the same width when the counts coincide);
its config.json can: ``config_groups.*.weights.num_bits``, and the ``version`` that wrote it (< 0.18). Run with compressed-tensors 0.9.4 installed (it needs torch), from this folder:

    python make_ct_padded_reference.py

Symmetric 3-bit layers (channel, and groups of 32) are packed by `PackedQuantizationCompressor` and
unpacked by its `decompress_weight` into `decompressed.npz`: the answer htsr's reader must give.
"""

import json

import compressed_tensors
import numpy as np
import torch
from compressed_tensors.compressors.quantized_compressors.pack_quantized import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import save_file

LAYERS = [("channel", None), ("group", 32)]

compressor = PackedQuantizationCompressor(config=None)
tensors, dequantized = {}, {}
for i, (strategy, group) in enumerate(LAYERS):
    torch.manual_seed(400 + i)
    w = (torch.randn(24, 128) * 0.05 + 0.01).to(torch.bfloat16)
    args = QuantizationArgs(num_bits=3, symmetric=True, strategy=strategy, group_size=group)
    view = w.float().reshape(24, -1, group) if group else w.float().reshape(24, 1, 128)
    scale, _ = calculate_qparams(view.amin(-1), view.amax(-1), args)
    scale = scale.to(torch.bfloat16)
    packed = compressor.compress_weight(w, scale, args)
    name = f"model.layers.{i}.mlp.down_proj"
    parts = {**packed, "weight_scale": scale}
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in parts.items()}
    dequantized[name] = compressor.decompress_weight(parts, args).float().numpy()
save_file(tensors, "model.safetensors")
with open("config.json", "w") as f:
    json.dump({"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
                                       "version": compressed_tensors.__version__,
                                       "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                                           "num_bits": 3, "symmetric": True, "strategy": "group",
                                           "group_size": 32}}}}}, f, indent=1)
np.savez_compressed("decompressed.npz", **dequantized)
print(f"compressed-tensors {compressed_tensors.__version__}:",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items()})
