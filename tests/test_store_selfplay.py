"""The episode store, scenarios, batched rollouts and resuming after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agents
from agents.base import Policy
from arena.config import ScenarioError
from arena.play.batched import BatchedRollout, make_plans
from arena.play.episode import Episode
from arena.play.scenario import load_selfplay
from arena.play.store import EpisodeStore, StoreError, read_episodes
from games.seeds import episode_seed

ROOT = Path(__file__).resolve().parents[1]


def _episodes(n=6, game="negotiation-v0", roles=None):
    roles = roles or {"player_0": "scripted", "player_1": "random"}
    policies = {"scripted": agents.load("scripted"), "random": agents.load("random")}
    return list(BatchedRollout(policies, concurrency=3).run(make_plans(game, roles, n, seed=1)))


def _strip(e: Episode) -> dict:
    d = e.to_dict()
    d["started_at"] = d["duration_s"] = 0
    for t in d["turns"]:
        t["latency_s"] = 0
    return d


def test_store_round_trip_and_partial_last_line(tmp_path):
    episodes = _episodes(4)
    with EpisodeStore(tmp_path).open() as store:
        for e in episodes:
            store.append(e)
    assert [_strip(e) for e in EpisodeStore(tmp_path)] == [_strip(e) for e in episodes]
    path = tmp_path / "episodes.jsonl"
    with open(path, "ab") as f:  # what kill -9 in the middle of a write leaves
        f.write(json.dumps(episodes[0].to_dict()).encode()[:100])
    assert len(list(read_episodes(path))) == 4, "readers skip a partial last line"
    with EpisodeStore(tmp_path).open() as store:
        store.append(episodes[0])
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 6 and all(json.loads(line) for line in lines[:-1])


def test_store_refuses_a_second_writer_and_a_different_run(tmp_path):
    first = EpisodeStore(tmp_path).open({"game": "negotiation-v0", "seed": 0})
    with pytest.raises(StoreError, match=r"another process \(PID \d+\) is writing"):
        EpisodeStore(tmp_path).open({"game": "negotiation-v0", "seed": 0})
    first.close()
    with pytest.raises(StoreError, match="different run.*seed: stored 0, now 1"):
        EpisodeStore(tmp_path).open({"game": "negotiation-v0", "seed": 1})
    EpisodeStore(tmp_path).open({"game": "negotiation-v0", "seed": 0}).close()


def test_corrupt_lines_are_reported_with_their_number(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_episodes(1)[0].to_dict()) + "\n{not json}\n")
    with pytest.raises(StoreError, match="line 2"):
        list(read_episodes(path))


def test_parquet_and_datasets_export(tmp_path):
    pytest.importorskip("pyarrow")
    episodes = _episodes(5)
    with EpisodeStore(tmp_path).open() as store:
        for e in episodes:
            store.append(e)
    import pyarrow.parquet as pq

    table = pq.read_table(EpisodeStore(tmp_path).to_parquet(tmp_path / "e.parquet"))
    assert table.num_rows == 5 and "turns" in table.column_names
    pytest.importorskip("datasets")
    dataset = EpisodeStore(tmp_path).to_dataset()
    assert len(dataset) == 5 and dataset[0]["id"] == episodes[0].id
    assert json.loads(dataset[0]["scores"]) == episodes[0].scores


class CountingPolicy(Policy):
    """Scripted moves, counting each generate call and its batch size."""

    batch_invariant = True

    def __init__(self):
        super().__init__("counting")
        self.inner = agents.load("scripted")
        self.batches = []

    def generate(self, requests):
        self.batches.append(len(requests))
        return self.inner.generate(requests)


def test_one_generate_call_per_policy_per_tick():
    counting = CountingPolicy()
    plans = make_plans("refine-v0", {"solver": "counting"}, 12, seed=0)
    episodes = list(BatchedRollout({"counting": counting}, concurrency=4).run(plans))
    assert len(episodes) == 12 and all(e.ok for e in episodes)
    assert max(counting.batches) == 4 and sum(counting.batches) == sum(len(e.turns) for e in episodes)
    assert len(counting.batches) == 6, "12 two-turn episodes, 4 at a time: 3 waves of 2 ticks"


def test_rule_based_episodes_do_not_depend_on_concurrency():
    plans = make_plans("therapy-v0", {"patient": "scripted", "therapist": "random"}, 6, seed=3)
    policies = {"scripted": agents.load("scripted"), "random": agents.load("random")}
    one = {e.id: _strip(e) for e in BatchedRollout(policies, concurrency=1).run(plans)}
    many = {e.id: _strip(e) for e in BatchedRollout(policies, concurrency=6).run(plans)}
    assert one == many


class Flaky(Policy):
    """Fails every call after the first few."""

    def __init__(self):
        super().__init__("flaky")
        self.calls = 0
        self.inner = agents.load("scripted")

    def generate(self, requests):
        self.calls += 1
        if self.calls > 2:
            raise ConnectionError("server went away")
        return self.inner.generate(requests)


def test_backend_failures_fail_episodes_and_are_counted():
    rollout = BatchedRollout({"flaky": Flaky()}, concurrency=2)
    episodes = list(rollout.run(make_plans("negotiation-v0", {"player_0": "flaky", "player_1": "flaky"}, 4, 0)))
    failed = [e for e in episodes if not e.ok]
    assert failed and all("server went away" in e.error for e in failed)
    assert rollout.stats.failed == len(failed)


def test_episode_seeds_are_stable_and_distinct():
    assert episode_seed(0, 5) == episode_seed(0, 5)
    assert len({episode_seed(0, i) for i in range(1000)}) == 1000


def _scenario(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ('[game]\nid = "negotiation-v0"\n[agnts]\nall = "scripted"\n',
     "unknown section or key 'agnts'.*Did you mean 'agents'"),
    ('[game]\nid = "negotiation-v0"\n[agents]\nplayer_2 = "scripted"\n', "'player_2' is not a role"),
    ('[game]\nid = "negotiation-v0"\n[agents]\nplayer_0 = "scripted"\n', "no agent for role 'player_1'"),
    ('[game]\nid = "negotiation-v0"\n', "an \\[agents\\] section is required"),
    ('[game]\nid = "negotiaton-v0"\n[agents]\nall = "scripted"\n', "Did you mean 'negotiation-v0'"),
    ('[game]\nid = "negotiation-v0"\noptions = {objectiv = "coop"}\n[agents]\nall = "scripted"\n',
     "unknown option 'objectiv'.*Did you mean 'objective'"),
    ('[game]\nid = "negotiation-v0"\n[agents]\nall = "scripted"\n[run]\nepisodes = 0\n', "\\[run\\].*at least 1"),
    ('[game]\nid = "negotiation-v0"\n[agents]\nall = "scripted"\n[run]\nepisode = 3\n', "Did you mean 'episodes'"),
    ('[game]\nid = "negotiation-v0"\n[agents]\nall = "scripted"\n[sampling]\ntop_p = 2\n', "top_p"),
    ('[game\nid = 1', "not valid TOML"),
])
def test_scenario_errors_name_file_section_and_key(tmp_path, text, message):
    path = _scenario(tmp_path, text)
    with pytest.raises(ScenarioError, match=message) as err:
        load_selfplay(path)
    assert str(path) in str(err.value)


def test_scenario_defaults_and_overrides(tmp_path):
    path = _scenario(tmp_path, '[game]\nid = "refine-v0"\n[agents]\nall = "scripted"\n')
    scenario = load_selfplay(path, {"episodes": 7, "out": None})
    assert scenario.run.episodes == 7 and scenario.roles == {"solver": "scripted"}
    assert scenario.out == Path("runs") / "s"


def _write_scenario(tmp_path, agent_spec, episodes, concurrency=4, block=8, game="negotiation-v0",
                    opponent="scripted"):
    roles = {"negotiation-v0": ("player_0", "player_1"), "refine-v0": ("solver",)}[game]
    agents_toml = "\n".join(f'{r} = "{agent_spec if i == 0 else opponent}"' for i, r in enumerate(roles))
    options = "options = { max_messages = 8 }" if game == "negotiation-v0" else ""
    return _scenario(tmp_path, f"""
