"""Where the ONNX exports of .pt checkpoints are cached, how big the cache is, and clearing it.

    simple-keypoint cache            # the folder, its entries and their size
    simple-keypoint cache --clear    # delete the entries (they are made again when needed)

The folder is ``$SIMPLE_KEYPOINT_CACHE``, else ``$XDG_CACHE_HOME/simple_keypoint``, else
``~/.cache/simple_keypoint``. Only the cache's own files are counted and deleted (the folder may be
one the user pointed the variable at, holding other files). Kept free of torch so it runs at once;
the cache itself is :mod:`simple_keypoint.onnx_cache`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from simple_keypoint.options import HelpFormatter, Parser

CACHE_ENV = "SIMPLE_KEYPOINT_CACHE"
# An entry is KEY.onnx + KEY.json, KEY = <checkpoint sha256>-v<version>-opset<N> (onnx_cache.entry_stem);
# ".KEY.onnx.XXXX.tmp" is a write in progress, or left by a writer that was killed.
ENTRY_FILE = re.compile(r"[0-9a-f]{64}-v[0-9A-Za-z._]+-opset\d+\.(onnx|json)")
TEMP_FILE = re.compile(r"\.[0-9a-f]{64}-v[0-9A-Za-z._]+-opset\d+\.(onnx|json)\..+\.tmp")
# A temporary file younger than this may belong to a process writing right now: left alone.
TEMP_GRACE_SECONDS = 600


def cache_folder() -> Path:
    """Where exports are cached (see the module's docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "simple_keypoint"


def cache_files(folder: Path | None = None) -> list[Path]:
    """The cache's own files in ``folder`` (default: :func:`cache_folder`), nothing else that is there."""
    folder = cache_folder() if folder is None else folder
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / name for name in names if ENTRY_FILE.fullmatch(name) or TEMP_FILE.fullmatch(name)]


@dataclass(frozen=True)
class CacheSize:
    entries: int  # cached exports (.onnx files)
    files: int
    bytes: int


def cache_size(folder: Path | None = None) -> CacheSize:
    """How many exports the cache in ``folder`` (default: :func:`cache_folder`) holds, and their bytes."""
    files = cache_files(folder)
    total = 0
    for path in files:
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # removed by another process meanwhile
            pass
    return CacheSize(sum(path.suffix == ".onnx" for path in files), len(files), total)


def clear_cache(folder: Path | None = None) -> CacheSize:
    """Delete the cache's files in ``folder`` (default: :func:`cache_folder`); returns what was deleted.
    The folder itself and anything else in it stay. Raises OSError when a file cannot be deleted."""
    entries = files = total = 0
    now = time.time()
    for path in cache_files(folder):
        try:
            stat = path.stat()
            if TEMP_FILE.fullmatch(path.name) and now - stat.st_mtime < TEMP_GRACE_SECONDS:
                continue
            path.unlink()
        except FileNotFoundError:  # another process got there first
            continue
        entries += path.suffix == ".onnx"
        files += 1
        total += stat.st_size
    return CacheSize(entries, files, total)


def megabytes(size: int) -> str:
    """Bytes as MB with one decimal."""
    return f"{size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="simple-keypoint cache", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--clear", action="store_true", help="delete the cached exports (made again when next needed)")
    args = p.parse_args(argv)
    folder = cache_folder()
    where = f"{folder} (${CACHE_ENV} moves it)"
    try:
        if args.clear:
            removed = clear_cache(folder)
            print(f"removed {removed.entries} cached export(s), {megabytes(removed.bytes)}, from {where}")
            return 0
        size = cache_size(folder)
    except OSError as e:  # a folder or file this user may not read or delete
        print(f"error: ONNX cache {where}: {e.filename or folder}: {e.strerror or e}", file=sys.stderr)
        return 1
    state = "not created yet" if not folder.exists() else f"{size.entries} cached export(s), {megabytes(size.bytes)}"
    print(f"ONNX cache: {where}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
