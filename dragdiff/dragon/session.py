"""A DragonDiffusion edit as versioned JSON (a .json file, or inside the result PNG under the same text-chunk
key as DragDiffusion sessions), complete enough to replay:

    {"format": "dragdiff-dragon-session", "version": 1, "mode": "move" | "resize" | "drag" | ...,
     "image": {"png_base64": ...}, "mask": {...} | null, "reference": {...} | null, "reference_mask": {...} | null,
     "offset": [dx, dy] | null, "scale": 1.0, "position": [x, y] | null,
     "points": [{"handle": [x, y], "target": [x, y]}, ...] | null,
     "prompt": "", "reference_prompt": "", "model": "demo", "config": {...DragonConfig fields...},
     "image_check": [{"found": [x, y], "distance_px": d, "arrived": true}, ...]}

image_check (optional) is what the check after the edit found (dragdiff.arrival): for a drag one entry per
point, for a move one for the object's centre. It records the result and is not an input of a replay.

Images follow dragdiff.session's rules (embedded PNG, or a path that must stay inside the file's folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import resolve_config
from ..errors import DragError
from ..images import MAX_IMAGE_PIXELS, load_image, load_mask, mask_to_image
from ..session_io import (
    base64_png,
    check_fields,
    checks_from_json,
    checks_json,
    image_source,
    point_from_json,
    point_json,
    point_pairs_from_json,
    read_session_data,
    session_json,
    within,
)
from ..types import PointCheck
from .config import DragonConfig
from .requests import AppearanceRequest, ContentDragRequest, DragonRequest, MoveRequest, PasteRequest

FORMAT = "dragdiff-dragon-session"
VERSION = 1
_FIELDS = {  # per mode: the request's fields that the JSON carries, beside format/version/mode/model/config
    "move": ("image", "mask", "offset", "scale", "prompt"),
    "resize": ("image", "mask", "offset", "scale", "prompt"),  # a move with scale != 1, recorded as the user chose it
    "drag": ("image", "mask", "points", "prompt"),
    "appearance": ("image", "mask", "reference", "reference_mask", "prompt", "reference_prompt"),
    "paste": ("image", "reference", "reference_mask", "position", "scale", "prompt", "reference_prompt"),
}


@dataclass(frozen=True, eq=False)
class DragonSession:
    """One DragonDiffusion edit, complete enough to replay: the request (its config set) and the model."""

    request: DragonRequest
    model: str
    image_check: tuple[PointCheck, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        request = self.request
        mode = session_mode(request)
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "mode": mode, "model": self.model}
        for name in _FIELDS[mode]:
            if name == "points":
                pairs = zip(request.handles, request.targets, strict=True)
                data[name] = [{"handle": point_json(h), "target": point_json(t)} for h, t in pairs]
            elif name in ("offset", "position"):
                data[name] = point_json(getattr(request, name))
            elif name in ("image", "reference"):
                data[name] = {"png_base64": base64_png(getattr(request, name))}
            elif name in ("mask", "reference_mask"):
                mask = getattr(request, name)
                data[name] = None if mask is None else {"png_base64": base64_png(mask_to_image(mask))}
            else:
                data[name] = getattr(request, name)
        data["config"] = request.config.to_dict()
        return data | checks_json(self.image_check)

    def to_json(self) -> str:
        return session_json(self.to_dict())


def session_mode(request: DragonRequest) -> str:
    """The mode a user chose: a move that scales is a resize (one request type runs both)."""
    return "resize" if request.mode == "move" and request.scale != 1 else request.mode


def load_dragon_session(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[DragonRequest, str]:
    """(request, model) from a DragonDiffusion session file or result PNG; errors name the field."""
    data = read_session_data(path)
    with within(f"session '{Path(path).name}'"):
        return request_from_dict(data, Path(path).parent, max_pixels)


def request_from_dict(data: Any, folder: Path | None, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[DragonRequest, str]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DragError(f"not a DragonDiffusion session (format must be '{FORMAT}')")
    if data.get("version") != VERSION:
        raise DragError(f"version: this dragdiff reads version {VERSION}, got {data.get('version')!r}")
    mode = data.get("mode")
    if mode not in _FIELDS:
        raise DragError(f"mode: expected one of {list(_FIELDS)}, got {mode!r}")
    required = ("format", "version", "mode", "model", "config", "image")
    check_fields(data, "session", required, (*(f for f in _FIELDS[mode] if f != "image"), "image_check"))
    config_mode = "move" if mode == "resize" else mode
    config = resolve_config(DragonConfig, mode=config_mode, session=_object(data["config"], "session.config"))
    image = _image(data["image"], "session.image", folder, max_pixels)
    values: dict[str, Any] = {"image": image, "config": config}
    if data.get("reference") is not None:
        values["reference"] = _image(data["reference"], "session.reference", folder, max_pixels)
    for name, owner in (("mask", image), ("reference_mask", values.get("reference"))):
        if data.get(name) is not None and owner is not None:
            with within(f"session.{name}"):
                values[name] = load_mask(image_source(data[name], f"session.{name}", folder), owner.size)
    for name in ("offset", "position"):
        if name in data:
            values[name] = point_from_json(data[name], f"session.{name}")
    for name in ("scale", "prompt", "reference_prompt"):
        if name in data:
            values[name] = data[name]
    if mode == "drag":
        values["handles"], values["targets"] = point_pairs_from_json(data.get("points"))
    checks_from_json(data.get("image_check"), "session.image_check", len(values.get("handles", (None,))))
    request_types = {"move": MoveRequest, "resize": MoveRequest, "drag": ContentDragRequest}
    request_type = {**request_types, "appearance": AppearanceRequest}.get(mode, PasteRequest)
    try:
        request = request_type(**values)
    except TypeError as exc:  # a required field of this mode is missing
        raise DragError(f"session: {exc}; see the fields of a '{mode}' session in dragdiff/dragon/session.py") from exc
    return request, _model(data["model"])


def _image(value: Any, name: str, folder: Path | None, max_pixels: int):
    source = image_source(value, name, folder)
    with within(name):
        return load_image(source, max_pixels=max_pixels, keep_alpha=True)


def _object(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise DragError(f"{name}: expected an object of DragonConfig fields")
    return value


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DragError(f"session.model: expected a model name, got {value!r}")
    return value
