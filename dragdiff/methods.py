"""The registry of editing methods: the CLI (--method), the app, the evaluation, the benchmark and session
replay read it, so a new method touches its own subpackage and one `register` line below.

A method is a class over a Runtime (dragdiff.runtime) with:

    name: str                         its registry key, e.g. "dragdiffusion"
    config_type: type                 its config dataclass (DEFAULTS_FILE, MODEL_SECTION, from_dict, to_dict)
    request_types: tuple[type, ...]   what `edit` accepts; every method accepts a point drag (DragRequest)
    session_format: str               the "format" of the sessions it writes
    __init__(runtime)
    default_config(mode=None, file=, session=, **explicit) -> config   dragdiff.config.resolve_config's
                                      layers over the model's defaults (mode None: a point drag)
    edit(request, on_progress=None, should_stop=None) -> EditResult (image, session, timings, warnings)
    request_from_session(data, folder, max_pixels) -> (request, model spec)
    prepare(...)                      optional: the part of an edit that can be done before the points

No method imports another; what two methods share is a top-level module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import DragError


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str  # shown in tables and tabs
    summary: str  # one line for --help
    target: Any  # the class, or "module:Class" imported when first needed (torch loads slowly)

    def load(self) -> type:
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


_METHODS: dict[str, MethodInfo] = {}


def register(name: str, target: Any, *, title: str, summary: str) -> None:
    """Add (or replace) a method; `target` is its class or "module:Class"."""
    _METHODS[name] = MethodInfo(name, title, summary, target)


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def names() -> list[str]:
    return list(_METHODS)


def info(name: str) -> MethodInfo:
    if name not in _METHODS:
        raise DragError(f"method {name!r} is not one of {names()}")
    return _METHODS[name]


def method_class(name: str) -> type:
    return info(name).load()


def default_method(model_spec: str) -> str:
    """The method an edit uses when none is named: the model's dragdiff.yaml `default_method` (the best
    measured on it), else GoodDrag, the better of the LoRA methods in the published DragBench figures."""
    from .models import model_defaults

    return model_defaults(model_spec).get("default_method", "gooddrag")


def method_for_session(data: Any) -> str:
    """The name of the method whose sessions have this parsed session's "format"."""
    found = data.get("format") if isinstance(data, dict) else None
    for name in names():
        if method_class(name).session_format == found:
            return name
    formats = [method_class(n).session_format for n in names()]
    raise DragError(f"session: format {found!r} is not one of {formats}; is this a dragdiff session file?")


def split_overrides(overrides: dict[str, Any], methods: list[str]) -> dict[str, dict[str, Any]]:
    """--set values that may mix the config fields of several methods -> {method: its own values} for each
    of `methods`; a name several configs have (seed, resolution, ...) goes to each, one that no registered
    method has is an error."""
    import dataclasses

    fields = {m: {f.name for f in dataclasses.fields(method_class(m).config_type)} for m in names()}
    known = set().union(*fields.values())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DragError(f"--set: unknown parameter(s) {unknown}; known parameters: {sorted(known)}")
    return {m: {k: v for k, v in overrides.items() if k in fields[m]} for m in methods}


register(
    "dragdiffusion",
    "dragdiff.drag:DragDiffusion",
    title="DragDiffusion",
    summary="LoRA on the image, then latent optimisation with point tracking (Shi et al., CVPR 2024)",
)
register(
    "gooddrag",
    "dragdiff.gooddrag:GoodDrag",
    title="GoodDrag",
    summary="LoRA, then drag alternated with denoising, toward the original features (Zhang et al., ICLR 2025)",
)
register(
    "inpaint4drag",
    "dragdiff.inpaint4drag:Inpaint4Drag",
    title="Inpaint4Drag",
    summary="warp the painted region along the points, inpaint what it reveals: no LoRA, seconds (Lu & Han, ICCV 2025)",
)
register(
    "dragon",
    "dragdiff.dragon:DragonDiffusion",
    title="DragonDiffusion",
    summary="training-free guidance: move, resize, drag, appearance, paste (Mou et al., ICLR 2024)",
)
