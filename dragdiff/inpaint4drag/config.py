"""Inpaint4DragConfig: every knob of an Inpaint4Drag edit; defaults in dragdiff/configs/inpaint4drag.yaml
(resolved by dragdiff.config.resolve_config), a model's own values in the `inpaint4drag:` section of its
dragdiff.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import RESULT_RULES, MethodConfig

SESSION_FORMAT = "dragdiff-inpaint4drag-session"


@dataclass(frozen=True)
class Inpaint4DragConfig(MethodConfig):
    """All parameters of one Inpaint4Drag edit. Field comments and sources live in configs/inpaint4drag.yaml."""

    DEFAULTS_FILE: ClassVar[str] = "inpaint4drag.yaml"
    MODEL_SECTION: ClassVar[str | None] = "inpaint4drag"
    SESSION_FORMAT: ClassVar[str] = SESSION_FORMAT
    RULES: ClassVar[dict[str, tuple]] = {
        **RESULT_RULES,
        "seed": (int, 0, 2**32 - 1, False),
        "resolution": (int, 64, 4096, True),
        "band_px": (int, 0, 64, False),
        "refine_region": (bool, None, None, False),
        "inpaint_model": (str, None, None, True),
        "tiny_vae": (str, None, None, True),
        "fast_lora": (str, None, None, True),
        "n_steps": (int, 1, 1000, False),
        "strength": (float, 0.01, 1.0, False),
        "guidance_scale": (float, 1.0, 30.0, False),
        "fill_prompt": (bool, None, None, False),
        "prefill": (bool, None, None, False),
        "latent_dilation": (int, 0, 8, False),
    }

    seed: int
    resolution: int | None
    band_px: int
    refine_region: bool
    inpaint_model: str | None
    tiny_vae: str | None
    fast_lora: str | None
    n_steps: int
    strength: float
    guidance_scale: float
    fill_prompt: bool
    prefill: bool
    latent_dilation: int
    preserve_unmasked: bool
    seam_px: int
    image_check: bool
    arrival_tolerance: float
    work_area: str
    region_padding: float
