"""The handle and target points a user clicks or types: clicks alternate handle, target, handle, ..."""

from __future__ import annotations

import math
from typing import Any

from ..errors import DragError
from ..types import Point
from ..validation import ascii_float


def add_click(clicks: list[list[float]], x: float, y: float) -> list[list[float]]:
    """Clicks alternate handle, target, handle, ...; returns a new list."""
    return [*clicks, [float(x), float(y)]]


def pairs(clicks: list[list[float]]) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """Handles and targets from the clicks; an odd count is an error that says how to fix it."""
    if len(clicks) % 2:
        raise DragError(
            f"{clicked(len(clicks))}: handle {len(clicks) // 2 + 1} has no target yet. "
            "Click where it should go, or undo the last point."
        )
    return tuple(Point(*c) for c in clicks[0::2]), tuple(Point(*c) for c in clicks[1::2])


def clicked(count: int) -> str:
    return f"{count} point{'s were' if count != 1 else ' was'} clicked"


def points_note(clicks: list[list[float]]) -> str:
    """The status line once the points changed: what there is and what to do next (handle, target, ...)."""
    if not clicks:
        return "No points: click a handle (what to move), then its target."
    if len(clicks) % 2:
        return f"Handle {len(clicks) // 2 + 1}: now click where it should go."
    count = len(clicks) // 2
    return f"{count} handle → target pair{'s' if count > 1 else ''}: press Drag, or click another handle."


def points_table(clicks: list[list[float]]) -> list[list[Any]]:
    """Rows [pair, handle x, handle y, target x, target y] (target blank while pending)."""
    rows = []
    for i in range(0, len(clicks), 2):
        target = clicks[i + 1] if i + 1 < len(clicks) else ["", ""]
        rows.append([i // 2 + 1, *clicks[i], *target])
    return rows


def clicks_from_table(rows: list[list[Any]]) -> list[list[float]]:
    """The inverse of points_table, after a user edited it; blank rows are dropped, bad cells are named.
    Only the last pair may lack its target (it is still being clicked)."""
    clicks: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        cells = [str(c).strip() for c in list(row)[1:5]]
        if not any(cells):
            continue
        where = f"points table, pair {number}"
        if len(clicks) % 2:  # else this row's handle would silently become the target of the pair above
            raise DragError(f"{where}: the pair above has no target; give its target's x and y first")
        values = [_cell_number(c, where) for c in cells if c != ""]
        if len(values) not in (2, 4) or (len(values) == 2 and cells[0] == ""):
            raise DragError(f"{where}: give the handle's x and y (and the target's)")
        clicks += [values[0:2]] + ([values[2:4]] if len(values) == 4 else [])
    return clicks


def _cell_number(text: str, where: str) -> float:
    try:
        value = ascii_float(text)
    except ValueError:
        shown = repr(text[:40])
        raise DragError(f"{where}: {shown} is not a number; type x and y in pixels of the image (digits 0-9)") from None
    if not math.isfinite(value):  # "nan" and "inf" parse as floats, but no pixel is there
        raise DragError(f"{where}: {text!r} is not a finite number; type x and y in pixels of the image")
    return value
