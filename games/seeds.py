"""Every seed the project derives, in one place.

A run has one seed; everything random in it comes from seeds derived here by
``numpy.random.SeedSequence`` from that seed and from where the randomness is
used (which episode, which turn, which role), never from the order in which
things happen to run. So an episode is the same whether it is played alone,
in a batch of 64, on another worker, or again after a resume.

This module sits in ``games`` (the lowest layer) because all three packages
need it: the arena derives episode, turn, tournament and training seeds, the
rule-based agents derive their players' seeds, and a game seeds its own
``np_random`` from the episode seed it is given.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["episode_seed", "player_seed", "setup_seed", "slip_generator", "tournament_seed", "turn_seed"]

_MOD = 2**63


def _derive(key: list[int]) -> int:
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _role_key(role: str) -> int:
    return zlib.crc32(role.encode("utf-8"))


def episode_seed(run_seed: int, index: int) -> int:
    """The seed of the ``index``-th episode of a run: stable, and unrelated between neighbours."""
    return _derive([int(run_seed) % _MOD, int(index)])


def turn_seed(episode_seed: int, turn: int, sample: int = 0) -> int:
    """The sampling seed of one turn: fixed by the episode seed, the turn and the sample index, not by batching.

    ``sample`` tells apart several episodes played on the same set-up (a group for RLOO/GRPO): the game is
    the same, the agents' sampling differs.
    """
    return _derive([episode_seed % _MOD, turn] + ([sample] if sample else []))


def player_seed(episode_seed: int, role: str) -> int:
    """A stable seed for one role's rule-based player in one episode."""
    return _derive([episode_seed % _MOD, _role_key(role)])


def tournament_seed(schedule_seed: int, game_index: int, round_no: int, k: int) -> int:
    """The seed of the ``k``-th set-up of a tournament's game in a round; every pairing plays the same set-ups."""
    return episode_seed(schedule_seed, (game_index * 1000 + round_no) * 100_000 + k)


def setup_seed(run_seed: int, iteration: int, group: int) -> int:
    """The seed of a training iteration's ``group``-th set-up (played ``group_size`` times)."""
    return episode_seed(run_seed, iteration * 1_000_003 + group)


def slip_generator(episode_seed: int, turn: int, role: str) -> np.random.Generator:
    """The random numbers that decide whether a scripted transcript slips at one turn (the seed model's data)."""
    return np.random.default_rng([episode_seed % _MOD, turn, _role_key(role)])
