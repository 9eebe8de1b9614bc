"""What every training algorithm shares: the model, rollouts, evaluation, metrics, checkpoints, resume.

A :class:`TrainingSession` owns the output directory::

    OUT/train.json            the scenario's settings (a resumed run must match them, but may raise
                              the number of rounds or iterations to train longer)
    OUT/metrics.jsonl         one line per iteration (loss, rewards, KL, entropy, collapse signals, speed)
    OUT/eval.json             held-out evaluation before, between and after iterations
    OUT/checkpoints/iter-N/   save_pretrained model + trainer_state.pt (optimizer, RNG, position)
    OUT/final/                the trained model (save_pretrained; an `hf:` agent)
    OUT/curves.png            learning curves
    OUT/wandb/                Weights & Biases files (offline by default)

One process trains in a directory at a time (:class:`arena.output.OutputLock`;
a second ``arena train --out`` on it is refused with the holder's PID).
Checkpoints are written to a temporary folder, synced to the disk (fsync),
renamed, and ``latest.json`` is replaced atomically after them, so a kill -9
or a power loss at any moment leaves the last complete checkpoint;
``--resume`` continues from it and, because rollouts and minibatches are
seeded by (run seed, iteration), repeats exactly what the uninterrupted run
would have done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

import games
from agents.base import Policy
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from arena.output import OutputLock, atomic_write, fsync_path, sync_folder, write_failure
from arena.play.batched import BatchedRollout, EpisodePlan
from arena.play.episode import Episode
from arena.play.policies import load_policies
from arena.play.store import EpisodeStore
from arena.play.summary import summarise
from arena.train.checkpoint import find_checkpoint, read_checkpoint, restore_rng, write_checkpoint
from arena.train.curves import plot_curves
from arena.train.data import RoleSequence, role_sequences
from arena.train.distributed import ranks
from arena.train.engine import VLLMRollouts, logprob_gap
from arena.train.errors import TrainError, TrainFailed
from arena.train.model import TrainableModel
from arena.train.rundir import prepare_dir
from arena.train.scenario import POLICY, TrainScenario
from games.seeds import setup_seed

__all__ = ["TrainingSession", "TrainError", "TrainFailed", "unsupported_with_ranks"]

log = logging.getLogger(__name__)


def unsupported_with_ranks(scenario: TrainScenario, world: int) -> str | None:
    """Why ``scenario`` cannot train with ``world`` data-parallel ranks, or None."""
    if world <= 1:
        return None
    if scenario.rollout.engine != "hf":
        return (f"[rollout] engine = \"{scenario.rollout.engine}\" with {world} data-parallel ranks is not supported "
                "yet (each rank would start or push to engines of its own); use engine = \"hf\" with --nproc or "
                "torchrun, or one trainer with vllm-server engines")
    if scenario.warmup.when != "never":
        return (f"[warmup] with {world} data-parallel ranks is not supported yet (each rank would play and clone "
                "the scripted episodes); warm up in one process, or set when = \"never\"")
    if scenario.run.fsdp and scenario.lora is not None:
        return ("[run] fsdp = true with LoRA ([model] lora) is not supported (LoRA's trained state is small already: "
                "train it data-parallel without fsdp)")
    return None


class TrainingSession:
    """The plumbing of one training run; an algorithm's ``run(session, config, state)`` drives it."""

    def __init__(self, scenario: TrainScenario, config: Any, resume: bool = False, wandb: bool = True,
                 progress: Callable[[str, dict[str, Any]], None] | None = None):
        """``config`` is the algorithm's checked config (an instance of its config dataclass)."""
        self.scenario = scenario
        self.config = config
        self.out = scenario.out
        self._use_wandb = wandb
        self.say = progress or (lambda event, info: None)
        self.store: EpisodeStore | None = None
        self._wandb: Any = None
        self.rollouts: VLLMRollouts | None = None
        self.ranks = ranks()  # data-parallel ranks (arena.train.distributed); rank 0 alone writes
        self.lock = OutputLock(self.out)
        try:
            if self.ranks.main:
                self.lock.acquire()
        except RuntimeError as err:  # locked by another process, or --out names a file
            raise TrainError(str(err)) from None
        try:
            self._start(resume)
        except BaseException:
            self.close()
            raise

    def _start(self, resume: bool) -> None:
        scenario = self.scenario
        refused = unsupported_with_ranks(scenario, self.ranks.world)
        if refused:
            raise TrainError(refused)
        if self.ranks.main:
            prepare_dir(self.out, self.scenario.info(), self.config, resume)
        self.ranks.barrier()  # the others read the folder (a checkpoint to resume) once rank 0 has checked it
        if scenario.run.threads:
            torch.set_num_threads(scenario.run.threads)
        torch.manual_seed(scenario.run.seed)
        init = seed_model_dir() if scenario.init == "seed" else Path(scenario.init.split(":", 1)[1])
        self.model = TrainableModel(init, POLICY, scenario.sampling, lora=scenario.lora,
                                    max_batch_size=scenario.run.concurrency, precision=scenario.run.precision)
        if scenario.run.fsdp and self.ranks.world > 1:
            self.model.shard()
        if scenario.rollout.engine != "hf":
            self.rollouts = VLLMRollouts(scenario.rollout.engine, init, scenario.sampling, scenario.rollout.vllm,
                                         scenario.rollout.servers)
            self.rollouts.check_model(self.model)
        specs = {s for s in scenario.roles.values() if s != POLICY} | {scenario.eval.opponents}
        self.others = load_policies(specs, scenario.sampling)
        self.iteration = 0
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = defaultdict(float)  # where this iteration's time went (play, update)
        self._wandb = self._start_wandb() if self._use_wandb and self.ranks.main else None
        self.store = EpisodeStore(self.out).open(locked=True) if scenario.run.store_episodes and self.ranks.main \
            else None

    def _start_wandb(self) -> Any:
        mode = os.environ.get("WANDB_MODE") or self.scenario.run.wandb
        if mode == "disabled":
            return None
        try:
            import wandb  # optional at run time, and slow to import: only when a run logs to it

            return wandb.init(project="socratic-arena", name=self.out.name, dir=str(self.out), mode=mode,
                              config=self.scenario.info(), id=f"arena-{abs(hash(str(self.out.resolve()))):x}",
                              resume="allow", reinit=True)
        except Exception as err:  # logging must never stop training
            log.warning("wandb logging is off: %s", err)
            return None

    # ------------------------------------------------------------------ playing
    def plans(self, iteration: int, groups: int, group_size: int = 1, roles: dict[str, str] | None = None,
              seed: int | None = None, prefix: str = "train") -> list[EpisodePlan]:
        """``groups`` set-ups, each played ``group_size`` times with different sampling."""
        roles = roles or self.scenario.roles
        base = self.scenario.run.seed if seed is None else seed
        plans = []
        for g in range(groups):
            s = setup_seed(base, iteration, g)
            for k in range(group_size):
                plans.append(EpisodePlan(f"{prefix}-{iteration:05d}-{g:04d}-{k:02d}", self.scenario.game, s,
                                         dict(roles), dict(self.scenario.options), sample=k))
        return plans

    @property
    def player(self) -> Policy:
        """What samples the trained roles' moves: the trained module itself, or the vLLM engine following it."""
        return self.rollouts.policy if self.rollouts is not None else self.model.policy

    def play(self, plans: Sequence[EpisodePlan]) -> list[Episode]:
        """Play plans with the current weights; the trained roles map to the model, the rest to their agents."""
        self.model.gather()  # FSDP: the player's whole weights from the shards (every rank at once)
        policies = {POLICY: self.player, **self.others}
        self.model.model.eval()
        if self.rollouts is not None:
            with self.timed("sync"):
                self.rollouts.follow(self.model)
        mine = plans
        if self.ranks.world > 1:  # this rank's groups (a group's plans share their set-up's seed)
            share = set(self.ranks.share(list(dict.fromkeys(p.seed for p in plans))))
            mine = [p for p in plans if p.seed in share]
        with self.timed("play"):
            episodes = list(BatchedRollout(policies, self.scenario.run.concurrency,
                                           block=max(len(mine), self.scenario.run.concurrency)).run(mine))
            episodes = self.ranks.gather(episodes, [p.id for p in plans], lambda e: e.id)
        if self.rollouts is not None:
            self.rollouts.rest()
        if self.store is not None:
            for e in episodes:
                self.store.append(e)
        return episodes

    def sequences(self, episodes: Iterable[Episode], roles: Sequence[str] | None = None) -> list[RoleSequence]:
        roles = roles or self.scenario.trained_roles
        limit = self.model.policy.max_length
        return [s for e in episodes for s in role_sequences(e, roles, self.model.tokenizer, self.model.end_ids,
                                                            max_length=limit)]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, label: str) -> dict[str, Any]:
        """Held-out episodes: each trained role played by the model against the evaluation opponents."""
        e = self.scenario.eval
        sampling = self.player.sampling
        if e.temperature >= 0:
            self.player.sampling = SamplingConfig(temperature=e.temperature, top_p=sampling.top_p,
                                                  max_new_tokens=sampling.max_new_tokens)
        saved_others, saved_seconds = self.others, dict(self.seconds)
        self.others = {**self.others}
        result: dict[str, Any] = {"label": label, "iteration": self.iteration, "seats": {}}
        started = time.perf_counter()
        try:
            for role in self.scenario.trained_roles:
                roles = {r: (POLICY if r == role else e.opponents) for r in self.scenario.roles}
                plans = self.plans(0, e.episodes, roles=roles, seed=e.seed, prefix=f"eval-{role}")
                episodes = self.play(plans)
                summary = summarise(episodes)
                own = [t for ep in episodes for t in ep.turns if t.role == role]
                scores = [ep.scores[role] for ep in episodes if ep.ok and role in ep.scores]
                result["seats"][role] = {
                    "opponents": e.opponents,
                    "episodes": len(episodes),
                    "policy_score": summary["mean_scores"].get(role, 0.0),
                    # standard error of the mean score: how far a rerun on other seeds may move it
                    "policy_score_se": float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1
                    else 0.0,
                    "policy_legal_rate": sum(t.legal for t in own) / max(1, len(own)),
                    "metrics": summary.get("metrics", {}),
                    "failed": summary["failed"],
                }
        finally:
            self.player.sampling = sampling
            self.others = saved_others
            self.seconds = defaultdict(float, saved_seconds)  # evaluation is not the iteration's play
        result["seconds"] = time.perf_counter() - started
        self._append_eval(result)
        self.say("eval", result)
        return result

    def evaluate_after(self) -> dict[str, Any]:
        """The final evaluation. A run that trained no iteration (0 rounds or iterations: an evaluation-only run)
        still has the model it started with, so its "before" evaluation is written again as "after"
        (``"same_as": "before"``) instead of being played a second time."""
        if self.iteration == 0:
            path = self.out / "eval.json"
            before = json.loads(path.read_text(encoding="utf-8")).get("before") if path.is_file() else None
            if before is not None and before["iteration"] == 0:
                result = {**before, "label": "after", "same_as": "before", "seconds": 0.0}
                self._append_eval(result)
                self.say("eval", result)
                return result
        return self.evaluate("after")

    def _append_eval(self, result: dict[str, Any]) -> None:
        path = self.out / "eval.json"
        history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"evaluations": []}
        history["evaluations"] = [r for r in history["evaluations"]
                                  if not (r["label"] == result["label"] and r["iteration"] == result["iteration"])]
        history["evaluations"].append(result)
        evals = history["evaluations"]
        history["before"] = next((r for r in evals if r["label"] == "before"), None)
        history["after"] = next((r for r in reversed(evals) if r["label"] == "after"), None)
        if self.ranks.main:
            atomic_write(path, json.dumps(history, indent=1) + "\n")

    # ------------------------------------------------------------------ metrics
    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """Add the block's wall time to ``seconds/WHAT`` of the iteration's metrics."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - started

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        row = {"iteration": self.iteration, "minutes": (time.perf_counter() - self.started) / 60, **metrics,
               **{f"seconds/{k}": v for k, v in self.seconds.items()}}
        self.seconds.clear()
        if not self.ranks.main:
            return
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=self.iteration)
        self.say("iteration", row)

    def _trim_metrics(self, last_iteration: int) -> list[str]:
        """Drop the metrics of iterations after ``last_iteration`` (and a torn last line); return the rows kept."""
        path = self.out / "metrics.jsonl"
        if not path.is_file() or not self.ranks.main:
            return []
        keep = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and line.endswith("}") and json.loads(line)["iteration"] <= last_iteration]
        atomic_write(path, "".join(line + "\n" for line in keep))
        return keep

    # ------------------------------------------------------------------ the algorithms' loop
    def optimizer(self, learning_rate: float, state: dict[str, Any]) -> torch.optim.Optimizer:
        """AdamW over the trained parameters, its state restored from ``state`` on resume."""
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate, betas=(0.9, 0.95),
                                      weight_decay=0.0)
        if state.get("optimizer") is not None:
            self.model.load_optimizer_state(optimizer, state["optimizer"])
        return optimizer

    def evaluate_before(self) -> None:
        """The "before" evaluation, on a fresh run (a resumed run has it already)."""
        if self.iteration == 0:
            self.evaluate("before")

    def end_iteration(self, total: int, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """After an iteration: evaluate every ``[eval] every`` iterations, checkpoint every
        ``[run] checkpoint_every`` and at the last one."""
        every = self.scenario.eval.every
        if every and self.iteration % every == 0 and self.iteration < total:
            self.evaluate("during")
        if self.iteration % self.scenario.run.checkpoint_every == 0 or self.iteration == total:
            state["optimizer"] = self.model.optimizer_state(optimizer)
            self.save_checkpoint(state)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        folder = self.out / "checkpoints" / f"iter-{self.iteration:05d}"
        self.model.gather()
        if not self.ranks.main:
            return folder
        with self._writing(folder.with_name(folder.name + ".tmp")):
            # the weights go in trainer_state.pt too: a LoRA run's adapters, not only the merged model
            write_checkpoint(folder, self.model.save, self.iteration, state, model=self.model.state_dict())
            atomic_write(self.out / "checkpoints" / "latest.json", json.dumps({"path": folder.name,
                                                                                 "iteration": self.iteration}) + "\n")
        for old in sorted((self.out / "checkpoints").glob("iter-*"))[:-2]:
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    @contextmanager
    def _writing(self, tmp: Path) -> Iterator[None]:
        """Turn a failed write of ``tmp`` (a full disk, which torch reports as "unexpected pos") into one
        clear error; the previous checkpoint stays as it was."""
        try:
            yield
        except Exception as err:  # torch, safetensors and the OS each report a full disk their own way
            shutil.rmtree(tmp, ignore_errors=True)
            cause = write_failure(err, self.out)
            raise TrainFailed(f"could not write {tmp.name.removesuffix('.tmp')} in {self.out}: {cause}; free some "
                             "space and continue with --resume (the last complete checkpoint is kept)") from None

    def load_checkpoint(self) -> dict[str, Any] | None:
        """Restore the latest checkpoint; return the algorithm's state (None if there is none)."""
        latest = self.out / "checkpoints" / "latest.json"
        if not latest.is_file():
            self._trim_metrics(-1)
            return None
        pointer = json.loads(latest.read_text(encoding="utf-8"))
        folder = find_checkpoint(self.out / "checkpoints" / pointer["path"])
        if folder is None:
            raise TrainError(f"{self.out / 'checkpoints' / pointer['path']} is missing; the run cannot resume")
        saved = read_checkpoint(folder)
        self.model.load_state_dict(saved["model"])
        restore_rng(saved["rng"])
        self.iteration = saved["iteration"]
        rows = self._trim_metrics(self.iteration)
        if rows:  # `minutes` counts on from where the run stopped: a resumed run's training time adds up
            self.started -= 60 * json.loads(rows[-1])["minutes"]
        log.info("resumed from %s (iteration %d)", pointer["path"], self.iteration)
        return saved["state"]

    # ------------------------------------------------------------------ the end
    def finish(self) -> Path:
        final = self.out / "final"
        self.model.gather()
        if not self.ranks.main:  # rank 0 saves the model every rank holds
            self.close()
            return final
        tmp = final.with_name("final.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with self._writing(tmp):
            self.model.save(tmp)
            sync_folder(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            fsync_path(self.out)
        try:
            if (self.out / "metrics.jsonl").is_file():  # a run of zero iterations only evaluates
                plot_curves(self.out, self.game_class().count_metrics)
        except Exception as err:  # a plot must not lose a finished run
            log.warning("could not draw the learning curves: %s", err)
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        self.close()
        return final

    def close(self) -> None:
        """Close the episode store and the rollout engine and release the directory (also after a failure)."""
        store, rollouts, self.store, self.rollouts = self.store, self.rollouts, None, None
        try:
            if store is not None:
                store.close()
        finally:
            try:
                if rollouts is not None:
                    rollouts.close()
            finally:
                self.lock.release()
                self.ranks.close()

    def engine_gap(self, seqs: Sequence[RoleSequence]) -> dict[str, float]:
        """``engine_logprob_diff`` and ``engine_ratio_outliers`` of this iteration's sequences when a rollout
        engine sampled them (nothing with the hf sampler: it is the trained module itself)."""
        if self.rollouts is None:
            return {}
        with self.timed("engine_gap"):
            return logprob_gap(self.model, seqs)

    def check_episodes(self, episodes: Sequence[Episode], what: str) -> None:
        """Refuse to train on nothing: no episode, episodes of another game, or every episode failed."""
        if not episodes:
            raise TrainError(f"{what}: there are no episodes to learn from")
        other = sorted({e.game for e in episodes} - {self.scenario.game})
        if other:
            raise TrainError(f"{what}: episodes of {', '.join(other)}, but the scenario trains {self.scenario.game}; "
                             "give episode files of that game")
        failed = [e for e in episodes if not e.ok]
        if len(failed) == len(episodes):
            raise TrainFailed(f"{what}: every one of the {len(episodes)} episodes failed (the first: "
                              f"{failed[0].error}); fix the agents and run again")

    def game_class(self) -> type:
        return games.get_spec(self.scenario.game).cls
