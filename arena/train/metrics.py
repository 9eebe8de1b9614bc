"""What the algorithms log each iteration about their episodes, and the signs of collapse they warn about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from arena.play.episode import Episode
from arena.play.summary import summarise

__all__ = ["collapse_warnings", "episode_metrics"]


def episode_metrics(episodes: list[Episode], roles: Sequence[str]) -> dict[str, float]:
    """Episodes, failures, the two legal-move rates, each trained role's score and reward, and the game's metrics.

    ``policy_legal_rate`` counts the trained roles' moves only (what eval.json's ``policy_legal_rate`` counts);
    ``all_legal_rate`` counts every move of the episodes, the scripted or random opponents' too."""
    summary = summarise(episodes)
    mine = [t.legal for e in episodes for t in e.turns if t.role in roles]
    out = {"episodes": float(summary["episodes"]), "failed": float(summary["failed"]),
           "policy_legal_rate": sum(mine) / len(mine) if mine else None,
           "all_legal_rate": summary["legal_rate"]}
    for role in roles:
        out[f"score/{role}"] = summary["mean_scores"].get(role, 0.0)
        out[f"reward/{role}"] = float(np.mean([sum(t.rewards.get(role, 0.0) for t in e.turns)
                                               for e in episodes if e.ok] or [0.0]))
    for name, value in summary.get("metrics", {}).items():
        out[f"game/{name}"] = value
    return out


def collapse_warnings(metrics: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """Signs that training is degenerating, to warn about rather than discover from a flat curve."""
    warnings = []
    if metrics.get("zero_variance_share", 0) > 0.5:
        warnings.append(f"{metrics['zero_variance_share']:.0%} of the groups' turns had equal rewards in the whole "
                        "group: no learning signal there")
    entropy, start = metrics.get("entropy"), (first or {}).get("entropy")
    if entropy is not None and start and entropy < 0.3 * start:
        warnings.append(f"policy entropy fell to {entropy:.3f} from {start:.3f}: outputs may be collapsing")
    if metrics.get("kl", 0) > 2.0:
        warnings.append(f"KL to the reference is {metrics['kl']:.2f}: the policy is drifting far")
    edit = metrics.get("game/edit_distance")
    if edit is not None and edit < 0.01:
        warnings.append("attempts are nearly identical (edit distance < 0.01): self-correction has collapsed")
    return warnings
