"""The bundled demo model (dragdiff/demo_model): loads through the same code as SD, is what `auto` picks
offline, its autoencoder reconstructs held-out scenes and its samples follow the prompt's colour."""

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from dragdiff.cli import main
from dragdiff.eval.demo_checks import colour_accuracy, vae_psnr
from dragdiff.eval.metrics import dift_features, mean_distance_pairs
from dragdiff.models import load_model
from dragdiff.shapes import random_scene
from dragdiff.types import Point


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def test_demo_model_is_sd_shaped_and_sized_from_its_configs(demo):
    assert demo.native_resolution == 128 and demo.vae_factor == 4 and demo.latent_channels == 4
    assert demo.scheduler().config.prediction_type == "epsilon"
    assert demo.defaults["reference_attention_blocks"] == [0, 1]  # its own tuned values are read


def test_vae_reconstructs_held_out_scenes_above_28_db(demo):
    psnr = vae_psnr(demo, count=50)
    print(f"demo VAE held-out PSNR over 50 scenes: {psnr:.2f} dB")
    assert psnr >= 28.0


def test_samples_take_the_prompts_colour(demo):
    """Text-to-image: the dominant shape colour of 40 samples (DDIM 30, CFG 4) is the prompt's in >= 70%."""
    accuracy, _, _ = colour_accuracy(demo, 40)
    print(f"demo prompt colour accuracy over 40 samples: {accuracy:.1%}")
    assert accuracy >= 0.7


def test_auto_without_sd_weights_picks_the_demo_model_and_edits(tmp_path, scene, capsys):
    """HF_HUB_OFFLINE is set and no SD is cached here: auto must say it uses the demo model, and edit with the
    demo model's best measured method (its dragdiff.yaml's default_method, Inpaint4Drag) and its values."""
    scene.save(tmp_path / "in.png")
    mask = np.zeros((96, 128), np.uint8)
    mask[28:70, 20:85] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    args = ["edit", "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png")]
    args += ["--points", "40,48>60,48", "--out", str(out), "--quiet", "--cache-dir", str(tmp_path / "cache")]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    assert "bundled demo model" in capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["format"] == "dragdiff-inpaint4drag-session"  # no --method: the demo model's best
    assert summary["model"] == "demo" and summary["config"]["band_px"] == 1 and summary["config"]["strength"] == 0.5


def test_mean_distance_finds_moved_shapes_with_the_demo_models_features(demo):
    """MD on constructed cases: shapes moved by (dx, dy) with targets = handles + (dx, dy) give MD near 0;
    targets on the wrong side give about twice the shift. Measured at 2.6 px mean (9 pairs, max 4.3) and
    27.3 px for the wrong side (2·|d| = 28.8). A tiny *random* model's features cannot do this: their match
    stays at the handle (MD = |d| both ways), so the trained demo model is the feature model here."""
    right, wrong = [], []
    for seed in range(6):
        rng = random.Random(seed)
        scene = random_scene(rng, max_shapes=2)
        dx, dy = rng.choice([-12, 12]), rng.choice([-8, 8])
        moved = replace(
            scene, shapes=tuple(replace(s, center=(s.center[0] + dx, s.center[1] + dy)) for s in scene.shapes)
        )
        handles = tuple(Point(*s.center) for s in scene.shapes)
        source, edited = (dift_features(demo, s.render(), "", 261, 1, 8) for s in (scene, moved))
        right += mean_distance_pairs(source, edited, handles, tuple(Point(h.x + dx, h.y + dy) for h in handles))
        wrong += mean_distance_pairs(source, edited, handles, tuple(Point(h.x - dx, h.y - dy) for h in handles))
    print(f"MD moved: {np.mean(right):.1f} px (max {max(right):.1f}); wrong side: {np.mean(wrong):.1f} px")
    assert np.mean(right) < 5 and max(right) < 8
    assert abs(np.mean(wrong) - 2 * np.hypot(12, 8)) < 5
