"""Deal or No Deal rules as pure functions: set-ups, move parsing, scoring.

Nothing here keeps state or raises on a move: :func:`parse_move` turns any
string into a :class:`Move` whose ``error`` says why it is illegal, if it is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

from games.text import NUMBER_WORDS

ITEMS = ("book", "hat", "ball")
TOTAL_VALUE = 10
MIN_ITEMS, MAX_ITEMS = 5, 7
OBJECTIVES = ("semi", "coop", "comp")

Share = tuple[int, int, int]


@dataclass(frozen=True)
class Setup:
    """One game's items and the two players' private values."""

    counts: Share
    values: tuple[Share, Share]


@cache
def count_vectors() -> tuple[Share, ...]:
    """Every item-count vector: at least one of each type, 5 to 7 items in all."""
    return tuple(
        c for c in itertools.product(range(1, MAX_ITEMS + 1), repeat=3) if MIN_ITEMS <= sum(c) <= MAX_ITEMS
    )


@cache
def value_vectors(counts: Share) -> tuple[Share, ...]:
    """Every non-negative integer value vector worth exactly 10 for all the items."""
    out = []
    for v in itertools.product(range(TOTAL_VALUE + 1), repeat=3):
        if sum(c * x for c, x in zip(counts, v)) == TOTAL_VALUE:
            out.append(v)
    return tuple(out)


@cache
def value_pairs(counts: Share) -> tuple[tuple[Share, Share], ...]:
    """Valid (player_0, player_1) value pairs: every type is worth something to someone,
    and some type is worth something to both (so that the players' interests conflict)."""
    vs = value_vectors(counts)
    return tuple(
        (a, b)
        for a in vs
        for b in vs
        if all(x + y > 0 for x, y in zip(a, b)) and any(x > 0 and y > 0 for x, y in zip(a, b))
    )


def sample_setup(rng: np.random.Generator) -> Setup:
    """Draw counts uniformly, then a valid value pair uniformly."""
    counts = count_vectors()[int(rng.integers(len(count_vectors())))]
    pairs = value_pairs(counts)
    return Setup(counts, pairs[int(rng.integers(len(pairs)))])


def score(values: Sequence[int], share: Sequence[int]) -> int:
    """A share's worth to a player with these values."""
    return int(sum(v * s for v, s in zip(values, share)))


def complement(counts: Sequence[int], share: Sequence[int]) -> Share:
    """What is left for the other player."""
    return tuple(c - s for c, s in zip(counts, share))  # type: ignore[return-value]


def all_shares(counts: Sequence[int]) -> list[Share]:
    """Every share one player could take."""
    return list(itertools.product(*(range(c + 1) for c in counts)))  # type: ignore[arg-type]


def is_pareto_optimal(counts: Share, values: tuple[Share, Share], share0: Share) -> bool:
    """True if no other split gives one player more without giving the other less."""
    u0 = score(values[0], share0)
    u1 = score(values[1], complement(counts, share0))
    for s in all_shares(counts):
        a, b = score(values[0], s), score(values[1], complement(counts, s))
        if a >= u0 and b >= u1 and (a > u0 or b > u1):
            return False
    return True


def objective_scores(objective: str, raw: tuple[float, float]) -> tuple[float, float]:
    """Each player's score under the objective: own (semi), joint (coop), own minus partner's (comp)."""
    a, b = raw
    if objective == "semi":
        return a, b
    if objective == "coop":
        return a + b, a + b
    if objective == "comp":
        return a - b, b - a
    raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")


# ----------------------------------------------------------------------- moves
@dataclass(frozen=True)
class Move:
    """A parsed move. ``kind`` is ``invalid`` when ``error`` says why."""

    kind: Literal["message", "propose", "abort", "invalid"]
    text: str = ""
    share: Share | None = None
    error: str = ""


_NUM = r"\d+|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_ITEM = r"(?P<item>book|hat|ball)(?:e?s)?\b"
_COUNT_THEN_ITEM = re.compile(rf"\b(?P<n>{_NUM})\s*(?:x\s*)?{_ITEM}", re.IGNORECASE)
_ITEM_THEN_COUNT = re.compile(rf"\b{_ITEM}\s*[:=x\u00d7]\s*(?P<n>\d+)", re.IGNORECASE)
_PROPOSE_TAG = re.compile(r"\[\s*propos(?:e|al)\s*\]\s*:?", re.IGNORECASE)
_ABORT_TAG = re.compile(r"\[\s*abort\s*\]", re.IGNORECASE)
_MESSAGE_TAG = re.compile(r"^\s*\[\s*message\s*\]\s*:?", re.IGNORECASE)

FORMAT_HINT = "write it as [propose] (x books, y hats, z balls)"


def format_share(share: Sequence[int]) -> str:
    """'1 book, 2 hats, 0 balls'."""
    return ", ".join(f"{n} {item if n == 1 else item + 's'}" for n, item in zip(share, ITEMS))


def parse_share(text: str, counts: Sequence[int]) -> tuple[Share | None, str]:
    """Read item counts from text; return (share, "") or (None, reason). Unmentioned types count 0."""
    found: dict[str, int] = {}
    matches = list(_ITEM_THEN_COUNT.finditer(text)) or list(_COUNT_THEN_ITEM.finditer(text))
    if not matches:
        return None, f"no item counts found; {FORMAT_HINT}"
    for m in matches:
        item = m.group("item").lower()
        raw = m.group("n").lower()
        idx = ITEMS.index(item)
        n = int(raw) if raw.isdigit() else NUMBER_WORDS[raw]
        if n < 0:  # "all"
            n = counts[idx]
        if item in found and found[item] != n:
            return None, f"{item}s are given two different counts ({found[item]} and {n})"
        found[item] = n
    share = tuple(found.get(item, 0) for item in ITEMS)
    for n, c, item in zip(share, counts, ITEMS):
        if n > c:
            return None, f"there are only {c} {item}{'s' if c != 1 else ''}, not {n}"
    return share, ""  # type: ignore[return-value]


def parse_move(text: str, counts: Sequence[int]) -> Move:
    """Classify any string as a message, a proposal, an abort, or an invalid move."""
    if not isinstance(text, str):
        return Move("invalid", error="a move must be text")
    stripped = text.strip()
    if not stripped:
        return Move("invalid", error="the move is empty")
    if _ABORT_TAG.search(stripped):
        return Move("abort", text=stripped)
    tag = _PROPOSE_TAG.search(stripped)
    if tag:
        share, error = parse_share(stripped[tag.end():], counts)
        if share is None:
            return Move("invalid", text=stripped, error=f"could not read the proposal: {error}")
        return Move("propose", text=stripped, share=share)
    body = _MESSAGE_TAG.sub("", stripped, count=1).strip()
    if not body:
        return Move("invalid", error="the message is empty")
    return Move("message", text=body)
