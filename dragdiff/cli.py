"""Command line: `python -m dragdiff edit ...` runs one drag edit from flags or a saved session."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import DEFAULT_CONFIG_FILE, DragConfig, read_config_file
from .errors import DragCancelled, DragError
from .types import Progress

DTYPE_NAMES = ("fp32", "fp16", "bf16")  # dragdiff.models.DTYPES (not imported here: torch loads slowly)
DTYPE_HELP = (
    "the model's precision (default: fp16 on CUDA, fp32 on CPU). On CPUs with native bf16 (AVX512-BF16 or AMX) "
    "bf16 runs SD 1.5 about 2x faster (README: Speed and memory); small models such as the demo gain nothing"
)

EXAMPLES = """examples:
  python -m dragdiff edit --image cat.png --points "120,80>160,80" --mask cat_mask.png --out cat_dragged.png
  python -m dragdiff edit --image in.png --points "10,10>20,20; 50,60>50,90" --model tiny --lora-steps 5 --out o.png
  python -m dragdiff edit --session cat_dragged.png --out replay.png     # replay the session a result carries
  python -m dragdiff edit --method dragon --mode move --image in.png --mask obj.png --offset 30,0 --out moved.png
  python -m dragdiff edit --method dragon --mode resize --image in.png --mask obj.png --offset=-5,0 \\
      --scale 1.5 --out big.png
  python -m dragdiff edit --method dragon --mode appearance --image in.png --mask obj.png \\
      --reference other.png --reference-mask other_obj.png --out restyled.png
  python -m dragdiff edit --method dragon --mode paste --image bg.png --reference obj.png --reference-mask m.png \\
      --position 200,150 --scale 0.8 --out pasted.png
  python -m dragdiff convert-image-prompt ip_sd15_64.bin ip_sd15_64.safetensors   # then, with --method dragon:
      --set image_prompt=ip_sd15_64.safetensors --set image_encoder=IP-Adapter/models/image_encoder
