"""A training run's output folder: a new run's checks, a resumed run's settings, a longer run of them."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from arena.output import OutputLock, atomic_write
from arena.train.errors import TrainError

__all__ = ["prepare_dir"]

log = logging.getLogger(__name__)


def prepare_dir(out: Path, info: dict[str, Any], config: Any, resume: bool) -> None:
    """Check ``out`` for a new run (empty) or a resumed one (the same settings, or a longer run of them), and
    record the run's settings in ``train.json``."""
    meta = out / "train.json"
    if meta.is_file():
        if not resume:
            raise TrainError(f"{out} already holds a training run; pass --resume to continue it, or "
                             "choose another --out")
        stored = json.loads(meta.read_text(encoding="utf-8"))
        different = sorted(k for k in set(stored) | set(info) if stored.get(k) != info.get(k))
        if different == ["algorithm_config"] and _is_extension(out, stored["algorithm_config"], config):
            _reopen_final_evaluation(out)
            different = []
        if different:
            raise TrainError(f"{out} was trained with different settings ({', '.join(different)}); "
                             "use another --out")
    elif resume and any(p.name not in (OutputLock.FILE, "ranks", "warmup") for p in out.iterdir()):
        raise TrainError(f"nothing to resume in {out} (no train.json)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(meta, json.dumps(info, indent=1, default=str) + "\n")


def _is_extension(out: Path, stored: dict[str, Any], config: Any) -> bool:
    """Whether the scenario only raises the stored run's length (its algorithm's ``extendable`` fields,
    such as filtered BC's ``rounds``): then ``--resume`` trains on from the last checkpoint, exactly as a run
    started with the larger number would have done. Lowering it is refused."""
    cls = type(config)
    old = cls.from_mapping(stored, source="the stored run's [algorithm]")
    new = config
    changed = [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
    if not changed or any(f not in getattr(cls, "extendable", ()) for f in changed):
        return False
    if any(getattr(new, f) < getattr(old, f) for f in changed):
        raise TrainError(f"{out}: --resume can raise {', '.join(changed)} to train longer, not lower it "
                         f"({', '.join(f'{getattr(old, f)} -> {getattr(new, f)}' for f in changed)})")
    log.info("extending %s: %s", out,
             ", ".join(f"{f} {getattr(old, f)} -> {getattr(new, f)}" for f in changed))
    return True


def _reopen_final_evaluation(out: Path) -> None:
    """A run trained on past its end: its old final evaluation becomes one along the way in eval.json."""
    path = out / "eval.json"
    if path.is_file():
        history = json.loads(path.read_text(encoding="utf-8"))
        for r in history["evaluations"]:
            if r["label"] == "after":
                r["label"] = "during"
        history["after"] = None
        atomic_write(path, json.dumps(history, indent=1) + "\n")
