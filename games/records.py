"""Reading a user's JSONL data files (tasks, cases) with errors that name the file and line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from games.options import OptionError

__all__ = ["load_jsonl"]

T = TypeVar("T")


@lru_cache(maxsize=32)
def _load(path: str, mtime: float, parse: Callable[[dict[str, Any], str], Any], what: str) -> tuple[Any, ...]:
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise OptionError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise OptionError(f"{where}: expected a JSON object, got {type(record).__name__}")
            records.append(parse(record, where))
    if not records:
        raise OptionError(f"{path}: the {what} file has no {what}s")
    return tuple(records)


def load_jsonl(path: str, parse: Callable[[dict[str, Any], str], T], what: str) -> tuple[T, ...]:
    """Parse every non-blank line of a JSONL file with ``parse(record, where)``.

    Results are cached until the file changes. ``parse`` raises :class:`OptionError` naming ``where``
    (file and line) for a bad record.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise OptionError(f"{what} file {path!r} not found")
    return _load(full, os.path.getmtime(full), parse, what)
