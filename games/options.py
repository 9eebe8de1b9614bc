"""Typed, validated game options.

Each game declares its options as a frozen dataclass that subclasses
:class:`GameOptions`, with every field made by :func:`option` so that it
carries help text and its allowed values::

    @dataclass(frozen=True)
    class GuessOptions(GameOptions):
        low: int = option(1, "smallest secret number", min=0)
        high: int = option(100, "largest secret number", min=1)

Options are checked when the object is built: a wrong type, a value outside
its range or choices, or an unknown name is an :class:`OptionError` that says
what was expected (with a "did you mean" for misspelt names).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["Config", "GameOptions", "OptionError", "OptionInfo", "option", "suggest"]


class OptionError(ValueError):
    """An option (or another named setting) has a wrong name or value."""


def suggest(name: str, known: Sequence[str]) -> str:
    """Return a ' Did you mean ...?' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
) -> Any:
    """A dataclass field for a game option, with help text and constraints."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "min": min, "max": max}
    if isinstance(default, (dict, list, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    """What a user needs to know about one option (for `arena games ID`)."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    min: float | None
    max: float | None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(kind: type, value: Any) -> Any:
    """Convert command-line strings to the field's type; reject other mismatches."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise TypeError("a boolean (true/false)")
    if kind is int:
        if isinstance(value, bool):
            raise TypeError("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise TypeError("an integer")
    if kind is float:
        if isinstance(value, bool):
            raise TypeError("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise TypeError("a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    return value


def _check_container(kind: Any, value: Any) -> Any:
    """Lists and tables from TOML: check the outer type (and string items for list[str])."""
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError("a list")
        args = typing.get_args(kind)
        if args and args[0] is str and not all(isinstance(v, str) for v in value):
            raise TypeError("a list of strings")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError("a table of keys and values")
        return dict(value)
    return value


@dataclass(frozen=True)
class Config:
    """A frozen dataclass of named settings, checked when built: types, ranges, choices, unknown names.

    Fields are made with :func:`option`. Game options and scenario sections both build on this.
    """

    #: What one setting is called in messages ("option", "key").
    _noun: ClassVar[str] = "option"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = hints.get(f.name)
            where = f"{self._noun} {f.name!r}"
            try:
                if isinstance(kind, type) and dataclasses.is_dataclass(kind) and issubclass(kind, Config):
                    value = value if isinstance(value, kind) else kind.from_mapping(value, source=f.name)
                elif isinstance(kind, type):
                    value = _coerce(kind, value)
                else:
                    value = _check_container(kind, value)
            except TypeError as err:
                raise OptionError(f"{where} must be {err}; got {value!r}") from None
            object.__setattr__(self, f.name, value)
            meta = f.metadata
            choices = meta.get("choices")
            if choices and value not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                hint = suggest(str(value), [str(c) for c in choices])
                raise OptionError(f"{where} must be one of {allowed}; got {value!r}.{hint}")
            low, high = meta.get("min"), meta.get("max")
            if low is not None and value < low:
                raise OptionError(f"{where} must be at least {low}; got {value!r}")
            if high is not None and value > high:
                raise OptionError(f"{where} must be at most {high}; got {value!r}")
        self.validate()

    def validate(self) -> None:
        """Check relations between settings; raise :class:`OptionError` if they do not hold."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, *, source: str = "") -> Any:
        """Build from a mapping (scenario file, CLI flags), rejecting unknown names.

        ``source`` (a game id, a file and section) prefixes every error message.
        """
        if values is not None and not isinstance(values, Mapping):
            raise OptionError(f"{source or cls.__name__}: expected a table of settings; got {values!r}")
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        prefix = f"{source}: " if source else ""
        for key in values:
            if key not in names:
                known = ", ".join(names) or "(none)"
                raise OptionError(
                    f"{prefix}unknown {cls._noun} {key!r}; {cls.__name__} takes: {known}.{suggest(key, names)}"
                )
        try:
            return cls(**values)
        except OptionError as err:
            if not source or str(err).startswith(prefix):
                raise
            raise OptionError(f"{prefix}{err}") from None

    @classmethod
    def describe(cls) -> list[OptionInfo]:
        """One :class:`OptionInfo` per setting, in declaration order."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            kind = hints.get(f.name)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            out.append(
                OptionInfo(
                    name=f.name,
                    type=getattr(kind, "__name__", str(kind)),
                    default=default,
                    help=f.metadata.get("help", ""),
                    choices=f.metadata.get("choices"),
                    min=f.metadata.get("min"),
                    max=f.metadata.get("max"),
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (JSON-safe for the built-in types)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GameOptions(Config):
    """Base class of every game's options. Subclass it and add fields with :func:`option`."""
