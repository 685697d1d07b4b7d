"""Score training runs on a validation split (never on test), one row per run.

Each run is a checkpoint written by ``python -m simple_keypoint.heatmap.train`` (or a regression
run, or a shipped model) with one setting changed; the table shows what it stores beside its validation figures:

    python -m simple_keypoint.heatmap.train --project runs --name nopaste --paste 0      # ... one run per row
    python -m benchmarks.ablation runs/full/weights/best.pt runs/nopaste/weights/best.pt --same-split --markdown

Every run is scored on the validation images its stored settings carve
(``simple_keypoint.training.validation_samples``), or with ``--same-split`` all on the first run's
(a run trained without ``--clutter`` is then still scored on the clutter frames the others held
out). AP@3px ranks every prediction (threshold 0), pooled and per dataset folder; Pd@3px and the
false alarms per MPx of each folder are at the threshold that holds ``--max-false-per-mpx`` pooled
false alarms per MPx of that split (``evaluate.pick_threshold``), the same rule for every row.
"last epochs" is the mean +- sd of the pooled AP over the run's last validated epochs (from its
last.pt): how steady training ends, which its single best epoch does not show.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint
from simple_keypoint.dataset import DatasetError, Sample
from simple_keypoint.evaluate import pick_threshold, predict_all, score
from simple_keypoint.predict import localizer_from_checkpoint
from simple_keypoint.tables import render_table
from simple_keypoint.training import validation_samples

SETTINGS = ("data_share", "crop", "epochs", "shape_target", "composite", "paste", "hard_share", "clutter", "size", "widths")


def last_epochs(best: Path, count: int = 5) -> str:
    """Pooled validation AP@3px of the run's last ``count`` validated epochs, mean +- sd."""
    try:
        history = load_checkpoint(best.with_name("last.pt"))["history"]
    except CheckpointError:
        return "-"
    ap = np.array([h["val_AP@3px"] for h in history if h.get("validated", True)][-count:])
    return f"{ap.mean():.3f} +- {ap.std():.3f}" if len(ap) else "-"


def short(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(Path(str(v)).name if "/" in str(v) else str(v) for v in value) or "none"
    return "-" if value is None else str(value)


def scored(name: str, checkpoint: dict, path: Path, val: list[Sample], budget: float,
           relative: bool = True) -> tuple[list[str], list[str]]:
    """(header, cells) of one run on ``val``; ``relative=False``: plain scores (no clutter level)."""
    model = localizer_from_checkpoint(checkpoint, "cpu", path)
    if not relative:
        model.relative = False
    results = predict_all(model, val)
    conf = pick_threshold(results, max_false_per_mpx=budget)
    sources = sorted({s.source for s in val})
    header, cells = ["run", "best epoch", "AP@3px"], [name, str(checkpoint["epoch"]), f"{score(results, 0.0)['AP@3px']:.3f}"]
    for source in sources:
        part = [r for r, s in zip(results, val, strict=True) if s.source == source]
        ranked, chosen = score(part, 0.0), score(part, conf)
        label = f"{Path(source).parent.name}/{Path(source).name}"
        if ranked["targets"]:
            header += [f"AP {label}", f"Pd {label}"]
            cells += [f"{ranked['AP@3px']:.3f}", f"{chosen['Pd@3px']:.3f}"]
        else:
            header.append(f"FA/MPx {label}")
            cells.append(f"{chosen['FA/MPx@3px']:.2f}")
    header += ["threshold", "last epochs AP"] + list(SETTINGS)
    cells += [f"{conf:.3f}", last_epochs(path)] + [short(checkpoint["train_args"].get(k)) for k in SETTINGS]
    return header, cells


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="best.pt of each run (one method per table)")
    p.add_argument("--same-split", action="store_true", help="score every run on the first run's validation images")
    p.add_argument("--max-false-per-mpx", type=float, default=1.0, help="pooled false-alarm budget of the threshold")
    p.add_argument("--plain", action="store_true",
                   help="also score every run with plain scores (sigmoid of the peak logit, not relative to the frame's clutter)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)

    rows, header, failures, shared = [], None, [], None
    for path in args.checkpoints:
        try:
            checkpoint = load_checkpoint(path)
            if shared is None or not args.same_split:  # only the images the method can use (regression: one target)
                method = localizer_from_checkpoint(checkpoint, "cpu", path).spec
                shared = validation_samples(checkpoint["train_args"], method=method)
            run = path.parent.parent.name  # runs/<run>/weights/best.pt; any other file by its own name
            name = run if path.parent.name == "weights" and run else path.stem
            header, cells = scored(name, checkpoint, path, shared, args.max_false_per_mpx)
        except (CheckpointError, DatasetError, KeyError) as e:  # one bad run does not stop the table
            failures.append(f"{path}: {e}" if isinstance(e, KeyError) else str(e))
            continue
        rows.append(cells)
        if args.plain:
            rows.append(scored(f"{name}, plain scores", checkpoint, path, shared, args.max_false_per_mpx, relative=False)[1])
        print(f"scored {name}", file=sys.stderr, flush=True)
    if header:
        print(render_table(header, rows, args.markdown))
    if failures:
        print(f"{len(failures)} checkpoint(s) skipped:\n" + "\n".join(f"  {line}" for line in failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
