"""The seed article's two networks, re-implemented as baselines for the speed and accuracy benchmarks.

Both take a 3-channel frame resized to 360 x 480 (H x W), as the article did. The heatmap net is
decoded by a plain argmax (one point per frame); the regression net outputs (x, y) in [0, 1]
through a sigmoid. ``SeedHeatmapNet`` costs ~0.37 GFLOP per frame (``python -m
benchmarks.seed_nets`` counts it). Untrained here; the accuracy benchmark trains them.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simple_keypoint.images import standardise, to_gray

SEED_SIZE = (360, 480)  # (H, W) every frame is resized to


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SeedSEB(nn.Module):
    """The article's decoder step: up2(conv3x3(deep)) * conv1x1(skip)."""

    def __init__(self, deep: int, skip: int):
        super().__init__()
        self.deep = nn.Conv2d(deep, skip, 3, 1, 1)
        self.skip = nn.Conv2d(skip, skip, 1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.deep(deep), scale_factor=2, mode="bilinear", align_corners=False)
        return up * self.skip(skip)


class SeedHeatmapNet(nn.Module):
    """(B, 3, 360, 480) -> heatmap logits (B, 1, 360, 480).

    Encoder: one conv3x3+BN+ReLU per level (6, 12, 20, 40 channels), 2x2 max-pool between
    levels; decoder: SEB blocks back to full resolution; a 1x1 conv to one channel.
    """

    def __init__(self, widths: tuple[int, ...] = (6, 12, 20, 40)):
        super().__init__()
        self.encoder = nn.ModuleList(conv_bn_relu(cin, cout) for cin, cout in zip((3, *widths[:-1]), widths, strict=True))
        self.decoder = nn.ModuleList(SeedSEB(deep, skip) for deep, skip in zip(widths[:0:-1], widths[-2::-1], strict=True))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, level in enumerate(self.encoder):
            x = level(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        y = skips.pop()
        for seb in self.decoder:
            y = seb(y, skips.pop())
        return self.head(y)


class SeedRegressionNet(nn.Module):
    """(B, 3, 360, 480) -> (B, 2) normalised (x, y): conv blocks, global max-pool, FC, sigmoid."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip((3, *widths[:-1]), widths, strict=True)):
            layers += ([nn.MaxPool2d(2)] if i else []) + [conv_bn_relu(cin, cout)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.amax(self.features(x), dim=(2, 3))
        return torch.sigmoid(self.fc(pooled))


def seed_input(image: np.ndarray) -> torch.Tensor:
    """Any H x W [x C] frame -> (1, 3, 360, 480): gray, standardised per image like our models'
    input (so the comparison is about the networks), resized, copied to 3 channels."""
    gray = cv2.resize(standardise(to_gray(image)), SEED_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(gray)[None, None].expand(1, 3, *SEED_SIZE).contiguous()


def argmax_point(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """The seed decoder: the heatmap's maximum, mapped back to an H x W frame: (1, 3) (u, v, score)."""
    h, w = logits.shape[-2:]
    index = int(torch.argmax(logits.reshape(-1)))
    score = float(torch.sigmoid(logits.reshape(-1)[index]))
    v, u = divmod(index, w)
    return np.array([[(u + 0.5) * width / w - 0.5, (v + 0.5) * height / h - 0.5, score]])


def xy_point(xy: torch.Tensor, height: int, width: int) -> np.ndarray:
    """The seed regression output (x, y) in [0, 1] -> (1, 3) (u, v, 1) in an H x W frame."""
    x, y = (float(t) for t in xy.reshape(-1)[:2])
    return np.array([[x * width - 0.5, y * height - 0.5, 1.0]])


if __name__ == "__main__":
    from torch.utils.flop_counter import FlopCounterMode

    for net in (SeedHeatmapNet(), SeedRegressionNet()):
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            net.eval()(torch.zeros(1, 3, *SEED_SIZE))
        params = sum(p.numel() for p in net.parameters())
        print(f"{type(net).__name__}: {params} parameters, {counter.get_total_flops() / 1e9:.3f} GFLOP per 360x480 frame")
