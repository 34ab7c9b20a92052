"""Write the AQLM reference used by tests/test_scales.py: layers in the layout of aqlm's own
``QuantizedLinear`` (as Hugging Face's ``AqlmConfig`` models store them), decoded by aqlm itself.

Run with aqlm installed (1.1.7 wrote the stored files; it needs torch), from this folder:

    python make_aqlm_reference.py

AQLM's quantizer (a separate research code base) learns codebooks on calibration data; the storage format
and its decoding do not depend on how the codes were found, so each layer here is a ``QuantizedLinear``
whose codebooks, codes and scales are seeded random draws (float16, as published models store them; codes
written with aqlm's ``pack_int_data``: signed integers of the codebook's bits). Its ``state_dict()`` →
``model.safetensors``; ``aqlm.utils._dequantize_weight(unpack_int_data(codes), codebooks, scales)`` →
``dequantized.npz`` (float32), the answer htsr's reader must give.
"""

from importlib.metadata import version

import numpy as np
import torch
from aqlm.inference import QuantizedLinear
from aqlm.utils import _dequantize_weight, pack_int_data, unpack_int_data
from safetensors.torch import save_file

# (codebooks, bits per codebook, out group, in group, [out, in]): one 12-bit codebook (int16 codes, as the
# published 1x16 models, with a smaller codebook), 2x8 as published, and 2x4 with output groups of 2
LAYERS = [(1, 12, 1, 8, (64, 128)), (2, 8, 1, 8, (64, 128)), (2, 4, 2, 4, (48, 96))]

tensors, dequantized = {}, {}
for i, (books, bits, og, ig, (out, n_in)) in enumerate(LAYERS):
    g = torch.Generator().manual_seed(700 + i)
    layer = QuantizedLinear(n_in, out, in_group_size=ig, out_group_size=og, num_codebooks=books,
                            nbits_per_codebook=bits, bias=True, dtype=torch.float16)
    layer.codebooks.data = (torch.randn(layer.codebooks.shape, generator=g) * 0.05).half()
    layer.codes.data = pack_int_data(torch.randint(0, 2**bits, layer.codes.shape, generator=g), bits)
    layer.scales.data = (torch.rand(layer.scales.shape, generator=g) + 0.5).half()
    layer.bias.data = torch.zeros(out, dtype=torch.float16)
    name = f"model.layers.{i}.mlp.down_proj"
    tensors |= {f"{name}.{k}": v.contiguous() for k, v in layer.state_dict().items()}
    weight = _dequantize_weight(unpack_int_data(layer.codes.data, bits), layer.codebooks.data.float(),
                                layer.scales.data.float())
    dequantized[name] = weight.numpy()
save_file(tensors, "model.safetensors")
np.savez_compressed("dequantized.npz", **dequantized)
print(f"aqlm {version('aqlm')}: {len(LAYERS)} layers;",
      {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items() if ".0." in k})
