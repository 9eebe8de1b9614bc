"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import games
from games.base import TextGame


def play_out(env: TextGame, choose: Callable[[str, Mapping], str], seed: int) -> TextGame:
    """Play one episode with ``choose(role, observation) -> move``; dead steps are taken as PettingZoo expects."""
    env.reset(seed=seed)
    for agent in env.agent_iter(max_iter=10 * env.turn_limit() + 10):
        obs, _, term, trunc, _ = env.last()
        env.step(None if term or trunc else choose(agent, obs))
    return env


def scripted_game(game_id: str, seed: int, kinds: Mapping[str, str] | None = None, **options) -> TextGame:
    """One episode with the game's scripted (or random) players in every role."""
    spec = games.get_spec(game_id)
    env = spec.make(render_mode="ansi", **options)
    env.reset(seed=seed)
    players = {}
    for i, role in enumerate(env.roles):
        kind = (kinds or {}).get(role, "scripted")
        make = spec.scripted_player if kind == "scripted" else spec.random_player
        players[role] = make(role, env.options, seed * 1000 + i)
    return play_out(env, lambda role, obs: players[role].act(obs), seed)
