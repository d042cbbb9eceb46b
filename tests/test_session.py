"""dragdiff.session: sessions round-trip exactly through JSON and PNG, and bad files fail naming the field."""

import base64
import json
import os
import struct
import time
import zlib
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from dragdiff.config import resolve_config
from dragdiff.drag import DragConfig
from dragdiff.errors import DragError
from dragdiff.images import load_image, png_bytes
from dragdiff.point_session import Session, load_session, session_from_dict
from dragdiff.session_io import MAX_EMBEDDED_BASE64_CHARS, PNG_TEXT_KEY, save_result_png, save_session
from dragdiff.types import DragRequest, Point, PointCheck


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def session() -> Session:
    mask = np.zeros((80, 96), bool)
    mask[10:50, 20:70] = True
    return Session(
        image=noise(96, 80),
        handles=(Point(30, 20), Point(50.25, 40)),
        targets=(Point(40, 25), Point(60, 41.5)),
        mask=mask,
        prompt="a photo of a cat — with ünïcode",
        model="tiny",
        config=resolve_config(DragConfig, seed=7, lora_steps=3),
    )


def write_json(path, data) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def edited(session: Session, tmp_path, **changes) -> str:
    """Save the session's dict with top-level `changes` (None deletes a field) and return the path."""
    data = session.to_dict()
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return write_json(tmp_path / "edit.json", data)


# --- round trips ------------------------------------------------------------------------------------------


def test_json_round_trip_is_exact(session, tmp_path):
    path = tmp_path / "s.json"
    save_session(session, path)
    loaded = load_session(path)
    assert loaded.to_json() == session.to_json() == path.read_text(encoding="utf-8")
    assert (np.asarray(loaded.image) == np.asarray(session.image)).all()
    assert (loaded.mask == session.mask).all()
    assert loaded.handles == session.handles and loaded.targets == session.targets
    assert loaded.config == session.config and loaded.prompt == session.prompt and loaded.model == "tiny"


def test_a_results_image_check_round_trips_and_a_bad_one_is_named(session, tmp_path):
    checks = (PointCheck(Point(39.0, 24.0), 1.4, True), PointCheck(Point(51.0, 40.0), 9.0, False))
    checked = replace(session, image_check=checks)
    save_session(checked, tmp_path / "s.json")
    assert load_session(tmp_path / "s.json").image_check == checks
    assert json.loads(checked.to_json())["image_check"][1] == {
        "found": [51.0, 40.0],
        "distance_px": 9.0,
        "arrived": False,
    }
    with pytest.raises(DragError, match=r"session.image_check: expected a list with one entry per point \(2\)"):
        load_session(edited(checked, tmp_path, image_check=[checks[0].to_json()]))
    bad = [checks[0].to_json(), {"found": [1, "x"], "distance_px": 2, "arrived": True}]
    with pytest.raises(DragError, match=r"session.image_check\[1\].found: expected \[x, y\]"):
        load_session(edited(checked, tmp_path, image_check=bad))


def test_json_is_deterministic_and_documented_layout(session):
    twin = Session(
        image=session.image.copy(),
        handles=(Point(30.0, 20.0), Point(50.25, 40.0)),  # floats where the original has ints
        targets=session.targets,
        mask=session.mask.copy(),
        prompt=session.prompt,
        model=session.model,
        config=resolve_config(DragConfig, seed=7, lora_steps=3),
    )
    assert twin.to_json() == session.to_json()
    data = json.loads(session.to_json())
    assert sorted(data) == ["config", "format", "image", "mask", "model", "points", "prompt", "version"]
    assert data["format"] == "dragdiff-session" and data["version"] == 1
    assert data["points"][1] == {"handle": [50.25, 40.0], "target": [60.0, 41.5]}
    assert data["config"] == session.config.to_dict() and data["config"]["seed"] == 7
    assert set(data["image"]) == {"png_base64"}


def test_empty_mask_is_written_as_null(session, tmp_path):
    blank = Session(**{**vars(session), "mask": np.zeros((80, 96), bool)})
    assert json.loads(blank.to_json())["mask"] is None
    save_session(blank, tmp_path / "b.json")
    assert load_session(tmp_path / "b.json").to_json() == blank.to_json()


def test_request_round_trip(session):
    request = session.to_request()
    assert isinstance(request, DragRequest) and request.config.seed == 7
    assert Session.from_request(request, "tiny").to_json() == session.to_json()


