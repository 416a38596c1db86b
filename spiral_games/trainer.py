"""The training loop, top to bottom: collect -> advantages -> update -> push -> checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch

from spiral_games.advantage import RoleBaselines, episode_samples
from spiral_games.checkpoint import latest_checkpoint, save_checkpoint
from spiral_games.config import RunConfig, format_lines
from spiral_games.errors import ConfigError
from spiral_games.hardware import plan_runtime
from spiral_games.learner import Learner, LearnerSpec
from spiral_games.learner_group import LearnerGroup
from spiral_games.metrics import MetricsLogger, eval_metrics, rollout_metrics
from spiral_games.models import resolve_configured
from spiral_games.ray_runtime import init_ray
from spiral_games.rollout_pool import RolloutError, RolloutPool
from spiral_games.rollout_worker import WorkerConfig
from spiral_games.run_summary import write_run_report
from spiral_games.transcripts import write_transcripts
from spiral_games.types import Episode, Sample, TrainBatch

log = logging.getLogger(__name__)


def resume_dir(cfg: RunConfig) -> Path | None:
    """The run directory to resume from, if `train.resume` asks for one."""
    value = cfg.train.resume
    if value is None or str(value).lower() in ("false", "no", "0", ""):
        return None
    path = Path(cfg.output_dir) if str(value).lower() in ("true", "yes", "1") else Path(value)
    if not path.is_dir():
        raise ConfigError(
            f"train.resume: run directory {path} does not exist. Point train.resume at a run "
            "directory, or set output_dir to it with train.resume=true."
        )
    return path


def train(cfg: RunConfig) -> Path:
    """Run self-play RL as configured; returns the run directory."""
    resuming = resume_dir(cfg)
    plan = plan_runtime(cfg)  # every `auto` (engine, dtype, precision, threads), decided once
    run_dir = resuming or Path(cfg.output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".write-test").write_text("ok")
        (run_dir / ".write-test").unlink()
    except OSError as exc:
        raise ConfigError(
            f"output_dir {run_dir} is not writable ({exc.strerror}). Set output_dir to a "
            "directory you can write to."
        ) from None
    for line in [*plan.lines(), *format_lines(cfg)]:
        print(line, flush=True)
    config_record = {**dataclasses.asdict(cfg), "runtime": plan.as_dict()}
    (run_dir / "config.json").write_text(json.dumps(config_record, indent=2))

    # ---- state: fresh, or the last complete checkpoint -------------------------------------
    model = resolve_configured(cfg.model)
    resumed = latest_checkpoint(run_dir) if resuming else None
    if resuming and resumed is None:
        log.warning("No complete checkpoint in %s: starting from step 0.", run_dir)
    weights_path = resumed[0] if resumed else model.path
    restored = resumed[1] if resumed else {}
    start_step = int(restored.get("step", 0))
    version = int(restored.get("version", 0))
    baselines = (
        RoleBaselines.from_state_dict(restored["baselines"])
        if "baselines" in restored
        else RoleBaselines(decay=cfg.train.rae_decay)
    )
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)  # torch starts from a random seed in every process otherwise
    if "rng" in restored:
        rng.setstate(_to_tuple(restored["rng"]))
    if resuming:
        _truncate_metrics(run_dir / "metrics.jsonl", start_step)
    if resumed:
        log.info(
            "Resuming %s from %s (step %d, version %d)", run_dir, weights_path, start_step, version
        )

    init_ray(cfg.ray)
    spec = LearnerSpec.from_run(cfg, weights_path, plan)
    lc = cfg.learner
    learner: Learner | LearnerGroup = (
        LearnerGroup(spec, lc.num_ranks, lc.cpus_per_rank, lc.gpus_per_rank)
        if lc.num_ranks > 1
        else Learner(spec)
    )
    if resumed:
        learner.load_optimizer(weights_path)
        learner.set_rng_state(_to_tuple(restored["learner_rng"]))
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, weights_path, plan),
        cfg.rollout.num_workers,
        cfg.rollout.worker_cpus,
        cfg.rollout.worker_gpus,
        cfg.rollout.placement_strategy,
        cfg.rollout.max_worker_failures,
        cfg.rollout.on_node_loss,
    )
    fallbacks = [info for info in pool.engine_infos() if info["note"]]
    if fallbacks:  # rollout.engine=auto fell back: say so once and record what really runs
        print(f"rollout.engine: {fallbacks[0]['engine']} ({fallbacks[0]['note']})", flush=True)
        config_record["runtime"].update(
            engine=fallbacks[0]["engine"], engine_note=fallbacks[0]["note"]
        )
        (run_dir / "config.json").write_text(json.dumps(config_record, indent=2))
    push_dir = Path(tempfile.mkdtemp(prefix="spiral-weights-", dir=_shm_or_tmp()))
    if resumed:
        pool.push_weights(str(learner.export_weights(push_dir / "weights.safetensors")), version)
    logger = MetricsLogger(
        run_dir, cfg.train.wandb_mode, cfg.train.wandb_project, dataclasses.asdict(cfg)
    )
    display = _Display(cfg.train.steps, start_step)
    snapshot: dict = {"step": start_step}  # loop state after the last completed step
    saved_step = start_step

    def checkpoint(loop_state: dict) -> None:
        nonlocal saved_step
        save_checkpoint(
            run_dir,
            loop_state["step"],
            lambda d: _write_model(learner, model, d),
            loop_state,
            cfg.train.keep_checkpoints,
        )
        saved_step = loop_state["step"]

    eval_at = set(cfg.eval.steps(cfg.train.steps))  # step 0 (before training), the end, between
    eval_games = {name: cfg.eval.games_for(name) for name in cfg.eval.opponents}

    def evaluate(done_steps: int) -> dict[str, float]:
        t = time.perf_counter()
        eval_episodes = pool.evaluate(eval_games, seed=cfg.seed + done_steps - 1)
        write_transcripts(eval_episodes, run_dir / "eval" / f"step_{done_steps:06d}.jsonl")
        return {**eval_metrics(eval_episodes), "eval/seconds": time.perf_counter() - t}

    if "torch_rng" in restored:  # last: building the learner and workers draws from it
        torch.set_rng_state(torch.tensor(restored["torch_rng"], dtype=torch.uint8))
    try:
        if 0 in eval_at and start_step == 0:  # the baseline every later eval is compared to
            logger.log(0, evaluate(0))
        for step in range(start_step, cfg.train.steps):
            clock = PhaseClock()
            # ---- collect: play until the batch is full -------------------------------------
            episodes: list[Episode] = []
            samples: list[Sample] = []
            while len(samples) < cfg.learner.batch_size:
                with clock("rollout"):
                    new = pool.collect(cfg.rollout.episodes_per_step, seed=rng.randrange(2**31))
                episodes += new
                # ---- advantages: RAE, one baseline update per episode and role ------------
                with clock("advantage"):
                    samples += episode_samples(
                        new,
                        baselines if cfg.train.rae else None,
                        cfg.train.gamma,
                        cfg.train.drop_zero_advantage,
                    )
            batch = TrainBatch(tuple(samples), step)  # every sample: none collected in vain

            # ---- update ------------------------------------------------------------------
            with clock("update"):
                if cfg.rollout.sleep_when_training:
                    pool.sleep()
                train_metrics = learner.update(batch)

            # ---- push new weights to every rollout worker --------------------------------
            with clock("push"):
                if (step + 1) % cfg.train.push_every == 0 or cfg.rollout.sleep_when_training:
                    version = step + 1
                    path = learner.export_weights(push_dir / "weights.safetensors")
                    pool.push_weights(str(path), version)

            # ---- evaluate against fixed opponents --------------------------------------
            eval_results: dict[str, float] = {}
            if step + 1 in eval_at:
                with clock("eval"):
                    eval_results = evaluate(step + 1)

            # ---- checkpoint, then log (a logged step is never newer than its checkpoint) ---
            snapshot = {
                "step": step + 1,
                "version": version,
                "baselines": baselines.state_dict(),
                "rng": rng.getstate(),
                "learner_rng": learner.rng_state(),
                "torch_rng": torch.get_rng_state().tolist(),
            }
            if (step + 1) % cfg.train.checkpoint_every == 0 or step + 1 == cfg.train.steps:
                with clock("checkpoint"):
                    checkpoint(snapshot)
            write_transcripts(
                episodes[: cfg.train.transcripts_per_step],
                run_dir / "transcripts" / f"step_{step + 1:06d}.jsonl",
            )
            rollout_s = clock.seconds["rollout"]
            metrics = {
                **rollout_metrics(episodes),
                **train_metrics,
                "rollout/seconds": rollout_s,
                "rollout/tokens_per_s": sum(len(s.response_ids) for s in samples) / rollout_s,
                "rollout/samples": float(len(samples)),
                "train/advantage_mean": sum(s.advantage for s in batch.samples)
                / len(batch.samples),
                "sync/seconds": clock.seconds["push"],
                "sync/version": float(version),
                **{
                    f"rae/{g}/baseline_role{r}": v for (g, r), v in sorted(baselines.values.items())
                },
                **eval_results,
                **clock.metrics(),
            }
            logger.log(step + 1, metrics)
            display.update(step + 1, metrics)
    except RolloutError:
        if snapshot["step"] > saved_step:  # keep every completed step before stopping
            checkpoint(snapshot)
        raise
    finally:
        display.close()
        logger.close()
        pool.shutdown()
        learner.shutdown()
        for leftover in push_dir.glob("*"):
            leftover.unlink()
        push_dir.rmdir()
    # ---- the run's report: before/after table, summary.md, summary.json, curves.png ------
    try:
        table = write_run_report(run_dir)
    except (OSError, ValueError, RuntimeError) as exc:  # the run itself is saved: do not fail it
        log.warning("Could not write the run report (%s); run launch/summarize.py later.", exc)
    else:
        print(f"\n{table}\nwrote {run_dir / 'summary.md'} and {run_dir / 'curves.png'}", flush=True)
    return run_dir


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


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines of steps after the checkpoint being resumed (they are replayed)."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in keep))
    os.replace(tmp, path)


def _write_model(learner: Learner | LearnerGroup, model: object, directory: Path) -> None:
    learner.save(directory)
    model.tokenizer.save_pretrained(str(directory))  # type: ignore[attr-defined]


def _shm_or_tmp() -> str | None:
    """Weights pushes go through RAM-backed /dev/shm when it exists (None: the temp dir)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _to_tuple(value: object) -> object:
    """JSON turns the tuples of a `random` state into lists; turn them back."""
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list) else value


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
