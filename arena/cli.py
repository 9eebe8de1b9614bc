"""The ``arena`` command line: list games, show their cards, play episodes.

    arena games                               # every registered game
    arena games negotiation-v0                # its card and options
    arena play negotiation-v0 --agents scripted,human --seed 3 --option objective=coop
"""

from __future__ import annotations

import json
import logging
import sys

import typer
from rich.console import Console
from rich.text import Text

import agents
import games
from agents.base import PolicyError
from agents.human import HumanQuit
from arena.display import game_card, games_table, observation_line, result_panel, turn_line
from arena.rollout import run_episode
from games.options import OptionError
from games.registry import UnknownGameError

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
USER_ERRORS = (OptionError, UnknownGameError, PolicyError, FileNotFoundError, ValueError)


class CliError(Exception):
    """A command-line problem to report in one line."""


def _fail(message: str, code: int = 2) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True, highlight=False)
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


@app.command("games")
def games_command(
    game: str | None = typer.Argument(None, help="A game id: show its card and options."),
    plugin: list[str] | None = typer.Option(None, "--plugin", help="A game file or module to load first."),
) -> None:
    """List the registered games, or show one game's card and options."""
    try:
        _load_plugins(plugin)
        if game is None:
            console.print(games_table(games.list_games()))
        else:
            console.print(game_card(games.get_spec(game)))
    except (CliError, *USER_ERRORS) as err:
        _fail(str(err))


@app.command("play")
def play_command(
    game: str = typer.Argument(..., help="The game id, e.g. negotiation-v0 (see `arena games`)."),
    agents_spec: str = typer.Option("scripted", "--agents", "-a",
                                    help="Agent spec for every role, or comma-separated, one per role "
                                         "(scripted, random, human, ...)."),
    seed: int = typer.Option(0, "--seed", "-s", help="Episode seed: the same seed and moves give the same game."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="Game option KEY=VALUE (repeatable)."),
    plugin: list[str] | None = typer.Option(None, "--plugin", help="A game file or module to load first."),
    show_observations: bool = typer.Option(False, "--show-observations",
                                           help="Print everything each role sees before it moves "
                                                "(by default only what each role is first told)."),
    as_json: bool = typer.Option(False, "--json", help="Print the episode as JSON instead of the transcript."),
) -> None:
    """Play one episode and print its transcript."""
    try:
        _load_plugins(plugin)
        spec = games.get_spec(game)
        env = spec.make(**parse_key_values(option))
        specs = split_agents(agents_spec, env.roles)
        policies: dict[str, agents.Policy] = {}
        for name in set(specs.values()):
            policies[name] = agents.load(name)
        by_role = {role: policies[name] for role, name in specs.items()}
    except (CliError, *USER_ERRORS) as err:
        _fail(str(err))
        return
    human = any(p.interactive for p in by_role.values())
    out = err_console if as_json else console

    briefed: set[str] = set()

    def on_turn(request: agents.TurnRequest, turn) -> None:
        if turn is None:
            return
        if human and not by_role[turn.role].interactive:
            return  # the person sees the other roles' moves through their own observations
        first = turn.role not in briefed
        briefed.add(turn.role)
        if turn.observation and (show_observations or first) and not by_role[turn.role].interactive:
            out.print(observation_line(turn.role, turn.observation, env.roles), highlight=False)
        out.print(turn_line(turn, env.roles), highlight=False)

    if not as_json:
        roles = ", ".join(f"{r}={s}" for r, s in specs.items())
        console.print(Text.assemble((game, "bold"), f" · seed {seed} · {roles}"), highlight=False)
    try:
        episode = run_episode(env, by_role, seed=seed, on_turn=on_turn)
    except HumanQuit as quit_:
        err_console.print(Text(f"Game stopped: {quit_}.", style="yellow"))
        raise typer.Exit(130) from None
    finally:
        for policy in policies.values():
            policy.close()
    if as_json:
        console.print_json(json.dumps(episode.to_dict()))
    else:
        console.print(result_panel(episode))
    if not episode.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/yellow]")
        sys.exit(130)


if __name__ == "__main__":
    main()
