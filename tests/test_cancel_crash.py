"""Cancellation and crashes.

- 20 Stops at random steps of every stage (LoRA, inversion, drag optimisation, denoising), run the way the app
  runs edits (dragdiff.editor.stream: a worker thread, a Stop event): each ends within one step with
  DragCancelled; the next edit is byte-identical to a clean run's; no tensors, threads or temporary files
  are left behind and RSS stays within a stated bound.
- A truncated, empty or garbage cache entry is a miss: recomputed, rewritten whole, same result.
- kill -9 of the server during an edit and during the write of a result: on restart every earlier result and
  session loads, nothing half-written sits under a result's name, and the app serves edits normally.
"""

import gc
import json
import os
import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dragdiff import DragCancelled, DragRequest, Point
from dragdiff.drag.method import DragDiffusion
from dragdiff.interactive.autosave import autosave
from dragdiff.interactive.jobs import Finished, stream
from dragdiff.models import load_model
from dragdiff.point_session import load_session
from dragdiff.session_io import save_result_png
from tests.support.appserver import get, start_app
from tests.support.measure import rss_mb

# Every stage has a few steps to stop at; stop_distance 0 keeps the drag from ending early.
STEPS = dict(lora_steps=3, lora_batch_size=1, n_inference_steps=8, n_inversion_steps=4, drag_steps=3, stop_distance=0.0)
STAGES = {"lora": "training the LoRA", "inversion": "inverting", "drag": "dragging", "denoise": "denoising"}
NEXT = {"lora": "inversion", "inversion": "drag", "drag": "denoise"}
CYCLES = 20
RSS_GROWTH_LIMIT_MB = 64  # see test_twenty_stops_at_random_steps_leave_nothing_behind


pytestmark = pytest.mark.usefixtures("one_thread")


