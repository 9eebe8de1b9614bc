"""``arena games``, ``arena play``, ``arena replay`` and ``arena export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

import agents
import games
from agents.human import HumanQuit
from agents.sampling import SamplingConfig
from arena.cli.common import (
    USER_ERRORS,
    CliError,
    app,
    console,
    err_console,
    fail,
    load_plugins,
    parse_key_values,
    split_agents,
)
from arena.cli.display import game_card, games_table, observation_line, result_panel, turn_line
from arena.play.rollout import run_episode
from arena.play.store import EpisodeStore, StoreError, read_episodes
from games.text import printable


@app.command("games")
def games_command(
    game: str | None = typer.Argument(None, help="A game id: show its card and options."),
    plugin: list[str] | None = typer.Option(None, "--plugin", help="A game file or module to load first."),
) -> None:
    """List the registered games, or show one game's card and options."""
    try:
        load_plugins(plugin)
        if game is None:
            console.print(games_table(games.list_games()))
        else:
            console.print(game_card(games.get_spec(game)))
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))


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
    temperature: float | None = typer.Option(None, "--temperature", help="Model agents' sampling temperature "
                                             "(0: greedy; default 1.0). Small real models want 0-0.7."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Most tokens in one model move "
                                              "(default 96)."),
) -> None:
    """Play one episode and print its transcript."""
    if seed < 0:
        fail(f"--seed must be 0 or more; got {seed}")
    try:
        load_plugins(plugin)
        spec = games.get_spec(game)
        env = spec.make(**parse_key_values(option))
        specs = split_agents(agents_spec, env.roles)
        sampling = SamplingConfig.from_mapping({k: v for k, v in (("temperature", temperature),
                                                                  ("max_new_tokens", max_new_tokens)) if v is not None},
                                               source="--temperature/--max-new-tokens")
        policies: dict[str, agents.Policy] = {}
        for name in set(specs.values()):
            policies[name] = agents.load(name, sampling)
        by_role = {role: policies[name] for role, name in specs.items()}
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    human = any(p.interactive for p in by_role.values())
    if as_json:  # a person still plays, on stderr: stdout holds the episode alone
        for policy in policies.values():
            if policy.interactive and hasattr(policy, "console"):
                policy.console = err_console

    briefed: set[str] = set()

    def on_turn(request: agents.TurnRequest, turn) -> None:
        if turn is None or as_json:  # --json: stdout holds the episode alone, stderr nothing but errors
            return
        if human and not by_role[turn.role].interactive:
            return  # the person sees the other roles' moves through their own observations
        first = turn.role not in briefed
        briefed.add(turn.role)
        if turn.observation and (show_observations or first) and not by_role[turn.role].interactive:
            console.print(observation_line(turn.role, turn.observation, env.roles), highlight=False)
        console.print(turn_line(turn, env.roles), highlight=False)

    if not as_json:
        roles = ", ".join(f"{r}={s}" for r, s in specs.items())
        console.print(Text.assemble((printable(game), "bold"), printable(f" · seed {seed} · {roles}")),
                      highlight=False)
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



@app.command("replay")
def replay_command(
    path: Path = typer.Argument(..., help="An episodes.jsonl file, or the run directory holding it."),
    episode_id: str | None = typer.Option(None, "--id", help="Show only this episode."),
    limit: int = typer.Option(5, "--limit", help="Show at most this many episodes (0: all)."),
    show_observations: bool = typer.Option(False, "--show-observations", help="Print everything each role saw."),
) -> None:
    """Show stored episodes readably."""
    file = path / "episodes.jsonl" if path.is_dir() else path
    shown = 0
    try:
        for episode in read_episodes(file):
            if episode_id is not None and episode.id != episode_id:
                continue
            _show_episode(episode, show_observations)
            shown += 1
            if limit and shown >= limit and episode_id is None:
                break
    except StoreError as err:
        fail(str(err))
    if episode_id is not None and not shown:
        fail(f"no episode {episode_id!r} in {file}")


def _show_episode(episode, show_observations: bool) -> None:
    roles = list(episode.roles)
    agents_text = ", ".join(f"{r}={s}" for r, s in episode.roles.items())
    console.rule(Text(printable(f"{episode.id} · {episode.game} · seed {episode.seed} · {agents_text}")))
    seen: set[str] = set()
    for turn in episode.turns:
        if turn.observation and (show_observations or turn.role not in seen):
            console.print(observation_line(turn.role, turn.observation, roles), highlight=False)
        seen.add(turn.role)
        console.print(turn_line(turn, roles), highlight=False)
    console.print(result_panel(episode))


@app.command("export")
def export_command(
    path: Path = typer.Argument(..., help="A run directory (or its episodes.jsonl)."),
    parquet: Path = typer.Argument(..., metavar="OUT.parquet", help="The Parquet file to write."),
) -> None:
    """Export stored episodes to Parquet (load them back with datasets or pandas)."""
    directory = path.parent if path.is_file() else path
    try:
        written = EpisodeStore(directory).to_parquet(parquet)
    except StoreError as err:
        fail(str(err))
        return
    console.print(f"wrote {written}", highlight=False)

