"""Run metrics: one JSON line per step in metrics.jsonl, mirrored to wandb (offline by default)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spiral_games.types import Episode


class MetricsLogger:
    """Appends step metrics to `run_dir/metrics.jsonl` and logs them to wandb."""

    def __init__(self, run_dir: Path, wandb_mode: str, project: str, config: dict[str, Any]):
        self.path = run_dir / "metrics.jsonl"
        self.run = None
        if wandb_mode != "disabled":
            import wandb

            self.run = wandb.init(
                project=project,
                mode=wandb_mode,
                dir=str(run_dir),
                config=config,
                name=run_dir.name,
                resume="allow",
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one step's metrics (NaN becomes null in the JSON line)."""
        row = {
            "step": step,
            **{
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in metrics.items()
            },
        }
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


def rollout_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """Mean return per game and role, invalid-move and truncation rates, response lengths."""
    out: dict[str, float] = {}
    returns: dict[tuple[str, int], list[float]] = defaultdict(list)
    turns = [t for e in episodes for t in e.turns if t.response_ids]
    for e in episodes:
        for role in (0, 1):
            returns[(e.game, role)].append(e.returns[role])
    for (game, role), values in sorted(returns.items()):
        out[f"rollout/{game}/return_role{role}"] = sum(values) / len(values)
    model_turns = [t for e in episodes for t in e.turns if t.role in e.trained_roles]
    out["rollout/episodes"] = float(len(episodes))
    out["rollout/turns"] = float(len(model_turns))
    out["rollout/invalid_move_rate"] = (
        sum(not t.valid for t in model_turns) / len(model_turns) if model_turns else 0.0
    )
    out["rollout/lenient_rate"] = (
        sum(t.lenient for t in model_turns) / len(model_turns) if model_turns else 0.0
    )
    out["rollout/truncation_rate"] = sum(t.truncated for t in turns) / len(turns) if turns else 0.0
    out["rollout/response_length"] = (
        sum(len(t.response_ids) for t in turns) / len(turns) if turns else 0.0
    )
    out["rollout/generated_tokens"] = float(sum(len(t.response_ids) for t in turns))
    out["rollout/context_truncation_rate"] = (
        sum(t.context_truncated for t in turns) / len(turns) if turns else 0.0
    )
    out["rollout/context_overflow_draws"] = float(
        sum("outgrew the model context" in e.reason for e in episodes)
    )
    out["rollout/game_length"] = sum(len(e.turns) for e in episodes) / max(len(episodes), 1)
    return out


def eval_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """`eval/<game>/<opponent>/[seat<k>/]...`: the number of games; win, draw, loss and invalid
    rates, mean return, reply length (tokens) and game length of the model's seat, over all games
    and per seat."""
    groups: dict[tuple[str, str], list[Episode]] = defaultdict(list)
    for e in episodes:
        groups[(e.game, e.opponent)].append(e)
    out: dict[str, float] = {}
    for (game, opponent), eps in sorted(groups.items()):
        prefix = f"eval/{game}/{opponent}"
        out.update(_outcome_rates(prefix, eps))
        for seat in (0, 1):
            seated = [e for e in eps if e.trained_roles[0] == seat]
            if seated:
                out.update(_outcome_rates(f"{prefix}/seat{seat}", seated))
    return out


def _outcome_rates(prefix: str, episodes: Sequence[Episode]) -> dict[str, float]:
    n = len(episodes)
    mine = [e.returns[e.trained_roles[0]] for e in episodes]
    theirs = [e.returns[1 - e.trained_roles[0]] for e in episodes]
    pairs = list(zip(mine, theirs, strict=True))
    replies = [
        len(t.response_ids) for e in episodes for t in e.turns if t.role == e.trained_roles[0]
    ]
    return {
        f"{prefix}/games": float(n),
        f"{prefix}/response_length": sum(replies) / len(replies) if replies else 0.0,
        f"{prefix}/win_rate": sum(m > t for m, t in pairs) / n,
        f"{prefix}/draw_rate": sum(m == t for m, t in pairs) / n,
        f"{prefix}/loss_rate": sum(m < t for m, t in pairs) / n,
        f"{prefix}/invalid_rate": sum(e.invalid_role == e.trained_roles[0] for e in episodes) / n,
        f"{prefix}/mean_return": sum(mine) / n,
        f"{prefix}/game_length": sum(len(e.turns) for e in episodes) / n,
    }
