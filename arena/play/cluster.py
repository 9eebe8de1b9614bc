"""Self-play and tournaments on a Ray cluster (``[cluster]``, ``--ray ADDRESS``; the optional ``ray`` extra).

:class:`RayRollout` plays episode plans as :class:`~arena.play.batched.BatchedRollout` does, with the same
``run(plans, done)`` interface, but on Ray actors: each worker loads its policies once (a model is loaded
once per worker, not per episode) and plays whole *blocks* of plans with a batched rollout of its own. A
block is the unit of exact resume (see :mod:`arena.play.batched`): its schedule depends only on its plans,
so a block played by a worker gives the same episodes as in one process, with the same torch thread count.
Finished blocks come back to the driver, the only process that writes the store.

Faults. A worker that dies (killed, its node gone) fails only its block in flight, which goes to another
worker (at most ``retries`` times), replaying the whole block and keeping the episodes the store does not
hold; a replacement worker is asked for and joins when the cluster has room, and the run goes on with the
rest meanwhile. A driver that dies loses nothing stored: the same command resumes from the store. Every
wait has a deadline: connecting, starting workers (``timeout``) and each block (``block_timeout``).

Game plugins reach the workers as source text (a game is one file), so a cluster's other machines need the
project installed, not the user's game files.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import games
from agents.base import error_line
from agents.sampling import SamplingConfig
from arena.config import ScenarioError, Section
from arena.play.batched import BatchedRollout, EpisodePlan, RolloutStats
from arena.play.episode import Episode
from games.options import OptionError, option

__all__ = ["ClusterError", "ClusterSection", "RayRollout", "plugin_sources"]

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The cluster cannot run the work (unreachable, too small, every worker gone)."""


@dataclass(frozen=True)
class ClusterSection(Section):
    address: str = option("", "'' plays in this process; 'local' starts Ray on this machine; HOST:PORT joins a "
                          "running cluster (the address `ray start --head` prints)")
    workers: int = option(0, "rollout workers (Ray actors); 0: as many as the cluster's CPUs allow", min=0)
    cpus_per_worker: float = option(1.0, "CPUs Ray reserves for each worker", min=0.01)
    gpus_per_worker: float = option(0.0, "GPUs Ray reserves for each worker (0: the workers see no GPU; set it "
                                    "for hf: agents with device = \"cuda\" or vllm: agents)", min=0.0)
    threads: int = option(1, "torch threads in each worker (one per core is the best shape for small models)",
                          min=1)
    timeout: float = option(60.0, "seconds to reach the cluster's address and to start the workers", min=1.0)
    block_timeout: float = option(3600.0, "seconds one block of episodes may take on a worker", min=1.0)
    retries: int = option(3, "times a block whose worker died is played again on another", min=0)

    def validate(self) -> None:
        if self.address not in ("", "local") and not _host_port(self.address):
            raise OptionError(f"key 'address' must be '', 'local' or HOST:PORT (e.g. 10.0.0.1:6379); "
                              f"got {self.address!r}")


def _host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    return (host, int(port)) if sep and host and port.isdigit() else None


def _ray() -> Any:
    try:
        import ray  # the optional extra: only when a cluster is asked for
    except ImportError:
        raise ClusterError("a [cluster] needs Ray: pip install 'socratic-arena[ray]'") from None
    return ray


