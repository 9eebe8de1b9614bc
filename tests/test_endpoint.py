"""The OpenAI-compatible endpoint backend, against a real server on loopback.

`transformers serve` (transformers[serving]) serves the tiny test model offline on the CPU. The
tests play through it, make it too slow for the timeout, kill it mid-run, and check that episodes
fail with a reason, nothing hangs, finished episodes are kept, and the API key is never written.
A small stub server checks the retry policy on 429 and 5xx answers.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import agents
from agents.base import TurnRequest
from agents.endpoint import EndpointPolicy, parse_endpoint
from agents.sampling import SamplingConfig
from arena.play.store import read_episodes
from tests.helpers import negotiation_scenario
from tests.servers import free_port as _free_port
from tests.servers import serve_transformers as _serve
from tests.servers import stop as _stop

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-" + "x" * 24


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    pytest.importorskip("fastapi", reason="the real-server tests need transformers[serving] (fastapi, uvicorn)")
    pytest.importorskip("uvicorn", reason="the real-server tests need transformers[serving] (fastapi, uvicorn)")
    proc, base = _serve(tiny_model_dir)
    yield f"openai:{tiny_model_dir}@{base}/v1", proc
    _stop(proc)


def _request(seed=1):
    return TurnRequest(game="negotiation-v0", role="player_0", messages=[{"role": "user", "content": "hello"}],
                       observation={}, options=None, episode="e", turn=0, seed=seed)


def test_spec_parsing():
    assert parse_endpoint("org/model@main@http://127.0.0.1:8000/v1/") == ("org/model@main", "http://127.0.0.1:8000/v1")
    with pytest.raises(agents.PolicyError, match="openai:MODEL@BASE_URL"):
        parse_endpoint("just-a-model")


def test_completions_from_a_real_server(server):
    spec, _ = server
    policy = agents.load(spec, SamplingConfig(max_new_tokens=8))
    completions = policy.generate([_request(1), _request(2), _request(3)])
    assert len(completions) == 3
    assert all(c.error is None and isinstance(c.text, str) and c.token_ids is None for c in completions)


def _scenario(tmp_path, spec, episodes=6, backend=""):
    return negotiation_scenario(tmp_path, spec, backend, episodes, name="endpoint", max_messages=6)


def _selfplay(scenario, out, env=None):
    return subprocess.Popen([sys.executable, "-m", "arena", "selfplay", str(scenario), "--out", str(out)],
                            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_selfplay_through_the_endpoint_keeps_the_key_secret(server, tmp_path):
    spec, _ = server
    proc = _selfplay(_scenario(tmp_path, spec), tmp_path / "run", env={"OPENAI_API_KEY": SECRET})
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-2000:]
    episodes = list(read_episodes(tmp_path / "run" / "episodes.jsonl"))
    assert len(episodes) == 6 and all(e.ok for e in episodes), [e.error for e in episodes]
    written = "".join(p.read_text() for p in (tmp_path / "run").iterdir() if p.is_file())
    assert SECRET not in written and SECRET not in output


def test_a_slow_server_fails_episodes_with_a_reason_without_hanging(server, tmp_path):
    spec, _ = server
    scenario = _scenario(tmp_path, spec, episodes=3, backend="timeout = 0.001\nretries = 1\nbackoff = 0.01")
    started = time.time()
    proc = _selfplay(scenario, tmp_path / "slow")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "100% of the episodes failed" in output, output[-2000:]
    assert time.time() - started < 120
    episodes = list(read_episodes(tmp_path / "slow" / "episodes.jsonl"))
    assert len(episodes) == 3 and all(e.status == "failed" and "timed out" in e.error for e in episodes)


def test_killing_the_server_mid_run(tiny_model_dir, tmp_path):
    pytest.importorskip("fastapi", reason="the real-server tests need transformers[serving] (fastapi, uvicorn)")
    server_proc, base = _serve(tiny_model_dir)
    try:
        spec = f"openai:{tiny_model_dir}@{base}/v1"
        scenario = _scenario(tmp_path, spec, episodes=30, backend="timeout = 5\nretries = 1\nbackoff = 0.05")
        out = tmp_path / "killed"
        run = _selfplay(scenario, out)
        path = out / "episodes.jsonl"
        deadline = time.time() + 300
        while time.time() < deadline and not (path.is_file() and path.read_bytes().count(b"\n") >= 3):
            time.sleep(0.05)
        _stop(server_proc)
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 1 and "of the episodes failed" in output, output[-2000:]
    finally:
        _stop(server_proc)
    episodes = list(read_episodes(path))
    ok = [e for e in episodes if e.ok]
    failed = [e for e in episodes if not e.ok]
    assert len(episodes) == 30 and len(ok) >= 3, "episodes finished before the kill are kept"
    assert failed and all("connection failed" in e.error or "HTTP" in e.error for e in failed)


class _Flaky(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    seen_auth: list[str] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _Flaky.seen_auth.append(self.headers.get("authorization", ""))
        status = _Flaky.answers.pop(0) if _Flaky.answers else 200
        body = {"choices": [{"message": {"content": "[propose] (1 book)"}, "finish_reason": "stop"}]} \
            if status == 200 else {"error": "busy"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_retries_on_429_and_5xx_then_succeeds(stub, monkeypatch, caplog):
    monkeypatch.setenv("ARENA_TEST_KEY", SECRET)
    _Flaky.answers, _Flaky.seen_auth = [429, 503], []
    policy = EndpointPolicy("openai:m@stub", "m", stub, retries=3, backoff=0.01, api_key_env="ARENA_TEST_KEY")
    completion = policy.generate([_request()])[0]
    assert completion.error is None and completion.text == "[propose] (1 book)"
    assert len(_Flaky.seen_auth) == 3 and _Flaky.seen_auth[0] == f"Bearer {SECRET}"
    assert SECRET not in caplog.text


def test_gives_up_after_the_last_retry_and_does_not_retry_client_errors(stub):
    _Flaky.answers = [500, 500, 500]
    policy = EndpointPolicy("openai:m@stub", "m", stub, retries=2, backoff=0.01)
    assert "failed after 3 tries: HTTP 500" in policy.generate([_request()])[0].error
    _Flaky.answers = [400]
    _Flaky.seen_auth = []
    assert "HTTP 400" in policy.generate([_request()])[0].error and len(_Flaky.seen_auth) == 1


def test_unreachable_server_fails_fast():
    policy = EndpointPolicy("openai:m@x", "m", f"http://127.0.0.1:{_free_port()}/v1", retries=1, backoff=0.01)
    started = time.time()
    assert "connection failed" in policy.generate([_request()])[0].error
    assert time.time() - started < 10
