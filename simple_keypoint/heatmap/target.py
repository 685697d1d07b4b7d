"""The training target: a Gaussian drawn at each labelled point, shaped like its object where the
object's extent is known (a mask), else with a fixed radius."""

from __future__ import annotations

import torch


def object_covariance(spreads: torch.Tensor, sigma: float) -> torch.Tensor:
    """(..., 3) ``var_u, var_v, cov_uv`` of objects -> the Gaussian's covariance, same layout: the
    object's own, with each principal axis widened to at least ``sigma`` (a 1-px target and a point
    without a mask, spread 0, get the fixed radius; a long aircraft keeps its length and direction)."""
    a, b, c = spreads.unbind(-1)
    mean, half_gap = (a + b) / 2, torch.sqrt(((a - b) / 2) ** 2 + c**2)
    major = (mean + half_gap).clamp(min=sigma**2)
    minor = (mean - half_gap).clamp(min=sigma**2)
    angle = 0.5 * torch.atan2(2 * c, a - b)  # of the major axis
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([major * cos**2 + minor * sin**2, major * sin**2 + minor * cos**2,
                        (major - minor) * sin * cos], dim=-1)


def gaussian_heatmaps(points: torch.Tensor, counts: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Render (B, 1, H, W) targets: the max over each image's points of its Gaussian, peak 1.

    ``points`` is (B, K, 2) in pixel-index coordinates (u, v), sub-pixel exact (the peak is not
    rounded to a pixel centre): each Gaussian is exp(-d^2 / 2 sigma^2). With (B, K, 5) the last
    three columns are each object's spread (:class:`simple_keypoint.dataset.Sample`), and its
    Gaussian has the covariance :func:`object_covariance` makes of it. Only the first ``counts[b]``
    points of image b are drawn; an image with no points gets an all-zero target.
    """
    b = points.shape[0]
    device = points.device
    k = int(counts.max()) if len(counts) else 0  # only slots some image uses: most crops hold 0-2 points
    if k == 0:
        return torch.zeros(b, 1, height, width, device=device)
    points = points[:, :k].float()
    valid = (torch.arange(k, device=device)[None] < counts[:, None].to(device)).float()  # (B, K)
    du = torch.arange(width, device=device, dtype=torch.float32)[None, None] - points[..., 0:1]  # (B, K, W)
    dv = torch.arange(height, device=device, dtype=torch.float32)[None, None] - points[..., 1:2]  # (B, K, H)
    if points.shape[-1] < 5:
        gx = torch.exp(-(du**2) / (2 * sigma**2))
        gy = torch.exp(-(dv**2) / (2 * sigma**2))
        maps = gy[..., :, None] * gx[..., None, :] * valid[..., None, None]  # (B, K, H, W)
        return maps.amax(dim=1, keepdim=True)
    cov = object_covariance(points[..., 2:5], sigma)
    det = cov[..., 0] * cov[..., 1] - cov[..., 2] ** 2
    # exp(-q / 2), q = d^T cov^-1 d, with cov^-1 = [[var_v, -cov_uv], [-cov_uv, var_u]] / det.
    iu, iv, iuv = (x[..., None, None] for x in (cov[..., 1] / det, cov[..., 0] / det, -cov[..., 2] / det))
    du, dv = du[..., None, :], dv[..., :, None]
    q = iu * du**2 + 2 * iuv * du * dv + iv * dv**2
    maps = torch.exp(-0.5 * q) * valid[..., None, None]
    return maps.amax(dim=1, keepdim=True)
