"""The published peer beside us: RepISD-Net (Wu et al., IEEE TGRS 2023) on our test splits, scored by
our own 3 px one-to-one scorer, and timed on one thread interleaved with the shipped models.

    python -m benchmarks.peers --peer-repisd /path/to/RepISD-Net --markdown      # every table (~15 min on 2 cores)
    SIMPLE_KEYPOINT_PEER_REPISD=/path/to/RepISD-Net python -m benchmarks.peers   # the same, folder from the environment
    python -m benchmarks.peers --peer-repisd PATH --no-accuracy                   # the timing table only (~1 min)

The peer is not part of this repository. Its code has no licence, so neither its code nor its weights
are copied here: the benchmark imports ``model/RepISD.py`` from a clone the user names (git clone
https://github.com/dalinlin-Wu/RepISD-Net, commit 490fc46) and loads that clone's deploy weights
``result/NUAA/deploy.pth.tar`` (trained on SIRST's train split, as ours are). With no folder named
it prints one line and exits 0.

The peer as its own test script runs it: the image file read as RGB (PIL), scaled to [0, 1] and
normalised with its test mean and std; channel 1 of its output (the net ends in a sigmoid) is the
target probability, thresholded at 0.9 (its Pd/Fa threshold). Points: one per 8-connected component
of the map >= 0.9, at the component's probability-weighted centroid, scored by the component's
peak. For AP, every component of the map >= a low floor that holds no pixel >= 0.9 adds a point the
same way, so the points at 0.9 are exactly the thresholded map's components and AP still ranks the
weaker ones. Inputs: "native" (the frame as stored, full resolution, as our models see it; padded
bottom/right to a multiple of 4 as ours are padded to their stride); and on SIRST test also its test
script's protocol (resized to 256x256; the points mapped back to the frame's pixels, where they are
scored). NUDT-SIRST test frames are 256x256 already.

Our models: weights/heatmap.pt (s) and weights/heatmap_n.pt (n) through ``load_model``'s default path
at their stored thresholds, scored by benchmarks.accuracy's own code (``load_scored``,
``score_on_sets``, ``false_alarm_summary``; ``simple_keypoint.evaluate.score`` is the scorer of both).

Sets: SIRST test and NUDT-SIRST test (AP@3px, Pd, false alarms per image, mean error), and HIT-UAV test
as target-free frames (other objects' boxes blocked) at 640x512 and enlarged 2x to 1280x1024
(bilinear, as benchmarks.accuracy and benchmarks.thresholds enlarge them): false alarms per frame.

Timing: one thread (``torch.set_num_threads(1)``; ours through the default path with onnxruntime on
1 intra-op thread), a decoded 8-bit frame in memory (as cv2.imread gives it) -> points, the rows
interleaved frame by frame, median over repeats; 256x256 (NUDT-SIRST test frames) and 512x640
(HIT-UAV test frames).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from benchmarks.accuracy import (
    CLUTTER_TEST,
    SHIPPED_HEATMAPS,
    TARGET_FREE_COLUMNS,
    TEST_SETS,
    BenchmarkError,
    Scored,
    dataset_table,
    false_alarm_summary,
    load_scored,
    load_sets,
    read_whole,
    resized_up,
    resolve,
    score_on_sets,
    write_json,
)
from simple_keypoint.dataset import Sample, load_clutter
from simple_keypoint.evaluate import ImageResult, predict_all, score
from simple_keypoint.tables import format_cell, render_table

PEER_ENV = "SIMPLE_KEYPOINT_PEER_REPISD"
PEER_NAME = "RepISD-Net"
PEER_MODULE = "model/RepISD.py"
PEER_WEIGHTS = "result/NUAA/deploy.pth.tar"
# Its test script: dataset/nuaa.py's test_transform, and utils/metrics.py's PD_FA threshold.
PEER_MEAN = np.array([0.4287, 0.4290, 0.4314], np.float32)
PEER_STD = np.array([0.2277, 0.2276, 0.2292], np.float32)
PEER_THRESHOLD = 0.9
PEER_STRIDE = 4  # two 2x max-poolings
PEER_TEST_SIZE = 256  # its test script resizes every frame to 256x256 (base_size)
# Below it a component is noise (the map's background sits near 1e-6); above it AP sees the weak
# components a lower threshold would keep.
PEER_FLOOR = 0.01
PROTOCOL_SET = "SIRST test"  # the set of frames of many sizes, where its 256x256 protocol differs from native
TIMING_FRAMES = {"256x256": "data/nudt-sirst/test/images", "512x640": "data/hit-uav/test/images"}
TIMING_REFERENCE = "heatmap s"  # the ratio column divides by this row's time
SUMMARY_COLUMNS = ["AP@3px", "Pd@3px", "FA/img@3px", "err_mean@3px"]


# ---------------------------------------------------------------- probability map -> points

def component_points(probability: np.ndarray, threshold: float = PEER_THRESHOLD, floor: float = PEER_FLOOR
                     ) -> np.ndarray:
    """Points ``(u, v, score)`` (N, 3), best first, from a probability map: one per 8-connected
    component of the map >= ``threshold``, and one per component of the map >= ``floor`` that holds
    no pixel >= ``threshold``; each at its component's probability-weighted centroid (pixel-index
    coordinates), scored by its peak. The points scoring >= ``threshold`` are exactly the
    thresholded map's components, whatever the floor."""
    probability = np.asarray(probability, np.float32)
    strong = probability >= threshold
    parts = [_weighted_centroids(probability, strong)]
    if floor < threshold:
        count, labels = cv2.connectedComponents((probability >= floor).astype(np.uint8), connectivity=8)
        holds_strong = np.zeros(count, bool)
        holds_strong[labels[strong]] = True
        parts.append(_weighted_centroids(probability, (labels > 0) & ~holds_strong[labels]))
    points = np.vstack(parts)
    return points[np.argsort(-points[:, 2], kind="stable")]


