"""python -m dragdiff.eval shapes ...: benchmarks of drag editing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import config_help, parse_value
from ..errors import DragError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dragdiff.eval", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shapes = commands.add_parser("shapes", help="DragBench-Shapes: drags with exact ground truth, demo model")
    shapes.add_argument("--model", default="demo", help="model spec (default: demo)")
    shapes.add_argument("--count", type=int, default=20, help="number of tasks (default 20)")
    shapes.add_argument("--seed", type=int, default=0, help="task seed: the same seed gives the same tasks")
    shapes.add_argument("--out", type=Path, required=True, help="folder for results.json, results.csv, grid.png")
    shapes.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    shapes.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a DragConfig parameter; one of: {', '.join(config_help())}",
    )
    args = parser.parse_args(argv)
    try:
        overrides = dict(_key_value(item) for item in args.set)
        from .run_shapes import run, table

        summary = run(args.model, args.count, args.seed, args.out, overrides, args.device)
    except DragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(summary))
    print(f"wrote {args.out / 'results.json'}, results.csv and grid.png")
    return 0


def _key_value(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep:
        raise DragError(f"--set {item!r}: write KEY=VALUE, e.g. --set drag_steps=40")
    return key.strip(), parse_value(value)


if __name__ == "__main__":
    sys.exit(main())
