"""The base of every language game: PettingZoo AEC plumbing around pure rules.

A game subclasses :class:`TextGame` and writes its rules in a few methods;
this module does the bookkeeping PettingZoo expects (agent selection,
accumulated rewards, terminations, dead steps), keeps each role's inbox of
what it has not seen yet, records every move, and enforces the turn limit.

The contract a game implements::

    class MyGame(TextGame):
        game_id = "my-game-v0"
        roles = ("player_0", "player_1")
        options_class = MyOptions          # a GameOptions dataclass

        def setup(self): ...               # new episode: draw with self.np_random,
                                           # self.tell(...) each role its brief, self.next_turn(role)
        def play(self, role, move): ...    # apply one move (any string). Use self.reject(reason)
                                           # for illegal moves, self.tell / self.reward /
                                           # self.next_turn / self.finish for the rest
        def turn_limit(self): ...          # the most moves an episode can have
        def brief(self, role): ...         # static instructions for a role (an LLM's system prompt)

Optional: ``extra_spaces`` / ``observe_extras`` (structured observation
entries), ``at_turn_limit`` (the outcome when the limit is hit), ``random_move``
(legal-looking random moves), ``scripted_player`` (a rule-based Player class).

Rules must be deterministic given the seed: draw every random number from
``self.np_random``, which :meth:`reset` re-creates from the seed, and keep all
episode state in attributes that :meth:`setup` rebuilds.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import AECEnv

from games.options import GameOptions
from games.players import Player
from games.spaces import AnyText
from games.text import clean, clip

__all__ = ["TextGame", "MoveRecord", "GameResult", "GameError"]


class GameError(RuntimeError):
    """A game's rules were used wrongly (a bug in a game, not a bad move)."""


@dataclass
class MoveRecord:
    """One move as the game judged it."""

    turn: int
    role: str
    text: str
    legal: bool = True
    reason: str = ""
    rewards: dict[str, float] = field(default_factory=dict)


@dataclass
class GameResult:
    """How an episode ended: per-role scores, the game's metrics, and a summary for people."""

    scores: dict[str, float]
    metrics: dict[str, float]
    summary: str
    reason: str = "finished"


