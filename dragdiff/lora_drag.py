"""What the LoRA-based point-drag methods share (DragDiffusion, GoodDrag): their common config fields, the
expensive preparation of an image (LoRA fine-tuning + DDIM inversion, cached), and the frame of an edit around
each method's own drag: check the request, choose the work area, prepare, [the method's drag and denoising],
decode, keep what was not painted, look for the handles' content in the result."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from .arrival import check_result
from .attention import reference_attention, self_attention_names
from .cache import cache_key
from .composite import keep_unpainted
from .config import resolve_config
from .coords import Geometry
from .denoise import denoise
from .errors import DragError
from .images import MAX_IMAGE_PIXELS
from .inversion import ddim_invert, drag_timesteps
from .lora import train_lora
from .lora_config import LoraDragConfig
from .models import DiffusionModel
from .motion import DragTrace
from .pixels import image_to_tensor, tensor_to_image
from .point_session import Session, session_from_dict
from .runtime import Runtime, gradient_checkpointing
from .types import DragRequest, DragResult, Progress, ProgressCallback, StopCallback
from .validation import check_request, effective_mask
from .work_area import work_area

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
    config: LoraDragConfig
    timings: dict[str, float]


@dataclass
class Dragged:
    """What a method's own drag stage returns to the frame: the denoised latent z_0 and how the drag went."""

    latent: torch.Tensor
    trace: DragTrace
    timings: dict[str, float]  # "drag" and "denoise" seconds


