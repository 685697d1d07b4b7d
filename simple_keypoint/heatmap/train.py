"""Train the heatmap method: a SEB U-shape regressing Gaussians drawn at each point (shaped like its object).

    python -m simple_keypoint.heatmap.train --data data/train --epochs 60
"""

from __future__ import annotations

import argparse
import sys
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

__all__ = ["DEFAULTS", "heatmap_loss", "main"]

# Chosen on a validation split carved from data/train (docs/history.md, "Ablation"); the shipped
# model's data, schedule and threshold budget are flags on top of these (docs/decisions.md).
DEFAULTS = dict(epochs=60, batch_size=8, lr=2e-3, crop=128, target_fraction=0.5, repeats=4, ema=0.998)


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


def main(argv: list[str] | None = None) -> int:
    parser = training.make_parser(HEATMAP.name, __doc__.split("\n\n")[0], **DEFAULTS)
    parser.add_argument("--sigma", type=float, default=1.5,
                        help="radius (std, px) of the Gaussian drawn at each point; the narrowest with --shape-target")
    parser.add_argument("--shape-target", action=argparse.BooleanOptionalAction, default=True,
                        help="where a mask gives a target's extent, draw its Gaussian with the object's own spread "
                             "(second moments), so an extended object gets one peak at its centroid")
    parser.add_argument("--loss", choices=LOSSES, default="wmse")
    parser.add_argument("--pos-weight", type=float, default=30.0, help="wmse: extra weight of the Gaussian area")
    parser.add_argument("--teacher", default=None,
                        help="a trained heatmap checkpoint (a .pt, or a shipped name: heatmap, heatmap_n) whose heatmaps the net "
                             "also learns to match (distillation)")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the teacher's term in the loss")
    parser.add_argument("--distill-on", choices=("heatmap", "logits"), default="heatmap",
                        help="match the teacher's sigmoid heatmap with --loss, or its logits with plain MSE")
    training.add_clutter_options(parser)
    backbone.add_options(parser)
    args = parser.parse_args(argv)

    def run() -> object:
        teacher = load_teacher(args.teacher) if args.teacher else None

        def loss_fn(net: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
            target = gaussian_heatmaps(points, counts, images.shape[-2], images.shape[-1], args.sigma)
            logits = net(images)
            loss = heatmap_loss(logits, target, args.loss, args.pos_weight)
            if teacher is not None and net.training:  # validation loss stays the labels' alone, comparable across runs
                with torch.no_grad():
                    taught = teacher.to(images.device)(images)
                if args.distill_on == "logits":
                    loss = loss + args.distill_weight * torch.mean((logits - taught) ** 2)
                else:
                    loss = loss + args.distill_weight * heatmap_loss(logits, torch.sigmoid(taught), args.loss, args.pos_weight)
            return loss

        return training.train(args, HEATMAP, backbone.model_args(args), loss_fn)

    return training.command_line(run)


if __name__ == "__main__":
    sys.exit(main())
