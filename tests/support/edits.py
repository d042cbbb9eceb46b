"""What the method tests share: every method on the tiny model in a few steps, DragonDiffusion's four modes,
a red square on random texture for the fill, and the GPU tier's picture at any size."""

import numpy as np
from PIL import Image

from dragdiff import DragRequest, Point
from dragdiff.dragon import AppearanceRequest, MoveRequest, PasteRequest

FAST = {
    "dragdiffusion": dict(lora_steps=2, lora_batch_size=2, n_inference_steps=10, n_inversion_steps=7, drag_steps=3),
    "gooddrag": dict(lora_steps=2, lora_batch_size=2, drag_end_step=2, tracks_per_step=1),
    "inpaint4drag": dict(n_steps=3),
    "dragon": dict(n_steps=6),
}


def mask_box():
    mask = np.zeros((96, 128), bool)
    mask[25:75, 20:90] = True
    return mask


def dragon_requests(scene, mask):
    return {
        "move": MoveRequest(scene, mask, Point(20, 0), 1.0),
        "resize": MoveRequest(scene, mask, Point(0, 0), 1.5),
        "appearance": AppearanceRequest(scene, mask, scene.transpose(0), mask[:, ::-1].copy()),
        "paste": PasteRequest(scene, scene, mask, Point(64, 48), 0.5),
    }


def run_dragon_modes(dragon, scene, mask) -> None:
    for mode, request in dragon_requests(scene, mask).items():
        config = dragon.default_config("move" if mode == "resize" else mode, n_steps=4, image_check=False)
        assert dragon.edit(type(request)(**{**vars(request), "config": config})).image.size == scene.size, mode


def textured(height=96, width=128, seed=0):
    """Random colours everywhere: any pixel that moves or changes shows."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def square(height=96, width=128, x0=20, y0=30, side=16):
    region = np.zeros((height, width), bool)
    region[y0 : y0 + side, x0 : x0 + side] = True
    return region


def shifted(mask, dx, dy):
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    keep = (ys + dy >= 0) & (ys + dy < mask.shape[0]) & (xs + dx >= 0) & (xs + dx < mask.shape[1])
    out[ys[keep] + dy, xs[keep] + dx] = True
    return out


def red_square_request(method, **config):
    """A red square on random texture, dragged 24 px right within a region that covers both places."""
    image = textured()
    region = square(side=16)
    image[region] = (255, 0, 0)
    painted = region | shifted(region, 24, 0)
    config = method.default_config(image_check=False, **config)
    return DragRequest(Image.fromarray(image), (Point(27, 37),), (Point(51, 37),), painted, "", config), region


def drag_request(size: int, method, **config) -> DragRequest:
    """A red disc on a colour gradient, `size` px square, dragged a sixth of its width right in a painted box."""
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.stack([xx * 200 // size, yy * 150 // size + 50, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    c = size // 3
    disc = (xx - c) ** 2 + (yy - size // 2) ** 2 < (size // 8) ** 2
    image[disc] = (250, 40, 40)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : 3 * size // 4, size // 6 : 5 * size // 6] = True
    handle, target = Point(c, size // 2), Point(c + size // 6, size // 2)
    return DragRequest(Image.fromarray(image), (handle,), (target,), mask, "", method.default_config(**config))
