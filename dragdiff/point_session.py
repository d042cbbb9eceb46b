"""A versioned JSON record of one point drag of a point method (DragDiffusion, GoodDrag, Inpaint4Drag), saved as
a .json file or inside the result PNG. The methods differ in "format" and in the fields of "config".

Layout of version 1 (keys are sorted when written and nothing time-dependent is stored, so two equal
sessions give identical text and a replay can be compared byte for byte):

    {
      "format": "dragdiff-session",          (GoodDrag: "dragdiff-gooddrag-session", Inpaint4Drag:
                                             "dragdiff-inpaint4drag-session")
      "version": 1,
      "image": {"png_base64": "iVBORw0..."}  or  {"path": "photo.png"},
      "points": [{"handle": [x, y], "target": [x, y]}, ...],
      "mask": {"png_base64": "..."}  or  {"path": "mask.png"}  or  null,
      "prompt": "a photo of a cat",
      "model": "runwayml/stable-diffusion-v1-5",
      "config": {"seed": 42, "lora_steps": 80, ...},
      "image_check": [{"found": [x, y], "distance_px": d, "arrived": true}, ...]
    }

- points: (x, y) in pixels of the image, (0, 0) = centre of the top-left pixel (as in dragdiff.types).
- path: relative to the folder of the session file, and must stay inside it (no absolute paths, no '..'
  leading out of it).
- mask: an image of the same size; luminance >= 128 (alpha composited on black) = may change. null, or a
  mask with nothing marked, = the whole image may change.
- config: any subset of the method's config fields; missing ones take its built-in defaults (dragdiff/configs/drag.yaml,
  gooddrag.yaml, inpaint4drag.yaml). The seed is config.seed.
- image_check: what the check after the edit found (dragdiff.arrival), one entry per point; written with a
  result, read back for display, not an input of a replay.
- "mask", "prompt", "config" and "image_check" may be left out (null, "", all defaults and not checked);
  other fields are required, and unknown fields are errors.
Sessions written by dragdiff always embed the image and mask and list every config field. A result PNG
from `save_result_png` carries the same JSON in a compressed text chunk with the key "dragdiff-session".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .config import MethodConfig, resolve_config, short
from .errors import DragError
from .images import MAX_IMAGE_PIXELS, load_image, load_mask, mask_to_image
from .session_io import (
    base64_png,
    check_fields,
    checks_from_json,
    checks_json,
    image_source,
    json_kind,
    point_json,
    point_pairs_from_json,
    read_session_data,
    session_json,
    within,
)
from .types import DragRequest, Point, PointCheck
from .validation import check_request, effective_mask

SESSION_VERSION = 1

_REQUIRED_FIELDS = ("format", "version", "image", "points", "model")
_OPTIONAL_FIELDS = ("mask", "prompt", "config", "image_check")


@dataclass(frozen=True, eq=False)  # eq=False: images and arrays have no usable ==; compare to_json() instead
class Session:
    """One edit, complete enough to replay: the input image, the points, the mask, prompt, model and config.

    image: RGB. handles/targets: (x, y) input-image pixels. mask: H×W bool, True = may change, or None.
    Construction runs validation.check_request, so every Session can be saved and replayed.
    """

    image: Image.Image
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray | None
    prompt: str
    model: str
    config: MethodConfig  # its type says the method (and the session's "format")
    image_check: tuple[PointCheck, ...] | None = None  # the result's outcome check, when this records a result

    def __post_init__(self) -> None:
        check_request(self.to_request())
        if not isinstance(self.model, str) or not self.model.strip():
            raise DragError(f"Session.model: expected a model name (hub id, folder or file), got {self.model!r}")

    def to_request(self) -> DragRequest:
        return DragRequest(
            image=self.image,
            handles=tuple(self.handles),
            targets=tuple(self.targets),
            mask=self.mask,
            prompt=self.prompt,
            config=self.config,
        )

    @classmethod
    def from_request(
        cls, request: DragRequest, model: str, image_check: tuple[PointCheck, ...] | None = None
    ) -> Session:
        return cls(
            image=request.image,
            handles=tuple(request.handles),
            targets=tuple(request.targets),
            mask=request.mask,
            prompt=request.prompt,
            model=model,
            config=request.config,
            image_check=image_check,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of the module docstring, image and mask embedded as base64 PNG."""
        # An empty mask means "no mask"; writing null for it keeps the load -> to_json round trip exact.
        mask = effective_mask(self.mask)
        return {
            "format": self.config.SESSION_FORMAT,
            "version": SESSION_VERSION,
            "image": {"png_base64": base64_png(self.image)},
            "points": [
                {"handle": point_json(handle), "target": point_json(target)}
                for handle, target in zip(self.handles, self.targets, strict=True)
            ],
            "mask": None if mask is None else {"png_base64": base64_png(mask_to_image(mask))},
            "prompt": self.prompt,
            "model": self.model,
            "config": self.config.to_dict(),
        } | checks_json(self.image_check)

    def to_json(self) -> str:
        """Deterministic text: equal sessions give equal strings (sorted keys, ASCII, no timestamps)."""
        return session_json(self.to_dict())


