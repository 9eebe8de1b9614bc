"""An output directory: one writer at a time, and writes that survive a crash or a power loss.

:class:`OutputLock` is an exclusive lock on ``OUT/.lock`` that names its holder.
:func:`atomic_write`, :func:`sync_folder` and :func:`fsync_path` make what a
resume relies on durable: a file is replaced whole or not at all, and a folder
is on the disk before it is renamed into place.

Every command that writes an output directory (self-play, tournaments,
training, ``arena run``) holds this lock for as long as it writes, so two
processes never append to one store or write one checkpoint. The lock file
holds the holder's PID, and the error a second process gets names it.

The lock is the operating system's (``flock``): it goes with the process, so
a killed run leaves nothing to clean up. It is not re-entrant: a training
session that holds its directory opens the episode store in it with
``EpisodeStore.open(locked=True)``.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import IO, Any

try:  # POSIX file locks; on other systems the directory works without the lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputLock", "OutputLockedError", "atomic_write", "fsync_path", "sync_folder", "write_failure"]

class OutputLockedError(RuntimeError):
    """Another process is writing the directory."""


class OutputLock:
    """``with OutputLock(directory):`` holds the directory's lock (creating the directory)."""

    FILE = ".lock"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._handle: IO[str] | None = None
        self._held = False

    def acquire(self) -> OutputLock:
        if self._held:
            return self
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"{self.directory} is a file; the output must be a directory: "
                                     "choose another --out")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise NotADirectoryError(f"{self.directory} cannot be made: a file stands on its path; choose another "
                                     "--out") from None
        self._handle = self._take(self.directory / self.FILE)
        self._held = True
        return self

    def _take(self, path: Path) -> IO[str] | None:
        if fcntl is None:  # pragma: no cover
            return None
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f"another process (PID {holder})" if holder.isdigit() else "another process"
            raise OutputLockedError(f"{who} is writing {self.directory}; wait for it to finish (or stop it), "
                                    "or use another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the flock
        self._handle, self._held = None, False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def write_failure(err: BaseException, where: Path) -> str:
    """Why a write under ``where`` failed, in words: a full disk (torch says "unexpected pos", safetensors
    "No space left") is named as such, with the free space; anything else as the error says."""
    free = shutil.disk_usage(where).free
    full = free < 256 * 2**20 or getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)
    return f"the disk is full ({free / 2**20:.1f} MiB free)" if full else f"{type(err).__name__}: {str(err)[:200]}"


def fsync_path(path: Path) -> None:
    """Sync a file or a directory (its entries: a rename into it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once, durably (a crash leaves the old or the new file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync every file in ``folder`` and the folder itself (before it is renamed into place)."""
    for file in folder.rglob("*"):
        if file.is_file():
            fsync_path(file)
    fsync_path(folder)
