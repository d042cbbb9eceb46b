"""dragdiff in the browser: upload, paint the region that may change, click handle → target, drag.

Layout and event wiring only; everything else is in dragdiff/ (the engine) and dragdiff/editor.py (points,
overlay, background runs, auto-save). Run `python app.py --help` for the flags.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder
from PIL import Image as PILImage

from dragdiff import DragCancelled, DragConfig, DragError, DragRequest
from dragdiff.cli import DTYPE_HELP, DTYPE_NAMES, config_help, parse_value
from dragdiff.dragon import DragonEditor
from dragdiff.dragon.requests import check_dragon_request
from dragdiff.dragon.session import load_dragon_session, save_result
from dragdiff.editor import (
    DRAGON_HELP,
    Engines,
    Finished,
    StageBoard,
    StopFlag,
    add_click,
    autosave,
    clicks_from_table,
    describe,
    display_scale,
    dragon_click,
    dragon_request,
    editable_region,
    enlarge,
    mask_from_editor,
    new_result_path,
    overlay,
    pairs,
    points_table,
    refine_to_object,
    remove_stale_temporary_files,
    server_weights,
    stream,
    tint,
    to_image_point,
)
from dragdiff.images import MAX_IMAGE_PIXELS, load_image
from dragdiff.models import HUB_ALIASES
from dragdiff.session import Session, load_session, save_session

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.json"))
MODELS = ["auto", "demo", "sd15", "tiny"]
CSS = """
#canvas img { cursor: crosshair; }
"""
NO_MASK = "No region painted: the whole image may change. Paint over what may move to protect the rest."


@dataclass
class Settings:
    """Process-wide settings from the command line (per-user data lives in gr.State only)."""

    model: str = "auto"
    device: str | None = None
    outputs: Path = ROOT / "outputs"
    max_image_pixels: int = MAX_IMAGE_PIXELS
    gpu_jobs: int = 1
    config: Path | None = None  # a YAML file of DragConfig values: the Advanced panel's starting values
    image_prompt: str | None = None  # DragonDiffusion's optional IP-Adapter file and its image encoder folder
    image_encoder: str | None = None
    # Files a client names must lie here: the folder where Gradio stores what this server received.
    uploads: Path = Path(get_upload_folder())


SETTINGS = Settings()
ENGINES = Engines()
PARAMS = [f.name for f in fields(DragConfig)]


def new_state() -> dict[str, Any]:
    return {
        "image": None,
        "clicks": [],
        "mask": None,
        "restored_mask": None,  # from a loaded session: shown in the editor's picture, not in a layer
        "result": None,
        "history": [],
        "stop": StopFlag(),
    }


def fresh(state: dict, **values: Any) -> dict[str, Any]:
    """A new edit's state that keeps this user's history and Stop flag."""
    return {**new_state(), "history": state["history"], "stop": state["stop"], **values}


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


def engine_for(model: Any):
    """The engine for an offered model. A client never makes the server load a folder or file it names."""
    name = offered_name(model)
    if name is None:
        shown = model if isinstance(model, str) and len(model) <= 60 else f"{str(model)[:60]}…"
        raise DragError(
            f"model: {shown!r} is not offered by this server; choose one of {', '.join(offered_models())} "
            "(whoever runs the server can offer another with --model)"
        )
    return ENGINES.get(name)


# -- handlers: each a plain function of its inputs --------------------------------------------------------


def on_upload(path: str | None, state: dict):
    if not path:
        return state, None, None, [], ""
    try:
        image = load_image(uploaded_file(path, "image"), max_pixels=SETTINGS.max_image_pixels)
    except DragError as exc:
        gr.Warning(str(exc))
        return state, None, None, [], f"⚠️ {exc}"
    state = fresh(state, image=image)
    editor = {"background": image, "layers": [], "composite": image}
    return state, editor, overlay(image, [], None), [], f"{image.width}×{image.height} px. {NO_MASK}"


def on_mask(editor_value: dict | None, state: dict):
    if state["image"] is None:
        return state, None, ""
    mask = editable_region(state["restored_mask"], editor_value, state["image"].size)
    state = {**state, "mask": mask}
    note = NO_MASK if mask is None else f"Editable region: {mask.mean():.0%} of the image."
    return state, overlay(state["image"], state["clicks"], mask), note


def on_clear_mask(state: dict):
    """Forget the painted and the restored mask: the whole image may change again."""
    if state["image"] is None:
        return state, None, None, ""
    state = {**state, "mask": None, "restored_mask": None}
    editor = {"background": state["image"], "layers": [], "composite": state["image"]}
    return state, editor, overlay(state["image"], state["clicks"], None), NO_MASK


def on_click(state: dict, evt: gr.SelectData):
    if state["image"] is None:
        gr.Warning("Upload an image first.")
        return state, None, []
    x, y = to_image_point(*evt.index, display_scale(state["image"].size))  # evt.index: canvas picture pixels
    return _with_clicks(state, add_click(state["clicks"], x, y))


def on_undo(state: dict):
    return _with_clicks(state, state["clicks"][:-1])


def on_clear(state: dict):
    return _with_clicks(state, [])


def on_table(rows, state: dict):
    try:
        clicks = clicks_from_table(rows.values.tolist() if hasattr(rows, "values") else rows or [])
    except DragError as exc:
        gr.Warning(str(exc))
        return state, overlay(state["image"], state["clicks"], state["mask"]) if state["image"] else None, []
    return _with_clicks(state, clicks)


def _with_clicks(state: dict, clicks: list):
    state = {**state, "clicks": clicks}
    shown = overlay(state["image"], clicks, state["mask"]) if state["image"] is not None else None
    return state, shown, points_table(clicks)


def config_from(values: tuple) -> DragConfig:
    """DragConfig from the Advanced widgets (text fields are parsed as YAML: '2, 3' → [2, 3], 'null')."""
    parsed, lists = {}, {n for n, v in DragConfig.load().to_dict().items() if isinstance(v, list)}
    for name, value in zip(PARAMS, values, strict=True):
        if isinstance(value, str):
            value = parse_value(f"[{value}]" if name in lists else value)
        parsed[name] = int(value) if isinstance(value, float) and value.is_integer() else value
    return DragConfig.from_dict(parsed, where="settings")


def prepare(state: dict, prompt: str, model: str, *values):
    """LoRA + inversion as soon as an image is there, so that Run can start at once (cached per image)."""
    if state["image"] is None:
        return
    stop = state["stop"].event
    stop.clear()
    try:
        engine = engine_for(model)
        config = _model_config(engine, values)
        board = StageBoard()
        for event in stream(
            lambda progress, halt: engine.prepare(state["image"], prompt, config, progress, halt), stop
        ):
            yield "Ready to drag." if isinstance(event, Finished) else "Preparing…  \n" + board.update(event)
    except DragCancelled:
        yield "Preparation stopped; it resumes when you press Drag."
    except DragError as exc:
        yield f"⚠️ {exc}"


def run(state: dict, prompt: str, model: str, *values):
    """The edit, streamed: status and a live preview of the tracked handles, then the saved result."""
    no_change = (gr.skip(),) * 4
    try:
        if state["image"] is None:
            raise DragError("Upload an image first.")
        handles, targets = pairs(state["clicks"])
        engine = engine_for(model)
        config = _model_config(engine, values)
        request = DragRequest(state["image"], handles, targets, state["mask"], prompt, config)
        session = Session.from_request(request, engine.model.spec)  # validates points, mask and prompt
    except DragError as exc:
        gr.Warning(str(exc))
        yield state, f"⚠️ {exc}", *no_change
        return
    yield state, engine.model.note or f"Model: {engine.model.spec}", *no_change
    stop, last, board = state["stop"].event, None, StageBoard()
    stop.clear()
    try:
        for event in stream(lambda progress, halt: engine.drag(request, progress, halt), stop):
            if isinstance(event, Finished):
                break
            last = event
            preview = overlay(state["image"], state["clicks"], state["mask"], event.points or None)
            yield state, board.update(event), preview, *no_change[1:]
    except DragCancelled:
        where = f" during {describe(last)}" if last else ""
        yield state, f"Stopped{where}. Nothing was changed; press Drag to run again.", *no_change
        return
    except DragError as exc:  # found by the engine once it knows the model, e.g. a block the UNet lacks
        gr.Warning(str(exc))
        yield state, f"⚠️ {exc}", *no_change
        return
    result = event.value
    path = autosave(SETTINGS.outputs, result.image, session)
    history = [*state["history"], str(path)]
    state = {**state, "result": str(path), "history": history}
    reached = "reached the targets" if result.stopped_early else f"{result.steps_used} drag steps"
    status = f"Done in {result.timings['total']:.1f} s ({reached}). Saved to {path}."
    yield state, status, gr.skip(), (enlarge(state["image"]), enlarge(result.image)), str(path), history


def on_stop(state: dict):
    state["stop"].event.set()  # the running job ends between two steps
    return "Stopping…"


def edit_result(state: dict):
    """Make the last result the new input (multi-round editing)."""
    if not state["result"]:
        gr.Warning("There is no result to edit yet: run an edit first.")
        return state, gr.skip(), gr.skip(), gr.skip(), gr.skip()
    image = load_image(state["result"])
    state = fresh(state, image=image)
    editor = {"background": image, "layers": [], "composite": image}
    return state, editor, overlay(image, [], None), [], "The result is the new input. " + NO_MASK


def save_current(state: dict, prompt: str, model: str, *values):
    try:
        if state["image"] is None:
            raise DragError("Upload an image first: a session holds the image, points, mask and settings.")
        handles, targets = pairs(state["clicks"]) if state["clicks"] else ((), ())
        session = Session(state["image"], handles, targets, state["mask"], prompt, model, config_from(values))
    except DragError as exc:
        gr.Warning(str(exc))
        return None
    path = Path(tempfile.mkdtemp()) / "dragdiff-session.json"
    save_session(session, path)
    return str(path)


def load_saved(path: str | None, state: dict):
    """Restore a session from its JSON, or from a dragdiff result PNG (its embedded session)."""
    if not path:
        return (state, *([gr.skip()] * (6 + len(PARAMS))))
    try:
        session = load_session(uploaded_file(path, "session"), max_pixels=SETTINGS.max_image_pixels)
    except DragError as exc:
        gr.Warning(str(exc))
        return (state, *([gr.skip()] * 5), f"⚠️ {exc}", *([gr.skip()] * len(PARAMS)))
    clicks = [p.as_list() for pair in zip(session.handles, session.targets, strict=True) for p in pair]
    state = fresh(state, image=session.image, clicks=clicks, mask=session.mask, restored_mask=session.mask)
    editor = {"background": session.image, "layers": [], "composite": tint(session.image, session.mask)}
    values = [_widget_value(v) for v in session.config.to_dict().values()]
    shown = overlay(session.image, clicks, session.mask)
    model, note = offered_name(session.model), ""
    if model is None:
        model = SETTINGS.model
        note = f" It was made with a model this server does not offer; {model} is selected."
    return (
        state,
        editor,
        shown,
        points_table(clicks),
        session.prompt,
        model,
        f"Session loaded: {len(session.handles)} point pair(s)"
        + ("." if session.mask is None else "; its mask is tinted in the editor (paint to add, Clear mask to redo).")
        + note,
        *values,
    )


def _widget_value(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "null" if value is None else value


def _model_config(engine, values: tuple) -> DragConfig:
    """The Advanced values; where they still hold the generic defaults, the model's tuned values win."""
    config, generic = config_from(values).to_dict(), DragConfig.load(SETTINGS.config).to_dict()
    tuned = {k: v for k, v in engine.model.drag_defaults.items() if config[k] == generic[k]}
    return DragConfig.from_dict({**config, **tuned}, where="settings")


