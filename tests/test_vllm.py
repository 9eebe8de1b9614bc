"""The vLLM backend: real on a GPU machine, skipped with a clear reason elsewhere."""

import importlib.util

import pytest

import agents
from agents.base import TurnRequest
from agents.sampling import SamplingConfig

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here; this checks the message when it is not")
def test_missing_vllm_is_a_clear_error():
    with pytest.raises(agents.PolicyError, match="vLLM is not installed"):
        agents.load("vllm:/some/model")


def _request(text, seed):
    return TurnRequest(game="negotiation-v0", role="player_0", messages=[{"role": "user", "content": text}],
                       observation={}, options=None, episode="e", turn=0, seed=seed)


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (pip install 'socratic-arena[vllm]' on a GPU machine)")
@pytest.mark.skipif(HAS_VLLM and not _gpu(), reason="vLLM needs a CUDA GPU and this machine has none")
def test_vllm_generates_ids_and_logprobs_seeded_per_request(tiny_model_dir):
    policy = agents.load(f"vllm:{tiny_model_dir}", SamplingConfig(max_new_tokens=12), gpu_memory_utilization=0.2,
                         enforce_eager=True)
    alone = policy.generate([_request("Items: 1 book", 7)])[0]
    batched = policy.generate([_request("other", 1), _request("Items: 1 book", 7), _request("more", 2)])[1]
    assert alone.token_ids and len(alone.token_ids) == len(alone.logprobs)
    assert all(lp <= 0 for lp in alone.logprobs)
    assert batched.token_ids == alone.token_ids
