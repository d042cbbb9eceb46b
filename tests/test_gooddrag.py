"""GoodDrag on the tiny model: AlDD's exact schedule of drag and denoising steps, information-preserving
supervision against fixed original features, replay to the same bytes, and bad parameters named."""

import json

import pytest
import torch

import app  # at import time: conftest points the handlers' upload folder at pytest's tmp only for a loaded app
from dragdiff import DragError, DragRequest, Point
from dragdiff.cli import main
from dragdiff.config import resolve_config
from dragdiff.errors import DragCancelled
from dragdiff.gooddrag import GoodDragConfig
from dragdiff.gooddrag import method as gooddrag_method
from dragdiff.motion import motion_supervision_loss, patches
from dragdiff.point_session import load_session
from dragdiff.runtime import Runtime

# Cheap but with AlDD's shape: the reference's 50-step schedule from strength 0.75, 3 drag steps per tracking.
FAST = dict(lora_steps=2, lora_batch_size=2, drag_end_step=3, tracks_per_step=2, image_check=False)
FAR = (Point(40, 48),), (Point(100, 48),)  # far beyond what a few steps can do: the schedule runs in full


@pytest.fixture
def gooddrag(tiny_model, tmp_path, one_thread):
    return Runtime(tiny_model, cache_dir=str(tmp_path / "cache")).method("gooddrag")


def record_unet_calls(unet):
    """[(timestep, batch, grad enabled)] of every UNet forward from now on."""
    calls = []
    unet.register_forward_pre_hook(
        lambda module, args: calls.append((int(args[1]), args[0].shape[0], torch.is_grad_enabled()))
    )
    return calls


def test_aldd_alternates_drag_and_denoising_on_the_reference_schedule(gooddrag, scene):
    """50 steps, 38 inverted (t = 741): 3 timesteps of the original path, then at each of them 2 trackings × 3
    Adam steps with gradients and one DDIM step, then the 35 remaining steps of [original, dragged]."""
    config = gooddrag.default_config(**FAST, early_stop_tracks=1000)
    request = DragRequest(scene, *FAR, config=config)
    gooddrag.prepare(scene, "", config)  # LoRA and inversion first: only the drag is recorded
    calls = record_unet_calls(gooddrag.model.unet)
    result = gooddrag.edit(request)
    schedule = list(range(981, 0, -20))  # SD's 50-step DDIM timesteps (steps_offset 1)
    window = schedule[12:15]
    assert window == [741, 721, 701]
    expected = [(t, 1, False) for t in window]  # the original path: F0(t) and z⁰_{t-1}
    for t in window:
        expected += [(t, 1, True)] * 6 + [(t, 1, False)]  # drag phase, then one denoising step
    expected += [(t, 2, False) for t in schedule[15:]]  # the rest, beside the original (mutual self-attention)
    assert calls == expected
    assert result.steps_used == 18 and not result.tracker_reached_targets
    assert len(result.handle_track) == 1 + 3 * (1 + 2)  # initial, then per timestep: first tracking + 2


def test_information_preserving_supervision_pulls_toward_fixed_original_features(gooddrag, scene, monkeypatch):
    """Every drag step at a timestep compares with the same F0(t) patch, taken from the unedited path at the
    initial handle; DragDiffusion's target (the current features) would move with the latent."""
    seen = []

    def spy(features, handles, targets, radius, min_distance, **options):
        seen.append((features.detach().clone(), options["original"].clone()))
        return motion_supervision_loss(features, handles, targets, radius, min_distance, **options)

    monkeypatch.setattr(gooddrag_method, "motion_supervision_loss", spy)
    config = gooddrag.default_config(**{**FAST, "drag_end_step": 2}, early_stop_tracks=1000)
    gooddrag.edit(DragRequest(scene, *FAR, config=config))
    per_step = config.tracks_per_step * config.drag_steps_per_track
    assert len(seen) == 2 * per_step
    for phase in (seen[:per_step], seen[per_step:]):
        assert all(torch.equal(o, phase[0][1]) for _, o in phase)  # F0 fixed while the latent changes
        assert not torch.equal(phase[-1][0], phase[0][0])
    # at the first step the latent is still the unedited z_t: F0 is its patch at the initial handle
    handle = torch.tensor([[48, 40]]) // 2  # (row, col) of Point(40, 48) on the half-size feature grid
    assert torch.allclose(seen[0][1], patches(seen[0][0], handle, config.motion_radius))
    assert not torch.equal(seen[0][1], seen[per_step][1])  # each timestep has its own F0(t)


def test_supervision_target_gets_no_gradient_and_steps_are_capped():
    features = torch.randn(1, 4, 32, 32, requires_grad=True)
    original = torch.randn(4, 1, 9, requires_grad=True)
    handles, targets = torch.tensor([[10, 10]]), torch.tensor([[10.0, 30.0]])
    loss = motion_supervision_loss(features, handles, targets, 1, 2.0, max_step=4.0, original=original)
    loss.backward()
    assert original.grad is None and features.grad.abs().sum() > 0
    # the pull reads features 4 px toward the target (β), not 1 (DragDiffusion) nor 20 (the whole way)
    assert features.grad[0, :, 9:12, 13:16].abs().sum() > 0 and features.grad[0, :, :, 17:].abs().sum() == 0


