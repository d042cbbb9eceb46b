"""Edit where it matters: with work_area "region" a method edits a crop around what may change, not the whole
picture, and the result is pasted back.

The model sees its input at its working size (512 px wide for SD 1.5). A small object in a large photo then
gets few of the model's pixels: a 150-px cat in a 4000-px photo is 19 px wide at 512. Cropping around the
painted region, the points and some context, and editing that crop at the working size, gives the object the
model's full resolution (A1111's "inpaint only masked"). Outside the crop the input is untouched; inside,
keep_unpainted already kept everything outside the region and its seam, so the paste has no edge of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from PIL import Image

from .images import MIN_IMAGE_SIDE
from .types import Point, PointCheck


@dataclass(frozen=True)
class WorkArea:
    """A crop of the input: (left, top, right, bottom) in input pixels, right and bottom exclusive. The
    whole image is a WorkArea too, whose crop and paste change nothing."""

    box: tuple[int, int, int, int]
    image_size: tuple[int, int]

    @property
    def whole(self) -> bool:
        return self.box == (0, 0, *self.image_size)

    def crop(self, request: Any) -> Any:
        """`request` seen inside the crop: its image and mask cropped, its points shifted. Any request type
        with some of the fields image, mask, handles, targets (other fields are kept as they are)."""
        if self.whole:
            return request
        left, top, right, bottom = self.box
        names = {f.name for f in fields(request)}
        changes: dict[str, Any] = {"image": request.image.crop(self.box)}
        if "mask" in names and request.mask is not None:
            changes["mask"] = request.mask[top:bottom, left:right]
        for name in ("handles", "targets"):
            if name in names:
                changes[name] = tuple(self.to_crop(p) for p in getattr(request, name))
        return replace(request, **changes)

    def to_crop(self, point: Point) -> Point:
        return Point(point.x - self.box[0], point.y - self.box[1])

    def from_crop(self, point: Point) -> Point:
        return Point(point.x + self.box[0], point.y + self.box[1])

    def paste(self, original: Image.Image, edited: Image.Image) -> Image.Image:
        """`original` with the edited crop put back in its place (every channel, alpha included)."""
        if self.whole:
            return edited
        full = original.copy()
        full.paste(edited, self.box[:2])
        return full

    def points_from_crop(self, points: tuple[Point, ...]) -> tuple[Point, ...]:
        return tuple(self.from_crop(p) for p in points)

    def checks_from_crop(self, checks: tuple[PointCheck, ...] | None) -> tuple[PointCheck, ...] | None:
        if checks is None:
            return None
        return tuple(replace(c, found=self.from_crop(c.found)) for c in checks)


def work_area(image_size: tuple[int, int], mask: np.ndarray | None, points: list[Point], config: Any) -> WorkArea:
    """The crop an edit works on: the whole image for work_area "full" or when no mask limits the edit;
    for "region", the box around the mask's pixels and `points`, grown on each side by region_padding × its
    larger side (and always by more than the seam), made square where the image allows (the model's working
    size is square for a square input), and at least MIN_IMAGE_SIDE on each side."""
    width, height = image_size
    if config.work_area != "region" or mask is None or not mask.any():
        return WorkArea((0, 0, width, height), image_size)
    rows, cols = np.nonzero(mask)
    xs = [float(cols.min()), float(cols.max()), *(p.x for p in points)]
    ys = [float(rows.min()), float(rows.max()), *(p.y for p in points)]
    x0, x1, y0, y1 = min(xs), max(xs) + 1, min(ys), max(ys) + 1
    pad = max(config.region_padding * max(x1 - x0, y1 - y0), config.seam_px + 2)
    side = max(max(x1 - x0, y1 - y0) + 2 * pad, MIN_IMAGE_SIDE)
    left, right = _span((x0 + x1) / 2, side, width)
    top, bottom = _span((y0 + y1) / 2, side, height)
    return WorkArea((left, top, right, bottom), image_size)


def _span(centre: float, length: float, limit: int) -> tuple[int, int]:
    """[start, end) of `length` px centred on `centre`, shifted to lie inside [0, limit) (cut when longer)."""
    length = min(limit, round(length))
    start = min(max(0, round(centre - length / 2)), limit - length)
    return start, start + length
