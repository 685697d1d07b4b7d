"""Both train.py with bad labels, empty and non-ASCII folders; interrupted (SIGINT, SIGKILL) and
resumed runs; a visdom server that is absent, dies or hangs."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import PATIENCE

from simple_keypoint.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = {"heatmap": ["--widths", "4", "8", "--full-res-channels", "2"],
        "regression": ["--widths", "4", "8", "--full-res-channels", "2"]}
FAST = ["--crop", "16", "--batch-size", "4", "--repeats", "1", "--device", "cpu", "--quiet"]
# One thread: tiny nets gain nothing from more, and a shared 2-core machine loses a lot to contention.
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("SIMPLE_KEYPOINT_VISDOM")},
       "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def spot(h: int = 24, w: int = 32, seed: int = 0) -> tuple[np.ndarray, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    image = rng.integers(10, 40, (h, w)).astype(np.uint8)
    u, v = int(rng.integers(2, w - 2)), int(rng.integers(2, h - 2))
    image[v, u] = 250
    return image, ((u + 0.5) / w, (v + 0.5) / h)


def make_dataset(root: Path, n: int, size: tuple[int, int] = (24, 32)) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, (x, y) = spot(*size, seed=i)
        cv2.imwrite(str(root / "images" / f"good_{i}.png"), image)
        (root / "labels" / f"good_{i}.txt").write_text(f"1\n{x:.6f} {y:.6f}\n")
    return root


def train_cmd(method: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"simple_keypoint.{method}.train", *TINY[method], *FAST, *args]


def run_train(method: str, *args: str) -> subprocess.CompletedProcess:
    """Run a train.py's main in this process (no second torch import): its exit code, stdout, stderr."""
    module = importlib.import_module(f"simple_keypoint.{method}.train")
    argv = [*TINY[method], *FAST, *args]
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGTERM)  # training points SIGTERM at KeyboardInterrupt
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = module.main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
                if isinstance(e.code, str):
                    print(e.code, file=stderr)
    finally:
        signal.signal(signal.SIGTERM, handler)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


# --- bad labels and folders ----------------------------------------------------------------------

def make_messy_dataset(root: Path) -> Path:
    make_dataset(root, 4)
    images, labels = root / "images", root / "labels"
    good, _ = spot()
    for name, text in {"outside": "1\n1.5 0.5\n", "count": "2\n0.5 0.5\n", "dup": "2\n0.5 0.5\n0.5 0.5\n",
                       "two": "2\n0.25 0.25\n0.75 0.75\n", "one_pixel": "1\n0.5 0.5\n", "corrupt": "1\n0.5 0.5\n"}.items():
        (labels / f"{name}.txt").write_text(text)
        cv2.imwrite(str(images / f"{name}.png"), good if name != "one_pixel" else np.array([[200]], np.uint8))
    (images / "corrupt.png").write_bytes((images / "corrupt.png").read_bytes()[:60])
    (labels / "orphan.txt").write_text("1\n0.5 0.5\n")
    cv2.imwrite(str(images / "no_label.png"), good)
    return root


