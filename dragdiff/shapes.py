"""A procedural world of coloured shapes on backgrounds: training data for the demo model and the scenes of
DragBench-Shapes, where the right answer of every drag is known because any scene can be re-rendered.

Coordinates are (x, y) image pixels as everywhere in dragdiff. Rendering is supersampled 4× for smooth edges
and fully determined by the Scene value, so a scene with one shape moved renders the exact ground truth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

# Named colours (sRGB). Sampled colours are jittered around these so the model sees many shades per name.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 50),
    "green": (50, 170, 60),
    "blue": (40, 80, 215),
    "purple": (130, 60, 180),
    "pink": (240, 130, 180),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "gray": (128, 128, 128),
    "cyan": (40, 200, 210),
}
BACKGROUND_COLORS = ("white", "gray", "black", "blue", "green", "yellow", "pink", "brown", "cyan", "purple")
KINDS = ("circle", "square", "triangle", "star", "ellipse", "hexagon")
BACKGROUND_KINDS = ("plain", "gradient", "striped")
SUPERSAMPLE = 4


def scaled_point(xy: tuple[float, float], factor: float) -> tuple[float, float]:
    """A pixel position in a picture `factor` times larger: pixel centres (p + 0.5) scale."""
    return ((xy[0] + 0.5) * factor - 0.5, (xy[1] + 0.5) * factor - 0.5)


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    rgb: tuple[int, int, int]
    center: tuple[float, float]  # (x, y) px
    size: float  # circumradius, px
    rotation: float = 0.0  # degrees
    aspect: float = 1.0  # height/width before rotation (ellipses; 1 for the others)
    width_scale: float = 1.0  # horizontal stretch before rotation (DragBench-Shapes stretch tasks)

    def polygon(self, scale: float = 1.0) -> list[tuple[float, float]]:
        """Outline vertices in px (times `scale`): regular polygons, a 5-point star, or a 72-gon ellipse."""
        sides, inner = {"triangle": (3, None), "square": (4, None), "hexagon": (6, None), "star": (5, 0.45)}.get(
            self.kind, (72, None)
        )
        angles = np.arange(sides * (2 if inner else 1)) * math.pi / (sides if inner else sides / 2) - math.pi / 2
        radii = np.where(np.arange(len(angles)) % 2 == 1, inner, 1.0) if inner else np.ones(len(angles))
        if self.kind == "square":
            angles = angles + math.pi / 4
        x = np.cos(angles) * radii * self.size * self.width_scale
        y = np.sin(angles) * radii * self.size * self.aspect
        turn = math.radians(self.rotation)
        xr, yr = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        cx, cy = self.center
        return [((cx + a + 0.5) * scale, (cy + b + 0.5) * scale) for a, b in zip(xr, yr, strict=True)]

    def moved(self, dx: float, dy: float) -> Shape:
        return replace(self, center=(self.center[0] + dx, self.center[1] + dy))

    def scaled(self, factor: float) -> Shape:
        """The same shape in a picture `factor` times larger (pixel centres aligned)."""
        return replace(self, center=scaled_point(self.center, factor), size=self.size * factor)


@dataclass(frozen=True)
class Background:
    kind: str  # plain | gradient | striped
    color: str
    rgb: tuple[int, int, int]
    rgb2: tuple[int, int, int]  # second colour of gradients and stripes
    angle: float = 0.0  # direction of the gradient or stripes, degrees
    period: float = 16.0  # stripe period, px


@dataclass(frozen=True)
class Scene:
    background: Background
    shapes: tuple[Shape, ...]
    size: tuple[int, int] = (128, 128)

    def render(self) -> Image.Image:
        width, height = self.size
        image = Image.fromarray(self._background_pixels()).resize(
            (width * SUPERSAMPLE, height * SUPERSAMPLE), Image.Resampling.NEAREST
        )
        draw = ImageDraw.Draw(image)
        for shape in self.shapes:  # later shapes are drawn on top
            draw.polygon(shape.polygon(SUPERSAMPLE), fill=shape.rgb)
        return image.resize(self.size, Image.Resampling.BOX)

    def shape_mask(self, index: int) -> np.ndarray:
        """H×W bool: the visible pixels (> half covered) of shape `index`, occlusion by later shapes included."""
        width, height = self.size
        canvas = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
        draw = ImageDraw.Draw(canvas)
        for i, shape in enumerate(self.shapes):
            draw.polygon(shape.polygon(SUPERSAMPLE), fill=255 if i == index else 0)
        return np.asarray(canvas.resize(self.size, Image.Resampling.BOX)) > 127

    def caption(self) -> str:
        names = [f"{'an' if s.color[0] in 'aeiou' else 'a'} {s.color} {s.kind}" for s in self.shapes]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        style = {"plain": "", "gradient": " gradient", "striped": " striped"}[self.background.kind]
        return f"{listed} on a {self.background.color}{style} background"

    def scaled(self, factor: int) -> Scene:
        """The same scene rendered `factor` times larger: shapes, stripes and canvas scale together."""
        background = replace(self.background, period=self.background.period * factor)
        shapes = tuple(s.scaled(factor) for s in self.shapes)
        return Scene(background, shapes, (self.size[0] * factor, self.size[1] * factor))

    def with_shape(self, index: int, shape: Shape) -> Scene:
        return replace(self, shapes=self.shapes[:index] + (shape,) + self.shapes[index + 1 :])

    def _background_pixels(self) -> np.ndarray:
        width, height = self.size
        bg = self.background
        if bg.kind == "plain":
            return np.broadcast_to(np.array(bg.rgb, np.uint8), (height, width, 3)).copy()
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        turn = math.radians(bg.angle)
        along = (xx - width / 2) * math.cos(turn) + (yy - height / 2) * math.sin(turn)
        if bg.kind == "gradient":
            weight = np.clip(along / max(width, height) + 0.5, 0, 1)
        else:
            weight = (np.floor(along / (bg.period / 2)) % 2).astype(np.float32)
        mixed = np.array(bg.rgb) * (1 - weight[..., None]) + np.array(bg.rgb2) * weight[..., None]
        return mixed.round().astype(np.uint8)


def jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c + rng.randint(-amount, amount)))) for c in rgb)


def random_background(rng: random.Random) -> Background:
    kind = rng.choices(BACKGROUND_KINDS, weights=(0.5, 0.3, 0.2))[0]
    color = rng.choice(BACKGROUND_COLORS)
    rgb = jitter(COLORS[color], rng, 20)
    # The second colour stays close for stripes (a texture, not a pattern to name) and free for gradients.
    rgb2 = jitter(rgb, rng, 40) if kind == "striped" else jitter(COLORS[rng.choice(BACKGROUND_COLORS)], rng, 20)
    return Background(kind, color, rgb, rgb2, rng.uniform(0, 360), rng.uniform(8, 24))


def random_shape(rng: random.Random, size: tuple[int, int], background: str, min_size=10.0, max_size=30.0) -> Shape:
    kind = rng.choice(KINDS)
    color = rng.choice([c for c in COLORS if c != background])
    radius = rng.uniform(min_size, max_size)
    margin = radius * 0.8
    center = (rng.uniform(margin, size[0] - margin), rng.uniform(margin, size[1] - margin))
    aspect = rng.uniform(0.45, 0.75) if kind == "ellipse" else 1.0
    return Shape(kind, color, jitter(COLORS[color], rng, 25), center, radius, rng.uniform(0, 360), aspect)


def random_scene(rng: random.Random, size: tuple[int, int] = (128, 128), max_shapes: int = 3) -> Scene:
    """1–`max_shapes` shapes of random kind, colour, size, rotation and position on a random background."""
    background = random_background(rng)
    count = rng.randint(1, max_shapes)
    return Scene(background, tuple(random_shape(rng, size, background.color) for _ in range(count)), size)
