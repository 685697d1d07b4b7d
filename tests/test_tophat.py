"""The top-hat baseline (benchmarks/tophat.py), the KxK local maxima it decodes with, and the
benchmark's pieces that need no model: tuning on train, target-free frames, one object one point."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.accuracy import (
    false_alarm_summary,
    points_per_component,
    targets_blocked,
    tiled,
    tune_tophat,
)
from benchmarks.tophat import TopHatDetector, TopHatSettings
from simple_keypoint.dataset import Sample
from simple_keypoint.evaluate import ImageResult, predict_all, score
from simple_keypoint.heatmap.decode import local_maxima
from simple_keypoint.images import standardise


def spot(h: int, w: int, u: float, v: float, peak: float = 1.0, sigma: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (peak * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma ** 2))).astype(np.float32)


def scene(seed: int, targets: int = 2, size: int = 64) -> Sample:
    """Noise, a bright smooth gradient (clutter the top-hat must remove) and ``targets`` small spots."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.05, (size, size)).astype(np.float32) + np.linspace(0, 3, size, dtype=np.float32)[None]
    points = rng.uniform(8, size - 8, (targets, 2))
    for u, v in points:
        image += spot(size, size, u, v, peak=1.5)
    return Sample(f"scene{seed}.png", standardise(image), points)


def test_local_maxima_window_suppresses_weaker_peaks_within_it() -> None:
    heat = spot(30, 30, 10, 10) + spot(30, 30, 13, 10, peak=0.6) + spot(30, 30, 24, 24, peak=0.5)
    # 3x3: the shoulder 3 px away is a peak of its own; 7x7: only the best in each window remains.
    assert len(local_maxima(heat, 0.1)) == 3
    np.testing.assert_array_equal(local_maxima(heat, 0.1, window=7), [10 * 30 + 10, 24 * 30 + 24])
    np.testing.assert_array_equal(local_maxima(heat, window=3), local_maxima(heat))


def test_local_maxima_window_keeps_one_point_of_a_plateau_and_rejects_even_sizes() -> None:
    heat = np.zeros((15, 15), np.float32)
    heat[4:9, 4:9] = 1.0  # a 5x5 plateau: one point, its first pixel
    np.testing.assert_array_equal(local_maxima(heat, 0.5, window=5), [4 * 15 + 4])
    np.testing.assert_array_equal(local_maxima(heat, 0.5, window=9), [4 * 15 + 4])
    with pytest.raises(ValueError, match="odd"):
        local_maxima(heat, window=4)


def test_tophat_finds_small_spots_on_a_gradient_at_subpixel_positions() -> None:
    sample = scene(1)
    for norm in ("p99.9", "meanstd", "raw"):
        detector = TopHatDetector(TopHatSettings(element=7, blur=3, norm=norm, window=7, max_points=2))
        points = detector.predict_standardised(sample.image)
        assert len(points) == 2
        d = np.linalg.norm(points[:, None, :2] - sample.points[None], axis=2).min(axis=1)
        assert (d < 0.5).all(), (norm, d)
        assert (np.diff(points[:, 2]) <= 0).all()  # best first


def test_tophat_settings_limit_points_and_threshold() -> None:
    sample = scene(2, targets=4)
    few = TopHatDetector(TopHatSettings(max_points=3)).predict_standardised(sample.image)
    assert len(few) == 3
    every = TopHatDetector(TopHatSettings(max_points=20)).predict_standardised(sample.image, conf=0.0)
    high = TopHatDetector(TopHatSettings(max_points=20), conf=float(np.median(every[:, 2]))).predict_standardised(sample.image)
    assert 0 < len(high) < len(every) and (high[:, 2] >= np.median(every[:, 2])).all()


@pytest.mark.parametrize("bad", [dict(element=6), dict(blur=2), dict(norm="max"), dict(window=0), dict(max_points=0)])
def test_tophat_settings_reject_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        TopHatSettings(**bad)


def test_tophat_label_names_every_setting() -> None:
    assert TopHatSettings(11, 3, "meanstd", 7, 10).label() == "top-hat 11px + blur 3 + meanstd + 7x7 max, <= 10"
    assert TopHatSettings(7, 0, "p99.9", 5, 20).label() == "top-hat 7px + p99.9 + 5x5 max, <= 20"


def test_tuning_picks_the_setting_with_the_best_mean_train_ap() -> None:
    train = {"a": [scene(s) for s in range(6)], "b": [scene(s, 3) for s in range(6, 12)]}
    grid = {"element": (3, 9), "blur": (3,), "norm": ("p99.9",), "window": (7,), "max_points": (10,)}
    tuned = tune_tophat(train, grid)
    means = {}
    for element in grid["element"]:
        detector = TopHatDetector(TopHatSettings(element=element))
        means[element] = np.mean([score(predict_all(detector, s), 0.0)["AP@3px"] for s in train.values()])
    assert tuned["settings"]["element"] == max(means, key=means.get)
    assert tuned["mean train AP@3px"] == pytest.approx(max(means.values()))
    assert tuned["grid"]["element"] == [3, 9]


