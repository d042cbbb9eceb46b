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
from tests.support.browser import CHROMIUM, open_editor

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
    """Upload the disc and wait until the upload's events are done (the LoRA methods prepare in the background)."""
    editor.upload(DISC)
    editor.wait_status("Ready to drag", "No region painted")
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
    editor.page.wait_for_function("document.querySelectorAll('#points [role=gridcell]').length === 5")
    editor.page.wait_for_timeout(1000)
    assert editor.table_rows() == [["1", "40", "48", "70", "48"]]
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
