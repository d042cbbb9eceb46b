"""The speed benchmark runs and its optimisations do not change the edit (timings are never asserted: they
are noise on shared machines; the FLOP counts are exact and show the work saved)."""

import json

import numpy as np
import pytest

from dragdiff.bench import difference, main, naive
from dragdiff.drag.method import DragDiffusion
from dragdiff.lora_config import SPEED_FIELDS
from dragdiff.types import DragRequest, Point

FAST = ["lora_steps=3", "drag_steps=4", "n_inference_steps=10", "n_inversion_steps=7"]


def test_compare_runs_both_variants_with_the_same_result_and_less_work(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--size", "64", "--device", "cpu", "--compare", "--no-warmup", "--out", str(out)]
    args += ["--try", "channels_last=true", "--try", "dtype=bf16"]
    assert main(args + [a for item in FAST for a in ("--set", item)]) == 0
    report = json.loads(out.read_text())
    naive, optimised = report["variants"]["naive"], report["variants"]["optimised"]
    for variant in (naive, optimised):
        assert set(variant["seconds"]) == {"lora", "inversion", "drag", "denoise", "decode", "check", "total"}
        assert variant["peak_memory_mib"] > 0 and variant["steps"]["lora"] == 3
    assert set(report["speedups"]) == {"optimised", "channels_last=true", "dtype=bf16"}
    assert set(report["speedups"]["optimised"]) == set(naive["seconds"])
    assert report["variants"]["dtype=bf16"]["steps"]["lora"] == 3
    # Optimisations must not change the result beyond numeric noise ...
    for name in ("optimised", "channels_last=true"):
        assert report["differences"][name]["max_abs"] <= 2 and report["differences"][name]["psnr_db"] > 45
    # ... and must save work: LoRA steps no longer run the VAE, feature-only passes stop early in the UNet.
    assert optimised["gflop"]["lora"] < 0.9 * naive["gflop"]["lora"]
    assert optimised["gflop"]["drag"] < naive["gflop"]["drag"]
    assert optimised["gflop"]["inversion"] == naive["gflop"]["inversion"]
    printed = capsys.readouterr().out
    assert "optimised ×" in printed and "naive vs optimised result" in printed
    assert "naive vs dtype=bf16 result" in printed


def test_dragon_reports_its_memory_bank(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--size", "64", "--device", "cpu", "--no-warmup", "--no-flops", "--dragon"]
    assert main([*args, "--out", str(out), *[a for item in [*FAST, "n_steps=4"] for a in ("--set", item)]]) == 0
    dragon = json.loads(out.read_text())["dragon"]
    assert dragon["steps"] == 4 and dragon["memory_bank_mib"] > 0 and dragon["memory_bank_on"] == "cpu"
    assert set(dragon["seconds"]) == {"inversion", "editing", "check", "total"}  # check: the outcome check
    assert "memory bank" in capsys.readouterr().out


def test_a_bad_setting_is_named(capsys):
    assert main(["--model", "tiny", "--size", "64", "--set", "drag_steps=-1"]) == 2
    assert "drag_steps" in capsys.readouterr().err


def test_every_speed_setting_leaves_the_edit_unchanged(tiny_model, scene, fast_config, tmp_path):
    """All speed and memory settings on (non-square image, with and without a mask) give the edit of all off."""
    mask = np.zeros((96, 128), bool)
    mask[30:70, 20:100] = True
    all_on = fast_config.replace(**{name: True for name in SPEED_FIELDS})
    for editable in (mask, None):
        images = []
        for index, config in enumerate((naive(fast_config), all_on)):
            engine = DragDiffusion(tiny_model, cache_dir=str(tmp_path / f"{index}-{editable is None}"))
            request = DragRequest(scene, (Point(40, 48),), (Point(60, 50),), editable, "a disc", config)
            images.append(engine.edit(request).image)
        assert difference(*images)["max_abs"] <= 2, difference(*images)


def test_methods_are_timed_side_by_side_stage_by_stage(tmp_path):
    """--methods alone: each method's whole edit on the same input, its stages, peak memory and ratios to the
    first; Inpaint4Drag's warp preview timed at 512 px."""
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--size", "64", "--device", "cpu", "--no-warmup", "--no-flops"]
    sets = [*FAST, "drag_end_step=2", "tracks_per_step=2", "n_steps=2"]
    args += ["--methods", "dragdiffusion", "gooddrag", "inpaint4drag", *[a for item in sets for a in ("--set", item)]]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    timed = report["methods"]
    assert report["variants"] == {}  # only the methods ran
    assert timed["dragdiffusion"]["total_vs_first"] == 1.0
    ratios = timed["gooddrag"]["stages_vs_first"]
    assert {"lora", "inversion", "drag", "denoise", "check"} <= set(ratios)
    assert all(r > 0 for r in ratios.values()) and timed["gooddrag"]["drag_updates"] > 0
    fast = timed["inpaint4drag"]
    assert set(fast["stages"]) == {"warp", "inpaint", "check"} and fast["peak_mb"] > 0
    assert fast["total_s"] == pytest.approx(fast["total_vs_first"] * timed["dragdiffusion"]["total_s"], rel=0.01)
    preview = report["warp_preview"]
    assert preview["size"] == 512 and preview["pairs"] == 2 and preview["median_ms"] > 0


def test_architectures_are_timed_side_by_side_with_ratios_to_the_first(tmp_path):
    """--architectures: the same drag on SD 1.5-, SD 2.x- and SDXL-shaped models, per stage and peak memory,
    as ratios to the first architecture's."""
    out = tmp_path / "bench.json"
    args = ["--architectures", "tiny", "tiny-sd2", "tiny-sdxl", "--size", "64", "--device", "cpu"]
    args += ["--methods", "inpaint4drag", "--set", "n_steps=2", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())["architectures"]
    assert list(report) == ["tiny", "tiny-sd2", "tiny-sdxl"]
    assert report["tiny"]["methods"]["inpaint4drag"]["total_vs_first_architecture"] == 1.0
    sdxl = report["tiny-sdxl"]["methods"]["inpaint4drag"]
    assert set(sdxl["stages_vs_first_architecture"]) == {"warp", "inpaint", "check"} and sdxl["peak_mb"] > 0
