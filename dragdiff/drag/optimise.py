"""DragDiffusion's drag (paper Alg. 1): Adam on z_t at one timestep, motion supervision and point tracking at
every step, until every handle arrives or the steps run out."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import DragCancelled
from ..motion import DragTrace, motion_supervision_loss
from ..tracking import all_reached, features_at, track_points

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
