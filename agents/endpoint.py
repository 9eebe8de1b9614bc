"""``openai:MODEL@BASE_URL``: any OpenAI-compatible chat-completions server.

Requests go out concurrently (at most ``concurrency`` at once) over one async
HTTP client. ``timeout`` is a deadline for each try as a whole (connecting,
sending, and reading every byte of the answer), so a server that trickles its
answer a byte at a time cannot hold a run. Rate limits (429), server errors (5xx) and
connection failures are retried with exponential back-off and jitter; after
the last retry the request fails, which fails its episode with the reason and
leaves every other episode alone. Each request carries its turn's seed, which
servers that honour ``seed`` use for sampling.

The API key comes from an environment variable (``OPENAI_API_KEY`` unless
``api_key_env`` names another) at request time; it is sent only in the
``Authorization`` header and never appears in logs, errors or episodes: every
text from the server that reaches an error is redacted (:mod:`agents.secrets`),
so a server that echoes the key back in a 401 answer does not leak it.

An answer is checked before a game sees it: ``content`` must be a string or a
list of content parts (their text is joined); anything else fails the turn
with the reason. Log-probabilities that are not finite are dropped.

Servers return text (and, if asked and supported, token strings with
log-probabilities) but no token ids, so completions from this backend have
``token_ids = None``: filtered behaviour cloning can train on them as text; RL trains
the ``seed``/``hf:`` model that plays the trained roles itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from agents.base import Completion, Policy, PolicyError, TurnRequest
from agents.sampling import SamplingConfig
from agents.secrets import redact, register_secret

__all__ = ["EndpointPolicy", "parse_endpoint"]

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def parse_endpoint(arg: str) -> tuple[str, str]:
    """``"MODEL@http://host:port/v1"`` -> (model, base url). The model name may itself contain '@'."""
    model, sep, url = arg.rpartition("@")
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise PolicyError(f"openai agent spec must be openai:MODEL@BASE_URL (e.g. openai:my-model@"
                          f"http://127.0.0.1:8000/v1); got openai:{arg}")
    return model, url.rstrip("/")


class EndpointPolicy(Policy):
    """A chat-completions endpoint as a batched policy (requests go out concurrently)."""

    #: Each request goes out on its own (the server batches as it likes), so a resumed or retried run plays
    #: only the missing episodes instead of replaying their whole block of paid calls.
    batch_invariant = True

    def __init__(
        self,
        spec: str,
        model: str,
        base_url: str,
        sampling: SamplingConfig | None = None,
        *,
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        api_key_env: str = "OPENAI_API_KEY",
        logprobs: bool = False,
        send_seed: bool = True,
    ):
        super().__init__(spec)
        if concurrency < 1 or timeout <= 0 or retries < 0 or backoff < 0:
            raise PolicyError(f"{spec}: concurrency >= 1, timeout > 0, retries >= 0 and backoff >= 0 are required")
        self.model, self.base_url = model, base_url
        self.sampling = sampling or SamplingConfig()
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.api_key_env, self.logprobs, self.send_seed = api_key_env, logprobs, send_seed
        self._jitter = random.Random(0)

    # ------------------------------------------------------------------ sync entry point
    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate_all(list(requests)))
        # Called from inside a running event loop (a notebook): run ours in a helper thread.
        result: list[Completion] = []
        thread = threading.Thread(target=lambda: result.extend(asyncio.run(self._generate_all(list(requests)))))
        thread.start()
        thread.join()
        return result

    # ------------------------------------------------------------------ async core
    async def _generate_all(self, requests: list[TurnRequest]) -> list[Completion]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        semaphore = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), limits=limits) as client:
            async def one(request: TurnRequest) -> Completion:
                async with semaphore:
                    return await self._complete(client, request)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def _payload(self, request: TurnRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": self.sampling.max_new_tokens,
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
        }
        if self.send_seed:
            payload["seed"] = int(request.seed) % (2**31)
        if self.logprobs:
            payload["logprobs"] = True
        return payload

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        register_secret(key)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _complete(self, client: Any, request: TurnRequest) -> Completion:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                # wait_for bounds the whole try; httpx's own timeout bounds each read, which a server that
                # trickles bytes never exceeds
                response = await asyncio.wait_for(
                    client.post(url, json=self._payload(request), headers=self._headers()), self.timeout)
            except (httpx.TimeoutException, asyncio.TimeoutError):
                last = f"timed out: no complete answer within {self.timeout:g} s"
            except httpx.TransportError as err:
                last = f"connection failed ({type(err).__name__})"
            else:
                if response.status_code == 200:
                    return self._parse(response, time.perf_counter() - started)
                last = f"HTTP {response.status_code}: {redact(response.text)[:200]}"  # cut after: no key half
                if response.status_code not in RETRY_STATUS:
                    break
            if attempt < self.retries:
                delay = self.backoff * (2**attempt) * (0.5 + self._jitter.random())
                log.info("%s: %s; retrying in %.2f s", self.spec, last, delay)
                await asyncio.sleep(delay)
        return Completion(text="", error=f"endpoint {self.base_url} failed after {self.retries + 1} tries: {last}")

    def _parse(self, response: Any, seconds: float) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Completion(text="", error=f"endpoint {self.base_url} returned an unreadable answer")
        text = message_text(content)
        if text is None:
            return Completion(text="", error=f"endpoint {self.base_url} returned message content of type "
                                             f"{type(content).__name__}; expected a string or a list of text parts")
        logprobs = None
        items = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        if isinstance(items, list):
            # a non-number or non-finite value (Python servers send -Infinity) is left for checked_completion
            logprobs = [item.get("logprob") for item in items if isinstance(item, dict) and "logprob" in item]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        finish = choice.get("finish_reason")
        return Completion(text=text, logprobs=logprobs or None,
                          finish_reason=finish if isinstance(finish, str) else None,
                          info={"seconds": round(seconds, 4), "usage": usage})


def message_text(content: Any) -> str | None:
    """A chat message's text: a string as it is, content parts' texts joined, null as ''; None otherwise."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, (dict, str)) for part in content):
        texts = [part if isinstance(part, str) else part.get("text") for part in content]
        if all(isinstance(t, str) or t is None for t in texts):
            return "".join(t for t in texts if t)
    return None
