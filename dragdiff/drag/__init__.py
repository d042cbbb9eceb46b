"""DragDiffusion (Shi et al., CVPR 2024): LoRA on the image, DDIM inversion, then motion supervision and point
tracking on the inverted latent, denoised with reference-latent control. What only this method uses lives
here; the stages it shares with other methods (LoRA, inversion, features, tracking) are top-level modules."""

from .config import DragConfig
from .result import DragResult


def __getattr__(name: str):  # the method itself imports torch: only when asked for
    if name == "DragDiffusion":
        from .method import DragDiffusion

        return DragDiffusion
    raise AttributeError(name)


__all__ = ["DragConfig", "DragDiffusion", "DragResult"]
