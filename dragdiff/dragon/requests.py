"""The typed requests of the DragonDiffusion modes, and their validation (errors name the field and the fix).

Coordinates are input-image pixels (x, y) as everywhere in dragdiff; masks are H×W bool arrays of their
image's size, True = the object (move, appearance, paste) or the region that may change (drag).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..config import is_finite_number
from ..errors import DragError
from ..types import Point
from ..validation import check_image, check_mask, check_points
from .config import DragonConfig

MIN_SCALE, MAX_SCALE = 0.2, 5.0


@dataclass(frozen=True)
class MoveRequest:
    """Move the object under `mask` by `offset` (dx, dy px) and scale it by `scale` about its centre
    (scale != 1 is the resize mode)."""

    image: Image.Image
    mask: np.ndarray
    offset: Point
    scale: float = 1.0
    prompt: str = ""
    config: DragonConfig | None = None
    mode = "move"


@dataclass(frozen=True)
class ContentDragRequest:
    """Drag the content at each handle to its target; only `mask` may change (None: everything may)."""

    image: Image.Image
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray | None = None
    prompt: str = ""
    config: DragonConfig | None = None
    mode = "drag"


@dataclass(frozen=True)
class AppearanceRequest:
    """Give the object under `mask` the appearance of the object under `reference_mask` in `reference`."""

    image: Image.Image
    mask: np.ndarray
    reference: Image.Image
    reference_mask: np.ndarray
    prompt: str = ""
    reference_prompt: str = ""
    config: DragonConfig | None = None
    mode = "appearance"


@dataclass(frozen=True)
class PasteRequest:
    """Paste the object under `reference_mask` of `reference` into `image`, its centre at `position` (px of
    `image`), scaled by `scale` (the reference is first resized to the image's height)."""

    image: Image.Image
    reference: Image.Image
    reference_mask: np.ndarray
    position: Point
    scale: float = 1.0
    prompt: str = ""
    reference_prompt: str = ""
    config: DragonConfig | None = None
    mode = "paste"


DragonRequest = MoveRequest | ContentDragRequest | AppearanceRequest | PasteRequest


def check_dragon_request(request: DragonRequest) -> list[str]:
    """Raise DragError for anything that cannot be edited; return warnings for what is odd but allowed."""
    if not isinstance(request, (MoveRequest, ContentDragRequest, AppearanceRequest, PasteRequest)):
        raise DragError(
            f"expected a DragonDiffusion request (move, drag, appearance, paste), got {type(request).__name__}"
        )
    size = check_image(request.image)
    if not isinstance(request.prompt, str):
        raise DragError(f"prompt: expected text, got {type(request.prompt).__name__}")
    if isinstance(request, ContentDragRequest):
        check_points(request.handles, request.targets, size)
        check_mask(request.mask, size)
        return []
    if isinstance(request, PasteRequest):
        reference_size = check_image(request.reference)
        _object_mask(request.reference_mask, reference_size, "reference_mask")
        _check_scale(request.scale)
        x, y = _finite_xy("position", request.position)
        if not (0 <= x <= size[0] - 1 and 0 <= y <= size[1] - 1):
            raise DragError(
                f"position ({x}, {y}) is outside the {size[0]}×{size[1]} image; click inside the image where "
                "the object's centre should go"
            )
        return []
    _object_mask(request.mask, size, "mask")
    if isinstance(request, AppearanceRequest):
        _object_mask(request.reference_mask, check_image(request.reference), "reference_mask")
        return []
    _check_scale(request.scale)
    return _check_move_stays(request, size)


def _object_mask(mask: object, size: tuple[int, int], name: str) -> None:
    check_mask(mask, size)
    if mask is None or not mask.any():
        raise DragError(f"{name}: the object mask is empty; paint over the object (or draw a box around it)")


def _check_scale(scale: object) -> None:
    if not is_finite_number(scale):
        raise DragError(f"scale: expected a number, got {scale!r}")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise DragError(f"scale: {scale} is out of range [{MIN_SCALE}, {MAX_SCALE}]; 1 keeps the object's size")


def _finite_xy(name: str, point: object) -> tuple[float, float]:
    if not isinstance(point, Point):
        raise DragError(f"{name}: expected a dragdiff Point(x, y), got {point!r}")
    for axis, value in (("x", point.x), ("y", point.y)):
        if not is_finite_number(value):
            raise DragError(f"{name}: {axis} = {value!r} is not a finite number")
    return float(point.x), float(point.y)


def _check_move_stays(request: MoveRequest, size: tuple[int, int]) -> list[str]:
    """The moved (and scaled) object's box must keep some of it on the canvas; warn when part leaves."""
    dx, dy = _finite_xy("offset", request.offset)
    rows, cols = np.nonzero(request.mask)
    cx, cy = (cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2
    half_w, half_h = (
        (cols.max() - cols.min() + 1) / 2 * request.scale,
        (rows.max() - rows.min() + 1) / 2 * request.scale,
    )
    left, right, top, bottom = cx + dx - half_w, cx + dx + half_w, cy + dy - half_h, cy + dy + half_h
    width, height = size
    if right < 0 or bottom < 0 or left > width - 1 or top > height - 1:
        raise DragError(
            f"offset ({dx}, {dy}) with scale {request.scale} moves the whole object off the {width}×{height} "
            "canvas; choose a smaller offset or scale"
        )
    if left < 0 or top < 0 or right > width or bottom > height:
        return ["part of the moved object leaves the canvas and is cut off"]
    return []
