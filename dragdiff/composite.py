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
    """`original` (RGB or RGBA) with `region` taken from `edited` (RGB, the same size) across a seam of
    `seam_px` pixels, in the original's mode. No region (the whole image may change) returns `edited`: there
    is nothing to keep.

    An RGBA original gets the edit laid over it as an opaque layer whose coverage is the seam weight: the
    model painted the region on the flattened picture, so there the result is opaque; elsewhere the input's
    colour and transparency are kept exactly."""
    if region is None or region.all():
        return edited
    weight = seam_weights(region, seam_px)[..., None]
    before = np.asarray(original if original.mode == "RGBA" else original.convert("RGB"), dtype=np.float32)
    after = np.asarray(edited.convert("RGB"), dtype=np.float32)
    if original.mode == "RGBA":
        alpha = before[..., 3:] / 255
        coverage = weight + alpha * (1 - weight)  # the alpha of "edit over original"
        colour = (after * weight + before[..., :3] * alpha * (1 - weight)) / np.maximum(coverage, 1e-6)
        mixed = np.concatenate([colour, coverage * 255], axis=-1)
    else:
        mixed = after * weight + before * (1 - weight)
    blended = np.where(weight > 0, np.round(mixed), before)
    return Image.fromarray(blended.astype(np.uint8))


def grid_region_in_image(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) bool region on a latent or feature grid as an H×W bool mask of an image of `size` (w, h)."""
    grid = Image.fromarray(region.astype(np.uint8) * 255)
    return np.asarray(grid.resize(size, Image.Resampling.NEAREST)) > 127
