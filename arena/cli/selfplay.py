"""``arena selfplay``: many episodes at once into one store, resumable."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from arena.cli.common import (
    USER_ERRORS,
    CliError,
    app,
    console,
    episode_ticker,
    fail,
    failure_verdict,
    interrupt_hint,
    progress_bar,
)
from arena.play.scenario import load_selfplay
from arena.play.selfplay import run_selfplay
from arena.play.store import EpisodeStore
from games.text import printable


def _summary_table(summary: dict) -> Table:
    table = Table(title="Summary", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("episodes", str(summary["episodes"]))
    table.add_row("failed", str(summary["failed"]))
    rate = summary["legal_rate"]
    table.add_row("legal-move rate", "n/a (no move was made)" if rate is None else f"{rate:.3f}")
    for role, rate in summary.get("legal_rate_by_role", {}).items():
        table.add_row(f"legal-move rate · {role}", f"{rate:.3f}")
    for role, score in summary.get("mean_scores", {}).items():
        table.add_row(Text(f"mean score · {printable(role)}"), f"{score:.3f}")
    for name, value in summary.get("metrics", {}).items():
        table.add_row(Text(printable(name)), f"{value:.3f}")
    return table


@app.command("selfplay")
def selfplay_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A self-play scenario file."),
    episodes: int | None = typer.Option(
        None, "--episodes", "-n", help="Episodes to play (overrides the scenario's run.episodes)."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Episodes at once (overrides the scenario's run.concurrency)."
    ),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides the scenario's run.out)."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Run seed (overrides the scenario's run.seed)."),
    ray: str | None = typer.Option(None, "--ray", metavar="ADDRESS",
                                   help="Play on a Ray cluster: 'local' (Ray on this machine, a worker per core) "
                                        "or HOST:PORT (overrides [cluster] address)."),
) -> None:
    """Play many episodes at once into OUT/episodes.jsonl; run it again to resume."""
    try:
        scenario = load_selfplay(scenario_path, {"episodes": episodes, "concurrency": concurrency,
                                                 "out": out, "seed": seed}, ray)
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    roles = ", ".join(f"{r}={s}" for r, s in scenario.roles.items())
    console.print(Text.assemble(("self-play ", "bold"), printable(f"{scenario.game.id} · {roles} · "
                                f"{scenario.run.episodes} episodes · concurrency {scenario.run.concurrency} "
                                f"→ {scenario.out}")), highlight=False)
    hint = interrupt_hint(lambda: f"the episodes finished so far are in {scenario.out / 'episodes.jsonl'}; run the "
                                  "same command again to resume (the same episodes as an uninterrupted run)")
    with hint, progress_bar(scenario.run.episodes, "self-play") as progress:
        task = progress.add_task("self-play", total=scenario.run.episodes, rate="-", legal="-", failed=0)
        on_episode = episode_ticker(progress, task)

        try:
            stored = len(EpisodeStore(scenario.out).done_ids()) if (scenario.out / EpisodeStore.FILE).is_file() else 0
            progress.update(task, completed=min(stored, scenario.run.episodes))
            result = run_selfplay(scenario, on_episode)
        except (CliError, *USER_ERRORS, RuntimeError) as err:
            fail(str(err))
            return
    console.print(_summary_table(result.summary))
    console.print(f"episodes: {result.out} ({result.played} played now, {result.total} stored)", highlight=False)
    verdict = failure_verdict(result.summary["failed"], result.total, result.retried, result.retried_failed,
                              scenario.run.max_failed_share, "self-play")
    if verdict:
        fail(verdict, code=1)


