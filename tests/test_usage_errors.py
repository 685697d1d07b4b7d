"""One vocabulary across the commands (issue 27): a usage error is one line naming the option, then
where help is; every usage line says ``simple-keypoint NAME``; outputs the user made are not replaced
without ``--overwrite``; the ONNX cache can be shown and cleared."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import copy_tiny_dataset

from simple_keypoint import cli


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """cli.main in this process: (exit code, stdout, stderr); argparse's SystemExit is the exit code."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, first_line", [
    (["detect", "--conf", "1.5"], "simple-keypoint detect: error: --conf 1.5 is not in [0, 1]"),
    (["detect", "--backend", "tensorrt"], "simple-keypoint detect: error: --backend tensorrt is not one of: auto, torch, onnx"),
    (["track", "--keep-conf", "2"], "simple-keypoint track: error: --keep-conf 2 is not in [0, 1]"),
    (["track", "--max-missed", "x"], "simple-keypoint track: error: --max-missed x is not an integer"),
    (["evaluate", "--conf", "-0.1"], "simple-keypoint evaluate: error: --conf -0.1 is not in [0, 1]"),
    (["threshold", "heatmap", "--max-false-per-image", "-1"],
     "simple-keypoint threshold: error: --max-false-per-image -1 is not >= 0"),
    (["export", "--opset", "seventeen"], "simple-keypoint export: error: --opset seventeen is not an integer"),
    (["convert", "from-cocoa"], "simple-keypoint convert: error: COMMAND from-cocoa is not one of: "
                                "masks, from-labelme, to-labelme, from-coco, to-coco, boxes"),
    (["convert", "masks"], "simple-keypoint convert masks: error: the following arguments are required: dataset"),
    (["train", "heatmap", "--epochs", "0"], "simple-keypoint train heatmap: error: --epochs 0 is not >= 1"),
    (["train", "regression", "--lr", "nan"], "simple-keypoint train regression: error: --lr nan is not a finite number"),
    (["train", "heatmap", "--data"], "simple-keypoint train heatmap: error: --data: expected at least one argument"),
    (["label", "--conf", "1.2"], "simple-keypoint label: error: --conf 1.2 is not in [0, 1]"),
    (["label", "--score-threshold", "-1"], "simple-keypoint label: error: --score-threshold -1 is not in [0, 1]"),
    (["cache", "--clean"], "simple-keypoint cache: error: unrecognized arguments: --clean"),
])
def test_a_usage_error_is_one_line_naming_the_option_then_where_help_is(
        argv: list[str], first_line: str, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(argv, capsys)
    prog = first_line.split(": error:")[0]
    assert code == 2 and out == ""
    assert err.splitlines() == [first_line, f"see {prog} --help"], err


def test_the_command_line_front_door_errors_the_same_way(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["detcet"], capsys)
    assert code == 2 and err.splitlines()[0].startswith("simple-keypoint: error: unknown command 'detcet'")
    assert len(err.splitlines()) <= 2 and "usage:" not in err
    code, _, err = run_cli(["train", "yolo"], capsys)
    assert code == 2 and err.splitlines()[0].startswith("simple-keypoint train: error: unknown method 'yolo'")


@pytest.mark.parametrize("command", [*[c for c in cli.COMMANDS if c != "train"], "train heatmap", "train regression",
                                     "convert to-coco"])
def test_every_usage_line_names_the_command_to_type(command: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli([*command.split(), "--help"], capsys)
    assert code == 0 and out.startswith(f"usage: simple-keypoint {command} "), out[:80]


def test_the_labelling_tool_takes_conf_and_still_its_old_name() -> None:
    from landmark_annotation.__main__ import make_parser

    parser = make_parser()
    assert parser.parse_args(["frames", "--conf", "0.3"]).conf == 0.3
    assert parser.parse_args(["frames", "--score-threshold", "0.2"]).conf == 0.2  # the old spelling still works
    assert parser.parse_args(["frames"]).conf is None  # the model's threshold then
    text = parser.format_help()
    assert "--conf" in text and "--score-threshold" not in text  # hidden alias


# --- outputs the user made are never replaced without --overwrite ----------------------------------

@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return copy_tiny_dataset(tmp_path / "set", stems=("Misc_1", "Misc_10"))


def test_convert_to_coco_refuses_an_existing_file(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "notes.json"
    mine.write_text("mine", "utf-8")
    code, out, err = run_cli(["convert", "to-coco", str(dataset), "--out", str(mine)], capsys)
    assert (code, out) == (2, "") and err == f"error: {mine} already exists (--overwrite replaces it)\n"
    assert mine.read_text("utf-8") == "mine"
    code, out, err = run_cli(["convert", "to-coco", str(dataset), "--out", str(mine), "--overwrite"], capsys)
    assert code == 0, err
    assert {image["file_name"] for image in json.loads(mine.read_text("utf-8"))["images"]} == {"Misc_1.png", "Misc_10.png"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written atomically: no temp file left


def test_convert_to_labelme_refuses_a_folder_holding_its_files(dataset: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "labelme"
    out_dir.mkdir()
    mine = out_dir / "Misc_10.json"
    mine.write_text("mine", "utf-8")
    (out_dir / "unrelated.json").write_text("other", "utf-8")
    code, out, err = run_cli(["convert", "to-labelme", str(dataset), "--out", str(out_dir)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"error: {out_dir} already holds 1 of the labelme file(s) this would write, e.g. {mine} "
                   "(--overwrite replaces them)\n")
    assert sorted(p.name for p in out_dir.iterdir()) == ["Misc_10.json", "unrelated.json"]  # nothing written
    assert mine.read_text("utf-8") == "mine"
    code, _, err = run_cli(["convert", "to-labelme", str(dataset), "--out", str(out_dir), "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads(mine.read_text("utf-8"))["imagePath"].endswith("Misc_10.png")
    assert (out_dir / "unrelated.json").read_text("utf-8") == "other"


def test_the_labelling_tools_exports_refuse_existing_files_before_the_window_opens(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from landmark_annotation.__main__ import main

    coco = tmp_path / "coco.json"
    coco.write_text("mine", "utf-8")
    # Returns before any window: no display is needed for this test to pass.
    assert main([str(dataset / "images"), "--save-coco", str(coco)]) == 2
    assert capsys.readouterr().err == f"error: --save-coco {coco} already exists (--overwrite replaces it)\n"
    folder = tmp_path / "labelme"
    folder.mkdir()
    (folder / "Misc_1.json").write_text("mine", "utf-8")
    assert main([str(dataset / "images"), "--save-labelme", str(folder)]) == 2
    assert capsys.readouterr().err == (f"error: --save-labelme {folder} already holds 1 of the labelme file(s) it would "
                                       f"write, e.g. {folder / 'Misc_1.json'} (--overwrite replaces them)\n")
    assert coco.read_text("utf-8") == "mine" and (folder / "Misc_1.json").read_text("utf-8") == "mine"


def test_the_labelling_tools_savers_keep_existing_files_unless_told(dataset: Path, tmp_path: Path) -> None:
    from landmark_annotation import interchange
    from landmark_annotation.session import Session

    session = Session(dataset / "images")
    assert len(session.labelled) == 2  # the copied labels
    folder, coco = tmp_path / "labelme", tmp_path / "coco.json"
    folder.mkdir()
    mine = folder / f"{session.images[0].stem}.json"
    mine.write_text("mine", "utf-8")
    coco.write_text("mine", "utf-8")
    report = interchange.save_labelme(session, folder)
    assert report.done == 1 and report.problems == [f"{mine}: exists, not replaced (--overwrite replaces it)"]
    assert interchange.save_coco(session, coco).problems and coco.read_text("utf-8") == "mine"
    assert mine.read_text("utf-8") == "mine"
    assert interchange.save_labelme(session, folder, overwrite=True).done == len(session.labelled)
    assert interchange.save_coco(session, coco, overwrite=True).done == len(session.labelled)
    assert json.loads(mine.read_text("utf-8"))["shapes"] and json.loads(coco.read_text("utf-8"))["images"]


# --- the ONNX cache: where, how big, clear ---------------------------------------------------------

def test_cache_command_shows_and_clears_only_its_own_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint.cache import CACHE_ENV, TEMP_GRACE_SECONDS
    from simple_keypoint.onnx_cache import entry_stem

    folder = tmp_path / "my cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    code, out, _ = run_cli(["cache"], capsys)
    assert code == 0 and str(folder) in out and "not created yet" in out and CACHE_ENV in out

    folder.mkdir()
    stems = [entry_stem("ab" * 32), entry_stem("cd" * 32, opset=18)]  # names as the cache itself makes them
    for stem in stems:
        (folder / f"{stem}.onnx").write_bytes(b"x" * 600_000)
        (folder / f"{stem}.json").write_text("{}", "utf-8")
    stale = folder / f".{stems[0]}.onnx.k2j3.tmp"  # left by a writer that was killed
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * TEMP_GRACE_SECONDS,) * 2)
    writing = folder / f".{stems[1]}.onnx.z9y8.tmp"  # another process is writing it now
    writing.write_bytes(b"x")
    other = folder / "notes.onnx"  # the variable may point at a folder holding the user's own files
    other.write_bytes(b"mine")

    code, out, _ = run_cli(["cache"], capsys)
    assert code == 0 and "2 cached export(s), 1.2 MB" in out
    code, out, _ = run_cli(["cache", "--clear"], capsys)
    assert code == 0 and out.startswith("removed 2 cached export(s), 1.2 MB, from ")
    assert sorted(p.name for p in folder.iterdir()) == sorted([other.name, writing.name])
    code, out, _ = run_cli(["cache"], capsys)
    assert "0 cached export(s)" in out


def test_the_cache_folder_follows_the_variable_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simple_keypoint import onnx_cache
    from simple_keypoint.cache import CACHE_ENV, cache_folder

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "simple_keypoint"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert cache_folder() == onnx_cache.cache_folder() == tmp_path / "here"  # the cache writes where the command looks
