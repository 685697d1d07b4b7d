"""Accuracy on a labelled folder (default SIRST test): the shipped models beside the baselines.

    python -m benchmarks.accuracy                 # table on data/test
    python -m benchmarks.accuracy --markdown      # the same, as the README's Markdown table

Rows: the shipped heatmap model at its default threshold (and with plain rather than
clutter-relative scores, and without sub-pixel decoding, to show each step's gain alone), the
shipped regression model (single-target images only), the white top-hat baseline (element size
and threshold chosen on data/train), and the seed article's recipes when their weights exist
(train them with python -m benchmarks.seed_recipe).
Thresholds are never chosen on the data being scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.tophat import TopHatDetector
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.dataset import Sample, load_dataset
from simple_keypoint.evaluate import pick_threshold, predict_all, score
from simple_keypoint.images import standardise
from simple_keypoint.labels import atomic_write
from simple_keypoint.predict import Localizer, localizer_from_checkpoint
from simple_keypoint.regression.method import REGRESSION
from simple_keypoint.tables import format_table
from simple_keypoint.training import validation_samples

ROOT = Path(__file__).resolve().parents[1]

COLUMNS = ["images", "targets", "AP@3px", "Pd@3px", "FA/img@3px", "FA/MPx@3px", "err_mean@3px", "err_median@3px",
           "Pd@1px", "Pd@2px"]


def tune_tophat(samples: list[Sample]) -> TopHatDetector:
    """Pick the element size by AP on the training split, then its threshold (the models' false-alarm budget)."""
    best = max((score(predict_all(TopHatDetector(size), samples), 0.0)["AP@3px"], size) for size in (5, 7, 9, 11, 15))
    detector = TopHatDetector(best[1])
    detector.conf = pick_threshold(predict_all(detector, samples))
    return detector


def target_free_crops(samples: list[Sample], size: int = 128, seed: int = 0) -> list[np.ndarray]:
    """One crop per image that holds no target (>= 8 px from every labelled point), where one fits.

    Each crop is standardised on its own, like a separate frame that simply shows no target.
    """
    rng = np.random.default_rng(seed)
    crops = []
    for s in samples:
        h, w = s.image.shape
        if h < size or w < size:
            continue
        for _ in range(50):
            x0, y0 = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
            u, v = s.points[:, 0], s.points[:, 1]
            if not np.any((u > x0 - 8) & (u < x0 + size + 8) & (v > y0 - 8) & (v < y0 + size + 8)):
                crops.append(standardise(s.image[y0:y0 + size, x0:x0 + size]))
                break
    return crops


def silent_rate(model: Localizer, crops: list[np.ndarray]) -> float:
    """Share of target-free crops on which the model reports no point at its default threshold."""
    return float(np.mean([len(model.predict_standardised(c)) == 0 for c in crops])) if crops else float("nan")


def shipped_rows(samples: list[Sample], heatmap: str | Path | None, regression: str | Path | None,
                 ablation: bool = False, train: list[Sample] | None = None) -> dict[str, dict[str, float]]:
    """Rows of the shipped models that exist: the heatmap model at its default threshold (with the
    share of target-free crops it stays silent on), optionally again with plain scores (their own
    threshold, picked on the model's validation split of ``train``) and without sub-pixel
    decoding, and the regression model on the single-target images. tests/test_shipped_weights.py
    re-runs this."""
    rows: dict[str, dict[str, float]] = {}
    if heatmap and Path(heatmap).exists():
        checkpoint = load_checkpoint(heatmap)
        model = localizer_from_checkpoint(checkpoint, "cpu", heatmap)
        name = f"heatmap (shipped, threshold {model.conf:.2f})"
        rows[name] = score(predict_all(model, samples), model.conf)
        crops = target_free_crops(samples)
        rows[name]["silent"] = silent_rate(model, crops)
        rows[name]["crops"] = len(crops)
        if ablation:
            model.relative = False
            plain_conf = pick_threshold(predict_all(model, validation_samples(checkpoint["train_args"], samples=train)))
            rows[f"heatmap, plain scores (threshold {plain_conf:.2f})"] = score(predict_all(model, samples), plain_conf)
            model.relative = True
            model.subpixel = False
            rows["heatmap, no sub-pixel decoding"] = score(predict_all(model, samples), model.conf)
    if regression and Path(regression).exists():
        model = localizer_from_checkpoint(load_checkpoint(regression), "cpu", regression)
        usable = [s for s in samples if model.spec.accepts(len(s.points))]
        rows[f"regression (shipped; {len(usable)} single-target images)"] = score(predict_all(model, usable), 0.0)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data/test"), help="labelled folder to score")
    p.add_argument("--train", default=str(ROOT / "data/train"), help="where the baseline's settings are chosen")
    p.add_argument("--heatmap", default=str(ROOT / "weights/heatmap.pt"))
    p.add_argument("--regression", default=str(ROOT / "weights/regression.pt"))
    p.add_argument("--seed-weights", default=str(ROOT / "benchmarks/weights"), help="seed recipe checkpoints")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows here (benchmarks/accuracy.json is what the tests check)")
    args = p.parse_args(argv)

    samples, _ = load_dataset(args.data, progress=False)
    single = [s for s in samples if REGRESSION.accepts(len(s.points))]
    train, _ = load_dataset(args.train, progress=False)
    rows = shipped_rows(samples, args.heatmap, args.regression, ablation=True, train=train)
    tophat = tune_tophat(train)
    rows[f"top-hat {tophat.kernel.shape[0]}px + local max (threshold {tophat.conf:.2f})"] = score(
        predict_all(tophat, samples), tophat.conf)
    seed = Path(args.seed_weights)
    if (seed / "seed_heatmap.pt").exists() or (seed / "seed_regression.pt").exists():
        from benchmarks.seed_recipe import seed_rows

        rows.update(seed_rows(seed, samples, single))

    for name, row in rows.items():
        if "silent" in row:
            print(f"{name}: no point reported on {row['silent']:.1%} of {row['crops']} target-free 128x128 crops")
    print(format_table(rows, COLUMNS, markdown=args.markdown, first="model"))
    if args.json:
        atomic_write(args.json, json.dumps(rows, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
