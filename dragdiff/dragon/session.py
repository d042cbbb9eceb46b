"""A DragonDiffusion edit as versioned JSON (a .json file, or inside the result PNG under the same text-chunk
key as DragDiffusion sessions), complete enough to replay:

    {"format": "dragdiff-dragon-session", "version": 1, "mode": "move",
     "image": {"png_base64": ...}, "mask": {...} | null, "reference": {...} | null, "reference_mask": {...} | null,
     "offset": [dx, dy] | null, "scale": 1.0, "position": [x, y] | null,
     "points": [{"handle": [x, y], "target": [x, y]}, ...] | null,
     "prompt": "", "reference_prompt": "", "model": "demo", "config": {...DragonConfig fields...}}

Images follow dragdiff.session's rules (embedded PNG, or a path that must stay inside the file's folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL.PngImagePlugin import PngInfo

from ..errors import DragError
from ..images import MAX_IMAGE_PIXELS, load_image, load_mask, mask_to_image, png_bytes, read_png_text
from ..session import (
    MAX_SESSION_BYTES,
    PNG_TEXT_KEY,
    _base64_png,
    _check_fields,
    _image_source,
    _parse_json,
    _point,
    _points,
    _read_session_file,
    _starts_like_png,
    _utf8,
    _within,
    _write_atomic,
    _xy,
)
from .config import DragonConfig
from .requests import AppearanceRequest, ContentDragRequest, DragonRequest, MoveRequest, PasteRequest

FORMAT = "dragdiff-dragon-session"
VERSION = 1
_FIELDS = {  # per mode: the request's fields that the JSON carries, beside format/version/mode/model/config
    "move": ("image", "mask", "offset", "scale", "prompt"),
    "drag": ("image", "mask", "points", "prompt"),
    "appearance": ("image", "mask", "reference", "reference_mask", "prompt", "reference_prompt"),
    "paste": ("image", "reference", "reference_mask", "position", "scale", "prompt", "reference_prompt"),
}


def session_dict(request: DragonRequest, model: str, config: DragonConfig) -> dict[str, Any]:
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "mode": request.mode, "model": model}
    for name in _FIELDS[request.mode]:
        if name == "points":
            pairs = zip(request.handles, request.targets, strict=True)
            data[name] = [{"handle": _xy(h), "target": _xy(t)} for h, t in pairs]
        elif name in ("offset", "position"):
            data[name] = _xy(getattr(request, name))
        elif name in ("image", "reference"):
            data[name] = {"png_base64": _base64_png(getattr(request, name))}
        elif name in ("mask", "reference_mask"):
            mask = getattr(request, name)
            data[name] = None if mask is None else {"png_base64": _base64_png(mask_to_image(mask))}
        else:
            data[name] = getattr(request, name)
    data["config"] = config.to_dict()
    return data


def save_result(image, request: DragonRequest, model: str, config: DragonConfig, path: str | Path) -> None:
    """The edited PNG carrying its session, and the session .json beside it, both written atomically."""
    text = json.dumps(session_dict(request, model, config), sort_keys=True, indent=2) + "\n"
    info = PngInfo()
    info.add_text(PNG_TEXT_KEY, text, zip=True)
    path = Path(path)
    _write_atomic(path, png_bytes(image, pnginfo=info))
    _write_atomic(path.with_suffix(".json"), text.encode("utf-8"))


def is_dragon_session(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == FORMAT


def read_session_data(path: str | Path) -> Any:
    """The parsed JSON of a session file or of the session a result PNG carries."""
    path = Path(path)
    if _starts_like_png(path):
        text = read_png_text(path, PNG_TEXT_KEY, max_bytes=MAX_SESSION_BYTES)
        if text is None:
            raise DragError(f"{path.name} carries no dragdiff session; only result PNGs saved by dragdiff do")
        return _parse_json(text, f"the session in '{path}'")
    name = f"session file '{path}'"
    return _parse_json(_utf8(_read_session_file(path), name), name)


def load_dragon_session(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[DragonRequest, str]:
    """(request, model) from a DragonDiffusion session file or result PNG; errors name the field."""
    data = read_session_data(path)
    with _within(f"session '{Path(path).name}'"):
        return request_from_dict(data, Path(path).parent, max_pixels)


def request_from_dict(data: Any, folder: Path | None, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[DragonRequest, str]:
    if not is_dragon_session(data):
        raise DragError(f"not a DragonDiffusion session (format must be '{FORMAT}')")
    if data.get("version") != VERSION:
        raise DragError(f"version: this dragdiff reads version {VERSION}, got {data.get('version')!r}")
    mode = data.get("mode")
    if mode not in _FIELDS:
        raise DragError(f"mode: expected one of {list(_FIELDS)}, got {mode!r}")
    required = ("format", "version", "mode", "model", "config", "image")
    _check_fields(data, "session", required, tuple(f for f in _FIELDS[mode] if f != "image"))
    config = DragonConfig.load(mode, **_object(data["config"], "session.config"))
    image = _image(data["image"], "session.image", folder, max_pixels)
    values: dict[str, Any] = {"image": image, "config": config}
    if data.get("reference") is not None:
        values["reference"] = _image(data["reference"], "session.reference", folder, max_pixels)
    for name, owner in (("mask", image), ("reference_mask", values.get("reference"))):
        if data.get(name) is not None and owner is not None:
            with _within(f"session.{name}"):
                values[name] = load_mask(_image_source(data[name], f"session.{name}", folder), owner.size)
    for name in ("offset", "position"):
        if name in data:
            values[name] = _point(data[name], f"session.{name}")
    for name in ("scale", "prompt", "reference_prompt"):
        if name in data:
            values[name] = data[name]
    if mode == "drag":
        values["handles"], values["targets"] = _points(data.get("points"))
    request_type = {"move": MoveRequest, "drag": ContentDragRequest, "appearance": AppearanceRequest}.get(
        mode, PasteRequest
    )
    try:
        request = request_type(**values)
    except TypeError as exc:  # a required field of this mode is missing
        raise DragError(f"session: {exc}; see the fields of a '{mode}' session in dragdiff/dragon/session.py") from exc
    return request, _model(data["model"])


def _image(value: Any, name: str, folder: Path | None, max_pixels: int):
    source = _image_source(value, name, folder)
    with _within(name):
        return load_image(source, max_pixels=max_pixels)


def _object(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise DragError(f"{name}: expected an object of DragonConfig fields")
    return value


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DragError(f"session.model: expected a model name, got {value!r}")
    return value
