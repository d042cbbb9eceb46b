"""GoodDrag (Zhang et al., ICLR 2025): DragDiffusion's preparation (LoRA + DDIM inversion, cached), then AlDD,
alternating drag and denoising, with information-preserving motion supervision. The frame of an edit (steps
1-2, 5-6) is dragdiff.lora_drag's; this file is steps 3-4. docs/gooddrag.md says which line of the reference
code (github.com/zewei-Zhang/GoodDrag @ 6948dfe) each step follows and where we differ."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..errors import DragCancelled
from ..features import supervision_features, unet_features
from ..inversion import ddim_step, drag_timesteps
from ..lora_drag import Dragged, LoraDragMethod
from ..motion import DragTrace, latent_keep_mask, mask_loss, motion_supervision_loss, patches
from ..runtime import gradient_checkpointing
from ..tracking import all_reached, features_at, track_points
from ..types import Progress
from .config import SESSION_FORMAT, GoodDragConfig


@dataclass
class Waypoint:
    """The unedited latent's path through one timestep of the drag window: what the drag there compares to."""

    latent_after: torch.Tensor  # z⁰_{t-1}, the mask term's anchor
    patches: torch.Tensor  # F0(t) around each initial handle, (C, P, K): the supervision target
    vectors: torch.Tensor  # F0(t) at each initial handle, (P, C): what tracking looks for


@dataclass
class DragState:
    """What carries over from one timestep's drag to the next."""

    handles: torch.Tensor  # (P, 2) long, current handle positions on the feature grid
    track: list[torch.Tensor] = field(default_factory=list)
    steps: int = 0  # Adam steps made, over all timesteps
    unchanged: int = 0  # trackings in a row that left every handle in place (spans timesteps, as the reference)
    done: bool = False
    reached: bool = False


