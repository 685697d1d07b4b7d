"""landmark_annotation without a window: snapping, display windowing, the session (state + files)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PATIENCE

from landmark_annotation.display import View, Windowing, apply_window
from landmark_annotation.session import Session
from landmark_annotation.snap import snap_point
from simple_keypoint.images import percentile_window as levels
from simple_keypoint.labels import normalised_to_pixel, read_labels


def spot_image(w: int, h: int, centre: tuple[float, float], amplitude: float, background: float,
               sigma: float = 1.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A Gaussian spot at a sub-pixel ``centre`` (pixel-index coordinates) on a flat background."""
    yy, xx = np.mgrid[:h, :w]
    image = background + amplitude * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
    return image + np.random.default_rng(seed).normal(0, noise, image.shape) if noise else image


def write_image(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    data.tofile(str(path))  # tofile: non-ASCII names work everywhere


# ---- snapping -------------------------------------------------------------------------------------
@pytest.mark.parametrize("centre", [(20.3, 15.7), (31.5, 8.25), (9.9, 30.1)])
def test_snap_finds_subpixel_centroid_from_nearby_clicks(centre):
    image = spot_image(48, 40, centre, 150, 1000, sigma=1.2, noise=1.0)
    snapped = {snap_point(image, centre[0] + dx, centre[1] + dy, radius=3) for dx, dy in [(2, 0), (-1, 1.5), (0.4, -2), (0, 0)]}
    assert len(snapped) == 1, "clicks on the same target must give the same point"
    (u, v), = snapped
    assert np.hypot(u - centre[0], v - centre[1]) < 0.1


def test_snap_returns_none_without_a_peak():
    flat = np.full((30, 30), 500.0) + np.random.default_rng(1).normal(0, 2, (30, 30))
    assert snap_point(flat, 15, 15) is None
    assert snap_point(np.zeros((30, 30)), 15, 15) is None
    assert snap_point(flat, -5, 40) is None  # outside the image


def test_snap_radius_limits_the_search():
    image = spot_image(60, 30, (40.0, 15.0), 100, 10)
    assert snap_point(image, 30, 15, radius=3) is None  # spot 10 px away: out of reach
    u, v = snap_point(image, 30, 15, radius=12)
    assert abs(u - 40) < 0.05 and abs(v - 15) < 0.05


def test_snap_near_the_border():
    image = spot_image(40, 40, (0.3, 39.0), 100, 10)
    u, v = snap_point(image, 1, 38)
    # Half the spot is cut off, so the centroid of what is visible sits a little inside; it stays in the image.
    assert abs(v - 39.0) < 0.6 and abs(u - 0.3) < 0.6 and v <= 39.5 and u >= -0.5


# ---- display -------------------------------------------------------------------------------------
def test_windowing_makes_a_dim_16bit_spot_visible():
    image = spot_image(64, 64, (30, 30), 200, 30000, noise=15).astype(np.uint16)
    lo, hi = levels(image.astype(np.float32), 1.0, 99.9)
    assert 29900 < lo < 30000 < hi
    rgb = apply_window(image.astype(np.float32), lo, hi)
    assert rgb[30, 30, 0] >= 200 and np.median(rgb[..., 0]) < 100
    # A plain 16 -> 8 bit scaling shows nothing: the spot is within 1 gray level of the background.
    assert int(image[30, 30]) // 257 - int(np.median(image)) // 257 <= 1


def test_windowing_settings_and_colormap():
    window = Windowing()
    window.step_high(-1)
    window.step_low(1)
    assert (window.low, window.high) == (2.0, 99.5)
    window.step_gamma(-1)
    assert window.gamma < 1
    gray = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    assert (apply_window(gray, 0, 1, 0.5)[8, 0] > apply_window(gray, 0, 1, 1.0)[8, 0]).all()
    window.next_colormap()
    coloured = apply_window(gray, 0, 1, 1.0, window.colormap)
    assert not (coloured[..., 0] == coloured[..., 1]).all()
    assert levels(np.full((5, 5), 7.0), 1, 99) == (7.0, 8.0)  # flat image: no division by zero


def test_view_nearest_zoom_and_cursor_centred_zoom():
    gray = np.arange(48, dtype=np.float32).reshape(6, 8)
    view = View()
    view.fit((400, 300), (8, 6))
    assert view.scale == 50 and (view.x0, view.y0) == (0, 0)
    assert view.to_canvas(0, 0) == (25, 25) and view.to_image(25, 25) == (0, 0)
    rgb, x, y = view.render(gray, Windowing(), 0, 47)
    assert rgb.shape == (300, 400, 3) and (x, y) == (0, 0)
    # Nearest neighbour: each image pixel is a flat 50 x 50 block, no smoothing.
    assert len(np.unique(rgb[150:200, 250:300])) == 1 and rgb[175, 275, 0] == round(29 / 47 * 255)
    view.fit((400, 300), (4, 3))
    assert view.scale == 64.0 and view.to_canvas(1.5, 1) == (200, 150)  # tiny image: capped zoom, centred
    u, v = view.to_image(123, 77)
    view.zoom_at(123, 77, 1.25)
    assert np.allclose(view.to_image(123, 77), (u, v))  # the point under the cursor stays put
    view.zoom_at(0, 0, 1000)
    assert view.scale == 64.0


def test_view_renders_only_the_visible_region():
    gray = np.random.default_rng(0).random((2000, 3000)).astype(np.float32)
    view = View()
    view.fit((800, 600), (3000, 2000))
    view.zoom_at(400, 300, 200)
    rgb, x, y = view.render(gray, Windowing(), 0.0, 1.0)
    assert rgb.shape == (600, 800, 3)
    view.pan(10**7, 0)  # image off screen
    assert view.render(gray, Windowing(), 0.0, 1.0)[0].size == 0


# ---- session -------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    centres = {"a.png": (20.3, 15.6), "b.png": (11.8, 22.4), "c.png": (30.2, 9.7)}
    for name, centre in centres.items():
        write_image(images / name, spot_image(48, 36, centre, 180, 20).astype(np.uint8))
    return images, centres


def test_session_opens_first_unlabelled_and_click_snaps_and_saves(folder):
    images, centres = folder
    labels = images.parent / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0\n")
    session = Session(images)
    assert session.labels_dir == labels
    assert session.start() and session.name == "b.png" and session.status() == "unlabelled"
    session.add(centres["b.png"][0] + 1.5, centres["b.png"][1] - 1)
    uv = normalised_to_pixel(read_labels(labels / "b.txt")[:, :2], 48, 36)
    assert np.allclose(uv, [centres["b.png"]], atol=0.1)
    assert session.labelled == {0, 1}
    assert session.next_unlabelled() and session.name == "c.png"
    session.no_target()
    assert not session.next_unlabelled() and session.message == "every image is labelled"


def test_session_undo_redo_no_target_delete_nudge(folder):
    images, centres = folder
    session = Session(images)
    session.start()
    path = session.label_path()
    u, v = centres["a.png"]
    session.add(u, v)
    session.add(u + 1, v + 1)  # same target: same point
    assert session.state.points[0] == session.state.points[1]
    session.delete()
    session.snap = False
    session.add(5.0, 5.0)
    assert session.state.points[1] == (5.0, 5.0)
    session.nudge(0.1, -1.0)
    assert np.allclose(session.state.points[1], (5.1, 4.0))
    assert np.allclose(normalised_to_pixel(read_labels(path)[:, :2], 48, 36)[1], (5.1, 4.0), atol=1e-5)
    session.no_target()
    assert path.read_text() == "0\n" and session.status() == "no target"
    assert session.undo() and len(read_labels(path)) == 2
    assert session.redo() and path.read_text() == "0\n"
    while session.undo():
        pass
    assert not path.exists() and session.status() == "unlabelled" and session.labelled == set()


def test_session_drag_is_one_undo_step(folder):
    images, centres = folder
    session = Session(images, snap=False)
    session.start()
    session.add(10, 10)
    for step in range(1, 5):
        session.move(0, 10 + step, 10, final=False)
    assert read_labels(session.label_path()).shape == (1, 3)  # not saved mid-drag
    session.move(0, 15.25, 12.5)
    assert session.state.points == ((15.25, 12.5),)
    assert np.allclose(normalised_to_pixel(read_labels(session.label_path())[:, :2], 48, 36), [(15.25, 12.5)], atol=1e-5)
    session.undo()
    assert session.state.points == ((10.0, 10.0),)


def test_session_failed_save_is_reported_kept_and_retried(folder):
    images, centres = folder
    blocked = images.parent / "labels"
    blocked.write_text("I am a file, not a folder")  # simulates a read-only labels dir (tests run as root)
    session = Session(images, blocked)
    session.start()
    session.add(*centres["a.png"])
    assert "NOT SAVED" in session.message and str(blocked / "a.txt") in session.message
    assert session.status() == "NOT SAVED" and not session.quit()
    session.next()  # the edit is kept in memory while navigating
    assert 0 in session.unsaved
    blocked.unlink()
    session.next()  # navigation retries every pending edit
    assert session.unsaved == {} and (blocked / "a.txt").is_file()
    assert np.allclose(normalised_to_pixel(read_labels(blocked / "a.txt")[:, :2], 48, 36), [centres["a.png"]], atol=0.1)
    assert session.quit()


def test_session_malformed_label_is_reported_and_kept(folder):
    images, centres = folder
    labels = images.parent / "labels"
    labels.mkdir()
    bad = labels / "a.txt"
    bad.write_text("2\n0.5 0.5\n")
    session = Session(images)
    assert "a.txt:1" in session.message
    session.go(0)
    assert "a.txt:1" in session.error and session.status() == "unlabelled"
    session.next()
    session.previous()
    assert bad.read_text() == "2\n0.5 0.5\n"  # looking is not editing: untouched
    session.add(*centres["a.png"])
    assert (labels / "a.txt.bad").read_text() == "2\n0.5 0.5\n"
    assert "a.txt.bad" in session.message and read_labels(bad).shape == (1, 3) and session.error == ""


def test_session_skips_unreadable_images_and_reads_16bit_and_non_ascii(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "1_ü目.png", spot_image(40, 30, (10, 10), 100, 10).astype(np.uint8))
    (images / "2_bad.png").write_bytes(b"not an image")
    write_image(images / "3_deep.tif", spot_image(40, 30, (25.5, 12.0), 400, 30000).astype(np.uint16))
    colour = cv2.cvtColor(spot_image(40, 30, (5, 5), 100, 10).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    write_image(images / "4_colour.bmp", colour)
    session = Session(images)
    assert session.start() and session.name == "1_ü目.png"
    assert session.next() and session.name == "3_deep.tif"
    assert "2_bad.png" in session.message and "2_bad.png" in session.bad_images
    assert session.raw.dtype == np.uint16 and session.pixel_value(25, 12) == str(int(session.raw[12, 25]))
    session.add(25, 13)
    assert np.allclose(session.state.points[0], (25.5, 12.0), atol=0.1)
    assert session.next() and session.name == "4_colour.bmp" and session.gray.shape == (30, 40)
    assert session.previous() and session.name == "3_deep.tif"
    assert session.previous() and session.name == "1_ü目.png"
    session.go(1)  # only the bad one left that way: it is reported, a readable one is opened
    assert session.editable and session.name == "3_deep.tif"
    assert session.first_unlabelled_from(0) == 0


def test_session_proposals_accept_replace_and_carry(folder):
    images, centres = folder
    calls = []

    def proposer(raw):
        calls.append(raw.shape)
        return np.array([[3.0, 4.0, 0.9], [7.5, 8.5, 0.8]])

    session = Session(images, proposer=proposer)
    session.start()
    assert calls == [(36, 48)] and session.proposals.shape == (2, 3) and session.message == "model: 2 proposals"
    assert session.accept_proposals()
    assert np.allclose(normalised_to_pixel(read_labels(session.label_path())[:, :2], 48, 36), [(3, 4), (7.5, 8.5)], atol=1e-5)
    session.next()
    session.add(*centres["b.png"])  # a click replaces the proposals
    assert len(session.state.points) == 1 and session.proposals.shape == (0, 3)

    carry = Session(images, images.parent / "carried", carry=True)
    carry.start()
    assert carry.name == "a.png" and carry.proposals.shape == (0, 3)
    carry.add(*centres["a.png"])
    carry.next()
    # Carried to b.png and re-snapped there: b's own spot is 9 px away, out of the search radius,
    # so the point stays where a's was (not snapped), still only a proposal.
    assert carry.name == "b.png" and np.allclose(carry.proposals[:, :2], [centres["a.png"]], atol=0.1)
    assert carry.accept_proposals() and carry.status() == "labelled, 1 point"


def test_session_with_a_real_checkpoint(folder, tmp_path):
    torch = pytest.importorskip("torch")
    from simple_keypoint.checkpoint import save_checkpoint
    from simple_keypoint.heatmap.model import HeatmapNet
    from simple_keypoint.predict import load_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, {"method": "heatmap", "model_args": {"widths": [4, 8]}, "model_state": HeatmapNet((4, 8)).state_dict(),
                           "decode": {"conf": 0.0, "max_points": 3}})
    images, _ = folder
    session = Session(images, proposer=load_model(path, "cpu").predict)
    session.start()
    assert 1 <= len(session.proposals) <= 3
    assert session.accept_proposals() and len(read_labels(session.label_path())) == len(session.state.points)


def test_cli_help_and_bad_folder(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "landmark_annotation", "--help"], capture_output=True, text=True, timeout=PATIENCE)
    assert out.returncode == 0 and "IMAGES_DIR" in out.stdout and "no target" in out.stdout
    out = subprocess.run([sys.executable, "-m", "landmark_annotation", str(tmp_path / "nope")], capture_output=True, text=True,
                         timeout=PATIENCE)
    assert out.returncode == 2 and "not a folder" in out.stderr and "Traceback" not in out.stderr


def test_state_modules_do_not_need_tk():
    """The state, snapping and display modules work with no display: they must not import tkinter."""
    import subprocess

    code = ("import sys, landmark_annotation.session, landmark_annotation.snap, landmark_annotation.display; "
            "print('tkinter' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_gui_modules_do_not_import_torch():
    """Labelling needs no network: the tool must start without loading torch (seconds of import).
    The model is only imported when a checkpoint is given for proposals."""
    import subprocess

    code = ("import importlib.util, sys, landmark_annotation.__main__, landmark_annotation.session, "
            "landmark_annotation.snap, landmark_annotation.display\n"
            "if importlib.util.find_spec('tkinter'): import landmark_annotation.app\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr + out.stdout
