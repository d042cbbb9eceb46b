"""app.py with a pause inside a result's atomic write, so that a test can kill -9 the server right there.

DRAGDIFF_TEST_PAUSE_WRITE="N:MARKER" (read only here): the N-th call of dragdiff.atomic.write_atomic for a
result or session file (not a cache entry) in this process writes, flushes and fsyncs its temporary file as
usual, then, just before the os.replace that would put it in place, writes the temporary file's path to
MARKER and sleeps until it is killed. Everything else is app.py's own `main`, unchanged.
Usage: python tests/support/paused_app.py [app.py flags].
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
import dragdiff.atomic  # noqa: E402


class _PausingOs:
    """The os module as dragdiff.atomic sees it, except that the n-th replace() of a result never happens."""

    def __init__(self, count: int, marker: Path):
        self.count, self.marker, self.calls = count, marker, 0

    def __getattr__(self, name: str):
        return getattr(os, name)

    def replace(self, source, target) -> None:
        result = Path(target).suffix in (".png", ".json")
        self.calls += result
        if result and self.calls == self.count:
            self.marker.write_text(f"{source}\n{target}\n")
            while True:  # the temporary file is complete on disk; the rename is not done: kill -9 us here
                time.sleep(1)
        os.replace(source, target)


def main() -> None:
    count, marker = os.environ["DRAGDIFF_TEST_PAUSE_WRITE"].split(":", 1)
    dragdiff.atomic.os = _PausingOs(int(count), Path(marker))
    app.main(sys.argv[1:])


if __name__ == "__main__":
    main()
