"""The ``arena`` command line: list games, show their cards, play episodes.

    arena games                               # every registered game
    arena games negotiation-v0                # its card and options
    arena play negotiation-v0 --agents scripted,human --seed 3 --option objective=coop
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
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
from rich.table import Table
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


def _summary_table(summary: dict) -> Table:
    table = Table(title="Summary", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("episodes", str(summary["episodes"]))
    table.add_row("failed", str(summary["failed"]))
    table.add_row("legal-move rate", f"{summary['legal_rate']:.3f}")
    for role, rate in summary.get("legal_rate_by_role", {}).items():
        table.add_row(f"legal-move rate · {role}", f"{rate:.3f}")
    for role, score in summary.get("mean_scores", {}).items():
        table.add_row(f"mean score · {role}", f"{score:.3f}")
    for name, value in summary.get("metrics", {}).items():
        table.add_row(name, f"{value:.3f}")
    return table


@app.command("selfplay")
def selfplay_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A self-play scenario file."),
    episodes: int | None = typer.Option(None, "--episodes", "-n", help="Episodes to play (overrides [run])."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", help="Episodes at once (overrides [run])."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides [run])."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Run seed (overrides [run])."),
) -> None:
    """Play many episodes at once into OUT/episodes.jsonl; run it again to resume."""
    from arena.scenario import load_selfplay
    from arena.selfplay import run_selfplay

    try:
        scenario = load_selfplay(scenario_path, {"episodes": episodes, "concurrency": concurrency,
                                                 "out": out, "seed": seed})
    except (CliError, *USER_ERRORS) as err:
        _fail(str(err))
        return
    roles = ", ".join(f"{r}={s}" for r, s in scenario.roles.items())
    console.print(Text.assemble(("self-play ", "bold"), f"{scenario.game.id} · {roles} · "
                                f"{scenario.run.episodes} episodes · concurrency {scenario.run.concurrency} "
                                f"→ {scenario.out}"), highlight=False)
    with _progress(scenario.run.episodes, "self-play") as progress:
        task = progress.add_task("self-play", total=scenario.run.episodes, rate="-", legal="-", failed=0)
        on_episode = _episode_ticker(progress, task)

        try:
            from arena.store import EpisodeStore

            stored = len(EpisodeStore(scenario.out).ids()) if (scenario.out / EpisodeStore.FILE).is_file() else 0
            progress.update(task, completed=min(stored, scenario.run.episodes))
            result = run_selfplay(scenario, on_episode)
        except (CliError, *USER_ERRORS, RuntimeError) as err:
            _fail(str(err))
            return
    console.print(_summary_table(result.summary))
    console.print(f"episodes: {result.out} ({result.played} played now, {result.total} stored)", highlight=False)


@app.command("replay")
def replay_command(
    path: Path = typer.Argument(..., help="An episodes.jsonl file, or the run directory holding it."),
    episode_id: str | None = typer.Option(None, "--id", help="Show only this episode."),
    limit: int = typer.Option(5, "--limit", help="Show at most this many episodes (0: all)."),
    show_observations: bool = typer.Option(False, "--show-observations", help="Print everything each role saw."),
) -> None:
    """Show stored episodes readably."""
    from arena.store import StoreError, read_episodes

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
        _fail(str(err))
    if episode_id is not None and not shown:
        _fail(f"no episode {episode_id!r} in {file}")


def _show_episode(episode, show_observations: bool) -> None:
    roles = list(episode.roles)
    agents_text = ", ".join(f"{r}={s}" for r, s in episode.roles.items())
    console.rule(Text(f"{episode.id} · {episode.game} · seed {episode.seed} · {agents_text}"))
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
    from arena.store import EpisodeStore, StoreError

    directory = path.parent if path.is_file() else path
    try:
        written = EpisodeStore(directory).to_parquet(parquet)
    except StoreError as err:
        _fail(str(err))
        return
    console.print(f"wrote {written}", highlight=False)


@app.command("tournament")
def tournament_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A tournament scenario file."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides [run])."),
) -> None:
    """Play a tournament (or resume it) and write its leaderboard, ratings.json and plots."""
    from arena import leaderboard
    from arena.tournament import load_tournament, run_tournament, total_episodes

    try:
        t = load_tournament(scenario_path, out)
    except (CliError, *USER_ERRORS) as err:
        _fail(str(err))
        return
    total = total_episodes(t)
    console.print(Text.assemble(("tournament ", "bold"), f"{len(t.agents)} agents · "
                                f"{', '.join(g.key for g in t.games)} · {t.schedule.kind} · {total} episodes "
                                f"→ {t.out}"), highlight=False)
    with _progress(total, "tournament") as progress:
        task = progress.add_task("tournament", total=total, rate="-", legal="-", failed=0)
        from arena.store import EpisodeStore

        if (t.out / EpisodeStore.FILE).is_file():
            progress.update(task, completed=min(total, len(EpisodeStore(t.out).ids())))
        on_episode = _episode_ticker(progress, task)

        try:
            result = run_tournament(t, on_episode)
        except (CliError, *USER_ERRORS, RuntimeError) as err:
            _fail(str(err))
            return
    data = leaderboard.build(t, result.tally)
    written = leaderboard.write(data, t.out)
    _show_leaderboard(data)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def _show_leaderboard(data: dict) -> None:
    from arena import leaderboard

    console.print(leaderboard.terminal_table(data, "Leaderboard (all games)"))
    for key, game in data["by_game"].items():
        console.print(leaderboard.terminal_table(game, f"{key} · {game['mode']}"))
        console.print(Text(f"  {game['note']}", style="dim"))
    if data["cycles"]:
        console.print("non-transitive cycles: " + "; ".join(" > ".join(c + [c[0]]) for c in data["cycles"]))


@app.command("report")
def report_command(
    directory: Path = typer.Argument(..., help="A tournament output directory."),
) -> None:
    """Redraw a tournament's leaderboard and plots from its stored episodes."""
    from arena import leaderboard
    from arena.tournament import load_state, outcomes_from

    try:
        t, plans, pairings, episodes = load_state(directory)
    except (CliError, *USER_ERRORS) as err:
        _fail(str(err))
        return
    data = leaderboard.build(t, outcomes_from(t, plans, pairings, episodes))
    written = leaderboard.write(data, directory)
    _show_leaderboard(data)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


