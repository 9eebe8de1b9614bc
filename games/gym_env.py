"""Any game as a single-agent Gymnasium env for one role.

The other roles are played by opponents given per role: a :class:`Player`
subclass (built anew each episode with a seed derived from the episode's), a
plain function from observation text to move text, or the strings
``"scripted"`` / ``"random"`` for the game's own players::

    env = games.to_gymnasium("negotiation-v0", role="player_0", opponents={"player_1": "scripted"})
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("[propose] (1 book, 1 hat, 1 ball)")

The reward of a step is everything the role earned from its move until its
next turn (or the end of the game). If a game ends before the role's first
turn, ``reset`` returns the final observation and the first ``step`` (its
action ignored) returns ``terminated=True`` with the role's reward.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Union

import gymnasium
import numpy as np

from games.base import TextGame
from games.players import CallablePlayer, Player
from games.registry import get_spec, make

__all__ = ["SingleRoleEnv", "to_gymnasium", "Opponent"]

Opponent = Union[str, type[Player], Player, Callable[[str], str]]


class SingleRoleEnv(gymnasium.Env):
    """One role of a :class:`TextGame`; opponents play the other roles."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, game: TextGame, role: str, opponents: Mapping[str, Opponent], render_mode: str | None = None):
        if role not in game.roles:
            raise ValueError(f"{game.game_id} has roles {list(game.roles)}; got role={role!r}")
        others = [r for r in game.roles if r != role]
        missing = [r for r in others if r not in opponents]
        extra = [r for r in opponents if r not in others]
        if missing or extra:
            raise ValueError(
                f"opponents must give a player for each other role of {game.game_id}: {others}"
                + (f"; missing {missing}" if missing else "")
                + (f"; not other roles: {extra}" if extra else "")
            )
        self.game = game
        self.role = role
        self.opponents = dict(opponents)
        self.render_mode = render_mode
        self.observation_space = game.observation_space(role)
        self.action_space = game.action_space(role)
        self._players: dict[str, Player] = {}
        self._paid = False

    def _player(self, role: str, spec: Opponent, seed: int) -> Player:
        options = self.game.options
        if isinstance(spec, str):
            game_spec = get_spec(self.game.game_id)
            if spec == "scripted":
                return game_spec.scripted_player(role, options, seed)
            if spec == "random":
                return game_spec.random_player(role, options, seed)
            raise ValueError(f"opponent {role!r}: unknown player {spec!r}; use 'scripted', 'random', "
                             "a Player class or a function from text to text")
        if isinstance(spec, type) and issubclass(spec, Player):
            return spec(role, options, seed)
        if isinstance(spec, Player):
            return spec
        if callable(spec):
            return CallablePlayer(role, options, seed, fn=spec)
        raise TypeError(f"opponent {role!r}: expected a Player, a Player class, a function or a name; got {spec!r}")

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        game_seed = int(self.np_random.integers(2**31 - 1))
        self.game.reset(seed=game_seed)
        seeds = np.random.SeedSequence(game_seed).spawn(len(self.game.roles))
        self._players = {
            r: self._player(r, spec, int(seeds[self.game.roles.index(r)].generate_state(1)[0]))
            for r, spec in self.opponents.items()
        }
        self._advance()
        self._paid = False
        obs, reward, terminated, truncated, info = self._last()
        return obs, info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.game.done:
            # The episode can end before this role's first turn (e.g. a refiner when the critic accepts
            # the first solution): the first step then only collects the role's reward. Later steps
            # return the same end with no reward.
            obs, reward, terminated, truncated, info = self._last()
            if self._paid:
                gymnasium.logger.warn("step() called after the episode ended; call reset()")
                reward = 0.0
            self._paid = True
            return obs, reward, terminated, truncated, {**info, "action_ignored": True}
        self.game.step(action)
        self._advance()
        self._paid = self.game.done
        return self._last()

    def _advance(self) -> None:
        game = self.game
        while not game.done and game.agent_selection != self.role:
            mover = game.agent_selection
            game.step(self._players[mover].act(game.observe(mover)))

    def _last(self) -> tuple[dict, float, bool, bool, dict]:
        game = self.game
        obs = game.observe(self.role)
        reward = float(game._cumulative_rewards.get(self.role, 0.0))
        terminated = bool(game.terminations.get(self.role, False))
        truncated = bool(game.truncations.get(self.role, False))
        info = copy.deepcopy(game.infos.get(self.role, {}))
        return obs, reward, terminated, truncated, info

    def render(self) -> str | None:
        return self.game.transcript() if self.render_mode == "ansi" else None

    def close(self) -> None:
        self.game.close()


def to_gymnasium(
    game: str | TextGame,
    role: str,
    opponents: Mapping[str, Opponent],
    render_mode: str | None = None,
    **options: Any,
) -> SingleRoleEnv:
    """Wrap a game (an id or an instance) as a Gymnasium env for ``role``."""
    if isinstance(game, str):
        game = make(game, **options)
    elif options:
        raise ValueError("options can only be given with a game id, not with a game instance")
    return SingleRoleEnv(game, role, opponents, render_mode=render_mode)
