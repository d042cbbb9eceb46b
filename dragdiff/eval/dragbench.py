"""DragBench (Shi et al. 2024) in its official layout: read the samples safely, edit each one (resumably),
and score Mean Distance pooled over all point pairs as the reference does (docs/dragdiffusion.md, "Mean Distance").

Layout: ROOT/<category>/<sample>/original_image.png, meta_data.pkl (a pickled dict: 'prompt', 'points' =
alternating handle/target [x, y], 'mask' = H×W, 1 = editable), user_drag.png. Results go to
RESULTS/<category>/<sample>/dragged_image.png (the layout the reference scripts read) with session.json.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DragError
from ..images import load_image
from ..types import DragRequest, Point
from .lpips import image_fidelity
from .methods import EvalMethod
from .metrics import dai, dift_features, mean_distance_pairs

# What a DragBench meta_data.pkl may contain: plain containers, numbers, strings and numpy arrays. Anything
# else (a function, a class to instantiate) is refused: unpickling can run code.
SAFE_GLOBALS = (
    {
        ("builtins", name)
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "str",
            "int",
            "float",
            "bool",
            "bytes",
            "complex",
            "slice",
            "bytearray",
        )
    }
    | {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise DragError(
                f"{self.source}: refused to unpickle {module}.{name}; DragBench metadata may hold only "
                "dicts, lists, strings, numbers and numpy arrays"
            )
        return super().find_class(module, name)


def load_meta(path: Path) -> dict:
    """A sample's meta_data.pkl through the restricted unpickler, checked: prompt, points (pairs), mask."""
    try:
        data = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except DragError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files fail in many ways
        raise DragError(f"{path}: not a readable DragBench metadata pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not {"prompt", "points", "mask"} <= set(data):
        raise DragError(f"{path}: expected a dict with 'prompt', 'points' and 'mask'")
    points = np.asarray(data["points"], dtype=np.float64).reshape(-1, 2)
    if len(points) == 0 or len(points) % 2:
        raise DragError(f"{path}: 'points' must alternate handle and target, got {len(points)} points")
    return {"prompt": str(data["prompt"]), "points": points, "mask": np.asarray(data["mask"]) > 0}


@dataclass(frozen=True)
class Sample:
    category: str
    name: str
    folder: Path

    @property
    def key(self) -> str:
        return f"{self.category}/{self.name}"

    def images(self, results: Path) -> tuple:
        """(original, dragged) images of this sample, the latter from a results folder."""
        edited = results / self.category / self.name / "dragged_image.png"
        return load_image(self.folder / "original_image.png"), load_image(edited)

    def meta(self) -> dict:
        """The sample's prompt, mask, and points as (handles, targets) tuples of Points."""
        meta = load_meta(self.folder / "meta_data.pkl")
        points = [Point(float(x), float(y)) for x, y in meta["points"]]
        return {**meta, "handles": tuple(points[0::2]), "targets": tuple(points[1::2])}

    def request(self) -> DragRequest:
        """The sample as a DragRequest with default settings (each method applies its own)."""
        meta, image = self.meta(), load_image(self.folder / "original_image.png")
        mask = meta["mask"] if meta["mask"].shape == (image.height, image.width) else None
        return DragRequest(image, meta["handles"], meta["targets"], mask, meta["prompt"])


def find_samples(root: Path, categories: list[str] | None = None, limit: int | None = None) -> list[Sample]:
    """Every <category>/<sample> folder holding original_image.png and meta_data.pkl, in sorted order."""
    if not root.is_dir():
        raise DragError(f"DragBench root {root} is not a folder")
    samples = [
        Sample(f.parent.parent.name, f.parent.name, f.parent)
        for f in sorted(root.glob("*/*/meta_data.pkl"))
        if (f.parent / "original_image.png").is_file()
    ]
    if categories:
        samples = [s for s in samples if s.category in categories]
    if not samples:
        raise DragError(
            f"no DragBench samples under {root} (expected <category>/<sample>/original_image.png and meta_data.pkl)"
        )
    return samples[:limit] if limit else samples


def edit_all(method: EvalMethod, samples: list[Sample], out: Path, log: Callable[[str], None] = print) -> int:
    """Edit each sample not yet done with `method`; returns how many were edited. A rerun skips finished
    samples (their PNG and session JSON both exist), and a crash loses nothing finished: each file is written
    atomically."""
    edited = 0
    for sample in samples:
        target = out / sample.category / sample.name / "dragged_image.png"
        if target.is_file() and target.with_suffix(".json").is_file():
            continue
        request = sample.request()
        start = time.perf_counter()
        result = method.edit(request)
        target.parent.mkdir(parents=True, exist_ok=True)
        method.save(result, target)
        edited += 1
        log(f"{sample.key}: {method.name}, {time.perf_counter() - start:.1f} s")
    return edited


DAI_GAMMAS = (1, 5, 10, 20)  # GoodDrag's patch half-sizes (evaluation/compute_DAI.py)


def mean_distances(
    model, samples: list[Sample], out: Path, timestep: int = 261, block: int = 1, ensemble: int = 8
) -> Iterator[tuple[Sample, list[float]]]:
    """Per sample, the DIFT matching distance of every handle/target pair (original px)."""
    for sample in samples:
        meta = sample.meta()
        features = [dift_features(model, im, meta["prompt"], timestep, block, ensemble) for im in sample.images(out)]
        yield sample, mean_distance_pairs(*features, meta["handles"], meta["targets"])


def aggregate(per_sample: dict[str, list[float]]) -> dict[str, float]:
    """MD pooled over all pairs (DragBench's number) and the mean of per-image means (differs when images have
    different numbers of pairs)."""
    pooled = [d for distances in per_sample.values() for d in distances]
    return {
        "md_pooled": float(np.mean(pooled)),
        "md_per_image": float(np.mean([np.mean(d) for d in per_sample.values()])),
        "pairs": len(pooled),
        "images": len(per_sample),
    }


def score(md_model, lpips, samples: list[Sample], out: Path, grid_size: int = 8, clip=None) -> dict:
    """MD, GoodDrag's DAI (γ = 1, 5, 10, 20), IF when `lpips` is given and CLIP image similarity when `clip`
    is, overall and per category; writes
    summary.json, per_sample.csv and report.md (a table and an input-with-arrows | result grid of the first
    `grid_size` samples) to `out`."""
    rows = []
    for sample, distances in mean_distances(md_model, samples, out):
        meta, (source, edited) = sample.meta(), sample.images(out)
        row = {"sample": sample.key, "category": sample.category, "distances": distances}
        row |= {f"dai_{g}": dai(source, edited, meta["handles"], meta["targets"], g) for g in DAI_GAMMAS}
        if lpips is not None:
            row["if"], row["lpips"] = image_fidelity(lpips, *sample.images(out))
        if clip is not None:
            row["clip"] = clip(*sample.images(out))
        rows.append(row)
    summary = {
        "model": md_model.spec,
        **_aggregate_rows(rows),
        "categories": {
            c: _aggregate_rows([r for r in rows if r["category"] == c]) for c in sorted({r["category"] for r in rows})
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(out / "per_sample.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["sample", "pairs", "md", *(f"dai_{g}" for g in DAI_GAMMAS), "if", "lpips", "clip"])
        for r in rows:
            writer.writerow(
                [
                    r["sample"],
                    len(r["distances"]),
                    round(float(np.mean(r["distances"])), 3),
                    *(round(r[f"dai_{g}"], 5) for g in DAI_GAMMAS),
                    r.get("if", ""),
                    r.get("lpips", ""),
                    r.get("clip", ""),
                ]
            )
    _report(out, summary, samples[:grid_size])
    return summary


def _aggregate_rows(rows: list[dict]) -> dict:
    result = aggregate({r["sample"]: r["distances"] for r in rows})
    result |= {f"dai_{g}": float(np.mean([r[f"dai_{g}"] for r in rows])) for g in DAI_GAMMAS}
    if rows and "if" in rows[0]:
        result["image_fidelity"] = float(np.mean([r["if"] for r in rows]))
        result["lpips"] = float(np.mean([r["lpips"] for r in rows]))
    if rows and "clip" in rows[0]:
        result["clip_similarity"] = float(np.mean([r["clip"] for r in rows]))
    return result


def _report(out: Path, summary: dict, shown: list[Sample]) -> None:
    keys = [
        k
        for k in (
            "md_pooled",
            "md_per_image",
            *(f"dai_{g}" for g in DAI_GAMMAS),
            "image_fidelity",
            "lpips",
            "clip_similarity",
            "pairs",
            "images",
        )
        if k in summary
    ]
    lines = ["# DragBench results", "", "| category | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, values in [("all", summary), *summary["categories"].items()]:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{values[k]:.3f}" if isinstance(values[k], float) else str(values[k]) for k in keys)
            + " |"
        )
    tiles = []
    for sample in shown:
        meta = sample.meta()
        source, edited = sample.images(out)
        tiles += [_with_arrows(source, meta["handles"], meta["targets"]), edited]
    if tiles:
        height = 256
        tiles = [t.resize((round(t.width * height / t.height), height)) for t in tiles]
        width = max(tiles[i].width + tiles[i + 1].width for i in range(0, len(tiles), 2))
        sheet = Image.new("RGB", (width, height * len(shown)), "white")
        for i in range(0, len(tiles), 2):
            sheet.paste(tiles[i], (0, height * (i // 2)))
            sheet.paste(tiles[i + 1], (tiles[i].width, height * (i // 2)))
        sheet.save(out / "report_grid.png")
        lines += ["", "Input with drags (red handle → blue target) | result:", "", "![grid](report_grid.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _with_arrows(image: Image.Image, handles, targets) -> Image.Image:
    shown = image.convert("RGB").copy()
    draw = ImageDraw.Draw(shown)
    radius = max(2, round(max(shown.size) / 100))
    for h, t in zip(handles, targets, strict=True):
        draw.line([(h.x, h.y), (t.x, t.y)], fill=(255, 255, 255), width=max(1, radius // 2))
        draw.ellipse([h.x - radius, h.y - radius, h.x + radius, h.y + radius], fill=(230, 40, 40))
        draw.ellipse([t.x - radius, t.y - radius, t.x + radius, t.y + radius], fill=(40, 90, 235))
    return shown
