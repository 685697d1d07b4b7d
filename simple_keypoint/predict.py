"""Run a trained model on images: ``load_model(path).predict(image)`` -> (N, 3) ``(u, v, score)``.

Points are in the input image's 0-based pixel-index coordinates, best first. Both methods share
the pre-processing (gray, standardise, pad to the net's stride); only the output step differs.
Two backends share all of that: PyTorch (:class:`Localizer`) and an exported ONNX file run by
onnxruntime (:class:`OnnxLocalizer`, see ``simple_keypoint.export``); :func:`load_model` picks by
the file's suffix.

Speed (see benchmarks/SPEED_NOTES.md): the heatmap is decoded from the logits, and only around
its peaks (:func:`simple_keypoint.heatmap.decode.decode_logits`), and the heatmap net runs as
:class:`FastHeatmapNet`, an exact inference-only rewrite of its full-resolution layers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint
from simple_keypoint.heatmap.decode import decode_logits
from simple_keypoint.heatmap.model import HeatmapNet
from simple_keypoint.images import load_gray, standardise, to_gray
from simple_keypoint.regression.model import RegressionNet

MODELS = {"heatmap": HeatmapNet, "regression": RegressionNet}
ONNX_SUFFIX = ".onnx"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(method: str, model_args: dict[str, Any]) -> torch.nn.Module:
    return MODELS[method](**model_args)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right with zeros (the standardised mean) to a multiple."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class FastHeatmapNet(nn.Module):
    """A :class:`HeatmapNet` rewritten for inference: the same logits, less full-resolution work.

    The net ends ``head(up(deep(y)) * skip(x))`` where ``x`` is the 1-channel input and ``skip`` and
    ``head`` are 1x1 convs: per pixel that is ``x * up(A(y)) + up(B(y))`` with ``A`` and ``B`` two
    linear combinations of ``deep``'s channels (bilinear upsampling is linear). So ``deep``, the
    skip conv and the head fold into one 3x3 conv with 2 outputs at half resolution, and full
    resolution keeps just a 2-channel upsample and a multiply-add instead of a C-channel upsample,
    a 1x1 conv, a product and another 1x1 conv. Weights of the other layers are shared, not copied.
    """

    def __init__(self, net: HeatmapNet):
        super().__init__()
        self.stem, self.down, self.up, self.stride = net.stem, net.down, net.up, net.stride
        self.context = net.context
        deep, skip, head = net.to_full.deep, net.to_full.skip, net.head
        with torch.no_grad():
            h = head.weight[0, :, 0, 0]
            gains = torch.stack([h * skip.weight[:, 0, 0, 0], h * skip.bias])  # (2, C): rows A, B
            self.fold = nn.Conv2d(deep.in_channels, 2, 3, 1, 1).to(deep.weight.device)
            self.fold.weight.copy_(torch.einsum("kc,cihw->kihw", gains, deep.weight))
            self.fold.bias.copy_(gains @ deep.bias + torch.stack([torch.zeros_like(head.bias[0]), head.bias[0]]))

    features = HeatmapNet.features  # the same encoder and SEBs, run on the shared layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ab = F.interpolate(self.fold(self.features(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.addcmul(ab[:, 1:], x, ab[:, :1])

    @classmethod
    def checked(cls, net: torch.nn.Module) -> torch.nn.Module:
        """The fast rewrite if it reproduces ``net`` on a test input, else ``net`` itself (e.g. after
        an architecture change this rewrite does not know)."""
        try:
            fast = cls(net)
            param = next(net.parameters())
            x = torch.randn(1, 1, 2 * net.stride, 3 * net.stride, generator=torch.Generator().manual_seed(0))
            x = x.to(device=param.device, dtype=param.dtype)
            with torch.inference_mode():
                ref, out = net(x), fast(x)
            return fast if torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()) + 1e-5) else net
        except (AttributeError, IndexError, RuntimeError, TypeError):
            return net


def _weights_version(net: torch.nn.Module) -> tuple[int, ...]:
    """Changes whenever a parameter or buffer is modified in place (optimizer steps, load_state_dict)."""
    try:
        return tuple(t._version for t in (*net.parameters(), *net.buffers()))
    except RuntimeError:  # tensors made under torch.inference_mode have no version counter
        return ()


class Localizer:
    """A trained model plus its decoding settings. Use :func:`load_model` to get one."""

    def __init__(self, method: str, net: torch.nn.Module | None, conf: float = 0.3, max_points: int = 20,
                 device: str | torch.device | None = None, max_side: int = 4096, subpixel: bool = True,
                 relative: bool = True):
        self.method = method
        self.device = pick_device(device)
        self.net = net.to(self.device).eval() if net is not None else None
        self.conf, self.max_points, self.max_side, self.subpixel = conf, max_points, max_side, subpixel
        self.relative = relative  # heatmap scores relative to the image's clutter (heatmap/decode.py)
        self.stride = net.stride if net is not None else 1
        self._fast: tuple[tuple[int, ...], torch.nn.Module] | None = None

    @staticmethod
    def standardised(image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """A path or an H x W [x C] array (uint8/uint16/float) -> standardised gray float32."""
        return load_gray(image) if isinstance(image, (str, os.PathLike)) else standardise(to_gray(image))

    def _fast_net(self) -> torch.nn.Module:
        """The net to run: for a heatmap net its :class:`FastHeatmapNet`, rebuilt if the weights changed."""
        if self.method != "heatmap":
            return self.net
        version = _weights_version(self.net)
        if self._fast is None or self._fast[0] != version:
            self._fast = version, FastHeatmapNet.checked(self.net)
        return self._fast[1]

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a padded batch (B, 1, H, W): heatmap logits (B, 1, H, W) or regression
        ``locate`` output (B, 3). Backends override this; everything around it is shared."""
        with torch.inference_mode():
            x = x.to(self.device)
            return self.net.locate(x) if self.method == "regression" else self._fast_net()(x)

    def _forward(self, gray: np.ndarray) -> tuple[torch.Tensor, float, tuple[int, int]]:
        """Run the net on a standardised gray image. Returns its output (heatmap logits (H, W) or
        the regression's (3,)), the downscale factor (1 = none) and the padded input size."""
        scale = 1.0
        if max(gray.shape) > self.max_side:  # protects memory on huge frames; points map back
            scale = self.max_side / max(gray.shape)
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = gray.shape
        x = pad_to_multiple(torch.from_numpy(gray)[None, None], self.stride)
        out = self.run_net(x)
        return (out[0] if self.method == "regression" else out[0, 0, :h, :w]), scale, x.shape[-2:]

    def _heat_from_logits(self, logits: torch.Tensor, shape: tuple[int, int], scale: float) -> np.ndarray:
        heat = torch.sigmoid(logits).cpu().numpy()
        if scale != 1.0:
            heat = cv2.resize(heat, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return heat

    def heatmap(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The heatmap (heatmap method) at the input image's size, float32 in [0, 1]."""
        if self.method != "heatmap":
            raise ValueError("a regression model has no heatmap")
        gray = self.standardised(image)
        logits, scale, _ = self._forward(gray)
        return self._heat_from_logits(logits, gray.shape, scale)

    def predict(self, image: str | os.PathLike | np.ndarray, conf: float | None = None,
                max_points: int | None = None) -> np.ndarray:
        """Points ``(u, v, score)`` (N, 3) float64 in the image's pixel coordinates, best first."""
        return self.predict_standardised(self.standardised(image), conf, max_points)

    def predict_with_heatmap(self, image: str | os.PathLike | np.ndarray, conf: float | None = None,
                             max_points: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict` and :meth:`heatmap` (``None`` for regression) from one run of the net."""
        gray = self.standardised(image)
        out, scale, padded = self._forward(gray)
        points = self._points(out, scale, padded, conf, max_points, gray.shape)
        heat = self._heat_from_logits(out, gray.shape, scale) if self.method == "heatmap" else None
        return points, heat

    def predict_standardised(self, gray: np.ndarray, conf: float | None = None,
                             max_points: int | None = None) -> np.ndarray:
        """:meth:`predict` for an image already passed through :meth:`standardised`."""
        return self._points(*self._forward(gray), conf, max_points, gray.shape)

    def _points(self, out: torch.Tensor, scale: float, padded: tuple[int, int], conf: float | None,
                max_points: int | None, shape: tuple[int, int]) -> np.ndarray:
        conf = self.conf if conf is None else conf
        max_points = self.max_points if max_points is None else max_points
        padded_h, padded_w = padded
        if self.method == "regression":
            x, y, logit = out.double().cpu().numpy()
            score = 1.0 / (1.0 + np.exp(-logit))  # in float64, as for heatmap peaks: no ties at 1.0
            points = np.array([[x * padded_w - 0.5, y * padded_h - 0.5, score]])
            points = points[points[:, 2] >= conf][:max_points]
        else:
            points = decode_logits(out.cpu().numpy(), conf, max_points, self.subpixel, self.relative)
        if scale != 1.0:  # pixel centres scale as (u + 0.5) / scale - 0.5
            points[:, :2] = (points[:, :2] + 0.5) / scale - 0.5
        # The net saw the image padded to its stride; a regression point may land in the padding.
        h, w = shape
        points[:, 0] = points[:, 0].clip(-0.5, w - 0.5)
        points[:, 1] = points[:, 1].clip(-0.5, h - 0.5)
        return points


class OnnxLocalizer(Localizer):
    """A :class:`Localizer` whose network is an exported ONNX file run by onnxruntime (CPU).

    The file carries the method, stride and decoding settings as metadata (written by
    ``simple_keypoint.export``). ``threads``: onnxruntime's intra-op threads (0 = its default, all cores).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        import onnxruntime as ort  # only this backend needs it

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  (onnxruntime raises its own, non-exported error types)
            raise CheckpointError(f"{path}: not a readable ONNX model ({str(e).strip().splitlines()[0][:120]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("simple_keypoint_method") not in MODELS:
            raise CheckpointError(f"{path}: not a simple_keypoint ONNX export (no method metadata; "
                                  "export with python -m simple_keypoint.export)")
        super().__init__(meta["simple_keypoint_method"], None, device="cpu", **json.loads(meta.get("simple_keypoint_decode", "{}")))
        self.stride = int(meta["simple_keypoint_stride"])
        self.input_name = self.session.get_inputs()[0].name

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.cpu().numpy()})[0])


def localizer_from_checkpoint(checkpoint: dict[str, Any], device: str | torch.device | None = None,
                              path: str | os.PathLike = "<checkpoint>") -> Localizer:
    method = checkpoint["method"]
    if not isinstance(method, str) or method not in MODELS:
        raise CheckpointError(f"{path}: unknown method {method!r}")
    model_args, state = checkpoint.get("model_args", {}), checkpoint["model_state"]
    try:
        net = build_model(method, model_args)
    except (TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad {method} model settings {model_args!r} ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: model_state is not a set of named tensors")
    # Compare before loading: load_state_dict's own error is a many-line list of parameter names.
    expected = net.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        example = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}" if wrong
                   else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise CheckpointError(f"{path}: weights do not fit the {method} architecture {model_args}: "
                              f"{len(wrong)} wrong-shaped, {len(missing)} missing, {len(unexpected)} unexpected "
                              f"tensor(s), e.g. {example}")
    net.load_state_dict(state)
    try:
        return Localizer(method, net, device=device, **checkpoint.get("decode", {}))
    except TypeError as e:
        raise CheckpointError(f"{path}: bad decode settings {checkpoint.get('decode')!r} ({e})") from None


def load_model(path: str | os.PathLike, device: str | torch.device | None = None, backend: str | None = None,
               threads: int = 0) -> Localizer:
    """Load a checkpoint of either method; the method is read from the file.

    ``backend``: ``"torch"`` (a .pt checkpoint) or ``"onnx"`` (onnxruntime on the CPU with ``threads``
    threads, 0 = all cores: an exported .onnx file, or a .pt checkpoint exported on the fly);
    ``None`` picks by the file's suffix.
    """
    path = Path(path)
    backend = backend or ("onnx" if path.suffix.lower() == ONNX_SUFFIX else "torch")
    if backend not in ("torch", "onnx"):
        raise ValueError(f"unknown backend {backend!r} (torch or onnx)")
    if backend == "onnx" and path.suffix.lower() == ONNX_SUFFIX:
        if not path.is_file():
            raise CheckpointError(f"{path}: no such ONNX file")
        return OnnxLocalizer(path, threads)
    if path.suffix.lower() == ONNX_SUFFIX:
        raise CheckpointError(f"{path}: an ONNX file runs with the onnx backend only")
    checkpoint = load_checkpoint(path)
    if backend == "torch":
        return localizer_from_checkpoint(checkpoint, device, path)
    import tempfile

    from simple_keypoint.export import export_onnx  # imports this module, so not at the top

    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "model.onnx"
        export_onnx(checkpoint, onnx_path)
        return OnnxLocalizer(onnx_path, threads)
