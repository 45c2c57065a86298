"""Rank helpers and a differentiable all-reduce, usable whether or not torch.distributed is set up.

Single-process runs see world size 1 and rank 0, so callers need no special cases.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a default process group exists (any world size)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints."""
    return rank() == 0


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the output gradients.

    Every rank uses the reduced value, so d(loss_total)/d(input on rank r) = sum over ranks of
    d(loss_rank)/d(output): an all-reduce of the incoming gradient. (A small Function of our
    own: `torch.distributed.nn.functional.all_reduce` does the same but is deprecated.)
    """

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of `tensor` over all ranks (identity in a single process). Works with
    gloo (CPU) and NCCL (CUDA). Every rank must call it, in the same order."""
    if world_size() == 1:
        return tensor
    return _AllReduceSum.apply(tensor)


# --------------------------------------------------------------------------- process set-up


@dataclass
class Env:
    rank: int
    world: int
    device: torch.device


_owns_group = False


def setup(device: str | None = None) -> Env:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), if
    any and not joined yet: NCCL for CUDA devices, gloo for the CPU. Device: `device`, else
    this process's local GPU, else the CPU."""
    global _owns_group
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not is_distributed():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        _owns_group = True
    return Env(rank(), world_size(), dev)


def cleanup() -> None:
    """Leave the process group if `setup` joined it."""
    global _owns_group
    if _owns_group and is_distributed():
        dist.destroy_process_group()
    _owns_group = False


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (a picklable object)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
