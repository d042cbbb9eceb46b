"""The one place that converts coordinates: between the input image, the working image, the latent and the
feature grid of an edit (Geometry), and between the input image and the app's enlarged display (Display).

Points outside this module are (x, y) input-image pixels. Inside the drag they are (row, col) on the
supervision (feature) grid. Grids are aligned by pixel centres: a pixel's centre p maps to (p + 0.5)·s − 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .types import Point


@dataclass(frozen=True)
class Geometry:
    """Sizes (width, height) of every grid of one edit."""

    image_size: tuple[int, int]  # the input, as given
    work_size: tuple[int, int]  # what the model sees: multiples of the VAE factor
    latent_size: tuple[int, int]
    feature_size: tuple[int, int]  # the supervision grid for motion supervision and tracking

    @classmethod
    def for_image(cls, image_size: tuple[int, int], width: int, vae_factor: int, supervision_scale: float) -> Geometry:
        """Working width = `width` (ref: 512), height from the aspect ratio; both rounded to the VAE factor
        (the UNet takes any latent size: diffusers passes explicit up-sampling sizes when needed).

        The reference never crops: it resizes to width 512 and resizes the result back, and so do we.
        """
        w_in, h_in = image_size
        f = vae_factor
        work_w = max(f, round(width / f) * f)
        work_h = max(f, round(width * h_in / w_in / f) * f)
        latent = (work_w // f, work_h // f)
        feature = (max(1, round(work_w * supervision_scale)), max(1, round(work_h * supervision_scale)))
        return cls(image_size, (work_w, work_h), latent, feature)

    def to_grid(self, points: tuple[Point, ...] | list[Point]) -> torch.Tensor:
        """Input-image points -> (P, 2) float tensor of (row, col) on the feature grid."""
        grid_w, grid_h = self.feature_size
        sx, sy = grid_w / self.image_size[0], grid_h / self.image_size[1]
        rows = [(p.y + 0.5) * sy - 0.5 for p in points]
        cols = [(p.x + 0.5) * sx - 0.5 for p in points]
        return torch.tensor([rows, cols], dtype=torch.float32).T.reshape(-1, 2)

    def from_grid(self, rowcol: torch.Tensor) -> tuple[Point, ...]:
        """(P, 2) (row, col) on the feature grid -> input-image points."""
        sx = self.image_size[0] / self.feature_size[0]
        sy = self.image_size[1] / self.feature_size[1]
        return tuple(
            Point(round((float(c) + 0.5) * sx - 0.5, 2), round((float(r) + 0.5) * sy - 0.5, 2))
            for r, c in rowcol.tolist()
        )

    def offset_on(self, dx: float, dy: float, grid_size: tuple[int, int], pixels_of: str = "image") -> tuple:
        """A (dx, dy) offset in pixels of the input image (or, pixels_of="work", of the working image) as a
        (rows, cols) offset on a grid of `grid_size` (w, h): DragonDiffusion's move and paste offsets."""
        width, height = self.image_size if pixels_of == "image" else self.work_size
        return dy * grid_size[1] / height, dx * grid_size[0] / width

    def to_work(self, point: Point) -> tuple[float, float]:
        """An input-image point as (x, y) in working pixels, scaled per axis (a paste position)."""
        return point.x * self.work_size[0] / self.image_size[0], point.y * self.work_size[1] / self.image_size[1]

    @staticmethod
    def work_size_at(image_size: tuple[int, int], vae_factor: int) -> tuple[int, int]:
        """The working size of an image kept at its own width (evaluation features): both sides rounded to
        the VAE factor."""
        return Geometry.for_image(image_size, image_size[0], vae_factor, 1.0).work_size

    def grid_to_image_scale(self) -> float:
        """Input pixels per feature-grid cell (mean of both axes), to report distances in input pixels."""
        return (self.image_size[0] / self.feature_size[0] + self.image_size[1] / self.feature_size[1]) / 2


@dataclass(frozen=True)
class Display:
    """The app's point canvas: the image enlarged (or reduced) so that its long side is `side` pixels, clicks
    on it mapped back to input pixels with pixel centres aligned."""

    image_size: tuple[int, int]
    side: int = 640

    @property
    def scale(self) -> float:
        """Display pixels per image pixel."""
        return self.side / max(self.image_size)

    @property
    def size(self) -> tuple[int, int]:
        return round(self.image_size[0] * self.scale), round(self.image_size[1] * self.scale)

    def to_image(self, x: float, y: float) -> list[float]:
        """A click at display pixel (x, y) -> image pixel coordinates, 0.1 px precision."""
        return [round((x + 0.5) / self.scale - 0.5, 1), round((y + 0.5) / self.scale - 0.5, 1)]

    def from_image(self, x: float, y: float) -> tuple[float, float]:
        """Image pixel (x, y) -> where it is drawn on the display."""
        return (x + 0.5) * self.scale - 0.5, (y + 0.5) * self.scale - 0.5
