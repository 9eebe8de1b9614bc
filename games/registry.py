"""The registry of games: ids, cards, constructors and their players.

Built-in games register when :mod:`games` is imported. Other packages add
games through the ``arena.games`` entry-point group (``name = "pkg.module:GameClass"``),
loaded the first time the registry is read, together with the game files or
modules listed in the ``ARENA_PLUGINS`` environment variable (separated by
``:``); a single file can also be loaded with :func:`load_plugin` (what
``arena ... --plugin FILE.py`` does).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from games.base import TextGame
from games.options import suggest
from games.players import Player, RandomPlayer

__all__ = ["GameSpec", "register", "get_spec", "list_games", "make", "load_plugin", "PluginError", "UnknownGameError"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "arena.games"


class UnknownGameError(KeyError):
    """No game is registered under the asked-for id."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass(frozen=True)
class GameSpec:
    """A registered game: its id, class, one-line summary and card."""

    id: str
    cls: type[TextGame]
    summary: str
    card: str
    origin: str

    @property
    def roles(self) -> tuple[str, ...]:
        return self.cls.roles

    def make(self, render_mode: str | None = None, **options: Any) -> TextGame:
        """A new instance of the game with ``options`` (validated)."""
        return self.cls(render_mode=render_mode, **options)

    def scripted_player(self, role: str, options: Any, seed: int | None = None) -> Player:
        """The game's rule-based player for ``role``."""
        if self.cls.scripted_player is None:
            raise LookupError(f"{self.id} has no scripted player (set scripted_player on {self.cls.__name__})")
        return self.cls.scripted_player(role, options, seed)

    def random_player(self, role: str, options: Any, seed: int | None = None) -> Player:
        """A player whose moves come from the game's ``random_move``."""
        return RandomPlayer(role, options, seed, game=self.cls)


_REGISTRY: dict[str, GameSpec] = {}
_entry_points_loaded = False


def _card_of(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    doc = inspect.getdoc(module) if module is not None else None
    return doc or inspect.getdoc(cls) or ""


def register(
    cls: type[TextGame] | None = None,
    *,
    summary: str | None = None,
    card: str | None = None,
    replace: bool = False,
    origin: str = "",
) -> Any:
    """Register a :class:`TextGame` subclass under its ``game_id``. Usable as a decorator.

    The card defaults to the game module's docstring and the summary to the card's first line.
    """

    def _register(game_cls: type[TextGame]) -> type[TextGame]:
        if not (isinstance(game_cls, type) and issubclass(game_cls, TextGame)):
            raise TypeError(f"register() takes a TextGame subclass; got {game_cls!r}")
        game_id = game_cls.game_id
        if not game_id or not game_cls.roles:
            raise TypeError(f"{game_cls.__name__} must set game_id and roles before it is registered")
        existing = _REGISTRY.get(game_id)
        if existing is not None and existing.cls is not game_cls and not replace:
            raise ValueError(
                f"game id {game_id!r} is already registered by {existing.cls.__module__}.{existing.cls.__name__}; "
                "pick another id or pass replace=True"
            )
        text = card if card is not None else _card_of(game_cls)
        first = summary or (text.strip().splitlines()[0] if text.strip() else game_cls.__name__)
        if first.startswith(f"{game_id}:"):
            first = first[len(game_id) + 1:].strip()
        _REGISTRY[game_id] = GameSpec(game_id, game_cls, first, text, origin or game_cls.__module__)
        return game_cls

    return _register(cls) if cls is not None else _register


def _load_entry_points() -> None:
    """Load the ``arena.games`` entry points and the files or modules named in ``$ARENA_PLUGINS``."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for target in filter(None, (t.strip() for t in os.environ.get("ARENA_PLUGINS", "").split(os.pathsep))):
        try:
            load_plugin(target)  # a broken file named explicitly is the user's error: let it raise
        except (PluginError, FileNotFoundError) as err:
            raise PluginError(f"{err} (named in $ARENA_PLUGINS; fix it or remove it from the variable)") from None
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # a broken plugin must not break the other games
            log.warning("could not load game entry point %s = %s: %s", ep.name, ep.value, err)
            continue
        if isinstance(obj, type) and issubclass(obj, TextGame) and obj.game_id not in _REGISTRY:
            register(obj, origin=f"entry point {ep.value}")


def get_spec(game_id: str) -> GameSpec:
    """The :class:`GameSpec` registered under ``game_id``."""
    if game_id not in _REGISTRY:
        _load_entry_points()
    try:
        return _REGISTRY[game_id]
    except KeyError:
        known = sorted(_REGISTRY)
        raise UnknownGameError(
            f"no game {game_id!r}; registered games: {', '.join(known) or '(none)'}.{suggest(game_id, known)}"
        ) from None


def list_games() -> list[GameSpec]:
    """Every registered game, sorted by id."""
    _load_entry_points()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def make(game_id: str, render_mode: str | None = None, **options: Any) -> TextGame:
    """Build the game registered as ``game_id`` with ``options``."""
    return get_spec(game_id).make(render_mode=render_mode, **options)


class PluginError(RuntimeError):
    """A game plugin could not be imported (its own code raised, or it is not found)."""


def _where_it_failed(err: BaseException, origin: str) -> str:
    """' (line N)' of the plugin's own frame that raised, if any."""
    tb = err.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == origin:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f", line {line}" if line else ""


def load_plugin(target: str | Path) -> list[str]:
    """Import a game file (``path/to/game.py``) or module (``pkg.games``) and return the ids it registered.

    A game file registers its games with :func:`register` when imported. A plugin whose import raises is a
    :class:`PluginError` naming the plugin, the line and the error.
    """
    before = set(_REGISTRY)
    path = Path(str(target))
    if str(target).endswith(".py"):
        if not path.is_file():
            raise FileNotFoundError(f"game plugin file not found: {path}")
        name = f"arena_plugin_{path.stem}_{abs(hash(str(path.resolve()))):x}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"cannot import game plugin {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as err:
                del sys.modules[name]
                raise PluginError(f"game plugin {path}{_where_it_failed(err, str(path))} failed to load: "
                                  f"{type(err).__name__}: {err}") from err
            except BaseException:
                del sys.modules[name]
                raise
    else:
        try:
            importlib.import_module(str(target))
        except Exception as err:
            raise PluginError(f"game plugin module {target} failed to load: {type(err).__name__}: {err}") from err
    added = sorted(set(_REGISTRY) - before)
    return added

