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

from ..runtime import Runtime
from ..types import DragRequest
from .methods import make_methods
from .metrics import dift_features, mean_distance_pairs
from .shapes_bench import ShapeTask, arrows, make_tasks, naive_warp, no_edit, score

METRICS = ("handle_error", "moved_fraction", "psnr_truth", "ssim_truth", "psnr_outside_mask", "mean_distance")
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
) -> dict:
    """Edit every task with the baselines and each method, score it, and write results.json, results.csv and
    grid.png to `out`."""
    runtime = Runtime(model_spec, device=device)
    model = runtime.model
    editors = make_methods(list(method_names), runtime, overrides)
    tasks = make_tasks(count, seed, (model.native_resolution, model.native_resolution))
    methods: dict[str, Callable[[ShapeTask], Image.Image]] = {"no edit": no_edit, "naive warp": naive_warp}
    for editor in editors:
        methods[editor.name] = lambda task, edit=editor.edit: (
            edit(DragRequest(task.input_image(), task.handles, task.targets, task.mask, task.prompt)).image
        )
    config = {editor.name: editor.config.to_dict() for editor in editors}
    rows, results = [], {name: [] for name in methods}
    for task in tasks:
        source_features = _features(runtime, task.input_image(), task.prompt)
        for name, method in methods.items():
            start = time.perf_counter()
            image = method(task)
            seconds = time.perf_counter() - start
            scores = score(task, image)
            edited = _features(runtime, image, task.prompt)
            scores["mean_distance"] = float(
                np.mean(mean_distance_pairs(source_features, edited, task.handles, task.targets))
            )
            results[name].append(image)
            rows.append(
                {
                    "task": task.name,
                    "kind": task.kind,
                    "method": name,
                    "seconds": round(seconds, 2),
                    **{k: round(v, 4) for k, v in scores.items()},
                }
            )
            log(f"{task.name:12s} {name:14s} " + " ".join(f"{k}={scores[k]:.2f}" for k in METRICS))
    summary = _summarise(rows, methods)
    _write(out, rows, summary, tasks, results, model_spec, config, seed)
    return summary


def _features(runtime: Runtime, image, prompt):
    """DIFT features from the plain UNet: a DragDiffusion edit leaves its image's LoRA attached, which would
    make the features (and MD) depend on which edit ran last."""
    runtime.use_lora(None)
    return dift_features(runtime.model, image, prompt, **MD_SETTINGS)


def _summarise(rows: list[dict], methods) -> dict:
    return {
        name: {k: round(float(np.mean([r[k] for r in rows if r["method"] == name])), 3) for k in (*METRICS, "seconds")}
        for name in methods
    }


def table(summary: dict) -> str:
    header = "| method | " + " | ".join(METRICS) + " | s/task |\n|---|" + "---|" * (len(METRICS) + 1)
    lines = [
        f"| {name} | " + " | ".join(f"{v[k]:.2f}" for k in METRICS) + f" | {v['seconds']:.1f} |"
        for name, v in summary.items()
    ]
    return "\n".join([header, *lines])


def _write(out: Path, rows, summary, tasks, results, model_spec, config, seed) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(
            {
                "model": model_spec,
                "seed": seed,
                "tasks": len(tasks),
                "summary": summary,
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
    size = tasks[0].scene.size
    shown = [name for name in results if name != "no edit"]  # "no edit" is the input itself
    grid = Image.new("RGB", (size[0] * (len(shown) + 2), size[1] * len(tasks)), "white")
    for row, task in enumerate(tasks):  # input with arrows | each method | truth
        tiles = [arrows(task.input_image(), task), *(results[name][row] for name in shown), task.truth_image()]
        for col, tile in enumerate(tiles):
            grid.paste(tile, (col * size[0], row * size[1]))
    grid.save(out / "grid.png")
