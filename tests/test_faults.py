"""Fault drills: a user's bad day, run for real (docs/faults.md lists each drill and its outcome).

Fake endpoints on 127.0.0.1 answer oddly (a 401 that echoes the key, a trickle of one byte a second,
-Infinity log-probabilities, content that is a number or a list of parts); a real `transformers serve`
is down, then started; stores get a garbage line or a duplicated one; a second writer meets the lock;
a small tmpfs fills up; Ctrl-C lands mid-run. Every command runs as a user runs it (`python -m arena`),
and what it printed and wrote is checked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arena.play.store import EpisodeStore, read_episodes
from tests.helpers import ROOT, arena, negotiation_scenario, one_error_line
from tests.servers import fake_endpoint, free_port, send, serve_transformers, stop

SECRET = "sk-fault-drill-" + "k" * 24
TIMING = ("started_at", "duration_s", "latency_s")


def scenario(tmp_path: Path, player_0: str, backend: str = "", episodes: int = 3, name: str = "drill") -> Path:
    return negotiation_scenario(tmp_path, player_0, backend, episodes, name)


def strip_timing(episode) -> dict:
    d = episode.to_dict()
    for key in TIMING:
        d.pop(key, None)
    for turn in d["turns"]:
        turn.pop("latency_s", None)
    return d


# ----------------------------------------------------------------------------------------------- endpoints
def test_a_server_that_echoes_the_key_leaks_it_nowhere(tmp_path):
    def echo_401(handler, request):
        send(handler, 401, {"error": "invalid key", "got": handler.headers.get("authorization", "")})

    with fake_endpoint(echo_401) as url:
        out = tmp_path / "run"
        env = {"OPENAI_API_KEY": SECRET}
        played = arena("selfplay", str(scenario(tmp_path, f"openai:m@{url}", "retries = 0")), "--out", str(out),
                       env=env)
        replayed = arena("replay", str(out), "--limit", "0", env=env)
        exported = arena("export", str(out), str(out / "episodes.parquet"), env=env)
    assert played.returncode == 1 and "100% of the episodes failed" in one_error_line(played)
    assert replayed.returncode == 0 and exported.returncode == 0, replayed.stderr + exported.stderr
    episodes = list(read_episodes(out / "episodes.jsonl"))
    assert episodes and all("HTTP 401" in e.error and "[REDACTED]" in e.error for e in episodes)
    for result in (played, replayed, exported):
        assert SECRET not in result.stdout + result.stderr
    for file in out.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_a_key_already_in_an_old_store_is_not_shown_or_exported(tmp_path):
    from arena.play.episode import Episode

    out = tmp_path / "old"
    out.mkdir()
    leaked = Episode("e0", "refine-v0", {}, 0, {"solver": "x"}, {}, status="failed",
                     error=f'HTTP 401: {{"got": "Bearer {SECRET}"}}')
    (out / "episodes.jsonl").write_text(json.dumps(leaked.to_dict()) + "\n")  # as written before redaction
    replayed = arena("replay", str(out))
    exported = arena("export", str(out), str(tmp_path / "old.parquet"))
    assert replayed.returncode == 0 and exported.returncode == 0, replayed.stderr + exported.stderr
    assert SECRET not in replayed.stdout + replayed.stderr and "[REDACTED]" in replayed.stdout
    import pyarrow.parquet as pq  # the dev extra has it, as arena export needs
    assert "[REDACTED]" in pq.read_table(tmp_path / "old.parquet").column("error")[0].as_py()
    assert SECRET not in str(pq.read_table(tmp_path / "old.parquet").to_pylist())


def test_a_server_that_trickles_bytes_meets_the_deadline(tmp_path):
    def trickle(handler, request):
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", "1000")
        handler.end_headers()
        for _ in range(60):  # one byte a second, for at most a minute
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(1)

    with fake_endpoint(trickle) as url:
        started = time.time()
        result = arena("selfplay", str(scenario(tmp_path, f"openai:m@{url}", "timeout = 2\nretries = 1\n"
                                                "backoff = 0.01")), "--out", str(tmp_path / "run"))
        took = time.time() - started
    assert result.returncode == 1, result.stderr
    assert took < 30, f"a 2 s deadline with one retry took {took:.0f} s"
    episodes = list(read_episodes(tmp_path / "run" / "episodes.jsonl"))
    assert len(episodes) == 3 and all("no complete answer within 2 s" in e.error for e in episodes)


def test_odd_answers_become_typed_turns_or_failed_turns_never_a_crash(tmp_path):
    answers = {
        # Python servers write -Infinity; the move is kept, the log-probabilities dropped
        "neginf": '{"choices": [{"message": {"content": "[propose] (1 book)"}, "finish_reason": "stop", '
                  '"logprobs": {"content": [{"token": "x", "logprob": -Infinity}]}}]}',
        "parts": {"choices": [{"message": {"content": [{"type": "text", "text": "[propose] "},
                                                       {"type": "text", "text": "(1 book)"}]}}]},
        "number": {"choices": [{"message": {"content": 12345}}]},
    }
    for name, body in answers.items():
        with fake_endpoint(lambda handler, request, body=body: send(handler, 200, body)) as url:
            out = tmp_path / name
            played = arena("selfplay", str(scenario(tmp_path, f"openai:m@{url}", "logprobs = true\nretries = 0",
                                                    name=name)), "--out", str(out))
        replayed = arena("replay", str(out), "--limit", "0")
        exported = arena("export", str(out), str(tmp_path / f"{name}.parquet"))
        assert replayed.returncode == 0 and exported.returncode == 0, replayed.stderr + exported.stderr
        assert "Traceback" not in played.stderr + replayed.stderr + exported.stderr
        episodes = list(read_episodes(out / "episodes.jsonl"))
        assert len(episodes) == 3
        if name == "number":
            assert played.returncode == 1
            assert all(not e.ok and "content of type int" in e.error for e in episodes)
        else:
            assert played.returncode == 0, played.stderr
            mine = [t for e in episodes for t in e.turns if t.role == "player_0"]
            assert mine and all(t.text == "[propose] (1 book)" and t.logprobs is None for t in mine)


def test_a_server_down_then_started_the_rerun_retries_the_failed_episodes(tmp_path, tiny_model_dir):
    port = free_port()
    path = scenario(tmp_path, f"openai:{tiny_model_dir}@http://127.0.0.1:{port}/v1",
                    "timeout = 30\nretries = 0", episodes=4)
    out = tmp_path / "run"
    down = arena("selfplay", str(path), "--out", str(out))
    assert down.returncode == 1 and "4 of 4 episodes failed" in down.stdout, down.stdout + down.stderr
    server, _ = serve_transformers(tiny_model_dir, port)
    try:
        up = arena("selfplay", str(path), "--out", str(out))
    finally:
        stop(server)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "4 failed episodes of an earlier run retried, 0 failed again" in up.stdout
    assert "(4 played now, 4 stored)" in up.stdout
    assert (out / "episodes.jsonl").read_bytes().count(b"\n") == 8, "append-only: the failed records stay"
    episodes = list(EpisodeStore(out))
    assert len(episodes) == 4 and all(e.ok for e in episodes), "readers see the retried records only"
    again = arena("selfplay", str(path), "--out", str(out))
    assert again.returncode == 0 and "(0 played now, 4 stored)" in again.stdout


def test_no_made_up_legal_move_rate_when_no_move_was_made():
    from arena.play.episode import Episode
    from arena.play.summary import summarise

    failed = Episode("e", "refine-v0", {}, 0, {"solver": "x"}, {}, status="failed", error="HTTP 500")
    assert summarise([failed])["legal_rate"] is None


def test_an_agent_that_never_answered_is_unrated_not_rated_1000(tmp_path):
    tournament = tmp_path / "t.toml"
    tournament.write_text(f'[agents]\ndown = "openai:m@http://127.0.0.1:{free_port()}/v1"\nscripted = "scripted"\n'
                          'random = "random"\n[[games]]\nid = "negotiation-v0"\n[schedule]\ngames_per_pairing = 2\n'
                          '[ratings]\nbootstrap = 20\n[backend]\nretries = 0\n')
    result = arena("tournament", str(tournament), "--out", str(tmp_path / "t"))
    assert result.returncode == 1 and "of the episodes failed" in one_error_line(result)
    data = json.loads((tmp_path / "t" / "ratings.json").read_text())
    rows = {r["agent"]: r for r in data["agents"]}
    assert rows["down"]["rated"] is False and rows["down"]["rating"] is None and rows["down"]["games"] == 0
    assert rows["down"]["failures"] > 0
    assert rows["scripted"]["rated"] and rows["random"]["rated"]
    assert [r["agent"] for r in data["agents"]][-1] == "down"
    assert "│ down     │ unrated │" in result.stdout


# ----------------------------------------------------------------------------------------------- stores
def _scripted_store(tmp_path: Path, episodes: int = 6) -> Path:
    out = tmp_path / "store"
    result = arena("selfplay", str(scenario(tmp_path, "scripted", episodes=episodes, name="scripted")), "--out",
                   str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_a_garbage_line_is_reported_with_its_place_before_any_work(tmp_path, tiny_model_dir):
    out = _scripted_store(tmp_path)
    lines = (out / "episodes.jsonl").read_text().splitlines(keepends=True)
    (out / "episodes.jsonl").write_text("".join(lines[:2] + ["{not json\n"] + lines[2:]))
    train = tmp_path / "bc.toml"
    train.write_text(f"""
