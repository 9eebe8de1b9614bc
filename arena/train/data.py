"""From episodes to training sequences: exact token ids, what to learn from, and each turn's credit.

A :class:`RoleSequence` is one role's side of one episode as a single token
sequence: the role's brief, what it saw, and what it wrote. What it wrote is
the ids its policy *sampled* (kept in the episode), never a re-tokenisation of
the text; the text between turns comes from the chat template exactly as the
backend built the prompts (:func:`agents.chat_format.conversation_tokens`).
Turns by text-only agents (scripted players, endpoints) fall back to the
tokenised text, which is right for imitation learning.

Only the spans the role wrote carry a loss; every token of a span carries
that turn's advantage. Per-turn rewards stay per turn: ``returns[k]`` is the
(discounted) sum of the role's rewards from its turn ``k`` on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.chat_format import conversation_ids, conversation_tokens
from arena.play.episode import Episode

log = logging.getLogger(__name__)
_warned_unaligned = False

__all__ = ["RoleSequence", "role_sequences", "Batch", "collate", "returns_to_go"]


@dataclass
class RoleSequence:
    """One role's side of one episode, ready for a loss."""

    episode: str
    game: str
    role: str
    seed: int
    ids: list[int]
    spans: list[tuple[int, int]]  # [start, end) of each turn the role wrote
    rewards: list[float]  # credited reward of each of those turns
    returns: list[float]  # return-to-go from each turn
    score: float  # the role's final score
    exact: bool  # True when every span is the sampled ids
    advantages: list[float] = field(default_factory=list)  # set by the algorithm, one per span
    kl_weights: list[float] = field(default_factory=list)  # per-span KL coefficient multipliers (SCoRe)
    #: the log-probabilities the sampler reported for each span's tokens (None for a span without them)
    sampled_logprobs: list[list[float] | None] = field(default_factory=list)

    @property
    def group(self) -> tuple[str, int]:
        """Episodes on the same set-up (same game and seed) form a group for RLOO / GRPO baselines."""
        return (self.game, self.seed)

    @property
    def trained_tokens(self) -> int:
        return sum(b - a for a, b in self.spans)


def returns_to_go(rewards: Sequence[float], gamma: float = 1.0) -> list[float]:
    out, running = [], 0.0
    for r in reversed(rewards):
        running = r + gamma * running
        out.append(running)
    return out[::-1]


def role_sequences(episode: Episode, roles: Iterable[str], tokenizer: Any, end_ids: Sequence[int] = (),
                   gamma: float = 1.0, max_length: int | None = None) -> list[RoleSequence]:
    """The training sequences of ``roles`` in one finished episode (roles that never moved are skipped)."""
    out = []
    if not episode.ok:
        return out
    for role in roles:
        turns = [t for t in episode.turns if t.role == role]
        if not turns:
            continue
        messages = episode.conversation(role)
        sampled = [t.token_ids for t in turns]
        if all(s is not None for s in sampled):
            ids, spans, exact = conversation_tokens(tokenizer, messages, sampled, end_ids)
        else:
            exact = False
            spans = []
        if not spans:
            ids, mask = conversation_ids(tokenizer, messages)
            spans = _spans(mask)
        if len(spans) != len(turns):  # a template that merges or rewrites turns: credit cannot be aligned
            global _warned_unaligned
            if not _warned_unaligned:
                log.warning("%s's turns cannot be told apart in the chat template's rendering (it is not "
                            "incremental); such sequences are left out of training", role)
                _warned_unaligned = True
            continue
        if max_length is not None and len(ids) > max_length:
            continue
        rewards = [t.reward for t in turns]
        out.append(RoleSequence(episode.id, episode.game, role, episode.seed, ids, spans, rewards,
                                returns_to_go(rewards, gamma), float(episode.scores.get(role, 0.0)), exact,
                                sampled_logprobs=[t.logprobs if exact else None for t in turns]))
    return out


def _spans(mask: Sequence[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, m in enumerate(list(mask) + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


@dataclass
class Batch:
    """Right-padded tensors for a set of sequences.

    ``target`` marks positions whose *next* token is trained on: position p predicts token p + 1.
    ``advantage`` and ``kl_weight`` are per position, from the span of the token predicted.
    """

    input_ids: torch.Tensor
    attention: torch.Tensor
    target: torch.Tensor
    advantage: torch.Tensor
    kl_weight: torch.Tensor
    turn: torch.Tensor  # index of the span (turn) each target position belongs to, -1 elsewhere
    #: the sampler's log-probability of the token each position predicts (NaN where the sampler gave none)
    sampled_logp: torch.Tensor | None = None


def collate(seqs: Sequence[RoleSequence], pad_id: int) -> Batch:
    width = max(len(s.ids) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    target = torch.zeros((n, width), dtype=torch.bool)
    advantage = torch.zeros((n, width))
    kl_weight = torch.zeros((n, width))
    turn = torch.full((n, width), -1, dtype=torch.long)
    sampled = torch.full((n, width), float("nan"))
    for row, s in enumerate(seqs):
        input_ids[row, :len(s.ids)] = torch.tensor(s.ids)
        attention[row, :len(s.ids)] = 1
        for k, (a, b) in enumerate(s.spans):
            # the logits at positions a-1 .. b-2 predict the span's tokens a .. b-1
            target[row, a - 1:b - 1] = True
            advantage[row, a - 1:b - 1] = s.advantages[k] if s.advantages else 0.0
            kl_weight[row, a - 1:b - 1] = s.kl_weights[k] if s.kl_weights else 1.0
            turn[row, a - 1:b - 1] = k
            logprobs = s.sampled_logprobs[k] if k < len(s.sampled_logprobs) else None
            if logprobs is not None and len(logprobs) == b - a:
                sampled[row, a - 1:b - 1] = torch.tensor(logprobs)
    return Batch(input_ids, attention, target, advantage, kl_weight, turn, sampled)
