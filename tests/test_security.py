"""Security: loopback by default, no public link by default, pixel limits before decoding,
safetensors only, session paths kept in their folder, and no code-running deserialisation in the package."""

import ast
import json
import logging
import pickle
import shutil
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image, ImageFile

import app
from dragdiff import DragError, Point
from dragdiff.config import resolve_config
from dragdiff.drag import DragConfig
from dragdiff.interactive.jobs import Runtimes
from dragdiff.models import load_model
from dragdiff.point_session import Session, load_session
from dragdiff.session_io import save_result_png

ROOT = Path(__file__).resolve().parent.parent


def test_the_server_binds_loopback_and_shares_nothing_by_default(monkeypatch):
    args = app.build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.share is False
    flags = app.build_parser().parse_args(["--host", "0.0.0.0", "--share"])
    assert flags.host == "0.0.0.0" and flags.share is True
    # What main() hands to gradio when run without flags
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    monkeypatch.setattr(app, "SETTINGS", app.Settings())  # main() sets these process-wide; undone after
    monkeypatch.setattr(app, "RUNTIMES", Runtimes())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    app.main([])
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False
    # Pillow's limit guards what Gradio decodes before any handler (editor layers, data: URLs): never off
    assert Image.MAX_IMAGE_PIXELS == app.SETTINGS.max_image_pixels


@pytest.fixture
def small_limit(monkeypatch, tmp_path):
    """The app as `--max-image-pixels 10000` runs it; decoding an image above the limit fails the test."""
    original = ImageFile.ImageFile.load

    def load(self):
        assert self.width * self.height <= 10_000, "an image above the limit was decoded"
        return original(self)

    monkeypatch.setattr(app.SETTINGS, "max_image_pixels", 10_000)
    monkeypatch.setattr(app.SETTINGS, "outputs", tmp_path / "outputs")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # as main() sets it
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_uploads_above_the_configured_pixel_limit_are_refused_before_decoding(small_limit, scene, tmp_path):
    path = tmp_path / "big.png"
    scene.save(path)  # 128×96 = 12,288 pixels
    words = "128×96 = 12,288 pixels, above the limit of 10,000 pixels (100×100); downscale it"
    with pytest.warns(UserWarning, match="above the limit"):
        shown = app.on_upload(str(path), app.new_state())
    assert shown[app.DRAG.state].image is None and words in shown[app.DRAG.status]
    with pytest.raises(gr.Error, match=r"above the limit of 10,000 pixels"):
        app.api_edit({"path": str(path)}, "40,48>60,48", None, "", "tiny", "{}")
    assert not (tmp_path / "outputs").exists()


def test_a_session_cannot_carry_an_image_past_the_configured_limit(small_limit, scene, tmp_path):
    # A result PNG written by another server with a higher limit: its session's image is 12,288 pixels
    session = Session(scene, (Point(40, 48),), (Point(60, 48),), None, "", "tiny", resolve_config(DragConfig))
    result = tmp_path / "result.png"
    save_result_png(Image.new("RGB", (64, 64)), session, result)
    with pytest.warns(UserWarning, match="above the limit"):
        restored = app.load_saved(str(result), app.new_state())
    assert app.DRAG.state not in restored  # nothing restored
    assert "session.image: image data is 128×96 = 12,288 pixels, above the limit of 10,000" in restored[app.DRAG.status]


# -- weights: safetensors only ----------------------------------------------------------------------------


def plant_pickle(path: Path, marker: Path) -> None:
    """A pickle that creates `marker` if anything ever unpickles it (torch.load included)."""

    class Exploit:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').close()",)

    path.write_bytes(pickle.dumps({"state_dict": Exploit()}))


