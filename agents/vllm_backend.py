"""``vllm:PATH``: a vLLM offline engine behind the policy interface (GPU; optional extra ``vllm``).

vLLM is imported only when this backend is built. Every request gets its own
``SamplingParams`` with the turn's seed, so a request samples the same tokens
whatever shares its batch, as with ``hf:``; completions carry the sampled
token ids and their log-probabilities (``logprobs=0`` asks vLLM for the
sampled token's own log-probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.base import Completion, Policy, PolicyError, TurnRequest
from agents.sampling import SamplingConfig

__all__ = ["VLLMPolicy"]


class VLLMPolicy(Policy):
    """A vLLM ``LLM`` engine as a batched policy."""

    def __init__(self, spec: str, path: str, sampling: SamplingConfig | None = None, **engine_options: Any):
        super().__init__(spec)
        try:
            import vllm
        except ImportError:
            raise PolicyError(f"{spec}: vLLM is not installed; pip install 'socratic-arena[vllm]' on a GPU machine") \
                from None
        self._vllm = vllm
        self.sampling = sampling or SamplingConfig()
        self.llm = vllm.LLM(model=path, **engine_options)

    def _params(self, request: TurnRequest) -> Any:
        return self._vllm.SamplingParams(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens,
            seed=int(request.seed) % (2**31),
            logprobs=0,
        )

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        if not requests:
            return []
        outputs = self.llm.chat([r.messages for r in requests], sampling_params=[self._params(r) for r in requests],
                                use_tqdm=False)
        completions = []
        for output in outputs:
            sample = output.outputs[0]
            ids = list(sample.token_ids)
            logprobs = None
            if sample.logprobs:
                logprobs = [float(step[token].logprob) for step, token in zip(sample.logprobs, ids)]
            completions.append(Completion(text=sample.text, token_ids=ids, logprobs=logprobs,
                                          prompt_token_ids=list(output.prompt_token_ids or []),
                                          finish_reason=sample.finish_reason))
        return completions
