"""Inpaint4Drag: the bidirectional warp against constructed shapes (exact translation, nothing outside the
painted region changed, the inpaint mask = the revealed area plus the band), the fill on the tiny model (the
hole repainted, an inpainting UNet used and a wrong one named), sessions, the CLI, and bad input named."""

import json

import gradio as gr
import numpy as np
import pytest
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

import app
from dragdiff import DragError, DragRequest, Point
from dragdiff.cli import main
from dragdiff.errors import DragCancelled
from dragdiff.inpaint4drag.warp import bidirectional_warp, warp_request
from dragdiff.point_session import load_session
from dragdiff.runtime import Runtime
from tests.support.edits import red_square_request, shifted, square, textured
from tests.support.ldm_export import unet_to_ldm


def test_a_translation_moves_every_pixel_of_the_region_exactly_to_its_target():
    image, region = textured(), square()
    painted = region | shifted(region, 30, 8)  # the square and where it goes: two separate parts
    warp = bidirectional_warp(image, painted, (Point(27, 37),), (Point(57, 45),), band_px=0)
    ys, xs = np.nonzero(region)
    assert np.array_equal(warp.image[ys + 8, xs + 30], image[ys, xs])  # the square, bit for bit, at +30, +8
    assert np.array_equal(warp.moved, shifted(region, 30, 8))
    assert np.array_equal(warp.revealed, region & ~shifted(region, 30, 8))


def test_nothing_outside_the_painted_region_changes_and_what_would_land_outside_is_cut():
    image = textured()
    region = square(side=16) | square(x0=36, side=16)  # the object and part of the way: the move lands half out
    warp = bidirectional_warp(image, region, (Point(27, 37),), (Point(51, 37),), band_px=3)
    assert np.array_equal(warp.image[~region], image[~region])
    assert not (warp.moved & ~region).any() and not (warp.inpaint & ~region).any()
    assert warp.moved.any()


