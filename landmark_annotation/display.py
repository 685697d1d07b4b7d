"""What the annotator sees: contrast windowing and the zoom/pan view. Display only, no Tk.

Windowing maps the raw values (16-bit kept as they are) between two percentiles (the project's one
display stretch, ``simple_keypoint.images.percentile_window``) onto 0..255 with
a gamma and an optional colour map, so a target a few counts above a 16-bit background becomes
visible. Nothing here ever changes a label: points are stored in image pixel coordinates.

The view renders only the visible part of the image: each canvas pixel looks up its source pixel
(nearest neighbour when zoomed in, so pixels stay sharp squares), so the cost depends on the
canvas size, not on the zoom or the image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Percentile steps the keys move through (low end and high end of the window).
LOW_STEPS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0)
HIGH_STEPS = (90.0, 95.0, 98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)
GAMMA_STEPS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8)
COLORMAPS = {"gray": None, "inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS}
MAX_ZOOM = 64.0
# Half-size of the box around the cursor that key b windows on.
BOX_HALF = 32
# Background-subtracted view: smoothing matched to a 1-3 px spot, and an opening wider than such a
# spot (so it is not part of the background) but narrow enough to follow curved cloud tops.
SPOT_SIGMA = 1.0
TOPHAT_SIZE = 9


def _step(steps: tuple[float, ...], value: float, direction: int) -> float:
    """The next value in ``steps`` above (direction > 0) or below ``value``; stays at the ends."""
    i = min(range(len(steps)), key=lambda k: abs(steps[k] - value))
    return steps[min(max(i + direction, 0), len(steps) - 1)]


@dataclass
class Windowing:
    """Display contrast: percentile window, gamma and colour map."""

    low: float = 1.0
    high: float = 99.9
    gamma: float = 1.0
    colormap: str = "gray"
    region: str = "image"  # where the percentiles are taken: "image", "visible" or "box"
    background: bool = False  # show the background-subtracted view

    def step_low(self, direction: int) -> None:
        self.low = min(_step(LOW_STEPS, self.low, direction), self.high)

    def step_high(self, direction: int) -> None:
        self.high = max(_step(HIGH_STEPS, self.high, direction), self.low)

    def step_gamma(self, direction: int) -> None:
        self.gamma = _step(GAMMA_STEPS, self.gamma, direction)

    def next_colormap(self) -> None:
        names = list(COLORMAPS)
        self.colormap = names[(names.index(self.colormap) + 1) % len(names)]

    def describe(self, region: str | None = None) -> str:
        """The settings in words; ``region``: where the percentiles are taken now (default: ``self.region``)."""
        where = {"image": "", "visible": " of visible area", "box": " of box at cursor"}[region or self.region]
        return (f"window {self.low:g}-{self.high:g}%{where} gamma {self.gamma:g} {self.colormap}"
                + (" background-subtracted" if self.background else ""))


def visible_crop(gray: np.ndarray, view: View) -> np.ndarray:
    """The part of ``gray`` on screen in ``view`` (the whole image when fitted)."""
    h, w = gray.shape
    (cw, ch) = view.canvas
    u0, v0 = view.to_image(0, 0)
    u1, v1 = view.to_image(cw, ch)
    a, b = max(int(math.floor(u0 + 0.5)), 0), min(int(math.ceil(u1 + 0.5)), w)
    c, d = max(int(math.floor(v0 + 0.5)), 0), min(int(math.ceil(v1 + 0.5)), h)
    return gray[c:d, a:b] if b > a and d > c else gray


def box_crop(gray: np.ndarray, u: float, v: float, half: int = BOX_HALF) -> np.ndarray:
    """The (2 half + 1)^2 box of ``gray`` around pixel (u, v), clipped to the image."""
    h, w = gray.shape
    iu, iv = min(max(math.floor(u + 0.5), 0), w - 1), min(max(math.floor(v + 0.5), 0), h - 1)
    return gray[max(iv - half, 0):iv + half + 1, max(iu - half, 0):iu + half + 1]


def background_subtracted(gray: np.ndarray) -> np.ndarray:
    """A view for faint spots: the image lightly smoothed (a matched filter for 1-3 px targets,
    which lifts their contrast above pixel noise) minus its background, a grey opening wider than
    any point target (a white top-hat). Display only."""
    smooth = cv2.GaussianBlur(np.nan_to_num(gray.astype(np.float32)), (0, 0), SPOT_SIGMA)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (TOPHAT_SIZE, TOPHAT_SIZE))
    return smooth - cv2.morphologyEx(smooth, cv2.MORPH_OPEN, kernel)


def apply_window(values: np.ndarray, lo: float, hi: float, gamma: float = 1.0, colormap: str = "gray") -> np.ndarray:
    """Raw values -> H x W x 3 uint8 RGB through the window [lo, hi], gamma and colour map."""
    x = np.clip((values.astype(np.float32) - lo) / np.float32(hi - lo), 0.0, 1.0)
    x = np.nan_to_num(x, nan=0.0)
    if gamma != 1.0:
        x = x ** np.float32(gamma)
    gray8 = (x * 255.0 + 0.5).astype(np.uint8)
    cmap = COLORMAPS[colormap]
    if cmap is None:
        return np.repeat(gray8[:, :, None], 3, axis=2)
    return cv2.applyColorMap(gray8, cmap)[:, :, ::-1].copy()


@dataclass
class View:
    """Zoom and pan: image pixel (u, v)'s centre is at canvas (x0 + (u + 0.5) * scale, ...).

    Pixel-centre coordinates match the label format (x = (u + 0.5) / W): pixel u covers
    [u - 0.5, u + 0.5], so the image spans exactly [-0.5, W - 0.5].
    """

    scale: float = 1.0
    x0: float = 0.0
    y0: float = 0.0
    canvas: tuple[int, int] = field(default=(1, 1))  # width, height
    image: tuple[int, int] = field(default=(1, 1))  # width, height

    def fit(self, canvas: tuple[int, int], image: tuple[int, int]) -> None:
        """Whole image visible, centred, as large as fits."""
        self.canvas, self.image = canvas, image
        (cw, ch), (w, h) = canvas, image
        self.scale = min(cw / w, ch / h, MAX_ZOOM)
        self.x0 = (cw - w * self.scale) / 2
        self.y0 = (ch - h * self.scale) / 2

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Canvas -> image pixel coordinates (u, v)."""
        return (x - self.x0) / self.scale - 0.5, (y - self.y0) / self.scale - 0.5

    def to_canvas(self, u: float, v: float) -> tuple[float, float]:
        return self.x0 + (u + 0.5) * self.scale, self.y0 + (v + 0.5) * self.scale

    def zoom_at(self, x: float, y: float, factor: float) -> None:
        """Zoom by ``factor`` keeping the image point under canvas (x, y) fixed (cursor-centred)."""
        (cw, ch), (w, h) = self.canvas, self.image
        lowest = min(min(cw / w, ch / h) / 2, 1.0)
        new = min(max(self.scale * factor, lowest), MAX_ZOOM)
        u, v = self.to_image(x, y)
        self.scale = new
        self.x0 = x - (u + 0.5) * new
        self.y0 = y - (v + 0.5) * new

    def pan(self, dx: float, dy: float) -> None:
        self.x0 += dx
        self.y0 += dy

    def render(self, gray: np.ndarray, window: Windowing, lo: float, hi: float) -> tuple[np.ndarray, int, int]:
        """The visible part of ``gray`` as RGB at canvas resolution.

        Returns (rgb, x, y): the patch to draw with its top-left corner at canvas (x, y); the patch
        is empty (0 x 0) when the image is off screen.
        """
        cw, ch = self.canvas
        h, w = gray.shape
        if self.scale >= 1.0:
            # Nearest neighbour: canvas pixel x (an event at x, a line drawn at x) shows the image
            # pixel that contains canvas position x, the pixel a click there is read in.
            xa, xb = max(math.ceil(self.x0), 0), min(math.ceil(self.x0 + w * self.scale), cw)
            ya, yb = max(math.ceil(self.y0), 0), min(math.ceil(self.y0 + h * self.scale), ch)
            if xb <= xa or yb <= ya:
                return np.zeros((0, 0, 3), np.uint8), 0, 0
            us = np.clip(np.floor((np.arange(xa, xb) - self.x0) / self.scale).astype(np.int64), 0, w - 1)
            vs = np.clip(np.floor((np.arange(ya, yb) - self.y0) / self.scale).astype(np.int64), 0, h - 1)
            values = gray[vs[:, None], us[None, :]]
        else:
            # Zoomed out: each canvas pixel is the mean of the image pixels whose centres fall in
            # it, so every pixel counts once (a 1-pixel target is never skipped).
            cols = _bins(self.x0, self.scale, w, cw)
            rows = _bins(self.y0, self.scale, h, ch)
            if cols is None or rows is None:
                return np.zeros((0, 0, 3), np.uint8), 0, 0
            (xa, cstarts, cend), (ya, rstarts, rend) = cols, rows
            crop = np.ascontiguousarray(gray[rstarts[0]:rend, cstarts[0]:cend], dtype=np.float32)
            sums = np.add.reduceat(np.add.reduceat(crop, rstarts - rstarts[0], axis=0), cstarts - cstarts[0], axis=1)
            counts = np.outer(np.diff(np.append(rstarts, rend)), np.diff(np.append(cstarts, cend)))
            values = sums / counts.astype(np.float32)
        return apply_window(values, lo, hi, window.gamma, window.colormap), xa, ya


def _bins(origin: float, scale: float, size: int, canvas: int) -> tuple[int, np.ndarray, int] | None:
    """Zoomed out: the canvas pixels x whose span [x - 0.5, x + 0.5) holds some image pixel's
    centre, as (first x, first image pixel of each, end). None when none is on the canvas."""
    xs = np.arange(max(math.floor(origin) - 1, 0), min(math.ceil(origin + size * scale) + 2, canvas))
    if not len(xs):
        return None
    edges = np.clip(np.ceil((np.append(xs, xs[-1] + 1) - 0.5 - origin) / scale - 0.5), 0, size).astype(np.int64)
    keep = np.flatnonzero(np.diff(edges) > 0)  # contiguous: the canvas pixels holding >= 1 image pixel
    if not len(keep):
        return None
    return int(xs[keep[0]]), edges[keep], int(edges[keep[-1] + 1])


def to_ppm(rgb: np.ndarray) -> bytes:
    """RGB uint8 -> binary PPM bytes (Tk's PhotoImage reads these without any extra library)."""
    h, w = rgb.shape[:2]
    return f"P6 {w} {h} 255 ".encode() + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
