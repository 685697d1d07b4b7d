"""A method defined in the tests folder (tests/tiny_method) trains, predicts, exports to ONNX and is
evaluated through the package's own entry points, after one registry line and no package change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN_ARGS
from tiny_method import TINY, tiny_loss

from simple_keypoint import export, load_model, training
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.evaluate import main as evaluate_main
from simple_keypoint.images import find_images
from simple_keypoint.methods import UnknownMethodError, get_method, register


def test_a_third_method_is_one_folder_and_one_registry_line(tiny_dataset: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(UnknownMethodError):
        get_method(TINY.name)
    register(TINY)  # the one line

    args = training.make_parser(TINY.name, "tiny").parse_args(
        ["--data", str(tiny_dataset), "--out", str(tmp_path / "run"), *TINY_TRAIN_ARGS])
    best = training.train(args, TINY, {"channels": 3}, tiny_loss)
    checkpoint = load_checkpoint(best)
    assert checkpoint["method"] == TINY.name and checkpoint["model_args"] == {"channels": 3}
    assert checkpoint["decode"]["conf"] == 0.0  # this method picks no threshold

    image = find_images(tiny_dataset / "images")[0]
    model = load_model(best, device="cpu")
    assert model.spec is TINY and not model.spec.has_heatmap
    points = model.predict(image, conf=0.0)
    assert points.shape == (1, 3) and 0.0 <= points[0, 2] <= 1.0
    with pytest.raises(ValueError, match="no heatmap"):
        model.heatmap(image)

    onnx = tmp_path / "tiny.onnx"
    assert export.export_onnx(checkpoint, onnx) < 1e-4
    onnx_model = load_model(onnx)
    assert onnx_model.method == TINY.name
    np.testing.assert_allclose(onnx_model.predict(image, conf=0.0), points, atol=1e-4)
    assert export.main(["--weights", str(best), "--out", str(tmp_path / "cli.onnx")]) == 0

    capsys.readouterr()
    assert evaluate_main(["--weights", str(best), "--data", str(tiny_dataset), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{TINY.name} model {best}" in out
    row = out.strip().splitlines()[-1].split()
    assert row[0] == str(tiny_dataset) and row[1:3] == ["8", "10"]  # 8 images with targets, 2 of them hold two
