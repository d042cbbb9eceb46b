"""DDIM inversion of an image latent and DDIM denoising back (no classifier-free guidance, η = 0)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, UNet2DConditionModel

from .errors import DragCancelled


def drag_timesteps(scheduler: DDIMScheduler, n_steps: int, n_inverted: int) -> torch.Tensor:
    """The denoising timesteps from the inverted step down to the end: 35 of 50 on SD gives 681, 661, …, 1."""
    scheduler.set_timesteps(n_steps)
    return scheduler.timesteps[n_steps - n_inverted :]


@torch.no_grad()
def ddim_invert(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    latent: torch.Tensor,
    text: torch.Tensor,
    n_steps: int,
    n_inverted: int,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    before_unet: Callable[[int], None] | None = None,
    trajectory: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run DDIM backwards from the clean latent z_0 for `n_inverted` of `n_steps` steps, returning z_t.

    DDIMInverseScheduler with the forward scheduler's config matches the reference's inversion step exactly
    (docs/measurements.md §6): timesteps 1, 21, …, 681 for 35 of 50. `should_stop` is asked before each step; true ends
    the inversion with DragCancelled. `before_unet(t)` is told each UNet call's timestep (DragonDiffusion
    records attention under it), and `trajectory`, when given, receives {timestep: latent after the step}.
    """
    inverse = DDIMInverseScheduler.from_config(scheduler.config)
    inverse.set_timesteps(n_steps)
    for k, t in enumerate(inverse.timesteps[:n_inverted]):
        if should_stop and should_stop():
            raise DragCancelled("cancelled while inverting")
        if before_unet:
            before_unet(int(t))
        noise = unet(latent, t, encoder_hidden_states=text).sample
        latent = inverse.step(noise, t, latent).prev_sample
        if trajectory is not None:
            trajectory[int(t)] = latent
        if on_step:
            on_step(k + 1, n_inverted)
    return latent


def ddim_step(scheduler: DDIMScheduler, noise: torch.Tensor, t: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step z_t -> z_{t-1}, differentiable w.r.t. `latent` and `noise`."""
    return scheduler.step(noise, t, latent, eta=0.0).prev_sample
