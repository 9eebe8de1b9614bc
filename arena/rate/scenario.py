"""A tournament scenario: its agents, games (with fixed partners), schedule, ratings and run settings.

``load_tournament(path)`` reads and checks a TOML file (see docs/tournaments.md); every unknown key
or bad value is a :class:`~arena.config.ScenarioError` naming the file, the table and what was
expected. Playing it is :mod:`arena.rate.tournament`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import games
from agents.sampling import SamplingConfig
from arena.config import ScenarioError, Section, check_backend, check_keys, load_plugins, read_toml, run_table
from arena.play.cluster import ClusterSection
from arena.play.episode import SCHEMA_VERSION
from arena.play.scenario import cluster_section
from games.options import OptionError, option

__all__ = ["GameEntry", "Tournament", "ScheduleSection", "RatingsSection", "TournamentRunSection", "load_tournament",
           "tournament_scenario",
           "partner_name"]

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class GameEntry:
    """One game of the tournament: its key (unique name), id, options, the roles the pool's agents play,
    comparison mode, and fixed partners in the other roles (role -> agent spec)."""

    key: str
    id: str
    options: dict[str, Any]
    roles: tuple[str, ...]
    mode: str
    partners: Mapping[str, str] = field(default_factory=dict)

    def seats(self, agents: Mapping[str, str]) -> dict[str, str]:
        """Pool agents' seats (role -> agent name) with the partners added."""
        return {**agents, **{role: partner_name(spec) for role, spec in self.partners.items()}}


def partner_name(spec: str) -> str:
    """The name a fixed partner plays under in episodes (never a pool agent's name: ':' is not allowed there)."""
    return f"partner:{spec}"


@dataclass(frozen=True)
class ScheduleSection(Section):
    kind: str = option("round-robin", "who meets whom", choices=("round-robin", "swiss"))
    games_per_pairing: int = option(4, "seeds per pairing and game (each played in every seat arrangement)", min=1)
    rounds: int = option(3, "rounds of a swiss schedule", min=1)
    seed: int = option(0, "tournament seed", min=0)


@dataclass(frozen=True)
class RatingsSection(Section):
    bootstrap: int = option(500, "bootstrap resamples for the Bradley-Terry intervals", min=10)
    level: float = option(0.95, "confidence level of the intervals", min=0.5, max=0.999)


@dataclass(frozen=True)
class TournamentRunSection(Section):
    concurrency: int = option(32, "episodes played at once", min=1)
    out: str = option("", "output directory (default: runs/<scenario name>)")
    max_failed_share: float = option(0.1, "exit with status 1 when more than this share of the episodes failed "
                                     "(backend errors); run the command again to retry them", min=0.0, max=1.0)
    threads: int = option(0, "torch CPU threads of this process's models (0: torch's default); a [cluster]'s "
                          "workers take theirs from [cluster] threads", min=0)


@dataclass(frozen=True)
class Tournament:
    """A checked tournament scenario."""

    path: Path
    agents: dict[str, str]  # display name -> agent spec
    games: tuple[GameEntry, ...]
    schedule: ScheduleSection
    ratings: RatingsSection
    sampling: SamplingConfig
    backend: dict[str, Any]
    run: TournamentRunSection
    plugins: tuple[str, ...] = ()
    cluster: ClusterSection = ClusterSection()

    @property
    def out(self) -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / self.path.stem

    def info(self) -> dict[str, Any]:
        """The settings a resumed tournament must share with the stored one."""
        return {
            "schema_version": SCHEMA_VERSION,
            "agents": self.agents,
            "games": [{"key": g.key, "id": g.id, "options": g.options, **({"partners": dict(g.partners)}
                                                                           if g.partners else {})}
                      for g in self.games],
            "schedule": self.schedule.to_dict(),
            "sampling": self.sampling.to_dict(),
        }

    @classmethod
    def from_info(cls, info: dict[str, Any], out: Path, ratings: dict[str, Any] | None = None) -> Tournament:
        """Rebuild a tournament from what a run stored (for `arena report`)."""
        return cls(
            path=Path(info.get("scenario", out / "tournament.toml")),
            agents=dict(info["agents"]),
            games=_games(info["games"], str(out / "tournament.json")),
            schedule=ScheduleSection.from_mapping(info["schedule"]),
            ratings=RatingsSection.from_mapping(ratings or info.get("ratings") or {}),
            sampling=SamplingConfig.from_mapping(info["sampling"]),
            backend={},
            run=TournamentRunSection(out=str(out)),
        )


