"""A checkpoint's default threshold, picked again on its own validation split, and optionally stored.

    simple-keypoint threshold --weights heatmap                                   # print it (and the stored one)
    simple-keypoint threshold --weights runs/x/weights/best.pt --write            # store it in the checkpoint
    simple-keypoint threshold --weights runs/x/weights/best.pt --max-false-per-image 0.2 --write
    simple-keypoint threshold --weights runs/x/weights/best.pt --max-false-per-mpx 1 --write

Training picks the threshold this way after every epoch (``evaluate.pick_threshold`` on the split
carved from its ``--data`` with its ``--val-fraction`` and ``--seed``); this redoes it for a
checkpoint made before a change of that rule, or for another false-alarm budget. Never run it with
the data the final numbers are reported on.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from simple_keypoint.dataset import DatasetError
from simple_keypoint.evaluate import FALSE_ALARMS_PER_IMAGE, pick_threshold, predict_all, score
from simple_keypoint.options import HelpFormatter, Parser, add_weights_option, number
from simple_keypoint.paths import DEFAULT_WEIGHTS, SHIPPED_NAMES, DefaultPathError, resolve_weights
from simple_keypoint.predict import localizer_from_checkpoint
from simple_keypoint.training import validation_samples


@dataclass
class Repicked:
    conf: float  # the threshold picked now
    stored: float  # the one the checkpoint held
    images: int  # validation images it was picked on
    metrics: dict[str, float]  # scores on them at ``conf``


def repick_threshold(checkpoint: dict[str, Any], max_false_per_image: float = FALSE_ALARMS_PER_IMAGE,
                     data: str | os.PathLike | None = None, path: str | os.PathLike = "<checkpoint>",
                     max_false_per_mpx: float | None = None) -> Repicked:
    """Pick ``checkpoint``'s threshold again on the validation split its training settings name
    (``data``: where its ``--data`` folder is now), by false alarms per image or, if
    ``max_false_per_mpx`` is given, per megapixel. Raises CheckpointError or DatasetError."""
    model = localizer_from_checkpoint(checkpoint, "cpu", path)
    if not model.spec.picks_threshold:
        raise CheckpointError(f"{path}: a {model.method} model has no threshold to pick")
    if "train_args" not in checkpoint:
        raise CheckpointError(f"{path}: holds no training settings, so its validation split is unknown")
    val = validation_samples(checkpoint["train_args"], data, method=model.spec)
    results = predict_all(model, val)
    conf = pick_threshold(results, max_false_per_image, max_false_per_mpx=max_false_per_mpx)
    return Repicked(conf, float(checkpoint.get("decode", {}).get("conf", model.conf)), len(val), score(results, conf))


def make_parser() -> argparse.ArgumentParser:
    """The threshold command line."""
    p = Parser(prog="simple-keypoint threshold", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    names = ", ".join(n for n in SHIPPED_NAMES if n != "regression")
    add_weights_option(p, help_text=f"a checkpoint (.pt) of a method that picks a threshold, e.g. a run's best.pt, or a "
                                    f"shipped model's name ({names}) (default: {DEFAULT_WEIGHTS})")
    p.set_defaults(weights=None)  # None: not given, so the older positional form may name the checkpoint
    p.add_argument("checkpoint", nargs="?", help=argparse.SUPPRESS)  # the older spelling of --weights
    p.add_argument("--max-false-per-image", type=number(float, 0.0), default=FALSE_ALARMS_PER_IMAGE,
                   help="false-alarm budget per validation image")
    p.add_argument("--max-false-per-mpx", type=number(float, 0.0), default=None,
                   help="false-alarm budget per megapixel of validation instead (holds for frames of any size)")
    p.add_argument("--data", default=None,
                   help="the folder it was trained on, where it is now (default: the one in its training settings)")
    p.add_argument("--write", action="store_true", help="store the threshold in the checkpoint (atomically)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = make_parser()
    args = p.parse_args(argv)
    if args.checkpoint is not None and args.weights is not None:
        p.error(f"the checkpoint is given twice: --weights {args.weights} and {args.checkpoint}")
    weights = args.checkpoint if args.checkpoint is not None else args.weights
    try:
        if args.data is not None and not os.path.isdir(args.data):  # said before the model is read
            raise DatasetError(f"{args.data}: does not exist")
        path = resolve_weights(weights)
        checkpoint = load_checkpoint(path)
        picked = repick_threshold(checkpoint, args.max_false_per_image, args.data, path, args.max_false_per_mpx)
    except (CheckpointError, DatasetError, DefaultPathError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if picked.images == 0:  # every figure below would be undefined
        print(f"error: {path}: its validation split holds no image (trained with --val-fraction 0?), so there is "
              "nothing to pick a threshold on", file=sys.stderr)
        return 1
    budget = (f"{args.max_false_per_mpx} false alarms/MPx" if args.max_false_per_mpx is not None
              else f"{args.max_false_per_image} false alarms/image")
    pd = picked.metrics["Pd@3px"]
    print(f"{path}: threshold {picked.conf:.4f} (stored {picked.stored:.4f}) for <= {budget} on "
          f"{picked.images} validation images: "
          + (f"Pd@3px {pd:.3f}, " if math.isfinite(pd) else "Pd@3px - (no labelled target among them), ")
          + f"{picked.metrics['FA/img@3px']:.3f} false alarms/image, {picked.metrics['FA/MPx@3px']:.3f}/MPx")
    if args.write:
        checkpoint.setdefault("decode", {})["conf"] = picked.conf
        try:
            save_checkpoint(path, checkpoint)
        except OSError as e:
            print(f"error: cannot write {path}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"stored in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
