"""The training loop every method shares: data, epochs, validation, checkpoints, plots, resume.

Every setting of a run is one :class:`TrainConfig` (a method subclasses it for its own options),
built once from the command line (:func:`make_parser`) and saved as it is in the run folder and the
checkpoints. A method's ``train.py`` adds its options and a loss function ``loss_fn(net, images,
points, counts) -> loss``; everything else happens here: :func:`train` finds the run folder, then
``_train`` runs the steps top to bottom (:func:`prepare_data`, :func:`build_model`, and per epoch
:func:`train_one_epoch`, :func:`validate_and_mine`, :func:`checkpoint_state`), raising
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
import copy
import csv
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

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


def _visdom_switch() -> bool:
    return bool(os.environ.get("SIMPLE_KEYPOINT_VISDOM"))


def _visdom_server() -> str:
    # SIMPLE_KEYPOINT_VISDOM is both the switch and, when it is a URL, the server ("1" or "" must not become a host).
    env_server = os.environ.get("SIMPLE_KEYPOINT_VISDOM", "")
    return env_server if "://" in env_server else "http://127.0.0.1"


def _visdom_port() -> int:
    return int(os.environ.get("SIMPLE_KEYPOINT_VISDOM_PORT", 8097))


DEFAULT_DATA = "data/train"  # the checkout's SIRST training images


@dataclass
class TrainConfig:
    """Every setting of a training run, with its default: built once from the command line
    (:meth:`from_namespace`), saved as it is in the run folder's ``args.json`` and in each
    checkpoint's ``train_args``, and read back by ``--resume`` (:meth:`from_stored`).

    A method with options of its own subclasses it (``HeatmapConfig``), overriding defaults by
    redeclaring a field. The clutter settings are here because the loop reads them; a method whose
    parser has no ``--clutter`` trains with none.
    """

    # data
    data: list[str] = field(default_factory=lambda: [DEFAULT_DATA])
    data_share: list[float] | None = None
    val: str | None = None
    val_fraction: float = 0.1
    # schedule
    epochs: int = 60
    batch_size: int = 16
    lr: float = 2e-3
    crop: int = 128
    target_fraction: float = 0.8
    repeats: int = 4
    crops_per_epoch: int = 0
    max_false_per_mpx: float | None = None
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    val_every: int = 5
    ema: float = 0.0
    # run folder (runs.add_options); name and visdom_env empty: the method's (see defaults())
    project: str = "runs"
    name: str = ""
    exist_ok: bool = False
    out: str | None = None
    resume: str | None = None
    amp: bool = True
    visdom: bool = field(default_factory=_visdom_switch)
    visdom_server: str = field(default_factory=_visdom_server)
    visdom_port: int = field(default_factory=_visdom_port)
    visdom_env: str = ""
    quiet: bool = False
    # clutter (add_clutter_options)
    clutter: list[str] = field(default_factory=list)
    clutter_share: float = 0.2
    paste: float = 0.5
    composite: float = 0.3
    clutter_zoom: float = 1.0
    hard_share: float = 0.5
    mine_frames: int = 60
    shape_target: bool = False  # points carry their objects' spreads (the heatmap method's option)

    # What a run saved before an option existed did; --resume of such a run keeps doing it (the
    # option's default now may differ).
    BEFORE_THE_OPTION: ClassVar[dict[str, Any]] = {
        "data_share": None, "crops_per_epoch": 0, "max_false_per_mpx": None, "val_every": 1, "ema": 0.0, "amp": True,
        "clutter": [], "clutter_share": 0.0, "paste": 0.0, "composite": 0.0, "clutter_zoom": 1.0, "hard_share": 0.0,
        "shape_target": False}
    # Where and how to run and plot: a resumed run takes these from the new command line.
    LOCAL: ClassVar[tuple[str, ...]] = ("device", "visdom", "visdom_server", "visdom_port", "quiet", "workers", "amp")

    @classmethod
    def defaults(cls, method: str, **overrides: Any) -> TrainConfig:
        """The defaults of a run of ``method`` (its run folder name and visdom env), with ``overrides``."""
        return cls(**{"name": method, "visdom_env": f"simple_keypoint_{method}", **overrides})

    @classmethod
    def from_namespace(cls, args: argparse.Namespace | Mapping[str, Any]) -> TrainConfig:
        """The config a parsed command line gives. Raises TypeError for a setting this class does not declare."""
        values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}: declare them in a subclass")
        return cls(**values)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> TrainConfig:
        """The config a checkpoint's ``train_args`` saved: settings it predates take
        :attr:`BEFORE_THE_OPTION`'s value (else the default); ones since removed are ignored."""
        names = {f.name for f in fields(cls)}
        before = {k: copy.deepcopy(v) for k, v in cls.BEFORE_THE_OPTION.items() if k in names}
        return cls(**{**before, **{k: v for k, v in stored.items() if k in names}})

    def settings(self) -> dict[str, Any]:
        """Every setting by name, as saved in ``args.json`` and a checkpoint's ``train_args``."""
        return asdict(self)


