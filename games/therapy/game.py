"""therapy-v0: a patient and a therapist; diagnosis by dialogue, scored against an encoded cognitive model.

Follows MentalArena (Li et al. 2024, "MentalArena: Self-play Training of
Language Models for Diagnosis and Treatment of Mental Health Disorders").
This is a simulation for research: the cases are synthetic and nothing here
is a clinical tool or clinical advice.

Roles
    ``patient`` and ``therapist``. The patient opens.

Set-up (the symptom encoder)
    Each episode draws a case with the env's ``np_random``: a cognitive model
    (history, situation, automatic thoughts, emotions, behaviours,
    intermediate and core beliefs, coping strategies), the symptoms and
    disorder it implies, and the treatments that suit it. The built-in bank
    holds 66 cases across 11 disorder categories, generated from a symptom
    taxonomy with a fixed seed; ``case_file`` loads a user's JSONL cases.

Observations (``Dict``)
    ``text``: what is new for the role. The patient first sees its cognitive
    model, then the therapist's messages (without the symptom block), any
    guidance, and plans to rate. The therapist sees the patient's words,
    guidance, the request for a diagnosis, and ratings. ``turn``: moves so
    far. ``phase``: 0 opening, 1 interview, 2 diagnosis, 3 rating.

Moves (any string)
    Patient: in-character speech; when rating a plan, a line ``Rating: n``
    (1-10). Therapist: a question, with its current hypothesis in a line
    ``Symptoms: a; b; c``; when asked, ``Diagnosis: <disorder>`` and
    ``Plan: <treatment plan>``; after a low rating, a revised ``Plan: ...``.

Dialogue
    The patient opens; ``exchanges`` (4) question/answer exchanges follow.
    The symptom decoder then compares the therapist's latest hypothesis with
    the encoded symptoms; while some are missing, up to
    ``max_extra_exchanges`` (5) more exchanges follow, each after guidance on
    what remains undiscovered (to the therapist: the unexplored areas; to the
    patient: a symptom to bring up; per ``guidance``). Then the therapist gives
    a diagnosis and a plan; the patient rates the plan's fit; while the rating
    is below ``accept_rating`` (9), the therapist revises the plan, up to
    ``max_treatment_tries`` (7) plans.

Decoder
    ``decoder``: ``terms`` (default; normalised term and synonym matching) or
    ``embedding`` (cosine similarity of hashed character-trigram embeddings;
    a decoder object, e.g. an ``EmbeddingMatcher`` with any embedding
    function, can be passed as ``matcher=`` to the constructor).

Illegal moves
    Empty text, a move over 4000 characters, a diagnosis turn without
    ``Diagnosis:`` and ``Plan:``, a revision without ``Plan:``, a rating turn
    without ``Rating: n``. It changes nothing, counts towards the move limit
    and the same role moves again.

End
    When a plan is rated at least ``accept_rating``, after
    ``max_treatment_tries`` plans, or at the move limit (twice the moves the
    dialogue needs at most).

Scores (paid as the final reward)
    Therapist: 1 for the exact disorder category (the first category its
    diagnosis names) plus 0.5 x the F1 of its final symptom hypothesis.
    Patient: consistency with its cognitive model, the share of its messages
    before the ratings that neither claim a taxonomy symptom it does not have
    nor deny one it has.

Metrics
    ``diagnosis_correct``, ``symptom_recall``, ``symptom_precision``,
    ``symptom_f1``, ``therapist_turns``, ``exchanges``, ``extra_exchanges``,
    ``plan_rating`` (the last rating), ``treatment_tries``,
    ``patient_consistency``, ``illegal_moves``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from games.base import TextGame
from games.options import GameOptions, option
from games.therapy import decoder as decoding
from games.therapy.cases import Case, builtin_cases, load_case_file, taxonomy

__all__ = ["TherapyGame", "TherapyOptions", "diagnosed_category", "parse_rating", "PHASES"]

PHASES = ("opening", "interview", "diagnosis", "rating")

# Each labelled part runs to the end of its line or to the next label, so one-line answers work too.
_NEXT_LABEL = r"(?=\b(?:diagnosis|plan|symptoms?)\s*[:：]|\n|$)"
_DIAGNOSIS = re.compile(rf"diagnosis\s*[:：]\s*(?P<d>.+?){_NEXT_LABEL}", re.IGNORECASE)
_PLAN = re.compile(r"plan\s*[:：]\s*(?P<p>.+?)(?=\b(?:diagnosis|symptoms?)\s*[:：]|$)", re.IGNORECASE | re.DOTALL)
_RATING = re.compile(r"rating\s*[:：]?\s*(?P<n>\d{1,2})(?:\s*/\s*10)?", re.IGNORECASE)
_SYMPTOM_LINE = re.compile(r"^[^\n]*symptoms?\s*(?:hypothesis)?\s*[:：][^\n]*$", re.IGNORECASE | re.MULTILINE)


def parse_rating(text: str) -> int | None:
    """The last 'Rating: n' (1-10) in the text, or None."""
    found = [int(m.group("n")) for m in _RATING.finditer(text) if 1 <= int(m.group("n")) <= 10]
    return found[-1] if found else None


def _category_terms(case_disorder: str | None = None) -> list[tuple[str, list[str]]]:
    terms = [(c["name"], [c["name"], c["id"].replace("_", " "), *c["synonyms"]]) for c in taxonomy().categories]
    if case_disorder and not any(case_disorder.lower() == name for name, _ in terms):
        terms.append((case_disorder.lower(), [case_disorder]))
    return terms


def diagnosed_category(diagnosis: str, case_disorder: str | None = None) -> str | None:
    """The disorder category a diagnosis names first (the longest name at the earliest position)."""
    text = f" {decoding.normalise(diagnosis)} "
    best: tuple[int, int, str] | None = None
    for name, names in _category_terms(case_disorder):
        for term in names:
            t = decoding.normalise(term)
            pos = text.find(f" {t} ")
            if t and pos >= 0 and (best is None or (pos, -len(t)) < (best[0], best[1])):
                best = (pos, -len(t), name)
    return best[2] if best else None


@dataclass(frozen=True)
class TherapyOptions(GameOptions):
    exchanges: int = option(4, "question/answer exchanges before the decoder first checks", min=1, max=20)
    max_extra_exchanges: int = option(5, "extra exchanges while symptoms remain undiscovered", min=0, max=10)
    guidance: str = option("therapist", "who gets guidance on undiscovered symptoms",
                           choices=("therapist", "patient", "none"))
    max_treatment_tries: int = option(7, "plans the therapist may propose", min=1, max=10)
    accept_rating: int = option(9, "a plan rated at least this ends the session", min=1, max=10)
    decoder: str = option("terms", "symptom decoder", choices=tuple(decoding.DECODERS))
    case_file: str = option("", "JSONL file of cases; used instead of the built-in bank")
    illegal_move_penalty: float = option(0.0, "reward subtracted for each illegal move", min=0.0)

    def validate(self) -> None:
        if self.case_file:
            load_case_file(self.case_file)


class TherapyGame(TextGame):
    """Patient and therapist (see the module docstring)."""

    game_id = "therapy-v0"
    roles = ("patient", "therapist")
    options_class = TherapyOptions
    options: TherapyOptions
    variants = ({}, {"guidance": "patient", "decoder": "embedding"}, {"guidance": "none", "exchanges": 2})
    count_metrics = frozenset({"illegal_moves", "therapist_turns", "exchanges", "extra_exchanges", "treatment_tries"})

    def __init__(self, options: Any = None, render_mode: str | None = None,
                 matcher: decoding.SymptomDecoder | None = None, **kwargs: Any):
        super().__init__(options, render_mode, **kwargs)
        self.decoder = matcher or decoding.DECODERS[self.options.decoder]()
        self.bank: tuple[Case, ...] = load_case_file(self.options.case_file) if self.options.case_file \
            else builtin_cases()

    def tournament_mode(self) -> str:
        return "same-seat"  # patient and therapist are scored on different things: compare like with like

    def turn_limit(self) -> int:
        o = self.options
        return 2 * (1 + 2 * (o.exchanges + o.max_extra_exchanges) + 2 * o.max_treatment_tries)

    def brief(self, role: str) -> str:
        if role == "patient":
            return ("You play a patient in a simulated therapy session for research (not real therapy). Stay in "
                    "character and consistent with your cognitive model: answer the therapist's questions, reveal "
                    "your symptoms gradually and only those you have, and deny those you do not have. When the "
                    "therapist proposes a treatment plan, rate how well it fits you with a line 'Rating: n' (1-10) "
                    "and say why.")
        disorders = sorted({c.disorder for c in self.bank})
        return ("You are a therapist in a simulated session for research. Ask one question at a time to learn the "
                "patient's symptoms. End every message with your current hypothesis in a line "
                "'Symptoms: symptom one; symptom two'. When asked, give 'Diagnosis: <disorder>' and "
                "'Plan: <treatment plan>'; after a low rating, revise with a new 'Plan: ...'. "
                f"Possible disorders: {'; '.join(disorders)}.")

    def extra_spaces(self, role: str) -> dict[str, spaces.Space]:
        return {"phase": spaces.Discrete(len(PHASES))}

    def observe_extras(self, role: str) -> dict[str, Any]:
        return {"phase": np.int64(PHASES.index(self.phase))}

    # ------------------------------------------------------------------ rules
    def setup(self) -> None:
        self.case = self.bank[int(self.np_random.integers(len(self.bank)))]
        self.phase = "opening"
        self.answers = 0
        self.extra = 0
        self.hypothesis: list[str] | None = None
        self.diagnosis = ""
        self.plan = ""
        self.ratings: list[int] = []
        self.patient_texts: list[str] = []
        self.tell("patient", self._model_card() + "\nOpen the session: tell the therapist what brings you here.")
        self.next_turn("patient")

    def _model_card(self) -> str:
        c = self.case
        lines = [f"Your cognitive model ({c.name}):"]
        for label, value in (
            ("History", c.history), ("Situation", c.situation),
            ("Automatic thoughts", c.automatic_thoughts), ("Emotions", c.emotions), ("Behaviours", c.behaviours),
            ("Intermediate beliefs", c.intermediate_beliefs), ("Core beliefs", c.core_beliefs),
            ("Coping strategies", c.coping_strategies), ("Symptoms you have", c.symptoms),
            ("Treatments that would suit you", c.treatments),
        ):
            text = "; ".join(v.rstrip(".") for v in value) if isinstance(value, tuple) else value
            if text:
                lines.append(f"{label}: {text}")
        return "\n".join(lines)

    def play(self, role: str, move: str) -> None:
        penalty = self.options.illegal_move_penalty
        if not move.strip():
            return self.reject("the move is empty", penalty)
        if role == "patient":
            return self._patient(move, penalty)
        return self._therapist(move, penalty)

    def _patient(self, move: str, penalty: float) -> None:
        if self.phase == "rating":
            rating = parse_rating(move)
            if rating is None:
                return self.reject("rate the plan with a line 'Rating: n' (n from 1 to 10)", penalty)
            self.ratings.append(rating)
            if rating >= self.options.accept_rating or len(self.ratings) >= self.options.max_treatment_tries:
                return self._end()
            self.tell("therapist", f"The patient rated the plan {rating}/10: {self.shown_text(move)}\n"
                                   "Revise the treatment plan: 'Plan: ...'.")
            return self.next_turn("therapist")
        self.patient_texts.append(move)
        self.tell("therapist", f"Patient: {self.shown_text(move)}")
        if self.phase == "opening":
            self.phase = "interview"
            return self.next_turn("therapist")
        self.answers += 1
        if self.answers < self.options.exchanges:
            return self.next_turn("therapist")
        match = self.decoder.compare(self.hypothesis or [], self.case)
        if match.missing and self.extra < self.options.max_extra_exchanges:
            self.extra += 1
            self._guide(match.missing)
            return self.next_turn("therapist")
        self.phase = "diagnosis"
        self.tell("therapist", "Now give your diagnosis and a treatment plan: 'Diagnosis: <disorder>' and "
                               "'Plan: <treatment plan>'.")
        self.next_turn("therapist")

    def _guide(self, missing: tuple[str, ...]) -> None:
        if self.options.guidance == "therapist":
            domains = []
            for name in missing:
                entry = taxonomy().symptom(name)
                area = taxonomy().domains.get(entry["domain"], entry["domain"]) if entry else name
                if area not in domains:
                    domains.append(area)
            self.tell("therapist", f"Guidance: you have not yet explored: {', '.join(domains)}.")
        elif self.options.guidance == "patient":
            self.tell("patient", f"Guidance: the therapist has not yet learned that you have: {missing[0]}. "
                                 "Bring it up in your next answer.")

    def _therapist(self, move: str, penalty: float) -> None:
        stated = decoding.parse_hypothesis(move)
        if self.phase in ("diagnosis", "rating"):
            diagnosis, plan = _DIAGNOSIS.search(move), _PLAN.search(move)
            if self.phase == "diagnosis" and not (diagnosis and plan):
                return self.reject("give 'Diagnosis: <disorder>' and 'Plan: <treatment plan>'", penalty)
            if not plan:
                return self.reject("give a revised plan: 'Plan: <treatment plan>'", penalty)
            if stated is not None:
                self.hypothesis = stated
            if diagnosis:
                self.diagnosis = diagnosis.group("d").strip()
            self.plan = " ".join(plan.group("p").split())
            self.phase = "rating"
            self.tell("patient", f"The therapist's diagnosis: {self.shown_text(self.diagnosis)}\n"
                                 f"Proposed plan: {self.shown_text(self.plan)}\n"
                                 "Rate how well this plan fits you, with a line 'Rating: n' (1-10), and say why.")
            return self.next_turn("patient")
        if stated is not None:
            self.hypothesis = stated
        spoken = _SYMPTOM_LINE.sub("", move).strip() or "(the therapist waits for you to go on)"
        self.tell("patient", f"Therapist: {self.shown_text(spoken)}")
        self.next_turn("patient")

    def at_turn_limit(self) -> None:
        self._end(reason="turn limit")

    def _consistency(self) -> float:
        if not self.patient_texts:
            return 0.0
        tax = taxonomy()
        known = [s["name"] for s in tax.symptoms.values()]
        own = set(self.case.symptoms)
        names = known + [s for s in own if s not in known]
        consistent = 0
        for text in self.patient_texts:
            said = decoding.mentions(text, names)
            claims_other = any(v and n not in own and n in known for n, v in said.items())
            denies_own = any(not v and n in own for n, v in said.items())
            consistent += not (claims_other or denies_own)
        return consistent / len(self.patient_texts)

    def _end(self, reason: str = "finished") -> None:
        match = self.decoder.compare(self.hypothesis or [], self.case)
        named = diagnosed_category(self.diagnosis, self.case.disorder) if self.diagnosis else None
        correct = named is not None and named == self.case.disorder.lower()
        consistency = self._consistency()
        metrics = {
            "diagnosis_correct": float(correct),
            "symptom_recall": match.recall,
            "symptom_precision": match.precision,
            "symptom_f1": match.f1,
            "therapist_turns": float(sum(m.role == "therapist" for m in self.moves())),
            "exchanges": float(self.answers),
            "extra_exchanges": float(self.extra),
            "treatment_tries": float(len(self.ratings)),
            "patient_consistency": consistency,
            "illegal_moves": float(sum(not m.legal for m in self.moves())),
        }
        if self.ratings:
            metrics["plan_rating"] = float(self.ratings[-1])
        scores = {"therapist": float(correct) + 0.5 * match.f1, "patient": consistency}
        verdict = "correct" if correct else f"wrong (it was {self.case.disorder})"
        summary = (f"Diagnosis {self.diagnosis or '(none)'!r} is {verdict}; symptoms found "
                   f"{len(match.found)}/{len(self.case.symptoms)}; last plan rating "
                   f"{self.ratings[-1] if self.ratings else '-'}.")
        self.finish(scores, metrics, summary, reason=reason)

    @classmethod
    def random_move(cls, role: str, observation: Mapping[str, Any], rng: np.random.Generator) -> str:
        tax = taxonomy()
        names = sorted(s["name"] for s in tax.symptoms.values())
        roll = rng.random()
        if roll < 0.15:
            return super().random_move(role, observation, rng)
        if role == "patient":
            sid = sorted(tax.symptoms)[int(rng.integers(len(tax.symptoms)))]
            return f"{tax.symptoms[sid]['says'][0]} Rating: {int(rng.integers(1, 11))}"
        picked = [names[int(i)] for i in rng.integers(len(names), size=2)]
        category = tax.categories[int(rng.integers(len(tax.categories)))]["name"]
        return (f"How are you feeling? Symptoms: {'; '.join(picked)}\n"
                f"Diagnosis: {category}\nPlan: talk therapy")
