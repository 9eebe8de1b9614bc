"""Environment speed: steps per second for every registered game.

Two figures per game:
  * scripted: the game's scripted players in every role (env + player cost);
  * env only: every move is the same short message (what the env itself costs:
    parsing, rules, observations).

If the ``textarena`` package is installed, TextArena's SimpleNegotiation-v0 (a
comparable two-player negotiation with free messages, 10 turns) is stepped the
same way in the same run, beside negotiation-v0 with a 10-move cap, and the
ratio is printed.

    python benchmarks/env_step.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import games


def _steps_per_second(run_episode, seconds: float) -> tuple[float, int]:
    """Run episodes for about ``seconds``; return (steps/s, steps)."""
    steps, seed = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += run_episode(seed)
        seed += 1
    return steps / (time.perf_counter() - start), steps


def ours(game_id: str, mode: str, message: str, **options) -> callable:
    spec = games.get_spec(game_id)
    env = spec.make(**options)

    def run(seed: int) -> int:
        env.reset(seed=seed)
        players = {r: spec.scripted_player(r, env.options, seed + i) for i, r in enumerate(env.roles)}
        n = 0
        for agent in env.agent_iter():
            obs, _, term, trunc, _ = env.last()
            if term or trunc:
                env.step(None)
                continue
            env.step(players[agent].act(obs) if mode == "scripted" else message)
            n += 1
        return n

    return run


def textarena_negotiation(message: str):
    import textarena as ta

    env = ta.make("SimpleNegotiation-v0")

    def run(seed: int) -> int:
        env.reset(num_players=2, seed=seed)
        n, done = 0, False
        while not done:
            env.get_observation()
            done, _ = env.step(message)
            n += 1
        env.close()
        return n

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    message = "Hello, I would like the books and one hat, you can have the rest."

    print(f"{'game':<28}{'players':<12}{'steps/s':>12}{'steps':>10}")
    for spec in games.list_games():
        for mode in ("scripted", "env only"):
            rate, n = _steps_per_second(ours(spec.id, mode, message), args.seconds)
            print(f"{spec.id:<28}{mode:<12}{rate:>12,.0f}{n:>10}")

    try:
        ta_run = textarena_negotiation(message)
    except ImportError:
        print("\ntextarena is not installed: no side-by-side comparison (pip install textarena).")
        return
    ours_rate, _ = _steps_per_second(ours("negotiation-v0", "env only", message, max_messages=10), args.seconds)
    ta_rate, _ = _steps_per_second(ta_run, args.seconds)
    print("\nSide by side, same message every move, 10-move games:")
    print(f"  negotiation-v0 (ours)            {ours_rate:>10,.0f} steps/s")
    print(f"  TextArena SimpleNegotiation-v0   {ta_rate:>10,.0f} steps/s")
    print(f"  ratio ours / TextArena           {ours_rate / ta_rate:>10.2f}x")


if __name__ == "__main__":
    main()
