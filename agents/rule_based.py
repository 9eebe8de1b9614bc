"""Policies made of the games' own players: ``scripted`` and ``random``.

Each game ships a rule-based player (``TextGame.scripted_player``) and a random
mover (``TextGame.random_move``). These policies keep one player per
(episode, role), built with a seed derived from the episode's seed
(:func:`games.seeds.player_seed`), so the same
episode seed gives the same moves however episodes are batched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import games
from agents.base import Completion, Policy, TurnRequest
from games.players import Player
from games.seeds import player_seed

__all__ = ["ScriptedPolicy", "RandomPolicy", "player_seed"]

log = logging.getLogger(__name__)


class _PlayerPolicy(Policy):
    """Keeps a game player per (episode, role) and asks it for moves."""

    batch_invariant = True

    def __init__(self, spec: str):
        super().__init__(spec)
        self._players: dict[tuple[str, str], Player] = {}

    def _make_player(self, request: TurnRequest) -> Player:
        raise NotImplementedError

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        out = []
        for request in requests:
            key = (request.episode, request.role)
            try:
                player = self._players.get(key)
                if player is None:
                    player = self._players[key] = self._make_player(request)
                out.append(Completion(text=player.act(request.observation)))
            except Exception as err:  # a broken player fails its episode, not the whole run
                log.exception("%s player failed on %s/%s", self.spec, request.game, request.role)
                out.append(Completion(text="", error=f"{self.spec} player raised {type(err).__name__}: {err}"))
        return out

    def end_episode(self, episode: str) -> None:
        for key in [k for k in self._players if k[0] == episode]:
            del self._players[key]


class ScriptedPolicy(_PlayerPolicy):
    """The game's rule-based player."""

    def __init__(self, spec: str = "scripted"):
        super().__init__(spec)

    def _make_player(self, request: TurnRequest) -> Player:
        spec = games.get_spec(request.game)
        return spec.scripted_player(request.role, request.options, player_seed(request.episode_seed, request.role))


class RandomPolicy(_PlayerPolicy):
    """Random legal-looking or garbage moves from the game's ``random_move``."""

    def __init__(self, spec: str = "random"):
        super().__init__(spec)

    def _make_player(self, request: TurnRequest) -> Player:
        spec = games.get_spec(request.game)
        return spec.random_player(request.role, request.options, player_seed(request.episode_seed, request.role))
