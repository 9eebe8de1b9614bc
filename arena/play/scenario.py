"""The self-play scenario: which game, who plays each role, sampling, backend, and the run.

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

    [cluster]                        # optional: play on Ray workers (the `ray` extra; docs/scaling.md)
    address = "local"                # or HOST:PORT of a running cluster; --ray ADDRESS on the command line
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import games
from agents.sampling import SamplingConfig
from arena.config import ScenarioError, Section, check_backend, check_keys, load_plugins, read_toml, run_table
from arena.play.cluster import ClusterSection
from games.options import OptionError, option, suggest

__all__ = ["GameSection", "SelfPlayRunSection", "SelfPlayScenario", "cluster_section", "load_selfplay",
           "resolve_roles", "selfplay_scenario"]


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
class SelfPlayRunSection(Section):
    episodes: int = option(64, "episodes to play", min=1)
    concurrency: int = option(16, "episodes played at once (their turns are batched)", min=1, max=4096)
    seed: int = option(0, "run seed: episode i gets a seed derived from (seed, i)", min=0)
    out: str = option("", "output directory (default: runs/<scenario name>)")
    block: int = option(0, "episodes scheduled together for exact resume (0: 4 x concurrency)", min=0)
    threads: int = option(0, "torch CPU threads of this process's models (0: torch's default); a [cluster]'s "
                          "workers take theirs from [cluster] threads", min=0)
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
    run: SelfPlayRunSection
    plugins: tuple[str, ...]
    cluster: ClusterSection = ClusterSection()

    @property
    def out(self) -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / self.path.stem


def load_selfplay(path: str | Path, overrides: Mapping[str, Any] | None = None,
                  ray: str | None = None) -> SelfPlayScenario:
    """Read and check a self-play scenario file; ``overrides`` replace [run] keys (from CLI flags), ``ray``
    the [cluster] address (``--ray``)."""
    path = Path(path)
    return selfplay_scenario(read_toml(path), path, overrides, ray)


def cluster_section(data: Mapping[str, Any], where: str, ray: str | None = None) -> ClusterSection:
    """A scenario's [cluster] section, its address replaced by ``--ray`` when given."""
    table = data.get("cluster") or {}
    if not isinstance(table, Mapping):
        raise ScenarioError(f"{where}: [cluster] must be a table of keys")
    try:
        return ClusterSection.from_mapping({**table, **({"address": ray} if ray is not None else {})},
                                           source=f"{where} [cluster]")
    except OptionError as err:
        raise ScenarioError(str(err)) from None


def selfplay_scenario(data: Mapping[str, Any], path: Path, overrides: Mapping[str, Any] | None = None,
                      ray: str | None = None) -> SelfPlayScenario:
    """Check a self-play scenario given as data (``path`` names it in errors, and relative plugin files and the
    default output directory are found from it)."""
    where = str(path)
    check_keys(data, ["plugins", "game", "agents", "sampling", "backend", "run", "cluster"], where)
    plugins = load_plugins(data, where, path.parent)
    try:
        game = GameSection.from_mapping(data.get("game"), source=f"{where} [game]")
        roles = games.make(game.id, **game.options).roles
        agents = data.get("agents")
        if not isinstance(agents, Mapping) or not agents:
            raise ScenarioError(f"{where}: an [agents] section is required (role = \"spec\" or all = \"spec\")")
        run = SelfPlayRunSection.from_mapping(run_table(data, overrides), source=f"{where} [run]")
        sampling = SamplingConfig.from_mapping(data.get("sampling"), where=f"{where} [sampling]")
    except OptionError as err:
        raise ScenarioError(str(err)) from None
    except games.UnknownGameError as err:
        raise ScenarioError(f"{where} [game]: {err}") from None
    roles = resolve_roles(agents, roles, f"{where} [agents]")
    backend = check_backend(data.get("backend") or {}, roles.values(), where)
    return SelfPlayScenario(path, game, roles, sampling, backend, run, plugins, cluster_section(data, where, ray))
