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
    for name, extra in (("plain", []), ("dim", ["--dim-conf", "0"])):  # every candidate, whatever its score
        assert main(["--source", str(source), "--out", str(tmp_path / name), "--quiet", *extra]) == 0
        outs[name] = tmp_path / name
    assert (outs["plain"] / "labels" / "Misc_15.txt").read_text() == (outs["dim"] / "labels" / "Misc_15.txt").read_text()
    plain, dimmed = (cv2.imread(str(o / "overlays" / "Misc_15.jpg")).astype(int) for o in outs.values())
    assert np.abs(plain - dimmed).max() > 50


# ---------------------------------------------------------------------------------------------- legend

def jet_ends(pixels: np.ndarray) -> tuple[int, int]:
    """How many pixels are JET's deep blue (probability 0) and its deep red (probability 1)."""
    b, g, r = (pixels[..., i].astype(int) for i in range(3))
    return int(((b > 180) & (r < 60) & (g < 60)).sum()), int(((r > 180) & (b < 60) & (g < 60)).sum())


@pytest.mark.parametrize("h, w", [(96, 135), (240, 320), (1024, 1280)])
def test_legend_shows_the_colour_bar_and_fits_the_frame(h: int, w: int) -> None:
    from simple_keypoint.overlays import draw_legend

    canvas = np.full((h, w, 3), 128, np.uint8)
    x0, y0, x1, y1 = draw_legend(canvas, 0.93, True, "no point above 0.93")
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 - x0) * (y1 - y0) < 0.3 * w * h  # a corner, not the frame
    blue, red = jet_ends(canvas[y0:y1, x0:x1])
    assert blue > 0 and red > 0  # both ends of the colour bar
    assert np.all(np.delete(canvas, np.s_[y0:y1], axis=0) == 128)  # nothing drawn outside its box
    assert np.all(canvas[y0:y1, :x0] == 128) and np.all(canvas[y0:y1, x1:] == 128)
    # The note is a line of its own; without the heatmap there is no bar.
    bare = np.full((h, w, 3), 128, np.uint8)
    bx0, by0, bx1, by1 = draw_legend(bare, 0.93, False)
    assert by1 - by0 < y1 - y0 and jet_ends(bare) == (0, 0) and (bare != 128).any()


def test_a_frame_without_a_point_says_so_and_the_legend_keeps_clear_of_points() -> None:
    from simple_keypoint.overlays import draw_legend

    image = np.full((96, 135), 60, np.uint8)
    empty = draw_overlay(image, np.zeros((0, 3)), None, conf=0.5)
    found = draw_overlay(image, np.array([[60.0, 40.0, 0.9]]), None, conf=0.5)
    plain = draw_overlay(image, np.zeros((0, 3)), None)
    assert (empty != plain).any(axis=2).sum() > (found != plain).any(axis=2).sum() / 2  # the note's words
    text_rows = np.flatnonzero((empty != plain).any(axis=(1, 2)))
    legend_rows = np.flatnonzero((draw_overlay(image, np.array([[60.0, 40.0, 0.9]]), None, conf=0.5)
                                  != draw_overlay(image, np.array([[60.0, 40.0, 0.9]]), None)).any(axis=(1, 2)))
    assert len(text_rows) > len(legend_rows)  # one line more: "no point above 0.50"
    # A point where the legend would go: it moves to another corner, the point stays in the clear.
    for u, v in ((5.0, 90.0), (130.0, 90.0), (5.0, 5.0)):
        box = draw_legend(np.zeros((96, 135, 3), np.uint8), 0.5, True, None, avoid=np.array([[u, v, 0.9]]))
        x0, y0, x1, y1 = box
        assert not (x0 - 9 < u < x1 + 9 and y0 - 9 < v < y1 + 9), (u, v, box)


def test_a_frame_too_small_for_words_gets_no_legend() -> None:
    from simple_keypoint.overlays import draw_legend

    canvas = np.zeros((10, 12, 3), np.uint8)
    assert draw_legend(canvas, 0.5, True, "no point above 0.50") == (0, 0, 0, 0) and not canvas.any()
    assert draw_overlay(np.zeros((10, 12), np.uint8), np.zeros((0, 3)), None, conf=0.5).shape == (10, 12, 3)


def test_detect_overlays_carry_the_legend(tmp_path) -> None:
    """On the command line: a tiny frame with nothing above --conf 1 gets the bar and the note in a
    corner, the rest of the overlay as before."""
    from simple_keypoint import load_model
    from simple_keypoint.paths import repo_root, shipped_weights

    image = cv2.resize(cv2.imread(str(repo_root() / "data" / "test" / "images" / "Misc_15.png")), (135, 96))
    cv2.imwrite(str(tmp_path / "tiny.png"), image)
    out = tmp_path / "out"
    assert main(["--weights", "heatmap_n", "--source", str(tmp_path / "tiny.png"), "--out", str(out), "--conf", "1",
                 "--quiet"]) == 0
    overlay = cv2.imread(str(out / "overlays" / "tiny.jpg"))
    _, heat = load_model(shipped_weights("heatmap_n"), device="cpu").predict_with_heatmap(image)
    plain = draw_overlay(image, np.zeros((0, 3)), heat, 0.4)  # the same frame without the legend
    rows, cols = np.nonzero(np.abs(overlay.astype(int) - plain).max(axis=2) > 60)
    assert rows.min() > 96 // 2 and cols.min() < 135 // 4  # the legend's corner, bottom left; nothing elsewhere
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    assert min(jet_ends(overlay[box])) > 0 and jet_ends(plain[box])[1] == 0  # the bar's both ends were drawn


def test_track_overlays_carry_the_legend_and_say_no_track_until_one_is_confirmed() -> None:
    from simple_keypoint.sources import Frame, Result, draw_tracks
    from simple_keypoint.tracking import TrackPoint

    image = np.full((120, 160), 60, np.uint8)
    result = Result(Frame(0, 0, 0.0, image), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((120, 160), np.float32))
    tentative = [TrackPoint(0, False, 80.0, 60.0, (80.0, 60.0, 0.6))]
    confirmed = [TrackPoint(1, True, 80.0, 60.0, (80.0, 60.0, 0.9), [(76.0, 60.0), (80.0, 60.0)])]
    plain = draw_tracks(result, tentative, 0.4)  # no threshold given: no legend (as the benchmark's figure)
    waiting = draw_tracks(result, tentative, 0.4, conf=0.5)
    tracked = draw_tracks(result, confirmed, 0.4, conf=0.5)
    legend_rows = [np.flatnonzero((draw_tracks(result, rows, 0.4, conf=0.5) != draw_tracks(result, rows, 0.4)).any(axis=(1, 2)))
                   for rows in (tentative, confirmed)]
    assert (tracked != waiting).any()
    assert all(len(rows) for rows in legend_rows) and len(legend_rows[0]) > len(legend_rows[1])  # "no track": a line more
    assert min(jet_ends(waiting)) > 0 and jet_ends(plain)[1] == 0  # the colour bar
