"""Every bad input a user reported gets one clear line, no traceback, and the right exit status.

Exit status 2: the input is wrong (fix it and run again); 1: the run started but could not go on.
Each row is run as a user runs it (`python -m arena ...` in a fresh process).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arena.play.episode import Episode
from arena.play.store import EpisodeStore
from tests.helpers import arena, one_error_line

NOWHERE = "openai:m@http://127.0.0.1:9/v1"  # nothing listens on port 9: these rows fail before any request


def selfplay_file(tmp: Path, agent: str = "scripted", backend: str = "", name: str = "sp") -> str:
    path = tmp / f"{name}.toml"
    path.write_text(f"""
[game]
id = "negotiation-v0"
[agents]
player_0 = "{agent}"
player_1 = "scripted"
[backend]
{backend}
[run]
episodes = 2
""")
    return str(path)


def train_file(tmp: Path, tiny: Path, data: str = "", name: str = "tr") -> str:
    path = tmp / f"{name}.toml"
    path.write_text(f"""
[model]
init = "hf:{tiny}"
[game]
id = "negotiation-v0"
[roles]
player_0 = "policy"
player_1 = "scripted"
[algorithm]
name = "filtered-bc"
rounds = 1
{data}
[eval]
episodes = 2
[run]
wandb = "disabled"
""")
    return str(path)


def a_file(tmp: Path) -> str:
    path = tmp / "not-a-directory"
    path.write_text("x")
    return str(path)


def store_of(tmp: Path, episodes: list[Episode]) -> str:
    with EpisodeStore(tmp / "made").open() as store:
        for e in episodes:
            store.append(e)
    return str(tmp / "made" / "episodes.jsonl")


def refine_store(tmp: Path) -> str:
    path = tmp / "refine.toml"
    path.write_text('[game]\nid = "refine-v0"\n[agents]\nall = "scripted"\n[run]\nepisodes = 2\n')
    assert arena("selfplay", str(path), "--out", str(tmp / "refine")).returncode == 0
    return str(tmp / "refine" / "episodes.jsonl")


def failed_store(tmp: Path) -> str:
    return store_of(tmp, [Episode(f"e{i}", "negotiation-v0", {}, i, {"player_0": "x", "player_1": "scripted"},
                                  {}, status="failed", error="HTTP 500", failed_role="player_0") for i in range(3)])


def equal_store(tmp: Path) -> str:
    """Finished episodes whose sides all scored the same: above-mean keeps none of them."""
    from arena.play.episode import TurnRecord

    roles = {"player_0": "scripted", "player_1": "scripted"}
    return store_of(tmp, [Episode(f"e{i}", "negotiation-v0", {}, i, roles, {r: "brief" for r in roles},
                                  turns=[TurnRecord(0, "player_0", "scripted", "Items: 1 book", "[propose] (1 book)",
                                                    True)], scores={"player_0": 1.0, "player_1": 1.0})
                          for i in range(3)])


def non_utf8(tmp: Path) -> str:
    path = tmp / "latin1.toml"
    path.write_bytes('[game]\nid = "negotiation-v0" # café\n'.encode("latin-1"))
    return str(path)


def broken_plugin(tmp: Path) -> str:
    path = tmp / "broken_game.py"
    path.write_text("import games\n\nraise RuntimeError('the plugin is broken')\n")
    return str(path)


def corrupt_run_json(tmp: Path) -> str:
    scenario = selfplay_file(tmp)
    assert arena("selfplay", scenario, "--out", str(tmp / "run")).returncode == 0
    (tmp / "run" / "run.json").write_text("{half")
    return scenario


# (name, (tmp, tiny) -> (args, environment), exit status, what the line says)
CASES = [
    ("selfplay --out names a file", lambda t, m: (["selfplay", selfplay_file(t), "--out", a_file(t)], {}), 2,
     "is a file; the output must be a directory"),
    ("train --out names a file", lambda t, m: (["train", train_file(t, m), "--out", a_file(t)], {}), 2,
     "is a file; the output must be a directory"),
    ("tournament --out names a file", lambda t, m: (["tournament", "scenarios/tournament.toml", "--out", a_file(t)],
                                                    {}), 2, "is a file"),
    ("device cuda on a CPU build", lambda t, m: (["selfplay", selfplay_file(t, "seed", 'device = "cuda"')], {}), 2,
     "device 'cuda' is not available on this machine"),
    ("dtype float17", lambda t, m: (["selfplay", selfplay_file(t, "seed", 'dtype = "float17"')], {}), 2,
     "got 'float17'"),
    ("max_batch_size 0", lambda t, m: (["selfplay", selfplay_file(t, "seed", "max_batch_size = 0")], {}), 2,
     "'max_batch_size' must be at least 1"),
    ("an unknown hf backend key", lambda t, m: (["selfplay", selfplay_file(t, "seed", "timeout = 5")], {}), 2,
     "unknown [backend] key 'timeout'"),
    ("endpoint timeout not a number", lambda t, m: (["selfplay", selfplay_file(t, NOWHERE, 'timeout = "soon"')],
                                                    {}), 2, "'timeout' must be a number"),
    ("endpoint key misspelt", lambda t, m: (["selfplay", selfplay_file(t, NOWHERE, "timout = 5")], {}), 2,
     "Did you mean 'timeout'?"),
    ("play --seed -1", lambda t, m: (["play", "negotiation-v0", "--seed", "-1"], {}), 2, "--seed must be 0 or more"),
    ("a plugin that raises", lambda t, m: (["games", "--plugin", broken_plugin(t)], {}), 2,
     "line 3 failed to load: RuntimeError: the plugin is broken"),
    ("ARENA_PLUGINS names a broken plugin", lambda t, m: (["games"], {"ARENA_PLUGINS": broken_plugin(t)}), 2,
     "named in $ARENA_PLUGINS"),
    ("--set data=5", lambda t, m: (["train", train_file(t, m), "--set", "data=5"], {}), 2,
     "[data] must be a table"),
    ("[data] key misspelt", lambda t, m: (["train", train_file(t, m, "[data]\nepisode = []")], {}), 2,
     "Did you mean 'episodes'?"),
    ("a scenario that is not UTF-8", lambda t, m: (["selfplay", non_utf8(t)], {}), 2, "latin1.toml: not UTF-8"),
    ("run.json corrupted", lambda t, m: (["selfplay", corrupt_run_json(t), "--out", str(t / "run")], {}), 2,
     "run.json is not readable JSON"),
    ("filtered BC on another game's episodes",
     lambda t, m: (["train", train_file(t, m, f'[data]\nepisodes = ["{refine_store(t)}"]'), "--out",
                    str(t / "bc")], {}), 2, "episodes of refine-v0, but the scenario trains negotiation-v0"),
    ("filtered BC whose filter keeps no side",
     lambda t, m: (["train", train_file(t, m, f'[data]\nepisodes = ["{equal_store(t)}"]'), "--out",
                    str(t / "bc")], {}), 2, "keeps none of the 3 sides in [data] episodes"),
    ("filtered BC where every episode failed",
     lambda t, m: (["train", train_file(t, m, f'[data]\nepisodes = ["{failed_store(t)}"]'), "--out",
                    str(t / "bc")], {}), 1, "every one of the 3 episodes failed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path, tiny_model_dir):
    _, build, status, says = case
    args, env = build(tmp_path, tiny_model_dir)
    if args[0] in ("selfplay", "tournament", "train") and "--out" not in args:
        args += ["--out", str(tmp_path / "out")]  # never the repository's runs/
    result = arena(*args, env=env)
    assert result.returncode == status, result.stdout[-2000:] + result.stderr[-2000:]
    assert says in one_error_line(result)
