"""Building the seed model: scripted transcripts -> tokenizer -> a small Llama trained from scratch.

    arena seed-model scenarios/seed-model.toml

1. Data: the scripted players of every built-in game (each variant) play
   episodes, some against random opponents so the model sees odd partners;
   every scripted role's whole conversation becomes one training sequence.
   Now and then a scripted role "slips" (a random or broken move); the slip
   is never imitated, but what the role does next is, so the model learns to
   recover when the game rejects a move (arena/seed/data.py).
2. Tokenizer: byte-level BPE trained on those conversations (digits split).
3. Model: a LlamaConfig-style decoder trained by next-token prediction on
   the tokens each role wrote (prompts and other roles are masked out).
4. Evaluation: the trained model plays each game against scripted players;
   legal-move rates and game metrics go into the model card (arena/seed/card.py).

Everything is seeded, so the same scenario on the same machine rebuilds the
same model. The training saves ``OUT/checkpoint`` every ``[train] checkpoint_every``
steps; ``arena seed-model SCENARIO --resume`` continues a killed build from it.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from agents.chat_format import build_tokenizer, conversation_ids
from arena.config import ScenarioError
from arena.output import OutputLock, write_failure
from arena.seed.card import evaluate_model, model_card
from arena.seed.data import make_transcripts
from arena.seed.scenario import SeedModelScenario
from arena.train.checkpoint import find_checkpoint, read_checkpoint, restore_rng, write_checkpoint
from arena.train.model import check_precision
from arena.train.optim import length_buckets

__all__ = ["SeedModelError", "build_seed_model", "finish_report"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"  # OUT/checkpoint: the build's resumable checkpoint (arena.train.checkpoint's format)


# ----------------------------------------------------------------------- training
class SeedModelError(RuntimeError):
    """A build that cannot start or resume as asked (the message says why and what to do)."""


def _batches(lengths: list[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """One epoch's length-bucketed batches (:func:`arena.train.optim.length_buckets`) in shuffled order."""
    batches = length_buckets(lengths, batch_tokens)
    rng.shuffle(batches)
    return batches


def _schedule(lengths: list[int], batch_tokens: int, seed: int) -> Iterator[list[int]]:
    """Every epoch's batches one after another: a fixed sequence, so a resumed build skips to its step."""
    rng = random.Random(seed)
    while True:
        yield from _batches(lengths, batch_tokens, rng)