def api_edit(
    image: FileData, points: str, mask: FileData | None = None, prompt: str = "", model: str = "", settings: str = "{}"
) -> FileData:
    """API: edit `image` with `points` ("x,y>x,y; ...") and return the result PNG (session embedded).
    `settings` is a JSON object of DragConfig values; the rest are the model's defaults."""
    from dragdiff.images import load_mask
    from dragdiff.validation import parse_points

    try:
        if not image:
            raise DragError("image: no image was given; pass the image file to edit")
        picture = load_image(uploaded_file(image, "image"), max_pixels=SETTINGS.max_image_pixels)
        handles, targets = parse_points(points)
        engine = engine_for(model or SETTINGS.model)
        overrides = _json_object(settings)
        config = engine.default_config(**overrides)
        editable = load_mask(uploaded_file(mask, "mask"), picture.size) if mask else None
        request = DragRequest(picture, handles, targets, editable, prompt, config)
        session = Session.from_request(request, engine.model.spec)
        result = engine.drag(request)
    except DragError as exc:
        raise gr.Error(str(exc)) from exc
    return FileData(path=str(autosave(SETTINGS.outputs, result.image, session)))


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DragError(f'settings: not valid JSON ({exc}); give an object such as {{"drag_steps": 40}}') from exc
    if not isinstance(value, dict):
        raise DragError('settings: give a JSON object such as {"drag_steps": 40}')
    return value