[model]
init = "hf:{tiny_model_dir}"
[game]
id = "negotiation-v0"
options = {{ max_messages = 4 }}
[roles]
player_0 = "policy"
player_1 = "scripted"
[algorithm]
name = "filtered-bc"
rounds = 1
[data]
episodes = ["{out / 'episodes.jsonl'}"]
[eval]
episodes = 2
[run]
wandb = "disabled"
""")
    tournament = tmp_path / "t.toml"
    tournament.write_text('[agents]\nscripted = "scripted"\nrandom = "random"\n[[games]]\nid = "negotiation-v0"\n'
                          '[schedule]\ngames_per_pairing = 2\n[ratings]\nbootstrap = 20\n')
    rated = tmp_path / "rated"
    assert arena("tournament", str(tournament), "--out", str(rated)).returncode == 0
    lines = (rated / "episodes.jsonl").read_text().splitlines(keepends=True)
    (rated / "episodes.jsonl").write_text("".join(lines[:2] + ["\x00\x00garbage\n"] + lines[2:]))
    for args in (["replay", str(out)], ["export", str(out), str(tmp_path / "x.parquet")],
                 ["selfplay", str(tmp_path / "scripted.toml"), "--out", str(out)],
                 ["train", str(train), "--out", str(tmp_path / "trained")],
                 ["report", str(rated)], ["tournament", str(tournament), "--out", str(rated)]):
        result = arena(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "episodes.jsonl, line 3: not a valid episode" in one_error_line(result), args
    assert not (tmp_path / "trained" / "eval.json").exists(), "training stopped before its first evaluation"


def test_a_duplicated_line_is_read_once(tmp_path):
    out = _scripted_store(tmp_path)
    lines = (out / "episodes.jsonl").read_text().splitlines(keepends=True)
    (out / "episodes.jsonl").write_text("".join(lines + [lines[1]]))
    assert len(list(EpisodeStore(out))) == 6
    replayed = arena("replay", str(out), "--limit", "0")
    assert replayed.returncode == 0 and replayed.stdout.count("negotiation-v0-000001 ·") == 1
    assert "1 episodes are stored more than once; each is read once" in replayed.stderr
    rerun = arena("selfplay", str(tmp_path / "scripted.toml"), "--out", str(out))
    assert rerun.returncode == 0 and "(0 played now, 6 stored)" in rerun.stdout


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, tiny_model_dir):
    out = tmp_path / "busy"
    hold = (f"import time; from arena.output import OutputLock; lock = OutputLock({str(out)!r}).acquire(); "
            "print('ready', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        train = tmp_path / "pg.toml"
        train.write_text(f"""
