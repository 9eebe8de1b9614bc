"""Building the seed model: scripted transcripts -> tokenizer -> a small Llama trained from scratch.

    arena seed-model scenarios/seed-model.toml

1. Data: the scripted players of every built-in game (each variant) play
   episodes, some against random opponents so the model sees odd partners;
   every scripted role's whole conversation becomes one training sequence.
   Now and then a scripted role "slips" (plays a random move instead); the
   slip is never imitated, but what the role does next is, so the model
   learns to recover when the game rejects a move.
2. Tokenizer: byte-level BPE trained on those conversations (digits split).
3. Model: a LlamaConfig-style decoder trained by next-token prediction on
   the tokens each role wrote (prompts and other roles are masked out).
4. Evaluation: the trained model plays each game against scripted players;
   legal-move rates and game metrics go into the model card.

Everything is seeded, so the same scenario on the same machine rebuilds the
same model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import games
from agents.base import Completion, Policy, TurnRequest
from agents.chat_format import build_tokenizer, conversation_ids
from agents.rule_based import RandomPolicy, ScriptedPolicy
from arena.batched import BatchedRollout, make_plans
from arena.episode import Episode
from arena.scenario import ScenarioError, Section, read_toml
from games.options import Config, option

__all__ = ["SeedModelScenario", "load_seed_scenario", "make_transcripts", "build_seed_model", "evaluate_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSection(Section):
    episodes: dict[str, Any] = option({"negotiation-v0": 1500, "refine-v0": 1500, "therapy-v0": 600},
                                      "scripted episodes per game (spread over the game's variants)")
    mixes: tuple[Any, ...] = option((), "instead of `episodes`: a list of { game, options, episodes } tables, to "
                                        "choose exactly which option sets the data covers")
    random_opponents: float = option(0.15, "share of episodes where one other role plays randomly", min=0, max=1)
    slips: float = option(0.0, "share of a scripted role's turns replaced by a random move that is not learned "
                               "from (the recovery after it is)", min=0, max=0.5)
    seed: int = option(0, "seed of the episodes", min=0)

    def sources(self) -> list[tuple[str, dict[str, Any], int]]:
        """(game, options, episodes) for every part of the data."""
        if self.mixes:
            out = []
            for n, mix in enumerate(self.mixes, 1):
                if not isinstance(mix, dict) or set(mix) - {"game", "options", "episodes"} or "game" not in mix:
                    raise ScenarioError(f"[data] mixes #{n}: expected a table with game, options and episodes")
                out.append((mix["game"], dict(mix.get("options") or {}), int(mix.get("episodes", 0))))
            return out
        out = []
        for game_id, count in self.episodes.items():
            variants = games.get_spec(game_id).cls.variants
            for v, options in enumerate(variants):
                out.append((game_id, dict(options), int(count) // len(variants) + (v < int(count) % len(variants))))
        return out


@dataclass(frozen=True)
class TokenizerSection(Section):
    vocab_size: int = option(2048, "BPE vocabulary size", min=300, max=65536)


@dataclass(frozen=True)
class ModelSection(Section):
    hidden_size: int = option(256, "width", min=16)
    num_layers: int = option(4, "transformer blocks", min=1)
    num_heads: int = option(4, "attention heads", min=1)
    num_kv_heads: int = option(2, "key/value heads (grouped-query attention)", min=1)
    intermediate_size: int = option(688, "MLP width", min=16)
    max_position_embeddings: int = option(2048, "context length in tokens", min=128)

    def validate(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ScenarioError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")


@dataclass(frozen=True)
class TrainSection(Section):
    epochs: float = option(2.0, "passes over the data", min=0.01)
    batch_tokens: int = option(16384, "padded tokens per optimiser step", min=256)
    learning_rate: float = option(3e-3, "peak learning rate (AdamW)", min=0)
    warmup_steps: int = option(50, "linear warm-up steps", min=0)
    weight_decay: float = option(0.05, "AdamW weight decay", min=0)
    seed: int = option(0, "initialisation and shuffling seed", min=0)
    threads: int = option(0, "torch CPU threads (0: torch's default)", min=0)


@dataclass(frozen=True)
class EvalSection(Section):
    episodes: int = option(60, "evaluation episodes per game and seat", min=1)
    seed: int = option(10_000, "evaluation seed (held out from the training seeds)", min=0)
    temperature: float = option(1.0, "sampling temperature during evaluation", min=0)


@dataclass(frozen=True)
class SeedModelScenario(Config):
    _noun = "section"
    data: DataSection = option(DataSection(), "training transcripts")
    tokenizer: TokenizerSection = option(TokenizerSection(), "tokenizer")
    model: ModelSection = option(ModelSection(), "model shape")
    train: TrainSection = option(TrainSection(), "optimisation")
    eval: EvalSection = option(EvalSection(), "evaluation against scripted players")
    out: str = option("agents/seed_model", "where to save the model (save_pretrained format)")


def load_seed_scenario(path: str | Path) -> SeedModelScenario:
    data = read_toml(path)
    try:
        return SeedModelScenario.from_mapping(data, source=str(path))
    except ScenarioError:
        raise
    except Exception as err:
        raise ScenarioError(str(err)) from None


# ----------------------------------------------------------------------- data
class SlippingScripted(Policy):
    """The scripted players, except that ``rate`` of their turns are slips.

    A slip is what a sampling model does now and then: half of them are the game's random move,
    half the scripted move broken (its first line dropped, or a one-line move cut in half), which
    the game usually rejects. At the role's next turn the scripted player is shown the slipped
    turn's observation again, followed by the new one, so it answers what was asked (a rejection
    asks again).
    ``slipped`` holds (episode id, turn index) of every slip, for the data to leave out of the loss.
    Slips are drawn from the episode seed and the turn, so batching does not change them.
    """

    batch_invariant = True

    def __init__(self, rate: float, spec: str = "scripted"):
        super().__init__(spec)
        self.rate = rate
        self.scripted, self.random = ScriptedPolicy(), RandomPolicy()
        self.slipped: set[tuple[str, int]] = set()
        self._missed: dict[tuple[str, str], str] = {}

    def _slip(self, request: TurnRequest) -> str:
        """"" (no slip), "random" or "broken"."""
        if not self.rate:
            return ""
        key = [request.episode_seed % 2**63, request.turn, zlib.crc32(request.role.encode("utf-8"))]
        roll = np.random.default_rng(key).random(2)
        return "" if roll[0] >= self.rate else ("random" if roll[1] < 0.5 else "broken")

    @staticmethod
    def _break(text: str) -> str:
        lines = text.splitlines()
        return "\n".join(lines[1:]) if len(lines) > 1 else text[: len(text) // 2]

    def generate(self, requests: Sequence[TurnRequest]) -> list[Completion]:
        out = []
        for request in requests:
            key = (request.episode, request.role)
            missed = self._missed.pop(key, None)
            if missed is not None:
                observation = {**request.observation, "text": f"{missed}\n{request.observation['text']}"}
                request = dataclasses.replace(request, observation=observation)
            slip = self._slip(request)
            if not slip:
                out += self.scripted.generate([request])
                continue
            self.slipped.add((request.episode, request.turn))
            self._missed[key] = str(request.observation["text"])
            if slip == "random":
                out += self.random.generate([request])
            else:
                [done] = self.scripted.generate([request])
                out.append(dataclasses.replace(done, text=self._break(done.text)) if not done.error else done)
        return out

    def end_episode(self, episode: str) -> None:
        self.scripted.end_episode(episode)
        self.random.end_episode(episode)
        for key in [k for k in self._missed if k[0] == episode]:
            del self._missed[key]


def _training_conversation(episode: Episode, role: str, slipped: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """One role's chat; its slips and any move the game rejected are marked ``train: False``."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": episode.briefs.get(role, "")}]
    for t in episode.turns:
        if t.role == role:
            learn = t.legal and (episode.id, t.index) not in slipped
            messages += [{"role": "user", "content": t.observation},
                         {"role": "assistant", "content": t.text, "train": learn}]
    return messages


