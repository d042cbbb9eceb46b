"""Keep what was not painted: outside the edit region and its seam a result is the input, bit for bit."""

import numpy as np
import pytest
from PIL import Image

from dragdiff import DragRequest, Point, Runtime
from dragdiff.cli import main
from dragdiff.composite import keep_unpainted, seam_weights
from dragdiff.dragon import MoveRequest
from dragdiff.images import mask_to_image
from tests.conftest import FAST
from tests.test_cli import FAST_FLAGS

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


def disc_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:96, 0:128]
    return (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2  # the scene's disc


def far_from_the_move(seam_px: int) -> np.ndarray:
    """Away from the disc moved 20 px right: its edit region is both places on the latent grid (8 px cells
    here) grown by a cell, then the seam."""
    reach = 15 + 2 * 8 + seam_px + 1
    far = np.ones((96, 128), bool)
    far[48 - reach : 48 + reach + 1, : 60 + reach + 1] = False
    return far


def test_a_dragon_move_keeps_every_pixel_away_from_the_object_and_its_new_place(runtime, scene):
    method = runtime.method("dragon")
    config = method.default_config("move", n_steps=6)
    result = np.asarray(method.edit(MoveRequest(scene, disc_mask(), Point(20, 0), config=config)).image)
    far = far_from_the_move(config.seam_px)
    assert np.array_equal(result[far], np.asarray(scene)[far])
    assert not np.array_equal(result[disc_mask()], np.asarray(scene)[disc_mask()])  # the object did change


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


def transparent_corners(scene: Image.Image) -> Image.Image:
    """The scene as RGBA: opaque, with a fully and a half transparent corner and a colour under the clear one."""
    rgba = np.asarray(scene.convert("RGBA")).copy()
    rgba[:20, :30, 3] = 0
    rgba[:20, :30, :3] = (12, 34, 56)  # colour under full transparency must survive too
    rgba[-20:, -30:, 3] = 128
    return Image.fromarray(rgba)


def test_an_rgba_input_through_the_cli_comes_back_rgba_with_everything_outside_the_seam_bit_for_bit(scene, tmp_path):
    original = transparent_corners(scene)
    original.save(tmp_path / "in.png")
    mask = np.zeros((96, 128), bool)
    mask[30:66, 20:80] = True
    mask_to_image(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    args = ["edit", "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(out)]
    assert main([*args, "--points", "40,48>60,48", "--cache-dir", str(tmp_path / "c"), *FAST_FLAGS]) == 0
    result = Image.open(out)
    assert result.mode == "RGBA" and result.size == (128, 96)
    kept, before = np.asarray(result), np.asarray(original)
    outside = ~region_and_seam(mask, 8)
    assert np.array_equal(kept[outside], before[outside])  # colour and alpha, the clear corner's colour too
    assert (kept[mask][:, 3] == 255).all()  # the model painted the region: opaque there
    assert not np.array_equal(kept[mask], before[mask])


def test_an_rgba_dragon_move_keeps_the_input_outside_its_region(runtime, scene):
    original = transparent_corners(scene)
    method = runtime.method("dragon")
    config = method.default_config("move", n_steps=6)
    result = method.edit(MoveRequest(original, disc_mask(), Point(20, 0), config=config)).image
    far = far_from_the_move(config.seam_px)
    before = np.asarray(original)
    assert result.mode == "RGBA" and {0, 128} <= set(np.unique(before[far][:, 3]))  # both corners reach `far`
    assert np.array_equal(np.asarray(result)[far], before[far])


def test_a_2000_by_1500_input_is_kept_bit_for_bit_outside_the_seam(runtime):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)  # noise: any resampling would show
    mask = np.zeros((1500, 2000), bool)
    mask[600:900, 700:1300] = True
    method = runtime.method("dragdiffusion")
    config = method.default_config(**{**FAST, "lora_steps": 0})
    image = Image.fromarray(photo)
    result = method.edit(DragRequest(image, (Point(800, 750),), (Point(1000, 750),), mask, "", config)).image
    kept = np.asarray(result)
    assert result.size == (2000, 1500)
    outside = ~region_and_seam(mask, config.seam_px)
    assert np.array_equal(kept[outside], photo[outside])
    assert not np.array_equal(kept[mask], photo[mask])
