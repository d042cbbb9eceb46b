"""dragdiff.images: every input mode becomes the right RGB pixels; bad or huge files are refused early."""

import os
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from dragdiff.errors import DragError
from dragdiff.images import (
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE,
    load_image,
    load_mask,
    mask_to_image,
    png_bytes,
)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose IHDR claims width×height RGB but whose data is one tiny row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00" * 3)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def saved(image: Image.Image, path, **options) -> str:
    image.save(path, **options)
    return str(path)


# --- modes ------------------------------------------------------------------------------------------------


def test_grayscale_and_one_bit_become_gray_rgb(tmp_path):
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # 64×64, values 0..252
    out = np.asarray(load_image(saved(Image.fromarray(ramp), tmp_path / "l.png")))
    assert out.shape == (64, 64, 3) and (out == ramp[..., None]).all()

    bits = Image.fromarray(ramp >= 128).convert("1")
    out = np.asarray(load_image(saved(bits, tmp_path / "one.png")))
    assert set(np.unique(out)) == {0, 255} and (out[:, :, 0] == np.where(ramp >= 128, 255, 0)).all()


def test_rgba_transparent_pixels_come_out_white(tmp_path):
    rgba = np.zeros((64, 80, 4), np.uint8)
    rgba[..., :3] = (200, 10, 10)
    rgba[:, 40:, 3] = 255  # right half opaque red, left half fully transparent red
    rgba[:, 20, 3] = 128  # one half-transparent column
    out = np.asarray(load_image(saved(Image.fromarray(rgba), tmp_path / "a.png")))
    assert (out[:, :20] == 255).all()
    assert (out[:, 40:] == (200, 10, 10)).all()
    assert np.abs(out[0, 20].astype(int) - (228, 132, 132)).max() <= 1  # 200·0.5 + 255·0.5, ...


def test_la_composites_on_white():
    la = Image.merge("LA", (Image.new("L", (64, 64), 0), Image.new("L", (64, 64), 0)))
    la.paste(Image.new("LA", (32, 64), (0, 255)), (0, 0))  # left half opaque black
    out = np.asarray(load_image(la))
    assert (out[:, :32] == 0).all() and (out[:, 32:] == 255).all()


def test_palette_with_and_without_transparency(tmp_path):
    index = np.zeros((64, 64), np.uint8)
    index[:, 32:] = 1
    palette = Image.fromarray(index, mode="L").convert("P")
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    out = np.asarray(load_image(saved(palette, tmp_path / "p.png")))
    assert (out[:, :32] == (0, 0, 255)).all() and (out[:, 32:] == (0, 255, 0)).all()

    out = np.asarray(load_image(saved(palette, tmp_path / "pt.png", transparency=0)))
    assert (out[:, :32] == 255).all() and (out[:, 32:] == (0, 255, 0)).all()


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_is_scaled_by_257_not_clipped(tmp_path, mode):
    values = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    if mode == "I;16B":
        image = Image.frombytes("I;16B", (64, 64), values.astype(">u2").tobytes())
    else:
        image = Image.fromarray(values if mode == "I;16" else values.astype(np.int32))
    assert image.mode == mode
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert (np.asarray(load_image(image))[..., 0] == expected).all()
    # And through a real 16-bit PNG file.
    assert (np.asarray(load_image(saved(image, tmp_path / "deep.png")))[..., 1] == expected).all()
    assert expected.max() == 255 and len(np.unique(expected)) > 200  # a true gradient, not clipped to 255


def test_float_images_read_as_unit_range_or_byte_range():
    unit = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    out = np.asarray(load_image(Image.fromarray(unit, mode="F")))[..., 0]
    assert out.min() == 0 and out.max() == 255 and (out == np.rint(unit * 255)).all()
    bytes_range = unit * 200 + 10
    out = np.asarray(load_image(Image.fromarray(bytes_range, mode="F")))[..., 0]
    assert (out == np.rint(bytes_range)).all()


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    red = Image.new("RGB", (64, 64), (220, 30, 30)).convert("CMYK")
    path = saved(red, tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(load_image(path))
    assert np.abs(out[32, 32].astype(int) - (220, 30, 30)).max() < 12


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (120, 80), (0, 0, 200))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = saved(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(path)
    assert upright.size == (80, 120)
    r, g, b = upright.getpixel((75, 5))  # the marker is now at the top-right
    assert r > 200 and b < 60
    assert upright.getpixel((5, 5))[2] > 150  # and the top-left is blue


def test_png_bytes_round_trip_is_lossless_and_drops_metadata():
    pixels = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.info["icc_profile"] = b"not a real profile"
    data = png_bytes(image)
    assert (np.asarray(load_image(data)) == pixels).all()
    assert b"iCCP" not in data
    assert png_bytes(Image.fromarray(pixels.copy())) == data  # equal pixels, equal bytes


def test_no_file_handle_is_left_open(tmp_path):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    path = saved(Image.new("RGB", (64, 64)), tmp_path / "x.png")
    load_image(path)
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert os.path.realpath(path) not in open_files


# --- refusals ---------------------------------------------------------------------------------------------


def test_bomb_header_is_refused_fast_naming_the_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(20000, 20000))
    start = time.perf_counter()
    with pytest.raises(DragError) as error:
        load_image(path)
    assert time.perf_counter() - start < 1.0
    assert "bomb.png" in str(error.value) and f"{MAX_IMAGE_PIXELS:,}" in str(error.value)


