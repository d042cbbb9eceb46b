"""Quality checks of the demo model on held-out scenes: autoencoder PSNR, prompt-colour accuracy of
text-to-image samples, and the PSNR of DDIM inversion followed by denoising. Used by its tests and model card."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..drag import DragConfig
from ..generate import generate
from ..models import DiffusionModel
from ..pixels import image_to_tensor, tensor_to_image
from ..shapes import COLORS, KINDS, Background, Scene, Shape, random_scene
from .metrics import psnr

if TYPE_CHECKING:
    from ..drag.method import DragDiffusion

HELD_OUT_SEED = 777  # training draws scenes from seeds 0 and 1; these scenes are never seen
CONTRAST_BACKGROUNDS = ("white", "gray", "black")


def held_out_scenes(count: int, size: int = 128) -> list[Scene]:
    rng = random.Random(HELD_OUT_SEED)
    return [random_scene(rng, (size, size)) for _ in range(count)]


@torch.no_grad()
def reconstruct(model: DiffusionModel, image: Image.Image) -> Image.Image:
    """VAE encode (posterior mean) and decode."""
    return tensor_to_image(model.decode(model.encode_image(image_to_tensor(image, image.size))), image.size)


def vae_psnr(model: DiffusionModel, count: int = 50) -> float:
    """Mean PSNR (dB) of VAE reconstructions of `count` held-out scenes at the model's resolution."""
    scenes = held_out_scenes(count, model.native_resolution)
    return float(np.mean([psnr(reconstruct(model, s.render()), s.render()) for s in scenes]))


def colour_prototypes(model: DiffusionModel) -> dict[str, np.ndarray]:
    """Each named colour as the model's own VAE reproduces it: the mean reconstructed RGB inside a large disc
    of that colour (calibrates the colour test to what the decoder can output)."""
    size = model.native_resolution
    prototypes = {}
    for name, rgb in COLORS.items():
        backdrop = "black" if name == "white" else "white"
        scene = Scene(
            Background("plain", backdrop, COLORS[backdrop], COLORS[backdrop]),
            (Shape("circle", name, rgb, (size / 2, size / 2), size / 3),),
            (size, size),
        )
        inside = scene.shape_mask(0) & np.roll(scene.shape_mask(0), 4, axis=0) & np.roll(scene.shape_mask(0), -4, 1)
        prototypes[name] = np.asarray(reconstruct(model, scene.render()), np.float64)[inside].mean(0)
    return prototypes


def dominant_colour(image: Image.Image, background: np.ndarray, prototypes: dict[str, np.ndarray]) -> str | None:
    """The named colour of most pixels that are not background (nearest prototype), or None if nothing is drawn."""
    pixels = np.asarray(image, np.float64).reshape(-1, 3)
    foreground = pixels[np.linalg.norm(pixels - background, axis=1) > 60]
    if len(foreground) < 0.01 * len(pixels):
        return None
    names = list(prototypes)
    distances = np.stack([np.linalg.norm(foreground - prototypes[n], axis=1) for n in names], axis=1)
    return names[int(np.bincount(distances.argmin(1), minlength=len(names)).argmax())]


def colour_accuracy(
    model: DiffusionModel, count: int = 40, seed: int = 0, guidance: float = 4.0, steps: int = 30
) -> tuple[float, list[Image.Image], list[str]]:
    """Share of samples of "a <colour> <shape> on a <background> background" whose dominant shape colour is the
    prompt's. Backgrounds are white, gray or black so the shape's pixels separate cleanly."""
    rng = random.Random(seed)
    prototypes = colour_prototypes(model)
    prompts, wanted, backdrops = [], [], []
    for _ in range(count):
        backdrop = rng.choice(CONTRAST_BACKGROUNDS)
        colour = rng.choice([c for c in COLORS if c not in CONTRAST_BACKGROUNDS])
        article = "an" if colour[0] in "aeiou" else "a"
        prompts.append(f"{article} {colour} {rng.choice(KINDS)} on a {backdrop} background")
        wanted.append(colour)
        backdrops.append(prototypes[backdrop])
    images = []
    for start in range(0, count, 10):
        images += generate(model, prompts[start : start + 10], steps=steps, guidance=guidance, seed=seed + start)
    hits = [dominant_colour(im, bg, prototypes) == c for im, bg, c in zip(images, backdrops, wanted, strict=True)]
    return float(np.mean(hits)), images, prompts


def inversion_psnr(engine: DragDiffusion, count: int = 10, config: DragConfig | None = None) -> float:
    """Mean PSNR of DDIM inversion then denoising (no edit) against the input, on held-out scenes."""
    config = config or engine.default_config()
    scenes = held_out_scenes(count, engine.model.native_resolution)
    return float(np.mean([psnr(engine.reconstruct(s.render(), s.caption(), config), s.render()) for s in scenes]))