def _weighted_centroids(probability: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``(u, v, peak)`` of every 8-connected component of ``region``, weighted by ``probability``."""
    count, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros((0, 3))
    rows, cols = np.nonzero(labels)
    ids, weights = labels[rows, cols], probability[rows, cols].astype(np.float64)
    total = np.bincount(ids, weights, minlength=count)[1:]
    u = np.bincount(ids, weights * cols, minlength=count)[1:] / total
    v = np.bincount(ids, weights * rows, minlength=count)[1:] / total
    peak = np.zeros(count)
    np.maximum.at(peak, ids, weights)
    return np.column_stack([u, v, peak[1:]])


# ---------------------------------------------------------------- the peer

def peer_folder(named: str | None) -> Path | None:
    """The peer's folder: ``--peer-repisd``, else $SIMPLE_KEYPOINT_PEER_REPISD, else None."""
    value = named if named is not None else os.environ.get(PEER_ENV, "")
    return Path(value).expanduser() if value.strip() else None


def load_repisd(folder: Path) -> torch.nn.Module:
    """RepISD-Net in its inference form, built from the clone in ``folder`` with its deploy weights."""
    for needed in (PEER_MODULE, PEER_WEIGHTS):
        if not (folder / needed).is_file():
            raise BenchmarkError(f"{folder}: no {needed} (expected a clone of github.com/dalinlin-Wu/RepISD-Net)")
    # Its modules import each other as top-level packages ("model.Unet"), so the clone goes on the path.
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("model.RepISD")
    except ImportError as e:
        raise BenchmarkError(f"{folder / PEER_MODULE}: cannot be imported ({e})") from None
    finally:
        sys.path.remove(str(folder))
    if Path(module.__file__).resolve() != (folder / PEER_MODULE).resolve():
        raise BenchmarkError(f"'model.RepISD' was already imported from {module.__file__}, not from {folder}")
    net = module.RepISD(None, bins=(1, 2, 3, 6), dropout=0.1, classes=2, convert=True, deploy=True)
    net.load_state_dict(torch.load(folder / PEER_WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()


@dataclass
class PeerModel:
    """A probability-map net run as its authors' test script runs it, its map turned into points."""

    net: Callable[[torch.Tensor], torch.Tensor]
    test_size: int | None = None  # None: the frame as stored; else resized to test_size^2 first
    conf: float = PEER_THRESHOLD
    floor: float = PEER_FLOOR

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """Channel 1 of the net's output for an H x W x 3 uint8 RGB frame."""
        h, w = rgb.shape[:2]
        x = (rgb.astype(np.float32) / 255.0 - PEER_MEAN) / PEER_STD
        # Its two 2x poolings floor odd sizes and its decoder then re-centres the coarse maps, half a
        # pixel off; like ours (pad_to_multiple) the frame is padded bottom/right with the normalised
        # mean, 0, to a multiple of PEER_STRIDE, and the map cropped back. A no-op at 256x256 and 640x512.
        x = np.pad(x, ((0, -h % PEER_STRIDE), (0, -w % PEER_STRIDE), (0, 0)))
        with torch.inference_mode():
            out = self.net(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])))
        return out[0, 1, :h, :w].numpy()

    def predict_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """Points ``(u, v, score)`` in the frame's pixel coordinates, best first."""
        h, w = rgb.shape[:2]
        if self.test_size is None:
            return component_points(self.probability(rgb), self.conf, self.floor)
        from PIL import Image  # its test script resizes with PIL (antialiased bilinear); matplotlib depends on PIL

        size = self.test_size
        points = component_points(self.probability(np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))),
                                  self.conf, self.floor)
        points[:, 0] = (points[:, 0] + 0.5) * w / size - 0.5  # pixel centres scale as (u + 0.5) * scale - 0.5
        points[:, 1] = (points[:, 1] + 0.5) * h / size - 0.5
        return points


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The file as the peer's dataset reads it: PIL, converted to RGB (a gray file: its value thrice)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def sample_file(sample: Sample) -> Path:
    """The image file a sample was read from (load_dataset and load_clutter keep ``source/images/name``)."""
    return Path(sample.source) / "images" / sample.name


