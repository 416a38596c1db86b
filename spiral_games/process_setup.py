"""What a rollout worker or a learner does to its own process at start-up: torch's thread count
and the CPUs its threads run on. What to set is decided in `spiral_games.config.hardware`.

A leaf (it imports nothing of ours), so that both the learner (`learn/`) and the Ray actors
(`actors/`) apply it: the learner layer may not import `actors/`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def pin_process(cpus: Sequence[int]) -> dict[int, set[int]]:
    """Bind every thread of this process (and the threads it starts later) to `cpus`; returns
    each thread's previous CPUs, for `unpin_process`. No-op (empty) for an empty list or where
    the OS has no affinity call."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return {}
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    before: dict[int, set[int]] = {}
    for tid in tids:
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, set(cpus))
        except OSError:  # the thread ended meanwhile
            continue
    return before


def unpin_process(before: dict[int, set[int]]) -> None:
    """Give the threads `pin_process` bound their CPUs back (a later run in this process, or
    the Ray it starts, must not inherit a learner's cores)."""
    for tid, cpus in before.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            continue


def set_cpu_threads(threads: int) -> None:
    """Use `threads` cores for torch's intra-op (OpenMP) pool in this process.

    Ray sets OMP_NUM_THREADS=1 in a 1-CPU actor; without this, transformers generation and
    learner updates in an actor run on one core while the others idle. The environment is left
    alone on purpose: vLLM-CPU binds its model threads itself (VLLM_CPU_OMP_THREADS_BIND) and
    wants its scheduler process single-threaded, which it inherits from OMP_NUM_THREADS=1.
    """
    import torch

    torch.set_num_threads(threads)
