"""The pictures ``detect`` and ``track`` write: the frame with the heatmap in JET colours, each point
ringed with its score, track IDs and trails, and a legend that explains them (the colour bar of the
heatmap's probability, the threshold, and a word when nothing passed it)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from simple_keypoint.images import to_display

FONT = cv2.FONT_HERSHEY_SIMPLEX


def mark_scale(h: int, w: int) -> int:
    """Line widths and sizes grow with the frame, so marks stay readable on large frames."""
    return max(1, round(max(h, w) / 400))


def label_origin(u: float, v: float, text_size: tuple[int, int], baseline: int, image_size: tuple[int, int],
                 gap: int) -> tuple[int, int]:
    """Where to put a point's label (cv2.putText's bottom-left origin): right of the point, or left
    of it near the right edge, and moved inside the frame, so no edge ever clips it."""
    (tw, th), (w, h) = text_size, image_size
    x = int(round(u)) + gap
    if x + tw > w - 1:
        x = int(round(u)) - gap - tw
    y = int(round(v)) + th // 2
    return int(min(max(x, 1), max(w - 1 - tw, 1))), int(min(max(y, th + 1), max(h - 1 - baseline, th + 1)))


def outlined_text(canvas: np.ndarray, text: str, origin: tuple[int, int], font_scale: float, ink: tuple[int, int, int],
                  width: int, outline: int) -> None:
    """Text in ``ink`` over a black outline: readable on any background."""
    for colour, thickness in (((0, 0, 0), outline), (ink, width)):
        cv2.putText(canvas, text, origin, FONT, font_scale, colour, thickness, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, points: np.ndarray, heat: np.ndarray | None, heat_alpha: float = 0.4,
                 dim_points: np.ndarray | None = None, conf: float | None = None) -> np.ndarray:
    """The image (8-bit gray) with the heatmap in JET colours blended over the whole frame at
    ``heat_alpha``, each point ringed in green with its score; ``dim_points`` (below the threshold)
    are drawn in dim ink without a score. With ``conf``, the legend (:func:`draw_legend`) too, saying
    "no point above" it on a frame without a point."""
    canvas = to_display(image)
    heat_shown = heat is not None and heat_alpha > 0
    if heat_shown:
        colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        canvas = cv2.addWeighted(canvas, 1.0 - heat_alpha, colour, heat_alpha, 0.0)
    h, w = canvas.shape[:2]
    scale = mark_scale(h, w)
    radius, font_scale = 7 * scale, 0.4 * scale

    def ring(u: float, v: float, ink: tuple[int, int, int]) -> None:
        centre = (int(round(u * 16)), int(round(v * 16)))  # sub-pixel drawing (shift=4)
        cv2.circle(canvas, centre, radius * 16, ink, scale, cv2.LINE_AA, shift=4)

    dim_points = np.zeros((0, 3)) if dim_points is None else np.asarray(dim_points, float).reshape(-1, 3)
    if conf is not None:  # first: a point's ring and score go over the legend, never under it
        note = None if len(points) else f"no point above {conf:.2f}"
        draw_legend(canvas, conf, heat_shown, note, avoid=np.vstack([np.asarray(points, float).reshape(-1, 3), dim_points]))
    for u, v, _ in dim_points:
        ring(u, v, (0, 110, 0))
    for u, v, s in points:
        ring(u, v, (0, 255, 0))
        text = f"{s:.2f}"
        outline = 3 * scale
        size, baseline = cv2.getTextSize(text, FONT, font_scale, outline)
        corner = label_origin(u, v, size, baseline, (w, h), radius + 2 * scale)
        outlined_text(canvas, text, corner, font_scale, (0, 255, 0), scale, outline)
    return canvas


def draw_legend(canvas: np.ndarray, conf: float, heat_shown: bool = True, note: str | None = None,
                avoid: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """A small legend in a corner of ``canvas`` (drawn in place): the JET colour bar of the heatmap's
    probability from 0 to 1 (when the heatmap is shown), the threshold, and ``note`` above them.

    It goes to the first corner (bottom left, bottom right, top left, top right) with no point of
    ``avoid`` (u, v rows) under it, on a darkened patch. On a small frame the words get shorter and
    smaller, then the bar goes, the note staying longest; a frame too small for any gets none.
    Returns the legend's box (x0, y0, x1, y1), end exclusive; all zero when none was drawn.
    """
    h, w = canvas.shape[:2]
    scale = mark_scale(h, w)
    thickness, outline, pad = scale, 2 * scale + 1, 2 * scale
    bar = min(64 * scale, max(24, w // 5))
    # Layouts from the fullest to the barest; a row is a list of texts and bar widths (ints).
    top = [[note]] if note else []
    layouts = [[*top, ["0", bar, "1", f"threshold {conf:.2f}"] if heat_shown else [f"threshold {conf:.2f}"]],
               [*top, ["0", bar, "1", f"T {conf:.2f}"] if heat_shown else [f"T {conf:.2f}"]],
               top or [[f"T {conf:.2f}"]]]

    def item_width(item: str | int, fs: float) -> int:
        return item if isinstance(item, int) else cv2.getTextSize(item, FONT, fs, outline)[0][0]

    def row_width(row: list, fs: float) -> int:
        return sum(item_width(item, fs) for item in row) + pad * (len(row) - 1) + (2 * pad if len(row) > 2 else 0)

    base = (0.35 if max(h, w) < 256 else 0.4) * scale
    for rows, font_scale in ((rows, base * shrink) for rows in layouts for shrink in (1.0, 0.8)):
        (_, th), baseline = cv2.getTextSize("0", FONT, font_scale, outline)
        line_h = th + baseline + pad
        box_w = max(row_width(row, font_scale) for row in rows) + 2 * pad + outline
        box_h = line_h * len(rows) + pad
        if box_w <= w and box_h <= h:
            break
    else:  # a frame too small for words: the marks alone
        return 0, 0, 0, 0

    margin = scale
    corners = [(margin, h - margin - box_h), (w - margin - box_w, h - margin - box_h), (margin, margin),
               (w - margin - box_w, margin)]
    points = np.zeros((0, 2)) if avoid is None else np.asarray(avoid, float).reshape(-1, 3)[:, :2]
    reach = 9 * scale  # a point's ring and label start this close to it

    def clear(x0: int, y0: int) -> bool:
        return not np.any((points[:, 0] > x0 - reach) & (points[:, 0] < x0 + box_w + reach)
                          & (points[:, 1] > y0 - reach) & (points[:, 1] < y0 + box_h + reach))

    x0, y0 = next((c for c in corners if clear(*c)), corners[0])
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = x0 + box_w, y0 + box_h
    canvas[y0:y1, x0:x1] = (canvas[y0:y1, x0:x1] * 0.35).astype(canvas.dtype)  # a dark patch: text and bar stand out
    y = y0 + pad + th
    for row in rows:
        x = x0 + pad
        for i, item in enumerate(row):
            if isinstance(item, int):
                ramp = np.linspace(0, 255, item).astype(np.uint8)[None, :].repeat(max(th - 1, 3), axis=0)
                canvas[y - ramp.shape[0]:y, x:x + item] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)  # inside: the box fits
            else:
                outlined_text(canvas, item, (x, y), font_scale, (255, 255, 255), thickness, outline)
            x += item_width(item, font_scale) + pad + (2 * pad if i == 2 else 0)  # a wider gap after the bar's "1"
        y += line_h
    return x0, y0, x1, y1


def draw_track_marks(canvas: np.ndarray, tracks: Sequence[tuple[int, float, float, Sequence[tuple[float, float]], bool]],
                     palette: Sequence[tuple[int, int, int]]) -> None:
    """Each track's trail, ring and ID (``(track_id, u, v, trail, coasting)``) drawn in place, in its
    palette colour; a coasting track's ring in gray."""
    h, w = canvas.shape[:2]
    scale = mark_scale(h, w)
    font_scale = 0.45 * scale
    for track_id, u, v, trail, coasting in tracks:
        ink = palette[(track_id - 1) % len(palette)]
        if len(trail) > 1:
            path = np.round(np.array(trail) * 16).astype(np.int32)
            cv2.polylines(canvas, [path], False, ink, scale, cv2.LINE_AA, shift=4)
        centre = (int(round(u * 16)), int(round(v * 16)))
        cv2.circle(canvas, centre, 7 * scale * 16, ink if not coasting else (128, 128, 128), scale, cv2.LINE_AA, shift=4)
        corner = (int(min(max(u + 9 * scale, 1), w - 30 * scale)), int(min(max(v - 6 * scale, 12 * scale), h - 2)))
        outlined_text(canvas, str(track_id), corner, font_scale, ink, scale, 3 * scale)
