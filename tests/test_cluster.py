"""Self-play and tournaments on a real Ray cluster on this machine: a head and a second node, each a
`ray start --block` process started and stopped by the fixture (no mock of Ray).

Workers play whole blocks of plans with one torch thread; the one-process references here use one thread
too, so the episodes compare exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import ray
import torch

from arena.play.batched import make_plans
from arena.play.cluster import ClusterSection, RayRollout
from arena.play.scenario import load_selfplay
from arena.play.selfplay import play_into, run_selfplay
from arena.play.store import EpisodeStore
from tests.helpers import ROOT, arena, one_error_line
from tests.ray_cluster import RayCluster

SCENARIO = """
{plugins}
[game]
id = "{game}"
{options}
[agents]
{agents}
[sampling]
max_new_tokens = 24
[run]
episodes = {episodes}
concurrency = 3
block = 3
"""


def scenario_file(tmp_path, name="s", game="negotiation-v0", agents='player_0 = "seed"\nplayer_1 = "scripted"',
                  episodes=12, plugins="", options='options = { max_messages = 4 }', cluster=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(plugins=plugins, game=game, options=options, agents=agents, episodes=episodes)
                    + cluster)
    return path


def episodes_of(out) -> dict[str, tuple]:
    """Each stored episode's moves, sampled ids and scores, by id."""
    return {e.id: ([t.text for t in e.turns], [t.token_ids for t in e.turns], e.scores, e.ok)
            for e in EpisodeStore(out)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RayCluster(tmp_path_factory.mktemp("ray"), cpus=1) as c:
        c.add_node(cpus=1)
        yield c
        if ray.is_initialized():
            ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The scenario played in this process with one torch thread: what every cluster run must give."""
    folder = tmp_path_factory.mktemp("one-process")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_selfplay(load_selfplay(scenario_file(folder, episodes=24), {"out": str(folder / "out")}))
    finally:
        torch.set_num_threads(threads)
    return episodes_of(folder / "out")


def first(reference: dict, n: int = 12) -> dict:
    """The reference's first ``n`` episodes: a run of ``n`` episodes plays the same blocks."""
    return {k: reference[k] for k in sorted(reference)[:n]}


def test_selfplay_on_the_cluster_gives_the_episodes_of_one_process(cluster, reference, tmp_path):
    result = run_selfplay(load_selfplay(scenario_file(tmp_path), {"out": str(tmp_path / "out")}, ray=cluster.address))
    assert result.played == 12 and result.stats.episodes == 12
    assert episodes_of(tmp_path / "out") == first(reference)


@pytest.mark.parametrize("how", ["kill -9", "ray.kill"])
def test_a_worker_lost_mid_run_has_its_block_played_elsewhere(cluster, reference, tmp_path, how):
    """Kill a worker's process (or its actor) once the first block is stored: its block in flight is played
    by another worker; nothing is lost or stored twice, and the episodes are those of one process."""
    scenario = load_selfplay(scenario_file(tmp_path), {"out": str(tmp_path / "out")}, ray=cluster.address)
    rollout = RayRollout({s: s for s in scenario.roles.values()}, scenario.sampling, scenario.backend, 3, 3,
                         scenario.cluster)
    killed: list[int] = []

    def kill_one(episode, stats) -> None:
        if killed:
            return
        worker, pid = next(iter(rollout.pids.items()))
        killed.append(pid)
        if how == "kill -9":
            os.kill(pid, signal.SIGKILL)
        else:
            ray.kill(worker)

    plans = make_plans(scenario.game.id, scenario.roles, 12, scenario.run.seed, scenario.game.options)
    store = EpisodeStore(scenario.out)
    try:
        with store.open({"drill": how}):
            count = play_into(store, rollout, plans, kill_one)
    finally:
        rollout.close()
    assert killed and rollout.lost >= 1, "a worker was lost and replaced"
    lines = (tmp_path / "out" / "episodes.jsonl").read_text().splitlines()
    assert count.played == 12 and len(lines) == 12, "each episode stored once"
    assert episodes_of(tmp_path / "out") == first(reference)


def test_a_plugin_game_plays_on_the_cluster(cluster, tmp_path):
    """The guide's one-file game, named by the scenario: the workers get its source and play it."""
    from tests.guide import guide_game_file

    game = guide_game_file()  # one copy per test session: a second would register guess-v0 twice here
    path = scenario_file(tmp_path, game="guess-v0", agents='all = "scripted"', options="", episodes=9,
                         plugins=f'plugins = ["{game}"]')
    result = run_selfplay(load_selfplay(path, {"out": str(tmp_path / "out")}, ray=cluster.address))
    assert result.total == 9 and result.summary["failed"] == 0


def test_a_killed_driver_resumes_from_the_store(cluster, reference, tmp_path):
    """kill -9 of `arena selfplay --ray` after its first episodes: the same command finishes the run, with the
    episodes of one process."""
    path = scenario_file(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "arena", "selfplay", str(path), "--out", str(out), "--ray", cluster.address]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 120
    store = out / "episodes.jsonl"
    while time.time() < deadline and not (store.is_file() and store.read_text().count("\n") >= 3):
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    stored = (out / "episodes.jsonl").read_text().count("\n")
    assert 0 < stored < 12, f"killed after {stored} episodes"
    result = arena("selfplay", str(path), "--out", str(out), "--ray", cluster.address)
    assert result.returncode == 0, result.stderr[-2000:]
    assert episodes_of(out) == first(reference)


TOURNAMENT = """
[agents]
seed = "seed"
scripted = "scripted"
random = "random"
[[games]]
id = "negotiation-v0"
options = { max_messages = 4 }
[schedule]
kind = "round-robin"
games_per_pairing = 4
[ratings]
bootstrap = 50
[sampling]
max_new_tokens = 24
[run]
concurrency = 3
"""


def test_a_tournament_on_the_cluster_rates_as_in_one_process(cluster, tmp_path):
    from arena.rate.leaderboard import build
    from arena.rate.scenario import load_tournament
    from arena.rate.tournament import run_tournament

    path = tmp_path / "tournament.toml"
    path.write_text(TOURNAMENT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = load_tournament(path, str(tmp_path / "here"))
        rated_here = build(here, run_tournament(here).tally)
    finally:
        torch.set_num_threads(threads)
    there = load_tournament(path, str(tmp_path / "there"), ray=cluster.address)
    result = run_tournament(there)
    assert result.played == len(result.plans) > 12, "several blocks"
    assert build(there, result.tally) == rated_here
    assert episodes_of(tmp_path / "there") == episodes_of(tmp_path / "here")


def test_a_node_that_leaves_the_cluster_mid_run(cluster, reference, tmp_path):
    """A third node joins, then goes (kill -9 of its processes) while the run uses it: the run goes on with
    the other nodes' workers and stores every episode once."""
    node = cluster.add_node(cpus=1)
    scenario = load_selfplay(scenario_file(tmp_path, episodes=24), {"out": str(tmp_path / "out")},
                             ray=cluster.address)
    rollout = RayRollout({s: s for s in scenario.roles.values()}, scenario.sampling, scenario.backend, 3, 3,
                         ClusterSection(address=cluster.address, timeout=30))
    assert len(rollout.workers) == 3, "one worker a CPU, on three nodes"
    gone: list[bool] = []

    def leave(episode, stats) -> None:
        if not gone:
            gone.append(True)
            RayCluster.kill(node)

    store = EpisodeStore(scenario.out)
    try:
        with store.open({"drill": "node"}):
            play_into(store, rollout, make_plans(scenario.game.id, scenario.roles, 24, 0, scenario.game.options),
                      leave)
    finally:
        rollout.close()
    assert rollout.lost >= 1, "the node's worker was lost"
    assert (tmp_path / "out" / "episodes.jsonl").read_text().count("\n") == 24
    assert episodes_of(tmp_path / "out") == reference


def test_bad_cluster_input_is_one_clear_line(cluster, tmp_path):
    path = scenario_file(tmp_path, agents='all = "scripted"')
    started = time.perf_counter()
    line = one_error_line(arena("selfplay", str(path), "--out", str(tmp_path / "a"), "--ray", "127.0.0.1:1"))
    assert "no Ray cluster answers at 127.0.0.1:1" in line and "ray start --head" in line, line
    assert time.perf_counter() - started < 60
    line = one_error_line(arena("selfplay", str(path), "--out", str(tmp_path / "b"), "--ray", "somewhere"))
    assert "'address' must be '', 'local' or HOST:PORT" in line, line
    big = scenario_file(tmp_path, name="big", agents='all = "scripted"',
                        cluster="[cluster]\nworkers = 16\ntimeout = 5\n")
    line = one_error_line(arena("selfplay", str(big), "--out", str(tmp_path / "c"), "--ray", cluster.address))
    assert "could not start 16 workers of 1 CPU each within 5 s" in line, line
    assert not (tmp_path / "c" / "episodes.jsonl").exists() or not (tmp_path / "c" / "episodes.jsonl").read_text()


def test_the_scenario_checks_its_cluster_section(tmp_path):
    path = scenario_file(tmp_path, cluster="[cluster]\nadress = \"local\"\n")
    with pytest.raises(Exception, match="Did you mean 'address'"):
        load_selfplay(path)
    assert load_selfplay(scenario_file(tmp_path, name="t"), ray="local").cluster == ClusterSection(address="local")


def test_a_process_s_torch_threads_are_chosen_by_the_scenario(tmp_path):
    """[run] threads sets this process's torch threads for its models (a cluster's workers: [cluster] threads)."""
    before = torch.get_num_threads()
    try:
        path = scenario_file(tmp_path, episodes=2)
        path.write_text(path.read_text().replace("block = 3\n", "block = 3\nthreads = 1\n"))
        run_selfplay(load_selfplay(path, {"out": str(tmp_path / "out")}))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_ray_local_starts_and_stops_ray_on_this_machine(tmp_path):
    """`--ray local`: the command starts Ray here with a worker per core, plays, and stops it."""
    path = scenario_file(tmp_path, agents='all = "scripted"', episodes=30)
    result = arena("selfplay", str(path), "--out", str(tmp_path / "out"), "--ray", "local")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "episodes.jsonl").read_text().count("\n") == 30
