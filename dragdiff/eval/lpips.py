"""LPIPS (Zhang et al. 2018, AlexNet variant v0.1) for DragBench's Image Fidelity, IF = 1 − LPIPS, written
here so that no torchvision is needed. The weights are the published ones, converted once to safetensors by
scripts/convert_lpips_weights.py; they are never downloaded at run time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from ..errors import DragError

CHANNELS = (64, 192, 384, 256, 256)  # AlexNet's five ReLU outputs that LPIPS compares
TAPS = (1, 4, 7, 9, 11)  # their indices in torchvision's `features` Sequential, whose key names we keep
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)  # LPIPS' input scaling layer
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
FILES = ("alexnet.safetensors", "lpips_alex_v0.1.safetensors")


def weights_dir() -> Path:
    return Path(os.environ.get("DRAGDIFF_LPIPS_DIR", Path.home() / ".cache" / "dragdiff" / "lpips"))


class _Linear(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """Distance between images: channel-normalised AlexNet activations, squared differences weighted per
    channel by learned 1×1 layers, averaged over space and summed over the five layers."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        for i, channels in enumerate(CHANNELS):
            self.add_module(f"lin{i}", _Linear(channels))
        self.eval().requires_grad_(False)

    @classmethod
    def pretrained(cls, folder: Path | None = None) -> LPIPS:
        folder = folder or weights_dir()
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise DragError(
                f"LPIPS weights {missing} are not in {folder}. Image Fidelity needs AlexNet's ImageNet weights "
                "(torchvision's alexnet-owt-7be5be79.pth) and LPIPS' linear layers (alex.pth, v0.1, from the lpips "
                f"package); convert them once with `python scripts/convert_lpips_weights.py ALEXNET.pth ALEX.pth "
                f"--out {folder}` (or set DRAGDIFF_LPIPS_DIR)."
            )
        model = cls()
        state = {**load_file(folder / FILES[0]), **load_file(folder / FILES[1])}
        model.load_state_dict(state)
        return model

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (B, 3, H, W) in [-1, 1] -> (B,) distances."""
        total = 0.0
        for i, (fa, fb) in enumerate(zip(self._taps(a), self._taps(b), strict=True)):
            diff = (F.normalize(fa, dim=1, eps=1e-10) - F.normalize(fb, dim=1, eps=1e-10)) ** 2
            total = total + getattr(self, f"lin{i}").model(diff).mean(dim=(1, 2, 3))
        return total

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, taps = (x - SHIFT) / SCALE, []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                taps.append(x)
        return taps


def image_fidelity(model: LPIPS, source: Image.Image, edited: Image.Image) -> tuple[float, float]:
    """(IF, LPIPS) of two images, both resized to 224×224 as the DragBench reference does."""

    def tensor(image: Image.Image) -> torch.Tensor:
        array = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), np.float32)
        return torch.from_numpy(array / 127.5 - 1).permute(2, 0, 1)[None]

    distance = float(model(tensor(source), tensor(edited))[0])
    return 1 - distance, distance
