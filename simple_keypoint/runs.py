"""Training run folders: a new numbered folder per run, its settings, and a copy of what it printed.

A run goes to ``--out`` (default ``--project/--name``, i.e. ``runs/<method>``), numbered
``runs/heatmap``, ``runs/heatmap2``, ... so a second run never overwrites the first
(:func:`simple_keypoint.paths.increment_path`; ``--exist-ok`` reuses the folder). Each holds
``args.json`` (every setting, the model's arguments, the world size and the package version),
``train.log`` (what training printed, appended on ``--resume``), ``losses.csv``/``.png`` and
``weights/best.pt``, ``weights/last.pt``. A bare ``--resume`` continues the latest run's
``last.pt`` (:func:`simple_keypoint.paths.latest_run`).

A failed run leaves nothing behind: a training run that stops before its first checkpoint removes
its folder again (:func:`discarded_on_failure`), and detect removes the output folders it made if
nothing went into them (:func:`make_folders`, :func:`remove_empty`), so failures use up no numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from simple_keypoint import __version__
from simple_keypoint.labels import atomic_write
from simple_keypoint.paths import DefaultPathError, increment_path, latest_run

LATEST = "latest"  # what a bare --resume stands for
SETTINGS_FILE = "args.json"
LOG_FILE = "train.log"


def add_options(p: argparse.ArgumentParser, method: str) -> None:
    """--project, --name, --exist-ok, --out and --resume on a train.py's parser."""
    p.add_argument("--project", default="runs", help="parent folder of the numbered run folders")
    p.add_argument("--name", default=method, help="run folder name: PROJECT/NAME, NAME2, NAME3, ... (the first free one)")
    p.add_argument("--exist-ok", action="store_true", help="train into PROJECT/NAME (or --out) even if it exists")
    p.add_argument("--out", default=None,
                   help="run folder instead of PROJECT/NAME (numbered the same way if it exists): weights/best.pt, "
                        "weights/last.pt, args.json, train.log, losses.csv, losses.png")
    p.add_argument("--resume", nargs="?", const=LATEST, default=None,
                   help="continue a run from its last.pt (same settings, same final epoch); with no path, the "
                        "latest run's (PROJECT/NAME, NAME2, ...)")


def run_base(args: argparse.Namespace, method: str) -> Path:
    """The folder a new run is numbered from: ``--out``, else ``--project/--name``."""
    if getattr(args, "out", None):
        return Path(args.out)
    return Path(getattr(args, "project", "runs")) / (getattr(args, "name", None) or method)


def new_run_folder(args: argparse.Namespace, method: str) -> Path:
    """A folder no earlier run is in (an existing empty folder counts as free), or the base itself with ``--exist-ok``."""
    base = run_base(args, method)
    if base.is_dir() and not any(base.iterdir()):
        return base
    return increment_path(base, getattr(args, "exist_ok", False))


def resume_checkpoint(args: argparse.Namespace, method: str) -> Path:
    """The last.pt ``--resume`` names: the path given, or for a bare ``--resume`` the latest run's.
    Raises DefaultPathError when there is none."""
    if args.resume != LATEST:
        return Path(args.resume)
    return latest_run(run_base(args, method), "last.pt")


def folder_of_checkpoint(path: str | os.PathLike) -> Path:
    """The run folder a checkpoint belongs to: ``RUN/weights/last.pt`` -> ``RUN``."""
    path = Path(path)
    return path.parent.parent if path.parent.name == "weights" else path.parent


def write_settings(out: Path, settings: Mapping[str, Any], model_args: dict[str, Any], **extra: Any) -> None:
    """``args.json``: every setting of the run as given or resumed, plus ``extra`` facts."""
    saved = {"version": __version__, **settings, "model_args": model_args, **extra}
    atomic_write(out / SETTINGS_FILE, (json.dumps(saved, indent=2, default=str) + "\n").encode())


class _Tee:
    """A text stream writing to the terminal and to a log file."""

    def __init__(self, terminal: TextIO, log: TextIO):
        self.terminal, self.log = terminal, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.terminal.write(text)

    def flush(self) -> None:
        self.terminal.flush()
        self.log.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno ... are the terminal's
        return getattr(self.terminal, name)


@contextmanager
def logged(out: Path) -> Iterator[None]:
    """Copy what is printed (stdout; progress bars go to stderr and are not kept) to ``out/train.log``,
    appending; an error that ends training is written there too."""
    with open(out / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
        terminal, sys.stdout = sys.stdout, _Tee(sys.stdout, log)
        try:
            yield
        except Exception as e:
            log.write(f"error: {e}\n")
            raise
        finally:
            sys.stdout = terminal


def make_folders(folders: Sequence[Path]) -> list[Path]:
    """Create ``folders`` and their missing parents; the ones created, to give to :func:`remove_empty`
    when the run ends. On failure what was made is removed again and the OSError raised."""
    created: list[Path] = []
    try:
        for folder in folders:
            for level in reversed([folder, *folder.parents]):
                if not level.is_dir():
                    level.mkdir()  # a file in the way, no permission: OSError
                    created.append(level)
    except OSError:
        remove_empty(created)
        raise
    return created


def remove_empty(created: Sequence[Path]) -> None:
    """Remove those of :func:`make_folders`' folders that are still empty, so a run that wrote nothing
    (every input failed, Ctrl+C before the first result) leaves no numbered folder behind."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty: the run's results are in it
            folder.rmdir()


def run_has_checkpoint(out: Path) -> bool:
    """Whether a training run folder holds any checkpoint (``weights/*.pt``): the mark of a run that started."""
    return any((out / "weights").glob("*.pt"))


_CREATED: dict[Path, list[Path]] = {}  # run folder -> the folders create_run_folder made for it


def create_run_folder(out: Path) -> None:
    """Make ``out/weights`` (and whatever above it is missing), remembered for :func:`discarded_on_failure`.
    Raises OSError."""
    _CREATED[Path(out)] = make_folders([Path(out) / "weights"])


@contextmanager
def discarded_on_failure(out: Path) -> Iterator[None]:
    """A new training run's folder: if the block fails before the first checkpoint is saved (bad data,
    Ctrl+C in the first epoch), the log and settings written so far go (the error was printed) and so
    do the folders :func:`create_run_folder` made, if empty, so failed runs never take up numbers and
    a folder the user made stays. A folder holding a checkpoint is kept whole."""
    try:
        yield
    except BaseException:
        if not run_has_checkpoint(out):
            for name in (LOG_FILE, SETTINGS_FILE, "losses.csv", "losses.png"):
                (out / name).unlink(missing_ok=True)
            remove_empty(_CREATED.get(Path(out), []))  # something else in them: not this run's to remove
        raise
    finally:
        _CREATED.pop(Path(out), None)


__all__ = ["LATEST", "DefaultPathError", "add_options", "create_run_folder", "discarded_on_failure", "folder_of_checkpoint",
           "logged", "make_folders", "new_run_folder", "remove_empty", "resume_checkpoint", "run_base", "run_has_checkpoint",
           "write_settings"]
