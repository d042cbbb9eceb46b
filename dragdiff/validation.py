"""Checks on user input before any model work, shared by every method: the CLI point syntax, images, point
pairs and masks (errors name the field and say how to fix it).

Coordinates follow dragdiff.types: a Point is (x, y) in input-image pixels with (0, 0) the centre of the
top-left pixel, so a W×H image accepts 0 <= x <= W-1 and 0 <= y <= H-1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .config import is_finite_number
from .errors import DragError
from .images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, check_aspect
from .types import MAX_POINT_PAIRS, DragRequest, Point

POINTS_SYNTAX = "'x,y>x,y' pairs (handle>target) separated by ';', e.g. '120,80>160,80; 40,40>40,60'"
# A number as typed in ASCII ("120", "-8.5", "1e2"; "nan" and "inf" too, which callers refuse in their own
# words). Python's float() alone also takes "٤٠", "４０", "४०" and "4_0": nobody means those as pixels.
DECIMAL = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|nan|inf(?:inity)?)", re.ASCII | re.IGNORECASE)


def ascii_float(text: str) -> float:
    """float(text) for an ASCII decimal number (spaces around it are fine); ValueError for anything else."""
    text = text.strip()
    if len(text) > 64 or not DECIMAL.fullmatch(text):
        raise ValueError(f"not an ASCII decimal number: {text[:64]!r}")
    return float(text)


def parse_points(text: str) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """Parse the CLI syntax "x,y>x,y;x,y>x,y" into (handles, targets); whitespace and a final ';' are fine."""
    if not isinstance(text, str):
        raise DragError(f"points: expected text like {POINTS_SYNTAX}, got {type(text).__name__}")
    pairs = [pair.strip() for pair in text.split(";") if pair.strip()]
    if not pairs:
        raise DragError(f"no points given in {text[:40]!r}; write {POINTS_SYNTAX}")
    check_pair_count(len(pairs), "points")
    parsed = [_parse_pair(number, pair) for number, pair in enumerate(pairs, start=1)]
    return tuple(handle for handle, _ in parsed), tuple(target for _, target in parsed)


def check_request(request: DragRequest) -> list[str]:
    """Raise DragError for a request the engine cannot run; return warnings about one it can.

    Errors: no points, unequal handle/target counts, a coordinate that is not a finite number, a point
    outside the image, an image that is not an RGB PIL image within MIN_IMAGE_SIDE..MAX_IMAGE_PIXELS, a mask
    that is not a 2-D bool array of the image's size, a prompt that is not text.
    Warnings: an all-False mask (the engine treats it as no mask, so the whole image may change: callers
    should pass `effective_mask(request.mask)` on, never the raw mask), a handle equal to its target.
    """
    size = check_image(request.image)
    check_points(request.handles, request.targets, size)
    check_mask(request.mask, size)
    if not isinstance(request.prompt, str):
        raise DragError(f"request.prompt: expected text, got {type(request.prompt).__name__}")
    return _warnings(request)


def effective_mask(mask: np.ndarray | None) -> np.ndarray | None:
    """The mask the engine uses: None (the whole image may change) for no mask or one with nothing marked."""
    if mask is None or not mask.any():
        return None
    return mask


def _parse_pair(number: int, pair: str) -> tuple[Point, Point]:
    sides = pair.split(">")
    if len(sides) != 2:
        raise _bad_pair(number, pair, "expected exactly one '>' between handle and target")
    return _parse_xy(number, pair, "handle", sides[0]), _parse_xy(number, pair, "target", sides[1])


def _parse_xy(number: int, pair: str, role: str, text: str) -> Point:
    parts = text.split(",")
    if len(parts) != 2:
        raise _bad_pair(number, pair, f"the {role} {text.strip()!r} needs two numbers x,y")
    values = []
    for part in parts:
        try:
            value = ascii_float(part)
        except ValueError:
            shown = repr(part.strip()[:40])
            raise _bad_pair(number, pair, f"{shown} in the {role} is not a number (digits 0-9, e.g. 120.5)") from None
        if not math.isfinite(value):
            raise _bad_pair(number, pair, f"{part.strip()!r} in the {role} is not a finite number")
        values.append(value)
    return Point(*values)


def _bad_pair(number: int, pair: str, reason: str) -> DragError:
    shown = pair if len(pair) <= 40 else pair[:40] + "…"  # the pair, not a megabyte of what was sent
    return DragError(f"pair {number} '{shown}': {reason}; write {POINTS_SYNTAX}")


def check_image(image: object) -> tuple[int, int]:
    if not isinstance(image, Image.Image):
        raise DragError(
            f"request.image: expected a PIL image, got {type(image).__name__}; "
            "read files with dragdiff.images.load_image"
        )
    if image.mode not in ("RGB", "RGBA"):
        raise DragError(
            f"request.image: the image is mode {image.mode!r}, expected 'RGB' or 'RGBA'; "
            "dragdiff.images.load_image converts any mode"
        )
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DragError(
            f"request.image: the image is {width}×{height}; both sides must be at least {MIN_IMAGE_SIDE} px"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise DragError(
            f"request.image: the image is {width}×{height} = {width * height:,} pixels, above the limit of "
            f"{MAX_IMAGE_PIXELS:,}; downscale it"
        )
    check_aspect((width, height), "request.image: the image")
    return width, height


def check_points(handles: Sequence[Point], targets: Sequence[Point], size: tuple[int, int]) -> None:
    if not isinstance(handles, (tuple, list)) or not isinstance(targets, (tuple, list)):
        raise DragError("request.handles and request.targets: expected tuples of Point(x, y)")
    if not handles and not targets:
        raise DragError("no points to drag; give at least one handle → target pair")
    if len(handles) != len(targets):
        raise DragError(f"{len(handles)} handle(s) but {len(targets)} target(s); every handle needs exactly one target")
    check_pair_count(len(handles), "points")
    for number, (handle, target) in enumerate(zip(handles, targets, strict=True), start=1):
        check_point(f"handle {number}", handle, size)
        check_point(f"target {number}", target, size)


def check_pair_count(count: int, where: str) -> None:
    if count > MAX_POINT_PAIRS:
        raise DragError(f"{where}: {count:,} point pairs; at most {MAX_POINT_PAIRS} are dragged in one edit")


def check_point(name: str, point: object, size: tuple[int, int]) -> None:
    if not isinstance(point, Point):
        raise DragError(f"{name}: expected a dragdiff Point(x, y), got {point!r}")
    for axis, value in (("x", point.x), ("y", point.y)):
        if not is_finite_number(value):
            raise DragError(f"{name}: {axis} = {value!r} is not a finite number; give x and y in pixels of the image")
    width, height = size
    if not (0 <= point.x <= width - 1 and 0 <= point.y <= height - 1):
        raise DragError(
            f"{name} ({float(point.x)}, {float(point.y)}) is outside the {width}×{height} image; "
            f"x must be within [0, {width - 1}] and y within [0, {height - 1}]"
        )


def check_mask(mask: object, size: tuple[int, int]) -> None:
    if mask is None:
        return
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != bool:
        got = f"shape {mask.shape}, dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise DragError(
            f"request.mask: expected a 2-D bool array (height × width) or None, got {got}; "
            "dragdiff.images.load_mask reads mask images"
        )
    width, height = size
    if mask.shape != (height, width):
        raise DragError(
            f"request.mask: the mask is {mask.shape[1]}×{mask.shape[0]} but the image is {width}×{height}; "
            "the mask must be an H×W array of the image's size"
        )


def _warnings(request: DragRequest) -> list[str]:
    warnings = []
    if request.mask is not None and not request.mask.any():
        warnings.append("the mask is empty, so the whole image may change; paint the region that may move")
    for number, (handle, target) in enumerate(zip(request.handles, request.targets, strict=True), start=1):
        if handle == target:
            warnings.append(f"pair {number}: handle equals target; that point stays where it is")
    return warnings
