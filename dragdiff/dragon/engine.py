"""DragonEditor: DragonDiffusion's training-free edits (move, resize, drag, appearance, paste) on the model
of a DragEngine. One inversion per image keeps the trajectory and the memory bank; the edit is sampled from
z_T with feature-correspondence guidance (energy.py) and memory-bank attention (memory.py)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..coords import Geometry
from ..engine import DragEngine, image_to_tensor, tensor_to_image
from ..errors import DragError
from ..features import supervision_features, unet_features
from ..types import Progress, ProgressCallback, StopCallback
from . import energy
from .config import DragonConfig
from .image_prompt import ImagePrompt, image_prompt_attention, load_image_prompt
from .memory import MemoryBank, MemoryControl, bank_bytes, decoder_self_attention, memory_attention
from .regions import centre, grid_mask, grow, paste, ring, warp, warp_mask
from .requests import AppearanceRequest, ContentDragRequest, DragonRequest, MoveRequest, check_dragon_request
from .sampler import REFERENCE_STEPS, GuidedSampler, invert, sample, step_plan

FEATURE_SCALE = 0.25  # features compared at image/4, as the reference resizes them (DRAGON.md)
GRADIENT_UNIT = 1000  # the reference multiplies its per-mode constant and UI energy scale by 1e3


@dataclass
class DragonResult:
    image: Image.Image  # the input's size
    mode: str
    timings: dict[str, float]
    config: DragonConfig
    model: str
    memory_bytes: int  # size of the memory bank(s)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Branch:
    """One inverted image: its trajectory {timestep: z_t} and cached guidance features per timestep."""

    trajectory: dict[int, torch.Tensor]
    features: dict[int, torch.Tensor] = field(default_factory=dict)


class DragonEditor:
    """DragonDiffusion on the model of `engine` (no LoRA: the UNet is used as it is)."""

    def __init__(self, engine: DragEngine):
        self.engine = engine
        self.model = engine.model

    def default_config(self, mode: str, **overrides) -> DragonConfig:
        """configs/dragon.yaml for `mode`, then the model's own values, then `overrides`."""
        return DragonConfig.load(mode, model_defaults=self.model.dragon_defaults, **overrides)

    def edit(
        self,
        request: DragonRequest,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> DragonResult:
        """The edited image. Raises DragError on bad input before any work, DragCancelled when stopped.
        Holds the engine's lock: the model (its attention processors, its LoRA) is shared with DragDiffusion."""
        with self.engine.lock:
            return self._edit(request, on_progress, should_stop)

    def _edit(self, request, on_progress, should_stop) -> DragonResult:
        warnings = check_dragon_request(request)
        config = request.config or self.default_config(request.mode)
        m, start_time = self.model, time.perf_counter()
        self._check_blocks(config)
        timings: dict[str, float] = {}
        image_prompt = self._load_image_prompt(config, timings)  # before any work: bad paths fail fast
        self.engine.use_lora(None)  # training-free: the plain UNet
        geometry = Geometry.for_image(
            request.image.size, config.resolution or m.native_resolution, m.vae_factor, FEATURE_SCALE
        )
        text = m.encode_prompt(request.prompt)
        scheduler = m.scheduler()
        scheduler.set_timesteps(config.n_steps)
        control = MemoryControl(MemoryBank(self._bank_device(config, geometry, request, warnings)))
        with memory_attention(m.unet, control, config.memory_blocks):
            base = self._invert(
                request.image, geometry.work_size, text, config, control, "inversion", on_progress, should_stop
            )
            reference, reference_mask = None, None
            if request.mode in ("appearance", "paste"):
                reference, reference_mask = self._invert_reference(
                    request, geometry, config, control, on_progress, should_stop
                )
            timings["inversion"] = time.perf_counter() - start_time
            plan = _Plan.build(request, geometry, base, reference, reference_mask, config)
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

            report = (lambda k, n: on_progress(Progress("editing", k, n))) if on_progress else None
            t0 = time.perf_counter()
            layers = image_prompt_attention(m.unet, image_prompt, image_tokens) if image_prompt else nullcontext()
            with layers:
                latent = sample(
                    sampler,
                    plan.start,
                    step_plan(config.variant, config.n_steps, config.guided_until),
                    guidance,
                    memory_mode,
                    control,
                    plan.region,
                    config.sde_strength,
                    config.time_travel_repeats,
                    config.seed,
                    report,
                    should_stop,
                    image_scale,
                )
            timings["editing"] = time.perf_counter() - t0
        with torch.no_grad():
            image = tensor_to_image(m.decode(latent), request.image.size)
        timings["total"] = time.perf_counter() - start_time
        memory_bytes = control.bank.nbytes + (control.reference.nbytes if control.reference else 0)
        return DragonResult(image, request.mode, timings, config, m.spec, memory_bytes, warnings)

    def _load_image_prompt(self, config: DragonConfig, timings: dict) -> ImagePrompt | None:
        """DiffEditor's optional image prompt, when its weights are configured (image_prompt.py)."""
        if config.image_prompt is None:
            return None
        t0, m = time.perf_counter(), self.model
        prompt = load_image_prompt(config.image_prompt, config.image_encoder, m.unet, m.device, m.dtype)
        timings["image_prompt_load"] = time.perf_counter() - t0
        return prompt

    def _check_blocks(self, config: DragonConfig) -> None:
        count = len(self.model.unet.up_blocks)
        for name in ("feature_blocks", "memory_blocks"):
            bad = [i for i in getattr(config, name) or () if i >= count]
            if bad:
                raise DragError(f"{name}: this model's UNet has up_blocks 0-{count - 1}, not {bad}")
        if not decoder_self_attention(self.model.unet, config.memory_blocks):
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

    @classmethod
    def build(cls, request, geometry: Geometry, base: _Branch, reference, reference_mask, config) -> _Plan:
        z_T = base.trajectory[max(base.trajectory)]
        device = z_T.device
        latent_size, feature_size = geometry.latent_size, geometry.feature_size
        weights = {
            "edit": config.w_edit,
            "content": config.w_content,
            "contrast": config.w_contrast,
            "inpaint": config.w_inpaint,
        }
        if isinstance(request, ContentDragRequest):
            return cls._drag(request, geometry, z_T, weights)
        if isinstance(request, AppearanceRequest):
            base_f = grid_mask(request.mask, feature_size, device)
            reference_f = grid_mask(reference_mask, feature_size, device)
            region = grid_mask(request.mask, latent_size, device)
            return cls(
                z_T,
                _region(region),
                lambda cur, orig, src: energy.appearance_energy(cur, orig, src, base_f, reference_f, weights),
                "mix",
                (region, grid_mask(reference_mask, latent_size, device)),
            )
        # move / resize, and paste (the reference's object moved into the image)
        obj_mask = request.mask if isinstance(request, MoveRequest) else reference_mask
        obj_f, obj_l = grid_mask(obj_mask, feature_size, device), grid_mask(obj_mask, latent_size, device)
        if isinstance(request, MoveRequest):
            offset_f = _to_grid((request.offset.y, request.offset.x), geometry.image_size, feature_size)
            offset_l = _to_grid((request.offset.y, request.offset.x), geometry.image_size, latent_size)
        else:  # paste: from the object's centre in the fitted reference to `position`, in working pixels
            (cy, cx), (work_w, work_h) = centre(torch.from_numpy(reference_mask)), geometry.work_size
            x, y = (
                request.position.x * work_w / geometry.image_size[0],
                request.position.y * work_h / geometry.image_size[1],
            )
            offset_f = _to_grid((y - cy, x - cx), geometry.work_size, feature_size)
            offset_l = _to_grid((y - cy, x - cx), geometry.work_size, latent_size)
        about_f, about_l = centre(obj_f), centre(obj_l)
        moved_f = warp_mask(obj_f, offset_f, request.scale, about_f)
        moved_l = warp_mask(obj_l, offset_l, request.scale, about_l)
        source_z = z_T if isinstance(request, MoveRequest) else reference.trajectory[max(reference.trajectory)]
        start = paste(z_T, warp(source_z, offset_l, request.scale, about_l), moved_l)
        if isinstance(request, MoveRequest):
            surround = ring(obj_f, 2) & ~moved_f
            region = _region(obj_l | moved_l)

            def move(cur, orig, src):
                moved_source = warp(orig, offset_f, request.scale, about_f)
                return energy.move_energy(cur, orig, moved_source, obj_f, moved_f, surround, weights)

            return cls(start, region, move, "replace")
        empty = torch.zeros_like(moved_f)

        def paste_energy(cur, orig, src):
            moved_source = warp(src, offset_f, request.scale, about_f)
            return energy.move_energy(cur, orig, moved_source, empty, moved_f, empty, weights)

        return cls(start, _region(moved_l), paste_energy, "mix", (moved_l, obj_l))

    @classmethod
    def _drag(cls, request: ContentDragRequest, geometry: Geometry, z_T, weights) -> _Plan:
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
        for (hr, hc), (tr, tc) in zip(
            (handles * ratio).long().tolist(), (targets * ratio).long().tolist(), strict=True
        ):
            h_rows, t_rows = energy.patch_windows(hr, tr, 1, latent_size[1])
            h_cols, t_cols = energy.patch_windows(hc, tc, 1, latent_size[0])
            start[:, :, t_rows, t_cols] = z_T[:, :, h_rows, h_cols]

        def drag(cur, orig, src):
            return energy.drag_energy(cur, orig, handles, targets, editable_f, weights)

        return cls(start, editable_l[None, None].float(), drag, "concat")


def _prompt_images(request: DragonRequest) -> list[Image.Image]:
    """What the image prompt shows: the image, and for appearance and paste the reference beside it."""
    return [request.image] + ([request.reference] if request.mode in ("appearance", "paste") else [])


def _region(mask: torch.Tensor) -> torch.Tensor:
    """The edit region on the latent grid: the (h, w) mask grown by a cell, as a (1, 1, h, w) float map."""
    return grow(mask, 1)[None, None].float()


def _to_grid(offset_px: tuple[float, float], pixel_size, grid_size) -> tuple[float, float]:
    """A (dy, dx) offset in pixels of an image of `pixel_size` (w, h), in cells of a (w, h) grid."""
    return offset_px[0] * grid_size[1] / pixel_size[1], offset_px[1] * grid_size[0] / pixel_size[0]


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
