"""Hostile clients: raw calls to a real server's HTTP API must not crash it, read its files or exhaust it.

One server on loopback (tiny model, its own Gradio upload folder) for the module. Each case asserts what the
reply says, that the server still serves, and, where it matters, that nothing was written and that its
memory's high-water mark did not jump.
"""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import app
from dragdiff.config import resolve_config
from dragdiff.drag import DragConfig
from dragdiff.point_session import Session
from dragdiff.session_io import save_session
from dragdiff.types import Point
from tests.conftest import FAST
from tests.support.appserver import get, start_app
from tests.support.rawapi import FILE_META, bomb_png, call, files_under, peak_rss, upload

ROOT = Path(__file__).resolve().parent.parent
NOT_UPLOADED = "not a file uploaded to this server; upload it"
SETTINGS = json.dumps({**FAST, "lora_steps": 0})
BOMB_SIDE = 15_000  # 225 M pixels, 28 KB as a PNG: > 2 × the 16.8 M-pixel limit, so Pillow refuses its header
BOMB_MEMORY = 300 * 2**20  # what decoding it would add is ≥ 225 MB as 8-bit grey, 900 MB as RGBA


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    running = start_app(folder / "outputs", folder / "cache", folder / "app.log", uploads=folder / "uploads")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def scene_png(server):
    """The test scene, uploaded as gradio_client would: its file dict (server path, with meta)."""
    buffer = io.BytesIO()
    Image.open(ROOT / "assets" / "examples" / "disc.png").convert("RGB").resize((128, 96)).save(buffer, "PNG")
    path = upload(server.url, buffer.getvalue(), "scene.png")
    return {"path": path, "meta": FILE_META}


@pytest.fixture(scope="module")
def earlier_result(server, scene_png):
    """Another user's result in the server's outputs folder: what a file-reading request would be after."""
    reply = call(server.url, "edit", [scene_png, "40,48>60,48", None, "", "tiny", SETTINGS])
    assert reply.event == "complete", reply.message
    return sorted(server.outputs.rglob("*.png"))[-1]


def assert_serving(server) -> None:
    assert server.process.poll() is None, f"the server died:\n{server.tail()}"
    assert get(server.url)[0] == 200


# -- 1. a pair on its own target with stop_distance 0 ---------------------------------------------------


def test_a_handle_on_its_target_with_stop_distance_0_is_an_edit_not_a_segfault(server, scene_png):
    settings = json.dumps({**FAST, "lora_steps": 0, "stop_distance": 0})
    for points in ("40,48>40,48", "40,48>41,48", "40,48>40,48; 70,30>90,30"):  # 41: the same feature cell
        reply = call(server.url, "edit", [scene_png, points, None, "", "tiny", settings])
        assert reply.event == "complete", reply.message
        assert_serving(server)


