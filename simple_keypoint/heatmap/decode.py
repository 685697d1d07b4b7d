"""Heatmap -> points: 3x3 local maxima, the best above a threshold, sub-pixel refinement.

The only decoder of the package: prediction (so training validation, evaluation, detect.py and
the annotation tool) and the benchmarks all decode through :func:`decode_logits`, or
:func:`decode_scores` for a map that is already a score (the top-hat baseline's response).

A net outputs logits; the sigmoid is monotonic, so peaks and the threshold are found on the
logits and only the peaks' scores are computed, in float64: float32's sigmoid is exactly 1.0
above a logit of ~17, which would tie confident peaks and leave their ranking (and so AP) to chance.

A peak's score is relative to its own image's clutter (:func:`clutter_level`): one threshold and
one ranking serve frames as different as a clean sky and a sunlit cloud bank. Within an image it
changes no order and no position, only how images compare; the heatmap itself is left as the net made it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_KERNEL = np.ones((3, 3), np.uint8)
# Score logit = peak logit - CLUTTER_WEIGHT x the image's clutter level; both chosen on validation
# (docs/history.md, "Ablation"; the excluded blobs: docs/decisions.md, "Score").
CLUTTER_QUANTILE = 0.999
CLUTTER_WEIGHT = 0.5
CLUTTER_EXCLUDED_PEAKS = 3
CLUTTER_EXCLUDED_RADIUS = 8
# A pixel's 4 raster-earlier neighbours (the row above and its left): dilating with this kernel
# gives each pixel the largest of them.
_EARLIER = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], np.uint8)


def local_maxima(heat: np.ndarray, floor: float = -math.inf, window: int = 3) -> np.ndarray:
    """Flat indices (raster order) of the ``window`` x ``window`` (odd, default 3x3) local maxima of a
    float32/64 (H, W) map at or above ``floor``.

    A maximum is >= every value in its window and strictly greater than those that come before it
    in raster order (outside the map counts as lower), so a plateau of equal values (e.g. an image
    region the net sees as flat) gives one point, its first pixel, not one per pixel. OpenCV's
    dilation, not torch's max-pool: much faster on one channel.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"local maxima window must be an odd size >= 1, not {window}")
    full, earlier = (_KERNEL, _EARLIER) if window == 3 else _window_kernels(window)
    is_peak = heat == cv2.dilate(heat, full)  # dilate's constant border is the lowest value
    is_peak &= heat > cv2.dilate(heat, earlier)
    if floor > -math.inf:
        is_peak &= heat >= floor
    return np.flatnonzero(is_peak)


