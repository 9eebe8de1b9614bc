"""What only a GPU can check: vLLM's sleep mode, weights over NCCL, and training on a GPU engine.

Every test here is skipped without CUDA (this project's CI machines have none); on a GPU machine,
``bash benchmarks/gpu_check.sh`` runs them with the vLLM tests and prints the throughput.
"""

from __future__ import annotations

import json
import multiprocessing

import pytest
import torch

import agents
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from agents.weight_sync import WeightGroup, describe
from tests.test_vllm import HAS_VLLM, TRAIN_ON_VLLM, _request, _train_on_vllm

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_gpu = pytest.mark.skipif(not GPUS or not HAS_VLLM, reason="needs a GPU (CUDA) and vLLM's GPU build: run "
                               "benchmarks/gpu_check.sh on a GPU machine")


@needs_gpu
def test_sleep_mode_frees_the_gpu_and_wakes_up_with_the_same_weights():
    policy = agents.load(f"vllm:{seed_model_dir()}", SamplingConfig(max_new_tokens=16), dtype="float32",
                         enable_sleep_mode=True, gpu_memory_utilization=0.3)
    try:
        requests = [_request(f"Items: {i} books, 2 hats", i) for i in range(4)]
        before = policy.generate(requests)
        free_awake = torch.cuda.mem_get_info()[0]
        policy.sleep()
        assert torch.cuda.mem_get_info()[0] > free_awake, "sleeping gives GPU memory back"
        policy.wake_up()
        assert [c.token_ids for c in policy.generate(requests)] == [c.token_ids for c in before]
    finally:
        policy.close()


def _engine(port: int, meta: list, answers) -> None:
    torch.cuda.set_device(1)
    group = WeightGroup.join("127.0.0.1", port, rank=1, world_size=2, timeout=120, backend="nccl")
    answers.put([(name, t.cpu()) for name, t in group.receive(meta)])


@pytest.mark.skipif(GPUS < 2, reason="NCCL needs each member of the weight group on its own GPU: needs 2 GPUs")
def test_weights_travel_over_nccl_between_two_gpus():
    torch.manual_seed(0)
    weights = [("a", torch.randn(1000, 64, device="cuda:0")), ("b", torch.randn(64, device="cuda:0").half())]
    group = WeightGroup.host("127.0.0.1", engines=1, timeout=120, backend="nccl")
    ctx = multiprocessing.get_context("spawn")
    answers = ctx.Queue()
    engine = ctx.Process(target=_engine, args=(group.port, describe(weights), answers))
    engine.start()
    try:
        group.connect()
        group.send(weights)
        received = answers.get(timeout=120)
    finally:
        engine.join(timeout=120)
    assert all(torch.equal(sent.cpu(), got) for (_, sent), (_, got) in zip(weights, received))


@needs_gpu
def test_training_on_a_gpu_engine_with_sleep_mode_pushes_every_update(tmp_path):
    """The in-process engine on the GPU, asleep during each update: right after every wake-up and push its
    log-probabilities are the trainer's (fp32; the GPU's kernels differ more than a CPU's, hence 1e-2)."""
    scenario = TRAIN_ON_VLLM.replace('vllm = { dtype = "float32" }',
                                     'vllm = { dtype = "float32", enable_sleep_mode = true, '
                                     'gpu_memory_utilization = 0.3 }')
    result, rows = _train_on_vllm(tmp_path, "gpu", scenario)
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(r["engine_logprob_diff"] < 1e-2 for r in rows), json.dumps(rows)
