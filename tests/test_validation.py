"""dragdiff.validation: the CLI point syntax, and every way a DragRequest can be wrong."""

import math

import numpy as np
import pytest
from PIL import Image

from dragdiff.config import resolve_config
from dragdiff.drag import DragConfig
from dragdiff.errors import DragError
from dragdiff.types import DragRequest, Point
from dragdiff.validation import check_request, effective_mask, parse_points

CONFIG = resolve_config(DragConfig)


def request(**changes) -> DragRequest:
    """A valid 512×384 request with two pairs, changed by `changes`."""
    fields = dict(
        image=Image.new("RGB", (512, 384)),
        handles=(Point(10, 20), Point(100.5, 200)),
        targets=(Point(30, 20), Point(120, 210)),
        mask=None,
        prompt="",
        config=CONFIG,
    )
    return DragRequest(**{**fields, **changes})


# --- parse_points -----------------------------------------------------------------------------------------


def test_parse_points_reads_pairs_with_whitespace():
    handles, targets = parse_points(" 1,2 > 3,4 ;5.5, 6>7,8e1; ")
    assert handles == (Point(1.0, 2.0), Point(5.5, 6.0))
    assert targets == (Point(3.0, 4.0), Point(7.0, 80.0))
    assert all(isinstance(p.x, float) for p in handles + targets)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2>3,4;a,b>3,4", r"pair 2 'a,b>3,4': 'a' in the handle is not a number"),
        ("1,2>3,4>5,6", r"pair 1 '1,2>3,4>5,6': expected exactly one '>'"),
        ("1,2;3,4", r"pair 1 '1,2': expected exactly one '>'"),
        ("1,2,3>4,5", r"pair 1 '1,2,3>4,5': the handle '1,2,3' needs two numbers x,y"),
        ("1,2>4", r"pair 1 '1,2>4': the target '4' needs two numbers x,y"),
        ("1,nan>4,5", r"'nan' in the handle is not a finite number"),
        ("1,2>inf,5", r"'inf' in the target is not a finite number"),
        ("  ; ", r"no points given"),
        # float() takes these; nobody types them as pixels (Arabic-Indic, fullwidth, Devanagari, a separator)
        ("٤٠,٤٨>60,48", r"'٤٠' in the handle is not a number \(digits 0-9"),
        ("４０,48>60,48", r"'４０' in the handle is not a number"),
        ("40,48>६०,48", r"'६०' in the target is not a number"),
        ("4_0,48>60,48", r"'4_0' in the handle is not a number"),
    ],
)
def test_parse_points_errors_name_the_pair(text, message):
    with pytest.raises(DragError, match=message) as error:
        parse_points(text)
    assert "x,y>x,y" in str(error.value)  # and say how to write it


# --- check_request: errors --------------------------------------------------------------------------------


def test_valid_request_has_no_warnings():
    assert check_request(request()) == []


def test_corners_are_inside_and_just_beyond_is_outside():
    check_request(request(handles=(Point(0, 0),), targets=(Point(511, 383),)))
    with pytest.raises(DragError, match=r"target 1 \(511.5, 383.0\) is outside the 512×384 image"):
        check_request(request(handles=(Point(0, 0),), targets=(Point(511.5, 383),)))
    with pytest.raises(DragError, match=r"handle 1 \(0.0, -0.5\) is outside"):
        check_request(request(handles=(Point(0, -0.5),), targets=(Point(1, 1),)))


def test_point_outside_names_the_point_and_the_image_size():
    bad = request(targets=(Point(30, 20), Point(530, 12)))
    with pytest.raises(DragError, match=r"target 2 \(530.0, 12.0\) is outside the 512×384 image") as error:
        check_request(bad)
    assert "x must be within [0, 511] and y within [0, 383]" in str(error.value)


def test_no_points():
    with pytest.raises(DragError, match="no points to drag"):
        check_request(request(handles=(), targets=()))


def test_unequal_counts():
    with pytest.raises(DragError, match=r"2 handle\(s\) but 1 target\(s\)"):
        check_request(request(targets=(Point(1, 1),)))


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), ("12", "'12'"), (True, "True"), (None, "None")],
)
def test_coordinates_must_be_finite_numbers(value, shown):
    bad = request(handles=(Point(10, 20), Point(5, value)))
    with pytest.raises(DragError, match=f"handle 2: y = {shown} is not a finite number"):
        check_request(bad)


def test_numpy_numbers_are_accepted():
    check_request(request(handles=(Point(np.float32(3), np.int64(4)),), targets=(Point(5, 6),)))


def test_points_must_be_points():
    with pytest.raises(DragError, match=r"handle 1: expected a dragdiff Point\(x, y\), got \(1, 2\)"):
        check_request(request(handles=((1, 2),), targets=(Point(1, 1),)))


def test_image_must_be_an_rgb_or_rgba_pil_image():
    with pytest.raises(DragError, match="request.image: expected a PIL image, got ndarray"):
        check_request(request(image=np.zeros((384, 512, 3), np.uint8)))
    with pytest.raises(DragError, match="request.image: the image is mode 'CMYK', expected 'RGB' or 'RGBA'"):
        check_request(request(image=Image.new("CMYK", (512, 384))))
    assert check_request(request(image=Image.new("RGBA", (512, 384)))) == []


def test_image_size_limits():
    with pytest.raises(DragError, match="the image is 512×63; both sides must be at least 64 px"):
        check_request(request(image=Image.new("RGB", (512, 63)), handles=(Point(1, 1),), targets=(Point(2, 2),)))
    huge = Image.new("RGB", (4097, 4096))
    with pytest.raises(DragError, match="4097×4096 = 16,781,312 pixels, above the limit of 16,777,216"):
        check_request(request(image=huge))


def test_mask_must_be_a_2d_bool_array_of_the_image_size():
    with pytest.raises(DragError, match="request.mask: expected a 2-D bool array.*dtype uint8"):
        check_request(request(mask=np.ones((384, 512), np.uint8)))
    with pytest.raises(DragError, match=r"request.mask: expected a 2-D bool array.*shape \(384, 512, 1\)"):
        check_request(request(mask=np.ones((384, 512, 1), bool)))
    with pytest.raises(DragError, match="request.mask: expected a 2-D bool array.*got Image"):
        check_request(request(mask=Image.new("L", (512, 384))))
    with pytest.raises(DragError, match="the mask is 384×512 but the image is 512×384"):
        check_request(request(mask=np.ones((512, 384), bool)))


def test_prompt_must_be_text():
    with pytest.raises(DragError, match="request.prompt: expected text, got int"):
        check_request(request(prompt=3))


# --- check_request: warnings, effective_mask --------------------------------------------------------------


def test_empty_mask_warns_and_is_ignored():
    empty = np.zeros((384, 512), bool)
    assert check_request(request(mask=empty)) == [
        "the mask is empty, so the whole image may change; paint the region that may move"
    ]
    assert effective_mask(empty) is None
    assert effective_mask(None) is None
    marked = empty.copy()
    marked[5, 5] = True
    assert effective_mask(marked) is marked
    assert check_request(request(mask=marked)) == []


def test_handle_equal_to_target_warns():
    same = request(handles=(Point(10, 20), Point(100, 200)), targets=(Point(30, 20), Point(100.0, 200.0)))
    assert check_request(same) == ["pair 2: handle equals target; that point stays where it is"]
