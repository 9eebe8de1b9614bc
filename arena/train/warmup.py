"""A warm start from the game's own players: ``[warmup]`` in a training scenario.

A model that makes no legal move in a game gives policy gradient nothing to follow (every group's rewards are
equal). Before the scenario's algorithm runs, the warm-up

1. (``when = "auto"``) lets the start model and then the scripted player play ``probe_episodes`` held-out
   episodes in the trained roles, and stops there when the model's legal-move rate reaches ``min_legal_rate``
   and its score ``min_score_share`` of the scripted player's (``OUT/warmup/probe``);
2. plays ``episodes`` episodes with the game's scripted player in the trained roles (the other roles as the
   scenario's ``[roles]`` say) into ``OUT/warmup/scripted``;
3. clones them: filtered behaviour cloning on those episodes (``OUT/warmup/clone``, a training run of its own
   with an evaluation before and after);

and the algorithm then starts from the cloned model (``OUT/warmup/clone/final``). Each step is resumable and
kept: ``--resume`` goes on from the step that was interrupted, and a finished step is not repeated. The folder
``OUT/warmup`` says what happened in ``warmup.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arena.config import ScenarioError
from arena.output import atomic_write
from arena.play.scenario import selfplay_scenario
from arena.play.selfplay import run_selfplay
from arena.train.scenario import POLICY, TrainScenario

__all__ = ["warm_start"]

Train = Callable[..., dict[str, Any]]


def _stage(scenario: TrainScenario, out: Path, algorithm: dict[str, Any], **changes: Any) -> TrainScenario:
    """A filtered-bc run beside the scenario's: the same model, game and roles, no warm-up of its own."""
    run = dataclasses.replace(scenario.run, out=str(out), checkpoint_every=1, store_episodes=False)
    evaluation = dataclasses.replace(scenario.eval, every=0, **changes.pop("eval", {}))
    return dataclasses.replace(scenario, algorithm="filtered-bc", algorithm_config=algorithm, run=run,
                               eval=evaluation, warmup=dataclasses.replace(scenario.warmup, when="never"),
                               rollout=type(scenario.rollout)(), **changes)


def _probe(scenario: TrainScenario, train: Train, folder: Path, say: Callable) -> dict[str, float]:
    """The start model's legal-move rate and score in the trained roles over ``probe_episodes`` held-out
    episodes (the worst trained role's), and the scripted player's score in the same seats."""
    out = folder / "probe"
    evals = out / "eval.json"
    episodes = scenario.warmup.probe_episodes
    if not (evals.is_file() and json.loads(evals.read_text(encoding="utf-8")).get("before")):
        probe = _stage(scenario, out, {"rounds": 0}, eval={"episodes": episodes})
        train(probe, resume=(out / "train.json").is_file(), wandb=False, progress=_tagged(say, "warm-up probe"))
    seats = json.loads(evals.read_text(encoding="utf-8"))["before"]["seats"]
    legal = min(row["policy_legal_rate"] for row in seats.values())
    model = min(row["policy_score"] for row in seats.values())
    scripted = _play(scenario, out / "scripted", episodes, scenario.eval.seed,
                     opponents=scenario.eval.opponents).summary["mean_scores"]
    return {"legal_rate": legal, "score": model,
            "scripted_score": min(scripted.get(role, 0.0) for role in scenario.trained_roles)}


def _tagged(say: Callable, stage: str) -> Callable:
    """A progress callback that marks a warm-up stage's events (its evaluations look like the main run's)."""
    return lambda event, info: say(event, {**info, "stage": stage})


def _scripted_roles(scenario: TrainScenario, opponents: str | None = None) -> dict[str, str]:
    """The scenario's roles with the game's scripted player in the trained ones (and ``opponents``, if given, in
    the others)."""
    return {role: "scripted" if spec == POLICY else (opponents or spec) for role, spec in scenario.roles.items()}


def _play(scenario: TrainScenario, out: Path, episodes: int, seed: int, opponents: str | None = None):
    """Episodes of the game's scripted player in the trained roles (the others as [roles] says, or
    ``opponents``), into ``out``."""
    agents = _scripted_roles(scenario, opponents)
    data = {"game": {"id": scenario.game, "options": scenario.options}, "agents": agents,
            "plugins": list(scenario.plugins), "sampling": scenario.sampling.to_dict(),
            "run": {"episodes": episodes, "seed": seed, "out": str(out), "concurrency": scenario.run.concurrency,
                    "threads": scenario.run.threads}}
    return run_selfplay(selfplay_scenario(data, scenario.path))


def warm_start(scenario: TrainScenario, train: Train, resume: bool = False, wandb: bool = True,
               progress: Callable[[str, dict[str, Any]], None] | None = None) -> TrainScenario:
    """Run the scenario's ``[warmup]`` (see the module docstring) and return the scenario the algorithm runs:
    the same, starting from the cloned model when a clone was made. ``train`` runs a training scenario
    (:func:`arena.train.algorithms.train`; passed in to keep this module below it)."""
    warm = scenario.warmup
    if warm.when == "never":
        return scenario
    say = progress or (lambda event, info: None)
    folder = scenario.out / "warmup"
    record = folder / "warmup.json"
    if folder.exists() and not resume and any(folder.iterdir()):
        raise ScenarioError(f"{folder} holds a warm-up already; pass --resume to continue the run, or choose "
                            "another --out")
    folder.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    if warm.when == "auto" and "probe" not in done:
        say("warmup", {"step": "probe", "episodes": warm.probe_episodes})
        probe = _probe(scenario, train, folder, say)
        weak = probe["scripted_score"] > 0 and probe["score"] < warm.min_score_share * probe["scripted_score"]
        done.update(probe=probe, cloned=probe["legal_rate"] < warm.min_legal_rate or weak)
        atomic_write(record, json.dumps(done, indent=1) + "\n")
    if warm.when == "auto" and not done["cloned"]:
        say("warmup", {"step": "skipped", **done["probe"], "min_legal_rate": warm.min_legal_rate,
                       "min_score_share": warm.min_score_share})
        return scenario
    clone = folder / "clone"
    if not (clone / "final" / "config.json").is_file():
        say("warmup", {"step": "play", "episodes": warm.episodes, "agents": _scripted_roles(scenario)})
        played = _play(scenario, folder / "scripted", warm.episodes, warm.seed)
        say("warmup", {"step": "clone", "episodes": played.total, "epochs": warm.epochs})
        algorithm = {"rounds": 1, "epochs": warm.epochs, "filter": warm.filter, "learning_rate": warm.learning_rate,
                     "batch_tokens": warm.batch_tokens}
        stage = _stage(scenario, clone, algorithm, data=(played.out,))
        train(stage, resume=(clone / "train.json").is_file(), wandb=wandb, progress=_tagged(say, "warm-up clone"))
        done.update(cloned=True, episodes=played.total, model=str(clone / "final"))
        atomic_write(record, json.dumps(done, indent=1) + "\n")
    return dataclasses.replace(scenario, init=f"hf:{clone / 'final'}")