def _games(entries: Any, where: str) -> tuple[GameEntry, ...]:
    if not isinstance(entries, list) or not entries:
        raise ScenarioError(f"{where}: give at least one [[games]] table with an id (and options)")
    out: list[GameEntry] = []
    for n, entry in enumerate(entries, 1):
        here = f"{where} [[games]] #{n}"
        if isinstance(entry, str):
            entry = {"id": entry}
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise ScenarioError(f"{here}: expected a table with 'id' (and optionally 'options' and 'key')")
        unknown = sorted(set(entry) - {"id", "options", "key", "partners"})
        if unknown:
            raise ScenarioError(f"{here}: unknown keys {unknown}; a game takes id, options, key and partners")
        try:
            env = games.make(entry["id"], **dict(entry.get("options") or {}))
        except (OptionError, games.UnknownGameError) as err:
            raise ScenarioError(f"{here}: {err}") from None
        partners = entry.get("partners") or {}
        if not isinstance(partners, Mapping) or not all(isinstance(v, str) and v.strip() for v in partners.values()):
            raise ScenarioError(f"{here}: partners must be a table of role = \"agent spec\", "
                                f"e.g. partners = {{ {env.roles[-1]} = \"scripted\" }}")
        strange = sorted(set(partners) - set(env.roles))
        if strange:
            raise ScenarioError(f"{here}: partners names roles {strange} that {entry['id']} does not have; "
                                f"its roles are {', '.join(env.roles)}")
        played = tuple(r for r in env.roles if r not in partners)
        if not played:
            raise ScenarioError(f"{here}: partners fill every role of {entry['id']}; leave at least one role "
                                f"for the agents being rated")
        key = str(entry.get("key") or entry["id"])
        # one role left to the pool: agents can only be compared playing it on the same seeds
        mode = "same-seat" if partners and len(played) == 1 else env.tournament_mode()
        out.append(GameEntry(key, entry["id"], env.options.to_dict(), played, mode,
                             {r: v.strip() for r, v in partners.items()}))
    keys = [g.key for g in out]
    if len(set(keys)) != len(keys):
        raise ScenarioError(f"{where}: two [[games]] share a key; give each a distinct key = \"...\"")
    return tuple(out)


def load_tournament(path: str | Path, out: str | None = None, ray: str | None = None) -> Tournament:
    """Read and check a tournament scenario file (``out`` overrides its ``[run] out``, ``ray`` its
    ``[cluster] address``)."""
    path = Path(path)
    return tournament_scenario(read_toml(path), path, out, ray)


def tournament_scenario(data: Mapping[str, Any], path: Path, out: str | None = None,
                        ray: str | None = None) -> Tournament:
    """Check a tournament scenario given as data (``path`` names it in errors, anchors relative plugin files and
    gives the default output directory)."""
    where = str(path)
    check_keys(data, ["plugins", "agents", "games", "schedule", "ratings", "sampling", "backend", "run", "cluster"],
               where)
    plugins = load_plugins(data, where, path.parent)
    agents = data.get("agents")
    if not isinstance(agents, Mapping) or len(agents) < 2:
        raise ScenarioError(f"{where}: [agents] must name at least two agents: name = \"spec\"")
    for name, spec in agents.items():
        if not _NAME.match(name):
            raise ScenarioError(f"{where} [agents]: agent name {name!r} may use letters, digits and _ . + - only")
        if not isinstance(spec, str) or not spec.strip():
            raise ScenarioError(f"{where} [agents]: {name} must be an agent spec string such as \"scripted\"")
    try:
        schedule = ScheduleSection.from_mapping(data.get("schedule"), source=f"{where} [schedule]")
        ratings = RatingsSection.from_mapping(data.get("ratings"), source=f"{where} [ratings]")
        run = TournamentRunSection.from_mapping(run_table(data, {"out": out}), source=f"{where} [run]")
        sampling = SamplingConfig.from_mapping(data.get("sampling"), where=f"{where} [sampling]")
    except OptionError as err:
        raise ScenarioError(str(err)) from None
    pool = {k: v.strip() for k, v in agents.items()}
    entries = _games(data.get("games"), where)
    specs = [*pool.values(), *(spec for g in entries for spec in g.partners.values())]
    return Tournament(path, pool, entries, schedule, ratings, sampling,
                      check_backend(data.get("backend") or {}, specs, where), run, plugins,
                      cluster_section(data, where, ray))
