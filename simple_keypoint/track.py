"""Track points over time in a video, a stream, a webcam or a folder of frames (in name order).

    simple-keypoint track --source clip.mp4            # -> clip.mp4 (IDs, trails), clip.csv, clip_tracks.csv
    simple-keypoint track --source frames/ --keep-conf 0.1 --confirm 3 6
    simple-keypoint track --source 0 --no-motion       # a fixed webcam
    (the same as simple-keypoint detect --track ...)

The heatmap detector runs on every frame at the lower of --conf and --keep-conf; tracks start from
detections at or above --conf, are confirmed after M detections in N frames (--confirm M N) once
they have moved --min-move px against the background, continue with detections down to
--keep-conf, coast while unseen and end after --max-missed frames. The scene's shift between
frames (phase correlation) moves predictions and gates with a panning or shaking camera.

Each run writes to a new folder, output/track, output/track2, ... (as detect: --project/--name,
--exist-ok, --out). A source gives OUT/<name>.mp4 (the frames with each confirmed track's ID and
trail, tentative detections dimmer), OUT/<name>.csv (frame, time_s, track_id, confirmed, u, v,
score, det_u, det_v: one row per track in each frame, u, v the filter's sub-pixel position,
det_u, det_v the raw detection, empty while a confirmed track coasts; tentative rows have no
track_id) and OUT/<name>_tracks.csv (one row per confirmed track: first, confirmed and last
frame, length, detections, mean speed in px/frame against the background, mean score). A folder
with a missing or unreadable frame is reported and tracks coast over the gap; frames of another
size end that source with an error. Details and measured defaults: docs/tracking.md.
"""

from __future__ import annotations

import glob
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from simple_keypoint.detect import (
    FALLBACK_FPS,
    DetectOptions,
    Result,
    Source,
    SourceError,
    SourceWriter,
    draw_overlay,
)
from simple_keypoint.images import IMAGE_SUFFIXES, ImageError, read_image
from simple_keypoint.tracking import PointTracker, SceneShift, TrackOptions, TrackPoint, TrackSummary

CSV_HEADER = "frame,time_s,track_id,confirmed,u,v,score,det_u,det_v\n"
TRACKS_HEADER = "track_id,first_frame,confirmed_frame,last_frame,length,detections,mean_speed_px_per_frame,mean_score\n"
# Distinct bright colours (BGR) for track IDs on the overlay.
PALETTE = ((0, 255, 0), (0, 200, 255), (255, 128, 0), (255, 0, 255), (0, 255, 255), (128, 128, 255),
           (255, 255, 0), (0, 128, 255), (200, 255, 128), (255, 128, 200))


def natural_key(path: Path) -> list:
    """Name order with numbers by value: f2 before f10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_paths(location: str) -> list[Path]:
    """The image files of a folder (or a glob pattern), in name order."""
    path = Path(location)
    found = path.iterdir() if path.is_dir() else map(Path, glob.glob(location))
    return sorted((p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def frame_numbers(paths: list[Path]) -> list[int]:
    """Each frame's number: the number ending its name, counted from the first, where every name has
    one and they rise (so a missing file shows as a gap); else its position."""
    found = [re.search(r"(\d+)\D*$", p.stem) for p in paths]
    if paths and all(found):
        numbers = [int(m.group(1)) for m in found]
        if all(b > a for a, b in zip(numbers, numbers[1:], strict=False)):
            return [n - numbers[0] for n in numbers]
    return list(range(len(paths)))


def folder_frames(source: Source, options: DetectOptions, stop: threading.Event, warnings: list[str],
                  fps_out: list[float]) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, time in s, image) for every ``vid_stride``-th frame of a folder of frames.

    A missing (by its number) or unreadable frame is a warning and a gap the tracks coast over; a
    frame of another size than the first raises SourceError, as does a folder without a readable frame.
    """
    paths = frame_paths(source.location)
    numbers = frame_numbers(paths)
    fps_out.append(0.0)
    size, previous, given = None, -1, 0
    for position, (path, index) in enumerate(zip(paths, numbers, strict=True)):
        if stop.is_set():
            return
        if position % options.vid_stride:
            continue
        if index - previous > options.vid_stride and previous >= 0:
            missing = index - previous - 1
            warnings.append(f"{source}: {missing} frame(s) missing before {path.name}; tracks coast over the gap")
        previous = index
        try:
            image = read_image(path)
        except ImageError as e:
            warnings.append(f"{e}; skipped, tracks coast over it")
            continue
        h, w = image.shape[:2]
        if size is None:
            size = (w, h)
        elif (w, h) != size:
            raise SourceError(f"{path}: frame is {w}x{h} but the frames before it are {size[0]}x{size[1]}; "
                              "a sequence's frames must all have one size")
        given += 1
        yield index, index / FALLBACK_FPS, image
    if not given:
        raise SourceError(f"{source}: no readable frames")


