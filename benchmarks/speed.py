"""Speed of the shipped models against the seed article's net, end to end, on one CPU thread.

    python -m benchmarks.speed                      # one table, 200 frames per row
    python -m benchmarks.speed --markdown --candidates --frames 300

Every row runs 256 x 320 gray frames (data/test images resized; random if absent) end to end:
standardise, network, NMS, top-k, sub-pixel fit, map back (``Localizer.predict`` on an in-memory
array); the seed row resizes to 360 x 480, copies to 3 channels and takes the argmax. Rows are
timed interleaved (frame i of every row before frame i+1), so load from other processes hits all
rows alike and the ratios stay meaningful on a shared machine.

Columns: MFLOP = 2 x multiply-adds of conv/linear layers (torch.utils.flop_counter; element-wise
ops, upsampling and pooling are not counted); weights = bytes of parameters and buffers;
activations = bytes of every tensor the network writes per frame (views excluded); floor = MFLOP /
the GFLOP/s measured here for a 1024^2 matmul and for a representative 3x3 conv; ratio = seed
ms / row ms. Peak memory: ru_maxrss of a fresh process per row (its peak resident set, MiB), and
its growth while running the frames.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.seed_nets import SEED_SIZE, SeedHeatmapNet, argmax_point, seed_input
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.heatmap.decode import decode_heatmap
from simple_keypoint.heatmap.model import HeatmapNet
from simple_keypoint.predict import Localizer, OnnxLocalizer, load_model, pad_to_multiple
from simple_keypoint.regression.model import RegressionNet

FRAME = (256, 320)
ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {  # HeatmapNet constructor args timed with --candidates (untrained: speed only)
    "widths 8-16-32-64, full-res 4 (default)": dict(widths=(8, 16, 32, 64), full_res_channels=4),
    "widths 8-16-32-64, full-res 1": dict(widths=(8, 16, 32, 64), full_res_channels=1),
    "widths 4-8-16-32, full-res 2": dict(widths=(4, 8, 16, 32), full_res_channels=2),
    "widths 8-16-32, full-res 2": dict(widths=(8, 16, 32), full_res_channels=2),
    "widths 4-8-16-32-64, full-res 2": dict(widths=(4, 8, 16, 32, 64), full_res_channels=2),
}


@dataclass
class Row:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # a 256 x 320 frame -> points
    net: torch.nn.Module  # what the FLOPs and bytes are counted on
    example: torch.Tensor  # its input for one frame
    onnx_path: Path | None = None  # the ONNX file an onnxruntime row runs


class ActivationBytes(TorchDispatchMode):
    """Sums the bytes of every tensor an op writes (views excluded)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.total += t.numel() * t.element_size()
        return out


def count(net: torch.nn.Module, x: torch.Tensor) -> tuple[int, float, int, int]:
    """Parameters, MFLOP, weight bytes, activation bytes of one forward."""
    with torch.inference_mode(), FlopCounterMode(display=False) as flops, ActivationBytes() as acts:
        net(x)
    tensors = [*net.parameters(), *net.buffers()]
    return (sum(p.numel() for p in net.parameters()), flops.get_total_flops() / 1e6,
            sum(t.numel() * t.element_size() for t in tensors), acts.total)


def machine_rates() -> tuple[float, float]:
    """GFLOP/s on the current threads: a 1024^2 matmul and a 3x3 conv 16->16 at 64 x 80."""
    def rate(fn: Callable[[], object], flop: float) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(20):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return flop / np.median(times) / 1e9

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    conv, x = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False).eval(), torch.randn(1, 16, 64, 80)
    with torch.inference_mode():
        return rate(lambda: a @ b, 2 * 1024**3), rate(lambda: conv(x), 2 * 16 * 16 * 9 * 64 * 80)


def test_frames(n: int = 16) -> list[np.ndarray]:
    files = sorted(glob.glob(str(ROOT / "data/test/images/*")))[:n]
    if not files:
        return [np.random.default_rng(i).integers(0, 256, FRAME, dtype=np.uint8) for i in range(n)]
    return [cv2.resize(cv2.imread(f, cv2.IMREAD_GRAYSCALE), FRAME[::-1], interpolation=cv2.INTER_AREA) for f in files]


