"""How close snapped clicks land to mask centroids: ``python -m landmark_annotation.snap_accuracy DATASET...``.

For every 8-connected mask component of DATASET/masks/<stem>.png (image in DATASET/images), 16
clicks are simulated 1 and 2 px off its centroid in 8 directions; a target's error is the worst of
its clicks (an unsnapped click counts as its own distance). Prints one table row per dataset and
target size class. Measuring only: writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from landmark_annotation.snap import snap_region
from simple_keypoint.convert import mask_components
from simple_keypoint.images import ImageError, find_images, read_image, to_gray

OFFSETS = [(d * np.cos(a), d * np.sin(a)) for d in (1.0, 2.0) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]


def worst_errors(dataset: Path, radius: int, problems: list[str]) -> list[tuple[int, float]]:
    """(mask area, worst click error in px) of every mask component in ``dataset``."""
    out = []
    images = {p.stem: p for p in find_images(dataset / "images")}
    for mask_path in sorted((dataset / "masks").glob("*.png")):
        if mask_path.stem not in images:
            problems.append(f"{mask_path}: no image of that name in {dataset / 'images'}")
            continue
        try:
            gray = to_gray(read_image(images[mask_path.stem]))
        except (ImageError, ValueError) as e:
            problems.append(str(e))
            continue
        mask = cv2.imdecode(np.fromfile(mask_path, np.uint8), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != gray.shape:
            problems.append(f"{mask_path}: unreadable or not the image's size")
            continue
        centres, areas = mask_components(mask, gray)
        for (cu, cv), area in zip(centres, areas, strict=True):
            errors = []
            for du, dv in OFFSETS:
                point = snap_region(gray, cu + du, cv + dv, radius).point or (cu + du, cv + dv)
                errors.append(float(np.hypot(point[0] - cu, point[1] - cv)))
            out.append((int(area), max(errors)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m landmark_annotation.snap_accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path, help="folders holding images/ and masks/")
    parser.add_argument("--radius", type=int, default=3, help="snap search radius in pixels (default 3)")
    parser.add_argument("--min-area", type=int, default=20, help="extended targets: mask area at least this (default 20)")
    args = parser.parse_args(argv)
    problems: list[str] = []
    print("| dataset | targets | mask area | worst-click error: median | 90 % | max | share <= 0.3 px |")
    print("|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        rows = worst_errors(dataset, args.radius, problems)
        for name, extended in ((f">= {args.min_area} px", True), (f"< {args.min_area} px", False)):
            errors = np.array([e for a, e in rows if (a >= args.min_area) == extended])
            if errors.size:
                print(f"| {dataset} | {errors.size} | {name} | {np.median(errors):.2f} | {np.percentile(errors, 90):.2f} | "
                      f"{errors.max():.2f} | {(errors <= 0.3).mean():.0%} |")
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
