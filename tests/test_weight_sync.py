"""Weights over torch.distributed between two real processes (gloo on this CPU): what the trainer sends is
what an engine receives, bucket by bucket, and a peer that never comes is an error within the timeout."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import torch

from agents.weight_sync import WeightGroup, buckets, describe


def _weights() -> list[tuple[str, torch.Tensor]]:
    torch.manual_seed(0)
    return [("embed.weight", torch.randn(50, 8)), ("norm.weight", torch.randn(8).to(torch.bfloat16)),
            ("layer.0.w", torch.randn(8, 8)), ("layer.0.b", torch.randn(8)), ("steps", torch.arange(5)),
            ("head.weight", torch.randn(3, 8))]


def _engine(port: int, meta: list, limit: int, answers) -> None:
    group = WeightGroup.join("127.0.0.1", port, rank=1, world_size=2, timeout=60)
    answers.put([(name, t.clone()) for name, t in group.receive(meta, limit)])


def test_buckets_group_consecutive_tensors_of_one_dtype_under_the_limit():
    meta = describe(_weights())
    assert buckets(meta) == [[0], [1], [2, 3], [4], [5]]  # a dtype change starts a new bucket
    assert buckets(meta, limit=200) == [[0], [1], [2], [3], [4], [5]]  # 8x8 floats alone exceed 200 bytes
    assert [i for group in buckets(meta, limit=300) for i in group] == list(range(len(meta)))


@pytest.mark.parametrize("limit", [256 << 20, 200])
def test_an_engine_receives_exactly_what_the_trainer_sends(limit):
    weights = _weights()
    group = WeightGroup.host("127.0.0.1", engines=1, timeout=60)
    ctx = multiprocessing.get_context("spawn")
    answers = ctx.Queue()
    engine = ctx.Process(target=_engine, args=(group.port, describe(weights), limit, answers))
    engine.start()
    try:
        group.connect()
        group.send(weights, limit)
        received = answers.get(timeout=60)
    finally:
        engine.join(timeout=60)
    assert [name for name, _ in received] == [name for name, _ in weights]
    for (_, sent), (_, got) in zip(weights, received):
        assert got.dtype == sent.dtype and got.shape == sent.shape and torch.equal(got, sent)


def test_an_engine_that_never_joins_is_an_error_not_a_hang():
    group = WeightGroup.host("127.0.0.1", engines=1, timeout=2)
    started = time.perf_counter()
    with pytest.raises(torch.distributed.DistError, match="timeout"):
        group.connect()
    assert time.perf_counter() - started < 30
