"""benchmarks/peers.py without the peer: a probability map becomes one point per component (at its
weighted centroid, scored by its peak), a net's map reaches the frame's pixels under both input
protocols, and the benchmark skips with one line when no peer folder is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_python

from benchmarks import peers


def made_up_map() -> np.ndarray:
    """A 40x40 map: a strong blob, a weak region holding two strong spots, a weak-only blob, noise."""
    p = np.full((40, 40), 1e-6, np.float32)
    p[4:7, 4:6] = [[0.91, 0.95], [0.95, 0.99], [0.91, 0.95]]  # strong: its centroid pulled towards column 5
    p[20:23, 10:20] = 0.3  # one weak region ...
    p[21, 11] = 0.92  # ... holding two strong spots, apart: two points at 0.9, not one
    p[21, 18] = 0.97
    p[32, 30:32] = [0.2, 0.6]  # weak only: a point for AP, scored 0.6
    p[36, 2] = 0.005  # below the floor: nothing
    return p


def test_one_point_per_component_at_its_weighted_centroid_scored_by_its_peak() -> None:
    points = peers.component_points(made_up_map(), threshold=0.9, floor=0.01)
    column_4, column_5 = 0.91 + 0.95 + 0.91, 0.95 + 0.99 + 0.95  # the strong blob's weights per column
    expected = np.array([
        [(column_4 * 4 + column_5 * 5) / (column_4 + column_5), 5.0, 0.99],  # v: symmetric about row 5
        [18.0, 21.0, 0.97],
        [11.0, 21.0, 0.92],
        [(0.2 * 30 + 0.6 * 31) / 0.8, 32.0, 0.6],
    ])
    np.testing.assert_allclose(points, expected, atol=1e-5)


def test_the_points_above_the_threshold_are_the_thresholded_maps_components_whatever_the_floor() -> None:
    p = made_up_map()
    for floor in (0.001, 0.1, 0.5):
        points = peers.component_points(p, threshold=0.9, floor=floor)
        np.testing.assert_allclose(points[points[:, 2] >= 0.9], peers.component_points(p, 0.9, floor=0.9), atol=1e-9)
    assert len(peers.component_points(p, 0.9, floor=0.9)) == 3
    assert len(peers.component_points(np.zeros((8, 8)), 0.9)) == 0


def test_an_eight_connected_diagonal_is_one_component() -> None:
    p = np.zeros((10, 10), np.float32)
    p[2, 2] = p[3, 3] = p[4, 4] = 0.95
    points = peers.component_points(p, 0.9)
    np.testing.assert_allclose(points, [[3.0, 3.0, 0.95]], atol=1e-6)


class SpotNet(torch.nn.Module):
    """A stand-in for a probability-map net: channel 1 is 1 where the input's first channel is
    brightest, 0 elsewhere (the input must reach it normalised, unpadded where the frame is)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % peers.PEER_STRIDE == 0 and x.shape[-1] % peers.PEER_STRIDE == 0
        brightest = (x[:, :1] == x[:, :1].amax(dim=(2, 3), keepdim=True)).float()
        return torch.cat([1 - brightest, brightest], dim=1)


@pytest.mark.parametrize("test_size", [None, 64])
def test_a_nets_spot_lands_on_the_frames_pixel_under_both_protocols(test_size: int | None) -> None:
    rgb = np.full((50, 90, 3), 40, np.uint8)  # neither side a multiple of 4: padded, then cropped back
    rgb[20:22, 60:62] = 250  # a 2x2 spot centred at (60.5, 20.5)
    points = peers.PeerModel(SpotNet(), test_size=test_size).predict_rgb(rgb)
    strong = points[points[:, 2] >= peers.PEER_THRESHOLD]
    assert len(strong) == 1
    tolerance = 1e-6 if test_size is None else 90 / 64  # resized: within one resized pixel
    np.testing.assert_allclose(strong[0, :2], [60.5, 20.5], atol=tolerance)


def test_without_a_peer_folder_the_benchmark_skips_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(peers.PEER_ENV, raising=False)
    assert peers.main(["--markdown"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and out.startswith("skipped:") and peers.PEER_ENV in out
    assert err == ""


def test_the_command_skips_with_one_line_in_a_fresh_process() -> None:
    done = run_python("-m", "benchmarks.peers")  # run_python's environment names no peer
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()] and done.stdout.startswith("skipped:")


def test_a_folder_that_is_no_clone_is_an_error_naming_what_is_missing(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert peers.main(["--peer-repisd", str(tmp_path)]) == 1
    assert f"{tmp_path}: no {peers.PEER_MODULE}" in capsys.readouterr().err
