"""The episode store: ``DIR/episodes.jsonl``, one episode a line, appended and flushed as each ends.

Crash safety: a line is written with a single ``write`` and flushed, so a run
killed at any moment (kill -9 included) leaves at most one partial last line.
Readers ignore a last line without its newline; a writer opening the store
cuts such a line off before appending, so no partial episode is ever read
and the interrupted episode is simply played again. One process writes a
store at a time (an exclusive lock on ``DIR/.lock``).

``DIR/run.json`` records what produced the episodes (game, options, agents,
sampling, seed); a run resumed with different settings is refused instead of
mixing incompatible episodes in one file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from arena.episode import Episode, EpisodeFormatError

__all__ = ["EpisodeStore", "StoreError", "read_episodes", "episodes_to_rows"]

try:  # POSIX file locks; on other systems the store works without the lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class StoreError(RuntimeError):
    """The store cannot be used as asked (locked, incompatible run, unreadable file)."""


def _complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every newline-terminated line."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.endswith(b"\n"):
                yield number, line


def read_episodes(path: str | Path) -> Iterator[Episode]:
    """Every complete episode in a JSONL file (a partial last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no episode file at {path}")
    for number, line in _complete_lines(path):
        if not line.strip():
            continue
        try:
            yield Episode.from_dict(json.loads(line))
        except (json.JSONDecodeError, EpisodeFormatError, TypeError) as err:
            raise StoreError(f"{path}, line {number}: not a valid episode ({err})") from None


class EpisodeStore:
    """Append-only episode storage in a directory."""

    FILE = "episodes.jsonl"
    META = "run.json"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / self.FILE
        self._handle = None
        self._lock = None
        self._ids: set[str] | None = None

    # ------------------------------------------------------------------ writing
    def open(self, run: dict[str, Any] | None = None) -> EpisodeStore:
        """Open for appending; check ``run`` against what the directory was made with."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            self._lock = open(self.directory / ".lock", "w")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                self._lock = None
                raise StoreError(f"another process is writing {self.directory}; wait for it or use another --out") \
                    from None
        if run is not None:
            self._check_run(run)
        self._cut_partial_line()
        self._handle = open(self.path, "ab")
        return self

    def _check_run(self, run: dict[str, Any]) -> None:
        meta = self.directory / self.META
        if meta.is_file():
            stored = json.loads(meta.read_text(encoding="utf-8"))
            different = sorted(k for k in set(stored) | set(run) if stored.get(k) != run.get(k))
            if different:
                details = "; ".join(f"{k}: stored {stored.get(k)!r}, now {run.get(k)!r}" for k in different)
                raise StoreError(
                    f"{self.directory} holds episodes of a different run ({details}); "
                    "use another --out directory, or remove it to start over"
                )
        else:
            meta.write_text(json.dumps(run, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")

    def _cut_partial_line(self) -> None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            size = f.seek(0, os.SEEK_END)
            step = 1 << 16
            end = size
            while end > 0:  # find the last newline from the end
                start = max(0, end - step)
                f.seek(start)
                chunk = f.read(end - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    f.truncate(start + cut + 1)
                    return
                end = start
            f.truncate(0)

    def append(self, episode: Episode) -> None:
        """Write one episode as one line and flush it."""
        if self._handle is None:
            raise StoreError("the store is not open for writing; call open() first")
        line = json.dumps(episode.to_dict(), ensure_ascii=False, allow_nan=False, default=str) + "\n"
        self._handle.write(line.encode("utf-8"))
        self._handle.flush()
        if self._ids is not None:
            self._ids.add(episode.id)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def ids(self) -> set[str]:
        """Ids of the complete episodes stored."""
        if self._ids is None:
            self._ids = {e.id for e in self} if self.path.is_file() else set()
        return self._ids

    def __iter__(self) -> Iterator[Episode]:
        if not self.path.is_file():
            return iter(())
        return read_episodes(self.path)

    def run_info(self) -> dict[str, Any]:
        meta = self.directory / self.META
        return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}

    # ------------------------------------------------------------------ export
    def to_parquet(self, path: str | Path) -> Path:
        """Write the episodes to a Parquet file (one row an episode; turns as a list of structs)."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise StoreError("Parquet export needs pyarrow: pip install pyarrow") from None
        table = pa.Table.from_pylist(episodes_to_rows(self))
        path = Path(path)
        pq.write_table(table, path)
        return path

    def to_dataset(self) -> Any:
        """The episodes as a ``datasets.Dataset``."""
        try:
            import datasets
        except ImportError:
            raise StoreError("loading as a Dataset needs the datasets package: pip install datasets") from None
        return datasets.Dataset.from_list(episodes_to_rows(self))


def episodes_to_rows(episodes: Iterable[Episode]) -> list[dict[str, Any]]:
    """Flat, columnar-friendly rows: options, roles, scores and metrics as JSON text; turns kept as records."""
    rows = []
    for e in episodes:
        d = e.to_dict()
        for key in ("options", "roles", "briefs", "scores", "metrics"):
            d[key] = json.dumps(d[key], sort_keys=True)
        for turn in d["turns"]:
            turn["rewards"] = json.dumps(turn["rewards"], sort_keys=True)
        rows.append(d)
    return rows
