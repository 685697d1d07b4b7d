"""Train the regression method: a small CNN that outputs one (x, y) in [0, 1], trained with MSE.

Regression predicts exactly one point, so it trains on images with exactly one target (the
others are counted and skipped; see ``RegressionMethod``).

    python -m simple_keypoint.regression.train --data data/train --epochs 40
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse  # noqa: E402

import torch  # noqa: E402

from simple_keypoint import backbone, training  # noqa: E402
from simple_keypoint.regression.loss import point_loss  # noqa: E402
from simple_keypoint.regression.method import REGRESSION  # noqa: E402


@dataclass
class RegressionConfig(training.TrainConfig):
    """A regression training run's settings: the shared ones with this method's defaults, and the net's size."""

    epochs: int = 40
    batch_size: int = 8
    lr: float = 5e-4
    crop: int = 192
    repeats: int = 4
    # the net (backbone.add_options)
    size: str = backbone.DEFAULT_SIZE
    widths: list[int] | None = None
    full_res_channels: int = 4
    context: bool = False


def make_parser() -> argparse.ArgumentParser:
    parser = training.make_parser(REGRESSION.name, __doc__.split("\n\n")[0], RegressionConfig)
    backbone.add_options(parser)
    return parser


def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    # Crops always hold their one target (the method's keep_target_in_crop).
    return point_loss(net(images), points, images.shape[-2], images.shape[-1])


def main(argv: list[str] | None = None) -> int:
    config = RegressionConfig.from_namespace(make_parser().parse_args(argv))
    return training.command_line(lambda: training.train(config, REGRESSION, backbone.model_args(config), loss_fn))


if __name__ == "__main__":
    sys.exit(main())
