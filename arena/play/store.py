"""The episode store: ``DIR/episodes.jsonl``, one episode a line, appended and flushed as each ends.

Crash safety: a line is written with a single ``write`` and flushed, so a run
killed at any moment (kill -9 included) leaves at most one partial last line.
Readers ignore a last line without its newline; a writer opening the store
cuts such a line off before appending, so no partial episode is ever read
and the interrupted episode is simply played again. The file is synced to
the disk (fsync) when an append comes a second or more after the last sync,
and when the store closes, so a power loss costs at most the episodes since
the last sync, which a resumed run plays again. One process writes a directory at a time
(:class:`arena.output.OutputLock`).

The store stays append-only, and an id may appear more than once: a failed
episode (a backend error) is played again by the next run of the same
command, and the new record supersedes the failed one. Every reader takes
the last record of each id (and says how many it skipped), so a retried
episode is counted, replayed and exported once.

What is written can be read: :meth:`EpisodeStore.append` checks each episode
against the schema (and for numbers JSON cannot hold) before writing it, and
refuses it with the episode named otherwise; secret values are removed from
it first (:mod:`agents.secrets`). Readers check every line before yielding the
first episode, so a corrupt line is reported, with its file and number,
before any work starts.

``DIR/run.json`` records what produced the episodes (game, options, agents,
sampling, seed); a run resumed with different settings is refused instead of
mixing incompatible episodes in one file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agents.secrets import REDACTED, redact, secret_values
from arena.output import OutputLock, atomic_write, fsync_path
from arena.play.episode import Episode, EpisodeFormatError

__all__ = ["EpisodeStore", "StoreError", "read_episodes", "episodes_to_rows"]

log = logging.getLogger(__name__)

#: Seconds between two fsyncs of a store being appended to.
SYNC_INTERVAL_S = 1.0

_WARNED: set[tuple[Path, int]] = set()


class StoreError(RuntimeError):
    """The store cannot be used as asked (locked, incompatible run, unreadable file)."""


def _without_secrets(value: Any, secrets: list[str]) -> Any:
    """``value`` with each of ``secrets`` replaced in every string in it."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _without_secrets(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v, secrets) for v in value]
    return value


def _complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every newline-terminated line."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.endswith(b"\n"):
                yield number, line


def _parse(path: Path, number: int, line: bytes) -> Episode:
    try:
        return Episode.from_dict(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError, EpisodeFormatError, TypeError, ValueError) as err:
        raise StoreError(f"{path}, line {number}: not a valid episode ({err}); remove or repair that line "
                         f"(e.g. sed -i '{number}d' {path}) and run again") from None


def _index(path: Path) -> dict[str, tuple[int, bool]]:
    """Check every line; return each id's last line number and status (ok or not). Say how many records a
    later one of the same id superseded: failed episodes played again (normal), or finished ones stored twice
    (a duplicated line: a warning)."""
    last: dict[str, tuple[int, bool]] = {}
    retried = duplicated = 0
    for number, line in _complete_lines(path):
        if not line.strip():
            continue
        episode = _parse(path, number, line)
        earlier = last.get(episode.id)
        if earlier is not None:
            duplicated += earlier[1]
            retried += not earlier[1]
        last[episode.id] = (number, episode.ok)
    if duplicated and (path, duplicated) not in _WARNED:  # once per process, not at every read
        _WARNED.add((path, duplicated))
        log.warning("%s: %d episodes are stored more than once; each is read once (its last record)", path,
                    duplicated)
    if retried:
        log.info("%s: %d failed records superseded by the episodes' later plays", path, retried)
    return last


