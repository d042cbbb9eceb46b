"""The config fields DragDiffusion and GoodDrag share (dragdiff.lora_drag is the frame of their edits); each
method's config dataclass adds its own fields, defaults and sources in its YAML file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .config import RESULT_RULES, MethodConfig

# Fields that change speed and memory but not the edit (beyond numeric noise): off in the benchmark's "naive".
SPEED_FIELDS = (
    "truncate_unet",
    "lora_encode_once",
    "fused_optimizers",
    "channels_last",
    "compile_convolutions",
    "gradient_checkpointing",
    "vae_tiling",
)

# (type, minimum, maximum, allow None) per shared field; checked on every load so that bad sessions fail early.
LORA_DRAG_RULES: dict[str, tuple[type, float | None, float | None, bool]] = {
    **RESULT_RULES,
    "seed": (int, 0, 2**32 - 1, False),
    "resolution": (int, 64, 4096, True),
    "lora_steps": (int, 0, 10_000, False),
    "lora_rank": (int, 1, 1024, False),
    "lora_lr": (float, 0.0, 1.0, False),
    "lora_batch_size": (int, 1, 64, False),
    "n_inference_steps": (int, 1, 1000, False),
    "n_inversion_steps": (int, 1, 1000, False),
    "feature_blocks": (tuple, 0, 16, False),
    "supervision_scale": (float, 0.01, 1.0, False),
    "drag_lr": (float, 0.0, 10.0, False),
    "motion_radius": (int, 0, 64, False),
    "tracking_radius": (int, 0, 64, False),
    "stop_distance": (float, 0.0, 1e6, False),
    "mask_weight": (float, 0.0, 1e6, False),
    "reference_attention": (bool, None, None, False),
    "reference_attention_blocks": (tuple, 0, 16, False),
    **{name: (bool, None, None, False) for name in SPEED_FIELDS},
}


@dataclass(frozen=True)
class LoraDragConfig(MethodConfig):
    """The fields DragDiffusion's and GoodDrag's configs share (comments and sources: each method's YAML)."""

    SESSION_FORMAT: ClassVar[str]  # the "format" of the sessions that record this config

    seed: int
    resolution: int | None
    lora_steps: int
    lora_rank: int
    lora_lr: float
    lora_batch_size: int
    n_inference_steps: int
    n_inversion_steps: int
    feature_blocks: tuple[int, ...]
    supervision_scale: float
    drag_lr: float
    motion_radius: int
    tracking_radius: int
    stop_distance: float
    mask_weight: float
    reference_attention: bool
    reference_attention_blocks: tuple[int, ...]
    preserve_unmasked: bool
    seam_px: int
    image_check: bool
    arrival_tolerance: float
    work_area: str
    region_padding: float
    truncate_unet: bool
    lora_encode_once: bool
    fused_optimizers: bool
    channels_last: bool
    compile_convolutions: bool
    gradient_checkpointing: bool
    vae_tiling: bool
