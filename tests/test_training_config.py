"""Training settings as one typed config: defaults in one place, what the command line gives, what
--resume reads back; the epoch line never shows a bare nan; checks and hints before any output.
No training here: these are fast."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

from simple_keypoint import distributed, paths, training
from simple_keypoint.checkpoint import save_checkpoint
from simple_keypoint.dataset import DatasetError
from simple_keypoint.evaluate import main as evaluate_main
from simple_keypoint.evaluate import make_parser as evaluate_parser
from simple_keypoint.heatmap.method import HEATMAP
from simple_keypoint.heatmap.train import HeatmapConfig
from simple_keypoint.heatmap.train import make_parser as heatmap_parser
from simple_keypoint.regression.train import RegressionConfig
from simple_keypoint.regression.train import make_parser as regression_parser
from simple_keypoint.threshold import main as threshold_main
from simple_keypoint.threshold import make_parser as threshold_parser


@pytest.mark.parametrize("config, parser", [(HeatmapConfig, heatmap_parser), (RegressionConfig, regression_parser)])
def test_the_command_line_defaults_are_the_configs(config, parser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMPLE_KEYPOINT_VISDOM", raising=False)
    method = "heatmap" if config is HeatmapConfig else "regression"
    built = config.from_namespace(parser().parse_args([]))
    assert built == config.defaults(method)
    assert set(built.settings()) == {f.name for f in dataclasses.fields(config)}
    given = config.from_namespace(parser().parse_args(["--data", "a", "b", "--epochs", "3", "--seed", "7"]))
    assert (given.data, given.epochs, given.seed) == (["a", "b"], 3, 7)


def test_a_setting_the_config_does_not_declare_is_refused() -> None:
    with pytest.raises(TypeError, match="no setting.*sigmaa"):
        HeatmapConfig.from_namespace(argparse.Namespace(sigmaa=2.0))


def test_a_stored_run_predating_an_option_resumes_as_it_ran() -> None:
    """A checkpoint saved before --ema/--val-every/... existed trained without them: --resume keeps
    it that way (not today's defaults); settings since removed are ignored."""
    config = HeatmapConfig.from_stored({"epochs": 9, "sigma": 2.5, "an_old_option": 1})
    assert (config.epochs, config.sigma) == (9, 2.5)
    assert (config.ema, config.val_every, config.shape_target, config.hard_share) == (0.0, 1, False, 0.0)
    assert HeatmapConfig().ema == 0.998 and HeatmapConfig().val_every == 5  # what a new run gets


def test_resume_takes_the_runs_settings_and_the_new_places(tmp_path: Path) -> None:
    """--resume continues with the run's own settings (its loss, its sigma, its data), but where and
    how to run (device, progress bars) from the new command line."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    stored = HeatmapConfig.defaults("heatmap", data=[str(data)], epochs=3, sigma=2.5, loss="focal", out=str(tmp_path / "run"))
    last = tmp_path / "run" / "weights" / "last.pt"
    save_checkpoint(last, {"method": "heatmap", "model_args": {"widths": (4, 8)}, "model_state": {"w": torch.zeros(1)},
                           "epoch": 1, "optimizer": {}, "train_args": stored.settings()})
    resumed, model_args, checkpoint, out = training._run_folder(
        HeatmapConfig(resume=str(last), quiet=True, device="cpu", sigma=1.0), HEATMAP, {}, distributed.Context())
    assert (resumed.sigma, resumed.loss, resumed.epochs, resumed.data) == (2.5, "focal", 3, [str(data)])
    assert (resumed.quiet, resumed.device, resumed.resume) == (True, "cpu", str(last))
    assert model_args == {"widths": (4, 8)} and out == tmp_path / "run" and checkpoint["epoch"] == 1


def row(**values: float) -> dict[str, float]:
    nan = float("nan")
    return {"epoch": 2, "train_loss": 0.5, "val_loss": nan, "val_AP@3px": nan, "val_Pd@3px": nan, "val_err@3px": nan,
            "seconds": 3.0} | values


@pytest.mark.parametrize("values, says", [
    ({"val_loss": 0.25, "val_AP@3px": 0.5, "val_Pd@3px": 0.75, "val_err@3px": 1.5},
     "epoch 2/4  loss 0.50000  val loss 0.25000  val AP@3px 0.500  Pd@3px (any score) 0.750  err 1.50px  (3s)"),
    ({"val_loss": 0.25, "val_AP@3px": 0.0, "val_Pd@3px": 0.0},
     "epoch 2/4  loss 0.50000  val loss 0.25000  val AP@3px 0.000  Pd@3px (any score) 0.000  "
     "err - (no target found within 3 px)  (3s)"),
    ({}, "epoch 2/4  loss 0.50000  val AP/Pd/err - (no labelled target in validation)  (3s)"),
])
def test_the_epoch_line_says_why_a_figure_is_missing(values: dict, says: str) -> None:
    line = training.epoch_line(row(**values), {"AP@3px a": 0.5, "AP@3px b": math.nan}, 4, validated=True)
    assert line == says.replace("  (3s)", "  AP@3px a 0.500  (3s)") and "nan" not in line
    assert training.epoch_line(row(**values), {}, 4, validated=False) == "epoch 2/4  loss 0.50000  (3s)"


def no_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As the installed package run from a folder without data: no checkout to fall back on."""
    monkeypatch.setattr(paths, "repo_root", lambda: None)
    monkeypatch.chdir(tmp_path)


def test_missing_default_data_says_what_to_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_checkout(monkeypatch, tmp_path)
    with pytest.raises(training.TrainingError) as caught:
        training.check_inputs(HeatmapConfig())
    assert str(caught.value) == "data/train: does not exist (no checkout here? pass --data FOLDER)"
    with pytest.raises(training.TrainingError, match=r"^elsewhere: does not exist$"):
        training.check_inputs(HeatmapConfig(data=["elsewhere"]))
    with pytest.raises(training.TrainingError, match=r"^--data-share has 1 value\(s\) for 2 --data folder\(s\)$"):
        training.check_inputs(HeatmapConfig(data=["a", "b"], data_share=[1.0]))
    # threshold: the training data a checkpoint names
    with pytest.raises(DatasetError, match=r"^data/train: does not exist \(.*pass --data FOLDER\)$"):
        training.validation_samples({"data": ["data/train"], "val": None, "val_fraction": 0.1, "seed": 0})


def test_evaluate_checks_its_folders_before_any_output(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert evaluate_main(["--data", str(tmp_path / "nowhere"), "--weights", str(tmp_path / "no.pt")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {tmp_path / 'nowhere'}: no such folder\n"  # before the weights are read
    no_checkout(monkeypatch, tmp_path)
    assert evaluate_main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: default data folder data/test not found") and err.endswith(
        "; pass --data FOLDER\n")


def test_threshold_takes_weights_like_every_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no.pt"
    for argv in (["--weights", str(missing)], [str(missing)]):  # the positional is the older, hidden spelling
        assert threshold_main(argv) == 1
        assert capsys.readouterr().err == f"error: {missing}: no such checkpoint file\n"
    with pytest.raises(SystemExit):
        threshold_main([str(missing), "--weights", "heatmap"])
    assert "given twice" in capsys.readouterr().err
    assert threshold_main(["--data", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'}: does not exist\n"


@pytest.mark.parametrize("parser", [heatmap_parser, regression_parser, evaluate_parser, threshold_parser])
def test_every_option_has_a_help_text(parser) -> None:
    undocumented = [a.option_strings for a in parser()._actions if a.option_strings and not a.help]
    assert undocumented == []


def test_evaluate_shows_no_nan_for_a_folder_without_targets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Target-free frames: AP, Pd and the error are undefined; the table says so, not "nan"."""
    import cv2
    import numpy as np

    for name in ("a", "b"):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "labels").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8))
        (tmp_path / "labels" / f"{name}.txt").write_text("0\n")
    report = tmp_path / "report.json"
    assert evaluate_main(["--weights", "heatmap_n", "--data", str(tmp_path), "--backend", "torch", "--device", "cpu",
                          "--quiet", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out, re.IGNORECASE) and "-: cannot be computed there" in out
    assert out.splitlines()[-1].split()[1:3] == ["2", "0"]  # 2 images, 0 targets
    metrics = json.loads(report.read_text())["results"][str(tmp_path)]  # strict JSON: no NaN literal
    assert metrics["AP@3px"] is None and metrics["images"] == 2