def make_parser(method: str, description: str, config: type[TrainConfig] = TrainConfig,
                **defaults: Any) -> argparse.ArgumentParser:
    """The options every method's train.py has, their defaults from ``config`` (a method's
    :class:`TrainConfig` subclass; ``defaults`` override them). A method adds its own options
    without a ``default=``: they take the config's (argparse reads the parser's defaults)."""
    p = options.Parser(prog=f"simple-keypoint train {method}", description=description,
                                formatter_class=options.HelpFormatter)
    p.set_defaults(**config.defaults(method, **defaults).settings())
    positive, at_least_0, share = options.number(int, 1), options.number(int, 0), options.FRACTION
    above_0 = options.number(float, 0.0, low_open=True)
    p.add_argument("--data", nargs="+", help="dataset folder(s), each with images/ and labels/")
    p.add_argument("--data-share", type=above_0, nargs="+",
                   help="each --data folder's share of the training crops (default: in proportion to its images)")
    p.add_argument("--val", help="validation folder (default: a split carved from --data)")
    p.add_argument("--val-fraction", type=share,
                   help="share of --data used for validation when --val is not given (0: no validation; best.pt is "
                        "then the last epoch)")
    p.add_argument("--epochs", type=positive, help="passes over the training crops")
    p.add_argument("--batch-size", type=positive,
                   help="crops per optimisation step, in all: torchrun's processes split it (a multiple of their number)")
    p.add_argument("--lr", type=above_0, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--crop", type=options.number(int, 16), help="training input size: random square crops at native resolution")
    p.add_argument("--target-fraction", type=share,
                   help="share of crops placed around a labelled point (the rest: anywhere, mostly background)")
    p.add_argument("--repeats", type=positive, help="crops per training image per epoch (see --crops-per-epoch)")
    p.add_argument("--crops-per-epoch", type=at_least_0, help="training crops per epoch (0: --repeats x training images)")
    p.add_argument("--max-false-per-mpx", type=options.number(float, 0.0),
                   help="the threshold's false-alarm budget per megapixel of validation (default: per image, see evaluate)")
    p.add_argument("--device", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, help="seed of the weights, the crops and the validation split")
    p.add_argument("--workers", type=at_least_0,
                   help="data-loading processes (0: in the training process; on a CPU a worker competes with the "
                        "net's threads, see docs/speed.md)")
    p.add_argument("--val-every", type=positive,
                   help="validate (and mine false alarms) every N epochs and in each of the last N; best.pt is "
                        "the best validated epoch")
    p.add_argument("--ema", type=share,
                   help="decay of an exponential moving average of the weights, validated and saved instead of "
                        "the raw weights (e.g. 0.998; 0: off)")
    runs.add_options(p, method)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="mixed precision (bfloat16, else float16) on CUDA; no effect on the CPU")
    p.add_argument("--visdom", action="store_true",
                   help="live loss plots on a visdom server (also on when SIMPLE_KEYPOINT_VISDOM is set)")
    p.add_argument("--visdom-server",
                   help="the visdom server's address (default: SIMPLE_KEYPOINT_VISDOM when it is a URL, else "
                        "http://127.0.0.1)")
    p.add_argument("--visdom-port", type=options.number(int, 1, 65535),
                   help="the visdom server's port (default: SIMPLE_KEYPOINT_VISDOM_PORT, else 8097)")
    p.add_argument("--visdom-env", help="the visdom environment (a tab of its page) the plots go to")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def add_clutter_options(p: argparse.ArgumentParser) -> None:
    """Target-free clutter frames as negatives, with pasted targets and mined false alarms (a method
    that finds any number of points per image can use them). Defaults: :class:`TrainConfig`'s."""
    p.add_argument("--clutter", nargs="*",
                   help="target-free frame folder(s): images/ (+ a HIT-UAV-style annotations.json: its boxes are kept out)")
    p.add_argument("--clutter-share", type=float, help="share of the training crops taken from --clutter")
    p.add_argument("--paste", type=float,
                   help="probability that a clutter crop gets 1-2 real target patches (cut out with their masks) pasted in")
    p.add_argument("--composite", type=float,
                   help="share of pasted objects made of 2-4 small hot spots a few px apart with one point at their "
                        "centroid (a close aircraft: engines, wing tips), so the net puts one point on such an object")
    p.add_argument("--clutter-zoom", type=options.number(float, 1.0),
                   help="clutter crops are enlarged by a random factor up to this (1: never), so that ground seen "
                        "from closer than the clutter frames' altitude is in training too; targets pasted in stay small")
    p.add_argument("--hard-share", type=float,
                   help="share of clutter crops centred on the model's strongest false alarms, mined after each epoch")
    p.add_argument("--mine-frames", type=int, help="clutter frames searched for false alarms after each epoch")


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
        return load_dataset(_stored_folder_there(settings["val"], "--val"), *limits, progress=False)[0]
    if samples is not None:
        if method is not None:
            samples = [s for s in samples if method.accepts(len(s.points))]
        return carve_validation(samples, settings)[1]
    folders = [data] if data is not None else [_stored_folder_there(f, "--data") for f in as_folders(settings["data"])]
    val = [s for folder in folders for s in carve_validation(load_dataset(folder, *limits, progress=False)[0], settings)[1]]
    for folder in settings.get("clutter") or []:
        val += carve_validation(load_clutter(stored_folder(folder), progress=False)[0], settings)[1]
    return val


