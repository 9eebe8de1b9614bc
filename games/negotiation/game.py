"""negotiation-v0: Deal or No Deal, a two-player negotiation over books, hats and balls.

Follows Lewis et al. 2017 ("Deal or No Deal? End-to-End Learning for Negotiation
Dialogues") with the objectives of Liao, Tomlin and Klein 2024 ("Efficacy of
Language Model Self-Play in Non-Zero-Sum Games").

Roles
    ``player_0`` and ``player_1``; the first mover is drawn with the seeded RNG.

Set-up
    Item counts: at least one book, hat and ball, 5 to 7 items in all. Each
    player has private non-negative integer values with all items together
    worth exactly 10 to it. Every item type is worth something to at least one
    player and some type is worth something to both. Drawn uniformly from all
    such set-ups with the env's ``np_random``.

Observations (``Dict``)
    ``text``: what happened since the role last moved (its private set-up at
    the start, the partner's messages, whether the partner proposed, why a move
    was rejected, the final result). ``turn``: moves made so far. ``counts``
    and ``values``: the item counts and the role's own values (book, hat,
    ball). ``proposal_pending``: 1 when the role must answer a proposal.

Moves (any string; parsed leniently)
    A message to the partner (an optional ``[message]`` tag is dropped);
    a proposal of the mover's *own* share, ``[propose] (1 book, 2 hats, 0 balls)``
    (counts may be digits or number words; unmentioned types count 0);
    or ``[ABORT]``. The partner learns only that a proposal was made and must
    answer with a proposal of its own.

Illegal moves
    Empty text, a move over 4000 characters, an unreadable proposal, asking for
    more items than exist, or anything but a proposal or abort while a
    proposal is pending. An illegal move changes nothing, counts towards the
    move limit, costs ``illegal_move_penalty``, and the same player moves again.

End
    At the second proposal, an abort, or after ``max_messages`` (50) moves.

Scores
    If the two proposals add up exactly to the items, each player's raw score
    is its values dotted with its share; otherwise (or on abort or the move
    limit) both score 0. The reward and score follow ``objective``: ``semi``
    own raw score, ``coop`` own + partner's, ``comp`` own - partner's.

Metrics
    ``agreement``, ``aborted``, ``raw_score_player_0/1``, ``joint_raw_score``,
    ``pareto_optimal`` (deals only), ``messages`` (moves made),
    ``illegal_moves``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from games.base import TextGame
from games.negotiation import rules
from games.negotiation.rules import ITEMS, OBJECTIVES, Share, format_share
from games.options import GameOptions, option
from games.players import Player

__all__ = ["NegotiationGame", "NegotiationOptions", "ScriptedNegotiator"]

_OBJECTIVE_GOALS = {
    "semi": "get as many points as you can for yourself; your partner's points do not matter to you",
    "coop": "maximise the total of your points and your partner's points",
    "comp": "maximise your points minus your partner's points",
}


@dataclass(frozen=True)
class NegotiationOptions(GameOptions):
    objective: str = option("semi", "what each player is scored on: semi (own points), coop (own + partner's), "
                                    "comp (own - partner's)", choices=OBJECTIVES)
    max_messages: int = option(50, "moves (messages, proposals, illegal moves) before the game ends with no deal",
                               min=2, max=500)
    illegal_move_penalty: float = option(0.5, "reward subtracted for each illegal move", min=0.0)


class NegotiationGame(TextGame):
    """Deal or No Deal between ``player_0`` and ``player_1`` (see the module docstring)."""

    game_id = "negotiation-v0"
    roles = ("player_0", "player_1")
    options_class = NegotiationOptions
    options: NegotiationOptions
    variants = ({}, {"objective": "coop"}, {"objective": "comp", "max_messages": 20})
    count_metrics = frozenset({"illegal_moves", "messages"})

    def turn_limit(self) -> int:
        return self.options.max_messages

    def tournament_mode(self) -> str:
        # Under coop both players get the joint score: compare agents by what they achieve instead.
        return "same-seat" if self.options.objective == "coop" else "head-to-head"

    def brief(self, role: str) -> str:
        return (
            "You are negotiating with a partner how to divide some books, hats and balls. Each of you has "
            "private values for the items; all the items together are worth 10 points to each of you. "
            "On your turn write either a short message to your partner, or a proposal of the share you "
            "will take: [propose] (x books, y hats, z balls). When one player proposes, the other must "
            "answer with a proposal of its own and the game ends. If the two proposals add up exactly to "
            "all the items, each player gets its share's value; otherwise both get 0. Writing [ABORT] "
            f"ends the game with 0 for both. At most {self.options.max_messages} moves in total. "
            f"Your goal: {_OBJECTIVE_GOALS[self.options.objective]}."
        )

    def extra_spaces(self, role: str) -> dict[str, spaces.Space]:
        return {
            "counts": spaces.Box(0, rules.MAX_ITEMS, shape=(3,), dtype=np.int64),
            "values": spaces.Box(0, rules.TOTAL_VALUE, shape=(3,), dtype=np.int64),
            "proposal_pending": spaces.Discrete(2),
        }

    def observe_extras(self, role: str) -> dict[str, Any]:
        index = self.roles.index(role)
        return {
            "counts": np.array(self.setup_state.counts, dtype=np.int64),
            "values": np.array(self.setup_state.values[index], dtype=np.int64),
            "proposal_pending": np.int64(self._must_answer(role)),
        }

    # ------------------------------------------------------------------ rules
    def setup(self) -> None:
        self.setup_state = rules.sample_setup(self.np_random)
        self.proposals: dict[str, Share] = {}
        first = self.roles[int(self.np_random.integers(2))]
        counts = self.setup_state.counts
        items = ", ".join(f"{n} {item if n == 1 else item + 's'}" for n, item in zip(counts, ITEMS))
        for index, role in enumerate(self.roles):
            values = self.setup_state.values[index]
            worth = ", ".join(f"a {item} is worth {v}" for item, v in zip(ITEMS, values))
            who = "You move first." if role == first else "Your partner moves first."
            self.tell(role, f"Items: {items}. Your values: {worth}. {who}")
        self.next_turn(first)

    def play(self, role: str, move: str) -> None:
        partner = self._partner(role)
        parsed = rules.parse_move(move, self.setup_state.counts)
        penalty = self.options.illegal_move_penalty
        if parsed.kind == "invalid":
            return self.reject(parsed.error, penalty)
        if self._must_answer(role) and parsed.kind == "message":
            return self.reject(f"your partner has made a proposal; answer with your own: {rules.FORMAT_HINT}", penalty)
        if parsed.kind == "abort":
            return self._end(deal=None, summary=f"{role} aborted: no deal, both score 0.", aborted=True)
        if parsed.kind == "message":
            self.tell(partner, f"Partner: {self.shown_text(parsed.text)}")
            return self.next_turn(partner)
        assert parsed.share is not None
        self.proposals[role] = parsed.share
        if partner not in self.proposals:
            self.tell(partner, f"Your partner has made a proposal. Answer with your own: {rules.FORMAT_HINT}.")
            return self.next_turn(partner)
        share0, share1 = self.proposals[self.roles[0]], self.proposals[self.roles[1]]
        if tuple(a + b for a, b in zip(share0, share1)) == self.setup_state.counts:
            self._end(deal=share0, summary="")
        else:
            self._end(deal=None, summary=(
                f"No deal: the proposals do not add up to the items ({self.roles[0]} asked for "
                f"{format_share(share0)}; {self.roles[1]} asked for {format_share(share1)}). Both score 0."))

    def at_turn_limit(self) -> None:
        self._end(deal=None, summary=f"No deal within {self.options.max_messages} moves: both score 0.")

    # ------------------------------------------------------------------ helpers
    def _partner(self, role: str) -> str:
        return self.roles[1 - self.roles.index(role)]

    def _must_answer(self, role: str) -> bool:
        return self._partner(role) in self.proposals and role not in self.proposals

    def _end(self, deal: Share | None, summary: str, aborted: bool = False) -> None:
        setup = self.setup_state
        if deal is not None:
            shares = (deal, rules.complement(setup.counts, deal))
            raw = tuple(float(rules.score(v, s)) for v, s in zip(setup.values, shares))
            summary = "Deal: " + "; ".join(
                f"{role} gets {format_share(s)}, worth {int(r)} to it" for role, s, r in zip(self.roles, shares, raw)
            ) + "."
        else:
            raw = (0.0, 0.0)
        metrics = {
            "agreement": float(deal is not None),
            "aborted": float(aborted),
            f"raw_score_{self.roles[0]}": raw[0],
            f"raw_score_{self.roles[1]}": raw[1],
            "joint_raw_score": raw[0] + raw[1],
            "messages": float(len(self.moves())),
            "illegal_moves": float(sum(not m.legal for m in self.moves())),
        }
        if deal is not None:
            metrics["pareto_optimal"] = float(rules.is_pareto_optimal(setup.counts, setup.values, deal))
        values = "; ".join(
            f"{role} " + ", ".join(f"{item} {v}" for item, v in zip(ITEMS, vals))
            for role, vals in zip(self.roles, setup.values)
        )
        scores = rules.objective_scores(self.options.objective, raw)  # type: ignore[arg-type]
        self.finish(dict(zip(self.roles, scores)), metrics, f"{summary} Values were: {values}.")

    @classmethod
    def random_move(cls, role: str, observation: Mapping[str, Any], rng: np.random.Generator) -> str:
        counts = [int(c) for c in observation.get("counts", (1, 1, 1))]
        roll = rng.random()
        if roll < 0.4:
            phrases = ("I want the books.", "Can I have the hats?", "You take the balls.", "Deal?",
                       "What do you value most?", "That does not work for me.", "I need at least two items.")
            return phrases[int(rng.integers(len(phrases)))]
        if roll < 0.75:
            share = [int(rng.integers(0, c + 1)) for c in counts]
            return f"[propose] ({format_share(share)})"
        if roll < 0.8:
            return "[ABORT]"
        return super().random_move(role, observation, rng)


class ScriptedNegotiator(Player):
    """A rule-based negotiator that knows only its own values and honours the objective.

    It suggests a split that gives it at least a target value while leaving the
    partner as many items as possible, lowers the target as the game goes on,
    takes the partner's suggestion once it meets the target, and proposes the
    agreed split. Under ``coop`` it tells its values and looks for the split with
    the largest joint value; under ``comp`` it demands more, concedes slower,
    accepts only splits it guesses it wins (own value at least the partner's,
    guessed from the item count) and aborts after 8 of its moves without a deal.
    """

    _TARGETS = {"semi": (7, 4, 1), "coop": (5, 3, 1), "comp": (8, 6, 2)}  # start, floor, own turns per step
    _COMP_PATIENCE = 8  # own moves before a competitive negotiator gives up

    def __init__(self, role: str, options: NegotiationOptions, seed: int | None = None):
        super().__init__(role, options, seed)
        self.objective = options.objective
        self.turns = 0
        self.my_suggestion: Share | None = None
        self.partner_suggestion: Share | None = None  # the partner's own share, as it suggested
        self.partner_values: Share | None = None
        self.partner_agreed = False

    def act(self, observation: Mapping[str, Any]) -> str:
        counts: Share = tuple(int(c) for c in observation["counts"])  # type: ignore[assignment]
        values: Share = tuple(int(v) for v in observation["values"])  # type: ignore[assignment]
        self._read(observation["text"], counts)
        target = self._target()
        self.turns += 1
        if int(observation["proposal_pending"]):
            return f"[propose] ({format_share(self._best_guess(counts, values, target))})"
        if self.partner_agreed and self.my_suggestion is not None:
            return f"[propose] ({format_share(self.my_suggestion)})"
        if self.partner_suggestion is not None:
            offered = rules.complement(counts, self.partner_suggestion)
            if self._acceptable(counts, values, offered, target):
                return f"[propose] ({format_share(offered)})"
        if self.objective == "comp" and self.turns > self._COMP_PATIENCE:
            return "[ABORT]"  # no deal scores 0 either way; stop wasting moves
        self.my_suggestion = self._suggest(counts, values, target)
        mine, theirs = format_share(self.my_suggestion), format_share(rules.complement(counts, self.my_suggestion))
        text = f"I suggest I take {mine} and you take {theirs}."
        if self.objective == "coop":
            text += " My values: " + ", ".join(f"{item} {v}" for item, v in zip(ITEMS, values)) + "."
        return text

    # ------------------------------------------------------------------ reading
    _THEIRS = re.compile(r"\bI (?:take|get|want|keep|would like|'ll take|will take)\b(?P<rest>.*?)(?:\band you\b|$)",
                         re.IGNORECASE | re.DOTALL)
    _YOURS = re.compile(r"\byou (?:take|get|keep|can have|could have)\b(?P<rest>.*?)(?:\band I\b|$)",
                        re.IGNORECASE | re.DOTALL)
    _VALUES = re.compile(r"my values?:?(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
    _AGREE = re.compile(r"\b(deal|agreed?|accept(?:ed)?|sounds good|ok(?:ay)?)\b", re.IGNORECASE)
    _REFUSE = re.compile(r"\b(no|not|don't|won't|can't|cannot|never)\b", re.IGNORECASE)

    def _read(self, text: str, counts: Share) -> None:
        for line in text.splitlines():
            if not line.startswith("Partner: "):
                continue
            body = line[len("Partner: "):]
            their, _ = self._share_after(self._THEIRS, body, counts)
            mine, _ = self._share_after(self._YOURS, body, counts)
            if their is not None:
                self.partner_suggestion = their
            elif mine is not None:
                self.partner_suggestion = rules.complement(counts, mine)
            m = self._VALUES.search(body)
            if m:
                vals = re.findall(r"(book|hat|ball)s?\s*[:=]?\s*(\d+)", m.group("rest"), re.IGNORECASE)
                found = {item.lower(): int(v) for item, v in vals}
                if len(found) == 3:
                    self.partner_values = tuple(found[i] for i in ITEMS)  # type: ignore[assignment]
            self.partner_agreed = (
                their is None and mine is None and bool(self._AGREE.search(body)) and not self._REFUSE.search(body)
            )

    @staticmethod
    def _share_after(pattern: re.Pattern, body: str, counts: Share) -> tuple[Share | None, str]:
        m = pattern.search(body)
        if not m:
            return None, ""
        return rules.parse_share(m.group("rest"), counts)

    # ------------------------------------------------------------------ deciding
    def _target(self) -> int:
        start, floor, pace = self._TARGETS[self.objective]
        return max(floor, start - self.turns // pace)

    def _joint(self, counts: Share, values: Share, share: Share) -> int | None:
        if self.partner_values is None:
            return None
        return rules.score(values, share) + rules.score(self.partner_values, rules.complement(counts, share))

    @staticmethod
    def _partner_estimate(counts: Share, share: Share) -> float:
        """The partner's value of what ``share`` leaves it, guessed from the item count alone."""
        return rules.TOTAL_VALUE * (sum(counts) - sum(share)) / sum(counts)

    def _acceptable(self, counts: Share, values: Share, share: Share, target: int) -> bool:
        own = rules.score(values, share)
        if self.objective == "coop" and self.partner_values is not None:
            best = max(self._joint(counts, values, s) or 0 for s in rules.all_shares(counts))
            return (self._joint(counts, values, share) or 0) >= best - 1
        if self.objective == "comp":
            # A deal is worth taking only if it likely beats no deal (0): own >= the partner's guessed value.
            return own >= target and own >= self._partner_estimate(counts, share)
        return own >= target

    def _suggest(self, counts: Share, values: Share, target: int) -> Share:
        shares = rules.all_shares(counts)
        if self.objective == "coop" and self.partner_values is not None:
            # The largest joint value; among those, the most even split of raw points.
            def key(s: Share) -> tuple:
                own = rules.score(values, s)
                other = rules.score(self.partner_values, rules.complement(counts, s))  # type: ignore[arg-type]
                return (own + other, -abs(own - other), s)
            return max(shares, key=key)
        good = [s for s in shares if rules.score(values, s) >= target] or shares
        # Leave the partner the most items (its values are unknown), then keep the most value.
        # Under comp the target is higher, so the same rule demands more.
        return max(good, key=lambda s: (sum(counts) - sum(s), rules.score(values, s), s))

    def _best_guess(self, counts: Share, values: Share, target: int) -> Share:
        """The share to propose when the partner has proposed: the split it most likely agreed to."""
        if self.my_suggestion is not None:
            return self.my_suggestion
        if self.partner_suggestion is not None:
            return rules.complement(counts, self.partner_suggestion)
        return self._suggest(counts, values, target)


NegotiationGame.scripted_player = ScriptedNegotiator
