"""The iteration benchmark: short real training runs, synchronous and overlapped, each step's
wall time split into its phases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from spiral_games.config.choices import WandbMode
from spiral_games.config.hardware import plan_runtime
from spiral_games.config.schema import RunConfig
from spiral_games.errors import ConfigError


def bench_iteration(cfg: RunConfig, overrides: list[str]) -> dict:
    """Run the real trainer briefly, synchronously (train.max_staleness=0) and overlapped (1),
    and split each step's wall time into its phases. Evaluation is off: it runs alike in both
    modes, between steps (each run's `time/eval` measures it). Both runs pin the rollout
    worker and the learner to cores of their own (the same split), so that the overlap is real
    and the two get the same machine; each averages the steady steps: after the first
    (warm-up; k=1 plays it synchronously) and before the last (k=1 plays nothing ahead)."""
    import shutil

    from spiral_games.actors.runtime import stop_ray
    from spiral_games.run.metrics import PhaseClock
    from spiral_games.run.trainer import train

    given = any(o.startswith("train.max_staleness=") for o in overrides)
    # unless set, learner.tis_cap follows each run's k, as in a run of that k
    tis_given = any(o.startswith("learner.tis_cap=") for o in overrides)
    ks = (cfg.train.max_staleness,) if given else (0, 1)
    steps = cfg.train.steps if any(o.startswith("train.steps=") for o in overrides) else 4
    if steps < 3:
        raise ConfigError(
            f"benchmark iteration: train.steps={steps} leaves no steady step (the first warms "
            "up, and with train.max_staleness=1 the last plays nothing ahead). Use "
            "train.steps>=3."
        )
    cores, workers = plan_runtime(cfg).hardware.cores, cfg.rollout.num_workers
    rollout_threads = cfg.rollout.cpu_threads or max(1, cores // (2 * workers))
    learner_threads = cfg.learner.cpu_threads or max(1, cores - workers * rollout_threads)
    runs: dict[str, dict] = {}
    for k in ks:
        run_dir = Path(cfg.output_dir) / f"iteration_run_k{k}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run = dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train,
                steps=steps,
                checkpoint_every=1,
                wandb_mode=WandbMode.disabled,
                max_staleness=k,
            ),
            eval=dataclasses.replace(cfg.eval, points=0, every=0),  # the same in both modes
            rollout=dataclasses.replace(cfg.rollout, cpu_threads=rollout_threads),
            learner=dataclasses.replace(
                cfg.learner,
                cpu_threads=learner_threads,
                tis_cap=cfg.learner.tis_cap if tis_given else None,
            ),
            output_dir=str(run_dir),
        )
        train(run)
        stop_ray()
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
        done = [r for r in rows if r["step"] >= 1]
        measured = done[1:-1] if len(done) >= 3 else done[1:] or done
        phases = [*PhaseClock.PHASES, "other"]
        seconds = {p: sum(r[f"time/{p}"] for r in measured) / len(measured) for p in phases}
        step_s = sum(r["time/step"] for r in measured) / len(measured)
        shares = {p: v / step_s for p, v in seconds.items()}
        hidden = [r["overlap/hidden_share"] for r in measured if "overlap/hidden_share" in r]
        tokens = sum(r["train/tokens"] for r in measured) / len(measured)
        runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
        runs[f"k{k}"] = {
            "max_staleness": k,
            "engine": runtime["engine"],
            "learner_cpus": runtime["learner_cpus"],
            "steps_measured": len(measured),
            "step_seconds": step_s,
            # the batches differ between the runs (k=1 trains on games of older weights): a
            # step's time per 1000 trained tokens compares the same work
            "train_tokens": tokens,
            "seconds_per_1k_tokens": 1000 * step_s / tokens,
            "seconds": seconds,
            "shares": shares,
            "overhead_share": shares["push"] + shares["other"],
            "hidden_share": sum(hidden) / len(hidden) if hidden else None,
            "dropped_samples": sum(r["rollout/dropped_samples"] for r in done),
        }
    first = runs[f"k{ks[0]}"]
    result = {
        "benchmark": "iteration",
        "model": cfg.model.name,
        **first,  # the synchronous run's figures, as before there were two
        "target_overhead_share": 0.10,
        "threads": {"rollout": rollout_threads, "learner": learner_threads},
        "runs": runs,
    }
    if "k0" in runs and "k1" in runs:
        result["ratio_k1_over_k0"] = runs["k1"]["step_seconds"] / runs["k0"]["step_seconds"]
        result["ratio_per_token_k1_over_k0"] = (
            runs["k1"]["seconds_per_1k_tokens"] / runs["k0"]["seconds_per_1k_tokens"]
        )
        result["target_ratio"] = 0.8  # judged per trained token
    return result


def print_iteration_table(result: dict) -> None:
    """A plain-text table of an iteration benchmark result."""
    runs = result["runs"]
    threads = result["threads"]
    print(
        f"\niteration benchmark: {result['model']} on {result['engine']}, rollout worker "
        f"{threads['rollout']} thread(s), learner {threads['learner']} (pinned to CPUs "
        f"{result['learner_cpus'] or 'none: they do not fit side by side'}); checkpoint every "
        "step, evaluation off"
    )
    names = list(runs)
    print(f"{'phase':<12}" + "".join(f"{'k=' + n[1:] + ' s':>10}{'share':>8}" for n in names))
    for phase in result["seconds"]:
        print(
            f"{phase:<12}"
            + "".join(
                f"{runs[n]['seconds'][phase]:>10.2f}{runs[n]['shares'][phase]:>8.1%}" for n in names
            )
        )
    print(f"{'step':<12}" + "".join(f"{runs[n]['step_seconds']:>10.2f}{'':>8}" for n in names))
    print(
        f"{'s/1k tok':<12}"
        + "".join(f"{runs[n]['seconds_per_1k_tokens']:>10.2f}{'':>8}" for n in names)
        + "  (a step's seconds per 1000 trained tokens)"
    )
    for name in names:
        run = runs[name]
        hidden = run["hidden_share"]
        overlap = "" if hidden is None else f", collection hidden by the update {hidden:.0%}"
        print(
            f"k={run['max_staleness']}: {run['steps_measured']} step(s) measured{overlap}, "
            f"{run['dropped_samples']:.0f} sample(s) dropped as too stale"
        )
    share, target = result["overhead_share"], result["target_overhead_share"]
    verdict = "ok" if share <= target else f"MISSED by {share - target:.1%}"
    print(f"push + orchestration + logging: {share:.1%}  (target <= {target:.0%}: {verdict})")
    if "ratio_k1_over_k0" in result:
        ratio, goal = result["ratio_per_token_k1_over_k0"], result["target_ratio"]
        verdict = "ok" if ratio <= goal else f"MISSED by {ratio - goal:.2f}"
        print(
            f"step time k=1 / k=0: {result['ratio_k1_over_k0']:.2f} as measured, {ratio:.2f} per "
            f"trained token  (target <= {goal} per token: {verdict})"
        )
