"""DragonDiffusion (Mou et al., ICLR 2024) and DiffEditor: training-free edits (move, resize, drag,
appearance, paste) on a Runtime's model. One inversion per image keeps the trajectory and the memory bank;
the edit is sampled from z_T with feature-correspondence guidance (energy.py) and memory-bank attention
(memory.py). docs/dragondiffusion.md says which reference step each part follows."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..arrival import check_result
from ..attention import self_attention_names
from ..composite import grid_region_in_image, keep_unpainted
from ..config import resolve_config
from ..coords import Geometry
from ..errors import DragError
from ..features import supervision_features, unet_features
from ..images import MAX_IMAGE_PIXELS
from ..models import DiffusionModel
from ..pixels import image_to_tensor, tensor_to_image
from ..runtime import Runtime
from ..types import DragRequest, EditResult, Point, Progress, ProgressCallback, StopCallback
from ..work_area import work_area
from . import energy
from .config import DragonConfig
from .image_prompt import ImagePrompt, image_prompt_attention, load_image_prompt
from .memory import MemoryBank, MemoryControl, bank_bytes, memory_attention
from .regions import centre, grid_mask, grow, paste, ring, warp, warp_mask
from .requests import (
    AppearanceRequest,
    ContentDragRequest,
    DragonRequest,
    MoveRequest,
    PasteRequest,
    check_dragon_request,
)
from .sampler import REFERENCE_STEPS, GuidedSampler, invert, sample, step_plan
from .session import FORMAT, DragonSession, request_from_dict

FEATURE_SCALE = 0.25  # features compared at image/4, as the reference resizes them (docs/dragondiffusion.md)
GRADIENT_UNIT = 1000  # the reference multiplies its per-mode constant and UI energy scale by 1e3


@dataclass(kw_only=True)
class DragonResult(EditResult):
    mode: str
    memory_bytes: int  # size of the memory bank(s)


@dataclass
class _Branch:
    """One inverted image: its trajectory {timestep: z_t} and cached guidance features per timestep."""

    trajectory: dict[int, torch.Tensor]
    features: dict[int, torch.Tensor] = field(default_factory=dict)


class DragonDiffusion:
    """DragonDiffusion on a Runtime's model (no LoRA: the UNet is used as it is). `edit` takes a point drag
    (DragRequest, run as the "drag" mode) or a MoveRequest, ContentDragRequest, AppearanceRequest or
    PasteRequest; request.config None means this model's defaults for the request's mode."""

    name = "dragon"
    config_type = DragonConfig
    # what to try when the outcome check finds a point short of its target (the app and the CLI say it)
    advice = "a higher energy_scale, more n_steps, or a mask that covers the whole object"
    request_types = (DragRequest, MoveRequest, ContentDragRequest, AppearanceRequest, PasteRequest)
    session_format = FORMAT

    def __init__(self, runtime: Runtime | DiffusionModel | str = "auto", *, cache_dir: str | None = None):
        self.runtime = Runtime.of(runtime, cache_dir)
        self.model = self.runtime.model

    def default_config(self, mode: str | None = "drag", **layers: Any) -> DragonConfig:
        """This model's config for `mode` (None: a point drag, "drag"): dragdiff.config.resolve_config with
        `layers` (file=, session= and explicit values) over the model's defaults."""
        return resolve_config(DragonConfig, self.model, mode=mode or "drag", **layers)

    def edit(
        self,
        request: DragonRequest | DragRequest,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> DragonResult:
        """The edited image. Raises DragError on bad input before any work, DragCancelled when stopped.
        Holds the runtime's lock: the model (its attention processors, its LoRA) is shared with other methods."""
        if isinstance(request, DragRequest):
            request = ContentDragRequest(**vars(request))
        with self.runtime.editing():
            return self._edit(request, on_progress, should_stop)

    @classmethod
    def request_from_session(
        cls, data: Any, folder: Path | None, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> tuple[DragonRequest, str]:
        """(request, model spec) of a parsed DragonDiffusion session; errors name the field."""
        return request_from_dict(data, folder, max_pixels)

    def _edit(self, request, on_progress, should_stop) -> DragonResult:
        # 1. Check the request and the config (None: this model's defaults for the mode).
        warnings = check_dragon_request(request)
        if request.config is not None and not isinstance(request.config, DragonConfig):
            raise DragError(f"request.config: expected a DragonConfig or None, got {type(request.config).__name__}")
        config = request.config or self.default_config(request.mode)
        # 1b. Where to work: the whole image, or (work_area "region") a crop around what the mode changes;
        # from here on `request` is the request inside that crop, `whole` the one given.
        area = work_area(request.image.size, _changing(request), _area_points(request), config)
        whole, request = request, area.crop(request)
        m, start_time = self.model, time.perf_counter()
        self._check_blocks(config)
        timings: dict[str, float] = {}
        image_prompt = self._load_image_prompt(config, timings)  # before any work: bad paths fail fast
        self.runtime.use_lora(None)  # training-free: the plain UNet
        geometry = Geometry.for_image(
            request.image.size, config.resolution or m.native_resolution, m.vae_factor, FEATURE_SCALE
        )
        text = m.encode_prompt(request.prompt)
        scheduler = m.scheduler()
        scheduler.set_timesteps(config.n_steps)
        control = MemoryControl(MemoryBank(self._bank_device(config, geometry, request, warnings)))
        with memory_attention(m.unet, control, config.memory_blocks):
            # 2. Invert the image (and the reference), recording every self-attention's K/V in the bank.
            base = self._invert(
                request.image, geometry.work_size, text, config, control, "inversion", on_progress, should_stop
            )
            reference, reference_mask = None, None
            if request.mode in ("appearance", "paste"):
                reference, reference_mask = self._invert_reference(
                    request, geometry, config, control, on_progress, should_stop
                )
            timings["inversion"] = time.perf_counter() - start_time
            # 3. The mode's plan: start latent, edit region, energy, memory mode.
            plan = PLAN_BUILDERS[request.mode](request, geometry, base, reference, reference_mask, config)
            control.base_mask, control.reference_mask = plan.mix_masks
            image_tokens = image_prompt.embed(_prompt_images(request)) if image_prompt else None
            sampler = GuidedSampler(m.unet, scheduler, text, m.encode_prompt(""), config.cfg_scale, image_tokens)

            def guidance(z: torch.Tensor, t) -> torch.Tensor:
                return self._guidance(z, t, text, plan, base, reference, control, config, geometry)

            def memory_mode(i: int) -> str:
                j = i * REFERENCE_STEPS / config.n_steps  # the step counts of the config are for 50 steps
                if plan.memory == "mix":
                    return "mix" if j < config.memory_mix_until else "off"
                return plan.memory if j >= config.memory_start else "off"

            def image_scale(i: int) -> float:
                j = i * REFERENCE_STEPS / config.n_steps
                on = image_prompt is not None and config.image_prompt_from <= j < config.image_prompt_until
                return config.image_prompt_scale if on else 0.0

            # 4. Sample from the plan's start with guidance, memory-bank attention and the image prompt.
            report = (lambda k, n: on_progress(Progress("editing", k, n))) if on_progress else None
            t0 = time.perf_counter()
            layers = image_prompt_attention(m.unet, image_prompt, image_tokens) if image_prompt else nullcontext()
            with layers:
                latent = sample(
                    sampler,
                    plan.start,
                    step_plan(config.variant, config.n_steps, config.guided_until),
                    guidance=guidance,
                    memory_mode=memory_mode,
                    control=control,
                    region=plan.region,
                    sde_strength=config.sde_strength,
                    time_travel_repeats=config.time_travel_repeats,
                    seed=config.seed,
                    on_step=report,
                    should_stop=should_stop,
                    image_scale=image_scale,
                )
            timings["editing"] = time.perf_counter() - t0
        # 5. Decode at the working size, back to the input's size; outside the mode's edit region (and its seam)
        # the input's own pixels are kept (preserve_unmasked).
        with torch.no_grad():
            image = tensor_to_image(m.decode(latent), request.image.size)
        if config.preserve_unmasked:
            region = grid_region_in_image(plan.region[0, 0].cpu().numpy() > 0.5, request.image.size)
            image = keep_unpainted(request.image, image, region, config.seam_px)
        # 6. Look for the moved content in the result (a drag's handles, a moved object's centre).
        t0 = time.perf_counter()
        handles, targets = _arrival_points(request)
        checks = check_result(self.runtime, request.image, image, handles, targets, request.prompt, config, on_progress)
        image, checks = area.paste(whole.image, image), area.checks_from_crop(checks)
        timings["check"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start_time
        memory_bytes = control.bank.nbytes + (control.reference.nbytes if control.reference else 0)
        return DragonResult(
            image=image,
            session=DragonSession(replace(whole, config=config), m.spec, checks),
            image_check=checks,
            mode=request.mode,
            timings=timings,
            config=config,
            model=m.spec,
            memory_bytes=memory_bytes,
            warnings=warnings,
        )

    def _load_image_prompt(self, config: DragonConfig, timings: dict) -> ImagePrompt | None:
        """DiffEditor's optional image prompt, when its weights are configured (image_prompt.py)."""
        if config.image_prompt is None:
            return None
        t0, m = time.perf_counter(), self.model
        prompt = load_image_prompt(config.image_prompt, config.image_encoder, m.unet, m.device, m.dtype)
        timings["image_prompt_load"] = time.perf_counter() - t0
        return prompt

    def _check_blocks(self, config: DragonConfig) -> None:
        for name in ("feature_blocks", "memory_blocks"):
            self.runtime.check_blocks(name, getattr(config, name))
        if not self_attention_names(self.model.unet, config.memory_blocks):
            raise DragError(f"memory_blocks {config.memory_blocks}: no decoder self-attention there; use null (all)")

    def _bank_device(self, config: DragonConfig, geometry: Geometry, request, warnings: list[str]):
        """Where the memory bank lives: with the model (None) unless configured for the CPU or, on a GPU, when
        it would take more than half of the free memory (then the CPU, with a warning)."""
        if config.memory_on_cpu:
            return torch.device("cpu")
        if self.model.device.type != "cuda":
            return None
        m = self.model
        images = 2 if request.mode in ("appearance", "paste") else 1
        needed = images * bank_bytes(m.unet, config.memory_blocks, geometry.latent_size, config.n_steps, m.dtype)
        free, _ = torch.cuda.mem_get_info(m.device)
        if needed > free / 2:
            warnings.append(f"the memory bank ({needed / 2**30:.1f} GiB) is kept in CPU memory: the GPU has too little")
            return torch.device("cpu")
        return None

    def _invert_reference(self, request, geometry, config, control, on_progress, should_stop):
        """Invert the reference image (fitted to the working size) into its own memory bank, which becomes
        `control.reference`; returns its branch and its object mask at the working size."""
        image, mask = fit_reference(request.reference, request.reference_mask, geometry.work_size)
        control.reference, control.bank = control.bank, MemoryBank(control.bank.device)
        text = self.model.encode_prompt(request.reference_prompt or request.prompt)
        try:
            branch = self._invert(
                image, geometry.work_size, text, config, control, "reference", on_progress, should_stop
            )
        finally:
            control.bank, control.reference = control.reference, control.bank
        return branch, mask

    def _invert(self, image, work_size, text, config, control, stage, on_progress, should_stop) -> _Branch:
        latent = self.model.encode_image(image_to_tensor(image, work_size))
        report = (lambda k, n: on_progress(Progress(stage, k, n))) if on_progress else None
        scheduler = self.model.scheduler()
        return _Branch(invert(self.model.unet, scheduler, latent, text, config.n_steps, control, report, should_stop))

    def _features(self, latent: torch.Tensor, t, text, config, size) -> torch.Tensor:
        features, _ = unet_features(
            self.model.unet, latent.to(self.model.dtype), t, text, config.feature_blocks, need_output=False
        )
        return supervision_features(features, size)

    def _original(self, branch: _Branch, t, text, config, size, control) -> torch.Tensor:
        """The guidance branch's features at t (no gradient, plain attention), computed once per timestep."""
        if int(t) not in branch.features:
            mode, control.mode = control.mode, "off"
            with torch.no_grad():
                branch.features[int(t)] = self._features(branch.trajectory[int(t)], t, text, config, size)
            control.mode = mode
        return branch.features[int(t)]

    def _guidance(self, z, t, text, plan, base, reference, control, config, geometry) -> torch.Tensor:
        """∂E/∂z_t, the edit terms' gradient inside the edit region and the content term's outside, scaled."""
        size = geometry.feature_size
        original = self._original(base, t, text, config, size, control)
        source = self._original(reference, t, text, config, size, control) if reference else original
        with torch.enable_grad():
            leaf = z.detach().to(self.model.dtype).requires_grad_(True)
            current = self._features(leaf, t, text, config, size)
            edit, content = plan.energy(current, original, source)
            grad_edit = torch.autograd.grad(edit, leaf, retain_graph=True, allow_unused=True)[0]
            grad_content = torch.autograd.grad(content, leaf, allow_unused=True)[0]
        grad_edit = torch.zeros_like(leaf) if grad_edit is None else grad_edit
        grad_content = torch.zeros_like(leaf) if grad_content is None else grad_content
        combined = grad_edit.float() * plan.region + grad_content.float() * (1 - plan.region)
        return combined * config.step_constant * config.energy_scale * GRADIENT_UNIT


@dataclass
class _Plan:
    """What one mode needs while sampling: the start latent, the edit region, the energy and the memory mode."""

    start: torch.Tensor
    region: torch.Tensor  # (1, 1, h, w) float on the latent grid
    energy: object  # (current, original, source) -> (edit, content)
    memory: str
    mix_masks: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)


def _weights(config: DragonConfig) -> dict[str, float]:
    w = config
    return {"edit": w.w_edit, "content": w.w_content, "contrast": w.w_contrast, "inpaint": w.w_inpaint}


def _z_T(branch: _Branch) -> torch.Tensor:
    return branch.trajectory[max(branch.trajectory)]


def _move_plan(request: MoveRequest, geometry: Geometry, base: _Branch, reference, reference_mask, config) -> _Plan:
    """Move/resize: the object's latent pasted at its new place to start; the edit term pulls the moved
    features to the original object's, the contrast term empties its old place."""
    z_T, weights = _z_T(base), _weights(config)
    obj_f = grid_mask(request.mask, geometry.feature_size, z_T.device)
    obj_l = grid_mask(request.mask, geometry.latent_size, z_T.device)
    dx, dy = request.offset.x, request.offset.y
    offset_f = geometry.offset_on(dx, dy, geometry.feature_size)
    offset_l = geometry.offset_on(dx, dy, geometry.latent_size)
    about_f, about_l = centre(obj_f), centre(obj_l)
    moved_f = warp_mask(obj_f, offset_f, request.scale, about_f)
    moved_l = warp_mask(obj_l, offset_l, request.scale, about_l)
    start = paste(z_T, warp(z_T, offset_l, request.scale, about_l), moved_l)
    surround = ring(obj_f, 2) & ~moved_f

    def move(cur, orig, src):
        moved_source = warp(orig, offset_f, request.scale, about_f)
        return energy.move_energy(cur, orig, moved_source, obj_f, moved_f, surround, weights)

    return _Plan(start, _region(obj_l | moved_l), move, "replace")


def _paste_plan(request: PasteRequest, geometry: Geometry, base: _Branch, reference, reference_mask, config) -> _Plan:
    """Paste: the reference's object (its latent, then its features) moved from its centre in the fitted
    reference to `position`, in working pixels; base and reference tokens mixed in the memory bank."""
    z_T, weights = _z_T(base), _weights(config)
    obj_f = grid_mask(reference_mask, geometry.feature_size, z_T.device)
    obj_l = grid_mask(reference_mask, geometry.latent_size, z_T.device)
    (cy, cx), (x, y) = centre(torch.from_numpy(reference_mask)), geometry.to_work(request.position)
    offset_f = geometry.offset_on(x - cx, y - cy, geometry.feature_size, pixels_of="work")
    offset_l = geometry.offset_on(x - cx, y - cy, geometry.latent_size, pixels_of="work")
    about_f, about_l = centre(obj_f), centre(obj_l)
    moved_f = warp_mask(obj_f, offset_f, request.scale, about_f)
    moved_l = warp_mask(obj_l, offset_l, request.scale, about_l)
    start = paste(z_T, warp(_z_T(reference), offset_l, request.scale, about_l), moved_l)
    empty = torch.zeros_like(moved_f)

    def paste_energy(cur, orig, src):
        moved_source = warp(src, offset_f, request.scale, about_f)
        return energy.move_energy(cur, orig, moved_source, empty, moved_f, empty, weights)

    return _Plan(start, _region(moved_l), paste_energy, "mix", (moved_l, obj_l))


def _appearance_plan(request, geometry: Geometry, base: _Branch, reference, reference_mask, config) -> _Plan:
    """Appearance: the object's features pulled to the reference object's statistics; tokens mixed."""
    device, weights = _z_T(base).device, _weights(config)
    base_f = grid_mask(request.mask, geometry.feature_size, device)
    reference_f = grid_mask(reference_mask, geometry.feature_size, device)
    region = grid_mask(request.mask, geometry.latent_size, device)
    return _Plan(
        _z_T(base),
        _region(region),
        lambda cur, orig, src: energy.appearance_energy(cur, orig, src, base_f, reference_f, weights),
        "mix",
        (region, grid_mask(reference_mask, geometry.latent_size, device)),
    )


def _drag_plan(request: ContentDragRequest, geometry: Geometry, base: _Branch, reference, reference_mask, config):
    """Content drag: the handles' latent patches copied to the targets to start; the edit term pulls the
    target features to the original handle features inside the editable region."""
    z_T, weights = _z_T(base), _weights(config)
    device = z_T.device
    latent_size, feature_size = geometry.latent_size, geometry.feature_size
    full = np.ones((geometry.image_size[1], geometry.image_size[0]), bool)
    editable = request.mask if request.mask is not None and request.mask.any() else full
    editable_f, editable_l = grid_mask(editable, feature_size, device), grid_mask(editable, latent_size, device)
    handles, targets = (
        _cells(geometry.to_grid(request.handles), feature_size),
        _cells(geometry.to_grid(request.targets), feature_size),
    )
    ratio = latent_size[0] / feature_size[0]
    start = z_T.clone()
    for (hr, hc), (tr, tc) in zip((handles * ratio).long().tolist(), (targets * ratio).long().tolist(), strict=True):
        h_rows, t_rows = energy.patch_windows(hr, tr, 1, latent_size[1])
        h_cols, t_cols = energy.patch_windows(hc, tc, 1, latent_size[0])
        start[:, :, t_rows, t_cols] = z_T[:, :, h_rows, h_cols]

    def drag(cur, orig, src):
        return energy.drag_energy(cur, orig, handles, targets, editable_f, weights)

    return _Plan(start, editable_l[None, None].float(), drag, "concat")


PLAN_BUILDERS = {"move": _move_plan, "paste": _paste_plan, "appearance": _appearance_plan, "drag": _drag_plan}


def _prompt_images(request: DragonRequest) -> list[Image.Image]:
    """What the image prompt shows: the image, and for appearance and paste the reference beside it."""
    return [request.image] + ([request.reference] if request.mode in ("appearance", "paste") else [])


def _changing(request: DragonRequest) -> np.ndarray | None:
    """What the mode may change in the image (None: a paste's target area is not painted, so all of it)."""
    return None if request.mode == "paste" else request.mask


def _area_points(request: DragonRequest) -> list[Point]:
    """Points a work-area crop must also hold: a drag's points, the corners of a moved object's new place."""
    if request.mode == "drag":
        return [*request.handles, *request.targets]
    if request.mode != "move":
        return []
    rows, cols = np.nonzero(request.mask)
    cx, cy = (cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2
    return [
        Point(cx + (x - cx) * request.scale + request.offset.x, cy + (y - cy) * request.scale + request.offset.y)
        for x in (cols.min(), cols.max() + 1)
        for y in (rows.min(), rows.max() + 1)
    ]


def _arrival_points(request: DragonRequest) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """What should have arrived where: a drag's handles at their targets, a moved (or resized) object's
    centre at its new place. Appearance and paste move nothing of the image, so there is nothing to check."""
    if request.mode == "drag":
        return tuple(request.handles), tuple(request.targets)
    if request.mode == "move":
        rows, cols = np.nonzero(request.mask)
        centre = Point(float(cols.mean()), float(rows.mean()))
        return (centre,), (Point(centre.x + request.offset.x, centre.y + request.offset.y),)
    return (), ()


def _region(mask: torch.Tensor) -> torch.Tensor:
    """The edit region on the latent grid: the (h, w) mask grown by a cell, as a (1, 1, h, w) float map."""
    return grow(mask, 1)[None, None].float()


def _cells(rowcol: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Feature-grid (row, col) rounded to cells inside the (w, h) grid."""
    rows = rowcol[:, 0].round().clamp(0, size[1] - 1)
    cols = rowcol[:, 1].round().clamp(0, size[0] - 1)
    return torch.stack([rows, cols], 1).long()


def fit_reference(image: Image.Image, mask: np.ndarray, work_size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """The reference scaled (aspect kept) to the working height, then cropped or padded (edge colour) on the
    right to the working width, with its mask moved along: a second image of any size and shape fits."""
    width, height = work_size
    scaled_w = max(1, round(image.width * height / image.height))
    picture = image.resize((scaled_w, height), Image.Resampling.LANCZOS)
    mask_image = Image.fromarray(mask).resize((scaled_w, height), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (width, height), picture.getpixel((scaled_w - 1, height // 2)))
    canvas.paste(picture.crop((0, 0, min(width, scaled_w), height)), (0, 0))
    fitted = np.zeros((height, width), bool)
    fitted[:, : min(width, scaled_w)] = np.asarray(mask_image)[:, :width]
    return canvas, fitted
