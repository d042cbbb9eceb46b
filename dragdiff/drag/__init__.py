"""DragDiffusion (Shi et al., CVPR 2024): LoRA on the image, DDIM inversion, then motion supervision and point
tracking on the inverted latent, denoised with reference-latent control. What only this method uses lives
here; what it shares with GoodDrag is dragdiff.lora_drag, and the stages every method may use (LoRA,
inversion, features, motion supervision, tracking) are top-level modules."""

from .config import DragConfig


def __getattr__(name: str):  # the method itself imports torch: only when asked for
    if name == "DragDiffusion":
        from .method import DragDiffusion

        return DragDiffusion
    raise AttributeError(name)


__all__ = ["DragConfig", "DragDiffusion"]
