"""Self-play and tournaments on Ray against one process, side by side in one run (the ``ray`` extra).

Printed:

* self-play episodes/s with the seed model in every seat: one process (torch's default thread count)
  against Ray with one single-threaded worker per core, on the same plans (same concurrency and blocks);
  the workers' start (each loads the model once) is timed apart;
* a tournament's wall time, one process against Ray, the same schedule;
* Ray's overhead with scripted agents, whose moves cost nothing: episodes/s through the workers, against
  the same plans in one process.

A local Ray instance is started here (``ray.init(num_cpus=cores)``) and stopped at the end.

    python benchmarks/selfplay_ray.py [--episodes 256] [--concurrency 16] [--repeats 3] [--scripted 8000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from agents.sampling import SamplingConfig
from arena.play.batched import BatchedRollout, make_plans
from arena.play.cluster import ClusterSection, RayRollout
from arena.play.policies import load_policies
from arena.rate.scenario import load_tournament
from arena.rate.tournament import run_tournament

TOURNAMENT = """
[agents]
seed = "seed"
scripted = "scripted"
random = "random"
[[games]]
id = "negotiation-v0"
[[games]]
id = "therapy-v0"
[schedule]
kind = "round-robin"
games_per_pairing = {games}
[ratings]
bootstrap = 50
[sampling]
max_new_tokens = 96
[run]
concurrency = {concurrency}
"""


def one_process(specs: dict[str, str], plans, concurrency: int) -> tuple[float, int]:
    policies = load_policies(set(specs.values()), SamplingConfig(max_new_tokens=96), {})
    rollout = BatchedRollout({name: policies[spec] for name, spec in specs.items()}, concurrency)
    start = time.perf_counter()
    done = list(rollout.run(plans))
    return time.perf_counter() - start, len(done)


def side_by_side(specs: dict[str, str], plans, concurrency: int, cluster: ClusterSection,
                 repeats: int) -> tuple[list[float], list[float], float]:
    """Episodes/s of one process and of Ray on the same plans, alternately ``repeats`` times (the machine's
    load drifts: alternating keeps it from favouring either), and the workers' start."""
    policies = load_policies(set(specs.values()), SamplingConfig(max_new_tokens=96), {})
    local = BatchedRollout({name: policies[spec] for name, spec in specs.items()}, concurrency)
    start = time.perf_counter()
    remote = RayRollout(specs, SamplingConfig(max_new_tokens=96), {}, concurrency, None, cluster)
    ready = time.perf_counter() - start
    here, there = [], []
    try:
        for _ in range(repeats):
            for rollout, rates in ((local, here), (remote, there)):
                start = time.perf_counter()
                done = list(rollout.run(plans))
                rates.append(len(done) / (time.perf_counter() - start))
    finally:
        remote.close()
    return here, there, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scripted", type=int, default=8000, help="scripted episodes (0: skip)")
    parser.add_argument("--tournament-games", type=int, default=16, help="games per pairing and game (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating self-play runs of each")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; one process: torch threads {torch.get_num_threads()}; Ray: {cores} workers, "
          "torch threads 1 each")
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cluster = ClusterSection(address="local", workers=cores, threads=1)
    try:
        seats = {"player_0": "seed", "player_1": "seed"}
        plans = make_plans("negotiation-v0", seats, args.episodes, seed=7)
        here, there, ready = side_by_side({"seed": "seed"}, plans, args.concurrency, cluster, args.repeats)
        ratios = sorted(b / a for a, b in zip(here, there))
        print(f"self-play, seed model in both seats, {args.episodes} negotiation episodes, concurrency "
              f"{args.concurrency}, {args.repeats} alternating runs (workers ready in {ready:.1f} s):")
        print(f"  one process {' '.join(f'{r:6.2f}' for r in here)} episodes/s")
        print(f"  Ray         {' '.join(f'{r:6.2f}' for r in there)} episodes/s")
        print(f"  Ray / one process: median {statistics.median(ratios):.2f}x (each run: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")

        if args.scripted:
            scripted = make_plans("negotiation-v0", {"player_0": "scripted", "player_1": "scripted"},
                                  args.scripted, seed=7)
            here, there, _ = side_by_side({"scripted": "scripted"}, scripted, 64, cluster, 1)
            print(f"scripted agents (the overhead), {args.scripted} episodes: one process {here[0]:,.0f} "
                  f"episodes/s, Ray {there[0]:,.0f} episodes/s")
        if not args.tournament_games:
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "tournament.toml"
            path.write_text(TOURNAMENT.format(games=args.tournament_games, concurrency=args.concurrency))
            start = time.perf_counter()
            here = run_tournament(load_tournament(path, str(Path(folder) / "here")))
            local = time.perf_counter() - start
            start = time.perf_counter()
            run_tournament(load_tournament(path, str(Path(folder) / "there"), ray=ray.get_runtime_context()
                                           .gcs_address))
            there = time.perf_counter() - start
        print(f"tournament, 3 agents x 2 games x {args.tournament_games} games a pairing ({len(here.plans)} "
              f"episodes): one process {local:.1f} s, Ray {there:.1f} s (workers' start included) "
              f"-> {local / there:.2f}x")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
