"""``hf:PATH``: any local transformers causal LM with a chat template, batched on CPU or GPU.

``PATH`` is a ``save_pretrained`` folder, a hub id already in the local cache, or a GGUF file
(``hf:model.gguf``, read through transformers' GGUF support: :mod:`agents.gguf`).

Prompts are rendered with the tokenizer's chat template, left-padded and run
as one batch; generation is a plain KV-cached loop that samples each row with
its own seeded uniform stream (see :mod:`agents.sampling`), stops each row at
its end-of-turn token, and drops finished rows from the batch. The tokens all
prompts of a batch begin with (a game's rules, the chat template's header) are
run once and their KV cache shared by every row, and the prompt pass computes
logits for the last position only. The KV cache of each episode's role after
its turn is kept (:class:`TurnCache`, least recently used first out, within
``episode_cache_mb``), so that role's next turn runs only the tokens that are
new since: in a conversation game most of every prompt is the conversation so
far. Every completion carries the sampled token ids and their log-probabilities,
so training uses exactly the tokens the model produced.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as hf_logging

from agents.base import Completion, Policy, PolicyError, TurnRequest
from agents.chat_format import ChatPrompts
from agents.gguf import is_gguf, load_gguf
from agents.sampling import SamplingConfig, request_uniforms, sample_next

__all__ = ["TransformersPolicy", "load_chat_model", "GenerationStats", "TurnCache", "logits_keep_keyword"]

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


def check_device(device: str | None) -> None:
    """A clear error for a device this machine does not have (torch would fail with an AssertionError)."""
    if not device or device == "cpu":
        return
    kind = str(device).split(":", 1)[0]
    available = {"cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if kind not in available:
        raise PolicyError(f"device must be cpu, cuda, cuda:N or mps; got {device!r}")
    if not available[kind]:
        build = "this torch is a CPU build" if kind == "cuda" and torch.version.cuda is None else "none is visible"
        raise PolicyError(f"device {device!r} is not available on this machine ({build}); use device = \"cpu\"")


def load_chat_model(path: str | Path, dtype: str = "float32", device: str | None = None) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer (which must have a chat template) from a directory or hub id."""
    hf_logging.disable_progress_bar()  # the CLI draws its own progress

    where = str(path)
    local = Path(where).expanduser()
    if is_gguf(where):  # a llama.cpp file: read through transformers' GGUF support (agents.gguf)
        check_device(device)
        model, tokenizer = load_gguf(local, _dtype(dtype))
        return _ready(model, tokenizer, where, device)
    if local.exists():
        if not (local / "config.json").is_file():
            raise PolicyError(f"{where} is not a transformers model directory (no config.json in it)")
        where = str(local)
    elif where.startswith((".", "/", "~")):
        raise PolicyError(f"model directory {where} not found")
    # anything else is a hub id; offline (HF_HUB_OFFLINE=1) it must already be in the local cache
    check_device(device)
    torch_dtype = _dtype(dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype)
    except OSError as err:
        raise PolicyError(f"could not load a model from {where}: {err}") from None
    return _ready(model, tokenizer, where, device)


def _dtype(dtype: str) -> torch.dtype:
    if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
        raise PolicyError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return getattr(torch, dtype)


def _ready(model: Any, tokenizer: Any, where: str, device: str | None) -> tuple[Any, Any]:
    """The loaded model on its device in eval mode, its tokenizer checked (a chat template) and padding left."""
    if not tokenizer.chat_template:
        raise PolicyError(f"the tokenizer at {where} has no chat template; the games speak in chat messages")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


class GenerationStats:
    """Counters a backend keeps: calls, prompts, tokens in and out, seconds inside generation."""

    def __init__(self) -> None:
        self.calls = self.requests = self.prompt_tokens = self.completion_tokens = 0
        self.shared_prompt_tokens = 0  # prompt tokens not run again: a batch's common prefix, after its first row
        self.cached_prompt_tokens = 0  # prompt tokens not run again: the episode's conversation up to its last turn
        self.seconds = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


Past = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values of one sequence, [heads, length, dim]


