"""Write the compressed-tensors reference used by tests/test_scales.py: pack-quantized layers made by the
compressed-tensors library itself.

Run with compressed-tensors installed (0.20.1 wrote the stored files; it needs torch), from this folder:

    python make_ct_reference.py

For each layer: min/max per group (or per row) → `calculate_qparams` (scale, zero point) →
`PackedQuantizationCompressor.compress` (weight_packed, weight_scale, weight_shape and, for asymmetric
GROUP / CHANNEL quantization, the packed weight_zero_point) → `model.safetensors`; and
`PackedQuantizationCompressor.decompress` of the same state dict → `decompressed.npz` (float32): the answer
htsr's reader must give. Two more layers are a mixture's fused experts, [4, 24, 128] in one tensor (the
library packs each expert's slice; a zero point is packed down each expert's rows).
"""

import compressed_tensors
import numpy as np
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import save_file

# (bits, symmetric, strategy, group size, shape); the last two are a mixture's fused experts [E, out, in]
LAYERS = [(4, False, "group", 32, (24, 128)), (3, False, "group", 64, (24, 128)),
          (8, False, "channel", None, (24, 128)), (2, False, "group", 32, (24, 128)),
          (4, True, "group", 64, (24, 128)), (5, True, "channel", None, (24, 128)),
          (4, False, "group", 32, (4, 24, 128)), (8, True, "channel", None, (4, 24, 128))]

tensors, dequantized = {}, {}
for i, (bits, symmetric, strategy, group, shape) in enumerate(LAYERS):
    torch.manual_seed(200 + i)
    w = (torch.randn(*shape) * 0.05 + 0.01).to(torch.bfloat16)
    args = QuantizationArgs(num_bits=bits, symmetric=symmetric, strategy=strategy, group_size=group)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    view = w.float().reshape(*shape[:-1], -1, group) if group else w.float().reshape(*shape[:-1], 1, shape[-1])
    scale, zp = calculate_qparams(view.amin(-1), view.amax(-1), args)
    state = {"weight": w, "weight_scale": scale.to(torch.bfloat16), "weight_zero_point": zp}
    packed = PackedQuantizationCompressor.compress(state, scheme)
    name = f"model.layers.{i}.mlp.{'experts.' if len(shape) == 3 else ''}down_proj"
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in packed.items()}
    back = PackedQuantizationCompressor.decompress(dict(packed), scheme)
    dequantized[name] = back["weight"].float().numpy()
save_file(tensors, "model.safetensors")
np.savez_compressed("decompressed.npz", **dequantized)
print(f"compressed-tensors {compressed_tensors.__version__}: {len(LAYERS)} layers;",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items() if ".0." in k or ".6." in k})
