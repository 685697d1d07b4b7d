"""The ``simple-keypoint`` command: each subcommand is the entry point it names, and every default
works when run from another folder (python REPO/detect.py, python -m simple_keypoint)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest
from conftest import PATIENCE, REPO, run_python

import simple_keypoint
from simple_keypoint import cli

TEST_IMAGES = REPO / "data" / "test" / "images"


def test_version_and_help(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"simple-keypoint {simple_keypoint.__version__}\n"
    assert simple_keypoint.__version__.count(".") == 2
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert f"\n  {command} " in out
    assert cli.main([]) == 2 and "usage: simple-keypoint COMMAND" in capsys.readouterr().err
    assert cli.main(["detcet"]) == 2
    assert capsys.readouterr().err == (f"simple-keypoint: error: unknown command 'detcet'; choose from {', '.join(cli.COMMANDS)}\n"
                                       "see simple-keypoint --help\n")


@pytest.mark.parametrize("argv, module", [
    (["detect", "--conf", "0.5"], "simple_keypoint.detect"),
    (["train", "heatmap", "--epochs", "1"], "simple_keypoint.heatmap.train"),
    (["train", "regression", "--epochs", "1"], "simple_keypoint.regression.train"),
    (["evaluate", "--data", "x"], "simple_keypoint.evaluate"),
    (["export", "--weights", "w.pt"], "simple_keypoint.export"),
    (["label", "frames/"], "landmark_annotation.__main__"),
])
def test_subcommands_call_the_entry_points_main(argv: list[str], module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fake = types.ModuleType(module)
    fake.main = lambda rest: calls.append(rest) or 7
    monkeypatch.setitem(sys.modules, module, fake)
    assert cli.main(argv) == 7
    assert calls == [argv[2:] if argv[0] == "train" else argv[1:]]


def test_subcommands_resolve_to_the_real_functions() -> None:
    import landmark_annotation.__main__
    import simple_keypoint.detect
    import simple_keypoint.evaluate
    import simple_keypoint.export
    import simple_keypoint.heatmap.train
    import simple_keypoint.regression.train

    assert cli.load_main("simple_keypoint.detect") is simple_keypoint.detect.main
    assert cli.load_main(cli.trainers()["heatmap"]) is simple_keypoint.heatmap.train.main
    assert cli.load_main(cli.trainers()["regression"]) is simple_keypoint.regression.train.main
    assert cli.load_main(cli.COMMANDS["evaluate"][0]) is simple_keypoint.evaluate.main
    assert cli.load_main(cli.COMMANDS["export"][0]) is simple_keypoint.export.main
    assert cli.load_main(cli.COMMANDS["label"][0]) is landmark_annotation.__main__.main


def test_train_methods_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from simple_keypoint import methods
    from simple_keypoint.method import Method

    assert cli.trainers() == {"heatmap": "simple_keypoint.heatmap.train", "regression": "simple_keypoint.regression.train"}
    plugin = type("Plugin", (Method,), {"name": "plugin", "__module__": "my_plugins.plugin.method"})
    monkeypatch.setitem(methods._METHODS, "plugin", plugin.__new__(plugin))
    assert cli.trainers()["plugin"] == "my_plugins.plugin.train"


def test_train_needs_a_method(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err == ("simple-keypoint train: error: a method is needed; choose from heatmap, regression\n"
                                       "see simple-keypoint train --help\n")
    assert cli.main(["train", "unet"]) == 2 and "unknown method 'unet'" in capsys.readouterr().err
    assert cli.main(["train", "--help"]) == 0 and capsys.readouterr().out.startswith("usage: simple-keypoint train")


def test_a_missing_module_is_one_line_but_a_missing_dependency_is_not_hidden(monkeypatch: pytest.MonkeyPatch,
                                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(cli.COMMANDS, "convert", ("simple_keypoint.not_here", "x"))
    assert cli.main(["convert", "a", "b"]) == 2
    assert capsys.readouterr().err == (f"error: simple-keypoint convert is not available: simple_keypoint.not_here "
                                       f"is not part of simple-keypoint {simple_keypoint.__version__}\n")
    monkeypatch.setitem(cli.COMMANDS, "convert", ("simple_keypoint.broken_dep", "x"))

    def failing_import(name: str, *args: object) -> object:
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(cli.importlib, "import_module", failing_import)
    with pytest.raises(ModuleNotFoundError, match="scipy"):
        cli.main(["convert"])


def test_detect_with_every_default_from_another_folder(tmp_path: Path) -> None:
    """The issue's new user: python REPO/detect.py from elsewhere finds the test images and weights,
    and a second run goes to a new folder."""
    first = run_python(REPO / "detect.py", "--quiet", cwd=tmp_path, timeout=PATIENCE)
    assert first.returncode == 0, first.stdout + first.stderr
    count = len(list(TEST_IMAGES.iterdir()))
    assert f"{count} image(s) done" in first.stdout and "results in output/detect\n" in first.stdout
    assert len(list((tmp_path / "output" / "detect" / "labels").iterdir())) == count
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(TEST_IMAGES / "Misc_15.png", frames)
    second = run_python("-m", "simple_keypoint", "detect", "--source", "frames", "--quiet", cwd=tmp_path, timeout=PATIENCE)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 image(s) done" in second.stdout and "results in output/detect2\n" in second.stdout
    assert [p.name for p in (tmp_path / "output" / "detect2" / "labels").iterdir()] == ["Misc_15.txt"]
    third = run_python("-m", "simple_keypoint", "detect", "--source", "frames", "--quiet", "--exist-ok", cwd=tmp_path)
    assert third.returncode == 0 and "results in output/detect\n" in third.stdout
    assert not (tmp_path / "output" / "detect3").exists()
