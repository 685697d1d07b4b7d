"""Speed of the shipped models against the seed article's net, end to end, on one CPU thread.

    python -m benchmarks.speed                      # one table, 200 frames per row
    python -m benchmarks.speed --markdown --candidates --frames 300
    python -m benchmarks.speed --layers             # per-block times of the default HeatmapNet
    python -m benchmarks.speed --ablations          # each inference trick tried, alone

Every row runs 256 x 320 gray frames (data/test images resized; random if absent) end to end:
standardise, network, NMS, top-k, sub-pixel fit, map back (``Localizer.predict`` on an in-memory
array); the seed row resizes to 360 x 480, copies to 3 channels and takes the argmax. Rows are
timed interleaved (frame i of every row before frame i+1), so load from other processes hits all
rows alike and the ratios stay meaningful on a shared machine.

Columns: MFLOP = 2 x multiply-adds of conv/linear layers (torch.utils.flop_counter; element-wise
ops, upsampling and pooling are not counted); weights = bytes of parameters and buffers;
activations = bytes of every tensor the network writes per frame (views excluded); floor = MFLOP /
the GFLOP/s measured here for a 1024^2 matmul and for a representative 3x3 conv; ratio = seed
ms / row ms. Peak memory: VmHWM (the kernel's peak resident set, MiB; Linux) of a fresh process
per row that builds the model and runs 32 frames, and how much of it came after importing the
libraries (model, export, working memory). Not ru_maxrss: Linux keeps the parent's peak in it
across exec.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import warnings
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
from simple_keypoint.heatmap.decode import decode_logits
from simple_keypoint.heatmap.model import FastHeatmapNet, HeatmapNet
from simple_keypoint.methods import build_model
from simple_keypoint.onnx_session import onnx_session
from simple_keypoint.predict import Localizer, OnnxLocalizer, load_model, pad_to_multiple
from simple_keypoint.tables import render_table

FRAME = (256, 320)
ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {  # HeatmapNet constructor args timed with --candidates (untrained: speed only)
    "8-16-32-64 fr1": dict(widths=(8, 16, 32, 64), full_res_channels=1),
    "6-12-24-48 fr4": dict(widths=(6, 12, 24, 48), full_res_channels=4),
    "4-8-16-32 fr4": dict(widths=(4, 8, 16, 32), full_res_channels=4),
    "8-16-32 fr4": dict(widths=(8, 16, 32), full_res_channels=4),
    "8-24-48-96 fr4": dict(widths=(8, 24, 48, 96), full_res_channels=4),  # wider, for a net that underfits
    "16-32-64-128 fr4": dict(widths=(16, 32, 64, 128), full_res_channels=4),
}


@dataclass
class Row:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # a 256 x 320 frame -> points
    net: torch.nn.Module  # what the FLOPs and bytes are counted on
    example: torch.Tensor  # its input for one frame
    onnx_path: Path | None = None  # the ONNX file an onnxruntime row runs
    params: int | None = None  # parameters of the model as trained, if ``net`` is an inference rewrite


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


def time_call(fn: Callable, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1e3


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
        return load_model(weights, device="cpu", backend="torch"), checkpoint, weights.name
    loc, checkpoint = untrained(method, {})
    return loc, checkpoint, f"untrained default {type(loc.net).__name__}"


def untrained(method: str, model_args: dict) -> tuple[Localizer, dict]:
    net = build_model(method, model_args).eval()
    return Localizer(method, net, device="cpu"), {"method": method, "model_args": model_args, "model_state": net.state_dict()}


def torch_row(name: str, loc: Localizer) -> Row:
    x = pad_to_multiple(torch.zeros(1, 1, *FRAME), loc.stride)
    net = loc.inference_net()
    return Row(name, loc.predict, net, x, params=sum(p.numel() for p in loc.net.parameters()))


def onnx_row(name: str, loc: Localizer, checkpoint: dict, threads: int, folder: Path) -> Row:
    from simple_keypoint.export import export_onnx

    path = folder / f"{len(list(folder.iterdir()))}.onnx"
    export_onnx(checkpoint, path)
    row = torch_row(name, loc)
    return Row(name, OnnxLocalizer(path, threads).predict, row.net, row.example, path, row.params)


def seed_row() -> Row:
    net = SeedHeatmapNet().eval()

    def run(frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return argmax_point(net(seed_input(frame)), *frame.shape[:2])

    return Row("seed heatmap net (360x480 3-ch, argmax)", run, net, torch.zeros(1, 3, *SEED_SIZE))


def build_rows(args: argparse.Namespace, folder: Path) -> tuple[list[Callable[[], Row]], list[str]]:
    """Row factories (a memory-measuring process builds just its own row) and notes on the models."""
    rows, notes = [], []
    for method in ("heatmap", "regression"):
        loc, checkpoint, what = load_or_untrained(method, Path(args.weights_dir) / f"{method}.pt")
        notes.append(f"{method} model: {what}")
        rows += [lambda m=method, loc=loc: torch_row(f"{m}, torch", loc),
                 lambda m=method, loc=loc, c=checkpoint: onnx_row(f"{m}, onnxruntime", loc, c, args.threads, folder)]
        if loc.spec.has_heatmap:  # the seed recipe's net is a heatmap net
            rows.append(seed_row)
    if args.candidates:
        for name, model_args in CANDIDATES.items():
            loc, checkpoint = untrained("heatmap", model_args)
            rows += [lambda n=name, loc=loc: torch_row(f"cand. {n}, torch", loc),
                     lambda n=name, loc=loc, c=checkpoint: onnx_row(f"cand. {n}, onnxruntime", loc, c, args.threads, folder)]
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
    torch.set_num_threads(threads)
    out = []
    for row in rows:
        if "cand." in row.name or "regression" in row.name:
            continue
        fps = {}
        session = onnx_session(row.onnx_path, threads) if row.onnx_path else None
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
    """(peak RSS MiB, its growth over the RSS after imports) of row ``index`` in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.speed", "--memory-row", str(index), "--weights-dir", args.weights_dir,
               "--threads", str(args.threads)] + (["--candidates"] if args.candidates else [])
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    peak, growth = result.stdout.split()[-2:]
    return float(peak), float(growth)


