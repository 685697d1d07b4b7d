"""Train the verifier of a heatmap checkpoint: the second look at every candidate peak.

    python -m simple_keypoint.heatmap.train_verifier --weights heatmap \\
        --data data/train data/nudt-sirst/train DRONE/train --val DRONE/val --clutter data/hit-uav/train

Steps, top to bottom:
  1. data: every ``--data`` image and ``--clutter`` frame (also enlarged 2x, as large ground frames
     look) goes through the heatmap model once; each candidate peak (score >= ``candidate_conf``,
     at most ``max_candidates`` per frame) becomes a window, labelled target if it is within 3 px of a
     labelled point (one-to-one, as the scorer matches), else clutter. Folders the heatmap model was
     trained on are split as its training split them, so its validation images stay unseen; other
     folders train whole; ``--val`` folders validate whole.
  2. model: :class:`~simple_keypoint.heatmap.verifier.VerifierNet`.
  3. one epoch: batches with a fixed share of targets, flipped and shifted by up to ``jitter`` px.
  4. validate: every validation candidate rescored; AP@3px per folder, and the lowest threshold that
     keeps every target-free folder within ``max_false_per_mpx`` and every labelled one within
     ``max_false_per_image`` (:func:`pick_by_budgets`).
  5. save: the heatmap checkpoint with the verifier's weights and settings added and that
     threshold as its ``decode.conf``, written atomically as ``OUT/best.pt`` (best mean AP) and
     ``OUT/last.pt``; ``OUT/config.json`` and ``OUT/log.csv`` beside them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_bytes, save_checkpoint
from simple_keypoint.dataset import DatasetError, Sample, load_clutter, load_dataset, resized_up
from simple_keypoint.evaluate import ImageResult, match, score
from simple_keypoint.heatmap.verifier import WINDOW, VerifierNet, channels, torch_runner, windows
from simple_keypoint.options import HelpFormatter, number
from simple_keypoint.paths import DefaultPathError, resolve_weights
from simple_keypoint.predict import Localizer, load_model
from simple_keypoint.training import carve_validation, stored_folder

RUN_FILES = ("best.pt", "last.pt", "config.json", "log.csv")  # what a run writes into --out
RADIUS = 3.0  # a candidate within this many px of a labelled point is a target (the scorer's radius)


class VerifierDataError(ValueError):
    """Training data the verifier cannot learn from; the message says why."""


@dataclass
class VerifierConfig:
    weights: str = "heatmap"  # the heatmap checkpoint whose candidates are verified
    data: list[str] = field(default_factory=lambda: ["data/train", "data/nudt-sirst/train"])
    val: list[str] = field(default_factory=list)
    clutter: list[str] = field(default_factory=lambda: ["data/hit-uav/train"])
    clutter_scales: list[int] = field(default_factory=lambda: [1, 2])
    out: str = "runs/verifier"
    exist_ok: bool = False  # replace a run's files already in ``out``
    candidate_conf: float = 0.1
    max_candidates: int = 32
    window: int = WINDOW
    context: int = 1  # > 1: also a window this many times wider, shrunk to the same size
    widths: list[int] = field(default_factory=lambda: [8, 16, 32])
    jitter: int = 2
    epochs: int = 60
    windows_per_epoch: int = 16384
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    target_share: float = 0.25
    # The threshold's budget on each target-free validation set: about the ground-clutter goal of
    # 0.02 false alarms per 640x512 frame and 0.1 per 1280x1024 frame, per megapixel.
    max_false_per_mpx: float = 0.07
    max_false_per_image: float = 0.05  # and on each validation set with targets
    seed: int = 0
    threads: int = 0  # 0: torch's default
    cache: str = "runs/verifier_cache"  # mined candidates, reused by runs with the same weights and data ("": none)
    weights_sha256: str = ""  # filled in from the weights file


@dataclass
class Candidates:
    """Windows around one set's candidates, with what is needed to score them again per frame."""

    name: str
    inputs: np.ndarray  # (N, C, window + 2 jitter, same) float16
    is_target: np.ndarray  # (N,) bool
    points: np.ndarray  # (N, 3) u, v, heatmap score
    frame: np.ndarray  # (N,) index into ``frames``
    frames: list[ImageResult] = field(default_factory=list)  # truth and pixel count; pred filled when scored


# ---------------------------------------------------------------------------------------------
# 1. data

def read_folder(folder: str, clutter: bool) -> list[Sample]:
    samples, report = (load_clutter if clutter else load_dataset)(stored_folder(folder), progress=False)
    print("\n".join(report.lines()))
    return samples