class GoodDrag(LoraDragMethod):
    """GoodDrag on a Runtime's model: GoodDrag("demo").edit(DragRequest(...)) with the model's defaults."""

    name = "gooddrag"
    config_type = GoodDragConfig
    advice = (
        "a larger drag_end_step or tracks_per_step, a painted region that covers the whole path, "
        "or DragonDiffusion's move for moving a whole object"
    )
    session_format = SESSION_FORMAT

    def _drag(self, prepared, mask, handles, targets, on_progress, should_stop) -> Dragged:
        m, config, text = self.model, prepared.config, prepared.text
        scheduler = m.scheduler()
        timesteps = drag_timesteps(scheduler, config.n_inference_steps, config.n_inversion_steps)
        window = min(config.drag_end_step, len(timesteps))
        start = time.perf_counter()
        handles, targets = handles.round().long(), targets.round()
        # 3a. The original path through the drag window: z⁰ denoised plainly, keeping at each timestep the
        # anchor z⁰_{t-1} and F0(t) around the initial handles (ref pipeline.py get_original_features).
        path, originals = self._original_path(prepared, scheduler, timesteps[:window], handles, should_stop)
        # 3b. AlDD (ref pipeline.py good_drag): at each timestep of the window a drag phase, then one DDIM
        # step of the dragged latent, until the window ends, every handle arrives or tracking stalls.
        keep = latent_keep_mask(mask, config.mask_weight, prepared.geometry.latent_size, self.model.device)
        state = DragState(handles, [handles])
        latent, k = prepared.inverted.float(), 0
        while k < window and not state.done:
            t = timesteps[k]
            latent = self._drag_phase(
                prepared, scheduler, t, latent, path[k], keep, state, targets, on_progress, should_stop
            )
            with torch.no_grad():
                noise = m.unet(latent.to(m.dtype), t, encoder_hidden_states=text).sample
                latent = ddim_step(scheduler, noise.float(), t, latent)
            k += 1
            if on_progress:
                on_progress(Progress("denoise", k, len(timesteps)))
        # 4. The rest of the schedule: [original, dragged] with mutual self-attention, registered at the first
        # step without a drag (ref pipeline.py set_latent_masactrl).
        dragged_at = time.perf_counter()
        result = self._denoise(
            originals[k], latent.to(m.dtype), text, scheduler, timesteps[k:], config, on_progress, should_stop, done=k
        )
        trace = DragTrace(latent, state.track, state.steps, state.reached)
        return Dragged(result, trace, {"drag": dragged_at - start, "denoise": time.perf_counter() - dragged_at})

    def _features(self, prepared, latent, t, need_output):
        """F(z_t) on the supervision grid (1, C, H, W) and, when asked, the UNet's noise prediction."""
        m, config = self.model, prepared.config
        autocast = torch.autocast(m.device.type, dtype=m.dtype, enabled=m.dtype != torch.float32)
        with autocast:
            blocks, noise = unet_features(
                m.unet, latent.to(m.dtype), t, prepared.text, config.feature_blocks, need_output=need_output
            )
        return supervision_features(blocks, prepared.geometry.feature_size), noise

    @torch.no_grad()
    def _original_path(self, prepared, scheduler, timesteps, handles, should_stop):
        """(waypoints per timestep, original latent before each step and after the last)."""
        radius = prepared.config.motion_radius
        latent, path, originals = prepared.inverted.float(), [], [prepared.inverted]
        for t in timesteps:
            if should_stop and should_stop():
                raise DragCancelled("cancelled while dragging")
            features, noise = self._features(prepared, latent, t, need_output=True)
            latent = ddim_step(scheduler, noise.float(), t, latent)
            path.append(Waypoint(latent, patches(features, handles, radius), features_at(features[0], handles)))
            originals.append(latent.to(self.model.dtype))
        return path, originals

    def _drag_phase(self, prepared, scheduler, t, latent, waypoint, keep, state, targets, on_progress, should_stop):
        """The drag at one timestep (ref pipeline.py gooddrag_step): a fresh Adam on z_t; tracking first, then
        after every drag_steps_per_track updates, with the features of the last forward, tracks_per_step times."""
        m, config, geometry = self.model, prepared.config, prepared.geometry
        latent = latent.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([latent], lr=config.drag_lr, fused=config.fused_optimizers or None)
        scaler = torch.amp.GradScaler(m.device.type, enabled=m.dtype == torch.float16)
        most = config.drag_end_step * config.tracks_per_step * config.drag_steps_per_track
        tracks, since_track, first = 0, 0, True
        with gradient_checkpointing(m.unet, config.gradient_checkpointing):
            while tracks < config.tracks_per_step:
                if should_stop and should_stop():
                    raise DragCancelled("cancelled while dragging")
                need_output = keep is not None or not config.truncate_unet
                features, noise = self._features(prepared, latent, t, need_output)
                if first:  # the denoising step moved the content: find the handles again
                    state.handles = track_points(
                        features[0].detach(), waypoint.vectors, state.handles, config.tracking_radius
                    )
                    state.track.append(state.handles)
                    first = False
                if all_reached(state.handles, targets, config.stop_distance):
                    state.done = state.reached = True
                    break
                if state.unchanged >= config.early_stop_tracks:
                    state.done = True
                    break
                loss = motion_supervision_loss(
                    features,
                    state.handles,
                    targets,
                    config.motion_radius,
                    config.stop_distance,
                    max_step=config.max_step,
                    pair_weight=(2 * config.motion_radius) ** 2,
                    original=waypoint.patches,
                )
                if keep is not None:
                    previous = scheduler.step(noise.float(), t, latent).prev_sample
                    loss = loss + config.mask_weight * mask_loss(previous, waypoint.latent_after, keep)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                state.steps += 1
                since_track += 1
                if since_track == config.drag_steps_per_track:
                    # tracked in the features before this update, as the reference does
                    tracks, since_track = tracks + 1, 0
                    moved = track_points(features[0].detach(), waypoint.vectors, state.handles, config.tracking_radius)
                    state.unchanged = state.unchanged + 1 if torch.equal(moved, state.handles) else 0
                    state.handles = moved
                    state.track.append(moved)
                if on_progress:
                    left = float((state.handles.float() - targets).norm(dim=1).max()) * geometry.grid_to_image_scale()
                    on_progress(Progress("drag", state.steps, most, geometry.from_grid(state.handles), left))
        return latent.detach()
