"""The DragonDiffusion modes in the editor: what each mode's clicks mean, its help line, refining a rough
painting into the object's outline, and the request of the editor's state."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import DragError
from ..types import Point
from .points import add_click, pairs, points_note

DRAGON_HELP = {
    "move": "Paint the object, then click where it is and where it should go (two clicks: an arrow).",
    "resize": "Paint the object, set the scale, and optionally click from → to to move it as well.",
    "drag": "Paint the region that may change, then click handle → target pairs as in DragDiffusion.",
    "appearance": "Paint the object, then upload a reference image and paint the object whose look it takes.",
    "paste": "Upload a reference image, paint the object to paste, set the scale, and click where it goes.",
}


def refine_to_object(image: Image.Image, painted: np.ndarray | None) -> np.ndarray:
    """The object inside the bounding box of a rough painting (or a box-shaped stroke), by GrabCut."""
    from ..dragon.box import box_mask

    if painted is None or not painted.any():
        raise DragError("Paint roughly over the object (or around it) first; Refine then finds its outline.")
    rows, cols = np.nonzero(painted)
    return box_mask(image, (cols.min(), rows.min(), cols.max(), rows.max()))


def dragon_click(mode: str, clicks: list[list[float]], x: float, y: float) -> list[list[float]]:
    """Clicks as each mode uses them: move/resize keep one from → to arrow (a third click starts a new one),
    paste keeps one position, drag alternates handle and target, appearance takes none."""
    if mode in ("move", "resize"):
        return [*(clicks if len(clicks) < 2 else []), [float(x), float(y)]]
    if mode == "paste":
        return [[float(x), float(y)]]
    if mode == "drag":
        return add_click(clicks, x, y)
    raise DragError("appearance replacement needs no points: paint the object and the reference's object")


def dragon_points_note(mode: str, clicks: list[list[float]]) -> str:
    """The status line once the points changed, in a DragonDiffusion mode's terms."""
    if mode in ("move", "resize"):
        steps = ["Click on the object, then where it should go.", "Now click where the object should go."]
        return steps[len(clicks)] if len(clicks) < 2 else "The arrow is set: press Drag (a new click starts another)."
    if mode == "paste":
        return "Click where the reference's object goes." if not clicks else "The position is set: press Drag."
    if mode == "appearance":
        return "Appearance needs no points: paint the object here and the reference's object."
    return points_note(clicks)


def unused_points(mode: str, clicks: list[list[float]]) -> str:
    """What a mode leaves of the points clicked for another method or mode (they are kept, never deleted)."""
    used = {"move": 2, "resize": 2, "paste": 1, "appearance": 0}.get(mode, len(clicks))
    if len(clicks) <= used:
        return ""
    what = {2: "the first arrow (pair 1)", 1: "the first point as the object's centre", 0: "no points"}[used]
    return f"{mode} uses {what}; the other points stay for the other methods and modes."


def dragon_request(mode: str, state, scale: float, prompt: str, config):
    """The DragonDiffusion request of the tab's state (image, mask, clicks, reference, reference_mask);
    what is missing is named with what to do."""
    from ..dragon import AppearanceRequest, ContentDragRequest, MoveRequest, PasteRequest

    image, mask, clicks = state.image, state.mask, state.clicks
    if image is None:
        raise DragError("Upload an image first.")
    if mode == "drag":
        handles, targets = pairs(clicks)
        return ContentDragRequest(image, handles, targets, mask, prompt, config)
    if mode in ("appearance", "paste") and (state.reference is None or state.reference_mask is None):
        raise DragError(f"{mode}: upload a reference image and paint its object.")
    if mode == "paste":
        if not clicks:
            raise DragError("paste: click where the object's centre should go.")
        return PasteRequest(image, state.reference, state.reference_mask, Point(*clicks[0]), scale, prompt, "", config)
    if mask is None:
        raise DragError(f"{mode}: paint over the object first.")
    if mode == "appearance":
        return AppearanceRequest(image, mask, state.reference, state.reference_mask, prompt, "", config)
    if mode == "move" and len(clicks) < 2:
        raise DragError("move: click on the object, then where it should go.")
    dx, dy = (clicks[1][0] - clicks[0][0], clicks[1][1] - clicks[0][1]) if len(clicks) >= 2 else (0.0, 0.0)
    return MoveRequest(image, mask, Point(dx, dy), scale if mode == "resize" else 1.0, prompt, config)
