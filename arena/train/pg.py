"""Policy gradient with a KL penalty: REINFORCE with a baseline, RLOO, or GRPO-style group advantages.

Each iteration plays ``groups`` set-ups ``group_size`` times with the current
weights, turns every trained role's side of each episode into one token
sequence, credits each turn with its return (the role's rewards from that turn
on, discounted by ``gamma``: a turn's credit can differ from the episode's end
score), computes advantages, and takes one on-policy optimiser step:

    loss = mean over the role's own tokens of  -advantage * log p(token)  +  beta * KL(p || p_ref)

Baselines are per game, role and turn index, so one model playing several
roles (self-play) gets role-conditioned baselines:

* ``reinforce``: a running mean of the return (momentum ``baseline_momentum``);
* ``rloo``: the mean return of the other episodes of the same set-up;
* ``grpo``: the set-up's mean return, and advantages divided by its standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from arena.config import Section
from arena.train.advantages import group_advantages, running_baseline_advantages, turn_values
from arena.train.metrics import collapse_warnings, episode_metrics
from arena.train.model import pg_loss
from arena.train.optim import gradient_step
from arena.train.session import TrainingSession
from games.options import OptionError, option

__all__ = ["PGConfig", "run"]


@dataclass(frozen=True)
class PGConfig(Section):
    extendable: ClassVar[tuple[str, ...]] = ("iterations",)  # `--resume` may raise it to train longer
    estimator: str = option("rloo", "advantage estimator", choices=("reinforce", "rloo", "grpo"))
    iterations: int = option(100, "optimiser steps, each on freshly played episodes (0: only evaluate the "
                                  "starting model)", min=0)
    groups: int = option(16, "set-ups played per iteration", min=1)
    group_size: int = option(4, "episodes per set-up (rloo and grpo need at least 2)", min=1)
    learning_rate: float = option(5e-5, "AdamW learning rate", min=0.0)
    beta: float = option(0.02, "weight of the KL penalty to the frozen starting model", min=0.0)
    gamma: float = option(1.0, "discount of later rewards in a turn's return", min=0.0, max=1.0)
    baseline_momentum: float = option(0.9, "reinforce: momentum of the running baseline", min=0.0, max=1.0)
    max_grad_norm: float = option(1.0, "gradient clipping", min=0.0)
    batch_tokens: int = option(16384, "padded tokens per forward pass (gradients accumulate)", min=256)
    engine_is_cap: float = option(0.0, "with [rollout] engine = \"vllm\": truncated importance-sampling correction, "
                                  "each token weighted by min(p_trainer / p_engine, cap); 0: off (try 2)", min=0.0)

    def validate(self) -> None:
        if self.estimator in ("rloo", "grpo") and self.group_size < 2:
            raise OptionError(f"{self.estimator} compares episodes of one set-up: set group_size to 2 or more")


def run(session: TrainingSession, config: PGConfig, state: dict[str, Any] | None) -> None:
    state = state or {"baselines": {}, "optimizer": None, "first": None}
    model = session.model
    optimizer = session.optimizer(config.learning_rate, state)
    session.evaluate_before()
    for iteration in range(session.iteration + 1, config.iterations + 1):
        session.iteration = iteration
        episodes = session.play(session.plans(iteration, config.groups, config.group_size))
        seqs = session.sequences(episodes)
        session.check_episodes(episodes, f"iteration {iteration}")
        values = turn_values(seqs, config.gamma)
        if config.estimator == "reinforce":
            running_baseline_advantages(seqs, values, state["baselines"], config.baseline_momentum)
            flat = float(np.mean([all(a == 0 for a in s.advantages) for s in seqs])) if seqs else 0.0
        else:
            flat = group_advantages(seqs, values, config.estimator)
        with session.timed("update"):
            loss = lambda stats, batch: pg_loss(stats, batch, config.beta, config.engine_is_cap,  # noqa: E731
                                                engine_gap=session.rollouts is not None)
            metrics = gradient_step(model, optimizer, seqs, loss, config.batch_tokens, config.max_grad_norm,
                                    with_reference=config.beta > 0, ranks=session.ranks)
        metrics.update(episode_metrics(episodes, session.scenario.trained_roles), zero_variance_share=flat)
        state["first"] = state["first"] or metrics
        metrics["warnings"] = collapse_warnings(metrics, state["first"])
        session.log_metrics(metrics)
        session.end_iteration(config.iterations, optimizer, state)
    session.evaluate_after()
