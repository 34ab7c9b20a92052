"""Write the act-order (``weight_g_idx``) compressed-tensors reference used by tests/test_scales.py.

compressed-tensors dropped ``weight_g_idx`` from its pack-quantized format after 0.9 (newer versions
reorder the columns before saving), but checkpoints written by llm-compressor with ``actorder="group"``
carry it. Run with compressed-tensors 0.9.4 installed (it needs torch), from this folder:

    python make_ct_gidx_reference.py

Each layer's input columns are assigned to groups out of order (a permutation of the consecutive
groups, as GPTQ's activation ordering makes them); scales and zero points come from each group's own
columns (`calculate_qparams`); `PackedQuantizationCompressor.compress_weight(..., g_idx=...)` packs it
and `decompress_weight` (given `weight_g_idx`) unpacks it into `decompressed.npz`: the answer htsr's
reader must give.
"""

import compressed_tensors
import numpy as np
import torch
from compressed_tensors.compressors.quantized_compressors.pack_quantized import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import save_file

LAYERS = [(4, 32), (4, 64), (8, 32), (2, 64)]  # (bits, group size); symmetric: 0.9.4 cannot unpack
# packed zero points (asymmetric layers are covered by ../compressed_tensors, without g_idx)

compressor = PackedQuantizationCompressor(config=None)
tensors, dequantized = {}, {}
for i, (bits, group) in enumerate(LAYERS):
    torch.manual_seed(300 + i)
    w = (torch.randn(24, 128) * 0.05 + 0.01).to(torch.bfloat16)
    g_idx = (torch.arange(128) // group)[torch.randperm(128)].to(torch.int32)
    args = QuantizationArgs(num_bits=bits, symmetric=True, strategy="group", group_size=group)
    groups = 128 // group
    lo = torch.stack([w.float()[:, g_idx == g].amin(1) for g in range(groups)], 1)
    hi = torch.stack([w.float()[:, g_idx == g].amax(1) for g in range(groups)], 1)
    scale, _ = calculate_qparams(lo, hi, args)
    scale = scale.to(torch.bfloat16)
    packed = compressor.compress_weight(w, scale, args, g_idx=g_idx)
    name = f"model.layers.{i}.mlp.down_proj"
    parts = {**packed, "weight_scale": scale, "weight_g_idx": g_idx}
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in parts.items()}
    back = compressor.decompress_weight(parts, args)
    dequantized[name] = back.float().numpy()
save_file(tensors, "model.safetensors")
np.savez_compressed("decompressed.npz", **dequantized)
print(f"compressed-tensors {compressed_tensors.__version__}: {len(LAYERS)} layers;",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items() if ".0." in k or ".1." in k})
