"""Rule-based players for refine-v0: a fallible solver, a critic that trusts the step scores, a careful refiner.

They read only their role's observation. The solver and refiner recover the
steps of a built-in task from its question (:func:`tasks.read_question`) and
work them out, slipping now and then like a person would:

* an *arithmetic slip* writes a wrong result (a step scorer catches it);
* a *misread* copies a number wrongly and computes correctly from it (no
  arithmetic check catches it).

On its second attempt (self-correct) the solver re-checks its steps: it finds
most arithmetic slips, few misreads, and sometimes breaks a right step. The
critic flags every step whose score is below 10/10 and judges the solution
incorrect if any is flagged or no answer is stated. The refiner re-solves the
problem carefully. For questions they cannot read (a user's task file), the
solver and refiner guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from games.players import Player, players_by_role
from games.refine import tasks
from games.refine.game import CORRECTION_INSTRUCTION, RefineGame
from games.refine.tasks import Op, format_number

__all__ = ["ScriptedSolver", "ScriptedCritic", "ScriptedRefiner", "ScriptedRefinePlayer"]

_PROBLEM = re.compile(r"Problem:\s*(?P<q>[^\n]+)")


@dataclass
class WrittenStep:
    op: Op
    left: float
    right: float
    result: float
    slip: str = ""  # "", "arithmetic" or "misread"


def _apply(a: float, op: str, b: float) -> float:
    return tasks.evaluate([Op(a, op, b)])[0]


class _Worker(Player):
    """Shared by the solver and the refiner: work out steps with a given slip rate."""

    slip_rate = 0.1
    misread_share = 0.3

    def __init__(self, role: str, options: Any, seed: int | None = None):
        super().__init__(role, options, seed)
        self.question: str | None = None
        self.steps: list[WrittenStep] = []

    def _remember_question(self, text: str) -> None:
        m = _PROBLEM.search(text)
        if m:
            self.question = m.group("q").strip()

    def _slip(self, value: float) -> float:
        return value + int(self.rng.choice([-3, -2, -1, 1, 2, 3]))

    def _work(self, ops: tuple[Op, ...], slip_rate: float) -> list[WrittenStep]:
        results: list[float] = []
        steps = []
        for op in ops:
            left, right = (results[int(x[1:])] if isinstance(x, str) else float(x) for x in (op.left, op.right))
            slip = ""
            if self.rng.random() < slip_rate:
                slip = "misread" if self.rng.random() < self.misread_share else "arithmetic"
            if slip == "misread" and not isinstance(op.right, str):
                right = self._slip(right)
            elif slip == "misread":
                slip = "arithmetic"
            result = _apply(left, op.op, right)
            if slip == "arithmetic":
                result = self._slip(result)
            steps.append(WrittenStep(op, left, right, result, slip))
            results.append(result)
        return steps

    def _recompute(self, steps: list[WrittenStep]) -> list[WrittenStep]:
        """Carry corrected results forward to the steps that use them."""
        results: list[float] = []
        out = []
        for s in steps:
            left = results[int(s.op.left[1:])] if isinstance(s.op.left, str) else s.left
            right = results[int(s.op.right[1:])] if isinstance(s.op.right, str) else s.right
            result = _apply(left, s.op.op, right)
            if s.slip == "arithmetic":
                result = s.result if (left, right) == (s.left, s.right) else self._slip(result)
            out.append(WrittenStep(s.op, left, right, result, s.slip))
            results.append(result)
        return out

    @staticmethod
    def _write(steps: list[WrittenStep]) -> str:
        n = format_number
        lines = [f"Step {k}: {s.op.note}{n(s.left)} {s.op.op} {n(s.right)} = {n(s.result)}"
                 for k, s in enumerate(steps, 1)]
        lines.append(f"Final Answer: {format_number(steps[-1].result)}")
        return "\n".join(lines)

    def _guess(self) -> str:
        numbers = re.findall(r"-?\d+(?:\.\d+)?", self.question or "")
        guess = numbers[-1] if numbers else "0"
        return f"I cannot work this problem out step by step.\nFinal Answer: {guess}"

    def _solve(self, slip_rate: float) -> str:
        ops = tasks.read_question(self.question or "")
        if not ops:
            return self._guess()
        self.steps = self._work(ops, slip_rate)
        return self._write(self.steps)


class ScriptedSolver(_Worker):
    """Solves with occasional slips; on a second attempt re-checks its own steps."""

    find_arithmetic = 0.7  # chance of noticing an arithmetic slip when re-checking
    find_misread = 0.15
    break_right = 0.03  # chance of wrongly "fixing" a right step

    def act(self, observation: Mapping[str, Any]) -> str:
        text = str(observation["text"])
        if CORRECTION_INSTRUCTION[:40] in text and self.steps:
            return self._revise()
        if CORRECTION_INSTRUCTION[:40] in text:
            return self._solve(self.slip_rate / 2)
        self._remember_question(text)
        return self._solve(self.slip_rate)

    def _revise(self) -> str:
        revised = []
        for s in self.steps:
            if s.slip == "arithmetic" and self.rng.random() < self.find_arithmetic:
                s = WrittenStep(s.op, s.left, s.right, s.result, "")
            elif s.slip == "misread" and self.rng.random() < self.find_misread:
                s = WrittenStep(s.op, s.left, float(s.op.right), s.result, "")  # misreads are of plain numbers
            elif not s.slip and self.rng.random() < self.break_right:
                s = WrittenStep(s.op, s.left, s.right, self._slip(s.result), "arithmetic")
            revised.append(s)
        self.steps = self._recompute(revised)
        return self._write(self.steps)


class ScriptedCritic(Player):
    """Flags steps scored below 10/10; judges the solution incorrect if any is flagged or no answer is stated."""

    _SCORED = re.compile(r"\(Score:\s*(\d+)/10\)")

    def act(self, observation: Mapping[str, Any]) -> str:
        text = str(observation["text"])
        review = text.split("Solution to review:", 1)[-1]
        flagged, lines = [], []
        steps = [line for line in review.splitlines() if line.strip() and not line.startswith("Stated answer:")]
        for k, line in enumerate(steps, 1):
            m = self._SCORED.search(line)
            if m and int(m.group(1)) < 10:
                flagged.append(k)
                lines.append(f"Step {k} has a calculation error (Score: {m.group(1)}/10).")
        no_answer = "Stated answer: (none)" in review
        if no_answer:
            lines.append("The solution states no final answer.")
        if not flagged and not no_answer:
            lines.append("I checked every step and found no error.")
        lines.append("Verdict: " + ("incorrect" if flagged or no_answer else "correct"))
        return "\n".join(lines)


class ScriptedRefiner(_Worker):
    """Re-solves the problem carefully after a critique."""

    slip_rate = 0.03

    def act(self, observation: Mapping[str, Any]) -> str:
        text = str(observation["text"])
        self._remember_question(text)
        return self._solve(self.slip_rate)


ScriptedRefinePlayer = players_by_role(
    "ScriptedRefinePlayer", {"solver": ScriptedSolver, "critic": ScriptedCritic, "refiner": ScriptedRefiner}
)

RefineGame.scripted_player = ScriptedRefinePlayer