def _stored_folder_there(folder: str, option: str) -> str:
    """:func:`stored_folder`, or DatasetError saying what to pass when it is nowhere (e.g. the
    checkout's data/train, from an installed package)."""
    found = stored_folder(folder)
    if not Path(found).is_dir():
        hint = "; no checkout here? pass --data FOLDER" if option == "--data" else ""
        raise DatasetError(f"{folder}: does not exist (the run's {option} folder, from its training settings{hint})")
    return found


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


def load_data(config: TrainConfig, method: Method,
              failures: list[str] | None = None) -> tuple[list[list[Sample]], list[Sample]]:
    """Training samples of each ``--data`` folder, and the validation samples of all of them (a
    split carved from each, or ``--val``); prints what was found and skipped. Raises
    :class:`TrainingError` if nothing is usable.

    Files that could not be read are also appended to ``failures`` (listed again when training ends).
    """
    def read(folder: str) -> list[Sample]:
        try:
            samples, report = load_dataset(folder, method.max_targets, method.min_targets, progress=not config.quiet)
        except (DatasetError, OSError) as e:
            raise TrainingError(str(e)) from None
        print("\n".join(report.lines()))
        if failures is not None:
            failures.extend(report.failures)
        return samples

    train_sets, val_samples = [], read(config.val) if config.val else []
    for folder in map(stored_folder, as_folders(config.data)):  # relative defaults work from any folder
        samples = read(folder)
        if not config.val:
            samples, val = carve_validation(samples, config.settings())
            val_samples += val
            print(f"validation: {len(val)} image(s) carved from {folder} (seed {config.seed})")
        train_sets.append(samples)
    if not any(train_sets):
        raise TrainingError(f"no usable training images in {' '.join(as_folders(config.data))}")
    return train_sets, val_samples