@app.command("train")
def train_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A training scenario file."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides [run])."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run stored in the output directory."),
    no_wandb: bool = typer.Option(False, "--no-wandb", help="Do not log to Weights & Biases."),
) -> None:
    """Train an agent from its own episodes (filtered behaviour cloning, policy gradient, SCoRe)."""
    from arena.train.algorithms import train
    from arena.train.scenario import load_train_scenario
    from arena.train.session import TrainError

    try:
        scenario = load_train_scenario(scenario_path, out)
    except USER_ERRORS as err:
        _fail(str(err))
        return
    console.print(Text.assemble(("train ", "bold"), f"{scenario.algorithm} · {scenario.game} · "
                                f"{', '.join(scenario.trained_roles)} from {scenario.init} → {scenario.out}"),
                  highlight=False)

    def report(event: str, info: dict) -> None:
        if event == "iteration":
            parts = [f"it {info['iteration']:>4}", f"{info['minutes']:5.1f} min"]
            for key in ("loss", "kl", "entropy", "legal_rate", "zero_variance_share"):
                if isinstance(info.get(key), float):
                    parts.append(f"{key} {info[key]:.3f}")
            parts += [f"{k} {v:.3f}" for k, v in info.items() if k.startswith("score/")]
            console.print(" · ".join(parts), highlight=False)
            for warning in info.get("warnings", []):
                err_console.print(Text(f"warning: {warning}", style="yellow"))
        elif event == "eval":
            for seat, row in info["seats"].items():
                console.print(Text(f"eval ({info['label']}, it {info['iteration']}) {seat} vs {row['opponents']}: "
                                   f"score {row['policy_score']:.3f}, legal {row['policy_legal_rate']:.1%}",
                                   style="cyan"), highlight=False)

    try:
        result = train(scenario, resume=resume, wandb=not no_wandb, progress=report)
    except (TrainError, *USER_ERRORS) as err:
        _fail(str(err))
        return
    console.print(f"trained model: {result['final']} (use it as the agent hf:{result['final']})", highlight=False)


