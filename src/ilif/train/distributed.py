"""Data-parallel training across processes (``torchrun``): set-up, rank facts, reductions,
rank-aware printing.

:func:`is_rank_zero` is the one test of "this process writes files and prints the run's
progress" (rank 0 of the process group, or of the ``torchrun`` environment before the group
exists, or a lone process).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TextIO

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (1 and rank 0 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # the process group was created here (and is destroyed here)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_rank_zero() -> bool:
    """True in the process that writes files: rank 0 of the initialised process group, else
    ``RANK`` of the environment (``torchrun`` sets it; absent: a single process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def rank_prefix() -> str:
    """``"[rank r/w] "`` under several processes, ``""`` for a single one."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank = int(os.environ.get("RANK", "0") or 0)
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f"[rank {rank}/{world}] " if world > 1 else ""


def log(message: str, *, every_rank: bool = False, file: TextIO | None = None) -> None:
    """Print ``message`` on rank 0 only (``every_rank``: on each process, prefixed by its rank
    when there are several), flushed at once."""
    if every_rank:
        print(rank_prefix() + message, file=file or sys.stdout, flush=True)
    elif is_rank_zero():
        print(message, file=file or sys.stdout, flush=True)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is present, else the CPU; ``cuda`` picks the local
    rank's GPU; ``cpu`` / ``cuda:N`` as given."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but CUDA is not available; use cpu")
        return torch.device("cuda", local_rank)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} was asked for but CUDA is not available; use cpu")
    return device


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the process group ``torchrun`` describes (env ``WORLD_SIZE`` > 1), or run alone.

    Backend: NCCL on CUDA, gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, owns), device


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Σ over processes of ``values`` (returned; unchanged when running alone)."""
    if ctx.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
