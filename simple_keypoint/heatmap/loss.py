"""The heatmap method's training loss: heatmap logits against Gaussian targets (:mod:`.target`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "wmse", "focal")


def heatmap_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, pos_weight: float) -> torch.Tensor:
    """Loss between heatmap logits and Gaussian targets.

    mse: plain MSE of the sigmoid output. wmse: MSE with the Gaussian area weighted
    ``1 + pos_weight * target``, so the few target pixels are not drowned by the background.
    focal: CenterNet's penalty-reduced focal loss, normalised by the number of peaks.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown heatmap loss {kind!r} (one of {', '.join(LOSSES)})")
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
