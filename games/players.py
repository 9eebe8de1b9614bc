"""Rule-based players that live beside a game's rules.

A :class:`Player` plays one role for one episode: it is built at the start of
the episode with the game's options and a seed, then asked for a move each
time its role is to move, with that role's observation (the same dict the
PettingZoo env returns, so it sees only what the role sees). Scripted players
are baselines and opponents; they are not model code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from games.options import GameOptions

__all__ = ["Player", "RandomPlayer", "CallablePlayer", "players_by_role"]


class Player(ABC):
    """One role in one episode. Subclasses implement :meth:`act`."""

    def __init__(self, role: str, options: GameOptions, seed: int | None = None):
        self.role = role
        self.options = options
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def act(self, observation: Mapping[str, Any]) -> str:
        """The next move, given the role's observation (``text`` plus structured entries)."""


class RandomPlayer(Player):
    """Moves drawn by the game's ``random_move`` (legal-looking or garbage)."""

    def __init__(self, role: str, options: GameOptions, seed: int | None = None, *, game: type | None = None):
        super().__init__(role, options, seed)
        if game is None:
            raise TypeError("RandomPlayer needs the game class (game=...)")
        self.game = game

    def act(self, observation: Mapping[str, Any]) -> str:
        return self.game.random_move(self.role, observation, self.rng)


class CallablePlayer(Player):
    """Wraps a plain function from observation text to move text."""

    def __init__(self, role: str, options: GameOptions, seed: int | None = None, *, fn: Callable[[str], str]):
        super().__init__(role, options, seed)
        self.fn = fn

    def act(self, observation: Mapping[str, Any]) -> str:
        return self.fn(observation["text"])


def players_by_role(name: str, players: Mapping[str, type[Player]]) -> type[Player]:
    """One Player class that plays each role with that role's own Player class (for ``scripted_player``)."""

    def __init__(self: Player, role: str, options: GameOptions, seed: int | None = None) -> None:
        Player.__init__(self, role, options, seed)
        if role not in players:
            raise ValueError(f"{name} has no player for role {role!r}; it plays {sorted(players)}")
        self.player = players[role](role, options, seed)

    def act(self: Player, observation: Mapping[str, Any]) -> str:
        return self.player.act(observation)

    doc = f"Plays each role with its own player: {', '.join(f'{r}={c.__name__}' for r, c in players.items())}."
    return type(name, (Player,), {"__init__": __init__, "act": act, "__doc__": doc})
