"""Speed of the model family (sizes n and s) against the seed article's net, end to end, on one CPU thread.

    python -m benchmarks.speed --markdown           # the full run: rows, targets, batch, memory, detect.py
    python -m benchmarks.speed --sizes-only --frames 20 --no-batch --no-memory --no-end-to-end   # smoke test
    python -m benchmarks.speed --markdown --candidates --frames 300
    python -m benchmarks.speed --layers             # per-block times of each size's HeatmapNet
    python -m benchmarks.speed --ablations          # each inference trick tried, alone
    python -m benchmarks.speed --training           # only: training throughput (crops/s) of n and s
    python -m benchmarks.speed --verifier           # only: the verifier's share of the time, by candidate count

Rows: each named size of the heatmap method (``simple_keypoint.backbone.SIZES``) and the
regression method (size s), each through the default path (``load_model(path)``: onnxruntime
on a CPU, on the cached export) and through PyTorch (``backend="torch"``), and the seed
article's net. The shipped files are used when they hold the size's widths (weights/heatmap.pt
= s, heatmap_n.pt = n, regression.pt = s), else an untrained net of that size: speed does not
depend on the weights, and the header line says which was timed.

Every row runs 256 x 320 gray frames (data/test images resized; random if absent) end to end:
standardise, network, NMS, top-k, sub-pixel fit, map back (``Localizer.predict`` on an in-memory
array); the seed row resizes to 360 x 480, copies to 3 channels and takes the argmax. Rows are
timed interleaved (frame i of every row before frame i+1), so load from other processes hits all
rows alike and the ratios stay meaningful on a shared machine. The targets of issue 12 (n >= 6x,
s >= 2x the seed net's speed, via the default path) are judged on those same-run ratios.

Columns: MFLOP = 2 x multiply-adds of conv/linear layers (torch.utils.flop_counter; element-wise
ops, upsampling and pooling are not counted); weights = bytes of parameters and buffers;
activations = bytes of every tensor the network writes per frame (views excluded); floor = MFLOP /
the GFLOP/s measured here for a 1024^2 matmul and for a representative 3x3 conv; ratio = seed
ms / row ms. Peak memory: VmHWM (the kernel's peak resident set, MiB; Linux) of a fresh process
per row that builds the model and runs 32 frames, and how much of it came after importing the
libraries (model, export, working memory). Not ru_maxrss: Linux keeps the parent's peak in it
across exec. End to end: ``detect.py --benchmark`` (reading, inference and writing overlapped)
on the data/test folder and on a short video made from its images, one thread for the model.

Training throughput: crops per second of the shipped recipe's parts on the real training data
(data/train, data/nudt-sirst/train, HIT-UAV clutter with pasted targets), torch's default threads as
training uses them: making crops (crop, paste, flips, noise, collation), one training step alone
(shaped targets, forward, loss, backward, AdamW), and both in a row as an epoch runs them; the
reference row is the previous recipe (s, 192 x 192 crops) in the same run.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.seed_nets import SEED_SIZE, SeedHeatmapNet, argmax_point, seed_input
from simple_keypoint.backbone import SIZES
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.heatmap.decode import decode_logits
from simple_keypoint.heatmap.model import FastHeatmapNet, HeatmapNet
from simple_keypoint.labels import atomic_write
from simple_keypoint.methods import build_model
from simple_keypoint.onnx_cache import cached_onnx
from simple_keypoint.onnx_session import onnx_session
from simple_keypoint.predict import Localizer, OnnxLocalizer, load_model, localizer_from_checkpoint, pad_to_multiple
from simple_keypoint.tables import render_table

FRAME = (256, 320)
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {("heatmap", "n"): "heatmap_n.pt", ("heatmap", "s"): "heatmap.pt", ("regression", "s"): "regression.pt"}
TARGETS = {"n": 6.0, "s": 2.0}  # issue 12: at least this many times the seed net's speed, via the default path
DEFAULT_PATH = "default"  # how the rows through load_model(path) are named
VIDEO_PASSES = 2  # the test images twice over: long enough that start-up does not dominate
CANDIDATES = {  # HeatmapNet constructor args timed with --candidates (untrained: speed only)
    "8-16-32-64 fr1": dict(widths=(8, 16, 32, 64), full_res_channels=1),
    "6-12-24-48 fr4": dict(widths=(6, 12, 24, 48), full_res_channels=4),
    "4-8-16-32 fr4": dict(widths=(4, 8, 16, 32), full_res_channels=4),
    "8-16-32 fr4": dict(widths=(8, 16, 32), full_res_channels=4),
    "8-24-48-96 fr4": dict(widths=(8, 24, 48, 96), full_res_channels=4),  # wider, for a net that underfits
    "16-32-64-128 fr4": dict(widths=(16, 32, 64, 128), full_res_channels=4),
}


class BenchmarkError(Exception):
    """A measurement could not be made (detect.py failed, no video writer ...)."""


@dataclass
class Row:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # a 256 x 320 frame -> points
    net: torch.nn.Module  # what the FLOPs and bytes are counted on
    example: torch.Tensor  # its input for one frame
    onnx_model: Path | bytes | None = None  # the ONNX file (or its bytes) an onnxruntime row runs
    params: int | None = None  # parameters of the model as trained, if ``net`` is an inference rewrite
    size: str | None = None  # the named size of a family row


@dataclass
class ModelFile:
    """A checkpoint of one method and size to time: the shipped one, or an untrained stand-in."""

    method: str
    size: str
    path: Path
    what: str  # e.g. "heatmap_n.pt" or "untrained (no heatmap_n.pt)"
    shipped: bool


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


def model_file(method: str, size: str, weights_dir: Path, folder: Path) -> ModelFile:
    """The shipped checkpoint of ``method`` at ``size`` if it holds that size's widths, else an
    untrained net of that size written to ``folder`` (seeded: the same bytes, so the same cached
    export, in every process)."""
    name = SHIPPED.get((method, size), f"{method}_{size}.pt")
    shipped, widths = weights_dir / name, SIZES[size]
    if shipped.is_file():
        stored = tuple(load_checkpoint(shipped).get("model_args", {}).get("widths", ()))
        if stored == widths:
            return ModelFile(method, size, shipped, name, True)
        why = f"{name} holds widths {'-'.join(map(str, stored))}"
    else:
        why = f"no {name}"
    torch.manual_seed(0)
    _, checkpoint = untrained(method, {"widths": widths})
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    path = folder / f"untrained_{method}_{size}.pt"
    atomic_write(path, buffer.getvalue())
    return ModelFile(method, size, path, f"untrained ({why})", False)


def family(args: argparse.Namespace, folder: Path) -> list[ModelFile]:
    """The checkpoints the table times: every heatmap size, then (unless --sizes-only) regression at s."""
    pairs = [("heatmap", size) for size in SIZES] + ([] if args.sizes_only else [("regression", "s")])
    return [model_file(method, size, Path(args.weights_dir), folder) for method, size in pairs]


def default_row(model: ModelFile, threads: int) -> Row:
    """``load_model(path)`` as a user calls it (onnxruntime on a CPU), counted on the PyTorch net."""
    loc = load_model(model.path, threads=threads)
    counted = torch_row("", localizer_from_checkpoint(load_checkpoint(model.path), "cpu", model.path))
    onnx_model = cached_onnx(model.path).model if loc.backend == "onnx" else None
    return Row(f"{model.method} {model.size}, {DEFAULT_PATH} ({'onnxruntime' if onnx_model else 'torch'})", loc.predict,
               counted.net, counted.example, onnx_model, counted.params, model.size)


def family_torch_row(model: ModelFile) -> Row:
    row = torch_row(f"{model.method} {model.size}, torch", load_model(model.path, device="cpu", backend="torch"))
    return replace(row, size=model.size)


def build_rows(args: argparse.Namespace, folder: Path) -> tuple[list[Callable[[], Row]], list[str], list[ModelFile]]:
    """Row factories (a memory-measuring process builds just its own row), notes on the models, and the models."""
    models = family(args, folder)
    rows: list[Callable[[], Row]] = []
    for model in models:
        rows += [lambda m=model: default_row(m, args.threads), lambda m=model: family_torch_row(m)]
    rows.append(seed_row)
    if args.candidates:
        for name, model_args in CANDIDATES.items():
            loc, checkpoint = untrained("heatmap", model_args)
            rows += [lambda n=name, loc=loc: torch_row(f"cand. {n}, torch", loc),
                     lambda n=name, loc=loc, c=checkpoint: onnx_row(f"cand. {n}, onnxruntime", loc, c, args.threads, folder)]
    notes = [f"{m.method} {m.size} ({'-'.join(map(str, SIZES[m.size]))}): {m.what}" for m in models]
    return rows, notes, models


def target_lines(rows: list[Row], medians: list[float]) -> list[list[str]]:
    """Issue 12's speed targets judged on one run: each size's default-path row against the seed row."""
    seed = next(ms for row, ms in zip(rows, medians, strict=True) if row.name.startswith("seed"))
    lines = []
    for size, wanted in TARGETS.items():
        found = [ms for row, ms in zip(rows, medians, strict=True)
                 if row.size == size and row.name.startswith("heatmap") and f", {DEFAULT_PATH} " in row.name]
        if not found:
            continue
        ratio = seed / found[0]
        lines.append([f"heatmap {size} ({DEFAULT_PATH} path) >= {wanted:g}x the seed net", f"{found[0]:.2f} ms vs {seed:.2f} ms",
                      f"{ratio:.1f}x", "pass" if ratio >= wanted else "FAIL"])
    return lines


def training_minutes(models: list[ModelFile]) -> list[list[str]]:
    """Epochs and training minutes (the sum of the epochs' seconds) stored in each shipped checkpoint."""
    lines = []
    for model in models:
        if not model.shipped:
            continue
        checkpoint = load_checkpoint(model.path)
        history = checkpoint.get("history") or []
        seconds = sum(float(h.get("seconds", 0.0)) for h in history)
        lines.append([model.what, str(len(history)), str(checkpoint.get("world_size", "not recorded")), f"{seconds / 60:.1f}"])
    return lines


def training_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, points: torch.Tensor,
                  counts: torch.Tensor) -> None:
    """One step of heatmap training as the shipped recipe's loss runs it (shaped targets, wmse)."""
    from simple_keypoint.heatmap.loss import heatmap_loss
    from simple_keypoint.heatmap.target import gaussian_heatmaps

    target = gaussian_heatmaps(points, counts, images.shape[-2], images.shape[-1], 1.5)
    loss = heatmap_loss(net(images.to(memory_format=torch.channels_last)), target, "wmse", 30.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def training_throughput(steps: int, batch: int = 8) -> list[list[str]]:
    """Crops/s of making crops, of the training step and of both, per (size, crop) of training,
    on the shipped recipe's data (see the module's docstring), and the seconds of one validation
    (150 images) and one mining pass (60 clutter frames); the first row is the reference."""
    from simple_keypoint.dataset import MixedCropDataset, cut_patches, load_clutter, load_dataset
    from simple_keypoint.evaluate import predict_all
    from simple_keypoint.methods import get_method
    from simple_keypoint.training import carve_validation, mine_false_alarms

    folders = [ROOT / "data" / "train", ROOT / "data" / "nudt-sirst" / "train"]
    try:
        read = [load_dataset(f, progress=False)[0] for f in folders]
        frames = load_clutter(ROOT / "data" / "hit-uav" / "train", progress=False)[0]
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"training data: {e}") from None
    split = {"val_fraction": 0.1, "seed": 0}  # training's defaults
    sets, val = [carve_validation(r, split)[0] for r in read], [s for r in read for s in carve_validation(r, split)[1]]
    clutter, clutter_val = carve_validation(frames, split)
    val += clutter_val
    patches = cut_patches([s for samples in sets for s in samples])
    rows, reference = [], None
    for size, crop in (("s", 192), ("s", 128), ("n", 128)):
        data = MixedCropDataset(sets, [0.5, 0.5], steps * batch, crop, 0, 0.5, False, clutter, 0.2, patches, 0.5,
                                0.5, spreads=True)
        loader = torch.utils.data.DataLoader(data, batch)
        started = time.perf_counter()
        batches = list(loader)
        making = time.perf_counter() - started
        torch.manual_seed(0)
        net = HeatmapNet(SIZES[size]).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

        for images, points, counts in batches[:3]:  # warm-up
            training_step(net, optimizer, images, points, counts)
        started = time.perf_counter()
        for images, points, counts in batches:
            training_step(net, optimizer, images, points, counts)
        training = time.perf_counter() - started
        net.eval()
        localizer = Localizer(get_method("heatmap"), net, conf=0.0, device="cpu", relative=False)
        started = time.perf_counter()
        predict_all(localizer, val)
        validating = time.perf_counter() - started
        started = time.perf_counter()
        mine_false_alarms(localizer, clutter, 60, np.random.default_rng(0))
        mining = time.perf_counter() - started
        crops = steps * batch
        both = crops / (making + training)
        reference = reference or both
        epoch = 2000 / both
        rows.append([f"heatmap {size}", f"{crop} x {crop}", f"{crops / making:.0f}", f"{crops / training:.0f}",
                     f"{both:.0f}", f"{both / reference:.2f}x", f"{validating:.1f} + {mining:.1f}",
                     f"{epoch + validating + mining:.1f}", f"{epoch + (validating + mining) / 5:.1f}"])
    return rows


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
        if "cand." in row.name:
            continue
        fps = {}
        session = onnx_session(row.onnx_model, threads) if row.onnx_model is not None else None
        for batch in (1, 8, 32):
            x = torch.randn(batch, *row.example.shape[1:])
            if session is not None:
                feed = {session.get_inputs()[0].name: x.numpy()}
                run = (lambda f=feed, s=session: s.run(None, f))
            else:
                run = (lambda x=x, n=row.net: n(x))
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
               "--threads", str(args.threads)] + [flag for flag, on in (("--candidates", args.candidates),
                                                                        ("--sizes-only", args.sizes_only)) if on]
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
        factories, _, _ = build_rows(args, Path(folder))
        row, frames = factories[args.memory_row](), test_frames()
        for frame in frames * 2:
            row.run(frame)
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        peak = int(status["VmHWM"].split()[0]) / 1024  # ru_maxrss would include the parent's peak (kept across exec)
        print(f"{peak:.1f} {peak - baseline:.1f}")