def test_pickled_weights_beside_safetensors_are_ignored_with_a_message(tiny_folder, tmp_path, caplog):
    folder, marker = tmp_path / "model", tmp_path / "unpickled"
    shutil.copytree(tiny_folder, folder)
    planted = ["unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.bin"]
    for name in [*planted, "model.ckpt"]:
        plant_pickle(folder / name, marker)
    with caplog.at_level(logging.WARNING, logger="dragdiff.models"):
        model = load_model(str(folder), device="cpu")
    assert model.native_resolution == 128 and not marker.exists()
    assert "ignoring pickled weights" in caplog.text and "only .safetensors files are loaded" in caplog.text
    assert all(name in caplog.text for name in [*planted, "model.ckpt"])
    # With the text encoder's safetensors gone, its .bin is not a fallback: the load is refused
    (folder / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(DragError, match=r"cannot load model .* with \.safetensors weights"):
        load_model(str(folder), device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.ckpt", "model.bin", "model.pt"])
def test_a_pickled_single_file_checkpoint_is_refused_unread(tmp_path, name):
    plant_pickle(tmp_path / name, tmp_path / "unpickled")
    with pytest.raises(DragError, match=r"only \.safetensors checkpoints are loaded .* convert it to safetensors"):
        load_model(str(tmp_path / name), device="cpu")
    assert not (tmp_path / "unpickled").exists()


def test_a_pickle_renamed_to_safetensors_is_refused_unread(tmp_path):
    plant_pickle(tmp_path / "model.safetensors", tmp_path / "unpickled")
    with pytest.raises(
        DragError, match=r"cannot load the checkpoint .* Give a complete Stable Diffusion \.safetensors"
    ):
        load_model(str(tmp_path / "model.safetensors"), device="cpu")
    assert not (tmp_path / "unpickled").exists()


# -- session paths stay in the session's folder -------------------------------------------------------------


def write_session(folder: Path, image: dict, mask: dict | None = None) -> Path:
    data = {
        "format": "dragdiff-session",
        "version": 1,
        "image": image,
        "mask": mask,
        "points": [{"handle": [40, 48], "target": [60, 48]}],
        "model": "tiny",
    }
    path = folder / "session.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def folders(tmp_path, scene):
    """tmp/sessions holds the session (and in.png); tmp/secret.png lies outside it."""
    inside = tmp_path / "sessions"
    inside.mkdir()
    scene.save(inside / "in.png")
    scene.save(tmp_path / "secret.png")
    return inside


@pytest.mark.parametrize(
    ("image", "mask", "words"),
    [
        ({"path": "/etc/passwd"}, None, "image.path: '/etc/passwd' is absolute; give a path relative to the session"),
        ({"path": "../secret.png"}, None, "image.path: '../secret.png' points outside the session's folder; keep"),
        ({"path": "in.png"}, {"path": "../secret.png"}, "mask.path: '../secret.png' points outside the session's"),
        ({"path": "link.png"}, None, "image.path: 'link.png' points outside the session's folder; keep the file"),
    ],
    ids=["absolute", "parent", "mask", "symlink"],
)
def test_session_paths_cannot_leave_their_folder(folders, image, mask, words):
    (folders / "link.png").symlink_to(folders.parent / "secret.png")  # inside by name, outside in fact
    path = write_session(folders, image, mask)
    with pytest.raises(DragError) as error:
        load_session(path)
    assert words in str(error.value)
    with pytest.warns(UserWarning, match="session"):  # gr.Warning: the toast the user sees
        restored = app.load_saved(str(path), app.new_state())
    assert app.DRAG.state not in restored and words in restored[app.DRAG.status]
    assert load_session(write_session(folders, {"path": "in.png"})).image.size == (128, 96)  # inside is fine


# -- no eval, exec or unsafe deserialisation anywhere in the package ----------------------------------------

UNSAFE = {"eval", "exec", "compile", "pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.load"}
UNSAFE |= {"marshal.loads", "shelve.open", "yaml.load", "yaml.unsafe_load", "dill.load", "dill.loads", "joblib.load"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str) -> list[str]:
    """Calls that can run code from data: eval/exec, pickle-family loads, torch.load without weights_only=True,
    numpy.load with allow_pickle=True, and Unpickler subclasses without a find_class allow-list."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name, keywords = dotted(node.func), {k.arg: k.value for k in node.keywords}
            if name in UNSAFE or (name == "torch.load" and not is_true(keywords.get("weights_only"))):
                found.append(f"line {node.lineno}: {name}(")
            elif name in ("np.load", "numpy.load") and is_true(keywords.get("allow_pickle")):
                found.append(f"line {node.lineno}: {name}(allow_pickle=True)")
        elif isinstance(node, ast.ImportFrom) and node.module in ("pickle", "marshal", "dill", "torch"):
            found += [f"line {node.lineno}: from {node.module} import load" for a in node.names if "load" in a.name]
        elif isinstance(node, ast.ClassDef) and "pickle.Unpickler" in map(dotted, node.bases):
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if "find_class" not in methods:
                found.append(f"line {node.lineno}: class {node.name} unpickles without find_class")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = "eval(x)\nexec(x)\npickle.loads(b)\ntorch.load(f)\nnp.load(f, allow_pickle=True)\nfrom pickle import load\n"
    bad += "class U(pickle.Unpickler):\n    pass\n"
    assert len(unsafe_calls(bad)) == 7
    fine = "model.eval()\ntorch.load(f, weights_only=True)\nre.compile('x')\nnp.load(f)\njson.loads(s)\n"
    fine += "class U(pickle.Unpickler):\n    def find_class(self, module, name):\n        raise ValueError\n"
    assert unsafe_calls(fine) == []


def test_no_eval_exec_or_unsafe_deserialisation_in_the_package():
    sources = sorted((ROOT / "dragdiff").rglob("*.py")) + [ROOT / "app.py"]
    assert len(sources) > 20
    found = {
        str(path.relative_to(ROOT)): calls
        for path in sources
        if (calls := unsafe_calls(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"code that can run data as code: {found}"