def one_at_a_time(method):
    """Run the method under the runtime's lock: the UNet's LoRA adapter and attention processors are state
    of the one shared model, so two edits at once (a server with --gpu-jobs 2) would mix each other's."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.runtime.editing():
            return method(self, *args, **kwargs)

    return locked


class LoraDragMethod:
    """The frame of a LoRA-based point drag on a Runtime's model. `prepare()` is the slow part and is cached;
    `edit()` drags. A subclass sets name, config_type, advice and session_format and writes `_drag`."""

    name: ClassVar[str]
    config_type: ClassVar[type[LoraDragConfig]]
    advice: ClassVar[str]  # what to try when the outcome check finds a point short (the app and the CLI say it)
    session_format: ClassVar[str]
    request_types = (DragRequest,)

    def __init__(self, runtime: Runtime | DiffusionModel | str = "auto", *, cache_dir: str | None = None):
        self.runtime = Runtime.of(runtime, cache_dir)
        self.model = self.runtime.model

    def default_config(self, mode: str | None = None, **layers: Any):
        """This model's config for the method: dragdiff.config.resolve_config with `layers` (file=, session=
        and explicit values) over the model's defaults. These methods have no modes."""
        return resolve_config(self.config_type, self.model, **layers)

    def geometry(self, image_size: tuple[int, int], config: LoraDragConfig) -> Geometry:
        width = config.resolution or self.model.native_resolution
        return Geometry.for_image(image_size, width, self.model.vae_factor, config.supervision_scale)

    @one_at_a_time
    def prepare(
        self,
        image: Image.Image,
        prompt: str = "",
        config: LoraDragConfig | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> Prepared:
        """LoRA fine-tuning and DDIM inversion of `image` (RGB); each is loaded from the cache when it exists."""
        config = self._config(config)
        self.runtime.apply_speed_settings(config.channels_last, config.compile_convolutions, config.vae_tiling)
        geometry = self.geometry(image.size, config)
        timings: dict[str, float] = {}
        text = self.model.encode_prompt(prompt)
        pixels = image_to_tensor(image, geometry.work_size)
        image_id = cache_key(list(image.size), image.tobytes())
        lora_key = cache_key("lora-v2", self.model.fingerprint, image_id, prompt, config.pick(*LORA_FIELDS))

        start = time.perf_counter()
        lora = self._lora(pixels, text, config, lora_key, on_progress, should_stop)
        self.runtime.use_lora(lora_key, lora)  # inversion runs on the fine-tuned UNet, as in the references
        timings["lora"] = time.perf_counter() - start

        start = time.perf_counter()
        inversion_key = cache_key("inversion-v1", lora_key, config.pick(*INVERSION_FIELDS), geometry.work_size)
        cached = self.runtime.cache.load("inversion", inversion_key)
        if cached is not None:
            self.runtime.counts["inversion_cached"] += 1
            inverted = cached["latent"].to(self.model.device)
        else:
            inverted = self._invert(pixels, text, config, on_progress, should_stop)
            self.runtime.cache.save("inversion", inversion_key, {"latent": inverted})
        timings["inversion"] = time.perf_counter() - start
        return Prepared(geometry, text, inverted, lora, lora_key, config, timings)

    @one_at_a_time
    def edit(
        self, request: DragRequest, on_progress: ProgressCallback | None = None, should_stop: StopCallback | None = None
    ) -> DragResult:
        """Move the content at each handle to its target. Raises DragError on bad input (before any work)."""
        # 1. Check the request (config None: this model's defaults); an all-empty mask means "all may change".
        warnings = check_request(request)
        config = self._config(request.config)
        self._check_blocks(config)
        start = time.perf_counter()
        # 1b. Where to work: the whole image, or (work_area "region") a crop around the mask and the points.
        points = [*request.handles, *request.targets]
        area = work_area(request.image.size, effective_mask(request.mask), points, config)
        job = area.crop(request)
        mask = effective_mask(job.mask)
        # 2. LoRA and inversion (cached per image, prompt and settings).
        prepared = self.prepare(job.image, job.prompt, config, on_progress, should_stop)
        geometry, m = prepared.geometry, self.model
        self.runtime.use_lora(prepared.lora_key, prepared.lora)
        # 3-4. The method's own drag of the inverted latent, and its denoising to z_0.
        handles, targets = (geometry.to_grid(points).to(m.device) for points in (job.handles, job.targets))
        dragged = self._drag(prepared, mask, handles, targets, on_progress, should_stop)
        # 5. Decode at the working size, back to the input's (or crop's) size; outside the mask (and its seam)
        # the input's own pixels are kept (preserve_unmasked); a crop goes back in its place.
        t2 = time.perf_counter()
        with torch.no_grad():
            image = tensor_to_image(m.decode(dragged.latent), job.image.size)
        if config.preserve_unmasked:
            image = keep_unpainted(job.image, image, mask, config.seam_px)
        # 6. Look for each handle's content in the result: the verdict of the picture, beside the tracker's.
        t3 = time.perf_counter()
        checks = check_result(self.runtime, job.image, image, job.handles, job.targets, job.prompt, config, on_progress)
        image, checks = area.paste(request.image, image), area.checks_from_crop(checks)
        t4 = time.perf_counter()
        timings = {**prepared.timings, **dragged.timings, "decode": t3 - t2, "check": t4 - t3}
        timings["total"] = t4 - start
        trace = dragged.trace
        return DragResult(
            image=image,
            image_check=checks,
            session=Session.from_request(replace(request, config=config), m.spec, checks),
            handle_track=[area.points_from_crop(geometry.from_grid(h)) for h in trace.handles],
            steps_used=trace.steps,
            tracker_reached_targets=trace.reached,
            timings=timings,
            seed=config.seed,
            config=config,
            model=m.spec,
            warnings=warnings,
        )

    def _drag(self, prepared, mask, handles, targets, on_progress, should_stop) -> Dragged:
        """The method's own steps 3-4: drag prepared.inverted so that the features at `handles` ((P, 2) float
        (row, col) on the feature grid) reach `targets`, keeping outside `mask` (H×W bool or None), and denoise."""
        raise NotImplementedError

    def _config(self, config: LoraDragConfig | None):
        if config is None:
            return self.default_config()
        if not isinstance(config, self.config_type):
            raise DragError(
                f"request.config: expected a {self.config_type.__name__} or None, got {type(config).__name__}"
            )
        return config

    @classmethod
    def request_from_session(
        cls, data: Any, folder: Path | None, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> tuple[DragRequest, str]:
        """(request, model spec) of a parsed session of this method; errors name the field."""
        session = session_from_dict(data, folder, cls.config_type, max_pixels=max_pixels)
        return session.to_request(), session.model

    def _check_blocks(self, config: LoraDragConfig) -> None:
        """Block indices must exist in this model, and reference attention must control something."""
        count = len(self.model.unet.up_blocks)
        for name in ("feature_blocks", "reference_attention_blocks"):
            self.runtime.check_blocks(name, getattr(config, name))
        if config.reference_attention and not self_attention_names(self.model.unet, config.reference_attention_blocks):
            with_attention = [i for i in range(count) if self_attention_names(self.model.unet, (i,))]
            raise DragError(
                f"reference_attention_blocks {list(config.reference_attention_blocks)} hold no "
                f"self-attention in this model (those with it: {with_attention}); choose among "
                "them, or turn reference_attention off"
            )

    @one_at_a_time
    def reconstruct(self, image: Image.Image, prompt: str = "", config: LoraDragConfig | None = None) -> Image.Image:
        """Inversion then plain denoising, no edit: what a drag with nothing to do returns."""
        config = self._config(config)
        prepared = self.prepare(image, prompt, config)
        self.runtime.use_lora(prepared.lora_key, prepared.lora)
        scheduler = self.model.scheduler()
        timesteps = drag_timesteps(scheduler, config.n_inference_steps, config.n_inversion_steps)
        latent = denoise(self.model.unet, scheduler, prepared.inverted, prepared.text, timesteps)
        with torch.no_grad():
            return tensor_to_image(self.model.decode(latent), image.size)

    # -- shared stages ----------------------------------------------------------------------------------------

    def _lora(self, pixels, text, config, key, on_progress, should_stop) -> dict[str, torch.Tensor] | None:
        if config.lora_steps == 0:
            return None
        cached = self.runtime.cache.load("lora", key)
        if cached is not None:
            self.runtime.counts["lora_cached"] += 1
            return cached

        def report(step: int, total: int, loss: float) -> None:
            if on_progress:
                on_progress(Progress("lora", step, total))

        self.runtime.lora_replaced(None)  # training replaces the adapter: stopped, the UNet holds a partial one
        with gradient_checkpointing(self.model.unet, config.gradient_checkpointing):
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
        self.runtime.counts["lora_trained"] += 1
        self.runtime.lora_replaced(key)  # training left the adapter attached
        self.runtime.cache.save("lora", key, weights)
        return weights

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
        self.runtime.counts["inversion"] += 1
        return inverted

    def _denoise(self, original, edited, text, scheduler, timesteps, config, on_progress, should_stop, done=0):
        """Denoise the edited latent beside the original one, whose self-attention K/V it reads in
        config.reference_attention_blocks; `done` denoising steps were already taken (for the progress).

        When nothing was edited both branches are the same, so one plain denoise gives the result exactly.
        """
        total = done + len(timesteps)
        report = (lambda k, n: on_progress(Progress("denoise", done + k, total))) if on_progress else None
        unet, dtype = self.model.unet, self.model.dtype
        original, edited = original.to(dtype), edited.to(dtype)  # the inversion may return fp32 under a half UNet
        if torch.equal(original, edited) or not config.reference_attention:
            return denoise(unet, scheduler, edited, text, timesteps, report, should_stop)
        with reference_attention(unet, config.reference_attention_blocks):
            both = denoise(unet, scheduler, torch.cat([original, edited]), text, timesteps, report, should_stop)
        return both[1:]
