"""What the app needs beyond the engine, free of any UI library so that tests can drive it: the clicked
points, the overlay that shows them with the mask, a process-wide holder of loaded engines, running an edit
in a worker thread while streaming its progress, and saving every finished edit so that nothing is lost."""

from __future__ import annotations

import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .engine import DragEngine
from .errors import DragError
from .models import load_model
from .session import Session, save_result_png, save_session
from .types import Point, Progress

HANDLE_RGB, TARGET_RGB, MASK_RGB = (230, 40, 40), (40, 90, 235), (255, 210, 60)
DISPLAY_SIDE = 640  # the point canvas shows every image with this long side: small ones large, big ones whole

# -- points ----------------------------------------------------------------------------------------------


def add_click(clicks: list[list[float]], x: float, y: float) -> list[list[float]]:
    """Clicks alternate handle, target, handle, ...; returns a new list."""
    return [*clicks, [float(x), float(y)]]


def pairs(clicks: list[list[float]]) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """Handles and targets from the clicks; an odd count is an error that says how to fix it."""
    if len(clicks) % 2:
        raise DragError(
            f"{len(clicks)} points were clicked: handle {len(clicks) // 2 + 1} has no target yet. "
            "Click where it should go, or undo the last point."
        )
    return tuple(Point(*c) for c in clicks[0::2]), tuple(Point(*c) for c in clicks[1::2])


