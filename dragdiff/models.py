"""Load the parts of a Stable-Diffusion-shaped model from any spec, on the right device and dtype.

Specs: "tiny", "tiny-sd2" and "tiny-sdxl" (seeded random test models from configs/<name>, shaped like SD 1.5
(ε-prediction), SD 2.x (v-prediction) and SDXL (two text encoders)); "sd15-random", "sd21-random" and
"sdxl-random" (the real architectures from configs/sd15, sd21, sdxl with seeded random weights: real-size costs
for the benchmark); "demo" (the bundled model, package data in dragdiff/demo_model); "sd15", "sd21",
"sd21-base", "sdxl" or a hub id (from the local Hugging Face cache; downloaded only when the hub is allowed);
a local diffusers folder; or a single ".safetensors" checkpoint. Only safetensors weights are ever read, never
a pickle. Everything size-related (VAE factor, latent channels, native resolution) is read from the model's
own configs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from . import conditioning
from .config import CONFIG_DIR, read_config_file
from .errors import DragError

if TYPE_CHECKING:
    from diffusers import FluxFillPipeline

SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
HUB_ALIASES = {
    "sd15": SD15_HUB_ID,
    "runwayml/stable-diffusion-v1-5": SD15_HUB_ID,
    "sd21": "stabilityai/stable-diffusion-2-1",  # 768 px, v-prediction
    "sd21-base": "stabilityai/stable-diffusion-2-1-base",  # 512 px, ε-prediction
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",  # 1024 px, two text encoders
}
DEMO_MODEL_DIR = Path(str(resources.files("dragdiff") / "demo_model"))
# Random-weight models built from architecture configs: the tiny ones for tests, the others for real-size costs.
RANDOM_MODELS = {
    "tiny": CONFIG_DIR / "tiny",
    "tiny-sd2": CONFIG_DIR / "tiny-sd2",
    "tiny-sdxl": CONFIG_DIR / "tiny-sdxl",
    "sd15-random": CONFIG_DIR / "sd15",
    "sd21-random": CONFIG_DIR / "sd21",
    "sdxl-random": CONFIG_DIR / "sdxl",
}
# Values of the methods' settings that depend on the UNet's architecture (layer 2 of the config resolver for a
# model without a dragdiff.yaml of its own): SDXL's decoder has 3 blocks, not 4.
ARCHITECTURE_DEFAULTS = {"sdxl": CONFIG_DIR / "sdxl.yaml"}
MODEL_DEFAULTS_FILE = "dragdiff.yaml"  # each method's values tuned for a model, beside its weights
# What a hub download may fetch: configs, tokenizer files and safetensors weights; never .bin/.ckpt pickles.
# (A large model's weights come in shards, listed by an index file.)
HUB_PATTERNS = ["model_index.json", "*/config.json", "*/*.safetensors", "*/*.safetensors.index.json"]
HUB_PATTERNS += ["scheduler/*.json", "tokenizer*/*"]
HUB_IGNORE = ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.onnx*", "*fp16*", "*non_ema*", "*.h5"]
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")  # torch.load formats: unpickling can run code
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LDM_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"  # a single-file UNet's first convolution
FLUX_FILE_KEY = "img_in.weight"  # a FLUX transformer's first layer in Black Forest Labs' single-file layout

log = logging.getLogger(__name__)


@dataclass
class DiffusionModel:
    """The parts of an SD-shaped latent diffusion model that a drag edit needs."""

    spec: str  # what the user asked for
    fingerprint: str  # identifies the weights in cache keys
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    defaults: dict = field(default_factory=dict)  # its dragdiff.yaml: layer 2 of dragdiff.config.resolve_config
    note: str = ""  # why this model was chosen (for `auto`), for logs and the UI
    text_encoder_2: CLIPTextModelWithProjection | None = None  # SDXL's second text encoder (pooled embedding)
    tokenizer_2: CLIPTokenizer | None = None

    @property
    def architecture(self) -> str:
        """architecture() of its UNet: sdxl or sd."""
        return architecture(self.unet.config)

    @property
    def vae_dtype(self) -> torch.dtype:
        """SDXL's autoencoder overflows in fp16 (its config says force_upcast): it runs in fp32 there."""
        upcast = self.architecture == "sdxl" and self.dtype == torch.float16 and self.vae.config.force_upcast
        return torch.float32 if upcast else self.dtype

    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell (SD: 8): the VAE halves the size in every block but the last."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def native_resolution(self) -> int:
        """The image size the model was trained at (SD 1.5: 64 latents x 8 = 512)."""
        return self.unet.config.sample_size * self.vae_factor

    def scheduler(self) -> DDIMScheduler:
        """DragDiffusion's DDIM settings over the model's own noise schedule and prediction type."""
        return DDIMScheduler.from_config(
            self.scheduler_config,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            timestep_spacing="leading",
        )

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, 77, D) CLIP hidden states of the prompt, as SD conditions its cross-attention. SDXL: both
        encoders' penultimate hidden states side by side, with the pooled embedding packed in front
        (dragdiff.conditioning), (1, 78, D1 + D2)."""
        if self.text_encoder_2 is None:
            return self.text_encoder(self._token_ids(self.tokenizer, prompt))[0].to(self.dtype)
        first = self.text_encoder(self._token_ids(self.tokenizer, prompt), output_hidden_states=True)
        second = self.text_encoder_2(self._token_ids(self.tokenizer_2, prompt), output_hidden_states=True)
        tokens = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return conditioning.pack(tokens, second.text_embeds).to(self.dtype)

    def _token_ids(self, tokenizer: CLIPTokenizer, prompt: str) -> torch.Tensor:
        return tokenizer(
            prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)

    @property
    def text_width(self) -> int:
        """Width of the text tokens the UNet reads (SDXL: both encoders')."""
        second = self.text_encoder_2.config.hidden_size if self.text_encoder_2 is not None else 0
        return self.text_encoder.config.hidden_size + second

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latent (B, C, H/f, W/f): posterior mean, as the reference inverts."""
        latent = self.vae.encode(pixels.to(self.device, self.vae_dtype)).latent_dist.mean
        return ((latent - self.latent_shift) * self.vae.config.scaling_factor).to(self.dtype)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> (B, 3, H, W) pixels in [-1, 1], fp32."""
        latent = latent.to(self.vae_dtype) / self.vae.config.scaling_factor + self.latent_shift
        return self.vae.decode(latent).sample.float().clamp(-1, 1)

    @property
    def latent_shift(self) -> float:
        """Subtracted before scaling (0 for SD 1.x/2.x VAEs, which have no shift_factor)."""
        return getattr(self.vae.config, "shift_factor", None) or 0.0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    spec: str = "auto",
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    single_file_config: str | Path | None = None,
) -> DiffusionModel:
    """Load the model that `spec` names; fp16 on CUDA and fp32 on CPU unless `dtype` (or its name in DTYPES)
    says otherwise."""
    device = torch.device(device) if device is not None else default_device()
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise DragError(f"dtype: {dtype!r} is not one of {list(DTYPES)}")
        dtype = DTYPES[dtype]
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    spec, note = choose_auto() if spec.strip() == "auto" else (spec.strip(), "")
    if spec in RANDOM_MODELS:
        parts = build_random_parts(RANDOM_MODELS[spec])
        model = DiffusionModel(spec, f"{spec}-v1-seed0", **parts, device=device, dtype=dtype)
    else:
        folder, fingerprint = resolve_spec(spec)
        if folder.is_file():
            parts = _load_single_file(folder, single_file_config)
        else:
            parts = _load_folder(folder, spec)
        model = DiffusionModel(spec, fingerprint, **parts, device=device, dtype=dtype)
        if folder.is_dir() and (folder / MODEL_DEFAULTS_FILE).is_file():
            model.defaults = read_config_file(folder / MODEL_DEFAULTS_FILE)
    model.defaults = model.defaults or architecture_defaults(model.unet.config)
    model.note = note
    return _prepare(model)


