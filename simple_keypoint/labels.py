"""The label file format, in one place.

A label file ``<stem>.txt`` holds, on line 1, the number of points N, then N lines ``x y``,
``x y score`` or ``x y score uncertain`` (an optional 0/1 flag a labeller sets on a doubtful point;
written only when some point has it, so files without it are unchanged). Coordinates are
normalised to [0, 1] with ``x = (u + 0.5) / W`` where ``u`` is the 0-based pixel index, so the
image spans [0, 1] exactly and resizing never moves a point.
``0`` means "looked, no target"; a missing file means "not labelled yet".
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

# The format is plain ASCII: str.isdigit/float/splitlines would also accept other scripts' digits,
# '1_0', and \x0b or \x1c as line breaks, which reads a point the file does not plainly say.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_FIELD_SEP = re.compile(r"[ \t]+")


class LabelError(ValueError):
    """A label file that cannot be trusted; the message names the file and the line."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


def parse_labels(text: str, path: str | os.PathLike = "<text>", with_flags: bool = False) -> np.ndarray:
    """Parse label text into an (N, 3) float array of normalised ``x, y, score`` ((N, 4) with the
    ``uncertain`` flag as a 4th column, 0 or 1, when ``with_flags``).

    Tolerates a BOM, CRLF, extra spaces and trailing blank lines; a missing score reads as 1, a
    missing flag as 0. Anything else that is off raises :class:`LabelError` naming the file and line.
    """
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip(" \t"):
        lines.pop()
    if not lines:
        raise LabelError(path, 1, "empty file (write '0' for an image with no target)")
    head = lines[0].strip(" \t")
    if not re.fullmatch(r"[0-9]{1,9}", head):  # int() of thousands of digits would itself raise
        raise LabelError(path, 1, f"first line must be the number of points, got {lines[0][:60]!r}")
    count = int(head)
    if len(lines) - 1 != count:
        raise LabelError(path, 1, f"says {count} point(s) but {len(lines) - 1} line(s) follow")
    points = np.empty((count, 4), dtype=np.float64)
    for i, line in enumerate(lines[1:], start=2):
        fields = _FIELD_SEP.split(line.strip(" \t"))
        if len(fields) not in (2, 3, 4):
            raise LabelError(path, i, f"expected 'x y', 'x y score' or 'x y score uncertain', got {line[:60]!r}")
        if not all(_NUMBER.fullmatch(f) or _NON_FINITE.fullmatch(f) for f in fields):
            raise LabelError(path, i, f"not a number in {line[:60]!r}")
        values = [float(f) for f in fields]
        if not all(math.isfinite(v) for v in values):  # nan, inf, or an overflow such as 1e999
            raise LabelError(path, i, f"non-finite value in {line[:60]!r}")
        x, y = values[:2]
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise LabelError(path, i, f"point ({x}, {y}) is outside [0, 1]")
        if len(fields) == 4 and fields[3] not in ("0", "1"):
            raise LabelError(path, i, f"expected the uncertain flag (4th column) 0 or 1, got {fields[3][:20]!r}")
        points[i - 2] = (x, y, values[2] if len(values) >= 3 else 1.0, values[3] if len(values) == 4 else 0.0)
    return points if with_flags else points[:, :3]


def read_labels(path: str | os.PathLike, with_flags: bool = False) -> np.ndarray:
    """Read a label file; returns (N, 3) normalised ``x, y, score`` ((N, 4) with the uncertain
    flag when ``with_flags``). Raises LabelError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise LabelError(path, None, f"cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LabelError(path, None, "not a text file (not UTF-8)") from None
    return parse_labels(text, path, with_flags)


def format_labels(points: np.ndarray, uncertain: np.ndarray | None = None) -> str:
    """Format (N, 2) points, or (N, 3) points with scores, as label-file text (6 decimals).

    ``uncertain`` (N booleans) flags doubtful points; when any is set, every line gets a score
    (1 where none was given) and the 0/1 flag as a 4th column, otherwise the text is as without it.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(f"points must be (N, 2) or (N, 3), got {points.shape}")
    xy = points[:, :2]
    if not np.all(np.isfinite(points)) or np.any((xy < 0) | (xy > 1)):
        raise ValueError("points must be finite with x, y in [0, 1]")
    flags = np.zeros(len(points), bool) if uncertain is None else np.asarray(uncertain, dtype=bool).ravel()
    if flags.shape != (len(points),):
        raise ValueError(f"uncertain must hold one flag per point ({len(points)}), got {flags.shape}")
    if flags.any():
        scores = points[:, 2] if points.shape[1] == 3 else np.ones(len(points))
        rows = [f"{x:.6f} {y:.6f} {score:.6f} {int(flag)}" for (x, y), score, flag in zip(xy, scores, flags, strict=True)]
    else:
        rows = [" ".join(f"{v:.6f}" for v in p) for p in points]
    return "\n".join([str(len(points)), *rows]) + "\n"


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    Temp file in the same folder, fsync, then rename over the target (atomic on POSIX and Windows).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would (or the old file's).
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_labels(path: str | os.PathLike, points: np.ndarray, uncertain: np.ndarray | None = None) -> None:
    """Atomically write (N, 2) or (N, 3) normalised points (and optional uncertain flags) to a label file."""
    atomic_write(path, format_labels(points, uncertain).encode("utf-8"))


def pixel_to_normalised(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """0-based pixel coordinates (u, v) -> normalised (x, y): x = (u + 0.5) / W."""
    uv = np.asarray(uv, dtype=np.float64)
    return (uv + 0.5) / np.array([width, height], dtype=np.float64)


def normalised_to_pixel(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised (x, y) -> 0-based pixel coordinates (u, v): u = x * W - 0.5."""
    xy = np.asarray(xy, dtype=np.float64)
    return xy * np.array([width, height], dtype=np.float64) - 0.5
