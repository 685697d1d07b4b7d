"""The metrics: greedy one-to-one matching, AP, Pd / false alarms at a threshold, and the
validation threshold. Hand-computed cases, and the fast paths against the definition."""

from __future__ import annotations

import numpy as np
import pytest

from simple_keypoint.evaluate import ImageResult, average_precision, match, pick_threshold, score  # noqa: E402


def result(pred: list[tuple[float, float, float]], truth: list[tuple[float, float]], pixels: int = 100) -> ImageResult:
    return ImageResult("x", np.array(truth, float).reshape(-1, 2), np.array(pred, float).reshape(-1, 3), pixels)


def test_match_is_one_to_one_greedy_in_score_order() -> None:
    truth = np.array([[10.0, 10.0]])
    # The better-scored prediction takes the target even though the other one is closer.
    pred = np.array([[11.0, 10.0, 0.2], [12.0, 10.0, 0.9]])
    matched, dist = match(pred, truth, 3.0)
    assert matched.tolist() == [-1, 0] and np.isnan(dist[0]) and dist[1] == pytest.approx(2.0)
    # Each prediction takes the nearest free target; out of radius is unmatched.
    truth = np.array([[0.0, 0.0], [4.0, 0.0], [50.0, 50.0]])
    pred = np.array([[3.0, 0.0, 0.9], [1.0, 0.0, 0.8], [20.0, 20.0, 0.7]])
    assert match(pred, truth, 3.0)[0].tolist() == [1, 0, -1]
    assert match(pred[:0], truth, 3.0)[0].tolist() == [] and match(pred, truth[:0], 3.0)[0].tolist() == [-1] * 3


def test_average_precision_by_hand() -> None:
    # Ranked: TP, FP, TP; 3 targets. Recall steps 1/3 at precision 1 and 1/3 at precision 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3)
    assert ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    # Interpolation: a later, higher precision lifts the earlier points (TP, FP, TP, TP over 3 targets).
    ap = average_precision(np.array([4, 3, 2, 1.0]), np.array([True, False, True, True]), 3)
    assert ap == pytest.approx(1 / 3 + 2 / 3 * 3 / 4)
    assert np.isnan(average_precision(np.zeros(0), np.zeros(0, bool), 0))


def test_score_by_hand() -> None:
    results = [
        result([(10, 10, 0.9), (40, 40, 0.6)], [(10.5, 10, )]),  # a hit 0.5 px off, a false alarm at 0.6
        result([(5, 5, 0.4)], [(5, 7)]),  # a hit 2 px off, below a 0.5 threshold
        result([(1, 1, 0.95)], []),  # no target: a false alarm
    ]
    m = score(results, conf=0.5)
    assert (m["images"], m["targets"]) == (3, 2)
    assert m["Pd@3px"] == 0.5 and m["FA/img@3px"] == pytest.approx(2 / 3) and m["FA/MPx@3px"] == pytest.approx(2 / 300e-6)
    assert m["err_mean@3px"] == pytest.approx(0.5) and m["Pd@2px"] == 0.5 and m["Pd@1px"] == 0.5
    # AP ranks every prediction: FA 0.95, TP 0.9, FA 0.6, TP 0.4 -> recall 1/2 at 1/2, 1/2 at 1/2.
    assert m["AP@3px"] == pytest.approx(0.5)
    m = score(results, conf=0.0)
    assert m["Pd@3px"] == 1.0 and m["err_mean@3px"] == pytest.approx(1.25) and m["Pd@1px"] == 0.5


def reference_score_at(results: list[ImageResult], conf: float, radius: float) -> tuple[int, int, list[float]]:
    """The definition: drop predictions below conf, then match what is left."""
    found, false, errors = 0, 0, []
    for r in results:
        matched, dist = match(r.pred[r.pred[:, 2] >= conf], r.truth, radius)
        found += int((matched >= 0).sum())
        false += int((matched < 0).sum())
        errors += dist[matched >= 0].tolist()
    return found, false, errors


def random_results(rng: np.random.Generator, n: int) -> list[ImageResult]:
    out = []
    for _ in range(n):
        truth = rng.uniform(0, 30, (rng.integers(0, 4), 2))
        near = truth[rng.integers(0, len(truth), rng.integers(0, 6))] if len(truth) else np.zeros((0, 2))
        near = near + rng.normal(0, 2, near.shape)  # some within 3 px of a target, several per target
        far = rng.uniform(0, 30, (rng.integers(0, 4), 2))
        xy = np.concatenate([near, far])
        scores = rng.choice([0.2, 0.5, 0.7, 0.9], len(xy)) if rng.random() < 0.3 else rng.random(len(xy))  # with ties
        out.append(ImageResult("r", truth, np.column_stack([xy, scores]), 900))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_score_and_threshold_equal_their_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    results = random_results(rng, 12)
    n_targets = sum(len(r.truth) for r in results)
    for conf in (0.0, 0.3, 0.5, 0.7, 0.95):
        m = score(results, conf)
        found, false, errors = reference_score_at(results, conf, 3.0)
        assert m["FA/img@3px"] == pytest.approx(false / len(results))
        if n_targets:
            assert m["Pd@3px"] == pytest.approx(found / n_targets)
        if errors:
            assert m["err_mean@3px"] == pytest.approx(np.mean(errors))
    # The threshold: the lowest candidate score whose false alarms are within the limit.
    for limit in (0.0, 0.1, 0.5):
        conf = pick_threshold(results, limit)
        candidates = np.unique(np.concatenate([r.pred[:, 2] for r in results] + [[1.0]]))
        allowed = [c for c in candidates if reference_score_at(results, c, 3.0)[1] / len(results) <= limit]
        assert conf == (min(allowed) if allowed else 1.0)


def test_threshold_script_gives_what_training_stored(heatmap_checkpoint, tmp_path):
    """python -m simple_keypoint.threshold re-picks a checkpoint's threshold on its own validation split: with
    the same rule it must find the value training stored, and --write must store what it found."""
    import shutil

    from simple_keypoint import threshold
    from simple_keypoint.checkpoint import load_checkpoint

    copy = tmp_path / "best.pt"
    shutil.copy(heatmap_checkpoint, copy)
    stored = load_checkpoint(copy)["decode"]["conf"]
    assert threshold.main([str(copy), "--max-false-per-image", "0", "--write"]) == 0
    strict = load_checkpoint(copy)["decode"]["conf"]
    assert threshold.main([str(copy), "--write"]) == 0
    assert load_checkpoint(copy)["decode"]["conf"] == pytest.approx(stored)
    assert strict >= stored  # no false alarm allowed: a threshold at least as high
