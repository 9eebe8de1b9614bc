"""Text helpers shared by the games: cleaning what one role shows another, and
reading numbers out of free text. Nothing here raises on any input string."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "clip", "parse_number", "printable", "NUMBER_WORDS", "normalise_words"]

NUMBER_WORDS = {
    "zero": 0, "no": 0, "none": 0, "one": 1, "a": 1, "an": 1, "single": 1, "two": 2,
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "all": -1,  # caller decides what "all" means
}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def clip(text: str, limit: int) -> str:
    """Keep at most ``limit`` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    marker = f" [... {cut} characters cut]"
    return text[: max(0, limit - len(marker))] + marker


def clean(text: str, limit: int = 2000) -> str:
    """Make a move safe to show to another role or a terminal.

    Removes control and bidi-override characters (keeping newlines and tabs),
    normalises to NFC, trims surrounding whitespace and clips to ``limit``.
    """
    if not isinstance(text, str):
        text = str(text)
    text = unicodedata.normalize("NFC", text[: limit * 4])
    text = _CONTROL.sub("", text).replace("\r", "")
    return clip(text.strip(), limit)


def _escape(match: re.Match) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """Text safe to print on a terminal, with nothing hidden: every control and bidi-override character
    except newline and tab is shown escaped (ESC as ``\\x1b``), so a move cannot retitle the window, colour
    the output, clear the screen or reorder what is shown; the rest is unchanged."""
    text = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_escape, text.replace("\r\n", "\n"))


def normalise_words(text: str) -> str:
    """Lower-case, with punctuation other than digits, '.', '-' and '/' turned into spaces."""
    return re.sub(r"[^\w.\-/]+", " ", text.lower()).strip()


_NUMBER = re.compile(r"[-+]?\(?\s*\$?\s*[-+]?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?\s*\)?%?")


def parse_number(text: str) -> float | None:
    """Read one number: '42', '-3.5', '1,234', '$7', '3/4', '(12)', '50%'. None if there is none."""
    if not isinstance(text, str):
        return None
    s = text.strip().replace("\u2212", "-")
    m = _NUMBER.search(s)
    if not m:
        return None
    token = m.group(0)
    percent = token.endswith("%")
    token = re.sub(r"[()$%\s]", "", token).replace(",", "")
    try:
        if "/" in token:
            num, den = token.split("/", 1)
            value = float(num) / float(den) if float(den) != 0 else None
        else:
            value = float(token)
    except ValueError:
        return None
    if value is None:
        return None
    return value / 100.0 if percent else value