def test_progress_counts_drag_and_denoising_steps_and_stop_ends_the_drag(gooddrag, scene):
    config = gooddrag.default_config(**FAST, early_stop_tracks=1000)
    events = []
    gooddrag.edit(DragRequest(scene, *FAR, config=config), on_progress=events.append)
    drag = [e for e in events if e.stage == "drag"]
    denoise = [e for e in events if e.stage == "denoise"]
    assert [e.step for e in drag] == list(range(1, 19)) and drag[0].total == 3 * 2 * 3
    assert [e.step for e in denoise] == list(range(1, 39)) and denoise[-1].total == 38
    assert all(len(e.points) == 1 and e.distance > 0 for e in drag)
    with pytest.raises(DragCancelled):
        gooddrag.edit(DragRequest(scene, *FAR, config=config), should_stop=lambda: bool(events.pop()))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"drag_end_step": 0}, "drag_end_step"),
        ({"max_step": -1}, "max_step"),
        ({"tracks_per_step": 2.5}, "tracks_per_step"),
        ({"drag_steps_per_track": "3"}, "drag_steps_per_track"),
        ({"drag_steps": 40}, "drag_steps"),  # DragDiffusion's, not GoodDrag's
    ],
)
def test_bad_parameters_are_named(values, named):
    with pytest.raises(DragError, match=named):
        resolve_config(GoodDragConfig, **values)


def test_cli_edits_with_gooddrag_and_the_session_replays_to_the_same_bytes(tmp_path, scene):
    scene.save(tmp_path / "in.png")
    fast = ["--model", "tiny", "--device", "cpu", "--quiet", "--lora-steps", "2", "--lora-batch-size", "2"]
    fast += ["--drag-end-step", "2", "--tracks-per-step", "2"]
    out = tmp_path / "out.png"
    args = ["edit", "--method", "gooddrag", "--image", str(tmp_path / "in.png"), "--points", "40,48>60,48"]
    assert main([*args, *fast, "--cache-dir", str(tmp_path / "c1"), "--out", str(out)]) == 0
    session = json.loads(out.with_suffix(".json").read_text())
    assert session["format"] == "dragdiff-gooddrag-session" and session["config"]["drag_end_step"] == 2
    assert load_session(out).config == resolve_config(GoodDragConfig, session=session["config"])
    replay = tmp_path / "replay.png"  # a fresh cache: LoRA and inversion are recomputed from the session alone
    assert (
        main(["edit", "--session", str(out), "--cache-dir", str(tmp_path / "c2"), "--quiet", "--out", str(replay)]) == 0
    )
    assert replay.read_bytes() == out.read_bytes()


def test_cli_refuses_a_parameter_gooddrag_does_not_have(tmp_path, scene, capsys):
    scene.save(tmp_path / "in.png")
    args = ["edit", "--method", "gooddrag", "--image", str(tmp_path / "in.png"), "--points", "40,48>60,48"]
    assert main([*args, "--model", "tiny", "--drag-steps", "5", "--out", str(tmp_path / "o.png")]) == 2
    assert "--drag-steps: not a parameter of gooddrag" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_a_second_drag_of_the_same_image_reuses_the_lora_and_the_inversion(gooddrag, scene):
    config = gooddrag.default_config(**FAST)
    for targets in ((Point(50, 48),), (Point(40, 60),)):
        gooddrag.edit(DragRequest(scene, FAR[0], targets, config=config))
    counts = gooddrag.runtime.counts
    assert (counts["lora_trained"], counts["inversion"]) == (1, 1)
    assert (counts["lora_cached"], counts["inversion_cached"]) == (1, 1)


def test_the_drag_tab_runs_gooddrag_and_its_session_comes_back_with_its_settings(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    monkeypatch.setattr(app.SETTINGS, "model", "tiny")
    assert app.default_method("tiny") == "gooddrag"  # a model without its own measurement: GoodDrag
    values = app.panel_from(resolve_config(GoodDragConfig, **FAST), "tiny")
    state = app.new_state().fresh(image=scene, clicks=[[40.0, 48.0], [60.0, 48.0]])
    updates = list(app.run(state, "", "tiny", "gooddrag", "drag", 1.0, *values))
    assert any("dragging" in str(u.get(app.DRAG.status, "")) for u in updates[:-1])  # progress per drag step
    assert "Done in" in updates[-1][app.DRAG.status]
    restored = app.load_saved(updates[-1][app.DRAG.download], app.new_state())
    assert restored[app.DRAG.method] == "gooddrag"
    shown = {name: restored[w] for name, w in zip(app.PARAMS, app.DRAG.widgets, strict=True)}
    assert shown["drag_end_step"]["visible"] and shown["drag_end_step"]["value"] == 3
    assert not shown["drag_steps"]["visible"]  # DragDiffusion's own field
