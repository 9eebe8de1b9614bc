"""Data-parallel training: ``arena train --nproc N`` (or ``torchrun --nproc-per-node N -m arena train``).

Every rank holds the whole model and runs the same loop with the same seeds. Two things are split: each rank
plays its share of an iteration's episodes (whole groups, so a group's advantages stay together), and the
ranks gather them, so every rank sees every episode and computes the same sequences, advantages and
metrics; and each rank backpropagates its share of the update's minibatches, after which the gradients are
summed over the ranks (one all-reduce of a flat buffer, what DDP does for a module) before the identical
optimiser step on every rank. The loss of each minibatch is weighted by its share of the *global* trained
tokens, so the summed gradient is the one process's gradient, up to the order of floating-point sums.

Rank 0 alone writes: the output lock, ``train.json``, ``metrics.jsonl``, ``eval.json``, checkpoints, the
final model, the episode store and wandb. The other ranks read the checkpoint on ``--resume``, so the ranks
of a run share the output folder (one machine, or a shared file system).

gloo on CPUs, NCCL when CUDA is visible (each rank on GPU ``LOCAL_RANK``). Every collective has the
process group's timeout; a rank that dies ends the others' next collective with an error, and the launcher
(:mod:`arena.train.launch`) stops the rest.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

__all__ = ["Ranks", "ranks"]

T = TypeVar("T")

#: Seconds a collective may wait for the other ranks (a rank evaluating while the others wait included).
TIMEOUT = float(os.environ.get("ARENA_DIST_TIMEOUT", "1800"))


class Ranks:
    """The ranks of this run: one process (``world == 1``, every method a no-op) or a torch.distributed group."""

    def __init__(self, world: int = 1, rank: int = 0, local_rank: int = 0):
        self.world, self.rank, self.local_rank = world, rank, local_rank

    @property
    def main(self) -> bool:
        """Whether this rank writes the run's files."""
        return self.rank == 0

    def share(self, items: Sequence[T], group: int = 1) -> list[T]:
        """This rank's share of ``items``, taken in runs of ``group`` consecutive items (round robin)."""
        if self.world == 1:
            return list(items)
        return [x for i, x in enumerate(items) if (i // group) % self.world == self.rank]

    def gather(self, mine: list[T], order: Sequence[Any], key: Any) -> list[T]:
        """Every rank's items, in the order of ``order`` (``key(item)`` is its entry there)."""
        if self.world == 1:
            return mine
        parts: list[list[T]] = [[] for _ in range(self.world)]
        torch.distributed.all_gather_object(parts, mine)
        position = {k: i for i, k in enumerate(order)}
        return sorted((x for part in parts for x in part), key=lambda x: position[key(x)])

    def merge(self, values: dict[str, float], weights: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """Sum per-key values and weights over the ranks (a key some ranks lack counts as 0 there)."""
        if self.world == 1:
            return values, weights
        parts: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(parts, (values, weights))
        total_v: dict[str, float] = {}
        total_w: dict[str, float] = {}
        for v, w in parts:
            for k in v:
                total_v[k] = total_v.get(k, 0.0) + v[k]
                total_w[k] = total_w.get(k, 0.0) + w[k]
        return total_v, total_w

    def sum_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Sum the parameters' gradients over the ranks, in place (a rank without a gradient adds zeros)."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(parameters, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).clone()
            offset += n

    def most(self, n: int) -> int:
        """The largest of the ranks' ``n``."""
        if self.world == 1:
            return n
        value = torch.tensor([n], device=f"cuda:{self.local_rank}" if torch.distributed.get_backend() == "nccl"
                             else "cpu")
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return int(value.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def ranks() -> Ranks:
    """This process's place in a data-parallel run, from torchrun's environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); one process when it is not set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local)
        torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                             timeout=datetime.timedelta(seconds=TIMEOUT))
    return Ranks(world, rank, local)
