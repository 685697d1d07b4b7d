"""Export a checkpoint of any registered method to ONNX, for onnxruntime or any other ONNX runtime.

    simple-keypoint export --weights heatmap_n              # the shipped fast model -> heatmap_n.onnx here
    simple-keypoint export --weights runs/heatmap/weights/best.pt --out best.onnx
    simple-keypoint export --weights heatmap_n --overwrite  # an existing .onnx is kept unless told
    simple-keypoint detect --weights best.onnx              # runs it through onnxruntime

The graph holds the network only; pre- and post-processing stay in Python and are the same for
both backends (``simple_keypoint.predict.OnnxLocalizer``). Input ``image``: (B, 1, H, W) float32,
each image standardised (zero mean, unit std, ``simple_keypoint.images.standardise``) and
zero-padded on the bottom/right so H and W are multiples of the stride stored in the metadata.
Batch, H and W are dynamic.

Outputs (each method's ``onnx_output``, see ``simple_keypoint.method``):
  heatmap     ``logits`` (B, 1, H, W): heatmap *logits*; ``sigmoid(logits)`` is the heatmap. Logits,
              not the heatmap, so the decoder can find peaks and thresholds on them and take the
              sigmoid of the few peaks only (and a float32 sigmoid saturates to 1.0 for strong
              peaks, which loses their order).
  regression  ``locate`` (B, 3): x, y in [0, 1] of the padded input (pixel u = x * W - 0.5) and the
              confidence *logit* (``sigmoid`` of it is the confidence), for the same reason.

The method, stride, decoding settings (conf, max_points, ...), model arguments, the package version
that wrote the file (``simple_keypoint_version``) and the one that wrote the checkpoint are stored in
the file's metadata (keys ``simple_keypoint_*``). Prediction from a .pt on a CPU exports on its own
and caches the result (``simple_keypoint.onnx_cache``); this command is for shipping a .onnx file.
The exporter is PyTorch's TorchScript-based one (``dynamo=False``): the newer one needs the
onnxscript package, which is not a dependency.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simple_keypoint import __version__
from simple_keypoint.checkpoint import VERSION_KEY, CheckpointError, load_checkpoint, read_checkpoint_bytes
from simple_keypoint.labels import atomic_write
from simple_keypoint.methods import decode_settings, get_method, net_from_checkpoint
from simple_keypoint.onnx_session import onnx_session
from simple_keypoint.options import Parser, add_weights_option
from simple_keypoint.paths import DEFAULT_WEIGHTS, SHIPPED_NAMES, DefaultPathError, resolve_weights

DEFAULT_OPSET = 17
METADATA_PREFIX = "simple_keypoint_"
MAX_DIFFERENCE = 1e-3  # largest onnxruntime-vs-PyTorch logit difference an export may show


def export_module(method: str, net: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The module to export for a ``method`` net and its output name."""
    spec = get_method(method)
    return spec.inference_net(net).eval(), spec.onnx_output


class OnnxExportError(CheckpointError):
    """A checkpoint that PyTorch's exporter or onnxruntime cannot turn into a working ONNX model."""


