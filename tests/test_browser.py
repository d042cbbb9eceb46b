"""The app as a newcomer meets it, in a real browser (Debian chromium): one test per flow, each keeping a
screenshot per step under test-artifacts/browser/. The server runs the tiny model with few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragdiff.point_session import load_session
from tests.support.appserver import start_app
from tests.support.browser import CHROMIUM, open_editor, open_page

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "browser"
DISC = ROOT / "assets" / "examples" / "disc.png"  # 128×96, a red disc at (40, 48)
FAST = """\
lora_steps: 2
lora_batch_size: 2
n_inference_steps: 10
n_inversion_steps: 7
drag_steps: 3
gooddrag: {lora_steps: 2, lora_batch_size: 2, n_inference_steps: 10, n_inversion_steps: 7, drag_end_step: 2}
dragon: {n_steps: 4}
"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install -y chromium); .ci/run does"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    (folder / "fast.yaml").write_text(FAST)
    running = start_app(folder / "outputs", folder / "cache", folder / "app.log", "--config", str(folder / "fast.yaml"))
    yield running
    running.stop()


@pytest.fixture
def editor(server, request):
    with open_editor(server.url, SHOTS, request.node.name) as opened:
        yield opened


def ready(editor) -> None:
    """Upload the disc and wait until the upload's events are done: tiny's default method, GoodDrag, prepares
    its LoRA in the background, and says so in the status line when it is ready."""
    editor.upload(DISC)
    editor.wait_status("Ready to drag")
    editor.page.wait_for_timeout(1000)


def test_the_page_says_which_model_runs_and_the_log_too(server, editor):
    note = editor.page.locator("#model-note").inner_text()
    assert "tiny: random weights" in note
    assert "dragdiff: model tiny: random weights" in server.log.read_text()
    editor.shot("start")


def test_upload_paint_points_drag_download(editor, tmp_path):
    ready(editor)
    editor.shot("1-uploaded")
    assert editor.page.locator("#upload img").count() == 1  # "1 · Image" shows what is edited
    editor.paint(0.15, 0.7, 0.35, 0.65)
    editor.wait_status("Editable region")
    for x, y in [(40, 48), (70, 48)]:  # right after painting: no click may be lost
        editor.click_image(x, y, 128)
    editor.wait_rows([["1", "40", "48", "70", "48"]])
    editor.shot("2-points")
    assert "Done in" in editor.drag()
    editor.shot("3-result")
    assert editor.page.locator("#result button[aria-label='Download']").count() == 0  # only the real file
    with editor.page.expect_download() as download:
        editor.page.locator("#download a").first.click()
    target = tmp_path / "downloaded.png"
    download.value.save_as(target)
    session = load_session(target)
    assert Image.open(target).size == (128, 96)
    assert [[round(v) for v in p.as_list()] for p in session.handles + session.targets] == [[40, 48], [70, 48]]
    assert session.mask is not None and session.mask.any()


def test_an_example_fills_every_part_of_the_editor(editor, server):
    logged = len(server.log.read_text())
    editor.page.get_by_text("move-a-shape.json").first.click()
    editor.wait_status("Session loaded")
    editor.page.wait_for_timeout(1000)
    assert editor.page.locator("#upload img").count() == 1 and len(editor.table_rows()) == 1
    assert editor.page.locator("#load a").count() == 0  # the loader is free for the next file
    # No handler's reply refused by Gradio: the emptied loader's reply once was, and every output showed "Error"
    assert "Traceback" not in server.log.read_text()[logged:]
    editor.shot("loaded")


def test_a_click_while_the_canvas_picture_loads_is_kept(editor):
    ready(editor)
    held: list = []  # the canvas's new pictures, held back: the browser is loading one at the second click
    editor.page.route("**/file=**", lambda route: route.continue_() if held is None else held.append(route))
    editor.click_image(40, 48, 128)
    editor.page.wait_for_function("document.querySelector('#canvas img')?.naturalWidth === 0")
    editor.click_image(70, 48, 128)
    editor.page.wait_for_timeout(1000)
    waiting, held = held, None
    for route in waiting:
        route.continue_()
    editor.wait_rows([["1", "40", "48", "70", "48"]])
    editor.page.wait_for_timeout(2000)
    editor.shot("both-clicks")


def test_undo_leaves_blank_targets_and_a_bad_cell_is_refused(editor):
    ready(editor)
    for x, y in [(40, 48), (70, 48)]:
        editor.click_image(x, y, 128)
    editor.wait_rows([["1", "40", "48", "70", "48"]])
    editor.page.locator("#undo").click()
    editor.wait_rows([["1", "40", "48", "", ""]])
    editor.shot("1-undone")
    editor.click_image(70, 48, 128)
    editor.wait_rows([["1", "40", "48", "70", "48"]])
    cell = editor.page.locator("#points [role=gridcell]").nth(1)
    cell.dblclick()
    editor.page.keyboard.press("Control+A")
    editor.page.keyboard.type("abc")
    editor.page.keyboard.press("Enter")
    editor.wait_status("is not a number")
    editor.wait_rows([["1", "40", "48", "70", "48"]])  # the points that stay, which Drag uses
    editor.shot("2-bad-cell")


