"""``arena train``, ``arena run`` (the whole loop) and ``arena seed-model``.

These commands import the trainer (torch and transformers, about a second) inside the command, so that
the other commands (``arena games``, ``play``, ``replay``, ``selfplay`` with rule-based agents) start
at once: the one deliberate exception to imports at the top of a module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from arena.cli.common import (
    USER_ERRORS,
    CliError,
    app,
    console,
    err_console,
    fail,
    interrupt_hint,
    load_plugins,
    parse_key_values,
    show_leaderboard,
)
from arena.config import toml_value


@app.command("train")
def train_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A training scenario file."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides the scenario's run.out)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run stored in the output directory; "
                                "with --set it may raise the rounds or iterations to train longer."),
    no_wandb: bool = typer.Option(False, "--no-wandb", help="Do not log to Weights & Biases."),
    set_: list[str] | None = typer.Option(None, "--set", help="Change one scenario key, KEY.PATH=VALUE (a TOML "
                                          "value or a bare word; repeatable), e.g. game.options.objective=coop."),
    nproc: int = typer.Option(1, "--nproc", help="Data-parallel ranks on this machine (as torchrun "
                              "--nproc-per-node): each plays its share of the episodes; gradients are summed."),
) -> None:
    """Train an agent from its own episodes (filtered behaviour cloning, policy gradient, SCoRe)."""
    import os
    import sys

    from arena.train.algorithms import load_train_scenario, train
    from arena.train.session import TrainError, TrainFailed, unsupported_with_ranks

    try:
        if nproc < 1:
            raise CliError(f"--nproc must be at least 1; got {nproc}")
        overrides = {key: toml_value(value) for key, value in parse_key_values(set_, "--set").items()}
        scenario = load_train_scenario(scenario_path, out, overrides)
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    if nproc > 1 and "WORLD_SIZE" in os.environ:
        fail(f"--nproc {nproc}: this process is already rank {os.environ.get('RANK', '?')} of a launch of "
             f"{os.environ['WORLD_SIZE']} (WORLD_SIZE is set, as torchrun sets it); give --nproc or torchrun, not both")
        return
    refused = unsupported_with_ranks(scenario, nproc)
    if refused:
        fail(refused)
        return
    if nproc > 1:
        from arena.train.launch import launch

        code, failure = launch(nproc, _without_nproc(sys.argv[1:]), scenario.out)
        if failure:
            fail(failure, code=code or 1)
        raise typer.Exit(code)
    console.print(Text.assemble(("train ", "bold"), f"{scenario.algorithm} · {scenario.game} · "
                                f"{', '.join(scenario.trained_roles)} from {scenario.init} → {scenario.out}"),
                  highlight=False, soft_wrap=True)

    def report(event: str, info: dict) -> None:
        stage = f"{info['stage']}: " if info.get("stage") else ""  # a warm-up's own runs (arena.train.warmup)
        if event == "iteration":
            parts = [f"{stage}it {info['iteration']:>4}", f"{info['minutes']:5.1f} min"]
            for key in ("loss", "kl", "entropy", "policy_legal_rate", "zero_variance_share"):
                if isinstance(info.get(key), float):
                    parts.append(f"{key} {info[key]:.3f}")
            parts += [f"{k} {v:.3f}" for k, v in info.items() if k.startswith("score/")]
            console.print(" · ".join(parts), highlight=False, soft_wrap=True)
            for warning in info.get("warnings", []):
                err_console.print(Text(f"warning: {warning}", style="yellow"))
        elif event == "warmup":
            step = info["step"]
            text = {"probe": f"warm-up: the start model plays {info.get('episodes')} held-out episodes first",
                    "skipped": f"warm-up: not needed (the start model: legal {info.get('legal_rate', 0):.1%}, score "
                               f"{info.get('score', 0):.3f}; the scripted player: {info.get('scripted_score', 0):.3f})",
                    "play": f"warm-up: playing {info.get('episodes')} episodes of the game's scripted players "
                            f"({', '.join(f'{r}={a}' for r, a in (info.get('agents') or {}).items())})",
                    "clone": f"warm-up: cloning them ({info.get('episodes')} episodes, {info.get('epochs')} epochs)"}
            console.print(Text(text.get(step, f"warm-up: {step}"), style="magenta"), highlight=False, soft_wrap=True)
        elif event == "eval":
            if info.get("same_as"):
                console.print(Text(f"{stage}eval ({info['label']}): no training iteration ran, the same model as "
                                   f"'{info['same_as']}'", style="cyan"), highlight=False, soft_wrap=True)
                return
            for seat, row in info["seats"].items():
                console.print(Text(f"{stage}eval ({info['label']}, it {info['iteration']}) {seat} vs "
                                   f"{row['opponents']}: score {row['policy_score']:.3f} ± "
                                   f"{row.get('policy_score_se', 0.0):.3f} (s.e.), "
                                   f"legal {row['policy_legal_rate']:.1%}",
                                   style="cyan"), highlight=False, soft_wrap=True)

    def saved() -> str:
        latest = scenario.out / "checkpoints" / "latest.json"
        where = f"the last checkpoint is in {scenario.out / 'checkpoints'}" if latest.is_file() else \
            "no checkpoint was written yet"
        return f"{where}; continue with: arena train {scenario_path} --out {scenario.out} --resume"

    try:
        with interrupt_hint(saved):
            result = train(scenario, resume=resume, wandb=not no_wandb, progress=report)
    except TrainFailed as err:  # the run could not go on (a full disk, every episode failed)
        fail(str(err), code=1)
        return
    except (TrainError, *USER_ERRORS) as err:
        fail(str(err))
        return
    console.print(f"trained model: {result['final']} (use it as the agent hf:{result['final']})", highlight=False,
                  soft_wrap=True)


def _without_nproc(args: list[str]) -> list[str]:
    """The command line a rank runs: this one without ``--nproc N`` / ``--nproc=N`` (typer keeps no raw argv)."""
    out, skip = [], False
    for arg in args:
        if skip or arg.startswith("--nproc="):
            skip = False
        elif arg == "--nproc":
            skip = True
        else:
            out.append(arg)
    return out


@app.command("run")
def run_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A pipeline scenario, e.g. "
                                         "scenarios/quickstart.toml."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (overrides the scenario)."),
    wandb: bool = typer.Option(False, "--wandb", help="Log training to Weights & Biases (offline)."),
) -> None:
    """Self-play, training, a before/after tournament and a report, in one command."""
    from arena.pipeline import run_pipeline
    from arena.train.session import TrainError, TrainFailed

    started = time.perf_counter()

    def say(step: str, info: dict) -> None:
        if step == "train/iteration":
            scores = " · ".join(f"{k} {v:.3f}" for k, v in info.items() if k.startswith("score/"))
            console.print(f"  iteration {info['iteration']:>3} · {info['minutes']:.1f} min · {scores}", highlight=False)
        elif step == "train/eval":
            stage = f"{info['stage']}: " if info.get("stage") else ""
            for seat, row in info.get("seats", {}).items():
                console.print(Text(f"  {stage}held-out eval ({info['label']}) {seat}: score {row['policy_score']:.3f}"
                                   f", legal {row['policy_legal_rate']:.1%}", style="cyan"), highlight=False)
        elif step == "train/warmup":
            console.print(Text(f"  warm-up: {info['step']}" + (f" ({info['episodes']} episodes)"
                                                                if info.get("episodes") else ""), style="magenta"),
                          highlight=False)
        elif "/" not in step:
            console.rule(Text(f"{step} · {time.perf_counter() - started:.0f} s"))

    try:
        with interrupt_hint(lambda: "each finished step is kept in the output directory; run the same command "
                                    "again to resume"):
            results = run_pipeline(scenario_path, out, wandb=wandb, say=say)
    except TrainFailed as err:
        fail(str(err), code=1)
        return
    except (TrainError, *USER_ERRORS, RuntimeError) as err:
        fail(str(err))
        return
    if "tournament" in results:
        show_leaderboard(results["tournament"])
    console.print(f"report: {results['out']}/report.md · {(time.perf_counter() - started) / 60:.1f} minutes",
                  highlight=False)


@app.command("new-game")
def new_game_command(
    game: str = typer.Argument(..., help="The game's id, e.g. guess-v0."),
    plugin: list[str] | None = typer.Option(None, "--plugin", help="The game's file or module (repeatable)."),
    trained: list[str] | None = typer.Option(None, "--trained", help="A role the model learns (repeatable; "
                                             "default: every role, in self-play)."),
    opponents: str = typer.Option("scripted", "--opponents", help="Who plays the other roles."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the scenario here (default: print it)."),
) -> None:
    """Write a scenario that takes a game from nothing to a trained, rated agent with `arena run`."""
    from arena.pipeline import new_game_steps

    try:
        load_plugins(plugin)
        new_game_steps(game, trained or None, opponents)  # checked now: a typo fails here, not in `arena run`
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    quoted = json.dumps  # a JSON string is a TOML basic string
    text = NEW_GAME.format(game=quoted(game), plugins=", ".join(quoted(p) for p in (plugin or [])),
                           trained=f"trained = [{', '.join(quoted(r) for r in trained)}]" if trained else
                           "# trained = [...]              # the roles the model learns (default: every role)",
                           opponents=quoted(opponents), name=game.removesuffix("-v0"))
    if out is None:
        print(text, end="")
        return
    if out.exists():
        fail(f"{out} exists already; choose another --out (nothing was written)")
        return
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {out}; run it with: arena run {out}", highlight=False)


NEW_GAME = """# From a new game to a trained agent, in one command: arena run THIS_FILE
# 1. training: the seed model learns the trained roles; when it cannot play the game yet (a probe of
#    held-out episodes: under 90% legal moves, or under half the scripted player's score), it first clones
#    the game's scripted player (2,048 episodes, 6 epochs), then runs 60 iterations of policy gradient;
# 2. a tournament: the model before and after, the scripted and the random players (32 games a pairing);
# 3. OUT/report.md. Run it again to resume; OUT/train.toml and OUT/tournament.toml hold every setting.
out = "runs/{name}"
plugins = [{plugins}]
game = {game}                  # or {{ id = {game}, options = {{ ... }} }}
{trained}
opponents = {opponents}         # who plays the other roles, in training and in the tournament

