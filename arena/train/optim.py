"""The optimiser's side of every algorithm: length-bucketed minibatches and one gradient step over them."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from arena.train.data import RoleSequence, collate
from arena.train.distributed import Ranks
from arena.train.model import TokenStats, TrainableModel

__all__ = ["gradient_step", "length_buckets", "minibatches"]


def length_buckets(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indexes of sequences grouped by length (shortest first) so that each group, padded to its longest,
    holds at most ``batch_tokens`` tokens (a longer sequence is a group of its own). The trainer's minibatches
    and the seed-model build's batches are both made here; each shuffles the groups with its own generator."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current, longest = [], [], 0
    for i in order:
        width = max(longest, lengths[i])
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], lengths[i]
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def minibatches(seqs: Sequence[RoleSequence], batch_tokens: int, rng: np.random.Generator | None = None
                ) -> list[list[RoleSequence]]:
    """Length-bucketed minibatches of at most ``batch_tokens`` padded tokens, in seeded random order."""
    batches = [[seqs[i] for i in group] for group in length_buckets([len(s.ids) for s in seqs], batch_tokens)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _state_bytes(model: TrainableModel, optimizer: torch.optim.Optimizer) -> int:
    """Bytes this process holds of the trained weights, their gradients and the optimiser's state (its shard
    of each with FSDP)."""
    def size(t: Any) -> int:
        t = t.to_local() if hasattr(t, "to_local") else t
        return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0
    params = model.parameters()
    return sum(size(p) + (size(p.grad) if p.grad is not None else 0) for p in params) + \
        sum(size(v) for state in optimizer.state.values() for v in state.values())


def gradient_step(model: TrainableModel, optimizer: torch.optim.Optimizer, seqs: Sequence[RoleSequence],
                  loss_fn: Callable[[TokenStats, Any], tuple[torch.Tensor, dict[str, float]]], batch_tokens: int,
                  max_grad_norm: float, with_reference: bool = False, ranks: Ranks | None = None) -> dict[str, float]:
    """One optimiser step over all ``seqs``: gradients accumulated over minibatches, weighted by tokens.

    With data-parallel ``ranks``, every rank holds all ``seqs``; each backpropagates its share (sequences
    dealt round robin in length order, so the shares cost alike) and the gradients are summed over the ranks
    before the step. Each minibatch is weighted by its share of all ranks' trained tokens, so the sum is the
    one-process gradient whatever the split (up to the order of floating-point sums)."""
    ranks = ranks or Ranks()
    trained = [s for s in seqs if s.trained_tokens]
    total = sum(s.trained_tokens for s in trained)
    if not total:
        return {"trained_tokens": 0.0}
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float)
    shares: dict[str, float] = defaultdict(float)  # a metric some minibatches lack is averaged over the others
    mine = ranks.share(sorted(trained, key=lambda s: len(s.ids))) if ranks.world > 1 else trained
    groups = minibatches(mine, batch_tokens)
    # FSDP: the sharded module's forward and backward passes are collectives, so every rank runs as many as
    # the busiest one (the extra ones count nothing: their loss is multiplied by 0), and the ranks' gradients
    # are averaged there, so each rank's loss is scaled by the number of ranks to sum them
    rounds, scale = (ranks.most(len(groups)), ranks.world) if model.sharded else (len(groups), 1)
    for i in range(rounds):
        group = groups[i] if i < len(groups) else trained[:1]
        batch = collate(group, model.pad_id)
        stats = model.token_stats(batch, with_reference=with_reference)
        loss, metrics = loss_fn(stats, batch)
        share = sum(s.trained_tokens for s in group) / total if i < len(groups) else 0.0
        (loss * share * scale).backward()
        for k, v in metrics.items() if i < len(groups) else ():
            sums[k] += v * share
            shares[k] += share
    sums, shares = ranks.merge(dict(sums), dict(shares))
    if not model.sharded:
        ranks.sum_gradients(model.parameters())
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if hasattr(norm, "full_tensor"):  # FSDP: a DTensor holding the norm over every shard
        norm = norm.full_tensor()
    optimizer.step()
    model.stepped()
    out = {k: v / shares[k] for k, v in sums.items()}
    out.update(grad_norm=float(norm), trained_tokens=float(total), state_mb=_state_bytes(model, optimizer) / 2**20)
    if not math.isfinite(out["grad_norm"]):
        raise FloatingPointError("the gradient is not finite; lower the learning rate")
    return out
