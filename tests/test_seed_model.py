"""The shipped seed model, and the command that rebuilds it."""

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agents
from agents.sampling import SamplingConfig
from agents.seed import SEED_MODEL_DIR
from arena.batched import BatchedRollout, make_plans
from arena.cli import app

runner = CliRunner()


def test_seed_model_is_shipped_small_and_documented():
    weights = list(SEED_MODEL_DIR.glob("*.safetensors"))
    assert weights and sum(w.stat().st_size for w in weights) <= 30 * 2**20
    card = (SEED_MODEL_DIR / "README.md").read_text()
    for word in ("Rebuild", "arena seed-model scenarios/seed-model.toml", "parameters", "legal moves"):
        assert word in card
    config = json.loads((SEED_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "llama"


@pytest.mark.xfail(strict=True, reason="issue #5 is open: the shipped build measures 89.7% (negotiation, "
                   "player_0) and 78.7% (therapy therapist) legal moves; the next build must reach 90% everywhere, "
                   "and then this mark must go")
def test_seed_model_measured_at_least_90_percent_legal_in_every_game():
    report = json.loads((SEED_MODEL_DIR / "build_report.json").read_text())
    rows = report["evaluation"]
    assert {row["game"] for row in rows} == {"negotiation-v0", "refine-v0", "therapy-v0"}
    for row in rows:
        assert row["model_legal_rate"] >= 0.9, row


def test_seed_model_plays_legally_against_scripted_players():
    policies = {"seed": agents.load("seed", SamplingConfig(temperature=1.0, max_new_tokens=96)),
                "scripted": agents.load("scripted")}
    for game, roles in (("negotiation-v0", {"player_0": "seed", "player_1": "scripted"}),
                        ("refine-v0", {"solver": "seed"}),
                        ("therapy-v0", {"therapist": "seed", "patient": "scripted"})):
        episodes = list(BatchedRollout(policies, concurrency=8).run(make_plans(game, roles, 8, seed=777)))
        turns = [t for e in episodes for t in e.turns if t.agent == "seed"]
        assert all(e.ok for e in episodes)
        assert sum(t.legal for t in turns) / len(turns) >= 0.75, game
        assert all(t.token_ids and len(t.token_ids) == len(t.logprobs) for t in turns)


TINY = """
out = "{out}"
[data]
episodes = {{ "negotiation-v0" = 12, "refine-v0" = 12, "therapy-v0" = 3 }}
[tokenizer]
vocab_size = 320
[model]
hidden_size = 32
num_layers = 1
num_heads = 2
num_kv_heads = 1
intermediate_size = 64
max_position_embeddings = 512
[train]
epochs = 0.5
batch_tokens = 4096
[eval]
episodes = 1
"""


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_seed_model_command_builds_reproducibly(tmp_path):
    for name in ("a", "b"):
        scenario = tmp_path / f"{name}.toml"
        scenario.write_text(TINY.format(out=tmp_path / name))
        result = runner.invoke(app, ["seed-model", str(scenario)])
        assert result.exit_code == 0, result.output
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    card = (tmp_path / "a" / "README.md").read_text()
    assert "| negotiation-v0 |" in card and "therapy-v0" in card
    policy = agents.load(f"hf:{tmp_path / 'a'}")
    assert policy.tokenizer.chat_template


def test_bad_seed_model_scenario(tmp_path):
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[modle]\nhidden_size = 8\n")
    result = runner.invoke(app, ["seed-model", str(scenario)])
    assert result.exit_code == 2 and "Did you mean 'model'" in result.output
