"""The training errors, by whose move it is (the CLI's exit status)."""

from __future__ import annotations

__all__ = ["TrainError", "TrainFailed"]


class TrainError(RuntimeError):
    """A training run cannot start or continue as asked (its input is wrong: exit status 2)."""


class TrainFailed(TrainError):
    """A training run started right but could not go on (a full disk, every episode failed: exit status 1)."""
