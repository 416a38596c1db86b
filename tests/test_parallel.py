"""The suite runs in parallel worker processes (pytest-xdist, `-n auto`): how many, and that a
table the tests build together (RELIABILITY.md) comes out whole."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO
from .parallel import WORKER_MEMORY_GIB, available_memory_gib, worker_count


def run_with_our_conftest(module, *args, env=None):
    """pytest on `module` alone in a subprocess, with this suite's conftest (its hooks: the
    scheduler, the reliability table) and xdist loaded."""
    command = [sys.executable, "-m", "pytest", "-q", "-c", os.devnull]
    command += ["--rootdir", str(module.parent), "-p", "tests.conftest", "-p", "xdist"]
    return subprocess.run(
        [*command, *args, str(module)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_one_worker_per_core_while_memory_holds_them():
    assert worker_count(cpus=2, available_gib=23.0) == 2
    assert worker_count(cpus=32, available_gib=120.0) == int(120.0 // WORKER_MEMORY_GIB)
    assert worker_count(cpus=4, available_gib=2 * WORKER_MEMORY_GIB + 0.5) == 2


def test_at_least_one_worker_however_little_memory():
    assert worker_count(cpus=8, available_gib=1.0) == 1
    assert worker_count(cpus=1, available_gib=0.0) == 1


def test_available_memory_is_read_from_meminfo():
    meminfo = "MemTotal:       24576000 kB\nMemFree:  1 kB\nMemAvailable:   12582912 kB\n"
    assert available_memory_gib(meminfo) == 12.0
    with pytest.raises(ValueError, match="MemAvailable"):
        available_memory_gib("MemTotal: 1 kB\n")


@pytest.mark.slow
def test_reliability_records_from_every_worker_reach_the_report(tmp_path):
    """Four fault tests on two workers: the report the session writes has all four rows."""
    module = tmp_path / "test_faults.py"
    module.write_text(
        textwrap.dedent(
            """
            import os
            import pytest

            @pytest.mark.parametrize("n", range(4))
            def test_fault(n, reliability):
                reliability.update(fault=f"fault {n}", tries=1, outcome=f"pid {os.getpid()}")
                assert n != 3  # one fails: its row says so
            """
        )
    )
    report = tmp_path / "RELIABILITY.md"
    env = {**os.environ, "SPIRAL_RELIABILITY_REPORT": str(report)}
    proc = run_with_our_conftest(module, "-n", "2", "--dist", "load", env=env)
    assert "1 failed, 3 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = report.read_text()
    for n in range(4):
        assert f"fault {n}" in text
    assert text.count("| pass |") == 3 and "**FAIL**" in text
    pids = {line.split("pid ")[1].split(" ")[0] for line in text.splitlines() if "pid " in line}
    assert len(pids) == 2  # both workers wrote rows


@pytest.mark.slow
def test_a_crashed_worker_fails_its_test_and_the_run_goes_on(tmp_path):
    """A test that kills its worker fails by name; the rest of its group and every other test
    still run, on a replacement worker, and the session ends (tests/xdist_scheduling.py). With
    pytest-xdist 3.8.0's own loadgroup this layout hangs."""
    module = tmp_path / "test_crashes.py"
    module.write_text(
        textwrap.dedent(
            """
            import os
            import pytest

            def test_before():
                pass

            def test_crash_alone():
                os._exit(1)

            def test_after():
                pass

            @pytest.mark.xdist_group("g")
            @pytest.mark.parametrize("n", range(3))
            def test_grouped(n):
                if n == 1:
                    os._exit(1)
            """
        )
    )
    for workers in ("1", "2"):
        proc = run_with_our_conftest(module, "-n", workers, "--dist", "loadgroup")
        out = proc.stdout
        assert "2 failed, 4 passed" in out, out[-3000:] + proc.stderr[-3000:]
        assert "crashed while running 'test_crashes.py::test_crash_alone'" in out.replace('"', "'")
