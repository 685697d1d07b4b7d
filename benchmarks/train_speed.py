"""Speed of one training step of the heatmap net, by memory layout and precision, side by side.

    python -m benchmarks.train_speed                # the default size (s), batch 8 of 192 x 192 crops
    python -m benchmarks.train_speed --markdown --size n
    python -m benchmarks.train_speed --markdown --widths 16 32 64 128

A step is what simple_keypoint/training.py does per batch: forward, the heatmap loss, backward,
AdamW. Rows are timed interleaved (step i of every row before step i+1), so load from other
processes hits all rows alike. GFLOP = 2 x multiply-adds of the conv layers in forward and backward
(torch.utils.flop_counter); floor = GFLOP / the 1024^2 matmul rate measured here on the same threads.
NCHW is PyTorch's default layout, NHWC is ``torch.channels_last``; bf16 is CPU autocast.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.speed import machine_rates
from simple_keypoint import backbone
from simple_keypoint.heatmap.loss import heatmap_loss
from simple_keypoint.heatmap.model import HeatmapNet
from simple_keypoint.tables import render_table

VARIANTS = {  # name: (memory format, autocast to bf16)
    "NCHW fp32 (PyTorch default)": (torch.contiguous_format, False),
    "NHWC fp32 (channels_last, what training uses)": (torch.channels_last, False),
    "NCHW bf16 autocast": (torch.contiguous_format, True),
    "NHWC bf16 autocast": (torch.channels_last, True),
}


def make_step(model_args: dict, fmt: torch.memory_format, bf16: bool, batch: int, crop: int):  # noqa: ANN201
    torch.manual_seed(0)
    net = HeatmapNet(**model_args).to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, crop, crop).to(memory_format=fmt)
    target = torch.rand(batch, 1, crop, crop) ** 50  # a few bright pixels, like Gaussians

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = heatmap_loss(logits.float(), target, "wmse", 30.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    backbone.add_options(p)  # --size, --widths ... as training reads them
    p.add_argument("--batch-size", type=int, default=8, help="crops per step")
    p.add_argument("--crop", type=int, default=192, help="crop side, pixels")
    p.add_argument("--steps", type=int, default=30, help="timed steps per row, after 5 warm-up steps")
    p.add_argument("--threads", type=int, default=0, help="0: all cores, as training uses")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_args = backbone.model_args(args)

    steps = {name: make_step(model_args, fmt, bf16, args.batch_size, args.crop) for name, (fmt, bf16) in VARIANTS.items()}
    with FlopCounterMode(display=False) as flops:
        steps["NCHW fp32 (PyTorch default)"]()
    gflop = flops.get_total_flops() / 1e9
    matmul, _ = machine_rates()
    for step in steps.values():  # warm-up: first calls pick kernels and allocate
        for _ in range(5):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - started) * 1e3)

    base = np.median(times["NCHW fp32 (PyTorch default)"])
    widths = "-".join(map(str, model_args["widths"]))
    print(f"heatmap net widths {widths}, batch {args.batch_size} x {args.crop}^2, {torch.get_num_threads()} thread(s); "
          f"{gflop:.2f} GFLOP per step (forward + backward); matmul {matmul:.0f} GFLOP/s -> floor {gflop / matmul * 1e3:.1f} ms")
    rows = [[name, f"{np.median(t):.1f}", f"{np.percentile(t, 90):.1f}", f"{args.batch_size / np.median(t) * 1e3:.0f}",
             f"{gflop / np.median(t) * 1e3:.1f}", f"{base / np.median(t):.2f}x"] for name, t in times.items()]
    print(render_table(["variant", "ms/step median", "ms p90", "crops/s", "GFLOP/s", "vs NCHW fp32"], rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
