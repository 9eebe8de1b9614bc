"""Deal or No Deal: set-ups, parsing, scoring edge cases, objectives, the scripted player, a golden transcript."""

import os
from pathlib import Path

import numpy as np
import pytest

import games
from games.negotiation import rules
from tests.helpers import play_out, scripted_game

GOLDEN = Path(__file__).parent / "golden"


def test_setups_follow_the_rules():
    rng = np.random.default_rng(0)
    seen_counts = set()
    for _ in range(2000):
        setup = rules.sample_setup(rng)
        counts = setup.counts
        seen_counts.add(counts)
        assert all(c >= 1 for c in counts) and 5 <= sum(counts) <= 7
        for values in setup.values:
            assert all(v >= 0 for v in values)
            assert rules.score(values, counts) == 10
        a, b = setup.values
        assert all(x + y > 0 for x, y in zip(a, b)), "every item type must be worth something to someone"
        assert any(x > 0 and y > 0 for x, y in zip(a, b)), "some type must be worth something to both"
    assert len(seen_counts) == len(rules.count_vectors())


@pytest.mark.parametrize(
    "text,share",
    [
        ("[propose] (1 book, 2 hats, 0 balls)", (1, 2, 0)),
        ("[Propose]: 1 books, 2 hat, 0 ball", (1, 2, 0)),
        ("I think this is fair. [propose] (two books, one hat, no balls)", (2, 1, 0)),
        ("[proposal] books: 2, hats: 0, balls: 1", (2, 0, 1)),
        ("[propose] (2 books)", (2, 0, 0)),
        ("[PROPOSE] all books and a ball", (3, 0, 1)),
        ("[propose] book=1 hat=1 ball=1", (1, 1, 1)),
    ],
)
def test_proposals_parse_leniently(text, share):
    move = rules.parse_move(text, (3, 2, 2))
    assert move.kind == "propose" and move.share == share


@pytest.mark.parametrize(
    "text,error",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("[propose] whatever you like", "no item counts"),
        ("[propose] (4 books, 0 hats, 0 balls)", "only 3 books"),
        ("[propose] 1 book, 2 books", "two different counts"),
        ("[message]", "empty"),
    ],
)
def test_bad_moves_are_invalid_with_a_reason(text, error):
    move = rules.parse_move(text, (3, 2, 2))
    assert move.kind == "invalid" and error in move.error


def test_messages_and_aborts():
    assert rules.parse_move("[message] hello there", (1, 1, 3)) == rules.Move("message", text="hello there")
    assert rules.parse_move("fine, [abort]", (1, 1, 3)).kind == "abort"


def test_pareto_optimality():
    counts, values = (1, 1, 3), ((4, 3, 1), (0, 4, 2))
    assert rules.is_pareto_optimal(counts, values, (1, 0, 0))  # books to the one who values them, the rest to 1
    assert not rules.is_pareto_optimal(counts, values, (0, 0, 0))  # player_0 gets nothing: improvable


def _scripted_moves(env, script):
    """Play a fixed list of moves in turn order (the roles alternate as the game dictates)."""
    env.reset(seed=0)
    for move in script:
        env.step(move)
    return env


def _first_and_second(env):
    first = env.agent_selection
    return first, [r for r in env.roles if r != first][0]


def _known_game(**options):
    env = games.make("negotiation-v0", **options)
    env.reset(seed=0)
    return env


def test_a_deal_scores_each_share_by_its_owner_values():
    env = _known_game()
    counts = env.setup_state.counts
    first, second = _first_and_second(env)
    share_first = (counts[0], 0, 0)
    env.step("Let me have the books.")
    env.step(f"[propose] ({rules.format_share(rules.complement(counts, share_first))})")
    env.step(f"[propose] ({rules.format_share(share_first)})")
    assert env.done and env.result.metrics["agreement"] == 1.0
    raw = {first: rules.score(env.setup_state.values[env.roles.index(first)], share_first),
           second: rules.score(env.setup_state.values[env.roles.index(second)], rules.complement(counts, share_first))}
    assert env.result.scores == {r: float(raw[r]) for r in env.roles}
    assert env.result.metrics[f"raw_score_{first}"] == raw[first]
    assert "pareto_optimal" in env.result.metrics
    assert env.result.metrics["messages"] == 3.0


def test_proposals_that_do_not_add_up_score_zero():
    env = _known_game()
    env.step("[propose] (all books, all hats, all balls)")
    env.step("[propose] (1 book)")
    assert env.done
    assert env.result.scores == {"player_0": 0.0, "player_1": 0.0}
    assert env.result.metrics["agreement"] == 0.0 and "pareto_optimal" not in env.result.metrics


