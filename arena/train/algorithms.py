"""The training algorithms by name, and the entry point that runs one from a scenario."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arena.train.scenario import TrainScenario

__all__ = ["config_class", "train"]


def _table() -> dict[str, tuple[type, Callable]]:
    from arena.train import bc, pg, score

    return {"filtered-bc": (bc.FilteredBCConfig, bc.run), "pg": (pg.PGConfig, pg.run),
            "score": (score.SCoReConfig, score.run)}


def config_class(name: str) -> type:
    return _table()[name][0]


def train(scenario: TrainScenario, resume: bool = False, wandb: bool = True,
          progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the scenario's algorithm; return the evaluations before and after."""
    from arena.train.session import TrainingSession

    config_cls, run = _table()[scenario.algorithm]
    config = config_cls.from_mapping(scenario.algorithm_config, source="[algorithm]")
    session = TrainingSession(scenario, resume=resume, wandb=wandb, progress=progress)
    try:
        state = session.load_checkpoint() if resume else None
        run(session, config, state)
        final = session.finish()
    finally:
        session.close()
    import json

    evals = json.loads((session.out / "eval.json").read_text(encoding="utf-8"))
    return {"out": str(session.out), "final": str(final), "before": evals.get("before"), "after": evals.get("after")}
