"""Round trip: tiny diffusers SD pipeline -> LDM single file -> StableDiffusionPipeline.from_single_file."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from transformers import CLIPTextConfig, CLIPTextModel

from dragdiff.models import char_tokenizer
from tests.support.ldm_export import export_single_file, unet_to_ldm, vae_to_ldm


def tiny_pipeline(tmp_path, *, layers_per_block=1, unet_down=None, vae_channels=(8, 16, 32, 32), seed=0):
    unet_down = unet_down or (("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",))
    unet_up = tuple(t.replace("Down", "Up") for t in reversed(unet_down))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=layers_per_block,
        block_out_channels=(32, 64, 64, 64)[: len(unet_down)],
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        down_block_types=unet_down,
        up_block_types=unet_up,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        sample_size=128,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=190,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=188,
            eos_token_id=189,
            pad_token_id=189,
        )
    )
    # default inits leave norms at 1/0 and some biases at 0: randomise everything so a misplaced tensor shows
    with torch.no_grad():
        for module in (unet, vae, text_encoder):
            for p in module.parameters():
                p.copy_(torch.randn_like(p) * 0.05)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=char_tokenizer(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    bad = [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])]
    assert not bad, f"{len(bad)} tensors differ, e.g. {bad[:5]}"


def public_config(model) -> dict:
    return {k: v for k, v in json.loads(json.dumps(dict(model.config))).items() if not k.startswith("_")}


U, V = "model.diffusion_model.", "first_stage_model."
RECIPE = {}
RECIPE_KEYS = [
    U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
    U + "input_blocks.2.0.op.weight",
    U + "middle_block.1.proj_in.weight",
    U + "output_blocks.1.1.conv.weight",  # upsampler of an up block without attention
    U + "output_blocks.3.2.conv.weight",  # upsampler after a SpatialTransformer
    V + "encoder.down.1.block.0.nin_shortcut.weight",
    V + "decoder.up.3.upsample.conv.weight",
]
# layers_per_block=2, attention only in the two inner blocks, 3-level VAE
VARIANT = {
    "layers_per_block": 2,
    "unet_down": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "vae_channels": (8, 16, 32),
}
VARIANT_KEYS = [
    U + "input_blocks.2.0.in_layers.2.weight",
    U + "input_blocks.3.0.op.weight",
    U + "input_blocks.5.1.proj_out.weight",
    U + "input_blocks.6.0.op.weight",
    U + "output_blocks.2.2.conv.weight",
    U + "output_blocks.5.2.conv.weight",
    U + "output_blocks.8.0.skip_connection.weight",
    V + "decoder.up.2.upsample.conv.weight",
]
VARIANT_ABSENT = [
    U + "input_blocks.1.1.proj_in.weight",
    U + "output_blocks.8.1.proj_in.weight",
    U + "output_blocks.8.1.conv.weight",
    V + "decoder.up.0.upsample.conv.weight",
    V + "encoder.down.2.downsample.conv.weight",
]


@pytest.mark.parametrize(
    ("variant", "present", "absent"),
    [(RECIPE, RECIPE_KEYS, []), (VARIANT, VARIANT_KEYS, VARIANT_ABSENT)],
    ids=["recipe", "lpb2-vae3"],
)
def test_single_file_round_trip(tmp_path, variant, present, absent):
    pipe = tiny_pipeline(tmp_path, **variant)
    folder = tmp_path / "diffusers"
    pipe.save_pretrained(folder, safe_serialization=True)
    ckpt = tmp_path / "tiny-sd.safetensors"
    export_single_file(pipe, ckpt)

    with safe_open(str(ckpt), "pt") as f:
        keys = set(f.keys())
        q_shape = f.get_slice(V + "encoder.mid.attn_1.q.weight").get_shape()
    assert len(keys) == sum(len(m.state_dict()) for m in (pipe.unet, pipe.vae, pipe.text_encoder))
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    assert set(present) <= keys
    assert not set(absent) & keys
    assert q_shape[2:] == [1, 1]  # VAE attention stored as 1x1 convs, as in the original checkpoints

    loaded = StableDiffusionPipeline.from_single_file(
        str(ckpt),
        config=str(folder),
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
    )

    assert_same_state(pipe.unet, loaded.unet)
    assert_same_state(pipe.vae, loaded.vae)
    assert_same_state(pipe.text_encoder, loaded.text_encoder)
    assert public_config(loaded.unet) == public_config(pipe.unet)
    assert public_config(loaded.vae) == public_config(pipe.vae)
    assert loaded.tokenizer("a b").input_ids == pipe.tokenizer("a b").input_ids
    assert type(loaded.scheduler) is DDIMScheduler

    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 16, 16, generator=gen)
    context = torch.randn(1, 7, 32, generator=gen)

    def unet_out(unet):
        with torch.no_grad():
            return unet(latents, 10, encoder_hidden_states=context).sample

    want = unet_out(pipe.unet)
    # The default (mmap) load leaves tensors at 4-byte-aligned offsets inside the file mapping; CPU kernels
    # then take another SIMD path and differ in the last bits (~2e-8) although every weight is identical.
    torch.testing.assert_close(unet_out(loaded.unet), want, rtol=1e-5, atol=1e-6)
    # Copied (allocator-aligned) weights give a bit-identical forward pass.
    copied = StableDiffusionPipeline.from_single_file(
        str(ckpt), config=str(folder), local_files_only=True, disable_mmap=True
    )
    assert torch.equal(unet_out(copied.unet), want)


def test_sd15_geometry_matches_original_layout():
    """Full-size SD 1.5 shapes on the meta device: landmark keys of real v1 checkpoints must come out."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        unet = UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
    u = {k: tuple(t.shape) for k, t in unet_to_ldm(unet).items()}
    v = {k: tuple(t.shape) for k, t in vae_to_ldm(vae).items()}
    assert u["output_blocks.11.0.skip_connection.weight"] == (320, 640, 1, 1)  # diffusers' "v1" marker
    assert u["input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)  # "v2" marker: 1024
    assert u["input_blocks.9.0.op.weight"] == (1280, 1280, 3, 3)
    assert u["output_blocks.2.1.conv.weight"] == (1280, 1280, 3, 3)
    assert u["output_blocks.8.2.conv.weight"] == (640, 640, 3, 3)
    assert u["middle_block.1.proj_in.weight"] == (1280, 1280, 1, 1)
    assert v["decoder.up.0.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert v["decoder.up.3.upsample.conv.weight"] == (512, 512, 3, 3)
    assert v["encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert (len(u), len(v)) == (686, 248)
