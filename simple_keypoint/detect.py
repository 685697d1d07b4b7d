"""Find the points in images, videos, a webcam or a network stream with a trained model.

    simple-keypoint detect                          # shipped heatmap weights on the shipped test images
    simple-keypoint detect --source frames/ --weights heatmap_n     # the fast size (or regression, a .pt, an .onnx)
    simple-keypoint detect --source clip.mp4 --vid-stride 2      # every 2nd frame -> clip.mp4 + clip.csv
    simple-keypoint detect --source 0                # webcam 0 (Ctrl-C stops and keeps what was written)
    simple-keypoint detect --source rtsp://camera/stream --weights heatmap.onnx
    simple-keypoint detect --source clip.mp4 --track  # point tracks with IDs: the same as simple-keypoint track
    (python detect.py ... in a checkout is the same command)

Each run writes to a new folder, output/detect, output/detect2, ... (--project/--name, --exist-ok to
reuse one, --out for an exact folder). An image gives OUT/overlays/<stem>.jpg (the image with the
heatmap in JET colours and each point with its score) and OUT/labels/<stem>.txt (the points,
normalised, score in the third column; ``0`` when nothing is found). A video, webcam or stream gives
OUT/<name>.mp4 (the overlays as a video) and OUT/<name>.csv (frame, time_s, u, v, score: one row per
point in pixel coordinates, and a row with empty u, v, score for a frame with none); per-frame
overlays and labels only with --save-frames. Bad files are reported and skipped, a dropped stream is
reported (URLs are reconnected a few times first); the exit code is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from simple_keypoint.images import IMAGE_SUFFIXES, ImageError, read_image, to_display
from simple_keypoint.labels import atomic_write, pixel_to_normalised, write_labels
from simple_keypoint.options import FRACTION, Parser, add_weights_option
from simple_keypoint.paths import DefaultPathError, default_path, increment_path, resolve_weights
from simple_keypoint.quiet import opencv_silent, quiet_video_backend
from simple_keypoint.runs import make_folders, remove_empty
from simple_keypoint.tracking import TrackOptions, add_track_options, track_options

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
DEFAULT_SOURCE = "data/test/images"
FALLBACK_FPS = 30.0  # for an output video when the source does not say (webcams often report 0)


class SourceError(ValueError):
    """A source (file, camera, stream) that cannot be read to the end; the message names it."""


@dataclass(frozen=True)
class Source:
    """What ``--source`` names: ``kind`` is image, video, camera, url or frames (a folder or glob of
    images read as one sequence, when tracking)."""

    kind: str
    location: str

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


# ---------------------------------------------------------------------------------------------- overlays

def label_origin(u: float, v: float, text_size: tuple[int, int], baseline: int, image_size: tuple[int, int],
                 gap: int) -> tuple[int, int]:
    """Where to put a point's label (cv2.putText's bottom-left origin): right of the point, or left
    of it near the right edge, and moved inside the frame, so no edge ever clips it."""
    (tw, th), (w, h) = text_size, image_size
    x = int(round(u)) + gap
    if x + tw > w - 1:
        x = int(round(u)) - gap - tw
    y = int(round(v)) + th // 2
    return int(min(max(x, 1), max(w - 1 - tw, 1))), int(min(max(y, th + 1), max(h - 1 - baseline, th + 1)))


def draw_overlay(image: np.ndarray, points: np.ndarray, heat: np.ndarray | None, heat_alpha: float = 0.4,
                 dim_points: np.ndarray | None = None) -> np.ndarray:
    """The image (8-bit gray) with the heatmap in JET colours blended over the whole frame at
    ``heat_alpha``, each point ringed in green with its score; ``dim_points`` (below the threshold)
    are drawn in dim ink without a score."""
    canvas = to_display(image)
    if heat is not None and heat_alpha > 0:
        colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        canvas = cv2.addWeighted(canvas, 1.0 - heat_alpha, colour, heat_alpha, 0.0)
    h, w = canvas.shape[:2]
    scale = max(1, round(max(h, w) / 400))  # readable marks on large frames
    radius, font, font_scale = 7 * scale, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale

    def ring(u: float, v: float, ink: tuple[int, int, int]) -> None:
        centre = (int(round(u * 16)), int(round(v * 16)))  # sub-pixel drawing (shift=4)
        cv2.circle(canvas, centre, radius * 16, ink, scale, cv2.LINE_AA, shift=4)

    for u, v, _ in dim_points if dim_points is not None else ():
        ring(u, v, (0, 110, 0))
    for u, v, s in points:
        ring(u, v, (0, 255, 0))
        text = f"{s:.2f}"
        outline = 3 * scale
        size, baseline = cv2.getTextSize(text, font, font_scale, outline)
        corner = label_origin(u, v, size, baseline, (w, h), radius + 2 * scale)
        for ink, width in (((0, 0, 0), outline), ((0, 255, 0), scale)):  # outlined: readable on any background
            cv2.putText(canvas, text, corner, font, font_scale, ink, width, cv2.LINE_AA)
    return canvas


# ---------------------------------------------------------------------------------------------- pipeline

@dataclass
class DetectOptions:
    """How :func:`detect` runs; defaults as on the command line."""

    conf: float | None = None  # None: the model's threshold
    max_points: int = 20
    dim_conf: float | None = None  # also draw points scoring in [dim_conf, conf), dimmer
    heat_alpha: float = 0.4
    vid_stride: int = 1
    save_frames: bool = False
    retries: int = 3  # reconnection attempts for a URL that fails to open or drops
    retry_delay: float = 2.0  # seconds between them
    queue_size: int = 8  # frames in flight between reader, model and writer: bounds memory
    track: TrackOptions | None = None  # track points over time in video-like sources (simple_keypoint.track)


@dataclass
class DetectReport:
    frames: int = 0  # frames (images) done and written
    points: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    seconds: float = 0.0  # wall time, end to end
    busy: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "inference": 0.0, "write": 0.0})
    interrupted: bool = False

    @property
    def inference_ms(self) -> float:
        return 1000 * self.busy["inference"] / max(self.frames, 1)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


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


@dataclass
class SourceDone:
    source: int
    error: str | None = None


def error_line(where: str, error: BaseException) -> str:
    """One line for an unexpected error: its type and the last line of its message (OpenCV's are many)."""
    if isinstance(error, (ImageError, SourceError)):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{where}: {error.strerror}"
    return f"{where}: {type(error).__name__}: {(str(error).strip().splitlines() or [''])[-1][:160]}"


def put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put, waiting while the queue is full, but give up once ``stop`` is set (no deadlock on abort)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def video_frames(source: Source, options: DetectOptions, stop: threading.Event, warnings: list[str],
                 fps_out: list[float]) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, time in s, BGR image) for every ``vid_stride``-th frame of a video, webcam or URL.

    A URL that fails to open or stops early is reopened up to ``retries`` times (a finite one skips
    the frames it already gave); a camera that stops, or a URL that stays down, raises SourceError.
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
                return
            budget = attempts
            if keep:
                time_s = time.monotonic() - started if live else (index / fps if fps else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
                yield index, time_s, image
            index += 1
    finally:
        if capture is not None:
            capture.release()


def read_sources(sources: list[Source], options: DetectOptions, out: queue.Queue, stop: threading.Event,
                 failed: dict[int, str], report: DetectReport) -> None:
    """The reader thread: every frame of every source onto ``out``, then ``None``; a source in
    ``failed`` (by the model or the writer) is read no further."""
    try:
        for number, source in enumerate(sources):
            error, fps = None, []
            started = time.perf_counter()
            try:
                if source.is_video:
                    read = video_frames
                    if source.kind == "frames":
                        from simple_keypoint.track import folder_frames as read  # that module imports this one
                    for index, time_s, image in read(source, options, stop, report.warnings, fps):
                        report.busy["read"] += time.perf_counter() - started
                        if number in failed or not put(out, Frame(number, index, time_s, image, fps[0]), stop):
                            break
                        started = time.perf_counter()
                else:
                    image = read_image(source.location)
                    report.busy["read"] += time.perf_counter() - started
                    put(out, Frame(number, 0, 0.0, image), stop)
            except Exception as e:  # noqa: BLE001  (any failure of one source is its line, the batch goes on)
                error = error_line(str(source), e)
            if not put(out, SourceDone(number, error), stop):
                return
    finally:
        out.put(None)  # the consumer always learns the end (it keeps draining until then)


class SourceWriter:
    """The outputs of one video-like source: an mp4 of overlays and a CSV of points, written to
    temporary names and renamed into place when the source ends (atomic, as every writer here)."""

    def __init__(self, out: Path, name: str):
        self.video_path, self.csv_path = out / f"{name}.mp4", out / f"{name}.csv"
        self.video_tmp = out / f".{name}.partial.mp4"
        self.csv_tmp = out / f".{name}.csv.partial"
        self.video: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.csv: IO[str] = open(self.csv_tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115  (closed in finish)
        self.csv.write("frame,time_s,u,v,score\n")

    def add(self, result: Result, overlay: np.ndarray, fps: float) -> np.ndarray:
        self.write_video(overlay, fps)
        frame = result.frame
        rows = [f"{frame.index},{frame.time_s:.3f},{u:.3f},{v:.3f},{s:.4f}\n" for u, v, s in result.points]
        self.csv.write("".join(rows) or f"{frame.index},{frame.time_s:.3f},,,\n")
        return overlay

    def write_video(self, overlay: np.ndarray, fps: float) -> None:
        if self.video is None:
            self.size = (overlay.shape[1], overlay.shape[0])
            self.video = cv2.VideoWriter(str(self.video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, self.size)
            if not self.video.isOpened():
                raise SourceError(f"{self.video_path}: cannot write an mp4v video here")
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


def save_frame(out: Path, name: str, frame: Frame, points: np.ndarray, overlay: np.ndarray, where: str) -> None:
    """OUT/labels/<name>.txt and OUT/overlays/<name>.jpg of one image or video frame, each atomically."""
    h, w = frame.image.shape[:2]
    xy = pixel_to_normalised(points[:, :2], w, h).clip(0, 1)
    write_labels(out / "labels" / f"{name}.txt", np.column_stack([xy, points[:, 2]]))
    ok, jpg = cv2.imencode(".jpg", overlay)
    if not ok:
        raise SourceError(f"{where}: cannot encode the overlay")
    atomic_write(out / "overlays" / f"{name}.jpg", jpg.tobytes())


def new_writer(out: Path, name: str, options: DetectOptions) -> SourceWriter:
    """The writer of one video-like source: points, or with ``options.track`` tracks (it draws their overlay)."""
    if options.track is None:
        return SourceWriter(out, name)
    from simple_keypoint.track import TrackWriter  # that module imports this one

    return TrackWriter(out, name, options.track, options.vid_stride, options.heat_alpha)


def write_results(sources: list[Source], names: list[str], out: Path, options: DetectOptions, results: queue.Queue,
                  report: DetectReport, failed: dict[int, str]) -> None:
    """The writer thread: overlays, label files, videos and CSVs from ``results`` until ``None``.

    A video's frames go into its mp4 here, in order; per-image files are written by a few pool
    threads, since each atomic write waits on fsync and one thread would fall behind the model.
    """
    writers: dict[int, SourceWriter] = {}
    lock = threading.Lock()
    pending: deque[Future] = deque()

    def image_job(number: int, item: Result, overlay: np.ndarray | None) -> None:
        started = time.perf_counter()
        try:
            if overlay is None:
                overlay = draw_overlay(item.frame.image, item.points, item.heat, options.heat_alpha, item.dim)
            video = sources[number].is_video
            name = f"{names[number]}_{item.frame.index:06d}" if video else names[number]
            save_frame(out, name, item.frame, item.points, overlay, str(sources[number]))
            with lock:
                if not video:  # a video's frames were counted when they went into its mp4
                    report.frames += 1
                    report.points += len(item.points)
        except Exception as e:  # noqa: BLE001  (a full disk or odd frame fails this source, not the run)
            failed.setdefault(number, error_line(str(sources[number]), e))
        finally:
            with lock:
                report.busy["write"] += time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="detect-save") as pool:
        while (item := results.get()) is not None:
            number = item.source if isinstance(item, SourceDone) else item.frame.source
            started = time.perf_counter()
            try:
                if isinstance(item, SourceDone):
                    if item.error:
                        failed.setdefault(number, item.error)
                    if number in writers:  # a stream that dropped keeps what it gave
                        report.videos += writers.pop(number).finish()
                    continue
                if number in failed:
                    continue
                overlay = None
                if sources[number].is_video:
                    if options.track is None:
                        overlay = draw_overlay(item.frame.image, item.points, item.heat, options.heat_alpha, item.dim)
                    if number not in writers:
                        writers[number] = new_writer(out, names[number], options)
                    overlay = writers[number].add(item, overlay, (item.frame.fps or FALLBACK_FPS) / options.vid_stride)
                    with lock:
                        report.frames += 1
                        report.points += len(item.points)
                if not sources[number].is_video or options.save_frames:
                    pending.append(pool.submit(image_job, number, item, overlay))
                    while len(pending) > options.queue_size:  # bounded, as the queues are
                        pending.popleft().result()
            except Exception as e:  # noqa: BLE001  (as in image_job)
                failed.setdefault(number, error_line(str(sources[number]), e))
            finally:
                with lock:
                    report.busy["write"] += time.perf_counter() - started
    for writer in writers.values():  # sources cut short by an interrupt keep what was written
        report.videos += writer.finish()


def detect(model: Any, sources: list[Source], out: Path, options: DetectOptions | None = None,
           on_frame: Callable[[], None] | None = None) -> DetectReport:
    """Run ``model`` (a Localizer) on every source, writing into ``out``; never raises for one bad source.

    Three threads overlap: a reader (decoding files, grabbing video frames) feeding a bounded queue,
    the model in the calling thread, and a writer (overlays, JPEG/video encoding, label files) behind
    another bounded queue, so a batch runs at the model's speed and memory stays flat. Ctrl-C stops
    reading, finishes the files already started and returns the report with ``interrupted`` set.
    """
    options = options or DetectOptions()
    conf = model.conf if options.conf is None else options.conf
    low = conf if options.dim_conf is None else min(options.dim_conf, conf)
    max_points = options.max_points
    if options.track is not None:  # tracks start at track.conf and continue down to track.keep_conf
        conf, low = options.track.conf, options.track.detect_conf
        max_points = max(max_points, options.track.max_points)
    names = output_names(sources)
    report, failed = DetectReport(), {}
    frames_q: queue.Queue = queue.Queue(maxsize=options.queue_size)
    results_q: queue.Queue = queue.Queue(maxsize=options.queue_size)
    stop = threading.Event()
    reader = threading.Thread(target=read_sources, args=(sources, options, frames_q, stop, failed, report),
                              name="detect-reader", daemon=True)
    writer = threading.Thread(target=write_results, args=(sources, names, out, options, results_q, report, failed),
                              name="detect-writer", daemon=True)
    started = time.perf_counter()
    reader.start()
    writer.start()
    try:
        while (item := frames_q.get()) is not None:
            if isinstance(item, Frame):
                if item.source in failed:
                    continue
                begun = time.perf_counter()
                try:
                    points, heat = model.predict_with_heatmap(item.image, conf=low, max_points=max_points)
                except Exception as e:  # noqa: BLE001  (e.g. out of memory on one huge frame: that source fails)
                    where = f"{sources[item.source]}" + (f" frame {item.index}" if sources[item.source].is_video else "")
                    failed.setdefault(item.source, error_line(where, e))
                    continue
                finally:
                    report.busy["inference"] += time.perf_counter() - begun
                above = points[:, 2] >= conf
                item = Result(item, points[above], points[~above], heat)
                if on_frame is not None:
                    on_frame()
            results_q.put(item)
    except KeyboardInterrupt:
        report.interrupted = True
        stop.set()
        while frames_q.get() is not None:  # let the reader end
            pass
    finally:
        stop.set()
        results_q.put(None)
        writer.join()
        reader.join()
        report.seconds = time.perf_counter() - started
    report.failures = [failed[number] for number in sorted(failed)]
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    tracking = "--track" in argv
    if tracking:
        from simple_keypoint import track as doc_module
    else:
        doc_module = sys.modules[__name__]
    doc = doc_module.__doc__ or ""
    p = Parser(prog=f"simple-keypoint {'track' if tracking else 'detect'}", description=doc.split("\n\n")[0],
                                epilog=doc.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_option(p)
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="torch, onnx (onnxruntime, CPU), or auto: onnx on a CPU when onnxruntime is installed "
                        "(a .pt is exported once and cached), torch on CUDA (default: %(default)s)")
    p.add_argument("--source", default=None,
                   help="image, folder, glob, video, webcam index (0) or rtsp/rtmp/http(s) URL "
                        f"(default: {DEFAULT_SOURCE}, from the current folder or else the checkout)")
    p.add_argument("--project", default="output", help="parent of the numbered run folders (default: %(default)s)")
    p.add_argument("--name", default=None, help="run folder name: PROJECT/NAME, NAME2, ... (default: detect, or track)")
    p.add_argument("--exist-ok", action="store_true", help="reuse PROJECT/NAME instead of numbering a new folder")
    p.add_argument("--out", default=None, help="write to exactly this folder instead (default: PROJECT/NAME numbered)")
    p.add_argument("--conf", type=FRACTION, default=None,
                   help="score threshold, 0 to 1 (default: the one stored in the checkpoint; with --track, tracks start from "
                        f"detections at or above it, default {TrackOptions.conf})")
    p.add_argument("--dim-conf", type=FRACTION, default=None,
                   help="also draw points scoring between this and --conf, dimmer and without a score; they are "
                        "not written to labels or CSV (default: off)")
    p.add_argument("--max-points", type=int, default=20, help="at most this many points per image (default: %(default)s)")
    p.add_argument("--heat-alpha", type=float, default=0.4,
                   help="strength of the JET heatmap blended over the frame, 0 (off) to 1 (default: %(default)s)")
    p.add_argument("--vid-stride", type=int, default=1, help="use every N-th frame of a video or stream (default: %(default)s)")
    p.add_argument("--save-frames", action="store_true", help="for videos and streams also write per-frame overlays and labels")
    p.add_argument("--retries", type=int, default=3, help="reconnection attempts for a URL that fails or drops (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the model (0: all cores). One image at a time, 1 is fastest for these small nets "
                        "and leaves a core to the reader and writer threads (default: %(default)s)")
    p.add_argument("--benchmark", action="store_true",
                   help="also print end-to-end frames/s and the time each stage (read, inference, write) was busy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--track", action="store_true",
                   help="track points over time (video, stream, webcam, or a folder of frames in name order): "
                        "the same as simple-keypoint track")
    add_track_options(p)
    args = p.parse_args(argv)
    args.name = args.name or ("track" if args.track else "detect")
    try:
        args.tracking = track_options(args, args.conf) if args.track else None
    except ValueError as e:
        p.error(str(e))
    for name, value, low in (("--vid-stride", args.vid_stride, 1), ("--max-points", args.max_points, 1),
                             ("--retries", args.retries, 0)):
        if value < low:
            p.error(f"{name} must be >= {low}, got {value}")
    if not 0 <= args.heat_alpha <= 1:
        p.error(f"--heat-alpha must be in [0, 1], got {args.heat_alpha}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        source = args.source if args.source is not None else str(default_path(DEFAULT_SOURCE, "source folder"))
        weights = resolve_weights(args.weights)
    except DefaultPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sources = list_sources(source)
    if not sources:
        missing = not any(c in source for c in "*?[") and not Path(source).exists()
        print(f"error: {source}: no such file or folder" if missing else f"error: no images or videos found at {source}",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out is not None else increment_path(Path(args.project) / args.name, args.exist_ok)
    source_dirs = {Path(s.location).resolve().parent for s in sources if s.kind in ("image", "video")}
    written = [out.resolve() / sub for sub in ("overlays", "labels")]
    if out.resolve() in source_dirs or any(d.is_relative_to(w) for d in source_dirs for w in written):
        print(f"error: output folder {out} would mix results with the input images; choose another --out", file=sys.stderr)
        return 2
    if args.track and any(not s.is_video for s in sources):  # the images are the frames of one sequence
        sources = [Source("frames", source), *(s for s in sources if s.is_video)]

    import torch  # here, not at the top: --help and argument errors need no torch

    from simple_keypoint.checkpoint import CheckpointError
    from simple_keypoint.predict import load_model

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(weights, device=args.device, backend=args.backend, threads=max(args.threads, 0))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    frame_folders = any(not s.is_video for s in sources) or args.save_frames
    try:  # made now, so an unwritable place fails before any work; removed below if nothing went in
        created = make_folders([out, *([out / "overlays", out / "labels"] if frame_folders else [])])
    except OSError as e:  # a file in the way, no permission ...
        print(f"error: cannot create output folder {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    options = DetectOptions(conf=args.conf, max_points=args.max_points, dim_conf=args.dim_conf, heat_alpha=args.heat_alpha,
                            vid_stride=args.vid_stride, save_frames=args.save_frames, retries=args.retries, track=args.tracking)
    from tqdm import tqdm

    total = len(sources) if all(not s.is_video for s in sources) else None
    with tqdm(total=total, desc="detecting", unit="frame", disable=args.quiet) as bar:
        report = detect(model, sources, out, options, on_frame=bar.update)
    remove_empty(created)  # every source failed, or Ctrl+C came first: no empty numbered folder stays
    conf = args.tracking.conf if args.track else model.conf if args.conf is None else args.conf
    wrote_any = report.frames or report.videos  # else the empty folders were removed, so none is named
    print(f"{report.frames} image(s) done, {report.points} point(s) found (threshold {conf:.2f}), "
          f"{len(report.failures)} failure(s), {report.inference_ms:.1f} ms per image; "
          + (f"results in {out}" if wrote_any else "nothing written"))
    for path in report.videos:
        print(f"  wrote {path}")
    if args.benchmark:
        busy = ", ".join(f"{stage} {1000 * seconds / max(report.frames, 1):.1f}" for stage, seconds in report.busy.items())
        print(f"benchmark: {report.frames} frame(s) in {report.seconds:.2f} s end to end = {report.frames_per_second:.1f} "
              f"frames/s; busy ms per frame: {busy} (the stages overlap; the model alone would give "
              f"{1000 / max(report.inference_ms, 1e-9):.1f} frames/s)")
    for line in report.warnings:
        print(f"  warning: {line}")
    for line in report.failures:
        print(f"  failed: {line}")
    if report.interrupted:
        print("stopped by Ctrl-C; the files above are complete up to that point", file=sys.stderr)
        return 130
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
