"""Agent specs: the strings that name a policy (``scripted``, ``random``, ``human``, ...).

A spec is ``NAME`` or ``NAME:ARGUMENT`` (for example ``hf:/models/my-llm``).
:func:`load` turns a spec into a :class:`~agents.base.Policy`; other packages
add kinds with :func:`register_policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.base import Policy, PolicyError
from agents.human import HumanPolicy
from agents.rule_based import RandomPolicy, ScriptedPolicy
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from games.options import Config, OptionError, option, suggest

__all__ = ["MODEL_KINDS", "EndpointOptions", "LoadContext", "TransformersOptions", "VLLMOptions", "VLLMServerOptions",
           "backend_options", "load", "register_policy", "policy_kinds", "parse_spec"]

PolicyFactory = Callable[[str, str, "LoadContext"], Policy]
_FACTORIES: dict[str, tuple[PolicyFactory, str, bool]] = {}  # name -> (factory, help, takes an argument)
_OPTIONS: dict[str, type[Config]] = {}  # name -> the [backend] keys its factory takes

#: The agent kinds that take a scenario's ``[backend]`` table (the model backends).
MODEL_KINDS = ("hf", "seed", "vllm", "vllm-server", "openai")


@dataclass
class LoadContext:
    """What a policy factory gets besides its spec: sampling settings and backend options."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransformersOptions(Config):
    """``[backend]`` keys of ``seed`` and ``hf:PATH`` agents."""

    _noun: ClassVar[str] = "[backend] key"
    dtype: str = option("float32", "the weights' dtype", choices=("float32", "bfloat16", "float16"))
    device: str = option("", "cpu, cuda, cuda:N or mps (empty: cuda when available, else cpu)")
    max_batch_size: int = option(64, "prompts per generate call", min=1)
    share_prefix: bool = option(True, "run a batch's common prompt prefix once")
    episode_cache_mb: float = option(256.0, "memory for each episode's KV cache between turns (0: off)", min=0.0)


@dataclass(frozen=True)
class EndpointOptions(Config):
    """``[backend]`` keys of ``openai:MODEL@URL`` agents."""

    _noun: ClassVar[str] = "[backend] key"
    concurrency: int = option(8, "requests in flight at once", min=1)
    timeout: float = option(60.0, "seconds a request may take in all (connect, send, every byte of the answer)",
                            min=0.001)
    retries: int = option(3, "tries after the first on a timeout, a lost connection, 429 or 5xx", min=0)
    backoff: float = option(0.5, "seconds before the first retry (doubling, with jitter)", min=0.0)
    api_key_env: str = option("OPENAI_API_KEY", "the environment variable holding the API key")
    logprobs: bool = option(False, "ask the server for log-probabilities")
    send_seed: bool = option(True, "send each turn's seed (servers that honour it sample reproducibly)")


@dataclass(frozen=True)
class VLLMOptions(Config):
    """``[backend]`` keys of ``vllm:PATH`` agents (vLLM's engine arguments of the same names)."""

    _noun: ClassVar[str] = "[backend] key"
    dtype: str = option("auto", "the weights' dtype (auto: the model's; float32 on a CPU for exact comparisons)",
                        choices=("auto", "float32", "bfloat16", "float16"))
    gpu_memory_utilization: float = option(0.0, "share of the GPU's memory (on a CPU build: of the machine's) "
                                           "the engine may take; 0: 0.9 on a GPU, 0.3 on a CPU", min=0.0, max=1.0)
    kv_cache_gb: float = option(0.0, "CPU build only: whole GiB of memory for the KV cache (0: the variable "
                                "VLLM_CPU_KVCACHE_SPACE if set, else 1)", min=0.0)
    max_model_len: int = option(0, "longest prompt plus completion in tokens (0: the model's context)", min=0)
    max_num_seqs: int = option(256, "sequences the engine runs at once", min=1)
    enforce_eager: bool = option(True, "no CUDA graphs or torch.compile: fast start; false on a GPU for speed")
    enable_prefix_caching: bool = option(True, "reuse the KV cache of shared prompt prefixes")
    tensor_parallel_size: int = option(1, "GPUs one model is split over", min=1)
    enable_sleep_mode: bool = option(False, "GPU only: in training with [rollout] engine = \"vllm\", the engine "
                                     "frees its GPU memory while the trainer updates")

    def validate(self) -> None:
        if self.kv_cache_gb != int(self.kv_cache_gb):
            raise OptionError(f"[backend] key 'kv_cache_gb' must be a whole number of GiB (vLLM's CPU build reads "
                              f"an integer); got {self.kv_cache_gb:g}")


@dataclass(frozen=True)
class VLLMServerOptions(Config):
    """``[backend]`` keys of ``vllm-server:URL`` agents (engines started with ``arena vllm-serve``)."""

    _noun: ClassVar[str] = "[backend] key"
    timeout: float = option(600.0, "seconds one batch of turns may take on a server", min=0.001)
    sync_timeout: float = option(300.0, "seconds forming the weight group or one weight push may take", min=0.001)
    sync_backend: str = option("auto", "how a trainer's weights travel: nccl (GPU to GPU, each process on its own "
                               "GPU), gloo (through CPU memory: CPUs, or a trainer and an engine sharing one GPU); "
                               "auto: nccl when the trainer's weights are on a GPU", choices=("auto", "gloo", "nccl"))


