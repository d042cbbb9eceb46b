"""DragConfig: every knob of a DragDiffusion edit; defaults in dragdiff/configs/drag.yaml (resolved by
dragdiff.config.resolve_config). The fields it shares with GoodDrag are dragdiff.lora_drag.LoraDragConfig's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..lora_config import LORA_DRAG_RULES, LoraDragConfig

SESSION_FORMAT = "dragdiff-session"


@dataclass(frozen=True)
class DragConfig(LoraDragConfig):
    """All parameters of one edit. Field comments and sources live in dragdiff/configs/drag.yaml."""

    DEFAULTS_FILE: ClassVar[str] = "drag.yaml"
    RULES: ClassVar[dict[str, tuple]] = {**LORA_DRAG_RULES, "drag_steps": (int, 0, 10_000, False)}
    MODEL_SECTION: ClassVar[str | None] = None  # a model's dragdiff.yaml holds DragDiffusion's values at the top
    SESSION_FORMAT: ClassVar[str] = SESSION_FORMAT

    drag_steps: int
