"""The training loop, top to bottom: collect -> advantages -> update -> push -> evaluate ->
checkpoint. Setup and resume live in the helpers below it; the loop state is a
`checkpoint.LoopState`, and each step's metrics are assembled by `metrics.step_metrics`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, ClassVar

import torch

from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.actors.overlap import Overlap, PendingCollect
from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.actors.runtime import cluster_resources, init_ray
from spiral_games.actors.weight_sync import WeightSync
from spiral_games.config.hardware import RuntimePlan, plan_runtime
from spiral_games.config.placement import check_fits
from spiral_games.config.schema import RunConfig, format_lines
from spiral_games.errors import ConfigError, RolloutError
from spiral_games.learn.advantage import RoleBaselines, episode_samples
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.learn.staleness import split_stale, staleness_metrics
from spiral_games.llm.models import ResolvedModel, resolve_configured
from spiral_games.play.league import League, member_name
from spiral_games.play.rollout import evaluation_shares
from spiral_games.report.summary import write_run_report
from spiral_games.report.transcripts import write_transcripts
from spiral_games.run.agreement_check import agreed_pool
from spiral_games.run.checkpoint import LoopState, latest_checkpoint, save_checkpoint
from spiral_games.run.league_files import league_snapshots, prune_snapshots, snapshot_path
from spiral_games.run.metrics import MetricsLogger, PhaseClock, eval_metrics, step_metrics
from spiral_games.run.reference import reference_lines
from spiral_games.types import Episode, Sample, TrainBatch

log = logging.getLogger(__name__)


def train(cfg: RunConfig) -> Path:
    """Run self-play RL as configured; returns the run directory."""
    plan = plan_runtime(cfg)  # every `auto` (engine, dtype, precision, threads), decided once
    start = _start(cfg, plan)
    run_dir, state, model = start.run_dir, start.state, start.model
    baselines, rng = _driver_state(cfg, state)
    learner, pool, sync = _build_actors(cfg, plan, start)
    league = _league(cfg, run_dir, state, pool)  # rollout.opponents=league, else None
    logger = MetricsLogger(
        run_dir, cfg.train.wandb_mode, cfg.train.wandb_project, dataclasses.asdict(cfg)
    )
    display = _Display(cfg.train.steps, state.step)
    saved, version = state, state.version  # the last checkpointed state; the weights served
    updating = False  # the learner is mid-update: its weights match no LoopState
    eval_at = set(cfg.eval.steps(cfg.train.steps))  # step 0 (before training), the end, between
    reference = reference_lines(cfg)  # random and expert play the same evaluation, as lines
    bound = cfg.train.staleness_bound()  # versions a trained sample may lag the learner
    overlap = Overlap(pool, sync) if cfg.train.max_staleness > 0 else None
    ahead: PendingCollect | None = None  # the batch being played while the learner updates

    def evaluate(done: int) -> dict[str, float]:
        t, seed = time.perf_counter(), cfg.seed + done - 1
        games = cfg.eval.games_at(done, cfg.train.steps)  # fewer between the first and last
        shares = evaluation_shares(games, len(pool.live()), seed)
        episodes = pool.evaluate(shares)  # the reference lines replay these shares
        write_transcripts(episodes, run_dir / "eval" / f"step_{done:06d}.jsonl")
        exact = pool.analyse(seed)  # e.g. eval/kuhn/exploitability
        model_s, t = time.perf_counter() - t, time.perf_counter()
        lines = reference.measure(shares, seed) if reference else {}  # ref/random/..., same games
        ref_s = time.perf_counter() - t
        return {
            **eval_metrics(episodes),
            **exact,
            **lines,
            "eval/seconds": model_s + ref_s,
            "eval/reference_seconds": ref_s,
        }

    if state.torch_rng is not None:  # last: building the learner and workers draws from it
        torch.set_rng_state(torch.tensor(state.torch_rng, dtype=torch.uint8))
    try:
        if 0 in eval_at and state.step == 0:  # the baseline every later eval is compared to
            logger.log(0, evaluate(0))
        for step in range(state.step, cfg.train.steps):
            done = step + 1  # completed steps once this iteration ends
            clock = PhaseClock()
            # ---- collect until the batch is full (k > 0: first the batch played during the
            # last update); drop episodes more than `bound` versions behind the learner (at
            # `step`); RAE: one baseline update per kept game and role, in episode order ------
            episodes: list[Episode] = []
            samples: list[Sample] = []
            dropped: list[Episode] = []
            while len(samples) < cfg.learner.batch_size:
                with clock("rollout"):
                    if ahead is not None:
                        new, ahead = ahead.result(), None
                    else:
                        draw = league.draw() if league is not None else None
                        new = pool.collect(
                            cfg.rollout.episodes_per_step, rng.randrange(2**31), draw
                        )
                episodes += new
                with clock("advantage"):
                    fresh, stale = split_stale(new, step, bound)
                    dropped += stale
                    samples += episode_samples(
                        fresh,
                        baselines if cfg.train.rae else None,
                        cfg.train.gamma,
                        cfg.train.drop_zero_advantage,
                    )

            if league is not None:  # rate every league game played, in episode order
                league.record(episodes)

            # ---- k > 0: the workers play the next batch while the learner updates ---------
            if overlap is not None and done < cfg.train.steps:
                ahead = overlap.collect(
                    cfg.rollout.episodes_per_step,
                    rng.randrange(2**31),
                    cfg.learner.batch_size,
                    league.draw() if league is not None else None,
                )

            # ---- update on every collected sample ----------------------------------------
            updating = True  # stopped now, the learner's weights would be half a step on
            with clock("update"):
                if cfg.rollout.sleep_when_training:
                    pool.sleep()
                train_metrics = learner.update(TrainBatch(tuple(samples), step))
            sync.trained(done)
            push = done % cfg.train.push_every == 0 or cfg.rollout.sleep_when_training
            version = done if push else version  # a sleeping worker needs the new weights
            joined = False  # the policy after this update joins the league
            if league is not None and league.snapshot_due(done) and done < cfg.train.steps:
                with clock("checkpoint"):
                    learner.export_weights(snapshot_path(run_dir, member_name(done)))
                league.add_snapshot(done)
                joined = True
            state = LoopState.capture(done, version, baselines, rng, learner, league)
            updating = False

            # ---- push the new weights to every rollout worker, once they are idle ----------
            if ahead is not None:
                with clock("rollout"):  # what the update did not hide
                    ahead.wait()
            with clock("push"):
                if push:
                    sync.push(version)
                if league is not None and joined:
                    pool.set_league(league_snapshots(run_dir, league))

            # ---- evaluate against the fixed opponents ------------------------------------
            evaluation: dict[str, float] = {}
            if done in eval_at:
                with clock("eval"):
                    evaluation = evaluate(done)

            # ---- checkpoint, then log (a logged step is never newer than its checkpoint; the
            # batch played ahead is in neither: a resume plays it anew) ----------------------
            if cfg.train.checkpoint_due(done):
                with clock("checkpoint"):
                    saved = _checkpoint(cfg, run_dir, state, learner, model)
                    if league is not None:
                        prune_snapshots(run_dir)
            write_transcripts(
                episodes[: cfg.train.transcripts_per_step],
                run_dir / "transcripts" / f"step_{done:06d}.jsonl",
            )
            version = version if sync.version is None else sync.version  # after any catch-up
            metrics = step_metrics(
                episodes, samples, train_metrics, clock, version, baselines.values, evaluation
            )
            metrics.update(staleness_metrics(episodes, dropped, step))
            if league is not None:
                metrics.update(league.metrics())
            if overlap is not None and ahead is not None:  # this step played one ahead
                metrics.update(overlap.metrics())
            logger.log(done, metrics)
            display.update(done, metrics)
    except (RolloutError, KeyboardInterrupt):  # workers lost, or Ctrl-C / SIGTERM
        if state.step > saved.step and not updating:  # keep every updated step before stopping
            _checkpoint(cfg, run_dir, state, learner, model)
        raise
    finally:
        busy = overlap is not None and overlap.close()  # a batch in flight is dropped
        display.close()
        logger.close()
        sync.close()
        pool.shutdown(graceful=not busy)
        learner.shutdown()
    _report(run_dir)
    return run_dir


@dataclasses.dataclass(frozen=True)
class RunStart:
    """Where a run starts: its directory, the model, the weights to load and the loop state."""

    run_dir: Path
    model: ResolvedModel  # its tokenizer goes into every checkpoint
    weights_path: Path  # the model's weights, or the checkpoint's when resuming
    state: LoopState  # LoopState() when starting fresh
    resumed: bool  # a checkpoint was loaded
    config_record: dict[str, Any]  # what config.json holds


def resume_dir(cfg: RunConfig) -> Path | None:
    """The run directory to resume from (output_dir), if `train.resume` asks for one."""
    if not cfg.train.resume:
        return None
    path = Path(cfg.output_dir)
    if not path.is_dir():
        raise ConfigError(
            f"train.resume: run directory {path} does not exist. Point train.resume at a run "
            "directory, or set output_dir to it with train.resume=true."
        )
    return path


def _start(cfg: RunConfig, plan: RuntimePlan) -> RunStart:
    """Make (or reopen) the run directory, print and record the resolved config, and find the
    checkpoint to continue from when `train.resume` asks for one."""
    resuming = resume_dir(cfg)
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
    record = {**dataclasses.asdict(cfg), "runtime": plan.as_dict()}
    (run_dir / "config.json").write_text(json.dumps(record, indent=2))
    model = resolve_configured(cfg.model)
    found = latest_checkpoint(run_dir) if resuming else None
    if resuming and found is None:
        log.warning("No complete checkpoint in %s: starting from step 0.", run_dir)
    weights_path, state = found or (model.path, LoopState())
    if resuming:
        _truncate_metrics(run_dir / "metrics.jsonl", state.step)
    if found:
        log.info(
            "Resuming %s from %s (step %d, version %d)",
            run_dir,
            weights_path,
            state.step,
            state.version,
        )
    return RunStart(run_dir, model, weights_path, state, found is not None, record)


def _driver_state(cfg: RunConfig, state: LoopState) -> tuple[RoleBaselines, random.Random]:
    """The driver's RAE baselines and collection RNG, fresh or resumed; seeds torch."""
    baselines = (
        RoleBaselines.from_state_dict(state.baselines)
        if state.baselines is not None
        else RoleBaselines(decay=cfg.train.rae_decay)
    )
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)  # torch starts from a random seed in every process otherwise
    if state.rng is not None:
        rng.setstate(state.rng)
    return baselines, rng