[model]
init = "hf:{tiny_model_dir}"
[game]
id = "negotiation-v0"
[roles]
player_0 = "policy"
player_1 = "scripted"
[algorithm]
name = "pg"
iterations = 1
[run]
wandb = "disabled"
""")
        tournament = tmp_path / "t.toml"
        tournament.write_text('[agents]\na = "scripted"\nb = "random"\n[[games]]\nid = "negotiation-v0"\n')
        for args in (["train", str(train), "--out", str(out)],
                     ["selfplay", str(scenario(tmp_path, "scripted")), "--out", str(out)],
                     ["tournament", str(tournament), "--out", str(out)]):
            result = arena(*args)
            assert result.returncode == 2, result.stderr
            assert f"another process (PID {holder.pid}) is writing" in one_error_line(result)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "train.json").exists() and not (out / "episodes.jsonl").exists()


# ----------------------------------------------------------------------------------------------- a full disk
@pytest.fixture()
def small_disk(tmp_path):
    """A 192 KiB tmpfs, grown by calling the fixture's value with a size in KiB."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")

    def grow(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mount)], check=True)

    grow.path = mount  # type: ignore[attr-defined]
    yield grow
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_loses_nothing_and_the_rerun_completes(tmp_path, small_disk):
    path = scenario(tmp_path, "scripted", episodes=200, name="many")
    full = arena("selfplay", str(path), "--out", str(small_disk.path / "run"))
    assert full.returncode == 1
    assert "no space left on the device" in one_error_line(full)
    stored_before = (small_disk.path / "run" / "episodes.jsonl").read_bytes().count(b"\n")
    assert 0 < stored_before < 200
    small_disk(8192)
    resumed = arena("selfplay", str(path), "--out", str(small_disk.path / "run"))
    assert resumed.returncode == 0, resumed.stderr
    reference = arena("selfplay", str(path), "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0
    got = [strip_timing(e) for e in EpisodeStore(small_disk.path / "run")]
    want = [strip_timing(e) for e in EpisodeStore(tmp_path / "reference")]
    assert sorted(got, key=lambda d: d["id"]) == sorted(want, key=lambda d: d["id"])


def test_training_on_a_full_disk_says_so_and_resumes(tmp_path, small_disk, tiny_model_dir):
    train = tmp_path / "pg.toml"
    train.write_text(f"""
plugins = ["{Path(__file__).with_name('train_game.py')}"]
[model]
init = "hf:{tiny_model_dir}"
[game]
id = "talk-test-v0"
[roles]
speaker = "policy"
[algorithm]
name = "pg"
iterations = 2
groups = 2
group_size = 2
[sampling]
max_new_tokens = 8
[eval]
episodes = 2
[run]
checkpoint_every = 1
wandb = "disabled"
""")
    out = small_disk.path / "train"
    full = arena("train", str(train), "--out", str(out))
    assert full.returncode == 1, full.stderr
    line = one_error_line(full)
    assert "the disk is full" in line and "--resume" in line
    small_disk(65536)
    resumed = arena("train", str(train), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "final" / "model.safetensors").is_file()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]