def load_clutter_frames(config: TrainConfig, failures: list[str]) -> tuple[list[Sample], list[Sample]]:
    """Training and validation clutter frames of every ``--clutter`` folder (a split carved from each)."""
    train, val = [], []
    for folder in map(stored_folder, config.clutter or []):
        try:
            frames, report = load_clutter(folder, progress=not config.quiet)
        except (DatasetError, OSError) as e:
            raise TrainingError(str(e)) from None
        failures.extend(report.failures)
        frames_train, frames_val = carve_validation(frames, config.settings())
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


def train(config: TrainConfig | argparse.Namespace, method: str | Method, model_args: dict[str, Any],
          loss_fn: LossFn | None = None, *, make_loss: Callable[[TrainConfig], LossFn] | None = None) -> Path:
    """Train one model of ``method`` (a registered name or a :class:`Method`, which says what its
    dataset must hold) with ``config`` (or a parsed :func:`make_parser` command line); returns the
    path of the best checkpoint (by validation AP@3px). The loss is ``loss_fn``, or
    ``make_loss(config)`` of the run's final config (a resumed run's own settings). Raises
    :class:`TrainingError`, :class:`TrainingInterrupted` on Ctrl+C (or SIGTERM, with
    :func:`command_line`'s handler) after saving the last completed epoch."""
    if (loss_fn is None) == (make_loss is None):
        raise TypeError("train() takes either loss_fn or make_loss")
    method = method if isinstance(method, Method) else get_method(method)
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_namespace(config)
    try:
        context, device = distributed.setup(pick_device(config.device))
    except (RuntimeError, ValueError) as e:  # torch.distributed's own errors: a bad rendezvous, a missing backend
        raise TrainingError(f"cannot join the training processes: {e}") from None
    try:
        with contextlib.ExitStack() as stack:
            config, model_args, resume, out = _run_folder(config, method, model_args, context)
            if context.is_main:
                if resume is None:  # a run that fails before its first checkpoint leaves no folder behind
                    stack.enter_context(runs.discarded_on_failure(out))
                stack.enter_context(runs.logged(out))
            else:  # only rank 0 reports
                config.quiet = True
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            return _train(config, method, model_args, loss_fn or make_loss(config), resume, out, context, device)
    finally:
        distributed.teardown()


def check_inputs(config: TrainConfig, resumed: bool = False) -> None:
    """What can be checked before anything is printed or created: every folder ``config`` reads
    is there, and ``--data-share`` has a value per ``--data`` folder. Raises TrainingError naming
    the first problem: for the checkout's default data, what to pass instead; for a ``resumed``
    run, which of its stored settings names the folder."""
    folders = as_folders(config.data)
    if config.data_share and len(config.data_share) != len(folders):
        raise TrainingError(f"--data-share has {len(config.data_share)} value(s) for {len(folders)} --data folder(s)")
    named = [("--data", f) for f in folders] + [("--clutter", f) for f in config.clutter or []]
    for option, folder in named + ([("--val", config.val)] if config.val else []):
        if not Path(stored_folder(folder)).is_dir():
            hint = (f" (the resumed run's {option})" if resumed
                    else f" (no checkout here? pass {option} FOLDER)" if folder == DEFAULT_DATA else "")
            raise TrainingError(f"{folder}: does not exist{hint}")


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


