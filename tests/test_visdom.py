"""Live loss plots: a real visdom server on 127.0.0.1 receives exactly the losses training writes to losses.csv."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import pytest
import visdom
from conftest import PATIENCE, TINY_TRAIN_ARGS, clean_env, free_port, run_python

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the visdom client's own logger.warn


def answers(port: int) -> bool:
    try:
        return visdom.Visdom(server="http://127.0.0.1", port=port, raise_exceptions=True,
                             use_incoming_socket=False).check_connection(timeout_seconds=1)
    except ConnectionError:
        return False


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory):
    """A visdom server bound to 127.0.0.1 on a free port (no web front-end download); yields the port."""
    port = free_port()
    folder = tmp_path_factory.mktemp("visdom")
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-c", "from visdom.server.run_server import main; main()",
                               "-port", str(port), "-bind_local", "-env_path", str(folder / "envs")],
                              cwd=folder, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + PATIENCE
        while not answers(port):
            assert server.poll() is None and time.time() < deadline, (folder / "server.log").read_text()
            time.sleep(0.5)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_training_plots_its_losses_on_the_server(visdom_server, tiny_dataset, tmp_path):
    env_name = "simple_keypoint_test_loss"
    out = tmp_path / "run"
    result = run_python("-m", "simple_keypoint.heatmap.train", "--data", tiny_dataset, "--out", out,
                        *TINY_TRAIN_ARGS, "--epochs", "2",
                        "--visdom", "--visdom-port", visdom_server, "--visdom-env", env_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"visdom: plotting to http://127.0.0.1:{visdom_server}" in result.stdout
    assert result.stderr.strip() == ""

    with open(out / "losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    client = visdom.Visdom(server="http://127.0.0.1", port=visdom_server, raise_exceptions=True,
                           use_incoming_socket=False)
    window = json.loads(client.get_window_data("loss", env=env_name))
    lines = {trace["name"]: trace for trace in window["content"]["data"]}
    assert sorted(lines) == ["train", "val"]
    for name, column in (("train", "train_loss"), ("val", "val_loss")):
        assert lines[name]["x"] == [1, 2]
        assert lines[name]["y"] == pytest.approx([float(r[column]) for r in rows], rel=1e-9)
    validation = json.loads(client.get_window_data("validation", env=env_name))
    assert {trace["name"] for trace in validation["content"]["data"]} == {"AP@3px", "Pd@3px"}
