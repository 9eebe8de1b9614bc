"""Gymnasium spaces for text games.

Gymnasium's :class:`~gymnasium.spaces.Text` only admits characters from a fixed
character set, but a language game must accept *any* string as a move (other
scripts, emoji, control characters) and may show such text to other roles.
:class:`AnyText` keeps ``Text``'s length bounds and sampling (from a printable
set, so that random samples stay readable) and admits every character.
"""

from __future__ import annotations

import string
from typing import Any

from gymnasium.spaces import Text

__all__ = ["AnyText", "SAMPLE_CHARSET"]

# Characters used when *sampling* (api_test and seed_test step with samples):
# letters, digits, punctuation (so brackets and numbers sometimes parse) and spaces.
SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "


class AnyText(Text):
    """A string of any characters whose length lies in ``[min_length, max_length]``."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None):
        super().__init__(max_length=max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AnyText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    def __hash__(self) -> int:
        return hash((AnyText, self.min_length, self.max_length))
