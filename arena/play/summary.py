"""What a set of episodes comes to: counts, legal-move rates, mean scores, the game's own metrics."""

from __future__ import annotations

from typing import Any

import games
from arena.play.episode import Episode

__all__ = ["summarise"]


def summarise(episodes: list[Episode]) -> dict[str, Any]:
    """Counts, legal-move rate, mean scores per role, and the game's aggregated metrics."""
    ok = [e for e in episodes if e.ok]
    turns = [t for e in episodes for t in e.turns]
    out: dict[str, Any] = {
        "episodes": len(episodes),
        "failed": len(episodes) - len(ok),
        # None when no move was made at all (every episode failed at its first turn): no rate to report
        "legal_rate": (sum(t.legal for t in turns) / len(turns)) if turns else None,
    }
    roles = sorted({r for e in ok for r in e.scores})
    out["mean_scores"] = {r: sum(e.scores[r] for e in ok) / len(ok) for r in roles} if ok else {}
    if ok:
        cls = games.get_spec(ok[0].game).cls
        out["metrics"] = cls.aggregate_metrics(e.metrics for e in ok)
    legal_by_role: dict[str, list[bool]] = {}
    for t in turns:
        legal_by_role.setdefault(t.role, []).append(t.legal)
    out["legal_rate_by_role"] = {r: sum(v) / len(v) for r, v in sorted(legal_by_role.items())}
    return out
