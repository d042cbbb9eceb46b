"""One runtime, methods as peers: the registry reaches every entry point, one config resolver serves them
all, Geometry converts every coordinate, and the minimal Python call runs on the bundled model."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image, ImageOps

from dragdiff import DragRequest, EditResult, Point, methods
from dragdiff.config import MethodConfig, resolve_config
from dragdiff.coords import Display, Geometry
from dragdiff.drag import DragConfig
from dragdiff.point_session import load_session
from dragdiff.runtime import Runtime
from dragdiff.session_io import session_json

# -- a toy method, registered by the test alone ----------------------------------------------------------


@dataclass(frozen=True)
class MirrorConfig(MethodConfig):
    DEFAULTS_FILE: ClassVar[str] = ""  # set to a file in the test's tmp_path
    MODEL_SECTION: ClassVar[str | None] = "mirror"
    RULES: ClassVar[dict] = {"seed": (int, 0, 10, False), "flip": (bool, None, None, False)}

    seed: int
    flip: bool


@dataclass(frozen=True)
class MirrorSession:
    request: DragRequest
    model: str

    def to_json(self) -> str:
        return session_json({"format": "mirror-session", "model": self.model, "config": self.request.config.to_dict()})


class Mirror:
    """Mirrors the image: what a third method needs to be, and nothing more."""

    name = "mirror"
    config_type = MirrorConfig
    request_types = (DragRequest,)
    session_format = "mirror-session"

    def __init__(self, runtime: Runtime):
        self.runtime, self.model = runtime, runtime.model

    def default_config(self, mode: str | None = None, **layers: Any) -> MirrorConfig:
        return resolve_config(MirrorConfig, self.model, **layers)

    def edit(self, request: DragRequest, on_progress=None, should_stop=None) -> EditResult:
        config = request.config or self.default_config()
        image = ImageOps.mirror(request.image) if config.flip else request.image.copy()
        session = MirrorSession(replace(request, config=config), self.model.spec)
        return EditResult(image=image, session=session, timings={"total": 0.5}, config=config, model=self.model.spec)

    @classmethod
    def request_from_session(cls, data, folder, max_pixels=None):
        raise NotImplementedError


@pytest.fixture
def mirror(tmp_path):
    defaults = tmp_path / "mirror.yaml"
    defaults.write_text("seed: 1  # the seed\nflip: true  # mirror the image\n")
    MirrorConfig.DEFAULTS_FILE = str(defaults)  # absolute: it joins dragdiff/configs as itself
    methods.register("mirror", Mirror, title="Mirror", summary="mirrors the image (a test's toy method)")
    yield Mirror
    methods.unregister("mirror")


def test_a_registered_method_appears_in_the_cli_help_and_runs_there(mirror, scene, tmp_path, capsys):
    from dragdiff.cli import main

    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    assert "mirror: mirrors the image" in " ".join(capsys.readouterr().out.split())  # help text is wrapped
    scene.save(tmp_path / "in.png")
    args = ["edit", "--method", "mirror", "--image", str(tmp_path / "in.png"), "--points", "40,48>60,48"]
    assert main([*args, "--model", "tiny", "--quiet", "--out", str(tmp_path / "out.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(ImageOps.mirror(scene)))
    assert json.loads((tmp_path / "out.json").read_text())["format"] == "mirror-session"
    assert json.loads((tmp_path / "out.summary.json").read_text())["config"] == {"seed": 1, "flip": True}


def test_a_registered_method_runs_in_the_evaluation_and_the_benchmark(mirror, tmp_path, capsys):
    from dragdiff.bench import main as bench_main
    from dragdiff.eval.__main__ import main as eval_main

    out = tmp_path / "shapes"
    args = ["shapes", "--model", "tiny", "--count", "1", "--out", str(out), "--method", "mirror"]
    assert eval_main([*args, "--set", "flip=false"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"] == {"Mirror": {"seed": 1, "flip": False}}
    assert {row["method"] for row in results["rows"]} == {"no edit", "naive warp", "Mirror"}
    fast = ["--set", "lora_steps=0", "--set", "drag_steps=1", "--set", "n_inference_steps=4"]
    bench = ["--model", "tiny", "--size", "64", "--no-flops", "--no-warmup", "--methods", "mirror", *fast]
    assert bench_main([*bench, "--set", "n_inversion_steps=2", "--out", str(tmp_path / "b.json")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["methods"]["mirror"]["total_vs_first"] == 1.0 and "mirror" in capsys.readouterr().out


def test_a_registered_method_is_offered_and_runs_in_the_app(mirror, scene, tmp_path, monkeypatch):
    import app

    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    assert ("Mirror", "mirror") in app.on_page_load("", app.new_state())[app.DRAG.method]["choices"]
    state = app.new_state().fresh(image=scene, clicks=[[40.0, 48.0], [60.0, 48.0]])
    *_, last = app.run(state, "", "tiny", "mirror", "drag", 1.0, *app.panel_values("tiny"))
    assert "Done" in last[app.DRAG.status]
    assert np.array_equal(np.asarray(Image.open(last[app.DRAG.download])), np.asarray(ImageOps.mirror(scene)))


def test_a_runtime_hands_each_method_the_same_model_and_lock(tiny_model):
    runtime = Runtime(tiny_model)
    drag, dragon = runtime.method("dragdiffusion"), runtime.method("dragon")
    assert drag.model is dragon.model is tiny_model and drag.runtime is dragon.runtime is runtime
    assert runtime.method("dragon") is dragon
    with pytest.raises(Exception, match="not one of"):
        runtime.method("nope")


# -- one config resolver ----------------------------------------------------------------------------------

# Explicit values, one equal to the generic default (mask_weight 0.1) that the demo model's own 0.5 must not beat.
OVERRIDES = dict(mask_weight=0.1, lora_steps=0, drag_steps=1, n_inference_steps=4, n_inversion_steps=2, resolution=64)


def _demo_config_via(path: str, tmp_path, image: Image.Image) -> dict:
    if path == "python":
        return Runtime("demo").method("dragdiffusion").default_config(**OVERRIDES).to_dict()
    if path in ("cli", "session replay"):
        from dragdiff.cli import main

        image.save(tmp_path / "in.png")
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in OVERRIDES.items()]
        args = ["edit", "--image", str(tmp_path / "in.png"), "--points", "44,64>64,64", "--model", "demo"]
        args += ["--method", "dragdiffusion"]
        assert main([*args, *flags, "--quiet", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "a.png")]) == 0
        if path == "session replay":
            replay = ["edit", "--session", str(tmp_path / "a.json"), "--quiet", "--out", str(tmp_path / "b.png")]
            assert main([*replay, "--cache-dir", str(tmp_path)]) == 0
            return json.loads((tmp_path / "b.json").read_text())["config"]
        return json.loads((tmp_path / "a.json").read_text())["config"]
    import app

    values = app.panel_values("demo")  # what the Advanced panel shows for the demo model
    for name, value in OVERRIDES.items():
        values[app.PARAMS.index(name)] = value  # ... and what the user then set in it
    state = app.new_state().fresh(image=image, clicks=[[44.0, 64.0], [64.0, 64.0]])
    *_, last = app.run(state, "", "demo", "dragdiffusion", "drag", 1.0, *values)
    return load_session(last[app.DRAG.download]).config.to_dict()


@pytest.fixture(scope="module")
def demo_image():
    yy, xx = np.mgrid[0:128, 0:128]
    image = np.full((128, 128, 3), 230, np.uint8)
    image[(xx - 44) ** 2 + (yy - 64) ** 2 < 12**2] = (220, 30, 30)
    return Image.fromarray(image)


@pytest.fixture(scope="module")
def expected_demo_config():
    from dragdiff.models import model_defaults

    config = resolve_config(DragConfig, model_defaults("demo"), **OVERRIDES).to_dict()
    assert config["mask_weight"] == 0.1  # the explicit value, equal to the generic default, beat the model's 0.5
    assert config["feature_blocks"] == [1, 2] and config["drag_lr"] == 0.1  # the demo model's own values
    return config


@pytest.mark.parametrize("path", ["python", "cli", "session replay", "app"])
def test_cli_app_python_and_replay_run_the_same_config(path, tmp_path, demo_image, expected_demo_config, monkeypatch):
    if path == "app":
        import app

        monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    assert _demo_config_via(path, tmp_path, demo_image) == expected_demo_config


def test_the_app_panel_shows_the_selected_models_values():
    import app

    shown = dict(zip(app.PARAMS, app.panel_values("demo"), strict=True))
    assert (shown["mask_weight"], shown["feature_blocks"], shown["n_inversion_steps"]) == (0.5, "1, 2", 30)
    assert shown["reference_attention_blocks"] == "0, 1"
    generic = dict(zip(app.PARAMS, app.panel_values("tiny"), strict=True))  # tiny has no dragdiff.yaml
    assert (generic["mask_weight"], generic["reference_attention_blocks"]) == (0.1, "2, 3")


def test_the_layers_apply_in_the_documented_order(tmp_path):
    from dragdiff.dragon import DragonConfig

    model = {"drag_lr": 0.2, "mask_weight": 0.3, "dragon": {"cfg_scale": 2.0, "modes": {"move": {"w_edit": 1.0}}}}
    file = tmp_path / "mine.yaml"
    file.write_text("mask_weight: 0.4\nseed: 5\n")
    config = resolve_config(DragConfig, model, file=file, session={"seed": 6, "drag_steps": 7}, drag_steps=8)
    assert (config.drag_lr, config.mask_weight, config.seed, config.drag_steps) == (0.2, 0.4, 6, 8)
    dragon = resolve_config(DragonConfig, model, mode="move")
    assert (dragon.cfg_scale, dragon.w_edit, dragon.step_constant) == (2.0, 1.0, 0.08)  # model, model mode, built-in


def test_the_minimal_call_runs_on_the_bundled_model_with_its_own_defaults(demo_image):
    from dragdiff import DragDiffusion

    method = DragDiffusion("demo")
    stopped = []

    def stop_after_the_first_step() -> bool:  # the defaults' full LoRA is minutes: one step proves the call
        stopped.append(True)
        return len(stopped) > 1

    from dragdiff import DragCancelled

    with pytest.raises(DragCancelled):
        method.edit(DragRequest(demo_image, (Point(44, 64),), (Point(64, 64),)), should_stop=stop_after_the_first_step)
    assert method.default_config().reference_attention_blocks == (0, 1)  # the demo's, not the generic [3]


# -- Geometry and Display: every coordinate conversion, round trips on non-square images --------------------


@pytest.mark.parametrize("size", [(128, 96), (96, 128), (333, 101)])
def test_points_survive_the_round_trip_through_the_feature_grid(size):
    geometry = Geometry.for_image(size, 512, 8, 0.25)
    points = (Point(0, 0), Point(size[0] - 1, size[1] - 1), Point(size[0] / 3, size[1] / 2))
    back = geometry.from_grid(geometry.to_grid(points))
    assert all(abs(a.x - b.x) < 0.02 and abs(a.y - b.y) < 0.02 for a, b in zip(points, back, strict=True))


@pytest.mark.parametrize("size", [(128, 96), (96, 128), (333, 101)])
def test_offsets_and_paste_positions_scale_per_axis(size):
    geometry = Geometry.for_image(size, 256, 8, 0.25)
    rows, cols = geometry.offset_on(size[0] / 2, size[1] / 4, geometry.feature_size)
    assert (cols, rows) == pytest.approx((geometry.feature_size[0] / 2, geometry.feature_size[1] / 4))
    x, y = geometry.to_work(Point(size[0], size[1]))
    assert (x, y) == pytest.approx(geometry.work_size)
    rows, cols = geometry.offset_on(x, y, geometry.latent_size, pixels_of="work")
    assert (cols, rows) == pytest.approx(geometry.latent_size)
    assert Geometry.work_size_at(size, 8) == (round(size[0] / 8) * 8, round(size[1] / 8) * 8)


@pytest.mark.parametrize("size", [(128, 96), (96, 128), (4000, 300)])
def test_display_clicks_map_back_to_image_pixels(size):
    display = Display(size)
    assert max(display.size) == display.side
    for x, y in [(0.0, 0.0), (size[0] - 1.0, size[1] - 1.0), (size[0] / 3, size[1] / 7)]:
        assert display.to_image(*display.from_image(x, y)) == pytest.approx([x, y], abs=0.051)
