"""Tournaments: a pool of agents, one or more games, a schedule, and ratings with intervals.

A *pairing* of two agents plays each game ``games_per_pairing`` times, on seeds
shared by every pairing (all agents face the same set-ups). How depends on the
game's :meth:`~games.TextGame.tournament_mode`:

* ``head-to-head`` (competitive games): the two agents play each other in
  every seat arrangement, so each plays each role equally often (for two
  roles, A-B then B-A; for three, A in one role and B in the others, and the
  reverse, for each role); in each episode their seat scores decide.
* ``same-seat`` (cooperative or single-role games): each agent plays every
  role itself (its own team) on the same seeds, and the two are compared role
  by role. Cross-play would let a good partner flatter a weak agent; a team
  episode is shared by all of an agent's pairings in a round.

Equal scores are decided by the
rewards each collected (which include penalties for illegal moves), and are
draws only if those are equal too. Failed episodes (backend errors)
give no outcome: they are counted as failures of the agent whose turn failed,
never as losses.

A game may seat fixed *partners* in some roles (``partners = { patient =
"scripted" }``): the pool's agents play only the other roles, against or
beside the same partner in every episode, and only those roles are compared
(therapists rated against scripted patients, negotiators against one scripted
opponent). Partners are not rated.

Schedules: ``round-robin`` (every pair once) or ``swiss`` (``rounds`` rounds;
each round pairs agents of similar rating who have not met yet). Everything
is deterministic given the stored episodes, so a tournament killed and run
again continues from its episodes and ends with the same ratings.

The scenario file and its checks are :mod:`arena.rate.scenario`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.base import Policy
from arena.config import ScenarioError
from arena.output import atomic_write
from arena.play.batched import BatchedRollout, EpisodePlan, RolloutStats
from arena.play.cluster import RayRollout
from arena.play.episode import Episode
from arena.play.policies import load_policies
from arena.play.selfplay import PlayCount, play_into
from arena.play.store import EpisodeStore
from arena.rate.ratings import Outcome, bradley_terry
from arena.rate.scenario import GameEntry, Tournament, load_tournament, partner_name
from games.seeds import tournament_seed

__all__ = ["GameEntry", "Tournament", "load_tournament", "run_tournament", "tournament_plans", "outcomes_from",
           "seat_assignments", "swiss_pairings", "TournamentResult"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------- schedule
def seat_assignments(roles: Sequence[str], a: str, b: str) -> list[dict[str, str]]:
    """Seat arrangements in which each of two agents plays each role equally often."""
    if len(roles) == 1:
        return [{roles[0]: a}, {roles[0]: b}]
    out: list[dict[str, str]] = []
    for i in range(len(roles)):
        for x, y in ((a, b), (b, a)):
            seats = {r: (x if k == i else y) for k, r in enumerate(roles)}
            if seats not in out:
                out.append(seats)
    return out


def _plans_for_pairing(t: Tournament, round_no: int, a: str, b: str) -> list[EpisodePlan]:
    """Head-to-head games: a and b in every seat arrangement. Same-seat games: each agent's own team."""
    plans = []
    for g_index, game in enumerate(t.games):
        for k in range(t.schedule.games_per_pairing):
            seed = tournament_seed(t.schedule.seed, g_index, round_no, k)
            if game.mode == "head-to-head":
                for s, seats in enumerate(seat_assignments(game.roles, a, b)):
                    tags = {"game": game.key, "round": round_no, "a": a, "b": b, "k": k}
                    plans.append(EpisodePlan(f"{game.key}-r{round_no}-{a}-vs-{b}-k{k}-s{s}", game.id, seed,
                                             game.seats(seats), game.options, tags))
            else:
                for agent in (a, b):
                    tags = {"game": game.key, "round": round_no, "team": agent, "k": k}
                    plans.append(EpisodePlan(f"{game.key}-r{round_no}-team-{agent}-k{k}", game.id, seed,
                                             game.seats({r: agent for r in game.roles}), game.options, tags))
    return plans


def round_robin_pairings(agents: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(agents) for b in agents[i + 1:]]


