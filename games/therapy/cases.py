"""The symptom encoder: patients' cognitive models, generated from a symptom taxonomy.

``data/taxonomy.json`` lists symptoms (with synonyms, the domain they belong
to and sentences a patient may say) and disorder categories (with their core
and optional symptoms, suitable treatments, and pools of situations, thoughts,
emotions, behaviours, beliefs and coping strategies). :func:`generate_bank`
draws cognitive models from it with a fixed seed; the result ships as
``data/cases.json`` (rebuild it with :func:`write_bank` after editing the taxonomy).

A user's own cases come from a JSONL file, one case per line, with at least
``disorder`` and ``symptoms``; the other fields of :class:`Case` are optional.

This is a simulation for research: the cases are synthetic and the game is
not a clinical tool.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from games.options import OptionError
from games.records import load_jsonl

__all__ = ["Case", "Taxonomy", "taxonomy", "builtin_cases", "generate_bank", "load_case_file", "write_bank", "DATA"]

DATA = Path(__file__).parent / "data"
BANK_SEED = 20241001
CASES_PER_CATEGORY = 6

_NAMES = ("Alex", "Sam", "Jordan", "Maria", "Omar", "Priya", "Tom", "Mei", "Lucas", "Amara", "Noah", "Ines",
          "Yusuf", "Hanna", "Diego", "Zoe", "Ravi", "Elena", "Kwame", "Sofia")
_JOBS = ("teacher", "nurse", "software developer", "shop assistant", "student", "accountant", "bus driver",
         "chef", "lawyer", "warehouse worker", "designer", "engineer", "call-centre agent", "pharmacist")
_LIVING = ("lives alone", "lives with a partner", "lives with two children", "lives with parents",
           "shares a flat with friends")


@dataclass(frozen=True)
class Case:
    """A patient's cognitive model and the symptoms and disorder it implies."""

    id: str
    disorder: str  # category name, e.g. "major depressive disorder"
    symptoms: tuple[str, ...]  # symptom names
    name: str = "the patient"
    history: str = ""
    situation: str = ""
    automatic_thoughts: tuple[str, ...] = ()
    emotions: tuple[str, ...] = ()
    behaviours: tuple[str, ...] = ()
    intermediate_beliefs: tuple[str, ...] = ()
    core_beliefs: tuple[str, ...] = ()
    coping_strategies: tuple[str, ...] = ()
    treatments: tuple[str, ...] = ()  # suitable treatments

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "case") -> Case:
        if not isinstance(data, dict):
            raise OptionError(f"{where}: expected a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise OptionError(f"{where}: unknown fields {unknown}; a case has {sorted(names)}")
        if not isinstance(data.get("disorder"), str) or not data["disorder"].strip():
            raise OptionError(f"{where}: 'disorder' must be a non-empty string")
        symptoms = data.get("symptoms")
        if not isinstance(symptoms, list) or not symptoms or not all(isinstance(s, str) and s.strip()
                                                                     for s in symptoms):
            raise OptionError(f"{where}: 'symptoms' must be a non-empty list of strings")
        values: dict[str, Any] = {"id": str(data.get("id", where))}
        for f in dataclasses.fields(cls):
            if f.name in data and f.name != "id":
                value = data[f.name]
                if isinstance(value, list):
                    if not all(isinstance(v, str) for v in value):
                        raise OptionError(f"{where}: '{f.name}' must be a list of strings")
                    value = tuple(v.strip() for v in value)
                elif not isinstance(value, str):
                    raise OptionError(f"{where}: '{f.name}' must be a string or a list of strings")
                values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Taxonomy:
    """Symptoms and disorder categories, with lookup helpers."""

    symptoms: dict[str, dict[str, Any]]  # id -> {name, domain, synonyms, says}
    categories: tuple[dict[str, Any], ...]
    domains: dict[str, str]
    denials: dict[str, str]
    by_name: dict[str, str] = field(default_factory=dict)  # symptom name -> id

    def symptom(self, name: str) -> dict[str, Any] | None:
        """The taxonomy entry of a symptom name (or id), if it is a taxonomy symptom."""
        key = name.strip().lower().replace("_", " ")
        sid = self.by_name.get(key)
        return self.symptoms[sid] if sid else None

    def category(self, name: str) -> dict[str, Any] | None:
        key = name.strip().lower()
        for c in self.categories:
            if key in (c["id"].replace("_", " "), c["name"]):
                return c
        return None


@lru_cache(maxsize=1)
def taxonomy() -> Taxonomy:
    raw = json.loads((DATA / "taxonomy.json").read_text(encoding="utf-8"))
    by_name = {s["name"]: sid for sid, s in raw["symptoms"].items()}
    return Taxonomy(raw["symptoms"], tuple(raw["categories"]), raw["domains"], raw["denials"], by_name)


def _pick(rng: np.random.Generator, pool: list[str], low: int, high: int) -> tuple[str, ...]:
    k = int(rng.integers(low, min(high, len(pool)) + 1))
    idx = sorted(rng.choice(len(pool), size=k, replace=False).tolist())
    return tuple(pool[i] for i in idx)


def generate_bank(seed: int = BANK_SEED, per_category: int = CASES_PER_CATEGORY) -> list[Case]:
    """Draw ``per_category`` cognitive models for every category of the taxonomy."""
    tax = taxonomy()
    rng = np.random.default_rng(seed)
    cases = []
    for category in tax.categories:
        for i in range(per_category):
            optional = _pick(rng, category["optional_symptoms"], 2, 4)
            symptom_ids = list(category["core_symptoms"]) + list(optional)
            name = _NAMES[int(rng.integers(len(_NAMES)))]
            age = int(rng.integers(19, 68))
            job = _JOBS[int(rng.integers(len(_JOBS)))]
            living = _LIVING[int(rng.integers(len(_LIVING)))]
            situation = category["situations"][int(rng.integers(len(category["situations"])))]
            cases.append(Case(
                id=f"{category['id']}-{i + 1}",
                disorder=category["name"],
                symptoms=tuple(tax.symptoms[s]["name"] for s in symptom_ids),
                name=name,
                history=f"{name} is {age}, works as a {job} and {living}.",
                situation=situation[0].upper() + situation[1:] + ".",
                automatic_thoughts=_pick(rng, category["automatic_thoughts"], 1, 2),
                emotions=_pick(rng, category["emotions"], 1, 3),
                behaviours=_pick(rng, category["behaviours"], 1, 2),
                intermediate_beliefs=_pick(rng, category["intermediate_beliefs"], 1, 1),
                core_beliefs=_pick(rng, category["core_beliefs"], 1, 1),
                coping_strategies=_pick(rng, category["coping_strategies"], 1, 2),
                treatments=tuple(t["name"] for t in category["treatments"]),
            ))
    return cases


@lru_cache(maxsize=1)
def builtin_cases() -> tuple[Case, ...]:
    """The case bank that ships with the package."""
    raw = json.loads((DATA / "cases.json").read_text(encoding="utf-8"))
    return tuple(Case.from_dict(c, f"cases.json #{i}") for i, c in enumerate(raw))


def load_case_file(path: str) -> tuple[Case, ...]:
    """Read (and cache) a JSONL file of cases, with errors naming the file and line."""
    return load_jsonl(path, Case.from_dict, "case")


def write_bank(path: Path = DATA / "cases.json") -> None:
    """Regenerate the shipped case bank from the taxonomy."""
    bank = [c.to_dict() for c in generate_bank()]
    path.write_text(json.dumps(bank, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