def test_oversized_header_is_refused_before_any_pixel_is_decoded(monkeypatch):
    def decode_attempted(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode_attempted)
    with pytest.raises(DragError, match=r"5000×5000 = 25,000,000 pixels, above the limit of 16,777,216"):
        load_image(png_claiming(5000, 5000))


def test_pillows_own_refusal_past_twice_its_limit_becomes_a_message():
    # 15000² is past twice Pillow's default limit (2 × 89.5 M), though within the dragdiff limit asked for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DragError, match=r"more pixels than Pillow decodes safely \(Image size \(225000000"):
            load_image(png_claiming(15000, 15000), max_pixels=300_000_000)


def test_max_pixels_is_configurable():
    with pytest.raises(DragError, match="100×100 = 10,000 pixels, above the limit of 4,096 pixels \\(64×64\\)"):
        load_image(Image.new("RGB", (100, 100)), max_pixels=64 * 64)


def test_tiny_image_is_refused():
    with pytest.raises(DragError, match=f"image is 63×200; both sides must be at least {MIN_IMAGE_SIDE} px"):
        load_image(Image.new("RGB", (63, 200)))


def test_truncated_png_names_the_file(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DragError, match="image file '.*cut.png' cannot be read as an image"):
        load_image(path)


def test_text_file_named_png_names_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am not a picture\n")
    with pytest.raises(DragError, match="notes.png' cannot be read as an image"):
        load_image(path, what="mask")


def test_formats_outside_the_list_are_not_opened(tmp_path):
    path = tmp_path / "drawing.eps"  # Pillow would identify this and hand its contents to Ghostscript
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n")
    assert Image.open(path).format == "EPS"
    with pytest.raises(DragError, match="drawing.eps' cannot be read as an image.*PNG, JPEG, WEBP"):
        load_image(path)


def test_missing_path_and_folder_are_refused(tmp_path):
    with pytest.raises(DragError, match="image file '.*nowhere.png' does not exist"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(DragError, match="is a folder"):
        load_image(str(tmp_path))


def test_wrong_source_type_is_refused():
    with pytest.raises(DragError, match="expected a file path, PNG/JPEG bytes or a PIL image, got int"):
        load_image(42)


# --- masks ------------------------------------------------------------------------------------------------


def test_mask_threshold_is_luminance_128():
    gray = np.full((96, 128), 127, np.uint8)
    gray[:, 64:] = 128
    mask = load_mask(Image.fromarray(gray), (128, 96))
    assert mask.shape == (96, 128) and mask.dtype == bool
    assert not mask[:, :64].any() and mask[:, 64:].all()


def test_mask_transparent_means_not_editable(tmp_path):
    rgba = np.full((96, 128, 4), 255, np.uint8)
    rgba[:, :50, 3] = 0  # white but transparent
    mask = load_mask(saved(Image.fromarray(rgba), tmp_path / "m.png"), (128, 96))
    assert not mask[:, :50].any() and mask[:, 50:].all()


def test_mask_of_wrong_size_names_both_sizes(tmp_path):
    path = saved(Image.new("L", (100, 80), 255), tmp_path / "m.png")
    with pytest.raises(DragError, match="the mask is 100×80 but the image is 128×96"):
        load_mask(path, (128, 96))
    with pytest.raises(DragError, match="the mask is 100×80 but the image is 128×96"):
        load_mask(np.ones((80, 100), bool), (128, 96))


def test_empty_mask_is_none():
    assert load_mask(Image.new("L", (128, 96), 0), (128, 96)) is None
    assert load_mask(np.zeros((96, 128)), (128, 96)) is None


@pytest.mark.parametrize(
    "array",
    [
        np.array([[True, False]] * 64),
        np.array([[1.0, 0.4]] * 64),
        np.array([[255, 127]] * 64, dtype=np.uint8),
    ],
    ids=["bool", "unit", "byte"],
)
def test_mask_arrays(array):
    mask = load_mask(array, (2, 64))
    assert mask.dtype == bool and mask[:, 0].all() and not mask[:, 1].any()


def test_bad_mask_arrays_are_refused():
    with pytest.raises(DragError, match="2-D"):
        load_mask(np.ones((64, 64, 3)), (64, 64))
    with pytest.raises(DragError, match="0..1 or 0..255"):
        load_mask(np.full((64, 64), 300.0), (64, 64))
    with pytest.raises(DragError, match="0..1 or 0..255"):
        load_mask(np.full((64, 64), np.nan), (64, 64))


def test_mask_to_image_round_trips():
    mask = np.random.default_rng(2).random((70, 90)) > 0.5
    image = mask_to_image(mask)
    assert image.mode == "L" and image.size == (90, 70) and set(np.unique(np.asarray(image))) == {0, 255}
    assert (load_mask(png_bytes(image), (90, 70)) == mask).all()


def test_messages_say_mask_for_masks(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DragError, match="mask file '.*broken.png'"):
        load_mask(path, (64, 64))
