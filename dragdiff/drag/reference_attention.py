"""Reference-latent control: decoder self-attention of the edited branch reads keys/values of the original.

During denoising the batch is [original, edited]. In the self-attention (`attn1`) layers of the chosen decoder
blocks, queries of both items attend to the keys and values of item 0 (MasaCtrl's mutual self-attention, as
DragDiffusion's reference uses it). Item 0 is therefore computed exactly as without control.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from ..attention import attend, self_attention_names, swapped_processors


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


@contextmanager
def reference_attention(unet: UNet2DConditionModel, blocks: tuple[int, ...]) -> Iterator[int]:
    """Install ReferenceAttentionProcessor on the self-attention of `blocks`; restore the processors after.

    Yields the number of controlled layers (0 when the blocks hold no attention: then nothing changes).
    """
    processor = ReferenceAttentionProcessor()
    with swapped_processors(unet, dict.fromkeys(self_attention_names(unet, blocks), processor)) as count:
        yield count
