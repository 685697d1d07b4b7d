"""The classical baseline at full strength: white top-hat, optional blur, a normalised response, KxK local maxima.

A white top-hat (image minus its morphological opening with an elliptical element) keeps bright
structures smaller than the element, which is exactly a small infrared target. It has no learned
parameters, only settings: the element size, an optional 3x3 Gaussian blur of the response (it
lifts a target's peak above single-pixel noise), how the response is normalised per image (so
one threshold serves frames of any contrast), the local-maximum window and the most points per
image. :func:`benchmarks.accuracy` tunes every one of them on the training splits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from simple_keypoint.heatmap.decode import clutter_level, local_maxima, refine_subpixel, top_points

NORMALISATIONS = ("p99.9", "meanstd", "raw")


@dataclass(frozen=True)
class TopHatSettings:
    """``element``: the top-hat's elliptical element (px, odd); ``blur``: 0 (none) or the Gaussian's
    odd size; ``norm``: ``"p99.9"`` (divide by the response's 99.9th percentile), ``"meanstd"``
    (standardise by its mean and standard deviation) or ``"raw"``; ``window``: the local maxima's
    odd window; ``max_points``: at most this many points per image."""

    element: int = 7
    blur: int = 3
    norm: str = "p99.9"
    window: int = 7
    max_points: int = 10

    def __post_init__(self) -> None:
        if self.element < 1 or self.element % 2 == 0:
            raise ValueError(f"top-hat element must be an odd size >= 1, not {self.element}")
        if self.blur < 0 or (self.blur and self.blur % 2 == 0):
            raise ValueError(f"top-hat blur must be 0 or an odd size, not {self.blur}")
        if self.norm not in NORMALISATIONS:
            raise ValueError(f"top-hat normalisation must be one of {', '.join(NORMALISATIONS)}, not {self.norm!r}")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"local maxima window must be an odd size >= 1, not {self.window}")
        if self.max_points < 1:
            raise ValueError(f"max_points must be >= 1, not {self.max_points}")

    def label(self) -> str:
        """The settings as a row name reads them."""
        blur = f" + blur {self.blur}" if self.blur else ""
        return f"top-hat {self.element}px{blur} + {self.norm} + {self.window}x{self.window} max, <= {self.max_points}"

    as_dict = asdict


class TopHatDetector:
    """Same interface as a Localizer's ``predict_standardised`` so the evaluation code can score it."""

    method = "tophat"

    def __init__(self, settings: TopHatSettings | None = None, conf: float = 0.0):
        self.settings = settings or TopHatSettings()
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.settings.element,) * 2)
        self.conf = conf

    def response(self, gray: np.ndarray) -> np.ndarray:
        """The (blurred) top-hat of a standardised image, normalised per image as the settings say."""
        top_hat = cv2.morphologyEx(np.ascontiguousarray(gray, np.float32), cv2.MORPH_TOPHAT, self.kernel)
        if self.settings.blur:
            top_hat = cv2.GaussianBlur(top_hat, (self.settings.blur,) * 2, 0)
        if self.settings.norm == "p99.9":
            return top_hat / max(clutter_level(top_hat), 1e-6)
        if self.settings.norm == "meanstd":
            return (top_hat - float(top_hat.mean())) / max(float(top_hat.std()), 1e-6)
        return top_hat

    def predict_standardised(self, gray: np.ndarray, conf: float | None = None, max_points: int | None = None) -> np.ndarray:
        """(N, 3) ``(u, v, score)``, best first: at most ``max_points`` KxK local maxima of the
        response scoring >= ``conf`` (and > 0), refined to sub-pixel on the response."""
        conf = self.conf if conf is None else conf
        response = self.response(gray)
        index = local_maxima(response, conf, self.settings.window)
        scores = response.reshape(-1)[index].astype(np.float64)
        keep = scores > 0  # a zero response is no evidence of a target
        index, scores = top_points(index[keep], scores[keep], self.settings.max_points if max_points is None else max_points)
        points = np.stack([index % response.shape[1], index // response.shape[1], scores], axis=1).astype(np.float64)
        # The response is positive and peaked at a target, which is what the parabola fit assumes.
        return refine_subpixel(response, points)
