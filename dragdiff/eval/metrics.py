"""Image metrics of drag edits: PSNR, SSIM, PSNR outside the mask, handle error by colour segmentation, and
DragBench's mean distance (DIFT-style feature matching) computed with any DiffusionModel's UNet features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..features import dift_grid
from ..models import DiffusionModel
from ..types import Point


def as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB of 8-bit images, over the pixels where `where` (H×W bool) is True (all when None)."""
    diff = (as_array(a) - as_array(b)) ** 2
    if where is not None:
        diff = diff[where]
    mse = float(diff.mean()) if diff.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03) over RGB channels."""
    x = torch.from_numpy(as_array(a)).permute(2, 0, 1)[:, None]  # (3, 1, H, W)
    y = torch.from_numpy(as_array(b)).permute(2, 0, 1)[:, None]
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()

    def blur(t: torch.Tensor) -> torch.Tensor:
        # the 11×11 Gaussian as two 1-D passes (it is separable; 5× faster at 512 px); 'valid' windows only,
        # as the reference implementation
        return F.conv2d(F.conv2d(t, g.view(1, 1, 11, 1)), g.view(1, 1, 1, 11))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index.mean())


def colour_region(image: Image.Image | np.ndarray, rgb: tuple[int, int, int], tolerance: float) -> np.ndarray:
    """H×W bool: pixels within `tolerance` (Euclidean, 8-bit RGB) of `rgb`."""
    return np.linalg.norm(as_array(image) - np.array(rgb, np.float64), axis=-1) < tolerance


def centroid(region: np.ndarray) -> tuple[float, float] | None:
    """(x, y) mean of the True pixels, or None when there are none."""
    ys, xs = np.nonzero(region)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None


def dift_features(
    model: DiffusionModel, image: Image.Image, prompt: str, timestep: int, block: int, ensemble: int, seed: int = 0
) -> torch.Tensor:
    """DIFT features of `image` at its own width (DragBench's protocol), upsampled to the image size and
    L2-normalised per pixel. Returns (C, H, W) fp32."""
    from ..coords import Geometry

    width, height = image.size
    work_size = Geometry.work_size_at(image.size, model.vae_factor)
    features = dift_grid(model, image, work_size, prompt, timestep, block, ensemble, seed)
    return F.normalize(F.interpolate(features[None], (height, width), mode="bilinear")[0], dim=0)


def mean_distance_pairs(
    source: torch.Tensor, edited: torch.Tensor, handles: tuple[Point, ...], targets: tuple[Point, ...]
) -> list[float]:
    """DragBench's MD per pair: the handle's source feature is matched (cosine argmax) in the edited image's
    features; the distance of the match to the target, in pixels. Inputs are dift_features outputs."""
    _, height, width = edited.shape
    distances = []
    for handle, target in zip(handles, targets, strict=True):
        query = source[:, round(handle.y), round(handle.x)]
        similarity = torch.einsum("c,chw->hw", query, edited)
        row, col = divmod(int(similarity.argmax()), width)
        distances.append(float(np.hypot(col - target.x, row - target.y)))
    return distances
