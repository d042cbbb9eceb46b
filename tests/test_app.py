"""The Gradio app: handlers as plain functions, the API through gradio_client, and a real browser."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import app
from app import DRAG
from dragdiff.config import resolve_config
from dragdiff.coords import Display
from dragdiff.drag import DragConfig
from dragdiff.point_session import load_session

ROOT = Path(__file__).resolve().parent.parent
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
    shown = app.on_click(state, "dragdiffusion", "drag", at(state.image, x, y))
    return shown[DRAG.state], shown[DRAG.canvas], shown[DRAG.table]


def test_clicks_map_to_image_pixels_and_alternate(loaded):
    state, shown, table = click(loaded, 40, 48)
    state, shown, table = click(state, 70, 48)
    assert state.clicks == [[40.0, 48.0], [70.0, 48.0]]
    assert shown.size == (640, 480)  # shown large, at the image's aspect ratio
    assert table == [[1, 40.0, 48.0, 70.0, 48.0]]
    assert np.asarray(shown)[242, 202].tolist() == [230, 40, 40]  # the red handle dot at image pixel (40, 48)


def test_the_loader_emptied_after_a_load_changes_nothing(loaded):
    """Gradio takes a dict as outputs only when it is not empty: `{}` made every output of the page show Error."""
    for emptied in (None, ""):
        assert app.load_saved(emptied, loaded) == {DRAG.state: loaded}


def test_drag_takes_the_region_the_editor_shows_though_its_last_change_event_is_still_queued(loaded):
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[30:60, 20:90] = (255, 210, 60, 0x99)
    painted = {"background": None, "layers": [layer], "composite": None}
    state = app.on_drag_pressed(painted, loaded)[DRAG.state]
    assert state.mask.sum() == 30 * 70
    assert app.on_mask(painted, state) == {DRAG.state: state}  # the late event: nothing left to change


def test_undo_clear_and_table_edits_say_what_comes_next(loaded):
    """The status line follows the points: a warning about points that are gone does not stay."""
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    shown = app.on_undo(state, "dragdiffusion", "drag")
    assert shown[DRAG.state].clicks == [[40.0, 48.0]] and shown[DRAG.table] == [[1, 40.0, 48.0, "", ""]]
    assert shown[DRAG.status] == "Handle 1: now click where it should go."
    shown = app.on_table([[1, 40, 48, 60, 50], [2, 10, 10, 20, 20]], state, "dragdiffusion", "drag")
    assert shown[DRAG.state].clicks == [[40, 48], [60, 50], [10, 10], [20, 20]]
    assert shown[DRAG.status] == "2 handle → target pairs: press Drag, or click another handle."
    cleared = app.on_clear(shown[DRAG.state], "dragdiffusion", "drag")
    assert cleared[DRAG.state].clicks == [] and cleared[DRAG.status].startswith("No points: click a handle")
    moved = app.on_undo(replace(state, clicks=[[40.0, 48.0], [60.0, 48.0], [5.0, 5.0]]), "dragon", "move")
    assert moved[DRAG.status] == "The arrow is set: press Drag (a new click starts another)."


def test_run_with_an_odd_number_of_points_explains_and_does_nothing(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state, _, _ = click(loaded, 40, 48)
    updates = list(app.run(state, "", "tiny", "dragdiffusion", "drag", 1.0, *widget_values(**FAST)))
    assert len(updates) == 1 and "has no target" in updates[0][DRAG.status]
    assert not (tmp_path / "outputs").exists()


def test_run_without_an_image_explains(tmp_path):
    updates = list(app.run(app.new_state(), "", "tiny", "dragdiffusion", "drag", 1.0, *widget_values(**FAST)))
    assert "Upload an image" in updates[0][DRAG.status]


def test_a_finished_edit_is_saved_automatically_with_its_session(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    updates = list(app.run(state, "a red disc", "tiny", "dragdiffusion", "drag", 1.0, *widget_values(**FAST)))
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
    # "Edit this result" makes it the new input, shown in "1 · Image" too; the history stays
    again = app.edit_result(final_state)
    state = again[DRAG.state]
    assert state.image.size == loaded.image.size and state.clicks == [] and state.history == history
    assert np.array_equal(np.asarray(again[DRAG.upload]), np.asarray(Image.open(saved[0])))


def test_session_save_and_load_round_trip(loaded, tmp_path):
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    mask = np.zeros((96, 128), bool)
    mask[30:60, 20:90] = True
    state = replace(state, mask=mask)
    saved = app.save_current(state, "a red disc", "tiny", "dragdiffusion", "drag", 1.0, *widget_values(drag_steps=33))
    path = saved[DRAG.saved]
    assert "Session saved" in saved[DRAG.status]
    pointless = app.save_current(replace(state, clicks=[]), "", "tiny", "dragdiffusion", "drag", 1.0, *widget_values())
    assert (
        pointless[DRAG.saved] is None
        and "click at least one handle and its target, then save" in pointless[DRAG.status]
    )
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


def test_a_refused_upload_keeps_the_image_and_says_why_without_server_paths(loaded, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    shown = app.on_upload(str(bad), loaded)
    status = shown[DRAG.status]
    assert "broken.png' cannot be read as an image" in status and str(tmp_path) not in status
    assert shown[DRAG.state].image is loaded.image and shown[DRAG.upload].size == loaded.image.size
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny)
    status = app.on_upload(str(tiny), loaded)[DRAG.status]
    assert status.startswith("⚠️") and "dot.png" in status and str(tmp_path) not in status
    assert app.message(f"cannot read {tmp_path}/x.png: no") == "cannot read x.png: no"  # no folder named
    assert len(app.message("x" * 5000)) == 300 and "\n" not in app.message("one\ntwo")


def test_a_new_image_forgets_the_old_prompt_points_and_region_and_shows_itself(loaded, tmp_path):
    state = replace(click(click(loaded, 40, 48)[0], 70, 48)[0], mask=np.ones((96, 128), bool))
    path = tmp_path / "next.png"
    Image.new("RGB", (64, 64), "white").save(path)
    shown = app.on_upload(str(path), state)
    assert shown[DRAG.prompt] == "" and shown[DRAG.table] == [] and shown[DRAG.upload].size == (64, 64)
    assert shown[DRAG.state].clicks == [] and shown[DRAG.state].mask is None
    assert DRAG.state not in app.on_upload(None, state)  # × on the upload box changes nothing


def test_a_bad_table_cell_is_refused_and_the_table_shows_the_points_that_stay(loaded):
    state = click(click(loaded, 40, 48)[0], 70, 48)[0]
    shown = app.on_table([[1, "abc", 48, 70, 48]], state, "dragdiffusion", "drag")
    assert "'abc' is not a number" in shown[DRAG.status] and shown[DRAG.state].clicks == state.clicks
    assert shown[DRAG.table] == [[1, 40.0, 48.0, 70.0, 48.0]]


def test_a_method_with_nothing_to_prepare_leaves_the_status_line_as_it_is(loaded):
    import gradio as gr

    for state, method in [(app.new_state(), "gooddrag"), (loaded, "inpaint4drag")]:
        values = app.panel_values("tiny", method)
        assert list(app.prepare(state, "", "tiny", method, "drag", 1.0, *values)) == [{DRAG.status: gr.skip()}]


def test_help_texts_show_plain_percent_signs():
    for method in app.PANEL_CONFIGS:
        assert not any("%%" in text for text in app.panel_help(method).values())


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


def test_api_errors_name_the_file_but_not_where_the_server_keeps_it(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    client = Client(server.url, verbose=False)
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(notes)), "40,48>60,48", None, "", "tiny", "{}", api_name="/edit")
    assert "image file 'notes.png' cannot be read as an image" in str(error.value)
    assert "/" not in str(error.value).split("notes.png")[0]  # no folder before the name


def test_api_edit_returns_an_image_of_the_input_size(server, scene, tmp_path):
    from gradio_client import Client, handle_file

    path = tmp_path / "in.png"
    scene.resize((150, 100)).save(path)
    client = Client(server.url, verbose=False)
    result = client.predict(handle_file(str(path)), "40,48>60,48", None, "", "tiny", json.dumps(FAST), api_name="/edit")
    assert Image.open(result).size == (150, 100)
    assert len(list(server.outputs.rglob("*.png"))) >= 1  # and it was saved on the server


def test_stop_ends_the_run_cleanly_and_the_next_run_works(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state, _, _ = click(click(loaded, 40, 48)[0], 70, 48)
    values = widget_values(**{**FAST, "drag_steps": 200, "stop_distance": 0.0})
    updates = []
    for update in app.run(state, "", "tiny", "dragdiffusion", "drag", 1.0, *values):
        updates.append(update)
        if "dragging" in update[DRAG.status]:
            app.on_stop(state)  # what the Stop button does, mid-drag
    assert "Stopped during dragging" in updates[-1][DRAG.status]
    plain = np.asarray(app.overlay(state.image, state.clicks, state.mask))
    assert any(DRAG.canvas in u and not np.array_equal(u[DRAG.canvas], plain) for u in updates)  # tracked rings
    assert np.array_equal(updates[-1][DRAG.canvas], plain)  # gone once stopped
    assert not (tmp_path / "outputs").exists()  # nothing half-written
    finished = list(app.run(state, "", "tiny", "dragdiffusion", "drag", 1.0, *widget_values(**FAST)))
    assert "Done" in finished[-1][DRAG.status] and len(list((tmp_path / "outputs").rglob("*.png"))) == 1
    assert np.array_equal(finished[-1][DRAG.canvas], plain) and "to go" not in finished[-1][DRAG.status]


def test_a_reloaded_page_lists_this_browsers_results_and_no_one_elses(scene, disc, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    monkeypatch.setattr(app.SETTINGS, "model", "tiny")
    first = app.on_page_load(None, app.new_state())  # a new browser gets a random id to keep
    user = first[DRAG.user]
    assert len(user) == 32 and first[DRAG.state].user == user and DRAG.history not in first
    state = replace(dragon_loaded(scene, tmp_path, disc), user=user)
    state = click(click(state, 40, 48)[0], 60, 48)[0]
    values = app.panel_values("tiny", "inpaint4drag")
    mine = [list(app.run(state, "", "tiny", "inpaint4drag", "drag", 1.0, *values))[-1][DRAG.download] for _ in "12"]
    other = replace(state, user="b" * 32)
    list(app.run(other, "", "tiny", "inpaint4drag", "drag", 1.0, *values))
    reloaded = app.on_page_load(user, app.new_state())
    assert reloaded[DRAG.history] == mine[::-1] and reloaded[DRAG.download] == mine[-1] and reloaded[DRAG.user] == user
    assert reloaded[DRAG.state].result == mine[-1] and "2 most recent" in reloaded[DRAG.status]
    assert app.edit_result(reloaded[DRAG.state])[DRAG.state].image.size == scene.size  # and they can be edited
    for forged in ("../" + "b" * 29, "B" * 32, 7):  # not an id this app made: a new one, nothing listed
        shown = app.on_page_load(forged, app.new_state())
        assert shown[DRAG.user] not in (forged, "b" * 32) and DRAG.history not in shown


# -- DragonDiffusion in the same editor ---------------------------------------------------------------------


def dragon_loaded(scene, tmp_path, disc):
    path = tmp_path / "in.png"
    scene.save(path)
    shown = app.on_upload(str(path), app.new_state())
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[disc] = (255, 45, 155, 255)  # the brush stroke over the object
    return app.on_mask({**shown[DRAG.editor], "layers": [layer]}, shown[DRAG.state])[DRAG.state]


def dragon_click(state, mode, x, y):
    return app.on_click(state, "dragon", mode, at(state.image, x, y))[DRAG.state]


def dragon_values(mode, **changes):
    """The Advanced panel's values for DragonDiffusion's `mode` on tiny, with `changes` typed into it."""
    values = app.panel_values("tiny", "dragon", mode)
    return [changes.get(name, value) for name, value in zip(app.PARAMS, values, strict=True)]


def dragon_run(state, mode, scale, prompt="", **changes):
    return list(app.run(state, prompt, "tiny", "dragon", mode, scale, *dragon_values(mode, **changes)))


def dragon_status(state, mode, scale, **changes):
    """The first status line of a DragonDiffusion run: where a refused one explains itself."""
    return next(app.run(state, "", "tiny", "dragon", mode, scale, *dragon_values(mode, **changes)))[DRAG.status]


@pytest.fixture
def disc():
    yy, xx = np.mgrid[0:96, 0:128]
    return (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2


def test_dragon_moves_with_an_arrow_saves_and_reloads_the_session(scene, disc, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state = dragon_loaded(scene, tmp_path, disc)
    assert np.array_equal(state.mask, disc)
    state = dragon_click(dragon_click(state, "move", 40, 48), "move", 70, 40)
    assert state.clicks == [[40.0, 48.0], [70.0, 40.0]]
    assert dragon_click(replace(state), "move", 5, 5).clicks == [[5.0, 5.0]]  # a third click starts a new arrow
    updates = dragon_run(state, "move", 1.0, "a red disc", n_steps=5)
    assert any("guided sampling" in u[DRAG.status] for u in updates)  # progress per stage
    download, history = updates[-1][DRAG.download], updates[-1][DRAG.history]
    assert "Done" in updates[-1][DRAG.status] and history == [download] and Image.open(download).size == scene.size
    loaded = app.load_saved(download, app.new_state())
    restored, method, mode = loaded[DRAG.state], loaded[DRAG.method], loaded[DRAG.mode]["value"]
    assert (method, mode, loaded[DRAG.scale]["value"]) == ("dragon", "move", 1.0) and loaded[DRAG.load] is None
    assert loaded[DRAG.widgets[app.PARAMS.index("n_steps")]]["value"] == 5 and "Session loaded" in loaded[DRAG.status]
    assert restored.clicks == [[40.0, 48.0], [70.0, 40.0]] and np.array_equal(restored.mask, disc)
    again = dragon_run(restored, mode, 1.0, "a red disc", n_steps=5)
    assert "Done" in again[-1][DRAG.status]  # as loaded


def test_a_resize_is_saved_and_restored_as_a_resize(scene, disc, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state = dragon_loaded(scene, tmp_path, disc)
    *_, last = dragon_run(state, "resize", 1.5, n_steps=3)
    assert json.loads(Path(last[DRAG.download]).with_suffix(".json").read_text())["mode"] == "resize"
    loaded = app.load_saved(last[DRAG.download], app.new_state())
    assert (loaded[DRAG.mode]["value"], loaded[DRAG.scale]["value"]) == ("resize", 1.5)


def test_dragon_explains_what_is_missing_and_writes_nothing(scene, disc, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    empty = app.new_state()
    assert "Upload an image" in dragon_status(empty, "move", 1.0)
    state = dragon_loaded(scene, tmp_path, disc)
    assert "click on the object, then where it should go" in dragon_status(state, "move", 1)
    assert "upload a reference image" in dragon_status(state, "paste", 1)
    assert "has no target yet" in dragon_status(dragon_click(state, "drag", 40, 48), "drag", 1)
    far = dragon_click(dragon_click(state, "resize", 40, 48), "resize", 127, 95)
    assert "scale: 9.0 is out of range" in dragon_status(far, "resize", 9.0)
    assert "variant" in dragon_status(far, "resize", 1.0, variant="fast")
    assert not (tmp_path / "outputs").exists()
    # a page may not make the server open its files: the panel's image prompt is the server's (none here)
    probe = app.config_from(dragon_values("move", image_prompt="/etc/hostname"), "dragon", "move", "tiny")
    assert probe.image_prompt is None


def test_dragon_uses_the_image_prompt_the_app_was_started_with(scene, disc, tmp_path, monkeypatch):
    from dragdiff.models import load_model
    from tests.support.image_prompt import save_image_prompt

    adapter = save_image_prompt(load_model("tiny", device="cpu").unet, tmp_path / "ip")
    args = app.build_parser().parse_args(["--image-prompt", str(adapter)])
    monkeypatch.setattr(app.SETTINGS, "image_prompt", args.image_prompt)
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    state = dragon_click(dragon_click(dragon_loaded(scene, tmp_path, disc), "move", 40, 48), "move", 60, 48)
    assert dragon_values("move")[app.PARAMS.index("image_prompt")] == str(adapter)  # the panel shows it
    *_, last = dragon_run(state, "move", 1.0, n_steps=5)
    assert "Done" in last[DRAG.status]
    loaded = app.load_saved(last[DRAG.download], app.new_state())
    assert loaded[DRAG.widgets[app.PARAMS.index("image_prompt")]]["value"] == str(adapter)  # the session names it


def test_each_method_and_mode_shows_its_inputs_and_keeps_the_points(scene, disc, tmp_path):
    state = dragon_loaded(scene, tmp_path, disc)
    for x, y in [(40, 48), (60, 48), (10, 10), (20, 20)]:
        state = click(state, x, y)[0]
    for method, mode, reference, scale in [
        ("dragdiffusion", "move", False, False),
        ("dragon", "move", False, False),
        ("dragon", "resize", False, True),
        ("dragon", "paste", True, True),
        ("dragon", "appearance", True, False),
    ]:
        shown = app.on_method("tiny", method, mode, state)
        assert shown[DRAG.reference_row]["visible"] is reference and shown[DRAG.scale]["visible"] is scale
        assert shown[DRAG.mode]["visible"] is (method == "dragon") and DRAG.state not in shown  # points kept
        own = {f.name for f in fields(app.PANEL_CONFIGS[method])}
        assert {n for w, n in zip(DRAG.widgets, app.PARAMS, strict=True) if shown[w]["visible"]} == own
        editable = {n for w, n in zip(DRAG.widgets, app.PARAMS, strict=True) if shown[w]["interactive"]}
        assert editable == set(app.PARAMS) - set(app.SERVER_ONLY)  # the server's own fields are shown, not set
    assert (
        "uses the first arrow (pair 1); the other points stay"
        in app.on_method("tiny", "dragon", "move", state)[DRAG.instructions]
    )
    assert app.on_method("tiny", "dragon", "drag", state)[DRAG.instructions] == app.DRAGON_HELP["drag"]


def test_refine_finds_the_object_and_painting_more_keeps_it(scene, disc, tmp_path):
    box = np.zeros_like(disc)
    box[28:69, 20:61] = True  # a rectangle drawn around the disc
    state = dragon_loaded(scene, tmp_path, box)
    shown = app.on_refine(state)
    mask = shown[DRAG.state].mask
    assert (mask & disc).sum() / (mask | disc).sum() > 0.9 and "Object found" in shown[DRAG.status]
    # the editor now shows the refined region in its picture; its next change (no layer) keeps it
    kept = app.on_mask(shown[DRAG.editor], shown[DRAG.state])[DRAG.state]
    assert np.array_equal(kept.mask, mask)
    empty = replace(state, mask=None)
    assert "Paint roughly over the object" in app.on_refine(empty)[DRAG.status]
