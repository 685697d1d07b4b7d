"""Training runs never overwrite: numbered run folders, --name/--exist-ok, a bare --resume takes the
latest run's last.pt, and each run folder holds args.json, train.log and losses.csv/.png."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import TINY_TRAIN_ARGS, run_python

from simple_keypoint import __version__, runs
from simple_keypoint.checkpoint import load_checkpoint, save_checkpoint


def stop_after_first_epoch(last: Path) -> None:
    """Rewrite a finished 2-epoch run's last.pt as if the run had stopped after epoch 1 (history,
    epoch and the learning-rate schedule's position), so --resume has an epoch to train."""
    checkpoint = load_checkpoint(last)
    scheduler = dict(checkpoint["scheduler"])
    per_epoch = scheduler["total_steps"] // checkpoint["train_args"]["epochs"]
    scheduler["last_epoch"] -= per_epoch
    scheduler["_step_count"] -= per_epoch
    save_checkpoint(last, checkpoint | {"epoch": 1, "history": checkpoint["history"][:1], "scheduler": scheduler})


def train_in(cwd: Path, data: Path, *extra: str) -> str:
    result = run_python("-m", "simple_keypoint.heatmap.train", "--data", data, *TINY_TRAIN_ARGS, *extra, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_two_runs_leave_two_folders_with_settings_and_log(tiny_dataset: Path, tmp_path: Path) -> None:
    first = train_in(tmp_path, tiny_dataset)
    best = tmp_path / "runs" / "heatmap" / "weights" / "best.pt"
    before = best.read_bytes()
    second = train_in(tmp_path, tiny_dataset, "--seed", "1")
    assert "run folder runs/heatmap\n" in first and "run folder runs/heatmap2\n" in second
    assert best.read_bytes() == before  # the first run's weights are untouched
    for run, seed in ((tmp_path / "runs" / "heatmap", 0), (tmp_path / "runs" / "heatmap2", 1)):
        for name in ("args.json", "train.log", "losses.csv", "losses.png", "weights/best.pt", "weights/last.pt"):
            assert (run / name).is_file(), run / name
        settings = json.loads((run / "args.json").read_text())
        assert settings["seed"] == seed and settings["epochs"] == 1 and settings["crop"] == 64
        assert settings["version"] == __version__ and settings["world_size"] == 1 and settings["out"] == str(run.relative_to(tmp_path))
        assert "model_args" in settings and "sigma" in settings
        log = (run / "train.log").read_text()
        assert "epoch 1/1" in log and f"run folder {run.relative_to(tmp_path)}" in log and "done: best" in log
        assert load_checkpoint(run / "weights" / "last.pt")["world_size"] == 1


def test_name_exist_ok_and_out(tiny_dataset: Path, tmp_path: Path) -> None:
    assert "run folder runs/exp\n" in train_in(tmp_path, tiny_dataset, "--name", "exp")
    assert "run folder runs/exp2\n" in train_in(tmp_path, tiny_dataset, "--name", "exp")
    reused = train_in(tmp_path, tiny_dataset, "--name", "exp", "--exist-ok")
    assert "run folder runs/exp\n" in reused and not (tmp_path / "runs" / "exp3").exists()
    assert (tmp_path / "runs" / "exp" / "train.log").read_text().count("--- ") == 2  # appended, not replaced


def test_bare_resume_continues_the_latest_run(tiny_dataset: Path, tmp_path: Path) -> None:
    train_in(tmp_path, tiny_dataset, "--epochs", "2")
    train_in(tmp_path, tiny_dataset)
    # The first run (runs/heatmap) is made to look stopped after epoch 1, and written last, so it is the latest.
    last = tmp_path / "runs" / "heatmap" / "weights" / "last.pt"
    stop_after_first_epoch(last)
    result = run_python("-m", "simple_keypoint.heatmap.train", "--resume", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming runs/heatmap/weights/last.pt after epoch 1 of 2" in result.stdout
    assert "epoch 2/2" in result.stdout and not (tmp_path / "runs" / "heatmap3").exists()
    assert load_checkpoint(last)["epoch"] == 2
    assert "resuming" in (tmp_path / "runs" / "heatmap" / "train.log").read_text()
    # --resume PATH of the now finished run says so at once (no data read), and nothing to resume is one clear line.
    explicit = run_python("-m", "simple_keypoint.heatmap.train", "--resume", str(last), "--quiet", cwd=tmp_path)
    assert explicit.returncode == 1 and explicit.stdout == "", explicit.stdout
    assert explicit.stderr.startswith(f"error: --resume: {last} is a finished run (epoch 2 of 2); nothing to resume")
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    none = run_python("-m", "simple_keypoint.heatmap.train", "--resume", "--quiet", cwd=empty)
    assert none.returncode == 1 and "Traceback" not in none.stderr
    assert none.stderr.startswith("error: --resume: no last.pt in any run folder") and len(none.stderr.splitlines()) == 1


def test_run_folder_rules(tmp_path: Path) -> None:
    args = argparse.Namespace(project=str(tmp_path / "p"), name="x", exist_ok=False, out=None, resume=runs.LATEST)
    assert runs.new_run_folder(args, "heatmap") == tmp_path / "p" / "x"
    (tmp_path / "p" / "x").mkdir(parents=True)
    assert runs.new_run_folder(args, "heatmap") == tmp_path / "p" / "x"  # empty: free
    (tmp_path / "p" / "x" / "args.json").write_text("{}")
    assert runs.new_run_folder(args, "heatmap") == tmp_path / "p" / "x2"
    assert runs.new_run_folder(argparse.Namespace(**{**vars(args), "exist_ok": True}), "heatmap") == tmp_path / "p" / "x"
    assert runs.folder_of_checkpoint(tmp_path / "r" / "weights" / "last.pt") == tmp_path / "r"
    assert runs.folder_of_checkpoint(tmp_path / "r" / "last.pt") == tmp_path / "r"
    with pytest.raises(runs.DefaultPathError):
        runs.resume_checkpoint(args, "heatmap")
    # --out replaces PROJECT/NAME and is numbered the same way.
    mine = tmp_path / "elsewhere" / "mine"
    with_out = argparse.Namespace(**{**vars(args), "out": str(mine)})
    assert runs.new_run_folder(with_out, "heatmap") == mine
    (mine / "weights").mkdir(parents=True)
    assert runs.new_run_folder(with_out, "heatmap") == tmp_path / "elsewhere" / "mine2"
    assert runs.resume_checkpoint(argparse.Namespace(**{**vars(args), "resume": "a/b/last.pt"}), "heatmap") == Path("a/b/last.pt")
