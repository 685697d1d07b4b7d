"""The regression method's training loss: MSE of the predicted (x, y) against the one target."""

from __future__ import annotations

import torch


def point_loss(xy: torch.Tensor, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """MSE between predicted normalised (B, 2) ``xy`` and each image's first labelled point (pixel
    coordinates in ``points`` (B, K, 2)), normalised like the output: ``x = (u + 0.5) / width``."""
    size = torch.tensor([width, height], device=xy.device, dtype=torch.float32)
    return ((xy - (points[:, 0] + 0.5) / size) ** 2).mean()
