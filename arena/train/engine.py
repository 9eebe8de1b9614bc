"""Rollouts on a vLLM engine during training (``[rollout] engine = "vllm"``), and how far its numbers are
from the trainer's.

The engine runs in the trainer's process with its own copy of the weights. Before every rollout the
trainer's current weights are pushed into it (LoRA adapters merged in) when they changed since the last
push, so the engine never samples from stale weights; evaluation plays on the same engine.

The engine and the trainer compute log-probabilities with different kernels, so the trainer recomputes the
ones it trains on and measures the gap each iteration (:func:`logprob_gap`): the mean absolute difference
per sampled token (``engine_logprob_diff``) and the share of tokens whose importance ratio
``exp(trainer - engine)`` falls outside [0.5, 2] (``engine_ratio_outliers``). Right after a push the gap is
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
from agents.base import Policy
from agents.sampling import SamplingConfig
from arena.train.data import RoleSequence
from arena.train.model import TrainableModel

__all__ = ["VLLMRollouts", "logprob_gap"]

#: At most this many sequences are recomputed for the gap each iteration (one forward pass each).
GAP_SEQUENCES = 32


class VLLMRollouts:
    """The trained model's moves sampled by a vLLM engine that follows the trainer's weights."""

    def __init__(self, init: str | Path, sampling: SamplingConfig, options: dict[str, Any]):
        self.policy: Policy = agents.load(f"vllm:{init}", sampling, **options)
        self._pushed: tuple | None = None
        self.pushes = 0

    def follow(self, model: TrainableModel) -> bool:
        """Push the trainer's weights into the engine if they changed since the last push; True if pushed."""
        version = tuple((id(p), p._version) for p in model.model.parameters())
        if version == self._pushed:
            return False
        # the first push too: a resumed run's weights are the checkpoint's, not the ones the engine loaded
        self.policy.load_weights(model.merged_weights())
        self._pushed = version
        self.pushes += 1
        return True

    def close(self) -> None:
        self.policy.close()


@torch.no_grad()
def logprob_gap(model: TrainableModel, seqs: Sequence[RoleSequence]) -> dict[str, float]:
    """How far the sampler's log-probabilities of the trained tokens are from the trainer's, on up to
    :data:`GAP_SEQUENCES` sequences (the model in eval mode, no gradient)."""
    diffs: list[float] = []
    outliers = 0
    was_training = model.model.training
    model.model.eval()
    try:
        for seq in [s for s in seqs if any(lp is not None for lp in s.sampled_logprobs)][:GAP_SEQUENCES]:
            logits = model.model(torch.tensor([seq.ids], device=model.device)).logits[0].float()
            own = torch.log_softmax(logits, -1)
            for (start, end), sampled in zip(seq.spans, seq.sampled_logprobs):
                if sampled is None or len(sampled) != end - start:
                    continue
                for k, engine_lp in enumerate(sampled):
                    trainer_lp = float(own[start + k - 1, seq.ids[start + k]])
                    diffs.append(abs(trainer_lp - engine_lp))
                    outliers += not 0.5 <= math.exp(max(-50.0, min(50.0, trainer_lp - engine_lp))) <= 2.0
    finally:
        model.model.train(was_training)
    if not diffs:
        return {}
    return {"engine_logprob_diff": sum(diffs) / len(diffs), "engine_ratio_outliers": outliers / len(diffs)}