def make_transcripts(section: DataSection, progress: Callable[[str, int, int], None] | None = None
                     ) -> list[list[dict[str, str]]]:
    """Conversations of scripted roles, over every game and variant (slips marked ``train: False``)."""
    scripted, randomer = SlippingScripted(section.slips), RandomPolicy()
    conversations: list[list[dict[str, str]]] = []
    rng = np.random.default_rng(section.seed)
    for v, (game_id, options, n) in enumerate(section.sources()):
        env = games.make(game_id, **options)
        plans = []
        for plan in make_plans(game_id, {r: "scripted" for r in env.roles}, n, seed=section.seed * 1000 + v,
                               options=options, prefix=f"{game_id}-v{v}"):
            roles = dict(plan.roles)
            if len(env.roles) > 1 and rng.random() < section.random_opponents:
                roles[env.roles[int(rng.integers(len(env.roles)))]] = "random"
            plans.append(type(plan)(plan.id, plan.game, plan.seed, roles, plan.options))
        rollout = BatchedRollout({"scripted": scripted, "random": randomer}, concurrency=64)
        for k, episode in enumerate(rollout.run(plans), 1):
            for role, agent in episode.roles.items():
                if agent == "scripted" and any(t.role == role for t in episode.turns):
                    conversations.append(_training_conversation(episode, role, scripted.slipped))
            if progress is not None and k % 100 == 0:
                progress(f"{game_id} #{v}", k, n)
    return conversations


