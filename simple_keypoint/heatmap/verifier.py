"""A second look at every candidate: a small CNN scores a full-resolution window around each peak.

The U-shape's peaks, taken at a recall-leaning threshold, hold nearly every target; what one score
from one small map cannot do is tell a dim spot on clean sky (a target) from the hot corner of a
building (not one). The verifier sees, for each candidate, a ``WINDOW`` x ``WINDOW`` window of the
frame around it at full resolution (the standardised gray minus the window's median, so only the
local contrast counts), the U-shape's logits there, and the candidate's score relative to its frame
as a constant plane; it outputs one logit, and its sigmoid is the score the user sees.

It belongs to the heatmap checkpoint (key ``verifier``: its settings and weights) and runs wherever
the heatmap model runs: :class:`simple_keypoint.predict.Localizer` calls :meth:`Verifier.rescore`
on every frame, through PyTorch or through its own ONNX graph. Trained by
:mod:`simple_keypoint.heatmap.train_verifier`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

WINDOW = 32
CHANNELS = 3  # local contrast, U-shape logits, the candidate's relative score
# Scales that bring each channel near unit spread before the first batch norm; clipping keeps one
# saturated pixel (a sun glint, a logit of 40) from dominating a window.
CONTRAST_CLIP, CONTRAST_SCALE = 20.0, 4.0
LOGIT_CLIP, LOGIT_SCALE = 20.0, 8.0


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VerifierNet(nn.Module):
    """(B, CHANNELS, WINDOW, WINDOW) windows -> (B,) logits: three stages of two 3x3 convs (the
    second of each halves the size), then the mean and the max of the last map, and a linear layer."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), in_channels: int = CHANNELS):
        super().__init__()
        layers, cin = [], in_channels
        for width in widths:
            layers += [conv_bn_relu(cin, width), conv_bn_relu(width, width, stride=2)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))[:, 0]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def channels(context: int) -> int:
    """Input channels of a verifier seeing ``context`` times wider around each candidate (1: no wider view)."""
    return CHANNELS + 2 * (context > 1)


def _cut(plane: np.ndarray, us: np.ndarray, vs: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size) views of ``plane``'s windows centred on pixels (us, vs), borders replicated; an
    even window has one more pixel after its centre than before it."""
    before, after = (size - 1) // 2, size // 2
    padded = cv2.copyMakeBorder(plane, before, after, before, after, cv2.BORDER_REPLICATE)
    return sliding_window_view(padded, (size, size))[vs, us]


def _medians(windows: np.ndarray) -> np.ndarray:
    """np.median over each (size, size) window, (N, 1, 1); one partition instead of np.median's two."""
    flat = windows.reshape(len(windows), -1)
    half = flat.shape[1] // 2
    part = np.partition(flat, half, axis=1)
    middle = part[:, half] if flat.shape[1] % 2 else (part[:, :half].max(axis=1) + part[:, half]) / 2
    return middle.reshape(-1, 1, 1)


def _contrast(gray_windows: np.ndarray) -> np.ndarray:
    return np.clip(gray_windows - _medians(gray_windows), -CONTRAST_CLIP, CONTRAST_CLIP) / CONTRAST_SCALE


def _scaled_logits(logit_windows: np.ndarray) -> np.ndarray:
    return np.clip(logit_windows, -LOGIT_CLIP, LOGIT_CLIP) / LOGIT_SCALE


def windows(gray: np.ndarray, logits: np.ndarray, points: np.ndarray, size: int = WINDOW, context: int = 1) -> np.ndarray:
    """The verifier's input (N, channels(context), size, size) float32 for candidates ``points`` (N, 3)
    ``(u, v, score)`` of a standardised gray frame and its heatmap logits (same H x W).

    Each window is centred on the candidate's pixel (rounded), borders replicated. With ``context``
    > 1, two more channels show contrast and logits of a ``context`` times wider window shrunk to
    ``size`` (blocks of ``context`` x ``context`` pixels averaged): whether the candidate sits on open
    sky or on a roof's edge.
    """
    out = np.empty((len(points), channels(context), size, size), np.float32)
    if len(points) == 0:
        return out
    gray = np.ascontiguousarray(gray, np.float32)
    logits = np.ascontiguousarray(logits, np.float32)
    h, w = gray.shape
    points = np.asarray(points, np.float64).reshape(-1, 3)
    us = np.clip(np.round(points[:, 0]), 0, w - 1).astype(np.intp)
    vs = np.clip(np.round(points[:, 1]), 0, h - 1).astype(np.intp)
    out[:, 0] = _contrast(_cut(gray, us, vs, size))
    out[:, 1] = _scaled_logits(_cut(logits, us, vs, size))
    out[:, 2] = _scaled_logits(logit(points[:, 2]))[:, None, None]
    if context > 1:
        def shrunk(plane: np.ndarray) -> np.ndarray:
            wide = _cut(plane, us, vs, size * context)
            return wide.reshape(len(points), size, context, size, context).mean(axis=(2, 4))
        out[:, 3] = _contrast(shrunk(gray))
        out[:, 4] = _scaled_logits(shrunk(logits))
    return out


def sigmoid64(x: np.ndarray) -> np.ndarray:
    """Sigmoid in float64, so confident scores stay ordered (float32 rounds them all to 1.0)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


class Verifier:
    """A trained verifier and the candidate stage's settings; ``run`` maps a window batch to logits
    (PyTorch or onnxruntime, see :func:`torch_runner`)."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], candidate_conf: float, max_candidates: int,
                 size: int = WINDOW, context: int = 1):
        self.run, self.candidate_conf, self.max_candidates = run, candidate_conf, max_candidates
        self.size, self.context = size, context

    def rescore(self, gray: np.ndarray, logits: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``candidates`` (N, 3) with their scores replaced by the verifier's, same order."""
        out = np.array(candidates, np.float64).reshape(-1, 3)
        if len(out):
            out[:, 2] = sigmoid64(self.run(windows(gray, logits, out, self.size, self.context)))
        return out


def build_net(settings: dict[str, Any]) -> VerifierNet:
    return VerifierNet(tuple(settings.get("widths", (16, 32, 64))), channels(int(settings.get("context", 1))))


def torch_runner(net: nn.Module, device: torch.device | str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    net = net.to(device).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(batch).to(device)).float().cpu().numpy()
    return run


def verifier_from_checkpoint(entry: dict[str, Any], device: torch.device | str = "cpu") -> Verifier:
    """The :class:`Verifier` (PyTorch) of a checkpoint's ``verifier`` entry."""
    net = build_net(entry)
    net.load_state_dict(entry["state"])
    return Verifier(torch_runner(net, device), float(entry["candidate_conf"]), int(entry["max_candidates"]),
                    int(entry.get("window", WINDOW)), int(entry.get("context", 1)))


def candidate_settings(entry: dict[str, Any]) -> tuple[float, int]:
    conf, count = float(entry["candidate_conf"]), int(entry["max_candidates"])
    if not (0 <= conf <= 1 and math.isfinite(conf)) or count < 1:
        raise ValueError(f"bad candidate settings: conf {conf}, max {count}")
    return conf, count
