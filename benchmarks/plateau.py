"""Validation AP against epoch for training runs: where each run stopped rising.

    python -m benchmarks.plateau runs/s120 runs/wide120 runs/n120 --markdown --plot docs/plateau.png

Reads each run folder's ``losses.csv`` (written by the training loop, one row per epoch; validation
only on the epochs it ran, ``--val-every``). The table gives the pooled validation AP@3px at every
20th validated epoch, the best, the mean +- sd of the last five validated epochs, the epoch after
which the AP never again rose by more than ``--rise`` over its running best (the plateau), and the
run's wall minutes (train-only and validated epochs separately). No training, no images: seconds.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from simple_keypoint.labels import atomic_write
from simple_keypoint.tables import render_table


def read_run(folder: Path) -> dict:
    """Epochs, validated AP and seconds of one run folder; raises ValueError on a missing or empty log."""
    path = folder / "losses.csv"
    if not path.is_file():
        raise ValueError(f"{folder}: no losses.csv (not a training run folder)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no epochs")
    validated = [r for r in rows if r.get("validated", "1") in ("1", "True") and r.get("val_AP@3px")]
    if not validated:
        raise ValueError(f"{path}: no validated epoch")
    seconds = np.array([float(r["seconds"]) for r in rows])
    is_val = np.array([r.get("validated", "1") in ("1", "True") for r in rows])
    return {
        "name": folder.name,
        "epoch": np.array([int(r["epoch"]) for r in validated]),
        "ap": np.array([float(r["val_AP@3px"]) for r in validated]),
        "epochs": len(rows),
        "minutes": seconds.sum() / 60,
        "train_s": seconds[~is_val].mean() if (~is_val).any() else float("nan"),
        "val_s": seconds[is_val].mean(),
    }


def plateau_epoch(epoch: np.ndarray, ap: np.ndarray, rise: float) -> int:
    """The last validated epoch at which AP beat its running best by more than ``rise``."""
    best, last = -np.inf, int(epoch[0])
    for e, a in zip(epoch, ap, strict=True):
        if a > best + rise:
            last = int(e)
        best = max(best, a)
    return last


def table(runs: list[dict], rise: float, every: int) -> tuple[list[str], list[list[str]]]:
    marks = sorted({m for run in runs for m in range(every, run["epochs"] + 1, every)})
    header = ["run"] + [f"ep {m}" for m in marks] + ["best (epoch)", "last 5 validated", f"plateau (rise > {rise})",
                                                       "epochs", "minutes", "s/epoch train / validated"]
    rows = []
    for run in runs:
        at = {int(e): a for e, a in zip(run["epoch"], run["ap"], strict=True)}
        i = int(np.argmax(run["ap"]))
        tail = run["ap"][-5:]
        rows.append([run["name"]] + [f"{at[m]:.3f}" if m in at else "-" for m in marks] + [
            f"{run['ap'][i]:.3f} ({run['epoch'][i]})", f"{tail.mean():.3f} +- {tail.std():.3f}",
            str(plateau_epoch(run["epoch"], run["ap"], rise)), str(run["epochs"]), f"{run['minutes']:.1f}",
            f"{run['train_s']:.1f} / {run['val_s']:.1f}"])
    return header, rows


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for run in runs:
        ax.plot(run["epoch"], run["ap"], marker=".", label=run["name"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AP@3px (pooled)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write(out, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plateau", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="training run folders (each with losses.csv)")
    p.add_argument("--rise", type=float, default=0.01, help="an AP gain smaller than this is not a rise")
    p.add_argument("--every", type=int, default=20, help="table columns every this many epochs")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--plot", type=Path, default=None, help="write the curves to this image file")
    args = p.parse_args(argv)
    runs, failures = [], []
    for folder in args.runs:
        try:
            runs.append(read_run(folder))
        except (ValueError, KeyError, OSError) as e:
            failures.append(str(e))
    if runs:
        print(render_table(*table(runs, args.rise, args.every), markdown=args.markdown))
        if args.plot:
            plot(runs, args.plot)
            print(f"plot: {args.plot}", file=sys.stderr)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
