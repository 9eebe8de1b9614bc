"""A tiny Llama chat model and tokenizer, built locally in seconds (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch

from agents.chat_format import build_tokenizer

CORPUS = [
    "I suggest I take 1 book, 0 hats, 1 ball and you take the rest.",
    "[propose] (1 book, 2 hats, 0 balls)",
    "Step 1: 12 + 7 = 19\nFinal Answer: 19",
    "Verdict: correct",
    "How have you been sleeping? Symptoms: insomnia; fatigue",
    "Diagnosis: major depressive disorder\nPlan: behavioural activation",
    "Rating: 7. It sounds right for me.",
] * 20


def build_tiny_model(folder: Path, seed: int = 0, vocab_size: int = 400) -> Path:
    """Save a randomly initialised 2-layer Llama with the project's chat format to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(CORPUS, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
