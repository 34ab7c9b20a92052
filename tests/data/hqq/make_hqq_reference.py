"""Write the HQQ reference used by tests/test_scales.py: layers quantized and serialized by HQQ itself
(``hqq.core.quantize.HQQLinear``, as Hugging Face's ``HqqConfig`` saves them).

Run with hqq installed (0.2.8.post1 on the CPU wrote the stored files; it needs torch), from this folder:

    python make_hqq_reference.py

Each layer: an ``nn.Linear`` quantized by ``HQQLinear`` (1, 2, 3, 4 and 8 bits, groups along either axis,
codes packed along the first axis of the grouped weight; one layer stores them ``view_as_float`` in bfloat16,
one is quantized with ``channel_wise=False``: one scale and zero, codes packed along the weight's own rows);
its ``state_dict()`` — W_q, scale, zero and the meta (shape, nbits, axis, packing… encoded as tensors) —
under the layer's name → ``model.safetensors``; ``HQQLinear.dequantize()`` → ``dequantized.npz`` (float32),
the answer htsr's reader must give.
"""

import numpy as np
import torch
from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
from safetensors.torch import save_file

import hqq

# (nbits, axis, group size, compute dtype, view_as_float, [out, in], channel_wise)
LAYERS = [(4, 1, 64, torch.float32, False, (64, 128), True), (3, 0, 64, torch.float32, False, (64, 128), True),
          (2, 1, 32, torch.float32, False, (64, 128), True), (1, 1, 64, torch.float32, False, (64, 128), True),
          (8, 0, 64, torch.float32, False, (64, 128), True), (4, 1, 64, torch.bfloat16, True, (64, 128), True),
          (3, 1, 64, torch.float32, False, (48, 160), True), (4, 1, 64, torch.float32, False, (64, 128), False)]

tensors, dequantized = {}, {}
for i, (nbits, axis, group, compute, as_float, (out, n_in), channel_wise) in enumerate(LAYERS):
    torch.manual_seed(600 + i)
    linear = torch.nn.Linear(n_in, out, bias=False)
    config = BaseQuantizeConfig(nbits=nbits, group_size=group, axis=axis, view_as_float=as_float)
    config["weight_quant_params"]["channel_wise"] = channel_wise  # False: one scale for the whole weight
    layer = HQQLinear(linear, config, compute_dtype=compute, device="cpu")
    name = f"model.layers.{i}.self_attn.q_proj"
    tensors |= {f"{name}.{k}": v.detach().contiguous() for k, v in layer.state_dict().items()}
    dequantized[name] = layer.dequantize().float().numpy()
save_file(tensors, "model.safetensors")
np.savez_compressed("dequantized.npz", **dequantized)
print(f"hqq {hqq.__version__}: {len(LAYERS)} layers;",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items() if ".5." in k and len(v.shape)})
