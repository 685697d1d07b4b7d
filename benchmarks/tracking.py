"""Point tracking on sequences made from real frames: the detector alone against confirmed tracks.

    python -m benchmarks.tracking --markdown                 # build (once), detect (cached), track, print
    python -m benchmarks.tracking --sweep                    # each tracking option varied around its default
    python -m benchmarks.tracking --compare norfair          # also norfair (pip install --no-deps norfair filterpy rich)
    python -m benchmarks.tracking --no-speed                 # skip the end-to-end frames/s runs

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

from simple_keypoint.dataset import Patch, cut_patches, load_dataset
from simple_keypoint.images import find_images, read_image, to_gray
from simple_keypoint.labels import pixel_to_normalised, write_labels
from simple_keypoint.paths import repo_root, resolve_weights
from simple_keypoint.tables import render_table
from simple_keypoint.tracking import PointTracker, SceneShift, TrackOptions

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
    shifts: np.ndarray  # (T, 2) by SceneShift
    true_shifts: np.ndarray
    shift_ms: float  # SceneShift per frame
    size: tuple[int, int]  # width, height


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
    shifts, spent, shift = [], 0.0, SceneShift()  # not cached: cheap, and what is being measured
    for path in paths:
        image = read_image(path)
        started = time.perf_counter()
        shifts.append(shift(image))
        spent += time.perf_counter() - started
    shifts, shift_ms = np.array(shifts), 1000 * spent / len(paths)
    return Detected(folder.name, folder.name.rsplit("_", 1)[0], read_truth(folder, len(paths)), points, shifts,
                    np.load(folder / "camera_shift.npy"), shift_ms, (image.shape[1], image.shape[0]))


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
    shifts = seq.true_shifts if true_shift else seq.shifts
    for points, shift in zip(seq.points, shifts, strict=True):
        rows = tracker.update(points[points[:, 2] >= options.detect_conf][:options.max_points], shift, size=seq.size)
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
    for step, (points, shift) in enumerate(zip(seq.points, seq.shifts, strict=True)):
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
    for t, (points, shift) in enumerate(zip(seq.points, seq.shifts, strict=True)):
        rows = tracker.update(points[points[:, 2] >= options.detect_conf][:options.max_points], shift, size=seq.size)
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
    args = p.parse_args(argv)

    import torch

    from simple_keypoint.predict import load_model

    torch.set_num_threads(1)
    out = Path(args.out)
    folders = build(out, Recipe(args.frames, args.per_kind))
    weights = resolve_weights(args.weights)
    model = load_model(weights, device="cpu", threads=1)
    import hashlib

    key = hashlib.sha1(weights.read_bytes()).hexdigest()[:10]
    seqs = [detect_sequence(folder, model, key) for folder in folders]
    options = TrackOptions()
    md = args.markdown

    shift_error = np.concatenate([np.linalg.norm(s.shifts[1:] - s.true_shifts[1:], axis=1) for s in seqs])
    print(f"weights {weights} (threshold {model.conf:g}); {len(seqs)} sequences x {args.frames} frames; "
          f"tracking defaults: {options}")
    print(f"scene shift (phase correlation): {np.mean([s.shift_ms for s in seqs]):.2f} ms/frame, error median "
          f"{np.median(shift_error):.2f} px, 99th percentile {np.percentile(shift_error, 99):.2f} px\n")

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
