"""refine-v0: tasks, answer checking, process scores, both protocols, golden transcripts."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import games
from games.options import OptionError
from games.refine import CORRECTION_INSTRUCTION, checking, tasks
from tests.helpers import scripted_game

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("source", sorted(tasks.GENERATORS))
@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_generated_tasks_are_consistent_and_readable(source, difficulty):
    rng = np.random.default_rng(difficulty)
    for _ in range(50):
        task = tasks.generate(source, rng, difficulty)
        assert task.source == source and task.question.strip()
        assert tasks.format_number(tasks.evaluate(task.ops)[-1]) == task.answer
        read = tasks.read_question(task.question)
        assert read is not None, task.question
        assert tasks.format_number(tasks.evaluate(read)[-1]) == task.answer


def test_difficulty_adds_steps():
    rng = np.random.default_rng(0)
    easy = [len(tasks.generate("arithmetic", rng, 1).ops) for _ in range(20)]
    hard = [len(tasks.generate("arithmetic", rng, 5).ops) for _ in range(20)]
    assert max(easy) < min(hard)


def test_word_problems_are_whole_numbers():
    rng = np.random.default_rng(1)
    for _ in range(200):
        task = tasks.generate("word", rng, 4)
        assert "." not in task.answer and int(task.answer) >= 0, task


def test_task_file(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"question": "What is 2+2?", "answer": 4}\n\n'
                    '{"question": "Capital of France?", "answer": "Paris"}\n')
    env = games.make("refine-v0", task_file=str(path))
    seen = set()
    for seed in range(20):
        env.reset(seed=seed)
        seen.add(env.task.question)
    assert seen == {"What is 2+2?", "Capital of France?"}
    env.reset(seed=0)
    while env.task.answer != "Paris":
        env.reset(seed=int(env.np_random.integers(1000)))
    env.step("It is Paris.\nFinal Answer: paris")
    assert env.correct == [True]


@pytest.mark.parametrize("content,message", [
    ('{"question": "q"}\n', "line 1: expected an object with 'question' and 'answer'"),
    ('{"question": "q", "answer": 1}\nnot json\n', "line 2: not valid JSON"),
    ('{"question": "", "answer": 1}\n', "'question' must be a non-empty string"),
    ("\n", "has no tasks"),
])
def test_bad_task_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(OptionError, match=message):
        games.make("refine-v0", task_file=str(path))


def test_missing_task_file():
    with pytest.raises(OptionError, match="not found"):
        games.make("refine-v0", task_file="/no/such/file.jsonl")


@pytest.mark.parametrize("text,answer", [
    ("Step 1: 2 + 2 = 4\nFinal Answer: 4", "4"),
    ("final answer: The final answer is $52$. I hope it is correct.", "$52$."),
    ("so \\boxed{3/4}", "3/4"),
    ("Thus the answer is 12 apples", "12 apples"),
    ("Final Answer: 1\nwait\nFinal Answer: 2", "2"),
    ("no answer here 42", None),
])
def test_extract_answer(text, answer):
    assert checking.extract_answer(text) == answer


@pytest.mark.parametrize("predicted,gold,ok", [
    ("52", "52", True), ("$52$.", "52", True), ("52 apples", "52", True), ("1,234", "1234", True),
    ("0.75", "3/4", True), ("3/4", "0.75", True), ("x = -5", "-5", True), ("53", "52", False),
    ("Paris", "paris", True), ("Paris, France", "Paris", False), (None, "1", False), ("", "1", False),
])
def test_answers_match(predicted, gold, ok):
    assert checking.answers_match(predicted, gold) is ok


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=20))
def test_checking_never_raises(text, gold):
    checking.answers_match(checking.extract_answer(text), gold or "0")
    checking.ArithmeticStepScorer().score("q", text)
    checking.parse_verdict(text)
    checking.word_edit_distance(text, gold)


def test_arithmetic_step_scorer():
    solution = ("Step 1: apples bought: 3 * 4 = 12\nStep 2: 12 + 5 = 18\nThen we think hard.\n"
                "Step 3: x = 18 / 3 = 6\nconstant: -3 - 4 = -7\nFinal Answer: 6")
    scores = [s.score for s in checking.ArithmeticStepScorer().score("", solution)]
    assert scores == [10, 0, None, 10, 10]
    annotated = checking.annotate_steps(checking.ArithmeticStepScorer().score("", solution))
    assert "Step 2: 12 + 5 = 18 (Score: 0/10)" in annotated and "Then we think hard." in annotated
    assert [s.score for s in checking.NoStepScorer().score("", solution)] == [None] * 5


def test_worked_steps_share_credits_the_tasks_own_steps_in_order():
    ops = (tasks.Op(16, "+", 4), tasks.Op("#0", "-", 5))  # (16 + 4) - 5
    share = checking.worked_steps_share
    assert share(ops, "Step 1: 16 + 4 = 20\nStep 2: 20 - 5 = 15\nFinal Answer: 15") == 1.0
    # one slip: the second step is still right on the result the solution itself wrote
    assert share(ops, "Step 1: 16 + 4 = 21\nStep 2: 21 - 5 = 16\nFinal Answer: 16") == 0.5
    assert share(ops, "Step 1: 16 + 4 = 20\nStep 2: 20 - 5 = 14\nFinal Answer: 14") == 0.5
    assert share(ops, "16 × 4 = 64\n64 − 5 = 59") == 0.5  # wrong operator first; the second step holds
    assert share(ops, "Step 1: 1 + 1 = 2\nStep 2: 2 + 2 = 4") == 0.0  # true, but not the task's steps
    assert share(ops, "Step 1: 16 + 4 = 20") == 0.5  # a missing step counts as wrong
    assert share(ops, "Final Answer: 15") == 0.0 and share((), "1 + 1 = 2") == 0.0
    task = tasks.generate("linear", np.random.default_rng(0), 3)  # notes, '#k' operands and a division
    values = tasks.evaluate(task.ops)
    lines = []
    for step, value in zip(task.ops, values):
        a, b = (values[int(x[1:])] if isinstance(x, str) else x for x in (step.left, step.right))
        lines.append(f"{step.note}{tasks.format_number(a)} {step.op} {tasks.format_number(b)} = "
                     f"{tasks.format_number(value)}")
    assert share(task.ops, "\n".join(lines)) == 1.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_worked_steps_share_never_raises(text):
    assert 0.0 <= checking.worked_steps_share((tasks.Op(3, "/", 0), tasks.Op("#0", "*", 2)), text) <= 1.0


def test_verdicts_and_edit_distance():
    assert checking.parse_verdict("looks fine. Verdict: correct") is True
    assert checking.parse_verdict("Verdict: correct... no wait. Verdict: **incorrect**") is False
    assert checking.parse_verdict("I am not sure") is None
    assert checking.word_edit_distance("a b c", "a b c") == 0.0
    assert checking.word_edit_distance("a b c d", "a x c d") == 0.25
    assert checking.word_edit_distance("", "a b") == 1.0


def _self_correct(first, second, **options):
    env = games.make("refine-v0", tasks="arithmetic", **options)
    env.reset(seed=0)
    answer = env.task.answer
    env.step(first.format(a=answer))
    assert CORRECTION_INSTRUCTION in env.observe("solver")["text"]
    env.step(second.format(a=answer))
    return env


def test_self_correct_rewards_each_attempt_and_adds_the_bonus():
    env = _self_correct("Final Answer: 999999", "Final Answer: {a}", correction_bonus=10.0)
    assert [r.rewards.get("solver", 0.0) for r in env.records] == [0.0, 1.0 + 10.0]
    m = env.result.metrics
    assert (m["acc_t1"], m["acc_t2"], m["delta_i_to_c"], m["delta_c_to_i"], m["delta_t1_t2"]) == (0, 1, 1, 0, 1)
    assert env.result.scores == {"solver": 1.0}
    env = _self_correct("Final Answer: {a}", "Final Answer: 999999", correction_bonus=10.0)
    assert [r.rewards.get("solver", 0.0) for r in env.records] == [1.0, -10.0]
    assert env.result.metrics["delta_c_to_i"] == 1.0 and env.result.scores == {"solver": 0.0}


def test_step_credit_adds_a_process_reward_but_scores_stay_the_answer():
    env = games.make("refine-v0", tasks="arithmetic", difficulty=1, step_credit=0.5)
    env.reset(seed=0)
    (first, second) = env.task.ops
    r1 = tasks.evaluate(env.task.ops)[0]
    env.step(f"Step 1: {first.left} {first.op} {first.right} = {r1:g}\nStep 2: 0 + 0 = 0\nFinal Answer: 0")
    env.step(f"Step 1: {first.left} {first.op} {first.right} = {r1:g}\n"
             f"Step 2: {r1:g} {second.op} {second.right} = {env.task.answer}\nFinal Answer: {env.task.answer}")
    assert [r.rewards.get("solver", 0.0) for r in env.records] == [0.25, 1.5]
    assert env.result.scores == {"solver": 1.0} and env.result.metrics["acc_t1"] == 0.0
    assert _self_correct("Final Answer: 999999", "Final Answer: {a}").records[0].rewards.get("solver", 0.0) == 0.0


def test_an_empty_attempt_is_illegal_and_retried():
    env = games.make("refine-v0")
    env.reset(seed=1)
    env.step("   ")
    assert not env.records[-1].legal and env.agent_selection == "solver" and env.attempts == []


def test_self_correct_turn_limit_counts_missing_attempts_as_wrong():
    env = games.make("refine-v0")
    env.reset(seed=1)
    for _ in range(env.turn_limit()):
        if env.done:
            break
        env.step("")
    assert env.done and env.result.reason == "turn limit" and env.result.metrics["acc_t2"] == 0.0


def _scr(seed=0, **options):
    env = games.make("refine-v0", protocol="solver-critic-refiner", tasks="arithmetic", **options)
    env.reset(seed=seed)
    return env


def test_critic_sees_step_scores_and_an_accepting_verdict_ends_the_game():
    env = _scr()
    a = env.task.answer
    env.step(f"Step 1: 2 + 2 = 5\nFinal Answer: {a}")
    seen = env.observe("critic")["text"]
    assert "(Score: 0/10)" in seen and f"Stated answer: {a}" in seen and env.task.question in seen
    env.step("Step 1 is off but the answer is right. Verdict: correct")
    assert env.done and env.result.metrics["critic_accuracy"] == 1.0 and env.result.metrics["rounds"] == 0.0
    assert env.result.scores == {"solver": 1.0, "critic": 1.0, "refiner": 1.0}


def test_critic_rules():
    env = _scr()
    env.step("Final Answer: 0")
    env.step("Step 1 is wrong.")
    assert not env.records[-1].legal and "Verdict" in env.records[-1].reason
    env.step("Here is the fix:\nFinal Answer: 3\nVerdict: incorrect")
    assert not env.records[-1].legal and "must not write a new solution" in env.records[-1].reason
    env.step("The final answer is wrong. Verdict: incorrect")
    assert env.records[-1].legal and env.agent_selection == "refiner"
    assert "Critique:" in env.observe("refiner")["text"]


def test_refinement_rounds_stop_at_max_rounds():
    env = _scr(max_rounds=2)
    env.step("Final Answer: 0")
    for _ in range(2):
        env.step("Verdict: incorrect")
        env.step("Final Answer: 1")
    assert env.done and env.result.metrics["rounds"] == 2.0
    assert [r.role for r in env.records] == ["solver", "critic", "refiner", "critic", "refiner"]


def test_scripted_players_leave_room_to_improve():
    sc = games.RefineGame.aggregate_metrics([scripted_game("refine-v0", s).result.metrics for s in range(60)])
    assert 0.5 < sc["acc_t1"] < 0.95 and sc["delta_i_to_c"] > 0 and sc["delta_c_to_i"] > 0
    scr = games.RefineGame.aggregate_metrics(
        [scripted_game("refine-v0", s, protocol="solver-critic-refiner").result.metrics for s in range(60)])
    assert scr["acc_t2"] > scr["acc_t1"] and 0.5 < scr["critic_accuracy"] < 1.0


def test_scripted_solver_guesses_on_unreadable_questions(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "How many legs do 3 spiders have?", "answer": 24}) + "\n")
    env = scripted_game("refine-v0", 0, task_file=str(path))
    assert env.done and env.attempts[0].endswith("Final Answer: 3")


@pytest.mark.parametrize("name,seed,options", [
    ("self-correct-seed11", 11, {"correction_bonus": 1.0}),
    ("scr-seed5", 5, {"protocol": "solver-critic-refiner"}),
])
def test_golden_transcript(name, seed, options):
    """Full transcripts of fixed seeds, byte for byte. Set ARENA_UPDATE_GOLDEN=1 to rewrite them."""
    path = GOLDEN / f"refine-v0-{name}.txt"
    transcript = scripted_game("refine-v0", seed=seed, **options).transcript()
    if os.environ.get("ARENA_UPDATE_GOLDEN"):
        path.write_text(transcript, encoding="utf-8")
    assert transcript == path.read_text(encoding="utf-8")


def test_worked_example_ends_every_brief_and_changes_nothing_else():
    """worked_example = true: each role's brief ends with one worked example in the form it asks for (off by
    default: the seed model was trained on the plain briefs); the game plays the same."""
    plain = scripted_game("refine-v0", 3, protocol="solver-critic-refiner")
    shown = scripted_game("refine-v0", 3, protocol="solver-critic-refiner", worked_example=True)
    for role in shown.roles:
        added = shown.brief(role).removeprefix(plain.brief(role))
        assert added.startswith("\n\nFor example") and added != shown.brief(role), role
        assert ("Verdict: incorrect" if role == "critic" else "Final Answer: 37") in added
        assert checking.extract_answer(added) == (None if role == "critic" else "37")
    assert shown.rewards == plain.rewards and shown.attempts == plain.attempts
