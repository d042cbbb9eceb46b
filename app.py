"""dragdiff in the browser: upload, paint the region that may change, click handle → target, drag.

One editor for every method: one image, one painted region, one set of points, and the method (with
DragonDiffusion's mode) chosen beside them. Layout and event wiring only: the editing methods are in dragdiff/,
the app's UI-free logic (points, overlay, background runs, auto-save, the DragonDiffusion modes) in
dragdiff/interactive/. The Blocks are built once,
at import; each handler takes its inputs and returns {component: new value} for what it changes. Run
`python app.py --help` for the flags.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder
from PIL import Image as PILImage

from dragdiff import DragCancelled, DragConfig, DragError, DragRequest, methods
from dragdiff.arrival import describe
from dragdiff.cli import DTYPE_HELP, DTYPE_NAMES, parse_value
from dragdiff.config import field_help, is_finite_number, model_section, read_config_file, resolve_config
from dragdiff.coords import Display
from dragdiff.dragon import DragonConfig
from dragdiff.dragon.requests import check_dragon_request
from dragdiff.dragon.session import FORMAT as DRAGON_FORMAT
from dragdiff.dragon.session import DragonSession, load_dragon_session, session_mode
from dragdiff.gooddrag import GoodDragConfig
from dragdiff.images import MAX_IMAGE_PIXELS, load_image
from dragdiff.inpaint4drag import Inpaint4DragConfig
from dragdiff.inpaint4drag.warp import warp_request
from dragdiff.interactive.autosave import autosave, remove_stale_temporary_files
from dragdiff.interactive.dragon_modes import (
    DRAGON_HELP,
    dragon_click,
    dragon_points_note,
    dragon_request,
    refine_to_object,
    unused_points,
)
from dragdiff.interactive.jobs import Finished, Runtimes, StageBoard, StopFlag, stream
from dragdiff.interactive.overlay import editable_region, enlarge, hatched, overlay, tint
from dragdiff.interactive.points import add_click, clicks_from_table, pairs, points_note, points_table
from dragdiff.models import HUB_ALIASES, choice_label, model_defaults, model_summary
from dragdiff.point_session import Session, load_session
from dragdiff.session_io import read_session_data, save_session
from dragdiff.validation import check_request

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.json"))
MODELS = ["auto", "demo", "sd15", "sd21", "sd21-base", "sdxl", "tiny", "tiny-sd2", "tiny-sdxl"]
CSS = """
#canvas img { cursor: crosshair; }
"""
# Each click redraws the canvas, and while the browser loads the new picture the <img> has no size: Gradio
# then computes no position and drops the click (seen after painting, and with quick clicks under load).
# A click on the canvas in that moment is held and replayed, at the same spot, once the picture has loaded.
HEAD = """<script>
document.addEventListener("click", (event) => {
  const img = event.target.closest && event.target.closest("#canvas") && document.querySelector("#canvas img");
  if (!img || img.naturalWidth > 0 || !event.isTrusted) return;
  event.stopPropagation();
  const { clientX, clientY } = event;
  img.addEventListener("load", () => (document.elementFromPoint(clientX, clientY) || img).dispatchEvent(
    new MouseEvent("click", { bubbles: true, cancelable: true, clientX, clientY })), { once: true });
}, true);
</script>"""
POINT_HELP = (
    "Paint the region that may change, then click a **handle** (red) and its **target** (blue) on the right; "
    "more pairs drag more points."
)
RECENT_RESULTS = 24  # how many of a browser's results a reloaded page lists
# The brush's colours, the first by default: a pink that few photos' objects share (the earlier yellow hid
# yellow-orange objects), then cyan and yellow to choose for a pink object. Any colour paints the same mask.
BRUSH_COLOURS = ["#FF2D9B", "#00C8FF", "#FFD23C"]
# The browser keeps its id in local storage, encrypted with this: a fixed key, so that the id, and with it the
# list of that browser's results, outlives a restart of the server. The id is the secret (128 random bits).
BROWSER_SECRET = "dragdiff-browser-id"
NO_MASK = (
    "No region painted: the whole image may change. Paint over what may move, and everything else stays exactly "
    "as it is."
)


@dataclass
class Settings:
    """Process-wide settings from the command line (per-user data lives in gr.State only)."""

    model: str = "auto"
    device: str | None = None
    outputs: Path = ROOT / "outputs"
    max_image_pixels: int = MAX_IMAGE_PIXELS
    gpu_jobs: int = 1
    config: Path | None = None  # layer 3 of dragdiff.config.resolve_config, laid out as server_layer() reads
    image_prompt: str | None = None  # DragonDiffusion's optional IP-Adapter file and its image encoder folder
    image_encoder: str | None = None
    edit_timeout: float = 900.0  # seconds an /edit API call may run (the page has its Stop button)
    # Files a client names must lie here: the folder where Gradio stores what this server received.
    uploads: Path = Path(get_upload_folder())


SETTINGS = Settings()
RUNTIMES = Runtimes()
# The methods whose values the Advanced panel shows (a method registered later runs with its model's defaults).
PANEL_CONFIGS = {
    "dragdiffusion": DragConfig,
    "gooddrag": GoodDragConfig,
    "inpaint4drag": Inpaint4DragConfig,
    "dragon": DragonConfig,
}
PARAMS = list(dict.fromkeys(f.name for config in PANEL_CONFIGS.values() for f in fields(config)))
# What a client may not set, shown in the panel but set only by the server's --config, the model's dragdiff.yaml
# or its command line: files on the server (a client naming a path would make the server load any file it
# names) and torch.compile of the convolutions (minutes of compiling that hold the edit slot).
SERVER_ONLY = ("inpaint_model", "tiny_vae", "fast_lora", "image_prompt", "image_encoder", "compile_convolutions")
# The largest working size a page or an API call may ask for (SDXL's native size); the server's own settings
# may set more. Each doubling of it quadruples every step's work.
CLIENT_MAX_RESOLUTION = 1024
DRAGON_MODES = list(DRAGON_HELP)
DRAG = SimpleNamespace()  # the editor's components, filled in by editor()
GPU = dict(concurrency_id="gpu", concurrency_limit="default")  # main() sets the queue's default: --gpu-jobs


@dataclass
class DragState:
    """One user's editor: the image, the clicks (handle, target, ...), the editable region, DragonDiffusion's
    reference image and its object, the last result and this browser's results, its id and the Stop flag."""

    image: PILImage.Image | None = None
    clicks: list[list[float]] = field(default_factory=list)
    mask: np.ndarray | None = None
    restored_mask: np.ndarray | None = None  # from a session or Refine: shown in the editor's picture, not a layer
    reference: PILImage.Image | None = None
    reference_mask: np.ndarray | None = None
    restored_reference_mask: np.ndarray | None = None
    result: str | None = None
    result_of: tuple | None = None  # what the shown result was made from (edit_key): a late preview keeps it
    preview_shown: bool = False  # the result pane shows Inpaint4Drag's warp preview, not an edit
    history: list[str] = field(default_factory=list)
    user: str = ""  # this browser's random id (kept in its local storage): its results are outputs/<user>/
    stop: StopFlag = field(default_factory=StopFlag)

    def update(self, **values: Any) -> DragState:
        """Change fields in place. A page has one state object that every handler changes and returns: two
        handlers that run at once (a click while the painted region is read, a click during a drag) then each
        keep what the other changed, where copies would drop the first one's change."""
        for name, value in values.items():
            setattr(self, name, value)
        return self

    def fresh(self, **values: Any) -> DragState:
        """Start a new edit in place: keeps this browser's results, id, Stop flag and reference image."""
        # preview_shown too: the new image's first preview event takes the old image's preview away
        kept = ("history", "user", "stop", "reference", "reference_mask", "restored_reference_mask", "preview_shown")
        blank = DragState()
        reset = {f.name: getattr(blank, f.name) for f in fields(self) if f.name not in kept}
        return self.update(**{**reset, **values})


