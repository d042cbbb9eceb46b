"""SDXL's extra conditioning, carried with the text so that every stage passes it without knowing.

An SDXL UNet needs, beside the text tokens, the pooled text embedding of its second text encoder and six
"micro-conditioning" numbers: the original size, the crop's top-left corner and the target size (Podell et
al., "SDXL", 2023, §2.2). dragdiff's stages (LoRA, inversion, features, motion supervision, reference
attention, denoising, DragonDiffusion's sampler and memory bank, the fill) all call the UNet with one text
tensor, and batch, repeat and concatenate it. So SDXL's text tensor carries one extra token in front: the
pooled embedding, zero-padded to the token width (`pack`). One forward pre-hook on the UNet (`install`)
takes it off again and builds `added_cond_kwargs`; the sizes are those of the latent being denoised, with no
crop, as SDXL's pipelines do for an image generated at its own size. SD 1.x/2.x UNets get no hook.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

MICRO_CONDITIONS = 6  # original height, width; crop top, left; target height, width


def needs_pooled_text(unet_config: Mapping) -> bool:
    """An SDXL-shaped UNet (its config, loaded or read from a file): it adds the pooled text and the sizes to
    its time embedding."""
    return unet_config.get("addition_embed_type") == "text_time"


def pooled_width(unet: UNet2DConditionModel) -> int:
    """Width of the pooled text embedding the UNet expects (1280 on SDXL)."""
    config = unet.config
    return config.projection_class_embeddings_input_dim - MICRO_CONDITIONS * config.addition_time_embed_dim


def pack(tokens: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """(B, T, D) text tokens and (B, P) pooled embedding (P ≤ D) -> (B, 1 + T, D), the pooled one first."""
    first = F.pad(pooled, (0, tokens.shape[-1] - pooled.shape[-1])).unsqueeze(1).to(tokens.dtype)
    return torch.cat([first, tokens], dim=1)


def install(unet: UNet2DConditionModel, vae_factor: int):
    """Unpack the text of every call of an SDXL-shaped `unet` (nothing for others); returns the hook handle."""
    if not needs_pooled_text(unet.config):
        return None
    width = pooled_width(unet)

    def unpack(module, args, kwargs):
        if kwargs.get("added_cond_kwargs"):
            return args, kwargs  # a caller that built them itself
        sample = args[0] if args else kwargs["sample"]
        packed = kwargs["encoder_hidden_states"]
        height, width_px = (side * vae_factor for side in sample.shape[-2:])
        sizes = torch.tensor([height, width_px, 0, 0, height, width_px], device=sample.device, dtype=packed.dtype)
        kwargs = {
            **kwargs,
            "encoder_hidden_states": packed[:, 1:],
            "added_cond_kwargs": {
                "text_embeds": packed[:, 0, :width],
                "time_ids": sizes.expand(packed.shape[0], -1),
            },
        }
        return args, kwargs

    return unet.register_forward_pre_hook(unpack, with_kwargs=True)
