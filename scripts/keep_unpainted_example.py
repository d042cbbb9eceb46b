"""Before/after of a photo-like scene with the bundled demo model, for the README: docs/keep-unpainted.png.

One DragonDiffusion move of a ball across a textured 360×240 picture, made twice: as the papers' protocol
gives it (the whole picture is the model's decode, resized back: preserve_unmasked off) and as dragdiff gives
it by default (everything outside the edit region and its seam is the input, bit for bit), and with
work_area "region" (the crop around the ball edited at the model's working size). Each column is labelled
with its PSNR against the input away from the edit.

    python scripts/keep_unpainted_example.py     # ~30 s on 2 CPU cores
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dragdiff import Point, Runtime  # noqa: E402
from dragdiff.composite import seam_weights  # noqa: E402
from dragdiff.dragon import MoveRequest  # noqa: E402
from dragdiff.eval.metrics import psnr  # noqa: E402

WIDTH, HEIGHT = 360, 240
BALL, RADIUS, OFFSET = (110, 170), 24, Point(120, -20)


def photo_like() -> tuple[Image.Image, np.ndarray]:
    """A sky gradient, a hill line, grass with seeded fine texture, a sun and a post; a red ball on the grass.
    Returns the picture and the ball's mask."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    sky = np.stack([120 + 80 * yy / HEIGHT, 170 + 50 * yy / HEIGHT, np.full_like(yy, 235)], axis=-1)
    hill = 120 + 18 * np.sin(xx / 45) + 8 * np.sin(xx / 13)
    grass = np.stack([60 + 30 * yy / HEIGHT, 120 + 40 * yy / HEIGHT, 50 + 0 * yy], axis=-1)
    grass += rng.normal(0, 14, grass.shape)  # fine texture: what a whole-image decode blurs away
    image = np.where((yy > hill)[..., None], grass, sky)
    image[(xx - 300) ** 2 + (yy - 45) ** 2 < 22**2] = (250, 220, 90)  # sun
    image[70:140, 30:38] = (90, 60, 35)  # a post
    ball = (xx - BALL[0]) ** 2 + (yy - BALL[1]) ** 2 < RADIUS**2
    image[ball] = (220, 40, 40)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), ball


def main() -> None:
    image, ball = photo_like()
    method = Runtime("demo").method("dragon")
    variants = {
        "whole decode (the papers' protocol)": dict(preserve_unmasked=False),
        "dragdiff: the unpainted input kept": dict(preserve_unmasked=True),
        "kept, and work_area: region": dict(preserve_unmasked=True, work_area="region"),
    }
    results = {}
    for label, settings in variants.items():
        config = method.default_config("move", image_check=False, **settings)
        results[label] = method.edit(MoveRequest(image, ball, OFFSET, prompt="a red circle", config=config)).image
    # "away from the edit": beyond the ball's old and new places grown by 3 latent cells and the seam
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    moved = (xx - BALL[0] - OFFSET.x) ** 2 + (yy - BALL[1] - OFFSET.y) ** 2 < RADIUS**2
    away = seam_weights(ball | moved, 48) == 0
    tiles = [("input: the ball to move", image, None)]
    tiles += [(label, result, psnr(result, image, away)) for label, result in results.items()]
    sheet = Image.new("RGB", (WIDTH * len(tiles), HEIGHT + 24), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=13)
    for i, (label, tile, score) in enumerate(tiles):
        tile = tile.convert("RGB")
        if score is None:
            ImageDraw.Draw(tile).line([BALL, (BALL[0] + OFFSET.x, BALL[1] + OFFSET.y)], fill="white", width=3)
        sheet.paste(tile, (i * WIDTH, 24))
        if score is not None:
            label += "; away: " + ("identical" if score == float("inf") else f"{score:.1f} dB")
        draw.text((i * WIDTH + 6, 5), label, fill="black", font=font)
    out = ROOT / "docs" / "keep-unpainted.png"
    sheet.save(out)
    print(f"wrote {out}; PSNR away from the edit: " + ", ".join(f"{t[0]} {t[2]:.1f} dB" for t in tiles[1:]))


if __name__ == "__main__":
    main()