def load_or_untrained(method: str, weights: Path) -> tuple[Localizer, dict, str]:
    """The shipped checkpoint if present, else an untrained default net; and what it was."""
    if weights.is_file():
        checkpoint = load_checkpoint(weights)
        return load_model(weights, device="cpu"), checkpoint, weights.name
    return untrained(method, {}) + (f"untrained default {'HeatmapNet' if method == 'heatmap' else 'RegressionNet'}",)


def untrained(method: str, model_args: dict) -> tuple[Localizer, dict]:
    net = (HeatmapNet if method == "heatmap" else RegressionNet)(**model_args).eval()
    return Localizer(method, net, device="cpu"), {"method": method, "model_args": model_args, "model_state": net.state_dict()}


def torch_row(name: str, loc: Localizer) -> Row:
    x = pad_to_multiple(torch.zeros(1, 1, *FRAME), loc.stride)
    net = loc._fast_net() if loc.method == "heatmap" else loc.net
    return Row(name, loc.predict, net, x)


def onnx_row(name: str, loc: Localizer, checkpoint: dict, threads: int, folder: Path) -> Row:
    from simple_keypoint.export import export_onnx

    path = folder / f"{len(list(folder.iterdir()))}.onnx"
    export_onnx(checkpoint, path)
    row = torch_row(name, loc)
    return Row(name, OnnxLocalizer(path, threads).predict, row.net, row.example, path)


def before_row(loc: Localizer) -> Row:
    """The predict path as it was before this benchmark: the plain net, sigmoid of the whole map,
    torch max-pool NMS and sub-pixel fit on the whole map (decode_heatmap)."""
    def run(frame: np.ndarray) -> np.ndarray:
        gray = loc.standardised(frame)
        with torch.inference_mode():
            heat = torch.sigmoid(loc.net(pad_to_multiple(torch.from_numpy(gray)[None, None], loc.stride)))
        return decode_heatmap(heat[0, 0, :gray.shape[0], :gray.shape[1]], loc.conf, loc.max_points, loc.subpixel)

    return Row("heatmap, torch, before (plain net + decode_heatmap)", run, loc.net, torch.zeros(1, 1, *FRAME))


