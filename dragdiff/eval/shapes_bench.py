"""DragBench-Shapes: drag tasks in the demo model's world of shapes, each with its exact ground truth.

A task is an input scene, handle/target points, an editable mask, a prompt, and the ground-truth edited
scene, rendered procedurally (so the background revealed behind a moved shape is exactly right).
Kinds: "move" (one shape), "move2" (two shapes at once), "stretch" (drag the right edge of a shape outward).
"""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..shapes import Scene, random_background, random_shape, scaled_point
from ..types import Point
from . import metrics

TASK_KINDS = ("move", "move2", "stretch")
DAI_GAMMAS = (1, 5, 10)  # GoodDrag reports 1, 5, 10, 20; 20 px is a third of a 128-px scene's shapes' range
COLOUR_TOLERANCE = 60.0  # RGB distance that still counts as the shape's colour (jitter ±25 + model error)


@dataclass(frozen=True)
class ShapeTask:
    name: str
    kind: str
    scene: Scene  # the input
    truth: Scene  # the right answer
    moved: tuple[int, ...]  # indices of the shapes the points drag
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray  # H×W bool, True = may change

    @property
    def prompt(self) -> str:
        return self.scene.caption()

    def input_image(self) -> Image.Image:
        return self.scene.render()

    def truth_image(self) -> Image.Image:
        return self.truth.render()


def make_tasks(count: int, seed: int = 0, size: tuple[int, int] = (128, 128), scale: int = 1) -> list[ShapeTask]:
    """`count` tasks cycling through the kinds; the same seed gives the same tasks. `scale` renders the same
    tasks that many times larger (a small object in a large picture, for work_area "region")."""
    rng = random.Random(seed)
    tasks = [_make_task(f"{i:03d}_{TASK_KINDS[i % 3]}", TASK_KINDS[i % 3], rng, size) for i in range(count)]
    return [scaled(task, scale) for task in tasks]


def scaled(task: ShapeTask, factor: int) -> ShapeTask:
    """The same task rendered `factor` times larger (the task itself for 1)."""
    if factor == 1:
        return task
    points = [tuple(Point(*scaled_point((p.x, p.y), factor)) for p in ps) for ps in (task.handles, task.targets)]
    mask = np.repeat(np.repeat(task.mask, factor, axis=0), factor, axis=1)  # each pixel becomes factor × factor
    return replace(
        task,
        scene=task.scene.scaled(factor),
        truth=task.truth.scaled(factor),
        mask=mask,
        handles=points[0],
        targets=points[1],
    )


def _make_task(name: str, kind: str, rng: random.Random, size: tuple[int, int]) -> ShapeTask:
    for _ in range(1000):  # rejection sampling: distinct colours, no overlaps, everything inside the canvas
        task = _try_task(name, kind, rng, size)
        if task is not None:
            return task
    raise RuntimeError(f"could not generate a {kind} task")


def _try_task(name: str, kind: str, rng: random.Random, size: tuple[int, int]) -> ShapeTask | None:
    background = replace(random_background(rng), kind=rng.choice(("plain", "plain", "striped")))
    n_shapes = {"move": rng.randint(1, 2), "move2": 2, "stretch": rng.randint(1, 2)}[kind]
    shapes = [random_shape(rng, size, background.color, min_size=10, max_size=18) for _ in range(n_shapes)]
    if kind == "stretch":
        shapes[0] = replace(shapes[0], kind=rng.choice(("circle", "square")), rotation=0.0, aspect=1.0)
    scene = Scene(background, tuple(shapes), size)
    if not _distinct(scene):
        return None
    moved = (0, 1) if kind == "move2" else (0,)
    truth, handles, targets = scene, [], []
    for index in moved:
        shape = scene.shapes[index]
        if kind == "stretch":
            half_width = shape.size * (math.sqrt(0.5) if shape.kind == "square" else 1.0)
            pull = rng.uniform(8, 16)
            handle = Point(round(shape.center[0] + half_width), round(shape.center[1]))
            target = Point(handle.x + round(pull), handle.y)
            scale = 1 + (target.x - handle.x) / (2 * half_width)  # left edge fixed, right edge follows the drag
            new = replace(
                shape, width_scale=scale, center=(shape.center[0] + (target.x - handle.x) / 2, shape.center[1])
            )
        else:
            angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(12, 24)
            dx, dy = round(length * math.cos(angle)), round(length * math.sin(angle))
            handle = Point(round(shape.center[0]), round(shape.center[1]))
            target = Point(handle.x + dx, handle.y + dy)
            new = shape.moved(dx, dy)
        truth = truth.with_shape(index, new)
        handles.append(handle)
        targets.append(target)
    if not (_inside(truth) and _distinct(truth) and _no_overlap(truth) and _no_overlap(scene)):
        return None
    mask = np.zeros((size[1], size[0]), bool)
    for index in moved:
        mask |= _dilate(scene.shape_mask(index) | truth.shape_mask(index), 4)
    return ShapeTask(name, kind, scene, truth, moved, tuple(handles), tuple(targets), mask)


