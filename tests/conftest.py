"""Shared fixtures: a tiny copy of SIRST, and one tiny model of each method trained through its CLI.

The two trainings are session-scoped so the whole suite trains each method once (a few seconds);
tests that need a checkpoint reuse them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]  # importable: `python -m pytest` from here puts it on the path

SIRST_TRAIN = REPO / "data" / "train"
# 8 images of data/train: gray, BGR and BGRA files, 1- and 2-target labels (2 of them are skipped by regression).
TINY_STEMS = ("Misc_1", "Misc_10", "Misc_100", "Misc_101", "Misc_102", "Misc_103", "Misc_104", "Misc_105")
# Small and short: one epoch of 64 px crops; every train run in the suite uses these.
TINY_TRAIN_ARGS = ("--epochs", "1", "--crop", "64", "--batch-size", "4", "--repeats", "1", "--quiet", "--device", "cpu")


ONNX_CACHE_ENV = "SIMPLE_KEYPOINT_CACHE"
# How long a test waits for a child process or an event before it fails. Generous on purpose: a busy
# machine makes the suite slower, never red; only a hung process reaches it, and the failure says
# what was awaited. SIMPLE_KEYPOINT_TEST_PATIENCE (seconds) changes it.
PATIENCE = float(os.environ.get("SIMPLE_KEYPOINT_TEST_PATIENCE", "1800"))


@pytest.fixture(scope="session", autouse=True)
def onnx_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's ONNX exports (the default CPU path caches them) go to a temporary folder, not
    the user's cache; the child processes of run_python share it."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    previous = os.environ.get(ONNX_CACHE_ENV)
    os.environ[ONNX_CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(ONNX_CACHE_ENV, None)
    else:
        os.environ[ONNX_CACHE_ENV] = previous


def clean_env() -> dict[str, str]:
    """The environment for child processes: the repo importable, no user visdom settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPLE_KEYPOINT_") or k == ONNX_CACHE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run(command: list[str], timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(command)`` with output captured as text; one still running after ``timeout``
    (default :data:`PATIENCE`) is killed and the test fails, naming the command and its output so far."""
    timeout = PATIENCE if timeout is None else timeout
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        so_far = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (e.stdout, e.stderr) if x)
        pytest.fail(f"waited {timeout:.0f} s for {' '.join(command)} to finish; killed it. Its output so far:\n{so_far}")


def wait_until(done: Callable[[], object], what: str, process: subprocess.Popen | None = None,
               poll: float = 0.05) -> None:
    """Return once ``done()`` is true. Fails at once if ``process`` ends first, and after
    :data:`PATIENCE` seconds (killing ``process``); each failure says what it waited for."""
    deadline = time.monotonic() + PATIENCE
    while not done():
        ended = process is not None and process.poll() is not None
        if ended or time.monotonic() > deadline:
            output = ""
            if process is not None:
                process.kill()
                output = "".join(part for part in process.communicate() if isinstance(part, str))
            why = f"the process ended first (exit {process.returncode})" if ended else f"it did not come in {PATIENCE:.0f} s"
            pytest.fail(f"waited for {what}: {why}" + (f"; its output:\n{output}" if output else ""))
        time.sleep(poll)


def run_python(*args: str | os.PathLike, timeout: float | None = None, cwd: str | os.PathLike = REPO) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` (a module with -m, or a script) and capture its output as text (see :func:`run`)."""
    return run([sys.executable, *map(str, args)], timeout, cwd=cwd, env=clean_env())


def installed_command() -> Path:
    """``simple-keypoint`` of this interpreter's environment; required in CI, else a skip that says why."""
    command = Path(sys.executable).parent / "simple-keypoint"
    if not command.is_file():
        message = f"{command} is missing: the package is not installed here (pip install . does it)"
        if os.environ.get("SIMPLE_KEYPOINT_REQUIRE_INSTALLED"):
            pytest.fail(message)
        pytest.skip(message)
    return command


def run_outside(cwd: str | os.PathLike, *args: str | os.PathLike, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run in ``cwd`` with nothing of the checkout on the path: only what pip installed (the suite's
    ONNX cache folder is kept, so exports go there and not to the user's cache)."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and (not k.startswith("SIMPLE_KEYPOINT_") or k == ONNX_CACHE_ENV)}
    env.setdefault("MPLBACKEND", "Agg")
    return run([str(a) for a in args], timeout, cwd=cwd, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_tiny_dataset(dest: Path, stems: tuple[str, ...] = TINY_STEMS) -> Path:
    """Copy some SIRST images and their labels into ``dest/images`` and ``dest/labels``."""
    (dest / "images").mkdir(parents=True)
    (dest / "labels").mkdir()
    for stem in stems:
        shutil.copy(SIRST_TRAIN / "images" / f"{stem}.png", dest / "images")
        shutil.copy(SIRST_TRAIN / "labels" / f"{stem}.txt", dest / "labels")
    return dest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder with 8 SIRST images (treat as read-only; copy it to change it)."""
    return copy_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def _train(method: str, data: Path, out: Path) -> tuple[Path, subprocess.CompletedProcess]:
    result = run_python("-m", f"simple_keypoint.{method}.train", "--data", data, "--out", out, *TINY_TRAIN_ARGS)
    assert result.returncode == 0, f"{method} training failed:\n{result.stdout}\n{result.stderr}"
    return out, result


@pytest.fixture(scope="session")
def heatmap_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m simple_keypoint.heatmap.train`` for one tiny epoch: (run folder, process result)."""
    return _train("heatmap", tiny_dataset, tmp_path_factory.mktemp("runs") / "heatmap")


@pytest.fixture(scope="session")
def regression_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m simple_keypoint.regression.train`` for one tiny epoch: (run folder, process result)."""
    return _train("regression", tiny_dataset, tmp_path_factory.mktemp("runs") / "regression")


@pytest.fixture(scope="session")
def heatmap_checkpoint(heatmap_run: tuple[Path, subprocess.CompletedProcess]) -> Path:
    return heatmap_run[0] / "weights" / "best.pt"


@pytest.fixture(scope="session")
def regression_checkpoint(regression_run: tuple[Path, subprocess.CompletedProcess]) -> Path:
    return regression_run[0] / "weights" / "best.pt"


def decoded_frames(path: Path) -> list:
    """Every frame OpenCV decodes from a video file (BGR arrays)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while (got := capture.read())[0]:
        frames.append(got[1])
    capture.release()
    return frames
