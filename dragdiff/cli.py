"""Command line: `dragdiff edit ...` (or `python -m dragdiff edit ...`) runs one edit, with any method of the
registry (dragdiff.methods), from flags or a saved session."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import methods
from .config import field_help
from .drag.config import DragConfig
from .errors import DragCancelled, DragError
from .gooddrag.config import GoodDragConfig
from .types import STAGE_LABELS, DragRequest, Progress

DTYPE_NAMES = ("fp32", "fp16", "bf16")  # dragdiff.models.DTYPES (not imported here: torch loads slowly)
DTYPE_HELP = (
    "the model's precision (default: fp16 on CUDA, fp32 on CPU). On CPUs with native bf16 (AVX512-BF16 or AMX) "
    "bf16 runs SD 1.5 about 2x faster (README: Speed and memory); small models such as the demo gain nothing"
)

EXAMPLES = """examples:
  dragdiff edit --image cat.png --points "120,80>160,80" --mask cat_mask.png --out cat_dragged.png
  dragdiff edit --image in.png --points "10,10>20,20; 50,60>50,90" --model tiny --lora-steps 5 --out o.png
  dragdiff edit --session cat_dragged.png --out replay.png     # replay the session a result carries
  dragdiff edit --method inpaint4drag --image in.png --mask obj_and_way.png --points "40,48>70,48" --out o.png
  dragdiff edit --method dragon --mode move --image in.png --mask obj.png --offset 30,0 --out moved.png
  dragdiff edit --method dragon --mode resize --image in.png --mask obj.png --offset=-5,0 \\
      --scale 1.5 --out big.png
  dragdiff edit --method dragon --mode appearance --image in.png --mask obj.png \\
      --reference other.png --reference-mask other_obj.png --out restyled.png
  dragdiff edit --method dragon --mode paste --image bg.png --reference obj.png --reference-mask m.png \\
      --position 200,150 --scale 0.8 --out pasted.png
  dragdiff convert-image-prompt ip_sd15_64.bin ip_sd15_64.safetensors   # then, with --method dragon:
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
        prog="dragdiff",
        description="Point-drag image editing on Stable Diffusion. Methods: "
        + "; ".join(f"{i.name} ({i.title}): {i.summary}" for i in map(methods.info, methods.names())),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    edit = commands.add_parser(
        "edit",
        help="drag the content at handle points to target points and write the edited PNG",
        description="Run one edit. The result PNG carries the whole session (image, points, mask, prompt, "
        "parameters, model) so it can be replayed with --session; NAME.json beside it is the same session and "
        "NAME.summary.json what happened (timings, tracked points, warnings). Parameters resolve in one order: "
        "built-in defaults < the model's dragdiff.yaml < --config < --session < flags and --set.",
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
    edit.add_argument(
        "--method",
        choices=methods.names(),
        help="the editing method (default: the model's best measured, gooddrag for Stable Diffusion; or the one "
        "that wrote --session): " + "; ".join(f"{n}: {methods.info(n).summary}" for n in methods.names()),
    )
    edit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any parameter of the method's config, e.g. drag_steps=40 or n_steps=30 (repeatable)",
    )
    dragon = edit.add_argument_group("DragonDiffusion's modes (--method dragon; parameters: configs/dragon.yaml)")
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
    out.add_argument("--config", help="a YAML file of the method's parameters (keys as in dragdiff/configs/*.yaml)")
    out.add_argument(
        "--out", required=True, help="the edited PNG to write; NAME.json (its session) and NAME.summary.json beside it"
    )
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    params = edit.add_argument_group(
        "the LoRA methods' parameters (defaults and sources: dragdiff/configs/drag.yaml, gooddrag.yaml)"
    )
    for name, (comment, defaults) in lora_flag_help().items():
        comment = comment.replace("%", "%%")
        params.add_argument(
            f"--{name.replace('_', '-')}", dest=f"param_{name}", metavar="V", help=f"{comment} (default: {defaults})"
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
    """One edit with the chosen method; writes NAME.png (session embedded), NAME.json and NAME.summary.json."""
    from .arrival import describe
    from .config import read_config_file
    from .runtime import Runtime
    from .session_io import save_result

    out = _out_path(args)  # before any work: a wrong --out would fail only after the whole edit
    name, request, spec = _request(args)  # checks what it can before a model loads
    explicit = {**_parameter_flags(args, name), **parse_overrides(args.set)}
    if args.config:
        read_config_file(args.config)  # a bad file fails before the model loads
    runtime = Runtime(_load(args.model or spec, args), cache_dir=args.cache_dir)
    if runtime.model.note:
        print(runtime.model.note, file=sys.stderr)
    method = runtime.method(name)
    session = request.config.to_dict() if request.config is not None else None
    config = method.default_config(getattr(request, "mode", None), file=args.config, session=session, **explicit)
    result = _with_progress(method.edit, replace(request, config=config), args)
    save_result(result.image, result.session, out)
    summary_path = out.with_suffix(".summary.json")
    summary_path.write_text(json.dumps(summary(result, out), indent=2))
    print(f"wrote {out}, {out.with_suffix('.json')} and {summary_path.name} ({result.timings['total']:.1f} s)")
    if result.image_check:
        print("image check: " + describe(result.image_check, getattr(method, "advice", "")))
    return 0


def summary(result, out: Path) -> dict[str, Any]:
    """What happened in an edit, beside its session: timings, warnings and, for DragDiffusion, the track."""
    data = {
        "output": str(out),
        "model": result.model,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "warnings": result.warnings,
        "config": result.config.to_dict(),
        "image_check": None if result.image_check is None else [c.to_json() for c in result.image_check],
    }
    if hasattr(result, "handle_track"):
        data |= {
            "seed": result.seed,
            "steps_used": result.steps_used,
            "tracker_reached_targets": result.tracker_reached_targets,
            "handle_track": [[p.as_list() for p in step] for step in result.handle_track],
        }
    return data


def _request(args: argparse.Namespace) -> tuple[str, Any, str]:
    """(method name, request, model spec) from --session (other flags given override its values) or flags."""
    from .session_io import read_session_data

    if args.session:
        data = read_session_data(args.session)
        name = methods.method_for_session(data)
        if args.method and args.method != name:
            raise DragError(f"--session holds a {name} edit; replay it without --method {args.method}")
        request, spec = methods.method_class(name).request_from_session(data, Path(args.session).parent)
        if isinstance(request, DragRequest):
            request = _override_drag_fields(request, args)
        return name, request, spec
    name = args.method or methods.default_method(args.model or "auto")
    if args.mode and name != "dragon":
        raise DragError("--mode belongs to --method dragon")
    if name == "dragon" and args.mode:
        return name, _dragon_request(args, {"resize": "move"}.get(args.mode, args.mode)), "auto"
    return name, _drag_request(args), "auto"


def _drag_request(args: argparse.Namespace) -> DragRequest:
    from .images import load_image, load_mask
    from .validation import check_request, parse_points

    if not args.image or not args.points:
        raise DragError("edit needs --image and --points (or --session); see dragdiff edit --help")
    image = load_image(args.image, keep_alpha=True)
    handles, targets = parse_points(args.points)
    mask = load_mask(args.mask, image.size) if args.mask else None
    request = DragRequest(image, handles, targets, mask, args.prompt or "")
    check_request(request)  # points and mask against the image: nothing loads on bad input
    return request


def _override_drag_fields(request: DragRequest, args: argparse.Namespace) -> DragRequest:
    from .images import load_image, load_mask
    from .validation import check_request, parse_points

    image = load_image(args.image, keep_alpha=True) if args.image else request.image
    handles, targets = parse_points(args.points) if args.points else (request.handles, request.targets)
    mask = load_mask(args.mask, image.size) if args.mask else request.mask
    prompt = request.prompt if args.prompt is None else args.prompt
    request = replace(request, image=image, handles=handles, targets=targets, mask=mask, prompt=prompt)
    check_request(request)
    return request


def lora_flag_help() -> dict[str, tuple[str, str]]:
    """{field: (comment, defaults)} of DragDiffusion's and GoodDrag's parameters: one flag each, its help from
    the first method that has it, its default per method where they differ."""
    helps = {
        title: field_help(config) for title, config in (("DragDiffusion", DragConfig), ("GoodDrag", GoodDragConfig))
    }
    flags: dict[str, tuple[str, str]] = {}
    for name in dict.fromkeys(n for own in helps.values() for n in own):
        defaults = {title: own[name][0] for title, own in helps.items() if name in own}
        comment = next(own[name][1] for own in helps.values() if name in own)
        same = len(defaults) == len(helps) and len(set(defaults.values())) == 1
        flags[name] = (
            comment,
            next(iter(defaults.values())) if same else ", ".join(f"{t}: {v}" for t, v in defaults.items()),
        )
    return flags


def _parameter_flags(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The LoRA methods' parameter flags (--lora-steps ...) that were given, parsed; each must be a parameter of
    `method` (other methods take --set)."""
    import dataclasses

    flags = {k.removeprefix("param_"): v for k, v in vars(args).items() if k.startswith("param_")}
    given = {k: parse_value(v) for k, v in flags.items() if v is not None}
    own = {f.name for f in dataclasses.fields(methods.method_class(method).config_type)}
    foreign = [k for k in given if k not in own]
    if foreign:
        names = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise DragError(f"{names}: not a parameter of {method}; give {method}'s parameters with --set KEY=VALUE")
    return given


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
    """--out, checked: a .png file (the session rides in its text chunk; JPEG has none) that overwrites no
    input (NAME.json is written beside it too). Its folder is created."""
    out = Path(args.out)
    if out.is_dir():
        raise DragError(f"--out {args.out}: is a folder; name the PNG file to write, e.g. {out / 'result.png'}")
    if out.suffix.lower() != ".png":
        raise DragError(f"--out {args.out}: results are PNG files with the session inside; end the name in .png")
    written = {out.resolve(), out.with_suffix(".json").resolve(), out.with_suffix(".summary.json").resolve()}
    for flag in ("image", "mask", "session", "reference", "reference_mask"):
        given = getattr(args, flag, None)
        if given and Path(given).resolve() in written:
            flag = "--" + flag.replace("_", "-")
            raise DragError(f"--out {args.out}: would overwrite the {flag} input; choose another name")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _dragon_request(args: argparse.Namespace, mode: str):
    """The request of `mode` from the flags; each missing flag is named."""
    from .dragon import AppearanceRequest, ContentDragRequest, MoveRequest, PasteRequest
    from .images import load_image
    from .validation import parse_points

    def need(flag: str):
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is None:
            raise DragError(f"--mode {args.mode} needs {flag}; see dragdiff edit --help")
        return value

    image = load_image(need("--image"), keep_alpha=True)
    prompt = args.prompt or ""
    mask = _object_mask(image, args.mask, args.box, "--box")
    scale = 1.0 if args.scale is None else args.scale
    if mode == "drag":
        handles, targets = parse_points(need("--points"))
        return ContentDragRequest(image, handles, targets, mask, prompt)
    if mode == "move":
        _need_mask(mask, args.mode, "--mask or --box")
        return MoveRequest(image, mask, _xy_flag("--offset", need("--offset")), scale, prompt)
    reference = load_image(need("--reference"), what="reference image")
    reference_mask = _object_mask(reference, args.reference_mask, args.reference_box, "--reference-box")
    _need_mask(reference_mask, args.mode, "--reference-mask or --reference-box")
    reference_prompt = args.reference_prompt or ""
    if mode == "appearance":
        _need_mask(mask, args.mode, "--mask or --box")
        return AppearanceRequest(image, mask, reference, reference_mask, prompt, reference_prompt)
    position = _xy_flag("--position", need("--position"))
    return PasteRequest(image, reference, reference_mask, position, scale, prompt, reference_prompt)


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
        raise DragError(f"--mode {mode} needs {flags}; see dragdiff edit --help")


def _xy_flag(flag: str, text: str):
    from .types import Point

    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise DragError(f"{flag} {text!r}: write two numbers as x,y, e.g. {flag} 30,-10") from exc
    return Point(x, y)


def _load(spec: str, args: argparse.Namespace):
    from .models import load_model

    return load_model(spec, args.device, args.dtype, single_file_config=args.model_config)


MAX_VALUE_CHARS = 1000  # one parameter's text: the longest real one (a list of blocks) is a few dozen


def parse_value(text: str) -> Any:
    """A flag's or a settings field's text as YAML (numbers, true/false, null, [2, 3]); the config then checks
    type and range. Text that is no YAML stays text. Aliases are refused: 466 bytes of nested aliases expand
    to gigabytes."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise DragError("a parameter's value may not use YAML aliases (*name); write the value itself")
            return super().compose_node(parent, index)

    if len(text) > MAX_VALUE_CHARS:
        raise DragError(f"a parameter's value is {len(text):,} characters long; the limit is {MAX_VALUE_CHARS:,}")
    loader = NoAliases(text)  # what yaml.safe_load does, with the alias check
    try:
        return loader.get_single_data()
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE` (repeatable) for any method's parameter; read back with parse_overrides."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter of the methods' configs (e.g. drag_steps=40, n_steps=30); repeatable",
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as a mapping (values parsed as YAML; the config checks names and ranges)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DragError(f"--set {item!r}: write KEY=VALUE, e.g. --set drag_steps=40")
        overrides[key.strip()] = parse_value(value)
    return overrides


class ProgressBars:
    """One tqdm bar per stage, fed by the engine's on_progress callback."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.stage, self.bar = enabled, None, None

    def update(self, progress: Progress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if progress.stage != self.stage:
            self.close()
            self.stage = progress.stage
            label = STAGE_LABELS.get(progress.stage, progress.stage)
            self.bar = tqdm(total=progress.total, desc=label, unit="step", file=sys.stderr)
        if progress.distance is not None:
            self.bar.set_postfix_str(f"{progress.distance:.1f} px to go")
        self.bar.update(progress.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
