"""Boxes -> points (simple_keypoint.boxes) and the `convert boxes` command on a made-up video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from simple_keypoint.boxes import (
    BoxError,
    box_point,
    box_region,
    box_videos,
    boxed_frames,
    read_boxes,
    split_videos,
    video_parts,
)
from simple_keypoint.convert import main as convert_main
from simple_keypoint.convert import mask_points
from simple_keypoint.labels import normalised_to_pixel, read_labels


def blob_frame(u: float, v: float, shape: tuple[int, int] = (64, 80), sigma: float = 1.2) -> np.ndarray:
    """A dark frame with a Gaussian spot centred at (u, v) pixel indices."""
    vs, us = np.mgrid[:shape[0], :shape[1]]
    return (30 + 200 * np.exp(-((us - u) ** 2 + (vs - v) ** 2) / (2 * sigma ** 2))).astype(np.float64)


def test_box_point_is_the_bright_centroid_not_the_box_centre() -> None:
    frame = blob_frame(30.3, 20.6)
    # A loose box whose centre is several px off the spot.
    u, v = box_point(frame, (24.0, 14.0, 16.0, 14.0))
    assert abs(u - 30.3) < 0.15 and abs(v - 20.6) < 0.15


def test_box_point_of_a_large_object_counts_every_bright_part() -> None:
    frame = np.full((64, 96), 20.0)
    frame[30:33, 20:24] = 200  # one engine, hotter
    frame[30:33, 60:64] = 150  # the other
    u, _ = box_point(frame, (15, 25, 55, 12))
    assert 30 < u < 55  # between the two, not on the hottest one (u 21.5)


def test_box_with_nothing_bright_gives_its_centre_pixel() -> None:
    u, v = box_point(np.full((32, 32), 7.0), (10, 10, 6, 4))
    assert (u, v) == (13, 12)


def test_box_point_is_its_regions_mask_point() -> None:
    """The label a box gives equals what `convert masks` gives for the mask it writes."""
    frame = blob_frame(30.3, 20.6) + blob_frame(60.0, 40.0) * 0.5
    boxes = [(24.0, 14.0, 16.0, 14.0), (52.0, 33.0, 15.0, 14.0)]
    mask = np.any([box_region(frame, b) for b in boxes], axis=0)
    expected = mask_points(mask.astype(np.uint8), frame)
    got = np.array([box_point(frame, b) for b in boxes])
    assert np.allclose(got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])], atol=1e-9)


def test_read_boxes_names_the_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "a.csv"
    good.write_text("frame,label,x,y,width,height\n0,DRONE,1,2,3,4\n0,BIRD,5,6,7,8\n3,DRONE,1,1,2,2\n")
    assert read_boxes(good) == {0: [(1, 2, 3, 4), (5, 6, 7, 8)], 3: [(1, 1, 2, 2)]}
    bad = tmp_path / "b.csv"
    bad.write_text("frame,label,x,y,width,height\n0,DRONE,1,2,x,4\n")
    with pytest.raises(BoxError, match=r"b\.csv: line 2"):
        read_boxes(bad)
    (tmp_path / "c.csv").write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(BoxError, match="not a box file"):
        read_boxes(tmp_path / "c.csv")


def make_video(path: Path, centres: list[tuple[float, float]], shape: tuple[int, int] = (64, 80)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (shape[1], shape[0]))
    for u, v in centres:
        writer.write(cv2.cvtColor(blob_frame(u, v, shape, sigma=1.5).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    writer.release()


@pytest.fixture
def box_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "drone-ir"
    (root / "videos").mkdir(parents=True)
    (root / "boxes").mkdir()
    centres = [(20 + 2 * i, 30 - i) for i in range(10)]
    for name in ("IR_DRONE_001", "IR_DRONE_002"):
        make_video(root / "videos" / f"{name}.avi", centres)
        rows = [f"{i},DRONE,{u - 5:.2f},{v - 4:.2f},12,9" for i, (u, v) in enumerate(centres) if i != 4]
        (root / "boxes" / f"{name}.csv").write_text("frame,label,x,y,width,height\n" + "\n".join(rows) + "\n")
    return root


def test_boxed_frames_reads_every_nth_labelled_frame(box_dataset: Path) -> None:
    (video, boxes), _ = box_videos(box_dataset)
    frames = list(boxed_frames(video, boxes, every=2))
    assert [f.index for f in frames] == [0, 2, 6, 8]  # frame 4 has no box
    for f in frames:
        assert np.abs(f.points[0] - (20 + 2 * f.index, 30 - f.index)).max() < 0.5


def test_split_by_video_never_shares_a_video() -> None:
    pairs = [(Path(f"IR_{c}_{i:03d}.mp4"), Path("x")) for c in ("BIRD", "DRONE") for i in range(1, 21)]
    parts = {part: {p for p, _ in split_videos(pairs, part)} for part in ("train", "val", "test")}
    assert parts["val"] == {Path(f"IR_{c}_{i:03d}.mp4") for c in ("BIRD", "DRONE") for i in (10, 20)}
    assert parts["test"] == {Path(f"IR_{c}_{i:03d}.mp4") for c in ("BIRD", "DRONE") for i in (5, 15)}
    assert sum(map(len, parts.values())) == len(pairs) == len(set.union(*parts.values()))
    assert len(split_videos(pairs, "all")) == len(pairs)


def test_convert_boxes_writes_points_and_keeps_existing_labels(box_dataset: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "frames"
    assert convert_main(["boxes", str(box_dataset), str(out), "--every", "3", "--quiet"]) == 0
    labels = sorted((out / "labels").glob("*.txt"))
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == [p.stem for p in labels]
    assert [p.stem for p in labels] == [f"IR_DRONE_00{k}_{i:05d}" for k in (1, 2) for i in (0, 3, 6, 9)]
    image = cv2.imread(str(out / "images" / "IR_DRONE_001_00006.png"), cv2.IMREAD_UNCHANGED)
    (u, v), = normalised_to_pixel(read_labels(out / "labels" / "IR_DRONE_001_00006.txt")[:, :2], image.shape[1], image.shape[0])
    assert abs(u - 32) < 0.5 and abs(v - 24) < 0.5
    labels[0].write_text("1\n0.5 0.5\n")  # a hand-corrected label is never replaced without --overwrite
    capsys.readouterr()
    assert convert_main(["boxes", str(box_dataset), str(out), "--every", "3", "--quiet"]) == 0
    assert labels[0].read_text() == "1\n0.5 0.5\n"
    assert "--overwrite" in capsys.readouterr().out


def test_convert_boxes_on_a_folder_without_videos_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert convert_main(["boxes", str(tmp_path), str(tmp_path / "out"), "--quiet"]) == 1
    assert "no videos/<name>.mp4 with a boxes/<name>.csv" in capsys.readouterr().err


def test_tracking_benchmark_scores_only_videos_the_detector_never_learnt_from() -> None:
    from benchmarks.tracking import drone_ir_splits

    names = [f"IR_{cls}_{i:03d}" for cls in ("BIRD", "DRONE") for i in range(1, 31)]
    parts = video_parts(names)
    splits = drone_ir_splits(names)
    assert {parts[n] for n in splits} == {"val", "test"}
    assert all(splits[n] == ("tune" if parts[n] == "val" else "test") for n in splits)
    assert len(splits) == 2 * 6  # per class of 30: the 10th, 20th, 30th tune; the 5th, 15th, 25th test
