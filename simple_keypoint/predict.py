"""Run a trained model on images: ``load_model(path).predict(image)`` -> (N, 3) ``(u, v, score)``.

Points are in the input image's 0-based pixel-index coordinates, best first. Every method shares
the pre-processing (gray, standardise, pad to the net's stride); the output step is the method's
own (:meth:`simple_keypoint.method.Method.decode`). Two backends share all of that: PyTorch
(:class:`Localizer`) and an exported ONNX file run by onnxruntime (:class:`OnnxLocalizer`, see
``simple_keypoint.export``). :func:`load_model` picks the faster one it can: onnxruntime on a CPU
when it is installed (a .pt is exported once and cached, ``simple_keypoint.onnx_cache``), PyTorch
on CUDA, without onnxruntime, or when asked (``backend="torch"``). Training's validation builds a
PyTorch :class:`Localizer` directly, as its weights change every step.

The net runs as its method's inference module (for the heatmap method the exact fast rewrite of
its full-resolution layers, :class:`simple_keypoint.backbone.FastSEBUNet`); speed notes:
benchmarks/SPEED_NOTES.md.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_bytes
from simple_keypoint.export import OnnxExportError
from simple_keypoint.heatmap.model import FastHeatmapNet
from simple_keypoint.heatmap.verifier import Verifier, verifier_from_checkpoint
from simple_keypoint.images import load_gray, standardise, to_gray
from simple_keypoint.method import DecodeSettings, Method
from simple_keypoint.methods import build_model, decode_settings, get_method, net_from_checkpoint
from simple_keypoint.onnx_cache import cached_onnx
from simple_keypoint.onnx_session import onnx_session
from simple_keypoint.paths import DefaultPathError, resolve_weights

# Names other modules and tests import from here.
__all__ = ["BACKENDS", "FastHeatmapNet", "Localizer", "OnnxLocalizer", "build_model", "default_backend", "load_model",
           "localizer_from_checkpoint", "pad_to_multiple", "pick_device"]
ONNX_SUFFIX = ".onnx"
BACKENDS = ("auto", "torch", "onnx")
_DEFAULTS = DecodeSettings()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right with zeros (the standardised mean) to a multiple."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


def _weights_version(net: torch.nn.Module) -> tuple[int, ...]:
    """Changes whenever a parameter or buffer is modified in place (optimizer steps, load_state_dict)."""
    try:
        return tuple(t._version for t in (*net.parameters(), *net.buffers()))
    except RuntimeError:  # tensors made under torch.inference_mode have no version counter
        return ()


class Localizer:
    """A trained model plus its decoding settings. Use :func:`load_model` to get one.

    ``method``: a registered method's name or a :class:`~simple_keypoint.method.Method`;
    ``self.method`` is its name, ``self.spec`` the method itself.
    """

    backend = "torch"  # what runs the net (OnnxLocalizer: "onnx")

    def __init__(self, method: str | Method, net: torch.nn.Module | None, conf: float = _DEFAULTS.conf,
                 max_points: int = _DEFAULTS.max_points, device: str | torch.device | None = None,
                 max_side: int = _DEFAULTS.max_side, subpixel: bool = _DEFAULTS.subpixel,
                 relative: bool = _DEFAULTS.relative, verifier: Verifier | None = None):
        self.spec = method if isinstance(method, Method) else get_method(method)
        self.method = self.spec.name
        self.device = pick_device(device)
        self.net = net.to(self.device).eval() if net is not None else None
        self.conf, self.max_points, self.max_side, self.subpixel = conf, max_points, max_side, subpixel
        self.relative = relative  # heatmap scores relative to the image's clutter (heatmap/decode.py)
        self.stride = net.stride if net is not None else 1
        # A second look at each candidate peak (heatmap checkpoints that carry one): its score is the one returned.
        self.verifier = verifier if self.spec.has_heatmap else None
        self._inference: tuple[tuple[int, ...], torch.nn.Module] | None = None

    @property
    def settings(self) -> DecodeSettings:
        """The decoding settings as they are now (attributes may be changed between calls)."""
        return DecodeSettings(self.conf, self.max_points, self.max_side, self.subpixel, self.relative)

    @staticmethod
    def standardised(image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """A path or an H x W [x C] array (uint8/uint16/float) -> standardised gray float32."""
        return load_gray(image) if isinstance(image, (str, os.PathLike)) else standardise(to_gray(image))

    def inference_net(self) -> torch.nn.Module:
        """The module that runs: the method's inference form of the net, rebuilt if the weights changed."""
        version = _weights_version(self.net)
        if self._inference is None or self._inference[0] != version:
            self._inference = version, self.spec.inference_net(self.net).eval()
        return self._inference[1]

    _fast_net = inference_net  # the name benchmarks/speed.py used

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a padded batch (B, 1, H, W): the method's inference output (heatmap
        logits (B, 1, H, W), regression ``locate`` (B, 3), ...). Backends override this."""
        with torch.inference_mode():
            return self.inference_net()(x.to(self.device))

    def _forward(self, gray: np.ndarray) -> tuple[torch.Tensor, float, tuple[int, int], np.ndarray]:
        """Run the net on a standardised gray image. Returns the image's output (e.g. heatmap
        logits (H, W)), the downscale factor (1 = none), the padded input size and the gray image
        the net saw (downscaled when it was larger than ``max_side``)."""
        scale = 1.0
        if max(gray.shape) > self.max_side:  # protects memory on huge frames; points map back
            scale = self.max_side / max(gray.shape)
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = gray.shape
        x = pad_to_multiple(torch.from_numpy(gray)[None, None], self.stride)
        return self.spec.image_output(self.run_net(x), h, w), scale, tuple(x.shape[-2:]), gray

    def _heat_from_logits(self, logits: torch.Tensor, shape: tuple[int, int], scale: float) -> np.ndarray:
        heat = torch.sigmoid(logits).cpu().numpy()
        if scale != 1.0:
            heat = cv2.resize(heat, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return heat

    def heatmap(self, image: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The heatmap (methods that have one) at the input image's size, float32 in [0, 1]."""
        if not self.spec.has_heatmap:
            raise ValueError(f"a {self.method} model has no heatmap")
        gray = self.standardised(image)
        logits, scale, _, _ = self._forward(gray)
        return self._heat_from_logits(logits, gray.shape, scale)

    def predict(self, image: str | os.PathLike | np.ndarray, conf: float | None = None,
                max_points: int | None = None) -> np.ndarray:
        """Points ``(u, v, score)`` (N, 3) float64 in the image's pixel coordinates, best first."""
        return self.predict_standardised(self.standardised(image), conf, max_points)

    def predict_with_heatmap(self, image: str | os.PathLike | np.ndarray, conf: float | None = None,
                             max_points: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict` and :meth:`heatmap` (``None`` for a method without one) from one run of the net."""
        gray = self.standardised(image)
        out, scale, padded, seen = self._forward(gray)
        points = self._points(out, scale, padded, conf, max_points, gray.shape, seen)
        heat = self._heat_from_logits(out, gray.shape, scale) if self.spec.has_heatmap else None
        return points, heat

    def predict_standardised(self, gray: np.ndarray, conf: float | None = None,
                             max_points: int | None = None) -> np.ndarray:
        """:meth:`predict` for an image already passed through :meth:`standardised`."""
        out, scale, padded, seen = self._forward(gray)
        return self._points(out, scale, padded, conf, max_points, gray.shape, seen)

    def candidates(self, gray: np.ndarray, conf: float, max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A verifier's inputs for a standardised gray image: the heatmap's own peaks (N, 3) ``(u, v,
        score)`` scoring at least ``conf`` (at most ``max_points``), the gray image the net saw and
        its logits (both H x W, in the peaks' coordinates; smaller than ``gray`` above ``max_side``)."""
        out, _, padded, seen = self._forward(gray)
        settings = replace(self.settings, conf=conf, max_points=max_points)
        points = np.array(self.spec.decode(out, padded, settings), np.float64).reshape(-1, 3)
        return points, seen, out.cpu().numpy()

    def _points(self, out: torch.Tensor, scale: float, padded: tuple[int, int], conf: float | None,
                max_points: int | None, shape: tuple[int, int], seen: np.ndarray) -> np.ndarray:
        settings = replace(self.settings, conf=self.conf if conf is None else conf,
                           max_points=self.max_points if max_points is None else max_points)
        if self.verifier is None:
            points = np.array(self.spec.decode(out, padded, settings), np.float64).reshape(-1, 3)
        else:
            candidates = replace(settings, conf=self.verifier.candidate_conf, max_points=self.verifier.max_candidates)
            points = self.verifier.rescore(seen, out.cpu().numpy(), self.spec.decode(out, padded, candidates))
            points = points[points[:, 2] >= settings.conf]
            points = points[np.argsort(-points[:, 2], kind="stable")][:settings.max_points]
        if scale != 1.0:  # pixel centres scale as (u + 0.5) / scale - 0.5
            points[:, :2] = (points[:, :2] + 0.5) / scale - 0.5
        # The net saw the image padded to its stride; a point may land in the padding.
        h, w = shape
        points[:, 0] = points[:, 0].clip(-0.5, w - 0.5)
        points[:, 1] = points[:, 1].clip(-0.5, h - 0.5)
        return points


class OnnxLocalizer(Localizer):
    """A :class:`Localizer` whose network is an exported ONNX file run by onnxruntime (CPU).

    The file carries the method, stride and decoding settings as metadata (written by
    ``simple_keypoint.export``). ``model``: the .onnx file or its bytes; ``name`` names it in
    errors (default: the path). ``threads``: onnxruntime's intra-op threads (0 = its default, all cores).
    """

    backend = "onnx"

    def __init__(self, model: str | os.PathLike | bytes, threads: int = 0, name: str | os.PathLike | None = None):
        path = name if name is not None else ("<ONNX model>" if isinstance(model, bytes) else model)
        try:
            self.session = onnx_session(model, threads)
        except Exception as e:  # noqa: BLE001  (onnxruntime raises its own, non-exported error types)
            raise CheckpointError(f"{path}: not a readable ONNX model ({str(e).strip().splitlines()[0][:120]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "simple_keypoint_method" not in meta:
            raise CheckpointError(f"{path}: not a simple_keypoint ONNX export (no method metadata; "
                                  "export with simple-keypoint export)")
        method = get_method(meta["simple_keypoint_method"], path)
        decode = decode_settings(json.loads(meta.get("simple_keypoint_decode", "{}")), path)
        super().__init__(method, None, device="cpu", verifier=self._verifier(meta, threads, path), **decode.as_dict())
        self.stride = int(meta["simple_keypoint_stride"])
        self.input_name = self.session.get_inputs()[0].name

    @staticmethod
    def _verifier(meta: dict[str, str], threads: int, path: str | os.PathLike) -> Verifier | None:
        """The verifier graph a heatmap export carries in its metadata (see ``simple_keypoint.export``)."""
        if "simple_keypoint_verifier" not in meta:
            return None
        try:
            settings = json.loads(meta["simple_keypoint_verifier_settings"])
            session = onnx_session(base64.b64decode(meta["simple_keypoint_verifier"]), threads)
            name = session.get_inputs()[0].name
            return Verifier(lambda batch: session.run(None, {name: batch})[0], float(settings["candidate_conf"]),
                            int(settings["max_candidates"]), int(settings["window"]), int(settings.get("context", 1)))
        except Exception as e:  # noqa: BLE001  (onnxruntime raises its own, non-exported error types)
            raise CheckpointError(f"{path}: its verifier cannot be read ({str(e).strip()[:120]})") from None

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.cpu().numpy()})[0])


def localizer_from_checkpoint(checkpoint: dict[str, Any], device: str | torch.device | None = None,
                              path: str | os.PathLike = "<checkpoint>") -> Localizer:
    """A :class:`Localizer` (PyTorch) for a loaded checkpoint; :class:`CheckpointError` naming ``path``."""
    method, net = net_from_checkpoint(checkpoint, path)
    verifier = verifier_from_checkpoint(checkpoint["verifier"], pick_device(device)) if checkpoint.get("verifier") else None
    return Localizer(method, net, device=device, verifier=verifier, **decode_settings(checkpoint.get("decode"), path).as_dict())


def default_backend(device: str | torch.device | None = None) -> str:
    """The backend :func:`load_model` uses for a .pt on ``device``: ``"onnx"`` on a CPU with
    onnxruntime installed (the faster there), else ``"torch"``."""
    if pick_device(device).type != "cpu":
        return "torch"
    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def load_model(weights: str | os.PathLike, device: str | torch.device | None = None, backend: str | None = None,
               threads: int = 0) -> Localizer:
    """Load a model of any registered method, named as every ``--weights`` option takes it: a shipped
    model's name (``"heatmap"``, ``"heatmap_n"``, ``"regression"``), a checkpoint (.pt) or an ONNX
    export (.onnx). The method is read from the file.

    ``backend``: ``None`` or ``"auto"``: a .onnx file runs through onnxruntime; a .pt through
    :func:`default_backend` (onnxruntime on a CPU, exported once per checkpoint content and cached;
    PyTorch if that export fails, with a warning). ``"torch"``: PyTorch on ``device``. ``"onnx"``:
    onnxruntime on the CPU with ``threads`` intra-op threads (0 = all cores), failing if the
    export does. The file is read once. Raises CheckpointError naming the file, ValueError for an
    unknown backend.
    """
    if backend not in (None, *BACKENDS):
        raise ValueError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
    try:
        path = resolve_weights(weights)
    except DefaultPathError as e:
        raise CheckpointError(str(e)) from None
    automatic = backend in (None, "auto")
    if path.suffix.lower() == ONNX_SUFFIX:
        if backend == "torch":
            raise CheckpointError(f"{path}: an ONNX file runs with the onnx backend only")
        return OnnxLocalizer(path, threads)
    data = read_checkpoint_bytes(path)
    if (default_backend(device) if automatic else backend) == "torch":
        return localizer_from_checkpoint(load_checkpoint(path, data=data), device, path)
    try:
        return _onnx_from_checkpoint(path, data, threads)
    except OnnxExportError as e:
        if not automatic:
            raise
        warnings.warn(f"{e}; running it with PyTorch instead", stacklevel=2)
        return localizer_from_checkpoint(load_checkpoint(path, data=data), device, path)


def _onnx_from_checkpoint(path: Path, data: bytes, threads: int) -> OnnxLocalizer:
    """onnxruntime on the cached export of the checkpoint ``data`` (read from ``path``); an entry
    onnxruntime cannot open is exported again once."""
    cached = cached_onnx(path, data=data)
    try:
        return OnnxLocalizer(cached.model, threads, name=path)
    except CheckpointError:
        if not cached.hit:
            raise
    return OnnxLocalizer(cached_onnx(path, refresh=True, data=data).model, threads, name=path)