def peer_results(peer: PeerModel, scored: Sequence[Sample], originals: Sequence[Sample], enlarge: int = 1,
                 progress: bool = True) -> list[ImageResult]:
    """The peer's points on each frame, as :func:`simple_keypoint.evaluate.predict_all` gives ours:
    ``scored`` carries the truth and blocked pixels, ``originals`` (the same frames as read) name the
    files, which the peer reads again as RGB (our samples hold standardised gray). ``enlarge``: the frames
    resized up as :func:`simple_keypoint.dataset.resized_up` resizes ``scored``'s (bilinear)."""
    results = []
    frames = zip(scored, originals, strict=True)
    for sample, original in tqdm(frames, total=len(scored), desc=PEER_NAME, unit="frame", leave=False, disable=not progress):
        rgb = read_rgb(sample_file(original))
        if enlarge != 1:
            h, w = rgb.shape[:2]
            rgb = cv2.resize(rgb, (w * enlarge, h * enlarge), interpolation=cv2.INTER_LINEAR)
        pred = peer.predict_rgb(rgb)
        # As predict_all counts them: blocked pixels are neither hit nor false alarm, nor area.
        pixels = int(np.prod(rgb.shape[:2])) if sample.blocked is None else int(np.count_nonzero(~sample.blocked))
        results.append(ImageResult(sample.name, sample.points, sample.unblocked(pred), pixels))
    return results


# ---------------------------------------------------------------- accuracy

def peer_label(peer: PeerModel) -> str:
    protocol = "native size" if peer.test_size is None else f"its {peer.test_size}x{peer.test_size} test protocol"
    return f"{PEER_NAME} ({Path(PEER_WEIGHTS).name}, {protocol}), threshold {peer.conf:.2f}"


