"""Learning curves from OUT/metrics.jsonl and OUT/eval.json, as one PNG."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

__all__ = ["plot_curves"]

# legal_rate: the name all_legal_rate had in metrics.jsonl files written before 2026-12-03
PANELS = ("loss", "kl", "entropy", "zero_variance_share", "policy_legal_rate", "all_legal_rate", "legal_rate")


def plot_curves(out: str | Path, counts: Collection[str] = ()) -> Path:
    """Draw OUT/curves.png; ``counts`` names the game's metrics that are counts (never drawn as rates)."""
    import matplotlib  # about half a second to import: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    rewards = sorted({k for r in rows for k in r if k.startswith(("score/", "reward/"))})
    panels = [p for p in PANELS if any(p in r for r in rows)] + rewards
    evals_path = out / "eval.json"
    evals = json.loads(evals_path.read_text(encoding="utf-8"))["evaluations"] if evals_path.is_file() else []
    seats = sorted({seat for e in evals for seat in e["seats"]})
    eval_keys = [f"{seat}: {kind}" for seat in seats for kind in ("policy_score", "rates")
                 if kind == "policy_score" or _rates(evals, seat, counts)]
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
        seat, kind = key.split(": ")
        if kind == "policy_score":
            points = [(e["iteration"], e["seats"][seat]["policy_score"]) for e in evals if seat in e["seats"]]
            ax.plot(*zip(*points), marker="o", color="tab:green")
        else:
            for name, points in _rates(evals, seat, counts).items():
                ax.plot(*zip(*points), marker="o", linewidth=1, label=name)
            ax.legend(fontsize=6, loc="best")
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


def _rates(evals: list[dict], seat: str, counts: Collection[str] = ()) -> dict[str, list[tuple[int, float]]]:
    """The game's held-out metrics for a seat that are rates or differences of rates (every value in [-1, 1],
    and not one of the game's ``counts``) and that change."""
    series: dict[str, list[tuple[int, float]]] = {}
    for e in evals:
        for name, value in (e["seats"].get(seat) or {}).get("metrics", {}).items():
            if isinstance(value, (int, float)) and name not in counts:
                series.setdefault(name, []).append((e["iteration"], float(value)))
    return {name: points for name, points in sorted(series.items())
            if all(-1.0 <= v <= 1.0 for _, v in points) and len({v for _, v in points}) > 1}
