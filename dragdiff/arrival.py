"""Did each handle's content arrive? Look for it in the result image, not in the optimiser's own features.

DragDiffusion's point tracking stops when its latent features say the handle reached the target; on the demo
model it says so while the decoded shape has barely moved. This check asks the picture instead, with the
correspondence DragBench's mean distance uses (DIFT, Tang et al. 2023): the original's UNet feature at the
handle is searched (cosine similarity, best match) in the features of the result; the match is where the
content went. Both images are seen at the model's working size on the plain UNet (no per-image LoRA), and the
original's features are cached, so each check costs one UNet pass on the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from .cache import cache_key
from .coords import Geometry
from .features import dift_grid
from .types import Point, PointCheck, Progress, ProgressCallback

# DragBench's mean-distance settings (timestep 261, decoder block 1); one noise draw: one UNet pass
DIFT_TIMESTEP, DIFT_BLOCK, DIFT_ENSEMBLE = 261, 1, 1


def arrival_threshold(image_size: tuple[int, int], tolerance: float) -> float:
    """Input pixels within which a handle's content counts as arrived: `tolerance` of the shorter side."""
    return tolerance * min(image_size)


def image_check(
    runtime,
    original: Image.Image,
    result: Image.Image,
    handles: tuple[Point, ...],
    targets: tuple[Point, ...],
    prompt: str,
    tolerance: float,
    width: int | None = None,
) -> tuple[PointCheck, ...]:
    """One PointCheck per handle: its content in `original` looked for in `result` (the same size), both seen
    at the working `width` of the edit (None: the model's native size)."""
    model = runtime.model
    geometry = Geometry.for_image(original.size, width or model.native_resolution, model.vae_factor, 1.0)
    with runtime.lock:
        runtime.use_lora(None)  # the evaluation's plain UNet: a per-image LoRA would make the features differ
        before = _original_features(runtime, original, prompt, geometry.work_size)
        after = dift_grid(model, result, geometry.work_size, prompt, DIFT_TIMESTEP, DIFT_BLOCK, DIFT_ENSEMBLE)
    after = F.normalize(after, dim=0)
    threshold = arrival_threshold(original.size, tolerance)
    checks = []
    for handle, target in zip(handles, targets, strict=True):
        query = F.normalize(_sample(before, handle, original.size), dim=0)
        found = _best_match(torch.einsum("c,chw->hw", query, after), original.size)
        distance = ((found.x - target.x) ** 2 + (found.y - target.y) ** 2) ** 0.5
        checks.append(PointCheck(found, distance, distance <= threshold))
    return tuple(checks)


def check_result(
    runtime,
    original: Image.Image,
    result: Image.Image,
    handles: tuple[Point, ...],
    targets: tuple[Point, ...],
    prompt: str,
    config,
    on_progress: ProgressCallback | None = None,
) -> tuple[PointCheck, ...] | None:
    """Every method's last step: image_check with the config's tolerance, None when the config turns it off
    or the edit moves no points."""
    if not config.image_check or not handles:
        return None
    if on_progress:
        on_progress(Progress("check", 0, 1))
    checks = image_check(
        runtime, original, result, handles, targets, prompt, config.arrival_tolerance, config.resolution
    )
    if on_progress:
        on_progress(Progress("check", 1, 1))
    return checks


def describe(checks: tuple[PointCheck, ...], advice: str = "") -> str:
    """ "point 1: arrived; point 2: content 21 px from its target", then `advice` (what to try) when a point
    did not arrive. Points are numbered from 1."""
    text = "; ".join(
        f"point {i}: " + ("arrived" if c.arrived else f"content {c.distance_px:.0f} px from its target")
        for i, c in enumerate(checks, 1)
    )
    short = not all(c.arrived for c in checks)
    return text + (f". To get further, try {advice}" if short and advice else "")


def _original_features(runtime, image: Image.Image, prompt: str, work_size: tuple[int, int]) -> torch.Tensor:
    model = runtime.model
    settings = (DIFT_TIMESTEP, DIFT_BLOCK, DIFT_ENSEMBLE, list(work_size))
    key = cache_key("dift-v1", model.fingerprint, list(image.size), image.tobytes(), prompt, settings)
    cached = runtime.cache.load("dift", key)
    if cached is not None:
        runtime.counts["dift_cached"] += 1
        return cached["features"].to(model.device)
    features = dift_grid(model, image, work_size, prompt, DIFT_TIMESTEP, DIFT_BLOCK, DIFT_ENSEMBLE)
    runtime.cache.save("dift", key, {"features": features})
    return features


def _sample(features: torch.Tensor, point: Point, image_size: tuple[int, int]) -> torch.Tensor:
    """The (C,) feature at an input-image point, bilinear between grid cells (centres aligned)."""
    width, height = image_size
    x = (point.x + 0.5) / width * 2 - 1  # grid_sample's [-1, 1] with align_corners=False: pixel-centre aligned
    y = (point.y + 0.5) / height * 2 - 1
    where = torch.tensor([[[[x, y]]]], dtype=features.dtype, device=features.device)
    return F.grid_sample(features[None], where, mode="bilinear", align_corners=False)[0, :, 0, 0]


def _best_match(similarity: torch.Tensor, image_size: tuple[int, int]) -> Point:
    """The input-image pixel of highest similarity, the (h, w) map upsampled bilinearly to the image size."""
    width, height = image_size
    scaled = F.interpolate(similarity[None, None], (height, width), mode="bilinear", align_corners=False)[0, 0]
    row, col = divmod(int(scaled.argmax()), width)
    return Point(float(col), float(row))