def picture(number: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A disc on a gradient; `number` moves the disc and changes the colours."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx / width * 200, yy / height * 150 + 50, np.full_like(xx, 40.0 + 9 * number)], axis=-1)
    image[(xx - 20 - number % 7) ** 2 + (yy - 30) ** 2 < 9**2] = (250, 40 + 10 * number % 200, 40)
    return Image.fromarray(image.astype(np.uint8))


def request(number: int, engine: DragDiffusion, **changes) -> DragRequest:
    mask = np.zeros((64, 64), bool)
    mask[15:45, 5:60] = True
    config = engine.default_config(**{**STEPS, "seed": 100 + number, **changes})
    x = 20 + number % 7
    return DragRequest(picture(number), (Point(x, 30),), (Point(x + 14, 32),), mask, f"scene {number}", config)


def png_of(engine: DragDiffusion, req: DragRequest, folder: Path, name: str) -> bytes:
    """The result file a clean run gives: the PNG with its session, as the app saves it."""
    path = folder / f"{name}.png"
    result = engine.edit(req)
    save_result_png(result.image, result.session, path)
    return path.read_bytes()


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def run_streamed(engine: DragDiffusion, req: DragRequest, stop_at: tuple[str, int] | None = None):
    """engine.edit as app.run drives it: in stream()'s worker thread, ended by a Stop event. With `stop_at`
    = (stage, step), Stop is pressed as that step's progress arrives. Returns (result or None, the progress
    seen, DragCancelled's message or None; not the exception, whose traceback would keep the run's tensors)."""
    stop, seen = threading.Event(), []

    def job(progress, halt):
        def on_progress(event):
            seen.append((event.stage, event.step))
            progress(event)
            if (event.stage, event.step) == stop_at:
                stop.set()  # what app.on_stop does

        return engine.edit(req, on_progress, halt)

    try:
        for event in stream(job, stop, interval=0.01):
            if isinstance(event, Finished):
                return event.value, seen, None
    except DragCancelled as exc:
        return None, seen, str(exc)
    raise AssertionError("stream ended without a result")


def no_temporary_files(*folders: Path) -> None:
    for folder in folders:
        leftovers = [p for p in folder.rglob("*") if p.is_file() and (p.suffix == ".tmp" or p.name.startswith("."))]
        assert not leftovers, f"half-written files left: {leftovers}"


def test_twenty_stops_at_random_steps_leave_nothing_behind(tmp_path):
    """Stops at random (stage, step); after each, the edit that ran before it (its LoRA attached before the Stop
    and now from the cache) and, every other time, the stopped edit run again give exactly a clean run's file.

    RSS bound: after warm-up, 20 stopped and 30 finished edits may add at most RSS_GROWTH_LIMIT_MB (measured:
    +4.6 to +9.1 MB alone; +23 to +40 MB after the rest of the suite, allocator noise that the compositing of
    preserve_unmasked raised by ~6 MB). Keeping one UNet copy (8.6 MB) or one run's activations per stopped
    run would add 170+ MB. Smaller leaks, such as a LoRA's weights (0.5 MB) per run, are caught exactly
    instead: the number of live tensors and of threads must not grow.
    """
    clean_engine = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=tmp_path / "clean-cache")
    engine = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=tmp_path / "cache")
    outputs, clean = tmp_path / "outputs", tmp_path / "clean"
    clean.mkdir()
    base = request(0, engine)
    base_clean = png_of(clean_engine, base, clean, "base")
    rng = random.Random(2024)

    def next_edit(req: DragRequest, expected: bytes) -> None:
        result, _, cancelled = run_streamed(engine, req)
        assert cancelled is None
        path = autosave(outputs, result)
        assert path.read_bytes() == expected, "the edit after a Stop differs from a clean run"

    totals = {"lora": 3, "inversion": 4, "drag": 3, "denoise": 4}

    def cycle(number: int, stage: str, step: int) -> None:
        stopped = request(number, engine)  # a new image and seed: LoRA and inversion really run
        result, seen, cancelled = run_streamed(engine, stopped, (stage, step))
        where = stage if step < totals[stage] else NEXT[stage]  # after a stage's last step, the next one stops
        assert result is None and cancelled is not None, f"cycle {number}: Stop at {stage} {step} did not stop"
        assert STAGES[where] in cancelled, f"cycle {number}: stopped at {stage} {step}, but: {cancelled}"
        assert seen[-1] == (stage, step), f"cycle {number}: steps ran after the Stop: {seen[-3:]}"
        if number % 2 == 0:  # the stopped edit itself, from where its caches got
            next_edit(stopped, png_of(clean_engine, stopped, clean, f"stopped{number}"))
        next_edit(base, base_clean)  # the edit before the Stop again: its LoRA is cached and was attached

    next_edit(base, base_clean)  # warm-up: the base image's LoRA is cached and attached; both kinds of cycle
    cycle(-1, "drag", 1)
    cycle(-2, "lora", 2)
    gc.collect()
    rss_before, tensors_before, threads_before = rss_mb(), live_tensors(), threading.active_count()

    stopped_in, started = [], time.perf_counter()
    for number in range(1, CYCLES + 1):
        stage = ["lora", "inversion", "drag", "denoise"][(number - 1) % 4]  # every stage 5 times ...
        step = rng.randint(1, totals[stage] - (stage == "denoise"))  # ... at a random step
        cycle(number, stage, step)
        stopped_in.append(f"{stage} {step}/{totals[stage]}")
    elapsed = time.perf_counter() - started

    assert threading.active_count() == threads_before, "a stopped run left a thread behind"
    assert live_tensors() <= tensors_before, "stopped runs left tensors alive"
    growth = rss_mb() - rss_before
    print(f"{CYCLES} stops ({', '.join(stopped_in)}) in {elapsed:.1f} s; RSS {rss_before:.0f} MB, +{growth:.1f} MB")
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew by {growth:.1f} MB over {CYCLES} stopped edits"
    # Nothing half-written: only whole results (one per finished edit) and whole cache entries
    no_temporary_files(outputs, tmp_path / "cache")
    finished = 4 + CYCLES + CYCLES // 2  # the base edit after every stopped one, every other stopped edit again
    assert len(list(outputs.rglob("*.png"))) == finished and len(list(outputs.rglob("*.json"))) == finished
    for entry in (tmp_path / "cache").rglob("*.safetensors"):
        load_file(entry)


