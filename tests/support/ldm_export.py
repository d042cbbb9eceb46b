"""Write a diffusers Stable Diffusion pipeline as one original-layout (CompVis/LDM) checkpoint.

Why this exists: the model loader must open single ``.safetensors`` SD checkpoints through
``StableDiffusionPipeline.from_single_file``. Tests cannot download real SD weights, so they build a tiny
random pipeline and use :func:`export_single_file` to write it in the key layout of real SD 1.x checkpoints
(``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``), or of SDXL
checkpoints for a pipeline with a second text encoder (``conditioner.embedders.0.transformer.*`` and the
OpenCLIP layout ``conditioner.embedders.1.model.*``), or of SD 2.x checkpoints (``openclip=True``: the text
encoder in the OpenCLIP layout ``cond_stage_model.model.*``).
This is the inverse of diffusers' LDM -> diffusers conversion (``diffusers/loaders/single_file_utils.py``),
so a round trip must reproduce every tensor exactly.

Everything structural is read from the models: ``layers_per_block`` and the block count from the UNet
config, which blocks carry attention / down- or up-samplers from the weights actually present, the VAE
depth from its weight names. Any weight this module does not know how to place raises ``ValueError``
instead of being dropped silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
SD2_OPENCLIP_PREFIX = "cond_stage_model.model."

# diffusers ResnetBlock2D parameter -> LDM ResBlock parameter (UNet).
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL: the pooled text and sizes
    "add_embedding.linear_2": "label_emb.0.2",
}
# diffusers CLIP encoder layer parameter -> OpenCLIP resblock parameter (q/k/v are fused into in_proj).
_OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
# diffusers VAE Attention parameter -> LDM AttnBlock parameter.
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_FIXED = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}


def _split_param(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def _unet_resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    if head not in _UNET_RESNET:
        raise ValueError(f"unknown UNet resnet parameter {rest!r}")
    return f"{_UNET_RESNET[head]}.{tail}"


def _unet_layer(stack: str, idx: int, kind: str, rest: str) -> str:
    """LDM keeps a layer's ResBlock at ``<stack>.<idx>.0``, its SpatialTransformer at ``<stack>.<idx>.1``."""
    if kind == "resnets":
        return f"{stack}.{idx}.0.{_unet_resnet(rest)}"
    return f"{stack}.{idx}.1.{rest}"


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel state dict -> LDM ``openaimodel.UNetModel`` keys (without the prefix)."""
    cfg = unet.config
    lpb = cfg.layers_per_block
    if not isinstance(lpb, int):
        if len(set(lpb)) != 1:
            raise ValueError(f"per-block layers_per_block {lpb} has no LDM single-file equivalent")
        lpb = lpb[0]
    if cfg.mid_block_type not in ("UNetMidBlock2DCrossAttn", None):
        raise ValueError(f"mid block {cfg.mid_block_type!r} has no LDM single-file equivalent")
    n_up = len(cfg.up_block_types)
    sd = unet.state_dict()
    up_has_attn = {u: any(k.startswith(f"up_blocks.{u}.attentions.") for k in sd) for u in range(n_up)}
    stride = lpb + 1  # LDM: lpb resnet(+attn) entries plus one down/upsample slot per block

    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        module, param = _split_param(key)
        if module in _UNET_FIXED:
            new = f"{_UNET_FIXED[module]}.{param}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = _unet_layer("input_blocks", 1 + b * stride + layer, kind, rest)
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{1 + int(m[1]) * stride + lpb}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_unet_resnet(m[2])}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            u, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = _unet_layer("output_blocks", u * stride + layer, kind, rest)
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            u = int(m[1])
            slot = 2 if up_has_attn[u] else 1
            new = f"output_blocks.{u * stride + lpb}.{slot}.conv.{m[2]}"
        else:
            raise ValueError(f"no LDM location for UNet weight {key!r}")
        out[new] = tensor
    if len(out) != len(sd):
        raise ValueError("UNet key mapping is not one-to-one")
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    """AutoencoderKL state dict -> LDM ``AutoencoderKL`` keys (without the prefix).

    Mid-block attention q/k/v/proj_out are written as 1x1 conv weights ``(C, C, 1, 1)`` as in the original
    SD checkpoints; diffusers' converter squeezes 4-d (and 3-d) attention weights back to linear.
    """
    sd = vae.state_dict()
    n_up = len(vae.config.up_block_types)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        module, param = _split_param(key)
        if module in _VAE_FIXED:
            new = f"{_VAE_FIXED[module]}.{param}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            level = n_up - 1 - int(m[1])  # LDM numbers decoder levels by resolution, like the encoder
            new = f"decoder.up.{level}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
            if m[2] not in _VAE_ATTN:
                raise ValueError(f"unknown VAE attention parameter {key!r}")
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}"
            if m[2] != "group_norm" and m[3] == "weight":
                tensor = tensor[:, :, None, None]  # linear -> 1x1 conv
        else:
            raise ValueError(f"no LDM location for VAE weight {key!r}")
        out[new] = tensor
    if len(out) != len(sd):
        raise ValueError("VAE key mapping is not one-to-one")
    return out


def clip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """CLIPTextModel state dict -> HF-CLIP keys as stored under ``cond_stage_model.transformer.``.

    transformers >= 5.6 flattened ``CLIPTextModel`` (no ``text_model.`` prefix); older versions have it.
    Both end up as ``text_model.<name>``, which is what SD 1.x checkpoints contain.
    """
    return {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}


def openclip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """CLIP text model state dict -> OpenCLIP keys (SD 2.x's ``cond_stage_model.model.``, SDXL's
    ``conditioner.embedders.1.model.``): q/k/v fused into ``in_proj``, and a projection (SDXL's) stored
    transposed, as OpenCLIP multiplies by it."""
    sd = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("final_layer_norm.weight"),
        "ln_final.bias": sd.pop("final_layer_norm.bias"),
    }
    if "text_projection.weight" in sd:
        out["text_projection"] = sd.pop("text_projection.weight").T
    for layer in range(text_encoder.config.num_hidden_layers):
        source, target = f"encoder.layers.{layer}.", f"transformer.resblocks.{layer}."
        for param in ("weight", "bias"):
            fused = [sd.pop(f"{source}self_attn.{p}_proj.{param}") for p in "qkv"]
            out[f"{target}attn.in_proj_{param}"] = torch.cat(fused)
            for name, ldm in _OPENCLIP_LAYER.items():
                out[f"{target}{ldm}.{param}"] = sd.pop(f"{source}{name}.{param}")
    if sd:
        raise ValueError(f"no OpenCLIP location for {sorted(sd)}")
    return out


def export_single_file(pipe, path: str | Path, openclip: bool = False) -> None:
    """Write ``pipe``'s UNet, VAE and text encoder(s) as one LDM-layout ``.safetensors`` file (SDXL's layout
    when it has a second text encoder; SD 2.x's OpenCLIP text encoder with ``openclip``)."""
    tensors: dict[str, torch.Tensor] = {}
    second = getattr(pipe, "text_encoder_2", None)
    if second is not None:
        texts = [(SDXL_CLIP_PREFIX, clip_to_ldm(pipe.text_encoder)), (SDXL_OPENCLIP_PREFIX, openclip_to_ldm(second))]
    elif openclip:
        texts = [(SD2_OPENCLIP_PREFIX, openclip_to_ldm(pipe.text_encoder))]
    else:
        texts = [(CLIP_PREFIX, clip_to_ldm(pipe.text_encoder))]
    for prefix, part in (
        (UNET_PREFIX, unet_to_ldm(pipe.unet)),
        (VAE_PREFIX, vae_to_ldm(pipe.vae)),
        *texts,
    ):
        for key, tensor in part.items():
            # clone: safetensors refuses tensors that share storage, and views must be contiguous
            tensors[prefix + key] = tensor.detach().to("cpu").clone().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
