"""What a UNet's output means, and the two quantities every hand-written DDIM step needs from it.

Stable Diffusion 1.x and 2.x-base predict the noise ε; SD 2.x at 768 px predicts the velocity
v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho, "Progressive distillation", ICLR 2022, §4); some models predict x₀
itself. The scheduler config's `prediction_type` says which. diffusers' schedulers convert inside `step()`;
code that writes its own DDIM step (DragonDiffusion's guided sampler) converts here, so that every stage reads
the model's output the same way.
"""

from __future__ import annotations

import torch

from .errors import DragError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def x0_and_eps(
    output: torch.Tensor, latent: torch.Tensor, alpha: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂₀, ε̂) of the UNet's `output` at `latent` = √ᾱ·x₀ + √(1−ᾱ)·ε, where ᾱ = `alpha` (alphas_cumprod of
    the latent's noise level)."""
    a, b = alpha.sqrt(), (1 - alpha).sqrt()
    if prediction_type == "epsilon":
        return (latent - b * output) / a, output
    if prediction_type == "v_prediction":
        return a * latent - b * output, a * output + b * latent
    if prediction_type == "sample":
        return output, (latent - a * output) / b
    raise DragError(f"prediction_type: {prediction_type!r} is not one of {list(PREDICTION_TYPES)}")