@pytest.mark.parametrize("damage", ["empty", "header cut", "data cut", "garbage"])
@pytest.mark.parametrize("kind", ["lora", "inversion"])
def test_a_damaged_cache_entry_is_a_miss_and_is_recomputed(kind, damage, tmp_path):
    engine = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=tmp_path / "cache")
    req = request(3, engine)
    first = engine.edit(req).image.tobytes()
    (entry,) = (tmp_path / "cache" / kind).glob("*.safetensors")
    whole = entry.read_bytes()
    planted = {"empty": b"", "header cut": whole[:20], "data cut": whole[: len(whole) - 7], "garbage": b"\x00" * 999}
    entry.write_bytes(planted[damage])  # as if a writer had died mid-file without the temp-and-rename

    fresh = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=tmp_path / "cache")  # a restarted app
    assert fresh.edit(req).image.tobytes() == first
    trained, cached = ("lora_trained", "lora_cached") if kind == "lora" else ("inversion", "inversion_cached")
    assert fresh.runtime.counts[trained] == 1 and fresh.runtime.counts[cached] == 0  # recomputed, not read half-written
    assert entry.read_bytes() == whole  # rewritten whole
    no_temporary_files(tmp_path / "cache")


# -- kill -9 ---------------------------------------------------------------------------------------------------


def api_inputs(number: int, folder: Path, **changes) -> tuple:
    """request(number)'s edit as /edit's inputs: image and mask files, points text, prompt, settings JSON."""
    image, mask = folder / f"in{number}.png", folder / f"mask{number}.png"
    picture(number).save(image)
    region = np.zeros((64, 64), np.uint8)
    region[15:45, 5:60] = 255
    Image.fromarray(region).save(mask)
    x = 20 + number % 7
    settings = {**STEPS, "seed": 100 + number, **changes}
    return image, mask, f"{x},30>{x + 14},32", f"scene {number}", json.dumps(settings)


def whole_results(outputs: Path) -> dict[Path, bytes]:
    """Every result-named file (PNG and JSON) with its bytes; each must load as a complete session."""
    files = {}
    for path in sorted(outputs.rglob("*")):
        if path.is_file() and path.suffix in (".png", ".json"):
            session = load_session(path)  # raises on anything half-written
            assert session.model == "tiny"
            files[path] = path.read_bytes()
    return files


@pytest.mark.slow
def test_kill_9_during_an_edit_and_during_a_result_write_loses_nothing(tmp_path):
    from gradio_client import Client, handle_file

    outputs, cache, log, inputs = tmp_path / "outputs", tmp_path / "cache", tmp_path / "app.log", tmp_path / "in"
    inputs.mkdir()
    engine = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=tmp_path / "alone-cache")
    expected = {n: png_of(engine, request(n, engine), tmp_path, f"alone{n}") for n in (1, 2)}

    def edit(client, number: int, **changes):
        image, mask, points, prompt, settings = api_inputs(number, inputs, **changes)
        args = (handle_file(str(image)), points, handle_file(str(mask)), prompt, "tiny", settings)
        return client.submit(*args, api_name="/edit")

    # 1. kill -9 inside the write of a result: the 3rd atomic write is edit 2's PNG (edit 1 wrote PNG + JSON)
    marker = tmp_path / "paused-write"
    server = start_app(outputs, cache, log, paused_write=(3, marker))
    try:
        client = Client(server.url, verbose=False)
        assert Path(edit(client, 1).result(timeout=300)).read_bytes() == expected[1]
        before = whole_results(outputs)
        assert len(before) == 2
        edit(client, 2)
        deadline = time.monotonic() + 300
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the server never reached the paused write:\n" + server.tail()
        temporary, target = map(Path, marker.read_text().split())
        assert temporary.is_file() and target.suffix == ".png" and not target.exists()  # in the middle of the write
        server.kill()
    finally:
        server.stop()
    assert whole_results(outputs) == before  # the earlier result and session: untouched, loadable
    assert not target.exists()  # the interrupted result is absent, not half there
    leftovers = [p for p in outputs.rglob("*") if p.is_file() and p not in before]
    assert leftovers == [temporary] and temporary.name.startswith(".") and temporary.suffix == ".tmp"

    # 2. kill -9 during an edit (a long LoRA training)
    server = start_app(outputs, cache, log)
    try:
        client = Client(server.url, verbose=False)
        job = edit(client, 3, lora_steps=5000)
        deadline = time.monotonic() + 120
        while job.status().code.name != "PROCESSING" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # well inside the LoRA training
        assert not job.done()
        server.kill()
    finally:
        server.stop()
    assert whole_results(outputs) == before
    assert len(list((cache / "lora").glob("*"))) == 2  # edits 1 and 2: edit 3 was killed inside its training

    # 3. Restart: the app starts and serves; old results still load; edits give the bytes they gave before
    server = start_app(outputs, cache, log)
    try:
        assert get(server.url)[0] == 200
        client = Client(server.url, verbose=False)
        again = {n: Path(edit(client, n).result(timeout=300)).read_bytes() for n in (1, 2)}
    finally:
        server.stop()
    assert again == expected  # edit 2 used the cache entries its killed run wrote: whole, or recomputed
    after = whole_results(outputs)
    assert all(after[path] == data for path, data in before.items()) and len(after) == len(before) + 4
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries and all(p.suffix == ".safetensors" for p in entries), entries
    for entry in entries:
        load_file(entry)  # every cache entry is whole


