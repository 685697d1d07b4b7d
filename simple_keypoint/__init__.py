"""simple_keypoint: find tiny single-point targets in infrared images.

    from simple_keypoint import load_model
    model = load_model("weights/heatmap.pt")
    points = model.predict("frame.png")  # (N, 3): u, v, score in pixel-index coordinates
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from simple_keypoint.predict import Localizer, load_model

__all__ = ["Localizer", "load_model"]


def __getattr__(name: str) -> Any:
    """``Localizer`` and ``load_model`` load on first use, so the light modules (labels, images,
    used by the annotation tool) can be imported without torch, which takes seconds to load."""
    if name in __all__:
        from simple_keypoint import predict

        return getattr(predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
