"""The heatmap net: the shared SEB U-shape (:mod:`simple_keypoint.backbone`) read as heatmap logits."""

from __future__ import annotations

from simple_keypoint.backbone import SEB, FastSEBUNet, GlobalContext, SEBUNet, conv_bn_relu

__all__ = ["SEB", "FastHeatmapNet", "GlobalContext", "HeatmapNet", "conv_bn_relu"]


class HeatmapNet(SEBUNet):
    """Gray image (B, 1, H, W) -> heatmap logits (B, 1, H, W); H and W multiples of ``stride``."""


# The inference rewrite of the U-shape's full-resolution end, under the name the heatmap method uses.
FastHeatmapNet = FastSEBUNet
