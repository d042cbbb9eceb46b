"""Reading and writing session files, shared by every method's session format: the atomic writer, the JSON
and PNG readers, field checks whose errors name the field, embedded or referenced images, and the result
PNG that carries its session in a compressed text chunk (key "dragdiff-session") with NAME.json beside it.

Image references: {"png_base64": "..."} or {"path": "file.png"}, the path relative to the session file's
folder and never leading out of it (no absolute paths, no '..' out).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PureWindowsPath
from typing import Any, Protocol

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .atomic import write_atomic
from .config import is_finite_number, short
from .errors import DragError
from .images import PNG_SIGNATURE, png_bytes, read_png_text
from .types import Point, PointCheck
from .validation import check_pair_count

PNG_TEXT_KEY = "dragdiff-session"
MAX_EMBEDDED_BASE64_CHARS = 64 * 2**20  # ~48 MB of PNG: enough for any image under the 4096×4096 limit
MAX_SESSION_BYTES = 2 * MAX_EMBEDDED_BASE64_CHARS + 2**20  # image + mask + the rest
MAX_SESSION_VALUES = 100_000  # JSON values in a session: the points (at most 2 x 2 x MAX_POINT_PAIRS) and settings


class SessionRecord(Protocol):
    """What a method's session object offers: deterministic JSON text (sorted keys, no timestamps)."""

    def to_json(self) -> str: ...


def session_json(data: dict[str, Any]) -> str:
    """Deterministic text: equal sessions give equal strings (sorted keys, ASCII, no timestamps)."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def save_result_png(image: Image.Image, session: SessionRecord, path: str | Path) -> None:
    """Write the edited `image` as PNG carrying `session` in a compressed text chunk, atomically."""
    if not isinstance(image, Image.Image):
        raise DragError(f"result image: expected a PIL image, got {type(image).__name__}")
    info = PngInfo()
    info.add_text(PNG_TEXT_KEY, session.to_json(), zip=True)
    write_atomic(Path(path), png_bytes(image, pnginfo=info))


def save_session(session: SessionRecord, path: str | Path) -> None:
    """Write `session.to_json()` to `path` atomically: readers see the old file or the new, never half."""
    write_atomic(Path(path), session.to_json().encode("utf-8"))


def save_result(image: Image.Image, session: SessionRecord, path: str | Path) -> Path:
    """The result PNG (its session embedded), then NAME.json (the session alone), each written atomically:
    a crash between them leaves a complete PNG that still carries its session. Returns the .json's path."""
    path = Path(path)
    save_result_png(image, session, path)
    save_session(session, path.with_suffix(".json"))
    return path.with_suffix(".json")


def read_session_data(path: str | Path) -> Any:
    """The parsed JSON of a session file, or of the session a result PNG carries."""
    path = Path(path)
    if starts_like_png(path):
        text = read_png_text(path, PNG_TEXT_KEY, max_bytes=MAX_SESSION_BYTES)
        if text is None:
            raise DragError(
                f"{path.name} carries no dragdiff session (no '{PNG_TEXT_KEY}' text chunk); only result PNGs "
                "saved by dragdiff do. Load it as an image instead."
            )
        return parse_json(text, f"the session in '{path}'")
    name = f"session file '{path}'"
    return parse_json(utf8(read_session_file(path), name), name)


