"""Killing a rollout worker at a known moment: once it announces a phase (faults.mark_phase),
not after a fixed delay that could land before or after it on a slower or faster machine.

Import `phase_dir_fixture` into the test module and request `phase_dir` before Ray starts:
Ray's worker processes inherit SPIRAL_PHASE_DIR from the driver when Ray is initialised.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from spiral_games.faults import PHASE_DIR_ENV


@pytest.fixture(name="phase_dir")
def phase_dir_fixture(tmp_path, monkeypatch) -> Path:
    """An empty directory in SPIRAL_PHASE_DIR, where processes started from now on announce
    their phases (`<phase>.<pid>`)."""
    phases = tmp_path / "phases"
    phases.mkdir()
    monkeypatch.setenv(PHASE_DIR_ENV, str(phases))
    return phases


def kill_when_collecting(pool, index: int, timeout_s: float = 120.0) -> threading.Thread:
    """SIGKILL worker `index` of `pool` as soon as it announces it is collecting: mid-collection
    on any machine. Returns the (daemon) thread that waits and kills; join it after the collect.
    After `timeout_s` without the announcement it kills anyway."""
    directory = os.environ.get(PHASE_DIR_ENV)
    assert directory, f"{PHASE_DIR_ENV} is unset: request the phase_dir fixture before Ray starts"
    pid = pool.locations()[index]["pid"]
    marker = Path(directory) / f"collect.{pid}"

    def kill() -> None:
        deadline = time.monotonic() + timeout_s
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread
