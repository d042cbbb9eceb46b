"""Train dragdiff's bundled demo model from scratch on procedurally generated shape scenes.

    python scripts/train_demo_model.py vae  --minutes 20      # 1. the autoencoder (4x, 128 px -> 32x32 latents)
    python scripts/train_demo_model.py unet --minutes 60      # 2. UNet + text encoder (resumable, run again)
    python scripts/demo_model_card.py                         # 3. evaluate and write the model card

Every stage writes the model folder (a diffusers folder, fp16 safetensors) at least every --checkpoint-minutes,
so an interrupted run loses at most that much. Training resumes from the folder's weights (a fresh optimiser
with a short warm-up) or, on the same machine, from the full state kept in --state (never committed).
Settings follow the measurements in docs/measurements.md §9 (2-core CPU): a 4x VAE (16, 32, 32) on 64-px crops reaches
~29 dB in ~11 min at lr 5e-4; a (32, 64, 64) UNet with a word-level text encoder learns colours and shapes.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dragdiff.shapes import BACKGROUND_KINDS, COLORS, KINDS, random_scene  # noqa: E402

RESOLUTION = 128
TEXT_LENGTH = 32  # longest caption ≈ 20 tokens; 32 keeps cross-attention cheap
SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
    block_out_channels=(16, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    sample_size=RESOLUTION,
)
UNET_CONFIG = dict(
    sample_size=RESOLUTION // 4,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 64, 64),
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=8,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
WORDS = sorted({*COLORS, *KINDS, *BACKGROUND_KINDS, "a", "an", "and", "on", "background", ","})


# -- data --------------------------------------------------------------------------------------------------


def scene_batch(rng: random.Random, batch: int, drop_caption: float = 0.0) -> tuple[torch.Tensor, list[str]]:
    """(B, 3, 128, 128) in [-1, 1] and captions ('' with probability `drop_caption`, for guidance)."""
    scenes = [random_scene(rng, (RESOLUTION, RESOLUTION)) for _ in range(batch)]
    pixels = np.stack([np.asarray(s.render(), np.float32) for s in scenes]) / 127.5 - 1
    captions = ["" if rng.random() < drop_caption else s.caption() for s in scenes]
    return torch.from_numpy(pixels).permute(0, 3, 1, 2), captions


def random_crops(pixels: torch.Tensor, size: int, rng: random.Random) -> torch.Tensor:
    top, left = rng.randint(0, pixels.shape[2] - size), rng.randint(0, pixels.shape[3] - size)
    return pixels[:, :, top : top + size, left : left + size]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of tensors in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


# -- the tokenizer ------------------------------------------------------------------------------------------


def word_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges build every caption word into one token (other text falls back to
    characters). Merge chains of different words can break each other; words that come out split get their
    chains moved to the front until every word is whole."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = chars + [c + "</w>" for c in chars]
    chains = {w: _merge_chain(w) for w in WORDS}
    merges = list(dict.fromkeys(m for w in sorted(WORDS, key=len, reverse=True) for m in chains[w]))
    vocab += [m.replace(" ", "") for m in merges if m.replace(" ", "") not in vocab]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    for _ in range(len(WORDS)):
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=TEXT_LENGTH)
        split = [w for w in WORDS if len(tokenizer(w).input_ids) != 3]
        if not split:
            return tokenizer
        merges = list(dict.fromkeys([m for w in split for m in chains[w]] + merges))
    raise RuntimeError(f"could not make these words single tokens: {split}")


def _merge_chain(word: str) -> list[str]:
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    chain, current = [], pieces[0]
    for piece in pieces[1:]:
        chain.append(f"{current} {piece}")
        current += piece
    return chain


# -- the folder ---------------------------------------------------------------------------------------------


def save_folder(out: Path, vae: AutoencoderKL, unet=None, text_encoder=None, tokenizer=None) -> None:
    """Write the diffusers folder with fp16 weights; parts not given are left as they are on disk."""
    out.mkdir(parents=True, exist_ok=True)
    for name, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
        if module is not None:
            half = copy.deepcopy(module).to(torch.float16)
            half.save_pretrained(out / name, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out / "tokenizer")
    DDIMScheduler(**SCHEDULE).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def load_float(cls, folder: Path):
    return cls.from_pretrained(folder, use_safetensors=True).float() if (folder / "config.json").is_file() else None


# -- stage 1: the VAE ---------------------------------------------------------------------------------------


def train_vae(args) -> None:
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    vae = load_float(AutoencoderKL, args.out / "vae") or AutoencoderKL(**VAE_CONFIG)
    if args.decoder_only:  # keep the latent space the UNet was trained on; improve only the reconstruction
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr or 5e-4, weight_decay=0.0)
    held_out = scene_batch(random.Random(10_000), 50)[0]
    start = last_save = time.time()
    step = 0
    while _keep_going(step, start, args):
        pixels = random_crops(scene_batch(rng, args.batch or 16)[0], 64, rng)
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.l1_loss(recon, pixels) + 0.5 * F.mse_loss(recon, pixels) + 1e-6 * posterior.kl().mean()
        lr_scale = min(1.0, (step + 1) / 100)  # warm-up, also after resuming
        for group in optimizer.param_groups:
            group["lr"] = (args.lr or 5e-4) * lr_scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if time.time() - last_save > args.checkpoint_minutes * 60 or not _keep_going(step, start, args):
            if not args.decoder_only:
                vae.register_to_config(scaling_factor=latent_scale(vae))  # saved in config.json
            save_folder(args.out, vae)
            last_save = time.time()
            log(
                args,
                {
                    "stage": "vae",
                    "step": step,
                    "minutes": round((time.time() - start) / 60, 1),
                    "loss": round(float(loss.detach()), 4),
                    "held_out_psnr": round(vae_psnr(vae, held_out), 2),
                    "scaling_factor": round(vae.config.scaling_factor, 4),
                    "decoder_only": args.decoder_only,
                },
            )


@torch.no_grad()
def vae_psnr(vae: AutoencoderKL, pixels: torch.Tensor) -> float:
    vae.eval()
    recon = torch.cat([vae.decode(vae.encode(p).latent_dist.mean).sample for p in pixels.split(10)])
    vae.train()
    return float(psnr(recon, pixels).mean())


@torch.no_grad()
def latent_scale(vae: AutoencoderKL) -> float:
    """1 / std of the posterior means over 64 scenes, so that scaled latents have unit variance (SD's 0.18215
    was computed the same way for SD's VAE and would be wrong here)."""
    pixels = scene_batch(random.Random(20_000), 64)[0]
    vae.eval()
    latents = torch.cat([vae.encode(p).latent_dist.mean for p in pixels.split(16)])
    vae.train()
    return float(1 / latents.std())


# -- stage 2: the UNet and text encoder ----------------------------------------------------------------------


def train_unet(args) -> None:
    rng = random.Random(args.seed + 1)
    torch.manual_seed(args.seed + 1)
    vae = load_float(AutoencoderKL, args.out / "vae")
    if vae is None:
        raise SystemExit(f"train the VAE first: no {args.out / 'vae'}")
    vae.requires_grad_(False).eval()
    tokenizer = word_tokenizer(Path(tempfile.mkdtemp()))
    unet = load_float(UNet2DConditionModel, args.out / "unet") or UNet2DConditionModel(**UNET_CONFIG)
    text_encoder = load_float(CLIPTextModel, args.out / "text_encoder") or CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=TEXT_LENGTH,
            projection_dim=64,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
    )
    models = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder}).train()
    ema = copy.deepcopy(models).requires_grad_(False)
    lr = args.lr or 3e-4
    optimizer = torch.optim.AdamW(models.parameters(), lr=lr, weight_decay=1e-2)
    state_file = args.state / "unet_state.safetensors"
    step = _resume(state_file, models, ema, optimizer) or _logged_steps(args.out, "unet")
    schedule = DDIMScheduler(**SCHEDULE)
    scale = vae.config.scaling_factor
    start = last_save = time.time()
    first = step
    while _keep_going(step - first, start, args):
        pixels, captions = scene_batch(rng, args.batch or 32, drop_caption=0.1)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * scale
        ids = tokenizer(
            captions, padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="pt"
        ).input_ids
        noise = torch.randn_like(latents)
        if args.offset_noise:  # a per-image, per-channel shift: see --offset-noise
            noise = noise + args.offset_noise * torch.randn(latents.shape[0], latents.shape[1], 1, 1)
        t = torch.randint(0, 1000, (latents.shape[0],))
        prediction = unet(schedule.add_noise(latents, noise, t), t, encoder_hidden_states=text_encoder(ids)[0]).sample
        loss = (
            F.mse_loss(prediction, noise, reduction="none").mean((1, 2, 3)) * _min_snr_weight(schedule, t, args)
        ).mean()
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step - first + 1) / 200)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        optimizer.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), models.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        if step % 50 == 0:
            print(
                json.dumps(
                    {
                        "stage": "unet",
                        "step": step,
                        "loss": round(float(loss.detach()), 4),
                        "minutes": round((time.time() - start) / 60, 1),
                    }
                ),
                flush=True,
            )
        if time.time() - last_save > args.checkpoint_minutes * 60 or not _keep_going(step - first, start, args):
            save_folder(args.out, vae, ema["unet"], ema["text_encoder"], tokenizer)
            _save_state(state_file, models, ema, optimizer, step)
            last_save = time.time()
            log(
                args,
                {
                    "stage": "unet",
                    "checkpoint": step,
                    "minutes": round((time.time() - start) / 60, 1),
                    "loss": round(float(loss.detach()), 4),
                    "batch": args.batch or 32,
                    "offset_noise": args.offset_noise,
                    "snr_gamma": args.snr_gamma,
                },
            )


