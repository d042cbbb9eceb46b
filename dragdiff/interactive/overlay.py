"""What the point canvas shows: the image enlarged, the editable region tinted, numbered handles (red) and
targets (blue) joined by arrows; and the editable region read back from an image editor's layers."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..coords import Display
from ..images import flatten
from ..types import Point

HANDLE_RGB, TARGET_RGB, MASK_RGB = (230, 40, 40), (40, 90, 235), (255, 45, 155)  # MASK_RGB: the brush pink


def enlarge(image: Image.Image) -> Image.Image:
    """The image at display size (coords.Display: long side 640), for showing small images large."""
    return image.resize(Display(image.size).size, Image.Resampling.LANCZOS)


def hatched(image: Image.Image, area: np.ndarray) -> Image.Image:
    """`image` at display size with `area` (H×W bool) striped diagonally: what a fill will repaint."""
    shown = enlarge(flatten(image))
    stripes = Image.fromarray(area.astype(np.uint8) * 255).resize(shown.size, Image.Resampling.NEAREST)
    ys, xs = np.mgrid[0 : shown.size[1], 0 : shown.size[0]]
    on = (np.asarray(stripes) > 127) & ((xs + ys) // 4 % 2 == 0)
    pixels = np.asarray(shown).copy()
    pixels[on] = (255, 0, 255)
    return Image.fromarray(pixels)


def overlay(
    image: Image.Image, clicks: list[list[float]], mask: np.ndarray | None, tracked: tuple[Point, ...] | None = None
) -> Image.Image:
    """The image at display size with the editable region tinted, numbered handles (red) and targets (blue)
    joined by arrows, and optionally the tracked handle positions of a running edit (hollow circles).
    Points are in image pixels; the picture is Display(image.size).scale times larger."""
    display = Display(image.size)
    shown = tint(enlarge(flatten(image)), mask)
    draw = ImageDraw.Draw(shown)
    radius = max(4, round(display.side / 90))
    at = [list(display.from_image(x, y)) for x, y in clicks]
    for i in range(0, len(at), 2):
        if i + 1 < len(at):
            _arrow(draw, at[i], at[i + 1], radius)
            _dot(draw, at[i + 1], radius, TARGET_RGB, "")
        _dot(draw, at[i], radius, HANDLE_RGB, str(i // 2 + 1))
    for point in tracked or ():
        x, y = display.from_image(point.x, point.y)
        box = [x - 2 * radius, y - 2 * radius, x + 2 * radius, y + 2 * radius]
        draw.ellipse(box, outline=(255, 255, 255), width=2)
    return shown


def tint(image: Image.Image, mask: np.ndarray | None) -> Image.Image:
    """The RGB image with the mask's region (any size; scaled to fit) tinted in the brush colour."""
    image = flatten(image)
    if mask is None or not mask.any():
        return image
    region = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
    return Image.composite(Image.blend(image, Image.new("RGB", image.size, MASK_RGB), 0.35), image, region)


def _dot(draw: ImageDraw.ImageDraw, at: list[float], radius: int, fill, label: str) -> None:
    x, y = at
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255))
    if label:
        draw.text((x + radius + 1, y - 2 * radius), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))


def _arrow(draw: ImageDraw.ImageDraw, start: list[float], end: list[float], radius: int) -> None:
    (x0, y0), (x1, y1) = start, end
    draw.line([(x0, y0), (x1, y1)], fill=(255, 255, 255), width=max(1, radius // 2))
    length = max(np.hypot(x1 - x0, y1 - y0), 1e-6)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    head = 2.5 * radius
    left = (x1 - head * ux + head * 0.5 * uy, y1 - head * uy - head * 0.5 * ux)
    right = (x1 - head * ux - head * 0.5 * uy, y1 - head * uy + head * 0.5 * ux)
    draw.polygon([(x1, y1), left, right], fill=(255, 255, 255))


def mask_from_editor(value: dict | None, size: tuple[int, int]) -> np.ndarray | None:
    """The painted region of an image-editor value ({'background', 'layers', 'composite'}, RGBA arrays):
    painted = alpha > 0 in any layer. None when nothing is painted (the whole image may change)."""
    if not value or not value.get("layers"):
        return None
    painted = np.zeros((size[1], size[0]), bool)
    for layer in value["layers"]:
        array = np.asarray(layer)
        if array.ndim == 3 and array.shape[2] == 4 and array.shape[:2] == painted.shape:
            painted |= array[..., 3] > 0
    return painted if painted.any() else None


def editable_region(restored: np.ndarray | None, editor_value: dict | None, size: tuple[int, int]) -> np.ndarray | None:
    """A mask restored from a session plus what is painted over it. Gradio's editor shows a value's composite
    but not its layers, so a restored mask is shown tinted in the picture and kept here, not in a layer."""
    painted = mask_from_editor(editor_value, size)
    if restored is None or painted is None:
        return painted if restored is None else restored
    return restored | painted
