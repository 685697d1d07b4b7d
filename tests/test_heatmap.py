"""The heatmap method's target (Gaussians at sub-pixel points), NMS and decoding back to sub-pixel points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simple_keypoint.heatmap.decode import (
    CLUTTER_WEIGHT,
    clutter_level,
    decode_logits,
    decode_scores,
    local_maxima,
    refine_subpixel,
    top_points,
)
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


def logit(p):
    return np.log(p) - np.log1p(-p)


def reference_level(logits):
    """The clutter level by its definition: on every second row and column, the 3 strongest blobs
    left out (the maximum and its 9x9 sampled neighbours, set to the minimum, three times), then the
    value at rank floor(0.999 n) (0-based, ascending) of the n values."""
    sample = logits[::2, ::2].astype(np.float64)
    for _ in range(3):
        v, u = np.unravel_index(np.argmax(sample), sample.shape)
        for dv in range(-4, 5):
            for du in range(-4, 5):
                if 0 <= v + dv < sample.shape[0] and 0 <= u + du < sample.shape[1]:
                    sample[v + dv, u + du] = logits[::2, ::2].min()
    values = np.sort(sample.reshape(-1))
    return float(values[min(int(0.999 * len(values)), len(values) - 1)])


def test_a_large_target_is_not_its_own_clutter():
    """A 10x10-px target fills the top 0.1 % of a small frame: it must score like a small one there."""
    h, w = 128, 128
    yy, xx = np.mgrid[0:h, 0:w]
    small = (-8.0 + 10.0 * np.exp(-((xx - 60.0) ** 2 + (yy - 70.0) ** 2) / 4.5)).astype(np.float32)
    plateau = (np.abs(xx - 60) <= 5) & (np.abs(yy - 70) <= 5)  # flat-topped, just below the peak
    large = np.where(plateau, np.maximum(small, 1.5), small).astype(np.float32)
    assert clutter_level(large) == pytest.approx(clutter_level(small), abs=0.1)
    assert decode_logits(large, 0.0, 1)[0, 2] == pytest.approx(decode_logits(small, 0.0, 1)[0, 2], abs=1e-3)


def reference_decode(logits, conf, k, relative=False):
    """decode_logits written out by its definition, pixel by pixel: a local maximum is >= its 8
    neighbours and > the 4 before it in raster order; score = float64 sigmoid of the logit (minus
    CLUTTER_WEIGHT x the clutter level if ``relative``); best first, equal scores in raster order;
    a parabola through the log-scores of the logits on each axis, inside the map."""
    h, w = logits.shape
    offset = CLUTTER_WEIGHT * reference_level(logits) if relative else 0.0
    log_score = -np.logaddexp(0.0, -logits.astype(np.float64))
    peaks = []
    for v in range(h):
        for u in range(w):
            x = logits[v, u]
            earlier = [logits[v + dv, u + du] for dv, du in ((0, -1), (-1, -1), (-1, 0), (-1, 1)) if v + dv >= 0 and 0 <= u + du < w]
            score = 1 / (1 + np.exp(-(float(x) - offset)))
            if x >= logits[max(v - 1, 0):v + 2, max(u - 1, 0):u + 2].max() and all(x > e for e in earlier) and score >= conf:
                peaks.append((-score, v * w + u, u, v, score))
    points = []
    for _, _, u, v, score in sorted(peaks)[:k]:
        p = [float(u), float(v), score]
        for axis, (c, size) in enumerate(((u, w), (v, h))):
            if 0 < c < size - 1:
                a, b = ((v, u - 1), (v, u + 1)) if axis == 0 else ((v - 1, u), (v + 1, u))
                left, mid, right = log_score[a], log_score[v, u], log_score[b]
                if left - 2 * mid + right < 0:
                    p[axis] += np.clip(0.5 * (left - right) / (left - 2 * mid + right), -0.5, 0.5)
        points.append(p)
    return np.array(points).reshape(-1, 3)


def test_local_maxima_keeps_a_peak_and_suppresses_its_neighbours():
    heat = (gaussian(20, 20, 7, 9) + gaussian(20, 20, 15, 4, peak=0.5)).astype(np.float32)
    np.testing.assert_array_equal(local_maxima(heat), [4 * 20 + 15, 9 * 20 + 7])  # raster order
    np.testing.assert_array_equal(local_maxima(heat, floor=0.7), [9 * 20 + 7])
    points = decode_scores(heat, conf=0.1, max_points=10, subpixel=False)
    np.testing.assert_allclose(points, [[7, 9, 1.0], [15, 4, 0.5]], atol=1e-3)
    assert len(decode_scores(heat, conf=0.7, max_points=10)) == 1
    assert len(decode_scores(heat, conf=0.0, max_points=1)) == 1


def test_local_maxima_keeps_one_point_of_a_plateau():
    # Exactly equal neighbours (an image region the net sees as flat, a saturated score): one point.
    heat = np.zeros((12, 12), np.float32)
    heat[5:7, 4:7] = 1.0
    heat[2, 9] = 0.5
    heat[0:2, 0:3] = 0.7  # a plateau on the border
    np.testing.assert_array_equal(local_maxima(heat), [0, 2 * 12 + 9, 5 * 12 + 4])
    assert len(decode_scores(heat, conf=0.3, max_points=10)) == 3
    logits = np.where(heat > 0, logit(np.clip(heat, 0.01, 0.99)) + 20 * (heat == 1), -5).astype(np.float32)
    np.testing.assert_array_equal(decode_logits(logits, conf=0.3, max_points=10, subpixel=False, relative=False)[:, :2],
                                  [[4, 5], [0, 0], [9, 2]])


def test_top_points_best_first_ties_in_raster_order():
    index, scores = np.arange(10, 17), np.array([0.5, 0.9, 0.5, 0.7, 0.5, 0.9, 0.1])
    got = top_points(index, scores, 5)
    np.testing.assert_array_equal(got[0], [11, 15, 13, 10, 12])
    np.testing.assert_array_equal(got[1], [0.9, 0.9, 0.7, 0.5, 0.5])
    assert len(top_points(index, scores, 0)[0]) == 0
    np.testing.assert_array_equal(top_points(index, scores, 20)[0], [11, 15, 13, 10, 12, 14, 16])


@pytest.mark.parametrize("u, v", [(20.0, 15.0), (20.3, 15.7), (11.45, 30.55), (31.9, 8.12)])
@pytest.mark.parametrize("peak", [0.8, 1 - 1e-9])
def test_decode_finds_a_sub_pixel_gaussian(u, v, peak):
    heat = gaussian(40, 48, u, v, sigma=1.5, peak=peak)
    points = decode_scores(heat.astype(np.float32), conf=0.3, max_points=5)
    assert points.shape == (1, 3) and points.dtype == np.float64
    assert abs(points[0, 0] - u) < 0.05 and abs(points[0, 1] - v) < 0.05
    assert points[0, 2] == pytest.approx(peak, abs=0.1)
    unrefined = decode_scores(heat, conf=0.3, max_points=5, subpixel=False)
    np.testing.assert_array_equal(unrefined[0, :2], [round(u), round(v)])
    # The same map as a net's logits (a peak of 1 - 1e-9 is a logit of ~20.7, where float32's
    # sigmoid is exactly 1.0): the same point, and the score in float64.
    from_logits = decode_logits(logit(np.maximum(heat, 1e-30)).astype(np.float32), conf=0.3, max_points=5, relative=False)
    np.testing.assert_allclose(from_logits[:, :2], points[:, :2], atol=1e-4)
    assert from_logits[0, 2] == pytest.approx(points[0, 2], rel=1e-6) and from_logits[0, 2] < 1.0


def test_refine_subpixel_on_the_border_and_without_peaks():
    heat = gaussian(10, 10, 0.3, 9.0)
    out = refine_subpixel(heat, np.array([[0.0, 9.0, 1.0]]))
    np.testing.assert_array_equal(out, [[0.0, 9.0, 1.0]])  # no neighbour on one side: no fit, no crash
    assert refine_subpixel(heat, np.zeros((0, 3))).shape == (0, 3)
    # Offsets are bounded to half a pixel even on a flat or odd map.
    flat = refine_subpixel(np.full((5, 5), 0.5), np.array([[2.0, 2.0, 0.5]]))
    np.testing.assert_array_equal(flat, [[2.0, 2.0, 0.5]])
    # On the logits of a map, the same fit as on the map.
    heat = gaussian(10, 10, 4.3, 5.8)
    peaks = np.array([[4.0, 6.0, 1.0], [0.0, 6.0, 0.1]])
    np.testing.assert_allclose(refine_subpixel(logit(heat), peaks, logits=True), refine_subpixel(heat, peaks), atol=1e-9)
    np.testing.assert_allclose(refine_subpixel(heat, peaks)[0, :2], [4.3, 5.8], atol=1e-9)


def test_decode_orders_best_first_and_respects_max_points():
    heat = np.zeros((30, 30))
    for i, (u, v) in enumerate([(5, 5), (20, 6), (8, 22), (24, 24)]):
        heat = np.maximum(heat, gaussian(30, 30, u + 0.2, v - 0.3, peak=0.9 - 0.2 * i))
    for points in (decode_scores(heat.astype(np.float32), conf=0.0, max_points=3),
                   decode_logits(logit(np.maximum(heat, 1e-30)).astype(np.float32), conf=0.0, max_points=3)):
        assert len(points) == 3
        assert np.all(np.diff(points[:, 2]) <= 0)
        np.testing.assert_allclose(points[:, :2], [[5.2, 4.7], [20.2, 5.7], [8.2, 21.7]], atol=0.05)


def test_decode_at_threshold_zero_returns_only_peaks():
    # Validation decodes at conf 0 (AP needs every peak): suppressed pixels are not points.
    heat = gaussian(24, 24, 12.4, 6.6, peak=0.7)
    for points in (decode_scores(heat.astype(np.float32), conf=0.0, max_points=20),
                   decode_logits(logit(np.maximum(heat, 1e-30)).astype(np.float32), conf=0.0, max_points=20)):
        assert len(points) == 1
        np.testing.assert_allclose(points[0, :2], [12.4, 6.6], atol=0.05)
    # A score map's zero-score peak (a flat top-hat response) is not a point either.
    assert len(decode_scores(np.zeros((8, 8), np.float32), conf=0.0, max_points=5)) == 0


def test_confident_peaks_do_not_tie():
    # float32's sigmoid is exactly 1.0 for both: the scores must still rank 19 above 18.
    logits = np.full((20, 20), -6.0, np.float32)
    logits[5, 5], logits[12, 14] = 18.0, 19.0
    points = decode_logits(logits, conf=0.5, max_points=5, relative=False)
    np.testing.assert_array_equal(points[:, :2], [[14, 12], [5, 5]])
    assert 1 > points[0, 2] > points[1, 2] > 0.99999998


def test_decode_logits_equals_a_pixel_by_pixel_reference():
    """On random maps, borders included; some quantised so that plateaus and tied scores occur,
    some with confident logits where float32's sigmoid would saturate."""
    rng = np.random.default_rng(0)
    for i in range(200):
        h, w = rng.integers(1, 25, 2)
        logits = rng.normal(size=(h, w)) * rng.uniform(0.1, 2.5) + (20 if i % 5 == 4 else 0)
        if i % 3 == 0:
            logits = np.round(logits * 2) / 2
        logits = logits.astype(np.float32)
        conf, k = float(rng.choice([0.0, 0.1, 0.3, 0.5, 0.9])), int(rng.integers(0, 30))
        relative = bool(i % 2)
        got = decode_logits(logits, conf, k, relative=relative)
        expected = reference_decode(logits, conf, k, relative)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-9, rtol=0)


