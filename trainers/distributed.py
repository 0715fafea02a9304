"""One process or many: `torchrun --nproc-per-node N -m orchard_envs.trainers.cli sft ...` shards with FSDP2.

The standard engine, nothing custom: `torch.distributed` with NCCL on GPUs (gloo on CPU), and FSDP2's
`fully_shard` on every decoder layer and then on the whole model, so each layer's parameters are gathered
just in time and gradients are reduce-scattered (averaged over ranks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class World:
    """This process's rank and device in the (possibly one-process) training job."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0, the process that logs and saves."""
        return self.rank == 0


def init_world(device: str | None) -> World:
    """Joins the process group that torchrun set up, or runs alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind.startswith("cuda") and not torch.cuda.is_available():
        from orchard_envs.errors import ConfigError

        raise ConfigError(f"--device {kind}: no CUDA GPU is visible to torch here; use --device cpu")
    if kind.startswith("cuda") and ":" in kind:
        torch.cuda.set_device(int(kind.partition(":")[2]))
        chosen = torch.device(kind)
    elif kind == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        chosen = torch.device("cuda", local)
    else:
        chosen = torch.device(kind)
    if size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return World(rank, size, chosen)


def shard(module: Any, layers: Any, world: World) -> None:
    """FSDP2 over the layers, then the root (embeddings, final norm, output head)."""
    if world.size == 1:
        return
    from torch.distributed.fsdp import fully_shard

    for layer in layers:
        fully_shard(layer)
    fully_shard(module)


def sync_gradients(module: Any, enabled: bool, world: World) -> None:
    """Skip the gradient reduce-scatter on all but the last micro-batch of a step."""
    if world.size > 1:
        module.set_requires_gradient_sync(enabled)


def barrier(world: World) -> None:
    """Wait for every rank; a no-op in a one-process run."""
    if world.size > 1:
        torch.distributed.barrier()


def finish(world: World) -> None:
    """Tear down the process group, if one was started."""
    if world.size > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
