"""The seed model's evaluation and model card: who it plays against scripted players, and the README it ships with.

``evaluate_model`` plays the model in each :data:`EVAL_SEATS` seat; ``model_card`` turns a build report
into the card. A seat may be *held out*: a setting kept out of the seed's data on purpose (the training
runs of docs/results.md start there), reported without the legal-move bar (:data:`LEGAL_BAR`) that the
settings the model was built on must pass; ``in_data`` checks that claim against the build's data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import games
from agents.hf import TransformersPolicy
from agents.rule_based import ScriptedPolicy
from agents.sampling import SamplingConfig
from arena.play.batched import BatchedRollout, make_plans
from arena.play.summary import summarise
from arena.seed.scenario import SeedEvalSection

__all__ = ["Seat", "EVAL_SEATS", "LEGAL_BAR", "evaluate_model", "in_data", "model_card"]


class Seat(NamedTuple):
    """One row of the model card: the model plays ``roles`` of ``game`` with ``options``, scripted players the rest.

    A ``held_out`` seat is a setting deliberately kept out of the seed model's data: the training runs of
    docs/results.md start there, so the card shows where training has room to improve. It is reported but
    not held to the legal-move bar that the settings the model was built on must pass.
    """

    game: str
    options: dict[str, Any]
    roles: tuple[str, ...]
    held_out: bool = False


#: Who the model plays in evaluation; the other roles are scripted.
EVAL_SEATS: tuple[Seat, ...] = (
    Seat("negotiation-v0", {}, ("player_0",)),
    Seat("negotiation-v0", {}, ("player_1",)),
    Seat("refine-v0", {"tasks": "arithmetic", "difficulty": 1}, ("solver",)),
    Seat("refine-v0", {}, ("solver",)),
    Seat("refine-v0", {"protocol": "solver-critic-refiner", "tasks": "arithmetic", "difficulty": 1},
         ("solver", "critic", "refiner")),
    Seat("therapy-v0", {}, ("therapist",)),
    # scenarios/train-therapy-pg.toml's setting: the therapist must diagnose after two exchanges.
    Seat("therapy-v0", {"guidance": "none", "exchanges": 2, "max_extra_exchanges": 0}, ("therapist",),
         held_out=True),
    Seat("therapy-v0", {}, ("patient",)),
)

#: The share of the model's moves that must be legal in every seat it was built on (tests/test_seed_model.py).
LEGAL_BAR = 0.9


def evaluate_model(path: str | Path, section: SeedEvalSection, seats=EVAL_SEATS,
                   data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Play the model against scripted players in each seat; legal-move rate and metrics per seat.

    ``data`` is the build's data section: a held-out seat that it covers after all is reported as not held out."""
    model = TransformersPolicy(f"hf:{path}", path, SamplingConfig(temperature=section.temperature, max_new_tokens=96))
    policies = {"model": model, "scripted": ScriptedPolicy()}
    rows = []
    for seat in seats:
        roles = {r: ("model" if r in seat.roles else "scripted") for r in games.make(seat.game, **seat.options).roles}
        plans = make_plans(seat.game, roles, section.episodes, section.seed, seat.options, prefix=f"eval-{seat.game}")
        episodes = list(BatchedRollout(policies, concurrency=32).run(plans))
        summary = summarise(episodes)
        model_turns = [t for e in episodes for t in e.turns if t.role in seat.roles]
        rows.append({
            "game": seat.game, "options": seat.options, "model_plays": list(seat.roles),
            "held_out": seat.held_out and not (data is not None and in_data(data, seat.game, seat.options)),
            "episodes": len(episodes), "model_legal_rate": sum(t.legal for t in model_turns) / max(1, len(model_turns)),
            "mean_scores": summary["mean_scores"], "metrics": summary.get("metrics", {}),
        })
    return rows


def in_data(data: dict[str, Any], game: str, options: dict[str, Any]) -> bool:
    """Whether a build's data (``report["scenario"]["data"]``) has episodes of ``game`` with ``options``
    (compared after filling in the game's defaults). Data given as ``episodes`` per game covers all of a game's
    variants."""
    if not data.get("mixes"):
        return game in data.get("episodes", {})
    wanted = games.make(game, **options).options
    return any(m["game"] == game and m.get("episodes", 0) > 0 and games.make(game, **(m.get("options") or {})).options
               == wanted for m in data["mixes"])


def _data_lines(data: dict[str, Any]) -> list[str]:
    if not data.get("mixes"):
        return [f"- {game}: {n} episodes (spread over the game's variants)" for game, n in data["episodes"].items()]
    return [f"- {m['game']} {json.dumps(m.get('options') or {})}: {m.get('episodes', 0)} episodes"
            for m in data["mixes"]]


def model_card(report: dict[str, Any]) -> str:
    """The seed model's README: data, size, how to rebuild it, and its measured scores."""
    s = report["scenario"]
    bf16 = ", bfloat16 autocast" if s["train"].get("precision") == "bf16" else ""
    lines = [
        "# The seed model",
        "",
        "A small Llama-style chat model that socratic-arena trains from scratch on a CPU, from transcripts of",
        "its games' scripted players. The one in agents/seed_model is the embedded default agent (`seed`): a",
        "genuine but weak player that makes mostly legal moves and leaves room for self-play training to show",
        "improvement (docs/results.md). The rows below say how well this one plays.",
        "",
        "## Rebuild",
        "",
        "```bash",
        f"arena seed-model {report.get('scenario_file', 'scenarios/seed-model.toml')}",
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
        f"{s['train']['batch_tokens']} tokens a step{bf16}) in {report['train_minutes']:.1f} minutes; final loss "
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
        options = json.dumps(row["options"]) if row["options"] else "-"
        options += " (held out)" if row.get("held_out") else ""
        lines.append(f"| {row['game']} | {options} | "
                     f"{', '.join(row['model_plays'])} | {row['model_legal_rate']:.1%} | {metrics} |")
    if any(row.get("held_out") for row in report["evaluation"]):
        lines += ["", "A row marked *held out* is a setting kept out of the training data on purpose: the training",
                  "runs of docs/results.md start there, so it shows the room they have. The other rows are settings",
                  f"the model was built on; the tests hold each of them to at least {LEGAL_BAR:.0%} legal moves."]
    lines += ["", "This is a research artefact: the therapy game is a simulation, not a clinical tool.", ""]
    return "\n".join(lines)
