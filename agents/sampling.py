"""Sampling settings shared by every model backend, and the per-request sampler.

Each request carries its own seed (fixed by the episode seed and the turn), so
what a request samples does not depend on which other requests share its
batch: the same episode seed gives the same moves at concurrency 1 or 64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from games.options import Config, OptionError, option

if TYPE_CHECKING:  # torch is imported where it is used, so `import agents` stays light
    import torch  # torch only where sampling happens: `import agents` (scenarios, the CLI) stays light

__all__ = ["SamplingConfig", "request_uniforms", "sample_next"]


@dataclass(frozen=True)
class SamplingConfig(Config):
    """How a model backend samples. ``temperature = 0`` is greedy decoding."""

    _noun = "key"

    temperature: float = option(1.0, "softmax temperature; 0 is greedy decoding", min=0.0)
    top_p: float = option(1.0, "nucleus sampling: keep the most likely tokens up to this mass", min=0.0, max=1.0)
    max_new_tokens: int = option(96, "most tokens in one completion", min=1, max=32768)

    def validate(self) -> None:
        if self.top_p <= 0:
            raise OptionError(f"key 'top_p' must be in (0, 1]; got {self.top_p!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, *, source: str = "sampling",
                     where: str | None = None) -> SamplingConfig:
        return super().from_mapping(values, source=where or source)


def request_uniforms(seeds: list[int], steps: int) -> torch.Tensor:
    """One stream of uniform numbers per request, ``[len(seeds), steps]``, from each request's own seed."""
    import torch  # torch only where sampling happens: `import agents` (scenarios, the CLI) stays light

    out = torch.empty(len(seeds), steps, dtype=torch.float64)
    for row, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(int(seed) % (2**63))
        out[row] = torch.rand(steps, generator=generator, dtype=torch.float64)
    return out


def sample_next(logits: torch.Tensor, uniforms: torch.Tensor, config: SamplingConfig
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row by inverse-CDF sampling with the given uniforms.

    Returns ``(tokens, logprobs)`` where ``logprobs`` are the sampled tokens' log-probabilities under the
    model's own distribution (temperature 1, no top-p): the policy's log-probabilities for training.
    """
    import torch  # torch only where sampling happens: `import agents` (scenarios, the CLI) stays light

    logits = logits.float()
    logprobs_all = torch.log_softmax(logits, dim=-1)
    if config.temperature == 0:
        tokens = logits.argmax(dim=-1)
    else:
        probs = torch.softmax(logits / config.temperature, dim=-1).double()
        if config.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < config.top_p  # always keeps the top token
            sorted_probs = sorted_probs * keep
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        cdf = probs.cumsum(-1)
        cdf = cdf / cdf[:, -1:]
        tokens = torch.searchsorted(cdf, uniforms.unsqueeze(-1).to(cdf.dtype), right=True).squeeze(-1)
        tokens = tokens.clamp(max=logits.shape[-1] - 1)
    return tokens, logprobs_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
