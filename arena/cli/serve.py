"""``arena vllm-serve``: a vLLM engine in its own process, for ``vllm-server:URL`` agents and training's
``[rollout] engine = "vllm-server"`` (server mode; see docs/scaling.md)."""

from __future__ import annotations

import typer

from agents.registry import backend_options
from agents.seed import seed_model_dir
from arena.cli.common import USER_ERRORS, CliError, app, console, fail, parse_key_values
from arena.config import toml_value


@app.command("vllm-serve")
def vllm_serve_command(
    model: str = typer.Argument(..., metavar="MODEL", help="A model directory, or 'seed' for the shipped seed model."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on (the server has no "
                                                         "authentication: keep it on a private network)."),
    port: int = typer.Option(8100, "--port", help="The port to listen on (0: any free port; the URL is printed)."),
    backend: list[str] | None = typer.Option(None, "--backend", "-b",
                                             help="An engine key KEY=VALUE, as a vllm: agent's [backend] "
                                                  "(repeatable), e.g. -b gpu_memory_utilization=0.3"),
) -> None:
    """Serve a vLLM engine over HTTP until Ctrl-C: generation for vllm-server: agents and weight pushes from a
    trainer."""
    if not 0 <= port <= 65535:
        fail(f"--port must be 0-65535; got {port}")
    try:
        path = str(seed_model_dir()) if model == "seed" else model
        spec = f"vllm:{path}"
        options = backend_options(spec, {k: toml_value(v) for k, v in parse_key_values(backend, "--backend").items()})
        if options.get("enable_sleep_mode"):
            raise CliError("enable_sleep_mode is for an engine in the trainer's process ([rollout] engine = "
                           "\"vllm\"); a served engine keeps its GPU to itself")
        from agents.vllm_backend import VLLMPolicy  # the optional vllm extra
        from agents.vllm_server import EngineServer

        policy = VLLMPolicy(spec, path, **options)
    except (CliError, *USER_ERRORS) as err:
        fail(str(err))
        return
    try:
        server = EngineServer(policy, host, port)
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")
        return
    console.print(f"serving {spec} at {server.url}", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    finally:
        server.close()
        policy.close()
