"""Run DragBench-Shapes: methods of the registry against the "no edit" and "naive warp" baselines on the same
tasks."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..arrival import arrival_threshold
from ..runtime import Runtime
from ..types import DragRequest
from .methods import make_methods
from .metrics import dift_features, mean_distance_pairs
from .shapes_bench import (
    TASK_KINDS,
    ShapeTask,
    arrows,
    handle_errors,
    make_tasks,
    naive_warp,
    no_edit,
    scaled,
    score,
)

METRICS = (
    "handle_error",
    "moved_fraction",
    "psnr_truth",
    "psnr_truth_in_mask",
    "ssim_truth",
    "psnr_outside_mask",
    "mean_distance",
    "shape_iou",
    "colour_error",
    "dai_5",
    "check_agrees",
)
GRID_TILE = 256  # px per picture in grid.png at most: 40 tasks at 512 px would make a 20000-px-tall image
MD_SETTINGS = dict(timestep=261, block=1, ensemble=8)  # DragBench MD (docs/dragdiffusion.md), on the plain UNet


def run(
    model_spec: str,
    count: int,
    seed: int,
    out: Path,
    overrides: dict,
    device: str | None = None,
    method_names: tuple[str, ...] | list[str] = ("dragdiffusion",),
    log: Callable[[str], None] = print,
    scale: int = 1,
) -> dict:
    """Edit every task with the baselines and each method, score it, and write results.json, results.csv and
    grid.png to `out`. `scale` renders the tasks that many times larger than the model's native size.

    check_agrees: for a method whose result carries an image_check, the fraction of points where the check's
    verdict (arrived or not) is the truth's (the colour-segmented handle error within the same tolerance)."""
    runtime = Runtime(model_spec, device=device)
    model = runtime.model
    editors = make_methods(list(method_names), runtime, overrides)
    native = (model.native_resolution, model.native_resolution)
    at_native = make_tasks(count, seed, native)
    tasks = [scaled(task, scale) for task in at_native]
    methods: dict[str, Callable[[ShapeTask], tuple]] = {
        "no edit": lambda task: (no_edit(task), None),
        "naive warp": lambda task: (naive_warp(task), None),
    }
    for editor in editors:
        methods[editor.name] = lambda task, edit=editor.edit: _edited(
            edit(DragRequest(task.input_image(), task.handles, task.targets, task.mask, task.prompt))
        )
    config = {editor.name: editor.config.to_dict() for editor in editors}
    rows, results = [], {name: [] for name in methods}
    for task, small in zip(tasks, at_native, strict=True):
        # MD at the model's native size (the same task unscaled), in the task's pixels: DIFT features of a
        # 128-px model at 512 px would be out of its range, and 16× the cost
        source_features = _features(runtime, small.input_image(), task.prompt)
        for name, method in methods.items():
            start = time.perf_counter()
            image, check = method(task)
            seconds = time.perf_counter() - start
            scores = score(task, image) | {"check_agrees": _check_agrees(task, image, check)}
            edited = _features(runtime, image.convert("RGB").resize(native, Image.Resampling.LANCZOS), task.prompt)
            distances = mean_distance_pairs(source_features, edited, small.handles, small.targets)
            scores["mean_distance"] = float(np.mean(distances)) * scale
            results[name].append(image)
            rows.append(
                {
                    "task": task.name,
                    "kind": task.kind,
                    "method": name,
                    "seconds": round(seconds, 2),
                    **{k: None if np.isnan(v) else round(v, 4) for k, v in scores.items()},
                }
            )
            log(f"{task.name:12s} {name:14s} " + " ".join(f"{k}={_shown(scores[k])}" for k in METRICS))
    summary = _summarise(rows, methods)
    by_kind = {kind: _summarise([r for r in rows if r["kind"] == kind], methods) for kind in TASK_KINDS}
    _write(out, rows, summary, by_kind, tasks, results, model_spec, config, seed)
    return summary


def _edited(result) -> tuple:
    tolerance = getattr(result.config, "arrival_tolerance", None)
    return result.image, None if result.image_check is None else (result.image_check, tolerance)


def _check_agrees(task: ShapeTask, image: Image.Image, check) -> float:
    """The share of points whose image_check verdict matches the truth; NaN (None in the results) for results
    without a check."""
    if check is None:
        return float("nan")
    checks, tolerance = check
    threshold = arrival_threshold(image.size, tolerance)
    truth = [error <= threshold for error in handle_errors(task, image)]
    return float(np.mean([c.arrived == t for c, t in zip(checks, truth, strict=True)]))


def _features(runtime: Runtime, image, prompt):
    """DIFT features from the plain UNet: a DragDiffusion edit leaves its image's LoRA attached, which would
    make the features (and MD) depend on which edit ran last."""
    runtime.use_lora(None)
    return dift_features(runtime.model, image, prompt, **MD_SETTINGS)


def _summarise(rows: list[dict], methods) -> dict:
    """Means per method over the tasks; None where no task has the value (check_agrees of a baseline)."""

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 3) if values else None

    return {
        name: {k: mean([r[k] for r in rows if r["method"] == name]) for k in (*METRICS, "seconds")} for name in methods
    }


def _shown(value: float | None) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.2f}"


def table(summary: dict) -> str:
    header = "| method | " + " | ".join(METRICS) + " | s/task |\n|---|" + "---|" * (len(METRICS) + 1)
    lines = [
        f"| {name} | " + " | ".join(_shown(v[k]) for k in METRICS) + f" | {v['seconds']:.1f} |"
        for name, v in summary.items()
    ]
    return "\n".join([header, *lines])


def _write(out: Path, rows, summary, by_kind, tasks, results, model_spec, config, seed) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(
            {
                "model": model_spec,
                "seed": seed,
                "tasks": len(tasks),
                "summary": summary,
                "summary_by_kind": by_kind,
                "rows": rows,
                "config": config,
            },
            indent=2,
        )
    )
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    side = min(tasks[0].scene.size[0], GRID_TILE)
    shown = [name for name in results if name != "no edit"]  # "no edit" is the input itself
    grid = Image.new("RGB", (side * (len(shown) + 2), side * len(tasks)), "white")
    for row, task in enumerate(tasks):  # input with arrows | each method | truth
        tiles = [arrows(task.input_image(), task), *(results[name][row] for name in shown), task.truth_image()]
        for col, tile in enumerate(tiles):
            grid.paste(tile.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (col * side, row * side))
    grid.save(out / "grid.png")
