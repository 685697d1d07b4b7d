"""Validation curves of a verifier run: each validation set's Pd and false alarms at each threshold.

    python -m benchmarks.verifier_curves runs/verifier/best.pt --markdown

The validation candidates are mined again exactly as the run mined them (from the settings stored
with the verifier; its candidate cache makes this fast), scored once by the checkpoint's
verifier and once by the heatmap alone, and for every threshold of a grid each set reports Pd@3px
(target sets) or false alarms per frame (all sets). The threshold that ships is picked from these
curves by :func:`~simple_keypoint.heatmap.train_verifier.pick_by_budgets`, as training picks it: the
lowest one where every target-free set stays within its false alarms per megapixel and every target
set within its false alarms per image. Never run on test data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simple_keypoint.checkpoint import load_checkpoint, save_checkpoint
from simple_keypoint.evaluate import ImageResult, score
from simple_keypoint.heatmap.train_verifier import VerifierConfig, load_candidates, per_frame, pick_by_budgets, verifier_scores
from simple_keypoint.heatmap.verifier import build_net
from simple_keypoint.predict import load_model
from simple_keypoint.tables import render_table

GRID = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)


def curve_rows(sets: dict[str, list[ImageResult]], grid: tuple[float, ...]) -> list[list[str]]:
    rows = []
    for conf in grid:
        row = [f"{conf:g}"]
        for results in sets.values():
            m = score(results, conf)
            fa = m["FA/img@3px"]
            row.append(f"{m['Pd@3px']:.3f} / {fa:.3f}" if m["targets"] else f"{fa:.3f}")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.verifier_curves", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint with a verifier (a verifier run's best.pt, weights/heatmap.pt)")
    p.add_argument("--clutter-per-mpx", type=float, default=None, help="false-alarm budget of the target-free sets "
                                                                         "(default: the run's)")
    p.add_argument("--targets-per-image", type=float, default=None, help="false-alarm budget of the target sets (default: the run's)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--write", action="store_true",
                   help="store the verifier's pick as the checkpoint's threshold, and its budgets with the verifier's settings")
    args = p.parse_args(argv)
    path = Path(args.checkpoint)
    checkpoint = load_checkpoint(path)
    cfg = VerifierConfig(**checkpoint["verifier"]["train_args"])
    clutter = cfg.max_false_per_mpx if args.clutter_per_mpx is None else args.clutter_per_mpx
    targets = cfg.max_false_per_image if args.targets_per_image is None else args.targets_per_image
    model = load_model(path, device="cpu")
    model.verifier = None
    _, val = load_candidates(model, cfg, checkpoint.get("train_args", {}))
    net = build_net(checkpoint["verifier"])
    net.load_state_dict(checkpoint["verifier"]["state"])
    header = ["threshold"] + [c.name for c in val]
    for title, scores in (("heatmap alone", [c.points[:, 2] for c in val]),
                          ("with the verifier", [verifier_scores(net, c, cfg) for c in val])):
        sets = {c.name: per_frame(c, s) for c, s in zip(val, scores, strict=True)}
        conf = pick_by_budgets(sets, clutter, targets)
        picked = [f"{conf:.4f}"] + curve_rows(sets, (conf,))[0][1:]
        print(f"\n{title}: Pd / false alarms per frame (target sets), false alarms per frame (clutter); "
              f"last row: the budgets' pick ({clutter:g}/MPx clutter, {targets:g}/image targets)")
        print(render_table(header, curve_rows(sets, GRID) + [picked], markdown=args.markdown))
    if args.write:
        verifier = {**checkpoint["verifier"], "train_args": {**checkpoint["verifier"]["train_args"],
                                                               "max_false_per_mpx": clutter, "max_false_per_image": targets}}
        save_checkpoint(path, {**checkpoint, "verifier": verifier, "decode": {**checkpoint.get("decode", {}), "conf": conf}})
        print(f"\n{path}: threshold {conf:.4f} stored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
