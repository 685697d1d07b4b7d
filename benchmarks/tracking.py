"""Point tracking on real videos (drone-ir) and on sequences made from real frames: the detector
alone against confirmed tracks.

    python -m benchmarks.tracking --markdown                 # both benchmarks (detections cached per model)
    python -m benchmarks.tracking --only drone-ir --sweep    # drone-ir; + each option varied on the tune videos
    python -m benchmarks.tracking --weights PATH             # another detector (its own detection cache)
    python -m benchmarks.tracking --drone-ir PATH            # drone-ir elsewhere than data/drone-ir
    python -m benchmarks.tracking --compare norfair          # also norfair (pip install --no-deps norfair filterpy rich)
    python -m benchmarks.tracking --no-speed                 # skip the end-to-end frames/s runs

**drone-ir** (``--drone-ir``, default ``data/drone-ir``: ``videos/IR_<CLASS>_<NNN>.mp4`` and
``boxes/<video>.csv``): a ground camera's thermal videos of airplanes, birds, drones and
helicopters, with a box per labelled target per frame. A confirmed point inside a box grown by 2 px
finds it (one point per box; any other confirmed point is a false alarm, a second point on one
target included). Split by video as ``convert boxes`` splits (:func:`drone_ir_splits`): tune on its validation
videos, report on its test videos; its training videos (the detector learnt from them) are left out.
Reported per class, and for panning against still cameras (a video's median measured camera speed
above PAN_PX). Detections, object extents and camera features are cached under
``--out``/drone-ir.

**Pasted sequences**:
No labelled IR sequence ships with the data, so sequences are made, reproducibly (fixed seeds):
real target patches cut from the SIRST and NUDT-SIRST *test* masks (``dataset.cut_patches``, the
patches training pastes) move on smooth random paths (0.2-5 px/frame, some turning; in ``crossing``
two of them cross) over real *test* frames: HIT-UAV ground (``ground``, ``crossing``) or SIRST sky
with its own targets painted out (``sky``, ``hover``), with camera jitter and a slow pan, sensor
noise, brightness flicker of the frame and of each target, and a target-free stretch in the middle.
``hover``: targets that hover still (reported apart from the overall row). Each sequence is written
as ``images/NNNNNN.png`` + ``labels/NNNNNN.txt`` (the project's format, one file per frame) and
``gt.csv`` (frame, id, u, v), under ``--out``.

Scored per frame, a point within 3 px of a target (one point per target): Pd and false alarms per
frame of the detector alone (at its stored threshold, and at the tracker's start threshold), and of
confirmed tracks (a track's filtered position in the frames it has a detection; coasting
predictions are not outputs). "Pd after confirmation" counts each target's frames from the first
frame a confirmed track is on it (a target never confirmed counts in full); the frames before are
reported as the confirmation delay. ID switches, fragmentations, MOTA and IDF1 by ``motmetrics``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from simple_keypoint.boxes import video_class, video_parts
from simple_keypoint.dataset import Patch, cut_patches, load_dataset
from simple_keypoint.images import find_images, read_image, to_gray
from simple_keypoint.labels import pixel_to_normalised, write_labels
from simple_keypoint.paths import repo_root, resolve_weights
from simple_keypoint.tables import render_table
from simple_keypoint.tracking import FrameMotion, PointTracker, SceneShift, TrackOptions, object_extents

ROOT = repo_root() or Path.cwd()
DATA = ROOT / "data"
KINDS = ("sky", "ground", "crossing", "hover")
MOVING = ("sky", "ground", "crossing")  # the overall row; hover is reported apart
RADIUS = 3.0  # px: a point this close to a target finds it
DET_FLOOR = 0.05  # detections are cached down to this score ...
DET_MAX = 100  # ... at most this many per frame
VERSION = 1  # of the sequence recipe: a change rebuilds the cache


# ---------------------------------------------------------------------------------------------- sequences

@dataclass
class Recipe:
    frames: int = 300
    per_kind: int = 3
    seed: int = 0


@dataclass
class Target:
    patch: Patch
    start: int
    end: int  # exclusive
    path: np.ndarray  # (end - start, 2) scene positions of its point
    contrast: float


def sky_backgrounds() -> list[np.ndarray]:
    """SIRST test frames (gray, float32) with their targets painted out, enlarged 1.5x."""
    out = []
    for path in find_images(DATA / "test" / "images"):
        image = to_gray(read_image(path))
        mask_path = DATA / "test" / "masks" / f"{path.stem}.png"
        if mask_path.is_file():
            mask = cv2.dilate((to_gray(read_image(mask_path)) > 0).astype(np.uint8), np.ones((7, 7), np.uint8))
            image = cv2.inpaint(np.clip(image, 0, 255).astype(np.uint8), mask, 5, cv2.INPAINT_TELEA).astype(np.float32)
        image = cv2.resize(image, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
        if image.shape[0] >= 330 and image.shape[1] >= 430:
            out.append(image)
    return out


def ground_backgrounds() -> list[np.ndarray]:
    """HIT-UAV test frames (640x512, gray float32): real ground clutter, persons and cars included."""
    return [to_gray(read_image(p)) for p in find_images(DATA / "hit-uav" / "test" / "images")]


def target_patches() -> list[Patch]:
    """Targets of the SIRST and NUDT-SIRST test masks, at most 10 px across."""
    patches = []
    for root in (DATA / "test", DATA / "nudt-sirst" / "test"):
        samples, _ = load_dataset(root, progress=False)
        patches += cut_patches(samples, max_side=10)
    return [p for p in patches if p.delta.max() > 0]


def moving_path(rng: np.random.Generator, start: np.ndarray, length: int, view: Callable[[int], np.ndarray],
                size: tuple[int, int], t0: int, speed: float | None = None, turning: bool | None = None) -> np.ndarray:
    """A smooth path from ``start``: speed 0.2-5 px/frame (log-uniform), a slowly varying speed, a
    turn rate for some, steered back while near the view's edge."""
    speed = float(np.exp(rng.uniform(np.log(0.2), np.log(5.0)))) if speed is None else speed
    turning = rng.random() < 0.5 if turning is None else turning
    omega = rng.uniform(0.01, 0.04) * rng.choice([-1, 1]) if turning else 0.0
    heading, phase = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
    w, h = size
    position, out = start.astype(float), []
    for i in range(length):
        out.append(position.copy())
        image = position - view(t0 + i)
        centre = np.array([w / 2, h / 2]) - image
        near = image[0] < 40 or image[0] > w - 40 or image[1] < 40 or image[1] > h - 40
        if near and np.dot([np.cos(heading), np.sin(heading)], centre) < 0:
            target = math.atan2(centre[1], centre[0])
            heading += float(np.clip(math.remainder(target - heading, 2 * np.pi), -0.08, 0.08))
        heading += omega
        v = speed * (1 + 0.2 * np.sin(phase + 0.03 * i))
        position = position + v * np.array([np.cos(heading), np.sin(heading)])
    return np.array(out)