def model_defaults(spec: str) -> dict:
    """The dragdiff.yaml of the model `spec` names, read without loading its weights ({} when it has none or
    is not on this machine): what the app's settings show before the model is loaded."""
    spec = choose_auto()[0] if spec.strip() == "auto" else spec.strip()
    if spec in RANDOM_MODELS:
        return _architecture_defaults_of(RANDOM_MODELS[spec] / "unet.json")
    folder = DEMO_MODEL_DIR if spec == "demo" else Path(spec).expanduser()
    if not folder.is_dir() and not folder.is_file():
        folder = _hub_snapshot(spec)  # None when not cached: no defaults to show (never the working folder's)
    if folder is None or not folder.is_dir():
        return {}
    file = folder / MODEL_DEFAULTS_FILE
    return read_config_file(file) if file.is_file() else _architecture_defaults_of(folder / "unet" / "config.json")


def architecture(unet_config) -> str:
    """The family that decides a model's defaults: sdxl for an SDXL-shaped UNet config, else sd."""
    return "sdxl" if conditioning.needs_pooled_text(unet_config) else "sd"


def architecture_defaults(unet_config) -> dict:
    """ARCHITECTURE_DEFAULTS of a UNet config's family ({} for SD 1.x/2.x)."""
    file = ARCHITECTURE_DEFAULTS.get(architecture(unet_config))
    return read_config_file(file) if file else {}


