"""The seed-model scenario: its data, tokenizer, model shape, training and evaluation sections.

    arena seed-model scenarios/seed-model.toml
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arena.config import ScenarioError, Section, read_toml
from arena.seed.data import DataSection
from games.options import Config, option

__all__ = ["SeedEvalSection", "ModelSection", "SeedModelScenario", "TokenizerSection", "TrainSection",
           "load_seed_scenario"]


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
    precision: str = option(
        "fp32", "fp32, or bf16: bfloat16 autocast for the forward and backward passes, the weights and optimiser "
        "state stay fp32 (measured 1.2-1.3x faster for a 4.9M-parameter build on a CPU with AVX512-BF16, with the "
        "same losses as fp32 over its first 300 steps; 10-15x slower on CPUs without: the build warns)",
        choices=("fp32", "bf16"))
    checkpoint_every: int = option(200, "save a resumable checkpoint (OUT/checkpoint: model, optimiser, data "
                                   "position) every this many steps; 0: never", min=0)


@dataclass(frozen=True)
class SeedEvalSection(Section):
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
    eval: SeedEvalSection = option(SeedEvalSection(), "evaluation against scripted players")
    out: str = option("agents/seed_model", "where to save the model (save_pretrained format)")


def load_seed_scenario(path: str | Path) -> SeedModelScenario:
    """Read and check a seed-model scenario file."""
    data = read_toml(path)
    try:
        return SeedModelScenario.from_mapping(data, source=str(path))
    except ScenarioError:
        raise
    except Exception as err:
        raise ScenarioError(str(err)) from None
