"""DragonDiffusion: the memory bank, the energies, the step schedules, and whole edits on the tiny model."""

import numpy as np
import pytest
import torch
from PIL import Image

from dragdiff import DragCancelled, DragError, Point
from dragdiff.config import resolve_config
from dragdiff.drag.method import DragDiffusion
from dragdiff.dragon import (
    AppearanceRequest,
    ContentDragRequest,
    DragonConfig,
    DragonDiffusion,
    MoveRequest,
    PasteRequest,
    energy,
)
from dragdiff.dragon.memory import MemoryBank, MemoryControl, memory_attention, token_mask
from dragdiff.dragon.regions import warp
from dragdiff.dragon.sampler import step_plan

FAST = dict(n_steps=6)


@pytest.fixture
def editor(tiny_model, tmp_path):
    return DragonDiffusion(tiny_model, cache_dir=str(tmp_path))


@pytest.fixture
def disc_mask():
    yy, xx = np.mgrid[0:96, 0:128]
    return (xx - 40) ** 2 + (yy - 48) ** 2 < 15**2


# -- memory bank ----------------------------------------------------------------------------------------------


def test_memory_bank_with_identical_branches_is_the_identity(tiny_model):
    unet, t = tiny_model.unet, torch.tensor(500)
    latent = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    text = tiny_model.encode_prompt("a photo")
    control = MemoryControl(MemoryBank())
    with torch.no_grad(), memory_attention(unet, control, None) as layers:
        plain = unet(latent, t, encoder_hidden_states=text).sample
        control.mode, control.timestep = "record", 500
        unet(latent, t, encoder_hidden_states=text)
        outputs = {}
        for mode in ("replace", "concat"):
            control.mode = mode
            outputs[mode] = unet(latent, t, encoder_hidden_states=text).sample
    assert layers > 0 and len(control.bank.entries) == layers
    for mode, out in outputs.items():
        torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4, msg=mode)


def test_replace_concat_and_mix_give_the_expected_keys_and_values():
    bank, reference = MemoryBank(), MemoryBank()
    stored_k, stored_v = torch.randn(1, 16, 8), torch.randn(1, 16, 8)
    bank.put(7, "layer", stored_k, stored_v)
    reference.put(7, "layer", -stored_k, -stored_v)
    live_k, live_v = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    base_mask = torch.zeros(4, 4, dtype=torch.bool)
    base_mask[:2] = True  # 8 edited tokens: 8 base tokens stay
    reference_mask = torch.zeros(4, 4, dtype=torch.bool)
    reference_mask[0, :3] = True  # 3 reference tokens join
    control = MemoryControl(bank, timestep=7, reference=reference, base_mask=base_mask, reference_mask=reference_mask)

    control.mode = "replace"
    key, value = control.keys_values("layer", live_k, live_v)
    assert key.shape == (2, 16, 8) and torch.equal(key[1], stored_k[0]) and torch.equal(value[0], stored_v[0])
    control.mode = "concat"
    key, value = control.keys_values("layer", live_k, live_v)
    assert key.shape == (2, 32, 8) and torch.equal(key[:, :16], live_k) and torch.equal(value[1, 16:], stored_v[0])
    control.mode = "mix"
    key, value = control.keys_values("layer", live_k, live_v)
    assert key.shape == (2, 11, 8)
    torch.testing.assert_close(key[0, :8], stored_k[0, 8:])  # base tokens outside the edited rows
    torch.testing.assert_close(key[0, 8:], -stored_k[0, :3])  # the reference object's tokens


def test_token_mask_follows_a_layer_at_lower_resolution():
    mask = torch.zeros(8, 12, dtype=torch.bool)
    mask[0, 0] = True
    assert token_mask(mask, 96).sum() == 1
    assert token_mask(mask, 24).shape == (24,) and token_mask(mask, 24).sum() == 1  # 4 × 6 cells
    assert token_mask(torch.zeros(8, 12, dtype=torch.bool), 96).all()  # never an empty selection


# -- energies ---------------------------------------------------------------------------------------------------


