"""Self-play runs: a scenario's episodes played by the batched rollout into an episode store.

Running the same command again after an interruption resumes: stored
episodes are kept, the rest are played, and the result equals an
uninterrupted run (see :mod:`arena.batched` for how).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import agents
import games
from agents.base import Policy
from agents.sampling import SamplingConfig
from arena.batched import BatchedRollout, EpisodePlan, RolloutStats, make_plans
from arena.episode import SCHEMA_VERSION, Episode
from arena.scenario import SelfPlayScenario
from arena.store import EpisodeStore

__all__ = ["load_policies", "run_selfplay", "SelfPlayResult", "summarise"]

log = logging.getLogger(__name__)


def load_policies(specs: set[str] | list[str], sampling: SamplingConfig,
                  backend: Mapping[str, Any] | None = None) -> dict[str, Policy]:
    """One policy per distinct agent spec (roles with the same spec share it)."""
    policies: dict[str, Policy] = {}
    for spec in sorted(set(specs)):
        name, _ = agents.parse_spec(spec)
        options = dict(backend or {}) if name in ("hf", "seed", "vllm", "openai") else {}
        try:
            policies[spec] = agents.load(spec, sampling, **options)
        except TypeError as err:  # an option the backend does not take
            raise agents.PolicyError(f"agent {spec!r}: bad [backend] option: {err}") from None
    return policies


@dataclass
class SelfPlayResult:
    """What a self-play run stored, with its aggregate metrics."""

    out: str
    total: int
    played: int
    stats: RolloutStats
    summary: dict[str, Any]


def summarise(episodes: list[Episode]) -> dict[str, Any]:
    """Counts, legal-move rate, mean scores per role, and the game's aggregated metrics."""
    ok = [e for e in episodes if e.ok]
    turns = [t for e in episodes for t in e.turns]
    out: dict[str, Any] = {
        "episodes": len(episodes),
        "failed": len(episodes) - len(ok),
        "legal_rate": (sum(t.legal for t in turns) / len(turns)) if turns else 1.0,
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


def run_info(scenario: SelfPlayScenario) -> dict[str, Any]:
    """What must match for a resumed run to continue a stored one."""
    env = games.make(scenario.game.id, **scenario.game.options)
    return {
        "schema_version": SCHEMA_VERSION,
        "game": scenario.game.id,
        "options": env.options.to_dict(),
        "roles": scenario.roles,
        "sampling": vars(scenario.sampling),
        "seed": scenario.run.seed,
    }


def play_into(store: EpisodeStore, rollout: BatchedRollout, plans: Sequence[EpisodePlan], done: set[str],
              on_episode: Callable[[Episode, RolloutStats], None] | None = None) -> int:
    """Play the plans not yet ``done``, appending each episode to the store as it ends; return how many."""
    played = 0
    for episode in rollout.run(plans, done=done):
        store.append(episode)
        played += 1
        if on_episode is not None:
            on_episode(episode, rollout.stats)
    return played


def run_selfplay(scenario: SelfPlayScenario, on_episode: Callable[[Episode, RolloutStats], None] | None = None,
                 policies: Mapping[str, Policy] | None = None) -> SelfPlayResult:
    """Play the scenario's episodes into its output directory, resuming what is stored there."""
    store = EpisodeStore(scenario.out)
    plans = make_plans(scenario.game.id, scenario.roles, scenario.run.episodes, scenario.run.seed,
                       scenario.game.options)
    with store.open(run_info(scenario)):
        done = store.ids()
        wanted = {p.id for p in plans}
        already = len(done & wanted)
        owned = policies is None
        policies = load_policies(set(scenario.roles.values()), scenario.sampling, scenario.backend) if owned \
            else dict(policies)
        rollout = BatchedRollout(policies, scenario.run.concurrency, scenario.run.block or None)
        try:
            played = play_into(store, rollout, plans, done, on_episode)
        finally:
            if owned:
                for policy in policies.values():
                    policy.close()
        stored = [e for e in store if e.id in wanted]
    log.info("self-play: %d episodes stored in %s (%d were already there)", len(stored), store.path, already)
    return SelfPlayResult(str(store.path), len(stored), played, rollout.stats, summarise(stored))