def starts_like_png(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False  # _read_session_file reports the problem


def read_session_file(path: Path) -> bytes:
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


def utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a BOM, as some Windows editors write, is fine
    except UnicodeDecodeError as exc:
        raise DragError(
            f"{name} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save it as UTF-8 JSON"
        ) from exc


def parse_json(text: str, name: str) -> Any:
    """The parsed session text. Its values are counted first: a session's bulk is its images' base64 text,
    while a text of millions of tiny values ({},{},...) would cost ~20x its size in memory to parse."""
    values = text.count(",") + text.count("[") + text.count("{")  # an upper bound: base64 has none of these
    if values > MAX_SESSION_VALUES:
        raise DragError(
            f"{name} is not a session: it holds about {values:,} JSON values, above {MAX_SESSION_VALUES:,} "
            "(a session's points and settings take a few hundred)"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DragError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise DragError(f"{name} is not a session: its JSON is nested too deeply") from exc
    except ValueError as exc:  # a number of thousands of digits
        raise DragError(f"{name} is not a session: it holds a number too long to read") from exc


def check_fields(data: dict[str, Any], where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for name in data:
        if name not in required + optional:
            raise DragError(f"{where}: unknown field {name!r}; known fields are {sorted(required + optional)}")
    for name in required:
        if name not in data:
            raise DragError(f"{where}: missing field {name!r}; add it (required fields: {', '.join(required)})")


def point_pairs_from_json(value: Any) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    if not isinstance(value, list) or not value:
        raise DragError(
            f'session.points: expected a non-empty list of {{"handle": [x, y], "target": [x, y]}}, got {short(value)}'
        )
    check_pair_count(len(value), "session.points")  # before reading any of them
    handles, targets = [], []
    for index, pair in enumerate(value):
        where = f"session.points[{index}]"
        if not isinstance(pair, dict):
            raise DragError(f'{where}: expected {{"handle": [x, y], "target": [x, y]}}, got {short(pair)}')
        check_fields(pair, where, ("handle", "target"), ())
        handles.append(point_from_json(pair["handle"], f"{where}.handle"))
        targets.append(point_from_json(pair["target"], f"{where}.target"))
    return tuple(handles), tuple(targets)


def point_from_json(value: Any, name: str) -> Point:
    if not (isinstance(value, list) and len(value) == 2 and all(is_finite_number(v) for v in value)):
        raise DragError(f"{name}: expected [x, y] numbers, got {short(value)}")
    return Point(float(value[0]), float(value[1]))


def image_source(value: Any, name: str, folder: Path | None) -> bytes | Path:
    """The bytes of an embedded PNG or the resolved path of a referenced file."""
    if not isinstance(value, dict) or set(value) not in ({"png_base64"}, {"path"}):
        got = f"an object with fields {sorted(value)}" if isinstance(value, dict) else short(value)
        raise DragError(f'{name}: expected {{"png_base64": "..."}} or {{"path": "file.png"}}, got {got}')
    if "path" in value:
        return path_inside(value["path"], folder, f"{name}.path")
    return decode_base64(value["png_base64"], f"{name}.png_base64")


def decode_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise DragError(f"{name}: expected base64 text, got {json_kind(text)}")
    if len(text) > MAX_EMBEDDED_BASE64_CHARS:  # refused before decoding anything
        raise DragError(
            f"{name}: {len(text):,} characters of base64, above the limit of {MAX_EMBEDDED_BASE64_CHARS:,}; "
            "downscale the image"
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DragError(f"{name}: not valid base64 ({exc})") from exc


def path_inside(text: Any, folder: Path | None, name: str) -> Path:
    """Resolve a relative path inside `folder`, refusing anything that would read outside it."""
    if not isinstance(text, str) or not text:
        raise DragError(f"{name}: expected a relative file path, got {short(text)}")
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
def within(where: str) -> Iterator[None]:
    """Prefix DragErrors raised inside with the field or file they concern."""
    try:
        yield
    except DragError as exc:
        raise DragError(f"{where}: {exc}") from exc


def base64_png(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def point_json(point: Point) -> list[float]:
    return [float(point.x), float(point.y)]  # floats always, so [3, 4] and [3.0, 4.0] write the same text


def checks_json(checks: tuple[PointCheck, ...] | None) -> dict[str, Any]:
    """The "image_check" entry of a session's JSON: nothing when the result was not checked."""
    return {} if checks is None else {"image_check": [check.to_json() for check in checks]}


def checks_from_json(data: Any, name: str, count: int) -> tuple[PointCheck, ...] | None:
    """A session's "image_check" entry (one per point) back as PointChecks; errors name the entry."""
    if data is None:
        return None
    if not isinstance(data, list) or len(data) != count:
        raise DragError(f"{name}: expected a list with one entry per point ({count})")
    return tuple(_check_from_json(item, f"{name}[{i}]") for i, item in enumerate(data))


def _check_from_json(data: Any, name: str) -> PointCheck:
    if not isinstance(data, dict) or set(data) != {"found", "distance_px", "arrived"}:
        raise DragError(f'{name}: expected {{"found": [x, y], "distance_px": d, "arrived": true or false}}')
    found, distance, arrived = data["found"], data["distance_px"], data["arrived"]
    if not (isinstance(found, list) and len(found) == 2 and all(is_finite_number(v) for v in found)):
        raise DragError(f"{name}.found: expected [x, y], two numbers")
    if not is_finite_number(distance) or not isinstance(arrived, bool):
        raise DragError(f"{name}: distance_px must be a number and arrived true or false")
    return PointCheck(Point(float(found[0]), float(found[1])), float(distance), arrived)


def json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")
