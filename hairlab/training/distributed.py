"""Data-parallel training under torchrun: one process per device, no scheduler of hairlab's own.

``torchrun --nproc_per_node=N --no-python hairlab run ...`` (or any launcher that sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``: SLURM through torchrun, submitit) starts N copies
of the same job. Each joins one process group (NCCL on CUDA, gloo on CPU), wraps the model in
``DistributedDataParallel`` and trains on its slice of every global batch: ``trainer.batch_size``
stays the *global* batch, so step counts, schedules and results line up with a single-process
run of the same config. Losses, accuracies and evaluations are summed over the ranks; only
rank 0 tracks (MLflow), prints progress and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hairlab.errors import HairlabError


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel copies (1 process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 owns the tracker, the progress output and the checkpoints."""
        return self.rank == 0

    def shard(self, x: Any, y: Any) -> tuple[Any, Any]:
        """This rank's slice of a global batch (every rank sees the same batch order)."""
        if self.size == 1:
            return x, y
        return x[self.rank::self.size], y[self.rank::self.size]


def world_from_env() -> World:
    """The world torchrun describes in the environment; a single process otherwise."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise HairlabError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun)") from None
    if size < 1 or not 0 <= rank < size:
        raise HairlabError(f"RANK={rank} does not fit WORLD_SIZE={size}; launch through torchrun")
    return World(rank, size, local)


def setup(world: World, device: Any) -> Any:
    """Join the process group (once per process) and return this rank's device."""
    if world.size == 1:
        return device
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise HairlabError(f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} CUDA "
                               "device(s) here; use --nproc_per_node <= the GPU count")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: Any, world: World, device: Any) -> Any:
    """The model as trained: itself, or in DistributedDataParallel on several ranks."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(tensor: Any, world: World) -> Any:
    """``tensor`` summed over the ranks (in place; itself on one process)."""
    if world.size > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
