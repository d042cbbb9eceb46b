"""The one-shot device check (scripts/gpu_check.sh runs it): on a CUDA machine lent for minutes, bare and
offline, measure what this project can only state as targets on a CPU, and write it all to one JSON file.

    python scripts/gpu_check.py              # on a CUDA GPU: results/gpu-<device>.json (fits in ~8 minutes)
    python scripts/gpu_check.py --dry-run    # the same steps on the CPU with the tiny model, in a few minutes

Steps, each recorded with its exit status and time even when it fails (the next still runs):
  1. pytest -m gpu: the GPU test tier (tests/test_gpu.py)
  2. the benchmark: every method's whole edit on sd15-random at 512 px in fp16 (per stage, peak memory), with
     DragDiffusion's naive and optimised variants (no FLOP counting: too slow for the lease), and
     DragonDiffusion's memory bank
  3. DragBench-Shapes on the demo model with every method (figures to compare with the CPU's)
Nothing is downloaded: the models are built from configs or bundled.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["dragdiffusion", "gooddrag", "inpaint4drag", "dragon"]


def plan(dry_run: bool, scratch: Path) -> dict[str, list[str]]:
    """The commands of each step: the real ones, or (dry run) the same on the CPU with tiny and few steps."""
    python = sys.executable
    if dry_run:
        bench = ["--model", "tiny", "--size", "64", "--device", "cpu", "--dtype", "fp32", "--no-warmup"]
        bench += [
            a
            for s in (
                "lora_steps=2",
                "drag_steps=2",
                "n_inference_steps=6",
                "n_inversion_steps=4",
                "drag_end_step=1",
                "tracks_per_step=1",
                "n_steps=4",
            )
            for a in ("--set", s)
        ]
        shapes = ["--model", "tiny", "--count", "1", "--device", "cpu"]
        shapes += [
            a
            for s in ("lora_steps=2", "drag_steps=2", "n_steps=4", "drag_end_step=1", "tracks_per_step=1")
            for a in ("--set", s)
        ]
    else:
        # Sized after the first run on an H200 (2026-12-04), where the tests took 128 s but the benchmark with
        # FLOP counting and 20 shape tasks per method did not finish within 180 s and 120 s.
        bench = ["--model", "sd15-random", "--size", "512", "--device", "cuda", "--dtype", "fp16", "--no-flops"]
        shapes = ["--model", "demo", "--count", "8", "--seed", "1", "--device", "cuda"]
    return {
        "pytest_gpu": [
            python,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-s",
            "--tb=short",
            "-p",
            "no:cacheprovider",
            "tests/test_gpu.py",
        ],
        "bench": [
            python,
            "-m",
            "dragdiff.bench",
            *bench,
            "--compare",
            "--dragon",
            "--methods",
            *METHODS,
            "--out",
            str(scratch / "bench.json"),
        ],
        "shapes": [
            python,
            "-m",
            "dragdiff.eval",
            "shapes",
            *shapes,
            "--method",
            *METHODS,
            "--out",
            str(scratch / "shapes"),
        ],
    }


def run_step(command: list[str], timeout: float, log: Path) -> dict:
    """Run one step with its output to `log`, which keeps what a step printed before it timed out."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        try:
            code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    output = log.read_text(errors="replace") + (f"\ntimed out after {timeout:.0f} s" if code == 124 else "")
    return {
        "command": " ".join(command),
        "exit": code,
        "seconds": round(time.perf_counter() - t0, 1),
        "tail": output[-6000:],
    }


def device_name(dry_run: bool) -> str:
    if dry_run:
        return "cpu-dry-run"
    import torch

    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU with the tiny model")
    parser.add_argument("--out", type=Path, help="the JSON to write (default: results/gpu-<device>.json)")
    args = parser.parse_args(argv)
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device here; use --dry-run to try the steps on the CPU", file=sys.stderr)
            return 2
    name = device_name(args.dry_run)
    out = args.out or ROOT / "results" / f"gpu-{name}.json"
    scratch = out.parent / f"{out.stem}-files"
    scratch.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": name, "dry_run": args.dry_run, "steps": {}}
    limits = (
        # the tier first: its per-stage memory checks (six more 512-px edits since the first run) matter most
        {"pytest_gpu": 300, "bench": 180, "shapes": 100}
        if not args.dry_run
        else {k: 600 for k in ("pytest_gpu", "bench", "shapes")}
    )
    for step, command in plan(args.dry_run, scratch).items():
        print(f"[gpu_check] {step}: {' '.join(command[1:6])} ...", flush=True)
        report["steps"][step] = run_step(command, limits[step], scratch / f"{step}.log")
    bench_file, shapes_file = scratch / "bench.json", scratch / "shapes" / "results.json"
    report["bench"] = json.loads(bench_file.read_text()) if bench_file.is_file() else None
    report["shapes"] = json.loads(shapes_file.read_text())["summary"] if shapes_file.is_file() else None
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {out}")
    return 0 if all(s["exit"] == 0 for s in report["steps"].values()) else 1


def table(report: dict) -> str:
    lines = [f"device check on {report['device']}" + (" (dry run on the CPU)" if report["dry_run"] else "")]
    for step, result in report["steps"].items():
        lines.append(f"  {step:<11} exit {result['exit']:>3}  {result['seconds']:>6.1f} s")
    for name, m in ((report.get("bench") or {}).get("methods") or {}).items():
        lines.append(
            f"  method {name:<14} {m['total_s']:>8.2f} s  peak {m['peak_mb']:>8.0f} MiB  "
            f"({m['total_vs_first']:.3g}× the first's time)"
        )
    dragon = (report.get("bench") or {}).get("dragon")
    if dragon:
        lines.append(f"  DragonDiffusion memory bank {dragon['memory_bank_mib']:.1f} MiB")
    for name, s in (report.get("shapes") or {}).items():
        lines.append(f"  shapes {name:<16} handle error {s['handle_error']:.2f} px, PSNR {s['psnr_truth']:.2f} dB")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
