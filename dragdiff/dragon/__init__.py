"""DragonDiffusion (Mou et al., ICLR 2024) and its DiffEditor variant: training-free move, resize, content
drag, appearance replacement and paste, a method over the same Runtime as every other."""

from .config import DragonConfig
from .requests import AppearanceRequest, ContentDragRequest, MoveRequest, PasteRequest


def __getattr__(name: str):  # the method imports torch: only when asked for
    if name in ("DragonDiffusion", "DragonResult"):
        from . import method

        return getattr(method, name)
    raise AttributeError(name)


__all__ = [
    "AppearanceRequest",
    "ContentDragRequest",
    "DragonConfig",
    "DragonDiffusion",
    "DragonResult",
    "MoveRequest",
    "PasteRequest",
]
