"""Keep what was not painted: outside the edit region and its seam a result is the input, bit for bit."""

import numpy as np
import pytest
from PIL import Image

from dragdiff import DragRequest, Point, Runtime
from dragdiff.composite import keep_unpainted, seam_weights
from dragdiff.dragon import MoveRequest
from tests.conftest import FAST

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def runtime(tiny_model, tmp_path):
    return Runtime(tiny_model, cache_dir=str(tmp_path))


def region_and_seam(mask: np.ndarray, seam_px: int) -> np.ndarray:
    return seam_weights(mask, seam_px) > 0


def test_a_drag_keeps_every_pixel_outside_the_mask_and_its_seam(runtime, scene):
    mask = np.zeros((96, 128), bool)
    mask[30:66, 20:80] = True
    method = runtime.method("dragdiffusion")
    request = DragRequest(scene, (Point(40, 48),), (Point(60, 48),), mask, "", method.default_config(**FAST))
    kept = np.asarray(method.edit(request).image)
    raw = np.asarray(
        method.edit(DragRequest(**{**vars(request), "config": request.config.replace(preserve_unmasked=False)})).image
    )
    outside = ~region_and_seam(mask, request.config.seam_px)
    assert np.array_equal(kept[outside], np.asarray(scene)[outside])  # bit for bit
    assert not np.array_equal(raw[outside], np.asarray(scene)[outside])  # the whole decode is not
    assert np.array_equal(kept[mask], raw[mask])  # inside the region: the model's edit, untouched


def test_a_drag_with_nothing_painted_keeps_nothing(runtime, scene):
    method = runtime.method("dragdiffusion")
    config = method.default_config(**FAST)
    request = DragRequest(scene, (Point(40, 48),), (Point(60, 48),), None, "", config)
    raw = DragRequest(scene, (Point(40, 48),), (Point(60, 48),), None, "", config.replace(preserve_unmasked=False))
    assert np.array_equal(np.asarray(method.edit(request).image), np.asarray(method.edit(raw).image))


def test_a_dragon_move_keeps_every_pixel_away_from_the_object_and_its_new_place(runtime, scene):
    yy, xx = np.mgrid[0:96, 0:128]
    disc = (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2
    method = runtime.method("dragon")
    config = method.default_config("move", n_steps=6)
    result = np.asarray(method.edit(MoveRequest(scene, disc, Point(20, 0), config=config)).image)
    # the edit region: the object and its moved copy on the latent grid (8 px cells here) grown by a cell
    reach = 15 + 2 * 8 + config.seam_px + 1
    far = np.ones((96, 128), bool)
    far[48 - reach : 48 + reach + 1, : 60 + reach + 1] = False
    assert np.array_equal(result[far], np.asarray(scene)[far])
    assert not np.array_equal(result[disc], np.asarray(scene)[disc])  # the object did change


@pytest.mark.parametrize("seam_px", [0, 4, 8])
def test_the_seam_spreads_a_colour_step_over_its_width(seam_px):
    before = Image.new("RGB", (120, 80), (200, 200, 200))
    after = Image.new("RGB", (120, 80), (200, 176, 200))  # the decode 24 levels off in green, as measured
    region = np.zeros((80, 120), bool)
    region[20:60, 30:90] = True
    kept = np.asarray(keep_unpainted(before, after, region, seam_px), dtype=int)
    step = np.abs(np.diff(kept[40, :, 1])).max()  # along a row crossing the region's left and right edges
    assert step <= -(-24 // (seam_px + 1)) + 1
    assert (kept[region] == (200, 176, 200)).all() and (kept[~region_and_seam(region, seam_px)] == 200).all()
