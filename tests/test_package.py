"""dragdiff installs as a package: a wheel built from the checkout, installed into a fresh virtual environment
(system site packages for torch and the rest), edits with the `dragdiff` command from a folder outside it."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", "outputs", "test-artifacts", "build", "dist", "*.egg-info", "__pycache__")
FAST = [
    "--method",
    "dragdiffusion",
    "--lora-steps",
    "0",
    "--drag-steps",
    "2",
    "--n-inference-steps",
    "6",
    "--n-inversion-steps",
    "4",
]


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `bin` folder of a fresh virtual environment with the wheel of this checkout installed."""
    base = tmp_path_factory.mktemp("package")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)  # the checkout stays clean of build output
    wheels = base / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    run(build, base)
    (wheel,) = wheels.glob("dragdiff-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("dragdiff/drag/method.py", "dragdiff/dragon/method.py", "dragdiff/eval/__main__.py"):
        assert needed in names
    assert "dragdiff/configs/drag.yaml" in names and "dragdiff/demo_model/unet/config.json" in names
    run([sys.executable, "-m", "venv", "--system-site-packages", str(base / "venv")], base)
    bin_dir = base / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], base)
    return bin_dir


@pytest.mark.parametrize("model", ["tiny", "demo"])
def test_the_installed_command_edits_outside_the_checkout(installed, model, tmp_path, scene):
    where = run([str(installed / "python"), "-c", "import dragdiff; print(dragdiff.__file__)"], tmp_path).stdout
    assert str(ROOT) not in where and "site-packages" in where  # the installed copy, not this checkout
    scene.save(tmp_path / "in.png")
    args = ["edit", "--model", model, "--image", "in.png", "--points", "40,48>60,48", *FAST, "--quiet"]
    run([str(installed / "dragdiff"), *args, "--cache-dir", "cache", "--out", "out.png"], tmp_path)
    session = json.loads((tmp_path / "out.json").read_text())
    assert session["model"] == model and (tmp_path / "out.png").stat().st_size > 0
    if model == "demo":  # its own dragdiff.yaml, read from the package data, under the flags
        assert session["config"]["reference_attention_blocks"] == [0, 1] and session["config"]["drag_steps"] == 2
