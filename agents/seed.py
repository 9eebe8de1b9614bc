"""The shipped seed model: where it lives and how to tell whether it is built.

The seed model is a small Llama-style chat model that the project trains
itself on its games (``arena seed-model scenarios/seed-model.toml``) and ships
in ``agents/seed_model/`` in ``save_pretrained`` format, with a model card.
The agent spec ``seed`` loads it.
"""

from __future__ import annotations

from pathlib import Path

from agents.base import PolicyError

__all__ = ["SEED_MODEL_DIR", "seed_model_dir"]

SEED_MODEL_DIR = Path(__file__).resolve().parent / "seed_model"


def seed_model_dir() -> Path:
    """The seed model's directory; a clear error if it has not been built."""
    if not (SEED_MODEL_DIR / "config.json").is_file() or not any(SEED_MODEL_DIR.glob("*.safetensors")):
        raise PolicyError(
            f"the seed model is not built in {SEED_MODEL_DIR}; build it with "
            "`arena seed-model scenarios/seed-model.toml`"
        )
    return SEED_MODEL_DIR
