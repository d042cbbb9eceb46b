"""The one config resolver of every method, and the field checks their config dataclasses share.

A method's effective config is built in one documented order, each layer overriding the one before:

    1. built-in defaults     dragdiff/configs/<method>.yaml (with its `modes.<mode>` values, if any)
    2. the model's defaults  the model folder's dragdiff.yaml (a method other than DragDiffusion reads its
                             own section, e.g. `dragon:`; each may have `modes`)
    3. a config file         --config / the app's --config (a YAML mapping of some fields)
    4. a session             the complete config a saved session recorded
    5. explicit values       what the user set: flags, --set, the app's panel, keyword arguments

The CLI, the app, the Python API (`config=None` in a request = this model's defaults), session replay,
the evaluation and the benchmark all call `resolve_config`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from .errors import DragError

CONFIG_DIR = Path(str(resources.files("dragdiff") / "configs"))  # package data: works installed or in a checkout

C = TypeVar("C")


def resolve_config(
    config_type: type[C],
    model: Any = None,
    *,
    mode: str | None = None,
    file: str | Path | dict | None = None,
    session: dict[str, Any] | None = None,
    where: str = "config",
    **explicit: Any,
) -> C:
    """The effective config of `config_type` (a method's config dataclass) for `model` (a DiffusionModel,
        or None for the built-in defaults alone), in the order of the module docstring. Errors name the field
    (prefixed with `where`)."""
    modes = getattr(config_type, "MODES", ())
    if modes and mode not in modes:
        raise DragError(f"mode: {mode!r} is not one of {list(modes)}")
    values = _for_mode(read_config_file(CONFIG_DIR / config_type.DEFAULTS_FILE), mode)
    model_values = (model if isinstance(model, dict) else getattr(model, "defaults", None)) or {}
    values.update(_for_mode(model_section(model_values, config_type.MODEL_SECTION), mode))
    if file is not None:  # a path, or a mapping already read (e.g. one method's section of a file)
        values.update(_for_mode(file if isinstance(file, dict) else read_config_file(file), mode))
    values.update(session or {})
    values.update(explicit)
    return config_type.from_dict(values, where=where)


# Fields every method's config has: where it edits (work_area.py), how the result is put together
# (composite.py) and how it is checked (arrival.py).
RESULT_RULES: dict[str, tuple] = {
    "preserve_unmasked": (bool, None, None, False),
    "seam_px": (int, 0, 256, False),
    "image_check": (bool, None, None, False),
    "arrival_tolerance": (float, 0.0, 1.0, False),
    "work_area": (str, ("full", "region"), None, False),
    "region_padding": (float, 0.0, 10.0, False),
}


class MethodConfig:
    """Base of each method's frozen config dataclass. A subclass sets DEFAULTS_FILE (its built-in defaults: a
    file name in dragdiff/configs, or an absolute path), MODEL_SECTION (its section of a model's dragdiff.yaml;
    None: the top level), RULES ({field: (type, minimum, maximum, nullable)}) and, with modes, MODES."""

    DEFAULTS_FILE: ClassVar[str]
    MODEL_SECTION: ClassVar[str | None] = None
    RULES: ClassVar[dict[str, tuple]]

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config"):
        """Validate a complete mapping of fields; errors name the field."""
        return cls(**validated_fields(cls, values, where, cls.RULES))

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    def pick(self, *names: str) -> dict[str, Any]:
        """The named fields, e.g. those a cached stage depends on (its cache key)."""
        values = self.to_dict()
        return {n: values[n] for n in names}


# Top-level keys of a model's dragdiff.yaml that are about the model, not one method's values: the method the
# app starts with for it (the best measured on it).
MODEL_KEYS = ("default_method",)


def model_section(defaults: dict[str, Any], section: str | None) -> dict[str, Any]:
    """One method's part of a model's dragdiff.yaml: the named section, or (None) the top-level values, which
    are DragDiffusion's (every other method has a section, i.e. a mapping at the top level)."""
    if section is not None:
        return dict(defaults.get(section) or {})
    return {k: v for k, v in defaults.items() if not isinstance(v, dict) and k not in MODEL_KEYS}


def _for_mode(values: dict[str, Any], mode: str | None) -> dict[str, Any]:
    """Flatten {..., "modes": {mode: {...}}} into the values for one mode."""
    values = dict(values)
    modes = values.pop("modes", None) or {}
    return {**values, **modes.get(mode, {})} if mode else values


def field_help(config_type: type) -> dict[str, tuple[str, str]]:
    """{field: (default, comment)} from the built-in defaults file, so that help texts and the defaults
    share one source."""
    pattern = re.compile(r"^(\w+):\s*(.*?)\s*#\s*(.*)$")
    text = (CONFIG_DIR / config_type.DEFAULTS_FILE).read_text(encoding="utf-8")
    return {m[1]: (m[2], m[3]) for line in text.splitlines() if (m := pattern.match(line))}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The parameter: value mapping of a YAML file (validated later, with the rest, by the config type)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DragError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DragError(f"config file {path} must hold a mapping of parameter: value")
    return data


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def validated_fields(cls, values: dict[str, Any], where: str, rules: dict[str, tuple]) -> dict[str, Any]:
    """The fields of dataclass `cls` from a complete mapping, each checked against its rule (type, minimum,
    maximum, nullable); unknown, missing and bad values are errors that name the field."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise DragError(f"{where}: unknown parameter(s) {unknown}; known parameters are {names}")
    missing = [n for n in names if n not in values]
    if missing:
        raise DragError(f"{where}: missing parameter(s) {missing}")
    return {n: _coerce(f"{where}.{n}", values[n], rules[n]) for n in names}


def is_finite_number(value: object) -> bool:
    """A real number that is neither a bool, NaN nor infinite (numpy scalars count)."""
    import numpy as np

    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return is_number and math.isfinite(value)


def _coerce(name: str, value: Any, rule: tuple) -> Any:
    kind, low, high, nullable = rule
    if value is None:
        if nullable:
            return None
        raise DragError(f"{name}: a value is required, got null")
    if kind is str:  # low holds the allowed values; None: any text (a path)
        if low is None:
            if not isinstance(value, str) or not value.strip():
                raise DragError(f"{name}: expected text (a path), got {short(value)}")
            return value
        if value not in low:
            raise DragError(f"{name}: {short(value)} is not one of {list(low)}")
        return value
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise DragError(f"{name}: expected a non-empty list of block indices, got {short(value)}")
        if len(value) > high + 1:  # more entries than there are blocks: each costs every step some work
            raise DragError(f"{name}: {len(value):,} block indices; a model has at most {high + 1} blocks")
        return tuple(_coerce(f"{name}[{i}]", v, (int, low, high, False)) for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise DragError(f"{name}: expected true or false, got {short(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DragError(f"{name}: expected a number, got {short(value)}")
    if kind is int and value != int(value):
        raise DragError(f"{name}: expected a whole number, got {short(value)}")
    value = kind(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise DragError(f"{name}: {short(value)} is out of range [{low}, {high}]")
    return value


def short(value: Any, limit: int = 60) -> str:
    """A value in a message: its repr, cut at `limit` characters (a client may send megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