@pytest.mark.parametrize(
    "method", [["--method", "dragdiffusion", "--drag-steps", "3"], ["--method", "gooddrag", "--drag-end-step", "2"]]
)
def test_the_cli_edits_a_handle_on_its_target_with_stop_distance_0(tmp_path, scene, method):
    scene.save(tmp_path / "in.png")
    command = [sys.executable, "-m", "dragdiff", "edit", "--model", "tiny", "--image", str(tmp_path / "in.png")]
    command += ["--points", "40,48>40,48", "--stop-distance", "0", "--lora-steps", "0", *method]
    command += ["--n-inference-steps", "10", "--n-inversion-steps", "7", "--quiet", "--out", str(tmp_path / "x.png")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(tmp_path / "x.png").size == (128, 96)


# -- 2. files the client did not upload, and models the server does not offer ---------------------------


def not_uploaded_targets(server, earlier_result) -> dict[str, str]:
    return {
        "another user's result": str(earlier_result),
        "a folder": str(server.outputs),
        "a missing file": str(server.outputs / "missing.png"),
        "a file that is no image": str(server.log),
        "a path out of the upload folder": str(server.uploads / ".." / "app.log"),
    }


ENDPOINTS = {  # endpoint -> (its arguments with `path` as the client's file dict, where its message is)
    "edit image": ("edit", lambda f, scene: [f, "40,48>60,48", None, "", "tiny", SETTINGS]),
    "edit mask": ("edit", lambda f, scene: [scene, "40,48>60,48", f, "", "tiny", SETTINGS]),
    "on_upload": ("on_upload", lambda f, scene: [f]),
    "reference": ("on_reference_upload", lambda f, scene: [f]),
}
EDITORS = {  # an upload handler's reply, by position in the editor's outputs: the editor that gets the image
    "on_upload": app.DRAG.outputs.index(app.DRAG.editor),
    "on_reference_upload": app.DRAG.outputs.index(app.DRAG.reference_editor),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_server_file_named_without_meta_is_refused_with_one_message(server, scene_png, earlier_result, endpoint):
    name, arguments = ENDPOINTS[endpoint]
    before = files_under(server.outputs) | files_under(server.uploads)
    messages = set()
    for what, path in not_uploaded_targets(server, earlier_result).items():
        reply = call(server.url, name, arguments({"path": path}, scene_png))
        assert NOT_UPLOADED in reply.message, f"{what}: {reply.message}"
        assert "PNG" not in reply.message and path not in reply.message, what  # no pixels, no path
        messages.add(reply.message)
        if name != "edit":  # the upload handlers answer with their outputs: the editor got no image
            assert not (reply.data[EDITORS[name]] or {}).get("background"), what
    assert len(messages) == 1, f"the replies tell the targets apart: {messages}"
    assert files_under(server.outputs) | files_under(server.uploads) == before
    assert_serving(server)


@pytest.mark.parametrize("model", ["tiny folder", "tiny file", "/etc", "x" * 100_000])
def test_edit_loads_no_model_the_server_does_not_offer(server, scene_png, tiny_folder, tmp_path, model):
    model = {"tiny folder": str(tiny_folder), "tiny file": str(next(tiny_folder.glob("unet/*.safetensors")))}.get(
        model, model
    )
    reply = call(server.url, "edit", [scene_png, "40,48>60,48", None, "", model, SETTINGS])
    offered = f"is not offered by this server; choose one of {', '.join(app.MODELS)}"
    assert reply.event == "error" and offered in reply.message
    assert len(reply.message) < 300
    assert_serving(server)


def test_a_session_naming_a_model_path_loads_with_the_servers_model(monkeypatch, scene, tiny_folder, tmp_path):
    monkeypatch.setattr(app.SETTINGS, "model", "tiny")
    session = Session(scene, (Point(40, 48),), (Point(60, 48),), None, "", str(tiny_folder), resolve_config(DragConfig))
    save_session(session, tmp_path / "session.json")
    restored = app.load_saved(str(tmp_path / "session.json"), app.new_state())
    assert restored[app.DRAG.state].image is not None and restored[app.DRAG.model] == "tiny"
    assert "a model this server does not offer; tiny is selected" in restored[app.DRAG.status]


# -- 4. decompression bombs that Gradio decodes before any handler ---------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png(BOMB_SIDE)


def editor_value(layer: dict) -> dict:
    return {"background": None, "layers": [layer], "composite": None}


@pytest.mark.parametrize(
    "endpoint", ["on_mask", "on_reference_mask", "on_upload data: URL", "on_reference_upload data: URL"]
)
def test_a_bomb_that_gradio_decodes_is_refused_from_its_header(server, bomb, endpoint):
    name = endpoint.split()[0]
    if name in ("on_mask", "on_reference_mask"):
        data = [editor_value({"path": upload(server.url, bomb, "layer.png"), "meta": FILE_META})]
    else:
        url = "data:image/png;base64," + base64.b64encode(bomb).decode()
        data = [{"path": None, "url": url, "meta": FILE_META}]
    before, peak = files_under(server.uploads), peak_rss(server.process.pid)
    reply = call(server.url, name, data)
    assert reply.event == "error" and reply.data is None, reply.message  # Pillow's words stay in the log
    assert peak_rss(server.process.pid) - peak < BOMB_MEMORY
    assert files_under(server.uploads) == before  # no decoded copy left in Gradio's cache
    assert reply.seconds < 10
    assert_serving(server)


# -- 5-7. limits checked before any model work, and messages of bounded length -------------------------


def test_a_long_strip_under_the_pixel_limit_is_refused_from_its_header(tmp_path):
    from dragdiff.errors import DragError
    from dragdiff.images import load_image
    from dragdiff.validation import check_image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (64, 20_000)).save(strip)  # 1.28 M pixels: under the limit, 312:1
    with pytest.raises(DragError, match=r"strip.png' is 64×20000, more than 8:1; crop it"):
        load_image(strip)
    with pytest.raises(DragError, match="more than 8:1"):
        check_image(Image.new("RGB", (64, 600)))
    assert load_image(Image.new("RGB", (64, 512))).size == (64, 512)  # 8:1 itself is fine


def test_point_pairs_are_capped_before_they_are_read(scene):
    from dragdiff.errors import DragError
    from dragdiff.session_io import point_pairs_from_json
    from dragdiff.validation import parse_points

    with pytest.raises(DragError, match="points: 101 point pairs; at most 100") as error:
        parse_points("; ".join(["1,1>2,2"] * 101))
    assert len(str(error.value)) < 200
    many = [{"handle": [1, 1], "target": [2, 2]}] * 2_500_000
    with pytest.raises(DragError, match="session.points: 2,500,000 point pairs; at most 100"):
        point_pairs_from_json(many)
    with pytest.raises(DragError) as error:
        parse_points("x" * 1_000_000 + ",1>2,2")  # a megabyte is not echoed back
    assert len(str(error.value)) < 300


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ("1" * 5000, "a number too long or nesting too deep"),
        ("[" * 100_000, "expected a JSON object of at most 10,000 characters"),
        ("[" * 9_000 + "]" * 9_000, "expected a JSON object of at most 10,000 characters"),
        ("[" * 4_000 + "]" * 4_000, "a number too long or nesting too deep"),
        (7, "expected a JSON object of at most 10,000 characters, got int"),
        ("[1, 2]", "give a JSON object"),
    ],
)
def test_settings_that_are_no_small_json_object_get_one_short_message(settings, words):
    from dragdiff.errors import DragError

    with pytest.raises(DragError, match=words) as error:
        app._json_object(settings)
    assert len(str(error.value)) < 200


