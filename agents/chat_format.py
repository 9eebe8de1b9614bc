"""The chat format of the project's own models: a byte-level BPE tokenizer and a plain chat template.

A conversation renders as ``<|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>``.
Each special token stands alone, so a conversation's token ids are the
concatenation of its messages' ids: :func:`conversation_ids` builds them and
marks which tokens the assistant wrote (the ones a model is trained on).
Digits are split one per token, which small models need for arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["CHAT_TEMPLATE", "END_OF_TURN", "SPECIAL_TOKENS", "ChatPrompts", "build_tokenizer", "conversation_ids",
           "conversation_tokens"]

#: Tokens that end an assistant turn in common chat templates (the seed model's, Llama 3's, ChatML, Gemma).
END_OF_TURN = ("<|end|>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>", "</s>", "<end_of_turn>")

SPECIAL_TOKENS = ("<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a transformers tokenizer."""
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


def conversation_ids(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and a 0/1 mask of the tokens the assistant wrote (with the token that
    ends its turn), for turns known only as text (scripted players, stored data sets).

    An assistant message with ``"train": False`` stays in the context but out of the mask. The project's own
    format is built message by message; any other chat template through :func:`conversation_tokens`, each
    assistant turn being its text's ids and the id that ends a turn under that template (:func:`turn_end_ids`).
    """
    if tokenizer.chat_template != CHAT_TEMPLATE:
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        first = next((i for i, m in enumerate(plain) if m["role"] == "assistant"), len(plain))
        end = turn_end_ids(tokenizer, plain[:first])
        turns = [_encode(tokenizer, m["content"]) + end for m in messages if m["role"] == "assistant"]
        ids, spans, _ = conversation_tokens(tokenizer, plain, turns, end)
        mask = [0] * len(ids)
        trained = [m.get("train", True) for m in messages if m["role"] == "assistant"]
        for (a, b), train in zip(spans, trained):
            mask[a:b] = [int(train)] * (b - a)
        return ids, mask
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    ids: list[int] = []
    mask: list[int] = []
    for message in messages:
        role = tokenizer.convert_tokens_to_ids(f"<|{message['role']}|>")
        body = tokenizer(message["content"], add_special_tokens=False)["input_ids"]
        mine = int(message["role"] == "assistant" and message.get("train", True))
        ids += [role, *body, end]
        mask += [0] + [mine] * (len(body) + 1)
    return ids, mask


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


#: Stands for an assistant message's text when finding what the template writes after it.
_MARK = "\u2063turn-body\u2063"


def _closing(tokenizer: Any, before: Sequence[dict[str, str]]) -> str | None:
    """The text the chat template writes after an assistant message's content (ChatML: ``<|im_end|>`` and a
    newline; the seed model's: ``<|end|>``), or None when it cannot be told (the template alters the text)."""
    text = _render(tokenizer, [*before, {"role": "assistant", "content": _MARK}], False)
    return text.split(_MARK, 1)[1] if text.count(_MARK) == 1 else None


def conversation_tokens(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    sampled: Sequence[Sequence[int] | None],
    end_ids: Sequence[int] = (),
) -> tuple[list[int], list[tuple[int, int]], bool]:
    """Token ids of a chat in which each assistant turn is exactly the ids that were sampled for it.

    ``messages`` alternate as a role saw them (system, user, assistant, user, ...); ``sampled`` holds the
    sampled ids of each assistant message, in order. The text between assistant turns comes from the chat
    template; each assistant turn is its sampled ids, followed by what the template writes after a turn that
    the sampled ids lack: after a turn that ended with one of ``end_ids``, the rest of the template's
    closing (ChatML's newline after ``<|im_end|>``); after a turn cut at the length limit, the whole closing.
    If the chat ends with a user message, the result ends with the generation prompt.

    Returns ``(ids, spans, exact)``: ``spans`` are the ``[start, end)`` positions of the assistant turns;
    ``exact`` is False when the template rewrites earlier turns (rendering is not incremental) or a turn
    has no sampled ids, and the ids fall back to tokenising the rendered text (token drift possible).
    """
    assistant_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    ends_with_prompt = messages[-1]["role"] != "assistant"
    if len(sampled) != len(assistant_at) or any(s is None for s in sampled):
        return _text_fallback(tokenizer, messages, ends_with_prompt)
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    done_text = ""
    start = 0
    for turn, at in enumerate(assistant_at):
        head = _render(tokenizer, messages[:at], True)
        if not head.startswith(done_text):
            return _text_fallback(tokenizer, messages, ends_with_prompt)
        ids += _encode(tokenizer, head[len(done_text):])
        own = list(sampled[turn])  # type: ignore[arg-type]
        spans.append((len(ids), len(ids) + len(own)))  # only what was sampled is the turn's own
        ids += own
        ids += _after_turn(tokenizer, messages[:at], own, end_ids)
        done_text = _render(tokenizer, messages[:at + 1], False)
        start = at + 1
    if ends_with_prompt:
        tail = _render(tokenizer, messages, True)
        if not tail.startswith(done_text):
            return _text_fallback(tokenizer, messages, ends_with_prompt)
        ids += _encode(tokenizer, tail[len(done_text):])
    elif start != len(messages):
        return _text_fallback(tokenizer, messages, ends_with_prompt)
    return ids, spans, True


def _after_turn(tokenizer: Any, before: Sequence[dict[str, str]], own: Sequence[int], end_ids: Sequence[int]
                ) -> list[int]:
    """The ids that close a sampled assistant turn as the template would (see :func:`conversation_tokens`).

    A turn is closed by the model when it ends with one of ``end_ids``, or with a special token the
    template's closing begins with (Llama 3's ``<|eot_id|>``, Gemma's ``<end_of_turn>``, when the
    tokenizer's end-of-sequence token is another)."""
    closing = _closing(tokenizer, before)
    last = own[-1] if own else None
    stop = tokenizer.decode([last]) if last is not None else ""
    closed = last is not None and (last in end_ids or (
        closing is not None and last in set(tokenizer.all_special_ids) | _added_special(tokenizer)
        and bool(stop) and closing.startswith(stop)))
    if closing is None:  # the template's closing cannot be told apart: the end id alone, as the model stops
        return [] if closed or not end_ids else list(end_ids)
    if not closed:
        return _encode(tokenizer, closing)  # cut at the length limit: the template closes the turn
    return _encode(tokenizer, closing[len(stop):]) if closing.startswith(stop) else []


def _added_special(tokenizer: Any) -> set[int]:
    return {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}


def turn_end_ids(tokenizer: Any, before: Sequence[dict[str, str]] = ()) -> list[int]:
    """The id a model writes to end its turn under its template: the special token the template's closing
    begins with (ChatML's ``<|im_end|>``, Gemma's ``<end_of_turn>``), else the end-of-sequence id."""
    closing = _closing(tokenizer, list(before) or [{"role": "user", "content": "?"}])
    first = _encode(tokenizer, closing)[:1] if closing else []
    if first and first[0] in set(tokenizer.all_special_ids) | _added_special(tokenizer):
        return first
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def _text_fallback(tokenizer: Any, messages: Sequence[dict[str, str]], prompt: bool
                   ) -> tuple[list[int], list[tuple[int, int]], bool]:
    ids = _encode(tokenizer, _render(tokenizer, messages, prompt))
    return ids, [], False


class ChatPrompts:
    """What every model backend does with one tokenizer: a role's chat as prompt ids (earlier turns as the
    exact ids that were sampled), the ids that end a turn, and a completion's text.

    ``extra_eos``: end ids the model's generation config adds to the tokenizer's own.
    """

    def __init__(self, tokenizer: Any, extra_eos: int | Sequence[int] | None = None):
        self.tokenizer = tokenizer
        self.special = [t for t in tokenizer.all_special_tokens if t] + [
            t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)
        ]
        eos = tokenizer.eos_token_id
        self.end_ids = [int(eos)] if eos is not None else []
        stop = set(self.end_ids)
        for e in extra_eos if isinstance(extra_eos, (list, tuple)) else [extra_eos]:
            if e is not None:
                stop.add(int(e))
        vocab = tokenizer.get_vocab()
        stop.update(vocab[t] for t in END_OF_TURN if t in vocab)
        self.stop_ids = stop

    def clean(self, text: str) -> str:
        """Game text must not smuggle in control tokens (a player typing '<|end|>')."""
        for token in self.special:
            if token in text:
                text = text.replace(token, "")
        return text

    def encode(self, messages: Sequence[Mapping[str, str]], history_ids: Sequence[Sequence[int] | None] | None = None
               ) -> tuple[list[int], bool]:
        """The prompt ids of a chat, ending with the assistant's generation prompt, and whether they are exact.

        With ``history_ids`` (the ids sampled at the role's earlier turns) those turns enter the prompt as
        exactly those ids (:func:`conversation_tokens`): no token drift. ``exact`` is False when the template
        is not incremental and earlier turns had to be re-tokenised.
        """
        safe = [{"role": m["role"], "content": self.clean(m["content"])} for m in messages]
        if history_ids:
            ids, _, exact = conversation_tokens(self.tokenizer, safe, history_ids, self.end_ids)
            return ids, exact
        text = self.tokenizer.apply_chat_template(safe, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"], True

    def text(self, ids: Sequence[int]) -> str:
        """A completion's text: its ids without the token that ended the turn, special tokens dropped."""
        body = list(ids[:-1]) if ids and ids[-1] in self.stop_ids else list(ids)
        return self.tokenizer.decode(body, skip_special_tokens=True)

