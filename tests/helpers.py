"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import games
from games.base import TextGame

ROOT = Path(__file__).resolve().parents[1]


def arena(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `arena ARGS` in a fresh process, as a user would (offline)."""
    return subprocess.run([sys.executable, "-m", "arena", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=timeout)


def negotiation_scenario(tmp_path: Path, player_0: str, backend: str = "", episodes: int = 3, name: str = "drill",
                         max_messages: int = 4) -> Path:
    """A self-play scenario file: ``player_0`` (a spec) against the scripted negotiator, short games."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[game]
id = "negotiation-v0"
options = {{ max_messages = {max_messages} }}
[agents]
player_0 = "{player_0}"
player_1 = "scripted"
[sampling]
max_new_tokens = 8
[backend]
{backend}
[run]
episodes = {episodes}
concurrency = 3
""")
    return path


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command's single error line; fails if it printed a traceback or more than one error."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


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
