"""The ``arena`` command line.

    arena games                               # every registered game
    arena games negotiation-v0                # its card and options
    arena play negotiation-v0 --agents scripted,human --seed 3 --option objective=coop
    arena selfplay scenarios/selfplay-negotiation.toml
    arena tournament scenarios/tournament.toml
    arena train scenarios/train-refine-score.toml
    arena run scenarios/quickstart.toml
    arena vllm-serve MODEL --port 8100             # an engine for vllm-server: agents and training
    arena convert-gguf FILE.gguf OUT                # a GGUF model as a folder that loads fast (hf:OUT)

One module per command group: ``play`` (games, play, replay, export), ``selfplay``, ``rating``
(tournament, report), ``training`` (train, run, seed-model), ``serve`` (vllm-serve) and ``models``
(convert-gguf); what they share is
in ``common``, and the terminal rendering of games and episodes in ``display``. This module registers them
and runs the app.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from rich.text import Text

from agents.secrets import RedactingFilter, redact

# The commands register themselves on ``app`` when imported, in the order `arena --help` lists them.
# isort: off
from arena.cli import play  # noqa: F401
from arena.cli import selfplay  # noqa: F401
from arena.cli import rating  # noqa: F401
from arena.cli import training  # noqa: F401
from arena.cli import serve  # noqa: F401
from arena.cli import models  # noqa: F401
# isort: on
from arena.cli.common import DEBUG_ENV, app, describe_failure, err_console
from games.text import printable

__all__ = ["app", "main"]


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: every error is one line on stderr (exit 2: bad input; 1: the run failed)."""
    code = _run()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # A rank of a data-parallel run leaves without the interpreter's teardown: everything it writes is
        # closed and synced by now, and gloo's worker threads, which FSDP's modules keep alive until then,
        # can abort the process while the interpreter finalises ("terminate called without an active
        # exception", pytorch/pytorch#190489), which the launcher would report as a failed run.
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _run() -> int:
    """Run the app; its exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    signal.signal(signal.SIGTERM, _terminate)  # `kill PID` ends a run as Ctrl-C does: saved, and said so
    try:
        app()
    except SystemExit as done:  # typer ends every command this way
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        return 130
    except Exception as err:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        err_console.print(Text.assemble(("error: ", "bold red"), printable(redact(describe_failure(err)))),
                          soft_wrap=True, highlight=False)
        return 1
    return 0
