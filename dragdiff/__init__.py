"""dragdiff: point-drag image editing on Stable Diffusion. Methods (GoodDrag, DragDiffusion, Inpaint4Drag,
DragonDiffusion) are
peers over one Runtime (the loaded model); dragdiff.methods lists them."""

from .drag import DragConfig
from .errors import DragCancelled, DragError
from .gooddrag import GoodDragConfig
from .inpaint4drag import Inpaint4DragConfig
from .types import DragRequest, DragResult, EditResult, Point, Progress


def __getattr__(name: str):  # these import torch: only when asked for
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    if name == "DragDiffusion":
        from .drag.method import DragDiffusion

        return DragDiffusion
    if name == "GoodDrag":
        from .gooddrag.method import GoodDrag

        return GoodDrag
    if name == "Inpaint4Drag":
        from .inpaint4drag.method import Inpaint4Drag

        return Inpaint4Drag
    raise AttributeError(name)


__all__ = [
    "DragCancelled",
    "DragConfig",
    "DragDiffusion",
    "DragError",
    "DragRequest",
    "DragResult",
    "EditResult",
    "GoodDrag",
    "GoodDragConfig",
    "Inpaint4Drag",
    "Inpaint4DragConfig",
    "Point",
    "Progress",
    "Runtime",
]
