"""The seed model's training data: transcripts of the games' scripted players.

Every scripted role's whole conversation becomes one training sequence. Some
episodes have one random opponent so the model sees odd partners, and now and
then a scripted role "slips" (:class:`SlippingScripted`): the slip stays in the
context but out of the loss, and what the role does next is learned, so the
model learns to recover when the game rejects a move.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import games
from agents.base import Completion, Policy, TurnRequest
from agents.rule_based import RandomPolicy, ScriptedPolicy
from arena.config import ScenarioError, Section
from arena.play.batched import BatchedRollout, make_plans
from arena.play.episode import Episode
from games.options import OptionError, option
from games.seeds import slip_generator

__all__ = ["DataSection", "SlippingScripted", "make_transcripts"]


@dataclass(frozen=True)
class DataSection(Section):
    episodes: dict[str, Any] = option({"negotiation-v0": 1500, "refine-v0": 1500, "therapy-v0": 600},
                                      "scripted episodes per game (spread over the game's variants)")
    mixes: tuple[Any, ...] = option((), "instead of `episodes`: a list of { game, options, episodes } tables, to "
                                        "choose exactly which option sets the data covers")
    random_opponents: float = option(0.15, "share of episodes where one other role plays randomly", min=0, max=1)
    slips: float = option(0.0, "share of a scripted role's turns replaced by a random or broken move that is not "
                               "learned from (the recovery after it is)", min=0, max=0.5)
    seed: int = option(0, "seed of the episodes", min=0)

    def validate(self) -> None:
        """Every game and option of the data, checked before any episode is played."""
        try:
            parts = self.sources()
        except games.UnknownGameError as err:
            raise ScenarioError(f"episodes: {err.args[0]}") from None
        except ScenarioError as err:
            raise ScenarioError(str(err).removeprefix("[data] ")) from None
        for n, (game_id, options, _) in enumerate(parts, 1):
            try:
                games.make(game_id, **options)
            except games.UnknownGameError as err:
                raise ScenarioError(f"mixes #{n}: {err.args[0]}") from None
            except OptionError as err:
                raise ScenarioError(f"mixes #{n}: {err}") from None

    def sources(self) -> list[tuple[str, dict[str, Any], int]]:
        """(game, options, episodes) for every part of the data."""
        if self.mixes:
            out = []
            for n, mix in enumerate(self.mixes, 1):
                if not isinstance(mix, dict) or "game" not in mix:
                    raise ScenarioError(f"[data] mixes #{n}: expected a table with game, options and episodes")
                unknown = sorted(set(mix) - {"game", "options", "episodes"})
                if unknown:
                    raise ScenarioError(f"[data] mixes #{n}: unknown key {unknown[0]!r}; a mix takes game, options "
                                        "and episodes")
                out.append((mix["game"], dict(mix.get("options") or {}), int(mix.get("episodes", 0))))
            return out
        out = []
        for game_id, count in self.episodes.items():
            variants = games.get_spec(game_id).cls.variants
            for v, options in enumerate(variants):
                out.append((game_id, dict(options), int(count) // len(variants) + (v < int(count) % len(variants))))
        return out


class SlippingScripted(Policy):
    """The scripted players, except that ``rate`` of their turns are slips.

    A slip is what a sampling model does now and then: half of them are the game's random move,
    half the scripted move broken (its first line dropped, or a one-line move cut in half), which
    the game usually rejects. At the role's next turn the scripted player is shown the slipped
    turn's observation again, followed by the new one, so it answers what was asked (a rejection
    asks again).
    ``slipped`` holds (episode id, turn index) of every slip, for the data to leave out of the loss.
    Slips are drawn from the episode seed and the turn, so batching does not change them.
    """

    batch_invariant = True

    def __init__(self, rate: float, spec: str = "scripted"):
        super().__init__(spec)
        self.rate = rate
        self.scripted, self.random = ScriptedPolicy(), RandomPolicy()
        self.slipped: set[tuple[str, int]] = set()
        self._missed: dict[tuple[str, str], str] = {}

    def _slip(self, request: TurnRequest) -> str:
        """Which slip this turn is: "" (none), "random" or "broken"."""
        if not self.rate:
            return ""
        roll = slip_generator(request.episode_seed, request.turn, request.role).random(2)
        return "" if roll[0] >= self.rate else ("random" if roll[1] < 0.5 else "broken")

    @staticmethod
    def _break(text: str) -> str:
        lines = text.splitlines()
        return "\n".join(lines[1:]) if len(lines) > 1 else text[: len(text) // 2]

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        out = []
        for request in requests:
            key = (request.episode, request.role)
            missed = self._missed.pop(key, None)
            if missed is not None:
                observation = {**request.observation, "text": f"{missed}\n{request.observation['text']}"}
                request = dataclasses.replace(request, observation=observation)
            slip = self._slip(request)
            if not slip:
                out += self.scripted.generate([request])
                continue
            self.slipped.add((request.episode, request.turn))
            self._missed[key] = str(request.observation["text"])
            if slip == "random":
                out += self.random.generate([request])
            else:
                [done] = self.scripted.generate([request])
                out.append(dataclasses.replace(done, text=self._break(done.text)) if not done.error else done)
        return out

    def end_episode(self, episode: str) -> None:
        self.scripted.end_episode(episode)
        self.random.end_episode(episode)
        for key in [k for k in self._missed if k[0] == episode]:
            del self._missed[key]


def _training_conversation(episode: Episode, role: str, slipped: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """One role's chat; its slips and any move the game rejected are marked ``train: False``."""
    messages: list[dict[str, Any]] = episode.conversation(role)
    replies = (m for m in messages if m["role"] == "assistant")
    for turn, reply in zip((t for t in episode.turns if t.role == role), replies):
        reply["train"] = turn.legal and (episode.id, turn.index) not in slipped
    return messages


def make_transcripts(section: DataSection, progress: Callable[[str, int, int], None] | None = None
                     ) -> list[list[dict[str, Any]]]:
    """Conversations of scripted roles, over every game and variant (slips marked ``train: False``)."""
    scripted, randomer = SlippingScripted(section.slips), RandomPolicy()
    conversations: list[list[dict[str, Any]]] = []
    rng = np.random.default_rng(section.seed)
    for v, (game_id, options, n) in enumerate(section.sources()):
        env = games.make(game_id, **options)
        plans = []
        for plan in make_plans(game_id, {r: "scripted" for r in env.roles}, n, seed=section.seed * 1000 + v,
                               options=options, prefix=f"{game_id}-v{v}"):
            roles = dict(plan.roles)
            if len(env.roles) > 1 and rng.random() < section.random_opponents:
                roles[env.roles[int(rng.integers(len(env.roles)))]] = "random"
            plans.append(type(plan)(plan.id, plan.game, plan.seed, roles, plan.options))
        rollout = BatchedRollout({"scripted": scripted, "random": randomer}, concurrency=64)
        for k, episode in enumerate(rollout.run(plans), 1):
            for role, agent in episode.roles.items():
                if agent == "scripted" and any(t.role == role for t in episode.turns):
                    conversations.append(_training_conversation(episode, role, scripted.slipped))
            if progress is not None and (k % 100 == 0 or k == n):  # the last one too, or the bar never completes
                progress(f"{game_id} #{v}", k, n)
    return conversations
