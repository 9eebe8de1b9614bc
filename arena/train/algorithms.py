"""The training algorithms by name, and the entry points that check a training scenario and run it.

Each algorithm is one module with one config dataclass and one ``run(session, config, state)`` loop:
filtered behaviour cloning (:mod:`arena.train.bc`), policy gradient (:mod:`arena.train.pg`) and SCoRe
(:mod:`arena.train.score`). Adding one is adding its module and a line to :data:`ALGORITHMS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from arena.config import ScenarioError, read_toml
from arena.train import bc, pg, score
from arena.train.scenario import TrainScenario, parse_train_scenario
from arena.train.session import TrainingSession
from arena.train.warmup import warm_start
from games.options import Config, OptionError

__all__ = ["ALGORITHMS", "Algorithm", "algorithm_config", "config_class", "load_train_scenario", "train",
           "train_scenario"]


class Algorithm(NamedTuple):
    config: type[Config]
    run: Callable[[TrainingSession, Any, dict[str, Any] | None], None]


#: Every training algorithm, by the name a scenario's ``[algorithm] name`` gives.
ALGORITHMS: dict[str, Algorithm] = {
    "filtered-bc": Algorithm(bc.FilteredBCConfig, bc.run),
    "pg": Algorithm(pg.PGConfig, pg.run),
    "score": Algorithm(score.SCoReConfig, score.run),
}


def config_class(name: str) -> type[Config]:
    """The config dataclass of the algorithm called ``name``."""
    return ALGORITHMS[name].config


def train_scenario(data: dict[str, Any], path: Path, out: str | None = None,
                   overrides: Mapping[str, Any] | None = None) -> TrainScenario:
    """Check a training scenario given as data (see :func:`arena.train.scenario.parse_train_scenario`)."""
    return parse_train_scenario(data, path, {name: a.config for name, a in ALGORITHMS.items()}, out, overrides)


def load_train_scenario(path: str | Path, out: str | None = None,
                        overrides: Mapping[str, Any] | None = None) -> TrainScenario:
    """Read and check a training scenario file; ``overrides`` (dotted key -> value, e.g.
    ``{"game.options.objective": "coop"}``) change it before it is checked."""
    path = Path(path)
    return train_scenario(read_toml(path), path, out, overrides)


def algorithm_config(scenario: TrainScenario) -> Config:
    """The scenario's ``[algorithm]`` table as its algorithm's checked config."""
    try:
        return config_class(scenario.algorithm).from_mapping(scenario.algorithm_config, source="[algorithm]")
    except OptionError as err:
        raise ScenarioError(str(err)) from None


def train(scenario: TrainScenario, resume: bool = False, wandb: bool = True,
          progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the scenario's algorithm, after its warm-up if it has one (:mod:`arena.train.warmup`);
    return the evaluations before and after."""
    config = algorithm_config(scenario)
    scenario = warm_start(scenario, train, resume=resume, wandb=wandb, progress=progress)
    session = TrainingSession(scenario, config, resume=resume, wandb=wandb, progress=progress)
    try:
        state = session.load_checkpoint() if resume else None
        ALGORITHMS[scenario.algorithm].run(session, config, state)
        final = session.finish()
    finally:
        session.close()
    evals = json.loads((session.out / "eval.json").read_text(encoding="utf-8"))
    return {"out": str(session.out), "final": str(final), "before": evals.get("before"), "after": evals.get("after")}
