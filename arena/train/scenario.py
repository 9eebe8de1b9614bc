"""Training scenarios: which model, which game and roles, which algorithm, how to evaluate.

    [model]
    init = "seed"                 # the starting model: "seed" or "hf:PATH"
    lora = false                  # or { r = 16, alpha = 32 }

    [game]
    id = "refine-v0"
    options = { protocol = "self-correct" }

    [roles]                       # "policy" marks the roles the trained model plays;
    solver = "policy"             # other roles name their agents (scripted, random, hf:..., ...)

    [algorithm]
    name = "score"                # filtered-bc | pg | score; the other keys are the algorithm's config

    [data]                        # filtered-bc only: learn from stored episodes instead of playing
    episodes = []                 # paths of episodes.jsonl files

    [sampling]
    temperature = 1.0
    max_new_tokens = 128

    [eval]
    episodes = 128                # held-out episodes per evaluation seat
    seed = 1000000                # held-out seeds: disjoint from training seeds
    every = 10                    # evaluate every N iterations (0: before and after only)
    opponents = "scripted"        # who plays the other roles when the trained roles are evaluated

    [run]
    seed = 0
    out = "runs/train"
    checkpoint_every = 10
    concurrency = 64
    wandb = "offline"             # offline | online | disabled
    threads = 0                   # torch CPU threads (0: default)
    fsdp = false                  # with several ranks: shard weights, gradients and optimiser state (FSDP)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import games
from agents.registry import backend_options
from agents.sampling import SamplingConfig
from arena.config import ScenarioError, Section, load_plugins, run_table, set_value
from arena.train.model import LoraSettings
from games.options import Config, OptionError, option, suggest

__all__ = ["TrainScenario", "TrainWarmupSection", "parse_train_scenario", "POLICY"]

POLICY = "policy"


@dataclass(frozen=True)
class TrainEvalSection(Section):
    episodes: int = option(64, "held-out episodes per evaluation seat", min=1)
    seed: int = option(1_000_000, "seed of the held-out episodes (keep it apart from the run seed)", min=0)
    every: int = option(10, "evaluate every N iterations or rounds (0: only before and after)", min=0)
    opponents: str = option("scripted", "agent spec for the untrained roles during evaluation")
    temperature: float = option(-1.0, "sampling temperature in evaluation (-1: as [sampling])", min=-1.0)


@dataclass(frozen=True)
class TrainRunSection(Section):
    seed: int = option(0, "run seed: rollouts, shuffling and initialisation", min=0)
    out: str = option("", "output directory (default: runs/<scenario name>)")
    checkpoint_every: int = option(10, "save a resumable checkpoint every N iterations", min=1)
    concurrency: int = option(64, "episodes played at once", min=1)
    wandb: str = option("offline", "Weights & Biases logging", choices=("offline", "online", "disabled"))
    threads: int = option(0, "torch CPU threads (0: torch's default)", min=0)
    store_episodes: bool = option(False, "keep every training episode in OUT/episodes.jsonl")
    fsdp: bool = option(False, "with several ranks (--nproc, torchrun): shard the weights, gradients and optimiser "
                        "state over them (FSDP) instead of a whole copy on every rank; rollouts play on the whole "
                        "weights gathered before each round of play (one process: no effect)")
    precision: str = option("fp32", "gradient steps in fp32, or bf16: bfloat16 autocast for the forward and backward "
                            "passes, the weights and optimiser state stay fp32 (faster on CPUs with AVX512-BF16 or "
                            "AMX and on GPUs, 10-15x slower on CPUs without: the run warns; rollouts and evaluation "
                            "stay fp32)", choices=("fp32", "bf16"))


@dataclass(frozen=True)
class TrainRolloutSection(Section):
    engine: str = option("hf", "what samples the trained roles' moves: hf (the trained module itself), vllm (a vLLM "
                         "engine in this process that receives the new weights after every update) or vllm-server "
                         "(engines started with `arena vllm-serve`, weights sent over torch.distributed)",
                         choices=("hf", "vllm", "vllm-server"))
    vllm: dict[str, Any] = option({}, "the engine's keys: for vllm, a vllm: agent's [backend] (e.g. "
                                  "{ gpu_memory_utilization = 0.3, dtype = \"float32\" }); for vllm-server, "
                                  "{ timeout, sync_timeout }")
    servers: list[str] = option([], "vllm-server only: the URLs of the engines (e.g. [\"http://127.0.0.1:8100\"]); "
                                "a rollout's turns are split between them")

    def validate(self) -> None:
        if self.engine == "vllm-server":
            if not self.servers:
                raise OptionError("engine 'vllm-server' needs servers, the URLs of `arena vllm-serve` engines, "
                                  "e.g. servers = [\"http://127.0.0.1:8100\"]")
            bad = [u for u in self.servers if not isinstance(u, str) or not u.startswith(("http://", "https://"))]
            if bad:
                raise OptionError(f"servers must be URLs such as \"http://127.0.0.1:8100\"; got {bad[0]!r}")
            backend_options("vllm-server:" + ",".join(self.servers), self.vllm)
        elif self.servers:
            raise OptionError(f"servers is for engine 'vllm-server'; engine is {self.engine!r}")
        else:
            backend_options("vllm:policy", self.vllm)  # names, types and ranges, before anything starts


@dataclass(frozen=True)
class TrainWarmupSection(Section):
    when: str = option("never", "clone the game's scripted players before the algorithm runs: never, always, or "
                       "auto (when, over probe_episodes held-out episodes, the start model's moves in the trained "
                       "roles are legal less than min_legal_rate of the time, or it scores less than "
                       "min_score_share of what the scripted player scores in its seat)",
                       choices=("never", "always", "auto"))
    episodes: int = option(512, "scripted episodes to clone (the trained roles played by the scripted player, the "
                           "others as [roles] says)", min=1)
    epochs: int = option(3, "passes over the scripted episodes", min=1)
    filter: str = option("all", "which scripted sides to clone: all, or a filtered-bc rule",
                         choices=("all", "above-mean", "non-zero", "top-k"))
    learning_rate: float = option(1e-3, "AdamW learning rate of the cloning", min=0.0)
    batch_tokens: int = option(8192, "padded tokens per optimiser step of the cloning", min=256)
    seed: int = option(7, "seed of the scripted episodes", min=0)
    min_legal_rate: float = option(0.9, "auto: warm up when the start model's legal-move rate is below this",
                                   min=0.0, max=1.0)
    min_score_share: float = option(0.5, "auto: warm up when the start model scores below this share of the "
                                         "scripted player's score (when that is positive)", min=0.0)
    probe_episodes: int = option(32, "auto: held-out episodes the start model (and the scripted player) play first",
                                 min=1)


@dataclass(frozen=True)
class TrainScenario:
    path: Path
    init: str
    lora: LoraSettings | None
    game: str
    options: dict[str, Any]
    roles: dict[str, str]  # role -> POLICY or an agent spec
    algorithm: str
    algorithm_config: dict[str, Any]
    data: tuple[str, ...]
    sampling: SamplingConfig
    eval: TrainEvalSection
    run: TrainRunSection
    plugins: tuple[str, ...]
    rollout: TrainRolloutSection = TrainRolloutSection()
    warmup: TrainWarmupSection = TrainWarmupSection()

    @property
    def trained_roles(self) -> tuple[str, ...]:
        return tuple(r for r, spec in self.roles.items() if spec == POLICY)

    @property
    def out(self) -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / self.path.stem

    def info(self) -> dict[str, Any]:
        """What a resumed run must share with the stored one."""
        return {"init": self.init, "lora": None if self.lora is None else vars(self.lora), "game": self.game,
                "options": self.options, "roles": self.roles, "algorithm": self.algorithm,
                "algorithm_config": self.algorithm_config, "data": list(self.data),
                "sampling": self.sampling.to_dict(), "eval": self.eval.to_dict(), "seed": self.run.seed,
                # only when not the default, so runs started before the option existed still resume
                **({"precision": self.run.precision} if self.run.precision != "fp32" else {}),
                **({"rollout": self.rollout.to_dict()} if self.rollout.engine != "hf" else {}),
                **({"warmup": self.warmup.to_dict()} if self.warmup.when != "never" else {})}


def _lora(value: Any, where: str) -> LoraSettings | None:
    if value in (None, False):
        return None
    if value is True:
        return LoraSettings()
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: lora must be true, false or a table such as {{ r = 16, alpha = 32 }}")
    known = ["r", "alpha", "dropout", "target_modules"]
    for key in value:
        if key not in known:
            raise ScenarioError(f"{where}: unknown lora key {key!r}; expected {', '.join(known)}.{suggest(key, known)}")
    values = dict(value)
    if "target_modules" in values:
        values["target_modules"] = tuple(values["target_modules"])
    return LoraSettings(**values)


def parse_train_scenario(data: dict[str, Any], path: Path, configs: Mapping[str, type[Config]],
                         out: str | None = None, overrides: Mapping[str, Any] | None = None) -> TrainScenario:
    """Check a training scenario given as data (``path`` names it in errors and anchors relative plugin files);
    ``overrides`` (dotted key -> value, e.g. ``{"game.options.objective": "coop"}``) change it first;
    ``configs`` are the algorithms' config classes by name (:data:`arena.train.algorithms.ALGORITHMS`)."""
    data = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        set_value(data, dotted, value)
    where = str(path)
    known = ["plugins", "model", "game", "roles", "algorithm", "data", "sampling", "eval", "run", "rollout", "warmup"]
    for key in data:
        if key not in known:
            raise ScenarioError(f"{where}: unknown section or key {key!r}; expected {', '.join(known)}."
                                f"{suggest(key, known)}")
        if key != "plugins" and not isinstance(data[key], Mapping):
            raise ScenarioError(f"{where}: [{key}] must be a table of keys (e.g. {key}.KEY = VALUE with --set); "
                                f"got {data[key]!r}")
    plugins = load_plugins(data, where, path.parent)
    model = dict(data.get("model") or {})
    for key in model:
        if key not in ("init", "lora"):
            hint = suggest(key, ["init", "lora"])
            raise ScenarioError(f"{where} [model]: unknown key {key!r}; expected init, lora.{hint}")
    init = model.get("init", "seed")
    if init != "seed" and not str(init).startswith("hf:"):
        raise ScenarioError(f"{where} [model]: init must be \"seed\" or \"hf:PATH\" (a model that can be trained); "
                            f"got {init!r}")
    game = dict(data.get("game") or {})
    for key in game:
        if key not in ("id", "options"):
            raise ScenarioError(f"{where} [game]: unknown key {key!r}; expected id, options."
                                f"{suggest(key, ['id', 'options'])}")
    if "id" not in game:
        raise ScenarioError(f"{where} [game]: key 'id' is required")
    try:
        env = games.make(game["id"], **dict(game.get("options") or {}))
    except (OptionError, games.UnknownGameError) as err:
        raise ScenarioError(f"{where} [game]: {err}") from None
    roles = dict(data.get("roles") or {})
    for role in roles:
        if role not in env.roles:
            raise ScenarioError(f"{where} [roles]: {role!r} is not a role of {env.game_id}; roles are "
                                f"{', '.join(env.roles)}.{suggest(role, list(env.roles))}")
    missing = [r for r in env.roles if r not in roles]
    if missing:
        raise ScenarioError(f"{where} [roles]: give every role an agent or \"policy\"; missing {missing}")
    if POLICY not in roles.values():
        raise ScenarioError(f"{where} [roles]: no role is played by \"policy\" (the trained model)")
    algorithm = dict(data.get("algorithm") or {})
    name = algorithm.pop("name", None)
    if name not in configs:
        raise ScenarioError(f"{where} [algorithm]: name must be one of {', '.join(configs)}; got {name!r}."
                            f"{suggest(str(name), list(configs))}")
    try:
        configs[name].from_mapping(algorithm, source=f"{where} [algorithm]")
        sampling = SamplingConfig.from_mapping(data.get("sampling"), where=f"{where} [sampling]")
        evaluation = TrainEvalSection.from_mapping(data.get("eval"), source=f"{where} [eval]")
        run = TrainRunSection.from_mapping(run_table(data, {"out": out}), source=f"{where} [run]")
        rollout = TrainRolloutSection.from_mapping(data.get("rollout"), source=f"{where} [rollout]")
        warmup = TrainWarmupSection.from_mapping(data.get("warmup"), source=f"{where} [warmup]")
    except OptionError as err:
        raise ScenarioError(str(err)) from None
    data_section = dict(data.get("data") or {})
    for key in data_section:
        if key != "episodes":
            raise ScenarioError(f"{where} [data]: unknown key {key!r}; [data] takes: episodes."
                                f"{suggest(key, ['episodes'])}")
    stored = data_section.get("episodes", ())
    if not isinstance(stored, (list, tuple)) or not all(isinstance(f, str) for f in stored):
        raise ScenarioError(f"{where} [data]: episodes must be a list of episode files; got {stored!r}")
    stored = tuple(stored)
    if stored and name != "filtered-bc":
        raise ScenarioError(f"{where} [data]: learning from stored episodes needs name = \"filtered-bc\" "
                            "(policy gradient learns on-policy from live play)")
    for file in stored:
        if not Path(file).exists():
            raise ScenarioError(f"{where} [data]: episode file not found: {file}")
    if warmup.when != "never" and games.get_spec(env.game_id).cls.scripted_player is None:
        raise ScenarioError(f"{where} [warmup]: {env.game_id} has no scripted player to clone; give the game one "
                            "(docs/new-game.md, 'A scripted player') or set when = \"never\"")
    if warmup.when != "never" and stored:
        raise ScenarioError(f"{where} [warmup]: a warm-up clones scripted play before the algorithm; [data] "
                            "episodes already give filtered-bc what to clone (drop one of the two)")
    return TrainScenario(path, init, _lora(model.get("lora"), f"{where} [model]"), env.game_id,
                         env.options.to_dict(), roles, name, algorithm, stored, sampling, evaluation, run, plugins,
                         rollout, warmup)
