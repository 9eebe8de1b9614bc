"""Data-parallel training for real: `arena train --nproc 2` runs two ranks (torch.distributed, gloo on this
CPU), each playing its share of the episodes and backpropagating its share of the update; no mocks.

Floating-point tolerance: the two ranks sum their gradients in another order than one process does, so the
weights agree to about 1e-6 (asserted: 1e-4 after the run's steps), not to the last bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from arena.play.batched import BatchedRollout, make_plans
from arena.play.policies import load_policies
from arena.play.store import EpisodeStore
from tests.helpers import ROOT, arena, one_error_line

TRAIN = """
[model]
init = "seed"
[game]
id = "{game}"
options = {options}
[roles]
{roles}
[algorithm]
{algorithm}
[sampling]
max_new_tokens = 48
[eval]
episodes = 4
every = 0
[run]
wandb = "disabled"
checkpoint_every = 1
concurrency = 8
threads = 1
{extra}
"""

PG = 'name = "pg"\nestimator = "rloo"\niterations = 3\ngroups = 4\ngroup_size = 2\nlearning_rate = 1e-3'
THERAPY = dict(game="therapy-v0", roles='therapist = "policy"\npatient = "scripted"',
               options='{ guidance = "none", exchanges = 2, max_extra_exchanges = 0, max_treatment_tries = 1 }')


def weights(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def max_gap(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def one_and_two_ranks(tmp_path: Path, one_path: Path, two_path: Path) -> tuple[list[dict], list[dict]]:
    """Train ``one_path`` in one process (OUT one) and ``two_path`` with --nproc 2 (OUT two); both must
    succeed and end within 1e-4 of each other; their metrics rows."""
    one = arena("train", str(one_path), "--out", str(tmp_path / "one"), "--no-wandb")
    two = arena("train", str(two_path), "--out", str(tmp_path / "two"), "--no-wandb", "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert max_gap(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-4
    first, second = ([json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
                     for r in ("one", "two"))
    return first, second


def scenario(tmp_path: Path, name: str, algorithm: str = PG, extra: str = "", **game) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TRAIN.format(algorithm=algorithm, extra=extra, **{**THERAPY, **game}))
    return path


def test_two_ranks_train_from_stored_episodes_as_one_process_does(tmp_path):
    """Filtered BC on a stored set: the same global minibatches, split over two ranks, give the weights of
    one process."""
    policies = load_policies({"scripted"}, None, {})
    with EpisodeStore(tmp_path / "data").open() as store:
        for e in BatchedRollout(policies, 16).run(make_plans("negotiation-v0", {"player_0": "scripted",
                                                                                 "player_1": "scripted"}, 24, 3)):
            store.append(e)
    bc = 'name = "filtered-bc"\nrounds = 2\nfilter = "top-k"\nepochs = 2\nlearning_rate = 1e-3'
    path = scenario(tmp_path, "bc", bc, f'[data]\nepisodes = ["{tmp_path / "data" / "episodes.jsonl"}"]',
                    game="negotiation-v0", roles='player_0 = "policy"\nplayer_1 = "scripted"', options="{}")
    one = arena("train", str(path), "--out", str(tmp_path / "one"), "--no-wandb")
    two = arena("train", str(path), "--out", str(tmp_path / "two"), "--no-wandb", "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    gap = max_gap(weights(tmp_path / "one"), weights(tmp_path / "two"))
    assert 0 < gap < 1e-4 or gap == 0, gap
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2], "rank 0 alone writes the metrics"


def test_two_ranks_play_their_share_and_train_as_one_process(tmp_path):
    """Policy gradient with live rollouts: each rank plays half the groups; the gathered episodes, the
    advantages and the summed gradient are one process's, so are the weights (within the tolerance)."""
    path = scenario(tmp_path, "pg")
    first, second = one_and_two_ranks(tmp_path, path, path)
    assert [r["score/therapist"] for r in second] == pytest.approx([r["score/therapist"] for r in first], rel=1e-12), \
        "the same episodes"
    assert not (tmp_path / "two" / "ranks" / "rank-1.log").read_text().count("Traceback")


def _rank(launcher: subprocess.Popen, rank: int) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    return None


