"""A user-wide cache of ONNX exports, so a .pt checkpoint runs through onnxruntime after one export.

The key is the sha256 of the checkpoint file's bytes, the package version and the opset: other
weights, or another version of the exporter code, can never reuse an entry, and a checkpoint
rewritten in place (``simple_keypoint.threshold --write``, a new training epoch) gets a new one.
The folder is ``$SIMPLE_KEYPOINT_CACHE``, else ``$XDG_CACHE_HOME/simple_keypoint``, else
``~/.cache/simple_keypoint`` (:mod:`simple_keypoint.cache`, which also shows and clears it:
``simple-keypoint cache [--clear]``); it may be deleted at any time.

An entry is ``KEY.onnx`` and ``KEY.json``, the record of what the .onnx holds (the checkpoint's
hash, version, opset and the .onnx bytes' own sha256). Both are written atomically; an entry whose
record is missing or does not match its bytes (a torn or edited file, two writers racing) is
rebuilt, never used. A folder that cannot be written (read-only, full, a file in the way) gives
one warning and an export held in memory for this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from simple_keypoint import __version__
from simple_keypoint.cache import CACHE_ENV, cache_folder
from simple_keypoint.checkpoint import load_checkpoint, read_checkpoint_bytes
from simple_keypoint.export import DEFAULT_OPSET, MAX_DIFFERENCE, OnnxExportError, onnx_model_bytes
from simple_keypoint.labels import atomic_write


class CacheWarning(UserWarning):
    """The cache folder could not be written; the export was kept in memory only."""


@dataclass(frozen=True)
class CachedExport:
    model: bytes  # the serialized ONNX model
    entry: Path | None  # where it is stored; None when the folder could not be written
    hit: bool  # read from the cache (True) or exported now (False)


def entry_stem(checkpoint_sha256: str, opset: int = DEFAULT_OPSET) -> str:
    """The cache key as a file name: checkpoint hash, package version, opset."""
    version = re.sub(r"[^0-9A-Za-z.]+", "_", __version__)
    return f"{checkpoint_sha256}-v{version}-opset{opset}"


def _record(checkpoint_sha256: str, opset: int, model: bytes) -> dict[str, object]:
    return {"checkpoint_sha256": checkpoint_sha256, "version": __version__, "opset": opset,
            "onnx_sha256": hashlib.sha256(model).hexdigest()}


def _read_entry(entry: Path, checkpoint_sha256: str, opset: int) -> bytes | None:
    """The cached model if the entry is complete and is what its key says; else None."""
    try:
        model = entry.read_bytes()
        record = json.loads(entry.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, or a record that is not JSON
        return None
    return model if record == _record(checkpoint_sha256, opset, model) else None


def cached_onnx(path: str | os.PathLike, opset: int = DEFAULT_OPSET, refresh: bool = False,
                data: bytes | None = None) -> CachedExport:
    """The ONNX export of the checkpoint at ``path``: from the cache, or exported, checked against
    PyTorch and stored. ``refresh``: export again even if an entry looks valid. ``data``: the
    file's bytes when already read (the key is their hash; ``path`` then only names it).

    Raises CheckpointError for an unusable checkpoint, OnnxExportError (a CheckpointError) when
    it cannot be exported or onnxruntime disagrees with PyTorch.
    """
    data = read_checkpoint_bytes(path) if data is None else data
    digest = hashlib.sha256(data).hexdigest()
    folder = cache_folder()
    entry = folder / f"{entry_stem(digest, opset)}.onnx"
    if not refresh and (model := _read_entry(entry, digest, opset)) is not None:
        return CachedExport(model, entry, hit=True)

    checkpoint = load_checkpoint(path, data=data)
    model, worst = onnx_model_bytes(checkpoint, opset, path=path, source_sha256=digest)
    if worst > MAX_DIFFERENCE:
        raise OnnxExportError(f"{path}: onnxruntime's output differs from PyTorch's by {worst:.1e} "
                              f"(more than {MAX_DIFFERENCE:g})")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(entry, model)
        # The record last: until it is there (and matches), the entry is not used.
        atomic_write(entry.with_suffix(".json"), json.dumps(_record(digest, opset, model), indent=1).encode())
    except OSError as e:
        warnings.warn(f"ONNX cache {folder} cannot be written ({e.strerror or e}); {path} exported for this "
                      f"process only (set {CACHE_ENV} to a writable folder)", CacheWarning, stacklevel=3)
        return CachedExport(model, None, hit=False)
    return CachedExport(model, entry, hit=False)
