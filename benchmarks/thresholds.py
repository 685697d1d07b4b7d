"""Validation Pd against false alarms per megapixel, for each dataset of a run separately.

    python -m benchmarks.thresholds weights/heatmap.pt --markdown --plot docs/thresholds.png

A checkpoint's validation split (the one its training carved, ``training.validation_samples``:
SIRST, NUDT-SIRST and the HIT-UAV clutter frames of the shipped recipe) is scored once at
threshold 0; then, for the thresholds that pooled budgets of 0.1 ... 10 false alarms per MPx pick
(``evaluate.pick_threshold``, as training and ``simple_keypoint.threshold`` pick them), each
dataset's Pd@3px, false alarms per image and per MPx. Ground clutter (HIT-UAV) has no targets: its
column is the false alarms the threshold lets through on real ground frames, and a second column
the same frames enlarged 2x (ground seen from closer, as large ground-level frames show it). Never
run on test data.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from benchmarks.accuracy import resized_up
from simple_keypoint.checkpoint import CheckpointError, load_checkpoint
from simple_keypoint.dataset import DatasetError
from simple_keypoint.evaluate import pick_threshold, predict_all, score
from simple_keypoint.labels import atomic_write
from simple_keypoint.predict import localizer_from_checkpoint
from simple_keypoint.tables import render_table
from simple_keypoint.training import validation_samples

BUDGETS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0)  # pooled false alarms per MPx of validation


def curves(path: str) -> tuple[list[str], list[list[str]], dict[str, list[tuple[float, float, float]]], float]:
    """Table header, rows, per-dataset (threshold, FA/MPx, Pd) points, and the stored threshold."""
    checkpoint = load_checkpoint(path)
    model = localizer_from_checkpoint(checkpoint, "cpu", path)
    val = validation_samples(checkpoint["train_args"], method=model.spec)
    results = predict_all(model, val)
    sources = sorted({s.source for s in val})
    parts = {src: [r for r, s in zip(results, val, strict=True) if s.source == src] for src in sources}
    for src in [src for src in sources if not any(len(s.points) for s in val if s.source == src)]:  # clutter
        sources.append(f"{src} x2")
        parts[sources[-1]] = predict_all(model, resized_up([s for s in val if s.source == src]))
    stored = float(checkpoint.get("decode", {}).get("conf", model.conf))
    header = ["budget FA/MPx (pooled)", "threshold"] + [f"{Path(src).parent.name}/{Path(src).name}" for src in sources]
    rows, points = [], {src: [] for src in sources}
    thresholds = [(f"{b:g}", pick_threshold(results, max_false_per_mpx=b)) for b in BUDGETS] + [("stored", stored)]
    for label, conf in sorted(thresholds, key=lambda t: -t[1]):
        row = [label, f"{conf:.3f}"]
        for src in sources:
            m = score(parts[src], conf)
            points[src].append((conf, m["FA/MPx@3px"], m["Pd@3px"]))
            row.append(f"Pd {m['Pd@3px']:.3f}, {m['FA/img@3px']:.3f}/img, {m['FA/MPx@3px']:.2f}/MPx" if m["targets"]
                       else f"{m['FA/img@3px']:.3f}/frame, {m['FA/MPx@3px']:.2f}/MPx")
        rows.append(row)
    return header, rows, points, stored


def plot(points: dict[str, list[tuple[float, float, float]]], out: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    own, ground = fig.subplots(1, 2)
    clutter = [src for src, pts in points.items() if all(p[2] != p[2] for p in pts)]  # NaN Pd: no targets
    ground_fa = [p[1] for p in points[clutter[0]]] if clutter else None
    for src, pts in points.items():
        if src in clutter:
            continue
        name = f"{Path(src).parent.name}/{Path(src).name}"
        own.plot([p[1] for p in pts], [p[2] for p in pts], "o-", label=name)
        if ground_fa is not None:  # the same thresholds: what each dataset's Pd costs on ground frames
            ground.plot(ground_fa, [p[2] for p in pts], "o-", label=name)
    own.set(xscale="symlog", xlabel="false alarms per MPx, the dataset's own frames", ylabel="Pd@3px", ylim=(0, 1.02),
            title=title)
    ground.set(xscale="symlog", ylim=(0, 1.02), ylabel="Pd@3px", title="the same thresholds on ground clutter",
               xlabel="false alarms per MPx of HIT-UAV validation frames" if clutter else "(no clutter frames)")
    own.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(out, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.thresholds", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a heatmap checkpoint with its training settings")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--plot", type=Path, default=None, help="also draw Pd against FA/MPx per dataset to this PNG")
    args = p.parse_args(argv)
    try:
        header, rows, points, stored = curves(args.checkpoint)
    except (CheckpointError, DatasetError, KeyError) as e:
        print(f"error: {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    print(render_table(header, rows, args.markdown))
    if args.plot:
        plot(points, args.plot, f"{Path(args.checkpoint).name}: validation, per dataset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