"""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DragCancelled, KeyboardInterrupt):
        print("cancelled: nothing was written", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dragdiff",
        description="Point-drag image editing on Stable Diffusion (DragDiffusion).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    edit = commands.add_parser(
        "edit",
        help="drag the content at handle points to target points and write the edited PNG",
        description="Run one DragDiffusion edit. The result PNG carries the whole session (image, points, mask, "
        "prompt, parameters, model) so it can be replayed with --session.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    edit.set_defaults(run=run_edit)
    source = edit.add_argument_group("what to edit (either --image and --points, or --session)")
    source.add_argument("--image", help="input image (PNG, JPEG, WebP, ...; any size)")
    source.add_argument("--points", help='handle>target pairs in image pixels: "x,y>x,y; x,y>x,y"')
    source.add_argument("--mask", help="editable region: white = may change (default: the whole image)")
    source.add_argument("--prompt", help="text describing the image (default: empty)")
    source.add_argument(
        "--session",
        help="a session .json, or a PNG written by dragdiff, to replay; other flags given override its values",
    )
    dragon = edit.add_argument_group("DragonDiffusion (--method dragon; parameters in configs/dragon.yaml)")
    dragon.add_argument(
        "--method",
        choices=["dragdiffusion", "dragon"],
        help="dragdiffusion (default: LoRA + latent optimisation) or dragon (training-free DragonDiffusion)",
    )
    dragon.add_argument(
        "--mode",
        choices=["move", "resize", "drag", "appearance", "paste"],
        help="dragon: move/resize the object under --mask by --offset/--scale; drag --points within --mask; "
        "appearance: give the --mask object the look of the --reference-mask object of --reference; paste the "
        "--reference-mask object of --reference at --position",
    )
    dragon.add_argument("--offset", help="move/resize: dx,dy in pixels (a negative dx needs --offset=-30,0)")
    dragon.add_argument("--scale", type=float, help="resize/paste: size factor (default 1)")
    dragon.add_argument("--position", help="paste: x,y in pixels of --image where the object's centre goes")
    dragon.add_argument("--reference", help="appearance/paste: the second image")
    dragon.add_argument("--reference-mask", help="appearance/paste: the object in --reference (white)")
    dragon.add_argument("--reference-prompt", help="appearance/paste: text describing --reference")
    dragon.add_argument("--box", help="instead of --mask: x0,y0,x1,y1 around the object (refined with GrabCut)")
    dragon.add_argument("--reference-box", help="instead of --reference-mask: x0,y0,x1,y1 around its object")
    dragon.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a DragonConfig parameter, e.g. n_steps=30"
    )
    out = edit.add_argument_group("model and output")
    out.add_argument(
        "--model", help="auto (default), demo, sd15, tiny, a hub id, a diffusers folder or a .safetensors checkpoint"
    )
    out.add_argument(
        "--model-config", help="for a .safetensors checkpoint: a diffusers folder with its configs (needed offline)"
    )
    out.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    out.add_argument("--dtype", choices=DTYPE_NAMES, help=DTYPE_HELP)
    out.add_argument(
        "--cache-dir",
        help="where LoRA weights and inversions are cached (default: $DRAGDIFF_CACHE or ~/.cache/dragdiff)",
    )
    out.add_argument("--config", help="a YAML file of parameters (keys as in configs/drag.yaml)")
    out.add_argument("--out", required=True, help="the edited PNG to write; a JSON summary goes beside it")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    params = edit.add_argument_group("parameters (defaults and their sources: configs/drag.yaml)")
    for name, (default, comment) in config_help().items():
        params.add_argument(
            f"--{name.replace('_', '-')}", dest=f"param_{name}", metavar="V", help=f"{comment} (default: {default})"
        )
    convert = commands.add_parser(
        "convert-image-prompt",
        help="turn a pickled IP-Adapter .bin (e.g. DiffEditor's ip_sd15_64.bin) into the .safetensors dragdiff reads",
        description="dragdiff never unpickles weights while editing. This one-off conversion reads the .bin with "
        "torch's weights-only loader (tensors only, no code) and writes a .safetensors file for the image_prompt "
        "parameter of --method dragon.",
    )
    convert.add_argument("source", help="the IP-Adapter .bin")
    convert.add_argument("target", help="the .safetensors file to write")
    convert.set_defaults(run=run_convert_image_prompt)
    return parser


def run_convert_image_prompt(args: argparse.Namespace) -> int:
    from .dragon.image_prompt import convert_pickle

    print(f"wrote {convert_pickle(args.source, args.target)}")
    return 0


def run_edit(args: argparse.Namespace) -> int:
    from .engine import DragEngine  # heavy imports only once the arguments are known to parse
    from .session import save_result_png

    if args.method == "dragon" or (args.session and _is_dragon_session(args.session)):
        return run_dragon(args)
    if args.mode or args.set:
        raise DragError("--mode and --set belong to --method dragon; DragDiffusion takes its parameters as flags")

    session = build_session(args)  # checks the points and mask against the image: nothing runs on bad input
    model = _load(session.model, args)
    if model.note:
        print(model.note, file=sys.stderr)
    session = replace(session, model=model.spec)  # record what ran, so that a replay uses the same model
    if not args.session and model.drag_defaults:  # a fresh edit takes the model's tuned values under the flags
        session = replace(session, config=_compose_config(model.drag_defaults, args))
    request = session.to_request()
    engine = DragEngine(model, cache_dir=args.cache_dir)
    result = _with_progress(engine.drag, request, args)
    out = _out_path(args)
    save_result_png(result.image, session, out)
    summary = {
        "output": str(out),
        "model": result.model,
        "seed": result.seed,
        "steps_used": result.steps_used,
        "reached_targets": result.stopped_early,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "handle_track": [[p.as_list() for p in step] for step in result.handle_track],
        "targets": [p.as_list() for p in request.targets],
        "warnings": result.warnings,
        "config": result.config.to_dict(),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(
        f"wrote {out} and {out.with_suffix('.json')} ({result.steps_used} drag steps, {result.timings['total']:.1f} s)"
    )
    return 0


def run_dragon(args: argparse.Namespace) -> int:
    """A DragonDiffusion edit from flags or a dragon session; writes the PNG (session embedded) and its .json."""
    from .dragon import DragonEditor
    from .dragon.session import load_dragon_session, save_result
    from .engine import DragEngine

    if args.session:
        request, spec = load_dragon_session(args.session)
        config = request.config.replace(**parse_overrides(args.set))
    else:
        request, spec, config = None, args.model or "auto", None
    model = _load(args.model or spec, args)
    if model.note:
        print(model.note, file=sys.stderr)
    editor = DragonEditor(DragEngine(model, cache_dir=args.cache_dir))
    if request is None:
        mode = {"resize": "move"}.get(args.mode or "", args.mode)
        if mode is None:
            raise DragError("--method dragon needs --mode (move, resize, drag, appearance or paste) or --session")
        config = editor.default_config(mode, **parse_overrides(args.set))
        request = _dragon_request(args, mode, config)
    request = replace(request, config=config)
    result = _with_progress(editor.edit, request, args)
    out = _out_path(args)
    save_result(result.image, request, model.spec, config, out)
    print(
        f"wrote {out} and {out.with_suffix('.json')} (DragonDiffusion {request.mode}, {result.timings['total']:.1f} s)"
    )
    return 0


def _with_progress(edit, request, args: argparse.Namespace):
    """Run `edit(request, on_progress=...)` with progress bars (unless --quiet); print its warnings."""
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = edit(request, on_progress=bars.update)
    finally:
        bars.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return result


def _out_path(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _dragon_request(args: argparse.Namespace, mode: str, config):
    """The request of `mode` from the flags; each missing flag is named."""
    from .dragon import AppearanceRequest, ContentDragRequest, MoveRequest, PasteRequest
    from .images import load_image
    from .validation import parse_points

    def need(flag: str):
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is None:
            raise DragError(f"--mode {args.mode} needs {flag}; see python -m dragdiff edit --help")
        return value

    image = load_image(need("--image"))
    prompt = args.prompt or ""
    mask = _object_mask(image, args.mask, args.box, "--box")
    scale = 1.0 if args.scale is None else args.scale
    if mode == "drag":
        handles, targets = parse_points(need("--points"))
        return ContentDragRequest(image, handles, targets, mask, prompt, config)
    if mode == "move":
        _need_mask(mask, args.mode, "--mask or --box")
        return MoveRequest(image, mask, _xy_flag("--offset", need("--offset")), scale, prompt, config)
    reference = load_image(need("--reference"), what="reference image")
    reference_mask = _object_mask(reference, args.reference_mask, args.reference_box, "--reference-box")
    _need_mask(reference_mask, args.mode, "--reference-mask or --reference-box")
    reference_prompt = args.reference_prompt or ""
    if mode == "appearance":
        _need_mask(mask, args.mode, "--mask or --box")
        return AppearanceRequest(image, mask, reference, reference_mask, prompt, reference_prompt, config)
    position = _xy_flag("--position", need("--position"))
    return PasteRequest(image, reference, reference_mask, position, scale, prompt, reference_prompt, config)


def _object_mask(image, mask_path: str | None, box: str | None, flag: str):
    """A mask from its file, or from a box refined with GrabCut, or None."""
    from .dragon.box import box_mask
    from .images import load_mask

    if mask_path:
        return load_mask(mask_path, image.size)
    if not box:
        return None
    try:
        corners = tuple(float(v) for v in box.split(","))
    except ValueError:
        corners = ()
    if len(corners) != 4:
        raise DragError(f"{flag} {box!r}: write four numbers x0,y0,x1,y1")
    return box_mask(image, corners)


def _need_mask(mask, mode: str, flags: str) -> None:
    if mask is None:
        raise DragError(f"--mode {mode} needs {flags}; see python -m dragdiff edit --help")


def _xy_flag(flag: str, text: str):
    from .types import Point

    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise DragError(f"{flag} {text!r}: write two numbers as x,y, e.g. {flag} 30,-10") from exc
    return Point(x, y)


def _is_dragon_session(path: str) -> bool:
    from .dragon.session import is_dragon_session, read_session_data

    return is_dragon_session(read_session_data(path))


def build_session(args: argparse.Namespace):
    """The session to run: from --session, with any flags given taking precedence, or from flags alone."""
    from .images import load_image, load_mask
    from .session import Session, load_session
    from .validation import parse_points

    if args.session:
        base = load_session(args.session)
        config = _compose_config(base.config.to_dict(), args)
        image = load_image(args.image) if args.image else base.image
        handles, targets = parse_points(args.points) if args.points else (base.handles, base.targets)
        mask = load_mask(args.mask, image.size) if args.mask else base.mask
        prompt = base.prompt if args.prompt is None else args.prompt
        return Session(image, handles, targets, mask, prompt, args.model or base.model, config)
    if not args.image or not args.points:
        raise DragError("edit needs --image and --points (or --session); see python -m dragdiff edit --help")
    image = load_image(args.image)
    handles, targets = parse_points(args.points)
    mask = load_mask(args.mask, image.size) if args.mask else None
    config = _compose_config({}, args)
    return Session(image, handles, targets, mask, args.prompt or "", args.model or "auto", config)


def _load(spec: str, args: argparse.Namespace):
    from .models import load_model

    return load_model(spec, args.device, args.dtype, single_file_config=args.model_config)


def _compose_config(base: dict[str, Any], args: argparse.Namespace) -> DragConfig:
    """Defaults of configs/drag.yaml, then `base` (a session's or the model's values), --config, then flags."""
    flags = {
        k[len("param_") :]: parse_value(v) for k, v in vars(args).items() if k.startswith("param_") and v is not None
    }
    from_file = read_config_file(args.config) if args.config else {}
    return DragConfig.from_dict({**DragConfig.load().to_dict(), **base, **from_file, **flags})


def parse_value(text: str) -> Any:
    """A flag's text as YAML (numbers, true/false, null, [2, 3]); DragConfig then checks type and range."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE` (repeatable) for any DragConfig parameter; read back with parse_overrides."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a DragConfig parameter (e.g. drag_steps=40); one of: {', '.join(config_help())}",
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as a mapping (values parsed as YAML; DragConfig checks names and ranges)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DragError(f"--set {item!r}: write KEY=VALUE, e.g. --set drag_steps=40")
        overrides[key.strip()] = parse_value(value)
    return overrides


def config_help() -> dict[str, tuple[str, str]]:
    """{field: (default, comment)} from configs/drag.yaml, so that --help and the defaults share one source."""
    pattern = re.compile(r"^(\w+):\s*(.*?)\s*#\s*(.*)$")
    return {
        m[1]: (m[2], m[3].replace("%", "%%"))
        for line in DEFAULT_CONFIG_FILE.read_text().splitlines()
        if (m := pattern.match(line))
    }


class ProgressBars:
    """One tqdm bar per stage, fed by the engine's on_progress callback."""

    LABELS = {"lora": "LoRA", "inversion": "inversion", "drag": "drag", "denoise": "denoising"}

    def __init__(self, enabled: bool = True):
        self.enabled, self.stage, self.bar = enabled, None, None

    def update(self, progress: Progress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if progress.stage != self.stage:
            self.close()
            self.stage = progress.stage
            self.bar = tqdm(
                total=progress.total, desc=self.LABELS.get(progress.stage, progress.stage), unit="step", file=sys.stderr
            )
        if progress.distance is not None:
            self.bar.set_postfix_str(f"{progress.distance:.1f} px to go")
        self.bar.update(progress.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
