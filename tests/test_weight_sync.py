"""Weights over torch.distributed between two real processes (gloo on this CPU): what the trainer sends is
what an engine receives, bucket by bucket, and a peer that never comes is an error within the timeout."""

from __future__ import annotations

import json
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


def test_the_vllm_server_client_refuses_servers_that_are_not_arena_engines():
    """An OpenAI server's /health (200, empty) and a /generate answer without its completions: one clear
    PolicyError each, never a KeyError; the client needs no vLLM."""
    import http.server
    import threading

    import agents
    from agents.sampling import SamplingConfig
    from agents.vllm_server import VLLMServerPolicy

    health = {"model": "m", "max_model_len": 512, "architecture": {"vocab_size": 10}}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._send(json.dumps(health).encode() if self.server.arena else b"")

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(b'{"completions": []}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.arena = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(agents.PolicyError, match="not as an `arena vllm-serve` server does"):
            agents.load(f"vllm-server:{url}")
        server.arena = True
        policy = VLLMServerPolicy(f"vllm-server:{url}", [url], SamplingConfig(max_new_tokens=8))
        request = agents.TurnRequest(game="g", role="r", messages=[{"role": "user", "content": "hi"}],
                                     observation={}, options=None, episode="e", turn=0, seed=1)
        with pytest.raises(agents.PolicyError, match="other than 1 completions"):
            policy.generate([request])
        policy.close()
    finally:
        server.shutdown()
        server.server_close()
