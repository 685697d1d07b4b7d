"""A small CNN that regresses one point (x, y) in [0, 1] directly.

A classic regression head (global pooling + fully connected layers) throws away *where* things
are, and such nets learn to predict the image centre. This head keeps position: a CNN scores every
pixel, a softmax turns the scores into weights, the weighted mean of each pixel's coordinate is
taken in logit space, and a sigmoid maps it back to (0, 1). The output is still a plain (x, y)
trained with MSE, but it moves with the target (a soft-argmax, as in DSNT, Nibali et al. 2018).

The scoring CNN is the shared SEB U-shape (:mod:`simple_keypoint.backbone`), as in the heatmap
method, so the two differ only in what they learn from: here one coordinate pair per image, there
a Gaussian drawn at every point.
"""

from __future__ import annotations

import torch
from torch import nn

from simple_keypoint.backbone import SEBUNet


def cell_centres(n: int, device: torch.device) -> torch.Tensor:
    """Normalised centres (i + 0.5) / n of n pixels (or grid cells)."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n


class RegressionNet(nn.Module):
    """Gray image (B, 1, H, W) -> (B, 2) normalised (x, y); H and W multiples of ``stride``."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), full_res_channels: int = 4, context: bool = False):
        super().__init__()
        self.widths = tuple(widths)
        self.scorer = SEBUNet(self.widths, full_res_channels, context)
        self.stride = self.scorer.stride

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel scores (B, H, W)."""
        return self.scorer(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.locate(x)[:, :2]

    def locate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3): x, y in [0, 1] and the confidence *logit*: ``sigmoid`` of it is the softmax mass
        within the 3x3 pixels around the best pixel.

        A logit, not the mass: for a sharp peak the float32 mass is exactly 1.0, which would tie
        confident images and leave their ranking (and AP) to rounding. ``log(inside / outside)``
        is computed from the two sides' own sums, so it stays exact however sharp the peak.
        """
        scores = self.score_map(x)
        b, h, w = scores.shape
        weights = torch.softmax(scores.reshape(b, -1), dim=1).reshape(b, h, w)
        # The mean is taken in logit space and mapped back by a sigmoid, so the head ends in sigmoid
        # (x, y) like any regression head; for a peaked softmax it is the peak's own position.
        logit_x = torch.logit(cell_centres(w, x.device))
        logit_y = torch.logit(cell_centres(h, x.device))
        mean_x = (weights.sum(1) * logit_x).sum(1)
        mean_y = (weights.sum(2) * logit_y).sum(1)
        peak = scores.reshape(b, -1).argmax(1)
        u = torch.arange(w, device=x.device)[None, None, :] - (peak % w)[:, None, None]
        v = torch.arange(h, device=x.device)[None, :, None] - torch.div(peak, w, rounding_mode="floor")[:, None, None]
        near = (u.abs() <= 1) & (v.abs() <= 1)  # (B, H, W); the padded input always has pixels outside
        inside = torch.logsumexp(scores.masked_fill(~near, -torch.inf), dim=(1, 2))
        outside = torch.logsumexp(scores.masked_fill(near, -torch.inf), dim=(1, 2))
        return torch.stack([torch.sigmoid(mean_x), torch.sigmoid(mean_y), inside - outside], dim=1)
