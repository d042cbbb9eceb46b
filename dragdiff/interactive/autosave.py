"""Never lose an edit: every finished result is written at once, with the session that replays it."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path

from ..session_io import save_result
from ..types import EditResult


def autosave(outputs: Path, result: EditResult) -> Path:
    """Write outputs/<date>/<time>-<id>.png (session embedded) and .json, atomically; return the PNG path."""
    png = new_result_path(outputs)
    save_result(result.image, result.session, png)
    return png


def remove_stale_temporary_files(outputs: Path, older_than_s: float = 600) -> list[Path]:
    """Delete the hidden temporary files that an atomic write leaves when its process is killed mid-write
    (".NAME.png.XXXX.tmp"), once they are older than any write takes, so that a server writing now is never
    touched. Returns what was removed. Called when the app starts."""
    if not outputs.is_dir():
        return []
    cutoff, removed = time.time() - older_than_s, []
    for path in outputs.rglob(".*.tmp"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def new_result_path(outputs: Path) -> Path:
    """A fresh outputs/<date>/<time>-<id>.png (the folder is created; the file is not)."""
    folder = outputs / datetime.now().strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{datetime.now().strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}.png"