def make_sequence(kind: str, index: int, recipe: Recipe, backgrounds: dict[str, list[np.ndarray]],
                  patches: list[Patch]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Frames (uint8 gray), ground truth per frame ((k, 3) id, u, v) and the true camera shifts (T, 2)."""
    rng = np.random.default_rng([recipe.seed, KINDS.index(kind), index, VERSION])
    ground = kind in ("ground", "crossing")
    pool = backgrounds["ground" if ground else "sky"]
    canvas = pool[int(rng.integers(len(pool)))]
    size = (512, 384) if ground else (384, 288)
    w, h = size
    room = np.array([canvas.shape[1] - w, canvas.shape[0] - h], float) - 8  # pan + jitter inside the canvas
    T = recipe.frames
    pan_from = rng.uniform(0, 1, 2) * room * 0.3 + 4
    pan_to = room - rng.uniform(0, 1, 2) * room * 0.3 + 4
    if rng.random() < 0.5:
        pan_from[0], pan_to[0] = pan_to[0], pan_from[0]
    jitter = np.clip(rng.normal(0, 0.7, (T, 2)), -3, 3)

    def view(t: int) -> np.ndarray:  # the smooth camera position (top-left corner in the canvas)
        return pan_from + (pan_to - pan_from) * min(max(t, 0), T - 1) / (T - 1)

    camera = np.array([view(t) for t in range(T)]) + jitter
    free_start = int(rng.integers(T * 2 // 5, T // 2))
    free_end = free_start + int(rng.integers(T // 10, T // 6 + 1))  # 30-50 frames of 300
    targets: list[Target] = []

    def patch() -> Patch:
        return patches[int(rng.integers(len(patches)))]

    def contrast() -> float:
        return float(rng.uniform(0.6, 1.2))

    for t0, t1 in ((0, free_start), (free_end, T)):
        if kind == "crossing":  # two targets meeting at one point halfway through their lives
            tc = (t0 + t1) // 2
            meet = view(tc) + np.array([w, h]) * rng.uniform(0.35, 0.65, 2)
            heading = rng.uniform(0, 2 * np.pi)
            for turn in (0.0, rng.uniform(np.pi / 3, 2 * np.pi / 3)):
                speed = rng.uniform(1.0, 3.0)
                direction = np.array([np.cos(heading + turn), np.sin(heading + turn)])
                path = meet + np.outer(np.arange(t0, t1) - tc, direction * speed)
                targets.append(Target(patch(), t0, t1, path, contrast()))
            continue
        for _ in range(2 if kind != "hover" else 1 + int(rng.integers(2))):
            start = t0 + int(rng.integers(0, max(1, min(25, (t1 - t0) // 4))))
            position = view(start) + np.array([w, h]) * rng.uniform(0.15, 0.85, 2)
            if kind == "hover":  # still, with a small wobble
                wobble = rng.normal(0, 0.15, (t1 - start, 2)).cumsum(axis=0) * 0.1
                path = position + wobble
            else:
                path = moving_path(rng, position, t1 - start, view, size, start)
            targets.append(Target(patch(), start, t1, path, contrast()))

    scale = float(canvas.std()) or 1.0
    frames, truth = [], []
    for t in range(T):
        cx, cy = camera[t]
        frame = cv2.warpAffine(canvas, np.float32([[1, 0, -cx], [0, 1, -cy]]), size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        rows = []
        for number, target in enumerate(targets):
            if not target.start <= t < target.end:
                continue
            point = target.path[t - target.start] - camera[t]
            if not (0 <= point[0] < w and 0 <= point[1] < h):
                continue
            flicker = float(np.clip(rng.normal(1.0, 0.2), 0.5, 1.4))
            if add_patch(frame, target.patch, point, target.contrast * flicker * scale):
                rows.append((number, point[0], point[1]))
        gain = 1 + 0.04 * np.sin(2 * np.pi * t / 47) + (0.12 if t % 97 < 3 else 0.0)  # slow flicker, brief flashes
        frame = frame * gain + rng.normal(0, 1.5, frame.shape)
        frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
        truth.append(np.array(rows, float).reshape(-1, 3))
    shifts = -np.diff(camera, axis=0, prepend=camera[:1])
    return frames, truth, shifts


def add_patch(frame: np.ndarray, patch: Patch, point: np.ndarray, amplitude: float) -> bool:
    """Add ``patch`` x ``amplitude`` so that its point lands on ``point`` (sub-pixel, bilinear); False
    (nothing added) where it would not fit inside the frame."""
    corner = point - patch.centre
    whole = np.floor(corner).astype(int)
    fraction = corner - whole
    delta = cv2.copyMakeBorder(patch.delta, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    shifted = cv2.warpAffine(delta, np.float32([[1, 0, fraction[0]], [0, 1, fraction[1]]]), delta.shape[::-1],
                             flags=cv2.INTER_LINEAR)
    x0, y0 = whole - 1
    ph, pw = shifted.shape
    if x0 < 0 or y0 < 0 or x0 + pw > frame.shape[1] or y0 + ph > frame.shape[0]:
        return False
    frame[y0:y0 + ph, x0:x0 + pw] += shifted * np.float32(amplitude)
    return True


def build(out: Path, recipe: Recipe) -> list[Path]:
    """The sequences under ``out`` (made once for a recipe; a different recipe rebuilds them)."""
    stamp = {"recipe": recipe.__dict__, "version": VERSION}
    manifest = out / "sequences.json"
    names = [f"{kind}_{i}" for kind in KINDS for i in range(recipe.per_kind)]
    if manifest.is_file() and json.loads(manifest.read_text()) == stamp and all((out / n / "gt.csv").is_file() for n in names):
        return [out / n for n in names]
    print("building sequences ...", file=sys.stderr)
    backgrounds = {"sky": sky_backgrounds(), "ground": ground_backgrounds()}
    patches = target_patches()
    for name in names:
        kind, index = name.rsplit("_", 1)
        frames, truth, shifts = make_sequence(kind, int(index), recipe, backgrounds, patches)
        folder = out / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        for t, (frame, rows) in enumerate(zip(frames, truth, strict=True)):
            cv2.imwrite(str(folder / "images" / f"{t:06d}.png"), frame)
            write_labels(folder / "labels" / f"{t:06d}.txt", pixel_to_normalised(rows[:, 1:], frame.shape[1], frame.shape[0]))
        with open(folder / "gt.csv", "w", newline="") as f:
            f.write("frame,id,u,v\n")
            f.writelines(f"{t},{int(i)},{u:.3f},{v:.3f}\n" for t, rows in enumerate(truth) for i, u, v in rows)
        np.save(folder / "camera_shift.npy", shifts)
    manifest.write_text(json.dumps(stamp))
    return [out / n for n in names]


# ---------------------------------------------------------------------------------------------- detection

@dataclass
class Detected:
    """A sequence with its cached detections and measured scene shifts."""

    name: str
    kind: str
    truth: list[np.ndarray]  # per frame (k, 3) id, u, v
    points: list[np.ndarray]  # per frame (n, 3) u, v, score (score >= DET_FLOOR, best DET_MAX)
    shifts: np.ndarray  # (T, 2) by SceneShift, fitted to every feature (NaN: textureless)
    true_shifts: np.ndarray
    shift_ms: float  # SceneShift per frame
    size: tuple[int, int]  # width, height
    motions: list[FrameMotion] = field(default_factory=list)  # per frame, without the image
    extents: list[np.ndarray] = field(default_factory=list)  # per frame, as object_extents gives them


def read_truth(folder: Path, frames: int) -> list[np.ndarray]:
    rows: list[list[tuple[float, float, float]]] = [[] for _ in range(frames)]
    with open(folder / "gt.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows[int(r["frame"])].append((float(r["id"]), float(r["u"]), float(r["v"])))
    return [np.array(r, float).reshape(-1, 3) for r in rows]


def detect_sequence(folder: Path, model, key: str) -> Detected:
    """Detections (cached in the folder per model) and scene shifts of one sequence."""
    paths = sorted((folder / "images").glob("*.png"))
    cache = folder / f"detections_{key}.npz"
    if cache.is_file():
        data = np.load(cache)
        points = np.split(data["points"], data["splits"])
    else:
        points = [model.predict(read_image(path), conf=DET_FLOOR, max_points=DET_MAX) for path in paths]
        np.savez(cache, points=np.vstack(points), splits=np.cumsum([len(p) for p in points])[:-1])
    shifts, motions, extents, spent, shift = [], [], [], 0.0, SceneShift()  # not cached: what is being measured
    for path, p in zip(paths, points, strict=True):
        image = read_image(path)
        started = time.perf_counter()
        motion = shift(image)
        spent += time.perf_counter() - started
        fitted = motion.fit()
        shifts.append((np.nan, np.nan) if fitted is None else fitted)
        e = np.full((len(p), 6), np.nan)
        e[p[:, 2] >= EXTENT_FLOOR] = object_extents(motion.gray, p[p[:, 2] >= EXTENT_FLOOR])
        extents.append(e)
        motions.append(replace(motion, gray=None))
    shifts, shift_ms = np.array(shifts, float), 1000 * spent / len(paths)
    return Detected(folder.name, folder.name.rsplit("_", 1)[0], read_truth(folder, len(paths)), points, shifts,
                    np.load(folder / "camera_shift.npy"), shift_ms, (image.shape[1], image.shape[0]), motions, extents)


# ---------------------------------------------------------------------------------------------- scoring

def matches(truth: np.ndarray, points: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (truth row, point row) within RADIUS, the closest overall."""
    if not len(truth) or not len(points):
        return []
    d = np.linalg.norm(truth[:, None, 1:3] - points[None, :, :2], axis=2)
    r, c = linear_sum_assignment(np.where(d <= RADIUS, d, 1e6))
    return [(i, j) for i, j in zip(r, c, strict=True) if d[i, j] <= RADIUS]


@dataclass
class Tally:
    frames: int = 0
    target_frames: int = 0
    det_hits: dict[float, int] = field(default_factory=dict)
    det_false: dict[float, int] = field(default_factory=dict)
    hits: int = 0  # confirmed-track outputs on a target
    false: int = 0
    after_frames: int = 0  # target-frames from each target's confirmation on (never confirmed: all)
    after_hits: int = 0
    delays: list[int] = field(default_factory=list)
    targets: int = 0
    never: int = 0
    seconds: float = 0.0  # tracker time
    accumulators: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                for k, v in theirs.items():
                    mine[k] = mine.get(k, 0) + v
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, f.name, mine + theirs)


