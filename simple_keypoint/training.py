"""The training loop every method shares: data, epochs, validation, checkpoints, plots, resume.

A method's ``train.py`` adds its own options and a loss function ``loss_fn(net, images, points,
counts) -> loss``; everything else happens here, top to bottom in :func:`train`, which raises
:class:`TrainingError` (and :class:`TrainingInterrupted` on Ctrl+C or SIGTERM).
:func:`command_line` is the command-line layer around it: the signal handler, messages, exit codes.
Run folders (numbered, never overwritten): :mod:`simple_keypoint.runs`; several processes under
torchrun: :mod:`simple_keypoint.distributed`. Validation always runs the PyTorch
:class:`~simple_keypoint.predict.Localizer` on the live net (never the cached ONNX path of
``load_model``: the weights change every step).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from simple_keypoint import distributed, options, runs
from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from simple_keypoint.dataset import CropDataset, DatasetError, MixedCropDataset, Sample, cut_patches, load_clutter, load_dataset, split
from simple_keypoint.evaluate import pick_threshold, predict_all, score
from simple_keypoint.labels import atomic_write
from simple_keypoint.method import Method
from simple_keypoint.methods import get_method
from simple_keypoint.paths import DefaultPathError, default_path
from simple_keypoint.predict import Localizer, pick_device

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Channels-last (NHWC) tensors: on a CPU the training step of these few-channel nets runs much
# faster than in the default NCHW layout (docs/measurements.md); same arithmetic, other memory order.
FORMAT = torch.channels_last
PLOT_EVERY = 30.0  # seconds between redraws of losses.png: drawing costs a noticeable share of an epoch
# When set to a folder, every process writes its final weights' digest there (rank<N>.json): how the
# distributed test checks that all processes ended with the same weights.
DIGEST_ENV = "SIMPLE_KEYPOINT_DIGEST_DIR"


class TrainingError(Exception):
    """Training cannot start or go on; the message says why in one line, naming the file."""


class TrainingInterrupted(TrainingError):
    """Ctrl+C or SIGTERM stopped training between steps; ``last`` holds the last completed epoch."""

    def __init__(self, last: Path):
        self.last = last
        super().__init__(f"interrupted; the last completed epoch is in {last} (continue with --resume {last})")


def command_line(run: Callable[[], object]) -> int:
    """Run a training (``run()``) as a command: SIGTERM stops it like Ctrl+C, errors are one line
    on stderr. Returns the exit code: 0, 1 on an error, 130 when interrupted."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run()
    except TrainingInterrupted as e:
        # In the first epoch there is no last.pt, and the new run's folder was removed (runs.discarded_on_failure).
        print(f"\n{e}" if e.last.is_file() else "\ninterrupted in the first epoch; nothing was kept")
        return 130
    except KeyboardInterrupt:  # before the first epoch: nothing was written
        print("\ninterrupted")
        return 130
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def make_parser(method: str, description: str, **defaults: Any) -> argparse.ArgumentParser:
    """The options every method's train.py has; ``defaults`` override the generic ones."""
    p = options.Parser(prog=f"simple-keypoint train {method}", description=description,
                                formatter_class=options.HelpFormatter)
    positive, at_least_0, share = options.number(int, 1), options.number(int, 0), options.FRACTION
    above_0 = options.number(float, 0.0, low_open=True)
    p.add_argument("--data", nargs="+", default=["data/train"], help="dataset folder(s), each with images/ and labels/")
    p.add_argument("--data-share", type=above_0, nargs="+", default=None,
                   help="each --data folder's share of the training crops (default: in proportion to its images)")
    p.add_argument("--val", default=None, help="validation folder (default: a split carved from --data)")
    p.add_argument("--val-fraction", type=share, default=0.1, help="share of --data used for validation when --val is not given")
    p.add_argument("--epochs", type=positive, default=60, help="passes over the training crops")
    p.add_argument("--batch-size", type=positive, default=16,
                   help="crops per optimisation step, in all: torchrun's processes split it (a multiple of their number)")
    p.add_argument("--lr", type=above_0, default=2e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--crop", type=options.number(int, 16), default=128,
                   help="training input size: random square crops at native resolution")
    p.add_argument("--target-fraction", type=share, default=0.8,
                   help="share of crops placed around a labelled point (the rest: anywhere, mostly background)")
    p.add_argument("--repeats", type=positive, default=4, help="crops per training image per epoch (see --crops-per-epoch)")
    p.add_argument("--crops-per-epoch", type=at_least_0, default=0, help="training crops per epoch (0: --repeats x training images)")
    p.add_argument("--max-false-per-mpx", type=options.number(float, 0.0), default=None,
                   help="the threshold's false-alarm budget per megapixel of validation (default: per image, see evaluate)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the crops and the validation split")
    p.add_argument("--workers", type=at_least_0, default=0,
                   help="data-loading processes (0: in the training process; on a CPU a worker competes with the "
                        "net's threads, see docs/speed.md)")
    p.add_argument("--val-every", type=positive, default=5,
                   help="validate (and mine false alarms) every N epochs and in each of the last N; best.pt is "
                        "the best validated epoch")
    p.add_argument("--ema", type=share, default=0.0,
                   help="decay of an exponential moving average of the weights, validated and saved instead of "
                        "the raw weights (e.g. 0.998; 0: off)")
    runs.add_options(p, method)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision (bfloat16, else float16) on CUDA; no effect on the CPU")
    p.add_argument("--visdom", action="store_true", default=bool(os.environ.get("SIMPLE_KEYPOINT_VISDOM")),
                   help="live loss plots on a visdom server (also on when SIMPLE_KEYPOINT_VISDOM is set)")
    # SIMPLE_KEYPOINT_VISDOM is both the switch and, when it is a URL, the server ("1" or "" must not become a host).
    env_server = os.environ.get("SIMPLE_KEYPOINT_VISDOM", "")
    p.add_argument("--visdom-server", default=env_server if "://" in env_server else "http://127.0.0.1")
    p.add_argument("--visdom-port", type=int, default=int(os.environ.get("SIMPLE_KEYPOINT_VISDOM_PORT", 8097)))
    p.add_argument("--visdom-env", default=f"simple_keypoint_{method}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(**defaults)
    return p


def add_clutter_options(p: argparse.ArgumentParser) -> None:
    """Target-free clutter frames as negatives, with pasted targets and mined false alarms (a method
    that finds any number of points per image can use them)."""
    p.add_argument("--clutter", nargs="*", default=[],
                   help="target-free frame folder(s): images/ (+ a HIT-UAV-style annotations.json: its boxes are kept out)")
    p.add_argument("--clutter-share", type=float, default=0.2, help="share of the training crops taken from --clutter")
    p.add_argument("--paste", type=float, default=0.5,
                   help="probability that a clutter crop gets 1-2 real target patches (cut out with their masks) pasted in")
    p.add_argument("--composite", type=float, default=0.3,
                   help="share of pasted objects made of 2-4 small hot spots a few px apart with one point at their "
                        "centroid (a close aircraft: engines, wing tips), so the net puts one point on such an object")
    p.add_argument("--clutter-zoom", type=options.number(float, 1.0), default=1.0,
                   help="clutter crops are enlarged by a random factor up to this (1: never), so that ground seen "
                        "from closer than the clutter frames' altitude is in training too; targets pasted in stay small")
    p.add_argument("--hard-share", type=float, default=0.5,
                   help="share of clutter crops centred on the model's strongest false alarms, mined after each epoch")
    p.add_argument("--mine-frames", type=int, default=60, help="clutter frames searched for false alarms after each epoch")


class VisdomPlotter:
    """Live plots on a visdom server. Any failure prints one notice and switches plotting off."""

    TIMEOUT = 3.0  # seconds per request: a server that hangs must not stall training

    def __init__(self, server: str, port: int, env: str):
        self.vis, self.env = None, env
        try:
            import logging

            import visdom

            # visdom logs a warning about its (unused) incoming socket at every start.
            logging.getLogger("visdom").setLevel(logging.ERROR)
            timeout = self.TIMEOUT

            class BoundedVisdom(visdom.Visdom):
                def _handle_post(self, url: str, data: Any = None) -> str:  # visdom posts with no timeout
                    return self.session.post(url, data=data or {}, timeout=timeout).text

                def win_exists(self, win: str, env: str | None = None) -> bool:
                    # visdom's own prints "Error connecting..." and returns None; raise, so the one notice is ours.
                    return self._win_exists_wrap(win, env) == "true"

            vis = BoundedVisdom(server=server, port=port, env=env, raise_exceptions=True,
                                use_incoming_socket=False)
            if vis._win_exists_wrap("") not in ("true", "false"):  # something answered, but not visdom (0.2.4 API)
                raise ConnectionError("not a visdom server")
            self.vis = vis
            print(f"visdom: plotting to {server}:{port}, env {env}")
        except Exception as e:  # noqa: BLE001  (plots are optional; training must go on)
            print(f"visdom: no server at {server}:{port} ({type(e).__name__}); training without live plots")

    def plot(self, epoch: int, values: dict[str, float], window: str) -> None:
        if self.vis is None:
            return
        try:
            for name, value in values.items():
                self.vis.line(X=np.array([epoch]), Y=np.array([value]), win=window, name=name,
                              update="append" if self.vis.win_exists(window) else None,
                              opts={"title": window, "xlabel": "epoch", "showlegend": True})
        except Exception as e:  # noqa: BLE001
            print(f"\nvisdom: lost the server ({type(e).__name__}); training goes on without live plots")
            self.vis = None


def write_history(out: Path, history: list[dict[str, float]], plot: bool = True) -> None:
    """losses.csv (and, if ``plot``, losses.png) in the run folder, rewritten from the whole history."""
    if not history:
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    atomic_write(out / "losses.csv", text.getvalue().encode())
    if not plot:
        return

    # A bare Figure draws with the Agg canvas and leaves pyplot's (process-wide) backend alone.
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    checked = [h for h in history if h.get("validated", True)]  # epochs between validations have none
    fig = Figure(figsize=(9, 3.2))
    a, b = fig.subplots(1, 2)
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot([h["epoch"] for h in checked], [h["val_loss"] for h in checked], label="val")
    a.set_yscale("log")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    a.legend()
    b.plot([h["epoch"] for h in checked], [h["val_AP@3px"] for h in checked], label="AP@3px")
    b.plot([h["epoch"] for h in checked], [h["val_Pd@3px"] for h in checked], label="Pd@3px, any score")  # any threshold
    b.set(xlabel="epoch", ylim=(0, 1.02), title="validation")
    b.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    atomic_write(out / "losses.png", buffer.getvalue())


def carve_validation(samples: list[Sample], settings: Mapping[str, Any]) -> tuple[list[Sample], list[Sample]]:
    """The (train, validation) split a run with ``settings`` (its ``val_fraction`` and ``seed``)
    carves from its ``--data``: the one rule, for training and for anything re-scoring a run."""
    return split(samples, settings["val_fraction"], settings["seed"])


def validation_samples(settings: Mapping[str, Any], data: str | os.PathLike | None = None,
                       samples: list[Sample] | None = None, method: Method | None = None) -> list[Sample]:
    """The validation images a run held out, from its stored training settings: its ``--val``
    folder, or the split :func:`carve_validation` carves from its ``--data`` (or from ``data``,
    where that folder is now; or from ``samples``, that folder already read). ``method``: keep
    only the images it can use. Raises DatasetError."""
    limits = (method.max_targets, method.min_targets) if method else (None, 0)
    if settings.get("val"):
        return load_dataset(settings["val"], *limits, progress=False)[0]
    if samples is not None:
        if method is not None:
            samples = [s for s in samples if method.accepts(len(s.points))]
        return carve_validation(samples, settings)[1]
    folders = [data] if data is not None else [stored_folder(f) for f in as_folders(settings["data"])]
    val = [s for folder in folders for s in carve_validation(load_dataset(folder, *limits, progress=False)[0], settings)[1]]
    for folder in settings.get("clutter") or []:
        val += carve_validation(load_clutter(stored_folder(folder), progress=False)[0], settings)[1]
    return val


def as_folders(data: str | os.PathLike | list) -> list[str]:
    """``--data`` as a list of folders (checkpoints written before several folders stored one string)."""
    return [str(data)] if isinstance(data, (str, os.PathLike)) else [str(d) for d in data]


def stored_folder(folder: str) -> str:
    """A folder a run's settings name, found again: as stored if it exists, else (a relative path
    from a run in the checkout, e.g. ``data/train``) in the checkout."""
    if Path(folder).is_dir() or Path(folder).is_absolute():
        return folder
    try:
        return str(default_path(folder))
    except DefaultPathError:
        return folder


def load_data(args: argparse.Namespace, method: Method,
              failures: list[str] | None = None) -> tuple[list[list[Sample]], list[Sample]]:
    """Training samples of each ``--data`` folder, and the validation samples of all of them (a
    split carved from each, or ``--val``); prints what was found and skipped. Raises
    :class:`TrainingError` if nothing is usable.

    Files that could not be read are also appended to ``failures`` (listed again when training ends).
    """
    def read(folder: str) -> list[Sample]:
        try:
            samples, report = load_dataset(folder, method.max_targets, method.min_targets, progress=not args.quiet)
        except (DatasetError, OSError) as e:
            raise TrainingError(str(e)) from None
        print("\n".join(report.lines()))
        if failures is not None:
            failures.extend(report.failures)
        return samples

    train_sets, val_samples = [], read(args.val) if args.val else []
    for folder in map(stored_folder, as_folders(args.data)):  # relative defaults work from any folder
        samples = read(folder)
        if not args.val:
            samples, val = carve_validation(samples, vars(args))
            val_samples += val
            print(f"validation: {len(val)} image(s) carved from {folder} (seed {args.seed})")
        train_sets.append(samples)
    if not any(train_sets):
        raise TrainingError(f"no usable training images in {' '.join(as_folders(args.data))}")
    return train_sets, val_samples


def load_clutter_frames(args: argparse.Namespace, failures: list[str]) -> tuple[list[Sample], list[Sample]]:
    """Training and validation clutter frames of every ``--clutter`` folder (a split carved from each)."""
    train, val = [], []
    for folder in map(stored_folder, getattr(args, "clutter", None) or []):
        try:
            frames, report = load_clutter(folder, progress=not args.quiet)
        except (DatasetError, OSError) as e:
            raise TrainingError(str(e)) from None
        failures.extend(report.failures)
        frames_train, frames_val = carve_validation(frames, vars(args))
        train, val = train + frames_train, val + frames_val
        print(f"{folder}: {len(frames_train)} clutter frame(s) for training, {len(frames_val)} for validation")
    return train, val


def mine_false_alarms(localizer: Localizer, clutter: list[Sample], count: int, rng: np.random.Generator,
                      per_frame: int = 4) -> list[tuple[int, float, float]]:
    """The stronger half of the best ``per_frame`` peaks (outside blocked pixels) on ``count`` random
    clutter frames: every one is a false alarm, as the frames hold no target. (frame index, u, v)."""
    found = []
    for k in rng.choice(len(clutter), min(count, len(clutter)), replace=False):
        frame = clutter[k]
        pred = frame.unblocked(localizer.predict_standardised(frame.image, conf=0.0, max_points=4 * per_frame))
        found += [(score, int(k), u, v) for u, v, score in pred[:per_frame]]
    found.sort(reverse=True)
    return [(k, u, v) for _, k, u, v in found[: (len(found) + 1) // 2]]


def evaluate_epoch(net: torch.nn.Module, method: Method, val: list[Sample], val_loader: torch.utils.data.DataLoader,
                   loss_fn: LossFn, device: torch.device,
                   max_false_per_mpx: float | None = None) -> tuple[dict[str, float], float]:
    """Validation: loss on fixed crops, metrics on the whole images (all of them, and AP per dataset
    folder as ``AP@3px <folder name>``), and the threshold they suggest."""
    net.eval()
    with torch.no_grad():
        losses = [loss_fn(net, x.to(device, memory_format=FORMAT), p.to(device), n.to(device)).item()
                  for x, p, n in val_loader]
    localizer = Localizer(method, net, conf=0.0, device=device)
    results = predict_all(localizer, val)
    metrics = score(results, conf=0.0) if val else {}
    sources = sorted({s.source for s in val})
    for source in sources if len(sources) > 1 else []:
        part = score([r for r, s in zip(results, val, strict=True) if s.source == source], conf=0.0)
        metrics[f"AP@3px {source}" if part["targets"] else f"FA/MPx {source}"] = (
            part["AP@3px"] if part["targets"] else part["FA/MPx@3px"])
    if val and method.picks_threshold:
        conf = (pick_threshold(results, max_false_per_mpx=max_false_per_mpx) if max_false_per_mpx is not None
                else pick_threshold(results))
    else:
        conf = 0.0
    net.train()
    metrics["loss"] = float(np.mean(losses)) if losses else float("nan")
    return metrics, conf


def is_validation_epoch(epoch: int, epochs: int, every: int) -> bool:
    """Whether ``epoch`` (1-based) of ``epochs`` is validated: every ``every``-th and each of the
    last ``every`` (where the best weights of a decaying learning rate usually are)."""
    every = max(every, 1)
    return epoch % every == 0 or epoch > epochs - every


def selection_score(row: dict[str, float]) -> float:
    """What best.pt is chosen by (higher is better): validation AP@3px; when validation has no
    targets, lower validation loss; with no validation at all, the latest epoch. Which case applies
    is fixed for a run, so scores are only compared within one case."""
    if np.isfinite(row["val_AP@3px"]):
        return row["val_AP@3px"]
    if np.isfinite(row["val_loss"]):
        return -row["val_loss"]
    return row["epoch"]


def train(args: argparse.Namespace, method: str | Method, model_args: dict[str, Any], loss_fn: LossFn) -> Path:
    """Train one model of ``method`` (a registered name or a :class:`Method`, which says what its
    dataset must hold); returns the path of the best checkpoint (by validation AP@3px). Raises
    :class:`TrainingError`, :class:`TrainingInterrupted` on Ctrl+C (or SIGTERM, with
    :func:`command_line`'s handler) after saving the last completed epoch."""
    method = method if isinstance(method, Method) else get_method(method)
    try:
        context, device = distributed.setup(pick_device(args.device))
    except (RuntimeError, ValueError) as e:  # torch.distributed's own errors: a bad rendezvous, a missing backend
        raise TrainingError(f"cannot join the training processes: {e}") from None
    try:
        with contextlib.ExitStack() as stack:
            args, model_args, resume, out = _run_folder(args, method, model_args, context)
            if context.is_main:
                if resume is None:  # a run that fails before its first checkpoint leaves no folder behind
                    stack.enter_context(runs.discarded_on_failure(out))
                stack.enter_context(runs.logged(out))
            else:  # only rank 0 reports
                args.quiet = True
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            return _train(args, method, model_args, loss_fn, resume, out, context, device)
    finally:
        distributed.teardown()


def _on_main(context: distributed.Context, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, its result on every process; its TrainingError raised on every process."""
    result: tuple[str, Any] = ("error", "no result")
    if context.is_main:
        try:
            result = ("ok", fn())
        except TrainingError as e:
            result = ("error", str(e))
    kind, value = distributed.broadcast(result, context)
    if kind == "error":
        raise TrainingError(value)
    return value


def _run_folder(args: argparse.Namespace, method: Method, model_args: dict[str, Any],
                context: distributed.Context) -> tuple[argparse.Namespace, dict[str, Any], dict[str, Any] | None, Path]:
    """The settings, model arguments, resumed checkpoint (or None) and run folder of this run:
    a new numbered folder, or with --resume the resumed run's own."""
    if not args.resume:
        def make() -> Path:
            out = runs.new_run_folder(args, method.name)
            try:
                runs.create_run_folder(out)  # removed again if the run fails before its first checkpoint
            except OSError as e:
                raise TrainingError(f"cannot create run folder {out}: {e.strerror or e}") from None
            return out

        out = _on_main(context, make)
        return argparse.Namespace(**{**vars(args), "out": str(out)}), model_args, None, out

    def find() -> Path:
        try:
            return runs.resume_checkpoint(args, method.name)
        except DefaultPathError as e:
            raise TrainingError(f"--resume: {e}") from None

    path = _on_main(context, find)
    try:
        resume = load_checkpoint(path, method.name)
    except CheckpointError as e:
        raise TrainingError(str(e)) from None
    if "train_args" not in resume or "optimizer" not in resume:
        raise TrainingError(f"--resume: {path}: not a resumable checkpoint (a run's weights/last.pt is)")
    epochs = resume["train_args"].get("epochs", 0)
    if resume.get("epoch", 0) >= epochs:  # said at once, before any data is read
        best = runs.folder_of_checkpoint(path) / "weights" / "best.pt"
        raise TrainingError(f"--resume: {path} is a finished run (epoch {resume.get('epoch')} of {epochs}); nothing to "
                            f"resume. Its weights: {best}; to train again, leave out --resume")
    # Continue the same run: its settings, except where and how to run and plot.
    kept = {k: getattr(args, k) for k in ("device", "visdom", "visdom_server", "visdom_port", "quiet", "workers", "amp")}
    out = runs.folder_of_checkpoint(path)
    args = argparse.Namespace(**{**resume["train_args"], **kept, "resume": str(path), "out": str(out)})
    (out / "weights").mkdir(parents=True, exist_ok=True)
    return args, resume["model_args"], resume, out


def _train(args: argparse.Namespace, method: Method, model_args: dict[str, Any], loss_fn: LossFn,
           resume: dict[str, Any] | None, out: Path, context: distributed.Context, device: torch.device) -> Path:
    torch.manual_seed(args.seed)
    print(f"{method.name}: training on {device}" + (f" x {context.world_size} processes" if context.active else "")
          + f", run folder {out}")

    failures: list[str] = []
    train_sets, val_samples = load_data(args, method, failures)
    clutter, clutter_val = load_clutter_frames(args, failures)
    train_samples = [s for samples in train_sets for s in samples]
    patches = cut_patches(train_samples) if clutter and args.paste > 0 else []
    if clutter:
        print(f"{len(patches)} target patch(es) cut out with their masks, to paste into clutter")
    shares = getattr(args, "data_share", None) or [len(samples) for samples in train_sets]
    if len(shares) != len(train_sets):
        raise TrainingError(f"--data-share has {len(shares)} value(s) for {len(train_sets)} --data folder(s)")
    spreads = getattr(args, "shape_target", False)  # points carry their objects' spreads (a method's option)
    train_set = MixedCropDataset(train_sets, shares, getattr(args, "crops_per_epoch", 0) or len(train_samples) * args.repeats,
                                 args.crop, args.seed, args.target_fraction, method.keep_target_in_crop, clutter,
                                 getattr(args, "clutter_share", 0.0), patches, getattr(args, "paste", 0.0),
                                 getattr(args, "hard_share", 0.0), spreads=spreads,
                                 composite=getattr(args, "composite", 0.0), clutter_zoom=getattr(args, "clutter_zoom", 1.0))
    val_set = CropDataset(val_samples, args.crop, args.seed + 1, augment=False, keep_one=method.keep_target_in_crop,
                          spreads=spreads)
    val_samples += clutter_val
    try:
        batch = distributed.per_process_batch(args.batch_size, context)
    except distributed.DistributedSetupError as e:
        raise TrainingError(str(e)) from None
    # Several processes: each its shard of the epoch's crops, in an order fixed by seed and epoch.
    sampler = (torch.utils.data.DistributedSampler(train_set, context.world_size, context.rank, shuffle=True,
                                                   seed=args.seed, drop_last=True) if context.active else None)
    # Workers are forked at each epoch (not persistent), so they see the false alarms just mined.
    loader = torch.utils.data.DataLoader(train_set, batch, shuffle=sampler is None, sampler=sampler,
                                         num_workers=args.workers, drop_last=len(train_set) >= args.batch_size,
                                         generator=torch.Generator().manual_seed(args.seed),
                                         prefetch_factor=4 if args.workers else None)
    val_loader = torch.utils.data.DataLoader(val_set, args.batch_size)

    net = method.build(model_args).to(device, memory_format=FORMAT)
    trained = distributed.wrap(net, context, device)  # what the training steps call: net, or net in DDP
    precision = distributed.autocast_dtype(device, getattr(args, "amp", True))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)  # bfloat16 needs no loss scaling
    # With --ema, a moving average of the weights (torch's AveragedModel, batch-norm statistics
    # included) is what is validated and saved: it smooths the step-to-step noise of a small dataset.
    ema = getattr(args, "ema", 0.0)  # checkpoints from before the option have none
    averaged = (torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema),
                                                    use_buffers=True) if ema else None)
    model = averaged.module if averaged else net  # the weights that are validated and saved
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * max(len(loader), 1)
    # 10% warm-up, but at least 2 steps: OneCycleLR divides by zero when warm-up is exactly 1 step
    # (e.g. 10 steps in all) or the whole run.
    warmup = min(0.6, max(0.1, 2 / steps))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=warmup)
    start_epoch, history, best_ap = 0, [], -float("inf")
    if resume:
        net.load_state_dict(resume.get("train_state", resume["model_state"]))
        if averaged:
            averaged.load_state_dict(resume["ema_state"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if scaler.is_enabled() and "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        start_epoch, history = resume["epoch"], resume["history"]
        best_ap = max((selection_score(h) for h in history if h.get("validated", True)), default=-float("inf"))
        print(f"resuming {args.resume} after epoch {start_epoch} of {args.epochs}"
              + (f" (trained with {resume.get('world_size', 1)} process(es), now {context.world_size})"
                 if resume.get("world_size", 1) != context.world_size else ""))
    if context.is_main:
        runs.write_settings(out, args, model_args, world_size=context.world_size, device=str(device),
                            precision=str(precision or torch.float32).replace("torch.", ""))
    plotter = VisdomPlotter(args.visdom_server, args.visdom_port, args.visdom_env) if args.visdom and context.is_main else None
    n_params = sum(p.numel() for p in net.parameters())
    print(f"{method.name} net: {n_params:,} parameters, {len(train_samples)} train / {len(val_samples)} val images, "
          f"{len(loader)} steps per epoch")

    def checkpoint(epoch: int, conf: float, metrics: dict[str, float], resumable: bool) -> dict[str, Any]:
        """last.pt (``resumable``) holds all --resume needs; best.pt only what inference needs, so it ships as is."""
        state = {"method": method.name, "model_args": model_args, "model_state": model.state_dict(),
                 "decode": {"conf": conf}, "epoch": epoch, "metrics": metrics, "history": history,
                 "train_args": {k: v for k, v in vars(args).items() if k != "resume"}, "world_size": context.world_size}
        if resumable:
            state |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            if scaler.is_enabled():
                state["scaler"] = scaler.state_dict()
            if averaged:
                state |= {"train_state": net.state_dict(), "ema_state": averaged.state_dict()}
        return state

    net.train()
    plotted = -float("inf")
    try:
        for epoch in range(start_epoch + 1, args.epochs + 1):
            train_set.epoch = epoch
            loader.generator.manual_seed(args.seed * 100_003 + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            started, total, count = time.time(), 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", disable=args.quiet, leave=False)
            for images, points, counts in bar:
                with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
                    loss = loss_fn(trained, images.to(device, memory_format=FORMAT), points.to(device), counts.to(device))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if averaged:
                    averaged.update_parameters(net)
                total, count = total + loss.item(), count + 1
                bar.set_postfix(loss=f"{total / count:.5f}")
            # Every process now holds the same weights; make their batch-norm statistics the same too.
            distributed.average_buffers(net, context)
            if averaged:
                distributed.average_buffers(averaged, context)
            train_loss = distributed.mean(total / max(count, 1), context)
            validate = is_validation_epoch(epoch, args.epochs, getattr(args, "val_every", 1))
            mining = validate and bool(clutter) and getattr(args, "hard_share", 0.0) > 0
            if context.is_main:  # the others wait below for the false alarms rank 0 mines, or at the barrier
                validation_started = time.time()
                if validate:
                    metrics, conf = evaluate_epoch(model, method, val_samples, val_loader, loss_fn, device,
                                                   getattr(args, "max_false_per_mpx", None))
                else:  # the last validated epoch's threshold stays; its metrics are not this epoch's
                    metrics, conf = {"loss": float("nan")}, (history[-1]["conf"] if history else 0.0)
                if mining:
                    train_set.hard = mine_false_alarms(Localizer(method, model, conf=0.0, device=device, relative=False),
                                                       clutter, args.mine_frames, np.random.default_rng((args.seed, epoch)))
                    model.train()
                row = {"epoch": epoch, "train_loss": train_loss, "val_loss": metrics["loss"],
                       "val_AP@3px": metrics.get("AP@3px", float("nan")), "val_Pd@3px": metrics.get("Pd@3px", float("nan")),
                       "val_err@3px": metrics.get("err_mean@3px", float("nan")), "conf": conf,
                       "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started,
                       "val_seconds": time.time() - validation_started, "validated": int(validate)}
                history.append(row)
                ap = selection_score(row) if validate else -float("inf")
                if ap > best_ap:
                    best_ap = ap
                    save_checkpoint(out / "weights" / "best.pt", checkpoint(epoch, conf, metrics, resumable=False))
                save_checkpoint(out / "weights" / "last.pt", checkpoint(epoch, conf, metrics, resumable=True))
                # The picture is redrawn every PLOT_EVERY seconds and at the end (after Ctrl+C it may
                # lag; --resume redraws it); the CSV every epoch.
                plot = epoch == args.epochs or time.time() - plotted >= PLOT_EVERY
                write_history(out, history, plot)
                plotted = time.time() if plot else plotted
                if plotter:
                    plotter.plot(epoch, {"train": row["train_loss"], "val": row["val_loss"]}, "loss")
                    plotter.plot(epoch, {"AP@3px": row["val_AP@3px"], "Pd@3px": row["val_Pd@3px"]}, "validation")
                per_source = "".join(f"  {k} {v:.3f}" for k, v in metrics.items() if " " in k)
                print(f"epoch {epoch}/{args.epochs}  loss {row['train_loss']:.5f}  "
                      + (f"val loss {row['val_loss']:.5f}  val AP@3px {row['val_AP@3px']:.3f}  Pd@3px (any score) "
                         f"{row['val_Pd@3px']:.3f}  err {row['val_err@3px']:.2f}px{per_source}  " if validate else "")
                      + f"({row['seconds']:.0f}s)", flush=True)
            if mining:
                train_set.hard = distributed.broadcast(train_set.hard, context)
            distributed.barrier(context)
    except KeyboardInterrupt:
        raise TrainingInterrupted(out / "weights" / "last.pt") from None
    if os.environ.get(DIGEST_ENV):
        digests = {"rank": context.rank, "world_size": context.world_size, "net": distributed.state_digest(net),
                   "saved": distributed.state_digest(model)}
        atomic_write(Path(os.environ[DIGEST_ENV]) / f"rank{context.rank}.json", json.dumps(digests).encode())
    print(f"done: best {out / 'weights' / 'best.pt'}, last {out / 'weights' / 'last.pt'}, curves {out / 'losses.png'}")
    if failures:  # training went on without them (exit code 0); repeated here so they are not missed
        print(f"{len(failures)} file(s) could not be used:")
        print("\n".join(f"  failed: {line}" for line in failures))
    return out / "weights" / "best.pt"
