"""The Gradio app: handlers as plain functions, the API through gradio_client, and a real browser."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import app
from app import DRAG, DRAGON
from dragdiff.config import resolve_config
from dragdiff.coords import Display
from dragdiff.drag import DragConfig
from dragdiff.point_session import load_session

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
FAST = dict(lora_steps=2, lora_batch_size=2, n_inference_steps=10, n_inversion_steps=7, drag_steps=3)


def widget_values(**changes):
    return app.panel_from(resolve_config(DragConfig, **changes), "tiny")


@pytest.fixture
def loaded(scene, tmp_path):
    path = tmp_path / "in.png"
    scene.save(path)
    return app.on_upload(str(path), app.new_state())[DRAG.state]


def at(image, x, y) -> SimpleNamespace:
    """A click on image pixel (x, y), as the browser reports it: in pixels of the displayed (scaled) picture."""
    return SimpleNamespace(index=[round(v) for v in Display(image.size).from_image(x, y)])


def click(state, x, y):
    shown = app.on_click(state, at(state.image, x, y))
    return shown[DRAG.state], shown[DRAG.canvas], shown[DRAG.table]


def test_clicks_map_to_image_pixels_and_alternate(loaded):
    state, shown, table = click(loaded, 40, 48)
    state, shown, table = click(state, 70, 48)
    assert state.clicks == [[40.0, 48.0], [70.0, 48.0]]
    assert shown.size == (640, 480)  # shown large, at the image's aspect ratio
    assert table == [[1, 40.0, 48.0, 70.0, 48.0]]
    assert np.asarray(shown)[242, 202].tolist() == [230, 40, 40]  # the red handle dot at image pixel (40, 48)


def test_undo_clear_and_table_edits(loaded):
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    shown = app.on_undo(state)
    assert shown[DRAG.state].clicks == [[40.0, 48.0]] and shown[DRAG.table] == [[1, 40.0, 48.0, "", ""]]
    state = app.on_table([[1, 40, 48, 60, 50], [2, 10, 10, 20, 20]], state)[DRAG.state]
    assert state.clicks == [[40, 48], [60, 50], [10, 10], [20, 20]]
    assert app.on_clear(state)[DRAG.state].clicks == []


def test_run_with_an_odd_number_of_points_explains_and_does_nothing(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state, _, _ = click(loaded, 40, 48)
    updates = list(app.run(state, "", "tiny", "dragdiffusion", *widget_values(**FAST)))
    assert len(updates) == 1 and "has no target" in updates[0][DRAG.status]
    assert not (tmp_path / "outputs").exists()


def test_run_without_an_image_explains(tmp_path):
    updates = list(app.run(app.new_state(), "", "tiny", "dragdiffusion", *widget_values(**FAST)))
    assert "Upload an image" in updates[0][DRAG.status]


def test_a_finished_edit_is_saved_automatically_with_its_session(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    updates = list(app.run(state, "a red disc", "tiny", "dragdiffusion", *widget_values(**FAST)))
    last = updates[-1]
    final_state, status, (before, after) = last[DRAG.state], last[DRAG.status], last[DRAG.result]
    download, history = last[DRAG.download], last[DRAG.history]
    saved = list((tmp_path / "outputs").rglob("*.png"))
    assert len(saved) == 1 and download == str(saved[0]) and history == [str(saved[0])]
    assert before.size == after.size == (640, 480)  # the before/after slider shows both large
    assert saved[0].with_suffix(".json").is_file() and "Done" in status
    session = load_session(saved[0])
    assert [p.as_list() for p in session.handles] == [[40.0, 48.0]] and session.prompt == "a red disc"
    assert Image.open(saved[0]).size == loaded.image.size
    # "Edit this result" makes it the new input; the history stays
    state = app.edit_result(final_state)[DRAG.state]
    assert state.image.size == loaded.image.size and state.clicks == [] and state.history == history


def test_session_save_and_load_round_trip(loaded, tmp_path):
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    mask = np.zeros((96, 128), bool)
    mask[30:60, 20:90] = True
    state = replace(state, mask=mask)
    path = app.save_current(state, "a red disc", "tiny", "dragdiffusion", *widget_values(drag_steps=33))
    uploaded = shutil.copy(path, tmp_path)  # downloaded, then uploaded again
    restored = app.load_saved(uploaded, app.new_state())
    new_state, editor, table = restored[DRAG.state], restored[DRAG.editor], restored[DRAG.table]
    assert new_state.clicks == [[40.0, 48.0], [70.0, 48.0]] and np.array_equal(new_state.mask, mask)
    assert (restored[DRAG.prompt], restored[DRAG.model]) == ("a red disc", "tiny")
    assert table == [[1, 40.0, 48.0, 70.0, 48.0]]
    assert restored[DRAG.widgets[app.PARAMS.index("drag_steps")]]["value"] == 33
    assert restored[DRAG.method] == "dragdiffusion"
    assert not restored[DRAG.widgets[app.PARAMS.index("drag_end_step")]]["visible"]  # GoodDrag's own field
    # The editor shows the restored mask tinted in its picture; painting more adds to it; Clear mask forgets it
    tinted = np.asarray(editor["composite"])
    assert (tinted[mask] != np.asarray(loaded.image.convert("RGB"))[mask]).any()
    stroke = np.zeros((96, 128, 4), np.uint8)
    stroke[80:90, 100:120] = 255
    painted = app.on_mask({"background": None, "layers": [stroke], "composite": None}, new_state)[DRAG.state]
    assert painted.mask.sum() == mask.sum() + 200 and painted.mask[mask].all()
    cleared = app.on_clear_mask(painted)
    assert cleared[DRAG.state].mask is None and cleared[DRAG.state].restored_mask is None
    assert cleared[DRAG.editor]["layers"] == []
    unpainted = app.on_mask({"background": None, "layers": [], "composite": None}, cleared[DRAG.state])
    assert unpainted[DRAG.state].mask is None


def test_a_bad_session_file_is_reported_not_raised(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dragdiff-session", "version": 9}')
    restored = app.load_saved(str(bad), app.new_state())
    assert "version" in restored[DRAG.status]


def test_upload_of_a_broken_file_is_reported(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    shown = app.on_upload(str(bad), app.new_state())
    assert shown[DRAG.state].image is None and shown[DRAG.editor] is None and "broken.png" in shown[DRAG.status]


# -- against the running app ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port, outputs = free_port(), tmp_path_factory.mktemp("outputs")
    config = outputs.parent / "fast.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in FAST.items()))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DRAGDIFF_CACHE": str(tmp_path_factory.mktemp("cache"))}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--model", "tiny", "--port", str(port), "--outputs", str(outputs)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the app did not start: " + process.stdout.read().decode()[-2000:])
    yield SimpleNamespace(url=url, outputs=outputs)
    process.terminate()
    process.wait(timeout=30)


def test_api_edit_returns_an_image_of_the_input_size(server, scene, tmp_path):
    from gradio_client import Client, handle_file

    path = tmp_path / "in.png"
    scene.resize((150, 100)).save(path)
    client = Client(server.url, verbose=False)
    result = client.predict(handle_file(str(path)), "40,48>60,48", None, "", "tiny", json.dumps(FAST), api_name="/edit")
    assert Image.open(result).size == (150, 100)
    assert len(list(server.outputs.rglob("*.png"))) >= 1  # and it was saved on the server


@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(),
    reason="Debian chromium is not installed (apt-get install -y chromium); .ci/run installs it in CI",
)
def test_browser_upload_click_paint_run_download(server, tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    flags = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(server.url, wait_until="load")
        page.locator("#upload input[type=file]").set_input_files(str(ROOT / "assets" / "examples" / "disc.png"))
        page.wait_for_function("document.querySelector('#canvas img') !== null", timeout=60_000)
        # Gradio covers an event's outputs while it runs: click once the upload's event has handed over to the
        # background preparation (its progress is in the status line)
        status_has = "['Preparing', 'Ready to drag'].some(s => document.querySelector('#status').innerText.includes(s))"
        page.wait_for_function(status_has, timeout=60_000)
        canvas = page.locator("#canvas img").first
        box = canvas.bounding_box()
        scale = box["width"] / 128  # the 128×96 example, shown at the column's width
        for x, y in [(40, 48), (70, 48)]:  # image pixels
            canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
            page.wait_for_timeout(800)
        # The background preparation (LoRA, inversion) reports in the same status line: let it finish first
        page.wait_for_function("document.querySelector('#status').innerText.includes('Ready to drag')", timeout=120_000)
        page.locator("#mask button[aria-label='Brush']").first.click()
        paint = page.locator("#mask canvas").first.bounding_box()
        page.mouse.move(paint["x"] + paint["width"] * 0.2, paint["y"] + paint["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(paint["x"] + paint["width"] * 0.7, paint["y"] + paint["height"] * 0.5, steps=10)
        page.mouse.up()
        page.wait_for_function(
            "document.querySelector('#status').innerText.includes('Editable region')", timeout=60_000
        )
        page.locator("#run").click()
        try:
            page.wait_for_function("document.querySelector('#download a') !== null", timeout=240_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "app-failed.png"), full_page=True)
            pytest.fail(
                f"no result; status: {page.locator('#status').inner_text()!r}; "
                f"points: {page.locator('#points').inner_text()!r}"
            )
        with page.expect_download() as download:
            page.locator("#download a").first.click()
        target = tmp_path / "downloaded.png"
        download.value.save_as(target)
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        browser.close()
    session = load_session(target)
    assert Image.open(target).size == (128, 96)
    assert [[round(v) for v in p.as_list()] for p in session.handles + session.targets] == [[40, 48], [70, 48]]
    assert session.mask is not None and session.mask.any()


def test_stop_ends_the_run_cleanly_and_the_next_run_works(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    values = widget_values(**{**FAST, "drag_steps": 200, "stop_distance": 0.0})
    updates = []
    for update in app.run(state, "", "tiny", "dragdiffusion", *values):
        updates.append(update)
        if "dragging" in update[DRAG.status]:
            app.on_stop(state)  # what the Stop button does, mid-drag
    assert "Stopped during dragging" in updates[-1][DRAG.status]
    assert not (tmp_path / "outputs").exists()  # nothing half-written
    finished = list(app.run(state, "", "tiny", "dragdiffusion", *widget_values(**FAST)))
    assert "Done" in finished[-1][DRAG.status] and len(list((tmp_path / "outputs").rglob("*.png"))) == 1


# -- the DragonDiffusion tab ------------------------------------------------------------------------------------


def dragon_loaded(scene, tmp_path, disc):
    path = tmp_path / "in.png"
    scene.save(path)
    shown = app.dragon_upload(str(path), app.new_dragon_state())
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[disc] = (255, 210, 60, 150)  # the brush stroke over the object
    return app.dragon_paint({**shown[DRAGON.editor], "layers": [layer]}, shown[DRAGON.state])[DRAGON.state]


def dragon_click(state, mode, x, y):
    return app.dragon_click_at(mode, state, at(state.image, x, y))[DRAGON.state]


def dragon_status(state, mode, scale, params=""):
    """The first status line of a DragonDiffusion run: where a refused one explains itself."""
    return next(app.dragon_run(state, mode, scale, "", "tiny", params))[DRAGON.status]


@pytest.fixture
def disc():
    yy, xx = np.mgrid[0:96, 0:128]
    return (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2


def test_dragon_tab_moves_with_an_arrow_saves_and_reloads_the_session(scene, disc, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state = dragon_loaded(scene, tmp_path, disc)
    assert np.array_equal(state.mask, disc)
    state = dragon_click(dragon_click(state, "move", 40, 48), "move", 70, 40)
    assert state.clicks == [[40.0, 48.0], [70.0, 40.0]]
    assert dragon_click(state, "move", 5, 5).clicks == [[5.0, 5.0]]  # a third click starts a new arrow
    updates = list(app.dragon_run(state, "move", 1.0, "a red disc", "tiny", "n_steps: 5"))
    assert any("guided sampling" in u[DRAGON.status] for u in updates)  # progress per stage
    download, history = updates[-1][DRAGON.download], updates[-1][DRAGON.history]
    assert "Done" in updates[-1][DRAGON.status] and history == [download] and Image.open(download).size == scene.size
    loaded = app.dragon_load(download, app.new_dragon_state())
    restored, mode, scale, params = (loaded[c] for c in (DRAGON.state, DRAGON.mode, DRAGON.scale, DRAGON.params))
    assert mode == "move" and scale == 1.0 and "n_steps: 5" in params and "Session loaded" in loaded[DRAGON.status]
    assert restored.clicks == [[40.0, 48.0], [70.0, 40.0]] and np.array_equal(restored.mask, disc)
    again = list(app.dragon_run(restored, mode, scale, "a red disc", "tiny", params))
    assert "Done" in again[-1][DRAGON.status]  # as loaded


def test_dragon_tab_explains_what_is_missing_and_writes_nothing(scene, disc, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    empty = app.new_dragon_state()
    assert "Upload an image" in dragon_status(empty, "move", 1.0)
    state = dragon_loaded(scene, tmp_path, disc)
    assert "click on the object, then where it should go" in dragon_status(state, "move", 1)
    assert "upload a reference image" in dragon_status(state, "paste", 1)
    assert "has no target yet" in dragon_status(dragon_click(state, "drag", 40, 48), "drag", 1)
    far = dragon_click(dragon_click(state, "resize", 40, 48), "resize", 127, 95)
    assert "scale: 9.0 is out of range" in dragon_status(far, "resize", 9.0)
    assert "parameters: write one" in dragon_status(far, "resize", 1.0, "- 3")
    assert "variant" in dragon_status(far, "resize", 1.0, "variant: fast")
    probe = "image_prompt: /etc/hostname"  # a page may not make the server open its files
    assert "chosen when the app starts (python app.py --image-prompt" in dragon_status(far, "resize", 1, probe)
    assert not (tmp_path / "outputs").exists()


def test_dragon_tab_uses_the_image_prompt_the_app_was_started_with(scene, disc, tmp_path, monkeypatch):
    from dragdiff.models import load_model
    from tests.support.image_prompt import save_image_prompt

    adapter = save_image_prompt(load_model("tiny", device="cpu").unet, tmp_path / "ip")
    args = app.build_parser().parse_args(["--image-prompt", str(adapter)])
    monkeypatch.setattr(app.SETTINGS, "image_prompt", args.image_prompt)
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state = dragon_click(dragon_click(dragon_loaded(scene, tmp_path, disc), "move", 40, 48), "move", 60, 48)
    *_, last = app.dragon_run(state, "move", 1.0, "", "tiny", "n_steps: 5")
    assert "Done" in last[DRAGON.status]
    params = app.dragon_load(last[DRAGON.download], app.new_dragon_state())[DRAGON.params]
    assert f"image_prompt: {json.dumps(str(adapter))}" in params  # the saved session names the weights used


def test_dragon_tab_shows_the_inputs_each_mode_needs(scene, disc, tmp_path):
    state = dragon_loaded(scene, tmp_path, disc)
    for mode, reference, scale in [("move", False, False), ("resize", False, True), ("paste", True, True)]:
        shown = app.dragon_mode(mode, state)
        assert shown[DRAGON.reference_row]["visible"] is reference and shown[DRAGON.scale]["visible"] is scale
        assert shown[DRAGON.instructions] == app.DRAGON_HELP[mode]


def test_dragon_tab_refines_a_rough_painting_to_the_object(scene, disc, tmp_path):
    box = np.zeros_like(disc)
    box[28:69, 20:61] = True  # a rectangle drawn around the disc
    state = dragon_loaded(scene, tmp_path, box)
    shown = app.dragon_refine(state)
    mask = shown[DRAGON.state].mask
    assert (mask & disc).sum() / (mask | disc).sum() > 0.9 and "Object found" in shown[DRAGON.status]
    empty = replace(state, mask=None)
    assert "Paint roughly over the object" in app.dragon_refine(empty)[DRAGON.status]