def test_a_yaml_alias_bomb_in_a_settings_field_is_refused_without_expanding():
    from dragdiff.cli import parse_value
    from dragdiff.errors import DragError

    bomb = "\n".join(
        ["a: &a [x, x, x, x, x, x, x, x, x]"]
        + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    )
    assert len(bomb) < 600
    with pytest.raises(DragError, match="may not use YAML aliases"):
        parse_value(bomb)
    with pytest.raises(DragError, match="1,001 characters long; the limit is 1,000"):
        parse_value("1" * 1001)


def test_costly_settings_from_a_client_are_refused_and_an_api_edit_has_a_deadline(scene, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    path = tmp_path / "in.png"
    scene.save(path)

    def edit(**settings):
        with pytest.raises(gr.Error) as error:
            app.api_edit({"path": str(path)}, "40,48>60,48", None, "", "tiny", json.dumps({**FAST, **settings}))
        return str(error.value)

    assert "settings.resolution: 2048 is above the 1024 px a client may ask for" in edit(resolution=2048)
    assert "settings.compile_convolutions: set on the server" in edit(compile_convolutions=True)
    assert "a model has at most 17 blocks" in edit(feature_blocks=[1] * 1000)
    monkeypatch.setattr(app.SETTINGS, "edit_timeout", 0.0)
    assert "ran past this server's limit of 0 s per API call" in edit()
    assert not (tmp_path / "outputs").exists()  # nothing written for any of them
    widgets = app.panel_values("tiny", "dragdiffusion")
    widgets[app.PARAMS.index("resolution")] = 4096
    with pytest.raises(app.DragError, match="above the 1024 px"):
        app.config_from(widgets, "dragdiffusion", None, "tiny")


def test_a_refused_request_is_one_line_in_the_log(server, scene_png):
    before = server.log.read_text(errors="replace")
    reply = call(server.url, "edit", [scene_png, "x" * 1_000_000, None, "", "tiny", SETTINGS])
    assert reply.event == "error" and len(reply.message) <= 300
    added = server.log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in added and [line[:15] for line in added.splitlines()] == ["refused /edit: "]
    assert len(added) < 400  # not the megabyte that was sent


# -- 9. every endpoint that takes a file, in every request shape ------------------------------------------

FILE_ENDPOINTS = {  # endpoint -> its arguments with `f` as the client's file (or editor value of files)
    "edit": lambda f, scene: [f, "40,48>60,48", None, "", "tiny", SETTINGS],
    "edit mask": lambda f, scene: [scene, "40,48>60,48", f, "", "tiny", SETTINGS],
    "on_upload": lambda f, scene: [f],
    "on_reference_upload": lambda f, scene: [f],
    "load_saved": lambda f, scene: [f],
    "on_mask": lambda f, scene: [{"background": f, "layers": [f], "composite": f}],
    "on_reference_mask": lambda f, scene: [{"background": f, "layers": [f], "composite": f}],
}
SHAPES = ["path without meta", "path with meta", "plain string", "remote url", "data: url", "uploads/../"]
STATUS = app.DRAG.outputs.index(app.DRAG.status)
REPLY_SECONDS = 10.0  # each refused request is answered within this
MATRIX_MEMORY = 300 * 2**20  # and the whole matrix raises the server's peak memory by less than this


def file_in_shape(shape: str, target: Path, server) -> object:
    small = io.BytesIO()
    Image.new("RGB", (96, 96), "red").save(small, "PNG")
    return {
        "path without meta": {"path": str(target)},
        "path with meta": {"path": str(target), "meta": FILE_META},
        "plain string": str(target),
        "remote url": {"path": None, "url": "http://127.0.0.1:9/x.png", "meta": FILE_META},
        "data: url": {"path": None, "url": "data:image/png;base64," + base64.b64encode(small.getvalue()).decode()},
        "uploads/../": {"path": str(server.uploads / ".." / target.name), "meta": FILE_META},
    }[shape]


@pytest.fixture(scope="module")
def matrix(server):
    """The replies' times, checked against the memory bound and written to test-artifacts/hostile.json (the
    figures the README quotes) when the module ends."""
    start, seconds = peak_rss(server.process.pid), []
    yield seconds
    peak = peak_rss(server.process.pid)
    figures = {"cases": len(seconds), "slowest_reply_s": round(max(seconds, default=0), 3)}
    figures |= {"server_peak_rss_mb": round(peak / 2**20), "peak_growth_mb": round((peak - start) / 2**20, 1)}
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "hostile.json").write_text(json.dumps(figures, indent=2))
    assert peak - start < MATRIX_MEMORY, figures


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
def test_every_file_endpoint_in_every_request_shape(server, scene_png, earlier_result, matrix, endpoint, shape):
    """Another user's result named in each shape: nothing of it comes back, nothing is written, the reply is
    short and prompt, and the server still serves. (A data: URL is an upload in its own right: a small red
    square, which the upload endpoints may accept.)"""
    name = endpoint.split()[0]
    before = files_under(server.outputs) | files_under(server.uploads)
    reply = call(server.url, name, FILE_ENDPOINTS[endpoint](file_in_shape(shape, earlier_result, server), scene_png))
    matrix.append(reply.seconds)
    assert reply.seconds < REPLY_SECONDS
    # what the client reads: the error, or a handler's status line (the rest of its outputs are widget values)
    said = reply.data if reply.event == "error" else reply.data[STATUS]
    if isinstance(said, str):
        assert len(said) <= 300 and "\n" not in said and str(server.uploads) not in said, said
    else:
        assert said is None or said == {"__type__": "update"}, said  # Gradio's own refusal: no text at all
    written = (files_under(server.outputs) | files_under(server.uploads)) - before
    accepted = shape == "data: url" and name.endswith("upload")
    assert not written or accepted, written
    assert not any(p.is_relative_to(server.outputs) for p in written)
    if name == "on_upload" and reply.event == "complete":  # an accepted upload shows the red square, never the result
        assert "background" not in json.dumps(reply.data[EDITORS[name]]) or shape == "data: url"
    assert_serving(server)


