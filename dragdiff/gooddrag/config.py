"""GoodDragConfig: every knob of a GoodDrag edit; defaults in dragdiff/configs/gooddrag.yaml (resolved by
dragdiff.config.resolve_config). The fields it shares with DragDiffusion are dragdiff.lora_config's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..lora_config import LORA_DRAG_RULES, LoraDragConfig

SESSION_FORMAT = "dragdiff-gooddrag-session"


@dataclass(frozen=True)
class GoodDragConfig(LoraDragConfig):
    """All parameters of one GoodDrag edit. Field comments and sources live in dragdiff/configs/gooddrag.yaml."""

    DEFAULTS_FILE: ClassVar[str] = "gooddrag.yaml"
    RULES: ClassVar[dict[str, tuple]] = {
        **LORA_DRAG_RULES,
        "drag_end_step": (int, 1, 1000, False),
        "drag_steps_per_track": (int, 1, 1000, False),
        "tracks_per_step": (int, 1, 1000, False),
        "max_step": (float, 0.01, 1e3, False),
        "early_stop_tracks": (int, 1, 10_000, False),
    }
    MODEL_SECTION: ClassVar[str | None] = "gooddrag"
    SESSION_FORMAT: ClassVar[str] = SESSION_FORMAT

    drag_end_step: int
    drag_steps_per_track: int
    tracks_per_step: int
    max_step: float
    early_stop_tracks: int
