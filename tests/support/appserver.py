"""The app as a real server on loopback for tests: started as a subprocess on the tiny model, one torch thread.

`start_app` waits until GET / answers 200 and returns an `AppServer`; `kill()` is kill -9, `stop()` a normal
shutdown. With `paused_write=(n, marker)` it runs through tests/support/paused_app.py, which stops the n-th
atomic write of a result inside its temporary file (see there).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 10.0) -> tuple[int, float]:
    """(HTTP status, seconds) of a plain GET, as a browser's page load starts."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return response.status, time.perf_counter() - start


@dataclass
class AppServer:
    process: subprocess.Popen
    url: str
    outputs: Path
    cache: Path
    log: Path
    uploads: Path | None = None  # Gradio's upload folder when the test chose it (start_app's `uploads`)

    def kill(self) -> None:
        """kill -9: no handler, no cleanup, no finally block runs."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def start_app(
    outputs: Path,
    cache: Path,
    log: Path,
    *args: str,
    paused_write: tuple[int, Path] | None = None,
    uploads: Path | None = None,
    timeout: float = 180.0,
) -> AppServer:
    """`python app.py --model tiny` on a free loopback port, writing results to `outputs` and its LoRA and
    inversion cache to `cache`; stdout and stderr go to `log`. Extra command-line flags in `args`. `uploads`
    is Gradio's upload and cache folder (GRADIO_TEMP_DIR), so that a test can see what a request left there."""
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "DRAGDIFF_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",  # the same arithmetic as a one-thread test process: same bytes
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    if uploads is not None:
        env["GRADIO_TEMP_DIR"] = str(uploads)
    script = [str(ROOT / "app.py")]
    if paused_write is not None:
        count, marker = paused_write
        env["DRAGDIFF_TEST_PAUSE_WRITE"] = f"{count}:{marker}"
        script = [str(ROOT / "tests" / "support" / "paused_app.py")]
    command = [sys.executable, *script, "--model", "tiny", "--port", str(port), "--outputs", str(outputs), *args]
    with log.open("ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    server = AppServer(process, f"http://127.0.0.1:{port}/", outputs, cache, log, uploads)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{server.tail()}")
        try:
            if get(server.url, timeout=5)[0] == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError(f"the app did not answer within {timeout:.0f} s:\n{server.tail()}")
