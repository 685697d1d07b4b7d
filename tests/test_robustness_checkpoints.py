"""Bad weights files give one clear line (API, detect.py, evaluate CLI), nothing runs code, and
checkpoints and label files are written atomically (a crash mid-write keeps the previous file)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PATIENCE

from simple_keypoint import labels
from simple_keypoint.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from simple_keypoint.evaluate import main as evaluate_main
from simple_keypoint.labels import read_labels, write_labels
from simple_keypoint.predict import build_model, load_model

REPO = Path(__file__).resolve().parents[1]
TINY = {"widths": (4, 8), "full_res_channels": 2}


class RunsCode:
    """Unpickling this runs a shell command: a checkpoint must never be able to do that."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny(method: str = "heatmap", model_args: dict | None = None) -> dict:
    model_args = model_args or (TINY if method == "heatmap" else {"widths": (4, 8), "full_res_channels": 2})
    net = build_model(method, model_args)
    return {"method": method, "model_args": model_args, "model_state": net.state_dict(), "decode": {"conf": 0.3}}


def bad_checkpoints(folder: Path) -> dict[str, str]:
    """Write every kind of bad checkpoint; returns {file name: what its one-line message must say}."""
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "good.pt", tiny())
    raw = (folder / "good.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (folder / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "empty.pt").write_bytes(b"")
    torch.save({"method": "heatmap", "model_state": RunsCode(folder / "PWNED")}, folder / "runs_code.pt")
    (folder / "runs_code.pkl").write_bytes(pickle.dumps(RunsCode(folder / "PWNED")))
    save_checkpoint(folder / "other_widths.pt", {**tiny(), "model_args": {"widths": (8, 16, 32), "full_res_channels": 4}})
    other = tiny()
    other["model_args"] = {"widths": (6, 12), "full_res_channels": 2}
    save_checkpoint(folder / "args_disagree.pt", other)  # args say one size, weights are another
    save_checkpoint(folder / "no_widths.pt", {**tiny(), "model_args": {"widths": ()}})
    save_checkpoint(folder / "not_tensors.pt", {**tiny(), "model_state": {"w": 3}})
    save_checkpoint(folder / "bad_decode.pt", {**tiny(), "decode": {"threshold": 0.5}})
    save_checkpoint(folder / "not_a_dict.pt", [1, 2, 3])
    save_checkpoint(folder / "unknown_method.pt", {**tiny(), "method": "yolo"})
    return {
        "truncated.pt": "not a readable checkpoint (truncated or not a simple_keypoint file",
        "random.pt": "refused: not a plain weights file",
        "empty.pt": "not a readable checkpoint (truncated or not a simple_keypoint file: EOFError)",
        "runs_code.pt": "refused: not a plain weights file",
        "runs_code.pkl": "refused: not a plain weights file",
        "other_widths.pt": "weights do not fit the heatmap architecture {'widths': (8, 16, 32), 'full_res_channels': 4}: "
                           "24 wrong-shaped, 16 missing, 0 unexpected tensor(s), e.g. down.0.0.0.weight is (8, 4, 3, 3), "
                           "expected (16, 8, 3, 3)",
        "args_disagree.pt": "weights do not fit the heatmap architecture {'widths': (6, 12), 'full_res_channels': 2}: "
                            "20 wrong-shaped, 0 missing, 0 unexpected tensor(s), e.g. down.0.0.0.weight is (8, 4, 3, 3), "
                            "expected (12, 6, 3, 3)",
        "no_widths.pt": "bad heatmap model settings {'widths': ()} (tuple index out of range)",
        "not_tensors.pt": "model_state is not a set of named tensors",
        "bad_decode.pt": "bad decode settings {'threshold': 0.5}",
        "not_a_dict.pt": "not a simple_keypoint checkpoint (no method/model_state)",
        "unknown_method.pt": "unknown method 'yolo'",
        "missing.pt": "no such checkpoint file",
    }


def test_bad_checkpoints_through_the_api(tmp_path: Path) -> None:
    for name, says in bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            load_model(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / name}: ") and says in message, message
        assert "\n" not in message and len(message) < 400, message
    assert not (tmp_path / "PWNED").exists()  # weights_only=True: the pickled command never ran
    assert load_model(tmp_path / "good.pt").method == "heatmap"


def test_wrong_method(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "r.pt", tiny("regression"))
    with pytest.raises(CheckpointError, match=r"r\.pt: is a regression checkpoint, expected heatmap$"):
        load_checkpoint(tmp_path / "r.pt", method="heatmap")
    assert load_checkpoint(tmp_path / "r.pt", method="regression")["method"] == "regression"


def test_loads_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path / "good.pt", tiny())
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("weights_only")) or real(*a, **k))
    load_model(tmp_path / "good.pt")
    assert seen == [True]