def split_like_heatmap(samples: list[Sample], folder: str, heatmap_args: dict[str, Any]) -> tuple[list[Sample], list[Sample]]:
    """(train, val) of a folder: the heatmap run's own split if it trained on that folder, else all train."""
    trained_on = [str(f) for f in (heatmap_args.get("data") or []) + (heatmap_args.get("clutter") or [])]
    if folder in trained_on and not heatmap_args.get("val"):
        return carve_validation(samples, heatmap_args)
    return samples, []


def mine(model: Localizer, name: str, samples: list[Sample], cfg: VerifierConfig) -> Candidates:
    """Every candidate of every frame of ``samples`` as a window (with room for the jitter); kept in
    ``cache`` (an .npz named by everything that decides it) for the next run."""
    size = cfg.window + 2 * cfg.jitter
    key = hashlib.sha256(json.dumps([cfg.weights_sha256, name, [s.name for s in samples], cfg.candidate_conf,
                                     cfg.max_candidates, size] + ([cfg.context] if cfg.context > 1 else [])).encode()).hexdigest()[:20]
    path = Path(cfg.cache) / f"{key}.npz" if cfg.cache else None
    if path is not None and path.is_file():
        z = np.load(path)
        frames = [ImageResult(s.name, s.points, np.zeros((0, 3)), int(p)) for s, p in zip(samples, z["pixels"], strict=True)]
        return Candidates(name, z["inputs"], z["is_target"], z["points"], z["frame"], frames)
    inputs, is_target, points, frame_of, frames = [], [], [], [], []
    for s in tqdm(samples, desc=f"candidates {name}", leave=False, mininterval=10):
        pred, seen, logits = model.candidates(s.image, cfg.candidate_conf, cfg.max_candidates)
        if seen.shape != s.image.shape:
            raise ValueError(f"{s.name}: larger than the model's max_side; not supported for training")
        pred = s.unblocked(pred)
        matched, _ = match(pred, s.points, RADIUS)
        pixels = s.image.size if s.blocked is None else int(np.count_nonzero(~s.blocked))
        frame_of.append(np.full(len(pred), len(frames)))
        frames.append(ImageResult(s.name, s.points, np.zeros((0, 3)), pixels))
        inputs.append(windows(seen, logits, pred, size, cfg.context).astype(np.float16))
        is_target.append(matched >= 0)
        points.append(pred)
    out = Candidates(name, np.concatenate(inputs), np.concatenate(is_target), np.concatenate(points),
                     np.concatenate(frame_of), frames)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, inputs=out.inputs, is_target=out.is_target, points=out.points, frame=out.frame,
                 pixels=np.array([f.pixels for f in frames]))
    return out


def load_candidates(model: Localizer, cfg: VerifierConfig, heatmap_args: dict[str, Any]) -> tuple[list[Candidates], list[Candidates]]:
    train, val = [], []
    for folder in cfg.data:
        fit, held = split_like_heatmap(read_folder(folder, clutter=False), folder, heatmap_args)
        train.append(mine(model, folder, fit, cfg))
        if held:
            val.append(mine(model, folder, held, cfg))
    for folder in cfg.val:
        val.append(mine(model, folder, read_folder(folder, clutter=False), cfg))
    for folder in cfg.clutter:
        fit, held = split_like_heatmap(read_folder(folder, clutter=True), folder, heatmap_args)
        for factor in cfg.clutter_scales:
            tag = f"{folder} x{factor}" if factor != 1 else folder
            train.append(mine(model, tag, fit if factor == 1 else resized_up(fit, factor), cfg))
            if held:
                val.append(mine(model, tag, held if factor == 1 else resized_up(held, factor), cfg))
    return train, val


# ---------------------------------------------------------------------------------------------
# 3. one epoch

def crop(inputs: np.ndarray, jitter: int, rng: np.random.Generator | None) -> np.ndarray:
    """The centre window, or (``rng``) each shifted by up to ``jitter`` px and flipped left-right at random."""
    n, size = len(inputs), inputs.shape[-1] - 2 * jitter
    if rng is None:
        return inputs[:, :, jitter:jitter + size, jitter:jitter + size].astype(np.float32)
    out = np.empty((n, inputs.shape[1], size, size), np.float32)
    dx, dy = rng.integers(0, 2 * jitter + 1, n), rng.integers(0, 2 * jitter + 1, n)
    for i in range(n):
        out[i] = inputs[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, :, ::-1]
    return out


