"""DiffEditor's optional image prompt: an IP-Adapter (CLIP image encoder + a projection to a few tokens) whose
tokens join the text in every cross-attention through their own key/value projections, weighted by a scale
that is non-zero only on some sampling steps (DiffEditor: 0.1 on steps 10-19 of 50, docs/dragondiffusion.md).

Used only when its weights are given locally; nothing downloads them. Both IP-Adapter formats load: "plus"
(a perceiver resampler over the encoder's penultimate hidden states; DiffEditor's own adapter has 64 tokens)
and the plain one (a linear map of the projected image embedding to 4 tokens). Weights are read from
safetensors only; `convert_pickle` turns a released `.bin` into one, once, on the user's request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from ..attention import attend, swapped_processors
from ..errors import DragError
from ..images import flatten

PARTS = ("image_proj", "ip_adapter")  # the two groups of an IP-Adapter file, as prefixes of its keys
HEAD_DIM = 64  # the resampler's attention head width in every released IP-Adapter (heads = width / 64)


class _PerceiverAttention(nn.Module):
    """Latent queries attend to the image features and to themselves (the perceiver resampler's layer)."""

    def __init__(self, dim: int, inner: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        features, latents = self.norm1(features), self.norm2(latents)
        key, value = self.to_kv(torch.cat([features, latents], 1)).chunk(2, -1)

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(latents)), heads(key), heads(value))
        return self.to_out(out.transpose(1, 2).flatten(2))


class Resampler(nn.Module):
    """IP-Adapter "plus": learned queries refined by perceiver layers over the image encoder's hidden states.
    Sizes are read from the weights, so any released variant (16 or 64 tokens, any width) loads."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        _, tokens, dim = weights["latents"].shape
        depth = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("layers."))
        inner = weights["layers.0.0.to_q.weight"].shape[0]
        hidden = weights["layers.0.1.1.weight"].shape[0]
        self.latents = nn.Parameter(torch.zeros(1, tokens, dim))
        self.proj_in = nn.Linear(weights["proj_in.weight"].shape[1], dim)
        self.proj_out = nn.Linear(dim, weights["proj_out.weight"].shape[0])
        self.norm_out = nn.LayerNorm(weights["proj_out.weight"].shape[0])
        self.layers = nn.ModuleList(
            nn.ModuleList([_PerceiverAttention(dim, inner, max(1, inner // HEAD_DIM)), _feed_forward(dim, hidden)])
            for _ in range(depth)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = self.proj_in(features)
        latents = self.latents.expand(features.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = latents + attention(features, latents)
            latents = latents + feed_forward(latents)
        return self.norm_out(self.proj_out(latents))


def _feed_forward(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim), nn.Linear(dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False)
    )


class TokenProjection(nn.Module):
    """Plain IP-Adapter: the projected image embedding mapped linearly to a few tokens."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        width = weights["norm.weight"].shape[0]
        self.tokens = weights["proj.weight"].shape[0] // width
        self.proj = nn.Linear(weights["proj.weight"].shape[1], width * self.tokens)
        self.norm = nn.LayerNorm(width)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(embeds).view(embeds.shape[0], self.tokens, -1))


@dataclass
class ImagePromptState:
    """What the cross-attention processors read: the image tokens of the conditional and unconditional
    branches and the scale of the current UNet call (0: the image prompt takes no part)."""

    cond: torch.Tensor  # (1, tokens, width)
    uncond: torch.Tensor
    scale: float = 0.0

    def tokens(self, batch: int) -> torch.Tensor:
        """Tokens for a batch of 1 (conditional only) or 2 ([unconditional, conditional], CFG)."""
        return self.cond if batch == 1 else torch.cat([self.uncond, self.cond])


class ImagePromptAttention:
    """Cross-attention over the text plus, scaled, attention over the image tokens with their own K/V."""

    def __init__(self, to_k: nn.Linear, to_v: nn.Linear, state: ImagePromptState):
        self.to_k, self.to_v, self.state = to_k, to_v, state

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        text = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        extra = None
        if self.state.scale:
            tokens = self.state.tokens(hidden_states.shape[0]).to(hidden_states.dtype)
            extra = (self.to_k(tokens), self.to_v(tokens), self.state.scale)
        return attend(attn, hidden_states, attn.to_k(text), attn.to_v(text), extra)


