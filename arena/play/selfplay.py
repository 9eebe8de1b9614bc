"""Self-play runs: a scenario's episodes played by the batched rollout into an episode store.

Running the same command again after an interruption resumes: stored
episodes are kept, the rest are played, and the result equals an
uninterrupted run (see :mod:`arena.play.batched` for how).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import games
from agents.base import Policy
from arena.play.batched import BatchedRollout, EpisodePlan, RolloutStats, make_plans
from arena.play.cluster import RayRollout
from arena.play.episode import SCHEMA_VERSION, Episode
from arena.play.policies import load_policies
from arena.play.scenario import SelfPlayScenario
from arena.play.store import EpisodeStore
from arena.play.summary import summarise

__all__ = ["play_into", "PlayCount", "run_info", "run_selfplay", "SelfPlayResult"]

log = logging.getLogger(__name__)


@dataclass
class SelfPlayResult:
    """What a self-play run stored, with its aggregate metrics."""

    out: str
    total: int
    played: int
    stats: RolloutStats
    summary: dict[str, Any]
    #: Episodes stored as failed by an earlier run and played again by this one, and how many failed again.
    retried: int = 0
    retried_failed: int = 0

    @property
    def failed_share(self) -> float:
        """The share of the run's stored episodes that failed."""
        return self.summary["failed"] / self.total if self.total else 0.0


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


@dataclass
class PlayCount:
    """What :func:`play_into` played: episodes, and those among them that retried a failed record."""

    played: int = 0
    retried: int = 0
    retried_failed: int = 0


def play_into(store: EpisodeStore, rollout: BatchedRollout | RayRollout, plans: Sequence[EpisodePlan],
              on_episode: Callable[[Episode, RolloutStats], None] | None = None,
              count: PlayCount | None = None) -> PlayCount:
    """Play the plans the store does not hold as finished, appending each episode as it ends.

    A plan stored as failed is played again (with its own seed), and the new record supersedes the old.
    """
    count = count or PlayCount()
    stored, done = store.ids(), store.done_ids()
    for episode in rollout.run(plans, done=done):
        retry = episode.id in stored
        store.append(episode)
        count.played += 1
        count.retried += retry
        count.retried_failed += retry and not episode.ok
        if on_episode is not None:
            on_episode(episode, rollout.stats)
    return count


def run_selfplay(scenario: SelfPlayScenario, on_episode: Callable[[Episode, RolloutStats], None] | None = None,
                 policies: Mapping[str, Policy] | None = None) -> SelfPlayResult:
    """Play the scenario's episodes into its output directory, resuming what is stored there."""
    store = EpisodeStore(scenario.out)
    plans = make_plans(scenario.game.id, scenario.roles, scenario.run.episodes, scenario.run.seed,
                       scenario.game.options)
    with store.open(run_info(scenario)):
        already = sum(plans.holds(i) for i in store.done_ids())
        loaded: dict[str, Policy] = {}
        rollout: BatchedRollout | RayRollout
        if scenario.cluster.address and policies is None:  # Ray workers load the policies, not this process
            rollout = RayRollout({spec: spec for spec in scenario.roles.values()}, scenario.sampling,
                                 scenario.backend, scenario.run.concurrency, scenario.run.block or None,
                                 scenario.cluster, scenario.plugins)
        else:
            if policies is None:
                policies = loaded = load_policies(set(scenario.roles.values()), scenario.sampling, scenario.backend,
                                                  scenario.run.threads)
            rollout = BatchedRollout(policies, scenario.run.concurrency, scenario.run.block or None)
        try:
            count = play_into(store, rollout, plans, on_episode)
        finally:
            if isinstance(rollout, RayRollout):
                rollout.close()
            for policy in loaded.values():  # only the ones loaded here
                policy.close()
        stored = [e for e in store if plans.holds(e.id)]
    log.info("self-play: %d episodes stored in %s (%d were already there)", len(stored), store.path, already)
    return SelfPlayResult(str(store.path), len(stored), count.played, rollout.stats, summarise(stored),
                          count.retried, count.retried_failed)
