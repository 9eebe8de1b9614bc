"""Checking solutions: final answers, per-step process scores, verdicts, edit distance.

Nothing here raises on any input text.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from games.text import parse_number

__all__ = [
    "extract_answer", "answers_match", "split_steps", "StepScore", "StepScorer", "ArithmeticStepScorer",
    "NoStepScorer", "STEP_SCORERS", "parse_verdict", "word_edit_distance", "annotate_steps", "worked_steps_share",
]

_FINAL = re.compile(r"final answer\s*(?:is)?\s*[:：]?\s*(?P<a>[^\n]*)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{(?P<a>[^{}]*)\}")
_ANSWER_IS = re.compile(r"\banswer is\s*:?\s*(?P<a>[^\n]*)", re.IGNORECASE)
_THE_FINAL_ANSWER_IS = re.compile(r"^\s*the final answer is\s*", re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The answer a solution states: the last 'Final Answer: ...', '\\boxed{...}' or 'answer is ...'."""
    if not isinstance(text, str):
        return None
    for pattern in (_FINAL, _BOXED, _ANSWER_IS):
        matches = list(pattern.finditer(text[-20000:]))
        if matches:
            answer = _THE_FINAL_ANSWER_IS.sub("", matches[-1].group("a")).strip()
            answer = re.sub(r"I hope it is correct\.?$", "", answer, flags=re.IGNORECASE).strip()
            return answer or None
    return None


def _normalise_text(s: str) -> str:
    s = s.lower().replace("$", "").replace("\\text", "")
    s = re.sub(r"^(x|answer)\s*=\s*", "", s.strip())
    return re.sub(r"[\s{}]+", " ", s).strip(" .,;:!")


def answers_match(predicted: str | None, gold: str) -> bool:
    """True if the stated answer equals the gold answer (numbers compared as numbers)."""
    if predicted is None:
        return False
    gold_text = _normalise_text(str(gold))
    pred_text = _normalise_text(predicted)
    gold_num = parse_number(gold_text) if re.fullmatch(r"[-+\d.,/%\s$()]+", gold_text or "x") else None
    if gold_num is not None:
        pred_num = parse_number(pred_text)
        return pred_num is not None and math.isclose(pred_num, gold_num, rel_tol=1e-6, abs_tol=1e-6)
    return pred_text == gold_text


# ----------------------------------------------------------------- steps and process scores
def split_steps(solution: str) -> list[str]:
    """The solution's steps: its non-empty lines, without the final-answer line."""
    lines = [line.strip() for line in solution.splitlines()]
    return [line for line in lines if line and not _FINAL.search(line)]


@dataclass(frozen=True)
class StepScore:
    """A step and its score out of 10 (None when the step has nothing to check)."""

    text: str
    score: int | None


class StepScorer(Protocol):
    """A process reward: scores each step of a solution."""

    def score(self, question: str, solution: str) -> list[StepScore]: ...


_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div,
            ast.USub, ast.UAdd)
_SEGMENT = re.compile(r"^[\d\s+\-*/().,]+$")


