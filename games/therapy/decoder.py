"""The symptom decoder: compares what the therapist inferred with what the case encodes.

The therapist states its current hypothesis in a block such as
``Symptoms: low mood; trouble sleeping; fatigue``. A decoder matches each
stated term to the case's symptoms. Two decoders ship:

* :class:`TermMatcher` (default): normalised term and synonym matching;
* :class:`EmbeddingMatcher`: cosine similarity of text embeddings. Its
  default embedding is a deterministic hashed character-trigram vector (no
  model, no download); pass any ``embed(texts) -> array`` (for example a
  sentence-embedding model) to use a learned one.

Both are deterministic. The same term machinery reads which taxonomy symptoms a
patient's words mention (with negation), which scores the patient's
consistency with its cognitive model.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from games.therapy.cases import Case, taxonomy

__all__ = [
    "SymptomDecoder", "TermMatcher", "EmbeddingMatcher", "DECODERS", "Match", "parse_hypothesis", "normalise",
    "symptom_terms", "mentions",
]

_BLOCK = re.compile(r"symptoms?\s*(?:hypothesis)?\s*[:：]\s*(?P<items>[^\n]*)", re.IGNORECASE)
_NEGATION = re.compile(r"\b(no|not|never|don't|dont|do not|doesn't|haven't|hasn't|isn't|without)\b")


def normalise(text: str) -> str:
    """Lower case, letters and digits only, single spaces, simple plural 's' dropped."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


def parse_hypothesis(text: str) -> list[str] | None:
    """The terms of the last 'Symptoms: a; b; c' block in ``text`` (None if there is none)."""
    if not isinstance(text, str):
        return None
    blocks = list(_BLOCK.finditer(text))
    if not blocks:
        return None
    items = re.split(r"[;,]", blocks[-1].group("items"))
    return [item.strip(" .") for item in items if item.strip(" .")][:30]


@lru_cache(maxsize=4096)
def symptom_terms(name: str) -> tuple[str, ...]:
    """A symptom's name and, for taxonomy symptoms, its synonyms (normalised)."""
    entry = taxonomy().symptom(name)
    terms = [name] + (entry["synonyms"] if entry else [])
    return tuple(normalise(t) for t in terms if normalise(t))


def _contains(text_norm: str, term_norm: str) -> bool:
    return f" {term_norm} " in f" {text_norm} "


def mentions(text: str, names: Iterable[str]) -> dict[str, bool]:
    """Which of the symptom ``names`` the text mentions: True if affirmed, False if denied.

    A mention is denied when a negation word comes shortly before it in the same sentence.
    """
    out: dict[str, bool] = {}
    for sentence in re.split(r"[.!?\n]+", text.lower()):
        norm = normalise(sentence)
        if not norm:
            continue
        for name in names:
            for term in symptom_terms(name):
                if _contains(norm, term):
                    before = norm[: norm.find(term)].split()[-4:]
                    denied = bool(_NEGATION.search(" ".join(before)))
                    out[name] = out.get(name, False) or not denied
                    break
    return out


@dataclass(frozen=True)
class Match:
    """The decoder's comparison of a hypothesis with the case."""

    found: tuple[str, ...]  # case symptoms the hypothesis names
    missing: tuple[str, ...]  # case symptoms it does not
    extra: tuple[str, ...]  # stated terms that match no case symptom

    @property
    def recall(self) -> float:
        total = len(self.found) + len(self.missing)
        return len(self.found) / total if total else 0.0

    @property
    def precision(self) -> float:
        stated = len(self.found) + len(self.extra)
        return len(self.found) / stated if stated else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


class SymptomDecoder(Protocol):
    """Compares stated symptom terms with a case's symptoms."""

    def compare(self, terms: Sequence[str], case: Case) -> Match: ...


class _PairwiseDecoder:
    """Matches each stated term to at most one case symptom by a similarity test."""

    def _same(self, term: str, symptom: str) -> bool:
        raise NotImplementedError

    def compare(self, terms: Sequence[str], case: Case) -> Match:
        found: list[str] = []
        extra: list[str] = []
        for term in terms:
            hit = next((s for s in case.symptoms if self._same(term, s)), None)
            if hit is None:
                extra.append(term)
            elif hit not in found:
                found.append(hit)
        missing = tuple(s for s in case.symptoms if s not in found)
        return Match(tuple(found), missing, tuple(extra))


class TermMatcher(_PairwiseDecoder):
    """A stated term names a symptom if, normalised, it equals or contains the symptom's name or a synonym
    (or is contained in one and has at least two words)."""

    def _same(self, term: str, symptom: str) -> bool:
        t = normalise(term)
        if not t:
            return False
        for s in symptom_terms(symptom):
            if t == s or _contains(t, s) or (len(t.split()) >= 2 and _contains(s, t)):
                return True
        return False


def trigram_embedding(texts: Sequence[str], dim: int = 512) -> np.ndarray:
    """Hashed character-trigram counts, L2-normalised: a deterministic, model-free text embedding."""
    out = np.zeros((len(texts), dim), dtype=np.float64)
    for i, text in enumerate(texts):
        padded = f"  {normalise(text)}  "
        for j in range(len(padded) - 2):
            out[i, zlib.crc32(padded[j:j + 3].encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


class EmbeddingMatcher(_PairwiseDecoder):
    """A stated term names a symptom if its embedding's cosine similarity to the symptom's name or a
    synonym reaches ``threshold``."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray] = trigram_embedding, threshold: float = 0.6):
        self.embed = embed
        self.threshold = threshold
        self._cache: dict[str, np.ndarray] = {}

    def _vector(self, text: str) -> np.ndarray:
        if text not in self._cache:
            v = np.asarray(self.embed([text]), dtype=np.float64)[0]
            n = np.linalg.norm(v)
            self._cache[text] = v / n if n else v
        return self._cache[text]

    def _same(self, term: str, symptom: str) -> bool:
        v = self._vector(term)
        return any(float(v @ self._vector(s)) >= self.threshold for s in symptom_terms(symptom))


DECODERS: dict[str, Callable[[], SymptomDecoder]] = {"terms": TermMatcher, "embedding": EmbeddingMatcher}
