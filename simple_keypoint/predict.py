"""Run a trained model on images: ``load_model(path).predict(image)`` -> (N, 3) ``(u, v, score)``.

Points are in the input image's 0-based pixel-index coordinates, best first. Both methods share
the pre-processing (gray, standardise, pad to the net's stride); only the output step differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint
from simple_keypoint.heatmap.decode import decode_heatmap
from simple_keypoint.heatmap.model import HeatmapNet
from simple_keypoint.images import load_gray, standardise, to_gray
from simple_keypoint.regression.model import RegressionNet

MODELS = {"heatmap": HeatmapNet, "regression": RegressionNet}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(method: str, model_args: dict[str, Any]) -> torch.nn.Module:
    return MODELS[method](**model_args)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right with zeros (the standardised mean) to a multiple."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class Localizer:
    """A trained model plus its decoding settings. Use :func:`load_model` to get one."""

    def __init__(self, method: str, net: torch.nn.Module, conf: float = 0.3, max_points: int = 20,
                 device: str | torch.device | None = None, max_side: int = 4096, subpixel: bool = True):
        self.method = method
        self.device = pick_device(device)
        self.net = net.to(self.device).eval()
        self.conf, self.max_points, self.max_side, self.subpixel = conf, max_points, max_side, subpixel

    @staticmethod
    def standardised(image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """A path or an H x W [x C] array (uint8/uint16/float) -> standardised gray float32."""
        return load_gray(image) if isinstance(image, (str, os.PathLike)) else standardise(to_gray(image))

    @torch.inference_mode()
    def _forward(self, gray: np.ndarray) -> tuple[torch.Tensor, float, tuple[int, int]]:
        """Run the net on a standardised gray image. Returns its output, the downscale factor
        (1 = none) and the padded input size."""
        scale = 1.0
        if max(gray.shape) > self.max_side:  # protects memory on huge frames; points map back
            scale = self.max_side / max(gray.shape)
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = gray.shape
        x = pad_to_multiple(torch.from_numpy(gray)[None, None].to(self.device), self.net.stride)
        if self.method == "regression":
            return self.net.locate(x)[0], scale, x.shape[-2:]
        return torch.sigmoid(self.net(x))[0, 0, :h, :w], scale, x.shape[-2:]

    def heatmap(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The heatmap (heatmap method) at the input image's size, float32 in [0, 1]."""
        if self.method != "heatmap":
            raise ValueError("a regression model has no heatmap")
        gray = self.standardised(image)
        heat, scale, _ = self._forward(gray)
        heat = heat.cpu().numpy()
        if scale != 1.0:
            heat = cv2.resize(heat, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
        return heat

    def predict(self, image: str | os.PathLike | np.ndarray, conf: float | None = None,
                max_points: int | None = None) -> np.ndarray:
        """Points ``(u, v, score)`` (N, 3) float64 in the image's pixel coordinates, best first."""
        return self.predict_standardised(self.standardised(image), conf, max_points)

    def predict_standardised(self, gray: np.ndarray, conf: float | None = None,
                             max_points: int | None = None) -> np.ndarray:
        """:meth:`predict` for an image already passed through :meth:`standardised`."""
        conf = self.conf if conf is None else conf
        max_points = self.max_points if max_points is None else max_points
        out, scale, (padded_h, padded_w) = self._forward(gray)
        if self.method == "regression":
            x, y, score = out.double().cpu().numpy()
            points = np.array([[x * padded_w - 0.5, y * padded_h - 0.5, score]])
            points = points[points[:, 2] >= conf][:max_points]
        else:
            points = decode_heatmap(out, conf, max_points, self.subpixel)
        if scale != 1.0:  # pixel centres scale as (u + 0.5) / scale - 0.5
            points[:, :2] = (points[:, :2] + 0.5) / scale - 0.5
        # The net saw the image padded to its stride; a regression point may land in the padding.
        h, w = gray.shape
        points[:, 0] = points[:, 0].clip(-0.5, w - 0.5)
        points[:, 1] = points[:, 1].clip(-0.5, h - 0.5)
        return points


def localizer_from_checkpoint(checkpoint: dict[str, Any], device: str | torch.device | None = None,
                              path: str | os.PathLike = "<checkpoint>") -> Localizer:
    method = checkpoint["method"]
    if not isinstance(method, str) or method not in MODELS:
        raise CheckpointError(f"{path}: unknown method {method!r}")
    model_args, state = checkpoint.get("model_args", {}), checkpoint["model_state"]
    try:
        net = build_model(method, model_args)
    except (TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad {method} model settings {model_args!r} ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: model_state is not a set of named tensors")
    # Compare before loading: load_state_dict's own error is a many-line list of parameter names.
    expected = net.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        example = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}" if wrong
                   else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise CheckpointError(f"{path}: weights do not fit the {method} architecture {model_args}: "
                              f"{len(wrong)} wrong-shaped, {len(missing)} missing, {len(unexpected)} unexpected "
                              f"tensor(s), e.g. {example}")
    net.load_state_dict(state)
    try:
        return Localizer(method, net, device=device, **checkpoint.get("decode", {}))
    except TypeError as e:
        raise CheckpointError(f"{path}: bad decode settings {checkpoint.get('decode')!r} ({e})") from None


def load_model(path: str | os.PathLike, device: str | torch.device | None = None) -> Localizer:
    """Load a checkpoint of either method; the method is read from the checkpoint."""
    return localizer_from_checkpoint(load_checkpoint(path), device, Path(path))
