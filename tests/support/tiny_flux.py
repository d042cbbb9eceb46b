"""A tiny FLUX.1 Fill built offline with seeded random weights, saved as diffusers saves the real one
(black-forest-labs/FLUX.1-Fill-dev): the same components and classes, every size cut down.

The real one's channel arithmetic is kept, since the fill depends on it: a 16-channel latent packed into 2x2
patches (64 channels), and the transformer reading latent + masked-image latent + the mask packed per 8x8
pixels of each patch (64 + 64 + 256 = 384 input channels), so the autoencoder has the real 8x factor (four
blocks). The T5 tokenizer is a small unigram one built here: the real one is a download."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

from dragdiff.models import char_tokenizer

WIDTH = 32  # both text encoders' width: the transformer's joint and pooled text widths


def t5_tokenizer() -> T5Tokenizer:
    """Printable ASCII characters, alone and word-initial, as unigram pieces."""
    chars = [chr(c) for c in range(33, 127)]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("\u2581" + c, -3.5) for c in chars]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def tiny_flux_pipeline(fill: bool = True, seed: int = 0) -> FluxFillPipeline:
    """FLUX.1 Fill, or with `fill=False` a plain FLUX.1 transformer (64 input channels: the latent alone)."""
    torch.manual_seed(seed)
    tokenizer_2 = t5_tokenizer()
    t5 = T5Config(vocab_size=len(tokenizer_2), d_model=WIDTH, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    clip = CLIPTextConfig(
        vocab_size=190,  # char_tokenizer's
        hidden_size=WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=188,
        eos_token_id=189,
        pad_token_id=189,
    )
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,  # FLUX.1's autoencoder's
        shift_factor=0.1159,
    )
    transformer = FluxTransformer2DModel(
        in_channels=384 if fill else 64,
        out_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=WIDTH,
        pooled_projection_dim=WIDTH,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    return FluxFillPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=vae,
        text_encoder=CLIPTextModel(clip),
        tokenizer=char_tokenizer(),
        text_encoder_2=T5EncoderModel(t5),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def save_tiny_flux(folder: Path, fill: bool = True) -> Path:
    tiny_flux_pipeline(fill).save_pretrained(folder, safe_serialization=True)
    return folder
