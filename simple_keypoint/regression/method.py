"""The regression method as the rest of the package sees it (see :mod:`simple_keypoint.method`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from simple_keypoint.method import DecodeSettings, Method
from simple_keypoint.regression.model import RegressionNet


class Locate(nn.Module):
    """The regression net's ``locate`` (x, y, confidence logit) as a module's forward: what
    prediction runs and the ONNX graph holds."""

    def __init__(self, net: RegressionNet):
        super().__init__()
        self.net = net
        self.stride = net.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.locate(x)


class RegressionMethod(Method):
    """One (x, y) per image and a confidence; trained on images with exactly one target."""

    name = "regression"
    net_class = RegressionNet
    onnx_output = "locate"
    min_targets = max_targets = 1
    keep_target_in_crop = True

    def inference_net(self, net: nn.Module) -> nn.Module:
        return Locate(net)

    def onnx_dynamic_axes(self) -> dict[int, str]:
        return {0: "batch"}

    def image_output(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return out[0]

    def decode(self, out: torch.Tensor, padded: tuple[int, int], settings: DecodeSettings) -> np.ndarray:
        padded_h, padded_w = padded
        x, y, logit = out.double().cpu().numpy()
        score = 1.0 / (1.0 + np.exp(-logit))  # in float64, as for heatmap peaks: no ties at 1.0
        points = np.array([[x * padded_w - 0.5, y * padded_h - 0.5, score]])
        return points[points[:, 2] >= settings.conf][:settings.max_points]


REGRESSION = RegressionMethod()
