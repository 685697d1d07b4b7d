"""Checkpoints: one file holds the weights and everything needed to rebuild and run the model.

Saved atomically (a crash never leaves half a file) and loaded with ``weights_only=True`` so a
checkpoint cannot run code. Errors are one clear line naming the file.
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

from simple_keypoint.labels import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, method: str | None = None) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; ``method`` if given must match its method."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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
