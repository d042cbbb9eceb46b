"""Reference-latent control: decoder self-attention of the edited branch reads keys/values of the original.

During denoising the batch is [original, edited]. In the self-attention (`attn1`) layers of the chosen decoder
blocks, queries of both items attend to the keys and values of item 0 (MasaCtrl's mutual self-attention, as
DragDiffusion's reference uses it). Item 0 is therefore computed exactly as without control.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention


class ReferenceAttentionProcessor:
    """Self-attention where every item of the batch uses the keys/values of item 0."""

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


def self_attention_names(unet: UNet2DConditionModel, blocks: tuple[int, ...]) -> list[str]:
    """Processor names of the self-attention layers in `unet.up_blocks[i]` for i in `blocks`."""
    prefixes = tuple(f"up_blocks.{i}." for i in blocks)
    return [name for name in unet.attn_processors if name.startswith(prefixes) and ".attn1." in name]


@contextmanager
def reference_attention(unet: UNet2DConditionModel, blocks: tuple[int, ...]) -> Iterator[int]:
    """Install ReferenceAttentionProcessor on the self-attention of `blocks`; restore the processors after.

    Yields the number of controlled layers (0 when the blocks hold no attention: then nothing changes).
    """
    original = unet.attn_processors
    controlled = set(self_attention_names(unet, blocks))
    processor = ReferenceAttentionProcessor()
    unet.set_attn_processor({n: processor if n in controlled else p for n, p in original.items()})
    try:
        yield len(controlled)
    finally:
        unet.set_attn_processor(original)