def _architecture_defaults_of(unet_config_file: Path) -> dict:
    """architecture_defaults() of a UNet config file ({} when it is missing or unreadable)."""
    try:
        config = json.loads(unet_config_file.read_text())
    except (OSError, ValueError):
        return {}
    return architecture_defaults(config)


def choose_auto() -> tuple[str, str]:
    """`auto`: Stable Diffusion 1.5 when its weights are in the local cache, else the bundled demo model."""
    if _hub_snapshot(SD15_HUB_ID):
        note = f"model auto: using {SD15_HUB_ID} (found in the local Hugging Face cache)"
        spec = SD15_HUB_ID
    else:
        note = (
            f"model auto: using the bundled demo model, because {SD15_HUB_ID} is not in the local Hugging Face "
            "cache (download it to edit real photos)"
        )
        spec = "demo"
    log.info(note)
    return spec, note


def model_summary(spec: str) -> str:
    """One line naming the model `spec` will run, where it comes from and why (for the app's page and logs);
    reads no weights."""
    spec = spec.strip()
    if spec == "auto":
        if choose_auto()[0] == "demo":
            return (
                "auto → demo: the bundled demo model (trained on flat shapes), because Stable Diffusion 1.5 is not "
                "in the local Hugging Face cache; download it to edit real photos"
            )
        return f"auto → Stable Diffusion 1.5 ({SD15_HUB_ID}), found in the local Hugging Face cache"
    if spec == "demo":
        return "demo: the bundled demo model, trained on flat shapes (real photos need Stable Diffusion 1.5)"
    if spec in RANDOM_MODELS:
        return f"{spec}: random weights built from a config, for tests and timings (results are noise)"
    repo = HUB_ALIASES.get(spec, spec)
    if repo == SD15_HUB_ID or (repo.count("/") == 1 and not Path(spec).expanduser().exists()):
        where = "in the local Hugging Face cache" if _hub_snapshot(repo) else "not in the local cache yet"
        return f"{spec}: {repo} from the Hugging Face hub, {where}"
    return f"{Path(spec).name}: the model file or folder this server was started with"


def choice_label(spec: str) -> str:
    """How a model menu names `spec`: a hub model says whether it is in the local cache (reads no weights)."""
    if spec in HUB_ALIASES:
        return f"{spec} ({'in the local cache' if _hub_snapshot(spec) else 'not downloaded'})"
    return spec


