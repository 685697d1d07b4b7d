"""Train the heatmap method: a SEB U-shape regressing fixed-radius Gaussians drawn at each point.

    python -m simple_keypoint.heatmap.train --data data/train --epochs 60
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from simple_keypoint import backbone, training  # noqa: E402
from simple_keypoint.heatmap.loss import LOSSES, heatmap_loss  # noqa: E402
from simple_keypoint.heatmap.method import HEATMAP  # noqa: E402
from simple_keypoint.heatmap.target import gaussian_heatmaps  # noqa: E402

__all__ = ["DEFAULTS", "heatmap_loss", "main"]

# Chosen on a validation split carved from data/train (README, "Ablation").
DEFAULTS = dict(epochs=60, batch_size=8, lr=2e-3, crop=192, target_fraction=0.5, repeats=4, ema=0.998)


def main(argv: list[str] | None = None) -> int:
    parser = training.make_parser(HEATMAP.name, __doc__.split("\n\n")[0], **DEFAULTS)
    parser.add_argument("--sigma", type=float, default=1.5, help="radius (std, px) of the Gaussian drawn at each point")
    parser.add_argument("--loss", choices=LOSSES, default="wmse")
    parser.add_argument("--pos-weight", type=float, default=30.0, help="wmse: extra weight of the Gaussian area")
    backbone.add_options(parser)
    args = parser.parse_args(argv)

    def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        target = gaussian_heatmaps(points, counts, images.shape[-2], images.shape[-1], args.sigma)
        return heatmap_loss(net(images), target, args.loss, args.pos_weight)

    return training.command_line(lambda: training.train(args, HEATMAP, backbone.model_args(args), loss_fn))


if __name__ == "__main__":
    sys.exit(main())
