"""The heatmap method as the rest of the package sees it (see :mod:`simple_keypoint.method`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from simple_keypoint.heatmap.decode import decode_logits
from simple_keypoint.heatmap.model import FastHeatmapNet, HeatmapNet
from simple_keypoint.method import DecodeSettings, Method


class HeatmapMethod(Method):
    """Heatmap logits per pixel; points are its peaks (any number per image)."""

    name = "heatmap"
    net_class = HeatmapNet
    onnx_output = "logits"
    has_heatmap = True
    picks_threshold = True

    def inference_net(self, net: nn.Module) -> nn.Module:
        return FastHeatmapNet.checked(net)

    def decode(self, out: torch.Tensor, padded: tuple[int, int], settings: DecodeSettings) -> np.ndarray:
        return decode_logits(out.cpu().numpy(), settings.conf, settings.max_points, settings.subpixel, settings.relative)


HEATMAP = HeatmapMethod()
