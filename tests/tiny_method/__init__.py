"""A third method that lives outside the package: one peak per image from a 3x3-conv score map.

It exists to prove a method is a plug-in: nothing in simple_keypoint knows it, and
``register(TINY)`` is all that training, prediction, ONNX export and evaluation need.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simple_keypoint.method import DecodeSettings, Method


class TinyNet(nn.Module):
    """Gray image (B, 1, H, W) -> score logits (B, 1, H, W), any size (stride 1)."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.stride = 1
        self.body = nn.Sequential(nn.Conv2d(1, channels, 3, 1, 1), nn.ReLU(), nn.Conv2d(channels, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def tiny_loss(net: nn.Module, images: torch.Tensor, points: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against a map that is 1 at each labelled point's pixel."""
    target = torch.zeros(images.shape[0], 1, *images.shape[-2:], device=images.device)
    for b in range(images.shape[0]):
        for u, v in points[b, : int(counts[b])].round().long().tolist():
            if 0 <= v < target.shape[2] and 0 <= u < target.shape[3]:
                target[b, 0, v, u] = 1.0
    return F.binary_cross_entropy_with_logits(net(images), target, pos_weight=torch.tensor(50.0, device=images.device))


class TinyMethod(Method):
    name = "tiny_peak"
    net_class = TinyNet
    onnx_output = "scores"
    min_targets = 1  # trains and is scored on images with at least one target

    def decode(self, out: torch.Tensor, padded: tuple[int, int], settings: DecodeSettings) -> np.ndarray:
        logits = out.double().cpu().numpy()
        v, u = np.unravel_index(int(np.argmax(logits)), logits.shape)
        score = 1.0 / (1.0 + np.exp(-logits[v, u]))
        points = np.array([[u, v, score]], np.float64)
        return points[points[:, 2] >= settings.conf][: settings.max_points]


TINY = TinyMethod()