def score_detector(seq: Detected, thresholds: Iterable[float], max_points: int = TrackOptions.max_points) -> Tally:
    """Per-frame Pd / false alarms of the detector alone (its best ``max_points``, as the tracker gets them)."""
    tally = Tally(frames=len(seq.points), target_frames=sum(len(t) for t in seq.truth))
    for c in thresholds:
        hits = false = 0
        for truth, points in zip(seq.truth, seq.points, strict=True):
            kept = points[points[:, 2] >= c][:max_points]
            n = len(matches(truth, kept))
            hits, false = hits + n, false + len(kept) - n
        tally.det_hits[c], tally.det_false[c] = hits, false
    return tally


Outputs = list[list[tuple[int, float, float]]]  # per frame: (track id, u, v) of confirmed tracks with a detection


def run_ours(seq: Detected, options: TrackOptions, true_shift: bool = False) -> tuple[Outputs, float]:
    tracker = PointTracker(options)
    out, started = [], time.perf_counter()
    for t, points in enumerate(seq.points):
        keep = points[:, 2] >= options.detect_conf
        if true_shift:  # the true shift: nothing fitted, no objects joined
            rows = tracker.update(points[keep][:options.max_points], seq.true_shifts[t], size=seq.size)
        else:
            rows = tracker.update(points[keep][:options.max_points], seq.motions[t], size=seq.size,
                                  extents=seq.extents[t][keep][:options.max_points])
        out.append([(r.track_id, r.u, r.v) for r in rows if r.confirmed and r.detection is not None])
    return out, time.perf_counter() - started


def run_norfair(seq: Detected, options: TrackOptions, conf: float, motion_test: bool = False) -> tuple[Outputs, float]:
    """norfair's Tracker on the same detections: euclidean distance within the gate, confirmation
    after ``initialization_delay`` = M - 1 hits, ``hit_counter_max`` = K, the camera's shift as a
    translation; one threshold (``conf``) for everything. ``motion_test``: an object is reported only
    once this project's test (``min_move`` against the background) has passed on its detections."""
    from norfair import Detection, Tracker
    from norfair.camera_motion import TranslationTransformation

    from simple_keypoint.tracking import _Track

    tracker = Tracker(distance_function="euclidean", distance_threshold=options.gate, hit_counter_max=options.max_missed,
                      initialization_delay=options.confirm_hits - 1, past_detections_length=0)
    out, offset, started = [], np.zeros(2), time.perf_counter()
    paths: dict[int, _Track] = {}
    moving: set[int] = set()
    for step, (points, shift) in enumerate(zip(seq.points, np.nan_to_num(seq.shifts), strict=True)):
        offset = offset + shift
        detections = [Detection(points=p[None, :2].copy(), scores=np.array([p[2]])) for p in points if p[2] >= conf]
        now = {id(d) for d in detections}
        objects = [o for o in tracker.update(detections, coord_transformations=TranslationTransformation(offset))
                   if id(o.last_detection) in now]
        if motion_test:
            for o in objects:
                scene = o.last_detection.points[0] - offset
                if o.id not in paths:
                    paths[o.id] = _Track(step, step, scene, 0.0, 1)
                else:
                    paths[o.id].add_point(step, scene)
                if o.id not in moving and paths[o.id].moved(options.jitter) >= options.min_move:
                    moving.add(o.id)
            objects = [o for o in objects if o.id in moving]
        out.append([(o.id, *o.estimate[0]) for o in objects])
    return out, time.perf_counter() - started


