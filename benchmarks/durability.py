"""What durability (fsync) costs: the episode store and training checkpoints, side by side in one run.

Store: the same scripted negotiation episodes appended three ways, episodes/s for each:
  * never synced (flush only: what a kill -9 survives, not a power loss);
  * synced at most once a second (the store's policy: a power loss costs at most a second of episodes);
  * synced after every episode (the upper bound, for comparison).

Checkpoints: the shipped seed model saved as a training checkpoint (save_pretrained + trainer state)
with and without the fsync of every file and folder before the rename that publishes it.

    python benchmarks/durability.py [--episodes 2000] [--checkpoints 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import agents
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from arena.output import fsync_path
from arena.play import store as store_module
from arena.play.batched import BatchedRollout, make_plans
from arena.play.store import EpisodeStore
from arena.train.model import TrainableModel
from arena.train.session import _sync_folder


def store_rate(episodes, folder: Path, interval: float | None) -> float:
    """Episodes/s appended with fsync every ``interval`` seconds (0: every episode; None: never)."""
    saved = store_module.SYNC_INTERVAL_S
    store_module.SYNC_INTERVAL_S = float("inf") if interval is None else interval
    try:
        store = EpisodeStore(folder).open()
        started = time.perf_counter()
        for e in episodes:
            store.append(e)
        if interval is not None:
            store.sync()
        seconds = time.perf_counter() - started
        store._handle.close()  # close without the final sync, to time only the policy's own syncs
        store._handle = None
        store.close()
    finally:
        store_module.SYNC_INTERVAL_S = saved
    return len(episodes) / seconds


def checkpoint_seconds(model: TrainableModel, root: Path, sync: bool) -> float:
    folder = root / ("synced" if sync else "plain")
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    model.save(folder)
    torch.save({"model": model.state_dict()}, folder / "trainer_state.pt")
    if sync:
        _sync_folder(folder)
        fsync_path(root)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--checkpoints", type=int, default=5)
    args = parser.parse_args()
    policies = {"scripted": agents.load("scripted")}
    roles = {"player_0": "scripted", "player_1": "scripted"}
    episodes = list(BatchedRollout(policies, 64).run(make_plans("negotiation-v0", roles, args.episodes, seed=1)))
    size = sum(len(e.to_dict()["turns"]) for e in episodes) / len(episodes)
    print(f"store: {len(episodes)} scripted negotiation episodes ({size:.1f} turns each), torch threads "
          f"{torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # on the disk the runs use, not a tmpfs
        root = Path(tmp)
        rates = {name: store_rate(episodes, root / name, interval)
                 for name, interval in (("never synced", None), ("synced once a second", 1.0),
                                        ("synced every episode", 0.0))}
        for name, rate in rates.items():
            print(f"  {name:<22} {rate:10,.0f} episodes/s  ({rate / rates['never synced']:.2f}x unsynced)")
        model = TrainableModel(seed_model_dir(), "policy", SamplingConfig())
        plain = [checkpoint_seconds(model, root, False) for _ in range(args.checkpoints)]
        synced = [checkpoint_seconds(model, root, True) for _ in range(args.checkpoints)]
        mb = sum(f.stat().st_size for f in (root / "synced").rglob("*") if f.is_file()) / 2**20
        print(f"checkpoint of the seed model ({mb:.1f} MiB), median of {args.checkpoints}:")
        print(f"  without fsync {statistics.median(plain) * 1000:8.1f} ms")
        print(f"  with fsync    {statistics.median(synced) * 1000:8.1f} ms "
              f"(+{(statistics.median(synced) - statistics.median(plain)) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
