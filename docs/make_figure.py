"""The README's picture: detect's overlays of a few SIRST test images, each beside an 8x zoom of
its best point (nearest-neighbour pixels, so the heatmap blob and the sub-pixel point show on the
pixel grid; the cross is the decoded point).

    python docs/make_figure.py                      # -> docs/detect.jpg, with weights/heatmap.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simple_keypoint import load_model  # noqa: E402
from simple_keypoint.checkpoint import CheckpointError  # noqa: E402
from simple_keypoint.detect import draw_overlay  # noqa: E402
from simple_keypoint.images import ImageError, read_image  # noqa: E402
from simple_keypoint.options import HelpFormatter  # noqa: E402
from simple_keypoint.paths import WEIGHTS_HELP, DefaultPathError, resolve_weights  # noqa: E402

HEIGHT, ZOOM, HALF = 256, 8, 16  # panel height; zoom factor; half-size of the zoomed window in pixels


def zoom_panel(image: np.ndarray, heat: np.ndarray, point: np.ndarray, heat_alpha: float) -> np.ndarray:
    """A (2 HALF x 2 HALF)-pixel window around ``point``, heatmap blended, scaled by ZOOM, with a cross."""
    u, v = int(round(point[0])), int(round(point[1]))
    padded = cv2.copyMakeBorder(draw_overlay(image, np.zeros((0, 3)), heat, heat_alpha), HALF, HALF, HALF, HALF, cv2.BORDER_CONSTANT)
    window = padded[v:v + 2 * HALF, u:u + 2 * HALF]
    big = cv2.resize(window, None, fx=ZOOM, fy=ZOOM, interpolation=cv2.INTER_NEAREST)
    # Pixel u's centre sits at (u - (u0 - 0.5)) * ZOOM in the zoom, u0 = u_rounded - HALF the window's first pixel.
    cu, cv = ((point[:2] - (np.array([u, v]) - HALF) + 0.5) * ZOOM).round().astype(int)
    for ink, width in (((0, 0, 0), 4), ((0, 255, 0), 2)):
        cv2.drawMarker(big, (int(cu), int(cv)), ink, cv2.MARKER_CROSS, 28, width, cv2.LINE_AA)
    return cv2.resize(big, (HEIGHT, HEIGHT), interpolation=cv2.INTER_NEAREST)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--weights", default="heatmap", help=WEIGHTS_HELP)
    p.add_argument("--images", nargs="+", default=["Misc_15", "Misc_111", "Misc_175"], help="stems in data/test/images")
    p.add_argument("--heat-alpha", type=float, default=0.4, help="strength of the JET heatmap, as detect's --heat-alpha")
    p.add_argument("--out", default=str(ROOT / "docs/detect.jpg"), help="the JPEG to write")
    args = p.parse_args(argv)
    try:
        model = load_model(resolve_weights(args.weights), device="cpu")
    except (CheckpointError, DefaultPathError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows, failures = [], []
    for stem in args.images:
        try:
            image = read_image(ROOT / "data/test/images" / f"{stem}.png")
        except ImageError as e:  # one line, and the figure is made of the others
            failures.append(str(e))
            print(f"skipped: {e}", file=sys.stderr)
            continue
        points, heat = model.predict_with_heatmap(image)
        overlay = draw_overlay(image, points, heat, args.heat_alpha)
        overlay = cv2.resize(overlay, (round(overlay.shape[1] * HEIGHT / overlay.shape[0]), HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.putText(overlay, stem, (6, HEIGHT - 8),  # bottom left: points near the top keep their labels
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        best = points[0] if len(points) else np.array([image.shape[1] / 2, image.shape[0] / 2, 0.0])
        rows.append((overlay, zoom_panel(image, heat, best, args.heat_alpha)))
    if not rows:
        print("error: no image could be read", file=sys.stderr)
        return 1
    width = max(o.shape[1] for o, _ in rows)
    tiles = [np.hstack([cv2.copyMakeBorder(o, 0, 0, 0, width - o.shape[1], cv2.BORDER_CONSTANT), z]) for o, z in rows]
    cv2.imwrite(args.out, np.vstack(tiles), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {args.out}" + (f" ({len(failures)} image(s) skipped)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
