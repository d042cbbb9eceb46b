import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from dragdiff.cache import TensorCache
from dragdiff.lora import attach_lora, detach_lora, train_lora
from dragdiff.models import load_model
from dragdiff.pixels import image_to_tensor


def denoising_loss(model, latent, text, seed=123, n=16):
    """Mean ε-prediction error over fixed timesteps and noise: what the LoRA is trained to lower."""
    schedule = DDIMScheduler.from_config(model.scheduler_config)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *latent.shape[1:]), generator=generator)
    t = torch.linspace(50, 950, n).long()
    with torch.no_grad():
        prediction = model.unet(
            schedule.add_noise(latent.expand(n, -1, -1, -1), noise, t), t, encoder_hidden_states=text.expand(n, -1, -1)
        ).sample
    return float(F.mse_loss(prediction, noise))


def test_training_lowers_the_denoising_loss_on_the_image(scene):
    model = load_model("tiny", device="cpu")  # its own copy: the adapter stays attached after training
    pixels = image_to_tensor(scene, (128, 96))
    text = model.encode_prompt("a red disc")
    latent = model.encode_image(pixels)
    before = denoising_loss(model, latent, text)
    train_lora(model, pixels, text, steps=30, rank=16, lr=1e-3, batch_size=4, seed=0)
    after = denoising_loss(model, latent, text)
    print(f"denoising loss before/after 30 LoRA steps: {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before
    detach_lora(model.unet)
    assert abs(denoising_loss(model, latent, text) - before) < 1e-6  # removing it restores the base exactly


def test_saved_adapter_reloads_to_identical_outputs(scene, tmp_path):
    model = load_model("tiny", device="cpu")
    pixels = image_to_tensor(scene, (128, 96))
    text = model.encode_prompt("")
    weights = train_lora(model, pixels, text, steps=3, rank=4, lr=1e-3, batch_size=2, seed=0)
    latent = model.encode_image(pixels)
    trained = denoising_loss(model, latent, text)

    cache = TensorCache(tmp_path)
    cache.save("lora", "k", weights)
    fresh = load_model("tiny", device="cpu")
    attach_lora(fresh.unet, 4, cache.load("lora", "k"))
    assert denoising_loss(fresh, latent, text) == trained


def test_a_damaged_cache_entry_is_a_miss(tmp_path):
    cache = TensorCache(tmp_path)
    path = cache.save("lora", "k", {"w": torch.ones(3)})
    path.write_bytes(path.read_bytes()[:20])  # truncated, as after a crash mid-write of a non-atomic writer
    assert cache.load("lora", "k") is None and not path.exists()
