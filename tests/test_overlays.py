"""Overlays: the JET heatmap blended over the whole frame at --heat-alpha, labels placed inside the
frame at every edge, points below the threshold drawn dimmer and not written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simple_keypoint.detect import draw_overlay, label_origin, main
from simple_keypoint.images import to_display

FONT, FONT_SCALE, OUTLINE = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 3


def test_heatmap_blended_over_the_whole_frame() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 80), dtype=np.uint8)
    heat = rng.random((60, 80)).astype(np.float32)
    heat[:, :40] = 0.0  # where the net sees nothing the frame is tinted all the same
    gray = to_display(image)
    jet = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    for alpha in (0.25, 0.6):
        overlay = draw_overlay(image, np.zeros((0, 3)), heat, heat_alpha=alpha)
        expected = gray * (1 - alpha) + jet * alpha
        assert np.abs(overlay.astype(float) - expected).max() <= 1.0
    overlay = draw_overlay(image, np.zeros((0, 3)), heat, heat_alpha=0.4)
    # Zero heat is JET's dark blue: every such pixel is bluer than it is red, however bright the frame.
    assert np.all(overlay[:, :40, 0].astype(int) - overlay[:, :40, 2] >= 0.4 * 128 - 1)
    assert np.array_equal(draw_overlay(image, np.zeros((0, 3)), heat, heat_alpha=0.0), gray)
    assert np.array_equal(draw_overlay(image, np.zeros((0, 3)), None), gray)  # regression: no heatmap


@settings(max_examples=300, deadline=None)
@given(u=st.floats(-0.5, 639.5), v=st.floats(-0.5, 479.5), score=st.floats(0, 1), scale=st.integers(1, 3))
def test_label_box_is_always_inside_the_frame_and_beside_the_point(u: float, v: float, score: float, scale: int) -> None:
    w, h = 640, 480
    (tw, th), baseline = cv2.getTextSize(f"{score:.2f}", FONT, FONT_SCALE * scale, OUTLINE * scale)
    x, y = label_origin(u, v, (tw, th), baseline, (w, h), gap=9 * scale)
    assert 0 <= x and x + tw <= w - 1 and y - th >= 0 and y + baseline <= h - 1
    if 9 * scale + tw < u < w - 9 * scale - tw:  # room on a side: the text never covers the point
        assert not (x <= u <= x + tw and y - th <= v <= y + baseline)


@pytest.mark.parametrize("u, v", [(79.4, 20.0), (0.0, 0.0), (79.5, 59.5), (40.0, 59.5), (3.0, 30.0)])
def test_a_label_at_any_edge_is_drawn_whole(u: float, v: float) -> None:
    """The score's text is the same pixels wherever the point is: nothing of it is cut off."""
    image = np.zeros((60, 80), np.uint8)

    def text_pixels(u: float, v: float) -> int:
        overlay = draw_overlay(image, np.array([[u, v, 0.98]]), None)
        ring = draw_overlay(image, np.zeros((0, 3)), None)
        cv2.circle(ring, (int(round(u)), int(round(v))), 9, (255, 255, 255), -1)  # mask out the ring
        return int(((overlay[..., 1] > 128) & (ring[..., 0] == 0)).sum())

    assert text_pixels(u, v) == text_pixels(40.0, 30.0) > 20


def test_points_below_the_threshold_are_dim_and_not_written(tmp_path) -> None:
    image = np.zeros((40, 60), np.uint8)
    dim = draw_overlay(image, np.zeros((0, 3)), None, dim_points=np.array([[30.0, 20.0, 0.5]]))
    bright = draw_overlay(image, np.array([[30.0, 20.0, 0.9]]), None)
    assert 0 < dim[..., 1].max() < bright[..., 1].max() == 255
    assert (dim[..., 1] > 0).sum() < (bright[..., 1] > 0).sum()  # a ring only, no score
    # On the command line: the dim points change the picture but not the labels.
    from simple_keypoint.paths import repo_root

    source = repo_root() / "data" / "test" / "images" / "Misc_15.png"
    outs = {}
    for name, extra in (("plain", []), ("dim", ["--dim-conf", "0.2"])):
        assert main(["--source", str(source), "--out", str(tmp_path / name), "--quiet", *extra]) == 0
        outs[name] = tmp_path / name
    assert (outs["plain"] / "labels" / "Misc_15.txt").read_text() == (outs["dim"] / "labels" / "Misc_15.txt").read_text()
    plain, dimmed = (cv2.imread(str(o / "overlays" / "Misc_15.jpg")).astype(int) for o in outs.values())
    assert np.abs(plain - dimmed).max() > 50
