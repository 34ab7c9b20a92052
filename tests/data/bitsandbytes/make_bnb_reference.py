"""Write the bitsandbytes reference used by tests/test_scales.py: Linear4bit layers (with every
``quant_storage`` bitsandbytes offers) and Linear8bitLt layers, quantized and saved by bitsandbytes itself.

Run with bitsandbytes installed (0.48.2 on the CPU wrote the stored files; it needs torch), from this folder:

    python make_bnb4_reference.py

Each layer is a ``bitsandbytes.nn.Linear4bit`` (NF4 or FP4, with or without double quantization, the packed
codes stored as uint8, bfloat16, float16 or float32: FSDP-QLoRA stores them in the model's float dtype)
quantized by moving it to the CPU; its ``state_dict()`` (the codes, absmax, quant_map, nested parts and the
JSON quant_state) → ``model.safetensors``; ``bitsandbytes.functional.dequantize_4bit`` of the same
parameter → ``dequantized.npz`` (float32): the answer htsr's reader must give. Likewise each
``Linear8bitLt`` (LLM.int8(), inference weights: int8 codes and one absmax ``SCB`` per row), dequantized by
``bitsandbytes.functional.int8_vectorwise_dequant``.
"""

import numpy as np
import torch
from bitsandbytes.functional import dequantize_4bit, int8_vectorwise_dequant
from safetensors.torch import save_file

import bitsandbytes as bnb

# (quant_type, double quantization, quant_storage)
LAYERS = [("nf4", False, torch.uint8), ("nf4", True, torch.bfloat16), ("fp4", False, torch.float16),
          ("nf4", True, torch.float32), ("fp4", True, torch.bfloat16)]

tensors, dequantized = {}, {}
for i, (quant_type, nested, storage) in enumerate(LAYERS):
    torch.manual_seed(300 + i)
    layer = bnb.nn.Linear4bit(256, 24, bias=False, compute_dtype=torch.float32, compress_statistics=nested,
                              quant_type=quant_type, quant_storage=storage)
    layer.weight.data = torch.randn(24, 256) * 0.05
    layer = layer.to("cpu")  # Params4bit quantizes on its first move to a device
    assert layer.weight.bnb_quantized and layer.weight.dtype == storage
    name = f"model.layers.{i}.mlp.down_proj"
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in layer.state_dict().items()}
    w = layer.weight
    dequantized[name] = dequantize_4bit(w.data, w.quant_state).float().numpy()
for i in (len(LAYERS), len(LAYERS) + 1):
    torch.manual_seed(300 + i)
    layer = bnb.nn.Linear8bitLt(256, 24, bias=True, has_fp16_weights=False)
    layer.weight.data = torch.randn(24, 256) * 0.05
    layer = layer.to("cpu")  # Int8Params quantizes on its first move to a device
    assert layer.weight.dtype == torch.int8
    name = f"model.layers.{i}.mlp.down_proj"
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in layer.state_dict().items()}
    dequantized[name] = int8_vectorwise_dequant(layer.weight.data, layer.weight.SCB).float().numpy()
save_file(tensors, "model.safetensors")
np.savez_compressed("dequantized.npz", **dequantized)
print(f"bitsandbytes {bnb.__version__}: {len(LAYERS)} 4-bit and 2 int8 layers;",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items() if ".1." in k})
