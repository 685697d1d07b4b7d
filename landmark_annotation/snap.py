"""Click snapping: move a click onto the intensity-weighted centroid of the nearby bright peak.

Infrared point targets are a few pixels wide and dim, so a hand click lands anywhere on or near
them. Snapping finds the brightest pixel within ``radius`` of the click, then takes the
background-subtracted centroid of a fixed window around that peak. The window depends only on the
peak, not on where the click fell, so two clicks on the same target give the same sub-pixel point.
"""

from __future__ import annotations

import numpy as np

# Half-size of the centroid window around the peak: a 7 x 7 patch covers targets up to ~5 px wide.
CENTROID_HALF = 3
# A peak must stand this much above the local background (in units of the background's spread)
# to count; otherwise the click is kept as it is (nothing to snap to).
MIN_CONTRAST = 3.0


def _patch(gray: np.ndarray, u: int, v: int, half: int) -> tuple[np.ndarray, int, int]:
    """The patch of ``gray`` within ``half`` pixels of (u, v), clipped to the image, and its origin."""
    h, w = gray.shape
    u0, v0 = max(u - half, 0), max(v - half, 0)
    return gray[v0:min(v + half + 1, h), u0:min(u + half + 1, w)], u0, v0


def snap_point(gray: np.ndarray, u: float, v: float, radius: int = 3) -> tuple[float, float] | None:
    """Snap a click at pixel coordinates (u, v) to the local peak's centroid.

    ``gray`` is the raw single-channel image (any scale). Returns the snapped (u, v), or ``None``
    when there is no peak that stands out from the background (the caller then keeps the click).
    """
    h, w = gray.shape
    cu, cv = int(round(u)), int(round(v))
    if not (0 <= cu < w and 0 <= cv < h):
        return None
    search, su, sv = _patch(gray, cu, cv, max(int(radius), 0))
    # First maximum in raster order: deterministic when the peak is a flat plateau.
    pv, pu = np.unravel_index(int(np.argmax(search)), search.shape)
    pu, pv = int(pu) + su, int(pv) + sv

    # Background and its spread from a ring well outside the target (median and MAD are robust
    # to the target itself and to a neighbouring hot pixel).
    outer, ou, ov = _patch(gray, pu, pv, CENTROID_HALF + 3)
    yy, xx = np.mgrid[ov:ov + outer.shape[0], ou:ou + outer.shape[1]]
    ring = outer[np.maximum(np.abs(xx - pu), np.abs(yy - pv)) > CENTROID_HALF].astype(np.float64)
    if ring.size == 0:
        ring = outer.astype(np.float64).ravel()
    background = float(np.median(ring))
    spread = max(float(np.median(np.abs(ring - background))) * 1.4826, 1e-6 * max(abs(background), 1.0))
    peak = float(gray[pv, pu])
    if peak - background < MIN_CONTRAST * spread:
        return None

    patch, qu, qv = _patch(gray, pu, pv, CENTROID_HALF)
    # Weights above a small threshold: background noise inside the window would otherwise pull the
    # centroid toward the window's centre (the integer peak).
    weights = np.clip(patch.astype(np.float64) - (background + 0.1 * (peak - background)), 0, None)
    total = weights.sum()
    if total <= 0:
        return None
    yy, xx = np.mgrid[qv:qv + patch.shape[0], qu:qu + patch.shape[1]]
    return float((weights * xx).sum() / total), float((weights * yy).sum() / total)
