"""The command line as a pip user meets it (issue 21), mostly run as the installed ``simple-keypoint``
from another folder (tests/test_packaging.py's way): the shipped models by name in every command that
takes weights, the README's Python snippet from anywhere, no folder left behind by a failed run, no
library noise beside the one-line errors, checked option ranges, ``--resume`` of a finished run, and
help texts that name the command and state each default once."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, TINY_TRAIN_ARGS, free_port, installed_command, run_outside

from simple_keypoint import options, runs
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.images import ImageError, read_image
from simple_keypoint.paths import SHIPPED_NAMES, DefaultPathError, resolve_weights, sample_image, shipped_weights
from simple_keypoint.quiet import native_stderr_filtered

TEST = REPO / "data" / "test"
BAD_NAME = "error: heatmap_x: no such file, nor a shipped model name (heatmap, heatmap_n, regression)\n"


def labelled(folder: Path, stems: tuple[str, ...] = ("Misc_15", "Misc_111")) -> Path:
    """A small dataset folder (images/ and labels/) copied from the SIRST test split."""
    for sub, suffix in (("images", ".png"), ("labels", ".txt")):
        (folder / sub).mkdir(parents=True)
        for stem in stems:
            shutil.copy(TEST / sub / f"{stem}{suffix}", folder / sub)
    return folder


def corrupt_png(path: Path) -> Path:
    """A PNG whose compressed data is damaged: libpng prints its own ``libpng error: ...`` line for it."""
    ok, data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    data = bytearray(data.tobytes())
    data[data.find(b"IDAT") + 10] ^= 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def stored_conf(name: str) -> float:
    return float(load_checkpoint(shipped_weights(name))["decode"]["conf"])


# --- 1. --weights: the shipped names everywhere ----------------------------------------------------

def test_every_weights_option_takes_the_shipped_names(tmp_path: Path) -> None:
    command = installed_command()
    labelled(tmp_path / "data")
    # evaluate with no --weights finds the shipped heatmap model from any folder, as detect does.
    result = run_outside(tmp_path, command, "evaluate", "--data", "data", "--backend", "torch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"heatmap model heatmap, threshold {stored_conf('heatmap'):.3f}" in result.stdout
    result = run_outside(tmp_path, command, "evaluate", "--weights", "regression", "--data", "data", "--backend", "torch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "regression model regression," in result.stdout
    result = run_outside(tmp_path, command, "detect", "--weights", "heatmap_n", "--source", "data/images", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"(threshold {stored_conf('heatmap_n'):.2f})" in result.stdout and "results in output/detect\n" in result.stdout
    # export: the shipped fast model by name, written here (never into the installed package).
    result = run_outside(tmp_path, command, "export", "--weights", "heatmap_n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("wrote heatmap_n.onnx (heatmap") and (tmp_path / "heatmap_n.onnx").is_file()
    result = run_outside(tmp_path, command, "detect", "--weights", "heatmap_n.onnx", "--source", "data/images", "--quiet")
    assert result.returncode == 0 and "results in output/detect2\n" in result.stdout, result.stdout + result.stderr
    # A name that is neither a file nor a shipped model: the same line from every command.
    for argv in (["detect", "--source", "data/images"], ["evaluate", "--data", "data"], ["export"],
                 ["label", "data/images"]):
        result = run_outside(tmp_path, command, *argv, "--weights", "heatmap_x")
        assert result.returncode == 2 and result.stderr == BAD_NAME, (argv, result.stderr)
    result = run_outside(tmp_path, command, "threshold", "heatmap_x")
    assert result.returncode == 1 and result.stderr == BAD_NAME


def test_teacher_takes_a_shipped_name() -> None:
    from simple_keypoint.heatmap.train import load_teacher
    from simple_keypoint.training import TrainingError

    teacher = load_teacher("heatmap_n")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(TrainingError, match="^heatmap_x: no such file, nor a shipped model name"):
        load_teacher("heatmap_x")


def test_weights_help_lists_the_names(tmp_path: Path) -> None:
    """Every command taking weights says which names it knows (one process: the installed package's parsers)."""
    installed_command()  # the package must be installed: the script runs with nothing of the checkout on the path
    script = ("import contextlib, io, sys\nfrom simple_keypoint import cli\n"
              "for argv in (['detect'], ['evaluate'], ['export'], ['threshold'], ['label']):\n"
              "    out = io.StringIO()\n"
              "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
              "        cli.main([*argv, '--help'])\n"
              "    text = ' '.join(out.getvalue().split())\n"
              "    print(argv[0], 'heatmap_n' in text)\n")
    result = run_outside(tmp_path, sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["detect", "True", "evaluate", "True", "export", "True", "threshold", "True", "label", "True"]


def test_resolve_weights_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_weights() == resolve_weights("heatmap") == shipped_weights("heatmap")
    for name in SHIPPED_NAMES:
        assert resolve_weights(name) == shipped_weights(name) and resolve_weights(name).is_file()
    (tmp_path / "heatmap_n").write_bytes(b"mine")  # a file of the name in the current folder wins
    assert resolve_weights("heatmap_n") == Path("heatmap_n")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(DefaultPathError, match=r"^folder.pt: is a folder, not a checkpoint"):
        resolve_weights("folder.pt")
    for path in ("runs/x/best.pt", "heatmap.pt", "heatmap.onnx", "weights/heatmap"):  # meant as files
        with pytest.raises(DefaultPathError, match=rf"^{re.escape(path)}: no such checkpoint file$"):
            resolve_weights(path)
    with pytest.raises(DefaultPathError) as caught:
        resolve_weights("heatmap_s")
    assert str(caught.value) == "heatmap_s: no such file, nor a shipped model name (heatmap, heatmap_n, regression)"


def test_threshold_takes_a_shipped_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint import threshold
    from simple_keypoint.dataset import DatasetError

    def stop(checkpoint: dict, budget: float, data: object, path: Path, mpx: object) -> None:
        raise DatasetError(f"would pick on {path}")  # the real pick reads the whole training set

    monkeypatch.setattr(threshold, "repick_threshold", stop)
    assert threshold.main(["heatmap_n"]) == 1
    assert capsys.readouterr().err == f"error: would pick on {shipped_weights('heatmap_n')}\n"


# --- 2. the README's snippet from any folder -------------------------------------------------------

def test_readme_python_snippet_runs_from_any_folder(tmp_path: Path) -> None:
    installed_command()  # the package must be installed: the snippet runs with nothing of the checkout on the path
    readme = (REPO / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(snippets) == 1 and "sample_image()" in snippets[0]
    check = "\nprint(len(points), points.shape[1], heat.shape == __import__('cv2').imread(str(sample_image()), 0).shape)\n"
    result = run_outside(tmp_path, sys.executable, "-c", snippets[0] + check)
    assert result.returncode == 0, result.stderr
    count, columns, same_shape = result.stdout.split()
    assert int(count) >= 1 and columns == "3" and same_shape == "True"
    assert sample_image().is_file() and sample_image().read_bytes() == (TEST / "images" / "Misc_8.png").read_bytes()


# --- 3. no folder left by a failed run ---------------------------------------------------------------

def test_a_detect_that_writes_nothing_leaves_no_folder(tmp_path: Path) -> None:
    command = installed_command()
    corrupt_png(tmp_path / "bad" / "broken.png")
    result = run_outside(tmp_path, command, "detect", "--source", "bad", "--quiet")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].endswith("1 failure(s), 0.0 ms per image; nothing written")
    assert result.stdout.splitlines()[1] == "  failed: bad/broken.png: not a readable image (corrupt, truncated or not an image)"
    assert result.stderr == ""  # and libpng's own line is not there (item 4)
    assert not (tmp_path / "output").exists()
    shutil.copy(TEST / "images" / "Misc_15.png", tmp_path / "bad")
    result = run_outside(tmp_path, command, "detect", "--source", "bad", "--quiet")
    assert result.returncode == 1 and "results in output/detect\n" in result.stdout  # the number was not used up
    assert sorted(p.name for p in (tmp_path / "output" / "detect" / "labels").iterdir()) == ["Misc_15.txt"]


def test_a_training_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path: Path) -> None:
    command = installed_command()
    corrupt_png(tmp_path / "bad" / "images" / "a.png")
    (tmp_path / "bad" / "labels").mkdir()
    (tmp_path / "bad" / "labels" / "a.txt").write_text("1\n0.5 0.5\n")
    for data, message in (("nowhere", "error: nowhere: does not exist"), ("bad", "error: no usable training images in bad")):
        result = run_outside(tmp_path, command, "train", "heatmap", "--data", data, *TINY_TRAIN_ARGS)
        assert result.returncode == 1 and result.stderr.startswith(message), result.stderr
        # A missing folder is said before anything is printed; unusable images once training has
        # started: its folder was made, then removed.
        assert ("run folder runs/heatmap" in result.stdout) == (data == "bad"), result.stdout
        assert not (tmp_path / "runs").exists()
    labelled(tmp_path / "good", ("Misc_15", "Misc_111", "Misc_8", "Misc_110"))
    result = run_outside(tmp_path, command, "train", "heatmap", "--data", "good", *TINY_TRAIN_ARGS, "--val-fraction", "0.25")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run folder runs/heatmap\n" in result.stdout and (tmp_path / "runs" / "heatmap" / "weights" / "best.pt").is_file()


def test_folders_made_for_a_run_are_removed_only_when_empty(tmp_path: Path) -> None:
    (tmp_path / "output").mkdir()
    out = tmp_path / "output" / "detect" / "deeper"
    created = runs.make_folders([out, out / "labels", out / "overlays"])
    assert created == [tmp_path / "output" / "detect", out, out / "labels", out / "overlays"]
    (out / "labels" / "a.txt").write_text("0\n")
    runs.remove_empty(created)
    assert sorted(p.name for p in out.iterdir()) == ["labels"] and (tmp_path / "output").is_dir()
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(OSError):
        runs.make_folders([tmp_path / "new" / "x", tmp_path / "file" / "sub"])
    assert not (tmp_path / "new").exists()  # what was made before the failure went again


def test_a_run_folder_without_a_checkpoint_is_discarded_on_failure(tmp_path: Path) -> None:
    def fail_in(out: Path, *files: str) -> None:
        runs.create_run_folder(out)
        with pytest.raises(KeyboardInterrupt), runs.discarded_on_failure(out):
            for name in files:
                (out / name).write_text("x")
            raise KeyboardInterrupt

    fail_in(tmp_path / "runs" / "a", "train.log", "args.json")
    assert not (tmp_path / "runs").exists()  # made for the run: gone with it
    fail_in(tmp_path / "b", "train.log", "weights/last.pt")  # an epoch was saved: everything stays
    assert sorted(p.name for p in (tmp_path / "b").rglob("*")) == ["last.pt", "train.log", "weights"]
    fail_in(tmp_path / "c", "train.log", "notes.md")  # someone else's file: the folder stays, with it
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["notes.md"]
    (tmp_path / "mine").mkdir()  # --out a folder the user made: emptied of the run's files, kept
    fail_in(tmp_path / "mine", "train.log")
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    runs.create_run_folder(tmp_path / "d")
    with runs.discarded_on_failure(tmp_path / "d"):  # no failure: nothing touched
        (tmp_path / "d" / "train.log").write_text("x")
    assert (tmp_path / "d" / "train.log").is_file()


# --- 4. library noise, missing paths, option ranges ------------------------------------------------

def test_a_refused_stream_is_one_line_without_ffmpeg_noise(tmp_path: Path) -> None:
    command = installed_command()
    url = f"http://127.0.0.1:{free_port()}/clip.mp4"  # nothing listens there
    result = run_outside(tmp_path, command, "detect", "--source", url, "--retries", "0", "--quiet")
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [f"  failed: {url}: cannot open video"]
    assert result.stderr == "", result.stderr  # no "[tcp @ 0x...] Connection refused"
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("argv, message", [
    (["detect", "--source", "nothere"], "error: nothere: no such file or folder"),
    (["detect", "--source", "nothere/*.png"], "error: no images or videos found at nothere/*.png"),
    (["detect", "--conf", "2"], "simple-keypoint detect: error: --conf 2 is not in [0, 1]"),
    (["detect", "--dim-conf", "-0.5"], "simple-keypoint detect: error: --dim-conf -0.5 is not in [0, 1]"),
    (["evaluate", "--conf", "1.5"], "simple-keypoint evaluate: error: --conf 1.5 is not in [0, 1]"),
    (["evaluate", "--data", "nothere"], "error: nothere: no such folder"),
    (["train", "heatmap", "--epochs", "0"], "simple-keypoint train heatmap: error: --epochs 0 is not >= 1"),
    (["train", "heatmap", "--lr", "nan"], "simple-keypoint train heatmap: error: --lr nan is not a finite number"),
    (["threshold", "heatmap", "--max-false-per-image", "-1"],
     "simple-keypoint threshold: error: --max-false-per-image -1 is not >= 0"),
])
def test_missing_paths_and_out_of_range_options(tmp_path: Path, argv: list[str], message: str) -> None:
    result = run_outside(tmp_path, installed_command(), *argv)
    # a usage error is the first line (then "see ... --help"); a path error is the last line
    lines = result.stderr.strip().splitlines()
    assert result.returncode in (1, 2) and lines[0 if message.startswith("simple-keypoint ") else -1] == message, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "output").exists() and not (tmp_path / "runs").exists()


