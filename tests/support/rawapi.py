"""The app's HTTP API called raw, as a script or an attacker would: no gradio_client to shape the requests.

`call` posts to /gradio_api/call/<endpoint> and reads the event stream to its end; `upload` stores bytes
through /gradio_api/upload and returns the server's path for them; `bomb_png` writes a PNG whose header
promises side² pixels in a few kilobytes; `peak_rss` reads a process's high-water mark of resident memory.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx

FILE_META = {"_type": "gradio.FileData"}  # what gradio_client adds; Gradio checks such dicts itself


@dataclass
class Reply:
    event: str  # "complete", "error", or "http <status>" when the call was refused before it was queued
    data: object  # the outputs (complete) or the error message (error)
    seconds: float

    @property
    def message(self) -> str:
        """The reply's text: the error, or the outputs as JSON (where handlers put their status lines)."""
        return self.data if isinstance(self.data, str) else json.dumps(self.data, ensure_ascii=False)


def call(url: str, endpoint: str, data: list, timeout: float = 300.0) -> Reply:
    start = time.perf_counter()
    posted = httpx.post(f"{url}gradio_api/call/{endpoint}", json={"data": data}, timeout=timeout)
    if posted.status_code != 200:
        return Reply(f"http {posted.status_code}", posted.text, time.perf_counter() - start)
    event_id = posted.json()["event_id"]
    stream = httpx.get(f"{url}gradio_api/call/{endpoint}/{event_id}", timeout=timeout).text
    event, payload = "", None
    for line in stream.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            payload = json.loads(line.removeprefix("data: "))
    if event == "error" and isinstance(payload, dict):
        payload = payload.get("error")
    return Reply(event, payload, time.perf_counter() - start)


def upload(url: str, data: bytes, name: str) -> str:
    response = httpx.post(f"{url}gradio_api/upload", files={"files": (name, data)}, timeout=60)
    response.raise_for_status()
    return response.json()[0]


def bomb_png(side: int) -> bytes:
    """A valid 1-bit side×side PNG of zeros: about side²/8 bytes once decoded, far more as RGB(A)."""
    row, compressor = b"\0" * (1 + (side + 7) // 8), zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def peak_rss(pid: int) -> int:
    """Bytes: the most resident memory the process has had (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM line in /proc/<pid>/status")


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}
