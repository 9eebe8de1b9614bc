"""The new-game guide works as written: its file loads, plays from the CLI and passes the registry-wide tests."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import games
from arena.cli import app
from tests.guide import GUESS, HAGGLE, guide_game_file, write_guide_game
from tests.helpers import arena, one_error_line, scripted_game

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_guide_game_is_registered_and_plays():
    env = games.make("guess-v0", high=50)
    env.reset(seed=0)
    env.step("25")
    assert env.observe("guesser")["text"] in ("25: higher.", "25: lower.") or env.done
    spec = games.get_spec("guess-v0")
    assert spec.summary.startswith("guess a secret whole number")


def test_guide_cli_commands():
    path = guide_game_file()
    result = runner.invoke(app, ["games", "guess-v0", "--plugin", str(path)])
    assert result.exit_code == 0 and "max_guesses" in result.output
    result = runner.invoke(app, ["play", "guess-v0", "--plugin", str(path), "--agents", "scripted", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "is right" in result.output and "solved" in result.output
    result = runner.invoke(app, ["play", "guess-v0", "--plugin", str(path), "--agents", "human",
                                 "-o", "high=1000", "-o", "max_guesses=10"], input="500\n")
    assert result.exit_code == 130 and "from 1 to 1000" in result.output


def test_guide_main_block_runs(tmp_path):
    path = write_guide_game(tmp_path)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "25:" in out.stdout or "right" in out.stdout


@pytest.mark.parametrize("name,game", [(GUESS, "guess"), (HAGGLE, "haggle")])
def test_documented_registry_wide_test_command_passes(name, game):
    env = {**os.environ, "ARENA_PLUGINS": str(guide_game_file(name))}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_game_api.py", "-k", game], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", out.stdout).group(1))
    assert passed >= 10, out.stdout[-2000:]


def test_the_two_role_guide_game_plays_scripted_and_against_random():
    """haggle-v0 (docs/new-game.md, section 8): its scripted players make deals when the values allow, every
    move of theirs is legal, a deal's scores split the surplus, and an illegal move costs its penalty."""
    path = guide_game_file(HAGGLE)
    result = runner.invoke(app, ["play", "haggle-v0", "--plugin", str(path), "--agents", "scripted,random",
                                 "--seed", "2"])
    assert result.exit_code == 0, result.output
    deals = 0
    for seed in range(20):
        env = scripted_game("haggle-v0", seed)
        assert env.result is not None and all(m.legal for m in env.moves())
        if env.result.metrics["deal"]:
            deals += 1
            assert env.result.scores["seller"] + env.result.scores["buyer"] == env.value - env.cost
        else:
            assert "price" not in env.result.metrics
    assert deals >= 5, deals
    scripted = games.get_spec("haggle-v0").cls.scripted_player
    per_role = games.players_by_role("HaggleScripted", {"seller": scripted, "buyer": scripted})  # as section 8 says
    env = games.make("haggle-v0")
    env.reset(seed=1)
    assert per_role("seller", env.options, 1).act(env.observe("seller")).startswith("offer ")
    env = games.make("haggle-v0", penalty=2.0)
    env.reset(seed=0)
    env.step("accept")  # nothing to accept yet
    assert not env.moves()[-1].legal and env.rewards["seller"] == -2.0 and env.agent_selection == "seller"


def test_readme_names_only_agent_specs_that_exist():
    from agents.registry import _FACTORIES

    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Agents are named by specs") :].split("\n\n")[0]
    named = set(re.findall(r"`([a-z][a-z-]*)(?::[^`]*)?`", paragraph))  # `seed`, `hf:PATH` -> seed, hf
    assert named, paragraph
    assert named <= set(_FACTORIES), f"README names agent specs that do not exist: {sorted(named - set(_FACTORIES))}"


def test_the_guide_game_goes_to_a_trained_rated_agent_in_one_command(tmp_path):
    """docs/new-game.md, 'Train an agent for your game': `arena new-game` writes the scenario and `arena run`
    takes guess-v0 from the seed model (which cannot play it) through the warm-up clone and policy gradient to
    a before/after tournament with the scripted and random players. Shrunk to seconds: a check that the
    pipeline completes and writes its files, not a measurement."""
    scenario = tmp_path / "guess.toml"
    written = arena("new-game", "guess-v0", "--plugin", str(guide_game_file()), "--trained", "guesser",
                    "--out", str(scenario))
    assert written.returncode == 0, written.stderr
    with scenario.open("a") as f:
        f.write("\n[train]\nwarmup = { episodes = 48, epochs = 2, probe_episodes = 8 }\n"
                "algorithm = { iterations = 1, groups = 2, group_size = 2 }\neval = { episodes = 8 }\n"
                "[tournament]\nschedule = { games_per_pairing = 2 }\n")
    out = tmp_path / "run"
    result = arena("run", str(scenario), "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    warm = json.loads((out / "train" / "warmup" / "warmup.json").read_text())
    assert warm["cloned"] and (out / "train" / "warmup" / "clone" / "final" / "config.json").is_file()
    assert (out / "train" / "final" / "config.json").is_file() and (out / "report.md").is_file()
    ratings = {row["agent"]: row for row in json.loads((out / "tournament" / "ratings.json").read_text())["agents"]}
    assert set(ratings) == {"before", "after", "scripted", "random"}
    assert (out / "train.toml").is_file() and (out / "tournament.toml").is_file()
    # stopped after the warm-up, before the training wrote anything: the same command goes on from the clone
    clone = out / "train" / "warmup" / "clone" / "final" / "model.safetensors"
    stamp = clone.stat().st_mtime_ns
    for path in (out / "train").iterdir():
        if path.name != "warmup":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    rerun = arena("run", str(scenario), "--out", str(out), timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert clone.stat().st_mtime_ns == stamp and (out / "train" / "final" / "config.json").is_file()
    again = arena("new-game", "guess-v0", "--plugin", str(guide_game_file()), "--out", str(scenario))
    assert again.returncode == 2 and "exists already" in one_error_line(again)