def train_epoch(net: VerifierNet, optimizer: torch.optim.Optimizer, train: list[Candidates], cfg: VerifierConfig,
                rng: np.random.Generator, schedule: torch.optim.lr_scheduler.LRScheduler) -> float:
    inputs = [c.inputs for c in train]
    offsets = np.cumsum([0] + [len(x) for x in inputs])
    targets = np.concatenate([c.is_target for c in train])
    positive, negative = np.flatnonzero(targets), np.flatnonzero(~targets)
    n_pos = int(round(cfg.windows_per_epoch * cfg.target_share))
    chosen = np.concatenate([rng.choice(positive, n_pos), rng.choice(negative, cfg.windows_per_epoch - n_pos)])
    rng.shuffle(chosen)
    net.train()
    losses = []
    for start in range(0, len(chosen), cfg.batch_size):
        index = chosen[start:start + cfg.batch_size]
        which = np.searchsorted(offsets, index, side="right") - 1
        batch = np.stack([inputs[w][i - offsets[w]] for w, i in zip(which, index, strict=True)])
        x = torch.from_numpy(crop(batch, cfg.jitter, rng))
        y = torch.from_numpy(targets[index].astype(np.float32))
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return float(np.mean(losses))


# ---------------------------------------------------------------------------------------------
# 4. validate

def verifier_scores(net: VerifierNet, c: Candidates, cfg: VerifierConfig) -> np.ndarray:
    run = torch_runner(net)
    logits = [run(crop(c.inputs[i:i + 1024], cfg.jitter, None)) for i in range(0, len(c.inputs), 1024)]
    return 1.0 / (1.0 + np.exp(-np.concatenate(logits + [np.zeros(0, np.float32)]).astype(np.float64)))


def per_frame(c: Candidates, scores: np.ndarray) -> list[ImageResult]:
    """A set's frames with their candidates scored by ``scores``."""
    pred = np.column_stack([c.points[:, :2], scores])
    return [ImageResult(f.name, f.truth, pred[c.frame == k], f.pixels) for k, f in enumerate(c.frames)]


def pick_by_budgets(sets: dict[str, list[ImageResult]], clutter_per_mpx: float, targets_per_image: float) -> float:
    """The lowest threshold (among the scores seen) at which every target-free set makes at most
    ``clutter_per_mpx`` false alarms per megapixel and every set with targets at most
    ``targets_per_image`` per image: one threshold that holds for sky and for ground. 1.0 if none does."""
    scores = np.unique(np.concatenate([r.pred[:, 2] for rs in sets.values() for r in rs] + [np.ones(1)]))
    low, high = 0, len(scores) - 1  # false alarms only fall as the threshold rises: bisect
    while low < high:
        mid = (low + high) // 2
        within = True
        for results in sets.values():
            m = score(results, scores[mid])
            within &= (m["FA/img@3px"] <= targets_per_image) if m["targets"] else (m["FA/MPx@3px"] <= clutter_per_mpx)
        if within:
            high = mid
        else:
            low = mid + 1
    return float(scores[low])


def validate(val: list[Candidates], scores: list[np.ndarray], cfg: VerifierConfig) -> dict[str, float]:
    """AP per set, and Pd and false alarms per image per set at the threshold :func:`pick_by_budgets` picks."""
    results = {c.name: per_frame(c, s) for c, s in zip(val, scores, strict=True)}
    conf = pick_by_budgets(results, cfg.max_false_per_mpx, cfg.max_false_per_image)
    row: dict[str, float] = {"conf": conf}
    aps = []
    for name, rs in results.items():
        m = score(rs, conf)
        if m["targets"]:
            row[f"{name} AP"], row[f"{name} Pd"] = m["AP@3px"], m["Pd@3px"]
            aps.append(m["AP@3px"])
        row[f"{name} FA/img"] = m["FA/img@3px"]
    row["mean AP"] = float(np.mean(aps)) if aps else 0.0
    return row


# ---------------------------------------------------------------------------------------------
# 5. save

def with_verifier(heatmap: dict[str, Any], net: VerifierNet, cfg: VerifierConfig, row: dict[str, float]) -> dict[str, Any]:
    entry = {"widths": list(cfg.widths), "window": cfg.window, "context": cfg.context, "candidate_conf": cfg.candidate_conf,
             "max_candidates": cfg.max_candidates, "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
             "train_args": asdict(cfg), "metrics": row}
    return {**heatmap, "verifier": entry, "decode": {**heatmap.get("decode", {}), "conf": row["conf"]}}


