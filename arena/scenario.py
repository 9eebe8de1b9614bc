"""Scenario files: TOML that drives the arena commands, checked key by key.

A self-play scenario::

    plugins = []                     # game files or modules to load first (optional)

    [game]
    id = "negotiation-v0"
    options = { objective = "semi" }

    [agents]                         # one spec per role, or `all = "seed"`
    player_0 = "seed"
    player_1 = "scripted"

    [sampling]                       # for model agents
    temperature = 1.0
    top_p = 1.0
    max_new_tokens = 96

    [backend]                        # options for model backends (device, dtype, max_batch_size, ...)

    [run]
    episodes = 64
    concurrency = 16
    seed = 0
    out = "runs/selfplay"

Every unknown key or bad value is an error naming the file, the section, the
key, what was expected, and the closest known key.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import games
from agents.registry import backend_options
from agents.sampling import SamplingConfig
from games.options import Config, OptionError, option, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ScenarioError", "GameSection", "RunSection", "SelfPlayScenario", "read_toml", "resolve_roles", "run_table",
           "load_selfplay", "check_backend"]


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


@dataclass(frozen=True)
class Section(Config):
    _noun = "key"


@dataclass(frozen=True)
class GameSection(Section):
    id: str = option("", "the game id, e.g. negotiation-v0 (see `arena games`)")
    options: dict[str, Any] = option({}, "game options (see `arena games ID`)")

    def validate(self) -> None:
        if not self.id:
            raise ScenarioError("key 'id' is required: the game to play, e.g. id = \"negotiation-v0\"")
        spec = games.get_spec(self.id)
        spec.cls.options_class.from_mapping(self.options, source=f"options of {self.id}")


@dataclass(frozen=True)
class RunSection(Section):
    episodes: int = option(64, "episodes to play", min=1)
    concurrency: int = option(16, "episodes played at once (their turns are batched)", min=1, max=4096)
    seed: int = option(0, "run seed: episode i gets a seed derived from (seed, i)", min=0)
    out: str = option("", "output directory (default: runs/<scenario name>)")
    block: int = option(0, "episodes scheduled together for exact resume (0: 4 x concurrency)", min=0)
    max_failed_share: float = option(0.1, "exit with status 1 when more than this share of the episodes failed "
                                     "(backend errors); run the command again to retry them", min=0.0, max=1.0)


def resolve_roles(agents: Mapping[str, Any], roles: tuple[str, ...], where: str) -> dict[str, str]:
    """Map every role to an agent spec from an [agents] table (role = spec, or all = spec)."""
    out: dict[str, str] = {}
    for key, spec in agents.items():
        if not isinstance(spec, str) or not spec.strip():
            raise ScenarioError(f"{where}: agent for {key!r} must be a spec string such as \"scripted\"; got {spec!r}")
        if key == "all":
            continue
        if key not in roles:
            raise ScenarioError(f"{where}: {key!r} is not a role of this game; roles are "
                                f"{', '.join(roles)} (or 'all').{suggest(key, list(roles))}")
        out[key] = spec.strip()
    for role in roles:
        if role not in out:
            if "all" not in agents:
                raise ScenarioError(f"{where}: no agent for role {role!r}; give one per role or all = \"...\"")
            out[role] = str(agents["all"]).strip()
    return out


@dataclass(frozen=True)
class SelfPlayScenario:
    """A checked self-play scenario."""

    path: Path
    game: GameSection
    roles: dict[str, str]
    sampling: SamplingConfig
    backend: dict[str, Any]
    run: RunSection
    plugins: tuple[str, ...]

    @property
    def out(self) -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / self.path.stem


def _top_level(data: dict[str, Any], known: list[str], where: str) -> None:
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


def load_selfplay(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SelfPlayScenario:
    """Read and check a self-play scenario; ``overrides`` replace [run] keys (from CLI flags)."""
    path = Path(path)
    data = read_toml(path)
    where = str(path)
    _top_level(data, ["plugins", "game", "agents", "sampling", "backend", "run"], where)
    plugins = load_plugins(data, where, path.parent)
    try:
        game = GameSection.from_mapping(data.get("game"), source=f"{where} [game]")
        roles = games.make(game.id, **game.options).roles
        agents = data.get("agents")
        if not isinstance(agents, Mapping) or not agents:
            raise ScenarioError(f"{where}: an [agents] section is required (role = \"spec\" or all = \"spec\")")
        run = RunSection.from_mapping(run_table(data, overrides), source=f"{where} [run]")
        sampling = SamplingConfig.from_mapping(data.get("sampling"), where=f"{where} [sampling]")
    except OptionError as err:
        raise ScenarioError(str(err)) from None
    except games.UnknownGameError as err:
        raise ScenarioError(f"{where} [game]: {err}") from None
    roles = resolve_roles(agents, roles, f"{where} [agents]")
    backend = check_backend(data.get("backend") or {}, roles.values(), where)
    return SelfPlayScenario(path, game, roles, sampling, backend, run, plugins)