def _window_kernels(window: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole ``window`` x ``window`` neighbourhood, and its raster-earlier part (the rows above
    the centre and the centre row's left half), as dilation kernels."""
    earlier = np.zeros((window, window), np.uint8)
    earlier[:window // 2] = 1
    earlier[window // 2, :window // 2] = 1
    return np.ones((window, window), np.uint8), earlier


def clutter_level(heat: np.ndarray) -> float:
    """How high an image's map runs away from its targets: the 99.9th percentile of its values once
    the ``CLUTTER_EXCLUDED_PEAKS`` strongest blobs (``CLUTTER_EXCLUDED_RADIUS`` px around each) are
    left out, so a target large enough to fill the top 0.1 % of a small frame does not count as its
    own clutter. Taken on every second row and column, which is several times faster and scores the
    same (docs/measurements.md)."""
    heat = np.asarray(heat)
    sample = heat[::2, ::2].astype(np.float64 if heat.dtype == np.float64 else np.float32)  # a copy: blobs are blanked
    if sample.size == 0:
        return 0.0
    lowest, r = sample.min(), CLUTTER_EXCLUDED_RADIUS // 2
    for _ in range(CLUTTER_EXCLUDED_PEAKS):
        v, u = divmod(int(np.argmax(sample)), sample.shape[1])
        sample[max(v - r, 0):v + r + 1, max(u - r, 0):u + r + 1] = lowest
    values = sample.reshape(-1)
    k = min(int(CLUTTER_QUANTILE * values.size), values.size - 1)
    return float(np.partition(values, k)[k])


def top_points(index: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The at most ``k`` best of the peaks ``index`` (raster order) with ``scores``, best first;
    equal scores keep raster order, also when only some of them fit in ``k``."""
    if len(scores) > k:  # the best k without sorting every peak
        if k <= 0:
            return index[:0], scores[:0]
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th best score
        better, equal = scores > kth, scores == kth
        keep = better | (equal & (np.cumsum(equal) <= k - np.count_nonzero(better)))
        index, scores = index[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return index[order], scores[order]


def _log_score(values: np.ndarray, logits: bool) -> np.ndarray:
    """The log of the score, in float64: ``log(sigmoid(x))`` of logits (exact where float32's sigmoid
    is 1.0), ``log(x)`` of scores (clamped at 1e-10)."""
    values = np.asarray(values, np.float64)
    return -np.logaddexp(0.0, -values) if logits else np.log(np.maximum(values, 1e-10))


def refine_subpixel(heat: np.ndarray, peaks: np.ndarray, logits: bool = False) -> np.ndarray:
    """Move integer peaks (N, 2+) ``(u, v, ...)`` to the vertex of a parabola fitted to the log-score
    on each axis through the peak and its two neighbours. ``heat``: scores, or logits if ``logits``.

    For a Gaussian-shaped peak the log is an exact parabola, so this recovers its true centre
    (the idea behind DARK, Zhang et al. 2020). Offsets are limited to half a pixel; no fit on an
    axis where the peak is on the border. Reads only the peaks' 4 neighbours, not the whole map.
    """
    out = np.array(peaks, np.float64)
    if len(out) == 0:
        return out
    h, w = heat.shape
    u, v = out[:, 0].astype(int), out[:, 1].astype(int)
    lo = np.stack([np.maximum(u - 1, 0), np.maximum(v - 1, 0)])  # (2, N): the u axis, then v
    hi = np.stack([np.minimum(u + 1, w - 1), np.minimum(v + 1, h - 1)])
    log = _log_score(heat[[v, v, v, lo[1], hi[1]], [u, lo[0], hi[0], u, u]], logits)  # (5, N)
    mid, low, high = log[0], log[[1, 3]], log[[2, 4]]
    curvature = low - 2 * mid + high
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, 0.5 * (low - high) / curvature, 0.0)
    offset[(lo == (u, v)) | (hi == (u, v))] = 0.0  # no fit on the border
    out[:, :2] += np.clip(np.nan_to_num(offset), -0.5, 0.5).T
    return out


def _decode(heat: np.ndarray, conf: float, max_points: int, subpixel: bool, logits: bool,
            relative: bool = False) -> np.ndarray:
    heat = np.asarray(heat)
    # float32 is what nets output; a float64 map stays float64, as casting it could create ties.
    heat = np.ascontiguousarray(heat, np.float64 if heat.dtype == np.float64 else np.float32)
    offset = CLUTTER_WEIGHT * clutter_level(heat) if relative else 0.0
    # On logits, a floor slightly below logit(conf) keeps every candidate; the exact test is on the score.
    capped = min(conf, 0.999)
    floor = (-math.inf if conf <= 0 else math.log(capped / (1 - capped)) + offset - 1e-2) if logits else conf
    index = local_maxima(heat, floor)
    values = heat.reshape(-1)[index].astype(np.float64) - offset
    with np.errstate(over="ignore"):  # exp(-logit) overflows below a logit of -709: score 0
        scores = 1.0 / (1.0 + np.exp(-values)) if logits else values
    keep = (scores >= conf) & (scores > 0)  # a zero score is no evidence of a target
    index, scores = top_points(index[keep], scores[keep], max_points)
    points = np.stack([index % heat.shape[1], index // heat.shape[1], scores], axis=1).astype(np.float64)
    return refine_subpixel(heat, points, logits) if subpixel else points


def decode_logits(logits: np.ndarray, conf: float, max_points: int, subpixel: bool = True,
                  relative: bool = True) -> np.ndarray:
    """A net's (H, W) heatmap logits -> (N, 3) float64 ``(u, v, score)`` in its pixel coordinates,
    best first: at most ``max_points`` local maxima with ``score >= conf``, where ``score =
    sigmoid(logit - CLUTTER_WEIGHT * clutter_level(logits))``, or ``sigmoid(logit)`` if not ``relative``."""
    return _decode(logits, conf, max_points, subpixel, logits=True, relative=relative)


def decode_scores(scores: np.ndarray, conf: float, max_points: int, subpixel: bool = True) -> np.ndarray:
    """:func:`decode_logits` of a (H, W) map whose values are already scores (e.g. a filter's
    non-negative response): points score their value; a zero-score peak is never a point."""
    return _decode(scores, conf, max_points, subpixel, logits=False)
