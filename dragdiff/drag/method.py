"""DragDiffusion (Shi et al., CVPR 2024): prepare an image once (LoRA + DDIM inversion, cached), then drag
it as often as wanted. The frame of an edit (steps 1-2, 5-6) is dragdiff.lora_drag's; this file is steps 3-4.
docs/dragdiffusion.md says which reference step each stage follows."""

from __future__ import annotations

import time

import torch

from ..features import supervision_features, unet_features
from ..inversion import drag_timesteps
from ..lora_drag import Dragged, LoraDragMethod
from ..motion import latent_keep_mask, mask_loss
from ..runtime import gradient_checkpointing
from ..types import Progress
from .config import SESSION_FORMAT, DragConfig
from .optimise import drag_latent


class DragDiffusion(LoraDragMethod):
    """DragDiffusion on a Runtime's model. `prepare()` is the slow part and is cached; `edit()` drags.

    DragDiffusion("demo").edit(DragRequest(image, (Point(44, 64),), (Point(64, 64),))) runs on the demo
    model with its own defaults (request.config None).
    """

    name = "dragdiffusion"
    config_type = DragConfig
    advice = (
        "more drag_steps or a higher drag_lr, a painted region that covers the whole path, "
        "or DragonDiffusion's move for moving a whole object"
    )
    session_format = SESSION_FORMAT

    def _drag(self, prepared, mask, handles, targets, on_progress, should_stop) -> Dragged:
        scheduler = self.model.scheduler()
        config = prepared.config
        timesteps = drag_timesteps(scheduler, config.n_inference_steps, config.n_inversion_steps)
        # 3. Optimise z_t with motion supervision and point tracking.
        t0 = time.perf_counter()
        trace = self._optimise(prepared, scheduler, timesteps[0], mask, handles, targets, on_progress, should_stop)
        # 4. Denoise [original, edited] with reference-latent control, keep the edited one.
        t1 = time.perf_counter()
        edited = trace.latent.to(self.model.dtype)
        latent = self._denoise(
            prepared.inverted, edited, prepared.text, scheduler, timesteps, config, on_progress, should_stop
        )
        return Dragged(latent, trace, {"drag": t1 - t0, "denoise": time.perf_counter() - t1})

    def _optimise(self, prepared, scheduler, t, mask, handles, targets, on_progress, should_stop):
        m, config, geometry, text = self.model, prepared.config, prepared.geometry, prepared.text
        autocast = torch.autocast(m.device.type, dtype=m.dtype, enabled=m.dtype != torch.float32)
        keep = latent_keep_mask(mask, config.mask_weight, geometry.latent_size, m.device)
        if keep is not None:  # z⁰_{t-1}: one DDIM step from the unedited z_t, the anchor of the mask term
            with torch.no_grad(), autocast:
                noise = m.unet(prepared.inverted, t, encoder_hidden_states=text).sample
            anchor = scheduler.step(noise.float(), t, prepared.inverted.float()).prev_sample

        def features_and_penalty(latent: torch.Tensor, with_penalty: bool = True):
            penalty = keep is not None and with_penalty
            with autocast:
                features, noise = unet_features(
                    m.unet,
                    latent.to(m.dtype),
                    t,
                    text,
                    config.feature_blocks,
                    need_output=penalty or not config.truncate_unet,
                )
            grid = supervision_features(features, geometry.feature_size)
            if not penalty:
                return grid, None
            previous = scheduler.step(noise.float(), t, latent).prev_sample
            return grid, config.mask_weight * mask_loss(previous, anchor, keep)

        def report(step: int, total: int, current: torch.Tensor) -> None:
            if on_progress:
                left = float((current.float() - targets.round()).norm(dim=1).max()) * geometry.grid_to_image_scale()
                on_progress(Progress("drag", step, total, geometry.from_grid(current), left))

        scaler = torch.amp.GradScaler(m.device.type, enabled=m.dtype == torch.float16)
        with gradient_checkpointing(m.unet, config.gradient_checkpointing):
            return drag_latent(
                prepared.inverted,
                features_and_penalty,
                handles,
                targets,
                steps=config.drag_steps,
                lr=config.drag_lr,
                motion_radius=config.motion_radius,
                tracking_radius=config.tracking_radius,
                stop_distance=config.stop_distance,
                grad_scaler=scaler,
                fused=config.fused_optimizers,
                on_step=report,
                should_stop=should_stop,
            )
