"""DiffEditor's optional image prompt (an IP-Adapter given locally): loading both released layouts, the
attention it adds, the steps it acts on, and clear errors for missing or mismatched weights."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dragdiff import DragError, Point
from dragdiff.config import resolve_config
from dragdiff.dragon import DragonConfig, DragonDiffusion, MoveRequest
from dragdiff.dragon.image_prompt import convert_pickle, image_prompt_attention, load_image_prompt
from dragdiff.dragon.sampler import GuidedSampler
from tests.support.image_prompt import TOKENS, image_prompt_weights, save_image_prompt

FAST = dict(n_steps=10)


@pytest.fixture
def disc_mask():
    yy, xx = np.mgrid[0:96, 0:128]
    return (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2


@pytest.fixture
def adapter(tiny_model, tmp_path):
    return save_image_prompt(tiny_model.unet, tmp_path / "ip")


@pytest.mark.parametrize("plus", [True, False])
def test_both_adapter_layouts_load_and_give_tokens_per_image(tiny_model, scene, tmp_path, plus):
    path = save_image_prompt(tiny_model.unet, tmp_path / "ip", plus=plus)
    prompt = load_image_prompt(path, None, tiny_model.unet, tiny_model.device, tiny_model.dtype)
    width = tiny_model.unet.config.cross_attention_dim
    one = prompt.embed([scene])
    two = prompt.embed([scene, scene.transpose(0)])  # appearance/paste: base and reference side by side
    assert one.cond.shape == one.uncond.shape == (1, TOKENS, width)
    assert two.cond.shape == (1, 2 * TOKENS, width)
    torch.testing.assert_close(two.cond[:, :TOKENS], one.cond)
    assert not torch.allclose(two.cond[:, TOKENS:], one.cond)  # another picture, other tokens
    assert not torch.allclose(one.cond, one.uncond)
    cross_layers = [n for n in tiny_model.unet.attn_processors if n.endswith("attn2.processor")]
    assert len(prompt.layers) == len(cross_layers)


def test_image_tokens_add_to_cross_attention_only_while_their_scale_is_set(tiny_model, scene, adapter):
    unet, t = tiny_model.unet, torch.tensor(500)
    latent = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    text = tiny_model.encode_prompt("a photo")
    processors = dict(unet.attn_processors)
    prompt = load_image_prompt(adapter, None, unet, tiny_model.device, tiny_model.dtype)
    with torch.no_grad():
        plain = unet(latent, t, encoder_hidden_states=text).sample
        with image_prompt_attention(unet, prompt, prompt.embed([scene])) as state:
            at_zero = unet(latent, t, encoder_hidden_states=text).sample
            state.scale = 1.0
            with_image = unet(latent, t, encoder_hidden_states=text).sample
            both = unet(torch.cat([latent, latent]), t, encoder_hidden_states=torch.cat([text, text])).sample
    torch.testing.assert_close(at_zero, plain, atol=1e-5, rtol=1e-4)
    assert (with_image - plain).abs().mean() > 1e-3
    # a CFG batch is [unconditional, conditional]: its second item is the conditional call's output
    torch.testing.assert_close(both[1:], with_image, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(both[:1], with_image, atol=1e-4)
    assert unet.attn_processors == processors  # restored


def test_an_edit_weights_the_image_prompt_on_its_steps_only(tiny_model, scene, disc_mask, adapter, monkeypatch):
    editor = DragonDiffusion(tiny_model)
    scales = []
    noise = GuidedSampler.noise

    def spy(self, z, t, image_scale=0.0):
        scales.append(image_scale)
        return noise(self, z, t, image_scale)

    monkeypatch.setattr(GuidedSampler, "noise", spy)

    def edit(**config):
        scales.clear()
        request = MoveRequest(
            scene, disc_mask, Point(20, 0), config=resolve_config(DragonConfig, mode="move", **FAST, **config)
        )
        return np.asarray(editor.edit(request).image, dtype=float)

    plain = edit()
    assert set(scales) == {0.0}
    prompted = edit(image_prompt=str(adapter), image_prompt_scale=0.5)
    # 10 steps on the reference's 50-step scale: steps 2 and 3 are its steps 10 and 15 (of 10-19)
    assert scales == [0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert np.abs(prompted - plain).mean() > 0.05
    unweighted = edit(image_prompt=str(adapter), image_prompt_scale=0.0)
    assert np.abs(unweighted - plain).max() <= 1  # weight 0: the prompt's layers change nothing
    assert np.array_equal(edit(), plain)  # and the model is left as it was


def test_a_pickled_adapter_converts_once_and_then_loads(tiny_model, tmp_path):
    pickled = save_image_prompt(tiny_model.unet, tmp_path / "ip", pickled=True)
    with pytest.raises(DragError, match="pickled weights are never loaded.*convert-image-prompt"):
        load_image_prompt(pickled, None, tiny_model.unet, tiny_model.device, tiny_model.dtype)
    converted = convert_pickle(pickled, tmp_path / "ip" / "ip_adapter.safetensors")
    flat = load_file(converted)
    expected = image_prompt_weights(tiny_model.unet)
    assert torch.equal(flat["image_proj.latents"], expected["image_proj"]["latents"])
    assert load_image_prompt(converted, None, tiny_model.unet, tiny_model.device, tiny_model.dtype).plus
    torch.save({"state_dict": {}}, tmp_path / "other.bin")
    with pytest.raises(DragError, match="is not an IP-Adapter file"):
        convert_pickle(tmp_path / "other.bin", tmp_path / "other.safetensors")


def test_missing_and_mismatched_weights_are_named_before_any_work(tiny_model, scene, disc_mask, adapter, tmp_path):
    from safetensors.torch import save_file

    editor = DragonDiffusion(tiny_model)
    weights = image_prompt_weights(tiny_model.unet)
    first = min(int(k.split(".")[0]) for k in weights["ip_adapter"])
    other_model = {f"image_proj.{k}": v for k, v in weights["image_proj"].items()}
    other_model |= {f"ip_adapter.{k}": v for k, v in weights["ip_adapter"].items() if not k.startswith(f"{first}.")}
    save_file(other_model, adapter.parent / "other_model.safetensors")
    save_file({"something.else": torch.zeros(1)}, adapter.parent / "not_an_adapter.safetensors")
    (tmp_path / "lonely").mkdir()
    save_file(load_file(adapter), tmp_path / "lonely" / "ip.safetensors")  # no image_encoder/ beside it
    cases = [
        (dict(image_prompt=str(tmp_path / "nowhere.safetensors")), "image_prompt: no file at"),
        (dict(image_prompt=str(adapter.parent / "not_an_adapter.safetensors")), "is not an IP-Adapter file"),
        (dict(image_prompt=str(adapter.parent / "other_model.safetensors")), "made for another base model"),
        (dict(image_prompt=str(tmp_path / "lonely" / "ip.safetensors")), "image_encoder: no CLIP vision model"),
        (dict(image_prompt=str(adapter), image_encoder=str(tmp_path)), "image_encoder: no CLIP vision model"),
        (dict(image_prompt=""), "image_prompt: expected text (a path)"),
    ]
    for values, words in cases:
        progress = []
        with pytest.raises(DragError) as error:
            config = resolve_config(DragonConfig, mode="move", **FAST, **values)
            editor.edit(MoveRequest(scene, disc_mask, Point(20, 0), config=config), progress.append)
        assert words in str(error.value), values
        assert progress == [] and editor.runtime.counts == {}


def test_cli_converts_a_pickled_adapter_and_edits_with_it(tiny_model, scene, disc_mask, tmp_path, capsys):
    from PIL import Image

    from dragdiff.cli import main
    from dragdiff.dragon.session import load_dragon_session

    pickled = save_image_prompt(tiny_model.unet, tmp_path / "ip", pickled=True)
    converted = tmp_path / "ip" / "converted.safetensors"
    assert main(["convert-image-prompt", str(pickled), str(converted)]) == 0
    assert str(converted) in capsys.readouterr().out
    scene.save(tmp_path / "in.png")
    Image.fromarray(disc_mask).save(tmp_path / "obj.png")
    args = ["edit", "--method", "dragon", "--mode", "move", "--image", str(tmp_path / "in.png"), "--quiet"]
    args += ["--mask", str(tmp_path / "obj.png"), "--offset", "20,0", "--model", "tiny", "--set", "n_steps=5"]
    assert main([*args, "--set", f"image_prompt={converted}", "--out", str(tmp_path / "out.png")]) == 0
    request, _ = load_dragon_session(tmp_path / "out.png")
    assert request.config.image_prompt == str(converted)  # the session says which weights ran
    assert main([*args, "--set", f"image_prompt={pickled}", "--out", str(tmp_path / "bad.png")]) == 2
    assert "convert-image-prompt" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()