# ----------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, signum):
    path = scenario(tmp_path, "scripted", name="endless")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "arena", "selfplay", str(path), "--out", str(out),
                             "--episodes", "99999999999999999999"],  # plans are made lazily: it starts at once
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    store = out / "episodes.jsonl"
    while time.time() < deadline and not (store.is_file() and store.read_bytes().count(b"\n") >= 20):
        time.sleep(0.1)
    assert time.time() < deadline, "an endless run must start at once"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stdout + stderr
    assert "interrupted:" in stderr and "run the same command again to resume" in stderr
    assert len(list(EpisodeStore(out))) >= 20


# ----------------------------------------------------------------------------------------------- the terminal
HOSTILE = "\x1b]0;pwned\x1b\\\x1b[31mRED\x1b[2J\x07\x9b6n\u202eevil"
CONTROL_BYTES = ("\x1b", "\x07", "\x9b", "\u202e")


def _clean(text: str) -> bool:
    return not any(c in text for c in CONTROL_BYTES)


def test_control_characters_from_moves_never_reach_the_terminal(tmp_path):
    out = tmp_path / "store"
    store = EpisodeStore(out).open()
    from arena.play.episode import Episode, TurnRecord

    turn = TurnRecord(0, "solver", HOSTILE, HOSTILE, HOSTILE, False, reason=HOSTILE)
    store.append(Episode("hostile", "refine-v0", {}, 0, {"solver": HOSTILE}, {"solver": HOSTILE}, turns=[turn],
                         summary=HOSTILE, end_reason="finished"))
    store.append(Episode("failed", "refine-v0", {}, 1, {"solver": "x"}, {}, status="failed", error=HOSTILE))
    store.close()
    replayed = arena("replay", str(out), "--limit", "0", "--show-observations")
    assert replayed.returncode == 0, replayed.stderr
    assert "\\x1b]0;pwned" in replayed.stdout, "shown escaped, not dropped"
    assert _clean(replayed.stdout + replayed.stderr)
    # a person typing escape sequences at the terminal
    played = subprocess.run([sys.executable, "-m", "arena", "play", "negotiation-v0", "--agents", "human,scripted",
                             "--seed", "1"], cwd=ROOT, input=HOSTILE + "\n", capture_output=True, text=True,
                            timeout=60)
    assert "Traceback" not in played.stderr and _clean(played.stdout + played.stderr)
    # errors and leaderboards that repeat a name from the input
    unknown = arena("play", "negotiation\x1b[31m-v0")
    assert unknown.returncode == 2 and _clean(unknown.stdout + unknown.stderr)
    tournament = tmp_path / "t.toml"
    tournament.write_text('[agents]\n"evil\\u001b[31m" = "scripted"\nrandom = "random"\n[[games]]\n'
                          'id = "negotiation-v0"\n[schedule]\ngames_per_pairing = 1\n[ratings]\nbootstrap = 20\n')
    rated = arena("tournament", str(tournament), "--out", str(tmp_path / "t"))  # agent names are checked
    assert rated.returncode == 2 and "evil\\x1b[31m" in one_error_line(rated)
    assert _clean(rated.stdout + rated.stderr)


