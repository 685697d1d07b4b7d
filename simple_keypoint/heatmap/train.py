"""Train the heatmap method: a SEB U-shape regressing Gaussians drawn at each point (shaped like its object).

    python -m simple_keypoint.heatmap.train --data data/train --epochs 60
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from simple_keypoint import backbone, training  # noqa: E402
from simple_keypoint.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from simple_keypoint.heatmap.loss import LOSSES, heatmap_loss  # noqa: E402
from simple_keypoint.heatmap.method import HEATMAP  # noqa: E402
from simple_keypoint.heatmap.target import gaussian_heatmaps  # noqa: E402
from simple_keypoint.methods import net_from_checkpoint  # noqa: E402
from simple_keypoint.paths import DefaultPathError, resolve_weights  # noqa: E402

__all__ = ["HeatmapConfig", "heatmap_loss", "main", "make_parser"]


@dataclass
class HeatmapConfig(training.TrainConfig):
    """A heatmap training run's settings: the shared ones with this method's defaults, its target
    and loss, distillation and the net's size."""

    # Chosen on a validation split carved from data/train (docs/history.md, "Ablation"); the shipped
    # model's data, schedule and threshold budget are flags on top of these (docs/decisions.md).
    epochs: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    crop: int = 128
    target_fraction: float = 0.5
    repeats: int = 4
    ema: float = 0.998
    shape_target: bool = True
    # the target and the loss
    sigma: float = 1.5
    loss: str = "wmse"
    pos_weight: float = 30.0
    # distillation
    teacher: str | None = None
    distill_weight: float = 1.0
    distill_on: str = "heatmap"
    # the net (backbone.add_options)
    size: str = backbone.DEFAULT_SIZE
    widths: list[int] | None = None
    full_res_channels: int = 4
    context: bool = False


def load_teacher(path: str) -> torch.nn.Module:
    """A heatmap checkpoint's net, frozen, for distillation. Raises TrainingError."""
    try:
        path = str(resolve_weights(path))
        _, net = net_from_checkpoint(load_checkpoint(path, HEATMAP.name), path)
    except (CheckpointError, DefaultPathError) as e:
        raise training.TrainingError(str(e)) from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(memory_format=training.FORMAT)


def make_loss(config: HeatmapConfig) -> training.LossFn:
    """The training loss of a run with ``config``: Gaussians drawn at the points, ``config.loss``
    against them, plus the teacher's term with ``config.teacher``. Raises TrainingError."""
    teacher = load_teacher(config.teacher) if config.teacher else None

    def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        target = gaussian_heatmaps(points, counts, images.shape[-2], images.shape[-1], config.sigma)
        logits = net(images)
        loss = heatmap_loss(logits, target, config.loss, config.pos_weight)
        if teacher is not None and net.training:  # validation loss stays the labels' alone, comparable across runs
            with torch.no_grad():
                taught = teacher.to(images.device)(images)
            if config.distill_on == "logits":
                loss = loss + config.distill_weight * torch.mean((logits - taught) ** 2)
            else:
                loss = loss + config.distill_weight * heatmap_loss(logits, torch.sigmoid(taught), config.loss, config.pos_weight)
        return loss

    return loss_fn


def make_parser() -> argparse.ArgumentParser:
    """The heatmap train command line; every default is :class:`HeatmapConfig`'s."""
    parser = training.make_parser(HEATMAP.name, __doc__.split("\n\n")[0], HeatmapConfig)
    parser.add_argument("--sigma", type=float,
                        help="radius (std, px) of the Gaussian drawn at each point; the narrowest with --shape-target")
    parser.add_argument("--shape-target", action=argparse.BooleanOptionalAction,
                        help="where a mask gives a target's extent, draw its Gaussian with the object's own spread "
                             "(second moments), so an extended object gets one peak at its centroid")
    parser.add_argument("--loss", choices=LOSSES,
                        help="the heatmap loss: wmse (MSE weighted up by --pos-weight inside the Gaussians), mse, or "
                             "focal (CenterNet's penalty-reduced focal loss)")
    parser.add_argument("--pos-weight", type=float, help="wmse: extra weight of the Gaussian area")
    parser.add_argument("--teacher",
                        help="a trained heatmap checkpoint (a .pt, or a shipped name: heatmap, heatmap_n) whose heatmaps the net "
                             "also learns to match (distillation)")
    parser.add_argument("--distill-weight", type=float, help="weight of the teacher's term in the loss")
    parser.add_argument("--distill-on", choices=("heatmap", "logits"),
                        help="match the teacher's sigmoid heatmap with --loss, or its logits with plain MSE")
    training.add_clutter_options(parser)
    backbone.add_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    config = HeatmapConfig.from_namespace(make_parser().parse_args(argv))
    return training.command_line(
        lambda: training.train(config, HEATMAP, backbone.model_args(config), make_loss=make_loss))


if __name__ == "__main__":
    sys.exit(main())
