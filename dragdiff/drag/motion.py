"""Motion supervision (DragDiffusion eq. 3): pull the features around each handle one step toward its target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DragCancelled
from ..tracking import all_reached, features_at, track_points


def motion_supervision_loss(
    features: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, radius: int, min_distance: float
) -> torch.Tensor:
    """Σ_i Σ_{q ∈ Ω(p_i, r1)} ‖F(q + d_i) − sg(F(q))‖₁, vectorised over points and patch positions.

    features: (1, C, H, W). handles: (P, 2) long (row, col). targets: (P, 2) float. d_i is the unit vector
    from handle to target; F(q + d_i) is sampled bilinearly so the gradient reaches the latent. Each pair adds
    (2r+1)² · mean|·| as the reference does; pairs already within `min_distance` are skipped, and so are pairs
    whose handle is on its target whatever `min_distance` is (they have no direction to move in).
    """
    direction = targets.float() - handles.float()
    length = direction.norm(dim=1, keepdim=True)
    active = ((length >= min_distance) & (length > 0)).squeeze(1)
    if not active.any():
        return features.sum() * 0.0
    unit = direction[active] / length[active]
    offsets = torch.arange(-radius, radius + 1, device=features.device, dtype=torch.float32)
    d_row, d_col = torch.meshgrid(offsets, offsets, indexing="ij")
    patch = torch.stack([d_row.reshape(-1), d_col.reshape(-1)], dim=1)  # (K, 2)
    source = handles[active].float().unsqueeze(1) + patch  # (P, K, 2)
    source_features = sample(features, source).detach()
    moved_features = sample(features, source + unit.unsqueeze(1))
    per_pair = (moved_features - source_features).abs().mean(dim=(0, 2))  # (P,)
    return patch.shape[0] * per_pair.sum()


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


@dataclass
class DragTrace:
    latent: torch.Tensor  # the optimised latent, fp32
    handles: list[torch.Tensor]  # (P, 2) long handle positions: initial, then after each update
    steps: int  # optimiser updates made
    reached: bool  # every handle ended within the stopping distance of its target


# feature_fn(latent, with_penalty) -> (features, penalty or None); with_penalty=False when only features are used
FeatureFn = Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None]]


def drag_latent(
    latent: torch.Tensor,
    feature_fn: FeatureFn,
    handles: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float,
    motion_radius: int,
    tracking_radius: int,
    stop_distance: float,
    grad_scaler: torch.amp.GradScaler | None = None,
    fused: bool = False,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DragTrace:
    """Optimise `latent` with Adam so that the features at the handles move to the targets (paper Alg. 1).

    feature_fn(latent, with_penalty) -> (features (1, C, H, W) on the supervision grid, penalty or None), e.g.
    the mask term; it is asked for no penalty where only the features are used (F0, the final tracking).
    handles, targets: (P, 2) (row, col) on that grid, rounded as the reference does. Each step: features,
    point tracking (from the 2nd step), stop check, motion-supervision loss + penalty, one Adam step.
    """
    handles = handles.round().long()
    targets = targets.round()
    with torch.no_grad():
        reference = features_at(feature_fn(latent, False)[0][0], handles)  # F0 at the initial handles, (P, C)
    latent = latent.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=lr, fused=fused or None)
    scaler = grad_scaler or torch.amp.GradScaler(enabled=False)
    track, step = [handles], 0
    for step in range(steps):
        if should_stop and should_stop():
            raise DragCancelled("cancelled while dragging")
        features, penalty = feature_fn(latent, True)
        if step > 0:
            handles = track_points(features[0].detach(), reference, handles, tracking_radius)
            track.append(handles)
        if all_reached(handles, targets, stop_distance):
            return DragTrace(latent.detach(), track, step, True)
        loss = motion_supervision_loss(features, handles, targets, motion_radius, stop_distance)
        if penalty is not None:
            loss = loss + penalty
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if on_step:
            on_step(step + 1, steps, handles)
    if steps > 0:  # where the handles are after the last update
        with torch.no_grad():
            handles = track_points(feature_fn(latent, False)[0][0], reference, handles, tracking_radius)
        track.append(handles)
    return DragTrace(latent.detach(), track, steps, all_reached(handles, targets, stop_distance))
