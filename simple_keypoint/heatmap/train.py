"""Train the heatmap method: a SEB U-shape regressing fixed-radius Gaussians drawn at each point.

    python -m simple_keypoint.heatmap.train --data data/train --epochs 40
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F

from simple_keypoint import training
from simple_keypoint.heatmap.target import gaussian_heatmaps

# Chosen on a validation split carved from data/train (README, "Ablation").
DEFAULTS = dict(epochs=60, batch_size=8, lr=2e-3, crop=192, target_fraction=0.5, repeats=4, ema=0.998)


def heatmap_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, pos_weight: float) -> torch.Tensor:
    """Loss between heatmap logits and Gaussian targets.

    mse: plain MSE of the sigmoid output. wmse: MSE with the Gaussian area weighted
    ``1 + pos_weight * target``, so the few target pixels are not drowned by the background.
    focal: CenterNet's penalty-reduced focal loss, normalised by the number of peaks.
    """
    heat = torch.sigmoid(logits)
    if kind == "mse":
        return ((heat - target) ** 2).mean()
    if kind == "wmse":
        return ((1 + pos_weight * target) * (heat - target) ** 2).mean()
    heat = heat.clamp(1e-4, 1 - 1e-4)
    # The pixel nearest each point is the positive (sub-pixel targets rarely reach exactly 1).
    peak = (target == F.max_pool2d(target, 3, 1, 1)) & (target > 0.5)
    pos = -torch.log(heat) * (1 - heat) ** 2 * peak
    neg = -torch.log(1 - heat) * heat**2 * (1 - target) ** 4 * ~peak
    return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)


def main(argv: list[str] | None = None) -> int:
    parser = training.make_parser("heatmap", __doc__.split("\n\n")[0], **DEFAULTS)
    parser.add_argument("--sigma", type=float, default=1.5, help="radius (std, px) of the Gaussian drawn at each point")
    parser.add_argument("--loss", choices=["mse", "wmse", "focal"], default="wmse")
    parser.add_argument("--pos-weight", type=float, default=30.0, help="wmse: extra weight of the Gaussian area")
    training.add_unet_options(parser)
    args = parser.parse_args(argv)

    def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        target = gaussian_heatmaps(points, counts, images.shape[-2], images.shape[-1], args.sigma)
        return heatmap_loss(net(images), target, args.loss, args.pos_weight)

    model_args = {"widths": tuple(args.widths), "full_res_channels": args.full_res_channels, "context": args.context}
    training.train(args, "heatmap", model_args, loss_fn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
