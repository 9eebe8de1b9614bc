"""Rich rendering of games and episodes for the terminal (used by the CLI).

Everything shown here that a move, a model or a server wrote goes through
:func:`games.text.printable`: control characters are shown escaped, never sent
to the terminal, and text is wrapped in ``Text`` so that no square bracket is
read as Rich markup.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from agents.secrets import redact
from arena.play.episode import Episode, TurnRecord
from games.registry import GameSpec
from games.text import printable

__all__ = ["games_table", "game_card", "turn_line", "observation_line", "result_panel"]

_ROLE_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")


def role_style(role: str, roles: Iterable[str]) -> str:
    roles = list(roles)
    return _ROLE_STYLES[roles.index(role) % len(_ROLE_STYLES)] if role in roles else "white"


def games_table(specs: Iterable[GameSpec]) -> Table:
    table = Table(title="Games", show_lines=False)
    table.add_column("id", style="bold")
    table.add_column("roles")
    table.add_column("summary")
    for spec in specs:
        table.add_row(spec.id, ", ".join(spec.roles), spec.summary)
    return table


def game_card(spec: GameSpec) -> Group:
    """The game's card and a table of its options."""
    options = Table(title=f"Options of {spec.id} (--option NAME=VALUE)")
    for name in ("name", "type", "default", "allowed", "help"):
        options.add_column(name)
    for info in spec.cls.options_class.describe():
        if info.choices:
            allowed = ", ".join(map(str, info.choices))
        elif info.min is not None or info.max is not None:
            allowed = f"{'' if info.min is None else info.min} .. {'' if info.max is None else info.max}"
        else:
            allowed = ""
        options.add_row(info.name, info.type, repr(info.default), allowed, info.help)
    title = Rule(f"[bold]{spec.id}[/bold] [dim](from {spec.origin})[/dim]", style="cyan")
    return Group(title, Text(spec.card or spec.summary), Text(""), options)


def turn_line(turn: TurnRecord, roles: Iterable[str]) -> Text:
    """One move: who, which agent, what it wrote, and whether it was legal."""
    line = Text()
    line.append(f"#{turn.index:<3}", style="dim")
    line.append(printable(turn.role), style=f"bold {role_style(turn.role, roles)}")
    line.append(f" ({printable(turn.agent)})", style="dim")
    line.append(": ")
    text = printable(turn.text) if turn.text.strip() else "<empty>"
    line.append(text.replace("\n", "\n    "))
    if not turn.legal:
        line.append(f"  ✗ illegal: {printable(turn.reason)}", style="bold red")
    return line


def observation_line(role: str, text: str, roles: Iterable[str]) -> Text:
    """What a role was shown, indented under its name."""
    line = Text()
    line.append(f"    {printable(role)} sees: ", style=f"dim {role_style(role, roles)}")
    line.append(printable(text).replace("\n", "\n    "), style="dim")
    return line


def result_panel(episode: Episode) -> Panel:
    """The end of an episode: summary, scores and metrics."""
    if not episode.ok:
        # redacted again here: a store written before redaction existed may hold a key in an error
        return Panel(Text(f"Episode failed: {printable(redact(episode.error or ''))}"), title="failed",
                     border_style="red")
    scores = Table(show_header=True, box=None)
    scores.add_column("role")
    scores.add_column("agent")
    scores.add_column("score", justify="right")
    for role, score in episode.scores.items():
        scores.add_row(Text(printable(role), style=role_style(role, episode.roles)),
                       Text(printable(episode.roles.get(role, ""))), f"{score:g}")
    metrics = Table(show_header=True, box=None)
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in sorted(episode.metrics.items()):
        metrics.add_row(Text(printable(name)), f"{value:g}")
    body = Group(Text(printable(episode.summary or episode.end_reason)), Text(""), scores, Text(""), metrics)
    title = Text(printable(f"{episode.game} · seed {episode.seed} · {episode.end_reason}"))
    return Panel(body, title=title, border_style="green")

