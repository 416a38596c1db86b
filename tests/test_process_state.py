"""The suite's autouse fixture gives every test the process the previous one started with: a
test that pins the process to one core or sets a variable leaves neither behind. The two tests
run in file order, on one worker of a parallel run; the second checks what the first changed."""

from __future__ import annotations

import os

import pytest

from spiral_games.process_setup import pin_process

pytestmark = pytest.mark.xdist_group("process_state")  # both tests in one process, in order

START = {
    "cpus": os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(),
    "omp": os.environ.get("OMP_NUM_THREADS"),
}


@pytest.mark.skipif(len(START["cpus"]) < 2, reason="needs two CPUs to pin to one")
def test_a_test_that_pins_every_thread_and_sets_variables():
    pin_process([min(START["cpus"])])  # as an in-process learner with train.max_staleness=1
    os.environ["SPIRAL_LEFT_BEHIND"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1" if START["omp"] != "1" else "2"
    assert os.sched_getaffinity(0) == {min(START["cpus"])}


@pytest.mark.skipif(len(START["cpus"]) < 2, reason="needs two CPUs to pin to one")
def test_the_next_test_gets_every_core_and_the_old_environment_back():
    assert os.sched_getaffinity(0) == START["cpus"]
    assert "SPIRAL_LEFT_BEHIND" not in os.environ
    assert os.environ.get("OMP_NUM_THREADS") == START["omp"]
