"""`arena run`: self-play, training and a before/after tournament from one scenario, with a report."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arena.cli import app
from tests.helpers import arena, one_error_line

runner = CliRunner()
TALK_GAME = Path(__file__).with_name("train_game.py")


def test_quick_run_pipeline_end_to_end_and_again(tmp_path, tiny_model_dir):
    train = tmp_path / "train.toml"
    train.write_text(f"""
plugins = ["{TALK_GAME}"]
[model]
init = "hf:{tiny_model_dir}"
[game]
id = "talk-test-v0"
[roles]
speaker = "policy"
[algorithm]
name = "pg"
estimator = "rloo"
iterations = 2
groups = 2
group_size = 2
learning_rate = 1e-3
[sampling]
max_new_tokens = 12
[eval]
episodes = 4
[run]
seed = 1
""")
    quick = tmp_path / "quick.toml"
    quick.write_text(f"""
out = "{tmp_path / 'out'}"
[selfplay]
plugins = ["{TALK_GAME}"]
game = {{ id = "talk-test-v0" }}
agents = {{ speaker = "scripted" }}
run = {{ episodes = 4 }}
[train]
scenario = "train.toml"
eval = {{ every = 0 }}
[tournament]
agents = {{ before = "hf:{tiny_model_dir}", after = "TRAINED", scripted = "scripted" }}
games = [ {{ id = "talk-test-v0" }} ]
schedule = {{ games_per_pairing = 2 }}
sampling = {{ max_new_tokens = 12 }}
""")
    result = runner.invoke(app, ["run", str(quick)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    report = (out / "report.md").read_text()
    for heading in ("## Self-play", "## Training", "## Tournament"):
        assert heading in report
    results = json.loads((out / "results.json").read_text())
    assert {r["agent"] for r in results["tournament"]["agents"]} == {"before", "after", "scripted"}
    assert (out / "train" / "final" / "config.json").is_file()
    again = runner.invoke(app, ["run", str(quick)])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["tournament"] == results["tournament"]


def test_pipeline_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[trian]\nscenario = "x.toml"\n')
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "Did you mean 'train'" in result.output
    bad.write_text('[tournament]\nagents = { a = "TRAINED", b = "random" }\ngames = [ { id = "refine-v0" } ]\n')
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "needs a [train] step" in result.output


@pytest.mark.parametrize("body,message", [
    ('game = "refine-v0"\ntrained = ["solvr"]', "trained must name roles of refine-v0 (solver)"),
    ('game = "refine-v0"\ntrainee = ["solver"]', "unknown"),
    ('game = { id = "refine-v0", option = { difficulty = 1 } }', "game must be a game id or a table"),
    ('game = "refine-v0"\n[train]\nalgorithm = { iteration = 3 }', "iteration"),
    ('game = "refine-v0"\n[selfplay]\nagents = { solver = "seed" }', "unknown"),
])
def test_a_bad_short_form_is_one_line_before_anything_runs(tmp_path, body, message):
    path = tmp_path / "short.toml"
    path.write_text(body + "\n")
    line = one_error_line(arena("run", str(path), "--out", str(tmp_path / "out")))
    assert message in line, line
    assert not (tmp_path / "out").exists()
