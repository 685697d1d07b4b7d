"""Reading images of any common kind into one single-channel float array.

Infrared is one channel: colour files are converted to gray, never triplicated. 8-bit, 16-bit
and float images are all supported; paths may contain any characters (OpenCV's ``imread`` fails
on non-ASCII paths on some systems, so files are read as bytes and decoded).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from simple_keypoint.quiet import native_stderr_filtered, opencv_silent

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Larger images are refused rather than risk exhausting memory (OpenCV's own limit is 2^30).
MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """An image that cannot be used; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (any supported suffix, any case), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as stored (H x W or H x W x C, uint8/uint16/float32). Raises ImageError."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageError(path, f"cannot read: {e.strerror or e}") from None
    if data.size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    # A bad file is reported once, below; OpenCV's and libpng's own lines would only repeat it.
    try:
        with opencv_silent(), native_stderr_filtered():
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # some malformed headers raise instead of returning None
        image = None
    if image is None or image.size == 0:
        raise ImageError(path, "not a readable image (corrupt, truncated or not an image)")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise ImageError(path, f"too large ({image.shape[1]}x{image.shape[0]} pixels)")
    return image


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any H x W [x C] image -> H x W float32, keeping the raw value scale (no normalisation)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise ValueError(f"unsupported channel count {image.shape[2]}")
        if image.dtype not in (np.uint8, np.uint16, np.float32):
            image = image.astype(np.float32)
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    if image.ndim != 2:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    return image.astype(np.float32)


def standardise(gray: np.ndarray) -> np.ndarray:
    """Per-image standardisation: zero mean, unit spread.

    IR sensors differ in gain, offset and bit depth; removing both per image is what lets a model
    trained on one camera run on another. The spread is floored so a flat frame stays finite.
    """
    gray = np.nan_to_num(gray.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    mean = float(gray.mean())
    std = float(gray.std())
    return (gray - mean) / max(std, 1e-3 * max(abs(mean), 1.0), 1e-6)


def load_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image file and return it standardised, single-channel float32."""
    try:
        return standardise(to_gray(read_image(path)))
    except ValueError as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(path, str(e)) from None


# Percentiles of a large frame are taken on an even sample of this many values: the window is
# the same to the eye and stays fast on every redraw.
PERCENTILE_SAMPLES = 1_000_000


def percentile_window(gray: np.ndarray, low: float = 0.5, high: float = 99.9) -> tuple[float, float]:
    """The display stretch's window: raw values at the ``low`` and ``high`` percentiles of the finite
    pixels (of an even sample on large frames); never an empty range (a flat window widens to the
    full range, then by 1). For display only: never used for what a model sees."""
    flat = np.asarray(gray).ravel()
    if flat.size > PERCENTILE_SAMPLES:
        flat = flat[:: flat.size // PERCENTILE_SAMPLES + 1]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(flat, [low, high]))
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
        if hi <= lo:
            hi = lo + 1.0
    return lo, hi


def to_display(image: np.ndarray, low: float = 0.5, high: float = 99.9) -> np.ndarray:
    """Any image -> 8-bit BGR for showing: gray, stretched by :func:`percentile_window`.

    For display only (overlays, the annotation tool); never used for what a model sees.
    """
    gray = np.nan_to_num(to_gray(image), nan=0.0, posinf=0.0, neginf=0.0)  # NaN/inf pixels in float TIFFs
    lo, hi = percentile_window(gray, low, high)
    gray = np.clip((gray - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
