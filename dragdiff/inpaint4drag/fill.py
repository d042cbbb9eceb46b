"""Filling what the warp revealed (Inpaint4Drag sec. 3.2): one short denoising run over the inpaint mask.

Two fillers, one loop: with an SD inpainting UNet (9 input channels: latent, mask, masked-image latent) the
model sees the known pixels itself, as in the reference (utils/ui_utils.py, a diffusers inpainting pipeline);
with any other model (the bundled demo, tiny, plain SD 1.5) it is blended-latent inpainting (Avrahami et al.,
"Blended Latent Diffusion", SIGGRAPH 2023): after every step the latent outside the mask is replaced by the
known image's latent noised to the same timestep, so only the hole is generated and it must agree with its
surroundings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from ..errors import DragCancelled


@dataclass
class Fill:
    """What one fill runs on: the denoiser, the autoencoder and how to condition them."""

    unet: torch.nn.Module  # 4 input channels (blended) or 9 (an inpainting UNet)
    encode: Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) in [-1, 1] -> scaled latent
    decode: Callable[[torch.Tensor], torch.Tensor]  # scaled latent -> (1, 3, H, W) in [-1, 1]
    scheduler: object  # DDIM over the model's noise schedule, or LCM's with a few-step LoRA
    text: torch.Tensor  # (1, 77, D): the fill's prompt
    empty: torch.Tensor  # (1, 77, D): the empty prompt, for guidance
    dtype: torch.dtype

    @property
    def inpainting(self) -> bool:
        return self.unet.config.in_channels == 9


def prefilled(image: np.ndarray, hole: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """`image` ((H, W, 3) uint8) with `hole` filled by OpenCV's Telea inpainting from what did not move:
    plausible colours for the encoder to start from instead of the old content. The moved content is left out
    of the sources (it would bleed into the hole as a ghost of itself), then put back."""
    if not hole.any():
        return image
    unknown = (hole | moved).astype(np.uint8) * 255
    filled = cv2.inpaint(np.ascontiguousarray(image), unknown, 3, cv2.INPAINT_TELEA)
    return np.where(hole[..., None], filled, image)


def latent_mask(hole: torch.Tensor, latent_size: tuple[int, int], dilation: int) -> torch.Tensor:
    """(1, 1, h, w) float: 1 at every latent cell that any hole pixel touches (max-pooling, not averaging: a
    partly revealed cell must be repainted too), grown by `dilation` cells."""
    width, height = latent_size
    cells = F.adaptive_max_pool2d(hole, (height, width))
    if dilation > 0:
        cells = F.max_pool2d(cells, 2 * dilation + 1, stride=1, padding=dilation)
    return cells


@torch.no_grad()
def run_fill(
    fill: Fill,
    pixels: torch.Tensor,
    hole: torch.Tensor,
    n_steps: int,
    strength: float,
    guidance_scale: float,
    dilation: int,
    seed: int,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Repaint `hole` ((1, 1, H, W) float, 1 = repaint) of `pixels` ((1, 3, H, W) in [-1, 1], the warped and
    prefilled image at the working size); returns the decoded image (1, 3, H, W). Only the hole of it is new:
    the caller pastes it over the warped image."""
    scheduler = fill.scheduler
    scheduler.set_timesteps(n_steps)
    timesteps = scheduler.timesteps[n_steps - max(1, round(n_steps * strength)) :]
    known = fill.encode(pixels).float()
    cells = latent_mask(hole, (known.shape[-1], known.shape[-2]), dilation).to(known)
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(known.shape, generator=generator).to(known)
    # strength 1 starts from pure noise, as the reference; below, from the known image noised to the start
    latent = noise if strength >= 1.0 else scheduler.add_noise(known, noise, timesteps[:1])
    extra = None
    if fill.inpainting:  # the inpainting UNet's extra inputs: the mask and the latent of the image without the hole
        masked = fill.encode(pixels * (hole < 0.5)).float()
        extra = torch.cat([F.interpolate(hole, size=known.shape[-2:]).to(known), masked], dim=1)
    # DDIM: deterministic (eta 0); LCM re-noises between its steps, from the seeded generator
    options = {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {"generator": generator}
    for k, t in enumerate(timesteps):
        if should_stop and should_stop():
            raise DragCancelled("cancelled while inpainting")
        noise_pred = _predict(fill, latent, t, extra, guidance_scale)
        latent = scheduler.step(noise_pred, t, latent, **options).prev_sample
        if extra is None:  # blended: outside the hole, the known image at the noise level reached
            after = timesteps[k + 1 : k + 2]
            background = scheduler.add_noise(known, noise, after) if len(after) else known
            latent = cells * latent + (1 - cells) * background
        if on_step:
            on_step(k + 1, len(timesteps))
    return fill.decode(latent).float()


def _predict(fill: Fill, latent: torch.Tensor, t, extra: torch.Tensor | None, guidance_scale: float) -> torch.Tensor:
    """The UNet's noise prediction, with classifier-free guidance against the empty prompt when asked."""
    inputs = latent if extra is None else torch.cat([latent, extra], dim=1)
    if guidance_scale <= 1.0:
        return fill.unet(inputs.to(fill.dtype), t, encoder_hidden_states=fill.text).sample.float()
    both = fill.unet(
        torch.cat([inputs, inputs]).to(fill.dtype), t, encoder_hidden_states=torch.cat([fill.empty, fill.text])
    ).sample.float()
    unconditional, conditional = both.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)
