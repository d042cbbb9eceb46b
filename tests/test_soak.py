"""Soak: 200 edits in a row through the Python API, each saved as the app saves results,
with RSS, peak RSS and open file descriptors logged per edit (test-artifacts/soak.csv); after warm-up
neither memory nor file handles grow.

Bounds, for the tiny model at 64 px (UNet 8.6 MB, one LoRA 0.5 MB):
- RSS: the mean over the last 20 edits may exceed the mean over edits 20-40 by at most RSS_GROWTH_LIMIT_MB.
  Keeping one LoRA per edit would add 80 MB over those 160 edits, keeping a result image or one stage's
  activations more. Measured: see the README's Reliability section.
- File descriptors: never more than after edit 20 (every cache read, result write and session read closes
  its file); a leak of one per edit would show 180 more.
- Time: the whole loop must finish within TIME_LIMIT_S (about 0.3-0.6 s per edit on one core).
"""

import csv
import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragdiff import DragRequest, Point
from dragdiff.drag.method import DragDiffusion
from dragdiff.interactive.autosave import autosave
from dragdiff.models import load_model
from dragdiff.point_session import load_session
from tests.support.measure import rss_mb

EDITS = 200
RSS_GROWTH_LIMIT_MB = 25
TIME_LIMIT_S = 240
SETTINGS = dict(lora_steps=1, lora_batch_size=1, n_inference_steps=6, n_inversion_steps=4, drag_steps=2)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


pytestmark = pytest.mark.usefixtures("one_thread")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def edit_request(number: int, engine: DragDiffusion) -> DragRequest:
    """Ten pictures, a new seed every time (so LoRA and inversion are computed and cached each edit) except
    every 4th edit, which repeats an earlier one (so cache reads are part of the loop too)."""
    if number % 4 == 3:
        number -= 3
    rng = np.random.default_rng(number % 10)
    yy, xx = np.mgrid[0:64, 0:64]
    pixels = np.broadcast_to(rng.integers(0, 200, 3), (64, 64, 3)).astype(np.float64) + (xx * 0.8)[..., None]
    pixels[(xx - 24) ** 2 + (yy - 32) ** 2 < 10**2] = rng.integers(0, 256, 3)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    config = engine.default_config(**SETTINGS, seed=number)
    return DragRequest(image, (Point(24, 32),), (Point(36 + number % 5, 32),), None, "", config)


@pytest.mark.slow
def test_two_hundred_edits_keep_memory_and_file_handles_flat(tmp_path):
    engine = DragDiffusion(load_model("tiny", device="cpu"), cache_dir=tmp_path / "cache")
    outputs, rows, started = tmp_path / "outputs", [], time.perf_counter()
    for number in range(EDITS):
        begin = time.perf_counter()
        request = edit_request(number, engine)
        result = engine.edit(request)
        path = autosave(outputs, result)
        if number % 10 == 0:
            load_session(path)  # reading results back is part of a server's life too
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((number, time.perf_counter() - begin, rss_mb(), peak, open_fds()))
        assert time.perf_counter() - started < TIME_LIMIT_S, f"only {number + 1} edits in {TIME_LIMIT_S} s"
    elapsed = time.perf_counter() - started

    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "soak.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["edit", "seconds", "rss_mb", "peak_rss_mb", "open_fds"])
        writer.writerows([(n, f"{s:.3f}", f"{r:.1f}", f"{p:.1f}", f) for n, s, r, p, f in rows])
    rss = [r for _, _, r, _, _ in rows]
    fds = [f for *_, f in rows]
    early, late = float(np.mean(rss[20:40])), float(np.mean(rss[-20:]))
    print(
        f"{EDITS} edits in {elapsed:.0f} s ({elapsed / EDITS:.2f} s each); RSS {early:.1f} MB (edits 20-40) -> "
        f"{late:.1f} MB (last 20), peak {rows[-1][3]:.0f} MB; open fds {fds[20]} -> max {max(fds[20:])}"
    )
    assert len(list(outputs.rglob("*.png"))) == EDITS  # every edit saved
    assert late - early < RSS_GROWTH_LIMIT_MB, f"RSS grew from {early:.1f} to {late:.1f} MB"
    assert max(fds[20:]) <= fds[20], f"open file descriptors grew: {fds[20]} -> {max(fds[20:])}"