def points_table(clicks: list[list[float]]) -> list[list[Any]]:
    """Rows [pair, handle x, handle y, target x, target y] (target blank while pending)."""
    rows = []
    for i in range(0, len(clicks), 2):
        target = clicks[i + 1] if i + 1 < len(clicks) else ["", ""]
        rows.append([i // 2 + 1, *clicks[i], *target])
    return rows


def clicks_from_table(rows: list[list[Any]]) -> list[list[float]]:
    """The inverse of points_table, after a user edited it; blank rows are dropped, bad cells are named.
    Only the last pair may lack its target (it is still being clicked)."""
    clicks: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        cells = [str(c).strip() for c in list(row)[1:5]]
        if not any(cells):
            continue
        where = f"points table, pair {number}"
        if len(clicks) % 2:  # else this row's handle would silently become the target of the pair above
            raise DragError(f"{where}: the pair above has no target; give its target's x and y first")
        values = [_cell_number(c, where) for c in cells if c != ""]
        if len(values) not in (2, 4) or (len(values) == 2 and cells[0] == ""):
            raise DragError(f"{where}: give the handle's x and y (and the target's)")
        clicks += [values[0:2]] + ([values[2:4]] if len(values) == 4 else [])
    return clicks


def _cell_number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DragError(f"{where}: {text!r} is not a number; type x and y in pixels of the image") from None
    if not math.isfinite(value):  # "nan" and "inf" parse as floats, but no pixel is there
        raise DragError(f"{where}: {text!r} is not a finite number; type x and y in pixels of the image")
    return value


# -- the overlay -----------------------------------------------------------------------------------------


def display_scale(size: tuple[int, int]) -> float:
    """Display pixels per image pixel on the point canvas."""
    return DISPLAY_SIDE / max(size)


def to_image_point(x: float, y: float, scale: float) -> list[float]:
    """A click at display pixel (x, y) -> image pixel coordinates (pixel centres aligned), 0.1 px precision."""
    return [round((x + 0.5) / scale - 0.5, 1), round((y + 0.5) / scale - 0.5, 1)]


def enlarge(image: Image.Image) -> Image.Image:
    """The image at display size (long side DISPLAY_SIDE), for showing small images large."""
    scale = display_scale(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def overlay(
    image: Image.Image, clicks: list[list[float]], mask: np.ndarray | None, tracked: tuple[Point, ...] | None = None
) -> Image.Image:
    """The image at display size with the editable region tinted, numbered handles (red) and targets (blue)
    joined by arrows, and optionally the tracked handle positions of a running edit (hollow circles).
    Points are in image pixels; the picture is display_scale(image.size) times larger."""
    scale = display_scale(image.size)
    shown = tint(enlarge(image.convert("RGB")), mask)
    draw = ImageDraw.Draw(shown)
    radius = max(4, round(DISPLAY_SIDE / 90))
    at = [[(x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5] for x, y in clicks]
    for i in range(0, len(at), 2):
        if i + 1 < len(at):
            _arrow(draw, at[i], at[i + 1], radius)
            _dot(draw, at[i + 1], radius, TARGET_RGB, "")
        _dot(draw, at[i], radius, HANDLE_RGB, str(i // 2 + 1))
    for point in tracked or ():
        x, y = (point.x + 0.5) * scale - 0.5, (point.y + 0.5) * scale - 0.5
        box = [x - 2 * radius, y - 2 * radius, x + 2 * radius, y + 2 * radius]
        draw.ellipse(box, outline=(255, 255, 255), width=2)
    return shown


def tint(image: Image.Image, mask: np.ndarray | None) -> Image.Image:
    """The RGB image with the mask's region (any size; scaled to fit) tinted in the brush colour."""
    image = image.convert("RGB")
    if mask is None or not mask.any():
        return image
    region = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
    return Image.composite(Image.blend(image, Image.new("RGB", image.size, MASK_RGB), 0.35), image, region)


def _dot(draw: ImageDraw.ImageDraw, at: list[float], radius: int, fill, label: str) -> None:
    x, y = at
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255))
    if label:
        draw.text((x + radius + 1, y - 2 * radius), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))


def _arrow(draw: ImageDraw.ImageDraw, start: list[float], end: list[float], radius: int) -> None:
    (x0, y0), (x1, y1) = start, end
    draw.line([(x0, y0), (x1, y1)], fill=(255, 255, 255), width=max(1, radius // 2))
    length = max(np.hypot(x1 - x0, y1 - y0), 1e-6)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    head = 2.5 * radius
    left = (x1 - head * ux + head * 0.5 * uy, y1 - head * uy - head * 0.5 * ux)
    right = (x1 - head * ux - head * 0.5 * uy, y1 - head * uy + head * 0.5 * ux)
    draw.polygon([(x1, y1), left, right], fill=(255, 255, 255))


def mask_from_editor(value: dict | None, size: tuple[int, int]) -> np.ndarray | None:
    """The painted region of an image-editor value ({'background', 'layers', 'composite'}, RGBA arrays):
    painted = alpha > 0 in any layer. None when nothing is painted (the whole image may change)."""
    if not value or not value.get("layers"):
        return None
    painted = np.zeros((size[1], size[0]), bool)
    for layer in value["layers"]:
        array = np.asarray(layer)
        if array.ndim == 3 and array.shape[2] == 4 and array.shape[:2] == painted.shape:
            painted |= array[..., 3] > 0
    return painted if painted.any() else None


def editable_region(restored: np.ndarray | None, editor_value: dict | None, size: tuple[int, int]) -> np.ndarray | None:
    """A mask restored from a session plus what is painted over it. Gradio's editor shows a value's composite
    but not its layers, so a restored mask is shown tinted in the picture and kept here, not in a layer."""
    painted = mask_from_editor(editor_value, size)
    if restored is None or painted is None:
        return painted if restored is None else restored
    return restored | painted


# -- engines, one per model, shared by every user --------------------------------------------------------


class Engines:
    """Loaded models are big: keep one engine, for the model last asked for, and share it (under a lock)."""

    def __init__(self, device: str | None = None, cache_dir: str | None = None, dtype: str | None = None):
        self.device, self.cache_dir, self.dtype = device, cache_dir, dtype
        self.lock = threading.Lock()
        self._engine: DragEngine | None = None
        self._spec: str | None = None

    def get(self, spec: str) -> DragEngine:
        with self.lock:
            if self._engine is None or spec != self._spec:
                self._engine = None  # free the old model before loading the next
                self._engine = DragEngine(load_model(spec, self.device, self.dtype), cache_dir=self.cache_dir)
                self._spec = spec
            return self._engine


# -- running in the background ---------------------------------------------------------------------------


@dataclass
class Finished:
    value: Any


class StopFlag:
    """A per-user Stop button's flag, kept in that user's session state. Copying it (as a UI does with a
    state's initial value for each new user) gives a fresh flag, never a shared one."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __deepcopy__(self, memo: dict) -> StopFlag:
        return StopFlag()


def stream(
    job: Callable[[Callable[[Progress], None], Callable[[], bool]], Any], stop: threading.Event, interval: float = 0.25
) -> Iterator[Progress | Finished]:
    """Run `job(on_progress, should_stop)` in a thread; yield its progress (at most every `interval` s, always
    the latest) and then Finished(result). Setting `stop`, or closing the iterator, makes `should_stop` true so
    the job ends cleanly between two steps (with DragCancelled); the job's exceptions are raised here."""
    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = job(events.put, stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc
        events.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        latest, last_yield, done = None, 0.0, False
        while not done:
            try:
                event = events.get(timeout=interval)
                done = event is None
                latest = event or latest
            except queue.Empty:
                pass
            if latest is not None and (done or time.monotonic() - last_yield >= interval):
                yield latest
                latest, last_yield = None, time.monotonic()
    finally:
        stop.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield Finished(outcome["value"])


STAGE_NAMES = {
    "lora": "LoRA fine-tuning",
    "inversion": "DDIM inversion",
    "drag": "dragging",
    "denoise": "denoising",
    "reference": "inverting the reference",
    "editing": "guided sampling",
}


def describe(progress: Progress) -> str:
    """One status line, e.g. 'dragging 12/80 · 7.5 px to go'."""
    text = f"{STAGE_NAMES.get(progress.stage, progress.stage)} {progress.step}/{progress.total}"
    return text + (f" · {progress.distance:.1f} px to go" if progress.distance is not None else "")


class StageBoard:
    """A progress bar per stage, as Markdown lines: finished stages ticked, the running one with its bar."""

    def __init__(self) -> None:
        self.latest: dict[str, Progress] = {}

    def update(self, progress: Progress) -> str:
        self.latest[progress.stage] = progress
        lines = []
        for event in self.latest.values():
            done = event.step >= event.total
            filled = round(12 * event.step / max(event.total, 1))
            bar = "█" * filled + "░" * (12 - filled)
            lines.append(f"{'✓' if done else '▶'} `{bar}` {describe(event)}")
        return "  \n".join(lines)


# -- never lose an edit ----------------------------------------------------------------------------------


def autosave(outputs: Path, result: Image.Image, session: Session) -> Path:
    """Write outputs/<date>/<time>-<id>.png (session embedded) and .json, atomically; return the PNG path."""
    png = new_result_path(outputs)
    save_result_png(result, session, png)
    save_session(session, png.with_suffix(".json"))
    return png


def remove_stale_temporary_files(outputs: Path, older_than_s: float = 600) -> list[Path]:
    """Delete the hidden temporary files that an atomic write leaves when its process is killed mid-write
    (".NAME.png.XXXX.tmp"), once they are older than any write takes, so that a server writing now is never
    touched. Returns what was removed. Called when the app starts."""
    if not outputs.is_dir():
        return []
    cutoff, removed = time.time() - older_than_s, []
    for path in outputs.rglob(".*.tmp"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def new_result_path(outputs: Path) -> Path:
    """A fresh outputs/<date>/<time>-<id>.png (the folder is created; the file is not)."""
    folder = outputs / datetime.now().strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{datetime.now().strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}.png"


# -- DragonDiffusion modes -------------------------------------------------------------------------------

DRAGON_HELP = {
    "move": "Paint the object, then click where it is and where it should go (two clicks: an arrow).",
    "resize": "Paint the object, set the scale, and optionally click from → to to move it as well.",
    "drag": "Paint the region that may change, then click handle → target pairs as in DragDiffusion.",
    "appearance": "Paint the object, then upload a reference image and paint the object whose look it takes.",
    "paste": "Upload a reference image, paint the object to paste, set the scale, and click where it goes.",
}


def refine_to_object(image: Image.Image, painted: np.ndarray | None) -> np.ndarray:
    """The object inside the bounding box of a rough painting (or a box-shaped stroke), by GrabCut."""
    from .dragon.box import box_mask

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


def server_weights(values: dict, image_prompt: str | None, image_encoder: str | None) -> dict:
    """The page's parameters with the image prompt's weight paths the server was started with. A page may not
    name files on the server (it could probe or load any of them); a loaded session's own value is accepted
    when it is null or the server's."""
    own = {"image_prompt": image_prompt, "image_encoder": image_encoder}
    for name, path in own.items():
        if values.get(name) not in (None, path):
            flag = "--" + name.replace("_", "-")
            raise DragError(f"{name}: weight files are chosen when the app starts (python app.py {flag} PATH)")
    return {**values, **own}


def dragon_request(mode: str, state: dict, scale: float, prompt: str, config):
    """The DragonDiffusion request of the tab's state; what is missing is named with what to do."""
    from .dragon import AppearanceRequest, ContentDragRequest, MoveRequest, PasteRequest

    image, mask, clicks = state["image"], state["mask"], state["clicks"]
    if image is None:
        raise DragError("Upload an image first.")
    if mode == "drag":
        handles, targets = pairs(clicks)
        return ContentDragRequest(image, handles, targets, mask, prompt, config)
    if mode in ("appearance", "paste") and (state["reference"] is None or state["reference_mask"] is None):
        raise DragError(f"{mode}: upload a reference image and paint its object.")
    if mode == "paste":
        if not clicks:
            raise DragError("paste: click where the object's centre should go.")
        return PasteRequest(
            image, state["reference"], state["reference_mask"], Point(*clicks[0]), scale, prompt, "", config
        )
    if mask is None:
        raise DragError(f"{mode}: paint over the object first.")
    if mode == "appearance":
        return AppearanceRequest(image, mask, state["reference"], state["reference_mask"], prompt, "", config)
    if mode == "move" and len(clicks) < 2:
        raise DragError("move: click on the object, then where it should go.")
    dx, dy = (clicks[1][0] - clicks[0][0], clicks[1][1] - clicks[0][1]) if len(clicks) == 2 else (0.0, 0.0)
    return MoveRequest(image, mask, Point(dx, dy), scale if mode == "resize" else 1.0, prompt, config)
