"""How far a labeller can trust the tool's model proposals: the threshold and its table.

    python -m landmark_annotation.proposal_accuracy                       # shipped s model
    python -m landmark_annotation.proposal_accuracy --weights W --false-per-image 1

1. The labelling threshold is picked on the model's own validation split carved from SIRST train
   (``--val-data``, the split its training held out): the lowest score whose snapped proposals
   make at most ``--false-per-image`` false proposals per image (matched within 3 px).
2. On SIRST test (``--test-data``), at that threshold: targets proposed, false proposals per
   image, and the mean error of accepted (matched) proposals, snapped as the tool shows them and
   as the model put them, against clicks 1 px off each of those targets in 8 directions, snapped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from landmark_annotation.defaults import PROPOSAL_FLOOR
from landmark_annotation.session import snap_proposals
from landmark_annotation.snap import snap_region
from simple_keypoint.evaluate import ImageResult, match, pick_threshold, score
from simple_keypoint.images import read_image, to_gray
from simple_keypoint.paths import default_path, resolve_weights

DIRECTIONS = [(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 4]


def proposals_on(model: object, folder: Path, names: list[str], truths: list[np.ndarray],
                 radius: int = 3) -> tuple[list[ImageResult], list[ImageResult], list[np.ndarray]]:
    """Per image: results with snapped proposals, with the model's own points, and the gray image."""
    snapped, unsnapped, grays = [], [], []
    for name, truth in zip(names, truths, strict=True):
        raw = read_image(folder / "images" / name)
        gray = to_gray(raw)
        pred = model.predict(raw, conf=PROPOSAL_FLOOR)  # type: ignore[attr-defined]
        snapped.append(ImageResult(name, truth, snap_proposals(gray, pred, radius), gray.size))
        unsnapped.append(ImageResult(name, truth, pred, gray.size))
        grays.append(gray)
    return snapped, unsnapped, grays


def accepted_errors(results: list[ImageResult], conf: float) -> dict[tuple[int, int], float]:
    """(image, target) -> error of the proposal matched to it within 3 px, at ``conf``."""
    out = {}
    for i, r in enumerate(results):
        kept = r.pred[r.pred[:, 2] >= conf]
        m, d = match(kept, r.truth, 3.0)
        out.update({(i, int(j)): float(e) for j, e in zip(m, d, strict=True) if j >= 0})
    return out


def click_error(gray: np.ndarray, truth: np.ndarray, radius: int = 3) -> float:
    """Mean error of snapped clicks 1 px off ``truth`` in 8 directions."""
    errors = []
    for du, dv in DIRECTIONS:
        point = snap_region(gray, truth[0] + du, truth[1] + dv, radius).point
        point = point if point is not None else (truth[0] + du, truth[1] + dv)
        errors.append(float(np.hypot(point[0] - truth[0], point[1] - truth[1])))
    return float(np.mean(errors))


def load_split(folder: Path, settings: dict | None) -> tuple[list[str], list[np.ndarray]]:
    """Image names and truth points of ``folder``, or of the validation split ``settings`` carve."""
    from simple_keypoint.dataset import load_dataset
    from simple_keypoint.training import carve_validation

    samples = load_dataset(folder, progress=False)[0]
    if settings is not None:
        samples = carve_validation(samples, settings)[1]
    return [s.name for s in samples], [s.points for s in samples]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m landmark_annotation.proposal_accuracy",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="heatmap", help="model (default: the shipped s model)")
    p.add_argument("--val-data", default="data/train", help="folder its validation split is carved from")
    p.add_argument("--test-data", default="data/test", help="folder the table is measured on")
    p.add_argument("--false-per-image", type=float, default=1.0, help="false proposals per validation image")
    args = p.parse_args(argv)
    from simple_keypoint.checkpoint import load_checkpoint
    from simple_keypoint.predict import load_model

    path = resolve_weights(args.weights)
    model = load_model(path, "cpu")
    settings = load_checkpoint(path).get("train_args")
    if settings is None or settings.get("val"):
        print(f"error: {path} names no validation split carved from its data", file=sys.stderr)
        return 2
    val_names, val_truths = load_split(default_path(args.val_data), settings)
    val, _, _ = proposals_on(model, default_path(args.val_data), val_names, val_truths)
    conf = pick_threshold(val, args.false_per_image)
    test_dir = default_path(args.test_data)
    names, truths = load_split(test_dir, None)
    snapped, unsnapped, grays = proposals_on(model, test_dir, names, truths)
    print(f"{path}: labelling threshold {conf:.4f} (<= {args.false_per_image:g} false proposals per image on "
          f"{len(val)} validation images of {args.val_data}; the detector's own threshold {model.conf:.4f})")
    print("| split | threshold | images | targets | proposed | false / image | accepted error, snapped (model's) "
          "| snapped clicks, same targets | difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for split, results, raw_results, gray_list, at in (
            (f"validation ({args.val_data})", val, None, None, conf),
            (f"test ({args.test_data})", snapped, unsnapped, grays, conf),
            (f"test ({args.test_data})", snapped, unsnapped, grays, model.conf)):
        m = score(results, at)
        row = f"| {split} | {at:.3f} | {m['images']} | {m['targets']} | {m['Pd@3px']:.1%} | {m['FA/img@3px']:.2f} |"
        if raw_results is None:
            print(row + " | | |")
            continue
        accepted = accepted_errors(results, at)
        own = accepted_errors(raw_results, at)
        clicks = {key: click_error(gray_list[key[0]], results[key[0]].truth[key[1]]) for key in accepted}
        a, c = np.mean(list(accepted.values())), np.mean(list(clicks.values()))
        print(row + f" {a:.3f} ({np.mean(list(own.values())):.3f}) | {c:.3f} | {a - c:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