def onnx_model_bytes(checkpoint: dict[str, Any], opset: int = DEFAULT_OPSET, check_size: tuple[int, int] = (96, 128),
                     path: str | os.PathLike = "<checkpoint>", source_sha256: str | None = None) -> tuple[bytes, float]:
    """``checkpoint`` as a serialized ONNX model, and the largest difference between onnxruntime's
    and PyTorch's outputs on a random batch (checked at two image sizes). ``path`` names the
    checkpoint in errors; ``source_sha256``, the checkpoint file's hash, goes into the metadata.
    Raises CheckpointError (OnnxExportError when the exporter or onnxruntime fails)."""
    import onnx

    method, net = net_from_checkpoint(checkpoint, path)
    decode = decode_settings(checkpoint.get("decode"), path)
    net = net.to("cpu").eval()
    module, output = method.inference_net(net).eval(), method.onnx_output
    stride = net.stride
    dummy = torch.randn(1, 1, 2 * stride, 2 * stride)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notices
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (dummy,), buffer, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=[output], do_constant_folding=True,
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            output: method.onnx_dynamic_axes()})
        model = onnx.load_from_string(buffer.getvalue())
    except Exception as e:  # noqa: BLE001  (the exporter raises many unrelated types for one cause: an unsupported net)
        raise OnnxExportError(f"{path}: cannot export the {method.name} net to ONNX ({_first_line(e)})") from None
    meta = {"method": method.name, "stride": str(stride), "output": output, "decode": json.dumps(decode.as_dict()),
            "model_args": json.dumps(checkpoint.get("model_args", {})), "version": __version__,
            "checkpoint_version": str(checkpoint.get(VERSION_KEY, "unknown")), "opset": str(opset)}
    if source_sha256:
        meta["checkpoint_sha256"] = source_sha256
    for key, value in meta.items():
        model.metadata_props.add(key=f"{METADATA_PREFIX}{key}", value=value)
    model.doc_string = f"simple_keypoint {method.name} model; see python -m simple_keypoint.export --help"
    if checkpoint.get("verifier"):
        verifier, settings = verifier_onnx_bytes(checkpoint["verifier"], opset, path)
        model.metadata_props.add(key=f"{METADATA_PREFIX}verifier", value=base64.b64encode(verifier).decode("ascii"))
        model.metadata_props.add(key=f"{METADATA_PREFIX}verifier_settings", value=json.dumps(settings))
    onnx.checker.check_model(model)
    data = model.SerializeToString()

    try:
        session = onnx_session(data)
    except Exception as e:  # noqa: BLE001  (onnxruntime exports no error types)
        raise OnnxExportError(f"{path}: onnxruntime cannot run the exported {method.name} net ({_first_line(e)})") from None
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for h, w in (check_size, (check_size[0] + stride, check_size[1] - stride)):  # a second size proves dynamic H, W
        x = torch.randn(2, 1, -(-h // stride) * stride, -(-w // stride) * stride, generator=generator)
        with torch.inference_mode():
            ref = module(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return data, worst


def verifier_onnx_bytes(entry: dict[str, Any], opset: int = DEFAULT_OPSET,
                        path: str | os.PathLike = "<checkpoint>") -> tuple[bytes, dict[str, Any]]:
    """A checkpoint's verifier (its ``verifier`` entry) as a serialized ONNX model (windows (B, C, S,
    S) -> logits (B,)), checked against PyTorch, and the settings prediction needs with it. It
    travels inside the heatmap graph's metadata, so one .onnx file holds both."""
    import onnx

    from simple_keypoint.heatmap.verifier import build_net, candidate_settings, channels

    try:
        net = build_net(entry).eval()
        net.load_state_dict(entry["state"])
        conf, count = candidate_settings(entry)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: bad verifier entry ({_first_line(e)})") from None
    size = int(entry.get("window", 32))
    context = int(entry.get("context", 1))
    dummy = torch.randn(3, channels(context), size, size, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (dummy,), buffer, dynamo=False, opset_version=opset, input_names=["windows"],
                              output_names=["verifier_logits"], do_constant_folding=True,
                              dynamic_axes={"windows": {0: "batch"}, "verifier_logits": {0: "batch"}})
        model = onnx.load_from_string(buffer.getvalue())
        onnx.checker.check_model(model)
        data = model.SerializeToString()
        got = onnx_session(data).run(None, {"windows": dummy.numpy()})[0]
    except Exception as e:  # noqa: BLE001  (exporter and onnxruntime raise many unrelated types)
        raise OnnxExportError(f"{path}: cannot export the verifier to ONNX ({_first_line(e)})") from None
    with torch.inference_mode():
        worst = float(np.abs(got - net(dummy).numpy()).max())
    if worst > MAX_DIFFERENCE:
        raise OnnxExportError(f"{path}: onnxruntime's verifier differs from PyTorch's by {worst:.1e}")
    return data, {"candidate_conf": conf, "max_candidates": count, "window": size, "context": context}


def export_onnx(checkpoint: dict[str, Any], out: str | Path, opset: int = DEFAULT_OPSET,
                check_size: tuple[int, int] = (96, 128), path: str | os.PathLike = "<checkpoint>",
                source_sha256: str | None = None) -> float:
    """Write ``checkpoint`` as an ONNX file at ``out`` (atomically); returns the largest difference
    between onnxruntime's and PyTorch's outputs (see :func:`onnx_model_bytes`)."""
    data, worst = onnx_model_bytes(checkpoint, opset, check_size, path, source_sha256)
    atomic_write(out, data)
    return worst


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:160]


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="simple-keypoint export", description=__doc__.split("\n\n")[0],
               epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_option(p, help_text=f"a shipped model ({', '.join(SHIPPED_NAMES)}) or a checkpoint (.pt) of any method "
                                    f"(default: {DEFAULT_WEIGHTS})")
    p.add_argument("--out", default=None,
                   help="the .onnx file to write (default: beside the .pt with .onnx; for a shipped model, NAME.onnx "
                        "in the current folder)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset, >= 17 (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the .onnx file if it already exists")
    args = p.parse_args(argv)

    try:
        weights = resolve_weights(args.weights)
    except DefaultPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # From the name as given: a shipped name's file lives inside the installed package, not a place to write.
    out = Path(args.out) if args.out else Path(args.weights).with_suffix(".onnx")
    if out.suffix.lower() != ".onnx":
        print(f"error: --out {out} must end in .onnx", file=sys.stderr)
        return 2
    if args.opset < 17:
        print(f"error: --opset {args.opset}: 17 or newer needed", file=sys.stderr)
        return 2
    if weights.suffix.lower() == ".onnx":
        print(f"error: --weights {args.weights} is already an ONNX file; give the .pt checkpoint it came from", file=sys.stderr)
        return 2
    if out.resolve() == weights.resolve():
        print(f"error: --out {out} would overwrite the weights", file=sys.stderr)
        return 2
    if out.exists() and not args.overwrite:  # checked before the export: it takes seconds
        print(f"error: --out {out} already exists (--overwrite replaces it)", file=sys.stderr)
        return 2
    try:
        data = read_checkpoint_bytes(weights)
        checkpoint = load_checkpoint(weights, data=data)
        worst = export_onnx(checkpoint, out, args.opset, path=weights, source_sha256=hashlib.sha256(data).hexdigest())
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({checkpoint['method']}, opset {args.opset}, dynamic batch/height/width); "
          f"onnxruntime vs PyTorch: max difference {worst:.2e}")
    if worst > MAX_DIFFERENCE:
        print(f"warning: onnxruntime's output differs from PyTorch's by more than {MAX_DIFFERENCE:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
