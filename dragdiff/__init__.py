"""dragdiff: point-drag image editing on Stable Diffusion. Methods (DragDiffusion, DragonDiffusion, ...) are
peers over one Runtime (the loaded model); dragdiff.methods lists them."""

from .drag import DragConfig
from .errors import DragCancelled, DragError
from .types import DragRequest, DragResult, EditResult, Point, Progress


def __getattr__(name: str):  # these import torch: only when asked for
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    if name == "DragDiffusion":
        from .drag.method import DragDiffusion

        return DragDiffusion
    raise AttributeError(name)


__all__ = [
    "DragCancelled",
    "DragConfig",
    "DragDiffusion",
    "DragError",
    "DragRequest",
    "DragResult",
    "EditResult",
    "Point",
    "Progress",
    "Runtime",
]
