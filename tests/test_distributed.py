"""``torchrun --nproc_per_node 2`` trains with DistributedDataParallel on the CPU (gloo): both
processes end with the same weights, only rank 0 writes the run, the checkpoint records the world
size and loads, and --resume continues a distributed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PATIENCE, clean_env, free_port
from test_runs import stop_after_first_epoch

from simple_keypoint import distributed, load_model
from simple_keypoint.checkpoint import load_checkpoint
from simple_keypoint.methods import net_from_checkpoint
from simple_keypoint.training import DIGEST_ENV

# torchrun comes with the torch wheel, beside this interpreter.
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
ARGS = ("--epochs", "2", "--crop", "64", "--batch-size", "4", "--repeats", "2", "--quiet", "--device", "cpu")


def torchrun(digests: Path, *args: str | os.PathLike, cwd: Path) -> subprocess.CompletedProcess:
    digests.mkdir(parents=True, exist_ok=True)
    env = clean_env() | {DIGEST_ENV: str(digests), "OMP_NUM_THREADS": "1"}
    command = [TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "simple_keypoint.heatmap.train", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=PATIENCE)


def rank_digests(folder: Path) -> list[dict]:
    found = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]
    assert [d["world_size"] for d in found] == [2, 2]
    return found


def test_two_cpu_processes_train_the_same_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    result = torchrun(tmp_path / "digests", "--data", tiny_dataset, *ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "heatmap"
    assert "training on cpu x 2 processes" in result.stdout
    assert result.stdout.count("epoch 2/2") == 1  # rank 0 alone reports
    assert not (tmp_path / "runs" / "heatmap2").exists()  # rank 1 made no folder of its own
    first, second = rank_digests(tmp_path / "digests")
    assert first["net"] == second["net"] and first["saved"] == second["saved"]

    last = load_checkpoint(run / "weights" / "last.pt")
    assert last["world_size"] == 2 and last["epoch"] == 2
    _, saved = net_from_checkpoint(last)
    assert distributed.state_digest(saved) == first["saved"]  # what rank 0 saved is what both hold
    for backend in ("torch", "auto"):
        assert load_model(run / "weights" / "best.pt", backend=backend).predict(tiny_dataset / "images" / "Misc_1.png").shape[1] == 3
    assert json.loads((run / "args.json").read_text())["world_size"] == 2
    assert (run / "train.log").read_text().count("epoch 2/2") == 1

    # Resume: the run made to look stopped after epoch 1 finishes epoch 2, again identically on both.
    stop_after_first_epoch(run / "weights" / "last.pt")
    resumed = torchrun(tmp_path / "digests2", "--resume", run / "weights" / "last.pt", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "after epoch 1 of 2" in resumed.stdout and "epoch 2/2" in resumed.stdout
    first, second = rank_digests(tmp_path / "digests2")
    assert first["net"] == second["net"] and first["saved"] == second["saved"]
    assert load_checkpoint(run / "weights" / "last.pt")["world_size"] == 2


def test_the_global_batch_must_split_between_processes() -> None:
    context = distributed.Context(rank=0, local_rank=0, world_size=2, local_world_size=2)
    assert distributed.per_process_batch(8, context) == 4
    with pytest.raises(distributed.DistributedSetupError, match="--batch-size 5"):
        distributed.per_process_batch(5, context)
    single = distributed.from_environment() if "WORLD_SIZE" not in os.environ else distributed.Context()
    assert not single.active and single.is_main and distributed.broadcast("x", single) == "x"


def test_mixed_precision_only_on_cuda() -> None:
    assert distributed.autocast_dtype(torch.device("cpu"), True) is None
    assert distributed.autocast_dtype(torch.device("cuda"), False) is None


def test_single_process_is_unchanged_by_the_distributed_code() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    before = distributed.state_digest(net)
    distributed.average_buffers(net, distributed.Context())
    assert distributed.wrap(net, distributed.Context(), torch.device("cpu")) is net
    assert distributed.state_digest(net) == before
