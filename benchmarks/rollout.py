"""Rollout throughput: does batching across episodes pay what batching the model pays?

One run, one model (the seed model unless --model names another), the same
episodes played twice: at concurrency 64 and at concurrency 1. Printed:

* episodes/s and completion tokens/s at each concurrency, and their ratio;
* beside it, the raw ratio of the model's own batched (64 prompts) vs
  one-at-a-time generation, with prompts of the rollout's mean prompt length
  and the rollout's mean completion length;
* the rollout ratio as a share of the raw ratio (target: at least 80%);
* the share of wall time spent outside model calls (target: at most 10%);
* concurrency 64 again with the shared-prefix prefill off (every row runs its
  whole prompt): the speed-up of running a batch's common prefix once, and the
  share of prompt tokens it saves;
* concurrency 64 again with the turn cache off (every turn runs the whole
  conversation so far): the speed-up of starting each episode's turn from its
  previous turn's KV cache, and the share of prompt tokens it saves.

    python benchmarks/rollout.py [--game negotiation-v0] [--episodes 64] [--model PATH]
"""

from __future__ import annotations

import argparse
import time

import torch

import games
from agents.hf import TransformersPolicy
from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from arena.play.batched import BatchedRollout, make_plans


def rollout(policy: TransformersPolicy, game: str, episodes: int, concurrency: int) -> dict:
    roles = {role: "model" for role in games.make(game).roles}
    plans = make_plans(game, roles, episodes, seed=123)
    before = policy.stats.as_dict()
    runner = BatchedRollout({"model": policy}, concurrency=concurrency, block=max(concurrency, episodes))
    start = time.perf_counter()
    done = list(runner.run(plans))
    wall = time.perf_counter() - start
    after = policy.stats.as_dict()
    tokens = after["completion_tokens"] - before["completion_tokens"]
    prompts = after["prompt_tokens"] - before["prompt_tokens"]
    shared = after["shared_prompt_tokens"] - before["shared_prompt_tokens"]
    cached = after["cached_prompt_tokens"] - before["cached_prompt_tokens"]
    requests = after["requests"] - before["requests"]
    return {
        "episodes": len(done), "wall": wall, "eps_per_s": len(done) / wall, "tokens_per_s": tokens / wall,
        "outside": runner.stats.outside_model_share, "mean_prompt": prompts / max(1, requests),
        "mean_completion": tokens / max(1, requests), "legal": runner.stats.legal_rate,
        "shared": shared / max(1, prompts), "cached": cached / max(1, prompts),
    }


def raw_ratio(policy: TransformersPolicy, prompt_len: int, new_tokens: int, batch: int = 64) -> tuple[float, float]:
    """Tokens/s of one batched call of ``batch`` prompts vs ``batch`` single calls (same lengths)."""
    g = torch.Generator().manual_seed(0)
    vocab = len(policy.tokenizer)
    prompts = [torch.randint(10, vocab, (prompt_len,), generator=g).tolist() for _ in range(batch)]
    config = policy.sampling
    policy.sampling = SamplingConfig(temperature=config.temperature, top_p=config.top_p, max_new_tokens=new_tokens)
    try:
        start = time.perf_counter()
        policy._generate_batch(prompts, list(range(batch)), stop_early=False)
        batched = batch * new_tokens / (time.perf_counter() - start)
        start = time.perf_counter()
        for i, p in enumerate(prompts):
            policy._generate_batch([p], [i], stop_early=False)
        single = batch * new_tokens / (time.perf_counter() - start)
    finally:
        policy.sampling = config
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="negotiation-v0")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--model", default=None, help="a model directory (default: the seed model)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()

    path = args.model or seed_model_dir()
    policy = TransformersPolicy(f"hf:{path}", path, SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens),
                                max_batch_size=64)
    print(f"model {path} · game {args.game} · {args.episodes} episodes · torch threads {torch.get_num_threads()}")
    rollout(policy, args.game, min(args.episodes, 16), 16)  # warm-up: the first calls pay one-off costs
    wide = rollout(policy, args.game, args.episodes, 64)
    narrow = rollout(policy, args.game, args.episodes, 1)
    policy.share_prefix = False
    unshared = rollout(policy, args.game, args.episodes, 64)
    policy.share_prefix = True
    turn_cache, policy.turn_cache = policy.turn_cache, None
    uncached = rollout(policy, args.game, args.episodes, 64)
    policy.turn_cache = turn_cache
    prompt_len, new_tokens = round(wide["mean_prompt"]), max(1, round(wide["mean_completion"]))
    batched, single = raw_ratio(policy, prompt_len, new_tokens, 64)

    print(f"\n{'':28}{'concurrency 64':>16}{'concurrency 1':>16}{'ratio':>10}")
    for key, label in (("eps_per_s", "episodes/s"), ("tokens_per_s", "completion tokens/s")):
        print(f"{label:28}{wide[key]:>16.2f}{narrow[key]:>16.2f}{wide[key] / narrow[key]:>10.2f}")
    print(f"{'wall seconds':28}{wide['wall']:>16.1f}{narrow['wall']:>16.1f}")
    print(f"{'outside model calls':28}{wide['outside']:>16.1%}{narrow['outside']:>16.1%}")
    print(f"{'legal-move rate':28}{wide['legal']:>16.1%}{narrow['legal']:>16.1%}")
    print(f"\nraw generate, prompt {prompt_len} tokens, {new_tokens} new tokens: "
          f"batched(64) {batched:.0f} tok/s vs single {single:.0f} tok/s, ratio {batched / single:.2f}")
    share = (wide["tokens_per_s"] / narrow["tokens_per_s"]) / (batched / single)
    print(f"rollout ratio / raw ratio (tokens/s): {share:.0%}  (target >= 80%)")
    print(f"share of wall time outside model calls at concurrency 64: {wide['outside']:.1%}  (target <= 10%)")
    print(f"\nshared-prefix prefill at concurrency 64: {wide['shared']:.0%} of prompt tokens run once per batch; "
          f"{unshared['wall']:.1f} s without it, {wide['wall']:.1f} s with it: "
          f"{unshared['wall'] / wide['wall']:.2f}x faster "
          f"(legal-move rate {unshared['legal']:.1%} vs {wide['legal']:.1%})")
    print(f"turn cache at concurrency 64: {wide['cached']:.0%} of prompt tokens start from the episode's previous "
          f"turn; {uncached['wall']:.1f} s without it, {wide['wall']:.1f} s with it: "
          f"{uncached['wall'] / wide['wall']:.2f}x faster "
          f"(legal-move rate {uncached['legal']:.1%} vs {wide['legal']:.1%})")


if __name__ == "__main__":
    main()
