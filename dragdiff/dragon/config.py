"""DragonConfig: every knob of a DragonDiffusion edit; defaults and per-mode defaults in
dragdiff/configs/dragon.yaml (resolved by dragdiff.config.resolve_config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import RESULT_RULES, MethodConfig

MODES = ("move", "drag", "appearance", "paste")  # resize is a move with scale != 1
VARIANTS = ("dragon", "diffeditor")


_RULES: dict[str, tuple[type, float | None, float | None, bool]] = {
    **RESULT_RULES,
    "seed": (int, 0, 2**32 - 1, False),
    "resolution": (int, 64, 4096, True),
    "n_steps": (int, 2, 1000, False),
    "variant": (str, VARIANTS, None, False),
    "cfg_scale": (float, 0.0, 50.0, False),
    "energy_scale": (float, 0.0, 100.0, False),
    "step_constant": (float, 0.0, 10.0, False),
    "w_edit": (float, 0.0, 100.0, False),
    "w_content": (float, 0.0, 100.0, False),
    "w_contrast": (float, 0.0, 100.0, False),
    "w_inpaint": (float, 0.0, 100.0, False),
    "feature_blocks": (tuple, 0, 16, False),
    "guided_until": (int, 0, 1000, False),
    "memory_start": (int, 0, 1000, False),
    "memory_mix_until": (int, 0, 1000, False),
    "memory_blocks": (tuple, 0, 16, True),
    "memory_on_cpu": (bool, None, None, False),
    "sde_strength": (float, 0.0, 1.0, False),
    "time_travel_repeats": (int, 0, 10, False),
    "image_prompt": (str, None, None, True),
    "image_encoder": (str, None, None, True),
    "image_prompt_scale": (float, 0.0, 10.0, False),
    "image_prompt_from": (int, 0, 1000, False),
    "image_prompt_until": (int, 0, 1000, False),
}


@dataclass(frozen=True)
class DragonConfig(MethodConfig):
    """All parameters of one DragonDiffusion edit. Comments and sources live in dragdiff/configs/dragon.yaml."""

    DEFAULTS_FILE: ClassVar[str] = "dragon.yaml"
    RULES: ClassVar[dict[str, tuple]] = _RULES
    MODEL_SECTION: ClassVar[str | None] = "dragon"  # its section of a model's dragdiff.yaml
    MODES: ClassVar[tuple[str, ...]] = MODES

    seed: int
    resolution: int | None
    n_steps: int
    variant: str
    cfg_scale: float
    energy_scale: float
    step_constant: float
    w_edit: float
    w_content: float
    w_contrast: float
    w_inpaint: float
    feature_blocks: tuple[int, ...]
    guided_until: int
    memory_start: int
    memory_mix_until: int
    memory_blocks: tuple[int, ...] | None
    memory_on_cpu: bool
    sde_strength: float
    time_travel_repeats: int
    image_prompt: str | None
    image_encoder: str | None
    image_prompt_scale: float
    image_prompt_from: int
    image_prompt_until: int
    preserve_unmasked: bool
    seam_px: int
    image_check: bool
    arrival_tolerance: float
    work_area: str
    region_padding: float
