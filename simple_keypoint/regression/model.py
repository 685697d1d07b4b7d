"""A small CNN that regresses one point (x, y) in [0, 1] directly.

A classic regression head (global pooling + fully connected layers) throws away *where* things
are, and such nets learn to predict the image centre. This head keeps position: the CNN scores
every cell of a 1/4-resolution grid, a softmax turns the scores into weights, the weighted mean of
each cell's coordinate is taken in logit space, and a sigmoid maps it back to (0, 1). The output
is still a plain (x, y) trained with MSE, but it can move with the target (a soft-argmax, as in
DSNT, Nibali et al. 2018).
"""

from __future__ import annotations

import torch
from torch import nn

from simple_keypoint.heatmap.model import conv_bn_relu


def cell_centres(n: int, device: torch.device) -> torch.Tensor:
    """Normalised centres (i + 0.5) / n of n grid cells."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n


class RegressionNet(nn.Module):
    """Gray image (B, 1, H, W) -> (B, 2) normalised (x, y); H and W multiples of ``stride``."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32), context_layers: int = 2):
        super().__init__()
        self.widths = tuple(widths)
        self.stride = 2 ** (len(self.widths) - 1)
        layers = [conv_bn_relu(1, self.widths[0])]
        for cin, cout in zip(self.widths[:-1], self.widths[1:], strict=False):
            layers += [conv_bn_relu(cin, cout, stride=2), conv_bn_relu(cout, cout)]
        # Dilated layers widen the view so clutter can be told from a target without pooling.
        for d in range(context_layers):
            c = self.widths[-1]
            layers += [nn.Conv2d(c, c, 3, 1, 2 ** (d + 1), 2 ** (d + 1), bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(self.widths[-1], 1, 1)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Per-cell scores (B, h, w) at 1/stride resolution."""
        return self.score(self.features(x))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.locate(x)[:, :2]

    def locate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3): x, y in [0, 1] and a confidence, the softmax weight within one cell of the peak."""
        scores = self.score_map(x)
        b, h, w = scores.shape
        weights = torch.softmax(scores.reshape(b, -1), dim=1).reshape(b, h, w)
        logit_x = torch.logit(cell_centres(w, x.device))
        logit_y = torch.logit(cell_centres(h, x.device))
        mean_x = (weights.sum(1) * logit_x).sum(1)
        mean_y = (weights.sum(2) * logit_y).sum(1)
        # Confidence: the largest softmax mass in any 3x3 cells, near 1 for one clear target.
        mass = nn.functional.avg_pool2d(weights[:, None], 3, 1, 1, count_include_pad=False) * 9
        confidence = mass.reshape(b, -1).max(1).values.clamp(max=1.0)
        return torch.stack([torch.sigmoid(mean_x), torch.sigmoid(mean_y), confidence], dim=1)