def resolve_spec(
    spec: str, otherwise: str = "use --model demo, the small model bundled with dragdiff"
) -> tuple[Path, str]:
    """Map a spec to a local folder or file and a fingerprint of its weights; raises DragError if unavailable,
    ending with `otherwise`: what else the user can do."""
    if spec == "demo":
        if not (DEMO_MODEL_DIR / "model_index.json").is_file():
            raise DragError(f"the bundled demo model is missing from {DEMO_MODEL_DIR}; use --model tiny for a test run")
        return DEMO_MODEL_DIR, _files_fingerprint(DEMO_MODEL_DIR)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise DragError(
                f"{path} is not a diffusers model folder (no model_index.json); "
                "give a folder saved by diffusers' save_pretrained, a .safetensors file or a hub id"
            )
        return path, _files_fingerprint(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise DragError(
                f"{path}: only .safetensors checkpoints are loaded (pickled {path.suffix} files can run "
                "code); convert it to safetensors first"
            )
        stat = path.stat()
        return path, f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    repo = HUB_ALIASES.get(spec, spec)  # before the hub-id check: an alias such as sd15 has no slash
    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise DragError(
            f"unknown model {spec!r}: not a file, not a folder and not a hub id; use auto, demo, "
            "sd15, tiny, sd15-random, a hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5, a folder or "
            "a .safetensors file"
        )
    snapshot = _hub_snapshot(spec) or _hub_snapshot(repo) or _download(repo, otherwise)
    return snapshot, f"hub:{repo}:{snapshot.name}"


def _hub_snapshot(repo: str) -> Path | None:
    """The local cache folder of a hub model if it holds safetensors weights, else None."""
    from huggingface_hub import snapshot_download

    repo = HUB_ALIASES.get(repo, repo)
    try:
        path = Path(
            snapshot_download(repo, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE, local_files_only=True)
        )
    except Exception:  # noqa: BLE001 - any failure here just means "not in the cache"
        return None
    # a UNet model, or FLUX.1 Fill (a transformer), which Inpaint4Drag can fill with
    return path if any(path.glob("unet/*.safetensors")) or any(path.glob("transformer/*.safetensors")) else None


def _download(repo: str, otherwise: str) -> Path:
    from huggingface_hub import snapshot_download

    hint = f"Get it on a connected machine with `huggingface-cli download {repo}`, or {otherwise}."
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise DragError(f"model {repo!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. {hint}")
    try:
        return Path(snapshot_download(repo, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE))
    except Exception as exc:  # noqa: BLE001 - network, auth and missing-repo errors all end here
        raise DragError(
            f"model {repo!r} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}). {hint}"
        ) from exc


def _load_folder(folder: Path, spec: str):
    if (folder / "transformer").is_dir() and not (folder / "unet").is_dir():
        raise DragError(
            f"model {spec!r} is a transformer model (such as FLUX), not a Stable Diffusion UNet model: the drag "
            "methods run on SD 1.x, 2.x and SDXL. FLUX.1 Fill can fill Inpaint4Drag's edits: set inpaint_model to it"
        )
    pickled = sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.suffix in PICKLE_SUFFIXES)
    if pickled:
        log.warning("model %r: ignoring pickled weights %s; only .safetensors files are loaded", spec, pickled)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", use_safetensors=True)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        second = {}
        if (folder / "text_encoder_2").is_dir():  # SDXL
            second = {
                "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(
                    folder, subfolder="text_encoder_2", use_safetensors=True
                ),
                "tokenizer_2": CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2"),
            }
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise DragError(
            f"cannot load model {spec!r} from {folder}: {exc}. It needs unet/, vae/, text_encoder/ "
            "with .safetensors weights, tokenizer/ and scheduler/"
        ) from exc
    return dict(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler_config=scheduler_config, **second
    )


