"""The arena command line, driven as a user would."""

import json

from typer.testing import CliRunner

from arena.cli import app
from tests.helpers import arena

runner = CliRunner()


def test_games_lists_negotiation():
    result = runner.invoke(app, ["games"])
    assert result.exit_code == 0, result.output
    assert "negotiation-v0" in result.output and "Deal or No Deal" in result.output


def test_games_shows_card_and_options():
    result = runner.invoke(app, ["games", "negotiation-v0"])
    assert result.exit_code == 0, result.output
    assert "pareto_optimal" in result.output and "objective" in result.output and "max_messages" in result.output


def test_unknown_game_is_a_one_line_error():
    result = runner.invoke(app, ["games", "negotiaton-v0"])
    assert result.exit_code == 2
    assert "Did you mean 'negotiation-v0'" in result.output and "Traceback" not in result.output


def test_play_scripted_prints_transcript_and_result():
    result = runner.invoke(app, ["play", "negotiation-v0", "--agents", "scripted", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "player_0 (scripted)" in result.output and "agreement" in result.output


def test_play_json_is_an_episode_and_nothing_else():
    result = arena("play", "negotiation-v0", "-a", "scripted,random", "--json", "-o", "objective=coop")
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    episode = json.loads(result.stdout)
    assert episode["game"] == "negotiation-v0" and episode["options"]["objective"] == "coop"
    assert episode["roles"] == {"player_0": "scripted", "player_1": "random"}


def test_play_with_a_human_reads_moves_and_ends_on_eof():
    # seed 1: player_1 moves first, so the human (player_0) answers the scripted opening.
    result = runner.invoke(app, ["play", "negotiation-v0", "--agents", "human,scripted", "--seed", "1"],
                           input="I want the hat.\n")
    assert result.exit_code == 130, result.output
    assert "You play player_0" in result.output and "Partner: I suggest" in result.output
    assert "Game stopped" in result.output


def test_play_with_a_human_to_the_end():
    moves = "[propose] (0 books, 1 hat, 0 balls)\n"
    result = runner.invoke(app, ["play", "negotiation-v0", "--agents", "human,scripted", "--seed", "1"], input=moves)
    assert result.exit_code == 0, result.output
    assert "Game over" in result.output or "finished" in result.output


def test_bad_inputs_are_clear_errors():
    cases = [
        (["play", "negotiation-v0", "-o", "objective"], "expects KEY=VALUE"),
        (["play", "negotiation-v0", "-o", "objectiv=coop"], "Did you mean 'objective'"),
        (["play", "negotiation-v0", "-a", "scripted,random,human"], "gave 3 agents"),
        (["play", "negotiation-v0", "-a", "robot"], "unknown agent 'robot'"),
        (["play", "negotiation-v0", "--plugin", "missing_file.py"], "not found"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


def test_every_game_variant_plays_from_the_cli(variant):
    game_id, options = variant
    args = ["play", game_id, "--agents", "scripted", "--seed", "2"]
    for key, value in options.items():
        args += ["-o", f"{key}={value}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "seed 2" in result.output


def test_a_human_can_be_the_critic():
    moves = "Step 2 is wrong. Verdict: incorrect\nVerdict: correct\nVerdict: correct\nVerdict: correct\n"
    result = runner.invoke(app, ["play", "refine-v0", "-a", "scripted,human,scripted", "-s", "5",
                                 "-o", "protocol=solver-critic-refiner"], input=moves)
    assert result.exit_code == 0, result.output
    assert "You play critic" in result.output and "(Score:" in result.output and "critic_accuracy" in result.output


def test_a_human_can_be_the_therapist():
    questions = "How is your mood? Symptoms: feeling down\n" * 9
    answer = "Diagnosis: major depressive disorder Plan: behavioural activation, cognitive behavioural therapy\n"
    result = runner.invoke(app, ["play", "therapy-v0", "--agents", "scripted,human", "--seed", "1"],
                           input=questions + answer + "Plan: cbt\n" * 7)
    assert result.exit_code == 0, result.output
    assert "You play therapist" in result.output and "diagnosis_correct" in result.output