def _build_actors(
    cfg: RunConfig, plan: RuntimePlan, start: RunStart
) -> tuple[Learner | LearnerGroup, RolloutPool, WeightSync]:
    """Start Ray, the learner (one process, or a group of ranks) and the rollout workers, with
    the resumed optimizer, learner RNG and weights; plus the weight sync between them."""
    init_ray(cfg.ray)
    check_fits(cfg, cluster_resources())  # one clear error before any actor waits for room
    spec = LearnerSpec.from_run(cfg, start.weights_path, plan)
    lc = cfg.learner
    learner: Learner | LearnerGroup = LearnerGroup(spec) if lc.num_ranks > 1 else Learner(spec)
    if start.resumed:
        learner.load_optimizer(start.weights_path)
        learner.set_rng_state(start.state.learner_rng)
    worker_cfg = WorkerConfig.from_run(cfg, start.weights_path, plan, start.state.version)
    try:  # the engines must serve the learner's model: checked before any game is played
        pool, worker_cfg, lines = agreed_pool(
            RolloutPool(worker_cfg, cfg.rollout),
            worker_cfg,
            learner,
            start.model.tokenizer,
            plan.learner_bf16,
            cfg.model.dtype,
            lambda switched: RolloutPool(switched, cfg.rollout),
        )
    except BaseException:
        learner.shutdown()
        raise
    print("\n".join(lines), flush=True)
    start.config_record["runtime"].update(dtype=worker_cfg.dtype, agreement=lines)
    sync = WeightSync(learner, pool, plan.weight_sync, cfg.rollout.tensor_parallel_size)
    fallbacks = [info for info in pool.engine_infos() if info["note"]]
    if fallbacks:  # rollout.engine=auto fell back: say so once and record what really runs
        print(f"rollout.engine: {fallbacks[0]['engine']} ({fallbacks[0]['note']})", flush=True)
        start.config_record["runtime"].update(
            engine=fallbacks[0]["engine"],
            engine_note=fallbacks[0]["note"],
            weight_sync=sync.backend,
        )
    (start.run_dir / "config.json").write_text(json.dumps(start.config_record, indent=2))
    if start.resumed:
        sync.push(start.state.version)
    return learner, pool, sync