def test_a_killed_rank_stops_the_run_and_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    path = scenario(tmp_path, "pg")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = arena("train", str(path), "--out", str(whole), "--no-wandb", "--nproc", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    launcher = subprocess.Popen([sys.executable, "-m", "arena", "train", str(path), "--out", str(broken), "--no-wandb",
                                 "--nproc", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    latest = broken / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and launcher.poll() is None and not latest.is_file():
        time.sleep(0.1)
    rank1 = _rank(launcher, 1)
    assert rank1 is not None and latest.is_file(), "a checkpoint was written by the running ranks"
    os.kill(rank1.pid, signal.SIGKILL)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    line = one_error_line(subprocess.CompletedProcess([], launcher.returncode, "", err))
    assert "rank 1 of 2 was killed by signal 9" in line and "--resume" in line, line
    assert json.loads(latest.read_text())["iteration"] < 3, "killed before the end"
    again = arena("train", str(path), "--out", str(broken), "--no-wandb", "--nproc", "2", "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert max_gap(weights(whole), weights(broken)) == 0.0, "the resumed run ends where the whole one ends"


@pytest.mark.parametrize("args, env, message", [
    (["--nproc", "0"], {}, "--nproc must be at least 1"),
    (["--nproc", "2"], {"WORLD_SIZE": "2", "RANK": "0"}, "give --nproc or torchrun, not both"),
    (["--nproc", "2", "--set", "rollout.engine=vllm"], {}, "is not supported yet"),
    (["--nproc", "2", "--set", "run.fsdp=true", "--set", "model.lora=true"], {}, "fsdp = true with LoRA"),
    (["--nproc", "2", "--set", "warmup.when=always"], {}, "[warmup] with 2 data-parallel ranks"),
])
def test_bad_nproc_is_one_line(tmp_path, args, env, message):
    line = one_error_line(arena("train", str(scenario(tmp_path, "pg")), "--out", str(tmp_path / "x"), *args,
                                env=env))
    assert message in line, line
    assert not (tmp_path / "x" / "train.json").exists(), "nothing was started"


def test_a_rank_leaves_with_its_exit_code_and_all_its_output(tmp_path):
    """A rank (WORLD_SIZE > 1) skips the interpreter's teardown, where gloo's threads can abort it: its exit
    code and everything it printed still come out."""
    rank = {"WORLD_SIZE": "2", "RANK": "1"}
    shown = arena("--help", env=rank)
    assert shown.returncode == 0 and "convert-gguf" in shown.stdout, shown.stdout[-2000:] + shown.stderr[-2000:]
    missing = arena("train", str(tmp_path / "missing.toml"), env=rank)
    assert missing.returncode == 2 and "missing.toml" in one_error_line(missing)


def test_fsdp_ranks_train_as_one_process_and_resume_across_modes(tmp_path):
    """[run] fsdp = true: the weights, gradients and Adam state are sharded over the two ranks, the rollouts
    play on the weights gathered from the shards; the result is one process's (within the tolerance). A
    checkpoint written by sharded ranks resumes in one process, and one process's resumes sharded: the
    optimiser state goes through whole, keyed by parameter name."""
    one_path = scenario(tmp_path, "pg")
    fsdp = scenario(tmp_path, "fsdp", extra="fsdp = true")
    first, second = one_and_two_ranks(tmp_path, one_path, fsdp)
    assert [r["score/therapist"] for r in second] == pytest.approx([r["score/therapist"] for r in first], rel=1e-12)
    assert [r["grad_norm"] for r in second] == pytest.approx([r["grad_norm"] for r in first], rel=1e-4)

    def switched(out: str, first_path: Path, first_args: list[str], then_path: Path, then_args: list[str]) -> Path:
        short = first_path.with_name(first_path.stem + "-short.toml")
        short.write_text(first_path.read_text().replace("iterations = 3", "iterations = 2"))
        start = arena("train", str(short), "--out", str(tmp_path / out), "--no-wandb", *first_args)
        assert start.returncode == 0, start.stderr[-2000:]
        rest = arena("train", str(then_path), "--out", str(tmp_path / out), "--no-wandb", "--resume", *then_args)
        assert rest.returncode == 0, rest.stdout[-2000:] + rest.stderr[-2000:]
        return tmp_path / out

    sharded_then_one = switched("a", fsdp, ["--nproc", "2"], one_path, [])
    one_then_sharded = switched("b", one_path, [], fsdp, ["--nproc", "2"])
    for run in (sharded_then_one, one_then_sharded):
        assert max_gap(weights(tmp_path / "one"), weights(run)) < 1e-4, run.name
