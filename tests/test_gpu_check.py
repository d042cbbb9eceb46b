"""scripts/gpu_check.sh --dry-run: the device check's steps on the CPU with the tiny model, in the JSON layout
the GPU run writes (the GPU tier itself skips here, saying why)."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"dragdiffusion", "gooddrag", "inpaint4drag", "dragon"}


@pytest.mark.slow
def test_the_dry_run_writes_every_step_in_the_gpu_layout(tmp_path):
    out = tmp_path / "gpu-cpu-dry-run.json"
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu-dry-run" and report["dry_run"] is True
    assert {step: result["exit"] for step, result in report["steps"].items()} == {
        "pytest_gpu": 0,
        "bench": 0,
        "shapes": 0,
    }
    assert "skipped" in report["steps"]["pytest_gpu"]["tail"]  # no CUDA here: the tier skips, it does not fail
    bench = report["bench"]
    assert set(bench["methods"]) == METHODS and {"naive", "optimised"} <= set(bench["variants"])
    assert "gflop" in bench["variants"]["optimised"] and bench["dragon"]["memory_bank_mib"] > 0
    assert {"no edit", "naive warp", "DragDiffusion", "GoodDrag", "Inpaint4Drag", "DragonDiffusion"} <= set(
        report["shapes"]
    )
    assert "device check on cpu-dry-run" in done.stdout and "method inpaint4drag" in done.stdout
