"""Multi-process training with ``torchrun``: process-group set-up, samplers and metric reduction.

``torchrun --nproc_per_node N -m taghead.cli train ...`` starts ``N`` processes with the environment
variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (NCCL with one GPU per process, Gloo
on the CPU). Without them it returns a single-process context and nothing else changes.

Data: training uses :class:`torch.utils.data.DistributedSampler` (one permutation per epoch, seeded
by ``seed + epoch``; rank ``r`` takes positions ``r, r + W, r + 2W, ...``), so with a per-process
batch of ``B / W`` the ``W`` processes together see exactly the samples of a single process with
batch ``B`` in the same step, when ``W`` divides the dataset size and ``B``. Evaluation uses
:class:`ShardSampler` (no padding, so no sample is counted twice) and the per-process counts are
summed with :func:`all_reduce_meter`, which makes the metrics exact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from .metrics import ClassificationMeter

__all__ = [
    "DistributedContext",
    "init_distributed",
    "cleanup_distributed",
    "ShardSampler",
    "build_train_sampler",
    "all_reduce_meter",
    "all_reduce_sum",
    "all_gather_objects",
    "broadcast_buffers",
    "barrier",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: this process's global rank.
        world_size: the number of processes.
        local_rank: its rank on this machine (which GPU it uses).
        device: the device it computes on.
        backend: the ``torch.distributed`` backend (``"nccl"``, ``"gloo"``), ``None`` without a process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, writes metrics and saves checkpoints."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_distributed(device: str | torch.device | None = None, timeout_s: float = 1800.0) -> DistributedContext:
    """Join the ``torchrun`` process group if the environment describes one; else a single-process context.

    Args:
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available). Under torchrun each process
            takes ``cuda:LOCAL_RANK``.
        timeout_s: collective timeout.

    Returns:
        a :class:`DistributedContext`; ``backend`` is ``"nccl"`` on GPU, ``"gloo"`` on CPU, ``None``
        for a single process.
    """
    want = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    world_size = _env_int("WORLD_SIZE") or 1
    if world_size <= 1:
        if want.type == "cuda" and want.index is None:
            want = torch.device("cuda", torch.cuda.current_device())
        return DistributedContext(device=want)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local_rank is None:
        raise ValueError(f"WORLD_SIZE={world_size} but RANK or LOCAL_RANK is not set; start the processes with torchrun")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ValueError(f"WORLD_SIZE={world_size} but {name} is not set; start the processes with torchrun")
    if want.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local_rank)
        dev, backend = torch.device("cuda", local_rank), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s), **kwargs)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)


def cleanup_distributed(ctx: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + W, rank + 2W, ...`` in order, without padding (for evaluation).

    Unlike ``DistributedSampler`` no index is repeated to even out the shards, so summing the
    per-process counts gives exactly the metrics of the whole split.
    """

    def __init__(self, dataset_size: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.dataset_size, self.rank, self.world_size = int(dataset_size), rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_size, self.world_size))


def build_train_sampler(dataset: Dataset, ctx: DistributedContext, seed: int, shuffle: bool = True) -> DistributedSampler:
    """A ``DistributedSampler`` for this process (also used with one process, so the order depends
    only on ``seed`` and the epoch): call ``set_epoch(epoch)`` before each epoch."""
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
                              drop_last=False)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Sum ``tensor`` over all processes (a copy; the input is unchanged). Identity for one process."""
    if not ctx.is_distributed:
        return tensor.clone()
    work = tensor.detach().to(ctx.device, copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def all_reduce_meter(meter: ClassificationMeter, ctx: DistributedContext) -> ClassificationMeter:
    """Sum a :class:`ClassificationMeter`'s counts over all processes, in place; returns it."""
    if ctx.is_distributed:
        meter.load_state_tensor(all_reduce_sum(meter.state_tensor(), ctx))
    return meter


def broadcast_buffers(module: torch.nn.Module, ctx: DistributedContext, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every process, in place."""
    if not ctx.is_distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)


def all_gather_objects(obj: Any, ctx: DistributedContext) -> list[Any]:
    """One picklable object from every rank, in rank order (``[obj]`` for one process)."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
