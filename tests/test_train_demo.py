"""The demo-model training script on a toy budget, so that it cannot rot."""

import importlib.util
import sys
from pathlib import Path

import pytest

from dragdiff.generate import generate
from dragdiff.models import load_model

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train_demo_model.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_demo_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_demo_model"] = module
    spec.loader.exec_module(module)
    return module


def test_every_caption_word_is_one_token(tmp_path):
    script = load_script()
    tokenizer = script.word_tokenizer(tmp_path)
    for word in script.WORDS:
        assert len(tokenizer(word).input_ids) == 3, word  # start, the word, end
    assert tokenizer.tokenize("a magenta blob")[1] != "magenta</w>"  # unknown words fall back to characters


def test_toy_training_run_writes_a_loadable_model_and_resumes(tmp_path):
    script = load_script()
    out, state = tmp_path / "model", tmp_path / "state"
    common = ["--out", str(out), "--state", str(state)]  # saves once, at the end of each run
    script.main(["vae", "--steps", "2", "--batch", "2", *common])
    script.main(["unet", "--steps", "2", "--batch", "2", *common])
    script.main(["unet", "--steps", "1", "--batch", "2", *common])  # resumes from the saved state
    assert '"step": 3' in (state / "unet_state.json").read_text()
    model = load_model(str(out), device="cpu")
    assert model.native_resolution == 128 and model.vae_factor == 4
    # the scaling factor was computed from this VAE's own latents (1/std) and saved in its config
    assert model.vae.config.scaling_factor == pytest.approx(script.latent_scale(model.vae), rel=1e-3)
    assert model.vae.config.scaling_factor != pytest.approx(0.18215, rel=1e-2)
    images = generate(model, ["a red star on a gray background"], steps=2)
    assert images[0].size == (128, 128)
