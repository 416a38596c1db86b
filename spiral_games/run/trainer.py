"""The training loop, top to bottom: collect -> advantages -> update -> push -> evaluate ->
checkpoint -> log. Setup and resume live in the helpers below it (the imitation baseline,
`run.sft`, starts, evaluates and checkpoints with them too); the loop state is a
`checkpoint.LoopState`, and each step's metrics are assembled by `metrics.step_metrics`. What
a run may change (a league, overlapped collection, sleeping engines) are objects the loop calls
the same way every step, each plain by default: see `_modes`."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import torch

from spiral_games.actors.collection import Collector, StepCollector
from spiral_games.actors.engine_rest import AwakeEngines, EngineRest, SleepingEngines
from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.actors.overlap import OverlappedCollector
from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.actors.runtime import cluster_resources, init_ray
from spiral_games.actors.weight_sync import WeightSync
from spiral_games.config.choices import PolicyLoss
from spiral_games.config.hardware import RuntimePlan, plan_runtime
from spiral_games.config.placement import check_fits
from spiral_games.config.schema import RunConfig, format_lines
from spiral_games.errors import ConfigError, RolloutError
from spiral_games.learn.advantage import RoleBaselines
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.learn.step_batch import StepBatch
from spiral_games.llm.models import ResolvedModel, resolve_configured
from spiral_games.play.rollout import evaluation_shares
from spiral_games.report.summary import write_run_report
from spiral_games.report.transcripts import write_transcripts
from spiral_games.run.agreement_check import agreed_pool
from spiral_games.run.checkpoint import LoopState, latest_checkpoint, save_checkpoint
from spiral_games.run.metrics import PhaseClock, eval_metrics, step_metrics
from spiral_games.run.opponents import LeagueOpponents, OpponentSource, WorkerOpponents
from spiral_games.run.output import RunOutput
from spiral_games.run.reference import ReferenceLines, reference_lines
from spiral_games.types import TrainBatch

log = logging.getLogger(__name__)


def train(cfg: RunConfig) -> Path:
    """Run self-play RL as configured; returns the run directory."""
    if cfg.learner.loss == PolicyLoss.sft:
        raise ConfigError(
            "learner.loss=sft is the imitation baseline's loss (launch/sft.py): it ignores "
            "the games' rewards. Self-play trains with learner.loss=ppo or reinforce."
        )
    plan = plan_runtime(cfg)  # every `auto` (engine, dtype, precision, threads), decided once
    start = start_run(cfg, plan)
    run_dir, state, model = start.run_dir, start.state, start.model
    baselines, rng = _driver_state(cfg, state)
    learner, pool, sync = build_actors(cfg, plan, start)
    opponents, collector, engines = _modes(cfg, run_dir, state, pool, sync, rng)
    output = RunOutput(cfg, run_dir, state.step)
    saved, version = state, state.version  # the last checkpointed state; the weights served
    updating = False  # the learner is mid-update: its weights match no LoopState
    eval_at = set(cfg.eval.steps(cfg.train.steps))  # step 0 (before training), the end, between
    evaluate = functools.partial(evaluate_policy, cfg, pool, reference_lines(cfg), run_dir)
    bound = cfg.train.staleness_bound()  # versions a trained sample may lag the learner
    rae = baselines if cfg.train.rae else None  # None: a sample's advantage is its return

    if state.torch_rng is not None:  # last: building the learner and workers draws from it
        torch.set_rng_state(torch.tensor(state.torch_rng, dtype=torch.uint8))
    try:
        if 0 in eval_at and state.step == 0:  # the baseline every later eval is compared to
            output.baseline(evaluate(0))
        for step in range(state.step, cfg.train.steps):
            done = step + 1  # completed steps once this iteration ends
            clock = PhaseClock()
            # ---- collect until the batch is full (k > 0: first the batch played during the
            # last update); drop episodes more than `bound` versions behind the learner (at
            # `step`); RAE: one baseline update per kept game and role, in episode order ------
            batch = StepBatch(step, bound, rae, cfg.discounts(), cfg.train.drop_zero_advantage)
            while len(batch.samples) < cfg.learner.batch_size:
                with clock("rollout"):
                    new = collector.collect()
                with clock("advantage"):
                    batch.add(new)
            opponents.record(batch.episodes)  # rated before the next draw, in episode order
            collector.play_ahead(done)  # k > 0: the next batch is played during the update

            # ---- update on every collected sample ----------------------------------------
            updating = True  # stopped now, the learner's weights would be half a step on
            with clock("update"):
                engines.rest()  # a sleeping engine frees the accelerator for the learner
                train_metrics = learner.update(TrainBatch(tuple(batch.samples), step))
            sync.trained(done)
            push = engines.push_due(done)  # every train.push_every steps; every step asleep
            version = done if push else version
            opponents.join(done, learner, clock)  # a league snapshot: before the state names it
            league = opponents.state_dict()  # None without a league
            state = LoopState.capture(done, version, baselines, rng, learner, league)
            updating = False

            # ---- push the new weights to every rollout worker, once they are idle ----------
            with clock("rollout"):  # k > 0: what the update did not hide
                collector.wait()
            with clock("push"):
                if push:
                    sync.push(version)
                opponents.send()  # a snapshot that joined this step

            # ---- evaluate against the fixed opponents ------------------------------------
            evaluation: dict[str, float] = {}
            if done in eval_at:
                with clock("eval"):
                    evaluation = evaluate(done)

            # ---- checkpoint, then log (a logged step is never newer than its checkpoint; the
            # batch played ahead is in neither: a resume plays it anew) ----------------------
            if cfg.train.checkpoint_due(done):
                with clock("checkpoint"):
                    saved = save_run_checkpoint(cfg, run_dir, state, learner, model)
                    opponents.checkpointed()
            output.transcripts(done, batch.episodes)
            version = version if sync.version is None else sync.version  # after any catch-up
            metrics = step_metrics(
                batch, train_metrics, clock, version, baselines.values, evaluation
            )
            output.step(done, metrics | opponents.metrics() | collector.metrics())
    except (RolloutError, KeyboardInterrupt):  # workers lost, or Ctrl-C / SIGTERM
        if state.step > saved.step and not updating:  # keep every updated step before stopping
            save_run_checkpoint(cfg, run_dir, state, learner, model)
        raise
    finally:
        busy = collector.close()  # a batch in flight is dropped
        output.close()
        sync.close()
        pool.shutdown(graceful=not busy)
        learner.shutdown()
    write_report(run_dir)
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


def start_run(cfg: RunConfig, plan: RuntimePlan) -> RunStart:
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


def build_actors(
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


def _modes(
    cfg: RunConfig,
    run_dir: Path,
    state: LoopState,
    pool: RolloutPool,
    sync: WeightSync,
    rng: random.Random,
) -> tuple[OpponentSource, Collector, EngineRest]:
    """The three ways a run may differ from plain synchronous self-play, each an object the
    loop calls the same way every step: who the policy plays (the workers' own opponents, or
    the league resumed from `state`), when games are played (in step, or the next batch during
    the update: train.max_staleness > 0) and what the engines do during an update (stay
    awake, or sleep: rollout.sleep_when_training)."""
    opponents: OpponentSource = WorkerOpponents()
    if cfg.rollout.opponents == "league":
        steps = cfg.train.steps
        opponents = LeagueOpponents.resume(cfg.league, state.league, run_dir, pool, steps)
    rounds = StepCollector(pool, cfg.rollout.episodes_per_step, rng, opponents.draw)
    collector: Collector = rounds
    if cfg.train.max_staleness > 0:
        collector = OverlappedCollector(rounds, sync, cfg.learner.batch_size, cfg.train.steps)
    engines: EngineRest = AwakeEngines(cfg.train.push_every)
    if cfg.rollout.sleep_when_training:
        engines = SleepingEngines(pool)
    return opponents, collector, engines


def evaluate_policy(
    cfg: RunConfig, pool: RolloutPool, reference: ReferenceLines | None, run_dir: Path, done: int
) -> dict[str, float]:
    """Evaluate the policy after `done` steps against the fixed opponents (with the exact
    analyses), and random and expert play as reference lines on the same games."""
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


def save_run_checkpoint(
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


def write_report(run_dir: Path) -> None:
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
