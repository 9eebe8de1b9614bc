"""What runs the games: episodes, rollouts, tournaments, training and the ``arena`` CLI.

``arena`` knows no game by name: everything here works for any registered game.
"""

from arena.play.episode import SCHEMA_VERSION, Episode, TurnRecord
from arena.play.rollout import EpisodeRunner, run_episode

__all__ = ["Episode", "EpisodeRunner", "SCHEMA_VERSION", "TurnRecord", "run_episode"]
