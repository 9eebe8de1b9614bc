"""Keeping API keys out of everything the project writes or prints.

Text that comes from outside (an HTTP response body, an exception string) may
carry a secret: a server that echoes the request's ``Authorization`` header in
its 401 answer, a proxy that repeats the URL with a token in it. :func:`redact`
removes, from any text,

* every value registered with :func:`register_secret` (a backend registers the
  key it sends) and the value of every environment variable whose name says it
  holds a key (``*API_KEY``, ``*_TOKEN``, ``*_SECRET``), when it is at least 8
  characters long;
* the value after an ``Authorization``, ``api-key`` or ``x-api-key`` header
  name, and a ``Bearer`` token, wherever they appear;
* strings shaped like common API keys (``sk-...``, ``hf_...``).

The store runs every episode through it before writing, the CLI runs every
error line through it, and the command line's log handler filters every log
record with :class:`RedactingFilter`.
"""

from __future__ import annotations

import logging
import os
import re

__all__ = ["REDACTED", "RedactingFilter", "redact", "register_secret", "secret_values"]

REDACTED = "[REDACTED]"

_REGISTERED: set[str] = set()
_MIN_LENGTH = 8  # shorter values ("1", "true") would blank out ordinary text
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET)$", re.IGNORECASE)

_PATTERNS = [
    # "Authorization: Bearer X", '"authorization": "Basic X"', "api-key=X", "'x-api-key': 'X'"
    re.compile(r"(?i)((?:proxy-)?authorization|x-api-key|api[-_]key)(['\"]?\s*[:=]\s*['\"]?)"
               r"(?:(?:bearer|basic|token)\s+)?(?!\[REDACTED\])[^\s'\",;}\]]+"),
    re.compile(r"(?i)\b(bearer)(\s+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"()()\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"),
    re.compile(r"()()\bhf_[A-Za-z0-9]{20,}"),
]


def register_secret(value: str | None) -> None:
    """Treat ``value`` as a secret from now on (a backend calls this with the key it sends)."""
    if value and len(value) >= _MIN_LENGTH:
        _REGISTERED.add(value)


def secret_values() -> list[str]:
    """The secret values known now (registered, and from the environment), longest first."""
    return _secret_values()


def _secret_values() -> list[str]:
    values = set(_REGISTERED)
    for name, value in os.environ.items():
        if _SECRET_ENV.search(name) and len(value) >= _MIN_LENGTH:
            values.add(value)
    return sorted(values, key=len, reverse=True)  # longest first: a key that contains another is removed whole


def redact(text: str, *, values_only: bool = False) -> str:
    """``text`` without any secret value, header credential or key-shaped string.

    ``values_only`` removes only the known secret values: for text that is not an error or a log line (a
    stored move), where a header-shaped phrase is more likely the game's own words than a credential.
    """
    if not text:
        return text
    for value in _secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    if values_only:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (arguments merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
