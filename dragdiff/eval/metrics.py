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


def dai(
    original: Image.Image | np.ndarray,
    result: Image.Image | np.ndarray,
    handles: tuple[Point, ...],
    targets: tuple[Point, ...],
    gamma: int,
) -> float:
    """GoodDrag's Dragging Accuracy Index (Zhang et al., ICLR 2025): how far the content of the original's
    (2γ+1)² patch at each handle is from the result's patch at its target; lower is better.

    Computed as the reference's evaluation/compute_DAI.py at 3015cff does, so that figures compare with the
    published ones: images in [0, 1], squared differences summed over the patch and the RGB channels, summed
    over the pairs, then divided by (2γ+1)² and by N twice (N = pairs; the paper writes one 1/N, which only
    differs when N > 1). Where a patch would leave the image, both patches are cut to the part inside (the
    reference does not guard the borders)."""
    before, after = as_array(original) / 255.0, as_array(result) / 255.0
    height, width = before.shape[:2]
    total = 0.0
    for handle, target in zip(handles, targets, strict=True):
        (hx, hy), (tx, ty) = (round(handle.x), round(handle.y)), (round(target.x), round(target.y))
        # the offsets from the patch centres that stay inside the image for both patches
        left, right = min(gamma, hx, tx), min(gamma, width - 1 - hx, width - 1 - tx)
        up, down = min(gamma, hy, ty), min(gamma, height - 1 - hy, height - 1 - ty)
        source = before[hy - up : hy + down + 1, hx - left : hx + right + 1, :3]
        moved = after[ty - up : ty + down + 1, tx - left : tx + right + 1, :3]
        total += float(((source - moved) ** 2).sum())
    pairs = len(handles)
    return total / (2 * gamma + 1) ** 2 / pairs / pairs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two H×W bool masks (1 when both are empty)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def delta_e(rgb_a: np.ndarray, rgb_b: np.ndarray) -> float:
    """CIE76 colour difference ΔE*ab between two sRGB colours (0-255 each): ~2.3 is just noticeable."""
    import cv2

    pair = np.stack([rgb_a, rgb_b]).reshape(1, 2, 3).astype(np.float32) / 255.0
    lab = cv2.cvtColor(pair, cv2.COLOR_RGB2LAB)  # float input: L 0-100, a and b about -128..127 (D65)
    return float(np.linalg.norm(lab[0, 0] - lab[0, 1]))
