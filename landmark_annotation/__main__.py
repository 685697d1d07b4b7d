"""``simple-keypoint label IMAGES_DIR [--labels LABELS_DIR] [--weights W] [--carry]`` (also
``python -m landmark_annotation``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark_annotation.defaults import PROPOSAL_FLOOR, PROPOSAL_THRESHOLD
from landmark_annotation.keys import KEYS
from simple_keypoint.options import FRACTION, Parser
from simple_keypoint.paths import SHIPPED_NAMES


def make_parser() -> argparse.ArgumentParser:
    keys = "\n".join(f"  {k:<30} {v}" for k, v in KEYS)
    parser = Parser(
        prog="simple-keypoint label",
        description="Click-to-label tool for tiny, dim infrared point targets.\n"
                    "Opens at the first unlabelled image. Every edit is saved at once to LABELS_DIR/<image stem>.txt\n"
                    "(line 1: number of points, then 'x y' normalised with x = (u + 0.5) / W; '0' = no target).",
        epilog=f"keys (also shown in the window with ? or F1):\n{keys}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path,
                        help="folder of images (jpg/png/bmp/tif, 8/16-bit); a folder picker opens when omitted")
    parser.add_argument("--labels", type=Path, help="folder for label files (default: IMAGES_DIR/../labels)")
    parser.add_argument("--weights", metavar="W",
                        help=f"a shipped model ({', '.join(SHIPPED_NAMES)}), a checkpoint (.pt) or an .onnx; its points are shown "
                             "as proposals on unlabelled images: Enter accepts them, a click replaces them; "
                             "a proposal is never saved by itself")
    parser.add_argument("--conf", type=FRACTION, default=None,
                        help="show proposals scoring at least this (keys , and . change it; default: "
                             f"{PROPOSAL_THRESHOLD:g}, 1 false proposal per image on validation for the shipped s "
                             "model; recall first, as every proposal is checked before Enter)")
    # The option's name before the commands shared --conf; kept so old command lines still work.
    parser.add_argument("--score-threshold", dest="conf", type=FRACTION, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--carry", action="store_true",
                        help="video frames: propose the previous frame's points on the next unlabelled frame, moved "
                             "by their motion over the last two frames and re-snapped there (j accepts and moves on)")
    parser.add_argument("--no-snap", action="store_true", help="start with snapping off (toggle with c)")
    parser.add_argument("--snap-radius", type=int, default=3, help="snapping search radius in pixels (default 3)")
    parser.add_argument("--low", type=float, default=1.0, help="display window low percentile (default 1)")
    parser.add_argument("--high", type=float, default=99.9, help="display window high percentile (default 99.9)")
    parser.add_argument("--device", default="cpu", help="device for --weights (default cpu)")
    parser.add_argument("--open-labelme", type=Path, metavar="DIR",
                        help="before opening: labels from DIR/<stem>.json (labelme point shapes) for images with no "
                             "label file yet (existing labels are never overwritten; default: none)")
    parser.add_argument("--open-coco", type=Path, metavar="FILE",
                        help="before opening: labels from a COCO keypoints JSON, same rule (default: none)")
    parser.add_argument("--save-labelme", type=Path, metavar="DIR",
                        help="on quit: one labelme JSON per labelled image in DIR (default: none)")
    parser.add_argument("--save-coco", type=Path, metavar="FILE",
                        help="on quit: every labelled image in one COCO keypoints JSON (default: none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --save-labelme and --save-coco replace files that already exist (without it, "
                             "the tool refuses to start when they would)")
    return parser


def pick_folder() -> Path | None:
    """Ask for the images folder with a dialog; a dataset root (holding images/) is accepted too."""
    import tkinter as tk
    from tkinter import filedialog

    root = tk.Tk()
    root.withdraw()
    chosen = filedialog.askdirectory(title="Folder of images to label", mustexist=True)
    root.destroy()
    if not chosen:
        return None
    folder = Path(chosen)
    return folder / "images" if (folder / "images").is_dir() else folder


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    images = args.images
    if images is None:
        try:
            images = pick_folder()
        except Exception as e:  # no display: say so instead of a traceback
            print(f"error: no IMAGES_DIR given and cannot open a folder picker ({e})", file=sys.stderr)
            return 2
        if images is None:
            print("no folder chosen", file=sys.stderr)
            return 1
    if not images.is_dir():
        print(f"error: {images}: not a folder", file=sys.stderr)
        return 2
    import cv2

    # A broken image is reported in the window by name; OpenCV's own decoder chatter is noise.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    from landmark_annotation.app import run
    from landmark_annotation.display import Windowing
    from landmark_annotation.session import Session

    proposer, threshold = None, PROPOSAL_THRESHOLD
    if args.weights is not None:
        from simple_keypoint.checkpoint import CheckpointError
        from simple_keypoint.paths import DefaultPathError, resolve_weights
        from simple_keypoint.predict import load_model

        try:
            model = load_model(resolve_weights(args.weights), args.device)
        except (CheckpointError, DefaultPathError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        def proposer(raw):  # every peak down to the floor: the threshold only hides the weaker ones
            return model.predict(raw, conf=min(PROPOSAL_FLOOR, model.conf))

        threshold = min(PROPOSAL_THRESHOLD, model.conf)  # never stricter than the model's own
    session = Session(images, args.labels, proposer=proposer, carry=args.carry, snap=not args.no_snap,
                      snap_radius=args.snap_radius)
    session.score_threshold = threshold if args.conf is None else args.conf
    if not session.images:
        print(f"error: {images}: no images (jpg/png/bmp/tif)", file=sys.stderr)
        return 2
    from landmark_annotation import interchange

    # Checked before the window opens: finding out on quit would be too late to choose another name.
    taken = interchange.existing_exports(session, args.save_labelme, args.save_coco)
    if taken and not args.overwrite:
        print(f"error: {interchange.refusal(taken, args.save_labelme, args.save_coco)}", file=sys.stderr)
        return 2
    for option, opener in ((args.open_labelme, interchange.open_labelme), (args.open_coco, interchange.open_coco)):
        if option is not None:
            print(opener(session, option).summary(f"opened {option}:"))
    print(f"{len(session.images)} image(s) in {images}; labels in {session.labels_dir} "
          f"({len(session.labelled)} labelled)")
    code = run(session, Windowing(low=args.low, high=args.high))
    failed = False
    for option, saver in ((args.save_labelme, interchange.save_labelme), (args.save_coco, interchange.save_coco)):
        if option is not None:
            report = saver(session, option, overwrite=args.overwrite)
            failed |= bool(report.problems)
            print(report.summary(f"saved {option}:"), file=sys.stderr if report.problems else sys.stdout)
    return code or int(failed)


if __name__ == "__main__":
    sys.exit(main())