def test_libpng_lines_are_dropped_and_the_rest_of_stderr_kept(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(corrupt_png(tmp_path / "broken.png"))
    assert capfd.readouterr().err == ""
    # Lines other code writes to fd 2 meanwhile (another thread's progress bar) still arrive, in order.
    with native_stderr_filtered():
        os.write(2, b"\rprogress 1libpng error: IDAT: CRC error\nlibpng warning: iCCP: known incorrect sRGB profile\n")
        with native_stderr_filtered():  # nested and threaded blocks share one capture
            worker = threading.Thread(target=os.write, args=(2, b"from a thread\n"))
            worker.start()
            worker.join()
        os.write(2, b"kept\n")
    assert capfd.readouterr().err == "\rprogress 1from a thread\nkept\n"
    os.write(2, b"libpng error: after the block\n")  # outside a block nothing is filtered
    assert capfd.readouterr().err == "libpng error: after the block\n"


def test_number_types_check_ranges() -> None:
    share, count, rate = options.FRACTION, options.number(int, 1), options.number(float, 0.0, low_open=True)
    assert (share("0"), share("1"), count("3"), rate("1e-3")) == (0.0, 1.0, 3, 1e-3) and isinstance(count("3"), int)
    for parse, text, error in ((share, "1.01", "1.01 is not in [0, 1]"), (count, "0", "0 is not >= 1"),
                               (count, "2.5", "2.5 is not an integer"), (rate, "0", "0 is not > 0"),
                               (share, "inf", "inf is not a finite number"), (share, " ", "' ' is not a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(error)):
            parse(text)


# --- 5. --resume of a finished run, help texts -----------------------------------------------------

def test_resume_of_a_finished_run_says_so_at_once(tmp_path: Path, heatmap_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    shutil.copytree(heatmap_run[0], tmp_path / "runs" / "heatmap")
    result = run_outside(tmp_path, installed_command(), "train", "heatmap", "--resume")
    assert result.returncode == 1 and result.stdout == "", result.stdout  # no data read, no epoch
    assert result.stderr == ("error: --resume: runs/heatmap/weights/last.pt is a finished run (epoch 1 of 1); nothing "
                             "to resume. Its weights: runs/heatmap/weights/best.pt; to train again, leave out --resume\n")
    result = run_outside(tmp_path, installed_command(), "train", "heatmap", "--resume", "runs/heatmap/weights/best.pt")
    assert result.returncode == 1
    assert result.stderr == "error: --resume: runs/heatmap/weights/best.pt: not a resumable checkpoint (a run's weights/last.pt is)\n"


def test_interrupt_in_the_first_epoch_names_no_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint.training import TrainingInterrupted, command_line

    def interrupted() -> None:
        raise TrainingInterrupted(tmp_path / "gone" / "weights" / "last.pt")

    assert command_line(interrupted) == 130
    assert capsys.readouterr().out == "\ninterrupted in the first epoch; nothing was kept\n"


def test_help_texts_name_the_command_and_state_each_default_once(tmp_path: Path) -> None:
    installed_command()
    commands = [["detect"], ["track"], ["evaluate"], ["export"], ["threshold"], ["convert"], ["convert", "masks"],
                ["label"], ["cache"],
                ["train", "heatmap"], ["train", "regression"]]
    script = ("import contextlib, io, json, sys\nfrom simple_keypoint import cli\nhelps = []\n"
              f"for argv in {commands!r}:\n"
              "    out = io.StringIO()\n"
              "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
              "        cli.main([*argv, '--help'])\n"
              "    helps.append(out.getvalue())\n"
              "print(json.dumps(helps))\n")
    result = run_outside(tmp_path, sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    for argv, text in zip(commands, json.loads(result.stdout), strict=True):
        assert text.startswith(f"usage: simple-keypoint {' '.join(argv)} "), text[:80]
        entries = re.split(r"\n  (?=-)", text)  # one per option, wrapped lines included
        assert len(entries) >= 2, argv
        for entry in entries:
            flat = " ".join(entry.split())
            assert flat.count("(default") <= 1 and "(default: None)" not in flat and "(default: False)" not in flat, (argv, flat)
