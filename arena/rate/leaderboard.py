"""The tournament's outputs: ratings.json, leaderboard.md, plots, and the terminal leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from arena.rate.ratings import bootstrap, cycles, openskill_ratings, win_graph, win_matrix
from arena.rate.tournament import Tally, Tournament
from games.text import printable

__all__ = ["build", "rating_text", "write", "terminal_table"]

MODE_NOTE = {
    "head-to-head": "agents are compared by their seat scores within each episode (win / draw / loss)",
    "same-seat": "agents are ranked by the score each achieves in the same role on the same seed",
}


def _rows(t: Tournament, tally: Tally, outcomes: list, game: str | None = None) -> list[dict[str, Any]]:
    """One row per agent, rated agents by rating first; an agent with no comparison (its every episode
    failed, or it never played) is listed last as unrated (``rating`` None), never at a made-up rating."""
    compared = {a for o in outcomes for a in (o.a, o.b)}
    agents = [a for a in t.agents if a in compared]
    rated = bootstrap(outcomes, agents, samples=t.ratings.bootstrap, seed=t.schedule.seed, level=t.ratings.level) \
        if agents else []
    skill = openskill_ratings(outcomes, agents) if agents else {}
    by_agent = {r.agent: r for r in rated}
    rows = []
    for agent in t.agents:
        mine = [o for o in outcomes if agent in (o.a, o.b)]
        won = sum(o.score if o.a == agent else 1 - o.score for o in mine)
        draws = sum(o.score == 0.5 for o in mine)
        scores = tally.role_scores[agent]
        role_means = {g: {role: float(np.mean(v)) for role, v in roles.items()} for g, roles in scores.items()
                      if game is None or g == game}
        r = by_agent.get(agent)
        rows.append({
            "agent": agent, "spec": t.agents[agent], "rated": r is not None,
            "rating": round(r.rating, 2) if r else None,
            "ci_low": round(r.ci_low, 2) if r else None, "ci_high": round(r.ci_high, 2) if r else None,
            "games": len(mine), "wins": round(won - draws / 2, 2), "draws": draws,
            "losses": round(len(mine) - won - draws / 2, 2),
            "failures": tally.failures[agent], "episodes": tally.episodes[agent],
            "openskill": {k: round(v, 3) for k, v in skill[agent].items()} if r else None,
            "mean_scores": role_means,
        })
    rows.sort(key=lambda row: (not row["rated"], -(row["rating"] or 0.0), row["agent"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["rated"] else None
    return rows


def rating_text(row: dict[str, Any]) -> tuple[str, str, str]:
    """(rank, rating, interval) of a leaderboard row as shown; an unrated agent shows why."""
    if not row["rated"]:
        return "-", "unrated", "(no comparison)"
    return str(row["rank"]), f"{row['rating']:.0f}", f"[{row['ci_low']:.0f}, {row['ci_high']:.0f}]"


def build(t: Tournament, tally: Tally) -> dict[str, Any]:
    """Everything the leaderboard shows, as plain data (what ratings.json holds)."""
    agents = list(t.agents)
    rates, counts = win_matrix(tally.outcomes, agents)
    graph = win_graph(tally.outcomes, agents)
    return {
        "rating_system": {
            "rating": f"Bradley-Terry maximum likelihood (Elo scale, mean 1000), {t.ratings.level:.0%} percentile "
                      f"bootstrap intervals over {t.ratings.bootstrap} resamples",
            "openskill": "OpenSkill Plackett-Luce, outcomes in schedule order",
        },
        "schedule": t.schedule.to_dict(),
        "agents": _rows(t, tally, tally.outcomes),
        "by_game": {g.key: {"mode": g.mode, "note": MODE_NOTE[g.mode],
                            "agents": _rows(t, tally, [o for o in tally.outcomes if o.game == g.key], g.key)}
                    for g in t.games},
        "win_rates": {"agents": agents,
                      "rates": [[None if math.isnan(x) else round(float(x), 4) for x in row] for row in rates],
                      "games": counts.astype(int).tolist()},
        "cycles": cycles(graph),
        "outcomes": len(tally.outcomes),
    }


def _markdown(data: dict[str, Any]) -> str:
    lines = ["# Leaderboard", "", data["rating_system"]["rating"] + ".", ""]
    lines += _md_table(data["agents"])
    for key, game in data["by_game"].items():
        lines += ["", f"## {key}", "", f"Mode: {game['mode']}: {game['note']}.", ""]
        lines += _md_table(game["agents"])
        means = [(row["agent"], role, v) for row in game["agents"] for role, v in
                 row["mean_scores"].get(key, {}).items()]
        if means:
            lines += ["", "Mean score per role: " + "; ".join(f"{a} as {r} {v:.3f}" for a, r, v in means) + "."]
    w = data["win_rates"]
    lines += ["", "## Win rates (row against column)", "", "| | " + " | ".join(w["agents"]) + " |",
              "|---|" + "---|" * len(w["agents"])]
    for name, row in zip(w["agents"], w["rates"]):
        lines.append(f"| {name} | " + " | ".join("-" if x is None else f"{x:.2f}" for x in row) + " |")
    lines += ["", "## Non-transitive cycles", ""]
    lines += [" beats ".join(c + [c[0]]) for c in data["cycles"]] or ["None found."]
    return "\n".join(lines) + "\n"


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| rank | agent | rating | 95% CI | compared | W-D-L | failures | OpenSkill μ ± σ |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rank, rating, interval = rating_text(r)
        skill = f"{r['openskill']['mu']:.1f} ± {r['openskill']['sigma']:.1f}" if r["rated"] else "-"
        out.append(f"| {rank} | {r['agent']} | {rating} | {interval} | {r['games']} | "
                   f"{r['wins']:g}-{r['draws']}-{r['losses']:g} | {r['failures']} | {skill} |")
    return out


def _plots(data: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib  # about half a second to import: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["agents"] if r["rated"]][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ratings = np.array([r["rating"] for r in rows])
    err = np.array([[r["rating"] - r["ci_low"] for r in rows], [r["ci_high"] - r["rating"] for r in rows]])
    ax.errorbar(ratings, y, xerr=err, fmt="o", capsize=4)
    ax.set_yticks(y, [r["agent"] for r in rows])
    ax.set_xlabel("Bradley-Terry rating (Elo scale) with 95% interval")
    ax.set_title("Ratings")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    ratings_png = out / "ratings.png"
    fig.savefig(ratings_png, dpi=120)
    plt.close(fig)

    w = data["win_rates"]
    rates = np.array([[np.nan if x is None else x for x in row] for row in w["rates"]], dtype=float)
    n = len(w["agents"])
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 1.0 * n + 1.5))
    image = ax.imshow(rates, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(n), w["agents"], rotation=30, ha="right")
    ax.set_yticks(range(n), w["agents"])
    for i in range(n):
        for j in range(n):
            if not np.isnan(rates[i, j]):
                ax.text(j, i, f"{rates[i, j]:.2f}\nn={w['games'][i][j]}", ha="center", va="center", fontsize=8)
    ax.set_title("Win rate of row against column")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    winrate_png = out / "winrate.png"
    fig.savefig(winrate_png, dpi=120)
    plt.close(fig)
    return [ratings_png, winrate_png]


def write(data: dict[str, Any], out: str | Path) -> list[Path]:
    """ratings.json, leaderboard.md, ratings.png and winrate.png in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ratings.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out / "leaderboard.md").write_text(_markdown(data), encoding="utf-8")
    return [out / "ratings.json", out / "leaderboard.md", *_plots(data, out)]


def terminal_table(data: dict[str, Any], title: str = "Leaderboard") -> Table:
    table = Table(title=title)
    for column, justify in (("rank", "right"), ("agent", "left"), ("rating", "right"), ("95% CI", "center"),
                            ("compared", "right"), ("W-D-L", "center"), ("failures", "right"),
                            ("OpenSkill μ±σ", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in data["agents"]:
        rank, rating, interval = rating_text(r)
        skill = f"{r['openskill']['mu']:.1f}±{r['openskill']['sigma']:.1f}" if r["rated"] else "-"
        table.add_row(rank, Text(printable(r["agent"])), rating, interval, str(r["games"]),
                      f"{r['wins']:g}-{r['draws']}-{r['losses']:g}", str(r["failures"]), skill)
    return table
