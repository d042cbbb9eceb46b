"""The app in a real browser for tests: Debian's chromium driven by Playwright (never `playwright install`).

`open_editor(url, shots)` yields an `Editor`: the page with the steps a user takes (upload, paint, click image
pixels, choose a method, drag) and `shot(name)`, a full-page screenshot kept under `shots` as the test's
artefact. Selectors are the elem_ids app.py gives its components.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATUS = "(document.querySelector('#status')?.innerText || '')"  # absent while a page reloads


class Editor:
    def __init__(self, page, shots: Path, name: str) -> None:
        self.page, self.shots, self.name = page, shots, name

    def shot(self, step: str) -> Path:
        path = self.shots / f"{self.name}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def status(self) -> str:
        return self.page.locator("#status").inner_text()

    def wait_status(self, *words: str, timeout: float = 120) -> str:
        """Wait until the status line holds one of `words`; fail with what it says (and a screenshot)."""
        test = " || ".join(f"{STATUS}.includes({word!r})" for word in words)
        try:
            self.page.wait_for_function(test, timeout=timeout * 1000)
        except Exception as exc:
            self.shot("failed")
            raise AssertionError(f"status never said {words}: {self.status()!r}") from exc
        return self.status()

    def upload(self, path: Path, where: str = "#upload") -> None:
        self.page.locator(f"{where} input[type=file]").set_input_files(str(path))

    def click_image(self, x: float, y: float, width: int) -> None:
        """A click on pixel (x, y) of an image `width` pixels wide, shown in the canvas."""
        canvas = self.page.locator("#canvas img").first
        scale = canvas.bounding_box()["width"] / width
        canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})

    def paint(self, left: float, right: float, top: float, bottom: float, rows: int = 8) -> None:
        """Brush strokes over the editor's picture, as fractions of its box."""
        self.page.locator("#mask button[aria-label='Brush']").first.click()
        box = self.page.locator("#mask canvas").first.bounding_box()
        for row in range(rows):
            y = box["y"] + box["height"] * (top + (bottom - top) * row / max(rows - 1, 1))
            self.page.mouse.move(box["x"] + box["width"] * left, y)
            self.page.mouse.down()
            self.page.mouse.move(box["x"] + box["width"] * right, y, steps=6)
            self.page.mouse.up()

    def choose(self, group: str, label: str) -> None:
        """Pick `label` in a radio group (#method, #mode)."""
        self.page.locator(f"{group} label", has_text=label).first.click()

    def drag(self, timeout: float = 240) -> str:
        """Press Drag and wait for the run's end: done, refused or stopped (a new status line, not the last)."""
        before = self.status().strip()  # gone once the run says its first line (a timer may come before)
        self.page.locator("#run").click()
        if before:
            self.page.wait_for_function(f"!{STATUS}.includes({before!r})", timeout=60_000)
        return self.wait_status("Done in", "⚠️", "Stopped", timeout=timeout)

    def wait_rows(self, rows: list[list[str]], timeout: float = 60) -> None:
        """Wait until the points table shows `rows` (clicks are handled in turn, later under load); fail with
        what it shows (and a screenshot)."""
        for _ in range(int(timeout * 4)):
            if self.table_rows() == rows:
                return
            self.page.wait_for_timeout(250)
        self.shot("failed")
        assert self.table_rows() == rows

    def table_rows(self) -> list[list[str]]:
        """The points table as its cells' texts, five per row."""
        texts = self.page.locator("#points [role=gridcell]").all_inner_texts()
        cells = [text.split("\n")[0].strip() for text in texts]  # below the value: the cell menu's "⋮"
        return [cells[i : i + 5] for i in range(0, len(cells), 5)]


def open_page(browser, url: str):
    """A page with the app loaded, in a new context of `browser` (its own local storage: another browser)."""
    page = browser.new_context(viewport={"width": 1400, "height": 1300}).new_page()
    page.goto(url, wait_until="load")
    # the page is ready once its load event has named the model (app.on_page_load)
    note = "document.querySelector('#model-note')?.innerText || ''"
    page.wait_for_function(f"({note}).includes('Model:') && !/\\d\\.\\ds/.test({note})", timeout=60_000)
    return page


@contextmanager
def open_editor(url: str, shots: Path, name: str) -> Iterator[Editor]:
    """A fresh browser (its own local storage) with the app open."""
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = open_page(chromium, url)
            yield Editor(page, shots, name)
        finally:
            chromium.close()
