"""The editing methods a benchmark can compare on the same samples: DragDiffusion and DragonDiffusion's
content drag, both driven by a DragRequest (image, points, mask, prompt) and saved with their session."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from ..config import DragConfig
from ..engine import DragEngine
from ..errors import DragError
from ..types import DragRequest

METHODS = {"dragdiffusion": "DragDiffusion", "dragon": "DragonDiffusion"}


@dataclass
class Method:
    name: str  # shown in tables
    config: object  # DragConfig or DragonConfig, as recorded in results
    edit: Callable[[DragRequest], Image.Image]
    save: Callable[[Image.Image, DragRequest, Path], None]  # the result PNG with its session, and the session JSON


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """--set values that mix DragConfig and DragonConfig fields -> (DragDiffusion's, DragonDiffusion's); a
    name both have (seed, resolution, feature_blocks) goes to both, one neither has is an error."""
    from ..dragon import DragonConfig

    drag_fields = {f.name for f in dataclasses.fields(DragConfig)}
    dragon_fields = {f.name for f in dataclasses.fields(DragonConfig)}
    unknown = sorted(set(overrides) - drag_fields - dragon_fields)
    if unknown:
        raise DragError(f"--set: unknown parameter(s) {unknown}; see configs/drag.yaml and configs/dragon.yaml")
    pick = lambda names: {k: v for k, v in overrides.items() if k in names}  # noqa: E731
    return pick(drag_fields), pick(dragon_fields)


def make_method(name: str, engine: DragEngine, overrides: dict) -> Method:
    """`overrides` may mix DragConfig and DragonConfig fields (--set); each method takes its own."""
    from ..dragon import ContentDragRequest, DragonEditor

    drag_overrides, dragon_overrides = split_overrides(overrides)
    if name == "dragdiffusion":
        config = engine.default_config(**drag_overrides)

        def drag(request: DragRequest) -> Image.Image:
            return engine.drag(replace(request, config=config)).image

        return Method(METHODS[name], config, drag, _dragdiffusion_saver(engine, config))
    if name == "dragon":
        editor = DragonEditor(engine)
        dragon_config = editor.default_config("drag", **dragon_overrides)

        def content(request: DragRequest) -> ContentDragRequest:
            r = request
            return ContentDragRequest(r.image, r.handles, r.targets, r.mask, r.prompt, dragon_config)

        def save(image: Image.Image, request: DragRequest, path: Path) -> None:
            from ..dragon.session import save_result

            save_result(image, content(request), engine.model.spec, dragon_config, path)

        return Method(METHODS[name], dragon_config, lambda request: editor.edit(content(request)).image, save)
    raise DragError(f"--method: {name!r} is not one of {list(METHODS)}")


def _dragdiffusion_saver(engine: DragEngine, config: DragConfig):
    def save(image: Image.Image, request: DragRequest, path: Path) -> None:
        from ..session import Session, save_result_png, save_session

        session = Session.from_request(replace(request, config=config), engine.model.spec)
        save_session(session, path.with_suffix(".json"))
        save_result_png(image, session, path)

    return save
