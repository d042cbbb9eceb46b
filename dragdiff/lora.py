"""Identity-preserving LoRA: fine-tune the UNet's attention projections on the one image being edited.

Reference (utils/lora_utils.py): rank 16 on to_q/to_k/to_v/to_out.0 of every attention, AdamW lr 5e-4,
80 steps of batch 4 random crops, uniform timesteps, MSE on ε (on v for v-prediction models).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from .errors import DragCancelled
from .models import DiffusionModel

ADAPTER = "dragdiff"
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


def attach_lora(unet: UNet2DConditionModel, rank: int, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Give the UNet a fresh LoRA adapter (gaussian init, scale 1) in fp32, or load `weights` into it."""
    detach_lora(unet)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGET_MODULES)
    unet.add_adapter(config, adapter_name=ADAPTER)
    for param in lora_parameters(unet):
        param.data = param.data.float()  # trainable weights stay fp32 under an fp16 base (mixed precision)
    if weights is not None:
        set_peft_model_state_dict(unet, weights, adapter_name=ADAPTER)


def detach_lora(unet: UNet2DConditionModel) -> None:
    if getattr(unet, "peft_config", None) and ADAPTER in unet.peft_config:
        unet.delete_adapters(ADAPTER)


def lora_parameters(unet: UNet2DConditionModel) -> list[torch.nn.Parameter]:
    return [p for n, p in unet.named_parameters() if "lora_" in n]


def lora_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The adapter's weights, detached fp32 CPU copies (what the cache stores as safetensors)."""
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def train_lora(
    model: DiffusionModel,
    image: torch.Tensor,
    text: torch.Tensor,
    *,
    steps: int,
    rank: int,
    lr: float,
    batch_size: int,
    seed: int,
    size: int | None = None,
    encode_once: bool = True,
    fused: bool = False,
    on_step: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Fine-tune a LoRA on `image` (1, 3, H, W) in [-1, 1] with prompt embedding `text`; returns its weights.

    The adapter stays attached to `model.unet`. Every random choice (init, crops, noise, timesteps) is drawn
    from `seed`, so the same inputs give the same weights. `encode_once` VAE-encodes each crop position once
    (the same posterior every time it is drawn) instead of at every step; `fused` uses fused AdamW. Crops are
    `size` px (the working resolution; default the model's native size, as the reference's 512 for SD 1.5).
    """
    torch.manual_seed(seed)  # peft's gaussian init uses the global generator
    attach_lora(model.unet, rank)
    generator = torch.Generator().manual_seed(seed)
    params = lora_parameters(model.unet)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, fused=fused or None)
    noise_schedule = DDIMScheduler.from_config(model.scheduler_config)
    latents = _latent_sampler(model, image, size or model.native_resolution, generator, encode_once)
    text = text.expand(batch_size, -1, -1)
    model.unet.train()
    try:
        for step in range(steps):
            if should_stop and should_stop():
                raise DragCancelled("cancelled while training the LoRA")
            loss = _lora_loss(model, noise_schedule, latents(batch_size), text, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step:
                on_step(step + 1, steps, float(loss.detach()))
    finally:
        model.unet.eval()
    return lora_state_dict(model.unet)


def _lora_loss(
    model: DiffusionModel, schedule: DDIMScheduler, latent: torch.Tensor, text: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Denoising loss of one batch of latents: MSE between the UNet's prediction and the true ε (or v)."""
    noise = torch.randn(latent.shape, generator=generator).to(latent)
    t = torch.randint(0, schedule.config.num_train_timesteps, (latent.shape[0],), generator=generator)
    t = t.to(model.device)
    noisy = schedule.add_noise(latent, noise, t)
    target = schedule.get_velocity(latent, noise, t) if schedule.config.prediction_type == "v_prediction" else noise
    with torch.autocast(model.device.type, dtype=model.dtype, enabled=model.dtype != torch.float32):
        prediction = model.unet(noisy, t, encoder_hidden_states=text).sample
    return F.mse_loss(prediction.float(), target.float())


def _latent_sampler(
    model: DiffusionModel, image: torch.Tensor, size: int, generator: torch.Generator, encode_once: bool
) -> Callable[[int], torch.Tensor]:
    """Latents of random crops (the reference's augmentation: size×size crops of the image resized so its short
    side is `size`), each a sample of the VAE posterior. With `encode_once` each crop position's
    posterior is computed once and reused (a square image has one position: one VAE pass in all)."""
    _, _, height, width = image.shape
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(image, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    resized = resized.to(model.device, model.dtype)
    posteriors: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def encode(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = model.vae.encode(crops).latent_dist
        return posterior.mean, posterior.std

    def posterior_at(y: int, x: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (y, x) not in posteriors:
            posteriors[y, x] = encode(resized[:, :, y : y + size, x : x + size])
        return posteriors[y, x]

    def latents(batch: int) -> torch.Tensor:
        tops = torch.randint(0, new_h - size + 1, (batch,), generator=generator).tolist()
        lefts = torch.randint(0, new_w - size + 1, (batch,), generator=generator).tolist()
        if encode_once:
            mean, std = (torch.cat(parts) for parts in zip(*(posterior_at(y, x) for y, x in zip(tops, lefts))))
        else:
            mean, std = encode(torch.cat([resized[:, :, y : y + size, x : x + size] for y, x in zip(tops, lefts)]))
        sample = mean + std * torch.randn(mean.shape, generator=generator).to(mean)
        return (sample - model.latent_shift) * model.vae.config.scaling_factor

    return latents
