"""Deal or No Deal (negotiation-v0): see :mod:`games.negotiation.game` for the game card."""

from games.negotiation.game import NegotiationGame, NegotiationOptions, ScriptedNegotiator

__all__ = ["NegotiationGame", "NegotiationOptions", "ScriptedNegotiator"]
