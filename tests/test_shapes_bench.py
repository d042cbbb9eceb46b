"""DragBench-Shapes: the generator's ground truth and the metrics, on constructed cases."""

import numpy as np
import pytest
from PIL import Image

from dragdiff.eval import metrics
from dragdiff.eval.shapes_bench import handle_errors, make_tasks, naive_warp, no_edit, score


@pytest.fixture(scope="module")
def tasks():
    return make_tasks(12, seed=3)


def test_same_seed_gives_the_same_tasks(tasks):
    again = make_tasks(12, seed=3)
    assert [t.prompt for t in again] == [t.prompt for t in tasks]
    assert all(np.array_equal(np.asarray(a.input_image()), np.asarray(b.input_image())) for a, b in zip(again, tasks))
    assert [t.kind for t in tasks[:3]] == ["move", "move2", "stretch"]


def test_a_moved_shape_is_found_where_the_truth_put_it(tasks):
    for task in (t for t in tasks if t.kind != "stretch"):
        for index, handle, target in zip(task.moved, task.handles, task.targets):
            before = metrics.centroid(task.scene.shape_mask(index))
            after = metrics.centroid(task.truth.shape_mask(index))
            # the truth's shape centroid moved by exactly the drag (dx, dy), up to anti-aliasing
            assert abs(after[0] - before[0] - (target.x - handle.x)) < 0.3
            assert abs(after[1] - before[1] - (target.y - handle.y)) < 0.3


def test_the_truth_scores_perfectly_and_doing_nothing_does_not(tasks):
    for task in tasks:
        perfect, nothing = score(task, task.truth_image()), score(task, no_edit(task))
        assert perfect["handle_error"] <= 1.0 and perfect["psnr_truth"] == float("inf")
        assert perfect["ssim_truth"] == pytest.approx(1.0)
        assert nothing["moved_fraction"] < 0.1 < 0.85 < perfect["moved_fraction"]
        assert nothing["psnr_truth"] < 35
    # the truth only changes pixels inside the editable mask
    assert all(metrics.psnr(t.truth_image(), t.input_image(), ~t.mask) == float("inf") for t in tasks)


def test_identity_scores_the_truth_perfectly_and_a_lost_shape_badly(tasks):
    for task in tasks:
        perfect, nothing = score(task, task.truth_image()), score(task, no_edit(task))
        assert perfect["shape_iou"] == 1.0 and perfect["colour_error"] == 0.0
        assert nothing["shape_iou"] < perfect["shape_iou"]
    task = next(t for t in tasks if t.kind == "move")
    grey = Image.new("RGB", task.input_image().size, (128, 128, 128))  # the shape is gone, and its colour
    lost = score(task, grey)
    assert lost["shape_iou"] == 0.0 and lost["colour_error"] > 20


def test_dai_follows_the_reference_formula():
    """GoodDrag's compute_DAI: Σ over pairs of the squared patch difference (RGB in [0, 1], channels summed),
    / (2γ+1)² / N / N."""
    from dragdiff.types import Point

    before = np.zeros((64, 64, 3), np.uint8)
    before[30:33, 10:13] = 255  # a white 3×3 square at the handle (11, 31)
    moved = np.zeros_like(before)
    moved[30:33, 40:43] = 255  # ... arrived at the target (41, 31)
    handle, target, far = Point(11, 31), Point(41, 31), Point(50, 50)
    assert metrics.dai(before, moved, (handle,), (target,), 1) == 0.0
    # nothing moved: the 3×3 white patch (3 channels) against black, / 9
    assert metrics.dai(before, before, (handle,), (target,), 1) == pytest.approx(27 / 9)
    # two pairs, one right and one wrong: 27 / 9, summed, / 2 / 2
    assert metrics.dai(before, before, (handle, far), (far, target), 1) == pytest.approx(27 / 9 / 4)
    # a patch cut by the border still compares like with like
    assert metrics.dai(before, before, (Point(0, 0),), (Point(63, 63),), 5) == 0.0


