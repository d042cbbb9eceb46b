"""The editing methods a benchmark compares on the same samples: any method of the registry, driven by a
point drag (DragRequest) with one config for the whole run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .. import methods
from ..runtime import Runtime
from ..session_io import save_result
from ..types import DragRequest, EditResult


@dataclass
class EvalMethod:
    name: str  # shown in tables
    config: object  # the method's config, as recorded in results
    edit: Callable[[DragRequest], EditResult]

    def save(self, result: EditResult, path: Path) -> None:
        """The result PNG with its session embedded, and the session as NAME.json."""
        save_result(result.image, result.session, path)


def make_methods(names: list[str], runtime: Runtime, overrides: dict) -> list[EvalMethod]:
    """One EvalMethod per name; `overrides` (--set) may mix the methods' config fields, each takes its own."""
    own = methods.split_overrides(overrides, names)
    made = []
    for name in names:
        method = runtime.method(name)
        config = method.default_config(**own[name])
        edit = lambda request, method=method, config=config: method.edit(replace(request, config=config))  # noqa: E731
        made.append(EvalMethod(methods.info(name).title, config, edit))
    return made
