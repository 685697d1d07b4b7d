"""The heatmap method's target (Gaussians at sub-pixel points), NMS and decoding back to sub-pixel points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simple_keypoint.heatmap.decode import decode_heatmap, nms, refine_subpixel, topk
from simple_keypoint.heatmap.target import gaussian_heatmaps


def gaussian(h, w, u, v, sigma=1.5, peak=1.0):
    """A (H, W) float64 Gaussian centred at (u, v), written out here independently of the package."""
    y, x = np.mgrid[0:h, 0:w]
    return peak * np.exp(-((x - u) ** 2 + (y - v) ** 2) / (2 * sigma**2))


def centroid(heat):
    y, x = np.mgrid[0:heat.shape[0], 0:heat.shape[1]]
    return np.array([(heat * x).sum() / heat.sum(), (heat * y).sum() / heat.sum()])


@pytest.mark.parametrize("sigma", [1.0, 1.5, 3.0])
def test_target_peak_is_at_the_sub_pixel_point(sigma):
    points = torch.tensor([[[20.3, 11.75], [5.0, 30.0]], [[31.49, 24.02], [0.0, 0.0]]])
    maps = gaussian_heatmaps(points, torch.tensor([1, 1]), 40, 48, sigma)
    assert maps.shape == (2, 1, 40, 48)
    for b in range(2):
        heat = maps[b, 0].double().numpy()
        np.testing.assert_allclose(centroid(heat), points[b, 0].double().numpy(), atol=0.01)
        np.testing.assert_allclose(heat, gaussian(40, 48, *points[b, 0].tolist(), sigma=sigma), atol=1e-6)
    # The second point of image 0 is not drawn (count 1): nothing near (5, 30).
    assert float(maps[0, 0, 28:33, 3:8].max()) < 1e-6


def test_target_integer_point_has_peak_one_and_max_over_points():
    maps = gaussian_heatmaps(torch.tensor([[[10.0, 8.0], [14.0, 8.0]]]), torch.tensor([2]), 20, 30, 1.5)[0, 0]
    assert float(maps[8, 10]) == pytest.approx(1.0) and float(maps[8, 14]) == pytest.approx(1.0)
    # Overlapping Gaussians are combined by max, not sum, so the targets stay in [0, 1].
    assert float(maps.max()) <= 1.0
    assert float(maps[8, 12]) == pytest.approx(np.exp(-4 / (2 * 1.5**2)), rel=1e-5)


def test_target_zero_points_is_all_zero():
    counts = torch.tensor([0, 0])
    assert not gaussian_heatmaps(torch.full((2, 3, 2), 5.0), counts, 16, 16, 1.5).any()
    assert not gaussian_heatmaps(torch.zeros((2, 0, 2)), counts, 16, 16, 1.5).any()


def test_nms_keeps_a_peak_and_suppresses_its_neighbours():
    heat = torch.tensor(gaussian(20, 20, 7, 9), dtype=torch.float32)
    heat += torch.tensor(gaussian(20, 20, 15, 4, peak=0.5), dtype=torch.float32)
    kept = nms(heat[None, None])[0, 0]
    assert torch.count_nonzero(kept) == 2
    assert float(kept[9, 7]) == pytest.approx(1.0, abs=1e-6) and float(kept[4, 15]) == pytest.approx(0.5, abs=1e-3)
    points = topk(kept, 10, conf=0.1)
    np.testing.assert_allclose(points.numpy(), [[7, 9, 1.0], [15, 4, 0.5]], atol=1e-3)
    assert len(topk(kept, 10, conf=0.7)) == 1
    assert len(topk(kept, 1, conf=0.0)) == 1


def test_nms_keeps_one_point_of_a_plateau():
    # A saturated sigmoid gives exactly equal neighbours (1.0 in float32): one target, one point.
    heat = torch.zeros(1, 1, 12, 12)
    heat[0, 0, 5:7, 4:7] = 1.0
    heat[0, 0, 2, 9] = 0.5
    kept = nms(heat)[0, 0]
    assert torch.count_nonzero(kept == 1.0) == 1
    assert float(kept[2, 9]) == 0.5
    assert len(decode_heatmap(heat[0, 0], conf=0.3, max_points=10)) == 2


@pytest.mark.parametrize("u, v", [(20.0, 15.0), (20.3, 15.7), (11.45, 30.55), (31.9, 8.12)])
def test_decode_finds_a_sub_pixel_gaussian(u, v):
    heat = torch.tensor(gaussian(40, 48, u, v, sigma=1.5, peak=0.8), dtype=torch.float32)
    points = decode_heatmap(heat, conf=0.3, max_points=5)
    assert points.shape == (1, 3) and points.dtype == np.float64
    assert abs(points[0, 0] - u) < 0.05 and abs(points[0, 1] - v) < 0.05
    assert points[0, 2] == pytest.approx(0.8, abs=0.1)
    unrefined = decode_heatmap(heat, conf=0.3, max_points=5, subpixel=False)
    np.testing.assert_array_equal(unrefined[0, :2], [round(u), round(v)])


def test_refine_subpixel_on_the_border_and_without_peaks():
    heat = gaussian(10, 10, 0.3, 9.0)
    out = refine_subpixel(heat, np.array([[0.0, 9.0, 1.0]]))
    np.testing.assert_array_equal(out, [[0.0, 9.0, 1.0]])  # no neighbour on one side: no fit, no crash
    assert refine_subpixel(heat, np.zeros((0, 3))).shape == (0, 3)
    # Offsets are bounded to half a pixel even on a flat or odd map.
    flat = refine_subpixel(np.full((5, 5), 0.5), np.array([[2.0, 2.0, 0.5]]))
    np.testing.assert_array_equal(flat, [[2.0, 2.0, 0.5]])


def test_decode_orders_best_first_and_respects_max_points():
    heat = np.zeros((30, 30))
    for i, (u, v) in enumerate([(5, 5), (20, 6), (8, 22), (24, 24)]):
        heat = np.maximum(heat, gaussian(30, 30, u + 0.2, v - 0.3, peak=0.9 - 0.2 * i))
    points = decode_heatmap(torch.tensor(heat, dtype=torch.float32), conf=0.0, max_points=3)
    assert len(points) == 3
    assert np.all(np.diff(points[:, 2]) <= 0)
    np.testing.assert_allclose(points[:, :2], [[5.2, 4.7], [20.2, 5.7], [8.2, 21.7]], atol=0.05)


def test_decode_at_threshold_zero_returns_only_peaks():
    # Validation decodes at conf 0 (AP needs every peak): suppressed pixels (score 0) are not points.
    heat = torch.tensor(gaussian(24, 24, 12.4, 6.6, peak=0.7), dtype=torch.float32)
    points = decode_heatmap(heat, conf=0.0, max_points=20)
    assert len(points) == 1
    np.testing.assert_allclose(points[0, :2], [12.4, 6.6], atol=0.05)
