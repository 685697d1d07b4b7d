"""Find the points in images, videos, a webcam or a network stream with a trained model.

    simple-keypoint detect                          # shipped heatmap weights on the shipped test images
    simple-keypoint detect --source frames/ --weights heatmap_n     # the fast size (or regression, a .pt, an .onnx)
    simple-keypoint detect --source a/ b/*.png clip.mp4          # several paths and globs
    simple-keypoint detect --source clip.mp4 --vid-stride 2      # every 2nd frame -> clip.mp4 + clip.csv
    simple-keypoint detect --source 0                # webcam 0 (Ctrl-C stops and keeps what was written)
    simple-keypoint detect --source rtsp://camera/stream --weights heatmap.onnx
    simple-keypoint detect --source clip.mp4 --track  # point tracks with IDs: the same as simple-keypoint track
    (python detect.py ... in a checkout is the same command)

Each run writes to a new folder, output/detect, output/detect2, ... (--project/--name, --exist-ok to
reuse one, --out for an exact folder; an --out already holding a file this run would write is
refused unless --exist-ok). An image gives OUT/overlays/<stem>.jpg (the image with the heatmap in
JET colours, each point with its score, and a legend: the colour bar, the threshold, "no point
above T" on a frame without one) and OUT/labels/<stem>.txt (the points, normalised, score in the
third column; ``0`` when nothing is found). A video, webcam or stream gives OUT/<name>.mp4 (the
overlays as a video, the input's size; .avi in Motion-JPEG for an odd width or height, which mp4
cannot keep) and OUT/<name>.csv (frame, time_s, u, v, score: one row per point in pixel
coordinates, and a row with empty u, v, score for a frame with none); per-frame overlays and labels
only with --save-frames. Bad files, and videos that end before the frame count they state, are
reported and skipped, a dropped stream is reported (URLs are reconnected a few times first); the
exit code is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simple_keypoint.images import ImageError, read_image
from simple_keypoint.options import FRACTION, Parser, add_weights_option
from simple_keypoint.overlays import draw_overlay, label_origin
from simple_keypoint.paths import DefaultPathError, default_path, increment_path, resolve_weights
from simple_keypoint.runs import make_folders, remove_empty
from simple_keypoint.sources import (
    FALLBACK_FPS,
    Frame,
    NoSourceError,
    Result,
    Source,
    SourceError,
    SourceWriter,
    existing_outputs,
    expected_frames,
    folder_frames,
    frame_file_name,
    frame_paths,
    gather_sources,
    list_sources,
    new_writer,
    output_names,
    save_frame,
    video_frames,
)
from simple_keypoint.tracking import TrackOptions

DEFAULT_SOURCE = "data/test/images"
# What the summary line calls the video-like sources, by kind.
SEQUENCE_NOUNS = {"video": "video", "camera": "stream", "url": "stream", "frames": "frame folder"}

__all__ = ["DetectOptions", "DetectReport", "Frame", "Result", "Source", "detect", "draw_overlay", "label_origin",
           "list_sources", "main", "run"]  # label_origin, Frame and Result stay importable from here, as before


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
    track: TrackOptions | None = None  # track points over time in video-like sources (sources.TrackWriter)


@dataclass
class DetectReport:
    frames: int = 0  # frames (images and video frames) done and written
    images: int = 0  # of which single images
    points: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)  # video-like sources written, by kind
    seconds: float = 0.0  # wall time, end to end
    busy: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "inference": 0.0, "write": 0.0})
    interrupted: bool = False

    @property
    def inference_ms(self) -> float:
        return 1000 * self.busy["inference"] / max(self.frames, 1)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def done(self, any_images: bool = True) -> str:
        """What was done, for the summary line: images, and video frames counted with their videos
        (``any_images``: whether images were among the sources, to say which none were done)."""
        if not self.images and not self.sequences:
            return "0 image(s) done" if any_images else "0 frame(s) done"
        parts = [f"{self.images} image(s) done"] if self.images else []
        if self.sequences:
            counts: dict[str, int] = {}
            for kind, n in self.sequences.items():
                counts[SEQUENCE_NOUNS[kind]] = counts.get(SEQUENCE_NOUNS[kind], 0) + n
            parts.append(f"{self.frames - self.images} frame(s) of " + ", ".join(f"{n} {noun}(s)" for noun, n in counts.items()))
        return ", ".join(parts)


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
                    read = folder_frames if source.kind == "frames" else video_frames
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


def write_results(sources: list[Source], names: list[str], out: Path, options: DetectOptions, results: queue.Queue,
                  report: DetectReport, failed: dict[int, str], conf: float | None = None) -> None:
    """The writer thread: overlays, label files, videos and CSVs from ``results`` until ``None``.

    A video's frames go into its video file here, in order; per-image files are written by a few pool
    threads, since each atomic write waits on fsync and one thread would fall behind the model.
    ``conf`` is the threshold the overlays' legend states.
    """
    writers: dict[int, SourceWriter] = {}
    lock = threading.Lock()
    pending: deque[Future] = deque()

    def finish(number: int) -> None:
        written = writers.pop(number).finish()
        report.videos += written
        if written:
            kind = sources[number].kind
            report.sequences[kind] = report.sequences.get(kind, 0) + 1

    def image_job(number: int, item: Result, overlay: np.ndarray | None) -> None:
        started = time.perf_counter()
        try:
            if overlay is None:
                overlay = draw_overlay(item.frame.image, item.points, item.heat, options.heat_alpha, item.dim, conf=conf)
            video = sources[number].is_video
            name = frame_file_name(names[number], item.frame.index) if video else names[number]
            save_frame(out, name, item.frame, item.points, overlay, str(sources[number]))
            with lock:
                if not video:  # a video's frames were counted when they went into its video file
                    report.frames += 1
                    report.images += 1
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
                        finish(number)
                    continue
                if number in failed:
                    continue
                overlay = None
                if sources[number].is_video:
                    if options.track is None:
                        overlay = draw_overlay(item.frame.image, item.points, item.heat, options.heat_alpha, item.dim,
                                               conf=conf)
                    if number not in writers:
                        writers[number] = new_writer(out, names[number], options.track, options.vid_stride, options.heat_alpha)
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
    for number in list(writers):  # sources cut short by an interrupt keep what was written
        finish(number)


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
    writer = threading.Thread(target=write_results, args=(sources, names, out, options, results_q, report, failed, conf),
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


# ---------------------------------------------------------------------------------------------- command line

def build_parser(command: str, doc: str, conf_help: str) -> argparse.ArgumentParser:
    """The options detect and track share; ``doc`` (a module docstring) gives the description and examples."""
    p = Parser(prog=f"simple-keypoint {command}", description=doc.split("\n\n")[0],
                                epilog=doc.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_option(p)
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="torch, onnx (onnxruntime, CPU), or auto: onnx on a CPU when onnxruntime is installed "
                        "(a .pt is exported once and cached), torch on CUDA (default: %(default)s)")
    p.add_argument("--source", nargs="+", default=None, metavar="SOURCE",
                   help="one or more images, folders, globs, videos, webcam indexes (0) or rtsp/rtmp/http(s) URLs "
                        f"(default: {DEFAULT_SOURCE}, from the current folder or else the checkout)")
    p.add_argument("--project", default="output", help="parent of the numbered run folders (default: %(default)s)")
    p.add_argument("--name", default=None, help=f"run folder name: PROJECT/NAME, NAME2, ... (default: {command})")
    p.add_argument("--exist-ok", action="store_true",
                   help="reuse PROJECT/NAME instead of numbering a new folder, and replace the files this run writes "
                        "in it or in --out")
    p.add_argument("--out", default=None,
                   help="write to exactly this folder instead (default: PROJECT/NAME numbered); refused if it already "
                        "holds a file this run would write, unless --exist-ok")
    p.add_argument("--conf", type=FRACTION, default=None, help=conf_help)
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
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The range checks argparse's types do not make; a bad value is argparse's one-line error."""
    for name, value, low in (("--vid-stride", args.vid_stride, 1), ("--max-points", args.max_points, 1),
                             ("--retries", args.retries, 0)):
        if value < low:
            p.error(f"{name} must be >= {low}, got {value}")
    if not 0 <= args.heat_alpha <= 1:
        p.error(f"--heat-alpha must be in [0, 1], got {args.heat_alpha}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser("detect", __doc__ or "", "score threshold, 0 to 1 (default: the one stored in the checkpoint)")
    p.add_argument("--track", action="store_true",
                   help="track points over time (video, stream, webcam, or a folder of frames in name order): the same "
                        "as simple-keypoint track, whose options then apply (simple-keypoint track --help)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.name = args.name or "detect"
    check_args(p, args)
    return args


def refusal(out: Path, sources: list[Source], tracking: bool, save_frames: bool, exist_ok: bool) -> str | None:
    """Why writing ``sources``' results to ``out`` is refused (one line), or None: ``out`` mixing its
    files with the inputs, or holding files this run would replace (without ``exist_ok``)."""
    inputs = [Path(s.location) for s in sources if s.kind in ("image", "video")]
    inputs += [path for s in sources if s.kind == "frames" for path in frame_paths(s)]
    source_dirs = {path.resolve().parent for path in inputs}
    written = [out.resolve() / sub for sub in ("overlays", "labels")]
    if out.resolve() in source_dirs or any(d.is_relative_to(w) for d in source_dirs for w in written):
        return f"output folder {out} would mix results with the input images; choose another --out"
    if exist_ok or not out.is_dir():
        return None
    clash = existing_outputs(out, sources, output_names(sources), tracking, save_frames)
    if not clash:
        return None
    more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
    return (f"output folder {out} already holds {clash[0].relative_to(out)}{more} that this run would replace; "
            "pass --exist-ok to replace them, or choose another --out")


def run(args: argparse.Namespace, tracking: TrackOptions | None = None) -> int:
    """Detect (or with ``tracking``, track) as the parsed command line says; prints the summary, returns the exit code."""
    try:
        entries = args.source if args.source is not None else [str(default_path(DEFAULT_SOURCE, "source folder"))]
        weights = resolve_weights(args.weights)
        sources = gather_sources(entries, sequences=tracking is not None)
    except (DefaultPathError, NoSourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out is not None else increment_path(Path(args.project) / args.name, args.exist_ok)
    refused = refusal(out, sources, tracking is not None, args.save_frames, args.exist_ok)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    if args.exist_ok and out.is_dir() and (replaced := existing_outputs(out, sources, output_names(sources),
                                                                       tracking is not None, args.save_frames)):
        print(f"note: replacing {len(replaced)} file(s) in {out} (--exist-ok)", file=sys.stderr)

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
                            vid_stride=args.vid_stride, save_frames=args.save_frames, retries=args.retries, track=tracking)
    from tqdm import tqdm

    only_images = all(s.kind == "image" for s in sources)
    total = None
    if not args.quiet:  # videos state their frame count; webcams and streams do not, so then no total
        lengths = [expected_frames(s, args.vid_stride) for s in sources]
        total = None if None in lengths else sum(n for n in lengths if n is not None)
    with tqdm(total=total, desc="tracking" if tracking else "detecting", unit="image" if only_images else "frame",
              disable=args.quiet) as bar:
        report = detect(model, sources, out, options, on_frame=bar.update)
    remove_empty(created)  # every source failed, or Ctrl+C came first: no empty numbered folder stays
    conf = tracking.conf if tracking else model.conf if args.conf is None else args.conf
    wrote_any = report.frames or report.videos  # else the empty folders were removed, so none is named
    per = "image" if only_images else "frame"
    print(f"{report.done(any(s.kind == 'image' for s in sources))}, {report.points} point(s) found (threshold {conf:.2f}), "
          f"{len(report.failures)} failure(s), {report.inference_ms:.1f} ms per {per}; "
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from simple_keypoint import cli

    if cli.as_track_arguments(argv) is not None:  # detect --track is the track command: the command line hands it over
        return cli.main(["detect", *argv])
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