def grown(mask, band):
    out = np.zeros_like(mask)
    for dy in range(-(band // 2), band // 2 + 1):  # a band×band square kernel
        for dx in range(-(band // 2), band // 2 + 1):
            out |= shifted(mask, dx, dy)
    return out


def test_the_inpaint_mask_is_the_revealed_area_plus_the_band():
    image, painted = textured(), square() | square(x0=32)  # one part: the square and its way, moved as one
    warp = bidirectional_warp(image, painted, (Point(27, 37),), (Point(39, 37),), band_px=5)
    target = shifted(painted, 12, 0)
    revealed = painted & ~target
    assert np.array_equal(warp.revealed, revealed) and revealed.sum() == 16 * 12
    edge = target & ~(shifted(target, 1, 0) & shifted(target, -1, 0) & shifted(target, 0, 1) & shifted(target, 0, -1))
    around = grown(revealed, 5) & painted  # clipped to the painted region, like everything
    assert (warp.inpaint >= around).all()  # all of the revealed area and its band
    assert not (warp.inpaint & ~(around | grown(edge, 5))).any()  # nothing beyond it and the outline's band
    assert (warp.inpaint & target & ~around).any()  # the seam around the moved content is repainted too
    assert np.array_equal(bidirectional_warp(image, painted, (Point(27, 37),), (Point(39, 37),), 0).inpaint, revealed)


def test_two_handles_deform_the_region_and_each_handle_lands_on_its_target():
    image, region = textured(), square(x0=20, side=40) | square(x0=50, side=40)
    image[38:43, 54:59] = (255, 0, 0)  # a marker on the right handle
    handles, targets = (Point(22, 40), Point(56, 40)), (Point(22, 40), Point(72, 40))  # left pinned, right pulled
    warp = bidirectional_warp(image, region, handles, targets, band_px=0)
    near_target = warp.image[38:43, 70:75].reshape(-1, 3)
    assert (near_target == (255, 0, 0)).all(axis=-1).sum() >= 9  # the marker arrived (nearest-pixel resampling)
    # the pinned handle's content stays within 3 px, not 16 as in a translation (the backward map interpolates
    # from 100 references spread by index, as the reference's: a few px of drift)
    assert (warp.image[37:44, 19:26].reshape(-1, 3) == image[40, 22]).all(axis=-1).any()
    assert not (warp.image[38:43, 54:59] == (255, 0, 0)).all(axis=-1).all()  # stretched: the marker left


def test_refined_only_the_object_under_the_handle_moves_not_the_background_painted_along_its_way():
    yy, xx = np.mgrid[0:96, 0:128]
    image = np.stack([xx * 2, yy * 2, np.full_like(xx, 90)], axis=-1).astype(np.uint8)  # a smooth gradient
    region = square(side=16)
    image[region] = (255, 0, 0)
    painted = np.zeros_like(region)
    painted[22:54, 12:80] = True  # the square, its way and more background around both
    request = DragRequest(Image.fromarray(image), (Point(27, 37),), (Point(57, 37),), painted)
    warp = warp_request(request, band_px=0, refine=True)
    target = shifted(region, 30, 0)
    assert (warp.image[target] == (255, 0, 0)).all()  # the square arrived whole
    assert np.array_equal(warp.revealed, region)  # its old place is what the fill repaints
    background = painted & ~grown(region | target, 3)
    assert np.array_equal(warp.image[background], image[background])  # the painted background stayed put
    whole = warp_request(request, band_px=0, refine=False)  # without: the painted rectangle moves as one
    assert not np.array_equal(whole.image[background], image[background])


def test_bad_regions_and_points_are_named():
    image, region = textured(), square()
    warp = bidirectional_warp(image, region, (Point(27, 37), Point(100, 80)), (Point(30, 37), Point(90, 80)), 5)
    assert warp.notes == ("point 2 (100, 80): the handle is outside the painted region, so it moved nothing",)
    with pytest.raises(DragError, match=r"point 1 \(100, 80\), point 2 \(5, 5\): the handle is outside the painted"):
        bidirectional_warp(image, region, (Point(100, 80), Point(5, 5)), (Point(90, 80), Point(9, 5)), 5)
    with pytest.raises(DragError, match="nothing is painted"):
        bidirectional_warp(image, np.zeros_like(region), (Point(27, 37),), (Point(30, 37),), 5)


@pytest.fixture
def inpaint4drag(tiny_model, tmp_path, one_thread):
    return Runtime(tiny_model, cache_dir=str(tmp_path / "cache")).method("inpaint4drag")


def test_the_edit_moves_the_square_fills_the_revealed_hole_and_keeps_the_rest(inpaint4drag):
    request, region = red_square_request(inpaint4drag)
    result = inpaint4drag.edit(request)
    before, after = np.asarray(request.image), np.asarray(result.image)
    assert np.array_equal(after[~request.mask], before[~request.mask])  # outside the painted region: bit for bit
    target = shifted(region, 24, 0)
    inner = target & ~grown(~target, 7)  # the square arrived, bit for bit inside its 3-px seam band (band_px 5)
    assert inner.sum() == 100 and (after[inner] == (255, 0, 0)).all()
    hole = region & ~target
    assert not (after[hole] == (255, 0, 0)).all(axis=-1).any()  # no pixel of the hole keeps the old content
    assert set(result.timings) == {"warp", "inpaint", "check", "total"}


def test_an_inpainting_unet_fills_and_a_plain_one_is_named(inpaint4drag, tmp_path):
    model = inpaint4drag.model
    config = dict(model.unet.config)
    nine = UNet2DConditionModel.from_config({**config, "in_channels": 9})
    nine.save_pretrained(tmp_path / "inpainting")
    request, region = red_square_request(inpaint4drag, inpaint_model=str(tmp_path / "inpainting"), n_steps=2)
    result = inpaint4drag.edit(request)
    hole = region & ~shifted(region, 24, 0)
    assert not (np.asarray(result.image)[hole] == (255, 0, 0)).all(axis=-1).any()
    single = {"model.diffusion_model." + k: v.contiguous() for k, v in unet_to_ldm(nine).items()}
    save_file(single, str(tmp_path / "inpainting.safetensors"))  # the same UNet as one original-layout file
    request, _ = red_square_request(inpaint4drag, inpaint_model=str(tmp_path / "inpainting.safetensors"), n_steps=2)
    assert np.array_equal(np.asarray(inpaint4drag.edit(request).image), np.asarray(result.image))
    model.unet.save_pretrained(tmp_path / "plain")
    request, _ = red_square_request(inpaint4drag, inpaint_model=str(tmp_path / "plain"))
    with pytest.raises(DragError, match="takes 4 input channels, not 9, so it is not an inpainting model"):
        inpaint4drag.edit(request)


def test_a_local_tiny_autoencoder_encodes_and_decodes_the_fill(inpaint4drag, tmp_path, monkeypatch):
    from diffusers import AutoencoderTiny

    channels = (8, 8, 8, 8)  # three halvings: the model's factor 8
    AutoencoderTiny(encoder_block_out_channels=channels, decoder_block_out_channels=channels).save_pretrained(
        tmp_path / "taesd"
    )
    request, region = red_square_request(inpaint4drag, tiny_vae=str(tmp_path / "taesd"), n_steps=2)

    def model_vae(*args):
        raise AssertionError("the model's own autoencoder was used")

    monkeypatch.setattr(inpaint4drag.model, "encode_image", model_vae)
    monkeypatch.setattr(inpaint4drag.model, "decode", model_vae)
    result = inpaint4drag.edit(request)
    hole = region & ~shifted(region, 24, 0)
    assert not (np.asarray(result.image)[hole] == (255, 0, 0)).all(axis=-1).any()
    request, _ = red_square_request(inpaint4drag, tiny_vae=str(tmp_path / "missing"))
    with pytest.raises(DragError, match="tiny_vae .*not a folder and not in the local Hugging Face cache"):
        inpaint4drag.edit(request)


def test_a_local_few_step_lora_runs_the_fill_with_the_lcm_scheduler_then_leaves(inpaint4drag, tmp_path):
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
    from peft.utils import get_peft_model_state_dict

    from dragdiff.lora import ADAPTER, attach_lora, detach_lora

    unet = inpaint4drag.model.unet
    attach_lora(unet, 4)  # a random rank-4 adapter, saved as diffusers saves LoRA files
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        tmp_path / "lcm", unet_lora_layers=get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    )
    detach_lora(unet)
    steps = []
    unet.register_forward_pre_hook(lambda module, args: steps.append(int(args[1])))
    request, region = red_square_request(inpaint4drag, fast_lora=str(tmp_path / "lcm"), n_steps=4)
    result = inpaint4drag.edit(request)
    assert len(steps) == 4 and steps == sorted(steps, reverse=True)  # LCM's 4 timesteps, one UNet call each
    assert not getattr(unet, "peft_config", None)  # the shared UNet is the plain one again
    hole = region & ~shifted(region, 24, 0)
    assert not (np.asarray(result.image)[hole] == (255, 0, 0)).all(axis=-1).any()
    assert np.array_equal(np.asarray(inpaint4drag.edit(request).image), np.asarray(result.image))  # seeded
    request, _ = red_square_request(inpaint4drag, fast_lora=str(tmp_path / "nothing.bin"))
    with pytest.raises(DragError, match="give a local .safetensors LoRA file"):
        inpaint4drag.edit(request)


def test_stop_ends_the_fill(inpaint4drag):
    request, _ = red_square_request(inpaint4drag)
    with pytest.raises(DragCancelled):
        inpaint4drag.edit(request, should_stop=lambda: True)


def test_cli_edit_and_replay_give_the_same_bytes(tmp_path, scene):
    scene.save(tmp_path / "in.png")
    mask = np.zeros((96, 128), np.uint8)
    mask[25:75, 20:90] = 255
    from PIL import Image

    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = ["--model", "tiny", "--device", "cpu", "--quiet"]
    first = tmp_path / "first.png"
    args = ["edit", "--method", "inpaint4drag", "--image", str(tmp_path / "in.png")]
    args += ["--mask", str(tmp_path / "mask.png")]
    assert main([*args, "--points", "40,48>64,48", "--set", "n_steps=3", "--out", str(first), *common]) == 0
    session = json.loads(first.with_suffix(".json").read_text())
    assert session["format"] == "dragdiff-inpaint4drag-session" and session["config"]["n_steps"] == 3
    assert load_session(first).config.n_steps == 3
    replay = tmp_path / "replay.png"
    assert main(["edit", "--session", str(first), "--out", str(replay), *common]) == 0
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(replay)))
    assert main([*args, "--points", "5,5>20,5", "--out", str(tmp_path / "x.png"), *common]) == 2
    assert not (tmp_path / "x.png").exists()


def test_the_app_previews_the_warp_as_points_are_placed_and_names_a_handle_outside_the_region(scene):

    mask = np.zeros((96, 128), bool)
    mask[30:66, 22:90] = True
    values = app.panel_values("tiny", "inpaint4drag")
    state = app.new_state().fresh(image=scene, clicks=[[40.0, 48.0], [64.0, 48.0]], mask=mask)
    shown = app.warp_preview(state, "inpaint4drag", *values)
    before, preview = shown[app.DRAG.result]
    assert preview.size == before.size and "Drag fills the striped area" in shown[app.DRAG.status]
    assert (np.asarray(preview) == (255, 0, 255)).all(axis=-1).any()  # the area the fill repaints, striped
    outside = state.fresh(image=scene, clicks=[[5.0, 5.0], [20.0, 5.0]], mask=mask)
    assert (
        "point 1 (5, 5): the handle is outside the painted region"
        in app.warp_preview(outside, "inpaint4drag", *values)[app.DRAG.status]
    )
    other = app.new_state().fresh(image=scene, clicks=[[40.0, 48.0], [64.0, 48.0]], mask=mask)
    assert app.warp_preview(other, "gooddrag", *values)[app.DRAG.result] == gr.skip()  # other methods: untouched


def test_the_warp_preview_goes_with_its_points_and_its_method(scene):
    mask = np.zeros((96, 128), bool)
    mask[30:66, 22:90] = True
    values = app.panel_values("tiny", "inpaint4drag")
    state = app.new_state().fresh(image=scene, clicks=[[40.0, 48.0], [64.0, 48.0]], mask=mask)
    assert "Warp preview" in app.warp_preview(state, "inpaint4drag", *values)[app.DRAG.status]
    switched = app.on_method("tiny", "dragdiffusion", "drag", state)  # the status about the preview goes first
    assert switched[app.DRAG.status] == "1 handle → target pair: press Drag, or click another handle."
    assert app.warp_preview(state, "dragdiffusion", *values)[app.DRAG.result] is None  # then the picture
    assert app.warp_preview(state, "dragdiffusion", *values)[app.DRAG.result] == gr.skip()
    assert app.DRAG.status not in app.on_method("tiny", "gooddrag", "drag", state)  # no preview: status stays
    assert "Warp preview" in app.warp_preview(state, "inpaint4drag", *values)[app.DRAG.status]
    undone = app.on_undo(state, "inpaint4drag", "drag")  # a handle without its target: nothing to preview
    assert undone[app.DRAG.status] == "Handle 1: now click where it should go."
    assert app.warp_preview(undone[app.DRAG.state], "inpaint4drag", *values)[app.DRAG.result] is None


def test_a_shown_result_stays_until_the_points_or_the_region_change(scene, tmp_path, monkeypatch):
    """The editor sends its region again when the page reflows (a wide result joins the gallery). That late event
    must not replace the result and its "Done in" by the warp preview; a new point or stroke previews again."""
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    mask = np.zeros((96, 128), bool)
    mask[30:66, 22:90] = True
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[mask] = (255, 210, 60, 0x99)  # the brush's colour
    painted = {"background": None, "layers": [layer], "composite": None}
    values = app.panel_values("tiny", "inpaint4drag")
    state = app.on_mask(painted, app.new_state().fresh(image=scene, clicks=[[40.0, 48.0], [64.0, 48.0]]))[
        app.DRAG.state
    ]
    done = list(app.run(state, "", "tiny", "inpaint4drag", "drag", 1.0, *values))[-1]
    assert "Done in" in done[app.DRAG.status]
    assert app.on_mask(painted, state) == {app.DRAG.state: state}  # the same region: nothing else is redrawn
    late = app.warp_preview(state, "inpaint4drag", *values)
    assert late[app.DRAG.result] == gr.skip() and late[app.DRAG.status] == gr.skip()
    moved = app.warp_preview(state.update(clicks=[[40.0, 48.0], [70.0, 48.0]]), "inpaint4drag", *values)
    assert "Warp preview" in moved[app.DRAG.status]
    layer[70:80, 22:90] = (255, 210, 60, 0x99)
    assert "Editable region" in app.on_mask(painted, state)[app.DRAG.status]


def test_the_api_refuses_a_client_naming_server_files_and_names_a_missing_region(scene, tmp_path):

    scene.save(tmp_path / "in.png")
    image = {"path": str(tmp_path / "in.png")}
    for field in ("inpaint_model", "tiny_vae"):
        settings = json.dumps({"method": "inpaint4drag", field: "/etc"})
        with pytest.raises(gr.Error, match=f"settings.{field}: set on the server"):
            app.api_edit(image, "40,48>60,48", None, "", "tiny", settings)
    with pytest.raises(gr.Error, match="nothing is painted; paint the object and the place where it should go"):
        app.api_edit(image, "40,48>60,48", None, "", "tiny", json.dumps({"method": "inpaint4drag"}))
