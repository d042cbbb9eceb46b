"""Motion supervision, the loss of the latent-optimising drag methods (DragDiffusion eq. 3, GoodDrag's
information-preserving variant), and the mask term that keeps the unpainted part of the latent in place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class DragTrace:
    latent: torch.Tensor  # the dragged latent, fp32
    handles: list[torch.Tensor]  # (P, 2) long handle positions on the feature grid: initial, then each tracking
    steps: int  # optimiser updates made
    reached: bool  # every handle ended within the stopping distance of its target


def patch_offsets(radius: int, device: torch.device | None = None) -> torch.Tensor:
    """(K, 2) (row, col) offsets of the (2r+1)² square patch, row-major."""
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    d_row, d_col = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([d_row.reshape(-1), d_col.reshape(-1)], dim=1)


def patches(features: torch.Tensor, points: torch.Tensor, radius: int) -> torch.Tensor:
    """The (2r+1)² patches of (1, C, H, W) features around (P, 2) (row, col) points -> (C, P, K), bilinear."""
    return sample(features, points.float().unsqueeze(1) + patch_offsets(radius, features.device))


def motion_supervision_loss(
    features: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    radius: int,
    min_distance: float,
    *,
    max_step: float = 1.0,
    pair_weight: float | None = None,
    original: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_i w · mean_{q ∈ Ω(p_i, r1)} |F(q + d_i) − S_i(q)|, vectorised over points and patch positions.

    features: (1, C, H, W). handles: (P, 2) long (row, col). targets: (P, 2) float. d_i points from handle to
    target, of length min(max_step, |t_i − p_i|); F(q + d_i) is sampled bilinearly so the gradient reaches the
    latent. The named options are where the methods differ:
      - max_step: 1 for DragDiffusion (a unit step), β = 4 for GoodDrag;
      - pair_weight w: (2r+1)² by default (DragDiffusion's sum over the patch), (2r)² in GoodDrag's code;
      - original: None pulls toward the detached *current* features at the handle (DragDiffusion); a (C, P, K)
        tensor of the *original* features of each pair's patch (GoodDrag's information-preserving supervision:
        F0 at the initial handle, so that the content does not drift while it travels).
    Pairs closer than `min_distance`, or with the handle on its target, are skipped (no direction to move in).
    """
    direction = targets.float() - handles.float()
    length = direction.norm(dim=1, keepdim=True)
    active = ((length >= min_distance) & (length > 0)).squeeze(1)
    if not active.any():
        return features.sum() * 0.0
    step = direction[active] / length[active] * length[active].clamp(max=max_step)
    offsets = patch_offsets(radius, features.device)
    source = handles[active].float().unsqueeze(1) + offsets  # (P, K, 2)
    wanted = sample(features, source).detach() if original is None else original[:, active].detach()
    moved = sample(features, source + step.unsqueeze(1))
    per_pair = (moved - wanted.to(moved.dtype)).abs().mean(dim=(0, 2))  # (P,)
    weight = offsets.shape[0] if pair_weight is None else pair_weight
    return weight * per_pair.sum()


def sample(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (1, C, H, W) features at (P, K, 2) float (row, col) -> (C, P, K); clamped at borders."""
    _, _, height, width = features.shape
    x = points[..., 1] * 2 / max(width - 1, 1) - 1  # align_corners=True: index 0 -> -1, W-1 -> +1
    y = points[..., 0] * 2 / max(height - 1, 1) - 1
    grid = torch.stack([x, y], dim=-1).unsqueeze(0).to(features.dtype)  # (1, P, K, 2)
    # grid_sample reads outside the tensor at a NaN coordinate (a segfault in libtorch). NaN here means the
    # latent itself went NaN; sampling the centre instead lets the process survive and the result show it.
    grid = grid.nan_to_num(nan=0.0)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def mask_loss(latent_prev: torch.Tensor, latent_prev_original: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """λ-free mask term: Σ |z_{t-1} − z⁰_{t-1}| · (1 − M), with `keep` = 1 − M on the latent grid (1, 1, h, w)."""
    return ((latent_prev.float() - latent_prev_original.float()) * keep).abs().sum()


def latent_keep_mask(
    mask: np.ndarray | None, weight: float, latent_size: tuple[int, int], device: torch.device
) -> torch.Tensor | None:
    """1 − M on the latent grid, (1, 1, h, w) on `device`: the share of each latent cell that must not change;
    None when there is no mask term (no mask: everything may change, or its weight λ is 0)."""
    if mask is None or weight == 0:
        return None
    editable = torch.from_numpy(mask.astype(np.float32))[None, None]
    width, height = latent_size
    return (1.0 - F.interpolate(editable, (height, width), mode="area")).to(device)
