"""Shared fixtures: real models built once per session into the (CI-owned) model cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .parallel import available_memory_gib, worker_count

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
# OpenMP threads that wait for work sleep instead of spinning. Tests run two at a time (xdist)
# and a test's learner, engines and subprocesses share the cores: spinning threads then take the
# core from the thread with work. Two 2-thread torch matmul loops at once on 2 cores (AVX2 EPYC)
# ran 781 it/s together by default and 2937 with PASSIVE (one alone: 1538 and 2319). Set before
# torch is imported; every process a test starts inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# Set once per process and never again, so a test must not take them back: torch.distributed's
# rendezvous (while its default group lives; a later in-process Learner joins that group and
# DeepSpeed reads these) and what Ray's first init sets (token auth: a later ray Cluster's nodes
# inherit the environment, and without RAY_AUTH_MODE their workers die at start).
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")
RAY_ENV = ("RAY_AUTH_MODE", "RAY_CLIENT_MODE", "RAY_USAGE_STATS_ENABLED", "PYTHONBREAKPOINT")


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Give the next test the process this one started with. A Learner or RolloutWorker built in
    the test process sets torch's thread count and may pin every thread to some cores (a spec
    with train.max_staleness=1 once left pytest on one core, and later benchmark tests slow);
    engines and runs set environment variables (VLLM_CPU_*, RAY_*, OMP_NUM_THREADS)."""
    import torch

    from spiral_games.process_setup import pin_process

    threads = torch.get_num_threads()
    environ = dict(os.environ)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    torch.set_num_threads(threads)
    kept = RAY_ENV
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        kept += DISTRIBUTED_ENV
    environ.update({k: os.environ[k] for k in kept if k in os.environ})
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    if cpus is not None:
        pin_process(sorted(cpus))  # every thread, as a pinned learner had bound them


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2-135M-Instruct, converted once into the shared model cache."""
    from spiral_games.llm.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny():
    """The 2-layer `tiny-random` model (seed 0) with SmolLM2's tokenizer."""
    from spiral_games.llm.models import resolve_model

    return resolve_model("tiny-random", seed=0)


# ---- Parallel runs (pytest-xdist, `-n auto` in pyproject.toml) ----
def pytest_xdist_auto_num_workers(config):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = available_memory_gib(Path("/proc/meminfo").read_text())
    except OSError:
        return 1  # no way to tell whether two would fit
    return worker_count(cpus or 1, memory)


def pytest_xdist_make_scheduler(config, log):
    """loadgroup that fails a crashed worker's test and goes on (tests/xdist_scheduling.py)."""
    if config.getvalue("dist") == "loadgroup":
        from .xdist_scheduling import CrashSafeLoadGroupScheduling

        return CrashSafeLoadGroupScheduling(config, log)
    return None


def pytest_collection_modifyitems(config, items):
    """Slow tests first, so that the longest ones do not start last and leave one worker idle
    at the end; and tests that share a module-scoped fixture in one xdist group (loadgroup), so
    that its engine or model is built once, not once per worker."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs.values() if fixtures else ()
        if any(d[-1].scope == "module" for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


# ---- RELIABILITY.md: each fault test records what it tried; the table is written at the end ----
# An entry travels on the test's report (user_properties), so the table is whole when tests ran
# in several worker processes: the process that runs the session collects and writes it.
RELIABILITY_RECORDS: list[dict] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.call_report = report


@pytest.fixture
def reliability(request):
    """A dict the test fills with `fault`, `tries` and `outcome`; its pass/fail is added after."""
    entry: dict = {}
    yield entry
    if entry:
        report = getattr(request.node, "call_report", None)
        passed = report is not None and report.passed
        record = {**entry, "passed": passed, "test": request.node.name}
        request.node.user_properties.append(("reliability", record))


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        RELIABILITY_RECORDS.extend(v for k, v in report.user_properties if k == "reliability")


def pytest_sessionfinish(session, exitstatus):
    """Write the reliability table to $SPIRAL_RELIABILITY_REPORT (if set) from this session."""
    target = os.environ.get("SPIRAL_RELIABILITY_REPORT")
    if not target or not RELIABILITY_RECORDS or _is_xdist_worker(session.config):
        return
    from .reliability_report import render

    Path(target).write_text(render(RELIABILITY_RECORDS))
