"""Summaries of finished runs: before/after numbers and learning curves from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spiral_games.errors import ConfigError

CURVES = (  # (metric, panel title); eval curves are drawn per opponent
    ("rollout/invalid_move_rate", "self-play invalid-move rate"),
    ("rollout/response_length", "response length (tokens)"),
    ("rollout/lenient_rate", "moves read without \\boxed{} (lenient)"),
)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of `run_dir/metrics.jsonl`, one per logged step (step 0: the baseline eval)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: point at a run directory of launch/selfplay.py.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if r.get(key) is not None]


def _edge_mean(points: list[tuple[int, float]], last: bool, n: int = 5) -> float | None:
    values = [v for _, v in (points[-n:] if last else points[:n])]
    return sum(values) / len(values) if values else None


def summarize(run_dir: Path) -> dict[str, Any]:
    """Eval results at the first and last evaluated step, and self-play rates over the first and
    last five steps, for every game and opponent in the run."""
    rows = read_metrics(run_dir)
    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    evals: dict[str, dict[str, float]] = {}
    for key in sorted({k for r in rows for k in r if k.startswith("eval/") and "seat" not in k}):
        if key.endswith("/seconds"):
            continue
        points = _series(rows, key)
        if points:
            evals[key] = {
                "first_step": points[0][0],
                "first": points[0][1],
                "last_step": points[-1][0],
                "last": points[-1][1],
            }
    selfplay = {}
    for key, _ in CURVES:
        points = _series(rows, key)
        if points:
            selfplay[key] = {
                "first5": _edge_mean(points, last=False),
                "last5": _edge_mean(points, last=True),
            }
    steps = [r for r in rows if r["step"] >= 1]
    seconds = sum(r.get("time/step", 0.0) for r in steps) + sum(
        r.get("eval/seconds", 0.0) for r in rows if r["step"] == 0
    )
    return {
        "run": run_dir.name,
        "steps": len(steps),
        "rae": config.get("train", {}).get("rae"),
        "train_seconds": seconds,
        "eval": evals,
        "selfplay": selfplay,
    }


def plot_runs(runs: dict[str, Path], out: Path) -> Path:
    """One PNG of learning curves: eval win rate per opponent, then the self-play CURVES."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = {label: read_metrics(path) for label, path in runs.items()}
    win_keys = sorted(
        {
            k
            for rows in loaded.values()
            for r in rows
            for k in r
            if k.startswith("eval/") and k.endswith("/win_rate") and "seat" not in k
        }
    )
    panels = [
        (k, k.removeprefix("eval/").replace("/win_rate", ": eval win rate")) for k in win_keys
    ]
    panels += list(CURVES)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for (label, rows), style in zip(loaded.items(), ("-o", "--s", ":^"), strict=False):
            points = _series(rows, key)
            if points:
                ax.plot(*zip(*points, strict=True), style, markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if key.endswith("_rate"):
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """A before/after table for each run."""
    lines = []
    for label, s in summaries.items():
        minutes = s["train_seconds"] / 60
        rae = "off" if s["rae"] is False else "on"
        lines += [
            f"### {label} (`{s['run']}`, RAE {rae}, {s['steps']} steps, {minutes:.0f} min)",
            "",
            "| metric | before | after |",
            "|---|---:|---:|",
        ]
        for key, v in s["eval"].items():
            if key.endswith(("win_rate", "invalid_rate")):
                lines.append(
                    f"| {key} (step {v['first_step']} → {v['last_step']}) | {v['first']:.3f} | "
                    f"{v['last']:.3f} |"
                )
        for key, v in s["selfplay"].items():
            lines.append(
                f"| {key} (first 5 → last 5 steps) | {v['first5']:.3f} | {v['last5']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)