def test_twenty_concurrent_edits_all_finish_and_the_page_answers(server, scene_png):
    from concurrent.futures import ThreadPoolExecutor

    settings = json.dumps({**FAST, "lora_steps": 0, "drag_steps": 2})
    with ThreadPoolExecutor(20) as pool:
        futures = [
            pool.submit(call, server.url, "edit", [scene_png, f"40,48>{50 + i},48", None, "", "tiny", settings])
            for i in range(20)
        ]
        pages = [get(server.url)[1] for _ in range(10)]
        replies = [f.result() for f in futures]
    assert all(r.event == "complete" for r in replies), [r.message for r in replies if r.event != "complete"]
    assert max(pages) < 5.0  # the page keeps answering while the edits queue
    assert_serving(server)


# -- 5-7 through the server: each refused before any model work, in one short line ----------------------


def strip_png(server) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 1000)).save(buffer, "PNG")  # 64,000 pixels, 15.6:1
    return {"path": upload(server.url, buffer.getvalue(), "strip.png"), "meta": FILE_META}


def session_file(server, pairs: int) -> dict:
    data = {"format": "dragdiff-session", "version": 1, "image": {"path": "in.png"}, "mask": None, "prompt": ""}
    data |= {"model": "tiny", "config": {}, "points": [{"handle": [1, 1], "target": [2, 2]}] * pairs}
    return {"path": upload(server.url, json.dumps(data).encode(), "many.json"), "meta": FILE_META}


