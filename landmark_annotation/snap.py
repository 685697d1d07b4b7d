"""Click snapping: move a click onto the intensity-weighted centroid of the target it falls on.

The point is defined the way mask-centroid labels are (SIRST's points are the intensity-weighted
centroid of each 8-connected mask component): here the "mask" is the connected region of pixels
standing out from the local background that the click falls in or next to. So a compact 2-px
target and a flat-topped 12-px blob both get their own centre, not the centre of a fixed window.

Steps: pixel noise from the surroundings (MAD of the image minus its 5x5 median); the seed is the brightest
(lightly smoothed) pixel within ``radius`` of the click; the region grows 8-connected from it over
pixels above a threshold set relative to the local background (re-estimated in a band just
outside the region), the noise and the seed's height; a
region that is too large or leaks out of the context window is not a target (cloud edge, gradient)
and the click is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from simple_keypoint.convert import mask_components

# Half-size of the window the region may grow in and whose pixels give the noise estimate.
CONTEXT_HALF = 24
# The seed must stand this many noise sigmas above the background, or nothing is snapped.
MIN_CONTRAST = 4.0
# Region pixels: above background + max(NOISE_FACTOR * noise, fraction * seed height), the
# fraction raised step by step until the region is bounded (landmark_annotation/README.md: how it was chosen).
NOISE_FACTOR = 3.0
HEIGHT_FRACTIONS = (0.3, 0.4, 0.55, 0.7)
# Largest region still taken as one point target (pixels); larger is background structure.
MAX_AREA = 600


@dataclass(frozen=True)
class Snap:
    """Where a click went: ``point`` is None when nothing stood out (the click stays); ``region``
    holds the (v, u) pixels whose centroid it is."""

    point: tuple[float, float] | None
    region: np.ndarray
    reason: str = ""


def _window(shape: tuple[int, int], u: int, v: int, half: int) -> tuple[slice, slice]:
    h, w = shape
    return slice(max(v - half, 0), min(v + half + 1, h)), slice(max(u - half, 0), min(u + half + 1, w))


def _grow(patch: np.ndarray, seed: tuple[int, int], threshold: float) -> np.ndarray:
    """The 8-connected region of ``patch > threshold`` holding ``seed`` (v, u); empty if the seed is below."""
    above = (patch > threshold).astype(np.uint8)
    if not above[seed]:
        return np.zeros(patch.shape, bool)
    _, labels = cv2.connectedComponents(above, connectivity=8)
    return labels == labels[seed]


def _surroundings(region: np.ndarray) -> np.ndarray:
    """A band 2-5 px outside ``region``: the target's own local background."""
    kernel = np.ones((3, 3), np.uint8)
    near = cv2.dilate(region.astype(np.uint8), kernel, iterations=2)
    far = cv2.dilate(region.astype(np.uint8), kernel, iterations=5)
    return (far > 0) & (near == 0)


def snap_region(gray: np.ndarray, u: float, v: float, radius: int = 3) -> Snap:
    """Snap a click at pixel coordinates (u, v) (raw single-channel image, any scale)."""
    h, w = gray.shape
    cu, cv = int(round(u)), int(round(v))
    empty = np.zeros((0, 2), np.int64)
    if not (0 <= cu < w and 0 <= cv < h):
        return Snap(None, empty, "outside the image")
    # Seed on a 3x3 mean: one hot noise pixel must not outrank the target next to it.
    r = max(int(radius), 0)
    rows, cols = _window(gray.shape, cu, cv, r + 2)
    near = np.nan_to_num(gray[rows, cols].astype(np.float32))
    smooth = cv2.blur(near, (3, 3), borderType=cv2.BORDER_REPLICATE)
    yy, xx = np.mgrid[rows, cols]
    smooth = np.where(np.hypot(xx - cu, yy - cv) <= r + 0.5, smooth, -np.inf)
    k = int(np.argmax(smooth))  # first maximum in raster order: deterministic on a plateau
    # Then the brightest raw pixel next to the smoothed maximum.
    nv, nu = _window(gray.shape, int(xx.ravel()[k]), int(yy.ravel()[k]), 1)
    around = np.nan_to_num(gray[nv, nu])
    j = np.unravel_index(int(np.argmax(around)), around.shape)
    seed_u, seed_v = int(j[1]) + nu.start, int(j[0]) + nv.start
    # Everything else depends only on the seed, so clicks anywhere on a target agree exactly.
    rows, cols = _window(gray.shape, seed_u, seed_v, CONTEXT_HALF)
    patch = np.ascontiguousarray(np.nan_to_num(gray[rows, cols].astype(np.float32)))
    seed = (seed_v - rows.start, seed_u - cols.start)
    # Pixel noise, not clutter: the spread of the image minus its local median (a cloudy sky has
    # a wide spread of values but a target still stands out of its own neighbourhood).
    detail = patch - cv2.medianBlur(patch, 5) if min(patch.shape) >= 5 else patch - np.median(patch)
    noise = max(float(np.median(np.abs(detail - np.median(detail)))) * 1.4826,
                1e-3 * max(abs(float(np.median(patch))), 1.0), 1e-6)
    peak = float(patch[seed])
    edges = (rows.start > 0, rows.stop < h, cols.start > 0, cols.stop < w)
    background = float(np.median(patch))
    region = np.zeros(patch.shape, bool)
    for fraction in HEIGHT_FRACTIONS:
        for _ in range(2):  # grow, re-estimate the background just outside the region, grow again
            height = peak - background
            if height < MIN_CONTRAST * noise:
                break
            region = _grow(patch, seed, background + max(NOISE_FACTOR * noise, fraction * height))
            ring = _surroundings(region)
            if not region.any() or not ring.any():
                break
            background = float(np.median(patch[ring]))
        height = peak - background
        touches = (region[0].any() and edges[0]) or (region[-1].any() and edges[1]) or \
                  (region[:, 0].any() and edges[2]) or (region[:, -1].any() and edges[3])
        if height >= MIN_CONTRAST * noise and region.any() and region.sum() <= MAX_AREA and not touches:
            break
        region = np.zeros(patch.shape, bool)
    if not region.any():
        return Snap(None, empty, "nothing stands out")
    # One more ring of pixels, weighted by their (small) height: the centroid then moves smoothly
    # instead of jumping as boundary pixels cross the threshold.
    region = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    # Weights: intensity above the local background. Mask-centroid labels weight by raw gray; on
    # a high pedestal that is the region's plain geometric centre, which is off by the threshold's
    # pixel steps, while on SIRST masks both agree equally well (README).
    (u_in, v_in), = mask_components(region, np.clip(patch.astype(np.float64) - background, 0.0, None))[0]
    vs, us = np.nonzero(region)
    return Snap((float(u_in) + cols.start, float(v_in) + rows.start), np.stack([vs + rows.start, us + cols.start], axis=1), "")


def snap_point(gray: np.ndarray, u: float, v: float, radius: int = 3) -> tuple[float, float] | None:
    """The snapped (u, v) of a click, or ``None`` when nothing stands out (the caller keeps the click)."""
    return snap_region(gray, u, v, radius).point
