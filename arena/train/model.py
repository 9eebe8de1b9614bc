"""The model being trained: one torch module that both plays (through the batched rollout) and learns.

:class:`TrainableModel` loads a chat model (optionally with LoRA adapters
through peft), exposes it as a :class:`~agents.hf.TransformersPolicy` whose
weights are the ones being trained, keeps a frozen reference copy for the KL
penalty, and computes per-token log-probabilities and entropies on
:class:`~arena.train.data.Batch` es. The losses live here too, so every
algorithm shares one masked, NaN-safe implementation.
"""

from __future__ import annotations

import copy
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.hf import TransformersPolicy, load_chat_model, logits_keep_keyword
from agents.sampling import SamplingConfig
from arena.train.data import Batch

__all__ = ["TrainableModel", "LoraSettings", "pg_loss", "bc_loss", "TokenStats", "cpu_has_bf16", "check_precision"]

log = logging.getLogger(__name__)


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX on x86, BF16 on Arm), read from
    ``/proc/cpuinfo`` (or the text given); None where that cannot be told."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}) if flags else None


def check_precision(precision: str, device_type: str = "cpu") -> str | None:
    """Warn (and return the warning) when bf16 autocast is asked for on a CPU that has to emulate it."""
    if precision != "bf16" or device_type != "cpu" or cpu_has_bf16() is not False:
        return None
    message = ('precision = "bf16" on a CPU without bfloat16 instructions (no avx512_bf16, amx_bf16 or bf16 in '
               '/proc/cpuinfo): torch emulates them, measured 10-15x slower than fp32 on a 2-core AMD EPYC with '
               'AVX2 only; use precision = "fp32" here')
    log.warning(message)
    return message


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TokenStats:
    """Per-position log-probabilities under the policy (and the reference), entropies, and the target mask.

    ``columns``: the positions of the batch (in ``target[:, :-1]``'s frame) these tensors hold, when only
    the positions that predict a trained token in some row were computed; None when they hold all.
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor
    ref_logp: torch.Tensor | None = None
    columns: torch.Tensor | None = None

    def select(self, per_position: torch.Tensor) -> torch.Tensor:
        """A batch tensor of per-position values (``[:, :-1]`` frame) cut to the positions held here."""
        return per_position if self.columns is None else per_position[:, self.columns.to(per_position.device)]


class TrainableModel:
    """A chat model that plays and learns, with a frozen reference for the KL penalty."""

    def __init__(self, path: str | Path, spec: str, sampling: SamplingConfig, *, lora: LoraSettings | None = None,
                 reference: bool = True, device: str | None = None, max_batch_size: int = 64,
                 precision: str = "fp32"):
        model, tokenizer = load_chat_model(path, device=device)
        self.precision = precision
        self.tokenizer = tokenizer
        self.lora = lora
        if lora is not None:
            try:
                from peft import LoraConfig, get_peft_model  # optional (the `lora` extra)
            except ImportError:
                raise RuntimeError("LoRA needs peft: pip install peft") from None
            modules = [m for m in lora.target_modules if any(n.endswith(m) for n, _ in model.named_modules())]
            model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                     target_modules=modules, bias="none"))
            self.reference_model = None  # the reference is the same model with its adapters switched off
        else:
            self.reference_model = copy.deepcopy(model).eval() if reference else None
            if self.reference_model is not None:
                for p in self.reference_model.parameters():
                    p.requires_grad_(False)
        self.model = model
        self.device = next(model.parameters()).device
        check_precision(precision, self.device.type)
        self._policy_args = (spec, path, sampling, max_batch_size)
        self.policy = TransformersPolicy(spec, path, sampling, model=model, tokenizer=tokenizer,
                                         max_batch_size=max_batch_size)
        #: FSDP (:meth:`shard`): the whole weights, gathered from the shards, that play and are saved
        self.player: Any = None
        self._player_current = True
        self.pad_id = tokenizer.pad_token_id
        # transformers' keyword for computing logits at given positions only (older releases lack a tensor form)
        self._keep_keyword = "logits_to_keep" if logits_keep_keyword(model) == "logits_to_keep" else None

    # ------------------------------------------------------------------ FSDP
    @property
    def sharded(self) -> bool:
        return self.player is not None

    def shard(self) -> None:
        """Shard the trained weights, their gradients and the optimiser's state over the data-parallel ranks
        (FSDP, ``torch.distributed.fsdp.fully_shard``: one unit per decoder layer, as the model's
        ``_no_split_modules`` names them, and one for the rest); the frozen reference is sharded too.

        Rollouts and saving use :attr:`player`, a plain module holding the whole weights (no gradients, no
        optimiser state): :meth:`gather` refreshes it from the shards, a collective every rank calls. Every
        rank must also run the same number of forward and backward passes (``gradient_step`` pads)."""
        if self.lora is not None:
            raise ValueError("fsdp = true with LoRA is not supported (LoRA's trained state is small already: "
                             "train it data-parallel without fsdp)")
        from torch.distributed.fsdp import fully_shard

        player = copy.deepcopy(self.model).eval()
        for p in player.parameters():
            p.requires_grad_(False)
        for module in (self.model, self.reference_model):
            if module is None:
                continue
            units = set(getattr(module, "_no_split_modules", None) or ())
            for sub in list(module.modules()):
                if sub is not module and type(sub).__name__ in units:
                    fully_shard(sub)
            fully_shard(module)
        self.player = player
        spec, path, sampling, max_batch_size = self._policy_args
        self.policy = TransformersPolicy(spec, path, sampling, model=player, tokenizer=self.tokenizer,
                                         max_batch_size=max_batch_size)

    def stepped(self) -> None:
        """The trained weights changed (an optimiser step): the player is behind until :meth:`gather`."""
        self._player_current = not self.sharded

    def gather(self) -> None:
        """FSDP: copy the whole current weights from the shards into :attr:`player` (every rank calls it
        together; nothing to do when it is current or without FSDP)."""
        if self._player_current:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        whole = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True))
        with torch.no_grad():
            self.player.load_state_dict(whole)
        self._player_current = True

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimiser's state to checkpoint: ``optimizer.state_dict()``, or with FSDP the whole state
        gathered to rank 0 and keyed by parameter name (every rank calls it; the others get nothing)."""
        if not self.sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Restore what :meth:`optimizer_state` saved, with or without FSDP either side (a run may resume
        with another number of ranks, or with fsdp switched)."""
        groups = state.get("param_groups") or [{}]
        named = any(isinstance(k, str) for k in state.get("state", {})) or \
            any(isinstance(p, str) for p in groups[0].get("params", ()))
        if not named and not self.sharded:
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if not named:  # positions in parameters() order -> parameter names
            names = [n for n, p in self.model.named_parameters() if p.requires_grad]
            state = {"state": {names[i]: v for i, v in state["state"].items()},
                     "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(self.model, optimizer, state, options=StateDictOptions(full_state_dict=True))

    def merged_weights(self) -> list[tuple[str, torch.Tensor]]:
        """The weights as a plain model of the starting architecture names them (LoRA adapters merged in), for
        a rollout engine to load."""
        if self.lora is None:
            return [(name, t.detach()) for name, t in self.model.state_dict().items()]
        # out of place: merging into the base weights and back would move them (and the KL reference) by
        # rounding at every push
        base = self.model.get_base_model()
        adapter = self.model.active_adapter
        deltas = {f"{name}.base_layer.weight": module.get_delta_weight(adapter).detach()
                  for name, module in base.named_modules()
                  if hasattr(module, "base_layer") and adapter in getattr(module, "lora_A", {})}
        return [(name.replace(".base_layer.", "."), t.detach() + deltas[name] if name in deltas else t.detach())
                for name, t in base.state_dict().items() if ".lora_" not in name]

    @property
    def end_ids(self) -> list[int]:
        return self.policy.end_ids

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextmanager
    def _reference(self):
        if self.lora is not None:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.reference_model

    def _autocast(self):
        """bfloat16 autocast for ``precision = "bf16"`` (the backward pass follows the forward's dtypes)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def token_stats(self, batch: Batch, with_reference: bool = False) -> TokenStats:
        """Log-probabilities of each next token (and entropy of each next-token distribution).

        Only the positions that predict a trained token in some row get logits (prompts and the other
        roles' turns are most of a sequence), when the model can limit its logits to given positions.
        """
        self.model.train()
        ids = batch.input_ids.to(self.device)
        attention = batch.attention.to(self.device)
        mask = batch.target[:, :-1].to(self.device)
        columns, keep = None, {}
        if self._keep_keyword is not None:
            columns = mask.any(0).nonzero().squeeze(-1)
            keep = {self._keep_keyword: columns}
        with self._autocast():
            logits = self.model(input_ids=ids, attention_mask=attention, **keep).logits.float()
        if columns is None:
            logits = logits[:, :-1]
            nxt = ids[:, 1:].unsqueeze(-1)
        else:
            nxt = ids[:, columns + 1].unsqueeze(-1)
            mask = mask[:, columns]
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, nxt).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        ref = None
        if with_reference:
            with torch.no_grad(), self._reference() as reference, self._autocast():
                if reference is not None:
                    ref_logits = reference(input_ids=ids, attention_mask=attention, **keep).logits.float()
                    ref_logits = ref_logits[:, :-1] if columns is None else ref_logits
                    ref = torch.log_softmax(ref_logits, dim=-1).gather(-1, nxt).squeeze(-1)
        return TokenStats(logp, entropy.detach(), mask, ref, columns)

    @torch.no_grad()
    def logp_where(self, batch: Batch, where: torch.Tensor) -> torch.Tensor:
        """The log-probabilities of the tokens predicted at the positions ``where`` marks (``input_ids[:, :-1]``'s
        frame), flattened row by row: eval mode, no gradient, logits only at those positions."""
        was_training = self.model.training
        self.model.eval()
        try:
            ids, where = batch.input_ids.to(self.device), where.to(self.device)
            columns = where.any(0).nonzero().squeeze(-1)
            keep = {self._keep_keyword: columns} if self._keep_keyword is not None else {}
            logits = self.model(input_ids=ids, attention_mask=batch.attention.to(self.device), **keep).logits.float()
            logits = logits[:, columns] if not keep else logits
            logp = torch.log_softmax(logits, -1).gather(-1, ids[:, columns + 1].unsqueeze(-1)).squeeze(-1)
            return logp[where[:, columns]]
        finally:
            self.model.train(was_training)

    def save(self, folder: str | Path) -> None:
        """``save_pretrained`` format; LoRA adapters are merged so the result loads as a plain model."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model if self.player is None else self.player  # FSDP: gathered beforehand
        if self.lora is not None:
            model = copy.deepcopy(self.model).merge_and_unload()
        model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    def state_dict(self) -> dict[str, Any]:
        """The weights (the player's with FSDP: :meth:`gather` first)."""
        model = self.model if self.player is None else self.player
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.player is None:
            self.model.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        self.player.load_state_dict(state)  # first: set_model_state_dict turns the dict's tensors into shards
        set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True))
        self._player_current = True


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions; masked-out values never reach the sum (NaN-safe)."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def pg_loss(stats: TokenStats, batch: Batch, beta: float, is_cap: float = 0.0,
            engine_gap: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Policy gradient: -advantage * log p on the role's own tokens, plus beta * KL to the reference.

    The KL is the k3 estimator, exp(r) - r - 1 with r = log p_ref - log p (non-negative, unbiased),
    weighted per turn by ``batch.kl_weight`` (SCoRe holds the first attempt closer than the second).

    ``is_cap > 0``: truncated importance sampling for tokens another engine sampled (vLLM): each token's
    term is weighted by min(exp(log p - log p_sampler), is_cap), held constant (no gradient through it), as
    TRL and verl do; tokens without the sampler's log-probability keep weight 1.

    ``engine_gap``: also measure how far the sampler's log-probabilities are from these (the update's own
    forward pass, before its step: free): ``engine_logprob_diff`` and ``engine_ratio_outliers`` (the share
    of tokens whose ratio is outside [0.5, 2]).
    """
    mask = stats.mask
    advantage = stats.select(batch.advantage[:, :-1]).to(stats.logp.device)
    weight = stats.select(batch.kl_weight[:, :-1]).to(stats.logp.device)
    term = -advantage * stats.logp
    metrics: dict[str, float] = {}
    if engine_gap and batch.sampled_logp is not None:
        sampler = stats.select(batch.sampled_logp[:, :-1]).to(stats.logp.device)
        gap = (stats.logp.detach() - sampler)[mask & torch.isfinite(sampler)].double()
        if gap.numel():
            metrics["engine_logprob_diff"] = float(gap.abs().mean())
            metrics["engine_ratio_outliers"] = float((gap.abs() > math.log(2)).double().mean())
    if is_cap > 0 and batch.sampled_logp is not None:
        sampler = stats.select(batch.sampled_logp[:, :-1]).to(stats.logp.device)
        known = mask & torch.isfinite(sampler)
        # where, not multiplication: NaN (no sampler value) must not reach the loss
        ratio = torch.exp(torch.where(known, stats.logp.detach() - sampler, torch.zeros_like(stats.logp)))
        is_weight = torch.clamp(ratio, max=is_cap)
        term = is_weight * term
        metrics["is_weight"] = float(_masked_mean(is_weight, mask))
    pg = _masked_mean(term, mask)
    metrics.update(pg_loss=float(pg.detach()), entropy=float(_masked_mean(stats.entropy, mask)))
    loss = pg
    if stats.ref_logp is not None:
        r = torch.where(mask, stats.ref_logp - stats.logp, torch.zeros_like(stats.logp))
        kl = torch.exp(r) - r - 1
        loss = loss + beta * _masked_mean(weight * kl, mask)
        metrics["kl"] = float(_masked_mean(kl.detach(), mask))
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def bc_loss(stats: TokenStats) -> tuple[torch.Tensor, dict[str, float]]:
    """Behaviour cloning: mean negative log-likelihood of the role's own tokens."""
    loss = _masked_mean(-stats.logp, stats.mask)
    return loss, {"loss": float(loss.detach()), "entropy": float(_masked_mean(stats.entropy, stats.mask))}