def _league(cfg: RunConfig, run_dir: Path, state: LoopState, pool: RolloutPool) -> League | None:
    """The run's opponent league, resumed from `state`, its snapshots sent to the workers."""
    if cfg.rollout.opponents != "league":
        return None
    league = League(cfg.league)
    if state.league is not None:
        league.load_state_dict(state.league)
        pool.set_league(league_snapshots(run_dir, league))
    return league


def _checkpoint(
    cfg: RunConfig,
    run_dir: Path,
    state: LoopState,
    learner: Learner | LearnerGroup,
    model: ResolvedModel,
) -> LoopState:
    """Save `state` with the learner's weights and optimizer and the tokenizer; returns it."""

    def write(directory: Path) -> None:
        learner.save(directory)
        model.tokenizer.save_pretrained(str(directory))

    save_checkpoint(run_dir, state, write, cfg.train.keep_checkpoints)
    return state


def _report(run_dir: Path) -> None:
    """The run's report: before/after table, summary.md, summary.json, curves.png."""
    try:
        table = write_run_report(run_dir)
    except (OSError, ValueError, RuntimeError) as exc:  # the run itself is saved: do not fail it
        log.warning("Could not write the run report (%s); run launch/summarize.py later.", exc)
    else:
        print(f"\n{table}\nwrote {run_dir / 'summary.md'} and {run_dir / 'curves.png'}", flush=True)


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