def train_verifier(cfg: VerifierConfig) -> Path:
    out = Path(cfg.out)
    taken = [name for name in RUN_FILES if (out / name).exists()]
    if taken and not cfg.exist_ok:
        raise VerifierDataError(f"{out} already holds {taken[0]}" + (f" and {len(taken) - 1} more" if len(taken) > 1 else "")
                                + " from another run; choose another --out or pass --exist-ok to replace them")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1), encoding="utf-8")
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)

    weights = resolve_weights(cfg.weights)
    cfg.weights_sha256 = hashlib.sha256(read_checkpoint_bytes(weights)).hexdigest()
    heatmap = load_checkpoint(weights, "heatmap")
    heatmap.pop("verifier", None)
    model = load_model(weights, device="cpu")
    model.verifier = None  # candidates come from the heatmap alone
    train, val = load_candidates(model, cfg, heatmap.get("train_args", {}))
    for part, c in [("train", c) for c in train] + [("val", c) for c in val]:
        print(f"{part} {c.name}: {len(c.frames)} frames, {len(c.is_target)} candidates, "
              f"{int(c.is_target.sum())} on targets")

    alone = validate(val, [c.points[:, 2] for c in val], cfg)
    print("the heatmap's own scores: " + " ".join(f"{k} {v:.4f}" for k, v in alone.items()), flush=True)
    targets = int(sum(c.is_target.sum() for c in train))
    if targets == 0 or targets == sum(len(c.is_target) for c in train):
        raise VerifierDataError(f"the training candidates are all {'clutter' if targets == 0 else 'targets'}: the verifier "
                                "needs both (labelled targets in --data that the heatmap model finds at --candidate-conf "
                                f"{cfg.candidate_conf:g}, and clutter); lower --candidate-conf or add data")
    net = VerifierNet(tuple(cfg.widths), channels(cfg.context))
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-cfg.windows_per_epoch // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps)
    best = -1.0
    with open(out / "log.csv", "w", newline="", encoding="utf-8") as log:
        writer = None
        for epoch in range(1, cfg.epochs + 1):
            started = time.perf_counter()
            loss = train_epoch(net, optimizer, train, cfg, rng, schedule)
            scores = [verifier_scores(net, c, cfg) for c in val]
            row = {"epoch": epoch, "loss": loss, **validate(val, scores, cfg), "seconds": time.perf_counter() - started}
            if writer is None:
                writer = csv.DictWriter(log, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            log.flush()
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
            checkpoint = with_verifier(heatmap, net, cfg, row)
            save_checkpoint(out / "last.pt", checkpoint)
            if row["mean AP"] > best:
                best = row["mean AP"]
                save_checkpoint(out / "best.pt", checkpoint)
    return out / "best.pt"


def parse_config(argv: list[str] | None = None) -> VerifierConfig:
    defaults = VerifierConfig()
    p = argparse.ArgumentParser(prog="python -m simple_keypoint.heatmap.train_verifier", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--weights", default=defaults.weights, help="the heatmap checkpoint (or shipped name) to verify")
    p.add_argument("--data", nargs="+", default=defaults.data, help="labelled folders (images/ + labels/)")
    p.add_argument("--val", nargs="*", default=defaults.val, help="labelled folders used whole for validation")
    p.add_argument("--clutter", nargs="*", default=defaults.clutter, help="target-free folders (HIT-UAV layout)")
    p.add_argument("--clutter-scales", nargs="+", type=int, default=defaults.clutter_scales,
                   help="clutter frames are also mined enlarged by these factors")
    p.add_argument("--out", default=defaults.out, help="folder for best.pt, last.pt, config.json, log.csv")
    p.add_argument("--exist-ok", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--candidate-conf", type=number(float, 0.0, 1.0), default=defaults.candidate_conf,
                   help="heatmap score a peak needs to be a candidate")
    p.add_argument("--max-candidates", type=number(int, 1), default=defaults.max_candidates, help="candidates per frame")
    p.add_argument("--context", type=number(int, 1), default=defaults.context,
                   help="also show the verifier a window this many times wider, shrunk to the same size (1: none)")
    p.add_argument("--widths", nargs="+", type=int, default=defaults.widths, help="channels of the verifier's stages")
    p.add_argument("--epochs", type=number(int, 1), default=defaults.epochs, help="epochs")
    p.add_argument("--windows-per-epoch", type=number(int, 1), default=defaults.windows_per_epoch, help="windows per epoch")
    p.add_argument("--batch-size", type=number(int, 1), default=defaults.batch_size, help="windows per batch")
    p.add_argument("--lr", type=number(float, 0.0, low_open=True), default=defaults.lr, help="peak learning rate (one cycle)")
    p.add_argument("--target-share", type=number(float, 0.0, 1.0), default=defaults.target_share,
                   help="share of target windows in each batch")
    p.add_argument("--max-false-per-mpx", type=number(float, 0.0), default=defaults.max_false_per_mpx,
                   help="the threshold's false-alarm budget per megapixel on each target-free validation set")
    p.add_argument("--max-false-per-image", type=number(float, 0.0), default=defaults.max_false_per_image,
                   help="the threshold's false-alarm budget per image on each validation set with targets")
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    p.add_argument("--cache", default=defaults.cache, help="folder for mined candidates, reused by later runs ('' for none)")
    p.add_argument("--threads", type=number(int, 0), default=defaults.threads, help="torch threads (0: its default)")
    return VerifierConfig(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    try:
        best = train_verifier(cfg)
    except (CheckpointError, DatasetError, DefaultPathError, VerifierDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nstopped; the last finished epoch is {Path(cfg.out) / 'last.pt'}", file=sys.stderr)
        return 130
    print(f"verifier written into {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
