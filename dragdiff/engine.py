"""DragEngine: prepare an image once (LoRA + DDIM inversion, cached), then drag it as often as wanted."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from PIL import Image

from .attention import reference_attention, self_attention_names
from .cache import TensorCache, cache_key
from .config import DragConfig
from .coords import Geometry
from .denoise import denoise
from .errors import DragError
from .features import supervision_features, unet_features
from .inversion import ddim_invert, drag_timesteps
from .lora import attach_lora, detach_lora, train_lora
from .models import DiffusionModel, load_model
from .motion import drag_latent, mask_loss
from .types import DragRequest, DragResult, Progress, ProgressCallback, StopCallback
from .validation import check_request, effective_mask

LORA_FIELDS = ("seed", "resolution", "lora_steps", "lora_rank", "lora_lr", "lora_batch_size")
INVERSION_FIELDS = ("n_inference_steps", "n_inversion_steps")


@dataclass
class Prepared:
    """What a drag of one image needs and what does not depend on the points: the expensive part."""

    geometry: Geometry
    text: torch.Tensor  # (1, 77, D) prompt embedding
    inverted: torch.Tensor  # z_t, (1, C, h, w)
    lora: dict[str, torch.Tensor] | None  # adapter weights; None when lora_steps == 0
    lora_key: str
    config: DragConfig
    timings: dict[str, float]


def _one_at_a_time(method):
    """Run the method under the engine's lock: the UNet's LoRA adapter and attention processors are state of
    the one shared model, so two edits at once (a server with --gpu-jobs 2) would mix each other's."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class DragEngine:
    """DragDiffusion on one model. `prepare()` is the slow part and is cached; `drag()` edits.

    counts: how often each expensive stage ran or came from the cache (tests count work, not time).
    lock: held by prepare, drag and reconstruct (re-entrant); hold it too for any other use of the model,
    such as a DragonDiffusion edit, that may run beside them.
    """

    def __init__(
        self, model: DiffusionModel | str = "auto", *, device: str | None = None, cache_dir: str | None = None
    ):
        self.model = model if isinstance(model, DiffusionModel) else load_model(model, device)
        self.cache = TensorCache(cache_dir)
        self.counts: Counter[str] = Counter()
        self._attached_lora: str | None = None
        self.lock = threading.RLock()

    def default_config(self, **overrides) -> DragConfig:
        """configs/drag.yaml, then the model's own tuned values (its dragdiff.yaml), then `overrides`."""
        return DragConfig.load(**{**self.model.drag_defaults, **overrides})

    def geometry(self, image_size: tuple[int, int], config: DragConfig) -> Geometry:
        width = config.resolution or self.model.native_resolution
        return Geometry.for_image(image_size, width, self.model.vae_factor, config.supervision_scale)

    @_one_at_a_time
    def prepare(
        self,
        image: Image.Image,
        prompt: str = "",
        config: DragConfig | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> Prepared:
        """LoRA fine-tuning and DDIM inversion of `image` (RGB); each is loaded from the cache when it exists."""
        config = config or self.default_config()
        self._apply_speed_settings(config)
        geometry = self.geometry(image.size, config)
        timings: dict[str, float] = {}
        text = self.model.encode_prompt(prompt)
        pixels = image_to_tensor(image, geometry.work_size)
        image_id = cache_key(list(image.size), image.tobytes())
        lora_key = cache_key("lora-v2", self.model.fingerprint, image_id, prompt, config.pick(*LORA_FIELDS))

        start = time.perf_counter()
        lora = self._lora(pixels, text, config, lora_key, on_progress, should_stop)
        self.use_lora(lora_key, lora)  # inversion runs on the fine-tuned UNet, as in the reference
        timings["lora"] = time.perf_counter() - start

        start = time.perf_counter()
        inversion_key = cache_key("inversion-v1", lora_key, config.pick(*INVERSION_FIELDS), geometry.work_size)
        cached = self.cache.load("inversion", inversion_key)
        if cached is not None:
            self.counts["inversion_cached"] += 1
            inverted = cached["latent"].to(self.model.device)
        else:
            inverted = self._invert(pixels, text, config, on_progress, should_stop)
            self.cache.save("inversion", inversion_key, {"latent": inverted})
        timings["inversion"] = time.perf_counter() - start
        return Prepared(geometry, text, inverted, lora, lora_key, config, timings)

    @_one_at_a_time
    def drag(
        self, request: DragRequest, on_progress: ProgressCallback | None = None, should_stop: StopCallback | None = None
    ) -> DragResult:
        """Move the content at each handle to its target. Raises DragError on bad input (before any work)."""
        # 1. Check the request; an all-empty mask means "everything may change".
        warnings = check_request(request)
        config, mask = request.config, effective_mask(request.mask)
        self._check_blocks(config)
        start = time.perf_counter()
        # 2. LoRA and inversion (cached per image, prompt and settings).
        prepared = self.prepare(request.image, request.prompt, config, on_progress, should_stop)
        geometry, m = prepared.geometry, self.model
        self.use_lora(prepared.lora_key, prepared.lora)
        scheduler = m.scheduler()
        timesteps = drag_timesteps(scheduler, config.n_inference_steps, config.n_inversion_steps)
        # 3. Optimise z_t with motion supervision and point tracking.
        t0 = time.perf_counter()
        handles, targets = geometry.to_grid(request.handles), geometry.to_grid(request.targets)
        trace = self._optimise(prepared, scheduler, timesteps[0], mask, handles, targets, on_progress, should_stop)
        # 4. Denoise [original, edited] with reference-latent control, keep the edited one.
        t1 = time.perf_counter()
        latent = self._denoise(
            prepared.inverted,
            trace.latent.to(m.dtype),
            prepared.text,
            scheduler,
            timesteps,
            config,
            on_progress,
            should_stop,
        )
        # 5. Decode at the working size, back to the input's size.
        t2 = time.perf_counter()
        with torch.no_grad():
            image = tensor_to_image(m.decode(latent), request.image.size)
        t3 = time.perf_counter()
        timings = {**prepared.timings, "drag": t1 - t0, "denoise": t2 - t1, "decode": t3 - t2, "total": t3 - start}
        return DragResult(
            image=image,
            handle_track=[geometry.from_grid(h) for h in trace.handles],
            steps_used=trace.steps,
            stopped_early=trace.reached,
            timings=timings,
            seed=config.seed,
            config=config,
            model=m.spec,
            warnings=warnings,
        )

    def _apply_speed_settings(self, config: DragConfig) -> None:
        """Memory layout, compilation and VAE tiling as the config asks (unchanged results up to rounding)."""
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model.unet.to(memory_format=layout)
        compile_convolutions(self.model.unet, config.compile_convolutions)
        if config.vae_tiling:
            self.model.vae.enable_tiling()
        else:
            self.model.vae.disable_tiling()

    def _check_blocks(self, config: DragConfig) -> None:
        """Block indices must exist in this model, and reference attention must control something."""
        count = len(self.model.unet.up_blocks)
        for name in ("feature_blocks", "reference_attention_blocks"):
            bad = [i for i in getattr(config, name) if i >= count]
            if bad:
                raise DragError(f"{name}: this model's UNet has up_blocks 0-{count - 1}, not {bad}")
        if config.reference_attention and not self_attention_names(self.model.unet, config.reference_attention_blocks):
            with_attention = [i for i in range(count) if self_attention_names(self.model.unet, (i,))]
            raise DragError(
                f"reference_attention_blocks {list(config.reference_attention_blocks)} hold no "
                f"self-attention in this model (those with it: {with_attention}); choose among "
                "them, or turn reference_attention off"
            )

    @_one_at_a_time
    def reconstruct(self, image: Image.Image, prompt: str = "", config: DragConfig | None = None) -> Image.Image:
        """Inversion then plain denoising, no edit: what a drag with nothing to do returns."""
        config = config or self.default_config()
        prepared = self.prepare(image, prompt, config)
        self.use_lora(prepared.lora_key, prepared.lora)
        scheduler = self.model.scheduler()
        timesteps = drag_timesteps(scheduler, config.n_inference_steps, config.n_inversion_steps)
        latent = denoise(self.model.unet, scheduler, prepared.inverted, prepared.text, timesteps)
        with torch.no_grad():
            return tensor_to_image(self.model.decode(latent), image.size)

    # -- stages ---------------------------------------------------------------------------------------------

    def _lora(self, pixels, text, config, key, on_progress, should_stop) -> dict[str, torch.Tensor] | None:
        if config.lora_steps == 0:
            return None
        cached = self.cache.load("lora", key)
        if cached is not None:
            self.counts["lora_cached"] += 1
            return cached

        def report(step: int, total: int, loss: float) -> None:
            if on_progress:
                on_progress(Progress("lora", step, total))

        self._attached_lora = None  # training replaces the adapter: if it is stopped, the UNet holds a partial one
        weights = train_lora(
            self.model,
            pixels,
            text,
            steps=config.lora_steps,
            rank=config.lora_rank,
            lr=config.lora_lr,
            batch_size=config.lora_batch_size,
            seed=config.seed,
            size=pixels.shape[-1] // self.model.vae_factor * self.model.vae_factor,  # the working width
            encode_once=config.lora_encode_once,
            fused=config.fused_optimizers,
            on_step=report,
            should_stop=should_stop,
        )
        self.counts["lora_trained"] += 1
        self._attached_lora = key  # training left the adapter attached
        self.cache.save("lora", key, weights)
        return weights

    def use_lora(self, key: str | None, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Make the UNet carry these LoRA weights (or none: `weights` None) without reloading when it already
        does. DragonDiffusion edits call use_lora(None): they run on the plain UNet."""
        if self._attached_lora == key:
            return
        if weights is None:
            detach_lora(self.model.unet)
        else:
            rank = next(v for k, v in weights.items() if "lora_A" in k).shape[0]
            attach_lora(self.model.unet, rank, {k: v.to(self.model.device) for k, v in weights.items()})
        self._attached_lora = key

    def _invert(self, pixels, text, config, on_progress, should_stop=None) -> torch.Tensor:
        latent = self.model.encode_image(pixels)
        report = (lambda k, n: on_progress(Progress("inversion", k, n))) if on_progress else None
        inverted = ddim_invert(
            self.model.unet,
            self.model.scheduler(),
            latent,
            text,
            config.n_inference_steps,
            config.n_inversion_steps,
            report,
            should_stop,
        )
        self.counts["inversion"] += 1
        return inverted

    def _optimise(self, prepared, scheduler, t, mask, handles, targets, on_progress, should_stop):
        m, config, geometry, text = self.model, prepared.config, prepared.geometry, prepared.text
        autocast = torch.autocast(m.device.type, dtype=m.dtype, enabled=m.dtype != torch.float32)
        keep = None if mask is None or config.mask_weight == 0 else latent_keep_mask(mask, geometry.latent_size)
        if keep is not None:  # z⁰_{t-1}: one DDIM step from the unedited z_t, the anchor of the mask term
            with torch.no_grad(), autocast:
                noise = m.unet(prepared.inverted, t, encoder_hidden_states=text).sample
            anchor = scheduler.step(noise.float(), t, prepared.inverted.float()).prev_sample

        def features_and_penalty(latent: torch.Tensor, with_penalty: bool = True):
            penalty = keep is not None and with_penalty
            with autocast:
                features, noise = unet_features(
                    m.unet,
                    latent.to(m.dtype),
                    t,
                    text,
                    config.feature_blocks,
                    need_output=penalty or not config.truncate_unet,
                )
            grid = supervision_features(features, geometry.feature_size)
            if not penalty:
                return grid, None
            previous = scheduler.step(noise.float(), t, latent).prev_sample
            return grid, config.mask_weight * mask_loss(previous, anchor, keep)

        def report(step: int, total: int, current: torch.Tensor) -> None:
            if on_progress:
                left = float((current.float() - targets.round()).norm(dim=1).max()) * geometry.grid_to_image_scale()
                on_progress(Progress("drag", step, total, geometry.from_grid(current), left))

        scaler = torch.amp.GradScaler(m.device.type, enabled=m.dtype == torch.float16)
        with gradient_checkpointing(m.unet, config.gradient_checkpointing):
            return drag_latent(
                prepared.inverted,
                features_and_penalty,
                handles,
                targets,
                steps=config.drag_steps,
                lr=config.drag_lr,
                motion_radius=config.motion_radius,
                tracking_radius=config.tracking_radius,
                stop_distance=config.stop_distance,
                grad_scaler=scaler,
                fused=config.fused_optimizers,
                on_step=report,
                should_stop=should_stop,
            )

    def _denoise(self, original, edited, text, scheduler, timesteps, config, on_progress, should_stop):
        """Denoise the edited z_t beside the original one, whose self-attention K/V it reads (item 1 of 2).

        When nothing was edited both branches are the same, so one plain denoise gives the result exactly.
        """
        report = (lambda k, n: on_progress(Progress("denoise", k, n))) if on_progress else None
        unet = self.model.unet
        if torch.equal(original, edited) or not config.reference_attention:
            return denoise(unet, scheduler, edited, text, timesteps, report, should_stop)
        with reference_attention(unet, config.reference_attention_blocks):
            both = denoise(unet, scheduler, torch.cat([original, edited]), text, timesteps, report, should_stop)
        return both[1:]


def compile_convolutions(unet, enabled: bool) -> None:
    """torch.compile every ResNet block of the UNet (where a CPU spends ~60% of a step: convolutions, with
    their group norms and activations fused around them), or undo it. Only these blocks: compiling the
    whole UNet would recompile whenever attention processors or LoRA adapters change."""
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            compiled = "forward" in module.__dict__  # the compiled forward shadows the class's
            if enabled and not compiled:
                module.forward = torch.compile(module.forward)
            elif compiled and not enabled:
                del module.forward


@contextmanager
def gradient_checkpointing(unet, enabled: bool):
    """Recompute the UNet's block activations in the backward instead of keeping them (less memory)."""
    if not enabled:
        yield
        return
    unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        unet.disable_gradient_checkpointing()


def image_to_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """RGB PIL image -> (1, 3, h, w) float in [-1, 1] at `size` (w, h), resized with Lanczos."""
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def tensor_to_image(pixels: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """(1, 3, h, w) in [-1, 1] -> RGB PIL image resized to `size` (w, h): the input's own size and aspect."""
    array = ((pixels[0].permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).round().clip(0, 255)
    image = Image.fromarray(array.astype(np.uint8))
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def latent_keep_mask(mask: np.ndarray, latent_size: tuple[int, int]) -> torch.Tensor:
    """1 − M on the latent grid, (1, 1, h, w): the share of each latent cell that must not change."""
    editable = torch.from_numpy(mask.astype(np.float32))[None, None]
    width, height = latent_size
    return 1.0 - F.interpolate(editable, (height, width), mode="area")