[game]
id = "{game}"
{options}
[agents]
{agents_toml}
[sampling]
max_new_tokens = 12
[run]
episodes = {episodes}
concurrency = {concurrency}
block = {block}
seed = 4
""")


def _run(scenario, out, wait_for_lines=None):
    cmd = [sys.executable, "-m", "arena", "selfplay", str(scenario), "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if wait_for_lines is None:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "episodes.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and path.read_bytes().count(b"\n") >= wait_for_lines:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["scripted", "hf"])
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model_dir, kind):
    spec = "scripted" if kind == "scripted" else f"hf:{tiny_model_dir}"
    scenario = _write_scenario(tmp_path, spec, episodes=24, opponent="random")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    _run(scenario, whole)
    _run(scenario, broken, wait_for_lines=5)
    killed_at = (broken / "episodes.jsonl").read_bytes().count(b"\n")
    assert 5 <= killed_at < 24, "the run should have been killed part-way"
    _run(scenario, broken)
    resumed = list(read_episodes(broken / "episodes.jsonl"))
    ids = [e.id for e in resumed]
    assert len(ids) == len(set(ids)) == 24, "no episode lost, none duplicated"
    expected = {e.id: _strip(e) for e in read_episodes(whole / "episodes.jsonl")}
    assert {e.id: _strip(e) for e in resumed} == expected


def test_more_episodes_extend_a_run(tmp_path):
    scenario = _write_scenario(tmp_path, "scripted", episodes=5, game="refine-v0")
    out = tmp_path / "run"
    _run(scenario, out)
    scenario.write_text(scenario.read_text().replace("episodes = 5", "episodes = 9"))
    _run(scenario, out)
    assert len(list(read_episodes(out / "episodes.jsonl"))) == 9