def memory_child(args: argparse.Namespace) -> None:
    """Prints this process's peak RSS (VmHWM) after running the row, and that peak less the (current) RSS
    once the libraries are imported: the model plus its working memory."""
    import onnxruntime  # noqa: F401  (imported by the onnx rows; part of the baseline)

    torch.set_num_threads(args.threads)
    baseline = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    with tempfile.TemporaryDirectory() as folder:
        factories, _ = build_rows(args, Path(folder))
        row, frames = factories[args.memory_row](), test_frames()
        for frame in frames * 2:
            row.run(frame)
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        peak = int(status["VmHWM"].split()[0]) / 1024  # ru_maxrss would include the parent's peak (kept across exec)
        print(f"{peak:.1f} {peak - baseline:.1f}")


def layer_times(net: torch.nn.Module, x: torch.Tensor, runs: int = 100) -> list[tuple[str, float, float]]:
    """(block, median ms, MFLOP) of every top-level block (each item of a ModuleList) of one forward,
    and of what runs outside them."""
    blocks = []
    for name, child in net.named_children():
        blocks += ([(f"{name}.{i}", m) for i, m in enumerate(child)] if isinstance(child, torch.nn.ModuleList) else [(name, child)])
    times: dict[str, list[float]] = {name: [] for name, _ in blocks}
    started: dict[str, float] = {}
    hooks = []
    for name, module in blocks:
        hooks.append(module.register_forward_pre_hook(lambda m, i, n=name: started.__setitem__(n, time.perf_counter())))
        hooks.append(module.register_forward_hook(lambda m, i, o, n=name: times[n].append(time.perf_counter() - started[n])))
    with torch.inference_mode():
        totals = [time_call(net, x) for _ in range(runs + 10)][10:]
        with FlopCounterMode(display=False) as flops:
            net(x)
    for hook in hooks:
        hook.remove()
    counts = flops.get_flop_counts()
    prefix = type(net).__name__
    rows = [(name, float(np.median(t[10:])) * 1e3, sum(counts.get(f"{prefix}.{name}", {}).values()) / 1e6)
            for name, t in times.items()]
    rows.append(("outside the blocks", float(np.median(totals)) - sum(r[1] for r in rows), 0.0))
    return rows + [("whole forward", float(np.median(totals)), flops.get_total_flops() / 1e6)]


