"""What a run writes as it goes: one metrics line per step (metrics.jsonl, and wandb), a sample
of each step's games as transcripts, and a console line per step under a progress bar."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from spiral_games.config.schema import RunConfig
from spiral_games.report.transcripts import write_transcripts
from spiral_games.run.metrics import MetricsLogger
from spiral_games.types import Episode


class RunOutput:
    """The run directory's metrics and transcripts, and the console display."""

    def __init__(self, cfg: RunConfig, run_dir: Path, done: int) -> None:
        """`done`: the steps completed before this process (a resume's checkpoint)."""
        self.run_dir = run_dir
        self.transcripts_per_step = cfg.train.transcripts_per_step
        self.logger = MetricsLogger(
            run_dir, cfg.train.wandb_mode, cfg.train.wandb_project, dataclasses.asdict(cfg)
        )
        self.display = _Display(cfg.train.steps, done)

    def transcripts(self, done: int, episodes: Sequence[Episode]) -> None:
        """The first `train.transcripts_per_step` games of step `done`."""
        path = self.run_dir / "transcripts" / f"step_{done:06d}.jsonl"
        write_transcripts(episodes[: self.transcripts_per_step], path)

    def baseline(self, metrics: dict[str, float]) -> None:
        """Step 0's line: the evaluation before any training (not a step of the display)."""
        self.logger.log(0, metrics)

    def step(self, done: int, metrics: dict[str, float]) -> None:
        """Step `done`'s line, in metrics.jsonl and on the console."""
        self.logger.log(done, metrics)
        self.display.update(done, metrics)

    def close(self) -> None:
        self.display.close()
        self.logger.close()


class _Display:
    """A rich progress bar over steps (with ETA) plus one line of key metrics per step."""

    KEYS: ClassVar[dict[str, str]] = {
        "rollout/invalid_move_rate": "invalid",
        "rollout/response_length": "resp_len",
        "train/loss": "loss",
        "train/grad_norm": "grad_norm",
        "rollout/seconds": "rollout_s",
        "train/seconds": "train_s",
        "sync/seconds": "sync_s",
    }

    def __init__(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("step {task.completed}/{task.total}"), BarColumn(), TimeRemainingColumn()
        )
        self.task = self.progress.add_task("train", total=total, completed=done)
        self.progress.start()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        shown = "  ".join(
            f"{name}={metrics[k]:.3g}" for k, name in self.KEYS.items() if k in metrics
        )
        self.progress.console.log(f"step {step}: {shown}")
        self.progress.update(self.task, completed=step)

    def close(self) -> None:
        self.progress.stop()
