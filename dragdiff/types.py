"""Small typed values passed between the stages, the engine and its callers.

Coordinate convention everywhere outside `coords.py`: a Point is (x, y) in pixels of the *input* image,
origin at the top-left corner, x to the right, y down; (0, 0) is the centre of the top-left pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .config import DragConfig


@dataclass(frozen=True)
class Point:
    x: float
    y: float

    def as_list(self) -> list[float]:
        return [self.x, self.y]


@dataclass(frozen=True)
class DragRequest:
    """One edit: move the content at each handle to its target, changing only the masked region.

    image: RGB, any size. mask: H×W bool array of the image's size, True = may change; None = all may change.
    """

    image: Image.Image
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray | None = None
    prompt: str = ""
    config: DragConfig = field(default_factory=DragConfig.load)


@dataclass(frozen=True)
class Progress:
    """What `on_progress` receives: the stage, step k of total, and the current handle positions."""

    stage: str  # "lora" | "inversion" | "drag" | "denoise"
    step: int
    total: int
    points: tuple[Point, ...] = ()
    distance: float | None = None  # largest handle-target distance left, input-image px (drag stage)


ProgressCallback = Callable[[Progress], None]
StopCallback = Callable[[], bool]


@dataclass
class DragResult:
    """The edited image (input size) and how it was made."""

    image: Image.Image
    handle_track: list[tuple[Point, ...]]  # tracked handle positions, input px: [initial, after step 1, ...]
    steps_used: int
    stopped_early: bool  # True when every handle reached its target before drag_steps
    timings: dict[str, float]  # seconds per stage
    seed: int
    config: DragConfig
    model: str
    warnings: list[str] = field(default_factory=list)
