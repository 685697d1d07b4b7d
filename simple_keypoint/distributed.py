"""Training on several processes (``torchrun --nproc_per_node N -m simple_keypoint.heatmap.train``).

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; :func:`setup` joins
the process group (NCCL on CUDA, one GPU per process; gloo on the CPU, the cores split evenly
between the processes). ``--batch-size`` stays the global batch: each process takes its share of
it and its shard of every epoch's crops, so a run takes the same steps with any number of
processes. DistributedDataParallel averages the gradients; batch-norm statistics, which each
process gathers on its own crops, are averaged at the end of every epoch, so all processes hold
the same weights and buffers. Only rank 0 validates, writes checkpoints, logs and plots; the
others wait for it. Without torchrun (or with one process) nothing here changes training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


class DistributedSetupError(RuntimeError):
    """The distributed settings cannot work (e.g. a batch that does not split between the processes)."""


@dataclass(frozen=True)
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Context:
    """The torchrun settings of this process (a single process without them)."""
    def number(name: str, default: int) -> int:
        return int(os.environ.get(name, default))

    world = number("WORLD_SIZE", 1)
    return Context(number("RANK", 0), number("LOCAL_RANK", 0), world, number("LOCAL_WORLD_SIZE", world))


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group when torchrun started several processes; returns the context and
    this process's device (``cuda:LOCAL_RANK`` on CUDA)."""
    context = from_environment()
    if not context.active:
        return context, device
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    else:  # each process would otherwise start one thread per core, and they would fight for them
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // context.local_world_size))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                **({"device_id": device} if device.type == "cuda" else {}))
    return context, device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def per_process_batch(batch_size: int, context: Context) -> int:
    """This process's part of the global ``batch_size``; DistributedSetupError if it does not split evenly."""
    if batch_size % context.world_size:
        raise DistributedSetupError(f"--batch-size {batch_size} (the global batch) does not split between "
                                    f"{context.world_size} processes; use a multiple of {context.world_size}")
    return batch_size // context.world_size


def broadcast(value: Any, context: Context) -> Any:
    """Rank 0's ``value`` on every process (any picklable object); also a barrier."""
    if not context.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Context) -> None:
    if context.active:
        dist.barrier()


def mean(value: float, context: Context) -> float:
    """The mean of ``value`` over the processes."""
    if not context.active:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def average_buffers(module: torch.nn.Module, context: Context) -> None:
    """Average the floating-point buffers (batch-norm running statistics) over the processes."""
    if not context.active:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(context.world_size)


def wrap(net: torch.nn.Module, context: Context, device: torch.device) -> torch.nn.Module:
    """``net`` in DistributedDataParallel when several processes train, else ``net`` itself."""
    if not context.active:
        return net
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The mixed-precision type on CUDA (bfloat16 where the GPU has it, else float16); None: full precision.
    Only CUDA: on the CPU, autocast makes these small convolutions slower, not faster."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def state_digest(*modules: torch.nn.Module) -> str:
    """A sha256 of the modules' state (parameters and buffers), to compare processes."""
    import hashlib

    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