def new_state() -> DragState:
    return DragState()


def edit_key(state: DragState, method: str) -> tuple:
    """What an edit or a preview is made from: the method, the points and the painted region."""
    mask = None if state.mask is None else (state.mask.shape, np.packbits(state.mask).tobytes())
    return method, tuple(map(tuple, state.clicks)), mask


def editor_value(image: PILImage.Image, mask: np.ndarray | None = None) -> dict:
    """An image editor's value showing `image` (with `mask` tinted in the picture), no layers painted."""
    return {"background": image, "layers": [], "composite": tint(image, mask)}


# -- what a client may name: uploaded files and the models this server offers ------------------------------


def uploaded_file(value: Any, what: str) -> str:
    """The path of a file this server received, from a component's value or an API file dict.

    Gradio checks that a file dict *with* its `meta` key names an upload; a plain path or a dict without `meta`
    reaches the handler unchecked. Anything outside the upload folder gets one message, whether or not it
    exists, so that a client can neither read the server's files nor learn which exist.
    """
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", value)
    try:
        resolved = Path(path).resolve() if isinstance(path, str) and 0 < len(path) < 4096 else None
        if resolved and resolved.is_relative_to(SETTINGS.uploads.resolve()) and resolved.is_file():
            return str(resolved)
    except (OSError, ValueError):  # a NUL byte, a loop of links: not an upload either
        pass
    raise DragError(f"{what}: not a file uploaded to this server; upload it (gradio_client: handle_file(path))")


RAW_UPLOADS: set[str] = set()  # elem_ids of the image uploads made by image_upload()


def image_upload(elem_id: str, **kwargs) -> gr.Image:
    """An image upload (type="filepath") that hands its handler the path a client sent without opening it.

    gr.Image accepts a file dict without `meta` and opens whatever server path it names before any handler
    runs, and its error then tells whether that path exists, in Gradio's words, with the server's path. Here
    the handler decides first (uploaded_file(), load_image() with its own messages). data: URLs are still
    decoded by Gradio, under Pillow's pixel limit (main()).
    """
    RAW_UPLOADS.add(elem_id)
    # image_mode=None: the file as uploaded; load_image handles modes, EXIF and limits
    return gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], elem_id=elem_id, **kwargs)


def _path_unopened(component: gr.Image, payload: Any, opening=gr.Image.preprocess):
    if component.elem_id in RAW_UPLOADS and payload is not None and payload.path:
        if not (payload.url or "").startswith("data:"):
            return payload.path
    return opening(component, payload)


# On the class, not one instance: a component that a handler updates (as "1 · Image" is, to show the image
# being edited) is copied per user from its constructor's arguments, without an instance's own method. (Not
# a subclass either: Gradio writes a .pyi stub beside the module of every Image subclass.)
gr.Image.preprocess = _path_unopened


def offered_models() -> list[str]:
    """The models a client may pick: the built-in names and the one the server was started with."""
    return list(dict.fromkeys([*MODELS, SETTINGS.model]))


def offered_name(model: Any) -> str | None:
    """`model` as the name the server offers it under (a session made with `auto` names SD 1.5's hub id), or
    None when the server does not offer it."""
    names = offered_models()
    if model in names:
        return model
    return next((alias for alias, repo in HUB_ALIASES.items() if repo == model and alias in names), None)


def runtime_for(model: Any):
    """The Runtime of an offered model. A client never makes the server load a folder or file it names."""
    name = offered_name(model)
    if name is None:
        shown = model if isinstance(model, str) and len(model) <= 60 else f"{str(model)[:60]}…"
        raise DragError(
            f"model: {shown!r} is not offered by this server; choose one of {', '.join(offered_models())} "
            "(whoever runs the server can offer another with --model)"
        )
    return RUNTIMES.get(name)


# -- messages: the app's own words, one line, no server paths -------------------------------------------