def test_bad_checkpoints_through_detect_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    says = bad_checkpoints(tmp_path / "w")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    import cv2

    cv2.imwrite(str(data / "images" / "a.png"), np.full((20, 24), 30, np.uint8))
    write_labels(data / "labels" / "a.txt", np.array([[0.5, 0.5]]))
    import detect  # importable: `python -m pytest` runs from the repository
    for name, text in says.items():
        path = tmp_path / "w" / name
        for main, argv in ((evaluate_main, ["--weights", str(path), "--data", str(data)]),
                           (detect.main, ["--weights", str(path), "--source", str(data / "images"),
                                          "--out", str(tmp_path / "out"), "--quiet"])):
            assert main(argv) == 2
            out, err = capsys.readouterr()
            assert err.startswith(f"error: {path}: ") and text in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written when the weights are unusable
    # And as real processes: the exit code and a single stderr line, no traceback.
    for script in (["detect.py", "--source", str(data / "images"), "--out", str(tmp_path / "out")],
                   ["-m", "simple_keypoint.evaluate", "--data", str(data)]):
        run = subprocess.run([sys.executable, *script, "--weights", str(tmp_path / "w" / "runs_code.pt")], cwd=REPO,
                             capture_output=True, text=True, timeout=PATIENCE)
        assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
        assert "refused: not a plain weights file" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "w" / "PWNED").exists()


# --- atomic writes -----------------------------------------------------------------------------

def no_litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("where", ["os.replace", "os.fsync"])
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_crash_while_writing_keeps_previous_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  where: str, error: BaseException) -> None:
    save_checkpoint(tmp_path / "last.pt", tiny())
    write_labels(tmp_path / "a.txt", np.array([[0.25, 0.75, 0.5]]))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash(*args, **kwargs):
        raise error

    monkeypatch.setattr(labels.os, where.split(".")[1], crash)
    with pytest.raises(type(error)):
        save_checkpoint(tmp_path / "last.pt", {**tiny(), "epoch": 2})
    with pytest.raises(type(error)):
        write_labels(tmp_path / "a.txt", np.array([[0.1, 0.1]]))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert no_litter(tmp_path) == []
    assert "epoch" not in load_checkpoint(tmp_path / "last.pt")
    assert read_labels(tmp_path / "a.txt").tolist() == [[0.25, 0.75, 0.5]]


def test_killed_mid_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """SIGKILL in the middle of save_checkpoint (here: while the temp file is being synced)."""
    save_checkpoint(tmp_path / "last.pt", {**tiny(), "epoch": 1})
    child = ("import os, sys, time, torch\n"
             "from simple_keypoint import labels\n"
             "from simple_keypoint.checkpoint import save_checkpoint\n"
             "def stall(fd):\n    print('writing', flush=True); time.sleep(60)\n"
             "labels.os.fsync = stall\n"
             "save_checkpoint(sys.argv[1], {'method': 'heatmap', 'model_state': {'w': torch.zeros(1000, 1000)}})\n")
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path / "last.pt")], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=PATIENCE)
    assert load_checkpoint(tmp_path / "last.pt", method="heatmap")["epoch"] == 1
    # A kill cannot clean up: a hidden temp file may stay, but it never has the checkpoint's name.
    assert all(p.name.startswith(".last.pt.") for p in tmp_path.iterdir() if p.name != "last.pt")
