"""DDIM denoising from the inverted step to the clean latent."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from .errors import DragCancelled
from .inversion import ddim_step


@torch.no_grad()
def denoise(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    latents: torch.Tensor,
    text: torch.Tensor,
    timesteps: torch.Tensor,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Denoise (B, C, h, w) latents over `timesteps` (η = 0, no guidance); `text` is broadcast over the batch."""
    text = text.expand(latents.shape[0], -1, -1)
    for k, t in enumerate(timesteps):
        if should_stop and should_stop():
            raise DragCancelled("cancelled while denoising")
        noise = unet(latents, t, encoder_hidden_states=text).sample
        latents = ddim_step(scheduler, noise, t, latents)
        if on_step:
            on_step(k + 1, len(timesteps))
    return latents
