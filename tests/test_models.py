import pytest
import torch

from dragdiff import DragError
from dragdiff.models import load_model, save_model
from tests.support.hub import hub_snapshot
from tests.support.ldm_export import export_single_file


def noise_prediction(model):
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, model.latent_channels, 16, 12, generator=generator)
    with torch.no_grad():
        return model.unet(latent, 400, encoder_hidden_states=model.encode_prompt("a red star")).sample


def test_sizes_come_from_the_model_configs(tiny_model):
    assert tiny_model.vae_factor == 8 and tiny_model.latent_channels == 4
    assert tiny_model.native_resolution == 128  # unet sample_size 16 × 8
    assert tiny_model.scheduler().config.prediction_type == "epsilon"


def test_loads_a_saved_folder_to_the_same_model(tiny_model, tiny_folder):
    loaded = load_model(str(tiny_folder), device="cpu")
    assert torch.equal(noise_prediction(loaded), noise_prediction(tiny_model))
    assert loaded.fingerprint.startswith("folder:") and loaded.native_resolution == 128


def test_loads_a_single_safetensors_checkpoint(tiny_model, tiny_folder, tmp_path):
    checkpoint = tmp_path / "tiny.safetensors"
    export_single_file(tiny_model, checkpoint)
    loaded = load_model(str(checkpoint), device="cpu", single_file_config=tiny_folder)
    assert torch.allclose(noise_prediction(loaded), noise_prediction(tiny_model), atol=1e-5)
    assert loaded.fingerprint.startswith("file:")


def test_missing_hub_model_offline_names_the_model_and_the_way_out():
    with pytest.raises(DragError) as error:
        load_model("someone/not-a-cached-model", device="cpu")
    message = str(error.value)
    assert "someone/not-a-cached-model" in message and "not in the local Hugging Face cache" in message
    assert "huggingface-cli download" in message and "--model demo" in message


def test_old_runwayml_name_maps_to_the_current_repo():
    with pytest.raises(DragError, match="stable-diffusion-v1-5/stable-diffusion-v1-5"):
        load_model("runwayml/stable-diffusion-v1-5", device="cpu")


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt"])
def test_pickled_checkpoints_are_refused(tmp_path, suffix):
    checkpoint = tmp_path / f"model{suffix}"
    checkpoint.write_bytes(b"not loaded")
    with pytest.raises(DragError, match="only .safetensors"):
        load_model(str(checkpoint), device="cpu")


def test_folder_with_only_pickled_weights_is_refused(tiny_folder, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_folder, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(DragError, match="safetensors"):
        load_model(str(folder), device="cpu")


@pytest.mark.parametrize("spec", ["nonsense", "./no/such/folder", "a/b/c"])
def test_unknown_model_spec_is_a_clear_error(spec):
    with pytest.raises(DragError, match="unknown model"):
        load_model(spec, device="cpu")


def test_folder_without_model_index_is_refused(tmp_path):
    with pytest.raises(DragError, match="model_index.json"):
        load_model(str(tmp_path), device="cpu")


def test_dtype_can_be_chosen_by_name_from_the_command_line():
    import argparse

    import torch

    from dragdiff.cli import DTYPE_NAMES, _load
    from dragdiff.models import DTYPES

    assert DTYPE_NAMES == tuple(DTYPES)  # the CLI's copy of the names (it does not import torch)
    args = argparse.Namespace(device="cpu", dtype="bf16", model_config=None)
    model = _load("tiny", args)
    assert model.dtype == torch.bfloat16 and next(model.unet.parameters()).dtype == torch.bfloat16
    with pytest.raises(DragError, match="dtype: 'fp64' is not one of"):
        load_model("tiny", "cpu", "fp64")


def test_sd15_loads_stable_diffusion_from_the_local_hub_cache(tiny_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from dragdiff.models import SD15_HUB_ID

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DragError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        load_model("sd15", device="cpu")  # the alias is known, its weights are not here yet
    save_model(tiny_model, hub_snapshot(tmp_path, SD15_HUB_ID))  # tiny weights standing in for SD 1.5's
    loaded = load_model("sd15", device="cpu")
    assert loaded.fingerprint.startswith(f"hub:{SD15_HUB_ID}:")
    assert torch.equal(noise_prediction(loaded), noise_prediction(tiny_model))
