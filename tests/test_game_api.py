"""Every registered game, in each of its variants, honours the PettingZoo and Gymnasium contracts."""

import random
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, seed_test

import games
from tests.helpers import play_out, scripted_game


def test_api_test(variant):
    game_id, options = variant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(games.make(game_id, **options), num_cycles=200)


def test_seed_test(variant):
    game_id, options = variant
    seed_test(lambda: games.make(game_id, **options), num_cycles=200)


def test_gymnasium_wrapper_passes_check_env(variant):
    game_id, options = variant
    roles = games.make(game_id, **options).roles
    for role in roles:
        others = {r: "scripted" for r in roles if r != role}
        env = games.to_gymnasium(game_id, role=role, opponents=others, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(env, skip_render_check=True)


def test_gymnasium_episode_pays_the_role_its_rewards(variant):
    game_id, options = variant
    spec = games.get_spec(game_id)
    roles = games.make(game_id, **options).roles
    role = roles[-1]
    env = games.to_gymnasium(game_id, role=role, opponents={r: "scripted" for r in roles if r != role}, **options)
    me = spec.scripted_player(role, env.game.options, 1)
    obs, info = env.reset(seed=5)
    total, steps, terminated = 0.0, 0, env.game.done
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(me.act(obs))
        total += reward
        steps += 1
        assert steps <= env.game.turn_limit()
    if not steps:  # the game ended before this role's first turn: one step collects its reward
        obs, total, terminated, truncated, info = env.step("ignored")
        assert terminated and info["action_ignored"]
    assert "scores" in info
    assert total == pytest.approx(sum(r.rewards.get(role, 0.0) for r in env.game.records))
    with pytest.warns(UserWarning, match="after the episode ended"):
        after = env.step("anything")
    assert after[1] == 0.0 and after[2] is True


def test_same_seed_same_transcript(variant):
    game_id, options = variant
    a = scripted_game(game_id, seed=11, **options).transcript()
    b = scripted_game(game_id, seed=11, **options).transcript()
    assert a == b
    assert scripted_game(game_id, seed=12, **options).transcript() != a


def test_reset_on_a_used_instance_equals_a_fresh_instance(variant):
    game_id, options = variant
    spec = games.get_spec(game_id)
    used = spec.make(render_mode="ansi", **options)
    for seed in (1, 2, 3):  # play some episodes first
        rng = np.random.default_rng(seed)
        play_out(used, lambda role, obs, rng=rng: spec.cls.random_move(role, obs, rng), seed)
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    fresh = spec.make(render_mode="ansi", **options)
    play_out(used, lambda role, obs: spec.cls.random_move(role, obs, rng_a), 42)
    play_out(fresh, lambda role, obs: spec.cls.random_move(role, obs, rng_b), 42)
    assert used.transcript() == fresh.transcript()


def test_games_do_not_touch_global_random_state(variant):
    game_id, options = variant
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    scripted_game(game_id, seed=3, **options)
    assert (random.random(), np.random.random()) == expected


def test_every_game_ends_within_its_turn_limit_with_random_players(variant):
    game_id, options = variant
    roles = games.make(game_id, **options).roles
    for seed in range(15):
        env = scripted_game(game_id, seed, kinds={r: "random" for r in roles}, **options)
        assert env.done
        assert len(env.records) <= env.turn_limit()
        assert set(env.result.scores) == set(roles)


def test_scripted_players_make_legal_moves(variant):
    game_id, options = variant
    for seed in range(15):
        env = scripted_game(game_id, seed, **options)
        illegal = [r for r in env.records if not r.legal]
        assert not illegal, illegal


def test_count_metrics_name_metrics_the_game_reports(variant):
    game_id, options = variant
    reported = set()
    for seed in range(5):
        reported |= set(scripted_game(game_id, seed, **options).result.metrics)
    assert set(games.get_spec(game_id).cls.count_metrics) <= reported


def test_game_card_and_brief(game_id):
    spec = games.get_spec(game_id)
    assert len(spec.card) > 300 and spec.summary
    for word in ("Roles", "Observations", "Moves", "End", "Scores", "Metrics"):
        assert word in spec.card, f"the card of {game_id} has no {word!r} section"
    for options in spec.cls.variants:
        env = spec.make(**options)
        for role in env.roles:
            assert len(env.brief(role)) > 50


# Arbitrary strings: empty, huge, control characters, other scripts, tags the games look for.
move_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=50),
    st.sampled_from(["", " ", "\x00", "[propose]", "[propose] (99 books)", "[ABORT]", "\u202e\u200b",
                     "Final Answer:", "Final Answer: 1e400", "Verdict: correct", "Verdict: incorrect\nFinal Answer: 3",
                     "\\boxed{}", "Symptoms: ;;;", "Diagnosis: \nPlan:", "Rating: 0", "Rating: 10", "Rating: 99",
                     "x" * 100_000, "书" * 5000, "🎲" * 10, "[propose] (all books, all hats, all balls)"]),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_any_string_is_a_safe_move(variant, data, seed):
    game_id, options = variant
    env = games.make(game_id, **options)
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
