"""The label file format: round trips, every rejection (naming file and line), tolerated variants."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from simple_keypoint.labels import (
    LabelError,
    format_labels,
    normalised_to_pixel,
    parse_labels,
    pixel_to_normalised,
    read_labels,
    write_labels,
)


def test_round_trip_six_decimals(tmp_path):
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.random((7, 2)), rng.random(7)])
    path = tmp_path / "a.txt"
    write_labels(path, points)
    lines = path.read_text().splitlines()
    assert lines[0] == "7"
    assert all(len(field.split(".")[1]) == 6 for line in lines[1:] for field in line.split())
    back = read_labels(path)
    assert back.shape == (7, 3)
    np.testing.assert_allclose(back, points, atol=5e-7, rtol=0)
    # Writing what was read gives the same bytes (a stable format).
    write_labels(tmp_path / "b.txt", back)
    assert (tmp_path / "b.txt").read_bytes() == path.read_bytes()


def test_two_columns_read_with_score_one(tmp_path):
    path = tmp_path / "a.txt"
    write_labels(path, np.array([[0.25, 0.75], [0.0, 1.0]]))
    assert path.read_text() == "2\n0.250000 0.750000\n0.000000 1.000000\n"
    np.testing.assert_array_equal(read_labels(path), [[0.25, 0.75, 1.0], [0.0, 1.0, 1.0]])


def test_zero_means_no_points(tmp_path):
    path = tmp_path / "empty_scene.txt"
    write_labels(path, np.zeros((0, 2)))
    assert path.read_text() == "0\n"
    points = read_labels(path)
    assert points.shape == (0, 3)
    assert parse_labels("0").shape == (0, 3)


@pytest.mark.parametrize("text, line, words", [
    ("2\n0.1 0.2\n", 1, "2 point"),  # count says more than follow
    ("1\n0.1 0.2\n0.3 0.4\n", 1, "1 point"),  # count says fewer than follow
    ("one\n0.1 0.2\n", 1, "number of points"),
    ("-1\n", 1, "number of points"),
    ("1.0\n0.1 0.2\n", 1, "number of points"),
    ("1 2\n0.1 0.2\n", 1, "number of points"),
    ("1\n0.1 abc\n", 2, "not a number"),
    ("2\n0.1 0.2\n0.1 0,2\n", 3, "not a number"),
    ("1\nnan 0.2\n", 2, "non-finite"),
    ("1\n0.1 inf\n", 2, "non-finite"),
    ("1\n0.1 0.2 -inf\n", 2, "non-finite"),
    ("1\n1.5 0.2\n", 2, "outside"),
    ("1\n0.5 -0.001\n", 2, "outside"),
    ("1\n0.1\n", 2, "expected"),
    ("1\n0.1 0.2 0.3 0.4\n", 2, "expected"),
    ("2\n0.1 0.2\n\n0.3 0.4\n", 1, "2 point"),  # a blank line inside is not a point
    ("", 1, "empty"),
    ("\n\n  \n", 1, "empty"),
    ("\ufeff", 1, "empty"),
])
def test_rejections_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "Misc_7.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(LabelError) as info:
        read_labels(path)
    error = info.value
    assert error.path == str(path) and error.line == line
    message = str(error)
    assert message.startswith(f"{path}:{line}: ")
    assert words in message
    assert "\n" not in message


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(LabelError, match="missing.txt"):
        read_labels(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(LabelError, match="binary.txt.*UTF-8"):
        read_labels(binary)


@pytest.mark.parametrize("text", [
    "2\r\n0.1 0.2\r\n0.3 0.4 0.9\r\n",  # CRLF (Windows)
    "\ufeff2\n0.1 0.2\n0.3 0.4 0.9\n",  # BOM (Notepad)
    "2\n0.1 0.2\n0.3 0.4 0.9\n\n\n  \n",  # trailing blank lines
    "  2 \n 0.1   0.2\n0.3\t0.4  0.9   \n",  # extra spaces and tabs
    "2\n0.1 0.2\n0.3 0.4 0.9",  # no final newline
    "\ufeff2\r\n  0.1e0  2e-1 \r\n0.3 0.4 0.9\r\n\r\n",  # all at once
])
def test_tolerated_variants(tmp_path, text):
    path = tmp_path / "a.txt"
    path.write_bytes(text.encode("utf-8"))
    np.testing.assert_allclose(read_labels(path), [[0.1, 0.2, 1.0], [0.3, 0.4, 0.9]])


@pytest.mark.parametrize("bad", [
    np.array([[0.1, np.nan]]), np.array([[1.2, 0.5]]), np.array([[-0.1, 0.5, 1.0]]), np.zeros((2, 4)), np.zeros(3),
])
def test_format_refuses_bad_points(bad):
    with pytest.raises(ValueError):
        format_labels(bad)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1\n0.5 0.5\n")
    write_labels(path, np.array([[0.1, 0.2]]))
    write_labels(path, np.array([[0.3, 0.4], [0.5, 0.6]]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    np.testing.assert_allclose(read_labels(path)[:, :2], [[0.3, 0.4], [0.5, 0.6]])
    # A failed write (bad points) keeps the old file untouched and leaves nothing behind.
    with pytest.raises(ValueError):
        write_labels(path, np.array([[2.0, 0.5]]))
    # A failed rename (the target is a folder) also cleans up its temp file.
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(OSError):
        write_labels(tmp_path / "folder.txt", np.array([[0.1, 0.2]]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "folder.txt"]
    assert list((tmp_path / "folder.txt").iterdir()) == []
    np.testing.assert_allclose(read_labels(path)[:, :2], [[0.3, 0.4], [0.5, 0.6]])


def test_pixel_convention():
    # Pixel 0 of a 4-wide image is centred at x = 1/8; the image spans [0, 1] exactly.
    np.testing.assert_allclose(pixel_to_normalised([[0, 0], [3, 1]], 4, 2), [[0.125, 0.25], [0.875, 0.75]])
    np.testing.assert_allclose(pixel_to_normalised([[-0.5, -0.5], [3.5, 1.5]], 4, 2), [[0, 0], [1, 1]])
    uv = np.array([[12.3, 40.75], [0.0, 99.0]])
    np.testing.assert_allclose(normalised_to_pixel(pixel_to_normalised(uv, 320, 100), 320, 100), uv, atol=1e-12)
    # Resizing never moves a point: the same normalised point is the same place at 2x.
    np.testing.assert_allclose(normalised_to_pixel([[0.125, 0.25]], 8, 4), [[0.5, 0.5]])


@pytest.mark.skipif(os.name != "posix", reason="file modes are a POSIX notion")
def test_atomic_write_gives_ordinary_file_modes(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "new.txt"
        write_labels(path, np.zeros((0, 2)))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # what open() would give, not mkstemp's private 0600
        os.chmod(path, 0o640)
        write_labels(path, np.array([[0.5, 0.5]]))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # rewriting keeps the file's mode
    finally:
        os.umask(umask)


def test_label_format_uncertain_column_round_trip_and_old_files():
    assert format_labels(np.array([[0.5, 0.25]]), np.array([False])) == "1\n0.500000 0.250000\n"
    text = format_labels(np.array([[0.5, 0.25, 0.8], [0.1, 0.2, 1.0]]), np.array([True, False]))
    assert text == "2\n0.500000 0.250000 0.800000 1\n0.100000 0.200000 1.000000 0\n"
    assert parse_labels(text, with_flags=True)[:, 3].tolist() == [1.0, 0.0]
    assert parse_labels(text).shape == (2, 3)  # callers that know no flags see the old shape
    assert parse_labels("1\n0.5 0.5\n", with_flags=True).tolist() == [[0.5, 0.5, 1.0, 0.0]]
    with pytest.raises(ValueError, match="0 or 1"):
        parse_labels("1\n0.5 0.5 1 2\n")
    with pytest.raises(ValueError, match="one flag per point"):
        format_labels(np.array([[0.5, 0.5]]), np.array([True, False]))
