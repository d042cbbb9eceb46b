"""dragdiff in the browser: upload, paint the region that may change, click handle → target, drag.

Layout and event wiring only: the editing methods are in dragdiff/, the app's UI-free logic (points, overlay,
background runs, auto-save, the DragonDiffusion modes) in dragdiff/interactive/. The Blocks are built once,
at import; each handler takes its inputs and returns {component: new value} for what it changes. Run
`python app.py --help` for the flags.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, field, fields, replace
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
from dragdiff.config import field_help, resolve_config
from dragdiff.coords import Display
from dragdiff.dragon.requests import check_dragon_request
from dragdiff.dragon.session import load_dragon_session
from dragdiff.gooddrag import GoodDragConfig
from dragdiff.images import MAX_IMAGE_PIXELS, load_image
from dragdiff.inpaint4drag import Inpaint4DragConfig
from dragdiff.inpaint4drag.warp import warp_request
from dragdiff.interactive.autosave import autosave, remove_stale_temporary_files
from dragdiff.interactive.dragon_modes import (
    DRAGON_HELP,
    dragon_click,
    dragon_request,
    refine_to_object,
    server_weights,
)
from dragdiff.interactive.jobs import Finished, Runtimes, StageBoard, StopFlag, stream
from dragdiff.interactive.overlay import editable_region, enlarge, hatched, mask_from_editor, overlay, tint
from dragdiff.interactive.points import add_click, clicks_from_table, pairs, points_table
from dragdiff.models import HUB_ALIASES, model_defaults
from dragdiff.point_session import Session, load_session
from dragdiff.session_io import save_session
from dragdiff.validation import check_request

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.json"))
MODELS = ["auto", "demo", "sd15", "tiny"]
CSS = """
#canvas img { cursor: crosshair; }
"""
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
    config: Path | None = None  # a YAML file of DragConfig values, layer 3 of dragdiff.config.resolve_config
    image_prompt: str | None = None  # DragonDiffusion's optional IP-Adapter file and its image encoder folder
    image_encoder: str | None = None
    # Files a client names must lie here: the folder where Gradio stores what this server received.
    uploads: Path = Path(get_upload_folder())


SETTINGS = Settings()
RUNTIMES = Runtimes()
# The point methods whose values the Advanced panel shows (and whose sessions it saves).
PANEL_CONFIGS = {"dragdiffusion": DragConfig, "gooddrag": GoodDragConfig, "inpaint4drag": Inpaint4DragConfig}
PARAMS = list(dict.fromkeys(f.name for config in PANEL_CONFIGS.values() for f in fields(config)))
# Fields that name files on the server: shown, but set only by the server's --config or the model's dragdiff.yaml
# (a client naming a path would make the server load any file it names).
SERVER_PATHS = ("inpaint_model", "tiny_vae", "fast_lora")
DRAG = SimpleNamespace()  # the DragDiffusion tab's components, filled in by drag_tab()
DRAGON = SimpleNamespace()  # the DragonDiffusion tab's, by dragon_tab()
GPU = dict(concurrency_id="gpu", concurrency_limit="default")  # main() sets the queue's default: --gpu-jobs


@dataclass
class DragState:
    """One user's DragDiffusion tab: the image, the clicks (handle, target, ...), the editable region, the
    last result and this session's results, and the Stop button's flag."""

    image: PILImage.Image | None = None
    clicks: list[list[float]] = field(default_factory=list)
    mask: np.ndarray | None = None
    restored_mask: np.ndarray | None = None  # from a loaded session: shown in the editor's picture, not a layer
    result: str | None = None
    history: list[str] = field(default_factory=list)
    stop: StopFlag = field(default_factory=StopFlag)

    def fresh(self, **values: Any) -> DragState:
        """A new edit's state that keeps this user's history and Stop flag."""
        return DragState(history=self.history, stop=self.stop, **values)


@dataclass
class DragonState:
    """One user's DragonDiffusion tab."""

    image: PILImage.Image | None = None
    mask: np.ndarray | None = None
    clicks: list[list[float]] = field(default_factory=list)
    reference: PILImage.Image | None = None
    reference_mask: np.ndarray | None = None
    result: str | None = None
    history: list[str] = field(default_factory=list)
    stop: StopFlag = field(default_factory=StopFlag)


def new_state() -> DragState:
    return DragState()


def new_dragon_state() -> DragonState:
    return DragonState()


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