def _run_folder(config: TrainConfig, method: Method, model_args: dict[str, Any],
                context: distributed.Context) -> tuple[TrainConfig, dict[str, Any], dict[str, Any] | None, Path]:
    """The config, model arguments, resumed checkpoint (or None) and run folder of this run:
    a new numbered folder, or with --resume the resumed run's own."""
    if not config.resume:
        check_inputs(config)

        def make() -> Path:
            out = runs.new_run_folder(config, method.name)
            try:
                runs.create_run_folder(out)  # removed again if the run fails before its first checkpoint
            except OSError as e:
                raise TrainingError(f"cannot create run folder {out}: {e.strerror or e}") from None
            return out

        out = _on_main(context, make)
        return replace(config, out=str(out)), model_args, None, out

    def find() -> Path:
        try:
            return runs.resume_checkpoint(config, method.name)
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
    out = runs.folder_of_checkpoint(path)
    here = {k: v for k, v in config.settings().items() if k in config.LOCAL}
    config = replace(type(config).from_stored(resume["train_args"]), **here, resume=str(path), out=str(out))
    check_inputs(config, resumed=True)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    return config, resume["model_args"], resume, out


@dataclass
class TrainingData:
    """What one run trains and validates on: :func:`prepare_data`'s result."""

    train_set: MixedCropDataset
    loader: torch.utils.data.DataLoader
    sampler: torch.utils.data.DistributedSampler | None  # several processes: each its shard of the crops
    val_samples: list[Sample]  # whole validation images (clutter frames included): metrics and threshold
    val_loader: torch.utils.data.DataLoader  # fixed validation crops of the labelled images: the loss
    clutter: list[Sample]  # training clutter frames, where false alarms are mined
    train_images: int
    failures: list[str]  # files that could not be read, listed again at the end

    @property
    def mines(self) -> bool:
        """Whether validation epochs also mine false alarms on the clutter frames."""
        return bool(self.clutter) and self.train_set.hard_share > 0


def prepare_data(config: TrainConfig, method: Method, context: distributed.Context) -> TrainingData:
    """Read the data, carve the validation split and build the crop datasets and their loaders."""
    failures: list[str] = []
    train_sets, val_samples = load_data(config, method, failures)
    clutter, clutter_val = load_clutter_frames(config, failures)
    train_samples = [s for samples in train_sets for s in samples]
    patches = cut_patches(train_samples) if clutter and config.paste > 0 else []
    if clutter:
        print(f"{len(patches)} target patch(es) cut out with their masks, to paste into clutter")
    shares = config.data_share or [len(samples) for samples in train_sets]
    if len(shares) != len(train_sets):
        raise TrainingError(f"--data-share has {len(shares)} value(s) for {len(train_sets)} --data folder(s)")
    train_set = MixedCropDataset(train_sets, shares, config.crops_per_epoch or len(train_samples) * config.repeats,
                                 config.crop, config.seed, config.target_fraction, method.keep_target_in_crop, clutter,
                                 config.clutter_share, patches, config.paste, config.hard_share,
                                 spreads=config.shape_target, composite=config.composite, clutter_zoom=config.clutter_zoom)
    val_set = CropDataset(val_samples, config.crop, config.seed + 1, augment=False, keep_one=method.keep_target_in_crop,
                          spreads=config.shape_target)
    try:
        batch = distributed.per_process_batch(config.batch_size, context)
    except distributed.DistributedSetupError as e:
        raise TrainingError(str(e)) from None
    # Several processes: each its shard of the epoch's crops, in an order fixed by seed and epoch.
    sampler = (torch.utils.data.DistributedSampler(train_set, context.world_size, context.rank, shuffle=True,
                                                   seed=config.seed, drop_last=True) if context.active else None)
    # Workers are forked at each epoch (not persistent), so they see the false alarms just mined.
    loader = torch.utils.data.DataLoader(train_set, batch, shuffle=sampler is None, sampler=sampler,
                                         num_workers=config.workers, drop_last=len(train_set) >= config.batch_size,
                                         generator=torch.Generator().manual_seed(config.seed),
                                         prefetch_factor=4 if config.workers else None)
    return TrainingData(train_set, loader, sampler, val_samples + clutter_val,
                        torch.utils.data.DataLoader(val_set, config.batch_size), clutter, len(train_samples), failures)