def test_temporary_files_a_crash_left_are_removed_at_startup_once_old(tmp_path):
    from dragdiff.interactive.autosave import remove_stale_temporary_files

    day = tmp_path / "outputs" / "2026-11-26"
    day.mkdir(parents=True)
    old, fresh, result = day / ".1200-ab.png.x1.tmp", day / ".1201-cd.png.x2.tmp", day / "1159-ef.png"
    for path in (old, fresh, result):
        path.write_bytes(b"...")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temporary_files(tmp_path / "outputs") == [old]
    assert not old.exists() and fresh.exists() and result.exists()  # a write in progress elsewhere is kept


# The UNet call that runs out of memory: mid-LoRA training, in the inversion, in the fill, in the editing.
@pytest.mark.parametrize(
    "name, failing_call", [("dragdiffusion", 2), ("gooddrag", 6), ("inpaint4drag", 2), ("dragon", 9)]
)
def test_running_out_of_memory_mid_edit_is_a_message_and_the_next_edit_is_unaffected(
    name, failing_call, scene, tmp_path
):
    from dragdiff import DragError
    from dragdiff.runtime import Runtime
    from tests.support.edits import FAST, mask_box

    def edit(runtime):
        method = runtime.method(name)
        config = method.default_config(image_check=False, **FAST[name])
        return method.edit(DragRequest(scene, (Point(40, 48),), (Point(60, 48),), mask_box(), "", config))

    runtime = Runtime(load_model("tiny", "cpu"), cache_dir=str(tmp_path / "a"))
    unet, calls = runtime.model.unet, []

    def forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == failing_call:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return type(unet).forward(unet, *args, **kwargs)

    unet.forward = forward
    with pytest.raises(DragError, match="the edit ran out of the CPU's memory; nothing was changed. Lower resolution"):
        edit(runtime)
    del unet.forward
    clean = edit(Runtime(load_model("tiny", "cpu"), cache_dir=str(tmp_path / "b"))).image
    assert np.array_equal(np.asarray(edit(runtime).image), np.asarray(clean))


def test_an_inpainting_model_too_big_to_load_is_named_and_the_edit_runs_without_it(scene, tmp_path, monkeypatch):
    """Lowering the edit's size cannot make a filler fit: the message names the setting to change instead."""
    from dragdiff import DragError
    from dragdiff.inpaint4drag import method as inpaint4drag
    from dragdiff.runtime import Runtime
    from tests.support.edits import FAST, mask_box

    def too_big(spec, model):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 22.00 GiB")

    monkeypatch.setattr(inpaint4drag, "load_inpainter", too_big)
    runtime = Runtime(load_model("tiny", "cpu"), cache_dir=str(tmp_path))
    method = runtime.method("inpaint4drag")
    config = method.default_config(image_check=False, **FAST["inpaint4drag"])
    request = DragRequest(scene, (Point(40, 48),), (Point(60, 48),), mask_box(), "", config)
    big = replace(request, config=config.replace(inpaint_model="big/fill-model"))
    expected = "inpaint_model 'big/fill-model' does not fit in the CPU's memory beside the model; nothing was changed"
    with pytest.raises(DragError, match=expected):
        method.edit(big)
    assert method.edit(request).image.size == scene.size  # the same runtime, filling with its own model


def test_what_the_stage_that_ran_out_of_memory_held_is_freed_before_the_message(tmp_path):
    """The error's traceback keeps the failed stage's frames, and with them its tensors: they are cleared before
    the memory is given back, not when the message is dropped."""
    import weakref

    from dragdiff import DragError
    from dragdiff.runtime import Runtime

    runtime, held = Runtime(load_model("tiny", "cpu"), cache_dir=str(tmp_path)), []

    def stage():
        activations = torch.zeros(256, 256)
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(DragError, match="ran out of"):
        with runtime.editing():
            stage()
    assert held[0]() is None
