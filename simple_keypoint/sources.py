"""What ``detect`` and ``track`` read and write: sources (images, folders, globs, videos, webcams,
streams, folders of frames), the frames read from them, and the files written for each.

A source is named by ``--source`` (:func:`list_sources`); a video-like one is read frame by frame
(:func:`video_frames`, :func:`folder_frames`) and written by a :class:`SourceWriter` (points) or a
:class:`TrackWriter` (tracks), an image by :func:`save_frame`. Every file is written under a
temporary name and moved into place when complete. :func:`existing_outputs` lists what a run would
replace, so the command line can refuse before anything is written.
"""

from __future__ import annotations

import glob
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import cv2
import numpy as np

from simple_keypoint.images import IMAGE_SUFFIXES, ImageError, read_image
from simple_keypoint.labels import atomic_write, pixel_to_normalised, write_labels
from simple_keypoint.overlays import draw_legend, draw_overlay, draw_track_marks
from simple_keypoint.quiet import opencv_silent, quiet_video_backend
from simple_keypoint.tracking import PointTracker, SceneShift, TrackOptions, TrackPoint, TrackSummary

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
FALLBACK_FPS = 30.0  # for an output video when the source does not say (webcams often report 0)
POINTS_HEADER = "frame,time_s,u,v,score\n"
TRACKS_CSV_HEADER = "frame,time_s,track_id,confirmed,u,v,score,det_u,det_v\n"
TRACK_SUMMARY_HEADER = ("track_id,first_frame,confirmed_frame,last_frame,length,detections,mean_speed_px_per_frame,"
                        "mean_score\n")


class SourceError(ValueError):
    """A source (file, camera, stream) that cannot be read to the end; the message names it."""


