"""Agent specs: the strings that name a policy (``scripted``, ``random``, ``human``, ...).

A spec is ``NAME`` or ``NAME:ARGUMENT`` (for example ``hf:/models/my-llm``).
:func:`load` turns a spec into a :class:`~agents.base.Policy`; other packages
add kinds with :func:`register_policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.base import Policy, PolicyError
from games.options import suggest

__all__ = ["load", "register_policy", "policy_kinds", "parse_spec"]

PolicyFactory = Callable[[str, str, dict[str, Any]], Policy]
_FACTORIES: dict[str, tuple[PolicyFactory, str]] = {}


def register_policy(name: str, factory: PolicyFactory, help: str) -> None:
    """Make ``name`` (or ``name:ARG``) a valid agent spec. ``factory(spec, arg, kwargs)`` builds the policy."""
    _FACTORIES[name] = (factory, help)


def policy_kinds() -> dict[str, str]:
    """Each spec name with its one-line help."""
    return {name: help for name, (_, help) in sorted(_FACTORIES.items())}


def parse_spec(spec: str) -> tuple[str, str]:
    """``"hf:/path"`` -> ``("hf", "/path")``; ``"scripted"`` -> ``("scripted", "")``."""
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"an agent spec must be a non-empty string such as 'scripted'; got {spec!r}")
    name, _, arg = spec.strip().partition(":")
    return name, arg


def load(spec: str, **kwargs: Any) -> Policy:
    """Build the policy an agent spec names."""
    name, arg = parse_spec(spec)
    if name not in _FACTORIES:
        known = sorted(_FACTORIES)
        raise PolicyError(
            f"unknown agent {spec!r}; agents are {', '.join(k + ('' if k in _NO_ARG else ':...') for k in known)}."
            f"{suggest(name, known)}"
        )
    factory, _ = _FACTORIES[name]
    return factory(spec.strip(), arg, kwargs)


_NO_ARG: set[str] = set()


def _no_argument(cls: type[Policy]) -> PolicyFactory:
    def build(spec: str, arg: str, kwargs: dict[str, Any]) -> Policy:
        if arg:
            raise PolicyError(f"agent {spec!r}: '{spec.partition(':')[0]}' takes no argument")
        return cls(spec, **kwargs)

    return build


def _register_builtins() -> None:
    from agents.human import HumanPolicy
    from agents.rule_based import RandomPolicy, ScriptedPolicy

    for name, cls, help in (
        ("scripted", ScriptedPolicy, "the game's rule-based player"),
        ("random", RandomPolicy, "random legal-looking or garbage moves"),
        ("human", HumanPolicy, "a person at the terminal"),
    ):
        register_policy(name, _no_argument(cls), help)
        _NO_ARG.add(name)


_register_builtins()
