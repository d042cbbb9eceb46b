"""Keep what was not painted: the input, with only the edit region replaced by the model's output.

A method's output is the decode of the whole image at the model's working size, resized back; outside the
region the user allowed to change it is a blurred, colour-shifted copy of the input. This puts the input's own
pixels back there, bit for bit, and blends the two across a feathered seam just outside the region.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def seam_weights(region: np.ndarray, seam_px: int) -> np.ndarray:
    """(H, W) float32 weight of the edited image: 1 inside `region` (H×W bool), falling linearly to 0 at
    `seam_px` pixels outside it, 0 beyond (there the input is kept exactly)."""
    if seam_px <= 0:
        return region.astype(np.float32)
    outside = (~region).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, 5)  # px to the nearest region pixel; 0 inside
    return np.clip(1.0 - distance / (seam_px + 1), 0.0, 1.0).astype(np.float32)


def keep_unpainted(original: Image.Image, edited: Image.Image, region: np.ndarray | None, seam_px: int) -> Image.Image:
    """`original` with `region` taken from `edited` (the same size) across a seam of `seam_px` pixels. No
    region (the whole image may change) returns `edited`: there is nothing to keep."""
    if region is None or region.all():
        return edited
    weight = seam_weights(region, seam_px)[..., None]
    before = np.asarray(original.convert("RGB"), dtype=np.float32)
    after = np.asarray(edited.convert("RGB"), dtype=np.float32)
    blended = np.where(weight > 0, np.round(after * weight + before * (1 - weight)), before)
    return Image.fromarray(blended.astype(np.uint8))


def grid_region_in_image(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) bool region on a latent or feature grid as an H×W bool mask of an image of `size` (w, h)."""
    grid = Image.fromarray(region.astype(np.uint8) * 255)
    return np.asarray(grid.resize(size, Image.Resampling.NEAREST)) > 127