# -- the DragonDiffusion tab ---------------------------------------------------------------------------

DRAGON_MODES = list(DRAGON_HELP)


def new_dragon_state() -> dict[str, Any]:
    return {
        "image": None,
        "mask": None,
        "clicks": [],
        "reference": None,
        "reference_mask": None,
        "history": [],
        "stop": StopFlag(),
    }


def dragon_upload(path: str | None, state: dict, what: str = "image"):
    """A new base image (what="image") or reference image: resets what depended on the old one."""
    if not path:
        return state, None, gr.skip()
    try:
        image = load_image(uploaded_file(path, what), max_pixels=SETTINGS.max_image_pixels)
    except DragError as exc:
        gr.Warning(str(exc))
        return state, None, f"⚠️ {exc}"
    if what == "image":
        state = {**state, "image": image, "mask": None, "clicks": []}
    else:
        state = {**state, "reference": image, "reference_mask": None}
    editor = {"background": image, "layers": [], "composite": image}
    return state, editor, f"{what.capitalize()}: {image.width}×{image.height} px."


def dragon_paint(editor_value: dict | None, state: dict, what: str = "mask"):
    image = state["image" if what == "mask" else "reference"]
    if image is None:
        return state, gr.skip()
    state = {**state, what: mask_from_editor(editor_value, image.size)}
    return state, _dragon_overlay(state)


