"""A small U-shaped net that outputs one heatmap channel; its decoder upsamples with SEB blocks.

SEB (semantic embedding branch): the deeper map goes through a 3x3 conv and a bilinear x2
upsample, the skip map through a 1x1 conv, and the two are multiplied, so deep context gates
where the fine features may fire. Work is done at 1/2..1/16 resolution; the only full-resolution
layers are a 1x1 conv of the input and the last product, which keeps the net fast on a CPU
while still letting raw pixel intensities place the peak to a fraction of a pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SEB(nn.Module):
    """Fuse a deep map into a skip map twice its size: up(conv3x3(deep)) * conv1x1(skip)."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.deep = nn.Conv2d(deep_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(skip_channels, out_channels, 1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.deep(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return up * self.skip(skip)


class GlobalContext(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) on the deepest map: the image's mean feature gates
    every channel, so the net can judge a blob against the whole frame (a speck in a clean sky vs
    one among a cloud bank's hundred). A few hundred multiply-adds per frame."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.sigmoid(self.excite(F.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))


class HeatmapNet(nn.Module):
    """Gray image (B, 1, H, W) -> heatmap logits (B, 1, H, W); H and W multiples of ``stride``.

    ``widths`` are the channel counts at 1/2, 1/4, 1/8, 1/16 ... of the input size; ``context``
    adds a :class:`GlobalContext` gate on the deepest map.
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), full_res_channels: int = 4, context: bool = False):
        super().__init__()
        self.widths = tuple(widths)
        self.stride = 2 ** len(self.widths)
        self.stem = conv_bn_relu(1, self.widths[0], stride=2)
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn_relu(cin, cout, stride=2), conv_bn_relu(cout, cout))
            for cin, cout in zip(self.widths[:-1], self.widths[1:], strict=False)
        )
        self.context = GlobalContext(self.widths[-1]) if context else None
        self.up = nn.ModuleList(
            SEB(deep, skip, skip) for deep, skip in zip(self.widths[:0:-1], self.widths[-2::-1], strict=False)
        )
        self.to_full = SEB(self.widths[0], 1, full_res_channels)
        self.head = nn.Conv2d(full_res_channels, 1, 1)
        # Start every pixel at p ~ 0.01 so the first steps are not spent unlearning false peaks.
        nn.init.constant_(self.head.bias, -4.6)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder down to 1/2^len(widths), SEBs back up to 1/2: what the last SEB fuses with ``x``."""
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        if self.context is not None:
            y = self.context(y)
        for seb in self.up:
            y = seb(y, skips.pop())
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.to_full(self.features(x), x))
