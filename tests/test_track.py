"""Point tracking: the tracker's rules on hand-made point sequences (a crossing, a gap, a flicker,
still clutter, a panning camera), the scene shift, and ``simple-keypoint track`` on a short clip
and on a folder of frames with a missing, a corrupt and a wrong-sized frame."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from simple_keypoint.tracking import PointTracker, SceneShift, TrackOptions, join_objects, object_extents


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


def test_frame_labels_are_kept_apart_from_the_frame_count() -> None:
    """Every 2nd frame of a video (--vid-stride 2): summaries name the video's frame numbers."""
    tracker = PointTracker(TrackOptions(min_move=0))
    for i in range(10):
        tracker.update(np.array([[10.0 + 2 * i, 20.0, 0.9]]), frame=2 * i)
    (summary,) = tracker.finish()
    assert (summary.first_frame, summary.confirmed_frame, summary.last_frame, summary.detections) == (0, 6, 18, 10)
    assert summary.mean_speed == pytest.approx(2.0, abs=0.2)  # px per frame the tracker saw


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


def test_a_crawling_target_is_confirmed_and_kept_and_still_clutter_is_not() -> None:
    """A distant airplane crawling at 0.075 px/frame moves 2 px only over 27 frames, inside its
    detections' scatter: the long window (LONG_WINDOW) confirms it, and it is not ended as settled;
    a still point with the same scatter never is."""
    rng = np.random.default_rng(8)
    crawl = [[(50 + 0.075 * t + rng.normal(0, 0.2), 80 + rng.normal(0, 0.2), 0.9)] for t in range(200)]
    still = [[(50 + rng.normal(0, 0.2), 80 + rng.normal(0, 0.2), 0.9)] for _ in range(200)]
    out = run(PointTracker(TrackOptions()), crawl)
    first = next(t for t, rows in enumerate(out) if confirmed(rows))
    assert first <= 120 and all(list(confirmed(rows)) == [1] for rows in out[first:])
    assert not any(confirmed(rows) for rows in run(PointTracker(TrackOptions()), still))


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
    assert tuple(shift(scene[20:532, 30:670])) == (0.0, 0.0)
    dx, dy = shift(scene[17:529, 25:665])  # the camera moved up-left: the scene moves (+5, +3)
    assert dx == pytest.approx(5, abs=0.3) and dy == pytest.approx(3, abs=0.3)


def followed_target_over_plain_sky(frames: int = 40, pan: float = 2.0) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """The issue's scene: plain sky with one mast, the camera panning ``pan`` px/frame to the left
    (the scene moves +pan) to keep a large textured target still in the middle of the
    view. The target (64 x 32 px) carries more corners than the mast, so a shift measured on the whole
    frame follows the target. Detections: three on the target, two lamps on the mast."""
    rng = np.random.default_rng(3)
    width, height, scene_width = 320, 256, 320 + int(pan * frames) + 20
    sky = np.full((height, scene_width), 60.0, np.float32)
    mast_x = 120
    sky[30:256, mast_x:mast_x + 4] = 130  # a mast with cross-bars: the only background texture
    for y in (60, 160):
        sky[y:y + 3, mast_x - 10:mast_x + 14] = 130
    target = cv2.GaussianBlur(rng.uniform(120, 250, (32, 64)).astype(np.float32), (0, 0), 0.7)
    images, detections = [], []
    for t in range(frames):
        x0 = int(round(scene_width - width - pan * t))  # the view's left edge in the scene
        image = sky[:, x0:x0 + width].copy()
        image[112:144, 128:192] = target  # the camera follows it: fixed in the image
        image = np.clip(image + rng.normal(0, 1.0, image.shape), 0, 255).astype(np.uint8)
        images.append(image)
        mast = mast_x - x0 + 1.5
        lamps = [(mast, y + 1.0, 0.9) for y in (60, 160)]
        on_target = [(140.0, 120.0, 0.95), (160.0, 128.0, 0.9), (180.0, 136.0, 0.8)]
        scatter = np.column_stack([rng.normal(0, 0.2, (5, 2)), np.zeros(5)])  # the detector's
        detections.append(np.array([*on_target, *lamps], float) + scatter)
    return images, detections, pan


