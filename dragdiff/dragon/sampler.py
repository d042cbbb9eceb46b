"""DDIM inversion that keeps the whole trajectory (and fills the memory bank), and guided DDIM sampling with
classifier-free guidance, feature-correspondence guidance and, for the DiffEditor variant, regional
stochastic steps and time travel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from ..errors import DragCancelled
from ..inversion import ddim_invert
from ..prediction import x0_and_eps
from .image_prompt import ImagePromptState
from .memory import MemoryControl

REFERENCE_STEPS = 50  # the official schedules are stated for 50 steps; other counts map onto that scale


@dataclass(frozen=True)
class StepPlan:
    guided: bool  # feature-correspondence guidance on this step
    stochastic: bool  # D+: DDIM eta = sde_strength inside the edit region
    time_travel: bool  # D+: redo this step after re-noising back to its timestep


def step_plan(variant: str, n_steps: int, guided_until: int = 30) -> list[StepPlan]:
    """Which sampling steps get what, in the official schedules at 50 steps (docs/dragondiffusion.md):
    dragon: guidance on every step < guided_until (30); diffeditor (D+): guidance on steps 0-9 and the even
    steps 10-28, regional stochastic steps 11-19, time travel on 22, 24, 26 and 28."""
    plans = []
    for i in range(n_steps):
        j = i * REFERENCE_STEPS / n_steps  # this step's place on the 50-step scale
        if variant == "dragon":
            plans.append(StepPlan(j < guided_until, False, False))
        else:
            guided = j < min(10, guided_until) or (j < guided_until and j % 2 == 0)
            plans.append(StepPlan(guided, 11 <= j <= 19, j in (22, 24, 26, 28)))
    return plans


def invert(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    latent: torch.Tensor,
    text: torch.Tensor,
    n_steps: int,
    control: MemoryControl,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[int, torch.Tensor]:
    """Full DDIM inversion of the clean latent: {timestep: latent at that noise level}, with every decoder
    self-attention's K/V recorded in `control.bank` under the timestep of the UNet call."""
    trajectory: dict[int, torch.Tensor] = {}
    control.mode = "record"
    try:
        ddim_invert(
            unet,
            scheduler,
            latent,
            text,
            n_steps,
            n_steps,
            on_step,
            should_stop,
            before_unet=lambda t: setattr(control, "timestep", t),
            trajectory=trajectory,
        )
    finally:
        control.mode = "off"
    return trajectory


class GuidedSampler:
    """DDIM from z_T with CFG; on guided steps `guidance(z, t)` returns a gradient (in ε units) that shifts
    the predicted x0 only, so the direction term of the step stays the model's own (as the reference does).
    image_prompt: the image tokens' state (image_prompt.py), given weight only in the noise prediction."""

    def __init__(
        self,
        unet,
        scheduler: DDIMScheduler,
        text: torch.Tensor,
        uncond: torch.Tensor,
        cfg_scale: float,
        image_prompt: ImagePromptState | None = None,
    ):
        self.unet, self.scheduler, self.cfg_scale = unet, scheduler, cfg_scale
        self.text = torch.cat([uncond, text])
        self.image_prompt = image_prompt

    def noise(self, z: torch.Tensor, t, image_scale: float = 0.0) -> torch.Tensor:
        if self.image_prompt is not None:
            self.image_prompt.scale = image_scale
        try:
            if self.cfg_scale == 1:
                return self.unet(z, t, encoder_hidden_states=self.text[1:]).sample
            uncond, cond = self.unet(torch.cat([z, z]), t, encoder_hidden_states=self.text).sample.chunk(2)
            return uncond + self.cfg_scale * (cond - uncond)
        finally:
            if self.image_prompt is not None:
                self.image_prompt.scale = 0.0  # guidance features and time travel read text only

    def eps(self, output: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """ε̂ of the UNet's output at z (noise level ᾱ = alpha), whatever the model predicts (ε or v)."""
        return x0_and_eps(output, z, alpha, self.scheduler.config.prediction_type)[1]

    def alphas(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scheduler
        previous = int(t) - s.config.num_train_timesteps // s.num_inference_steps
        a_prev = s.alphas_cumprod[previous] if previous >= 0 else s.final_alpha_cumprod
        return s.alphas_cumprod[int(t)], a_prev

    def step(self, z, t, guidance_grad=None, eta_map=None, generator=None, image_scale=0.0) -> torch.Tensor:
        """z_t -> z_{t-1}; eta_map: (1, 1, h, w) DDIM eta per latent cell (None: deterministic)."""
        a_t, a_prev = self.alphas(t)
        eps = self.eps(self.noise(z, t, image_scale).float(), z.float(), a_t)
        shifted = eps if guidance_grad is None else eps + guidance_grad
        x0 = (z.float() - (1 - a_t).sqrt() * shifted) / a_t.sqrt()
        deterministic = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        if eta_map is None:
            return deterministic.to(z.dtype)
        sigma = eta_map * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
        noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device)
        stochastic = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps + sigma * noise
        return stochastic.to(z.dtype)

    def renoise(self, z_prev, t) -> torch.Tensor:
        """One DDIM inversion step z_{t-1} -> z_t (time travel)."""
        a_t, a_prev = self.alphas(t)
        output = self.unet(z_prev, t, encoder_hidden_states=self.text[1:]).sample.float()
        eps = self.eps(output, z_prev.float(), a_prev)  # as diffusers' inverse step: at the current level
        x0 = (z_prev.float() - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        return (a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps).to(z_prev.dtype)


def sample(
    sampler: GuidedSampler,
    start: torch.Tensor,
    plans: list[StepPlan],
    *,
    guidance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    memory_mode: Callable[[int], str],
    control: MemoryControl,
    region: torch.Tensor,
    sde_strength: float,
    time_travel_repeats: int,
    seed: int,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    image_scale: Callable[[int], float] = lambda i: 0.0,
) -> torch.Tensor:
    """The generation branch from `start` over the sampler's timesteps. region: (1, 1, h, w) edit region;
    image_scale(i): the image prompt's weight on step i."""
    generator = torch.Generator().manual_seed(seed)
    z = start
    timesteps = sampler.scheduler.timesteps
    try:
        for i, t in enumerate(timesteps):
            plan = plans[i]
            control.timestep = int(t)
            repeats = 1 + (time_travel_repeats if plan.time_travel else 0)
            for repeat in range(repeats):
                if should_stop and should_stop():
                    raise DragCancelled("cancelled while editing")
                control.mode = memory_mode(i)  # the guidance's own forward reads it too
                grad = guidance(z, t) if plan.guided else None
                with torch.no_grad():
                    eta = region * sde_strength if plan.stochastic else None
                    z_prev = sampler.step(z, t, grad, eta, generator, image_scale(i))
                    if repeat < repeats - 1:
                        z = sampler.renoise(z_prev, t)
            z = z_prev
            if on_step:
                on_step(i + 1, len(timesteps))
    finally:
        control.mode = "off"
    return z