def test_png_round_trip(session, tmp_path):
    result = noise(96, 80, seed=5)
    path = tmp_path / "result.png"
    save_result_png(result, session, path)
    assert load_session(path).to_json() == session.to_json()
    assert load_session(path).to_json() == session.to_json()
    assert (np.asarray(load_image(path)) == np.asarray(result)).all()
    assert Image.open(path).text[PNG_TEXT_KEY] == session.to_json()  # other tools can read it too


def test_png_with_a_session_larger_than_pillows_text_limit(tmp_path):
    big = Session(
        image=noise(700, 700),  # ~1.9 MB of base64: over Pillow's 1 MB MAX_TEXT_CHUNK
        handles=(Point(1, 1),),
        targets=(Point(2, 2),),
        mask=None,
        prompt="",
        model="tiny",
        config=resolve_config(DragConfig),
    )
    text = big.to_json()
    assert len(text) > 2**20
    path = tmp_path / "big.png"
    save_result_png(noise(64, 64, seed=9), big, path)
    assert load_session(path).to_json() == text
    assert load_image(path).size == (64, 64)


def test_partial_config_takes_defaults(session, tmp_path):
    loaded = load_session(edited(session, tmp_path, config={"seed": 3}))
    assert loaded.config == resolve_config(DragConfig, seed=3)


def test_optional_fields_may_be_left_out(session, tmp_path):
    loaded = load_session(edited(session, tmp_path, mask=None, prompt=None, config=None))
    assert loaded.mask is None and loaded.prompt == "" and loaded.config == resolve_config(DragConfig)


def test_image_and_mask_by_relative_path(session, tmp_path):
    (tmp_path / "in").mkdir()
    session.image.save(tmp_path / "in" / "photo.png")
    Image.fromarray(session.mask).save(tmp_path / "in" / "mask.png")
    path = edited(session, tmp_path, image={"path": "in/photo.png"}, mask={"path": "in/mask.png"})
    assert load_session(path).to_json() == session.to_json()


def test_save_is_atomic_and_overwrites(session, tmp_path):
    path = tmp_path / "s.json"
    path.write_text("old")
    save_session(session, path)
    assert path.read_text(encoding="utf-8") == session.to_json()
    assert os.listdir(tmp_path) == ["s.json"]  # no temporary file left behind
    with pytest.raises(DragError, match="cannot write '.*missing/s.json'.*check that its folder exists"):
        save_session(session, tmp_path / "missing" / "s.json")
    assert os.listdir(tmp_path) == ["s.json"]


# --- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["../../etc/passwd", "in/../../outside.png"])
def test_path_escaping_the_folder_is_refused(session, tmp_path, escape):
    path = edited(session, tmp_path, image={"path": escape})
    with pytest.raises(DragError, match=f"session.image.path: '{escape}' points outside the session's folder"):
        load_session(path)


def test_absolute_path_is_refused(session, tmp_path):
    session.image.save(tmp_path / "photo.png")
    path = edited(session, tmp_path, image={"path": str(tmp_path / "photo.png")})
    with pytest.raises(DragError, match="session.image.path: .* is absolute"):
        load_session(path)


def test_paths_need_a_file():
    with pytest.raises(DragError, match="session.image.path: paths need a session file"):
        data = {
            "format": "dragdiff-session",
            "version": 1,
            "image": {"path": "x.png"},
            "points": [],
            "model": "m",
        }
        data["points"] = [{"handle": [1, 1], "target": [2, 2]}]
        session_from_dict(data, None, DragConfig)


def test_wrong_version(session, tmp_path):
    with pytest.raises(DragError, match="session.version: this file is version 7; this dragdiff reads version 1"):
        load_session(edited(session, tmp_path, version=7))


def test_wrong_format(session, tmp_path):
    with pytest.raises(DragError, match="session: format 'other' is not one of .*is this a dragdiff session file"):
        load_session(edited(session, tmp_path, format="other"))


def test_missing_field(session, tmp_path):
    path = edited(session, tmp_path, points=None)
    with pytest.raises(DragError, match="edit.json': session: missing field 'points'"):
        load_session(path)


def test_unknown_field(session, tmp_path):
    with pytest.raises(DragError, match="session: unknown field 'foo'"):
        load_session(edited(session, tmp_path, foo=1))


def test_unknown_config_field(session, tmp_path):
    with pytest.raises(DragError, match=r"session.config: unknown parameter\(s\) \['lora_stepz'\]"):
        load_session(edited(session, tmp_path, config={"lora_stepz": 3}))


