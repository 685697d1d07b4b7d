"""Point tracking: the tracker's rules on hand-made point sequences (a crossing, a gap, a flicker,
still clutter, a panning camera), the scene shift, and ``simple-keypoint track`` on a short clip
and on a folder of frames with a missing, a corrupt and a wrong-sized frame."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from simple_keypoint.tracking import PointTracker, SceneShift, TrackOptions


def run(tracker: PointTracker, frames: list[list[tuple[float, float, float]]], shifts=None) -> list[list]:
    shifts = shifts or [(0.0, 0.0)] * len(frames)
    return [tracker.update(np.array(points, float).reshape(-1, 3), shift) for points, shift in zip(frames, shifts, strict=True)]


def confirmed(rows: list) -> dict[int, tuple[float, float]]:
    return {r.track_id: (r.u, r.v) for r in rows if r.confirmed and r.detection is not None}


def test_a_crossing_keeps_both_ids() -> None:
    """Two targets at 2 px/frame crossing at right angles: each keeps its ID through the crossing."""
    tracker = PointTracker(TrackOptions(conf=0.5, min_move=0))
    frames = [[(10 + 2 * t, 50, 0.9), (50, 10 + 2 * t, 0.8)] for t in range(40)]
    out = run(tracker, frames)
    first = confirmed(out[5])
    assert len(first) == 2
    a = next(i for i, (u, v) in first.items() if abs(v - 50) < 1.5 and abs(u - 20) < 1.5)  # the one moving along u
    for t, rows in enumerate(out[5:], start=5):
        ids = confirmed(rows)
        assert set(ids) == set(first), f"frame {t}: {ids}"
        if t == 20:  # both at (50, 50)
            continue
        horizontal = next(i for i, (u, v) in ids.items() if abs(v - 50) < 1.5 and abs(u - (10 + 2 * t)) < 1.5)
        assert horizontal == a
    assert tracker.next_id == 3  # no other track was ever confirmed


def test_a_gap_is_coasted_and_a_long_one_ends_the_track() -> None:
    tracker = PointTracker(TrackOptions(conf=0.5, min_move=0, max_missed=4))
    target = [[(20 + 1.5 * t, 30 + 0.5 * t, 0.9)] for t in range(60)]
    frames = [p if not 20 <= t < 24 else [] for t, p in enumerate(target)]  # 4 frames unseen: coasts
    out = run(tracker, frames[:40])
    coasting = [r for rows in out[20:24] for r in rows]
    assert [r.track_id for r in coasting] == [1] * 4 and all(r.detection is None for r in coasting)
    assert abs(coasting[-1].u - (20 + 1.5 * 23)) < 1.0  # the prediction goes on along the path
    assert confirmed(out[24]) and list(confirmed(out[39])) == [1]
    # 6 frames unseen: the track ends, its summary is given, and the target gets a new ID after.
    run(tracker, [[]] * 6)
    (summary,) = tracker.take_ended()
    assert (summary.track_id, summary.first_frame, summary.last_frame) == (1, 0, 39)
    assert summary.detections == 36 and summary.mean_speed == pytest.approx(np.hypot(1.5, 0.5), abs=0.1)
    out = run(tracker, [[(200 + t, 30, 0.9)] for t in range(6)])
    assert list(confirmed(out[-1])) == [2]


def test_flicker_dim_frames_keep_a_confirmed_track_and_one_frame_clutter_never_confirms() -> None:
    rng = np.random.default_rng(0)
    tracker = PointTracker(TrackOptions(conf=0.5, keep_conf=0.2, min_move=0))
    frames = []
    for t in range(60):
        score = 0.9 if t < 10 or t % 3 == 0 else 0.3  # the target dims below conf two frames in three
        clutter = [(float(rng.uniform(0, 300)), float(rng.uniform(0, 300)), 0.95) for _ in range(3)]  # one-frame blips
        frames.append([(100 + t, 100, score), *clutter])
    out = run(tracker, frames)
    assert all(list(confirmed(rows)) == [1] for rows in out[10:])  # the dim frames are still tracked
    assert tracker.next_id == 2  # no blip was ever confirmed
    tentative = [r for rows in out for r in rows if not r.confirmed]
    assert tentative and all(r.track_id == 0 for r in tentative)


def test_still_clutter_is_not_confirmed_unless_min_move_is_off() -> None:
    frames = [[(80 + 0.3 * np.sin(t), 40, 0.9)] for t in range(30)]  # a lamp: detector jitter, no motion
    assert not any(confirmed(rows) for rows in run(PointTracker(TrackOptions(min_move=2.0)), frames))
    assert confirmed(run(PointTracker(TrackOptions(min_move=0.0)), frames)[-1])


def test_a_panning_camera_moves_predictions_with_the_background() -> None:
    """The camera pans 6 px/frame (beyond the gate without the shift) while the target is still in
    the scene: with the shift the track holds, and still clutter still counts as not moving."""
    pan = 6.0
    frames = [[(20 + pan * t, 60, 0.9)] for t in range(20)]
    shifts = [(pan, 0.0)] * 20
    tracker = PointTracker(TrackOptions(gate=4, min_move=0))
    out = run(tracker, frames, shifts)
    assert all(list(confirmed(rows)) == [1] for rows in out[3:])
    assert not any(confirmed(rows) for rows in run(PointTracker(TrackOptions(gate=4, min_move=2)), frames, shifts))


def test_scene_shift_sign_and_size() -> None:
    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.normal(0, 1, (560, 700)).astype(np.float32), (0, 0), 3)
    shift = SceneShift()
    assert shift(scene[20:532, 30:670]) == (0.0, 0.0)
    dx, dy = shift(scene[17:529, 25:665])  # the camera moved up-left: the scene moves (+5, +3)
    assert dx == pytest.approx(5, abs=0.3) and dy == pytest.approx(3, abs=0.3)


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="confirm_hits"):
        TrackOptions(confirm_hits=6, confirm_window=5)
    with pytest.raises(ValueError):
        TrackOptions(gate=0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