def dragon_refine(state: dict):
    """Replace the painted mask by the object GrabCut finds in the painting's bounding box."""
    if state["image"] is None:
        return state, gr.skip(), gr.skip(), "Upload an image first."
    try:
        mask = refine_to_object(state["image"], state["mask"])
    except DragError as exc:
        return state, gr.skip(), gr.skip(), f"⚠️ {exc}"
    state = {**state, "mask": mask}
    editor = {"background": state["image"], "layers": [], "composite": tint(state["image"], mask)}
    return state, editor, _dragon_overlay(state), f"Object found: {mask.mean():.0%} of the image."


def dragon_click_at(mode: str, state: dict, evt: gr.SelectData):
    if state["image"] is None:
        gr.Warning("Upload an image first.")
        return state, None
    x, y = to_image_point(*evt.index, display_scale(state["image"].size))
    try:
        state = {**state, "clicks": dragon_click(mode, state["clicks"], x, y)}
    except DragError as exc:
        gr.Warning(str(exc))
    return state, _dragon_overlay(state)


def dragon_mode(mode: str, state: dict):
    """The mode's instructions and inputs; points of another mode are cleared (they meant something else)."""
    state = {**state, "clicks": []}
    shown = _dragon_overlay(state) if state["image"] is not None else None
    uses_reference, uses_scale = mode in ("appearance", "paste"), mode in ("resize", "paste")
    return state, DRAGON_HELP[mode], gr.update(visible=uses_reference), gr.update(visible=uses_scale), shown


def _dragon_overlay(state: dict):
    return overlay(state["image"], state["clicks"], state["mask"]) if state["image"] is not None else None


