"""Targets shaped like the object: spreads from masks, carried through crops and flips, drawn as
Gaussians with the object's covariance; and the validation schedule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from simple_keypoint.convert import mask_moments
from simple_keypoint.dataset import CropDataset, Patch, Sample, composite_patch, flip_and_transpose, load_dataset, paste
from simple_keypoint.heatmap.target import gaussian_heatmaps, object_covariance
from simple_keypoint.labels import pixel_to_normalised, write_labels
from simple_keypoint.training import is_validation_epoch


def test_mask_moments_match_numpy_covariance() -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:9, 3:17] = 1  # a 4 x 14 bar
    mask[20, 30] = 1  # one pixel
    gray = np.random.default_rng(0).uniform(1, 5, mask.shape)
    centres, areas, spreads = mask_moments(mask, gray)
    assert areas.tolist() == [56, 1]
    v, u = np.nonzero(mask[:15])
    w = gray[v, u] + 1e-6
    cov = np.cov(np.stack([u, v]), aweights=w, bias=True)
    np.testing.assert_allclose(spreads[0], [cov[0, 0], cov[1, 1], cov[0, 1]], atol=1e-9)
    np.testing.assert_allclose(centres[0], [np.average(u, weights=w), np.average(v, weights=w)])
    np.testing.assert_allclose(spreads[1], 0, atol=1e-9)


def test_object_covariance_widens_to_sigma_and_keeps_direction() -> None:
    sigma = 1.5
    # A point (no extent) gets the fixed radius; a long diagonal object keeps its length and angle.
    np.testing.assert_allclose(object_covariance(torch.zeros(3), sigma).numpy(), [2.25, 2.25, 0], atol=1e-6)
    long = torch.tensor([10.0, 10.0, 9.9])  # major axis along u = v, variance 19.9; minor 0.1 -> 2.25
    cov = object_covariance(long, sigma).numpy()
    eig = np.linalg.eigvalsh([[cov[0], cov[2]], [cov[2], cov[1]]])
    np.testing.assert_allclose(eig, [2.25, 19.9], rtol=1e-5)
    assert cov[2] > 0  # still along u = v


def test_shaped_gaussian_peaks_once_at_the_point_and_spreads_along_the_object() -> None:
    points = torch.tensor([[[20.3, 15.6, 16.0, 1.0, 0.0], [5.0, 5.0, 0.0, 0.0, 0.0]]])
    maps = gaussian_heatmaps(points, torch.tensor([2]), 32, 40, 1.5)[0, 0]
    assert float(maps.max()) <= 1.0
    # Along u the object is 4 px wide (std), along v the fixed 1.5 px.
    assert abs(float(maps[16, 28]) - np.exp(-0.5 * 7.7**2 / 16)) < 0.02
    assert abs(float(maps[19, 20]) - np.exp(-0.5 * (3.4**2 / 2.25 + 0.3**2 / 16))) < 0.02
    # The point without extent is drawn exactly as the fixed-radius target.
    fixed = gaussian_heatmaps(points[..., :2], torch.tensor([2]), 32, 40, 1.5)[0, 0]
    assert torch.allclose(maps[:10, :10], fixed[:10, :10], atol=1e-6)


def test_flips_move_spreads_with_the_pixels() -> None:
    """The covariance of the bright pixels of a flipped crop equals the flipped spread column."""
    image = np.zeros((32, 32), np.float32)
    cv2.ellipse(image, (12, 18), (9, 3), 30, 0, 360, 1.0, -1)  # a tilted ellipse
    v, u = np.nonzero(image)
    cov = np.cov(np.stack([u, v]), bias=True)
    points = np.array([[u.mean(), v.mean(), cov[0, 0], cov[1, 1], cov[0, 1]]])
    for seed in range(12):
        flipped, moved = flip_and_transpose(image, points, np.random.default_rng(seed))
        v2, u2 = np.nonzero(flipped)
        c2 = np.cov(np.stack([u2, v2]), bias=True)
        np.testing.assert_allclose(moved[0], [u2.mean(), v2.mean(), c2[0, 0], c2[1, 1], c2[0, 1]], atol=1e-6)


def test_pasted_patch_brings_its_spread() -> None:
    patch = Patch(np.ones((3, 7), np.float32), np.array([3.0, 1.0]), np.array([4.0, 0.6, 0.5]))
    rng = np.random.default_rng(3)
    image, points = paste(np.zeros((40, 40), np.float32), np.zeros((0, 5)), patch, rng)
    assert points.shape == (1, 5)
    np.testing.assert_allclose(points[0, 2:4], [4.0, 0.6])
    assert abs(points[0, 4]) == 0.5
    _, plain = paste(np.zeros((40, 40), np.float32), np.zeros((0, 2)), patch, rng)
    assert plain.shape == (1, 2)


def test_dataset_reads_spreads_from_masks(tmp_path: Path) -> None:
    for sub in ("images", "labels", "masks"):
        (tmp_path / sub).mkdir()
    image = np.full((40, 50), 20, np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:13, 5:20] = 255  # an extended target
    mask[30, 40] = 255  # a one-pixel target
    image[mask > 0] = 200
    cv2.imwrite(str(tmp_path / "images" / "a.png"), image)
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    centres, _, spreads = mask_moments(mask, image.astype(np.float64))
    extra = np.array([[2.0, 2.0]])  # a labelled point with no mask component: fixed radius
    write_labels(tmp_path / "labels" / "a.txt", pixel_to_normalised(np.vstack([centres, extra]), 50, 40))
    (sample,), _ = load_dataset(tmp_path, progress=False)
    np.testing.assert_allclose(sample.spreads, np.vstack([spreads, np.zeros((1, 3))]), atol=1e-3)
    assert sample.spreads[0, 0] > 15  # the 15-px bar's variance along u
    crops = CropDataset([sample], 32, seed=0, keep_one=True, spreads=True)
    _, points, count = crops[0]
    assert points.shape == (16, 5) and count >= 1
    _, points, _ = CropDataset([sample], 32, seed=0, keep_one=True)[0]
    assert points.shape == (16, 2)  # without spreads: the plain item every method reads


def test_sample_without_masks_has_no_spreads() -> None:
    sample = Sample("x", np.zeros((8, 8), np.float32), np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(sample.points_with_spreads(), [[1, 2, 0, 0, 0]])


@pytest.mark.parametrize(("every", "expected"), [(1, list(range(1, 13))), (5, [5, 8, 9, 10, 11, 12]),
                                                 (4, [4, 8, 9, 10, 11, 12]), (20, list(range(1, 13)))])
def test_validation_schedule(every: int, expected: list[int]) -> None:
    assert [e for e in range(1, 13) if is_validation_epoch(e, 12, every)] == expected


def test_composite_object_is_one_point_at_the_centroid_of_all_its_spots() -> None:
    spot = Patch(np.ones((2, 2), np.float32), np.array([0.5, 0.5]), np.full(3, 0.25) * [1, 1, 0])
    rng = np.random.default_rng(1)
    for _ in range(20):
        whole = composite_patch([spot, spot, spot], rng, radius=5.0)
        v, u = np.nonzero(whole.delta > 0)
        w = whole.delta[v, u]
        np.testing.assert_allclose(whole.centre, [np.average(u, weights=w), np.average(v, weights=w)], atol=1e-3)
        assert whole.delta.sum() == pytest.approx(12.0)  # every spot is in, none cut off
        cov = np.cov(np.stack([u, v]), aweights=w, bias=True)
        np.testing.assert_allclose(whole.spread, [cov[0, 0], cov[1, 1], cov[0, 1]], atol=1e-3)
