"""Boxes -> points: each box's bright-region centroid, and labelled frames of box-annotated videos.

Many infrared data sets label a target with a box (drone-ir, Svanstrom et al. 2021, labels every
frame of its videos so). A box is loose around a small target, so its centre is not the target's
centre; the point is the contrast-weighted centroid of the pixels inside the box that stand out
from the box's own surroundings (their convex hull, one region per box, written as a mask), weighted
by intensity as a mask component's centroid is (:func:`simple_keypoint.convert.mask_points`). Large
objects (an airplane of 80 px) keep one point: every bright part inside the box counts, not only
the hottest one, and the mask gives training the object's extent.

Videos in drone-ir's layout: ``ROOT/videos/<name>.mp4`` and ``ROOT/boxes/<name>.csv`` with the
columns ``frame,label,x,y,width,height`` (0-based frame, box top-left corner and size in pixels).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from simple_keypoint.quiet import opencv_silent, quiet_video_backend

# Pixels above this share of the box's peak contrast make its bright region.
BRIGHT_SHARE = 0.3
# The ring around the grown box whose median is the local background.
BORDER = 2
WEIGHT_OFFSET = 1e-6  # as mask components are weighted
BOX_COLUMNS = ("frame", "label", "x", "y", "width", "height")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


class BoxError(ValueError):
    """A box file or video that cannot be used; the message names the file."""


def box_region(gray: np.ndarray, box: tuple[float, float, float, float], margin: int = 1) -> np.ndarray:
    """The target's region in ``box`` ``(x, y, width, height)`` (pixels, top-left corner) of a gray
    frame, as a frame-sized bool mask of one 8-connected component.

    Background = the median of a ``BORDER``-px ring just outside the box grown by ``margin``; bright
    pixels = those of the grown box at least ``BRIGHT_SHARE`` of the way from that background to
    the box's brightest pixel; the region = their convex hull, so an object whose hot parts are
    apart (an airplane's engines) stays one object. A box with nothing brighter than its
    surroundings gives its centre pixel.
    """
    gray = np.asarray(gray, np.float64)
    h, w = gray.shape
    x, y, bw, bh = box
    x0, y0 = max(math.floor(x) - margin, 0), max(math.floor(y) - margin, 0)
    x1, y1 = min(math.ceil(x + bw) + margin, w), min(math.ceil(y + bh) + margin, h)
    region = np.zeros(gray.shape, bool)
    if x1 <= x0 or y1 <= y0:
        return region
    ring = np.zeros(gray.shape, bool)
    ring[max(y0 - BORDER, 0):min(y1 + BORDER, h), max(x0 - BORDER, 0):min(x1 + BORDER, w)] = True
    ring[y0:y1, x0:x1] = False
    inside = gray[y0:y1, x0:x1]
    background = float(np.median(gray[ring])) if ring.any() else float(np.median(inside))
    contrast = inside - background
    peak = contrast.max()
    if peak <= 0:
        u = min(max(int(x + bw / 2), 0), w - 1)
        v = min(max(int(y + bh / 2), 0), h - 1)
        region[v, u] = True
        return region
    vs, us = np.nonzero(contrast >= BRIGHT_SHARE * peak)
    hull = cv2.convexHull(np.column_stack([us + x0, vs + y0]).astype(np.int32))
    filled = np.zeros(gray.shape, np.uint8)
    cv2.fillConvexPoly(filled, hull, 1)
    return filled.astype(bool)


def box_point(gray: np.ndarray, box: tuple[float, float, float, float], margin: int = 1) -> np.ndarray:
    """The point of the target in ``box``: the intensity-weighted centroid of its region
    (:func:`box_region`), the rule mask components follow (:func:`simple_keypoint.convert.mask_points`)."""
    region = box_region(gray, box, margin)
    vs, us = np.nonzero(region)
    if len(us) == 0:
        x, y, bw, bh = box
        return np.array([x + bw / 2 - 0.5, y + bh / 2 - 0.5])
    weights = np.asarray(gray, np.float64)[vs, us] + WEIGHT_OFFSET
    return np.array([(weights * us).sum() / weights.sum(), (weights * vs).sum() / weights.sum()])


def read_boxes(path: str | os.PathLike) -> dict[int, list[tuple[float, float, float, float]]]:
    """A box file (``frame,label,x,y,width,height``) -> boxes by 0-based frame; BoxError naming the file."""
    path = Path(path)
    out: dict[int, list[tuple[float, float, float, float]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(BOX_COLUMNS) <= set(reader.fieldnames):
                raise BoxError(f"{path}: not a box file (expected the columns {','.join(BOX_COLUMNS)})")
            for line, row in enumerate(reader, start=2):
                try:
                    frame = int(row["frame"])
                    box = tuple(float(row[k]) for k in ("x", "y", "width", "height"))
                except (TypeError, ValueError):
                    raise BoxError(f"{path}: line {line}: not a frame number and four numbers") from None
                if frame < 0 or not all(map(math.isfinite, box)) or box[2] < 0 or box[3] < 0:
                    raise BoxError(f"{path}: line {line}: negative frame or size, or a value that is not finite")
                out.setdefault(frame, []).append(box)
    except OSError as e:
        raise BoxError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise BoxError(f"{path}: not a text file") from None
    return out


@dataclass
class BoxedFrame:
    video: str  # the video's stem
    index: int  # 0-based frame number
    gray: np.ndarray  # H x W uint8/uint16 gray frame as stored
    boxes: list[tuple[float, float, float, float]]
    points: np.ndarray  # (N, 2) each box's bright-region centroid, pixel indices
    mask: np.ndarray  # H x W bool: the boxes' regions


def boxed_frames(video: str | os.PathLike, boxes: str | os.PathLike, every: int = 1,
                 offset: int = 0) -> Iterator[BoxedFrame]:
    """The frames of ``video`` that have boxes and whose number is ``offset`` modulo ``every``,
    with their points. Raises BoxError for an unreadable video or box file."""
    by_frame = read_boxes(boxes)
    wanted = {i for i in by_frame if i % every == offset % every}
    if not wanted:
        return
    quiet_video_backend()
    with opencv_silent():  # the failure is reported once, by name
        capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise BoxError(f"{video}: cannot open the video")
    try:
        index, last = 0, max(wanted)
        while index <= last:
            ok, frame = capture.read()
            if not ok:
                raise BoxError(f"{video}: ended at frame {index}, before frame {last} of its boxes")
            if index in wanted:
                gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                regions = [box_region(gray, b) for b in by_frame[index]]
                points = np.array([box_point(gray, b) for b in by_frame[index]]).reshape(-1, 2)
                yield BoxedFrame(Path(video).stem, index, gray, by_frame[index], points, np.any(regions, axis=0))
            index += 1
    finally:
        capture.release()


def box_videos(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(video, box file) pairs of a folder in drone-ir's layout, in name order; BoxError if none."""
    root = Path(root)
    videos = sorted(p for p in (root / "videos").glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    pairs = [(v, root / "boxes" / f"{v.stem}.csv") for v in videos if (root / "boxes" / f"{v.stem}.csv").is_file()]
    if not pairs:
        raise BoxError(f"{root}: no videos/<name>.mp4 with a boxes/<name>.csv")
    return pairs


def video_class(stem: str) -> str:
    """drone-ir's class from a video name: ``IR_DRONE_001`` -> ``DRONE`` (else the whole stem)."""
    parts = stem.split("_")
    return parts[1] if len(parts) >= 3 else stem


VIDEO_PARTS = ("train", "val", "test", "all")


def video_parts(stems: Iterable[str], every: int = 10) -> dict[str, str]:
    """A fixed split by video, never by frame (neighbouring frames are near copies): within each
    class in name order, the ``every``-th video (10th, 20th, ...) is ``"val"``, the one half-way
    between (5th, 15th, ...) ``"test"``, the rest ``"train"``. ``stems``: every video of the set."""
    seen: dict[str, int] = {}
    parts = {}
    for stem in sorted(stems):
        cls = video_class(stem)
        seen[cls] = seen.get(cls, 0) + 1
        position = seen[cls] % every
        parts[stem] = "val" if position == 0 else "test" if position == every // 2 else "train"
    return parts


def split_videos(pairs: list[tuple[Path, Path]], part: str, every: int = 10) -> list[tuple[Path, Path]]:
    """The (video, boxes) pairs of one part of :func:`video_parts`' split (``"all"``: every pair)."""
    if part not in VIDEO_PARTS:
        raise ValueError(f"unknown part {part!r} ({', '.join(VIDEO_PARTS)})")
    parts = video_parts([video.stem for video, _ in pairs], every)
    return [pair for pair in pairs if part in (parts[pair[0].stem], "all")]
