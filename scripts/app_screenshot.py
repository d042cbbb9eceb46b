"""The README's screenshots of the app with the bundled demo model: docs/app.png and docs/app-dragon.png.

Starts `app.py --model demo` on a free local port, uploads the disc example, clicks a handle and its target,
paints the region (the disc and where it goes), presses Drag with the default method (the demo model's best
measured, README: "Methods compared"), waits for the result and its status, and saves the whole page; then,
in the same editor, DragonDiffusion's move of the disc alone. Needs Debian's chromium and the playwright
package (never `playwright install`).

    python scripts/app_screenshot.py     # ~3 minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(port: int, process: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit("the app stopped while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the app did not start within 2 minutes")


def drag_once(url: str, out: Path, method: str | None = None, mode: str | None = None, rows: int = 24) -> str:
    """Upload, two clicks, painted strokes, Drag (with `method` and `mode` chosen, else the model's default);
    returns the status line shown with the result."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url, wait_until="load")
        page.wait_for_function("document.querySelector('#model-note')?.innerText.includes('Model:')")
        page.locator("#upload input[type=file]").set_input_files(str(ROOT / "assets" / "examples" / "disc.png"))
        shown = "document.querySelector('#status').innerText"
        ready = f"['Ready to drag', 'No region painted'].some(t => {shown}.includes(t))"
        page.wait_for_function(ready, timeout=300_000)  # prepared (a LoRA method), or nothing to prepare
        page.wait_for_timeout(3000)  # the upload's follow-up events hand the canvas back
        for group, label in (("#method", method), ("#mode", mode)):
            if label:
                page.locator(f"{group} label", has_text=label).first.click()
                page.wait_for_timeout(1000)
        canvas = page.locator("#canvas img").first
        scale = canvas.bounding_box()["width"] / 128  # the 128×96 example at the column's width
        for x, y in [(40, 48), (70, 48)]:
            canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
            page.wait_for_timeout(1500)
        page.locator("#mask button[aria-label='Brush']").first.click()
        paint = page.locator("#mask canvas").first.bounding_box()
        right = 0.75 if rows == 24 else 0.45  # the disc and the place it goes, or the disc alone (a move)
        for row in range(rows):  # strokes over the middle third of the picture
            y = paint["y"] + paint["height"] * (0.35 + 0.3 * row / max(rows - 1, 1))
            page.mouse.move(paint["x"] + paint["width"] * 0.2, y)
            page.mouse.down()
            page.mouse.move(paint["x"] + paint["width"] * right, y, steps=6)
            page.mouse.up()
        page.wait_for_timeout(5000)  # the painted region reaches the server
        page.locator("#run").click()
        page.wait_for_function(f"{shown}.includes('Done in')", timeout=600_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out), full_page=True)
        status = page.locator("#status").inner_text()
        browser.close()
    return status


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DRAGDIFF_CACHE": str(Path(scratch) / "cache")}
        command = [sys.executable, str(ROOT / "app.py"), "--model", "demo", "--port", str(port)]
        process = subprocess.Popen([*command, "--outputs", str(Path(scratch) / "outputs")], env=env)
        try:
            wait_for_server(port, process)
            url = f"http://127.0.0.1:{port}/"
            status = drag_once(url, ROOT / "docs" / "app.png")
            print(f"wrote docs/app.png; status: {status}")
            status = drag_once(url, ROOT / "docs" / "app-dragon.png", "DragonDiffusion", "move", rows=10)
            print(f"wrote docs/app-dragon.png; status: {status}")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
