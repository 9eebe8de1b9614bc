"""Running episodes: one game instance stepped by the policies that play its roles.

:class:`EpisodeRunner` is the unit of play. It never calls a policy itself:
:meth:`EpisodeRunner.pending` says which turn is waiting (as a
:class:`~agents.base.TurnRequest`) and :meth:`EpisodeRunner.submit` applies the
answer. That split lets a batched rollout gather the pending turns of many
episodes and make one call per policy; :func:`run_episode` is the simple loop
for one episode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from agents.base import Completion, Policy, TurnRequest, checked_completion
from agents.human import HumanQuit
from arena.play.episode import Episode, TurnRecord, role_messages
from games.base import TextGame
from games.seeds import turn_seed

__all__ = ["EpisodeRunner", "run_episode"]

log = logging.getLogger(__name__)


class EpisodeRunner:
    """Plays one episode of ``game`` with one policy per role."""

    def __init__(self, game: TextGame, agents: Mapping[str, Policy], seed: int, episode_id: str | None = None,
                 names: Mapping[str, str] | None = None, sample: int = 0):
        """``names`` gives each role's agent name for the record (default: the policy's spec)."""
        missing = [r for r in game.roles if r not in agents]
        if missing:
            raise ValueError(f"{game.game_id}: no agent for roles {missing}; roles are {list(game.roles)}")
        self.game = game
        self.agents = dict(agents)
        self.names = {r: (names or {}).get(r, agents[r].spec) for r in game.roles}
        self.seed = int(seed)
        self.sample = int(sample)
        self.episode = Episode(
            id=episode_id or f"{game.game_id}-seed{seed}",
            game=game.game_id,
            options=game.options.to_dict(),
            seed=self.seed,
            sample=self.sample,
            roles=dict(self.names),
            briefs={r: game.brief(r) for r in game.roles},
            started_at=time.time(),
        )
        self._history: dict[str, list[tuple[str, str]]] = {r: [] for r in game.roles}
        self._history_ids: dict[str, list[list[int] | None]] = {r: [] for r in game.roles}
        self._pending: TurnRequest | None = None
        self._asked_at = 0.0
        self._finished = False
        game.reset(seed=self.seed)

    @property
    def done(self) -> bool:
        """True once the episode has ended (finished or failed)."""
        return self._finished

    def pending(self) -> TurnRequest | None:
        """The turn waiting for a move, or None when the episode is over."""
        if self._finished:
            return None
        if self._pending is None:
            game = self.game
            role = game.agent_selection
            observation = game.observe(role)
            self._pending = TurnRequest(
                game=game.game_id,
                role=role,
                messages=role_messages(game.brief(role), self._history[role], observation["text"]),
                observation=observation,
                options=game.options,
                episode=self.episode.id,
                turn=len(game.records),
                seed=turn_seed(self.seed, len(game.records), self.sample),
                episode_seed=self.seed,
                history_ids=list(self._history_ids[role]),
            )
            self._asked_at = time.perf_counter()
        return self._pending

    def policy_for(self, request: TurnRequest) -> Policy:
        return self.agents[request.role]

    def submit(self, completion: Completion) -> None:
        """Apply the completion for the pending turn."""
        request = self._pending
        if request is None:
            raise RuntimeError("submit() without a pending turn; call pending() first")
        self._pending = None
        if completion.error:
            self.fail(completion.error, request.role)
            return
        game = self.game
        game.step(completion.text)
        move = game.records[-1]
        self.episode.turns.append(
            TurnRecord(
                index=len(self.episode.turns),
                role=request.role,
                agent=self.names[request.role],
                observation=request.messages[-1]["content"],
                text=completion.text,
                legal=move.legal,
                reason=move.reason,
                rewards=dict(move.rewards),
                token_ids=completion.token_ids,
                logprobs=completion.logprobs,
                latency_s=round(time.perf_counter() - self._asked_at, 6),
            )
        )
        self._history[request.role].append((request.messages[-1]["content"], completion.text))
        self._history_ids[request.role].append(completion.token_ids)
        if game.result is not None:
            result = game.result
            self.episode.scores = dict(result.scores)
            self.episode.metrics = dict(result.metrics)
            self.episode.summary = result.summary
            self.episode.end_reason = result.reason
            self._close()

    def fail(self, error: str, role: str | None = None) -> None:
        """Stop the episode as failed (a backend error, not a game outcome), naming the role whose agent failed."""
        self._pending = None
        self.episode.status = "failed"
        self.episode.error = error
        self.episode.failed_role = role
        self.episode.end_reason = "failed"
        self._close()

    def _close(self) -> None:
        self._finished = True
        self.episode.credit_rewards()
        self.episode.duration_s = round(time.time() - self.episode.started_at, 6)
        for policy in set(self.agents.values()):
            policy.end_episode(self.episode.id)


def run_episode(
    game: TextGame,
    agents: Mapping[str, Policy],
    seed: int,
    episode_id: str | None = None,
    on_turn: Callable[[TurnRequest, TurnRecord | None], None] | None = None,
) -> Episode:
    """Play one episode to its end, one turn at a time. ``on_turn`` sees each request and its record."""
    runner = EpisodeRunner(game, agents, seed, episode_id)
    while (request := runner.pending()) is not None:
        try:
            completion = runner.policy_for(request).act(request)
        except HumanQuit:
            raise
        except Exception as err:
            log.warning("policy %s failed: %s: %s", runner.policy_for(request).spec, type(err).__name__, err)
            completion = Completion(text="", error=f"{type(err).__name__}: {err}")
        completion = checked_completion(completion, runner.policy_for(request).spec)
        runner.submit(completion)
        if on_turn is not None:
            on_turn(request, runner.episode.turns[-1] if runner.episode.turns and completion.error is None else None)
    return runner.episode
