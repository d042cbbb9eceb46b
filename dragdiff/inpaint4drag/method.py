"""Inpaint4Drag (Lu & Han, "Inpaint4Drag: Repurposing Inpainting Models for Drag-Based Image Editing via
Bidirectional Warping", ICCV 2025): warp the painted region along the points (warp.py), then inpaint what the
warp revealed in one short denoising run (fill.py). No LoRA, no inversion, no latent optimisation: a drag costs
a warp of a few ms and n_steps UNet calls. docs/inpaint4drag.md says which line of the reference code
(github.com/Visual-AI/Inpaint4Drag @ 126ac0c) each step follows and where we differ."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import LCMScheduler
from PIL import Image

from ..arrival import check_result
from ..composite import keep_unpainted
from ..config import resolve_config
from ..coords import Geometry
from ..errors import DragError
from ..images import MAX_IMAGE_PIXELS
from ..models import DiffusionModel, load_fast_lora, load_inpainter, load_tiny_vae
from ..pixels import image_to_tensor, tensor_to_image
from ..point_session import Session, session_from_dict
from ..runtime import Runtime
from ..types import DragRequest, EditResult, Progress, ProgressCallback, StopCallback
from ..validation import check_request
from ..work_area import work_area
from .config import SESSION_FORMAT, Inpaint4DragConfig
from .fill import Fill, prefilled, run_fill
from .flux import FLUX_RESOLUTION, FLUX_SIZE_STEP, is_flux_fill, run_flux_fill
from .warp import Warp, warp_request

FAST_ADAPTER = "inpaint4drag-fast"  # the few-step LoRA's adapter name while a fill runs


class Inpaint4Drag:
    """Inpaint4Drag on a Runtime's model: Inpaint4Drag("demo").edit(DragRequest(...)) with the model's defaults.
    The warp alone (warp.warp_request) needs no model: the app draws it while the points move."""

    name = "inpaint4drag"
    config_type = Inpaint4DragConfig
    advice = "a painted region that covers the whole object and the place where it goes"
    request_types = (DragRequest,)
    session_format = SESSION_FORMAT

    def __init__(self, runtime: Runtime | DiffusionModel | str = "auto", *, cache_dir: str | None = None):
        self.runtime = Runtime.of(runtime, cache_dir)
        self.model = self.runtime.model

    def default_config(self, mode: str | None = None, **layers: Any) -> Inpaint4DragConfig:
        """This model's config: dragdiff.config.resolve_config with `layers` over the model's defaults."""
        return resolve_config(Inpaint4DragConfig, self.model, **layers)

    def edit(
        self, request: DragRequest, on_progress: ProgressCallback | None = None, should_stop: StopCallback | None = None
    ) -> EditResult:
        """Move the painted content at each handle to its target and fill what it left. Raises DragError on bad
        input before any work, DragCancelled when stopped. Holds the runtime's lock (the model is shared)."""
        with self.runtime.editing():
            return self._edit(request, on_progress, should_stop)

    def _edit(self, request: DragRequest, on_progress, should_stop) -> EditResult:
        # 1. Check the request; the painted region is what moves (an empty one is an error: nothing to move).
        warnings = check_request(request)
        config = self._config(request.config)
        start = time.perf_counter()
        area = work_area(request.image.size, request.mask, [*request.handles, *request.targets], config)
        job = area.crop(request)
        # 2. Warp the region at the input's own resolution (ref utils/ui_utils.py: warping before resizing).
        warp = warp_request(job, config.band_px, config.refine_region)
        warnings += warp.notes
        t1 = time.perf_counter()
        # 3. Fill the revealed area (and the seam band) at the filler's working size: the inpainting model when
        # one is configured, else the loaded model's own UNet (the plain one: another method may have left its
        # adapter on).
        self.runtime.use_lora(None)
        inpainter = self._inpainter(config)
        warnings += filler_notes(inpainter, config)
        filled = self._fill(job, warp, inpainter, config, on_progress, should_stop)
        t2 = time.perf_counter()
        # 4. Paste: the fill inside the inpaint mask, the warped image elsewhere (ref ui_utils.py:271); outside
        # the painted region the input's own pixels, with the seam every method has.
        mask = Image.fromarray(warp.inpaint.astype(np.uint8) * 255)
        image = Image.composite(filled, Image.fromarray(warp.image), mask)
        if config.preserve_unmasked:
            image = keep_unpainted(job.image, image, job.mask, config.seam_px)
        # 5. Look for each handle's content in the result, as for every method.
        checks = check_result(self.runtime, job.image, image, job.handles, job.targets, job.prompt, config, on_progress)
        image, checks = area.paste(request.image, image), area.checks_from_crop(checks)
        t3 = time.perf_counter()
        timings = {"warp": t1 - start, "inpaint": t2 - t1, "check": t3 - t2, "total": t3 - start}
        return EditResult(
            image=image,
            session=Session.from_request(replace(request, config=config), self.model.spec, checks),
            timings=timings,
            config=config,
            model=self.model.spec,
            warnings=warnings,
            image_check=checks,
        )

    def _fill(self, job: DragRequest, warp: Warp, inpainter, config, on_progress, should_stop) -> Image.Image:
        """The image (the job's size) whose inpaint-mask part replaces the warped image's there."""
        m = self.model
        flux = is_flux_fill(inpainter)
        size_step, native = (FLUX_SIZE_STEP, FLUX_RESOLUTION) if flux else (m.vae_factor, m.native_resolution)
        geometry = Geometry.for_image(job.image.size, config.resolution or native, size_step, 1.0)
        base = prefilled(warp.image, warp.inpaint, warp.moved) if config.prefill else warp.image
        hole = Image.fromarray(warp.inpaint.astype(np.uint8) * 255).resize(geometry.work_size, Image.Resampling.BOX)
        hole = np.asarray(hole) > 0  # a working pixel the hole touches at all is repainted
        prompt = job.prompt if config.fill_prompt else ""
        report = (lambda k, n: on_progress(Progress("inpaint", k, n))) if on_progress else None
        if flux:
            image = Image.fromarray(base).resize(geometry.work_size, Image.Resampling.LANCZOS)
            steps = (config.n_steps, config.strength, config.seed)
            filled = run_flux_fill(inpainter, image, hole, prompt, *steps, report, should_stop)
            return filled.resize(job.image.size, Image.Resampling.LANCZOS)
        pixels = image_to_tensor(Image.fromarray(base), geometry.work_size).to(m.device)
        hole = torch.from_numpy(hole).float()[None, None].to(m.device)
        fill = self._unet_fill(m.unet if inpainter is None else inpainter, prompt, config)
        with self._fast_lora(fill.unet, config):
            decoded = run_fill(
                fill,
                pixels,
                hole,
                config.n_steps,
                config.strength,
                config.guidance_scale,
                config.latent_dilation,
                config.seed,
                report,
                should_stop,
            )
        return tensor_to_image(decoded, job.image.size)

    @contextmanager
    def _fast_lora(self, unet, config: Inpaint4DragConfig):
        """The few-step LoRA on the fill's UNet for the fill alone (loaded once per runtime, removed after, so
        that the shared UNet is the plain one again)."""
        if not config.fast_lora:
            yield
            return
        state, alphas = self.runtime.component(("fast_lora", config.fast_lora), load_fast_lora, self.model)
        unet.load_lora_adapter(dict(state), prefix="unet", adapter_name=FAST_ADAPTER, network_alphas=alphas)
        try:
            yield
        finally:
            unet.delete_adapters(FAST_ADAPTER)

    def _inpainter(self, config: Inpaint4DragConfig):
        """The configured inpainting model (loaded once per runtime), or None: the loaded model fills."""
        if not config.inpaint_model:
            return None
        inpainter = self.runtime.component(("inpaint_model", config.inpaint_model), load_inpainter, self.model)
        if is_flux_fill(inpainter):
            for name in ("tiny_vae", "fast_lora"):
                if getattr(config, name):
                    raise DragError(
                        f"{name} speeds up a Stable Diffusion fill, not FLUX.1 Fill (inpaint_model "
                        f"{config.inpaint_model!r}); set {name} to null"
                    )
        return inpainter

    def _unet_fill(self, unet, prompt: str, config: Inpaint4DragConfig) -> Fill:
        """A UNet fill's parts: the tiny autoencoder when configured, else the model's; its text; its
        scheduler (LCM's with the few-step LoRA)."""
        m, runtime = self.model, self.runtime
        encode, decode = m.encode_image, m.decode
        if config.tiny_vae:
            vae = runtime.component(("tiny_vae", config.tiny_vae), load_tiny_vae, m)
            encode = lambda pixels: vae.encode(pixels.to(m.device, m.dtype)).latents * vae.config.scaling_factor  # noqa: E731
            decode = lambda latent: vae.decode(latent.to(m.dtype) / vae.config.scaling_factor).sample.clamp(-1, 1)  # noqa: E731
        empty = m.encode_prompt("")
        text = m.encode_prompt(prompt) if prompt else empty
        scheduler = LCMScheduler.from_config(m.scheduler_config) if config.fast_lora else m.scheduler()
        return Fill(unet, encode, decode, scheduler, text, empty, m.dtype)

    def _config(self, config: Inpaint4DragConfig | None) -> Inpaint4DragConfig:
        if config is None:
            return self.default_config()
        if not isinstance(config, Inpaint4DragConfig):
            raise DragError(f"request.config: expected an Inpaint4DragConfig or None, got {type(config).__name__}")
        return config

    @classmethod
    def request_from_session(
        cls, data: Any, folder: Path | None, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> tuple[DragRequest, str]:
        """(request, model spec) of a parsed Inpaint4Drag session; errors name the field."""
        session = session_from_dict(data, folder, Inpaint4DragConfig, max_pixels=max_pixels)
        return session.to_request(), session.model


def filler_notes(inpainter, config: Inpaint4DragConfig) -> list[str]:
    """What the user should know about the filler: a setting it does not use."""
    if is_flux_fill(inpainter) and config.guidance_scale > 1.0:
        return [
            f"guidance_scale {config.guidance_scale:g} was not used: FLUX.1 Fill has no classifier-free guidance "
            "(it runs at its distilled guidance, 30)"
        ]
    return []