def test_a_bad_upload_says_why_in_the_status_and_the_next_upload_works(editor, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    editor.upload(bad)
    status = editor.wait_status("cannot be read as an image")
    page_text = editor.page.locator("body").inner_text()
    assert "notes.png" in status and "/tmp" not in page_text and "Could not" not in page_text
    assert editor.page.locator(".error").count() == 0  # no component left in Gradio's error state
    editor.page.wait_for_timeout(2000)
    assert "cannot be read as an image" in editor.status()  # and the status line keeps saying it
    editor.shot("1-refused")
    ready(editor)
    editor.shot("2-next-upload")


def test_sessions_save_load_and_a_result_png_restores_its_session(editor, server, tmp_path):
    ready(editor)
    logged = len(server.log.read_text())
    editor.choose("#method", "Inpaint4Drag")
    editor.paint(0.15, 0.7, 0.35, 0.65)
    editor.wait_status("Editable region")
    for x, y in [(40, 48), (60, 48)]:
        editor.click_image(x, y, 128)
    editor.wait_status("Warp preview")
    editor.shot("1-preview")
    assert "Done in" in editor.drag()
    with editor.page.expect_download() as download:
        editor.page.locator("#download a").first.click()
    result = tmp_path / "result.png"
    download.value.save_as(result)
    editor.page.get_by_text("Sessions", exact=True).click()
    editor.page.locator("#save").click()
    editor.page.wait_for_selector("#saved a", timeout=30_000)
    with editor.page.expect_download() as download:
        editor.page.locator("#saved a").first.click()
    download.value.save_as(tmp_path / "session.json")
    saved = json.loads((tmp_path / "session.json").read_text())
    assert saved["format"] == "dragdiff-inpaint4drag-session" and len(saved["points"]) == 1
    editor.page.locator("#clear-points").click()
    editor.page.wait_for_timeout(1000)
    editor.upload(result, "#load")
    editor.wait_status("Session loaded: 1 point pair")
    editor.wait_rows([["1", "40", "48", "60", "48"]])
    assert editor.page.locator("#load a").count() == 0
    editor.page.wait_for_timeout(1000)
    assert "Traceback" not in server.log.read_text()[logged:]
    editor.shot("2-restored")


def test_a_reload_lists_this_browsers_results_and_a_new_browser_none(server, editor):
    ready(editor)
    editor.choose("#method", "DragonDiffusion")
    editor.choose("#mode", "move")
    editor.paint(0.2, 0.42, 0.35, 0.65)
    editor.wait_status("Editable region")
    for x, y in [(40, 48), (70, 48)]:
        editor.click_image(x, y, 128)
    editor.wait_rows([["1", "40", "48", "70", "48"]])
    assert "Done in" in editor.drag()
    editor.shot("1-dragon-move")
    editor.page.reload(wait_until="load")
    editor.wait_status("most recent result")
    assert editor.page.locator("#history img").count() >= 1 and editor.page.locator("#download a").count() == 1
    editor.shot("2-reloaded")
    other = open_page(editor.page.context.browser, server.url)  # another browser: its own local storage
    other.wait_for_timeout(1000)
    assert other.locator("#history img").count() == 0 and "most recent" not in other.locator("#status").inner_text()


def test_stop_ends_a_dragdiffusion_run_and_the_next_one_finishes(editor):
    ready(editor)
    editor.choose("#method", "DragDiffusion")
    editor.page.get_by_text("Advanced settings").click()
    steps = editor.page.get_by_label("drag steps", exact=True)
    steps.fill("2000")
    steps.press("Tab")
    for x, y in [(40, 48), (70, 48)]:
        editor.click_image(x, y, 128)
    editor.wait_rows([["1", "40", "48", "70", "48"]])
    editor.page.locator("#run").click()
    editor.wait_status("dragging")
    editor.page.locator("#stop").click()
    assert "Stopped during dragging" in editor.wait_status("Stopped")
    editor.shot("1-stopped")
    steps.fill("3")
    steps.press("Tab")
    assert "Done in" in editor.drag()  # the next run works
    editor.shot("2-dragdiffusion-done")


def test_wide_results_are_shown_whole_in_the_gallery(editor, tmp_path):
    wide = tmp_path / "wide.png"
    picture = np.zeros((64, 256, 3), np.uint8)
    picture[:, :, 1] = 120
    picture[20:44, 30:60] = (230, 30, 30)
    Image.fromarray(picture).save(wide)
    editor.upload(wide)
    editor.wait_status("Ready to drag")
    editor.page.wait_for_timeout(1000)
    editor.choose("#method", "Inpaint4Drag")
    editor.paint(0.15, 0.6, 0.46, 0.54, rows=3)  # the wide picture fills the middle of the editor's height
    editor.wait_status("Editable region")
    for x, y in [(45, 32), (90, 32)]:
        editor.click_image(x, y, 256)
    editor.wait_status("Warp preview")
    assert "Done in" in editor.drag()
    editor.page.wait_for_timeout(1000)
    thumb = editor.page.locator("#history img").first
    fit = thumb.evaluate("img => getComputedStyle(img).objectFit")
    box, frame = thumb.bounding_box(), editor.page.locator("#history").bounding_box()
    inside = frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"] + 1
    assert fit == "contain" and inside, (fit, box, frame)  # scaled to fit, and no part cut off below
    editor.shot("gallery")