def image_upload(**kwargs) -> gr.Image:
    """An image upload (type="filepath") that hands its handler the path a client sent without opening it.

    gr.Image accepts a file dict without `meta` and opens whatever server path it names before any handler
    runs, and its error then tells whether that path exists. Here the handler's uploaded_file() decides first.
    data: URLs are still decoded by Gradio, under Pillow's pixel limit (main()). (An instance's method, not a
    subclass: Gradio writes a .pyi stub beside the module of every Image subclass.)
    """
    # image_mode=None: the file as uploaded; load_image handles modes, EXIF and limits
    component = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], **kwargs)
    opening = component.preprocess

    def preprocess(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return opening(payload)

    component.preprocess = preprocess
    return component


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


# -- handlers of the DragDiffusion tab: each a plain function of its inputs, returning what changes ---------


def on_upload(path: str | None, state: DragState) -> dict:
    if not path:
        return {DRAG.state: state, DRAG.editor: None, DRAG.canvas: None, DRAG.table: [], DRAG.status: ""}
    try:
        image = load_image(uploaded_file(path, "image"), max_pixels=SETTINGS.max_image_pixels, keep_alpha=True)
    except DragError as exc:
        gr.Warning(str(exc))
        return {DRAG.state: state, DRAG.editor: None, DRAG.canvas: None, DRAG.table: [], DRAG.status: f"⚠️ {exc}"}
    return _new_image(state.fresh(image=image), f"{image.width}×{image.height} px. {NO_MASK}")


def _new_image(state: DragState, status: str) -> dict:
    return {
        DRAG.state: state,
        DRAG.editor: editor_value(state.image),
        DRAG.canvas: overlay(state.image, [], None),
        DRAG.table: [],
        DRAG.status: status,
    }


def on_mask(value: dict | None, state: DragState) -> dict:
    if state.image is None:
        return {DRAG.state: state, DRAG.canvas: None, DRAG.status: ""}
    state = replace(state, mask=editable_region(state.restored_mask, value, state.image.size))
    note = NO_MASK if state.mask is None else f"Editable region: {state.mask.mean():.0%} of the image."
    return {DRAG.state: state, DRAG.canvas: overlay(state.image, state.clicks, state.mask), DRAG.status: note}


def on_clear_mask(state: DragState) -> dict:
    """Forget the painted and the restored mask: the whole image may change again."""
    if state.image is None:
        return {DRAG.state: state, DRAG.editor: None, DRAG.canvas: None, DRAG.status: ""}
    state = replace(state, mask=None, restored_mask=None)
    canvas = overlay(state.image, state.clicks, None)
    return {DRAG.state: state, DRAG.editor: editor_value(state.image), DRAG.canvas: canvas, DRAG.status: NO_MASK}


def on_click(state: DragState, evt: gr.SelectData) -> dict:
    if state.image is None:
        gr.Warning("Upload an image first.")
        return {DRAG.state: state, DRAG.canvas: None, DRAG.table: []}
    x, y = Display(state.image.size).to_image(*evt.index)  # evt.index: canvas picture pixels
    return _with_clicks(state, add_click(state.clicks, x, y))


def on_undo(state: DragState) -> dict:
    return _with_clicks(state, state.clicks[:-1])


def on_clear(state: DragState) -> dict:
    return _with_clicks(state, [])


def on_table(rows, state: DragState) -> dict:
    try:
        clicks = clicks_from_table(rows.values.tolist() if hasattr(rows, "values") else rows or [])
    except DragError as exc:
        gr.Warning(str(exc))
        shown = overlay(state.image, state.clicks, state.mask) if state.image else None
        return {DRAG.state: state, DRAG.canvas: shown, DRAG.table: points_table(state.clicks)}
    return _with_clicks(state, clicks)


def _with_clicks(state: DragState, clicks: list) -> dict:
    state = replace(state, clicks=clicks)
    shown = overlay(state.image, clicks, state.mask) if state.image is not None else None
    return {DRAG.state: state, DRAG.canvas: shown, DRAG.table: points_table(clicks)}


def config_from(values: tuple, method: str = "dragdiffusion"):
    """A panel method's config from the Advanced widgets (text fields are parsed as YAML: '2, 3' → [2, 3],
    'null'); the widgets of the other methods' own fields are left out."""
    config_type = PANEL_CONFIGS[method]
    own = resolve_config(config_type).to_dict()
    parsed, lists = {}, {n for n, v in own.items() if isinstance(v, list)}
    for name, value in zip(PARAMS, values, strict=True):
        if name not in own:
            continue
        if isinstance(value, str):
            value = parse_value(f"[{value}]" if name in lists else value)
        parsed[name] = int(value) if isinstance(value, float) and value.is_integer() else value
    return config_type.from_dict(parsed, where="settings")


def panel_values(model: Any, method: str = "dragdiffusion") -> list[Any]:
    """The Advanced panel's values for `model` and a panel `method`: what would run (the model's dragdiff.yaml
    over the built-in defaults, under --config), read without loading the model. The other methods' own fields
    keep their values (hidden)."""
    name = offered_name(model) or SETTINGS.model
    values: dict[str, Any] = {}
    for each in sorted(PANEL_CONFIGS, key=lambda n: n == method):  # the selected method's values win
        config = resolve_config(PANEL_CONFIGS[each], model_defaults(name), file=SETTINGS.config, where="settings")
        values |= config.to_dict()
    return [_widget_value(values[n]) for n in PARAMS]


def panel_from(config, model: Any) -> list[Any]:
    """The Advanced panel's values showing `config` (a panel method's); the other methods' own fields keep the
    model's values."""
    method = next(n for n, config_type in PANEL_CONFIGS.items() if isinstance(config, config_type))
    own = config.to_dict()
    shown = panel_values(model, method)
    return [_widget_value(own[n]) if n in own else v for n, v in zip(PARAMS, shown, strict=True)]


def panel_help(method: str) -> dict[str, str]:
    """Each field's help in the panel: the selected method's own comment (its defaults' sources), else another's."""
    chosen = [PANEL_CONFIGS[method]] if method in PANEL_CONFIGS else []
    helps = [field_help(config) for config in [*PANEL_CONFIGS.values(), *chosen]]  # the chosen one last: it wins
    comments = {name: comment for own in helps for name, (_, comment) in own.items()}
    return {n: f"{c} (set in the server's --config)" if n in SERVER_PATHS else c for n, c in comments.items()}


def panel_updates(model: Any, method: Any) -> dict:
    """The Advanced panel for a model and method: its values and help, and only the fields that method has
    (none for a method without a panel, which runs with the model's own defaults)."""
    own = {f.name for f in fields(PANEL_CONFIGS[method])} if method in PANEL_CONFIGS else set()
    values, helps = panel_values(model, method), panel_help(method)
    return {
        widget: gr.update(value=value, visible=name in own, info=helps[name])
        for widget, name, value in zip(DRAG.widgets, PARAMS, values, strict=True)
    }


def warp_preview(state: DragState, method: Any, *values) -> dict:
    """Inpaint4Drag's warp alone, drawn as the points or the painted region change (a few ms, no model): the
    region moved, the area the fill will repaint striped. Nothing for other methods or unfinished pairs."""
    if method != "inpaint4drag" or state.image is None or len(state.clicks) < 2 or state.mask is None:
        return {DRAG.result: gr.skip(), DRAG.status: gr.skip()}
    try:
        handles, targets = pairs(state.clicks[: len(state.clicks) // 2 * 2])
        config = config_from(values, method)
        warp = warp_request(
            DragRequest(state.image, handles, targets, state.mask), config.band_px, config.refine_region
        )
    except DragError as exc:  # e.g. a handle outside the painted region: say so while the user is placing points
        return {DRAG.status: f"Warp preview: ⚠️ {exc}"}
    preview = hatched(PILImage.fromarray(warp.image), warp.inpaint)
    status = "Warp preview: what moves is drawn at its target; Drag fills the striped area." + "".join(
        f"  \n⚠️ {note}" for note in warp.notes
    )
    return {DRAG.result: (enlarge(state.image), preview), DRAG.status: status}


def on_model(model: Any, method: Any) -> dict:
    """A model was chosen: its best method, and the Advanced panel with the values that will run with it."""
    method = default_method(model)
    return {DRAG.method: method, **panel_updates(model, method)}


def on_method(model: Any, method: Any) -> dict:
    """A method was chosen: the Advanced panel shows its fields with the model's values."""
    return panel_updates(model, method)


def default_method(model: Any) -> str:
    """The method the Drag points tab starts with for `model` (dragdiff.methods.default_method)."""
    return methods.default_method(offered_name(model) or SETTINGS.model)


def method_for(model: Any, name: Any):
    """The registered method `name` on the Runtime of an offered model (dragdiff.methods lists them)."""
    if not isinstance(name, str) or name not in methods.names():
        raise DragError(f"method: {str(name)[:60]!r} is not one of {', '.join(methods.names())}")
    return runtime_for(model).method(name)


def _panel_config(method, values: tuple):
    """The config that runs. The Advanced panel holds the selected method's values for the selected model: what
    the user set there wins over every other layer (dragdiff.config.resolve_config), but for SERVER_PATHS, which
    stay the server's. Another method runs with its own defaults for the model."""
    if method.name not in PANEL_CONFIGS:
        return method.default_config()
    server = method.default_config(file=SETTINGS.config, where="settings").to_dict()
    chosen = config_from(values, method.name).to_dict()
    chosen |= {name: server[name] for name in SERVER_PATHS if name in chosen}
    return method.default_config(file=SETTINGS.config, where="settings", **chosen)


def prepare(state: DragState, prompt: str, model: str, name: str, *values):
    """What a method can do before the points (DragDiffusion: LoRA + inversion, cached per image) as soon as an
    image is there, so that Drag can start at once."""
    if state.image is None:
        return
    stop = state.stop.event
    stop.clear()
    try:
        method = method_for(model, name)
        if not hasattr(method, "prepare"):  # optional in the method protocol
            return
        config = _panel_config(method, values)
        board = StageBoard()
        for event in stream(lambda progress, halt: method.prepare(state.image, prompt, config, progress, halt), stop):
            text = "Ready to drag." if isinstance(event, Finished) else "Preparing…  \n" + board.update(event)
            yield {DRAG.status: text}
    except DragCancelled:
        yield {DRAG.status: "Preparation stopped; it resumes when you press Drag."}
    except DragError as exc:
        yield {DRAG.status: f"⚠️ {exc}"}


def run(state: DragState, prompt: str, model: str, name: str, *values):
    """The edit with the chosen method, streamed: status and a live preview of the tracked handles, then the
    saved result."""
    try:
        if state.image is None:
            raise DragError("Upload an image first.")
        handles, targets = pairs(state.clicks)
        method = method_for(model, name)
        request = DragRequest(state.image, handles, targets, state.mask, prompt, _panel_config(method, values))
        check_request(request)  # points, mask and prompt, before any work
    except DragError as exc:
        gr.Warning(str(exc))
        yield {DRAG.status: f"⚠️ {exc}"}
        return
    yield {DRAG.status: method.model.note or f"Model: {method.model.spec}"}
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
        yield {DRAG.status: f"Stopped{where}. Nothing was changed; press Drag to run again."}
        return
    except DragError as exc:  # found once the model is known, e.g. a block the UNet lacks
        gr.Warning(str(exc))
        yield {DRAG.status: f"⚠️ {exc}"}
        return
    yield finished(DRAG, state, event.value, method)


def finished(tab: SimpleNamespace, state, result, method) -> dict:
    """A finished edit of either tab: saved at once (a refresh or a closed tab loses nothing) and shown with
    what the picture shows (each point arrived or how far short, and what to try), its warnings, before
    beside after, its download and this session's results."""
    path = autosave(SETTINGS.outputs, result)
    state = replace(state, result=str(path), history=[*state.history, str(path)])
    notes = "".join(f"  \n⚠️ {w}" for w in result.warnings)
    outcome = f"  \n{describe(result.image_check, getattr(method, 'advice', ''))}." if result.image_check else ""
    if hasattr(result, "tracker_reached_targets"):  # the latent tracker's own verdict, under its own name
        said = "reached the targets" if result.tracker_reached_targets else "did not reach the targets"
        outcome += f" (The latent point tracker {said} after {result.steps_used} drag steps.)"
    return {
        tab.state: state,
        tab.status: f"Done in {result.timings['total']:.1f} s. Saved to {path}.{outcome}{notes}",
        tab.result: (enlarge(state.image), enlarge(result.image)),
        tab.download: str(path),
        tab.history: state.history,
    }


def on_stop(state) -> str:
    state.stop.event.set()  # the running job ends between two steps
    return "Stopping…"


def edit_result(state: DragState) -> dict:
    """Make the last result the new input (multi-round editing)."""
    if not state.result:
        gr.Warning("There is no result to edit yet: run an edit first.")
        return {DRAG.state: state}
    return _new_image(
        state.fresh(image=load_image(state.result, keep_alpha=True)), "The result is the new input. " + NO_MASK
    )


def save_current(state: DragState, prompt: str, model: str, method: str, *values) -> str | None:
    try:
        if state.image is None:
            raise DragError("Upload an image first: a session holds the image, points, mask and settings.")
        if method not in PANEL_CONFIGS:
            titles = ", ".join(methods.info(n).title for n in PANEL_CONFIGS)
            raise DragError(f"Sessions here record the settings of {titles}: choose one of them first.")
        handles, targets = pairs(state.clicks) if state.clicks else ((), ())
        session = Session(state.image, handles, targets, state.mask, prompt, model, config_from(values, method))
    except DragError as exc:
        gr.Warning(str(exc))
        return None
    path = Path(tempfile.mkdtemp()) / "dragdiff-session.json"
    save_session(session, path)
    return str(path)


def load_saved(path: str | None, state: DragState) -> dict:
    """Restore a session from its JSON, or from a dragdiff result PNG (its embedded session)."""
    if not path:
        return {DRAG.state: state}
    try:
        session = load_session(uploaded_file(path, "session"), max_pixels=SETTINGS.max_image_pixels)
    except DragError as exc:
        gr.Warning(str(exc))
        return {DRAG.state: state, DRAG.status: f"⚠️ {exc}"}
    clicks = [p.as_list() for pair in zip(session.handles, session.targets, strict=True) for p in pair]
    state = state.fresh(image=session.image, clicks=clicks, mask=session.mask, restored_mask=session.mask)
    model, note = offered_name(session.model), ""
    if model is None:
        model = SETTINGS.model
        note = f" It was made with a model this server does not offer; {model} is selected."
    masked = "." if session.mask is None else "; its mask is tinted in the editor (paint to add, Clear mask to redo)."
    method = next(n for n, config in PANEL_CONFIGS.items() if isinstance(session.config, config))
    own = session.config.to_dict()
    return {
        DRAG.state: state,
        DRAG.editor: editor_value(session.image, session.mask),
        DRAG.canvas: overlay(session.image, clicks, session.mask),
        DRAG.table: points_table(clicks),
        DRAG.prompt: session.prompt,
        DRAG.model: model,
        DRAG.status: f"Session loaded: {len(session.handles)} point pair(s){masked}{note}",
        DRAG.method: method,
        **{
            widget: gr.update(value=value, visible=name in own, info=panel_help(method)[name])
            for widget, name, value in zip(DRAG.widgets, PARAMS, panel_from(session.config, model), strict=True)
        },
    }


def _widget_value(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "null" if value is None else value


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
        for name in SERVER_PATHS:
            if name in values:
                raise DragError(f"settings.{name}: set on the server (its --config file), not by a client")
        editor = method_for(model or SETTINGS.model, values.pop("method", "dragdiffusion"))
        config = editor.default_config(file=SETTINGS.config, **values)
        editable = load_mask(uploaded_file(mask, "mask"), picture.size) if mask else None
        result = editor.edit(DragRequest(picture, handles, targets, editable, prompt, config))
    except DragError as exc:
        raise gr.Error(str(exc)) from exc
    return FileData(path=str(autosave(SETTINGS.outputs, result)))


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DragError(f'settings: not valid JSON ({exc}); give an object such as {{"drag_steps": 40}}') from exc
    if not isinstance(value, dict):
        raise DragError('settings: give a JSON object such as {"drag_steps": 40}')
    return value


# -- handlers of the DragonDiffusion tab ----------------------------------------------------------------

DRAGON_MODES = list(DRAGON_HELP)


def dragon_upload(path: str | None, state: DragonState, what: str = "image") -> dict:
    """A new base image (what="image") or reference image: resets what depended on the old one."""
    editor = DRAGON.editor if what == "image" else DRAGON.reference_editor
    if not path:
        return {DRAGON.state: state, editor: None}
    try:
        image = load_image(uploaded_file(path, what), max_pixels=SETTINGS.max_image_pixels, keep_alpha=True)
    except DragError as exc:
        gr.Warning(str(exc))
        return {DRAGON.state: state, editor: None, DRAGON.status: f"⚠️ {exc}"}
    if what == "image":
        state = replace(state, image=image, mask=None, clicks=[])
    else:
        state = replace(state, reference=image, reference_mask=None)
    return {
        DRAGON.state: state,
        editor: editor_value(image),
        DRAGON.canvas: _dragon_overlay(state),
        DRAGON.status: f"{what.capitalize()}: {image.width}×{image.height} px.",
    }


def dragon_paint(value: dict | None, state: DragonState, what: str = "mask") -> dict:
    image = state.image if what == "mask" else state.reference
    if image is None:
        return {DRAGON.state: state}
    state = replace(state, **{what: mask_from_editor(value, image.size)})
    return {DRAGON.state: state, DRAGON.canvas: _dragon_overlay(state)}


def dragon_reference_upload(path: str | None, state: DragonState) -> dict:
    return dragon_upload(path, state, "reference")


def dragon_reference_paint(value: dict | None, state: DragonState) -> dict:
    return dragon_paint(value, state, "reference_mask")


def dragon_refine(state: DragonState) -> dict:
    """Replace the painted mask by the object GrabCut finds in the painting's bounding box."""
    if state.image is None:
        return {DRAGON.state: state, DRAGON.status: "Upload an image first."}
    try:
        mask = refine_to_object(state.image, state.mask)
    except DragError as exc:
        return {DRAGON.state: state, DRAGON.status: f"⚠️ {exc}"}
    state = replace(state, mask=mask)
    return {
        DRAGON.state: state,
        DRAGON.editor: editor_value(state.image, mask),
        DRAGON.canvas: _dragon_overlay(state),
        DRAGON.status: f"Object found: {mask.mean():.0%} of the image.",
    }


def dragon_click_at(mode: str, state: DragonState, evt: gr.SelectData) -> dict:
    if state.image is None:
        gr.Warning("Upload an image first.")
        return {DRAGON.state: state, DRAGON.canvas: None}
    x, y = Display(state.image.size).to_image(*evt.index)
    try:
        state = replace(state, clicks=dragon_click(mode, state.clicks, x, y))
    except DragError as exc:
        gr.Warning(str(exc))
    return {DRAGON.state: state, DRAGON.canvas: _dragon_overlay(state)}


def dragon_mode(mode: str, state: DragonState) -> dict:
    """The mode's instructions and inputs; points of another mode are cleared (they meant something else)."""
    state = replace(state, clicks=[])
    return {
        DRAGON.state: state,
        DRAGON.instructions: DRAGON_HELP[mode],
        DRAGON.reference_row: gr.update(visible=mode in ("appearance", "paste")),
        DRAGON.scale: gr.update(visible=mode in ("resize", "paste")),
        DRAGON.canvas: _dragon_overlay(state),
    }


def _dragon_overlay(state: DragonState):
    return overlay(state.image, state.clicks, state.mask) if state.image is not None else None


def dragon_run(state: DragonState, mode: str, scale: float, prompt: str, model: str, params: str):
    """A DragonDiffusion edit, streamed like the drag tab's and saved the same way (PNG with its session)."""
    try:
        editor = runtime_for(model).method("dragon")
        values = server_weights(_yaml_object(params), SETTINGS.image_prompt, SETTINGS.image_encoder)
        config = editor.default_config("move" if mode == "resize" else mode, **values)
        request = dragon_request(mode, state, scale, prompt, config)
        check_dragon_request(request)  # refuse bad input before any work
    except DragError as exc:
        gr.Warning(str(exc))
        yield {DRAGON.status: f"⚠️ {exc}"}
        return
    stop, board, event = state.stop.event, StageBoard(), None
    stop.clear()
    try:
        for event in stream(lambda progress, halt: editor.edit(request, progress, halt), stop):
            if isinstance(event, Finished):
                break
            yield {DRAGON.status: board.update(event)}
    except DragCancelled:
        yield {DRAGON.status: "Stopped. Nothing was changed; press Edit to run again."}
        return
    except DragError as exc:
        yield {DRAGON.status: f"⚠️ {exc}"}
        return
    yield finished(DRAGON, state, event.value, editor)


def dragon_load(path: str | None, state: DragonState) -> dict:
    """Restore a DragonDiffusion session (its .json or result PNG) into the tab."""
    if not path:
        return {DRAGON.state: state}
    try:
        request, model = load_dragon_session(uploaded_file(path, "session"), SETTINGS.max_image_pixels)
    except DragError as exc:
        gr.Warning(str(exc))
        return {DRAGON.state: state, DRAGON.status: f"⚠️ {exc}"}
    mode, clicks = request.mode, []
    if mode == "move":
        rows, cols = request.mask.nonzero()
        x, y = (cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2
        clicks = [[float(x), float(y)], [float(x + request.offset.x), float(y + request.offset.y)]]
        mode = "resize" if request.scale != 1 else "move"
    elif mode == "paste":
        clicks = [request.position.as_list()]
    elif mode == "drag":
        clicks = [p.as_list() for pair in zip(request.handles, request.targets, strict=True) for p in pair]
    reference, reference_mask = getattr(request, "reference", None), getattr(request, "reference_mask", None)
    state = replace(
        state, image=request.image, mask=request.mask, clicks=clicks, reference=reference, reference_mask=reference_mask
    )
    made_with = offered_name(model) or "a model this server does not offer"
    shown = {
        DRAGON.state: state,
        DRAGON.mode: mode,
        DRAGON.editor: editor_value(request.image, request.mask),
        DRAGON.canvas: _dragon_overlay(state),
        DRAGON.scale: getattr(request, "scale", 1.0),
        DRAGON.params: "\n".join(f"{k}: {json.dumps(v)}" for k, v in request.config.to_dict().items()),
        DRAGON.status: f"Session loaded ({made_with}).",
    }
    if reference is not None:
        shown[DRAGON.reference_editor] = editor_value(reference, reference_mask)
    return shown


def _yaml_object(text: str) -> dict:
    value = parse_value(text or "{}") or {}
    if not isinstance(value, dict):
        raise DragError("parameters: write one 'name: value' per line, e.g. n_steps: 30")
    return value


def mask_editor(label: str, **kwargs) -> gr.ImageEditor:
    """A brush-only editor over the image (no upload, crop or layers) whose painting is a mask."""
    return gr.ImageEditor(
        type="numpy",
        label=label,
        sources=(),
        transforms=(),
        layers=False,
        brush=gr.Brush(colors=["#FFD23C99"], color_mode="fixed", default_size=12),
        eraser=gr.Eraser(default_size=12),
        **kwargs,
    )


def param_widget(name: str, default: Any, help_text: str, visible: bool):
    label, shown = name.replace("_", " "), dict(info=help_text, visible=visible)
    if name in SERVER_PATHS:
        shown["interactive"] = False
    if isinstance(default, bool):
        return gr.Checkbox(value=default, label=label, **shown)
    if isinstance(default, (int, float)) and default is not None:
        return gr.Number(value=default, label=label, precision=0 if isinstance(default, int) else None, **shown)
    return gr.Textbox(value=_widget_value(default), label=label, **shown)


def method_choices() -> list[tuple[str, str]]:
    """(title, name) of every registered method: each can drag points."""
    return [(methods.info(n).title, n) for n in methods.names()]


def model_choice(**kwargs) -> gr.Dropdown:
    """The model menu. Its choices follow --model (on_page_load); a value a client sends is checked by
    runtime_for, with a message that says what this server offers."""
    return gr.Dropdown(offered_models(), value=SETTINGS.model, label="Model", allow_custom_value=True, **kwargs)


# -- layout ----------------------------------------------------------------------------------------------


def dragon_tab() -> None:
    """Layout and wiring of the DragonDiffusion tab."""
    d = DRAGON
    d.state = gr.State(new_dragon_state())
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            d.mode = gr.Radio(DRAGON_MODES, value="move", label="Mode", elem_id="dragon-mode")
            d.instructions = gr.Markdown(DRAGON_HELP["move"])
            d.upload = image_upload(label="Image", height=200)
            d.scale = gr.Slider(0.2, 5.0, value=1.0, step=0.05, label="Scale", visible=False, elem_id="dragon-scale")
            d.prompt = gr.Textbox(label="Prompt (optional)", placeholder="a photo of ...")
            d.model = model_choice()
            with gr.Row():
                d.run = gr.Button("Edit", variant="primary", elem_id="dragon-run")
                d.stop = gr.Button("Stop", variant="stop")
            d.status = gr.Markdown("", elem_id="dragon-status")
        with gr.Column(scale=2):
            d.editor = mask_editor("Paint the object (drag mode: the region that may change)")
            d.refine = gr.Button("Refine to the object (GrabCut in the painting's box)", size="sm")
        with gr.Column(scale=2):
            d.canvas = gr.Image(
                type="pil", label="Click (see the mode's instructions)", interactive=False, format="png"
            )
    with gr.Row(visible=False) as d.reference_row:
        d.reference_upload = image_upload(label="Reference image", height=200)
        d.reference_editor = mask_editor("Paint the reference's object")
    with gr.Row():
        d.result = gr.ImageSlider(type="pil", label="Before ⟷ after", format="png", interactive=False)
        with gr.Column():
            d.download = gr.File(label="Download (PNG with the session inside)")
            d.history = gr.Gallery(label="This session's results", columns=4, height=220, object_fit="contain")
    with gr.Accordion("Parameters and sessions", open=False):
        d.params = gr.Textbox(
            label="Parameters (YAML, one 'name: value' per line; empty = the mode's and model's defaults)",
            placeholder="n_steps: 30\nvariant: diffeditor",
            lines=3,
        )
        d.load = gr.File(label="Load a DragonDiffusion session (.json or result .png)", file_types=[".json", ".png"])
    every = [d.state, d.mode, d.instructions, d.reference_row, d.scale, d.editor, d.reference_editor, d.canvas]
    every += [d.status, d.params, d.result, d.download, d.history]
    d.outputs = every  # what each handler of the tab may change (it returns a dict of some of them)
    d.mode.change(dragon_mode, [d.mode, d.state], every)
    d.upload.upload(dragon_upload, [d.upload, d.state], every)
    d.reference_upload.upload(dragon_reference_upload, [d.reference_upload, d.state], every)
    d.editor.change(dragon_paint, [d.editor, d.state], every)
    d.reference_editor.change(dragon_reference_paint, [d.reference_editor, d.state], every)
    d.canvas.select(dragon_click_at, [d.mode, d.state], every)
    d.refine.click(dragon_refine, d.state, every)
    d.run.click(dragon_run, [d.state, d.mode, d.scale, d.prompt, d.model, d.params], every, **GPU)
    d.stop.click(on_stop, d.state, d.status)
    d.load.change(dragon_load, [d.load, d.state], every)


def drag_tab() -> None:
    """Layout and wiring of the DragDiffusion tab."""
    d = DRAG
    d.state = gr.State(new_state())
    method = default_method(SETTINGS.model)
    defaults = dict(zip(PARAMS, panel_values(SETTINGS.model, method), strict=True))  # on_page_load refreshes them
    help_texts = panel_help(method)
    own = {f.name for f in fields(PANEL_CONFIGS[method])} if method in PANEL_CONFIGS else set()
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            d.upload = image_upload(label="1 · Image", height=220, elem_id="upload")
            d.prompt = gr.Textbox(label="Prompt (optional)", placeholder="a photo of ...", elem_id="prompt")
            d.method = gr.Radio(
                method_choices(),
                value=method,
                label="Method",
                info="every registered method can drag points; GoodDrag and DragDiffusion fine-tune a LoRA on the "
                "image first; Inpaint4Drag warps the painted region and fills what it reveals (about a second; its "
                "warp is previewed as you place points); DragonDiffusion needs no fine-tuning. Settings: Advanced",
                elem_id="method",
            )
            d.model = model_choice(
                info="auto: Stable Diffusion 1.5 if downloaded, else the bundled demo model; start the app with "
                "--model PATH to offer a folder or .safetensors file. Choosing one shows its settings below.",
            )
            with gr.Row():
                d.run = gr.Button("Drag", variant="primary", elem_id="run")
                d.stop = gr.Button("Stop", variant="stop", elem_id="stop")
            d.status = gr.Markdown("", elem_id="status")
        with gr.Column(scale=2):
            d.editor = mask_editor("2 · Paint the region that may change", elem_id="mask")
            d.clear_mask = gr.Button("Clear mask", size="sm", elem_id="clear-mask")
        with gr.Column(scale=2):
            d.canvas = gr.Image(
                type="pil", label="3 · Click handle, then target", interactive=False, format="png", elem_id="canvas"
            )
            with gr.Row():
                d.undo = gr.Button("Undo last point", size="sm")
                d.clear = gr.Button("Clear points", size="sm")
            d.table = gr.Dataframe(
                headers=["pair", "handle x", "handle y", "target x", "target y"],
                datatype=["number"] * 5,
                interactive=True,
                label="Points (editable)",
                elem_id="points",
            )
    with gr.Row():
        with gr.Column(scale=2):
            d.result = gr.ImageSlider(
                type="pil", label="Before ⟷ after (drag the divider)", format="png", interactive=False, elem_id="result"
            )
            with gr.Row():
                d.download = gr.File(label="Download (PNG with the session inside)", elem_id="download")
                d.again = gr.Button("Edit this result")
        with gr.Column(scale=2):
            d.history = gr.Gallery(
                label="This session's results", columns=4, height=300, object_fit="contain", elem_id="history"
            )
    with gr.Accordion("Advanced settings (the selected method's values for the selected model)", open=False):
        d.widgets = [param_widget(n, defaults[n], help_texts[n], n in own) for n in PARAMS]
    with gr.Accordion("Sessions", open=False):
        with gr.Row():
            d.save = gr.Button("Save session")
            d.saved = gr.File(label="Session JSON")
            d.load = gr.File(
                label="Load a session (.json) or a dragdiff result (.png)", file_types=[".json", ".png"], elem_id="load"
            )
    if EXAMPLES:
        gr.Examples([[str(p)] for p in EXAMPLES], inputs=[d.load], label="Examples (one click loads them)")

    settings = [d.state, d.prompt, d.model, d.method, *d.widgets]
    every = [d.state, d.editor, d.canvas, d.table, d.prompt, d.model, d.status, d.result, d.download, d.history]
    every += [d.method, *d.widgets]
    d.outputs = every  # what each handler of the tab may change (it returns a dict of some of them)
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
    # .input: a user's choice only; a loaded session keeps its values
    d.model.input(on_model, [d.model, d.method], [d.method, *d.widgets])
    # Point edits are instant: no loading cover over the canvas (it would swallow the next click), and clicks
    # that come while one is handled queue up instead of being dropped (the state is the server's, in order).
    instant = dict(show_progress="hidden", trigger_mode="multiple")
    d.canvas.select(on_click, d.state, every, **instant)
    d.undo.click(on_undo, d.state, every, **instant)
    d.clear.click(on_clear, d.state, every, **instant)
    d.table.input(on_table, [d.table, d.state], every, show_progress="hidden")
    # Inpaint4Drag's warp, previewed at once: as its own event when the points table changes (a chained step
    # would keep the click event busy, and Gradio drops a click that comes while it is), after the region's.
    preview = dict(fn=warp_preview, inputs=[d.state, d.method, *d.widgets], outputs=[d.result, d.status])
    d.table.change(**preview, show_progress="hidden")
    for event in (
        d.editor.change(on_mask, [d.editor, d.state], every),
        d.clear_mask.click(on_clear_mask, d.state, every),
        d.method.input(on_method, [d.model, d.method], d.widgets),
    ):
        event.then(**preview, show_progress="hidden")
    d.run.click(run, settings, every, **GPU)
    d.stop.click(on_stop, d.state, d.status)
    d.save.click(save_current, [d.state, d.prompt, d.model, d.method, *d.widgets], d.saved)
    gr.api(api_edit, api_name="edit", **GPU)


def on_page_load() -> dict:
    """Each page opens with what this server was started with (--model, --config) and the methods registered
    now: the Blocks are built once, at import, before main() has read the flags."""
    choices = gr.update(choices=offered_models(), value=SETTINGS.model)
    method = default_method(SETTINGS.model)
    return {
        DRAG.model: choices,
        DRAGON.model: choices,
        DRAG.method: gr.update(choices=method_choices(), value=method),
        **panel_updates(SETTINGS.model, method),
    }


def build_app() -> gr.Blocks:
    with gr.Blocks(title="dragdiff — drag editing") as blocks:
        gr.Markdown(
            "# dragdiff\nUpload a photo, paint the region that may change, click a **handle** (red) and "
            "then its **target** (blue), and press **Drag**. The DragonDiffusion tab moves, resizes, restyles "
            "and pastes objects without fine-tuning."
        )
        with gr.Tab("Drag points"):
            drag_tab()
        with gr.Tab("DragonDiffusion"):
            dragon_tab()
        blocks.load(on_page_load, None, [DRAG.model, DRAGON.model, DRAG.method, *DRAG.widgets])
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
        help="YAML file of parameters (keys as in dragdiff/configs/drag.yaml) that the Advanced panel starts with",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help=f"larger uploads are refused before decoding (default {MAX_IMAGE_PIXELS})",
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
    RUNTIMES.device, RUNTIMES.dtype = args.device, args.dtype
    # Gradio decodes some inputs before any handler runs (mask-editor layers, data: URLs, upload headers) with
    # Pillow, whose limit is process-wide: above twice this it refuses from the header. Between one and two
    # times it only warns, and dragdiff's loaders refuse with their own message.
    PILImage.MAX_IMAGE_PIXELS = SETTINGS.max_image_pixels
    for path in remove_stale_temporary_files(SETTINGS.outputs):
        print(f"removed {path}: a result write that a crash interrupted (the finished results are intact)")
    demo.queue(default_concurrency_limit=SETTINGS.gpu_jobs)  # the "gpu" events' shared limit: --gpu-jobs
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, theme=gr.themes.Soft(), css=CSS, show_error=True
    )


if __name__ == "__main__":
    main()
