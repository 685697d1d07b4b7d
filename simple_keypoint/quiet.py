"""Native libraries' own messages kept out of the project's output.

A bad file or a dead stream is reported once, by the project, in one line naming it; OpenCV, its
FFmpeg backend and libpng would otherwise print their own lines beside it (``libpng error: IDAT:
CRC error``, ``[tcp @ 0x...] Connection refused``, ``[ WARN:0@1.2] global cap.cpp ...``). Three
switches: OpenCV's log level (:func:`opencv_silent`), FFmpeg's (:func:`quiet_video_backend`, an
environment variable OpenCV reads when it first loads FFmpeg; a value the user set wins, for
debugging), and for libpng, which writes to the C ``stderr`` with no switch at all,
:func:`native_stderr_filtered`: file descriptor 2 goes to a temporary file while OpenCV decodes, and
everything but the library's lines is written back (a progress bar drawn meanwhile is only delayed).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import cv2

FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"
FFMPEG_QUIET = "-8"  # AV_LOG_QUIET
# The lines a decoder prints by itself: libpng's default handlers ("libpng error: ...", "libpng warning: ...").
LIBRARY_LINE = re.compile(rb"libpng (?:error|warning): [^\n]*\n?")

_lock = threading.Lock()
_depth = 0  # threads inside native_stderr_filtered; fd 2 is restored when the last one leaves
_saved_fd: int | None = None
_capture: IO[bytes] | None = None


def quiet_video_backend() -> None:
    """Silence FFmpeg's own log lines (OpenCV reads the variable once, at the first video opened)."""
    os.environ.setdefault(FFMPEG_LOGLEVEL_ENV, FFMPEG_QUIET)


@contextmanager
def opencv_silent() -> Iterator[None]:
    """OpenCV's log level at SILENT for the block (the failure is reported once, by name)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # None, closed, or a stand-in without flush
        pass


@contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Drop the library lines (LIBRARY_LINE) written to file descriptor 2 during the block; all else
    written there meanwhile reaches stderr when the block ends. Thread-safe: overlapping blocks share
    one capture. Where fd 2 cannot be redirected (no stderr), the block simply runs."""
    global _depth, _saved_fd, _capture
    with _lock:
        if _depth == 0:
            _flush_python_stderr()
            capture = tempfile.TemporaryFile()
            try:
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
                _saved_fd, _capture = saved, capture
            except OSError:  # no fd 2 (a windowless process): nothing to filter
                capture.close()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _capture is not None:
                _flush_python_stderr()
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _capture.seek(0)
                rest = memoryview(LIBRARY_LINE.sub(b"", _capture.read()))
                _capture.close()
                _saved_fd, _capture = None, None
                while rest:
                    rest = rest[os.write(2, rest):]


__all__ = ["native_stderr_filtered", "opencv_silent", "quiet_video_backend"]
