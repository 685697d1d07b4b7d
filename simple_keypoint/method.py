"""What a method is: everything prediction, export, training and evaluation need to know about it.

A method is one folder (``simple_keypoint/heatmap/``, ``simple_keypoint/regression/``) holding its
net, its training target and loss, its ``train.py`` and a :class:`Method` subclass that declares
the rest: how to build the net, what runs at inference and goes into the ONNX graph, how one
image's output becomes points, what its dataset must hold, whether training picks a threshold.
:mod:`simple_keypoint.methods` maps names to methods; nothing else compares a method's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DecodeSettings:
    """How outputs become points; a checkpoint's ``decode`` dict overrides these defaults.

    ``relative`` and ``subpixel`` are the heatmap decoder's; other methods may ignore them.
    """

    conf: float = 0.3
    max_points: int = 20
    max_side: int = 4096  # larger frames are downscaled first, to protect memory; points map back
    subpixel: bool = True
    relative: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Method:
    """Base of every method; subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    net_class: ClassVar[type[nn.Module]]
    onnx_output: ClassVar[str] = "logits"  # the ONNX graph's output name
    has_heatmap: ClassVar[bool] = False  # the output of :meth:`image_output` is a heatmap's logits
    picks_threshold: ClassVar[bool] = False  # training stores a threshold chosen on validation
    # What a dataset image must hold to be used (others are counted and skipped), and whether
    # training crops must keep an image's one target inside.
    min_targets: ClassVar[int] = 0
    max_targets: ClassVar[int | None] = None
    keep_target_in_crop: ClassVar[bool] = False

    def build(self, model_args: dict[str, Any]) -> nn.Module:
        """A new net; it must have a ``stride`` (inputs are padded to a multiple of it)."""
        return self.net_class(**model_args)

    def inference_net(self, net: nn.Module) -> nn.Module:
        """The module prediction runs and the ONNX export writes: image batch -> one tensor."""
        return net

    def onnx_dynamic_axes(self) -> dict[int, str]:
        """The output's dynamic axes (the input's are batch, height and width)."""
        return {0: "batch", 2: "height", 3: "width"}

    def image_output(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The first image's part of :meth:`inference_net`'s output for a padded batch, for an image
        of ``height`` x ``width`` pixels."""
        return out[0, 0, :height, :width]

    def decode(self, out: torch.Tensor, padded: tuple[int, int], settings: DecodeSettings) -> np.ndarray:
        """One image's output -> (N, 3) float64 ``(u, v, score)`` in the net input's pixel
        coordinates, best first, scores >= ``settings.conf``, at most ``settings.max_points``."""
        raise NotImplementedError

    def accepts(self, n_targets: int) -> bool:
        """Whether an image with ``n_targets`` labelled points can be used."""
        return n_targets >= self.min_targets and (self.max_targets is None or n_targets <= self.max_targets)

    def __repr__(self) -> str:
        return f"<method {self.name}>"
