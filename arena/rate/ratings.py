"""Ratings from pairwise outcomes: Bradley-Terry with bootstrap intervals, OpenSkill, win rates, the win graph.

An :class:`Outcome` says how one comparison of two agents ended (1 = the first
won, 0.5 = draw, 0 = the second won). Everything here is a pure function of a
list of outcomes, so the same outcomes always give the same ratings.

Bradley-Terry: P(i beats j) = 1 / (1 + exp(s_j - s_i)), fitted by maximum
likelihood with draws counted as half a win each and a weak Gaussian prior on
the strengths (variance ``prior_var``), which keeps the fit finite when an
agent wins or loses everything. Strengths are reported on the Elo scale
(400 / ln 10 per unit, mean 1000). Confidence intervals come from a
percentile bootstrap: by default parametric (outcomes drawn again from the
fitted model), which stays meaningful when one agent won every comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
from openskill.models import PlackettLuce

__all__ = ["Outcome", "BTRating", "bradley_terry", "bootstrap", "openskill_ratings", "win_matrix", "win_graph",
           "cycles", "ELO_SCALE"]

ELO_SCALE = 400 / math.log(10)


@dataclass(frozen=True)
class Outcome:
    """One comparison: ``score`` is 1 if ``a`` won, 0.5 for a draw, 0 if ``b`` won."""

    a: str
    b: str
    score: float
    game: str = ""


@dataclass(frozen=True)
class BTRating:
    agent: str
    rating: float
    ci_low: float
    ci_high: float


def _counts(outcomes: Sequence[Outcome], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    n = len(index)
    wins = np.zeros((n, n))
    games = np.zeros((n, n))
    for o in outcomes:
        i, j = index[o.a], index[o.b]
        wins[i, j] += o.score
        wins[j, i] += 1 - o.score
        games[i, j] += 1
        games[j, i] += 1
    return wins, games


def _fit(wins: np.ndarray, games: np.ndarray, prior_var: float) -> np.ndarray:
    """MAP strengths by Newton's method (the log-posterior is concave)."""
    n = wins.shape[0]
    s = np.zeros(n)
    for _ in range(100):
        diff = s[:, None] - s[None, :]
        p = 1 / (1 + np.exp(-diff))
        grad = (wins - games * p).sum(axis=1) - s / prior_var
        w = games * p * (1 - p)
        hess = -np.diag(w.sum(axis=1)) + w - np.eye(n) / prior_var
        step = np.linalg.solve(hess, grad)
        s = s - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return s - s.mean()


def bradley_terry(outcomes: Sequence[Outcome], agents: Sequence[str], prior_var: float = 10.0) -> dict[str, float]:
    """Elo-scale Bradley-Terry ratings (mean 1000)."""
    index = {a: i for i, a in enumerate(agents)}
    wins, games = _counts(outcomes, index)
    s = _fit(wins, games, prior_var)
    return {a: 1000 + ELO_SCALE * s[i] for a, i in index.items()}


def bootstrap(outcomes: Sequence[Outcome], agents: Sequence[str], samples: int = 500, seed: int = 0,
              level: float = 0.95, prior_var: float = 10.0, method: str = "parametric") -> list[BTRating]:
    """Bradley-Terry ratings with percentile bootstrap intervals.

    ``parametric`` (default): every observed comparison is drawn again from the fitted model, keeping who
    met whom and how often; this stays honest when an agent won (or lost) every comparison, where
    resampling the outcomes (``nonparametric``) would give a zero-width interval.
    """
    if method not in ("parametric", "nonparametric"):
        raise ValueError(f"method must be 'parametric' or 'nonparametric'; got {method!r}")
    point = bradley_terry(outcomes, agents, prior_var)
    index = {a: i for i, a in enumerate(agents)}
    if not outcomes:
        return [BTRating(a, point[a], point[a], point[a]) for a in agents]
    pairs = np.array([(index[o.a], index[o.b]) for o in outcomes])
    scores = np.array([o.score for o in outcomes])
    strength = np.array([(point[a] - 1000) / ELO_SCALE for a in agents])
    p_first = 1 / (1 + np.exp(strength[pairs[:, 1]] - strength[pairs[:, 0]]))
    rng = np.random.default_rng(seed)
    n = len(agents)
    draws = np.empty((samples, n))
    for k in range(samples):
        if method == "parametric":
            pick = np.arange(len(outcomes))
            result = (rng.random(len(outcomes)) < p_first).astype(float)
        else:
            pick = rng.integers(0, len(outcomes), size=len(outcomes))
            result = scores[pick]
        wins = np.zeros((n, n))
        games = np.zeros((n, n))
        np.add.at(wins, (pairs[pick, 0], pairs[pick, 1]), result)
        np.add.at(wins, (pairs[pick, 1], pairs[pick, 0]), 1 - result)
        np.add.at(games, (pairs[pick, 0], pairs[pick, 1]), 1)
        np.add.at(games, (pairs[pick, 1], pairs[pick, 0]), 1)
        draws[k] = 1000 + ELO_SCALE * _fit(wins, games, prior_var)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return [BTRating(a, point[a], float(low[index[a]]), float(high[index[a]])) for a in agents]


def openskill_ratings(outcomes: Sequence[Outcome], agents: Sequence[str]) -> dict[str, dict[str, float]]:
    """OpenSkill (Plackett-Luce) ratings, updated outcome by outcome in the given order."""
    model = PlackettLuce()
    ratings = {a: model.rating(name=a) for a in agents}
    for o in outcomes:
        ranks = [1, 1] if o.score == 0.5 else ([1, 2] if o.score > 0.5 else [2, 1])
        [[a], [b]] = model.rate([[ratings[o.a]], [ratings[o.b]]], ranks=ranks)
        ratings[o.a], ratings[o.b] = a, b
    return {a: {"mu": r.mu, "sigma": r.sigma, "ordinal": r.ordinal()} for a, r in ratings.items()}


def win_matrix(outcomes: Sequence[Outcome], agents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(win rate of row vs column, number of comparisons); draws count half. NaN where they never met."""
    index = {a: i for i, a in enumerate(agents)}
    wins, games = _counts(outcomes, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(games > 0, wins / games, np.nan)
    return rate, games


def win_graph(outcomes: Sequence[Outcome], agents: Sequence[str]):
    """A networkx DiGraph with an edge a -> b when a beat b more often than not (weight: the win rate)."""
    rate, games = win_matrix(outcomes, agents)
    graph = nx.DiGraph()
    graph.add_nodes_from(agents)
    for i, a in enumerate(agents):
        for j, b in enumerate(agents):
            if i != j and games[i, j] > 0 and rate[i, j] > 0.5:
                graph.add_edge(a, b, win_rate=float(rate[i, j]), games=int(games[i, j]))
    return graph


def cycles(graph, limit: int = 20) -> list[list[str]]:
    """Non-transitive cycles (a beats b beats c beats a), shortest first, at most ``limit``."""
    found = []
    for cycle in nx.simple_cycles(graph, length_bound=6):
        found.append(cycle)
        if len(found) >= 10 * limit:
            break
    # a canonical rotation (start at the smallest name) so the report is stable
    found = [c[c.index(min(c)):] + c[:c.index(min(c))] for c in found]
    return [list(c) for c in sorted({tuple(c) for c in found}, key=lambda c: (len(c), c))[:limit]]
