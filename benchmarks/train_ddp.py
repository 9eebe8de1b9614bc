"""Seconds per training iteration with one process, with N data-parallel ranks (``arena train --nproc``) and
with N ranks sharding the model (``[run] fsdp = true``), side by side in one run, on the same scenario and
global batch; and the megabytes of trained state (weights, gradients, Adam's moments) each process holds.

One process runs with torch's default thread count; each rank with one thread (``[run] threads = 1``), as
ranks sharing a machine should. Printed: the median seconds per iteration, and where they go (playing the
episodes, the update), from each run's ``metrics.jsonl``.

    python benchmarks/train_ddp.py [--nproc 2] [--iterations 6] [--scenario scenarios/train-therapy-pg.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run(scenario: str, out: Path, iterations: int, nproc: int, fsdp: bool = False) -> dict[str, float]:
    sets = [f"algorithm.iterations={iterations}", "eval.every=0", "eval.episodes=8", "run.checkpoint_every=1000",
            f"run.threads={1 if nproc > 1 else 0}", f"run.fsdp={str(fsdp).lower()}"]
    command = [sys.executable, "-m", "arena", "train", scenario, "--out", str(out), "--no-wandb", "--nproc", str(nproc)]
    for s in sets:
        command += ["--set", s]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]  # the first warms up
    minutes = [json.loads(line)["minutes"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    per_iteration = [60 * (b - a) for a, b in zip(minutes, minutes[1:])]
    return {"iteration": statistics.median(per_iteration),
            "play": statistics.median(r.get("seconds/play", 0.0) for r in rows),
            "update": statistics.median(r.get("seconds/update", 0.0) for r in rows),
            "state_mb": rows[-1]["state_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "train-therapy-pg.toml"))
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; one process: torch threads {torch.get_num_threads()} (default); "
          f"{args.nproc} ranks: torch threads 1 each; {Path(args.scenario).name}, {args.iterations} iterations")
    with tempfile.TemporaryDirectory() as folder:
        one = run(args.scenario, Path(folder) / "one", args.iterations, 1)
        many = run(args.scenario, Path(folder) / "many", args.iterations, args.nproc)
        sharded = run(args.scenario, Path(folder) / "fsdp", args.iterations, args.nproc, fsdp=True)
    for name, r in (("1 process", one), (f"{args.nproc} ranks", many), (f"{args.nproc} ranks, fsdp", sharded)):
        print(f"  {name:16s} {r['iteration']:6.2f} s/iteration (play {r['play']:.2f} s, update {r['update']:.2f} s), "
              f"trained state {r['state_mb']:.1f} MB per process, speed-up {one['iteration'] / r['iteration']:.2f}x")


if __name__ == "__main__":
    main()
