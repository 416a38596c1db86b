"""What workers and learners do to their own process (`spiral_games.process_setup`): pin every
thread to some CPUs and give them back, set torch's thread count; and that the config layer,
which decides these, changes nothing in the process itself."""

from __future__ import annotations

import ast
import os
import threading

import pytest
import torch

from spiral_games.process_setup import pin_process, set_cpu_threads, unpin_process

from .conftest import REPO


def test_pinning_binds_every_thread_and_unpinning_gives_the_cores_back():
    """The in-process learner pins the whole driver (threads already running included) and
    gives the cores back at shutdown, so a later run's Ray does not inherit them."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    started, release = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (started.set(), release.wait()))
    other.start()
    started.wait()
    try:
        target = {min(allowed)}
        before = pin_process(sorted(target))
        assert os.sched_getaffinity(0) == target
        assert os.sched_getaffinity(other.native_id) == target
        unpin_process(before)
        assert os.sched_getaffinity(0) == allowed
        assert os.sched_getaffinity(other.native_id) == allowed
        assert pin_process([]) == {}
    finally:
        release.set()
        other.join()


def test_set_cpu_threads_sets_torchs_intra_op_pool():
    # the autouse fixture in conftest.py puts the test process's count back afterwards
    wanted = 1 if torch.get_num_threads() != 1 else 2
    set_cpu_threads(wanted)
    assert torch.get_num_threads() == wanted


# Calls that change the running process: its CPUs, thread pools, environment or directory.
MUTATING_CALLS = {
    "sched_setaffinity",
    "set_num_threads",
    "set_num_interop_threads",
    "putenv",
    "unsetenv",
    "chdir",
}
ENVIRON_WRITES = {"update", "setdefault", "pop", "clear", "__setitem__", "__delitem__"}


def _mutations(path) -> list[str]:
    """Each process-changing call or environment write in the file at `path`, by line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in MUTATING_CALLS:
            found.append((node.lineno, node.attr))
        environ = node.value if isinstance(node, (ast.Attribute, ast.Subscript)) else None
        is_environ = isinstance(environ, ast.Attribute) and environ.attr == "environ"
        if is_environ and isinstance(node, ast.Attribute) and node.attr in ENVIRON_WRITES:
            found.append((node.lineno, f"environ.{node.attr}"))
        if is_environ and isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
            found.append((node.lineno, "environ[...] written"))
    return [f"{path.name}:{line} {what}" for line, what in sorted(found)]


def test_the_config_layer_decides_and_changes_nothing_in_the_process(tmp_path):
    config = sorted((REPO / "spiral_games" / "config").glob("*.py"))
    assert config and not [m for p in config for m in _mutations(p)]
    # the check itself sees each kind of change
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, torch\nos.sched_setaffinity(0, {0})\ntorch.set_num_threads(1)\n"
        "os.environ['X'] = '1'\nos.environ.update(Y='2')\ndel os.environ['X']\n"
        "x = os.environ['Z']\n"
    )
    assert [m.split(" ", 1)[1] for m in _mutations(probe)] == [
        "sched_setaffinity",
        "set_num_threads",
        "environ[...] written",
        "environ.update",
        "environ[...] written",
    ]
