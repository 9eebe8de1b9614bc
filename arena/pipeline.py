"""``arena run``: self-play, training, a before/after tournament and a report, from one scenario file.

    out = "runs/quickstart"

    [selfplay]                     # a self-play scenario, inline (same keys as `arena selfplay` files)
    game = { id = "refine-v0", options = { tasks = "arithmetic", difficulty = 1 } }
    agents = { solver = "seed" }
    run = { episodes = 64 }

    [train]                        # a training scenario file, and keys to override in it
    scenario = "train-refine-score.toml"
    algorithm = { stage1_iterations = 4, stage2_iterations = 8 }

    [tournament]                   # a tournament, inline; "TRAINED" names the model the training made
    agents = { before = "seed", after = "TRAINED", scripted = "scripted" }
    games = [ { id = "refine-v0", options = { tasks = "arithmetic", difficulty = 1 } } ]
    schedule = { games_per_pairing = 32 }

Each step writes under ``OUT/<step>``; ``OUT/report.md`` sums them up. Every
step resumes: run the command again after an interruption and finished work
is kept.

The short form, for a game of your own, names only the game, the trained roles and their opponents
(``arena new-game GAME`` writes one):

    plugins = ["guess_game.py"]
    game = "guess-v0"              # or { id = "...", options = { ... } }
    trained = ["guesser"]          # the roles the model learns (default: every role: self-play)
    opponents = "scripted"         # who plays the other roles

It becomes a training step that clones the game's scripted player first when the seed model cannot play
(``[warmup] when = "auto"``) and then runs policy gradient, and a tournament of the model before and after
against the scripted and random players (:func:`new_game_steps`). ``[train]`` and ``[tournament]`` tables
beside it change any key of those steps.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

import games
from arena.config import ScenarioError, check_keys, load_plugins, read_toml
from arena.output import OutputLock
from arena.play.scenario import SelfPlayScenario, selfplay_scenario
from arena.play.selfplay import run_selfplay
from arena.rate import leaderboard
from arena.rate.leaderboard import rating_text
from arena.rate.scenario import Tournament, tournament_scenario
from arena.rate.tournament import run_tournament
from arena.train.algorithms import train, train_scenario
from arena.train.scenario import TrainScenario

__all__ = ["PipelineSteps", "load_pipeline", "new_game_steps", "plan_pipeline", "prepare_pipeline", "run_pipeline"]

log = logging.getLogger(__name__)
TRAINED = "TRAINED"
STEPS = ("selfplay", "train", "tournament")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


SHORT = ("plugins", "game", "trained", "opponents")


def new_game_steps(game: Any, trained: Any = None, opponents: str = "scripted",
                   plugins: tuple[str, ...] = ()) -> dict[str, Any]:
    """The training and tournament steps of the short form (see the module docstring), as scenario data."""
    spec = {"id": game} if isinstance(game, str) else dict(game) if isinstance(game, Mapping) else None
    if spec is None or "id" not in spec or set(spec) - {"id", "options"}:
        raise ScenarioError(f"game must be a game id or a table {{ id = \"...\", options = {{ ... }} }}; got {game!r}")
    try:
        roles = games.make(spec["id"], **dict(spec.get("options") or {})).roles
    except (games.UnknownGameError, games.OptionError) as err:
        raise ScenarioError(f"game: {err}") from None
    if games.get_spec(spec["id"]).cls.scripted_player is None:
        raise ScenarioError(f"{spec['id']} has no scripted player: this scenario clones it, rates against it and "
                            "plays it as the default opponent; give the game one (docs/new-game.md, section 4)")
    names = [trained] if isinstance(trained, str) else list(roles) if trained is None else trained
    if not isinstance(names, list) or not names or any(r not in roles for r in names):
        raise ScenarioError(f"trained must name roles of {spec['id']} ({', '.join(roles)}); got {trained!r}")
    if not isinstance(opponents, str):
        raise ScenarioError(f"opponents must be an agent spec such as \"scripted\"; got {opponents!r}")
    game_table = {"id": spec["id"], "options": dict(spec.get("options") or {})}
    partners = {r: opponents for r in roles if r not in names}
    sampling = {"temperature": 1.0, "max_new_tokens": 64}
    train = {"plugins": list(plugins), "model": {"init": "seed"}, "game": game_table,
             "roles": {r: "policy" if r in names else opponents for r in roles},
             # measured on guess-v0 from the seed model (docs/new-game.md, section 9)
             "warmup": {"when": "auto", "episodes": 2048, "epochs": 6},
             "algorithm": {"name": "pg", "estimator": "rloo", "iterations": 60, "groups": 8, "group_size": 4,
                           "learning_rate": 3e-4, "beta": 0.02},
             "sampling": sampling, "eval": {"episodes": 128, "every": 0, "opponents": opponents},
             "run": {"concurrency": 64, "checkpoint_every": 5, "threads": 1}}
    tournament = {"plugins": list(plugins),
                  "agents": {"before": "seed", "after": TRAINED, "scripted": "scripted", "random": "random"},
                  "games": [{**game_table, **({"partners": partners} if partners else {})}],
                  "schedule": {"games_per_pairing": 32}, "sampling": sampling, "run": {"concurrency": 64}}
    return {"train": train, "tournament": tournament}


def _short_form(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A short-form scenario as the full form: its steps, with its [train] and [tournament] tables merged in."""
    # from an absolute folder, so that the recorded OUT/<step>.toml files run from anywhere
    plugins = load_plugins(data, str(path), path.resolve().parent)
    try:
        steps = new_game_steps(data["game"], data.get("trained"), data.get("opponents", "scripted"), plugins)
    except ScenarioError as err:
        raise ScenarioError(f"{path}: {err}") from None
    for step in ("train", "tournament"):
        if not isinstance(data.get(step, {}), Mapping):
            raise ScenarioError(f"{path}: [{step}] must be a table of that step's keys to change")
        steps[step] = _merge(steps[step], data.get(step, {}))
    return {**({"out": data["out"]} if "out" in data else {}), **steps}


