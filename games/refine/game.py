"""refine-v0: self-correction (SCoRe) and solver/critic/refiner refinement (MAgICoRe) on checkable problems.

Follows Kumar et al. 2024 ("Training Language Models to Self-Correct via
Reinforcement Learning", SCoRe) and Chen et al. 2024 ("MAgICoRe: Multi-Agent,
Iterative, Coarse-to-Fine Refinement for Reasoning").

Roles
    ``self-correct`` protocol: ``solver`` only. ``solver-critic-refiner``
    protocol: ``solver``, ``critic`` and ``refiner``.

Tasks
    Drawn with the env's ``np_random`` from a built-in generator (``tasks``:
    ``arithmetic`` chains, ``linear`` equations, ``word`` problems from
    templates, or ``mixed``; ``difficulty`` 1-5) or from ``task_file``, a JSONL
    file of ``{"question": ..., "answer": ...}`` records (GSM8K, MATH, ...).

Observations (``Dict``)
    ``text``: what is new for the role: the problem (solver); the solution to
    review with each step's process score, "(Score: n/10)" (critic); the
    solution and the critique (refiner); the self-correction instruction
    (solver's second attempt); why a move was rejected; the result.
    ``turn``: moves so far. ``attempt``: legal solutions written so far.

Moves (any string)
    Solver and refiner: a solution, step by step, ending with a line
    ``Final Answer: <answer>`` (also read: ``\\boxed{...}``, "the answer is ...").
    A solution without a readable answer is legal and wrong. Critic: a
    step-by-step review that may flag steps but must not write a new solution
    (no "Final Answer" line), ending with ``Verdict: correct`` or
    ``Verdict: incorrect``.

Protocols
    ``self-correct`` (SCoRe): the solver answers; it is then told "There might
    be an error in the solution above because of lack of understanding of the
    question. Please correct the error, if any, and rewrite the solution." and
    answers again. ``solver-critic-refiner`` (MAgICoRe): the solver answers;
    then up to ``max_rounds`` rounds of critique and refinement, stopping
    early when the critic's verdict is "correct". The step scorer (a process
    reward, ``step_scorer``; any object with a ``score(question, solution)``
    method can be passed as ``scorer=`` to the constructor) scores each step
    for the critic; the default checks every arithmetic equality in a step
    exactly.

Illegal moves
    An empty move, a move over 4000 characters, or a critique without a
    verdict or with a "Final Answer" line. It changes nothing, counts towards
    the move limit and the same role moves again.

End
    After the second attempt (self-correct); after an accepting verdict or
    ``max_rounds`` refinements (solver-critic-refiner); or at the move limit,
    twice the moves the protocol needs (missing attempts count as wrong).

Rewards and scores
    Each solution's reward is 1 if its answer is correct, else 0, plus
    ``step_credit`` times the share of the task's worked steps it carries out
    right in order (a process reward for built-in tasks, off by default). In
    self-correct the second attempt also gets ``correction_bonus`` * (r2 - r1)
    (alpha in SCoRe's stage II). The critic's reward per review is 1 if its
    verdict matches the reviewed solution's correctness. Scores: solver and
    refiner: whether the final answer is correct (refinement is team work);
    critic: the share of its verdicts that were right.

Metrics
    ``acc_t1`` (first answer correct), ``acc_t2`` (final answer correct),
    ``delta_t1_t2``, ``delta_i_to_c``, ``delta_c_to_i``, ``answer_found_t1``,
    ``answer_found_t2``, ``edit_distance`` (word-level, first vs final
    solution, 0-1), ``rounds`` (refinements made; 1 in self-correct);
    solver-critic-refiner also ``critic_accuracy``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from games.base import TextGame
from games.options import GameOptions, option
from games.refine import checking, tasks
from games.refine.checking import STEP_SCORERS, StepScorer

__all__ = ["RefineGame", "RefineOptions", "CORRECTION_INSTRUCTION", "PROTOCOLS"]

PROTOCOLS = ("self-correct", "solver-critic-refiner")

CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. End with a line 'Final Answer: <answer>'."
)

_FINAL_LINE = re.compile(r"^\W*final answer\s*[:：]", re.IGNORECASE | re.MULTILINE)

_SOLVE = "Solve it step by step, one step per line, and end with a line 'Final Answer: <answer>'."

# worked_example = true: what a small model copies the form from (one fixed task, whose numbers are above
# difficulty 1's)
_EXAMPLE_SOLUTION = ("\n\nFor example:\nProblem: Compute (24 + 19) - 6.\nStep 1: 24 + 19 = 43\nStep 2: 43 - 6 = 37\n"
                     "Final Answer: 37")
_EXAMPLE_REVIEW = ("\n\nFor example, a review of a solution to 'Compute (24 + 19) - 6.':\nStep 1 (24 + 19 = 43) "
                   "is right.\nStep 2 (43 - 6 = 38) is wrong: 43 - 6 = 37.\nVerdict: incorrect")


@dataclass(frozen=True)
class RefineOptions(GameOptions):
    protocol: str = option("self-correct", "self-correct (SCoRe: one solver, two attempts) or "
                                           "solver-critic-refiner (MAgICoRe)", choices=PROTOCOLS)
    tasks: str = option("mixed", "built-in task generator", choices=(*sorted(tasks.GENERATORS), "mixed"))
    task_file: str = option("", "JSONL file of {\"question\", \"answer\"} records; used instead of tasks")
    difficulty: int = option(2, "steps and number sizes of generated tasks", min=1, max=5)
    correction_bonus: float = option(0.0, "alpha: self-correct's second attempt also gets alpha * (r2 - r1)",
                                     min=0.0)
    max_rounds: int = option(3, "critique/refine rounds at most (solver-critic-refiner)", min=1, max=10)
    step_scorer: str = option("arithmetic", "process reward shown to the critic", choices=tuple(STEP_SCORERS))
    step_credit: float = option(0.0, "solutions also earn step_credit x the share of the task's worked steps "
                                     "they carry out right, in order (a process reward; built-in tasks only; "
                                     "0: the answer alone)", min=0.0)
    illegal_move_penalty: float = option(0.0, "reward subtracted for each illegal move", min=0.0)
    worked_example: bool = option(False, "each brief ends with one worked example of the answer form (helps "
                                         "small pretrained chat models keep to it)")

    def validate(self) -> None:
        if self.task_file:
            tasks.load_task_file(self.task_file)  # fail at construction, naming the bad line


class RefineGame(TextGame):
    """Self-correction and solver/critic/refiner refinement (see the module docstring)."""

    game_id = "refine-v0"
    roles = ("solver", "critic", "refiner")
    options_class = RefineOptions
    options: RefineOptions
    variants = ({}, {"protocol": "solver-critic-refiner"}, {"tasks": "word", "difficulty": 4, "correction_bonus": 10.0})
    count_metrics = frozenset({"illegal_moves", "rounds"})

    def __init__(self, options: Any = None, render_mode: str | None = None, scorer: StepScorer | None = None,
                 **kwargs: Any):
        super().__init__(options, render_mode, **kwargs)
        self.scorer: StepScorer = scorer or STEP_SCORERS[self.options.step_scorer]()

    @classmethod
    def roles_for(cls, options: RefineOptions) -> tuple[str, ...]:
        return ("solver",) if options.protocol == "self-correct" else cls.roles

    def tournament_mode(self) -> str:
        return "same-seat"  # one solver, or a team that shares the final answer

    def turn_limit(self) -> int:
        needed = 2 if self.options.protocol == "self-correct" else 1 + 2 * self.options.max_rounds
        return 2 * needed

    def brief(self, role: str) -> str:
        example = _EXAMPLE_REVIEW if role == "critic" else _EXAMPLE_SOLUTION
        return self._brief(role) + (example if self.options.worked_example else "")

    def _brief(self, role: str) -> str:
        if role == "solver":
            text = "You solve math problems. " + _SOLVE
            if self.options.protocol == "self-correct":
                text += " You may be asked to check and rewrite your solution once."
            return text
        if role == "critic":
            return ("You review a solution to a math problem step by step. Each step may carry an automatic "
                    "score (Score: n/10). Point out any wrong step, but do not write a new solution and do not "
                    "write a 'Final Answer' line. End with 'Verdict: correct' or 'Verdict: incorrect'.")
        return ("You revise a solution to a math problem using a reviewer's critique. Fix the wrong steps and "
                "rewrite the whole solution, one step per line, ending with a line 'Final Answer: <answer>'.")

    def extra_spaces(self, role: str) -> dict[str, spaces.Space]:
        return {"attempt": spaces.Discrete(self.turn_limit() + 1)}

    def observe_extras(self, role: str) -> dict[str, Any]:
        return {"attempt": np.int64(len(self.attempts))}

    # ------------------------------------------------------------------ rules
    def setup(self) -> None:
        if self.options.task_file:
            bank = tasks.load_task_file(self.options.task_file)
            self.task = bank[int(self.np_random.integers(len(bank)))]
        else:
            self.task = tasks.generate(self.options.tasks, self.np_random, self.options.difficulty)
        self.attempts: list[str] = []  # legal solutions, in order
        self.correct: list[bool] = []
        self.rewards_of_attempts: list[float] = []  # 1 if correct, plus the step credit
        self.verdicts: list[bool] = []  # was each critic verdict right?
        self.tell("solver", f"Problem: {self.task.question}\n{_SOLVE}")
        self.next_turn("solver")

    def play(self, role: str, move: str) -> None:
        penalty = self.options.illegal_move_penalty
        if not move.strip():
            return self.reject("the move is empty", penalty)
        if role == "critic":
            return self._review(move, penalty)
        self._add_attempt(move)
        reward = self.rewards_of_attempts[-1]
        if self.options.protocol == "self-correct":
            if len(self.attempts) == 1:
                self.reward(role, reward)
                self.tell("solver", CORRECTION_INSTRUCTION)
                return self.next_turn("solver")
            r1, r2 = self.rewards_of_attempts[0], reward
            self.reward(role, r2 + self.options.correction_bonus * (r2 - r1))
            return self._end()
        self.reward(role, reward)
        if role == "refiner" and len(self.attempts) - 1 >= self.options.max_rounds:
            return self._end()
        self._ask_critic()

    def _review(self, move: str, penalty: float) -> None:
        verdict = checking.parse_verdict(move)
        if verdict is None:
            return self.reject("end the review with 'Verdict: correct' or 'Verdict: incorrect'", penalty)
        if _FINAL_LINE.search(move):
            return self.reject("the critic must not write a new solution (no 'Final Answer' line)", penalty)
        right = verdict == self.correct[-1]
        self.verdicts.append(right)
        self.reward("critic", float(right))
        if verdict:
            return self._end()
        solution = self.shown_text(self.attempts[-1])
        critique = self.shown_text(move)
        if len(self.attempts) == 1:
            self.tell("refiner", f"Problem: {self.task.question}\n\nSolution:\n{solution}\n\nCritique:\n{critique}")
        else:
            self.tell("refiner", f"Critique of your revision:\n{critique}")
        self.next_turn("refiner")

    def _ask_critic(self) -> None:
        solution = self.shown_text(self.attempts[-1])
        annotated = checking.annotate_steps(self.scorer.score(self.task.question, solution))
        answer = checking.extract_answer(solution)
        stated = f"\nStated answer: {answer}" if answer is not None else "\nStated answer: (none)"
        head = f"Problem: {self.task.question}\n\n" if len(self.attempts) == 1 else ""
        self.tell("critic", f"{head}Solution to review:\n{annotated}{stated}")
        self.next_turn("critic")

    def _add_attempt(self, move: str) -> None:
        self.attempts.append(move)
        self.correct.append(checking.answers_match(checking.extract_answer(move), self.task.answer))
        credit = self.options.step_credit
        self.rewards_of_attempts.append(float(self.correct[-1]) + (
            credit * checking.worked_steps_share(self.task.ops, move) if credit else 0.0))

    def at_turn_limit(self) -> None:
        self._end(reason="turn limit")

    def _end(self, reason: str = "finished") -> None:
        first = self.correct[0] if self.correct else False
        final = self.correct[-1] if self.correct else False
        found = [checking.extract_answer(a) is not None for a in self.attempts] or [False]
        metrics = {
            "acc_t1": float(first),
            "acc_t2": float(final),
            "delta_t1_t2": float(final) - float(first),
            "delta_i_to_c": float(not first and final),
            "delta_c_to_i": float(first and not final),
            "answer_found_t1": float(found[0]),
            "answer_found_t2": float(found[-1]),
            "edit_distance": checking.word_edit_distance(self.attempts[0], self.attempts[-1])
            if len(self.attempts) > 1 else 0.0,
            "rounds": float(max(0, len(self.attempts) - 1)),
            "illegal_moves": float(sum(not m.legal for m in self.moves())),
        }
        scores = {"solver": float(final)}
        if self.options.protocol == "solver-critic-refiner":
            critic = float(np.mean(self.verdicts)) if self.verdicts else 0.0
            if self.verdicts:
                metrics["critic_accuracy"] = critic
            scores.update(critic=critic, refiner=float(final))
        status = "correct" if final else "wrong"
        summary = f"The final answer is {status} (expected {self.task.answer}) after {len(self.attempts)} solution(s)."
        self.finish(scores, metrics, summary, reason=reason, reward_scores=False)

    @classmethod
    def random_move(cls, role: str, observation: Mapping[str, Any], rng: np.random.Generator) -> str:
        roll = rng.random()
        if role == "critic":
            if roll < 0.7:
                return f"Step 1 looks {'fine' if rng.random() < 0.5 else 'wrong'}. Verdict: " + (
                    "correct" if rng.random() < 0.5 else "incorrect")
            return super().random_move(role, observation, rng)
        if roll < 0.7:
            a, b = (int(x) for x in rng.integers(1, 50, size=2))
            total = a + b + int(rng.integers(-1, 2))
            return f"Step 1: {a} + {b} = {total}\nFinal Answer: {int(rng.integers(-20, 100))}"
        return super().random_move(role, observation, rng)