def score_tracks(seq: Detected, outputs: Outputs, seconds: float) -> Tally:
    import motmetrics as mm

    tally = Tally(frames=len(outputs), target_frames=sum(len(t) for t in seq.truth), seconds=seconds, names=[seq.name])
    accumulator = mm.MOTAccumulator(auto_id=True)
    first_frame: dict[int, int] = {}
    confirmed_at: dict[int, int] = {}
    frames_of: dict[int, list[tuple[int, bool]]] = {}
    for t, (truth, rows) in enumerate(zip(seq.truth, outputs, strict=True)):
        points = np.array([(u, v) for _, u, v in rows], float).reshape(-1, 2)
        pairs = matches(truth, points)
        hit_rows = {i for i, _ in pairs}
        tally.hits += len(pairs)
        tally.false += len(points) - len(pairs)
        for i, (gid, _, _) in enumerate(truth):
            gid = int(gid)
            first_frame.setdefault(gid, t)
            if i in hit_rows:
                confirmed_at.setdefault(gid, t)
            frames_of.setdefault(gid, []).append((t, i in hit_rows))
        distances = mm.distances.norm2squared_matrix(truth[:, 1:3], points, max_d2=RADIUS ** 2)
        accumulator.update(truth[:, 0].astype(int).tolist(), [r[0] for r in rows], distances)
    for gid, seen in frames_of.items():
        tally.targets += 1
        if gid not in confirmed_at:
            tally.never += 1
            tally.after_frames += len(seen)
            continue
        tally.delays.append(confirmed_at[gid] - first_frame[gid])
        after = [hit for t, hit in seen if t >= confirmed_at[gid]]
        tally.after_frames += len(after)
        tally.after_hits += sum(after)
    tally.accumulators.append(accumulator)
    return tally


def mot_summary(tally: Tally) -> dict[str, float]:
    import motmetrics as mm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = mm.metrics.create().compute_many(
            tally.accumulators, names=tally.names, generate_overall=True,
            metrics=["num_switches", "num_fragmentations", "mota", "idf1"])
    return {k: float(v) for k, v in summary.loc["OVERALL"].items()}


# ---------------------------------------------------------------------------------------------- drone-ir

CLASSES = ("airplane", "bird", "drone", "helicopter")
GROW = 2.0  # px: a confirmed point inside a target's box grown by this much finds it
EXTENT_FLOOR = 0.1  # object extents are cached for detections down to this score
PAN_PX = 0.3  # px/frame: a video whose camera moves more than this (median over its frames) is "panning"


SPLITS = {"test": "test", "val": "tune"}  # convert boxes' part -> this benchmark's; "train" videos are left out


def drone_ir_splits(names: list[str]) -> dict[str, str]:
    """Each video's split here: ``convert boxes``' fixed split by video (``boxes.video_parts``), so the
    detector's own training videos (its verifier learnt from them) are never scored: its validation
    videos tune the tracker (``"tune"``), its test videos report (``"test"``)."""
    return {name: SPLITS[part] for name, part in video_parts(names).items() if part in SPLITS}


@dataclass
class Video:
    """One drone-ir video with its cached detections, object extents and camera motion."""

    name: str
    kind: str  # its class: airplane, bird, drone, helicopter
    split: str
    boxes: list[np.ndarray]  # per frame (k, 5) target id, x0, y0, x1, y1 (grown by GROW)
    points: list[np.ndarray]  # per frame (n, 3) u, v, score (score >= DET_FLOOR, best DET_MAX)
    extents: list[np.ndarray]  # per frame (n, 6) as object_extents gives them (NaN below EXTENT_FLOOR)
    motions: list[FrameMotion]  # per frame, without the image
    size: tuple[int, int]
    motion_ms: float  # SceneShift per frame
    extent_ms: float  # object_extents per frame


def read_boxes(path: Path, frames: int) -> list[np.ndarray]:
    """Per frame (k, 5): id, box grown by GROW. Several targets in one video get IDs by following
    each box to the nearest one of the frame before (within 40 px), else a new ID."""
    rows: list[list[tuple[float, float, float, float]]] = [[] for _ in range(frames)]
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t = int(r["frame"])
            if 0 <= t < frames:
                x, y, w, h = (float(r[k]) for k in ("x", "y", "width", "height"))
                rows[t].append((x - GROW, y - GROW, x + w + GROW, y + h + GROW))
    out, previous, next_id = [], np.zeros((0, 5)), 0
    for boxes in rows:
        b = np.array(boxes, float).reshape(-1, 4)
        ids = np.full(len(b), -1.0)
        if len(b) and len(previous):
            centre = (b[:, :2] + b[:, 2:]) / 2
            before = (previous[:, 1:3] + previous[:, 3:5]) / 2
            d = np.linalg.norm(centre[:, None] - before[None], axis=2)
            r, c = linear_sum_assignment(d)
            for i, j in zip(r, c, strict=True):
                if d[i, j] <= 40:
                    ids[i] = previous[j, 0]
        for i in np.flatnonzero(ids < 0):
            ids[i], next_id = next_id, next_id + 1
        frame = np.column_stack([ids, b])
        out.append(frame)
        if len(frame):
            previous = frame
    return out


