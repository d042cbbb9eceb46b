"""The bundled demo model (assets/models/demo): loads through the same code as SD, is what `auto` picks
offline, and its autoencoder reconstructs held-out scenes."""

import json

import pytest

from dragdiff.cli import main
from dragdiff.eval.demo_checks import vae_psnr
from dragdiff.models import load_model


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def test_demo_model_is_sd_shaped_and_sized_from_its_configs(demo):
    assert demo.native_resolution == 128 and demo.vae_factor == 4 and demo.latent_channels == 4
    assert demo.scheduler().config.prediction_type == "epsilon"
    assert demo.drag_defaults["reference_attention_blocks"] == [0, 1]  # its own tuned values are read


def test_vae_reconstructs_held_out_scenes_above_28_db(demo):
    psnr = vae_psnr(demo, count=50)
    print(f"demo VAE held-out PSNR over 50 scenes: {psnr:.2f} dB")
    assert psnr >= 28.0


def test_auto_without_sd_weights_picks_the_demo_model_and_edits(tmp_path, scene, capsys):
    """HF_HUB_OFFLINE is set and no SD is cached here: auto must say it uses the demo model, and edit."""
    scene.save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code = main(
        [
            "edit",
            "--image",
            str(tmp_path / "in.png"),
            "--points",
            "40,48>60,48",
            "--out",
            str(out),
            "--quiet",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--lora-steps",
            "2",
            "--drag-steps",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "bundled demo model" in capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["model"] == "demo" and summary["config"]["feature_blocks"] == [1, 2]