def load_session(source: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Session:
    """Read a session of a point method from a .json file or from a result PNG that carries one
    (`save_result_png`); its "format" says which method's config it holds.

    An image (embedded or by path) of more than `max_pixels` pixels is refused before it is decoded.
    """
    path = Path(source)
    data = read_session_data(path)
    with within(f"session file '{path}'"):
        return session_from_dict(data, path.parent, _config_type_of(data), max_pixels=max_pixels)


def session_from_dict(
    data: Any, folder: Path | None, config_type: type[MethodConfig], *, max_pixels: int = MAX_IMAGE_PIXELS
) -> Session:
    """Validate parsed session JSON into a Session; errors name the field, e.g. "session.points[0].target".

    `folder` is where "path" entries are resolved; None refuses them (the JSON did not come from a file).
    An image of more than `max_pixels` pixels is refused from its header.
    """
    if not isinstance(data, dict):
        raise DragError(f"session: expected a JSON object, got {json_kind(data)}")
    _check_format_and_version(data, config_type.SESSION_FORMAT)
    check_fields(data, "session", _REQUIRED_FIELDS, _OPTIONAL_FIELDS)
    config = _config(data.get("config", {}), config_type)
    handles, targets = point_pairs_from_json(data["points"])
    source = image_source(data["image"], "session.image", folder)  # its errors name the field themselves
    with within("session.image"):
        image = load_image(source, max_pixels=max_pixels, keep_alpha=True)
    mask = None
    if data.get("mask") is not None:
        source = image_source(data["mask"], "session.mask", folder)
        with within("session.mask"):
            mask = load_mask(source, image.size)
    prompt, model = data.get("prompt", ""), data["model"]
    if not isinstance(prompt, str):
        raise DragError(f"session.prompt: expected text, got {json_kind(prompt)}")
    if not isinstance(model, str) or not model.strip():
        raise DragError(f"session.model: expected a model name (hub id, folder or file), got {short(model)}")
    with within("session"):  # check_request: points inside the image
        return Session(
            image=image,
            handles=handles,
            targets=targets,
            mask=mask,
            prompt=prompt,
            model=model,
            config=config,
            image_check=checks_from_json(data.get("image_check"), "session.image_check", len(handles)),
        )


def _config_type_of(data: Any) -> type[MethodConfig]:
    """The config type of the method whose sessions have this "format"; another method's session (or no
    session) is named in the error."""
    from .methods import method_class, method_for_session

    if not isinstance(data, dict):
        raise DragError(f"session: expected a JSON object, got {json_kind(data)}")
    _check_format_and_version(data, None)
    config_type = method_class(method_for_session(data)).config_type
    if not hasattr(config_type, "SESSION_FORMAT"):  # a method whose sessions are not point sessions
        raise DragError(f"this is a {data['format']} file; replay it with dragdiff edit --session FILE")
    return config_type


def _check_format_and_version(data: dict[str, Any], wanted: str | None) -> None:
    """Checked first: a file of another format or version may have other fields."""
    for name in ("format", "version"):
        if name not in data:
            raise DragError(f"session: missing field '{name}'; is this a dragdiff session file?")
    if wanted is not None and data["format"] != wanted:
        from .methods import method_for_session

        other = method_for_session(data)  # names the method whose session this is, or says it is none
        raise DragError(
            f"session.format: this is a {other} session, not '{wanted}'; replay it with dragdiff edit --session FILE"
        )
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise DragError(f"session.version: expected a whole number, got {short(version)}")
    if version != SESSION_VERSION:
        hint = "; update dragdiff to read it" if version > SESSION_VERSION else ""
        raise DragError(
            f"session.version: this file is version {version}; this dragdiff reads version {SESSION_VERSION}{hint}"
        )


def _config(values: Any, config_type: type[MethodConfig]) -> MethodConfig:
    """The recorded config; fields a hand-written session leaves out take the built-in defaults."""
    if not isinstance(values, dict):
        raise DragError(f"session.config: expected an object of {config_type.__name__} fields, got {json_kind(values)}")
    return resolve_config(config_type, session=values, where="session.config")


# --- writing ----------------------------------------------------------------------------------------------