DETECT_LINE = re.compile(r"benchmark: (\d+) frame\(s\) in ([\d.]+) s end to end = ([\d.]+) frames/s; "
                         r"busy ms per frame: ([^(]*?) \(.*model alone would give ([\d.]+) frames/s")


def write_video(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    """A short gray-as-BGR video of ``frames`` (all FRAME-sized); mp4v, else MJPG in an .avi."""
    for fourcc, suffix in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        target = path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, FRAME[::-1])
        if writer.isOpened():
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            writer.release()
            if target.is_file() and target.stat().st_size > 0:
                return target
        writer.release()
    raise BenchmarkError(f"{path}: OpenCV could not write a video (neither mp4v nor MJPG)")


def detect_benchmark(weights: Path, source: Path, out: Path, threads: int) -> tuple[int, float, float, str]:
    """(frames, end-to-end frames/s, the model's own frames/s, busy ms per frame of each stage) of
    ``detect.py --benchmark`` on ``source``."""
    command = [sys.executable, "detect.py", "--weights", str(weights), "--source", str(source), "--out", str(out),
               "--exist-ok", "--quiet", "--benchmark", "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    found = DETECT_LINE.search(result.stdout)
    if found is None:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise BenchmarkError(f"detect.py on {source} with {weights.name} (exit {result.returncode}): {last}")
    return int(found[1]), float(found[3]), float(found[5]), found[4]


def end_to_end(models: list[ModelFile], rows: list[Row], medians: list[float], threads: int,
               folder: Path) -> list[list[str]]:
    """Folder and video frames/s of detect.py for each heatmap size, beside the network-only figures."""
    images = ROOT / "data/test/images"
    if not images.is_dir():
        raise BenchmarkError(f"{images}: no such folder (the end-to-end rows read it)")
    video = write_video(test_frames(len(list(images.iterdir()))) * VIDEO_PASSES, folder / "test_frames")
    table_fps = {row.size: 1e3 / ms for row, ms in zip(rows, medians, strict=True)
                 if row.name.startswith("heatmap") and f", {DEFAULT_PATH} " in row.name}
    lines = []
    for model in models:
        if model.method != "heatmap":
            continue
        for what, source in ((f"folder ({images.relative_to(ROOT)}, own sizes, with overlays + labels)", images),
                             (f"video ({video.suffix[1:]}, {FRAME[0]}x{FRAME[1]}, overlay video)", video)):
            frames, fps, model_fps, busy = detect_benchmark(model.path, source, folder / f"detect_{model.size}_{source.stem}",
                                                            threads)
            lines.append([f"heatmap {model.size}", what, str(frames), f"{fps:.0f}", f"{model_fps:.0f}",
                          f"{table_fps.get(model.size, float('nan')):.0f}", busy])
    return lines


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


def verifier_costs(weights_dir: Path, threads: int, runs: int) -> list[list[str]]:
    """For each shipped heatmap size carrying a verifier, on the default path: ms per frame with and
    without it (interleaved, two frame sizes, real frames resized), its share, and the verifier alone
    on 1 ... 32 candidate windows (what a frame with that many candidates adds)."""
    from simple_keypoint.heatmap.verifier import channels

    lines = []
    for name in ("heatmap.pt", "heatmap_n.pt"):
        path = weights_dir / name
        if not path.is_file() or not load_checkpoint(path).get("verifier"):
            continue
        full = load_model(path, threads=threads)
        alone = load_model(path, threads=threads)
        alone.verifier = None
        for size in ((256, 320), (512, 640)):
            frames = [cv2.resize(f, size[::-1], interpolation=cv2.INTER_LINEAR) for f in test_frames()]
            with_ms, without_ms = (float(np.median(t)) for t in time_rows(
                [Row("", full.predict, None, None), Row("", alone.predict, None, None)], frames, runs))
            counts = [len(full.candidates(full.standardised(f), full.verifier.candidate_conf,
                                          full.verifier.max_candidates)[0]) for f in frames]
            lines.append([f"{name} {size[0]}x{size[1]}", f"{without_ms:.2f}", f"{with_ms:.2f}",
                          f"{(with_ms - without_ms) / with_ms:.0%}", f"{np.mean(counts):.1f}", ""])
        size = full.verifier.size
        for n in (1, 8, 16, 32):
            batch = np.random.default_rng(0).standard_normal((n, channels(full.verifier.context), size, size)).astype(np.float32)
            ms = float(np.median([time_call(full.verifier.run, batch) for _ in range(runs)]))
            lines.append([f"{name} verifier alone", "", "", "", str(n), f"{ms:.2f}"])
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="threads for the per-frame timing (default: %(default)s)")
    p.add_argument("--frames", type=int, default=200, help="timed frames per row, after --warmup frames (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=20, help="untimed frames per row first (default: %(default)s)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (default: plain text)")
    p.add_argument("--candidates", action="store_true", help="also time candidate HeatmapNet configurations (untrained)")
    p.add_argument("--weights-dir", default=str(ROOT / "weights"),
                   help="where " + ", ".join(f"{f} ({m} {z})" for (m, z), f in SHIPPED.items()) + " are looked for "
                        "(default: %(default)s)")
    p.add_argument("--sizes-only", action="store_true",
                   help="only the heatmap sizes and the seed net (no regression rows): with --frames 20 --no-batch "
                        "--no-memory --no-end-to-end a smoke test")
    p.add_argument("--no-end-to-end", action="store_true", help="skip detect.py on the test folder and a video")
    p.add_argument("--no-batch", action="store_true", help="skip the all-cores batch throughput")
    p.add_argument("--no-memory", action="store_true", help="skip the per-row peak memory (one process per row)")
    p.add_argument("--layers", action="store_true", help="only: per-block times of each size's HeatmapNet and its fast rewrite")
    p.add_argument("--ablations", action="store_true", help="only: time each inference trick tried (see SPEED_NOTES.md)")
    p.add_argument("--verifier", action="store_true",
                   help="only: the verifier's share of each shipped model's time, and its cost per candidate count")
    p.add_argument("--training", action="store_true", help="only: training throughput (crops/s) of sizes n and s")
    p.add_argument("--training-steps", type=int, default=60, help="training steps (batch 8) timed per --training row")
    p.add_argument("--memory-row", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_row is not None:
        memory_child(args)
        return 0

    if args.training:  # before the one-thread setting below: training uses torch's default threads
        try:
            rows = training_throughput(args.training_steps)
        except BenchmarkError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"training throughput, batch 8, {torch.get_num_threads()} threads, {args.training_steps} steps per row; "
              f"load average (1 min) {os.getloadavg()[0]:.1f}:\n")
        print(render_table(["model", "crop", "crops/s making", "crops/s step", "crops/s both", "vs first row",
                            "s validation + mining", "s per 2000-crop epoch, validated every epoch",
                            "every 5th"], rows, args.markdown))
        return 0
    torch.set_num_threads(args.threads)
    if args.ablations:
        ablations(args.frames, args.markdown)
        return 0
    if args.verifier:
        print(f"default path, {args.threads} thread(s), median of {args.frames} frames, interleaved; load average (1 min) "
              f"{os.getloadavg()[0]:.1f}\n")
        print(render_table(["model, frame", "ms without verifier", "ms with", "verifier's share", "candidates (mean)",
                            "ms verifier alone"], verifier_costs(Path(args.weights_dir), args.threads, args.frames),
                           args.markdown))
        return 0
    if args.layers:
        x = torch.randn(1, 1, *FRAME)
        for size, widths in SIZES.items():
            net = HeatmapNet(widths).eval()
            for model in (net, FastHeatmapNet(net)):
                results = layer_times(model, x)
                print(f"\n{type(model).__name__} size {size} ({'-'.join(map(str, widths))}), {FRAME[0]}x{FRAME[1]}, "
                      f"{args.threads} thread(s), median of 100 (hooks add a little)\n")
                print(render_table(["block", "ms", "MFLOP"], [[n, f"{t:.2f}", f"{f:.1f}"] for n, t, f in results], args.markdown))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        factories, notes, models = build_rows(args, Path(folder))
        rows = [make() for make in factories]
        matmul, conv = machine_rates()
        load_before = os.getloadavg()
        times = time_rows(rows, test_frames(), args.frames, args.warmup)
        load = os.getloadavg()
        medians = [float(np.median(t)) for t in times]
        memory = [peak_memory(i, args) if not args.no_memory else (float("nan"),) * 2 for i in range(len(rows))]
        seed_ms = next(ms for row, ms in zip(rows, medians, strict=True) if row.name.startswith("seed"))
        lines = []
        for row, t, ms, (peak, growth) in zip(rows, times, medians, memory, strict=True):
            params, mflop, wbytes, abytes = count(row.net, row.example)
            params = row.params or params
            lines.append([row.name, f"{params:,}", f"{mflop:.0f}", f"{wbytes / 1024:.0f} KiB", f"{abytes / 2**20:.1f} MiB",
                          f"{mflop / matmul:.2f} / {mflop / conv:.2f}", f"{ms:.2f}",
                          f"{np.percentile(t, 90):.2f}", f"{1e3 / ms:.0f}", f"{seed_ms / ms:.1f}x"]
                         + ([] if args.no_memory else [f"{peak:.0f} / +{growth:.0f}"]))
        print(f"{args.frames} frames of {FRAME[0]}x{FRAME[1]} per row, {args.threads} thread(s), interleaved; "
              f"torch {torch.__version__}; {os.cpu_count()} cores, load average (1 min) {load_before[0]:.1f} before "
              f"and {load[0]:.1f} after the timing (other processes share this machine)")
        print(f"this machine, {args.threads} thread(s): matmul 1024^2 {matmul:.0f} GFLOP/s, conv3x3 16->16 @64x80 {conv:.0f} GFLOP/s")
        print("models: " + "; ".join(notes) + "\n")
        print(render_table(["model", "params", "MFLOP", "weights", "activations", "floor ms (matmul/conv)", "ms median", "ms p90",
                            "frames/s", "vs seed"] + ([] if args.no_memory else ["peak RSS MiB / after imports"]),
                           lines, args.markdown))
        print("\ntargets of issue 12 (same run, one thread, 256x320, decode included):\n")
        print(render_table(["target", "ms median", "measured", "result"], target_lines(rows, medians), args.markdown))
        trained = training_minutes(models)
        if trained:
            print("\nshipped runs: training time stored in the checkpoints (sum of the epochs' wall seconds):\n")
            print(render_table(["checkpoint", "epochs", "processes", "minutes"], trained, args.markdown))
        if not args.no_batch:
            threads = os.cpu_count() or 1
            every, one = batch_throughput(rows, threads), batch_throughput(rows, 1)
            print(f"\nnetwork only, frames/s by batch size, {threads} threads (all cores) | 1 thread:\n")
            print(render_table(["model", *(f"batch {b}" for b in (1, 8, 32)), *(f"batch {b}, 1 thread" for b in (1, 8, 32))],
                        [[name, *(f"{fps[b]:.0f}" for b in (1, 8, 32)), *(f"{fps1[b]:.0f}" for b in (1, 8, 32))]
                         for (name, fps), (_, fps1) in zip(every, one, strict=True)], args.markdown))
        if not args.no_end_to_end:
            try:
                e2e = end_to_end(models, rows, medians, args.threads, Path(folder))
            except BenchmarkError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            print(f"\nend to end, detect.py --benchmark --threads {args.threads} (reading, inference, writing overlapped; "
                  f"default path), load average {os.getloadavg()[0]:.1f}:\n")
            print(render_table(["model", "source", "frames", "frames/s end to end", "frames/s model alone (detect.py)",
                                "frames/s network table (256x320)", "busy ms per frame (stages overlap)"], e2e, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
