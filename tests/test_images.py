"""Reading images: every common kind becomes one standardised gray float32 array; errors name the file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from simple_keypoint.images import ImageError, load_gray, read_image, standardise, to_display, to_gray


def write(path, image, ext=".png"):
    ok, data = cv2.imencode(ext, image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path


@pytest.fixture
def picture():
    """A 8-bit gray picture with structure (gradient, blob) so mistakes show."""
    v, u = np.mgrid[0:30, 0:40]
    image = (u * 4 + v * 2).astype(np.float64)
    image[10:13, 20:23] = 250
    return np.clip(image, 0, 255).astype(np.uint8)


def test_kinds_are_read_as_stored(tmp_path, picture):
    bgr = np.dstack([picture, picture // 2, 255 - picture])
    bgra = np.dstack([bgr, np.full_like(picture, 200)])
    wide = picture.astype(np.uint16) * 257
    for name, image in {"gray": picture, "bgr": bgr, "bgra": bgra, "u16": wide}.items():
        back = read_image(write(tmp_path / f"{name}.png", image))
        assert back.dtype == image.dtype and back.shape == image.shape, name
        np.testing.assert_array_equal(back, image)
        gray = load_gray(tmp_path / f"{name}.png")
        assert gray.dtype == np.float32 and gray.shape == picture.shape, name
        assert abs(float(gray.mean())) < 1e-5 and abs(float(gray.std()) - 1) < 1e-4, name


def test_gray_colour_file_equals_gray_file(tmp_path, picture):
    # An IR frame saved as 3 equal channels must give exactly what the 1-channel file gives.
    gray = load_gray(write(tmp_path / "g.png", picture))
    triple = load_gray(write(tmp_path / "c.png", np.dstack([picture] * 3)))
    quad = load_gray(write(tmp_path / "a.png", np.dstack([picture] * 3 + [np.zeros_like(picture)])))
    np.testing.assert_allclose(triple, gray, atol=1e-5)
    np.testing.assert_allclose(quad, gray, atol=1e-5)


def test_16_bit_and_8_bit_standardise_the_same(tmp_path, picture):
    eight = load_gray(write(tmp_path / "p8.png", picture))
    sixteen = load_gray(write(tmp_path / "p16.png", picture.astype(np.uint16) * 257))
    tiff = load_gray(write(tmp_path / "p16.tif", picture.astype(np.uint16) * 64 + 1000, ".tif"))  # other gain/offset
    np.testing.assert_allclose(sixteen, eight, atol=1e-5)
    np.testing.assert_allclose(tiff, eight, atol=1e-5)
    # Arrays go through the same steps as files.
    np.testing.assert_allclose(standardise(to_gray(picture.astype(np.uint16) * 257)), eight, atol=1e-5)


def test_non_ascii_path(tmp_path, picture):
    path = write(tmp_path / "données" / "目标_ä.png", picture)
    np.testing.assert_array_equal(read_image(path), picture)
    assert load_gray(path).shape == picture.shape


def test_bad_files_name_the_file(tmp_path, picture):
    empty = tmp_path / "données" / "empty.png"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(write(tmp_path / "full.png", picture).read_bytes()[:40])
    for path in (empty, corrupt, truncated, tmp_path / "missing.png"):
        with pytest.raises(ImageError) as info:
            load_gray(path)
        assert str(info.value).startswith(str(path) + ": ")
        assert "\n" not in str(info.value)


def test_to_gray_rejects_odd_shapes():
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        to_gray(np.zeros((2, 4, 4, 3), np.uint8))


def test_flat_frame_stays_finite():
    for image in (np.zeros((8, 8), np.uint8), np.full((8, 8), 65535, np.uint16)):
        out = standardise(to_gray(image))
        assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_to_display_is_8_bit_bgr(picture):
    for image in (picture, picture.astype(np.uint16) * 257, np.zeros((5, 6), np.float32)):
        shown = to_display(image)
        assert shown.dtype == np.uint8 and shown.shape == image.shape[:2] + (3,)
