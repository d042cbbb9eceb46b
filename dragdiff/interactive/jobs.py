"""Running edits for a UI: one shared Runtime per loaded model, an edit in a worker thread whose progress
is streamed (and stoppable per user), and a Markdown board of the stages' progress."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..runtime import Runtime
from ..types import Progress


class Runtimes:
    """Loaded models are big: keep one Runtime, for the model last asked for, and share it (its own lock
    keeps edits apart) between every user and method."""

    def __init__(self, device: str | None = None, cache_dir: str | None = None, dtype: str | None = None):
        self.device, self.cache_dir, self.dtype = device, cache_dir, dtype
        self.lock = threading.Lock()
        self._runtime: Runtime | None = None
        self._spec: str | None = None

    def get(self, spec: str) -> Runtime:
        with self.lock:
            if self._runtime is None or spec != self._spec:
                self._runtime = None  # free the old model before loading the next
                self._runtime = Runtime(spec, device=self.device, dtype=self.dtype, cache_dir=self.cache_dir)
                self._spec = spec
            return self._runtime


@dataclass
class Finished:
    value: Any


class StopFlag:
    """A per-user Stop button's flag, kept in that user's session state. Copying it (as a UI does with a
    state's initial value for each new user) gives a fresh flag, never a shared one."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __deepcopy__(self, memo: dict) -> StopFlag:
        return StopFlag()


def stream(
    job: Callable[[Callable[[Progress], None], Callable[[], bool]], Any], stop: threading.Event, interval: float = 0.25
) -> Iterator[Progress | Finished]:
    """Run `job(on_progress, should_stop)` in a thread; yield its progress (at most every `interval` s, always
    the latest, and each stage's last step) and then Finished(result). Setting `stop`, or closing the
    iterator, makes `should_stop` true so the job ends cleanly between two steps (with DragCancelled); the
    job's exceptions are raised here."""
    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = job(events.put, stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc
        events.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        latest, last_yield, done = None, 0.0, False
        while not done:
            try:
                event = events.get(timeout=interval)
                done = event is None
                if event is not None and latest is not None and event.stage != latest.stage:
                    yield latest  # a stage's last step is never dropped: the board ticks every stage off
                latest = event or latest
            except queue.Empty:
                pass
            if latest is not None and (done or time.monotonic() - last_yield >= interval):
                yield latest
                latest, last_yield = None, time.monotonic()
    finally:
        stop.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield Finished(outcome["value"])


class StageBoard:
    """A progress bar per stage, as Markdown lines: finished stages ticked, the running one with its bar."""

    def __init__(self) -> None:
        self.latest: dict[str, Progress] = {}

    def update(self, progress: Progress) -> str:
        self.latest[progress.stage] = progress
        lines = []
        for event in self.latest.values():
            done = event.step >= event.total
            filled = round(12 * event.step / max(event.total, 1))
            bar = "█" * filled + "░" * (12 - filled)
            lines.append(f"{'✓' if done else '▶'} `{bar}` {event.describe()}")
        return "  \n".join(lines)