def message(exc: Exception | str) -> str:
    """What a user reads of an error: one line of at most 300 characters, with the server's folders cut from
    the paths in it (the file's name stays): they would tell a client where the server keeps its files."""
    text = str(exc)
    for folder in server_folders():
        text = re.sub(re.escape(folder) + r"[\\/](?:[^\s'\"]*[\\/])?", "", text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


def server_folders() -> list[str]:
    """The server's folders that messages may mention, longest first (a folder inside another goes first)."""
    folders = {SETTINGS.uploads, SETTINGS.outputs, Path(tempfile.gettempdir()), ROOT, Path.home()}
    return sorted({str(f.resolve()) for f in folders} | {str(f) for f in folders}, key=len, reverse=True)


def warn(exc: Exception | str) -> str:
    """An error as a toast, returned for the status line too: the toast fades, the status line stays."""
    text = message(exc)
    gr.Warning(text)
    return f"⚠️ {text}"


# -- the editor's handlers: each a plain function of its inputs, returning what changes -----------------


def on_upload(path: str | None, state: DragState) -> dict:
    """A new image: the points, the region and the prompt belonged to the old one and are forgotten."""
    if not path:
        return {DRAG.upload: _shown_image(state)}  # × on the upload box: the image being edited stays
    try:
        image = load_image(uploaded_file(path, "image"), max_pixels=SETTINGS.max_image_pixels, keep_alpha=True)
    except DragError as exc:
        return {DRAG.state: state, DRAG.upload: _shown_image(state), DRAG.status: warn(exc)}
    return _new_image(state.fresh(image=image), f"{image.width}×{image.height} px. {NO_MASK}", prompt="")


def _shown_image(state: DragState):
    """What "1 · Image" shows: the image being edited (after a refused upload, still the one before)."""
    return state.image.copy() if state.image is not None else None


def _new_image(state: DragState, status: str, prompt: str | None = None) -> dict:
    shown = {
        DRAG.state: state,
        DRAG.upload: _shown_image(state),
        DRAG.editor: editor_value(state.image, state.restored_mask),
        DRAG.canvas: overlay(state.image, state.clicks, state.mask),
        DRAG.table: points_table(state.clicks),
        DRAG.status: status,
    }
    return shown if prompt is None else {**shown, DRAG.prompt: prompt}


def on_mask(value: dict | None, state: DragState) -> dict:
    if state.image is None:
        return {DRAG.state: state}
    mask = editable_region(state.restored_mask, value, state.image.size)
    if _same_region(mask, state.mask):  # the editor redrawn (a page reflow), not painted: the status stays
        return {DRAG.state: state}
    state = state.update(mask=mask)
    note = NO_MASK if state.mask is None else f"Editable region: {state.mask.mean():.0%} of the image."
    return {DRAG.state: state, DRAG.canvas: overlay(state.image, state.clicks, state.mask), DRAG.status: note}


def on_drag_pressed(value: dict | None, state: DragState) -> dict:
    """Drag was pressed: the edit takes the region the editor shows now. The change events of the last strokes
    can still be queued on a busy server (seconds each, seen under load), and the edit would run without them."""
    if state.image is not None:
        state.update(mask=editable_region(state.restored_mask, value, state.image.size))
    return {DRAG.state: state}


def _same_region(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def on_clear_mask(state: DragState) -> dict:
    """Forget the painted and the restored region: the whole image may change again."""
    if state.image is None:
        return {DRAG.state: state}
    state = state.update(mask=None, restored_mask=None)
    canvas = overlay(state.image, state.clicks, None)
    return {DRAG.state: state, DRAG.editor: editor_value(state.image), DRAG.canvas: canvas, DRAG.status: NO_MASK}


def on_refine(state: DragState) -> dict:
    """Replace the painted region by the object GrabCut finds in the painting's box. It is kept as the editor's
    picture (a session's region is too), so painting more adds to it."""
    if state.image is None:
        return {DRAG.status: warn("Upload an image first.")}
    try:
        mask = refine_to_object(state.image, state.mask)
    except DragError as exc:
        return {DRAG.status: warn(exc)}
    state = state.update(mask=mask, restored_mask=mask)
    return {
        DRAG.state: state,
        DRAG.editor: editor_value(state.image, mask),
        DRAG.canvas: overlay(state.image, state.clicks, mask),
        DRAG.status: f"Object found: {mask.mean():.0%} of the image (paint to add to it, Clear mask to start over).",
    }


def on_reference_upload(path: str | None, state: DragState) -> dict:
    """DragonDiffusion's reference image (appearance, paste): its painted object goes with it."""
    if not path:
        return {DRAG.state: state}
    try:
        image = load_image(uploaded_file(path, "reference"), max_pixels=SETTINGS.max_image_pixels, keep_alpha=True)
    except DragError as exc:
        return {DRAG.state: state, DRAG.reference_editor: None, DRAG.status: warn(exc)}
    state = state.update(reference=image, reference_mask=None, restored_reference_mask=None)
    shown = f"Reference: {image.width}×{image.height} px; paint its object."
    return {DRAG.state: state, DRAG.reference_editor: editor_value(image), DRAG.status: shown}


def on_reference_mask(value: dict | None, state: DragState) -> dict:
    if state.reference is None:
        return {DRAG.state: state}
    painted = editable_region(state.restored_reference_mask, value, state.reference.size)
    return {DRAG.state: state.update(reference_mask=painted)}


def on_click(state: DragState, method: str, mode: str, evt: gr.SelectData) -> dict:
    """A click on the canvas: handle, target, handle, ...; DragonDiffusion's modes use theirs (dragon_modes)."""
    if state.image is None:
        return {DRAG.status: warn("Upload an image first.")}
    x, y = Display(state.image.size).to_image(*evt.index)  # evt.index: canvas picture pixels
    try:
        clicks = dragon_click(mode, state.clicks, x, y) if method == "dragon" else add_click(state.clicks, x, y)
    except DragError as exc:
        return {DRAG.status: warn(exc)}
    return _with_clicks(state, clicks, method, mode)


def on_undo(state: DragState, method: str, mode: str) -> dict:
    return _with_clicks(state, state.clicks[:-1], method, mode)


def on_clear(state: DragState, method: str, mode: str) -> dict:
    return _with_clicks(state, [], method, mode)


def on_table(rows, state: DragState, method: str, mode: str) -> dict:
    """Points typed into the table. A cell that is no number is refused, and the table shows again the points
    that stay, which the canvas shows and Drag uses."""
    try:
        clicks = clicks_from_table(rows.values.tolist() if hasattr(rows, "values") else rows or [])
    except DragError as exc:
        return {**_with_clicks(state, state.clicks, method, mode), DRAG.status: warn(exc)}
    return _with_clicks(state, clicks, method, mode)


def _with_clicks(state: DragState, clicks: list, method: str, mode: str) -> dict:
    """The points changed: canvas, table, and a status line that says what comes next (an earlier warning about
    the points is no longer true)."""
    state = state.update(clicks=clicks)
    if state.image is None:
        return {DRAG.state: state, DRAG.canvas: None, DRAG.table: points_table(clicks)}
    shown = overlay(state.image, clicks, state.mask)
    note = clicks_note(method, mode, clicks)
    return {DRAG.state: state, DRAG.canvas: shown, DRAG.table: points_table(clicks), DRAG.status: note}


def clicks_note(method: Any, mode: Any, clicks: list) -> str:
    return dragon_points_note(mode, clicks) if method == "dragon" else points_note(clicks)


# -- the method, its mode and the Advanced panel: the values that will run ------------------------------


def config_mode(method: str, mode: Any) -> str | None:
    """The mode a method's config is resolved for: DragonDiffusion's (a resize is a move with a scale)."""
    if not getattr(PANEL_CONFIGS.get(method), "MODES", ()):
        return None
    return "move" if mode == "resize" else mode if mode in DRAGON_MODES else "drag"


def server_layer(config_type) -> dict | None:
    """One method's values from the server's --config, which is laid out like a model's dragdiff.yaml:
    DragDiffusion's values at the top, a section for each other method (gooddrag:, inpaint4drag:, dragon:)."""
    if SETTINGS.config is None:
        return None
    return model_section(read_config_file(SETTINGS.config), config_type.MODEL_SECTION)


def server_files(method: str) -> dict:
    """Weight files named by the server's command line alone: DragonDiffusion's image prompt."""
    if method != "dragon":
        return {}
    return {"image_prompt": SETTINGS.image_prompt, "image_encoder": SETTINGS.image_encoder}


def resolved(method: str, model: Any, mode: Any = None, **explicit: Any):
    """The config that runs for a method on an offered model: the built-in defaults, the model's dragdiff.yaml,
    the server's --config, then `explicit` (dragdiff.config.resolve_config), but SERVER_ONLY stay the
    server's. Read without loading the model."""
    config_type = PANEL_CONFIGS[method]
    layers = dict(mode=config_mode(method, mode), file=server_layer(config_type), where="settings")
    server = resolve_config(config_type, model_defaults(offered_name(model) or SETTINGS.model), **layers)
    values = server.to_dict()
    kept = {n: v for n, v in (values | server_files(method)).items() if n in SERVER_ONLY}
    asked = explicit.get("resolution")
    if is_finite_number(asked) and asked != values.get("resolution") and asked > CLIENT_MAX_RESOLUTION:
        raise DragError(
            f"settings.resolution: {asked} is above the {CLIENT_MAX_RESOLUTION} px a client may ask for here; "
            "whoever runs the server can set more in its --config"
        )
    return server if not explicit and not kept else server.replace(**{**explicit, **kept})


def config_from(values: tuple, method: str = "dragdiffusion", mode: Any = None, model: Any = None):
    """A method's config from the Advanced widgets (text fields are parsed as YAML: '2, 3' → [2, 3], 'null');
    the widgets of the other methods' own fields are left out."""
    config_type = PANEL_CONFIGS[method]
    own = {f.name: str(f.type) for f in fields(config_type)}
    parsed = {}
    for name, value in zip(PARAMS, values, strict=True):
        if name not in own:
            continue
        if isinstance(value, str):
            listed = value.strip() not in ("", "null") and own[name].startswith(("tuple", "list"))
            value = parse_value(f"[{value}]" if listed else value)
        parsed[name] = int(value) if isinstance(value, float) and value.is_integer() else value
    return resolved(method, model or SETTINGS.model, mode, **parsed)


def panel_config(method, values: tuple, mode: Any, model: Any):
    """The config a method runs with: the Advanced panel's, or a method without a panel its model's defaults."""
    return config_from(values, method.name, mode, model) if method.name in PANEL_CONFIGS else method.default_config()


def panel_values(model: Any, method: str = "dragdiffusion", mode: Any = None) -> list[Any]:
    """The Advanced panel's values for `model`, `method` and `mode`: what would run. The other methods' own
    fields keep their values (hidden)."""
    values: dict[str, Any] = {}
    for each in sorted(PANEL_CONFIGS, key=lambda n: n == method):  # the selected method's values win
        values |= resolved(each, model, mode).to_dict()
    return [_widget_value(values[n]) for n in PARAMS]


def panel_from(config, model: Any, mode: Any = None) -> list[Any]:
    """The Advanced panel's values showing `config`; the other methods' own fields keep the model's values."""
    method = next(n for n, config_type in PANEL_CONFIGS.items() if isinstance(config, config_type))
    own = config.to_dict()
    shown = panel_values(model, method, mode)
    return [_widget_value(own[n]) if n in own else v for n, v in zip(PARAMS, shown, strict=True)]


def panel_help(method: str) -> dict[str, str]:
    """Each field's help in the panel: the selected method's own comment (its defaults' sources), else another's."""
    chosen = [PANEL_CONFIGS[method]] if method in PANEL_CONFIGS else []
    helps = [field_help(config) for config in [*PANEL_CONFIGS.values(), *chosen]]  # the chosen one last: it wins
    comments = {name: comment for own in helps for name, (_, comment) in own.items()}
    comments |= {n: "" for n in PARAMS if n not in comments}
    return {n: f"{c} (set by the server)" if n in SERVER_ONLY else c for n, c in comments.items()}


def panel_updates(model: Any, method: Any, mode: Any = None, config=None) -> dict:
    """The Advanced panel for a model, method and mode (or showing `config`): the values and help of that
    method's fields, and only those (none for a method without a panel: it runs with the model's defaults)."""
    own = {f.name for f in fields(PANEL_CONFIGS[method])} if method in PANEL_CONFIGS else set()
    values = panel_from(config, model, mode) if config is not None else panel_values(model, method, mode)
    helps = panel_help(method)
    return {
        widget: gr.update(value=value, visible=name in own, info=helps[name], interactive=name not in SERVER_ONLY)
        for widget, name, value in zip(DRAG.widgets, PARAMS, values, strict=True)
    }


def method_view(method: Any, mode: Any, clicks: list, scale: float | None = None) -> dict:
    """What a method and mode show: the mode choice and scale for DragonDiffusion, the reference image for its
    appearance and paste modes, and the instructions, with what the mode leaves of the points."""
    dragon = method == "dragon"
    mode = mode if mode in DRAGON_MODES else "drag"
    guide = DRAGON_HELP[mode] if dragon else POINT_HELP
    unused = unused_points(mode, clicks) if dragon else ""
    return {
        DRAG.mode: gr.update(value=mode, visible=dragon),
        DRAG.scale: gr.update(
            visible=dragon and mode in ("resize", "paste"), **({} if scale is None else {"value": scale})
        ),
        DRAG.reference_row: gr.update(visible=dragon and mode in ("appearance", "paste")),
        DRAG.instructions: guide + (f"  \n_{unused}_" if unused else ""),
    }


def on_model(model: Any, method: Any, mode: Any, state: DragState) -> dict:
    """A model was chosen: what it is, its best method, and the values that will run with it."""
    method = default_method(model)
    shown = {DRAG.method: method, DRAG.model_note: model_note(model)}
    return shown | on_method(model, method, mode, state)


def on_method(model: Any, method: Any, mode: Any, state: DragState) -> dict:
    """A method or mode was chosen: its inputs and instructions, and the model's values for it. The points
    stay: a mode that uses fewer says so. Inpaint4Drag's warp preview goes (warp_preview, chained) with a
    status line about the points instead of its own."""
    shown = method_view(method, mode, state.clicks) | panel_updates(model, method, mode)
    if state.preview_shown and method != "inpaint4drag" and state.image is not None:
        shown[DRAG.status] = clicks_note(method, mode, state.clicks)
    return shown


def model_note(model: Any) -> str:
    """The line under the model menu: which model runs, from where, and why."""
    name = offered_name(model) or SETTINGS.model
    return f"**Model:** {model_summary(name)}"


def default_method(model: Any) -> str:
    """The method the editor starts with for `model` (dragdiff.methods.default_method)."""
    return methods.default_method(offered_name(model) or SETTINGS.model)


def method_for(model: Any, name: Any):
    """The registered method `name` on the Runtime of an offered model (dragdiff.methods lists them)."""
    if not isinstance(name, str) or name not in methods.names():
        raise DragError(f"method: {str(name)[:60]!r} is not one of {', '.join(methods.names())}")
    return runtime_for(model).method(name)


def warp_preview(state: DragState, method: Any, *values) -> dict:
    """Inpaint4Drag's warp alone, drawn as the points or the painted region change (a few ms, no model): the
    region moved, the area the fill will repaint striped. Nothing for other methods or unfinished pairs."""
    nothing = method != "inpaint4drag" or state.image is None or len(state.clicks) < 2 or state.mask is None
    if nothing and state.preview_shown:  # the preview of points, a region or a method no longer there goes
        state.update(preview_shown=False)
        return {DRAG.result: None, DRAG.status: gr.skip()}
    if nothing or state.result_of == edit_key(state, method):  # (an edit of exactly these is shown: it stays)
        return {DRAG.result: gr.skip(), DRAG.status: gr.skip()}
    try:
        handles, targets = pairs(state.clicks[: len(state.clicks) // 2 * 2])
        config = config_from(values, method)
        warp = warp_request(
            DragRequest(state.image, handles, targets, state.mask), config.band_px, config.refine_region
        )
    except DragError as exc:  # e.g. a handle outside the painted region: say so while the user is placing points
        return {DRAG.status: f"Warp preview: ⚠️ {message(exc)}"}
    preview = hatched(PILImage.fromarray(warp.image), warp.inpaint)
    state.update(preview_shown=True)  # the state is one object per page: changed in place, as every handler does
    status = "Warp preview: what moves is drawn at its target; Drag fills the striped area." + "".join(
        f"  \n⚠️ {note}" for note in warp.notes
    )
    return {DRAG.result: (enlarge(state.image), preview), DRAG.status: status}


# -- running an edit ----------------------------------------------------------------------------------


def edit_request(state: DragState, prompt: str, name: str, mode: Any, scale: float, config):
    """The request of the editor's state for a method (and DragonDiffusion's mode), checked before any work."""
    if state.image is None:
        raise DragError("Upload an image first.")
    if name == "dragon":
        request = dragon_request(mode if mode in DRAGON_MODES else "drag", state, scale, prompt, config)
        check_dragon_request(request)
        return request
    handles, targets = pairs(state.clicks)
    request = DragRequest(state.image, handles, targets, state.mask, prompt, config)
    check_request(request)  # points, mask and prompt
    return request


def prepare(state: DragState, prompt: str, model: str, name: str, mode: str, scale: float, *values):
    """What a method can do before the points (DragDiffusion: LoRA + inversion, cached per image) as soon as an
    image is there, so that Drag can start at once. With nothing to do, the status line keeps what it says (a
    generator that yields nothing would blank it)."""
    try:
        method = method_for(model, name) if state.image is not None else None
        if not hasattr(method, "prepare"):  # optional in the method protocol
            yield {DRAG.status: gr.skip()}
            return
        config = panel_config(method, values, mode, model)
        stop, board = state.stop.event, StageBoard()
        stop.clear()
        for event in stream(lambda progress, halt: method.prepare(state.image, prompt, config, progress, halt), stop):
            text = "Ready to drag." if isinstance(event, Finished) else "Preparing…  \n" + board.update(event)
            yield {DRAG.status: text}
    except DragCancelled:
        yield {DRAG.status: "Preparation stopped; it resumes when you press Drag."}
    except DragError as exc:
        yield {DRAG.status: f"⚠️ {message(exc)}"}


def run(state: DragState, prompt: str, model: str, name: str, mode: str, scale: float, *values):
    """The edit with the chosen method, streamed: status and a live preview of the tracked handles, then the
    saved result."""
    try:
        method = method_for(model, name)
        request = edit_request(state, prompt, name, mode, scale, panel_config(method, values, mode, model))
    except DragError as exc:
        yield {DRAG.status: warn(exc)}
        return
    yield {DRAG.status: model_note(model)}
    made_from = edit_key(state, name)  # before the run: points clicked during it are not in this edit
    stop, last, board = state.stop.event, None, StageBoard()
    stop.clear()
    try:
        for event in stream(lambda progress, halt: method.edit(request, progress, halt), stop):
            if isinstance(event, Finished):
                break
            last = event
            preview = overlay(state.image, state.clicks, state.mask, event.points or None)
            yield {DRAG.status: board.update(event), DRAG.canvas: preview}
    except DragCancelled:
        where = f" during {last.describe()}" if last else ""
        yield {DRAG.status: f"Stopped{where}. Nothing was changed; press Drag to run again.", DRAG.canvas: plain(state)}
        return
    except DragError as exc:  # found once the model is known, e.g. a block the UNet lacks
        yield {DRAG.status: warn(exc), DRAG.canvas: plain(state)}
        return
    yield finished(state, event.value, method, made_from) | {DRAG.canvas: plain(state)}


def plain(state: DragState):
    """The canvas without a run's tracked handles, with the points as they are now (clicked during the run too)."""
    return overlay(state.image, state.clicks, state.mask)


def user_outputs(state: DragState) -> Path:
    """Where this browser's results go: outputs/<its id>/ (so that a reloaded page lists its own, never
    another's), or outputs/ itself for a caller without one."""
    return SETTINGS.outputs / state.user if state.user else SETTINGS.outputs


def finished(state: DragState, result, method, made_from: tuple) -> dict:
    """A finished edit: saved at once (a refresh or a closed tab loses nothing) and shown with what the
    picture shows (each point arrived or how far short, and what to try), its warnings, before beside after,
    its download and this browser's results."""
    path = autosave(user_outputs(state), result)
    state = state.update(
        result=str(path), result_of=made_from, preview_shown=False, history=[*state.history, str(path)]
    )
    notes = "".join(f"  \n⚠️ {w}" for w in result.warnings)
    outcome = f"  \n{describe(result.image_check, getattr(method, 'advice', ''))}." if result.image_check else ""
    if hasattr(result, "tracker_reached_targets"):  # the latent tracker's own verdict, under its own name
        said = "reached the targets" if result.tracker_reached_targets else "did not reach the targets"
        outcome += f" (The latent point tracker {said} after {result.steps_used} drag steps.)"
    return {
        DRAG.state: state,
        DRAG.status: f"Done in {result.timings['total']:.1f} s. Saved as {path.name}.{outcome}{notes}",
        DRAG.result: (enlarge(state.image), enlarge(result.image)),
        DRAG.download: str(path),
        DRAG.history: newest_first(state.history),
    }


def newest_first(history: list[str]) -> list[str]:
    """The gallery's order: the result just made comes first, where the eye lands."""
    return history[::-1]


def on_stop(state) -> str:
    state.stop.event.set()  # the running job ends between two steps
    return "Stopping…"


def edit_result(state: DragState) -> dict:
    """Make the last result the new input (multi-round editing)."""
    if not state.result:
        return {DRAG.status: warn("There is no result to edit yet: run an edit first.")}
    try:
        image = load_image(state.result, keep_alpha=True)
    except DragError as exc:  # deleted from outputs/ meanwhile
        return {DRAG.status: warn(exc)}
    return _new_image(state.fresh(image=image), "The result is the new input. " + NO_MASK)


# -- sessions: one file holds a whole edit, of any method --------------------------------------------


def save_current(state: DragState, prompt: str, model: str, method: str, mode: str, scale: float, *values) -> dict:
    """The edit as it stands, as a session file to download; what is missing is said in the status line."""
    try:
        if state.image is None:
            raise DragError("Upload an image first: a session holds the image, points, mask and settings.")
        if method not in PANEL_CONFIGS:
            raise DragError(f"sessions record the settings of {', '.join(PANEL_CONFIGS)}; choose one of them")
        config = config_from(values, method, mode, model)
        if method == "dragon":
            session = DragonSession(edit_request(state, prompt, method, mode, scale, config), model)
        else:
            if not state.clicks:  # a session replays as an edit, so it needs points (Session checks them)
                raise DragError(
                    "A session records an edit to replay: click at least one handle and its target, then save."
                )
            handles, targets = pairs(state.clicks)
            session = Session(state.image, handles, targets, state.mask, prompt, model, config)
    except DragError as exc:
        return {DRAG.saved: None, DRAG.status: warn(exc)}
    path = Path(tempfile.mkdtemp()) / "dragdiff-session.json"
    save_session(session, path)
    return {DRAG.saved: str(path), DRAG.status: "Session saved: download it from Session JSON."}


def load_saved(path: str | None, state: DragState) -> dict:
    """Restore a session from its JSON, or from a dragdiff result PNG (its embedded session), of any method."""
    if not path:  # the loader emptied after a load (Gradio refuses an empty dict: every output would show Error)
        return {DRAG.state: state}
    try:
        source = uploaded_file(path, "session")
        if _session_format(source) == DRAGON_FORMAT:
            shown = _dragon_session(*load_dragon_session(source, SETTINGS.max_image_pixels), state)
        else:
            shown = _point_session(load_session(source, max_pixels=SETTINGS.max_image_pixels), state)
    except DragError as exc:
        return {DRAG.load: None, DRAG.status: warn(exc)}
    return shown | {DRAG.load: None}  # the loader is empty again: the next file loads at once


def _session_format(path: str) -> Any:
    data = read_session_data(path)
    return data.get("format") if isinstance(data, dict) else None


def _point_session(session: Session, state: DragState) -> dict:
    clicks = [p.as_list() for pair in zip(session.handles, session.targets, strict=True) for p in pair]
    state = state.fresh(image=session.image, clicks=clicks, mask=session.mask, restored_mask=session.mask)
    method = next(n for n, config in PANEL_CONFIGS.items() if isinstance(session.config, config))
    status = f"Session loaded: {len(session.handles)} point pair(s)"
    return _session_view(state, session.prompt, session.model, method, "drag", 1.0, session.config, status)


def _dragon_session(request, model: str, state: DragState) -> dict:
    mode, clicks = session_mode(request), []
    if mode in ("move", "resize"):
        rows, cols = request.mask.nonzero()
        x, y = (cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2
        clicks = [[float(x), float(y)], [float(x + request.offset.x), float(y + request.offset.y)]]
    elif mode == "paste":
        clicks = [request.position.as_list()]
    elif mode == "drag":
        clicks = [p.as_list() for pair in zip(request.handles, request.targets, strict=True) for p in pair]
    reference, reference_mask = getattr(request, "reference", None), getattr(request, "reference_mask", None)
    mask = getattr(request, "mask", None)
    state = state.fresh(
        image=request.image,
        clicks=clicks,
        mask=mask,
        restored_mask=mask,
        reference=reference,
        reference_mask=reference_mask,
        restored_reference_mask=reference_mask,
    )
    shown = _session_view(
        state,
        request.prompt,
        model,
        "dragon",
        mode,
        getattr(request, "scale", 1.0),
        request.config,
        f"Session loaded: DragonDiffusion, {mode}",
    )
    if reference is not None:
        shown[DRAG.reference_editor] = editor_value(reference, reference_mask)
    return shown


def _session_view(state, prompt, model, method, mode, scale, config, status) -> dict:
    offered, note = offered_name(model), ""
    if offered is None:
        offered = SETTINGS.model
        note = f" It was made with a model this server does not offer; {offered} is selected."
    masked = "." if state.mask is None else "; its region is tinted in the editor (paint to add, Clear mask to redo)."
    shown = _new_image(state, f"{status}{masked}{note}", prompt=prompt)
    shown |= {DRAG.model: offered, DRAG.model_note: model_note(offered), DRAG.method: method}
    return shown | method_view(method, mode, state.clicks, scale) | panel_updates(offered, method, mode, config)


def _widget_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "null" if value is None else value


# -- a reloaded page: this browser's results, from outputs/ ------------------------------------------


def on_page_load(user: Any, state: DragState) -> dict:
    """Each page opens with what this server was started with (--model, --config) and the methods registered
    now (the Blocks are built once, at import, before main() read the flags), and with this browser's recent
    results: a refresh or a closed tab loses none of them."""
    user = user if isinstance(user, str) and re.fullmatch(r"[0-9a-f]{32}", user) else uuid.uuid4().hex
    recent = recent_results(SETTINGS.outputs / user)
    state = state.update(user=user, history=recent, result=recent[-1] if recent else state.result)
    method = default_method(SETTINGS.model)
    shown = {
        DRAG.user: user,
        DRAG.state: state,
        DRAG.model: gr.update(choices=offered_models(), value=SETTINGS.model),
        DRAG.model_note: model_note(SETTINGS.model),
        DRAG.method: gr.update(choices=method_choices(), value=method),
        **method_view(method, "drag", []),
        **panel_updates(SETTINGS.model, method),
    }
    if recent:
        shown |= {DRAG.history: newest_first(recent), DRAG.download: recent[-1]}
        shown |= {DRAG.status: f"Your {len(recent)} most recent result(s) are below; the newest is in Download."}
    return shown


def recent_results(folder: Path) -> list[str]:
    """The newest result PNGs saved for one browser, oldest first."""
    found = sorted(folder.glob("*/*.png"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return [str(p) for p in found[-RECENT_RESULTS:]]


# -- the HTTP API -------------------------------------------------------------------------------------


def api_edit(
    image: FileData, points: str, mask: FileData | None = None, prompt: str = "", model: str = "", settings: str = "{}"
) -> FileData:
    """API: edit `image` with `points` ("x,y>x,y; ...") and return the result PNG (session embedded).
    `settings` is a JSON object of the method's config values (the rest are the model's defaults) and may name
    the method: {"method": "gooddrag", ...}; DragDiffusion by default, the one this endpoint ran before there
    were others."""
    from dragdiff.images import load_mask
    from dragdiff.validation import parse_points

    try:
        if not image:
            raise DragError("image: no image was given; pass the image file to edit")
        picture = load_image(uploaded_file(image, "image"), max_pixels=SETTINGS.max_image_pixels, keep_alpha=True)
        handles, targets = parse_points(points)
        values = _json_object(settings)
        for name in SERVER_ONLY:
            if name in values:
                raise DragError(f"settings.{name}: set on the server (its --config file), not by a client")
        name = values.pop("method", "dragdiffusion")
        editor = method_for(model or SETTINGS.model, name)
        config = resolved(name, model or SETTINGS.model, **values)
        editable = load_mask(uploaded_file(mask, "mask"), picture.size) if mask else None
        deadline = time.monotonic() + SETTINGS.edit_timeout  # an API call has no Stop button
        request = DragRequest(picture, handles, targets, editable, prompt, config)
        result = editor.edit(request, None, lambda: time.monotonic() > deadline)
    except DragCancelled:
        raise refused(
            f"the edit ran past this server's limit of {SETTINGS.edit_timeout:g} s per API call; ask for fewer "
            "steps or a smaller resolution (whoever runs the server sets the limit: --edit-timeout)"
        ) from None
    except DragError as exc:
        raise refused(exc) from None
    except Exception:  # a bug: its traceback for the log, a short word for the client
        traceback.print_exc()
        raise refused("the server failed on this request (the details are in its log)") from None
    return FileData(path=str(autosave(SETTINGS.outputs, result)))


MAX_SETTINGS_CHARS = 10_000  # every method's parameters written out take about 1,500


def refused(problem: Exception | str) -> gr.Error:
    """An API call's error: the client's one-line message, and one line in the server's log instead of
    Gradio's two tracebacks per refused request."""
    text = message(problem)
    print(f"refused /edit: {text}", file=sys.stderr, flush=True)
    return gr.Error(text, print_exception=False)


def _json_object(text: Any) -> dict:
    if not isinstance(text, str) or len(text) > MAX_SETTINGS_CHARS:
        what = f"{len(text):,} characters" if isinstance(text, str) else type(text).__name__
        raise DragError(f"settings: expected a JSON object of at most {MAX_SETTINGS_CHARS:,} characters, got {what}")
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DragError(f'settings: not valid JSON ({exc}); give an object such as {{"drag_steps": 40}}') from exc
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, 100,000 nested brackets
        raise DragError(
            'settings: a number too long or nesting too deep; give an object such as {"drag_steps": 40}'
        ) from exc
    if not isinstance(value, dict):
        raise DragError('settings: give a JSON object such as {"drag_steps": 40}')
    return value


# -- widgets ------------------------------------------------------------------------------------------


def mask_editor(label: str, **kwargs) -> gr.ImageEditor:
    """A brush-only editor over the image (no upload, crop or layers) whose painting is a mask. Its title is a
    line above it: the editor's toolbar covers most of its own label."""
    gr.Markdown(f"**{label}**")
    return gr.ImageEditor(
        type="numpy",
        label=label,
        show_label=False,
        sources=(),
        transforms=(),
        layers=False,
        brush=gr.Brush(colors=BRUSH_COLOURS, color_mode="defaults", default_size=12),
        eraser=gr.Eraser(default_size=12),
        **kwargs,
    )


def param_widget(name: str, default: Any, help_text: str, visible: bool):
    label, shown = name.replace("_", " "), dict(info=help_text, visible=visible)
    if name in SERVER_ONLY:
        shown["interactive"] = False
    if isinstance(default, bool):
        return gr.Checkbox(value=default, label=label, **shown)
    if isinstance(default, (int, float)) and default is not None:
        return gr.Number(value=default, label=label, precision=0 if isinstance(default, int) else None, **shown)
    return gr.Textbox(value=_widget_value(default), label=label, **shown)


def method_choices() -> list[tuple[str, str]]:
    """(title, name) of every registered method: each can drag points."""
    return [(methods.info(n).title, n) for n in methods.names()]


# -- layout ----------------------------------------------------------------------------------------------


def editor() -> None:
    """Layout and wiring of the editor: one image, region and set of points for every method."""
    d = DRAG
    d.state = gr.State(new_state())
    d.user = gr.BrowserState("", storage_key="dragdiff-user", secret=BROWSER_SECRET)
    method = default_method(SETTINGS.model)
    defaults = dict(zip(PARAMS, panel_values(SETTINGS.model, method), strict=True))  # on_page_load refreshes them
    help_texts = panel_help(method)
    own = {f.name for f in fields(PANEL_CONFIGS[method])}
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            d.upload = image_upload("upload", label="1 · Image", height=220)
            d.prompt = gr.Textbox(label="Prompt (optional)", placeholder="a photo of ...", elem_id="prompt")
            d.method = gr.Radio(
                method_choices(),
                value=method,
                label="Method",
                info="GoodDrag and DragDiffusion fine-tune a LoRA on the image first; Inpaint4Drag warps the painted "
                "region and fills what it reveals (about a second; previewed as you place points); DragonDiffusion "
                "needs no fine-tuning and also moves, resizes, restyles and pastes objects. Settings: Advanced",
                elem_id="method",
            )
            d.mode = gr.Radio(DRAGON_MODES, value="drag", label="DragonDiffusion mode", visible=False, elem_id="mode")
            d.instructions = gr.Markdown(POINT_HELP, elem_id="instructions")
            d.scale = gr.Slider(0.2, 5.0, value=1.0, step=0.05, label="Scale", visible=False, elem_id="scale")
            d.model = gr.Dropdown(
                [(choice_label(name), name) for name in offered_models()],
                value=SETTINGS.model,
                label="Model",
                allow_custom_value=True,  # a value a client sends is checked by runtime_for
                info="start the app with --model PATH to offer a folder or .safetensors file",
                elem_id="model",
            )
            d.model_note = gr.Markdown("", elem_id="model-note")  # on_page_load: the model main() was given
            with gr.Row():
                d.run = gr.Button("Drag", variant="primary", elem_id="run")
                d.stop = gr.Button("Stop", variant="stop", elem_id="stop")
            d.status = gr.Markdown("", elem_id="status")
        with gr.Column(scale=2):
            d.editor = mask_editor("2 · Paint the region that may change", elem_id="mask")
            with gr.Row():
                d.clear_mask = gr.Button("Clear mask", size="sm", elem_id="clear-mask")
                d.refine = gr.Button("Refine to the object", size="sm", elem_id="refine")
        with gr.Column(scale=2):
            d.canvas = gr.Image(
                type="pil",
                label="3 · Click handle, then target",
                interactive=False,
                format="png",
                buttons=[],
                elem_id="canvas",
            )
            with gr.Row():
                d.undo = gr.Button("Undo last point", size="sm", elem_id="undo")
                d.clear = gr.Button("Clear points", size="sm", elem_id="clear-points")
            d.table = gr.Dataframe(
                headers=["pair", "handle x", "handle y", "target x", "target y"],
                datatype=["number", "str", "str", "str", "str"],  # parsed by clicks_from_table, which names bad cells
                interactive=True,
                label="Points (editable)",
                elem_id="points",
            )
    with gr.Row(visible=False) as d.reference_row:
        d.reference_upload = image_upload("reference", label="Reference image (DragonDiffusion)", height=220)
        with gr.Column():
            d.reference_editor = mask_editor("Paint the reference's object", elem_id="reference-mask")
    with gr.Row():
        with gr.Column(scale=2):
            d.result = gr.ImageSlider(
                type="pil",
                label="Before ⟷ after (drag the divider)",
                format="png",
                interactive=False,
                buttons=["fullscreen"],  # its copy is the display size: the full result is in Download
                elem_id="result",
            )
            with gr.Row():
                d.download = gr.File(label="Download (PNG with the session inside)", elem_id="download")
                d.again = gr.Button("Edit this result", elem_id="again")
        with gr.Column(scale=2):
            d.history = gr.Gallery(
                label="Your results, newest first (kept on the server; a reload lists them)",
                columns=4,
                height=300,
                fit_columns=False,  # else one result fills a square as wide as the column, cut off below
                object_fit="contain",
                interactive=False,
                elem_id="history",
            )
    with gr.Accordion("Advanced settings (the selected method's values for the selected model)", open=False):
        d.widgets = [param_widget(n, defaults[n], help_texts[n], n in own) for n in PARAMS]
    with gr.Accordion("Sessions", open=False):
        with gr.Row():
            d.save = gr.Button("Save session", elem_id="save")
            d.saved = gr.File(label="Session JSON", elem_id="saved")
            d.load = gr.File(
                label="Load a session (.json) or a dragdiff result (.png)", file_types=[".json", ".png"], elem_id="load"
            )
    if EXAMPLES:
        gr.Examples([[str(p)] for p in EXAMPLES], inputs=[d.load], label="Examples (one click loads them)")
    _wire(d)


def _wire(d: SimpleNamespace) -> None:
    """The editor's events."""
    settings = [d.state, d.prompt, d.model, d.method, d.mode, d.scale, *d.widgets]
    every = [d.state, d.upload, d.editor, d.canvas, d.table, d.prompt, d.model, d.model_note, d.status, d.result]
    every += [d.download, d.history, d.method, d.mode, d.scale, d.instructions, d.reference_row]
    every += [d.reference_editor, d.load, *d.widgets]
    d.outputs = every  # what each handler may change (it returns a dict of some of them)
    # A new image (uploaded, loaded from a session, or a result to edit again) or prompt: prepare at once.
    new_image = [
        d.upload.upload(on_upload, [d.upload, d.state], every),
        d.again.click(edit_result, d.state, every),
        d.load.change(load_saved, [d.load, d.state], every),
    ]
    for event in new_image:
        event.then(prepare, settings, d.status, **GPU)
    d.prompt.submit(prepare, settings, d.status, **GPU)
    d.prompt.blur(prepare, settings, d.status, **GPU)
    # Quick handlers show no loading cover: Gradio covers every output of a running event, and a cover over the
    # canvas or the editor swallows the next click or brush stroke.
    quick = dict(show_progress="hidden")
    # Clicks that come while one is handled queue up instead of being dropped (the state is the server's).
    instant = dict(quick, trigger_mode="multiple")
    with_method = [d.state, d.method, d.mode]
    d.canvas.select(on_click, with_method, every, **instant)
    d.undo.click(on_undo, with_method, every, **instant)
    d.clear.click(on_clear, with_method, every, **instant)
    d.table.input(on_table, [d.table, *with_method], every, **quick)
    # Inpaint4Drag's warp, previewed at once: as its own event when the points table changes (a chained step
    # would keep the click event busy, and Gradio drops a click that comes while it is), after the region's.
    preview = dict(fn=warp_preview, inputs=[d.state, d.method, *d.widgets], outputs=[d.result, d.status], **quick)
    d.table.change(**preview)
    for event in (
        d.editor.change(on_mask, [d.editor, d.state], every, **quick),
        d.clear_mask.click(on_clear_mask, d.state, every, **quick),
        d.refine.click(on_refine, d.state, every, **quick),
        # .input: a user's choice only; a loaded session keeps its values
        d.method.input(on_method, [d.model, d.method, d.mode, d.state], every, **quick),
        d.model.input(on_model, [d.model, d.method, d.mode, d.state], every, **quick),
    ):
        event.then(**preview)
    d.mode.input(on_method, [d.model, d.method, d.mode, d.state], every, **quick)
    d.reference_upload.upload(on_reference_upload, [d.reference_upload, d.state], every)
    d.reference_editor.change(on_reference_mask, [d.reference_editor, d.state], every, **quick)
    d.run.click(on_drag_pressed, [d.editor, d.state], d.state, **quick).then(run, settings, every, **GPU)
    d.stop.click(on_stop, d.state, d.status)
    d.save.click(save_current, settings, [d.saved, d.status])
    gr.api(api_edit, api_name="edit", **GPU)


def build_app() -> gr.Blocks:
    with gr.Blocks(title="dragdiff — drag editing") as blocks:
        gr.Markdown(
            "# dragdiff\nUpload a photo, paint the region that may change, click a **handle** (red) and "
            "then its **target** (blue), and press **Drag**. Every method edits the same image, region and points."
        )
        editor()
        blocks.load(on_page_load, [DRAG.user, DRAG.state], DRAG.outputs + [DRAG.user])
    return blocks


demo = build_app()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="dragdiff: point-drag image editing in the browser")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 serves the network)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--model", default="auto", help="default model: auto, demo, sd15, tiny, a folder or file")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, help=DTYPE_HELP)
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs", help="where every result is saved")
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML file of parameters the Advanced panel starts with, laid out like a model's dragdiff.yaml: "
        "DragDiffusion's keys (dragdiff/configs/drag.yaml) at the top, a section per other method (gooddrag:, "
        "inpaint4drag:, dragon:)",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help=f"larger uploads are refused before decoding (default {MAX_IMAGE_PIXELS})",
    )
    parser.add_argument(
        "--edit-timeout",
        type=float,
        default=900.0,
        help="seconds an /edit API call may run before it is stopped (default 900; the page has a Stop button)",
    )
    parser.add_argument(
        "--gpu-jobs", type=int, default=1, help="edits run at once on the device (default 1; others wait in the queue)"
    )
    parser.add_argument(
        "--image-prompt",
        help="DragonDiffusion tab: an IP-Adapter .safetensors file for DiffEditor's image prompt (default: none)",
    )
    parser.add_argument(
        "--image-encoder", help="its CLIP vision model folder (default: image_encoder/ beside the --image-prompt file)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    SETTINGS.model, SETTINGS.device, SETTINGS.outputs = args.model, args.device, args.outputs
    SETTINGS.max_image_pixels, SETTINGS.gpu_jobs, SETTINGS.config = args.max_image_pixels, args.gpu_jobs, args.config
    SETTINGS.image_prompt, SETTINGS.image_encoder = args.image_prompt, args.image_encoder
    SETTINGS.edit_timeout = args.edit_timeout
    RUNTIMES.device, RUNTIMES.dtype = args.device, args.dtype
    # Gradio decodes some inputs before any handler runs (mask-editor layers, data: URLs, upload headers) with
    # Pillow, whose limit is process-wide: above twice this it refuses from the header. Between one and two
    # times it only warns, and dragdiff's loaders refuse with their own message.
    PILImage.MAX_IMAGE_PIXELS = SETTINGS.max_image_pixels
    try:  # a mistake in --config is named now, not as a broken panel on every page load
        for method in PANEL_CONFIGS:
            resolved(method, SETTINGS.model)
    except DragError as exc:
        raise SystemExit(f"error: --config: {exc}") from None
    for path in remove_stale_temporary_files(SETTINGS.outputs):
        print(f"removed {path}: a result write that a crash interrupted (the finished results are intact)")
    print(f"dragdiff: model {model_summary(SETTINGS.model)}; method {default_method(SETTINGS.model)}", flush=True)
    demo.queue(default_concurrency_limit=SETTINGS.gpu_jobs)  # the "gpu" events' shared limit: --gpu-jobs
    # show_error=False: a client reads the app's own messages (gr.Error, gr.Warning, the status line), never the
    # text of another exception (Gradio's checks of a malformed request, a bug), which can name the server's
    # files and internals; those go to the log.
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        theme=gr.themes.Soft(),
        css=CSS,
        head=HEAD,
        show_error=False,
    )


if __name__ == "__main__":
    main()
