"""Shared fixtures: the tiny seeded model (never a download) and small test images."""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # tests must never reach the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: each worker gets one core (torch not imported yet)
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from dragdiff.config import resolve_config
from dragdiff.drag import DragConfig  # noqa: E402
from dragdiff.models import load_model, save_model  # noqa: E402

# Few, cheap steps: the tiny model at 128 px makes each UNet call ~20 ms.
FAST = dict(lora_steps=2, lora_batch_size=2, n_inference_steps=10, n_inversion_steps=7, drag_steps=4)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long-running tests, left out of the default run; python -m pytest -m slow runs them"
    )
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (scripts/gpu_check.sh runs them); skipped elsewhere")


def pytest_collection_modifyitems(config, items):
    """GPU tests skip, saying why, where no CUDA device is available: the default run passes on a CPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here); scripts/gpu_check.sh runs them on one")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: on a busy 2-core CPU torch's two threads wait on each other (a tiny
    drag took 25 s instead of 0.2 s), and a server run with OMP_NUM_THREADS=1 computes the same bytes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def uploads_in_pytest_tmp(tmp_path_factory, monkeypatch):
    """The app's handlers read only files under its upload folder (Gradio's, on a server). Tests that call
    them in-process "upload" to their tmp_path, so the folder is pytest's base temporary folder for them."""
    app = sys.modules.get("app")
    if app is not None:
        monkeypatch.setattr(app.SETTINGS, "uploads", tmp_path_factory.getbasetemp())


@pytest.fixture
def tiny_model():
    """A fresh copy per test (0.1 s): engines attach LoRA adapters to the model they are given."""
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_sd")
    save_model(load_model("tiny", device="cpu"), folder)
    return folder


@pytest.fixture
def fast_config():
    return resolve_config(DragConfig, **FAST)


@pytest.fixture
def scene():
    """A 128×96 picture: a bright disc on a smooth gradient (non-square on purpose)."""
    yy, xx = np.mgrid[0:96, 0:128]
    image = np.stack([xx / 127 * 200, yy / 95 * 150 + 50, np.full_like(xx, 90.0)], axis=-1)
    disc = (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2
    image[disc] = (250, 40, 40)
    return Image.fromarray(image.astype(np.uint8))
