"""What every benchmark shares: the wall time of one call, and the record of what the figures
ran on (the probed hardware and the choices made for it), in the JSON and under every table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from spiral_games.config.hardware import RuntimePlan

T = TypeVar("T")


def measure(fn: Callable[[], T]) -> tuple[T, float]:
    """`fn()` and the seconds it took."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def machine_record(plan: RuntimePlan) -> dict:
    """What the figures ran on: the probed hardware and the choices made for it."""
    return {
        "hardware": plan.hardware.as_dict(),
        "runtime": {
            "engine": plan.engine,
            "dtype": plan.dtype,
            "learner_precision": "bf16" if plan.learner_bf16 else "fp32",
            "rollout_threads": plan.rollout_threads,
            "learner_threads": plan.learner_threads,
        },
    }


def hardware_line(result: dict) -> str:
    """The line under every table: hardware, and the engine/dtype/precision it got."""
    run = result["runtime"]
    return (
        f"hardware: {result['hardware']['summary']}; engine {run['engine']}, dtype "
        f"{run['dtype']}, learner {run['learner_precision']}, threads "
        f"{run['rollout_threads']}/{run['learner_threads']} (rollout/learner)"
    )
