"""Both train.py CLIs run end to end on a tiny SIRST copy and leave a usable run folder."""

from __future__ import annotations

import csv
import math
import re
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import PATIENCE, REPO, TINY_TRAIN_ARGS, clean_env, free_port, run_python, wait_until

from simple_keypoint import Localizer, load_model
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.heatmap.train import heatmap_loss
from simple_keypoint.training import make_parser

LOSS_COLUMNS = ["epoch", "train_loss", "val_loss", "val_AP@3px", "val_Pd@3px", "val_err@3px", "conf", "lr", "seconds",
                "val_seconds", "validated"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_run_folder(out, method, epochs=1, validated=True):
    """best.pt/last.pt load as models of ``method``; losses.csv has one finite row per epoch; losses.png is a PNG."""
    for name in ("best.pt", "last.pt"):
        model = load_model(out / "weights" / name, device="cpu")
        assert isinstance(model, Localizer) and model.method == method
        assert model.predict(np.zeros((40, 56), np.uint8), conf=0.0).shape[1] == 3
    last = load_checkpoint(out / "weights" / "last.pt", method)
    assert last["epoch"] == epochs and len(last["history"]) == epochs
    rows = read_csv(out / "losses.csv")
    assert list(rows[0]) == LOSS_COLUMNS
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    for row in rows:
        assert math.isfinite(float(row["train_loss"]))
        assert math.isfinite(float(row["val_loss"])) == validated
        assert float(row["train_loss"]) == pytest.approx(last["history"][int(row["epoch"]) - 1]["train_loss"])
    png = cv2.imdecode(np.fromfile(out / "losses.png", np.uint8), cv2.IMREAD_COLOR)
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["best.pt", "last.pt"]  # no temp files left
    return rows


def test_heatmap_module_cli(heatmap_run):
    out, result = heatmap_run
    check_run_folder(out, "heatmap")
    assert "8 image(s) usable" in result.stdout
    assert "epoch 1/1" in result.stdout and "done: best" in result.stdout
    assert "Traceback" not in result.stderr


def test_regression_module_cli_skips_multi_target_images(regression_run):
    out, result = regression_run
    check_run_folder(out, "regression")
    # Misc_1 and Misc_105 hold 2 targets each: counted and named, not silently dropped.
    assert "6 image(s) usable" in result.stdout
    assert "2 image(s) skipped (2 targets" in result.stdout
    assert "Misc_1.png" in result.stdout and "Misc_105.png" in result.stdout


@pytest.mark.parametrize("module", ["simple_keypoint.heatmap.train", "simple_keypoint.regression.train"])
def test_help(module):
    result = run_python("-m", module, "--help", timeout=PATIENCE)
    assert result.returncode == 0, result.stderr
    for option in ("--data", "--epochs", "--crop", "--batch-size", "--out", "--resume", "--visdom", "--quiet"):
        assert option in result.stdout
    method = module.split(".")[1]
    assert result.stdout.startswith(f"usage: simple-keypoint train {method} ")  # usage names the command to type


def test_heatmap_train_py_as_a_file_without_visdom_server(tiny_dataset, tmp_path):
    """Run as a file (not -m), with other model options, and --visdom with no server listening:
    one notice, and training still finishes."""
    out = tmp_path / "as_file"
    result = run_python("simple_keypoint/heatmap/train.py", "--data", tiny_dataset, "--out", out, *TINY_TRAIN_ARGS,
                        "--loss", "focal", "--widths", "4", "8", "--full-res-channels", "2",
                        "--visdom", "--visdom-port", free_port())
    assert result.returncode == 0, result.stdout + result.stderr
    check_run_folder(out, "heatmap")
    assert load_checkpoint(out / "weights" / "best.pt")["model_args"] == {"widths": (4, 8), "full_res_channels": 2, "context": False}
    notices = [line for line in (result.stdout + result.stderr).splitlines() if line.strip().lower().startswith("visdom")]
    assert len(notices) == 1 and "no server" in notices[0], notices
    assert result.stderr.strip() == ""  # nothing else: no traceback, no client chatter


def test_bad_data_folder_is_a_one_line_error(tmp_path):
    result = run_python("-m", "simple_keypoint.heatmap.train", "--data", tmp_path / "nowhere", "--out", tmp_path / "o",
                        *TINY_TRAIN_ARGS, timeout=PATIENCE)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nowhere" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_parser_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("SIMPLE_KEYPOINT_VISDOM", raising=False)
    args = make_parser("heatmap", "x", epochs=7).parse_args([])
    assert args.epochs == 7 and not args.visdom and args.out is None and (args.project, args.name) == ("runs", "heatmap")
    monkeypatch.setenv("SIMPLE_KEYPOINT_VISDOM", "http://127.0.0.1")
    monkeypatch.setenv("SIMPLE_KEYPOINT_VISDOM_PORT", "8123")
    args = make_parser("heatmap", "x").parse_args([])
    assert args.visdom and args.visdom_port == 8123


@pytest.mark.parametrize("kind", ["mse", "wmse", "focal"])
def test_heatmap_loss_prefers_the_right_map(kind):
    import torch

    target = torch.zeros(1, 1, 16, 16)
    target[0, 0, 8, 8] = 1.0
    target[0, 0, 8, 7] = target[0, 0, 8, 9] = target[0, 0, 7, 8] = target[0, 0, 9, 8] = 0.6
    good = torch.logit(target.clamp(0.001, 0.999))
    bad = torch.full_like(target, -4.6)
    assert heatmap_loss(good, target, kind, 30.0) < heatmap_loss(bad, target, kind, 30.0)


def test_ctrl_c_keeps_the_last_epoch_and_resume_finishes(tiny_dataset, tmp_path):
    """Ctrl+C in epoch 2 leaves epoch 1 on disk; --resume finishes the run, the weights' moving average
    (--ema) included. Also an edge case: no validation split (best.pt is then the latest epoch). 100
    steps per epoch leave room for the signal. (Resuming without --ema: test_robustness_training.py.)"""
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "simple_keypoint.heatmap.train", "--data", str(tiny_dataset), "--out", str(out),
               *TINY_TRAIN_ARGS, "--epochs", "2", "--repeats", "100", "--batch-size", "8", "--val-fraction", "0",
               "--ema", "0.99"]
    process = subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Epoch 1 is on disk (however long it took): interrupt epoch 2.
        wait_until((out / "weights" / "last.pt").exists, "epoch 1 to end (its weights/last.pt)", process)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
    # 130 from sys.exit; once in a loaded CI run the process still ended by the signal (-2) after
    # printing its message, so the message and the checkpoint are what is checked.
    assert process.returncode in (130, -signal.SIGINT), stdout + stderr
    assert "interrupted" in stdout and "--resume" in stdout and "Traceback" not in stderr
    assert "8 train / 0 val images, 100 steps per epoch" in stdout
    first = load_checkpoint(out / "weights" / "last.pt")
    assert first["epoch"] == 1 and load_checkpoint(out / "weights" / "best.pt")["epoch"] == 1
    assert int(first["ema_state"]["n_averaged"]) == 100

    result = run_python("-m", "simple_keypoint.heatmap.train", "--resume", out / "weights" / "last.pt", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming" in result.stdout and "epoch 2/2" in result.stdout and "epoch 1/2" not in result.stdout
    rows = check_run_folder(out, "heatmap", epochs=2, validated=False)
    assert float(rows[0]["train_loss"]) == pytest.approx(first["history"][0]["train_loss"])
    assert load_checkpoint(out / "weights" / "best.pt")["epoch"] == 2
    assert int(load_checkpoint(out / "weights" / "last.pt")["ema_state"]["n_averaged"]) == 200  # went on, not restarted


def test_ten_steps_in_all_train(tiny_dataset, tmp_path):
    """8 images x 5 repeats / 8 per batch x 2 epochs = 10 steps: a 10% warm-up would be one step,
    on which OneCycleLR divides by zero."""
    out = tmp_path / "ten"
    result = run_python("-m", "simple_keypoint.heatmap.train", "--data", tiny_dataset, "--out", out, *TINY_TRAIN_ARGS,
                        "--epochs", "2", "--repeats", "5", "--batch-size", "8", "--val-fraction", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 train / 0 val images, 5 steps per epoch" in result.stdout
    # Nothing to validate on: said once, and no epoch line shows a figure that could not be computed.
    assert "no validation split (--val-fraction 0): no validation figures, and best.pt is the last epoch" in result.stdout
    assert not re.search(r"\bnan\b", result.stdout, re.IGNORECASE) and "epoch 2/2  loss " in result.stdout
    assert load_checkpoint(out / "weights" / "best.pt")["epoch"] == 2


def test_ema_weights_are_what_is_saved(tiny_dataset, tmp_path):
    """--ema: the averaged weights are what best.pt/last.pt hold for inference; last.pt also holds the
    raw weights and the average's state (for --resume, tested with Ctrl+C above); best.pt holds only
    what inference needs, so it ships as it is."""
    import torch

    out = tmp_path / "ema"
    args = ("--data", tiny_dataset, "--out", out, *TINY_TRAIN_ARGS, "--epochs", "2", "--ema", "0.9", "--val-fraction", "0")
    result = run_python("-m", "simple_keypoint.heatmap.train", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = int(result.stdout.split(" steps per epoch")[0].rsplit(" ", 1)[-1])
    best, last = load_checkpoint(out / "weights" / "best.pt"), load_checkpoint(out / "weights" / "last.pt")
    assert not {"optimizer", "scheduler", "train_state", "ema_state"} & set(best)
    assert int(last["ema_state"]["n_averaged"]) == 2 * steps
    averaged = {k.removeprefix("module."): v for k, v in last["ema_state"].items() if k.startswith("module.")}
    assert all(torch.equal(last["model_state"][k], averaged[k]) for k in last["model_state"])
    assert not torch.equal(last["model_state"]["head.weight"], last["train_state"]["head.weight"])  # the average lags


def test_train_py_from_its_own_folder_finds_the_default_data(tmp_path):
    """``cd simple_keypoint/heatmap && python train.py``, as the original article's users train: the
    relative default ``data/train`` is found in the checkout, not looked for in the method's folder."""
    result = run_python("train.py", "--epochs", "1", "--crops-per-epoch", "8", "--batch-size", "8", "--size", "n",
                        "--quiet", "--device", "cpu", "--project", tmp_path, cwd=REPO / "simple_keypoint" / "heatmap")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data/train: 341 image(s) usable" in result.stdout.replace(str(REPO) + "/", "")
    assert (tmp_path / "heatmap" / "weights" / "best.pt").is_file()


def test_validation_every_n_epochs_and_best_among_validated(tiny_dataset, tmp_path):
    """--val-every 2 over 4 epochs validates epochs 2, 3 and 4 (every 2nd and the last 2): epoch 1's row
    has no validation figures, and best.pt is one of the validated epochs with their threshold."""
    out = tmp_path / "every"
    result = run_python("-m", "simple_keypoint.heatmap.train", "--data", tiny_dataset, "--out", out, *TINY_TRAIN_ARGS,
                        "--epochs", "4", "--val-every", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_csv(out / "losses.csv")
    assert [r["validated"] for r in rows] == ["0", "1", "1", "1"]
    assert not math.isfinite(float(rows[0]["val_loss"])) and all(math.isfinite(float(r["val_loss"])) for r in rows[1:])
    best = load_checkpoint(out / "weights" / "best.pt")
    assert best["epoch"] in (2, 3, 4)
    assert best["decode"]["conf"] == pytest.approx(float(rows[best["epoch"] - 1]["conf"]))
    assert "epoch 1/4  loss" in result.stdout and "val AP" not in result.stdout.split("epoch 1/4")[1].split("\n")[0]


@pytest.mark.parametrize("distill_on", ["heatmap", "logits"])
def test_distillation_adds_the_teachers_term_to_the_training_loss(tiny_dataset, tmp_path, distill_on):
    """Same seed and crops: the teacher's term (never negative) is added to the training loss."""
    losses = {}
    for name, extra in (("alone", ()), ("taught", ("--teacher", "heatmap_n", "--distill-on", distill_on, "--distill-weight", "0.5"))):
        result = run_python("-m", "simple_keypoint.heatmap.train", "--data", tiny_dataset, "--out", tmp_path / name,
                            *TINY_TRAIN_ARGS, "--size", "n", *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        losses[name] = read_csv(tmp_path / name / "losses.csv")[0]
    assert float(losses["taught"]["train_loss"]) > float(losses["alone"]["train_loss"])
