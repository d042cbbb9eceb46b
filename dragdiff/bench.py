"""Speed and memory of one complete edit, stage by stage: `python -m dragdiff.bench`.

    python -m dragdiff.bench --model sd15-random --size 256 --compare --out bench.json

One fixed edit (a generated scene, one drag, a mask, the config's seed) runs with a fresh, empty cache so
that every stage really computes. `--compare` runs it twice in one process: "naive" (every speed setting of
dragdiff/configs/drag.yaml off, fp32) and "optimised" (the defaults, fp16 on CUDA), and prints the ratio per stage.
FLOPs per stage come from torch's flop counter in a separate short counting run (so the timed run carries no
counting overhead); the achieved fraction of the device's peak uses a table for GPUs and, on CPU, the
measured throughput of a large fp32 matmul. A benchmark, not a test: absolute CPU times on shared machines
are noise, the ratio within one run is the figure to track.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import methods
from .drag.config import DragConfig
from .drag.method import DragDiffusion
from .errors import DragError
from .lora_config import SPEED_FIELDS
from .models import DTYPES, DiffusionModel, load_model
from .runtime import Runtime
from .types import DragRequest, Point

STAGES = ("lora", "inversion", "drag", "denoise", "decode", "check", "total")  # check: the outcome check

# Dense tensor-core peaks (TFLOP/s) from NVIDIA's datasheets, for the fraction of peak; fp32 = non-tensor.
GPU_PEAK_TFLOPS = {
    "H100": {"fp16": 989.0, "bf16": 989.0, "fp32": 67.0},
    "H200": {"fp16": 989.0, "bf16": 989.0, "fp32": 67.0},
    "A100": {"fp16": 312.0, "bf16": 312.0, "fp32": 19.5},
    "L4": {"fp16": 121.0, "bf16": 121.0, "fp32": 30.3},
    "RTX 4090": {"fp16": 165.2, "bf16": 165.2, "fp32": 82.6},
    "RTX 3090": {"fp16": 71.0, "bf16": 71.0, "fp32": 35.6},
    "T4": {"fp16": 65.0, "bf16": 65.0, "fp32": 8.1},
}


# -- the fixed edit -----------------------------------------------------------------------------------------


def bench_scene(size: int):
    from .shapes import random_scene

    return random_scene(random.Random(0), size=(size, size), max_shapes=2)


def bench_request(size: int, config: DragConfig) -> DragRequest:
    """A generated scene at size×size: drag the first shape right by size/8 inside a box around it."""
    scene = bench_scene(size)
    shape = scene.shapes[0]
    x, y = shape.center
    step = size / 8
    handle = Point(x, y)
    target = Point(min(x + step, size - 1), y)
    mask = np.zeros((size, size), bool)
    reach = shape.size + step
    mask[
        max(0, round(y - reach)) : round(y + reach),
        max(0, round(x - shape.size - 2)) : round(x + reach + 2),
    ] = True
    return DragRequest(scene.render(), (handle,), (target,), mask, scene.caption(), config)


def naive(config: DragConfig) -> DragConfig:
    return config.replace(**{name: False for name in SPEED_FIELDS})


# -- measuring ------------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak CUDA memory allocated (GPU) or peak resident set size sampled every 5 ms (CPU), in MiB."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = self.start = 0.0
        self._running = False

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            _release_freed_memory()  # else the second variant starts on the first one's retained heap
            self.start = self.peak = _rss_mib()
            self._running = True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._running = False
            self._thread.join()
            self.peak = max(self.peak, _rss_mib())


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them), so that RSS measures this run's own peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: RSS then includes memory retained from earlier runs
        pass


def _rss_mib() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def stage_steps(config: DragConfig, steps_used: int) -> dict[str, int]:
    """How many steps each stage ran (the drag stage: the optimiser updates it made)."""
    return {
        "lora": config.lora_steps,
        "inversion": config.n_inversion_steps,
        "drag": steps_used,
        "denoise": config.n_inversion_steps,
    }


def run_edit(model: DiffusionModel, request: DragRequest) -> dict:
    """Time one complete edit with an empty cache: seconds per stage and per step, peak memory, the image."""
    with tempfile.TemporaryDirectory() as cache, PeakMemory(model.device) as memory:
        result = DragDiffusion(Runtime(model, cache_dir=cache)).edit(request)
    steps = stage_steps(request.config, result.steps_used)
    return {
        "seconds": {stage: result.timings[stage] for stage in STAGES},
        "seconds_per_step": {s: result.timings[s] / n for s, n in steps.items() if n},
        "steps": steps,
        "peak_memory_mib": round(memory.peak, 1),
        "memory_added_mib": round(memory.peak - memory.start, 1),
        "image": result.image,
    }


def run_dragon(model: DiffusionModel, size: int, overrides: dict) -> dict:
    """DragonDiffusion's move of the same scene's first shape by size/8: seconds per stage, peak memory and the
    memory bank's size."""
    from .dragon import DragonDiffusion, MoveRequest

    scene = bench_scene(size)
    with tempfile.TemporaryDirectory() as cache:
        editor = DragonDiffusion(Runtime(model, cache_dir=cache))
        config = editor.default_config("move", **{"resolution": size, **overrides})
        request = MoveRequest(scene.render(), scene.shape_mask(0), Point(size / 8, 0), 1.0, scene.caption(), config)
        with PeakMemory(model.device) as memory:
            result = editor.edit(request)
    return {
        "mode": "move",
        "seconds": {k: round(v, 3) for k, v in result.timings.items()},
        "seconds_per_step": round(result.timings["editing"] / config.n_steps, 4),
        "steps": config.n_steps,
        "variant": config.variant,
        "memory_bank_mib": round(result.memory_bytes / 2**20, 1),
        "memory_bank_on": "cpu" if config.memory_on_cpu else str(model.device),
        "peak_memory_mib": round(memory.peak, 1),
    }


