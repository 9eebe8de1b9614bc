"""SCoRe: training a role to correct itself over two attempts (Kumar et al. 2024).

For a role that answers twice (refine-v0's ``self-correct`` protocol; any game
whose trained role makes two attempts with a reward each), on-policy policy
gradient in two stages:

* Stage I (``stage1_iterations``): learn to improve the *second* attempt
  (advantage from its reward r2) while a strong KL (``stage1_beta_first``,
  0.1) holds the first attempt close to the starting model, so the model does
  not simply learn to answer better the first time and copy it.
* Stage II (``stage2_iterations``): reward both attempts, with the
  self-correction bonus on the second: r1 for the first,
  r2 + ``alpha`` * (r2 - r1) for the second (``alpha`` = 10), and a light KL
  (``stage2_beta``, 0.01). Each attempt is credited with its own reward, so a
  bad first attempt is never rewarded for making room for a correction.

Advantages are group-relative (``rloo`` or ``grpo``) over episodes of the same
task. Play the game with ``correction_bonus = 0``: the bonus is applied here.
Metrics watch for collapse: the edit distance between attempts and the share
of groups with no reward variance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from arena.config import Section
from arena.train.advantages import group_advantages
from arena.train.metrics import collapse_warnings, episode_metrics
from arena.train.model import pg_loss
from arena.train.optim import gradient_step
from arena.train.session import TrainingSession
from games.options import option

__all__ = ["SCoReConfig", "run", "attempt_values"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SCoReConfig(Section):
    extendable: ClassVar[tuple[str, ...]] = ("stage2_iterations",)  # `--resume` may raise it to train longer
    stage1_iterations: int = option(20, "stage I optimiser steps", min=0)
    stage2_iterations: int = option(40, "stage II optimiser steps", min=0)
    groups: int = option(16, "tasks per iteration", min=1)
    group_size: int = option(4, "attempt pairs per task (at least 2)", min=2)
    estimator: str = option("rloo", "group advantage", choices=("rloo", "grpo"))
    learning_rate: float = option(5e-5, "AdamW learning rate", min=0.0)
    stage2_learning_rate: float = option(-1.0, "stage II learning rate (-1: learning_rate); the bonus makes "
                                               "stage II's advantages up to 1 + alpha times larger", min=-1.0)
    stage1_beta_first: float = option(0.1, "stage I: KL weight on the first attempt (strong)", min=0.0)
    stage1_beta_second: float = option(0.01, "stage I: KL weight on the second attempt", min=0.0)
    stage2_beta: float = option(0.01, "stage II: KL weight on both attempts", min=0.0)
    alpha: float = option(10.0, "stage II: bonus alpha * (r2 - r1) on the second attempt", min=0.0)
    max_grad_norm: float = option(1.0, "gradient clipping", min=0.0)
    batch_tokens: int = option(16384, "padded tokens per forward pass", min=256)
    engine_is_cap: float = option(0.0, "with [rollout] engine = \"vllm\": truncated importance-sampling correction, "
                                  "each token weighted by min(p_trainer / p_engine, cap); 0: off (try 2)", min=0.0)


def attempt_values(rewards: list[float], stage: int, alpha: float) -> list[float]:
    """What each turn is credited with. The first and last turns are the two attempts (a rejected, retried
    move in between earns nothing)."""
    values = [0.0] * len(rewards)
    if len(rewards) < 2:
        return values
    r1, r2 = rewards[0], rewards[-1]
    if stage == 1:
        values[-1] = r2
    else:
        values[0] = r1
        values[-1] = r2 + alpha * (r2 - r1)
    return values


def run(session: TrainingSession, config: SCoReConfig, state: dict[str, Any] | None) -> None:
    state = state or {"optimizer": None, "first": None}
    model = session.model
    optimizer = session.optimizer(config.learning_rate, state)
    session.evaluate_before()
    total = config.stage1_iterations + config.stage2_iterations
    for iteration in range(session.iteration + 1, total + 1):
        session.iteration = iteration
        stage = 1 if iteration <= config.stage1_iterations else 2
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate if stage == 1 or config.stage2_learning_rate < 0 \
                else config.stage2_learning_rate
        episodes = session.play(session.plans(iteration, config.groups, config.group_size))
        seqs = session.sequences(episodes)
        session.check_episodes(episodes, f"iteration {iteration}")
        values = [attempt_values(s.rewards, stage, config.alpha) for s in seqs]
        flat = group_advantages(seqs, values, config.estimator)
        if stage == 1:  # only second attempts are credited: the first attempts' cells are flat by design
            flat = _flat_second_attempts(seqs, values)
        for s in seqs:
            weights = [config.stage1_beta_first, config.stage1_beta_second] if stage == 1 else \
                [config.stage2_beta, config.stage2_beta]
            s.kl_weights = [weights[0]] + [weights[1]] * (len(s.spans) - 1)
            if stage == 1:
                s.advantages[0] = 0.0  # stage I never pushes the first attempt towards reward
        with session.timed("update"):
            loss = lambda stats, batch: pg_loss(stats, batch, 1.0, config.engine_is_cap,  # noqa: E731
                                                engine_gap=session.rollouts is not None)
            metrics = gradient_step(model, optimizer, seqs, loss, config.batch_tokens, config.max_grad_norm,
                                    with_reference=True, ranks=session.ranks)
        metrics.update(episode_metrics(episodes, session.scenario.trained_roles), zero_variance_share=flat,
                       stage=float(stage))
        state["first"] = state["first"] or metrics
        metrics["warnings"] = collapse_warnings(metrics, state["first"])
        session.log_metrics(metrics)
        session.end_iteration(total, optimizer, state)
    session.evaluate_after()


def _flat_second_attempts(seqs, values) -> float:
    """The share of groups whose second-attempt rewards were all equal."""
    groups: dict[tuple, list[float]] = {}
    for s, v in zip(seqs, values):
        groups.setdefault((s.group, s.role), []).append(v[-1] if v else 0.0)
    return sum(len(set(vals)) <= 1 for vals in groups.values()) / max(1, len(groups))
