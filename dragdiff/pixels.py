"""PIL images to and from the (1, 3, h, w) tensors in [-1, 1] that a model's VAE encodes and decodes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .images import flatten


def image_to_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """RGB (or RGBA, flattened on white) PIL image -> (1, 3, h, w) float in [-1, 1] at `size` (w, h), resized
    with Lanczos."""
    image = flatten(image)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def tensor_to_image(pixels: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """(1, 3, h, w) in [-1, 1] -> RGB PIL image resized to `size` (w, h): the input's own size and aspect."""
    array = ((pixels[0].permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).round().clip(0, 255)
    image = Image.fromarray(array.astype(np.uint8))
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
