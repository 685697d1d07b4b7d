"""simple_keypoint: find tiny single-point targets in infrared images.

    from simple_keypoint import load_model
    model = load_model("weights/heatmap.pt")
    points = model.predict("frame.png")  # (N, 3): u, v, score in pixel-index coordinates
"""

from simple_keypoint.predict import Localizer, load_model

__all__ = ["Localizer", "load_model"]
