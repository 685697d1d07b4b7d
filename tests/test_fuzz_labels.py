"""Property-based tests of the label parser: any text parses to the points it plainly says, or
raises LabelError naming the file and the line; write -> read is exact to 6 decimals."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from simple_keypoint.labels import LabelError, format_labels, parse_labels, read_labels, write_labels

PATH = "some/dir/frame_001.txt"
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=120, deadline=None, database=None)

# Characters that have broken parsers: other scripts' digits, odd line breaks and spaces, signs.
TRICKY = "0123456789.+-eE _\t\r\n\x0b\x0c\x1c\x85\u2028\xa0\ufeff²٣１naifNIF,;"


def plain_lines(text: str) -> list[str]:
    """What a person sees in an editor: lines split at \\n, \\r\\n or \\r only."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def check_message(err: LabelError, lines_in_text: int) -> None:
    assert err.path == PATH and str(err).startswith(f"{PATH}:")
    assert "\n" not in str(err)
    assert err.line is not None and 1 <= err.line <= max(lines_in_text, 1)
    assert f"{PATH}:{err.line}: " in str(err)


@FUZZ
@given(st.text(alphabet=st.sampled_from(TRICKY), max_size=60) | st.text(max_size=40))
@example("²\n")  # str.isdigit() is True but int() raises: was a bare ValueError
@example("1\x0b0.5 0.5")  # one line for a person, two for str.splitlines(): was accepted
@example("1\n1_0e-1 0.5")  # float() reads '1_0e-1' as 1.0: was a silent point
@example("1\n٠.٥ 0.5")  # Arabic-Indic digits: float() reads 0.5
@example("9" * 5000)  # int() refuses more than 4300 digits with a bare ValueError
def test_any_text_parses_to_what_it_says_or_raises_label_error(text: str) -> None:
    try:
        points = parse_labels(text, PATH)
    except LabelError as e:
        check_message(e, len(plain_lines(text)))
        return
    # Parsed: every point must be exactly what its line says, in plain ASCII decimal.
    lines = plain_lines(text)
    while lines and not lines[-1].strip(" \t"):
        lines.pop()
    assert lines[0].strip(" \t").isascii() and int(lines[0]) == len(points) == len(lines) - 1
    assert points.shape == (len(points), 3) and points.dtype == np.float64
    for row, line in zip(points, lines[1:], strict=True):
        fields = line.split()
        assert all(re.fullmatch(r"[0-9eE.+-]+", f) for f in fields), line
        expected = [float(f) for f in fields] + ([1.0] if len(fields) == 2 else [])
        assert row.tolist() == expected
        assert 0 <= row[0] <= 1 and 0 <= row[1] <= 1 and all(math.isfinite(v) for v in row)


coordinate = st.floats(0, 1, allow_nan=False)
score = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
number_style = st.sampled_from(["{:.6f}", "{!r}", "{:g}", "{:.3e}", "{:+.4f}", "{:.17g}"])


@st.composite
def label_text(draw: st.DrawFn) -> tuple[str, list[list[float]]]:
    """A valid label file in any tolerated layout, with the values its text encodes."""
    n = draw(st.integers(0, 6))
    rows, lines = [], []
    for _ in range(n):
        values = [draw(coordinate), draw(coordinate)] + ([draw(score)] if draw(st.booleans()) else [])
        texts = [draw(number_style).format(v) for v in values]
        parsed = [float(t) for t in texts]
        assume(0 <= parsed[0] <= 1 and 0 <= parsed[1] <= 1)  # rounding may push 1 - tiny to 1.0, never above
        sep = draw(st.sampled_from([" ", "  ", "\t", " \t "]))
        lines.append(draw(st.sampled_from(["", " ", "\t"])) + sep.join(texts) + draw(st.sampled_from(["", " "])))
        rows.append(parsed + ([1.0] if len(values) == 2 else []))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = draw(st.sampled_from(["", "\ufeff"])) + eol.join([f"{n}", *lines]) + draw(st.sampled_from(["", eol, eol * 3, eol + " "]))
    return text, rows


