"""A heatmap checkpoint's default threshold, picked again on its own validation split.

    python benchmarks/threshold.py weights/heatmap.pt                 # print it (and the stored one)
    python benchmarks/threshold.py weights/heatmap.pt --write         # store it in the checkpoint
    python benchmarks/threshold.py runs/x/weights/best.pt --max-false-per-image 0.2 --write

Training picks the threshold this way after every epoch (``evaluate.pick_threshold`` on the split
carved from its ``--data`` with its ``--val-fraction`` and ``--seed``); this redoes it for a
checkpoint made before a change of that rule, or for another false-alarm budget. Never run it with
the data the final numbers are reported on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from simple_keypoint.dataset import DatasetError, Sample, load_dataset, split  # noqa: E402
from simple_keypoint.evaluate import FALSE_ALARMS_PER_IMAGE, pick_threshold, predict_all, score  # noqa: E402
from simple_keypoint.predict import localizer_from_checkpoint  # noqa: E402


def validation_split(checkpoint: dict, data: str | None = None, samples: list[Sample] | None = None) -> list[Sample]:
    """The validation images a run held out: its ``--val`` folder, or the split it carved from its
    ``--data`` (or ``data``, where that folder is now; or ``samples``, that folder already read)
    with its ``--val-fraction`` and ``--seed``."""
    settings = checkpoint["train_args"]
    if settings.get("val"):
        return load_dataset(settings["val"], progress=False)[0]
    if samples is None:
        samples, _ = load_dataset(data or settings["data"], progress=False)
    return split(samples, settings["val_fraction"], settings["seed"])[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a heatmap checkpoint (best.pt or a shipped one)")
    p.add_argument("--max-false-per-image", type=float, default=FALSE_ALARMS_PER_IMAGE)
    p.add_argument("--data", default=None, help="the folder it was trained on (default: the one in its settings)")
    p.add_argument("--write", action="store_true", help="store the threshold in the checkpoint (atomically)")
    args = p.parse_args(argv)
    try:
        checkpoint = load_checkpoint(args.checkpoint, "heatmap")
        val = validation_split(checkpoint, args.data)
    except (CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = predict_all(localizer_from_checkpoint(checkpoint, "cpu", args.checkpoint), val)
    conf = pick_threshold(results, args.max_false_per_image)
    at = score(results, conf)
    print(f"{args.checkpoint}: threshold {conf:.4f} (stored {checkpoint['decode']['conf']:.4f}) for <= "
          f"{args.max_false_per_image} false alarms/image on {len(val)} validation images: "
          f"Pd@3px {at['Pd@3px']:.3f}, {at['FA/img@3px']:.3f} false alarms/image")
    if args.write:
        checkpoint["decode"]["conf"] = conf
        save_checkpoint(args.checkpoint, checkpoint)
        print(f"stored in {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
