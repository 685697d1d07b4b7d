"""The training target: a fixed-radius Gaussian drawn at each labelled point."""

from __future__ import annotations

import torch


def gaussian_heatmaps(points: torch.Tensor, counts: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Render (B, 1, H, W) targets: the max over each image's points of exp(-d^2 / 2 sigma^2).

    ``points`` is (B, K, 2) in pixel-index coordinates (u, v), sub-pixel exact (the peak is not
    rounded to a pixel centre); only the first ``counts[b]`` points of image b are drawn.
    An image with no points gets an all-zero target.
    """
    b, k, _ = points.shape
    device = points.device
    if k == 0:
        return torch.zeros(b, 1, height, width, device=device)
    u = torch.arange(width, device=device, dtype=torch.float32)
    v = torch.arange(height, device=device, dtype=torch.float32)
    gx = torch.exp(-((u[None, None] - points[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((v[None, None] - points[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, K, H)
    valid = (torch.arange(k, device=device)[None] < counts[:, None]).float()  # (B, K)
    maps = gy[..., :, None] * gx[..., None, :] * valid[..., None, None]  # (B, K, H, W)
    return maps.amax(dim=1, keepdim=True)
