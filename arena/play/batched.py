"""Batched rollouts: many episodes at once, one generation call per policy per tick.

Each tick gathers the pending turn of every running episode, groups the turns
by the policy that plays them, and makes one :meth:`Policy.generate` call per
policy; then it applies the completions, collects finished episodes and starts
new ones, up to ``concurrency`` at a time.

Exact resume. A model's output depends (in the last bits of floating point)
on which requests share its batch, so episodes are scheduled in fixed blocks
of ``block`` plans. Within a block the schedule depends only on the block's
plans; when a resumed run meets a block that is partly stored, it replays the
whole block and keeps only the episodes not stored yet, so every episode comes
out exactly as in an uninterrupted run. Blocks played only by batch-invariant
policies (rule-based ones) skip stored episodes instead of replaying them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import games
from agents.base import Completion, Policy, checked_completion
from agents.human import HumanQuit
from arena.play.episode import Episode
from arena.play.rollout import EpisodeRunner
from games.base import TextGame
from games.seeds import episode_seed

__all__ = ["EpisodePlan", "BatchedRollout", "PlanRange", "RolloutStats", "make_plans"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodePlan:
    """One episode to play: its id, game, options, seed and the agent spec of each role."""

    id: str
    game: str
    seed: int
    roles: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Free labels for whoever made the plan (a tournament's game, round, pairing); not used to play.
    tags: Mapping[str, Any] = field(default_factory=dict)
    #: Several plans with the same seed and different ``sample`` play the same set-up with different sampling.
    sample: int = 0


class PlanRange(Sequence[EpisodePlan]):
    """Episodes ``start .. start + episodes - 1`` of a run, each plan made when it is asked for, so that a
    run of any length starts at once. Plan ``i`` has the id ``PREFIX-NNNNNN`` (``i`` zero-padded to six
    digits) and the seed :func:`games.seeds.episode_seed` (run seed, i)."""

    def __init__(self, game: str, roles: Mapping[str, str], episodes: int, seed: int,
                 options: Mapping[str, Any] | None = None, prefix: str | None = None, start: int = 0):
        self.game, self.roles, self.seed = game, dict(roles), int(seed)
        self.options, self.prefix = dict(options or {}), prefix or game
        self.start, self.episodes = int(start), int(episodes)

    def __len__(self) -> int:
        return self.episodes

    def plan(self, i: int) -> EpisodePlan:
        """The plan of episode ``i`` of the run (``start <= i < start + episodes``)."""
        return EpisodePlan(f"{self.prefix}-{i:06d}", self.game, episode_seed(self.seed, i), dict(self.roles),
                           dict(self.options))

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.plan(self.start + k) for k in range(*index.indices(self.episodes))]
        if index < 0:
            index += self.episodes
        if not 0 <= index < self.episodes:
            raise IndexError(index)
        return self.plan(self.start + index)

    def __iter__(self) -> Iterator[EpisodePlan]:
        return (self.plan(self.start + k) for k in range(self.episodes))

    def holds(self, episode_id: str) -> bool:
        """Whether ``episode_id`` is the id of one of these plans (without making them)."""
        head, sep, number = episode_id.rpartition("-")
        return (sep == "-" and head == self.prefix and number.isdigit() and len(number) >= 6
                and self.start <= int(number) < self.start + self.episodes and f"{int(number):06d}" == number)


def make_plans(game: str, roles: Mapping[str, str], episodes: int, seed: int,
               options: Mapping[str, Any] | None = None, prefix: str | None = None,
               start: int = 0) -> PlanRange:
    """Plans for episodes ``start .. start + episodes - 1`` of a run (made lazily)."""
    return PlanRange(game, roles, episodes, seed, options, prefix, start)


@dataclass
class RolloutStats:
    """What a rollout has done so far, for progress bars and benchmarks."""

    episodes: int = 0
    failed: int = 0
    turns: int = 0
    legal_turns: int = 0
    generate_calls: int = 0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    replayed: int = 0

    @property
    def legal_rate(self) -> float:
        return self.legal_turns / self.turns if self.turns else 1.0

    @property
    def outside_model_share(self) -> float:
        """The share of wall time spent outside policy calls (framework overhead)."""
        return 1 - self.model_seconds / self.wall_seconds if self.wall_seconds else 0.0


class BatchedRollout:
    """Plays episode plans with shared policies, batching every tick's turns per policy."""

    def __init__(self, policies: Mapping[str, Policy], concurrency: int = 16, block: int | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {concurrency}")
        self.policies = dict(policies)
        self.concurrency = concurrency
        self.block = block or 4 * concurrency
        if self.block < concurrency:
            raise ValueError(f"block ({self.block}) must be at least concurrency ({concurrency})")
        self.stats = RolloutStats()
        self._free_envs: dict[str, list[TextGame]] = {}

    # ------------------------------------------------------------------ public
    def run(self, plans: Sequence[EpisodePlan], done: set[str] | frozenset[str] = frozenset(),
            on_episode: Callable[[Episode], None] | None = None) -> Iterator[Episode]:
        """Play every plan whose id is not in ``done``; yield each episode as it ends.

        ``plans`` may be lazy (a :class:`PlanRange` of any length): it is read one block at a time."""
        pending = iter(plans)
        while block := list(islice(pending, self.block)):
            missing = sorted({s for p in block for s in p.roles.values()} - set(self.policies))
            if missing:
                raise ValueError(f"no policy loaded for agent specs {missing}")
            todo = [p for p in block if p.id not in done]
            if not todo:
                continue
            invariant = all(getattr(self.policies[s], "batch_invariant", False)
                            for p in block for s in p.roles.values())
            for episode in self._play(todo if invariant else block):
                if episode.id in done:
                    self.stats.replayed += 1
                    continue
                self._count(episode)
                if on_episode is not None:
                    on_episode(episode)
                yield episode

    # ------------------------------------------------------------------ internals
    def _count(self, episode: Episode) -> None:
        self.stats.episodes += 1
        self.stats.failed += not episode.ok
        self.stats.turns += len(episode.turns)
        self.stats.legal_turns += sum(t.legal for t in episode.turns)

    @staticmethod
    def _pool_key(plan: EpisodePlan) -> str:
        return json.dumps([plan.game, plan.options], sort_keys=True, default=str)

    def _env(self, plan: EpisodePlan) -> TextGame:
        """A game for the plan: a finished one with the same game and options (reset on reuse), or a new one."""
        free = self._free_envs.setdefault(self._pool_key(plan), [])
        return free.pop() if free else games.make(plan.game, **plan.options)

    def _play(self, plans: Sequence[EpisodePlan]) -> Iterator[Episode]:
        queue = deque(plans)
        active: list[tuple[EpisodeRunner, str]] = []  # each running episode, and the pool its game returns to
        while queue or active:
            started = time.perf_counter()
            while queue and len(active) < self.concurrency:
                plan = queue.popleft()
                agents = {role: self.policies[spec] for role, spec in plan.roles.items()}
                runner = EpisodeRunner(self._env(plan), agents, plan.seed, plan.id, names=plan.roles,
                                       sample=plan.sample)
                active.append((runner, self._pool_key(plan)))
            groups: dict[int, tuple[Policy, list[tuple[EpisodeRunner, Any]]]] = {}
            for runner, _ in active:
                request = runner.pending()
                if request is None:
                    continue
                policy = runner.policy_for(request)
                groups.setdefault(id(policy), (policy, []))[1].append((runner, request))
            for policy, items in groups.values():
                completions = self._call(policy, [request for _, request in items])
                for (runner, _), completion in zip(items, completions):
                    runner.submit(completion)
            still = []
            for runner, pool in active:
                if runner.done:
                    self._free_envs[pool].append(runner.game)
                    yield runner.episode
                else:
                    still.append((runner, pool))
            active = still
            self.stats.wall_seconds += time.perf_counter() - started

    def _call(self, policy: Policy, requests: list[Any]) -> list[Completion]:
        start = time.perf_counter()
        try:
            completions = policy.generate(requests)
            if len(completions) != len(requests):
                raise RuntimeError(f"{policy.spec} returned {len(completions)} completions for {len(requests)} turns")
        except HumanQuit:
            raise
        except Exception as err:  # a backend failure fails these episodes, not the run
            log.warning("policy %s failed on %d turns: %s", policy.spec, len(requests), err)
            completions = [Completion(text="", error=f"{type(err).__name__}: {err}") for _ in requests]
        finally:
            self.stats.generate_calls += 1
            self.stats.model_seconds += time.perf_counter() - start
        return [checked_completion(c, policy.spec) for c in completions]
