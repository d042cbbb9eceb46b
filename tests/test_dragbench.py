"""DragBench layout, safe metadata loading, resumable editing and MD aggregation."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dragdiff import DragError
from dragdiff.eval.clip_similarity import ClipSimilarity
from dragdiff.eval.dragbench import aggregate, edit_all, find_samples, load_meta
from dragdiff.eval.methods import make_methods
from dragdiff.runtime import Runtime


def write_sample(folder, image, points, prompt="a photo"):
    folder.mkdir(parents=True)
    image.save(folder / "original_image.png")
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[10:60, 10:90] = 1
    meta = {"prompt": prompt, "points": [np.array(p) for p in points], "mask": mask}
    (folder / "meta_data.pkl").write_bytes(pickle.dumps(meta))
    image.save(folder / "user_drag.png")


@pytest.fixture
def bench(tmp_path, scene):
    root = tmp_path / "drag_bench_data"
    write_sample(root / "animals" / "cat_1", scene, [[40, 48], [60, 48]])
    write_sample(root / "animals" / "cat_2", scene.resize((128, 128)), [[40, 40], [50, 40], [90, 90], [80, 90]])
    write_sample(root / "art_work" / "a_1", scene, [[20, 20], [30, 30]])
    write_sample(root / "art_work" / "a_2", scene, [[70, 40], [70, 60]])
    return root


def test_samples_are_found_in_the_official_layout(bench):
    samples = find_samples(bench)
    assert [s.key for s in samples] == ["animals/cat_1", "animals/cat_2", "art_work/a_1", "art_work/a_2"]
    assert [s.key for s in find_samples(bench, ["art_work"], limit=1)] == ["art_work/a_1"]
    meta = load_meta(samples[1].folder / "meta_data.pkl")
    assert meta["points"].shape == (4, 2) and meta["mask"].dtype == bool


@pytest.mark.parametrize("name", ["dragdiffusion", "gooddrag", "inpaint4drag", "dragon"])
def test_editing_writes_the_reference_layout_and_a_rerun_does_no_work(bench, tmp_path, tiny_model, name):
    runtime, out = Runtime(tiny_model, cache_dir=tmp_path / "cache"), tmp_path / "results"
    fast = dict(lora_steps=2, lora_batch_size=2, n_inference_steps=10, n_inversion_steps=7, drag_steps=4, n_steps=4)
    fast |= dict(drag_end_step=2, tracks_per_step=2)  # GoodDrag's
    (method,) = make_methods([name], runtime, fast)
    samples = find_samples(bench)
    assert edit_all(method, samples, out, log=lambda _: None) == 4
    for sample in samples:
        result = out / sample.category / sample.name / "dragged_image.png"
        assert Image.open(result).size == Image.open(sample.folder / "original_image.png").size
        session = json.loads(result.with_suffix(".json").read_text())
        assert (
            session["format"]
            == {
                "dragdiffusion": "dragdiff-session",
                "gooddrag": "dragdiff-gooddrag-session",
                "inpaint4drag": "dragdiff-inpaint4drag-session",
                "dragon": "dragdiff-dragon-session",
            }[name]
        )
    assert edit_all(method, samples, out, log=lambda _: None) == 0


def test_set_names_a_parameter_no_method_has(tiny_model, tmp_path):
    with pytest.raises(DragError, match="unknown parameter"):
        make_methods(["dragon"], Runtime(tiny_model, cache_dir=tmp_path), {"drag_stepz": 3})


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/dragdiff-pwned",))


def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(pickle.dumps({"prompt": "x", "points": [], "mask": Exploit()}))
    with pytest.raises(DragError, match=r"refused to unpickle (posix|os)\.system"):
        load_meta(path)
    assert not (tmp_path.parent / "dragdiff-pwned").exists()
    import os

    assert not os.path.exists("/tmp/dragdiff-pwned")


def test_pooled_and_per_image_md_differ_as_they_should():
    per_sample = {"a": [10.0], "b": [0.0, 0.0, 0.0]}  # one pair far off, three pairs exact
    result = aggregate(per_sample)
    assert result["md_pooled"] == pytest.approx(2.5)  # 10 / 4 pairs
    assert result["md_per_image"] == pytest.approx(5.0)  # (10 + 0) / 2 images
    assert result["pairs"] == 4 and result["images"] == 2


def test_the_dragbench_command_edits_scores_and_resumes(bench, tmp_path, monkeypatch):
    import json

    from dragdiff.eval.__main__ import main

    monkeypatch.setenv("DRAGDIFF_CACHE", str(tmp_path / "cache"))
    args = dragbench_args(bench, tmp_path / "r")
    assert main(args) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["pairs"] == 5 and summary["images"] == 4 and summary["md_pooled"] >= 0
    assert (tmp_path / "r" / "per_sample.csv").read_text().count("\n") == 5
    assert set(summary["categories"]) == {"animals", "art_work"} and summary["categories"]["animals"]["pairs"] == 3
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| animals |" in report and (tmp_path / "r" / "report_grid.png").is_file()
    assert main(dragbench_args(tmp_path / "nowhere", tmp_path / "r")) == 2  # a clear error, not a crash
    # A rerun with a (local) CLIP model edits nothing again and adds CLIP image similarity to the scores
    assert main([*args, "--clip-model", str(tiny_clip(tmp_path / "clip"))]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert 0 < summary["clip_similarity"] <= 1 and "clip_similarity" in summary["categories"]["animals"]


def tiny_clip(folder):
    """A random CLIP model saved as a local folder (safetensors), as a downloaded one would be."""
    from transformers import CLIPConfig, CLIPModel

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config={**small, "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    return folder


def test_clip_similarity_is_one_for_the_same_image_and_less_for_another(tmp_path, scene):
    clip = ClipSimilarity.load(tiny_clip(tmp_path / "clip"))
    assert clip(scene, scene.copy()) == pytest.approx(1.0, abs=1e-5)
    assert clip(scene, scene.transpose(Image.Transpose.FLIP_TOP_BOTTOM)) < 0.9999


def test_a_missing_clip_model_is_named_with_how_to_get_it(tmp_path):
    with pytest.raises(DragError, match="not available locally.*huggingface-cli download"):
        ClipSimilarity.load(tmp_path / "no-clip-here")


def dragbench_args(root, out) -> list[str]:
    """`dragbench` on the tiny model with a few cheap steps (no LPIPS weights here)."""
    fast = ["lora_steps=1", "lora_batch_size=1", "n_inference_steps=10", "n_inversion_steps=7", "drag_steps=2"]
    common = ["--model", "tiny", "--md-model", "same", "--device", "cpu", "--skip-if"]
    return ["dragbench", "--root", str(root), "--out", str(out), *common, *[a for i in fast for a in ("--set", i)]]


@pytest.mark.slow
def test_two_processes_under_accelerate_give_the_same_summary(bench, tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "DRAGDIFF_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def run(prefix, out):
        command = [*prefix, "-m", "dragdiff.eval", *dragbench_args(bench, out)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((out / "summary.json").read_text())

    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    assert run(launch, tmp_path / "two") == run([sys.executable], tmp_path / "one")


def test_image_fidelity_plumbing_with_a_random_lpips_network(scene):
    import torch

    from dragdiff.eval.lpips import LPIPS, image_fidelity

    torch.manual_seed(0)
    model = LPIPS()  # random backbone: the real weights are never downloaded
    for name, param in model.named_parameters():
        if name.startswith("lin"):
            param.data.fill_(1.0 / param.shape[1])  # like the real layers: non-negative channel weights
    assert image_fidelity(model, scene, scene) == (1.0, 0.0)
    fidelity, distance = image_fidelity(model, scene, scene.rotate(90))
    assert distance > 0 and fidelity == pytest.approx(1 - distance)


def test_missing_lpips_weights_say_where_to_put_them(tmp_path):
    from dragdiff.eval.lpips import LPIPS

    with pytest.raises(DragError) as error:
        LPIPS.pretrained(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "convert_lpips_weights.py" in message and "alexnet" in message


def test_converted_weights_load_into_the_network(tmp_path):
    """The converter's key names are exactly the network's (torchvision `features.*`, lpips `lin*.model.1`)."""
    import torch
    from safetensors.torch import save_file

    from dragdiff.eval.lpips import FILES, LPIPS

    state = LPIPS().state_dict()
    save_file({k: v for k, v in state.items() if k.startswith("features.")}, tmp_path / FILES[0])
    save_file({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / FILES[1])
    loaded = LPIPS.pretrained(tmp_path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_shapes_and_dragbench_measure_the_same_md_of_the_same_edits(tmp_path, monkeypatch):
    """MD is computed with the plain UNet in both commands: a DragDiffusion edit leaves its image's LoRA
    attached, and features taken through it made the two commands disagree on identical edits."""
    import csv
    import json

    from dragdiff.eval.__main__ import main

    monkeypatch.setenv("DRAGDIFF_CACHE", str(tmp_path / "cache"))
    fast = ["lora_steps=2", "lora_batch_size=1", "n_inference_steps=10", "n_inversion_steps=7", "drag_steps=2"]
    sets = [a for item in fast for a in ("--set", item)]
    common = ["--model", "tiny", "--count", "3", "--device", "cpu"]
    assert main(["shapes", *common, "--out", str(tmp_path / "shapes"), *sets]) == 0
    assert main(["shapes", "--export", "--count", "3", "--out", str(tmp_path / "bench")]) == 0
    assert main(dragbench_args(tmp_path / "bench", tmp_path / "r")[: -2 * len(fast)] + sets) == 0
    rows = json.loads((tmp_path / "shapes" / "results.json").read_text())["rows"]
    shapes_md = [r["mean_distance"] for r in rows if r["method"] == "DragDiffusion"]
    with open(tmp_path / "r" / "per_sample.csv") as file:
        bench_md = [float(r["md"]) for r in csv.DictReader(file)]
    assert shapes_md == pytest.approx(bench_md, abs=0.01)


def test_shapes_tasks_export_to_the_dragbench_layout(tmp_path):
    from dragdiff.eval.__main__ import main

    assert main(["shapes", "--export", "--count", "3", "--out", str(tmp_path)]) == 0
    samples = find_samples(tmp_path)
    assert [s.category for s in samples] == ["shapes"] * 3
    meta = samples[0].meta()
    assert len(meta["handles"]) == len(meta["targets"]) >= 1 and meta["mask"].shape == (128, 128)
