"""The bad-input matrix: every kind of bad input, in one place, through the public API and,
where a user can cause it there, through the app's handlers.

A refused case must raise a DragError whose words say what is wrong and how to fix it; each app handler must
show that message rather than crash, and go on serving; nothing may be written (no result, no cache entry).
An accepted case (grayscale, RGBA, palette, 16-bit, CMYK, EXIF rotation, empty, full and grey masks) must
come out right.
"""

import base64
import io
import json
import pickle
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageFile

import app
from app import DRAG
from dragdiff import DragError, DragRequest, Point
from dragdiff.config import resolve_config
from dragdiff.coords import Display
from dragdiff.drag import DragConfig
from dragdiff.drag.method import DragDiffusion
from dragdiff.eval.dragbench import find_samples
from dragdiff.images import MAX_IMAGE_PIXELS, flatten, load_image, load_mask
from dragdiff.interactive.jobs import Runtimes
from dragdiff.point_session import Session, load_session
from dragdiff.session_io import MAX_EMBEDDED_BASE64_CHARS
from dragdiff.validation import check_request, parse_points

# Fewer steps than conftest's FAST: the matrix checks handling, not editing; lora_steps 1 still trains.
FAST = dict(lora_steps=1, lora_batch_size=1, n_inference_steps=4, n_inversion_steps=2, drag_steps=2)
DROP = object()  # session_file(field=DROP) leaves the field out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_model, scene):
    """Inputs go to tmp/in; results (app.SETTINGS.outputs) and caches would go elsewhere in tmp."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    scene.save(inputs / "scene.png")
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    monkeypatch.setattr(app, "RUNTIMES", Runtimes(device="cpu", cache_dir=str(tmp_path / "cache")))
    engine = DragDiffusion(tiny_model, cache_dir=tmp_path / "cache")
    return SimpleNamespace(
        tmp=tmp_path,
        inputs=inputs,
        scene=scene,
        image=str(inputs / "scene.png"),
        engine=engine,
        monkeypatch=monkeypatch,
    )


# -- inputs ------------------------------------------------------------------------------------------------


def put(env, name: str, data: bytes) -> str:
    path = env.inputs / name
    path.write_bytes(data)
    return str(path)


def saved(env, image: Image.Image, name: str, **options) -> str:
    path = env.inputs / name
    image.save(path, **options)
    return str(path)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims width×height RGB pixels while its data is one tiny row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")
    )


def one_pixel(env) -> str:
    return saved(env, Image.new("RGB", (1, 1), (9, 9, 9)), "dot.png")


def bomb(env) -> str:
    return put(env, "bomb.png", png_claiming(20000, 20000))


def truncated(env) -> str:
    data = png(env.scene)
    return put(env, "cut.png", data[: len(data) // 2])


def text_named_png(env) -> str:
    return put(env, "notes.png", b"shopping list: milk, eggs\n")


def small_mask(env) -> str:
    return saved(env, Image.new("L", (64, 64), 255), "mask64.png")


def session_file(env, name: str = "session.json", **changes) -> str:
    """A valid session of the scene (one pair, model tiny) as JSON, with `changes` to its fields."""
    session = Session(
        env.scene, (Point(40, 48),), (Point(60, 48),), None, "", "tiny", resolve_config(DragConfig, **FAST)
    )
    data = session.to_dict()
    for field, value in changes.items():
        if value is DROP:
            del data[field]
        else:
            data[field] = value
    return put(env, name, json.dumps(data, ensure_ascii=False).encode("utf-8"))


def bomb_session(env) -> str:
    return session_file(env, image={"png_base64": base64.b64encode(png_claiming(20000, 20000)).decode()})


def huge_session(env) -> str:
    return session_file(env, image={"png_base64": "A" * (MAX_EMBEDDED_BASE64_CHARS + 4)})


def not_utf8_session(env) -> str:
    text = Path(session_file(env, prompt="un café")).read_text(encoding="utf-8")
    return put(env, "latin1.json", text.encode("latin-1"))


def exploit_bench(env):
    """A DragBench sample whose meta_data.pkl calls builtins.exec to create tmp/pwned when unpickled."""

    class Exploit:
        def __reduce__(self):
            return exec, (f"open({str(env.tmp / 'pwned')!r}, 'w').close()",)

    folder = env.inputs / "bench" / "animals" / "cat_1"
    folder.mkdir(parents=True)
    env.scene.save(folder / "original_image.png")
    (folder / "meta_data.pkl").write_bytes(pickle.dumps({"prompt": "a cat", "points": [], "mask": Exploit()}))
    return find_samples(env.inputs / "bench")[0]


def refuse_decoding_large(env) -> None:
    """As the app runs (main() turns Pillow's own bomb check off), and decoding a large image fails the test."""
    original = ImageFile.ImageFile.load

    def load(self):
        assert self.width * self.height <= MAX_IMAGE_PIXELS, "an oversized image was decoded"
        return original(self)

    env.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    env.monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# -- the public API ----------------------------------------------------------------------------------------


def drag(env, handles, targets, mask=None, **config):
    request = DragRequest(
        env.scene, tuple(handles), tuple(targets), mask, "", resolve_config(DragConfig, **{**FAST, **config})
    )
    return env.engine.edit(request)


# -- the app's handlers: each returns the message the user is shown ---------------------------------------


def widgets(**changes) -> list:
    return app.panel_from(resolve_config(DragConfig, **{**FAST, **changes}), "tiny")


def uploaded(env):
    return app.on_upload(env.image, app.new_state())[DRAG.state]


def run_status(state, **config) -> str:
    with warnings.catch_warnings(record=True):  # gr.Warning outside a page is a Python warning
        updates = list(app.run(state, "", "tiny", "dragdiffusion", "drag", 1.0, *widgets(**config)))
    return updates[-1][DRAG.status]


def by_run(clicks: list, **config) -> Callable:
    return lambda env: run_status(replace(uploaded(env), clicks=clicks), **config)


def by_table(rows: list) -> Callable:
    def shown(env) -> str:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            state = app.on_table(rows, uploaded(env), "dragdiffusion", "drag")[DRAG.state]
        assert state.clicks == []  # the edit is refused, the points stay as they were
        return " ".join(str(w.message) for w in seen)

    return shown


def by_upload(make: Callable) -> Callable:
    def shown(env) -> str:
        with warnings.catch_warnings(record=True):
            shown = app.on_upload(make(env), app.new_state())
        assert shown[DRAG.state].image is None and DRAG.editor not in shown  # the editor keeps what it showed
        return shown[DRAG.status]

    return shown


def by_load(make: Callable) -> Callable:
    def shown(env) -> str:
        with warnings.catch_warnings(record=True):
            restored = app.load_saved(make(env), app.new_state())
        assert DRAG.state not in restored and restored[DRAG.load] is None  # nothing restored; the loader is free
        return restored[DRAG.status]

    return shown


def by_api(image: Callable | None = None, points: str = "40,48>60,48", mask: Callable | None = None, **config):
    """api_edit, as gradio calls it for the /edit endpoint; it must raise gr.Error (shown to the caller)."""

    def shown(env) -> str:
        files = [None if make is None else {"path": make(env)} for make in (image, mask)]
        with pytest.raises(gr.Error) as error:
            app.api_edit(files[0], points, files[1], "", "tiny", json.dumps({**FAST, **config}))
        return error.value.message

    return shown


def scene_file(env) -> str:
    return env.image


# -- the matrix --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    api: Callable  # api(env): a public-API call that must raise DragError
    words: tuple[str, ...]  # what its message must say: what is wrong, and how to fix it
    app: tuple[tuple[Callable, tuple[str, ...]], ...] = ()  # (handler(env) -> message shown, its words)
    setup: Callable | None = None


PARSE_HINT = "write 'x,y>x,y' pairs"
OUTSIDE = "x must be within [0, 127] and y within [0, 95]"
BOMB = ("20000×20000 = 400,000,000 pixels", "above the limit of 16,777,216 pixels (4096×4096)", "downscale it")
UNREADABLE = ("cannot be read as an image", "check that it is a complete file in one of PNG, JPEG")

REFUSED = {
    "no image": Refused(
        lambda env: env.engine.edit(DragRequest(None, (Point(40, 48),), (Point(60, 48),))),
        ("request.image: expected a PIL image, got NoneType", "read files with dragdiff.images.load_image"),
        app=(
            (lambda env: run_status(app.new_state()), ("Upload an image first",)),
            (by_api(None), ("image: no image was given", "pass the image file")),
        ),
    ),
    "no points": Refused(
        lambda env: drag(env, [], []),
        ("no points to drag", "give at least one handle → target pair"),
        app=(
            (by_run([]), ("no points to drag", "give at least one handle → target pair")),
            (by_api(scene_file, points=" "), ("no points given", PARSE_HINT)),
        ),
    ),
    "odd click count": Refused(
        lambda env: parse_points("40,48>60,48; 70,20"),
        ("pair 2 '70,20': expected exactly one '>' between handle and target", PARSE_HINT),
        app=(
            (
                by_run([[40, 48], [60, 48], [70, 20]]),
                ("3 points were clicked: handle 2 has no target", "undo the last"),
            ),
            (by_api(scene_file, points="40,48>60,48; 70,20"), ("pair 2 '70,20'", PARSE_HINT)),
        ),
    ),
    "unequal handle and target lists": Refused(
        lambda env: drag(env, [Point(40, 48), Point(70, 20)], [Point(60, 48)]),
        ("2 handle(s) but 1 target(s)", "every handle needs exactly one target"),
        app=(
            (
                by_table([[1, 40, 48, "", ""], [2, 70, 20, 90, 20]]),
                ("points table, pair 2: the pair above has no target", "give its target's x and y"),
            ),
        ),
    ),
    "point outside the image": Refused(
        lambda env: drag(env, [Point(40, 48)], [Point(500, 48)]),
        ("target 1 (500.0, 48.0) is outside the 128×96 image", OUTSIDE),
        app=(
            (by_run([[40, 48], [500, 48]]), ("target 1 (500.0, 48.0) is outside the 128×96 image", OUTSIDE)),
            (by_api(scene_file, points="40,48>500,48"), ("target 1 (500.0, 48.0) is outside", OUTSIDE)),
        ),
    ),
    "negative point": Refused(
        lambda env: drag(env, [Point(-3, 48)], [Point(60, 48)]),
        ("handle 1 (-3.0, 48.0) is outside the 128×96 image", OUTSIDE),
        app=(
            (by_run([[-3, 48], [60, 48]]), ("handle 1 (-3.0, 48.0) is outside", OUTSIDE)),
            (by_api(scene_file, points="-3,48>60,48"), ("handle 1 (-3.0, 48.0) is outside", OUTSIDE)),
        ),
    ),
    "NaN point": Refused(
        lambda env: drag(env, [Point(float("nan"), 48)], [Point(60, 48)]),
        ("handle 1: x = nan is not a finite number", "give x and y in pixels of the image"),
        app=(
            (by_table([[1, "nan", 48, 60, 48]]), ("pair 1: 'nan' is not a finite number", "type x and y in pixels")),
            (by_api(scene_file, points="nan,48>60,48"), ("'nan' in the handle is not a finite number", PARSE_HINT)),
        ),
    ),
    "points as strings": Refused(
        lambda env: drag(env, [Point("40", 48)], [Point(60, 48)]),
        ("handle 1: x = '40' is not a finite number", "give x and y in pixels of the image"),
        app=(
            (by_table([[1, "forty", 48, 60, 48]]), ("pair 1: 'forty' is not a number", "type x and y in pixels")),
            (by_api(scene_file, points="forty,48>60,48"), ("'forty' in the handle is not a number", PARSE_HINT)),
        ),
    ),
    "mask of the wrong size": Refused(
        lambda env: load_mask(small_mask(env), (128, 96)),
        ("the mask is 64×64 but the image is 128×96", "resize it to 128×96"),
        app=((by_api(scene_file, mask=small_mask), ("the mask is 64×64 but the image is 128×96", "resize it")),),
    ),
    "mask values beyond 0..255": Refused(
        lambda env: load_mask(np.full((96, 128), 300.0), (128, 96)),
        ("mask: values must be bool, 0..1 or 0..255", "got values from 300.0 to 300.0"),
    ),
    "non-bool mask in a request": Refused(
        lambda env: drag(env, [Point(40, 48)], [Point(60, 48)], mask=np.full((96, 128), 255, np.uint8)),
        ("request.mask: expected a 2-D bool array", "dtype uint8", "dragdiff.images.load_mask reads mask images"),
    ),
    "1×1 image": Refused(
        lambda env: load_image(one_pixel(env)),
        ("dot.png' is 1×1", "both sides must be at least 64 px, so use a larger image"),
        app=(
            (by_upload(one_pixel), ("dot.png' is 1×1", "use a larger image")),
            (by_api(one_pixel), ("dot.png' is 1×1", "use a larger image")),
        ),
    ),
    "20000×20000 header (decompression bomb)": Refused(
        lambda env: load_image(bomb(env)),
        ("bomb.png'", *BOMB),
        app=(
            (by_upload(bomb), BOMB),
            (by_api(bomb), BOMB),
            (by_load(bomb_session), ("session.image", *BOMB)),
        ),
        setup=refuse_decoding_large,
    ),
    "truncated PNG": Refused(
        lambda env: load_image(truncated(env)),
        ("cut.png'", *UNREADABLE),
        app=((by_upload(truncated), UNREADABLE), (by_api(truncated), UNREADABLE)),
    ),
    "text file named .png": Refused(
        lambda env: load_image(text_named_png(env)),
        ("notes.png'", *UNREADABLE),
        app=((by_upload(text_named_png), UNREADABLE), (by_api(text_named_png), UNREADABLE)),
    ),
    "session with a missing field": Refused(
        lambda env: load_session(session_file(env, points=DROP)),
        ("session: missing field 'points'", "add it (required fields: format, version, image, points, model)"),
        app=((by_load(lambda env: session_file(env, points=DROP)), ("missing field 'points'", "add it")),),
    ),
    "session of a wrong version": Refused(
        lambda env: load_session(session_file(env, version=2)),
        ("this file is version 2; this dragdiff reads version 1", "update dragdiff to read it"),
        app=((by_load(lambda env: session_file(env, version=2)), ("version 2", "update dragdiff")),),
    ),
    "session with an unknown field": Refused(
        lambda env: load_session(session_file(env, colour="red")),
        ("session: unknown field 'colour'", "known fields are ['config', 'format'"),
        app=((by_load(lambda env: session_file(env, colour="red")), ("unknown field 'colour'", "known fields")),),
    ),
    "session with a huge embedded image": Refused(
        lambda env: load_session(huge_session(env)),
        ("session.image.png_base64: 67,108,868 characters of base64", "above the limit", "downscale the image"),
        app=(
            (
                by_load(huge_session),
                ("67,108,868 characters of base64", "downscale the image"),
            ),
        ),
    ),
    "session image path ../../etc/passwd": Refused(
        lambda env: load_session(session_file(env, image={"path": "../../etc/passwd"})),
        ("session.image.path: '../../etc/passwd' points outside the session's folder", "keep the file next to"),
        app=(
            (
                by_load(lambda env: session_file(env, image={"path": "../../etc/passwd"})),
                ("'../../etc/passwd' points outside the session's folder",),
            ),
        ),
    ),
    "session that is not UTF-8": Refused(
        lambda env: load_session(not_utf8_session(env)),
        ("latin1.json' is not UTF-8 text (byte 0xe9", "save it as UTF-8 JSON"),
        app=((by_load(not_utf8_session), ("is not UTF-8 text", "save it as UTF-8 JSON")),),
    ),
    "DragBench pickle with a disallowed global": Refused(
        lambda env: exploit_bench(env).request(),
        ("meta_data.pkl: refused to unpickle builtins.exec", "may hold only dicts, lists, strings, numbers"),
    ),
    "a feature block the model lacks": Refused(
        lambda env: drag(env, [Point(40, 48)], [Point(60, 48)], feature_blocks=[7]),
        ("feature_blocks: this model's UNet has up_blocks 0-3, not [7]",),
        app=(
            (by_run([[40, 48], [60, 48]], feature_blocks=[7]), ("feature_blocks", "up_blocks 0-3, not [7]")),
            (by_api(scene_file, feature_blocks=[7]), ("feature_blocks", "up_blocks 0-3, not [7]")),
        ),
    ),
}


def assert_says(message: str, words: tuple[str, ...]) -> None:
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in the message {message!r}"


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_written(case, env):
    if case.setup:
        case.setup(env)
    with pytest.raises(DragError) as error:
        case.api(env)
    assert_says(str(error.value), case.words)
    for handler, words in case.app:
        assert_says(handler(env), words)
    assert [p.name for p in env.tmp.iterdir()] == ["in"]  # no outputs/, no cache/, no tmp/pwned
    assert not env.engine.runtime.counts  # no LoRA, no inversion
    assert uploaded(env).image.size == (128, 96)  # and the app goes on serving


# -- accepted by design: handled right --------------------------------------------------------------------


def gray(env):
    ramp = np.tile(np.linspace(0, 255, 128).round().astype(np.uint8), (96, 1))
    return saved(env, Image.fromarray(ramp), "gray.png"), np.repeat(ramp[..., None], 3, axis=2)


def rgba_with_transparency(env):
    rgba = np.zeros((96, 128, 4), np.uint8)
    rgba[..., :3] = (200, 10, 10)
    rgba[:, 64:, 3] = 255  # right half opaque red, left half fully transparent (comes out white)
    expected = np.where(np.arange(128)[None, :, None] >= 64, [200, 10, 10], [255, 255, 255])
    return saved(env, Image.fromarray(rgba), "rgba.png"), np.broadcast_to(expected, (96, 128, 3))


def palette(env):
    image = env.scene.quantize(colors=8)
    assert image.mode == "P"
    return saved(env, image, "palette.png"), np.asarray(image.convert("RGB"))


def sixteen_bit(env):
    values = np.full((96, 128), 65535, np.uint16)
    values[:, :64] = 257 * 100  # 16-bit 25700 is 8-bit 100
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    expected = np.where(np.arange(128)[None, :, None] >= 64, 255, 100)
    return saved(env, image, "sixteen.png"), np.broadcast_to(expected, (96, 128, 3))


def cmyk_jpeg(env):
    path = saved(env, Image.new("RGB", (128, 96), (220, 30, 30)).convert("CMYK"), "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    return path, np.broadcast_to([220, 30, 30], (96, 128, 3))


ACCEPTED_IMAGES = {  # maker, largest allowed difference per channel
    "grayscale": (gray, 0),
    "RGBA with transparency": (rgba_with_transparency, 0),
    "palette": (palette, 0),
    "16-bit PNG": (sixteen_bit, 0),
    "CMYK JPEG": (cmyk_jpeg, 12),
}


@pytest.mark.parametrize(("make", "tolerance"), ACCEPTED_IMAGES.values(), ids=ACCEPTED_IMAGES.keys())
def test_image_modes_become_the_right_rgb_pixels_in_the_api_and_the_app(make, tolerance, env):
    path, expected = make(env)
    shown = app.on_upload(path, app.new_state())
    state, status = shown[DRAG.state], shown[DRAG.status]
    # the app keeps transparency (the result keeps it too); what the model sees is the flattened picture
    assert state.image.mode == ("RGBA" if path.endswith("rgba.png") else "RGB")
    for image in (load_image(path), flatten(state.image)):
        assert image.mode == "RGB" and image.size == (128, 96)
        assert np.abs(np.asarray(image).astype(int) - expected).max() <= tolerance
    assert status.startswith("128×96 px")
    assert check_request(DragRequest(state.image, (Point(40, 48),), (Point(60, 48),))) == []


def test_exif_rotated_jpeg_is_upright_and_points_follow_it(env):
    stored = Image.new("RGB", (128, 96), (0, 0, 200))
    stored.paste((255, 0, 0), (0, 0, 24, 24))  # a red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the marker shows at the top-right
    path = saved(env, stored, "phone.jpg", exif=exif, quality=95)
    upright = load_image(path)
    assert upright.size == (96, 128)
    assert upright.getpixel((85, 10))[0] > 200 and upright.getpixel((10, 10))[2] > 150
    # (60, 120) exists only in the upright picture (the stored one is 96 high): points are upright pixels
    assert check_request(DragRequest(upright, (Point(85, 10),), (Point(60, 120),))) == []
    # The app shows the upright picture, and a click on the marker lands on it
    state = app.on_upload(path, app.new_state())[DRAG.state]
    at = [round(v) for v in Display(state.image.size).from_image(85, 10)]
    state = app.on_click(state, "dragdiffusion", "drag", SimpleNamespace(index=at))[DRAG.state]
    assert state.image.size == (96, 128) and state.clicks == [[85.0, 10.0]]
    # An edit through the API works in upright pixels and returns the upright size, with the marker at the handle
    result = app.api_edit({"path": path}, "85,10>60,120", None, "", "tiny", json.dumps(FAST))
    assert Image.open(result.path).size == (96, 128)
    session = load_session(result.path)
    assert session.image.size == (96, 128) and session.image.getpixel((85, 10))[0] > 200
    assert session.targets == (Point(60.0, 120.0),)


def test_an_empty_mask_means_the_whole_image_may_change_and_says_so(env):
    assert load_mask(saved(env, Image.new("L", (128, 96), 0), "black.png"), (128, 96)) is None
    result = drag(env, [Point(40, 48)], [Point(60, 48)], mask=np.zeros((96, 128), bool))
    assert result.image.size == (128, 96) and result.image.mode == "RGB"
    assert "the mask is empty, so the whole image may change" in result.warnings[0]
    painted = app.on_mask({"background": None, "layers": [np.full((96, 128, 4), 255, np.uint8)]}, uploaded(env))
    nothing = {"background": None, "layers": [np.zeros((96, 128, 4), np.uint8)], "composite": None}
    shown = app.on_mask(nothing, painted[DRAG.state])  # all of it erased again
    assert shown[DRAG.state].mask is None and "the whole image may change" in shown[DRAG.status]


def test_a_full_mask_lets_everything_change(env):
    mask = load_mask(saved(env, Image.new("L", (128, 96), 255), "white.png"), (128, 96))
    assert mask.shape == (96, 128) and mask.all()
    result = drag(env, [Point(40, 48)], [Point(60, 48)], mask=mask)
    assert result.image.size == (128, 96) and result.warnings == []
    everything = {"background": None, "layers": [np.full((96, 128, 4), 255, np.uint8)], "composite": None}
    shown = app.on_mask(everything, uploaded(env))
    assert shown[DRAG.state].mask.all() and shown[DRAG.status] == "Editable region: 100% of the image."


def test_grey_mask_values_are_thresholded_at_half(env):
    grey = np.full((96, 128), 100, np.uint8)
    grey[:, 64:] = 200  # luminance 200 >= 128 may change, 100 may not
    mask = load_mask(saved(env, Image.fromarray(grey), "grey.png"), (128, 96))
    assert not mask[:, :64].any() and mask[:, 64:].all()
    fractions = np.where(np.arange(128) >= 64, 0.7, 0.3)[None, :].repeat(96, axis=0)
    assert np.array_equal(load_mask(fractions, (128, 96)), mask)
    # The app's brush is semi-transparent: any painted alpha marks a pixel, unpainted (alpha 0) does not
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[:, 64:] = (255, 210, 60, 0x99)
    shown = app.on_mask({"background": None, "layers": [layer], "composite": None}, uploaded(env))
    assert np.array_equal(shown[DRAG.state].mask, mask) and shown[DRAG.status] == "Editable region: 50% of the image."
