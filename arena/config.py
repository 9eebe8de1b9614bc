"""Reading scenario files: TOML checked key by key, the base of every settings section, plugins, overrides.

Every scenario kind (self-play, tournament, training, seed model, ``arena run``)
is read with these pieces, so every one reports a wrong key or value the same
way: an error naming the file, the section, the key, what was expected, and the
closest known key ("did you mean").
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import games
from agents.registry import backend_options
from games.options import Config, OptionError, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ScenarioError", "Section", "check_backend", "check_keys", "load_plugins", "read_toml", "run_table",
           "set_value", "toml_value"]


class ScenarioError(OptionError):
    """A scenario file is missing, unreadable or has a wrong key or value."""


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, with a clear error for a missing file or a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {err.start}); save the scenario as UTF-8") from None


def toml_value(text: str) -> object:
    """A command-line value read as TOML: ``3`` -> 3, ``1e-4`` -> 0.0001, ``true`` -> True, ``[1, 2]`` -> [1, 2];
    anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_value(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"]["c"] = value`` for ``dotted = "a.b.c"``, making the tables on the way (``--set``)."""
    keys = dotted.split(".")
    if any(not k for k in keys):
        raise ScenarioError(f"--set: {dotted!r} is not a key path such as game.options.objective")
    table = data
    for i, key in enumerate(keys[:-1]):
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise ScenarioError(f"--set {dotted}: {'.'.join(keys[:i + 1])} is a value, not a table")
    table[keys[-1]] = value


@dataclass(frozen=True)
class Section(Config):
    _noun = "key"


def check_keys(data: Mapping[str, Any], known: list[str], where: str) -> None:
    """Refuse a top-level key or section that is not in ``known``, suggesting the closest."""
    for key in data:
        if key not in known:
            raise ScenarioError(f"{where}: unknown section or key {key!r}; expected "
                                f"{', '.join(known)}.{suggest(key, known)}")


def load_plugins(data: dict[str, Any], where: str, base: Path) -> tuple[str, ...]:
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ScenarioError(f"{where}: 'plugins' must be a list of game files or modules")
    resolved = []
    for plugin in plugins:
        candidate = base / plugin
        target = str(candidate) if plugin.endswith(".py") and candidate.is_file() else plugin
        games.load_plugin(target)
        resolved.append(target)
    return tuple(resolved)


def check_backend(backend: Any, specs: Iterable[str], where: str) -> dict[str, Any]:
    """A scenario's ``[backend]`` table, checked for every model agent that will get it (before anything is
    loaded or written)."""
    if not isinstance(backend, Mapping):
        raise ScenarioError(f"{where}: [backend] must be a table of options for model backends")
    for spec in sorted(set(specs)):
        try:
            backend_options(spec, dict(backend))
        except OptionError as err:
            raise ScenarioError(f"{where} {err}") from None
    return dict(backend)


def run_table(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A scenario's ``[run]`` keys with the command line's overrides (those given, not None) put over them."""
    return {**dict(data.get("run") or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
