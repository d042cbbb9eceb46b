"""Text-to-image sampling (DDIM with classifier-free guidance), to check and show what a model learned."""

from __future__ import annotations

import torch
from PIL import Image

from .models import DiffusionModel
from .pixels import tensor_to_image


@torch.no_grad()
def generate(
    model: DiffusionModel, prompts: list[str], steps: int = 30, guidance: float = 4.0, seed: int = 0
) -> list[Image.Image]:
    """One image per prompt at the model's native size: ε = ε(∅) + w·(ε(c) − ε(∅)) (Ho & Salimans 2022)."""
    size = model.unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((len(prompts), model.latent_channels, size, size), generator=generator)
    latents = latents.to(model.device, model.dtype)
    text = torch.cat([model.encode_prompt(p) for p in ["", *prompts]])
    text = torch.cat([text[:1].expand(len(prompts), -1, -1), text[1:]])
    scheduler = model.scheduler()
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        uncond, cond = model.unet(torch.cat([latents, latents]), t, encoder_hidden_states=text).sample.chunk(2)
        latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
    pixels = model.decode(latents)
    return [tensor_to_image(p[None], (size * model.vae_factor,) * 2) for p in pixels]
