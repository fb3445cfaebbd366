"""torchrun process-group plumbing for the OCCPAST trainer: set-up, rank guards, DDP unwrapping.

A run is distributed only when torchrun sets WORLD_SIZE > 1, so a plain single-process
launch takes exactly the reference's code path (no process group, no sampler).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job. Never initialises or tears down anything itself."""

    distributed: bool
    """True when a process group spans more than one process."""
    rank: int
    """Global rank; 0 in single-process runs."""
    local_rank: int
    """Rank on this host; picks the CUDA device."""
    world_size: int
    """Number of processes."""

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str | None) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group if there is one; return the context and this rank's device.

    gloo on CPU, nccl on CUDA. device_name None means cuda when available, as upstream.
    """
    if device_name is None:
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(False, 0, 0, 1), torch.device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return DistContext(True, rank, local_rank, world_size), device


def barrier(ctx: DistContext) -> None:
    """Wait for every rank; a no-op when not distributed."""
    if ctx.distributed:
        dist.barrier()


def cleanup_distributed(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DDP-wrap in distributed runs (after any checkpoint has been loaded into the bare model)."""
    if not ctx.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model, so saved keys carry no 'module.' prefix and eval skips DDP's collectives."""
    return model.module if isinstance(model, DistributedDataParallel) else model
