"""Scoring point predictions the way the infrared small-target field does.

A prediction matches a labelled point within ``radius`` pixels (original image pixels),
one-to-one, greedily in score order (the IRSTD centroid rule applied to points). From the
matches: Pd (found targets / targets), false alarms per image and per megapixel, AP (area under
precision-recall over all predictions ranked by score, all-point interpolation) and the
localisation error of matches. Used by training's validation, by this CLI and by the benchmarks.

    simple-keypoint evaluate --weights heatmap_n --data data/test       # or python -m simple_keypoint.evaluate
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from simple_keypoint.tables import format_table

if TYPE_CHECKING:
    from simple_keypoint.dataset import Sample
    from simple_keypoint.predict import Localizer

RADII = (1.0, 2.0, 3.0)
# The false-alarm budget that picks a model's default threshold on its validation split: large
# enough that one stray false alarm on a small split does not set it (docs/measurements.md).
FALSE_ALARMS_PER_IMAGE = 0.1


def match(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching, best score first.

    ``pred`` (N, 3) ``(u, v, score)``, ``truth`` (M, 2). Returns, for each prediction in the
    order given, the index of its matched truth point or -1, and the distances (nan if unmatched).
    """
    matched = np.full(len(pred), -1)
    dist = np.full(len(pred), np.nan)
    if len(pred) == 0 or len(truth) == 0:
        return matched, dist
    d = np.linalg.norm(pred[:, None, :2] - truth[None, :, :2], axis=2)
    free = np.ones(len(truth), bool)
    for i in np.argsort(-pred[:, 2], kind="stable"):
        candidates = np.where(free & (d[i] <= radius))[0]
        if len(candidates):
            j = candidates[np.argmin(d[i, candidates])]
            matched[i], dist[i], free[j] = j, d[i, j], False
    return matched, dist


def average_precision(scores: np.ndarray, is_true: np.ndarray, n_truth: int) -> float:
    """All-point interpolated AP over predictions ranked by score."""
    if n_truth == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_true[order])
    fp = np.cumsum(~is_true[order])
    recall = np.concatenate([[0.0], tp / n_truth])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the interpolation envelope
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


@dataclass
class ImageResult:
    name: str
    truth: np.ndarray  # (M, 2)
    pred: np.ndarray  # (N, 3)
    pixels: int


def score(results: list[ImageResult], conf: float) -> dict[str, float]:
    """All metrics for a list of per-image results. Pd and false alarms count predictions >= conf;
    AP ranks all predictions, whatever their score.

    One matching per image and radius serves both: matching is greedy, best score first, so the
    predictions >= conf are matched first and exactly as they would be on their own.
    """
    out: dict[str, float] = {"images": len(results), "targets": int(sum(len(r.truth) for r in results))}
    megapixels = sum(r.pixels for r in results) / 1e6
    scores = np.concatenate([r.pred[:, 2] for r in results] + [np.zeros(0)])
    kept = scores >= conf
    for radius in RADII:
        tag = f"{radius:g}px"
        matches = [match(r.pred, r.truth, radius) for r in results]
        is_true = np.concatenate([m >= 0 for m, _ in matches] + [np.zeros(0, bool)])
        dist = np.concatenate([d for _, d in matches] + [np.zeros(0)])
        errors_px = dist[is_true & kept]
        false = int((~is_true & kept).sum())
        out[f"AP@{tag}"] = average_precision(scores, is_true, out["targets"])
        out[f"Pd@{tag}"] = len(errors_px) / out["targets"] if out["targets"] else float("nan")
        out[f"FA/img@{tag}"] = false / max(len(results), 1)
        out[f"FA/MPx@{tag}"] = false / megapixels if megapixels else float("nan")
        out[f"err_mean@{tag}"] = float(errors_px.mean()) if len(errors_px) else float("nan")
        out[f"err_median@{tag}"] = float(np.median(errors_px)) if len(errors_px) else float("nan")
    return out


def pick_threshold(results: list[ImageResult], max_false_per_image: float = FALSE_ALARMS_PER_IMAGE,
                   radius: float = 3.0, max_false_per_mpx: float | None = None) -> float:
    """The lowest score threshold whose false alarms per image (or, if ``max_false_per_mpx`` is
    given, per megapixel: the budget that holds for frames of any size) stay within the limit (max Pd).

    Meant for a validation split; never for the data the final numbers are reported on. As in
    :func:`score`, one matching at threshold 0 tells which predictions are false at every threshold.
    """
    scores = np.concatenate([r.pred[:, 2] for r in results] + [np.zeros(0)])
    is_false = np.concatenate([match(r.pred, r.truth, radius)[0] < 0 for r in results] + [np.zeros(0, bool)])
    candidates = np.unique(np.append(scores, 1.0))  # ascending: the first allowed one detects the most
    false_scores = np.sort(scores[is_false])
    false_at = len(false_scores) - np.searchsorted(false_scores, candidates, side="left")  # false alarms >= each
    if max_false_per_mpx is None:
        allowed = false_at / max(len(results), 1) <= max_false_per_image
    else:
        allowed = false_at / max(sum(r.pixels for r in results) / 1e6, 1e-12) <= max_false_per_mpx
    return float(candidates[np.argmax(allowed)]) if allowed.any() else 1.0


