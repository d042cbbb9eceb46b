"""The one place that converts between the input image, the working image, the latent and the feature grid.

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

    def grid_to_image_scale(self) -> float:
        """Input pixels per feature-grid cell (mean of both axes), to report distances in input pixels."""
        return (self.image_size[0] / self.feature_size[0] + self.image_size[1] / self.feature_size[1]) / 2
