"""Regions and their moves on a grid (latent or feature): resizing masks, and warping maps so that an object
moves by an offset and scales about its centre. Grid coordinates are (row, col) cell centres."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def grid_mask(mask: np.ndarray, size: tuple[int, int], device=None) -> torch.Tensor:
    """An image-size bool mask on a (w, h) grid: a cell is in when at least half of it is (area resampling),
    or, for a mask too small for that, when any of it is (so a thin object never vanishes)."""
    width, height = size
    area = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], (height, width), mode="area")[0, 0]
    cells = area >= 0.5
    if mask.any() and not cells.any():
        cells = area > 0
    return cells.to(device)


def centre(mask: torch.Tensor) -> tuple[float, float]:
    """(row, col) centre of the bounding box of the True cells."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return (float(rows.min() + rows.max()) / 2, float(cols.min() + cols.max()) / 2)


def warp(maps: torch.Tensor, offset: tuple[float, float], scale: float, about: tuple[float, float]) -> torch.Tensor:
    """(B, C, h, w) maps resampled so that what was at p is at about + scale·(p − about) + offset.

    offset and about are (row, col) in cells; outside the source the result is 0. Bilinear for float maps,
    nearest for bool masks (returned as bool)."""
    is_mask = maps.dtype == torch.bool
    source = maps.float()
    height, width = maps.shape[-2:]
    rows = torch.arange(height, dtype=torch.float32, device=maps.device)
    cols = torch.arange(width, dtype=torch.float32, device=maps.device)
    # Where each output cell comes from, inverted: p = (q − about − offset) / scale + about.
    src_rows = (rows - about[0] - offset[0]) / scale + about[0]
    src_cols = (cols - about[1] - offset[1]) / scale + about[1]
    grid_y, grid_x = torch.meshgrid((src_rows + 0.5) / height * 2 - 1, (src_cols + 0.5) / width * 2 - 1, indexing="ij")
    grid = torch.stack([grid_x, grid_y], -1)[None].expand(maps.shape[0], -1, -1, -1).to(source.dtype)
    out = F.grid_sample(source, grid, mode="nearest" if is_mask else "bilinear", align_corners=False)
    return out > 0.5 if is_mask else out.to(maps.dtype)


def warp_mask(mask: torch.Tensor, offset, scale, about) -> torch.Tensor:
    """warp() of one (h, w) bool mask."""
    return warp(mask[None, None], offset, scale, about)[0, 0]


def grow(mask: torch.Tensor, cells: int) -> torch.Tensor:
    """The (h, w) bool mask with every cell within `cells` cells of it."""
    return F.max_pool2d(mask[None, None].float(), 2 * cells + 1, stride=1, padding=cells)[0, 0] > 0


def ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Cells within `width` cells of the mask but not in it: the surroundings whose look fills a hole."""
    return grow(mask, width) & ~mask


def paste(destination: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`source` where the (h, w) mask is True, `destination` elsewhere (maps of equal shape)."""
    return torch.where(mask.to(destination.device), source, destination)
