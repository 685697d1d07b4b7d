"""Accuracy of the shipped models beside the top-hat baseline on SIRST test and NUDT-SIRST test, the
target-free check, one object one point, and the leave-one-dataset-out table.

    python -m benchmarks.accuracy                                   # every table (a few minutes)
    python -m benchmarks.accuracy --markdown --json benchmarks/accuracy.json   # what README/docs and the CI test use
    python -m benchmarks.accuracy --quick                           # the rows the CI test re-scores
    python -m benchmarks.accuracy --loo "SIRST only=runs/a/weights/best.pt" "NUDT only=runs/b/weights/best.pt"

Tables:
1. per dataset: each heatmap checkpoint at its stored threshold, and again with plain scores
   (``relative=False``) at a threshold picked on its own validation split by its own false-alarm
   budget; the regression model on single-target images; the top-hat baseline;
2. target-free: false alarms per frame, per megapixel and on the worst frame, on HIT-UAV test
   frames (other objects' boxes blocked) at 640x512 and resized up 2x, on 1280x1024 frames tiled
   5x4 from NUDT-SIRST test images (every target blocked), and on the test sets' target-free area;
3. one object, one point: NUDT-SIRST test mask components >= 40 px that get 0, 1, 2+ points;
4. leave one dataset out (``--loo``): each checkpoint at its stored threshold on both test sets;
5. the top-hat's settings, tuned on the TRAIN splits only (cached in the JSON; ``--retune-tophat``).
No threshold or setting is ever chosen on the data being scored. Everything is deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.tophat import NORMALISATIONS, TopHatDetector, TopHatSettings
from simple_keypoint.backbone import SIZES
from simple_keypoint.checkpoint import CheckpointError, load_checkpoint
from simple_keypoint.dataset import DatasetError, Sample, ScanReport, load_clutter, load_dataset, resized_up
from simple_keypoint.evaluate import FALSE_ALARMS_PER_IMAGE, ImageResult, pick_threshold, predict_all, score
from simple_keypoint.images import standardise
from simple_keypoint.labels import atomic_write
from simple_keypoint.predict import Localizer, load_model
from simple_keypoint.tables import format_cell, render_table
from simple_keypoint.training import validation_samples

ROOT = Path(__file__).resolve().parents[1]
TEST_SETS = {"SIRST test": "data/test", "NUDT-SIRST test": "data/nudt-sirst/test", "drone-ir test": "data/drone-ir/test"}
# Sets made from box-labelled videos on first use (simple_keypoint.convert boxes; data/README.md): folder -> part.
BOX_FRAMES = {"data/drone-ir/test": "test", "data/drone-ir/val": "val", "data/drone-ir/train": "train"}
BOX_FRAME_STEP = 30
TRAIN_SETS = {"SIRST train": "data/train", "NUDT-SIRST train": "data/nudt-sirst/train"}
CLUTTER_TEST = "data/hit-uav/test"
EXTENDED_SET = "NUDT-SIRST test"  # where one object, one point is checked
SHIPPED_HEATMAPS = ("weights/heatmap_n.pt", "weights/heatmap.pt")
SHIPPED_REGRESSION = "weights/regression.pt"
DEFAULT_JSON = "benchmarks/accuracy.json"
COLUMNS = ["images", "targets", "AP@3px", "Pd@3px", "FA/img@3px", "FA/MPx@3px", "err_mean@3px", "Pd@1px"]
TARGET_FREE_COLUMNS = ["frames", "MPx", "FA/frame", "FA/MPx", "worst", "worst frame"]
ONE_POINT_COLUMNS = ["components", "0 points", "1 point", "2+ points", "share with 1"]
BLOCK_HALF = 8  # a 17x17 box around each labelled point is target, not clutter
EXTENDED_MIN_PIXELS = 40
POINT_REACH = 2  # a point counts for a component inside its mask grown by this many pixels
TILES = (5, 4)  # NUDT-SIRST's 256x256 images, 5 across and 4 down: a 1280x1024 frame
SEED = 0
# The top-hat grid searched on the training splits (each setting's range, the recipe's and around it).
TOPHAT_GRID = {"element": (5, 7, 9, 11, 15), "blur": (0, 3), "norm": NORMALISATIONS, "window": (3, 5, 7, 9),
               "max_points": (10, 20)}

SECTIONS = ("weights", "per_dataset", "one_point", "tophat", "target_free", "loo")


class BenchmarkError(RuntimeError):
    """A checkpoint or dataset the benchmark cannot use (the message names it)."""


@dataclass
class Scored:
    """A model as scored: its row name, the localizer at its threshold, and where it came from."""

    name: str
    model: Localizer | TopHatDetector
    path: Path | None = None
    checkpoint: dict[str, Any] | None = None


def resolve(path: str | os.PathLike) -> Path:
    """A path as given, or relative to the repository when it does not exist from here."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else ROOT / path


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: which weights a JSON's figures belong to."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_whole(reader: Callable[..., tuple[list[Sample], ScanReport]], folder: str) -> list[Sample]:
    """Every image of ``folder`` read by ``reader`` (load_dataset, load_clutter): a benchmark scores a
    split whole, so a missing folder or any unreadable file is a BenchmarkError naming it."""
    try:
        samples, report = reader(resolve(folder), progress=False)
    except DatasetError as e:
        raise BenchmarkError(str(e)) from None
    if report.failures or not samples:
        raise BenchmarkError("\n".join(report.lines()))
    return samples


