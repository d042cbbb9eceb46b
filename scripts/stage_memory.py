"""Peak memory of each stage of one edit on the CPU: what the edit holds above the loaded model, per stage.

A thread samples the process's resident memory every 20 ms; run it with MALLOC_MMAP_THRESHOLD_=1048576 so that
glibc maps every tensor of 1 MiB or more on its own and returns it when freed (otherwise freed memory stays
resident and later stages inherit earlier peaks). A stage's figure runs from its first progress report to the
next stage's, so the first step of the first stage is counted under "prepare".

  MALLOC_MMAP_THRESHOLD_=1048576 python scripts/stage_memory.py --method dragdiffusion --set lora_steps=2 \\
      --stop-after lora [--set gradient_checkpointing=true]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dragdiff.cli import parse_value  # noqa: E402
from dragdiff.errors import DragCancelled  # noqa: E402
from dragdiff.models import load_model  # noqa: E402
from dragdiff.runtime import Runtime  # noqa: E402
from tests.support.edits import drag_request  # noqa: E402  (the GPU tier's test picture)


def resident_gib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sd15-random")
    parser.add_argument("--method", default="dragdiffusion")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--stop-after", help="stop the edit when this stage ends")
    args = parser.parse_args()
    config = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    method = Runtime(load_model(args.model, "cpu"), cache_dir=tempfile.mkdtemp()).method(args.method)
    if "resolution" in method.default_config().to_dict():
        config.setdefault("resolution", args.size)
    request = drag_request(args.size, method, **config)
    base, stage, peaks = resident_gib(), ["prepare"], {}

    def sample() -> None:
        while True:
            peaks[stage[0]] = max(peaks.get(stage[0], 0.0), resident_gib() - base)
            time.sleep(0.02)

    def on_progress(progress) -> None:
        stage[0] = progress.stage

    def should_stop() -> bool:
        return args.stop_after is not None and stage[0] not in ("prepare", args.stop_after)

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    try:
        method.edit(request, on_progress=on_progress, should_stop=should_stop)
    except DragCancelled:
        pass
    report = dict(
        model=args.model,
        method=args.method,
        size=args.size,
        settings=config,
        loaded_model_gib=round(base, 2),
        seconds=round(time.perf_counter() - start, 1),
        peak_above_model_gib={name: round(value, 2) for name, value in peaks.items()},
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