def plugin_sources(plugins: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The game plugins a worker must load, as ``(name, source)`` for files and ``(module, "")`` for modules:
    the scenario's and those of ``$ARENA_PLUGINS``."""
    targets = [*plugins, *filter(None, (t.strip() for t in os.environ.get("ARENA_PLUGINS", "").split(os.pathsep)))]
    out = []
    for target in dict.fromkeys(targets):
        path = Path(target)
        out.append((path.name, path.read_text(encoding="utf-8")) if target.endswith(".py") else (target, ""))
    return out


class _Worker:
    """A Ray actor: the policies loaded once, a batched rollout per block."""

    def __init__(self, specs: Mapping[str, str], sampling: SamplingConfig, backend: Mapping[str, Any],
                 concurrency: int, block: int, threads: int, plugins: Sequence[tuple[str, str]]):
        import torch

        from arena.play.policies import load_policies

        torch.set_num_threads(threads)
        folder = Path(tempfile.mkdtemp(prefix="arena-plugins-"))
        for name, source in plugins:
            if source:
                (folder / name).write_text(source, encoding="utf-8")
                games.load_plugin(folder / name)
            else:
                games.load_plugin(name)
        loaded = load_policies(set(specs.values()), sampling, backend)
        self.policies = {name: loaded[spec] for name, spec in specs.items()}
        self.concurrency, self.block = concurrency, block

    def ready(self) -> int:
        return os.getpid()

    def play(self, plans: Sequence[EpisodePlan], done: frozenset[str]) -> tuple[list[Episode], RolloutStats]:
        rollout = BatchedRollout(self.policies, self.concurrency, self.block)
        return list(rollout.run(plans, done=done)), rollout.stats


@dataclass
class _Task:
    plans: list[EpisodePlan]
    done: frozenset[str]
    tries: int = 0


class RayRollout:
    """Episode plans played on Ray workers, block by block; the same interface as :class:`BatchedRollout`."""

    def __init__(self, specs: Mapping[str, str], sampling: SamplingConfig, backend: Mapping[str, Any],
                 concurrency: int, block: int | None, cluster: ClusterSection, plugins: Sequence[str] = ()):
        if not cluster.address:
            raise ScenarioError("RayRollout needs a [cluster] address ('local' or HOST:PORT)")
        self.ray = _ray()
        self.cluster = cluster
        self.concurrency, self.block = concurrency, block or 4 * concurrency
        self.stats = RolloutStats()
        self._started_ray = self._connect()
        self._args = (dict(specs), sampling, dict(backend), concurrency, self.block, cluster.threads,
                      plugin_sources(plugins))
        self._actor = self.ray.remote(_Worker)
        self.workers: list[Any] = []  # every worker asked for and not lost, for close()
        self.pids: dict[Any, int] = {}  # a started worker -> its process id (for logs and fault drills)
        self.starting: dict[Any, tuple[Any, float]] = {}  # ready() ref -> a replacement worker, when asked for
        self.lost = 0
        try:
            self.idle: deque = deque(self._start_workers())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ the cluster
    def _connect(self) -> bool:
        ray, cluster = self.ray, self.cluster
        if ray.is_initialized():
            return False
        if cluster.address == "local":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            return True
        host, port = _host_port(cluster.address) or ("", 0)
        try:
            socket.create_connection((host, port), timeout=min(cluster.timeout, 10.0)).close()
        except OSError as err:
            raise ClusterError(f"no Ray cluster answers at {cluster.address} ({err.strerror or err}); start one "
                               "with `ray start --head` and give the address it prints") from None
        try:
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        except Exception as err:  # a cluster that refuses this process (token authentication), another Ray
            raise ClusterError(f"could not join the Ray cluster at {cluster.address}: {_cause(err)} (with token "
                               "authentication on, set RAY_AUTH_TOKEN to the cluster's token)") from None
        return False

    def _new_worker(self) -> Any:
        worker = self._actor.options(num_cpus=self.cluster.cpus_per_worker, num_gpus=self.cluster.gpus_per_worker,
                                     max_restarts=0).remote(*self._args)
        self.workers.append(worker)
        return worker

    def _start_workers(self) -> list[Any]:
        ray, cluster = self.ray, self.cluster
        cpus = float(ray.cluster_resources().get("CPU", 0))
        count = cluster.workers or max(1, int(cpus // cluster.cpus_per_worker))
        workers = [self._new_worker() for _ in range(count)]
        try:
            self.pids.update(zip(workers, ray.get([w.ready.remote() for w in workers], timeout=cluster.timeout)))
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"the cluster could not start {count} workers of {cluster.cpus_per_worker:g} CPU "
                               f"each within {cluster.timeout:g} s (it has {cpus:g} CPUs); lower [cluster] workers "
                               "or cpus_per_worker, or add nodes") from None
        except ray.exceptions.RayError as err:
            raise ClusterError(f"a rollout worker failed to start: {_cause(err)}") from None
        log.info("ray: %d rollout workers on %g CPUs", count, cpus)
        return workers

    # ------------------------------------------------------------------ playing
    def run(self, plans: Sequence[EpisodePlan], done: set[str] | frozenset[str] = frozenset()) -> Iterator[Episode]:
        """Play every plan whose id is not in ``done``; yield episodes as their blocks finish."""
        blocks = self._blocks(plans, done)
        retries: deque[_Task] = deque()  # blocks whose worker was lost, played first
        flying: dict[Any, tuple[Any, _Task, float]] = {}  # play() ref -> (worker, task, when it started)
        started = time.perf_counter()
        try:
            while True:
                while self.idle:
                    task = retries.popleft() if retries else next(blocks, None)
                    if task is None:
                        break
                    worker = self.idle.popleft()
                    flying[worker.play.remote(task.plans, task.done)] = (worker, task, time.monotonic())
                if not flying:
                    if self.idle:  # every block was handed out and has come back
                        return
                    if all(time.monotonic() - since > self.cluster.timeout for _, since in self.starting.values()):
                        raise ClusterError(f"every rollout worker is gone ({self.lost} lost) and none could be "
                                           f"started in {self.cluster.timeout:g} s; run the same command again to "
                                           "play the rest")
                yield from self._collect(flying, retries)
        finally:
            self.stats.wall_seconds += time.perf_counter() - started

    def _blocks(self, plans: Sequence[EpisodePlan], done: set[str] | frozenset[str]) -> Iterator[_Task]:
        """The blocks of ``plans`` that hold a plan not in ``done`` (made one at a time: plans may be lazy)."""
        pending = iter(plans)
        while block := list(islice(pending, self.block)):
            block_done = frozenset(p.id for p in block if p.id in done)
            if len(block_done) < len(block):
                yield _Task(block, block_done)

    def _collect(self, flying: dict[Any, tuple[Any, _Task, float]], retries: deque[_Task]) -> Iterator[Episode]:
        ray = self.ray
        waiting = [*flying, *self.starting]
        ready, _ = ray.wait(waiting, num_returns=1, timeout=5.0)
        now = time.monotonic()
        for ref, (_, task, since) in list(flying.items()):
            if ref not in ready and now - since > self.cluster.block_timeout:
                raise ClusterError(f"a block of {len(task.plans)} episodes took more than "
                                   f"{self.cluster.block_timeout:g} s on a worker ([cluster] block_timeout)")
        for ref in ready:
            if ref in self.starting:
                worker, _ = self.starting.pop(ref)
                try:
                    self.pids[worker] = ray.get(ref)
                    self.idle.append(worker)
                except ray.exceptions.RayError as err:
                    log.warning("ray: a replacement worker failed to start: %s", _cause(err))
                continue
            worker, task, _ = flying.pop(ref)
            try:
                episodes, stats = ray.get(ref)
            except ray.exceptions.RayTaskError as err:  # an error in our code on the worker: not a lost worker
                raise ClusterError(f"a rollout worker failed: {_cause(err)}") from None
            except ray.exceptions.RayError as err:  # the worker (or its node) is gone
                self._lose(worker, task, retries, err)
                continue
            self.idle.append(worker)
            self._add(stats)
            yield from episodes

    def _lose(self, worker: Any, task: _Task, retries: deque[_Task], err: Exception) -> None:
        self.lost += 1
        task.tries += 1
        if task.tries > self.cluster.retries:
            raise ClusterError(f"a block of {len(task.plans)} episodes lost its worker {task.tries} times (the last: "
                               f"{type(err).__name__}); run the same command again to play it")
        log.warning("ray: a rollout worker was lost (%s); its block of %d episodes goes to another",
                    type(err).__name__, len(task.plans))
        retries.appendleft(task)
        try:
            self.ray.kill(worker)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        if worker in self.workers:
            self.workers.remove(worker)
        self.pids.pop(worker, None)
        replacement = self._new_worker()
        self.starting[replacement.ready.remote()] = (replacement, time.monotonic())

    def _add(self, stats: RolloutStats) -> None:
        for key in ("episodes", "failed", "turns", "legal_turns", "generate_calls", "model_seconds", "replayed"):
            setattr(self.stats, key, getattr(self.stats, key) + getattr(stats, key))

    def close(self) -> None:
        """Stop the workers (and the local Ray instance this rollout started)."""
        for worker in self.workers:
            try:
                self.ray.kill(worker)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._started_ray:
            self.ray.shutdown()


def _cause(err: BaseException) -> str:
    """A Ray error's telling line: the error raised on the worker (``.cause``) when there is one."""
    cause = getattr(err, "cause", None) or err
    return f"{type(cause).__name__}: {error_line(cause)}"
