"""Many users at once: 8 gradio_client users, each in its own thread with its own image,
points, mask and prompt, run edits at once against a real server on loopback (the tiny model). Half go the
way a browser does (upload, points table, Drag: per-user state on the server), half call the /edit API;
a ninth user keeps pressing its own Stop button meanwhile.

Every user gets byte for byte the file that the same edit gives alone (pixels and the session inside it:
nothing crosses users, and another user's Stop stops nothing), the queue tells waiting users their position,
and page loads keep answering. Run with --gpu-jobs 1 (edits wait in the queue) and --gpu-jobs 2 (two edits
share the one model at once).
"""

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from dragdiff.config import resolve_config
from dragdiff.drag import DragConfig
from dragdiff.drag.method import DragDiffusion
from dragdiff.images import load_image, load_mask
from dragdiff.models import load_model
from dragdiff.point_session import load_session
from dragdiff.session_io import save_result_png
from dragdiff.types import DragRequest
from dragdiff.validation import parse_points
from tests.support.appserver import get, start_app

USERS = 8
# Enough work per edit (~0.5-1 s) that 8 of them queue up; little enough for a CPU test.
SETTINGS = {"lora_steps": 2, "lora_batch_size": 1, "n_inference_steps": 8, "n_inversion_steps": 5, "drag_steps": 3}
PAGE_LOAD_LIMIT_S = 5.0


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class User:
    number: int
    image: Path
    points: str
    mask: Path | None
    prompt: str
    settings: dict
    ui: bool  # True: upload, points table and Drag, as the page does; False: the /edit API
    statuses: list = field(default_factory=list)  # (time, code name, rank, queue size) as the client saw them
    result: bytes | None = None
    error: BaseException | None = None


def make_users(folder: Path) -> list[User]:
    """8 different pictures (sizes, colours, disc positions), points, masks, prompts and seeds."""
    users, rng = [], np.random.default_rng(10)
    for n in range(USERS):
        width, height = 64 + 16 * (n % 3), 64 + 16 * (n % 2)
        yy, xx = np.mgrid[0:height, 0:width]
        background = rng.integers(0, 256, 3)
        picture = np.broadcast_to(background, (height, width, 3)).astype(np.float64)
        picture += (xx / width * 60)[..., None]  # a gradient, different per image size
        cx, cy = 16 + 3 * n, 20 + 2 * n
        picture[(xx - cx) ** 2 + (yy - cy) ** 2 < 8**2] = rng.integers(0, 256, 3)
        image = folder / f"user{n}.png"
        Image.fromarray(picture.clip(0, 255).astype(np.uint8)).save(image)
        mask = None
        if n % 2:
            mask = folder / f"user{n}-mask.png"
            region = np.zeros((height, width), np.uint8)
            region[cy - 12 : cy + 12, cx - 12 : cx + 30] = 255
            Image.fromarray(region).save(mask)
        points = f"{cx},{cy}>{cx + 12 + n},{cy + n % 3}"
        if n % 3 == 0:
            points += f"; {width - 10},{height - 12}>{width - 20},{height - 8}"
        settings = {**SETTINGS, "seed": 1000 + n if n % 4 else 42}
        prompt = f"picture of user {n}" if n % 2 else ""
        users.append(User(n, image, points, mask, prompt, settings, ui=mask is None))
    return users


def alone(user: User, engine: DragDiffusion, folder: Path) -> bytes:
    """The file the server's /edit would return for this user's edit alone: app.api_edit's steps, in-process."""
    picture = load_image(user.image)
    handles, targets = parse_points(user.points)
    mask = load_mask(user.mask, picture.size) if user.mask else None
    request = DragRequest(picture, handles, targets, mask, user.prompt, engine.default_config(**user.settings))
    result = engine.edit(request)
    path = folder / f"alone{user.number}.png"
    save_result_png(result.image, result.session, path)
    return path.read_bytes()


def table_rows(points: str) -> dict:
    """The points as the page's editable table holds them."""
    handles, targets = parse_points(points)
    rows = [[i + 1, h.x, h.y, t.x, t.y] for i, (h, t) in enumerate(zip(handles, targets))]
    return {"headers": ["pair", "handle x", "handle y", "target x", "target y"], "data": rows, "metadata": None}


def widget_values(settings: dict) -> list:
    """The Advanced panel's values for these settings, as the page sends them."""
    return app.panel_from(resolve_config(DragConfig, **settings), "tiny")