def test_naive_warp_moves_the_shape_but_leaves_the_old_one(tasks):
    task = next(t for t in tasks if t.kind == "move")
    warped = naive_warp(task)
    assert handle_errors(task, warped)[0] < 0.6 * handle_errors(task, no_edit(task))[0]
    assert score(task, warped)["psnr_truth"] < 30  # the original stays behind: not the truth


def test_psnr_and_ssim_on_known_cases():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    assert metrics.psnr(a, a) == float("inf") and metrics.ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)))
    assert metrics.ssim(a, rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)) < 0.1
    where = np.zeros((40, 50), bool)
    where[:, :10] = True
    c = a.copy()
    c[:, 10:] = 0  # change only outside `where`
    assert metrics.psnr(a, c, where) == float("inf") and metrics.psnr(a, c) < 20


def test_mean_distance_matches_a_shifted_feature_map_exactly():
    """A feature map shifted by (dx, dy) with targets = handles + (dx, dy) gives MD = 0; swapped targets don't."""
    import torch
    import torch.nn.functional as F

    from dragdiff.types import Point

    generator = torch.Generator().manual_seed(0)
    source = F.normalize(torch.randn(16, 64, 80, generator=generator), dim=0)
    edited = torch.roll(source, (8, 16), dims=(1, 2))
    handles = (Point(20, 20), Point(40, 30))
    targets = tuple(Point(p.x + 16, p.y + 8) for p in handles)
    assert metrics.mean_distance_pairs(source, edited, handles, targets) == [0.0, 0.0]
    swapped = metrics.mean_distance_pairs(source, edited, handles, targets[::-1])
    assert swapped == pytest.approx([np.hypot(20, 10)] * 2)


def test_dift_features_are_unit_vectors_at_image_size(tiny_model):
    image = Image.new("RGB", (96, 64), (200, 30, 30))
    features = metrics.dift_features(tiny_model, image, "a red square", 261, 1, 2)
    assert features.shape[1:] == (64, 96)
    assert torch_allclose_one(features.norm(dim=0))


def torch_allclose_one(norms) -> bool:
    return bool(((norms - 1).abs() < 1e-4).all())


def test_the_runner_writes_table_csv_and_grid(tmp_path):
    """End to end on the tiny model (its edits are noise; this checks the plumbing and the baselines)."""
    import json

    from dragdiff.eval.__main__ import main

    fast = ["lora_steps=1", "lora_batch_size=1", "n_inference_steps=10", "n_inversion_steps=7", "drag_steps=2"]
    fast.append("n_steps=4")  # DragonDiffusion's
    args = ["shapes", "--model", "tiny", "--count", "3", "--out", str(tmp_path), "--device", "cpu"]
    args += ["--method", "dragdiffusion", "dragon"]
    assert main(args + [arg for item in fast for arg in ("--set", item)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    methods = {"no edit", "naive warp", "DragDiffusion", "DragonDiffusion"}
    assert set(results["summary"]) == methods and len(results["rows"]) == 12
    assert (
        results["config"]["DragonDiffusion"]["n_steps"] == 4 and results["config"]["DragDiffusion"]["drag_steps"] == 2
    )
    assert results["summary"]["no edit"]["moved_fraction"] < 0.05
    assert results["summary"]["no edit"]["psnr_outside_mask"] == float("inf")
    assert set(results["summary_by_kind"]) == {"move", "move2", "stretch"}
    assert set(results["summary_by_kind"]["move2"]) == methods  # one task of each kind
    assert results["summary"]["naive warp"]["check_agrees"] is None  # baselines are not checked
    assert 0 <= results["summary"]["DragonDiffusion"]["check_agrees"] <= 1
    assert (tmp_path / "results.csv").read_text().count("\n") == 13
    assert Image.open(tmp_path / "grid.png").size == (128 * 5, 128 * 3)  # input | warp | 2 methods | truth
