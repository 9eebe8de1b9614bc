"""Servers the tests talk to, all on 127.0.0.1: a real `transformers serve` and small fake endpoints."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not become healthy in time")


def serve_transformers(model_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`transformers serve` for ``model_dir`` on 127.0.0.1 (offline, CPU); returns the process and base URL."""
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(base, proc)
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    """kill -9 the server's whole process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


Answer = Callable[[http.server.BaseHTTPRequestHandler, dict], None]


def send(handler: http.server.BaseHTTPRequestHandler, status: int, body: str | bytes | dict) -> None:
    """Answer with ``body`` (a dict is sent as JSON; a string as it is, so it may be JSON that Python writes)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def fake_endpoint(answer: Answer) -> Iterator[str]:
    """A chat-completions server on 127.0.0.1 whose every POST is answered by ``answer(handler, request)``;
    yields its base URL (``http://127.0.0.1:PORT/v1``)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            try:
                answer(self, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a deadline): nothing to do

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
