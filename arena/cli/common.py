"""What the ``arena`` commands share: the application, the consoles, one-line errors, progress bars,
Ctrl-C hints, and the parsing of ``KEY=VALUE`` and ``--agents`` arguments.

Everything that a command module prints goes through :func:`fail` (one error line, secrets redacted,
control characters escaped) or the two consoles.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

import games
from agents.base import PolicyError
from agents.secrets import redact
from arena.play.store import StoreError
from arena.rate import leaderboard
from games.options import OptionError
from games.registry import PluginError, UnknownGameError
from games.text import printable

app = typer.Typer(
    name="arena",
    help="Multi-agent language games for LLMs: play, self-play, tournaments, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

#: Errors that are the user's input, shown as one line without a traceback.
USER_ERRORS = (OptionError, UnknownGameError, PluginError, PolicyError, StoreError, FileNotFoundError,
               NotADirectoryError, ValueError)


class CliError(Exception):
    """A command-line problem to report in one line."""


def fail(message: str, code: int = 2) -> None:
    """Print one error line (secrets redacted, control characters escaped) and exit with ``code``."""
    err_console.print(Text.assemble(("error: ", "bold red"), printable(redact(message))), soft_wrap=True,
                      highlight=False)
    raise typer.Exit(code)


def load_plugins(plugins: list[str] | None) -> None:
    """Load the game plugins named on the command line (``--plugin``)."""
    for plugin in plugins or []:
        added = games.load_plugin(plugin)
        logging.getLogger(__name__).info("plugin %s registered %s", plugin, added)


def parse_key_values(pairs: list[str] | None, what: str = "--option") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, with a clear error for malformed items."""
    out: dict[str, str] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{what} expects KEY=VALUE; got {item!r}")
        out[key.strip()] = value.strip()
    return out


def split_agents(spec: str, roles: tuple[str, ...]) -> dict[str, str]:
    """One spec for every role, or one per role in role order."""
    parts = [p.strip() for p in spec.split(",")]
    if any(not p for p in parts):
        raise CliError(f"--agents has an empty entry: {spec!r}")
    if len(parts) == 1:
        parts = parts * len(roles)
    if len(parts) != len(roles):
        raise CliError(f"--agents gave {len(parts)} agents, but the game has {len(roles)} roles {list(roles)}; "
                       "give one agent for all roles or one per role")
    return dict(zip(roles, parts))


def progress_bar(total: int, description: str) -> Progress:
    """The bar of a run that plays episodes: episodes/s, legal-move rate, failures, time left."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} ep/s · legal {task.fields[legal]} · failed {task.fields[failed]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=err_console, transient=False,
    )


def episode_ticker(progress: Progress, task) -> Callable[[Any, Any], None]:
    """An ``on_episode`` callback that advances the bar with episodes/s, legal-move rate and failures."""
    started = time.perf_counter()

    def on_episode(episode, stats) -> None:
        rate = stats.episodes / max(time.perf_counter() - started, 1e-9)
        progress.update(task, advance=1, rate=f"{rate:.2f}", legal=f"{stats.legal_rate:.1%}", failed=stats.failed)

    return on_episode



@contextmanager
def interrupt_hint(hint: Callable[[], str]) -> Iterator[None]:
    """On Ctrl-C, say what was saved and how to go on (``hint()``), then exit with 130."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(Text(f"interrupted: {hint()}", style="yellow"), soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None


#: Set to 1 to see the traceback of an unexpected error instead of its one-line summary.
DEBUG_ENV = "ARENA_DEBUG"


def describe_failure(err: BaseException) -> str:
    """An error no command expected, as one line that says what to do."""
    if isinstance(err, OSError):
        where = f" ({err.filename})" if err.filename else ""
        if err.errno == errno.ENOSPC:
            return (f"no space left on the device{where}: free some space, then run the same command again "
                    "(what was stored before is kept)")
        return f"{err.strerror or err}{where}"
    return f"{type(err).__name__}: {err} (unexpected; run with {DEBUG_ENV}=1 for the traceback)"


def failure_verdict(failed: int, total: int, retried: int, retried_failed: int, limit: float, what: str) -> str | None:
    """The line that says how many episodes failed (and were retried); an error line when too many did."""
    parts = []
    if retried:
        parts.append(f"{retried} failed episodes of an earlier run retried, {retried_failed} failed again")
    if failed:
        parts.append(f"{failed} of {total} episodes failed (see their 'error' in arena replay); run the same "
                     "command again to retry them")
    if parts:
        console.print(Text("; ".join(parts), style="yellow"), soft_wrap=True, highlight=False)
    if total and failed / total > limit:
        return (f"{what}: {failed / total:.0%} of the episodes failed, more than the allowed {limit:.0%} "
                "([run] max_failed_share); fix the agents' backend and run the same command again to retry them")
    return None


def show_leaderboard(data: dict) -> None:
    """The terminal leaderboard of a tournament: all games, each game, and non-transitive cycles."""
    console.print(leaderboard.terminal_table(data, "Leaderboard (all games)"))
    for key, game in data["by_game"].items():
        console.print(leaderboard.terminal_table(game, f"{key} · {game['mode']}"))
        console.print(Text(f"  {game['note']}", style="dim"))
    if data["cycles"]:
        console.print("non-transitive cycles: " + "; ".join(" > ".join(c + [c[0]]) for c in data["cycles"]))
