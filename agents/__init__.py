"""Who plays: policies behind one batched interface, and the specs that name them.

    import agents
    policy = agents.load("scripted")
    completions = policy.generate(requests)

Note: OpenAI's Agents SDK is also imported as ``agents``; the two cannot be
installed in the same environment.
"""

from agents.base import Completion, Policy, PolicyError, TurnRequest
from agents.human import HumanPolicy, HumanQuit
from agents.registry import load, parse_spec, policy_kinds, register_policy
from agents.rule_based import RandomPolicy, ScriptedPolicy

__all__ = [
    "Completion", "HumanPolicy", "HumanQuit", "Policy", "PolicyError", "RandomPolicy", "ScriptedPolicy",
    "TurnRequest", "load", "parse_spec", "policy_kinds", "register_policy",
]
