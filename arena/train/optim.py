"""Pieces the algorithms share: advantage estimators, minibatched gradient steps, collapse signals."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from arena.train.data import RoleSequence, collate
from arena.train.model import TokenStats, TrainableModel

__all__ = ["group_advantages", "running_baseline_advantages", "gradient_step", "collapse_warnings",
           "minibatches"]


def group_advantages(seqs: Sequence[RoleSequence], values: Sequence[Sequence[float]], estimator: str
                     ) -> float:
    """Set each sequence's per-turn advantages from its group (same set-up, same role).

    ``values[i][k]`` is what turn ``k`` of sequence ``i`` is credited with (its return, or its own reward).
    ``rloo``: the value minus the mean of the *other* members that have a turn ``k``.
    ``grpo``: the value minus the group mean, divided by the group's standard deviation.
    Returns the share of (group, turn) cells whose values were all equal: their advantage is zero, so
    they teach nothing (a collapse signal worth watching).
    """
    cells: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for i, s in enumerate(seqs):
        for k, v in enumerate(values[i]):
            cells[(s.group, s.role, k)].append((i, v))
    for s in seqs:
        s.advantages = [0.0] * len(s.spans)
    flat = 0
    for (_, _, turn), members in cells.items():
        vals = np.array([v for _, v in members], dtype=float)
        if len(vals) < 2 or np.allclose(vals, vals[0]):
            flat += 1
            continue
        for idx, (i, v) in enumerate(members):
            if estimator == "rloo":
                seqs[i].advantages[turn] = float(v - np.delete(vals, idx).mean())
            else:
                seqs[i].advantages[turn] = float((v - vals.mean()) / (vals.std() + 1e-6))
    return flat / max(1, len(cells))


def running_baseline_advantages(seqs: Sequence[RoleSequence], values: Sequence[Sequence[float]],
                                baselines: dict[str, float], momentum: float) -> None:
    """REINFORCE with a baseline per (game, role, turn): advantage = value - baseline; then update it."""
    batch: dict[str, list[float]] = defaultdict(list)
    for s, vals in zip(seqs, values):
        s.advantages = []
        for k, v in enumerate(vals):
            key = f"{s.game}|{s.role}|{k}"
            s.advantages.append(float(v - baselines.get(key, v)))
            batch[key].append(v)
    for key, vals in batch.items():
        mean = float(np.mean(vals))
        baselines[key] = momentum * baselines[key] + (1 - momentum) * mean if key in baselines else mean


def minibatches(seqs: Sequence[RoleSequence], batch_tokens: int, rng: np.random.Generator | None = None
                ) -> list[list[RoleSequence]]:
    """Length-bucketed minibatches of at most ``batch_tokens`` padded tokens, in seeded random order."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i].ids), i))
    batches, current, longest = [], [], 0
    for i in order:
        width = max(longest, len(seqs[i].ids))
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], len(seqs[i].ids)
        current.append(seqs[i])
        longest = width
    if current:
        batches.append(current)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def gradient_step(model: TrainableModel, optimizer: torch.optim.Optimizer, seqs: Sequence[RoleSequence],
                  loss_fn: Callable[[TokenStats, Any], tuple[torch.Tensor, dict[str, float]]], batch_tokens: int,
                  max_grad_norm: float, with_reference: bool = False) -> dict[str, float]:
    """One optimiser step over all ``seqs``: gradients accumulated over minibatches, weighted by tokens."""
    trained = [s for s in seqs if s.trained_tokens]
    total = sum(s.trained_tokens for s in trained)
    if not total:
        return {"trained_tokens": 0.0}
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float)
    for group in minibatches(trained, batch_tokens):
        batch = collate(group, model.pad_id)
        stats = model.token_stats(batch, with_reference=with_reference)
        loss, metrics = loss_fn(stats, batch)
        share = sum(s.trained_tokens for s in group) / total
        (loss * share).backward()
        for k, v in metrics.items():
            sums[k] += v * share
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    out = dict(sums)
    out.update(grad_norm=float(norm), trained_tokens=float(total))
    if not math.isfinite(out["grad_norm"]):
        raise FloatingPointError("the gradient is not finite; lower the learning rate")
    return out


def collapse_warnings(metrics: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """Signs that training is degenerating, to warn about rather than discover from a flat curve."""
    warnings = []
    if metrics.get("zero_variance_share", 0) > 0.5:
        warnings.append(f"{metrics['zero_variance_share']:.0%} of groups had equal rewards: no learning signal")
    entropy, start = metrics.get("entropy"), (first or {}).get("entropy")
    if entropy is not None and start and entropy < 0.3 * start:
        warnings.append(f"policy entropy fell to {entropy:.3f} from {start:.3f}: outputs may be collapsing")
    if metrics.get("kl", 0) > 2.0:
        warnings.append(f"KL to the reference is {metrics['kl']:.2f}: the policy is drifting far")
    edit = metrics.get("game/edit_distance")
    if edit is not None and edit < 0.01:
        warnings.append("attempts are nearly identical (edit distance < 0.01): self-correction has collapsed")
    return warnings
