"""Reproduce the seed article's recipes on a dataset split, as baselines for benchmarks/accuracy.py.

Heatmap: 3-channel input stretched to 360x480, a Gaussian of radius 30 px (sigma 10) at each
point, MSE on the raw output, argmax decoding (one point per image), 40 epochs.
Regression: the same input, a CNN with global max-pool + FC + sigmoid (x, y), MSE, 40 epochs.

    python -m benchmarks.seed_recipe            # trains both on data/train -> benchmarks/weights/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.seed_nets import SEED_SIZE, SeedHeatmapNet, SeedRegressionNet, argmax_point, seed_input, xy_point
from simple_keypoint.checkpoint import load_checkpoint, save_checkpoint
from simple_keypoint.dataset import Sample, load_dataset
from simple_keypoint.evaluate import ImageResult, score
from simple_keypoint.heatmap.target import gaussian_heatmaps
from simple_keypoint.regression.method import REGRESSION

ROOT = Path(__file__).resolve().parents[1]

SIGMA = 10.0  # radius 30 px = 3 sigma, at 360x480


def resized_points(sample: Sample) -> np.ndarray:
    """Pixel points of a sample mapped into the 360x480 input (pixel centres scale exactly)."""
    h, w = sample.image.shape
    return (sample.points + 0.5) * np.array([SEED_SIZE[1] / w, SEED_SIZE[0] / h]) - 0.5


def batches(samples: list[Sample], size: int, rng: np.random.Generator):  # noqa: ANN201
    order = rng.permutation(len(samples))
    for start in range(0, len(order), size):
        chunk = [samples[i] for i in order[start:start + size]]
        images = torch.cat([seed_input(s.image) for s in chunk])
        yield images, chunk


def train_seed(kind: str, samples: list[Sample], epochs: int, out: Path, seed: int = 0) -> None:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SeedHeatmapNet() if kind == "heatmap" else SeedRegressionNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    started = time.time()
    for epoch in range(1, epochs + 1):
        total = 0.0
        for images, chunk in tqdm(list(batches(samples, 8, rng)), desc=f"seed {kind} {epoch}/{epochs}", leave=False):
            if kind == "heatmap":
                points = [torch.tensor(resized_points(s), dtype=torch.float32) for s in chunk]
                k = max(len(p) for p in points)
                padded = torch.zeros(len(chunk), k, 2)
                for i, p in enumerate(points):
                    padded[i, :len(p)] = p
                counts = torch.tensor([len(p) for p in points])
                target = gaussian_heatmaps(padded, counts, *SEED_SIZE, SIGMA)
                loss = ((net(images) - target) ** 2).mean()
            else:  # single-target images only: the seed regression predicts one point
                target = torch.tensor(np.stack([(s.points[0] + 0.5) / s.image.shape[::-1] for s in chunk]),
                                      dtype=torch.float32)
                loss = ((net(images) - target) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(chunk)
        print(f"seed {kind} epoch {epoch}/{epochs} loss {total / len(samples):.5f} ({time.time() - started:.0f}s)", flush=True)
    save_checkpoint(out / f"seed_{kind}.pt", {"method": f"seed_{kind}", "model_state": net.state_dict(), "epochs": epochs})


@torch.inference_mode()
def seed_predictions(kind: str, path: Path, samples: list[Sample]) -> list[ImageResult]:
    net = SeedHeatmapNet() if kind == "heatmap" else SeedRegressionNet()
    net.load_state_dict(load_checkpoint(path)["model_state"])
    net.eval()
    results = []
    for s in samples:
        h, w = s.image.shape
        out = net(seed_input(s.image))
        pred = argmax_point(out, h, w) if kind == "heatmap" else xy_point(out, h, w)
        results.append(ImageResult(s.name, s.points, pred, s.image.size))
    return results


def seed_rows(folder: Path, samples: list[Sample], single: list[Sample]) -> dict[str, dict[str, float]]:
    """Rows for the accuracy table (a raw output has no fixed range: scored at threshold 0 / -inf)."""
    rows = {}
    if (folder / "seed_heatmap.pt").exists():
        rows["seed recipe: heatmap (360x480, radius 30, argmax)"] = score(
            seed_predictions("heatmap", folder / "seed_heatmap.pt", samples), -np.inf)
    if (folder / "seed_regression.pt").exists():
        rows[f"seed recipe: regression ({len(single)} single-target images)"] = score(
            seed_predictions("regression", folder / "seed_regression.pt", single), -np.inf)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_recipe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data/train"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/weights")
    p.add_argument("--only", choices=["heatmap", "regression"])
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    samples, _ = load_dataset(args.data, progress=False)
    for kind in ("heatmap", "regression"):
        if args.only in (None, kind):
            chosen = samples if kind == "heatmap" else [s for s in samples if REGRESSION.accepts(len(s.points))]
            train_seed(kind, chosen, args.epochs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