def accuracy(net: torch.nn.Module, heatmaps: Sequence[str], log: Callable[[str], None],
             sets: Sequence[str] | None = None, ground: bool = True) -> dict[str, Any]:
    """``{"per_dataset": {set: {row: metrics}}, "target_free": {row: {check: summary}}}`` for our
    models (benchmarks.accuracy's code path) and the peer (native, and its protocol on PROTOCOL_SET).
    ``sets``: the test sets by name (default all); ``ground``: also the HIT-UAV target-free frames."""
    test_sets = load_sets({name: folder for name, folder in TEST_SETS.items() if sets is None or name in sets})
    clutter = read_whole(load_clutter, CLUTTER_TEST) if ground else []
    h, w = clutter[0].image.shape if clutter else (0, 0)
    checks = ({f"HIT-UAV test {w}x{h}": (clutter, 1), f"HIT-UAV test x2 ({2 * w}x{2 * h})": (resized_up(clutter), 2)}
              if ground else {})
    out: dict[str, Any] = {"per_dataset": {name: {} for name in test_sets}, "target_free": {}}
    for path in heatmaps:
        entry: Scored = load_scored(path)
        log(f"{entry.name}: test sets and target-free frames")
        for name, row in score_on_sets(entry, test_sets)[0].items():
            out["per_dataset"][name][entry.name] = row
        out["target_free"][entry.name] = {check: false_alarm_summary(predict_all(entry.model, frames), entry.model.conf)
                                          for check, (frames, _) in checks.items()}
    native, protocol = PeerModel(net), PeerModel(net, test_size=PEER_TEST_SIZE)
    for name, samples in test_sets.items():
        for peer in (native, protocol) if name == PROTOCOL_SET else (native,):
            log(f"{peer_label(peer)}: {name} ({len(samples)} frames)")
            started = time.perf_counter()
            out["per_dataset"][name][peer_label(peer)] = score(peer_results(peer, samples, samples), peer.conf)
            log(f"  {time.perf_counter() - started:.0f} s")
    out["target_free"][peer_label(native)] = {}
    for check, (frames, factor) in checks.items():
        log(f"{peer_label(native)}: {check} ({len(frames)} frames)")
        results = peer_results(native, frames, clutter, enlarge=factor)
        out["target_free"][peer_label(native)][check] = false_alarm_summary(results, native.conf)
    return out


def summary_table(out: Mapping[str, Any], markdown: bool) -> str:
    """One line per model: each test set's AP / Pd / FA per image / mean error, and the target-free
    frames' false alarms per frame, each at the model's own threshold."""
    sets = list(out["per_dataset"])
    checks = list(next(iter(out["target_free"].values()), {}))
    models = list(dict.fromkeys(m for rows in out["per_dataset"].values() for m in rows))
    lines = []
    for model in models:
        cells = [model]
        for name in sets:
            row = out["per_dataset"][name].get(model)
            cells.append(" / ".join(format_cell(row[c]) for c in SUMMARY_COLUMNS) if row else "-")
        for check in checks:
            row = out["target_free"].get(model, {}).get(check)
            cells.append(format_cell(row["FA/frame"]) if row else "-")
        lines.append(cells)
    headers = ["model, threshold", *(f"{name}: AP@3px / Pd / FA/img / err px" for name in sets),
               *(f"{check}: FA/frame" for check in checks)]
    return render_table(headers, lines, markdown)


def target_free_table(out: Mapping[str, Any], markdown: bool) -> str:
    lines = [[model, check, *(format_cell(row[c]) for c in TARGET_FREE_COLUMNS)]
             for model, checks in out["target_free"].items() for check, row in checks.items()]
    return render_table(["model", "target-free frames", *TARGET_FREE_COLUMNS], lines, markdown)


# ---------------------------------------------------------------- one-thread time

def timing_frames(folder: str, count: int) -> list[np.ndarray]:
    """The first ``count`` files of ``folder`` decoded as cv2.imread gives them (8-bit BGR)."""
    files = sorted(p for p in resolve(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))[:count]
    if not files:
        raise BenchmarkError(f"{folder}: no frames to time")
    return [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]


