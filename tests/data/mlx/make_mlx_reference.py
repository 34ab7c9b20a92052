"""Write the MLX reference used by tests/test_scales.py: layers quantized by MLX itself.

Run with MLX installed (`pip install "mlx[cpu]"`; 0.32.4 wrote the stored files), from this folder:

    python make_mlx_reference.py

`model.safetensors` is written by `mx.save_safetensors`, as mlx-lm writes mlx-community models: for each
layer the uint32 `weight` of `mx.quantize`, its float16 `scales` and `biases` (and an expert stack, as mlx-lm's
switch_mlp stores a mixture's experts); `config.json` gives the bits and group size per layer as mlx-lm's
mixed-precision recipes do (the stack takes the model-wide 4 bits, groups of 64). `dequantized.npz` holds
`mx.dequantize` of every layer (float32): the answer htsr's reader must give.
"""

import json

import mlx.core as mx
import numpy as np

LAYERS = [(1, 64), (2, 64), (3, 32), (3, 64), (4, 64), (5, 64), (6, 32), (6, 64), (8, 64)]  # (bits, group size)

weights, config, dequantized = {}, {"group_size": 64, "bits": 4}, {}
for i, (bits, group) in enumerate(LAYERS):
    rng = np.random.default_rng(100 + i)
    w = mx.array((rng.standard_normal((12, 256)) * 0.05).astype(np.float16))
    q, scales, biases = mx.quantize(w, group_size=group, bits=bits)
    name = f"model.layers.{i}.mlp.down_proj"
    weights |= {f"{name}.weight": q, f"{name}.scales": scales, f"{name}.biases": biases}
    config[name] = {"group_size": group, "bits": bits}
    dq = mx.dequantize(q, scales, biases, group_size=group, bits=bits).astype(mx.float32)
    dequantized[name] = np.array(dq)
# a mixture's expert stack (mlx-lm's switch_mlp): [experts, out, in] quantized per expert row
rng = np.random.default_rng(99)
w = mx.array((rng.standard_normal((4, 12, 256)) * 0.05).astype(np.float16))
q, scales, biases = mx.quantize(w, group_size=64, bits=4)
name = "model.layers.9.mlp.switch_mlp.up_proj"
weights |= {f"{name}.weight": q, f"{name}.scales": scales, f"{name}.biases": biases}
dequantized[name] = np.array(mx.dequantize(q, scales, biases, group_size=64, bits=4).astype(mx.float32))
mx.save_safetensors("model.safetensors", weights)
with open("config.json", "w") as f:
    json.dump({"model_type": "llama", "quantization": config}, f, indent=1)
np.savez_compressed("dequantized.npz", **dequantized)
print(f"mlx {mx.__version__}: {len(LAYERS)} layers")
