"""DragonDiffusion (Mou et al., ICLR 2024) and its DiffEditor variant: training-free move, resize, content
drag, appearance replacement and paste, on the same models and engine as DragDiffusion."""

from .config import DragonConfig
from .engine import DragonEditor, DragonResult
from .requests import AppearanceRequest, ContentDragRequest, MoveRequest, PasteRequest

__all__ = [
    "AppearanceRequest",
    "ContentDragRequest",
    "DragonConfig",
    "DragonEditor",
    "DragonResult",
    "MoveRequest",
    "PasteRequest",
]
