"""The one way this package opens an onnxruntime session (prediction, export's check, benchmarks)."""

from __future__ import annotations

import os
from typing import Any


def onnx_session(model: str | os.PathLike | bytes, threads: int = 0, optimization: Any = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU for a file or serialized model.

    ``threads``: intra-op threads (0 = onnxruntime's default, all cores); one inter-op thread,
    as these graphs are a single chain. Idle workers sleep instead of spinning: a heatmap model
    runs two sessions (U-shape and verifier) with PyTorch and OpenCV work between them, and the
    spinning workers of one would starve the rest (docs/decisions.md). ``optimization``: a
    ``GraphOptimizationLevel`` (default onnxruntime's). onnxruntime's own errors pass through (it exports no error types to catch).
    """
    import onnxruntime as ort  # only the ONNX backend needs it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimization is not None:
        options.graph_optimization_level = optimization
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])