@app.command("run")
def run_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A pipeline scenario, e.g. "
                                         "scenarios/quickstart.toml."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides the scenario)."),
    wandb: bool = typer.Option(False, "--wandb", help="Log training to Weights & Biases (offline)."),
) -> None:
    """Self-play, training, a before/after tournament and a report, in one command."""
    from arena.pipeline import run_pipeline
    from arena.train.session import TrainError

    started = time.perf_counter()

    def say(step: str, info: dict) -> None:
        if step == "train/iteration":
            scores = " · ".join(f"{k} {v:.3f}" for k, v in info.items() if k.startswith("score/"))
            console.print(f"  iteration {info['iteration']:>3} · {info['minutes']:.1f} min · {scores}", highlight=False)
        elif step == "train/eval":
            for seat, row in info["seats"].items():
                console.print(Text(f"  held-out eval ({info['label']}) {seat}: score {row['policy_score']:.3f}",
                                   style="cyan"), highlight=False)
        elif "/" not in step:
            console.rule(Text(f"{step} · {time.perf_counter() - started:.0f} s"))

    try:
        results = run_pipeline(scenario_path, out, wandb=wandb, say=say)
    except (TrainError, *USER_ERRORS) as err:
        _fail(str(err))
        return
    if "tournament" in results:
        _show_leaderboard(results["tournament"])
    console.print(f"report: {results['out']}/report.md · {(time.perf_counter() - started) / 60:.1f} minutes",
                  highlight=False)


@app.command("seed-model")
def seed_model_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A seed-model scenario file."),
    out: str | None = typer.Option(None, "--out", help="Where to save the model (overrides the scenario)."),
    evaluate_only: bool = typer.Option(False, "--evaluate-only",
                                       help="Only evaluate an already trained model and write its model card."),
) -> None:
    """Build the seed model from scratch: transcripts, tokenizer, training, evaluation, model card."""
    from arena.seed_model import build_seed_model, finish_report, load_seed_scenario

    try:
        scenario = load_seed_scenario(scenario_path)
    except USER_ERRORS as err:
        _fail(str(err))
        return
    target = out or scenario.out
    console.print(Text.assemble(("seed model ", "bold"), f"from {scenario_path} → {target}"), highlight=False)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, info: dict) -> None:
            if stage == "train":
                if stage not in tasks:
                    tasks[stage] = progress.add_task("training", total=info["of"], info="")
                progress.update(tasks[stage], completed=info["step"],
                                info=f"loss {info['loss']:.3f} · {info['tokens_per_s']:,.0f} tok/s")
            elif stage == "data":
                key = f"data {info['what']}"
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=info["of"], info="scripted episodes")
                progress.update(tasks[key], completed=info["done"])
            else:
                progress.console.print(f"[dim]{stage} {info or ''}[/dim]", highlight=False)

        if evaluate_only:
            report_data = finish_report(target, scenario, report)
        else:
            report_data = build_seed_model(scenario, target, report)
    console.print(f"saved to {target}: {report_data['parameters']:,} parameters, "
                  f"final loss {report_data['final_loss']:.3f}; model card in {target}/README.md", highlight=False)
    table = Table(title="Against scripted players")
    for column in ("game", "model plays", "legal moves"):
        table.add_column(column)
    for row in report_data["evaluation"]:
        table.add_row(row["game"] + (f" {row['options']}" if row["options"] else ""), ", ".join(row["model_plays"]),
                      f"{row['model_legal_rate']:.1%}")
    console.print(table)


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