def register_policy(name: str, factory: PolicyFactory, help: str, takes_argument: bool = False,
                    options: type[Config] | None = None) -> None:
    """Make ``name`` (or ``name:ARG`` when ``takes_argument``) a valid agent spec.

    ``factory(spec, arg, context)`` builds the policy; ``context`` is a :class:`LoadContext`. ``options``, a
    :class:`~games.options.Config`, declares the ``[backend]`` keys the factory takes: they are checked
    (names, types, ranges) by :func:`backend_options` before anything is loaded.
    """
    _FACTORIES[name] = (factory, help, takes_argument)
    if options is not None:
        _OPTIONS[name] = options


def backend_options(spec: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (a scenario's ``[backend]`` table) checked for the backend ``spec`` names, with defaults
    filled in; an :class:`~games.options.OptionError` names a wrong key or value. Backends that declare no
    keys get the table as it is; agents that are not models (``scripted``, ...) get nothing."""
    name, _ = parse_spec(spec)
    if name not in MODEL_KINDS:
        return {}
    cls = _OPTIONS.get(name)
    return cls.from_mapping(options, source=f"[backend] of {spec}").to_dict() if cls else dict(options)


def policy_kinds() -> dict[str, str]:
    """Each spec form (``scripted``, ``hf:PATH``, ...) with its one-line help."""
    return {name + (":..." if arg else ""): help for name, (_, help, arg) in sorted(_FACTORIES.items())}


def parse_spec(spec: str) -> tuple[str, str]:
    """``"hf:/path"`` -> ``("hf", "/path")``; ``"scripted"`` -> ``("scripted", "")``."""
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"an agent spec must be a non-empty string such as 'scripted'; got {spec!r}")
    name, _, arg = spec.strip().partition(":")
    return name, arg


def load(spec: str, sampling: SamplingConfig | None = None, **options: Any) -> Policy:
    """Build the policy an agent spec names. ``options`` go to model backends (device, dtype, ...)."""
    name, arg = parse_spec(spec)
    if name not in _FACTORIES:
        known = sorted(_FACTORIES)
        raise PolicyError(
            f"unknown agent {spec!r}; agents are {', '.join(policy_kinds())}.{suggest(name, known)}"
        )
    factory, _, takes_argument = _FACTORIES[name]
    if takes_argument and not arg:
        raise PolicyError(f"agent {spec!r}: '{name}' needs an argument, as in {name}:...")
    if not takes_argument and arg:
        raise PolicyError(f"agent {spec!r}: '{name}' takes no argument")
    return factory(spec.strip(), arg, LoadContext(sampling or SamplingConfig(), dict(options)))


def _rule_based(cls: type[Policy]) -> PolicyFactory:
    return lambda spec, arg, context: cls(spec)


def _transformers_options(spec: str, context: LoadContext) -> dict[str, Any]:
    options = backend_options(spec, context.options)
    return {**options, "device": options["device"] or None}


def _transformers(spec: str, arg: str, context: LoadContext) -> Policy:
    options = _transformers_options(spec, context)  # checked before the heavy import
    from agents.hf import TransformersPolicy  # torch and transformers: only when a model is loaded

    return TransformersPolicy(spec, arg, context.sampling, **options)


def _seed(spec: str, arg: str, context: LoadContext) -> Policy:
    options = _transformers_options(spec, context)
    from agents.hf import TransformersPolicy  # torch and transformers: only when a model is loaded

    return TransformersPolicy(spec, seed_model_dir(), context.sampling, **options)


def _endpoint(spec: str, arg: str, context: LoadContext) -> Policy:
    from agents.endpoint import EndpointPolicy, parse_endpoint  # httpx and asyncio: only for endpoints

    model, url = parse_endpoint(arg)
    return EndpointPolicy(spec, model, url, context.sampling, **backend_options(spec, context.options))


def _vllm(spec: str, arg: str, context: LoadContext) -> Policy:
    options = backend_options(spec, context.options)  # checked before the heavy import
    from agents.vllm_backend import VLLMPolicy  # the optional vllm extra

    return VLLMPolicy(spec, arg, context.sampling, **options)


def _vllm_server(spec: str, arg: str, context: LoadContext) -> Policy:
    options = backend_options(spec, context.options)
    from agents.vllm_server import VLLMServerPolicy, parse_servers

    return VLLMServerPolicy(spec, parse_servers(arg), context.sampling, **options)


def _register_builtins() -> None:
    register_policy("scripted", _rule_based(ScriptedPolicy), "the game's rule-based player")
    register_policy("random", _rule_based(RandomPolicy), "random legal-looking or garbage moves")
    register_policy("human", _rule_based(HumanPolicy), "a person at the terminal")
    register_policy("seed", _seed, "the shipped seed model (a small chat model trained on the games)",
                    options=TransformersOptions)
    register_policy("hf", _transformers, "a local transformers chat model directory (or hub id)", True,
                    options=TransformersOptions)
    register_policy("openai", _endpoint, "an OpenAI-compatible chat endpoint: openai:MODEL@BASE_URL", True,
                    options=EndpointOptions)
    register_policy("vllm", _vllm, "a vLLM engine (extra 'vllm' on a GPU, 'vllm-cpu' on a CPU): vllm:PATH", True,
                    options=VLLMOptions)
    register_policy("vllm-server", _vllm_server, "vLLM engines in their own processes (arena vllm-serve): "
                    "vllm-server:http://HOST:PORT[,URL...]", True, options=VLLMServerOptions)


_register_builtins()