def read_video(path: Path) -> Iterable[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()


def tracking_code_version() -> str:
    """A hash of the code and constants that make camera features and object extents (SceneShift,
    object_extents): their caches are recomputed when it changes, not when the tracker's rules do."""
    import hashlib
    import inspect

    import simple_keypoint.tracking as tracking

    parts = [inspect.getsource(tracking.SceneShift), inspect.getsource(tracking.object_extents)]
    parts += [repr(getattr(tracking, k)) for k in ("MAX_FEATURES", "MIN_CORNER", "REFRESH", "OBJECT_BACKGROUND", "EXTENT_RADIUS")]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


def load_video(root: Path, name: str, split: str, model, key: str, cache: Path) -> Video:
    """A video's detections (cached per model), object extents (cached per model and version of the
    tracking code) and camera features (cached per version of the tracking code), computed on first use."""
    video = root / "videos" / f"{name}.mp4"
    code = tracking_code_version()
    detections, motion_file = cache / key / f"{name}.npz", cache / f"motion_{code}" / f"{name}.npz"
    extents_file = cache / key / f"extents_{code}" / f"{name}.npz"
    need_motion, need_points = not motion_file.is_file(), not detections.is_file()
    need_extents = not extents_file.is_file()
    points: list[np.ndarray] = []
    extents: list[np.ndarray] = []
    flows: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = []
    motion_s = extent_s = 0.0
    size = (0, 0)
    if need_points:
        points = [model.predict(image, conf=DET_FLOOR, max_points=DET_MAX) for image in read_video(video)]
        _save_ragged(detections, points=points)
    else:
        points = _load_ragged(detections)["points"]
    if need_motion or need_extents:
        shift = SceneShift()
        for t, image in enumerate(read_video(video)):
            size = (image.shape[1], image.shape[0])
            started = time.perf_counter()
            m = shift(image)
            motion_s += time.perf_counter() - started
            flows.append((m.before, m.after, m.strength, m.first))
            started = time.perf_counter()
            p = points[t]
            e = np.full((len(p), 6), np.nan)
            strong = p[:, 2] >= EXTENT_FLOOR
            e[strong] = object_extents(m.gray, p[strong])
            extent_s += time.perf_counter() - started
            extents.append(e)
        if need_motion:
            _save_ragged(motion_file, before=[f[0] for f in flows], after=[f[1] for f in flows],
                         strength=[f[2] for f in flows], first=[np.array([f[3]]) for f in flows],
                         meta=[np.array([size[0], size[1], 1000 * motion_s / len(flows)])])
        if need_extents:
            _save_ragged(extents_file, extents=extents, meta=[np.array([1000 * extent_s / len(extents)])])
    m = _load_ragged(motion_file)
    e = _load_ragged(extents_file)
    motions = [FrameMotion(None, b, a, s, bool(f[0])) for b, a, s, f in zip(m["before"], m["after"], m["strength"], m["first"],
                                                                            strict=True)]
    width, height, motion_ms = m["meta"][0]
    kind = video_class(name).lower()
    frames = len(points)
    return Video(name, kind, split, read_boxes(root / "boxes" / f"{name}.csv", frames), points, e["extents"],
                 motions, (int(width), int(height)), float(motion_ms), float(e["meta"][0][0]))


def _save_ragged(path: Path, **arrays: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    for k, parts in arrays.items():
        width = int(np.prod(np.asarray(parts[0]).shape[1:])) if parts else 1
        data[k] = np.concatenate([np.asarray(p).reshape(len(p), width) for p in parts]) if parts else np.zeros((0, 1))
        data[f"{k}_splits"] = np.cumsum([len(p) for p in parts])[:-1]
        data[f"{k}_shape"] = np.array(np.asarray(parts[0]).shape[1:] if parts else (), int)
    tmp = path.with_suffix(".partial.npz")
    np.savez(tmp, **data)
    tmp.rename(path)


def _load_ragged(path: Path) -> dict[str, list[np.ndarray]]:
    data = np.load(path)
    out = {}
    for k in data.files:
        if k.endswith(("_splits", "_shape")):
            continue
        if f"{k}_splits" not in data.files:  # the first detection cache's layout: points + splits
            continue
        shape = tuple(int(x) for x in data[f"{k}_shape"])
        out[k] = [p.reshape(-1, *shape) for p in np.split(data[k], data[f"{k}_splits"])]
    if "points" not in out and "points" in data.files:
        out["points"] = np.split(data["points"], data["splits"])
    return out


def run_video(video: Video, options: TrackOptions) -> tuple[Outputs, float, np.ndarray]:
    """Confirmed outputs per frame, tracker seconds, and the camera shifts it used (NaN: textureless)."""
    tracker = PointTracker(options)
    out, shifts, started = [], [], time.perf_counter()
    for points, extents, motion in zip(video.points, video.extents, video.motions, strict=True):
        keep = points[:, 2] >= options.detect_conf
        rows = tracker.update(points[keep][:options.max_points], motion, size=video.size,
                              extents=extents[keep][:options.max_points])
        out.append([(r.track_id, r.u, r.v) for r in rows if r.confirmed and r.detection is not None])
        shifts.append(tracker.shift if tracker.textured else (np.nan, np.nan))
    return out, time.perf_counter() - started, np.array(shifts, float)


def box_matches(boxes: np.ndarray, points: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (box row, point row) with the point inside the (grown) box, nearest the box's centre."""
    if not len(boxes) or not len(points):
        return []
    inside = ((points[None, :, 0] >= boxes[:, None, 1]) & (points[None, :, 0] <= boxes[:, None, 3])
              & (points[None, :, 1] >= boxes[:, None, 2]) & (points[None, :, 1] <= boxes[:, None, 4]))
    centre = (boxes[:, 1:3] + boxes[:, 3:5]) / 2
    d = np.linalg.norm(centre[:, None] - points[None, :, :2], axis=2)
    r, c = linear_sum_assignment(np.where(inside, d, 1e6))
    return [(i, j) for i, j in zip(r, c, strict=True) if inside[i, j]]


def score_video(video: Video, outputs: Outputs, seconds: float) -> Tally:
    """As score_tracks, with 'inside the grown box' for 'within RADIUS'."""
    import motmetrics as mm

    tally = Tally(frames=len(outputs), target_frames=sum(len(b) for b in video.boxes), seconds=seconds, names=[video.name])
    accumulator = mm.MOTAccumulator(auto_id=True)
    first_frame: dict[int, int] = {}
    confirmed_at: dict[int, int] = {}
    frames_of: dict[int, list[tuple[int, bool]]] = {}
    for t, (boxes, rows) in enumerate(zip(video.boxes, outputs, strict=True)):
        points = np.array([(u, v) for _, u, v in rows], float).reshape(-1, 2)
        pairs = box_matches(boxes, points)
        hit_rows = {i for i, _ in pairs}
        tally.hits += len(pairs)
        tally.false += len(points) - len(pairs)
        distances = np.full((len(boxes), len(points)), np.nan)
        for i, j in pairs:
            distances[i, j] = 0.0
        for i, gid in enumerate(boxes[:, 0].astype(int).tolist()):
            first_frame.setdefault(gid, t)
            if i in hit_rows:
                confirmed_at.setdefault(gid, t)
            frames_of.setdefault(gid, []).append((t, i in hit_rows))
            # any point inside the box may match it (motmetrics keeps an ID once matched)
            inside = ((points[:, 0] >= boxes[i, 1]) & (points[:, 0] <= boxes[i, 3])
                      & (points[:, 1] >= boxes[i, 2]) & (points[:, 1] <= boxes[i, 4]))
            distances[i, inside & np.isnan(distances[i])] = 1.0
        accumulator.update(boxes[:, 0].astype(int).tolist(), [r[0] for r in rows], distances)
    for gid, seen in frames_of.items():
        tally.targets += 1
        if gid not in confirmed_at:
            tally.never += 1
            tally.after_frames += len(seen)
            continue
        tally.delays.append(confirmed_at[gid] - first_frame[gid])
        after = [hit for t, hit in seen if t >= confirmed_at[gid]]
        tally.after_frames += len(after)
        tally.after_hits += sum(after)
    tally.accumulators.append(accumulator)
    return tally


def score_video_detector(video: Video, thresholds: Iterable[float], max_points: int = TrackOptions.max_points) -> Tally:
    tally = Tally(frames=len(video.points), target_frames=sum(len(b) for b in video.boxes))
    for c in thresholds:
        hits = false = 0
        for boxes, points in zip(video.boxes, video.points, strict=True):
            kept = points[points[:, 2] >= c][:max_points]
            n = len(box_matches(boxes, kept))
            hits, false = hits + n, false + len(kept) - n
        tally.det_hits[c], tally.det_false[c] = hits, false
    return tally


def camera_speed(shifts: np.ndarray) -> float:
    """Median camera speed (px/frame) over a video's frames with a measured shift (0 when none)."""
    speed = np.linalg.norm(shifts[1:], axis=1)
    speed = speed[np.isfinite(speed)]
    return float(np.median(speed)) if len(speed) else 0.0


def drone_ir_groups(videos: list[Video], options: TrackOptions, pans: dict[str, bool]) -> dict[str, Tally]:
    """Tallies per split x (each class, panning, still, all)."""
    groups: dict[str, Tally] = {}
    for video in videos:
        outputs, seconds, _ = run_video(video, options)
        tally = score_video(video, outputs, seconds)
        for group in (video.kind, "panning camera" if pans[video.name] else "still camera", "all"):
            groups.setdefault(f"{video.split}: {group}", Tally()).add(tally)
    order = [f"{split}: {g}" for split in ("test", "tune")
             for g in (*CLASSES, "panning camera", "still camera", "all")]
    return {k: groups[k] for k in order if k in groups}


def drone_ir_sweep(videos: list[Video], base: TrackOptions, markdown: bool) -> str:
    """Each option varied alone around ``base``, on the tune videos."""
    grid: dict[str, list] = {"conf": [0.1, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9, 0.95], "keep_conf": [0.05, 0.1, 0.3, 0.5],
                             "confirm": [(3, 5), (5, 7), (6, 8), (8, 10)], "max_missed": [3, 8, 12],
                             "gate": [6.0, 12.0, 16.0], "min_move": [1.0, 3.0], "clear_sky": [0, 4, 15, 30],
                             "objects": [False], "border": [0.0, 5.0], "motion": [False]}
    variants: list[tuple[str, TrackOptions]] = [("defaults", base)]
    for name, values in grid.items():
        for value in values:
            if name == "confirm":
                options = replace(base, confirm_hits=value[0], confirm_window=value[1])
            else:
                options = replace(base, **{name: value})
            variants.append((f"{name}={value}", options))
    tune = [v for v in videos if v.split == "tune"]
    lines = []
    for label, options in variants:
        tally = Tally()
        for video in tune:
            outputs, seconds, _ = run_video(video, options)
            tally.add(score_video(video, outputs, seconds))
        lines.append(track_row(label, tally))
    return render_table(TRACK_HEADERS, lines, markdown)


# ---------------------------------------------------------------------------------------------- tables

def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "-"


def track_row(label: str, tally: Tally) -> list[str]:
    mot = mot_summary(tally)
    tf = max(tally.target_frames, 1)
    return [label, fmt(tally.after_hits / max(tally.after_frames, 1)), fmt(tally.hits / tf), fmt(tally.false / tally.frames),
            fmt(float(np.mean(tally.delays)) if tally.delays else math.nan, 1), f"{tally.never}/{tally.targets}",
            f"{int(mot['num_switches'])}", fmt(1000 * mot["num_switches"] / tf, 2), f"{int(mot['num_fragmentations'])}",
            fmt(mot["mota"]), fmt(mot["idf1"]), fmt(1000 * tally.seconds / tally.frames, 2)]


TRACK_HEADERS = ["", "Pd after confirmation", "Pd all frames", "FA/frame", "delay (frames)", "never confirmed",
                 "ID switches", "per 1000 target-frames", "fragmentations", "MOTA", "IDF1", "tracker ms/frame"]


def tracks_by_kind(seqs: list[Detected], run: Callable[[Detected], tuple[Outputs, float]]) -> dict[str, Tally]:
    by_kind: dict[str, Tally] = {}
    for seq in seqs:
        outputs, seconds = run(seq)
        by_kind.setdefault(seq.kind, Tally()).add(score_tracks(seq, outputs, seconds))
    overall = Tally()
    for kind in MOVING:
        if kind in by_kind:
            overall.add(by_kind[kind])
    by_kind["overall (moving)"] = overall
    return by_kind


def detector_table(seqs: list[Detected], thresholds: list[float], tracks: dict[str, Tally], markdown: bool) -> str:
    by_kind: dict[str, Tally] = {}
    for seq in seqs:
        by_kind.setdefault(seq.kind, Tally()).add(score_detector(seq, thresholds))
    overall = Tally()
    for kind in MOVING:
        overall.add(by_kind[kind])
    by_kind["overall (moving)"] = overall
    headers = ["", "frames", "target-frames"]
    for c in thresholds:
        headers += [f"detector@{c:g} Pd", "FA/frame"]
    headers += ["confirmed tracks Pd after confirmation", "FA/frame"]
    lines = []
    for kind, t in by_kind.items():
        line = [kind, str(t.frames), str(t.target_frames)]
        for c in thresholds:
            line += [fmt(t.det_hits[c] / max(t.target_frames, 1)), fmt(t.det_false[c] / t.frames, 2)]
        tr = tracks[kind]
        line += [fmt(tr.after_hits / max(tr.after_frames, 1)), fmt(tr.false / tr.frames)]
        lines.append(line)
    return render_table(headers, lines, markdown)


def sweep(seqs: list[Detected], base: TrackOptions, markdown: bool) -> str:
    """Each option varied alone around ``base``, on the moving kinds (overall) and on hover."""
    variants: list[tuple[str, TrackOptions]] = [("defaults", base)]
    grid = {"conf": [0.3, 0.4, 0.6, 0.7], "keep_conf": [0.1, 0.15, 0.3, base.conf],
            "confirm": [(2, 3), (3, 5), (5, 7), (5, 8)], "max_missed": [2, 3, 8, 12], "gate": [4.0, 6.0, 10.0, 14.0],
            "min_move": [0.0, 1.0, 3.0, 4.0], "accel": [0.2, 1.0], "noise": [0.4, 1.2], "motion": [False]}
    for name, values in grid.items():
        for value in values:
            if name == "confirm":
                options = replace(base, confirm_hits=value[0], confirm_window=value[1])
            elif name == "keep_conf" and value > base.conf:
                continue
            else:
                options = replace(base, **{name: value})
            variants.append((f"{name}={value}", options))
    moving = [s for s in seqs if s.kind in MOVING]
    lines = []
    for label, options in variants:
        tally = tracks_by_kind(moving, lambda s, o=options: run_ours(s, o))["overall (moving)"]
        lines.append(track_row(label, tally))
    return render_table(TRACK_HEADERS, lines, markdown)


# ---------------------------------------------------------------------------------------------- speed

def write_video(folder: Path, path: Path) -> Path:
    frames = sorted((folder / "images").glob("*.png"))
    first = read_image(frames[0])
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (first.shape[1], first.shape[0]))
    for p in frames:
        video.write(cv2.cvtColor(read_image(p), cv2.COLOR_GRAY2BGR))
    video.release()
    return path


def speed_rows(model, folder: Path, out: Path, options: TrackOptions, repeats: int = 3) -> list[list[str]]:
    """End-to-end frames/s of detect on one sequence as a video: at the model's threshold, at the
    tracker's detection threshold, and tracking; runs interleaved, the best of ``repeats`` each."""
    from simple_keypoint.detect import DetectOptions, detect, list_sources

    out.mkdir(parents=True, exist_ok=True)
    video = write_video(folder, out / f"{folder.name}.avi")
    runs = {f"detect, threshold {model.conf:g} (the model's)": DetectOptions(),
            f"detect, threshold {options.detect_conf:g}": DetectOptions(conf=options.detect_conf, max_points=DET_MAX),
            f"track (defaults; detector at {options.detect_conf:g})": DetectOptions(track=options, max_points=DET_MAX)}
    best: dict[str, float] = {}
    frames = 0
    for r in range(repeats):
        for i, (label, det_options) in enumerate(runs.items()):
            target = out / f"run{r}_{i}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            report = detect(model, list_sources(str(video)), target, det_options)
            if report.failures:
                raise SystemExit(f"speed run failed: {report.failures[0]}")
            frames = report.frames
            best[label] = max(best.get(label, 0.0), report.frames_per_second)
    base = best[next(label for label in runs if label.startswith(f"detect, threshold {options.detect_conf:g}"))]
    return [[label, str(frames), fmt(fps, 1), fmt(1000 / fps, 2), f"{100 * (base / fps - 1):+.1f} %"] for label, fps in best.items()]


def memory_row(options: TrackOptions, frames: int = 10_000) -> list[str]:
    """Peak RSS after 1,000 and after ``frames`` frames of the tracker on random clutter and targets."""
    rng = np.random.default_rng(0)
    tracker, peaks = PointTracker(options), []
    for t in range(frames):
        clutter = np.column_stack([rng.uniform(0, 640, (8, 2)), rng.uniform(0.2, 0.9, 8)])
        targets = np.array([[100 + (3 * t) % 400, 200, 0.9], [300, 50 + (2 * t) % 300, 0.8]])
        tracker.update(np.vstack([targets, clutter]), rng.normal(0, 0.5, 2))
        tracker.take_ended()
        if t + 1 in (1000, frames):
            peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return [f"{frames} frames", f"{peaks[0]:.0f} MiB", f"{peaks[1]:.0f} MiB", str(len(tracker.tracks))]


def figure(seq: Detected, folder: Path, options: TrackOptions, path: Path) -> None:
    """The frame of ``seq`` where its confirmed tracks' trails are longest, drawn as ``track`` draws them."""
    from simple_keypoint.detect import Frame, Result
    from simple_keypoint.track import draw_tracks

    tracker, best = PointTracker(options), (0, None)
    for t, (points, motion, extents) in enumerate(zip(seq.points, seq.motions, seq.extents, strict=True)):
        keep = points[:, 2] >= options.detect_conf
        rows = tracker.update(points[keep][:options.max_points], motion, size=seq.size,
                              extents=extents[keep][:options.max_points])
        confirmed = [r for r in rows if r.confirmed and r.detection is not None]
        score = len(confirmed) * 1000 + sum(len(r.trail) for r in confirmed)
        if len(confirmed) >= 2 and score > best[0]:
            best = score, (t, rows)
    if best[1] is None:
        raise SystemExit("no frame with two confirmed tracks to draw")
    t, rows = best[1]
    image = read_image(folder / "images" / f"{t:06d}.png")
    # A 256 x 192 window around the confirmed tracks, enlarged 2x (drawn after enlarging: crisp marks).
    centre = np.mean([(r.u, r.v) for r in rows if r.confirmed], axis=0)
    x0 = int(np.clip(centre[0] - 128, 0, image.shape[1] - 256))
    y0 = int(np.clip(centre[1] - 96, 0, image.shape[0] - 192))
    crop = cv2.resize(image[y0:y0 + 192, x0:x0 + 256], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)

    def moved(u: float, v: float) -> tuple[float, float]:
        return 2 * (u - x0) + 0.5, 2 * (v - y0) + 0.5

    rows = [replace(r, u=moved(r.u, r.v)[0], v=moved(r.u, r.v)[1], trail=[moved(*q) for q in r.trail],
                    detection=None if r.detection is None else (*moved(*r.detection[:2]), r.detection[2])) for r in rows]
    result = Result(Frame(0, t, 0.0, crop), np.zeros((0, 3)), np.zeros((0, 3)), None)
    canvas = draw_tracks(result, rows, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)
    print(f"wrote {path} (frame {t})")


# ---------------------------------------------------------------------------------------------- main

_worker_model = None


def _load_in_worker(root: Path, name: str, split: str, weights: Path, key: str, cache: Path) -> str:
    global _worker_model
    if _worker_model is None and not (cache / key / f"{name}.npz").is_file():  # the model only for detections
        import torch

        from simple_keypoint import load_model

        torch.set_num_threads(1)
        _worker_model = load_model(weights, device="cpu", threads=1)
    load_video(root, name, split, _worker_model, key, cache)
    return name


def drone_ir_report(root: Path, cache: Path, weights: Path, model, key: str, options: TrackOptions,
                    args: argparse.Namespace) -> None:
    """The drone-ir tables: per split, class and camera; the tune videos' sweep with --sweep."""
    splits = drone_ir_splits([p.stem for p in (root / "videos").glob("*.mp4")])
    names = sorted(splits)
    if args.videos or args.tune_videos:
        picked: dict[tuple[str, str], list[str]] = {}
        for name in names:
            picked.setdefault((video_class(name), splits[name]), []).append(name)
        limit = {"test": args.videos, "tune": min(args.videos or 10**6, args.tune_videos or 10**6)}
        names = sorted(n for (_, split), group in picked.items() for n in group[:limit[split] or None])
    started = time.perf_counter()
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            list(pool.map(_load_in_worker, *zip(*[(root, n, splits[n], weights, key, cache) for n in names], strict=True)))
    videos = [load_video(root, n, splits[n], model, key, cache) for n in names]
    pans = {v.name: camera_speed(run_video(v, options)[2]) > PAN_PX for v in videos}
    md = args.markdown
    frames = sum(len(v.points) for v in videos)
    counts = {split: sum(v.split == split for v in videos) for split in ("test", "tune")}
    print(f"drone-ir: {len(videos)} videos ({counts['test']} test, {counts['tune']} tune), {frames} frames, "
          f"{sum(pans.values())} panning (median camera speed above {PAN_PX} px/frame); camera motion "
          f"{np.mean([v.motion_ms for v in videos]):.2f} ms/frame, object extents "
          f"{np.mean([v.extent_ms for v in videos]):.2f} ms/frame (detections down to {EXTENT_FLOOR}); "
          f"loaded in {time.perf_counter() - started:.0f} s\n")
    groups = drone_ir_groups(videos, options, pans)
    detector: dict[str, Tally] = {}
    thresholds = [model.conf, options.conf]
    for video in videos:
        tally = score_video_detector(video, thresholds)
        for group in (video.kind, "panning camera" if pans[video.name] else "still camera", "all"):
            detector.setdefault(f"{video.split}: {group}", Tally()).add(tally)
    headers = ["", "videos", "frames", "target-frames"]
    for c in thresholds:
        headers += [f"detector@{c:g} Pd", "FA/frame"]
    headers += ["confirmed tracks Pd after confirmation", "FA/frame"]
    lines = []
    for group, tr in groups.items():
        t = detector[group]
        line = [group, str(len(tr.names)), str(t.frames), str(t.target_frames)]
        for c in thresholds:
            line += [fmt(t.det_hits[c] / max(t.target_frames, 1)), fmt(t.det_false[c] / t.frames, 2)]
        line += [fmt(tr.after_hits / max(tr.after_frames, 1)), fmt(tr.false / tr.frames)]
        lines.append(line)
    print(f"drone-ir, detector alone and confirmed tracks (a point inside a target's box grown by {GROW:g} px; "
          "one point per box):\n")
    print(render_table(headers, lines, md) + "\n")
    print("drone-ir, confirmed tracks (tracking defaults):\n")
    print(render_table(TRACK_HEADERS, [track_row(g, t) for g, t in groups.items()], md) + "\n")
    if args.sweep:
        print("drone-ir tune videos, each option varied alone:\n")
        print(drone_ir_sweep(videos, options, md) + "\n")

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="heatmap", help="the detector (default: %(default)s, the shipped s model)")
    p.add_argument("--out", default="output/tracking_bench", help="sequences and caches (default: %(default)s)")
    p.add_argument("--frames", type=int, default=Recipe.frames, help="frames per sequence (default: %(default)s)")
    p.add_argument("--per-kind", type=int, default=Recipe.per_kind, help="sequences per kind (default: %(default)s)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--sweep", action="store_true", help="also vary each tracking option around its default")
    p.add_argument("--compare", choices=["norfair"], help="also run norfair on the same detections")
    p.add_argument("--no-speed", action="store_true", help="skip the end-to-end frames/s runs")
    p.add_argument("--figure", default=None, help="also save a frame of crossing_0 with its tracks' trails (png)")
    p.add_argument("--drone-ir", default=str(DATA / "drone-ir"),
                   help="the drone-ir videos and boxes (default: %(default)s); scored when the folder exists")
    p.add_argument("--only", choices=["drone-ir", "pasted"], help="run one of the two benchmarks")
    p.add_argument("--videos", type=int, default=0,
                   help="drone-ir: at most this many videos per class and split, the first by number (0: all)")
    p.add_argument("--jobs", type=int, default=1, help="drone-ir: processes for the first (caching) pass")
    p.add_argument("--tune-videos", type=int, default=0,
                   help="drone-ir: at most this many tune videos per class, the first by number (0: all); the sweep "
                        "runs on them")
    args = p.parse_args(argv)

    import torch

    from simple_keypoint import load_model

    torch.set_num_threads(1)
    out = Path(args.out)
    folders = build(out, Recipe(args.frames, args.per_kind)) if args.only != "drone-ir" else []
    weights = resolve_weights(args.weights)
    model = load_model(weights, device="cpu", threads=1)
    import hashlib

    key = hashlib.sha1(weights.read_bytes()).hexdigest()[:10]
    options = TrackOptions()
    md = args.markdown
    print(f"weights {weights} (threshold {model.conf:g}); tracking defaults: {options}\n")
    if args.only != "pasted" and Path(args.drone_ir).is_dir():
        drone_ir_report(Path(args.drone_ir), out / "drone-ir", weights, model, key, options, args)
    elif args.only == "drone-ir":
        raise SystemExit(f"{args.drone_ir}: no such folder (--drone-ir)")
    if args.only == "drone-ir":
        return 0
    seqs = [detect_sequence(folder, model, key) for folder in folders]

    shift_error = np.concatenate([np.linalg.norm(s.shifts[1:] - s.true_shifts[1:], axis=1) for s in seqs])
    textureless = float(np.mean(~np.isfinite(shift_error)))
    shift_error = shift_error[np.isfinite(shift_error)]
    print(f"Pasted sequences: {len(seqs)} x {args.frames} frames")
    print(f"camera motion (SceneShift): {np.mean([s.shift_ms for s in seqs]):.2f} ms/frame, error median "
          f"{np.median(shift_error):.2f} px, 99th percentile {np.percentile(shift_error, 99):.2f} px, "
          f"textureless {100 * textureless:.1f} % of frames\n")

    ours = tracks_by_kind(seqs, lambda s: run_ours(s, options))
    print("Detector alone and confirmed tracks, per frame (a point within 3 px of a target):\n")
    print(detector_table(seqs, [model.conf, options.conf, options.keep_conf], ours, md) + "\n")
    print("Confirmed tracks (tracking defaults):\n")
    print(render_table(TRACK_HEADERS, [track_row(kind, tally) for kind, tally in ours.items()], md) + "\n")

    hover = [s for s in seqs if s.kind == "hover"]
    rows = [track_row("hover, defaults", tracks_by_kind(hover, lambda s: run_ours(s, options))["hover"]),
            track_row("hover, min_move 0", tracks_by_kind(hover, lambda s: run_ours(s, replace(options, min_move=0)))["hover"])]
    print("Targets that hover still:\n")
    print(render_table(TRACK_HEADERS, rows, md) + "\n")

    moving = [s for s in seqs if s.kind in MOVING]
    rows = [track_row("scipy Kalman + Hungarian, defaults", ours["overall (moving)"]),
            track_row(f"scipy, one threshold {options.conf:g}",
                      tracks_by_kind(moving, lambda s: run_ours(s, replace(options, keep_conf=options.conf)))["overall (moving)"]),
            track_row("scipy, true camera shift", tracks_by_kind(moving, lambda s: run_ours(s, options, True))["overall (moving)"]),
            track_row("scipy, no camera shift",
                      tracks_by_kind(moving, lambda s: run_ours(s, replace(options, motion=False)))["overall (moving)"])]
    if args.compare == "norfair":
        for c in (options.conf, options.keep_conf):
            rows.append(track_row(f"norfair, threshold {c:g}",
                                  tracks_by_kind(moving, lambda s, c=c: run_norfair(s, options, c))["overall (moving)"]))
        for c in (options.conf, options.keep_conf):
            rows.append(track_row(f"norfair + this motion test, threshold {c:g}",
                                  tracks_by_kind(moving, lambda s, c=c: run_norfair(s, options, c, True))["overall (moving)"]))
    print("Trackers on the same detections (moving kinds):\n")
    print(render_table(TRACK_HEADERS, rows, md) + "\n")

    if args.sweep:
        print("Each option varied alone (moving kinds):\n")
        print(sweep(seqs, options, md) + "\n")

    print("Tracker memory (peak RSS of this process):\n")
    print(render_table(["run", "after 1,000", "after all", "tracks alive at the end"], [memory_row(options)], md) + "\n")
    if args.figure:
        figure(next(s for s in seqs if s.name == "crossing_0"), out / "crossing_0", options, Path(args.figure))
    if not args.no_speed:
        folder = next(f for f in folders if f.name.startswith("ground"))
        width = read_image(next((folder / 'images').glob('*.png'))).shape[1]
        print(f"End to end (detect on {folder.name} as a video, {width} px wide, "
              "one model thread):\n")
        rows = speed_rows(model, folder, out / "speed", options)
        print(render_table(["run", "frames", "frames/s", "ms/frame", "vs detect at the same threshold"], rows, md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
