"""DragConfig: every knob of a DragDiffusion edit, with defaults read from configs/drag.yaml."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import DragError

# Fields that change speed and memory but not the edit (beyond numeric noise): off in the benchmark's "naive".
SPEED_FIELDS = (
    "truncate_unet",
    "lora_encode_once",
    "fused_optimizers",
    "channels_last",
    "compile_convolutions",
    "gradient_checkpointing",
    "vae_tiling",
)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "drag.yaml"


@dataclass(frozen=True)
class DragConfig:
    """All parameters of one edit. Field comments and sources live in configs/drag.yaml."""

    seed: int
    resolution: int | None
    lora_steps: int
    lora_rank: int
    lora_lr: float
    lora_batch_size: int
    n_inference_steps: int
    n_inversion_steps: int
    feature_blocks: tuple[int, ...]
    supervision_scale: float
    drag_steps: int
    drag_lr: float
    motion_radius: int
    tracking_radius: int
    stop_distance: float
    mask_weight: float
    reference_attention: bool
    reference_attention_blocks: tuple[int, ...]
    truncate_unet: bool
    lora_encode_once: bool
    fused_optimizers: bool
    channels_last: bool
    compile_convolutions: bool
    gradient_checkpointing: bool
    vae_tiling: bool

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> DragConfig:
        """Defaults from configs/drag.yaml, then `path` (a YAML file of some keys), then `overrides`."""
        values = read_config_file(DEFAULT_CONFIG_FILE)
        if path is not None:
            values.update(read_config_file(Path(path)))
        values.update(overrides)
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> DragConfig:
        """Validate a complete mapping of fields; errors name the field."""
        return cls(**validated_fields(cls, values, where, _RULES))

    def replace(self, **changes: Any) -> DragConfig:
        return DragConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def pick(self, *names: str) -> dict[str, Any]:
        """The named fields, e.g. those a cached stage depends on (its cache key)."""
        values = self.to_dict()
        return {n: values[n] for n in names}


# (type, minimum, maximum, allow None) per field; checked on every load so that bad sessions fail early.
_RULES: dict[str, tuple[type, float | None, float | None, bool]] = {
    "seed": (int, 0, 2**32 - 1, False),
    "resolution": (int, 64, 4096, True),
    "lora_steps": (int, 0, 10_000, False),
    "lora_rank": (int, 1, 1024, False),
    "lora_lr": (float, 0.0, 1.0, False),
    "lora_batch_size": (int, 1, 64, False),
    "n_inference_steps": (int, 1, 1000, False),
    "n_inversion_steps": (int, 1, 1000, False),
    "feature_blocks": (tuple, 0, 16, False),
    "supervision_scale": (float, 0.01, 1.0, False),
    "drag_steps": (int, 0, 10_000, False),
    "drag_lr": (float, 0.0, 10.0, False),
    "motion_radius": (int, 0, 64, False),
    "tracking_radius": (int, 0, 64, False),
    "stop_distance": (float, 0.0, 1e6, False),
    "mask_weight": (float, 0.0, 1e6, False),
    "reference_attention": (bool, None, None, False),
    "reference_attention_blocks": (tuple, 0, 16, False),
    **{name: (bool, None, None, False) for name in SPEED_FIELDS},
}


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


def _coerce(name: str, value: Any, rule: tuple) -> Any:
    kind, low, high, nullable = rule
    if value is None:
        if nullable:
            return None
        raise DragError(f"{name}: a value is required, got null")
    if kind is str:  # low holds the allowed values; None: any text (a path)
        if low is None:
            if not isinstance(value, str) or not value.strip():
                raise DragError(f"{name}: expected text (a path), got {value!r}")
            return value
        if value not in low:
            raise DragError(f"{name}: {value!r} is not one of {list(low)}")
        return value
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise DragError(f"{name}: expected a non-empty list of block indices, got {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, (int, low, high, False)) for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise DragError(f"{name}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DragError(f"{name}: expected a number, got {value!r}")
    if kind is int and value != int(value):
        raise DragError(f"{name}: expected a whole number, got {value!r}")
    value = kind(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise DragError(f"{name}: {value!r} is out of range [{low}, {high}]")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The parameter: value mapping of a YAML file (validated later, with the rest, by DragConfig.from_dict)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DragError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DragError(f"config file {path} must hold a mapping of parameter: value")
    return data
