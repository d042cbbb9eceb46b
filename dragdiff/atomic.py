"""The one atomic file writer: readers (and a crash) see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DragError


def write_atomic(path: Path, data: bytes) -> None:
    try:
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DragError(f"cannot write '{path}': {exc.strerror or exc}; check that its folder exists") from exc
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # mkstemp creates 0600; a saved file should be readable like any other
        os.replace(temp, path)
    except OSError as exc:
        raise DragError(f"cannot write '{path}': {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(temp):  # only after a failure: a half-written file is never left behind
            os.unlink(temp)
