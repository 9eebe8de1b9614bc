"""The ``arena`` command line.

    arena games                               # every registered game
    arena games negotiation-v0                # its card and options
    arena play negotiation-v0 --agents scripted,human --seed 3 --option objective=coop
    arena selfplay scenarios/selfplay-negotiation.toml
    arena tournament scenarios/tournament.toml
    arena train scenarios/train-refine-score.toml
    arena run scenarios/quickstart.toml

This module holds the application and what the commands share; the commands
live beside it: ``play`` (games, play, replay, export), ``selfplay``,
``rating`` (tournament, report) and ``training`` (train, run, seed-model).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
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
from agents.secrets import RedactingFilter, redact
from arena.play.store import StoreError
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


def _fail(message: str, code: int = 2) -> None:
    """Print one error line (secrets redacted, control characters escaped) and exit with ``code``."""
    err_console.print(Text.assemble(("error: ", "bold red"), printable(redact(message))), soft_wrap=True,
                      highlight=False)
    raise typer.Exit(code)


def _load_plugins(plugins: list[str] | None) -> None:
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


def _progress(total: int, description: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} ep/s · legal {task.fields[legal]} · failed {task.fields[failed]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=err_console, transient=False,
    )


def _episode_ticker(progress: Progress, task) -> Callable[[Any, Any], None]:
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


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: every error is one line on stderr (exit 2: bad input; 1: the run failed)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    signal.signal(signal.SIGTERM, _terminate)  # `kill PID` ends a run as Ctrl-C does: saved, and said so
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except Exception as err:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        err_console.print(Text.assemble(("error: ", "bold red"), printable(redact(describe_failure(err)))),
                          soft_wrap=True, highlight=False)
        sys.exit(1)


# The commands register themselves on ``app`` when imported, in the order `arena --help` lists them.
from arena.cli import play  # noqa: E402,F401,I001
from arena.cli import selfplay  # noqa: E402,F401
from arena.cli import rating  # noqa: E402,F401
from arena.cli import training  # noqa: E402,F401
