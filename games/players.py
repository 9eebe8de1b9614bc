"""Rule-based players that live beside a game's rules.

A :class:`Player` plays one role for one episode: it is built at the start of
the episode with the game's options and a seed, then asked for a move each
time its role is to move, with that role's observation (the same dict the
PettingZoo env returns, so it sees only what the role sees). Scripted players
are baselines and opponents; they are not model code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping

import numpy as np

from games.options import GameOptions

__all__ = ["Player", "RandomPlayer", "CallablePlayer"]


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
