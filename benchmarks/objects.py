"""One object, one point, on objects made of several hot spots (a close aircraft: engines, wing tips).

    python -m benchmarks.objects                              # the shipped s and n models
    python -m benchmarks.objects --weights runs/heatmap/weights/best.pt heatmap --markdown

Each case is a 256 x 256 crop of a HIT-UAV test frame (away from its boxes of other objects) with
one object pasted in: 1 spot (the plain case) or 2-4 small real target patches cut from the TEST
splits' masks (SIRST test, NUDT-SIRST test: never trained on), placed within 2-6 px of a common
centre and summed (``simple_keypoint.dataset.composite_patch``, the same rule training pastes by).
The object's point is the intensity-weighted centroid of the whole. Each model runs at its stored
threshold; per number of spots: the share of objects with exactly one point within the object's
reach (its spots' extent + 3 px), the share with 2 or more, the mean distance of the single point
from the centroid, and the share of objects whose single point is within 3 px of it.
Deterministic (seeded); nothing is chosen on these cases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from simple_keypoint.dataset import Patch, composite_patch, cut_patches, load_clutter, load_dataset, paste
from simple_keypoint.paths import DefaultPathError, resolve_weights
from simple_keypoint.predict import load_model
from simple_keypoint.tables import render_table

ROOT = Path(__file__).resolve().parents[1]


def run_name(path: Path) -> str:
    """``runs/<run>/weights/best.pt`` by its run's name, any other file by its own."""
    return path.parent.parent.name if path.parent.name == "weights" and path.stem in ("best", "last") else path.name
SEED = 7
SIDE = 256
REACH = 3.0  # px beyond the object's spots where a point still counts as on the object


def test_spots() -> list[Patch]:
    """Small real target patches (<= 10 px across) from the two test splits' masks."""
    samples = [s for folder in ("data/test", "data/nudt-sirst/test") for s in load_dataset(ROOT / folder, progress=False)[0]]
    return [p for p in cut_patches(samples) if max(p.delta.shape) <= 10]


def background_crops(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` SIDE x SIDE crops of HIT-UAV test frames that cover none of their blocked boxes."""
    frames = load_clutter(ROOT / "data" / "hit-uav" / "test", progress=False)[0]
    crops = []
    while len(crops) < count:
        frame = frames[rng.integers(len(frames))]
        h, w = frame.image.shape
        y, x = int(rng.integers(0, h - SIDE + 1)), int(rng.integers(0, w - SIDE + 1))
        if frame.blocked is None or not frame.blocked[y:y + SIDE, x:x + SIDE].any():
            crops.append(frame.image[y:y + SIDE, x:x + SIDE].copy())
    return crops


def make_cases(per_kind: int, seed: int = SEED) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
    """(spots, image, the object's point (u, v), its reach in px) for 1..4 spots, ``per_kind`` each."""
    rng = np.random.default_rng(seed)
    spots = test_spots()
    backgrounds = background_crops(4 * per_kind, rng)
    cases = []
    for kind in range(1, 5):
        for i in range(per_kind):
            parts = [spots[j] for j in rng.integers(len(spots), size=kind)]
            whole = parts[0] if kind == 1 else composite_patch(parts, rng, radius=float(rng.uniform(2.0, 6.0)))
            # Strong enough to be seen: x2 contrast (paste draws x0.5-1.5 on top).
            whole = Patch(whole.delta * 2, whole.centre, whole.spread)
            image, points = paste(backgrounds[(kind - 1) * per_kind + i], np.zeros((0, 2)), whole, rng)
            reach = float(np.hypot(*whole.delta.shape)) / 2 + REACH
            cases.append((kind, image, points[0], reach))
    return cases


def score_model(weights: str, cases: list[tuple[int, np.ndarray, np.ndarray, float]]) -> list[list[str]]:
    model = load_model(weights)
    rows = []
    for kind in range(1, 5):
        mine = [c for c in cases if c[0] == kind]
        one = many = near = 0
        errors = []
        for _, image, point, reach in mine:
            pred = model.predict_standardised(image)
            d = np.hypot(*(pred[:, :2] - point).T) if len(pred) else np.zeros(0)
            on = int((d <= reach).sum())
            one, many = one + (on == 1), many + (on >= 2)
            if on == 1:
                errors.append(float(d[d <= reach][0]))
                near += errors[-1] <= 3.0
        n = len(mine)
        rows.append([run_name(Path(weights)), str(kind), str(n), f"{one / n:.2f}", f"{many / n:.2f}",
                     f"{np.mean(errors):.2f}" if errors else "-", f"{near / n:.2f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.objects", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["heatmap", "heatmap_n"],
                   help="heatmap checkpoints or shipped model names, each at its stored threshold")
    p.add_argument("--per-kind", type=int, default=100, help="objects per number of spots")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)
    try:
        checkpoints = [str(resolve_weights(weights)) for weights in args.weights]
    except DefaultPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cases = make_cases(args.per_kind)
    rows = [row for weights in checkpoints for row in score_model(weights, cases)]
    print(render_table(["model", "spots", "objects", "exactly 1 point", "2+ points", "error of the 1 point, px",
                        "1 point within 3 px"], rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