def _distinct(scene: Scene) -> bool:
    """Shape colours far from each other and from the background, so segmentation by colour is unambiguous."""
    colours = [s.rgb for s in scene.shapes]
    backdrop = [scene.background.rgb, scene.background.rgb2]
    far = lambda a, b: np.linalg.norm(np.subtract(a, b)) > 2 * COLOUR_TOLERANCE  # noqa: E731
    return all(far(c, b) for c in colours for b in backdrop) and all(
        far(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :]
    )


def _inside(scene: Scene) -> bool:
    width, height = scene.size
    return all(2 <= x <= width - 3 and 2 <= y <= height - 3 for s in scene.shapes for x, y in s.polygon())


def _no_overlap(scene: Scene) -> bool:
    masks = [_dilate(scene.shape_mask(i), 3) for i in range(len(scene.shapes))]
    return not any((masks[i] & masks[j]).any() for i in range(len(masks)) for j in range(i + 1, len(masks)))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                out |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return out


# -- baselines ---------------------------------------------------------------------------------------------


def no_edit(task: ShapeTask) -> Image.Image:
    return task.input_image()


def naive_warp(task: ShapeTask) -> Image.Image:
    """Paste the masked region of the input at the mean handle→target offset (the old content stays)."""
    source = np.asarray(task.input_image())
    dx = round(np.mean([t.x - h.x for h, t in zip(task.handles, task.targets, strict=True)]))
    dy = round(np.mean([t.y - h.y for h, t in zip(task.handles, task.targets, strict=True)]))
    out = source.copy()
    height, width = task.mask.shape
    ys, xs = np.nonzero(task.mask)
    new_y, new_x = ys + dy, xs + dx
    keep = (new_y >= 0) & (new_y < height) & (new_x >= 0) & (new_x < width)
    out[new_y[keep], new_x[keep]] = source[ys[keep], xs[keep]]
    return Image.fromarray(out)


# -- scoring -----------------------------------------------------------------------------------------------


def handle_errors(task: ShapeTask, result: Image.Image) -> list[float]:
    """Per pair: where the dragged shape ended up (found by colour) + the handle's offset on it, to the target.

    A shape that cannot be found counts as not moved (its error is the full drag distance).
    """
    errors = []
    for index, handle, target in zip(task.moved, task.handles, task.targets, strict=True):
        shape = task.scene.shapes[index]
        before = metrics.centroid(task.scene.shape_mask(index))
        after = metrics.centroid(metrics.colour_region(result, shape.rgb, COLOUR_TOLERANCE))
        if before is None or after is None:
            errors.append(float(np.hypot(target.x - handle.x, target.y - handle.y)))
            continue
        if task.kind == "stretch":  # the handle sits on the right edge: find that edge, not the centroid
            region = metrics.colour_region(result, shape.rgb, COLOUR_TOLERANCE)
            row = region[int(handle.y)]
            found = float(np.nonzero(row)[0].max()) if row.any() else handle.x
            errors.append(abs(found - target.x))
            continue
        moved_handle = (handle.x + after[0] - before[0], handle.y + after[1] - before[1])
        errors.append(float(np.hypot(moved_handle[0] - target.x, moved_handle[1] - target.y)))
    return errors