def timing(net: torch.nn.Module, heatmaps: Sequence[str], repeats: int, warmup: int,
           log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Median ms per frame on one thread, ``{row: {frame size: ms}}``: each of our models through
    the default path (onnxruntime, 1 thread) and the peer at native size, interleaved frame by frame."""
    from simple_keypoint.predict import load_model

    torch.set_num_threads(1)
    peer = PeerModel(net)
    rows: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for path in heatmaps:
        entry = load_scored(path)
        model = load_model(entry.path, threads=1)
        rows[entry.name.split(" (")[0] + f", default path ({model.backend}, 1 thread)"] = model.predict
    rows[f"{PEER_NAME}, PyTorch (1 thread)"] = lambda bgr: peer.predict_rgb(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    out: dict[str, dict[str, float]] = {name: {} for name in rows}
    for size, folder in TIMING_FRAMES.items():
        frames = timing_frames(folder, repeats)
        log(f"timing {size}: {len(rows)} rows x {warmup} + {repeats} frames, load average {os.getloadavg()[0]:.2f}")
        times: dict[str, list[float]] = {name: [] for name in rows}
        for i in range(warmup + repeats):
            for name, run in rows.items():
                started = time.perf_counter()
                run(frames[i % len(frames)])
                if i >= warmup:
                    times[name].append((time.perf_counter() - started) * 1e3)
        for name, values in times.items():
            out[name][size] = float(np.median(values))
    return out


def timing_table(times: Mapping[str, Mapping[str, float]], markdown: bool) -> str:
    reference = next((times[name] for name in times if name.startswith(TIMING_REFERENCE + ",")), None)
    sizes = list(TIMING_FRAMES)
    lines = []
    for name, row in times.items():
        cells = [name]
        for size in sizes:
            cells.append(f"{row[size]:.1f}")
            cells.append(f"{row[size] / reference[size]:.1f}x" if reference else "-")
        lines.append(cells)
    headers = ["model (frame in memory -> points)",
               *(h for size in sizes for h in (f"{size} ms median", f"{size} vs {TIMING_REFERENCE}"))]
    return render_table(headers, lines, markdown)


# ---------------------------------------------------------------- the benchmark

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--peer-repisd", default=None, metavar="PATH",
                   help=f"a clone of github.com/dalinlin-Wu/RepISD-Net (else ${PEER_ENV}; neither: skipped)")
    p.add_argument("--heatmap", nargs="+", default=[path for path in SHIPPED_HEATMAPS if resolve(path).is_file()],
                   help="our heatmap checkpoints beside it (the default: the shipped n and s that exist)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for the accuracy part (0: torch's default); the timing table always uses 1")
    p.add_argument("--no-accuracy", action="store_true", help="only the timing table")
    p.add_argument("--no-timing", action="store_true", help="only the accuracy tables")
    p.add_argument("--sets", nargs="+", choices=list(TEST_SETS), default=None, metavar="SET",
                   help=f"test sets to score (default: all of {', '.join(TEST_SETS)})")
    p.add_argument("--no-ground", action="store_true", help="skip the HIT-UAV target-free frames (the peer's slowest part)")
    p.add_argument("--repeats", type=int, default=11, help="timed frames per size (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames per size first")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/results.md)")
    p.add_argument("--json", type=Path, default=None, help="also write every measured row here")
    args = p.parse_args(argv)
    folder = peer_folder(args.peer_repisd)
    if folder is None:
        print(f"skipped: no {PEER_NAME} folder named (--peer-repisd PATH or ${PEER_ENV})")
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out: dict[str, Any] = {"load average before": os.getloadavg()[0]}
    try:
        net = load_repisd(folder)
        if not args.no_timing:  # first: the shortest part, so the machine's state is the one just checked
            threads = torch.get_num_threads()
            out["timing"] = timing(net, args.heatmap, args.repeats, args.warmup, log)
            torch.set_num_threads(threads)  # the accuracy part on every core: its figures do not depend on it
        if not args.no_accuracy:
            if args.threads > 0:
                torch.set_num_threads(args.threads)
            out.update(accuracy(net, args.heatmap, log, args.sets, not args.no_ground))
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out["load average after"] = os.getloadavg()[0]
    parts = [f"{PEER_NAME} from {folder} beside our models (load average {out['load average before']:.2f} before, "
             f"{out['load average after']:.2f} after; {os.cpu_count()} cores)"]
    if "per_dataset" in out:
        parts += ["Each model at its own threshold (points within 3 px; HIT-UAV test frames are target-free)",
                  summary_table(out, args.markdown),
                  "Per data set", dataset_table(out["per_dataset"], args.markdown),
                  "Target-free frames (false alarms at each model's threshold; blocked pixels not counted)",
                  target_free_table(out, args.markdown)]
    if "timing" in out:
        parts += [f"One thread, median of {args.repeats} frames per size, rows interleaved",
                  timing_table(out["timing"], args.markdown)]
    print("\n\n".join(parts))
    if args.json and not write_json(args.json, out):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
