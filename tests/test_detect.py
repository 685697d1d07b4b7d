"""detect.py: overlays and label files for a folder of images, a summary line, safe output folders;
videos, webcams and streams in, an annotated video and a CSV out; overlays; the threaded pipeline."""

from __future__ import annotations

import re
import shutil

import cv2
import numpy as np
import pytest
from conftest import PATIENCE, run_python

import detect
from simple_keypoint import load_model
from simple_keypoint.images import read_image
from simple_keypoint.labels import normalised_to_pixel, read_labels
from simple_keypoint.paths import shipped_weights

STEMS = ("Misc_1", "Misc_10", "Misc_100")  # gray, BGRA and BGR files


@pytest.fixture(scope="module")
def heatmap_checkpoint():
    """The shipped weights: these tests need a model that finds targets, not a fresh training run."""
    return shipped_weights("heatmap")


@pytest.fixture(scope="module")
def regression_checkpoint():
    return shipped_weights("regression")


@pytest.fixture
def source(tiny_dataset, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for stem in STEMS:
        shutil.copy(tiny_dataset / "images" / f"{stem}.png", folder)
    return folder


def check_outputs(source, out, stems, with_scores=True):
    """Every image has a JPEG overlay of its size and a label file read_labels accepts."""
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(f"{s}.jpg" for s in stems)
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{s}.txt" for s in stems)
    labels = {}
    for stem in stems:
        image = read_image(next(source.glob(f"{stem}.*")))
        overlay = cv2.imdecode(np.fromfile(out / "overlays" / f"{stem}.jpg", np.uint8), cv2.IMREAD_UNCHANGED)
        assert overlay is not None and overlay.shape == image.shape[:2] + (3,), stem
        text = (out / "labels" / f"{stem}.txt").read_text()
        labels[stem] = read_labels(out / "labels" / f"{stem}.txt")
        rows = text.splitlines()[1:]
        if with_scores:
            assert all(len(row.split()) == 3 for row in rows), text  # the score column is written
    return labels


def test_detect_cli_writes_overlays_labels_and_summary(heatmap_checkpoint, source, tmp_path):
    out = tmp_path / "results"
    result = run_python("detect.py", "--weights", heatmap_checkpoint, "--source", source, "--out", out,
                        "--conf", "0", "--max-points", "5", "--device", "cpu", "--quiet", timeout=PATIENCE)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = [line for line in result.stdout.splitlines() if "image(s) done" in line]
    assert len(summary) == 1
    assert re.match(r"3 image\(s\) done, 15 point\(s\) found \(threshold 0\.00\), 0 failure\(s\)", summary[0]), summary
    labels = check_outputs(source, out, STEMS)
    # The label files hold exactly what the API predicts, in normalised coordinates.
    model = load_model(heatmap_checkpoint, device="cpu")
    for stem, points in labels.items():
        image = read_image(source / f"{stem}.png")
        expected = model.predict(image, conf=0.0, max_points=5)
        assert len(points) == 5
        h, w = image.shape[:2]
        np.testing.assert_allclose(normalised_to_pixel(points[:, :2], w, h), expected[:, :2], atol=1e-5 * max(w, h))
        np.testing.assert_allclose(points[:, 2], expected[:, 2], atol=1e-6)


def test_nothing_found_writes_zero(heatmap_checkpoint, source, tmp_path, capsys):
    out = tmp_path / "none"
    assert detect.main(["--weights", str(heatmap_checkpoint), "--source", str(source), "--out", str(out),
                        "--conf", "1", "--device", "cpu", "--quiet"]) == 0
    assert "3 image(s) done, 0 point(s) found" in capsys.readouterr().out
    labels = check_outputs(source, out, STEMS)
    for stem in STEMS:
        assert (out / "labels" / f"{stem}.txt").read_text() == "0\n"
        assert labels[stem].shape == (0, 3)


def test_regression_model_one_point_per_image(regression_checkpoint, source, tmp_path, capsys):
    out = tmp_path / "reg"
    assert detect.main(["--weights", str(regression_checkpoint), "--source", str(source), "--out", str(out),
                        "--conf", "0", "--device", "cpu", "--quiet"]) == 0
    assert "3 image(s) done, 3 point(s) found" in capsys.readouterr().out
    labels = check_outputs(source, out, STEMS)
    assert all(len(points) == 1 for points in labels.values())


@pytest.mark.parametrize("where", ["source", "overlays", "labels"])
def test_refuses_to_write_into_the_source_folder(heatmap_checkpoint, tmp_path, where, tiny_dataset):
    root = tmp_path / "root"
    images = root / "overlays" if where == "overlays" else root / "labels" if where == "labels" else root
    images.mkdir(parents=True)
    shutil.copy(tiny_dataset / "images" / "Misc_1.png", images)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = run_python("detect.py", "--weights", heatmap_checkpoint, "--source", images, "--out", root,
                        "--device", "cpu", "--quiet", timeout=PATIENCE) if where == "source" else None
    if result is not None:
        assert result.returncode == 2
        assert "choose another --out" in result.stderr and "Traceback" not in result.stderr
    else:
        assert detect.main(["--weights", str(heatmap_checkpoint), "--source", str(images), "--out", str(root),
                            "--device", "cpu", "--quiet"]) == 2
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written


def test_bad_files_are_reported_and_the_rest_done(heatmap_checkpoint, source, tmp_path, capsys):
    (source / "broken.png").write_bytes(b"not a png")
    wide = cv2.cvtColor(read_image(source / "Misc_100.png"), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    named = source / "目标_ä.png"
    named.write_bytes(cv2.imencode(".png", wide)[1].tobytes())
    out = tmp_path / "mixed"
    code = detect.main(["--weights", str(heatmap_checkpoint), "--source", str(source), "--out", str(out),
                        "--conf", "0", "--max-points", "3", "--device", "cpu", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "4 image(s) done" in printed and "1 failure(s)" in printed
    assert re.search(r"failed: .*broken\.png", printed)
    labels = check_outputs(source, out, (*STEMS, "目标_ä"))
    # A 16-bit copy of a picture gives the points of the 8-bit picture.
    np.testing.assert_allclose(labels["目标_ä"], labels["Misc_100"], atol=2e-6)


def test_missing_inputs_are_one_line_errors(heatmap_checkpoint, source, tmp_path, capsys):
    assert detect.main(["--weights", str(heatmap_checkpoint), "--source", str(tmp_path / "nothing"),
                        "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nothing'}: no such file or folder\n"
    assert detect.main(["--weights", str(tmp_path / "missing.pt"), "--source", str(source),
                        "--out", str(tmp_path / "o")]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_glob_and_same_stem(heatmap_checkpoint, source, tmp_path, capsys):
    (source / "Misc_1.jpg").write_bytes(cv2.imencode(".jpg", read_image(source / "Misc_1.png"))[1].tobytes())
    out = tmp_path / "all"
    assert detect.main(["--weights", str(heatmap_checkpoint), "--source", str(source), "--out", str(out),
                        "--conf", "0", "--max-points", "2", "--device", "cpu", "--quiet"]) == 0
    assert "4 image(s) done" in capsys.readouterr().out
    names = sorted(p.stem for p in (out / "labels").iterdir())
    # Misc_1.jpg comes first by name; Misc_1.png keeps its result under another name instead of overwriting.
    assert names == sorted([*STEMS, "Misc_1_png"])
    # A glob picks only what it matches.
    out = tmp_path / "glob"
    assert detect.main(["--weights", str(heatmap_checkpoint), "--source", str(source / "Misc_10*"), "--out", str(out),
                        "--device", "cpu", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["Misc_10.txt", "Misc_100.txt"]
