"""Policy-gradient update throughput: ours vs TRL's GRPOTrainer, same model, same batch, one run.

Both sides take the same batch of prompt + completion sequences with one
advantage per sequence and perform one update: forward, the GRPO-style loss
on the completion tokens, backward, optimiser step. Rollout generation is
left out on both sides (that is benchmarks/rollout.py's job), and so is the
KL reference (beta = 0), so the figure is the update itself. Printed: trained
(completion) tokens per second for each, and the ratio, with a plain
transformers loop beside them as a control. TRL runs like for like: float32
and no gradient checkpointing (its defaults, bf16 and checkpointing, make it
about 10x slower on a CPU without bf16 units).

    python benchmarks/train_throughput.py [--batch 32] [--prompt 128] [--completion 64] [--steps 5]

TRL is optional: without it, only our figure is printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from agents.sampling import SamplingConfig
from agents.seed import seed_model_dir
from arena.train.data import RoleSequence
from arena.train.model import TrainableModel, pg_loss
from arena.train.optim import gradient_step


def batch(vocab: int, n: int, prompt: int, completion: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (n, prompt + completion), generator=g)
    adv = torch.randn(n, generator=g)
    return ids, adv


def ours(path, ids, adv, prompt: int, steps: int, lr: float) -> float:
    model = TrainableModel(path, "policy", SamplingConfig(), reference=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    seqs = [RoleSequence(f"e{i}", "g", "r", i, ids[i].tolist(), [(prompt, ids.shape[1])], [0.0], [0.0], 0.0, True,
                         advantages=[float(adv[i])]) for i in range(ids.shape[0])]
    trained = ids.shape[0] * (ids.shape[1] - prompt)
    gradient_step(model, optimizer, seqs, lambda s, b: pg_loss(s, b, 0.0), 1 << 30, 1.0)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        gradient_step(model, optimizer, seqs, lambda s, b: pg_loss(s, b, 0.0), 1 << 30, 1.0)
    return steps * trained / (time.perf_counter() - start)


def plain(path, ids, adv, prompt: int, steps: int, lr: float) -> float:
    """A control: the same update written directly against transformers (no framework on top)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    trained = ids.shape[0] * (ids.shape[1] - prompt)

    def update() -> None:
        optimizer.zero_grad()
        logits = model(input_ids=ids).logits[:, prompt - 1:-1].float()
        logps = torch.log_softmax(logits, -1).gather(-1, ids[:, prompt:, None]).squeeze(-1)
        loss = -(adv[:, None] * logps).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    update()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        update()
    return steps * trained / (time.perf_counter() - start)


def trl(path, ids, adv, prompt: int, steps: int, lr: float) -> float | None:
    try:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        return None
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    n = ids.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(output_dir=tmp, beta=0.0, learning_rate=lr, per_device_train_batch_size=n,
                            num_generations=n, loss_type="grpo", report_to=[],
                            max_completion_length=ids.shape[1] - prompt,
                            use_cpu=True, logging_strategy="no", save_strategy="no",
                            # like for like with ours: float32 (TRL defaults to bf16, slow on CPUs without
                            # bf16 units) and no activation recomputation (TRL defaults to checkpointing)
                            bf16=False, gradient_checkpointing=False)
        data = Dataset.from_list([{"prompt": "x"} for _ in range(n)])
        trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **k: [0.0] * len(completions),
                              args=config, train_dataset=data, processing_class=tokenizer)
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call the loss directly
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        inputs = {
            "prompt_ids": ids[:, :prompt], "prompt_mask": torch.ones(n, prompt, dtype=torch.long),
            "completion_ids": ids[:, prompt:], "completion_mask": torch.ones(n, ids.shape[1] - prompt,
                                                                             dtype=torch.long),
            "advantages": adv, "num_items_in_batch": torch.tensor(n * (ids.shape[1] - prompt)),
        }
        trained = n * (ids.shape[1] - prompt)

        def update() -> None:
            optimizer.zero_grad()
            loss = trainer._compute_loss(model, inputs)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

        model.train()
        update()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            update()
        return steps * trained / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--completion", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--model", default=None, help="a model directory (default: the seed model)")
    args = parser.parse_args()
    path = args.model or seed_model_dir()
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(path))
    ids, adv = batch(vocab, args.batch, args.prompt, args.completion)
    print(f"model {path} · batch {args.batch} x ({args.prompt} prompt + {args.completion} completion) tokens · "
          f"torch threads {torch.get_num_threads()}")
    mine = ours(path, ids, adv, args.prompt, args.steps, 1e-5)
    print(f"ours (arena.train)        {mine:>10,.0f} trained tokens/s")
    control = plain(path, ids, adv, args.prompt, args.steps, 1e-5)
    print(f"plain transformers loop   {control:>10,.0f} trained tokens/s   (control: no framework)")
    theirs = trl(path, ids, adv, args.prompt, args.steps, 1e-5)
    if theirs is None:
        print("TRL is not installed: no side-by-side figure (pip install trl)")
        return
    print(f"TRL GRPOTrainer           {theirs:>10,.0f} trained tokens/s")
    print(f"ratio ours / TRL          {mine / theirs:>10.2f}x")


if __name__ == "__main__":
    main()