def test_abort_ends_with_zero_for_both():
    env = _known_game()
    env.step("hello")
    env.step("[ABORT]")
    assert env.done and env.result.metrics["aborted"] == 1.0
    assert set(env.result.scores.values()) == {0.0}


def test_after_a_proposal_only_a_proposal_or_abort_is_legal():
    env = _known_game()
    first, second = _first_and_second(env)
    env.step("[propose] (1 book)")
    assert env.observe(second)["proposal_pending"] == 1
    assert "made a proposal" in env.observe(second)["text"]
    assert "1 book" not in env.observe(second)["text"], "the partner must not learn the proposal's content"
    env.step("no, let us talk first")
    assert not env.records[-1].legal and "answer with your own" in env.records[-1].reason
    assert env.agent_selection == second, "the same player moves again after an illegal move"
    assert env.rewards[second] == -0.5
    assert "not accepted" in env.observe(second)["text"]


def test_the_message_cap_ends_the_game_with_no_deal():
    env = _known_game(max_messages=6)
    for i in range(6):
        assert not env.done
        env.step(f"message {i}")
    assert env.done and env.result.reason == "finished"
    assert env.result.metrics["agreement"] == 0.0 and env.result.metrics["messages"] == 6.0
    assert "No deal within 6 moves" in env.result.summary


def test_default_cap_is_fifty_messages():
    env = play_out(games.make("negotiation-v0"), lambda role, obs: "hi", seed=1)
    assert len(env.records) == 50 and env.result.metrics["agreement"] == 0.0


@pytest.mark.parametrize("objective,expected", [("semi", (6.0, 4.0)), ("coop", (10.0, 10.0)), ("comp", (2.0, -2.0))])
def test_objectives(objective, expected):
    assert rules.objective_scores(objective, (6.0, 4.0)) == expected


@pytest.mark.parametrize("objective", ["semi", "coop", "comp"])
def test_rewards_follow_the_objective_and_raw_scores_stay_in_metrics(objective):
    env = scripted_game("negotiation-v0", seed=2, objective=objective)
    raw = (env.result.metrics["raw_score_player_0"], env.result.metrics["raw_score_player_1"])
    assert tuple(env.result.scores.values()) == rules.objective_scores(objective, raw)


def test_illegal_move_penalty_option():
    env = _known_game(illegal_move_penalty=0.0)
    env.step("")
    assert not env.records[-1].legal and env.records[-1].rewards == {}


def test_scripted_negotiators_usually_agree_and_beat_random():
    agree = [scripted_game("negotiation-v0", s).result.metrics["agreement"] for s in range(40)]
    assert np.mean(agree) >= 0.9
    vs_random = [scripted_game("negotiation-v0", s, kinds={"player_1": "random"}).result for s in range(40)]
    mean_scripted = np.mean([r.scores["player_0"] for r in vs_random])
    assert mean_scripted < np.mean([scripted_game("negotiation-v0", s).result.scores["player_0"] for s in range(40)])


def test_coop_negotiators_share_values_and_find_better_deals():
    coop = [scripted_game("negotiation-v0", s, objective="coop").result.metrics for s in range(40)]
    semi = [scripted_game("negotiation-v0", s, objective="semi").result.metrics for s in range(40)]
    assert np.mean([m["joint_raw_score"] for m in coop]) > np.mean([m["joint_raw_score"] for m in semi])


def test_aggregate_metrics_skip_what_does_not_apply():
    results = [scripted_game("negotiation-v0", s, kinds={"player_1": kind}).result.metrics
               for s in range(15) for kind in ("scripted", "random")]
    agg = games.NegotiationGame.aggregate_metrics(results)
    deals = [m for m in results if m["agreement"]]
    assert 0 < len(deals) < len(results)
    assert agg["agreement"] == pytest.approx(len(deals) / len(results))
    assert agg["pareto_optimal"] == pytest.approx(np.mean([m["pareto_optimal"] for m in deals]))


@pytest.mark.parametrize(
    "name,seed,kinds,options",
    [
        ("scripted-vs-random-seed5", 5, {"player_1": "random"}, {}),
        ("scripted-comp-seed7", 7, {}, {"objective": "comp"}),
    ],
)
def test_golden_transcript(name, seed, kinds, options):
    """Full transcripts of fixed seeds, byte for byte. Set ARENA_UPDATE_GOLDEN=1 to rewrite them."""
    path = GOLDEN / f"negotiation-v0-{name}.txt"
    transcript = scripted_game("negotiation-v0", seed=seed, kinds=kinds, **options).transcript()
    if os.environ.get("ARENA_UPDATE_GOLDEN"):
        path.write_text(transcript, encoding="utf-8")
    assert transcript == path.read_text(encoding="utf-8")