class TurnCache:
    """The KV cache of each (episode, role) after its last turn, so that its next turn runs only new tokens.

    An entry holds the token ids the role's last prompt and completion were (the completion without its
    last token, whose keys were never computed) and their keys and values. A new prompt that begins with
    those ids starts from them. An episode's entries are dropped when it ends (``forget``), the least
    recently used first when they hold more than ``budget_bytes``, and all at once when the model's
    weights change (a training step between two rounds of play): the parameters' in-place version
    counters tell. So what is cached depends only on the episodes being played, and a resumed run
    replays a block exactly as it first played it.
    """

    def __init__(self, model: Any, budget_bytes: int):
        self.model, self.budget = model, int(budget_bytes)
        self.entries: OrderedDict[tuple[str, str], tuple[list[int], Past, int]] = OrderedDict()
        self.bytes = 0
        self._weights = self._fingerprint()

    def _fingerprint(self) -> tuple[tuple[int, int], ...]:
        return tuple((id(p), p._version) for p in self.model.parameters())

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def check_weights(self) -> None:
        """Forget everything if the weights changed since the entries were made."""
        now = self._fingerprint()
        if now != self._weights:
            self.clear()
            self._weights = now

    def lookup(self, key: tuple[str, str], prompt: list[int]) -> tuple[int, Past] | None:
        """The cached past this prompt can start from (at most all its tokens but the last), or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        ids, past, _ = entry
        if len(ids) == 0 or len(ids) > len(prompt) or prompt[:len(ids)] != ids:
            return None
        self.entries.move_to_end(key)
        n = min(len(ids), len(prompt) - 1)
        return (n, past if n == len(ids) else [(k[:, :n], v[:, :n]) for k, v in past]) if n > 0 else None

    def forget(self, episode: str) -> None:
        """Drop an ended episode's entries (every role's)."""
        for key in [k for k in self.entries if k[0] == episode]:
            self.bytes -= self.entries.pop(key)[2]

    def store(self, key: tuple[str, str], ids: list[int], past: Past) -> None:
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in past)
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        if size > self.budget:
            return
        self.entries[key] = (ids, past, size)
        self.bytes += size
        while self.bytes > self.budget:
            _, (_, _, freed) = self.entries.popitem(last=False)
            self.bytes -= freed


class TransformersPolicy(Policy):
    """A transformers causal LM as a batched policy."""

    def __init__(
        self,
        spec: str,
        path: str | Path,
        sampling: SamplingConfig | None = None,
        *,
        dtype: str = "float32",
        device: str | None = None,
        max_batch_size: int = 64,
        share_prefix: bool = True,
        episode_cache_mb: float = 256.0,
        model: Any = None,
        tokenizer: Any = None,
    ):
        super().__init__(spec)
        self.sampling = sampling or SamplingConfig()
        if model is None or tokenizer is None:
            model, tokenizer = load_chat_model(path, dtype=dtype, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.max_batch_size = max_batch_size
        self.share_prefix = share_prefix
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.prompts = ChatPrompts(tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))
        self.stop_ids = self.prompts.stop_ids
        self.pad_id = tokenizer.pad_token_id
        self.stats = GenerationStats()
        self._warned_truncation = False
        self._warned_drift = False
        self.end_ids = self.prompts.end_ids
        self._cache_key = _cache_keyword(model)
        self._last_only = logits_keep_keyword(model)
        if episode_cache_mb < 0:
            raise PolicyError(f"episode_cache_mb must be 0 (off) or more, not {episode_cache_mb}")
        self.turn_cache = TurnCache(model, int(episode_cache_mb * 2**20)) if episode_cache_mb > 0 else None

    # ------------------------------------------------------------------ prompts
    def encode(self, messages: list[dict[str, str]], history_ids: list[list[int] | None] | None = None) -> list[int]:
        """The prompt token ids of a chat, ending with the assistant's generation prompt.

        With ``history_ids`` (the ids sampled at the role's earlier turns) those turns enter the prompt
        as exactly those ids (see :func:`agents.chat_format.conversation_tokens`): no token drift.
        """
        ids, exact = self.prompts.encode(messages, history_ids)
        if not exact and not self._warned_drift:
            log.warning("%s: the chat template is not incremental; earlier turns are re-tokenised", self.spec)
            self._warned_drift = True
        return ids

    def _fit(self, ids: list[int]) -> list[int]:
        room = self.max_length - self.sampling.max_new_tokens
        if len(ids) <= room:
            return ids
        if not self._warned_truncation:
            log.warning("a prompt of %d tokens was cut to its last %d (the model's context is %d tokens)",
                        len(ids), room, self.max_length)
            self._warned_truncation = True
        return ids[-room:]

    # ------------------------------------------------------------------ generation
    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        if not requests:
            return []
        start = time.perf_counter()
        prompts = [self._fit(self.encode(r.messages, r.history_ids)) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (-len(prompts[i]), i))
        results: list[Completion | None] = [None] * len(requests)
        keys = [(r.episode, r.role) for r in requests]
        if self.turn_cache is not None:
            self.turn_cache.check_weights()
        for lo in range(0, len(order), self.max_batch_size):
            chunk = order[lo:lo + self.max_batch_size]
            outs = self._generate_batch([prompts[i] for i in chunk], [requests[i].seed for i in chunk],
                                        keys=[keys[i] for i in chunk])
            for i, (ids, logprobs, reason) in zip(chunk, outs):
                results[i] = self._completion(ids, logprobs, reason, prompts[i])
        self.stats.calls += 1
        self.stats.requests += len(requests)
        self.stats.prompt_tokens += sum(map(len, prompts))
        self.stats.completion_tokens += sum(len(c.token_ids or []) for c in results if c)
        self.stats.seconds += time.perf_counter() - start
        return [c for c in results if c is not None]

    def end_episode(self, episode: str) -> None:
        if self.turn_cache is not None:
            self.turn_cache.forget(episode)

    def _completion(self, ids: list[int], logprobs: list[float], reason: str, prompt: list[int]) -> Completion:
        return Completion(text=self.prompts.text(ids), token_ids=ids, logprobs=logprobs, prompt_token_ids=prompt,
                          finish_reason=reason)

    #: A batch's common prefix is run once and shared only when it is at least this many tokens.
    MIN_SHARED_PREFIX = 16

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], seeds: list[int], stop_early: bool = True,
                        keys: list[tuple[str, str]] | None = None) -> list[tuple[list[int], list[float], str]]:
        """Sample up to ``max_new_tokens`` for each prompt (``stop_early=False`` ignores end tokens: benchmarks).

        With ``keys`` (episode, role) and the turn cache on, each prompt starts from its key's cached past
        where the prompt extends it, and each row's past is stored again when it finishes.
        """
        n, steps = len(prompts), self.sampling.max_new_tokens
        uniforms = request_uniforms(seeds, steps).to(self.device)
        turns = self.turn_cache if keys is not None else None
        pasts = [turns.lookup(key, prompt) for key, prompt in zip(keys, prompts)] if turns is not None else None
        cache, logits, mask, positions = self._prefill(prompts, pasts)
        active = list(range(n))  # batch row -> request index
        tokens_out: list[list[int]] = [[] for _ in range(n)]
        logprobs_out: list[list[float]] = [[] for _ in range(n)]
        reasons = ["length"] * n
        stop = torch.tensor(sorted(self.stop_ids), device=self.device) if self.stop_ids and stop_early else None
        for step in range(steps):
            tokens, logprobs = sample_next(logits, uniforms[active, step], self.sampling)
            finished = torch.isin(tokens, stop) if stop is not None else torch.zeros_like(tokens, dtype=torch.bool)
            for row, request in enumerate(active):
                tokens_out[request].append(int(tokens[row]))
                logprobs_out[request].append(float(logprobs[row]))
                if finished[row]:
                    reasons[request] = "stop"
                if turns is not None and (finished[row] or step == steps - 1):
                    self._store_turn(turns, keys[request], prompts[request] + tokens_out[request][:-1], cache,
                                     mask, row)
            if step == steps - 1:
                break
            keep = (~finished).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            if keep.numel() < len(active):
                cache.batch_select_indices(keep)
                mask, positions, tokens = mask[keep], positions[keep], tokens[keep]
                active = [active[i] for i in keep.tolist()]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                             use_cache=True, **{self._cache_key: cache})
            logits = out.logits[:, -1]
        return [(tokens_out[i], logprobs_out[i], reasons[i]) for i in range(n)]

    def _store_turn(self, turns: TurnCache, key: tuple[str, str], ids: list[int], cache: Any, mask: torch.Tensor,
                    row: int) -> None:
        """Keep one row's keys and values (its real positions only) as its episode role's past."""
        columns = mask[row].nonzero().squeeze(-1)
        if columns.numel() != len(ids):  # cannot happen with the layout below; never store a wrong past
            return
        turns.store(key, ids, [(layer.keys[row][:, columns], layer.values[row][:, columns])
                               for layer in cache.layers])

    def _prefill(self, prompts: list[list[int]], pasts: list[tuple[int, Past] | None] | None = None
                 ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the prompts through the model: the KV cache, each row's next-token logits, mask and positions.

        Each row may start from a past whose keys and values are known: its own (``pasts``, from the
        turn cache) or, for the rows without one, the tokens all those rows begin with (at least
        ``MIN_SHARED_PREFIX``, and at least one token of each prompt left over), run once as a batch of
        one. Pasts are left-padded to the longest, the rest of each prompt follows, padded on the left of
        its own part: ``[pad][past][pad][rest]``, the padding masked out and positions counted over real
        tokens, so every row sees exactly what it would see alone.
        """
        n = len(prompts)
        pasts = list(pasts or [None] * n)
        self.stats.cached_prompt_tokens += sum(p[0] for p in pasts if p is not None)
        fresh = [i for i in range(n) if pasts[i] is None]
        shared = len(os.path.commonprefix([prompts[i] for i in fresh])) if self.share_prefix and len(fresh) > 1 else 0
        shared = min(shared, min(len(prompts[i]) for i in fresh) - 1) if fresh else 0
        last = {self._last_only: 1} if self._last_only else {}
        if shared >= self.MIN_SHARED_PREFIX:
            head_cache = DynamicCache()
            head = torch.tensor([prompts[fresh[0]][:shared]], dtype=torch.long, device=self.device)
            self.model(input_ids=head, use_cache=True, **last, **{self._cache_key: head_cache})
            head_past = [(layer.keys[0], layer.values[0]) for layer in head_cache.layers]
            for i in fresh:
                pasts[i] = (shared, head_past)
            self.stats.shared_prompt_tokens += shared * (len(fresh) - 1)
        lengths = [p[0] if p is not None else 0 for p in pasts]
        before = max(lengths)
        rests = [prompt[length:] for prompt, length in zip(prompts, lengths)]
        width = max(map(len, rests))
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, before + width), dtype=torch.long)
        for row, (rest, length) in enumerate(zip(rests, lengths)):
            ids[row, width - len(rest):] = torch.tensor(rest, dtype=torch.long)
            mask[row, before - length:before] = 1
            mask[row, before + width - len(rest):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, before:]
        if before:
            layers = []
            some = next(p[1] for p in pasts if p is not None)
            for layer, (k0, v0) in enumerate(some):
                keys = k0.new_zeros((n, k0.shape[0], before, k0.shape[-1]))
                values = v0.new_zeros((n, v0.shape[0], before, v0.shape[-1]))
                for row, past in enumerate(pasts):
                    if past is not None:
                        keys[row, :, before - past[0]:] = past[1][layer][0]
                        values[row, :, before - past[0]:] = past[1][layer][1]
                layers.append((keys, values))
            cache = DynamicCache(ddp_cache_data=layers)
        else:
            cache = DynamicCache()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **last, **{self._cache_key: cache})
        return cache, out.logits[:, -1], mask, positions


def _forward_keywords(model: Any) -> set[str]:
    """The keyword names the model's forward() takes (a peft wrapper passes them on to its base model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return set(inspect.signature(base.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _cache_keyword(model: Any) -> str:
    """The forward() keyword for the KV cache: ``cache`` in newer transformers, ``past_key_values`` before."""
    return "cache" if "cache" in _forward_keywords(model) else "past_key_values"


def logits_keep_keyword(model: Any) -> str | None:
    """The forward() keyword that limits logits to the last positions, if the model has one."""
    params = _forward_keywords(model)
    return next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in params), None)
