"""An object mask from a box: OpenCV's GrabCut inside the box, for users who would rather drag a rectangle than
paint (DragonDiffusion's own app refines boxes with a segmentation network; this needs no download)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import DragError
from ..images import flatten

GRABCUT_ITERATIONS = 5


def box_mask(image: Image.Image, box: tuple[float, float, float, float]) -> np.ndarray:
    """H×W bool mask of the object inside `box` = (x0, y0, x1, y1) image pixels (inclusive corners)."""
    import cv2

    width, height = image.size
    values = [float(v) for v in box]
    if not all(np.isfinite(values)):
        raise DragError(f"box {tuple(box)}: every corner must be a finite number")
    x0, x1 = sorted((round(values[0]), round(values[2])))
    y0, y1 = sorted((round(values[1]), round(values[3])))
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width - 1, x1), min(height - 1, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise DragError(f"box {tuple(box)}: it must cover at least 3×3 pixels of the {width}×{height} image")
    labels = np.zeros((height, width), np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    pixels = np.ascontiguousarray(np.asarray(flatten(image))[..., ::-1])  # OpenCV wants BGR
    rect = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    if (x1 - x0 + 1) * (y1 - y0 + 1) >= width * height:  # GrabCut needs some background to model
        return np.ones((height, width), bool)
    cv2.grabCut(pixels, labels, rect, background, foreground, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if not mask.any():  # nothing stood out: the whole box is the object
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask
