"""What a DragDiffusion edit returns beyond every method's EditResult: how the handles travelled."""

from __future__ import annotations

from dataclasses import dataclass

from ..types import EditResult, Point


@dataclass(kw_only=True)
class DragResult(EditResult):
    """The edited image (input size), its session, and how it was made."""

    handle_track: list[tuple[Point, ...]]  # tracked handle positions, input px: [initial, after step 1, ...]
    steps_used: int
    # the latent point tracking's own verdict: every handle at its target (in its features) before drag_steps
    # ran out. It can say so while the picture shows nothing moved: image_check is the picture's verdict.
    tracker_reached_targets: bool
    seed: int
