"""Loading user images and masks into the forms the engine expects, and writing them back as PNG.

Sizes are (width, height) as in Pillow; mask arrays are H×W (row = y, column = x), True = may change.
Every loader returns fully decoded data with no open file handle, and every problem is a DragError that
names the file (or `what` the data is) and says what to do about it.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from .errors import DragError

MAX_IMAGE_PIXELS = 4096 * 4096  # documented limit; larger inputs are refused from the header, before decoding
MIN_IMAGE_SIDE = 64  # 8 latent pixels: anything smaller leaves the UNet nothing to work on
# The long side over the short one. The working width is the model's native size and the height follows the
# aspect ratio: a 64×200000 strip (190 KB, under the pixel limit) would be worked on at 512×1.6 million and
# took 9 GB within seconds. 8:1 covers panoramas (at 512 wide: 4096 tall at most).
MAX_ASPECT_RATIO = 8
MASK_THRESHOLD = 128  # mask luminance at or above this (of 255) marks a pixel as editable
# Formats Pillow may open. Others stay closed: EPS, for one, runs Ghostscript on the file's contents.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "AVIF", "TIFF", "BMP", "GIF")

ImageSource = str | Path | bytes | Image.Image
MaskSource = ImageSource | np.ndarray

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


def load_image(
    source: ImageSource, *, max_pixels: int = MAX_IMAGE_PIXELS, what: str = "image", keep_alpha: bool = False
) -> Image.Image:
    """Decode `source` (a path, encoded bytes in one of IMAGE_FORMATS, or a PIL image) into upright RGB.

    - EXIF orientation is applied, so the result is the size the user sees (a rotated JPEG swaps W and H).
    - Transparency (alpha, palette or colour-key) is composited on white; with `keep_alpha` (an image to
      edit, whose result keeps the input's transparency) it is returned as RGBA instead, and `flatten` gives
      what the model sees.
    - 16-bit data (modes I;16, I;16B, I) is scaled value/257, so 65535 -> 255; mode I is read as 16-bit.
    - Float data (mode F) is read as 0..1 when every value lies in [0, 1], else as 0..255; NaN becomes 0.
    - More than `max_pixels` pixels is refused from the header, before any pixel is decoded.
    - A side below MIN_IMAGE_SIDE is refused.
    `what` names the data in messages ("image", "mask", ...).
    """
    label = _label(source, what)
    image = _decode(source, label, max_pixels)
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DragError(
            f"{label} is {width}×{height}; both sides must be at least {MIN_IMAGE_SIDE} px, so use a larger image"
        )
    if keep_alpha and image.mode not in (*_SIXTEEN_BIT_MODES, "F") and image.has_transparency_data:
        return image.convert("RGBA")
    return _to_rgb(image, _WHITE, label)


def flatten(image: Image.Image) -> Image.Image:
    """The RGB picture a model sees: an RGBA image composited on white, as load_image does; RGB unchanged."""
    return image if image.mode == "RGB" else _to_rgb(image, _WHITE, "image")


def load_mask(source: MaskSource, size: tuple[int, int]) -> np.ndarray | None:
    """Read a mask for an image of `size` (width, height) into an H×W bool array, True = may change.

    An image source may have any mode: it is composited on black (transparent = not editable), turned into
    luminance, and pixels >= MASK_THRESHOLD (128) are editable. An array source must be 2-D and hold bools,
    numbers in 0..1 (editable >= 0.5) or numbers in 0..255 (editable >= 128).

    Returns None when nothing is marked editable: like no mask at all, that lets the whole image change, so
    the caller should warn the user ("the mask is empty, so the whole image may change").
    """
    if isinstance(source, np.ndarray):
        mask = _mask_from_array(source, size)
    else:
        label = _label(source, "mask")
        image = _decode(source, label, MAX_IMAGE_PIXELS)
        _check_mask_size((image.width, image.height), size)
        luminance = _to_rgb(image, _BLACK, label).convert("L")
        mask = np.asarray(luminance) >= MASK_THRESHOLD
    return mask if mask.any() else None


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """An H×W bool mask as a W×H mode-L image: 255 where True (editable), 0 elsewhere."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise DragError(f"mask: expected a 2-D array (height × width), got {_describe(mask)}")
    return Image.fromarray(np.where(mask.astype(bool), 255, 0).astype(np.uint8))


def png_bytes(image: Image.Image, *, pnginfo: PngInfo | None = None) -> bytes:
    """Lossless PNG of `image`'s pixels; load_image(png_bytes(im)) gives the pixels back.

    No metadata from `image.info` (ICC profile, EXIF) is written, so equal pixels give equal bytes; `pnginfo`
    adds text chunks.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", icc_profile=None, pnginfo=pnginfo)
    return buffer.getvalue()


def read_png_text(path: str | Path, key: str, *, max_bytes: int) -> str | None:
    """The text a PNG stores under `key` (tEXt, zTXt or iTXt chunk), or None; no pixel data is read.

    The chunks are parsed here rather than by Pillow, whose limit of 1 MB of text per chunk
    (PngImagePlugin.MAX_TEXT_CHUNK) is too small for a session with an embedded image; `max_bytes` bounds
    both the stored and the decompressed text.
    """
    label = f"file '{path}'"
    try:
        with Path(path).open("rb") as file:
            if file.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise DragError(f"{label} is not a PNG file")
            return _find_png_text(file, key.encode("latin-1"), max_bytes, label)
    except FileNotFoundError as exc:
        raise DragError(f"{label} does not exist; check the path") from exc
    except OSError as exc:
        raise DragError(f"cannot read {label}: {exc.strerror or exc}") from exc


# --- decoding ---------------------------------------------------------------------------------------------


def _label(source: object, what: str) -> str:
    if isinstance(source, (str, Path)):
        return f"{what} file '{source}'"
    if isinstance(source, bytes):
        return f"{what} data"
    if isinstance(source, Image.Image):
        return what
    raise DragError(f"{what}: expected a file path, PNG/JPEG bytes or a PIL image, got {_describe(source)}")


def _decode(source: ImageSource, label: str, max_pixels: int) -> Image.Image:
    """The upright image in whatever mode it is stored, fully loaded and independent of any file."""
    if isinstance(source, Image.Image):
        _check_pixels(source.size, label, max_pixels)
        return ImageOps.exif_transpose(source)
    if isinstance(source, (str, Path)):
        _check_is_file(Path(source), label)
    try:
        return _decode_with_pillow(source, label, max_pixels)
    except _PngTextTooLarge:
        # Our own result PNGs may carry more session text than Pillow accepts; the text is not pixels.
        return _decode_with_pillow(_without_png_text(source), label, max_pixels)


class _PngTextTooLarge(Exception):
    """Pillow refused a PNG's text chunks for exceeding its MAX_TEXT_CHUNK / MAX_TEXT_MEMORY limits."""


def _decode_with_pillow(source: str | Path | bytes, label: str, max_pixels: int) -> Image.Image:
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    # Pillow warns above its process-wide limit and refuses above twice it; the header check below applies
    # dragdiff's own limit with a clearer message, so the warning is silenced (catch_warnings: this call only).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp, formats=IMAGE_FORMATS) as image:
                _check_pixels(image.size, label, max_pixels)  # from the header: nothing decoded yet
                image.load()
                return ImageOps.exif_transpose(image)  # a copy, so closing the file loses nothing
        except DragError:
            raise
        except Image.DecompressionBombError as exc:
            raise DragError(
                f"{label} has more pixels than Pillow decodes safely ({exc}); dragdiff's limit is "
                f"{_pixel_limit(max_pixels)}; downscale it and try again"
            ) from exc
        except ValueError as exc:
            if "MAX_TEXT" in str(exc):
                raise _PngTextTooLarge from exc
            raise _unreadable(label, exc) from exc
        except Exception as exc:  # Pillow's format plugins raise OSError, SyntaxError, struct.error, ...
            raise _unreadable(label, exc) from exc


def _unreadable(label: str, exc: Exception) -> DragError:
    # the decoder's own words (exc, chained for the log) name its internals and often the path again
    return DragError(
        f"{label} cannot be read as an image; check that it is a complete file in one of {', '.join(IMAGE_FORMATS)}"
    )


def _check_is_file(path: Path, label: str) -> None:
    if path.is_dir():
        raise DragError(f"{label} is a folder; give the path of an image file")
    if not path.is_file():
        raise DragError(f"{label} does not exist; check the path")


def _check_pixels(size: tuple[int, int], label: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise DragError(
            f"{label} is {width}×{height} = {width * height:,} pixels, above the limit of "
            f"{_pixel_limit(max_pixels)}; downscale it and try again"
        )
    check_aspect(size, label)


def check_aspect(size: tuple[int, int], label: str) -> None:
    """Refuse a picture longer than MAX_ASPECT_RATIO times its width (or the other way round)."""
    width, height = size
    if max(width, height) > MAX_ASPECT_RATIO * max(min(width, height), 1):
        raise DragError(f"{label} is {width}×{height}, more than {MAX_ASPECT_RATIO}:1; crop it to the part to edit")


def _pixel_limit(max_pixels: int) -> str:
    side = math.isqrt(max_pixels)
    square = f" ({side}×{side})" if side * side == max_pixels else ""
    return f"{max_pixels:,} pixels{square}"


# --- conversion -------------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image, background: tuple[int, int, int], label: str) -> Image.Image:
    """RGB with any transparency composited on `background`; high-bit-depth data scaled to 8 bits."""
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_to_l(image)
    elif image.mode == "F":
        image = _float_to_l(image)
    try:
        if not image.has_transparency_data:
            return image.convert("RGB")
        rgba = image.convert("RGBA")
    except ValueError as exc:
        raise DragError(
            f"{label} has colour mode {image.mode!r}, which cannot be converted to RGB ({exc}); "
            "save it as an RGB PNG or JPEG"
        ) from exc
    flat = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(flat, rgba).convert("RGB")


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips at 255 instead of scaling; 65535 / 257 = 255 exactly.
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8))