def predict_all(localizer: Localizer, samples: list[Sample], conf: float = 0.0,
                progress: bool = False) -> list[ImageResult]:
    """Run a model on loaded samples at a low threshold (AP needs the low-score predictions too)."""
    results = []
    for s in tqdm(samples, desc="evaluating", disable=not progress, leave=False):
        pred = localizer.predict_standardised(s.image, conf=conf)
        # Blocked pixels (other objects in a clutter frame) are neither hit nor false alarm, nor area.
        pixels = s.image.size if s.blocked is None else int(np.count_nonzero(~s.blocked))
        results.append(ImageResult(s.name, s.points, s.unblocked(pred), pixels))
    return results


MAIN_COLUMNS = ["images", "targets", "AP@3px", "Pd@3px", "FA/img@3px", "FA/MPx@3px", "err_mean@3px",
                "err_median@3px", "Pd@1px", "Pd@2px", "AP@1px", "AP@2px"]


def write_per_image_csv(path: Path, results: list[ImageResult], conf: float, radius: float = 3.0) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "targets", "predictions", "found", "false_alarms", "mean_error_px"])
        for r in results:
            kept = r.pred[r.pred[:, 2] >= conf]
            m, d = match(kept, r.truth, radius)
            err = float(np.nanmean(d)) if (m >= 0).any() else ""
            w.writerow([r.name, len(r.truth), len(kept), int((m >= 0).sum()), int((m < 0).sum()), err])


def make_parser() -> argparse.ArgumentParser:
    """The evaluate command line."""
    from simple_keypoint.options import FRACTION, HelpFormatter, Parser, add_weights_option

    p = Parser(prog="simple-keypoint evaluate", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    add_weights_option(p)
    p.add_argument("--data", nargs="+", action="extend", default=None,
                   help="dataset folder(s) with images/ and labels/ (repeatable; default: data/test, from the current "
                        "folder or else the checkout)")
    p.add_argument("--conf", type=FRACTION, default=None, help="threshold for Pd/false alarms, 0 to 1 (default: the checkpoint's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: onnxruntime on a CPU when installed (a .pt is exported once and cached), else PyTorch")
    p.add_argument("--json", type=Path, help="also write all metrics to this JSON file")
    p.add_argument("--per-image", type=Path, help="write a per-image CSV here (one file per dataset, suffixed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _uncomputable_as(metrics: dict[str, Any], missing: object) -> dict[str, Any]:
    """``metrics`` with each figure that cannot be computed (NaN) replaced by ``missing``."""
    return {k: missing if isinstance(v, float) and not np.isfinite(v) else v for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    from simple_keypoint.checkpoint import CheckpointError
    from simple_keypoint.dataset import DatasetError, load_dataset
    from simple_keypoint.labels import atomic_write
    from simple_keypoint.paths import DefaultPathError, default_path, resolve_weights
    from simple_keypoint.predict import load_model

    args = make_parser().parse_args(argv)
    # Every folder is checked before the model is read or anything printed.
    try:
        folders = args.data or [default_path("data/test", "data folder")]
    except DefaultPathError as e:
        print(f"error: {e}; pass --data FOLDER", file=sys.stderr)
        return 2
    missing = [folder for folder in folders if not Path(folder).exists()]
    if missing:  # not "no images/ folder": the folder itself is not there
        print("\n".join(f"error: {folder}: no such folder" for folder in missing), file=sys.stderr)
        return 1
    try:
        model = load_model(resolve_weights(args.weights), device=args.device, backend=args.backend)
    except (CheckpointError, DefaultPathError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    conf = model.conf if args.conf is None else args.conf
    tables, failed = {}, False
    for folder in folders:
        try:
            samples, report = load_dataset(folder, max_targets=model.spec.max_targets, min_targets=model.spec.min_targets,
                                           progress=not args.quiet)
        except DatasetError as e:
            print(f"error: {e}", file=sys.stderr)
            failed = True
            continue
        for line in report.lines():
            print(line)
        failed |= bool(report.failures)
        if not samples:  # an empty table would read as a score
            print(f"error: {folder}: no usable labelled images", file=sys.stderr)
            failed = True
            continue
        results = predict_all(model, samples, progress=not args.quiet)
        tables[str(folder)] = score(results, conf)
        if args.per_image:
            path = args.per_image if len(folders) == 1 else args.per_image.with_name(
                f"{args.per_image.stem}_{Path(folder).name}{args.per_image.suffix}")
            write_per_image_csv(path, results, conf)
    if not tables:  # nothing was scored: no model line and no empty table under the errors
        return 1
    print(f"{model.method} model {args.weights}, threshold {conf:.3f}, match radius 3 px (Pd@1/2px: radius 1/2 px)")
    # A figure that cannot be computed (AP, Pd of a folder without labelled targets; the error where
    # nothing was found) shows as "-", explained above the table, never as a bare nan.
    shown = {name: _uncomputable_as(metrics, "-") for name, metrics in tables.items()}
    if any(metrics.get(c) == "-" for metrics in shown.values() for c in MAIN_COLUMNS):
        print("-: cannot be computed there (AP and Pd need labelled targets; err needs a target found within the radius)")
    print(format_table(shown, MAIN_COLUMNS))
    if args.json:  # JSON has no NaN: null
        results = {name: _uncomputable_as(metrics, None) for name, metrics in tables.items()}
        atomic_write(args.json, json.dumps({"weights": str(args.weights), "conf": conf, "results": results}, indent=2,
                                           allow_nan=False).encode())
    return 1 if failed or not tables else 0


if __name__ == "__main__":
    sys.exit(main())
