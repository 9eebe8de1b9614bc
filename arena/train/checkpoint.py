"""Training checkpoints: one format for the trainer and the seed-model build.

A checkpoint is a folder holding the model (``save_pretrained`` format, with
its tokenizer) and ``trainer_state.pt``: the position (``iteration``: an
iteration or an optimiser step), the loop's own ``state`` (the optimizer's
state and whatever the algorithm carries from one iteration to the next), the
random number generators' states (``rng``), and anything the writer adds;
and ``state.json``, the position and whatever else the writer wants a person
(or a script) to read without torch.

A checkpoint is written beside the old one (``FOLDER.tmp``), synced to the
disk, and renamed into place (the old one moved aside as ``FOLDER.old`` and
removed after), so a kill or a power loss at any moment leaves one whole
checkpoint: :func:`find_checkpoint` returns it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena.output import fsync_path, sync_folder

__all__ = ["READABLE", "TRAINER_STATE", "find_checkpoint", "read_checkpoint", "restore_rng", "rng_state",
           "write_checkpoint"]

TRAINER_STATE = "trainer_state.pt"
READABLE = "state.json"


def rng_state() -> dict[str, Any]:
    """The states of torch's, numpy's and Python's global random number generators."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` saved (generators it did not save are left as they are)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "python" in rng:
        random.setstate(rng["python"])


def write_checkpoint(folder: Path, save_model: Callable[[Path], None], iteration: int, state: dict[str, Any],
                     readable: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write a checkpoint to ``folder``: ``save_model(path)`` saves the model there, then the trainer state
    (``extra`` goes in it too) and ``state.json`` (the iteration and ``readable``)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(tmp)
    torch.save({"iteration": iteration, "state": state, "rng": rng_state(), **extra}, tmp / TRAINER_STATE)
    (tmp / READABLE).write_text(json.dumps({"iteration": iteration, **(readable or {})}, indent=1) + "\n",
                                encoding="utf-8")
    sync_folder(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    fsync_path(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def find_checkpoint(folder: Path) -> Path | None:
    """The whole checkpoint written to ``folder``: the folder itself, or the old one a kill left aside."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / TRAINER_STATE).is_file():
            return candidate
    return None


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint (``iteration``, ``state``, ``rng``, and what its writer added)."""
    return torch.load(folder / TRAINER_STATE, weights_only=False)