def test_scores_are_relative_to_the_images_clutter():
    """The same target scores lower in a frame full of clutter than in a clean one (its plain
    score is the same in both); within a frame, points and their order are those of the plain logits."""
    rng = np.random.default_rng(1)
    h, w = 256, 320  # a typical frame: its top 0.1 % is more than one blob
    clean = -8.0 + 10.0 * gaussian(h, w, 30.3, 20.6) + rng.normal(0, 0.05, (h, w))
    cluttered = clean.copy()
    for u, v in rng.uniform([3, 3], [w - 3, h - 3], (60, 2)):
        if np.hypot(u - 30.3, v - 20.6) > 6:
            cluttered = np.maximum(cluttered, -8.0 + 7.0 * gaussian(h, w, u, v))
    scores = {}
    for name, logits in (("clean", clean), ("cluttered", cluttered)):
        logits = logits.astype(np.float32)
        relative = decode_logits(logits, conf=0.0, max_points=100)
        plain = decode_logits(logits, conf=0.0, max_points=100, relative=False)
        np.testing.assert_array_equal(relative[:, :2], plain[:, :2])
        assert np.all(np.diff(relative[:, 2]) <= 0)
        np.testing.assert_allclose(relative[0, :2], [30.3, 20.6], atol=0.1)  # a Gaussian in logits, not scores
        scores[name] = relative[0, 2], plain[0, 2]
    assert scores["clean"][1] == pytest.approx(scores["cluttered"][1], abs=1e-3)
    assert logit(scores["clean"][0]) > logit(scores["cluttered"][0]) + 2.0  # logits 5.3 vs 2.3
    assert clutter_level(np.zeros((0, 5), np.float32)) == 0.0
