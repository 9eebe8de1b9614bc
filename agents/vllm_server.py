"""vLLM engines in their own processes (``arena vllm-serve``) and the ``vllm-server:URL`` policy that uses them.

Server mode, for when the engines should not share the trainer's device (TRL's ``vllm_mode="server"``,
OpenRLHF): each engine runs in its own process, on its own GPU or machine, behind a small HTTP server. The
trainer talks to one or several of them:

* ``POST /generate``: a batch of turns (their chats, the exact ids of the role's earlier turns, seeds and
  the sampling settings) in; completions with sampled ids and log-probabilities out. The server runs the
  same token-exact :class:`agents.vllm_backend.VLLMPolicy` as ``vllm:PATH``, so a turn samples the same
  tokens in either mode. With several servers, a batch is split between them.
* ``POST /weights/join`` then ``POST /weights/update``: the trainer forms a process group with every engine
  (:class:`agents.weight_sync.WeightGroup`: gloo on a CPU, NCCL on GPUs) and broadcasts its new weights;
  each engine loads them with vLLM's ``reload_weights``, without restarting. Names, dtypes and shapes go
  over HTTP, the tensors over the group.
* ``GET /health``: the served model (its architecture, vocabulary and context), for the trainer to check
  that it serves the model being trained.

One request at a time reaches the engine (a lock); an engine runs in the server's process, so weights go
straight from the group into the model. The server has no authentication: it listens on 127.0.0.1 unless
told otherwise; put it on a private network only.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.base import Completion, Policy, PolicyError, TurnRequest, error_line
from agents.sampling import SamplingConfig
from agents.secrets import redact
from agents.weight_sync import BUCKET_BYTES, WeightGroup, describe, gpu_id, local_address

__all__ = ["EngineServer", "VLLMServerPolicy", "parse_servers"]

log = logging.getLogger(__name__)

_COMPLETION_KEYS = ("text", "token_ids", "logprobs", "prompt_token_ids", "finish_reason")


def parse_servers(arg: str) -> list[str]:
    """``"http://a:8100,http://b:8100"`` -> the base URLs, checked."""
    urls = [u.strip().rstrip("/") for u in arg.split(",") if u.strip()]
    if not urls or not all(u.startswith(("http://", "https://")) and urlsplit(u).hostname for u in urls):
        raise PolicyError(f"vllm-server agent spec must be vllm-server:http://HOST:PORT[,http://HOST:PORT...] "
                          f"(engines started with `arena vllm-serve`); got vllm-server:{arg}")
    return urls


# ---------------------------------------------------------------------------------------------- the server
class EngineServer:
    """An HTTP front for one :class:`~agents.vllm_backend.VLLMPolicy` (see the module's docstring)."""

    def __init__(self, policy: Any, host: str = "127.0.0.1", port: int = 8100):
        self.policy = policy
        self.lock = threading.Lock()
        self.group: WeightGroup | None = None
        self.pushes = self.served = 0
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.group = None

    # ---- routes: each returns a JSON-able dict, or raises ValueError (a bad request) / anything (a failure)
    def health(self, body: dict[str, Any]) -> dict[str, Any]:
        config = self.policy.llm.llm_engine.model_config
        hf = config.hf_config
        return {"model": str(config.model), "max_model_len": int(self.policy.max_length), "pushes": self.pushes,
                "served": self.served, "gpu": gpu_id() if self.policy.device_type == "cuda" else None,
                "architecture": {k: getattr(hf, k, None) for k in ("model_type", "vocab_size", "hidden_size",
                                                                   "num_hidden_layers")}}

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        sampling = SamplingConfig.from_mapping(_field(body, "sampling", dict), source="/generate sampling")
        if sampling.max_new_tokens >= self.policy.max_length:
            raise ValueError(f"max_new_tokens ({sampling.max_new_tokens}) leaves no room for a prompt in the "
                             f"model's {self.policy.max_length} tokens")
        requests = [TurnRequest(game="", role="", messages=_field(r, "messages", list), observation={}, options=None,
                                episode="", turn=0, seed=int(_field(r, "seed", int)),
                                history_ids=r.get("history_ids"))
                    for r in _field(body, "requests", list)]
        with self.lock:
            self.policy.sampling = sampling
            completions = self.policy.generate(requests)
            self.served += len(requests)
        return {"completions": [{k: getattr(c, k) for k in _COMPLETION_KEYS} for c in completions]}

    def join(self, body: dict[str, Any]) -> dict[str, Any]:
        backend = body.get("backend", "gloo")
        if backend == "nccl" and self.policy.device_type != "cuda":
            raise ValueError("the trainer asked for NCCL, but this engine runs on a CPU; use sync_backend = \"gloo\"")
        with self.lock:
            if self.group is not None:  # a trainer that joins again (after a failed push): the old group goes
                self.group.close()
            self.group = None
            self.group = WeightGroup.join(_field(body, "host", str), int(_field(body, "port", int)),
                                          int(_field(body, "rank", int)), int(_field(body, "world_size", int)),
                                          timeout=float(body.get("timeout", 300.0)), backend=backend)
        return {"joined": True}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = _field(body, "tensors", list)
        with self.lock:
            if self.group is None:
                raise ValueError("no weight group: POST /weights/join first")
            started = time.perf_counter()
            received = self.group.receive(meta, int(body.get("bucket_bytes", BUCKET_BYTES)))
            try:
                self.policy.load_weights(received)
            finally:
                for _ in received:  # whatever the engine did not take: the trainer is still sending it
                    pass
            self.pushes += 1
        return {"seconds": time.perf_counter() - started, "pushes": self.pushes}

    def leave(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.group is not None:
                self.group.close()
            self.group = None
        return {"left": True}


def _field(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ValueError(f"'{key}' must be a {kind.__name__}; got {type(value).__name__}")
    return value


def _handler(server: EngineServer) -> type[BaseHTTPRequestHandler]:
    routes = {("GET", "/health"): server.health, ("POST", "/generate"): server.generate,
              ("POST", "/weights/join"): server.join, ("POST", "/weights/update"): server.update,
              ("POST", "/weights/leave"): server.leave}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            data = self.rfile.read(length) if length > 0 else b""  # read in full: the connection is kept alive
            route = routes.get((method, self.path.rstrip("/") or "/"))
            if route is None:
                self._answer(404, {"error": f"no route {method} {self.path}; expected one of "
                                            f"{', '.join(f'{m} {p}' for m, p in routes)}"})
                return
            try:
                body = json.loads(data or b"{}") if method == "POST" else {}
                self._answer(200, route(body))
            except (ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
                self._answer(400, {"error": redact(str(err))})
            except Exception as err:  # noqa: BLE001 - the engine failed: say so to the caller, keep serving
                log.exception("%s %s failed", method, self.path)
                self._answer(500, {"error": redact(f"{type(err).__name__}: {err}")})

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def _together(tasks: Sequence[Callable[[], Any]], timeout: float) -> list[Any]:
    """Run ``tasks`` at once, each in a daemon thread; their results, or the first error as soon as it happens
    (the others may still be waiting on the dead peer: daemon threads, so they never hold the process)."""
    events: queue.Queue = queue.Queue()

    def run(i: int, task: Callable[[], Any]) -> None:
        try:
            events.put((i, task(), None))
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            events.put((i, None, err))

    for i, task in enumerate(tasks):
        threading.Thread(target=run, args=(i, task), daemon=True, name=f"weight-sync-{i}").start()
    results: list[Any] = [None] * len(tasks)
    deadline = time.monotonic() + timeout + 5.0
    for _ in tasks:
        try:
            i, result, err = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        if err is not None:
            raise err
        results[i] = result
    return results


# ---------------------------------------------------------------------------------------------- the client
class VLLMServerPolicy(Policy):
    """``vllm-server:URL[,URL...]``: the engines of ``arena vllm-serve`` as one batched, token-exact policy."""

    def __init__(self, spec: str, urls: Sequence[str], sampling: SamplingConfig | None = None, *,
                 timeout: float = 600.0, sync_timeout: float = 300.0, sync_backend: str = "auto"):
        super().__init__(spec)
        self.urls = list(urls)
        self.sampling = sampling or SamplingConfig()
        self.timeout, self.sync_timeout, self.sync_backend = timeout, sync_timeout, sync_backend
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        self._group: WeightGroup | None = None
        self.servers = [self._call(url, "GET", "/health") for url in self.urls]
        for url, server in zip(self.urls, self.servers):
            if not isinstance(server.get("architecture"), dict) or not isinstance(server.get("max_model_len"), int):
                raise PolicyError(f"{spec}: {url} answers /health, but not as an `arena vllm-serve` server does (no "
                                  "model description); point vllm-server: at servers started with `arena vllm-serve`")
        models = {json.dumps(s["architecture"], sort_keys=True) for s in self.servers}
        if len(models) > 1:
            served = "; ".join(f"{url}: {server['model']}" for url, server in zip(self.urls, self.servers))
            raise PolicyError(f"{spec}: the servers serve different models: {served}")
        self.architecture: dict[str, Any] = self.servers[0]["architecture"]
        self.max_length = min(int(s["max_model_len"]) for s in self.servers)
        if self.sampling.max_new_tokens >= self.max_length:
            raise PolicyError(f"{spec}: max_new_tokens ({self.sampling.max_new_tokens}) leaves no room for a prompt "
                              f"in the model's {self.max_length} tokens")

    def _call(self, url: str, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
        try:
            answer = self._client.request(method, url + path, json=body,
                                          timeout=httpx.USE_CLIENT_DEFAULT if timeout is None
                                          else httpx.Timeout(timeout, connect=10.0))
        except httpx.TimeoutException:
            raise PolicyError(f"{self.spec}: the engine server at {url} did not answer {path} within "
                              f"{timeout or self.timeout:g} s") from None
        except httpx.HTTPError as err:
            raise PolicyError(f"{self.spec}: no engine server answers at {url} ({type(err).__name__}: "
                              f"{redact(str(err))[:200]}); start one with `arena vllm-serve MODEL --port PORT`"
                              ) from None
        try:
            payload = answer.json()
        except ValueError:
            payload = {"error": answer.text[:200]}
        if answer.status_code != 200:
            raise PolicyError(f"{self.spec}: the engine server at {url} refused {path} ({answer.status_code}): "
                              f"{redact(str(payload.get('error', payload)))[:300]}")
        return payload

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        if not requests:
            return []
        sampling = self.sampling.to_dict()
        base, extra = divmod(len(requests), len(self.urls))  # 9 turns on 4 servers: 3, 2, 2, 2
        bounds = [0]
        for i in range(len(self.urls)):
            bounds.append(bounds[-1] + base + (i < extra))
        parts = [(url, requests[a:b]) for url, a, b in zip(self.urls, bounds, bounds[1:]) if b > a]

        def ask(url: str, part: Sequence[TurnRequest]) -> list[dict[str, Any]]:
            body = {"sampling": sampling, "requests": [{"messages": r.messages, "history_ids": r.history_ids,
                                                        "seed": int(r.seed)} for r in part]}
            answer = self._call(url, "POST", "/generate", body).get("completions")
            if not isinstance(answer, list) or len(answer) != len(part) or not all(isinstance(a, dict) for a in answer):
                raise PolicyError(f"{self.spec}: {url} answered /generate with something other than "
                                  f"{len(part)} completions; is it an `arena vllm-serve` server?")
            return answer

        if len(parts) == 1:
            answers = ask(*parts[0])
        else:
            with ThreadPoolExecutor(len(parts)) as pool:
                answers = [c for chunk in pool.map(lambda p: ask(*p), parts) for c in chunk]
        return [Completion(**{k: a.get(k) for k in _COMPLETION_KEYS}) for a in answers]

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Broadcast ``(name, tensor)`` pairs to every engine, which load them without restarting (the first
        call forms the weight group). The first failure on either side ends the push at once."""
        weights = list(weights)
        if self._group is None:
            device = weights[0][1].device if weights else None
            self._join(self._backend(device), device)
        group = self._group
        body = {"tensors": describe(weights), "bucket_bytes": BUCKET_BYTES}
        try:
            _together([lambda: group.send(weights)]
                      + [lambda url=url: self._call(url, "POST", "/weights/update", body, self.sync_timeout)
                         for url in self.urls], self.sync_timeout)
        except Exception as err:
            self._group = None  # a member may be gone: the next push forms a new group
            raise self._failure("sending the weights failed", err) from None

    def _backend(self, device: Any) -> str:
        """``sync_backend``, or for ``auto``: NCCL when the trainer's weights and every engine are on GPUs of
        their own (NCCL refuses two members on one GPU), else gloo."""
        if self.sync_backend != "auto":
            return self.sync_backend
        if device is None or device.type != "cuda":
            return "gloo"
        gpus = [gpu_id(device.index), *(server.get("gpu") for server in self.servers)]
        return "nccl" if None not in gpus and len(set(gpus)) == len(gpus) else "gloo"

    def _join(self, backend: str, device: Any) -> None:
        addresses = {url: local_address(urlsplit(url).hostname or "127.0.0.1") for url in self.urls}
        if len(set(addresses.values())) > 1:
            raise PolicyError(f"{self.spec}: the servers are reached from different addresses of this machine "
                              f"({', '.join(f'{u} from {a}' for u, a in addresses.items())}); the engines must all "
                              "reach the trainer at one address: name every server by an address of one network")
        address = next(iter(addresses.values()))
        group = WeightGroup.host(address, len(self.urls), timeout=self.sync_timeout, backend=backend,
                                 device=device.index if backend == "nccl" and device is not None else None)
        join = {"host": address, "port": group.port, "world_size": group.world_size, "timeout": self.sync_timeout,
                "backend": backend}
        try:
            _together([group.connect]
                      + [lambda url=url, rank=rank: self._call(url, "POST", "/weights/join", {**join, "rank": rank},
                                                               self.sync_timeout)
                         for rank, url in enumerate(self.urls, start=1)], self.sync_timeout)
        except Exception as err:
            raise self._failure(f"the engines did not join the weight group at {address}:{group.port}", err) from None
        self._group = group

    def _failure(self, what: str, err: Exception) -> PolicyError:
        if isinstance(err, PolicyError):
            return err
        return PolicyError(f"{self.spec}: {what} ({type(err).__name__}: {error_line(err, 200)})")

    def close(self) -> None:
        if self._group is not None:
            for url in self.urls:
                try:
                    self._call(url, "POST", "/weights/leave", {}, timeout=10.0)
                except PolicyError:
                    pass  # the server is gone: nothing to leave
            self._group.close()
            self._group = None
        self._client.close()