def dragon_run(state: dict, mode: str, scale: float, prompt: str, model: str, params: str):
    """A DragonDiffusion edit, streamed like the drag tab's and saved the same way (PNG with its session)."""
    no_change = (gr.skip(),) * 3
    try:
        engine = engine_for(model)
        editor = DragonEditor(engine)
        values = server_weights(_yaml_object(params), SETTINGS.image_prompt, SETTINGS.image_encoder)
        config = editor.default_config("move" if mode == "resize" else mode, **values)
        request = dragon_request(mode, state, scale, prompt, config)
        check_dragon_request(request)  # refuse bad input before any work
    except DragError as exc:
        gr.Warning(str(exc))
        yield state, f"⚠️ {exc}", *no_change
        return
    stop, board, event = state["stop"].event, StageBoard(), None
    stop.clear()

    try:
        for event in stream(lambda progress, halt: editor.edit(request, progress, halt), stop):
            if isinstance(event, Finished):
                break
            yield state, board.update(event), *no_change
    except DragCancelled:
        yield state, "Stopped. Nothing was changed; press Edit to run again.", *no_change
        return
    except DragError as exc:
        yield state, f"⚠️ {exc}", *no_change
        return
    result = event.value
    path = new_result_path(SETTINGS.outputs)
    save_result(result.image, request, engine.model.spec, config, path)
    history = [*state["history"], str(path)]
    state = {**state, "history": history}
    notes = "".join(f"  \n⚠️ {w}" for w in result.warnings)
    status = f"Done in {result.timings['total']:.1f} s. Saved to {path}.{notes}"
    yield state, status, (enlarge(state["image"]), enlarge(result.image)), str(path), history


def dragon_load(path: str | None, state: dict):
    """Restore a DragonDiffusion session (its .json or result PNG) into the tab."""
    skip = (gr.skip(),) * 8
    if not path:
        return state, *skip
    try:
        request, model = load_dragon_session(uploaded_file(path, "session"), SETTINGS.max_image_pixels)
    except DragError as exc:
        gr.Warning(str(exc))
        return state, *skip[:-1], f"⚠️ {exc}"
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
    state = {
        **state,
        "image": request.image,
        "mask": request.mask,
        "clicks": clicks,
        "reference": getattr(request, "reference", None),
        "reference_mask": getattr(request, "reference_mask", None),
    }
    params = "\n".join(f"{k}: {json.dumps(v)}" for k, v in request.config.to_dict().items())
    editor = {"background": request.image, "layers": [], "composite": tint(request.image, request.mask)}
    reference = state["reference"]
    reference_editor = (
        {"background": reference, "layers": [], "composite": tint(reference, state["reference_mask"])}
        if reference is not None
        else gr.skip()
    )
    scale = getattr(request, "scale", 1.0)
    made_with = offered_name(model) or "a model this server does not offer"
    status = f"Session loaded ({made_with})."
    return state, mode, editor, reference_editor, _dragon_overlay(state), scale, params, status


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


