"""The memory bank: the original's decoder self-attention keys and values, recorded during DDIM inversion and
read back while the edit is sampled, so that what the edit does not touch keeps the original's look.

One `MemoryControl` drives every controlled layer. Its `mode` says what the layers do at the current step:
  off      plain self-attention
  record   plain self-attention, storing K/V of the (single) latent under (timestep, layer)
  replace  K/V := the stored ones (move: the object finds its appearance at the old place)
  concat   K/V := [live; stored] (drag)
  mix      K/V := stored base tokens outside the base mask + stored reference tokens inside the reference mask
           (appearance replacement and paste)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from ..attention import attend, self_attention_names, swapped_processors

MODES = ("off", "record", "replace", "concat", "mix")


@dataclass
class MemoryBank:
    """K/V per (timestep, layer name), each (1, tokens, channels), on `device`."""

    device: torch.device | None = None  # None: keep where computed
    entries: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def put(self, timestep: int, layer: str, key: torch.Tensor, value: torch.Tensor) -> None:
        move = (lambda x: x.detach().to(self.device)) if self.device else (lambda x: x.detach())
        self.entries[(timestep, layer)] = (move(key), move(value))

    def get(self, timestep: int, layer: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key, value = self.entries[(timestep, layer)]
        return key.to(like.device, like.dtype), value.to(like.device, like.dtype)

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.entries.values())


@dataclass
class MemoryControl:
    """Shared state of all controlled layers: the mode, the current timestep and the banks to read."""

    bank: MemoryBank
    mode: str = "off"
    timestep: int = 0
    reference: MemoryBank | None = None  # mix: the reference image's bank
    base_mask: torch.Tensor | None = None  # mix: (h, w) bool on the latent grid, True = the edited region
    reference_mask: torch.Tensor | None = None  # mix: (h, w) bool, True = the reference object

    def keys_values(self, layer: str, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The K/V this layer attends to, given its live ones (B, N, C)."""
        if self.mode == "record":
            self.bank.put(self.timestep, layer, key[:1], value[:1])
        if self.mode in ("off", "record"):
            return key, value
        stored_key, stored_value = self.bank.get(self.timestep, layer, key)
        batch = key.shape[0]
        if self.mode == "replace":
            return stored_key.expand(batch, -1, -1), stored_value.expand(batch, -1, -1)
        if self.mode == "concat":
            return torch.cat([key, stored_key.expand(batch, -1, -1)], 1), torch.cat(
                [value, stored_value.expand(batch, -1, -1)], 1
            )
        if self.mode == "mix":
            ref_key, ref_value = self.reference.get(self.timestep, layer, key)
            keep = token_mask(self.base_mask, key.shape[1], invert=True)
            take = token_mask(self.reference_mask, key.shape[1])
            mixed_key = torch.cat([stored_key[:, keep], ref_key[:, take]], 1)
            mixed_value = torch.cat([stored_value[:, keep], ref_value[:, take]], 1)
            return mixed_key.expand(batch, -1, -1), mixed_value.expand(batch, -1, -1)
        raise ValueError(f"memory mode {self.mode!r} is not one of {MODES}")


def token_mask(mask: torch.Tensor, tokens: int, invert: bool = False) -> torch.Tensor:
    """A latent-grid (h, w) mask at the resolution of a layer with `tokens` = (h/f)·(w/f) tokens, flattened.
    A cell counts when any of it is inside; never empty (an empty selection would leave nothing to attend to)."""
    height, width = mask.shape
    factor = 1
    while -(-height // factor) * -(-width // factor) > tokens:
        factor *= 2
    size = (-(-height // factor), -(-width // factor))
    pooled = F.adaptive_max_pool2d(mask[None, None].float(), size)[0, 0] > 0
    selected = (~pooled if invert else pooled).flatten()
    return selected if selected.any() else torch.ones_like(selected)


class MemoryAttentionProcessor:
    """Self-attention whose keys/values come from `control.keys_values` (plain attention when mode is off)."""

    def __init__(self, layer: str, control: MemoryControl):
        self.layer, self.control = layer, control

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
        key, value = self.control.keys_values(self.layer, attn.to_k(hidden_states), attn.to_v(hidden_states))
        return attend(attn, hidden_states, key, value)


def bank_bytes(unet: UNet2DConditionModel, blocks, latent_size: tuple[int, int], steps: int, dtype) -> int:
    """Bytes a memory bank of one image will hold: K and V of every controlled layer at every step.
    Decoder block i runs at the latent size divided by 2^(blocks - 1 - i)."""
    total, count = 0, len(unet.up_blocks)
    for name in self_attention_names(unet, blocks):
        index = int(name.split(".")[1])
        factor = 2 ** (count - 1 - index)
        tokens = -(-latent_size[0] // factor) * -(-latent_size[1] // factor)
        attention = unet.get_submodule(name.removesuffix(".processor"))
        total += 2 * tokens * attention.to_k.out_features
    return total * steps * torch.tensor([], dtype=dtype).element_size()


@contextmanager
def memory_attention(
    unet: UNet2DConditionModel, control: MemoryControl, blocks: tuple[int, ...] | None
) -> Iterator[int]:
    """Install the memory-bank processor on the decoder self-attention; restore the processors after.
    Yields the number of controlled layers."""
    names = self_attention_names(unet, blocks)
    with swapped_processors(unet, {n: MemoryAttentionProcessor(n, control) for n in names}) as count:
        yield count