def _load_single_file(path: Path, config: str | Path | None):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as checkpoint:  # SDXL's second text encoder is conditioner.embedders.1
            sdxl = any(key.startswith("conditioner.embedders.1.") for key in checkpoint.keys())
        family = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
        pipe = family.from_single_file(
            str(path),
            config=str(config) if config else None,
            local_files_only=config is not None,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types for a bad checkpoint
        raise DragError(
            f"cannot load the checkpoint {path}: {exc}. Give a complete Stable Diffusion .safetensors checkpoint "
            "and, offline, the diffusers folder with its configs (--model-config)"
        ) from exc
    parts = dict(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    if sdxl:
        parts.update(text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)
    return {**parts, "scheduler_config": dict(pipe.scheduler.config)}


def _prepare(model: DiffusionModel) -> DiffusionModel:
    """Frozen, eval-mode weights on the target device; SDPA attention (diffusers' default processor)."""
    for module in (model.unet, model.vae, model.text_encoder, model.text_encoder_2):
        if module is None:
            continue
        module.requires_grad_(False).eval().to(model.device)
        wanted = model.vae_dtype if module is model.vae else model.dtype
        if module.dtype != wanted:
            module.to(wanted)
    conditioning.install(model.unet, model.vae_factor)
    return model


def _files_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"folder:{digest.hexdigest()[:16]}"


def build_random_parts(config_dir: Path = RANDOM_MODELS["tiny"], seed: int = 0):
    """An SD-1.5-shaped model with seeded random weights from the architecture configs in `config_dir`
    (configs/tiny for tests and smoke runs, configs/sd15 for the benchmark's real-size costs)."""

    def read(name: str) -> dict:
        values = json.loads((config_dir / f"{name}.json").read_text())
        return {k: v for k, v in values.items() if not k.startswith("_")}

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**read("unet"))
    vae = AutoencoderKL(**read("vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig(**read("text_encoder")))
    parts = dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=char_tokenizer())
    if (config_dir / "text_encoder_2.json").is_file():  # SDXL
        second = CLIPTextModelWithProjection(CLIPTextConfig(**read("text_encoder_2")))
        parts.update(text_encoder_2=second, tokenizer_2=char_tokenizer())
    return {**parts, "scheduler_config": read("scheduler")}


def char_tokenizer() -> CLIPTokenizer:
    """An offline character-level CLIP tokenizer: the 94 printable ASCII characters, with and without the
    end-of-word mark, plus start/end tokens (190 ids), and no merges."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)


def save_model(model: DiffusionModel, folder: str | Path) -> None:
    """Write the model as a diffusers folder (safetensors weights), loadable by `load_model(folder)`."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    common = dict(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet)
    common["scheduler"] = model.scheduler()
    if model.text_encoder_2 is not None:
        pipe = StableDiffusionXLPipeline(**common, text_encoder_2=model.text_encoder_2, tokenizer_2=model.tokenizer_2)
    else:
        pipe = StableDiffusionPipeline(
            **common, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.save_pretrained(folder, safe_serialization=True)


def load_inpainter(spec: str, model: DiffusionModel) -> UNet2DConditionModel | FluxFillPipeline:
    """The inpainting model `spec` names, for Inpaint4Drag's fill: the UNet of an SD inpainting model (9 input
    channels: latent, mask, masked-image latent) of `model`'s family, run with `model`'s autoencoder and text
    encoder; or a whole FLUX.1 Fill pipeline, which brings its own. `spec`: a hub id (from the local cache,
    downloaded only when the hub is allowed), a diffusers pipeline folder, a UNet folder (config.json +
    safetensors) or a single .safetensors UNet checkpoint. Errors name the spec and what is wrong with it."""
    where = f"inpaint_model {spec!r}"
    path = Path(spec).expanduser()
    try:
        if path.is_dir() and (path / "config.json").is_file():  # a UNet folder
            unet = UNet2DConditionModel.from_pretrained(path, use_safetensors=True)
        else:
            folder, _ = resolve_spec(spec, otherwise="set inpaint_model to null to fill with the loaded model")
            if (folder / "transformer" / "config.json").is_file():
                return _flux_fill(folder, model)
            if folder.is_file():
                unet = _single_file_inpainting_unet(folder, model)
            else:
                unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
    except DragError as exc:
        raise DragError(f"{where}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types for a bad model
        raise DragError(
            f"{where}: cannot load it ({type(exc).__name__}); give an SD inpainting model or FLUX.1 Fill"
        ) from exc
    channels = unet.config.in_channels
    if channels != 9:
        raise DragError(
            f"{where}: its UNet takes {channels} input channels, not 9, so it is not an inpainting model; give "
            "one such as stable-diffusion-v1-5/stable-diffusion-inpainting, or null to fill with the loaded model"
        )
    if unet.config.out_channels != model.latent_channels or unet.config.cross_attention_dim != model.text_width:
        raise DragError(
            f"{where}: it does not fit the loaded model {model.spec!r} (latent channels {unet.config.out_channels}, "
            f"text width {unet.config.cross_attention_dim}, against {model.latent_channels} and {model.text_width}); "
            "give the inpainting model of the same family"
        )
    conditioning.install(unet, model.vae_factor)  # an SDXL inpainting UNet reads the same packed text
    return unet.requires_grad_(False).eval().to(model.device, model.dtype)


def _flux_fill(folder: Path, model: DiffusionModel) -> FluxFillPipeline:
    """FLUX.1 Fill from a diffusers folder, whole (its transformer, CLIP and T5 text encoders, 16-channel
    autoencoder, flow-matching scheduler), on `model`'s device: in bf16 where `model` runs in fp16, FLUX's own
    precision (its activations overflow fp16)."""
    from diffusers import FluxFillPipeline

    config = json.loads((folder / "transformer" / "config.json").read_text())
    channels = config.get("in_channels")
    latent = config.get("out_channels") or channels
    if not channels or channels <= 2 * latent:  # Fill reads the latent, the masked image's latent and the mask
        raise DragError(
            f"its transformer takes {channels} input channels, so it is not an inpainting model (FLUX.1 "
            f"Fill takes more than twice its {latent} latent channels: the latent, the masked image's and the mask); "
            "give black-forest-labs/FLUX.1-Fill-dev, or null to fill with the loaded model"
        )
    dtype = torch.bfloat16 if model.dtype == torch.float16 else model.dtype
    pipe = FluxFillPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(model.device)


def _single_file_inpainting_unet(path: Path, model: DiffusionModel) -> UNet2DConditionModel:
    """The UNet of a single-file (original LDM layout) inpainting checkpoint, offline: the loaded model's UNet
    architecture with 9 input channels (an inpainting model is its base model with a wider first layer)."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as file:
        keys = set(file.keys())
    if LDM_CONV_IN not in keys:
        if FLUX_FILE_KEY in keys:
            raise DragError(
                "a FLUX transformer alone in one file; FLUX.1 Fill needs its text encoders and autoencoder too: "
                "give its diffusers folder or hub id (black-forest-labs/FLUX.1-Fill-dev)"
            )
        raise DragError(f"not a Stable Diffusion UNet checkpoint (it has no {LDM_CONV_IN})")
    checkpoint = load_file(str(path))
    config = {**dict(model.unet.config), "in_channels": int(checkpoint[LDM_CONV_IN].shape[1])}
    unet = UNet2DConditionModel.from_config(config)
    unet.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, config), strict=True)
    return unet


def load_tiny_vae(spec: str, model: DiffusionModel):
    """A tiny autoencoder (TAESD: diffusers' AutoencoderTiny) from a local folder or the local hub cache, never
    downloaded: it is an optional speed-up."""
    from diffusers import AutoencoderTiny

    path = Path(spec).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(spec, allow_patterns=["config.json", "*.safetensors"], local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache
            raise DragError(
                f"tiny_vae {spec!r}: not a folder and not in the local Hugging Face cache; download it first "
                "(huggingface-cli download madebyollin/taesd) or set tiny_vae to null"
            ) from None
    try:
        vae = AutoencoderTiny.from_pretrained(path, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001
        raise DragError(f"tiny_vae {spec!r}: cannot load a tiny autoencoder there ({type(exc).__name__})") from exc
    if vae.config.latent_channels != model.latent_channels:
        raise DragError(
            f"tiny_vae {spec!r}: {vae.config.latent_channels} latent channels, the model has {model.latent_channels}"
        )
    return vae.requires_grad_(False).eval().to(model.device, model.dtype)


def load_fast_lora(spec: str, model: DiffusionModel) -> tuple[dict, dict | None]:
    """A few-step distillation LoRA for the UNet (LCM-LoRA, e.g. latent-consistency/lcm-lora-sdv1-5): a local
    .safetensors file or a folder holding one, never downloaded. Returns (state dict, network alphas) in the
    form diffusers' load_lora_adapter takes."""
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin

    path = Path(spec).expanduser()
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not files[0].is_file() or files[0].suffix != ".safetensors":
        raise DragError(f"fast_lora {spec!r}: give a local .safetensors LoRA file (or a folder holding one)")
    try:
        state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(str(files[0]))
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types for a file that is not a LoRA
        raise DragError(f"fast_lora {spec!r}: not a LoRA file diffusers can read ({type(exc).__name__})") from exc
    return state, alphas