def test_camera_shift_ignores_a_followed_target_and_its_detections_join() -> None:
    """Measured off the target, the shift is the pan; the mast's lamps stand still in the scene and
    are never confirmed; the target moves in the scene (the camera follows it) and is one track at
    its centre. Measured on the whole frame, the shift would follow the target."""
    images, detections, pan = followed_target_over_plain_sky()
    shift, tracker = SceneShift(), PointTracker(TrackOptions())
    whole_frame, out = [], []
    for image, points in zip(images, detections, strict=True):
        motion = shift(image)
        whole_frame.append(tuple(motion))
        out.append(tracker.update(points, motion, size=(320, 256)))
        if len(out) > 1:
            assert tracker.textured and tracker.shift[0] == pytest.approx(pan, abs=0.3), len(out)
    assert np.median([abs(dx) for dx, _ in whole_frame[1:]]) < 0.5  # the unmasked fit locks onto the target
    ids = {r.track_id for rows in out for r in rows if r.confirmed}
    assert len(ids) == 1, ids
    final = [r for r in out[-1] if r.confirmed]
    assert len(final) == 1 and final[0].u == pytest.approx(159.5, abs=1.5) and final[0].v == pytest.approx(127.5, abs=1.5)


def test_a_textureless_view_gives_no_shift_and_a_still_point_on_clear_sky_is_confirmed() -> None:
    """Plain sky: no feature to measure the camera on, so no shift (not a guess); a point standing
    still there has no clutter to be mistaken for and is confirmed after ``clear_sky`` detections;
    with ``clear_sky 0`` it is not (still is what clutter does)."""
    rng = np.random.default_rng(4)
    sky = [np.clip(70 + rng.normal(0, 1.0, (256, 320)), 0, 255).astype(np.uint8) for _ in range(20)]
    for frame in sky:
        frame[100:103, 200:203] = 160  # a small target, hovering
    points = [np.array([[201.0, 101.0, 0.9]]) + [*rng.normal(0, 0.2, 2), 0] for _ in sky]  # the detector's scatter

    def run_sky(options: TrackOptions) -> tuple[PointTracker, list[list]]:
        shift, tracker = SceneShift(), PointTracker(options)
        return tracker, [tracker.update(p, shift(image), size=(320, 256)) for p, image in zip(points, sky, strict=True)]

    tracker, out = run_sky(TrackOptions(clear_sky=8))
    assert not tracker.textured and tuple(tracker.shift) == (0.0, 0.0)
    first = next(t for t, rows in enumerate(out) if confirmed(rows))
    assert first == 7  # its 8th detection in a row on clear sky
    assert not any(confirmed(rows) for rows in run_sky(TrackOptions(clear_sky=0))[1])


def test_a_still_point_on_structure_is_not_on_clear_sky() -> None:
    """The same still point beside textured ground (corners within CLEAR_RADIUS) is clutter-like:
    not confirmed while it stands still."""
    rng = np.random.default_rng(5)
    ground = cv2.GaussianBlur(rng.normal(0, 40, (256, 320)).astype(np.float32), (0, 0), 2) + 100
    images = []
    for _ in range(20):
        frame = np.clip(ground + rng.normal(0, 1.0, ground.shape), 0, 255).astype(np.uint8)
        frame[100:103, 200:203] = 255
        images.append(frame)
    shift, tracker = SceneShift(), PointTracker(TrackOptions(clear_sky=4))
    out = [tracker.update(np.array([[201.0, 101.0, 0.9]]), shift(image), size=(320, 256)) for image in images]
    assert tracker.textured and not any(confirmed(rows) for rows in out)


def test_a_point_fixed_to_the_pixel_is_an_overlay() -> None:
    """A camera's text or logo is drawn on every frame at one pixel position: with ``min_move 0`` it
    is confirmed on its first detections, then ended once OVERLAY_HITS of them stood on one
    position, and never confirmed again; the same point with the detector's usual scatter lives on."""
    rng = np.random.default_rng(7)
    fixed = [[(40.0, 240.0, 0.9)]] * 30
    scattered = [[(40.0 + rng.normal(0, 0.1), 240.0 + rng.normal(0, 0.1), 0.9)] for _ in range(30)]
    tracker = PointTracker(TrackOptions(min_move=0))
    out = run(tracker, fixed)
    assert not any(confirmed(rows) for rows in out[8:]) and [s.last_frame for s in tracker.take_ended()] == [7]
    assert all(confirmed(rows) for rows in run(PointTracker(TrackOptions(min_move=0)), scattered)[3:])


