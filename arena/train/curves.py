"""Learning curves from OUT/metrics.jsonl and OUT/eval.json, as one PNG."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_curves"]

PANELS = ("loss", "kl", "entropy", "zero_variance_share", "legal_rate")


def plot_curves(out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    rewards = sorted({k for r in rows for k in r if k.startswith(("score/", "reward/"))})
    panels = [p for p in PANELS if any(p in r for r in rows)] + rewards
    evals_path = out / "eval.json"
    evals = json.loads(evals_path.read_text(encoding="utf-8"))["evaluations"] if evals_path.is_file() else []
    eval_keys = sorted({f"{seat}: policy_score" for e in evals for seat in e["seats"]})
    total = len(panels) + len(eval_keys)
    cols = 3
    rows_n = max(1, -(-total // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 2.8 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, panels):
        points = [(r["iteration"], r[name]) for r in rows if isinstance(r.get(name), (int, float))]
        if points:
            ax.plot(*zip(*points), marker=".", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(alpha=0.3)
    for ax, key in zip(list(axes.flat)[len(panels):], eval_keys):
        seat = key.split(":")[0]
        points = [(e["iteration"], e["seats"][seat]["policy_score"]) for e in evals if seat in e["seats"]]
        ax.plot(*zip(*points), marker="o", color="tab:green")
        ax.set_title(f"held-out {key}", fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[total:]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
