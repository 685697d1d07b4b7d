"""Train the regression method: a small CNN that outputs one (x, y) in [0, 1], trained with MSE.

Regression predicts exactly one point, so it trains on images with exactly one target (the
others are counted and skipped).

    python -m simple_keypoint.regression.train --data data/train --epochs 40
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from simple_keypoint import training

DEFAULTS = dict(epochs=40, batch_size=8, lr=5e-4, crop=192, repeats=4)


def main(argv: list[str] | None = None) -> int:
    parser = training.make_parser("regression", __doc__.split("\n\n")[0], **DEFAULTS)
    training.add_unet_options(parser)
    args = parser.parse_args(argv)

    def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        # Crops always hold their one target (keep_target_in_crop); targets normalised like the output.
        size = torch.tensor([images.shape[-1], images.shape[-2]], device=images.device, dtype=torch.float32)
        target = (points[:, 0] + 0.5) / size
        return ((net(images) - target) ** 2).mean()

    model_args = {"widths": tuple(args.widths), "full_res_channels": args.full_res_channels, "context": args.context}
    training.train(args, "regression", model_args, loss_fn, max_targets=1, min_targets=1, keep_target_in_crop=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