def _float_to_l(image: Image.Image) -> Image.Image:
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    scale = 255.0 if values.size and values.min() >= 0 and values.max() <= 1 else 1.0
    return Image.fromarray(np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8))


# --- masks ------------------------------------------------------------------------------------------------


def _mask_from_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if array.ndim != 2:
        raise DragError(f"mask: expected a 2-D array (height × width), got shape {array.shape}")
    _check_mask_size((array.shape[1], array.shape[0]), size)
    if array.dtype == bool:
        return array.copy()
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DragError(f"mask: expected bool or numeric values, got an array of {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise DragError(f"mask: values must be bool, 0..1 or 0..255; got values from {values.min()} to {values.max()}")
    threshold = 0.5 if values.max() <= 1 else MASK_THRESHOLD
    return values >= threshold


def _check_mask_size(mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    if tuple(mask_size) != tuple(image_size):
        (mw, mh), (iw, ih) = mask_size, image_size
        raise DragError(
            f"the mask is {mw}×{mh} but the image is {iw}×{ih}; draw the mask over this image or resize it to {iw}×{ih}"
        )


# --- PNG chunks -------------------------------------------------------------------------------------------


def _png_chunk_headers(file: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Yield (chunk type, data length) after the signature; the consumer reads or skips data + 4-byte CRC."""
    while True:
        header = file.read(8)
        if len(header) < 8:
            return
        length, chunk_type = struct.unpack(">I4s", header)
        yield chunk_type, length
        if chunk_type == b"IEND":
            return


def _find_png_text(file: BinaryIO, key: bytes, max_bytes: int, label: str) -> str | None:
    for chunk_type, length in _png_chunk_headers(file):
        head = file.read(min(length, len(key) + 1))
        if chunk_type not in _TEXT_CHUNKS or head != key + b"\0":
            file.seek(length - len(head) + 4, os.SEEK_CUR)
            continue
        if length > max_bytes:
            raise DragError(f"{label}: the '{key.decode()}' text is {length:,} bytes, above {max_bytes:,}")
        data = head + file.read(length - len(head))
        crc = file.read(4)
        if len(data) < length or len(crc) < 4 or zlib.crc32(chunk_type + data) != int.from_bytes(crc, "big"):
            raise DragError(f"{label} is truncated or corrupt (bad '{key.decode()}' text chunk)")
        return _chunk_text(chunk_type, data[len(head) :], max_bytes, label)
    return None


def _chunk_text(chunk_type: bytes, body: bytes, max_bytes: int, label: str) -> str:
    """The text of a tEXt / zTXt / iTXt chunk, given the bytes after its key's NUL."""
    try:
        if chunk_type == b"tEXt":
            return body.decode("latin-1")
        if chunk_type == b"zTXt":  # compression method byte, then zlib data
            return _inflate(body[1:], max_bytes, label).decode("latin-1")
        compressed, text = body[0], body[2:].split(b"\0", 2)[2]  # iTXt: flag, method, language\0, key\0
        return (_inflate(text, max_bytes, label) if compressed else text).decode("utf-8")
    except (IndexError, UnicodeDecodeError) as exc:
        raise DragError(f"{label} has a malformed text chunk ({exc})") from exc


def _inflate(data: bytes, max_bytes: int, label: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, max_bytes)
    except zlib.error as exc:
        raise DragError(f"{label} has a corrupt compressed text chunk ({exc})") from exc
    if inflater.unconsumed_tail:
        raise DragError(f"{label}: a compressed text chunk expands to more than {max_bytes:,} bytes")
    return text


def _without_png_text(source: str | Path | bytes) -> bytes:
    """The PNG with its tEXt/zTXt/iTXt chunks dropped (pixels, palette and EXIF kept)."""
    with io.BytesIO(source) if isinstance(source, bytes) else Path(source).open("rb") as file:
        kept = [file.read(len(PNG_SIGNATURE))]
        for chunk_type, length in _png_chunk_headers(file):
            body = file.read(length + 4)
            if chunk_type not in _TEXT_CHUNKS:
                kept.append(struct.pack(">I4s", length, chunk_type) + body)
    return b"".join(kept)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__