# ----------------------------------------------------------------------- training
def _batches(lengths: list[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches whose padded size stays within ``batch_tokens``, in shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if current and longest_if * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if = [], lengths[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


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


def build_seed_model(scenario: SeedModelScenario, out: str | Path | None = None,
                     progress: Callable[[str, dict[str, Any]], None] | None = None,
                     evaluate: bool = True) -> dict[str, Any]:
    """Build the whole seed model; returns the build report (also written into the model card)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    out = Path(out or scenario.out)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"scenario": scenario.to_dict()}
    say = progress or (lambda stage, info: None)
    if scenario.train.threads:
        torch.set_num_threads(scenario.train.threads)

    conversations = make_transcripts(scenario.data, lambda what, k, n: say("data", {"what": what, "done": k, "of": n}))
    report["conversations"] = len(conversations)
    say("tokenizer", {"conversations": len(conversations)})
    texts = (m["content"] for c in conversations for m in c)
    tokenizer = build_tokenizer(texts, scenario.tokenizer.vocab_size)
    encoded = [conversation_ids(tokenizer, c) for c in conversations]
    limit = scenario.model.max_position_embeddings
    kept = [e for e in encoded if len(e[0]) <= limit]
    report["dropped_too_long"] = len(encoded) - len(kept)
    report["train_tokens"] = sum(len(ids) for ids, _ in kept)
    report["assistant_tokens"] = sum(sum(mask) for _, mask in kept)

    m = scenario.model
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
    rng = random.Random(t.seed)
    lengths = [len(ids) for ids, _ in kept]
    per_epoch = len(_batches(lengths, t.batch_tokens, random.Random(0)))
    total_steps = max(1, math.ceil(per_epoch * t.epochs))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=t.learning_rate, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < t.warmup_steps:
            return t.learning_rate * (step + 1) / t.warmup_steps
        frac = (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps)
        return t.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    model.train()
    step, seen_tokens, started = 0, 0, time.perf_counter()
    losses: list[float] = []
    curve: list[dict[str, float]] = []
    while step < total_steps:
        for batch in _batches(lengths, t.batch_tokens, rng):
            if step >= total_steps:
                break
            input_ids, attention, labels = _collate([kept[i] for i in batch], tokenizer.pad_token_id)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            seen_tokens += int(attention.sum())
            losses.append(float(loss.detach()))
            if step % 10 == 0 or step == total_steps:
                elapsed = time.perf_counter() - started
                point = {"step": step, "of": total_steps, "loss": sum(losses[-10:]) / len(losses[-10:]),
                         "tokens_per_s": seen_tokens / elapsed, "minutes": elapsed / 60}
                curve.append(point)
                say("train", point)
    model.eval()
    report.update(steps=step, final_loss=sum(losses[-20:]) / max(1, len(losses[-20:])),
                  train_minutes=(time.perf_counter() - started) / 60)

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
    return finish_report(out, scenario, progress) if evaluate else report


def finish_report(out: str | Path, scenario: SeedModelScenario,
                  progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Evaluate a built model and write its build report and model card."""
    out = Path(out)
    path = out / "build_report.json"
    if not path.is_file():
        raise ScenarioError(f"{out} has no build_report.json: build the model first")
    report = json.loads(path.read_text(encoding="utf-8"))
    (progress or (lambda stage, info: None))("eval", {})
    started = time.perf_counter()
    report["evaluation"] = evaluate_model(out, scenario.eval)
    report["eval_minutes"] = (time.perf_counter() - started) / 60
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card(report), encoding="utf-8")
    return report


# ----------------------------------------------------------------------- evaluation
#: Who the model plays in evaluation: (game, options, model roles); the other roles are scripted.
EVAL_SEATS: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...] = (
    ("negotiation-v0", {}, ("player_0",)),
    ("negotiation-v0", {}, ("player_1",)),
    ("refine-v0", {"tasks": "arithmetic", "difficulty": 1}, ("solver",)),
    ("refine-v0", {}, ("solver",)),
    ("refine-v0", {"protocol": "solver-critic-refiner", "tasks": "arithmetic", "difficulty": 1},
     ("solver", "critic", "refiner")),
    ("therapy-v0", {}, ("therapist",)),
    ("therapy-v0", {"guidance": "none", "exchanges": 2, "max_extra_exchanges": 0}, ("therapist",)),
    ("therapy-v0", {}, ("patient",)),
)


def evaluate_model(path: str | Path, section: EvalSection, seats=EVAL_SEATS) -> list[dict[str, Any]]:
    """Play the model against scripted players in each seat; legal-move rate and metrics per seat."""
    from agents.hf import TransformersPolicy
    from agents.sampling import SamplingConfig
    from arena.selfplay import summarise

    model = TransformersPolicy(f"hf:{path}", path, SamplingConfig(temperature=section.temperature, max_new_tokens=96))
    policies = {"model": model, "scripted": ScriptedPolicy()}
    rows = []
    for game_id, options, seats_taken in seats:
        roles = {r: ("model" if r in seats_taken else "scripted") for r in games.make(game_id, **options).roles}
        plans = make_plans(game_id, roles, section.episodes, section.seed, options, prefix=f"eval-{game_id}")
        episodes = list(BatchedRollout(policies, concurrency=32).run(plans))
        summary = summarise(episodes)
        model_turns = [t for e in episodes for t in e.turns if t.role in seats_taken]
        rows.append({
            "game": game_id, "options": options, "model_plays": list(seats_taken),
            "episodes": len(episodes), "model_legal_rate": sum(t.legal for t in model_turns) / max(1, len(model_turns)),
            "mean_scores": summary["mean_scores"], "metrics": summary.get("metrics", {}),
        })
    return rows


def _data_lines(data: dict[str, Any]) -> list[str]:
    if not data.get("mixes"):
        return [f"- {game}: {n} episodes (spread over the game's variants)" for game, n in data["episodes"].items()]
    return [f"- {m['game']} {json.dumps(m.get('options') or {})}: {m.get('episodes', 0)} episodes"
            for m in data["mixes"]]


def model_card(report: dict[str, Any]) -> str:
    """The seed model's README: data, size, how to rebuild it, and its measured scores."""
    s = report["scenario"]
    lines = [
        "# The seed model",
        "",
        "A small Llama-style chat model that socratic-arena trains from scratch on a CPU and ships as the",
        "embedded default agent (`seed`). It is a genuine but weak player of the project's games: it makes",
        "mostly legal moves and leaves plenty of room for self-play training to show improvement.",
        "",
        "## Rebuild",
        "",
        "```bash",
        "arena seed-model scenarios/seed-model.toml",
        "```",
        "",
        "## Data",
        "",
        "Transcripts of the games' scripted players"
        f" ({s['data']['random_opponents']:.0%} of the episodes with one random opponent;"
        f" {s['data'].get('slips', 0.0):.0%} of the scripted moves replaced by slips, left out of the loss, so that"
        " the model learns to recover when a move is rejected):",
        "",
        *_data_lines(s["data"]),
        "",
        f"giving {report['conversations']} role conversations, {report['train_tokens']:,} tokens of which",
        f"{report['assistant_tokens']:,} are trained on (what the role wrote). {report['dropped_too_long']}",
        "conversations longer than the context were left out.",
        "",
        "## Model",
        "",
        f"LlamaForCausalLM, {report['parameters']:,} parameters: hidden {s['model']['hidden_size']}, "
        f"{s['model']['num_layers']} layers, {s['model']['num_heads']} heads ({s['model']['num_kv_heads']} KV), "
        f"MLP {s['model']['intermediate_size']}, context {s['model']['max_position_embeddings']} tokens.",
        f"Byte-level BPE tokenizer with {s['tokenizer']['vocab_size']} tokens (digits split), chat template",
        "`<|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>`.",
        "",
        f"Trained {report['steps']} AdamW steps ({s['train']['epochs']} epochs, peak lr {s['train']['learning_rate']},",
        f"{s['train']['batch_tokens']} tokens a step) in {report['train_minutes']:.1f} minutes; final loss "
        f"{report['final_loss']:.3f}.",
        "",
        "## Measured against scripted players",
        "",
        f"Held-out seeds, {s['eval']['episodes']} episodes per row, sampling temperature {s['eval']['temperature']}.",
        "",
        "| game | options | model plays | legal moves | key metrics |",
        "|---|---|---|---|---|",
    ]
    keys = ("agreement", "raw_score_player_0", "raw_score_player_1", "acc_t1", "acc_t2", "delta_t1_t2",
            "critic_accuracy", "diagnosis_correct", "symptom_f1", "patient_consistency")
    for row in report["evaluation"]:
        metrics = ", ".join(f"{k} {row['metrics'][k]:.2f}" for k in keys if k in row["metrics"])
        lines.append(f"| {row['game']} | {json.dumps(row['options']) if row['options'] else '-'} | "
                     f"{', '.join(row['model_plays'])} | {row['model_legal_rate']:.1%} | {metrics} |")
    lines += ["", "This is a research artefact: the therapy game is a simulation, not a clinical tool.", ""]
    return "\n".join(lines)
