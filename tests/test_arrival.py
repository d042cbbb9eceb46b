"""The outcome check looks in the result image: a disc that moved is found at its target, one that stayed is
found where it was, and both tabs and the CLI say which. The demo model's features (the tiny model's are
random) do the matching; a method's final image is swapped for a constructed success or failure."""

import json

import numpy as np
import pytest
from PIL import Image

import app
from app import DRAG
from dragdiff import Point, Runtime, lora_drag
from dragdiff.arrival import arrival_threshold, image_check
from dragdiff.cli import main
from dragdiff.dragon import method as dragon_method
from dragdiff.point_session import load_session
from tests.conftest import FAST
from tests.test_cli import FAST_FLAGS

pytestmark = pytest.mark.usefixtures("one_thread")

HANDLE, TARGET = Point(40, 48), Point(64, 48)


def disc_at(x: float) -> Image.Image:
    """The tests' scene (a red disc on a gradient) with the disc centred at (x, 48)."""
    yy, xx = np.mgrid[0:96, 0:128]
    image = np.stack([xx / 127 * 200, yy / 95 * 150 + 50, np.full_like(xx, 90.0)], axis=-1)
    image[(xx - x) ** 2 + (yy - 48) ** 2 < 15**2] = (250, 40, 40)
    return Image.fromarray(image.astype(np.uint8))


MOVED, STAYED = disc_at(TARGET.x), disc_at(HANDLE.x)  # a naive warp of the disc onto its target; no edit


@pytest.fixture
def runtime(tmp_path):
    return Runtime("demo", cache_dir=str(tmp_path))


def test_a_moved_disc_is_found_at_its_target_and_an_unmoved_one_where_it_was(runtime):
    (moved,) = image_check(runtime, STAYED, MOVED, (HANDLE,), (TARGET,), "", 0.05)
    assert moved.arrived and moved.distance_px <= 3 and abs(moved.found.x - TARGET.x) <= 3
    (stayed,) = image_check(runtime, STAYED, STAYED, (HANDLE,), (TARGET,), "", 0.05)
    assert not stayed.arrived and abs(stayed.found.x - HANDLE.x) <= 3
    assert stayed.distance_px > arrival_threshold(STAYED.size, 0.05) == pytest.approx(4.8)  # 5% of 96 px
    assert runtime.counts["dift_cached"] == 1  # the original's features were computed once


def test_a_half_way_move_is_measured_not_rounded(runtime):
    (half,) = image_check(runtime, STAYED, disc_at(52), (HANDLE,), (TARGET,), "", 0.05)
    assert not half.arrived and 6 <= half.distance_px <= 18


@pytest.fixture(params=["moved", "stayed"])
def outcome(request, monkeypatch):
    """Each method's last image replaced by the constructed success or failure."""
    picture = MOVED if request.param == "moved" else STAYED
    for module in (lora_drag, dragon_method):
        monkeypatch.setattr(module, "keep_unpainted", lambda *args, picture=picture: picture.copy())
    return request.param


def expected_words(outcome: str) -> str:
    return "point 1: arrived" if outcome == "moved" else "point 1: content"


def test_the_drag_tab_says_per_point_what_the_picture_shows(outcome, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    mask = np.zeros((96, 128), bool)
    mask[20:76, 10:100] = True  # something painted: the result goes through keep_unpainted
    state = app.new_state().fresh(image=STAYED, clicks=[[40.0, 48.0], [64.0, 48.0]], mask=mask)
    values = app.panel_values("demo")
    values = [FAST.get(name, value) for name, value in zip(app.PARAMS, values, strict=True)]
    *_, last = app.run(state, "", "demo", "dragdiffusion", "drag", 1.0, *values)
    status = last[DRAG.status]
    assert expected_words(outcome) in status and "latent point tracker" in status
    assert ("To get further, try more drag_steps" in status) == (outcome == "stayed")
    saved = load_session(last[DRAG.download]).image_check
    assert saved is not None and saved[0].arrived == (outcome == "moved")


def test_dragon_says_whether_the_moved_object_arrived(outcome, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    path = tmp_path / "in.png"
    STAYED.save(path)
    shown = app.on_upload(str(path), app.new_state())
    yy, xx = np.mgrid[0:96, 0:128]
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[(xx - 40) ** 2 + (yy - 48) ** 2 < 15**2] = (255, 45, 155, 255)
    state = app.on_mask({**shown[DRAG.editor], "layers": [layer]}, shown[DRAG.state])[DRAG.state]
    for x, y in ((40, 48), (64, 48)):
        at = [round(v) for v in app.Display(state.image.size).from_image(x, y)]
        state = app.on_click(state, "dragon", "move", app.SimpleNamespace(index=at))[DRAG.state]
    values = app.panel_values("demo", "dragon", "move")
    values[app.PARAMS.index("n_steps")] = 4
    *_, last = app.run(state, "", "demo", "dragon", "move", 1.0, *values)
    status = last[DRAG.status]
    assert expected_words(outcome) in status
    assert ("To get further, try a higher energy_scale" in status) == (outcome == "stayed")


def test_the_cli_writes_the_check_to_the_summary_and_says_it(outcome, tmp_path, capsys):
    STAYED.save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    flags = [f if f != "tiny" else "demo" for f in FAST_FLAGS]
    args = ["edit", "--image", str(tmp_path / "in.png"), "--points", "40,48>64,48", "--out", str(out), *flags]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    (check,) = summary["image_check"]
    assert check["arrived"] == (outcome == "moved") and set(check) == {"found", "distance_px", "arrived"}
    assert "tracker_reached_targets" in summary  # the tracker's verdict, under its own name
    assert expected_words(outcome) in capsys.readouterr().out
