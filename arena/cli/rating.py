"""``arena tournament`` and ``arena report``: ratings with confidence intervals."""

from __future__ import annotations

from pathlib import Path

import typer
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
    show_leaderboard,
)
from arena.output import OutputLock
from arena.play.store import EpisodeStore
from arena.rate import leaderboard
from arena.rate.tournament import load_state, load_tournament, outcomes_from, run_tournament, total_episodes
from games.text import printable


@app.command("tournament")
def tournament_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A tournament scenario file."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides the scenario's run.out)."),
    ray: str | None = typer.Option(None, "--ray", metavar="ADDRESS",
                                   help="Play on a Ray cluster: 'local' (Ray on this machine, a worker per core) "
                                        "or HOST:PORT (overrides [cluster] address)."),
) -> None:
    """Play a tournament (or resume it) and write its leaderboard, ratings.json and plots."""
    try:
        t = load_tournament(scenario_path, out, ray)
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    total = total_episodes(t)
    console.print(Text.assemble(("tournament ", "bold"), printable(f"{len(t.agents)} agents · "
                                f"{', '.join(g.key for g in t.games)} · {t.schedule.kind} · {total} episodes "
                                f"→ {t.out}")), highlight=False)
    hint = interrupt_hint(lambda: f"the episodes finished so far are in {t.out / 'episodes.jsonl'}; run the same "
                                  "command again to resume (the same ratings as an uninterrupted run)")
    with hint, progress_bar(total, "tournament") as progress:
        task = progress.add_task("tournament", total=total, rate="-", legal="-", failed=0)
        on_episode = episode_ticker(progress, task)
        try:
            if (t.out / EpisodeStore.FILE).is_file():
                progress.update(task, completed=min(total, len(EpisodeStore(t.out).done_ids())))
            result = run_tournament(t, on_episode)
        except (CliError, *USER_ERRORS, RuntimeError) as err:
            fail(str(err))
            return
    data = leaderboard.build(t, result.tally)
    with OutputLock(t.out):  # the leaderboard's files, written by one process at a time
        written = leaderboard.write(data, t.out)
    show_leaderboard(data)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    verdict = failure_verdict(result.tally.failed_episodes, len(result.plans), result.retried, result.retried_failed,
                              t.run.max_failed_share, "tournament")
    if verdict:
        fail(verdict, code=1)


@app.command("report")
def report_command(
    directory: Path = typer.Argument(..., help="A tournament output directory."),
) -> None:
    """Redraw a tournament's leaderboard and plots from its stored episodes."""
    try:
        t, plans, pairings, episodes = load_state(directory)
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    data = leaderboard.build(t, outcomes_from(t, plans, pairings, episodes))
    try:
        with OutputLock(directory):  # refused while the tournament is still writing there
            written = leaderboard.write(data, directory)
    except RuntimeError as err:
        fail(str(err))
        return
    show_leaderboard(data)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