def _min_snr_weight(schedule: DDIMScheduler, t: torch.Tensor, args) -> torch.Tensor:
    """Min-SNR-γ loss weights for ε-prediction, min(SNR, γ) / SNR (Hang et al. 2023): the nearly-clean steps,
    whose loss dominates but teaches little, count less, so the noisy steps that decide layout and colour
    from the prompt get a larger share of the gradient. γ = 0 turns it off."""
    if not args.snr_gamma:
        return torch.ones(len(t))
    alpha = schedule.alphas_cumprod[t]
    snr = alpha / (1 - alpha)
    return snr.clamp(max=args.snr_gamma) / snr


def _resume(path: Path, models, ema, optimizer) -> int:
    """Continue from the full local state if there is one (same machine); else from the folder's weights."""
    if not path.is_file():
        return 0
    tensors = load_file(path)
    models.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")})
    meta = json.loads((path.with_suffix(".json")).read_text())
    optimizer.load_state_dict(torch.load(path.with_suffix(".opt"), weights_only=True))
    return meta["step"]


def _logged_steps(folder: Path, stage: str) -> int:
    """The step count of the folder's last checkpoint of `stage`, so that a run resumed from the committed
    weights goes on counting where the last one stopped."""
    log_file = folder / "training_log.jsonl"
    records = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.is_file() else []
    return max((r["checkpoint"] for r in records if r.get("stage") == stage), default=0)


