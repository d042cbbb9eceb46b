"""dragdiff: point-drag image editing on Stable Diffusion (DragDiffusion)."""

from .config import DragConfig
from .errors import DragCancelled, DragError
from .types import DragRequest, DragResult, Point, Progress

__all__ = ["DragCancelled", "DragConfig", "DragError", "DragRequest", "DragResult", "Point", "Progress"]
