"""Refactoring guard: a fixed set of edits (DragDiffusion and every DragonDiffusion mode, on the tiny and the
demo model, fixed seeds) must give the same pixels as when tests/behaviour_hashes.json was recorded.

Record again only for a change that is meant to alter results, and say so in the commit:
    OMP_NUM_THREADS=1 python tests/test_behaviour_unchanged.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HASHES = Path(__file__).with_name("behaviour_hashes.json")
# The model's own output (preserve_unmasked off): what the refactor had to keep, before compositing existed.
DRAG_FAST = dict(lora_steps=2, lora_batch_size=2, n_inference_steps=10, n_inversion_steps=7, drag_steps=4)
DRAG_FAST |= dict(preserve_unmasked=False)
DRAGON_FAST = dict(n_steps=6, preserve_unmasked=False)
CASES = [
    ("tiny", "dragdiffusion"),
    ("demo", "dragdiffusion"),
    *[("tiny", mode) for mode in ("move", "resize", "drag", "appearance", "paste")],
    *[("demo", mode) for mode in ("move", "drag")],
]


def scene() -> Image.Image:
    yy, xx = np.mgrid[0:96, 0:128]
    image = np.stack([xx / 127 * 200, yy / 95 * 150 + 50, np.full_like(xx, 90.0)], axis=-1)
    image[(xx - 40) ** 2 + (yy - 48) ** 2 < 15**2] = (250, 40, 40)
    return Image.fromarray(image.astype(np.uint8))


def disc() -> np.ndarray:
    yy, xx = np.mgrid[0:96, 0:128]
    return (xx - 40) ** 2 + (yy - 48) ** 2 < 17**2


def edit(model_name: str, kind: str, cache: Path) -> Image.Image:
    """The edit of one case through the public Python API."""
    from dragdiff import DragRequest, Point
    from dragdiff.drag.method import DragDiffusion
    from dragdiff.dragon import AppearanceRequest, ContentDragRequest, DragonDiffusion, MoveRequest, PasteRequest
    from dragdiff.models import load_model

    engine = DragDiffusion(load_model(model_name, device="cpu"), cache_dir=str(cache))
    image, mask = scene(), disc()
    handles, targets = (Point(40, 48),), (Point(64, 50),)
    if kind == "dragdiffusion":
        config = engine.default_config(**DRAG_FAST)
        return engine.edit(DragRequest(image, handles, targets, mask, "a red disc", config)).image
    editor = DragonDiffusion(engine.runtime)
    mode = "move" if kind == "resize" else kind
    config = editor.default_config(mode, **DRAGON_FAST)
    reference = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    reference_mask = mask[:, ::-1].copy()
    request = {
        "move": lambda: MoveRequest(image, mask, Point(20, 4), 1.0, "a red disc", config),
        "resize": lambda: MoveRequest(image, mask, Point(0, 0), 1.4, "a red disc", config),
        "drag": lambda: ContentDragRequest(image, handles, targets, mask, "a red disc", config),
        "appearance": lambda: AppearanceRequest(image, mask, reference, reference_mask, "", "", config),
        "paste": lambda: PasteRequest(image, reference, reference_mask, Point(70, 40), 0.8, "", "", config),
    }[kind]()
    return editor.edit(request).image


def digest(image: Image.Image) -> str:
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


@pytest.mark.parametrize(("model_name", "kind"), CASES)
def test_edit_gives_the_recorded_pixels(model_name, kind, tmp_path, one_thread):
    expected = json.loads(HASHES.read_text())[f"{model_name}/{kind}"]
    assert digest(edit(model_name, kind, tmp_path)) == expected


if __name__ == "__main__":
    import tempfile

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory() as folder:
        hashes = {f"{m}/{k}": digest(edit(m, k, Path(folder) / f"{m}-{k}")) for m, k in CASES}
    HASHES.write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n")
    print(json.dumps(hashes, indent=2))