@SOME
@given(label_text())
def test_every_tolerated_layout_reads_exactly(case: tuple[str, list[list[float]]]) -> None:
    text, rows = case
    points = parse_labels(text, PATH)
    assert points.reshape(-1, 3).tolist() == rows


@SOME
@given(label_text(), st.data())
def test_one_broken_line_is_named(case: tuple[str, list[list[float]]], data: st.DataObject) -> None:
    """Breaking one point line gives LabelError naming exactly that line (or line 1 for the count)."""
    text, rows = case
    assume(rows)
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    k = data.draw(st.integers(1, len(rows)))  # 0-based index of a point line
    bad = data.draw(st.sampled_from(["0.5", "0.5 0.5 0.5 0.5", "x 0.5", "0.5 nan", "1.5 0.5", "0.5 -0.1",
                                     "0.5 inf", "0,5 0,5", "0.5 0.5 1e999", "0x1 0.5", "½ 0.5"]))
    lines[k] = bad
    with pytest.raises(LabelError) as caught:
        parse_labels("\n".join(lines), PATH)
    assert caught.value.line == k + 1
    check_message(caught.value, len(lines))


@SOME
@given(st.lists(st.tuples(coordinate, coordinate, score), max_size=8), st.booleans())
def test_write_then_read_is_exact_to_6_decimals(tmp_path_factory: pytest.TempPathFactory,
                                                 rows: list[tuple[float, float, float]], with_score: bool) -> None:
    points = np.array(rows, dtype=np.float64).reshape(-1, 3)
    if not with_score:
        points = points[:, :2]
    path = tmp_path_factory.mktemp("labels") / "a.txt"
    write_labels(path, points)
    back = read_labels(path)
    assert back.shape == (len(points), 3)
    assert np.array_equal(back[:, : points.shape[1]], np.round(points, 6))
    if not with_score:
        assert np.all(back[:, 2] == 1.0)
    # Writing what was read gives the same bytes: the format is a fixed point.
    assert format_labels(back[:, : points.shape[1]]) == path.read_text()


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe1\x00\n\x00", "not a text file (not UTF-8)"),
    (b"", "1: empty file"),
    (b"2\n0.5 0.5\n", "1: says 2 point(s) but 1 line(s) follow"),
])
def test_read_labels_names_the_file(tmp_path, raw: bytes, reason: str) -> None:
    path = tmp_path / "ü ñ 中.txt"
    path.write_bytes(raw)
    with pytest.raises(LabelError, match=re.escape(f"{path}:" if ":" in reason[:3] else str(path))) as caught:
        read_labels(path)
    assert reason in str(caught.value)


@SOME
@given(st.lists(st.tuples(coordinate, coordinate, score, st.booleans()), max_size=8), st.booleans())
def test_uncertain_flags_round_trip_and_no_flag_writes_the_old_format(tmp_path_factory: pytest.TempPathFactory,
                                                                      rows: list[tuple[float, float, float, bool]],
                                                                      with_score: bool) -> None:
    points = np.array([r[:3] for r in rows], dtype=np.float64).reshape(-1, 3)
    flags = np.array([r[3] for r in rows], dtype=bool)
    if not with_score:
        points = points[:, :2]
    path = tmp_path_factory.mktemp("labels") / "a.txt"
    write_labels(path, points, flags)
    back = read_labels(path, with_flags=True)
    assert back.shape == (len(points), 4) and np.array_equal(back[:, 3].astype(bool), flags)
    assert np.array_equal(back[:, :2], np.round(points[:, :2], 6))
    assert read_labels(path).shape == (len(points), 3)  # readers that know no flags are unchanged
    if not flags.any():
        assert path.read_text() == format_labels(points)  # no flag set: byte for byte the old format