class TextGame(AECEnv):
    """Base class for turn-based language games (PettingZoo AEC, text moves)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "is_parallelizable": False}

    game_id: ClassVar[str] = ""
    #: Every role the game can have; an instance's ``roles`` may be fewer (see :meth:`roles_for`).
    roles: tuple[str, ...] = ()
    options_class: ClassVar[type[GameOptions]] = GameOptions
    scripted_player: ClassVar[type[Player] | None] = None

    #: Option sets worth testing and showing (registry-wide tests run every game in each of them).
    variants: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    #: Metrics that count things per episode (moves, rounds, ...), as opposed to rates, shares and scores:
    #: learning curves keep them out of the panel of rates even when their means fall within [0, 1].
    count_metrics: ClassVar[frozenset[str]] = frozenset()

    #: Moves longer than this are illegal (and clipped in the record).
    max_move_chars: ClassVar[int] = 4000
    #: What one role shows another is clipped to this many characters.
    max_message_chars: ClassVar[int] = 2000
    #: An observation's text never exceeds this many characters.
    max_observation_chars: ClassVar[int] = 16000

    def __init__(
        self, options: GameOptions | Mapping[str, Any] | None = None, render_mode: str | None = None, **kwargs: Any
    ):
        super().__init__()
        if not self.game_id or not self.roles:
            raise GameError(f"{type(self).__name__} must set the class attributes game_id and roles")
        if isinstance(options, GameOptions):
            if kwargs:
                raise GameError("pass options either as a GameOptions object or as keywords, not both")
            if not isinstance(options, self.options_class):
                raise GameError(f"{self.game_id} takes {self.options_class.__name__}, got {type(options).__name__}")
            self.options = options
        else:
            merged = {**dict(options or {}), **kwargs}
            self.options = self.options_class.from_mapping(merged, source=self.game_id)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise GameError(f"render_mode must be one of {self.metadata['render_modes']}; got {render_mode!r}")
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "name": self.game_id}
        roles = tuple(self.roles_for(self.options))
        if not roles or not set(roles) <= set(type(self).roles):
            raise GameError(f"{type(self).__name__}.roles_for() must return some of {type(self).roles}; got {roles}")
        self.roles = roles
        self.possible_agents = list(self.roles)
        limit = int(self.turn_limit())
        text_space = AnyText(max_length=self.max_observation_chars)
        self.observation_spaces = {
            role: spaces.Dict({"text": text_space, "turn": spaces.Discrete(limit + 1), **self.extra_spaces(role)})
            for role in self.roles
        }
        self.action_spaces = {role: AnyText(max_length=self.max_move_chars + 1) for role in self.roles}
        self._reset_bookkeeping()
        self.np_random, self.np_random_seed = seeding.np_random(None)

    # ------------------------------------------------------------------ rules API
    @classmethod
    def roles_for(cls, options: GameOptions) -> tuple[str, ...]:
        """The roles that play with these options (some of ``cls.roles``; default: all)."""
        return cls.roles

    def setup(self) -> None:
        """Start a new episode: draw its state with ``self.np_random``, tell each role its situation
        and call ``self.next_turn(first_role)``."""
        raise NotImplementedError

    def play(self, role: str, move: str) -> None:
        """Apply ``move`` (any string) by ``role``. Must not raise on any input."""
        raise NotImplementedError

    def turn_limit(self) -> int:
        """The most moves an episode may take (legal and illegal together)."""
        raise NotImplementedError

    def brief(self, role: str) -> str:
        """Static instructions for ``role``: the rules and the move format (no episode secrets)."""
        raise NotImplementedError

    def extra_spaces(self, role: str) -> dict[str, spaces.Space]:
        """Structured observation entries beside ``text`` and ``turn``."""
        return {}

    def observe_extras(self, role: str) -> dict[str, Any]:
        """Values for :meth:`extra_spaces` (fresh objects each call)."""
        return {}

    def at_turn_limit(self) -> None:
        """Called when the turn limit is reached before the game finished. Default: everyone scores 0."""
        self.finish(
            {role: 0.0 for role in self.roles},
            {},
            summary=f"Turn limit of {self.turn_limit()} moves reached.",
            reason="turn limit",
        )

    @classmethod
    def random_move(cls, role: str, observation: Mapping[str, Any], rng: np.random.Generator) -> str:
        """A random move for ``role``; games override it to make legal-looking moves too."""
        length = int(rng.integers(0, 40))
        alphabet = "abcdefghijklmnopqrstuvwxyz      0123456789.,!?[]()"
        return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=length))

    def tournament_mode(self) -> str:
        """How tournaments compare agents in this game (with these options).

        ``head-to-head``: in each episode, the agents' seat scores decide win, draw or loss (competitive
        games). ``same-seat``: agents are compared by the score each achieves in the same role on the same
        seed (cooperative or single-role games). Default: head-to-head when there are several roles.
        """
        return "head-to-head" if len(self.roles) > 1 else "same-seat"

    @classmethod
    def aggregate_metrics(cls, episodes: Iterable[Mapping[str, float]]) -> dict[str, float]:
        """Combine per-episode metrics: the mean of each metric over the episodes that report it.

        A metric that does not apply to an episode (e.g. a deal's Pareto-optimality when there was
        no deal) is left out of that episode's dict, so it does not drag the mean down.
        Games override this when a mean is the wrong summary.
        """
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for metrics in episodes:
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
                counts[name] = counts.get(name, 0) + 1
        return {name: sums[name] / counts[name] for name in sorted(sums)}

    # ------------------------------------------------------------- helpers for rules
    def tell(self, roles: str | Iterable[str], text: str) -> None:
        """Add ``text`` to what ``roles`` (a role, a list of roles, or "all") will observe next."""
        targets = list(self.roles) if roles == "all" else [roles] if isinstance(roles, str) else list(roles)
        for role in targets:
            if role not in self._inbox:
                raise GameError(f"tell(): unknown role {role!r}; roles are {list(self.roles)}")
            self._inbox[role].append(text)
        self._log.append(("tell", ",".join(targets), text))

    def reward(self, role: str, amount: float) -> None:
        """Give ``role`` a reward at this step (added to anything already given this step)."""
        self.rewards[role] = self.rewards.get(role, 0.0) + float(amount)
        self._step_rewards[role] = self._step_rewards.get(role, 0.0) + float(amount)

    def reject(self, reason: str, penalty: float = 0.0) -> None:
        """Record the current move as illegal. By default the same role moves again."""
        move = self._current_move
        if move is None:
            raise GameError("reject() may only be called from play()")
        move.legal = False
        move.reason = reason
        if penalty:
            self.reward(move.role, -abs(penalty))
        self.tell(move.role, f"Your move was not accepted: {reason}")
        self.next_turn(move.role)

    def next_turn(self, role: str) -> None:
        """Say who moves next."""
        if role not in self.roles:
            raise GameError(f"next_turn(): unknown role {role!r}; roles are {list(self.roles)}")
        self._next = role

    def finish(
        self,
        scores: Mapping[str, float],
        metrics: Mapping[str, float] | None = None,
        summary: str = "",
        *,
        reason: str = "finished",
        reward_scores: bool = True,
    ) -> None:
        """End the episode with per-role ``scores`` and the game's ``metrics``.

        With ``reward_scores`` each role's score is also paid out as this step's reward;
        games that pay rewards during play pass False.
        """
        missing = set(self.roles) - set(scores)
        if missing:
            raise GameError(f"finish(): scores missing for roles {sorted(missing)}")
        scores = {role: float(scores[role]) for role in self.roles}
        if reward_scores:
            for role, score in scores.items():
                self.reward(role, score)
        self.result = GameResult(scores, {k: float(v) for k, v in (metrics or {}).items()}, summary, reason)
        if summary:
            self.tell("all", f"Game over. {summary}")

    # ------------------------------------------------------------------ AEC API
    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        if seed is not None or self.np_random_seed is None or not self._started:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        self._started = True
        self._reset_bookkeeping()
        self.agents = list(self.roles)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self.setup()
        if self._next is None:
            raise GameError(f"{self.game_id}.setup() must call next_turn(first_role)")
        self.agent_selection = self._next
        self._step_rewards = {}

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        if action is None:
            move = ""
        elif isinstance(action, str):
            move = action
        else:
            move = str(action)
        self._cumulative_rewards[agent] = 0.0
        self.rewards = {a: 0.0 for a in self.agents}
        self._step_rewards = {}
        self._inbox[agent] = []
        record = MoveRecord(turn=len(self.records), role=agent, text=clip(move, 2 * self.max_move_chars))
        self._current_move = record
        self._next = None
        self._log.append(("move", agent, record))
        if action is None:
            self.reject("no move was given")
        elif len(move) > self.max_move_chars:
            self.reject(f"the move is {len(move)} characters long; the limit is {self.max_move_chars}")
        else:
            self.play(agent, move)
        self._current_move = None
        self.records.append(record)
        if self.result is None and len(self.records) >= self.turn_limit():
            self.at_turn_limit()
            if self.result is None:
                raise GameError(f"{self.game_id}.at_turn_limit() must call finish()")
        record.rewards = dict(self._step_rewards)
        if self.result is not None:
            for a in self.agents:
                self.terminations[a] = True
                self.infos[a] = {
                    "scores": dict(self.result.scores),
                    "metrics": dict(self.result.metrics),
                    "end_reason": self.result.reason,
                }
            self.infos[agent]["legal"] = record.legal
            self.infos[agent]["reason"] = record.reason
            self._log.append(("end", "", self.result))
            self.agent_selection = agent
            self._accumulate_rewards()
            self._deads_step_first()
            return
        if self._next is None:
            raise GameError(f"{self.game_id}.play() must call next_turn() or finish()")
        for a in self.agents:
            self.infos[a] = {}
        self.infos[agent] = {"legal": record.legal, "reason": record.reason}
        self.agent_selection = self._next
        self._accumulate_rewards()

    def observe(self, agent: str) -> dict[str, Any]:
        text = "\n\n".join(self._inbox.get(agent, []))
        if len(text) > self.max_observation_chars:
            keep = self.max_observation_chars - 40
            text = f"[... {len(text) - keep} earlier characters cut]" + text[-keep:]
            text = text[-self.max_observation_chars:]
        obs = {"text": text, "turn": np.int64(min(len(self.records), self.turn_limit()))}
        obs.update(self.observe_extras(agent))
        return obs

    def render(self) -> str | None:
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; make the game with render_mode='ansi'.")
            return None
        return self.transcript()

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ reading
    def moves(self) -> list[MoveRecord]:
        """Every move of this episode so far, the one being played included."""
        return self.records + ([self._current_move] if self._current_move is not None else [])

    @property
    def done(self) -> bool:
        """True once the episode has a result."""
        return self.result is not None

    def shown_text(self, move: str) -> str:
        """``move`` as another role is shown it (cleaned and clipped)."""
        return clean(move, self.max_message_chars)

    def transcript(self) -> str:
        """Everything that happened this episode, as deterministic plain text."""
        head = {"game": self.game_id, "seed": self.np_random_seed, "options": self.options.to_dict()}
        lines = [json.dumps(head, sort_keys=True, default=str)]
        for kind, who, payload in self._log:
            if kind == "tell":
                lines.append(f"[to {who}] {payload}")
            elif kind == "move":
                mark = "" if payload.legal else f"  (illegal: {payload.reason})"
                lines.append(f"#{payload.turn} {who}: {payload.text!r}{mark}")
            else:
                result = dataclasses.asdict(payload)
                lines.append("[end] " + json.dumps(result, sort_keys=True))
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ internals
    def _reset_bookkeeping(self) -> None:
        self._started = getattr(self, "_started", False)
        self._inbox: dict[str, list[str]] = {role: [] for role in self.roles}
        self._log: list[tuple[str, str, Any]] = []
        self._next: str | None = None
        self._current_move: MoveRecord | None = None
        self._step_rewards: dict[str, float] = {}
        self.records: list[MoveRecord] = []
        self.result: GameResult | None = None
        self.rewards = {}
        self._skip_agent_selection = None

    def __str__(self) -> str:
        return self.game_id
