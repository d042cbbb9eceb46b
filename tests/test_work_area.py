"""work_area "region": an edit works on a crop around the painted region and the points, and nothing outside
that crop changes, whatever the method."""

import numpy as np
import pytest
from PIL import Image

from dragdiff import DragRequest, Point, Runtime
from dragdiff.config import resolve_config
from dragdiff.drag.config import DragConfig
from dragdiff.dragon import MoveRequest
from dragdiff.work_area import work_area
from tests.conftest import FAST

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def runtime(tiny_model, tmp_path):
    return Runtime(tiny_model, cache_dir=str(tmp_path))


def photo(width=400, height=300) -> Image.Image:
    """A large busy picture with a small disc at (100, 150): the case "region" is for."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx % 50 * 5, yy % 40 * 6, (xx + yy) % 64 * 4], axis=-1).astype(np.float64)
    image[(xx - 100) ** 2 + (yy - 150) ** 2 < 20**2] = (250, 40, 40)
    return Image.fromarray(image.astype(np.uint8))


def disc_mask(width=400, height=300) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx - 100) ** 2 + (yy - 150) ** 2 < 30**2


def config(**changes):
    return resolve_config(DragConfig, None, **{**FAST, **changes})


def test_the_crop_holds_the_mask_the_points_and_the_padding_and_is_square():
    mask = disc_mask()
    settings = config(work_area="region", region_padding=0.5)
    area = work_area((400, 300), mask, [Point(100, 150), Point(140, 150)], settings)
    left, top, right, bottom = area.box
    # the mask spans x 71..129 and the target reaches 140: 70 px wide, padded by 0.5 × 70 on each side
    assert right - left == bottom - top == 140
    assert left <= 71 - 35 and right >= 140 + 35 and top <= 121 - 35 and bottom >= 179 + 35
    assert area.crop(DragRequest(photo(), (Point(100, 150),), (Point(140, 150),), mask)).image.size == (140, 140)


def test_full_no_mask_and_a_crop_at_the_border_stay_inside_the_image():
    mask = disc_mask()
    assert work_area((400, 300), mask, [], config()).whole  # work_area: full
    assert work_area((400, 300), None, [Point(100, 150)], config(work_area="region")).whole  # all may change
    corner = np.zeros((300, 400), bool)
    corner[:10, :10] = True
    left, top, right, bottom = work_area((400, 300), corner, [], config(work_area="region")).box
    assert (left, top) == (0, 0) and right - left == bottom - top == 64  # at least MIN_IMAGE_SIDE


@pytest.mark.parametrize("method", ["dragdiffusion", "dragon"])
def test_a_region_edit_changes_nothing_outside_its_crop(runtime, method):
    image, mask = photo(), disc_mask()
    edit = runtime.method(method)
    # preserve_unmasked off: the whole crop is the model's decode, so the crop's edge is where change stops
    changes = {"work_area": "region", "preserve_unmasked": False, "image_check": False}
    if method == "dragon":
        request = MoveRequest(image, mask, Point(40, 0), config=edit.default_config("move", n_steps=4, **changes))
        points = [Point(170, 180)]  # the far corner of the moved object (its box: x 71-129, y 121-179)
    else:
        request = DragRequest(image, (Point(100, 150),), (Point(140, 150),), mask, "", config(**changes))
        points = [Point(100, 150), Point(140, 150)]
    left, top, right, bottom = work_area(image.size, mask, points, request.config).box
    result = np.asarray(edit.edit(request).image)
    before = np.asarray(image)
    outside = np.ones((300, 400), bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(result[outside], before[outside])
    changed = np.any(result != before, axis=-1)
    assert changed[top:bottom, left:right].mean() > 0.5  # the crop was regenerated
    assert changed[top, left:right].any() and changed[bottom - 1, left:right].any()  # up to its edges


def test_a_region_drag_reports_its_points_in_the_whole_image(runtime):
    image, mask = photo(), disc_mask()
    request = DragRequest(image, (Point(100, 150),), (Point(140, 150),), mask, "", config(work_area="region"))
    result = runtime.method("dragdiffusion").edit(request)
    first = result.handle_track[0][0]
    assert abs(first.x - 100) <= 2 and abs(first.y - 150) <= 2  # the track starts at the handle, not in the crop
    assert result.image.size == (400, 300) and result.session.to_request().image.size == (400, 300)
    (check,) = result.image_check
    left, top, right, bottom = work_area(image.size, mask, [Point(100, 150), Point(140, 150)], request.config).box
    assert left <= check.found.x < right and top <= check.found.y < bottom