@dataclass
class TrainingModel:
    """The net and everything that updates it: :func:`build_model`'s result."""

    net: torch.nn.Module  # the raw weights the optimiser steps
    trained: torch.nn.Module  # what the training steps call: net, or net in DDP
    averaged: torch.optim.swa_utils.AveragedModel | None  # --ema's moving average
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    precision: torch.dtype | None  # autocast's type; None: full precision

    @property
    def saved(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average with --ema, else the net."""
        return self.averaged.module if self.averaged else self.net


def build_model(config: TrainConfig, method: Method, model_args: dict[str, Any], steps_per_epoch: int,
                context: distributed.Context, device: torch.device) -> TrainingModel:
    """The net of ``model_args``, its optimiser, learning-rate schedule, precision and moving average."""
    net = method.build(model_args).to(device, memory_format=FORMAT)
    precision = distributed.autocast_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)  # bfloat16 needs no loss scaling
    # With --ema, a moving average of the weights (torch's AveragedModel, batch-norm statistics
    # included) is what is validated and saved: it smooths the step-to-step noise of a small dataset.
    averaged = (torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema), use_buffers=True)
        if config.ema else None)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * max(steps_per_epoch, 1)
    # 10% warm-up, but at least 2 steps: OneCycleLR divides by zero when warm-up is exactly 1 step
    # (e.g. 10 steps in all) or the whole run.
    warmup = min(0.6, max(0.1, 2 / steps))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps, pct_start=warmup)
    return TrainingModel(net, distributed.wrap(net, context, device), averaged, optimizer, scheduler, scaler, precision)


def restore(model: TrainingModel, resume: dict[str, Any]) -> None:
    """Load a last.pt's weights, moving average, optimiser, schedule and loss scale into ``model``."""
    model.net.load_state_dict(resume.get("train_state", resume["model_state"]))
    if model.averaged:
        model.averaged.load_state_dict(resume["ema_state"])
    model.optimizer.load_state_dict(resume["optimizer"])
    model.scheduler.load_state_dict(resume["scheduler"])
    if model.scaler.is_enabled() and "scaler" in resume:
        model.scaler.load_state_dict(resume["scaler"])


def train_one_epoch(model: TrainingModel, data: TrainingData, loss_fn: LossFn, epoch: int, config: TrainConfig,
                    context: distributed.Context, device: torch.device) -> float:
    """One pass over the epoch's crops; the mean training loss over all processes."""
    data.train_set.epoch = epoch
    data.loader.generator.manual_seed(config.seed * 100_003 + epoch)
    if data.sampler is not None:
        data.sampler.set_epoch(epoch)
    total, count = 0.0, 0
    bar = tqdm(data.loader, desc=f"epoch {epoch}/{config.epochs}", disable=config.quiet, leave=False)
    for images, points, counts in bar:
        with torch.autocast(device.type, dtype=model.precision, enabled=model.precision is not None):
            loss = loss_fn(model.trained, images.to(device, memory_format=FORMAT), points.to(device), counts.to(device))
        model.optimizer.zero_grad(set_to_none=True)
        model.scaler.scale(loss).backward()
        model.scaler.step(model.optimizer)
        model.scaler.update()
        model.scheduler.step()
        if model.averaged:
            model.averaged.update_parameters(model.net)
        total, count = total + loss.item(), count + 1
        bar.set_postfix(loss=f"{total / count:.5f}")
    # Every process now holds the same weights; make their batch-norm statistics the same too.
    distributed.average_buffers(model.net, context)
    if model.averaged:
        distributed.average_buffers(model.averaged, context)
    return distributed.mean(total / max(count, 1), context)


def validate_and_mine(model: TrainingModel, data: TrainingData, method: Method, loss_fn: LossFn, epoch: int,
                      config: TrainConfig, history: list[dict[str, float]], device: torch.device
                      ) -> tuple[dict[str, float], float, bool]:
    """On a validation epoch: the validation metrics, the threshold they pick and, with clutter,
    the false alarms mined for the next epochs (into ``data.train_set.hard``). Between validations
    the last validated threshold stays and the metrics are not this epoch's. Also returns whether
    this epoch was validated."""
    if not is_validation_epoch(epoch, config.epochs, config.val_every):
        return {"loss": float("nan")}, (history[-1]["conf"] if history else 0.0), False
    metrics, conf = evaluate_epoch(model.saved, method, data.val_samples, data.val_loader, loss_fn, device,
                                   config.max_false_per_mpx)
    if data.mines:
        localizer = Localizer(method, model.saved, conf=0.0, device=device, relative=False)
        data.train_set.hard = mine_false_alarms(localizer, data.clutter, config.mine_frames,
                                                np.random.default_rng((config.seed, epoch)))
        model.saved.train()
    return metrics, conf, True


def checkpoint_state(config: TrainConfig, method: Method, model_args: dict[str, Any], model: TrainingModel,
                     epoch: int, conf: float, metrics: dict[str, float], history: list[dict[str, float]],
                     world_size: int, resumable: bool) -> dict[str, Any]:
    """A checkpoint: last.pt (``resumable``) holds all --resume needs; best.pt only what inference
    needs, so it ships as it is."""
    state = {"method": method.name, "model_args": model_args, "model_state": model.saved.state_dict(),
             "decode": {"conf": conf}, "epoch": epoch, "metrics": metrics, "history": history,
             "train_args": {k: v for k, v in config.settings().items() if k != "resume"}, "world_size": world_size}
    if resumable:
        state |= {"optimizer": model.optimizer.state_dict(), "scheduler": model.scheduler.state_dict()}
        if model.scaler.is_enabled():
            state["scaler"] = model.scaler.state_dict()
        if model.averaged:
            state |= {"train_state": model.net.state_dict(), "ema_state": model.averaged.state_dict()}
    return state


def no_validation_reason(config: TrainConfig, data: TrainingData) -> str | None:
    """Why this run has no validation figures at all (no validation images), or None if it has them."""
    if data.val_samples:
        return None
    if config.val:
        why = f"--val {config.val} holds no usable image"
    elif config.val_fraction == 0:
        why = "--val-fraction 0"
    else:
        why = f"--val-fraction {config.val_fraction:g} of {data.train_images} image(s) is less than one"
    return f"no validation split ({why}): no validation figures, and best.pt is the last epoch"


def epoch_line(row: dict[str, float], metrics: dict[str, float], epochs: int, validated: bool) -> str:
    """The line printed after each epoch: its loss and, on a validation epoch, the validation
    figures that could be computed (saying why the others could not: never a bare nan)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.5f}"]
    if validated:
        if np.isfinite(row["val_AP@3px"]):
            parts += [f"val AP@3px {row['val_AP@3px']:.3f}", f"Pd@3px (any score) {row['val_Pd@3px']:.3f}",
                      f"err {row['val_err@3px']:.2f}px" if np.isfinite(row["val_err@3px"])
                      else "err - (no target found within 3 px)"]
        else:
            parts.append("val AP/Pd/err - (no labelled target in validation)")
        if np.isfinite(row["val_loss"]):
            parts.insert(2, f"val loss {row['val_loss']:.5f}")
        parts += [f"{k} {v:.3f}" for k, v in metrics.items() if " " in k and np.isfinite(v)]
    return "  ".join(parts + [f"({row['seconds']:.0f}s)"])


def _train(config: TrainConfig, method: Method, model_args: dict[str, Any], loss_fn: LossFn,
           resume: dict[str, Any] | None, out: Path, context: distributed.Context, device: torch.device) -> Path:
    """The run, step by step: data, model, then per epoch train, validate and mine, save and report."""
    torch.manual_seed(config.seed)
    print(f"{method.name}: training on {device}" + (f" x {context.world_size} processes" if context.active else "")
          + f", run folder {out}")
    data = prepare_data(config, method, context)
    model = build_model(config, method, model_args, len(data.loader), context, device)
    start_epoch, history, best_score = 0, [], -float("inf")
    if resume:
        restore(model, resume)
        start_epoch, history = resume["epoch"], resume["history"]
        best_score = max((selection_score(h) for h in history if h.get("validated", True)), default=-float("inf"))
        print(f"resuming {config.resume} after epoch {start_epoch} of {config.epochs}"
              + (f" (trained with {resume.get('world_size', 1)} process(es), now {context.world_size})"
                 if resume.get("world_size", 1) != context.world_size else ""))
    if context.is_main:
        runs.write_settings(out, config.settings(), model_args, world_size=context.world_size, device=str(device),
                            precision=str(model.precision or torch.float32).replace("torch.", ""))
    plotter = VisdomPlotter(config.visdom_server, config.visdom_port, config.visdom_env) if config.visdom and context.is_main else None
    n_params = sum(p.numel() for p in model.net.parameters())
    print(f"{method.name} net: {n_params:,} parameters, {data.train_images} train / {len(data.val_samples)} val images, "
          f"{len(data.loader)} steps per epoch")
    no_validation = no_validation_reason(config, data)
    if no_validation:
        print(no_validation)

    model.net.train()
    plotted = -float("inf")
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            started = time.time()
            train_loss = train_one_epoch(model, data, loss_fn, epoch, config, context, device)
            if context.is_main:  # the others wait below for the false alarms rank 0 mines, or at the barrier
                validation_started = time.time()
                metrics, conf, validated = validate_and_mine(model, data, method, loss_fn, epoch, config, history, device)
                row = {"epoch": epoch, "train_loss": train_loss, "val_loss": metrics["loss"],
                       "val_AP@3px": metrics.get("AP@3px", float("nan")), "val_Pd@3px": metrics.get("Pd@3px", float("nan")),
                       "val_err@3px": metrics.get("err_mean@3px", float("nan")), "conf": conf,
                       "lr": model.optimizer.param_groups[0]["lr"], "seconds": time.time() - started,
                       "val_seconds": time.time() - validation_started, "validated": int(validated)}
                history.append(row)
                score_now = selection_score(row) if validated else -float("inf")
                if score_now > best_score:
                    best_score = score_now
                    save_checkpoint(out / "weights" / "best.pt", checkpoint_state(
                        config, method, model_args, model, epoch, conf, metrics, history, context.world_size, False))
                save_checkpoint(out / "weights" / "last.pt", checkpoint_state(
                    config, method, model_args, model, epoch, conf, metrics, history, context.world_size, True))
                # The picture is redrawn every PLOT_EVERY seconds and at the end (after Ctrl+C it may
                # lag; --resume redraws it); the CSV every epoch.
                plot = epoch == config.epochs or time.time() - plotted >= PLOT_EVERY
                write_history(out, history, plot)
                plotted = time.time() if plot else plotted
                if plotter:
                    plotter.plot(epoch, {"train": row["train_loss"], "val": row["val_loss"]}, "loss")
                    plotter.plot(epoch, {"AP@3px": row["val_AP@3px"], "Pd@3px": row["val_Pd@3px"]}, "validation")
                print(epoch_line(row, metrics, config.epochs, validated and not no_validation), flush=True)
            if is_validation_epoch(epoch, config.epochs, config.val_every) and data.mines:
                data.train_set.hard = distributed.broadcast(data.train_set.hard, context)
            distributed.barrier(context)
    except KeyboardInterrupt:
        raise TrainingInterrupted(out / "weights" / "last.pt") from None
    if os.environ.get(DIGEST_ENV):
        digests = {"rank": context.rank, "world_size": context.world_size, "net": distributed.state_digest(model.net),
                   "saved": distributed.state_digest(model.saved)}
        atomic_write(Path(os.environ[DIGEST_ENV]) / f"rank{context.rank}.json", json.dumps(digests).encode())
    print(f"done: best {out / 'weights' / 'best.pt'}, last {out / 'weights' / 'last.pt'}, curves {out / 'losses.png'}")
    if data.failures:  # training went on without them (exit code 0); repeated here so they are not missed
        print(f"{len(data.failures)} file(s) could not be used:")
        print("\n".join(f"  failed: {line}" for line in data.failures))
    return out / "weights" / "best.pt"