# ----------------------------------------------------------------------------------------------- the boundary
def test_every_answer_is_checked_once_at_the_boundary():
    from agents.base import Completion, checked_completion

    assert "text of type int" in checked_completion(Completion(text=12345), "x").error  # type: ignore[arg-type]
    assert "not a list of integers" in checked_completion(Completion(text="a", token_ids=[1, "2"]), "x").error
    dropped = checked_completion(Completion(text="a", token_ids=[1, 2], logprobs=[-0.1, float("-inf")]), "x")
    assert dropped.error is None and dropped.logprobs is None and "finite" in dropped.info["logprobs_dropped"]
    misaligned = checked_completion(Completion(text="a", token_ids=[1, 2], logprobs=[-0.1]), "x")
    assert misaligned.logprobs is None and misaligned.token_ids == [1, 2]
    assert "[REDACTED]" in checked_completion(Completion(text="", error=f"Bearer {SECRET}"), "x").error
    assert "not a Completion" in checked_completion("text", "x").error  # type: ignore[arg-type]


def test_the_store_refuses_what_its_readers_could_not_read(tmp_path):
    from arena.play.episode import Episode
    from arena.play.store import StoreError

    with EpisodeStore(tmp_path).open() as store:
        with pytest.raises(StoreError, match="episode 'nan' was not stored: its readers could not read it back"):
            store.append(Episode("nan", "refine-v0", {}, 0, {"solver": "x"}, {}, scores={"solver": float("nan")}))
        store.append(Episode("fine", "refine-v0", {}, 1, {"solver": "x"}, {}, scores={"solver": 1.0}))
    assert [e.id for e in EpisodeStore(tmp_path)] == ["fine"], "what was refused never reached the file"


def test_secrets_are_removed_from_values_never_from_the_json_text(tmp_path, monkeypatch):
    from arena.play.episode import Episode

    monkeypatch.setenv("MY_TOKEN", "12345678")  # a secret made of digits must not cut a number
    monkeypatch.setenv("OTHER_API_KEY", 'quo"ted\\key')  # one JSON escapes must still be found
    with EpisodeStore(tmp_path).open() as store:
        store.append(Episode("e", "refine-v0", {}, 9123456789, {"solver": "x"},
                             {"solver": 'say 12345678 and quo"ted\\key'}))
    [episode] = list(EpisodeStore(tmp_path))
    assert episode.seed == 9123456789 and episode.briefs["solver"] == "say [REDACTED] and [REDACTED]"
