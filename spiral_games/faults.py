"""Fault injection for the reliability tests: SIGKILL the job at a named point of the loop.

Set `SPIRAL_KILL_AT=<point>:<n>` to kill the process group on the n-th time `<point>` is
reached in this process. Points: `rollout` (workers are generating), `update` (after the first
backward of an update), `push` (weights exported, workers loading them) and `checkpoint_write`
(model files written, trainer state and manifest not yet). Unset, a point costs one dict lookup.

Set `SPIRAL_PHASE_DIR=<dir>` to have processes announce the phases a test waits for before it
kills something from outside (`mark_phase`), instead of sleeping a fixed time.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter

POINTS = ("rollout", "update", "push", "checkpoint_write")
_hits: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this job if `SPIRAL_KILL_AT` names this point and hit count."""
    spec = os.environ.get("SPIRAL_KILL_AT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point not in POINTS or not count.isdigit():
        raise ValueError(f"SPIRAL_KILL_AT={spec!r}: use <point>:<n> with a point in {POINTS}.")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(count):
        logging.shutdown()  # flush what the log already holds, as a real crash might not
        if os.getpgrp() == os.getpid():  # a job leader (start_new_session): the whole job
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


PHASE_DIR_ENV = "SPIRAL_PHASE_DIR"


def mark_phase(name: str) -> None:
    """Touch `<SPIRAL_PHASE_DIR>/<name>.<pid>` when that variable is set (a test waits for it);
    unset, this costs one dict lookup."""
    directory = os.environ.get(PHASE_DIR_ENV)
    if directory:
        with open(os.path.join(directory, f"{name}.{os.getpid()}"), "a"):
            pass