@pytest.mark.parametrize("method, usable, skipped", [
    ("heatmap", 7, ""),
    ("regression", 6, "  1 image(s) skipped (2 targets; this method needs 1..1): two.png"),
])
def test_bad_labels_are_reported_before_training(tmp_path: Path, method: str, usable: int, skipped: str) -> None:
    data = make_messy_dataset(tmp_path / "data")
    run = run_train(method, "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1"))
    report = lines[:first_epoch]
    expected = [
        f"{data}: {usable} image(s) usable",
        "  1 image(s) without a label file, not used: no_label.png",
        "  1 label file(s) without an image: orphan.txt",
        *([skipped] if skipped else []),
        "  1 label file(s) with duplicate points (kept once): dup.txt",
        "  3 file(s) failed:",
        f"    {data / 'images' / 'corrupt.png'}: not a readable image (corrupt, truncated or not an image)",
        f"    {data / 'labels' / 'count.txt'}:1: says 2 point(s) but 1 line(s) follow",
        f"    {data / 'labels' / 'outside.txt'}:2: point (1.5, 0.5) is outside [0, 1]",
    ]
    start = report.index(expected[0])
    assert report[start:start + len(expected)] == expected
    # Training went on, and the failures are listed again at the very end.
    assert lines[-4:] == ["3 file(s) could not be used:", *(f"  failed: {line.strip()}" for line in expected[-3:])]
    assert load_checkpoint(tmp_path / "run" / "weights" / "last.pt", method)["epoch"] == 1
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_refuses_to_start_when_nothing_is_usable(tmp_path: Path, method: str) -> None:
    data = make_messy_dataset(tmp_path / "data")
    for p in (data / "images").glob("good_*"):
        p.unlink()
    for name in ("dup", "one_pixel", "two"):  # leave only the broken and unmatched files
        (data / "images" / f"{name}.png").unlink()
    run = run_train(method, "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "run"))
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"error: no usable training images in {data}"
    assert "  3 file(s) failed:" in run.stdout and "epoch 1/" not in run.stdout and "Traceback" not in run.stderr
    assert not (tmp_path / "run" / "weights" / "last.pt").exists()


@pytest.mark.parametrize("method", ["heatmap", "regression"])
def test_empty_missing_and_non_ascii_folders(tmp_path: Path, method: str) -> None:
    empty = tmp_path / "vide é 空"
    (empty / "images").mkdir(parents=True)
    cases = {
        empty: f"error: no usable training images in {empty}",
        tmp_path / "nowhere": f"error: {tmp_path / 'nowhere'}: does not exist",
        tmp_path / "flat": f"error: {tmp_path / 'flat'}: no images/ folder (expected {tmp_path / 'flat' / 'images'})",
    }
    (tmp_path / "flat").mkdir()
    for folder, message in cases.items():
        run = run_train(method, "--data", str(folder), "--epochs", "1", "--out", str(tmp_path / "run"))
        assert run.returncode == 1 and run.stderr.strip().splitlines()[-1] == message, run.stderr
        assert "Traceback" not in run.stderr
    # A non-ASCII data, validation and run folder all work.
    data = make_dataset(tmp_path / "données 数据", 3)
    val = make_dataset(tmp_path / "validación", 2)
    run = run_train(method, "--data", str(data), "--val", str(val), "--epochs", "1", "--out", str(tmp_path / "выход"))
    assert run.returncode == 0, run.stderr
    assert load_checkpoint(tmp_path / "выход" / "weights" / "best.pt", method)["epoch"] == 1


def test_resume_from_a_bad_checkpoint(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 3)
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    run = run_train("heatmap", "--data", str(data), "--resume", str(tmp_path / "junk.pt"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (f"error: {tmp_path / 'junk.pt'}: refused: not a plain weights file (holds code "
                                  "or foreign objects, or is not a checkpoint at all); only weights are ever loaded")


# --- interrupted and resumed runs ----------------------------------------------------------------

class Run:
    """A training process whose stdout lines can be waited for."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = PATIENCE) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.time(), 0.01))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        self.stop()
        raise AssertionError(f"no line starting {prefix!r}; output so far:\n" + "\n".join(self.seen))

    def finish(self, timeout: float = PATIENCE) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"waited {timeout:.0f} s for training to end; killed it. Output so far:\n"
                                 + "\n".join(self.seen)) from None
        while (line := self.lines.get(timeout=PATIENCE)) is not None:
            self.seen.append(line)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for_epoch(last: Path, epoch: int, run: Run, timeout: float = PATIENCE) -> int:
    """Poll last.pt until it holds at least ``epoch``; returns the epoch it holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if last.exists():
            done = load_checkpoint(last)["epoch"]  # always loadable: written atomically
            if done >= epoch:
                return done
        assert run.proc.poll() is None, "training ended early:\n" + "\n".join(run.seen)
        time.sleep(0.05)
    run.stop()
    raise AssertionError(f"{last} never reached epoch {epoch}")


def test_killed_runs_resume_to_the_same_final_epoch(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 8)
    out, epochs = tmp_path / "run", 6  # room for a late SIGINT and a kill before the end
    last = out / "weights" / "last.pt"
    # ~90 small steps per epoch: long enough that a kill lands mid-epoch, short enough for the suite.
    slow = ["--data", str(data), "--out", str(out), "--epochs", str(epochs), "--repeats", "50", "--batch-size", "4"]

    first = Run(train_cmd("heatmap", *slow))
    try:
        steps_per_epoch = int(first.wait_for("heatmap net: ").split(", ")[-1].split()[0])
        wait_for_epoch(last, 1, first)
        first.wait_for("epoch 1/")  # epoch 1 wholly done (saved, logged, plotted): the signal lands in epoch 2's steps
        first.proc.send_signal(signal.SIGINT)
        # 130 from sys.exit, or death by the signal after the message (a shell shows 130 for both);
        # what matters, the message and a loadable last.pt, is checked below.
        assert first.finish() in (130, -signal.SIGINT), first.seen
    finally:
        first.stop()
    assert any(line.startswith("interrupted; the last completed epoch is in") for line in first.seen), first.seen
    stopped_at = load_checkpoint(last, "heatmap")["epoch"]
    assert 1 <= stopped_at < epochs

    second = Run(train_cmd("heatmap", "--resume", str(last)))
    try:
        second.wait_for(f"resuming {last} after epoch {stopped_at} of {epochs}")
        killed_after = wait_for_epoch(last, stopped_at + 1, second)
        second.proc.send_signal(signal.SIGKILL)
        second.finish()
    finally:
        second.stop()
    after_kill = load_checkpoint(last, "heatmap")
    assert killed_after <= after_kill["epoch"] < epochs

    third = subprocess.run(train_cmd("heatmap", "--resume", str(last)), cwd=REPO, capture_output=True, text=True,
                           timeout=PATIENCE, env=ENV)
    assert third.returncode == 0, third.stdout + third.stderr
    final = load_checkpoint(last, "heatmap")
    assert final["epoch"] == epochs
    assert [row["epoch"] for row in final["history"]] == list(range(1, epochs + 1))
    # Optimizer and scheduler went on counting steps: the same as one uninterrupted run.
    assert final["scheduler"]["last_epoch"] == epochs * steps_per_epoch
    assert all(int(s["step"]) == epochs * steps_per_epoch for s in final["optimizer"]["state"].values())
    csv_epochs = [int(line.split(",")[0]) for line in (out / "losses.csv").read_text().splitlines()[1:]]
    assert csv_epochs == list(range(1, epochs + 1))
    assert not [p.name for p in (out / "weights").iterdir() if p.name.endswith(".tmp") and "best" in p.name]


# --- visdom --------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_visdom(port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-c", "from visdom.server.run_server import main; main()",
                               "-port", str(port), "-bind_local"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + PATIENCE
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError("visdom server did not start")


def visdom_run(tmp_path: Path, port: int, epochs: int) -> Run:
    data = make_dataset(tmp_path / "data", 6)
    return Run(train_cmd("heatmap", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", str(epochs),
                         "--visdom", "--visdom-port", str(port), "--visdom-env", "robustness_test"))


def test_visdom_absent(tmp_path: Path) -> None:
    port = free_port()
    run = visdom_run(tmp_path, port, 2)
    try:
        assert run.finish() == 0, "\n".join(run.seen)
    finally:
        run.stop()
    notices = [line for line in run.seen if "visdom:" in line]
    assert notices == [f"visdom: no server at http://127.0.0.1:{port} (ConnectionError); training without live plots"]


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_visdom_server_lost_mid_training(tmp_path: Path, how: str) -> None:
    """The server dies (connection refused) or hangs (accepts, never answers) after epoch 1."""
    import visdom

    port = free_port()
    server = start_visdom(port)
    run = visdom_run(tmp_path, port, 4)
    try:
        assert run.wait_for("visdom: ") == f"visdom: plotting to http://127.0.0.1:{port}, env robustness_test"
        run.wait_for("epoch 1/4")
        vis = visdom.Visdom(server="http://127.0.0.1", port=port, raise_exceptions=True, use_incoming_socket=False)
        traces = json.loads(vis.get_window_data("loss", env="robustness_test"))["content"]["data"]
        assert [(tr["name"], tr["x"]) for tr in traces] == [("train", [1.0]), ("val", [1.0])]  # epoch 1 was plotted
        if how == "killed":
            server.kill()
        else:
            server.send_signal(signal.SIGSTOP)
        # Bounded: a request to a hung server times out (the notice below) instead of stalling training.
        assert run.finish() == 0, "\n".join(run.seen)
    finally:
        run.stop()
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
    lost = [line for line in run.seen if "visdom:" in line and "lost" in line]
    assert len(lost) == 1 and lost[0].startswith("visdom: lost the server"), run.seen
    assert [line.split()[1] for line in run.seen if line.startswith("epoch ")] == ["1/4", "2/4", "3/4", "4/4"]
    assert not any("Error connecting" in line or "Traceback" in line for line in run.seen), run.seen
