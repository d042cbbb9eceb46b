"""Filling with FLUX.1 Fill (Black Forest Labs, 2024), the filler Inpaint4Drag's method lets any inpainting
model be: a rectified-flow transformer that reads the masked image and the mask itself, run whole through
diffusers' FluxFillPipeline with its own text encoders and autoencoder. Only the hole of its output is used.

FLUX.1 Fill is guidance-distilled: it has no classifier-free guidance, only a guidance value embedded like the
timestep, which it was trained to take at 30 (the value of BFL's own inpainting demo and of diffusers'
FluxFillPipeline example)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import FluxFillPipeline
from PIL import Image

from ..errors import DragCancelled

FLUX_GUIDANCE = 30.0  # the distilled guidance FLUX.1 Fill is made for (BFL; diffusers' FluxFillPipeline docs)
FLUX_RESOLUTION = 1024  # FLUX.1's native working width
FLUX_SIZE_STEP = 16  # sizes are whole 2x2 patches of the 8x autoencoder's latent


def is_flux_fill(inpainter: object) -> bool:
    return isinstance(inpainter, FluxFillPipeline)


def run_flux_fill(
    pipe: FluxFillPipeline,
    image: Image.Image,
    hole: np.ndarray,
    prompt: str,
    n_steps: int,
    strength: float,
    seed: int,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Image.Image:
    """Repaint `hole` ((h, w) bool) of `image` (the warped, prefilled image at a working size in whole
    FLUX_SIZE_STEPs); returns the repainted image at that size."""

    def after_step(pipe, k, t, tensors):
        if on_step:
            on_step(k + 1, pipe.num_timesteps)
        if should_stop and should_stop():
            raise DragCancelled("cancelled while inpainting")
        return tensors

    if should_stop and should_stop():
        raise DragCancelled("cancelled while inpainting")
    return pipe(
        prompt=prompt,
        image=image,
        mask_image=Image.fromarray(hole.astype(np.uint8) * 255),
        width=image.width,
        height=image.height,
        strength=strength,
        num_inference_steps=n_steps,
        guidance_scale=FLUX_GUIDANCE,
        generator=torch.Generator("cpu").manual_seed(seed),  # the same noise on every device
        callback_on_step_end=after_step,
    ).images[0]