def test_points_per_component_counts_zero_one_and_several(tmp_path) -> None:  # noqa: ANN001
    import cv2

    (tmp_path / "masks").mkdir()
    mask = np.zeros((40, 60), np.uint8)
    mask[2:10, 2:10] = 255  # 64 px: gets no point
    mask[20:28, 20:28] = 255  # 64 px: one point just outside it (within reach)
    mask[5:13, 40:48] = 255  # 64 px: two points
    mask[30:33, 50:53] = 255  # 9 px: too small to count
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    sample = Sample("a.png", np.zeros((40, 60), np.float32), np.zeros((0, 2)), source=str(tmp_path))
    pred = np.array([[29.0, 24.0, 0.9], [42.0, 8.0, 0.8], [46.0, 11.0, 0.7], [51.0, 31.0, 0.9], [5.0, 5.0, 0.1]])
    counts = points_per_component([sample], [ImageResult("a.png", np.zeros((0, 2)), pred, 2400)], conf=0.5)
    assert counts == {"components": 3, "0 points": 1, "1 point": 1, "2+ points": 1, "share with 1": pytest.approx(1 / 3)}


def test_tiled_frames_block_every_target_and_are_deterministic() -> None:
    samples = [Sample(f"{i}.png", np.full((8, 8), float(i), np.float32), np.array([[3.0, 4.0]]), source="/nowhere")
               for i in range(45)]
    frames = tiled(samples, tiles=(5, 4), seed=3)
    assert len(frames) == 2 and frames[0].image.shape == (32, 40) and len(frames[0].points) == 0
    assert frames[0].blocked.all()  # each 8x8 tile lies within its target's 17x17 box
    again = tiled(samples, tiles=(5, 4), seed=3)
    np.testing.assert_array_equal(frames[1].image, again[1].image)
    assert not np.array_equal(tiled(samples, tiles=(5, 4), seed=4)[0].image, frames[0].image)


def test_targets_blocked_is_a_17px_box_around_each_point() -> None:
    sample = Sample("x.png", np.zeros((50, 50), np.float32), np.array([[20.0, 30.0]]), source="/nowhere")
    blocked = targets_blocked(sample)
    assert blocked.sum() == 17 * 17 and blocked[22:39, 12:29].all()


def test_false_alarm_summary_counts_points_over_threshold() -> None:
    results = [ImageResult("a", np.zeros((0, 2)), np.array([[1, 1, 0.9], [2, 2, 0.2]]), 500_000),
               ImageResult("b", np.zeros((0, 2)), np.array([[1, 1, 0.95], [2, 2, 0.8], [3, 3, 0.6]]), 500_000)]
    summary = false_alarm_summary(results, conf=0.5)
    assert summary == {"frames": 2, "MPx": 1.0, "FA/frame": 2.0, "FA/MPx": 4.0, "worst": 3, "worst frame": "b"}


def test_plain_score_rows_follow_their_models_and_loo_items_parse() -> None:
    from benchmarks.accuracy import BenchmarkError, after_their_models, parse_loo

    rows = {"a": 1, "b": 2, "top-hat": 3, "a plain": 4, "b plain": 5}
    ordered = after_their_models(rows, {"a plain": "a", "b plain": "b"})
    assert list(ordered) == ["a", "a plain", "b", "b plain", "top-hat"] and ordered["b plain"] == 5
    assert list(after_their_models({"x plain": 1, "y": 2}, {"x plain": "x"})) == ["y", "x plain"]
    assert parse_loo(["SIRST only = runs/a/best.pt"]) == [("SIRST only", "runs/a/best.pt")]
    with pytest.raises(BenchmarkError, match="LABEL=PATH"):
        parse_loo(["runs/a/best.pt"])


def test_a_quick_run_keeps_the_full_runs_other_rows() -> None:
    from benchmarks.accuracy import merged

    old = {"per_dataset": {"S": {"m": {"AP": 1}, "plain": {"AP": 2}}}, "target_free": {"m": {}}, "weights": {"a": "1"}}
    new = {"per_dataset": {"S": {"m": {"AP": 3}}}, "weights": {"a": "2"}, "tophat": {"settings": {}}}
    assert merged(old, new) == {"per_dataset": {"S": {"m": {"AP": 3}, "plain": {"AP": 2}}}, "target_free": {"m": {}},
                                "weights": {"a": "2"}, "tophat": {"settings": {}}}
