"""Writes the single-file LoRAs of tests/test_peft.py's diffusers tests with diffusers itself (0.42.1), and the
references they are checked against, from peft's own view of the updates.

A tiny Stable Diffusion UNet and CLIP text encoder get LoRA adapters (the UNet: r 4, lora_alpha 8; the text
encoder: r 2, lora_alpha 2 with rsLoRA, so their scales differ: 2 and √2), their B factors set to seeded
noise (a trained adapter's B is not zero). Written:

* ``pytorch_lora_weights.safetensors``: ``StableDiffusionPipeline.save_lora_weights``, as diffusers' DreamBooth
  LoRA script saves it, with each component's LoraConfig in the header's ``lora_adapter_metadata``;
* ``kohya.safetensors``: the same factors through ``diffusers.utils.convert_state_dict_to_kohya`` (kohya-ss
  names, ``lora_unet_…``/``lora_te1_…``, and an ``.alpha`` per module, which it sets to r);
* ``unet.safetensors``, ``text_encoder.safetensors``: the UNet's and the text encoder's own weights (bases for
  ``--base``, alone or as a pipeline's components);
* ``expected.npz``: per module, the singular values of peft's ``get_delta_weight`` (ΔW as peft adds it), and of
  the UNet's W + ΔW (``merge_and_unload``), keyed by the diffusers file's module names.

Run with diffusers on the path (``pip download --no-deps diffusers==0.42.1``, unzipped, on PYTHONPATH) and
peft, transformers, torch installed: ``python make_diffusers_lora.py``.
"""

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_kohya
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

torch.manual_seed(0)
unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                            block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                            attention_head_dim=2,
                            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
text = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, vocab_size=100, max_position_embeddings=16))
save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, "unet.safetensors")
save_file({k: v.contiguous() for k, v in text.state_dict().items()}, "text_encoder.safetensors")
unet_cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
text_cfg = LoraConfig(r=2, lora_alpha=2, use_rslora=True, target_modules=["q_proj", "v_proj"])
unet.add_adapter(unet_cfg)
text = inject_adapter_in_model(text_cfg, text)  # (transformers' add_adapter wants peft >= 0.22)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for model in (unet, text):
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
unet_layers = get_peft_model_state_dict(unet)
text_layers = {k: v for k, v in text.state_dict().items() if ".lora_" in k}
text_layers = {k.replace(".default.", "."): v for k, v in text_layers.items()}
StableDiffusionPipeline.save_lora_weights(".", unet_lora_layers=unet_layers, text_encoder_lora_layers=text_layers,
                                          unet_lora_adapter_metadata=unet_cfg.to_dict(),
                                          text_encoder_lora_adapter_metadata=text_cfg.to_dict())
both = {**{f"unet.{k}": v for k, v in unet_layers.items()}, **{f"text_encoder.{k}": v for k, v in text_layers.items()}}
save_file({k: v.contiguous() for k, v in convert_state_dict_to_kohya(both).items()}, "kohya.safetensors")

expected = {}
for prefix, model in (("unet", unet), ("text_encoder", text)):
    for name, module in model.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "lora_A") and "default" in module.lora_A:
            delta = module.get_delta_weight("default").detach().double().numpy()
            expected[f"delta:{prefix}.{name}"] = np.linalg.svd(delta, compute_uv=False)
merged = unet.merge_and_unload() if hasattr(unet, "merge_and_unload") else None
if merged is None:  # diffusers' models: fuse the adapter into the weights
    unet.fuse_lora()
    merged = unet
for name, module in merged.named_modules():
    if f"delta:unet.{name}" in expected:
        W = module.base_layer.weight if hasattr(module, "base_layer") else module.weight
        expected[f"merged:unet.{name}"] = np.linalg.svd(W.detach().double().numpy(), compute_uv=False)
np.savez("expected.npz", **expected)
print(len(expected), "references")