def ablations(runs: int, markdown: bool) -> None:
    """What each inference trick does to the default HeatmapNet at 256 x 320, timed interleaved."""
    import copy

    import onnxruntime as ort
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from simple_keypoint.export import export_module

    net = HeatmapNet().eval()
    fused = copy.deepcopy(net)
    for seq in fused.modules():  # BatchNorm folded into the conv before it
        if isinstance(seq, torch.nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], torch.nn.Conv2d) and isinstance(seq[i + 1], torch.nn.BatchNorm2d):
                    seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), torch.nn.Identity()
    fast = FastHeatmapNet(net)
    fast_cl = copy.deepcopy(fast).to(memory_format=torch.channels_last)
    x = torch.randn(1, 1, *FRAME)
    sessions = {}
    with tempfile.TemporaryDirectory() as folder:
        for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
            for name, model in (("plain", net), ("fast", export_module("heatmap", net)[0])):
                with warnings.catch_warnings():  # the legacy exporter's deprecation notice
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, (x,), f"{folder}/{name}.onnx", dynamo=False, opset_version=17, input_names=["image"])
                optimization = getattr(ort.GraphOptimizationLevel, level)
                sessions[f"onnxruntime {name} net, {level}"] = onnx_session(f"{folder}/{name}.onnx", 1, optimization)
    logits = net(x).detach()[0, 0].numpy()
    cases = {
        "plain net, torch.no_grad": lambda: torch.no_grad()(net)(x),
        "plain net, torch.inference_mode": lambda: torch.inference_mode()(net)(x),
        "plain net, BatchNorm fused into convs": lambda: torch.inference_mode()(fused)(x),
        "FastHeatmapNet (folded full-res layers)": lambda: torch.inference_mode()(fast)(x),
        "FastHeatmapNet, channels_last": lambda: torch.inference_mode()(fast_cl)(x.contiguous(memory_format=torch.channels_last)),
        **{k: (lambda s=s: s.run(None, {"image": x.numpy()})) for k, s in sessions.items()},
        # History: the first decoder's NMS was this max-pool, 2.2 ms alone (SPEED_NOTES.md).
        "NMS alone: torch max_pool2d 3x3 (replaced)": lambda: torch.max_pool2d(torch.from_numpy(logits)[None, None], 3, 1, 1),
        "decode: decode_logits (whole decode)": lambda: decode_logits(logits, 0.0, 20),
    }
    times = {k: [] for k in cases}
    for i in range(runs + 10):
        for name, fn in cases.items():
            t = time_call(fn)
            if i >= 10:
                times[name].append(t)
    print(f"\nablations, default HeatmapNet, {FRAME[0]}x{FRAME[1]}, one thread, {runs} interleaved runs "
          f"(decode: conf 0, 20 points, sub-pixel on)\n")
    print(render_table(["variant", "ms median", "ms p90"],
                [[k, f"{np.median(t):.2f}", f"{np.percentile(t, 90):.2f}"] for k, t in times.items()], markdown))


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
    p.add_argument("--layers", action="store_true", help="only: per-block times of the default HeatmapNet and its fast rewrite")
    p.add_argument("--ablations", action="store_true", help="only: time each inference trick tried (see SPEED_NOTES.md)")
    p.add_argument("--memory-row", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_row is not None:
        memory_child(args)
        return 0

    torch.set_num_threads(args.threads)
    if args.ablations:
        ablations(args.frames, args.markdown)
        return 0
    if args.layers:
        net = HeatmapNet().eval()
        x = torch.randn(1, 1, *FRAME)
        for model in (net, FastHeatmapNet(net)):
            results = layer_times(model, x)
            print(f"\n{type(model).__name__} (default args), {FRAME[0]}x{FRAME[1]}, {args.threads} thread(s), "
                  f"median of 100 (hooks add a little)\n")
            print(render_table(["block", "ms", "MFLOP"], [[n, f"{t:.2f}", f"{f:.1f}"] for n, t, f in results], args.markdown))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        factories, notes = build_rows(args, Path(folder))
        rows = [make() for make in factories]
        matmul, conv = machine_rates()
        times = time_rows(rows, test_frames(), args.frames)
        memory = [peak_memory(i, args) if not args.no_memory else (float("nan"),) * 2 for i in range(len(rows))]
        seed_ms = next(np.median(t) for row, t in zip(rows, times, strict=True) if row.name.startswith("seed"))
        lines = []
        for row, t, (peak, growth) in zip(rows, times, memory, strict=True):
            params, mflop, wbytes, abytes = count(row.net, row.example)
            params = row.params or params
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
        print(render_table(["model", "params", "MFLOP", "weights", "activations", "floor ms (matmul/conv)", "ms median", "ms p90",
                     "frames/s", "vs seed", "peak RSS MiB / after imports"], lines, args.markdown))
        if not args.no_batch:
            threads = os.cpu_count() or 1
            every, one = batch_throughput(rows, threads), batch_throughput(rows, 1)
            print(f"\nnetwork only, frames/s by batch size, {threads} threads (all cores) | 1 thread:\n")
            print(render_table(["model", *(f"batch {b}" for b in (1, 8, 32)), *(f"batch {b}, 1 thread" for b in (1, 8, 32))],
                        [[name, *(f"{fps[b]:.0f}" for b in (1, 8, 32)), *(f"{fps1[b]:.0f}" for b in (1, 8, 32))]
                         for (name, fps), (_, fps1) in zip(every, one, strict=True)], args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
