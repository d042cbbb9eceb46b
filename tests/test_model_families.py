"""Model families beyond SD 1.5, on tiny random models of their shape: SD 2.x (`tiny-sd2`: v-prediction,
OpenCLIP-shaped text encoder of another width, linear projections, per-block head sizes) and SDXL
(`tiny-sdxl`: two text encoders, pooled text and sizes in the time embedding, 3 decoder blocks). Each is saved
in the diffusers layout and loaded back, and every method and DragonDiffusion mode runs on it end to end, with
progress, Stop and a session that replays to the same picture."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

from dragdiff import DragError, DragRequest, Point
from dragdiff.errors import DragCancelled
from dragdiff.models import choice_label, load_model, model_defaults, model_summary, save_model
from dragdiff.point_session import load_session
from dragdiff.runtime import Runtime
from tests.support.edits import FAST, mask_box, red_square_request, run_dragon_modes, shifted
from tests.support.hub import hub_snapshot
from tests.support.ldm_export import export_single_file
from tests.support.tiny_flux import save_tiny_flux

FAMILIES = {"tiny-sd2": "v_prediction", "tiny-sdxl": "epsilon"}


@pytest.fixture(scope="module", params=list(FAMILIES))
def model(request):
    return load_model(request.param, "cpu")


def unet_output(model, text: torch.Tensor) -> torch.Tensor:
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.unet(latent, 500, encoder_hidden_states=text).sample


def test_a_model_saved_as_a_diffusers_folder_loads_back_the_same(model, tmp_path):
    save_model(model, tmp_path / "saved")
    loaded = load_model(str(tmp_path / "saved"), "cpu")
    assert loaded.scheduler().config.prediction_type == FAMILIES[model.spec]
    assert loaded.architecture == model.architecture and loaded.defaults == model.defaults
    text = model.encode_prompt("a star")
    assert torch.equal(loaded.encode_prompt("a star"), text)
    # the same weights (upcast attention rounds apart by ~1e-6)
    assert torch.allclose(unet_output(loaded, text), unet_output(model, text), atol=1e-5)
    assert f"{model.spec}: random weights" in model_summary(model.spec)


def test_a_single_file_checkpoint_loads_back_the_same(model, tmp_path):
    save_model(model, tmp_path / "configs")  # offline, the single file's component configs come from here
    export_single_file(model, tmp_path / "model.safetensors", openclip=model.spec == "tiny-sd2")
    loaded = load_model(str(tmp_path / "model.safetensors"), "cpu", single_file_config=tmp_path / "configs")
    assert loaded.architecture == model.architecture and loaded.defaults == model.defaults
    assert loaded.scheduler().config.prediction_type == FAMILIES[model.spec]
    text = model.encode_prompt("a star")
    assert torch.allclose(loaded.encode_prompt("a star"), text, atol=1e-5)
    assert torch.allclose(unet_output(loaded, text), unet_output(model, text), atol=1e-5)


def test_sdxl_reads_both_text_encoders_the_pooled_text_and_its_own_blocks():
    model = load_model("tiny-sdxl", "cpu")
    star, disc = model.encode_prompt("a star"), model.encode_prompt("a disc")
    assert star.shape == (1, 78, 96)  # the pooled embedding in front of 77 tokens of both encoders (32 + 64)
    pooled_only = torch.cat([disc[:, :1], star[:, 1:]], dim=1)  # the tokens of one prompt, the pooled of another
    assert not torch.allclose(unet_output(model, pooled_only), unet_output(model, star))
    assert model.defaults["feature_blocks"] == [1] and model.defaults["dragon"]["feature_blocks"] == [0, 1]
    method = Runtime(model).method("dragdiffusion")
    with pytest.raises(DragError, match=r"up_blocks 0-2, not \[3\]"):  # SD 1.5's index on SDXL's 3 blocks
        method.edit(
            DragRequest(
                Image.new("RGB", (64, 64)),
                (Point(8, 8),),
                (Point(20, 8),),
                config=method.default_config(feature_blocks=(3,)),
            )
        )


def test_the_model_menu_names_the_new_families_and_says_they_are_not_downloaded():
    assert choice_label("sd21") == "sd21 (not downloaded)" and choice_label("sdxl") == "sdxl (not downloaded)"
    assert "stabilityai/stable-diffusion-xl-base-1.0" in model_summary("sdxl")


def test_every_method_and_mode_runs_with_progress_and_stop(model, scene, tmp_path, one_thread):
    runtime = Runtime(model, cache_dir=str(tmp_path))
    mask = mask_box()
    for name, fast in FAST.items():
        method = runtime.method(name)
        request = DragRequest(scene, (Point(40, 48),), (Point(60, 48),), mask, "", method.default_config(**fast))
        progress = []
        result = method.edit(request, on_progress=progress.append)
        assert result.image.size == scene.size and result.session.model == model.spec, name
        assert progress and np.asarray(result.image).std() > 0, name
        with pytest.raises(DragCancelled):
            method.edit(request, should_stop=lambda: True)
    run_dragon_modes(runtime.method("dragon"), scene, mask)


def test_an_sdxl_edit_from_the_cli_replays_to_the_same_picture(scene, tmp_path):
    scene.save(tmp_path / "in.png")
    edit = [sys.executable, "-m", "dragdiff", "edit", "--model", "tiny-sdxl", "--device", "cpu"]
    first = [*edit, "--image", str(tmp_path / "in.png"), "--points", "40,48>60,48", "--out", str(tmp_path / "a.png")]
    first += ["--method", "dragdiffusion", "--lora-steps", "2", "--drag-steps", "3"]
    for command in (first, [*edit, "--session", str(tmp_path / "a.png"), "--out", str(tmp_path / "b.png")]):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    assert load_session(tmp_path / "a.png").model == "tiny-sdxl"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_an_inpainting_unet_of_the_family_fills_and_one_of_another_is_named(model, tmp_path):
    method = Runtime(model, cache_dir=str(tmp_path)).method("inpaint4drag")
    nine = UNet2DConditionModel.from_config({**dict(model.unet.config), "in_channels": 9})
    nine.save_pretrained(tmp_path / "inpainting")
    request, region = red_square_request(method, inpaint_model=str(tmp_path / "inpainting"), n_steps=2)
    result = method.edit(request)
    hole = region & ~shifted(region, 24, 0)
    assert not (np.asarray(result.image)[hole] == (255, 0, 0)).all(axis=-1).any()  # the revealed hole repainted
    sd15 = UNet2DConditionModel.from_config({**dict(load_model("tiny", "cpu").unet.config), "in_channels": 9})
    sd15.save_pretrained(tmp_path / "sd15-inpainting")
    request, _ = red_square_request(method, inpaint_model=str(tmp_path / "sd15-inpainting"))
    with pytest.raises(DragError, match="does not fit the loaded model"):
        method.edit(request)


def test_dragbench_shapes_evaluates_an_sdxl_model(tmp_path, one_thread):
    from dragdiff.eval.run_shapes import run

    summary = run("tiny-sdxl", 1, 0, tmp_path, {}, "cpu", ["inpaint4drag"], log=lambda line: None)
    assert {"no edit", "naive warp"} < set(summary) and (tmp_path / "results.json").is_file()
    assert summary["Inpaint4Drag"]["handle_error"] >= 0


def test_an_uncached_hub_model_shows_no_defaults_not_the_working_folders(tmp_path, monkeypatch):
    (tmp_path / "dragdiff.yaml").write_text("drag_lr: 9.0\n")
    monkeypatch.chdir(tmp_path)
    assert model_defaults("sdxl") == {} and model_defaults("tiny-sdxl")["feature_blocks"] == [1]


@pytest.fixture(scope="module")
def flux_fill(tmp_path_factory):
    return save_tiny_flux(tmp_path_factory.mktemp("flux") / "flux-fill")


def test_flux_fill_fills_the_revealed_hole_with_progress_and_stop(model, flux_fill, tmp_path, one_thread):
    method = Runtime(model, cache_dir=str(tmp_path)).method("inpaint4drag")
    request, region = red_square_request(method, inpaint_model=str(flux_fill), n_steps=3, resolution=128)
    progress = []
    result = method.edit(request, on_progress=progress.append)
    before, after = np.asarray(request.image), np.asarray(result.image)
    assert np.array_equal(after[~request.mask], before[~request.mask])  # outside the painted region: bit for bit
    hole = region & ~shifted(region, 24, 0)
    assert not (after[hole] == (255, 0, 0)).all(axis=-1).any()  # the revealed hole repainted
    assert [(p.step, p.total) for p in progress if p.stage == "inpaint"] == [(1, 3), (2, 3), (3, 3)]
    assert np.array_equal(np.asarray(method.edit(request).image), after)  # seeded: the same picture again
    own = method.edit(red_square_request(method, n_steps=3, resolution=128)[0]).image  # the loaded model fills
    assert not np.array_equal(np.asarray(own)[hole], after[hole])
    stop_after_one = iter([False, False, True])
    with pytest.raises(DragCancelled, match="while inpainting"):
        method.edit(request, should_stop=lambda: next(stop_after_one))


def test_flux_fill_names_what_it_does_not_use_and_what_is_not_a_fill_model(model, flux_fill, tmp_path):
    method = Runtime(model, cache_dir=str(tmp_path)).method("inpaint4drag")
    request, _ = red_square_request(method, inpaint_model=str(flux_fill), n_steps=1, resolution=64, guidance_scale=7)
    assert any("guidance_scale 7 was not used" in w for w in method.edit(request).warnings)
    request, _ = red_square_request(method, inpaint_model=str(flux_fill), tiny_vae="madebyollin/taesd")
    with pytest.raises(DragError, match="tiny_vae speeds up a Stable Diffusion fill, not FLUX.1 Fill"):
        method.edit(request)
    save_tiny_flux(tmp_path / "flux-dev", fill=False)  # FLUX.1 itself: its transformer reads the latent alone
    request, _ = red_square_request(method, inpaint_model=str(tmp_path / "flux-dev"))
    with pytest.raises(DragError, match="takes 64 input channels, so it is not an inpainting model"):
        method.edit(request)
    save_file({"img_in.weight": torch.zeros(8, 384)}, str(tmp_path / "flux1-fill-dev.safetensors"))  # BFL's layout
    request, _ = red_square_request(method, inpaint_model=str(tmp_path / "flux1-fill-dev.safetensors"))
    with pytest.raises(DragError, match="a FLUX transformer alone in one file; .* give its diffusers folder"):
        method.edit(request)
    with pytest.raises(DragError, match="a transformer model .* FLUX.1 Fill can fill Inpaint4Drag's edits"):
        load_model(str(flux_fill), "cpu")  # FLUX.1 Fill cannot be the drag methods' model


def test_flux_fill_loads_by_its_hub_id_from_the_local_cache(model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from dragdiff.models import load_inpainter

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = "black-forest-labs/FLUX.1-Fill-dev"
    with pytest.raises(
        DragError, match=f"inpaint_model '{repo}': model '{repo}' is not in the local Hugging Face"
    ) as error:
        load_inpainter(repo, model)
    assert str(error.value).endswith("or set inpaint_model to null to fill with the loaded model.")
    save_tiny_flux(hub_snapshot(tmp_path, repo))  # tiny weights standing in for FLUX.1 Fill's
    assert load_inpainter(repo, model).transformer.config.in_channels == 384


def test_flux_fill_runs_in_bf16_beside_an_fp16_model(flux_fill, tmp_path, one_thread):
    method = Runtime(load_model("tiny-sdxl", "cpu", "fp16"), cache_dir=str(tmp_path)).method("inpaint4drag")
    request, region = red_square_request(method, inpaint_model=str(flux_fill), n_steps=2, resolution=128)
    after = np.asarray(method.edit(request).image)
    assert method._inpainter(request.config).transformer.dtype == torch.bfloat16  # FLUX's precision, not fp16
    hole = region & ~shifted(region, 24, 0)
    assert after[hole].std() > 0 and not (after[hole] == (255, 0, 0)).all(axis=-1).any()