class ImagePrompt(nn.Module):
    """A loaded IP-Adapter: the image encoder, its token projection and per-cross-attention K/V layers."""

    def __init__(self, encoder, projection: nn.Module, layers: dict[int, tuple[nn.Linear, nn.Linear]], plus: bool):
        super().__init__()
        self.encoder, self.projection, self.plus = encoder, projection, plus
        self.layers = layers  # index in the UNet's processor order -> (to_k_ip, to_v_ip)
        self.kv = nn.ModuleList(m for pair in layers.values() for m in pair)  # so that .to() moves them

    @property
    def image_size(self) -> int:
        return self.encoder.config.image_size

    @torch.no_grad()
    def embed(self, images: list[Image.Image]) -> ImagePromptState:
        """Tokens of the images side by side (appearance and paste give two: base and reference); the
        unconditional tokens come from a black image (plus) or zero embeddings (plain), as IP-Adapter's are."""
        device, dtype = self.encoder.device, self.encoder.dtype
        pixels = torch.stack([_clip_pixels(image, self.image_size) for image in images]).to(device, dtype)
        cond, uncond = self._tokens(pixels), self._tokens(torch.zeros_like(pixels), blank=True)
        return ImagePromptState(cond.flatten(0, 1)[None], uncond.flatten(0, 1)[None])

    def _tokens(self, pixels: torch.Tensor, blank: bool = False) -> torch.Tensor:
        if self.plus:
            return self.projection(self.encoder(pixels, output_hidden_states=True).hidden_states[-2])
        embeds = self.encoder(pixels).image_embeds
        return self.projection(torch.zeros_like(embeds) if blank else embeds)


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalisation (OpenAI CLIP)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _clip_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """The whole image squashed to the encoder's square input and normalised (DiffEditor squashes too)."""
    square = flatten(image).resize((size, size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1).float() / 255
    return (pixels - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


@contextmanager
def image_prompt_attention(
    unet: UNet2DConditionModel, prompt: ImagePrompt, state: ImagePromptState
) -> Iterator[ImagePromptState]:
    """Install the adapter's cross-attention processors (reading `state`); restore the UNet's after."""
    names = list(unet.attn_processors)
    processors = {names[i]: ImagePromptAttention(to_k, to_v, state) for i, (to_k, to_v) in prompt.layers.items()}
    with swapped_processors(unet, processors):
        yield state


def load_image_prompt(
    adapter: str | Path, encoder: str | Path | None, unet: UNet2DConditionModel, device, dtype
) -> ImagePrompt:
    """The adapter file and image encoder folder (default: `image_encoder` beside the file, as IP-Adapter's
    releases lay them out), checked against `unet`; cached, so that a second edit does not reload them."""
    adapter = Path(adapter).expanduser()
    encoder = Path(encoder).expanduser() if encoder else adapter.parent / "image_encoder"
    if not adapter.is_file():
        raise DragError(f"image_prompt: no file at {adapter}; give the IP-Adapter .safetensors file, or null")
    if adapter.suffix != ".safetensors":
        raise DragError(
            f"image_prompt: {adapter.name} is not a .safetensors file; pickled weights are never loaded. Convert it "
            f"once with: python -m dragdiff convert-image-prompt {adapter} {adapter.with_suffix('.safetensors')}"
        )
    if not (encoder / "config.json").is_file():
        raise DragError(
            f"image_encoder: no CLIP vision model at {encoder} (a folder with config.json and model.safetensors, "
            "such as IP-Adapter's models/image_encoder); set image_encoder to its path"
        )
    widths = tuple(  # (processor index, width) of each cross-attention layer: what the file must match
        (i, unet.get_submodule(name.removesuffix(".processor")).to_q.out_features)
        for i, name in enumerate(unet.attn_processors)
        if name.endswith("attn2.processor")
    )
    return _load(str(adapter), adapter.stat().st_mtime_ns, str(encoder), widths).to(device, dtype)


@functools.lru_cache(maxsize=1)
def _load(adapter: str, mtime: int, encoder: str, widths: tuple[tuple[int, int], ...]) -> ImagePrompt:
    from transformers import CLIPVisionModelWithProjection

    parts = _read_parts(Path(adapter))
    projection_weights = parts["image_proj"]
    plus = "latents" in projection_weights
    if not plus and "proj.weight" not in projection_weights:
        raise DragError(f"image_prompt: {adapter} holds an image projection of a kind dragdiff does not know")
    projection = Resampler(projection_weights) if plus else TokenProjection(projection_weights)
    projection.load_state_dict(projection_weights)
    try:
        encoder_model = CLIPVisionModelWithProjection.from_pretrained(encoder, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise DragError(f"image_encoder: cannot load a CLIP vision model from {encoder}: {exc}") from exc
    layers = _cross_attention_layers(parts["ip_adapter"], dict(widths), adapter)
    return ImagePrompt(encoder_model.eval(), projection.eval(), layers, plus)


def _cross_attention_layers(weights, widths: dict[int, int], adapter: str):
    """{processor index: (to_k_ip, to_v_ip)}; the file numbers layers by the UNet's processor order."""
    indices = sorted({int(key.split(".")[0]) for key in weights})
    if indices != sorted(widths):
        raise DragError(
            f"image_prompt: {adapter} has image layers at processor positions {indices}, but this model's "
            f"cross-attention is at {sorted(widths)}: the adapter was made for another base model"
        )
    layers = {}
    for index in indices:
        pair = []
        for name in ("to_k_ip", "to_v_ip"):
            weight = weights[f"{index}.{name}.weight"]
            if weight.shape[0] != widths[index]:
                raise DragError(
                    f"image_prompt: {adapter} layer {index} is {weight.shape[0]} wide, the model's is "
                    f"{widths[index]}: the adapter was made for another base model"
                )
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            linear.weight.data.copy_(weight)
            pair.append(linear)
        layers[index] = tuple(pair)
    return layers


def _read_parts(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    try:
        flat = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise DragError(f"image_prompt: cannot read {path}: {exc}") from exc
    parts = {part: {k[len(part) + 1 :]: v for k, v in flat.items() if k.startswith(part + ".")} for part in PARTS}
    missing = [part for part in PARTS if not parts[part]]
    if missing:
        raise DragError(f"image_prompt: {path} is not an IP-Adapter file (no {' or '.join(missing)} weights)")
    return parts


def convert_pickle(source: str | Path, target: str | Path) -> Path:
    """A released IP-Adapter `.bin` ({"image_proj": ..., "ip_adapter": ...}) as one safetensors file with
    "image_proj." / "ip_adapter." key prefixes. torch's weights-only unpickler reads tensors and plain
    containers only, so the file cannot run code; the user asks for this once, explicitly."""
    source, target = Path(source), Path(target)
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DragError(f"cannot read {source} as IP-Adapter weights: {exc}") from exc
    if not isinstance(data, dict) or any(not isinstance(data.get(part), dict) for part in PARTS):
        raise DragError(f"{source} is not an IP-Adapter file (expected image_proj and ip_adapter weights)")
    flat = {f"{part}.{k}": v.contiguous() for part in PARTS for k, v in data[part].items()}
    save_file(flat, target)
    return target
