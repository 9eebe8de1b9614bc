"""therapy-v0: patient and therapist (MentalArena); see :mod:`games.therapy.game` for the card."""

from games.therapy.cases import Case, builtin_cases, load_case_file, taxonomy
from games.therapy.decoder import EmbeddingMatcher, Match, SymptomDecoder, TermMatcher
from games.therapy.game import TherapyGame, TherapyOptions
from games.therapy.scripted import ScriptedPatient, ScriptedTherapist, ScriptedTherapyPlayer

__all__ = [
    "Case", "EmbeddingMatcher", "Match", "ScriptedPatient", "ScriptedTherapist", "ScriptedTherapyPlayer",
    "SymptomDecoder", "TermMatcher", "TherapyGame", "TherapyOptions", "builtin_cases", "load_case_file", "taxonomy",
]
