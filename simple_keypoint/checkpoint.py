"""Checkpoints: one file holds the weights and everything needed to rebuild and run the model.

Saved atomically (a crash never leaves half a file) and loaded with ``weights_only=True`` so a
checkpoint cannot run code. Errors are one clear line naming the file. Every saved checkpoint
records the package version that wrote it (key ``version``).
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from simple_keypoint import __version__
from simple_keypoint.labels import atomic_write

VERSION_KEY = "version"  # the simple_keypoint version that wrote the file


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` atomically, stamped with this package's version (the dict passed in is not changed)."""
    buffer = io.BytesIO()
    # Anything but a dict is written as it is: tests write malformed files through here on purpose.
    torch.save({**checkpoint, VERSION_KEY: __version__} if isinstance(checkpoint, dict) else checkpoint, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def read_checkpoint_bytes(path: str | os.PathLike) -> bytes:
    """A checkpoint file's bytes (to hash and load the same ones); CheckpointError if unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None


def load_checkpoint(path: str | os.PathLike, method: str | None = None, data: bytes | None = None) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; ``method`` if given must match its method.

    ``data``: the file's bytes, already read (so what is loaded is exactly what was hashed);
    ``path`` then only names it in errors.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses anything but tensors and plain data: code, foreign classes, or junk bytes.
        raise CheckpointError(f"{path}: refused: not a plain weights file (holds code or foreign objects, "
                              "or is not a checkpoint at all); only weights are ever loaded") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, AttributeError,
            TypeError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a simple_keypoint file: {first[:120]})") from None
    if not isinstance(checkpoint, dict) or "method" not in checkpoint or "model_state" not in checkpoint:
        raise CheckpointError(f"{path}: not a simple_keypoint checkpoint (no method/model_state)")
    if method is not None and checkpoint["method"] != method:
        raise CheckpointError(f"{path}: is a {checkpoint['method']} checkpoint, expected {method}")
    return checkpoint