def identity_errors(task: ShapeTask, result: Image.Image, truth: Image.Image) -> tuple[float, float]:
    """Is it still the same object, in the right place? Mean over the dragged shapes of the IoU between the
    shape segmented by colour in the result and in the truth, and the ΔE (CIE76) between their mean colours
    (where the colour is not found at all: the result's colour where the truth has the shape, whatever took
    its place). The truth itself (`truth`: the task's rendered truth) scores IoU 1 and ΔE 0."""
    ious, colour_errors = [], []
    pixels, truth_pixels = np.asarray(result.convert("RGB"), np.float64), np.asarray(truth, np.float64)
    for index in task.moved:
        rgb = task.scene.shapes[index].rgb
        found, expected = (metrics.colour_region(im, rgb, COLOUR_TOLERANCE) for im in (result, truth))
        ious.append(metrics.iou(found, expected))
        seen = pixels[found] if found.any() else pixels[expected]
        colour_errors.append(metrics.delta_e(seen.mean(0), truth_pixels[expected].mean(0)))
    return float(np.mean(ious)), float(np.mean(colour_errors))


def score(task: ShapeTask, result: Image.Image) -> dict[str, float]:
    errors, truth = handle_errors(task, result), task.truth_image()
    shape_iou, colour_error = identity_errors(task, result, truth)
    start = [float(np.hypot(t.x - h.x, t.y - h.y)) for h, t in zip(task.handles, task.targets, strict=True)]
    return {
        "handle_error": float(np.mean(errors)),
        "moved_fraction": float(np.mean([1 - e / s for e, s in zip(errors, start, strict=True)])),
        "psnr_truth": metrics.psnr(result, truth),
        "psnr_truth_in_mask": metrics.psnr(result, truth, task.mask),  # the edit region alone
        "ssim_truth": metrics.ssim(result, truth),
        "psnr_outside_mask": metrics.psnr(result, task.input_image(), ~task.mask),
        "shape_iou": shape_iou,
        "colour_error": colour_error,
        **{f"dai_{g}": metrics.dai(task.input_image(), result, task.handles, task.targets, g) for g in DAI_GAMMAS},
    }


def arrows(image: Image.Image, task: ShapeTask) -> Image.Image:
    """The image with the task's mask tinted and handle → target arrows (red → blue), for the grid."""
    shown = image.convert("RGB").copy()
    tint = Image.new("RGB", shown.size, (255, 255, 255))
    shown = Image.composite(Image.blend(shown, tint, 0.35), shown, Image.fromarray(task.mask.astype(np.uint8) * 255))
    draw = ImageDraw.Draw(shown)
    for h, t in zip(task.handles, task.targets, strict=True):
        draw.line([(h.x, h.y), (t.x, t.y)], fill=(255, 255, 255), width=1)
        draw.ellipse([h.x - 2, h.y - 2, h.x + 2, h.y + 2], fill=(230, 30, 30))
        draw.ellipse([t.x - 2, t.y - 2, t.x + 2, t.y + 2], fill=(30, 60, 230))
    return shown


def export_dragbench(tasks: list[ShapeTask], root: Path) -> None:
    """Write tasks in DragBench's layout (root/shapes/<task>/original_image.png, meta_data.pkl, user_drag.png)
    so that `python -m dragdiff.eval dragbench` and other tools read them like DragBench."""
    for task in tasks:
        folder = root / "shapes" / task.name
        folder.mkdir(parents=True, exist_ok=True)
        task.input_image().save(folder / "original_image.png")
        arrows(task.input_image(), task).save(folder / "user_drag.png")
        points = [np.array([p.x, p.y]) for pair in zip(task.handles, task.targets, strict=True) for p in pair]
        meta = {"prompt": task.prompt, "points": points, "mask": task.mask.astype(np.uint8)}
        (folder / "meta_data.pkl").write_bytes(pickle.dumps(meta))
