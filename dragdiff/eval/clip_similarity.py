"""Optional CLIP image similarity between the original and the edited image (cosine of CLIP image embeddings;
1 = the same content). Used only when a CLIP model is available locally: it is never downloaded here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DragError

# The normalisation every OpenAI CLIP checkpoint was trained with (CLIP's preprocessing, Radford et al. 2021).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipSimilarity:
    def __init__(self, model, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.device = device
        self.size = model.config.vision_config.image_size

    @classmethod
    def load(cls, spec: str | Path, device: str = "cpu") -> ClipSimilarity:
        """A transformers CLIPModel from a local folder or the local Hugging Face cache (e.g.
        openai/clip-vit-base-patch32 after `huggingface-cli download`), safetensors only."""
        from transformers import CLIPModel

        try:
            model = CLIPModel.from_pretrained(str(spec), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise DragError(
                f"CLIP model {spec!r} is not available locally ({type(exc).__name__}); download it once with "
                f"`huggingface-cli download {spec}` or give a folder, or leave out --clip-model"
            ) from exc
        return cls(model, device)

    def _pixels(self, image: Image.Image) -> torch.Tensor:
        # CLIP's own recipe: shorter side to `size` (bicubic), centre crop, normalise.
        scale = self.size / min(image.size)
        resized = image.convert("RGB").resize(
            (max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
        left, top = (resized.width - self.size) // 2, (resized.height - self.size) // 2
        array = np.asarray(resized.crop((left, top, left + self.size, top + self.size)), np.float32) / 255
        pixels = (torch.from_numpy(array) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
        return pixels.permute(2, 0, 1)

    @torch.no_grad()
    def __call__(self, original: Image.Image, edited: Image.Image) -> float:
        pixels = torch.stack([self._pixels(original), self._pixels(edited)]).to(self.device)
        embedded = self.model.get_image_features(pixel_values=pixels)
        if not torch.is_tensor(embedded):  # transformers ≥ 5 returns an output whose pooler_output is projected
            embedded = embedded.pooler_output
        return float(F.cosine_similarity(embedded[0:1].float(), embedded[1:2].float()))
