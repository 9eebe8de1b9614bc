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

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.secrets import redact

__all__ = ["Completion", "Policy", "PolicyError", "TurnRequest", "checked_completion", "error_line"]


class PolicyError(RuntimeError):
    """A policy could not produce a move (bad spec, backend failure)."""


def error_line(err: BaseException, limit: int = 300) -> str:
    """The telling line of an error from a library (an engine, Ray, torch.distributed): its last non-empty
    line, skipping pydantic's pointer to its docs, redacted and cut to ``limit`` characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("For further information")] or lines
    return redact(lines[-1] if lines else "")[:limit]


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


def checked_completion(completion: Any, spec: str) -> Completion:
    """A backend's answer as a well-typed :class:`Completion`, or a failed turn saying why; never raises.

    The one place where what a policy returned is checked before a game or the store sees it: ``text``
    must be a string, ``token_ids`` a list of integers; log-probabilities that are not finite numbers
    (or do not match the token ids one to one) are dropped with a note in ``info``, since training
    recomputes them. Error texts come from outside and are redacted of secrets.
    """
    if not isinstance(completion, Completion):
        return Completion(text="", error=f"{spec} returned a {type(completion).__name__}, not a Completion")
    if completion.error is not None:
        return Completion(text="", error=redact(str(completion.error)), info=dict(completion.info or {}))
    problem = None
    if not isinstance(completion.text, str):
        problem = f"text of type {type(completion.text).__name__}; expected a string"
    elif completion.token_ids is not None and not (
            isinstance(completion.token_ids, list)
            and all(isinstance(t, int) and not isinstance(t, bool) for t in completion.token_ids)):
        problem = "token ids that are not a list of integers"
    if problem:
        return Completion(text="", error=f"{spec} returned {problem}")
    logprobs, dropped = completion.logprobs, None
    if logprobs is not None:
        if not isinstance(logprobs, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in logprobs):
            dropped = "not all finite numbers"
        elif completion.token_ids is not None and len(logprobs) != len(completion.token_ids):
            dropped = f"{len(logprobs)} log-probabilities for {len(completion.token_ids)} tokens"
    if dropped:
        completion.logprobs = None
        completion.info = {**(completion.info or {}), "logprobs_dropped": dropped}
    return completion


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