@dataclass(frozen=True)
class Source:
    """What ``--source`` names: ``kind`` is image, video, camera, url or frames (a folder or glob of
    images read as one sequence, when tracking; ``paths``, when set, are its images, given one by one)."""

    kind: str
    location: str
    paths: tuple[str, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.kind != "image"

    @property
    def stem(self) -> str:
        if self.kind == "camera":
            return f"camera{self.location}"
        if self.kind == "frames":  # a folder (".", "frames/") or a glob ("frames/*.png"): the folder's name
            folder = Path(self.location).parent if any(c in self.location for c in "*?[") else Path(self.location)
            return folder.resolve().name or "frames"
        if self.kind == "url":
            return "stream_" + re.sub(r"[^\w.-]+", "_", self.location.split("://", 1)[1]).strip("_")[:60]
        return Path(self.location).stem

    def __str__(self) -> str:
        return f"camera {self.location}" if self.kind == "camera" else self.location


def file_source(path: Path) -> Source:
    return Source("video" if path.suffix.lower() in VIDEO_SUFFIXES else "image", str(path))


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def list_sources(source: str) -> list[Source]:
    """An image or video file, a folder (its images and videos), a glob pattern, a webcam index
    (``0``; an existing file or folder of that name wins) or an rtsp/rtmp/http(s) URL."""
    if source.lower().startswith(STREAM_SCHEMES):
        return [Source("url", source)]
    path = Path(source)
    if source.isdigit() and not path.exists():
        return [Source("camera", source)]
    if path.is_dir():
        return [file_source(p) for p in sorted(path.iterdir())
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
    if path.is_file():
        return [file_source(path)]
    return [file_source(Path(p)) for p in sorted(glob.glob(source)) if Path(p).is_file()]


class NoSourceError(ValueError):
    """A ``--source`` entry that names nothing readable; the message names it."""


def gather_sources(entries: Iterable[str], sequences: bool = False) -> list[Source]:
    """The sources of several ``--source`` entries, in the order given, each file once.

    With ``sequences`` (tracking), the images of a folder or glob are one sequence of frames, and
    image files named one by one (a glob the shell expanded) one sequence per folder. Raises
    NoSourceError for an entry that does not exist or holds no image or video.
    """
    found: list[Source | list[str]] = []  # a list: the images named one by one in one folder, so far
    seen: set[str] = set()
    loose: dict[Path, list[str]] = {}
    for entry in entries:
        listed = list_sources(entry)
        if not listed:
            missing = not is_pattern(entry) and not Path(entry).exists()
            raise NoSourceError(f"{entry}: no such file or folder" if missing else f"no images or videos found at {entry}")
        listed = [s for s in listed if s.kind not in ("image", "video") or file_key(s) not in seen]
        seen.update(file_key(s) for s in listed)
        images = [s.location for s in listed if s.kind == "image"]
        if not sequences:
            found.extend(listed)
            continue
        if images and (Path(entry).is_dir() or is_pattern(entry)):
            found.append(Source("frames", entry))
        elif images:
            folder = Path(entry).parent
            if folder not in loose:
                loose[folder] = []
                found.append(loose[folder])
            loose[folder].extend(images)
        found.extend(s for s in listed if s.kind != "image")
    return [item if isinstance(item, Source) else frames_of(item) for item in found]


def file_key(source: Source) -> str:
    """The same file however it was named (``a/x.png``, ``./a/x.png``, an absolute path)."""
    return str(Path(source.location).resolve()) if source.kind in ("image", "video") else source.location


def frames_of(paths: list[str]) -> Source:
    """The sequence of image files named one by one (one file: named after it, as before)."""
    if len(paths) == 1:
        return Source("frames", paths[0])
    return Source("frames", str(Path(paths[0]).parent), tuple(paths))


def output_names(sources: list[Source]) -> list[str]:
    """One output name per source; a second ``a`` (a.png beside a.jpg) becomes ``a_png``, never overwriting."""
    names, seen = [], set()
    for source in sources:
        name = source.stem
        if name in seen:
            name = f"{name}_{Path(source.location).suffix.lstrip('.').lower() or len(names)}"
        seen.add(name)
        names.append(name)
    return names


def open_capture(source: Source) -> cv2.VideoCapture:
    """An OpenCV capture of a video file, webcam or URL (module-level so tests can stand in a fake)."""
    quiet_video_backend()
    with opencv_silent():  # the failure is reported once, by name
        return cv2.VideoCapture(int(source.location) if source.kind == "camera" else source.location)


def expected_frames(source: Source, vid_stride: int = 1) -> int | None:
    """How many frames reading ``source`` gives, where that is known beforehand: 1 for an image,
    the container's frame count for a video file, the images of a folder of frames; None for a
    webcam, a stream or a video that does not say."""
    if source.kind == "image":
        return 1
    if source.kind == "frames":
        return math.ceil(len(frame_paths(source)) / vid_stride)
    if source.kind != "video":
        return None
    capture = open_capture(source)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
    finally:
        capture.release()
    return math.ceil(count / vid_stride) if count > 0 else None


# ---------------------------------------------------------------------------------------------- reading

class ReadOptions(Protocol):
    """The reading settings of detect's options (``DetectOptions``)."""

    vid_stride: int
    retries: int
    retry_delay: float


def video_frames(source: Source, options: ReadOptions, stop: threading.Event, warnings: list[str],
                 fps_out: list[float]) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, time in s, BGR image) for every ``vid_stride``-th frame of a video, webcam or URL.

    A URL that fails to open or stops early is reopened up to ``retries`` times (a finite one skips
    the frames it already gave); a camera that stops, a URL that stays down, or a video file that
    ends before the frame count its container states raises SourceError.
    """
    attempts = options.retries if source.kind == "url" else 0
    budget = attempts  # reconnections left; refilled by every frame that arrives

    def connect(tries: int, wait_first: bool) -> cv2.VideoCapture | None:
        nonlocal budget
        for attempt in range(tries):
            if (attempt or wait_first) and stop.wait(options.retry_delay):
                return None
            budget -= attempt > 0 or wait_first
            capture = open_capture(source)
            if capture.isOpened():
                return capture
            capture.release()
        return None

    capture = connect(attempts + 1, wait_first=False)
    if capture is None:
        what = "cannot open camera" if source.kind == "camera" else "cannot open video"
        raise SourceError(f"{source}: {what}" + (f" (tried {attempts + 1} times)" if attempts else ""))
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 0.0
    fps_out.append(fps)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    live = source.kind in ("camera", "url") and count <= 0
    started, index = time.monotonic(), 0
    try:
        while not stop.is_set():
            keep = index % options.vid_stride == 0
            ok, image = capture.read() if keep else (capture.grab(), None)
            if not ok:
                if source.kind == "url" and not (0 < count <= index):
                    capture.release()
                    capture = connect(budget, wait_first=True)
                    if capture is None and stop.is_set():
                        return
                    if capture is None:
                        raise SourceError(f"{source}: stream dropped after {index} frame(s); "
                                          f"{attempts} reconnection attempt(s) without a frame failed")
                    warnings.append(f"{source}: stream dropped after {index} frame(s), reconnected")
                    if not live:  # a finite stream starts again from its first frame
                        for _ in range(index):
                            capture.grab()
                    continue
                if source.kind == "camera":
                    raise SourceError(f"{source}: stopped delivering frames after {index} frame(s)")
                if index == 0:
                    raise SourceError(f"{source}: video has no readable frames")
                if source.kind == "video" and index < count:  # a cut-off or damaged file: its frames so far are kept
                    raise SourceError(f"{source}: video ends at frame {index} of the {count} it states "
                                      "(truncated or damaged); the frames before it were written")
                return
            budget = attempts
            if keep:
                time_s = time.monotonic() - started if live else (index / fps if fps else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
                yield index, time_s, image
            index += 1
    finally:
        if capture is not None:
            capture.release()


def natural_key(path: Path) -> list:
    """Name order with numbers by value: f2 before f10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_paths(source: Source | str) -> list[Path]:
    """The image files of a sequence (a folder, a glob pattern, or the files a source lists), in name order."""
    if isinstance(source, Source) and source.paths:
        found: Iterable[Path] = map(Path, source.paths)
    else:
        location = source.location if isinstance(source, Source) else source
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


def folder_frames(source: Source, options: ReadOptions, stop: threading.Event, warnings: list[str],
                  fps_out: list[float]) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, time in s, image) for every ``vid_stride``-th frame of a folder of frames.

    A missing (by its number) or unreadable frame is a warning and a gap the tracks coast over; a
    frame of another size than the first raises SourceError, as does a folder without a readable frame.
    """
    paths = frame_paths(source)
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


@dataclass
class Frame:
    source: int  # index into the source list
    index: int  # frame number in its video (0 for an image)
    time_s: float
    image: np.ndarray
    fps: float = 0.0  # the source's frame rate (0: an image, or unknown)


@dataclass
class Result:
    frame: Frame
    points: np.ndarray
    dim: np.ndarray
    heat: np.ndarray | None


# ---------------------------------------------------------------------------------------------- writing

def video_suffix(size: tuple[int, int]) -> str:
    """.mp4, or .avi (Motion-JPEG) for a frame of odd width or height: OpenCV's FFmpeg writer cuts
    such frames to even sizes, its own Motion-JPEG writer keeps every pixel."""
    return ".mp4" if size[0] % 2 == 0 and size[1] % 2 == 0 else ".avi"


class SourceWriter:
    """The outputs of one video-like source: a video of overlays and a CSV of points, written to
    temporary names and renamed into place when the source ends (atomic, as every writer here)."""

    csv_header = POINTS_HEADER

    def __init__(self, out: Path, name: str):
        self.out, self.name = out, name
        self.video_path = out / f"{name}.mp4"  # .avi once the first frame shows an odd size
        self.video_tmp = out / f".{name}.partial.mp4"
        self.csv_path, self.csv_tmp = out / f"{name}.csv", out / f".{name}.csv.partial"
        self.video: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.csv: IO[str] = open(self.csv_tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115  (closed in finish)
        self.csv.write(self.csv_header)

    def add(self, result: Result, overlay: np.ndarray, fps: float) -> np.ndarray:
        self.write_video(overlay, fps)
        frame = result.frame
        rows = [f"{frame.index},{frame.time_s:.3f},{u:.3f},{v:.3f},{s:.4f}\n" for u, v, s in result.points]
        self.csv.write("".join(rows) or f"{frame.index},{frame.time_s:.3f},,,\n")
        return overlay

    def write_video(self, overlay: np.ndarray, fps: float) -> None:
        if self.video is None:
            self.size = (overlay.shape[1], overlay.shape[0])
            suffix = video_suffix(self.size)
            self.video_path = self.out / f"{self.name}{suffix}"
            self.video_tmp = self.out / f".{self.name}.partial{suffix}"
            if suffix == ".mp4":
                self.video = cv2.VideoWriter(str(self.video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, self.size)
            else:
                self.video = cv2.VideoWriter(str(self.video_tmp), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"),
                                             fps, self.size)
            if not self.video.isOpened():
                raise SourceError(f"{self.video_path}: cannot write a video here")
        if (overlay.shape[1], overlay.shape[0]) != self.size:  # a stream that changed resolution
            overlay = cv2.resize(overlay, self.size, interpolation=cv2.INTER_AREA)
        self.video.write(overlay)

    def finish(self) -> list[Path]:
        """Close and move into place; the files written (none if no frame came)."""
        self.csv.flush()
        os.fsync(self.csv.fileno())
        self.csv.close()
        if self.video is None:
            self.csv_tmp.unlink(missing_ok=True)
            return []
        self.video.release()
        os.replace(self.video_tmp, self.video_path)
        os.replace(self.csv_tmp, self.csv_path)
        return [self.video_path, self.csv_path]


# Distinct bright colours (BGR) for track IDs on the overlay.
PALETTE = ((0, 255, 0), (0, 200, 255), (255, 128, 0), (255, 0, 255), (0, 255, 255), (128, 128, 255),
           (255, 255, 0), (0, 128, 255), (200, 255, 128), (255, 128, 200))


def draw_tracks(result: Result, rows: list[TrackPoint], heat_alpha: float, conf: float | None = None) -> np.ndarray:
    """The frame (heatmap blended as detect does) with each confirmed track's trail, ring and ID;
    tentative tracks' detections as dim rings. With ``conf`` (where tracks start), the colour bar
    and threshold legend, saying "no track" while none is confirmed."""
    dim = np.array([r.detection for r in rows if not r.confirmed and r.detection is not None], float).reshape(-1, 3)
    confirmed = [r for r in rows if r.confirmed]
    canvas = draw_overlay(result.frame.image, np.zeros((0, 3)), result.heat, heat_alpha, dim)
    if conf is not None:
        marks = np.array([(r.u, r.v, 0.0) for r in confirmed], float).reshape(-1, 3)
        draw_legend(canvas, conf, result.heat is not None and heat_alpha > 0, None if confirmed else "no track",
                    avoid=np.vstack([marks, dim]))
    draw_track_marks(canvas, [(r.track_id, r.u, r.v, r.trail, r.detection is None) for r in confirmed], PALETTE)
    return canvas


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


class TrackWriter(SourceWriter):
    """A video-like source's outputs with tracking: the overlay video with IDs and trails, the
    per-frame CSV with track columns and the per-track summary CSV (all moved into place at the end)."""

    csv_header = TRACKS_CSV_HEADER

    def __init__(self, out: Path, name: str, options: TrackOptions, stride: int = 1, heat_alpha: float = 0.4):
        super().__init__(out, name)
        self.tracks_path, self.tracks_tmp = out / f"{name}_tracks.csv", out / f".{name}_tracks.csv.partial"
        self.tracks_csv: IO[str] = open(self.tracks_tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115  (closed in finish)
        self.tracks_csv.write(TRACK_SUMMARY_HEADER)
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
        # Measured even without the motion test: it also finds the objects whose detections are joined.
        shift = self.shift(frame.image)
        points = np.vstack([result.points.reshape(-1, 3), result.dim.reshape(-1, 3)])
        rows = self.tracker.update(points, shift, steps, frame=frame.index, size=frame.image.shape[1::-1])
        self.write_summaries(self.tracker.take_ended())
        if overlay is None:
            overlay = draw_tracks(result, rows, self.heat_alpha, self.tracker.options.conf)
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


def new_writer(out: Path, name: str, tracking: TrackOptions | None, vid_stride: int = 1,
               heat_alpha: float = 0.4) -> SourceWriter:
    """The writer of one video-like source: points, or with ``tracking`` tracks (it draws their overlay)."""
    if tracking is None:
        return SourceWriter(out, name)
    return TrackWriter(out, name, tracking, vid_stride, heat_alpha)


def save_frame(out: Path, name: str, frame: Frame, points: np.ndarray, overlay: np.ndarray, where: str) -> None:
    """OUT/labels/<name>.txt and OUT/overlays/<name>.jpg of one image or video frame, each atomically."""
    h, w = frame.image.shape[:2]
    xy = pixel_to_normalised(points[:, :2], w, h).clip(0, 1)
    write_labels(out / "labels" / f"{name}.txt", np.column_stack([xy, points[:, 2]]))
    ok, jpg = cv2.imencode(".jpg", overlay)
    if not ok:
        raise SourceError(f"{where}: cannot encode the overlay")
    atomic_write(out / "overlays" / f"{name}.jpg", jpg.tobytes())


def frame_file_name(name: str, index: int) -> str:
    """The per-frame output name of a video's frame (``--save-frames``)."""
    return f"{name}_{index:06d}"


def existing_outputs(out: Path, sources: list[Source], names: list[str], tracking: bool, save_frames: bool) -> list[Path]:
    """The files already in ``out`` that a run over ``sources`` would write (and so replace)."""
    found: list[Path] = []
    for source, name in zip(sources, names, strict=True):
        if not source.is_video:
            candidates = [out / "labels" / f"{name}.txt", out / "overlays" / f"{name}.jpg"]
        else:
            candidates = [out / f"{name}.mp4", out / f"{name}.avi", out / f"{name}.csv"]
            candidates += [out / f"{name}_tracks.csv"] if tracking else []
            if save_frames:
                numbered = glob.escape(frame_file_name(name, 0)[:-6]) + "[0-9]" * 6
                candidates += sorted((out / "labels").glob(numbered + ".txt")) + sorted((out / "overlays").glob(numbered + ".jpg"))
        found += [p for p in candidates if p.is_file()]
    return found