def load_pipeline(path: str | Path) -> dict[str, Any]:
    """Read a pipeline scenario file and check its top level (a short form is expanded to the full one)."""
    path = Path(path)
    data = read_toml(path)
    if "game" in data:
        check_keys(data, ["out", *SHORT, "train", "tournament"], str(path))
        return _short_form(data, path)
    check_keys(data, ["out", *STEPS], str(path))
    if "train" in data and "scenario" not in data["train"]:
        raise ScenarioError(f"{path} [train]: key 'scenario' (a training scenario file) is required")
    return data


@dataclass
class PipelineSteps:
    """The checked scenario of every step a pipeline runs, and the data each was built from."""

    root: Path
    data: dict[str, dict[str, Any]]
    selfplay: SelfPlayScenario | None = None
    train: TrainScenario | None = None
    tournament: Tournament | None = None


def plan_pipeline(path: str | Path, out: str | None = None, wandb: bool = False) -> PipelineSteps:
    """Build each step's scenario as data and check them all, before any step runs: a mistake in the last
    step must not surface only after the first ones have spent their minutes."""
    path = Path(path)
    data = load_pipeline(path)
    root = Path(out or data.get("out") or Path("runs") / path.stem)
    steps = PipelineSteps(root, {})
    if "selfplay" in data:
        steps.data["selfplay"] = _merge(data["selfplay"], {"run": {"out": str(root / "selfplay")}})
        steps.selfplay = selfplay_scenario(steps.data["selfplay"], path)
    if "train" in data:
        section = dict(data["train"])
        if "scenario" in section:
            base_file = (path.parent / section.pop("scenario")).resolve()
            if not base_file.is_file():
                raise ScenarioError(f"{path} [train]: training scenario not found: {base_file}")
            spec = _merge(read_toml(base_file), section)
        else:  # the short form's own training step
            base_file, spec = path, section
        steps.data["train"] = _merge(spec, {"run": {"out": str(root / "train"),
                                                    "wandb": "offline" if wandb else "disabled"}})
        steps.train = train_scenario(steps.data["train"], base_file)
    if "tournament" in data:
        spec = dict(data["tournament"])
        agents = {}
        for name, agent in dict(spec.get("agents") or {}).items():
            if agent == TRAINED:
                if "train" not in data:
                    raise ScenarioError(f"{path} [tournament]: {name} = \"TRAINED\" needs a [train] step")
                agent = f"hf:{root / 'train' / 'final'}"
            agents[name] = agent
        spec["agents"] = agents
        spec["run"] = {**dict(spec.get("run") or {}), "out": str(root / "tournament")}
        steps.data["tournament"] = spec
        steps.tournament = tournament_scenario(spec, path)
    return steps


def prepare_pipeline(path: str | Path, out: str | None = None, wandb: bool = False) -> tuple[Path, dict[str, Path]]:
    """Check every step (:func:`plan_pipeline`) and record each step's scenario as ``OUT/<step>.toml``, a file
    that runs that step alone (``arena selfplay OUT/selfplay.toml``, ``arena train OUT/train.toml --resume``)."""
    steps = plan_pipeline(path, out, wandb)
    return steps.root, _record(steps)


