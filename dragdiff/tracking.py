"""Point tracking (DragDiffusion eq. 5, after DragGAN): nearest-neighbour search of each handle's feature."""

from __future__ import annotations

import torch


def track_points(features: torch.Tensor, reference: torch.Tensor, handles: torch.Tensor, radius: int) -> torch.Tensor:
    """Move each handle to the position in its window whose feature is closest (L1) to its reference feature.

    features: (C, H, W) current features. reference: (P, C) features of the handles at their initial positions
    (F0 at p_i^0). handles: (P, 2) long (row, col). The window is (2r+1)² around the current handle, clipped to
    the grid. Returns (P, 2) long. Ties go to the first window position in row-major order.
    """
    _, height, width = features.shape
    offsets = torch.arange(-radius, radius + 1, device=handles.device)
    d_row, d_col = torch.meshgrid(offsets, offsets, indexing="ij")
    rows = (handles[:, :1] + d_row.reshape(1, -1)).clamp(0, height - 1)  # (P, K)
    cols = (handles[:, 1:] + d_col.reshape(1, -1)).clamp(0, width - 1)
    candidates = features[:, rows, cols]  # (C, P, K)
    distance = (candidates - reference.T.unsqueeze(-1)).abs().sum(dim=0)  # (P, K)
    best = distance.argmin(dim=1, keepdim=True)
    return torch.cat([rows.gather(1, best), cols.gather(1, best)], dim=1)


def features_at(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(C, H, W) features at (P, 2) long (row, col) positions -> (P, C)."""
    return features[:, points[:, 0], points[:, 1]].T


def all_reached(handles: torch.Tensor, targets: torch.Tensor, distance: float) -> bool:
    """True when every handle is closer than `distance` to its target (ref's stopping rule)."""
    return bool(((handles.float() - targets.float()).norm(dim=1) < distance).all())