def _save_state(path: Path, models, ema, optimizer, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.contiguous() for k, v in models.state_dict().items()}
    tensors.update({f"ema.{k}": v.contiguous() for k, v in ema.state_dict().items()})
    save_file(tensors, path)
    torch.save(optimizer.state_dict(), path.with_suffix(".opt"))
    path.with_suffix(".json").write_text(json.dumps({"step": step}))


def log(args, record: dict) -> None:
    """Print a checkpoint's figures and append them to the model folder's training_log.jsonl (its model card
    is written from that file)."""
    line = json.dumps({**record, "seed": args.seed, "time": time.strftime("%Y-%m-%d %H:%M")})
    print(line, flush=True)
    with open(args.out / "training_log.jsonl", "a") as file:
        file.write(line + "\n")


def _keep_going(step: int, start: float, args) -> bool:
    if args.steps is not None and step >= args.steps:
        return False
    return args.minutes is None or time.time() - start < args.minutes * 60


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["vae", "unet"])
    parser.add_argument("--out", type=Path, default=ROOT / "dragdiff" / "demo_model")
    parser.add_argument("--state", type=Path, default=ROOT / ".train_state", help="resumable state (not committed)")
    parser.add_argument("--minutes", type=float, help="stop after this long (checkpointing on the way)")
    parser.add_argument("--steps", type=int, help="stop after this many steps")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument(
        "--offset-noise",
        type=float,
        default=0.1,
        help="std of a per-image, per-channel constant added to the UNet's training noise (default 0.1, "
        "Guttenberg 2023): SD's schedule leaves 7%% of the signal at t=999, enough to leak each scene's mean "
        "colour (its latents' channel means vary with std 0.6-0.85), so without it the UNet reads the "
        "background colour from the noise and ignores the prompt; 0 = plain noise",
    )
    parser.add_argument(
        "--snr-gamma", type=float, default=5.0, help="min-SNR-γ loss weighting (default 5, Hang et al. 2023); 0 = off"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--decoder-only",
        action="store_true",
        help="vae: train the decoder only, so that the latent space (and a UNet trained on it) stays valid",
    )
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)  # denormals slow CPU training severely (docs/measurements.md §9)
    {"vae": train_vae, "unet": train_unet}[args.stage](args)


if __name__ == "__main__":
    main()
