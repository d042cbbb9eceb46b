"""The CLI end to end on the tiny model: a result PNG replays to the same bytes; bad input writes nothing."""

import json

import pytest

from dragdiff.cli import main
from dragdiff.point_session import load_session

FAST_FLAGS = [
    "--method",
    "dragdiffusion",
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--quiet",
    "--lora-steps",
    "2",
    "--lora-batch-size",
    "2",
    "--n-inference-steps",
    "10",
    "--n-inversion-steps",
    "7",
    "--drag-steps",
    "3",
]


@pytest.fixture
def inputs(tmp_path, scene):
    scene.save(tmp_path / "in.png")
    return tmp_path


def test_edit_writes_a_png_whose_session_replays_to_the_same_bytes(inputs, tmp_path):
    out = tmp_path / "out" / "result.png"
    code = main(
        [
            "edit",
            "--image",
            str(inputs / "in.png"),
            "--points",
            "40,48>60,48; 90,30>90,40",
            "--prompt",
            "a red disc",
            "--cache-dir",
            str(tmp_path / "c1"),
            "--out",
            str(out),
            *FAST_FLAGS,
        ]
    )
    assert code == 0 and out.is_file()
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["model"] == "tiny" and summary["config"]["drag_steps"] == 3
    assert len(summary["handle_track"][0]) == 2
    assert out.with_suffix(".json").read_text() == load_session(out).to_json()  # NAME.json: the session itself

    session = load_session(out)
    assert [p.as_list() for p in session.handles] == [[40.0, 48.0], [90.0, 30.0]]
    assert session.prompt == "a red disc" and session.config.lora_steps == 2

    replay = tmp_path / "replay.png"  # a fresh cache: LoRA and inversion are recomputed from the session alone
    assert (
        main(["edit", "--session", str(out), "--cache-dir", str(tmp_path / "c2"), "--quiet", "--out", str(replay)]) == 0
    )
    assert replay.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("points", "words"),
    [
        ("40,48>60,48; 10,10", "pair 2"),
        ("40,48>600,48", "outside"),
        ("", "--points"),
        (" ; ", "point"),
        ("a,b>1,2", "pair 1"),
    ],
)
def test_bad_points_are_refused_and_nothing_is_written(inputs, tmp_path, capsys, points, words):
    out = tmp_path / "never.png"
    code = main(["edit", "--image", str(inputs / "in.png"), "--points", points, "--out", str(out), *FAST_FLAGS])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: ") and words in error
    assert not out.exists() and not out.with_suffix(".json").exists()


def edit_in(inputs, out, *extra):
    return main(
        ["edit", "--image", str(inputs / "in.png"), "--points", "1,1>5,5", "--out", str(out), *FAST_FLAGS, *extra]
    )


def test_bad_parameter_and_mask_are_named(inputs, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "never.png"
    assert edit_in(inputs, out, "--drag-lr", "fast") == 2
    assert "drag_lr" in capsys.readouterr().err
    Image.new("L", (50, 50), 255).save(tmp_path / "mask.png")
    assert edit_in(inputs, out, "--mask", str(tmp_path / "mask.png")) == 2
    assert "50×50" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("in.png", "would overwrite the --image input"),
        ("in.json", "end the name in .png"),
        ("folder", "is a folder; name the PNG file to write"),
        ("x.jpg", "results are PNG files with the session inside"),
    ],
)
def test_a_wrong_out_is_refused_before_any_work(inputs, capsys, monkeypatch, out, words):
    import dragdiff.cli

    (inputs / "folder").mkdir()
    before = (inputs / "in.png").read_bytes()
    monkeypatch.setattr(dragdiff.cli, "_request", lambda args: pytest.fail("the edit began"))
    assert edit_in(inputs, inputs / out) == 2
    assert words in capsys.readouterr().err and (inputs / "in.png").read_bytes() == before
    assert sorted(p.name for p in inputs.iterdir()) == ["folder", "in.png"]  # nothing written


def test_an_out_beside_the_session_it_replays_is_refused(inputs, tmp_path, capsys):
    (inputs / "edit.json").write_text("{}")
    code = main(["edit", "--session", str(inputs / "edit.json"), "--out", str(inputs / "edit.png")])
    assert code == 2 and "would overwrite the --session input" in capsys.readouterr().err


def test_help_explains_every_parameter(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    text = capsys.readouterr().out
    for flag in [
        "--image",
        "--points",
        "--mask",
        "--session",
        "--model",
        "--out",
        "--drag-steps",
        "--lora-steps",
        "--mask-weight",
        "--reference-attention-blocks",
        "--seed",
    ]:
        assert flag in text
