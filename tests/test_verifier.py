"""The verifier: windows around candidates, rescoring inside every backend, export, and its training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_tiny_dataset, run_python

from simple_keypoint.checkpoint import load_checkpoint, save_checkpoint
from simple_keypoint.export import export_onnx
from simple_keypoint.heatmap.verifier import CONTRAST_SCALE, LOGIT_SCALE, WINDOW, VerifierNet, windows
from simple_keypoint.paths import sample_image
from simple_keypoint.predict import load_model


def test_window_is_centred_on_the_candidate_and_replicates_borders() -> None:
    gray = np.zeros((40, 50), np.float32)
    gray[10, 20] = 8.0
    logits = np.full((40, 50), -4.0, np.float32)
    logits[10, 20] = 4.0
    w = windows(gray, logits, np.array([[20.2, 9.8, 0.5], [0.0, 0.0, 0.9]]))
    assert w.shape == (2, 3, WINDOW, WINDOW)
    centre = WINDOW // 2 - 1  # an even window: the candidate is the last pixel of the top-left half
    assert w[0, 0, centre, centre] == pytest.approx(8.0 / CONTRAST_SCALE)
    assert w[0, 1, centre, centre] == pytest.approx(4.0 / LOGIT_SCALE)
    assert np.allclose(w[0, 2], 0.0)  # logit(0.5)
    assert w[1, 2, 0, 0] == pytest.approx(np.log(9) / LOGIT_SCALE, rel=1e-5)
    assert np.allclose(w[1, 1, :centre], w[1, 1, centre])  # rows above the frame repeat its first row


@pytest.mark.parametrize("size", [32, 31, 8])
def test_windows_match_a_plain_cut_median_and_clip(size: int) -> None:
    rng = np.random.default_rng(3)
    gray = (rng.normal(size=(23, 37)) * 9).astype(np.float32)
    logits = (rng.normal(size=(23, 37)) * 30).astype(np.float32)
    points = np.array([[0, 0, 0.2], [36, 22, 0.99], [17.4, 11.6, 0.5], [-2.0, 40.0, 0.7], [5, 20, 1e-9]])
    got = windows(gray, logits, points, size=size)
    before = (size - 1) // 2
    for i, (u, v, score) in enumerate(points):
        u, v = int(np.clip(round(u), 0, 36)), int(np.clip(round(v), 0, 22))
        rows = np.clip(np.arange(v - before, v - before + size), 0, 22)
        cols = np.clip(np.arange(u - before, u - before + size), 0, 36)
        g, lg = gray[np.ix_(rows, cols)], logits[np.ix_(rows, cols)]
        assert np.allclose(got[i, 0], np.clip(g - np.median(g), -20, 20) / CONTRAST_SCALE, atol=1e-6)
        assert np.allclose(got[i, 1], np.clip(lg, -20, 20) / LOGIT_SCALE)
        assert np.allclose(got[i, 2], np.clip(np.log(score / (1 - score)), -20, 20) / LOGIT_SCALE)


def with_verifier(checkpoint_path: Path, out: Path, bias: float, candidate_conf: float = 0.0) -> Path:
    """The checkpoint with a random verifier whose output is shifted by ``bias``."""
    checkpoint = load_checkpoint(checkpoint_path)
    torch.manual_seed(0)
    net = VerifierNet((4, 8, 8))
    with torch.no_grad():
        net.head.weight.normal_(0.0, 5.0)  # spread the scores: near-ties would leave the order to float rounding
        net.head.bias.fill_(bias)
    entry = {"widths": [4, 8, 8], "window": WINDOW, "candidate_conf": candidate_conf, "max_candidates": 12,
             "state": net.state_dict()}
    save_checkpoint(out, {**checkpoint, "verifier": entry, "decode": {**checkpoint["decode"], "conf": 0.5}})
    return out


def test_verifier_scores_are_what_every_backend_returns(heatmap_checkpoint: Path, tmp_path: Path) -> None:
    path = with_verifier(heatmap_checkpoint, tmp_path / "v.pt", bias=0.0)
    plain = load_model(heatmap_checkpoint, backend="torch")
    torch_model = load_model(path, backend="torch")
    candidates, seen, logits = plain.candidates(plain.standardised(sample_image()), 0.0, 12)
    expected = torch_model.verifier.rescore(seen, logits, candidates)
    expected = expected[np.argsort(-expected[:, 2], kind="stable")]
    got = torch_model.predict(sample_image(), conf=0.0)
    assert len(got) == len(candidates) > 0
    assert np.allclose(got, expected)
    assert not np.allclose(np.sort(got[:, 2]), np.sort(candidates[:, 2]))  # the scores are the verifier's
    onnx_file = tmp_path / "v.onnx"
    export_onnx(load_checkpoint(path), onnx_file)
    by_place = np.lexsort(got[:, :2].T)
    for model in (load_model(path, backend="onnx"), load_model(onnx_file)):
        assert model.verifier is not None
        points = model.predict(sample_image(), conf=0.0)
        points = points[np.lexsort(points[:, :2].T)]
        assert np.allclose(points[:, :2], got[by_place, :2], atol=1e-3)  # float32 logits refine alike
        assert np.allclose(points[:, 2], got[by_place, 2], atol=1e-4)


@pytest.mark.parametrize("bias, kept", [(-30.0, False), (30.0, True)])
def test_the_threshold_applies_to_the_verifier_score(heatmap_checkpoint: Path, tmp_path: Path, bias: float, kept: bool) -> None:
    model = load_model(with_verifier(heatmap_checkpoint, tmp_path / "v.pt", bias=bias), backend="torch")
    points = model.predict(sample_image())  # the stored threshold, 0.5
    assert (len(points) > 0) == kept
    if kept:
        assert len(points) == min(12, model.max_points) or (points[:, 2] > 0.99).all()


def train_verifier_args(weights: Path | str, data: Path, out: Path, cache: Path, epochs: str = "2") -> list:
    return ["-m", "simple_keypoint.heatmap.train_verifier", "--weights", weights, "--data", data, "--val", data,
            "--clutter", "--epochs", epochs, "--windows-per-epoch", "64", "--batch-size", "16", "--widths", "4", "8",
            "--max-candidates", "4", "--out", out, "--cache", cache]


def test_train_verifier_end_to_end(tmp_path: Path) -> None:
    """On the shipped fast model's candidates (a 1-epoch test model finds no targets to learn from)."""
    data = copy_tiny_dataset(tmp_path / "data")
    out = tmp_path / "verifier"
    result = run_python(*train_verifier_args("heatmap_n", data, out, tmp_path / "cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "best.pt").is_file() and (out / "log.csv").read_text().count("\n") == 3
    model = load_model(out / "best.pt")
    assert model.verifier is not None and model.verifier.max_candidates == 4
    assert model.predict(sample_image(), conf=0.0).shape[1] == 3
    again = run_python(*train_verifier_args("heatmap_n", data, tmp_path / "v2", tmp_path / "cache", epochs="1"))
    assert again.returncode == 0 and "candidates data" not in again.stderr  # mined candidates were reused
    before = (out / "best.pt").read_bytes()
    refused = run_python(*train_verifier_args("heatmap_n", data, out, tmp_path / "cache", epochs="1"))
    assert refused.returncode == 1 and (out / "best.pt").read_bytes() == before
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: {out} already holds best.pt and 3 more")


def test_train_verifier_without_targets_among_candidates_is_one_error(heatmap_checkpoint: Path, tmp_path: Path) -> None:
    data = copy_tiny_dataset(tmp_path / "data")
    result = run_python(*train_verifier_args(heatmap_checkpoint, data, tmp_path / "v", tmp_path / "cache"),
                        "--candidate-conf", "1.0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: the training candidates are all clutter")


def test_context_channels_show_a_wider_window_shrunk() -> None:
    gray = np.zeros((64, 64), np.float32)
    gray[:, 31:] = 6.0  # a bright edge right of the candidate: outside its 16 px window (u 13..28), inside the 32 px one (u 5..36)
    logits = np.zeros((64, 64), np.float32)
    near = windows(gray, logits, np.array([[20.0, 30.0, 0.5]]), size=16)
    wide = windows(gray, logits, np.array([[20.0, 30.0, 0.5]]), size=16, context=2)
    assert near.shape == (1, 3, 16, 16) and wide.shape == (1, 5, 16, 16)
    assert np.allclose(wide[:, :3], near)
    assert np.allclose(near[0, 0], 0.0)  # the 16 px window (u 13..28) does not reach the edge at u 40
    assert wide[0, 3, :, -3:].min() > 0 and np.allclose(wide[0, 3, :, :4], 0.0)  # the wider view shows the edge
