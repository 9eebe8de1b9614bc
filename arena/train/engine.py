"""Rollouts on vLLM engines during training, and how far their numbers are from the trainer's.

``[rollout] engine = "vllm"``: an engine in the trainer's process with its own copy of the weights (on a
GPU, with ``enable_sleep_mode`` it gives its memory back while the trainer updates). ``"vllm-server"``: the
engines of ``arena vllm-serve`` in other processes or machines, which receive the weights over
torch.distributed (:mod:`agents.vllm_server`). Either way, before every rollout the trainer's current
weights are pushed into the engines (LoRA adapters merged in) when they changed since the last push, so an
engine never samples from stale weights; evaluation plays on the same engines.

The engine and the trainer compute log-probabilities with different kernels, so the trainer recomputes the
ones it trains on and measures the gap each iteration (policy gradient and SCoRe in their update's own
forward pass, before its step, at no cost: :func:`arena.train.model.pg_loss`; behaviour cloning, whose
minibatch steps would move the weights in between, by :func:`logprob_gap` before its first step): the mean
absolute difference per sampled token (``engine_logprob_diff``) and the share of tokens whose importance
ratio ``exp(trainer - engine)`` falls outside [0.5, 2] (``engine_ratio_outliers``). Right after a push the gap is
the kernels' own (measured on a CPU in fp32: below 3e-5 per token); a push that silently failed shows as a
gap of the size of one update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import agents
from agents.base import Policy, PolicyError
from agents.sampling import SamplingConfig
from arena.train.data import RoleSequence, collate
from arena.train.model import TrainableModel

__all__ = ["VLLMRollouts", "logprob_gap"]

#: At most this many sequences are recomputed for the gap each iteration, this many per forward pass.
GAP_SEQUENCES = 32
GAP_BATCH = 8


class VLLMRollouts:
    """The trained model's moves sampled by vLLM engines that follow the trainer's weights."""

    def __init__(self, engine: str, init: str | Path, sampling: SamplingConfig, options: dict[str, Any],
                 servers: Sequence[str] = ()):
        spec = f"vllm-server:{','.join(servers)}" if engine == "vllm-server" else f"vllm:{init}"
        self.policy: Policy = agents.load(spec, sampling, **options)
        self._pushed: tuple | None = None
        self.pushes = 0
        self.sleeping = False

    def check_model(self, model: TrainableModel) -> None:
        """Refuse engines that serve another model than the trained one (server mode: they were started apart)."""
        served = getattr(self.policy, "architecture", None)
        if not served:
            return
        config = model.model.config
        own = {k: getattr(config, k, None) for k in served}
        differ = {k: (served[k], own[k]) for k in served if served[k] is not None and served[k] != own[k]}
        if differ:
            raise PolicyError(f"{self.policy.spec} serves another model than the one trained: "
                             + ", ".join(f"{k} {a} there, {b} here" for k, (a, b) in differ.items()))

    def follow(self, model: TrainableModel) -> bool:
        """Wake the engine if it sleeps and push the trainer's weights into it if they changed since the last
        push; True if pushed."""
        woke = self.sleeping
        if woke:
            self.policy.wake_up()
            self.sleeping = False
        version = tuple((id(p), p._version) for p in model.model.parameters())
        if version == self._pushed and not woke:
            return False
        # the first push too: a resumed run's weights are the checkpoint's, not the ones the engine loaded
        self.policy.load_weights(model.merged_weights())
        self._pushed = version
        self.pushes += 1
        return True

    def rest(self) -> None:
        """After a rollout: an engine with sleep mode frees its GPU memory for the update."""
        if getattr(self.policy, "sleep_mode", False) and not self.sleeping:
            self.policy.sleep()
            self.sleeping = True

    def close(self) -> None:
        self.policy.close()


def logprob_gap(model: TrainableModel, seqs: Sequence[RoleSequence]) -> dict[str, float]:
    """How far the sampler's log-probabilities of the trained tokens are from the trainer's, on up to
    :data:`GAP_SEQUENCES` sequences, recomputed in batches of :data:`GAP_BATCH` (eval mode, no gradient)."""
    chosen = [s for s in seqs if any(lp is not None for lp in s.sampled_logprobs)][:GAP_SEQUENCES]
    diffs = []
    for i in range(0, len(chosen), GAP_BATCH):
        batch = collate(chosen[i:i + GAP_BATCH], model.pad_id)
        engine = batch.sampled_logp[:, :-1]
        where = ~torch.isnan(engine)
        if where.any():
            diffs.append(model.logp_where(batch, where).cpu() - engine[where])
    if not diffs:
        return {}
    gap = torch.cat(diffs).double()
    outliers = ((gap < -math.log(2)) | (gap > math.log(2))).double()
    return {"engine_logprob_diff": float(gap.abs().mean()), "engine_ratio_outliers": float(outliers.mean())}
