"""The chat format of the project's own models: a byte-level BPE tokenizer and a plain chat template.

A conversation renders as ``<|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>``.
Each special token stands alone, so a conversation's token ids are the
concatenation of its messages' ids: :func:`conversation_ids` builds them and
marks which tokens the assistant wrote (the ones a model is trained on).
Digits are split one per token, which small models need for arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tokenizer", "conversation_ids"]

SPECIAL_TOKENS = ("<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<|pad|>", eos_token="<|end|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def conversation_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and a 0/1 mask of the tokens the assistant wrote (with their <|end|>)."""
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    ids: list[int] = []
    mask: list[int] = []
    for message in messages:
        role = tokenizer.convert_tokens_to_ids(f"<|{message['role']}|>")
        body = tokenizer(message["content"], add_special_tokens=False)["input_ids"]
        mine = int(message["role"] == "assistant")
        ids += [role, *body, end]
        mask += [0] + [mine] * (len(body) + 1)
    return ids, mask
