"""``arena train --nproc N``: start N ranks of the same command on this machine, as torchrun does.

Each rank is ``python -m arena train ...`` with torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Rank 0 prints to the terminal; the others' output goes
to ``OUT/ranks/rank-R.log`` (appended). Each rank has one torch thread unless ``OMP_NUM_THREADS`` or
``[run] threads`` says otherwise, as under torchrun. When a rank fails or is killed, the others are stopped
and the launcher says which rank and why, in one line; ``--resume`` continues from the last checkpoint.
Ctrl-C or SIGTERM (which the command turns into Ctrl-C) stops every rank. Across machines, use torchrun
itself (docs/scaling.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["launch"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _last_error(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1].removeprefix("error: ")[:300]


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(nproc: int, args: list[str], out: Path) -> tuple[int, str | None]:
    """Run ``arena ARGS`` as ``nproc`` ranks; (exit code, a line saying what failed, or None)."""
    logs = out / "ranks"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    env.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: ranks sharing a machine, one thread each by default
    procs = []
    for rank in range(nproc):
        log = None if rank == 0 else (logs / f"rank-{rank}.log").open("a")  # appended: another run's stay
        procs.append(subprocess.Popen([sys.executable, "-m", "arena", *args], stdout=log or None,
                                      stderr=subprocess.STDOUT if log else None,
                                      env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
        if log is not None:
            log.close()
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                rank, code = failed[0]
                _stop(procs)
                why = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                cause = _last_error(logs / f"rank-{rank}.log") if rank else ""
                return (1 if code < 0 else code), (f"rank {rank} of {nproc} {why}{': ' + cause if cause else ''}; "
                                                   "the other ranks were stopped; continue with --resume")
            if all(code == 0 for code in codes):
                return 0, None
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs)
        raise
