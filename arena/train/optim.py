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
    for group in minibatches(mine, batch_tokens):
        batch = collate(group, model.pad_id)
        stats = model.token_stats(batch, with_reference=with_reference)
        loss, metrics = loss_fn(stats, batch)
        share = sum(s.trained_tokens for s in group) / total
        (loss * share).backward()
        for k, v in metrics.items():
            sums[k] += v * share
            shares[k] += share
    sums, shares = ranks.merge(dict(sums), dict(shares))
    ranks.sum_gradients(model.parameters())
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    out = {k: v / shares[k] for k, v in sums.items()}
    out.update(grad_norm=float(norm), trained_tokens=float(total))
    if not math.isfinite(out["grad_norm"]):
        raise FloatingPointError("the gradient is not finite; lower the learning rate")
    return out
