"""refine-v0: self-correction and solver/critic/refiner refinement; see :mod:`games.refine.game` for the card."""

from games.refine.game import CORRECTION_INSTRUCTION, PROTOCOLS, RefineGame, RefineOptions
from games.refine.scripted import ScriptedCritic, ScriptedRefinePlayer, ScriptedRefiner, ScriptedSolver

__all__ = [
    "CORRECTION_INSTRUCTION", "PROTOCOLS", "RefineGame", "RefineOptions", "ScriptedCritic", "ScriptedRefinePlayer",
    "ScriptedRefiner", "ScriptedSolver",
]
