"""Inpaint4Drag (Lu & Han, ICCV 2025): a bidirectional warp of the painted region along the points, then one
short inpainting run over what the warp revealed. No LoRA, no inversion, no latent optimisation."""

from .config import Inpaint4DragConfig


def __getattr__(name: str):  # the method itself imports torch: only when asked for
    if name == "Inpaint4Drag":
        from .method import Inpaint4Drag

        return Inpaint4Drag
    raise AttributeError(name)


__all__ = ["Inpaint4Drag", "Inpaint4DragConfig"]