def test_object_extents_and_joining() -> None:
    """A 30 x 12 px bright object: its box and centre; a 2 px target: a small box; a bright region
    wider than any target: no extent. Two detections on the large object join into one at its centre."""
    rng = np.random.default_rng(6)
    image = (60 + rng.normal(0, 1.0, (256, 320))).astype(np.float32)
    image[100:112, 50:80] = 200
    image[200:202, 250:252] = 150
    image[20:40, 100:300] = 180  # a roof
    points = np.array([[55.0, 104.0, 0.9], [75.0, 108.0, 0.8], [250.5, 200.5, 0.7], [200.0, 30.0, 0.6]])
    extents = object_extents(image, points)
    assert extents[0, :4] == pytest.approx([50, 100, 79, 111], abs=1)
    assert extents[0, 4:] == pytest.approx([64.5, 105.5], abs=0.5)
    assert (extents[1] == extents[0]).all()
    assert extents[2, 2] - extents[2, 0] <= 3 and extents[2, 3] - extents[2, 1] <= 3
    assert np.isnan(extents[3]).all()
    joined, _, raw = join_objects(points, extents)
    assert len(joined) == 3 and joined[0] == pytest.approx([64.5, 105.5, 0.9], abs=0.5)
    assert raw[0] == pytest.approx([55.0, 104.0])  # the detector's own position, kept for the overlay test


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="1 <= M <= N"):
        TrackOptions(confirm_hits=6, confirm_window=5)
    with pytest.raises(ValueError):
        TrackOptions(gate=0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_tracker_memory_stays_flat() -> None:
    """Clutter blips and two targets over 2,000 frames: the live tracks stay few and nothing per frame is kept."""
    import tracemalloc

    rng = np.random.default_rng(0)
    tracker = PointTracker(TrackOptions(min_move=0))
    tracemalloc.start()
    sizes = []
    try:
        for t in range(2000):
            clutter = np.column_stack([rng.uniform(0, 640, (8, 2)), rng.uniform(0.2, 0.9, 8)])
            targets = np.array([[100 + (3 * t) % 400, 200, 0.9], [300, 50 + (2 * t) % 300, 0.8]])
            tracker.update(np.vstack([targets, clutter]), rng.normal(0, 0.5, 2), size=(640, 512))
            tracker.take_ended()
            if t + 1 in (500, 2000):
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert len(tracker.tracks) < 40
    assert sizes[1] - sizes[0] < 200_000, f"grew by {(sizes[1] - sizes[0]) / 1e3:.0f} kB over 1,500 frames"


# ---------------------------------------------------------------------------------------------- command line

def moving_target_frames(count: int, size: tuple[int, int] = (320, 200)) -> list[np.ndarray]:
    """A real SIRST sky crop with a bright 2-px target moving 3 px/frame to the right (gray, uint8)."""
    from conftest import REPO

    from simple_keypoint.images import read_image, to_gray

    w, h = size
    sky = to_gray(read_image(REPO / "data" / "test" / "images" / "Misc_15.png"))[:h, :w]
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(count):
        frame = sky + 90 * np.exp(-((xx - 60 - 3 * t) ** 2 + (yy - 100 - 0.5 * t) ** 2) / (2 * 1.2 ** 2))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def confirmed_rows(path: Path) -> list[dict[str, str]]:
    return [r for r in read_csv(path) if r["confirmed"] == "1"]


def test_track_command_on_a_short_clip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint.cli import main as cli_main

    frames = moving_target_frames(24)
    clip = tmp_path / "in" / "clip.avi"
    clip.parent.mkdir()
    video = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 200))
    for frame in frames:
        video.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    video.release()
    out = tmp_path / "out"
    assert cli_main(["track", "--source", str(clip), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "24 frame(s) of 1 video(s)" in printed and f"wrote {out / 'clip_tracks.csv'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.mp4", "clip_tracks.csv"]
    rows = read_csv(out / "clip.csv")
    assert list(rows[0]) == ["frame", "time_s", "track_id", "confirmed", "u", "v", "score", "det_u", "det_v"]
    on_target = [r for r in confirmed_rows(out / "clip.csv") if r["det_u"]
                 and abs(float(r["u"]) - 60 - 3 * int(r["frame"])) < 2 and abs(float(r["v"]) - 100 - 0.5 * int(r["frame"])) < 2]
    assert len(on_target) >= 15 and {r["track_id"] for r in on_target} == {"1"}
    assert float(on_target[0]["time_s"]) == pytest.approx(int(on_target[0]["frame"]) / 10)
    (summary,) = [r for r in read_csv(out / "clip_tracks.csv") if r["track_id"] == "1"]
    assert float(summary["mean_speed_px_per_frame"]) == pytest.approx(np.hypot(3, 0.5), abs=0.3)
    assert int(summary["last_frame"]) == 23 and int(summary["length"]) == 24 - int(summary["first_frame"])
    written = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    written.release()


def write_frames(folder: Path, frames: list[np.ndarray], skip: tuple[int, ...] = ()) -> None:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        if t not in skip:
            cv2.imwrite(str(folder / f"f{t:04d}.png"), frame)


def test_a_folder_with_a_missing_and_a_corrupt_frame(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint.track import main

    folder = tmp_path / "frames"
    write_frames(folder, moving_target_frames(30), skip=(12,))
    (folder / "f0018.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert main(["--source", str(folder), "--out", str(out), "--quiet"]) == 0  # gaps are warnings, not failures
    printed = capsys.readouterr().out
    assert f"  warning: {folder}: 1 frame(s) missing before f0013.png; tracks coast over the gap" in printed
    assert f"  warning: {folder / 'f0018.png'}: " in printed and "skipped, tracks coast over it" in printed
    rows = read_csv(out / "frames.csv")
    assert {int(r["frame"]) for r in rows} == set(range(30)) - {12, 18}
    ids = {r["track_id"] for r in confirmed_rows(out / "frames.csv") if int(r["frame"]) > 5}
    assert ids == {"1"}  # one track, coasting over both gaps
    assert (out / "frames.mp4").is_file() and (out / "frames_tracks.csv").is_file()


def test_frames_of_different_sizes_are_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint.detect import main

    folder = tmp_path / "frames"
    frames = moving_target_frames(8)
    frames[5] = frames[5][:100, :160]
    write_frames(folder, frames)
    out = tmp_path / "out"
    assert main(["--track", "--source", str(folder), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    failed = [line for line in printed.splitlines() if line.startswith("  failed: ")]
    assert failed == [f"  failed: {folder / 'f0005.png'}: frame is 160x100 but the frames before it are 320x200; "
                      "a sequence's frames must all have one size"]
    assert len(read_csv(out / "frames.csv")) >= 5  # what came before is kept


def test_bad_tracking_options_are_argument_errors(capsys: pytest.CaptureFixture) -> None:
    from simple_keypoint.track import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--confirm", "6", "5"])
    assert exit_info.value.code == 2
    assert "error: --confirm M N needs 1 <= M <= N <= 62, got M=6 N=5" in capsys.readouterr().err


def test_a_webcam_is_tracked_until_it_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simple_keypoint import sources as sources_module
    from simple_keypoint.detect import DetectOptions, Source, detect
    from simple_keypoint.paths import shipped_weights
    from simple_keypoint.predict import load_model

    frames = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in moving_target_frames(14)]

    class Camera:  # gives the frames, then stops delivering
        def isOpened(self) -> bool:  # noqa: N802  (OpenCV's name)
            return True

        def get(self, prop: int) -> float:
            return 0.0

        def read(self) -> tuple[bool, np.ndarray | None]:
            return (True, frames.pop(0)) if frames else (False, None)

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources_module, "open_capture", lambda source: Camera())
    model = load_model(shipped_weights("heatmap"), device="cpu")
    report = detect(model, [Source("camera", "0")], tmp_path, DetectOptions(track=TrackOptions()))
    assert report.failures == ["camera 0: stopped delivering frames after 14 frame(s)"]
    assert report.videos == [tmp_path / "camera0.mp4", tmp_path / "camera0.csv", tmp_path / "camera0_tracks.csv"]
    assert {r["track_id"] for r in confirmed_rows(tmp_path / "camera0.csv")} == {"1"}
    assert not list(tmp_path.glob(".*"))  # no temporary files left
