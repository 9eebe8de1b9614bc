"""Agent specs, the rule-based policies, the episode runner and the episode record."""

import json

import pytest

import agents
import games
from agents.base import Completion, Policy
from arena.play.episode import Episode
from arena.play.rollout import EpisodeRunner, run_episode


def test_agent_specs():
    assert isinstance(agents.load("scripted"), agents.ScriptedPolicy)
    assert isinstance(agents.load("random"), agents.RandomPolicy)
    with pytest.raises(agents.PolicyError, match="Did you mean 'scripted'"):
        agents.load("scriptd")
    with pytest.raises(agents.PolicyError, match="takes no argument"):
        agents.load("scripted:x")
    with pytest.raises(agents.PolicyError, match="non-empty"):
        agents.load("  ")


def _play(seed, spec0="scripted", spec1="scripted", **options):
    env = games.make("negotiation-v0", **options)
    return run_episode(env, {"player_0": agents.load(spec0), "player_1": agents.load(spec1)}, seed=seed)


def test_run_episode_is_deterministic_and_complete():
    a, b = _play(3, "scripted", "random"), _play(3, "scripted", "random")
    strip = lambda e: {**e.to_dict(), "started_at": 0, "duration_s": 0,
                       "turns": [{**t, "latency_s": 0} for t in e.to_dict()["turns"]]}
    assert strip(a) == strip(b)
    assert a.ok and a.scores and a.metrics and a.turns
    assert a.roles == {"player_0": "scripted", "player_1": "random"}


def test_messages_are_rebuilt_as_the_role_saw_them():
    episode = _play(1)
    last = episode.turns[-1]
    messages = episode.messages(len(episode.turns) - 1)
    assert messages[0] == {"role": "system", "content": episode.briefs[last.role]}
    own = [t for t in episode.turns if t.role == last.role]
    assert [m["content"] for m in messages if m["role"] == "assistant"] == [t.text for t in own[:-1]]
    assert messages[-1] == {"role": "user", "content": last.observation}


def test_turn_rewards_credit_the_mover_until_its_next_move():
    episode = _play(1)
    assert episode.ok
    for role in episode.roles:
        credited = sum(t.reward for t in episode.turns if t.role == role)
        assert credited == pytest.approx(episode.scores[role])


def test_episode_round_trips_through_json():
    episode = _play(2)
    again = Episode.from_dict(json.loads(json.dumps(episode.to_dict())))
    assert again == episode


def test_bad_episode_json_is_rejected_clearly():
    with pytest.raises(ValueError, match="schema_version"):
        Episode.from_dict({"id": "x", "schema_version": 99})
    good = _play(2).to_dict()
    good["surprise"] = 1
    with pytest.raises(ValueError, match="unknown fields \\['surprise'\\]"):
        Episode.from_dict(good)


class Broken(Policy):
    def generate(self, requests):
        return [Completion(text="", error="backend down") for _ in requests]


class Exploding(Policy):
    def generate(self, requests):
        raise ConnectionError("refused")


@pytest.mark.parametrize("policy", [Broken("broken"), Exploding("exploding")])
def test_a_failing_policy_fails_the_episode_not_the_run(policy):
    env = games.make("negotiation-v0")
    episode = run_episode(env, {"player_0": policy, "player_1": policy}, seed=0)
    assert episode.status == "failed" and episode.error and not episode.scores


def test_runner_requests_carry_both_views():
    env = games.make("negotiation-v0")
    runner = EpisodeRunner(env, {r: agents.load("scripted") for r in env.roles}, seed=4)
    request = runner.pending()
    assert request.messages[0]["role"] == "system" and request.messages[-1]["role"] == "user"
    assert "Items:" in request.messages[-1]["content"]
    assert set(request.observation) >= {"text", "turn", "counts", "values", "proposal_pending"}
    assert runner.pending() is request, "asking twice returns the same pending turn"
    with pytest.raises(ValueError, match="no agent for roles"):
        EpisodeRunner(env, {"player_0": agents.load("scripted")}, seed=0)


@pytest.mark.parametrize("error", [EOFError, KeyboardInterrupt])
def test_human_quits_cleanly_on_eof_and_ctrl_c(error):
    from rich.console import Console

    def read(prompt):
        raise error()

    human = agents.HumanPolicy(console=Console(file=open("/dev/null", "w")), read=read)
    env = games.make("negotiation-v0")
    with pytest.raises(agents.HumanQuit, match="left the game"):
        run_episode(env, {"player_0": human, "player_1": human}, seed=0)


def test_human_sees_its_brief_once_and_each_observation():
    import io

    from rich.console import Console

    buffer = io.StringIO()
    moves = iter(["hello", "[propose] (1 book)", "[propose] (0 books)"])
    human = agents.HumanPolicy(console=Console(file=buffer, width=200), read=lambda prompt: next(moves))
    env = games.make("negotiation-v0")
    episode = run_episode(env, {"player_0": human, "player_1": agents.load("scripted")}, seed=1)
    shown = buffer.getvalue()
    assert shown.count("You play player_0") == 1 and "Items:" in shown and episode.ok
