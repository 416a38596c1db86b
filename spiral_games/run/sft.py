"""The imitation baseline's loop, top to bottom: the scripted expert plays the games once, then
each step fine-tunes on a batch of its turns -> push -> evaluate -> checkpoint -> log. Setup,
evaluation, checkpoints and the report are self-play's (`run.trainer`), so the two runs write
the same directory and are measured the same way."""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from spiral_games.config.choices import PolicyLoss
from spiral_games.config.hardware import plan_runtime
from spiral_games.config.schema import RunConfig
from spiral_games.errors import ConfigError, RolloutError
from spiral_games.learn.advantage import RoleBaselines
from spiral_games.learn.imitation import demonstration_batch, imitation_samples
from spiral_games.report.transcripts import write_transcripts
from spiral_games.run.checkpoint import LoopState
from spiral_games.run.demonstrations import play_demonstrations
from spiral_games.run.metrics import PhaseClock
from spiral_games.run.output import RunOutput
from spiral_games.run.reference import reference_lines
from spiral_games.run.trainer import (
    build_actors,
    evaluate_policy,
    save_run_checkpoint,
    start_run,
    write_report,
)
from spiral_games.types import Episode, Sample, TrainBatch

DEMONSTRATIONS_FILE = "demonstrations.jsonl"  # every demonstration game, in the run directory


def imitate(cfg: RunConfig) -> Path:
    """Fine-tune the model on the expert's games as configured (`sft.*`); returns the run
    directory, laid out as self-play's."""
    _check(cfg)
    plan = plan_runtime(cfg)
    start = start_run(cfg, plan)
    run_dir, model = start.run_dir, start.model
    # ---- the expert plays every demonstration game once; its kept turns are the data --------
    episodes = play_demonstrations(cfg, model.tokenizer)
    write_transcripts(episodes, run_dir / DEMONSTRATIONS_FILE)
    keep = {name: game.sft_keep or cfg.sft.keep for name, game in cfg.games.items()}
    samples = imitation_samples(episodes, keep, cfg.sft.keep_draws)
    data = demonstration_metrics(episodes, samples)
    print(f"demonstrations: {data_line(data)}", flush=True)
    if not samples:
        raise ConfigError(
            f"The expert's {len(episodes)} games left no turn to imitate (sft.keep, "
            "games.<g>.sft_keep, sft.keep_draws): keep all turns (sft.keep=all) or play more games "
            "(sft.demonstrations)."
        )

    learner, pool, sync = build_actors(cfg, plan, start)
    output = RunOutput(cfg, run_dir, 0)
    eval_at = set(cfg.eval.steps(cfg.train.steps))  # step 0 (before training), the end, between
    evaluate = functools.partial(evaluate_policy, cfg, pool, reference_lines(cfg), run_dir)
    baselines, rng = RoleBaselines(decay=cfg.train.rae_decay), random.Random(cfg.seed)  # unused
    state = saved = LoopState()
    updating = False  # the learner is mid-update: its weights match no LoopState
    try:
        if 0 in eval_at:
            output.baseline(evaluate(0))
        for step in range(cfg.train.steps):
            done = step + 1
            clock = PhaseClock()
            # ---- update on the step's batch of demonstrations (NLL) ----------------------
            batch = demonstration_batch(samples, step, cfg.learner.batch_size, cfg.seed)
            updating = True
            with clock("update"):
                train_metrics = learner.update(TrainBatch(tuple(batch), step))
            sync.trained(done)
            state = LoopState.capture(done, done, baselines, rng, learner)
            updating = False

            # ---- evaluate against the fixed opponents (the workers get the weights first) --
            evaluation: dict[str, float] = {}
            if done in eval_at:
                with clock("push"):
                    sync.push(done)
                with clock("eval"):
                    evaluation = evaluate(done)

            # ---- checkpoint, then log ----------------------------------------------------
            if cfg.train.checkpoint_due(done):
                with clock("checkpoint"):
                    saved = save_run_checkpoint(cfg, run_dir, state, learner, model)
            passes = done * cfg.learner.batch_size / len(samples)
            metrics = {**train_metrics, **data, "sft/passes": passes, **evaluation}
            output.step(done, metrics | {"sync/version": float(done)} | clock.metrics())
    except (RolloutError, KeyboardInterrupt):  # workers lost, or Ctrl-C / SIGTERM
        if state.step > saved.step and not updating:  # keep the last completed step
            save_run_checkpoint(cfg, run_dir, state, learner, model)
        raise
    finally:
        output.close()
        sync.close()
        pool.shutdown()
        learner.shutdown()
    write_report(run_dir)
    return run_dir


def _check(cfg: RunConfig) -> None:
    """Refuse what the imitation baseline does not do, naming the fix."""
    if cfg.learner.loss != PolicyLoss.sft:
        raise ConfigError(
            f"learner.loss={cfg.learner.loss}: the imitation baseline trains by NLL "
            "(learner.loss=sft, which conf/sft.yaml sets). Drop the learner.loss override."
        )
    if cfg.train.resume:
        raise ConfigError(
            "launch/sft.py starts fresh and does not resume (train.resume=true): rerun it, or "
            "continue training a checkpoint with model.name=<run>/checkpoints/step_N."
        )
    if cfg.train.max_staleness:
        raise ConfigError(
            "train.max_staleness plays self-play games ahead of the learner; the imitation "
            "baseline plays none. Set train.max_staleness=0."
        )


def demonstration_metrics(
    episodes: Sequence[Episode], samples: Sequence[Sample]
) -> dict[str, float]:
    """What the demonstrations hold (`sft/...`): games and the expert's turns, per game and in
    all, the turns kept as samples, and the expert's mean return."""
    games = Counter(e.game for e in episodes)
    kept = Counter(s.game for s in samples)
    out: dict[str, float] = {"sft/episodes": float(len(episodes)), "sft/samples": len(samples)}
    for game in sorted(games):
        mine = [e for e in episodes if e.game == game]
        turns = [t for e in mine for t in e.turns if t.role in e.trained_roles]
        returns = [e.returns[r] for e in mine for r in e.trained_roles]
        out[f"sft/{game}/episodes"] = float(games[game])
        out[f"sft/{game}/expert_turns"] = float(len(turns))
        out[f"sft/{game}/samples"] = float(kept[game])
        out[f"sft/{game}/expert_return"] = sum(returns) / len(returns)
    return out


def data_line(data: dict[str, float]) -> str:
    """The demonstration counts in one console line."""
    return ", ".join(f"{key.removeprefix('sft/')}={value:g}" for key, value in data.items())
