"""Tiny IP-Adapter weights in the released layouts (seeded random values) for a given UNet, so that the image
prompt's loading, attention and scheduling are tested without the real CLIP ViT-H and adapter weights."""

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

ENCODER = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
    projection_dim=16,
)
TOKENS = 4


def image_prompt_weights(unet, plus: bool = True, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """{"image_proj": ..., "ip_adapter": ...} with the keys and shapes of IP-Adapter's releases."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    width, hidden = unet.config.cross_attention_dim, ENCODER["hidden_size"]
    if plus:  # perceiver resampler: 1 layer, inner width 32, feed-forward ×2
        layer = {
            "0.norm1.weight": torch.ones(width),
            "0.norm1.bias": torch.zeros(width),
            "0.norm2.weight": torch.ones(width),
            "0.norm2.bias": torch.zeros(width),
            "0.to_q.weight": rand(32, width),
            "0.to_kv.weight": rand(64, width),
            "0.to_out.weight": rand(width, 32),
            "1.0.weight": torch.ones(width),
            "1.0.bias": torch.zeros(width),
            "1.1.weight": rand(2 * width, width),
            "1.3.weight": rand(width, 2 * width),
        }
        projection = {
            "latents": rand(1, TOKENS, width),
            "proj_in.weight": rand(width, hidden),
            "proj_in.bias": rand(width),
            "proj_out.weight": rand(width, width),
            "proj_out.bias": rand(width),
            "norm_out.weight": torch.ones(width),
            "norm_out.bias": torch.zeros(width),
            **{f"layers.0.{k}": v for k, v in layer.items()},
        }
    else:
        projection = {
            "proj.weight": rand(TOKENS * width, ENCODER["projection_dim"]),
            "proj.bias": rand(TOKENS * width),
            "norm.weight": torch.ones(width),
            "norm.bias": torch.zeros(width),
        }
    layers = {}
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            inner = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
            layers[f"{index}.to_k_ip.weight"] = rand(inner, width) * 5
            layers[f"{index}.to_v_ip.weight"] = rand(inner, width) * 5
    return {"image_proj": projection, "ip_adapter": layers}


def save_image_prompt(unet, folder: Path, plus: bool = True, pickled: bool = False) -> Path:
    """The adapter file (safetensors, or a torch pickle like DiffEditor's ip_sd15_64.bin) with
    `image_encoder/` beside it, as IP-Adapter's releases lay them out; returns the adapter's path."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**ENCODER)).save_pretrained(folder / "image_encoder")
    weights = image_prompt_weights(unet, plus)
    if pickled:
        torch.save(weights, folder / "ip_adapter.bin")
        return folder / "ip_adapter.bin"
    path = folder / ("ip_adapter_plus.safetensors" if plus else "ip_adapter.safetensors")
    save_file({f"{part}.{k}": v for part, group in weights.items() for k, v in group.items()}, path)
    return path