def _collate(rows: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (ids, mask) in enumerate(rows):
        n = len(ids)
        input_ids[r, :n] = torch.tensor(ids)
        attention[r, :n] = 1
        labels[r, :n] = torch.where(torch.tensor(mask) == 1, torch.tensor(ids), torch.tensor(-100))
    return input_ids, attention, labels


def _resumable(scenario: SeedModelScenario) -> dict[str, Any]:
    """The settings a resumed build must share with the interrupted one (not threads, checkpoints or eval)."""
    train = {k: v for k, v in scenario.train.to_dict().items() if k not in ("threads", "checkpoint_every")}
    settings = {"data": scenario.data.to_dict(), "tokenizer": scenario.tokenizer.to_dict(),
                "model": scenario.model.to_dict(), "train": train}
    return json.loads(json.dumps(settings))  # as stored in state.json (tuples become lists)


def _find_checkpoint(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The whole checkpoint under ``out`` and its trainer state (the build's position in ``state``), if any.

    A build interrupted before the one checkpoint format (``optimizer.pt`` + ``state.json``) resumes too."""
    found = find_checkpoint(out / CHECKPOINT)
    if found is not None:
        return found, read_checkpoint(found)
    for legacy in (out / CHECKPOINT, out / f"{CHECKPOINT}.old"):
        if (legacy / "state.json").is_file() and (legacy / "optimizer.pt").is_file():
            old = torch.load(legacy / "optimizer.pt", weights_only=False)
            state = {**json.loads((legacy / "state.json").read_text(encoding="utf-8")), "optimizer": old["optimizer"]}
            return legacy, {"iteration": state["step"], "state": state, "rng": {"torch": old["torch_rng"]}}
    return None


def build_seed_model(scenario: SeedModelScenario, out: str | Path | None = None,
                     progress: Callable[[str, dict[str, Any]], None] | None = None,
                     evaluate: bool = True, resume: bool = False, scenario_file: str | None = None) -> dict[str, Any]:
    """Build the whole seed model; returns the build report (also written into the model card, whose rebuild
    command names ``scenario_file``).

    Every ``[train] checkpoint_every`` steps the build saves ``OUT/checkpoint``; ``resume=True``
    continues from it (same scenario) and gives the same model as an uninterrupted build. One build writes
    ``OUT`` at a time (:class:`arena.output.OutputLock`).
    """
    out = Path(out or scenario.out)
    try:
        lock = OutputLock(out).acquire()
    except (RuntimeError, NotADirectoryError) as err:
        raise SeedModelError(str(err)) from None
    try:
        return _build(scenario, out, progress, evaluate, resume, scenario_file)
    finally:
        lock.release()


def _build(scenario: SeedModelScenario, out: Path, progress: Callable[[str, dict[str, Any]], None] | None,
           evaluate: bool, resume: bool, scenario_file: str | None) -> dict[str, Any]:
    hf_logging.disable_progress_bar()

    checkpoint = _find_checkpoint(out)
    found, restored = checkpoint if checkpoint is not None else (None, None)
    saved: dict[str, Any] | None = None
    if resume:
        if found is None:
            raise SeedModelError(f"nothing to resume: {out} has no checkpoint (run without --resume to build)")
        saved = restored["state"]
        different = sorted(k for k, v in _resumable(scenario).items() if saved["settings"].get(k) != v)
        if different:
            raise SeedModelError(f"the checkpoint in {found} was made with different [{'], ['.join(different)}] "
                                 "settings; resume with the scenario that started it, or delete the checkpoint")
    elif found is not None:
        raise SeedModelError(f"{found} holds an interrupted build; pass --resume to continue it, or delete it "
                             "to start again")
    t0 = time.perf_counter()
    report: dict[str, Any] = {"scenario": scenario.to_dict()}
    if scenario_file:
        report["scenario_file"] = scenario_file
    say = progress or (lambda stage, info: None)
    if scenario.train.threads:
        torch.set_num_threads(scenario.train.threads)
    check_precision(scenario.train.precision)

    conversations = make_transcripts(scenario.data, lambda what, k, n: say("data", {"what": what, "done": k, "of": n}))
    report["conversations"] = len(conversations)
    if found is not None:
        say("tokenizer", {"from": str(found)})
        tokenizer = AutoTokenizer.from_pretrained(found)
    else:
        say("tokenizer", {"conversations": len(conversations)})
        tokenizer = build_tokenizer((m["content"] for c in conversations for m in c), scenario.tokenizer.vocab_size)
    encoded = [conversation_ids(tokenizer, c) for c in conversations]
    limit = scenario.model.max_position_embeddings
    kept = [e for e in encoded if len(e[0]) <= limit]
    report["dropped_too_long"] = len(encoded) - len(kept)
    report["train_tokens"] = sum(len(ids) for ids, _ in kept)
    report["assistant_tokens"] = sum(sum(mask) for _, mask in kept)
    if saved is not None and saved["train_tokens"] != report["train_tokens"]:
        raise SeedModelError(f"the transcripts ({report['train_tokens']:,} tokens) differ from the interrupted "
                             f"build's ({saved['train_tokens']:,}): the games' code changed since; delete "
                             f"{found} and build again")

    m = scenario.model
    if found is not None:
        model = LlamaForCausalLM.from_pretrained(found)
    else:
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
            num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_kv_heads,
            max_position_embeddings=limit, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None, tie_word_embeddings=True, rope_theta=10000.0,
        )
        torch.manual_seed(scenario.train.seed)
        model = LlamaForCausalLM(config)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    t = scenario.train
    lengths = [len(ids) for ids, _ in kept]
    per_epoch = len(_batches(lengths, t.batch_tokens, random.Random(0)))
    total_steps = max(1, math.ceil(per_epoch * t.epochs))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=t.learning_rate, betas=(0.9, 0.95))
    step, seen_tokens, before_minutes = 0, 0, 0.0
    losses: list[float] = []
    curve: list[dict[str, float]] = []
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        restore_rng(restored["rng"])
        step, seen_tokens, before_minutes = saved["step"], saved["seen_tokens"], saved["train_minutes"]
        losses, curve = saved["losses"], saved["curve"]
        say("resume", {"step": step, "of": total_steps, "from": str(found)})

    def lr_at(step: int) -> float:
        if step < t.warmup_steps:
            return t.learning_rate * (step + 1) / t.warmup_steps
        frac = (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps)
        return t.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    def minutes() -> float:
        return before_minutes + (time.perf_counter() - started) / 60

    model.train()
    started = time.perf_counter()
    for batch in itertools.islice(_schedule(lengths, t.batch_tokens, t.seed), step, total_steps):
        input_ids, attention, labels = _collate([kept[i] for i in batch], tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.precision == "bf16"):
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        seen_tokens += int(attention.sum())
        if bool((labels != -100).any()):  # a batch of slips only has no loss to log (it is NaN; its gradient is 0)
            losses = [*losses[-19:], float(loss.detach())]
        logged = step % 10 == 0 or step == total_steps
        if logged:
            curve.append({"step": step, "of": total_steps, "loss": sum(losses[-10:]) / max(1, len(losses[-10:])),
                          "tokens_per_s": seen_tokens / max(1e-9, minutes() * 60), "minutes": minutes()})
        if t.checkpoint_every and step % t.checkpoint_every == 0 and step < total_steps:  # before the report,
            def save_model(folder: Path) -> None:
                model.save_pretrained(folder, safe_serialization=True)
                tokenizer.save_pretrained(folder)

            position = {"settings": _resumable(scenario), "step": step, "of": total_steps, "seen_tokens": seen_tokens,
                        "train_minutes": minutes(), "losses": losses, "curve": curve,
                        "train_tokens": report["train_tokens"]}
            try:  # before the report, which may be the last thing done
                write_checkpoint(out / CHECKPOINT, save_model, step, {**position, "optimizer": optimizer.state_dict()},
                                 readable=position)
            except Exception as err:  # a full disk above all: one clear line, the last checkpoint kept
                shutil.rmtree(out / f"{CHECKPOINT}.tmp", ignore_errors=True)
                raise SeedModelError(f"could not write the checkpoint in {out}: {write_failure(err, out)}; free some "
                                     "space and continue with --resume") from None
        if logged:
            say("train", curve[-1])
    model.eval()
    report.update(steps=step, final_loss=sum(losses[-20:]) / max(1, len(losses[-20:])), train_minutes=minutes())

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    report["curve"] = curve
    report["build_minutes"] = (time.perf_counter() - t0) / 60
    # The training report is written before evaluating, so an interrupted evaluation loses nothing:
    # `arena seed-model SCENARIO --evaluate-only` finishes it.
    (out / "build_report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    for name in (CHECKPOINT, f"{CHECKPOINT}.old", f"{CHECKPOINT}.tmp"):  # the model is saved: the checkpoint is spent
        shutil.rmtree(out / name, ignore_errors=True)
    return finish_report(out, scenario, progress, scenario_file) if evaluate else report


def finish_report(out: str | Path, scenario: SeedModelScenario,
                  progress: Callable[[str, dict[str, Any]], None] | None = None,
                  scenario_file: str | None = None) -> dict[str, Any]:
    """Evaluate a built model and write its build report and model card."""
    out = Path(out)
    path = out / "build_report.json"
    if not path.is_file():
        raise ScenarioError(f"{out} has no build_report.json: build the model first")
    report = json.loads(path.read_text(encoding="utf-8"))
    if scenario_file:
        report["scenario_file"] = scenario_file
    (progress or (lambda stage, info: None))("eval", {})
    started = time.perf_counter()
    report["evaluation"] = evaluate_model(out, scenario.eval, data=report["scenario"]["data"])
    report["eval_minutes"] = (time.perf_counter() - started) / 60
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card(report), encoding="utf-8")
    return report
