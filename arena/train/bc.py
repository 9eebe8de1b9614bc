"""Filtered behaviour cloning in rounds (Liao, Tomlin and Klein 2024).

Each round: play ``episodes_per_round`` episodes with the current model (in
self-play when it plays every role), keep each trained role's side of the
episodes it did well in, and fine-tune on those sides for ``epochs`` passes.
What counts as "did well" (``filter``), per role:

* ``above-mean``: score above that role's mean score this round (the paper's rule); with
  ``group_size`` of 2 or more each set-up is played that many times and a side must beat the mean
  of its own set-up's plays instead, so a lucky deal (values that suit the role) no longer counts
  as good play;
* ``non-zero``: score above zero (e.g. a deal was reached);
* ``top-k``: the best ``top_fraction`` of the role's sides;
* ``all``: every side (cloning a teacher, such as a warm-up's scripted players).

With ``[data] episodes = [...]`` the rounds learn from stored episode files
instead of playing (text-only turns are cloned from their tokenised text).
The loss is the negative log-likelihood of the role's own (sampled) tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from arena.config import Section
from arena.play.store import read_episodes
from arena.train.metrics import episode_metrics
from arena.train.model import bc_loss
from arena.train.optim import gradient_step, minibatches
from arena.train.session import TrainError, TrainFailed, TrainingSession
from games.options import option

__all__ = ["FilteredBCConfig", "run", "select"]


@dataclass(frozen=True)
class FilteredBCConfig(Section):
    extendable: ClassVar[tuple[str, ...]] = ("rounds",)  # `--resume` may raise it to train longer
    rounds: int = option(4, "play-filter-fine-tune rounds (0: only evaluate the starting model)", min=0)
    episodes_per_round: int = option(256, "episodes played per round", min=1)
    group_size: int = option(1, "plays of each set-up per round; 2 or more: above-mean compares a side with "
                                "the other plays of its own set-up", min=1)
    filter: str = option("above-mean", "which sides to keep", choices=("above-mean", "non-zero", "top-k", "all"))
    top_fraction: float = option(0.25, "top-k: the share of sides to keep", min=0.01, max=1.0)
    epochs: int = option(2, "passes over the kept sides per round", min=1)
    learning_rate: float = option(1e-4, "AdamW learning rate", min=0.0)
    batch_tokens: int = option(8192, "padded tokens per optimiser step", min=256)
    max_grad_norm: float = option(1.0, "gradient clipping", min=0.0)


def select(seqs, rule: str, top_fraction: float = 0.25, by_setup: bool = False) -> list:
    """The sequences worth imitating, chosen per role (``by_setup``: above-mean within each set-up's plays)."""
    kept = []
    for role in sorted({s.role for s in seqs}):
        mine = [s for s in seqs if s.role == role]
        scores = np.array([s.score for s in mine])
        if rule == "above-mean" and by_setup:
            for group in sorted({s.group for s in mine}):
                plays = [s for s in mine if s.group == group]
                mean = float(np.mean([s.score for s in plays]))
                kept += [s for s in plays if s.score > mean]
        elif rule == "above-mean":
            kept += [s for s in mine if s.score > scores.mean()]
        elif rule == "all":
            kept += mine
        elif rule == "non-zero":
            kept += [s for s in mine if s.score > 0]
        else:
            k = max(1, int(round(top_fraction * len(mine))))
            kept += [mine[i] for i in np.argsort(-scores, kind="stable")[:k]]
    return kept


def run(session: TrainingSession, config: FilteredBCConfig, state: dict[str, Any] | None) -> None:
    state = state or {"optimizer": None}
    model = session.model
    # stored episodes are read and checked before the "before" evaluation: a bad file stops the run at once
    stored = [e for path in session.scenario.data for e in read_episodes(path)]
    if stored:
        session.check_episodes(stored, "[data] episodes")
        sides = session.sequences(stored)
        if not sides:
            raise TrainError(f"[data] episodes: none of the {len(stored)} episodes has a finished side of "
                             f"{', '.join(session.scenario.trained_roles)} that fits the model to learn from")
        if not select(sides, config.filter, config.top_fraction):
            raise TrainError(f"the filter {config.filter!r} keeps none of the {len(sides)} sides in [data] "
                             "episodes (every side scored the same?); choose another [algorithm] filter")
    # a run checkpointed before steps were counted has trained if it got past its first round
    state.setdefault("steps", session.iteration)
    optimizer = session.optimizer(config.learning_rate, state)
    session.evaluate_before()
    for round_no in range(session.iteration + 1, config.rounds + 1):
        session.iteration = round_no
        setups = max(1, config.episodes_per_round // config.group_size)
        episodes = stored or session.play(session.plans(round_no, setups, config.group_size))
        seqs = session.sequences(episodes)
        session.check_episodes(episodes, f"round {round_no}")
        gap = {} if stored else session.engine_gap(seqs)
        kept = select(seqs, config.filter, config.top_fraction, by_setup=config.group_size > 1 and not stored)
        metrics: dict[str, Any] = {"kept": float(len(kept)), "sides": float(len(seqs)), **gap}
        rng = np.random.default_rng([session.scenario.run.seed, round_no])
        steps = 0
        for _ in range(config.epochs):
            for group in minibatches(kept, config.batch_tokens, rng):
                with session.timed("update"):
                    step = gradient_step(model, optimizer, group, lambda stats, batch: bc_loss(stats),
                                         config.batch_tokens, config.max_grad_norm, ranks=session.ranks)
                steps += 1
                metrics["loss"] = step.get("loss", 0.0)
                metrics["entropy"] = step.get("entropy", 0.0)
        metrics["steps"] = float(steps)
        state["steps"] += steps
        if not kept:
            metrics["warnings"] = [f"round {round_no}: the filter {config.filter!r} kept none of the {len(seqs)} "
                                   "sides (all scored alike); no step was taken"]
        if episodes and not stored:
            metrics.update(episode_metrics(episodes, session.scenario.trained_roles))
        session.log_metrics(metrics)
        session.end_iteration(config.rounds, optimizer, state)
    if config.rounds and state["steps"] == 0:
        raise TrainFailed(f"{config.rounds} rounds took no training step: the filter {config.filter!r} kept no side "
                         "in any round, so the model is unchanged; try filter = \"top-k\"")
    session.evaluate_after()
