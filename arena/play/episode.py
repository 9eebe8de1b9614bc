"""The episode record: one schema for evaluation, tournaments and training.

An :class:`Episode` holds everything needed to replay, score or train on a
game: the game id and options, the seed, which agent played each role, every
turn (what the role was shown, what it wrote, the sampled token ids and
log-probabilities when the backend gives them, legality, rewards), the final
scores and metrics, and whether the episode finished or failed.

The chat a role saw at a turn is not stored turn by turn (that would grow
quadratically); :meth:`Episode.messages` rebuilds it from the role's brief and
its earlier turns, exactly as the rollout built it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Episode", "TurnRecord", "SCHEMA_VERSION", "role_messages", "EpisodeFormatError"]

SCHEMA_VERSION = 1


class EpisodeFormatError(ValueError):
    """A stored episode does not match the schema."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _number(v) for k, v in value.items())


def _ids(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                             for v in value))


def _floats(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(_number(v) for v in value))


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _texts(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


# What each stored field must hold: what every reader (replay, export, ratings, training) relies on.
_TURN_TYPES = {
    "index": (_integer, "an integer"), "role": (_text, "a string"), "agent": (_text, "a string"),
    "observation": (_text, "a string"), "text": (_text, "a string"), "legal": (lambda v: isinstance(v, bool),
                                                                              "true or false"),
    "reason": (_text, "a string"), "rewards": (_numbers, "a table of finite numbers"),
    "reward": (_number, "a finite number"), "token_ids": (_ids, "a list of integers or null"),
    "logprobs": (_floats, "a list of finite numbers or null"), "latency_s": (_number, "a finite number"),
}
_EPISODE_TYPES = {
    "id": (_text, "a string"), "game": (_text, "a string"), "seed": (_integer, "an integer"),
    "sample": (_integer, "an integer"), "options": (lambda v: isinstance(v, dict), "a table"),
    "roles": (_texts, "a table of strings"), "briefs": (_texts, "a table of strings"),
    "scores": (_numbers, "a table of finite numbers"), "metrics": (_numbers, "a table of finite numbers"),
    "summary": (_text, "a string"), "end_reason": (_text, "a string"), "error": (_optional_text, "a string or null"),
    "failed_role": (_optional_text, "a string or null"), "started_at": (_number, "a finite number"),
    "duration_s": (_number, "a finite number"),
}


def _check_fields(data: dict[str, Any], types: dict[str, tuple[Any, str]], where: str) -> None:
    for name, (ok, expected) in types.items():
        if name in data and not ok(data[name]):
            raise EpisodeFormatError(f"{where}: {name!r} must be {expected}; got {data[name]!r:.60}")


def role_messages(brief: str, history: list[tuple[str, str]], observation: str) -> list[dict[str, str]]:
    """The chat a role sees: its brief, its earlier (observation, move) pairs, then the new observation."""
    messages = [{"role": "system", "content": brief}]
    for seen, said in history:
        messages.append({"role": "user", "content": seen})
        messages.append({"role": "assistant", "content": said})
    messages.append({"role": "user", "content": observation})
    return messages


@dataclass
class TurnRecord:
    """One move of one role."""

    index: int
    role: str
    agent: str
    observation: str
    text: str
    legal: bool
    reason: str = ""
    rewards: dict[str, float] = field(default_factory=dict)
    reward: float = 0.0
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    latency_s: float = 0.0


@dataclass
class Episode:
    """One game played to its end (``status == "ok"``) or stopped by a failure (``"failed"``)."""

    id: str
    game: str
    options: dict[str, Any]
    seed: int
    roles: dict[str, str]
    briefs: dict[str, str]
    sample: int = 0
    turns: list[TurnRecord] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    end_reason: str = ""
    status: str = "ok"
    error: str | None = None
    failed_role: str | None = None
    started_at: float = 0.0
    duration_s: float = 0.0
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def messages(self, index: int) -> list[dict[str, str]]:
        """The chat messages the mover of turn ``index`` was given."""
        turn = self.turns[index]
        history = [(t.observation, t.text) for t in self.turns[:index] if t.role == turn.role]
        return role_messages(self.briefs.get(turn.role, ""), history, turn.observation)

    def conversation(self, role: str) -> list[dict[str, str]]:
        """The whole chat of one role: its brief, then each observation and the move it made."""
        messages = [{"role": "system", "content": self.briefs.get(role, "")}]
        for t in self.turns:
            if t.role == role:
                messages += [{"role": "user", "content": t.observation}, {"role": "assistant", "content": t.text}]
        return messages

    def credit_rewards(self) -> None:
        """Set each turn's ``reward``: what its mover earned from that move until its next move."""
        last_turn: dict[str, TurnRecord] = {}
        for turn in self.turns:
            last_turn[turn.role] = turn
            turn.reward = 0.0
            for role, amount in turn.rewards.items():
                if role in last_turn:
                    last_turn[role].reward += amount

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        """Rebuild an episode from :meth:`to_dict` output, checking the schema."""
        if not isinstance(data, dict):
            raise EpisodeFormatError(f"an episode must be a JSON object; got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise EpisodeFormatError(f"episode schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("id", "game", "seed", "roles") if n not in data]
        unknown = [k for k in data if k not in names]
        if missing or unknown:
            raise EpisodeFormatError(
                f"episode {data.get('id', '?')!r}: missing fields {missing}, unknown fields {unknown}"
            )
        turn_names = {f.name for f in dataclasses.fields(TurnRecord)}
        turns = []
        raw_turns = data.get("turns", [])
        if not isinstance(raw_turns, list) or not all(isinstance(raw, dict) for raw in raw_turns):
            raise EpisodeFormatError(f"episode {data['id']!r}: 'turns' must be a list of objects")
        for raw in raw_turns:
            extra = [k for k in raw if k not in turn_names]
            if extra:
                raise EpisodeFormatError(f"episode {data['id']!r}: unknown turn fields {extra}")
            _check_fields(raw, _TURN_TYPES, f"episode {data['id']!r}, turn {raw.get('index', '?')}")
            turns.append(TurnRecord(**raw))
        _check_fields(data, _EPISODE_TYPES, f"episode {data['id']!r}")
        if data.get("status", "ok") not in ("ok", "failed"):
            raise EpisodeFormatError(f"episode {data['id']!r}: status must be 'ok' or 'failed'; got "
                                     f"{data['status']!r}")
        return cls(**{**data, "turns": turns})

    def is_finite(self) -> bool:
        """True if every score and metric is a finite number."""
        return all(math.isfinite(v) for v in [*self.scores.values(), *self.metrics.values()])