LIMITS = {  # case -> (endpoint, its arguments, words the one-line message holds)
    "an 8:1+ strip": ("edit", lambda s, scene: [strip_png(s), "4,4>8,8", None, "", "tiny", SETTINGS], "more than 8:1"),
    "101 point pairs": (
        "edit",
        lambda s, scene: [scene, "; ".join(["4,4>8,8"] * 101), None, "", "tiny", SETTINGS],
        "at most 100",
    ),
    "a megabyte of points": (
        "edit",
        lambda s, scene: [scene, "x" * 1_000_000, None, "", "tiny", SETTINGS],
        "expected exactly one '>'",
    ),
    "Arabic-Indic digits": (
        "edit",
        lambda s, scene: [scene, "٤٠,٤٨>60,48", None, "", "tiny", SETTINGS],
        "is not a number (digits 0-9",
    ),
    "a 5000-digit number": (
        "edit",
        lambda s, scene: [scene, "4,4>8,8", None, "", "tiny", "1" * 5000],
        "a number too long",
    ),
    "deep JSON": (
        "edit",
        lambda s, scene: [scene, "4,4>8,8", None, "", "tiny", "[" * 4000 + "]" * 4000],
        "nesting too deep",
    ),
    "settings as a number": ("edit", lambda s, scene: [scene, "4,4>8,8", None, "", "tiny", "7"], "give a JSON object"),
    "a 4096 px working size": (
        "edit",
        lambda s, scene: [scene, "4,4>8,8", None, "", "tiny", json.dumps({"resolution": 4096})],
        "above the 1024 px",
    ),
    "1000 feature blocks": (
        "edit",
        lambda s, scene: [scene, "4,4>8,8", None, "", "tiny", json.dumps({"feature_blocks": [1] * 1000})],
        "at most 17",
    ),
    "compiling from a client": (
        "edit",
        lambda s, scene: [scene, "4,4>8,8", None, "", "tiny", json.dumps({"compile_convolutions": True})],
        "set on the server",
    ),
    "a 100,000-character model": (
        "edit",
        lambda s, scene: [scene, "4,4>8,8", None, "", "x" * 100_000, SETTINGS],
        "is not offered by this server",
    ),
    "a session of 2,000 pairs": ("load_saved", lambda s, scene: [session_file(s, 2000)], "at most 100"),
}


@pytest.mark.parametrize("case", LIMITS)
def test_each_limit_is_refused_in_one_short_line_before_any_work(server, scene_png, matrix, case):
    name, arguments, words = LIMITS[case]
    data = arguments(server, scene_png)
    before = files_under(server.outputs)
    reply = call(server.url, name, data)
    matrix.append(reply.seconds)
    said = reply.data if reply.event == "error" else reply.data[STATUS]
    assert isinstance(said, str) and words in said, reply.message[:300]
    assert len(said) <= 300 and "\n" not in said and str(server.uploads) not in said
    assert reply.seconds < REPLY_SECONDS and files_under(server.outputs) == before
    assert_serving(server)