def read_episodes(path: str | Path) -> Iterator[Episode]:
    """Every episode in a JSONL file, the last record of each id, in file order (a partial last line is
    skipped). Every line is checked before the first episode is yielded."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no episode file at {path}")
    last = _index(path)
    keep = {number for number, _ in last.values()}
    end = max(keep, default=0)

    def episodes() -> Iterator[Episode]:
        for number, line in _complete_lines(path):
            if number > end:  # lines a writer appended after the check
                break
            if number in keep:
                yield _parse(path, number, line)

    return episodes()


class EpisodeStore:
    """Append-only episode storage in a directory."""

    FILE = "episodes.jsonl"
    META = "run.json"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / self.FILE
        self._handle = None
        self._lock: OutputLock | None = None
        self._status: dict[str, bool] | None = None  # id -> whether its last record finished ok
        self._synced = 0.0

    # ------------------------------------------------------------------ writing
    def open(self, run: dict[str, Any] | None = None, *, locked: bool = False) -> EpisodeStore:
        """Open for appending (checking every stored line); check ``run`` against what the directory was
        made with. ``locked``: the caller already holds the directory's :class:`OutputLock`."""
        if not locked:
            lock = OutputLock(self.directory)
            try:
                lock.acquire()
            except RuntimeError as err:
                raise StoreError(str(err)) from None
            self._lock = lock
        try:
            if run is not None:
                self._check_run(run)
            self._cut_partial_line()
            self._status = self._read_status()
            new = not self.path.exists()
            self._handle = open(self.path, "ab")
            if new:
                fsync_path(self.directory)  # the new file's entry in its folder is durable too
        except BaseException:
            self.close()
            raise
        self._synced = time.monotonic()
        return self

    def _check_run(self, run: dict[str, Any]) -> None:
        meta = self.directory / self.META
        if meta.is_file():
            try:
                stored = json.loads(meta.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise StoreError(f"{meta} is not readable JSON ({err}); restore it, or use another --out") from None
            different = sorted(k for k in set(stored) | set(run) if stored.get(k) != run.get(k))
            if different:
                details = "; ".join(f"{k}: stored {stored.get(k)!r}, now {run.get(k)!r}" for k in different)
                raise StoreError(
                    f"{self.directory} holds episodes of a different run ({details}); "
                    "use another --out directory, or remove it to start over"
                )
        else:
            atomic_write(meta, json.dumps(run, indent=1, sort_keys=True, default=str) + "\n")

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
        """Check one episode, write it as one line and flush it (synced at most once a second)."""
        if self._handle is None:
            raise StoreError("the store is not open for writing; call open() first")
        if episode.error:
            episode.error = redact(episode.error)
        try:
            # secrets are removed from the values, not from the JSON text (a value may hold one escaped, and
            # a secret made of digits must not cut a number); the line checked is the line written
            data = episode.to_dict()
            secrets = secret_values()
            line = json.dumps(_without_secrets(data, secrets) if secrets else data, ensure_ascii=False,
                              allow_nan=False, default=str)
            Episode.from_dict(json.loads(line))
        except (ValueError, TypeError) as err:  # EpisodeFormatError is a ValueError
            raise StoreError(f"episode {episode.id!r} was not stored: its readers could not read it back "
                             f"({err})") from None
        self._handle.write((line + "\n").encode("utf-8"))
        self._handle.flush()
        if time.monotonic() - self._synced >= SYNC_INTERVAL_S:
            self.sync()
        if self._status is not None:
            self._status[episode.id] = episode.ok

    def sync(self) -> None:
        """Make what was appended durable (fsync)."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        if self._handle is not None:
            try:
                self.sync()
            finally:
                self._handle.close()
                self._handle = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def _read_status(self) -> dict[str, bool]:
        if not self.path.is_file():
            return {}
        last = _index(self.path)
        return {episode_id: ok for episode_id, (_, ok) in last.items()}

    def ids(self) -> set[str]:
        """Ids of the episodes stored (finished or failed)."""
        if self._status is None:
            self._status = self._read_status()
        return set(self._status)

    def done_ids(self) -> set[str]:
        """Ids of the episodes stored as finished: what a resumed run need not play again (a failed
        episode is played again, and its new record supersedes the failed one)."""
        if self._status is None:
            self._status = self._read_status()
        return {episode_id for episode_id, ok in self._status.items() if ok}

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
            import pyarrow as pa  # optional (the `data` extra): only for an export
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
            import datasets  # optional (the `data` extra)
        except ImportError:
            raise StoreError("loading as a Dataset needs the datasets package: pip install datasets") from None
        return datasets.Dataset.from_list(episodes_to_rows(self))


def episodes_to_rows(episodes: Iterable[Episode]) -> list[dict[str, Any]]:
    """Flat, columnar-friendly rows: options, roles, scores and metrics as JSON text; turns kept as records.
    Errors are redacted again (a store written before redaction existed may hold a key in one)."""
    rows = []
    for e in episodes:
        d = e.to_dict()
        d["error"] = redact(d["error"]) if d["error"] else d["error"]
        for key in ("options", "roles", "briefs", "scores", "metrics"):
            d[key] = json.dumps(d[key], sort_keys=True)
        for turn in d["turns"]:
            turn["rewards"] = json.dumps(turn["rewards"], sort_keys=True)
        rows.append(d)
    return rows