def ensure_box_frames(folder: str) -> None:
    """Make a drone-ir split's frames, points and masks from the stored videos if they are not there yet."""
    if folder in BOX_FRAMES and not (resolve(folder) / "labels").is_dir():
        from simple_keypoint.convert import from_boxes

        root = resolve(folder).parent
        if from_boxes(root, resolve(folder), BOX_FRAME_STEP, BOX_FRAMES[folder], overwrite=False, progress=False):
            raise BenchmarkError(f"{folder}: could not be made from {root}/videos and {root}/boxes")


def load_sets(folders: Mapping[str, str]) -> dict[str, list[Sample]]:
    """Each named labelled folder, read whole."""
    for folder in folders.values():
        ensure_box_frames(folder)
    return {name: read_whole(load_dataset, folder) for name, folder in folders.items()}


def model_size(checkpoint: Mapping[str, Any]) -> str:
    """The checkpoint's named size (n, s), or its widths when they are no named size."""
    widths = tuple(checkpoint.get("model_args", {}).get("widths", ()))
    named = [name for name, w in SIZES.items() if tuple(w) == widths]
    return named[0] if named else "widths " + "-".join(map(str, widths))


def load_scored(path: str | os.PathLike, label: str | None = None) -> Scored:
    """A checkpoint as a :class:`Scored` at its stored threshold, named ``label`` (default: its method,
    size and file). The faster backend load_model picks runs it, here and in the CI test alike."""
    path = resolve(path)
    try:
        checkpoint = load_checkpoint(path)
        model = load_model(path, device="cpu")
    except CheckpointError as e:
        raise BenchmarkError(str(e)) from None
    if label is None:
        size = f" {model_size(checkpoint)}" if model.method == "heatmap" else ""
        single = ", single-target images" if model.spec.max_targets == 1 else ""
        label = f"{model.method}{size} ({path.name}{single})"
    threshold = f", threshold {model.conf:.2f}" if model.spec.picks_threshold else ""
    return Scored(f"{label}{threshold}" if threshold else label, model, path, checkpoint)


def regression_subset(model: Localizer, samples: list[Sample]) -> list[Sample]:
    """The images a method can be scored on (the regression model: single-target images)."""
    return [s for s in samples if model.spec.accepts(len(s.points))]


def score_on_sets(entry: Scored, test_sets: Mapping[str, list[Sample]]
                  ) -> tuple[dict[str, dict[str, float]], dict[str, list[ImageResult]]]:
    """``entry`` scored at its threshold on every set (per set: metrics, and the raw results at threshold 0)."""
    metrics, results = {}, {}
    for name, samples in test_sets.items():
        usable = regression_subset(entry.model, samples) if isinstance(entry.model, Localizer) else samples
        results[name] = predict_all(entry.model, usable)
        metrics[name] = score(results[name], entry.model.conf)
    return metrics, results


def false_alarm_budget(checkpoint: Mapping[str, Any] | None) -> dict[str, float]:
    """The keyword arguments of pick_threshold that a checkpoint's training used: its
    ``--max-false-per-mpx`` if it set one, else the default per image."""
    per_mpx = (checkpoint or {}).get("train_args", {}).get("max_false_per_mpx")
    return {"max_false_per_mpx": float(per_mpx)} if per_mpx is not None else {"max_false_per_image": FALSE_ALARMS_PER_IMAGE}


def budget_label(budget: Mapping[str, float]) -> str:
    return f"<= {budget['max_false_per_mpx']:g} FA/MPx" if "max_false_per_mpx" in budget else \
        f"<= {budget['max_false_per_image']:g} FA/img"


