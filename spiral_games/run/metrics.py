"""Run metrics: one JSON line per step in metrics.jsonl, mirrored to wandb (offline by default);
what a step reports, and the wall time of its phases."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from spiral_games.config.choices import WandbMode
from spiral_games.learn.staleness import staleness_metrics
from spiral_games.learn.step_batch import StepBatch
from spiral_games.types import Episode, GameEnd


class MetricsLogger:
    """Appends step metrics to `run_dir/metrics.jsonl` and logs them to wandb."""

    def __init__(self, run_dir: Path, wandb_mode: WandbMode, project: str, config: dict[str, Any]):
        self.path = run_dir / "metrics.jsonl"
        self.run = None
        if wandb_mode != WandbMode.disabled:
            import wandb

            self.run = wandb.init(
                project=project,
                mode=cast(Literal["online", "offline", "disabled"], str(wandb_mode)),
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


class PhaseClock:
    """Wall time of each phase of one iteration; the rest of the step is `time/other`
    (orchestration, metrics, transcripts)."""

    PHASES = ("rollout", "advantage", "update", "push", "eval", "checkpoint")

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds = dict.fromkeys(self.PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t

    def metrics(self) -> dict[str, float]:
        """`time/<phase>`, `time/step` and `time/other` in seconds, up to now."""
        step = time.perf_counter() - self.start
        out = {f"time/{phase}": s for phase, s in self.seconds.items()}
        return {**out, "time/step": step, "time/other": step - sum(self.seconds.values())}


def step_metrics(
    batch: StepBatch,
    train: Mapping[str, float],
    clock: PhaseClock,
    version: int,
    baselines: Mapping[tuple[str, int], float],
    evaluation: Mapping[str, float],
) -> dict[str, float]:
    """Everything one training step logs: its games, the update, the push, the RAE baselines
    per game and role, the evaluation (if one ran), the phase times and the staleness."""
    rollout_s, samples = clock.seconds["rollout"], batch.samples
    return {
        **rollout_metrics(batch.episodes),
        **train,
        "rollout/seconds": rollout_s,
        "rollout/tokens_per_s": sum(len(s.response_ids) for s in samples) / rollout_s,
        "rollout/samples": float(len(samples)),
        "train/advantage_mean": sum(s.advantage for s in samples) / len(samples),
        "sync/seconds": clock.seconds["push"],
        "sync/version": float(version),
        **{f"rae/{g}/baseline_role{r}": v for (g, r), v in sorted(baselines.items())},
        **evaluation,
        **clock.metrics(),
        **staleness_metrics(batch.episodes, batch.dropped, batch.step),
    }


def rollout_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """Mean return per game and role, invalid-move and truncation rates, response lengths: of
    the trained policy's seats only (a fixed or league opponent's are left out)."""
    out: dict[str, float] = {}
    returns: dict[tuple[str, int], list[float]] = defaultdict(list)
    turns = [t for e in episodes for t in e.turns if t.response_ids and t.role in e.trained_roles]
    for e in episodes:
        for role in e.trained_roles:
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
        sum(e.end is GameEnd.CONTEXT_OVERFLOW for e in episodes)
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
        f"{prefix}/mean_return_se": statistics.stdev(mine) / math.sqrt(n) if n > 1 else 0.0,
        f"{prefix}/game_length": sum(len(e.turns) for e in episodes) / n,
    }