def dragon_tab() -> None:
    """Layout and wiring of the DragonDiffusion tab."""
    state = gr.State(new_dragon_state())
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            mode = gr.Radio(DRAGON_MODES, value="move", label="Mode", elem_id="dragon-mode")
            instructions = gr.Markdown(DRAGON_HELP["move"])
            upload = image_upload(label="Image", height=200)
            scale = gr.Slider(0.2, 5.0, value=1.0, step=0.05, label="Scale", visible=False, elem_id="dragon-scale")
            prompt = gr.Textbox(label="Prompt (optional)", placeholder="a photo of ...")
            model = gr.Dropdown(offered_models(), value=SETTINGS.model, label="Model")
            with gr.Row():
                run_button = gr.Button("Edit", variant="primary", elem_id="dragon-run")
                stop_button = gr.Button("Stop", variant="stop")
            status = gr.Markdown("", elem_id="dragon-status")
        with gr.Column(scale=2):
            editor = mask_editor("Paint the object (drag mode: the region that may change)")
            refine = gr.Button("Refine to the object (GrabCut in the painting's box)", size="sm")
        with gr.Column(scale=2):
            canvas = gr.Image(type="pil", label="Click (see the mode's instructions)", interactive=False, format="png")
    with gr.Row(visible=False) as reference_row:
        reference_upload = image_upload(label="Reference image", height=200)
        reference_editor = mask_editor("Paint the reference's object")
    with gr.Row():
        result = gr.ImageSlider(type="pil", label="Before ⟷ after", format="png", interactive=False)
        with gr.Column():
            download = gr.File(label="Download (PNG with the session inside)")
            history = gr.Gallery(label="This session's results", columns=4, height=220, object_fit="contain")
    with gr.Accordion("Parameters and sessions", open=False):
        params = gr.Textbox(
            label="Parameters (YAML, one 'name: value' per line; empty = the mode's and model's defaults)",
            placeholder="n_steps: 30\nvariant: diffeditor",
            lines=3,
        )
        load_file = gr.File(label="Load a DragonDiffusion session (.json or result .png)", file_types=[".json", ".png"])
    gpu = dict(concurrency_id="gpu", concurrency_limit=SETTINGS.gpu_jobs)
    mode.change(dragon_mode, [mode, state], [state, instructions, reference_row, scale, canvas])
    upload.upload(dragon_upload, [upload, state], [state, editor, status]).then(
        lambda s: _dragon_overlay(s), state, canvas
    )
    reference_upload.upload(
        lambda path, s: dragon_upload(path, s, "reference"),
        [reference_upload, state],
        [state, reference_editor, status],
    )
    editor.change(dragon_paint, [editor, state], [state, canvas])
    reference_editor.change(
        lambda v, s: dragon_paint(v, s, "reference_mask"), [reference_editor, state], [state, canvas]
    )
    canvas.select(dragon_click_at, [mode, state], [state, canvas])
    refine.click(dragon_refine, state, [state, editor, canvas, status])
    run_button.click(
        dragon_run, [state, mode, scale, prompt, model, params], [state, status, result, download, history], **gpu
    )
    stop_button.click(on_stop, state, status)
    load_file.change(
        dragon_load, [load_file, state], [state, mode, editor, reference_editor, canvas, scale, params, status]
    )


# -- layout ----------------------------------------------------------------------------------------------


def param_widget(name: str, default: Any, help_text: str):
    label = name.replace("_", " ")
    if isinstance(default, bool):
        return gr.Checkbox(value=default, label=label, info=help_text)
    if isinstance(default, (int, float)) and default is not None:
        return gr.Number(value=default, label=label, info=help_text, precision=0 if isinstance(default, int) else None)
    return gr.Textbox(value=_widget_value(default), label=label, info=help_text)


def build_app() -> gr.Blocks:
    with gr.Blocks(title="dragdiff — drag editing") as demo:
        state = gr.State(new_state())
        gr.Markdown(
            "# dragdiff\nUpload a photo, paint the region that may change, click a **handle** (red) and "
            "then its **target** (blue), and press **Drag**. The DragonDiffusion tab moves, resizes, restyles "
            "and pastes objects without fine-tuning."
        )
        with gr.Tab("DragDiffusion"):
            drag_tab(state)
        with gr.Tab("DragonDiffusion"):
            dragon_tab()
    return demo


