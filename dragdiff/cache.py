"""A content-addressed cache of tensors (LoRA weights, inverted latents) in safetensors files.

Writes go to a temporary file that is renamed into place, so a reader never sees half a file; a file that
cannot be read is treated as a miss and removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from .atomic import write_atomic


def default_cache_dir() -> Path:
    return Path(os.environ.get("DRAGDIFF_CACHE", Path.home() / ".cache" / "dragdiff"))


def cache_key(*parts: Any) -> str:
    """A stable hex key of JSON-able parts and raw bytes."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


class TensorCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.safetensors"

    def load(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        path = self.path(kind, key)
        if not path.is_file():
            return None
        try:
            return load_file(path)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, never a crash
            path.unlink(missing_ok=True)
            return None

    def save(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> Path:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
        return path
