"""Find the points in images with a trained model; write overlays and label files.

    python detect.py                       # shipped heatmap weights on the shipped test images
    python detect.py --source frames/ --weights weights/regression.pt --out results
    python detect.py --weights heatmap.onnx        # an exported model, run by onnxruntime

For each image: OUT/overlays/<stem>.jpg (the image with the heatmap in JET colours and each point
with its score) and OUT/labels/<stem>.txt (the points, normalised, score in the third column;
``0`` when nothing is found). A video file gives one pair per frame, <video>_<frame>.
Bad files are reported and skipped; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from simple_keypoint.checkpoint import CheckpointError
from simple_keypoint.images import IMAGE_SUFFIXES, ImageError, read_image, to_display
from simple_keypoint.labels import atomic_write, pixel_to_normalised, write_labels
from simple_keypoint.predict import Localizer, load_model

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv")


def list_sources(source: str) -> list[Path]:
    """An image or video file, a folder (its images and videos), or a glob pattern."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(source) if Path(p).is_file())


def frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, image) for an image file, or for every frame of a video file."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        yield path.stem, read_image(path)
        return
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise ImageError(path, "cannot open video")
    index = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        yield f"{path.stem}_{index:06d}", frame
        index += 1
    video.release()
    if index == 0:
        raise ImageError(path, "video has no readable frames")


def draw_overlay(image: np.ndarray, points: np.ndarray, heat: np.ndarray | None) -> np.ndarray:
    """The image (8-bit gray) with the heatmap blended in JET colours, each point ringed with its score.

    The blend's weight grows with the heat (0.8 * sqrt(heat)): where the net sees nothing the IR
    image stays as it is, and even weak responses (clutter the net half-believes) show in colour.
    """
    canvas = to_display(image)
    if heat is not None:
        colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        alpha = 0.8 * np.sqrt(np.clip(heat, 0, 1))[..., None]
        canvas = (canvas * (1 - alpha) + colour * alpha).astype(np.uint8)
    scale = max(1, round(max(canvas.shape[:2]) / 400))  # readable marks on large frames
    for u, v, s in points:
        centre = (int(round(u * 16)), int(round(v * 16)))  # sub-pixel drawing (shift=4)
        cv2.circle(canvas, centre, 7 * scale * 16, (0, 255, 0), scale, cv2.LINE_AA, shift=4)
        corner = (int(u) + 9 * scale, int(v) - 6 * scale)
        for ink, width in (((0, 0, 0), 3 * scale), ((0, 255, 0), scale)):  # outlined: readable on any background
            cv2.putText(canvas, f"{s:.2f}", corner, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, ink, width, cv2.LINE_AA)
    return canvas


def detect(model: Localizer, sources: list[Path], out: Path, conf: float | None, max_points: int,
           progress: bool = True) -> tuple[int, int, list[str], float]:
    """Run on every source; returns (images done, points found, failure lines, seconds per image)."""
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    done, found, failures, seconds, seen = 0, 0, [], 0.0, set()
    for path in tqdm(sources, desc="detecting", disable=not progress, unit="file"):
        try:
            for name, image in frames(path):
                if name in seen:  # a.png and a.jpg in one folder: keep both results
                    name = f"{name}_{path.suffix.lstrip('.').lower()}"
                seen.add(name)
                started = time.perf_counter()
                points, heat = model.predict_with_heatmap(image, conf=conf, max_points=max_points)
                seconds += time.perf_counter() - started
                h, w = image.shape[:2]
                xy = pixel_to_normalised(points[:, :2], w, h).clip(0, 1)
                write_labels(out / "labels" / f"{name}.txt", np.column_stack([xy, points[:, 2]]))
                ok, jpg = cv2.imencode(".jpg", draw_overlay(image, points, heat))
                if ok:
                    atomic_write(out / "overlays" / f"{name}.jpg", jpg.tobytes())
                done, found = done + 1, found + len(points)
        except (ImageError, ValueError, OSError) as e:
            failures.append(str(e))
        except (cv2.error, RuntimeError) as e:  # e.g. an image too odd for OpenCV, or out of memory
            failures.append(f"{path}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1][:160]}")
    return done, found, failures, seconds / max(done, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights/heatmap.pt",
                   help="checkpoint (.pt) of either method, or an exported .onnx file (default: %(default)s)")
    p.add_argument("--backend", choices=["torch", "onnx"], default=None,
                   help="torch or onnx (onnxruntime, CPU); default: onnx for a .onnx file, else torch")
    p.add_argument("--source", default="data/test/images", help="image, folder, glob or video (default: %(default)s)")
    p.add_argument("--out", default="output", help="output folder (default: %(default)s)")
    p.add_argument("--conf", type=float, default=None, help="score threshold (default: the one stored in the checkpoint)")
    p.add_argument("--max-points", type=int, default=20, help="at most this many points per image (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (0: all cores). One image at a time, 1 is fastest for these small nets and "
                        "does not collapse when other processes load the cores (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    sources = list_sources(args.source)
    if not sources:
        print(f"error: no images or videos found at {args.source}", file=sys.stderr)
        return 2
    out = Path(args.out)
    source_dirs = {s.resolve().parent for s in sources}
    written = [out.resolve() / sub for sub in ("overlays", "labels")]
    if out.resolve() in source_dirs or any(d.is_relative_to(w) for d in source_dirs for w in written):
        print(f"error: output folder {out} would mix results with the input images; choose another --out", file=sys.stderr)
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.weights, device=args.device, backend=args.backend, threads=max(args.threads, 0))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        for folder in written:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, no permission ...
        print(f"error: cannot create output folder {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    done, found, failures, per_image = detect(model, sources, out, args.conf, args.max_points, not args.quiet)
    conf = model.conf if args.conf is None else args.conf
    print(f"{done} image(s) done, {found} point(s) found (threshold {conf:.2f}), {len(failures)} failure(s), "
          f"{per_image * 1000:.1f} ms per image; results in {out}/overlays and {out}/labels")
    for line in failures:
        print(f"  failed: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
