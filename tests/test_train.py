"""The trainer on a tiny model: every algorithm runs end to end, writes its outputs, and resumes exactly."""

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import agents
from arena.cli import app
from arena.config import ScenarioError
from arena.play.batched import BatchedRollout, make_plans
from arena.play.store import EpisodeStore
from arena.train.algorithms import load_train_scenario, train
from arena.train.bc import select
from arena.train.data import RoleSequence
from arena.train.score import attempt_values

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


TALK_GAME = Path(__file__).with_name("train_game.py")


def _scenario(tmp_path, tiny, algorithm, extra="", game='id = "talk-test-v0"', roles='speaker = "policy"'):
    path = tmp_path / "train.toml"
    path.write_text(f"""
plugins = ["{TALK_GAME}"]
[model]
init = "hf:{tiny}"
[game]
{game}
[roles]
{roles}
[algorithm]
{algorithm}
{extra}
[sampling]
max_new_tokens = 16
[eval]
episodes = 4
every = 2
[run]
seed = 3
checkpoint_every = 1
concurrency = 16
wandb = "disabled"
""")
    return path


PG = 'name = "pg"\nestimator = "rloo"\niterations = 3\ngroups = 2\ngroup_size = 2\nlearning_rate = 1e-3'
SCORE = ('name = "score"\nstage1_iterations = 1\nstage2_iterations = 1\ngroups = 2\ngroup_size = 2\n'
         'learning_rate = 1e-3\nstage2_learning_rate = 2e-4')


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_policy_gradient_end_to_end(tmp_path, tiny_model_dir):
    scenario = load_train_scenario(_scenario(tmp_path, tiny_model_dir, PG), out=str(tmp_path / "pg"))
    result = train(scenario, wandb=False)
    out = Path(result["out"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for key in ("loss", "kl", "entropy", "zero_variance_share", "policy_legal_rate", "all_legal_rate", "score/speaker",
                "game/second_length"):
        assert key in rows[-1], key
    # where each iteration's time went (evaluations are timed apart, in eval.json)
    assert all(r["seconds/play"] > 0 and r["seconds/update"] > 0 for r in rows)
    assert sum(r["seconds/play"] + r["seconds/update"] for r in rows) <= rows[-1]["minutes"] * 60
    evals = json.loads((out / "eval.json").read_text())
    assert all(e["seconds"] > 0 for e in evals["evaluations"])
    assert [e["label"] for e in evals["evaluations"]] == ["before", "during", "after"]
    assert "speaker" in evals["after"]["seats"] and (out / "curves.png").stat().st_size > 0
    seat = evals["after"]["seats"]["speaker"]
    assert seat["episodes"] == scenario.eval.episodes and seat["policy_score_se"] >= 0
    policy = agents.load(f"hf:{out / 'final'}")
    assert policy.tokenizer.chat_template
    assert _digest(out / "final") != _digest(tiny_model_dir), "the weights moved"


def test_score_and_self_play_roles(tmp_path, tiny_model_dir):
    scenario = load_train_scenario(_scenario(tmp_path, tiny_model_dir, SCORE), out=str(tmp_path / "score"))
    rows = train(scenario, wandb=False)
    metrics = [json.loads(line) for line in (Path(rows["out"]) / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [1.0, 2.0]
    saved = torch.load(Path(rows["out"], "checkpoints", "iter-00002", "trainer_state.pt"), weights_only=False)
    assert saved["state"]["optimizer"]["param_groups"][0]["lr"] == 2e-4, "stage II runs at its own learning rate"
    # two roles sharing one model (self-play) with role-conditioned baselines
    selfplay = _scenario(tmp_path, tiny_model_dir, 'name = "pg"\nestimator = "reinforce"\niterations = 1\n'
                         'groups = 2\ngroup_size = 1', game='id = "negotiation-v0"\noptions = { max_messages = 4 }',
                         roles='player_0 = "policy"\nplayer_1 = "policy"')
    result = train(load_train_scenario(selfplay, out=str(tmp_path / "selfplay")), wandb=False)
    assert set(json.loads(Path(result["out"], "eval.json").read_text())["after"]["seats"]) == {"player_0",
                                                                                                "player_1"}


def test_lora_trains_adapters_only_and_saves_a_plain_model(tmp_path, tiny_model_dir):
    pytest.importorskip("peft", reason="LoRA needs peft (the `lora` or `dev` extra)")
    from safetensors.torch import load_file

    path = _scenario(tmp_path, tiny_model_dir, PG.replace("iterations = 3", "iterations = 2"))
    path.write_text(path.read_text().replace(f'init = "hf:{tiny_model_dir}"',
                                             f'init = "hf:{tiny_model_dir}"\nlora = {{ r = 4, alpha = 8 }}'))
    scenario = load_train_scenario(path, out=str(tmp_path / "lora"))
    assert scenario.lora is not None and scenario.lora.r == 4
    result = train(scenario, wandb=False)
    out = Path(result["out"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2] and all(r["kl"] >= -1e-6 for r in rows)
    final = load_file(out / "final" / "model.safetensors")
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert not any("lora" in k for k in final), "adapters are merged into a plain model"
    assert set(final) == set(base)
    moved = [k for k in base if not torch.equal(base[k], final[k])]
    assert moved and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj")) for k in moved), moved
    assert agents.load(f"hf:{out / 'final'}").tokenizer.chat_template


def test_attempt_values_follow_score_stages():
    assert attempt_values([1.0, 0.0], stage=1, alpha=10) == [0.0, 0.0]
    assert attempt_values([0.0, 1.0], stage=1, alpha=10) == [0.0, 1.0]
    assert attempt_values([0.0, 1.0], stage=2, alpha=10) == [0.0, 11.0]
    assert attempt_values([1.0, 0.0], stage=2, alpha=10) == [1.0, -10.0]
    assert attempt_values([0.0, 0.0, 1.0], stage=2, alpha=10) == [0.0, 0.0, 11.0]


def _seq(role, score):
    return RoleSequence("e", "g", role, 0, [1, 2], [(1, 2)], [score], [score], score, True)


def test_filters_choose_per_role():
    seqs = [_seq("a", s) for s in (0, 1, 2, 3)] + [_seq("b", s) for s in (0, 0, 5)]
    assert sorted(s.score for s in select(seqs, "above-mean") if s.role == "a") == [2, 3]
    assert [s.score for s in select(seqs, "above-mean") if s.role == "b"] == [5]
    assert len(select(seqs, "non-zero")) == 4
    assert sorted(s.score for s in select(seqs, "top-k", 0.5) if s.role == "a") == [2, 3]


def test_filtered_bc_from_stored_episodes_lowers_the_loss(tmp_path, tiny_model_dir):
    policies = {"scripted": agents.load("scripted")}
    with EpisodeStore(tmp_path / "data").open() as store:
        for e in BatchedRollout(policies, 16).run(make_plans("refine-v0", {"solver": "scripted"}, 24, seed=9)):
            store.append(e)
    extra = f'[data]\nepisodes = ["{tmp_path / "data" / "episodes.jsonl"}"]'
    bc = 'name = "filtered-bc"\nrounds = 3\nfilter = "non-zero"\nepochs = 2\nlearning_rate = 3e-3'
    path = _scenario(tmp_path, tiny_model_dir, bc, extra, game='id = "refine-v0"', roles='solver = "policy"')
    result = train(load_train_scenario(path, out=str(tmp_path / "bc")), wandb=False)
    rows = [json.loads(line) for line in (Path(result["out"]) / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[0]["kept"] > 0


@pytest.mark.parametrize("lengths", ["algorithm.iterations=0", "algorithm.rounds=0",
                                     "algorithm.stage1_iterations=0 algorithm.stage2_iterations=0"])
def test_zero_iterations_only_evaluate_the_starting_model_once(tmp_path, tiny_model_dir, lengths):
    algorithm = {"iterations": PG, "rounds": 'name = "filtered-bc"\nrounds = 2', "stage1_iterations": SCORE}
    path = _scenario(tmp_path, tiny_model_dir, algorithm[lengths.split("=")[0].split(".")[1]])
    out = tmp_path / "eval-only"
    sets = [arg for pair in lengths.split() for arg in ("--set", pair)]
    result = runner.invoke(app, ["train", str(path), "--out", str(out), "--no-wandb", *sets])
    assert result.exit_code == 0, result.output
    assert "no training iteration ran, the same model as 'before'" in result.output
    evals = json.loads((out / "eval.json").read_text())
    assert [e["label"] for e in evals["evaluations"]] == ["before", "after"], "played once, not twice"
    assert evals["after"]["same_as"] == "before" and evals["after"]["seats"] == evals["before"]["seats"]
    assert _digest(out / "final") == _digest(tiny_model_dir), "nothing was trained"


@pytest.mark.parametrize("algorithm,message", [
    ('name = "ppo"', "one of filtered-bc, pg, score"),
    ('name = "pg"\nitertions = 3', "Did you mean 'iterations'"),
    ('name = "pg"\nestimator = "rloo"\ngroup_size = 1', "group_size to 2 or more"),
])
def test_bad_training_scenarios(tmp_path, tiny_model_dir, algorithm, message):
    with pytest.raises(ScenarioError, match=message):
        load_train_scenario(_scenario(tmp_path, tiny_model_dir, algorithm))


def test_a_role_must_be_trained_and_data_needs_bc(tmp_path, tiny_model_dir):
    with pytest.raises(ScenarioError, match="no role is played by"):
        load_train_scenario(_scenario(tmp_path, tiny_model_dir, PG, roles='speaker = "scripted"'))
    path = _scenario(tmp_path, tiny_model_dir, PG, extra='[data]\nepisodes = ["x.jsonl"]')
    with pytest.raises(ScenarioError, match='needs name = "filtered-bc"'):
        load_train_scenario(path)


def test_an_existing_run_needs_resume(tmp_path, tiny_model_dir):
    path = _scenario(tmp_path, tiny_model_dir, PG.replace("iterations = 3", "iterations = 1"))
    out = tmp_path / "again"
    assert runner.invoke(app, ["train", str(path), "--out", str(out), "--no-wandb"]).exit_code == 0
    result = runner.invoke(app, ["train", str(path), "--out", str(out), "--no-wandb"])
    assert result.exit_code == 2 and "--resume" in result.output


@pytest.mark.timeout(900)
def test_kill_9_and_resume_continues_the_same_run(tmp_path, tiny_model_dir):
    path = _scenario(tmp_path, tiny_model_dir, PG.replace("iterations = 3", "iterations = 4"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "arena", "train", str(path), "--no-wandb", "--out"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = subprocess.run(cmd + [str(whole)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    proc = subprocess.Popen(cmd + [str(broken)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = broken / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["iteration"] >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (broken / "final").exists(), "the run should have been killed part-way"
    done = subprocess.run(cmd + [str(broken), "--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert _digest(broken / "final") == _digest(whole / "final")
    rows = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows(broken)] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows(broken)] == [r["loss"] for r in rows(whole)]


def test_resume_can_raise_the_iterations_to_train_longer(tmp_path, tiny_model_dir):
    """A finished 2-iteration run, resumed with iterations = 4, ends exactly where a 4-iteration run ends."""
    path = _scenario(tmp_path, tiny_model_dir, PG.replace("iterations = 3", "iterations = 2"))
    short, whole = tmp_path / "short", tmp_path / "whole"
    args = lambda out, *more: ["train", str(path), "--out", str(out), "--no-wandb", *more]
    assert runner.invoke(app, args(short)).exit_code == 0
    result = runner.invoke(app, args(short, "--resume", "--set", "algorithm.iterations=4"))
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, args(whole, "--set", "algorithm.iterations=4")).exit_code == 0
    assert _digest(short / "final") == _digest(whole / "final")
    rows = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows(short)] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows(short)] == [r["loss"] for r in rows(whole)]
    minutes = [r["minutes"] for r in rows(short)]  # training time counts on across the resume
    assert minutes == sorted(minutes) and minutes[2] > minutes[1]
    evals = json.loads((short / "eval.json").read_text())  # the short run's last evaluation is now one on the way
    assert [(r["label"], r["iteration"]) for r in evals["evaluations"]] == [("before", 0), ("during", 2),
                                                                            ("after", 4)]
    assert evals["after"]["seats"] == json.loads((whole / "eval.json").read_text())["after"]["seats"]
    # lowering it, or changing anything else, is refused and leaves the run as it was
    result = runner.invoke(app, args(short, "--resume", "--set", "algorithm.iterations=3"))
    assert result.exit_code == 2 and "not lower" in result.output
    result = runner.invoke(app, args(short, "--resume", "--set", "algorithm.learning_rate=0.5"))
    assert result.exit_code == 2 and "different settings (algorithm_config)" in result.output
    assert [r["iteration"] for r in rows(short)] == [1, 2, 3, 4]

def test_above_mean_by_setup_compares_plays_of_one_setup():
    """A side on a set-up that suits it (high scores for every play) is kept only if it beat its own set-up."""
    def seq(seed, score):
        return RoleSequence("e", "g", "a", seed, [1, 2], [(1, 2)], [score], [score], score, True)

    seqs = [seq(1, s) for s in (8, 9, 9, 10)] + [seq(2, s) for s in (1, 2, 3, 3)]
    assert sorted(s.score for s in select(seqs, "above-mean")) == [8, 9, 9, 10]  # the round's mean is 5.6
    assert sorted((s.seed, s.score) for s in select(seqs, "above-mean", by_setup=True)) == [(1, 10), (2, 3), (2, 3)]


def test_bf16_gradient_steps_match_fp32_closely(tmp_path, tiny_model_dir):
    """``[run] precision = "bf16"``: the same first step as fp32 up to bfloat16 rounding; the weights move."""
    runs = {}
    for precision in ("fp32", "bf16"):
        path = _scenario(tmp_path, tiny_model_dir, PG.replace("iterations = 3", "iterations = 1"))
        path.write_text(path.read_text().replace("[run]\n", f'[run]\nprecision = "{precision}"\n'))
        scenario = load_train_scenario(path, out=str(tmp_path / precision))
        assert scenario.run.precision == precision
        result = train(scenario, wandb=False)
        runs[precision] = json.loads((Path(result["out"]) / "metrics.jsonl").read_text().splitlines()[0])
        assert _digest(Path(result["out"]) / "final") != _digest(tiny_model_dir)
    assert runs["bf16"]["trained_tokens"] == runs["fp32"]["trained_tokens"]  # the same rollouts (played in fp32)
    assert runs["bf16"]["entropy"] == pytest.approx(runs["fp32"]["entropy"], rel=0.05)
    assert runs["bf16"]["grad_norm"] == pytest.approx(runs["fp32"]["grad_norm"], rel=0.2)
    assert runs["bf16"]["grad_norm"] != runs["fp32"]["grad_norm"]  # ... but not fp32's: autocast was on


def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch, caplog):
    import arena.train.model as model_module

    assert model_module.cpu_has_bf16("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n") is False
    assert model_module.cpu_has_bf16("flags\t\t: fpu avx512f avx512_bf16\n") is True
    assert model_module.cpu_has_bf16("Features\t: fp asimd sve bf16\n") is True  # Arm
    assert model_module.cpu_has_bf16("processor\t: 0\n") is None  # cannot tell: no warning
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert "10-15x slower" in model_module.check_precision("bf16")
    assert "use precision = \"fp32\"" in caplog.text
    assert model_module.check_precision("fp32") is None and model_module.check_precision("bf16", "cuda") is None
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: None)
    assert model_module.check_precision("bf16") is None


def test_curves_keep_counts_out_of_the_rates_panel():
    from arena.train.curves import _rates

    evals = [{"iteration": i, "seats": {"solver": {"metrics": {"acc_t2": 0.1 * (i + 1), "illegal_moves": 0.5 / (i + 1),
                                                               "messages": 4.0 + i, "rounds": 1.0}}}} for i in range(3)]
    assert set(_rates(evals, "solver")) == {"acc_t2", "illegal_moves"}  # in [-1, 1] and changing
    assert set(_rates(evals, "solver", counts={"illegal_moves"})) == {"acc_t2"}


def test_lora_weights_pushed_to_an_engine_are_the_merged_model_and_leave_the_base_alone(tiny_model_dir):
    import copy  # peft comes with the dev extra

    from agents.sampling import SamplingConfig
    from arena.train.model import LoraSettings, TrainableModel

    model = TrainableModel(tiny_model_dir, "policy", SamplingConfig(), lora=LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.1)  # a trained adapter (B starts at zero)
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    pushed = dict(model.merged_weights())
    expected = copy.deepcopy(model.model).merge_and_unload().state_dict()
    assert set(pushed) == set(expected)
    assert all(torch.allclose(pushed[k], expected[k], atol=1e-6) for k in expected)
    assert all(torch.equal(v, before[k]) for k, v in model.model.state_dict().items()), "the base is untouched"
