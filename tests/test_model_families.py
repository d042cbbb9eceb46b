"""Model families beyond SD 1.5, on tiny random models of their shape: SD 2.x (`tiny-sd2`: v-prediction,
OpenCLIP-shaped text encoder of another width, linear projections, per-block head sizes). Each is saved in
the diffusers layout and loaded back, and every method and DragonDiffusion mode runs on it end to end, with
a session that replays to the same picture."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dragdiff import DragRequest, Point
from dragdiff.models import choice_label, load_model, model_summary, save_model
from dragdiff.point_session import load_session
from dragdiff.runtime import Runtime
from tests.test_half_precision import FAST, mask_box, run_dragon_modes


@pytest.fixture(scope="module")
def sd2():
    return load_model("tiny-sd2", "cpu")


def test_an_sd2_model_saved_as_a_diffusers_folder_loads_back_as_v_prediction(sd2, tmp_path):
    save_model(sd2, tmp_path / "sd2")
    loaded = load_model(str(tmp_path / "sd2"), "cpu")
    assert loaded.scheduler().config.prediction_type == "v_prediction"
    assert loaded.text_encoder.config.hidden_act == "gelu" and loaded.unet.config.use_linear_projection
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = [m.unet(latent, 500, encoder_hidden_states=m.encode_prompt("a star")).sample for m in (sd2, loaded)]
    assert torch.allclose(*outputs, atol=1e-5)  # the same weights (upcast attention rounds apart by ~1e-6)
    assert "tiny-sd2: random weights" in model_summary("tiny-sd2")
    assert choice_label("sd21") == "sd21 (not downloaded)"  # the app's model menu, offline


def test_every_method_and_mode_runs_on_sd2(sd2, scene, tmp_path, one_thread):
    runtime = Runtime(sd2, cache_dir=str(tmp_path))
    mask = mask_box()
    for name, fast in FAST.items():
        method = runtime.method(name)
        result = method.edit(
            DragRequest(scene, (Point(40, 48),), (Point(60, 48),), mask, "", method.default_config(**fast))
        )
        assert result.image.size == scene.size and result.session.model == "tiny-sd2", name
        assert np.asarray(result.image).std() > 0, name
    run_dragon_modes(runtime.method("dragon"), scene, mask)


def test_an_sd2_edit_from_the_cli_replays_to_the_same_picture(scene, tmp_path, one_thread):
    scene.save(tmp_path / "in.png")
    edit = [sys.executable, "-m", "dragdiff", "edit", "--model", "tiny-sd2", "--device", "cpu"]
    first = [*edit, "--image", str(tmp_path / "in.png"), "--points", "40,48>60,48", "--out", str(tmp_path / "a.png")]
    first += ["--method", "dragdiffusion", "--lora-steps", "2", "--drag-steps", "3"]
    for command in (first, [*edit, "--session", str(tmp_path / "a.png"), "--out", str(tmp_path / "b.png")]):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert load_session(tmp_path / "a.png").model == "tiny-sd2"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
