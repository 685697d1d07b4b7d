"""The public API: ``load_model(path).predict(image)``; coordinates map back to the original image exactly."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from simple_keypoint import Localizer, load_model
from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class FakeHeatmapNet(nn.Module):
    """Stands in for a trained heatmap net: a Gaussian (sigma 1.5) at the intensity-weighted centre of
    what stands above the flat background, so a resized blob still gives its exact centre.

    Padding is exactly 0 (the standardised mean) and is left out. Records its inputs, so tests can
    see the padding and the downscale.
    """

    stride = 16

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        image = x[0, 0].double()
        weights = torch.where(image != 0, image - image.min(), torch.zeros_like(image))
        v, u = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
        cu, cv = (weights * u).sum() / weights.sum(), (weights * v).sum() / weights.sum()
        heat = 0.9 * torch.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * 1.5**2))
        return torch.logit(heat.clamp(min=1e-12)).float()[None, None]


class FakeRegressionNet(nn.Module):
    """Stands in for a trained regression net: locate() gives the normalised centre of the brightest pixel."""

    stride = 4

    def locate(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        index = int(torch.argmax(x[0, 0]))
        v, u = divmod(index, w)
        return torch.tensor([[(u + 0.5) / w, (v + 0.5) / h, math.log(0.95 / 0.05)]])  # confidence logit: 0.95


def frame(h, w, blobs, dtype=np.uint8, high=200):
    """A flat dark frame with bright square blobs ``(u0, v0, size)``; returns it and the blob centres (u, v)."""
    image = np.full((h, w), 20, dtype)
    centres = []
    for u0, v0, size in blobs:
        image[v0:v0 + size, u0:u0 + size] = high
        centres.append((u0 + (size - 1) / 2, v0 + (size - 1) / 2))
    return image, np.array(centres)


def test_padding_odd_sized_image_keeps_coordinates():
    net = FakeHeatmapNet()
    model = Localizer("heatmap", net, conf=0.3, device="cpu")
    image, centres = frame(37, 53, [(40, 29, 1)])  # padded to 48 x 64, point near the padded edge
    points = model.predict(image)
    assert net.inputs[-1].shape[-2:] == (48, 64)
    assert points.shape == (1, 3)
    np.testing.assert_allclose(points[0, :2], centres[0], atol=0.05)
    assert model.heatmap(image).shape == (37, 53)


@pytest.mark.parametrize("size, blob", [(1, (300, 77, 2)), (1, (41, 200, 4)), (2, (611, 3, 2))])
def test_downscaled_image_maps_back_without_half_pixel_error(size, blob):
    net = FakeHeatmapNet()
    model = Localizer("heatmap", net, conf=0.3, device="cpu", max_side=320)
    image, centres = frame(256 * size, 320 * 2, [blob])  # 2x (or more) larger than max_side
    points = model.predict(image)
    assert max(net.inputs[-1].shape[-2:]) <= 320 + net.stride
    assert points.shape == (1, 3)
    np.testing.assert_allclose(points[0, :2], centres[0], atol=0.1)
    heat = model.heatmap(image)
    assert heat.shape == image.shape
    v, u = np.unravel_index(np.argmax(heat), heat.shape)
    assert abs(u - centres[0][0]) <= 1 and abs(v - centres[0][1]) <= 1


def test_non_integer_downscale_lands_on_the_right_pixel():
    model = Localizer("heatmap", FakeHeatmapNet(), conf=0.3, device="cpu", max_side=200)
    image, centres = frame(333, 517, [(401, 250, 3)])
    points = model.predict(image)
    assert points.shape == (1, 3)
    # Sampling a blob on a coarser, non-aligned grid moves its centroid a little (0.1 px here), not half a pixel.
    np.testing.assert_array_equal(np.round(points[0, :2]), centres[0])
    np.testing.assert_allclose(points[0, :2], centres[0], atol=0.25)


@pytest.mark.parametrize("max_side", [4096, 100])
def test_regression_output_maps_to_pixels(max_side):
    model = Localizer("regression", FakeRegressionNet(), conf=0.5, device="cpu", max_side=max_side)
    image, centres = frame(61, 90, [(70, 13, 1)])
    points = model.predict(image)
    if max_side == 4096:  # no resize: exactly the bright pixel
        np.testing.assert_allclose(points, [[70, 13, 0.95]], atol=1e-5)
    else:
        np.testing.assert_allclose(points[0, :2], centres[0], atol=0.6)
    assert len(model.predict(image, conf=0.99)) == 0
    with pytest.raises(ValueError):
        model.heatmap(image)


@pytest.fixture(scope="module")
def model(heatmap_checkpoint):
    return load_model(heatmap_checkpoint, device="cpu")


def test_load_model_gives_a_localizer(model, heatmap_checkpoint, regression_checkpoint):
    assert isinstance(model, Localizer) and model.method == "heatmap"
    regression = load_model(regression_checkpoint)
    assert regression.method == "regression"
    points = regression.predict(np.random.default_rng(1).integers(0, 255, (50, 70), dtype=np.uint8), conf=0.0)
    assert points.shape == (1, 3)
    assert -0.5 <= points[0, 0] <= 69.5 and -0.5 <= points[0, 1] <= 49.5


def test_predict_accepts_paths_and_arrays(model, tiny_dataset, tmp_path):
    path = tiny_dataset / "images" / "Misc_100.png"  # a 3-channel file
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    gray = cv2.cvtColor(stored, cv2.COLOR_BGR2GRAY)
    reference = model.predict(path, conf=0.0)
    assert reference.dtype == np.float64 and reference.ndim == 2 and reference.shape[1] == 3
    assert len(reference) > 0
    assert np.all(np.diff(reference[:, 2]) <= 0)  # best first
    h, w = gray.shape
    assert np.all((reference[:, 0] >= -0.5) & (reference[:, 0] <= w - 0.5))
    assert np.all((reference[:, 1] >= -0.5) & (reference[:, 1] <= h - 0.5))
    np.testing.assert_allclose(model.predict(str(path), conf=0.0), reference)
    np.testing.assert_allclose(model.predict(stored, conf=0.0), reference)  # H x W x 3
    np.testing.assert_allclose(model.predict(np.dstack([stored, np.full_like(gray, 255)]), conf=0.0), reference)  # x 4
    # H x W gray, 8 and 16 bit: the same picture gives the same points.
    from_gray = model.predict(gray, conf=0.0)
    from_u16 = model.predict(gray.astype(np.uint16) * 257, conf=0.0)
    assert from_gray.shape[1] == 3 and len(from_gray) > 0
    np.testing.assert_allclose(from_u16, from_gray, atol=1e-3)
    np.testing.assert_allclose(model.predict(gray[:, :, None], conf=0.0), from_gray)
    # A non-ASCII path works like any other.
    other = tmp_path / "données" / "目标_ä.png"
    other.parent.mkdir()
    other.write_bytes(path.read_bytes())
    np.testing.assert_allclose(model.predict(other, conf=0.0), reference)


def test_threshold_and_max_points(model, tiny_dataset):
    path = tiny_dataset / "images" / "Misc_1.png"
    everything = model.predict(path, conf=0.0, max_points=50)
    assert len(model.predict(path, conf=0.0, max_points=3)) == min(3, len(everything))
    np.testing.assert_allclose(model.predict(path, conf=0.0, max_points=3), everything[:3])
    cut = float(np.median(everything[:, 2]))
    assert np.all(model.predict(path, conf=cut, max_points=50)[:, 2] >= cut)
    assert model.predict(path, conf=1.01).shape == (0, 3)


def test_bad_checkpoints_are_one_line_errors(tmp_path, heatmap_checkpoint):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_model(bad)
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(heatmap_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_model(truncated)
    checkpoint = load_checkpoint(heatmap_checkpoint)
    checkpoint["model_args"] = {"widths": (4, 8), "full_res_channels": 2}
    save_checkpoint(tmp_path / "mismatch.pt", checkpoint)
    with pytest.raises(CheckpointError, match="mismatch.pt"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="expected regression"):
        load_checkpoint(heatmap_checkpoint, "regression")


class CornerRegressionNet(FakeRegressionNet):
    """Answers the bottom-right corner of its (padded) input: inside the padding when the image was padded."""

    def locate(self, x):
        return torch.tensor([[0.999, 0.999, 0.9]])


@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (17, 2)])
def test_points_never_leave_the_image(shape):
    model = Localizer("regression", CornerRegressionNet(), conf=0.0, device="cpu")
    points = model.predict(np.full(shape, 7, np.uint8))
    h, w = shape
    assert points.shape == (1, 3)
    assert -0.5 <= points[0, 0] <= w - 0.5 and -0.5 <= points[0, 1] <= h - 0.5, points