def _record(steps: PipelineSteps) -> dict[str, Path]:
    steps.root.mkdir(parents=True, exist_ok=True)
    files = {}
    for step, data in steps.data.items():
        files[step] = steps.root / f"{step}.toml"
        files[step].write_text(tomli_w.dumps(data), encoding="utf-8")
    return files


def run_pipeline(path: str | Path, out: str | None = None, wandb: bool = False,
                 say: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the steps the scenario names, in order; return what each produced."""
    steps = plan_pipeline(path, out, wandb)
    files = _record(steps)
    root = steps.root
    tell = say or (lambda step, info: None)
    results: dict[str, Any] = {"out": str(root), "minutes": {}}

    if steps.selfplay is not None:
        started = time.perf_counter()
        tell("selfplay", {"scenario": str(files["selfplay"])})
        results["selfplay"] = run_selfplay(steps.selfplay).summary
        results["minutes"]["selfplay"] = (time.perf_counter() - started) / 60

    if steps.train is not None:
        started = time.perf_counter()
        # a run stopped during the warm-up has no train.json yet, only OUT/train/warmup
        resume = (root / "train" / "train.json").is_file() or (root / "train" / "warmup").is_dir()
        if (root / "train" / "final" / "config.json").is_file():
            tell("train", {"skipped": "already trained", "out": str(root / "train")})
            evals = json.loads((root / "train" / "eval.json").read_text(encoding="utf-8"))
            result = {"final": str(root / "train" / "final"), "before": evals.get("before"),
                      "after": evals.get("after")}
        else:
            tell("train", {"scenario": str(files["train"]), "resume": resume})
            result = train(steps.train, resume=resume, wandb=wandb, progress=lambda e, i: tell(f"train/{e}", i))
        results["train"] = {"before": result["before"], "after": result["after"], "final": result["final"]}
        results["minutes"]["train"] = (time.perf_counter() - started) / 60

    if steps.tournament is not None:
        started = time.perf_counter()
        t = steps.tournament
        tell("tournament", {"scenario": str(files["tournament"])})
        outcome = run_tournament(t)
        board = leaderboard.build(t, outcome.tally)
        with OutputLock(t.out):
            leaderboard.write(board, t.out)
        results["tournament"] = board
        results["minutes"]["tournament"] = (time.perf_counter() - started) / 60

    (root / "report.md").write_text(_report(results, root), encoding="utf-8")
    (root / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return results


def _report(results: dict[str, Any], root: Path) -> str:
    lines = ["# Quick run report", ""]
    minutes = results["minutes"]
    lines.append("Minutes per step: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()) + ".")
    if "selfplay" in results:
        s = results["selfplay"]
        rate = "n/a" if s["legal_rate"] is None else f"{s['legal_rate']:.1%}"
        lines += ["", "## Self-play", "", f"{s['episodes']} episodes, legal-move rate {rate}, "
                  f"failures {s['failed']}. Episodes: `{root / 'selfplay' / 'episodes.jsonl'}`."]
        lines += [f"- {k}: {v:.3f}" for k, v in s.get("metrics", {}).items()]
    if "train" in results:
        t = results["train"]
        lines += ["", "## Training", "", f"Trained model: `{t['final']}` (agent spec `hf:{t['final']}`). "
                  f"Curves: `{root / 'train' / 'curves.png'}`.", "",
                  "| seat | before | after |", "|---|---|---|"]
        for seat in (t["before"] or {}).get("seats", {}):
            b, a = t["before"]["seats"][seat], t["after"]["seats"][seat]
            lines.append(f"| {seat}: score | {b['policy_score']:.3f} | {a['policy_score']:.3f} |")
            for key in sorted(set(b["metrics"]) & set(a["metrics"])):
                lines.append(f"| {seat}: {key} | {b['metrics'][key]:.3f} | {a['metrics'][key]:.3f} |")
    if "tournament" in results:
        lines += ["", "## Tournament", "", f"Leaderboard: `{root / 'tournament' / 'leaderboard.md'}`; plots "
                  f"`ratings.png`, `winrate.png` beside it.", "", "| rank | agent | rating | 95% CI |",
                  "|---|---|---|---|"]
        for row in results["tournament"]["agents"]:
            rank, rating, interval = rating_text(row)
            lines.append(f"| {rank} | {row['agent']} | {rating} | {interval} |")
    return "\n".join(lines) + "\n"
