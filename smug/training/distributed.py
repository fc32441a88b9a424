"""Data-parallel training over several processes, as ``torchrun`` launches them: which rank this
process is, its share of every batch, and the gradient average that keeps the ranks' weights equal.

Each rank takes every ``world_size``-th slice of the epoch's shuffled order (the order a single
process would draw), so the ranks' batches at one step together are the single process's batch
of ``world_size`` times the size. Gradients are averaged weighted by each rank's slice count, which
makes a step equal to the single process's step on the union batch (the losses are batch means).
Stage objectives call a model's parts directly (the denoiser of an unrolled network, say), so the
average is one all-reduce over the flattened gradients after ``backward`` rather than
:class:`torch.nn.parallel.DistributedDataParallel`'s hooks, which need every forward to pass
through its wrapper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def ranks_from_environment() -> Ranks:
    """The ranks ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without them."""
    if "RANK" not in os.environ:
        return SINGLE
    ranks = Ranks(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    if not 0 <= ranks.rank < ranks.world_size:
        raise ValueError(f"RANK {ranks.rank} is not below WORLD_SIZE {ranks.world_size}")
    return ranks


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU) and return this rank's device: on CUDA
    the GPU of its local rank, so the ranks of one node each drive one GPU."""
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(order: Sequence[int], ranks: Ranks) -> list[int]:
    """This rank's slices of the epoch order: every ``world_size``-th from its rank. Each rank gets
    the same number (the last ``len(order) % world_size`` slices of the epoch are left out), so all
    take the same number of steps."""
    usable = len(order) - len(order) % ranks.world_size
    return list(order[ranks.rank : usable : ranks.world_size])


class ShardSampler(Sampler[int]):
    """This rank's :func:`shard` of a shuffled order of ``size`` items, drawn from ``generator``
    when iterated, exactly as :class:`torch.utils.data.RandomSampler` draws it: on one process the
    order (and so the training) is a plain shuffled loader's."""

    def __init__(self, size: int, generator: torch.Generator, ranks: Ranks = SINGLE):
        self.size, self.generator, self.ranks = size, generator, ranks

    def __iter__(self) -> Iterator[int]:
        return iter(shard(torch.randperm(self.size, generator=self.generator).tolist(), self.ranks))

    def __len__(self) -> int:
        return self.size // self.ranks.world_size


def sum_over_ranks(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """``values`` summed over every rank (itself on one process)."""
    if ranks.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_gradients(params: Sequence[nn.Parameter], count: int, ranks: Ranks) -> None:
    """Replace each gradient by the count-weighted mean of the ranks' gradients (``count``: this
    rank's slices in the step), in one all-reduce of the flattened gradients."""
    if not ranks.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    device = grads[0].device if grads else torch.device("cpu")
    total = sum_over_ranks(torch.tensor([float(count)], device=device), ranks)
    if not grads:
        return
    flat = _flatten_dense_tensors(grads) * count
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= total
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)


def all_finite(value: torch.Tensor, ranks: Ranks) -> bool:
    """Whether ``value`` is finite on every rank, so that all ranks stop together on a bad loss."""
    finite = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    return bool(sum_over_ranks(finite, ranks).item() == ranks.world_size)


def broadcast_parameters(model: nn.Module, ranks: Ranks) -> None:
    """Give every rank rank 0's weights and buffers, so the ranks start identical."""
    if not ranks.distributed:
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()
