"""Runs one benchmark by name: composes the config, measures, writes the JSON and prints the
table, the hardware line and the plan's warnings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from spiral_games.config.compose import compose_run_config
from spiral_games.config.hardware import plan_runtime
from spiral_games.errors import SpiralError
from spiral_games.perf.iteration import bench_iteration, print_iteration_table
from spiral_games.perf.learner import bench_learner, print_learner_table
from spiral_games.perf.measure import hardware_line, machine_record
from spiral_games.perf.precision import bench_precision, print_precision_table
from spiral_games.perf.rollout import bench_rollout, print_rollout_table
from spiral_games.perf.sync import bench_sync, print_sync_table

BENCHMARKS = ("rollout", "learner", "sync", "iteration", "precision")


def run_benchmark(name: str, overrides: list[str], config_dir: Path) -> int:
    """Run benchmark `name` (one of BENCHMARKS) on the config composed from `config_dir` with
    `overrides` (Kuhn unless they select games); returns the process exit code."""
    if not any(o.startswith("+games=") for o in overrides):
        overrides = ["+games=[kuhn]", *overrides]
    try:
        cfg = compose_run_config(config_dir, ["rollout.concurrent_games=64", *overrides])
        plan = plan_runtime(cfg)
        if name == "rollout":
            result = bench_rollout(cfg, episodes_flag(overrides))
        elif name == "learner":
            result = bench_learner(cfg)
        elif name == "sync":
            result = bench_sync(cfg)
        elif name == "precision":
            result = bench_precision(cfg, plan)
        else:
            result = bench_iteration(cfg, overrides)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {**result, **machine_record(plan)}
    out = Path(cfg.output_dir) / f"benchmark_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    printers = {
        "rollout": print_rollout_table,
        "learner": print_learner_table,
        "sync": print_sync_table,
        "iteration": print_iteration_table,
        "precision": print_precision_table,
    }
    printers[name](result)
    print(hardware_line(result))
    for warning in plan.warnings:
        print(f"warning: {warning}")
    print(f"json: {out}")
    return 0


def episodes_flag(overrides: list[str]) -> int | None:
    """Episodes for (b) come from rollout.episodes_per_step when it was overridden."""
    given = [o for o in overrides if o.startswith("rollout.episodes_per_step=")]
    return int(given[-1].split("=", 1)[1]) if given else None