def with_repo_paths(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings whose dataset folders (``data``, ``val``, ``clutter``) are found from here."""
    out = dict(settings)
    for key in ("data", "val", "clutter"):
        value = out.get(key)
        if isinstance(value, (str, os.PathLike)) and value:
            out[key] = str(resolve(value))
        elif isinstance(value, (list, tuple)):
            out[key] = [str(resolve(v)) for v in value]
    return out


def plain_scores(entry: Scored) -> Scored:
    """The heatmap checkpoint with plain scores (``relative=False``), at a threshold picked on its own
    validation split (clutter frames' split included) by its own false-alarm budget."""
    model = load_model(entry.path, device="cpu")
    model.relative = False
    try:
        val = validation_samples(with_repo_paths(entry.checkpoint["train_args"]), method=model.spec)
    except (DatasetError, KeyError) as e:
        raise BenchmarkError(f"{entry.path}: its validation split cannot be read ({e})") from None
    model.conf = pick_threshold(predict_all(model, val), **false_alarm_budget(entry.checkpoint))
    label = entry.name.split(", threshold")[0]
    return Scored(f"{label}, plain scores, threshold {model.conf:.2f}", model, entry.path, entry.checkpoint)


# ---------------------------------------------------------------- one object, one point

def target_masks(sample: Sample) -> np.ndarray | None:
    """The sample's ``masks/<stem>.png`` as a bool array, or None where it has none of its size."""
    path = Path(sample.source) / "masks" / (Path(sample.name).stem + ".png")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    return mask > 0 if mask is not None and mask.shape == sample.image.shape else None


def points_per_component(samples: list[Sample], results: list[ImageResult], conf: float,
                         min_pixels: int = EXTENDED_MIN_PIXELS) -> dict[str, float]:
    """How many 8-connected mask components of >= ``min_pixels`` px get 0, 1 and 2+ points scoring
    >= ``conf`` inside the component grown by POINT_REACH px."""
    counts = [0, 0, 0]
    grow = np.ones((2 * POINT_REACH + 1,) * 2, np.uint8)
    by_name = {r.name: r for r in results}
    for sample in samples:
        mask = target_masks(sample)
        if mask is None or sample.name not in by_name:
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        pred = by_name[sample.name].pred
        pred = pred[pred[:, 2] >= conf]
        rows = pred[:, 1].round().astype(int).clip(0, mask.shape[0] - 1)
        cols = pred[:, 0].round().astype(int).clip(0, mask.shape[1] - 1)
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < min_pixels:
                continue
            reach = cv2.dilate((labels == i).astype(np.uint8), grow) > 0
            counts[min(int(reach[rows, cols].sum()), 2)] += 1
    total = sum(counts)
    return {"components": total, "0 points": counts[0], "1 point": counts[1], "2+ points": counts[2],
            "share with 1": counts[1] / total if total else float("nan")}


# ---------------------------------------------------------------- target-free frames

def targets_blocked(sample: Sample) -> np.ndarray:
    """Every target's pixels: a 17x17 box around each labelled point, and its mask grown by POINT_REACH
    px where the set has masks (an extra point on a large target is item 5's count, not clutter)."""
    h, w = sample.image.shape
    blocked = np.zeros((h, w), bool) if sample.blocked is None else sample.blocked.copy()
    for u, v in np.round(sample.points).astype(int):
        blocked[max(v - BLOCK_HALF, 0):v + BLOCK_HALF + 1, max(u - BLOCK_HALF, 0):u + BLOCK_HALF + 1] = True
    mask = target_masks(sample)
    if mask is not None:
        blocked |= cv2.dilate(mask.astype(np.uint8), np.ones((2 * POINT_REACH + 1,) * 2, np.uint8)) > 0
    return blocked


def target_free(samples: list[Sample]) -> list[Sample]:
    """The frames with every target blocked and no point left to find."""
    return [replace(s, points=np.zeros((0, 2)), blocked=targets_blocked(s)) for s in samples]


def tiled(samples: list[Sample], tiles: tuple[int, int] = TILES, seed: int = SEED) -> list[Sample]:
    """Large target-free frames: images of one size in a fixed random order, ``tiles`` (across,
    down) to a frame, every target blocked; the frame standardised as a whole."""
    across, down = tiles
    shape = samples[0].image.shape
    same = [s for s in samples if s.image.shape == shape]
    order = np.random.default_rng(seed).permutation(len(same))
    per_frame = across * down
    frames = []
    for f in range(len(same) // per_frame):
        group = [same[i] for i in order[f * per_frame:(f + 1) * per_frame]]
        rows = [np.hstack([g.image for g in group[r * across:(r + 1) * across]]) for r in range(down)]
        blocked = [np.hstack([targets_blocked(g) for g in group[r * across:(r + 1) * across]]) for r in range(down)]
        frames.append(Sample(f"tiled frame {f}", standardise(np.vstack(rows)), np.zeros((0, 2)), np.vstack(blocked),
                             group[0].source))
    return frames


def false_alarm_summary(results: list[ImageResult], conf: float) -> dict[str, float]:
    """False alarms (every point >= ``conf`` on a target-free frame's unblocked pixels) per frame,
    per megapixel, and on the worst frame."""
    counts = [int((r.pred[:, 2] >= conf).sum()) for r in results]
    megapixels = sum(r.pixels for r in results) / 1e6
    worst = int(np.argmax(counts)) if counts else None
    return {"frames": len(results), "MPx": megapixels, "FA/frame": float(np.mean(counts)) if counts else float("nan"),
            "FA/MPx": sum(counts) / megapixels if megapixels else float("nan"),
            "worst": counts[worst] if counts else 0, "worst frame": results[worst].name if counts else ""}


def target_free_checks(test_sets: Mapping[str, list[Sample]]) -> dict[str, list[Sample]]:
    """The target-free frame sets, by name (HIT-UAV test's other objects blocked)."""
    clutter = read_whole(load_clutter, CLUTTER_TEST)
    h, w = clutter[0].image.shape
    checks = {f"HIT-UAV test {w}x{h}": clutter, f"HIT-UAV test x2 ({2 * w}x{2 * h})": resized_up(clutter)}
    nudt = tiled(test_sets["NUDT-SIRST test"])
    fh, fw = nudt[0].image.shape
    checks[f"NUDT-SIRST test tiled {TILES[0]}x{TILES[1]} ({fw}x{fh})"] = nudt
    for name, samples in test_sets.items():
        checks[f"{name}, target-free area"] = target_free(samples)
    return checks


# ---------------------------------------------------------------- the top-hat baseline

def tune_tophat(train_sets: Mapping[str, list[Sample]], grid: Mapping[str, Sequence] = TOPHAT_GRID) -> dict[str, Any]:
    """Every setting of ``grid`` scored by AP@3px on each training split, averaged over the splits;
    the best (ties: the first in grid order). Returns its settings and train APs."""
    best: tuple[float, dict[str, Any]] | None = None
    for values in itertools.product(*grid.values()):
        settings = TopHatSettings(**dict(zip(grid.keys(), values, strict=True)))
        detector = TopHatDetector(settings)
        aps = {name: score(predict_all(detector, samples), 0.0)["AP@3px"] for name, samples in train_sets.items()}
        mean = float(np.mean(list(aps.values())))
        if best is None or mean > best[0]:
            best = mean, {"settings": settings.as_dict(), "train AP@3px": aps, "mean train AP@3px": mean}
    assert best is not None
    best[1]["grid"] = {k: list(v) for k, v in grid.items()}
    return best[1]


def tophat_entry(tuned: Mapping[str, Any], train_sets: Mapping[str, list[Sample]],
                 budget: Mapping[str, float]) -> tuple[Scored, dict[str, Any]]:
    """The tuned top-hat at a threshold picked on the pooled training splits by ``budget``."""
    detector = TopHatDetector(TopHatSettings(**tuned["settings"]))
    pooled = [s for samples in train_sets.values() for s in samples]
    detector.conf = pick_threshold(predict_all(detector, pooled), **budget)
    record = {**tuned, "threshold": detector.conf, "threshold budget": budget_label(budget)}
    return Scored(f"{detector.settings.label()}, threshold {detector.conf:.2f}", detector), record


def cached_tophat(path: Path | None) -> dict[str, Any] | None:
    """The top-hat tuning stored in a previous JSON, if it searched the same grid."""
    if path is None or not path.is_file():
        return None
    try:
        tuned = json.loads(path.read_text(encoding="utf-8")).get("tophat")
    except (OSError, ValueError):
        return None
    grid = {k: list(v) for k, v in TOPHAT_GRID.items()}
    return tuned if isinstance(tuned, dict) and tuned.get("grid") == grid and "settings" in tuned else None


# ---------------------------------------------------------------- the benchmark

def shipped_figures(heatmaps: Sequence[str | os.PathLike], regression: str | os.PathLike | None,
                    test_sets: Mapping[str, list[Sample]], tophat: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rows tests/test_shipped_weights.py re-scores: each heatmap checkpoint at its stored threshold
    and the regression model on every test set, the top-hat at a stored setting and threshold
    (``tophat``: the JSON's record), and one object, one point at each heatmap's threshold.
    Returns ``{"per_dataset": {set: {row: metrics}}, "one_point": {row: counts}, "weights": {path: sha256}}``."""
    entries = [load_scored(p) for p in heatmaps]
    if regression is not None:
        entries.append(load_scored(regression))
    if tophat is not None:
        detector = TopHatDetector(TopHatSettings(**tophat["settings"]), conf=float(tophat["threshold"]))
        entries.append(Scored(f"{detector.settings.label()}, threshold {detector.conf:.2f}", detector))
    out: dict[str, Any] = {"per_dataset": {name: {} for name in test_sets}, "one_point": {},
                           "weights": {str(e.path.relative_to(ROOT) if e.path.is_relative_to(ROOT) else e.path): file_digest(e.path)
                                       for e in entries if e.path is not None}}
    for entry in entries:
        add_rows(out, entry, test_sets)
    return out


def add_rows(out: dict[str, Any], entry: Scored, test_sets: Mapping[str, list[Sample]]) -> None:
    """``entry``'s per-dataset rows, and its one-point counts where it may give several points."""
    metrics, results = score_on_sets(entry, test_sets)
    for name, row in metrics.items():
        out["per_dataset"][name][entry.name] = row
    if EXTENDED_SET in test_sets and (not isinstance(entry.model, Localizer) or entry.model.spec.picks_threshold):
        out["one_point"][entry.name] = points_per_component(test_sets[EXTENDED_SET], results[EXTENDED_SET], entry.model.conf)


def run(heatmaps: Sequence[str | os.PathLike], regression: str | os.PathLike | None, loo: Sequence[tuple[str, str]],
        quick: bool, cache: Path | None, retune: bool, log: Any = print) -> dict[str, Any]:
    """Every table (``quick``: only those :func:`shipped_figures` makes, and the top-hat from the cache)."""
    test_sets = load_sets(TEST_SETS)
    train_sets = load_sets(TRAIN_SETS)
    tuned = None if retune else cached_tophat(cache)
    if tuned is None:
        log(f"tuning the top-hat on {', '.join(TRAIN_SETS)} ({int(np.prod([len(v) for v in TOPHAT_GRID.values()]))} settings)")
        tuned = tune_tophat(train_sets)
    models = [load_scored(p) for p in heatmaps]
    default = next((m for m in models if m.path.name == "heatmap.pt"), models[-1] if models else None)
    budget = false_alarm_budget(default.checkpoint if default else None)
    tophat, tophat_record = tophat_entry(tuned, train_sets, budget)
    out = shipped_figures(heatmaps, regression, test_sets, tophat_record)
    out["tophat"] = tophat_record
    if quick:
        return out
    plain = []
    for entry in models:
        log(f"{entry.name}: re-picking a plain-score threshold on its validation split")
        plain.append(plain_scores(entry))
        add_rows(out, plain[-1], test_sets)
    follows = {p.name: m.name for m, p in zip(models, plain, strict=True)}
    out["per_dataset"] = {data: after_their_models(rows, follows) for data, rows in out["per_dataset"].items()}
    out["one_point"] = after_their_models(out["one_point"], follows)
    out["target_free"] = {}
    checks = target_free_checks(test_sets)
    for entry in [*models, *plain, tophat]:
        log(f"{entry.name}: target-free frames")
        out["target_free"][entry.name] = {name: false_alarm_summary(predict_all(entry.model, frames), entry.model.conf)
                                          for name, frames in checks.items()}
    out["loo"] = {name: {} for name in test_sets}
    for label, path in loo:
        entry = load_scored(path, label)
        for name, row in score_on_sets(entry, test_sets)[0].items():
            out["loo"][name][entry.name] = row
    return out


def after_their_models(rows: Mapping[str, Any], follows: Mapping[str, str]) -> dict[str, Any]:
    """``rows`` reordered so that each row named in ``follows`` comes right after the row it names."""
    out = {}
    for name, row in rows.items():
        if name not in follows:
            out[name] = row
            out.update({extra: rows[extra] for extra, base in follows.items() if base == name and extra in rows})
    return {**out, **rows}  # rows whose model is not among them keep their place at the end


def dataset_table(rows: Mapping[str, Mapping[str, Mapping[str, float]]], markdown: bool) -> str:
    """One line per (model, data set), the data set named in its own column."""
    lines = [[model, data, *(format_cell(row.get(c, float("nan"))) for c in COLUMNS)]
             for data, models in rows.items() for model, row in models.items()]
    return render_table(["model", "data", *COLUMNS], lines, markdown)


def report(out: Mapping[str, Any], markdown: bool) -> str:
    """Every table in ``out``, with a heading each."""
    parts = ["Per data set (points matched within 3 px; Pd@1px within 1 px; thresholds never picked on the data scored)",
             dataset_table(out["per_dataset"], markdown)]
    tophat = out.get("tophat")
    if tophat:
        parts.append(f"top-hat settings tuned on {', '.join(tophat['train AP@3px'])} (train AP@3px "
                     + ", ".join(f"{k} {v:.3f}" for k, v in tophat["train AP@3px"].items())
                     + f"), threshold on the pooled training splits at {tophat['threshold budget']}")
    if "target_free" in out:
        lines = [[model, check, *(format_cell(row[c]) for c in TARGET_FREE_COLUMNS)]
                 for model, checks in out["target_free"].items() for check, row in checks.items()]
        parts += ["Target-free frames (false alarms at each model's threshold; blocked pixels not counted)",
                  render_table(["model", "target-free frames", *TARGET_FREE_COLUMNS], lines, markdown)]
    lines = [[model, *(format_cell(row[c]) for c in ONE_POINT_COLUMNS)] for model, row in out["one_point"].items()]
    parts += [f"One object, one point: {EXTENDED_SET} mask components >= {EXTENDED_MIN_PIXELS} px "
              f"(a point counts inside the component grown by {POINT_REACH} px)",
              render_table(["model", *ONE_POINT_COLUMNS], lines, markdown)]
    if any(out.get("loo", {}).values()):
        parts += ["Leave one data set out (each checkpoint at its stored threshold)", dataset_table(out["loo"], markdown)]
    return "\n\n".join(parts)


def merged(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` with every section of ``new`` laid over it two levels deep (a --quick run keeps the
    full run's other rows)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in old.items()}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key in ("per_dataset", "loo"):
            for inner, rows in value.items():
                out[key][inner] = {**out[key].get(inner, {}), **rows}
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and key in ("one_point", "weights"):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def previous_run(path: Path) -> dict[str, Any]:
    """The sections a previous run wrote to ``path`` (nothing if it is missing, unreadable or of another layout)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in SECTIONS} if isinstance(data, dict) else {}


def parse_loo(items: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise BenchmarkError(f"--loo {item!r}: expected LABEL=PATH, e.g. \"SIRST only=runs/x/weights/best.pt\"")
        pairs.append((label.strip(), path.strip()))
    return pairs


def write_json(path: Path, data: object) -> bool:
    """``data`` written atomically as JSON; False (said in one line) if the file cannot be written."""
    try:
        atomic_write(path, json.dumps(data, indent=2).encode())
    except OSError as e:
        print(f"error: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--heatmap", nargs="+", default=[path for path in SHIPPED_HEATMAPS if resolve(path).is_file()],
                   help="heatmap checkpoints to score (the default: the shipped n and s that exist)")
    p.add_argument("--regression", default=SHIPPED_REGRESSION, help="regression checkpoint ('' for none)")
    p.add_argument("--loo", nargs="*", default=[], metavar="LABEL=PATH",
                   help="leave-one-dataset-out checkpoints, each scored on both test sets")
    p.add_argument("--quick", action="store_true",
                   help="only the rows the CI test re-scores (no plain-score rows, target-free check or --loo)")
    p.add_argument("--retune-tophat", action="store_true",
                   help=f"search the top-hat grid again (otherwise the result cached in --json, else {DEFAULT_JSON})")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (for README.md / docs)")
    p.add_argument("--json", type=Path, default=None,
                   help=f"write every row here (with --quick: merged into what the file holds); {DEFAULT_JSON} is what "
                        "tests/test_shipped_weights.py checks")
    args = p.parse_args(argv)
    try:
        loo = parse_loo(args.loo)
        cache = args.json or resolve(DEFAULT_JSON)
        out = run(args.heatmap, args.regression or None, loo, args.quick, cache, args.retune_tophat,
                  log=lambda line: print(line, file=sys.stderr))
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report(out, args.markdown))
    if args.json:
        old = previous_run(args.json) if args.quick else {}
        if not write_json(args.json, merged(old, out)):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