def run_user(user: User, url: str, start: threading.Barrier) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False)  # its own session, as a browser tab has
        if user.ui:  # the image and the points live in this user's state on the server
            client.predict(handle_file(str(user.image)), api_name="/on_upload")
            client.predict(table_rows(user.points), api_name="/on_table")
            method = ("tiny", "dragdiffusion", "drag", 1.0)  # model, method, DragonDiffusion's mode and scale
            inputs, endpoint = (user.prompt, *method, *widget_values(user.settings)), "/run"
        else:
            mask = handle_file(str(user.mask)) if user.mask else None
            inputs = (handle_file(str(user.image)), user.points, mask, user.prompt, "tiny", json.dumps(user.settings))
            endpoint = "/edit"
        start.wait(timeout=120)  # every user submits at the same moment
        job = client.submit(*inputs, api_name=endpoint)
        while not job.done():
            status = job.status()
            user.statuses.append((time.monotonic(), status.code.name, status.rank, status.queue_size))
            time.sleep(0.02)
        output = job.result(timeout=300)
        if user.ui:  # the client gets every output of /run but the state, in order
            shown = [c for c in app.DRAG.outputs if c is not app.DRAG.state]
            status, output = output[shown.index(app.DRAG.status)], output[shown.index(app.DRAG.download)]
            assert isinstance(output, str), f"no result file; status: {status!r}"
        user.result = Path(output).read_bytes()
    except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
        user.error = exc


def press_stop(url: str, stop: threading.Event, presses: list) -> None:
    """Another user, pressing its own Stop button over and over while the others' edits run."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    while not stop.is_set():
        presses.append(client.predict(api_name="/on_stop"))
        time.sleep(0.1)


def watch_page_loads(url: str, stop: threading.Event, loads: list) -> None:
    while not stop.is_set():
        try:
            loads.append(get(url, timeout=PAGE_LOAD_LIMIT_S * 4))
        except OSError as exc:
            loads.append((repr(exc), float("inf")))
        time.sleep(0.2)


@pytest.fixture(scope="module")
def users_and_expected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("users")
    users = make_users(folder)
    engine = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=folder / "alone-cache")
    expected = [alone(user, engine, folder) for user in users]
    assert len(set(expected)) == USERS  # eight different edits, so a mix-up could not go unnoticed
    return users, expected


@pytest.mark.slow
@pytest.mark.parametrize("gpu_jobs", [1, 2])
def test_eight_users_at_once_each_get_exactly_their_own_edit(gpu_jobs, users_and_expected, tmp_path):
    users, expected = users_and_expected
    users = [User(u.number, u.image, u.points, u.mask, u.prompt, u.settings, u.ui) for u in users]  # fresh records
    server = start_app(tmp_path / "outputs", tmp_path / "cache", tmp_path / "app.log", "--gpu-jobs", str(gpu_jobs))
    try:
        start, stop, loads, presses = threading.Barrier(USERS), threading.Event(), [], []
        watcher = threading.Thread(target=watch_page_loads, args=(server.url, stop, loads), daemon=True)
        stopper = threading.Thread(target=press_stop, args=(server.url, stop, presses), daemon=True)
        threads = [threading.Thread(target=run_user, args=(u, server.url, start), daemon=True) for u in users]
        began = time.monotonic()
        watcher.start()
        stopper.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=400)
        elapsed = time.monotonic() - began
        stop.set()
        watcher.join(timeout=60)
        stopper.join(timeout=60)
        assert server.process.poll() is None, server.tail()
    finally:
        server.stop()
    failed = {u.number: repr(u.error) for u in users if u.error is not None or u.result is None}
    assert not failed, f"{failed}\n{server.tail()}"
    assert len(presses) >= 5 and set(presses) == {"Stopping…"}  # the ninth user's Stop was pressed meanwhile

    # 1. Same bytes as alone: the pixels and the session (image, points, mask, prompt, config) inside
    for user, alone_bytes in zip(users, expected):
        assert user.result == alone_bytes, f"user {user.number}'s result differs from the same edit alone"
    # ... and what the server saved is the same file, with the same session beside it
    saved = sorted(server.outputs.rglob("*.png"))
    assert len(saved) == USERS and not list(server.outputs.rglob("*.tmp"))
    assert sorted(p.read_bytes() for p in saved) == sorted(expected)
    for path in saved:
        assert path.with_suffix(".json").read_text() == load_session(path).to_json()

    # 2. The queue told waiting users where they were: positions seen, never going backwards for a user
    ranks = {u.number: [r for _, code, r, _ in u.statuses if code == "IN_QUEUE" and r is not None] for u in users}
    seen = sorted({r for user_ranks in ranks.values() for r in user_ranks})
    assert seen and max(seen) >= USERS // 2 - gpu_jobs, f"queue positions seen: {seen}"
    for number, user_ranks in ranks.items():
        assert user_ranks == sorted(user_ranks, reverse=True), f"user {number}'s queue position went up: {user_ranks}"

    # 3. Page loads kept answering while the edits ran
    assert len(loads) >= 3 and all(status == 200 for status, _ in loads), loads
    slowest = max(seconds for _, seconds in loads)
    assert slowest < PAGE_LOAD_LIMIT_S, f"a page load took {slowest:.1f} s"
    print(
        f"gpu_jobs={gpu_jobs}: {USERS} users in {elapsed:.1f} s; queue positions seen {seen}; "
        f"{len(loads)} page loads, slowest {slowest:.2f} s; {len(presses)} Stops by another user"
    )
