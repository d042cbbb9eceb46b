"""fp16 and bf16 on the CPU with the casts the CUDA path uses (half-precision UNet and VAE, fp32 latent being
optimised, fp32 LoRA weights, the loss in fp32, a GradScaler for fp16): every method and every DragonDiffusion
mode runs on `tiny`, and on `demo` each agrees with fp32. On the CPU a tensor of one dtype meeting a weight of
another raises ("mat1 and mat2 must have the same dtype"), as on CUDA: a run that passes here has no such
mismatch (DragDiffusion's reference-attention denoising had one until these tests)."""

import pytest
import torch

from dragdiff import DragRequest, Point
from dragdiff.eval.metrics import psnr
from dragdiff.eval.shapes_bench import make_tasks
from dragdiff.models import load_model
from dragdiff.runtime import Runtime
from tests.support.edits import FAST, mask_box, run_dragon_modes


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_every_method_and_mode_runs_in_half_precision_on_the_tiny_model(dtype, scene, tmp_path, one_thread):
    runtime = Runtime(load_model("tiny", "cpu", dtype), cache_dir=str(tmp_path))
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    assert runtime.model.unet.dtype == runtime.model.vae.dtype == half
    mask = mask_box()
    for name, fast in FAST.items():
        method = runtime.method(name)
        config = method.default_config(**fast)
        result = method.edit(DragRequest(scene, (Point(40, 48),), (Point(60, 48),), mask, "", config))
        assert result.image.size == scene.size, name
    run_dragon_modes(runtime.method("dragon"), scene, mask)


# PSNR against the fp32 result on the demo model, the bound per method (measured with 10 LoRA and drag steps:
# fp16 DragDiffusion 68.5 dB, GoodDrag 35.8, Inpaint4Drag 80.7, DragonDiffusion 69.5; bf16 58.2, 34.3, 69.1,
# 56.7; the test prints its own). GoodDrag is the lowest: its tracking takes discrete decisions that rounding
# can flip.
AGREEMENT_DB = {"dragdiffusion": 40.0, "gooddrag": 28.0, "inpaint4drag": 50.0, "dragon": 45.0}
DEMO_FAST = {
    "dragdiffusion": dict(lora_steps=2, drag_steps=8),
    "gooddrag": dict(lora_steps=2, drag_end_step=2, tracks_per_step=2),
    "inpaint4drag": dict(),
    "dragon": dict(n_steps=8),
}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_agrees_with_fp32_on_the_demo_model_and_every_mode_runs(dtype, tmp_path, one_thread):
    task = make_tasks(1, seed=0)[0]
    results = {}
    for name in (dtype, "fp32"):
        runtime = Runtime(load_model("demo", "cpu", name), cache_dir=str(tmp_path / name))
        for method_name, fast in DEMO_FAST.items():
            method = runtime.method(method_name)
            config = method.default_config(image_check=False, **fast)
            request = DragRequest(task.input_image(), task.handles, task.targets, task.mask, task.prompt, config)
            results[name, method_name] = method.edit(request).image
        if name == dtype:  # DragonDiffusion's other modes run on the demo model too
            run_dragon_modes(runtime.method("dragon"), task.input_image(), task.mask)
    agreement = {m: psnr(results[dtype, m], results["fp32", m]) for m in DEMO_FAST}
    print(f"{dtype} against fp32 on the demo model, PSNR dB: {agreement}")
    assert all(agreement[m] >= AGREEMENT_DB[m] for m in DEMO_FAST), agreement
