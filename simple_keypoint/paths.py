"""Where things are: the shipped weights, default data folders, and numbered run folders.

The package runs from a checkout (``python detect.py``, ``python -m ...``) or installed with pip
(``simple-keypoint ...``) from any folder. Shipped weights are looked up inside the installed
package first, then in the checkout's ``weights/``. Relative default paths (``data/test/images``)
are taken from the current folder when they exist there, else from the checkout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


class DefaultPathError(FileNotFoundError):
    """A default file or folder that is nowhere to be found; the message says where it was looked for."""


def repo_root() -> Path | None:
    """The checkout this package is imported from, or ``None`` for an installed package."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "simple_keypoint").is_dir() else None


def shipped_weights_candidates(name: str) -> list[Path]:
    """Where the shipped ``<name>.pt`` may be, in the order searched."""
    candidates = [PACKAGE_DIR / "weights" / f"{name}.pt"]
    root = repo_root()
    if root is not None:
        candidates.append(root / "weights" / f"{name}.pt")
    return candidates


def shipped_weights(name: str) -> Path:
    """The shipped weights of one of SHIPPED_NAMES (``"heatmap"``, ``"heatmap_n"``, ``"regression"``). Raises DefaultPathError."""
    candidates = shipped_weights_candidates(name)
    for path in candidates:
        if path.is_file():
            return path
    raise DefaultPathError(f"no shipped {name} weights: looked for {' and '.join(map(str, candidates))}")


# The models that come with the package, by the name --weights (and shipped_weights) accepts.
SHIPPED_NAMES = ("heatmap", "heatmap_n", "regression")
DEFAULT_WEIGHTS = "heatmap"
WEIGHTS_HELP = (f"a shipped model ({', '.join(SHIPPED_NAMES)}), a checkpoint (.pt) of any method or an exported "
                f".onnx file (default: {DEFAULT_WEIGHTS})")
SAMPLE_IMAGE = PACKAGE_DIR / "samples" / "Misc_8.png"  # one SIRST test frame, shipped so examples run anywhere


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """What a ``--weights`` option names: an existing file as it is, else a shipped model's name
    (``heatmap``, ``heatmap_n``, ``regression``); ``None`` is the default model. One rule for every
    command, so a name works wherever a path does. Raises DefaultPathError naming the choices."""
    spec = DEFAULT_WEIGHTS if weights is None else weights
    path = Path(spec)
    if path.is_file():  # a file of that name in the current folder wins over the shipped one
        return path
    if str(spec) in SHIPPED_NAMES:
        return shipped_weights(str(spec))
    if path.exists():
        raise DefaultPathError(f"{spec}: is a folder, not a checkpoint (.pt) or .onnx file")
    if path.suffix or len(path.parts) > 1:  # written as a path, not meant as a name
        raise DefaultPathError(f"{spec}: no such checkpoint file")
    raise DefaultPathError(f"{spec}: no such file, nor a shipped model name ({', '.join(SHIPPED_NAMES)})")


def sample_image() -> Path:
    """A shipped infrared frame (SIRST test ``Misc_8.png``, one target) for examples and smoke tests."""
    return SAMPLE_IMAGE


def default_path(relative: str | os.PathLike, what: str = "folder") -> Path:
    """A relative default such as ``data/test/images``: from the current folder if it is there,
    else from the checkout. An absolute path is returned as it is. Raises DefaultPathError."""
    path = Path(relative)
    if path.is_absolute() or path.exists():
        return path
    root = repo_root()
    if root is not None and (root / path).exists():
        return root / path
    where = f"{Path.cwd()}" + (f" nor in the checkout {root}" if root is not None else " (an installed package ships no data)")
    raise DefaultPathError(f"default {what} {path} not found: looked in {where}")


def increment_path(base: str | os.PathLike, exist_ok: bool = False) -> Path:
    """``runs/heatmap`` if free (or ``exist_ok``), else the first free ``runs/heatmap2``, ``runs/heatmap3``, ...

    As ultralytics numbers its runs; the folder is not created. A file suffix is kept:
    ``out/a.txt`` -> ``out/a2.txt``.
    """
    base = Path(base)
    if exist_ok or not base.exists():
        return base
    stem, suffix = (base.stem, base.suffix) if base.is_file() else (base.name, "")
    number = 2
    while (candidate := base.with_name(f"{stem}{number}{suffix}")).exists():
        number += 1
    return candidate


def numbered_runs(base: str | os.PathLike) -> list[Path]:
    """The existing run folders made by :func:`increment_path` from ``base``, oldest number first."""
    base = Path(base)
    if not base.parent.is_dir():
        return []
    pattern = re.compile(re.escape(base.name) + r"(\d*)")
    runs = []
    for path in base.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if path.is_dir() and match and match.group(1) not in ("0", "1") and not match.group(1).startswith("0"):
            runs.append((int(match.group(1) or 1), path))
    return [path for _, path in sorted(runs)]


def latest_run(base: str | os.PathLike, file: str = "last.pt") -> Path:
    """``file`` of the most recent run made from ``base`` (e.g. ``runs/heatmap`` -> ``runs/heatmap3/weights/last.pt``).

    "Most recent" is the file written last, so a resumed older run counts as recent; ``file`` is found
    at ``RUN/file`` or ``RUN/weights/file``. Raises DefaultPathError naming the folders searched.
    """
    found = []
    for order, run in enumerate(numbered_runs(base)):  # ties in time go to the higher run number
        for path in (run / file, run / "weights" / file):
            if path.is_file():
                found.append((path.stat().st_mtime, order, path))
                break
    if not found:
        raise DefaultPathError(f"no {file} in any run folder {Path(base)}, {Path(base)}2, ... (looked in {Path(base).parent})")
    return max(found)[2]