def run_methods(model: DiffusionModel, size: int, names: list[str], own: dict[str, dict]) -> dict:
    """The same point drag with each named method of the registry (its --set values in own[name]), each with
    an empty cache: seconds in total and per stage, peak memory, and the ratios to the first method's."""
    reports = {}
    for name in names:
        print(f"[bench] method {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as cache, PeakMemory(model.device) as memory:
            method = Runtime(model, cache_dir=cache).method(name)
            sized = {"resolution": size} if "resolution" in {f.name for f in fields(method.config_type)} else {}
            config = method.default_config(**{**sized, **own[name]})
            result = method.edit(replace(bench_request(size, config), config=config))
        stages = {k: round(v, 3) for k, v in result.timings.items() if k != "total"}
        reports[name] = {
            "total_s": round(result.timings["total"], 3),
            "stages": stages,
            "peak_mb": round(memory.peak, 1),
        }
        if hasattr(result, "steps_used"):  # the LoRA methods: latent-optimiser updates made
            reports[name]["drag_updates"] = result.steps_used
    first = reports[names[0]]
    for report in reports.values():
        report["total_vs_first"] = ratio(report["total_s"], first["total_s"])
        report["stages_vs_first"] = stage_ratios(report["stages"], first["stages"])
    return reports


def ratio(value: float, base: float) -> float:
    return round(value / max(base, 1e-9), 3)


def stage_ratios(stages: dict, base: dict) -> dict:
    """Each stage's seconds against the same stage of `base` (the stages both have)."""
    return {name: ratio(seconds, base[name]) for name, seconds in stages.items() if name in base}


def run_architectures(args: argparse.Namespace, overrides: dict) -> dict:
    """The --methods drag on each model of --architectures in turn (one loaded at a time): each method's time
    per stage and peak memory, and their ratios to the first architecture's."""
    own = methods.split_overrides(overrides, methods.names())
    device = torch.device(args.device) if args.device else None
    names = args.methods or ["inpaint4drag"]
    reports = {}
    for spec in args.architectures:
        print(f"[bench] architecture {spec} ...", file=sys.stderr, flush=True)
        model = load_model(spec, device, args.dtype)
        reports[spec] = {"dtype": str(model.dtype).removeprefix("torch."), "device": str(model.device)}
        reports[spec]["methods"] = run_methods(model, args.size, names, own)
        del model  # freed before the next one loads: two real-size models need not fit at once
    first = reports[args.architectures[0]]["methods"]
    for report in reports.values():
        for name, m in report["methods"].items():
            base = first[name]
            m["total_vs_first_architecture"] = ratio(m["total_s"], base["total_s"])
            m["peak_vs_first_architecture"] = ratio(m["peak_mb"], base["peak_mb"])
            m["stages_vs_first_architecture"] = stage_ratios(m["stages"], base["stages"])
    return {"size": args.size, "architectures": reports, "overrides": overrides}


def architectures_table(summary: dict) -> str:
    lines = [f"each architecture at {summary['size']} px (ratios to the first architecture's)"]
    for spec, report in summary["architectures"].items():
        for name, m in report["methods"].items():
            stages = ", ".join(f"{k} {v:.2f}" for k, v in m["stages"].items())
            lines.append(
                f"{spec} {name}: {m['total_s']:.2f} s ({m['total_vs_first_architecture']:.3g}×), "
                f"peak {m['peak_mb']:.0f} MiB ({m['peak_vs_first_architecture']:.3g}×); s per stage: {stages}"
            )
    return "\n".join(lines)


def time_warp_preview(size: int = 512, repeats: int = 5) -> dict:
    """Inpaint4Drag's warp alone (what the app draws while the points move, the moving object refined) on the
    benchmark's drag at size×size with a second, pinned handle (a deformation, not the translation one pair
    gives): the median of `repeats` runs, in ms."""
    from .inpaint4drag.warp import warp_request

    request = bench_request(size, None)
    shape = bench_scene(size).shapes[0]
    pinned = Point(shape.center[0] - shape.size / 2, shape.center[1])
    request = replace(request, handles=(*request.handles, pinned), targets=(*request.targets, pinned))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        warp_request(request, band_px=5, refine=True)  # as the app draws it: the object found by GrabCut
        times.append(time.perf_counter() - t0)
    region = int(request.mask.sum())
    return {"size": size, "pairs": 2, "region_px": region, "median_ms": round(1000 * sorted(times)[len(times) // 2], 2)}


def count_flops(model: DiffusionModel, request: DragRequest) -> dict[str, dict[str, float]]:
    """FLOPs of each stage as `fixed` + `per_step` × steps, from a short counted run (two steps per stage).

    Each stage's total is counted around the engine's method for it; its per-step part from the counter's
    running total at its progress events. The rest is fixed (the drag stage's anchor, F0 and final tracking
    passes; the VAE encoding of inversion and, with lora_encode_once, of the LoRA's first step).
    """
    from torch.utils.flop_counter import FlopCounterMode

    short = request.config.replace(
        lora_steps=min(request.config.lora_steps, 2),
        n_inversion_steps=2,
        drag_steps=min(request.config.drag_steps, 2),
        stop_distance=0.0,  # no early stop: both drag steps run
    )
    counter = FlopCounterMode(display=False)
    totals: dict[str, float] = {}
    marks: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as cache, counter:
        engine = DragDiffusion(Runtime(model, cache_dir=cache))
        for stage, method in (
            ("lora", "_lora"),
            ("inversion", "_invert"),
            ("drag", "_optimise"),
            ("denoise", "_denoise"),
        ):
            setattr(engine, method, _counted(getattr(engine, method), stage, counter, totals))
        record = lambda progress: marks.setdefault(progress.stage, []).append(counter.get_total_flops())  # noqa: E731
        engine.edit(replace(request, config=short), on_progress=record)
        width, height = engine.geometry(request.image.size, short).latent_size
        latent = torch.zeros(1, model.latent_channels, height, width, device=model.device, dtype=model.dtype)
        _counted(model.decode, "decode", counter, totals)(latent)
    per_step = {s: (m[-1] - m[0]) / (len(m) - 1) if len(m) > 1 else 0.0 for s, m in marks.items()}
    fixed = {s: max(0.0, total - per_step.get(s, 0.0) * len(marks.get(s, ()))) for s, total in totals.items()}
    return {"per_step": per_step, "fixed": fixed}


def _counted(method, stage: str, counter, totals: dict[str, float]):
    def counted(*args, **kwargs):
        before = counter.get_total_flops()
        try:
            with torch.no_grad() if stage == "decode" else contextlib.nullcontext():
                return method(*args, **kwargs)
        finally:
            totals[stage] = totals.get(stage, 0.0) + counter.get_total_flops() - before

    return counted


def device_peak_flops(device: torch.device, dtype_name: str) -> tuple[float, str]:
    """FLOP/s the device can do: the datasheet's dense peak for known GPUs, else a measured fp32 matmul."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAK_TFLOPS.items():
            if key in name:
                return peaks[dtype_name] * 1e12, f"{name} datasheet dense {dtype_name}"
    a = torch.randn(1024, 1024, device=device)
    torch.mm(a, a)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        torch.mm(a, a)
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * 1024**3 * count / (time.perf_counter() - start), "measured 1024² fp32 matmul"


def with_flops(report: dict, flops: dict[str, dict[str, float]], peak: float) -> None:
    """Add FLOPs per stage (fixed + per step × steps) and the achieved fraction of peak to a run's report."""
    steps = {**report["steps"], "decode": 0}
    totals = {s: fixed + flops["per_step"].get(s, 0.0) * steps[s] for s, fixed in flops["fixed"].items()}
    totals["total"] = sum(totals.values())
    report["gflop"] = {s: round(f / 1e9, 3) for s, f in totals.items()}
    report["fraction_of_peak"] = {
        s: round(f / report["seconds"][s] / peak, 5) for s, f in totals.items() if report["seconds"].get(s)
    }


def profile(model: DiffusionModel, request: DragRequest, path: Path, rows: int = 25) -> None:
    """torch.profiler's table of the operators that take the most time in one edit, written to `path`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    with torch_profile(activities=activities) as profiler:
        run_edit(model, request)
    sort = "self_cuda_time_total" if model.device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.key_averages().table(sort_by=sort, row_limit=rows))
    print(f"wrote the profile's top {rows} operators to {path}", file=sys.stderr)


def difference(a: Image.Image, b: Image.Image) -> dict[str, float]:
    """How far two results differ: max and mean absolute difference (0-255) and PSNR."""
    from .eval.metrics import as_array, psnr

    gap = np.abs(as_array(a) - as_array(b))
    return {"max_abs": float(gap.max()), "mean_abs": float(gap.mean()), "psnr_db": psnr(a, b)}


# -- command line -----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, overrides: dict) -> dict:
    own = methods.split_overrides(overrides, methods.names())
    overrides, dragon_overrides = own["dragdiffusion"], own["dragon"]
    device = torch.device(args.device) if args.device else None
    model = load_model(args.model, device, args.dtype)
    config = DragDiffusion(Runtime(model)).default_config(**overrides)
    request = bench_request(args.size, config.replace(resolution=args.size))
    models = {model.dtype: model}

    def model_in(dtype: torch.dtype) -> DiffusionModel:
        if dtype not in models:
            models[dtype] = load_model(args.model, model.device, dtype)
        return models[dtype]

    # The DragDiffusion variants (the fixed edit, naive and optimised): unless only --methods were asked for.
    variants = {"optimised": (model, request.config)} if args.compare or args.try_ or not args.methods else {}
    if args.compare:  # the naive run is fp32 with every speed setting off
        variants = {"naive": (model_in(torch.float32), naive(request.config)), **variants}
    for name, (changes, dtype) in tried_variants(args.try_).items():
        variants[name] = (model_in(dtype) if dtype else model, request.config.replace(**changes))
    reports = {}
    for name, (variant_model, variant_config) in variants.items():
        warmup = None
        if args.warmup:  # one-time costs (kernel selection, compilation) must not land in the timed edit
            t0 = time.perf_counter()
            warm = variant_config.replace(lora_steps=1, n_inversion_steps=1, drag_steps=1)
            run_edit(variant_model, replace(request, config=warm))
            warmup = round(time.perf_counter() - t0, 2)
        print(f"[bench] {name}: running the edit ...", file=sys.stderr, flush=True)
        reports[name] = {**run_edit(variant_model, replace(request, config=variant_config)), "warmup_seconds": warmup}
    if args.profile:
        print("[bench] optimised: profiling ...", file=sys.stderr, flush=True)
        profile(model, request, args.profile)
    if args.flops:
        for name, (variant_model, variant_config) in list(variants.items())[: 2 if args.compare else 1]:
            print(f"[bench] {name}: counting FLOPs ...", file=sys.stderr, flush=True)
            variant_request = replace(request, config=variant_config)
            peak, peak_source = device_peak_flops(variant_model.device, _dtype_name(variant_model))
            with_flops(reports[name], count_flops(variant_model, variant_request), peak)
            reports[name]["peak_flops"] = {"tflops": round(peak / 1e12, 3), "source": peak_source}
    images = {name: report.pop("image") for name, report in reports.items()}
    method_reports = run_methods(model, args.size, args.methods, own) if args.methods else {}
    dragon = None
    if args.dragon:
        print("[bench] DragonDiffusion move ...", file=sys.stderr, flush=True)
        dragon = run_dragon(model, args.size, dragon_overrides)
    summary = {
        "model": model.spec,
        "size": args.size,
        "device": _device_name(model.device),
        "dtype": _dtype_name(model),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "config": request.config.to_dict(),
        "variants": reports,
    }
    if dragon:
        summary["dragon"] = dragon
    if args.methods:
        summary["methods"] = method_reports
    if "inpaint4drag" in args.methods:
        summary["warp_preview"] = time_warp_preview()
    if args.compare:  # each variant against naive: per-stage speed-up and how far its result is from naive's
        summary["speedups"] = {
            name: {s: ratio(reports["naive"]["seconds"][s], r["seconds"][s]) for s in STAGES}
            for name, r in reports.items()
            if name != "naive"
        }
        summary["differences"] = {
            name: difference(images["naive"], images[name]) for name in reports if name != "naive"
        }
    if args.save_images:
        args.save_images.mkdir(parents=True, exist_ok=True)
        request.image.save(args.save_images / "input.png")
        for name, image in images.items():
            image.save(args.save_images / f"{name}.png")
    return summary


def table(summary: dict) -> str:
    lines = _variants_table(summary) if summary["variants"] else []
    lines.append(f"{summary['model']} at {summary['size']} px on {summary['device']} ({summary['dtype']})")
    if "dragon" in summary:
        d = summary["dragon"]
        lines.append(
            f"DragonDiffusion move ({d['steps']} steps, {d['variant']}): inversion {d['seconds']['inversion']:.2f} s, "
            f"editing {d['seconds']['editing']:.2f} s, total {d['seconds']['total']:.2f} s; memory bank "
            f"{d['memory_bank_mib']:.1f} MiB on {d['memory_bank_on']}; peak memory {d['peak_memory_mib']:.0f} MiB"
        )
    for name, m in summary.get("methods", {}).items():
        stages = ", ".join(f"{s} {v:.2f}" for s, v in m["stages"].items())
        speed = 1 / max(m["total_vs_first"], 1e-9)
        lines.append(
            f"method {name}: total {m['total_s']:.2f} s ({m['total_vs_first']:.3g}× the first's time, {speed:.3g}× as "
            f"fast), peak memory {m['peak_mb']:.0f} MiB; s per stage: {stages}"
        )
    if "warp_preview" in summary:
        w = summary["warp_preview"]
        lines.append(
            f"inpaint4drag warp preview at {w['size']} px ({w['pairs']} pairs, a {w['region_px']}-px region): "
            f"{w['median_ms']:.1f} ms (median)"
        )
    return "\n".join(lines)


def _variants_table(summary: dict) -> list[str]:
    """DragDiffusion's fixed edit per variant: seconds per stage, speed-ups, FLOPs, memory, differences."""
    variants = summary["variants"]
    names = list(variants)
    speedups = summary.get("speedups", {})
    header = ["stage", *[f"{n} s" for n in names], *[f"{n} ×" for n in speedups]]
    header += ["optimised s/step", "GFLOP", "% of peak"]
    rows = [header]
    last = variants["optimised"]
    for stage in STAGES:
        row = [stage, *[f"{variants[n]['seconds'][stage]:.2f}" for n in names]]
        row += [f"{speedup[stage]:.2f}×" for speedup in speedups.values()]
        per_step = last["seconds_per_step"].get(stage)
        row.append(f"{per_step:.3f}" if per_step is not None else "")
        row.append(f"{last['gflop'][stage]:.1f}" if "gflop" in last and stage in last["gflop"] else "")
        fraction = last.get("fraction_of_peak", {}).get(stage)
        row.append(f"{100 * fraction:.1f}" if fraction is not None else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    memory = ", ".join(f"{n} {variants[n]['peak_memory_mib']:.0f} MiB" for n in names)
    lines.append(f"peak memory ({'CUDA allocated' if 'cuda' in summary['device'] else 'RSS'}): {memory}")
    for name, d in summary.get("differences", {}).items():
        lines.append(f"naive vs {name} result: max |Δ| {d['max_abs']:.0f}/255, PSNR {d['psnr_db']:.1f} dB")
    warmups = {n: v["warmup_seconds"] for n, v in variants.items() if v.get("warmup_seconds") is not None}
    if warmups:
        lines.append(
            "warm-up edit (1 step per stage; compilation lands here): "
            + ", ".join(f"{n} {s:.1f} s" for n, s in warmups.items())
        )
    return lines


def tried_variants(items: list[str]) -> dict[str, tuple[dict, torch.dtype | None]]:
    """`--try "channels_last=true,dtype=bf16"` items: {name: (DragConfig changes, model dtype or None)}."""
    from .cli import parse_overrides

    variants = {}
    for item in items:
        changes = parse_overrides([part for part in item.split(",") if part.strip()])
        dtype = changes.pop("dtype", None)
        if dtype is not None and dtype not in DTYPES:
            raise DragError(f"--try {item!r}: dtype must be one of {sorted(DTYPES)}")
        variants[item] = (changes, DTYPES[dtype] if dtype else None)
    return variants


def _dtype_name(model: DiffusionModel) -> str:
    return {v: k for k, v in DTYPES.items()}[model.dtype]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> int:
    from .cli import add_set_argument, parse_overrides

    parser = argparse.ArgumentParser(
        prog="python -m dragdiff.bench", description="Time and measure one complete drag edit, stage by stage."
    )
    parser.add_argument(
        "--model",
        default="tiny",
        help="tiny, demo, sd15-random, sd21-random or sdxl-random (a real size, random weights), …",
    )
    parser.add_argument("--size", type=int, default=256, help="image and working size in px (default 256)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--compare", action="store_true", help="also run the naive variant and print the ratios")
    parser.add_argument("--no-flops", dest="flops", action="store_false", help="skip the FLOP-counting runs")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the short warm-up edit")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--profile", type=Path, help="also profile the optimised edit; top operators to this file")
    parser.add_argument("--save-images", type=Path, help="folder for the input and each variant's result")
    parser.add_argument(
        "--try",
        dest="try_",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="also time the optimised edit with these changes (e.g. channels_last=true or dtype=bf16), repeatable",
    )
    parser.add_argument(
        "--dragon", action="store_true", help="also time a DragonDiffusion move and report its memory bank's size"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=methods.names(),
        default=[],
        metavar="NAME",
        help="time the same point drag with each of these methods of the registry (ratios to the first; alone, "
        f"without --compare or --try, only they run): {', '.join(methods.names())}",
    )
    parser.add_argument(
        "--architectures",
        nargs="+",
        default=[],
        metavar="MODEL",
        help="instead: the --methods drag (default inpaint4drag) on each of these models, e.g. sd15-random "
        "sd21-random sdxl-random, with per-stage time and peak memory as ratios to the first",
    )
    add_set_argument(parser)
    args = parser.parse_args(argv)
    try:
        if args.architectures:
            summary = run_architectures(args, parse_overrides(args.set))
        else:
            summary = run(args, parse_overrides(args.set))
    except DragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(architectures_table(summary) if args.architectures else table(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
