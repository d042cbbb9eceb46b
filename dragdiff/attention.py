"""Attention utilities every method's attention control builds on: one way to compute an attention layer's
output from given keys and values, one filter for the decoder's self-attention layers, and one context
manager that swaps processors in and always restores the UNet's own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention


def attend(
    attn: Attention,
    hidden_states: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    extra: tuple[torch.Tensor, torch.Tensor, float] | None = None,
) -> torch.Tensor:
    """The output of attention layer `attn` whose queries come from `hidden_states` (B, N, C) and whose
    keys/values are the given (B, M, C) ones, with the layer's own output projection and residual.
    extra: a second (key, value, scale) whose attention output is added, scaled (an image prompt's tokens)."""
    batch, tokens, _ = hidden_states.shape

    def split_heads(x: torch.Tensor) -> torch.Tensor:  # (B, M, C) -> (B, heads, M, C / heads)
        return x.view(batch, x.shape[1], attn.heads, -1).transpose(1, 2)

    query = split_heads(attn.to_q(hidden_states))
    out = F.scaled_dot_product_attention(query, split_heads(key), split_heads(value))
    if extra is not None:
        extra_key, extra_value, scale = extra
        out = out + scale * F.scaled_dot_product_attention(query, split_heads(extra_key), split_heads(extra_value))
    out = out.transpose(1, 2).reshape(batch, tokens, -1).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))  # linear, dropout
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


def self_attention_names(unet: UNet2DConditionModel, blocks: tuple[int, ...] | None) -> list[str]:
    """Processor names of the self-attention (`attn1`) layers in `unet.up_blocks[i]` for i in `blocks`
    (None: every decoder block)."""
    blocks = range(len(unet.up_blocks)) if blocks is None else blocks
    prefixes = tuple(f"up_blocks.{i}." for i in blocks)
    return [name for name in unet.attn_processors if name.startswith(prefixes) and ".attn1." in name]


@contextmanager
def swapped_processors(unet: UNet2DConditionModel, processors: dict[str, object]) -> Iterator[int]:
    """Install `processors` ({processor name: processor}) over the UNet's own for the `with` block and
    restore the originals after, whatever happens inside. Yields how many layers were swapped."""
    original = unet.attn_processors
    unet.set_attn_processor({name: processors.get(name, own) for name, own in original.items()})
    try:
        yield len(processors)
    finally:
        unet.set_attn_processor(original)


class ReferenceAttentionProcessor:
    """Reference-latent control (MasaCtrl's mutual self-attention, as DragDiffusion's and GoodDrag's reference
    code use it): the batch is [original, edited], and the queries of both items attend to the keys and values
    of item 0, so item 0 is computed exactly as without control."""

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
        reference = hidden_states[:1]  # (1, N, C) of the batch [original, edited]
        batch = hidden_states.shape[0]
        key = attn.to_k(reference).expand(batch, -1, -1)
        value = attn.to_v(reference).expand(batch, -1, -1)
        return attend(attn, hidden_states, key, value)


@contextmanager
def reference_attention(unet: UNet2DConditionModel, blocks: tuple[int, ...]) -> Iterator[int]:
    """ReferenceAttentionProcessor on the decoder self-attention of `blocks` for the `with` block; yields the
    number of controlled layers (0 when the blocks hold no attention: then nothing changes)."""
    processor = ReferenceAttentionProcessor()
    with swapped_processors(unet, dict.fromkeys(self_attention_names(unet, blocks), processor)) as count:
        yield count
