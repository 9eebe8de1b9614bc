"""Tasks with checkable answers for refine-v0.

Built-in generators draw tasks with the game's seeded RNG:

* ``arithmetic``: a chain of operations, ``Compute ((12 + 7) * 3) - 5.`` (difficulty 1: two
  additions or subtractions of numbers below 20; each level adds an operation, multiplication and
  larger numbers)
* ``linear``: a linear equation, ``Solve for x: 5x - 3 = 2x + 12.``
* ``word``: word problems from templates (shopping, travel, seating, ...).

``difficulty`` (1-5) sets the number of steps and the size of the numbers.
A user's JSONL file of ``{"question": ..., "answer": ...}`` records (GSM8K,
MATH, anything with a checkable answer) is a task source too.

Each built-in task carries its worked solution as a list of :class:`Op`
steps; :func:`read_question` recovers those steps from the question text
alone, which is what the scripted players use (they see only the question).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from games.options import OptionError
from games.records import load_jsonl

__all__ = ["Op", "Task", "GENERATORS", "generate", "load_task_file", "read_question", "evaluate", "format_number"]

Operand = Union[int, float, str]  # a number, or "#k": the result of step k


@dataclass(frozen=True)
class Op:
    """One arithmetic step: ``left op right``, with an optional note said before it."""

    left: Operand
    op: str
    right: Operand
    note: str = ""


@dataclass(frozen=True)
class Task:
    """A question and its answer; built-in tasks also carry their steps."""

    question: str
    answer: str
    source: str
    difficulty: int = 0
    ops: tuple[Op, ...] = field(default=(), compare=False)


def format_number(x: float) -> str:
    """Integers without a decimal point; other numbers with up to 6 decimals."""
    if not np.isfinite(x):
        return "undefined"
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _apply(a: float, op: str, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b != 0 else float("nan")
    raise ValueError(f"unknown operator {op!r}")


def evaluate(ops: Sequence[Op]) -> list[float]:
    """The result of every step."""
    results: list[float] = []
    for step in ops:
        a, b = (results[int(x[1:])] if isinstance(x, str) else float(x) for x in (step.left, step.right))
        results.append(_apply(a, step.op, b))
    return results


# ----------------------------------------------------------------- generators
def _arithmetic(rng: np.random.Generator, difficulty: int) -> Task:
    steps = difficulty + 1
    top = 10 + 10 * difficulty
    value = int(rng.integers(2, top))
    expr = str(value)
    ops: list[Op] = []
    for k in range(steps):
        # Difficulty 1 adds and subtracts small numbers only (the a + b - c of small-model studies).
        op = ("+", "-", "*")[int(rng.integers(2 if difficulty == 1 else 3))]
        if op == "*":
            operand = int(rng.integers(2, 4 + difficulty))
        elif op == "-":
            operand = int(rng.integers(1, max(2, value)))  # keep results positive
        else:
            operand = int(rng.integers(1, top))
        left: Operand = value if k == 0 else f"#{k - 1}"
        ops.append(Op(left, op, operand))
        value = int(_apply(value, op, operand))
        expr = f"({expr} {op} {operand})" if k < steps - 1 else f"{expr} {op} {operand}"
    return Task(f"Compute {expr}.", format_number(value), "arithmetic", difficulty, tuple(ops))


def _linear(rng: np.random.Generator, difficulty: int) -> Task:
    x = int(rng.integers(-5 * difficulty, 5 * difficulty + 1)) or 1
    a = int(rng.integers(2, 4 + 2 * difficulty))
    b = int(rng.integers(-10 * difficulty, 10 * difficulty + 1))
    if difficulty >= 3:
        c = int(rng.integers(1, a))
        e = (a - c) * x + b
        question = f"Solve for x: {a}x {_signed(b)} = {c}x {_signed(e)}."
        ops = (Op(a, "-", c, "coefficient of x: "), Op(e, "-", b, "constant: "), Op("#1", "/", "#0", "x = "))
    else:
        e = a * x + b
        question = f"Solve for x: {a}x {_signed(b)} = {e}."
        ops = (Op(e, "-", b, "constant: "), Op("#0", "/", a, "x = "))
    return Task(question, format_number(x), "linear", difficulty, ops)


def _signed(n: int) -> str:
    return f"+ {n}" if n >= 0 else f"- {-n}"


_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena")


@dataclass(frozen=True)
class WordTemplate:
    text: str
    numbers: Callable[[np.random.Generator, int], dict[str, int]]
    ops: Callable[[dict[str, int]], tuple[Op, ...]]


def _ints(rng: np.random.Generator, **ranges: tuple[int, int]) -> dict[str, int]:
    return {k: int(rng.integers(lo, hi)) for k, (lo, hi) in ranges.items()}


def _cookie_numbers(rng: np.random.Generator, difficulty: int) -> dict[str, int]:
    v = _ints(rng, trays=(2, 4 + difficulty), per=(6, 10 + 2 * difficulty), friends=(2, 5))
    baked = v["trays"] * v["per"]
    each = int(rng.integers(1, baked // v["friends"]))  # what each friend gets: a whole number
    return {**v, "eaten": baked - v["friends"] * each}


WORD_TEMPLATES = (
    WordTemplate(
        "{name} has {a} apples. {name} buys {b} bags with {c} apples in each bag, then gives {d} apples to a "
        "friend. How many apples does {name} have now?",
        lambda r, d: _ints(r, a=(2, 10 * d + 5), b=(2, 3 + d), c=(2, 4 + 2 * d), d=(1, 6)),
        lambda n: (Op(n["b"], "*", n["c"], "apples bought: "), Op(n["a"], "+", "#0", "apples in all: "),
                   Op("#1", "-", n["d"], "apples left: ")),
    ),
    WordTemplate(
        "Pencils cost {p} dollars each. {name} buys {n} pencils and pays with a {bill}-dollar bill. "
        "How many dollars of change does {name} get?",
        lambda r, d: (lambda v: {**v, "bill": v["p"] * v["n"] + int(r.integers(1, 20))})(
            _ints(r, p=(2, 4 + d), n=(2, 4 + 2 * d))),
        lambda n: (Op(n["n"], "*", n["p"], "cost: "), Op(n["bill"], "-", "#0", "change: ")),
    ),
    WordTemplate(
        "A train travels at {v} km per hour for {h} hours, then {w} km more. How many km does it travel in all?",
        lambda r, d: _ints(r, v=(20, 40 + 20 * d), h=(2, 3 + d), w=(5, 10 + 10 * d)),
        lambda n: (Op(n["v"], "*", n["h"], "first part: "), Op("#0", "+", n["w"], "total: ")),
    ),
    WordTemplate(
        "A hall has {rows} rows of {seats} chairs. {broken} chairs are broken and {extra} chairs are brought in. "
        "How many chairs can be used?",
        lambda r, d: _ints(r, rows=(3, 5 + 2 * d), seats=(4, 6 + 2 * d), broken=(1, 6), extra=(1, 4 + 2 * d)),
        lambda n: (Op(n["rows"], "*", n["seats"], "chairs: "), Op("#0", "-", n["broken"], "working: "),
                   Op("#1", "+", n["extra"], "usable: ")),
    ),
    WordTemplate(
        "{name} reads {p} pages a day for {days} days and then {q} pages on the last day. The book has {total} "
        "pages. How many pages are left to read?",
        lambda r, d: (lambda v: {**v, "total": v["p"] * v["days"] + v["q"] + int(r.integers(0, 50 * d))})(
            _ints(r, p=(5, 15 + 5 * d), days=(2, 4 + d), q=(1, 10))),
        lambda n: (Op(n["p"], "*", n["days"], "pages at first: "), Op("#0", "+", n["q"], "pages read: "),
                   Op(n["total"], "-", "#1", "pages left: ")),
    ),
    WordTemplate(
        "{name} bakes {trays} trays of {per} cookies and eats {eaten} of them. The rest are shared equally among "
        "{friends} friends. How many cookies does each friend get?",
        lambda r, d: _cookie_numbers(r, d),
        lambda n: (Op(n["trays"], "*", n["per"], "cookies baked: "), Op("#0", "-", n["eaten"], "cookies left: "),
                   Op("#1", "/", n["friends"], "each friend: ")),
    ),
)


def _word(rng: np.random.Generator, difficulty: int) -> Task:
    # Harder tasks use the longer templates.
    pool = WORD_TEMPLATES if difficulty >= 3 else WORD_TEMPLATES[:5]
    template = pool[int(rng.integers(len(pool)))]
    numbers = template.numbers(rng, difficulty)
    name = _NAMES[int(rng.integers(len(_NAMES)))]
    ops = template.ops(numbers)
    answer = evaluate(ops)[-1]
    return Task(template.text.format(name=name, **numbers), format_number(answer), "word", difficulty, ops)


GENERATORS: dict[str, Callable[[np.random.Generator, int], Task]] = {
    "arithmetic": _arithmetic,
    "linear": _linear,
    "word": _word,
}


def generate(source: str, rng: np.random.Generator, difficulty: int) -> Task:
    """A task from a built-in generator (``mixed`` draws the generator too)."""
    if source == "mixed":
        names = sorted(GENERATORS)
        source = names[int(rng.integers(len(names)))]
    return GENERATORS[source](rng, difficulty)


# ----------------------------------------------------------------- task files
def _task_from_record(record: dict, where: str) -> Task:
    if "question" not in record or "answer" not in record:
        raise OptionError(f"{where}: expected an object with 'question' and 'answer'")
    question, answer = record["question"], record["answer"]
    if not isinstance(question, str) or not question.strip():
        raise OptionError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(answer, (str, int, float)) or isinstance(answer, bool) or str(answer).strip() == "":
        raise OptionError(f"{where}: 'answer' must be a non-empty string or a number")
    answer_text = format_number(answer) if isinstance(answer, (int, float)) else answer.strip()
    return Task(question.strip(), answer_text, "file")


def load_task_file(path: str) -> tuple[Task, ...]:
    """Read (and cache) a JSONL task file, with errors naming the file and line."""
    return load_jsonl(path, _task_from_record, "task")


# ----------------------------------------------------------------- reading questions
_EXPR_CHARS = re.compile(r"[\d\s+\-*/().×÷]+")


def _ops_from_expression(expr: str) -> tuple[Op, ...] | None:
    """Post-order steps of an arithmetic expression (numbers, + - * /, parentheses)."""
    expr = expr.replace("×", "*").replace("÷", "/")
    if len(expr) > 200:
        return None
    try:
        tree = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        return None
    ops: list[Op] = []
    symbols = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}

    def walk(node: ast.AST) -> Operand | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            return -inner if isinstance(inner, (int, float)) else None
        if isinstance(node, ast.BinOp) and type(node.op) in symbols:
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None:
                return None
            ops.append(Op(left, symbols[type(node.op)], right))
            return f"#{len(ops) - 1}"
        return None

    result = walk(tree)
    return tuple(ops) if ops and isinstance(result, str) else None


_LINEAR_ONE = re.compile(r"solve for x:\s*(-?\d+)x\s*([+-])\s*(\d+)\s*=\s*(-?\d+)\s*\.?$", re.IGNORECASE)
_LINEAR_TWO = re.compile(
    r"solve for x:\s*(-?\d+)x\s*([+-])\s*(\d+)\s*=\s*(-?\d+)x\s*([+-])\s*(\d+)\s*\.?$", re.IGNORECASE)


def _template_regex(text: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", text)
    out, seen = [], set()
    for part in parts:
        m = re.fullmatch(r"\{(\w+)\}", part)
        if not m:
            out.append(re.escape(part))
        elif m.group(1) in seen:
            out.append(rf"(?P={m.group(1)})")
        else:
            seen.add(m.group(1))
            out.append(rf"(?P<{m.group(1)}>[A-Za-z]+)" if m.group(1) == "name" else rf"(?P<{m.group(1)}>-?\d+)")
    return re.compile("".join(out) + "$")


_TEMPLATE_REGEXES = tuple((_template_regex(t.text), t) for t in WORD_TEMPLATES)


def read_question(question: str) -> tuple[Op, ...] | None:
    """Recover the steps of a question in a built-in format (or a bare arithmetic expression)."""
    q = question.strip()
    m = _LINEAR_TWO.match(q)
    if m:
        a, s1, b, c, s2, e = m.groups()
        b_val = int(b) if s1 == "+" else -int(b)
        e_val = int(e) if s2 == "+" else -int(e)
        return (Op(int(a), "-", int(c), "coefficient of x: "), Op(e_val, "-", b_val, "constant: "),
                Op("#1", "/", "#0", "x = "))
    m = _LINEAR_ONE.match(q)
    if m:
        a, s1, b, e = m.groups()
        b_val = int(b) if s1 == "+" else -int(b)
        return (Op(int(e), "-", b_val, "constant: "), Op("#0", "/", int(a), "x = "))
    for regex, template in _TEMPLATE_REGEXES:
        m = regex.match(q)
        if m:
            numbers = {k: int(v) for k, v in m.groupdict().items() if k != "name"}
            return template.ops(numbers)
    m = re.search(r"(?:compute|calculate|what is|evaluate)\s*:?\s*(.+?)\s*[.?]?$", q, re.IGNORECASE)
    if m and _EXPR_CHARS.fullmatch(m.group(1)):
        return _ops_from_expression(m.group(1))
    return None
