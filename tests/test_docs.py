"""The new-game guide works as written: its file loads, plays from the CLI and passes the registry-wide tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import games
from arena.cli import app
from tests.guide import guide_game_file, write_guide_game

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


def test_documented_registry_wide_test_command_passes():
    env = {**os.environ, "ARENA_PLUGINS": str(guide_game_file())}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_game_api.py", "-k", "guess"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", out.stdout).group(1))
    assert passed >= 10, out.stdout[-2000:]


def test_readme_names_only_agent_specs_that_exist():
    from agents.registry import _FACTORIES

    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Agents are named by specs") :].split("\n\n")[0]
    named = set(re.findall(r"`([a-z][a-z-]*)(?::[^`]*)?`", paragraph))  # `seed`, `hf:PATH` -> seed, hf
    assert named, paragraph
    assert named <= set(_FACTORIES), f"README names agent specs that do not exist: {sorted(named - set(_FACTORIES))}"