def swiss_pairings(agents: Sequence[str], ratings: Mapping[str, float], met: set[frozenset[str]],
                   byes: set[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Pair neighbours in the rating order, avoiding rematches where possible; odd one out gets a bye."""
    order = sorted(agents, key=lambda a: (-ratings.get(a, 1000.0), a))
    bye = None
    if len(order) % 2:
        bye = next((a for a in reversed(order) if a not in byes), order[-1])
        order.remove(bye)
    pairs, free = [], list(order)
    while free:
        a = free.pop(0)
        partner = next((b for b in free if frozenset((a, b)) not in met), free[0])
        free.remove(partner)
        pairs.append((a, partner))
    return pairs, bye


def tournament_plans(t: Tournament, round_no: int, pairs: Sequence[tuple[str, str]]) -> list[EpisodePlan]:
    """Every episode a round needs, each once (team episodes are shared by an agent's pairings)."""
    plans: dict[str, EpisodePlan] = {}
    for a, b in pairs:
        for plan in _plans_for_pairing(t, round_no, a, b):
            plans.setdefault(plan.id, plan)
    return list(plans.values())


# ----------------------------------------------------------------------- outcomes
@dataclass
class Tally:
    """Outcomes, failures and per-role scores gathered from episodes."""

    outcomes: list[Outcome]
    failures: dict[str, int]
    episodes: dict[str, int]
    role_scores: dict[str, dict[str, dict[str, list[float]]]]  # agent -> game -> role -> scores
    failed_episodes: int = 0


def outcomes_from(t: Tournament, plans: Sequence[EpisodePlan], pairings: Sequence[Sequence[tuple[str, str]]],
                  episodes: Mapping[str, Episode]) -> Tally:
    """Outcomes of every pairing of every round, in schedule order (ratings never depend on finishing order)."""
    tally = Tally([], {a: 0 for a in t.agents}, {a: 0 for a in t.agents}, {a: {} for a in t.agents})
    # the plans of each pairing's set-up, found by their tags (in the order they were made: seat arrangements)
    seated: dict[tuple, list[EpisodePlan]] = {}
    teams: dict[tuple, str] = {}
    for plan in plans:
        tags = plan.tags
        if "team" in tags:
            teams[(tags["game"], tags["round"], tags["team"], tags["k"])] = plan.id
        else:
            seated.setdefault((tags["game"], tags["round"], tags["a"], tags["b"], tags["k"]), []).append(plan)
    for plan in plans:  # episodes, failures and per-role scores, once per episode
        e = episodes.get(plan.id)
        if e is None:
            continue
        pool = {role: agent for role, agent in plan.roles.items() if agent in t.agents}  # not partners
        for agent in set(pool.values()):
            tally.episodes[agent] += 1
        if not e.ok:
            tally.failed_episodes += 1
            culprit = pool.get(e.failed_role or "")  # a partner's failure is nobody's in the pool
            for agent in [culprit] if culprit else sorted(set(pool.values())):
                tally.failures[agent] += 1
            continue
        for role, agent in pool.items():
            key = plan.tags["game"]
            tally.role_scores[agent].setdefault(key, {}).setdefault(role, []).append(e.scores[role])
    for round_no, pairs in enumerate(pairings):
        for a, b in pairs:
            for game in t.games:
                for k in range(t.schedule.games_per_pairing):
                    if game.mode == "head-to-head":
                        for plan in seated.get((game.key, round_no, a, b, k), []):
                            e = episodes.get(plan.id)
                            if e is None or not e.ok:
                                continue
                            seats = plan.roles
                            key = {x: _mean_key(e, [r for r, who in seats.items() if who == x and r in game.roles])
                                   for x in (a, b)}
                            tally.outcomes.append(Outcome(a, b, _compare(key[a], key[b]), game.key))
                    else:
                        team = {x: episodes.get(teams.get((game.key, round_no, x, k), "")) for x in (a, b)}
                        if any(e is None or not e.ok for e in team.values()):
                            continue
                        for role in game.roles:
                            key = {x: _mean_key(team[x], [role]) for x in (a, b)}
                            tally.outcomes.append(Outcome(a, b, _compare(key[a], key[b]), game.key))
    return tally


def _mean_key(episode: Episode, roles: Sequence[str]) -> tuple[float, float]:
    """(mean score, mean rewards collected) over some roles of an episode."""
    return (float(np.mean([episode.scores[r] for r in roles])), float(np.mean([_return(episode, r) for r in roles])))


def _return(episode: Episode, role: str) -> float:
    """Everything ``role`` was paid in the episode (its score plus per-turn rewards such as penalties)."""
    return sum(t.rewards.get(role, 0.0) for t in episode.turns)


def _compare(x: tuple[float, float], y: tuple[float, float]) -> float:
    """Scores decide; equal scores are decided by the rewards collected (illegal moves cost); else a draw."""
    for u, v in zip(x, y):
        if abs(u - v) > 1e-9:
            return 1.0 if u > v else 0.0
    return 0.5


# ----------------------------------------------------------------------- running
@dataclass
class TournamentResult:
    out: Path
    plans: list[EpisodePlan]
    pairings: list[list[tuple[str, str]]]
    tally: Tally
    played: int
    stats: RolloutStats
    #: Episodes stored as failed by an earlier run and played again by this one, and how many failed again.
    retried: int = 0
    retried_failed: int = 0


def run_tournament(t: Tournament, on_episode: Callable[[Episode, RolloutStats], None] | None = None,
                   policies: Mapping[str, Policy] | None = None) -> TournamentResult:
    """Play (or resume) the tournament; return its plans and tally. Ratings: :func:`arena.rate.leaderboard.build`."""
    names = list(t.agents)
    store = EpisodeStore(t.out)
    with store.open(t.info()):
        state = {**t.info(), "scenario": str(t.path), "ratings": t.ratings.to_dict()}
        atomic_write(t.out / "tournament.json", json.dumps(state, indent=1) + "\n")
        owned = policies is None
        partners = {partner_name(spec): spec for g in t.games for spec in g.partners.values()}
        wanted = set(t.agents.values()) | set(partners.values())
        rollout: BatchedRollout | RayRollout
        if t.cluster.address and owned:  # Ray workers load the policies, not this process
            loaded = {}
            rollout = RayRollout({**t.agents, **partners}, t.sampling, t.backend, t.run.concurrency, None, t.cluster,
                                 t.plugins)
        else:
            loaded = load_policies(wanted, t.sampling, t.backend, t.run.threads) if owned else dict(policies)
            missing = sorted(wanted - set(loaded))
            if missing:
                raise ScenarioError(f"no policy given for the agent specs {missing}")
            rollout = BatchedRollout({name: loaded[spec] for name, spec in {**t.agents, **partners}.items()},
                                     t.run.concurrency)
        all_plans: list[EpisodePlan] = []
        pairings: list[list[tuple[str, str]]] = []
        count = PlayCount()
        try:
            rounds = 1 if t.schedule.kind == "round-robin" else t.schedule.rounds
            met: set[frozenset[str]] = set()
            byes: set[str] = set()
            for round_no in range(rounds):
                if t.schedule.kind == "round-robin":
                    pairs = round_robin_pairings(names)
                else:
                    stored = {e.id: e for e in store}
                    so_far = outcomes_from(t, all_plans, pairings, stored).outcomes
                    if round_no == 0:
                        order = list(np.random.default_rng(t.schedule.seed).permutation(names))
                        ratings = {a: -i for i, a in enumerate(order)}
                    else:
                        ratings = bradley_terry(so_far, names)
                    pairs, bye = swiss_pairings(names, ratings, met, byes)
                    if bye:
                        byes.add(bye)
                met.update(frozenset(p) for p in pairs)
                pairings.append(list(pairs))
                plans = tournament_plans(t, round_no, pairs)
                all_plans += plans
                play_into(store, rollout, plans, on_episode, count)
        finally:
            if owned:
                for policy in loaded.values():
                    policy.close()
            if not isinstance(rollout, BatchedRollout):
                rollout.close()
        stored = {e.id: e for e in store}
        save_plans(t.out, all_plans, pairings)  # while the directory is still ours
    return TournamentResult(t.out, all_plans, pairings, outcomes_from(t, all_plans, pairings, stored), count.played,
                            rollout.stats, count.retried, count.retried_failed)


def save_plans(out: Path, plans: Sequence[EpisodePlan], pairings: Sequence[Sequence[tuple[str, str]]]) -> None:
    rows = [{"id": p.id, "game": p.game, "seed": p.seed, "roles": dict(p.roles), "options": dict(p.options),
             "tags": dict(p.tags)} for p in plans]
    state = {"pairings": [[list(pair) for pair in pairs] for pairs in pairings], "plans": rows}
    atomic_write(out / "plans.json", json.dumps(state) + "\n")


def load_state(out: str | Path) -> tuple[Tournament, list[EpisodePlan], list[list[tuple[str, str]]],
                                         dict[str, Episode]]:
    """A stored tournament's settings, plans and episodes (for `arena report`)."""
    out = Path(out)
    files = [out / "tournament.json", out / "plans.json", out / EpisodeStore.FILE]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ScenarioError(f"{out} is not a finished tournament directory (missing {', '.join(missing)})")
    info = json.loads(files[0].read_text(encoding="utf-8"))
    t = Tournament.from_info(info, out)
    state = json.loads(files[1].read_text(encoding="utf-8"))
    plans = [EpisodePlan(r["id"], r["game"], r["seed"], r["roles"], r["options"], r["tags"]) for r in state["plans"]]
    pairings = [[tuple(pair) for pair in pairs] for pairs in state["pairings"]]
    return t, plans, pairings, {e.id: e for e in EpisodeStore(out)}


def total_episodes(t: Tournament) -> int:
    """Episodes the whole tournament will play."""
    n, k = len(t.agents), t.schedule.games_per_pairing
    if t.schedule.kind == "round-robin":
        rounds, pairs, playing = 1, n * (n - 1) // 2, n
    else:
        rounds, pairs, playing = t.schedule.rounds, n // 2, 2 * (n // 2)
    total = 0
    for g in t.games:
        if g.mode == "head-to-head":
            total += rounds * pairs * len(seat_assignments(g.roles, "a", "b")) * k
        else:
            total += rounds * playing * k
    return total
