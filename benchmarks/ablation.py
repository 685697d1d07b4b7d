"""Score heatmap training runs on the validation split they were chosen on (never on test).

Each run is a checkpoint written by ``python -m simple_keypoint.heatmap.train`` with one setting
changed; the table shows the settings it stores beside its validation figures:

    python -m simple_keypoint.heatmap.train --out runs/sigma1 --sigma 1.0      # ... one run per row
    python -m benchmarks.ablation runs/heatmap/weights/best.pt runs/sigma1/weights/best.pt --subpixel --plain

AP@3px and Pd@1px rank every prediction (threshold 0); Pd@3px and FA/img are at the threshold
today's rule (``evaluate.pick_threshold``) picks on this split, so runs made under an older rule
compare fairly. Each run is scored on the split it held out, read from its stored training
settings (``simple_keypoint.training.validation_samples``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint
from simple_keypoint.dataset import DatasetError, Sample, load_dataset
from simple_keypoint.evaluate import pick_threshold, predict_all, score
from simple_keypoint.predict import Localizer, localizer_from_checkpoint
from simple_keypoint.tables import markdown_row
from simple_keypoint.training import carve_validation

HEADERS = ["run", "loss", "sigma", "widths", "crop", "lr", "epochs", "ema", "best epoch", "AP@3px", "Pd@1px", "err px",
           "threshold", "Pd@3px", "FA/img", "AP@3px, last 10 epochs"]


def curve(best: Path) -> str:
    """Validation AP@3px of the run's last 10 epochs, mean +- sd (from last.pt beside best.pt):
    how steady training ends, which the single best epoch does not show."""
    try:
        history = load_checkpoint(best.with_name("last.pt"), "heatmap")["history"]
    except CheckpointError:
        return "-"
    ap = np.array([h["val_AP@3px"] for h in history[-10:]])
    return f"{ap.mean():.3f} +- {ap.std():.3f}"


def row(name: str, settings: dict, epoch: int, model: Localizer, samples: list, steadiness: str = "-") -> str:
    results = predict_all(model, samples)
    conf = pick_threshold(results)  # today's rule for every row, whatever rule the run itself stored
    ranked, chosen = score(results, 0.0), score(results, conf)
    widths = ",".join(map(str, settings["widths"])) + (" +context" if settings.get("context") else "")
    cells = [settings["loss"], settings["sigma"], widths, settings["crop"],
             settings["lr"], settings["epochs"], settings.get("ema") or "-", epoch,
             f"{ranked['AP@3px']:.3f}", f"{ranked['Pd@1px']:.3f}",
             f"{ranked['err_mean@3px']:.2f}", f"{conf:.2f}",
             f"{chosen['Pd@3px']:.3f}", f"{chosen['FA/img@3px']:.3f}", steadiness]
    return markdown_row([name, *cells])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="best.pt of each heatmap run")
    p.add_argument("--data", default=None, help="where the runs' --data folder is now (default: the one each stores)")
    p.add_argument("--subpixel", action="store_true", help="also score the first run without sub-pixel decoding")
    p.add_argument("--fit", action="store_true",
                   help="also score every run on the images it trained on: no better there than on validation = underfitting")
    p.add_argument("--plain", action="store_true",
                   help="also score every run with plain scores (sigmoid of the peak logit, not relative to the frame's clutter)")
    args = p.parse_args(argv)

    read: dict[str, list[Sample]] = {}  # each --data folder is read once
    print(markdown_row(HEADERS) + "\n|" + "---|" * len(HEADERS))
    failures = []
    for i, path in enumerate(args.checkpoints):
        try:
            checkpoint = load_checkpoint(path, "heatmap")
            settings = checkpoint["train_args"]
            folder = str(args.data or settings["data"])
            if folder not in read:
                read[folder] = load_dataset(folder, progress=False)[0]
            trained_on, val = carve_validation(read[folder], settings)
        except (CheckpointError, DatasetError, KeyError) as e:  # one bad run does not stop the table
            failures.append(f"{path}: {e}" if isinstance(e, KeyError) else str(e))
            continue
        run = path.parent.parent.name  # runs/<run>/weights/best.pt; any other file (weights/heatmap.pt) by its own name
        name = run if path.parent.name == "weights" and run else path.stem
        model = localizer_from_checkpoint(checkpoint, "cpu", path)
        print(row(name, checkpoint["train_args"], checkpoint["epoch"], model, val, curve(path)), flush=True)
        if args.fit:
            print(row(f"{name}, on its {len(trained_on)} training images", checkpoint["train_args"], checkpoint["epoch"],
                      model, trained_on), flush=True)
        if args.plain:
            model.relative = False
            print(row(f"{name}, plain scores", checkpoint["train_args"], checkpoint["epoch"], model, val), flush=True)
            model.relative = True
        if args.subpixel and i == 0:
            model.subpixel = False
            print(row(f"{name}, no sub-pixel decoding", checkpoint["train_args"], checkpoint["epoch"], model, val), flush=True)
    if failures:
        print(f"{len(failures)} checkpoint(s) skipped:\n" + "\n".join(f"  {line}" for line in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
