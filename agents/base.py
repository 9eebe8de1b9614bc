"""The policy interface: a batch of pending turns in, a batch of completions out.

Every agent (a rule-based player, a person at the terminal, a local
transformers model, a vLLM engine, an HTTP endpoint) is a :class:`Policy`.
The rollout engine gathers the pending turns of many episodes, groups them by
policy and makes one :meth:`Policy.generate` call per policy, so backends see
whole batches. :meth:`Policy.act` is the one-turn convenience on top.

A :class:`TurnRequest` carries both views of the turn: ``messages`` (the chat
an LLM reads: the role's brief as the system message, then the role's
observations as user messages and its own earlier moves as assistant
messages) and ``observation`` (the structured dict that rule-based players read).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Completion", "Policy", "PolicyError", "TurnRequest"]


class PolicyError(RuntimeError):
    """A policy could not produce a move (bad spec, backend failure)."""


@dataclass
class TurnRequest:
    """One pending turn of one episode."""

    game: str
    role: str
    messages: list[dict[str, str]]
    observation: Mapping[str, Any]
    options: Any
    episode: str
    turn: int
    seed: int
    episode_seed: int = 0
    #: The token ids this role's policy sampled at each of its earlier turns (None where unknown), so a
    #: model backend can rebuild the conversation from exact ids rather than from re-tokenised text.
    history_ids: list[list[int] | None] | None = None


@dataclass
class Completion:
    """A policy's answer to one :class:`TurnRequest`.

    ``token_ids`` and ``logprobs`` are the sampled completion tokens and their
    log-probabilities, when the backend has them: training uses these exact
    ids, never a re-tokenisation of ``text``. ``error`` set means the policy
    failed on this request (the episode is marked failed, not scored).
    """

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    prompt_token_ids: list[int] | None = None
    finish_reason: str | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Policy(ABC):
    """Something that moves. Subclasses implement :meth:`generate`."""

    #: True for policies that talk to a person: the rollout runs them one turn at a time.
    interactive: bool = False
    #: True if a request's answer never depends on the other requests in its batch (rule-based
    #: policies). Model backends are False: floating point makes batch composition matter.
    batch_invariant: bool = False

    def __init__(self, spec: str):
        self.spec = spec

    @abstractmethod
    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        """One completion per request, in order."""

    def act(self, request: TurnRequest) -> Completion:
        """The completion for a single request."""
        return self.generate([request])[0]

    def end_episode(self, episode: str) -> None:
        """Forget any per-episode state (called when an episode ends)."""

    def close(self) -> None:
        """Release resources (models, connections, servers)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"