def draw_tracks(result: Result, rows: list[TrackPoint], heat_alpha: float) -> np.ndarray:
    """The frame (heatmap blended as detect does) with each confirmed track's trail, ring and ID;
    tentative tracks' detections as dim rings."""
    dim = np.array([r.detection for r in rows if not r.confirmed and r.detection is not None], float).reshape(-1, 3)
    canvas = draw_overlay(result.frame.image, np.zeros((0, 3)), result.heat, heat_alpha, dim)
    h, w = canvas.shape[:2]
    scale = max(1, round(max(h, w) / 400))
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale
    for row in rows:
        if not row.confirmed:
            continue
        ink = PALETTE[(row.track_id - 1) % len(PALETTE)]
        if len(row.trail) > 1:
            trail = np.round(np.array(row.trail) * 16).astype(np.int32)
            cv2.polylines(canvas, [trail], False, ink, scale, cv2.LINE_AA, shift=4)
        centre = (int(round(row.u * 16)), int(round(row.v * 16)))
        coasting = row.detection is None
        cv2.circle(canvas, centre, 7 * scale * 16, ink if not coasting else (128, 128, 128), scale, cv2.LINE_AA, shift=4)
        corner = (int(min(max(row.u + 9 * scale, 1), w - 30 * scale)), int(min(max(row.v - 6 * scale, 12 * scale), h - 2)))
        for colour, width in (((0, 0, 0), 3 * scale), (ink, scale)):
            cv2.putText(canvas, str(row.track_id), corner, font, font_scale, colour, width, cv2.LINE_AA)
    return canvas


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


class TrackWriter(SourceWriter):
    """A video-like source's outputs with tracking: the overlay video with IDs and trails, the
    per-frame CSV with track columns and the per-track summary CSV (all moved into place at the end)."""

    def __init__(self, out: Path, name: str, options: TrackOptions, stride: int = 1, heat_alpha: float = 0.4):
        super().__init__(out, name)
        self.csv.seek(0)
        self.csv.truncate()
        self.csv.write(CSV_HEADER)
        self.tracks_path, self.tracks_tmp = out / f"{name}_tracks.csv", out / f".{name}_tracks.csv.partial"
        self.tracks_csv: IO[str] = open(self.tracks_tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115  (closed in finish)
        self.tracks_csv.write(TRACKS_HEADER)
        self.tracker = PointTracker(options)
        self.shift = SceneShift()
        self.stride, self.heat_alpha = stride, heat_alpha
        self.last_index: int | None = None
        self.confirmed = 0  # confirmed tracks written to the summary

    def write_summaries(self, summaries: list[TrackSummary]) -> None:
        self.tracks_csv.write("".join(
            f"{s.track_id},{s.first_frame},{s.confirmed_frame},{s.last_frame},{s.length},{s.detections},"
            f"{s.mean_speed / self.stride:.3f},{s.mean_score:.4f}\n" for s in summaries))  # per frame of the source
        self.confirmed += len(summaries)

    def add(self, result: Result, overlay: np.ndarray | None, fps: float) -> np.ndarray:
        """Track this frame's points (``result.points`` may start tracks, ``result.dim`` only continue
        them), write its video frame and CSV rows; returns the overlay (drawn here when None)."""
        frame = result.frame
        steps = 1 if self.last_index is None else max(1, round((frame.index - self.last_index) / self.stride))
        self.last_index = frame.index
        shift = self.shift(frame.image) if self.tracker.options.motion else (0.0, 0.0)
        points = np.vstack([result.points.reshape(-1, 3), result.dim.reshape(-1, 3)])
        rows = self.tracker.update(points, shift, steps, frame=frame.index, size=frame.image.shape[1::-1])
        self.write_summaries(self.tracker.take_ended())
        overlay = draw_tracks(result, rows, self.heat_alpha) if overlay is None else overlay
        self.write_video(overlay, fps)
        start = f"{frame.index},{frame.time_s:.3f}"
        lines = []
        for r in rows:
            du, dv, score = r.detection if r.detection is not None else (None, None, None)
            lines.append(f"{start},{r.track_id or ''},{int(r.confirmed)},{r.u:.3f},{r.v:.3f},{_num(score, 4)},"
                         f"{_num(du, 3)},{_num(dv, 3)}\n")
        self.csv.write("".join(lines) or f"{start},,,,,,,\n")
        return overlay

    def finish(self) -> list[Path]:
        self.write_summaries(self.tracker.finish())
        self.tracks_csv.flush()
        self.tracks_csv.close()
        written = super().finish()
        if not written:
            self.tracks_tmp.unlink(missing_ok=True)
            return []
        self.tracks_tmp.replace(self.tracks_path)
        return [*written, self.tracks_path]


def main(argv: list[str] | None = None) -> int:
    from simple_keypoint.detect import main as detect_main

    return detect_main(["--track", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
