"""Before/after pictures of every DragonDiffusion mode with the bundled demo model, for the README:
docs/dragon-modes.png (one row per mode: input with the request drawn | result | reference where used).

    python scripts/dragon_examples.py            # ~1-2 minutes on 2 CPU cores
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dragdiff.dragon import AppearanceRequest, ContentDragRequest, DragonDiffusion, MoveRequest, PasteRequest  # noqa: E402
from dragdiff.shapes import COLORS, Background, Scene, Shape  # noqa: E402
from dragdiff.types import Point  # noqa: E402

SIZE = 128


def scene(shapes: list[Shape], backdrop: str = "gray") -> Scene:
    return Scene(Background("plain", backdrop, COLORS[backdrop], COLORS[backdrop]), tuple(shapes), (SIZE, SIZE))


def shape(kind: str, colour: str, x: float, y: float, size: float = 16) -> Shape:
    return Shape(kind, colour, COLORS[colour], (x, y), size)


def requests(editor: DragonDiffusion) -> list[tuple[str, object, Image.Image | None]]:
    base = scene([shape("circle", "red", 40, 64), shape("square", "blue", 96, 40, 12)])
    image, circle = base.render(), base.shape_mask(0)
    other = scene([shape("star", "yellow", 64, 64, 22)], "white")
    square = scene([shape("square", "green", 64, 64, 18)], "black")
    config = editor.default_config
    return [
        ("move", MoveRequest(image, circle, Point(36, 20), 1.0, base.caption(), config("move")), None),
        ("resize", MoveRequest(image, circle, Point(0, 0), 1.5, base.caption(), config("move")), None),
        (
            "drag",
            ContentDragRequest(
                image, (Point(40, 64),), (Point(64, 80),), _box(40, 64, 40), base.caption(), config("drag")
            ),
            None,
        ),
        (
            "appearance",
            AppearanceRequest(
                image,
                circle,
                other.render(),
                other.shape_mask(0),
                base.caption(),
                other.caption(),
                config("appearance"),
            ),
            other.render(),
        ),
        (
            "paste",
            PasteRequest(
                image,
                square.render(),
                square.shape_mask(0),
                Point(64, 100),
                0.7,
                base.caption(),
                square.caption(),
                config("paste"),
            ),
            square.render(),
        ),
    ]


def _box(x: int, y: int, half: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[max(0, y - half) : y + half, max(0, x - half) : x + half] = True
    return mask


def drawn(name: str, request) -> Image.Image:
    """The input with what the request asks drawn on it: the mask tinted, arrows, the paste position."""
    image = request.image.copy()
    mask = getattr(request, "mask", None)
    if mask is not None:
        tint = Image.blend(image, Image.new("RGB", image.size, (255, 255, 255)), 0.3)
        image = Image.composite(tint, image, Image.fromarray(mask.astype(np.uint8) * 255))
    draw = ImageDraw.Draw(image)
    if name == "move":
        rows, cols = np.nonzero(request.mask)
        x, y = cols.mean(), rows.mean()
        draw.line([(x, y), (x + request.offset.x, y + request.offset.y)], fill=(255, 255, 255), width=2)
    if name == "drag":
        for h, t in zip(request.handles, request.targets, strict=True):
            draw.line([(h.x, h.y), (t.x, t.y)], fill=(255, 255, 255), width=2)
            draw.ellipse([h.x - 3, h.y - 3, h.x + 3, h.y + 3], fill=(230, 40, 40))
    if name == "paste":
        p = request.position
        draw.ellipse([p.x - 3, p.y - 3, p.x + 3, p.y + 3], fill=(40, 90, 235))
    return image


def main() -> None:
    editor = DragonDiffusion("demo")
    rows = []
    for name, request, reference in requests(editor):
        result = editor.edit(request)
        print(f"{name}: {result.timings['total']:.1f} s", flush=True)
        rows.append([drawn(name, request), result.image, reference])
    grid = Image.new("RGB", (SIZE * 3, SIZE * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile is not None:
                grid.paste(tile, (c * SIZE, r * SIZE))
    out = ROOT / "docs" / "dragon-modes.png"
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
