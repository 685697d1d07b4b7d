"""The SEB U-shape both methods build on: conv blocks, SEB fusion, the encoder-decoder feature
path, its command-line options, and the exact inference-only rewrite of its full-resolution end.

SEB (semantic embedding branch): the deeper map goes through a 3x3 conv and a bilinear x2
upsample, the skip map through a 1x1 conv, and the two are multiplied, so deep context gates
where the fine features may fire. Work is done at 1/2..1/16 resolution; the only full-resolution
layers are a 1x1 conv of the input and the last product, which keeps the net fast on a CPU
while still letting raw pixel intensities place the peak to a fraction of a pixel.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SEB(nn.Module):
    """Fuse a deep map into a skip map twice its size: up(conv3x3(deep)) * conv1x1(skip)."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.deep = nn.Conv2d(deep_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(skip_channels, out_channels, 1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.deep(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return up * self.skip(skip)


class GlobalContext(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) on the deepest map: the image's mean feature gates
    every channel, so the net can judge a blob against the whole frame (a speck in a clean sky vs
    one among a cloud bank's hundred)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.sigmoid(self.excite(F.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))


class SEBUNet(nn.Module):
    """Gray image (B, 1, H, W) -> one map (B, 1, H, W); H and W multiples of ``stride``.

    ``widths`` are the channel counts at 1/2, 1/4, 1/8, 1/16 ... of the input size; ``context``
    adds a :class:`GlobalContext` gate on the deepest map.
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), full_res_channels: int = 4, context: bool = False):
        super().__init__()
        self.widths = tuple(widths)
        self.stride = 2 ** len(self.widths)
        self.stem = conv_bn_relu(1, self.widths[0], stride=2)
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn_relu(cin, cout, stride=2), conv_bn_relu(cout, cout))
            for cin, cout in zip(self.widths[:-1], self.widths[1:], strict=False)
        )
        self.context = GlobalContext(self.widths[-1]) if context else None
        self.up = nn.ModuleList(
            SEB(deep, skip, skip) for deep, skip in zip(self.widths[:0:-1], self.widths[-2::-1], strict=False)
        )
        self.to_full = SEB(self.widths[0], 1, full_res_channels)
        self.head = nn.Conv2d(full_res_channels, 1, 1)
        # Start every pixel at p ~ 0.01 so the first steps are not spent unlearning false peaks.
        nn.init.constant_(self.head.bias, -4.6)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder down to 1/2^len(widths), SEBs back up to 1/2: what the last SEB fuses with ``x``."""
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        if self.context is not None:
            y = self.context(y)
        for seb in self.up:
            y = seb(y, skips.pop())
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.to_full(self.features(x), x))


class FastSEBUNet(nn.Module):
    """A :class:`SEBUNet` rewritten for inference: the same output, less full-resolution work.

    The net ends ``head(up(deep(y)) * skip(x))`` where ``x`` is the 1-channel input and ``skip`` and
    ``head`` are 1x1 convs: per pixel that is ``x * up(A(y)) + up(B(y))`` with ``A`` and ``B`` two
    linear combinations of ``deep``'s channels (bilinear upsampling is linear). So ``deep``, the
    skip conv and the head fold into one 3x3 conv with 2 outputs at half resolution, and full
    resolution keeps just a 2-channel upsample and a multiply-add instead of a C-channel upsample,
    a 1x1 conv, a product and another 1x1 conv. Weights of the other layers are shared, not copied.
    """

    def __init__(self, net: SEBUNet):
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

    features = SEBUNet.features  # the same encoder and SEBs, run on the shared layers

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


# The family's named sizes (channels at 1/2 ... 1/16 resolution): n, the frame-rate model on one CPU
# core; s, the accurate default (docs/measurements.md has their speed and accuracy).
SIZES = {"n": (4, 8, 16, 32), "s": (12, 24, 48, 96)}
DEFAULT_SIZE = "s"


def add_options(p: argparse.ArgumentParser) -> None:
    """The U-shape's size on a training command line (read back by :func:`model_args`)."""
    p.add_argument("--size", choices=sorted(SIZES), default=DEFAULT_SIZE,
                   help="named widths: " + ", ".join(f"{k} = {'-'.join(map(str, v))}" for k, v in sorted(SIZES.items())))
    p.add_argument("--widths", type=int, nargs="+", default=None,
                   help="channels at 1/2, 1/4, 1/8, 1/16 ... resolution (overrides --size)")
    p.add_argument("--full-res-channels", type=int, default=4, help="channels of the last, full-resolution SEB")
    p.add_argument("--context", action="store_true", help="a squeeze-and-excitation gate on the deepest map (whole-frame context)")


def model_args(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`SEBUNet` arguments :func:`add_options` put on the command line, as a checkpoint stores them."""
    widths = args.widths or SIZES[getattr(args, "size", DEFAULT_SIZE)]
    return {"widths": tuple(widths), "full_res_channels": args.full_res_channels, "context": args.context}
