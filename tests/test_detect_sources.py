"""detect and track on what users hand them (issue 27): an --out that already holds their files
(hand labels above all) is refused unless --exist-ok, several --source paths and globs, a video
cut short, odd frame sizes kept in the output video, progress bars with a total, and track's own
help."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, decoded_frames

from simple_keypoint.detect import main as detect_main
from simple_keypoint.images import read_image, to_gray
from simple_keypoint.labels import read_labels
from simple_keypoint.track import main as track_main

TEST_IMAGES = REPO / "data" / "test" / "images"
WEIGHTS = ("--weights", "heatmap_n")  # the fast shipped model: these tests are about files, not accuracy


def sky(width: int, height: int) -> np.ndarray:
    """A crop of a real SIRST frame (BGR), ``width`` x ``height``."""
    image = to_gray(read_image(TEST_IMAGES / "Misc_15.png"))
    return cv2.cvtColor(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """A Motion-JPEG AVI by OpenCV's own writer, which keeps odd sizes (FFmpeg's would cut them to even)."""
    h, w = frames[0].shape[:2]
    video = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert video.isOpened()
    for frame in frames:
        video.write(frame)
    video.release()
    return path


def moving_frames(count: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Frames of the sky crop with a bright spot moving 2 px per frame."""
    frames = []
    for t in range(count):
        frame = sky(width, height)
        cv2.circle(frame, (20 + 2 * t, height // 2), 1, (255, 255, 255), -1)
        frames.append(frame)
    return frames


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- --out

@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """A user's dataset: ds/images with two frames and ds/labels with their hand-made labels."""
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    for stem, text in (("Misc_15", "1\n0.5 0.25\n"), ("Misc_111", "0\n")):
        shutil.copy(TEST_IMAGES / f"{stem}.png", ds / "images")
        (ds / "labels" / f"{stem}.txt").write_text(text)
    return ds


def test_hand_labels_are_never_replaced_without_exist_ok(labelled: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(labelled)
    assert detect_main([*WEIGHTS, "--source", str(labelled / "images"), "--out", str(labelled), "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: output folder {labelled} already holds labels/")
    assert "and 1 more" in lines[0] and "--exist-ok" in lines[0] and captured.out == ""
    assert snapshot(labelled) == before  # nothing written, nothing replaced
    # Asked for in so many words, the labels are replaced (with the score column), and it is said.
    assert detect_main([*WEIGHTS, "--source", str(labelled / "images"), "--out", str(labelled), "--quiet", "--exist-ok"]) == 0
    assert f"note: replacing 2 file(s) in {labelled} (--exist-ok)" in capsys.readouterr().err
    assert (labelled / "labels" / "Misc_111.txt").read_text() != before["labels/Misc_111.txt"].decode()
    assert read_labels(labelled / "labels" / "Misc_15.txt").shape[1] == 3  # predictions: x, y, score


def test_an_out_with_other_files_is_used_and_they_are_kept(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "other.txt").write_text("0\n")
    (out / "notes.txt").write_text("mine")
    assert detect_main([*WEIGHTS, "--source", str(labelled / "images"), "--out", str(out), "--quiet"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "labels" / "other.txt").read_text() == "0\n"
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["Misc_111.txt", "Misc_15.txt", "other.txt"]


@pytest.mark.parametrize("command, existing", [("detect", "clip.csv"), ("detect", "clip.mp4"), ("track", "clip_tracks.csv"),
                                               ("detect --save-frames", "labels/clip_000002.txt")])
def test_video_outputs_already_there_are_refused(tmp_path: Path, command: str, existing: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    clip = write_avi(tmp_path / "clip.avi", moving_frames(3))
    out = tmp_path / "out"
    (out / existing).parent.mkdir(parents=True, exist_ok=True)
    (out / existing).write_text("the user's")
    main = track_main if command == "track" else detect_main
    assert main([*WEIGHTS, "--source", str(clip), "--out", str(out), "--quiet", *command.split()[1:]]) == 2
    assert capsys.readouterr().err == (f"error: output folder {out} already holds {existing} that this run would replace; "
                                       "pass --exist-ok to replace them, or choose another --out\n")
    assert (out / existing).read_text() == "the user's"


# ---------------------------------------------------------------------------------------------- --source

def test_several_sources_each_file_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, more = tmp_path / "a", tmp_path / "b"
    folder.mkdir()
    more.mkdir()
    for stem in ("Misc_15", "Misc_111"):
        shutil.copy(TEST_IMAGES / f"{stem}.png", folder)
    shutil.copy(TEST_IMAGES / "Misc_175.png", more)
    out = tmp_path / "out"
    # A folder, a glob overlapping it and a single file of another folder (as a shell hands them over).
    sources = [str(folder), str(folder / "Misc_1*.png"), str(more / "Misc_175.png")]
    assert detect_main([*WEIGHTS, "--source", *sources, "--out", str(out), "--quiet"]) == 0
    assert "3 image(s) done" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["Misc_111.txt", "Misc_15.txt", "Misc_175.txt"]


def test_a_missing_source_among_several_stops_before_anything_is_written(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert detect_main([*WEIGHTS, "--source", str(TEST_IMAGES / "Misc_15.png"), str(tmp_path / "nothere"),
                        "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nothere'}: no such file or folder\n"
    assert not out.exists()


def test_track_takes_a_shell_expanded_glob_as_one_sequence_and_a_video_beside_it(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    frames = moving_frames(8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{t:03d}.png"), frame)
    clip = write_avi(tmp_path / "clip.avi", frames[:5])
    out = tmp_path / "out"
    files = [str(p) for p in sorted(folder.glob("*.png"))]  # what `--source frames/*.png` becomes in a shell
    assert track_main([*WEIGHTS, "--source", *files, str(clip), "--out", str(out), "--quiet"]) == 0
    assert "13 frame(s) of 1 frame folder(s), 1 video(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.mp4", "clip_tracks.csv",
                                                     "frames.csv", "frames.mp4", "frames_tracks.csv"]
    assert sorted({int(r["frame"]) for r in read_csv(out / "frames.csv")}) == list(range(8))


# ---------------------------------------------------------------------------------------------- videos

def test_a_video_that_ends_early_is_a_failure_naming_the_frame(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    whole = write_avi(tmp_path / "whole.avi", moving_frames(30, 64, 48))
    clip = tmp_path / "in" / "cut.avi"
    clip.parent.mkdir()
    clip.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the header still says 30 frames
    readable = len(decoded_frames(clip))
    assert 0 < readable < 30 and int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    image = TEST_IMAGES / "Misc_15.png"
    out = tmp_path / "out"
    assert detect_main([*WEIGHTS, "--source", str(clip), str(image), "--out", str(out), "--quiet"]) == 1  # the batch went on
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"1 image(s) done, {readable} frame(s) of 1 video(s), ") and ", 1 failure(s), " in lines[0]
    assert lines[-1] == (f"  failed: {clip}: video ends at frame {readable} of the 30 it states (truncated or damaged); "
                         "the frames before it were written")  # listed last
    assert [int(r["frame"]) for r in read_csv(out / "cut.csv")] == list(range(readable))
    assert (out / "labels" / "Misc_15.txt").is_file()
    # The whole file is no failure.
    assert detect_main([*WEIGHTS, "--source", str(whole), "--out", str(tmp_path / "out2"), "--quiet"]) == 0


@pytest.mark.parametrize("width, height", [(325, 241), (135, 96), (136, 97)])
def test_the_output_video_has_the_input_size(tmp_path: Path, width: int, height: int) -> None:
    clip = write_avi(tmp_path / "clip.avi", moving_frames(4, width, height))
    assert decoded_frames(clip)[0].shape == (height, width, 3)  # the input really is that size
    out = tmp_path / "out"
    assert detect_main([*WEIGHTS, "--source", str(clip), "--out", str(out), "--quiet"]) == 0
    (video,) = [p for p in out.iterdir() if p.suffix in (".mp4", ".avi")]
    written = decoded_frames(video)
    assert len(written) == 4 and {f.shape for f in written} == {(height, width, 3)}


def test_an_even_sized_video_stays_mp4(tmp_path: Path) -> None:
    clip = write_avi(tmp_path / "clip.avi", moving_frames(3, 136, 96))
    out = tmp_path / "out"
    assert detect_main([*WEIGHTS, "--source", str(clip), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.mp4"]


# ---------------------------------------------------------------------------------------------- progress, help

@pytest.mark.parametrize("main, verb", [(detect_main, "detecting"), (track_main, "tracking")])
def test_progress_bar_has_a_total_and_the_commands_verb(tmp_path: Path, main, verb: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    clip = write_avi(tmp_path / "clip.avi", moving_frames(7))
    assert main([*WEIGHTS, "--source", str(clip), "--out", str(tmp_path / "out"), "--vid-stride", "2"]) == 0
    bar = capsys.readouterr().err.split("\r")[-1]
    assert bar.startswith(f"{verb}: 100%") and "4/4 [" in bar and "frame/s" in bar  # 7 frames, every 2nd


def test_images_are_counted_in_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert detect_main([*WEIGHTS, "--source", str(TEST_IMAGES / "Misc_1*.png"), "--out", str(tmp_path / "out")]) == 0
    count = len(list(TEST_IMAGES.glob("Misc_1*.png")))
    assert f"{count}/{count} [" in capsys.readouterr().err.split("\r")[-1]


def test_track_help_does_not_offer_track(capsys: pytest.CaptureFixture) -> None:
    for main, has_track in ((track_main, False), (detect_main, True)):
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        options = [line.split()[0] for line in text.splitlines() if line.startswith("  -")]
        assert "--source" in options and ("--track" in options) == has_track and ("[--track]" in text) == has_track
    with pytest.raises(SystemExit):
        detect_main(["--track", "--help"])  # handed to track: its help
    assert capsys.readouterr().out.startswith("usage: simple-keypoint track")