def test_bad_config_value(session, tmp_path):
    with pytest.raises(DragError, match="session.config.seed: expected a number"):
        load_session(edited(session, tmp_path, config={"seed": "x"}))


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (
            [{"handle": [1, 2], "target": [3, 4]}, {"handle": [1, 2], "target": "abc"}],
            r"session.points\[1\].target: expected \[x, y\] numbers, got 'abc'",
        ),
        ([{"handle": [1, True], "target": [3, 4]}], r"session.points\[0\].handle: expected \[x, y\] numbers"),
        ([{"handle": [1, 2], "target": [3, 4], "x": 1}], r"session.points\[0\]: unknown field 'x'"),
        ([{"handle": [1, 2]}], r"session.points\[0\]: missing field 'target'"),
        ([], "session.points: expected a non-empty list"),
    ],
)
def test_bad_points(session, tmp_path, points, message):
    with pytest.raises(DragError, match=message):
        load_session(edited(session, tmp_path, points=points))


def test_points_are_checked_against_the_image(session, tmp_path):
    points = [{"handle": [1, 2], "target": [96, 4]}]
    with pytest.raises(DragError, match=r"session: target 1 \(96.0, 4.0\) is outside the 96×80 image"):
        load_session(edited(session, tmp_path, points=points))


def test_mask_of_the_wrong_size(session, tmp_path):
    mask = {"png_base64": base64.b64encode(png_bytes(Image.new("L", (50, 40), 255))).decode()}
    with pytest.raises(DragError, match="session.mask: the mask is 50×40 but the image is 96×80"):
        load_session(edited(session, tmp_path, mask=mask))


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes('{"prompt": "café"}'.encode("latin-1"))
    with pytest.raises(DragError, match="session file '.*latin.json' is not UTF-8 text"):
        load_session(path)


def test_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "dragdiff-session",', encoding="utf-8")
    with pytest.raises(DragError, match="session file '.*broken.json' is not valid JSON: .* line 1"):
        load_session(path)


def test_millions_of_tiny_values_are_refused_before_parsing(tmp_path, monkeypatch):
    def parse(*args, **kwargs):
        raise AssertionError("the text was parsed")

    path = tmp_path / "values.json"
    path.write_text("[" + ",".join(["{}"] * 3_000_000) + "]", encoding="utf-8")  # 9 MB: ~200 MB once parsed
    monkeypatch.setattr(json, "loads", parse)
    with pytest.raises(DragError, match="not a session: it holds about 6,000,000 JSON values, above 100,000"):
        load_session(path)


def test_a_number_of_thousands_of_digits_is_named(tmp_path):
    path = tmp_path / "digits.json"
    path.write_text('{"seed": ' + "1" * 5000 + "}", encoding="utf-8")
    with pytest.raises(DragError, match="not a session: it holds a number too long to read"):
        load_session(path)


def test_missing_file(tmp_path):
    with pytest.raises(DragError, match="session file '.*nope.json' does not exist"):
        load_session(tmp_path / "nope.json")


def test_not_an_object(tmp_path):
    with pytest.raises(DragError, match="session: expected a JSON object, got a list"):
        load_session(write_json(tmp_path / "list.json", [1, 2]))


def test_huge_embedded_image_is_refused_before_decoding(session, tmp_path, monkeypatch):
    def decode(*args, **kwargs):
        raise AssertionError("base64 was decoded")

    monkeypatch.setattr(base64, "b64decode", decode)
    path = edited(session, tmp_path, image={"png_base64": "A" * (MAX_EMBEDDED_BASE64_CHARS + 4)})
    with pytest.raises(DragError, match="session.image.png_base64: 67,108,868 characters of base64, above"):
        load_session(path)


def test_embedded_image_goes_through_the_pixel_limit(session, tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + chunk(b"IEND", b"")
    )
    path = edited(session, tmp_path, image={"png_base64": base64.b64encode(bomb).decode()})
    start = time.perf_counter()
    with pytest.raises(DragError, match="session.image: image data has more pixels .*16,777,216"):
        load_session(path)
    assert time.perf_counter() - start < 1.0


def test_invalid_base64(session, tmp_path):
    with pytest.raises(DragError, match="session.image.png_base64: not valid base64"):
        load_session(edited(session, tmp_path, image={"png_base64": "@@@@"}))


def test_png_without_a_session(tmp_path):
    path = tmp_path / "plain.png"
    noise(64, 64).save(path)
    with pytest.raises(DragError, match="plain.png carries no dragdiff session"):
        load_session(path)


def test_session_construction_validates(session):
    with pytest.raises(DragError, match=r"target 1 \(500.0, 1.0\) is outside the 96×80 image"):
        Session(**{**vars(session), "handles": (Point(1, 1),), "targets": (Point(500, 1),)})
    with pytest.raises(DragError, match="Session.model: expected a model name"):
        Session(**{**vars(session), "model": ""})
