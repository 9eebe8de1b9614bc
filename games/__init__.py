"""Language games: the rules, as PettingZoo AEC envs with text moves.

    import games
    env = games.make("negotiation-v0", objective="coop")
    env.reset(seed=0)

``games`` imports nothing from ``agents`` or ``arena``: rules are pure and
deterministic given the seed, and hold no model code.
"""

from games.base import GameError, GameResult, MoveRecord, TextGame
from games.gym_env import SingleRoleEnv, to_gymnasium
from games.negotiation import NegotiationGame  # noqa: E402  (built-in games register below)
from games.options import GameOptions, OptionError, option
from games.players import CallablePlayer, Player, RandomPlayer, players_by_role
from games.refine import RefineGame  # noqa: E402
from games.registry import (
    GameSpec,
    PluginError,
    UnknownGameError,
    get_spec,
    list_games,
    load_plugin,
    make,
    register,
)
from games.spaces import AnyText
from games.therapy import TherapyGame  # noqa: E402

for _game in (NegotiationGame, RefineGame, TherapyGame):
    register(_game, origin="built-in")

__all__ = [
    "AnyText", "CallablePlayer", "GameError", "GameOptions", "GameResult", "GameSpec", "MoveRecord",
    "OptionError", "Player", "PluginError", "RandomPlayer", "SingleRoleEnv", "TextGame", "UnknownGameError",
    "get_spec", "list_games", "load_plugin", "make", "option", "players_by_role", "register", "to_gymnasium",
]
