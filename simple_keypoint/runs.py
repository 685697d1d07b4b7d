"""Training run folders: a new numbered folder per run, its settings, and a copy of what it printed.

A run goes to ``--out`` (default ``--project/--name``, i.e. ``runs/<method>``), numbered
``runs/heatmap``, ``runs/heatmap2``, ... so a second run never overwrites the first
(:func:`simple_keypoint.paths.increment_path`; ``--exist-ok`` reuses the folder). Each holds
``args.json`` (every setting, the model's arguments, the world size and the package version),
``train.log`` (what training printed, appended on ``--resume``), ``losses.csv``/``.png`` and
``weights/best.pt``, ``weights/last.pt``. A bare ``--resume`` continues the latest run's
``last.pt`` (:func:`simple_keypoint.paths.latest_run`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
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


def write_settings(out: Path, args: argparse.Namespace, model_args: dict[str, Any], **extra: Any) -> None:
    """``args.json``: every option of the run as given or resumed, plus ``extra`` facts."""
    settings = {"version": __version__, **{k: v for k, v in vars(args).items()}, "model_args": model_args, **extra}
    atomic_write(out / SETTINGS_FILE, (json.dumps(settings, indent=2, default=str) + "\n").encode())


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


__all__ = ["LATEST", "DefaultPathError", "add_options", "folder_of_checkpoint", "logged", "new_run_folder",
           "resume_checkpoint", "run_base", "write_settings"]
