"""A real Ray cluster on this machine for the tests: a head and further nodes, each `ray start ... --block` in
a process group of its own (started and stopped here; `ray stop` would stop every cluster on the machine).
Token authentication with the test session's own token (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.servers import free_port

RAY = str(Path(sys.executable).parent / "ray")


class RayCluster:
    """``with RayCluster(tmp) as cluster:`` a head with ``cpus`` CPUs; :meth:`add_node` adds a node."""

    def __init__(self, folder: Path, cpus: int = 1):
        self.folder, self.cpus = folder, cpus
        self.nodes: list[subprocess.Popen] = []
        self.address = ""

    def _start(self, args: list[str], name: str) -> tuple[subprocess.Popen, Path]:
        log = self.folder / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([RAY, "start", *args, "--block", "--disable-usage-stats"], stdout=out,
                                    stderr=subprocess.STDOUT, env=os.environ.copy(),
                                    start_new_session=True)
        self.nodes.append(proc)
        return proc, log

    def _wait_for(self, log: Path, proc: subprocess.Popen, pattern: str, seconds: float = 90) -> re.Match:
        deadline = time.time() + seconds
        while time.time() < deadline:
            found = re.search(pattern, log.read_text(errors="replace"))
            if found:
                return found
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"ray start did not get ready in {seconds} s: {log.read_text()[-2000:]}")

    def __enter__(self) -> RayCluster:
        port = free_port()
        proc, log = self._start(["--head", f"--port={port}", f"--num-cpus={self.cpus}", "--include-dashboard=false",
                                 f"--temp-dir={self.folder / 'ray'}"], "head")
        self.address = self._wait_for(log, proc, r"ray start --address='([^']+)'").group(1)
        self._wait_for(log, proc, r"block forever")
        return self

    def add_node(self, cpus: int = 1) -> subprocess.Popen:
        proc, log = self._start([f"--address={self.address}", f"--num-cpus={cpus}"], f"node{len(self.nodes)}")
        self._wait_for(log, proc, r"block forever")
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Stop a node: SIGTERM lets `ray start --block` stop its processes; SIGKILL takes the node away at
        once, as a lost machine: the launcher, its raylet and the workers the raylet started (found by
        process ancestry: they do not all stay in the launcher's process group)."""
        import psutil  # a dependency of Ray's

        if proc.poll() is not None:
            return
        family = []
        if sig == signal.SIGKILL:
            try:
                family = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        os.killpg(proc.pid, sig)
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.nodes):
            self.kill(proc, signal.SIGTERM)

