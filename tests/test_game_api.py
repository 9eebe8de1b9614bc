"""Every registered game honours the PettingZoo and Gymnasium contracts."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, seed_test

import games
from tests.helpers import play_out, scripted_game


def test_api_test(game_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(games.make(game_id), num_cycles=200)


def test_seed_test(game_id):
    seed_test(lambda: games.make(game_id), num_cycles=200)


def test_gymnasium_wrapper_passes_check_env(game_id):
    spec = games.get_spec(game_id)
    for role in spec.roles:
        others = {r: "scripted" for r in spec.roles if r != role}
        env = games.to_gymnasium(game_id, role=role, opponents=others)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(env, skip_render_check=True)


def test_gymnasium_episode_pays_the_role_its_score(game_id):
    spec = games.get_spec(game_id)
    role = spec.roles[0]
    env = games.to_gymnasium(game_id, role=role, opponents={r: "scripted" for r in spec.roles[1:]})
    me = spec.scripted_player(role, env.game.options, 1)
    obs, info = env.reset(seed=5)
    total, steps = 0.0, 0
    terminated = False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(me.act(obs))
        total += reward
        steps += 1
        assert steps <= env.game.turn_limit()
    assert "scores" in info
    # With only legal moves, the rewards a role collects add up to its score unless the game pays per turn.
    assert total == pytest.approx(sum(r.rewards.get(role, 0.0) for r in env.game.records))
    with pytest.raises(RuntimeError, match="reset"):
        env.step("anything")


def test_same_seed_same_transcript(game_id):
    a = scripted_game(game_id, seed=11).transcript()
    b = scripted_game(game_id, seed=11).transcript()
    assert a == b
    assert scripted_game(game_id, seed=12).transcript() != a


def test_reset_on_a_used_instance_equals_a_fresh_instance(game_id):
    spec = games.get_spec(game_id)
    used = spec.make(render_mode="ansi")
    for seed in (1, 2, 3):  # play some episodes first
        rng = np.random.default_rng(seed)
        play_out(used, lambda role, obs: spec.cls.random_move(role, obs, rng), seed)
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    fresh = spec.make(render_mode="ansi")
    play_out(used, lambda role, obs: spec.cls.random_move(role, obs, rng_a), 42)
    play_out(fresh, lambda role, obs: spec.cls.random_move(role, obs, rng_b), 42)
    assert used.transcript() == fresh.transcript()


def test_reset_does_not_touch_global_random_state(game_id):
    import random

    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    scripted_game(game_id, seed=3)
    assert (random.random(), np.random.random()) == expected


def test_every_game_ends_within_its_turn_limit_with_random_players(game_id):
    spec = games.get_spec(game_id)
    for seed in range(20):
        env = scripted_game(game_id, seed, kinds={r: "random" for r in spec.roles})
        assert env.done
        assert len(env.records) <= env.turn_limit()
        assert set(env.result.scores) == set(spec.roles)


def test_scripted_players_make_legal_moves(game_id):
    for seed in range(20):
        env = scripted_game(game_id, seed)
        illegal = [r for r in env.records if not r.legal]
        assert not illegal, illegal


def test_game_card_and_brief(game_id):
    spec = games.get_spec(game_id)
    assert len(spec.card) > 300 and spec.summary
    for word in ("Roles", "Observations", "Moves", "End", "Scores"):
        assert word in spec.card, f"the card of {game_id} has no {word!r} section"
    env = spec.make()
    for role in spec.roles:
        assert len(env.brief(role)) > 50


# Arbitrary strings: empty, huge, control characters, other scripts, surrogates excluded by Python.
move_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=50),
    st.sampled_from(["", " ", "\x00", "[propose]", "[propose] (99 books)", "[ABORT]", "\u202e\u200b", "Final Answer:",
                     "x" * 100_000, "书" * 5000, "🎲" * 10, "[propose] (all books, all hats, all balls)"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_any_string_is_a_safe_move(game_id, data, seed):
    env = games.make(game_id)
    env.reset(seed=seed)
    moves = data.draw(st.lists(move_text, min_size=1, max_size=15))
    for agent in env.agent_iter(max_iter=4 * env.turn_limit() + 10):
        obs, _, term, trunc, _ = env.last()
        assert env.observation_space(agent).contains(obs)
        if term or trunc:
            env.step(None)
            continue
        env.step(moves.pop(0) if moves else "")  # then empty moves until the game ends
    assert env.done and len(env.records) <= env.turn_limit()