def _safe_eval(segment: str) -> float | None:
    s = segment.replace("×", "*").replace("÷", "/").replace("−", "-")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s).strip()
    if not s or len(s) > 120 or not _SEGMENT.match(s) or not re.search(r"\d", s):
        return None
    try:
        tree = ast.parse(s, mode="eval")
    except SyntaxError:
        return None
    if not all(isinstance(node, _ALLOWED) for node in ast.walk(tree)):
        return None
    try:
        value = eval(compile(tree, "<step>", "eval"), {"__builtins__": {}}, {})  # only numbers and + - * /
    except (ZeroDivisionError, OverflowError, ValueError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class ArithmeticStepScorer:
    """Checks every arithmetic equality in a step exactly.

    A step such as ``x = 15 / 3 = 5`` is split at ``=``; each pair of neighbouring
    parts that are both plain arithmetic must be equal. The step's score is
    ``10 * right / checked``; steps with nothing to check get ``None``.
    """

    def score(self, question: str, solution: str) -> list[StepScore]:
        out = []
        for step in split_steps(solution)[:100]:
            values = [_safe_eval(self._arithmetic_tail(part)) for part in step.split("=")]
            checked = right = 0
            for a, b in zip(values, values[1:]):
                if a is not None and b is not None:
                    checked += 1
                    right += math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            out.append(StepScore(step, round(10 * right / checked) if checked else None))
        return out

    @staticmethod
    def _arithmetic_tail(part: str) -> str:
        """'Step 2: 19 * 3' -> '19 * 3' (drop words before the arithmetic)."""
        m = re.search(r"[\d(][\d\s+\-*/().,×÷−]*$", part.strip())
        head = m.group(0) if m else ""
        if m and m.start() > 0 and part.strip()[m.start() - 1] == "-" and head[:1].isdigit():
            head = "-" + head  # a leading minus sign belongs to the number
        # 'Step 2: 19 * 3' must not read '2: 19 * 3' as arithmetic: the match stops at ':'
        return head


class NoStepScorer:
    """No process reward: every step is unscored."""

    def score(self, question: str, solution: str) -> list[StepScore]:
        return [StepScore(step, None) for step in split_steps(solution)]


STEP_SCORERS: dict[str, type] = {"arithmetic": ArithmeticStepScorer, "none": NoStepScorer}


def annotate_steps(scores: Sequence[StepScore]) -> str:
    """Steps with their scores, as the critic is shown them: 'Step ... (Score: 10/10)'."""
    lines = []
    for s in scores:
        lines.append(s.text if s.score is None else f"{s.text} (Score: {s.score}/10)")
    return "\n".join(lines)


_STEP = re.compile(r"(?P<a>-?\d+(?:\.\d+)?)\s*(?P<op>[-+*/×÷−])\s*(?P<b>-?\d+(?:\.\d+)?)\s*=\s*"
                   r"(?P<c>-?\d+(?:\.\d+)?)")
_OPS = {"×": "*", "÷": "/", "−": "-"}


def worked_steps_share(ops: Sequence, solution: str) -> float:
    """The share of a task's worked steps that a solution carries out right, in order (0-1).

    ``ops`` are the task's steps (:class:`games.refine.tasks.Op`: ``left op right``, an operand
    ``"#k"`` being step k's result). The solution's k-th line of the form ``a op b = c`` matches step
    k when it applies the step's operator to the step's numbers (for ``"#k"``: the result the
    solution itself wrote at step k, so one slip is not counted against every later step) and ``c``
    is right. Unlike the per-equality score above, it cannot be earned by writing true equalities
    that do not belong to the task. 0 for tasks without steps.
    """
    if not ops:
        return 0.0
    written = []
    for line in split_steps(solution if isinstance(solution, str) else "")[:100]:
        m = _STEP.search(line)
        if m:
            written.append((float(m["a"]), _OPS.get(m["op"], m["op"]), float(m["b"]), float(m["c"])))
    results: list[float | None] = []
    right = 0
    for k, step in enumerate(ops):
        if k >= len(written):
            break
        a, op, b, c = written[k]
        results.append(c)
        wanted = [results[int(x[1:])] if isinstance(x, str) else float(x) for x in (step.left, step.right)]
        if None in wanted or op != step.op or not (math.isclose(a, wanted[0]) and math.isclose(b, wanted[1])):
            continue
        value = {"+": a + b, "-": a - b, "*": a * b}.get(op, a / b if b else math.nan)
        right += math.isclose(value, c, rel_tol=1e-9, abs_tol=1e-9)
    return right / len(ops)


# ----------------------------------------------------------------- verdicts
_VERDICT = re.compile(r"verdict\s*[:：]\s*\**\s*(?P<v>correct|incorrect|wrong|right|accept|reject|revise)",
                      re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """True for 'Verdict: correct', False for 'Verdict: incorrect'; the last verdict wins; None if none."""
    if not isinstance(text, str):
        return None
    matches = list(_VERDICT.finditer(text))
    if not matches:
        return None
    return matches[-1].group("v").lower() in ("correct", "right", "accept")


# ----------------------------------------------------------------- edit distance
def word_edit_distance(a: str, b: str, limit: int = 1000) -> float:
    """Levenshtein distance between the word sequences, divided by the longer length (0 = same, 1 = disjoint)."""
    x, y = a.split()[:limit], b.split()[:limit]
    if not x and not y:
        return 0.0
    previous = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        current = [i] + [0] * len(y)
        for j, wy in enumerate(y, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (wx != wy))
        previous = current
    return previous[-1] / max(len(x), len(y))
