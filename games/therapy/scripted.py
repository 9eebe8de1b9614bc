"""Rule-based players for therapy-v0.

The scripted patient reads its cognitive model from its first observation and
answers the therapist from it: it recognises which areas a question is about
(sleep, mood, body, ...), reveals at most two of its unrevealed symptoms in
those areas in its own words, denies areas where it has none, and otherwise
shares a feeling or thought and, now and then, one more symptom. It rates a
plan by how many of its suitable treatments the plan names.

The scripted therapist asks about one area after another (guided areas
first), collects the symptoms the patient's words mention, states them as its
hypothesis, diagnoses the category its findings fit best (core symptoms count
double), and proposes that category's treatments, adding one after each low
rating.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from games.players import Player, players_by_role
from games.therapy import decoder as decoding
from games.therapy.cases import taxonomy
from games.therapy.game import TherapyGame

__all__ = ["ScriptedPatient", "ScriptedTherapist", "ScriptedTherapyPlayer", "QUESTION_DOMAINS", "AREA_QUESTIONS"]

#: Words that tell which area a question is about.
QUESTION_DOMAINS = {
    "sleep": ("sleep", "night", "bed", "rest", "nightmare", "dream", "wake", "waking", "insomnia"),
    "mood": ("mood", "feel", "feeling", "sad", "happy", "down", "enjoy", "interest", "pleasure", "spirits",
             "high", "euphoric"),
    "energy": ("energy", "tired", "fatigue", "exhausted"),
    "body": ("body", "physical", "heart", "breath", "breathing", "chest", "dizzy", "shake", "shaking", "tremble",
             "sensation", "sensations", "blush", "tense", "muscle", "panic"),
    "appetite": ("eat", "eating", "appetite", "food", "weight", "meal", "meals", "hungry", "diet"),
    "thoughts": ("thought", "thoughts", "think", "worry", "worries", "mind", "fear", "fears", "afraid", "belief"),
    "cognition": ("focus", "concentrate", "concentration", "attention", "memory", "forget", "distracted"),
    "social": ("people", "friends", "social", "others", "family", "relationships", "alone", "parties"),
    "behaviour": ("habit", "habits", "routine", "routines", "ritual", "rituals", "spend", "spending", "exercise",
                  "behaviour", "behavior", "daily"),
    "trauma": ("happened", "event", "past", "memories", "accident", "trauma", "remind", "reminders"),
    "substance": ("drink", "drinking", "alcohol", "substance", "substances", "drugs"),
}

AREA_QUESTIONS = {
    "mood": "How has your mood been lately, and do you still enjoy things?",
    "sleep": "How have you been sleeping at night?",
    "thoughts": "What thoughts or worries keep coming to your mind?",
    "body": "Have you noticed physical sensations, like your heart racing, shaking or tension?",
    "behaviour": "Have your daily habits or routines changed?",
    "social": "How are things with friends, family and other people?",
    "energy": "How is your energy during the day?",
    "cognition": "How are your focus and memory?",
    "appetite": "How are your eating and weight?",
    "trauma": "Has something happened in the past that keeps coming back to you?",
    "substance": "How much alcohol do you drink these days?",
}

_LIST_LINE = re.compile(r"^(?P<label>[A-Z][A-Za-z ]+):\s*(?P<value>.*)$", re.MULTILINE)


def _areas(text: str) -> list[str]:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return [area for area, keys in QUESTION_DOMAINS.items() if words & set(keys)]


class ScriptedPatient(Player):
    """Answers from its cognitive model, revealing symptoms gradually."""

    def __init__(self, role: str, options: Any, seed: int | None = None):
        super().__init__(role, options, seed)
        self.model: dict[str, list[str]] = {}
        self.revealed: set[str] = set()
        self.shared: set[str] = set()

    def act(self, observation: Mapping[str, Any]) -> str:
        text = str(observation["text"])
        if not self.model:
            for m in _LIST_LINE.finditer(text):
                self.model[m.group("label").strip()] = [v.strip() for v in m.group("value").split(";") if v.strip()]
        phase = int(observation["phase"])
        if "Proposed plan:" in text:
            return self._rate(text)
        if phase == 0:
            return self._open()
        guided = re.search(r"not yet learned that you have: (?P<s>[^.]+)\.", text)
        if guided:
            return self._say(guided.group("s").strip())
        question = "\n".join(line for line in text.splitlines() if line.startswith("Therapist:"))
        return self._answer(question)

    @property
    def symptoms(self) -> list[str]:
        return self.model.get("Symptoms you have", [])

    def _say(self, symptom: str) -> str:
        self.revealed.add(symptom)
        entry = taxonomy().symptom(symptom)
        if entry is None:
            return f"I have been dealing with {symptom}."
        return entry["says"][int(self.rng.integers(len(entry["says"])))]

    def _open(self) -> str:
        situation = (self.model.get("Situation") or ["Things have been hard lately."])[0].rstrip(".")
        first = self._say(self.symptoms[0]) if self.symptoms else "I don't feel like myself."
        return f"{situation}, and I don't feel like myself. {first}"

    def _answer(self, question: str) -> str:
        areas = _areas(question)
        hidden = [s for s in self.symptoms if s not in self.revealed]
        parts: list[str] = []
        for area in areas:
            in_area = [s for s in hidden if (taxonomy().symptom(s) or {}).get("domain") == area]
            if in_area:
                for s in in_area[:2]:
                    parts.append(self._say(s))
                    hidden.remove(s)
            elif not any((taxonomy().symptom(s) or {}).get("domain") == area for s in self.symptoms):
                parts.append(taxonomy().denials[area])
            if len(parts) >= 2:
                break
        if not parts:
            parts.append(self._share())
            if hidden and self.rng.random() < 0.5:
                parts.append(self._say(hidden[0]))
        return " ".join(parts)

    def _share(self) -> str:
        """A feeling, thought or habit from the cognitive model, not yet shared if possible."""
        options = [(f"I often think: {t}") for t in self.model.get("Automatic thoughts", [])]
        options += [f"Mostly I feel {e}." for e in self.model.get("Emotions", [])]
        options += [f"To cope I end up {c}." for c in self.model.get("Coping strategies", [])]
        fresh = [o for o in options if o not in self.shared] or options or ["It is hard to put into words."]
        choice = fresh[int(self.rng.integers(len(fresh)))]
        self.shared.add(choice)
        return choice

    def _rate(self, text: str) -> str:
        plan = text.split("Proposed plan:", 1)[1].split("\n")[0]
        suitable = self.model.get("Treatments that would suit you", [])
        named = [t for t in suitable if _names_treatment(plan, t)]
        others = [t["name"] for c in taxonomy().categories for t in c["treatments"]
                  if t["name"] not in suitable and _names_treatment(plan, t["name"])]
        if named:
            rating = min(10, 3 + 3 * len(named))
            why = f"{' and '.join(named)} sounds right for me"
        else:
            rating = 2 if others else 3
            why = "I am not sure this plan fits what I am going through"
        return f"Rating: {rating}. {why[0].upper()}{why[1:]}."


def _names_treatment(plan: str, treatment: str) -> bool:
    entry = next((t for c in taxonomy().categories for t in c["treatments"] if t["name"] == treatment), None)
    terms = [treatment] + (entry["synonyms"] if entry else [])
    text = f" {decoding.normalise(plan)} "
    return any(f" {decoding.normalise(t)} " in text for t in terms)


class ScriptedTherapist(Player):
    """Explores area by area, diagnoses the best-fitting category and proposes its treatments.

    Now and then (``cautious_first_plan`` of the time) it starts with one treatment and adds the
    next once the patient's rating shows the plan is not enough, as a careful clinician might; so its
    transcripts also show how to revise a plan.
    """

    cautious_first_plan = 0.3

    ORDER = ("mood", "sleep", "thoughts", "body", "behaviour", "social", "energy", "cognition", "appetite",
             "trauma", "substance")

    def __init__(self, role: str, options: Any, seed: int | None = None):
        super().__init__(role, options, seed)
        self.found: list[str] = []
        self.asked: list[str] = []
        self.guided: list[str] = []
        self.category: str | None = None
        self.plan: list[str] = []

    def act(self, observation: Mapping[str, Any]) -> str:
        text = str(observation["text"])
        names = [s["name"] for s in taxonomy().symptoms.values()]
        for line in text.splitlines():
            if line.startswith("Patient:"):  # not the rating lines: treatment names are no symptoms
                for name, affirmed in decoding.mentions(line, names).items():
                    if affirmed and name not in self.found:
                        self.found.append(name)
        m = re.search(r"not yet explored: (?P<a>[^.]+)\.", text)
        if m:
            by_label = {label: area for area, label in taxonomy().domains.items()}
            self.guided = [by_label.get(a.strip(), a.strip()) for a in m.group("a").split(",")]
        hypothesis = f"Symptoms: {'; '.join(self.found) or 'not clear yet'}"
        if "Now give your diagnosis" in text:
            self.category, self.plan = self._diagnose()
            return f"Diagnosis: {self.category}\nPlan: {', '.join(self.plan)}\n{hypothesis}"
        rated = re.search(r"rated the plan (\d+)/10", text)
        if rated:
            return f"Plan: {', '.join(self._revise(int(rated.group(1))))}\n{hypothesis}"
        return f"{self._question()}\n{hypothesis}"

    def _question(self) -> str:
        pending = [a for a in self.guided if a in AREA_QUESTIONS and a not in self.asked[-1:]]
        area = pending[0] if pending else next((a for a in self.ORDER if a not in self.asked), self.ORDER[0])
        if area in self.guided:
            self.guided.remove(area)
        self.asked.append(area)
        return AREA_QUESTIONS[area]

    def _scores(self) -> list[tuple[float, dict]]:
        out = []
        for c in taxonomy().categories:
            core = {taxonomy().symptoms[s]["name"] for s in c["core_symptoms"]}
            optional = {taxonomy().symptoms[s]["name"] for s in c["optional_symptoms"]}
            score = sum(2.0 if s in core else 1.0 if s in optional else 0.0 for s in self.found)
            out.append((score, c))
        return sorted(out, key=lambda x: -x[0])

    def _diagnose(self) -> tuple[str, list[str]]:
        best = self._scores()[0][1]
        size = 1 if self.rng.random() < self.cautious_first_plan else 2
        return best["name"], [t["name"] for t in best["treatments"][:size]]

    def _revise(self, rating: int) -> list[str]:
        ranked = self._scores()
        if rating <= 3 and len(ranked) > 1:
            # Nothing fitted: the second-best category's treatments.
            current = next((i for i, (_, c) in enumerate(ranked) if c["name"] == self.category), 0)
            nxt = ranked[(current + 1) % len(ranked)][1]
            self.category = nxt["name"]
            self.plan = [t["name"] for t in nxt["treatments"][:2]]
        else:
            category = next(c for _, c in ranked if c["name"] == self.category)
            more = [t["name"] for t in category["treatments"] if t["name"] not in self.plan]
            if more:
                self.plan.append(more[0])
        return self.plan


ScriptedTherapyPlayer = players_by_role(
    "ScriptedTherapyPlayer", {"patient": ScriptedPatient, "therapist": ScriptedTherapist}
)

TherapyGame.scripted_player = ScriptedTherapyPlayer
