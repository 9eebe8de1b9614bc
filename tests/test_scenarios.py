"""Every scenario shipped in scenarios/ loads with its command's loader: a renamed option cannot rot one."""

import json
import re
import shlex
from pathlib import Path

import pytest
import tomli_w

from arena.config import ScenarioError, read_toml
from arena.pipeline import prepare_pipeline
from arena.play.scenario import load_selfplay
from arena.rate.tournament import load_tournament
from arena.seed.scenario import load_seed_scenario
from arena.train.algorithms import load_train_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
LOADERS = {"selfplay-": load_selfplay, "train-": load_train_scenario, "tournament": load_tournament,
           "seed-model": load_seed_scenario}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_scenario_loads(path, tmp_path):
    if path.name == "quickstart.toml":
        root, files = prepare_pipeline(path, out=str(tmp_path / "quick"))
        assert set(files) == {"selfplay", "train", "tournament"} and all(f.is_file() for f in files.values())
        return
    loader = next((f for prefix, f in LOADERS.items() if path.name.startswith(prefix)), None)
    assert loader is not None, f"no loader known for {path.name}: add its prefix to LOADERS"
    loader(path)


def test_pipeline_checks_every_step_before_running(tmp_path):
    """A typo in the tournament fails at once, before self-play and training spend their minutes."""
    train = tmp_path / "train.toml"
    train.write_text((SCENARIOS / "train-refine-score.toml").read_text())
    quick = tmp_path / "quick.toml"
    quick.write_text(f"""
[selfplay]
game = {{ id = "refine-v0" }}
agents = {{ solver = "scripted" }}
[train]
scenario = "{train}"
[tournament]
agents = {{ before = "seed", after = "TRAINED" }}
games = [ {{ id = "refine-v0" }} ]
shedule = {{ games_per_pairing = 2 }}
""")
    with pytest.raises(ScenarioError, match="schedule"):
        prepare_pipeline(quick, out=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "selfplay").exists()
    quick.write_text(quick.read_text().replace("shedule", "schedule").replace(train.name, "missing.toml"))
    with pytest.raises(ScenarioError, match="training scenario not found"):
        prepare_pipeline(quick, out=str(tmp_path / "out"))


def test_set_overrides_change_a_scenario_before_it_is_checked():
    from arena.config import toml_value as _toml_value

    path = SCENARIOS / "train-negotiation-bc.toml"
    changed = load_train_scenario(path, overrides={"game.options.objective": _toml_value("coop"),
                                                   "algorithm.rounds": _toml_value("2"),
                                                   "algorithm.learning_rate": _toml_value("1e-5")})
    assert changed.options["objective"] == "coop"
    assert changed.algorithm_config["rounds"] == 2 and changed.algorithm_config["learning_rate"] == 1e-5
    assert _toml_value("[1, 2]") == [1, 2] and _toml_value("true") is True and _toml_value("a b") == "a b"
    with pytest.raises(ScenarioError, match="Did you mean 'objective'"):
        load_train_scenario(path, overrides={"game.options.objectiv": "coop"})
    with pytest.raises(ScenarioError, match="algorithm.rounds is a value, not a table"):
        load_train_scenario(path, overrides={"algorithm.rounds.x": 1})
    with pytest.raises(ScenarioError, match="not a key path"):
        load_train_scenario(path, overrides={"algorithm..rounds": 1})


def _documented_train_commands() -> list[list[str]]:
    """The `arena train` commands in docs/results.md's bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#")[0])
            if words[:2] == ["arena", "train"]:
                commands.append(words[2:])
    return commands


def _resolved(info: dict) -> dict:
    """A run's settings with the algorithm's and the game's defaults filled in (options added since the run
    was made take their defaults; ``top_fraction`` only matters for top-k)."""
    import games
    from arena.train.algorithms import config_class

    config = vars(config_class(info["algorithm"]).from_mapping(info["algorithm_config"], source="[algorithm]"))
    if config.get("filter", "top-k") != "top-k":
        config.pop("top_fraction")
    options = games.make(info["game"], **info["options"]).options.to_dict()
    return {**info, "algorithm_config": config, "options": options}


def test_documented_results_come_from_their_commands():
    """Each command in docs/results.md loads, and where its --out names a folder of docs/results/, the
    settings stored with that run (train.json) are the ones the command gives: the scenario files cannot
    drift from the figures documented for them."""
    from arena.config import toml_value as _toml_value

    commands = _documented_train_commands()
    assert len(commands) >= 5
    checked = 0
    for words in commands:
        sets = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--set")
        out = words[words.index("--out") + 1]
        scenario = load_train_scenario(ROOT / words[0], out, {k: _toml_value(v) for k, v in sets.items()})
        stored = ROOT / "docs" / "results" / Path(out).name / "train.json"
        if stored.is_file():
            given = json.loads(json.dumps(scenario.info(), default=str))
            assert _resolved(json.loads(stored.read_text(encoding="utf-8"))) == _resolved(given), " ".join(words)
            checked += 1
    assert checked >= 5


# Every table of every scenario kind (those a shipped file lacks are added): an unknown key in any of them is an
# error that names it, never ignored.
STRICT = [
    ("selfplay-refine.toml", ["", "game", "game.options", "agents", "sampling", "backend", "run", "cluster"]),
    ("tournament.toml", ["", "agents", "games.0", "games.0.options", "schedule", "ratings", "sampling", "backend",
                         "run", "cluster"]),
    ("train-refine-score.toml", ["", "model", "game", "game.options", "roles", "algorithm", "data", "sampling",
                                 "eval", "run", "rollout", "warmup"]),
    ("quickstart.toml", ["", "selfplay", "selfplay.game", "train", "train.algorithm", "train.data", "tournament",
                         "tournament.schedule"]),
    ("seed-model.toml", ["", "data", "data.mixes.0", "data.mixes.0.options", "tokenizer", "model", "train", "eval"]),
]


@pytest.mark.parametrize("name,table", [(name, table) for name, tables in STRICT for table in tables],
                         ids=lambda v: v or "top")
def test_an_unknown_key_in_any_table_is_an_error_naming_it(name, table, tmp_path):
    for shipped in SCENARIOS.glob("*.toml"):  # a pipeline's steps name their files relative to it
        (tmp_path / shipped.name).write_text(shipped.read_text())
    data = read_toml(SCENARIOS / name)
    node = data
    for part in filter(None, table.split(".")):
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node["zzz_unknown"] = 1
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data))
    with pytest.raises((ScenarioError, ValueError)) as caught:
        if name == "quickstart.toml":
            prepare_pipeline(path, out=str(tmp_path / "quick"))
        else:
            next(f for prefix, f in LOADERS.items() if name.startswith(prefix))(path)
    assert "zzz_unknown" in str(caught.value)