def drag_tab(state) -> None:
    """Layout and wiring of the DragDiffusion tab."""
    defaults, help_texts = DragConfig.load(SETTINGS.config).to_dict(), {k: c for k, (_, c) in config_help().items()}
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            upload = image_upload(label="1 · Image", height=220, elem_id="upload")
            prompt = gr.Textbox(label="Prompt (optional)", placeholder="a photo of ...", elem_id="prompt")
            model = gr.Dropdown(
                offered_models(),
                value=SETTINGS.model,
                label="Model",
                info="auto: Stable Diffusion 1.5 if downloaded, else the bundled demo model; "
                "start the app with --model PATH to offer a folder or .safetensors file",
            )
            with gr.Row():
                run_button = gr.Button("Drag", variant="primary", elem_id="run")
                stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
            status = gr.Markdown("", elem_id="status")
        with gr.Column(scale=2):
            editor = mask_editor("2 · Paint the region that may change", elem_id="mask")
            clear_mask = gr.Button("Clear mask", size="sm", elem_id="clear-mask")
        with gr.Column(scale=2):
            canvas = gr.Image(
                type="pil", label="3 · Click handle, then target", interactive=False, format="png", elem_id="canvas"
            )
            with gr.Row():
                undo = gr.Button("Undo last point", size="sm")
                clear = gr.Button("Clear points", size="sm")
            table = gr.Dataframe(
                headers=["pair", "handle x", "handle y", "target x", "target y"],
                datatype=["number"] * 5,
                interactive=True,
                label="Points (editable)",
                elem_id="points",
            )
    with gr.Row():
        with gr.Column(scale=2):
            result = gr.ImageSlider(
                type="pil",
                label="Before ⟷ after (drag the divider)",
                format="png",
                interactive=False,
                elem_id="result",
            )
            with gr.Row():
                download = gr.File(label="Download (PNG with the session inside)", elem_id="download")
                again = gr.Button("Edit this result")
        with gr.Column(scale=2):
            history = gr.Gallery(
                label="This session's results", columns=4, height=300, object_fit="contain", elem_id="history"
            )
    with gr.Accordion("Advanced settings", open=False):
        widgets = [param_widget(n, defaults[n], help_texts.get(n, "")) for n in PARAMS]
    with gr.Accordion("Sessions", open=False):
        with gr.Row():
            save_button = gr.Button("Save session")
            saved = gr.File(label="Session JSON")
            load_file = gr.File(
                label="Load a session (.json) or a dragdiff result (.png)",
                file_types=[".json", ".png"],
                elem_id="load",
            )
    if EXAMPLES:
        gr.Examples([[str(p)] for p in EXAMPLES], inputs=[load_file], label="Examples (one click loads them)")

    settings = [state, prompt, model, *widgets]
    gpu = dict(concurrency_id="gpu", concurrency_limit=SETTINGS.gpu_jobs)
    # A new image (uploaded, loaded from a session, or a result to edit again) or prompt: prepare at once.
    new_image = [
        upload.upload(on_upload, [upload, state], [state, editor, canvas, table, status]),
        again.click(edit_result, state, [state, editor, canvas, table, status]),
        load_file.change(
            load_saved, [load_file, state], [state, editor, canvas, table, prompt, model, status, *widgets]
        ),
    ]
    for event in new_image:
        event.then(prepare, settings, status, **gpu)
    prompt.submit(prepare, settings, status, **gpu)
    prompt.blur(prepare, settings, status, **gpu)
    editor.change(on_mask, [editor, state], [state, canvas, status])
    clear_mask.click(on_clear_mask, state, [state, editor, canvas, status])
    canvas.select(on_click, state, [state, canvas, table])
    undo.click(on_undo, state, [state, canvas, table])
    clear.click(on_clear, state, [state, canvas, table])
    table.input(on_table, [table, state], [state, canvas, table])
    run_button.click(run, settings, [state, status, canvas, result, download, history], **gpu)
    stop_button.click(on_stop, state, status)
    save_button.click(save_current, settings, saved)
    gr.api(api_edit, api_name="edit", **gpu)


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
        help="YAML file of parameters (keys as in configs/drag.yaml) that the Advanced panel starts with",
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
    ENGINES.device, ENGINES.dtype = args.device, args.dtype
    # Gradio decodes some inputs before any handler runs (mask-editor layers, data: URLs, upload headers) with
    # Pillow, whose limit is process-wide: above twice this it refuses from the header. Between one and two
    # times it only warns, and dragdiff's loaders refuse with their own message.
    PILImage.MAX_IMAGE_PIXELS = SETTINGS.max_image_pixels
    for path in remove_stale_temporary_files(SETTINGS.outputs):
        print(f"removed {path}: a result write that a crash interrupted (the finished results are intact)")
    app = build_app()  # rebuilt so that the flags (default model, queue size) are in the layout
    app.queue(default_concurrency_limit=SETTINGS.gpu_jobs)
    app.launch(
        server_name=args.host, server_port=args.port, share=args.share, theme=gr.themes.Soft(), css=CSS, show_error=True
    )


if __name__ == "__main__":
    main()