def seed_row() -> Row:
    net = SeedHeatmapNet().eval()

    def run(frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return argmax_point(net(seed_input(frame)), *frame.shape[:2])

    return Row("seed heatmap net (360x480 3-ch, argmax)", run, net, torch.zeros(1, 3, *SEED_SIZE))


def build_rows(args: argparse.Namespace, folder: Path) -> tuple[list[Row], list[str]]:
    rows, notes = [], []
    for method in ("heatmap", "regression"):
        loc, checkpoint, what = load_or_untrained(method, Path(args.weights_dir) / f"{method}.pt")
        notes.append(f"{method} model: {what}")
        rows += [torch_row(f"{method}, torch", loc), onnx_row(f"{method}, onnxruntime", loc, checkpoint, args.threads, folder)]
        if method == "heatmap":
            rows += [before_row(loc), seed_row()]
    if args.candidates:
        for name, model_args in CANDIDATES.items():
            loc, checkpoint = untrained("heatmap", model_args)
            rows += [torch_row(f"cand. {name}, torch", loc),
                     onnx_row(f"cand. {name}, onnxruntime", loc, checkpoint, args.threads, folder)]
    return rows, notes


def time_rows(rows: list[Row], frames: list[np.ndarray], n: int, warmup: int = 20) -> list[np.ndarray]:
    """Milliseconds per frame of every row, interleaved frame by frame."""
    times = [[] for _ in rows]
    for i in range(warmup + n):
        frame = frames[i % len(frames)]
        for row, t in zip(rows, times, strict=True):
            started = time.perf_counter()
            row.run(frame)
            if i >= warmup:
                t.append((time.perf_counter() - started) * 1e3)
    return [np.array(t) for t in times]


def batch_throughput(rows: list[Row], threads: int) -> list[tuple[str, dict[int, float]]]:
    """Network-only frames/s at batch 1, 8, 32 with ``threads`` threads (torch and onnxruntime)."""
    import onnxruntime as ort

    torch.set_num_threads(threads)
    out = []
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    for row in rows:
        if "before" in row.name or "cand." in row.name or "regression" in row.name:
            continue
        fps = {}
        session = ort.InferenceSession(str(row.onnx_path), options, providers=["CPUExecutionProvider"]) if row.onnx_path else None
        for batch in (1, 8, 32):
            x = torch.randn(batch, *row.example.shape[1:])
            run = (lambda x=x, s=session: s.run(None, {"image": x.numpy()})) if session else (lambda x=x, n=row.net: n(x))
            with torch.inference_mode():
                run()
                started, frames = time.perf_counter(), 0
                while time.perf_counter() - started < 1.5 or frames < 2 * batch:
                    run()
                    frames += batch
            fps[batch] = frames / (time.perf_counter() - started)
        out.append((row.name, fps))
    return out


def peak_memory(index: int, args: argparse.Namespace) -> tuple[float, float]:
    """(peak RSS MiB, growth MiB while running frames) of row ``index`` in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.speed", "--memory-row", str(index), "--weights-dir", args.weights_dir,
               "--threads", str(args.threads)] + (["--candidates"] if args.candidates else [])
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    peak, growth = result.stdout.split()[-2:]
    return float(peak), float(growth)


def memory_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        rows, _ = build_rows(args, Path(folder))
        row, frames = rows[args.memory_row], test_frames()
        row.run(frames[0])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for frame in frames * 2:
            row.run(frame)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{peak:.1f} {peak - before:.1f}")


def table(headers: list[str], lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *lines, strict=True)]
    fmt = lambda cells: "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="threads for the per-frame timing (default: %(default)s)")
    p.add_argument("--frames", type=int, default=200, help="timed frames per row, after 20 warm-up frames (default: %(default)s)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--candidates", action="store_true", help="also time candidate HeatmapNet configurations (untrained)")
    p.add_argument("--weights-dir", default=str(ROOT / "weights"), help="where heatmap.pt / regression.pt are looked for")
    p.add_argument("--no-batch", action="store_true", help="skip the all-cores batch throughput")
    p.add_argument("--no-memory", action="store_true", help="skip the per-row peak memory (one process per row)")
    p.add_argument("--memory-row", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_row is not None:
        memory_child(args)
        return 0

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        rows, notes = build_rows(args, Path(folder))
        matmul, conv = machine_rates()
        times = time_rows(rows, test_frames(), args.frames)
        memory = [peak_memory(i, args) if not args.no_memory else (float("nan"),) * 2 for i in range(len(rows))]
        seed_ms = next(np.median(t) for row, t in zip(rows, times, strict=True) if row.name.startswith("seed"))
        lines = []
        for row, t, (peak, growth) in zip(rows, times, memory, strict=True):
            params, mflop, wbytes, abytes = count(row.net, row.example)
            lines.append([row.name, f"{params:,}", f"{mflop:.0f}", f"{wbytes / 1024:.0f} KiB", f"{abytes / 2**20:.1f} MiB",
                          f"{mflop / matmul:.2f} / {mflop / conv:.2f}", f"{np.median(t):.2f}",
                          f"{np.percentile(t, 90):.2f}", f"{1e3 / np.median(t):.0f}", f"{seed_ms / np.median(t):.1f}x",
                          f"{peak:.0f} / +{growth:.0f}"])
        load = os.getloadavg()
        print(f"{args.frames} frames of {FRAME[0]}x{FRAME[1]} per row, {args.threads} thread(s), interleaved; "
              f"torch {torch.__version__}; "
              f"{os.cpu_count()} cores, load average {load[0]:.1f} (other processes share this machine)")
        print(f"this machine, {args.threads} thread(s): matmul 1024^2 {matmul:.0f} GFLOP/s, conv3x3 16->16 @64x80 {conv:.0f} GFLOP/s; "
              + "; ".join(notes) + "\n")
        print(table(["model", "params", "MFLOP", "weights", "activations", "floor ms (matmul/conv)", "ms median", "ms p90",
                     "frames/s", "vs seed", "peak RSS MiB / growth"], lines, args.markdown))
        if not args.no_batch:
            threads = os.cpu_count() or 1
            results = batch_throughput(rows, threads)
            print(f"\nnetwork only, {threads} threads, frames/s by batch size:\n")
            print(table(["model", "batch 1", "batch 8", "batch 32"],
                        [[name, *(f"{fps[b]:.0f}" for b in (1, 8, 32))] for name, fps in results], args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