def _maps(seed=0, shape=(1, 16, 20, 20)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


W = {"edit": 4.0, "content": 6.0, "contrast": 0.2, "inpaint": 0.8}


def test_move_energy_falls_when_the_object_is_moved_where_asked():
    original = _maps()
    obj = torch.zeros(20, 20, dtype=torch.bool)
    obj[4:8, 4:8] = True
    offset, about = (6.0, 5.0), (5.5, 5.5)
    moved = warp(obj[None, None], offset, 1.0, about)[0, 0]
    moved_source = warp(original, offset, 1.0, about)
    surround = torch.zeros_like(obj)
    surround[2:10, 2:10] = True
    surround &= ~obj
    stay = energy.move_energy(original, original, moved_source, obj, moved, surround, W)
    done = original.clone()
    done[:, :, moved] = moved_source[:, :, moved]
    done[:, :, obj & ~moved] = original[:, :, surround].mean(-1, keepdim=True)  # hole filled like around it
    went = energy.move_energy(done, original, moved_source, obj, moved, surround, W)
    assert went[0] < stay[0] - 1  # edit term
    noisy = energy.move_energy(done + 2 * _maps(1), original, moved_source, obj, moved, surround, W)
    assert went[1] < noisy[1]  # content term: the rest kept as it was


def test_drag_energy_falls_when_the_handle_patch_appears_at_the_target():
    original = _maps()
    handles, targets = torch.tensor([[5, 5]]), torch.tensor([[5, 12]])
    editable = torch.zeros(20, 20, dtype=torch.bool)
    editable[2:9, 2:16] = True
    dragged = original.clone()
    dragged[:, :, 4:7, 11:14] = original[:, :, 4:7, 4:7]
    before = energy.drag_energy(original, original, handles, targets, editable, W)
    after = energy.drag_energy(dragged, original, handles, targets, editable, W)
    assert after[0] < before[0]
    assert after[1] == pytest.approx(float(before[1]))  # nothing outside the editable region changed


def test_appearance_energy_falls_as_the_region_takes_the_reference_look():
    original, reference = _maps(0), _maps(1)
    base, ref = torch.zeros(20, 20, dtype=torch.bool), torch.zeros(20, 20, dtype=torch.bool)
    base[2:8, 2:8], ref[10:16, 10:16] = True, True
    replaced = original.clone()
    replaced[:, :, base] = reference[:, :, ref].mean(-1, keepdim=True)
    before = energy.appearance_energy(original, original, reference, base, ref, W)
    after = energy.appearance_energy(replaced, original, reference, base, ref, W)
    assert after[0] < before[0] and after[1] == pytest.approx(float(before[1]))


# -- schedules --------------------------------------------------------------------------------------------------


def test_guided_steps_match_both_official_schedules_at_50_steps():
    dragon = step_plan("dragon", 50)
    assert [i for i, p in enumerate(dragon) if p.guided] == list(range(30))
    assert not any(p.stochastic or p.time_travel for p in dragon)
    plus = step_plan("diffeditor", 50)
    assert [i for i, p in enumerate(plus) if p.guided] == [*range(10), *range(10, 30, 2)]
    assert [i for i, p in enumerate(plus) if p.stochastic] == list(range(11, 20))
    assert [i for i, p in enumerate(plus) if p.time_travel] == [22, 24, 26, 28]


# -- whole edits on the tiny model ------------------------------------------------------------------------------


def _requests(scene, disc_mask):
    flipped = scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return [
        MoveRequest(scene, disc_mask, Point(30, 0), config=resolve_config(DragonConfig, mode="move", **FAST)),
        MoveRequest(
            scene,
            disc_mask,
            Point(20, 5),
            1.5,
            config=resolve_config(DragonConfig, mode="move", variant="diffeditor", **FAST),
        ),
        ContentDragRequest(
            scene, (Point(40, 48),), (Point(70, 48),), config=resolve_config(DragonConfig, mode="drag", **FAST)
        ),
        AppearanceRequest(
            scene,
            disc_mask,
            flipped,
            disc_mask[:, ::-1].copy(),
            config=resolve_config(DragonConfig, mode="appearance", **FAST),
        ),
        PasteRequest(
            scene,
            flipped,
            disc_mask[:, ::-1].copy(),
            Point(100, 30),
            0.8,
            config=resolve_config(DragonConfig, mode="paste", **FAST),
        ),
    ]


def test_every_mode_edits_a_non_square_image_reports_progress_and_repeats_exactly(editor, scene, disc_mask):
    for request in _requests(scene, disc_mask):
        stages = []
        result = editor.edit(request, on_progress=lambda p, seen=stages: seen.append((p.stage, p.step, p.total)))
        assert result.image.size == scene.size and result.mode == request.mode
        assert ("editing", 6, 6) in stages and ("inversion", 6, 6) in stages
        assert result.memory_bytes > 0
        assert not np.array_equal(np.asarray(result.image), np.asarray(scene))
        again = editor.edit(request)
        assert np.array_equal(np.asarray(again.image), np.asarray(result.image)), request.mode


def test_stop_cancels_between_steps(editor, scene, disc_mask):
    calls = []
    with pytest.raises(DragCancelled):
        editor.edit(_requests(scene, disc_mask)[0], should_stop=lambda: calls.append(1) or len(calls) > 8)


def test_a_dragon_edit_leaves_a_drag_engines_lora_consistent(tiny_model, scene, disc_mask, fast_config, tmp_path):
    from dragdiff import DragRequest

    engine = DragDiffusion(tiny_model, cache_dir=str(tmp_path))
    request = DragRequest(scene, (Point(40, 48),), (Point(60, 48),), None, "", fast_config)
    first = engine.edit(request).image
    DragonDiffusion(engine.runtime).edit(_requests(scene, disc_mask)[0])  # runs on the plain UNet
    assert np.array_equal(np.asarray(engine.edit(request).image), np.asarray(first))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda s, m: MoveRequest(s, np.zeros_like(m), Point(5, 5)), "the object mask is empty"),
        (lambda s, m: MoveRequest(s, m[:50], Point(5, 5)), "the mask is 128×50 but the image is 128×96"),
        (lambda s, m: MoveRequest(s, m, Point(500, 0)), "moves the whole object off the 128×96 canvas"),
        (lambda s, m: MoveRequest(s, m, Point(float("nan"), 0)), "offset: x = nan is not a finite number"),
        (lambda s, m: MoveRequest(s, m, Point(5, 0), scale=9.0), "scale: 9.0 is out of range"),
        (lambda s, m: ContentDragRequest(s, (Point(40, 48), Point(50, 50)), (Point(60, 48),)), "2 handle(s) but 1"),
        (lambda s, m: ContentDragRequest(s, (Point(40, 48),), (Point(40, 200),)), "is outside the 128×96 image"),
        (lambda s, m: AppearanceRequest(s, m, s, np.zeros_like(m)), "reference_mask: the object mask is empty"),
        (lambda s, m: PasteRequest(s, s, m, Point(-4, 10)), "position (-4.0, 10.0) is outside the 128×96 image"),
        (lambda s, m: MoveRequest(s.convert("L"), m, Point(5, 5)), "expected 'RGB'"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(editor, scene, disc_mask, make, words):
    with pytest.raises(DragError, match=None) as error:
        editor.edit(make(scene, disc_mask))
    assert words in str(error.value)
    assert editor.runtime.counts == {}  # refused before any work


def test_a_resize_that_leaves_the_canvas_in_part_warns(editor, scene, disc_mask):
    request = MoveRequest(
        scene, disc_mask, Point(-30, 0), 1.5, config=resolve_config(DragonConfig, mode="move", **FAST)
    )
    assert "leaves the canvas" in editor.edit(request).warnings[0]


def test_dragon_config_names_a_bad_field():
    with pytest.raises(DragError, match="variant"):
        resolve_config(DragonConfig, mode="move", variant="fast")
    with pytest.raises(DragError, match="cfg_scale"):
        resolve_config(DragonConfig, mode="drag", cfg_scale=-1)
    with pytest.raises(DragError, match="mode: 'rotate'"):
        resolve_config(DragonConfig, mode="rotate")
    assert (
        resolve_config(DragonConfig, mode="move").energy_scale != resolve_config(DragonConfig, mode="drag").energy_scale
    )  # per-mode defaults


# -- sessions and the command line ------------------------------------------------------------------------------


def test_cli_edits_with_dragon_and_replays_the_session_it_wrote(tmp_path, scene, disc_mask):
    from dragdiff.cli import main
    from dragdiff.dragon.session import load_dragon_session

    scene.save(tmp_path / "in.png")
    Image.fromarray(disc_mask).save(tmp_path / "obj.png")
    common = ["--model", "tiny", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    args = ["edit", "--method", "dragon", "--mode", "resize", "--image", str(tmp_path / "in.png")]
    args += ["--mask", str(tmp_path / "obj.png"), "--offset=-5,2", "--scale", "1.3", "--set", "n_steps=5"]
    assert main([*args, *common, "--out", str(tmp_path / "out.png")]) == 0
    request, model = load_dragon_session(tmp_path / "out.png")
    assert (request.mode, request.offset, request.scale, model) == ("move", Point(-5, 2), 1.3, "tiny")
    assert request.config.n_steps == 5 and np.array_equal(request.mask, disc_mask)
    assert main(["edit", "--session", str(tmp_path / "out.json"), *common, "--out", str(tmp_path / "again.png")]) == 0
    first, again = Image.open(tmp_path / "out.png"), Image.open(tmp_path / "again.png")
    assert np.array_equal(np.asarray(first), np.asarray(again))  # the replay gives the same bytes


def test_cli_names_the_missing_flag_and_writes_nothing(tmp_path, scene, capsys):
    from dragdiff.cli import main

    scene.save(tmp_path / "in.png")
    args = ["edit", "--method", "dragon", "--mode", "paste", "--image", str(tmp_path / "in.png"), "--model", "tiny"]
    assert main([*args, "--out", str(tmp_path / "o.png")]) == 2
    assert "--mode paste needs --reference" in capsys.readouterr().err
    assert main([*args[:4], "move", *args[5:], "--offset", "3", "--out", str(tmp_path / "o.png")]) == 2
    assert "--mode move needs --mask or --box" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "in.png"]


def test_a_dragon_session_given_to_the_dragdiffusion_loader_says_how_to_replay_it(tmp_path, scene, disc_mask):
    from dragdiff.dragon.session import DragonSession
    from dragdiff.point_session import load_session
    from dragdiff.session_io import save_result

    request = MoveRequest(scene, disc_mask, Point(3, 4), config=resolve_config(DragonConfig, mode="move"))
    save_result(scene, DragonSession(request, "tiny"), tmp_path / "r.png")
    with pytest.raises(DragError, match="dragdiff edit --session"):
        load_session(tmp_path / "r.json")


def test_the_memory_bank_holds_what_its_size_estimate_says_and_can_live_on_the_cpu(editor, scene, disc_mask):
    from dragdiff.coords import Geometry
    from dragdiff.dragon.memory import bank_bytes

    model = editor.model
    latent = Geometry.for_image(scene.size, model.native_resolution, model.vae_factor, 0.25).latent_size
    config = resolve_config(DragonConfig, mode="move", memory_on_cpu=True, **FAST)
    result = editor.edit(MoveRequest(scene, disc_mask, Point(20, 0), config=config))
    assert result.memory_bytes == bank_bytes(model.unet, None, latent, 6, model.dtype) > 0


def test_a_box_around_the_object_becomes_its_mask(scene, disc_mask, tmp_path):
    from dragdiff.cli import main
    from dragdiff.dragon.box import box_mask
    from dragdiff.dragon.session import load_dragon_session

    mask = box_mask(scene, (20, 28, 60, 68))
    assert (mask & disc_mask).sum() / (mask | disc_mask).sum() > 0.9  # the disc, not the box
    with pytest.raises(DragError, match="at least 3×3 pixels"):
        box_mask(scene, (10, 10, 11, 40))
    scene.save(tmp_path / "in.png")
    args = ["edit", "--method", "dragon", "--mode", "move", "--image", str(tmp_path / "in.png"), "--box", "20,28,60,68"]
    args += ["--offset", "20,0", "--model", "tiny", "--set", "n_steps=3", "--quiet", "--out", str(tmp_path / "o.png")]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert np.array_equal(load_dragon_session(tmp_path / "o.png")[0].mask, mask)
