"""[warmup]: a training run that first clones the game's scripted players, on the guide's own game (guess-v0,
docs/new-game.md), which the shipped seed model has never seen: it writes numbers, but does not search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arena.config import ScenarioError
from arena.train.algorithms import load_train_scenario, train
from tests.guide import guide_game_file
from tests.helpers import arena, one_error_line

SCENARIO = """
plugins = ["{plugin}"]
[model]
init = "seed"
[game]
id = "guess-v0"
[roles]
guesser = "policy"
[warmup]
when = "{when}"
episodes = 96
epochs = 4
probe_episodes = 8
[algorithm]
name = "pg"
iterations = 1
groups = 2
group_size = 2
[sampling]
max_new_tokens = 8
[eval]
episodes = 16
every = 0
[run]
wandb = "disabled"
concurrency = 32
threads = 1
"""


def _scenario(tmp_path: Path, when: str = "auto") -> Path:
    path = tmp_path / f"guess-{when}.toml"
    path.write_text(SCENARIO.format(plugin=guide_game_file(), when=when))
    return path


def test_auto_probes_clones_the_scripted_player_then_trains_from_the_clone(tmp_path):
    out = tmp_path / "run"
    result = train(load_train_scenario(_scenario(tmp_path), out=str(out)), wandb=False)
    warm = out / "warmup"
    record = json.loads((warm / "warmup.json").read_text())
    # the probe: the seed model's moves are often illegal here, and it scores far below binary search
    assert record["cloned"] and record["probe"]["legal_rate"] < 0.9, record
    assert record["probe"]["scripted_score"] > 2 * record["probe"]["score"], record
    assert record["episodes"] == 96 and (warm / "scripted" / "episodes.jsonl").is_file()
    clone = json.loads((warm / "clone" / "eval.json").read_text())
    assert clone["after"]["seats"]["guesser"]["policy_legal_rate"] > record["probe"]["legal_rate"]
    # the algorithm started from the clone, and its own "before" is the clone's "after"
    assert json.loads((out / "train.json").read_text())["init"] == f"hf:{warm / 'clone' / 'final'}"
    assert result["before"]["seats"] == clone["after"]["seats"]
    assert (out / "final" / "model.safetensors").is_file()

    # --resume of the finished run does not play or clone again; a fresh run into the same folder is refused
    stamp = (warm / "clone" / "final" / "model.safetensors").stat().st_mtime_ns
    train(load_train_scenario(_scenario(tmp_path), out=str(out)), resume=True, wandb=False)
    assert (warm / "clone" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ScenarioError, match="holds a warm-up already"):
        train(load_train_scenario(_scenario(tmp_path), out=str(out)), wandb=False)


def test_never_is_the_default_and_leaves_no_warmup_folder(tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text(_scenario(tmp_path).read_text().replace('when = "auto"', 'when = "never"'))
    scenario = load_train_scenario(path, out=str(tmp_path / "run"))
    assert scenario.warmup.when == "never" and "warmup" not in scenario.info()
    no_section = path.read_text().split("[warmup]")[0] + "[algorithm]" + path.read_text().split("[algorithm]")[1]
    path.write_text(no_section)
    assert load_train_scenario(path).warmup.when == "never"


@pytest.mark.parametrize("change,message", [
    (('when = "auto"', 'when = "sometimes"'), "[warmup]"),
    (('episodes = 96', 'episodes = 96\nepisode = 3'), "unknown"),
])
def test_bad_warmup_keys_are_one_line(tmp_path, change, message):
    path = _scenario(tmp_path)
    path.write_text(path.read_text().replace(*change))
    line = one_error_line(arena("train", str(path), "--out", str(tmp_path / "x")))
    assert message in line, line
    assert not (tmp_path / "x").exists()


def test_a_game_without_a_scripted_player_cannot_warm_up(tmp_path):
    plugin = tmp_path / "bare_game.py"
    plugin.write_text(guide_game_file().read_text().replace('"guess-v0"', '"bare-guess-v0"')
                      .replace("GuessGame.scripted_player = BinarySearchGuesser", ""))
    path = tmp_path / "bare.toml"
    path.write_text(_scenario(tmp_path).read_text().replace(str(guide_game_file()), str(plugin))
                    .replace('id = "guess-v0"', 'id = "bare-guess-v0"'))
    line = one_error_line(arena("train", str(path), "--out", str(tmp_path / "x")))
    assert "bare-guess-v0 has no scripted player" in line and 'when = "never"' in line, line
    line = one_error_line(arena("new-game", "bare-guess-v0", "--plugin", str(plugin)))
    assert "bare-guess-v0 has no scripted player" in line, line
