"""Advantages: how much better than expected each turn of a role's side was.

* :func:`turn_values`: the return-to-go of each turn (per-turn rewards, discounted by ``gamma``);
* :func:`group_advantages`: RLOO (leave-one-out mean of the other plays of the same set-up) or GRPO
  (normalised within the group), per role;
* :func:`running_baseline_advantages`: REINFORCE with a running baseline per role and turn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from arena.train.data import RoleSequence, returns_to_go

__all__ = ["group_advantages", "running_baseline_advantages", "turn_values"]


def turn_values(seqs: Sequence[RoleSequence], gamma: float) -> list[list[float]]:
    """Each turn's return-to-go: its reward plus the discounted rewards of the role's later turns."""
    return [returns_to_go(s.rewards, gamma) for s in seqs]


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
