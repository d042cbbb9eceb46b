"""python -m dragdiff.eval shapes|dragbench ...: benchmarks of drag editing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import methods
from ..cli import add_set_argument, parse_overrides
from ..errors import DragError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dragdiff.eval", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shapes = commands.add_parser("shapes", help="DragBench-Shapes: drags with exact ground truth, demo model")
    shapes.add_argument("--model", default="demo", help="model spec (default: demo)")
    shapes.add_argument("--count", type=int, default=20, help="number of tasks (default 20)")
    shapes.add_argument("--seed", type=int, default=0, help="task seed: the same seed gives the same tasks")
    shapes.add_argument("--out", type=Path, required=True, help="folder for results.json, results.csv, grid.png")
    shapes.add_argument(
        "--scale",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="render the tasks N times the model's native size (1-8; default 1): small objects in a large "
        "picture, where work_area=region matters",
    )
    shapes.add_argument(
        "--export",
        action="store_true",
        help="only write the tasks to --out in DragBench's layout (category 'shapes'), for `dragbench --root`",
    )
    shapes.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    bench = commands.add_parser("dragbench", help="DragBench in its official layout: edit (resumable), then MD")
    bench.add_argument("--root", type=Path, required=True, help="DragBench folder: <category>/<sample>/...")
    bench.add_argument("--model", default="auto", help="editing model spec (default: auto)")
    bench.add_argument(
        "--md-model",
        default="stabilityai/stable-diffusion-2-1",
        help="model whose features measure MD (default: SD 2.1, as the reference); 'same' = --model",
    )
    bench.add_argument("--out", type=Path, required=True, help="results folder (<category>/<sample>/dragged_image.png)")
    bench.add_argument("--limit", type=int, help="only the first N samples")
    bench.add_argument("--categories", nargs="*", help="only these categories")
    bench.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    bench.add_argument(
        "--lpips-dir",
        type=Path,
        help="folder of the LPIPS weights for Image Fidelity (default: "
        "$DRAGDIFF_LPIPS_DIR or ~/.cache/dragdiff/lpips; see scripts/convert_lpips_weights.py)",
    )
    bench.add_argument(
        "--clip-model",
        help="also report CLIP image similarity (original vs edited) with this local CLIP model: a folder, or a "
        "hub id already in the local cache, e.g. openai/clip-vit-base-patch32 (optional; never downloaded)",
    )
    bench.add_argument("--skip-if", action="store_true", help="do not compute Image Fidelity (no LPIPS weights)")
    for command in (shapes, bench):
        command.add_argument(
            "--method",
            nargs="+",
            default=["dragdiffusion"],
            choices=methods.names(),
            help="editing method(s) of the registry (default: dragdiffusion): "
            + ", ".join(methods.names())
            + "; shapes compares all given on the same tasks, dragbench takes one",
        )
        add_set_argument(command)
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        return {"shapes": _shapes, "dragbench": _dragbench}[args.command](args, overrides)
    except DragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _shapes(args, overrides: dict) -> int:
    from .run_shapes import run, table
    from .shapes_bench import export_dragbench, make_tasks

    if args.export:
        export_dragbench(make_tasks(args.count, args.seed, scale=args.scale), args.out)
        print(f"wrote {args.count} tasks to {args.out / 'shapes'} in DragBench's layout")
        return 0
    summary = run(args.model, args.count, args.seed, args.out, overrides, args.device, args.method, scale=args.scale)
    print(table(summary))
    print(f"wrote {args.out / 'results.json'}, results.csv and grid.png")
    return 0


def _dragbench(args, overrides: dict) -> int:
    import json

    from accelerate import PartialState

    from ..models import load_model
    from ..runtime import Runtime
    from .clip_similarity import ClipSimilarity
    from .dragbench import edit_all, find_samples, score
    from .lpips import LPIPS
    from .methods import make_methods

    if len(args.method) != 1:
        raise DragError("dragbench: give one --method per results folder (compare methods with `shapes`)")

    # Under `accelerate launch` every process edits its share of the samples (on its own device), then the main
    # process scores them all; run plainly it is one process doing everything.
    state = PartialState(cpu=args.device == "cpu")
    device = args.device or str(state.device)
    samples = find_samples(args.root, args.categories, args.limit)
    # Metric models load first, so that a missing one fails before hours of editing.
    lpips = None if args.skip_if else LPIPS.pretrained(args.lpips_dir)
    clip = ClipSimilarity.load(args.clip_model, device) if args.clip_model else None
    runtime = Runtime(args.model, device=device)
    (method,) = make_methods(args.method, runtime, overrides)
    with state.split_between_processes(samples) as mine:
        edit_all(method, mine, args.out)
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    runtime.use_lora(None)  # MD with the plain UNet: the last DragDiffusion edit left its image's LoRA attached
    md_model = runtime.model if args.md_model == "same" else load_model(args.md_model, device)
    summary = score(md_model, lpips, samples, args.out, clip=clip)
    print(json.dumps({k: v for k, v in summary.items() if k != "categories"}, indent=2))
    print(f"wrote {args.out / 'summary.json'}, per_sample.csv and report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
