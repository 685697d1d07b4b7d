"""Heatmap -> points: 3x3 max-pool NMS, top-k above a threshold, sub-pixel refinement.

Training validation, evaluation, detect.py and the annotation tool all decode through here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def nms(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Keep only the local maxima of a (B, 1, H, W) heatmap (others set to 0).

    Equal neighbours (a plateau, e.g. a sigmoid saturated to exactly 1.0 in float32 from a logit
    of 17) would all be maxima; only the first of them in raster order is kept, so one target
    gives one point.
    """
    peaks = F.max_pool2d(heat, kernel, stride=1, padding=kernel // 2)
    keep = peaks == heat
    h, w = heat.shape[-2:]
    r = kernel // 2
    earlier = F.pad(heat, (r, r, r, 0), value=float("nan"))  # nan never equals: no tie outside the map
    for dy in range(-r, 1):
        for dx in range(-r, r + 1 if dy < 0 else 0):
            keep &= earlier[..., r + dy:r + dy + h, r + dx:r + dx + w] != heat
    return heat * keep


def topk(heat: torch.Tensor, k: int, conf: float) -> torch.Tensor:
    """The at most ``k`` strongest pixels of a (H, W) map scoring >= ``conf``: (N, 3) (u, v, score)."""
    flat = heat.reshape(-1)
    scores, index = torch.topk(flat, min(k, flat.numel()))
    keep = (scores >= conf) & (scores > 0)  # 0 is a pixel NMS suppressed, never a peak
    scores, index = scores[keep], index[keep]
    width = heat.shape[-1]
    return torch.stack([(index % width).float(), (index // width).float(), scores], dim=1)


def refine_subpixel(heat: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Move integer peaks to the vertex of a parabola fitted to the log-heatmap on each axis.

    For a Gaussian-shaped peak the log is an exact parabola, so this recovers its true centre
    (the idea behind DARK, Zhang et al. 2020). Offsets are limited to half a pixel.
    """
    if len(peaks) == 0:
        return peaks
    h, w = heat.shape
    log = np.log(np.maximum(heat, 1e-10))
    out = peaks.copy()
    u = peaks[:, 0].astype(int)
    v = peaks[:, 1].astype(int)
    for axis, (size, c0) in enumerate(((w, u), (h, v))):
        lo, hi = np.clip(c0 - 1, 0, size - 1), np.clip(c0 + 1, 0, size - 1)
        if axis == 0:
            left, mid, right = log[v, lo], log[v, u], log[v, hi]
        else:
            left, mid, right = log[lo, u], log[v, u], log[hi, u]
        curvature = left - 2 * mid + right
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        offset = np.where((lo == c0) | (hi == c0), 0.0, offset)  # no fit on the border
        out[:, axis] += np.clip(np.nan_to_num(offset), -0.5, 0.5)
    return out


def decode_heatmap(heat: torch.Tensor, conf: float, max_points: int, subpixel: bool = True) -> np.ndarray:
    """Decode one (H, W) heatmap into (N, 3) float64 ``(u, v, score)`` in its pixel coordinates."""
    peaks = topk(nms(heat[None, None])[0, 0], max_points, conf).cpu().numpy().astype(np.float64)
    if subpixel:
        peaks = refine_subpixel(heat.detach().cpu().numpy().astype(np.float64), peaks)
    return peaks
