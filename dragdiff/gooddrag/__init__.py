"""GoodDrag (Zhang et al., "GoodDrag: Towards Good Practices for Drag Editing with Diffusion Models", ICLR
2025): DragDiffusion's LoRA and inversion, then AlDD (the drag spread over several denoising steps) with
information-preserving motion supervision (features pulled toward the original ones, not the current ones)."""

from .config import GoodDragConfig


def __getattr__(name: str):  # the method itself imports torch: only when asked for
    if name == "GoodDrag":
        from .method import GoodDrag

        return GoodDrag
    raise AttributeError(name)


__all__ = ["GoodDrag", "GoodDragConfig"]