# Any key of the two steps can be changed here (docs/training.md, docs/tournaments.md), for example:
# [train]
# warmup = {{ when = "always", episodes = 4096, epochs = 8 }}
# algorithm = {{ iterations = 100, learning_rate = 1e-4 }}
# [tournament]
# schedule = {{ games_per_pairing = 64 }}
"""


@app.command("seed-model")
def seed_model_command(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.toml", help="A seed-model scenario file."),
    out: str | None = typer.Option(None, "--out", help="Where to save the model (overrides the scenario)."),
    evaluate_only: bool = typer.Option(False, "--evaluate-only",
                                       help="Only evaluate an already trained model and write its model card."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted build from OUT/checkpoint."),
) -> None:
    """Build the seed model from scratch: transcripts, tokenizer, training, evaluation, model card."""
    from arena.seed.build import SeedModelError, build_seed_model, finish_report
    from arena.seed.scenario import load_seed_scenario

    try:
        scenario = load_seed_scenario(scenario_path)
    except USER_ERRORS as err:
        fail(str(err))
        return
    target = out or scenario.out
    console.print(Text.assemble(("seed model ", "bold"), f"from {scenario_path} → {target}"), highlight=False)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, info: dict) -> None:
            if stage == "train" and not err_console.is_terminal:
                # A log file (nohup, CI) never sees the bar redrawn: a plain line every ~5% instead,
                # rounded to a multiple of 10 because the build reports every 10th step.
                every = max(10, info["of"] // 20 // 10 * 10)
                if info["step"] % every == 0 or info["step"] == info["of"]:
                    progress.console.print(f"training step {info['step']}/{info['of']} · loss {info['loss']:.3f} · "
                                           f"{info['tokens_per_s']:,.0f} tok/s · {info['minutes']:.1f} min",
                                           highlight=False, soft_wrap=True)
            elif stage == "train":
                if stage not in tasks:
                    tasks[stage] = progress.add_task("training", total=info["of"], info="")
                progress.update(tasks[stage], completed=info["step"],
                                info=f"loss {info['loss']:.3f} · {info['tokens_per_s']:,.0f} tok/s")
            elif stage == "data" and not err_console.is_terminal:
                # the transcripts take minutes on a large build: a line per quarter of each mix in a log file
                key, quarter = f"data {info['what']}", 4 * info["done"] // max(1, info["of"])
                if quarter > tasks.get(key, 0):
                    tasks[key] = quarter
                    progress.console.print(f"data {info['what']}: {info['done']}/{info['of']} scripted episodes",
                                           highlight=False, soft_wrap=True)
            elif stage == "data":
                key = f"data {info['what']}"
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=info["of"], info="scripted episodes")
                progress.update(tasks[key], completed=info["done"])
            else:
                progress.console.print(f"[dim]{stage} {info or ''}[/dim]", highlight=False)

        try:
            if evaluate_only:
                report_data = finish_report(target, scenario, report, scenario_file=str(scenario_path))
            else:
                report_data = build_seed_model(scenario, target, report, resume=resume,
                                               scenario_file=str(scenario_path))
        except SeedModelError as err:
            progress.stop()
            fail(str(err))
            return
    console.print(f"saved to {target}: {report_data['parameters']:,} parameters, "
                  f"final loss {report_data['final_loss']:.3f}; model card in {target}/README.md", highlight=False)
    table = Table(title="Against scripted players")
    for column in ("game", "model plays", "legal moves"):
        table.add_column(column)
    for row in report_data["evaluation"]:
        table.add_row(row["game"] + (f" {row['options']}" if row["options"] else ""), ", ".join(row["model_plays"]),
                      f"{row['model_legal_rate']:.1%}")
    console.print(table)

