"""Loading the policies a run needs: one per distinct agent spec, with the scenario's backend options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import agents
from agents.base import Policy
from agents.registry import MODEL_KINDS
from agents.sampling import SamplingConfig

__all__ = ["load_policies"]


def load_policies(specs: Iterable[str], sampling: SamplingConfig,
                  backend: Mapping[str, Any] | None = None, threads: int = 0) -> dict[str, Policy]:
    """One policy per distinct agent spec (roles with the same spec share it). If one fails to load, those
    already loaded are closed before the error goes on. ``threads`` > 0 sets torch's CPU thread count for
    this process (one per process when several share a machine)."""
    if threads:
        import torch  # only when asked: rule-based runs start without it

        torch.set_num_threads(threads)
    policies: dict[str, Policy] = {}
    try:
        for spec in sorted(set(specs)):
            name, _ = agents.parse_spec(spec)
            options = dict(backend or {}) if name in MODEL_KINDS else {}
            try:
                policies[spec] = agents.load(spec, sampling, **options)
            except TypeError as err:  # an option the backend does not take
                raise agents.PolicyError(f"agent {spec!r}: bad [backend] option: {err}") from None
    except BaseException:
        for policy in policies.values():
            policy.close()
        raise
    return policies
