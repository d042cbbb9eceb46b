"""A versioned JSON record of one edit, saved as a .json file or inside the result PNG.

Layout of version 1 (keys are sorted when written and nothing time-dependent is stored, so two equal
sessions give identical text and a replay can be compared byte for byte):

    {
      "format": "dragdiff-session",
      "version": 1,
      "image": {"png_base64": "iVBORw0..."}  or  {"path": "photo.png"},
      "points": [{"handle": [x, y], "target": [x, y]}, ...],
      "mask": {"png_base64": "..."}  or  {"path": "mask.png"}  or  null,
      "prompt": "a photo of a cat",
      "model": "runwayml/stable-diffusion-v1-5",
      "config": {"seed": 42, "lora_steps": 80, ...}
    }

- points: (x, y) in pixels of the image, (0, 0) = centre of the top-left pixel (as in dragdiff.types).
- path: relative to the folder of the session file, and must stay inside it (no absolute paths, no '..'
  leading out of it).
- mask: an image of the same size; luminance >= 128 (alpha composited on black) = may change. null, or a
  mask with nothing marked, = the whole image may change.
- config: any subset of the DragConfig fields; missing ones take the defaults of configs/drag.yaml. The
  seed is config.seed.
- "mask", "prompt" and "config" may be left out (null, "" and all defaults); other fields are required,
  and unknown fields are errors.
Sessions written by dragdiff always embed the image and mask and list every config field. A result PNG
from `save_result_png` carries the same JSON in a compressed text chunk with the key "dragdiff-session".
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .config import DragConfig
from .errors import DragError
from .images import MAX_IMAGE_PIXELS, PNG_SIGNATURE, load_image, load_mask, mask_to_image, png_bytes, read_png_text
from .types import DragRequest, Point
from .validation import check_request, effective_mask

SESSION_FORMAT = "dragdiff-session"
SESSION_VERSION = 1
PNG_TEXT_KEY = "dragdiff-session"

MAX_EMBEDDED_BASE64_CHARS = 64 * 2**20  # ~48 MB of PNG: enough for any image under the 4096×4096 limit
MAX_SESSION_BYTES = 2 * MAX_EMBEDDED_BASE64_CHARS + 2**20  # image + mask + the rest

_REQUIRED_FIELDS = ("format", "version", "image", "points", "model")
_OPTIONAL_FIELDS = ("mask", "prompt", "config")


@dataclass(frozen=True, eq=False)  # eq=False: images and arrays have no usable ==; compare to_json() instead
class Session:
    """One edit, complete enough to replay: the input image, the points, the mask, prompt, model and config.

    image: RGB. handles/targets: (x, y) input-image pixels. mask: H×W bool, True = may change, or None.
    Construction runs validation.check_request, so every Session can be saved and replayed.
    """

    image: Image.Image
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray | None
    prompt: str
    model: str
    config: DragConfig

    def __post_init__(self) -> None:
        check_request(self.to_request())
        if not isinstance(self.model, str) or not self.model.strip():
            raise DragError(f"Session.model: expected a model name (hub id, folder or file), got {self.model!r}")

    def to_request(self) -> DragRequest:
        return DragRequest(
            image=self.image,
            handles=tuple(self.handles),
            targets=tuple(self.targets),
            mask=self.mask,
            prompt=self.prompt,
            config=self.config,
        )

    @classmethod
    def from_request(cls, request: DragRequest, model: str) -> Session:
        return cls(
            image=request.image,
            handles=tuple(request.handles),
            targets=tuple(request.targets),
            mask=request.mask,
            prompt=request.prompt,
            model=model,
            config=request.config,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of the module docstring, image and mask embedded as base64 PNG."""
        # An empty mask means "no mask"; writing null for it keeps the load -> to_json round trip exact.
        mask = effective_mask(self.mask)
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "image": {"png_base64": _base64_png(self.image)},
            "points": [
                {"handle": _xy(handle), "target": _xy(target)}
                for handle, target in zip(self.handles, self.targets, strict=True)
            ],
            "mask": None if mask is None else {"png_base64": _base64_png(mask_to_image(mask))},
            "prompt": self.prompt,
            "model": self.model,
            "config": self.config.to_dict(),
        }

    def to_json(self) -> str:
        """Deterministic text: equal sessions give equal strings (sorted keys, ASCII, no timestamps)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def load_session(source: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Session:
    """Read a session from a .json file or from a PNG written by `save_result_png`.

    An image (embedded or by path) of more than `max_pixels` pixels is refused before it is decoded.
    """
    path = Path(source)
    if _starts_like_png(path):
        return read_png_session(path, max_pixels=max_pixels)
    name = f"session file '{path}'"
    data = _parse_json(_utf8(_read_session_file(path), name), name)
    with _within(f"session file '{path}'"):
        return session_from_dict(data, folder=path.parent, max_pixels=max_pixels)


def read_png_session(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Session:
    """The session in a result PNG's "dragdiff-session" text chunk; paths are relative to the PNG's folder."""
    path = Path(path)
    text = read_png_text(path, PNG_TEXT_KEY, max_bytes=MAX_SESSION_BYTES)
    if text is None:
        raise DragError(
            f"{path.name} carries no dragdiff session (no '{PNG_TEXT_KEY}' text chunk); only result PNGs "
            "saved by dragdiff do. Load it as an image instead."
        )
    data = _parse_json(text, f"the session in '{path}'")
    with _within(f"the session in '{path}'"):
        return session_from_dict(data, folder=path.parent, max_pixels=max_pixels)


def session_from_dict(data: Any, folder: Path | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Session:
    """Validate parsed session JSON into a Session; errors name the field, e.g. "session.points[0].target".

    `folder` is where "path" entries are resolved; None refuses them (the JSON did not come from a file).
    An image of more than `max_pixels` pixels is refused from its header.
    """
    if not isinstance(data, dict):
        raise DragError(f"session: expected a JSON object, got {_json_kind(data)}")
    _check_format_and_version(data)
    _check_fields(data, "session", _REQUIRED_FIELDS, _OPTIONAL_FIELDS)
    config = _config(data.get("config", {}))
    handles, targets = _points(data["points"])
    source = _image_source(data["image"], "session.image", folder)  # its errors name the field themselves
    with _within("session.image"):
        image = load_image(source, max_pixels=max_pixels)
    mask = None
    if data.get("mask") is not None:
        source = _image_source(data["mask"], "session.mask", folder)
        with _within("session.mask"):
            mask = load_mask(source, image.size)
    prompt, model = data.get("prompt", ""), data["model"]
    if not isinstance(prompt, str):
        raise DragError(f"session.prompt: expected text, got {_json_kind(prompt)}")
    if not isinstance(model, str) or not model.strip():
        raise DragError(f"session.model: expected a model name (hub id, folder or file), got {_short(model)}")
    with _within("session"):  # check_request: points inside the image
        return Session(
            image=image,
            handles=handles,
            targets=targets,
            mask=mask,
            prompt=prompt,
            model=model,
            config=config,
        )


def save_session(session: Session, path: str | Path) -> None:
    """Write `session.to_json()` to `path` atomically: readers see the old file or the new, never half."""
    _write_atomic(Path(path), session.to_json().encode("utf-8"))


def save_result_png(image: Image.Image, session: Session, path: str | Path) -> None:
    """Write the edited `image` as PNG carrying `session` in a compressed text chunk, atomically."""
    if not isinstance(image, Image.Image):
        raise DragError(f"result image: expected a PIL image, got {type(image).__name__}")
    info = PngInfo()
    info.add_text(PNG_TEXT_KEY, session.to_json(), zip=True)
    _write_atomic(Path(path), png_bytes(image, pnginfo=info))


# --- reading ----------------------------------------------------------------------------------------------


def _starts_like_png(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False  # _read_session_file reports the problem


def _read_session_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_SESSION_BYTES:
            raise DragError(
                f"session file '{path}' is {size:,} bytes, above the limit of {MAX_SESSION_BYTES:,}; "
                'reference large images by "path" instead of embedding them'
            )
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DragError(f"session file '{path}' does not exist; check the path") from exc
    except OSError as exc:
        raise DragError(f"cannot read session file '{path}': {exc.strerror or exc}") from exc


def _utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a BOM, as some Windows editors write, is fine
    except UnicodeDecodeError as exc:
        raise DragError(
            f"{name} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save it as UTF-8 JSON"
        ) from exc


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DragError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise DragError(f"{name} is not a session: its JSON is nested too deeply") from exc


def _check_format_and_version(data: dict[str, Any]) -> None:
    """Checked first: a file of another format or version may have other fields."""
    for name in ("format", "version"):
        if name not in data:
            raise DragError(f"session: missing field '{name}'; is this a dragdiff session file?")
    if data["format"] == "dragdiff-dragon-session":
        raise DragError(
            "this is a DragonDiffusion session; replay it with python -m dragdiff edit --method dragon --session FILE"
        )
    if data["format"] != SESSION_FORMAT:
        raise DragError(
            f"session.format: expected '{SESSION_FORMAT}', got {_short(data['format'])}; this is not a dragdiff session"
        )
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise DragError(f"session.version: expected a whole number, got {_short(version)}")
    if version != SESSION_VERSION:
        hint = "; update dragdiff to read it" if version > SESSION_VERSION else ""
        raise DragError(
            f"session.version: this file is version {version}; this dragdiff reads version {SESSION_VERSION}{hint}"
        )


def _check_fields(data: dict[str, Any], where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for name in data:
        if name not in required + optional:
            raise DragError(f"{where}: unknown field {name!r}; known fields are {sorted(required + optional)}")
    for name in required:
        if name not in data:
            raise DragError(f"{where}: missing field {name!r}; add it (required fields: {', '.join(required)})")


def _config(values: Any) -> DragConfig:
    if not isinstance(values, dict):
        raise DragError(f"session.config: expected an object of DragConfig fields, got {_json_kind(values)}")
    defaults = DragConfig.load().to_dict()
    return DragConfig.from_dict({**defaults, **values}, where="session.config")


def _points(value: Any) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    if not isinstance(value, list) or not value:
        raise DragError(
            f'session.points: expected a non-empty list of {{"handle": [x, y], "target": [x, y]}}, got {_short(value)}'
        )
    handles, targets = [], []
    for index, pair in enumerate(value):
        where = f"session.points[{index}]"
        if not isinstance(pair, dict):
            raise DragError(f'{where}: expected {{"handle": [x, y], "target": [x, y]}}, got {_short(pair)}')
        _check_fields(pair, where, ("handle", "target"), ())
        handles.append(_point(pair["handle"], f"{where}.handle"))
        targets.append(_point(pair["target"], f"{where}.target"))
    return tuple(handles), tuple(targets)


def _point(value: Any, name: str) -> Point:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_finite_number(v) for v in value)):
        raise DragError(f"{name}: expected [x, y] numbers, got {_short(value)}")
    return Point(float(value[0]), float(value[1]))


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _image_source(value: Any, name: str, folder: Path | None) -> bytes | Path:
    """The bytes of an embedded PNG or the resolved path of a referenced file."""
    if not isinstance(value, dict) or set(value) not in ({"png_base64"}, {"path"}):
        got = f"an object with fields {sorted(value)}" if isinstance(value, dict) else _short(value)
        raise DragError(f'{name}: expected {{"png_base64": "..."}} or {{"path": "file.png"}}, got {got}')
    if "path" in value:
        return _path_inside(value["path"], folder, f"{name}.path")
    return _decode_base64(value["png_base64"], f"{name}.png_base64")


def _decode_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise DragError(f"{name}: expected base64 text, got {_json_kind(text)}")
    if len(text) > MAX_EMBEDDED_BASE64_CHARS:  # refused before decoding anything
        raise DragError(
            f"{name}: {len(text):,} characters of base64, above the limit of {MAX_EMBEDDED_BASE64_CHARS:,}; "
            "downscale the image"
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DragError(f"{name}: not valid base64 ({exc})") from exc


def _path_inside(text: Any, folder: Path | None, name: str) -> Path:
    """Resolve a relative path inside `folder`, refusing anything that would read outside it."""
    if not isinstance(text, str) or not text:
        raise DragError(f"{name}: expected a relative file path, got {_short(text)}")
    if folder is None:
        raise DragError(f"{name}: paths need a session file to be relative to; embed the image as png_base64")
    if Path(text).is_absolute() or PureWindowsPath(text).is_absolute():
        raise DragError(f"{name}: {text!r} is absolute; give a path relative to the session's folder")
    try:
        base = folder.resolve()
        path = (base / text).resolve()
    except (OSError, ValueError) as exc:
        raise DragError(f"{name}: {text!r} is not a usable path ({exc})") from exc
    if not path.is_relative_to(base):
        raise DragError(
            f"{name}: {text!r} points outside the session's folder; keep the file next to the session "
            "and give a path relative to it"
        )
    return path


@contextmanager
def _within(where: str) -> Iterator[None]:
    """Prefix DragErrors raised inside with the field or file they concern."""
    try:
        yield
    except DragError as exc:
        raise DragError(f"{where}: {exc}") from exc


# --- writing ----------------------------------------------------------------------------------------------


def _base64_png(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def _xy(point: Point) -> list[float]:
    return [float(point.x), float(point.y)]  # floats always, so [3, 4] and [3.0, 4.0] write the same text


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DragError(f"cannot write '{path}': {exc.strerror or exc}; check that its folder exists") from exc
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # mkstemp creates 0600; a saved file should be readable like any other
        os.replace(temp, path)
    except OSError as exc:
        raise DragError(f"cannot write '{path}': {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(temp):  # only after a failure: a half-written file is never left behind
            os.unlink(temp)


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
