"""Small typed values passed between the stages, the methods and their callers.

Coordinate convention everywhere outside `coords.py`: a Point is (x, y) in pixels of the *input* image,
origin at the top-left corner, x to the right, y down; (0, 0) is the centre of the top-left pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

# Handle -> target pairs in one edit: far more than any drag uses. Each pair costs every step of a drag some
# work, and a session of 100,000 points took 77 s to refuse one by one while other users waited.
MAX_POINT_PAIRS = 100


@dataclass(frozen=True)
class Point:
    x: float
    y: float

    def as_list(self) -> list[float]:
        return [self.x, self.y]


@dataclass(frozen=True)
class PointCheck:
    """Where one handle's content was found in a result (input px), how far from its target, and whether
    that is within the arrival tolerance (dragdiff.arrival)."""

    found: Point
    distance_px: float
    arrived: bool

    def to_json(self) -> dict[str, Any]:
        found = [round(float(self.found.x), 1), round(float(self.found.y), 1)]
        return {"found": found, "distance_px": round(float(self.distance_px), 1), "arrived": bool(self.arrived)}


@dataclass(frozen=True)
class DragRequest:
    """One point drag, the edit every method offers: move the content at each handle to its target, changing
    only the masked region.

    image: RGB, any size. mask: H×W bool array of the image's size, True = may change; None = all may change.
    config: the method's config (e.g. a DragConfig); None = the defaults of the model the method runs on.
    """

    image: Image.Image
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray | None = None
    prompt: str = ""
    config: Any = None


Stage = Literal["lora", "inversion", "drag", "denoise", "reference", "editing", "inpaint", "check"]

# How the CLI's progress bars and the app's status name each stage.
STAGE_LABELS: dict[str, str] = {
    "lora": "LoRA fine-tuning",
    "inversion": "DDIM inversion",
    "drag": "dragging",
    "denoise": "denoising",
    "reference": "inverting the reference",
    "editing": "guided sampling",
    "inpaint": "inpainting the revealed area",
    "check": "looking for the handles' content in the result",
}


@dataclass(frozen=True)
class Progress:
    """What `on_progress` receives: the stage, step k of total, and the current handle positions."""

    stage: Stage
    step: int
    total: int
    points: tuple[Point, ...] = ()
    distance: float | None = None  # largest handle-target distance left, input-image px (drag stage)

    def describe(self) -> str:
        """One status line, e.g. 'dragging 12/80 · 7.5 px to go'."""
        text = f"{STAGE_LABELS.get(self.stage, self.stage)} {self.step}/{self.total}"
        return text + (f" · {self.distance:.1f} px to go" if self.distance is not None else "")


ProgressCallback = Callable[[Progress], None]
StopCallback = Callable[[], bool]


@dataclass(kw_only=True)
class EditResult:
    """What every method's edit returns: the image (the input's size), the session that replays it, and how
    it was made. `session.to_json()` is what a saved result carries."""

    image: Image.Image
    session: Any  # the method's session object (to_json(); dragdiff.session_io.save_result writes it)
    timings: dict[str, float]  # seconds per stage, and "total"
    config: Any
    model: str
    warnings: list[str] = field(default_factory=list)
    # per handle: where its content was found in the result (dragdiff.arrival); None when not checked
    image_check: tuple[PointCheck, ...] | None = None


@dataclass(kw_only=True)
class DragResult(EditResult):
    """What a LoRA-based drag (DragDiffusion, GoodDrag) returns beyond every method's EditResult: how the
    handles travelled."""

    handle_track: list[tuple[Point, ...]]  # tracked handle positions, input px: [initial, after each tracking]
    steps_used: int  # latent-optimiser updates made
    # the latent point tracking's own verdict: every handle at its target (in its features) before the drag
    # ended. It can say so while the picture shows nothing moved: image_check is the picture's verdict.
    tracker_reached_targets: bool
    seed: int
