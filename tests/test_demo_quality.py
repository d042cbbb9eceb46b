"""What the trained demo model can do on fixed DragBench-Shapes tasks and scenes: DDIM inversion, DragDiffusion,
GoodDrag and DragonDiffusion edits. Thresholds come from measurements (UNet at 12,144 steps, 2-core CPU) with a
margin; each test also checks that returning the input unchanged would fail it."""

import numpy as np
import pytest

from dragdiff.drag.method import DragDiffusion
from dragdiff.dragon import AppearanceRequest, DragonDiffusion, MoveRequest
from dragdiff.eval.demo_checks import inversion_psnr
from dragdiff.eval.metrics import centroid, colour_region, psnr
from dragdiff.eval.shapes_bench import COLOUR_TOLERANCE, make_tasks, score
from dragdiff.models import load_model
from dragdiff.shapes import COLORS, Background, Scene, Shape
from dragdiff.types import DragRequest, Point

TASKS = {task.name: task for task in make_tasks(20, seed=0)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return DragDiffusion(load_model("demo", device="cpu"), cache_dir=str(tmp_path_factory.mktemp("cache")))


def scene(colour: str, backdrop: str, x: float = 64, kind: str = "circle", size: float = 16) -> Scene:
    shape = Shape(kind, colour, COLORS[colour], (x, 64), size)
    return Scene(Background("plain", backdrop, COLORS[backdrop], COLORS[backdrop]), (shape,), (128, 128))


def test_inversion_then_denoising_reconstructs_held_out_scenes(engine):
    """Measured 29.4 dB over 10 held-out scenes (35 of 50 steps, no LoRA)."""
    assert inversion_psnr(engine, 10, engine.default_config(n_inversion_steps=35, lora_steps=0)) >= 28.0


@pytest.mark.parametrize("name", ["000_move", "015_move", "018_move"])
def test_dragdiffusion_moves_a_shape_most_of_the_way(engine, name):
    """Measured moved fraction 0.74 / 0.81 / 0.64 and 30.5 / 34.9 / 33.4 dB outside the mask with the model's
    defaults; the target is 60% and 25 dB. (Of the 7 move tasks, 4 reach 60%; see the README's table.)"""
    task = TASKS[name]
    config = engine.default_config()
    result = engine.edit(DragRequest(task.input_image(), task.handles, task.targets, task.mask, task.prompt, config))
    scores = score(task, result.image)
    print(f"{name}: DragDiffusion moved {scores['moved_fraction']:.2f}, {scores['psnr_outside_mask']:.1f} dB")
    assert scores["moved_fraction"] >= 0.6 and scores["psnr_outside_mask"] >= 25, scores
    assert score(task, task.input_image())["moved_fraction"] < 0.6


def test_gooddrag_moves_two_shapes_at_once(engine):
    """A two-shape drag, where DragDiffusion mostly fails: GoodDrag with the model's defaults measured moved
    fraction 0.87 and 46.0 dB outside the mask on task 004 (0.84 and 0.94 on tasks 007 and 019, left out for
    time); the target is 60% and 25 dB."""
    name = "004_move2"
    task = TASKS[name]
    gooddrag = engine.runtime.method("gooddrag")
    request = DragRequest(task.input_image(), task.handles, task.targets, task.mask, task.prompt)
    scores = score(task, gooddrag.edit(request).image)
    print(f"{name}: GoodDrag moved {scores['moved_fraction']:.2f}, {scores['psnr_outside_mask']:.1f} dB")
    assert scores["moved_fraction"] >= 0.6 and scores["psnr_outside_mask"] >= 25, scores
    assert score(task, task.input_image())["moved_fraction"] < 0.6


def test_a_drag_whose_mask_excludes_the_shape_leaves_it_in_place(engine):
    """Measured 2.1 px (the model's mask weight 0.5; at the paper's 0.1 the shape was pulled 6.3 px)."""
    task = TASKS["000_move"]
    index = task.moved[0]
    shape_mask = task.scene.shape_mask(index)
    grown = np.zeros_like(shape_mask)
    rows, cols = np.nonzero(shape_mask)
    grown[max(0, rows.min() - 4) : rows.max() + 5, max(0, cols.min() - 4) : cols.max() + 5] = True
    config = engine.default_config()
    request = DragRequest(task.input_image(), task.handles, task.targets, task.mask & ~grown, task.prompt, config)
    result = engine.edit(request)
    colour = task.scene.shapes[index].rgb
    before = centroid(colour_region(task.input_image(), colour, COLOUR_TOLERANCE))
    after = centroid(colour_region(result.image, colour, COLOUR_TOLERANCE))
    print(f"shape outside the mask moved {np.hypot(after[0] - before[0], after[1] - before[1]):.1f} px")
    assert after is not None and np.hypot(after[0] - before[0], after[1] - before[1]) <= 3.0


@pytest.mark.parametrize("name", ["000_move", "003_move", "006_move"])
def test_dragon_moves_the_object_to_its_target(engine, name):
    """Measured handle error 0.7 / 0.4 / 0.4 px (drags of 12-24 px) and 32.2 / 27.2 / 31.6 dB outside the
    task's mask (the old and new places, grown by 4 px)."""
    task = TASKS[name]
    handle, target = task.handles[0], task.targets[0]
    obj = task.scene.shape_mask(task.moved[0])
    editor = DragonDiffusion(engine.runtime)
    request = MoveRequest(task.input_image(), obj, Point(target.x - handle.x, target.y - handle.y), 1.0, task.prompt)
    scores = score(task, editor.edit(request).image)
    print(f"{name}: Dragon handle error {scores['handle_error']:.1f} px, {scores['psnr_outside_mask']:.1f} dB")
    assert scores["handle_error"] <= 4.0 and scores["psnr_outside_mask"] >= 26.0, scores
    assert score(task, task.input_image())["handle_error"] > 4.0


@pytest.mark.parametrize("colour, backdrop", [("red", "gray"), ("blue", "white")])
def test_dragon_resize_scales_the_area(engine, colour, backdrop):
    """×1.5 should give 2.25× the area; measured 2.05× and 1.84× (the tolerance: ±25%)."""
    picture = scene(colour, backdrop)
    request = MoveRequest(picture.render(), picture.shape_mask(0), Point(0, 0), 1.5, picture.caption())
    result = DragonDiffusion(engine.runtime).edit(request)
    area = lambda image: colour_region(image, COLORS[colour], 60).sum()  # noqa: E731
    ratio = area(result.image) / area(picture.render())
    print(f"{colour} on {backdrop}: resize ×1.5 gave {ratio:.2f}× the area")
    assert abs(ratio - 2.25) <= 0.25 * 2.25, ratio


@pytest.mark.parametrize("colour, reference", [("red", "yellow"), ("blue", "orange")])
def test_dragon_appearance_takes_the_reference_colour(engine, colour, reference):
    """The object's mean colour moves toward the reference object's: measured 55% and 70% closer, with 34.4
    and 29.2 dB outside the object."""
    base = scene(colour, "gray" if colour == "red" else "white", x=48, size=18)
    other = scene(reference, "white", kind="star", size=24)
    request = AppearanceRequest(
        base.render(), base.shape_mask(0), other.render(), other.shape_mask(0), base.caption(), other.caption()
    )
    result = DragonDiffusion(engine.runtime).edit(request)
    inside, wanted = base.shape_mask(0), np.array(COLORS[reference], float)
    distance = lambda image: np.linalg.norm(np.asarray(image, float)[inside].mean(0) - wanted)  # noqa: E731
    closer = 1 - distance(result.image) / distance(base.render())
    print(f"{colour} -> {reference}: {closer:.0%} closer, {psnr(result.image, base.render(), ~inside):.1f} dB outside")
    assert distance(result.image) <= 0.8 * distance(base.render())
    assert psnr(result.image, base.render(), ~inside) >= 25.0
