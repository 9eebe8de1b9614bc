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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from arena.config import ScenarioError, read_toml
from arena.rate.leaderboard import rating_text

__all__ = ["run_pipeline", "load_pipeline", "prepare_pipeline"]

log = logging.getLogger(__name__)
TRAINED = "TRAINED"
STEPS = ("selfplay", "train", "tournament")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def _dump_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for the scenario tables this pipeline generates."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise ScenarioError(f"cannot write {v!r} to a scenario file")

    lines = [f"{json.dumps(k)} = {value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for k, v in data.items():
        if isinstance(v, Mapping):
            lines.append(f"\n[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def load_pipeline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = read_toml(path)
    known = ["out", *STEPS]
    for key in data:
        if key not in known:
            from games.options import suggest

            raise ScenarioError(f"{path}: unknown section or key {key!r}; expected {', '.join(known)}."
                                f"{suggest(key, known)}")
    if "train" in data and "scenario" not in data["train"]:
        raise ScenarioError(f"{path} [train]: key 'scenario' (a training scenario file) is required")
    return data


def prepare_pipeline(path: str | Path, out: str | None = None, wandb: bool = False) -> tuple[Path, dict[str, Path]]:
    """Write each step's scenario file under the output directory and check them all, before any step runs:
    a mistake in the last step must not surface only after the first ones have spent their minutes."""
    from arena.play.scenario import load_selfplay
    from arena.rate.tournament import load_tournament
    from arena.train.algorithms import load_train_scenario

    path = Path(path)
    data = load_pipeline(path)
    root = Path(out or data.get("out") or Path("runs") / path.stem)
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if "selfplay" in data:
        files["selfplay"] = root / "selfplay.toml"
        files["selfplay"].write_text(_dump_toml(_merge(data["selfplay"], {"run": {"out": str(root / "selfplay")}})),
                                     encoding="utf-8")
        load_selfplay(files["selfplay"])
    if "train" in data:
        section = dict(data["train"])
        base_file = (path.parent / section.pop("scenario")).resolve()
        if not base_file.is_file():
            raise ScenarioError(f"{path} [train]: training scenario not found: {base_file}")
        spec = _merge(read_toml(base_file), section)
        spec = _merge(spec, {"run": {"out": str(root / "train"), "wandb": "offline" if wandb else "disabled"}})
        files["train"] = root / "train.toml"
        files["train"].write_text(_dump_toml(spec), encoding="utf-8")
        load_train_scenario(files["train"])
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
        files["tournament"] = root / "tournament.toml"
        files["tournament"].write_text(_dump_toml(spec), encoding="utf-8")
        load_tournament(files["tournament"])
    return root, files


def run_pipeline(path: str | Path, out: str | None = None, wandb: bool = False,
                 say: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the steps the scenario names, in order; return what each produced."""
    from arena.play.scenario import load_selfplay
    from arena.play.selfplay import run_selfplay
    from arena.rate import leaderboard
    from arena.rate.tournament import load_tournament, run_tournament
    from arena.train.algorithms import load_train_scenario, train

    root, files = prepare_pipeline(path, out, wandb)
    tell = say or (lambda step, info: None)
    results: dict[str, Any] = {"out": str(root), "minutes": {}}

    if "selfplay" in files:
        started = time.perf_counter()
        tell("selfplay", {"scenario": str(files["selfplay"])})
        results["selfplay"] = run_selfplay(load_selfplay(files["selfplay"])).summary
        results["minutes"]["selfplay"] = (time.perf_counter() - started) / 60

    if "train" in files:
        started = time.perf_counter()
        scenario = load_train_scenario(files["train"])
        resume = (root / "train" / "train.json").is_file()
        if (root / "train" / "final" / "config.json").is_file():
            tell("train", {"skipped": "already trained", "out": str(root / "train")})
            evals = json.loads((root / "train" / "eval.json").read_text(encoding="utf-8"))
            result = {"final": str(root / "train" / "final"), "before": evals.get("before"),
                      "after": evals.get("after")}
        else:
            tell("train", {"scenario": str(files["train"]), "resume": resume})
            result = train(scenario, resume=resume, wandb=wandb, progress=lambda e, i: tell(f"train/{e}", i))
        results["train"] = {"before": result["before"], "after": result["after"], "final": result["final"]}
        results["minutes"]["train"] = (time.perf_counter() - started) / 60

    if "tournament" in files:
        started = time.perf_counter()
        t = load_tournament(files["tournament"])
        tell("tournament", {"scenario": str(files["tournament"])})
        outcome = run_tournament(t)
        board = leaderboard.build(t, outcome.tally)
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
